/* SGD (+ momentum, + L2 weight decay) step over flat fp32 buffers; arithmetic order in sgd.h. */
#include "optim/sgd.h"

#include <stddef.h>

#include "util/error.h"

/* Below this many elements a thread team costs more than it saves. */
#define SGD_OMP_MIN_N 32768

void sgd_update(float *param, const float *grad, float *momentum_buf, int64_t n, double lr,
                double weight_decay, double momentum, bool first_step)
{
    CHECK(n >= 0);
    const float lr_f = (float)lr, wd = (float)weight_decay, mu = (float)momentum;
    const bool use_momentum = mu != 0.0f;
    /* Skipped at zero as torch and apex do, so a zero gradient keeps its sign. */
    const bool use_wd = wd != 0.0f;
    CHECK(!use_momentum || momentum_buf != NULL);

#pragma omp parallel for schedule(static) if (n >= SGD_OMP_MIN_N)
    for (int64_t i = 0; i < n; i++) {
        const float p = param[i];
        float g = grad[i];
        if (use_wd) g = g + wd * p;
        if (use_momentum) {
            const float buf = first_step ? g : mu * momentum_buf[i] + g;
            momentum_buf[i] = buf;
            g = buf;
        }
        param[i] = p - lr_f * g;
    }
}
