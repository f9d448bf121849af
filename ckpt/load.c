/* ckpt_load: everything is checked first (tensors present, shapes that fit the flags, the model
 * settings shapes cannot show, file headers against metadata.json, every checksum), and only then
 * are the weights and optimizer state copied in, so a refused checkpoint changes nothing.
 * Contract in ckpt/ckpt.h. */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ckpt/blocks.h"
#include "ckpt/checksum.h"
#include "ckpt/ckpt.h"
#include "ckpt/tensor_file.h"
#include "util/error.h"

/* The stored tensors each parameter is read from. */
struct sources {
    const struct meta_tensor *weight, *main, *moment1, *moment2;
};

struct load {
    struct ckpt_state *s;
    const char *path;           /* the checkpoint directory */
    struct ckpt_meta meta;
    bool optim, rng;            /* what this load takes */
    struct sources *src;        /* per model parameter */
    struct st_file *files[2];   /* model, optimizer */
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int fail(struct load *l, const char *fmt, ...)
{
    char why[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(l->err, l->errlen, "checkpoint %s: %s", l->path, why);
    return -1;
}

static const char *shape_text(int ndim, const int64_t *shape, char *buf, size_t n)
{
    if (ndim == 2) snprintf(buf, n, "[%" PRId64 ", %" PRId64 "]", shape[0], shape[1]);
    else snprintf(buf, n, "[%" PRId64 "]", shape[0]);
    return buf;
}

/* ---- checks: nothing is changed yet ---- */

/* A stored tensor fits a parameter when the full shapes agree; the vocabulary tensors may differ
 * in padding rows when the vocabulary itself is the same (another TP size pads differently). */
static int check_shape(struct load *l, const struct gpt_param *p, const struct meta_tensor *t)
{
    char a[64], b[64];
    const struct model_config *mine = &l->s->model->cfg, *theirs = &l->meta.model;
    bool vocab = blocks_is_vocab_param(p->name);
    bool same = t->ndim == p->ndim && t->shape[0] == p->full_shape[0] && (p->ndim == 1 || t->shape[1] == p->full_shape[1]);
    if (vocab && t->ndim == p->ndim && (p->ndim == 1 || t->shape[1] == p->full_shape[1])) {
        if (theirs->vocab_size != mine->vocab_size)
            return fail(l, "tensor %s is %s for a vocabulary of %" PRId64 " tokens, these flags build %s for %" PRId64
                        "; use the tokenizer the checkpoint was trained with",
                        p->name, shape_text(t->ndim, t->shape, a, sizeof a), theirs->vocab_size,
                        shape_text(p->ndim, p->full_shape, b, sizeof b), mine->vocab_size);
        if (t->shape[0] >= theirs->vocab_size) return 0;
    }
    if (same) return 0;
    return fail(l, "tensor %s has shape %s in the checkpoint but %s with these flags; use the model flags it was saved with "
                "(see \"model\" in its %s)",
                p->name, shape_text(t->ndim, t->shape, a, sizeof a), shape_text(p->ndim, p->full_shape, b, sizeof b),
                CKPT_META_FILE);
}

static int check_weights(struct load *l)
{
    const struct gpt_model *m = l->s->model;
    char a[64];
    for (int i = 0; i < m->num_params; i++) {
        const struct gpt_param *p = &m->params[i];
        const struct meta_tensor *t = meta_find(&l->meta, p->name, ROLE_WEIGHT);
        if (!t)
            return fail(l, "tensor %s %s is missing: these flags build it but the checkpoint has none; use the model "
                        "flags it was saved with (see \"model\" in its %s)",
                        p->name, shape_text(p->ndim, p->full_shape, a, sizeof a), CKPT_META_FILE);
        if (check_shape(l, p, t)) return -1;
        l->src[i].weight = t;
    }
    for (size_t k = 0; k < l->meta.num_tensors; k++) {
        const struct meta_tensor *t = &l->meta.tensors[k];
        if (t->role == ROLE_WEIGHT && !gpt_find_param(m, t->param))
            return fail(l, "tensor %s %s is in the checkpoint but not in the model these flags build; use the model "
                        "flags it was saved with (see \"model\" in its %s)",
                        t->param, shape_text(t->ndim, t->shape, a, sizeof a), CKPT_META_FILE);
    }
    return 0;
}

/* Settings that change the function without changing any shape. */
static int check_model_settings(struct load *l)
{
    const struct model_config *mine = &l->s->model->cfg, *theirs = &l->meta.model;
    const struct { const char *flag; long long saved, now; } ints[] = {
        {"--num-attention-heads", theirs->num_attention_heads, mine->num_attention_heads},
        {"--num-query-groups", theirs->num_query_groups, mine->num_query_groups},
        {"--kv-channels", theirs->kv_channels, mine->kv_channels},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (ints[i].saved != ints[i].now)
            return fail(l, "saved with %s %lld, these flags give %lld; use %s %lld", ints[i].flag, ints[i].saved,
                        ints[i].now, ints[i].flag, ints[i].saved);
    if (theirs->normalization != mine->normalization)
        return fail(l, "saved with --normalization %s, these flags give %s; use --normalization %s",
                    meta_normalization_name(theirs->normalization), meta_normalization_name(mine->normalization),
                    meta_normalization_name(theirs->normalization));
    if (theirs->position_embedding != mine->position_embedding)
        return fail(l, "saved with --position-embedding-type %s, these flags give %s; use --position-embedding-type %s",
                    meta_position_name(theirs->position_embedding), meta_position_name(mine->position_embedding),
                    meta_position_name(theirs->position_embedding));
    if (theirs->activation != mine->activation)
        return fail(l, "saved with activation %s, these flags give %s; use the activation flag it was trained with "
                    "(--swiglu, --openai-gelu, or neither for gelu)",
                    meta_activation_name(theirs->activation), meta_activation_name(mine->activation));
    if (theirs->norm_epsilon != mine->norm_epsilon || theirs->rotary_base != mine->rotary_base ||
        theirs->rotary_percent != mine->rotary_percent)
        warn_user("checkpoint %s was saved with --norm-epsilon %g --rotary-base %g --rotary-percent %g; these flags "
                  "use %g, %g, %g (continuing with the flags)", l->path, theirs->norm_epsilon, theirs->rotary_base,
                  theirs->rotary_percent, mine->norm_epsilon, mine->rotary_base, mine->rotary_percent);
    return 0;
}

/* The stored optimizer tensor of (param, role), which must match its weight's shape. */
static int find_state(struct load *l, const struct gpt_param *p, enum meta_role role, bool required,
                      const struct meta_tensor **out)
{
    const struct meta_tensor *w = meta_find(&l->meta, p->name, ROLE_WEIGHT), *t = meta_find(&l->meta, p->name, role);
    *out = t;
    if (!t)
        return required ? fail(l, "the optimizer state %s of %s is missing; the checkpoint is damaged, or load "
                               "weights only with --no-load-optim", meta_role_name(role), p->name)
                        : 0;
    char a[64], b[64];
    if (t->ndim != w->ndim || t->shape[0] != w->shape[0] || (t->ndim == 2 && t->shape[1] != w->shape[1]))
        return fail(l, "tensor %s is %s but its weight is %s; the checkpoint is damaged", t->name,
                    shape_text(t->ndim, t->shape, a, sizeof a), shape_text(w->ndim, w->shape, b, sizeof b));
    return 0;
}

static int check_optimizer(struct load *l)
{
    const struct optimizer *o = l->s->optimizer;
    const char *type = o->opt.type == OPTIMIZER_ADAM ? "adam" : "sgd";
    if (!l->meta.has_optimizer)
        return fail(l, "it holds no optimizer state (saved with --no-save-optim); add --no-load-optim (or --finetune) "
                    "to load the weights only");
    if (strcmp(l->meta.optimizer.type, type) != 0)
        return fail(l, "its optimizer state is %s's, this run uses --optimizer %s; use --optimizer %s, or add "
                    "--no-load-optim", l->meta.optimizer.type, type, l->meta.optimizer.type);
    const struct gpt_model *m = l->s->model;
    for (int i = 0; i < m->num_params; i++) {
        const struct gpt_param *p = &m->params[i];
        struct sources *s = &l->src[i];
        bool adam = o->opt.type == OPTIMIZER_ADAM;
        if (find_state(l, p, ROLE_MAIN_PARAM, l->meta.params_dtype != ST_F32, &s->main) ||
            find_state(l, p, adam ? ROLE_EXP_AVG : ROLE_MOMENTUM, true, &s->moment1) ||
            (adam && find_state(l, p, ROLE_EXP_AVG_SQ, true, &s->moment2)))
            return -1;
    }
    return 0;
}

/* Maps a tensor's pages in one call (Linux 5.14's MADV_POPULATE_READ) instead of one page fault
 * per 4 KiB, which costs more than the checksum itself; older kernels fault as usual. */
static void populate(const struct st_tensor *x)
{
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)x->data;
    lo -= lo % page;
    if (x->nbytes >= (1u << 20)) (void)madvise((void *)lo, (uintptr_t)x->data + x->nbytes - lo, MADV_POPULATE_READ);
}

/* Opens a file once; the stored header must agree with metadata.json for t. */
static const struct st_tensor *stored(struct load *l, const struct meta_tensor *t)
{
    int slot = strcmp(t->file, CKPT_MODEL_FILE) == 0 ? 0 : 1;
    char path[CKPT_PATH_MAX + 160], why[512], a[64], b[64];
    if (slot == 1 && strcmp(t->file, CKPT_OPTIM_FILE) != 0) {
        fail(l, "tensor %s is in %s, which this program does not write; the checkpoint is damaged", t->name, t->file);
        return NULL;
    }
    if (!l->files[slot]) {
        snprintf(path, sizeof path, "%.4096s/%s", l->path, t->file);
        l->files[slot] = st_open(path, why, sizeof why);
        if (!l->files[slot]) {
            fail(l, "%s; the checkpoint is damaged, load an earlier one", why);
            return NULL;
        }
    }
    const struct st_tensor *x = st_find(l->files[slot], t->name);
    if (!x) {
        fail(l, "tensor %s is listed in %s but missing from %s; the checkpoint is damaged, load an earlier one", t->name,
             CKPT_META_FILE, t->file);
        return NULL;
    }
    if (x->dtype != t->dtype || x->ndim != t->ndim || x->shape[0] != t->shape[0] || (x->ndim == 2 && x->shape[1] != t->shape[1])) {
        fail(l, "tensor %s is %s %s in %s but %s %s in %s; the checkpoint is damaged, load an earlier one", t->name,
             st_dtype_name(x->dtype), x->ndim >= 1 && x->ndim <= 2 ? shape_text(x->ndim, x->shape, a, sizeof a) : "[?]",
             t->file, st_dtype_name(t->dtype), shape_text(t->ndim, t->shape, b, sizeof b), CKPT_META_FILE);
        return NULL;
    }
    return x;
}

/* The stored tensors a load reads, in the order they are verified. */
struct to_verify {
    const struct st_tensor **stored;
    const struct meta_tensor **meta;
    size_t n;
};

/* Runs ahead of the checksums, bringing each tensor in from disk, so reading and checksumming
 * overlap instead of taking turns. */
static void *prefetch_main(void *arg)
{
    const struct to_verify *v = arg;
    for (size_t i = 0; i < v->n; i++) populate(v->stored[i]);
    return NULL;
}

static int add_to_verify(struct load *l, struct to_verify *v, const struct meta_tensor *t)
{
    if (!t) return 0;
    const struct st_tensor *x = stored(l, t);
    if (!x) return -1;
    v->stored[v->n] = x;
    v->meta[v->n++] = t;
    return 0;
}

static int checksum_matches(struct load *l, const struct st_tensor *x, const struct meta_tensor *t)
{
    uint64_t sum = checksum_sum64(x->data, st_dtype_size(x->dtype), 0, st_numel(x));
    if (sum == t->checksum) return 0;
    char want[23], got[23];
    checksum_format(t->checksum, want);
    checksum_format(sum, got);
    return fail(l, "tensor %s in %s does not match its checksum (%s stored, %s computed); the file is damaged, load an "
                "earlier checkpoint", t->name, t->file, want, got);
}

/* Every tensor this rank reads is checked whole against its stored checksum. */
static int verify_all(struct load *l)
{
    const struct gpt_model *m = l->s->model;
    size_t cap = 4 * (size_t)m->num_params + 1;
    struct to_verify v = {xcalloc(cap, sizeof *v.stored), xcalloc(cap, sizeof *v.meta), 0};
    int rc = 0;
    for (int i = 0; i < m->num_params && rc == 0; i++) {
        const struct sources *s = &l->src[i];
        rc = add_to_verify(l, &v, s->weight) || add_to_verify(l, &v, s->main) || add_to_verify(l, &v, s->moment1) ||
             add_to_verify(l, &v, s->moment2);
    }
    pthread_t prefetcher;
    bool threaded = rc == 0 && pthread_create(&prefetcher, NULL, prefetch_main, &v) == 0;
    for (size_t i = 0; i < v.n && rc == 0; i++) rc = checksum_matches(l, v.stored[i], v.meta[i]);
    if (threaded) pthread_join(prefetcher, NULL);
    free(v.stored);
    free(v.meta);
    return rc ? -1 : 0;
}

/* ---- copying in: cannot fail ---- */

/* Copies runs of a stored tensor into local memory. Elements of a vocabulary tensor beyond those
 * stored (a larger padding) get the last real token's row for weights, as Megatron's checkpoint
 * converter pads, and zeros for optimizer moments. */
struct run_reader {
    const struct st_tensor *x;
    int64_t stored, cols;  /* elements stored; row width */
    int64_t fill_row;      /* vocab_size - 1 */
    float *dst;            /* local element lo is dst[0] */
    int64_t lo;
    bool moments;
};

static void read_run(void *ctx, const struct param_run *run)
{
    struct run_reader *r = ctx;
    float *dst = r->dst + (run->local - r->lo);
    int64_t have = run->full + run->n <= r->stored ? run->n : run->full < r->stored ? r->stored - run->full : 0;
    if (have > 0) tfile_read_run(r->x, run->full, have, dst);
    for (int64_t i = have; i < run->n; i++) {
        if (r->moments) dst[i] = 0.0f;
        else tfile_read_run(r->x, r->fill_row * r->cols + (run->full + i) % r->cols, 1, dst + i);
    }
}

static struct run_reader reader_of(struct load *l, const struct meta_tensor *t, bool moments)
{
    struct run_reader r = {stored(l, t), 0, 0, l->meta.model.vocab_size - 1, NULL, 0, moments};
    int64_t rows;
    tfile_rows_cols(t->ndim, t->shape, &rows, &r.cols);
    r.stored = rows * r.cols;
    return r;
}

/* Every parameter's whole local copy, into the flat buffer dst. */
static void read_weights(struct load *l, float *dst, const struct meta_tensor *(*pick)(const struct sources *))
{
    const struct gpt_model *m = l->s->model;
    for (int i = 0; i < m->num_params; i++) {
        const struct gpt_param *p = &m->params[i];
        struct run_reader r = reader_of(l, pick(&l->src[i]), false);
        r.dst = dst + p->offset;
        blocks_runs(p, 0, p->numel, read_run, &r);
    }
}

/* The optimizer's owned ranges of every parameter, into its compact array arr. */
static void read_state(struct load *l, float *arr, const struct meta_tensor *(*pick)(const struct sources *))
{
    const struct gpt_model *m = l->s->model;
    const struct optimizer *o = l->s->optimizer;
    int64_t state = 0;
    for (int k = 0; k < o->num_ranges; k++) {
        struct buffer_range rg = o->ranges[k];
        for (int i = 0; i < m->num_params; i++) {
            const struct gpt_param *p = &m->params[i];
            int64_t lo = p->offset > rg.lo ? p->offset : rg.lo, hi = p->offset + p->numel < rg.hi ? p->offset + p->numel : rg.hi;
            if (lo >= hi) continue;
            struct run_reader r = reader_of(l, pick(&l->src[i]), true);
            r.dst = arr + state + (lo - rg.lo);
            r.lo = lo - p->offset;
            blocks_runs(p, lo - p->offset, hi - p->offset, read_run, &r);
        }
        state += rg.hi - rg.lo;
    }
}

static const struct meta_tensor *pick_weight(const struct sources *s) { return s->weight; }
static const struct meta_tensor *pick_main(const struct sources *s) { return s->main ? s->main : s->weight; }
static const struct meta_tensor *pick_moment1(const struct sources *s) { return s->moment1; }
static const struct meta_tensor *pick_moment2(const struct sources *s) { return s->moment2; }

static void restore_optimizer(struct load *l)
{
    struct optimizer *o = l->s->optimizer;
    const struct meta_optimizer *saved = &l->meta.optimizer;
    read_state(l, o->exp_avg, pick_moment1);
    if (o->exp_avg_sq) read_state(l, o->exp_avg_sq, pick_moment2);
    o->step = saved->step;
    o->schedule_samples = saved->schedule_samples;
    if (o->opt.scaler.dynamic && saved->scaler_dynamic) {
        o->opt.scaler.scale = saved->loss_scale;
        o->opt.scaler.growth_tracker = saved->growth_tracker;
        o->opt.scaler.hysteresis_tracker = saved->hysteresis_tracker;
    }
}

/* The fp32 main params of the owned ranges from the (not yet rounded) weights. */
static void fill_main_params(struct optimizer *o, const float *weights)
{
    int64_t state = 0;
    for (int k = 0; k < o->num_ranges; k++) {
        int64_t len = o->ranges[k].hi - o->ranges[k].lo;
        memcpy(o->main_params + state, weights + o->ranges[k].lo, (size_t)len * sizeof(float));
        state += len;
    }
}

/* Weights: the fp32 main params when the optimizer state is loaded and holds them, else the
 * stored weights; a bf16/fp16 model keeps them as main params and stores them rounded. */
static void commit(struct load *l)
{
    struct ckpt_state *s = l->s;
    struct gpt_model *m = s->model;
    struct optimizer *o = s->optimizer;
    read_weights(l, m->weights, l->optim ? pick_main : pick_weight);
    if (o && o->main_params) fill_main_params(o, m->weights);
    if (s->params_dtype != DT_F32) round_to_dtype(m->weights, m->numel, s->params_dtype);
    if (l->optim) restore_optimizer(l);
    if (l->rng) m->cfg.seed = l->meta.seed;
}

/* ---- the load ---- */

static int check_all(struct load *l, const struct ckpt_load_options *o)
{
    if (ckpt_read_meta(l->path, &l->meta, l->err, l->errlen)) return -1;
    bool weights_only = o->finetune || l->meta.release;
    l->optim = o->load_optim && !weights_only && l->s->optimizer;
    l->rng = o->load_rng && !weights_only;
    if (l->rng && !l->meta.has_rng)
        return fail(l, "it holds no RNG state (saved with --no-save-rng); add --no-load-rng (or --finetune)");
    if (check_weights(l) || check_model_settings(l) || (l->optim && check_optimizer(l))) return -1;
    return verify_all(l);
}

int ckpt_load(const char *dir, struct ckpt_state *s, const struct ckpt_load_options *o,
              const struct ckpt_rank *r, struct ckpt_loaded *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (ckpt_locate(dir, &out->where, err, errlen)) return -1;
    if (!out->where.found) return 0;
    struct load l;
    memset(&l, 0, sizeof l);
    l.s = s;
    l.path = out->where.path;
    l.err = err;
    l.errlen = errlen;
    l.src = xcalloc((size_t)(s->model->num_params > 0 ? s->model->num_params : 1), sizeof *l.src);
    int failed = check_all(&l, o) ? 1 : 0;
    uint64_t any = (uint64_t)failed; /* every rank must agree before anyone changes its buffers */
    if (r->sum_u64) r->sum_u64(&any, 1, r->ctx);
    if (any && !failed) snprintf(err, errlen, "checkpoint %s: another rank refused it", l.path);
    if (!any) {
        commit(&l);
        bool weights_only = o->finetune || l.meta.release;
        s->iteration = weights_only ? 0 : l.meta.iteration;
        s->consumed_train_samples = weights_only ? 0 : l.meta.consumed_train_samples;
        s->consumed_valid_samples = weights_only ? 0 : l.meta.consumed_valid_samples;
        out->optimizer_loaded = l.optim;
        out->rng_loaded = l.rng;
    }

    st_close(l.files[0]);
    st_close(l.files[1]);
    free(l.src);
    meta_free(&l.meta);
    return any ? -1 : 0;
}
