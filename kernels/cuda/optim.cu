/* CUDA optimizer kernels over flat fp32 buffers: the Adam/AdamW step with the exact per-element
 * expressions of optim/adam.h (each rounded on its own through the _rn intrinsics, so no fused
 * multiply-add changes a bit and the result equals the CPU's), over one range or, in one launch,
 * over every piece of a model with the 16-bit weight copy written in the same pass; SGD with
 * momentum (optim/sgd.h) the same way; the
 * deterministic sum of squares that gradient clipping needs; the precision conversions. */
#include <math.h>

#include "kernels/cuda/cuda_common.h"

/* ---- Adam ---- */

struct adam_consts {
    float b1, b2, one_minus_b1, one_minus_b2, eps, lr, wd, bc1, bc2;
    bool decoupled;
};

/* optim/adam.h's contract, line by line, for one element with weight decay wd: the new
 * parameter; the moments are updated in place. */
__device__ __forceinline__ float adam_element(float p, float g, float *exp_avg, float *exp_avg_sq,
                                              const struct adam_consts &k, float wd)
{
    if (!k.decoupled) g = __fadd_rn(g, __fmul_rn(wd, p));
    const float m = __fadd_rn(__fmul_rn(k.b1, *exp_avg), __fmul_rn(k.one_minus_b1, g));
    const float v = __fadd_rn(__fmul_rn(k.b2, *exp_avg_sq), __fmul_rn(__fmul_rn(k.one_minus_b2, g), g));
    *exp_avg = m;
    *exp_avg_sq = v;
    const float denom = __fadd_rn(__fsqrt_rn(__fdiv_rn(v, k.bc2)), k.eps);
    float update = __fdiv_rn(__fdiv_rn(m, k.bc1), denom);
    if (k.decoupled) update = __fadd_rn(update, __fmul_rn(wd, p));
    return __fsub_rn(p, __fmul_rn(k.lr, update));
}

static __global__ void adam_kernel(float *param, const float *grad, float *exp_avg,
                                   float *exp_avg_sq, int64_t n, struct adam_consts k)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        param[i] = adam_element(param[i], grad[i], &exp_avg[i], &exp_avg_sq[i], k, k.wd);
}

/* The bias correction as apex and the CPU compute it: float beta raised in double, rounded once. */
static float adam_bias_correction(float beta, int64_t step)
{
    return (float)(1.0 - pow((double)beta, (double)step));
}

static struct adam_consts adam_consts_of(double lr, double weight_decay, struct adam_params ap, int64_t step)
{
    struct adam_consts k;
    k.b1 = (float)ap.beta1;
    k.b2 = (float)ap.beta2;
    k.one_minus_b1 = 1.0f - k.b1;
    k.one_minus_b2 = 1.0f - k.b2;
    k.eps = (float)ap.eps;
    k.lr = (float)lr;
    k.wd = (float)weight_decay;
    k.bc1 = adam_bias_correction(k.b1, step);
    k.bc2 = adam_bias_correction(k.b2, step);
    k.decoupled = ap.decoupled_weight_decay;
    return k;
}

void cuda_adam_update(float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                      int64_t n, double lr, double weight_decay, struct adam_params ap,
                      int64_t step)
{
    CHECK(step >= 1);
    CHECK(n >= 0);
    if (n == 0) return;
    struct adam_consts k = adam_consts_of(lr, weight_decay, ap, step);
    struct cuda_context *ctx = cuda_ctx();
    adam_kernel<<<cuda_blocks(n, 256), 256, 0, ctx->stream>>>(param, grad, exp_avg, exp_avg_sq, n,
                                                               k);
    CUDA_CHECK_LAUNCH("adam_kernel");
}

/* The clip factor of a step (clip_coeff in fp32) and whether the step is taken at all: a gradient
 * norm that is not finite skips it. */
__device__ __forceinline__ bool step_clip(const struct cuda_step_scalars *s, bool *clip, float *coeff)
{
    const double norm = sqrt(s->norm_sq);
    if (!isfinite(norm)) return false;
    const double c = s->max_norm / (norm + 1.0e-6);
    *clip = s->max_norm > 0.0 && c < 1.0;
    *coeff = (float)c;
    return true;
}

/* One block a chunk: the chunk's parameters and moments updated, and the 16-bit copy of each new
 * parameter written beside it (when lp is not NULL). A chunk whose weights and moments start at a
 * multiple of 4 elements moves them 16 bytes at a time, ADAM_GROUPS groups of 4 a thread with all
 * their loads issued first (the buffers never overlap: the loads of one group do not wait for the
 * stores of the last); the rest, and other chunks, one at a time. A stand-alone kernel of this
 * shape (blocks of 512 threads, chunks of 8192) took 15.7 ms over 1.5B parameters on an H100
 * against 16.3 with one group, 256 threads and chunks of 32768 (as before): both at the rate of
 * the same call's device copy (16.5 ms for Adam's 30 bytes a parameter). */
enum { ADAM_THREADS = 512, ADAM_GROUPS = 2 };

template <class T>
static __global__ void __launch_bounds__(ADAM_THREADS)
    adam_chunks_kernel(float *__restrict__ weights, const float *__restrict__ grads,
                       float *__restrict__ exp_avg, float *__restrict__ exp_avg_sq,
                       const struct cuda_optim_chunk *__restrict__ chunks, struct adam_consts k,
                       const struct cuda_step_scalars *__restrict__ s, T *__restrict__ lp)
{
    bool clip = false;
    float coeff = 1.0f;
    if (!step_clip(s, &clip, &coeff)) return;
    k.lr = s->lr; /* the step's own values: the rest of k is the run's */
    k.wd = s->wd;
    k.bc1 = s->bc1;
    k.bc2 = s->bc2;
    const struct cuda_optim_chunk c = chunks[blockIdx.x];
    const float wd = c.decay ? k.wd : 0.0f;
    int done = 0;
    if (c.param % 4 == 0 && c.state % 4 == 0) {
        float4 *w4 = reinterpret_cast<float4 *>(weights + c.param);
        const float4 *g4 = reinterpret_cast<const float4 *>(grads + c.param);
        float4 *m4 = reinterpret_cast<float4 *>(exp_avg + c.state);
        float4 *v4 = reinterpret_cast<float4 *>(exp_avg_sq + c.state);
        const int n4 = c.len / 4;
        for (int j0 = threadIdx.x; j0 < n4; j0 += ADAM_GROUPS * ADAM_THREADS) {
            float4 pw[ADAM_GROUPS], pg[ADAM_GROUPS], pm[ADAM_GROUPS], pv[ADAM_GROUPS];
#pragma unroll
            for (int q = 0; q < ADAM_GROUPS; q++) {
                const int j = j0 + q * ADAM_THREADS;
                if (j >= n4) continue;
                pw[q] = w4[j], pg[q] = g4[j], pm[q] = m4[j], pv[q] = v4[j];
            }
#pragma unroll
            for (int q = 0; q < ADAM_GROUPS; q++) {
                const int j = j0 + q * ADAM_THREADS;
                if (j >= n4) continue;
                float p[4] = {pw[q].x, pw[q].y, pw[q].z, pw[q].w};
                float g[4] = {pg[q].x, pg[q].y, pg[q].z, pg[q].w};
                float m[4] = {pm[q].x, pm[q].y, pm[q].z, pm[q].w};
                float v[4] = {pv[q].x, pv[q].y, pv[q].z, pv[q].w};
#pragma unroll
                for (int e = 0; e < 4; e++)
                    p[e] = adam_element(p[e], clip ? __fmul_rn(g[e], coeff) : g[e], &m[e], &v[e], k, wd);
                w4[j] = make_float4(p[0], p[1], p[2], p[3]);
                m4[j] = make_float4(m[0], m[1], m[2], m[3]);
                v4[j] = make_float4(v[0], v[1], v[2], v[3]);
                if (lp)
                    *reinterpret_cast<uint2 *>(lp + c.param + 4 * (int64_t)j) =
                        make_uint2(lp_pack2<T>(p[0], p[1]), lp_pack2<T>(p[2], p[3]));
            }
        }
        done = n4 * 4;
    }
    for (int i = done + threadIdx.x; i < c.len; i += blockDim.x) {
        const int64_t w = c.param + i, st = c.state + i;
        const float g = clip ? __fmul_rn(grads[w], coeff) : grads[w];
        const float p = adam_element(weights[w], g, &exp_avg[st], &exp_avg_sq[st], k, wd);
        weights[w] = p;
        if (lp) lp[w] = lp_from_f32<T>(p);
    }
}

void cuda_step_scalars_fill(struct cuda_step_scalars *s, double lr, double weight_decay, struct adam_params ap,
                            int64_t step, double max_norm, double loss_scale)
{
    CHECK(step >= 1);
    struct adam_consts k = adam_consts_of(lr, weight_decay, ap, step);
    memset(s, 0, sizeof *s);
    s->max_norm = max_norm;
    s->inv_loss_scale = (float)(1.0 / loss_scale);
    s->lr = k.lr;
    s->wd = k.wd;
    s->bc1 = k.bc1;
    s->bc2 = k.bc2;
    s->first_step = step == 1;
}

void cuda_adam_update_chunks(float *weights, const float *grads, float *exp_avg, float *exp_avg_sq,
                             const struct cuda_optim_chunk *chunks, int64_t num_chunks, struct adam_params ap,
                             const struct cuda_step_scalars *s, void *lp, enum dtype lp_dtype)
{
    CHECK(num_chunks >= 0 && num_chunks <= 0x7fffffff);
    if (num_chunks == 0) return;
    struct cuda_context *ctx = cuda_ctx();
    if (!lp) lp_dtype = DT_BF16; /* no copy written: any instantiation */
    const struct adam_consts k = adam_consts_of(0.0, 0.0, ap, 1); /* lr, wd, bc1, bc2 come from s */
    CUDA_LP_DISPATCH(lp_dtype, adam_chunks_kernel<T><<<(unsigned)num_chunks, ADAM_THREADS, 0, ctx->stream>>>(
                                   weights, grads, exp_avg, exp_avg_sq, chunks, k, s, (T *)lp));
    CUDA_CHECK_LAUNCH("adam_chunks_kernel");
}

/* ---- SGD ---- */

/* optim/sgd.h's contract per element, over the chunks (one block each), the 16-bit copy beside. */
template <class T>
static __global__ void sgd_chunks_kernel(float *weights, const float *grads, float *momentum_buf,
                                         const struct cuda_optim_chunk *chunks, float mu,
                                         const struct cuda_step_scalars *s, T *lp)
{
    bool clip = false;
    float coeff = 1.0f;
    if (!step_clip(s, &clip, &coeff)) return;
    const float lr = s->lr;
    const bool first_step = s->first_step != 0;
    const struct cuda_optim_chunk c = chunks[blockIdx.x];
    const float chunk_wd = c.decay ? s->wd : 0.0f;
    for (int i = threadIdx.x; i < c.len; i += blockDim.x) {
        const int64_t w = c.param + i, st = c.state + i;
        const float p = weights[w];
        float g = clip ? __fmul_rn(grads[w], coeff) : grads[w];
        if (chunk_wd != 0.0f) g = __fadd_rn(g, __fmul_rn(chunk_wd, p)); /* skipped at zero, as torch */
        if (mu != 0.0f) {
            const float buf = first_step ? g : __fadd_rn(__fmul_rn(mu, momentum_buf[st]), g);
            momentum_buf[st] = buf;
            g = buf;
        }
        const float q = __fsub_rn(p, __fmul_rn(lr, g));
        weights[w] = q;
        if (lp) lp[w] = lp_from_f32<T>(q);
    }
}

void cuda_sgd_update_chunks(float *weights, const float *grads, float *momentum_buf,
                            const struct cuda_optim_chunk *chunks, int64_t num_chunks, double momentum,
                            const struct cuda_step_scalars *s, void *lp, enum dtype lp_dtype)
{
    CHECK(num_chunks >= 0 && num_chunks <= 0x7fffffff);
    CHECK(momentum == 0.0 || momentum_buf != NULL);
    if (num_chunks == 0) return;
    struct cuda_context *ctx = cuda_ctx();
    if (!lp) lp_dtype = DT_BF16; /* no copy written: any instantiation */
    CUDA_LP_DISPATCH(lp_dtype, sgd_chunks_kernel<T><<<(unsigned)num_chunks, 256, 0, ctx->stream>>>(
                                   weights, grads, momentum_buf, chunks, (float)momentum, s, (T *)lp));
    CUDA_CHECK_LAUNCH("sgd_chunks_kernel");
}

/* ---- sum of squares ---- */

/* A fixed number of partial sums, so the reduction order depends on n only, never on the GPU. */
enum { SS_BLOCKS = 1024, SS_THREADS = 256 };

/* Block-wide sum of one double per thread in a fixed tree order; thread 0 gets the total. */
__device__ double block_sum_double(double v)
{
    __shared__ double sh[1024];
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) sh[threadIdx.x] += sh[threadIdx.x + half];
        __syncthreads();
    }
    return sh[0];
}

/* Block b sums the squares of its contiguous span [n*b/B, n*(b+1)/B), each square exact in double.
 * The span's first elements up to a 16-byte boundary go one to a thread; then thread t takes the
 * float4s t, t + SS_THREADS, ..., SS_UNROLL of them loaded before any is added (one 4-byte load
 * a thread at a time took 3.2 ms over 1.5B gradients on an H100, where the copy rate allows 2.2);
 * the rest one to a thread again. The order depends on n and on x's address modulo 16 only. */
enum { SS_UNROLL = 4 };

static __global__ void __launch_bounds__(SS_THREADS)
    sum_squares_partial_kernel(double *partials, const float *__restrict__ x, int64_t n)
{
    int64_t lo = n / SS_BLOCKS * blockIdx.x + n % SS_BLOCKS * blockIdx.x / SS_BLOCKS;
    int64_t b1 = blockIdx.x + 1;
    int64_t hi = n / SS_BLOCKS * b1 + n % SS_BLOCKS * b1 / SS_BLOCKS;
    int64_t head = (int64_t)((16 - (uintptr_t)(x + lo) % 16) % 16 / 4);
    if (head > hi - lo) head = hi - lo;
    const int64_t n4 = (hi - lo - head) / 4, body = lo + head;
    const float4 *x4 = reinterpret_cast<const float4 *>(x + body);
    double s = 0.0;
    if (threadIdx.x < head) {
        double v = x[lo + threadIdx.x];
        s += v * v;
    }
    for (int64_t j = threadIdx.x; j < n4; j += (int64_t)SS_THREADS * SS_UNROLL) {
        float4 q[SS_UNROLL];
#pragma unroll
        for (int u = 0; u < SS_UNROLL; u++)
            if (j + u * SS_THREADS < n4) q[u] = x4[j + u * SS_THREADS];
#pragma unroll
        for (int u = 0; u < SS_UNROLL; u++) {
            if (j + u * SS_THREADS >= n4) continue;
            double a = q[u].x, b = q[u].y, c = q[u].z, d = q[u].w;
            s += a * a;
            s += b * b;
            s += c * c;
            s += d * d;
        }
    }
    for (int64_t i = body + 4 * n4 + threadIdx.x; i < hi; i += SS_THREADS) {
        double v = x[i];
        s += v * v;
    }
    double total = block_sum_double(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

/* *out = the partials' sum, or *out += it (add). */
static __global__ void sum_squares_finish_kernel(double *out, const double *partials, bool add)
{
    double total = block_sum_double(partials[threadIdx.x]);
    if (threadIdx.x == 0) *out = add ? *out + total : total;
}

/* The partial sums into scratch, their sum into (or added to) *out. */
static void sum_squares_queue(double *out, const float *x, int64_t n, bool add)
{
    struct cuda_context *ctx = cuda_ctx();
    double *partials = (double *)cuda_scratch(SS_BLOCKS * sizeof(double));
    sum_squares_partial_kernel<<<SS_BLOCKS, SS_THREADS, 0, ctx->stream>>>(partials, x, n);
    CUDA_CHECK_LAUNCH("sum_squares_partial_kernel");
    sum_squares_finish_kernel<<<1, SS_BLOCKS, 0, ctx->stream>>>(out, partials, add);
    CUDA_CHECK_LAUNCH("sum_squares_finish_kernel");
}

double cuda_sum_squares(const float *x, int64_t n)
{
    CHECK(n >= 0);
    if (n == 0) return 0.0;
    double *total = (double *)cuda_scratch((SS_BLOCKS + 1) * sizeof(double)) + SS_BLOCKS;
    sum_squares_queue(total, x, n, false);
    double host = 0.0;
    cuda_memcpy_d2h(&host, total, sizeof host);
    return host;
}

void cuda_sum_squares_add(double *acc, const float *x, int64_t n)
{
    CHECK(n >= 0);
    if (n > 0) sum_squares_queue(acc, x, n, true);
}

/* ---- --log-num-zeros-in-grad ---- */

enum { ZEROS_THREADS = 256 };

static __global__ void __launch_bounds__(ZEROS_THREADS)
    count_zeros_kernel(double *acc, const float *__restrict__ g, int64_t n,
                       const struct cuda_step_scalars *__restrict__ s)
{
    bool clip = false;
    float coeff = 1.0f;
    if (!step_clip(s, &clip, &coeff)) return;
    unsigned long long zeros = 0;
    for (int64_t i = blockIdx.x * (int64_t)ZEROS_THREADS + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * ZEROS_THREADS)
        zeros += (clip ? __fmul_rn(g[i], coeff) : g[i]) == 0.0f;
    for (int d = 16; d > 0; d /= 2) zeros += __shfl_down_sync(0xffffffffu, zeros, d);
    __shared__ unsigned long long warps[ZEROS_THREADS / 32];
    if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = zeros;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long block = 0;
        for (int w = 0; w < ZEROS_THREADS / 32; w++) block += warps[w];
        if (block) atomicAdd(acc, (double)block); /* whole numbers below 2^53: exact in any order */
    }
}

void cuda_count_zeros_add(double *acc, const float *g, int64_t n, const struct cuda_step_scalars *s)
{
    CHECK(n >= 0);
    if (n == 0) return;
    struct cuda_context *ctx = cuda_ctx();
    const int64_t want = (n + ZEROS_THREADS - 1) / ZEROS_THREADS, most = 4 * (int64_t)ctx->sm_count;
    const unsigned grid = (unsigned)(want < most ? want : most);
    count_zeros_kernel<<<grid, ZEROS_THREADS, 0, ctx->stream>>>(acc, g, n, s);
    CUDA_CHECK_LAUNCH("count_zeros_kernel");
}

/* ---- the mixed-precision step's glue ---- */

static __global__ void scale_kernel(float *x, int64_t n, float c)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fmul_rn(x[i], c);
}

void cuda_scale_f32(float *x, int64_t n, float c)
{
    if (n <= 0) return;
    struct cuda_context *ctx = cuda_ctx();
    int blocks = (int)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
    scale_kernel<<<blocks, 256, 0, ctx->stream>>>(x, n, c);
    CUDA_CHECK(cudaGetLastError());
}

static __global__ void scale_by_kernel(float *x, int64_t n, const float *c)
{
    const float f = *c;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fmul_rn(x[i], f);
}

void cuda_scale_f32_by(float *x, int64_t n, const float *c)
{
    if (n <= 0) return;
    struct cuda_context *ctx = cuda_ctx();
    int blocks = (int)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
    scale_by_kernel<<<blocks, 256, 0, ctx->stream>>>(x, n, c);
    CUDA_CHECK(cudaGetLastError());
}

/* Round to nearest even into the 16-bit type T, as the CPU's f32_to_bf16 / f32_to_f16 do
 * (kernels/tensor.h); fp16 overflows to infinity. */
template <class T> static __global__ void f32_to_lp_kernel(T *dst, const float *src, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = lp_from_f32<T>(src[i]);
}

void cuda_f32_to_lp(void *dst, const float *src, int64_t n, enum dtype dt)
{
    CHECK(dt == DT_BF16 || dt == DT_F16);
    if (n <= 0) return;
    struct cuda_context *ctx = cuda_ctx();
    int blocks = (int)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
    CUDA_LP_DISPATCH(dt, f32_to_lp_kernel<T><<<blocks, 256, 0, ctx->stream>>>((T *)dst, src, n));
    CUDA_CHECK(cudaGetLastError());
}

/* --grad-reduce-in-bf16's conversions (always bf16, whatever the model's 16-bit type), 4 elements
 * a thread where both sides are aligned for it. */
static __global__ void f32_to_bf16_x4_kernel(bf16 *dst, const float *src, int64_t n4)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
        float4 v = reinterpret_cast<const float4 *>(src)[i];
        __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
        uint2 out;
        out.x = *reinterpret_cast<uint32_t *>(&lo);
        out.y = *reinterpret_cast<uint32_t *>(&hi);
        reinterpret_cast<uint2 *>(dst)[i] = out;
    }
}

static __global__ void bf16_to_f32_kernel(float *dst, const bf16 *src, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}

static __global__ void bf16_to_f32_x4_kernel(float *dst, const bf16 *src, int64_t n4)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
        uint2 in = reinterpret_cast<const uint2 *>(src)[i];
        float2 lo = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&in.x));
        float2 hi = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&in.y));
        reinterpret_cast<float4 *>(dst)[i] = make_float4(lo.x, lo.y, hi.x, hi.y);
    }
}

static int blocks_for(int64_t n) { return (int)((n + 255) / 256 < 8192 ? (n + 255) / 256 : 8192); }

static bool aligned_x4(const void *f32, const void *b16)
{
    return ((uintptr_t)f32 % 16) == 0 && ((uintptr_t)b16 % 8) == 0;
}

void cuda_f32_to_bf16_on(void *stream, void *dst, const float *src, int64_t n)
{
    if (n <= 0) return;
    cudaStream_t s = (cudaStream_t)stream;
    int64_t n4 = aligned_x4(src, dst) ? n / 4 : 0, rest = n - 4 * n4;
    if (n4) f32_to_bf16_x4_kernel<<<blocks_for(n4), 256, 0, s>>>((bf16 *)dst, src, n4);
    if (rest)
        f32_to_lp_kernel<bf16><<<blocks_for(rest), 256, 0, s>>>((bf16 *)dst + 4 * n4, src + 4 * n4, rest);
    CUDA_CHECK(cudaGetLastError());
}

void cuda_bf16_to_f32_on(void *stream, float *dst, const void *src, int64_t n)
{
    if (n <= 0) return;
    cudaStream_t s = (cudaStream_t)stream;
    int64_t n4 = aligned_x4(dst, src) ? n / 4 : 0, rest = n - 4 * n4;
    if (n4) bf16_to_f32_x4_kernel<<<blocks_for(n4), 256, 0, s>>>(dst, (const bf16 *)src, n4);
    if (rest) bf16_to_f32_kernel<<<blocks_for(rest), 256, 0, s>>>(dst + 4 * n4, (const bf16 *)src + 4 * n4, rest);
    CUDA_CHECK(cudaGetLastError());
}
