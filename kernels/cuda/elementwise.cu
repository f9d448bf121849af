/* CUDA elementwise ops on 16-bit storage (bf16 or fp16, math in fp32): GeLU and SwiGLU
 * forward/backward (also the GeLU backward fused with the bias gradient of the layer before it),
 * Megatron's bias-dropout-add and its backward, add, zero, copy. Each thread handles 8 consecutive
 * elements (one 16-byte access when the pointers and row width allow). Dropout draws kernels/rng.h
 * with the CPU's keys, element e of a site being kept iff rng_uniform(seed, stream, offset + e) >= p,
 * so both backends drop the same elements; the math follows kernels/cpu/activation.c and
 * elementwise.c. */
#include "kernels/cuda/cuda_common.h"

enum { EW_THREADS = 256 };

#define INV_SQRT_2PI 0.39894228040143268f /* 1/sqrt(2 pi) */

/* Phi(x) + x phi(x), the erf form's derivative. phi needs e = exp(-x^2 / 2); with z = |x| / sqrt 2
 * that is exp(-z^2), the factor in Abramowitz & Stegun 7.1.26: erf(z) = 1 - poly(t) exp(-z^2),
 * t = 1 / (1 + p z), |error| <= 1.5e-7 (3e-7 in fp32 here, against 1.3e-7 for erff + expf; bf16
 * keeps 4e-3, fp16 5e-4). One exponential and one reciprocal instead of erff and expf: a third of
 * the instructions, which matters because the dGeLU + bias-gradient kernel's math would otherwise
 * rival its memory time on an H100. */
__device__ __forceinline__ float gelu_grad_erf(float x)
{
    const float z = fabsf(x) * SQRT_HALF;
    const float e = exp2_approx(-0.5f * LOG2E_F * x * x);
    const float t = __fdividef(1.0f, 1.0f + 0.3275911f * z);
    const float poly =
        t * (0.254829592f +
             t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    const float erf_abs = 1.0f - poly * e; /* erf(|x| / sqrt 2) */
    return 0.5f + 0.5f * copysignf(erf_abs, x) + x * INV_SQRT_2PI * e;
}

__device__ __forceinline__ float gelu_grad(float x, bool tanh_approx)
{
    if (tanh_approx) {
        float u = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
        float t = tanhf(u);
        float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_CUBIC * x * x);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
    return gelu_grad_erf(x);
}

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

static bool all_aligned16(const void *a, const void *b, const void *c, const void *d)
{
    return cuda_aligned16(a) && cuda_aligned16(b) && cuda_aligned16(c) && cuda_aligned16(d);
}

/* Grid-stride loop over the 8-element pieces of n elements. */
#define FOR_EACH_PIECE(e, n)                                                                       \
    for (int64_t e = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * 8; e < (n);                \
         e += (int64_t)gridDim.x * blockDim.x * 8)

static unsigned pieces_blocks(int64_t n) { return cuda_blocks((n + 7) / 8, EW_THREADS); }

/* ---- GeLU ---- */

template <class T>
static __global__ void gelu_forward_kernel(T *y, const T *x, int64_t n, bool tanh_approx, bool vec)
{
    FOR_EACH_PIECE(e, n)
    {
        float v[8];
        lp_load8<T>(x, e, n, vec, v);
        for (int i = 0; i < 8; i++) v[i] = cuda_gelu(v[i], tanh_approx);
        lp_store8<T>(y, e, n, vec, v);
    }
}

template <class T>
static __global__ void gelu_backward_kernel(T *dx, const T *dy, const T *x, int64_t n,
                                            bool tanh_approx, bool vec)
{
    FOR_EACH_PIECE(e, n)
    {
        float v[8], g[8];
        lp_load8<T>(x, e, n, vec, v);
        lp_load8<T>(dy, e, n, vec, g);
        for (int i = 0; i < 8; i++) g[i] = g[i] * gelu_grad(v[i], tanh_approx);
        lp_store8<T>(dx, e, n, vec, g);
    }
}

void cuda_gelu_forward(struct tensor y, struct tensor x, bool tanh_approx)
{
    enum dtype dt = cuda_need_lp("cuda_gelu_forward", "y", y);
    cuda_need("cuda_gelu_forward", "x", x, dt);
    int64_t n = tensor_numel(x);
    if (n == 0) return;
    bool vec = all_aligned16(y.data, x.data, x.data, x.data);
    CUDA_LP_DISPATCH(
        dt, gelu_forward_kernel<T><<<pieces_blocks(n), EW_THREADS, 0, cuda_ctx()->stream>>>(
                (T *)y.data, (const T *)x.data, n, tanh_approx, vec));
    CUDA_CHECK_LAUNCH("gelu_forward_kernel");
}

void cuda_gelu_backward(struct tensor dx, struct tensor dy, struct tensor x, bool tanh_approx)
{
    enum dtype dt = cuda_need_lp("cuda_gelu_backward", "dx", dx);
    cuda_need("cuda_gelu_backward", "dy", dy, dt);
    cuda_need("cuda_gelu_backward", "x", x, dt);
    int64_t n = tensor_numel(x);
    if (n == 0) return;
    bool vec = all_aligned16(dx.data, dy.data, x.data, x.data);
    CUDA_LP_DISPATCH(
        dt, gelu_backward_kernel<T><<<pieces_blocks(n), EW_THREADS, 0, cuda_ctx()->stream>>>(
                (T *)dx.data, (const T *)dy.data, (const T *)x.data, n, tanh_approx, vec));
    CUDA_CHECK_LAUNCH("gelu_backward_kernel");
}

/* dx = dy * gelu'(x) stored as T, and the fp32 products handed to the column sum of db: the
 * GeLU backward and linear_fc1's bias gradient in one read of dy and x. The column-sum kernel
 * visits every (n, c) exactly once and fetches a piece before it applies (stores) it, so dx may
 * alias dy. */
template <class T, int TANH> /* 0: erf, 1: tanh, 2: x holds gelu'(pre) itself */
struct load_dgelu_rows {
    T *dx;
    const T *dy, *x;
    int64_t C;
    bool vec;
    struct raw {
        uint4 g, v;
    };
    __device__ void fetch(int64_t n, int64_t c0, raw &r) const
    {
        r.g = lp_load8_raw<T>(dy + n * C, c0, C, vec, 0);
        r.v = lp_load8_raw<T>(x + n * C, c0, C, vec, 0);
    }
    __device__ void apply(int64_t n, int64_t c0, const raw &r, float out[1][8]) const
    {
        float v[8];
        lp8_unpack<T>(r.g, out[0]);
        lp8_unpack<T>(r.v, v);
        for (int i = 0; i < 8; i++) out[0][i] *= TANH == 2 ? v[i] : gelu_grad(v[i], TANH == 1);
        lp_store8<T>(dx + n * C, c0, C, vec, out[0]);
    }
};

template <class T>
void cuda_gelu_backward_bias_grad(T *dx, float *db, const T *dy, const T *x, int64_t N, int64_t C,
                                  bool tanh_approx)
{
    if (N * C == 0) return;
    if (!db) {
        gelu_backward_kernel<T><<<pieces_blocks(N * C), EW_THREADS, 0, cuda_ctx()->stream>>>(
            dx, dy, x, N * C, tanh_approx, all_aligned16(dx, dy, x, x));
        CUDA_CHECK_LAUNCH("gelu_backward_kernel");
        return;
    }
    bool vec = C % 8 == 0 && all_aligned16(dx, dy, x, x);
    if (tanh_approx)
        cuda_colsum_acc<load_dgelu_rows<T, 1>, 1>({dx, dy, x, C, vec}, db, NULL, N, C);
    else
        cuda_colsum_acc<load_dgelu_rows<T, 0>, 1>({dx, dy, x, C, vec}, db, NULL, N, C);
}

void cuda_gelu_backward_saved_bias_grad(bf16 *dx, float *db, const bf16 *dy, const bf16 *dgelu,
                                        int64_t N, int64_t C)
{
    if (N * C == 0) return;
    bool vec = C % 8 == 0 && all_aligned16(dx, dy, dgelu, dgelu);
    /* without db the partial sums are made but not reduced */
    cuda_colsum_acc<load_dgelu_rows<bf16, 2>, 1>({dx, dy, dgelu, C, vec}, db, NULL, N, C);
}

/* ---- SwiGLU: x[N, 2F] = [gate | up], y[N, F] = silu(gate) * up ---- */

/* Pieces run over y's N*F elements; a piece never straddles a row when F % 8 == 0 (vec), and
 * falls back to per-element indexing otherwise. */
template <class T>
static __global__ void swiglu_forward_kernel(T *y, const T *x, int64_t N, int64_t F, bool vec)
{
    int64_t n_all = N * F;
    FOR_EACH_PIECE(e, n_all)
    {
        float o[8];
        if (vec) {
            int64_t n = e / F, f = e % F;
            float g[8], u[8];
            lp8_load<T>(x + n * 2 * F + f, g);
            lp8_load<T>(x + n * 2 * F + F + f, u);
            for (int i = 0; i < 8; i++) o[i] = g[i] * sigmoid(g[i]) * u[i];
        } else {
            for (int i = 0; i < 8 && e + i < n_all; i++) {
                int64_t n = (e + i) / F, f = (e + i) % F;
                float g = lp_to_f32(x[n * 2 * F + f]);
                float u = lp_to_f32(x[n * 2 * F + F + f]);
                o[i] = g * sigmoid(g) * u;
            }
        }
        lp_store8<T>(y, e, n_all, vec, o);
    }
}

/* d silu(g) / dg = s (1 + g (1 - s)) with s = sigmoid(g). */
__device__ __forceinline__ void swiglu_grad(float dy, float g, float u, float *dg, float *du)
{
    float s = sigmoid(g);
    *dg = dy * u * s * (1.0f + g * (1.0f - s));
    *du = dy * g * s;
}

template <class T>
static __global__ void swiglu_backward_kernel(T *dx, const T *dy, const T *x, int64_t N, int64_t F,
                                              bool vec)
{
    int64_t n_all = N * F;
    FOR_EACH_PIECE(e, n_all)
    {
        if (vec) {
            int64_t n = e / F, f = e % F;
            float g[8], u[8], d[8], dg[8], du[8];
            lp8_load<T>(x + n * 2 * F + f, g);
            lp8_load<T>(x + n * 2 * F + F + f, u);
            lp8_load<T>(dy + e, d);
            for (int i = 0; i < 8; i++) swiglu_grad(d[i], g[i], u[i], &dg[i], &du[i]);
            lp8_store<T>(dx + n * 2 * F + f, dg);
            lp8_store<T>(dx + n * 2 * F + F + f, du);
        } else {
            for (int i = 0; i < 8 && e + i < n_all; i++) {
                int64_t n = (e + i) / F, f = (e + i) % F;
                float dg, du;
                swiglu_grad(lp_to_f32(dy[e + i]), lp_to_f32(x[n * 2 * F + f]),
                            lp_to_f32(x[n * 2 * F + F + f]), &dg, &du);
                dx[n * 2 * F + f] = lp_from_f32<T>(dg);
                dx[n * 2 * F + F + f] = lp_from_f32<T>(du);
            }
        }
    }
}

void cuda_swiglu_forward(struct tensor y, struct tensor x)
{
    enum dtype dt = cuda_need_lp("cuda_swiglu_forward", "y", y);
    cuda_need("cuda_swiglu_forward", "x", x, dt);
    int64_t N = y.shape[0], F = y.shape[1];
    if (N * F == 0) return;
    bool vec = F % 8 == 0 && all_aligned16(y.data, x.data, x.data, x.data);
    CUDA_LP_DISPATCH(
        dt, swiglu_forward_kernel<T><<<pieces_blocks(N * F), EW_THREADS, 0, cuda_ctx()->stream>>>(
                (T *)y.data, (const T *)x.data, N, F, vec));
    CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

void cuda_swiglu_backward(struct tensor dx, struct tensor dy, struct tensor x)
{
    enum dtype dt = cuda_need_lp("cuda_swiglu_backward", "dx", dx);
    cuda_need("cuda_swiglu_backward", "dy", dy, dt);
    cuda_need("cuda_swiglu_backward", "x", x, dt);
    int64_t N = dy.shape[0], F = dy.shape[1];
    if (N * F == 0) return;
    bool vec = F % 8 == 0 && all_aligned16(dx.data, dy.data, x.data, x.data);
    CUDA_LP_DISPATCH(
        dt, swiglu_backward_kernel<T><<<pieces_blocks(N * F), EW_THREADS, 0, cuda_ctx()->stream>>>(
                (T *)dx.data, (const T *)dy.data, (const T *)x.data, N, F, vec));
    CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

/* ---- bias-dropout-add: y = dropout(x + b) + residual ---- */

/* Pieces of 8 stay inside one row when C % 8 == 0 (vec); otherwise the bias is indexed per element.
 * y may alias x or residual: every element is read before it is written, by the same thread. */
template <class T>
static __global__ void bias_dropout_add_kernel(T *y, const T *x, const T *b, const T *res,
                                               struct dropout_key drop, float scale, int64_t N,
                                               int64_t C, bool vec)
{
    int64_t n_all = N * C;
    FOR_EACH_PIECE(e, n_all)
    {
        float v[8], bv[8], rv[8];
        lp_load8<T>(x, e, n_all, vec, v);
        if (res) lp_load8<T>(res, e, n_all, vec, rv);
        if (b) {
            if (vec) {
                lp8_load<T>(b + e % C, bv);
            } else {
                for (int i = 0; i < 8; i++)
                    bv[i] = e + i < n_all ? lp_to_f32(b[(e + i) % C]) : 0.0f;
            }
        }
        const struct dropout_key dk = dropout_resolve(drop);
        for (int i = 0; i < 8; i++) {
            float t = b ? v[i] + bv[i] : v[i];
            t *= dropout_factor(dk, scale, e + i);
            v[i] = res ? t + rv[i] : t;
        }
        lp_store8<T>(y, e, n_all, vec, v);
    }
}

void cuda_bias_dropout_add_forward(struct tensor y, struct tensor x, struct tensor b,
                                   struct tensor residual, struct dropout_key drop)
{
    const char *op = "cuda_bias_dropout_add_forward";
    enum dtype dt = cuda_need_lp(op, "y", y);
    cuda_need(op, "x", x, dt);
    cuda_maybe(op, "b", b, dt);
    cuda_maybe(op, "residual", residual, dt);
    int64_t N = x.shape[0], C = x.shape[1];
    if (N * C == 0) return;
    const void *bp = tensor_present(b) ? b.data : NULL;
    const void *rp = tensor_present(residual) ? residual.data : NULL;
    if (drop.p == 0.0f && !bp && !rp && y.data == x.data) return; /* the identity, in place */
    bool vec = C % 8 == 0 && all_aligned16(y.data, x.data, bp, rp);
    CUDA_LP_DISPATCH(
        dt, bias_dropout_add_kernel<T><<<pieces_blocks(N * C), EW_THREADS, 0, cuda_ctx()->stream>>>(
                (T *)y.data, (const T *)x.data, (const T *)bp, (const T *)rp, drop,
                cuda_dropout_scale(drop.p), N, C, vec));
    CUDA_CHECK_LAUNCH("bias_dropout_add_kernel");
}

template <class T>
static __global__ void dropout_backward_kernel(T *dx, const T *dy, struct dropout_key drop,
                                               float scale, int64_t n, bool vec)
{
    FOR_EACH_PIECE(e, n)
    {
        float g[8];
        lp_load8<T>(dy, e, n, vec, g);
        const struct dropout_key dk = dropout_resolve(drop);
        for (int i = 0; i < 8; i++) g[i] *= dropout_factor(dk, scale, e + i);
        lp_store8<T>(dx, e, n, vec, g);
    }
}

/* db += sum_n dy[n, c] * dropout factor: from the fp32 products, not from the rounded dx; with dx
 * not NULL the products are stored there too, so the whole backward is one read of dy (the
 * column-sum kernel visits every (n, c) once, fetching before it applies, and dx may alias dy). */
template <class T>
struct load_dropout_rows {
    T *dx;
    const T *dy;
    struct dropout_key drop;
    float scale;
    int64_t C;
    bool vec;
    struct raw {
        uint4 g;
    };
    __device__ void fetch(int64_t n, int64_t c0, raw &r) const
    {
        r.g = lp_load8_raw<T>(dy + n * C, c0, C, vec, 0);
    }
    __device__ void apply(int64_t n, int64_t c0, const raw &r, float out[1][8]) const
    {
        lp8_unpack<T>(r.g, out[0]);
        const struct dropout_key dk = dropout_resolve(drop);
        for (int i = 0; i < 8; i++) out[0][i] *= dropout_factor(dk, scale, n * C + c0 + i);
        if (dx) lp_store8<T>(dx + n * C, c0, C, vec, out[0]);
    }
};

void cuda_bias_dropout_add_backward(struct tensor dx, struct tensor db, struct tensor dy,
                                    struct dropout_key drop)
{
    const char *op = "cuda_bias_dropout_add_backward";
    enum dtype dt = cuda_need_lp(op, "dy", dy);
    cuda_maybe(op, "dx", dx, dt);
    cuda_maybe(op, "db", db, DT_F32);
    int64_t N = dy.shape[0], C = dy.shape[1];
    if (N * C == 0) return;
    float scale = cuda_dropout_scale(drop.p);
    /* without dropout, dx over dy is the identity: only db is left */
    bool write_dx = tensor_present(dx) && !(drop.p == 0.0f && dx.data == dy.data);
    if (tensor_present(db)) {
        void *dxp = write_dx ? dx.data : NULL;
        bool vec = C % 8 == 0 && all_aligned16(dy.data, dxp, dxp, dxp);
        CUDA_LP_DISPATCH(dt, cuda_colsum_acc<load_dropout_rows<T>, 1>(
                                 {(T *)dxp, (const T *)dy.data, drop, scale, C, vec}, (float *)db.data,
                                 NULL, N, C));
        return;
    }
    if (write_dx) {
        bool vec = all_aligned16(dx.data, dy.data, dy.data, dy.data);
        CUDA_LP_DISPATCH(
            dt, dropout_backward_kernel<T><<<pieces_blocks(N * C), EW_THREADS, 0, cuda_ctx()->stream>>>(
                    (T *)dx.data, (const T *)dy.data, drop, scale, N * C, vec));
        CUDA_CHECK_LAUNCH("dropout_backward_kernel");
    }
}

/* ---- add, zero ---- */

template <class T>
static __global__ void add_kernel(T *y, const T *a, const T *b, int64_t n, bool vec)
{
    FOR_EACH_PIECE(e, n)
    {
        float u[8], v[8];
        lp_load8<T>(a, e, n, vec, u);
        lp_load8<T>(b, e, n, vec, v);
        for (int i = 0; i < 8; i++) u[i] += v[i];
        lp_store8<T>(y, e, n, vec, u);
    }
}

void cuda_add(struct tensor y, struct tensor a, struct tensor b)
{
    enum dtype dt = cuda_need_lp("cuda_add", "y", y);
    cuda_need("cuda_add", "a", a, dt);
    cuda_need("cuda_add", "b", b, dt);
    int64_t n = tensor_numel(y);
    if (n == 0) return;
    bool vec = all_aligned16(y.data, a.data, b.data, b.data);
    CUDA_LP_DISPATCH(
        dt, add_kernel<T><<<pieces_blocks(n), EW_THREADS, 0, cuda_ctx()->stream>>>(
                (T *)y.data, (const T *)a.data, (const T *)b.data, n, vec));
    CUDA_CHECK_LAUNCH("add_kernel");
}

/* y[n, :] = x[n, :] * s[n]; with vec (C % 8 == 0) a piece of 8 lies in one row. y may alias x. */
template <class T>
static __global__ void scale_rows_kernel(T *y, const T *x, const float *s, int64_t N, int64_t C,
                                         bool vec)
{
    const int64_t n_all = N * C;
    FOR_EACH_PIECE(e, n_all)
    {
        float v[8];
        lp_load8<T>(x, e, n_all, vec, v);
        if (vec) {
            const float k = s[e / C];
            for (int i = 0; i < 8; i++) v[i] *= k;
        } else {
            for (int i = 0; i < 8; i++) v[i] *= e + i < n_all ? s[(e + i) / C] : 0.0f;
        }
        lp_store8<T>(y, e, n_all, vec, v);
    }
}

void cuda_scale_rows(struct tensor y, struct tensor x, struct tensor s)
{
    enum dtype dt = cuda_need_lp("cuda_scale_rows", "y", y);
    cuda_need("cuda_scale_rows", "x", x, dt);
    cuda_need("cuda_scale_rows", "s", s, DT_F32);
    const int64_t N = x.shape[0], C = x.shape[1];
    if (N * C == 0) return;
    bool vec = C % 8 == 0 && all_aligned16(y.data, x.data, x.data, x.data);
    CUDA_LP_DISPATCH(
        dt, scale_rows_kernel<T><<<pieces_blocks(N * C), EW_THREADS, 0, cuda_ctx()->stream>>>(
                (T *)y.data, (const T *)x.data, (const float *)s.data, N, C, vec));
    CUDA_CHECK_LAUNCH("scale_rows_kernel");
}

/* Any dtype: gradients (fp32) are zeroed as often as activations. */
void cuda_zero(struct tensor x)
{
    if (!tensor_present(x) || x.device != DEV_CUDA) BUG("cuda_zero: x must be a GPU tensor");
    cuda_memset_zero(x.data, tensor_bytes(x));
}

/* Every block strides over each range in turn (ranges of a few thousand elements and of millions
 * alike, in one launch); 4-byte elements. */
static __global__ void zero_ranges_kernel(uint32_t *x, const int64_t *ranges, int64_t n)
{
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t r = 0; r < n; r++) {
        const int64_t lo = ranges[2 * r], hi = lo + ranges[2 * r + 1];
        for (int64_t i = lo + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < hi; i += stride)
            x[i] = 0u;
    }
}

void cuda_zero_ranges(struct tensor x, struct tensor ranges)
{
    if (!tensor_present(x) || x.device != DEV_CUDA || ranges.device != DEV_CUDA)
        BUG("cuda_zero_ranges: x and ranges must be GPU tensors");
    if (dtype_size(x.dtype) != 4) BUG("cuda_zero_ranges: %s elements", dtype_name(x.dtype));
    if (ranges.shape[0] == 0) return;
    struct cuda_context *ctx = cuda_ctx();
    zero_ranges_kernel<<<(unsigned)(4 * ctx->sm_count), 256, 0, ctx->stream>>>(
        (uint32_t *)x.data, (const int64_t *)ranges.data, ranges.shape[0]);
    CUDA_CHECK_LAUNCH("zero_ranges_kernel");
}

/* Any dtype, y and x alike; a device-to-device copy ordered on the backend stream. */
void cuda_copy(struct tensor y, struct tensor x)
{
    cuda_need("cuda_copy", "x", x, x.dtype);
    cuda_need("cuda_copy", "y", y, x.dtype);
    if (tensor_bytes(y) != tensor_bytes(x)) BUG("cuda_copy: y and x differ in size");
    if (tensor_bytes(x) == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(y.data, x.data, tensor_bytes(x), cudaMemcpyDeviceToDevice,
                               cuda_ctx()->stream));
}

/* linear.cu's fused GeLU backward calls these with its T. */
template void cuda_gelu_backward_bias_grad<bf16>(bf16 *dx, float *db, const bf16 *dy, const bf16 *x,
                                                 int64_t N, int64_t C, bool tanh_approx);
template void cuda_gelu_backward_bias_grad<f16>(f16 *dx, float *db, const f16 *dy, const f16 *x,
                                                int64_t N, int64_t C, bool tanh_approx);
