/* The optimizer step over flat buffers: see optimizer.h. */
#include "optim/optimizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim/clip.h"
#include "optim/sgd.h"
#include "util/error.h"

struct optimizer *optimizer_create(struct gpt_model *m, const struct optimizer_options *opt)
{
    struct optimizer *o = xcalloc(1, sizeof *o);
    size_t bytes = (size_t)m->numel * sizeof(float);
    o->opt = *opt;
    o->model = m;
    if (opt->params_dtype == DT_F32) {
        o->main_params = m->weights;
    } else {
        o->main_params = xmalloc(bytes);
        memcpy(o->main_params, m->weights, bytes);
        round_to_dtype(m->weights, m->numel, opt->params_dtype);
    }
    o->exp_avg = xcalloc((size_t)m->numel, sizeof(float));
    if (opt->type == OPTIMIZER_ADAM) o->exp_avg_sq = xcalloc((size_t)m->numel, sizeof(float));
    return o;
}

void optimizer_free(struct optimizer *o)
{
    if (!o) return;
    if (o->main_params != o->model->weights) free(o->main_params);
    free(o->exp_avg);
    free(o->exp_avg_sq);
    free(o);
}

double optimizer_loss_scale(const struct optimizer *o) { return o->opt.scaler.scale; }

static void update_params(struct optimizer *o, double lr, double wd)
{
    const struct gpt_model *m = o->model;
    for (int i = 0; i < m->num_params; i++) {
        const struct gpt_param *p = &m->params[i];
        double p_wd = p->no_weight_decay ? 0.0 : wd;
        float *w = o->main_params + p->offset;
        const float *g = m->grads + p->offset;
        if (o->opt.type == OPTIMIZER_ADAM)
            adam_update(w, g, o->exp_avg + p->offset, o->exp_avg_sq + p->offset, p->numel, lr, p_wd,
                        o->opt.adam, o->step);
        else
            sgd_update(w, g, o->exp_avg + p->offset, p->numel, lr, p_wd, o->opt.sgd_momentum, o->step == 1);
    }
}

struct step_result optimizer_step(struct optimizer *o, int64_t global_batch)
{
    struct gpt_model *m = o->model;
    struct step_result r;
    float *bufs[1] = {m->grads};
    int64_t lens[1] = {m->numel};
    r.loss_scale = o->opt.scaler.scale;
    if (r.loss_scale != 1.0) clip_scale(bufs, lens, 1, 1.0 / r.loss_scale);

    double norm = sqrt(clip_global_norm_sq((const float *const *)bufs, lens, 1));
    bool found_inf = !isfinite(norm);
    scaler_update(&o->opt.scaler, found_inf);
    r.grad_norm = norm;
    r.skipped = found_inf;
    if (!found_inf) {
        double coeff;
        if (clip_coeff(norm, o->opt.clip_grad, &coeff)) clip_scale(bufs, lens, 1, coeff);
        o->step++;
        update_params(o, lr_schedule_lr(&o->opt.schedule, o->schedule_samples),
                      lr_schedule_wd(&o->opt.schedule, o->schedule_samples));
        if (o->main_params != m->weights) {
            memcpy(m->weights, o->main_params, (size_t)m->numel * sizeof(float));
            round_to_dtype(m->weights, m->numel, o->opt.params_dtype);
        }
        o->schedule_samples += global_batch;
    }
    r.lr = lr_schedule_lr(&o->opt.schedule, o->schedule_samples);
    memset(m->grads, 0, (size_t)m->numel * sizeof(float));
    return r;
}
