/* The optimizer step over ranges of flat buffers: see optimizer.h. */
#include "optim/optimizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/arena.h"
#include "optim/clip.h"
#include "optim/sgd.h"
#include "parallel/comm.h"
#include "util/error.h"
#ifdef MEGATRON_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

/* On the CUDA backend the model's fp32 weights are the main weights and every buffer here lives
 * on the GPU; the CPU backend keeps a main copy when the model stores bf16/fp16 values. */
static bool on_gpu(const struct optimizer *o) { return o->model->device == DEV_CUDA; }

struct optimizer *optimizer_create(struct gpt_model *m, const struct optimizer_options *opt,
                                   const struct buffer_range *ranges, int num_ranges)
{
    struct optimizer *o = xcalloc(1, sizeof *o);
    o->opt = *opt;
    o->model = m;
    o->num_ranges = num_ranges;
    o->ranges = xmalloc((size_t)num_ranges * sizeof *ranges);
    memcpy(o->ranges, ranges, (size_t)num_ranges * sizeof *ranges);
    for (int r = 0; r < num_ranges; r++) o->owned += ranges[r].hi - ranges[r].lo;
    if (opt->params_dtype != DT_F32 && !on_gpu(o)) {
        int64_t at = 0;
        o->main_params = xmalloc((size_t)o->owned * sizeof(float));
        for (int r = 0; r < num_ranges; r++) {
            int64_t len = ranges[r].hi - ranges[r].lo;
            memcpy(o->main_params + at, m->weights + ranges[r].lo, (size_t)len * sizeof(float));
            at += len;
        }
        round_to_dtype(m->weights, m->numel, opt->params_dtype);
    }
    o->exp_avg = device_alloc(m->device, (size_t)o->owned * sizeof(float));
    if (opt->type == OPTIMIZER_ADAM) o->exp_avg_sq = device_alloc(m->device, (size_t)o->owned * sizeof(float));
    return o;
}

void optimizer_free(struct optimizer *o)
{
    if (!o) return;
    free(o->ranges);
    free(o->main_params);
    device_free(o->model->device, o->exp_avg);
    if (o->device_chunks) device_free(o->model->device, o->device_chunks);
    if (o->device_scalars) device_free(o->model->device, o->device_scalars);
    if (o->device_params_sq) device_free(o->model->device, o->device_params_sq);
    if (o->exp_avg_sq) device_free(o->model->device, o->exp_avg_sq);
    free(o);
}

double optimizer_loss_scale(const struct optimizer *o) { return o->opt.scaler.scale; }

/* Calls fn on every piece where a parameter meets an owned range: flat position, length, the
 * position in the compact state arrays, and the parameter. */
typedef void (*piece_fn)(struct optimizer *o, int64_t at, int64_t len, int64_t state, const struct gpt_param *p,
                         void *arg);

static void for_each_piece(struct optimizer *o, piece_fn fn, void *arg)
{
    const struct gpt_model *m = o->model;
    int64_t state = 0;
    for (int r = 0; r < o->num_ranges; r++) {
        struct buffer_range rg = o->ranges[r];
        for (int i = 0; i < m->num_params; i++) {
            const struct gpt_param *p = &m->params[i];
            int64_t lo = p->offset > rg.lo ? p->offset : rg.lo;
            int64_t hi = p->offset + p->numel < rg.hi ? p->offset + p->numel : rg.hi;
            if (lo < hi) fn(o, lo, hi - lo, state + (lo - rg.lo), p, arg);
        }
        state += rg.hi - rg.lo;
    }
}

/* Whether a parameter's gradient counts in the norm on this rank: parameters every
 * tensor-parallel rank holds whole count on tp rank 0 only, replicas of another stage's
 * parameter not at all. */
static bool counted(const struct optimizer *o, const struct gpt_param *p)
{
    return !((p->shard_dim < 0 && o->model->tp.rank != 0) || p->replica);
}

/* Collects the owned pieces of counted parameters into runs of consecutive elements, so the
 * device goes over a few long ranges instead of every parameter on its own; add takes each run. */
struct counted_runs {
    int64_t lo, hi; /* the open run */
    double sum;     /* the CPU's sum; on the GPU the sum is added up in the step's scalars */
    void (*add)(struct optimizer *o, struct counted_runs *r, const float *g, int64_t len);
};

/* Adds the sum of squares of g[0, len) to the norm's sum (in call order on either backend). */
static void add_sum_squares(struct optimizer *o, struct counted_runs *r, const float *g, int64_t len)
{
#ifdef MEGATRON_CUDA
    if (on_gpu(o)) {
        cuda_sum_squares_add(&((struct cuda_step_scalars *)o->device_scalars)->norm_sq, g, len);
        return;
    }
#endif
    (void)o;
    r->sum += clip_global_norm_sq(&g, &len, 1);
}

/* Adds the number of zeros of g[0, len) after clipping to the count (--log-num-zeros-in-grad):
 * on the CPU the gradients are clipped in place already, on the GPU each is multiplied by the
 * step's clip factor as the update multiplies it. */
static void add_zeros(struct optimizer *o, struct counted_runs *r, const float *g, int64_t len)
{
#ifdef MEGATRON_CUDA
    if (on_gpu(o)) {
        struct cuda_step_scalars *s = o->device_scalars;
        cuda_count_zeros_add(&s->num_zeros, g, len, s);
        return;
    }
#endif
    (void)o;
    int64_t zeros = 0;
#pragma omp parallel for reduction(+ : zeros) schedule(static) if (len >= (1 << 16))
    for (int64_t i = 0; i < len; i++) zeros += g[i] == 0.0f;
    r->sum += (double)zeros;
}

static void run_piece(struct optimizer *o, int64_t at, int64_t len, int64_t state, const struct gpt_param *p,
                      void *arg)
{
    (void)state;
    struct counted_runs *r = arg;
    if (!counted(o, p)) return;
    if (at != r->hi) {
        if (r->hi > r->lo) r->add(o, r, o->model->grads + r->lo, r->hi - r->lo);
        r->lo = at;
    }
    r->hi = at + len;
}

struct update_args {
    double lr, wd;
    int64_t step; /* Adam's count for this update (1-based) */
};

#ifdef MEGATRON_CUDA
/* The chunk table of the CUDA backend's one optimizer launch: every owned piece cut into chunks. */
struct chunk_table {
    struct cuda_optim_chunk *c;
    int64_t n, cap;
};

static void chunk_piece(struct optimizer *o, int64_t at, int64_t len, int64_t state, const struct gpt_param *p,
                        void *arg)
{
    (void)o;
    struct chunk_table *t = arg;
    for (int64_t k = 0; k < len; k += CUDA_OPTIM_CHUNK) {
        if (t->n == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 256;
            t->c = xrealloc(t->c, (size_t)t->cap * sizeof *t->c);
        }
        int64_t n = len - k < CUDA_OPTIM_CHUNK ? len - k : CUDA_OPTIM_CHUNK;
        t->c[t->n++] = (struct cuda_optim_chunk){at + k, state + k, (int32_t)n, !p->no_weight_decay};
    }
}

/* fp32 main weights (the model's own) updated in place by Adam or SGD and their 16-bit copy
 * written, in one launch over the chunk table (built on the first step: the pieces never change),
 * with the step's scalars (the rates, the clip and the skip) read on the device. */
static void update_on_gpu(struct optimizer *o)
{
    struct gpt_model *m = o->model;
    if (!o->device_chunks) {
        struct chunk_table t = {NULL, 0, 0};
        for_each_piece(o, chunk_piece, &t);
        o->num_chunks = t.n;
        o->device_chunks = device_alloc(DEV_CUDA, (size_t)(t.n ? t.n : 1) * sizeof *t.c);
        device_copy_to(DEV_CUDA, o->device_chunks, t.c, (size_t)t.n * sizeof *t.c);
        free(t.c);
    }
    if (o->opt.type == OPTIMIZER_ADAM)
        cuda_adam_update_chunks(m->weights, m->grads, o->exp_avg, o->exp_avg_sq, o->device_chunks, o->num_chunks,
                                o->opt.adam, o->device_scalars, m->weights_lp, m->activation_dtype);
    else
        cuda_sgd_update_chunks(m->weights, m->grads, o->exp_avg, o->device_chunks, o->num_chunks,
                               o->opt.sgd_momentum, o->device_scalars, m->weights_lp, m->activation_dtype);
}
#endif

static void update_piece(struct optimizer *o, int64_t at, int64_t len, int64_t state, const struct gpt_param *p,
                         void *arg)
{
    const struct update_args *u = arg;
    struct gpt_model *m = o->model;
    double wd = p->no_weight_decay ? 0.0 : u->wd;
    float *w = o->main_params ? o->main_params + state : m->weights + at;
    const float *g = m->grads + at;
    if (o->opt.type == OPTIMIZER_ADAM)
        adam_update(w, g, o->exp_avg + state, o->exp_avg_sq + state, len, u->lr, wd, o->opt.adam, u->step);
    else
        sgd_update(w, g, o->exp_avg + state, len, u->lr, wd, o->opt.sgd_momentum, u->step == 1);
    if (o->main_params) { /* the model's storage precision */
        memcpy(m->weights + at, w, (size_t)len * sizeof(float));
        round_to_dtype(m->weights + at, len, o->opt.params_dtype);
    }
}

/* add over the gradients this rank's norm counts: whole owned ranges unless tensor parallelism or
 * replicas leave some parameters out; the CPU's sum (on the GPU: added to the step's scalars). */
static double counted_sum(struct optimizer *o,
                          void (*add)(struct optimizer *, struct counted_runs *, const float *, int64_t))
{
    bool every = o->model->tp.size == 1;
    for (int i = 0; i < o->model->num_params; i++) every &= !o->model->params[i].replica;
    struct counted_runs r = {0, 0, 0.0, add};
    if (!every) {
        for_each_piece(o, run_piece, &r);
        if (r.hi > r.lo) add(o, &r, o->model->grads + r.lo, r.hi - r.lo);
        return r.sum;
    }
    for (int k = 0; k < o->num_ranges; k++)
        add(o, &r, o->model->grads + o->ranges[k].lo, o->ranges[k].hi - o->ranges[k].lo);
    return r.sum;
}

/* grads *= c over the owned ranges (on the CPU). */
static void scale_owned(struct optimizer *o, double c)
{
    for (int r = 0; r < o->num_ranges; r++) {
        float *g = o->model->grads + o->ranges[r].lo;
        int64_t len = o->ranges[r].hi - o->ranges[r].lo;
        clip_scale(&g, &len, 1, c);
    }
}

/* The norm groups' sum of what each rank's sum holds (of squares, or of zeros). */
static void all_reduce_norm(struct optimizer *o, double *sum)
{
    struct comm_group *groups[3] = {o->opt.norm_tp_group, o->opt.norm_dp_group, o->opt.norm_pp_group};
    for (int k = 0; k < 3; k++) {
        if (!groups[k]) continue;
        if (on_gpu(o))
            comm_device_all_reduce_sum(groups[k], sum, 1, COMM_F64);
        else
            comm_all_reduce_sum(groups[k], sum, 1, COMM_F64);
    }
}

void optimizer_prepare(struct optimizer *o)
{
    o->pending_lr = lr_schedule_lr(&o->opt.schedule, o->schedule_samples);
    o->pending_wd = lr_schedule_wd(&o->opt.schedule, o->schedule_samples);
    o->pending_norm = NAN;
    o->pending_zeros = NAN;
#ifdef MEGATRON_CUDA
    if (on_gpu(o)) {
        struct cuda_step_scalars s;
        cuda_step_scalars_fill(&s, o->pending_lr, o->pending_wd, o->opt.adam, o->step + 1, o->opt.clip_grad,
                               o->opt.scaler.scale);
        if (!o->device_scalars) o->device_scalars = device_alloc(DEV_CUDA, sizeof s);
        device_copy_to_queued(DEV_CUDA, o->device_scalars, &s, sizeof s);
    }
#endif
}

void optimizer_queue(struct optimizer *o)
{
#ifdef MEGATRON_CUDA
    if (on_gpu(o)) {
        struct cuda_step_scalars *s = o->device_scalars;
        if (!s) BUG("optimizer_queue before optimizer_prepare");
        /* a dynamic scale may come back to 1: unscaled all the same, so the launches never change */
        if (o->opt.scaler.dynamic || o->opt.scaler.scale != 1.0)
            for (int r = 0; r < o->num_ranges; r++)
                cuda_scale_f32_by(o->model->grads + o->ranges[r].lo, o->ranges[r].hi - o->ranges[r].lo,
                                  &s->inv_loss_scale);
        counted_sum(o, add_sum_squares);
        all_reduce_norm(o, &s->norm_sq);
        if (o->opt.count_zeros) { /* after the norm: the count clips as the update will */
            counted_sum(o, add_zeros);
            all_reduce_norm(o, &s->num_zeros);
        }
        update_on_gpu(o);
        return;
    }
#endif
    double scale = o->opt.scaler.scale;
    if (scale != 1.0) scale_owned(o, 1.0 / scale);
    double sq = counted_sum(o, add_sum_squares);
    all_reduce_norm(o, &sq);
    double norm = sqrt(sq), coeff;
    o->pending_norm = norm;
    if (!isfinite(norm)) return; /* skipped */
    if (clip_coeff(norm, o->opt.clip_grad, &coeff)) scale_owned(o, coeff);
    if (o->opt.count_zeros) { /* Megatron counts after clipping */
        o->pending_zeros = counted_sum(o, add_zeros);
        all_reduce_norm(o, &o->pending_zeros);
    }
    struct update_args u = {o->pending_lr, o->pending_wd, o->step + 1};
    for_each_piece(o, update_piece, &u);
}

struct step_result optimizer_finish(struct optimizer *o, int64_t global_batch)
{
    struct step_result r;
    double norm = o->pending_norm, zeros = o->pending_zeros;
#ifdef MEGATRON_CUDA
    if (on_gpu(o)) { /* the norm's sum and the count side by side: one copy */
        double sums[2] = {0.0, 0.0};
        const struct cuda_step_scalars *s = o->device_scalars;
        device_copy_from(DEV_CUDA, sums, &s->norm_sq, (o->opt.count_zeros ? 2 : 1) * sizeof(double));
        norm = sqrt(sums[0]);
        zeros = o->opt.count_zeros ? sums[1] : NAN;
    }
#endif
    bool found_inf = !isfinite(norm);
    r.loss_scale = o->opt.scaler.scale;
    scaler_update(&o->opt.scaler, found_inf);
    r.grad_norm = norm;
    r.num_zeros = found_inf ? NAN : zeros;
    r.skipped = found_inf;
    if (!found_inf) {
        o->step++;
        o->schedule_samples += global_batch;
    }
    r.lr = lr_schedule_lr(&o->opt.schedule, o->schedule_samples);
    return r;
}

struct step_result optimizer_step(struct optimizer *o, int64_t global_batch)
{
    optimizer_prepare(o);
    optimizer_queue(o);
    return optimizer_finish(o, global_batch);
}

/* The main parameters' squares of one owned piece, when its parameter counts (see counted). */
static void params_norm_piece(struct optimizer *o, int64_t at, int64_t len, int64_t state,
                              const struct gpt_param *p, void *arg)
{
    if (!counted(o, p)) return;
#ifdef MEGATRON_CUDA
    if (on_gpu(o)) {
        (void)state, (void)arg;
        cuda_sum_squares_add(o->device_params_sq, o->model->weights + at, len);
        return;
    }
#endif
    const float *w = o->main_params ? o->main_params + state : o->model->weights + at;
    *(double *)arg += clip_global_norm_sq(&w, &len, 1);
}

double optimizer_params_norm(struct optimizer *o)
{
    double sq = 0.0;
    if (on_gpu(o)) {
        if (!o->device_params_sq) o->device_params_sq = device_alloc(DEV_CUDA, sizeof(double));
        device_zero(DEV_CUDA, o->device_params_sq, sizeof(double));
        for_each_piece(o, params_norm_piece, NULL);
        all_reduce_norm(o, o->device_params_sq);
        device_copy_from(DEV_CUDA, &sq, o->device_params_sq, sizeof sq);
    } else {
        for_each_piece(o, params_norm_piece, &sq);
        all_reduce_norm(o, &sq);
    }
    return sqrt(sq);
}
