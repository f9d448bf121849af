/* Causal attention's backward of our own for head dimension 64 (sm_90a: TMA, wgmma, bulk
 * copies), where it applies: bf16, one query head per group (n = g), no attention dropout, T a
 * multiple of 128. attention.cu runs it instead of cuDNN's backward wherever it applies
 * (MEGATRON_FLASH_BACKWARD=cudnn for cuDNN's, to time them; docs/PERFORMANCE.md), in one of two
 * forms of one kernel:
 *   by key blocks (the default): the work items are the heads' key blocks, taken in order from a
 *     counter by persistent CTAs, so that the CTAs at work at a time share a few heads' Q and dO
 *     in L2; dQ's parts are added into fp32 sums shared by the CTAs, and the last of a query
 *     block's parts converts it. Not deterministic (the parts' order varies);
 *   by heads (KEY_BLOCKS false: --deterministic-mode's): one CTA takes a whole head, its key
 *     blocks in order; a query block's dQ then has one owner (consumer i % 2, each element one
 *     thread) across the head, its partial sums in a per-CTA scratch row: the first key block
 *     stores them, later ones add theirs (the TMA's bulk store and reduce-add), and the last
 *     (j = i / 2, the block holding the diagonal) loads the sum so far, adds its part, scales,
 *     rounds and writes dQ into dqkv. One order of the sums: the same inputs give the same bits.
 *
 * The arithmetic is the flash-attention backward's: with S = q k^T, P = exp(S / sqrt(d) - lse)
 * (lse the forward's saved natural-log statistic) and Delta = rowsum(dO * O),
 *   dV = P^T dO, dP = dO V^T, dS = P * (dP - Delta), dQ = dS K / sqrt(d), dK = dS^T Q / sqrt(d),
 * P and dS rounded to bf16 for their products, every sum in fp32. Delta comes from a small kernel
 * first. A key block j holds 128 rows; under it, the query blocks of 64 rows that see it
 * (i >= 2j, causal), one step each.
 *
 * CTA: three warpgroups. The third's first thread is the producer: it loads K_j and V_j (two
 * buffers) and, for each step, Q_i and dO_i (64 x 64 each, the 128-byte swizzle) with lse_i and
 * Delta_i into a ring of stages. The first two (consumers) each own 64 of the key block's 128 rows:
 * they hold dK and dV of those rows in registers (fp32) across the block's steps, compute
 * S^T = K Q^T and dP^T = V dO^T (wgmma, both operands in shared memory), P^T and dS^T in
 * registers, then dV += P^T dO and dK += dS^T Q with P^T and dS^T as register operands (the
 * accumulator layout is the A-fragment layout). dQ_i = dS K needs all 128 key rows: both
 * consumers write dS^T (bf16) to shared memory and meet at a barrier; consumer i % 2 then
 * multiplies it (two dS buffers by i's parity, so that writing the next step's never waits for
 * that product). A step's S^T and dP^T are issued under the previous step's tail. At the end of
 * a key block each consumer writes its rows of dK and dV into its halves of the block's K and V
 * buffers and the TMA copies them into dqkv. By key blocks,
 * the consumer puts its dQ part in shared memory and the third warpgroup's second or third warp
 * (one for each consumer) adds it into the shared sums (the TMA's reduce-add), counts it,
 * and, for the last part of a query block, convert the sum into dqkv and leave the sums and the
 * count zero again (cuda_zeroed): no zeroing pass, no conversion pass, and the consumers never
 * wait for a global round trip. With linear_qkv's bias gradient asked for (by key blocks), the
 * third warpgroup's fourth warp sums the columns of each key block's dK and dV tiles on their way
 * out, and of the dQ tiles the writers round, into partial rows of 64 rows each that
 * cuda_colsum_reduce adds: the column sums of the bf16 dqkv written, without a pass over it. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/hopper_gemm.cuh"

typedef __nv_bfloat16 bf16;

namespace flash {

using namespace hopper;

enum { HD = 64, BN = 128, BM = 64, STAGES = 3, THREADS = 384 };
static_assert(BN == 2 * BM, "a key block is two query blocks: its steps start at i = 2j, and each "
                            "consumer's 64 key rows are one query block's");
/* Registers a thread after the split (setmaxnreg): the launch gives 168 x 384 (ptxas -v), the
   third warpgroup (the producer and the dQ writers) hands some to the consumers: 40 x 128 +
   232 x 256 = 168 x 384. (With 24 and 240 the third warpgroup's code spilled 60 bytes a thread;
   a split asking more than the launch gives never returns from setmaxnreg.inc.) */
enum { REGS_PRODUCER = 40, REGS_CONSUMER = 232 };
static_assert(REGS_PRODUCER * 128 + REGS_CONSUMER * 256 <= 168 * THREADS,
              "the split fits the registers the launch gives");

struct smem {
    bf16 k[2][BN * HD]; /* K_j, V_j of the key block: two buffers */
    bf16 v[2][BN * HD];
    bf16 q[STAGES][BM * HD]; /* a step's Q_i and dO_i */
    bf16 dout[STAGES][BM * HD];
    bf16 ds[2][BN * BM];   /* dS^T of a step [key row][query row], by the step's parity */
    float dqs[2][BM * HD];  /* consumer c's dQ part out */
    float dqin[2][BM * HD]; /* by heads: the sum so far in; by key blocks: a sum to convert */
    bf16 dqo[2][BM * HD];   /* by key blocks: writer c's dQ rows out (the TMA's 128-byte swizzle) */
    float lse[STAGES][BM];
    float delta[STAGES][BM];
    uint64_t full[STAGES], empty[STAGES], kv_full[2], kv_empty[2], dq_full[2];
    /* by key blocks: the work item (head nkv + j) in each K/V buffer; consumer c's dQ part out
       filled and read, and its query block (head nq + i) (-1: none left) */
    int kv_work[2];
    uint64_t dq_staged[2], dq_free[2];
    int staged[2];
    uint64_t tiles_ready[2]; /* by key blocks, summing: both consumers' dK and dV tiles written */
    /* by key blocks, summing: writer c's dQ tile converted into dqo[c] (its query block in
       dq_out_idx[c]; -1: the writer is done), and its column sums taken (dqo[c] free again) */
    uint64_t dq_out[2], dq_summed[2];
    int dq_out_idx[2];
};

constexpr size_t smem_bytes() { return sizeof(smem) + 1024; }
static_assert(smem_bytes() <= 227 * 1024, "the layout fits a Hopper CTA's shared memory");

#define D32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, " \
            "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"

/* d[64 x 64] (+)= a[64 x 16] b[64 x 16]^T from shared memory (d zeroed first unless accumulate);
 * TA / TB: a / b stored MN-major (transposed). The accumulator layout of wgmma_64x256's. */
template <int TA, int TB>
__device__ __forceinline__ void mma_ss(float *d, uint64_t da, uint64_t db, int accumulate)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " D32
                 ", %32, %33, p, 1, 1, %35, %36;\n}\n"
                 : ACC16(0), ACC16(16)
                 : "l"(da), "l"(db), "r"(accumulate), "n"(TA), "n"(TB));
}

/* d[64 x 64] += a[64 x 16] b[64 x 16]^T, a in registers (four words: the accumulator layout's
 * column groups 2t and 2t + 1 as bf16 pairs), b from shared memory MN-major. */
__device__ __forceinline__ void mma_rs(float *d, const uint32_t *a, uint64_t db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " D32
                 ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
                 : ACC16(0), ACC16(16)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

/* The byte offset of byte b of 16-byte chunk k of row r in a tile of 128-byte rows as the TMA's
   128-byte swizzle lays it out (chunk k of row r at k ^ (r % 8)), as wgmma's descriptors and the
   TMA's copies read it: the 64 x 64 bf16 tiles written here (dS^T; dQ, dK, dV on their way out). */
__device__ __forceinline__ int sw128_at(int r, int k, int b)
{
    return r * 128 + ((k ^ (r & 7)) << 4) + b;
}

/* Whether b's phase of the given parity has completed, without waiting (lane 0 asks, the warp
 * gets the answer; where it has, every lane then waits for it too, for the acquire). */
__device__ __forceinline__ bool mbar_done(uint64_t *b, int parity, int lane)
{
    uint32_t done = 0;
    if (lane == 0)
        asm volatile("{\n.reg .pred p;\n"
                     "mbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(smem_u32(b)), "r"(parity)
                     : "memory");
    done = __shfl_sync(0xffffffffu, done, 0);
    if (done) mbar_wait(b, parity);
    return done != 0;
}

/* Both consumer warpgroups (named barrier 1). */
__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, 256;" ::: "memory"); }

/* bytes from shared src to global dst, stored or (ADD) added in fp32 there, in this thread's
   current bulk group */
template <bool ADD>
__device__ __forceinline__ void bulk_store(float *dst, const void *src, uint32_t bytes)
{
    if (ADD)
        asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;"
                     ::"l"(dst), "r"(smem_u32(src)), "r"(bytes)
                     : "memory");
    else
        asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(dst),
                     "r"(smem_u32(src)), "r"(bytes)
                     : "memory");
}

struct args {
    bf16 *dqkv;         /* [B T, W] */
    const float *lse;   /* [B, H, T] natural log */
    const float *delta; /* [B, H, T] */
    float *dq_acc;      /* by heads [gridDim.x, T, 64]; by key blocks [B H, T, 64], kept zero */
    int *counts;        /* by key blocks: [B H, T / 64] parts added to a query block, kept zero */
    int *work;          /* by key blocks: the next work item, zeroed by delta_kernel */
    int T, H, W;        /* W: qkv's row (3 H 64) */
    int items;          /* B H heads */
    float *db_parts;    /* by key blocks: [B T / 64, W] column sums of dqkv's 64-row blocks, or
                           NULL (no bias gradient asked for) */
    float scale;        /* 1 / sqrt(64) */
};

/* Lane l's columns 2 l and 2 l + 1 of rows [row0, row0 + 64) of a swizzled 64-column bf16 tile,
 * summed in row order (fp32) and stored at dst[2 l], dst[2 l + 1]. */
__device__ __forceinline__ void tile_column_sums(const unsigned char *tile, int row0, int lane,
                                                 float *dst)
{
    float s0 = 0.0f, s1 = 0.0f;
#pragma unroll 8
    for (int r = row0; r < row0 + 64; r++) {
        const unsigned char *at = tile + sw128_at(r, lane / 4, (lane % 4) * 4);
        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(at));
        s0 += f.x, s1 += f.y;
    }
    dst[2 * lane] = s0, dst[2 * lane + 1] = s1;
}

/* Head item's (b H + h) columns of the partial row of its rows [row, row + 64) (row a multiple of
 * 64 within the sequence): where a tile's column sums go. */
__device__ __forceinline__ float *db_part(const args &a, int item, int row)
{
    return a.db_parts + ((int64_t)(item / a.H) * a.T + row) / 64 * a.W + (item % a.H) * 3 * HD;
}

/* By key blocks, summing: the fourth warp of the third warpgroup takes the column sums of every
 * tile of dqkv on its way out, into its partial row, whichever is ready first: each key block's
 * dK and dV (in the consumers' order, once both have written theirs into the block's K and V
 * buffers, a 64-row half at a time; then it frees the buffers too, the ninth of kv_empty's
 * arrivals) and each dQ tile a writer has converted (then dqo is the writer's again). The warp
 * asks the barriers in turn and sleeps a little when none is ready, so that the consumer warps
 * beside it on its scheduler keep their issue slots. */
__device__ __forceinline__ void column_sums(smem &s, const args &a, int lane, int nkv, int nq)
{
    int n = 0, w = 0, conv[2] = {0, 0};
    bool kv_done = false, block_known = false, writer_done[2] = {false, false};
    while (!kv_done || !writer_done[0] || !writer_done[1]) {
        bool worked = false;
        const int buf = n & 1;
        if (!kv_done && !block_known && mbar_done(&s.kv_full[buf], (n >> 1) & 1, lane)) {
            w = __shfl_sync(0xffffffffu, s.kv_work[buf], 0);
            kv_done = w < 0; /* none left */
            block_known = !kv_done;
        }
        if (block_known && mbar_done(&s.tiles_ready[buf], (n >> 1) & 1, lane)) {
            const int item = w / nkv, j = w % nkv;
            for (int half = 0; half < 2; half++) {
                float *dst = db_part(a, item, j * BN + half * 64);
                tile_column_sums(reinterpret_cast<const unsigned char *>(s.k[buf]), half * 64,
                                 lane, dst + HD);
                tile_column_sums(reinterpret_cast<const unsigned char *>(s.v[buf]), half * 64,
                                 lane, dst + 2 * HD);
            }
            __syncwarp();
            if (lane == 0) mbar_arrive(&s.kv_empty[buf]);
            block_known = false, n++, worked = true;
        }
        for (int c = 0; c < 2; c++) {
            if (writer_done[c] || !mbar_done(&s.dq_out[c], conv[c] & 1, lane)) continue;
            const int idx = __shfl_sync(0xffffffffu, s.dq_out_idx[c], 0);
            conv[c]++, worked = true;
            if (idx < 0) {
                writer_done[c] = true;
                continue;
            }
            tile_column_sums(reinterpret_cast<const unsigned char *>(s.dqo[c]), 0, lane,
                             db_part(a, idx / nq, idx % nq * BM));
            __syncwarp();
            if (lane == 0) mbar_arrive(&s.dq_summed[c]);
        }
        if (!worked) __nanosleep(32);
    }
}

/* By key blocks: the warp that adds consumer c's dQ parts into the shared sums (a.dq_acc, zero
 * before the kernel) and counts them (a.counts); the last of a query block's i / 2 + 1 parts
 * (key blocks 0 .. i / 2) converts the sum into dqkv and leaves the sums and count zero again.
 * Lane 0 moves and counts; the warp converts, into a tile in shared memory that lane 0 copies
 * into dqkv with the TMA (the lanes' own 4-byte stores made the kernel ~9% slower) and, with the
 * bias gradient, hands to the summing warp (column_sums), the tile's place reused only once its
 * sums are taken (summed here, they held up the consumer's next part: docs/PERFORMANCE.md). */
__device__ __forceinline__ void dq_writer(smem &s, const args &a, const CUtensorMap *map_dq, int c,
                                          int lane, int nq)
{
    int n = 0, loads = 0; /* loads: the dq_full completions waited for, one a conversion */
    for (;; n++) {
        mbar_wait(&s.dq_staged[c], n & 1);
        /* lane 0's, all lanes past the wait before lane 0 lets the consumer restage */
        const int idx = __shfl_sync(0xffffffffu, s.staged[c], 0);
        if (idx < 0) break;
        float *sum = a.dq_acc + (int64_t)idx * BM * HD;
        int last = 0;
        if (lane == 0) {
            bulk_store<true>(sum, s.dqs[c], BM * HD * 4);
            bulk_commit();
            bulk_wait_read_all();
            mbar_arrive(&s.dq_free[c]); /* the staging read: the consumer may fill it again */
            bulk_wait_all();            /* added */
            asm volatile("fence.proxy.async.global;" ::: "memory");
            __threadfence();
            last = atomicAdd(a.counts + idx, 1) == (idx % nq) / 2;
            if (last) {
                a.counts[idx] = 0;
                __threadfence(); /* every part added before the sum is read */
                asm volatile("fence.proxy.async.global;" ::: "memory");
                fence_proxy_async(); /* dqin's last reads before the copy's writes */
                mbar_expect_tx(&s.dq_full[c], BM * HD * 4);
                bulk_load(s.dqin[c], sum, BM * HD * 4, &s.dq_full[c]);
            }
        }
        if (!__shfl_sync(0xffffffffu, last, 0)) continue;
        /* dqo's last copy out has been read (lane 0 waited for it before the shuffle above),
           and its column sums taken, when summing */
        if (a.db_parts && loads > 0) mbar_wait(&s.dq_summed[c], (loads - 1) & 1);
        mbar_wait(&s.dq_full[c], loads++ & 1);
        const int it = idx / nq, qi = idx % nq;
        const float4 *in = reinterpret_cast<const float4 *>(s.dqin[c]);
        float4 *z = reinterpret_cast<float4 *>(sum);
        unsigned char *out = reinterpret_cast<unsigned char *>(s.dqo[c]);
        for (int e = lane; e < BM * HD / 4; e += 32) {
            /* float4 k of the owner's thread t at k 128 + t: its rows r0, r0 + 8, columns from
               8 k + cq (the consumer's accumulator places), into dqo's swizzled rows */
            const int t = e % 128, r0 = 16 * (t / 32) + (t % 32) / 4;
            const int col = 8 * (e / 128) + 2 * (t % 4);
            const float4 v = in[e];
            const int at = sw128_at(r0, col / 8, (col % 8) * 2);
            *reinterpret_cast<uint32_t *>(out + at) = lp_pack2<bf16>(v.x * a.scale, v.y * a.scale);
            *reinterpret_cast<uint32_t *>(out + at + 8 * 128) =
                lp_pack2<bf16>(v.z * a.scale, v.w * a.scale);
            z[e] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
        fence_proxy_async(); /* dqo's writes before the copy's reads */
        __syncwarp();        /* dqin read and dqo written before lane 0's next load and copy */
        if (lane == 0) { /* the block's 64 rows of dQ into dqkv, one TMA copy */
            tma_store_2d(map_dq, s.dqo[c], (it % a.H) * 3 * HD, (it / a.H) * a.T + qi * BM,
                         l2_evict_first());
            bulk_commit();
            if (a.db_parts) /* the column sums of the bf16 values going out: the summing warp */
                s.dq_out_idx[c] = idx, mbar_arrive(&s.dq_out[c]);
        }
    }
    if (lane == 0) {
        bulk_wait_all(); /* dqo read before the CTA's shared memory goes */
        if (a.db_parts) { /* done: said to the summing warp once it has read the last index */
            if (loads > 0) mbar_wait(&s.dq_summed[c], (loads - 1) & 1);
            s.dq_out_idx[c] = -1;
            mbar_arrive(&s.dq_out[c]);
        }
    }
}

template <bool KEY_BLOCKS>
__global__ void __launch_bounds__(THREADS, 1)
flash_backward_kernel(const __grid_constant__ CUtensorMap map_qkv,
                      const __grid_constant__ CUtensorMap map_do,
                      const __grid_constant__ CUtensorMap map_dq, const args a)
{
    extern __shared__ unsigned char raw[];
    /* aligned to 1024 bytes by an offset from raw (not through an integer), so that the
       compiler knows every access through s is to shared memory */
    smem &s = *reinterpret_cast<smem *>(raw + ((1024 - (smem_u32(raw) & 1023)) & 1023));
    /* the warpgroup through a shuffle: uniform to the compiler, so that the wgmmas under a
       consumer's branches are not serialized */
    const int wg = __shfl_sync(0xffffffffu, (int)threadIdx.x / 128, 0), tid = threadIdx.x % 128;
    const int T = a.T, nq = T / BM, nkv = T / BN, items = a.items;
    if (threadIdx.x == 0) {
        /* the empties: lane 0 of each consumer warp, after its own wait for the wgmmas (and the
           summing warp's lane 0 for the K/V buffers, when it sums) */
        const int kv_users = KEY_BLOCKS && a.db_parts ? 9 : 8;
        for (int i = 0; i < STAGES; i++) mbar_init(&s.full[i], 1), mbar_init(&s.empty[i], 8);
        for (int i = 0; i < 2; i++)
            mbar_init(&s.kv_full[i], 1), mbar_init(&s.kv_empty[i], kv_users);
        for (int i = 0; i < 2; i++) mbar_init(&s.dq_full[i], 1), mbar_init(&s.tiles_ready[i], 2);
        for (int i = 0; i < 2; i++) mbar_init(&s.dq_staged[i], 1), mbar_init(&s.dq_free[i], 1);
        for (int i = 0; i < 2; i++) mbar_init(&s.dq_out[i], 1), mbar_init(&s.dq_summed[i], 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (wg == 2) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"((int)REGS_PRODUCER));
        if (tid == 0) {
            int stage = 0, phase = 0, kvn = 0;
            /* one key block of a head: K_j, V_j, then each step's Q_i, dO_i, lse_i, Delta_i */
            auto load_block = [&](int item, int j) {
                const int b = item / a.H, h = item % a.H, row0 = b * T;
                const float *lse = a.lse + (int64_t)item * T, *delta = a.delta + (int64_t)item * T;
                const int buf = kvn & 1;
                mbar_wait(&s.kv_empty[buf], ((kvn >> 1) & 1) ^ 1);
                if (KEY_BLOCKS) s.kv_work[buf] = item * nkv + j;
                mbar_expect_tx(&s.kv_full[buf], 2 * BN * HD * 2);
                for (int half = 0; half < 2; half++) {
                    const int r = row0 + j * BN + 64 * half;
                    tma_load_2d(s.k[buf] + half * 64 * HD, &map_qkv, h * 3 * HD + HD, r,
                                &s.kv_full[buf]);
                    tma_load_2d(s.v[buf] + half * 64 * HD, &map_qkv, h * 3 * HD + 2 * HD, r,
                                &s.kv_full[buf]);
                }
                for (int i = 2 * j; i < nq; i++) {
                    mbar_wait(&s.empty[stage], phase ^ 1);
                    mbar_expect_tx(&s.full[stage], 2 * BM * HD * 2 + 2 * BM * 4);
                    tma_load_2d(s.q[stage], &map_qkv, h * 3 * HD, row0 + i * BM, &s.full[stage]);
                    tma_load_2d(s.dout[stage], &map_do, h * HD, row0 + i * BM, &s.full[stage]);
                    bulk_load(s.lse[stage], lse + i * BM, BM * 4, &s.full[stage]);
                    bulk_load(s.delta[stage], delta + i * BM, BM * 4, &s.full[stage]);
                    if (++stage == STAGES) stage = 0, phase ^= 1;
                }
                kvn++;
            };
            if (KEY_BLOCKS) {
                for (;;) {
                    const int w = atomicAdd(a.work, 1);
                    if (w >= items * nkv) break;
                    load_block(w / nkv, w % nkv);
                }
                const int buf = kvn & 1; /* none left: said in the next buffer */
                mbar_wait(&s.kv_empty[buf], ((kvn >> 1) & 1) ^ 1);
                s.kv_work[buf] = -1;
                mbar_arrive(&s.kv_full[buf]);
            } else {
                for (int item = blockIdx.x; item < items; item += gridDim.x)
                    for (int j = 0; j < nkv; j++) load_block(item, j);
            }
        } else if (KEY_BLOCKS && (tid / 32 == 1 || tid / 32 == 2)) {
            dq_writer(s, a, &map_dq, tid / 32 - 1, tid % 32, nq);
        } else if (KEY_BLOCKS && tid / 32 == 3 && a.db_parts) {
            column_sums(s, a, tid % 32, nkv, nq);
        }
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"((int)REGS_CONSUMER));
    const int c = wg, warp = tid / 32, lane = tid % 32;
    const float LOG2E = 1.4426950408889634f, scale_log2 = a.scale * LOG2E;
    /* dQ's partial sums (by heads the CTA's own; by key blocks shared by the CTAs): per query
       block 4096 floats in its owner's accumulator order (float4 k of thread tid at k 128 + tid),
       as in dqs (conflict-free float4 accesses there; the TMA moves the 16 KB) */
    float *dq_acc = a.dq_acc + (int64_t)blockIdx.x * T * HD;
    const float4 *dqin = reinterpret_cast<const float4 *>(s.dqin[c]) + tid;
    float4 *dqs = reinterpret_cast<float4 *>(s.dqs[c]) + tid; /* this thread's float4 0 there */
    /* this thread's accumulator places: rows r0 and r0 + 8 of a consumer's 64, columns
       8 t + cq and the next */
    const int r0 = 16 * warp + lane / 4, cq = 2 * (lane % 4);
    float dk[32], dv[32], sc[32], dp[32], dq[32];
    uint32_t pa[16], da[16]; /* P^T and dS^T as bf16 pairs: the register operands */
    /* At a key block's first step (i = 2j) the second consumer's 64 key rows come after every
       query row of the step: P and dS are zero there (the mask), so that consumer issues none of
       the step's products (their groups committed empty: the counts stay the same) and writes no
       dS^T, and the owner's dQ takes the first 64 key rows only: one consumer-step in 2 (nq - 2j)
       of a key block's, ~6% of the products at T = 1024. (Its exp and mask still run, on the last
       step's scores, or unset ones at the CTA's first step, and their results go unused: a branch
       around them, or zeroing sc and dp before the loop, makes ptxas serialize the wgmmas, C7515.) */
    auto idle = [&](int ii, int jj) { return c == 1 && ii == 2 * jj; };
    /* S^T = K Q^T and dP^T = V dO^T of a step (two wgmma groups) */
    auto issue_sdp = [&](int st, int bf, bool none) {
        if (none) {
            wgmma_commit();
            wgmma_commit();
            return;
        }
        const bf16 *kc = s.k[bf] + c * 64 * HD, *vc = s.v[bf] + c * 64 * HD;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            mma_ss<0, 0>(sc, desc_sw128(kc + kk * 16), desc_sw128(s.q[st] + kk * 16), kk);
        wgmma_commit();
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            mma_ss<0, 0>(dp, desc_sw128(vc + kk * 16), desc_sw128(s.dout[st] + kk * 16), kk);
        wgmma_commit();
    };
    int loads = 0, staged = 0; /* dq_full's completions waited for; KEY_BLOCKS: blocks staged */
    int item = blockIdx.x, j = 0, i = 0, stage = 0, phase = 0, kvn = 0, buf = 0;
    if (KEY_BLOCKS) {
        mbar_wait(&s.kv_full[0], 0);
        const int w = __shfl_sync(0xffffffffu, s.kv_work[0], 0); /* uniform, as wg */
        if (w < 0) { /* no work for this CTA: none for the writers either */
            if (tid == 0) s.staged[c] = -1, mbar_arrive(&s.dq_staged[c]);
            return;
        }
        item = w / nkv, j = w % nkv, i = 2 * j;
    }
    if (item >= items) return;
#pragma unroll
    for (int e = 0; e < 32; e++) dk[e] = 0.0f, dv[e] = 0.0f;
    if (!KEY_BLOCKS) mbar_wait(&s.kv_full[0], 0);
    mbar_wait(&s.full[0], 0);
    issue_sdp(0, 0, idle(i, j));
    for (;;) {
        const int b = item / a.H, h = item % a.H, row0 = b * T;
        const bool owner = (i & 1) == c, last = !KEY_BLOCKS && i / 2 == j;
        /* this query block's partial sums (computed where used: registers are short) */
        auto acc = [&]() {
            return KEY_BLOCKS ? a.dq_acc + ((int64_t)item * T + i * BM) * HD
                              : dq_acc + i * (BM * HD);
        };
        if (owner && last && j > 0 && tid == 0) {
            /* the sum so far of this query block's dQ, early: once this thread's bulk copy of
               the last key block's part is done ((nq - 1 - i) / 2 copies came after it) */
            const int after = (nq - 1 - i) / 2;
            if (after >= 2)
                asm volatile("cp.async.bulk.wait_group 2;" ::: "memory");
            else if (after == 1)
                asm volatile("cp.async.bulk.wait_group 1;" ::: "memory");
            else
                bulk_wait_all();
            fence_proxy_async(); /* the receiving buffer's last reads before the copy's writes */
            mbar_expect_tx(&s.dq_full[c], BM * HD * 4);
            bulk_load(s.dqin[c], acc(), BM * HD * 4, &s.dq_full[c]);
        }
        const float *lse = s.lse[stage], *delta = s.delta[stage];
        const int kv_row = j * BN + c * 64 + r0; /* this thread's first key row in the head */
        wgmma_wait<1>();
        fence_operands<32>(sc);
        const bool diagonal = i <= 2 * j + 1, first = i == 2 * j, none = idle(i, j);
#pragma unroll
        for (int t = 0; t < 8; t++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int col = 8 * t + cq + (e & 1), row = kv_row + 8 * (e >> 1);
                float p = exp2f_approx(fmaf(sc[4 * t + e], scale_log2, -lse[col] * LOG2E));
                if (diagonal && row > i * BM + col) p = 0.0f;
                sc[4 * t + e] = p;
            }
        wgmma_wait<0>();
        fence_operands<32>(dp);
#pragma unroll
        for (int m = 0; m < 16; m++) {
            const int t = m / 2, e = 2 * (m & 1), col = 8 * t + cq;
            const float p0 = sc[4 * t + e], p1 = sc[4 * t + e + 1];
            pa[m] = lp_pack2<bf16>(p0, p1);
            da[m] = lp_pack2<bf16>(p0 * (dp[4 * t + e] - delta[col]),
                              p1 * (dp[4 * t + e + 1] - delta[col + 1]));
        }
        const bf16 *qs = s.q[stage], *dos = s.dout[stage];
        if (!none) {
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                mma_rs(dv, pa + 4 * kk, desc_mn_sw128(dos + kk * 16 * 64));
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                mma_rs(dk, da + 4 * kk, desc_mn_sw128(qs + kk * 16 * 64));
        }
        wgmma_commit();
        /* dS^T into shared memory, swizzled: rows c 64 + r0 (+ 8), column group t's chunk */
        if (!none) {
            unsigned char *dsb = reinterpret_cast<unsigned char *>(s.ds[i & 1]);
#pragma unroll
            for (int m = 0; m < 16; m++) {
                const int t = m / 2, row = c * 64 + r0 + 8 * (m & 1);
                *reinterpret_cast<uint32_t *>(dsb + sw128_at(row, t, cq * 2)) = da[m];
            }
        }
        fence_proxy_async();
        consumers_sync();
        if (owner) {
            const bf16 *dsa = s.ds[i & 1], *kall = s.k[buf];
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                mma_ss<1, 1>(dq, desc_mn_sw128(dsa + kk * 16 * 64),
                             desc_mn_sw128(kall + kk * 16 * 64), kk);
            if (!first) /* the second consumer's key rows (idle at a block's first step) */
#pragma unroll
                for (int kk = 4; kk < 8; kk++)
                    mma_ss<1, 1>(dq, desc_mn_sw128(dsa + kk * 16 * 64),
                                 desc_mn_sw128(kall + kk * 16 * 64), kk);
        }
        wgmma_commit(); /* (empty for the other consumer: the group count stays the same) */
        /* the next step: its S^T and dP^T under this one's tail */
        int ni = i + 1, nj = j, nitem = item;
        bool has_next;
        if (KEY_BLOCKS) {
            has_next = true;
            if (ni == nq) { /* the next work item, as the producer took it */
                mbar_wait(&s.kv_full[buf ^ 1], ((kvn + 1) >> 1) & 1);
                const int w = __shfl_sync(0xffffffffu, s.kv_work[buf ^ 1], 0);
                has_next = w >= 0;
                if (has_next) nitem = w / nkv, nj = w % nkv, ni = 2 * nj;
            }
        } else {
            if (ni == nq) {
                nj++, ni = 2 * nj;
                if (nj == nkv) nitem += gridDim.x, nj = 0, ni = 0;
            }
            has_next = nitem < items;
        }
        const bool new_kv = nj != j || nitem != item;
        const int nstage = stage + 1 == STAGES ? 0 : stage + 1;
        const int nphase = stage + 1 == STAGES ? phase ^ 1 : phase;
        const int nbuf = new_kv ? buf ^ 1 : buf;
        if (has_next) {
            if (new_kv && !KEY_BLOCKS) mbar_wait(&s.kv_full[nbuf], ((kvn + 1) >> 1) & 1);
            mbar_wait(&s.full[nstage], nphase);
            issue_sdp(nstage, nbuf, idle(ni, nj));
        } else { /* two empty groups: the same count, one wait for both paths */
            wgmma_commit();
            wgmma_commit();
        }
        wgmma_wait<2>();
        fence_operands<32>(dk);
        fence_operands<32>(dv);
        if (lane == 0) mbar_arrive(&s.empty[stage]);
        if (owner) {
            fence_operands<32>(dq);
            if (last) {
                /* the sum so far (j > 0) and this part: dQ, scaled and rounded into the staging
                   (once its last copy out has read it) in the TMA's 128-byte swizzle, and one TMA
                   copy into dqkv */
                if (j > 0) mbar_wait(&s.dq_full[c], loads++ & 1);
                if (tid == 0) bulk_wait_read_all();
                warpgroup_sync(2 + c);
                unsigned char *tq = reinterpret_cast<unsigned char *>(s.dqs[c]);
#pragma unroll
                for (int t = 0; t < 8; t++) {
                    float4 v = make_float4(dq[4 * t], dq[4 * t + 1], dq[4 * t + 2], dq[4 * t + 3]);
                    if (j > 0) {
                        const float4 p = dqin[t * 128];
                        v.x += p.x, v.y += p.y, v.z += p.z, v.w += p.w;
                    }
                    const int at = sw128_at(r0, t, cq * 2); /* row r0 + 8 at + 8 128 */
                    *reinterpret_cast<uint32_t *>(tq + at) =
                        lp_pack2<bf16>(v.x * a.scale, v.y * a.scale);
                    *reinterpret_cast<uint32_t *>(tq + at + 8 * 128) =
                        lp_pack2<bf16>(v.z * a.scale, v.w * a.scale);
                }
                fence_proxy_async();
                warpgroup_sync(2 + c);
                if (tid == 0) {
                    tma_store_2d(&map_dq, tq, h * 3 * HD, row0 + i * BM, l2_evict_first());
                    bulk_commit();
                }
            } else { /* this part into the staging, and the TMA stores it (first part) or adds it */
                if (KEY_BLOCKS)
                    mbar_wait(&s.dq_free[c], (staged & 1) ^ 1); /* the writer has read the last */
                else if (tid == 0)
                    bulk_wait_read_all(); /* the staging's last copy out has read it */
                warpgroup_sync(2 + c);
#pragma unroll
                for (int k = 0; k < 8; k++)
                    dqs[k * 128] =
                        make_float4(dq[4 * k], dq[4 * k + 1], dq[4 * k + 2], dq[4 * k + 3]);
                fence_proxy_async();
                warpgroup_sync(2 + c);
                if (KEY_BLOCKS) {
                    if (tid == 0) s.staged[c] = item * nq + i, mbar_arrive(&s.dq_staged[c]);
                    staged++;
                } else if (tid == 0) {
                    if (j == 0)
                        bulk_store<false>(acc(), s.dqs[c], BM * HD * 4);
                    else
                        bulk_store<true>(acc(), s.dqs[c], BM * HD * 4);
                    bulk_commit();
                }
            }
        }
        if (new_kv || !has_next) {
            /* the key block done: dK and dV of this consumer's 64 rows go out through its halves
               of K's and V's buffers (swizzled as they came in), two TMA copies; K's half only
               once the other consumer's dQ of this step has read it (both are past their waits
               for it), the buffers free for the producer once the copies have read them */
            consumers_sync();
            unsigned char *tk = reinterpret_cast<unsigned char *>(s.k[buf] + c * 64 * HD),
                          *tv = reinterpret_cast<unsigned char *>(s.v[buf] + c * 64 * HD);
#pragma unroll
            for (int t = 0; t < 8; t++)
#pragma unroll
                for (int rr = 0; rr < 2; rr++) {
                    const int row = r0 + 8 * rr, e = 4 * t + 2 * rr;
                    const int at = sw128_at(row, t, cq * 2);
                    *reinterpret_cast<uint32_t *>(tk + at) =
                        lp_pack2<bf16>(dk[e] * a.scale, dk[e + 1] * a.scale);
                    *reinterpret_cast<uint32_t *>(tv + at) = lp_pack2<bf16>(dv[e], dv[e + 1]);
                }
            fence_proxy_async();
            warpgroup_sync(2 + c);
            if (KEY_BLOCKS && a.db_parts && tid == 0) mbar_arrive(&s.tiles_ready[buf]);
            if (tid == 0) {
                const int r = row0 + j * BN + c * 64;
                tma_store_2d(&map_dq, tk, h * 3 * HD + HD, r, l2_evict_first());
                tma_store_2d(&map_dq, tv, h * 3 * HD + 2 * HD, r, l2_evict_first());
                bulk_commit();
                bulk_wait_read_all();
            }
            if (lane == 0) mbar_arrive(&s.kv_empty[buf]);
#pragma unroll
            for (int e = 0; e < 32; e++) dk[e] = 0.0f, dv[e] = 0.0f;
            kvn++;
        }
        if (!has_next) {
            if (tid == 0) bulk_wait_all(); /* no copy out still reading the staging at the exit */
            if (KEY_BLOCKS && tid == 0) { /* none left: said to the writer */
                mbar_wait(&s.dq_free[c], (staged & 1) ^ 1);
                s.staged[c] = -1;
                mbar_arrive(&s.dq_staged[c]);
            }
            break;
        }
        item = nitem, j = nj, i = ni, stage = nstage, phase = nphase, buf = nbuf;
    }
}

/* Delta [B, H, T] = rowsum(dO * O) per head, in fp32: eight threads a (row, head), 8 columns
 * each. */
__global__ void delta_kernel(float *delta, const bf16 *dout, const bf16 *out, int64_t N, int T,
                             int H, int *work)
{
    const int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t unit = g / 8; /* (row, head) */
    const int part = (int)(g % 8);
    float sum = 0.0f;
    if (g == 0 && work) *work = 0;
    if (unit < N * H) {
        const int64_t n = unit / H;
        const int h = (int)(unit % H);
        const int64_t at = n * (int64_t)H * HD + h * HD + part * 8;
        const uint4 x = *reinterpret_cast<const uint4 *>(dout + at);
        const uint4 y = *reinterpret_cast<const uint4 *>(out + at);
        const __nv_bfloat162 *xa = reinterpret_cast<const __nv_bfloat162 *>(&x);
        const __nv_bfloat162 *ya = reinterpret_cast<const __nv_bfloat162 *>(&y);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float2 u = __bfloat1622float2(xa[k]), v = __bfloat1622float2(ya[k]);
            sum = fmaf(u.x, v.x, fmaf(u.y, v.y, sum));
        }
    }
#pragma unroll
    for (int o = 4; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (unit < N * H && part == 0) {
        const int64_t n = unit / H;
        const int h = (int)(unit % H);
        const int64_t b = n / T, t = n % T;
        delta[(b * H + h) * T + t] = sum;
    }
}

} /* namespace flash */

bool flash_backward_takes(struct attention_shape s, enum dtype dt, float dropout_p)
{
    const struct cuda_context *ctx = cuda_ctx();
    const bool ours = ctx->flash_backward != CUDA_ATTENTION_BACKWARD_CUDNN || ctx->deterministic;
    return ctx->hopper_gemm && ours && dt == DT_BF16 &&
           dropout_p == 0.0f && s.head_dim == 64 && s.heads == s.groups && s.seq % 128 == 0 &&
           s.seq > 0 && s.batch > 0 && s.batch * s.seq < INT32_MAX &&
           (int64_t)s.batch * s.heads * (s.seq / 64) < INT32_MAX; /* query blocks: int */
}

bool flash_backward_fits(struct attention_shape s, enum dtype dt, float dropout_p, const void *dqkv,
                         const void *qkv, const void *dout, const void *out, const void *lse)
{
    return flash_backward_takes(s, dt, dropout_p) && cuda_aligned16(dqkv) &&
           cuda_aligned16(qkv) && cuda_aligned16(dout) && cuda_aligned16(out) &&
           cuda_aligned16(lse);
}

bool flash_backward(void *dqkv, float *db, const void *dout, const void *qkv, const float *lse,
                    const void *out, struct attention_shape s)
{
    struct cuda_context *ctx = cuda_ctx();
    const int64_t N = s.batch * s.seq, H = s.heads, W = 3 * H * flash::HD;
    const int64_t items = s.batch * H, nq = s.seq / flash::BM;
    const bool key_blocks =
        !ctx->deterministic && ctx->flash_backward == CUDA_ATTENTION_BACKWARD_OURS;
    const int64_t units = key_blocks ? items * (s.seq / flash::BN) : items;
    const int grid = (int)(units < ctx->sm_count ? units : ctx->sm_count);
    const size_t delta_bytes = cuda_align256((size_t)items * s.seq * sizeof(float));
    const size_t own_sums = key_blocks ? 0 : (size_t)grid * s.seq * flash::HD * 4;
    const bool sums = key_blocks && db; /* the bias gradient's partial rows, one per 64 rows */
    const size_t parts = sums ? (size_t)(N / 64) * W * 4 : 0;
    char *scratch = (char *)cuda_scratch(delta_bytes + 256 + own_sums + parts);
    float *delta = (float *)scratch;
    int *work = (int *)(scratch + delta_bytes);
    float *dq_acc = (float *)(scratch + delta_bytes + 256);
    int *counts = NULL;
    if (key_blocks) { /* the sums and counts every CTA adds to, left zero by each call */
        const size_t sum_bytes = (size_t)items * s.seq * flash::HD * 4;
        char *zeroed = (char *)cuda_zeroed(sum_bytes + (size_t)items * nq * sizeof(int));
        dq_acc = (float *)zeroed;
        counts = (int *)(zeroed + sum_bytes);
    }
    const int64_t threads = N * H * 8;
    flash::delta_kernel<<<(unsigned)((threads + 255) / 256), 256, 0, ctx->stream>>>(
        delta, (const bf16 *)dout, (const bf16 *)out, N, (int)s.seq, (int)H, work);
    CUDA_CHECK_LAUNCH("flash delta_kernel");
    CUtensorMap map_qkv = hopper_tensor_map(qkv, N, W, 64, 64),
                map_do = hopper_tensor_map(dout, N, H * flash::HD, 64, 64),
                map_dq = hopper_tensor_map(dqkv, N, W, 64, 64);
    flash::args a;
    a.dqkv = (bf16 *)dqkv;
    a.lse = lse;
    a.delta = delta;
    a.dq_acc = dq_acc;
    a.counts = counts;
    a.work = work;
    a.db_parts = sums ? (float *)(scratch + delta_bytes + 256 + own_sums) : NULL;
    a.T = (int)s.seq, a.H = (int)H, a.W = (int)W, a.items = (int)items;
    a.scale = 0.125f; /* 1 / sqrt(64) */
    if (!ctx->flash_smem_set) {
        CUDA_CHECK(cudaFuncSetAttribute(flash::flash_backward_kernel<false>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)flash::smem_bytes()));
        CUDA_CHECK(cudaFuncSetAttribute(flash::flash_backward_kernel<true>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)flash::smem_bytes()));
        ctx->flash_smem_set = true;
    }
    if (key_blocks)
        flash::flash_backward_kernel<true><<<(unsigned)grid, flash::THREADS, flash::smem_bytes(),
                                             ctx->stream>>>(map_qkv, map_do, map_dq, a);
    else
        flash::flash_backward_kernel<false><<<(unsigned)grid, flash::THREADS, flash::smem_bytes(),
                                              ctx->stream>>>(map_qkv, map_do, map_dq, a);
    CUDA_CHECK_LAUNCH("flash_backward_kernel");
    if (sums) cuda_colsum_reduce(db, NULL, a.db_parts, (int)(N / 64), W);
    return sums;
}
