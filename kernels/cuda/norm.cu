/* CUDA LayerNorm and RMSNorm, forward and backward, on 16-bit (bf16 or fp16) rows with fp32
 * statistics. One warp per row walks the row in 8-wide (16-byte) pieces; the variance takes a
 * second pass over the row (it stays in L1/L2), as the CPU reference does. Formulas as in
 * kernels/cpu/norm.c.
 *
 * The backward is one pass over the rows for widths up to 2048 (norm_backward_kernel): dx from
 * the row kept in registers (a wide row shared by two or four warps), and the weight and bias
 * gradients summed in registers over a block's rows into partial rows that a second small kernel
 * adds in a fixed order, so x and dy cross memory once. Wider or unaligned rows take
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

/* dy's row n times dys[n] (dys NULL: dy as it is): the output layer's gradient given by rows. */
__device__ __forceinline__ void scale_row_piece(float g[8], const float *dys, int64_t row)
{
    if (!dys) return;
    const float s = dys[row];
    for (int i = 0; i < 8; i++) g[i] *= s;
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w, xhat = (x - mean) * rstd;
 * plus dres when not NULL (dx may alias dres: each piece is read before it is written). */
template <class T>
static __global__ void layernorm_dx_kernel(T *dx, const T *dy, const float *dys, const T *x,
                                           const T *w, const float *mean, const float *rstd,
                                           const T *dres, int64_t N, int64_t C, bool vec)
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
        scale_row_piece(g, dys, row);
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
        scale_row_piece(g, dys, row);
        lp_load8<T>(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) o[i] = r * (g[i] * wv[i] - mg - (v[i] - m) * r * mgx);
        add_residual_grad(o, dres, row, c, C, vec);
        lp_store8<T>(dx + row * C, c, C, vec, o);
    }
}

/* dw += sum_n dy * xhat, db += sum_n dy (rows too wide for norm_backward_kernel) */
template <class T> struct load_layernorm_dw_db {
    const T *dy, *x;
    const float *dys, *mean, *rstd; /* dys: dy's row scale, or NULL */
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
        scale_row_piece(out[1], dys, n);
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
static __global__ void rmsnorm_dx_kernel(T *dx, const T *dy, const float *dys, const T *x,
                                         const T *w, const float *rstd, const T *dres, int64_t N,
                                         int64_t C, bool vec)
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
        scale_row_piece(g, dys, row);
        lp_load8<T>(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) sgx += g[i] * wv[i] * v[i];
    }
    float k = warp_sum(sgx) / (float)C * r * r * r;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8], g[8], wv[8], o[8];
        lp_load8<T>(xr, c, C, vec, v);
        lp_load8<T>(dyr, c, C, vec, g);
        scale_row_piece(g, dys, row);
        lp_load8<T>(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) o[i] = r * g[i] * wv[i] - v[i] * k;
        add_residual_grad(o, dres, row, c, C, vec);
        lp_store8<T>(dx + row * C, c, C, vec, o);
    }
}

/* dw += sum_n dy * x * rstd (rows too wide for norm_backward_kernel) */
template <class T> struct load_rmsnorm_dw {
    const T *dy, *x;
    const float *dys, *rstd; /* dys: dy's row scale, or NULL */
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
        scale_row_piece(g, dys, n);
        float rs = rstd[n];
        for (int i = 0; i < 8; i++) out[0][i] = g[i] * (v[i] * rs);
    }
};

/* ---- the backward in one pass over the rows: dx, and partial rows of dw (and db) ---- */

/* Rows per block of norm_backward_kernel (one partial row of dw / db each): about `blocks` blocks
 * (NB_BLOCKS, about one an SM of an H100, or with rows shared by several warps NB_SPLIT_BLOCKS,
 * two an SM), at most NB_MAX_ROWS rows each. Fewer, longer blocks write fewer
 * partial rows and end fewer times: 16384 rows of 1600 (one block an SM) took 89 us in 128 blocks
 * of 128 rows against 97 in 512 of 32; 32768 rows of 1024, 107 us in 256 blocks of 128 against
 * 112 in 512 of 64 (H100). A function of N alone, like every order of the sums. */
enum { NB_BLOCKS = 128, NB_SPLIT_BLOCKS = 256, NB_MAX_ROWS = 128 };

static int64_t norm_backward_rows_per_block(int64_t N, int64_t blocks)
{
    int64_t rows = (N + blocks - 1) / blocks;
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
    int64_t rows;          /* rows per block: norm_backward_rows_per_block */
    const float *dy_scale; /* dy's row n times dy_scale[n]; NULL: dy as it is */
};

/* Warps that share a row in norm_backward_kernel, for ceil(C / 256) pieces of 8 columns a lane:
 * one while a lane's pieces and sums of the whole row fit two blocks an SM without spilling (to
 * 768 columns); else 2 or 4, each taking a span of the row. (One warp a row of 1600 columns took
 * 251 registers, 8 warps an SM: 73% of the memory's rate under Nsight Compute, 0.102 ms for 16384
 * rows with the residual's sums; by four warps 0.095, and 32768 rows of 1024 by two 0.105 against
 * 0.113; H100.) */
enum { NB_SPLIT_PIECES = 2 };

static constexpr __host__ __device__ int norm_backward_wpr(int64_t pieces)
{
    return pieces <= 3 ? 1 : pieces <= 2 * NB_SPLIT_PIECES ? 2 : 4;
}

/* Columns warp w of a row's WPR takes: [w s, w s + s), s = C / WPR rounded up to 8. */
static __host__ __device__ __forceinline__ int64_t norm_backward_span(int64_t C, int wpr)
{
    return (C + 8 * wpr - 1) / (8 * wpr) * 8;
}

/* w[c, c + 8) through the read-only cache (every warp reads it for every row: an L1 hit), or
 * zeros when there is no w (only the weight gradients wanted). */
template <class T>
__device__ __forceinline__ uint4 norm_weight_piece(const T *w, int64_t c)
{
    return w ? __ldg(reinterpret_cast<const uint4 *>(w + c)) : make_uint4(0, 0, 0, 0);
}

/* A block takes a.rows rows, WPR warps per row at a time (a group; NORM_WARPS / WPR groups).
 * Warp w of a group takes the row's columns [w s, min(C, w s + s)) (norm_backward_span), lane l
 * the pieces c = w s + 8 l + 256 k, k < P, of x, dy and dres, kept in registers between the row's
 * two steps (its sums, then dx), and adds dy * xhat (and dy) into fp32 registers over the group's
 * rows, so dw and db cost no second read of x and dy. With RSUM it also sums dres's columns
 * (needs dx and dres): the bias gradient of the bias-dropout-add whose output gradient dres is,
 * when there is no dropout. With SCALE dy's row n is read times a.dy_scale[n] (the final norm
 * under an output layer whose gradient comes by rows; a kernel of its own, so that the others'
 * registers stay as they were). A row's two sums are its warps', added in warp order through shared
 * memory (a named barrier for the group, once a row: the slots alternate between rows). At the
 * end the block adds its groups' column sums in group order into its partial row (one for each
 * sum), which cuda_colsum_reduce adds up: every order depends on the shape alone. The formulas
 * and their order of operations are those of layernorm_dx_kernel / rmsnorm_dx_kernel and the
 * column-sum loads above. Needs C % 8 == 0 and 16-byte aligned rows; dx may alias dres (each
 * piece is read before the same lane writes it). */
template <class T, int P, int WPR, bool RMS, bool RSUM, bool SCALE>
static __global__ void __launch_bounds__(NORM_WARPS * 32, 2)
    norm_backward_kernel(struct norm_bwd_args<T> a)
{
    constexpr int GROUPS = NORM_WARPS / WPR, COLS = WPR * P * 256; /* the widest row taken */
    __shared__ float2 slot[GROUPS][2][WPR]; /* a row's two sums, by warp */
    __shared__ float red[GROUPS][COLS];     /* the groups' column sums */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int group = warp / WPR, w = warp % WPR;
    const int64_t C = a.C, span = norm_backward_span(C, WPR);
    const int64_t lo = w * span, hi = lo + span < C ? lo + span : C; /* this warp's columns */
    const int64_t n0 = (int64_t)blockIdx.x * a.rows;
    const int64_t n1 = n0 + a.rows < a.N ? n0 + a.rows : a.N;
    const bool has_dres = a.dx && a.dres;
    float accw[P][8], accb[P][8], accr[RSUM ? P : 1][8];
#pragma unroll
    for (int k = 0; k < P; k++)
#pragma unroll
        for (int i = 0; i < 8; i++) accw[k][i] = accb[k][i] = accr[RSUM ? k : 0][i] = 0.0f;
    int it = 0;
    for (int64_t n = n0 + group; n < n1; n += GROUPS, it ^= 1) {
        uint4 xv[P], gv[P], dv[P];
        const float r = a.rstd[n], m = RMS ? 0.0f : a.mean[n];
        const float sc = SCALE ? a.dy_scale[n] : 1.0f; /* dy's row scale */
#pragma unroll
        for (int k = 0; k < P; k++) { /* every load of the row's pieces before any math */
            const int64_t c = lo + 256 * k + 8 * lane;
            if (c >= hi) continue;
            xv[k] = *reinterpret_cast<const uint4 *>(a.x + n * C + c);
            gv[k] = *reinterpret_cast<const uint4 *>(a.dy + n * C + c);
            if (has_dres) dv[k] = *reinterpret_cast<const uint4 *>(a.dres + n * C + c);
        }
        float sg = 0.0f, sgx = 0.0f;
#pragma unroll
        for (int k = 0; k < P; k++) {
            const int64_t c = lo + 256 * k + 8 * lane;
            if (c >= hi) continue;
            float v[8], g[8], wv[8];
            lp8_unpack<T>(xv[k], v);
            lp8_unpack<T>(gv[k], g);
            if (SCALE)
#pragma unroll
                for (int i = 0; i < 8; i++) g[i] *= sc;
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
        if (!a.dx) continue; /* the same for every warp: no barrier is skipped by some */
        float tsg = RMS ? 0.0f : warp_sum(sg), tsgx = warp_sum(sgx);
        if (WPR > 1) { /* the row's warps' sums, in warp order */
            if (lane == 0) slot[group][it][w] = make_float2(tsg, tsgx);
            asm volatile("bar.sync %0, %1;" ::"r"(1 + group), "n"(WPR * 32) : "memory");
            tsg = tsgx = 0.0f;
#pragma unroll
            for (int q = 0; q < WPR; q++) {
                const float2 e = slot[group][it][q];
                tsg += e.x, tsgx += e.y;
            }
        }
        float mg = 0.0f, mgx = 0.0f, kr = 0.0f;
        if (RMS) {
            kr = tsgx / (float)C * r * r * r;
        } else {
            mg = tsg / (float)C;
            mgx = tsgx / (float)C;
        }
#pragma unroll
        for (int k = 0; k < P; k++) {
            const int64_t c = lo + 256 * k + 8 * lane;
            if (c >= hi) continue;
            float v[8], g[8], wv[8], o[8];
            lp8_unpack<T>(xv[k], v);
            lp8_unpack<T>(gv[k], g);
            if (SCALE)
#pragma unroll
                for (int i = 0; i < 8; i++) g[i] *= sc;
            lp8_unpack<T>(norm_weight_piece(a.w, c), wv);
#pragma unroll
            for (int i = 0; i < 8; i++)
                o[i] = RMS ? r * g[i] * wv[i] - v[i] * kr
                           : r * (g[i] * wv[i] - mg - (v[i] - m) * r * mgx);
            if (a.dres) {
                float d[8];
                lp8_unpack<T>(dv[k], d);
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    o[i] += d[i];
                    if (RSUM) accr[k][i] += d[i];
                }
            }
            lp8_store<T>(a.dx + n * C + c, o);
        }
    }
    if (!a.partials) return; /* the same for the whole block: no barrier below is skipped by some */
    const int nsums = (RMS ? 1 : 2) + (RSUM ? 1 : 0);
#pragma unroll
    for (int o = 0; o < nsums; o++) {
#pragma unroll
        for (int k = 0; k < P; k++) {
            const int64_t c = lo + 256 * k + 8 * lane;
            if (c >= hi) continue;
#pragma unroll
            for (int i = 0; i < 8; i++)
                red[group][c + i] = o == 0           ? accw[k][i]
                                    : o == 1 && !RMS ? accb[k][i]
                                                     : accr[RSUM ? k : 0][i];
        }
        __syncthreads();
        for (int64_t c = threadIdx.x; c < C; c += NORM_WARPS * 32) {
            float sum = red[0][c];
            for (int g = 1; g < GROUPS; g++) sum += red[g][c];
            a.partials[((int64_t)o * gridDim.x + blockIdx.x) * C + c] = sum;
        }
        __syncthreads();
    }
}

/* norm_backward_kernel for ceil(C / 256) pieces: one warp a row with as many pieces a lane, or
 * several with NB_SPLIT_PIECES each (norm_backward_wpr). */
template <class T, bool RMS, bool RSUM, bool SCALE>
static void launch_norm_backward(const struct norm_bwd_args<T> &a, int64_t pieces, unsigned blocks)
{
    cudaStream_t st = cuda_ctx()->stream;
    const int wpr = norm_backward_wpr(pieces);
#define NB_LAUNCH(P, WPR)                                                                          \
    norm_backward_kernel<T, P, WPR, RMS, RSUM, SCALE><<<blocks, NORM_WARPS * 32, 0, st>>>(a)
    if (wpr == 4) NB_LAUNCH(NB_SPLIT_PIECES, 4);
    else if (wpr == 2) NB_LAUNCH(NB_SPLIT_PIECES, 2);
    else if (pieces == 1) NB_LAUNCH(1, 1);
    else if (pieces == 2) NB_LAUNCH(2, 1);
    else NB_LAUNCH(3, 1);
#undef NB_LAUNCH
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
    a.rows = norm_backward_rows_per_block(
        a.N, norm_backward_wpr(pieces) > 1 ? NB_SPLIT_BLOCKS : NB_BLOCKS);
    const int64_t blocks = (a.N + a.rows - 1) / a.rows;
    CHECK(blocks <= 0x7fffffff);
    const int nw = RMS ? 1 : 2, nout = nw + (dres_sum ? 1 : 0);
    const size_t partial_bytes = (size_t)nout * blocks * a.C * sizeof(float);
    a.partials = dw || db || dres_sum ? (float *)cuda_scratch(partial_bytes) : NULL;
    if (!a.dx && !a.partials) return true;
    CHECK(!dres_sum || !a.dy_scale); /* the final norm's output gradient has no residual */
    if (dres_sum) launch_norm_backward<T, RMS, true, false>(a, pieces, (unsigned)blocks);
    else if (a.dy_scale) launch_norm_backward<T, RMS, false, true>(a, pieces, (unsigned)blocks);
    else launch_norm_backward<T, RMS, false, false>(a, pieces, (unsigned)blocks);
    /* one launch for the two or three sums (partials [nout][blocks][C], dres's last) */
    if (RMS)
        cuda_colsum_reduce3(dw, dres_sum, NULL, a.partials, (int)blocks, a.C);
    else
        cuda_colsum_reduce3(dw, db, dres_sum, a.partials, (int)blocks, a.C);
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
                               float *dres_sum, const float *dys)
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
                                 (const float *)rstd.data, N, C, 0, dys};
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
                (T *)dx.data, (const T *)dy.data, dys, (const T *)x.data, (const T *)w.data,
                (const float *)mean.data, (const float *)rstd.data, dres, N, C, vec);
        CUDA_CHECK_LAUNCH("layernorm_dx_kernel");
    }
    if (tensor_present(dw) || tensor_present(db)) {
        struct load_layernorm_dw_db<T> ld = {(const T *)dy.data, (const T *)x.data, dys,
                                             (const float *)mean.data, (const float *)rstd.data, C,
                                             rows_vectorizable(C, dy.data, x.data, x.data, x.data)};
        cuda_colsum_acc<load_layernorm_dw_db<T>, 2>(ld, dwp, dbp, N, C);
    }
}

void cuda_layernorm_backward(struct tensor dx, struct tensor dw, struct tensor db,
                             struct tensor dy, struct tensor x, struct tensor w,
                             struct tensor mean, struct tensor rstd, struct tensor dy_row_scale)
{
    const char *op = "cuda_layernorm_backward";
    enum dtype dt = cuda_need_lp(op, "dy", dy);
    cuda_maybe(op, "dy_row_scale", dy_row_scale, DT_F32);
    const float *dys = tensor_present(dy_row_scale) ? (const float *)dy_row_scale.data : NULL;
    CUDA_LP_DISPATCH(dt, layernorm_backward<T>(op, dx, dw, db, dy, x, w, mean, rstd, NULL, NULL,
                                               dys));
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
                                               (const T *)dresidual.data, rs, NULL));
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
                             float *dres_sum, const float *dys)
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
                                 (const T *)w.data, dres, NULL, (const float *)rstd.data, N, C, 0,
                                 dys};
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
                (T *)dx.data, (const T *)dy.data, dys, (const T *)x.data, (const T *)w.data,
                (const float *)rstd.data, dres, N, C, vec);
        CUDA_CHECK_LAUNCH("rmsnorm_dx_kernel");
    }
    if (tensor_present(dw)) {
        struct load_rmsnorm_dw<T> ld = {(const T *)dy.data, (const T *)x.data, dys,
                                        (const float *)rstd.data, C,
                                        rows_vectorizable(C, dy.data, x.data, x.data, x.data)};
        cuda_colsum_acc<load_rmsnorm_dw<T>, 1>(ld, (float *)dw.data, NULL, N, C);
    }
}

void cuda_rmsnorm_backward(struct tensor dx, struct tensor dw, struct tensor dy, struct tensor x,
                           struct tensor w, struct tensor rstd, struct tensor dy_row_scale)
{
    const char *op = "cuda_rmsnorm_backward";
    enum dtype dt = cuda_need_lp(op, "dy", dy);
    cuda_maybe(op, "dy_row_scale", dy_row_scale, DT_F32);
    const float *dys = tensor_present(dy_row_scale) ? (const float *)dy_row_scale.data : NULL;
    CUDA_LP_DISPATCH(dt, rmsnorm_backward<T>(op, dx, dw, dy, x, w, rstd, NULL, NULL, dys));
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
                                             (const T *)dresidual.data, rs, NULL));
}
