/* The forward GEMM of our own on Hopper (kernels/cuda/hopper_gemm.cuh's ping-pong kernel) in the
 * CUDA backend: y = x w^T (+ bias) and, for linear_fc1 with the GeLU, act = gelu_tanh(y) beside
 * it, bf16. With MEGATRON_HOPPER_GEMM=1 linear.cu times it against cuBLASLt's algorithms per GEMM
 * shape and keeps the faster (off by default: docs/PERFORMANCE.md).
 * Its y is cuBLASLt's bit for bit where both sum K in order (the bias added to the fp32 product,
 * rounded once); its act is the GeLU of the rounded y (what the unfused GEMM and GeLU kernel give),
 * where cuBLASLt's GELU_AUX epilogue applies it to the fp32 product. Built for sm_90a only: used
 * on devices of compute capability 9.0. */
#include <cudaTypedefs.h>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/hopper_gemm.cuh"

/* Megatron's bias-GeLU (the tanh form), as cuda_gelu_forward computes it up to its last bits
 * (hopper::gelu_tanh_fast). */
struct gelu_tanh_act {
    __device__ float operator()(float x) const { return hopper::gelu_tanh_fast(x); }
};

/* The variants linear.cu times: tile columns and cluster size (two CTAs sharing w's tiles). */
static const struct {
    int pn, cl;
    const char *name;
} VARIANTS[HOPPER_GEMM_VARIANTS] = {{192, 2, "128x192 tiles, clusters of 2"},
                                    {192, 1, "128x192 tiles"},
                                    {128, 2, "128x128 tiles, clusters of 2"}};

static const void *kernel_of(int outs, int v)
{
    using hopper::pingpong_kernel;
    static const void *k[2][HOPPER_GEMM_VARIANTS] = {
        {(const void *)pingpong_kernel<1, 192, 2, gelu_tanh_act>,
         (const void *)pingpong_kernel<1, 192, 1, gelu_tanh_act>,
         (const void *)pingpong_kernel<1, 128, 2, gelu_tanh_act>},
        {(const void *)pingpong_kernel<2, 192, 2, gelu_tanh_act>,
         (const void *)pingpong_kernel<2, 192, 1, gelu_tanh_act>,
         (const void *)pingpong_kernel<2, 128, 2, gelu_tanh_act>}};
    return k[outs - 1][v];
}

static size_t smem_bytes(int v)
{
    return VARIANTS[v].pn == 128 ? hopper::pp_smem_bytes<128>() : hopper::pp_smem_bytes<192>();
}

const char *hopper_gemm_variant_name(int v) { return VARIANTS[v].name; }

bool hopper_gemm_fits(const void *y, const void *act, const void *x, const void *w,
                      const void *bias, int64_t N, int64_t K, int64_t F)
{
    /* the TMA's 16-byte aligned bases and row strides; the bias read in pairs */
    return cuda_ctx()->hopper_gemm && N > 0 && K > 0 && F > 0 && K % 8 == 0 && F % 8 == 0 &&
           N < INT32_MAX && K < INT32_MAX && F < INT32_MAX && cuda_aligned16(y) &&
           (!act || cuda_aligned16(act)) && cuda_aligned16(x) && cuda_aligned16(w) &&
           ((uintptr_t)bias & 3) == 0;
}

/* Declared in hopper_gemm.cuh. */
CUtensorMap hopper_tensor_map(const void *p, int64_t rows, int64_t cols, uint32_t box_rows,
                              uint32_t box_cols)
{
    struct cuda_context *ctx = cuda_ctx();
    if (!ctx->tensor_map_encode) {
        cudaDriverEntryPointQueryResult found;
        void *fn = NULL;
        CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                                    cudaEnableDefault, &found));
        if (found != cudaDriverEntryPointSuccess || !fn)
            BUG("the CUDA driver has no cuTensorMapEncodeTiled");
        ctx->tensor_map_encode = fn;
    }
    CUtensorMap m;
    cuuint64_t dim[2] = {(cuuint64_t)cols, (cuuint64_t)rows}, stride[1] = {(cuuint64_t)cols * 2};
    cuuint32_t box[2] = {box_cols, box_rows}, elem[2] = {1, 1};
    CUresult r = ((PFN_cuTensorMapEncodeTiled_v12000)ctx->tensor_map_encode)(
        &m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void *>(p), dim, stride, box, elem,
        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        BUG("cuTensorMapEncodeTiled: error %d for a [%lld, %lld] matrix", (int)r, (long long)rows,
            (long long)cols);
    return m;
}

/* Launches kernel (variant v's tiles and clusters) over the tiles of an [N, F] output with args;
 * *most caches how many of its clusters fit at once (0: not asked yet). */
static void launch(const void *kernel, int *most, int v, int64_t N, int64_t F, void **args)
{
    struct cuda_context *ctx = cuda_ctx();
    const int pn = VARIANTS[v].pn, cl = VARIANTS[v].cl;
    cudaLaunchAttribute at;
    at.id = cudaLaunchAttributeClusterDimension;
    at.val.clusterDim.x = (unsigned)cl, at.val.clusterDim.y = 1, at.val.clusterDim.z = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.blockDim = dim3(hopper::PP_THREADS);
    cfg.dynamicSmemBytes = smem_bytes(v);
    cfg.stream = ctx->stream;
    cfg.attrs = &at;
    cfg.numAttrs = 1;
    if (*most == 0) { /* once per kernel: its shared memory allowed, the clusters that fit */
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem_bytes(v)));
        cfg.gridDim = dim3((unsigned)(ctx->sm_count / cl * cl));
        CUDA_CHECK(cudaOccupancyMaxActiveClusters(most, kernel, &cfg));
        if (*most < 1) BUG("hopper_gemm: no cluster of variant %d fits a GPU", v);
    }
    const int64_t units = ((N + hopper::PM - 1) / hopper::PM + cl - 1) / cl * ((F + pn - 1) / pn);
    cfg.gridDim = dim3((unsigned)((units < *most ? units : *most) * cl));
    CUDA_CHECK(cudaLaunchKernelExC(&cfg, kernel, args));
}

void hopper_gemm_forward(int v, void *y, void *act, const void *x, const void *w, const void *bias,
                         int64_t N, int64_t K, int64_t F)
{
    const int pn = VARIANTS[v].pn, cl = VARIANTS[v].cl, outs = act ? 2 : 1;
    CUtensorMap map_x = hopper_tensor_map(x, N, K, hopper::PM, hopper::BK);
    CUtensorMap map_w = hopper_tensor_map(w, F, K, (uint32_t)(pn / cl), hopper::BK);
    CUtensorMap map_y = hopper_tensor_map(y, N, F, 64, 64);
    CUtensorMap map_act = act ? hopper_tensor_map(act, N, F, 64, 64) : map_y;
    const bf16 *b = (const bf16 *)bias;
    int n = (int)N, f = (int)F, k = (int)K;
    gelu_tanh_act gelu;
    void *args[] = {&map_x, &map_w, &map_y, &map_act, &b, &n, &f, &k, &gelu};
    launch(kernel_of(outs, v), &cuda_ctx()->hopper_clusters[outs - 1][v], v, N, F, args);
}

/* ---- the output layer with its cross-entropy (output_layer_ce.cu) ---- */

/* OUTS 7's act: each row's reference, and its sum over column tile tf into sums[row, tf]. */
struct ce_exp_act {
    const float *ref;
    float *sums;
    int tiles;
    __device__ void rows(int row, int tf, float s) const { sums[(int64_t)row * tiles + tf] = s; }
    __device__ float operator()(float x) const { return x; } /* (the kernel's other modes') */
};

/* The plain logits GEMM, run only where *flag is set (the fallback when the exponentials did not
 * fit their range). */
struct gated_logits_act {
    const int *flag;
    __device__ bool open() const { return *(volatile const int *)flag != 0; }
    __device__ float operator()(float x) const { return x; }
};

/* 128 x 192 tiles in clusters of 2: the logits' fastest in output_layer_probe (docs) */
enum { CE_VARIANT = 0 };

int hopper_output_layer_ce_tiles(int64_t V) { return (int)((V + 191) / 192); }

void hopper_output_layer_exp(void *probs, const void *x, const void *w, const float *ref,
                             float *tile_sums, int64_t N, int64_t K, int64_t V)
{
    const int v = CE_VARIANT, pn = VARIANTS[v].pn, cl = VARIANTS[v].cl;
    CUtensorMap map_x = hopper_tensor_map(x, N, K, hopper::PM, hopper::BK);
    CUtensorMap map_w = hopper_tensor_map(w, V, K, (uint32_t)(pn / cl), hopper::BK);
    CUtensorMap map_p = hopper_tensor_map(probs, N, V, 64, 64);
    const bf16 *b = NULL;
    int n = (int)N, f = (int)V, k = (int)K;
    ce_exp_act act = {ref, tile_sums, hopper_output_layer_ce_tiles(V)};
    void *args[] = {&map_x, &map_w, &map_p, &map_p, &b, &n, &f, &k, &act};
    launch((const void *)hopper::pingpong_kernel<7, 192, 2, ce_exp_act>,
           &cuda_ctx()->hopper_ce_clusters[0], v, N, V, args);
}

void hopper_output_layer_logits_if(const int *flag, void *logits, const void *x, const void *w,
                                   int64_t N, int64_t K, int64_t V)
{
    const int v = CE_VARIANT, pn = VARIANTS[v].pn, cl = VARIANTS[v].cl;
    CUtensorMap map_x = hopper_tensor_map(x, N, K, hopper::PM, hopper::BK);
    CUtensorMap map_w = hopper_tensor_map(w, V, K, (uint32_t)(pn / cl), hopper::BK);
    CUtensorMap map_y = hopper_tensor_map(logits, N, V, 64, 64);
    const bf16 *b = NULL;
    int n = (int)N, f = (int)V, k = (int)K;
    gated_logits_act act = {flag};
    void *args[] = {&map_x, &map_w, &map_y, &map_y, &b, &n, &f, &k, &act};
    launch((const void *)hopper::pingpong_kernel<1, 192, 2, gated_logits_act>,
           &cuda_ctx()->hopper_ce_clusters[1], v, N, V, args);
}

/* ---- the MLP's GeLU with its derivative kept for the backward (linear.cu) ---- */

/* OUTS 8's act: gelu and gelu' of the rounded pre-activation (the backend's fast forms). */
struct gelu_both_act {
    __device__ float operator()(float x) const { return hopper::gelu_tanh_fast(x); }
    __device__ void both(float x, float &g, float &dg) const { hopper::gelu_tanh_both(x, g, dg); }
};

/* OUTS 6's act when the second box holds gelu'(pre) itself: the multiply alone; cols: fc1's bias
 * gradient, two partial rows a row tile. */
struct saved_grad_act {
    float *partials;
    int F;
    __device__ float operator()(float x) const { return x; }
    __device__ void cols(int part, int col, float v) const
    {
        partials[(int64_t)part * F + col] = v;
    }
};

static const void *saved_kernel_of(int backward, int v)
{
    using hopper::pingpong_kernel;
    static const void *k[2][HOPPER_GEMM_VARIANTS] = {
        {(const void *)pingpong_kernel<8, 192, 2, gelu_both_act>,
         (const void *)pingpong_kernel<8, 192, 1, gelu_both_act>,
         (const void *)pingpong_kernel<8, 128, 2, gelu_both_act>},
        {(const void *)pingpong_kernel<6, 192, 2, saved_grad_act>,
         (const void *)pingpong_kernel<6, 192, 1, saved_grad_act>,
         (const void *)pingpong_kernel<6, 128, 2, saved_grad_act>}};
    return k[backward][v];
}

int hopper_dgelu_partial_rows(int64_t N)
{
    return (int)(2 * ((N + hopper::PM - 1) / hopper::PM));
}

/* One launch of the forward (backward 0: OUTS 8) or the backward (1: OUTS 6) by variant v. */
struct saved_call {
    int backward;
    void *out0, *out1;          /* forward: gelu'(pre), act; backward: dpre, unused */
    const void *x, *w, *bias;   /* backward: dy, fc2's weight transposed, no bias */
    const void *dgelu;          /* backward: gelu'(pre), read through the TMA */
    float *partials;
    int64_t N, K, F;
};

static void saved_launch(const struct saved_call *c, int v)
{
    const int pn = VARIANTS[v].pn, cl = VARIANTS[v].cl;
    CUtensorMap map_x = hopper_tensor_map(c->x, c->N, c->K, hopper::PM, hopper::BK);
    CUtensorMap map_w = hopper_tensor_map(c->w, c->F, c->K, (uint32_t)(pn / cl), hopper::BK);
    CUtensorMap map_o0 = hopper_tensor_map(c->out0, c->N, c->F, 64, 64);
    CUtensorMap map_o1 = hopper_tensor_map(c->backward ? c->dgelu : c->out1, c->N, c->F, 64, 64);
    const bf16 *b = (const bf16 *)c->bias;
    int n = (int)c->N, f = (int)c->F, k = (int)c->K;
    gelu_both_act both;
    saved_grad_act saved = {c->partials, f};
    void *args[] = {&map_x, &map_w, &map_o0, &map_o1, &b, &n, &f, &k,
                    c->backward ? (void *)&saved : (void *)&both};
    launch(saved_kernel_of(c->backward, v), &cuda_ctx()->hopper_saved_clusters[c->backward][v],
           v, c->N, c->F, args);
}

/* The variant for c's shape: timed once per shape on its first call (every variant writes the
 * same bits, so the choice changes only the time), 128 x 192 tiles alone untimed. */
static int saved_variant(const struct saved_call *c)
{
    struct cuda_context *ctx = cuda_ctx();
    for (int i = 0; i < ctx->num_saved_choices; i++) {
        const struct hopper_choice *e = &ctx->saved_choice[i];
        if (e->backward == c->backward && e->n == c->N && e->k == c->K && e->f == c->F)
            return e->variant;
    }
    int best = 1;
    if (cuda_gemm_autotune()) {
        cudaEvent_t start, stop;
        CUDA_CHECK(cudaEventCreate(&start));
        CUDA_CHECK(cudaEventCreate(&stop));
        float best_ms = 0.0f;
        for (int v = 0; v < HOPPER_GEMM_VARIANTS; v++) {
            saved_launch(c, v); /* its first launch, and a warm-up */
            CUDA_CHECK(cudaEventRecord(start, ctx->stream));
            for (int r = 0; r < 3; r++) saved_launch(c, v);
            CUDA_CHECK(cudaEventRecord(stop, ctx->stream));
            CUDA_CHECK(cudaEventSynchronize(stop));
            float ms;
            CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
            if (v == 0 || ms < best_ms) best = v, best_ms = ms;
        }
        CUDA_CHECK(cudaEventDestroy(start));
        CUDA_CHECK(cudaEventDestroy(stop));
    }
    if (ctx->num_saved_choices < CUDA_SAVED_CHOICES)
        ctx->saved_choice[ctx->num_saved_choices++] =
            (struct hopper_choice){c->backward, c->N, c->K, c->F, best};
    return best;
}

bool hopper_gelu_saved_fits(const void *out0, const void *out1, const void *x, const void *w,
                            const void *bias, int64_t N, int64_t K, int64_t F)
{
    return hopper_gemm_fits(out0, out1, x, w, bias, N, K, F) && F % 64 == 0;
}

void hopper_gemm_gelu_saving_grad(void *dgelu, void *act, const void *x, const void *w,
                                  const void *bias, int64_t N, int64_t K, int64_t F)
{
    struct saved_call c = {0, dgelu, act, x, w, bias, NULL, NULL, N, K, F};
    saved_launch(&c, saved_variant(&c));
}

void hopper_gemm_dgelu_saved(void *dpre, float *partials, const void *dy, const void *w_t,
                             const void *dgelu, int64_t N, int64_t K, int64_t F)
{
    struct saved_call c = {1, dpre, NULL, dy, w_t, NULL, dgelu, partials, N, K, F};
    saved_launch(&c, saved_variant(&c));
}

/* t[c, r] = a[r, c] for a [R, C] bf16, by 32 x 32 tiles through shared memory. */
static __global__ void transpose_kernel(bf16 *t, const bf16 *a, int64_t R, int64_t C)
{
    __shared__ bf16 tile[32][33];
    const int64_t r0 = (int64_t)blockIdx.y * 32, c0 = (int64_t)blockIdx.x * 32;
    for (int i = threadIdx.y; i < 32; i += blockDim.y) {
        const int64_t r = r0 + i, c = c0 + threadIdx.x;
        if (r < R && c < C) tile[i][threadIdx.x] = a[r * C + c];
    }
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += blockDim.y) {
        const int64_t c = c0 + i, r = r0 + threadIdx.x;
        if (r < R && c < C) t[c * R + r] = tile[threadIdx.x][i];
    }
}

/* The same for R and C multiples of 64 (16-byte aligned rows): 64 x 64 tiles, a thread moving
 * 16 bytes at a time in and out (for fc2's 1600 x 6400 weight at 1.5B, 21.4 us on an H100 where
 * the 32 x 32 kernel's 2-byte accesses took 37.5 and a copy 13.7). In the tile, row r's
 * 8-element chunk k sits at chunk k ^ (r / 8 % 8): a thread's eight reads down a column (rows 8
 * apart) and the warp's 16-byte stores meet no bank twice. */
__device__ __forceinline__ int transpose_at(int r, int c)
{
    return r * 64 + (((c / 8) ^ (r / 8 % 8)) * 8) + c % 8;
}

static __global__ void __launch_bounds__(256)
    transpose64_kernel(bf16 *t, const bf16 *a, int64_t R, int64_t C)
{
    __shared__ __align__(16) bf16 tile[64 * 64];
    const int64_t r0 = (int64_t)blockIdx.y * 64, c0 = (int64_t)blockIdx.x * 64;
    const int row = threadIdx.x / 8, chunk = threadIdx.x % 8;
#pragma unroll
    for (int j = 0; j < 2; j++) { /* a's rows r0 + row (+ 32): columns c0 + 8 chunk .. + 8 */
        const int r = row + 32 * j;
        *reinterpret_cast<uint4 *>(&tile[transpose_at(r, 8 * chunk)]) =
            *reinterpret_cast<const uint4 *>(a + (r0 + r) * C + c0 + 8 * chunk);
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < 2; j++) { /* t's row c0 + cc: columns r0 + 8 chunk .. + 8 */
        const int cc = row + 32 * j;
        __align__(16) bf16 v[8];
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = tile[transpose_at(8 * chunk + e, cc)];
        *reinterpret_cast<uint4 *>(t + (c0 + cc) * R + r0 + 8 * chunk) =
            *reinterpret_cast<uint4 *>(v);
    }
}

void hopper_transpose(void *t, const void *a, int64_t R, int64_t C)
{
    if (R % 64 == 0 && C % 64 == 0 && cuda_aligned16(t) && cuda_aligned16(a)) {
        CHECK(C / 64 <= 0x7fffffff && R / 64 <= 65535);
        dim3 grid((unsigned)(C / 64), (unsigned)(R / 64));
        transpose64_kernel<<<grid, 256, 0, cuda_ctx()->stream>>>((bf16 *)t, (const bf16 *)a, R, C);
        CUDA_CHECK_LAUNCH("transpose64_kernel");
        return;
    }
    CHECK((C + 31) / 32 <= 0x7fffffff && (R + 31) / 32 <= 65535);
    dim3 grid((unsigned)((C + 31) / 32), (unsigned)((R + 31) / 32)), block(32, 8);
    transpose_kernel<<<grid, block, 0, cuda_ctx()->stream>>>((bf16 *)t, (const bf16 *)a, R, C);
    CUDA_CHECK_LAUNCH("transpose_kernel");
}
