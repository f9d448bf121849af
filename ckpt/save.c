/* ckpt_save: metadata, the two tensor files written block by block by every rank, then the atomic
 * publication (temp dir -> fsync -> rename -> tracker). Buffers in device memory (the CUDA
 * backend) reach the files through one host buffer, a chunk at a time. Contract in ckpt/ckpt.h. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt/blocks.h"
#include "ckpt/ckpt.h"
#include "ckpt/dirs.h"
#include "ckpt/tensor_file.h"
#include "kernels/arena.h"
#include "util/error.h"
#include "util/json.h"

#define STAGING_ELEMENTS ((int64_t)16 << 20) /* 64 MiB of fp32: device memory comes to the host in chunks */

/* ---- what gets saved ---- */

/* The flags that shape the run, for people and tools reading metadata.json ("args"). */
static void put_json_string(FILE *f, const char *v)
{
    if (!v) {
        fputs("null", f);
        return;
    }
    size_t n = json_escape(NULL, 0, v, strlen(v));
    char *q = xmalloc(n + 1);
    json_escape(q, n + 1, v, strlen(v));
    fputs(q, f);
    free(q);
}

static void put_str(FILE *f, const char *key, const char *v)
{
    fprintf(f, ", \"%s\": ", key);
    put_json_string(f, v);
}

static void put_num(FILE *f, const char *key, double v)
{
    if (isfinite(v)) fprintf(f, ", \"%s\": %.17g", key, v);
    else fprintf(f, ", \"%s\": null", key);
}

static char *args_json(const struct config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) die_user("out of memory writing checkpoint metadata");
    fprintf(f, "{\"world_size\": %" PRId64, c->world_size);
    put_num(f, "tensor_model_parallel_size", (double)c->tensor_model_parallel_size);
    put_num(f, "pipeline_model_parallel_size", (double)c->pipeline_model_parallel_size);
    put_num(f, "context_parallel_size", (double)c->context_parallel_size);
    put_num(f, "data_parallel_size", (double)c->data_parallel_size);
    fprintf(f, ", \"use_distributed_optimizer\": %s", c->use_distributed_optimizer ? "true" : "false");
    put_num(f, "micro_batch_size", (double)c->micro_batch_size);
    put_num(f, "global_batch_size", (double)c->global_batch_size);
    put_num(f, "seq_length", (double)c->seq_length);
    put_num(f, "train_iters", (double)c->train_iters);
    put_num(f, "train_samples", (double)c->train_samples);
    put_num(f, "seed", (double)c->seed);
    put_str(f, "params_dtype", dtype_name(c->params_dtype));
    put_str(f, "optimizer", c->optimizer);
    put_num(f, "lr", c->lr);
    put_num(f, "min_lr", c->min_lr);
    put_str(f, "lr_decay_style", c->lr_decay_style);
    put_num(f, "lr_decay_steps", (double)c->lr_decay_steps);
    put_num(f, "lr_warmup_steps", c->lr_warmup_steps);
    put_num(f, "weight_decay", c->weight_decay);
    put_num(f, "clip_grad", c->clip_grad);
    put_num(f, "adam_beta1", c->adam_beta1);
    put_num(f, "adam_beta2", c->adam_beta2);
    put_num(f, "adam_eps", c->adam_eps);
    put_num(f, "sgd_momentum", c->sgd_momentum);
    put_num(f, "loss_scale", c->loss_scale);
    put_str(f, "tokenizer_type", c->tokenizer_type);
    put_num(f, "make_vocab_size_divisible_by", (double)c->make_vocab_size_divisible_by);
    fprintf(f, ", \"mock_data\": %s, \"data_path\": [", c->mock_data ? "true" : "false");
    for (int i = 0; i < c->data_path_count; i++) {
        if (i) fputs(", ", f);
        put_json_string(f, c->data_path[i]);
    }
    fputs("]", f);
    put_str(f, "split", c->split);
    put_num(f, "eval_interval", (double)c->eval_interval);
    put_num(f, "eval_iters", (double)c->eval_iters);
    fputs("}", f);
    fclose(f);
    return text;
}

/* A bf16/fp16 run keeps fp32 main params: the optimizer's copy on the CPU backend, the model's own
 * fp32 weights on the CUDA backend (whose 16-bit copy is what the forward reads). */
static bool saves_main_params(const struct ckpt_state *s)
{
    return s->optimizer->main_params || (s->params_dtype != DT_F32 && s->model->device != DEV_CPU);
}

static void add_param_tensors(struct ckpt_meta *m, const struct ckpt_state *s, const struct gpt_param *p,
                              bool optim)
{
    meta_add_tensor(m, p->name, ROLE_WEIGHT, CKPT_MODEL_FILE, ckpt_st_dtype(s->params_dtype), p->ndim, p->full_shape);
    if (!optim) return;
    const struct optimizer *o = s->optimizer;
    if (saves_main_params(s))
        meta_add_tensor(m, p->name, ROLE_MAIN_PARAM, CKPT_OPTIM_FILE, ST_F32, p->ndim, p->full_shape);
    if (o->opt.type == OPTIMIZER_ADAM) {
        meta_add_tensor(m, p->name, ROLE_EXP_AVG, CKPT_OPTIM_FILE, ST_F32, p->ndim, p->full_shape);
        meta_add_tensor(m, p->name, ROLE_EXP_AVG_SQ, CKPT_OPTIM_FILE, ST_F32, p->ndim, p->full_shape);
    } else {
        meta_add_tensor(m, p->name, ROLE_MOMENTUM, CKPT_OPTIM_FILE, ST_F32, p->ndim, p->full_shape);
    }
}

static void build_meta(const struct ckpt_state *s, const struct ckpt_save_options *o, struct ckpt_meta *m)
{
    const struct gpt_model *model = s->model;
    bool optim = o->save_optim && s->optimizer && !o->release;
    memset(m, 0, sizeof *m);
    m->iteration = o->release ? 0 : s->iteration;
    m->release = o->release;
    m->consumed_train_samples = o->release ? 0 : s->consumed_train_samples;
    m->consumed_valid_samples = o->release ? 0 : s->consumed_valid_samples;
    m->params_dtype = ckpt_st_dtype(s->params_dtype);
    m->model = model->cfg;
    m->has_optimizer = optim;
    if (optim) {
        const struct optimizer *opt = s->optimizer;
        snprintf(m->optimizer.type, sizeof m->optimizer.type, "%s", opt->opt.type == OPTIMIZER_ADAM ? "adam" : "sgd");
        m->optimizer.step = opt->step;
        m->optimizer.schedule_samples = opt->schedule_samples;
        m->optimizer.scaler_dynamic = opt->opt.scaler.dynamic;
        m->optimizer.loss_scale = opt->opt.scaler.scale;
        m->optimizer.growth_tracker = opt->opt.scaler.growth_tracker;
        m->optimizer.hysteresis_tracker = opt->opt.scaler.hysteresis_tracker;
        m->optimizer.has_scheduler = true;
        m->optimizer.scheduler = opt->opt.schedule;
    }
    m->has_rng = o->save_rng && !o->release;
    m->seed = model->cfg.seed;
    m->hf_config = s->hf_config ? xstrdup(s->hf_config) : NULL;
    m->args_json = s->cfg ? args_json(s->cfg) : NULL;
    /* every tensor of the whole model, whichever pipeline stage holds it (each writes its own) */
    int count;
    struct gpt_param *whole = gpt_whole_params(&model->cfg, &count);
    for (int i = 0; i < count; i++) add_param_tensors(m, s, &whole[i], optim);
    free(whole);
}

/* The compact optimizer array of a role (indexed like the optimizer's owned ranges). */
static const float *state_array(const struct optimizer *o, enum meta_role role)
{
    switch (role) {
    case ROLE_MAIN_PARAM: return o->main_params;
    case ROLE_EXP_AVG:
    case ROLE_MOMENTUM: return o->exp_avg;
    case ROLE_EXP_AVG_SQ: return o->exp_avg_sq;
    default: BUG("role %d", (int)role);
    }
}

/* Whether this rank writes its copy of p for role (ckpt.h: each byte exactly once). */
static bool writes(const struct ckpt_rank *r, const struct gpt_param *p, enum meta_role role)
{
    if (p->shard_dim < 0 && r->tp_rank != 0) return false;
    return role == ROLE_WEIGHT || !r->optimizer_sharded ? r->dp_rank == 0 : true;
}

/* Sends the runs of local elements of p, whose values (on the host) start at src for local element
 * lo, to the file. */
struct run_writer {
    struct stream_writer *w;
    const struct tfile_entry *e;
    const float *src;
    int64_t lo;
    uint64_t *sum;
    bool failed;
};

static void write_run(void *ctx, const struct param_run *run)
{
    struct run_writer *w = ctx;
    if (!w->failed) w->failed = tfile_write_run(w->w, w->e, run->full, run->n, w->src + (run->local - w->lo), w->sum) != 0;
}

/* Device memory (or host memory when a test asks for the device path) is copied to the host a
 * chunk at a time through one buffer per save. */
struct staging {
    bool on;
    enum device dev;
    float *host;
    int64_t cap; /* elements */
};

/* Local elements [lo, hi) of p, whose values start at src (host or device memory). */
static void write_local(struct run_writer *w, const struct gpt_param *p, const float *src, int64_t lo, int64_t hi,
                        struct staging *st)
{
    if (!st->on) {
        w->src = src;
        w->lo = lo;
        blocks_runs(p, lo, hi, write_run, w);
        return;
    }
    for (int64_t at = lo; at < hi && !w->failed; at += st->cap) {
        int64_t k = hi - at < st->cap ? hi - at : st->cap;
        device_copy_from(st->dev, st->host, src + (at - lo), (size_t)k * sizeof(float));
        w->src = st->host;
        w->lo = at;
        blocks_runs(p, at, at + k, write_run, w);
    }
}

/* Weights: the whole local copy. Optimizer state: where the owned ranges meet the parameter (main
 * params without an optimizer copy are the model's fp32 weights, indexed like them). */
static bool write_tensor(struct run_writer *w, const struct ckpt_state *s, const struct gpt_param *p,
                         enum meta_role role, struct staging *st)
{
    const struct gpt_model *m = s->model;
    if (role == ROLE_WEIGHT) {
        write_local(w, p, m->weights + p->offset, 0, p->numel, st);
        return !w->failed;
    }
    const struct optimizer *o = s->optimizer;
    int64_t state = 0;
    for (int k = 0; k < o->num_ranges && !w->failed; k++) {
        struct buffer_range rg = o->ranges[k];
        int64_t lo = p->offset > rg.lo ? p->offset : rg.lo, hi = p->offset + p->numel < rg.hi ? p->offset + p->numel : rg.hi;
        if (lo < hi) {
            const float *src = role == ROLE_MAIN_PARAM && !o->main_params ? m->weights + lo
                                                                          : state_array(o, role) + state + (lo - rg.lo);
            write_local(w, p, src, lo - p->offset, hi - p->offset, st);
        }
        state += rg.hi - rg.lo;
    }
    return !w->failed;
}

/* ---- collective steps ---- */

/* Every rank learns whether any rank failed (the sum of the flags). */
static bool any_failed(const struct ckpt_rank *r, bool failed)
{
    uint64_t v = failed;
    if (r->sum_u64) r->sum_u64(&v, 1, r->ctx);
    return v != 0;
}

/* Writes this rank's blocks of the tensors of meta that live in `file`; adds partial sums. */
static int write_file(const char *tmp, const char *file, const struct ckpt_state *s, const struct ckpt_meta *m,
                      const struct ckpt_rank *r, struct staging *st, uint64_t *sums, char *err, size_t errlen)
{
    char path[CKPT_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", tmp, file);
    size_t n = 0;
    struct tfile_entry *entries = xcalloc(m->num_tensors ? m->num_tensors : 1, sizeof *entries);
    size_t *which = xcalloc(m->num_tensors ? m->num_tensors : 1, sizeof *which);
    for (size_t i = 0; i < m->num_tensors; i++) {
        const struct meta_tensor *t = &m->tensors[i];
        if (strcmp(t->file, file) != 0) continue;
        entries[n] = (struct tfile_entry){t->name, t->dtype, t->ndim, {t->shape[0], t->shape[1]}, 0, 0};
        which[n++] = i;
    }
    struct tfile_plan plan;
    tfile_plan_init(&plan, entries, n);
    struct stream_writer *w = r->rank == 0 ? tfile_open_write(path, &plan, true, err, errlen) : NULL;
    bool failed = r->rank == 0 && !w;
    if (!any_failed(r, failed) && r->rank != 0) {
        w = tfile_open_write(path, &plan, false, err, errlen);
        failed = !w;
    }
    for (size_t k = 0; k < n && w && !failed; k++) {
        const struct meta_tensor *t = &m->tensors[which[k]];
        const struct gpt_param *p = gpt_find_param(s->model, t->param);
        if (!p || p->replica || !writes(r, p, t->role)) continue; /* another stage's, or stored by it */
        struct run_writer rw = {w, &entries[k], NULL, 0, &sums[which[k]], false};
        failed = !write_tensor(&rw, s, p, t->role, st);
    }
    if (w && tfile_close_write(w, err, errlen) != 0) failed = true;
    tfile_plan_free(&plan);
    free(entries);
    free(which);
    return failed ? -1 : 0;
}

/* ---- publication ---- */

/* Temp and old directories of an earlier save that was killed: an .old whose checkpoint is
 * missing goes back into place (a kill between the two renames of a replacing save), the rest
 * is removed. */
static void recover_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[CKPT_PATH_MAX], final[CKPT_PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        bool tmp = n > 5 && e->d_name[0] == '.' && strcmp(e->d_name + n - 4, ".tmp") == 0;
        bool old = n > 5 && e->d_name[0] == '.' && strcmp(e->d_name + n - 4, ".old") == 0;
        if (!tmp && !old) continue;
        if (strncmp(e->d_name, ".iter_", 6) != 0 && strncmp(e->d_name, ".release.", 9) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(final, sizeof final, "%s/%.*s", dir, (int)(n - 5), e->d_name + 1);
        if (old && !dirs_is_dir(final) && rename(path, final) == 0) continue;
        dirs_remove_tree(path);
    }
    closedir(d);
}

static int prepare_temp(const char *dir, const char *tmp, char *err, size_t errlen)
{
    if (dirs_mkdir_p(dir, err, errlen)) return -1;
    recover_stale(dir);
    dirs_remove_tree(tmp);
    if (mkdir(tmp, 0755) != 0) {
        snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        return -1;
    }
    return 0;
}

/* Moves the complete temp directory to final in one step (replacing an existing checkpoint of
 * the same iteration by an atomic exchange where the file system allows it). */
static int publish(const char *dir, const char *tmp, const char *final, const char *old, char *err, size_t errlen)
{
    dirs_sync(tmp);
    int rc = 0;
    if (!dirs_is_dir(final)) {
        rc = rename(tmp, final);
    } else if (dirs_exchange(tmp, final) == 0) {
        dirs_sync(dir);
        dirs_remove_tree(tmp); /* now the replaced checkpoint */
    } else {
        dirs_remove_tree(old);
        rc = rename(final, old) || rename(tmp, final);
        if (rc == 0) {
            dirs_sync(dir);
            dirs_remove_tree(old);
        }
    }
    if (rc) snprintf(err, errlen, "%s: cannot rename into place: %s", final, strerror(errno));
    dirs_sync(dir);
    return rc;
}

static int write_metadata_and_publish(const char *dir, const struct ckpt_meta *m, char *err, size_t errlen)
{
    char tmp[CKPT_PATH_MAX], final[CKPT_PATH_MAX], old[CKPT_PATH_MAX], path[CKPT_PATH_MAX + 32], tracker[CKPT_PATH_MAX + 64], text[32];
    ckpt_paths(dir, m->release, m->iteration, final, tmp, old);
    size_t len;
    char *json = meta_to_json(m, &len);
    snprintf(path, sizeof path, "%s/%s", tmp, CKPT_META_FILE);
    int rc = dirs_write_atomic(path, json, len, err, errlen);
    free(json);
    if (rc == 0) rc = publish(dir, tmp, final, old, err, errlen);
    if (rc) return rc;
    snprintf(tracker, sizeof tracker, "%s/%s", dir, CKPT_TRACKER);
    int n = m->release ? snprintf(text, sizeof text, "release") : snprintf(text, sizeof text, "%" PRId64, m->iteration);
    return dirs_write_atomic(tracker, text, (size_t)n, err, errlen);
}

int ckpt_save(const char *dir, const struct ckpt_state *s, const struct ckpt_save_options *o,
              const struct ckpt_rank *r, char *err, size_t errlen)
{
    struct ckpt_meta m;
    char tmp[CKPT_PATH_MAX], final[CKPT_PATH_MAX], old[CKPT_PATH_MAX];
    build_meta(s, o, &m);
    ckpt_paths(dir, m.release, m.iteration, final, tmp, old);
    bool failed = r->rank == 0 && prepare_temp(dir, tmp, err, errlen) != 0;
    if (any_failed(r, failed)) {
        if (!failed) snprintf(err, errlen, "%s: another rank could not create the checkpoint directory", dir);
        meta_free(&m);
        free(m.args_json);
        return -1;
    }
    uint64_t *sums = xcalloc(m.num_tensors + 1, sizeof *sums);
    struct staging st = {s->model->device != DEV_CPU || o->stage_elements > 0, s->model->device, NULL, 0};
    if (st.on) {
        st.cap = o->stage_elements > 0 ? o->stage_elements : STAGING_ELEMENTS;
        if (st.cap > s->model->buffer_numel) st.cap = s->model->buffer_numel > 0 ? s->model->buffer_numel : 1;
        st.host = xmalloc((size_t)st.cap * sizeof(float));
    }
    failed = write_file(tmp, CKPT_MODEL_FILE, s, &m, r, &st, sums, err, errlen) != 0;
    if (!failed && m.has_optimizer) failed = write_file(tmp, CKPT_OPTIM_FILE, s, &m, r, &st, sums, err, errlen) != 0;
    free(st.host);
    sums[m.num_tensors] = failed; /* the failure count travels with the checksums */
    if (r->sum_u64) r->sum_u64(sums, m.num_tensors + 1, r->ctx);
    if (sums[m.num_tensors] != 0 && !failed) snprintf(err, errlen, "%s: another rank could not write its part", tmp);
    failed = sums[m.num_tensors] != 0;
    for (size_t i = 0; i < m.num_tensors; i++) m.tensors[i].checksum = sums[i];
    free(sums);
    if (r->rank == 0) {
        if (!failed) failed = write_metadata_and_publish(dir, &m, err, errlen) != 0;
        if (failed) dirs_remove_tree(tmp);
    }
    failed = any_failed(r, failed) || failed;
    if (r->barrier) r->barrier(r->ctx);
    meta_free(&m);
    free(m.args_json);
    return failed ? -1 : 0;
}
