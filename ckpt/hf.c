/* Hugging Face config.json reading and the HF <-> Megatron-Core tensor map for GPT-2 and LLaMA.
 * A map is a list of pieces: "rows [r, r+n) of our parameter P come from rows [s, s+n) of HF
 * tensor T (transposed first when T is a GPT-2 Conv1D weight)". */
#include "ckpt/hf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/json.h"

/* ---- config.json ---- */

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open; check the directory holds a Hugging Face checkpoint", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = xmalloc((size_t)(n > 0 ? n : 0) + 1);
    size_t got = n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    buf[got] = 0;
    *len = got;
    return buf;
}

static int get_int(const struct json_value *root, const char *key, int64_t *out, bool required,
                   const char *path, char *err, size_t errlen)
{
    const struct json_value *v = json_get(root, key);
    if (!v || json_type(v) == JSON_NULL) {
        if (!required) return 1;
        snprintf(err, errlen, "%s: missing \"%s\"; a GPT-2 or LLaMA config.json has it", path, key);
        return -1;
    }
    if (!json_int64(v, out)) {
        snprintf(err, errlen, "%s: \"%s\" is not an integer; fix the file", path, key);
        return -1;
    }
    return 0;
}

static double get_num(const struct json_value *root, const char *key, double dflt)
{
    const struct json_value *v = json_get(root, key);
    return v && json_type(v) == JSON_NUMBER ? json_number(v) : dflt;
}

static int fill_gpt2(const struct json_value *r, struct model_config *c, const char *path, char *err,
                     size_t errlen)
{
    int64_t layers, hidden, heads, positions, vocab, inner = -1;
    if (get_int(r, "n_layer", &layers, true, path, err, errlen) ||
        get_int(r, "n_embd", &hidden, true, path, err, errlen) ||
        get_int(r, "n_head", &heads, true, path, err, errlen) ||
        get_int(r, "n_positions", &positions, true, path, err, errlen) ||
        get_int(r, "vocab_size", &vocab, true, path, err, errlen) ||
        get_int(r, "n_inner", &inner, false, path, err, errlen) < 0)
        return -1;
    const struct json_value *act = json_get(r, "activation_function");
    const char *act_name = act ? json_string(act, NULL) : "gelu_new";
    if (!act_name || (strcmp(act_name, "gelu_new") && strcmp(act_name, "gelu") &&
                      strcmp(act_name, "gelu_pytorch_tanh"))) {
        snprintf(err, errlen, "%s: activation_function \"%s\" is not supported; use gelu or gelu_new",
                 path, act_name ? act_name : "?");
        return -1;
    }
    c->num_layers = (int)layers;
    c->hidden_size = (int)hidden;
    c->num_attention_heads = (int)heads;
    c->num_query_groups = (int)heads;
    c->kv_channels = (int)(hidden / heads);
    c->ffn_hidden_size = inner > 0 ? (int)inner : (int)(4 * hidden);
    c->max_position_embeddings = (int)positions;
    c->vocab_size = vocab;
    c->normalization = NORM_LAYERNORM;
    c->position_embedding = POS_LEARNED_ABSOLUTE;
    c->activation = strcmp(act_name, "gelu") == 0 ? ACT_GELU : ACT_GELU_TANH;
    c->add_bias_linear = true;
    c->untie_embeddings_and_output_weights = false;
    c->norm_epsilon = (float)get_num(r, "layer_norm_epsilon", 1e-5);
    return 0;
}

static int fill_llama(const struct json_value *r, struct model_config *c, const char *path, char *err,
                      size_t errlen)
{
    int64_t layers, hidden, heads, groups = -1, positions, vocab, inner, head_dim = -1;
    if (get_int(r, "num_hidden_layers", &layers, true, path, err, errlen) ||
        get_int(r, "hidden_size", &hidden, true, path, err, errlen) ||
        get_int(r, "num_attention_heads", &heads, true, path, err, errlen) ||
        get_int(r, "num_key_value_heads", &groups, false, path, err, errlen) < 0 ||
        get_int(r, "max_position_embeddings", &positions, true, path, err, errlen) ||
        get_int(r, "vocab_size", &vocab, true, path, err, errlen) ||
        get_int(r, "intermediate_size", &inner, true, path, err, errlen) ||
        get_int(r, "head_dim", &head_dim, false, path, err, errlen) < 0)
        return -1;
    const struct json_value *bias = json_get(r, "attention_bias"), *mlp_bias = json_get(r, "mlp_bias");
    if ((bias && json_bool(bias)) || (mlp_bias && json_bool(mlp_bias))) {
        snprintf(err, errlen, "%s: attention_bias/mlp_bias true is not supported for LLaMA; use a model without biases", path);
        return -1;
    }
    double theta = get_num(r, "rope_theta", 10000.0);
    const struct json_value *rope = json_get(r, "rope_parameters");
    if (rope) theta = get_num(rope, "rope_theta", theta);
    const struct json_value *tie = json_get(r, "tie_word_embeddings");
    c->num_layers = (int)layers;
    c->hidden_size = (int)hidden;
    c->num_attention_heads = (int)heads;
    c->num_query_groups = groups > 0 ? (int)groups : (int)heads;
    c->kv_channels = head_dim > 0 ? (int)head_dim : (int)(hidden / heads);
    c->ffn_hidden_size = (int)inner;
    c->max_position_embeddings = (int)positions;
    c->vocab_size = vocab;
    c->normalization = NORM_RMSNORM;
    c->position_embedding = POS_ROPE;
    c->activation = ACT_SWIGLU;
    c->add_bias_linear = false;
    c->untie_embeddings_and_output_weights = !(tie && json_bool(tie));
    c->norm_epsilon = (float)get_num(r, "rms_norm_eps", 1e-6);
    c->rotary_base = (float)theta;
    c->rotary_percent = 1.0f;
    return 0;
}

int hf_read_config(const char *dir, struct model_config *c, enum hf_family *family, char *err,
                   size_t errlen)
{
    char path[4096], jerr[256];
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = read_file(path, &len, err, errlen);
    if (!text) return -1;
    struct json_doc *doc = json_parse(text, len, jerr, sizeof jerr);
    free(text);
    if (!doc) {
        snprintf(err, errlen, "%s: not valid JSON (%s); fix or re-download the file", path, jerr);
        return -1;
    }
    const struct json_value *root = json_root(doc);
    const struct json_value *type = json_get(root, "model_type");
    const char *name = type ? json_string(type, NULL) : NULL;
    memset(c, 0, sizeof *c);
    c->rotary_base = 10000.0f;
    c->rotary_percent = 1.0f;
    c->init_method_std = (float)get_num(root, "initializer_range", 0.02);
    int rc;
    if (name && strcmp(name, "gpt2") == 0) {
        *family = HF_GPT2;
        rc = fill_gpt2(root, c, path, err, errlen);
    } else if (name && (strcmp(name, "llama") == 0 || strcmp(name, "mistral") == 0)) {
        *family = HF_LLAMA;
        rc = fill_llama(root, c, path, err, errlen);
    } else {
        snprintf(err, errlen, "%s: model_type \"%s\" is not supported; use a gpt2 or llama checkpoint",
                 path, name ? name : "(missing)");
        rc = -1;
    }
    json_free(doc);
    if (rc == 0) {
        c->seq_length = c->max_position_embeddings;
        c->padded_vocab_size = c->vocab_size;
    }
    return rc;
}

/* ---- tensor map ---- */

struct loader {
    const struct gpt_model *m;
    const struct st_file *f;
    const char *prefix;
    float *dst;
    char *err;
    size_t errlen;
};

/* Reads HF tensor `name` as fp32 [rows, cols] (rows x cols must equal its size); GPT-2 Conv1D
 * weights ([in, out]) come back transposed to [out, in]. Returns a malloc'd buffer or NULL. */
static float *read_hf(struct loader *l, const char *name, int64_t rows, int64_t cols, bool conv1d)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", l->prefix, name);
    const struct st_tensor *t = st_find(l->f, full);
    if (!t) {
        snprintf(l->err, l->errlen, "tensor %s: missing from the safetensors file; the checkpoint does not match config.json", full);
        return NULL;
    }
    int64_t numel = st_numel(t);
    if (numel != rows * cols) {
        snprintf(l->err, l->errlen, "tensor %s: has %lld elements, the model needs [%lld, %lld]; the checkpoint does not match config.json",
                 full, (long long)numel, (long long)rows, (long long)cols);
        return NULL;
    }
    float *raw = xmalloc((size_t)numel * sizeof(float));
    if (st_to_f32(t, raw, l->err, l->errlen)) {
        free(raw);
        return NULL;
    }
    if (!conv1d) return raw;
    float *tr = xmalloc((size_t)numel * sizeof(float));
    for (int64_t i = 0; i < cols; i++)     /* raw is [cols(in), rows(out)] */
        for (int64_t o = 0; o < rows; o++) tr[o * cols + i] = raw[i * rows + o];
    free(raw);
    return tr;
}

/* Copies rows [src_row, src_row + n) of src (width cols) into rows [dst_row, ...) of our param. */
static int put_rows(struct loader *l, const char *param, int64_t dst_row, const float *src,
                    int64_t src_row, int64_t n, int64_t cols)
{
    const struct gpt_param *p = gpt_find_param(l->m, param);
    if (!p) BUG("hf map names unknown parameter %s", param);
    int64_t pcols = p->ndim == 2 ? p->shape[1] : 1;
    if (pcols != cols || dst_row + n > p->shape[0]) BUG("hf map: %s rows %lld+%lld", param, (long long)dst_row, (long long)n);
    memcpy(l->dst + p->offset + dst_row * cols, src + src_row * cols, (size_t)(n * cols) * sizeof(float));
    return 0;
}

/* A whole HF tensor into a whole parameter of the same number of rows. */
static int copy_whole(struct loader *l, const char *param, const char *hf, int64_t rows, int64_t cols,
                      bool conv1d)
{
    float *src = read_hf(l, hf, rows, cols, conv1d);
    if (!src) return -1;
    put_rows(l, param, 0, src, 0, rows, cols);
    free(src);
    return 0;
}

static int load_gpt2(struct loader *l)
{
    const struct model_config *c = &l->m->cfg;
    int64_t h = c->hidden_size, d = c->kv_channels, n = c->num_attention_heads, f = c->ffn_hidden_size;
    char ours[128], hf[128];
    if (copy_whole(l, "embedding.word_embeddings.weight", "transformer.wte.weight", c->vocab_size, h, false) ||
        copy_whole(l, "embedding.position_embeddings.weight", "transformer.wpe.weight", c->max_position_embeddings, h, false) ||
        copy_whole(l, "decoder.final_layernorm.weight", "transformer.ln_f.weight", h, 1, false) ||
        copy_whole(l, "decoder.final_layernorm.bias", "transformer.ln_f.bias", h, 1, false))
        return -1;
    for (int i = 0; i < c->num_layers; i++) {
#define OURS(s) (snprintf(ours, sizeof ours, "decoder.layers.%d.%s", i, s), ours)
#define HF(s) (snprintf(hf, sizeof hf, "transformer.h.%d.%s", i, s), hf)
        if (copy_whole(l, OURS("input_layernorm.weight"), HF("ln_1.weight"), h, 1, false) ||
            copy_whole(l, OURS("input_layernorm.bias"), HF("ln_1.bias"), h, 1, false) ||
            copy_whole(l, OURS("pre_mlp_layernorm.weight"), HF("ln_2.weight"), h, 1, false) ||
            copy_whole(l, OURS("pre_mlp_layernorm.bias"), HF("ln_2.bias"), h, 1, false) ||
            copy_whole(l, OURS("self_attention.linear_proj.weight"), HF("attn.c_proj.weight"), h, h, true) ||
            copy_whole(l, OURS("self_attention.linear_proj.bias"), HF("attn.c_proj.bias"), h, 1, false) ||
            copy_whole(l, OURS("mlp.linear_fc1.weight"), HF("mlp.c_fc.weight"), f, h, true) ||
            copy_whole(l, OURS("mlp.linear_fc1.bias"), HF("mlp.c_fc.bias"), f, 1, false) ||
            copy_whole(l, OURS("mlp.linear_fc2.weight"), HF("mlp.c_proj.weight"), h, f, true) ||
            copy_whole(l, OURS("mlp.linear_fc2.bias"), HF("mlp.c_proj.bias"), h, 1, false))
            return -1;
        /* c_attn packs [q | k | v] along its output; ours groups q_h, k_h, v_h per head */
        for (int bias = 0; bias < 2; bias++) {
            int64_t cols = bias ? 1 : h;
            HF(bias ? "attn.c_attn.bias" : "attn.c_attn.weight");
            OURS(bias ? "self_attention.linear_qkv.bias" : "self_attention.linear_qkv.weight");
            float *src = read_hf(l, hf, 3 * h, cols, !bias);
            if (!src) return -1;
            for (int64_t head = 0; head < n; head++)
                for (int part = 0; part < 3; part++)
                    put_rows(l, ours, (head * 3 + part) * d, src, part * h + head * d, d, cols);
            free(src);
        }
#undef OURS
#undef HF
    }
    return 0;
}

static int load_llama(struct loader *l)
{
    const struct model_config *c = &l->m->cfg;
    int64_t h = c->hidden_size, d = c->kv_channels, n = c->num_attention_heads, g = c->num_query_groups;
    int64_t f = c->ffn_hidden_size, per_group = n / g;
    char ours[128], hf[128];
    if (copy_whole(l, "embedding.word_embeddings.weight", "model.embed_tokens.weight", c->vocab_size, h, false) ||
        copy_whole(l, "decoder.final_layernorm.weight", "model.norm.weight", h, 1, false))
        return -1;
    if (c->untie_embeddings_and_output_weights &&
        copy_whole(l, "output_layer.weight", "lm_head.weight", c->vocab_size, h, false))
        return -1;
    for (int i = 0; i < c->num_layers; i++) {
#define OURS(s) (snprintf(ours, sizeof ours, "decoder.layers.%d.%s", i, s), ours)
#define HF(s) (snprintf(hf, sizeof hf, "model.layers.%d.%s", i, s), hf)
        if (copy_whole(l, OURS("input_layernorm.weight"), HF("input_layernorm.weight"), h, 1, false) ||
            copy_whole(l, OURS("pre_mlp_layernorm.weight"), HF("post_attention_layernorm.weight"), h, 1, false) ||
            copy_whole(l, OURS("self_attention.linear_proj.weight"), HF("self_attn.o_proj.weight"), h, n * d, false) ||
            copy_whole(l, OURS("mlp.linear_fc2.weight"), HF("mlp.down_proj.weight"), h, f, false))
            return -1;
        float *q = read_hf(l, HF("self_attn.q_proj.weight"), n * d, h, false);
        float *k = q ? read_hf(l, HF("self_attn.k_proj.weight"), g * d, h, false) : NULL;
        float *v = k ? read_hf(l, HF("self_attn.v_proj.weight"), g * d, h, false) : NULL;
        if (v) {
            OURS("self_attention.linear_qkv.weight");
            for (int64_t j = 0; j < g; j++) {
                int64_t base = j * (per_group + 2) * d;
                put_rows(l, ours, base, q, j * per_group * d, per_group * d, h);
                put_rows(l, ours, base + per_group * d, k, j * d, d, h);
                put_rows(l, ours, base + (per_group + 1) * d, v, j * d, d, h);
            }
        }
        free(q);
        free(k);
        free(v);
        if (!v) return -1;
        float *gate = read_hf(l, HF("mlp.gate_proj.weight"), f, h, false);
        float *up = gate ? read_hf(l, HF("mlp.up_proj.weight"), f, h, false) : NULL;
        if (up) {
            put_rows(l, OURS("mlp.linear_fc1.weight"), 0, gate, 0, f, h);
            put_rows(l, ours, f, up, 0, f, h);
        }
        free(gate);
        free(up);
        if (!up) return -1;
#undef OURS
#undef HF
    }
    return 0;
}

int hf_load_into(const struct gpt_model *m, enum hf_family family, const struct st_file *f,
                 const char *prefix, float *dst, char *err, size_t errlen)
{
    struct loader l = {m, f, prefix, dst, err, errlen};
    if (m->device != DEV_CPU) BUG("hf_load_into: load on the host and copy");
    return family == HF_GPT2 ? load_gpt2(&l) : load_llama(&l);
}
