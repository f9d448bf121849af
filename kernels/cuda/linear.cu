/* CUDA linear layer through cuBLASLt: 16-bit operands (bf16 or fp16), fp32 accumulation. The
 * forward fuses the bias into the GEMM epilogue; dW (fp32) accumulates in place through beta = 1 on
 * an fp32 C = D; db is a deterministic column sum of dy. Each GEMM shape (and 16-bit type) gets its
 * algorithm from the heuristics once and keeps it (with its descriptors) in the context's cache.
 *
 * linear_fc1 + GeLU and linear_fc2's backward through the GeLU use cuBLASLt's GeLU epilogues when
 * they can: GELU_AUX_BIAS writes gelu(x w^T + b) to D and the pre-activation to the aux matrix;
 * DGELU multiplies dy w by gelu'(aux) (DGELU_BGRAD also sums its rows into an fp32 bias
 * gradient), and each shape of that backward keeps the fastest of its paths (below). cuBLASLt's
 * GeLU is the tanh approximation (what Megatron's bias_gelu fusion computes too), so the erf form
 * runs as the GEMM and a separate kernel, as does any shape cuBLASLt declines (the aux leading
 * dimension must be a multiple of 8).
 *
 * With MEGATRON_HOPPER_GEMM=1, on Hopper GPUs, the bf16 forwards (plain, with the bias, and fc1's
 * with the GeLU's two outputs) also time the GEMM of our own (hopper_gemm.cu) on their first call
 * and take it where it is the fastest. Not by default: it changed no step's time beyond the spread
 * (docs/PERFORMANCE.md), and where its time and cuBLASLt's are close the choice varies from run
 * to run, and with it (the two sum some shapes in different orders) a run's last bits, which two
 * runs of one configuration otherwise repeat exactly.
 *
 * Row-major [rows, cols] buffers are column-major [cols, rows] to cuBLAS, so with y = x w^T:
 *   forward  y^T[out,N]  = w^T... i.e. D(out x N)  = op(w: in x out, T) . x(in x N)      ("TN")
 *   dx       dx^T[in,N]  = w(in x out) . dy^T(out x N)                                 ("NN")
 *   dw       dw^T[in,out] += x^T(in x N) . op(dy^T: out x N, T)                         ("NT") */
#include <algorithm>

#include "kernels/cuda/cuda_common.h"

enum gemm_kind {
    GEMM_FWD,
    GEMM_FWD_BIAS,
    GEMM_DX,
    GEMM_DW,
    GEMM_FWD_GELU,       /* D = gelu(A B), aux = A B */
    GEMM_FWD_GELU_BIAS,  /* D = gelu(A B + bias), aux = A B + bias */
    GEMM_DX_DGELU,       /* D = (A B) * gelu'(aux) */
    GEMM_DX_DGELU_BGRAD, /* the same, and bias = the row sums of D (fp32, overwritten) */
};

static bool kind_has_bias(enum gemm_kind k)
{
    return k == GEMM_FWD_BIAS || k == GEMM_FWD_GELU_BIAS || k == GEMM_DX_DGELU_BGRAD;
}

static bool kind_has_aux(enum gemm_kind k)
{
    return k == GEMM_FWD_GELU || k == GEMM_FWD_GELU_BIAS || k == GEMM_DX_DGELU ||
           k == GEMM_DX_DGELU_BGRAD;
}

static cublasLtEpilogue_t kind_epilogue(enum gemm_kind k)
{
    switch (k) {
    case GEMM_FWD_BIAS: return CUBLASLT_EPILOGUE_BIAS;
    case GEMM_FWD_GELU: return CUBLASLT_EPILOGUE_GELU_AUX;
    case GEMM_FWD_GELU_BIAS: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    case GEMM_DX_DGELU: return CUBLASLT_EPILOGUE_DGELU;
    case GEMM_DX_DGELU_BGRAD: return CUBLASLT_EPILOGUE_DGELU_BGRAD;
    default: return CUBLASLT_EPILOGUE_DEFAULT;
    }
}

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
    cudaDataType_t ab_type, cd_type; /* ab: the 16-bit type; cd: it too, or fp32 for dw */
    const void *a, *b;
    void *c;
    const void *cin;  /* C where it is not D (read with beta: the residual added), else NULL */
    const void *bias; /* the bias, or for GEMM_DX_DGELU_BGRAD the fp32 bias gradient written */
    void *aux;        /* the GeLU input, m x n with leading dimension m: written or read */
    float beta;
};

/* key[0]: kind, transposes, five 9-bit alignments (bits 12-56) and the 16-bit type in bits 57-63
 * (cd_type follows from the kind and ab_type); key[1..3]: the sizes and leading dimensions. */
static_assert(CUDA_R_16BF < 128 && CUDA_R_16F < 128, "the 16-bit type fits key[0]'s top 7 bits");

/* The alignment the plan assumes of C and D: the lesser of the two where C is not D. */
static uint64_t cd_alignment(const struct gemm_call *g)
{
    uint64_t al = ptr_alignment(g->c);
    return g->cin ? std::min(al, ptr_alignment(g->cin)) : al;
}

static void gemm_key(const struct gemm_call *g, uint64_t key[4])
{
    uint64_t al = ptr_alignment(g->a) | ptr_alignment(g->b) << 9 | cd_alignment(g) << 18;
    uint64_t epi = ptr_alignment(g->bias) | ptr_alignment(g->aux) << 9;
    key[0] = (uint64_t)g->kind | (uint64_t)g->ta << 4 | (uint64_t)g->tb << 8 | al << 12 |
             epi << 39 | (uint64_t)g->ab_type << 57;
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

/* The pointers of the epilogue: they change from call to call, the shape does not. The heuristic
 * reads their values too (for their alignment). */
static void gemm_set_epilogue_pointers(cublasLtMatmulDesc_t desc, const struct gemm_call *g)
{
    if (kind_has_bias(g->kind))
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &g->bias, sizeof g->bias));
    if (kind_has_aux(g->kind))
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
            desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g->aux, sizeof g->aux));
}

/* The epilogue of g's kind: its function, the bias type (a 16-bit bias in, of the operands' type;
 * an fp32 bias gradient out) and the aux matrix's leading dimension (its type defaults to D's, the
 * 16-bit type). */
static void gemm_set_epilogue(cublasLtMatmulDesc_t desc, const struct gemm_call *g)
{
    cublasLtEpilogue_t epi = kind_epilogue(g->kind);
    if (epi == CUBLASLT_EPILOGUE_DEFAULT) return;
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (kind_has_bias(g->kind)) {
        cudaDataType_t bias_type = g->kind == GEMM_DX_DGELU_BGRAD ? CUDA_R_32F : g->ab_type;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                    &bias_type, sizeof bias_type));
    }
    if (kind_has_aux(g->kind)) {
        int64_t ld = g->m;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                    &ld, sizeof ld));
    }
    gemm_set_epilogue_pointers(desc, g);
}

/* ---- the forward GEMM of our own (hopper_gemm.cu) ---- */

/* The outputs of g for hopper_gemm_forward: y (the product plus the bias) and act (NULL for a
 * plain forward). */
static void gemm_own_outputs(const struct gemm_call *g, void **y, void **act)
{
    bool gelu = g->kind == GEMM_FWD_GELU || g->kind == GEMM_FWD_GELU_BIAS;
    *y = gelu ? g->aux : g->c;
    *act = gelu ? g->c : NULL;
}

/* Whether g is a bf16 forward (plain, bias, or the GeLU with its aux) the GEMM of our own can run
 * on this device with these pointers. */
static bool gemm_own_fits(const struct gemm_call *g)
{
    if ((g->kind != GEMM_FWD && g->kind != GEMM_FWD_BIAS && g->kind != GEMM_FWD_GELU &&
         g->kind != GEMM_FWD_GELU_BIAS) ||
        g->ab_type != CUDA_R_16BF || g->beta != 0.0f || g->cin || g->lda != g->k ||
        g->ldb != g->k || g->ldc != g->m)
        return false;
    void *y, *act;
    gemm_own_outputs(g, &y, &act);
    return hopper_gemm_fits(y, act, g->b, g->a, g->bias, g->n, g->k, g->m);
}

/* Runs g by variant v of the GEMM of our own (x is g's B, w its A). */
static void gemm_own_run(int v, const struct gemm_call *g)
{
    void *y, *act;
    gemm_own_outputs(g, &y, &act);
    hopper_gemm_forward(v, y, act, g->b, g->a, g->bias, g->n, g->k, g->m);
}

/* The variant of the GEMM of our own that runs g, or -1 for cuBLASLt: the forced one where it
 * fits, else the one timed fastest for g's shape. */
static int gemm_own_choice(const struct cuda_gemm_plan *p, const struct gemm_call *g)
{
    int forced = cuda_ctx()->hopper_forced;
    if (forced == HOPPER_GEMM_NEVER || (forced == HOPPER_GEMM_TIMED && !p->own)) return -1;
    if (!gemm_own_fits(g)) return -1;
    return forced >= 0 ? forced : p->own - 1;
}

void cuda_linear_force_hopper_gemm(int v)
{
    CHECK(v == HOPPER_GEMM_TIMED || v == HOPPER_GEMM_NEVER || (v >= 0 && v < HOPPER_GEMM_VARIANTS));
    cuda_ctx()->hopper_forced = v;
}

bool cuda_linear_hopper_gemm_available(void) { return cuda_ctx()->hopper_gemm; }

/* Algorithms timed per GEMM shape when its plan is built (MEGATRON_GEMM_AUTOTUNE=0: cuBLASLt's
 * first choice, untimed). */
enum { GEMM_CANDIDATES = 8 };

bool cuda_gemm_autotune(void)
{
    static int on = -1; /* read once: a setting of the process, like the backend context */
    if (on < 0) {
        const char *v = getenv("MEGATRON_GEMM_AUTOTUNE");
        on = !(v && strcmp(v, "0") == 0);
    }
    return on && !cuda_ctx()->deterministic; /* --deterministic-mode: no choice by timing */
}

/* The fastest of the heuristic's candidates for g, each run 3 times after a warm-up into buffers
 * of its own (D, and the aux matrix or bias gradient an epilogue writes), so the caller's outputs
 * and accumulators are untouched; the inputs are g's own. With own, the variants of our own GEMM
 * are timed too, and *own_best is the one faster than every candidate (else -1). Once per shape,
 * on the first call: the allocations and the synchronisation happen then, never in a later step.
 * Without the memory for those buffers, the heuristic's first choice and none of ours. */
static int gemm_fastest(struct cuda_gemm_plan *p, const struct gemm_call *g,
                        const cublasLtMatmulHeuristicResult_t *results, int found, bool own,
                        int *own_best)
{
    *own_best = -1;
    struct cuda_context *ctx = cuda_ctx();
    size_t d_bytes = (size_t)g->ldc * (size_t)g->n * (g->cd_type == CUDA_R_32F ? 4 : 2);
    bool writes_aux = g->kind == GEMM_FWD_GELU || g->kind == GEMM_FWD_GELU_BIAS;
    bool writes_bias = g->kind == GEMM_DX_DGELU_BGRAD;
    void *d = NULL, *aux = NULL, *bias = NULL;
    if (cudaMalloc(&d, d_bytes) != cudaSuccess ||
        (writes_aux && cudaMalloc(&aux, (size_t)g->m * (size_t)g->n * 2) != cudaSuccess) ||
        (writes_bias && cudaMalloc(&bias, (size_t)g->m * sizeof(float)) != cudaSuccess)) {
        (void)cudaGetLastError(); /* no room to time them: the heuristic's first choice */
        cudaFree(d);
        cudaFree(aux);
        return 0;
    }
    struct gemm_call t = *g;
    t.c = d;
    if (writes_aux) t.aux = aux;
    if (writes_bias) t.bias = bias;
    gemm_set_epilogue_pointers(p->desc, &t);
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    /* the caller's C is read as it will be where it is not D; an accumulated D is left alone */
    const float alpha = 1.0f, beta = g->cin ? g->beta : 0.0f;
    const void *cin = g->cin ? g->cin : t.c;
    int best = 0, lt_best = 0; /* the fastest, and cuBLASLt's fastest */
    float best_ms = 0.0f, lt_ms = 0.0f;
    float own_ms[HOPPER_GEMM_VARIANTS] = {0.0f};
    for (int i = 0; i < found + (own ? HOPPER_GEMM_VARIANTS : 0); i++) {
        bool ok = true;
        for (int r = 0; r < 4 && ok; r++) {
            if (r == 1) CUDA_CHECK(cudaEventRecord(start, ctx->stream));
            if (i >= found)
                gemm_own_run(i - found, &t);
            else
                ok = cublasLtMatmul(ctx->lt, p->desc, &alpha, t.a, p->a, t.b, p->b, &beta, cin,
                                    p->c, t.c, p->c, &results[i].algo, ctx->lt_workspace,
                                    ctx->lt_workspace_bytes, ctx->stream) == CUBLAS_STATUS_SUCCESS;
        }
        if (!ok) continue;
        CUDA_CHECK(cudaEventRecord(stop, ctx->stream));
        CUDA_CHECK(cudaEventSynchronize(stop));
        float ms;
        CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        if (i == 0 || ms < best_ms) {
            best = i;
            best_ms = ms;
        }
        if (i < found) lt_best = best, lt_ms = best_ms;
        else own_ms[i - found] = ms;
    }
    if (best >= found) *own_best = best - found;
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    if (own && getenv("MEGATRON_OP_TIMING"))
        fprintf(stderr, "GEMM kind %d m=%lld n=%lld k=%lld: %s, %.3f ms; cuBLASLt's %.3f ms, ours "
                "%.3f / %.3f / %.3f ms\n", (int)g->kind, (long long)g->m, (long long)g->n,
                (long long)g->k, *own_best >= 0 ? hopper_gemm_variant_name(*own_best) : "cuBLASLt",
                best_ms / 3, lt_ms / 3, own_ms[0] / 3, own_ms[1] / 3, own_ms[2] / 3);
    CUDA_CHECK(cudaFree(d));
    if (aux) CUDA_CHECK(cudaFree(aux));
    if (bias) CUDA_CHECK(cudaFree(bias));
    return lt_best;
}

/* Descriptors for g and the heuristic's algorithm for the alignments g's pointers have (the
 * fastest of its candidates, see gemm_fastest); p->supported says whether there was one. */
static void gemm_plan_build(struct cuda_gemm_plan *p, const struct gemm_call *g)
{
    struct cuda_context *ctx = cuda_ctx();
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &g->ta,
                                                sizeof g->ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &g->tb,
                                                sizeof g->tb));
    gemm_set_epilogue(p->desc, g);
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
    uint32_t al_c = (uint32_t)cd_alignment(g);
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
    cublasLtMatmulHeuristicResult_t results[GEMM_CANDIDATES];
    int found = 0;
    /* a fused epilogue cuBLASLt does not offer for these types is "no algorithm", not an error */
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(ctx->lt, p->desc, p->a, p->b, p->c, p->c, pref,
                                                       cuda_gemm_autotune() ? GEMM_CANDIDATES : 1,
                                                       results, &found);
    if (!kind_has_aux(g->kind)) CUBLAS_CHECK(st);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    p->supported = st == CUBLAS_STATUS_SUCCESS && found >= 1;
    p->own = 0;
    if (p->supported) {
        /* our GEMM competes where it fits, when timing is on and not ruled out */
        bool own = cuda_gemm_autotune() && ctx->hopper_forced == HOPPER_GEMM_TIMED &&
                   gemm_own_fits(g);
        int own_best = -1;
        p->algo = results[found > 1 || own ? gemm_fastest(p, g, results, found, own, &own_best) : 0]
                      .algo;
        p->own = own_best + 1;
    }
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

/* What gemm_try_run did. */
enum gemm_ran { GEMM_DECLINED = 0, GEMM_RAN_CUBLASLT, GEMM_RAN_OWN };

/* Runs g (by cuBLASLt, or by the GEMM of our own where its shape chose it or a test forces it);
 * GEMM_DECLINED (and nothing done) when cuBLASLt has no algorithm for it, which only a fused
 * epilogue may meet: a plain GEMM without one is a bug. A plan cuBLASLt refuses to run is marked
 * so, and later calls of its shape go straight to the caller's unfused path. */
static enum gemm_ran gemm_try_run(const struct gemm_call *g)
{
    if (g->m == 0 || g->n == 0) return GEMM_RAN_CUBLASLT;
    struct cuda_context *ctx = cuda_ctx();
    struct cuda_gemm_plan *p = gemm_plan(g);
    int own = gemm_own_choice(p, g);
    if (own >= 0) {
        gemm_own_run(own, g);
        return GEMM_RAN_OWN;
    }
    bool fused = kind_has_aux(g->kind);
    if (!p->supported) {
        if (!fused)
            BUG("cuBLASLt has no algorithm for the GEMM m=%lld n=%lld k=%lld (kind %d)",
                (long long)g->m, (long long)g->n, (long long)g->k, (int)g->kind);
        return GEMM_DECLINED;
    }
    gemm_set_epilogue_pointers(p->desc, g);
    const float alpha = 1.0f;
    cublasStatus_t st = cublasLtMatmul(ctx->lt, p->desc, &alpha, g->a, p->a, g->b, p->b, &g->beta,
                                       g->cin ? g->cin : g->c, p->c, g->c, p->c, &p->algo,
                                       ctx->lt_workspace, ctx->lt_workspace_bytes, ctx->stream);
    if (st == CUBLAS_STATUS_SUCCESS) return GEMM_RAN_CUBLASLT;
    if (!fused) cuda_fail_cublas(st, "cublasLtMatmul", __FILE__, __LINE__);
    p->supported = false; /* refused before launching anything: the caller's path does the work */
    return GEMM_DECLINED;
}

static void gemm_run(const struct gemm_call *g) { (void)gemm_try_run(g); }

/* cuBLASLt's name of a 16-bit storage dtype. */
static cudaDataType_t lp_cuda_type(enum dtype dt)
{
    CHECK(dt == DT_BF16 || dt == DT_F16);
    return dt == DT_F16 ? CUDA_R_16F : CUDA_R_16BF;
}

/* The forward GEMM y = x w^T (+ b) for cuBLASLt (or ours); the residual's C added by the caller. */
static struct gemm_call forward_call(struct tensor y, struct tensor x, struct tensor w,
                                     struct tensor b)
{
    cudaDataType_t lp = lp_cuda_type(y.dtype);
    int64_t N = x.shape[0], in = x.shape[1], out = w.shape[0];
    struct gemm_call g = {.kind = tensor_present(b) ? GEMM_FWD_BIAS : GEMM_FWD,
                          .ta = CUBLAS_OP_T, .tb = CUBLAS_OP_N, .m = out, .n = N, .k = in,
                          .lda = in, .ldb = in, .ldc = out, .ab_type = lp, .cd_type = lp,
                          .a = w.data, .b = x.data, .c = y.data, .cin = NULL,
                          .bias = tensor_present(b) ? b.data : NULL, .aux = NULL, .beta = 0.0f};
    return g;
}

/* The forward GEMM adding a residual: C = residual with beta = 1. */
static struct gemm_call forward_residual_call(struct tensor y, struct tensor x, struct tensor w,
                                              struct tensor b, struct tensor residual)
{
    struct gemm_call g = forward_call(y, x, w, b);
    g.cin = residual.data;
    g.beta = 1.0f;
    return g;
}

/* The forwards' dtype contract: y, x, w (and b) of one 16-bit type, returned. */
static enum dtype need_forward(const char *op, struct tensor y, struct tensor x, struct tensor w,
                               struct tensor b)
{
    enum dtype dt = cuda_need_lp(op, "y", y);
    cuda_need(op, "x", x, dt);
    cuda_need(op, "w", w, dt);
    cuda_maybe(op, "b", b, dt);
    return dt;
}

void cuda_linear_forward(struct tensor y, struct tensor x, struct tensor w, struct tensor b)
{
    need_forward("cuda_linear_forward", y, x, w, b);
    struct gemm_call g = forward_call(y, x, w, b);
    cuda_ctx()->gelu_paths.forward_own_gemm = gemm_try_run(&g) == GEMM_RAN_OWN;
}

/* y = x w^T + b + residual: the residual comes in as C with beta = 1, so the layer's
 * bias-dropout-add without dropout happens in the GEMM's epilogue and the sum is rounded once
 * (the unfused path rounds the product to 16 bits before adding). */
void cuda_linear_residual_forward(struct tensor y, struct tensor x, struct tensor w,
                                  struct tensor b, struct tensor residual)
{
    const char *op = "cuda_linear_residual_forward";
    enum dtype dt = need_forward(op, y, x, w, b);
    cuda_need(op, "residual", residual, dt);
    struct gemm_call g = forward_residual_call(y, x, w, b, residual);
    gemm_run(&g);
}

/* Milliseconds of `runs` calls of run() on the stream after one to warm up (synchronises). */
template <class F> static float time_runs(F run, int runs)
{
    cudaStream_t st = cuda_ctx()->stream;
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    run();
    CUDA_CHECK(cudaEventRecord(start, st));
    for (int r = 0; r < runs; r++) run();
    CUDA_CHECK(cudaEventRecord(stop, st));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    return ms / (float)runs;
}

/* Below this many bytes of y the residual is always added in the GEMM: the times are a few
 * microseconds, too close to time apart reliably, and a choice that varied from run to run would
 * vary a run's last bits with it. */
#define RESIDUAL_TIMED_BYTES ((int64_t)16 << 20)

/* The layer's choice for the shape: adding the residual in the GEMM (C read with beta = 1)
 * replaces the bias-dropout-add's reads of the sublayer's output and the residual and its write of
 * their sum with the GEMM's read of C: two passes over y's bytes fewer, worth about a device copy
 * of y. Fused where the GEMM with C and the bias takes less longer than the plain GEMM than that
 * copy takes (timed on the first call of a shape; at 1.5B's 16384 x 6400 -> 1600 cuBLASLt's GEMM
 * with C loses more than the copy, at 124M's shapes far less: docs/PERFORMANCE.md). */
bool cuda_fuses_linear_residual(struct tensor y, struct tensor x, struct tensor w,
                                struct tensor b, struct tensor residual)
{
    struct cuda_context *ctx = cuda_ctx();
    if (!ctx->fused_residual) return false;
    const int64_t N = x.shape[0], in = x.shape[1], out = w.shape[0];
    for (int i = 0; i < ctx->num_residual_choices; i++) {
        const struct cuda_residual_choice *c = &ctx->residual_choice[i];
        if (c->n == N && c->in == in && c->out == out && c->dt == (int)y.dtype) return c->fuse;
    }
    const size_t bytes = (size_t)(N * out) * dtype_size(y.dtype);
    bool fuse = true;
    float fused_ms = 0.0f, plain_ms = 0.0f, copy_ms = 0.0f;
    if (bytes >= (size_t)RESIDUAL_TIMED_BYTES && ctx->deterministic) {
        fuse = false; /* --deterministic-mode: a rule by size alone, the same every run */
    } else if (bytes >= (size_t)RESIDUAL_TIMED_BYTES) {
        if (cuda_capturing()) return false; /* no timing inside a capture: the unfused path */
        struct gemm_call plain = forward_call(y, x, w, tensor_none());
        struct gemm_call fused = forward_residual_call(y, x, w, b, residual);
        plain_ms = time_runs([&] { gemm_run(&plain); }, 5);
        fused_ms = time_runs([&] { gemm_run(&fused); }, 5);
        copy_ms = time_runs([&] {
            CUDA_CHECK(cudaMemcpyAsync(y.data, residual.data, bytes, cudaMemcpyDeviceToDevice,
                                       ctx->stream));
        }, 5);
        fuse = fused_ms - plain_ms < copy_ms;
    }
    if (getenv("MEGATRON_OP_TIMING"))
        fprintf(stderr,
                "linear + residual N=%lld in=%lld out=%lld: %s (GEMM with the residual %.3f ms, "
                "without %.3f ms, a copy of y %.3f ms)\n",
                (long long)N, (long long)in, (long long)out, fuse ? "fused" : "unfused", fused_ms,
                plain_ms, copy_ms);
    if (ctx->num_residual_choices < CUDA_RESIDUAL_CHOICES) {
        struct cuda_residual_choice *c = &ctx->residual_choice[ctx->num_residual_choices++];
        c->n = N, c->in = in, c->out = out, c->dt = (int)y.dtype, c->fuse = fuse;
    }
    return fuse;
}

/* db[c] += sum_n dy[n, c] */
template <class T> struct load_rows {
    const T *src;
    int64_t C;
    bool vec;
    struct raw {
        uint4 v;
    };
    __device__ void fetch(int64_t n, int64_t c0, raw &r) const
    {
        r.v = lp_load8_raw<T>(src + n * C, c0, C, vec, 0);
    }
    __device__ void apply(int64_t, int64_t, const raw &r, float out[1][8]) const
    {
        lp8_unpack<T>(r.v, out[0]);
    }
};

void cuda_linear_backward(struct tensor dx, struct tensor dw, struct tensor db, struct tensor dy,
                          struct tensor x, struct tensor w)
{
    const char *op = "cuda_linear_backward";
    enum dtype dt = cuda_need_lp(op, "dy", dy);
    cudaDataType_t lp = lp_cuda_type(dt);
    int64_t N = dy.shape[0], out = dy.shape[1];
    if (tensor_present(dx)) {
        cuda_need(op, "dx", dx, dt);
        cuda_need(op, "w", w, dt);
        int64_t in = dx.shape[1];
        struct gemm_call g = {.kind = GEMM_DX, .ta = CUBLAS_OP_N, .tb = CUBLAS_OP_N, .m = in,
                              .n = N, .k = out, .lda = in, .ldb = out, .ldc = in,
                              .ab_type = lp, .cd_type = lp, .a = w.data, .b = dy.data,
                              .c = dx.data, .bias = NULL, .aux = NULL, .beta = 0.0f};
        gemm_run(&g);
    }
    if (tensor_present(dw)) cuda_linear_weight_grad(dw, dy, x, true);
    if (tensor_present(db)) {
        cuda_need(op, "db", db, DT_F32);
        bool vec = out % 8 == 0 && cuda_aligned16(dy.data);
        CUDA_LP_DISPATCH(dt, cuda_colsum_acc<load_rows<T>, 1>(
                                 load_rows<T>{(const T *)dy.data, out, vec}, (float *)db.data, NULL,
                                 N, out));
    }
}

/* dw (fp32) = or += dy^T x: beta 0 or 1 in the GEMM's epilogue (with beta 0 it never reads dw). */
void cuda_linear_weight_grad(struct tensor dw, struct tensor dy, struct tensor x, bool accumulate)
{
    const char *op = "cuda_linear_weight_grad";
    enum dtype dt = cuda_need_lp(op, "dy", dy);
    cuda_need(op, "dw", dw, DT_F32);
    cuda_need(op, "x", x, dt);
    int64_t N = dy.shape[0], out = dy.shape[1], in = dw.shape[1];
    if (N == 0) { /* no rows: nothing to add, or a zero gradient to write */
        if (!accumulate) cuda_zero(dw);
        return;
    }
    struct gemm_call g = {.kind = GEMM_DW, .ta = CUBLAS_OP_N, .tb = CUBLAS_OP_T, .m = in, .n = out,
                          .k = N, .lda = in, .ldb = out, .ldc = in, .ab_type = lp_cuda_type(dt),
                          .cd_type = CUDA_R_32F, .a = x.data, .b = dy.data, .c = dw.data,
                          .bias = NULL, .aux = NULL, .beta = accumulate ? 1.0f : 0.0f};
    gemm_run(&g);
}

/* ---- linear layers fused with a GeLU ---- */

/* dst[i] += src[i] (fp32): the bias gradient cuBLASLt overwrites, added to the accumulated one. */
static __global__ void add_f32_kernel(float *dst, const float *src, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] += src[i];
}

static void add_f32(float *dst, const float *src, int64_t n)
{
    add_f32_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_ctx()->stream>>>(dst, src, n);
    CUDA_CHECK_LAUNCH("add_f32_kernel");
}

void cuda_linear_gelu_forward(struct tensor y, struct tensor pre, struct tensor x, struct tensor w,
                              struct tensor b, bool tanh_approx)
{
    const char *op = "cuda_linear_gelu_forward";
    enum dtype dt = need_forward(op, y, x, w, b);
    cuda_need(op, "pre", pre, dt);
    cudaDataType_t lp = lp_cuda_type(dt);
    struct cuda_context *ctx = cuda_ctx();
    int64_t N = x.shape[0], in = x.shape[1], out = w.shape[0];
    enum gemm_ran ran = GEMM_DECLINED;
    if (tanh_approx && out % 8 == 0) {
        struct gemm_call g = {.kind = tensor_present(b) ? GEMM_FWD_GELU_BIAS : GEMM_FWD_GELU,
                              .ta = CUBLAS_OP_T, .tb = CUBLAS_OP_N, .m = out, .n = N, .k = in,
                              .lda = in, .ldb = in, .ldc = out, .ab_type = lp, .cd_type = lp,
                              .a = w.data, .b = x.data, .c = y.data,
                              .bias = tensor_present(b) ? b.data : NULL, .aux = pre.data,
                              .beta = 0.0f};
        ran = gemm_try_run(&g);
    }
    ctx->gelu_paths.forward_epilogue = ran == GEMM_RAN_CUBLASLT;
    ctx->gelu_paths.forward_own_gemm = ran == GEMM_RAN_OWN;
    if (ran != GEMM_DECLINED) return;
    cuda_linear_forward(pre, x, w, b);
    cuda_gelu_forward(y, pre, tanh_approx);
}

/* fc2's input gradient through the GeLU, dpre = (dy w) * gelu'(pre), and fc1's bias gradient
 * db += the column sums of dpre, by one of four paths:
 *   CUDA_DGELU_BGRAD_EPILOGUE   one GEMM whose DGELU_BGRAD epilogue also sums db (from fp32)
 *   CUDA_DGELU_EPILOGUE_COLSUM  a GEMM with the DGELU epilogue, then a column sum of dpre
 *   CUDA_DGELU_EPILOGUE_HALVES  the same GEMM over each half of the rows, then the column sum
 *   CUDA_DGELU_GEMM_KERNEL      the plain GEMM, then the GeLU-backward kernel summing db
 * Which is fastest depends on the shape and on the algorithms cuBLASLt offers for it (H100,
 * 2026-11-22, scripts/bench/bench_ops.c rows H: at 1.5B's 16384 x 6400 the DGELU epilogue and
 * column sum, 0.65 ms against 0.76 for the GEMM and kernel, and 124M's 65536 x 3072 0.79 against
 * 0.88; at 350M's 32768 x 4096 cuBLASLt's heuristic returns one slow DGELU algorithm, 0.82-0.95
 * ms, where half the rows get eight: 0.61 in two halves against 0.65 for the GEMM and kernel;
 * DGELU_BGRAD ran at none of the three). So each shape times the paths it has on its first call
 * (before any capture) and keeps the first of them unless a later one is faster by a tenth: the
 * paths round differently, and runs whose timings are close still choose alike. The epilogue
 * paths need the tanh GeLU and widths that are multiples of 8. */
struct dgelu_call {
    struct gemm_call g; /* fc2's dx GEMM; its kind is set per path */
    struct tensor dpre;
    float *db;          /* NULL without a bias gradient */
    bool tanh_approx;
};

/* The linear layer's bias gradient after a DGELU epilogue: db += the column sums of dpre. */
static void dgelu_bias_grad_colsum(const struct dgelu_call *c)
{
    if (c->db)
        cuda_linear_backward(tensor_none(), tensor_none(), tensor_1d(c->db, DT_F32, DEV_CUDA, c->g.m),
                             c->dpre, tensor_none(), tensor_none());
}

/* g's rows of dpre by the plain GEMM and then the GeLU-backward kernel on pre (g's rows of it),
 * adding their column sums into db when db is not NULL. */
static void dgelu_gemm_then_kernel(const struct dgelu_call *c, struct gemm_call g, const void *pre,
                                   float *db)
{
    g.kind = GEMM_DX, g.aux = NULL;
    gemm_run(&g);
    CUDA_LP_DISPATCH(c->dpre.dtype,
                     cuda_gelu_backward_bias_grad<T>((T *)g.c, db, (const T *)g.c, (const T *)pre,
                                                     g.n, g.m, c->tanh_approx));
}

/* Runs path p for c (bgrad: an fp32 buffer of m for DGELU_BGRAD); false, nothing done, when
 * cuBLASLt does not offer p's epilogue. */
static bool dgelu_run(const struct dgelu_call *c, enum cuda_dgelu_path p, float *bgrad)
{
    struct gemm_call g = c->g;
    enum dtype dt = c->dpre.dtype;
    int64_t N = g.n, in = g.m;
    if (p == CUDA_DGELU_BGRAD_EPILOGUE && c->db) {
        g.kind = GEMM_DX_DGELU_BGRAD, g.bias = bgrad;
        if (!gemm_try_run(&g)) return false;
        add_f32(c->db, bgrad, in);
        return true;
    }
    if (p == CUDA_DGELU_EPILOGUE_HALVES) {
        if (N < 2) return false;
        /* rows [0, N/2) and [N/2, N): dy, dpre and pre advance by whole rows (16-byte multiples);
           a half whose epilogue cuBLASLt declines takes the plain GEMM and the kernel instead */
        const int64_t esize = (int64_t)dtype_size(dt);
        for (int h = 0; h < 2; h++) {
            const int64_t r0 = h ? N / 2 : 0, rows = h ? N - N / 2 : N / 2;
            void *pre = (char *)c->g.aux + r0 * in * esize;
            struct gemm_call half = g;
            half.kind = GEMM_DX_DGELU, half.n = rows, half.aux = pre;
            half.b = (const char *)g.b + r0 * g.ldb * esize;
            half.c = (char *)g.c + r0 * g.ldc * esize;
            if (!gemm_try_run(&half)) dgelu_gemm_then_kernel(c, half, pre, NULL);
        }
        dgelu_bias_grad_colsum(c);
        return true;
    }
    if (p == CUDA_DGELU_EPILOGUE_COLSUM || p == CUDA_DGELU_BGRAD_EPILOGUE) { /* the latter: no db */
        g.kind = GEMM_DX_DGELU;
        if (!gemm_try_run(&g)) return false;
        dgelu_bias_grad_colsum(c);
        return true;
    }
    dgelu_gemm_then_kernel(c, g, c->g.aux, c->db);
    return true;
}

/* The path of c's shape: timed on its first call (see above), then remembered. */
static enum cuda_dgelu_path dgelu_path_of(const struct dgelu_call *c)
{
    struct cuda_context *ctx = cuda_ctx();
    const struct gemm_call *g = &c->g;
    bool bias = c->db != NULL;
    if (!c->tanh_approx || g->m % 8 != 0) return CUDA_DGELU_GEMM_KERNEL;
    if (ctx->dgelu_forced != CUDA_DGELU_TIMED) return ctx->dgelu_forced;
    for (int i = 0; i < ctx->num_dgelu_choices; i++) {
        const struct cuda_dgelu_choice *e = &ctx->dgelu_choice[i];
        if (e->m == g->m && e->n == g->n && e->k == g->k && e->type == (int)g->ab_type &&
            e->bias == bias)
            return e->path;
    }
    enum cuda_dgelu_path path = CUDA_DGELU_BGRAD_EPILOGUE; /* untimed: the first that runs */
    float *bgrad = NULL, *db = NULL;
    if (cuda_gemm_autotune() && cudaMalloc(&bgrad, (size_t)g->m * sizeof(float)) == cudaSuccess &&
        cudaMalloc(&db, (size_t)g->m * sizeof(float)) == cudaSuccess) {
        struct dgelu_call t = *c;
        if (bias) t.db = db; /* the timed runs add into a buffer of their own */
        /* without a bias gradient the first two epilogue paths are one (DGELU) */
        enum cuda_dgelu_path paths[4];
        int n_paths = 0;
        if (bias) paths[n_paths++] = CUDA_DGELU_BGRAD_EPILOGUE;
        paths[n_paths++] = CUDA_DGELU_EPILOGUE_COLSUM;
        paths[n_paths++] = CUDA_DGELU_EPILOGUE_HALVES;
        paths[n_paths++] = CUDA_DGELU_GEMM_KERNEL;
        bool offered[4];
        for (int i = 0; i < n_paths; i++) /* untimed: the plans built, the epilogues checked */
            offered[i] = dgelu_run(&t, paths[i], bgrad);
        enum { RUNS = 15 };
        float ms[4][RUNS];
        cudaEvent_t ev[5];
        for (int e = 0; e < 5; e++) CUDA_CHECK(cudaEventCreate(&ev[e]));
        for (int r = 0; r < RUNS; r++) { /* the paths in turn */
            CUDA_CHECK(cudaEventRecord(ev[0], ctx->stream));
            for (int i = 0; i < n_paths; i++) {
                if (offered[i]) dgelu_run(&t, paths[i], bgrad);
                CUDA_CHECK(cudaEventRecord(ev[i + 1], ctx->stream));
            }
            CUDA_CHECK(cudaEventSynchronize(ev[n_paths]));
            for (int i = 0; i < n_paths; i++)
                CUDA_CHECK(cudaEventElapsedTime(&ms[i][r], ev[i], ev[i + 1]));
        }
        for (int e = 0; e < 5; e++) CUDA_CHECK(cudaEventDestroy(ev[e]));
        int best = -1;
        for (int i = 0; i < n_paths; i++) {
            if (!offered[i]) continue;
            std::sort(ms[i], ms[i] + RUNS);
            if (best < 0 || ms[i][RUNS / 2] < 0.9f * ms[best][RUNS / 2]) best = i;
        }
        path = paths[best];
    } else {
        (void)cudaGetLastError(); /* untimed (MEGATRON_GEMM_AUTOTUNE=0), or no room */
    }
    cudaFree(bgrad);
    cudaFree(db);
    if (ctx->num_dgelu_choices < CUDA_DGELU_CHOICES)
        ctx->dgelu_choice[ctx->num_dgelu_choices++] =
            (struct cuda_dgelu_choice){g->m, g->n, g->k, (int)g->ab_type, bias, path};
    return path;
}

void cuda_linear_dgelu_force_path(enum cuda_dgelu_path p) { cuda_ctx()->dgelu_forced = p; }

void cuda_linear_dgelu_backward(struct tensor dpre, struct tensor dpre_bias, struct tensor dw,
                                struct tensor dy, struct tensor x, struct tensor w,
                                struct tensor pre, bool tanh_approx)
{
    const char *op = "cuda_linear_dgelu_backward";
    enum dtype dt = cuda_need_lp(op, "dpre", dpre);
    cuda_need(op, "dy", dy, dt);
    cuda_need(op, "w", w, dt);
    cuda_need(op, "pre", pre, dt);
    cuda_maybe(op, "dpre_bias", dpre_bias, DT_F32);
    struct cuda_context *ctx = cuda_ctx();
    int64_t N = dy.shape[0], out = dy.shape[1], in = dpre.shape[1];
    if (tensor_present(dw)) cuda_linear_backward(tensor_none(), dw, tensor_none(), dy, x, w);
    if (N == 0 || in == 0) return;
    struct dgelu_call c = {
        .g = {.kind = GEMM_DX, .ta = CUBLAS_OP_N, .tb = CUBLAS_OP_N, .m = in, .n = N, .k = out,
              .lda = in, .ldb = out, .ldc = in, .ab_type = lp_cuda_type(dt),
              .cd_type = lp_cuda_type(dt), .a = w.data, .b = dy.data, .c = dpre.data,
              .bias = NULL, .aux = pre.data, .beta = 0.0f},
        .dpre = dpre,
        .db = tensor_present(dpre_bias) ? (float *)dpre_bias.data : NULL,
        .tanh_approx = tanh_approx};
    enum cuda_dgelu_path path = dgelu_path_of(&c);
    /* a path whose epilogue cuBLASLt declines gives way to the next one; the last always runs */
    while (!dgelu_run(&c, path, path == CUDA_DGELU_BGRAD_EPILOGUE && c.db
                                        ? (float *)cuda_scratch((size_t)in * sizeof(float))
                                        : NULL))
        path = (enum cuda_dgelu_path)(path + 1);
    ctx->gelu_paths.backward_epilogue = path != CUDA_DGELU_GEMM_KERNEL;
    ctx->gelu_paths.backward_row_halves = path == CUDA_DGELU_EPILOGUE_HALVES;
    ctx->gelu_paths.bias_grad_epilogue = path == CUDA_DGELU_BGRAD_EPILOGUE && c.db;
}

/* ---- the GeLU's derivative kept from the forward (bf16 on Hopper) ----
 * The backward of fc1's GeLU needs gelu'(pre) and nothing else of pre, so a training step's
 * forward may keep gelu'(pre) in pre's place: our GEMM computes both from the same exponential
 * (hopper_gemm.cuh, OUTS 8), and fc2's input gradient becomes the GEMM with a multiply in its
 * epilogue (OUTS 6, fc1's bias gradient in it too), where cuBLASLt's DGELU epilogue and a column
 * sum took longer (docs/PERFORMANCE.md). */

bool cuda_linear_gelu_forward_train(struct tensor y, struct tensor pre, struct tensor x,
                                    struct tensor w, struct tensor b, bool tanh_approx)
{
    struct cuda_context *ctx = cuda_ctx();
    const int64_t N = x.shape[0], in = x.shape[1], out = w.shape[0];
    const bool bias = tensor_present(b);
    const bool keep = ctx->fused_mlp && tanh_approx && N > 0 && y.dtype == DT_BF16 &&
                      pre.dtype == DT_BF16 && x.dtype == DT_BF16 && w.dtype == DT_BF16 &&
                      (!bias || b.dtype == DT_BF16) &&
                      hopper_gelu_saved_fits(pre.data, y.data, x.data, w.data,
                                             bias ? b.data : NULL, N, in, out);
    if (!keep) {
        cuda_linear_gelu_forward(y, pre, x, w, b, tanh_approx);
        return false;
    }
    hopper_gemm_gelu_saving_grad(pre.data, y.data, x.data, w.data, bias ? b.data : NULL, N, in,
                                 out);
    ctx->gelu_paths.forward_epilogue = false;
    ctx->gelu_paths.forward_own_gemm = true;
    return true;
}

void cuda_linear_dgelu_backward_saved(struct tensor dpre, struct tensor dpre_bias, struct tensor dw,
                                      struct tensor dy, struct tensor x, struct tensor w,
                                      struct tensor dgelu)
{
    const char *op = "cuda_linear_dgelu_backward_saved";
    cuda_need(op, "dpre", dpre, DT_BF16);
    cuda_need(op, "dy", dy, DT_BF16);
    cuda_need(op, "w", w, DT_BF16);
    cuda_need(op, "dgelu", dgelu, DT_BF16);
    cuda_maybe(op, "dpre_bias", dpre_bias, DT_F32);
    const int64_t N = dy.shape[0], out = dy.shape[1], in = dpre.shape[1];
    if (tensor_present(dw)) cuda_linear_backward(tensor_none(), dw, tensor_none(), dy, x, w);
    if (N == 0 || in == 0) return;
    float *db = tensor_present(dpre_bias) ? (float *)dpre_bias.data : NULL;
    if (hopper_gelu_saved_fits(dpre.data, NULL, dy.data, w.data, NULL, N, out, in) &&
        cuda_aligned16(dgelu.data)) {
        /* our GEMM reads fc2's weight [out, in] as [in, out] (K contiguous): a transposed copy */
        const size_t wt_bytes = ((size_t)in * (size_t)out * 2 + 255) / 256 * 256;
        const int parts = hopper_dgelu_partial_rows(N); /* + 2: a cluster's tile past N */
        char *s = (char *)cuda_scratch(wt_bytes + (size_t)(parts + 2) * (size_t)in * 4);
        float *partials = (float *)(s + wt_bytes);
        hopper_transpose(s, w.data, out, in);
        hopper_gemm_dgelu_saved(dpre.data, partials, dy.data, s, dgelu.data, N, out, in);
        if (db) cuda_colsum_reduce(db, NULL, partials, parts, in);
        return;
    }
    /* the plain GEMM, then the multiply (and the bias gradient) */
    cuda_linear_backward(dpre, tensor_none(), tensor_none(), dy, tensor_none(), w);
    cuda_gelu_backward_saved_bias_grad((bf16 *)dpre.data, db, (const bf16 *)dpre.data,
                                       (const bf16 *)dgelu.data, N, in);
}

struct cuda_gelu_paths cuda_linear_gelu_paths(void) { return cuda_ctx()->gelu_paths; }
