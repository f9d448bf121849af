/* CUDA embedding lookup (word table plus optional learned positions, both 16-bit: bf16 or fp16) and
 * its deterministic backward into fp32 gradients. The word table may be a tensor-parallel shard
 * holding vocabulary rows [vocab_start, vocab_start + V): other tokens contribute a zero word row
 * and no gradient.
 * The backward sorts the row ids with a stable radix sort (CUB) so that each table row is owned
 * by one block, which adds that row's dy rows in increasing n: the same fp32 additions in the same
 * order as the CPU's scatter-add, hence bitwise the same gradient, and no atomics. */
#include <cub/cub.cuh>

#include "kernels/cuda/cuda_common.h"

enum { EMB_THREADS = 128 }; /* x 8 columns per thread = 1024 columns per block */

/* y[n, :] = wte[tok[n] - start, :] (zero outside the shard) + wpe[pos[n], :]. A position outside
 * its table is a caller bug: the row is filled with NaN rather than read out of bounds, so the
 * bug cannot pass silently. */
template <class T>
static __global__ void embedding_forward_kernel(T *y, const int32_t *tok, const T *wte,
                                                int64_t start, int64_t V, const int32_t *pos,
                                                const T *wpe, int64_t P, int64_t H, bool vec)
{
    int64_t n = blockIdx.x;
    int64_t c = ((int64_t)blockIdx.y * blockDim.x + threadIdx.x) * 8;
    if (c >= H) return;
    int64_t t = (int64_t)tok[n] - start, p = wpe ? pos[n] : 0;
    float v[8], w[8];
    if (t >= 0 && t < V) {
        lp_load8<T>(wte + t * H, c, H, vec, v);
    } else { /* another rank's shard of the vocabulary */
        for (int i = 0; i < 8; i++) v[i] = 0.0f;
    }
    if (wpe) {
        if (p >= 0 && p < P) {
            lp_load8<T>(wpe + p * H, c, H, vec, w);
        } else {
            for (int i = 0; i < 8; i++) w[i] = __int_as_float(0x7fc00000);
        }
        for (int i = 0; i < 8; i++) v[i] += w[i];
    }
    lp_store8<T>(y + n * H, c, H, vec, v);
}

void cuda_embedding_forward(struct tensor y, struct tensor tokens, struct tensor wte,
                            int64_t vocab_start, struct tensor wpe, struct tensor positions)
{
    const char *op = "cuda_embedding_forward";
    enum dtype dt = cuda_need_lp(op, "y", y);
    cuda_need(op, "tokens", tokens, DT_I32);
    cuda_need(op, "wte", wte, dt);
    cuda_maybe(op, "wpe", wpe, dt);
    bool use_wpe = tensor_present(wpe);
    if (use_wpe) cuda_need(op, "positions", positions, DT_I32);
    int64_t N = y.shape[0], H = y.shape[1];
    if (N == 0 || H == 0) return;
    bool vec = H % 8 == 0 && cuda_aligned16(y.data) && cuda_aligned16(wte.data) &&
               (!use_wpe || cuda_aligned16(wpe.data));
    dim3 grid((unsigned)N, (unsigned)((H + EMB_THREADS * 8 - 1) / (EMB_THREADS * 8)));
    CHECK(N <= 0x7fffffff);
    CUDA_LP_DISPATCH(
        dt, embedding_forward_kernel<T><<<grid, EMB_THREADS, 0, cuda_ctx()->stream>>>(
                (T *)y.data, (const int32_t *)tokens.data, (const T *)wte.data, vocab_start,
                wte.shape[0], use_wpe ? (const int32_t *)positions.data : NULL,
                use_wpe ? (const T *)wpe.data : NULL, use_wpe ? wpe.shape[0] : 0, H, vec));
    CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

/* Sort input: key[n] = ids[n] - start, or `rows` (past every table row) for ids outside the
 * table; value[n] = n. */
static __global__ void sort_keys_kernel(int32_t *key, int32_t *value, const int32_t *ids,
                                        int64_t start, int64_t rows, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = (int64_t)ids[i] - start;
        key[i] = (int32_t)(r >= 0 && r < rows ? r : rows);
        value[i] = (int32_t)i;
    }
}

/* Block (i, column block): if sorted position i starts a run of equal rows, adds the run's dy rows
 * to table[row] in run order (increasing n, the sort being stable); other positions do nothing,
 * and so does the run of ids outside the table (key = rows). A thread takes 8 columns; the run's
 * rows go SCATTER_UNROLL at a time, their loads (16 bytes of a row each, unpacked only as they are
 * added) issued before any is added, so a long run (a position's 64 sequences at micro batch 64)
 * is not one load's latency per row. The additions are the same, in the same order. (16 rows at a
 * time, or 16 for the positions' runs alone, took 122 registers and ran slower: 213 and 172 us a
 * call against 131 at GPT-2 124M's step; 8 rows 145.) */
enum { SCATTER_THREADS = 128, SCATTER_UNROLL = 4 };

/* acc += the 8 columns from c of dy's rows src[u] for which in[u], in u's order: every row's 16
 * bytes loaded before the first is added. */
template <class T>
__device__ __forceinline__ void add_rows(float acc[8], const T *dy, const int64_t *src,
                                         const bool *in, int64_t c, int64_t H, bool vec)
{
    uint4 raw[SCATTER_UNROLL];
#pragma unroll
    for (int u = 0; u < SCATTER_UNROLL; u++)
        if (in[u]) raw[u] = lp_load8_raw<T>(dy + src[u] * H, c, H, vec, 0);
#pragma unroll
    for (int u = 0; u < SCATTER_UNROLL; u++)
        if (in[u]) {
            float v[8];
            lp8_unpack<T>(raw[u], v);
#pragma unroll
            for (int e = 0; e < 8; e++) acc[e] += v[e];
        }
}

template <class T>
static __global__ void __launch_bounds__(SCATTER_THREADS)
    scatter_runs_kernel(float *table, int64_t rows, const int32_t *ids, const int32_t *order,
                        const T *dy, int64_t N, int64_t H, bool vec)
{
    int64_t i = blockIdx.x;
    int64_t c = ((int64_t)blockIdx.y * SCATTER_THREADS + threadIdx.x) * 8;
    int32_t id = ids[i];
    if (c >= H || (i > 0 && ids[i - 1] == id) || id >= rows) return;
    float *dst = table + (int64_t)id * H + c;
    float acc[8];
#pragma unroll
    for (int e = 0; e < 8; e++) acc[e] = c + e < H ? dst[e] : 0.0f;
    for (int64_t j = i; j < N; j += SCATTER_UNROLL) {
        int64_t src[SCATTER_UNROLL];
        bool in[SCATTER_UNROLL];
#pragma unroll
        for (int u = 0; u < SCATTER_UNROLL; u++) { /* sorted: the run is contiguous */
            in[u] = j + u < N && ids[j + u] == id;
            src[u] = in[u] ? order[j + u] : 0;
        }
        add_rows<T>(acc, dy, src, in, c, H, vec);
        if (!in[SCATTER_UNROLL - 1]) break;
    }
#pragma unroll
    for (int e = 0; e < 8; e++)
        if (c + e < H) dst[e] = acc[e];
}

/* Bits a radix sort needs for keys in [0, rows]. */
static int key_bits(int64_t rows)
{
    int b = 1;
    while (b < 31 && ((int64_t)1 << b) <= rows) b++;
    return b;
}

/* table[ids[n] - start, :] += dy[n, :] for all n whose row is in [0, rows), deterministically. */
template <class T>
static void scatter_add_sorted(float *table, int64_t start, int64_t rows, const int32_t *ids,
                               const T *dy, int64_t N, int64_t H)
{
    struct cuda_context *ctx = cuda_ctx();
    size_t sort_bytes = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, (const int32_t *)NULL,
                                               (int32_t *)NULL, (const int32_t *)NULL,
                                               (int32_t *)NULL, (int)N, 0, key_bits(rows),
                                               ctx->stream));
    size_t vec_bytes = cuda_align256((size_t)N * sizeof(int32_t));
    char *base = (char *)cuda_scratch(4 * vec_bytes + sort_bytes);
    int32_t *keys_in = (int32_t *)base, *iota = (int32_t *)(base + vec_bytes);
    int32_t *keys = (int32_t *)(base + 2 * vec_bytes), *order = (int32_t *)(base + 3 * vec_bytes);
    void *sort_tmp = base + 4 * vec_bytes;
    sort_keys_kernel<<<cuda_blocks(N, 256), 256, 0, ctx->stream>>>(keys_in, iota, ids, start,
                                                                    rows, N);
    CUDA_CHECK_LAUNCH("sort_keys_kernel");
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_tmp, sort_bytes, keys_in, keys, iota, order,
                                               (int)N, 0, key_bits(rows), ctx->stream));
    dim3 grid((unsigned)N, (unsigned)((H + SCATTER_THREADS * 8 - 1) / (SCATTER_THREADS * 8)));
    bool vec = H % 8 == 0 && cuda_aligned16(dy);
    scatter_runs_kernel<T><<<grid, SCATTER_THREADS, 0, ctx->stream>>>(table, rows, keys, order, dy,
                                                                      N, H, vec);
    CUDA_CHECK_LAUNCH("scatter_runs_kernel");
}

void cuda_embedding_backward(struct tensor dwte, int64_t vocab_start, struct tensor dwpe,
                             struct tensor dy, struct tensor tokens, struct tensor positions)
{
    const char *op = "cuda_embedding_backward";
    enum dtype dt = cuda_need_lp(op, "dy", dy);
    int64_t N = dy.shape[0], H = dy.shape[1];
    if (N == 0 || H == 0) return;
    CHECK(N <= 0x7fffffff);
    if (tensor_present(dwte)) {
        cuda_need(op, "dwte", dwte, DT_F32);
        cuda_need(op, "tokens", tokens, DT_I32);
        CUDA_LP_DISPATCH(dt, scatter_add_sorted<T>((float *)dwte.data, vocab_start, dwte.shape[0],
                                                   (const int32_t *)tokens.data,
                                                   (const T *)dy.data, N, H));
    }
    if (tensor_present(dwpe)) {
        cuda_need(op, "dwpe", dwpe, DT_F32);
        cuda_need(op, "positions", positions, DT_I32);
        CUDA_LP_DISPATCH(dt, scatter_add_sorted<T>((float *)dwpe.data, 0, dwpe.shape[0],
                                                   (const int32_t *)positions.data,
                                                   (const T *)dy.data, N, H));
    }
}

/* Position t's 8 columns from c: table[t] + dy[t] + dy[seq + t] + ... in sequence order, as
 * scatter_runs_kernel adds a position's run (the sort being stable), SCATTER_UNROLL rows in
 * flight; every position at once, no sort. Grid (column blocks, positions t, t + gridDim.y, ...). */
template <class T>
static __global__ void __launch_bounds__(SCATTER_THREADS)
    position_grad_kernel(float *table, const T *dy, int64_t N, int64_t seq, int64_t H, bool vec)
{
    const int64_t c = ((int64_t)blockIdx.x * SCATTER_THREADS + threadIdx.x) * 8;
    if (c >= H) return;
    for (int64_t t = blockIdx.y; t < seq; t += gridDim.y) {
        float *dst = table + t * H + c;
        float acc[8];
#pragma unroll
        for (int e = 0; e < 8; e++) acc[e] = c + e < H ? dst[e] : 0.0f;
        for (int64_t n = t; n < N; n += SCATTER_UNROLL * seq) {
            int64_t src[SCATTER_UNROLL];
            bool in[SCATTER_UNROLL];
#pragma unroll
            for (int u = 0; u < SCATTER_UNROLL; u++) in[u] = n + u * seq < N, src[u] = n + u * seq;
            add_rows<T>(acc, dy, src, in, c, H, vec);
        }
#pragma unroll
        for (int e = 0; e < 8; e++)
            if (c + e < H) dst[e] = acc[e];
    }
}

void cuda_position_embedding_backward(struct tensor dwpe, struct tensor dy, int64_t seq)
{
    const char *op = "cuda_position_embedding_backward";
    enum dtype dt = cuda_need_lp(op, "dy", dy);
    cuda_need(op, "dwpe", dwpe, DT_F32);
    int64_t N = dy.shape[0], H = dy.shape[1];
    if (N == 0 || H == 0) return;
    CHECK(seq > 0 && N % seq == 0);
    dim3 grid((unsigned)((H + SCATTER_THREADS * 8 - 1) / (SCATTER_THREADS * 8)),
              (unsigned)(seq < 65535 ? seq : 65535));
    bool vec = H % 8 == 0 && cuda_aligned16(dy.data);
    CUDA_LP_DISPATCH(dt, position_grad_kernel<T><<<grid, SCATTER_THREADS, 0, cuda_ctx()->stream>>>(
                             (float *)dwpe.data, (const T *)dy.data, N, seq, H, vec));
    CUDA_CHECK_LAUNCH("position_grad_kernel");
}
