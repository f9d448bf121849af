/* CUDA LayerNorm and RMSNorm, forward and backward, on 16-bit (bf16 or fp16) rows with fp32
 * statistics. One warp per row walks the row in 8-wide (16-byte) pieces; the variance takes a
 * second pass over the row (it stays in L1/L2), as the CPU reference does. Formulas as in
 * kernels/cpu/norm.c.
 *
 * The backward is one pass over the rows for widths up to 2048 (norm_backward_kernel): dx from
 * the row kept in registers (or in a shared-memory ring where those would spill), and the weight
 * and bias gradients summed in registers over a block's rows into partial rows that a second
 * small kernel adds in a fixed order, so x and dy cross memory once. Wider or unaligned rows take
 * a dx kernel and a separate deterministic column sum (cuda_common.h).
 *
 * Fused with its neighbour in a pre-norm residual stream, the backward adds the residual branch's
 * gradient as it stores dx, and can sum that gradient's columns on the way (the bias gradient of a
 * bias-dropout-add without dropout, whose output gradient it is): a whole pass over [N, C] saved
 * per use. The forward fused with the bias-dropout-add before it is in norm_fused.cu. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/norm_rows.h"

enum { NORM_WARPS = 8 }; /* rows per block */

__device__ __forceinline__ int64_t norm_row(void)
{
    return (int64_t)blockIdx.x * NORM_WARPS + threadIdx.x / 32;
}

template <class T>
static __global__ void layernorm_forward_kernel(T *y, float *mean, float *rstd, const T *x,
                                                const T *w, const T *b, int64_t N, int64_t C,
                                                float eps, bool vec)
{
    int64_t row = norm_row();
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const T *xr = x + row * C;
    float s = 0.0f;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8];
        lp_load8<T>(xr, c, C, vec, v);
        for (int i = 0; i < 8; i++) s += v[i];
    }
    float mu = warp_sum(s) / (float)C;
    float q = 0.0f;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8];
        lp_load8<T>(xr, c, C, vec, v);
        for (int i = 0; i < 8; i++)
            if (c + i < C) q += (v[i] - mu) * (v[i] - mu);
    }
    float r = norm_rstd(warp_sum(q) / (float)C, eps); /* biased variance, as torch */
    if (lane == 0) {
        mean[row] = mu;
        rstd[row] = r;
    }
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8], wv[8], bv[8], o[8];
        lp_load8<T>(xr, c, C, vec, v);
        lp_load8<T>(w, c, C, vec, wv);
        if (b) lp_load8<T>(b, c, C, vec, bv);
        for (int i = 0; i < 8; i++) o[i] = (v[i] - mu) * r * wv[i] + (b ? bv[i] : 0.0f);
        lp_store8<T>(y + row * C, c, C, vec, o);
    }
}

/* o[i] += dres[row, c + i] when there is a residual gradient to add (the fused backwards). */
template <class T>
__device__ __forceinline__ void add_residual_grad(float o[8], const T *dres, int64_t row,
                                                  int64_t c, int64_t C, bool vec)
{
    if (!dres) return;
    float d[8];
    lp_load8<T>(dres + row * C, c, C, vec, d);
    for (int i = 0; i < 8; i++) o[i] += d[i];
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w, xhat = (x - mean) * rstd;
 * plus dres when not NULL (dx may alias dres: each piece is read before it is written). */
template <class T>
static __global__ void layernorm_dx_kernel(T *dx, const T *dy, const T *x, const T *w,
                                           const float *mean, const float *rstd, const T *dres,
                                           int64_t N, int64_t C, bool vec)
{
    int64_t row = norm_row();
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const T *xr = x + row * C, *dyr = dy + row * C;
    float m = mean[row], r = rstd[row], sg = 0.0f, sgx = 0.0f;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8], g[8], wv[8];
        lp_load8<T>(xr, c, C, vec, v);
        lp_load8<T>(dyr, c, C, vec, g);
        lp_load8<T>(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) {
            float gi = g[i] * wv[i];
            sg += gi;
            sgx += gi * ((v[i] - m) * r);
        }
    }
    float mg = warp_sum(sg) / (float)C, mgx = warp_sum(sgx) / (float)C;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8], g[8], wv[8], o[8];
        lp_load8<T>(xr, c, C, vec, v);
        lp_load8<T>(dyr, c, C, vec, g);
        lp_load8<T>(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) o[i] = r * (g[i] * wv[i] - mg - (v[i] - m) * r * mgx);
        add_residual_grad(o, dres, row, c, C, vec);
        lp_store8<T>(dx + row * C, c, C, vec, o);
    }
}

/* dw += sum_n dy * xhat, db += sum_n dy (rows too wide for norm_backward_kernel) */
template <class T> struct load_layernorm_dw_db {
    const T *dy, *x;
    const float *mean, *rstd;
    int64_t C;
    bool vec;
    struct raw {
        uint4 v, g;
    };
    __device__ void fetch(int64_t n, int64_t c0, raw &r) const
    {
        r.v = lp_load8_raw<T>(x + n * C, c0, C, vec, 0);
        r.g = lp_load8_raw<T>(dy + n * C, c0, C, vec, 0);
    }
    __device__ void apply(int64_t n, int64_t, const raw &r, float out[2][8]) const
    {
        float v[8];
        lp8_unpack<T>(r.v, v);
        lp8_unpack<T>(r.g, out[1]);
        float m = mean[n], rs = rstd[n];
        for (int i = 0; i < 8; i++) out[0][i] = out[1][i] * ((v[i] - m) * rs);
    }
};

template <class T>
static __global__ void rmsnorm_forward_kernel(T *y, float *rstd, const T *x, const T *w,
                                              int64_t N, int64_t C, float eps, bool vec)
{
    int64_t row = norm_row();
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const T *xr = x + row * C;
    float q = 0.0f;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8];
        lp_load8<T>(xr, c, C, vec, v);
        for (int i = 0; i < 8; i++) q += v[i] * v[i];
    }
    float r = norm_rstd(warp_sum(q) / (float)C, eps);
    if (lane == 0) rstd[row] = r;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8], wv[8], o[8];
        lp_load8<T>(xr, c, C, vec, v);
        lp_load8<T>(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) o[i] = v[i] * r * wv[i];
        lp_store8<T>(y + row * C, c, C, vec, o);
    }
}

/* dx = rstd * g - x * rstd^3 * mean(g * x), g = dy * w; plus dres when not NULL. */
template <class T>
static __global__ void rmsnorm_dx_kernel(T *dx, const T *dy, const T *x, const T *w,
                                         const float *rstd, const T *dres, int64_t N, int64_t C,
                                         bool vec)
{
    int64_t row = norm_row();
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const T *xr = x + row * C, *dyr = dy + row * C;
    float r = rstd[row], sgx = 0.0f;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8], g[8], wv[8];
        lp_load8<T>(xr, c, C, vec, v);
        lp_load8<T>(dyr, c, C, vec, g);
        lp_load8<T>(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) sgx += g[i] * wv[i] * v[i];
    }
    float k = warp_sum(sgx) / (float)C * r * r * r;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8], g[8], wv[8], o[8];
        lp_load8<T>(xr, c, C, vec, v);
        lp_load8<T>(dyr, c, C, vec, g);
        lp_load8<T>(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) o[i] = r * g[i] * wv[i] - v[i] * k;
        add_residual_grad(o, dres, row, c, C, vec);
        lp_store8<T>(dx + row * C, c, C, vec, o);
    }
}

/* dw += sum_n dy * x * rstd (rows too wide for norm_backward_kernel) */
template <class T> struct load_rmsnorm_dw {
    const T *dy, *x;
    const float *rstd;
    int64_t C;
    bool vec;
    struct raw {
        uint4 v, g;
    };
    __device__ void fetch(int64_t n, int64_t c0, raw &r) const
    {
        r.v = lp_load8_raw<T>(x + n * C, c0, C, vec, 0);
        r.g = lp_load8_raw<T>(dy + n * C, c0, C, vec, 0);
    }
    __device__ void apply(int64_t n, int64_t, const raw &r, float out[1][8]) const
    {
        float v[8], g[8];
        lp8_unpack<T>(r.v, v);
        lp8_unpack<T>(r.g, g);
        float rs = rstd[n];
        for (int i = 0; i < 8; i++) out[0][i] = g[i] * (v[i] * rs);
    }
};

/* ---- the backward in one pass over the rows: dx, and partial rows of dw (and db) ---- */

/* Rows per block of norm_backward_kernel (one partial row of dw / db each): about NB_BLOCKS blocks,
 * about one an SM of an H100, at most NB_MAX_ROWS rows each. Fewer, longer blocks write fewer
 * partial rows and end fewer times: 16384 rows of 1600 (one block an SM) took 89 us in 128 blocks
 * of 128 rows against 97 in 512 of 32; 32768 rows of 1024, 107 us in 256 blocks of 128 against
 * 112 in 512 of 64 (H100). A function of N alone, like every order of the sums. */
enum { NB_BLOCKS = 128, NB_MAX_ROWS = 128 };

static int64_t norm_backward_rows_per_block(int64_t N)
{
    int64_t rows = (N + NB_BLOCKS - 1) / NB_BLOCKS;
    rows = (rows + NORM_WARPS - 1) / NORM_WARPS * NORM_WARPS;
    return rows < NORM_WARPS ? NORM_WARPS : rows > NB_MAX_ROWS ? NB_MAX_ROWS : rows;
}

template <class T> struct norm_bwd_args {
    T *dx;                      /* NULL: no input gradient */
    float *partials;            /* [NOUT][blocks][C]: dw, db (LayerNorm), then dres's sums when
                                   the kernel takes them; NULL: none */
    const T *dy, *x, *w, *dres; /* dres NULL: nothing to add to dx */
    const float *mean, *rstd;   /* mean unused by RMSNorm */
    int64_t N, C;
    int64_t rows; /* rows per block: norm_backward_rows_per_block(N) */
};

/* Blocks per SM norm_backward_kernel asks registers for: two (16 warps) while a lane's pieces and
 * sums fit in 128 registers without spilling (LayerNorm to 768 columns, RMSNorm to 1024), else
 * one; wider rows keep more bytes in flight per warp. */
static constexpr int norm_backward_min_blocks(int pieces, bool rms)
{
    return pieces <= 3 || (rms && pieces <= 4) ? 2 : 1;
}

/* w[c, c + 8) through the read-only cache (every warp reads it for every row: an L1 hit), or
 * zeros when there is no w (only the weight gradients wanted). */
template <class T>
__device__ __forceinline__ uint4 norm_weight_piece(const T *w, int64_t c)
{
    return w ? __ldg(reinterpret_cast<const uint4 *>(w + c)) : make_uint4(0, 0, 0, 0);
}

/* Where norm_backward_kernel keeps a lane's pieces of the row between the row's two steps: in
 * registers, or (RING) in a two-row ring of shared memory filled by cp.async, the warp's next row
 * in flight while it works on this one. The ring where the row's registers and the sums would not
 * fit in 255: LayerNorm with the residual's sums over rows wider than 1536 (at 1600 columns the
 * register version spilled 172 bytes: 0.113-0.116 ms for 16384 rows against 0.102-0.103 through
 * the ring; without the residual's sums the registers were faster, 0.089 against 0.097; H100). */
static constexpr __host__ __device__ bool norm_backward_ring(int pieces, bool rms, bool rsum)
{
    return !rms && rsum && pieces >= 7;
}

/* Bytes of a block's ring: NORM_WARPS warps x 2 rows x (x, dy, dres) x P pieces x 32 lanes x 16. */
static constexpr size_t norm_backward_ring_bytes(int pieces)
{
    return (size_t)NORM_WARPS * 2 * 3 * pieces * 32 * sizeof(uint4);
}

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}

__device__ __forceinline__ void cp_async_commit(void)
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Waits for the lane's copies but those of the group committed last. */
__device__ __forceinline__ void cp_async_wait_but_last(void)
{
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}

/* The lane's slot for piece k of tensor t (0 x, 1 dy, 2 dres) of ring row s. */
template <int P>
__device__ __forceinline__ uint4 *ring_slot(uint4 *ring, int s, int t, int k, int lane)
{
    return ring + ((s * 3 + t) * P + k) * 32 + lane;
}

/* Starts the copies of row n's pieces into ring row s. */
template <class T, int P>
__device__ __forceinline__ void ring_fill(const struct norm_bwd_args<T> &a, uint4 *ring, int s,
                                          int64_t n, int lane, bool dres)
{
#pragma unroll
    for (int k = 0; k < P; k++) {
        const int64_t c = (int64_t)lane * 8 + 256 * k;
        if (c >= a.C) continue;
        cp_async16(ring_slot<P>(ring, s, 0, k, lane), a.x + n * a.C + c);
        cp_async16(ring_slot<P>(ring, s, 1, k, lane), a.dy + n * a.C + c);
        if (dres) cp_async16(ring_slot<P>(ring, s, 2, k, lane), a.dres + n * a.C + c);
    }
}

/* A block takes a.rows rows, one warp per row at a time. Lane l keeps pieces c = 8 l + 256 k,
 * k < P, of the row's x, dy and dres between the row's two steps (its sums, then dx), packed in
 * registers or in the ring (norm_backward_ring), and adds dy * xhat (and dy) into fp32 registers
 * over the block's rows, so dw and db cost no second read of x and dy. With RSUM it also sums
 * dres's columns (needs dx and dres): the bias gradient of the bias-dropout-add whose output
 * gradient dres is, when there is no dropout. At the end the block adds its warps' sums in warp
 * order into its partial row (one for each sum), which cuda_colsum_reduce adds up: every order
 * depends on the shape alone, and the two ways to keep a row give the same bits. The formulas and
 * their order of operations are those of layernorm_dx_kernel / rmsnorm_dx_kernel and the
 * column-sum loads above. Needs C % 8 == 0 and 16-byte aligned rows; dx may alias dres (each
 * piece is read before the same lane writes it). */
template <class T, int P, bool RMS, bool RSUM>
static __global__ void __launch_bounds__(NORM_WARPS * 32, norm_backward_min_blocks(P, RMS))
    norm_backward_kernel(struct norm_bwd_args<T> a)
{
    constexpr bool RING = norm_backward_ring(P, RMS, RSUM);
    extern __shared__ uint4 ring_rows[]; /* norm_backward_ring_bytes(P) when RING, else none */
    __shared__ float red[NORM_WARPS][256];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t C = a.C, n0 = (int64_t)blockIdx.x * a.rows;
    const int64_t n1 = n0 + a.rows < a.N ? n0 + a.rows : a.N;
    const bool has_dres = a.dx && a.dres;
    uint4 *ring = ring_rows + (RING ? (size_t)warp * 2 * 3 * P * 32 : 0);
    float accw[P][8], accb[P][8], accr[RSUM ? P : 1][8];
#pragma unroll
    for (int k = 0; k < P; k++)
#pragma unroll
        for (int i = 0; i < 8; i++) accw[k][i] = accb[k][i] = accr[RSUM ? k : 0][i] = 0.0f;
    float r_next = 0.0f, m_next = 0.0f; /* RING: the next row's rstd and mean, loaded early */
    if (RING) {
        if (n0 + warp < n1) {
            ring_fill<T, P>(a, ring, 0, n0 + warp, lane, has_dres);
            r_next = a.rstd[n0 + warp];
            m_next = RMS ? 0.0f : a.mean[n0 + warp];
        }
        cp_async_commit();
    }
    int s = 0; /* RING: the ring row holding row n */
    for (int64_t n = n0 + warp; n < n1; n += NORM_WARPS, s ^= 1) {
        uint4 xv[RING ? 1 : P], gv[RING ? 1 : P], dv[RING ? 1 : P];
        float r, m;
        if (RING) {
            r = r_next, m = m_next;
            if (n + NORM_WARPS < n1) {
                ring_fill<T, P>(a, ring, s ^ 1, n + NORM_WARPS, lane, has_dres);
                r_next = a.rstd[n + NORM_WARPS];
                m_next = RMS ? 0.0f : a.mean[n + NORM_WARPS];
            }
            cp_async_commit();
            cp_async_wait_but_last(); /* row n's copies have landed */
        } else {
            r = a.rstd[n], m = RMS ? 0.0f : a.mean[n];
#pragma unroll
            for (int k = 0; k < P; k++) { /* every load of the row before any math */
                const int64_t c = (int64_t)lane * 8 + 256 * k;
                if (c >= C) continue;
                xv[k] = *reinterpret_cast<const uint4 *>(a.x + n * C + c);
                gv[k] = *reinterpret_cast<const uint4 *>(a.dy + n * C + c);
                if (has_dres) dv[k] = *reinterpret_cast<const uint4 *>(a.dres + n * C + c);
            }
        }
#define ROW_PIECE(t, arr, k) (RING ? *ring_slot<P>(ring, s, t, k, lane) : arr[RING ? 0 : k])
        float sg = 0.0f, sgx = 0.0f;
#pragma unroll
        for (int k = 0; k < P; k++) {
            const int64_t c = (int64_t)lane * 8 + 256 * k;
            if (c >= C) continue;
            float v[8], g[8], wv[8];
            lp8_unpack<T>(ROW_PIECE(0, xv, k), v);
            lp8_unpack<T>(ROW_PIECE(1, gv, k), g);
            lp8_unpack<T>(norm_weight_piece(a.w, c), wv);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float xh = RMS ? v[i] * r : (v[i] - m) * r, gi = g[i] * wv[i];
                sg += gi;
                sgx += gi * (RMS ? v[i] : xh);
                accw[k][i] += g[i] * xh;
                accb[k][i] += g[i];
            }
        }
        if (!a.dx) continue;
        float mg = 0.0f, mgx = 0.0f, kr = 0.0f;
        if (RMS) {
            kr = warp_sum(sgx) / (float)C * r * r * r;
        } else {
            mg = warp_sum(sg) / (float)C;
            mgx = warp_sum(sgx) / (float)C;
        }
#pragma unroll
        for (int k = 0; k < P; k++) {
            const int64_t c = (int64_t)lane * 8 + 256 * k;
            if (c >= C) continue;
            float v[8], g[8], wv[8], o[8];
            lp8_unpack<T>(ROW_PIECE(0, xv, k), v);
            lp8_unpack<T>(ROW_PIECE(1, gv, k), g);
            lp8_unpack<T>(norm_weight_piece(a.w, c), wv);
#pragma unroll
            for (int i = 0; i < 8; i++)
                o[i] = RMS ? r * g[i] * wv[i] - v[i] * kr
                           : r * (g[i] * wv[i] - mg - (v[i] - m) * r * mgx);
            if (a.dres) {
                float d[8];
                lp8_unpack<T>(ROW_PIECE(2, dv, k), d);
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    o[i] += d[i];
                    if (RSUM) accr[k][i] += d[i];
                }
            }
            lp8_store<T>(a.dx + n * C + c, o);
        }
#undef ROW_PIECE
    }
    if (!a.partials) return; /* the same for the whole block: no barrier below is skipped by some */
    const int nsums = (RMS ? 1 : 2) + (RSUM ? 1 : 0);
#pragma unroll
    for (int o = 0; o < nsums; o++) {
#pragma unroll
        for (int k = 0; k < P; k++) {
#pragma unroll
            for (int i = 0; i < 8; i++) {
                red[warp][lane * 8 + i] = o == 0           ? accw[k][i]
                                          : o == 1 && !RMS ? accb[k][i]
                                                           : accr[RSUM ? k : 0][i];
            }
            __syncthreads();
            const int64_t c = 256 * k + threadIdx.x;
            if (c < C) {
                float sum = red[0][threadIdx.x];
                for (int w = 1; w < NORM_WARPS; w++) sum += red[w][threadIdx.x];
                a.partials[((int64_t)o * gridDim.x + blockIdx.x) * C + c] = sum;
            }
            __syncthreads();
        }
    }
}

/* Launches one instantiation, with its ring's shared memory when it keeps one. */
template <class T, int P, bool RMS, bool RSUM>
static void launch_norm_backward_p(const struct norm_bwd_args<T> &a, unsigned blocks)
{
    const size_t smem = norm_backward_ring(P, RMS, RSUM) ? norm_backward_ring_bytes(P) : 0;
    if (smem > 0)
        CUDA_CHECK(cudaFuncSetAttribute(norm_backward_kernel<T, P, RMS, RSUM>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    norm_backward_kernel<T, P, RMS, RSUM><<<blocks, NORM_WARPS * 32, smem, cuda_ctx()->stream>>>(a);
}

/* norm_backward_kernel with ceil(C / 256) pieces a lane */
template <class T, bool RMS, bool RSUM>
static void launch_norm_backward(const struct norm_bwd_args<T> &a, int64_t pieces, unsigned blocks)
{
    switch (pieces) {
#define NB_CASE(P) case P: launch_norm_backward_p<T, P, RMS, RSUM>(a, blocks); break;
        NB_CASE(1) NB_CASE(2) NB_CASE(3) NB_CASE(4) NB_CASE(5) NB_CASE(6) NB_CASE(7) NB_CASE(8)
#undef NB_CASE
    }
    CUDA_CHECK_LAUNCH("norm_backward_kernel");
}

/* Runs norm_backward_kernel and the reduction of its partial rows into dw (and db, LayerNorm) and
 * dres_sum (the column sums of a.dres, when not NULL); false (nothing done) when the rows are too
 * wide for its registers or not 16-byte vectors. */
template <class T, bool RMS>
static bool norm_backward_one_pass(struct norm_bwd_args<T> a, float *dw, float *db,
                                   float *dres_sum)
{
    const int64_t pieces = (a.C + 255) / 256;
    bool vec = a.C % 8 == 0 && cuda_aligned16(a.dx) && cuda_aligned16(a.dy) &&
               cuda_aligned16(a.x) && cuda_aligned16(a.w) && cuda_aligned16(a.dres);
    if (!vec || pieces < 1 || pieces > NORM_MAX_PIECES) return false;
    if (a.N == 0) return true;
    CHECK(!dres_sum || (a.dx && a.dres));
    a.rows = norm_backward_rows_per_block(a.N);
    const int64_t blocks = (a.N + a.rows - 1) / a.rows;
    CHECK(blocks <= 0x7fffffff);
    const int nw = RMS ? 1 : 2, nout = nw + (dres_sum ? 1 : 0);
    const size_t partial_bytes = (size_t)nout * blocks * a.C * sizeof(float);
    a.partials = dw || db || dres_sum ? (float *)cuda_scratch(partial_bytes) : NULL;
    if (!a.dx && !a.partials) return true;
    if (dres_sum) launch_norm_backward<T, RMS, true>(a, pieces, (unsigned)blocks);
    else launch_norm_backward<T, RMS, false>(a, pieces, (unsigned)blocks);
    if (dw || db) cuda_colsum_reduce(dw, RMS ? NULL : db, a.partials, (int)blocks, a.C);
    if (dres_sum)
        cuda_colsum_reduce(dres_sum, NULL, a.partials + (size_t)nw * blocks * a.C, (int)blocks,
                           a.C);
    return true;
}

/* dres_sum += dres's column sums, where the one-pass kernel does not take the rows: the
 * bias-dropout-add's backward without dropout (only its bias gradient). */
template <class T>
static void residual_colsum(float *dres_sum, const T *dres, int64_t N, int64_t C)
{
    struct dropout_key nodrop = {0};
    cuda_bias_dropout_add_backward(tensor_none(), tensor_1d(dres_sum, DT_F32, DEV_CUDA, C),
                                   tensor_2d((void *)dres, lp_dtype<T>::value, DEV_CUDA, N, C),
                                   nodrop);
}

static unsigned norm_blocks(int64_t N) { return (unsigned)((N + NORM_WARPS - 1) / NORM_WARPS); }

void cuda_layernorm_forward(struct tensor y, struct tensor mean, struct tensor rstd,
                            struct tensor x, struct tensor w, struct tensor b, float eps)
{
    const char *op = "cuda_layernorm_forward";
    enum dtype dt = cuda_need_lp(op, "y", y);
    cuda_need(op, "mean", mean, DT_F32);
    cuda_need(op, "rstd", rstd, DT_F32);
    cuda_need(op, "x", x, dt);
    cuda_need(op, "w", w, dt);
    cuda_maybe(op, "b", b, dt);
    int64_t N = x.shape[0], C = x.shape[1];
    if (N == 0) return;
    if (cuda_layernorm_forward_in_registers(y, mean, rstd, x, w, b, eps)) return;
    const void *bp = tensor_present(b) ? b.data : NULL;
    bool vec = rows_vectorizable(C, y.data, x.data, w.data, bp);
    cudaStream_t st = cuda_ctx()->stream;
    CUDA_LP_DISPATCH(dt, layernorm_forward_kernel<T><<<norm_blocks(N), NORM_WARPS * 32, 0, st>>>(
                             (T *)y.data, (float *)mean.data, (float *)rstd.data, (const T *)x.data,
                             (const T *)w.data, (const T *)bp, N, C, eps, vec));
    CUDA_CHECK_LAUNCH("layernorm_forward_kernel");
}

/* The LayerNorm backward, plus dres (NULL for none) in dx; every 16-bit argument of dtype T. */
template <class T>
static void layernorm_backward(const char *op, struct tensor dx, struct tensor dw, struct tensor db,
                               struct tensor dy, struct tensor x, struct tensor w,
                               struct tensor mean, struct tensor rstd, const T *dres,
                               float *dres_sum)
{
    const enum dtype dt = lp_dtype<T>::value;
    cuda_need(op, "dy", dy, dt);
    cuda_need(op, "x", x, dt);
    cuda_need(op, "mean", mean, DT_F32);
    cuda_need(op, "rstd", rstd, DT_F32);
    cuda_maybe(op, "dw", dw, DT_F32);
    cuda_maybe(op, "db", db, DT_F32);
    int64_t N = x.shape[0], C = x.shape[1];
    if (tensor_present(dx)) {
        cuda_need(op, "dx", dx, dt);
        cuda_need(op, "w", w, dt);
    }
    float *dwp = tensor_present(dw) ? (float *)dw.data : NULL;
    float *dbp = tensor_present(db) ? (float *)db.data : NULL;
    struct norm_bwd_args<T> a = {(T *)dx.data, NULL, (const T *)dy.data, (const T *)x.data,
                                 (const T *)w.data, dres, (const float *)mean.data,
                                 (const float *)rstd.data, N, C, 0};
    if (!tensor_present(dx)) { /* the weight gradients only */
        a.dx = NULL;
        a.w = NULL;
        a.dres = NULL;
    }
    if (norm_backward_one_pass<T, false>(a, dwp, dbp, dres_sum)) return;
    if (dres_sum) residual_colsum<T>(dres_sum, dres, N, C); /* before dx, which may alias dres */
    if (tensor_present(dx)) {
        bool vec = rows_vectorizable(C, dx.data, dy.data, x.data, w.data) &&
                   cuda_aligned16(dres);
        if (N > 0)
            layernorm_dx_kernel<T><<<norm_blocks(N), NORM_WARPS * 32, 0, cuda_ctx()->stream>>>(
                (T *)dx.data, (const T *)dy.data, (const T *)x.data, (const T *)w.data,
                (const float *)mean.data, (const float *)rstd.data, dres, N, C, vec);
        CUDA_CHECK_LAUNCH("layernorm_dx_kernel");
    }
    if (tensor_present(dw) || tensor_present(db)) {
        struct load_layernorm_dw_db<T> ld = {(const T *)dy.data, (const T *)x.data,
                                             (const float *)mean.data, (const float *)rstd.data, C,
                                             rows_vectorizable(C, dy.data, x.data, x.data, x.data)};
        cuda_colsum_acc<load_layernorm_dw_db<T>, 2>(ld, dwp, dbp, N, C);
    }
}

void cuda_layernorm_backward(struct tensor dx, struct tensor dw, struct tensor db,
                             struct tensor dy, struct tensor x, struct tensor w,
                             struct tensor mean, struct tensor rstd)
{
    const char *op = "cuda_layernorm_backward";
    enum dtype dt = cuda_need_lp(op, "dy", dy);
    CUDA_LP_DISPATCH(dt, layernorm_backward<T>(op, dx, dw, db, dy, x, w, mean, rstd, NULL, NULL));
}

void cuda_layernorm_backward_add(struct tensor dx, struct tensor dw, struct tensor db,
                                 struct tensor dy, struct tensor x, struct tensor w,
                                 struct tensor mean, struct tensor rstd, struct tensor dresidual,
                                 struct tensor dresidual_sum)
{
    const char *op = "cuda_layernorm_backward_add";
    enum dtype dt = cuda_need_lp(op, "dx", dx);
    cuda_need(op, "dresidual", dresidual, dt);
    cuda_maybe(op, "dresidual_sum", dresidual_sum, DT_F32);
    float *rs = tensor_present(dresidual_sum) ? (float *)dresidual_sum.data : NULL;
    CUDA_LP_DISPATCH(dt, layernorm_backward<T>(op, dx, dw, db, dy, x, w, mean, rstd,
                                               (const T *)dresidual.data, rs));
}

void cuda_rmsnorm_forward(struct tensor y, struct tensor rstd, struct tensor x, struct tensor w,
                          float eps)
{
    const char *op = "cuda_rmsnorm_forward";
    enum dtype dt = cuda_need_lp(op, "y", y);
    cuda_need(op, "rstd", rstd, DT_F32);
    cuda_need(op, "x", x, dt);
    cuda_need(op, "w", w, dt);
    int64_t N = x.shape[0], C = x.shape[1];
    if (N == 0) return;
    if (cuda_rmsnorm_forward_in_registers(y, rstd, x, w, eps)) return;
    bool vec = rows_vectorizable(C, y.data, x.data, w.data, w.data);
    cudaStream_t st = cuda_ctx()->stream;
    CUDA_LP_DISPATCH(dt, rmsnorm_forward_kernel<T><<<norm_blocks(N), NORM_WARPS * 32, 0, st>>>(
                             (T *)y.data, (float *)rstd.data, (const T *)x.data, (const T *)w.data,
                             N, C, eps, vec));
    CUDA_CHECK_LAUNCH("rmsnorm_forward_kernel");
}

/* The RMSNorm backward, plus dres (NULL for none) in dx and dres's column sums in dres_sum (NULL
 * for none); every 16-bit argument of dtype T. */
template <class T>
static void rmsnorm_backward(const char *op, struct tensor dx, struct tensor dw, struct tensor dy,
                             struct tensor x, struct tensor w, struct tensor rstd, const T *dres,
                             float *dres_sum)
{
    const enum dtype dt = lp_dtype<T>::value;
    cuda_need(op, "dy", dy, dt);
    cuda_need(op, "x", x, dt);
    cuda_need(op, "rstd", rstd, DT_F32);
    cuda_maybe(op, "dw", dw, DT_F32);
    int64_t N = x.shape[0], C = x.shape[1];
    if (tensor_present(dx)) {
        cuda_need(op, "dx", dx, dt);
        cuda_need(op, "w", w, dt);
    }
    struct norm_bwd_args<T> a = {(T *)dx.data, NULL, (const T *)dy.data, (const T *)x.data,
                                 (const T *)w.data, dres, NULL, (const float *)rstd.data, N, C, 0};
    if (!tensor_present(dx)) { /* the weight gradients only */
        a.dx = NULL;
        a.w = NULL;
        a.dres = NULL;
    }
    if (norm_backward_one_pass<T, true>(a, tensor_present(dw) ? (float *)dw.data : NULL, NULL,
                                        dres_sum))
        return;
    if (dres_sum) residual_colsum<T>(dres_sum, dres, N, C); /* before dx, which may alias dres */
    if (tensor_present(dx)) {
        bool vec = rows_vectorizable(C, dx.data, dy.data, x.data, w.data) &&
                   cuda_aligned16(dres);
        if (N > 0)
            rmsnorm_dx_kernel<T><<<norm_blocks(N), NORM_WARPS * 32, 0, cuda_ctx()->stream>>>(
                (T *)dx.data, (const T *)dy.data, (const T *)x.data, (const T *)w.data,
                (const float *)rstd.data, dres, N, C, vec);
        CUDA_CHECK_LAUNCH("rmsnorm_dx_kernel");
    }
    if (tensor_present(dw)) {
        struct load_rmsnorm_dw<T> ld = {(const T *)dy.data, (const T *)x.data,
                                        (const float *)rstd.data, C,
                                        rows_vectorizable(C, dy.data, x.data, x.data, x.data)};
        cuda_colsum_acc<load_rmsnorm_dw<T>, 1>(ld, (float *)dw.data, NULL, N, C);
    }
}

void cuda_rmsnorm_backward(struct tensor dx, struct tensor dw, struct tensor dy, struct tensor x,
                           struct tensor w, struct tensor rstd)
{
    const char *op = "cuda_rmsnorm_backward";
    enum dtype dt = cuda_need_lp(op, "dy", dy);
    CUDA_LP_DISPATCH(dt, rmsnorm_backward<T>(op, dx, dw, dy, x, w, rstd, NULL, NULL));
}

void cuda_rmsnorm_backward_add(struct tensor dx, struct tensor dw, struct tensor dy,
                               struct tensor x, struct tensor w, struct tensor rstd,
                               struct tensor dresidual, struct tensor dresidual_sum)
{
    const char *op = "cuda_rmsnorm_backward_add";
    enum dtype dt = cuda_need_lp(op, "dx", dx);
    cuda_need(op, "dresidual", dresidual, dt);
    cuda_maybe(op, "dresidual_sum", dresidual_sum, DT_F32);
    float *rs = tensor_present(dresidual_sum) ? (float *)dresidual_sum.data : NULL;
    CUDA_LP_DISPATCH(dt, rmsnorm_backward<T>(op, dx, dw, dy, x, w, rstd,
                                             (const T *)dresidual.data, rs));
}
