/* The GPT model's parameters: the table in Megatron-Core's names with each tensor-parallel
 * rank's shard (local shape, full shape, where its rows or columns sit in the full tensor), the
 * views the layers read, and Megatron's initialisation from the counter-based RNG keyed by the
 * element's index in the FULL tensor, so every layout initialises the same model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/rng.h"
#include "models/gpt.h"
#include "models/gpt_internal.h"
#include "util/error.h"
#ifdef MEGATRON_CUDA
#include "kernels/cuda/init.h"
#endif

struct table {
    struct gpt_param *p;
    int count, cap;
    int64_t numel;
    int tp, rank;
    int stage;          /* backward stage of the parameters being added */
};

/* How a parameter is split over the tensor-parallel group. */
enum split { WHOLE, ROWS, COLUMNS, GATE_UP_ROWS };

static void add_param(struct table *t, const char *name, int64_t d0, int64_t d1, enum split split,
                      enum param_init init)
{
    if (t->count == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->p = xrealloc(t->p, (size_t)t->cap * sizeof *t->p);
    }
    struct gpt_param *p = &t->p[t->count++];
    memset(p, 0, sizeof *p);
    if (snprintf(p->name, sizeof p->name, "%s", name) >= (int)sizeof p->name) BUG("name too long: %s", name);
    int64_t n = split == WHOLE ? 1 : t->tp, r = t->rank;
    p->ndim = d1 > 0 ? 2 : 1;
    p->full_shape[0] = d0;
    p->full_shape[1] = d1 > 0 ? d1 : 0;
    p->shape[0] = split == COLUMNS ? d0 : d0 / n;
    p->shape[1] = split == COLUMNS ? d1 / n : p->full_shape[1];
    p->shard_dim = split == WHOLE ? -1 : split == COLUMNS ? 1 : 0;
    if (split == GATE_UP_ROWS) { /* [gate; up]: this rank's slice of each half */
        int64_t half = d0 / 2, part = half / n;
        p->num_pieces = 2;
        p->pieces[0] = (struct param_piece){0, r * part, part};
        p->pieces[1] = (struct param_piece){part, half + r * part, part};
    } else {
        int64_t len = split == COLUMNS ? p->shape[1] : p->shape[0];
        p->num_pieces = 1;
        p->pieces[0] = (struct param_piece){0, split == WHOLE ? 0 : r * len, len};
    }
    p->numel = p->shape[0] * (p->ndim == 2 ? p->shape[1] : 1);
    p->offset = t->numel;
    p->stage = t->stage;
    p->init = init;
    p->no_weight_decay = p->ndim == 1;
    t->numel += p->numel;
}

static void add_norm(struct table *t, const struct model_config *c, const char *prefix)
{
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add_param(t, name, c->hidden_size, 0, WHOLE, INIT_ONES);
    if (c->normalization == NORM_LAYERNORM) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        add_param(t, name, c->hidden_size, 0, WHOLE, INIT_ZEROS);
    }
}

/* Column-parallel layers split the weight's rows and the bias; row-parallel layers split the
 * weight's columns and keep the bias whole (added after the reduction). */
static void add_linear(struct table *t, const struct model_config *c, const char *prefix, int64_t out,
                       int64_t in, enum split split, enum param_init init)
{
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add_param(t, name, out, in, split, init);
    t->p[t->count - 1].grad_written = true; /* by its weight-gradient GEMM */
    if (c->add_bias_linear) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        add_param(t, name, out, 0, split == COLUMNS ? WHOLE : split, INIT_ZEROS);
    }
}

int64_t gpt_qkv_width(const struct model_config *c)
{
    return (int64_t)(c->num_attention_heads + 2 * c->num_query_groups) * c->kv_channels;
}

int64_t gpt_fc1_width(const struct model_config *c)
{
    return c->activation == ACT_SWIGLU ? 2 * (int64_t)c->ffn_hidden_size : c->ffn_hidden_size;
}

static void add_layer(struct table *t, const struct model_config *c, int l)
{
    char prefix[96];
    int64_t h = c->hidden_size, nd = (int64_t)c->num_attention_heads * c->kv_channels;
    enum split fc1 = c->activation == ACT_SWIGLU ? GATE_UP_ROWS : ROWS;
    t->stage = l;
#define LAYER(fmt) (snprintf(prefix, sizeof prefix, "decoder.layers.%d." fmt, l), prefix)
    add_norm(t, c, LAYER("input_layernorm"));
    add_linear(t, c, LAYER("self_attention.linear_qkv"), gpt_qkv_width(c), h, ROWS, INIT_NORMAL);
    add_linear(t, c, LAYER("self_attention.linear_proj"), h, nd, COLUMNS, INIT_NORMAL_SCALED);
    add_norm(t, c, LAYER("pre_mlp_layernorm"));
    add_linear(t, c, LAYER("mlp.linear_fc1"), gpt_fc1_width(c), h, fc1, INIT_NORMAL);
    add_linear(t, c, LAYER("mlp.linear_fc2"), h, c->ffn_hidden_size, COLUMNS, INIT_NORMAL_SCALED);
#undef LAYER
}

/* The parameters of m's chunks, in the order of the whole model (embeddings, layers, final norm,
 * output layer), so the backward reaches the end of the buffer first. */
void gpt_build_params(struct gpt_model *m)
{
    const struct model_config *c = &m->cfg;
    struct table t = {.tp = m->tp.size, .rank = m->tp.rank, .stage = -1};
    int64_t h = c->hidden_size;
    bool pre = false, post = false;
    for (int k = 0; k < m->num_chunks; k++) {
        pre |= m->chunks[k].spec.pre_process;
        post |= m->chunks[k].spec.post_process;
    }
    bool tied = !c->untie_embeddings_and_output_weights, split = tied && pre != post;
    if (pre) {
        add_param(&t, "embedding.word_embeddings.weight", c->padded_vocab_size, h, ROWS, INIT_NORMAL);
        t.p[t.count - 1].shared_embedding = split;
        /* tied on this stage: the output layer's weight-gradient GEMM writes it first */
        t.p[t.count - 1].grad_written = tied && post;
        if (c->position_embedding == POS_LEARNED_ABSOLUTE)
            add_param(&t, "embedding.position_embeddings.weight", c->max_position_embeddings, h, WHOLE, INIT_NORMAL);
    }
    for (int k = 0; k < m->num_chunks; k++) {
        const struct gpt_chunk_spec *ch = &m->chunks[k].spec;
        for (int64_t l = ch->first_layer; l < ch->first_layer + ch->num_layers; l++) add_layer(&t, c, (int)l);
    }
    if (post) {
        t.stage = c->num_layers;
        add_norm(&t, c, "decoder.final_layernorm");
        if (!tied || split) {
            add_param(&t, "output_layer.weight", c->padded_vocab_size, h, ROWS, INIT_NORMAL);
            t.p[t.count - 1].shared_embedding = t.p[t.count - 1].replica = split;
            t.p[t.count - 1].grad_written = true;
        }
    }
    m->params = t.p;
    m->num_params = t.count;
    m->numel = t.numel;
}

int64_t *gpt_grad_zero_ranges(const struct gpt_model *m, int64_t *count)
{
    int64_t n = 0, *r = xmalloc((size_t)(2 * m->num_params + 2) * sizeof *r), at = 0;
    /* params lie in offset order, one after another */
    for (int i = 0; i <= m->num_params; i++) {
        bool end = i == m->num_params;
        int64_t lo = end ? m->buffer_numel : m->params[i].offset;
        if (!end && !m->params[i].grad_written) continue;
        if (lo > at) r[2 * n] = at, r[2 * n + 1] = lo - at, n++;
        if (!end) at = m->params[i].offset + m->params[i].numel;
    }
    *count = n;
    return r;
}

struct gpt_param *gpt_whole_params(const struct model_config *cfg, int *count)
{
    struct gpt_chunk_spec whole = {0, cfg->num_layers, true, true, 1};
    struct gpt_chunk chunk = {whole, NULL};
    struct gpt_model m = {.cfg = *cfg, .tp = tp_group_single(), .num_chunks = 1, .chunks = &chunk};
    gpt_build_params(&m);
    *count = m.num_params;
    return m.params;
}

const struct gpt_param *gpt_params_find(const struct gpt_param *params, int count, const char *name)
{
    for (int i = 0; i < count; i++)
        if (strcmp(params[i].name, name) == 0) return &params[i];
    return NULL;
}

const struct gpt_param *gpt_find_param(const struct gpt_model *m, const char *name)
{
    return gpt_params_find(m->params, m->num_params, name);
}

const char *gpt_param_stored_name(const struct gpt_param *p)
{
    return p->replica ? "embedding.word_embeddings.weight" : p->name;
}

int64_t gpt_param_full_index(const struct gpt_param *p, int64_t local)
{
    int64_t cols = p->ndim == 2 ? p->shape[1] : 1, full_cols = p->ndim == 2 ? p->full_shape[1] : 1;
    int64_t i = local / cols, j = local % cols;
    if (p->shard_dim >= 0) {
        int64_t *idx = p->shard_dim == 0 ? &i : &j;
        for (int k = 0; k < p->num_pieces; k++) {
            const struct param_piece *pc = &p->pieces[k];
            if (*idx >= pc->local_start && *idx < pc->local_start + pc->length) {
                *idx = *idx - pc->local_start + pc->full_start;
                break;
            }
        }
    }
    return i * full_cols + j;
}

/* A buffer and its element type: the model's fp32 weights or grads, or the bf16 compute copy. */
struct buffer {
    char *base;
    enum dtype dt;
};

/* A view of parameter `name` in the buffer, or an absent tensor when the model has no such parameter. */
static struct tensor view(const struct gpt_model *m, struct buffer b, const char *name)
{
    const struct gpt_param *p = gpt_find_param(m, name);
    if (!p) return tensor_none();
    return tensor_make(b.base + (size_t)p->offset * dtype_size(b.dt), b.dt, m->device, p->ndim, p->shape);
}

static void norm_views(const struct gpt_model *m, struct buffer buf, const char *prefix, struct norm_params *n)
{
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    n->weight = view(m, buf, name);
    snprintf(name, sizeof name, "%s.bias", prefix);
    n->bias = view(m, buf, name);
}

static void linear_views(const struct gpt_model *m, struct buffer buf, const char *prefix, struct tensor *w,
                         struct tensor *b)
{
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    *w = view(m, buf, name);
    snprintf(name, sizeof name, "%s.bias", prefix);
    *b = view(m, buf, name);
}

void gpt_bind_views(struct gpt_model *m, void *base, enum dtype dt, struct embedding_params *emb,
                    struct layer_params *layers, struct norm_params *final, struct tensor *out)
{
    char prefix[96];
    struct buffer buf = {base, dt};
    emb->word = view(m, buf, "embedding.word_embeddings.weight");
    emb->position = view(m, buf, "embedding.position_embeddings.weight");
    emb->vocab_start = (int64_t)m->tp.rank * (m->cfg.padded_vocab_size / m->tp.size);
    for (int l = 0; l < m->cfg.num_layers; l++) {
        struct layer_params *lp = &layers[l];
#define LAYER(fmt) (snprintf(prefix, sizeof prefix, "decoder.layers.%d." fmt, l), prefix)
        norm_views(m, buf, LAYER("input_layernorm"), &lp->input_norm);
        linear_views(m, buf, LAYER("self_attention.linear_qkv"), &lp->attention.qkv_weight, &lp->attention.qkv_bias);
        linear_views(m, buf, LAYER("self_attention.linear_proj"), &lp->attention.proj_weight, &lp->attention.proj_bias);
        norm_views(m, buf, LAYER("pre_mlp_layernorm"), &lp->pre_mlp_norm);
        linear_views(m, buf, LAYER("mlp.linear_fc1"), &lp->mlp.fc1_weight, &lp->mlp.fc1_bias);
        linear_views(m, buf, LAYER("mlp.linear_fc2"), &lp->mlp.fc2_weight, &lp->mlp.fc2_bias);
#undef LAYER
    }
    norm_views(m, buf, "decoder.final_layernorm", final);
    *out = gpt_find_param(m, "output_layer.weight") ? view(m, buf, "output_layer.weight") : emb->word;
}

#ifdef MEGATRON_CUDA
/* The same draws on the GPU, straight into the device's fp32 weights. */
static void init_on_device(struct gpt_model *m, double std, double scaled)
{
    for (int i = 0; i < m->num_params; i++) {
        const struct gpt_param *p = &m->params[i];
        float *w = m->weights + p->offset;
        if (p->init == INIT_ZEROS || p->init == INIT_ONES) {
            cuda_fill_f32(w, p->numel, p->init == INIT_ONES ? 1.0f : 0.0f);
            continue;
        }
        struct cuda_shard_index x = {p->ndim == 2 ? p->shape[1] : 1, p->ndim == 2 ? p->full_shape[1] : 1,
                                     p->shard_dim, p->num_pieces, {0, 0}, {0, 0}, {0, 0}};
        for (int k = 0; k < p->num_pieces; k++) {
            x.local_start[k] = p->pieces[k].local_start;
            x.full_start[k] = p->pieces[k].full_start;
            x.length[k] = p->pieces[k].length;
        }
        uint64_t stream = rng_stream_of(p->replica ? "embedding.word_embeddings.weight" : p->name);
        cuda_init_normal(w, p->numel, p->init == INIT_NORMAL ? std : scaled, m->cfg.seed, stream, &x);
    }
    gpt_weights_changed(m, 0, m->buffer_numel);
}
#endif

void gpt_init_weights(struct gpt_model *m)
{
    const struct model_config *c = &m->cfg;
    double std = c->init_method_std;
    double scaled = std / sqrt(2.0 * c->num_layers); /* Megatron's output_layer_init_method */
#ifdef MEGATRON_CUDA
    if (m->device == DEV_CUDA) {
        init_on_device(m, std, scaled);
        return;
    }
#endif
    float *w0 = m->weights;
    for (int i = 0; i < m->num_params; i++) {
        const struct gpt_param *p = &m->params[i];
        float *w = w0 + p->offset;
        /* a replica of the word embeddings starts as the tensor it copies */
        uint64_t stream = rng_stream_of(p->replica ? "embedding.word_embeddings.weight" : p->name);
        double sd = p->init == INIT_NORMAL ? std : scaled;
        /* every element is a function of its own index: the threads' split does not matter */
#pragma omp parallel for schedule(static) if (p->numel >= 65536)
        for (int64_t e = 0; e < p->numel; e++) {
            switch (p->init) {
            case INIT_NORMAL:
            case INIT_NORMAL_SCALED:
                w[e] = (float)(sd * rng_normal(c->seed, stream, (uint64_t)gpt_param_full_index(p, e)));
                break;
            case INIT_ZEROS: w[e] = 0.0f; break;
            case INIT_ONES: w[e] = 1.0f; break;
            }
        }
    }
}
