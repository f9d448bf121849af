/* CUDA softmax cross-entropy over the full (possibly padded) vocabulary, and the per-rank pieces
 * of Megatron's vocab-parallel cross-entropy (ops.h). One block per row keeps an online max and
 * sum of exponentials in fp32 (Milakov & Gimelshein, "Online normalizer calculation for softmax",
 * 2018), reduced in a fixed order; the log-sum-exp of the row gives the loss, and the backward
 * writes (softmax - onehot) * dloss over the bf16 logits, in place when dlogits aliases logits. */
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

/* The row's max m and sum of exp(x - m) over V columns, the same values in every thread. */
__device__ void row_max_sumexp(const bf16 *row, int64_t V, bool vec, float *m_out, float *s_out)
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
    __syncthreads(); /* the shared slots may be reused */
    *m_out = m;
    *s_out = s;
}

__device__ __forceinline__ float nan_f(void) { return __int_as_float(0x7fc00000); }

static __global__ void cross_entropy_forward_kernel(float *losses, const bf16 *logits,
                                                    const int32_t *targets, int64_t V, bool vec)
{
    int64_t n = blockIdx.x;
    const bf16 *row = logits + n * V;
    float m, s;
    row_max_sumexp(row, V, vec, &m, &s);
    if (threadIdx.x == 0) {
        int32_t t = targets[n];
        losses[n] = t >= 0 && t < V ? m + logf(s) - __bfloat162float(row[t]) : nan_f();
    }
}

/* dlogits[n, v] = (exp(logits[n, v] - lse[n]) - [v + start == targets[n]]) * dlosses[n], with
 * lse[n] from the row itself when lse is NULL. Every read of a row ends before its first write
 * (the block synchronizes in row_max_sumexp), so dlogits may alias logits. */
static __global__ void cross_entropy_backward_kernel(bf16 *dlogits, const bf16 *logits,
                                                     const int32_t *targets, int64_t start,
                                                     const float *lse, const float *dlosses,
                                                     int64_t V, bool vec)
{
    int64_t n = blockIdx.x;
    const bf16 *row = logits + n * V;
    float z;
    if (lse) {
        z = lse[n];
    } else {
        float m, s;
        row_max_sumexp(row, V, vec, &m, &s);
        z = m + logf(s);
    }
    float g = dlosses[n];
    int64_t t = (int64_t)targets[n] - start;
    for (int64_t c = threadIdx.x * 8; c < V; c += (int64_t)blockDim.x * 8) {
        float v[8];
        bf16_load8(row, c, V, vec, v);
        for (int i = 0; i < 8; i++) v[i] = (expf(v[i] - z) - (c + i == t ? 1.0f : 0.0f)) * g;
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

static void ce_backward(const char *op, struct tensor dlogits, struct tensor logits,
                        struct tensor targets, int64_t start, const float *lse,
                        struct tensor dlosses)
{
    cuda_need(op, "dlogits", dlogits, DT_BF16);
    cuda_need(op, "logits", logits, DT_BF16);
    cuda_need(op, "targets", targets, DT_I32);
    cuda_need(op, "dlosses", dlosses, DT_F32);
    int64_t N = logits.shape[0], V = logits.shape[1];
    if (N == 0) return;
    CHECK(N <= 0x7fffffff);
    cross_entropy_backward_kernel<<<(unsigned)N, CE_THREADS, 0, cuda_ctx()->stream>>>(
        (bf16 *)dlogits.data, (const bf16 *)logits.data, (const int32_t *)targets.data, start,
        lse, (const float *)dlosses.data, V,
        V % 8 == 0 && cuda_aligned16(logits.data) && cuda_aligned16(dlogits.data));
    CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel");
}

void cuda_cross_entropy_backward(struct tensor dlogits, struct tensor logits,
                                 struct tensor targets, struct tensor dlosses)
{
    ce_backward("cuda_cross_entropy_backward", dlogits, logits, targets, 0, NULL, dlosses);
}

/* ---- vocab-parallel cross-entropy (ops.h): per-rank statistics the caller combines ---- */

static __global__ void vp_stats_kernel(float *row_max, float *sum_exp, float *target_logit,
                                       const bf16 *logits, const int32_t *targets, int64_t start,
                                       int64_t V, bool vec)
{
    int64_t n = blockIdx.x;
    const bf16 *row = logits + n * V;
    float m, s;
    row_max_sumexp(row, V, vec, &m, &s);
    if (threadIdx.x == 0) {
        int64_t t = (int64_t)targets[n] - start;
        row_max[n] = m;
        sum_exp[n] = s;
        target_logit[n] = t >= 0 && t < V ? __bfloat162float(row[t]) : 0.0f;
    }
}

void cuda_vocab_parallel_ce_stats(struct tensor row_max, struct tensor sum_exp,
                                  struct tensor target_logit, struct tensor logits,
                                  struct tensor targets, int64_t vocab_start)
{
    const char *op = "cuda_vocab_parallel_ce_stats";
    cuda_need(op, "row_max", row_max, DT_F32);
    cuda_need(op, "sum_exp", sum_exp, DT_F32);
    cuda_need(op, "target_logit", target_logit, DT_F32);
    cuda_need(op, "logits", logits, DT_BF16);
    cuda_need(op, "targets", targets, DT_I32);
    int64_t N = logits.shape[0], V = logits.shape[1];
    if (N == 0) return;
    CHECK(N <= 0x7fffffff);
    vp_stats_kernel<<<(unsigned)N, CE_THREADS, 0, cuda_ctx()->stream>>>(
        (float *)row_max.data, (float *)sum_exp.data, (float *)target_logit.data,
        (const bf16 *)logits.data, (const int32_t *)targets.data, vocab_start, V,
        V % 8 == 0 && cuda_aligned16(logits.data));
    CUDA_CHECK_LAUNCH("vp_stats_kernel");
}

/* sum_exp[n] *= exp(row_max[n] - global_max[n]), in double as the CPU does. */
static __global__ void vp_rescale_kernel(float *sum_exp, const float *row_max,
                                         const float *global_max, int64_t N)
{
    for (int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; n < N;
         n += (int64_t)gridDim.x * blockDim.x)
        sum_exp[n] = (float)((double)sum_exp[n] * exp((double)row_max[n] - (double)global_max[n]));
}

void cuda_vocab_parallel_ce_rescale(struct tensor sum_exp, struct tensor row_max,
                                    struct tensor global_max)
{
    const char *op = "cuda_vocab_parallel_ce_rescale";
    cuda_need(op, "sum_exp", sum_exp, DT_F32);
    cuda_need(op, "row_max", row_max, DT_F32);
    cuda_need(op, "global_max", global_max, DT_F32);
    int64_t N = sum_exp.shape[0];
    if (N == 0) return;
    vp_rescale_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_ctx()->stream>>>(
        (float *)sum_exp.data, (const float *)row_max.data, (const float *)global_max.data, N);
    CUDA_CHECK_LAUNCH("vp_rescale_kernel");
}

/* lse[n] = global_max[n] + log(sum_exp[n]); losses[n] = lse[n] - target_logit[n] (in double). */
static __global__ void vp_loss_kernel(float *losses, float *lse, const float *global_max,
                                      const float *sum_exp, const float *target_logit, int64_t N)
{
    for (int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; n < N;
         n += (int64_t)gridDim.x * blockDim.x) {
        double v = (double)global_max[n] + log((double)sum_exp[n]);
        lse[n] = (float)v;
        losses[n] = (float)(v - (double)target_logit[n]);
    }
}

void cuda_vocab_parallel_ce_loss(struct tensor losses, struct tensor lse, struct tensor global_max,
                                 struct tensor sum_exp, struct tensor target_logit)
{
    const char *op = "cuda_vocab_parallel_ce_loss";
    cuda_need(op, "losses", losses, DT_F32);
    cuda_need(op, "lse", lse, DT_F32);
    cuda_need(op, "global_max", global_max, DT_F32);
    cuda_need(op, "sum_exp", sum_exp, DT_F32);
    cuda_need(op, "target_logit", target_logit, DT_F32);
    int64_t N = losses.shape[0];
    if (N == 0) return;
    vp_loss_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_ctx()->stream>>>(
        (float *)losses.data, (float *)lse.data, (const float *)global_max.data,
        (const float *)sum_exp.data, (const float *)target_logit.data, N);
    CUDA_CHECK_LAUNCH("vp_loss_kernel");
}

void cuda_vocab_parallel_ce_backward(struct tensor dlogits, struct tensor logits,
                                     struct tensor targets, int64_t vocab_start, struct tensor lse,
                                     struct tensor dlosses)
{
    const char *op = "cuda_vocab_parallel_ce_backward";
    cuda_need(op, "lse", lse, DT_F32);
    ce_backward(op, dlogits, logits, targets, vocab_start, (const float *)lse.data, dlosses);
}

/* ---- the loss kept on the device ---- */

enum { MASKED_SUM_THREADS = 1024 };

/* One block: each thread sums a strided share in double, then a fixed tree: the order depends on
 * n only. */
static __global__ void masked_sum_accumulate_kernel(double *acc, const float *x, const float *mask, int64_t n)
{
    __shared__ double part[MASKED_SUM_THREADS];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += MASKED_SUM_THREADS) s += (double)mask[i] * (double)x[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int w = MASKED_SUM_THREADS / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) *acc += part[0];
}

void cuda_masked_sum_accumulate(double *acc, const float *x, const float *mask, int64_t n)
{
    if (n <= 0) return;
    struct cuda_context *ctx = cuda_ctx();
    masked_sum_accumulate_kernel<<<1, MASKED_SUM_THREADS, 0, ctx->stream>>>(acc, x, mask, n);
    CUDA_CHECK_LAUNCH("masked_sum_accumulate_kernel");
}
