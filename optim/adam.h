/* Adam over flat fp32 buffers, as Megatron's default optimizer applies it: Transformer Engine's or
 * apex's FusedAdam with bias correction, in AdamW mode (decoupled weight decay) unless
 * OptimizerConfig.decoupled_weight_decay (default true) asks for the original L2 form
 * (megatron/core/optimizer/__init__.py, optimizer_config.py).
 *
 * Contract, per element i, in fp32 exactly in this order with no fused multiply-add (the future
 * CUDA kernel must evaluate the same expressions, e.g. with __fmul_rn/__fadd_rn, to match bitwise):
 *     b1 = (float)beta1, b2 = (float)beta2, eps = (float)eps, lr = (float)lr, wd = (float)wd
 *     bc1 = (float)(1 - pow((double)b1, step)),  bc2 = (float)(1 - pow((double)b2, step))
 *     L2 mode only:  g = g + wd * p
 *     m = b1 * m + (1 - b1) * g
 *     v = b2 * v + (1 - b2) * g * g
 *     denom = sqrtf(v / bc2) + eps
 *     AdamW:   p = p - lr * ((m / bc1) / denom + wd * p)
 *     L2:      p = p - lr * ((m / bc1) / denom)
 * which is apex's multi_tensor_adam (ADAM_MODE_1 / ADAM_MODE_0). Elements are independent, so the
 * result does not depend on the number of threads. */
#ifndef MEGATRON_OPTIM_ADAM_H
#define MEGATRON_OPTIM_ADAM_H

#include <stdbool.h>
#include <stdint.h>

struct adam_params {
    double beta1;                /* --adam-beta1, default 0.9 */
    double beta2;                /* --adam-beta2, default 0.999 */
    double eps;                  /* --adam-eps, default 1e-8 */
    bool decoupled_weight_decay; /* true: AdamW (Megatron's default); false: L2 added to grad */
};

/* Megatron's defaults: 0.9, 0.999, 1e-8, decoupled weight decay. */
struct adam_params adam_params_default(void);

/* One Adam step over n elements. exp_avg and exp_avg_sq start at zero before step 1; step is the
 * 1-based count of updates applied to this state (Megatron skips it on a skipped iteration).
 * lr and weight_decay are this step's values (from the schedule, times the group's wd_mult). */
void adam_update(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, int64_t n,
                 double lr, double weight_decay, struct adam_params ap, int64_t step);

#endif
