/* How much faster a GEMM of the linear layers could run than what our autotuning picks: cuBLASLt's
 * heuristic offers at most 8 algorithms a shape (linear.cu times those). This also enumerates,
 * for every algorithm id cuBLASLt lists whose capabilities include the epilogue, each tile x
 * stages x cluster shape x CTA swizzle x custom option (no split-k) that cublasLtMatmulAlgoCheck
 * accepts (at most MAX_CONFIGS an id, CHECK_SECONDS of checking an id), and times them beside
 * the plain search's 8. (On an H100 with CUDA 13 the Hopper kernels, algorithm 66, accept no
 * configuration set this way: only the heuristic reaches them.)
 * Usage: gemm_search M N K [TN|NN|NT] [none|bias|gelu_aux_bias|dgelu] [plain|sustained]
 *   (plain: the heuristic's 8 alone, no enumeration; sustained: each of the 8 timed briefly and
 *   after a second of back-to-back calls, at the clocks the power limit leaves)
 *   D[M, N] = op(A) op(B) in cuBLASLt's column-major terms, bf16 in and out, fp32 accumulation
 *   (the linear forward is TN with M = out, N = rows, K = in; dx is NN, dw NT); e.g. fc2's dx
 *   through the GeLU at GPT-2 124M: gemm_search 3072 65536 768 NN dgelu.
 * Prints the plain search's first and fastest, each id's fastest, and the fastest overall with its
 * configuration. Screening takes the median of SCREEN_RUNS runs; a configuration within 2% of the
 * best so far is timed again over RUNS. Random data (never zeros), a warm-up run each. */
#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_PROG "gemm_search"
#include "scripts/bench/bench_util.h"

enum { RUNS = 9, SCREEN_RUNS = 3, MAX_IDS = 256, PER_ID = 8, MAX_CONFIGS = 300 };
enum { WORKSPACE = 32 << 20 };
static const double CHECK_SECONDS = 3.0; /* per algorithm id */

struct problem {
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    void *A, *B, *D, *aux, *ws;
    float *bias;
    cudaStream_t stream;
    cudaEvent_t t0, t1;
};

/* A device buffer of n random bf16 values in [-1, 1), never zeros. */
static void *dev_random_bf16(size_t n, uint64_t seed)
{
    uint16_t *h = bench_random_bf16(n, seed, 1.0f);
    void *d = bench_upload(h, n);
    free(h);
    return d;
}

/* Median milliseconds of algo on p, or -1 when it does not run. */
static float time_algo(struct problem *p, const cublasLtMatmulAlgo_t *algo, int runs)
{
    const float alpha = 1.0f, beta = 0.0f;
    float ms[RUNS];
    for (int r = -1; r < runs; r++) {
        CK(cudaEventRecord(p->t0, p->stream));
        if (cublasLtMatmul(p->lt, p->desc, &alpha, p->A, p->a, p->B, p->b, &beta, p->D, p->d, p->D,
                           p->d, algo, p->ws, WORKSPACE, p->stream) != CUBLAS_STATUS_SUCCESS)
            return -1.0f;
        CK(cudaEventRecord(p->t1, p->stream));
        CK(cudaEventSynchronize(p->t1));
        if (r >= 0) CK(cudaEventElapsedTime(&ms[r], p->t0, p->t1));
    }
    for (int i = 1; i < runs; i++) /* insertion sort: runs is small */
        for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) {
            float t = ms[j];
            ms[j] = ms[j - 1];
            ms[j - 1] = t;
        }
    return ms[runs / 2];
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Milliseconds a call of algo on p takes when the GPU has run it back to back for a second: at
 * the clocks its power draw leaves (a step of training runs at the board's power limit). */
static float time_sustained(struct problem *p, const cublasLtMatmulAlgo_t *algo)
{
    const float alpha = 1.0f, beta = 0.0f;
    double start = seconds();
    int calls = 0;
    while (seconds() - start < 1.0) {
        for (int r = 0; r < 10; r++, calls++)
            if (cublasLtMatmul(p->lt, p->desc, &alpha, p->A, p->a, p->B, p->b, &beta, p->D, p->d,
                               p->D, p->d, algo, p->ws, WORKSPACE, p->stream) !=
                CUBLAS_STATUS_SUCCESS)
                return -1.0f;
        CK(cudaStreamSynchronize(p->stream));
    }
    int timed = calls / 4 + 1; /* about a quarter of a second more */
    CK(cudaEventRecord(p->t0, p->stream));
    for (int r = 0; r < timed; r++)
        LT(cublasLtMatmul(p->lt, p->desc, &alpha, p->A, p->a, p->B, p->b, &beta, p->D, p->d, p->D,
                          p->d, algo, p->ws, WORKSPACE, p->stream));
    CK(cudaEventRecord(p->t1, p->stream));
    CK(cudaEventSynchronize(p->t1));
    float ms;
    CK(cudaEventElapsedTime(&ms, p->t0, p->t1));
    return ms / (float)timed;
}

static void describe(const cublasLtMatmulAlgo_t *algo, char *out, size_t size)
{
    int32_t id = 0, splitk = 0;
    uint32_t tile = 0, stages = 0, swizzle = 0, reduction = 0;
    uint16_t cluster = 0;
    size_t w;
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &w);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile,
                                         &w);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages,
                                         sizeof stages, &w);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk,
                                         sizeof splitk, &w);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &reduction,
                                         sizeof reduction, &w);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swizzle,
                                         sizeof swizzle, &w);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cluster,
                                         sizeof cluster, &w);
    snprintf(out, size, "algo %d tile %u stages %u split-k %d (reduction %u) swizzle %u cluster %u",
             (int)id, tile, stages, (int)splitk, reduction, swizzle, (unsigned)cluster);
}

/* Up to `max` answers of cuBLASLt's heuristic for p. */
static int heuristic(struct problem *p, cublasLtMatmulHeuristicResult_t *res, int max)
{
    cublasLtMatmulPreference_t pref;
    LT(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = WORKSPACE;
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                            sizeof ws));
    int found = 0;
    if (cublasLtMatmulAlgoGetHeuristic(p->lt, p->desc, p->a, p->b, p->d, p->d, pref, max, res,
                                       &found) != CUBLAS_STATUS_SUCCESS)
        found = 0;
    LT(cublasLtMatmulPreferenceDestroy(pref));
    return found;
}

/* Every configuration of algorithm id that cublasLtMatmulAlgoCheck accepts for p (no split-k):
 * the id's tiles x stages x cluster shapes x CTA swizzles x custom options, up to max of them. */
static int enumerate(struct problem *p, int id, cublasLtEpilogue_t epi, cublasLtMatmulAlgo_t *out,
                     int max, int *checked)
{
    cublasLtMatmulAlgo_t algo;
    if (cublasLtMatmulAlgoInit(p->lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF,
                               CUDA_R_16BF, CUDA_R_16BF, id, &algo) != CUBLAS_STATUS_SUCCESS)
        return 0;
    uint32_t epi_mask = 0, swizzle_max = 0, tiles[128], stages[128];
    int32_t custom_max = 0;
    size_t w = 0, n_tiles = 0, n_stages = 0;
    cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_EPILOGUE_MASK, &epi_mask,
                                      sizeof epi_mask, &w);
    if ((epi_mask & (uint32_t)epi) != (uint32_t)epi) return 0;
    cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_CTA_SWIZZLING_SUPPORT, &swizzle_max,
                                      sizeof swizzle_max, &w);
    cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_CUSTOM_OPTION_MAX, &custom_max,
                                      sizeof custom_max, &w);
    if (cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_TILE_IDS, tiles, sizeof tiles,
                                          &w) == CUBLAS_STATUS_SUCCESS)
        n_tiles = w / sizeof tiles[0];
    if (cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_STAGES_IDS, stages,
                                          sizeof stages, &w) == CUBLAS_STATUS_SUCCESS)
        n_stages = w / sizeof stages[0];
    if (n_tiles == 0) tiles[n_tiles++] = CUBLASLT_MATMUL_TILE_UNDEFINED;
    if (n_stages == 0) stages[n_stages++] = CUBLASLT_MATMUL_STAGES_UNDEFINED;
    int n = 0;
    double start = seconds();
    for (size_t t = 0; t < n_tiles; t++)
        for (size_t s = 0; s < n_stages; s++)
            for (uint16_t c = 0; c < CUBLASLT_CLUSTER_SHAPE_END; c++)
                for (uint32_t z = 0; z <= swizzle_max; z++)
                    for (int32_t o = 0; o <= custom_max && o < 4; o++) {
                        cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_TILE_ID,
                                                             &tiles[t], sizeof tiles[t]);
                        cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_STAGES_ID,
                                                             &stages[s], sizeof stages[s]);
                        cublasLtMatmulAlgoConfigSetAttribute(
                            &algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &c, sizeof c);
                        cublasLtMatmulAlgoConfigSetAttribute(
                            &algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &z, sizeof z);
                        cublasLtMatmulAlgoConfigSetAttribute(
                            &algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &o, sizeof o);
                        cublasLtMatmulHeuristicResult_t r;
                        if (++*checked % 4096 == 0 && seconds() - start > CHECK_SECONDS) {
                            printf("    id %d: stopped checking after %.0f s\n", id,
                                   CHECK_SECONDS);
                            return n;
                        }
                        if (cublasLtMatmulAlgoCheck(p->lt, p->desc, p->a, p->b, p->d, p->d, &algo,
                                                    &r) != CUBLAS_STATUS_SUCCESS ||
                            r.workspaceSize > WORKSPACE)
                            continue;
                        if (n < max) out[n++] = algo;
                    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr,
                "usage: gemm_search M N K [TN|NN|NT] [none|bias|gelu_aux_bias|dgelu] "
                "[plain|sustained]\n");
        return 2;
    }
    const int64_t M = atoll(argv[1]), N = atoll(argv[2]), K = atoll(argv[3]);
    const char *ops = argc > 4 ? argv[4] : "TN", *epi_name = argc > 5 ? argv[5] : "none";
    const char *mode = argc > 6 ? argv[6] : "all";
    if (strcmp(mode, "all") && strcmp(mode, "plain") && strcmp(mode, "sustained")) {
        fprintf(stderr, "gemm_search: %s: not plain or sustained\n", mode);
        return 2;
    }
    if (M <= 0 || N <= 0 || K <= 0 || strlen(ops) != 2 || !strchr("TN", ops[0]) ||
        !strchr("TN", ops[1])) {
        fprintf(stderr, "gemm_search: M, N, K must be positive and the ops two of T and N\n");
        return 2;
    }
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    if (!strcmp(epi_name, "bias")) epi = CUBLASLT_EPILOGUE_BIAS;
    else if (!strcmp(epi_name, "gelu_aux_bias")) epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    else if (!strcmp(epi_name, "dgelu")) epi = CUBLASLT_EPILOGUE_DGELU;
    else if (strcmp(epi_name, "none")) {
        fprintf(stderr, "gemm_search: epilogue %s: not one of none, bias, gelu_aux_bias, dgelu\n",
                epi_name);
        return 2;
    }
    struct problem p;
    memset(&p, 0, sizeof p);
    LT(cublasLtCreate(&p.lt));
    CK(cudaStreamCreate(&p.stream));
    CK(cudaEventCreate(&p.t0));
    CK(cudaEventCreate(&p.t1));
    cublasOperation_t ta = ops[0] == 'T' ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t tb = ops[1] == 'T' ? CUBLAS_OP_T : CUBLAS_OP_N;
    LT(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    /* stored shapes: A is M x K unless transposed, B is K x N unless transposed */
    int64_t ar = ta == CUBLAS_OP_N ? M : K, ac = ta == CUBLAS_OP_N ? K : M;
    int64_t br = tb == CUBLAS_OP_N ? K : N, bc = tb == CUBLAS_OP_N ? N : K;
    LT(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, ar, ac, ar));
    LT(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, br, bc, br));
    LT(cublasLtMatrixLayoutCreate(&p.d, CUDA_R_16BF, M, N, M));
    p.A = dev_random_bf16((size_t)(ar * ac), 1);
    p.B = dev_random_bf16((size_t)(br * bc), 2);
    CK(cudaMalloc(&p.D, (size_t)(M * N) * 2));
    CK(cudaMalloc(&p.ws, WORKSPACE));
    if (epi != CUBLASLT_EPILOGUE_DEFAULT) {
        LT(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    }
    if (epi == CUBLASLT_EPILOGUE_BIAS || epi == CUBLASLT_EPILOGUE_GELU_AUX_BIAS) {
        cudaDataType_t bt = CUDA_R_16BF;
        p.bias = dev_random_bf16((size_t)M, 3);
        LT(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                          sizeof bt));
        LT(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias,
                                          sizeof p.bias));
    }
    if (epi == CUBLASLT_EPILOGUE_GELU_AUX_BIAS || epi == CUBLASLT_EPILOGUE_DGELU) {
        int64_t ld = M;
        p.aux = dev_random_bf16((size_t)(M * N), 4); /* dgelu reads it: the pre-activation */
        LT(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &p.aux,
                                          sizeof p.aux));
        LT(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld,
                                          sizeof ld));
    }
    const double tflop = 2.0 * (double)M * (double)N * (double)K / 1e12;
    char what[160];

    cublasLtMatmulHeuristicResult_t res[PER_ID];
    int found = heuristic(&p, res, PER_ID);
    if (found == 0) {
        fprintf(stderr, "gemm_search: cuBLASLt offers no algorithm for this GEMM and epilogue\n");
        return 1;
    }
    float first = time_algo(&p, &res[0].algo, RUNS), best_plain = -1.0f;
    for (int i = 0; i < found; i++) {
        float ms = time_algo(&p, &res[i].algo, RUNS);
        if (ms > 0 && (best_plain < 0 || ms < best_plain)) best_plain = ms;
    }
    describe(&res[0].algo, what, sizeof what);
    printf("%lld x %lld x %lld %s %s: %.1f TFLOP\n", (long long)M, (long long)N, (long long)K, ops,
           epi_name, tflop);
    printf("  plain search, first of %d:  %.4f ms %6.0f TFLOP/s  (%s)\n", found, first,
           tflop / first * 1e3, what);
    printf("  plain search, fastest:      %.4f ms %6.0f TFLOP/s\n", best_plain,
           tflop / best_plain * 1e3);

    if (!strcmp(mode, "plain")) return 0;
    if (!strcmp(mode, "sustained")) {
        for (int i = 0; i < found; i++) {
            describe(&res[i].algo, what, sizeof what);
            float brief = time_algo(&p, &res[i].algo, RUNS);
            float held = time_sustained(&p, &res[i].algo);
            printf("  #%d: %.4f ms in %d runs, %.4f ms held for a second (%s)\n", i, brief, RUNS,
                   held, what);
        }
        return 0;
    }
    int ids[MAX_IDS], n_ids = 0, timed = 0, checked = 0;
    LT(cublasLtMatmulAlgoGetIds(p.lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF,
                                CUDA_R_16BF, CUDA_R_16BF, MAX_IDS, ids, &n_ids));
    float best = best_plain;
    cublasLtMatmulAlgo_t best_algo = res[0].algo;
    cublasLtMatmulAlgo_t *cand = malloc(MAX_CONFIGS * sizeof *cand);
    if (!cand) {
        fprintf(stderr, "gemm_search: out of memory\n");
        return 1;
    }
    for (int i = 0; i < n_ids; i++) {
        int n = enumerate(&p, ids[i], epi, cand, MAX_CONFIGS, &checked);
        float id_best = -1.0f;
        for (int j = 0; j < n; j++) {
            float ms = time_algo(&p, &cand[j], SCREEN_RUNS);
            if (ms <= 0) continue;
            timed++;
            if (id_best < 0 || ms < id_best) id_best = ms;
            if (ms < best * 1.02f) { /* close to the best: time it again, longer */
                ms = time_algo(&p, &cand[j], RUNS);
                if (ms > 0 && ms < best) {
                    best = ms;
                    best_algo = cand[j];
                }
            }
        }
        if (n > 0)
            printf("    id %d: %d configurations, fastest %.4f ms\n", ids[i], n, id_best);
    }
    free(cand);
    describe(&best_algo, what, sizeof what);
    printf("  every algorithm id (%d ids, %d configurations checked, %d run): %.4f ms %6.0f "
           "TFLOP/s (%s)\n",
           n_ids, checked, timed, best, tflop / best * 1e3, what);
    return 0;
}
