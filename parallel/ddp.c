/* Data-parallel gradient reduction and the distributed optimizer's shards: see ddp.h. */
#include "parallel/ddp.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/arena.h"
#include "kernels/tensor.h"
#include "parallel/comm.h"
#include "util/error.h"

enum { HELD_BACK = -1000 }; /* a ready_stage no backward stage reaches */

struct ddp_bucket {
    int64_t lo, hi;          /* range of the flat buffers */
    int ready_stage;         /* complete once the backward finished this stage (lowest of its params) */
    bool launched;
    struct comm_request *req;
};

struct ddp {
    struct gpt_model *model;
    struct comm_group *dp;
    int size, rank;
    bool distributed, overlap, syncing;
    bool reduce_bf16;           /* --grad-reduce-in-bf16 */
    void *wire;                 /* its bf16 copy of the buffer, on the GPU */
    int num_buckets;
    struct ddp_bucket *buckets; /* from the end of the buffer to its start */
    float *shard;               /* reduce-scatter / all-gather staging, one bucket shard long */
};

/* Buckets of at least bucket_size elements, cut at parameter boundaries, from the end of the
 * buffer; one bucket when not overlapping or with the distributed optimizer (whose shards are
 * then one contiguous range per rank). */
static void make_buckets(struct ddp *d, int64_t bucket_size)
{
    const struct gpt_model *m = d->model;
    bool one = !d->overlap || d->distributed;
    d->buckets = xcalloc((size_t)m->num_params + 1, sizeof *d->buckets);
    int64_t hi = m->buffer_numel;
    int stage = m->cfg.num_layers;
    for (int i = m->num_params - 1; i >= 0; i--) {
        const struct gpt_param *p = &m->params[i];
        if (p->stage < stage) stage = p->stage;
        if (p->shared_embedding) stage = HELD_BACK;
        if (i == 0 || (!one && hi - p->offset >= bucket_size)) {
            struct ddp_bucket *b = &d->buckets[d->num_buckets++];
            b->lo = i == 0 ? 0 : p->offset;
            b->hi = hi;
            b->ready_stage = stage;
            hi = b->lo;
            stage = m->cfg.num_layers;
        }
    }
    /* a parameter whose stage is lower than its position suggests (the tied word embeddings) holds
     * back every bucket that contains it; nothing more is needed. Tied embeddings split over
     * pipeline stages are summed over the embedding group first: their buckets wait for
     * ddp_finish_grad_sync. */
}

struct ddp *ddp_create(struct gpt_model *m, struct comm_group *dp, int64_t bucket_size,
                       bool distributed_optimizer, bool overlap, bool reduce_bf16)
{
    struct ddp *d = xcalloc(1, sizeof *d);
    d->model = m;
    d->dp = dp;
    d->size = dp ? comm_size(dp) : 1;
    d->rank = dp ? comm_rank(dp) : 0;
    d->distributed = distributed_optimizer && d->size > 1;
    d->overlap = overlap && d->size > 1;
    if (m->buffer_numel % d->size) BUG("ddp: buffer of %lld not a multiple of %d", (long long)m->buffer_numel, d->size);
    make_buckets(d, bucket_size > 0 ? bucket_size : m->buffer_numel);
    if (d->distributed && m->device == DEV_CPU) d->shard = xmalloc((size_t)(m->buffer_numel / d->size) * sizeof(float));
    d->reduce_bf16 = reduce_bf16 && d->size > 1;
    if (d->reduce_bf16 && m->device == DEV_CUDA) d->wire = device_alloc(DEV_CUDA, (size_t)m->buffer_numel * sizeof(uint16_t));
    return d;
}

void ddp_free(struct ddp *d)
{
    if (!d) return;
    free(d->buckets);
    free(d->shard);
    if (d->wire) device_free(DEV_CUDA, d->wire);
    free(d);
}

int ddp_owned_ranges(const struct ddp *d, struct buffer_range *ranges, int max)
{
    if (max < 1) return 0;
    if (!d->distributed) {
        ranges[0] = (struct buffer_range){0, d->model->buffer_numel};
        return 1;
    }
    int64_t len = d->model->buffer_numel / d->size;
    ranges[0] = (struct buffer_range){d->rank * len, (d->rank + 1) * len};
    return 1;
}

/* On the GPU the reductions run in place over NCCL on the group's communication stream, so they
 * overlap the backward still queued on the compute stream. */
static void launch_device(struct ddp *d, struct ddp_bucket *b)
{
    float *g = d->model->grads;
    if (d->distributed) { /* one bucket: the whole buffer */
        size_t len = (size_t)((b->hi - b->lo) / d->size);
        if (d->reduce_bf16) comm_device_ireduce_scatter_sum_bf16(d->dp, g, d->wire, len);
        else comm_device_ireduce_scatter_sum(d->dp, g, g + (size_t)d->rank * len, len, COMM_F32);
        return;
    }
    size_t n = (size_t)(b->hi - b->lo);
    if (d->reduce_bf16) comm_device_iall_reduce_sum_bf16(d->dp, g + b->lo, (uint16_t *)d->wire + b->lo, n);
    else comm_device_iall_reduce_sum(d->dp, g + b->lo, n, COMM_F32);
}

static void launch(struct ddp *d, struct ddp_bucket *b)
{
    float *g = d->model->grads;
    b->launched = true;
    if (d->model->device == DEV_CUDA) {
        launch_device(d, b);
        return;
    }
    if (d->reduce_bf16) round_to_dtype(g + b->lo, b->hi - b->lo, DT_BF16); /* what goes on the wire */
    if (d->distributed) { /* one bucket: the whole buffer */
        b->req = comm_ireduce_scatter_sum(d->dp, g, d->shard, (size_t)((b->hi - b->lo) / d->size), COMM_F32);
        return;
    }
    b->req = comm_iall_reduce_sum(d->dp, g + b->lo, (size_t)(b->hi - b->lo), COMM_F32);
}

void ddp_start_grad_sync(struct ddp *d)
{
    if (d->size == 1) return;
    d->syncing = true;
    for (int i = 0; i < d->num_buckets; i++) d->buckets[i].launched = false;
}

void ddp_grads_ready(void *ctx, int stage)
{
    struct ddp *d = ctx;
    if (d->size == 1 || !d->syncing || !d->overlap) return;
    for (int i = 0; i < d->num_buckets; i++) {
        struct ddp_bucket *b = &d->buckets[i];
        if (!b->launched && b->ready_stage >= stage) launch(d, b);
    }
}

void ddp_finish_grad_sync(struct ddp *d)
{
    if (d->size == 1) return;
    bool device = d->model->device == DEV_CUDA;
    for (int i = 0; i < d->num_buckets; i++) {
        struct ddp_bucket *b = &d->buckets[i];
        if (!b->launched) launch(d, b);
        if (!device) comm_wait(b->req);
        b->req = NULL;
        if (!device && d->reduce_bf16 && !d->distributed) round_to_dtype(d->model->grads + b->lo, b->hi - b->lo, DT_BF16);
    }
    d->syncing = false;
    if (device) { /* reduced in place; the compute stream waits for the communication stream */
        comm_device_join(d->dp);
        return;
    }
    if (d->distributed) { /* the reduced shard into its place; the rest of the buffer is stale */
        int64_t len = d->model->buffer_numel / d->size;
        if (d->reduce_bf16) round_to_dtype(d->shard, len, DT_BF16);
        memcpy(d->model->grads + d->rank * len, d->shard, (size_t)len * sizeof(float));
    }
}

void ddp_gather_params(struct ddp *d)
{
    if (!d->distributed) return;
    int64_t len = d->model->buffer_numel / d->size;
    if (d->model->device == DEV_CUDA) { /* in place, then the bf16 copy of every shard */
        comm_device_all_gather(d->dp, d->model->weights + d->rank * len, d->model->weights, (size_t)len, COMM_F32);
        gpt_weights_changed(d->model, 0, d->model->buffer_numel);
        return;
    }
    memcpy(d->shard, d->model->weights + d->rank * len, (size_t)len * sizeof(float));
    comm_all_gather(d->dp, d->shard, d->model->weights, (size_t)len, COMM_F32);
}
