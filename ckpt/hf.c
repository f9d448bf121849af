/* Hugging Face config.json reading and writing, and the Megatron flags that build the same model.
 * The tensor map is in hf_map.c; the contract of both in hf.h. */
#include "ckpt/hf.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/json.h"

/* ---- config.json -> model_config ---- */

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
    if (!json_int64(v, out) || *out < 0 || *out > INT32_MAX) {
        snprintf(err, errlen, "%s: \"%s\" is not an integer in [0, %d]; fix the file", path, key, INT32_MAX);
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
        char q[JSON_QUOTED_CAP];
        snprintf(err, errlen, "%s: activation_function %s is not supported; use gelu or gelu_new",
                 path, act_name ? json_quoted(q, act_name, strlen(act_name)) : "(not a string)");
        return -1;
    }
    if (heads < 1 || hidden % heads != 0 || (inner <= 0 && 4 * hidden > INT32_MAX)) {
        snprintf(err, errlen,
                 "%s: n_embd %" PRId64 " and n_head %" PRId64 ": n_head must be positive and "
                 "divide n_embd (and 4 x n_embd, the default n_inner, fit 32 bits); fix the file",
                 path, hidden, heads);
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
    if (heads < 1 || (head_dim <= 0 && hidden % heads != 0)) {
        snprintf(err, errlen,
                 "%s: hidden_size %" PRId64 " and num_attention_heads %" PRId64 ": the heads "
                 "must be positive and, without head_dim, divide hidden_size; fix the file",
                 path, hidden, heads);
        return -1;
    }
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

int hf_parse_config(const char *text, size_t len, const char *path, struct model_config *c,
                    enum hf_family *family, char *err, size_t errlen)
{
    char jerr[256];
    struct json_doc *doc = json_parse(text, len, jerr, sizeof jerr);
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
    if (json_type(root) != JSON_OBJECT) {
        snprintf(err, errlen, "%s: not a JSON object; fix or re-download the file", path);
        rc = -1;
    } else if (name && strcmp(name, "gpt2") == 0) {
        *family = HF_GPT2;
        rc = fill_gpt2(root, c, path, err, errlen);
    } else if (name && (strcmp(name, "llama") == 0 || strcmp(name, "mistral") == 0)) {
        *family = HF_LLAMA;
        rc = fill_llama(root, c, path, err, errlen);
    } else {
        char q[JSON_QUOTED_CAP];
        snprintf(err, errlen, "%s: model_type %s is not supported; use a gpt2 or llama checkpoint",
                 path, json_quoted(q, name, name ? strlen(name) : 0));
        rc = -1;
    }
    json_free(doc);
    if (rc == 0 && (c->num_layers < 1 || c->hidden_size < 1 || c->num_attention_heads < 1 || c->num_query_groups < 1 ||
                    c->kv_channels < 1 || c->ffn_hidden_size < 1 || c->max_position_embeddings < 1 ||
                    c->vocab_size < 1 || c->num_attention_heads % c->num_query_groups != 0)) {
        snprintf(err, errlen, "%s: the model sizes are not positive or the heads do not divide into the key/value "
                 "groups; fix the file", path);
        rc = -1;
    }
    if (rc == 0) {
        c->seq_length = c->max_position_embeddings;
        c->padded_vocab_size = c->vocab_size;
    }
    return rc;
}

int hf_read_config(const char *dir, struct model_config *c, enum hf_family *family, char *err,
                   size_t errlen)
{
    char path[4200];
    size_t len;
    snprintf(path, sizeof path, "%.4096s/config.json", dir);
    char *text = read_file(path, &len, err, errlen);
    if (!text) return -1;
    int rc = hf_parse_config(text, len, path, c, family, err, errlen);
    free(text);
    return rc;
}

/* ---- model_config -> config.json and flags ---- */

int hf_family_of(const struct model_config *c, enum hf_family *family, char *err, size_t errlen)
{
    if (c->normalization == NORM_LAYERNORM && c->position_embedding == POS_LEARNED_ABSOLUTE &&
        c->activation != ACT_SWIGLU && c->add_bias_linear && !c->untie_embeddings_and_output_weights &&
        c->num_query_groups == c->num_attention_heads && (int64_t)c->num_attention_heads * c->kv_channels == c->hidden_size) {
        *family = HF_GPT2;
        return 0;
    }
    if (c->normalization == NORM_RMSNORM && c->position_embedding == POS_ROPE && c->activation == ACT_SWIGLU &&
        !c->add_bias_linear && c->rotary_percent == 1.0f) {
        *family = HF_LLAMA;
        return 0;
    }
    snprintf(err, errlen, "the model (%s, %s positions, %s, %s) is neither GPT-2 (LayerNorm, learned_absolute, "
             "gelu, biases, tied output, no GQA) nor LLaMA (RMSNorm, rope, swiglu, no biases) as Hugging Face "
             "defines them",
             c->normalization == NORM_RMSNORM ? "RMSNorm" : "LayerNorm",
             c->position_embedding == POS_ROPE ? "rope" : c->position_embedding == POS_NONE ? "no" : "learned_absolute",
             c->activation == ACT_SWIGLU ? "swiglu" : "gelu", c->add_bias_linear ? "biases" : "no biases");
    return -1;
}

static const char *torch_dtype(enum st_dtype dt)
{
    return dt == ST_BF16 ? "bfloat16" : dt == ST_F16 ? "float16" : "float32";
}

/* The shortest %g that reads back as the same float, as Python prints a float32 config value. */
static void float_text(float v, char *out, size_t n)
{
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(out, n, "%.*g", digits, (double)v);
        if (strtof(out, NULL) == v) break;
    }
    if (!strpbrk(out, ".eEn")) strncat(out, ".0", n - strlen(out) - 1); /* 10000 -> 10000.0 */
}

char *hf_config_json(const struct model_config *c, enum hf_family family, enum st_dtype dtype)
{
    char *text = NULL, eps[32], std[32], theta[32];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) die_user("out of memory writing config.json");
    float_text(c->norm_epsilon, eps, sizeof eps);
    float_text(c->init_method_std, std, sizeof std);
    float_text(c->rotary_base, theta, sizeof theta);
    if (family == HF_GPT2) {
        fprintf(f, "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n");
        fprintf(f, "  \"activation_function\": \"%s\",\n", c->activation == ACT_GELU ? "gelu" : "gelu_new");
        fprintf(f, "  \"n_layer\": %d,\n  \"n_embd\": %d,\n  \"n_head\": %d,\n", c->num_layers, c->hidden_size,
                c->num_attention_heads);
        if (c->ffn_hidden_size == 4 * c->hidden_size) fprintf(f, "  \"n_inner\": null,\n");
        else fprintf(f, "  \"n_inner\": %d,\n", c->ffn_hidden_size);
        fprintf(f, "  \"n_positions\": %d,\n  \"layer_norm_epsilon\": %s,\n", c->max_position_embeddings, eps);
        fprintf(f, "  \"attn_pdrop\": 0.0,\n  \"embd_pdrop\": 0.0,\n  \"resid_pdrop\": 0.0,\n");
    } else {
        fprintf(f, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n");
        fprintf(f, "  \"hidden_act\": \"silu\",\n  \"attention_bias\": false,\n  \"mlp_bias\": false,\n");
        fprintf(f, "  \"num_hidden_layers\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n",
                c->num_layers, c->hidden_size, c->ffn_hidden_size);
        fprintf(f, "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n",
                c->num_attention_heads, c->num_query_groups, c->kv_channels);
        fprintf(f, "  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": %s,\n  \"rope_theta\": %s,\n",
                c->max_position_embeddings, eps, theta);
        fprintf(f, "  \"attention_dropout\": 0.0,\n");
    }
    fprintf(f, "  \"tie_word_embeddings\": %s,\n", c->untie_embeddings_and_output_weights ? "false" : "true");
    fprintf(f, "  \"initializer_range\": %s,\n  \"vocab_size\": %lld,\n  \"torch_dtype\": \"%s\"\n}\n", std,
            (long long)c->vocab_size, torch_dtype(dtype));
    fclose(f);
    return text;
}

/* A dropout probability from config.json text, or dflt. */
static double config_number(const char *text, const char *key, double dflt)
{
    if (!text) return dflt;
    struct json_doc *doc = json_parse(text, strlen(text), NULL, 0);
    double v = doc ? get_num(json_root(doc), key, dflt) : dflt;
    json_free(doc);
    return v;
}

void hf_print_flags(FILE *f, const struct model_config *c, enum hf_family family, const char *config_text)
{
    char eps[32], std[32];
    float_text(c->norm_epsilon, eps, sizeof eps);
    float_text(c->init_method_std, std, sizeof std);
    fprintf(f, "--num-layers %d --hidden-size %d --ffn-hidden-size %d --num-attention-heads %d", c->num_layers,
            c->hidden_size, c->ffn_hidden_size, c->num_attention_heads);
    if (c->num_query_groups != c->num_attention_heads)
        fprintf(f, " --group-query-attention --num-query-groups %d", c->num_query_groups);
    if ((int64_t)c->kv_channels * c->num_attention_heads != c->hidden_size) fprintf(f, " --kv-channels %d", c->kv_channels);
    fprintf(f, " --seq-length %d --max-position-embeddings %d", c->max_position_embeddings, c->max_position_embeddings);
    double attn, hidden;
    if (family == HF_GPT2) {
        fprintf(f, " --position-embedding-type learned_absolute --normalization LayerNorm --norm-epsilon %s", eps);
        /* HF "gelu" is the erf form: Megatron's default fused bias-GeLU is the tanh one */
        fprintf(f, c->activation == ACT_GELU_TANH ? " --openai-gelu" : " --no-bias-gelu-fusion");
        attn = config_number(config_text, "attn_pdrop", 0.1);
        hidden = config_number(config_text, "resid_pdrop", 0.1);
    } else {
        /* Megatron's --rotary-base is an integer */
        fprintf(f, " --position-embedding-type rope --rotary-base %lld --normalization RMSNorm --norm-epsilon %s --swiglu "
                "--disable-bias-linear", (long long)llroundf(c->rotary_base), eps);
        if (c->untie_embeddings_and_output_weights) fprintf(f, " --untie-embeddings-and-output-weights");
        attn = config_number(config_text, "attention_dropout", 0.0);
        hidden = 0.0;
    }
    fprintf(f, " --attention-dropout %g --hidden-dropout %g --init-method-std %s\n", attn, hidden, std);
    fprintf(f, "# vocabulary: %lld tokens; add the tokenizer it was trained with (GPT-2's: --tokenizer-type "
            "GPT2BPETokenizer --vocab-file ... --merge-file ...), or --tokenizer-type NullTokenizer --vocab-size %lld\n",
            (long long)c->vocab_size, (long long)c->vocab_size);
}
