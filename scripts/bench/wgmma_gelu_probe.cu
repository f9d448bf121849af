/* How close GEMMs of our own come to cuBLASLt's two GeLU epilogue kernels at the MLP's shapes, the
 * fused GEMMs where cuBLASLt runs at ~550-640 TFLOP/s against ~760 for the same GEMMs without the
 * epilogue (docs/PERFORMANCE.md). For a [N, K] and b [F, K] (bf16, K contiguous):
 *   forward (fc1, GELU_AUX_BIAS): pre = a b^T + bias and act = gelu_tanh(pre), both bf16 [N, F],
 *     as cuBLASLt's epilogue writes them (its aux matrix and D);
 *   dgelu (fc2's input gradient, DGELU): a = fc2's output gradient, b = fc2's weight transposed;
 *     dpre = (a b^T) * gelu_tanh'(pre) for a given pre [N, F], and fc1's bias gradient, the column
 *     sums of dpre (cuBLASLt's DGELU leaves those to another pass).
 *
 * The kernel: persistent CTAs of three warpgroups. Lane 0 of the first warp issues the bulk tensor
 * copies (TMA) of a 128 x 64 tile of a and a 256 x 64 tile of b into a ring of STAGES
 * shared-memory stages (128-byte swizzle), completing on the stage's "full" mbarrier. The second
 * and third warpgroups each multiply 64 of the tile's 128 rows by the 256 columns with wgmma
 * (m64n256k16, fp32 accumulators in registers, one group kept in flight), free a stage on its
 * "empty" mbarrier once their wgmmas have read it, then write the product (plus the bias, forward),
 * rounded to bf16, into a padded staging tile in shared memory ("staged") and go on to their next
 * tile. The first warpgroup's other three warps (the storer) take the staged tile 8 rows at a time
 * in whole 512-byte rows, while the tensor cores work on the next tile: forward, they copy it to
 * pre and write act = gelu(the bf16 pre) beside it; dgelu, they multiply it by gelu'(pre), write
 * dpre and add its columns into one partial row per warp and tile, which a second kernel sums
 * ("drained" frees the staging tile). Both GeLU outputs are computed from bf16 values (as the
 * unfused bias-add, GeLU and its backward would), cuBLASLt's from fp32: they differ in the last
 * bits.
 * Each kernel runs alone and in clusters of two CTAs: the pair takes two tiles of consecutive
 * rows and one column, each CTA loads half of b's tile into both (TMA multicast), and a stage is
 * freed only when the consumers of both CTAs have read it (each consumer warp's lane r arrives
 * on CTA r's "empty" barrier). The remote arrive has the default (CTA-scope) release, as the
 * stage's readers are this CTA's wgmmas, already waited for: a cluster-scope release there made
 * every call twice as slow (H100, 2026-11-23).
 *
 * The forward also runs the ping-pong kernel of kernels/cuda/hopper_gemm.cuh (the backend's own
 * forward GEMM: two consumer warpgroups on their own 128 x PN tiles, one's epilogue under the
 * other's main loop), with both outputs and with pre alone (the plain GEMM with its bias), beside
 * cuBLASLt's GELU_AUX_BIAS and BIAS: tiles of 128 x 128 in clusters of two, 128 x 192 alone and in
 * clusters of two, and the last with act = identity (the second output's stores without the GeLU's
 * math; its act check against cuBLASLt's GeLU fails by design); then the second output's two parts
 * apart (the kernel's OUTS 4, act computed and staged but not stored, and OUTS 5, stored but not
 * computed).
 *
 * The same kernel's other roles (the output layer's statistics, w read transposed, an operand
 * transformed on the way in) are output_layer_probe.cu's.
 *
 * Usage: wgmma_gelu_probe N K F [dgelu | trace]   (N % 256 == 0, K % 64 == 0, F % 256 == 0)
 *   e.g. wgmma_gelu_probe 65536 768 3072         (GPT-2 124M's fc1, micro batch 64)
 *        wgmma_gelu_probe 65536 768 3072 dgelu   (its fc2 input gradient: K = hidden, F = 4 hidden)
 *        wgmma_gelu_probe 65536 768 3072 trace   (the ping-pong kernel's consumers' clocks: a
 *            tile's wait for its turn, main loop, and each epilogue unit, by variant and outputs)
 * Prints how the outputs of both launches compare with cuBLASLt's (relative L2 error, share of
 * equal bits) and the three times, twice (best of 5 batches of 10 calls after 3 warm-ups). Built
 * for sm_90a only; N must be a multiple of 256 (the clusters' pairs of tile rows). */
#include <cublasLt.h>
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_PROG "wgmma_gelu_probe"
#include "scripts/bench/bench_util.h"

/* trace mode: the ping-pong consumers' clock at each step of their first TRACE_TILES tiles in CTA 0
 * (kernels/cuda/hopper_gemm.cuh's HOPPER_GEMM_TRACE; one predicated store a step otherwise) */
enum { TRACE_TILES = 48, TRACE_EVENTS = 24 };
__device__ long long g_trace[2][TRACE_TILES][TRACE_EVENTS];
#define HOPPER_GEMM_TRACE(c, i, ev)                                                                \
    do {                                                                                           \
        if (blockIdx.x == 0 && tid == 0 && (i) < TRACE_TILES) g_trace[c][i][ev] = clock64();      \
    } while (0)
#include "scripts/bench/probe_util.cuh"

using namespace hopper;

/* tile rows and columns, k per stage, stages, threads, padded row of the staging tile */
enum { BM = 128, BN = 256, STAGES = 3, THREADS = PROBE_THREADS, SROW = BN + 8 };

struct smem_layout {
    __nv_bfloat16 a[STAGES][BM * BK];
    __nv_bfloat16 b[STAGES][BN * BK];
    __nv_bfloat16 out[BM * SROW]; /* the tile's pre-activation, for the storer */
    uint64_t full[STAGES], empty[STAGES], staged, drained;
};


/* Megatron's bias-GeLU: the tanh approximation. */
__device__ __forceinline__ float gelu_tanh(float x)
{
    float u = 0.7978845608f * (x + 0.044715f * x * x * x), t;
    asm("tanh.approx.f32 %0, %1;" : "=f"(t) : "f"(u));
    return 0.5f * x * (1.0f + t);
}

/* The ping-pong kernel's activation: the backend's (hopper_gemm.cu). */
struct gelu_approx {
    __device__ float operator()(float x) const { return gelu_tanh_fast(x); }
};

/* No activation: the second output's stores without its math. */
struct identity_act {
    __device__ float operator()(float x) const { return x; }
};

/* The ping-pong kernel's OUTS 6 (fc2's input gradient through the GeLU): gelu' in the backend's
 * form, and a row tile's column sums of dpre in two parts (alternate 32-row blocks) into
 * partial [N / 64, F]. */
struct dgelu_cols {
    float *partial;
    int F;
    __device__ float operator()(float x) const { return gelu_tanh_grad_fast(x); }
    __device__ void cols(int row_tile, int col, float v) const
    {
        partial[(size_t)row_tile * F + col] = v;
    }
};

/* Its derivative (Megatron's bias_gelu_back without the bias). */
__device__ __forceinline__ float gelu_tanh_grad(float x)
{
    float u = 0.7978845608f * x * (1.0f + 0.044715f * x * x), t;
    asm("tanh.approx.f32 %0, %1;" : "=f"(t) : "f"(u));
    return 0.5f * x * ((1.0f - t * t) * (0.7978845608f + 0.1070322243f * x * x)) +
           0.5f * (1.0f + t);
}

/* DGELU false: out0 = pre = a b^T + bias, out1 = gelu(pre). DGELU true (fc2's input gradient with
 * b = fc2's weight transposed): out0 = (a b^T) * gelu'(pre_in), and partial[tile row * 3 + storer
 * warp][F] the column sums of out0 over the storer warp's rows of the tile. */
template <bool DGELU, int CL>
__global__ void __launch_bounds__(THREADS, 1)
    gemm_kernel(const __grid_constant__ CUtensorMap map_x,
                const __grid_constant__ CUtensorMap map_w,
                const __nv_bfloat16 *__restrict__ bias, __nv_bfloat16 *__restrict__ out0,
                __nv_bfloat16 *__restrict__ out1, const __nv_bfloat16 *__restrict__ pre_in,
                float *__restrict__ partial, int N, int F, int K)
{
    extern __shared__ unsigned char smem_raw[];
    smem_layout &s =
        *reinterpret_cast<smem_layout *>(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
    /* a unit: CL tiles of consecutive tile rows and one tile column, one for each CTA of the
       cluster; the CTAs share b's tile, each loading 1/CL of it for all */
    const uint32_t rank = CL > 1 ? cluster_rank() : 0;
    const int tiles_f = F / BN, units = (N / BM / CL) * tiles_f, kblocks = K / BK;
    const int cid = blockIdx.x / CL, clusters = gridDim.x / CL;
    if (threadIdx.x == 0) {
        for (int i = 0; i < STAGES; i++) {
            mbar_init(&s.full[i], 1);
            mbar_init(&s.empty[i], 8 * CL); /* a lane of each consumer warp of the cluster */
        }
        mbar_init(&s.staged, 8);  /* the consumers' warps have written their rows of out */
        mbar_init(&s.drained, 3); /* the storer's warps have read out */
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    if (CL > 1)
        cluster_sync();
    else
        __syncthreads();
    const int warp = tid / 32, lane = tid % 32;
    if (wg == 0) { /* warp 0: the producer; warps 1-3: the storer */
        if (warp > 0) {
            int n = 0;
            for (int u = cid; u < units; u += clusters, n++) {
                const int tn = u / tiles_f * CL + (int)rank, tf = u % tiles_f;
                mbar_wait(&s.staged, n & 1);
                float sum[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
                /* the warp's rows warp - 1, warp + 2, ...: 8 at a time, their loads first */
                for (int r0 = warp - 1; r0 < BM; r0 += 3 * 8) {
                    uint4 v[8], pv[8];
#pragma unroll
                    for (int q = 0; q < 8; q++) {
                        const int r = r0 + 3 * q;
                        if (r >= BM) break;
                        v[q] = *reinterpret_cast<const uint4 *>(s.out + r * SROW + lane * 8);
                        if (DGELU)
                            pv[q] = *reinterpret_cast<const uint4 *>(
                                pre_in + (size_t)(tn * BM + r) * F + (size_t)tf * BN + lane * 8);
                    }
#pragma unroll
                    for (int q = 0; q < 8; q++) {
                        const int r = r0 + 3 * q;
                        if (r >= BM) break;
                        const size_t at = (size_t)(tn * BM + r) * F + (size_t)tf * BN + lane * 8;
                        const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&v[q]);
                        uint4 y;
                        __nv_bfloat162 *yh = reinterpret_cast<__nv_bfloat162 *>(&y);
                        if (DGELU) {
                            const __nv_bfloat162 *ph =
                                reinterpret_cast<const __nv_bfloat162 *>(&pv[q]);
#pragma unroll
                            for (int k = 0; k < 4; k++) {
                                const float2 g = __bfloat1622float2(h[k]);
                                const float2 x = __bfloat1622float2(ph[k]);
                                yh[k] = __floats2bfloat162_rn(g.x * gelu_tanh_grad(x.x),
                                                              g.y * gelu_tanh_grad(x.y));
                                const float2 o = __bfloat1622float2(yh[k]);
                                sum[2 * k] += o.x, sum[2 * k + 1] += o.y;
                            }
                            *reinterpret_cast<uint4 *>(out0 + at) = y;
                        } else {
                            *reinterpret_cast<uint4 *>(out0 + at) = v[q];
#pragma unroll
                            for (int k = 0; k < 4; k++) {
                                const float2 f = __bfloat1622float2(h[k]);
                                yh[k] = __floats2bfloat162_rn(gelu_tanh(f.x), gelu_tanh(f.y));
                            }
                            *reinterpret_cast<uint4 *>(out1 + at) = y;
                        }
                    }
                }
                if (DGELU) {
                    float4 *ps = reinterpret_cast<float4 *>(
                        partial + (size_t)(tn * 3 + warp - 1) * F + (size_t)tf * BN + lane * 8);
                    ps[0] = make_float4(sum[0], sum[1], sum[2], sum[3]);
                    ps[1] = make_float4(sum[4], sum[5], sum[6], sum[7]);
                }
                __syncwarp();
                if (lane == 0) mbar_arrive(&s.drained);
            }
        } else if (tid == 0) {
            int stage = 0, phase = 0;
            for (int u = cid; u < units; u += clusters) {
                const int tn = u / tiles_f * CL + (int)rank, tf = u % tiles_f;
                for (int kb = 0; kb < kblocks; kb++) {
                    mbar_wait(&s.empty[stage], phase ^ 1); /* every CTA's consumers are done */
                    load_stage<BM, BN, CL>(s.a[stage], s.b[stage], &s.full[stage], &map_x, &map_w,
                                           kb, tn * BM, tf * BN, rank);
                    if (++stage == STAGES) stage = 0, phase ^= 1;
                }
            }
        }
        /* no CTA leaves while another may still arrive on its barriers */
        if (CL > 1) cluster_sync();
        return;
    }
    const int c = wg - 1; /* this consumer's 64 rows of the tile */
    auto release = [lane](uint64_t *empty) { /* a stage read: lane r frees it in CTA r */
        if (CL == 1)
            mbar_arrive(empty);
        else
            mbar_arrive_cluster(empty, (uint32_t)lane);
    };
    int stage = 0, phase = 0, n = 0;
    float d[128];
    for (int u = cid; u < units; u += clusters) {
        const int tf = u % tiles_f;
        int prev = -1;
        for (int kb = 0; kb < kblocks; kb++) {
            mbar_wait(&s.full[stage], phase);
            asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
            const __nv_bfloat16 *a = s.a[stage] + c * 64 * BK, *b = s.b[stage];
#pragma unroll
            for (int kk = 0; kk < BK / 16; kk++)
                wgmma_64x256(d, desc_sw128(a + kk * 16), desc_sw128(b + kk * 16), kb > 0 || kk > 0);
            asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
            asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory"); /* the last stage's */
            if (prev >= 0 && lane < CL) release(&s.empty[prev]);
            prev = stage;
            if (++stage == STAGES) stage = 0, phase ^= 1;
        }
        asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
        if (lane < CL) release(&s.empty[prev]);
        mbar_wait(&s.drained, (n & 1) ^ 1); /* the storer has read the previous tile */
        const int r0 = c * 64 + warp * 16 + lane / 4, c0 = 2 * (lane % 4);
#pragma unroll
        for (int j = 0; j < BN / 8; j++) {
            float2 bb = make_float2(0.0f, 0.0f); /* DGELU: no bias (and none passed) */
            if (!DGELU)
                bb = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(
                    bias + (size_t)tf * BN + c0 + 8 * j));
#pragma unroll
            for (int h = 0; h < 2; h++)
                *reinterpret_cast<__nv_bfloat162 *>(s.out + (r0 + 8 * h) * SROW + c0 + 8 * j) =
                    DGELU ? __floats2bfloat162_rn(d[4 * j + 2 * h], d[4 * j + 2 * h + 1])
                          : __floats2bfloat162_rn(d[4 * j + 2 * h] + bb.x,
                                                  d[4 * j + 2 * h + 1] + bb.y);
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(&s.staged);
        n++;
    }
    if (CL > 1) cluster_sync();
}

/* db[f] = the sum of partial[p][f] over p (the fc1 bias gradient): a block takes 32 columns, its
 * 8 lanes of each column the parts l, l + 8, ... in order, then one thread adds the 8 in order. */
__global__ void __launch_bounds__(256) partial_sums_kernel(float *db, const float *partial,
                                                           int parts, int F)
{
    __shared__ float lanes[8][33];
    const int tx = threadIdx.x % 32, ty = threadIdx.x / 32, f = blockIdx.x * 32 + tx;
    float s = 0.0f;
    if (f < F)
        for (int p = ty; p < parts; p += 8) s += partial[(size_t)p * F + f];
    lanes[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && f < F) {
        float t = lanes[0][tx];
        for (int l = 1; l < 8; l++) t += lanes[l][tx];
        db[f] = t;
    }
}


/* The ping-pong kernel's variants (kernels/cuda/hopper_gemm.cuh): tile columns, cluster size. */
enum { PP_NV = 4 };
static const struct {
    int pn, cl;
} PP_VARIANTS[PP_NV] = {{128, 2}, {192, 1}, {192, 2}, {192, 2}}; /* the last: act = identity */

struct problem {
    bool dgelu;
    int N, K, F, cl, grid[3]; /* cl: the CTAs of a cluster (1 or 2); grid[cl]: the CTAs launched */
    size_t smem;
    CUtensorMap map_x, map_w[3]; /* map_w[cl]: b in boxes of BN / cl rows */
    /* the ping-pong kernel (forward), variant pv of PP_VARIANTS: b in boxes of its tile's columns
       over its cluster size, out0 and out1 in boxes of 128 x 64; outs: its outputs (1: pre only,
       the plain GEMM) */
    CUtensorMap map_wp[PP_NV], map_o0, map_o1;
    int pv, outs, pp_grid[PP_NV];
    /* ours: x [N, K], w [F, K], bias [F] (forward) or pre_in [N, F] (DGELU); out0, out1 [N, F];
       partial and db for DGELU's bias gradient. cuBLASLt: w_ref (w, or for DGELU w transposed
       [K, F]), ref_d its D, ref_aux the forward's pre-activation. */
    void *x, *w, *w_ref, *bias, *pre_in, *out0, *out1, *ref_d, *ref_aux, *ws;
    float *partial, *db;
    size_t ws_bytes;
    cublasLtHandle_t lt;
    /* cuBLASLt's GELU_AUX_BIAS (or DGELU) into ref_d (and ref_aux), and the forward with its bias
       alone into out1 (the ceiling) */
    struct lt_gemm fused, plain;
};

/* The kernel of a direction and cluster size. */
static const void *kernel_of(bool dgelu, int cl)
{
    if (cl == 1)
        return dgelu ? (const void *)gemm_kernel<true, 1> : (const void *)gemm_kernel<false, 1>;
    return dgelu ? (const void *)gemm_kernel<true, 2> : (const void *)gemm_kernel<false, 2>;
}

static void run_ours(struct problem *p)
{
    const __nv_bfloat16 *bias = (const __nv_bfloat16 *)p->bias;
    const __nv_bfloat16 *pre = (const __nv_bfloat16 *)p->pre_in;
    __nv_bfloat16 *o0 = (__nv_bfloat16 *)p->out0, *o1 = (__nv_bfloat16 *)p->out1;
    cudaLaunchAttribute at;
    cudaLaunchConfig_t cfg = launch_config(p->cl, p->grid[p->cl], p->smem, &at);
    void *args[] = {&p->map_x, &p->map_w[p->cl], &bias, &o0, &o1, &pre, &p->partial,
                    &p->N, &p->F, &p->K};
    CK(cudaLaunchKernelExC(&cfg, kernel_of(p->dgelu, p->cl), args));
    if (p->dgelu)
        partial_sums_kernel<<<(p->F + 31) / 32, 256>>>(p->db, p->partial, p->N / BM * 3, p->F);
}


static const void *pp_kernel_of(int outs, int v)
{
    /* OUTS 4 and 5 (the second output staged only, stored only), 128 x 192 in clusters */
    if (outs == 4) return (const void *)pingpong_kernel<4, 192, 2, gelu_approx>;
    if (outs == 5) return (const void *)pingpong_kernel<5, 192, 2, gelu_approx>;
    static const void *k[2][PP_NV] = {{(const void *)pingpong_kernel<1, 128, 2, gelu_approx>,
                                       (const void *)pingpong_kernel<1, 192, 1, gelu_approx>,
                                       (const void *)pingpong_kernel<1, 192, 2, gelu_approx>,
                                       (const void *)pingpong_kernel<1, 192, 2, identity_act>},
                                      {(const void *)pingpong_kernel<2, 128, 2, gelu_approx>,
                                       (const void *)pingpong_kernel<2, 192, 1, gelu_approx>,
                                       (const void *)pingpong_kernel<2, 192, 2, gelu_approx>,
                                       (const void *)pingpong_kernel<2, 192, 2, identity_act>}};
    return k[outs - 1][v];
}

static size_t pp_smem_bytes(int v)
{
    return PP_VARIANTS[v].pn == 128 ? hopper::pp_smem_bytes<128>() : hopper::pp_smem_bytes<192>();
}

static void run_pingpong(struct problem *p)
{
    const __nv_bfloat16 *bias = (const __nv_bfloat16 *)p->bias;
    gelu_approx act;
    void *args[] = {&p->map_x, &p->map_wp[p->pv], &p->map_o0, &p->map_o1, &bias,
                    &p->N,     &p->F,              &p->K,      &act};
    probe_launch(pp_kernel_of(p->outs, p->pv), PP_VARIANTS[p->pv].cl, p->pp_grid[p->pv],
                 pp_smem_bytes(p->pv), args);
}

static void run_cublaslt(struct problem *p) { lt_gemm_run(&p->fused); }

static void run_cublaslt_plain(struct problem *p) { lt_gemm_run(&p->plain); }

/* Ours (the last launch) against cuBLASLt's outputs. */
static void check_outputs(struct problem *p, size_t nout)
{
    if (p->dgelu) {
        compare("input gradient through the GeLU", p->out0, p->ref_d, nout, "cuBLASLt's");
        /* the bias gradient against the column sums of cuBLASLt's D, in double */
        uint16_t *hd = (uint16_t *)malloc(nout * 2);
        float *hdb = (float *)malloc((size_t)p->F * sizeof(float));
        double *want = (double *)calloc((size_t)p->F, sizeof(double));
        if (!hd || !hdb || !want) exit(1);
        CK(cudaMemcpy(hd, p->ref_d, nout * 2, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hdb, p->db, (size_t)p->F * sizeof(float), cudaMemcpyDeviceToHost));
        for (size_t n = 0; n < (size_t)p->N; n++)
            for (size_t f = 0; f < (size_t)p->F; f++) want[f] += bf16_value(hd[n * p->F + f]);
        double num = 0.0, den = 0.0;
        for (int f = 0; f < p->F; f++)
            num += (hdb[f] - want[f]) * (hdb[f] - want[f]), den += want[f] * want[f];
        printf("  bias gradient against the column sums of cuBLASLt's: relative L2 error %.2e\n",
               sqrt(num / (den > 0 ? den : 1)));
        free(hd);
        free(hdb);
        free(want);
    } else {
        compare("pre-activation", p->out0, p->ref_aux, nout, "cuBLASLt's");
        compare("activation", p->out1, p->ref_d, nout, "cuBLASLt's");
    }
}

/* The ping-pong kernel of variant p->pv timed with outputs a, then b, printed under their names
 * (TFLOP/s of tflop a call). */
static void time_outs(struct problem *p, double tflop, int a, const char *name_a, int b,
                      const char *name_b)
{
    p->outs = a;
    const float ms_a = time_ms(run_pingpong, p);
    p->outs = b;
    const float ms_b = time_ms(run_pingpong, p);
    printf("  ping-pong 128 x %d, clusters of %d: %s %.4f ms (%.0f TFLOP/s), %s %.4f ms (%.0f)\n",
           PP_VARIANTS[p->pv].pn, PP_VARIANTS[p->pv].cl, name_a, ms_a, tflop / ms_a * 1e3, name_b,
           ms_b, tflop / ms_b * 1e3);
}

/* The ping-pong kernel's maps and grids, and cuBLASLt's plain GEMM with its bias (the fastest of
 * the heuristic's algorithms). */
static void pingpong_setup(struct problem *p)
{
    p->map_o0 = map_2d(p->out0, (uint64_t)p->N, (uint64_t)p->F, 64);
    p->map_o1 = map_2d(p->out1, (uint64_t)p->N, (uint64_t)p->F, 64);
    for (int v = 0; v < PP_NV; v++) {
        const int pn = PP_VARIANTS[v].pn, cl = PP_VARIANTS[v].cl;
        p->map_wp[v] = map_2d(p->w, (uint64_t)p->F, (uint64_t)p->K, (uint32_t)(pn / cl));
        const long units = (long)(p->N / PM / cl) * ((p->F + pn - 1) / pn);
        for (int outs = 1; outs <= 5; outs++) {
            if (outs == 3) continue; /* output_layer_probe's */
            p->pp_grid[v] = probe_grid(pp_kernel_of(outs, v), cl, pp_smem_bytes(v), units);
        }
    }
    lt_gemm_init(&p->plain, p->lt, p->ws, p->ws_bytes, CUBLAS_OP_T, CUBLASLT_EPILOGUE_BIAS, p->w,
                 p->x, p->out1, p->bias, NULL, p->N, p->K, p->F);
}

static void pingpong_forward(struct problem *p, size_t nout, double tflop)
{
    pingpong_setup(p);
    for (p->pv = 0; p->pv < PP_NV; p->pv++) {
        printf(" ping-pong, tiles of 128 x %d, clusters of %d (%d CTAs):\n",
               PP_VARIANTS[p->pv].pn, PP_VARIANTS[p->pv].cl, p->pp_grid[p->pv]);
        for (p->outs = 2; p->outs >= 1; p->outs--) {
            run_cublaslt(p);
            CK(cudaMemset(p->out0, 0, nout * 2));
            CK(cudaMemset(p->out1, 0, nout * 2));
            run_pingpong(p);
            CK(cudaGetLastError());
            CK(cudaDeviceSynchronize());
            if (p->outs == 2)
                check_outputs(p, nout);
            else
                compare("pre-activation (pre only)", p->out0, p->ref_aux, nout, "cuBLASLt's");
        }
    }
    for (int r = 0; r < 2; r++) { /* twice, alternating */
        const float lt2 = time_ms(run_cublaslt, p), lt1 = time_ms(run_cublaslt_plain, p);
        printf("  cuBLASLt GELU_AUX_BIAS %.4f ms (%.0f TFLOP/s), BIAS only %.4f ms (%.0f)\n", lt2,
               tflop / lt2 * 1e3, lt1, tflop / lt1 * 1e3);
        for (p->pv = 0; p->pv < PP_NV; p->pv++)
            time_outs(p, tflop, 2, "pre and act", 1, "pre only");
        p->pv = 2; /* 128 x 192 in clusters: the second output's two halves */
        time_outs(p, tflop, 4, "act staged, not stored", 5, "stored, not staged");
    }
}

/* One launch of the ping-pong kernel's variant p->pv with outputs p->outs, traced: where each
 * consumer's clocks go a tile, averaged over CTA 0's tiles after its first two (cycles). */
static void trace_pingpong(struct problem *p, const char *name, void (*run)(struct problem *))
{
    static long long t[2][TRACE_TILES][TRACE_EVENTS];
    run(p); /* warm */
    void *dev;
    CK(cudaGetSymbolAddress(&dev, g_trace));
    CK(cudaMemset(dev, 0, sizeof t));
    run(p);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpyFromSymbol(t, g_trace, sizeof t));
    const int rounds = PP_VARIANTS[p->pv].pn / 64 * 2;
    for (int c = 0; c < 2; c++) {
        double turn = 0, issue = 0, drain = 0, unit = 0, sync1 = 0, stage = 0, period = 0;
        double per_round[8] = {0};
        int n = 0;
        for (int i = 2; i + 1 < TRACE_TILES && t[c][i + 1][1]; i++, n++) {
            long long *e = t[c][i];
            turn += e[1] - e[0], issue += e[2] - e[1], drain += e[3] - e[2];
            period += t[c][i + 1][1] - e[1];
            long long prev = e[3];
            for (int r = 0; r < rounds; r++) {
                unit += e[4 + 3 * r] - prev, sync1 += e[5 + 3 * r] - e[4 + 3 * r];
                stage += e[6 + 3 * r] - e[5 + 3 * r], prev = e[6 + 3 * r];
                per_round[r] += e[6 + 3 * r] - e[5 + 3 * r];
            }
        }
        if (!n) continue;
        printf("  trace %s 128 x %d cl %d outs %d, consumer %d (%d tiles): period %.0f, turn wait "
               "%.0f, main loop %.0f + drain %.0f, epilogue: unit waits %.0f, first sync %.0f, "
               "staging + second sync %.0f\n",
               name, PP_VARIANTS[p->pv].pn, PP_VARIANTS[p->pv].cl, p->outs, c, n, period / n,
               turn / n, issue / n, drain / n, unit / n, sync1 / n, stage / n);
        printf("    staging + second sync by unit:");
        for (int r = 0; r < rounds; r++) printf(" %.0f", per_round[r] / n);
        printf("\n");
    }
}

static void trace_all(struct problem *p)
{
    pingpong_setup(p);
    const struct {
        int pv, outs;
        const char *name;
    } runs[] = {{2, 1, "gelu"}, {2, 2, "gelu"}, {3, 2, "identity"}, {2, 4, "gelu"},
                {2, 5, "gelu"}, {0, 1, "gelu"}, {0, 2, "gelu"}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        p->pv = runs[r].pv, p->outs = runs[r].outs;
        trace_pingpong(p, runs[r].name, run_pingpong);
    }
}

/* The ping-pong kernel's OUTS 6 variants: fc2's input gradient dpre = (x w^T) * gelu'(pre) with
 * the bias gradient's partial column sums, then their sum over row tiles (as run_ours's). */
static const void *pp_dgelu_kernel(int v)
{
    static const void *k[3] = {(const void *)pingpong_kernel<6, 128, 2, dgelu_cols>,
                               (const void *)pingpong_kernel<6, 192, 1, dgelu_cols>,
                               (const void *)pingpong_kernel<6, 192, 2, dgelu_cols>};
    return k[v];
}

static void run_pp_dgelu(struct problem *p)
{
    const __nv_bfloat16 *bias = nullptr;
    dgelu_cols act = {p->partial, p->F};
    void *args[] = {&p->map_x, &p->map_wp[p->pv], &p->map_o0, &p->map_o1, &bias,
                    &p->N,     &p->F,              &p->K,      &act};
    probe_launch(pp_dgelu_kernel(p->pv), PP_VARIANTS[p->pv].cl, p->pp_grid[p->pv],
                 pp_smem_bytes(p->pv), args);
    partial_sums_kernel<<<(p->F + 31) / 32, 256>>>(p->db, p->partial, 2 * (p->N / PM), p->F);
}

/* dgelu mode, the ping-pong kernel: each variant's outputs against cuBLASLt's DGELU and the
 * column sums of its D, then the times. */
static void pingpong_dgelu(struct problem *p, size_t nout, double tflop)
{
    p->map_o0 = map_2d(p->out0, (uint64_t)p->N, (uint64_t)p->F, 64);
    p->map_o1 = map_2d(p->pre_in, (uint64_t)p->N, (uint64_t)p->F, 64);
    for (p->pv = 0; p->pv < 3; p->pv++) {
        const int pn = PP_VARIANTS[p->pv].pn, cl = PP_VARIANTS[p->pv].cl;
        p->map_wp[p->pv] = map_2d(p->w, (uint64_t)p->F, (uint64_t)p->K, (uint32_t)(pn / cl));
        p->pp_grid[p->pv] = probe_grid(pp_dgelu_kernel(p->pv), cl, pp_smem_bytes(p->pv),
                                       (long)(p->N / PM / cl) * ((p->F + pn - 1) / pn));
        run_cublaslt(p);
        CK(cudaMemset(p->out0, 0, nout * 2));
        run_pp_dgelu(p);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        printf(" ping-pong, tiles of 128 x %d, clusters of %d, dpre and the bias gradient:\n", pn,
               cl);
        check_outputs(p, nout);
    }
    for (int r = 0; r < 2; r++) {
        const float lt = time_ms(run_cublaslt, p);
        printf("  cuBLASLt DGELU %.4f ms (%.0f TFLOP/s);", lt, tflop / lt * 1e3);
        for (p->pv = 0; p->pv < 3; p->pv++) {
            const float ms = time_ms(run_pp_dgelu, p);
            printf(" ping-pong 128 x %d cl %d with the bias gradient %.4f ms (%.0f);",
                   PP_VARIANTS[p->pv].pn, PP_VARIANTS[p->pv].cl, ms, tflop / ms * 1e3);
        }
        printf("\n");
    }
    p->pv = 1, p->outs = 6; /* 128 x 192 alone */
    trace_pingpong(p, "dgelu", run_pp_dgelu);
}

int main(int argc, char **argv)
{
    const bool trace = argc == 5 && !strcmp(argv[4], "trace");
    if (argc < 4 || argc > 5 || (argc == 5 && strcmp(argv[4], "dgelu") && !trace)) {
        fprintf(stderr, "usage: wgmma_gelu_probe N K F [dgelu | trace]\n");
        return 2;
    }
    struct problem p;
    memset(&p, 0, sizeof p);
    p.dgelu = argc == 5 && !trace;
    p.N = atoi(argv[1]), p.K = atoi(argv[2]), p.F = atoi(argv[3]);
    if (p.N <= 0 || p.K <= 0 || p.F <= 0 || p.N % (2 * BM) || p.K % BK || p.F % BN) {
        fprintf(stderr, "wgmma_gelu_probe: N, K, F must be positive multiples of %d, %d, %d\n",
                2 * BM, BK, BN);
        return 2;
    }
    probe_tma_init();
    const size_t nx = (size_t)p.N * p.K, nw = (size_t)p.F * p.K, nout = (size_t)p.N * p.F;
    uint16_t *hx = bench_random_bf16(nx, 1, 1.0f), *hw = bench_random_bf16(nw, 2, 0.05f);
    p.x = bench_upload(hx, nx);
    p.w = bench_upload(hw, nw);
    p.w_ref = p.w;
    if (p.dgelu) { /* w is fc2's weight [K, F] transposed; cuBLASLt takes it as it is */
        uint16_t *ht = (uint16_t *)malloc(nw * 2), *hp = bench_random_bf16(nout, 4, 2.0f);
        if (!ht) exit(1);
        for (size_t f = 0; f < (size_t)p.F; f++)
            for (size_t k = 0; k < (size_t)p.K; k++) ht[k * p.F + f] = hw[f * p.K + k];
        p.w_ref = bench_upload(ht, nw);
        p.pre_in = bench_upload(hp, nout);
        free(ht);
        free(hp);
        CK(cudaMalloc(&p.partial, (size_t)(p.N / BM * 3) * p.F * sizeof(float)));
        CK(cudaMalloc(&p.db, (size_t)p.F * sizeof(float)));
    } else {
        uint16_t *hb = bench_random_bf16((size_t)p.F, 3, 0.5f);
        p.bias = bench_upload(hb, (size_t)p.F);
        free(hb);
    }
    free(hx);
    free(hw);
    CK(cudaMalloc(&p.out0, nout * 2));
    CK(cudaMalloc(&p.out1, nout * 2));
    CK(cudaMalloc(&p.ref_d, nout * 2));
    CK(cudaMalloc(&p.ref_aux, nout * 2));
    p.map_x = map_2d(p.x, (uint64_t)p.N, (uint64_t)p.K, BM);
    p.map_w[1] = map_2d(p.w, (uint64_t)p.F, (uint64_t)p.K, BN);
    p.map_w[2] = map_2d(p.w, (uint64_t)p.F, (uint64_t)p.K, BN / 2);
    p.smem = sizeof(smem_layout) + 1024; /* room to align the stages to 1024 bytes */
    for (int cl = 1; cl <= 2; cl++)
        p.grid[cl] =
            probe_grid(kernel_of(p.dgelu, cl), cl, p.smem, (long)(p.N / BM / cl) * (p.F / BN));
    LT(cublasLtCreate(&p.lt));
    p.ws_bytes = 32 << 20;
    CK(cudaMalloc(&p.ws, p.ws_bytes));
    /* the fastest of the heuristic's, as our autotuning does */
    lt_gemm_init(&p.fused, p.lt, p.ws, p.ws_bytes, p.dgelu ? CUBLAS_OP_N : CUBLAS_OP_T,
                 p.dgelu ? CUBLASLT_EPILOGUE_DGELU : CUBLASLT_EPILOGUE_GELU_AUX_BIAS, p.w_ref, p.x,
                 p.ref_d, p.dgelu ? NULL : p.bias, p.dgelu ? p.pre_in : p.ref_aux, p.N, p.K, p.F);
    const char *theirs_name = p.dgelu ? "DGELU" : "GELU_AUX_BIAS";
    const double tflop = 2.0 * p.N * (double)p.F * p.K / 1e12;

    if (trace) {
        trace_all(&p);
        return 0;
    }
    printf("wgmma_gelu_probe N=%d K=%d F=%d%s (CTAs: %d alone, %d in clusters of two):\n", p.N,
           p.K, p.F, p.dgelu ? " dgelu" : "", p.grid[1], p.grid[2]);
    for (p.cl = 2; p.cl >= 1; p.cl--) { /* clusters of two, then single CTAs: each one's outputs */
        run_cublaslt(&p);
        CK(cudaMemset(p.out0, 0, nout * 2));
        CK(cudaMemset(p.out1, 0, nout * 2));
        run_ours(&p);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        printf(" CTAs in clusters of %d:\n", p.cl);
        check_outputs(&p, nout);
    }
    for (int r = 0; r < 2; r++) { /* twice, alternating */
        p.cl = 1;
        float ours1 = time_ms(run_ours, &p);
        p.cl = 2;
        float ours2 = time_ms(run_ours, &p), theirs = time_ms(run_cublaslt, &p);
        printf("  ours%s %.4f ms (%.0f TFLOP/s) alone, %.4f ms (%.0f) in clusters of two; "
               "cuBLASLt %s (fastest of %d) %.4f ms (%.0f TFLOP/s)\n",
               p.dgelu ? " with the bias gradient" : "", ours1, tflop / ours1 * 1e3, ours2,
               tflop / ours2 * 1e3, theirs_name, p.fused.found, theirs, tflop / theirs * 1e3);
    }
    if (!p.dgelu)
        pingpong_forward(&p, nout, tflop);
    else
        pingpong_dgelu(&p, nout, tflop);
    return 0;
}
