/* SGD with momentum over flat fp32 buffers, as Megatron builds it for --optimizer sgd:
 * torch.optim.SGD / apex FusedSGD with momentum = --sgd-momentum (default 0.9), weight decay as an
 * L2 term added to the gradient, dampening 0, no Nesterov (megatron/core/optimizer/__init__.py).
 *
 * Contract, per element i, in fp32 exactly in this order with no fused multiply-add (the CUDA
 * kernel must evaluate the same expressions to match bitwise):
 *     lr = (float)lr, wd = (float)wd, mu = (float)momentum
 *     wd != 0:        g = g + wd * p
 *     momentum != 0:  buf = first_step ? g : mu * buf + g;   g = buf
 *     p = p - lr * g
 * The momentum buffer starts as the first gradient (torch's clone on the first step), so its
 * contents before the first step are never read. */
#ifndef MEGATRON_OPTIM_SGD_H
#define MEGATRON_OPTIM_SGD_H

#include <stdbool.h>
#include <stdint.h>

/* One SGD step over n elements. momentum_buf may be NULL when momentum is 0. first_step is true on
 * the first update this buffer sees (also after a fresh start without saved optimizer state). */
void sgd_update(float *param, const float *grad, float *momentum_buf, int64_t n, double lr,
                double weight_decay, double momentum, bool first_step);

#endif
