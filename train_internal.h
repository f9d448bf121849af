/* What train.c (the loop, logging, set-up) and train_step.c (one training step, evaluation, the
 * iteration's inputs) share: the trainer's state. */
#ifndef MEGATRON_TRAIN_INTERNAL_H
#define MEGATRON_TRAIN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "args.h"
#include "data/loader.h"
#include "optim/optimizer.h"
#include "parallel/grid.h"
#include "parallel/pipeline.h"

/* Host buffers for the samples of one iteration on this rank (all its micro batches). */
struct tb_writer;

struct batch_buffers {
    int64_t samples, seq;
    int64_t *indices;
    int32_t *tokens, *labels, *positions;
    float *loss_mask;
};

/* On the GPU, a copy of one iteration's inputs (what batch_buffers holds) and each micro batch's
 * loss-gradient factor, uploaded before the step so the step itself reads only device memory. */
struct device_inputs {
    int32_t *tokens, *labels, *positions;
    float *loss_mask, *loss_grad_factors;
    uint64_t *dropout_stream; /* the iteration's part of every dropout key */
};

struct trainer {
    const struct config *cfg;
    FILE *out;                /* Megatron's training_log prints on the last rank: NULL elsewhere */
    struct grid grid;
    struct comm_group *dp;    /* data-parallel group (NULL with one data-parallel rank) */
    struct comm_group *pp;    /* pipeline group (NULL with one stage) */
    struct comm_group *embedding; /* first and last stage, with tied embeddings split over them */
    struct pipeline_spec pipeline;
    struct pipeline_schedule schedule;
    struct schedule *runner;  /* this rank's table bound to the model */
    bool last_stage;          /* holds the loss */
    struct gpt_model *model;
    struct ddp *ddp;
    struct optimizer *optimizer;
    struct loader *loader;
    struct batch_buffers buf;
    struct device_inputs dev; /* GPU runs only (NULL pointers on the CPU) */
    struct cuda_graph *graph; /* the captured training step, when it can be captured */
    int64_t steps_run;        /* training steps this process has run (the first is never captured) */
    int64_t iteration;
    int64_t consumed_train_samples;
    int64_t consumed_valid_samples;
    double flops_per_batch;
    double start_seconds;     /* when pretrain began (--exit-duration-in-mins) */
    double phase_seconds[3];  /* --timing-log-level: forward-backward, all-grads-sync, optimizer since the last log */
    struct tb_writer *tb;     /* --tensorboard-dir, on the last rank (Megatron's writer): NULL elsewhere */
};

/* --timing-log-level: the phases of a step, timed after the device finished them. */
enum { PHASE_FORWARD_BACKWARD, PHASE_GRADS_SYNC, PHASE_OPTIMIZER };

static inline double train_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The iteration's host buffers (and on the GPU their device copy); freed by train_free_buffers. */
void train_alloc_buffers(struct trainer *t);
void train_free_buffers(struct trainer *t);
/* One training step on the next global batch: its result, and the batch's lm loss in *lm_loss on
 * the last pipeline stage (0 elsewhere). */
struct step_result train_step(struct trainer *t, double *lm_loss);
/* --eval-iters global batches of the split from *consumed (advanced): the token-weighted mean loss,
 * no dropout. */
double train_evaluate(struct trainer *t, enum data_split split, int64_t *consumed);

#endif
