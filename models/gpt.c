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

/* Activations and scratch of one micro batch, all views into one arena. Tensors named *_full
 * span the whole micro batch [B*T, ...]; the residual stream spans this rank's rows. Without
 * sequence parallelism the two are the same tensor. */
struct gpt_activations {
    struct arena arena;
    struct tensor tokens, labels, positions, loss_mask; /* device copies of the batch [B*T] */
    struct tensor positions_local;                      /* this rank's rows of positions */
    struct tensor embedding_full;
    struct tensor *hidden;      /* [L + 1] residual stream: hidden[0] = embeddings */
    struct layer_acts *layers;  /* [L] */
    struct norm_acts final_norm;
    struct lm_head_acts head;
    struct tensor dlosses;
    struct layer_scratch scratch;
    struct tensor dhidden, dhidden_full, dfinal, dfinal_full;
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

static void layout_activations(struct gpt_activations *a, const struct model_config *c,
                               const struct tp_group *tp, int64_t batch, enum device dev)
{
    struct arena *ar = &a->arena;
    enum dtype A = dev == DEV_CUDA ? DT_BF16 : DT_F32; /* activations; statistics stay fp32 */
    bool sp = tp->sequence_parallel;
    int64_t n = batch * c->seq_length, h = c->hidden_size, rows = sp ? n / tp->size : n;
    int64_t heads = c->num_attention_heads / tp->size, qkv = gpt_qkv_width(c) / tp->size;
    int64_t ffn = c->ffn_hidden_size / tp->size, fc1 = gpt_fc1_width(c) / tp->size;
    int64_t vocab = c->padded_vocab_size / tp->size;
    a->tokens = vec(ar, DT_I32, n);
    a->labels = vec(ar, DT_I32, n);
    a->positions = vec(ar, DT_I32, n);
    a->loss_mask = vec(ar, DT_F32, n);
    a->positions_local = a->positions;
    a->positions_local.shape[0] = rows;
    if (a->positions.data) a->positions_local.data = (int32_t *)a->positions.data + (sp ? tp->rank * rows : 0);
    for (int l = 0; l <= c->num_layers; l++) a->hidden[l] = arena_tensor(ar, A, rows, h);
    a->embedding_full = full_or_same(ar, sp, a->hidden[0], n, h);
    for (int l = 0; l < c->num_layers; l++) {
        struct layer_acts *la = &a->layers[l];
        layout_norm(ar, &la->input_norm, A, rows, h);
        la->attention_input = full_or_same(ar, sp, la->input_norm.out, n, h);
        la->attention.qkv = arena_tensor(ar, A, n, qkv);
        la->attention.probs = attention_saved(ar, batch, heads, c->seq_length, dev);
        la->attention.context = arena_tensor(ar, A, n, heads * c->kv_channels);
        la->mid = arena_tensor(ar, A, rows, h);
        layout_norm(ar, &la->pre_mlp_norm, A, rows, h);
        la->mlp_input = full_or_same(ar, sp, la->pre_mlp_norm.out, n, h);
        la->mlp.fc1 = arena_tensor(ar, A, n, fc1);
        la->mlp.act = arena_tensor(ar, A, n, ffn);
    }
    layout_norm(ar, &a->final_norm, A, rows, h);
    struct lm_head_acts *hd = &a->head;
    hd->input = full_or_same(ar, sp, a->final_norm.out, n, h);
    hd->logits = arena_tensor(ar, A, n, vocab);
    hd->losses = vec(ar, DT_F32, n);
    hd->lse = vec(ar, DT_F32, n);
    hd->row_max = vec(ar, DT_F32, n);
    hd->sum_exp = vec(ar, DT_F32, n);
    hd->target_logit = vec(ar, DT_F32, n);
    hd->global_max = vec(ar, DT_F32, n);
    a->dlosses = vec(ar, DT_F32, n);
    struct layer_scratch *s = &a->scratch;
    s->tmp = arena_tensor(ar, A, rows, h);
    s->tmp_full = full_or_same(ar, sp, s->tmp, n, h);
    s->dmid = arena_tensor(ar, A, rows, h);
    s->dnorm = arena_tensor(ar, A, rows, h);
    s->dnorm_full = full_or_same(ar, sp, s->dnorm, n, h);
    s->dsub = arena_tensor(ar, A, rows, h);
    s->dsub_full = full_or_same(ar, sp, s->dsub, n, h);
    s->attention.dqkv = arena_tensor(ar, A, n, qkv);
    s->attention.dcontext = arena_tensor(ar, A, n, heads * c->kv_channels);
    s->mlp.dfc1 = arena_tensor(ar, A, n, fc1);
    s->mlp.dact = arena_tensor(ar, A, n, ffn);
    a->dhidden = arena_tensor(ar, A, rows, h);
    a->dhidden_full = full_or_same(ar, sp, a->dhidden, n, h);
    a->dfinal = arena_tensor(ar, A, rows, h);
    a->dfinal_full = full_or_same(ar, sp, a->dfinal, n, h);
}

static struct gpt_activations *create_activations(const struct model_config *c, const struct tp_group *tp,
                                                  int64_t batch, enum device dev)
{
    struct gpt_activations *a = xcalloc(1, sizeof *a);
    a->hidden = xcalloc((size_t)c->num_layers + 1, sizeof *a->hidden);
    a->layers = xcalloc((size_t)c->num_layers, sizeof *a->layers);
    arena_init_measure(&a->arena, dev);
    layout_activations(a, c, tp, batch, dev);
    size_t bytes = a->arena.used;
    arena_init_alloc(&a->arena, dev, bytes);
    layout_activations(a, c, tp, batch, dev);
    return a;
}

static void free_activations(struct gpt_activations *a)
{
    arena_free(&a->arena);
    free(a->hidden);
    free(a->layers);
    free(a);
}

/* ---- model ---- */

struct gpt_model *gpt_create(const struct model_config *cfg, int64_t micro_batch, enum device dev,
                             const struct tp_group *tp, int64_t buffer_multiple)
{
    struct gpt_model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->device = dev;
    m->tp = tp ? *tp : tp_group_single();
    gpt_build_params(m);
    if (buffer_multiple < 1) buffer_multiple = 1;
    m->buffer_numel = (m->numel + buffer_multiple - 1) / buffer_multiple * buffer_multiple;
    m->weights = device_alloc(dev, (size_t)m->buffer_numel * sizeof(float));
    m->grads = device_alloc(dev, (size_t)m->buffer_numel * sizeof(float));
    m->activation_dtype = dev == DEV_CUDA ? DT_BF16 : DT_F32;
    if (dev == DEV_CUDA) m->weights_lp = device_alloc(dev, (size_t)m->buffer_numel * dtype_size(DT_BF16));
    m->layers = xcalloc((size_t)cfg->num_layers, sizeof *m->layers);
    m->layer_grads = xcalloc((size_t)cfg->num_layers, sizeof *m->layer_grads);
    if (m->weights_lp)
        gpt_bind_views(m, m->weights_lp, DT_BF16, &m->embedding, m->layers, &m->final_norm, &m->output_weight);
    else
        gpt_bind_views(m, m->weights, DT_F32, &m->embedding, m->layers, &m->final_norm, &m->output_weight);
    gpt_bind_views(m, m->grads, DT_F32, &m->embedding_grad, m->layer_grads, &m->final_norm_grad,
                   &m->output_weight_grad);
    m->host_losses = xmalloc((size_t)(micro_batch * cfg->seq_length) * sizeof(float));
    m->host_dlosses = xmalloc((size_t)(micro_batch * cfg->seq_length) * sizeof(float));
    m->batch = micro_batch;
    m->acts = create_activations(cfg, &m->tp, micro_batch, dev);
    return m;
}

void gpt_free(struct gpt_model *m)
{
    if (!m) return;
    free_activations(m->acts);
    device_free(m->device, m->weights);
    device_free(m->device, m->grads);
    if (m->weights_lp) device_free(m->device, m->weights_lp);
    free(m->host_losses);
    free(m->host_dlosses);
    free(m->layers);
    free(m->layer_grads);
    free(m->params);
    free(m);
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
    ctx.sample_offset = b->sample_offset;
    ctx.training = b->training;
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
    cuda_f32_to_bf16((uint16_t *)m->weights_lp + lo, m->weights + lo, hi - lo);
#endif
}

static void stage_batch(struct gpt_model *m, const struct gpt_batch *b, int64_t n)
{
    struct gpt_activations *a = m->acts;
    device_copy_to(m->device, a->tokens.data, b->tokens, (size_t)n * sizeof(int32_t));
    device_copy_to(m->device, a->labels.data, b->labels, (size_t)n * sizeof(int32_t));
    device_copy_to(m->device, a->positions.data, b->positions, (size_t)n * sizeof(int32_t));
    device_copy_to(m->device, a->loss_mask.data, b->loss_mask, (size_t)n * sizeof(float));
}

double gpt_forward(struct gpt_model *m, const struct gpt_batch *b, double *num_tokens)
{
    const struct model_config *c = &m->cfg;
    struct gpt_activations *a = m->acts;
    struct layer_ctx ctx = make_ctx(m, b);
    int64_t n = b->batch * c->seq_length;
    /* Megatron's micro batch size is fixed for a run; the arena is sized for it */
    if (b->batch != m->batch) BUG("micro batch %lld != %lld", (long long)b->batch, (long long)m->batch);
    stage_batch(m, b, n);

    embedding_forward(&ctx, &m->embedding, a->hidden[0], a->embedding_full, a->scratch.tmp, a->tokens,
                      a->positions_local);
    for (int l = 0; l < c->num_layers; l++) {
        ctx.layer = l;
        transformer_layer_forward(&ctx, &m->layers[l], &a->layers[l], &a->scratch, a->hidden[l + 1],
                                  a->hidden[l], a->positions);
    }
    ctx.layer = -1;
    norm_forward(&ctx, &m->final_norm, &a->final_norm, a->hidden[c->num_layers]);
    tp_gather_rows(&m->tp, a->final_norm.out, a->head.input);
    lm_head_forward(&ctx, m->output_weight, m->embedding.vocab_start, &a->head, a->labels);

    /* the one host synchronisation of a step: the logged loss */
    device_copy_from(m->device, m->host_losses, a->head.losses.data, (size_t)n * sizeof(float));
    const float *losses = m->host_losses, *mask = b->loss_mask;
    double sum = 0.0, count = 0.0;
    for (int64_t i = 0; i < n; i++) {
        sum += (double)mask[i] * losses[i];
        count += mask[i];
    }
    *num_tokens = count;
    return sum;
}

void gpt_backward(struct gpt_model *m, const struct gpt_batch *b, float loss_scale)
{
    const struct model_config *c = &m->cfg;
    struct gpt_activations *a = m->acts;
    struct layer_ctx ctx = make_ctx(m, b);
    int64_t n = b->batch * c->seq_length;
    float *dl = m->host_dlosses;
    for (int64_t i = 0; i < n; i++) dl[i] = loss_scale * b->loss_mask[i];
    device_copy_to(m->device, a->dlosses.data, dl, (size_t)n * sizeof(float));

    lm_head_backward(&ctx, m->output_weight, m->output_weight_grad, m->embedding.vocab_start, &a->head,
                     a->dlosses, a->dfinal_full, a->labels);
    bool hook = b->on_grads_ready != NULL;
    /* the final norm's output fed every rank's vocabulary shard: sum their input gradients */
    tp_reduce_to_rows(&m->tp, a->dfinal_full, a->dfinal);
    norm_backward(&ctx, &m->final_norm, &m->final_norm_grad, &a->final_norm, a->dhidden, a->dfinal,
                  a->hidden[c->num_layers]);
    if (hook) b->on_grads_ready(b->hook_ctx, c->num_layers);
    for (int l = c->num_layers - 1; l >= 0; l--) {
        ctx.layer = l;
        transformer_layer_backward(&ctx, &m->layers[l], &m->layer_grads[l], &a->layers[l], &a->scratch,
                                   a->dhidden, a->dhidden, a->hidden[l], a->positions);
        if (hook) b->on_grads_ready(b->hook_ctx, l);
    }
    ctx.layer = -1;
    embedding_backward(&ctx, &m->embedding_grad, a->dhidden, a->dhidden_full, a->tokens, a->positions_local);
    if (hook) b->on_grads_ready(b->hook_ctx, -1);
}

struct tensor gpt_logits(const struct gpt_model *m) { return m->acts->head.logits; }
