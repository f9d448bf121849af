/* CPU linear layer: y = x w^T + b and its backward, on one cache-blocked fp32 GEMM kernel
 * (C (+)= A B with B packed into panels; GotoBLAS's blocking, no BLAS). Every output tile of C sums
 * its whole K range inside one thread in a fixed order, so results do not depend on thread count. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "util/error.h"

/* Four floats in one SSE register; gcc and clang lower arithmetic on it to packed instructions. */
typedef float v4 __attribute__((vector_size(16)));

/* Register tile MR x NR (8 accumulators + 2 B vectors + 1 broadcast fit the 16 xmm registers);
 * cache tile MC x NC of C per task, K in slices of KC so a packed B panel (KC x NC floats, 128 KiB)
 * stays in L2 and one NR-wide strip of it (8 KiB) in L1 while A's rows stream past. */
enum { MR = 4, NR = 8, MC = 64, NC = 128, KC = 256 };

/* C(i,j) = sum_k A(i,k) B(k,j), with strided A and B so one kernel serves all three products of a
 * linear layer: A(i,k) = a[i*a_is + k*a_ks], B(k,j) = b[k*b_ks + j*b_js], C row-major (ldc). */
struct gemm {
    int64_t M, N, K;
    const float *a;
    int64_t a_is, a_ks;
    const float *b;
    int64_t b_ks, b_js;
    float *c;
    int64_t ldc;
    bool overwrite;      /* C = bias + A B; else C += A B */
    const float *bias;   /* [N], with overwrite only; may be NULL */
};

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Packs B(k0.., j0..) (kc x nc) into NR-wide strips, each strip kc rows of NR contiguous floats;
 * columns past nc are zero so the micro kernel never needs a column edge case. */
static void pack_b(const struct gemm *g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *bp)
{
    for (int64_t js = 0; js < nc; js += NR) {
        float *strip = bp + js * kc;
        int64_t w = min64(NR, nc - js);
        for (int64_t k = 0; k < kc; k++) {
            const float *src = g->b + (k0 + k) * g->b_ks + (j0 + js) * g->b_js;
            float *dst = strip + k * NR;
            if (g->b_js == 1) {
                memcpy(dst, src, (size_t)w * sizeof(float));
            } else {
                for (int64_t j = 0; j < w; j++) dst[j] = src[j * g->b_js];
            }
            for (int64_t j = w; j < NR; j++) dst[j] = 0.0f;
        }
    }
}

/* acc[MR x NR] = sum over k < kc of A rows ap[r] times the packed strip bp; k runs in order. */
static void micro_kernel(int64_t kc, const float *const ap[MR], int64_t a_ks, const float *bp,
                         v4 acc[MR][2])
{
    v4 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
    const float *a0 = ap[0], *a1 = ap[1], *a2 = ap[2], *a3 = ap[3];
    for (int64_t k = 0; k < kc; k++) {
        v4 b0 = *(const v4 *)(bp + k * NR);
        v4 b1 = *(const v4 *)(bp + k * NR + 4);
        float x0 = a0[k * a_ks], x1 = a1[k * a_ks], x2 = a2[k * a_ks], x3 = a3[k * a_ks];
        c00 += x0 * b0;
        c01 += x0 * b1;
        c10 += x1 * b0;
        c11 += x1 * b1;
        c20 += x2 * b0;
        c21 += x2 * b1;
        c30 += x3 * b0;
        c31 += x3 * b1;
    }
    acc[0][0] = c00, acc[0][1] = c01, acc[1][0] = c10, acc[1][1] = c11;
    acc[2][0] = c20, acc[2][1] = c21, acc[3][0] = c30, acc[3][1] = c31;
}

/* C(i0.., j0..) += acc for the rows and columns that exist. */
static void store_acc(const struct gemm *g, int64_t i0, int64_t j0, v4 acc[MR][2])
{
    int64_t rows = min64(MR, g->M - i0), cols = min64(NR, g->N - j0);
    for (int64_t r = 0; r < rows; r++) {
        float *crow = g->c + (i0 + r) * g->ldc + j0;
        float v[NR];
        memcpy(v, acc[r], sizeof v);
        for (int64_t j = 0; j < cols; j++) crow[j] += v[j];
    }
}

/* Initialises the tile (mc x nc at i0, j0) to the bias or zero when C is overwritten. */
static void init_tile(const struct gemm *g, int64_t i0, int64_t mc, int64_t j0, int64_t nc)
{
    for (int64_t i = i0; i < i0 + mc; i++) {
        float *crow = g->c + i * g->ldc + j0;
        if (g->bias) {
            memcpy(crow, g->bias + j0, (size_t)nc * sizeof(float));
        } else {
            memset(crow, 0, (size_t)nc * sizeof(float));
        }
    }
}

/* One MC x NC tile of C over the whole K range; bp is this thread's packing buffer. */
static void gemm_tile(const struct gemm *g, int64_t i0, int64_t j0, float *bp)
{
    int64_t mc = min64(MC, g->M - i0), nc = min64(NC, g->N - j0);
    if (g->overwrite) init_tile(g, i0, mc, j0, nc);
    for (int64_t k0 = 0; k0 < g->K; k0 += KC) {
        int64_t kc = min64(KC, g->K - k0);
        pack_b(g, k0, kc, j0, nc, bp);
        for (int64_t js = 0; js < nc; js += NR) {
            for (int64_t is = 0; is < mc; is += MR) {
                const float *ap[MR];
                for (int r = 0; r < MR; r++) {
                    /* rows past M read the last row again; store_acc drops their results */
                    int64_t i = min64(i0 + is + r, g->M - 1);
                    ap[r] = g->a + i * g->a_is + k0 * g->a_ks;
                }
                v4 acc[MR][2];
                micro_kernel(kc, ap, g->a_ks, bp + js * kc, acc);
                store_acc(g, i0 + is, j0 + js, acc);
            }
        }
    }
}

static void gemm_run(const struct gemm *g)
{
    if (g->M == 0 || g->N == 0) return;
    int64_t tiles_m = (g->M + MC - 1) / MC, tiles_n = (g->N + NC - 1) / NC;
    int64_t tiles = tiles_m * tiles_n;
    bool parallel = tiles > 1 && g->M * g->N * g->K >= 64 * CPU_PARALLEL_MIN_WORK;
    /* the largest panel a tile packs, rounded to whole strips and to the 64-byte alignment */
    size_t panel = (size_t)min64(KC, g->K) * (size_t)((min64(NC, g->N) + NR - 1) / NR * NR);
    size_t bytes = (panel * sizeof(float) + 63) / 64 * 64;
#pragma omp parallel if (parallel)
    {
        float *bp = aligned_alloc(64, bytes > 0 ? bytes : 64);
        if (!bp) die_user("out of memory: allocating a %zu-byte GEMM packing buffer failed; use a "
                          "smaller model or batch", bytes);
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < tiles; t++) gemm_tile(g, (t / tiles_n) * MC, (t % tiles_n) * NC, bp);
        free(bp);
    }
}

void cpu_linear_forward(struct tensor y, struct tensor x, struct tensor w, struct tensor b)
{
    int64_t N = x.shape[0], in = x.shape[1], out = w.shape[0];
    /* y[N,out] = x[N,in] . B with B(k,j) = w[j,k] */
    struct gemm g = {.M = N, .N = out, .K = in, .a = x.data, .a_is = in, .a_ks = 1,
                     .b = w.data, .b_ks = 1, .b_js = in, .c = y.data, .ldc = out,
                     .overwrite = true, .bias = tensor_present(b) ? b.data : NULL};
    gemm_run(&g);
}

void cpu_linear_backward(struct tensor dx, struct tensor dw, struct tensor db, struct tensor dy,
                         struct tensor x, struct tensor w)
{
    int64_t N = dy.shape[0], out = dy.shape[1];
    if (tensor_present(dx)) {
        int64_t in = dx.shape[1];
        /* dx[N,in] = dy[N,out] . w[out,in] */
        struct gemm g = {.M = N, .N = in, .K = out, .a = dy.data, .a_is = out, .a_ks = 1,
                         .b = w.data, .b_ks = in, .b_js = 1, .c = dx.data, .ldc = in,
                         .overwrite = true};
        gemm_run(&g);
    }
    if (tensor_present(dw)) cpu_linear_weight_grad(dw, dy, x, true);
    if (tensor_present(db)) cpu_sum_rows_acc(db.data, dy.data, N, out);
}

void cpu_linear_weight_grad(struct tensor dw, struct tensor dy, struct tensor x, bool accumulate)
{
    int64_t N = dy.shape[0], out = dy.shape[1], in = dw.shape[1];
    /* dw[out,in] (+)= dy^T[out,N] . x[N,in]: A(i,k) = dy[k,i] */
    struct gemm g = {.M = out, .N = in, .K = N, .a = dy.data, .a_is = 1, .a_ks = out,
                     .b = x.data, .b_ks = in, .b_js = 1, .c = dw.data, .ldc = in,
                     .overwrite = !accumulate};
    gemm_run(&g);
}
