/* Running a pipeline schedule on a model (Megatron-Core's forward_backward_func,
 * pipeline_parallel/schedules.py): one loop executes a rank's table of parallel/pipeline.h —
 * forward and backward of (micro batch, chunk) on the model, and the batched sends and receives
 * of hidden states and their gradients between neighbouring stages — and collects the loss.
 *
 * Contract:
 *  - The model holds this rank's chunks (gpt_create_stage) with as many activation slots as
 *    pipeline_table_memory counts; a micro batch holds a slot of a chunk from its forward to its
 *    backward only. Hidden states received ahead of their forward, and input gradients waiting to
 *    be sent, wait in buffers of their own (allocated once, by schedule_create), so the schedule
 *    keeps no more activations alive than Megatron's.
 *  - The loss of micro batch m scales its backward by loss_scale / (tokens_m x loss_divisor), as
 *    Megatron divides each micro batch's loss by its tokens and by the micro batches and
 *    data-parallel ranks; only the stage that computes the loss knows tokens_m.
 *  - With a ddp, the backward of the last micro batch on each chunk reports finished gradients to
 *    it (overlapped reduction); ddp_start_grad_sync is called before the first of them.
 *  - Forward only (evaluation): micro batches pass the stages one after another, each message
 *    completed before the next compute. */
#ifndef MEGATRON_PARALLEL_SCHEDULES_H
#define MEGATRON_PARALLEL_SCHEDULES_H

#include <stdbool.h>

#include "models/gpt.h"
#include "parallel/ddp.h"
#include "parallel/pipeline.h"

struct comm_group;
struct schedule;

/* Binds pp rank `pp_rank`'s table of sched to the model (whose chunks must be that rank's).
 * pp_group is NULL with one stage. overlap_p2p (--overlap-p2p-communication): each batch of
 * sends and receives is started where the table puts it and waited for only where its data are
 * used (a received input before its forward, a received gradient before its backward, a sent
 * buffer before it is written again), so it overlaps the compute in between; on the GPU the host
 * never blocks on it. Without it every batch completes before the next compute. */
struct schedule *schedule_create(struct gpt_model *m, const struct pipeline_schedule *sched, int pp_rank,
                                 struct comm_group *pp_group, bool overlap_p2p);
void schedule_free(struct schedule *s);

struct schedule_step {
    const struct gpt_batch *batches;    /* [num_micro_batches], hooks unset */
    bool forward_only;
    double loss_scale, loss_divisor;    /* unused forward only */
    bool per_token_loss;                /* see struct gpt_batch */
    struct ddp *ddp;                    /* NULL: no gradient reduction to start */
    bool overlap_grad_reduce;
    /* each chunk's first backward writes its written gradients (gpt_batch.write_weight_grads):
       the caller zeroed only the rest (gpt_zero_grads) */
    bool first_backward_writes;
};

/* Queues the step's forward (and backward) passes without waiting for the device: the loss of its
 * micro batches is left summed in the model (gpt_loss_read), their tokens are the caller's to count
 * (gpt_batch_tokens). */
void schedule_run(struct schedule *s, struct schedule_step *step);

#endif
