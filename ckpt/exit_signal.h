/* --exit-signal-handler (Megatron's DistributedSignalHandler): SIGTERM or SIGINT does not kill the
 * run; the trainer finishes the current iteration, saves a checkpoint and exits 0. A scheduler's
 * preemption (SLURM sends SIGTERM before SIGKILL) then costs no training. */
#ifndef MEGATRON_CKPT_EXIT_SIGNAL_H
#define MEGATRON_CKPT_EXIT_SIGNAL_H

#include <stdbool.h>

/* Installs handlers for SIGTERM and SIGINT that only record the signal. */
void exit_signal_install(void);

/* True once SIGTERM or SIGINT arrived after exit_signal_install. */
bool exit_signal_received(void);

/* The name of the signal received ("SIGTERM"), or NULL. */
const char *exit_signal_name(void);

#endif
