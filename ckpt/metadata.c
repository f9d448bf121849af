/* metadata.json writing and validating parsing; see metadata.h and docs/CHECKPOINT_FORMAT.md. */
#include "ckpt/metadata.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/checksum.h"
#include "util/error.h"
#include "util/json.h"

static const char *const role_names[NUM_ROLES] = {"weight", "main_param", "exp_avg", "exp_avg_sq", "momentum_buffer"};

const char *meta_role_name(enum meta_role r) { return (unsigned)r < NUM_ROLES ? role_names[r] : "?"; }

const char *meta_normalization_name(enum norm_type t) { return t == NORM_RMSNORM ? "RMSNorm" : "LayerNorm"; }

const char *meta_position_name(enum position_type t)
{
    return t == POS_ROPE ? "rope" : t == POS_NONE ? "none" : "learned_absolute";
}

const char *meta_activation_name(enum activation_type t)
{
    return t == ACT_SWIGLU ? "swiglu" : t == ACT_GELU_TANH ? "openai_gelu" : "gelu";
}

/* ---- writing ---- */

struct sb {
    char *p;
    size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sb *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->len + (size_t)n + 1 > b->cap) {
        while (b->len + (size_t)n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->p = xrealloc(b->p, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void sb_string(struct sb *b, const char *s)
{
    size_t n = json_escape(NULL, 0, s, strlen(s));
    char *q = xmalloc(n + 1);
    json_escape(q, n + 1, s, strlen(s));
    sb_printf(b, "%s", q);
    free(q);
}

/* The shortest %g that reads back as the same float (%.9g always does); JSON has no inf/nan,
 * which a config never holds. */
static void sb_float(struct sb *b, const char *key, float v, const char *sep)
{
    char text[32];
    if (!isfinite(v)) v = 0.0f;
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, (double)v);
        if (strtof(text, NULL) == v) break;
    }
    sb_printf(b, "\"%s\": %s%s", key, text, sep);
}

static void write_model(struct sb *b, const struct model_config *c)
{
    sb_printf(b, "  \"model\": {\n    \"num_layers\": %d, \"hidden_size\": %d, \"ffn_hidden_size\": %d,\n",
              c->num_layers, c->hidden_size, c->ffn_hidden_size);
    sb_printf(b, "    \"num_attention_heads\": %d, \"num_query_groups\": %d, \"kv_channels\": %d,\n",
              c->num_attention_heads, c->num_query_groups, c->kv_channels);
    sb_printf(b, "    \"seq_length\": %d, \"max_position_embeddings\": %d,\n", c->seq_length,
              c->max_position_embeddings);
    sb_printf(b, "    \"vocab_size\": %" PRId64 ", \"padded_vocab_size\": %" PRId64 ",\n", c->vocab_size,
              c->padded_vocab_size);
    sb_printf(b, "    \"normalization\": \"%s\", \"position_embedding_type\": \"%s\", \"activation\": \"%s\",\n",
              meta_normalization_name(c->normalization), meta_position_name(c->position_embedding),
              meta_activation_name(c->activation));
    sb_printf(b, "    \"add_bias_linear\": %s, \"untie_embeddings_and_output_weights\": %s,\n    ",
              c->add_bias_linear ? "true" : "false", c->untie_embeddings_and_output_weights ? "true" : "false");
    sb_float(b, "norm_epsilon", c->norm_epsilon, ", ");
    sb_float(b, "rotary_base", c->rotary_base, ", ");
    sb_float(b, "rotary_percent", c->rotary_percent, ",\n    ");
    sb_float(b, "hidden_dropout", c->hidden_dropout, ", ");
    sb_float(b, "attention_dropout", c->attention_dropout, ", ");
    sb_float(b, "init_method_std", c->init_method_std, "\n  },\n");
}

static void write_optimizer(struct sb *b, const struct ckpt_meta *m)
{
    if (!m->has_optimizer) {
        sb_printf(b, "  \"optimizer\": null,\n");
        return;
    }
    const struct meta_optimizer *o = &m->optimizer;
    sb_printf(b, "  \"optimizer\": {\"type\": \"%s\", \"step\": %" PRId64 ", \"schedule_samples\": %" PRId64 ",\n",
              o->type, o->step, o->schedule_samples);
    sb_printf(b, "    \"loss_scaler\": {\"dynamic\": %s, \"scale\": %.17g, \"growth_tracker\": %" PRId64
              ", \"hysteresis_tracker\": %" PRId64 "}",
              o->scaler_dynamic ? "true" : "false", o->loss_scale, o->growth_tracker, o->hysteresis_tracker);
    if (o->has_scheduler) {
        const struct lr_schedule *s = &o->scheduler;
        sb_printf(b, ",\n    \"scheduler\": {\"max_lr\": %.17g, \"min_lr\": %.17g, \"lr_warmup_steps\": %.17g, "
                  "\"lr_decay_steps\": %" PRId64 ", \"lr_decay_style\": \"%s\",\n      \"start_wd\": %.17g, "
                  "\"end_wd\": %.17g, \"wd_incr_steps\": %" PRId64 ", \"wd_incr_style\": \"%s\"}",
                  s->max_lr, s->min_lr, s->warmup_steps, s->decay_steps, lr_schedule_decay_style_name(s->decay_style),
                  s->start_wd, s->end_wd, s->wd_incr_steps, lr_schedule_wd_style_name(s->wd_style));
    }
    sb_printf(b, "},\n");
}

static void write_tensors(struct sb *b, const struct ckpt_meta *m)
{
    sb_printf(b, "  \"tensors\": [");
    for (size_t i = 0; i < m->num_tensors; i++) {
        const struct meta_tensor *t = &m->tensors[i];
        char sum[23];
        checksum_format(t->checksum, sum);
        sb_printf(b, "%s\n    {\"name\": ", i ? "," : "");
        sb_string(b, t->name);
        sb_printf(b, ", \"param\": ");
        sb_string(b, t->param);
        sb_printf(b, ", \"role\": \"%s\", \"file\": ", meta_role_name(t->role));
        sb_string(b, t->file);
        sb_printf(b, ", \"dtype\": \"%s\", \"shape\": [%" PRId64, st_dtype_name(t->dtype), t->shape[0]);
        if (t->ndim == 2) sb_printf(b, ", %" PRId64, t->shape[1]);
        sb_printf(b, "], \"checksum\": \"%s\"}", sum);
    }
    sb_printf(b, "\n  ]\n}\n");
}

char *meta_to_json(const struct ckpt_meta *m, size_t *len)
{
    struct sb b = {0};
    sb_printf(&b, "{\n  \"format\": \"%s\",\n  \"format_version\": %d,\n", META_FORMAT, META_VERSION);
    sb_printf(&b, "  \"iteration\": %" PRId64 ",\n  \"release\": %s,\n", m->iteration, m->release ? "true" : "false");
    sb_printf(&b, "  \"consumed_train_samples\": %" PRId64 ",\n  \"consumed_valid_samples\": %" PRId64 ",\n",
              m->consumed_train_samples, m->consumed_valid_samples);
    sb_printf(&b, "  \"params_dtype\": \"%s\",\n", st_dtype_name(m->params_dtype));
    write_model(&b, &m->model);
    sb_printf(&b, "  \"args\": %s,\n", m->args_json ? m->args_json : "{}");
    write_optimizer(&b, m);
    if (m->has_rng)
        sb_printf(&b, "  \"rng\": {\"generator\": \"counter-splitmix64\", \"seed\": %" PRIu64 "},\n", m->seed);
    else
        sb_printf(&b, "  \"rng\": null,\n");
    if (m->hf_config) {
        sb_printf(&b, "  \"hf_config\": ");
        sb_string(&b, m->hf_config);
        sb_printf(&b, ",\n");
    }
    write_tensors(&b, m);
    *len = b.len;
    return b.p;
}

void meta_add_tensor(struct ckpt_meta *m, const char *param, enum meta_role role, const char *file,
                     enum st_dtype dtype, int ndim, const int64_t *shape)
{
    m->tensors = xrealloc(m->tensors, (m->num_tensors + 1) * sizeof *m->tensors);
    struct meta_tensor *t = &m->tensors[m->num_tensors++];
    memset(t, 0, sizeof *t);
    size_t n = strlen(param) + strlen(role_names[role]) + 2;
    t->name = xmalloc(n);
    if (role == ROLE_WEIGHT) snprintf(t->name, n, "%s", param);
    else snprintf(t->name, n, "%s.%s", role_names[role], param);
    t->param = xstrdup(param);
    t->role = role;
    t->file = xstrdup(file);
    t->dtype = dtype;
    t->ndim = ndim;
    t->shape[0] = shape[0];
    t->shape[1] = ndim == 2 ? shape[1] : 0;
}

struct meta_tensor *meta_find(const struct ckpt_meta *m, const char *param, enum meta_role role)
{
    for (size_t i = 0; i < m->num_tensors; i++)
        if (m->tensors[i].role == role && strcmp(m->tensors[i].param, param) == 0) return &m->tensors[i];
    return NULL;
}

void meta_free(struct ckpt_meta *m)
{
    for (size_t i = 0; i < m->num_tensors; i++) {
        free(m->tensors[i].name);
        free(m->tensors[i].param);
        free(m->tensors[i].file);
    }
    free(m->tensors);
    free(m->hf_config);
    m->tensors = NULL;
    m->hf_config = NULL;
    m->num_tensors = 0;
}

/* ---- parsing ---- */

struct parser {
    const struct json_value *root;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int bad(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int get_i64(struct parser *p, const struct json_value *obj, const char *key, int64_t lo, int64_t hi,
                   int64_t *out)
{
    const struct json_value *v = json_get(obj, key);
    if (!v || !json_int64(v, out) || *out < lo || *out > hi)
        return bad(p, "\"%s\" is missing or not an integer in [%" PRId64 ", %" PRId64 "]", key, lo, hi);
    return 0;
}

static int get_int(struct parser *p, const struct json_value *obj, const char *key, int *out)
{
    int64_t v;
    if (get_i64(p, obj, key, 1, 1 << 30, &v)) return -1;
    *out = (int)v;
    return 0;
}

static int get_bool(struct parser *p, const struct json_value *obj, const char *key, bool *out)
{
    const struct json_value *v = json_get(obj, key);
    if (!v || json_type(v) != JSON_BOOL) return bad(p, "\"%s\" is missing or not true/false", key);
    *out = json_bool(v);
    return 0;
}

static int get_float(struct parser *p, const struct json_value *obj, const char *key, float *out)
{
    const struct json_value *v = json_get(obj, key);
    double d = v ? json_number(v) : NAN;
    if (!isfinite(d) || fabs(d) > 3e38) return bad(p, "\"%s\" is missing or not a finite number", key);
    *out = (float)d;
    return 0;
}

/* The index of s in names[0..n), or -1 with an error naming key. */
static int get_choice(struct parser *p, const struct json_value *obj, const char *key, const char *const *names,
                      int n)
{
    const struct json_value *v = json_get(obj, key);
    const char *s = v ? json_string(v, NULL) : NULL;
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return bad(p, "\"%s\" is missing or not one of the known values", key);
}

static int parse_model(struct parser *p, const struct json_value *o, struct model_config *c)
{
    static const char *const norms[] = {"LayerNorm", "RMSNorm"};
    static const char *const positions[] = {"learned_absolute", "rope", "none"};
    static const char *const acts[] = {"gelu", "openai_gelu", "swiglu"};
    if (!o || json_type(o) != JSON_OBJECT) return bad(p, "\"model\" is missing or not an object");
    int norm, pos, act;
    if (get_int(p, o, "num_layers", &c->num_layers) || get_int(p, o, "hidden_size", &c->hidden_size) ||
        get_int(p, o, "ffn_hidden_size", &c->ffn_hidden_size) ||
        get_int(p, o, "num_attention_heads", &c->num_attention_heads) ||
        get_int(p, o, "num_query_groups", &c->num_query_groups) || get_int(p, o, "kv_channels", &c->kv_channels) ||
        get_int(p, o, "seq_length", &c->seq_length) ||
        get_int(p, o, "max_position_embeddings", &c->max_position_embeddings) ||
        get_i64(p, o, "vocab_size", 1, INT64_C(1) << 40, &c->vocab_size) ||
        get_i64(p, o, "padded_vocab_size", c->vocab_size, INT64_C(1) << 40, &c->padded_vocab_size) ||
        (norm = get_choice(p, o, "normalization", norms, 2)) < 0 ||
        (pos = get_choice(p, o, "position_embedding_type", positions, 3)) < 0 ||
        (act = get_choice(p, o, "activation", acts, 3)) < 0 || get_bool(p, o, "add_bias_linear", &c->add_bias_linear) ||
        get_bool(p, o, "untie_embeddings_and_output_weights", &c->untie_embeddings_and_output_weights) ||
        get_float(p, o, "norm_epsilon", &c->norm_epsilon) || get_float(p, o, "rotary_base", &c->rotary_base) ||
        get_float(p, o, "rotary_percent", &c->rotary_percent) ||
        get_float(p, o, "hidden_dropout", &c->hidden_dropout) ||
        get_float(p, o, "attention_dropout", &c->attention_dropout) ||
        get_float(p, o, "init_method_std", &c->init_method_std))
        return -1;
    if (c->num_attention_heads % c->num_query_groups != 0)
        return bad(p, "\"num_attention_heads\" %d is not a multiple of \"num_query_groups\" %d", c->num_attention_heads,
                   c->num_query_groups);
    c->normalization = (enum norm_type)norm;
    c->position_embedding = (enum position_type)pos;
    c->activation = (enum activation_type)act;
    return 0;
}

/* A finite number >= 0. */
static int get_nonneg(struct parser *p, const struct json_value *obj, const char *key, double *out)
{
    const struct json_value *v = json_get(obj, key);
    *out = v ? json_number(v) : NAN;
    if (!isfinite(*out) || *out < 0.0) return bad(p, "\"%s\" is missing or not a number >= 0", key);
    return 0;
}

/* "optimizer.scheduler", when there (older checkpoints have none). */
static int parse_scheduler(struct parser *p, const struct json_value *s, struct meta_optimizer *opt)
{
    opt->has_scheduler = s != NULL;
    if (!s) return 0;
    if (json_type(s) != JSON_OBJECT) return bad(p, "\"optimizer.scheduler\" is not an object");
    struct lr_schedule *c = &opt->scheduler;
    const struct json_value *ds = json_get(s, "lr_decay_style"), *ws = json_get(s, "wd_incr_style");
    const char *decay = ds ? json_string(ds, NULL) : NULL, *wd = ws ? json_string(ws, NULL) : NULL;
    if (!decay || !lr_schedule_parse_decay_style(decay, &c->decay_style))
        return bad(p, "\"lr_decay_style\" is missing or not a known style");
    if (!wd || !lr_schedule_parse_wd_style(wd, &c->wd_style))
        return bad(p, "\"wd_incr_style\" is missing or not a known style");
    return get_nonneg(p, s, "max_lr", &c->max_lr) || get_nonneg(p, s, "min_lr", &c->min_lr) ||
           get_nonneg(p, s, "lr_warmup_steps", &c->warmup_steps) ||
           get_i64(p, s, "lr_decay_steps", 1, INT64_MAX, &c->decay_steps) ||
           get_nonneg(p, s, "start_wd", &c->start_wd) || get_nonneg(p, s, "end_wd", &c->end_wd) ||
           get_i64(p, s, "wd_incr_steps", 0, INT64_MAX, &c->wd_incr_steps);
}

static int parse_optimizer(struct parser *p, const struct json_value *o, struct ckpt_meta *m)
{
    m->has_optimizer = o && json_type(o) == JSON_OBJECT;
    if (!o || json_type(o) == JSON_NULL) return 0;
    if (!m->has_optimizer) return bad(p, "\"optimizer\" is neither null nor an object");
    static const char *const types[] = {"adam", "sgd"};
    struct meta_optimizer *opt = &m->optimizer;
    int type = get_choice(p, o, "type", types, 2);
    if (type < 0) return -1;
    snprintf(opt->type, sizeof opt->type, "%s", types[type]);
    const struct json_value *s = json_get(o, "loss_scaler");
    if (get_i64(p, o, "step", 0, INT64_MAX, &opt->step) ||
        get_i64(p, o, "schedule_samples", 0, INT64_MAX, &opt->schedule_samples))
        return -1;
    if (!s || json_type(s) != JSON_OBJECT) return bad(p, "\"optimizer.loss_scaler\" is missing or not an object");
    opt->loss_scale = json_number(json_get(s, "scale"));
    if (!(opt->loss_scale > 0.0) || !isfinite(opt->loss_scale))
        return bad(p, "\"optimizer.loss_scaler.scale\" is missing or not a positive number");
    if (get_bool(p, s, "dynamic", &opt->scaler_dynamic) ||
        get_i64(p, s, "growth_tracker", 0, INT64_MAX, &opt->growth_tracker) ||
        get_i64(p, s, "hysteresis_tracker", INT64_MIN, INT64_MAX, &opt->hysteresis_tracker))
        return -1;
    return parse_scheduler(p, json_get(o, "scheduler"), opt);
}

static int parse_rng(struct parser *p, const struct json_value *r, struct ckpt_meta *m)
{
    m->has_rng = r && json_type(r) == JSON_OBJECT;
    if (!r || json_type(r) == JSON_NULL) return 0;
    if (!m->has_rng) return bad(p, "\"rng\" is neither null nor an object");
    const struct json_value *g = json_get(r, "generator");
    const char *gen = g ? json_string(g, NULL) : NULL;
    if (!gen || strcmp(gen, "counter-splitmix64") != 0) return bad(p, "\"rng.generator\" is not \"counter-splitmix64\"");
    int64_t seed;
    if (get_i64(p, r, "seed", 0, INT64_MAX, &seed)) return -1;
    m->seed = (uint64_t)seed;
    return 0;
}

/* A plain file name: no directory part, nothing hidden, so metadata cannot point outside. */
static bool safe_file_name(const char *s, size_t len)
{
    if (len == 0 || len > 128 || s[0] == '.') return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static const char *get_str(const struct json_value *o, const char *key, size_t *len)
{
    const struct json_value *v = json_get(o, key);
    const char *s = v ? json_string(v, len) : NULL;
    return s && strlen(s) == *len ? s : NULL; /* no embedded NUL */
}

static int parse_shape(struct parser *p, const struct json_value *s, struct meta_tensor *t, size_t i)
{
    size_t nd = json_count(s);
    if (!s || json_type(s) != JSON_ARRAY || nd < 1 || nd > 2) return bad(p, "tensor %zu: \"shape\" must have 1 or 2 dimensions", i);
    t->ndim = (int)nd;
    for (size_t d = 0; d < nd; d++)
        if (!json_int64(json_at(s, d), &t->shape[d]) || t->shape[d] < 0 || t->shape[d] > (INT64_C(1) << 40))
            return bad(p, "tensor %zu: \"shape\" holds a bad dimension", i);
    if (nd == 2 && t->shape[0] > 0 && t->shape[1] > (INT64_C(1) << 40) / t->shape[0])
        return bad(p, "tensor %zu: \"shape\" is too large", i);
    return 0;
}

static int parse_tensor(struct parser *p, const struct json_value *e, struct meta_tensor *t, size_t i)
{
    static const char *const dtypes[] = {"F32", "BF16", "F16"};
    static const enum st_dtype st_types[] = {ST_F32, ST_BF16, ST_F16};
    size_t nlen = 0, plen = 0, flen = 0;
    if (!e || json_type(e) != JSON_OBJECT) return bad(p, "tensor %zu is not an object", i);
    const char *name = get_str(e, "name", &nlen), *param = get_str(e, "param", &plen), *file = get_str(e, "file", &flen);
    if (!name || nlen == 0 || nlen > 256) return bad(p, "tensor %zu: \"name\" is missing or bad", i);
    if (!param || plen == 0 || plen > META_MAX_PARAM_NAME) return bad(p, "tensor %zu: \"param\" is missing or longer than %d bytes", i, META_MAX_PARAM_NAME);
    if (!file || !safe_file_name(file, flen)) return bad(p, "tensor %zu: \"file\" must be a plain file name in the checkpoint directory", i);
    int role = get_choice(p, e, "role", role_names, NUM_ROLES), dt = role < 0 ? -1 : get_choice(p, e, "dtype", dtypes, 3);
    if (role < 0 || dt < 0) {
        char why[160];
        snprintf(why, sizeof why, "%s", p->err);
        return bad(p, "tensor %zu: %s", i, why);
    }
    const struct json_value *sum = json_get(e, "checksum");
    if (parse_shape(p, json_get(e, "shape"), t, i)) return -1;
    if (checksum_parse(sum ? json_string(sum, NULL) : NULL, &t->checksum))
        return bad(p, "tensor %zu: \"checksum\" is not \"sum64:\" and 16 hex digits", i);
    t->role = (enum meta_role)role;
    t->dtype = st_types[dt];
    t->name = xstrdup(name);
    t->param = xstrdup(param);
    t->file = xstrdup(file);
    return 0;
}

static int cmp_file_name(const void *a, const void *b)
{
    const struct meta_tensor *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

static int cmp_param_role(const void *a, const void *b)
{
    const struct meta_tensor *x = a, *y = b;
    int c = strcmp(x->param, y->param);
    return c ? c : (int)x->role - (int)y->role;
}

/* Names are unique within a file, and (param, role) pairs are unique: two sorts of a copy. */
static int check_unique(struct parser *p, const struct ckpt_meta *m)
{
    size_t n = m->num_tensors;
    struct meta_tensor *s = xmalloc((n ? n : 1) * sizeof *s);
    memcpy(s, m->tensors, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_file_name);
    int rc = 0;
    for (size_t i = 1; i < n && rc == 0; i++)
        if (cmp_file_name(&s[i - 1], &s[i]) == 0) rc = bad(p, "tensor \"%s\" is listed twice", s[i].name);
    qsort(s, n, sizeof *s, cmp_param_role);
    for (size_t i = 1; i < n && rc == 0; i++)
        if (cmp_param_role(&s[i - 1], &s[i]) == 0)
            rc = bad(p, "the %s of \"%s\" is listed twice", meta_role_name(s[i].role), s[i].param);
    free(s);
    return rc;
}

static int parse_tensors(struct parser *p, const struct json_value *arr, struct ckpt_meta *m)
{
    if (!arr || json_type(arr) != JSON_ARRAY) return bad(p, "\"tensors\" is missing or not an array");
    size_t n = json_count(arr);
    if (n > 10000000) return bad(p, "\"tensors\" lists %zu tensors, more than any model has", n);
    m->tensors = xcalloc(n ? n : 1, sizeof *m->tensors);
    for (size_t i = 0; i < n; i++) {
        if (parse_tensor(p, json_at(arr, i), &m->tensors[i], i)) return -1;
        m->num_tensors = i + 1;
    }
    return check_unique(p, m);
}

static int parse_header(struct parser *p, const struct json_value *r, struct ckpt_meta *m)
{
    const struct json_value *f = json_get(r, "format");
    const char *format = f ? json_string(f, NULL) : NULL;
    if (!format || strcmp(format, META_FORMAT) != 0) return bad(p, "\"format\" is not \"%s\"; not a checkpoint of this program", META_FORMAT);
    int64_t version;
    if (get_i64(p, r, "format_version", 1, INT64_MAX, &version)) return -1;
    if (version > META_VERSION)
        return bad(p, "format_version %" PRId64 " is newer than this program reads (%d); use a newer megatron", version, META_VERSION);
    static const char *const dtypes[] = {"F32", "BF16", "F16"};
    static const enum st_dtype st_types[] = {ST_F32, ST_BF16, ST_F16};
    int dt = get_choice(p, r, "params_dtype", dtypes, 3);
    if (dt < 0) return -1;
    m->params_dtype = st_types[dt];
    const struct json_value *args = json_get(r, "args");
    if (args && json_type(args) != JSON_OBJECT) return bad(p, "\"args\" is not an object");
    return get_i64(p, r, "iteration", 0, INT64_MAX, &m->iteration) || get_bool(p, r, "release", &m->release) ||
           get_i64(p, r, "consumed_train_samples", 0, INT64_MAX, &m->consumed_train_samples) ||
           get_i64(p, r, "consumed_valid_samples", 0, INT64_MAX, &m->consumed_valid_samples);
}

int meta_parse(const char *text, size_t len, struct ckpt_meta *m, char *err, size_t errlen)
{
    char jerr[160];
    memset(m, 0, sizeof *m);
    struct json_doc *doc = json_parse(text, len, jerr, sizeof jerr);
    if (!doc) {
        snprintf(err, errlen, "not valid JSON (%s)", jerr);
        return -1;
    }
    struct parser p = {json_root(doc), err, errlen};
    const struct json_value *r = p.root;
    int rc = json_type(r) != JSON_OBJECT ? bad(&p, "not a JSON object") : 0;
    if (rc == 0)
        rc = parse_header(&p, r, m) || parse_model(&p, json_get(r, "model"), &m->model) ||
             parse_optimizer(&p, json_get(r, "optimizer"), m) || parse_rng(&p, json_get(r, "rng"), m) ||
             parse_tensors(&p, json_get(r, "tensors"), m);
    const struct json_value *hf = rc == 0 ? json_get(r, "hf_config") : NULL;
    size_t hlen = 0;
    const char *hf_text = hf ? json_string(hf, &hlen) : NULL;
    if (rc == 0 && hf && (!hf_text || strlen(hf_text) != hlen)) rc = bad(&p, "\"hf_config\" is not a string");
    if (rc == 0 && hf_text) m->hf_config = xstrdup(hf_text);
    if (rc == 0) m->model.seed = m->has_rng ? m->seed : 0;
    json_free(doc);
    if (rc) meta_free(m);
    return rc ? -1 : 0;
}
