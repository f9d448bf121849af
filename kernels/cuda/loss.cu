/* CUDA softmax cross-entropy over the full (possibly padded) vocabulary: one block per row keeps
 * an online max and sum of exponentials in fp32 (Milakov & Gimelshein, "Online normalizer
 * calculation for softmax", 2018), reduced in a fixed order; the log-sum-exp of the row gives the
 * loss, and the backward writes (softmax - onehot) * dloss over the bf16 logits, in place when
 * dlogits aliases logits. */
#include "kernels/cuda/cuda_common.h"

enum { CE_THREADS = 512 };

/* (max, sum of exp(x - max)) pairs merged: the online-softmax combine. */
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2)
{
    if (m2 == -INFINITY) return;
    if (m == -INFINITY) {
        m = m2;
        s = s2;
        return;
    }
    float mx = fmaxf(m, m2);
    s = s * expf(m - mx) + s2 * expf(m2 - mx);
    m = mx;
}

/* One element into a thread's running (max, sum): one exponential per element. */
__device__ __forceinline__ void lse_add(float &m, float &s, float x)
{
    if (x > m) {
        s = s * expf(m - x) + 1.0f; /* m = -inf at the start: 0 * 0 + 1 */
        m = x;
    } else if (x != -INFINITY) {
        s += expf(x - m);
    }
}

/* log sum_v exp(row[v]) over V columns, the same value in every thread of the block. */
__device__ float row_logsumexp(const bf16 *row, int64_t V, bool vec)
{
    __shared__ float sm[CE_THREADS / 32], ss[CE_THREADS / 32];
    float m = -INFINITY, s = 0.0f;
    for (int64_t c = threadIdx.x * 8; c < V; c += (int64_t)blockDim.x * 8) {
        float v[8];
        bf16_load8(row, c, V, vec, v);
        for (int i = 0; i < 8 && c + i < V; i++) lse_add(m, s, v[i]);
    }
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        sm[warp] = m;
        ss[warp] = s;
    }
    __syncthreads();
    m = -INFINITY;
    s = 0.0f;
    for (int w = 0; w < (int)(blockDim.x / 32); w++) lse_merge(m, s, sm[w], ss[w]);
    __syncthreads(); /* the shared slots are reused by the next call */
    return m + logf(s);
}

static __global__ void cross_entropy_forward_kernel(float *losses, const bf16 *logits,
                                                    const int32_t *targets, int64_t V, bool vec)
{
    int64_t n = blockIdx.x;
    const bf16 *row = logits + n * V;
    float lse = row_logsumexp(row, V, vec);
    if (threadIdx.x == 0) {
        int32_t t = targets[n];
        losses[n] = t >= 0 && t < V ? lse - __bfloat162float(row[t]) : __int_as_float(0x7fc00000);
    }
}

static __global__ void cross_entropy_backward_kernel(bf16 *dlogits, const bf16 *logits,
                                                     const int32_t *targets,
                                                     const float *dlosses, int64_t V, bool vec)
{
    int64_t n = blockIdx.x;
    const bf16 *row = logits + n * V;
    float lse = row_logsumexp(row, V, vec); /* every read of the row ends before any write */
    float g = dlosses[n];
    int64_t t = targets[n];
    for (int64_t c = threadIdx.x * 8; c < V; c += (int64_t)blockDim.x * 8) {
        float v[8];
        bf16_load8(row, c, V, vec, v);
        for (int i = 0; i < 8; i++) v[i] = (expf(v[i] - lse) - (c + i == t ? 1.0f : 0.0f)) * g;
        bf16_store8(dlogits + n * V, c, V, vec, v);
    }
}

void cuda_cross_entropy_forward(struct tensor losses, struct tensor logits, struct tensor targets)
{
    const char *op = "cuda_cross_entropy_forward";
    cuda_need(op, "losses", losses, DT_F32);
    cuda_need(op, "logits", logits, DT_BF16);
    cuda_need(op, "targets", targets, DT_I32);
    int64_t N = logits.shape[0], V = logits.shape[1];
    if (N == 0) return;
    CHECK(N <= 0x7fffffff);
    cross_entropy_forward_kernel<<<(unsigned)N, CE_THREADS, 0, cuda_ctx()->stream>>>(
        (float *)losses.data, (const bf16 *)logits.data, (const int32_t *)targets.data, V,
        V % 8 == 0 && cuda_aligned16(logits.data));
    CUDA_CHECK_LAUNCH("cross_entropy_forward_kernel");
}

void cuda_cross_entropy_backward(struct tensor dlogits, struct tensor logits,
                                 struct tensor targets, struct tensor dlosses)
{
    const char *op = "cuda_cross_entropy_backward";
    cuda_need(op, "dlogits", dlogits, DT_BF16);
    cuda_need(op, "logits", logits, DT_BF16);
    cuda_need(op, "targets", targets, DT_I32);
    cuda_need(op, "dlosses", dlosses, DT_F32);
    int64_t N = logits.shape[0], V = logits.shape[1];
    if (N == 0) return;
    CHECK(N <= 0x7fffffff);
    cross_entropy_backward_kernel<<<(unsigned)N, CE_THREADS, 0, cuda_ctx()->stream>>>(
        (bf16 *)dlogits.data, (const bf16 *)logits.data, (const int32_t *)targets.data,
        (const float *)dlosses.data, V,
        V % 8 == 0 && cuda_aligned16(logits.data) && cuda_aligned16(dlogits.data));
    CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel");
}
