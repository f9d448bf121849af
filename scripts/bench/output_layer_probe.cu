/* Towards a cross-entropy fused into the output layer's GEMMs: the backend's ping-pong GEMM
 * (kernels/cuda/hopper_gemm.cuh) in the three roles such a fusion would give it, each checked and
 * timed (best of 5 batches of 10 calls after 3 warm-ups, twice, alternating; docs/PERFORMANCE.md,
 * "A ping-pong GEMM of our own"):
 *   stats N K F  the logits x w^T + bias (x [N, K], w [F, K]) alone and with each row's maximum
 *                and sum of exponentials over every column tile (the kernel's OUTS 3), beside
 *                cuBLASLt's BIAS epilogue: the logits against cuBLASLt's, the statistics of 16 rows
 *                against the logits written (in double); e.g. 65536 768 50304 (GPT-2 124M);
 *   mn N K F     the same GEMM with w read transposed ([K, F], the wgmmas' MN-major b: B_MN), as
 *                the output layer's weight is for its input gradient (and fc2's), against
 *                cuBLASLt's and beside ours reading w as it is;
 *   ce N V H     the output layer's input gradient dx [N, H] = dl w for logits x [N, V], the weight
 *                w [V, H] read MN-major and dl = (softmax(x) - onehot(target)) / N, computed from
 *                each logits tile in shared memory by the producer warpgroup's idle warps
 *                (XFORM_A), against the same kernel on dl written by a pass of its own (the same
 *                formula, so the same bits); e.g. 65536 50304 768.
 * Usage: output_layer_probe stats|mn N K F | output_layer_probe ce N V H   (K, F, V, H multiples
 * of 8). Built for sm_90a only. */
#include <cublasLt.h>
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_PROG "output_layer_probe"
#include "scripts/bench/bench_util.h"
#include "scripts/bench/probe_util.cuh"

using namespace hopper;

/* ---- stats and mn: the logits ---- */

/* The kernel's activation, unused (no second output), and OUTS 3's receiver: each row's maximum
 * and sum of exponentials over a column tile into stats[row][tile]. */
struct row_stats_act {
    float2 *stats;
    int tiles_f;
    __device__ float operator()(float x) const { return x; }
    __device__ void rows(int row, int tf, float m, float s) const
    {
        stats[(size_t)row * tiles_f + tf] = make_float2(m, s);
    }
};

/* The variants: tile columns, cluster size (the MN-major ones: the first two only, as w's
 * 64-column boxes must split evenly between a cluster's CTAs). */
enum { NV = 3 };
static const struct {
    int pn, cl;
} VARIANTS[NV] = {{128, 2}, {192, 1}, {192, 2}};

struct logits {
    int N, K, F;
    void *x, *w, *w_t, *bias, *out, *ref; /* w_t: w [F, K] transposed, [K, F] */
    float2 *stats;
    CUtensorMap map_x, map_w[NV], map_wt, map_o;
    struct lt_gemm lt; /* cuBLASLt's BIAS epilogue into ref */
    int v, outs, grid[NV];
    bool mn; /* w read transposed (through map_wt) */
};

static const void *logits_kernel(int outs, int v, bool mn)
{
    static const void *k[2][NV] = {{(const void *)pingpong_kernel<1, 128, 2, row_stats_act>,
                                    (const void *)pingpong_kernel<1, 192, 1, row_stats_act>,
                                    (const void *)pingpong_kernel<1, 192, 2, row_stats_act>},
                                   {(const void *)pingpong_kernel<3, 128, 2, row_stats_act>,
                                    (const void *)pingpong_kernel<3, 192, 1, row_stats_act>,
                                    (const void *)pingpong_kernel<3, 192, 2, row_stats_act>}};
    if (mn)
        return v == 0 ? (const void *)pingpong_kernel<1, 128, 2, row_stats_act, true>
                      : (const void *)pingpong_kernel<1, 192, 1, row_stats_act, true>;
    return k[outs == 3][v];
}

static size_t smem_of(int v)
{
    return VARIANTS[v].pn == 128 ? pp_smem_bytes<128>() : pp_smem_bytes<192>();
}

/* Ours, variant p->v with outputs p->outs (1 or 3), w as it is or (p->mn) transposed. */
static void run_ours(struct logits *p)
{
    const int pn = VARIANTS[p->v].pn;
    row_stats_act act = {p->stats, (p->F + pn - 1) / pn};
    const __nv_bfloat16 *bias = (const __nv_bfloat16 *)p->bias;
    void *args[] = {&p->map_x, p->mn ? &p->map_wt : &p->map_w[p->v], &p->map_o, &p->map_o, &bias,
                    &p->N,     &p->F,                                &p->K,      &act};
    probe_launch(logits_kernel(p->outs, p->v, p->mn), VARIANTS[p->v].cl, p->grid[p->v],
                 smem_of(p->v), args);
}

static void run_cublaslt(struct logits *p) { lt_gemm_run(&p->lt); }

/* Random x, w and bias, the maps and grids, cuBLASLt's BIAS GEMM; w transposed too with mn. */
static void logits_setup(struct logits *p, bool mn)
{
    const size_t nx = (size_t)p->N * p->K, nw = (size_t)p->F * p->K, nout = (size_t)p->N * p->F;
    uint16_t *hx = bench_random_bf16(nx, 1, 1.0f), *hw = bench_random_bf16(nw, 2, 0.05f);
    uint16_t *hb = bench_random_bf16((size_t)p->F, 3, 0.5f);
    p->x = bench_upload(hx, nx);
    p->w = bench_upload(hw, nw);
    p->bias = bench_upload(hb, (size_t)p->F);
    if (mn) {
        uint16_t *ht = (uint16_t *)malloc(nw * 2);
        if (!ht) exit(1);
        for (size_t f = 0; f < (size_t)p->F; f++)
            for (size_t k = 0; k < (size_t)p->K; k++) ht[k * p->F + f] = hw[f * p->K + k];
        p->w_t = bench_upload(ht, nw);
        free(ht);
        p->map_wt = map_2d(p->w_t, (uint64_t)p->K, (uint64_t)p->F, 64);
    }
    free(hx);
    free(hw);
    free(hb);
    CK(cudaMalloc(&p->out, nout * 2));
    CK(cudaMalloc(&p->ref, nout * 2));
    CK(cudaMalloc(&p->stats, (size_t)p->N * ((p->F + 127) / 128) * sizeof(float2)));
    p->map_x = map_2d(p->x, (uint64_t)p->N, (uint64_t)p->K, PM);
    p->map_o = map_2d(p->out, (uint64_t)p->N, (uint64_t)p->F, 64);
    for (int v = 0; v < NV; v++) {
        const int pn = VARIANTS[v].pn, cl = VARIANTS[v].cl;
        p->map_w[v] = map_2d(p->w, (uint64_t)p->F, (uint64_t)p->K, (uint32_t)(pn / cl));
        const long units = (long)((p->N / PM + cl - 1) / cl) * ((p->F + pn - 1) / pn);
        for (int outs = 1; outs <= 3; outs += 2)
            p->grid[v] = probe_grid(logits_kernel(outs, v, false), cl, smem_of(v), units);
        if (mn && v < 2) probe_grid(logits_kernel(1, v, true), cl, smem_of(v), units);
    }
    cublasLtHandle_t lt;
    LT(cublasLtCreate(&lt));
    size_t ws_bytes = 32 << 20;
    void *ws;
    CK(cudaMalloc(&ws, ws_bytes));
    lt_gemm_init(&p->lt, lt, ws, ws_bytes, CUBLAS_OP_T, CUBLASLT_EPILOGUE_BIAS, p->w, p->x, p->ref,
                 p->bias, NULL, p->N, p->K, p->F);
    run_cublaslt(p); /* the reference logits */
    CK(cudaDeviceSynchronize());
}

/* The largest error of the statistics of 16 rows against the logits written, in double: the
 * maximum's absolute (into *worst_m) and the sum's relative (*worst_s). */
static void check_stats(struct logits *p, int pn, double *worst_m, double *worst_s)
{
    const int tiles_f = (p->F + pn - 1) / pn;
    uint16_t *row = (uint16_t *)malloc((size_t)p->F * 2);
    float2 *st = (float2 *)malloc((size_t)tiles_f * sizeof(float2));
    if (!row || !st) exit(1);
    *worst_m = 0.0, *worst_s = 0.0;
    for (int i = 0; i < 16; i++) {
        const size_t r = (size_t)i * (p->N / 16) + (size_t)(i * 37) % (p->N / 16);
        CK(cudaMemcpy(row, (uint16_t *)p->out + r * p->F, (size_t)p->F * 2,
                      cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(st, p->stats + r * tiles_f, (size_t)tiles_f * sizeof(float2),
                      cudaMemcpyDeviceToHost));
        for (int t = 0; t < tiles_f; t++) {
            const int c1 = (t + 1) * pn < p->F ? (t + 1) * pn : p->F;
            double m = -INFINITY, sum = 0.0;
            for (int c = t * pn; c < c1; c++) m = fmax(m, bf16_value(row[c]));
            for (int c = t * pn; c < c1; c++) sum += exp(bf16_value(row[c]) - m);
            const double em = fabs(st[t].x - m), es = fabs(st[t].y - sum) / sum;
            *worst_m = em > *worst_m || em != em ? em : *worst_m;
            *worst_s = es > *worst_s || es != es ? es : *worst_s;
        }
    }
    free(row);
    free(st);
}

static void stats_probe(struct logits *p)
{
    logits_setup(p, false);
    const size_t nout = (size_t)p->N * p->F;
    const double tflop = 2.0 * p->N * (double)p->F * p->K / 1e12;
    printf("output_layer_probe stats N=%d K=%d F=%d:\n", p->N, p->K, p->F);
    for (p->v = 0; p->v < NV; p->v++) {
        const int pn = VARIANTS[p->v].pn, tiles_f = (p->F + pn - 1) / pn;
        printf(" ping-pong, tiles of 128 x %d, clusters of %d (%d CTAs):\n", pn, VARIANTS[p->v].cl,
               p->grid[p->v]);
        p->outs = 3;
        CK(cudaMemset(p->out, 0, nout * 2));
        CK(cudaMemset(p->stats, 0xff, (size_t)p->N * tiles_f * sizeof(float2))); /* NaN */
        run_ours(p);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        compare("logits", p->out, p->ref, nout, "cuBLASLt's");
        double worst_m, worst_s;
        check_stats(p, pn, &worst_m, &worst_s);
        printf("  row statistics of 16 rows against the logits written: maximum off by %.2e, "
               "sum of exponentials relative error %.2e\n",
               worst_m, worst_s);
    }
    for (int r = 0; r < 2; r++) { /* twice, alternating */
        const float lt = time_ms(run_cublaslt, p);
        printf("  cuBLASLt BIAS %.4f ms (%.0f TFLOP/s)\n", lt, tflop / lt * 1e3);
        for (p->v = 0; p->v < NV; p->v++) {
            p->outs = 1;
            const float t1 = time_ms(run_ours, p);
            p->outs = 3;
            const float t3 = time_ms(run_ours, p);
            printf("  ping-pong 128 x %d, clusters of %d: logits %.4f ms (%.0f TFLOP/s), with the "
                   "row statistics %.4f ms (%.0f)\n",
                   VARIANTS[p->v].pn, VARIANTS[p->v].cl, t1, tflop / t1 * 1e3, t3,
                   tflop / t3 * 1e3);
        }
    }
}

static void mn_probe(struct logits *p)
{
    logits_setup(p, true);
    const size_t nout = (size_t)p->N * p->F;
    const double tflop = 2.0 * p->N * (double)p->F * p->K / 1e12;
    printf("output_layer_probe mn N=%d K=%d F=%d:\n", p->N, p->K, p->F);
    p->outs = 1, p->mn = true;
    for (p->v = 0; p->v < 2; p->v++) {
        CK(cudaMemset(p->out, 0, nout * 2));
        run_ours(p);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        printf(" w transposed, %s:\n", p->v ? "128 x 192 tiles" : "128 x 128 tiles in clusters");
        compare("pre (pre only)", p->out, p->ref, nout, "cuBLASLt's");
    }
    for (int r = 0; r < 2; r++) { /* twice, alternating */
        const float lt = time_ms(run_cublaslt, p);
        p->mn = false, p->v = 2; /* 128 x 192 in clusters, w as it is */
        const float ours = time_ms(run_ours, p);
        p->mn = true, p->v = 0;
        const float mn0 = time_ms(run_ours, p);
        p->v = 1;
        const float mn1 = time_ms(run_ours, p);
        printf("  cuBLASLt BIAS %.4f ms (%.0f TFLOP/s); ours, w as it is %.4f ms (%.0f); w "
               "transposed %.4f ms (%.0f, 128 x 128 in clusters), %.4f ms (%.0f, 128 x 192)\n",
               lt, tflop / lt * 1e3, ours, tflop / ours * 1e3, mn0, tflop / mn0 * 1e3, mn1,
               tflop / mn1 * 1e3);
    }
}

/* ---- ce: the output layer's input gradient with the softmax computed on the way in ---- */

/* bf16 values of a hash of (seed, i), uniform in [-scale, scale). */
static __global__ void fill_random_bf16(__nv_bfloat16 *p, size_t n, uint32_t seed, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed * 40503u;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        p[i] = __float2bfloat16((float)(h >> 8) / 8388608.0f * scale - scale);
    }
}

/* lse[row] = log sum exp of the row (one block a row), and a target in [0, V) from a hash. */
static __global__ void row_lse(float *lse, int *target, const __nv_bfloat16 *x, int V)
{
    __shared__ float red[256];
    const __nv_bfloat16 *row = x + (size_t)blockIdx.x * V;
    float m = -INFINITY;
    for (int c = threadIdx.x; c < V; c += 256) m = fmaxf(m, __bfloat162float(row[c]));
    red[threadIdx.x] = m;
    __syncthreads();
    for (int k = 128; k > 0; k >>= 1) {
        if (threadIdx.x < k) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + k]);
        __syncthreads();
    }
    m = red[0];
    __syncthreads();
    float sum = 0.0f;
    for (int c = threadIdx.x; c < V; c += 256) sum += expf(__bfloat162float(row[c]) - m);
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int k = 128; k > 0; k >>= 1) {
        if (threadIdx.x < k) red[threadIdx.x] += red[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        lse[blockIdx.x] = m + logf(red[0]);
        target[blockIdx.x] = (int)((blockIdx.x * 2654435761u >> 7) % (uint32_t)V);
    }
}

/* The input gradient of the cross-entropy for 8 logits (bf16) of row row from column col0. */
struct ce_act {
    const float *lse;
    const int *target;
    float scale;
    int N, V;
    __device__ float operator()(float x) const { return x; }
    __device__ uint4 xform(uint4 v, int row, int col0) const
    {
        if (row >= N) return v;
        const float l = lse[row];
        const int t = target[row];
        __nv_bfloat162 *e = reinterpret_cast<__nv_bfloat162 *>(&v);
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const float2 f = __bfloat1622float2(e[q]);
            const int c = col0 + 2 * q;
            const float a = c < V ? exp2f_approx((f.x - l) * 1.44269504f) - (c == t) : 0.0f;
            const float b = c + 1 < V ? exp2f_approx((f.y - l) * 1.44269504f) - (c + 1 == t) : 0.0f;
            e[q] = __floats2bfloat162_rn(a * scale, b * scale);
        }
        return v;
    }
};

/* dl by a pass of its own, 8 elements a thread (V % 8 == 0). */
static __global__ void ce_grad_pass(__nv_bfloat16 *dl, const __nv_bfloat16 *x, ce_act g)
{
    const size_t n8 = (size_t)g.N * g.V / 8;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t e = i * 8;
        const int row = (int)(e / g.V), col = (int)(e % g.V);
        reinterpret_cast<uint4 *>(dl)[i] = g.xform(reinterpret_cast<const uint4 *>(x)[i], row, col);
    }
}

struct ce_problem {
    CUtensorMap map_x, map_dl, map_w, map_o;
    ce_act g;
    void *x, *dl, *out;
    int N, V, H, grid;
    bool fused;
};

static const void *ce_kernel(bool fused)
{
    return fused ? (const void *)pingpong_kernel<1, 192, 1, ce_act, true, true>
                 : (const void *)pingpong_kernel<1, 192, 1, ce_act, true, false>;
}

static void run_ce_gemm(struct ce_problem *c)
{
    const __nv_bfloat16 *bias = NULL;
    void *args[] = {c->fused ? &c->map_x : &c->map_dl, &c->map_w, &c->map_o, &c->map_o, &bias,
                    &c->N, &c->H, &c->V, &c->g};
    probe_launch(ce_kernel(c->fused), 1, c->grid, hopper::pp_smem_bytes<192>(), args);
}

static void run_ce_pass(struct ce_problem *c)
{
    ce_grad_pass<<<132 * 8, 256>>>((__nv_bfloat16 *)c->dl, (const __nv_bfloat16 *)c->x, c->g);
}

static void ce_probe(int N, int V, int H)
{
    struct ce_problem c;
    memset(&c, 0, sizeof c);
    c.N = N, c.V = V, c.H = H;
    const size_t nx = (size_t)N * V, nw = (size_t)V * H, no = (size_t)N * H;
    void *w, *ref;
    float *lse;
    int *target;
    CK(cudaMalloc(&c.x, nx * 2));
    CK(cudaMalloc(&c.dl, nx * 2));
    CK(cudaMalloc(&w, nw * 2));
    CK(cudaMalloc(&c.out, no * 2));
    CK(cudaMalloc(&ref, no * 2));
    CK(cudaMalloc(&lse, (size_t)N * sizeof(float)));
    CK(cudaMalloc(&target, (size_t)N * sizeof(int)));
    fill_random_bf16<<<1024, 256>>>((__nv_bfloat16 *)c.x, nx, 1, 4.0f);
    fill_random_bf16<<<1024, 256>>>((__nv_bfloat16 *)w, nw, 2, 0.05f);
    row_lse<<<N, 256>>>(lse, target, (const __nv_bfloat16 *)c.x, V);
    c.g = ce_act{lse, target, 1.0f / (float)N, N, V};
    CK(cudaGetLastError());
    c.map_x = map_2d(c.x, (uint64_t)N, (uint64_t)V, PM);
    c.map_dl = map_2d(c.dl, (uint64_t)N, (uint64_t)V, PM);
    c.map_w = map_2d(w, (uint64_t)V, (uint64_t)H, 64);
    c.map_o = map_2d(c.out, (uint64_t)N, (uint64_t)H, 64);
    const long units = (N + PM - 1) / PM * ((H + 191) / 192);
    for (int f = 0; f < 2; f++)
        c.grid = probe_grid(ce_kernel(f), 1, hopper::pp_smem_bytes<192>(), units);
    run_ce_pass(&c); /* dl, then the GEMM on it: the reference */
    c.fused = false;
    run_ce_gemm(&c);
    CK(cudaMemcpy(ref, c.out, no * 2, cudaMemcpyDeviceToDevice));
    CK(cudaMemset(c.out, 0, no * 2));
    c.fused = true;
    run_ce_gemm(&c);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    printf("output_layer_probe ce N=%d V=%d H=%d (128 x 192 tiles, %d CTAs):\n", N, V, H, c.grid);
    compare("input gradient, softmax in the operand load", c.out, ref, no,
            "the same GEMM on dl's pass");
    const double tflop = 2.0 * N * (double)V * H / 1e12;
    for (int r = 0; r < 2; r++) { /* twice, alternating */
        c.fused = true;
        const float fused = time_ms(run_ce_gemm, &c);
        c.fused = false;
        const float gemm = time_ms(run_ce_gemm, &c), pass = time_ms(run_ce_pass, &c);
        printf("  softmax in the operand load %.4f ms (%.0f TFLOP/s); the GEMM on dl %.4f ms "
               "(%.0f) and dl's pass %.4f ms\n",
               fused, tflop / fused * 1e3, gemm, tflop / gemm * 1e3, pass);
    }
}

int main(int argc, char **argv)
{
    const bool known = argc == 5 && (!strcmp(argv[1], "stats") || !strcmp(argv[1], "mn") ||
                                     !strcmp(argv[1], "ce"));
    const int n = known ? atoi(argv[2]) : 0, k = known ? atoi(argv[3]) : 0;
    const int f = known ? atoi(argv[4]) : 0;
    if (!known || n <= 0 || k <= 0 || f <= 0 || k % 8 || f % 8 || n % 16) {
        fprintf(stderr, "usage: output_layer_probe stats|mn N K F | output_layer_probe ce N V H "
                        "(N a multiple of 16; K, F, V, H of 8)\n");
        return 2;
    }
    probe_tma_init();
    if (!strcmp(argv[1], "ce")) {
        ce_probe(n, k, f);
        return 0;
    }
    struct logits p;
    memset(&p, 0, sizeof p);
    p.N = n, p.K = k, p.F = f;
    if (!strcmp(argv[1], "stats"))
        stats_probe(&p);
    else
        mn_probe(&p);
    return 0;
}
