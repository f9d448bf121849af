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

/* The TMA map of a row-major bf16 [rows, cols] matrix in boxes of box_rows x box_cols, the
 * 128-byte swizzle. */
static CUtensorMap tensor_map(const void *p, int64_t rows, int64_t cols, uint32_t box_rows,
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
    CUtensorMap map_x = tensor_map(x, N, K, hopper::PM, hopper::BK);
    CUtensorMap map_w = tensor_map(w, F, K, (uint32_t)(pn / cl), hopper::BK);
    CUtensorMap map_y = tensor_map(y, N, F, 64, 64);
    CUtensorMap map_act = act ? tensor_map(act, N, F, 64, 64) : map_y;
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
    CUtensorMap map_x = tensor_map(x, N, K, hopper::PM, hopper::BK);
    CUtensorMap map_w = tensor_map(w, V, K, (uint32_t)(pn / cl), hopper::BK);
    CUtensorMap map_p = tensor_map(probs, N, V, 64, 64);
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
    CUtensorMap map_x = tensor_map(x, N, K, hopper::PM, hopper::BK);
    CUtensorMap map_w = tensor_map(w, V, K, (uint32_t)(pn / cl), hopper::BK);
    CUtensorMap map_y = tensor_map(logits, N, V, 64, 64);
    const bf16 *b = NULL;
    int n = (int)N, f = (int)V, k = (int)K;
    gated_logits_act act = {flag};
    void *args[] = {&map_x, &map_w, &map_y, &map_y, &b, &n, &f, &k, &act};
    launch((const void *)hopper::pingpong_kernel<1, 192, 2, gated_logits_act>,
           &cuda_ctx()->hopper_ce_clusters[1], v, N, V, args);
}
