/* The HF <-> Megatron-Core tensor map for GPT-2 and LLaMA (contract in hf.h). The map is a list of
 * HF tensors, each viewed as [rows, cols] = [out, in] (a GPT-2 Conv1D weight is stored [in, out]
 * and transposed on the way), and pieces "rows [hf_row, hf_row + n) of the HF tensor are rows
 * [ours_row, ours_row + n) of our parameter". Import copies along the pieces, export copies back
 * along the same pieces, so one is the other's exact inverse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/hf.h"
#include "kernels/tensor.h"
#include "util/error.h"

struct piece {
    int64_t ours_row, hf_row, n;
};

struct entry {
    char hf[128];
    char ours[96];
    int64_t rows, cols; /* [out, in]; a 1-D tensor is [n, 1] */
    bool one_d, conv1d;
    int npieces;
    struct piece *pieces;
};

struct map {
    struct entry *e;
    int n, cap;
};

static struct entry *add(struct map *m, const char *hf, const char *ours, int64_t rows, int64_t cols, bool conv1d)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->e = xrealloc(m->e, (size_t)m->cap * sizeof *m->e);
    }
    struct entry *e = &m->e[m->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->hf, sizeof e->hf, "%s", hf);
    snprintf(e->ours, sizeof e->ours, "%s", ours);
    e->rows = rows;
    e->cols = cols > 0 ? cols : 1;
    e->one_d = cols == 0;
    e->conv1d = conv1d;
    return e;
}

static void add_piece(struct entry *e, int64_t ours_row, int64_t hf_row, int64_t n)
{
    e->pieces = xrealloc(e->pieces, (size_t)(e->npieces + 1) * sizeof *e->pieces);
    e->pieces[e->npieces++] = (struct piece){ours_row, hf_row, n};
}

/* A whole HF tensor that is a whole parameter (rows may be the vocabulary: fewer than ours). */
static void whole(struct map *m, const char *hf, const char *ours, int64_t rows, int64_t cols, bool conv1d)
{
    add_piece(add(m, hf, ours, rows, cols, conv1d), 0, 0, rows);
}

static void map_gpt2(struct map *m, const struct model_config *c)
{
    int64_t h = c->hidden_size, d = c->kv_channels, n = c->num_attention_heads, f = c->ffn_hidden_size;
    char ours[128], hf[128];
    whole(m, "transformer.wte.weight", "embedding.word_embeddings.weight", c->vocab_size, h, false);
    whole(m, "transformer.wpe.weight", "embedding.position_embeddings.weight", c->max_position_embeddings, h, false);
    for (int i = 0; i < c->num_layers; i++) {
#define OURS(s) (snprintf(ours, sizeof ours, "decoder.layers.%d.%s", i, s), ours)
#define HF(s) (snprintf(hf, sizeof hf, "transformer.h.%d.%s", i, s), hf)
        whole(m, HF("ln_1.weight"), OURS("input_layernorm.weight"), h, 0, false);
        whole(m, HF("ln_1.bias"), OURS("input_layernorm.bias"), h, 0, false);
        /* c_attn packs [q | k | v] along its output; ours groups q_h, k_h, v_h per head */
        for (int bias = 0; bias < 2; bias++) {
            struct entry *e = add(m, HF(bias ? "attn.c_attn.bias" : "attn.c_attn.weight"),
                                  OURS(bias ? "self_attention.linear_qkv.bias" : "self_attention.linear_qkv.weight"),
                                  3 * h, bias ? 0 : h, !bias);
            for (int64_t head = 0; head < n; head++)
                for (int part = 0; part < 3; part++) add_piece(e, (head * 3 + part) * d, part * h + head * d, d);
        }
        whole(m, HF("attn.c_proj.weight"), OURS("self_attention.linear_proj.weight"), h, h, true);
        whole(m, HF("attn.c_proj.bias"), OURS("self_attention.linear_proj.bias"), h, 0, false);
        whole(m, HF("ln_2.weight"), OURS("pre_mlp_layernorm.weight"), h, 0, false);
        whole(m, HF("ln_2.bias"), OURS("pre_mlp_layernorm.bias"), h, 0, false);
        whole(m, HF("mlp.c_fc.weight"), OURS("mlp.linear_fc1.weight"), f, h, true);
        whole(m, HF("mlp.c_fc.bias"), OURS("mlp.linear_fc1.bias"), f, 0, false);
        whole(m, HF("mlp.c_proj.weight"), OURS("mlp.linear_fc2.weight"), h, f, true);
        whole(m, HF("mlp.c_proj.bias"), OURS("mlp.linear_fc2.bias"), h, 0, false);
#undef OURS
#undef HF
    }
    whole(m, "transformer.ln_f.weight", "decoder.final_layernorm.weight", h, 0, false);
    whole(m, "transformer.ln_f.bias", "decoder.final_layernorm.bias", h, 0, false);
}

static void map_llama(struct map *m, const struct model_config *c)
{
    int64_t h = c->hidden_size, d = c->kv_channels, n = c->num_attention_heads, g = c->num_query_groups;
    int64_t f = c->ffn_hidden_size, per_group = n / g;
    char ours[128], hf[128];
    whole(m, "model.embed_tokens.weight", "embedding.word_embeddings.weight", c->vocab_size, h, false);
    for (int i = 0; i < c->num_layers; i++) {
#define OURS(s) (snprintf(ours, sizeof ours, "decoder.layers.%d.%s", i, s), ours)
#define HF(s) (snprintf(hf, sizeof hf, "model.layers.%d.%s", i, s), hf)
        whole(m, HF("input_layernorm.weight"), OURS("input_layernorm.weight"), h, 0, false);
        /* ours: per query group, its per_group query heads, then its key head, then its value head */
        struct entry *q = add(m, HF("self_attn.q_proj.weight"), OURS("self_attention.linear_qkv.weight"), n * d, h, false);
        struct entry *k = add(m, HF("self_attn.k_proj.weight"), ours, g * d, h, false);
        struct entry *v = add(m, HF("self_attn.v_proj.weight"), ours, g * d, h, false);
        for (int64_t j = 0; j < g; j++) {
            int64_t base = j * (per_group + 2) * d;
            add_piece(q, base, j * per_group * d, per_group * d);
            add_piece(k, base + per_group * d, j * d, d);
            add_piece(v, base + (per_group + 1) * d, j * d, d);
        }
        whole(m, HF("self_attn.o_proj.weight"), OURS("self_attention.linear_proj.weight"), h, n * d, false);
        whole(m, HF("post_attention_layernorm.weight"), OURS("pre_mlp_layernorm.weight"), h, 0, false);
        add_piece(add(m, HF("mlp.gate_proj.weight"), OURS("mlp.linear_fc1.weight"), f, h, false), 0, 0, f);
        add_piece(add(m, HF("mlp.up_proj.weight"), ours, f, h, false), f, 0, f);
        whole(m, HF("mlp.down_proj.weight"), OURS("mlp.linear_fc2.weight"), h, f, false);
#undef OURS
#undef HF
    }
    whole(m, "model.norm.weight", "decoder.final_layernorm.weight", h, 0, false);
    if (c->untie_embeddings_and_output_weights)
        whole(m, "lm_head.weight", "output_layer.weight", c->vocab_size, h, false);
}

static struct map build_map(const struct model_config *c, enum hf_family family)
{
    struct map m = {0};
    if (family == HF_GPT2) map_gpt2(&m, c);
    else map_llama(&m, c);
    return m;
}

static void free_map(struct map *m)
{
    for (int i = 0; i < m->n; i++) free(m->e[i].pieces);
    free(m->e);
}

/* Our parameter of an entry, whole and wide enough for its pieces (a map bug otherwise). */
static const struct gpt_param *param_of(const struct gpt_model *m, const struct entry *e)
{
    const struct gpt_param *p = gpt_find_param(m, e->ours);
    if (!p) BUG("hf map names unknown parameter %s", e->ours);
    if (p->shape[0] != p->full_shape[0] || (p->ndim == 2 && p->shape[1] != p->full_shape[1]))
        BUG("hf map: %s is split over tensor-parallel ranks; convert with one process", p->name);
    if ((p->ndim == 2 ? p->shape[1] : 1) != e->cols) BUG("hf map: %s has %lld columns", e->ours, (long long)e->cols);
    for (int k = 0; k < e->npieces; k++)
        if (e->pieces[k].ours_row + e->pieces[k].n > p->shape[0]) BUG("hf map: rows of %s", e->ours);
    return p;
}

/* ---- import ---- */

static const struct st_tensor *find(const struct st_file *const *files, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        const struct st_tensor *t = st_find(files[i], name);
        if (t) return t;
    }
    return NULL;
}

/* The HF tensor of e as fp32 [rows, cols] (a Conv1D weight transposed from [in, out]). */
static float *read_entry(const struct st_file *const *files, size_t nfiles, const char *prefix, const struct entry *e,
                         char *err, size_t errlen)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, e->hf);
    const struct st_tensor *t = find(files, nfiles, full);
    if (!t) {
        snprintf(err, errlen, "tensor %s: missing from the safetensors files; the checkpoint does not match config.json", full);
        return NULL;
    }
    int64_t numel = st_numel(t);
    if (numel != e->rows * e->cols) {
        snprintf(err, errlen, "tensor %s: has %lld elements, the model needs [%lld, %lld]; the checkpoint does not match config.json",
                 full, (long long)numel, (long long)e->rows, (long long)e->cols);
        return NULL;
    }
    float *raw = xmalloc((size_t)numel * sizeof(float));
    if (st_to_f32(t, raw, err, errlen)) {
        free(raw);
        return NULL;
    }
    if (!e->conv1d) return raw;
    float *tr = xmalloc((size_t)numel * sizeof(float));
    for (int64_t i = 0; i < e->cols; i++) /* raw is [cols(in), rows(out)] */
        for (int64_t o = 0; o < e->rows; o++) tr[o * e->cols + i] = raw[i * e->rows + o];
    free(raw);
    return tr;
}

int hf_load_files(const struct gpt_model *m, enum hf_family family, const struct st_file *const *files,
                  size_t nfiles, const char *prefix, float *dst, char *err, size_t errlen)
{
    if (m->device != DEV_CPU) BUG("hf_load_files: load on the host and copy");
    struct map map = build_map(&m->cfg, family);
    int rc = 0;
    for (int i = 0; i < map.n && rc == 0; i++) {
        const struct entry *e = &map.e[i];
        const struct gpt_param *p = param_of(m, e);
        float *src = read_entry(files, nfiles, prefix, e, err, errlen);
        if (!src) {
            rc = -1;
            break;
        }
        for (int k = 0; k < e->npieces; k++)
            memcpy(dst + p->offset + e->pieces[k].ours_row * e->cols, src + e->pieces[k].hf_row * e->cols,
                   (size_t)(e->pieces[k].n * e->cols) * sizeof(float));
        free(src);
    }
    free_map(&map);
    return rc;
}

int hf_load_into(const struct gpt_model *m, enum hf_family family, const struct st_file *f,
                 const char *prefix, float *dst, char *err, size_t errlen)
{
    return hf_load_files(m, family, &f, 1, prefix, dst, err, errlen);
}

enum st_dtype hf_weights_dtype(const struct gpt_model *m, enum hf_family family, const struct st_file *const *files,
                               size_t nfiles)
{
    struct map map = build_map(&m->cfg, family);
    int dt = -1;
    for (int i = 0; i < map.n; i++) {
        const struct st_tensor *t = find(files, nfiles, map.e[i].hf);
        if (!t) continue;
        if (dt == -1) dt = (int)t->dtype;
        else if (dt != (int)t->dtype) dt = -2;
    }
    free_map(&map);
    return dt == ST_BF16 || dt == ST_F16 ? (enum st_dtype)dt : ST_F32;
}

/* ---- export ---- */

static void from_f32(void *out, const float *in, int64_t n, enum st_dtype dt)
{
    uint16_t *h = out;
    if (dt == ST_F32) memcpy(out, in, (size_t)n * sizeof(float));
    else if (dt == ST_BF16) for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(in[i]);
    else for (int64_t i = 0; i < n; i++) h[i] = f32_to_f16(in[i]);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct st_tensor *)a)->name, ((const struct st_tensor *)b)->name);
}

void hf_export(const struct gpt_model *m, enum hf_family family, const float *src, enum st_dtype dtype,
               struct st_tensor **out, size_t *n)
{
    struct map map = build_map(&m->cfg, family);
    struct st_tensor *t = xcalloc((size_t)map.n, sizeof *t);
    for (int i = 0; i < map.n; i++) {
        const struct entry *e = &map.e[i];
        const struct gpt_param *p = param_of(m, e);
        int64_t numel = e->rows * e->cols;
        float *buf = xmalloc((size_t)numel * sizeof(float));
        for (int k = 0; k < e->npieces; k++)
            memcpy(buf + e->pieces[k].hf_row * e->cols, src + p->offset + e->pieces[k].ours_row * e->cols,
                   (size_t)(e->pieces[k].n * e->cols) * sizeof(float));
        if (e->conv1d) { /* back to [in, out] */
            float *tr = xmalloc((size_t)numel * sizeof(float));
            for (int64_t o = 0; o < e->rows; o++)
                for (int64_t c = 0; c < e->cols; c++) tr[c * e->rows + o] = buf[o * e->cols + c];
            free(buf);
            buf = tr;
        }
        t[i].name = xstrdup(e->hf);
        t[i].dtype = dtype;
        t[i].ndim = e->one_d ? 1 : 2;
        t[i].shape[0] = e->conv1d ? e->cols : e->rows;
        t[i].shape[1] = e->conv1d ? e->rows : e->cols;
        t[i].nbytes = (size_t)numel * st_dtype_size(dtype);
        void *data = xmalloc(t[i].nbytes ? t[i].nbytes : 1);
        from_f32(data, buf, numel, dtype);
        t[i].data = data;
        free(buf);
    }
    qsort(t, (size_t)map.n, sizeof *t, cmp_name);
    *out = t;
    *n = (size_t)map.n;
    free_map(&map);
}

void hf_free_tensors(struct st_tensor *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)t[i].name);
        free((void *)t[i].data);
    }
    free(t);
}
