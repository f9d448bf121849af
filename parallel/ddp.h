/* Data parallelism over the flat gradient buffer (Megatron's DistributedDataParallel and the
 * distributed optimizer's gradient/parameter paths, megatron/core/distributed/):
 *  - gradients accumulate in the fp32 buffer over micro batches; after the last micro batch's
 *    backward they are summed over the data-parallel group, bucket by bucket (--ddp-bucket-size),
 *    by all-reduce, or with --use-distributed-optimizer by reduce-scatter so each rank receives
 *    its contiguous shard of the buffer;
 *  - with --overlap-grad-reduce a bucket's reduction starts, non-blocking, as soon as the backward
 *    has produced every gradient in it (buckets are filled from the end of the buffer, which the
 *    backward reaches first);
 *  - with the distributed optimizer, the updated parameter shards are all-gathered afterwards.
 *  - with --grad-reduce-in-bf16 the values are rounded to bf16 for the reduction and the sums are
 *    bf16 values (on the GPU NCCL sums bf16; on the CPU the rounded values are summed in fp32 in
 *    group-rank order and the sum rounded), then kept in the fp32 buffer. Gradients still
 *    accumulate over micro batches in fp32 (Megatron accumulates them in bf16 with this flag).
 * The 1/DP averaging is folded into the loss scale by the caller. With one data-parallel rank
 * every call is free. */
#ifndef MEGATRON_PARALLEL_DDP_H
#define MEGATRON_PARALLEL_DDP_H

#include <stdbool.h>
#include <stdint.h>

#include "models/gpt.h"
#include "optim/optimizer.h"

struct comm_group;
struct ddp;

/* dp may be NULL (one data-parallel rank). The model's flat buffers must be padded to a multiple
 * of the data-parallel size (gpt_create's buffer_multiple). */
struct ddp *ddp_create(struct gpt_model *m, struct comm_group *dp, int64_t bucket_size,
                       bool distributed_optimizer, bool overlap, bool reduce_bf16);
void ddp_free(struct ddp *d);

/* The ranges this rank's optimizer updates; returns how many (at most max). */
int ddp_owned_ranges(const struct ddp *d, struct buffer_range *ranges, int max);

/* Before the last micro batch's backward: buckets may start reducing from now on. */
void ddp_start_grad_sync(struct ddp *d);
/* Backward progress hook (struct gpt_batch's on_grads_ready): every gradient of backward stage
 * `stage` and later ones is final (see gpt.h for the stages). */
void ddp_grads_ready(void *d, int stage);
/* After the backward: reduces what is left, waits for everything. */
void ddp_finish_grad_sync(struct ddp *d);
/* With the distributed optimizer, after the step: every rank receives every updated shard. */
void ddp_gather_params(struct ddp *d);

#endif
