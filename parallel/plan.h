/* `megatron plan ... --world-size N`: the layout, every communication group and, per rank, the
 * parameters, the memory of weights + gradients + optimizer state and the FLOPs of one
 * iteration, from the flags alone (no model is allocated, no rank is started).
 *
 * Contract: reads a config finalized for CMD_PLAN, prints to stdout and returns the exit code;
 * a layout or vocabulary it cannot plan ends with one die_user line. */
#ifndef MEGATRON_PARALLEL_PLAN_H
#define MEGATRON_PARALLEL_PLAN_H

#include "args.h"

int plan_main(const struct config *cfg);

#endif
