/* Pipeline parallelism as data: which layers each pipeline rank and model chunk holds, and the
 * schedule of each rank (Megatron-Core's pipeline_parallel/schedules.py) as a table of actions
 * that one loop executes, built so a test or `megatron plan` can check and print it first.
 *
 * Contract:
 *  - pipeline_spec_from_config validates the pipeline flags as Megatron does (arguments.py,
 *    TransformerConfig, the interleaved schedule's run-time checks) and fills a pipeline_spec;
 *    each error is one line "<what>: <why>; <what to do>" naming the numbers to change.
 *  - Stages: virtual stage s = chunk * pp + pp_rank runs layers in order s = 0, 1, ...,
 *    pp * vp - 1; the embedding lives on stage 0 (pp rank 0, chunk 0), the final norm, output
 *    layer and loss on the last stage (pp rank pp - 1, chunk vp - 1).
 *  - A schedule holds one table per pp rank. Compute actions are FORWARD / BACKWARD of (micro
 *    batch, chunk of this rank), in Megatron's order (warm-up, steady 1F1B, cool-down). Communication
 *    actions carry the micro batch, the chunk of this rank that produced (send) or will consume
 *    (recv) the tensor, and the peer's pp rank (its rank within the pp group). Consecutive
 *    communication actions form one batch that ends at the action with `wait` set: the executor
 *    posts every send and receive of a batch at once (non-blocking, or one NCCL group), as
 *    Megatron's batched p2p_communication does, and waits for them there, or with
 *    --overlap-p2p-communication where their data are used (parallel/schedules.h).
 *  - Tables run in numbered steps (one compute action, or an interleaved forward + backward
 *    round, then one batch); every message travels in the batch of the same step on both ranks,
 *    the step before its consumer runs. So batch j of a rank only meets batch j of its neighbours:
 *    no blocking send or receive waits forever, whatever the compute times; a received input
 *    never waits for its forward; and within one direction between two ranks messages are
 *    received in the order they are sent (one tag per direction is enough).
 *  - parallel/pipeline_check.h proves a set of tables sound and times them. */
#ifndef MEGATRON_PARALLEL_PIPELINE_H
#define MEGATRON_PARALLEL_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "args.h"

struct pipeline_spec {
    int pp;                     /* --pipeline-model-parallel-size */
    int vp;                     /* model chunks per pp rank; > 1 selects the interleaved schedule */
    int64_t num_layers;         /* transformer layers of the whole model */
    int64_t first_stage_layers; /* --decoder-first-pipeline-num-layers, -1: even split */
    int64_t last_stage_layers;  /* --decoder-last-pipeline-num-layers, -1: even split */
    int num_micro_batches;      /* M: micro batches per iteration through one pipeline */
    int group_size;             /* G: --microbatch-group-size-per-virtual-pipeline-stage (PP by default) */
    bool overlap_p2p;           /* false with --no-overlap-p2p-communication */
};

/* Validates cfg's pipeline flags against its layers and micro batches (cfg->num_micro_batches
 * and data_parallel_size already derived) and fills s. 0, or -1 with the reason in err. */
int pipeline_spec_from_config(const struct config *cfg, struct pipeline_spec *s, char *err, size_t errlen);

/* The same rules on a spec filled by hand (vp given directly); 0 or -1 with err. */
int pipeline_spec_validate(const struct pipeline_spec *s, char *err, size_t errlen);

/* Layers of (pp_rank, chunk): the count, with the first layer's index (0-based) in *first.
 * Megatron's get_transformer_layer_offset: even split offset = chunk * (L / vp) +
 * pp_rank * (L / pp / vp); uneven first / last stages hold their own counts (split evenly over
 * their chunks) and the middle stages share the rest. */
int64_t pipeline_layers(const struct pipeline_spec *s, int pp_rank, int chunk, int64_t *first);
/* All layers of a pp rank, over its chunks. */
int64_t pipeline_rank_layers(const struct pipeline_spec *s, int pp_rank);
/* The word (and position) embedding runs on stage 0; the output layer and the loss on the last. */
bool pipeline_holds_embedding(const struct pipeline_spec *s, int pp_rank, int chunk);
bool pipeline_holds_loss(const struct pipeline_spec *s, int pp_rank, int chunk);

enum pipeline_op {
    PIPE_FORWARD,
    PIPE_BACKWARD,
    PIPE_SEND_FORWARD,  /* this rank's output activation of (mb, chunk) to the next stage */
    PIPE_RECV_FORWARD,  /* the input activation of (mb, chunk) from the previous stage */
    PIPE_SEND_BACKWARD, /* the gradient of (mb, chunk)'s input to the previous stage */
    PIPE_RECV_BACKWARD, /* the gradient of (mb, chunk)'s output from the next stage */
};

/* Megatron's three parts of a 1F1B schedule: of a compute action, or for a send / receive of the
 * compute that produced the tensor. Without pipelining every action is PIPE_STEADY. */
enum pipeline_phase { PIPE_WARMUP, PIPE_STEADY, PIPE_COOLDOWN };

struct pipeline_action {
    enum pipeline_op op;
    int mb, chunk;
    int peer;  /* pp rank of the other side of a send / recv; -1 for compute */
    bool wait; /* communication: the last action of its batch */
    enum pipeline_phase phase;
};

struct pipeline_table {
    int pp_rank;
    int num_warmup; /* forward steps before the first backward (Megatron's num_warmup_microbatches) */
    int n, cap;
    struct pipeline_action *actions;
};

enum pipeline_kind {
    PIPE_NO_PIPELINING, /* forward_backward_no_pipelining */
    PIPE_1F1B,          /* forward_backward_pipelining_without_interleaving */
    PIPE_INTERLEAVED,   /* forward_backward_pipelining_with_interleaving */
};

struct pipeline_schedule {
    enum pipeline_kind kind;
    int pp, vp, num_micro_batches, group_size;
    struct pipeline_table *tables; /* [pp], tables[r].pp_rank == r */
};

/* Megatron's function name for the kind. */
const char *pipeline_kind_name(enum pipeline_kind kind);

/* Builds every rank's table for a validated spec. */
void pipeline_schedule_build(struct pipeline_schedule *sched, const struct pipeline_spec *s);
void pipeline_schedule_free(struct pipeline_schedule *sched);
/* Appends an action to a table (for builders and for tests that hand-write tables). */
void pipeline_table_push(struct pipeline_table *t, struct pipeline_action a);

/* What one chunk of a rank keeps at once under its table: the activations of `activations` micro
 * batches (from a FORWARD on the chunk to its BACKWARD), `inputs` received hidden states waiting
 * for their forward (RECV_FORWARD to FORWARD), and `grads` input gradients waiting to be sent
 * (BACKWARD to the end of the batch of its SEND_BACKWARD). parallel/schedules.c takes and releases
 * them at exactly these points. */
struct pipeline_memory {
    int activations, inputs, grads;
};
void pipeline_table_memory(const struct pipeline_table *t, int vp, int num_micro_batches, struct pipeline_memory *chunks);

/* Megatron's warm-up forward steps of an interleaved rank: (pp - rank - 1) * 2 + (vp - 1) * G,
 * at most M * vp (get_pp_rank_microbatches); of a 1F1B rank: min(pp - rank - 1, M). */
int pipeline_num_warmup(const struct pipeline_spec *s, int pp_rank);

/* The compute actions of a table, compact: "F0.0 F1.0 | F2.0 B0.0 ... | B3.0" (F/B micro
 * batch.chunk, '|' between warm-up, steady state and cool-down). When there are more than
 * max_actions, the middle of the list is elided as "... (N more) ...". */
void pipeline_table_format(const struct pipeline_table *t, int max_actions, FILE *f);

#endif
