/* One training step of `megatron pretrain` (Megatron's train_step: the pipeline schedule's
 * forward and backward passes, the gradients' reductions, the optimizer step) and evaluation, on
 * the iteration's batch as the sampler orders it.
 *
 * On the GPU a step waits for the device once, at its end, to read the loss and the gradient norm:
 * the iteration's inputs and the step's scalars are uploaded first (queued copies), everything
 * else reads device memory. So on one GPU the step after the first is captured as a CUDA graph
 * and replayed on later iterations (kernels/cuda/graph.cu): the host queues a whole step with one
 * launch. Not captured: runs over several ranks (their collectives and host-side schedules),
 * --timing-log-level (it times the phases by waiting between them), MEGATRON_CUDA_GRAPH=0. */
#include <stdlib.h>
#include <string.h>

#include "kernels/arena.h"
#include "kernels/rng.h"
#include "models/gpt.h"
#include "parallel/comm.h"
#include "parallel/ddp.h"
#include "parallel/schedules.h"
#include "train_internal.h"
#include "util/error.h"
#ifdef MEGATRON_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

void train_alloc_buffers(struct trainer *t)
{
    struct batch_buffers *b = &t->buf;
    int64_t samples = t->cfg->num_micro_batches * t->cfg->micro_batch_size, seq = t->cfg->seq_length;
    size_t n = (size_t)(samples * seq);
    b->samples = samples;
    b->seq = seq;
    b->indices = xmalloc((size_t)samples * sizeof(int64_t));
    b->tokens = xmalloc(n * sizeof(int32_t));
    b->labels = xmalloc(n * sizeof(int32_t));
    b->positions = xmalloc(n * sizeof(int32_t));
    b->loss_mask = xmalloc(n * sizeof(float));
    if (t->model->device == DEV_CPU) return;
    struct device_inputs *d = &t->dev;
    d->tokens = device_alloc(DEV_CUDA, n * sizeof(int32_t));
    d->labels = device_alloc(DEV_CUDA, n * sizeof(int32_t));
    d->positions = device_alloc(DEV_CUDA, n * sizeof(int32_t));
    d->loss_mask = device_alloc(DEV_CUDA, n * sizeof(float));
    d->loss_grad_factors = device_alloc(DEV_CUDA, (size_t)t->cfg->num_micro_batches * sizeof(float));
    d->dropout_stream = device_alloc(DEV_CUDA, sizeof(uint64_t));
}

void train_free_buffers(struct trainer *t)
{
    struct batch_buffers *b = &t->buf;
    free(b->indices);
    free(b->tokens);
    free(b->labels);
    free(b->positions);
    free(b->loss_mask);
#ifdef MEGATRON_CUDA
    cuda_graph_free(t->graph);
    t->graph = NULL;
#endif
    if (t->model->device == DEV_CPU) return;
    struct device_inputs *d = &t->dev;
    device_free(DEV_CUDA, d->tokens);
    device_free(DEV_CUDA, d->labels);
    device_free(DEV_CUDA, d->positions);
    device_free(DEV_CUDA, d->loss_mask);
    device_free(DEV_CUDA, d->loss_grad_factors);
    device_free(DEV_CUDA, d->dropout_stream);
    memset(d, 0, sizeof *d);
}

/* The samples of one global batch starting at `consumed` that this rank reads: Megatron's
 * MegatronPretrainingSampler hands micro batch m to data-parallel rank r as the samples
 * consumed + m x mbs x dp + r x mbs + [0, mbs). */
static void batch_indices(const struct config *cfg, int rank, int64_t consumed, int64_t *indices)
{
    int64_t mbs = cfg->micro_batch_size, dp = cfg->data_parallel_size;
    for (int64_t m = 0; m < cfg->num_micro_batches; m++)
        for (int64_t i = 0; i < mbs; i++) indices[m * mbs + i] = consumed + m * mbs * dp + rank * mbs + i;
}

static void load_batch(struct trainer *t, enum data_split split, int64_t consumed)
{
    struct batch_buffers *b = &t->buf;
    batch_indices(t->cfg, t->grid.dp_rank, consumed, b->indices);
    loader_batch(t->loader, split, b->indices, b->samples, b->tokens, b->labels, b->positions, b->loss_mask);
}

static void prefetch_batch(struct trainer *t, enum data_split split, int64_t consumed)
{
    int64_t *indices = xmalloc((size_t)t->buf.samples * sizeof(int64_t));
    batch_indices(t->cfg, t->grid.dp_rank, consumed, indices);
    loader_prefetch(t->loader, split, indices, t->buf.samples);
    free(indices);
}

/* Micro batch m of the loaded iteration. */
static struct gpt_batch gpt_batch_of(const struct trainer *t, int64_t m, uint64_t stream, int64_t offset,
                                     bool training)
{
    struct gpt_batch g;
    memset(&g, 0, sizeof g); /* no loss gradient in the forward unless the schedule asks */
    int64_t at = m * t->cfg->micro_batch_size * t->buf.seq;
    g.batch = t->cfg->micro_batch_size;
    g.tokens = t->buf.tokens + at;
    g.labels = t->buf.labels + at;
    g.positions = t->buf.positions + at;
    g.loss_mask = t->buf.loss_mask + at;
    g.dropout_stream = stream;
    g.sample_offset = offset;
    g.training = training;
    return g;
}

/* With --timing-log-level: waits for the device, then the time. */
static double phase_clock(const struct trainer *t)
{
    if (t->cfg->timing_log_level < 1) return 0.0;
#ifdef MEGATRON_CUDA
    if (t->model->device == DEV_CUDA) cuda_synchronize();
#endif
    return train_now_seconds();
}

/* Every micro batch of the loaded iteration. */
static void gpt_batches_of(const struct trainer *t, struct gpt_batch *out, uint64_t stream, bool training)
{
    int64_t micro = t->cfg->micro_batch_size, dp = t->cfg->data_parallel_size;
    for (int64_t mb = 0; mb < t->cfg->num_micro_batches; mb++) {
        /* the first sample of this micro batch within the global batch (the sampler's order) */
        int64_t offset = training ? mb * micro * dp + t->grid.dp_rank * micro : 0;
        out[mb] = gpt_batch_of(t, mb, training ? stream : 0, offset, training);
    }
}

/* Loss sum and token count summed over the data-parallel group (fp64, rank order). */
static void reduce_loss(const struct trainer *t, double *loss_sum, double *tokens)
{
    double v[2] = {*loss_sum, *tokens};
    if (t->dp) comm_all_reduce_sum(t->dp, v, 2, COMM_F64);
    *loss_sum = v[0];
    *tokens = v[1];
}

/* finalize_model_grads: with tied embeddings split over the first and last stage, their
 * gradients summed over the embedding group (before the data-parallel reduction, which holds the
 * buckets containing them back until now); the data-parallel reduction; then with sequence
 * parallelism the sum over the tensor-parallel group of the gradients of parameters every rank
 * holds whole (each rank applied them to its rows only). */
static void finalize_grads(struct trainer *t)
{
    struct gpt_model *m = t->model;
    for (int i = 0; i < m->num_params && t->embedding; i++) {
        const struct gpt_param *p = &m->params[i];
        if (!p->shared_embedding) continue;
        if (m->device == DEV_CUDA)
            comm_device_all_reduce_sum(t->embedding, m->grads + p->offset, (size_t)p->numel, COMM_F32);
        else
            comm_all_reduce_sum(t->embedding, m->grads + p->offset, (size_t)p->numel, COMM_F32);
    }
    ddp_finish_grad_sync(t->ddp);
    if (!m->tp.sequence_parallel) return;
    for (int i = 0; i < m->num_params; i++)
        if (m->params[i].shard_dim < 0)
            tp_all_reduce_buffer(&m->tp, m->device, m->grads + m->params[i].offset, m->params[i].numel);
}

/* The iteration's tokens on this rank: each micro batch's sum of its loss mask into per_micro
 * (when not NULL), and their sum in order. */
static double iteration_tokens(const struct trainer *t, const struct gpt_batch *batches, double *per_micro)
{
    double tokens = 0.0;
    for (int64_t mb = 0; mb < t->cfg->num_micro_batches; mb++) {
        double n = gpt_batch_tokens(batches[mb].loss_mask, batches[mb].batch * t->buf.seq);
        if (per_micro) per_micro[mb] = n;
        tokens += n;
    }
    return tokens;
}

/* On the GPU: the iteration's inputs, each micro batch's loss-gradient factor (from its tokens) and
 * the dropout stream copied to the device (queued), and the micro batches pointed at them. */
static void upload_inputs(struct trainer *t, struct gpt_batch *batches, const double *tokens, double loss_scale,
                          double loss_divisor)
{
    const struct batch_buffers *b = &t->buf;
    struct device_inputs *d = &t->dev;
    int64_t num_micro = t->cfg->num_micro_batches, per = t->cfg->micro_batch_size * b->seq, n = b->samples * b->seq;
    float *factors = xmalloc((size_t)num_micro * sizeof(float));
    for (int64_t mb = 0; mb < num_micro; mb++) {
        factors[mb] = gpt_loss_grad_factor(loss_scale, t->cfg->calculate_per_token_loss ? 1.0 : tokens[mb],
                                           loss_divisor);
        batches[mb].device_tokens = d->tokens + mb * per;
        batches[mb].device_labels = d->labels + mb * per;
        batches[mb].device_positions = d->positions + mb * per;
        batches[mb].device_loss_mask = d->loss_mask + mb * per;
        batches[mb].device_loss_grad_factor = d->loss_grad_factors + mb;
        batches[mb].device_dropout_stream = d->dropout_stream;
    }
    device_copy_to_queued(DEV_CUDA, d->dropout_stream, &batches[0].dropout_stream, sizeof(uint64_t));
    device_copy_to_queued(DEV_CUDA, d->tokens, b->tokens, (size_t)n * sizeof(int32_t));
    device_copy_to_queued(DEV_CUDA, d->labels, b->labels, (size_t)n * sizeof(int32_t));
    device_copy_to_queued(DEV_CUDA, d->positions, b->positions, (size_t)n * sizeof(int32_t));
    device_copy_to_queued(DEV_CUDA, d->loss_mask, b->loss_mask, (size_t)n * sizeof(float));
    device_copy_to_queued(DEV_CUDA, d->loss_grad_factors, factors, (size_t)num_micro * sizeof(float));
    free(factors);
}

#ifdef MEGATRON_CUDA
/* Whether this run's training step can be a CUDA graph (see the top of the file). */
static bool step_capturable(const struct trainer *t)
{
    const struct config *cfg = t->cfg;
    return t->model->device == DEV_CUDA && t->grid.world_size == 1 && cfg->timing_log_level == 0 &&
           cuda_graph_allowed();
}
#endif

/* What the device does in a step, queued without a wait (unless --timing-log-level times the
 * phases): the schedule's passes, the gradients' reductions, the optimizer, the gradients zeroed. */
static void step_work(struct trainer *t, struct schedule_step *step)
{
    double t0 = phase_clock(t);
    schedule_run(t->runner, step);
    double t1 = phase_clock(t);
    finalize_grads(t);
    double t2 = phase_clock(t);
    optimizer_queue(t->optimizer);
    ddp_gather_params(t->ddp); /* a skipped step's shards are unchanged: gathering them changes nothing */
    gpt_zero_grads(t->model); /* the next step's first backward writes the rest */
    double t3 = phase_clock(t);
    t->phase_seconds[PHASE_FORWARD_BACKWARD] += t1 - t0;
    t->phase_seconds[PHASE_GRADS_SYNC] += t2 - t1;
    t->phase_seconds[PHASE_OPTIMIZER] += t3 - t2;
}

/* step_work, on one GPU captured on the second step and replayed after that (captured again if the
 * backend has freed memory the graph uses since). */
static void run_step_work(struct trainer *t, struct schedule_step *step)
{
#ifdef MEGATRON_CUDA
    if (t->steps_run >= 1 && step_capturable(t)) {
        if (!cuda_graph_current(t->graph)) {
            cuda_graph_free(t->graph);
            cuda_graph_begin();
            step_work(t, step);
            t->graph = cuda_graph_end();
            if (t->grid.rank == 0) /* no "iteration" in it: scripts read the log lines that hold one */
                printf(" > CUDA graph: the training step captured (%zu nodes) and replayed from here on\n",
                       cuda_graph_nodes(t->graph));
        }
        cuda_graph_launch(t->graph);
        return;
    }
#endif
    step_work(t, step);
}

/* train_step: every micro batch's forward and backward through this rank's pipeline schedule,
 * then the optimizer step. Megatron divides each micro batch's summed loss by its token count and
 * by the number of micro batches (schedules.py:forward_step), averages gradients over
 * data-parallel ranks, and reports sum(losses) / sum(tokens) over the global batch (known on the
 * last pipeline stage). */
struct step_result train_step(struct trainer *t, double *lm_loss)
{
    const struct config *cfg = t->cfg;
    int64_t num_micro = cfg->num_micro_batches, dp = cfg->data_parallel_size;
    uint64_t stream = rng_mix64((uint64_t)t->iteration * 2 + 1);
    struct gpt_batch *batches = xmalloc((size_t)num_micro * sizeof *batches);
    load_batch(t, SPLIT_TRAIN, t->consumed_train_samples);
    if (t->iteration + 1 < cfg->train_iters)
        prefetch_batch(t, SPLIT_TRAIN, t->consumed_train_samples + cfg->global_batch_size);
    gpt_batches_of(t, batches, stream, true);
    struct schedule_step step = {
        .batches = batches,
        .loss_scale = optimizer_loss_scale(t->optimizer),
        .loss_divisor = (double)num_micro * (double)dp,
        .ddp = t->ddp,
        .overlap_grad_reduce = cfg->overlap_grad_reduce,
        .first_backward_writes = true,
    };
    double *tokens = xmalloc((size_t)num_micro * sizeof *tokens);
    double tokens_sum = iteration_tokens(t, batches, tokens);
    if (cfg->calculate_per_token_loss) {
        /* Megatron sums the token losses and, after the reductions, divides the gradients by the
           global batch's tokens (finalize_model_grads); here each token's loss gradient carries
           the division: the same gradients, up to rounding */
        double global = tokens_sum;
        if (t->dp) comm_all_reduce_sum(t->dp, &global, 1, COMM_F64);
        step.loss_divisor = global > 0.0 ? global : 1.0;
        step.per_token_loss = true;
    }
    if (t->model->device == DEV_CUDA) upload_inputs(t, batches, tokens, step.loss_scale, step.loss_divisor);
    free(tokens);
    optimizer_prepare(t->optimizer);
    run_step_work(t, &step);
    t->steps_run++;
    /* the step's one wait for the device: the loss, then the norm the host's bookkeeping needs */
    double loss_sum = t->last_stage ? gpt_loss_read(t->model) : 0.0;
    if (!t->last_stage) tokens_sum = 0.0;
    free(batches);
    struct step_result r = optimizer_finish(t->optimizer, cfg->global_batch_size);
    reduce_loss(t, &loss_sum, &tokens_sum);
    *lm_loss = t->last_stage ? loss_sum / tokens_sum : 0.0;
    t->consumed_train_samples += cfg->global_batch_size;
    return r;
}

double train_evaluate(struct trainer *t, enum data_split split, int64_t *consumed)
{
    const struct config *cfg = t->cfg;
    double loss_sum = 0.0, tokens_sum = 0.0;
    struct gpt_batch *batches = xmalloc((size_t)cfg->num_micro_batches * sizeof *batches);
    for (int64_t it = 0; it < cfg->eval_iters; it++) {
        load_batch(t, split, *consumed);
        gpt_batches_of(t, batches, 0, false);
        struct schedule_step step = {.batches = batches, .forward_only = true};
        schedule_run(t->runner, &step);
        if (t->last_stage) {
            loss_sum += gpt_loss_read(t->model);
            tokens_sum += iteration_tokens(t, batches, NULL);
        }
        *consumed += cfg->global_batch_size;
    }
    free(batches);
    reduce_loss(t, &loss_sum, &tokens_sum);
    return t->last_stage ? loss_sum / tokens_sum : 0.0;
}
