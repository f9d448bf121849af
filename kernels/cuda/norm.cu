/* CUDA LayerNorm and RMSNorm, forward and backward, on bf16 rows with fp32 statistics. One warp
 * per row walks the row in 8-wide (16-byte) pieces; the variance takes a second pass over the row
 * (it stays in L1/L2), as the CPU reference does. Weight and bias gradients are deterministic
 * column sums (cuda_common.h). Formulas as in kernels/cpu/norm.c. */
#include "kernels/cuda/cuda_common.h"

enum { NORM_WARPS = 8 }; /* rows per block */

__device__ __forceinline__ int64_t norm_row(void)
{
    return (int64_t)blockIdx.x * NORM_WARPS + threadIdx.x / 32;
}

/* 1 / sqrt(var + eps) rounded once from double, as the CPU computes it. */
__device__ __forceinline__ float norm_rstd(float mean_sq, float eps)
{
    return (float)(1.0 / sqrt((double)mean_sq + (double)eps));
}

static __global__ void layernorm_forward_kernel(bf16 *y, float *mean, float *rstd, const bf16 *x,
                                                const bf16 *w, const bf16 *b, int64_t N,
                                                int64_t C, float eps, bool vec)
{
    int64_t row = norm_row();
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const bf16 *xr = x + row * C;
    float s = 0.0f;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8];
        bf16_load8(xr, c, C, vec, v);
        for (int i = 0; i < 8; i++) s += v[i];
    }
    float mu = warp_sum(s) / (float)C;
    float q = 0.0f;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8];
        bf16_load8(xr, c, C, vec, v);
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
        bf16_load8(xr, c, C, vec, v);
        bf16_load8(w, c, C, vec, wv);
        if (b) bf16_load8(b, c, C, vec, bv);
        for (int i = 0; i < 8; i++) o[i] = (v[i] - mu) * r * wv[i] + (b ? bv[i] : 0.0f);
        bf16_store8(y + row * C, c, C, vec, o);
    }
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w, xhat = (x - mean) * rstd. */
static __global__ void layernorm_dx_kernel(bf16 *dx, const bf16 *dy, const bf16 *x, const bf16 *w,
                                           const float *mean, const float *rstd, int64_t N,
                                           int64_t C, bool vec)
{
    int64_t row = norm_row();
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const bf16 *xr = x + row * C, *dyr = dy + row * C;
    float m = mean[row], r = rstd[row], sg = 0.0f, sgx = 0.0f;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8], g[8], wv[8];
        bf16_load8(xr, c, C, vec, v);
        bf16_load8(dyr, c, C, vec, g);
        bf16_load8(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) {
            float gi = g[i] * wv[i];
            sg += gi;
            sgx += gi * ((v[i] - m) * r);
        }
    }
    float mg = warp_sum(sg) / (float)C, mgx = warp_sum(sgx) / (float)C;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8], g[8], wv[8], o[8];
        bf16_load8(xr, c, C, vec, v);
        bf16_load8(dyr, c, C, vec, g);
        bf16_load8(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) o[i] = r * (g[i] * wv[i] - mg - (v[i] - m) * r * mgx);
        bf16_store8(dx + row * C, c, C, vec, o);
    }
}

/* dw += sum_n dy * xhat, db += sum_n dy */
struct load_layernorm_dw_db {
    const bf16 *dy, *x;
    const float *mean, *rstd;
    int64_t C;
    bool vec;
    __device__ void operator()(int64_t n, int64_t c0, float out[2][8]) const
    {
        float v[8];
        bf16_load8(x + n * C, c0, C, vec, v);
        bf16_load8(dy + n * C, c0, C, vec, out[1]);
        float m = mean[n], r = rstd[n];
        for (int i = 0; i < 8; i++) out[0][i] = out[1][i] * ((v[i] - m) * r);
    }
};

static __global__ void rmsnorm_forward_kernel(bf16 *y, float *rstd, const bf16 *x, const bf16 *w,
                                              int64_t N, int64_t C, float eps, bool vec)
{
    int64_t row = norm_row();
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const bf16 *xr = x + row * C;
    float q = 0.0f;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8];
        bf16_load8(xr, c, C, vec, v);
        for (int i = 0; i < 8; i++) q += v[i] * v[i];
    }
    float r = norm_rstd(warp_sum(q) / (float)C, eps);
    if (lane == 0) rstd[row] = r;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8], wv[8], o[8];
        bf16_load8(xr, c, C, vec, v);
        bf16_load8(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) o[i] = v[i] * r * wv[i];
        bf16_store8(y + row * C, c, C, vec, o);
    }
}

/* dx = rstd * g - x * rstd^3 * mean(g * x), g = dy * w. */
static __global__ void rmsnorm_dx_kernel(bf16 *dx, const bf16 *dy, const bf16 *x, const bf16 *w,
                                         const float *rstd, int64_t N, int64_t C, bool vec)
{
    int64_t row = norm_row();
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const bf16 *xr = x + row * C, *dyr = dy + row * C;
    float r = rstd[row], sgx = 0.0f;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8], g[8], wv[8];
        bf16_load8(xr, c, C, vec, v);
        bf16_load8(dyr, c, C, vec, g);
        bf16_load8(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) sgx += g[i] * wv[i] * v[i];
    }
    float k = warp_sum(sgx) / (float)C * r * r * r;
    for (int64_t c = lane * 8; c < C; c += 256) {
        float v[8], g[8], wv[8], o[8];
        bf16_load8(xr, c, C, vec, v);
        bf16_load8(dyr, c, C, vec, g);
        bf16_load8(w, c, C, vec, wv);
        for (int i = 0; i < 8; i++) o[i] = r * g[i] * wv[i] - v[i] * k;
        bf16_store8(dx + row * C, c, C, vec, o);
    }
}

/* dw += sum_n dy * x * rstd */
struct load_rmsnorm_dw {
    const bf16 *dy, *x;
    const float *rstd;
    int64_t C;
    bool vec;
    __device__ void operator()(int64_t n, int64_t c0, float out[1][8]) const
    {
        float v[8], g[8];
        bf16_load8(x + n * C, c0, C, vec, v);
        bf16_load8(dy + n * C, c0, C, vec, g);
        float r = rstd[n];
        for (int i = 0; i < 8; i++) out[0][i] = g[i] * (v[i] * r);
    }
};

static unsigned norm_blocks(int64_t N) { return (unsigned)((N + NORM_WARPS - 1) / NORM_WARPS); }

static bool rows_vectorizable(int64_t C, const void *a, const void *b, const void *c,
                              const void *d)
{
    return C % 8 == 0 && cuda_aligned16(a) && cuda_aligned16(b) && cuda_aligned16(c) &&
           cuda_aligned16(d);
}

void cuda_layernorm_forward(struct tensor y, struct tensor mean, struct tensor rstd,
                            struct tensor x, struct tensor w, struct tensor b, float eps)
{
    const char *op = "cuda_layernorm_forward";
    cuda_need(op, "y", y, DT_BF16);
    cuda_need(op, "mean", mean, DT_F32);
    cuda_need(op, "rstd", rstd, DT_F32);
    cuda_need(op, "x", x, DT_BF16);
    cuda_need(op, "w", w, DT_BF16);
    cuda_maybe(op, "b", b, DT_BF16);
    int64_t N = x.shape[0], C = x.shape[1];
    if (N == 0) return;
    const bf16 *bp = tensor_present(b) ? (const bf16 *)b.data : NULL;
    bool vec = rows_vectorizable(C, y.data, x.data, w.data, bp);
    layernorm_forward_kernel<<<norm_blocks(N), NORM_WARPS * 32, 0, cuda_ctx()->stream>>>(
        (bf16 *)y.data, (float *)mean.data, (float *)rstd.data, (const bf16 *)x.data,
        (const bf16 *)w.data, bp, N, C, eps, vec);
    CUDA_CHECK_LAUNCH("layernorm_forward_kernel");
}

void cuda_layernorm_backward(struct tensor dx, struct tensor dw, struct tensor db,
                             struct tensor dy, struct tensor x, struct tensor w,
                             struct tensor mean, struct tensor rstd)
{
    const char *op = "cuda_layernorm_backward";
    cuda_need(op, "dy", dy, DT_BF16);
    cuda_need(op, "x", x, DT_BF16);
    cuda_need(op, "mean", mean, DT_F32);
    cuda_need(op, "rstd", rstd, DT_F32);
    cuda_maybe(op, "dw", dw, DT_F32);
    cuda_maybe(op, "db", db, DT_F32);
    int64_t N = x.shape[0], C = x.shape[1];
    if (tensor_present(dx)) {
        cuda_need(op, "dx", dx, DT_BF16);
        cuda_need(op, "w", w, DT_BF16);
        bool vec = rows_vectorizable(C, dx.data, dy.data, x.data, w.data);
        if (N > 0)
            layernorm_dx_kernel<<<norm_blocks(N), NORM_WARPS * 32, 0, cuda_ctx()->stream>>>(
                (bf16 *)dx.data, (const bf16 *)dy.data, (const bf16 *)x.data,
                (const bf16 *)w.data, (const float *)mean.data, (const float *)rstd.data, N, C,
                vec);
        CUDA_CHECK_LAUNCH("layernorm_dx_kernel");
    }
    if (tensor_present(dw) || tensor_present(db)) {
        struct load_layernorm_dw_db ld = {(const bf16 *)dy.data, (const bf16 *)x.data,
                                          (const float *)mean.data, (const float *)rstd.data, C,
                                          rows_vectorizable(C, dy.data, x.data, x.data, x.data)};
        cuda_colsum_acc<load_layernorm_dw_db, 2>(
            ld, tensor_present(dw) ? (float *)dw.data : NULL,
            tensor_present(db) ? (float *)db.data : NULL, N, C);
    }
}

void cuda_rmsnorm_forward(struct tensor y, struct tensor rstd, struct tensor x, struct tensor w,
                          float eps)
{
    const char *op = "cuda_rmsnorm_forward";
    cuda_need(op, "y", y, DT_BF16);
    cuda_need(op, "rstd", rstd, DT_F32);
    cuda_need(op, "x", x, DT_BF16);
    cuda_need(op, "w", w, DT_BF16);
    int64_t N = x.shape[0], C = x.shape[1];
    if (N == 0) return;
    bool vec = rows_vectorizable(C, y.data, x.data, w.data, w.data);
    rmsnorm_forward_kernel<<<norm_blocks(N), NORM_WARPS * 32, 0, cuda_ctx()->stream>>>(
        (bf16 *)y.data, (float *)rstd.data, (const bf16 *)x.data, (const bf16 *)w.data, N, C, eps,
        vec);
    CUDA_CHECK_LAUNCH("rmsnorm_forward_kernel");
}

void cuda_rmsnorm_backward(struct tensor dx, struct tensor dw, struct tensor dy, struct tensor x,
                           struct tensor w, struct tensor rstd)
{
    const char *op = "cuda_rmsnorm_backward";
    cuda_need(op, "dy", dy, DT_BF16);
    cuda_need(op, "x", x, DT_BF16);
    cuda_need(op, "rstd", rstd, DT_F32);
    int64_t N = x.shape[0], C = x.shape[1];
    if (tensor_present(dx)) {
        cuda_need(op, "dx", dx, DT_BF16);
        cuda_need(op, "w", w, DT_BF16);
        bool vec = rows_vectorizable(C, dx.data, dy.data, x.data, w.data);
        if (N > 0)
            rmsnorm_dx_kernel<<<norm_blocks(N), NORM_WARPS * 32, 0, cuda_ctx()->stream>>>(
                (bf16 *)dx.data, (const bf16 *)dy.data, (const bf16 *)x.data,
                (const bf16 *)w.data, (const float *)rstd.data, N, C, vec);
        CUDA_CHECK_LAUNCH("rmsnorm_dx_kernel");
    }
    if (tensor_present(dw)) {
        cuda_need(op, "dw", dw, DT_F32);
        struct load_rmsnorm_dw ld = {(const bf16 *)dy.data, (const bf16 *)x.data,
                                     (const float *)rstd.data, C,
                                     rows_vectorizable(C, dy.data, x.data, x.data, x.data)};
        cuda_colsum_acc<load_rmsnorm_dw, 1>(ld, (float *)dw.data, NULL, N, C);
    }
}
