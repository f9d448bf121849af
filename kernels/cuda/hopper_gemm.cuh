/* Hopper (sm_90a) GEMM building blocks and the ping-pong forward GEMM, shared by the CUDA backend
 * (kernels/cuda/hopper_gemm.cu) and the GEMM probes (scripts/bench/wgmma_gelu_probe.cu,
 * output_layer_probe.cu).
 *
 * The PTX wrappers: mbarriers (a stage's "full" and "empty" handshakes), bulk tensor copies (TMA)
 * into shared memory, multicast to a cluster's CTAs and back out to global memory, plain bulk
 * copies, wgmma over operands in shared memory in the 128-byte swizzle (and its fence, commit and
 * wait), and the fences between them.
 *
 * pingpong_kernel: y = x w^T (+ bias) for x [N, K] and w [F, K] (bf16, K contiguous), out0 = y
 * and, with OUTS 2, out1 = act(y rounded to bf16), both [N, F] bf16; with OUTS 3 (a measurement
 * towards the cross-entropy in the output layer's epilogue) y and, through act.rows(row, column
 * tile, m, s), each row's maximum m over the tile's columns of the rounded y and the sum of
 * exp(y - m) there. OUTS 4 and 5 are OUTS 2 halved, for timing its parts: act staged but not
 * stored (4), or stored without being staged (5: out1 gets whatever the unit held). OUTS 6 (fc2's
 * input gradient through the GeLU, a measurement so far): out0 = y * act(pre) with pre [N, F]
 * read through map_o1 (act is then gelu', or the identity where that place holds gelu'(pre)
 * itself), and through act.cols(part, column, sum) each row
 * tile's column sums of out0 as rounded, in two parts (alternate 32-row blocks: part 2 tile + p),
 * for the bias gradient. OUTS 7 (the output layer with its cross-entropy,
 * kernels/cuda/output_layer_ce.cu): out0 = exp(y - ref[row]) (y rounded to bf16 first) for a
 * per-row reference ref = act.ref, and through act.rows(row, column tile, sum) each row's sum of
 * those exponentials (in fp32, before rounding) over the tile's columns. OUTS 8 (fc1 for a
 * training step, linear.cu): out0 = gelu'(y) and out1 = gelu(y), y rounded to bf16, through
 * act.both (the backward then needs only gelu'(pre), which OUTS 6 multiplies in with act the
 * identity).
 *
 * Persistent CTAs of three warpgroups. One thread of the third (the producer) issues the TMA
 * copies of a 128 x 64 tile of x and a PN x 64 tile of w into a ring of stages, tile after tile
 * of the CTA's share. The first two (the consumers) take the CTA's tiles in turn, each its own
 * 128 x PN tile with two m64 wgmmas per k16 step (fp32 accumulators in registers). Their main
 * loops take turns (the "turn" mbarriers): a consumer starts its tile's wgmmas once the other has
 * issued all of its own, so the tensor cores serve one at a time while the other writes its last
 * tile out; the turn also keeps a stage's parity unambiguous (every earlier fill of the ring has
 * been waited for). The epilogue first rounds the whole tile to bf16 with its bias in place (the
 * bias copied to shared memory under the main loop), which frees half the accumulators' registers
 * for its math, then writes 64 rows by 64 columns at a time into one of two staging units in the
 * 128-byte swizzle (y, and with OUTS 2 act of it beside), and the TMA copies the unit out while
 * the next one is written; a tile's first wgmmas write the accumulators without reading them, so
 * that the epilogue's use of them ends there (else ptxas serializes the wgmmas). Rows and columns
 * past N and F are left out by the TMA, columns of K past its end read as zeros. Tiles go with
 * their columns fastest where w fits in L2, else in groups of rows swept column by column
 * (unit_tile). With CL 2 the cluster's two CTAs take tiles of consecutive rows and one column at
 * the same places of their rings, each loading half of w's tile into both (multicast), and a stage
 * is freed only when the consumers of both have read it.
 *
 * With B_MN w is given as [K, F] (F contiguous, as fc2's weight is for its input gradient): its
 * stage holds PN / 64 boxes of 64 columns by 64 k rows and the wgmmas read it transposed (the
 * "MN-major" layout); 64-column boxes split evenly between a cluster's CTAs.
 *
 * With XFORM_A the producer warpgroup's other three warps pass each stage's x tile through
 * act.xform (an elementwise map of x computed on the way in, e.g. the softmax minus one-hot of
 * logits for the output layer's input gradient) before the consumers read it (the "ready"
 * mbarriers).
 *
 * Needs K % 8 == 0 and F % 8 == 0 (the TMA's 16-byte row strides) and 16-byte aligned pointers.
 * Everything here compiles for sm_90a only. */
#ifndef MEGATRON_KERNELS_CUDA_HOPPER_GEMM_CUH
#define MEGATRON_KERNELS_CUDA_HOPPER_GEMM_CUH

#include <cuda.h>
#include <cuda_bf16.h>
#include <stdint.h>

#include <type_traits>

/* A probe's timestamps: TRACE(consumer, tile, event) at the consumer loop's steps (no-op unless an
 * includer defines it; see scripts/bench/wgmma_gelu_probe.cu's trace mode). */
#ifndef HOPPER_GEMM_TRACE
#define HOPPER_GEMM_TRACE(c, i, ev) ((void)0)
#endif

/* The TMA map of a row-major bf16 [rows, cols] matrix in boxes of box_rows x box_cols, the
 * 128-byte swizzle (hopper_gemm.cu; the backend's kernels only, the probes make their own). */
CUtensorMap hopper_tensor_map(const void *p, int64_t rows, int64_t cols, uint32_t box_rows,
                              uint32_t box_cols);

namespace hopper {

/* k per stage (64 bf16: one 128-byte swizzled row) */
enum { BK = 64 };

__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void mbar_init(uint64_t *b, int count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(count));
}

__device__ __forceinline__ void mbar_expect_tx(uint64_t *b, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)),
                 "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t *b)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(b)) : "memory");
}

/* Arrives on the mbarrier at b's place in the shared memory of the cluster's CTA of that rank. */
__device__ __forceinline__ void mbar_arrive_cluster(uint64_t *b, uint32_t rank)
{
    uint32_t remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;"
                 : "=r"(remote)
                 : "r"(smem_u32(b)), "r"(rank));
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" ::"r"(remote) : "memory");
}

/* Every thread of the cluster's CTAs (their barriers initialised, or all their remote accesses
 * done). */
__device__ __forceinline__ void cluster_sync()
{
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;" ::: "memory");
}

__device__ __forceinline__ uint32_t cluster_rank()
{
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}

/* Waits for the completion of b's phase of the given parity (a fresh barrier has completed
 * parity 1). */
__device__ __forceinline__ void mbar_wait(uint64_t *b, int parity)
{
    asm volatile("{\n.reg .pred p;\nWAIT_%=:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 "@!p bra WAIT_%=;\n}\n" ::"r"(smem_u32(b)),
                 "r"(parity)
                 : "memory");
}

__device__ __forceinline__ void tma_load_2d(void *dst, const CUtensorMap *map, int c0, int c1,
                                            uint64_t *bar)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3}], [%4];" ::"r"(smem_u32(dst)),
                 "l"(map), "r"(c0), "r"(c1), "r"(smem_u32(bar))
                 : "memory");
}

/* The same box into the same place of every CTA of the cluster in mask, each completing on its
 * own mbarrier at bar's place. */
__device__ __forceinline__ void tma_load_2d_multicast(void *dst, const CUtensorMap *map, int c0,
                                                      int c1, uint64_t *bar, uint16_t mask)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 ".multicast::cluster [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(smem_u32(dst)),
                 "l"(map), "r"(c0), "r"(c1), "r"(smem_u32(bar)), "h"(mask)
                 : "memory");
}

/* 2^x on the special-function unit (2^-inf = 0). */
__device__ __forceinline__ float exp2f_approx(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* Megatron's bias-GeLU, 0.5 x (1 + tanh(u)) with u = sqrt(2 / pi) (x + 0.044715 x^3), written as
 * x / (1 + exp(-2 u)): four multiply-adds and two approximate MUFU operations (ex2, rcp), within
 * ~1e-6 relative of the exact value for every x (no cancellation where tanh(u) nears -1). */
__device__ __forceinline__ float gelu_tanh_fast(float x)
{
    /* -2 sqrt(2 / pi) log2(e) and its product with 0.044715 */
    const float c1 = -2.302208198f, c3 = -0.1029432396f;
    const float z = x * fmaf(x * x, c3, c1);
    return __fdividef(x, 1.0f + exp2f_approx(z));
}

/* Its derivative in the same form: with s = 1 / (1 + exp(-2 u)), gelu = x s and
 * gelu' = s + 2 x u'(x) s (1 - s), u' = sqrt(2 / pi) (1 + 3 * 0.044715 x^2). */
__device__ __forceinline__ float gelu_tanh_grad_fast(float x)
{
    const float c1 = -2.302208198f, c3 = -0.1029432396f;
    /* 2 sqrt(2 / pi) and its product with 3 * 0.044715 */
    const float k1 = 1.595769122f, k3 = 0.2140644488f;
    const float x2 = x * x;
    const float s = __fdividef(1.0f, 1.0f + exp2f_approx(x * fmaf(x2, c3, c1)));
    return fmaf(x * fmaf(x2, k3, k1) * s, 1.0f - s, s);
}

/* Both at once, sharing s: g = gelu(x), dg = gelu'(x) (OUTS 8's two outputs). */
__device__ __forceinline__ void gelu_tanh_both(float x, float &g, float &dg)
{
    const float c1 = -2.302208198f, c3 = -0.1029432396f, k1 = 1.595769122f, k3 = 0.2140644488f;
    const float x2 = x * x;
    const float s = __fdividef(1.0f, 1.0f + exp2f_approx(x * fmaf(x2, c3, c1)));
    g = x * s;
    dg = fmaf(x * fmaf(x2, k3, k1) * s, 1.0f - s, s);
}

/* wgmma's descriptor of an MN-major operand in shared memory (the B_MN kernels' b): chunks of 64
 * columns (128 bytes) by the stage's 64 k rows in the 128-byte swizzle, 8 KB apart (the leading
 * byte offset, between chunks along MN), groups of 8 k rows 1024 bytes apart (the stride byte
 * offset). */
__device__ __forceinline__ uint64_t desc_mn_sw128(const void *p)
{
    return ((smem_u32(p) & 0x3FFFF) >> 4) | ((uint64_t)(8192 >> 4) << 16) |
           ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

/* One fill of a stage: x's ROWS_X x BK tile at (k block kb, row row0) into a and w's ROWS_W x BK
 * tile at (kb, row col0) into b, both completing on full; with CL 2 this CTA loads its half of
 * w's tile into the same place of both CTAs of the cluster (multicast), the other CTA the other
 * half. */
template <int ROWS_X, int ROWS_W, int CL>
__device__ __forceinline__ void load_stage(__nv_bfloat16 *a, __nv_bfloat16 *b, uint64_t *full,
                                           const CUtensorMap *map_x, const CUtensorMap *map_w,
                                           int kb, int row0, int col0, uint32_t rank)
{
    mbar_expect_tx(full, (ROWS_X + ROWS_W) * BK * 2);
    tma_load_2d(a, map_x, kb * BK, row0, full);
    if (CL == 1)
        tma_load_2d(b, map_w, kb * BK, col0, full);
    else
        tma_load_2d_multicast(b + rank * (ROWS_W / CL) * BK, map_w, kb * BK,
                              col0 + (int)rank * (ROWS_W / CL), full, (uint16_t)((1u << CL) - 1));
}

/* wgmma's descriptor of a K-major operand in shared memory: rows of 64 bf16 (128 bytes) in the
 * 128-byte swizzle, groups of 8 rows 1024 bytes apart. */
__device__ __forceinline__ uint64_t desc_sw128(const void *p)
{
    return ((smem_u32(p) & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}

#define ACC4(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define WACC4(i) "=f"(d[i]), "=f"(d[i + 1]), "=f"(d[i + 2]), "=f"(d[i + 3])
#define WACC16(i) WACC4(i), WACC4(i + 4), WACC4(i + 8), WACC4(i + 12)
#define WACC64 WACC16(0), WACC16(16), WACC16(32), WACC16(48)
#define ACC16(i) ACC4(i), ACC4(i + 4), ACC4(i + 8), ACC4(i + 12)
#define ACC128                                                                                     \
    ACC16(0), ACC16(16), ACC16(32), ACC16(48), ACC16(64), ACC16(80), ACC16(96), ACC16(112)

/* d[64 x 256] (+)= a[64 x 16] b[256 x 16]^T, both from shared memory; d is zeroed first when
 * accumulate is 0. A thread holds rows warp * 16 + lane / 4 (+ 8) of columns 8 j + 2 (lane % 4)
 * (+ 1) in d[4 j .. 4 j + 3]. */
__device__ __forceinline__ void wgmma_64x256(float *d, uint64_t da, uint64_t db, int accumulate)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, "
                 "%31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "
                 "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, "
                 "%61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, "
                 "%76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, "
                 "%91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, "
                 "%105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, "
                 "%117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
                 "%128, %129, p, 1, 1, 0, 0;\n}\n"
                 : ACC128
                 : "l"(da), "l"(db), "r"(accumulate));
}

#define ACC64 ACC16(0), ACC16(16), ACC16(32), ACC16(48)

/* d[64 x 128] (+)= a[64 x 16] b[128 x 16]^T, both from shared memory (the accumulator layout of
 * wgmma_64x256, 16 column groups). FIRST: d = a b^T, d's earlier values not read (a tile's first
 * step: what the last epilogue wrote into d is dead before it). */
#define WGMMA_64X128                                                                               \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                   \
    "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"                                      \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                       \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, "                  \
    "%31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "                  \
    "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, "                  \
    "%61, %62, %63}, "                                                                             \
    "%64, %65, p, 1, 1, 0, %67;\n}\n"
template <int TB, bool FIRST>
__device__ __forceinline__ void wgmma_64x128(float *d, uint64_t da, uint64_t db, int accumulate)
{
    if constexpr (FIRST)
        asm volatile(WGMMA_64X128 : WACC64 : "l"(da), "l"(db), "r"(0), "n"(TB));
    else
        asm volatile(WGMMA_64X128 : ACC64 : "l"(da), "l"(db), "r"(accumulate), "n"(TB));
}

/* d[64 x 192] (+)= a[64 x 16] b[192 x 16]^T (the accumulator layout of wgmma_64x256, 24 column
 * groups; FIRST as wgmma_64x128's). */
#define WGMMA_64X192                                                                               \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %98, 0;\n"                                                   \
    "wgmma.mma_async.sync.aligned.m64n192k16.f32.bf16.bf16 {"                                      \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, "                  \
    "%17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "                  \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, "                  \
    "%47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, "                  \
    "%62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, "                  \
    "%77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, "                  \
    "%92, %93, %94, %95}, "                                                                        \
    "%96, %97, p, 1, 1, 0, %99;\n}\n"
template <int TB, bool FIRST>
__device__ __forceinline__ void wgmma_64x192(float *d, uint64_t da, uint64_t db, int accumulate)
{
    if constexpr (FIRST)
        asm volatile(WGMMA_64X192 : WACC64, WACC16(64), WACC16(80)
                     : "l"(da), "l"(db), "r"(0), "n"(TB));
    else
        asm volatile(WGMMA_64X192 : ACC64, ACC16(64), ACC16(80)
                     : "l"(da), "l"(db), "r"(accumulate), "n"(TB));
}

/* The accumulators pinned after a tile's last wait: no use of them moves above it. */
template <int N> __device__ __forceinline__ void fence_operands(float *d)
{
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}

/* The product of one k16 step for a tile of PN columns (FIRST: the tile's first, d not read). */
template <int PN, int TB, bool FIRST = false>
__device__ __forceinline__ void wgmma_64xn(float *d, uint64_t da, uint64_t db, int accumulate)
{
    if (PN == 128)
        wgmma_64x128<TB, FIRST>(d, da, db, accumulate);
    else
        wgmma_64x192<TB, FIRST>(d, da, db, accumulate);
}

/* An L2 policy that evicts what it marks first (outputs written once, not to push out the
 * operands the next tiles read again). */
__device__ __forceinline__ uint64_t l2_evict_first()
{
    uint64_t p;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
    return p;
}

/* The box at src to the matrix of map at (c0, c1), in this thread's current bulk group, under
 * an L2 cache policy. */
__device__ __forceinline__ void tma_store_2d(const CUtensorMap *map, const void *src, int c0,
                                             int c1, uint64_t policy)
{
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group.L2::cache_hint"
                 " [%0, {%1, %2}], [%3], %4;" ::"l"(map), "r"(c0), "r"(c1), "r"(smem_u32(src)),
                 "l"(policy)
                 : "memory");
}

__device__ __forceinline__ void bulk_commit()
{
    asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}

/* This thread's bulk copies are complete. */
__device__ __forceinline__ void bulk_wait_all()
{
    asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}

/* All but this thread's last group of bulk copies have read their shared memory. */
__device__ __forceinline__ void bulk_wait_read_but_one()
{
    asm volatile("cp.async.bulk.wait_group.read 1;" ::: "memory");
}

/* Every bulk group of this thread has read its shared memory. */
__device__ __forceinline__ void bulk_wait_read_all()
{
    asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
}

/* A bulk copy of bytes (a multiple of 16) from global src to shared dst, completing on bar. */
__device__ __forceinline__ void bulk_load(void *dst, const void *src, uint32_t bytes, uint64_t *bar)
{
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1], %2, [%3];" ::"r"(smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(bar))
                 : "memory");
}

/* wgmma's fence (registers written before it, read by the wgmmas after), group commit and
   wait (at most N groups of this warpgroup still in flight) */
__device__ __forceinline__ void wgmma_fence()
{
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit()
{
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int N> __device__ __forceinline__ void wgmma_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

/* A 32-bit load from shared memory at addr (volatile: kept after the barriers before it). */
__device__ __forceinline__ uint32_t ld_shared_b32(uint32_t addr)
{
    uint32_t v;
    asm volatile("ld.shared.b32 %0, [%1];" : "=r"(v) : "r"(addr) : "memory");
    return v;
}

/* A 16-bit load from shared memory at addr (volatile, as ld_shared_b32). */
__device__ __forceinline__ uint16_t ld_shared_u16(uint32_t addr)
{
    uint16_t v;
    asm volatile("ld.shared.u16 %0, [%1];" : "=h"(v) : "r"(addr) : "memory");
    return v;
}

/* 16 bytes from global src to shared dst without passing through registers, zeros where bytes is
 * 0 (then src is not read); then the wait for this thread's such copies. */
__device__ __forceinline__ void cp_async_16(void *dst, const void *src, int bytes)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void cp_async_wait_all()
{
    asm volatile("cp.async.wait_all;" ::: "memory");
}

/* The threads' shared-memory writes seen by the TMA (the async proxy). */
__device__ __forceinline__ void fence_proxy_async()
{
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

/* The 128 threads of a consumer warpgroup (named barrier id 1 or 2). */
__device__ __forceinline__ void warpgroup_sync(int id)
{
    asm volatile("bar.sync %0, 128;" ::"r"(id) : "memory");
}

/* tile rows, threads, bytes of a 64 x 64 staging box */
enum { PM = 128, PP_THREADS = 384, UNIT_BOX = 64 * 128 };

/* PN: the tile's columns (128 or 192); as many stages as fit beside the staging units */
template <int PN> struct pp_smem {
    static constexpr int STAGES = PN == 128 ? 5 : 4;
    __nv_bfloat16 a[STAGES][PM * BK];
    __nv_bfloat16 b[STAGES][PN * BK];
    /* a consumer's two staging units, each two 64 x 64 boxes (y, act; OUTS 6: dpre, pre): one is
       written while the TMA reads the other */
    __nv_bfloat16 out[2][2][2][64 * 64];
    __nv_bfloat16 bias[2][PN]; /* a consumer's tile's columns of the bias (zeros past F) */
    float ref[2][PM];          /* OUTS 7: a consumer's tile's rows of act.ref (zeros past N) */
    uint64_t full[STAGES], empty[STAGES], turn[2];
    uint64_t pre_full[2][2]; /* OUTS 6: a consumer's unit's pre box landed */
    uint64_t ready[STAGES]; /* XFORM_A: the stage's x tile transformed */
};

/* Dynamic shared memory of a launch: the layout and room to align it to 1024 bytes. */
template <int PN> constexpr size_t pp_smem_bytes() { return sizeof(pp_smem<PN>) + 1024; }
static_assert(pp_smem_bytes<128>() <= 227 * 1024 && pp_smem_bytes<192>() <= 227 * 1024,
              "the layout fits a Hopper CTA's shared memory");

/* Act types with a gate: a kernel whose act.open() is false returns at once (a fallback launched
 * in every step, e.g. into a CUDA graph, that runs only when an earlier kernel asked for it). */
template <class A, class = void> struct has_gate : std::false_type {};
template <class A>
struct has_gate<A, std::void_t<decltype(std::declval<const A &>().open())>> : std::true_type {};

/* The consumer's tile as y = d plus the tile's bias (shared memory), rounded to bf16, two columns a
 * word, in place: d[4 j + 2 rr] of half h (d0, d1) becomes the word of rows 64 h + 16 warp +
 * lane / 4 + 8 rr, columns 8 j + 2 (lane % 4) and the next (the accumulators' layout), and
 * d[4 j + 2 rr + 1] is free. Done first, it leaves half the accumulators' registers to the
 * staging's math (with all of them live the GeLU's chains ran one or two at a time, H100). */
template <int PN>
__device__ __forceinline__ void pack_tile(float *d0, float *d1, const __nv_bfloat16 *bias, int lane)
{
    const int cq = 2 * (lane % 4);
#pragma unroll
    for (int j = 0; j < PN / 8; j++) {
        uint32_t bw = ld_shared_b32(smem_u32(bias + 8 * j + cq));
        const float2 bb = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&bw));
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float *d = h ? d1 : d0;
#pragma unroll
            for (int rr = 0; rr < 2; rr++) {
                __nv_bfloat162 v = __floats2bfloat162_rn(d[4 * j + 2 * rr] + bb.x,
                                                         d[4 * j + 2 * rr + 1] + bb.y);
                d[4 * j + 2 * rr] = __uint_as_float(*reinterpret_cast<uint32_t *>(&v));
            }
        }
    }
}

/* Half the rows (64) and column groups j0 .. j0 + 7 (64 columns) of the consumer's packed tile y
 * (pack_tile's d0 or d1) into one of its staging units: y into the unit's first box and, with
 * OUTS 2, act of it into its second; with OUTS 3 the running maximum and sum of exponentials of
 * the thread's two rows (rmax, rsum); with OUTS 7 exp(y - ref) in place of y, rmax holding the
 * two rows' ref log2 e and rsum their running sums; with OUTS 8 gelu'(y) in place of y and gelu(y)
 * beside it. A thread holds the unit's rows 16 warp + lane / 4 (+ 8), both r7 = lane / 4 modulo
 * 8, so column group j's 16-byte chunk is (j % 8) ^ r7 (the 128-byte swizzle). Columns from lim on
 * are past F. */
template <int OUTS, class Act>
__device__ __forceinline__ void stage_unit(unsigned char *unit, const float *y, int lim, int j0,
                                           int warp, int lane, Act act, float *rmax, float *rsum)
{
    float u[2][16]; /* OUTS 3: the unit's y of the thread's two rows, for their statistics */
    const uint32_t r7 = (uint32_t)lane / 4, cq = 2 * (lane % 4);
    const uint32_t base = smem_u32(unit) + (uint32_t)(warp * 16 + lane / 4) * 128 + 2 * cq;
    /* OUTS 6: the unit's pre words first (loaded between the stores, each would wait for them) */
    uint32_t pre[16];
    if (OUTS == 6)
#pragma unroll
        for (int k = 0; k < 16; k++)
            pre[k] = ld_shared_b32(base + (((uint32_t)(j0 + k / 2) & 7) ^ r7) * 16 +
                                   8 * (k % 2) * 128 + UNIT_BOX);
#pragma unroll
    for (int j = j0; j < j0 + 8; j++) {
        const uint32_t at = base + ((((uint32_t)j & 7) ^ r7) << 4);
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            uint32_t w = __float_as_uint(y[4 * j + 2 * rr]);
            const uint32_t row_at = at + 8 * rr * 128;
            if (OUTS != 6 && OUTS != 7 && OUTS != 8)
                asm volatile("st.shared.b32 [%0], %1;" ::"r"(row_at), "r"(w) : "memory");
            const float2 f = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&w));
            if constexpr (OUTS == 8) { /* gelu'(y) into the first box, gelu(y) the second */
                float g0, g1, d0, d1;
                act.both(f.x, g0, d0);
                act.both(f.y, g1, d1);
                __nv_bfloat162 vd = __floats2bfloat162_rn(d0, d1);
                __nv_bfloat162 vg = __floats2bfloat162_rn(g0, g1);
                asm volatile("st.shared.b32 [%0], %1;" ::"r"(row_at),
                             "r"(*reinterpret_cast<uint32_t *>(&vd))
                             : "memory");
                asm volatile("st.shared.b32 [%0], %1;" ::"r"(row_at + UNIT_BOX),
                             "r"(*reinterpret_cast<uint32_t *>(&vg))
                             : "memory");
            }
            if (OUTS == 3) {
                const bool in = 8 * j + (int)cq < lim;
                u[rr][2 * (j - j0)] = in ? f.x : -INFINITY;
                u[rr][2 * (j - j0) + 1] = in ? f.y : -INFINITY;
            }
            if (OUTS == 6) { /* the unit's second box holds pre; the first gets dpre */
                uint32_t pw = pre[2 * (j - j0) + rr];
                const float2 pf = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&pw));
                __nv_bfloat162 v = __floats2bfloat162_rn(f.x * act(pf.x), f.y * act(pf.y));
                w = *reinterpret_cast<uint32_t *>(&v);
                asm volatile("st.shared.b32 [%0], %1;" ::"r"(row_at), "r"(w) : "memory");
            }
            if (OUTS == 7) { /* exp(y - ref) = 2^(y log2 e - rmax), rmax = ref log2 e */
                const float e0 = exp2f_approx(fmaf(f.x, 1.44269504f, -rmax[rr]));
                const float e1 = exp2f_approx(fmaf(f.y, 1.44269504f, -rmax[rr]));
                if (8 * j + (int)cq < lim) rsum[rr] += e0 + e1;
                __nv_bfloat162 v = __floats2bfloat162_rn(e0, e1);
                asm volatile("st.shared.b32 [%0], %1;" ::"r"(row_at),
                             "r"(*reinterpret_cast<uint32_t *>(&v))
                             : "memory");
            }
            if (OUTS == 2 || OUTS == 4) {
                __nv_bfloat162 v = __floats2bfloat162_rn(act(f.x), act(f.y));
                asm volatile("st.shared.b32 [%0], %1;" ::"r"(row_at + UNIT_BOX),
                             "r"(*reinterpret_cast<uint32_t *>(&v))
                             : "memory");
            }
        }
    }
    if (OUTS == 3)
#pragma unroll
        for (int rr = 0; rr < 2; rr++) { /* the running max and sum of exp(y - max) */
            float m = rmax[rr];
#pragma unroll
            for (int e = 0; e < 16; e++) m = fmaxf(m, u[rr][e]);
            if (m == -INFINITY) continue; /* no column of the row yet */
            float sum = rsum[rr] * exp2f_approx((rmax[rr] - m) * 1.44269504f);
#pragma unroll
            for (int e = 0; e < 16; e++) sum += exp2f_approx((u[rr][e] - m) * 1.44269504f);
            rmax[rr] = m, rsum[rr] = sum;
        }
}

/* Unit u's row unit and column tile. Where w is larger than HOPPER_F_FASTEST_BYTES, units go in
 * groups of GROUP row units swept column by column (u = rows of the group fastest), so the tiles
 * running at once share their rows of x and their columns of w in L2 even where w is larger than
 * L2 (the output layer's 77 MB at GPT-2's vocab). Where w stays in L2 anyway, the columns go
 * fastest: a row unit's column tiles run side by side, so its x tiles come from memory once and
 * are shared in L2 (1-10% faster at GPT-2 124M's 65536 x 3072 -> 768 and 65536 x 2304 -> 768, the
 * same bits: docs/PERFORMANCE.md). A row unit is CL tiles of consecutive rows. */
enum { GROUP = 16 };
#ifndef HOPPER_F_FASTEST_BYTES
#define HOPPER_F_FASTEST_BYTES (16 << 20)
#endif

__device__ __forceinline__ void unit_tile(int u, int row_units, int tiles_f, bool f_fastest,
                                          int &ru, int &tf)
{
    if (f_fastest) {
        ru = u / tiles_f;
        tf = u - ru * tiles_f;
        return;
    }
    const int per_group = GROUP * tiles_f, g = u / per_group, first = g * GROUP;
    const int rows = row_units - first < GROUP ? row_units - first : GROUP, r = u - g * per_group;
    ru = first + r % rows;
    tf = r / rows;
}

/* The GEMM (see the top of this file); map_x and map_w read boxes of 128 x BK and (PN / CL) x BK,
 * map_o0 and map_o1 write boxes of 64 x 64; bias may be NULL. Launched with PP_THREADS threads,
 * pp_smem_bytes<PN>() of dynamic shared memory and clusters of CL, at most one CTA a tile. */
template <int OUTS, int PN, int CL, class Act, bool B_MN = false, bool XFORM_A = false>
__global__ void __launch_bounds__(PP_THREADS, 1)
    pingpong_kernel(const __grid_constant__ CUtensorMap map_x,
                    const __grid_constant__ CUtensorMap map_w,
                    const __grid_constant__ CUtensorMap map_o0,
                    const __grid_constant__ CUtensorMap map_o1,
                    const __nv_bfloat16 *__restrict__ bias, int N, int F, int K, Act act)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    static_assert(!B_MN || (PN / 64) % CL == 0, "an MN-major w's 64-column boxes split evenly");
    using smem_t = pp_smem<PN>;
    constexpr int S = smem_t::STAGES;
    extern __shared__ unsigned char smem_raw[];
    /* aligned by an offset from smem_raw (not through an integer): accesses through s stay
       shared-memory ones to the compiler */
    smem_t &s = *reinterpret_cast<smem_t *>(smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023));
    const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
    const uint32_t rank = CL > 1 ? cluster_rank() : 0;
    const int row_tiles = (N + PM - 1) / PM, tiles_f = (F + PN - 1) / PN;
    const int row_units = (row_tiles + CL - 1) / CL, units = row_units * tiles_f;
    const int kblocks = (K + BK - 1) / BK;
    const bool f_fastest = (long long)F * K * 2 <= (long long)HOPPER_F_FASTEST_BYTES;
    const int cid = blockIdx.x / CL, clusters = gridDim.x / CL;
    if constexpr (has_gate<Act>::value)
        if (!act.open()) return; /* the same for every thread of the grid */
    if (threadIdx.x == 0) {
        for (int i = 0; i < S; i++) {
            mbar_init(&s.full[i], 1);
            mbar_init(&s.empty[i], 4 * CL); /* lane 0 of each warp of the stage's consumers */
        }
        mbar_init(&s.turn[0], 4);
        mbar_init(&s.turn[1], 4);
        for (int k = 0; k < 4; k++) mbar_init(&s.pre_full[k / 2][k % 2], 1);
        for (int i = 0; i < S; i++) mbar_init(&s.ready[i], 3); /* lane 0 of each helper warp */
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    if (CL > 1)
        cluster_sync();
    else
        __syncthreads();
    if (wg == 2) {
        /* the producer's registers go to the consumers: 40 + 2 x 232 a warp of each quarter */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        if (tid == 0) {
            int stage = 0, phase = 0;
            for (int u = cid; u < units; u += clusters) {
                int ru, tf;
                unit_tile(u, row_units, tiles_f, f_fastest, ru, tf);
                const int tn = ru * CL + (int)rank;
                for (int kb = 0; kb < kblocks; kb++) {
                    mbar_wait(&s.empty[stage], phase ^ 1);
                    if (B_MN) { /* w [K, F]: PN / 64 boxes of 64 columns by 64 k rows */
                        mbar_expect_tx(&s.full[stage], (PM + PN) * BK * 2);
                        tma_load_2d(s.a[stage], &map_x, kb * BK, tn * PM, &s.full[stage]);
                        constexpr int CHUNKS = PN / 64 / CL;
#pragma unroll
                        for (int q = 0; q < CHUNKS; q++) {
                            const int chunk = (int)rank * CHUNKS + q;
                            if (CL == 1)
                                tma_load_2d(s.b[stage] + chunk * 64 * BK, &map_w,
                                            tf * PN + 64 * chunk, kb * BK, &s.full[stage]);
                            else
                                tma_load_2d_multicast(s.b[stage] + chunk * 64 * BK, &map_w,
                                                      tf * PN + 64 * chunk, kb * BK,
                                                      &s.full[stage], (uint16_t)((1u << CL) - 1));
                        }
                    } else {
                        load_stage<PM, PN, CL>(s.a[stage], s.b[stage], &s.full[stage], &map_x,
                                               &map_w, kb, tn * PM, tf * PN, rank);
                    }
                    if (++stage == S) stage = 0, phase ^= 1;
                }
            }
        }
        if constexpr (XFORM_A) if (tid >= 32) {
            /* the helpers: each stage's x tile through act.xform (8 elements at a time, given
               their row of x and first column) once it has landed, then "ready" */
            const int hid = tid - 32;
            int q = 0;
            for (int u = cid; u < units; u += clusters) {
                int ru, tf;
                unit_tile(u, row_units, tiles_f, f_fastest, ru, tf);
                const int tn = ru * CL + (int)rank;
                for (int kb = 0; kb < kblocks; kb++, q++) {
                    const int stage = q % S;
                    mbar_wait(&s.full[stage], (q / S) & 1);
                    unsigned char *a = reinterpret_cast<unsigned char *>(s.a[stage]);
                    for (int i = hid; i < PM * 8; i += 96) {
                        const int r = i >> 3, chunk = (i & 7) ^ (r & 7); /* the 128-byte swizzle */
                        uint4 *at = reinterpret_cast<uint4 *>(a + r * 128 + (i & 7) * 16);
                        *at = act.xform(*at, tn * PM + r, kb * BK + chunk * 8);
                    }
                    fence_proxy_async(); /* the wgmmas read it through the async proxy */
                    __syncwarp();
                    if ((tid & 31) == 0) mbar_arrive(&s.ready[stage]);
                }
            }
        }
        if (CL > 1) cluster_sync(); /* no CTA leaves while the other may still arrive on it */
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
    const int c = wg, warp = tid / 32, lane = tid % 32;
    auto release = [lane](uint64_t *empty) { /* a stage read: lane r frees it in CTA r */
        if (CL == 1)
            mbar_arrive(empty);
        else
            mbar_arrive_cluster(empty, (uint32_t)lane);
    };
    unsigned char *stg = reinterpret_cast<unsigned char *>(s.out[c]);
    /* the outputs are written once: first out of L2, ahead of the operands later tiles read again
       (the two outputs' stores slowed the other consumer's main loop, H100) */
    const uint64_t pol = l2_evict_first();
    float d0[PN / 2], d1[PN / 2];
    int i = 0;
    for (int u = cid + c * clusters; u < units; u += 2 * clusters, i++) {
        int ru, tf;
        unit_tile(u, row_units, tiles_f, f_fastest, ru, tf);
        const int tn = ru * CL + (int)rank;
        int q = (2 * i + c) * kblocks; /* the tile's first fill of the ring */
        /* the tile's bias into shared memory under the main loop (its last reader, this
           consumer's last epilogue, is past a warpgroup barrier): a global load's latency in
           each of the epilogue's units cost most of its time (H100) */
        if (tid < PN / 8) {
            const int col = tf * PN + 8 * tid;
            cp_async_16(s.bias[c] + 8 * tid, bias && col < F ? bias + col : bias,
                        bias && col < F ? 16 : 0);
        }
        constexpr int ROUNDS = PN / 32; /* the epilogue's 64 x 64 units a tile */
        /* OUTS 6: pre's boxes for a unit's first two rounds, under the main loop (the units are
           free: this consumer's last epilogue is done) */
        auto load_pre = [&](int r) {
            uint64_t *bar = &s.pre_full[c][r & 1];
            mbar_expect_tx(bar, UNIT_BOX);
            tma_load_2d(stg + (r & 1) * 2 * UNIT_BOX + UNIT_BOX, &map_o1, tf * PN + 64 * (r / 2),
                        tn * PM + 64 * (r % 2), bar);
        };
        if (OUTS == 6 && tid == 0) load_pre(0), load_pre(1);
        if constexpr (OUTS == 7)
            if (tid < PM / 4) { /* the tile's rows of ref, as the bias */
                const int row = tn * PM + 4 * tid, left = N - row;
                cp_async_16(s.ref[c] + 4 * tid, left > 0 ? act.ref + row : act.ref,
                            left >= 4 ? 16 : left > 0 ? 4 * left : 0);
            }
        HOPPER_GEMM_TRACE(c, i, 0);
        mbar_wait(&s.turn[c], c == 0 ? (i & 1) ^ 1 : i & 1);
        HOPPER_GEMM_TRACE(c, i, 1);
        int prev = -1;
        /* one k block of the ring's stages; the tile's first (k block 0) writes d without reading
           it, so the last epilogue's use of d as its scratch ends before it */
        auto kblock = [&](int kb, auto first) {
            const int stage = q % S;
            mbar_wait(XFORM_A ? &s.ready[stage] : &s.full[stage], (q / S) & 1);
            asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
            const __nv_bfloat16 *a = s.a[stage], *b = s.b[stage];
#pragma unroll
            for (int kk = 0; kk < BK / 16; kk++) {
                /* b's k16 step: 16 elements into its rows, or (B_MN) 16 rows of 64 down */
                const uint64_t db =
                    B_MN ? desc_mn_sw128(b + kk * 16 * 64) : desc_sw128(b + kk * 16);
                constexpr bool F0 = decltype(first)::value;
                if (F0 && kk == 0) {
                    wgmma_64xn<PN, B_MN, true>(d0, desc_sw128(a), db, 0);
                    wgmma_64xn<PN, B_MN, true>(d1, desc_sw128(a + 64 * BK), db, 0);
                } else {
                    wgmma_64xn<PN, B_MN>(d0, desc_sw128(a + kk * 16), db, 1);
                    wgmma_64xn<PN, B_MN>(d1, desc_sw128(a + 64 * BK + kk * 16), db, 1);
                }
            }
            asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
            asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
            if (prev >= 0 && lane < CL) release(&s.empty[prev]);
            prev = stage;
            q++;
        };
        kblock(0, std::true_type());
        for (int kb = 1; kb < kblocks; kb++) kblock(kb, std::false_type());
        HOPPER_GEMM_TRACE(c, i, 2);
        if (lane == 0) mbar_arrive(&s.turn[c ^ 1]); /* the other consumer's main loop may start */
        asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
        HOPPER_GEMM_TRACE(c, i, 3);
        fence_operands<PN / 2>(d0);
        fence_operands<PN / 2>(d1);
        if (tid < PN / 8 || (OUTS == 7 && tid < PM / 4)) cp_async_wait_all();
        warpgroup_sync(1 + c); /* the tile's bias (and ref), copied by the first threads */
        if (lane < CL) release(&s.empty[prev]);
        pack_tile<PN>(d0, d1, s.bias[c], lane);

        /* 64 rows and 64 columns at a time, into the two staging units in turn (an even number
           a tile, so a tile starts on the first) */
        float rmax[2][2] = {{-INFINITY, -INFINITY}, {-INFINITY, -INFINITY}};
        float rsum[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
        if constexpr (OUTS == 7)
#pragma unroll
            for (int h = 0; h < 2; h++)
#pragma unroll
                for (int rr = 0; rr < 2; rr++)
                    rmax[h][rr] =
                        s.ref[c][64 * h + warp * 16 + lane / 4 + 8 * rr] * 1.44269504f;
        float colsum = 0.0f; /* OUTS 6: thread t's part of its column of the tile's dpre */
#pragma unroll
        for (int r = 0; r < ROUNDS; r++) {
            const int h = r % 2, ch = r / 2;
            unsigned char *unit = stg + (r & 1) * 2 * UNIT_BOX;
            if (tid == 0) bulk_wait_read_but_one(); /* the unit's last copies have read it */
            if (OUTS == 6) mbar_wait(&s.pre_full[c][r & 1], (i * (ROUNDS / 2) + r / 2) & 1);
            HOPPER_GEMM_TRACE(c, i, 4 + 3 * r);
            warpgroup_sync(1 + c);
            HOPPER_GEMM_TRACE(c, i, 5 + 3 * r);
            stage_unit<OUTS>(unit, h ? d1 : d0, F - tf * PN, 8 * ch, warp, lane, act,
                             rmax[h], rsum[h]);
            fence_proxy_async();
            warpgroup_sync(1 + c);
            HOPPER_GEMM_TRACE(c, i, 6 + 3 * r);
            if (tid == 0) {
                const int col = tf * PN + 64 * ch, row = tn * PM + 64 * h;
                tma_store_2d(&map_o0, unit, col, row, pol);
                if (OUTS == 2 || OUTS == 5 || OUTS == 8)
                    tma_store_2d(&map_o1, unit + UNIT_BOX, col, row, pol);
                bulk_commit();
                if (OUTS == 6 && r + 2 < ROUNDS) load_pre(r + 2); /* its pre box is read */
            }
            if constexpr (OUTS == 6) {
                /* dpre's column sums: thread t takes column t % 64 of the unit, 32 of its rows
                   from 32 (t / 64) on, in order */
                const int cl = tid % 64, r0 = 32 * (tid / 64);
                const uint32_t cb = smem_u32(unit) + 2 * (cl % 8);
                float part[2] = {0.0f, 0.0f};
#pragma unroll
                for (int row = r0; row < r0 + 32; row++) {
                    const uint32_t at = cb + row * 128 + ((((uint32_t)cl / 8) ^ (row % 8)) << 4);
                    part[row % 2] += __uint_as_float((uint32_t)ld_shared_u16(at) << 16);
                }
                colsum += part[0] + part[1];
                if (h == 1) { /* the tile's rows done: two partial rows (alternate 32-row
                                 blocks) a row tile */
                    const int col = tf * PN + 64 * ch + cl;
                    if (col < F) act.cols(2 * tn + tid / 64, col, colsum);
                    colsum = 0.0f;
                }
            }
        }
        if constexpr (OUTS == 3) { /* each row's over the tile: the four lanes of a row merged */
#pragma unroll
            for (int h = 0; h < 2; h++)
#pragma unroll
                for (int rr = 0; rr < 2; rr++) {
                    float m = rmax[h][rr], sum = rsum[h][rr];
#pragma unroll
                    for (int off = 1; off <= 2; off <<= 1) {
                        const float om = __shfl_xor_sync(0xffffffffu, m, off);
                        const float os = __shfl_xor_sync(0xffffffffu, sum, off);
                        const float nm = fmaxf(m, om);
                        sum = nm == -INFINITY ? 0.0f
                                              : sum * exp2f_approx((m - nm) * 1.44269504f) +
                                                    os * exp2f_approx((om - nm) * 1.44269504f);
                        m = nm;
                    }
                    const int row = tn * PM + 64 * h + warp * 16 + lane / 4 + 8 * rr;
                    if (lane % 4 == 0 && row < N) act.rows(row, tf, m, sum);
                }
        }
        if constexpr (OUTS == 7) { /* each row's sum over the tile, the four lanes of a row */
#pragma unroll
            for (int h = 0; h < 2; h++)
#pragma unroll
                for (int rr = 0; rr < 2; rr++) {
                    float sum = rsum[h][rr];
                    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
                    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
                    const int row = tn * PM + 64 * h + warp * 16 + lane / 4 + 8 * rr;
                    if (lane % 4 == 0 && row < N) act.rows(row, tf, sum);
                }
        }
    }
    if (tid == 0) bulk_wait_all();
    if (CL > 1) cluster_sync();
#endif
}

} /* namespace hopper */

#endif
