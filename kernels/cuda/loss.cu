/* CUDA softmax cross-entropy over the full (possibly padded) vocabulary, and the per-rank pieces
 * of Megatron's vocab-parallel cross-entropy (ops.h). Each row keeps an online max and sum of
 * exponentials in fp32 (Milakov & Gimelshein, "Online normalizer calculation for softmax", 2018),
 * merged in a fixed order; the log-sum-exp of the row gives the loss, and the backward writes
 * (softmax - onehot) * dloss over the 16-bit logits (bf16 or fp16: every kernel is a template on
 * their type T), in place when dlogits aliases logits.
 *
 * These kernels move the most bytes of a GPT step (GPT-2's logits are [B*T, 50304] 16-bit), so each
 * reads a row once, in 16-byte pieces, with several pieces per thread in flight before their math:
 *  - the forward and the statistics: one warp per row;
 *  - the backward given the log-sum-exp (vocab-parallel): one warp per row, one read and one write;
 *  - the backward without it: one block per row that keeps the row in shared memory while it
 *    computes the log-sum-exp, so the logits are still read once (rows up to about 57k columns;
 *    wider rows take the statistics kernel and then the streaming backward).
 * Exponentials are 2^((x - m) log2 e) on the special-function unit (exp2_approx); 50k of them per
 * row would otherwise cost about as much time as the row's bytes. */
#include "kernels/cuda/cuda_common.h"

enum { CE_WARPS = 8 };         /* rows per block of the row-per-warp kernels */
enum { CE_BATCH = 4 };         /* 16-byte pieces a lane loads before their math (2 KB a warp) */
enum { CE_ROW_THREADS = 512 }; /* threads of the shared-memory backward: one row per block */
enum { CE_ROW_BATCH = 8 };     /* its pieces per thread in flight (64 KB a block) */

__device__ __forceinline__ float nan_f(void) { return __int_as_float(0x7fc00000); }

/* A 16-byte piece of eight -inf values of T: the padding of a batch past a row's last piece. */
template <class T> __device__ __forceinline__ uint4 ce_neg_inf_piece(void)
{
    const uint32_t w = lp_bits<T>::neg_inf * 0x10001u;
    return make_uint4(w, w, w, w);
}

/* T's two-lane vector type, for the batch max on packed pairs (__hmax2). */
template <class T> struct ce_pair;
template <> struct ce_pair<bf16> {
    typedef __nv_bfloat162 type;
};
template <> struct ce_pair<f16> {
    typedef __half2 type;
};

/* Piece p (elements [8p, 8p + 8)) of a row of V values as packed 16-bit values; -inf past V. */
template <class T, bool VEC>
__device__ __forceinline__ uint4 ce_piece(const T *row, int64_t p, int64_t V)
{
    if (VEC) return *reinterpret_cast<const uint4 *>(row + 8 * p);
    return lp_load8_raw<T>(row, 8 * p, V, false, lp_bits<T>::neg_inf);
}

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

/* The same merge across the 32 lanes of a warp (butterfly: every lane ends with the result). */
__device__ __forceinline__ void lse_warp_merge(float &m, float &s)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
}

/* Adds B pieces into a running (m, s): the batch max first (on packed 16-bit pairs), so the sum
 * is rescaled at most once per batch and every element costs one exponential. A NaN logit makes s
 * NaN (the loss shows it); -inf elements (the padding) add 0. */
template <class T, int B>
__device__ __forceinline__ void lse_add_pieces(float &m, float &s, const uint4 (&r)[B])
{
    typedef typename ce_pair<T>::type P;
    const uint32_t ninf2 = lp_bits<T>::neg_inf * 0x10001u;
    P mx2 = *reinterpret_cast<const P *>(&ninf2);
#pragma unroll
    for (int b = 0; b < B; b++) {
        const P *h = reinterpret_cast<const P *>(&r[b]);
#pragma unroll
        for (int i = 0; i < 4; i++) mx2 = __hmax2(mx2, h[i]);
    }
    const float bm = fmaxf(__low2float(mx2), __high2float(mx2));
    if (bm > m) {
        s *= exp2_approx((m - bm) * LOG2E_F); /* m = -inf at the start: 0 * 0 */
        m = bm;
    }
    const float ms = m == -INFINITY ? 0.0f : m; /* everything -inf so far: each term is 0 */
#pragma unroll
    for (int b = 0; b < B; b++) {
        float v[8], e[8];
        lp8_unpack<T>(r[b], v);
#pragma unroll
        for (int i = 0; i < 8; i++) e[i] = exp2_approx((v[i] - ms) * LOG2E_F);
        s += ((e[0] + e[1]) + (e[2] + e[3])) + ((e[4] + e[5]) + (e[6] + e[7]));
    }
}

/* The row's max m and sum of exp(x - m) over V columns, by one warp (the same in every lane). */
template <class T, bool VEC>
__device__ void warp_row_max_sumexp(const T *row, int64_t V, float *m_out, float *s_out)
{
    const int lane = threadIdx.x % 32;
    const int64_t pieces = (V + 7) / 8;
    const uint4 pad = ce_neg_inf_piece<T>();
    float m = -INFINITY, s = 0.0f;
    for (int64_t p0 = lane; p0 < pieces; p0 += 32 * CE_BATCH) {
        uint4 r[CE_BATCH];
#pragma unroll
        for (int b = 0; b < CE_BATCH; b++) {
            const int64_t p = p0 + 32 * b;
            r[b] = p < pieces ? ce_piece<T, VEC>(row, p, V) : pad;
        }
        lse_add_pieces<T, CE_BATCH>(m, s, r);
    }
    lse_warp_merge(m, s);
    *m_out = m;
    *s_out = s;
}

__device__ __forceinline__ int64_t ce_warp_row(void)
{
    return (int64_t)blockIdx.x * CE_WARPS + threadIdx.x / 32;
}

template <class T, bool VEC>
static __global__ void __launch_bounds__(CE_WARPS * 32)
    cross_entropy_forward_kernel(float *losses, const T *logits, const int32_t *targets, int64_t N,
                                 int64_t V)
{
    const int64_t n = ce_warp_row();
    if (n >= N) return;
    const T *row = logits + n * V;
    float m, s;
    warp_row_max_sumexp<T, VEC>(row, V, &m, &s);
    if (threadIdx.x % 32 == 0) {
        int32_t t = targets[n];
        losses[n] = t >= 0 && t < V ? m + logf(s) - lp_to_f32(row[t]) : nan_f();
    }
}

/* lse[n] = log-sum-exp of row n: the statistics of a backward whose rows do not fit in shared
 * memory. */
template <class T, bool VEC>
static __global__ void __launch_bounds__(CE_WARPS * 32)
    row_lse_kernel(float *lse, const T *logits, int64_t N, int64_t V)
{
    const int64_t n = ce_warp_row();
    if (n >= N) return;
    float m, s;
    warp_row_max_sumexp<T, VEC>(logits + n * V, V, &m, &s);
    if (threadIdx.x % 32 == 0) lse[n] = m + logf(s);
}

/* dlogits[n, v] = (exp(logits[n, v] - lse[n]) - [v + start == targets[n]]) * dlosses[n] for the 8
 * values of piece p, stored (t: the target's column in this row, or outside it). */
template <class T, bool VEC>
__device__ __forceinline__ void ce_grad_piece(T *drow, int64_t p, int64_t V, uint4 raw, float z, float g,
                                              int64_t t)
{
    float v[8];
    lp8_unpack<T>(raw, v);
#pragma unroll
    for (int i = 0; i < 8; i++) v[i] = exp2_approx((v[i] - z) * LOG2E_F);
    const int64_t d = t - 8 * p;
    if (d >= 0 && d < 8) { /* one piece of the row: the compare stays off the other pieces' path */
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (i == d) v[i] -= 1.0f;
    }
#pragma unroll
    for (int i = 0; i < 8; i++) v[i] *= g;
    if (VEC)
        lp8_store<T>(drow + 8 * p, v);
    else
        lp_store8<T>(drow, 8 * p, V, false, v);
}

/* The backward given lse: one warp per row, each piece read and then written by the same lane (so
 * dlogits may alias logits). */
template <class T, bool VEC>
static __global__ void __launch_bounds__(CE_WARPS * 32)
    cross_entropy_backward_lse_kernel(T *dlogits, const T *logits, const int32_t *targets,
                                      int64_t start, const float *lse, const float *dlosses,
                                      int64_t N, int64_t V)
{
    const int64_t n = ce_warp_row();
    if (n >= N) return;
    const int lane = threadIdx.x % 32;
    const int64_t pieces = (V + 7) / 8, t = (int64_t)targets[n] - start;
    const T *row = logits + n * V;
    T *drow = dlogits + n * V;
    const float z = lse[n], g = dlosses[n];
    for (int64_t p0 = lane; p0 < pieces; p0 += 32 * CE_BATCH) {
        uint4 r[CE_BATCH];
#pragma unroll
        for (int b = 0; b < CE_BATCH; b++)
            if (p0 + 32 * b < pieces) r[b] = ce_piece<T, VEC>(row, p0 + 32 * b, V);
#pragma unroll
        for (int b = 0; b < CE_BATCH; b++)
            if (p0 + 32 * b < pieces) ce_grad_piece<T, VEC>(drow, p0 + 32 * b, V, r[b], z, g, t);
    }
}

/* The backward without a saved lse, reading the logits once: a block loads its row into shared
 * memory while it sums the row's exponentials, merges its warps' (max, sum) in warp order, then
 * writes the gradient from shared memory. Two blocks share an SM (about 100 KB each for GPT-2's
 * vocabulary), so one loads while the other writes. Every read of the row ends before the barrier
 * that precedes the first write, so dlogits may alias logits. With losses, the row's loss too
 * (the forward and backward in one read of the logits). */
template <class T, bool VEC>
__device__ __forceinline__ void ce_row_block(int64_t n, T *dlogits, float *losses, const T *logits,
                                             const int32_t *targets, const float *dlosses,
                                             int64_t V, uint4 *row_pieces)
{
    __shared__ float warp_m[CE_ROW_THREADS / 32], warp_s[CE_ROW_THREADS / 32], row_lse;
    const int64_t pieces = (V + 7) / 8;
    const T *row = logits + n * V;
    const uint4 pad = ce_neg_inf_piece<T>();
    float m = -INFINITY, s = 0.0f;
    for (int64_t p0 = threadIdx.x; p0 < pieces; p0 += CE_ROW_THREADS * CE_ROW_BATCH) {
        uint4 r[CE_ROW_BATCH];
#pragma unroll
        for (int b = 0; b < CE_ROW_BATCH; b++) {
            const int64_t p = p0 + (int64_t)CE_ROW_THREADS * b;
            r[b] = p < pieces ? ce_piece<T, VEC>(row, p, V) : pad;
        }
#pragma unroll
        for (int b = 0; b < CE_ROW_BATCH; b++) {
            const int64_t p = p0 + (int64_t)CE_ROW_THREADS * b;
            if (p < pieces) row_pieces[p] = r[b];
        }
        lse_add_pieces<T, CE_ROW_BATCH>(m, s, r);
    }
    lse_warp_merge(m, s);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        warp_m[warp] = m;
        warp_s[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
        m = lane < CE_ROW_THREADS / 32 ? warp_m[lane] : -INFINITY;
        s = lane < CE_ROW_THREADS / 32 ? warp_s[lane] : 0.0f;
        lse_warp_merge(m, s);
        if (lane == 0) row_lse = m + logf(s);
        if (lane == 0 && losses) { /* lse - the target's logit, from the row in shared memory */
            const int64_t tt = targets[n];
            float v[8];
            if (tt >= 0 && tt < V) lp8_unpack<T>(row_pieces[tt / 8], v);
            losses[n] = tt >= 0 && tt < V ? row_lse - v[tt % 8] : nan_f();
        }
    }
    __syncthreads();
    const float z = row_lse, g = dlosses[n];
    const int64_t t = targets[n];
    T *drow = dlogits + n * V;
    for (int64_t p = threadIdx.x; p < pieces; p += CE_ROW_THREADS)
        ce_grad_piece<T, VEC>(drow, p, V, row_pieces[p], z, g, t);
}

/* One row a block (grid N); or, with gate, nothing unless *gate is set, and then the rows in turn
 * by a smaller grid, each also setting row_scale[n] = 1 (output_layer_ce.cu's fallback, launched
 * in every step: most of the time its few blocks return at once). */
template <class T, bool VEC>
static __global__ void __launch_bounds__(CE_ROW_THREADS, 2)
    cross_entropy_backward_row_kernel(T *dlogits, float *losses, const T *logits,
                                      const int32_t *targets, const float *dlosses, int64_t N,
                                      int64_t V, const int *gate, float *row_scale)
{
    extern __shared__ uint4 row_pieces[];
    if (!gate) {
        ce_row_block<T, VEC>(blockIdx.x, dlogits, losses, logits, targets, dlosses, V, row_pieces);
        return;
    }
    if (*(volatile const int *)gate == 0) return; /* the same for every thread */
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        if (threadIdx.x == 0) row_scale[n] = 1.0f;
        ce_row_block<T, VEC>(n, dlogits, losses, logits, targets, dlosses, V, row_pieces);
        __syncthreads(); /* the row's last reads of row_pieces before the next row's writes */
    }
}

/* 16-byte pieces for the whole of every row: V % 8 == 0 and aligned rows. */
static bool ce_vec(int64_t V, const void *a, const void *b)
{
    return V % 8 == 0 && cuda_aligned16(a) && cuda_aligned16(b);
}

static unsigned ce_warp_blocks(int64_t N)
{
    int64_t b = (N + CE_WARPS - 1) / CE_WARPS;
    CHECK(b <= 0x7fffffff);
    return (unsigned)b;
}

template <class T>
static void ce_forward(float *losses, const T *logits, const int32_t *targets, int64_t N, int64_t V)
{
    cudaStream_t st = cuda_ctx()->stream;
    unsigned blocks = ce_warp_blocks(N);
    if (ce_vec(V, logits, logits))
        cross_entropy_forward_kernel<T, true>
            <<<blocks, CE_WARPS * 32, 0, st>>>(losses, logits, targets, N, V);
    else
        cross_entropy_forward_kernel<T, false>
            <<<blocks, CE_WARPS * 32, 0, st>>>(losses, logits, targets, N, V);
    CUDA_CHECK_LAUNCH("cross_entropy_forward_kernel");
}

void cuda_cross_entropy_forward(struct tensor losses, struct tensor logits, struct tensor targets)
{
    const char *op = "cuda_cross_entropy_forward";
    cuda_need(op, "losses", losses, DT_F32);
    enum dtype dt = cuda_need_lp(op, "logits", logits);
    cuda_need(op, "targets", targets, DT_I32);
    int64_t N = logits.shape[0], V = logits.shape[1];
    if (N == 0) return;
    CUDA_LP_DISPATCH(dt, ce_forward<T>((float *)losses.data, (const T *)logits.data,
                                       (const int32_t *)targets.data, N, V));
}

/* The backward given lse (device fp32 [N]). */
template <class T>
static void ce_backward_lse(T *dlogits, const T *logits, const int32_t *targets, int64_t start,
                            const float *lse, const float *dlosses, int64_t N, int64_t V)
{
    cudaStream_t st = cuda_ctx()->stream;
    if (ce_vec(V, logits, dlogits))
        cross_entropy_backward_lse_kernel<T, true><<<ce_warp_blocks(N), CE_WARPS * 32, 0, st>>>(
            dlogits, logits, targets, start, lse, dlosses, N, V);
    else
        cross_entropy_backward_lse_kernel<T, false><<<ce_warp_blocks(N), CE_WARPS * 32, 0, st>>>(
            dlogits, logits, targets, start, lse, dlosses, N, V);
    CUDA_CHECK_LAUNCH("cross_entropy_backward_lse_kernel");
}

/* Dynamic shared memory a block of cross_entropy_backward_row_kernel may take so that two fit on
 * an SM, beside their static shared memory and the driver's reserve. */
static size_t ce_row_smem_limit(void)
{
    int dev = cuda_ctx()->device, per_sm = 0, per_block = 0, reserved = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, dev));
    const int static_bytes = 256; /* warp_m, warp_s, row_lse, rounded up */
    int two = per_sm / 2 - reserved - static_bytes;
    return (size_t)(two < per_block ? two : per_block);
}

/* Launches the shared-memory backward; false when the row does not fit (16 bytes a piece of 8
 * values, for either 16-bit type). */
template <class T, bool VEC>
static bool ce_backward_row(T *dlogits, float *losses, const T *logits, const int32_t *targets,
                            const float *dlosses, int64_t N, int64_t V, const int *gate = NULL,
                            float *row_scale = NULL)
{
    const size_t bytes = (size_t)((V + 7) / 8) * 16;
    if (bytes > ce_row_smem_limit()) return false;
    auto kernel = cross_entropy_backward_row_kernel<T, VEC>;
    CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                    cudaSharedmemCarveoutMaxShared));
    const int64_t few = 2 * (int64_t)cuda_ctx()->sm_count, grid = gate && N > few ? few : N;
    kernel<<<(unsigned)grid, CE_ROW_THREADS, bytes, cuda_ctx()->stream>>>(
        dlogits, losses, logits, targets, dlosses, N, V, gate, row_scale);
    CUDA_CHECK_LAUNCH("cross_entropy_backward_row_kernel");
    return true;
}

/* lse[n] = log-sum-exp of row n, then the backward given it: rows too wide for shared memory. */
template <class T>
static void ce_backward_wide(T *dlogits, const T *logits, const int32_t *targets, const float *dlosses,
                             int64_t N, int64_t V)
{
    float *lse = (float *)cuda_scratch((size_t)N * sizeof(float));
    cudaStream_t st = cuda_ctx()->stream;
    if (ce_vec(V, logits, logits))
        row_lse_kernel<T, true><<<ce_warp_blocks(N), CE_WARPS * 32, 0, st>>>(lse, logits, N, V);
    else
        row_lse_kernel<T, false><<<ce_warp_blocks(N), CE_WARPS * 32, 0, st>>>(lse, logits, N, V);
    CUDA_CHECK_LAUNCH("row_lse_kernel");
    ce_backward_lse<T>(dlogits, logits, targets, 0, lse, dlosses, N, V);
}

/* The backward, and with losses present the forward too: one read of each row where it fits in
 * shared memory; otherwise the losses (when asked, before the gradient overwrites the logits),
 * the log-sum-exp, then the gradient. */
static void ce_backward_op(const char *op, struct tensor losses, struct tensor dlogits, struct tensor logits,
                           struct tensor targets, struct tensor dlosses)
{
    enum dtype dt = cuda_need_lp(op, "dlogits", dlogits);
    cuda_need(op, "logits", logits, dt);
    cuda_need(op, "targets", targets, DT_I32);
    cuda_need(op, "dlosses", dlosses, DT_F32);
    int64_t N = logits.shape[0], V = logits.shape[1];
    if (N == 0) return;
    CHECK(N <= 0x7fffffff);
    void *dp = dlogits.data;
    const void *xp = logits.data;
    const int32_t *tp = (const int32_t *)targets.data;
    const float *gp = (const float *)dlosses.data;
    float *lp = tensor_present(losses) ? (float *)losses.data : NULL;
    bool done = false;
    CUDA_LP_DISPATCH(dt, done = ce_vec(V, xp, dp)
                                    ? ce_backward_row<T, true>((T *)dp, lp, (const T *)xp, tp, gp, N, V)
                                    : ce_backward_row<T, false>((T *)dp, lp, (const T *)xp, tp, gp, N, V));
    if (done) return;
    if (lp) cuda_cross_entropy_forward(losses, logits, targets);
    /* rows too wide for shared memory: the log-sum-exp first, then one more read of the logits */
    CUDA_LP_DISPATCH(dt, ce_backward_wide<T>((T *)dp, (const T *)xp, tp, gp, N, V));
}

void cuda_cross_entropy_backward(struct tensor dlogits, struct tensor logits,
                                 struct tensor targets, struct tensor dlosses)
{
    ce_backward_op("cuda_cross_entropy_backward", tensor_none(), dlogits, logits, targets, dlosses);
}

void cuda_cross_entropy_forward_backward(struct tensor losses, struct tensor dlogits, struct tensor logits,
                                         struct tensor targets, struct tensor dlosses)
{
    cuda_need("cuda_cross_entropy_forward_backward", "losses", losses, DT_F32);
    ce_backward_op("cuda_cross_entropy_forward_backward", losses, dlogits, logits, targets, dlosses);
}

bool cuda_cross_entropy_row_fits(int64_t V)
{
    return (size_t)((V + 7) / 8) * 16 <= ce_row_smem_limit();
}

void cuda_cross_entropy_forward_backward_if(const int *flag, float *losses, float *row_scale,
                                            bf16 *logits, const int32_t *targets,
                                            const float *dlosses, int64_t N, int64_t V)
{
    CHECK(N > 0 && N <= 0x7fffffff);
    bool launched = ce_vec(V, logits, logits)
                        ? ce_backward_row<bf16, true>(logits, losses, logits, targets, dlosses, N,
                                                      V, flag, row_scale)
                        : ce_backward_row<bf16, false>(logits, losses, logits, targets, dlosses, N,
                                                       V, flag, row_scale);
    if (!launched)
        BUG("cuda_cross_entropy_forward_backward_if: rows of %lld do not fit", (long long)V);
}

/* ---- vocab-parallel cross-entropy (ops.h): per-rank statistics the caller combines ---- */

template <class T, bool VEC>
static __global__ void __launch_bounds__(CE_WARPS * 32)
    vp_stats_kernel(float *row_max, float *sum_exp, float *target_logit, const T *logits,
                    const int32_t *targets, int64_t start, int64_t N, int64_t V)
{
    const int64_t n = ce_warp_row();
    if (n >= N) return;
    const T *row = logits + n * V;
    float m, s;
    warp_row_max_sumexp<T, VEC>(row, V, &m, &s);
    if (threadIdx.x % 32 == 0) {
        int64_t t = (int64_t)targets[n] - start;
        row_max[n] = m;
        sum_exp[n] = s;
        target_logit[n] = t >= 0 && t < V ? lp_to_f32(row[t]) : 0.0f;
    }
}

template <class T>
static void vp_stats(float *row_max, float *sum_exp, float *target_logit, const T *logits,
                     const int32_t *targets, int64_t start, int64_t N, int64_t V)
{
    cudaStream_t st = cuda_ctx()->stream;
    if (ce_vec(V, logits, logits))
        vp_stats_kernel<T, true><<<ce_warp_blocks(N), CE_WARPS * 32, 0, st>>>(
            row_max, sum_exp, target_logit, logits, targets, start, N, V);
    else
        vp_stats_kernel<T, false><<<ce_warp_blocks(N), CE_WARPS * 32, 0, st>>>(
            row_max, sum_exp, target_logit, logits, targets, start, N, V);
    CUDA_CHECK_LAUNCH("vp_stats_kernel");
}

void cuda_vocab_parallel_ce_stats(struct tensor row_max, struct tensor sum_exp,
                                  struct tensor target_logit, struct tensor logits,
                                  struct tensor targets, int64_t vocab_start)
{
    const char *op = "cuda_vocab_parallel_ce_stats";
    cuda_need(op, "row_max", row_max, DT_F32);
    cuda_need(op, "sum_exp", sum_exp, DT_F32);
    cuda_need(op, "target_logit", target_logit, DT_F32);
    enum dtype dt = cuda_need_lp(op, "logits", logits);
    cuda_need(op, "targets", targets, DT_I32);
    int64_t N = logits.shape[0], V = logits.shape[1];
    if (N == 0) return;
    float *mp = (float *)row_max.data, *sp = (float *)sum_exp.data;
    float *tlp = (float *)target_logit.data;
    const int32_t *tp = (const int32_t *)targets.data;
    CUDA_LP_DISPATCH(dt, vp_stats<T>(mp, sp, tlp, (const T *)logits.data, tp, vocab_start, N, V));
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
    enum dtype dt = cuda_need_lp(op, "dlogits", dlogits);
    cuda_need(op, "logits", logits, dt);
    cuda_need(op, "targets", targets, DT_I32);
    cuda_need(op, "lse", lse, DT_F32);
    cuda_need(op, "dlosses", dlosses, DT_F32);
    int64_t N = logits.shape[0], V = logits.shape[1];
    if (N == 0) return;
    CUDA_LP_DISPATCH(dt, ce_backward_lse<T>((T *)dlogits.data, (const T *)logits.data,
                                            (const int32_t *)targets.data, vocab_start,
                                            (const float *)lse.data, (const float *)dlosses.data, N, V));
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
