/* Megatron's mixed-precision optimizer over a model's flat buffers: fp32 main parameters (a copy
 * when the model stores bf16 or fp16, the model's own buffer in fp32), fp32 main grads, loss-scale
 * handling, global-norm clipping, Adam or SGD with per-parameter weight decay (none on biases and
 * 1-D tensors), the LR/WD schedule, and the skip of a step whose gradients are not finite. */
#ifndef MEGATRON_OPTIM_OPTIMIZER_H
#define MEGATRON_OPTIM_OPTIMIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/tensor.h"
#include "models/gpt.h"
#include "optim/adam.h"
#include "optim/scaler.h"
#include "optim/schedule.h"

enum optimizer_type { OPTIMIZER_ADAM, OPTIMIZER_SGD };

struct optimizer_options {
    enum optimizer_type type;
    struct adam_params adam;
    double sgd_momentum;
    double clip_grad;          /* --clip-grad; 0 disables clipping */
    enum dtype params_dtype;   /* DT_F32, DT_BF16 or DT_F16: how the model stores its weights */
    struct loss_scaler scaler;
    struct lr_schedule schedule;
};

struct optimizer {
    struct optimizer_options opt;
    struct gpt_model *model;
    float *main_params;        /* == model->weights when params_dtype is fp32 */
    float *exp_avg;            /* Adam's first moment, or SGD's momentum buffer */
    float *exp_avg_sq;         /* Adam only */
    int64_t step;              /* successful updates so far (Adam's bias-correction count) */
    int64_t schedule_samples;  /* the scheduler's count: advances by the global batch on each
                                  successful step only, as OptimizerParamScheduler.step is called */
};

struct step_result {
    double grad_norm;          /* before clipping; NaN/Inf when the step was skipped */
    double lr;                 /* the rate after the schedule advanced (what Megatron logs) */
    double loss_scale;         /* the scale used for this iteration's backward */
    bool skipped;
};

/* Takes the model's current weights as the fp32 main parameters. */
struct optimizer *optimizer_create(struct gpt_model *m, const struct optimizer_options *o);
void optimizer_free(struct optimizer *o);

/* The scale the next backward multiplies the loss by. */
double optimizer_loss_scale(const struct optimizer *o);

/* One optimizer step on the model's accumulated grads (scaled by optimizer_loss_scale()):
 * unscale, clip, update with the schedule's values before this step, advance the schedule by
 * global_batch samples, copy main parameters into the model's storage precision, zero grads. */
struct step_result optimizer_step(struct optimizer *o, int64_t global_batch);

#endif
