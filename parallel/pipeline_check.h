/* Checking and timing a set of pipeline schedule tables (parallel/pipeline.h) before any rank
 * runs them: the proof that every micro batch passes every stage once each way and that no rank
 * waits forever, and the bubble the schedule predicts.
 *
 * Contract:
 *  - Execution model: every rank runs its table in order; a compute action takes its cost; a
 *    batch of communication actions is posted at once and completes when each of its sends has
 *    met its receive and each receive its send, both posted (a blocking batch, as NCCL groups and
 *    MPI rendezvous sends behave); communication itself takes no time.
 *  - Neither function exits or prints: each returns 0, or -1 with the first problem found as one
 *    line in err naming the rank, the action and the micro batch / chunk. */
#ifndef MEGATRON_PARALLEL_PIPELINE_CHECK_H
#define MEGATRON_PARALLEL_PIPELINE_CHECK_H

#include <stddef.h>

#include "parallel/pipeline.h"

/* Checks, in this order: actions name a valid micro batch, chunk and peer, and every batch is
 * closed; every (micro batch, chunk) is forwarded and backwarded exactly once on its rank, the
 * forward first; every receive has exactly one matching send on the peer and every send one
 * receive ("never sent" / "never received"); every forward that needs an input receives it before
 * it runs and sends its output after, likewise for gradients; within one direction between two
 * ranks, messages are received in the order they are sent; and, executing all tables together,
 * no rank waits forever, every forward starts after the previous stage's forward of its micro
 * batch ended, and every backward after its own forward and the next stage's backward. */
int pipeline_schedule_check(const struct pipeline_schedule *sched, char *err, size_t errlen);

struct pipeline_rank_stats {
    double busy;    /* compute time */
    double idle;    /* makespan - busy */
    double bubble;  /* idle / makespan */
    int peak_alive; /* most (micro batch, chunk) pairs whose activations the rank holds at once: from
                       the input's arrival (its forward, on stage 0) to the backward */
};

/* pipeline_schedule_check, timing the tables with forward = forward_cost[r * vp + c] for rank r,
 * chunk c (1 for every chunk when forward_cost is NULL) and backward = twice that. Fills
 * stats[pp] and *makespan (the time the last rank finishes). */
int pipeline_simulate(const struct pipeline_schedule *sched, const double *forward_cost,
                      struct pipeline_rank_stats *stats, double *makespan, char *err, size_t errlen);

#endif
