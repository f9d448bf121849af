/* The GPT model: builds the parameter table in Megatron-Core's names, lays the parameters out in
 * one flat buffer (grads in a matching one), initialises them from the counter-based RNG, sizes
 * the activation arena for one micro batch, and runs forward and backward through the layers. */
#include "models/gpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/arena.h"
#include "kernels/rng.h"
#include "util/error.h"

/* Activations and scratch of one micro batch, all views into one arena. */
struct gpt_activations {
    struct arena arena;
    struct tensor tokens, labels, positions, loss_mask; /* device copies of the batch */
    struct tensor *hidden;      /* [L + 1] residual stream: hidden[0] = embeddings */
    struct layer_acts *layers;  /* [L] */
    struct norm_acts final_norm;
    struct tensor logits, losses, dlosses;
    struct layer_scratch scratch;
    struct tensor dhidden, dfinal;
};

/* ---- parameter table ---- */

struct table {
    struct gpt_param *p;
    int count, cap;
    int64_t numel;
};

static void add_param(struct table *t, const char *name, int64_t d0, int64_t d1, enum param_init init)
{
    if (t->count == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->p = xrealloc(t->p, (size_t)t->cap * sizeof *t->p);
    }
    struct gpt_param *p = &t->p[t->count++];
    memset(p, 0, sizeof *p);
    if (snprintf(p->name, sizeof p->name, "%s", name) >= (int)sizeof p->name) BUG("name too long: %s", name);
    p->ndim = d1 > 0 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1 > 0 ? d1 : 0;
    p->numel = d1 > 0 ? d0 * d1 : d0;
    p->full_shape[0] = p->shape[0];
    p->full_shape[1] = p->shape[1];
    p->shard_dim = -1; /* no tensor parallelism yet: every parameter is whole */
    p->num_pieces = 1;
    p->pieces[0].length = d0;
    p->offset = t->numel;
    p->init = init;
    p->no_weight_decay = p->ndim == 1;
    t->numel += p->numel;
}

static void add_norm(struct table *t, const struct model_config *c, const char *prefix)
{
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add_param(t, name, c->hidden_size, 0, INIT_ONES);
    if (c->normalization == NORM_LAYERNORM) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        add_param(t, name, c->hidden_size, 0, INIT_ZEROS);
    }
}

static void add_linear(struct table *t, const struct model_config *c, const char *prefix,
                       int64_t out, int64_t in, enum param_init init)
{
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add_param(t, name, out, in, init);
    if (c->add_bias_linear) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        add_param(t, name, out, 0, INIT_ZEROS);
    }
}

static int64_t qkv_width(const struct model_config *c)
{
    return (int64_t)(c->num_attention_heads + 2 * c->num_query_groups) * c->kv_channels;
}

static int64_t fc1_width(const struct model_config *c)
{
    return c->activation == ACT_SWIGLU ? 2 * (int64_t)c->ffn_hidden_size : c->ffn_hidden_size;
}

static void build_table(struct table *t, const struct model_config *c)
{
    char prefix[96];
    int64_t h = c->hidden_size, nd = (int64_t)c->num_attention_heads * c->kv_channels;
    add_param(t, "embedding.word_embeddings.weight", c->padded_vocab_size, h, INIT_NORMAL);
    if (c->position_embedding == POS_LEARNED_ABSOLUTE)
        add_param(t, "embedding.position_embeddings.weight", c->max_position_embeddings, h, INIT_NORMAL);
    for (int l = 0; l < c->num_layers; l++) {
#define LAYER(fmt) (snprintf(prefix, sizeof prefix, "decoder.layers.%d." fmt, l), prefix)
        add_norm(t, c, LAYER("input_layernorm"));
        add_linear(t, c, LAYER("self_attention.linear_qkv"), qkv_width(c), h, INIT_NORMAL);
        add_linear(t, c, LAYER("self_attention.linear_proj"), h, nd, INIT_NORMAL_SCALED);
        add_norm(t, c, LAYER("pre_mlp_layernorm"));
        add_linear(t, c, LAYER("mlp.linear_fc1"), fc1_width(c), h, INIT_NORMAL);
        add_linear(t, c, LAYER("mlp.linear_fc2"), h, c->ffn_hidden_size, INIT_NORMAL_SCALED);
#undef LAYER
    }
    add_norm(t, c, "decoder.final_layernorm");
    if (c->untie_embeddings_and_output_weights)
        add_param(t, "output_layer.weight", c->padded_vocab_size, h, INIT_NORMAL);
}

const struct gpt_param *gpt_find_param(const struct gpt_model *m, const char *name)
{
    for (int i = 0; i < m->num_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

/* A view of parameter `name` in `buf`, or an absent tensor when the model has no such parameter. */
static struct tensor view(const struct gpt_model *m, float *buf, const char *name)
{
    const struct gpt_param *p = gpt_find_param(m, name);
    if (!p) return tensor_none();
    return tensor_make(buf + p->offset, DT_F32, m->device, p->ndim, p->shape);
}

static void norm_views(const struct gpt_model *m, float *buf, const char *prefix, struct norm_params *n)
{
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    n->weight = view(m, buf, name);
    snprintf(name, sizeof name, "%s.bias", prefix);
    n->bias = view(m, buf, name);
}

static void linear_views(const struct gpt_model *m, float *buf, const char *prefix,
                         struct tensor *w, struct tensor *b)
{
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    *w = view(m, buf, name);
    snprintf(name, sizeof name, "%s.bias", prefix);
    *b = view(m, buf, name);
}

static void bind_views(struct gpt_model *m, float *buf, struct embedding_params *emb,
                       struct layer_params *layers, struct norm_params *final, struct tensor *out)
{
    char prefix[96];
    emb->word = view(m, buf, "embedding.word_embeddings.weight");
    emb->position = view(m, buf, "embedding.position_embeddings.weight");
    for (int l = 0; l < m->cfg.num_layers; l++) {
        struct layer_params *lp = &layers[l];
#define LAYER(fmt) (snprintf(prefix, sizeof prefix, "decoder.layers.%d." fmt, l), prefix)
        norm_views(m, buf, LAYER("input_layernorm"), &lp->input_norm);
        linear_views(m, buf, LAYER("self_attention.linear_qkv"), &lp->attention.qkv_weight,
                     &lp->attention.qkv_bias);
        linear_views(m, buf, LAYER("self_attention.linear_proj"), &lp->attention.proj_weight,
                     &lp->attention.proj_bias);
        norm_views(m, buf, LAYER("pre_mlp_layernorm"), &lp->pre_mlp_norm);
        linear_views(m, buf, LAYER("mlp.linear_fc1"), &lp->mlp.fc1_weight, &lp->mlp.fc1_bias);
        linear_views(m, buf, LAYER("mlp.linear_fc2"), &lp->mlp.fc2_weight, &lp->mlp.fc2_bias);
#undef LAYER
    }
    norm_views(m, buf, "decoder.final_layernorm", final);
    *out = m->cfg.untie_embeddings_and_output_weights ? view(m, buf, "output_layer.weight") : emb->word;
}

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
static struct tensor attention_saved(struct arena *ar, const struct model_config *c, int64_t batch,
                                     enum device dev)
{
    int64_t t_len = c->seq_length, heads = c->num_attention_heads;
    struct tensor t = arena_tensor(ar, DT_F32, batch * heads * t_len, dev == DEV_CPU ? t_len : 1);
    t.ndim = dev == DEV_CPU ? 4 : 3;
    t.shape[0] = batch;
    t.shape[1] = heads;
    t.shape[2] = t_len;
    t.shape[3] = dev == DEV_CPU ? t_len : 0;
    return t;
}

static void layout_activations(struct gpt_activations *a, const struct model_config *c, int64_t batch,
                               enum device dev)
{
    struct arena *ar = &a->arena;
    int64_t n = batch * c->seq_length, h = c->hidden_size;
    a->tokens = vec(ar, DT_I32, n);
    a->labels = vec(ar, DT_I32, n);
    a->positions = vec(ar, DT_I32, n);
    a->loss_mask = vec(ar, DT_F32, n);
    for (int l = 0; l <= c->num_layers; l++) a->hidden[l] = arena_tensor(ar, DT_F32, n, h);
    for (int l = 0; l < c->num_layers; l++) {
        struct layer_acts *la = &a->layers[l];
        struct norm_acts *norms[2] = {&la->input_norm, &la->pre_mlp_norm};
        for (int k = 0; k < 2; k++) {
            norms[k]->out = arena_tensor(ar, DT_F32, n, h);
            norms[k]->mean = vec(ar, DT_F32, n);
            norms[k]->rstd = vec(ar, DT_F32, n);
        }
        la->attention.qkv = arena_tensor(ar, DT_F32, n, qkv_width(c));
        la->attention.probs = attention_saved(ar, c, batch, dev);
        la->attention.context = arena_tensor(ar, DT_F32, n, (int64_t)c->num_attention_heads * c->kv_channels);
        la->mid = arena_tensor(ar, DT_F32, n, h);
        la->mlp.fc1 = arena_tensor(ar, DT_F32, n, fc1_width(c));
        la->mlp.act = arena_tensor(ar, DT_F32, n, c->ffn_hidden_size);
    }
    a->final_norm.out = arena_tensor(ar, DT_F32, n, h);
    a->final_norm.mean = vec(ar, DT_F32, n);
    a->final_norm.rstd = vec(ar, DT_F32, n);
    a->logits = arena_tensor(ar, DT_F32, n, c->padded_vocab_size);
    a->losses = vec(ar, DT_F32, n);
    a->dlosses = vec(ar, DT_F32, n);
    struct layer_scratch *s = &a->scratch;
    s->tmp = arena_tensor(ar, DT_F32, n, h);
    s->dmid = arena_tensor(ar, DT_F32, n, h);
    s->dnorm = arena_tensor(ar, DT_F32, n, h);
    s->dsub = arena_tensor(ar, DT_F32, n, h);
    s->attention.dqkv = arena_tensor(ar, DT_F32, n, qkv_width(c));
    s->attention.dcontext = arena_tensor(ar, DT_F32, n, (int64_t)c->num_attention_heads * c->kv_channels);
    s->mlp.dfc1 = arena_tensor(ar, DT_F32, n, fc1_width(c));
    s->mlp.dact = arena_tensor(ar, DT_F32, n, c->ffn_hidden_size);
    a->dhidden = arena_tensor(ar, DT_F32, n, h);
    a->dfinal = arena_tensor(ar, DT_F32, n, h);
}

static struct gpt_activations *create_activations(const struct model_config *c, int64_t batch,
                                                  enum device dev)
{
    struct gpt_activations *a = xcalloc(1, sizeof *a);
    a->hidden = xcalloc((size_t)c->num_layers + 1, sizeof *a->hidden);
    a->layers = xcalloc((size_t)c->num_layers, sizeof *a->layers);
    arena_init_measure(&a->arena, dev);
    layout_activations(a, c, batch, dev);
    size_t bytes = a->arena.used;
    arena_init_alloc(&a->arena, dev, bytes);
    layout_activations(a, c, batch, dev);
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

struct gpt_model *gpt_create(const struct model_config *cfg, int64_t micro_batch, enum device dev)
{
    struct gpt_model *m = xcalloc(1, sizeof *m);
    struct table t = {0};
    m->cfg = *cfg;
    m->device = dev;
    build_table(&t, cfg);
    m->params = t.p;
    m->num_params = t.count;
    m->numel = t.numel;
    m->weights = device_alloc(dev, (size_t)m->numel * sizeof(float));
    m->grads = device_alloc(dev, (size_t)m->numel * sizeof(float));
    m->layers = xcalloc((size_t)cfg->num_layers, sizeof *m->layers);
    m->layer_grads = xcalloc((size_t)cfg->num_layers, sizeof *m->layer_grads);
    bind_views(m, m->weights, &m->embedding, m->layers, &m->final_norm, &m->output_weight);
    bind_views(m, m->grads, &m->embedding_grad, m->layer_grads, &m->final_norm_grad,
               &m->output_weight_grad);
    m->batch = micro_batch;
    m->acts = create_activations(cfg, micro_batch, dev);
    return m;
}

void gpt_free(struct gpt_model *m)
{
    if (!m) return;
    free_activations(m->acts);
    device_free(m->device, m->weights);
    device_free(m->device, m->grads);
    free(m->layers);
    free(m->layer_grads);
    free(m->params);
    free(m);
}

void gpt_init_weights(struct gpt_model *m)
{
    const struct model_config *c = &m->cfg;
    double std = c->init_method_std;
    double scaled = std / sqrt(2.0 * c->num_layers); /* Megatron's output_layer_init_method */
    if (m->device != DEV_CPU) BUG("gpt_init_weights: initialise on the host and copy");
    for (int i = 0; i < m->num_params; i++) {
        const struct gpt_param *p = &m->params[i];
        float *w = m->weights + p->offset;
        uint64_t stream = rng_stream_of(p->name);
        for (int64_t e = 0; e < p->numel; e++) {
            switch (p->init) {
            case INIT_NORMAL: w[e] = (float)(std * rng_normal(c->seed, stream, (uint64_t)e)); break;
            case INIT_NORMAL_SCALED: w[e] = (float)(scaled * rng_normal(c->seed, stream, (uint64_t)e)); break;
            case INIT_ZEROS: w[e] = 0.0f; break;
            case INIT_ONES: w[e] = 1.0f; break;
            }
        }
    }
}

static struct layer_ctx make_ctx(const struct gpt_model *m, const struct gpt_batch *b)
{
    struct layer_ctx ctx;
    ctx.cfg = &m->cfg;
    ctx.batch = b->batch;
    ctx.seq = m->cfg.seq_length;
    ctx.layer = -1;
    ctx.dropout_stream = b->dropout_stream;
    ctx.sample_offset = b->sample_offset;
    ctx.training = b->training;
    return ctx;
}

static void stage_batch(struct gpt_model *m, const struct gpt_batch *b, int64_t n)
{
    struct gpt_activations *a = m->acts;
    if (m->device != DEV_CPU) BUG("stage_batch: host-to-device copies not built yet");
    memcpy(a->tokens.data, b->tokens, (size_t)n * sizeof(int32_t));
    memcpy(a->labels.data, b->labels, (size_t)n * sizeof(int32_t));
    memcpy(a->positions.data, b->positions, (size_t)n * sizeof(int32_t));
    memcpy(a->loss_mask.data, b->loss_mask, (size_t)n * sizeof(float));
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

    embedding_forward(&ctx, &m->embedding, a->hidden[0], a->tokens, a->positions);
    for (int l = 0; l < c->num_layers; l++) {
        ctx.layer = l;
        transformer_layer_forward(&ctx, &m->layers[l], &a->layers[l], &a->scratch, a->hidden[l + 1],
                                  a->hidden[l], a->positions);
    }
    ctx.layer = -1;
    norm_forward(&ctx, &m->final_norm, &a->final_norm, a->hidden[c->num_layers]);
    lm_head_forward(&ctx, m->output_weight, a->logits, a->losses, a->final_norm.out, a->labels);

    const float *losses = a->losses.data, *mask = b->loss_mask;
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
    float *dl = a->dlosses.data;
    for (int64_t i = 0; i < n; i++) dl[i] = loss_scale * b->loss_mask[i];

    lm_head_backward(&ctx, m->output_weight, m->output_weight_grad, a->logits, a->dlosses, a->dfinal,
                     a->final_norm.out, a->labels);
    norm_backward(&ctx, &m->final_norm, &m->final_norm_grad, &a->final_norm, a->dhidden, a->dfinal,
                  a->hidden[c->num_layers]);
    for (int l = c->num_layers - 1; l >= 0; l--) {
        ctx.layer = l;
        transformer_layer_backward(&ctx, &m->layers[l], &m->layer_grads[l], &a->layers[l], &a->scratch,
                                   a->dhidden, a->dhidden, a->hidden[l], a->positions);
    }
    ctx.layer = -1;
    embedding_backward(&ctx, &m->embedding_grad, a->dhidden, a->tokens, a->positions);
}

struct tensor gpt_logits(const struct gpt_model *m) { return m->acts->logits; }
