/* The bias-dropout-add fused with the LayerNorm or RMSNorm after it, as a pre-norm residual stream
 * runs them (mid = residual + dropout(x + b); y = norm(mid)): one warp a row computes mid while
 * loading the row, keeps it in registers (up to NORM_MAX_PIECES 8-wide pieces a lane), writes it
 * once and normalizes it, where the two ops apart would cross memory twice more. Wider rows go
 * through the two ops (elementwise.cu, norm.cu). Without a bias, a residual or mid, the same kernel
 * is the plain norm forward (norm.cu's, for the rows it takes): one read of the row, its loads all
 * issued before the sums. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/norm_rows.h"

/* Rows per block of the fused forward: blocks of 4 warps fit the SM's registers more finely than
 * 8 (1.5B's rows of 1600 keep ~90 registers a thread: 20 warps an SM instead of 16). */
enum { BDA_NORM_WARPS = 4 };

template <class T> struct bda_norm_args {
    T *mid, *y;           /* mid NULL: not stored (the plain norm, x being mid) */
    float *mean, *rstd;   /* mean NULL for RMSNorm */
    const T *x, *b, *res; /* b, res NULL when absent */
    struct dropout_key drop;
    float scale;
    const T *w, *nb;      /* nb NULL when absent */
    int64_t N, C;
    float eps;
    bool vec;
};

/* Elements [c, c + 8) of a row (raw, or widened), and their store: with VEC the row is 16-byte
 * vectors whole (C % 8 == 0, aligned), so one access and no per-element fallback in the code. */
template <class T, bool VEC>
__device__ __forceinline__ uint4 bda_load8_raw(const T *row, int64_t c, int64_t C)
{
    return VEC ? *reinterpret_cast<const uint4 *>(row + c) : lp_load8_raw<T>(row, c, C, false, 0);
}

template <class T, bool VEC>
__device__ __forceinline__ void bda_load8(const T *row, int64_t c, int64_t C, float out[8])
{
    if (VEC) lp8_load<T>(row + c, out);
    else lp_load8<T>(row, c, C, false, out);
}

template <class T, bool VEC>
__device__ __forceinline__ void bda_store8(T *row, int64_t c, int64_t C, const float in[8])
{
    if (VEC) lp8_store<T>(row + c, in);
    else lp_store8<T>(row, c, C, false, in);
}

/* Elements [c, c + 8) of row `row` of mid = res + dropout(x + b) from the row's x and res pieces
 * as loaded (raw 16-bit patterns), with bias_dropout_add_kernel's arithmetic, rounded to T as
 * stored (the norm reads the stored values); 0 past the row. */
template <class T, bool VEC, bool DROP>
__device__ __forceinline__ void bias_dropout_add_piece(const struct bda_norm_args<T> &a,
                                                       const struct dropout_key &dk, int64_t row,
                                                       int64_t c, uint4 x_raw, uint4 res_raw,
                                                       float v[8])
{
    float xv[8], bv[8], rv[8];
    lp8_unpack<T>(x_raw, xv);
    if (a.b) bda_load8<T, VEC>(a.b, c, a.C, bv);
    if (a.res) lp8_unpack<T>(res_raw, rv);
    for (int i = 0; i < 8; i++) {
        float t = a.b ? xv[i] + bv[i] : xv[i];
        if (DROP) t *= dropout_factor(dk, a.scale, row * a.C + c + i);
        t = a.res ? t + rv[i] : t;
        v[i] = VEC || c + i < a.C ? lp_to_f32(lp_from_f32<T>(t)) : 0.0f;
    }
}

/* One warp per row; lane l holds pieces c = 8 l + 256 k, k < P, in registers (P pieces cover
 * C <= 256 P). The sums run in the order of layernorm_forward_kernel / rmsnorm_forward_kernel on
 * the stored mid, so y, mean and rstd are what those kernels would give. A lane issues all its
 * loads of x and res before it computes or stores anything: mid may alias x or res, so a store
 * between them would keep the next piece's load waiting. DROP false: no dropout (p = 0), and no
 * random-number code in the kernel (see launch_bias_dropout_add_norm). */
template <class T, int P, bool RMS, bool VEC, bool DROP>
static __global__ void bias_dropout_add_norm_kernel(struct bda_norm_args<T> a)
{
    int64_t row = (int64_t)blockIdx.x * BDA_NORM_WARPS + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= a.N) return;
    uint4 xr[P], rr[P];
#pragma unroll
    for (int k = 0; k < P; k++) {
        int64_t c = (int64_t)lane * 8 + 256 * k;
        if (c >= a.C) continue;
        xr[k] = bda_load8_raw<T, VEC>(a.x + row * a.C, c, a.C);
        if (a.res) rr[k] = bda_load8_raw<T, VEC>(a.res + row * a.C, c, a.C);
    }
    const struct dropout_key dk = dropout_resolve(a.drop);
    /* the row's mid values, kept packed in T (they are T values: half the registers, so more warps
       fit and more loads are in flight) */
    uint4 pv[P];
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < P; k++) {
        int64_t c = (int64_t)lane * 8 + 256 * k;
        if (c >= a.C) continue;
        float v[8];
        bias_dropout_add_piece<T, VEC, DROP>(a, dk, row, c, xr[k], rr[k], v);
        for (int i = 0; i < 8; i++) s += RMS ? v[i] * v[i] : v[i];
        uint32_t *w = reinterpret_cast<uint32_t *>(&pv[k]);
#pragma unroll
        for (int i = 0; i < 4; i++) w[i] = lp_pack2<T>(v[2 * i], v[2 * i + 1]);
        if (!a.mid) continue;
        if (VEC) *reinterpret_cast<uint4 *>(a.mid + row * a.C + c) = pv[k];
        else bda_store8<T, VEC>(a.mid + row * a.C, c, a.C, v);
    }
    float mu = 0.0f, r;
    if (RMS) {
        r = norm_rstd(warp_sum(s) / (float)a.C, a.eps);
    } else {
        mu = warp_sum(s) / (float)a.C;
        float q = 0.0f;
#pragma unroll
        for (int k = 0; k < P; k++) {
            int64_t c = (int64_t)lane * 8 + 256 * k;
            if (c >= a.C) continue;
            float v[8];
            lp8_unpack<T>(pv[k], v);
            for (int i = 0; i < 8; i++)
                if (VEC || c + i < a.C) q += (v[i] - mu) * (v[i] - mu);
        }
        r = norm_rstd(warp_sum(q) / (float)a.C, a.eps); /* biased variance, as torch */
    }
    if (lane == 0) {
        if (!RMS) a.mean[row] = mu;
        a.rstd[row] = r;
    }
#pragma unroll
    for (int k = 0; k < P; k++) {
        int64_t c = (int64_t)lane * 8 + 256 * k;
        if (c >= a.C) continue;
        float v[8], wv[8], bv[8], o[8];
        lp8_unpack<T>(pv[k], v);
        bda_load8<T, VEC>(a.w, c, a.C, wv);
        if (!RMS && a.nb) bda_load8<T, VEC>(a.nb, c, a.C, bv);
        for (int i = 0; i < 8; i++)
            o[i] = RMS ? v[i] * r * wv[i] : (v[i] - mu) * r * wv[i] + (a.nb ? bv[i] : 0.0f);
        bda_store8<T, VEC>(a.y + row * a.C, c, a.C, o);
    }
}

/* Launches the kernel that keeps ceil(C / 256) pieces per lane (the 16-byte-only code when the rows
 * allow: the per-element fallback's registers would cost warps, 103 -> 88 at P = 7); false when
 * C is too wide. */
template <class T, bool RMS, bool VEC, bool DROP>
static bool launch_bias_dropout_add_norm_p(const struct bda_norm_args<T> &a)
{
    dim3 grid((unsigned)((a.N + BDA_NORM_WARPS - 1) / BDA_NORM_WARPS)), block(BDA_NORM_WARPS * 32);
    cudaStream_t st = cuda_ctx()->stream;
    switch ((a.C + 255) / 256) {
#define BDA_NORM_CASE(P)                                                                           \
    case P: bias_dropout_add_norm_kernel<T, P, RMS, VEC, DROP><<<grid, block, 0, st>>>(a); break;
        BDA_NORM_CASE(1) BDA_NORM_CASE(2) BDA_NORM_CASE(3) BDA_NORM_CASE(4)
        BDA_NORM_CASE(5) BDA_NORM_CASE(6) BDA_NORM_CASE(7) BDA_NORM_CASE(8)
#undef BDA_NORM_CASE
    default: return false;
    }
    CUDA_CHECK_LAUNCH("bias_dropout_add_norm_kernel");
    return true;
}

/* The kernel for a's rows and dropout. Without dropout the instantiation has no random-number code:
 * the per-element Philox unrolled over a lane's pieces made the kernel three times longer, its
 * warps stalled on instruction fetch (Nsight Compute, 16384 rows of 1600: instruction-fetch stalls
 * a third of the time, 53% of the memory bandwidth); without it 0.081 ms against 0.102 there, 0.096
 * against 0.102 at 32768 x 1024, 0.140 against 0.143 at 65536 x 768 (H100). t * 1.0f is t, so the
 * results are the same bits. The rare rows that are not 16-byte vectors keep one instantiation. */
template <class T, bool RMS>
static bool launch_bias_dropout_add_norm(const struct bda_norm_args<T> &a)
{
    if (!a.vec) return launch_bias_dropout_add_norm_p<T, RMS, false, true>(a);
    return a.drop.p != 0.0f ? launch_bias_dropout_add_norm_p<T, RMS, true, true>(a)
                            : launch_bias_dropout_add_norm_p<T, RMS, true, false>(a);
}

/* Either fused forward (mean and norm_b absent for RMSNorm), every 16-bit argument of dtype T:
 * checks the arguments and runs the kernel; false (nothing done) when the rows are too wide. */
template <class T, bool RMS>
static bool bias_dropout_add_norm_fused(const char *op, struct tensor mid, struct tensor y,
                                        struct tensor mean, struct tensor rstd, struct tensor x,
                                        struct tensor b, struct tensor residual,
                                        struct dropout_key drop, struct tensor w,
                                        struct tensor norm_b, float eps)
{
    const enum dtype dt = lp_dtype<T>::value;
    cuda_maybe(op, "mid", mid, dt);
    cuda_need(op, "y", y, dt);
    cuda_need(op, "rstd", rstd, DT_F32);
    cuda_need(op, "x", x, dt);
    cuda_maybe(op, "b", b, dt);
    cuda_maybe(op, "residual", residual, dt);
    cuda_need(op, "w", w, dt);
    if (!RMS) {
        cuda_need(op, "mean", mean, DT_F32);
        cuda_maybe(op, "norm_b", norm_b, dt);
    }
    struct bda_norm_args<T> a;
    memset(&a, 0, sizeof a);
    a.mid = tensor_present(mid) ? (T *)mid.data : NULL;
    a.y = (T *)y.data;
    a.mean = RMS ? NULL : (float *)mean.data;
    a.rstd = (float *)rstd.data;
    a.x = (const T *)x.data;
    a.b = tensor_present(b) ? (const T *)b.data : NULL;
    a.res = tensor_present(residual) ? (const T *)residual.data : NULL;
    a.drop = drop;
    a.scale = cuda_dropout_scale(drop.p);
    a.w = (const T *)w.data;
    a.nb = !RMS && tensor_present(norm_b) ? (const T *)norm_b.data : NULL;
    a.N = x.shape[0];
    a.C = x.shape[1];
    a.eps = eps;
    a.vec = rows_vectorizable(a.C, a.mid ? a.mid : a.y, a.y, a.x, a.w) && cuda_aligned16(a.b) &&
            cuda_aligned16(a.res) && cuda_aligned16(a.nb);
    if (a.N == 0) return true;
    return launch_bias_dropout_add_norm<T, RMS>(a);
}

void cuda_bias_dropout_add_layernorm_forward(struct tensor mid, struct tensor y, struct tensor mean,
                                             struct tensor rstd, struct tensor x, struct tensor b,
                                             struct tensor residual, struct dropout_key drop,
                                             struct tensor w, struct tensor norm_b, float eps)
{
    const char *op = "cuda_bias_dropout_add_layernorm_forward";
    enum dtype dt = cuda_need_lp(op, "mid", mid);
    bool done = false;
    CUDA_LP_DISPATCH(dt, done = bias_dropout_add_norm_fused<T, false>(
                             op, mid, y, mean, rstd, x, b, residual, drop, w, norm_b, eps));
    if (done) return;
    /* rows too wide for the registers: the two kernels, mid crossing memory in between */
    cuda_bias_dropout_add_forward(mid, x, b, residual, drop);
    cuda_layernorm_forward(y, mean, rstd, mid, w, norm_b, eps);
}

void cuda_bias_dropout_add_rmsnorm_forward(struct tensor mid, struct tensor y, struct tensor rstd,
                                           struct tensor x, struct tensor b,
                                           struct tensor residual, struct dropout_key drop,
                                           struct tensor w, float eps)
{
    const char *op = "cuda_bias_dropout_add_rmsnorm_forward";
    enum dtype dt = cuda_need_lp(op, "mid", mid);
    bool done = false;
    CUDA_LP_DISPATCH(dt, done = bias_dropout_add_norm_fused<T, true>(
                             op, mid, y, tensor_none(), rstd, x, b, residual, drop, w,
                             tensor_none(), eps));
    if (done) return;
    cuda_bias_dropout_add_forward(mid, x, b, residual, drop);
    cuda_rmsnorm_forward(y, rstd, mid, w, eps);
}

bool cuda_layernorm_forward_in_registers(struct tensor y, struct tensor mean, struct tensor rstd,
                                         struct tensor x, struct tensor w, struct tensor b,
                                         float eps)
{
    const char *op = "cuda_layernorm_forward";
    enum dtype dt = cuda_need_lp(op, "y", y);
    struct dropout_key nodrop = {0};
    bool done = false;
    CUDA_LP_DISPATCH(dt, done = bias_dropout_add_norm_fused<T, false>(
                             op, tensor_none(), y, mean, rstd, x, tensor_none(), tensor_none(),
                             nodrop, w, b, eps));
    return done;
}

bool cuda_rmsnorm_forward_in_registers(struct tensor y, struct tensor rstd, struct tensor x,
                                       struct tensor w, float eps)
{
    const char *op = "cuda_rmsnorm_forward";
    enum dtype dt = cuda_need_lp(op, "y", y);
    struct dropout_key nodrop = {0};
    bool done = false;
    CUDA_LP_DISPATCH(dt, done = bias_dropout_add_norm_fused<T, true>(
                             op, tensor_none(), y, tensor_none(), rstd, x, tensor_none(),
                             tensor_none(), nodrop, w, tensor_none(), eps));
    return done;
}
