/* Shared by the CUDA backend's .cu files (never included from C): checked CUDA, cuBLASLt and cuDNN
 * calls, the backend context that cuda_init creates once (stream, library handles, workspaces,
 * plan caches), argument checks, the 16-bit storage types and their vector helpers, dropout masks, the deterministic column sum
 * that every bias / norm-weight gradient uses, and the few kernels one .cu file lends another. */
#ifndef MEGATRON_KERNELS_CUDA_CUDA_COMMON_H
#define MEGATRON_KERNELS_CUDA_CUDA_COMMON_H

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdint.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/rng.h"

/* util/error.h is C11 (_Noreturn); its declarations are the same functions seen from C++. */
#define _Noreturn [[noreturn]]
extern "C" {
#include "util/error.h"
}
#undef _Noreturn

typedef __nv_bfloat16 bf16;
typedef __half f16;

/* ---- checked calls: a failure names the call, the file and line, and the library's reason ---- */

[[noreturn]] void cuda_fail_runtime(cudaError_t e, const char *call, const char *file, int line);
[[noreturn]] void cuda_fail_cublas(cublasStatus_t s, const char *call, const char *file, int line);
[[noreturn]] void cuda_fail_cudnn(cudnnStatus_t s, const char *call, const char *file, int line);

#define CUDA_CHECK(call)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) cuda_fail_runtime(e_, #call, __FILE__, __LINE__);                   \
    } while (0)
#define CUBLAS_CHECK(call)                                                                         \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) cuda_fail_cublas(s_, #call, __FILE__, __LINE__);          \
    } while (0)
#define CUDNN_CHECK(call)                                                                          \
    do {                                                                                           \
        cudnnStatus_t s_ = (call);                                                                 \
        if (s_ != CUDNN_STATUS_SUCCESS) cuda_fail_cudnn(s_, #call, __FILE__, __LINE__);            \
    } while (0)
/* After every kernel launch: a bad launch configuration shows up here, not at the next sync. */
#define CUDA_CHECK_LAUNCH(what) CUDA_CHECK(cudaPeekAtLastError())

/* ---- the backend context ---- */

/* The variant of our GEMM timed fastest for a shape of the MLP's saved-gelu' kernels
 * (hopper_gemm.cu). */
enum { CUDA_SAVED_CHOICES = 16 };
/* Whether a linear layer's shape adds the residual in its GEMM (linear.cu, timed once a shape). */
enum { CUDA_RESIDUAL_CHOICES = 16 };
struct cuda_residual_choice {
    int64_t n, in, out;
    int dt;
    bool fuse;
};
struct hopper_choice {
    int backward;
    int64_t n, k, f;
    int variant;
};

/* The variants of the forward GEMM of our own (hopper_gemm.cu); HOPPER_GEMM_TIMED lets each shape
 * take the fastest of them and cuBLASLt's, HOPPER_GEMM_NEVER keeps cuBLASLt's. */
enum {
    HOPPER_GEMM_VARIANTS = CUDA_HOPPER_GEMM_VARIANTS,
    HOPPER_GEMM_TIMED = CUDA_HOPPER_GEMM_TIMED,
    HOPPER_GEMM_NEVER = CUDA_HOPPER_GEMM_NEVER
};

/* One cuBLASLt algorithm chosen for a GEMM shape (linear.cu keeps them). */
struct cuda_gemm_plan {
    uint64_t key[4];
    bool used;
    bool supported; /* cuBLASLt offered an algorithm (fused epilogues may have none) */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
    int own; /* a forward GEMM timed faster by hopper_gemm.cu: its variant + 1; else 0 */
};
enum { CUDA_GEMM_CACHE = 128 };

/* The path a shape of fc2's dx through the GeLU takes (m x n x k, 16-bit type, with or without
 * fc1's bias gradient): linear.cu times the paths cuBLASLt offers once. */
struct cuda_dgelu_choice {
    int64_t m, n, k;
    int type;
    bool bias;
    enum cuda_dgelu_path path;
};
enum { CUDA_DGELU_CHOICES = 64 };

/* One cuDNN SDPA execution plan built for an attention shape (attention.cu keeps them). */
struct cuda_sdpa_plan;
enum { CUDA_SDPA_CACHE = 32 };

/* Pinned host slots that cuda_memcpy_h2d_staged copies through, used in turn. */
enum { CUDA_STAGING_SLOTS = 16 };

/* One allocation of cuda_alloc (for the memory report's count when it is freed). */
struct cuda_block {
    void *p;
    size_t bytes;
};

struct cuda_context {
    bool ready;
    int device;
    int sm_count;
    cudaStream_t stream;     /* every kernel and library call of the backend runs on it */
    cublasLtHandle_t lt;
    cudnnHandle_t dnn;
    void *lt_workspace;      /* cuBLASLt's one workspace */
    size_t lt_workspace_bytes;
    void *scratch;           /* grow-only temporaries of one op (partial sums, sort buffers, ...) */
    size_t scratch_bytes;
    void *zeroed; /* grow-only, all zero whenever an op starts (cuda_zeroed) */
    size_t zeroed_bytes;
    uint64_t memory_epoch;   /* counts the frees of memory a captured graph may use (graph.cu) */
    struct cuda_memory memory;  /* the memory report's counts */
    struct cuda_block *blocks; /* what cuda_alloc handed out */
    size_t num_blocks, cap_blocks;
    struct cuda_gemm_plan gemm[CUDA_GEMM_CACHE];
    int gemm_next_victim;
    struct cuda_sdpa_plan *sdpa[CUDA_SDPA_CACHE];
    struct cuda_gelu_paths gelu_paths; /* what the GeLU-fused linear ops last did */
    struct cuda_dgelu_choice dgelu_choice[CUDA_DGELU_CHOICES];
    int num_dgelu_choices;
    enum cuda_dgelu_path dgelu_forced; /* CUDA_DGELU_TIMED unless a test forces one */
    unsigned char *staging;  /* CUDA_STAGING_SLOTS pinned slots of staging_slot_bytes each */
    size_t staging_slot_bytes;
    int staging_next;
    cudaEvent_t staging_done[CUDA_STAGING_SLOTS]; /* after the copy last queued from each slot */
    /* the forward GEMM of our own (hopper_gemm.cu): whether this device runs it (compute
       capability 9.0), whether linear.cu may use it (HOPPER_GEMM_NEVER unless
       MEGATRON_HOPPER_GEMM=1 sets HOPPER_GEMM_TIMED, or a variant a test forces), the clusters of
       each kernel (one output or two, variant) that fit at once (0: not asked yet), and the
       driver's cuTensorMapEncodeTiled */
    bool hopper_gemm;
    int hopper_forced;
    int hopper_clusters[2][HOPPER_GEMM_VARIANTS];
    int hopper_ce_clusters[2]; /* the same for output_layer_ce.cu's two kernels */
    int hopper_saved_clusters[2][HOPPER_GEMM_VARIANTS]; /* and the saved-gelu' ones (fwd, bwd) */
    struct hopper_choice saved_choice[CUDA_SAVED_CHOICES];
    int num_saved_choices;
    /* attention's backward where ours (flash_backward.cu) applies: enum cuda_attention_backward
       (ours by key blocks unless MEGATRON_FLASH_BACKWARD says cudnn or heads); its kernel's shared
       memory allowed once */
    int flash_backward;
    bool flash_smem_set;
    bool deterministic; /* --deterministic-mode (cuda_set_deterministic) */
    bool fused_mlp;            /* linear.cu may keep gelu'(pre) (unless MEGATRON_FUSED_MLP=0) */
    bool fused_ce;             /* output_layer_ce.cu may fuse (unless MEGATRON_FUSED_CE=0) */
    bool fused_residual;       /* linear.cu adds a residual in the GEMM (MEGATRON_FUSED_RESIDUAL) */
    struct cuda_residual_choice residual_choice[CUDA_RESIDUAL_CHOICES];
    int num_residual_choices;
    void *tensor_map_encode;
};

/* The context; a bug (exit 1) if cuda_init was not called. */
struct cuda_context *cuda_ctx(void);

/* Device scratch of at least bytes, valid until the next call of cuda_scratch. It grows (after a
 * stream sync) and never shrinks, so steady-state steps allocate nothing. */
void *cuda_scratch(size_t bytes);

/* Device memory of at least bytes, all zero when an op starts: the op that uses it leaves it zero
 * again (accumulators that the op's last reader clears). It grows as cuda_scratch does, zeroed,
 * and is the same memory for every op. */
void *cuda_zeroed(size_t bytes);

/* Carves consecutive 256-byte aligned pieces out of one scratch request. */
static inline size_t cuda_align256(size_t n) { return (n + 255) & ~(size_t)255; }

/* ---- argument checks (ops.c checks shapes; the backend checks its dtype contract) ---- */

/* t is present, on the GPU and of dtype dt; otherwise a bug naming the op and argument. */
void cuda_need(const char *op, const char *name, struct tensor t, enum dtype dt);
/* t is present, on the GPU and of a 16-bit storage dtype (DT_BF16 or DT_F16): returns it, for the
 * op's other 16-bit arguments to be checked against with cuda_need. */
enum dtype cuda_need_lp(const char *op, const char *name, struct tensor t);
/* Like cuda_need for an argument that may be absent. */
void cuda_maybe(const char *op, const char *name, struct tensor t, enum dtype dt);
/* True when every present pointer is 16-byte aligned (for 8-wide 16-bit loads). */
static inline bool cuda_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Blocks for n work items of `threads` each, capped to keep grid-stride loops cheap. */
static inline unsigned cuda_blocks(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > 65535LL * 32) b = 65535LL * 32;
    return (unsigned)b;
}

/* ---- the 16-bit storage types ----
 * Weights and activations are bf16 (--bf16) or fp16 (--fp16); every kernel that touches them is a
 * template on T, one of the two, and does its math in fp32: loads widen, stores round to nearest
 * even. Host code picks T from the tensors' dtype with CUDA_LP_DISPATCH. */

__device__ __forceinline__ float lp_to_f32(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float lp_to_f32(f16 v) { return __half2float(v); }

template <class T> __device__ __forceinline__ T lp_from_f32(float v);
template <> __device__ __forceinline__ bf16 lp_from_f32<bf16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ f16 lp_from_f32<f16>(float v) { return __float2half_rn(v); }

/* Two values rounded into one 32-bit word: a in the low half (the lower address). */
template <class T> __device__ __forceinline__ uint32_t lp_pack2(float a, float b);
template <> __device__ __forceinline__ uint32_t lp_pack2<bf16>(float a, float b)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t *>(&h);
}
template <> __device__ __forceinline__ uint32_t lp_pack2<f16>(float a, float b)
{
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t *>(&h);
}

/* The word's two values widened: the low half first. bf16 to fp32 is a shift. */
template <class T> __device__ __forceinline__ float2 lp_unpack2(uint32_t w);
template <> __device__ __forceinline__ float2 lp_unpack2<bf16>(uint32_t w)
{
    return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}
template <> __device__ __forceinline__ float2 lp_unpack2<f16>(uint32_t w)
{
    __half2 h = *reinterpret_cast<__half2 *>(&w);
    return __half22float2(h);
}

/* Bit patterns of T's special values, for fills of raw loads. */
template <class T> struct lp_bits;
template <> struct lp_bits<bf16> {
    static constexpr uint16_t neg_inf = 0xff80, nan = 0x7fc0;
};
template <> struct lp_bits<f16> {
    static constexpr uint16_t neg_inf = 0xfc00, nan = 0x7e00;
};

/* The dtype enum of T (host and device). */
template <class T> struct lp_dtype;
template <> struct lp_dtype<bf16> {
    static constexpr enum dtype value = DT_BF16;
};
template <> struct lp_dtype<f16> {
    static constexpr enum dtype value = DT_F16;
};

/* Runs the statements with the type T bound to the storage type of dt (DT_BF16 or DT_F16; any
 * other dtype is a bug): CUDA_LP_DISPATCH(x.dtype, kernel<T><<<g, b, 0, s>>>(...)); */
#define CUDA_LP_DISPATCH(dt, ...)                                                                  \
    do {                                                                                           \
        if ((dt) == DT_F16) {                                                                      \
            typedef f16 T;                                                                         \
            __VA_ARGS__;                                                                           \
        } else {                                                                                   \
            CHECK((dt) == DT_BF16);                                                                \
            typedef bf16 T;                                                                        \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
    } while (0)

/* ---- 16-bit vectors: 8 values in one 16-byte access ---- */

template <class T> __device__ __forceinline__ void lp8_unpack(uint4 u, float out[8])
{
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = lp_unpack2<T>(w[i]);
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}

template <class T> __device__ __forceinline__ void lp8_load(const T *p, float out[8])
{
    lp8_unpack<T>(*reinterpret_cast<const uint4 *>(p), out);
}

/* The uint4 is built word by word in place (the form the bf16-only store had: NVVM unrolls some
 * callers' loops differently when the four words come through make_uint4). */
template <class T> __device__ __forceinline__ void lp8_store(T *p, const float in[8])
{
    uint4 u;
    uint32_t *w = reinterpret_cast<uint32_t *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) w[i] = lp_pack2<T>(in[2 * i], in[2 * i + 1]);
    *reinterpret_cast<uint4 *>(p) = u;
}

/* Loads elements [e, e+8) of p (fewer past n, the rest 0): one 16-byte access when vec allows. */
template <class T>
__device__ __forceinline__ void lp_load8(const T *p, int64_t e, int64_t n, bool vec, float out[8])
{
    if (vec && e + 8 <= n) {
        lp8_load<T>(p + e, out);
        return;
    }
#pragma unroll
    for (int i = 0; i < 8; i++) out[i] = e + i < n ? lp_to_f32(p[e + i]) : 0.0f;
}

template <class T>
__device__ __forceinline__ void lp_store8(T *p, int64_t e, int64_t n, bool vec, const float in[8])
{
    if (vec && e + 8 <= n) {
        lp8_store<T>(p + e, in);
        return;
    }
#pragma unroll
    for (int i = 0; i < 8; i++)
        if (e + i < n) p[e + i] = lp_from_f32<T>(in[i]);
}

/* ---- dropout: element e of a site is kept iff rng_uniform(seed, stream, offset + e) >= p ---- */

/* The key with its stream complete: the iteration's part read from device memory when the key
 * has one (once per piece of elements, not per element). */
__device__ __forceinline__ struct dropout_key dropout_resolve(struct dropout_key d)
{
    if (d.device_stream) {
        d.stream = rng_mix64(*d.device_stream ^ d.stream);
        d.device_stream = NULL;
    }
    return d;
}

/* The dropout factor of element e: 0 if dropped, else scale (1 when dropout is off); d resolved
 * by dropout_resolve. */
__device__ __forceinline__ float dropout_factor(struct dropout_key d, float scale, int64_t e)
{
    if (d.p == 0.0f) return 1.0f;
    return rng_uniform(d.seed, d.stream, d.offset + (uint64_t)e) >= d.p ? scale : 0.0f;
}

/* The dropout scale 1/(1-p) in fp32, as the CPU backend computes it. */
static inline float cuda_dropout_scale(float p) { return 1.0f / (1.0f - p); }

/* ---- 16-bit vectors kept packed: 8 values in a uint4 until the math needs them ---- */

/* Elements [e, e+8) of p as raw 16-bit patterns, one 16-byte access when vec allows; elements at
 * or past n read as `fill` (lp_bits<T>: 0 for a zero, neg_inf for -inf). Widen with lp8_unpack. */
template <class T>
__device__ __forceinline__ uint4 lp_load8_raw(const T *p, int64_t e, int64_t n, bool vec, uint16_t fill)
{
    if (vec && e + 8 <= n) return *reinterpret_cast<const uint4 *>(p + e);
    const uint16_t *h = reinterpret_cast<const uint16_t *>(p);
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint32_t lo = e + 2 * i < n ? h[e + 2 * i] : fill;
        uint32_t hi = e + 2 * i + 1 < n ? h[e + 2 * i + 1] : fill;
        w[i] = lo | (hi << 16);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

/* ---- deterministic column sums: dst[c] += sum over rows n of value(n, c) ----
 * Bias and norm-weight gradients. Rows are cut into chunks of COLSUM_ROWS; a block sums one chunk
 * of 256 columns (8 per thread, 8 row lanes) in a fixed order into a partial row, and
 * cuda_colsum_reduce adds the partial rows in an order fixed by their number, in double. The
 * order depends only on the shape, so the result is the same on every run and every GPU (no
 * float atomics). Kernels that make their own partial rows (the fused norm backward) hand them to
 * cuda_colsum_reduce too. */
enum { COLSUM_ROWS = 256, COLSUM_LANES = 8, COLSUM_COLS = 256 };
/* Rows whose loads a thread issues before it does the math of the first: enough bytes in flight
 * per SM to cover HBM latency at full bandwidth (a functor's stores may alias its loads, so the
 * compiler cannot hoist the next row's loads above this row's stores by itself). */
enum { COLSUM_BATCH = 4 };

/* Load is a functor giving value(n, c0 + i), i < 8, of each of its NOUT sums in two steps:
 *   struct raw { ... };                                           what one piece's loads return
 *   __device__ void fetch(int64_t n, int64_t c0, raw &r) const;   the global loads only
 *   __device__ void apply(int64_t n, int64_t c0, const raw &r, float out[NOUT][8]) const;
 * apply may store (a functor that writes dx as it goes); columns past C are ignored. */
template <class Load, int NOUT>
__global__ void __launch_bounds__(COLSUM_COLS / 8 * COLSUM_LANES, 3)
    colsum_partial_kernel(Load load, float *partials, int64_t N, int64_t C)
{
    __shared__ float red[NOUT][COLSUM_LANES][COLSUM_COLS / 8][9];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t c0 = (int64_t)blockIdx.x * COLSUM_COLS + (int64_t)tx * 8;
    const int64_t chunk = blockIdx.y, n0 = chunk * COLSUM_ROWS;
    const int64_t n1 = n0 + COLSUM_ROWS < N ? n0 + COLSUM_ROWS : N;
    float acc[NOUT][8];
#pragma unroll
    for (int k = 0; k < NOUT; k++)
#pragma unroll
        for (int i = 0; i < 8; i++) acc[k][i] = 0.0f;
    if (c0 < C) {
        /* rows n0 + ty + 8 j in increasing j: the order of every thread's sum */
        for (int64_t n = n0 + ty; n < n1; n += COLSUM_LANES * COLSUM_BATCH) {
            typename Load::raw r[COLSUM_BATCH];
#pragma unroll
            for (int j = 0; j < COLSUM_BATCH; j++)
                if (n + j * COLSUM_LANES < n1) load.fetch(n + j * COLSUM_LANES, c0, r[j]);
#pragma unroll
            for (int j = 0; j < COLSUM_BATCH; j++) {
                if (n + j * COLSUM_LANES >= n1) continue;
                float v[NOUT][8];
                load.apply(n + j * COLSUM_LANES, c0, r[j], v);
#pragma unroll
                for (int k = 0; k < NOUT; k++)
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[k][i] += v[k][i];
            }
        }
    }
#pragma unroll
    for (int k = 0; k < NOUT; k++)
#pragma unroll
        for (int i = 0; i < 8; i++) red[k][ty][tx][i] = acc[k][i];
    __syncthreads();
    if (ty == 0 && c0 < C) {
#pragma unroll
        for (int k = 0; k < NOUT; k++) {
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float s = red[k][0][tx][i];
                for (int l = 1; l < COLSUM_LANES; l++) s += red[k][l][tx][i];
                if (c0 + i < C) partials[((int64_t)k * gridDim.y + chunk) * C + c0 + i] = s;
            }
        }
    }
}

/* dst0[c] += sum over chunks of partials[0][chunk][c], and dst1 from partials[1] when dst1 is not
 * NULL (either may be NULL), in double, in an order fixed by chunks and C (colsum.cu). */
void cuda_colsum_reduce(float *dst0, float *dst1, const float *partials, int chunks, int64_t C);
/* The same with a third sum, partials[2] into dst2, in the same launch. */
void cuda_colsum_reduce3(float *dst0, float *dst1, float *dst2, const float *partials,
                         int chunks, int64_t C);

/* Runs both kernels on the backend stream; dst1 may be NULL when NOUT is 1 (then it is ignored). */
template <class Load, int NOUT>
void cuda_colsum_acc(Load load, float *dst0, float *dst1, int64_t N, int64_t C)
{
    if (N == 0 || C == 0) return;
    struct cuda_context *ctx = cuda_ctx();
    int chunks = (int)((N + COLSUM_ROWS - 1) / COLSUM_ROWS);
    CHECK(chunks <= 65535);
    float *partials = (float *)cuda_scratch((size_t)NOUT * chunks * C * sizeof(float));
    dim3 grid((unsigned)((C + COLSUM_COLS - 1) / COLSUM_COLS), (unsigned)chunks);
    dim3 block(COLSUM_COLS / 8, COLSUM_LANES);
    colsum_partial_kernel<Load, NOUT><<<grid, block, 0, ctx->stream>>>(load, partials, N, C);
    CUDA_CHECK_LAUNCH("colsum_partial_kernel");
    cuda_colsum_reduce(dst0, NOUT > 1 ? dst1 : NULL, partials, chunks, C);
}

/* ---- kernels one .cu file lends another ---- */

/* The plain norm forwards by norm_fused.cu's register-resident kernel (one read of each row):
 * false, nothing done, where the rows are too wide for it. */
bool cuda_layernorm_forward_in_registers(struct tensor y, struct tensor mean, struct tensor rstd,
                                         struct tensor x, struct tensor w, struct tensor b,
                                         float eps);
bool cuda_rmsnorm_forward_in_registers(struct tensor y, struct tensor rstd, struct tensor x,
                                       struct tensor w, float eps);

/* y = x w^T (+ bias) and, when act is not NULL, act = gelu_tanh(y as rounded) for x [N, K],
 * w [F, K] and y, act [N, F], bf16, by variant v (< HOPPER_GEMM_VARIANTS) of the GEMM of our own
 * (hopper_gemm.cu), on the backend's stream; only where hopper_gemm_fits says it can (this device,
 * the sizes' and pointers' alignment; bias may be NULL). */
bool hopper_gemm_fits(const void *y, const void *act, const void *x, const void *w,
                      const void *bias, int64_t N, int64_t K, int64_t F);
void hopper_gemm_forward(int v, void *y, void *act, const void *x, const void *w, const void *bias,
                         int64_t N, int64_t K, int64_t F);
const char *hopper_gemm_variant_name(int v);

/* Causal attention's backward of our own (flash_backward.cu) for attention shape s with its
 * tensors at these places (attention.cu's layouts: dqkv and qkv [B T, 3 n 64], dout and out
 * [B T, n 64], lse [B, n, T]), on the backend's stream, by key blocks or (--deterministic-mode,
 * or the switch) by heads; only where flash_backward_fits says it applies: flash_backward_takes
 * (this device, the switch not on cuDNN's, bf16, head dimension 64, n = g, no dropout,
 * T % 128 == 0) and 16-byte aligned tensors. */
bool flash_backward_takes(struct attention_shape s, enum dtype dt, float dropout_p);
bool flash_backward_fits(struct attention_shape s, enum dtype dt, float dropout_p, const void *dqkv,
                         const void *qkv, const void *dout, const void *out, const void *lse);
/* With db (fp32 [3 n 64], may be NULL) the form by key blocks also adds dqkv's column sums into
 * it, summed as the tiles leave, and says so (true); false: db is the caller's to sum. */
bool flash_backward(void *dqkv, float *db, const void *dout, const void *qkv, const float *lse,
                    const void *out, struct attention_shape s);

/* The MLP's GeLU with gelu'(pre) kept for the backward instead of pre (linear.cu), on our GEMM
 * where hopper_gelu_saved_fits: gelu_saving_grad writes dgelu = gelu'(pre) and act = gelu(pre)
 * for pre = x w^T + bias rounded to bf16 (x [N, K], w [F, K]); dgelu_saved writes dpre =
 * (dy w_t^T rounded) * dgelu for dy [N, K], w_t [F, K] (fc2's weight transposed) and two rows a
 * 128-row tile of partial column sums of dpre into partials [hopper_dgelu_partial_rows(N) + 2, F]
 * (the first rows; the 2 more are room for the zeros a cluster's tile past N writes).
 * Each shape's variant is timed on its first call unless MEGATRON_GEMM_AUTOTUNE=0 (all give the
 * same bits). transpose: t [C, R] = a [R, C]^T, bf16. */
bool hopper_gelu_saved_fits(const void *out0, const void *out1, const void *x, const void *w,
                            const void *bias, int64_t N, int64_t K, int64_t F);
void hopper_gemm_gelu_saving_grad(void *dgelu, void *act, const void *x, const void *w,
                                  const void *bias, int64_t N, int64_t K, int64_t F);
int hopper_dgelu_partial_rows(int64_t N);
void hopper_gemm_dgelu_saved(void *dpre, float *partials, const void *dy, const void *w_t,
                             const void *dgelu, int64_t N, int64_t K, int64_t F);
void hopper_transpose(void *t, const void *a, int64_t R, int64_t C);
/* GEMM algorithms are timed per shape (linear.cu; MEGATRON_GEMM_AUTOTUNE=0: not) */
bool cuda_gemm_autotune(void);

/* The output layer's GEMM for its fused cross-entropy (output_layer_ce.cu), with hopper_gemm_fits'
 * conditions (no bias): probs = exp(x w^T - ref[row]) (the product rounded to bf16 first, then
 * the exponential rounded) and tile_sums[row, t] = the fp32 sum of those exponentials over column
 * tile t of hopper_output_layer_ce_tiles(V); x [N, K], w [V, K], probs [N, V] bf16, ref 16-byte
 * aligned. logits_if: logits = x w^T, only where *flag is set when it runs. */
int hopper_output_layer_ce_tiles(int64_t V);
void hopper_output_layer_exp(void *probs, const void *x, const void *w, const float *ref,
                             float *tile_sums, int64_t N, int64_t K, int64_t V);
void hopper_output_layer_logits_if(const int *flag, void *logits, const void *x, const void *w,
                                   int64_t N, int64_t K, int64_t V);

/* The cross-entropy's forward and backward in one read of the logits (loss.cu's, as
 * cuda_cross_entropy_forward_backward for bf16 [N, V] logits in place), run only where *flag is
 * set, also setting row_scale[n] = 1; only where row_fits (a row of V in shared memory). */
bool cuda_cross_entropy_row_fits(int64_t V);
void cuda_cross_entropy_forward_backward_if(const int *flag, float *losses, float *row_scale,
                                            bf16 *logits, const int32_t *targets,
                                            const float *dlosses, int64_t N, int64_t V);

/* dx[N, C] = dy * gelu'(x) elementwise (dx may alias dy); when db is not NULL also
 * db[c] += sum over n of those fp32 products, in one pass (elementwise.cu). */
template <class T>
void cuda_gelu_backward_bias_grad(T *dx, float *db, const T *dy, const T *x, int64_t N, int64_t C,
                                  bool tanh_approx);
/* The same where dgelu holds gelu'(pre) itself (linear.cu's saved path): dx = dy * dgelu. */
void cuda_gelu_backward_saved_bias_grad(bf16 *dx, float *db, const bf16 *dy, const bf16 *dgelu,
                                        int64_t N, int64_t C);

/* ---- the GeLU ---- */

#define SQRT_HALF 0.70710678118654752f      /* 1/sqrt(2) */
#define SQRT_2_OVER_PI 0.79788456080286536f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f                /* Hendrycks & Gimpel 2016, the tanh form */

/* gelu(x) = x Phi(x), or its tanh approximation (Hendrycks & Gimpel, "GELUs", 2016). */
__device__ __forceinline__ float cuda_gelu(float x, bool tanh_approx)
{
    if (tanh_approx)
        return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)));
    return 0.5f * x * (1.0f + erff(x * SQRT_HALF));
}

/* ---- the special-function unit ---- */

/* 2^x in one SFU instruction (ex2.approx.ftz: relative error about 2^-22; results below 2^-126
 * flush to 0, 2^-inf = 0). Where a kernel's exponentials would otherwise rival its memory time. */
__device__ __forceinline__ float exp2_approx(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

#define LOG2E_F 1.44269504088896341f /* log2(e): exp(x) = 2^(x log2(e)) */

/* ---- warp and block reductions in a fixed order ---- */

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

#endif
