/* CPU activations: GeLU (exact erf form and the tanh approximation) and SwiGLU, forward and
 * backward, elementwise in fp32; and the linear layers fused with a GeLU, which on this backend
 * are the unfused ops one after the other (the reference the CUDA epilogues are checked against). */
#include <math.h>

#include "kernels/cpu/cpu_ops.h"

#define SQRT_HALF 0.70710678118654752f      /* 1/sqrt(2) */
#define INV_SQRT_2PI 0.39894228040143268f   /* 1/sqrt(2 pi) */
#define SQRT_2_OVER_PI 0.79788456080286536f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f                /* Hendrycks & Gimpel 2016, eq. for the tanh form */

/* gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), or
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (Hendrycks & Gimpel, "GELUs", 2016). */
static inline float gelu(float x, bool tanh_approx)
{
    if (tanh_approx) return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)));
    return 0.5f * x * (1.0f + erff(x * SQRT_HALF));
}

/* d gelu / dx: Phi(x) + x phi(x), or the derivative of the tanh form. */
static inline float gelu_grad(float x, bool tanh_approx)
{
    if (tanh_approx) {
        float u = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
        float t = tanhf(u);
        float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_CUBIC * x * x);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
    return 0.5f * (1.0f + erff(x * SQRT_HALF)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
}

void cpu_gelu_forward(struct tensor y, struct tensor x, bool tanh_approx)
{
    int64_t n = tensor_numel(x);
    const float *xs = x.data;
    float *ys = y.data;
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) ys[i] = gelu(xs[i], tanh_approx);
}

void cpu_gelu_backward(struct tensor dx, struct tensor dy, struct tensor x, bool tanh_approx)
{
    int64_t n = tensor_numel(x);
    const float *xs = x.data, *dys = dy.data;
    float *dxs = dx.data;
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) dxs[i] = dys[i] * gelu_grad(xs[i], tanh_approx);
}

void cpu_linear_gelu_forward(struct tensor y, struct tensor pre, struct tensor x, struct tensor w,
                             struct tensor b, bool tanh_approx)
{
    cpu_linear_forward(pre, x, w, b);
    cpu_gelu_forward(y, pre, tanh_approx);
}

void cpu_linear_dgelu_backward(struct tensor dpre, struct tensor dpre_bias, struct tensor dw,
                               struct tensor dy, struct tensor x, struct tensor w, struct tensor pre,
                               bool tanh_approx)
{
    cpu_linear_backward(dpre, dw, tensor_none(), dy, x, w);
    cpu_gelu_backward(dpre, dpre, pre, tanh_approx); /* elementwise, in place */
    if (tensor_present(dpre_bias))
        cpu_sum_rows_acc(dpre_bias.data, dpre.data, dpre.shape[0], dpre.shape[1]);
}

void cpu_linear_dgelu_backward_saved(struct tensor dpre, struct tensor dpre_bias, struct tensor dw,
                                     struct tensor dy, struct tensor x, struct tensor w,
                                     struct tensor dgelu)
{
    cpu_linear_backward(dpre, dw, tensor_none(), dy, x, w);
    float *d = dpre.data;
    const float *g = dgelu.data;
    const int64_t n = tensor_numel(dpre);
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) d[i] *= g[i];
    if (tensor_present(dpre_bias))
        cpu_sum_rows_acc(dpre_bias.data, dpre.data, dpre.shape[0], dpre.shape[1]);
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

void cpu_swiglu_forward(struct tensor y, struct tensor x)
{
    int64_t N = y.shape[0], F = y.shape[1];
    const float *xs = x.data;
    float *ys = y.data;
#pragma omp parallel for schedule(static) if (N * F >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const float *gate = xs + n * 2 * F, *up = gate + F;
        for (int64_t f = 0; f < F; f++) ys[n * F + f] = gate[f] * sigmoid(gate[f]) * up[f];
    }
}

/* d silu(g) / dg = s (1 + g (1 - s)) with s = sigmoid(g). */
void cpu_swiglu_backward(struct tensor dx, struct tensor dy, struct tensor x)
{
    int64_t N = dy.shape[0], F = dy.shape[1];
    const float *xs = x.data, *dys = dy.data;
    float *dxs = dx.data;
#pragma omp parallel for schedule(static) if (N * F >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const float *gate = xs + n * 2 * F, *up = gate + F, *dyr = dys + n * F;
        float *dgate = dxs + n * 2 * F, *dup = dgate + F;
        for (int64_t f = 0; f < F; f++) {
            float g = gate[f], s = sigmoid(g);
            dgate[f] = dyr[f] * up[f] * s * (1.0f + g * (1.0f - s));
            dup[f] = dyr[f] * g * s;
        }
    }
}
