/* CUDA linear layer through cuBLASLt: bf16 operands, fp32 accumulation. The forward fuses the bias
 * into the GEMM epilogue; dW (fp32) accumulates in place through beta = 1 on an fp32 C = D; db is
 * a deterministic column sum of dy. Each GEMM shape gets its algorithm from the heuristics once
 * and keeps it (with its descriptors) in the context's cache.
 *
 * Row-major [rows, cols] buffers are column-major [cols, rows] to cuBLAS, so with y = x w^T:
 *   forward  y^T[out,N]  = w^T... i.e. D(out x N)  = op(w: in x out, T) . x(in x N)      ("TN")
 *   dx       dx^T[in,N]  = w(in x out) . dy^T(out x N)                                 ("NN")
 *   dw       dw^T[in,out] += x^T(in x N) . op(dy^T: out x N, T)                         ("NT") */
#include "kernels/cuda/cuda_common.h"

enum gemm_kind { GEMM_FWD, GEMM_FWD_BIAS, GEMM_DX, GEMM_DW };

/* Largest power of two (up to 256) dividing the address: what the algorithm may assume. */
static uint64_t ptr_alignment(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uint64_t al = 256;
    while (al > 1 && (a & (al - 1))) al >>= 1;
    return al;
}

struct gemm_call {
    enum gemm_kind kind;
    cublasOperation_t ta, tb;
    int64_t m, n, k, lda, ldb, ldc;
    cudaDataType_t ab_type, cd_type;
    const void *a, *b;
    void *c;
    const void *bias;
    float beta;
};

static void gemm_key(const struct gemm_call *g, uint64_t key[4])
{
    uint64_t al = ptr_alignment(g->a) | ptr_alignment(g->b) << 9 | ptr_alignment(g->c) << 18;
    key[0] = (uint64_t)g->kind | (uint64_t)g->ta << 4 | (uint64_t)g->tb << 8 | al << 12;
    key[1] = (uint64_t)g->m | (uint64_t)g->lda << 32;
    key[2] = (uint64_t)g->n | (uint64_t)g->ldb << 32;
    key[3] = (uint64_t)g->k | (uint64_t)g->ldc << 32;
}

static void gemm_plan_destroy(struct cuda_gemm_plan *p)
{
    if (!p->used) return;
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->a));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->b));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->c));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
    p->used = false;
}

/* Descriptors for g and the heuristic's first algorithm, for the alignments g's pointers have. */
static void gemm_plan_build(struct cuda_gemm_plan *p, const struct gemm_call *g)
{
    struct cuda_context *ctx = cuda_ctx();
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &g->ta,
                                                sizeof g->ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &g->tb,
                                                sizeof g->tb));
    if (g->kind == GEMM_FWD_BIAS) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bias_type = CUDA_R_16BF;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                    sizeof epi));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
            p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &g->bias, sizeof g->bias));
    }
    /* Stored shapes: A is m x k unless transposed, B is k x n unless transposed. */
    int64_t ar = g->ta == CUBLAS_OP_N ? g->m : g->k, ac = g->ta == CUBLAS_OP_N ? g->k : g->m;
    int64_t br = g->tb == CUBLAS_OP_N ? g->k : g->n, bc = g->tb == CUBLAS_OP_N ? g->n : g->k;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, g->ab_type, ar, ac, g->lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, g->ab_type, br, bc, g->ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, g->cd_type, g->m, g->n, g->ldc));

    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = ctx->lt_workspace_bytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    uint32_t al_a = (uint32_t)ptr_alignment(g->a), al_b = (uint32_t)ptr_alignment(g->b);
    uint32_t al_c = (uint32_t)ptr_alignment(g->c);
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx->lt, p->desc, p->a, p->b, p->c, p->c, pref, 1,
                                                &result, &found));
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (found < 1)
        BUG("cuBLASLt has no algorithm for the GEMM m=%lld n=%lld k=%lld (kind %d)",
            (long long)g->m, (long long)g->n, (long long)g->k, (int)g->kind);
    p->algo = result.algo;
    p->used = true;
}

/* The cached plan of g's shape, built on first use (the oldest entry makes room when full). */
static struct cuda_gemm_plan *gemm_plan(const struct gemm_call *g)
{
    struct cuda_context *ctx = cuda_ctx();
    uint64_t key[4];
    gemm_key(g, key);
    for (int i = 0; i < CUDA_GEMM_CACHE; i++) {
        struct cuda_gemm_plan *p = &ctx->gemm[i];
        if (p->used && !memcmp(p->key, key, sizeof key)) return p;
    }
    struct cuda_gemm_plan *p = NULL;
    for (int i = 0; i < CUDA_GEMM_CACHE && !p; i++)
        if (!ctx->gemm[i].used) p = &ctx->gemm[i];
    if (!p) {
        p = &ctx->gemm[ctx->gemm_next_victim];
        ctx->gemm_next_victim = (ctx->gemm_next_victim + 1) % CUDA_GEMM_CACHE;
        gemm_plan_destroy(p);
    }
    gemm_plan_build(p, g);
    memcpy(p->key, key, sizeof key);
    return p;
}

static void gemm_run(const struct gemm_call *g)
{
    if (g->m == 0 || g->n == 0) return;
    struct cuda_context *ctx = cuda_ctx();
    struct cuda_gemm_plan *p = gemm_plan(g);
    if (g->kind == GEMM_FWD_BIAS) /* the pointer changes from call to call; the shape does not */
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &g->bias, sizeof g->bias));
    const float alpha = 1.0f;
    CUBLAS_CHECK(cublasLtMatmul(ctx->lt, p->desc, &alpha, g->a, p->a, g->b, p->b, &g->beta, g->c,
                                p->c, g->c, p->c, &p->algo, ctx->lt_workspace,
                                ctx->lt_workspace_bytes, ctx->stream));
}

void cuda_linear_forward(struct tensor y, struct tensor x, struct tensor w, struct tensor b)
{
    const char *op = "cuda_linear_forward";
    cuda_need(op, "y", y, DT_BF16);
    cuda_need(op, "x", x, DT_BF16);
    cuda_need(op, "w", w, DT_BF16);
    cuda_maybe(op, "b", b, DT_BF16);
    int64_t N = x.shape[0], in = x.shape[1], out = w.shape[0];
    struct gemm_call g = {tensor_present(b) ? GEMM_FWD_BIAS : GEMM_FWD, CUBLAS_OP_T, CUBLAS_OP_N,
                          out, N, in, in, in, out, CUDA_R_16BF, CUDA_R_16BF, w.data, x.data,
                          y.data, tensor_present(b) ? b.data : NULL, 0.0f};
    gemm_run(&g);
}

/* db[c] += sum_n dy[n, c] */
struct load_rows_bf16 {
    const bf16 *src;
    int64_t C;
    bool vec;
    __device__ void operator()(int64_t n, int64_t c0, float out[1][8]) const
    {
        bf16_load8(src + n * C, c0, C, vec, out[0]);
    }
};

void cuda_linear_backward(struct tensor dx, struct tensor dw, struct tensor db, struct tensor dy,
                          struct tensor x, struct tensor w)
{
    const char *op = "cuda_linear_backward";
    cuda_need(op, "dy", dy, DT_BF16);
    int64_t N = dy.shape[0], out = dy.shape[1];
    if (tensor_present(dx)) {
        cuda_need(op, "dx", dx, DT_BF16);
        cuda_need(op, "w", w, DT_BF16);
        int64_t in = dx.shape[1];
        struct gemm_call g = {GEMM_DX, CUBLAS_OP_N, CUBLAS_OP_N, in, N, out, in, out, in,
                              CUDA_R_16BF, CUDA_R_16BF, w.data, dy.data, dx.data, NULL, 0.0f};
        gemm_run(&g);
    }
    if (tensor_present(dw)) {
        cuda_need(op, "dw", dw, DT_F32);
        cuda_need(op, "x", x, DT_BF16);
        int64_t in = dw.shape[1];
        struct gemm_call g = {GEMM_DW, CUBLAS_OP_N, CUBLAS_OP_T, in, out, N, in, out, in,
                              CUDA_R_16BF, CUDA_R_32F, x.data, dy.data, dw.data, NULL, 1.0f};
        if (N > 0) gemm_run(&g);
    }
    if (tensor_present(db)) {
        cuda_need(op, "db", db, DT_F32);
        struct load_rows_bf16 ld = {(const bf16 *)dy.data, out,
                                    out % 8 == 0 && cuda_aligned16(dy.data)};
        cuda_colsum_acc<load_rows_bf16, 1>(ld, (float *)db.data, NULL, N, out);
    }
}
