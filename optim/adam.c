/* Adam / AdamW step over flat fp32 buffers: the CPU reference for the fused GPU kernel.
 * The per-element arithmetic is spelled out in adam.h and kept in that exact order here. */
#include "optim/adam.h"

#include <math.h>

#include "util/error.h"

/* Below this many elements a thread team costs more than it saves. */
#define ADAM_OMP_MIN_N 32768

struct adam_params adam_params_default(void)
{
    return (struct adam_params){
        .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .decoupled_weight_decay = true};
}

/* The bias corrections as apex computes them on the host: the float beta raised in double, the
 * result rounded to float once (multi_tensor_adam.cu). */
static float adam_bias_correction(float beta, int64_t step)
{
    return (float)(1.0 - pow((double)beta, (double)step));
}

void adam_update(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, int64_t n,
                 double lr, double weight_decay, struct adam_params ap, int64_t step)
{
    CHECK(step >= 1);
    CHECK(n >= 0);
    const float b1 = (float)ap.beta1, b2 = (float)ap.beta2, eps = (float)ap.eps;
    const float one_minus_b1 = 1.0f - b1, one_minus_b2 = 1.0f - b2;
    const float lr_f = (float)lr, wd = (float)weight_decay;
    const float bc1 = adam_bias_correction(b1, step), bc2 = adam_bias_correction(b2, step);
    const bool decoupled = ap.decoupled_weight_decay;

#pragma omp parallel for schedule(static) if (n >= ADAM_OMP_MIN_N)
    for (int64_t i = 0; i < n; i++) {
        float p = param[i], g = grad[i];
        if (!decoupled) g = g + wd * p;
        const float m = b1 * exp_avg[i] + one_minus_b1 * g;
        const float v = b2 * exp_avg_sq[i] + one_minus_b2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        const float denom = sqrtf(v / bc2) + eps;
        float update = (m / bc1) / denom;
        if (decoupled) update = update + wd * p;
        param[i] = p - lr_f * update;
    }
}
