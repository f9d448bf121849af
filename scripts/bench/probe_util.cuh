/* What the Hopper GEMM probes (wgmma_gelu_probe.cu, output_layer_probe.cu) share: TMA maps of
 * row-major bf16 matrices, cluster launch configurations and their grids, event timing, output
 * comparison, and a cuBLASLt GEMM with an epilogue whose algorithm is the fastest of the
 * heuristic's. BENCH_PROG is defined and scripts/bench/bench_util.h included first. */
#ifndef MEGATRON_SCRIPTS_BENCH_PROBE_UTIL_CUH
#define MEGATRON_SCRIPTS_BENCH_PROBE_UTIL_CUH

#include <cublasLt.h>
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/hopper_gemm.cuh"

/* the threads of both probes' kernels */
enum { PROBE_THREADS = hopper::PP_THREADS };

static PFN_cuTensorMapEncodeTiled_v12000 encode_tiled;

/* The driver's cuTensorMapEncodeTiled, once before any map_2d. */
static void probe_tma_init(void)
{
    cudaDriverEntryPointQueryResult found;
    CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", (void **)&encode_tiled, 12000,
                                        cudaEnableDefault, &found));
}

/* The TMA map of a row-major bf16 [rows, cols] matrix read in boxes of box_rows x 64. */
static CUtensorMap map_2d(void *p, uint64_t rows, uint64_t cols, uint32_t box_rows)
{
    CUtensorMap m;
    cuuint64_t dim[2] = {cols, rows}, stride[1] = {cols * 2};
    cuuint32_t box[2] = {hopper::BK, box_rows}, elem[2] = {1, 1};
    CUresult r = encode_tiled(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, p, dim, stride, box, elem,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                              CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        fprintf(stderr, "%s: cuTensorMapEncodeTiled: error %d\n", BENCH_PROG, (int)r);
        exit(1);
    }
    return m;
}

static float bf16_value(uint16_t v)
{
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A launch of grid CTAs of PROBE_THREADS in clusters of cl; at holds the cluster attribute. */
static cudaLaunchConfig_t launch_config(int cl, int grid, size_t smem, cudaLaunchAttribute *at)
{
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    at->id = cudaLaunchAttributeClusterDimension;
    at->val.clusterDim.x = (unsigned)cl, at->val.clusterDim.y = 1, at->val.clusterDim.z = 1;
    cfg.gridDim = dim3((unsigned)grid), cfg.blockDim = dim3(PROBE_THREADS);
    cfg.dynamicSmemBytes = smem, cfg.attrs = at, cfg.numAttrs = 1;
    return cfg;
}

/* The CTAs to launch kernel k with (smem bytes of dynamic shared memory, allowed here; clusters
 * of cl) for units of work in cluster-sized pieces: as many clusters as fit at once, at most one a
 * unit. */
static int probe_grid(const void *k, int cl, size_t smem, long units)
{
    CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    cudaLaunchAttribute at;
    cudaLaunchConfig_t cfg = launch_config(cl, 1024, smem, &at);
    int most = 0;
    CK(cudaOccupancyMaxActiveClusters(&most, k, &cfg));
    return (int)(units < most ? units : most) * cl;
}

/* Launches k with args as launch_config sets it up. */
static void probe_launch(const void *k, int cl, int grid, size_t smem, void **args)
{
    cudaLaunchAttribute at;
    cudaLaunchConfig_t cfg = launch_config(cl, grid, smem, &at);
    CK(cudaLaunchKernelExC(&cfg, k, args));
}

/* Best milliseconds per call over 5 batches of 10 calls, after 3 warm-ups. */
template <class P> static float time_ms(void (*fn)(P *), P *p)
{
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; i++) fn(p);
    float best = 1e30f;
    for (int r = 0; r < 5; r++) {
        CK(cudaEventRecord(e0));
        for (int i = 0; i < 10; i++) fn(p);
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (ms / 10 < best) best = ms / 10;
    }
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return best;
}

/* mine against ref (named ref_name in the line printed), n bf16 values. */
static void compare(const char *what, const void *mine, const void *ref, size_t n,
                    const char *ref_name)
{
    uint16_t *a = (uint16_t *)malloc(n * 2), *b = (uint16_t *)malloc(n * 2);
    if (!a || !b) exit(1);
    CK(cudaMemcpy(a, mine, n * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b, ref, n * 2, cudaMemcpyDeviceToHost));
    double num = 0.0, den = 0.0;
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        double x = bf16_value(a[i]), y = bf16_value(b[i]);
        num += (x - y) * (x - y);
        den += y * y;
        same += a[i] == b[i];
    }
    printf("  %s against %s: relative L2 error %.2e, %.2f%% of the bits equal\n", what, ref_name,
           sqrt(num / (den > 0 ? den : 1)), 100.0 * (double)same / (double)n);
    free(a);
    free(b);
}

/* A cuBLASLt GEMM d [N, F] = x [N, K] times w, row-major bf16: w [F, K] with ta T (the forward),
 * [K, F] with ta N; epilogue epi with a bf16 bias [F] and an aux matrix [N, F] where not NULL.
 * Column-major to cuBLASLt: D [F, N] = op(w) x. */
struct lt_gemm {
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    const void *w, *x;
    void *d, *ws;
    size_t ws_bytes;
    int found; /* the heuristic's algorithms, the fastest of which runs */
};

static void lt_gemm_run(struct lt_gemm *g)
{
    const float one = 1.0f, zero = 0.0f;
    LT(cublasLtMatmul(g->lt, g->desc, &one, g->w, g->la, g->x, g->lb, &zero, g->d, g->lc, g->d,
                      g->lc, &g->algo, g->ws, g->ws_bytes, 0));
}

/* Sets g up (lt and a workspace of ws_bytes given) and picks the fastest of the heuristic's 8
 * algorithms by time_ms; exits if there is none. */
static void lt_gemm_init(struct lt_gemm *g, cublasLtHandle_t lt, void *ws, size_t ws_bytes,
                         cublasOperation_t ta, cublasLtEpilogue_t epi, const void *w,
                         const void *x, void *d, const void *bias, void *aux, int N, int K,
                         int F)
{
    memset(g, 0, sizeof *g);
    g->lt = lt, g->ws = ws, g->ws_bytes = ws_bytes, g->w = w, g->x = x, g->d = d;
    LT(cublasLtMatmulDescCreate(&g->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t tb = CUBLAS_OP_N;
    LT(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    LT(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias) {
        cudaDataType_t bias_type = CUDA_R_16BF;
        LT(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                          &bias_type, sizeof bias_type));
        LT(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                          sizeof bias));
    }
    if (aux) {
        int64_t ld = F;
        LT(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux,
                                          sizeof aux));
        LT(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld,
                                          sizeof ld));
    }
    if (ta == CUBLAS_OP_N)
        LT(cublasLtMatrixLayoutCreate(&g->la, CUDA_R_16BF, F, K, F));
    else
        LT(cublasLtMatrixLayoutCreate(&g->la, CUDA_R_16BF, K, F, K));
    LT(cublasLtMatrixLayoutCreate(&g->lb, CUDA_R_16BF, K, N, K));
    LT(cublasLtMatrixLayoutCreate(&g->lc, CUDA_R_16BF, F, N, F));
    cublasLtMatmulPreference_t pref;
    LT(cublasLtMatmulPreferenceCreate(&pref));
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                            &g->ws_bytes, sizeof g->ws_bytes));
    cublasLtMatmulHeuristicResult_t res[8];
    LT(cublasLtMatmulAlgoGetHeuristic(lt, g->desc, g->la, g->lb, g->lc, g->lc, pref, 8, res,
                                      &g->found));
    LT(cublasLtMatmulPreferenceDestroy(pref));
    if (g->found == 0) {
        fprintf(stderr, "%s: cuBLASLt offers no algorithm for epilogue %d here\n", BENCH_PROG,
                (int)epi);
        exit(1);
    }
    float best = 1e30f;
    int best_i = 0;
    for (int i = 0; i < g->found; i++) {
        g->algo = res[i].algo;
        const float ms = time_ms(lt_gemm_run, g);
        if (ms < best) best = ms, best_i = i;
    }
    g->algo = res[best_i].algo;
}

#endif
