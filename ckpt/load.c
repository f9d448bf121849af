/* ckpt_load: everything is checked first (tensors present, shapes that fit the flags, the model
 * settings shapes cannot show, file headers against metadata.json, every checksum), and only then
 * are the weights and optimizer state copied in, so a refused checkpoint changes nothing.
 *
 * That is two passes over the data. The first (verification) streams every tensor this rank
 * touches through the checksum; the second (the copy) streams the parts this rank holds into its
 * buffers. When what the copy reads fits in the free memory, the first pass leaves it in the page
 * cache and the disk is read once; otherwise both passes let every page go as soon as it is used
 * (see choose_kept). Buffers in device memory are filled through a host window. Contract in
 * ckpt/ckpt.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/blocks.h"
#include "ckpt/checksum.h"
#include "ckpt/ckpt.h"
#include "ckpt/stream.h"
#include "ckpt/tensor_file.h"
#include "kernels/arena.h"
#include "util/error.h"

#define WINDOW_ELEMENTS ((int64_t)16 << 20) /* 64 MiB of fp32: the host side of device buffers */

/* The stored tensors each parameter is read from. */
struct sources {
    const struct meta_tensor *weight, *main, *moment1, *moment2;
};

/* One piece of the copy: runs of a stored tensor into a destination buffer. */
struct job {
    const struct meta_tensor *t;
    const struct st_tensor *x;
    int fd, fd_direct;
    float *dst;               /* where local element lo goes (host or device memory) */
    int64_t lo;
    struct param_run *runs;   /* full-tensor runs, in local order */
    size_t nruns;
    int64_t first, end;       /* the stored elements [first, end) the runs read */
    int64_t stored, cols;     /* elements stored; row width */
    bool moments;             /* padding rows are zeros (optimizer moments) rather than copies */
    bool kept;                /* left in the page cache by the verification */
};

struct load {
    struct ckpt_state *s;
    const char *path;           /* the checkpoint directory */
    struct ckpt_meta meta;
    bool optim, rng;            /* what this load takes */
    bool scheduler;             /* the saved schedule replaces the flags' (with the optimizer state) */
    struct lr_schedule schedule; /* then: the saved values with the flags' initial rate and WSD anneal */
    int64_t stage_elements;     /* > 0: buffers filled through a host window this long (device memory) */
    struct sources *src;        /* per model parameter */
    struct st_file *files[2];   /* model, optimizer */
    int fds[2], fds_direct[2];  /* the same files, for streaming reads (O_DIRECT: -1 if refused) */
    struct job *jobs;           /* the copy, in order */
    size_t njobs, jobs_cap;
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

/* Against the whole model's table, so every pipeline stage refuses a bad checkpoint with the same
 * words; then each local parameter finds its stored tensor (the replica: the word embeddings). */
static int check_weights(struct load *l)
{
    const struct gpt_model *m = l->s->model;
    char a[64];
    int count, rc = 0;
    struct gpt_param *whole = gpt_whole_params(&m->cfg, &count);
    for (int i = 0; i < count && rc == 0; i++) {
        const struct gpt_param *p = &whole[i];
        const struct meta_tensor *t = meta_find(&l->meta, p->name, ROLE_WEIGHT);
        if (!t)
            rc = fail(l, "tensor %s %s is missing: these flags build it but the checkpoint has none; use the model "
                      "flags it was saved with (see \"model\" in its %s)",
                      p->name, shape_text(p->ndim, p->full_shape, a, sizeof a), CKPT_META_FILE);
        else rc = check_shape(l, p, t);
    }
    for (size_t k = 0; k < l->meta.num_tensors && rc == 0; k++) {
        const struct meta_tensor *t = &l->meta.tensors[k];
        if (t->role == ROLE_WEIGHT && !gpt_params_find(whole, count, t->param))
            rc = fail(l, "tensor %s %s is in the checkpoint but not in the model these flags build; use the model "
                      "flags it was saved with (see \"model\" in its %s)",
                      t->param, shape_text(t->ndim, t->shape, a, sizeof a), CKPT_META_FILE);
    }
    free(whole);
    for (int i = 0; i < m->num_params && rc == 0; i++)
        l->src[i].weight = meta_find(&l->meta, gpt_param_stored_name(&m->params[i]), ROLE_WEIGHT);
    return rc;
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
                    "(--swiglu; for the tanh GeLU nothing with biases, or --openai-gelu; for erf GeLU --no-bias-gelu-fusion)",
                    meta_activation_name(theirs->activation), meta_activation_name(mine->activation));
    if (theirs->norm_epsilon != mine->norm_epsilon || theirs->rotary_base != mine->rotary_base ||
        theirs->rotary_percent != mine->rotary_percent)
        warn_user("checkpoint %s was saved with --norm-epsilon %g --rotary-base %g --rotary-percent %g; these flags "
                  "use %g, %g, %g (continuing with the flags)", l->path, theirs->norm_epsilon, theirs->rotary_base,
                  theirs->rotary_percent, mine->norm_epsilon, mine->rotary_base, mine->rotary_percent);
    return 0;
}

/* The stored optimizer tensor of (param, role), which must match its weight's shape. */
static int find_state(struct load *l, const char *name, enum meta_role role, bool required,
                      const struct meta_tensor **out)
{
    const struct meta_tensor *w = meta_find(&l->meta, name, ROLE_WEIGHT), *t = meta_find(&l->meta, name, role);
    *out = t;
    if (!t)
        return required ? fail(l, "the optimizer state %s of %s is missing; the checkpoint is damaged, or load "
                               "weights only with --no-load-optim", meta_role_name(role), name)
                        : 0;
    char a[64], b[64];
    if (t->ndim != w->ndim || t->shape[0] != w->shape[0] || (t->ndim == 2 && t->shape[1] != w->shape[1]))
        return fail(l, "tensor %s is %s but its weight is %s; the checkpoint is damaged", t->name,
                    shape_text(t->ndim, t->shape, a, sizeof a), shape_text(w->ndim, w->shape, b, sizeof b));
    return 0;
}

static int find_states(struct load *l, const char *name, struct sources *s)
{
    bool adam = l->s->optimizer->opt.type == OPTIMIZER_ADAM;
    return find_state(l, name, ROLE_MAIN_PARAM, l->meta.params_dtype != ST_F32, &s->main) ||
           find_state(l, name, adam ? ROLE_EXP_AVG : ROLE_MOMENTUM, true, &s->moment1) ||
           (adam && find_state(l, name, ROLE_EXP_AVG_SQ, true, &s->moment2));
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
    int count, rc = 0;
    struct gpt_param *whole = gpt_whole_params(&m->cfg, &count); /* every stage names the same fault */
    struct sources unused;
    for (int i = 0; i < count && rc == 0; i++) rc = find_states(l, whole[i].name, &unused);
    free(whole);
    for (int i = 0; i < m->num_params && rc == 0; i++) rc = find_states(l, gpt_param_stored_name(&m->params[i]), &l->src[i]);
    return rc;
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
        l->fds[slot] = open(path, O_RDONLY | O_CLOEXEC);
        if (l->fds[slot] < 0) {
            fail(l, "%s: cannot open: %s", path, strerror(errno));
            return NULL;
        }
        l->fds_direct[slot] = stream_open_direct(path);
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

/* ---- the copy plan: which stored bytes go where ---- */

static const struct meta_tensor *pick_weight(const struct sources *s) { return s->weight; }
static const struct meta_tensor *pick_main(const struct sources *s) { return s->main ? s->main : s->weight; }
static const struct meta_tensor *pick_moment1(const struct sources *s) { return s->moment1; }
static const struct meta_tensor *pick_moment2(const struct sources *s) { return s->moment2; }

static void add_run(void *ctx, const struct param_run *run)
{
    struct job *j = ctx;
    j->runs = xrealloc(j->runs, (j->nruns + 1) * sizeof *j->runs);
    j->runs[j->nruns++] = *run;
}

/* The runs of local elements [lo, hi) of parameter i from its stored tensor t into dst (which
 * holds local element lo). */
static void add_job(struct load *l, int i, const struct meta_tensor *t, float *dst, int64_t lo, int64_t hi, bool moments)
{
    const struct gpt_param *p = &l->s->model->params[i];
    if (l->njobs == l->jobs_cap) {
        l->jobs_cap = l->jobs_cap ? 2 * l->jobs_cap : 64;
        l->jobs = xrealloc(l->jobs, l->jobs_cap * sizeof *l->jobs);
    }
    struct job *j = &l->jobs[l->njobs++];
    memset(j, 0, sizeof *j);
    int64_t rows;
    j->t = t;
    j->x = stored(l, t); /* opened and checked by the verification already */
    int slot = strcmp(t->file, CKPT_MODEL_FILE) == 0 ? 0 : 1;
    j->fd = l->fds[slot];
    j->fd_direct = l->fds_direct[slot];
    j->dst = dst;
    j->lo = lo;
    j->moments = moments;
    tfile_rows_cols(t->ndim, t->shape, &rows, &j->cols);
    j->stored = rows * j->cols;
    blocks_runs(p, lo, hi, add_run, j);
    j->first = j->stored;
    for (size_t k = 0; k < j->nruns; k++) {
        const struct param_run *r = &j->runs[k];
        int64_t a = r->full < j->stored ? r->full : j->stored, b = r->full + r->n < j->stored ? r->full + r->n : j->stored;
        if (a < j->first) j->first = a;
        if (b > j->end) j->end = b;
    }
    if (j->end < j->first) j->first = j->end = 0;
}

/* Every parameter's whole local copy, into the flat buffer dst. */
static void plan_weights(struct load *l, float *dst, const struct meta_tensor *(*pick)(const struct sources *))
{
    const struct gpt_model *m = l->s->model;
    for (int i = 0; i < m->num_params; i++)
        add_job(l, i, pick(&l->src[i]), dst + m->params[i].offset, 0, m->params[i].numel, false);
}

/* The optimizer's owned ranges of every parameter, into its compact array arr. */
static void plan_state(struct load *l, float *arr, const struct meta_tensor *(*pick)(const struct sources *))
{
    const struct gpt_model *m = l->s->model;
    const struct optimizer *o = l->s->optimizer;
    int64_t state = 0;
    for (int k = 0; k < o->num_ranges; k++) {
        struct buffer_range rg = o->ranges[k];
        for (int i = 0; i < m->num_params; i++) {
            const struct gpt_param *p = &m->params[i];
            int64_t lo = p->offset > rg.lo ? p->offset : rg.lo, hi = p->offset + p->numel < rg.hi ? p->offset + p->numel : rg.hi;
            if (lo < hi) add_job(l, i, pick(&l->src[i]), arr + state + (lo - rg.lo), lo - p->offset, hi - p->offset, true);
        }
        state += rg.hi - rg.lo;
    }
}

/* Weights from the fp32 main params when the optimizer state is loaded and holds them, else from
 * the stored weights; then the moments. */
static void plan_copy(struct load *l)
{
    struct gpt_model *m = l->s->model;
    struct optimizer *o = l->s->optimizer;
    plan_weights(l, m->weights, l->optim ? pick_main : pick_weight);
    if (!l->optim) return;
    plan_state(l, o->exp_avg, pick_moment1);
    if (o->exp_avg_sq) plan_state(l, o->exp_avg_sq, pick_moment2);
}

/* Bytes of page cache a load may count on between its passes: most of what the kernel reports
 * available, shared with the other ranks that may run on this machine. 0 when unknown. */
static uint64_t cache_budget(const struct ckpt_rank *r)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    if (f) fclose(f);
    double bytes = 0.7 * (double)kb * 1024.0 - (double)(256u << 20);
    return bytes > 0 ? (uint64_t)(bytes / (r->world_size > 0 ? r->world_size : 1)) : 0;
}

/* Whether the verification leaves what the copy reads in the page cache: only when all of it fits
 * the budget. Keeping a part spares re-reading that part, but those reads go through the page
 * cache, which must grow into memory the kernel has to find first and costs a copy per page,
 * where the rest goes straight from the disk into the buffers. On the 2-core development machine
 * (a virtual machine that hands free memory back to its host, 16 GB of model state beside a
 * 14.2 GB checkpoint) keeping 5.5 GB made a load take 27.2 s and 26 s of CPU, twice, against
 * 17-29 s and 12-15 s of CPU keeping none. */
static void choose_kept(struct load *l, uint64_t budget)
{
    uint64_t total = 0;
    for (size_t k = 0; k < l->njobs; k++) total += l->jobs[k].x->nbytes;
    for (size_t k = 0; k < l->njobs; k++) l->jobs[k].kept = total <= budget;
}

/* ---- the verification: every tensor this rank touches, whole, against its checksum ---- */

struct verify_list {
    const struct meta_tensor **meta;
    const struct st_tensor **stored;
    struct stream_range *ranges;
    size_t n, cap;
};

static bool listed(const struct verify_list *v, const struct meta_tensor *t)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->meta[i] == t) return true;
    return false;
}

static int add_to_verify(struct load *l, struct verify_list *v, const struct meta_tensor *t, bool keep)
{
    if (!t || listed(v, t)) return 0;
    const struct st_tensor *x = stored(l, t);
    if (!x) return -1;
    int slot = strcmp(t->file, CKPT_MODEL_FILE) == 0 ? 0 : 1;
    v->meta[v->n] = t;
    v->stored[v->n] = x;
    v->ranges[v->n++] = (struct stream_range){l->fds[slot], l->fds_direct[slot], x->file_offset, x->nbytes, keep, keep};
    return 0;
}

static bool copied(const struct load *l, const struct meta_tensor *t)
{
    for (size_t k = 0; k < l->njobs; k++)
        if (l->jobs[k].t == t) return true;
    return false;
}

/* Tensors the copy does not read first, then those it reads from the disk again, then those it
 * finds in the page cache: only the last are left there. */
static int list_verification(struct load *l, struct verify_list *v)
{
    const struct gpt_model *m = l->s->model;
    v->cap = 4 * (size_t)m->num_params + 1;
    v->meta = xcalloc(v->cap, sizeof *v->meta);
    v->stored = xcalloc(v->cap, sizeof *v->stored);
    v->ranges = xcalloc(v->cap, sizeof *v->ranges);
    for (int i = 0; i < m->num_params; i++) {
        const struct sources *s = &l->src[i];
        const struct meta_tensor *all[4] = {s->weight, s->main, s->moment1, s->moment2};
        for (int k = 0; k < 4; k++)
            if (all[k] && !copied(l, all[k]) && add_to_verify(l, v, all[k], false)) return -1;
    }
    for (int kept = 0; kept < 2; kept++)
        for (size_t k = 0; k < l->njobs; k++)
            if (l->jobs[k].kept == kept && add_to_verify(l, v, l->jobs[k].t, kept)) return -1;
    return 0;
}

static int read_failed(struct load *l, const struct meta_tensor *t, const char *why)
{
    return fail(l, "tensor %s in %s cannot be read: %s; the file or the disk is damaged, load an earlier checkpoint",
                t->name, t->file, why);
}

static int verify_all(struct load *l)
{
    struct verify_list v = {0};
    int rc = list_verification(l, &v);
    uint64_t *sums = xcalloc(v.n + 1, sizeof *sums);
    if (rc == 0) {
        struct stream_reader *r = stream_reader_start(v.ranges, v.n);
        struct stream_chunk c;
        while (stream_reader_next(r, &c)) {
            size_t isz = st_dtype_size(v.stored[c.range]->dtype);
            sums[c.range] += checksum_sum64(c.data, isz, (int64_t)(c.at / isz), (int64_t)(c.len / isz));
        }
        size_t bad;
        char why[256];
        if (stream_reader_finish(r, &bad, why, sizeof why)) rc = read_failed(l, v.meta[bad], why);
    }
    for (size_t i = 0; i < v.n && rc == 0; i++) {
        const struct meta_tensor *t = v.meta[i];
        if (sums[i] == t->checksum) continue;
        char want[23], got[23];
        checksum_format(t->checksum, want);
        checksum_format(sums[i], got);
        rc = fail(l, "tensor %s in %s does not match its checksum (%s stored, %s computed); the file is damaged, load "
                  "an earlier checkpoint", t->name, t->file, want, got);
    }
    free(sums);
    free(v.meta);
    free(v.stored);
    free(v.ranges);
    return rc ? -1 : 0;
}

/* ---- the copy ---- */

/* Where the copy writes: host memory directly, or device memory through a host window that goes
 * up whenever it is full or the next values do not continue it. */
struct window {
    bool on;
    enum device dev;
    float *host;
    int64_t cap, n;
    float *dst; /* where host[0] goes */
};

static void window_flush(struct window *w)
{
    if (w->n > 0) device_copy_to(w->dev, w->dst, w->host, (size_t)w->n * sizeof(float));
    w->n = 0;
}

/* n stored elements at src (dtype dt) into dst[0 .. n), fp32. */
static void put(struct window *w, float *dst, const unsigned char *src, int64_t n, enum st_dtype dt)
{
    if (!w->on) {
        tfile_from_dtype(dst, src, n, dt);
        return;
    }
    while (n > 0) {
        if (w->n > 0 && (dst != w->dst + w->n || w->n == w->cap)) window_flush(w);
        if (w->n == 0) w->dst = dst;
        int64_t k = n < w->cap - w->n ? n : w->cap - w->n;
        tfile_from_dtype(w->host + w->n, src, k, dt);
        w->n += k;
        dst += k;
        src += (size_t)k * st_dtype_size(dt);
        n -= k;
    }
}

/* The part of a streamed chunk (stored elements [a, b) of job j) that its runs want. */
static void copy_chunk(struct window *w, const struct job *j, const unsigned char *data, int64_t a, int64_t b)
{
    size_t isz = st_dtype_size(j->x->dtype);
    for (size_t k = 0; k < j->nruns; k++) {
        const struct param_run *r = &j->runs[k];
        int64_t s = r->full > a ? r->full : a, e = r->full + r->n < b ? r->full + r->n : b;
        if (s < e) put(w, j->dst + (r->local + (s - r->full) - j->lo), data + (size_t)(s - a) * isz, e - s, j->x->dtype);
    }
}

/* Rows past those stored (a larger vocabulary padding): the last real token's row for weights, as
 * Megatron's checkpoint converter pads, zeros for optimizer moments. */
static void copy_padding(struct window *w, const struct job *j, int64_t fill_row)
{
    const unsigned char zero[4] = {0};
    size_t isz = st_dtype_size(j->x->dtype);
    for (size_t k = 0; k < j->nruns; k++) {
        const struct param_run *r = &j->runs[k];
        for (int64_t i = r->full > j->stored ? r->full : j->stored; i < r->full + r->n; i++) {
            const unsigned char *v = (const unsigned char *)j->x->data + (size_t)(fill_row * j->cols + i % j->cols) * isz;
            put(w, j->dst + (r->local + (i - r->full) - j->lo), j->moments ? zero : v, 1, j->x->dtype);
        }
    }
}

/* Streams what the jobs read (kept ones first, from the page cache) into the buffers. */
static int copy_all(struct load *l)
{
    struct job **order = xcalloc(l->njobs + 1, sizeof *order);
    struct stream_range *ranges = xcalloc(l->njobs + 1, sizeof *ranges);
    size_t n = 0;
    for (int kept = 1; kept >= 0; kept--)
        for (size_t k = 0; k < l->njobs; k++) {
            struct job *j = &l->jobs[k];
            if (j->kept != kept) continue;
            size_t isz = st_dtype_size(j->x->dtype);
            order[n] = j;
            ranges[n++] = (struct stream_range){j->fd, j->fd_direct, j->x->file_offset + (uint64_t)j->first * isz,
                                                (uint64_t)(j->end - j->first) * isz, j->kept, false};
        }
    struct window w = {l->stage_elements > 0, l->s->model->device, NULL, l->stage_elements, 0, NULL};
    if (w.cap > l->s->model->buffer_numel) w.cap = l->s->model->buffer_numel > 0 ? l->s->model->buffer_numel : 1;
    if (w.on) w.host = xmalloc((size_t)w.cap * sizeof(float));
    struct stream_reader *r = stream_reader_start(ranges, n);
    struct stream_chunk c;
    while (stream_reader_next(r, &c)) {
        const struct job *j = order[c.range];
        size_t isz = st_dtype_size(j->x->dtype);
        int64_t a = j->first + (int64_t)(c.at / isz);
        copy_chunk(&w, j, c.data, a, a + (int64_t)(c.len / isz));
    }
    size_t bad;
    char why[256];
    int rc = stream_reader_finish(r, &bad, why, sizeof why) ? read_failed(l, order[bad]->t, why) : 0;
    for (size_t k = 0; k < n && rc == 0; k++) copy_padding(&w, order[k], l->meta.model.vocab_size - 1);
    window_flush(&w);
    free(w.host);
    free(order);
    free(ranges);
    return rc;
}

static void restore_optimizer(struct load *l)
{
    struct optimizer *o = l->s->optimizer;
    const struct meta_optimizer *saved = &l->meta.optimizer;
    o->step = saved->step;
    o->schedule_samples = saved->schedule_samples;
    if (l->scheduler) o->opt.schedule = l->schedule;
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

/* round_to_dtype on every core: a 1B model's weights take seconds on one. */
static void round_weights(float *w, int64_t n, enum dtype dt)
{
    const int64_t chunk = 1 << 20;
#pragma omp parallel for schedule(static)
    for (int64_t at = 0; at < n; at += chunk) round_to_dtype(w + at, n - at < chunk ? n - at : chunk, dt);
}

/* The buffers, then what follows from them: on the CPU backend a bf16/fp16 model keeps the
 * weights as main params and stores them rounded; on the CUDA backend the fp32 weights are the
 * main params and the bf16 copy is refreshed from them. Fails only when the disk fails between
 * the passes (the buffers are then partly loaded). */
static int commit(struct load *l)
{
    struct ckpt_state *s = l->s;
    struct gpt_model *m = s->model;
    struct optimizer *o = s->optimizer;
    if (copy_all(l)) return -1;
    if (o && o->main_params) fill_main_params(o, m->weights);
    if (m->device == DEV_CPU && s->params_dtype != DT_F32) round_weights(m->weights, m->numel, s->params_dtype);
    if (m->device != DEV_CPU) gpt_weights_changed(m, 0, m->numel);
    if (l->optim) restore_optimizer(l);
    if (l->rng) m->cfg.seed = l->meta.seed;
    return 0;
}

/* ---- the load ---- */

static int check_all(struct load *l, const struct ckpt_load_options *o, const struct ckpt_rank *r)
{
    if (ckpt_read_meta(l->path, &l->meta, l->err, l->errlen)) return -1;
    bool weights_only = o->finetune || l->meta.release;
    l->optim = o->load_optim && !weights_only && l->s->optimizer;
    l->rng = o->load_rng && !weights_only;
    l->scheduler = o->checkpoint_scheduler && l->optim;
    if (l->scheduler && !l->meta.optimizer.has_scheduler)
        return fail(l, "it keeps no learning-rate schedule (saved before schedules were kept); drop "
                       "--use-checkpoint-opt_param-scheduler to take the schedule from the flags");
    if (l->scheduler) { /* load_state_dict's values; init_lr and the WSD anneal stay the flags' */
        const struct lr_schedule *f = &l->s->optimizer->opt.schedule, *c = &l->meta.optimizer.scheduler;
        char why[512];
        if (!lr_schedule_init(&l->schedule, f->init_lr, c->max_lr, c->min_lr, c->warmup_steps, c->decay_steps,
                              c->decay_style, f->wsd_decay_steps, f->wsd_style, c->start_wd, c->end_wd,
                              c->wd_incr_steps, c->wd_style, why, sizeof why))
            return fail(l, "its learning-rate schedule, with the flags' initial rate and WSD anneal, does not "
                           "hold (%s); drop --use-checkpoint-opt_param-scheduler", why);
    }
    if (l->rng && !l->meta.has_rng)
        return fail(l, "it holds no RNG state (saved with --no-save-rng); add --no-load-rng (or --finetune)");
    if (check_weights(l) || check_model_settings(l) || (l->optim && check_optimizer(l))) return -1;
    for (int i = 0; i < l->s->model->num_params; i++) { /* every file header against metadata.json */
        const struct sources *src = &l->src[i];
        const struct meta_tensor *all[4] = {src->weight, src->main, src->moment1, src->moment2};
        for (int k = 0; k < 4; k++)
            if (all[k] && !stored(l, all[k])) return -1;
    }
    plan_copy(l);
    choose_kept(l, cache_budget(r));
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
    l.fds[0] = l.fds[1] = l.fds_direct[0] = l.fds_direct[1] = -1;
    l.stage_elements = s->model->device != DEV_CPU || o->stage_elements > 0
                           ? (o->stage_elements > 0 ? o->stage_elements : WINDOW_ELEMENTS) : 0;
    int failed = check_all(&l, o, r) ? 1 : 0;
    uint64_t any = (uint64_t)failed; /* every rank must agree before anyone changes its buffers */
    if (r->sum_u64) r->sum_u64(&any, 1, r->ctx);
    if (any && !failed) snprintf(err, errlen, "checkpoint %s: another rank refused it", l.path);
    if (!any && commit(&l) != 0) any = failed = 1;
    if (!any) {
        bool weights_only = o->finetune || l.meta.release;
        s->iteration = weights_only ? 0 : l.meta.iteration;
        s->consumed_train_samples = weights_only ? 0 : l.meta.consumed_train_samples;
        s->consumed_valid_samples = weights_only ? 0 : l.meta.consumed_valid_samples;
        out->optimizer_loaded = l.optim;
        out->rng_loaded = l.rng;
    }

    for (int f = 0; f < 2; f++) {
        st_close(l.files[f]);
        if (l.fds[f] >= 0) close(l.fds[f]);
        if (l.fds_direct[f] >= 0) close(l.fds_direct[f]);
    }
    for (size_t k = 0; k < l.njobs; k++) free(l.jobs[k].runs);
    free(l.jobs);
    free(l.src);
    meta_free(&l.meta);
    return any ? -1 : 0;
}
