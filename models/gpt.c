/* The GPT model: the activation arena for one micro batch and the forward and backward through
 * the layers (the parameter table lives in gpt_params.c). Under tensor parallelism each rank holds
 * its shards and runs the same code; with sequence parallelism the residual stream of a rank is
 * its block of rows of the micro batch. */
#include "models/gpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/arena.h"
#ifdef MEGATRON_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif
#include "models/gpt_internal.h"
#include "util/error.h"

/* Activations of one micro batch on one chunk, all views into one arena. Tensors named *_full
 * span the whole micro batch [B*T, ...]; the residual stream spans this rank's rows. Without
 * sequence parallelism the two are the same tensor. hidden[0] is the chunk's input (the
 * embeddings on the first stage), hidden[num_layers] its output; dhidden carries the gradient
 * backwards through the chunk's layers, in place. */
struct gpt_activations {
    struct arena arena;
    struct tensor tokens, labels, positions, loss_mask; /* device copies of the batch [B*T] */
    struct tensor positions_local;                      /* this rank's rows of positions */
    struct tensor embedding_full;                       /* pre_process */
    struct tensor *hidden;      /* [num_layers + 1] residual stream */
    struct layer_acts *layers;  /* [num_layers] */
    struct norm_acts final_norm; /* post_process */
    struct lm_head_acts head;
    struct tensor dlosses;
    struct tensor dhidden, dhidden_full;
};

/* What every backward uses only while it runs: one arena for all chunks and slots. */
struct gpt_shared_scratch {
    struct arena arena;
    struct layer_scratch scratch;
    struct tensor dhidden_full; /* sequence parallelism only */
    struct tensor dfinal, dfinal_full;
};

/* ---- activations ---- */

/* A [rows, 1] arena tensor viewed as 1-D [rows]. */
static struct tensor vec(struct arena *ar, enum dtype dt, int64_t rows)
{
    struct tensor t = arena_tensor(ar, dt, rows, 1);
    t.ndim = 1;
    t.shape[1] = 0;
    return t;
}

/* Attention probabilities [B, n, T, T] (CPU) or log-sum-exp [B, n, T] (CUDA), see ops.h. */
static struct tensor attention_saved(struct arena *ar, int64_t batch, int64_t heads, int64_t t_len,
                                     enum device dev)
{
    struct tensor t = arena_tensor(ar, DT_F32, batch * heads * t_len, dev == DEV_CPU ? t_len : 1);
    t.ndim = dev == DEV_CPU ? 4 : 3;
    t.shape[0] = batch;
    t.shape[1] = heads;
    t.shape[2] = t_len;
    t.shape[3] = dev == DEV_CPU ? t_len : 0;
    return t;
}

/* A [n, h] tensor that is `local` itself unless sequence parallelism needs a separate one. */
static struct tensor full_or_same(struct arena *ar, bool sp, struct tensor local, int64_t n, int64_t h)
{
    return sp ? arena_tensor(ar, local.dtype, n, h) : local;
}

static void layout_norm(struct arena *ar, struct norm_acts *a, enum dtype dt, int64_t rows, int64_t h)
{
    a->out = arena_tensor(ar, dt, rows, h);
    a->mean = vec(ar, DT_F32, rows);
    a->rstd = vec(ar, DT_F32, rows);
}

enum dtype gpt_activation_dtype(const struct model_config *cfg, enum device dev)
{
    if (dev != DEV_CUDA) return DT_F32;
    return cfg->fp16 ? DT_F16 : DT_BF16;
}

/* The sizes every layout below shares. */
struct dims {
    enum dtype act;  /* activations; statistics stay fp32 */
    bool sp;
    int64_t n, h, rows;
};

static struct dims dims_of(const struct model_config *c, const struct tp_group *tp, int64_t batch, enum device dev)
{
    struct dims d;
    d.act = gpt_activation_dtype(c, dev);
    d.sp = tp->sequence_parallel;
    d.n = batch * c->seq_length;
    d.h = c->hidden_size;
    d.rows = d.sp ? d.n / tp->size : d.n;
    return d;
}

static void layout_shared(struct gpt_shared_scratch *s, const struct model_config *c, const struct tp_group *tp,
                          int64_t batch, enum device dev)
{
    struct arena *ar = &s->arena;
    struct dims d = dims_of(c, tp, batch, dev);
    int64_t heads = c->num_attention_heads / tp->size, qkv = gpt_qkv_width(c) / tp->size;
    int64_t ffn = c->ffn_hidden_size / tp->size, fc1 = gpt_fc1_width(c) / tp->size;
    struct layer_scratch *ls = &s->scratch;
    ls->tmp = arena_tensor(ar, d.act, d.rows, d.h);
    ls->tmp_full = full_or_same(ar, d.sp, ls->tmp, d.n, d.h);
    ls->dmid = arena_tensor(ar, d.act, d.rows, d.h);
    ls->dnorm = arena_tensor(ar, d.act, d.rows, d.h);
    ls->dnorm_full = full_or_same(ar, d.sp, ls->dnorm, d.n, d.h);
    ls->dsub = arena_tensor(ar, d.act, d.rows, d.h);
    ls->dsub_full = full_or_same(ar, d.sp, ls->dsub, d.n, d.h);
    ls->attention.dqkv = arena_tensor(ar, d.act, d.n, qkv);
    ls->attention.dcontext = arena_tensor(ar, d.act, d.n, heads * c->kv_channels);
    ls->mlp.dfc1 = arena_tensor(ar, d.act, d.n, fc1);
    ls->mlp.dact = arena_tensor(ar, d.act, d.n, ffn);
    s->dhidden_full = d.sp ? arena_tensor(ar, d.act, d.n, d.h) : tensor_none();
    s->dfinal = arena_tensor(ar, d.act, d.rows, d.h);
    s->dfinal_full = full_or_same(ar, d.sp, s->dfinal, d.n, d.h);
}

static void layout_slot(struct gpt_activations *a, const struct gpt_shared_scratch *shared,
                        const struct model_config *c, const struct tp_group *tp, int64_t batch, enum device dev,
                        const struct gpt_chunk_spec *chunk)
{
    struct arena *ar = &a->arena;
    struct dims d = dims_of(c, tp, batch, dev);
    int64_t heads = c->num_attention_heads / tp->size, qkv = gpt_qkv_width(c) / tp->size;
    int64_t ffn = c->ffn_hidden_size / tp->size, fc1 = gpt_fc1_width(c) / tp->size;
    int64_t vocab = c->padded_vocab_size / tp->size;
    a->tokens = vec(ar, DT_I32, d.n);
    a->labels = vec(ar, DT_I32, d.n);
    a->positions = vec(ar, DT_I32, d.n);
    a->loss_mask = vec(ar, DT_F32, d.n);
    a->positions_local = a->positions;
    a->positions_local.shape[0] = d.rows;
    if (a->positions.data) a->positions_local.data = (int32_t *)a->positions.data + (d.sp ? tp->rank * d.rows : 0);
    for (int64_t l = 0; l <= chunk->num_layers; l++) a->hidden[l] = arena_tensor(ar, d.act, d.rows, d.h);
    if (chunk->pre_process) a->embedding_full = full_or_same(ar, d.sp, a->hidden[0], d.n, d.h);
    for (int64_t l = 0; l < chunk->num_layers; l++) {
        struct layer_acts *la = &a->layers[l];
        layout_norm(ar, &la->input_norm, d.act, d.rows, d.h);
        la->attention_input = full_or_same(ar, d.sp, la->input_norm.out, d.n, d.h);
        la->attention.qkv = arena_tensor(ar, d.act, d.n, qkv);
        la->attention.probs = attention_saved(ar, batch, heads, c->seq_length, dev);
        la->attention.context = arena_tensor(ar, d.act, d.n, heads * c->kv_channels);
        la->mid = arena_tensor(ar, d.act, d.rows, d.h);
        layout_norm(ar, &la->pre_mlp_norm, d.act, d.rows, d.h);
        la->mlp_input = full_or_same(ar, d.sp, la->pre_mlp_norm.out, d.n, d.h);
        la->mlp.fc1 = arena_tensor(ar, d.act, d.n, fc1);
        la->mlp.act = arena_tensor(ar, d.act, d.n, ffn);
    }
    if (chunk->post_process) {
        layout_norm(ar, &a->final_norm, d.act, d.rows, d.h);
        struct lm_head_acts *hd = &a->head;
        hd->input = full_or_same(ar, d.sp, a->final_norm.out, d.n, d.h);
        hd->logits = arena_tensor(ar, d.act, d.n, vocab);
        hd->losses = vec(ar, DT_F32, d.n);
        hd->lse = vec(ar, DT_F32, d.n);
        hd->row_max = vec(ar, DT_F32, d.n);
        hd->sum_exp = vec(ar, DT_F32, d.n);
        hd->target_logit = vec(ar, DT_F32, d.n);
        hd->global_max = vec(ar, DT_F32, d.n);
        hd->row_scale = vec(ar, DT_F32, d.n);
        /* op_output_layer_cross_entropy's gradient by rows: on the GPU, the whole vocabulary */
        hd->scaled_input = dev == DEV_CUDA && tp->size == 1 ? arena_tensor(ar, d.act, d.n, d.h)
                                                            : tensor_none();
        a->dlosses = vec(ar, DT_F32, d.n);
    }
    a->dhidden = arena_tensor(ar, d.act, d.rows, d.h);
    a->dhidden_full = d.sp ? shared->dhidden_full : a->dhidden;
}

static struct gpt_shared_scratch *create_shared(const struct model_config *c, const struct tp_group *tp,
                                                int64_t batch, enum device dev)
{
    struct gpt_shared_scratch *s = xcalloc(1, sizeof *s);
    arena_init_measure(&s->arena, dev);
    layout_shared(s, c, tp, batch, dev);
    size_t bytes = s->arena.used;
    arena_init_alloc(&s->arena, dev, bytes);
    layout_shared(s, c, tp, batch, dev);
    return s;
}

static struct gpt_activations *create_slot(const struct gpt_shared_scratch *shared, const struct model_config *c,
                                           const struct tp_group *tp, int64_t batch, enum device dev,
                                           const struct gpt_chunk_spec *chunk)
{
    struct gpt_activations *a = xcalloc(1, sizeof *a);
    a->hidden = xcalloc((size_t)chunk->num_layers + 1, sizeof *a->hidden);
    a->layers = xcalloc((size_t)chunk->num_layers + 1, sizeof *a->layers);
    arena_init_measure(&a->arena, dev);
    layout_slot(a, shared, c, tp, batch, dev, chunk);
    size_t bytes = a->arena.used;
    arena_init_alloc(&a->arena, dev, bytes);
    layout_slot(a, shared, c, tp, batch, dev, chunk);
    return a;
}

static void free_slot(struct gpt_activations *a)
{
    arena_free(&a->arena);
    free(a->hidden);
    free(a->layers);
    free(a);
}

/* ---- model ---- */

struct gpt_model *gpt_create_stage(const struct model_config *cfg, int64_t micro_batch, enum device dev,
                                   const struct tp_group *tp, int64_t buffer_multiple,
                                   const struct gpt_chunk_spec *chunks, int num_chunks)
{
    if (num_chunks < 1) BUG("gpt_create_stage: %d chunks", num_chunks);
    struct gpt_model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->device = dev;
    m->tp = tp ? *tp : tp_group_single();
    m->num_chunks = num_chunks;
    m->chunks = xcalloc((size_t)num_chunks, sizeof *m->chunks);
    for (int c = 0; c < num_chunks; c++) m->chunks[c].spec = chunks[c];
    gpt_build_params(m);
    if (buffer_multiple < 1) buffer_multiple = 1;
    m->buffer_numel = (m->numel + buffer_multiple - 1) / buffer_multiple * buffer_multiple;
    m->weights = device_alloc(dev, (size_t)m->buffer_numel * sizeof(float));
    m->grads = device_alloc(dev, (size_t)m->buffer_numel * sizeof(float));
    m->activation_dtype = gpt_activation_dtype(cfg, dev);
    if (dev == DEV_CUDA)
        m->weights_lp = device_alloc(dev, (size_t)m->buffer_numel * dtype_size(m->activation_dtype));
    m->layers = xcalloc((size_t)cfg->num_layers, sizeof *m->layers);
    m->layer_grads = xcalloc((size_t)cfg->num_layers, sizeof *m->layer_grads);
    if (m->weights_lp)
        gpt_bind_views(m, m->weights_lp, m->activation_dtype, &m->embedding, m->layers, &m->final_norm,
                       &m->output_weight);
    else
        gpt_bind_views(m, m->weights, DT_F32, &m->embedding, m->layers, &m->final_norm, &m->output_weight);
    gpt_bind_views(m, m->grads, DT_F32, &m->embedding_grad, m->layer_grads, &m->final_norm_grad,
                   &m->output_weight_grad);
    int64_t nz;
    int64_t *zr = gpt_grad_zero_ranges(m, &nz);
    m->grad_zero_ranges = tensor_2d(device_alloc(dev, (size_t)(nz > 0 ? nz : 1) * 2 * sizeof(int64_t)),
                                    DT_I64, dev, nz, 2);
    device_copy_to(dev, m->grad_zero_ranges.data, zr, (size_t)nz * 2 * sizeof(int64_t));
    free(zr);
    m->loss_sum = device_alloc(dev, sizeof(double));
    m->batch = micro_batch;
    m->scratch = create_shared(cfg, &m->tp, micro_batch, dev);
    for (int c = 0; c < num_chunks; c++) {
        struct gpt_chunk *ch = &m->chunks[c];
        if (ch->spec.num_slots < 1) BUG("gpt_create_stage: chunk %d has %d slots", c, ch->spec.num_slots);
        ch->slots = xcalloc((size_t)ch->spec.num_slots, sizeof *ch->slots);
        for (int k = 0; k < ch->spec.num_slots; k++)
            ch->slots[k] = create_slot(m->scratch, cfg, &m->tp, micro_batch, dev, &ch->spec);
    }
    return m;
}

struct gpt_model *gpt_create(const struct model_config *cfg, int64_t micro_batch, enum device dev,
                             const struct tp_group *tp, int64_t buffer_multiple)
{
    struct gpt_chunk_spec whole = {0, cfg->num_layers, true, true, 1};
    return gpt_create_stage(cfg, micro_batch, dev, tp, buffer_multiple, &whole, 1);
}

void gpt_free(struct gpt_model *m)
{
    if (!m) return;
    for (int c = 0; c < m->num_chunks; c++) {
        for (int k = 0; k < m->chunks[c].spec.num_slots; k++) free_slot(m->chunks[c].slots[k]);
        free(m->chunks[c].slots);
    }
    free(m->chunks);
    arena_free(&m->scratch->arena);
    free(m->scratch);
    device_free(m->device, m->weights);
    device_free(m->device, m->grads);
    device_free(m->device, m->grad_zero_ranges.data);
    if (m->weights_lp) device_free(m->device, m->weights_lp);
    device_free(m->device, m->loss_sum);
    free(m->layers);
    free(m->layer_grads);
    free(m->params);
    free(m);
}

void gpt_zero_grads(struct gpt_model *m)
{
    op_zero_ranges(tensor_1d(m->grads, DT_F32, m->device, m->buffer_numel), m->grad_zero_ranges);
}

static struct layer_ctx make_ctx(const struct gpt_model *m, const struct gpt_batch *b)
{
    struct layer_ctx ctx;
    int64_t n = b->batch * m->cfg.seq_length;
    ctx.cfg = &m->cfg;
    ctx.tp = &m->tp;
    ctx.batch = b->batch;
    ctx.seq = m->cfg.seq_length;
    ctx.rows = m->tp.sequence_parallel ? n / m->tp.size : n;
    ctx.row_offset = m->tp.sequence_parallel ? m->tp.rank * ctx.rows : 0;
    ctx.layer = -1;
    ctx.dropout_stream = b->dropout_stream;
    ctx.device_dropout_stream = b->device_dropout_stream;
    ctx.sample_offset = b->sample_offset;
    ctx.training = b->training;
    ctx.write_weight_grads = b->write_weight_grads;
    return ctx;
}

void gpt_set_weights(struct gpt_model *m, const float *host)
{
    device_copy_to(m->device, m->weights, host, (size_t)m->buffer_numel * sizeof(float));
    gpt_weights_changed(m, 0, m->buffer_numel);
}

void gpt_weights_changed(struct gpt_model *m, int64_t lo, int64_t hi)
{
    if (!m->weights_lp || hi <= lo) return;
#ifdef MEGATRON_CUDA
    cuda_f32_to_lp((uint16_t *)m->weights_lp + lo, m->weights + lo, hi - lo, m->activation_dtype);
#endif
}

/* The micro batch's inputs, queued before its forward: the host does not wait for the GPU here.
 * Inputs already on the device are copied there (a queued copy within the GPU). */
static void stage_batch(struct gpt_model *m, struct gpt_activations *a, const struct gpt_batch *b, int64_t n)
{
    if (b->device_tokens) {
        op_copy(a->tokens, tensor_1d((void *)b->device_tokens, DT_I32, m->device, n));
        op_copy(a->labels, tensor_1d((void *)b->device_labels, DT_I32, m->device, n));
        op_copy(a->positions, tensor_1d((void *)b->device_positions, DT_I32, m->device, n));
        op_copy(a->loss_mask, tensor_1d((void *)b->device_loss_mask, DT_F32, m->device, n));
        return;
    }
    device_copy_to_queued(m->device, a->tokens.data, b->tokens, (size_t)n * sizeof(int32_t));
    device_copy_to_queued(m->device, a->labels.data, b->labels, (size_t)n * sizeof(int32_t));
    device_copy_to_queued(m->device, a->positions.data, b->positions, (size_t)n * sizeof(int32_t));
    device_copy_to_queued(m->device, a->loss_mask.data, b->loss_mask, (size_t)n * sizeof(float));
}

static struct gpt_activations *slot_of(const struct gpt_model *m, int chunk, int slot)
{
    if (chunk < 0 || chunk >= m->num_chunks || slot < 0 || slot >= m->chunks[chunk].spec.num_slots)
        BUG("gpt: no chunk %d slot %d", chunk, slot);
    return m->chunks[chunk].slots[slot];
}

/* acc += sum(mask x losses), the partial sum of this micro batch first (on either backend). */
static void add_masked_sum(struct gpt_model *m, struct tensor losses, struct tensor mask, int64_t n)
{
#ifdef MEGATRON_CUDA
    if (m->device == DEV_CUDA) {
        cuda_masked_sum_accumulate(m->loss_sum, losses.data, mask.data, n);
        return;
    }
#endif
    const float *l = losses.data, *w = mask.data;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)w[i] * l[i];
    m->loss_sum[0] += sum;
}

/* d loss / d token loss = loss_scale x loss_mask, made where the mask's copy is; on the GPU the
 * factor may be read from device memory instead (device_scale not NULL). */
static void seed_loss_gradient(struct gpt_model *m, struct tensor dlosses, struct tensor mask, float loss_scale,
                               const float *device_scale, int64_t n)
{
    op_copy(dlosses, mask);
#ifdef MEGATRON_CUDA
    if (m->device == DEV_CUDA) {
        if (device_scale)
            cuda_scale_f32_by(dlosses.data, n, device_scale);
        else
            cuda_scale_f32(dlosses.data, n, loss_scale);
        return;
    }
#endif
    if (device_scale) BUG("seed_loss_gradient: a device factor on the CPU backend");
    (void)m;
    float *d = dlosses.data;
    for (int64_t i = 0; i < n; i++) d[i] = loss_scale * d[i];
}

float gpt_loss_grad_factor(double loss_scale, double tokens, double loss_divisor)
{
    return (float)(loss_scale / ((tokens > 0 ? tokens : 1.0) * loss_divisor));
}

double gpt_batch_tokens(const float *loss_mask, int64_t n)
{
    double tokens = 0.0;
    for (int64_t i = 0; i < n; i++) tokens += loss_mask[i];
    return tokens;
}

double gpt_forward_chunk(struct gpt_model *m, int chunk, int slot, const struct gpt_batch *b)
{
    const struct model_config *c = &m->cfg;
    const struct gpt_chunk_spec *spec = &m->chunks[chunk].spec;
    struct gpt_activations *a = slot_of(m, chunk, slot);
    struct layer_scratch *scratch = &m->scratch->scratch;
    struct layer_ctx ctx = make_ctx(m, b);
    int64_t n = b->batch * c->seq_length, count = spec->num_layers;
    /* Megatron's micro batch size is fixed for a run; the arenas are sized for it */
    if (b->batch != m->batch) BUG("micro batch %lld != %lld", (long long)b->batch, (long long)m->batch);
    stage_batch(m, a, b, n);

    if (spec->pre_process)
        embedding_forward(&ctx, &m->embedding, a->hidden[0], a->embedding_full, scratch->tmp, a->tokens,
                          a->positions_local);
    /* layers by their index in the whole model (dropout masks key on it), each one's last
       bias-dropout-add fused with the norm after it */
    int first = (int)spec->first_layer;
    transformer_block_forward(&ctx, first, (int)count, &m->layers[first], a->layers, scratch, a->hidden,
                              spec->post_process ? &m->final_norm : NULL,
                              spec->post_process ? &a->final_norm : NULL, a->positions);
    if (!spec->post_process) return 0.0;
    ctx.layer = -1;
    double tokens = gpt_batch_tokens(b->loss_mask, n);
    struct tensor dlosses = tensor_none();
    if (b->loss_divisor > 0.0 && m->tp.size == 1) { /* a training step: the loss gradient is known now */
        seed_loss_gradient(m, a->dlosses, a->loss_mask,
                           gpt_loss_grad_factor(b->loss_scale, b->per_token_loss ? 1.0 : tokens, b->loss_divisor),
                           b->device_loss_grad_factor, n);
        dlosses = a->dlosses;
    }
    tp_gather_rows(&m->tp, a->final_norm.out, a->head.input);
    lm_head_forward(&ctx, m->output_weight, m->embedding.vocab_start, &a->head, a->labels, dlosses);
    add_masked_sum(m, a->head.losses, a->loss_mask, n);
    return tokens;
}

void gpt_loss_reset(struct gpt_model *m) { device_zero(m->device, m->loss_sum, sizeof(double)); }

double gpt_loss_read(struct gpt_model *m)
{
    double sum = 0.0;
    device_copy_from(m->device, &sum, m->loss_sum, sizeof sum);
    return sum;
}

void gpt_backward_chunk(struct gpt_model *m, int chunk, int slot, const struct gpt_batch *b, float loss_scale)
{
    const struct model_config *c = &m->cfg;
    const struct gpt_chunk_spec *spec = &m->chunks[chunk].spec;
    struct gpt_activations *a = slot_of(m, chunk, slot);
    struct gpt_shared_scratch *sh = m->scratch;
    struct layer_ctx ctx = make_ctx(m, b);
    int64_t n = b->batch * c->seq_length, count = spec->num_layers;
    bool hook = b->on_grads_ready != NULL;
    if (spec->post_process) {
        if (!a->head.grad_in_logits) seed_loss_gradient(m, a->dlosses, a->loss_mask, loss_scale, NULL, n);
        struct tensor row_scale = lm_head_backward(&ctx, m->output_weight, m->output_weight_grad,
                                                   m->embedding.vocab_start, &a->head, a->dlosses,
                                                   sh->dfinal_full, a->labels);
        /* the final norm's output fed every rank's vocabulary shard: sum their input gradients
           (given by rows only on one rank: lm_head_forward) */
        tp_reduce_to_rows(&m->tp, sh->dfinal_full, sh->dfinal);
        norm_backward(&ctx, &m->final_norm, &m->final_norm_grad, &a->final_norm, a->dhidden, sh->dfinal,
                      row_scale, a->hidden[count]);
        if (hook) b->on_grads_ready(b->hook_ctx, c->num_layers);
    }
    for (int64_t i = count - 1; i >= 0; i--) {
        ctx.layer = (int)(spec->first_layer + i);
        transformer_layer_backward(&ctx, &m->layers[ctx.layer], &m->layer_grads[ctx.layer], &a->layers[i],
                                   &sh->scratch, a->dhidden, a->dhidden, a->hidden[i], a->positions);
        if (hook) b->on_grads_ready(b->hook_ctx, ctx.layer);
    }
    if (!spec->pre_process) return;
    ctx.layer = -1;
    embedding_backward(&ctx, &m->embedding_grad, a->dhidden, a->dhidden_full, a->tokens, a->positions_local);
    if (hook) b->on_grads_ready(b->hook_ctx, -1);
}

/* The whole model is one chunk that starts and ends it. */
static void require_whole(const struct gpt_model *m, const char *what)
{
    if (m->num_chunks != 1 || !m->chunks[0].spec.pre_process || !m->chunks[0].spec.post_process)
        BUG("%s: the model is split into pipeline stages", what);
}

double gpt_forward(struct gpt_model *m, const struct gpt_batch *b, double *num_tokens)
{
    require_whole(m, "gpt_forward");
    gpt_loss_reset(m);
    *num_tokens = gpt_forward_chunk(m, 0, 0, b);
    return gpt_loss_read(m);
}

void gpt_backward(struct gpt_model *m, const struct gpt_batch *b, float loss_scale)
{
    require_whole(m, "gpt_backward");
    gpt_backward_chunk(m, 0, 0, b, loss_scale);
}

struct tensor gpt_logits(const struct gpt_model *m)
{
    for (int c = 0; c < m->num_chunks; c++)
        if (m->chunks[c].spec.post_process) return slot_of(m, c, 0)->head.logits;
    BUG("gpt_logits: this rank holds no output layer");
}

struct tensor gpt_chunk_input(const struct gpt_model *m, int chunk, int slot) { return slot_of(m, chunk, slot)->hidden[0]; }

struct tensor gpt_chunk_output(const struct gpt_model *m, int chunk, int slot)
{
    return slot_of(m, chunk, slot)->hidden[m->chunks[chunk].spec.num_layers];
}

struct tensor gpt_chunk_grad(const struct gpt_model *m, int chunk, int slot) { return slot_of(m, chunk, slot)->dhidden; }
