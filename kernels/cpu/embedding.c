/* CPU embedding lookup (word + optional learned position table) and its backward, a scatter-add
 * that each thread does for its own block of columns, rows in order, so repeated ids sum
 * deterministically. A tensor-parallel shard of the word table holds the vocabulary rows
 * [vocab_start, vocab_start + rows); other tokens contribute zero rows. */
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "util/error.h"

/* Columns per task of the backward scatter-add. */
enum { EMB_COLS = 256 };

/* An id outside the table is a bug in the caller (the data pipeline validates ids). */
static void check_ids(const char *op, const char *what, struct tensor ids, int64_t rows)
{
    const int32_t *v = ids.data;
    int64_t N = ids.shape[0];
    for (int64_t n = 0; n < N; n++) {
        if (v[n] < 0 || v[n] >= rows)
            BUG("%s: %s[%lld] = %d is outside the table of %lld rows", op, what, (long long)n,
                (int)v[n], (long long)rows);
    }
}

void cpu_embedding_forward(struct tensor y, struct tensor tokens, struct tensor wte,
                           int64_t vocab_start, struct tensor wpe, struct tensor positions)
{
    int64_t N = y.shape[0], H = y.shape[1], V = wte.shape[0];
    bool use_wpe = tensor_present(wpe);
    if (use_wpe) check_ids("op_embedding_forward", "positions", positions, wpe.shape[0]);
    const int32_t *tok = tokens.data, *pos = use_wpe ? positions.data : NULL;
    const float *te = wte.data, *pe = use_wpe ? wpe.data : NULL;
    float *ys = y.data;
#pragma omp parallel for schedule(static) if (N * H >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        int64_t row = (int64_t)tok[n] - vocab_start;
        float *out = ys + n * H;
        if (row < 0 || row >= V) { /* another rank's shard of the vocabulary */
            if (pe) memcpy(out, pe + (int64_t)pos[n] * H, (size_t)H * sizeof(float));
            else memset(out, 0, (size_t)H * sizeof(float));
            continue;
        }
        const float *wt = te + row * H;
        if (pe) {
            const float *wp = pe + (int64_t)pos[n] * H;
            for (int64_t h = 0; h < H; h++) out[h] = wt[h] + wp[h];
        } else {
            memcpy(out, wt, (size_t)H * sizeof(float));
        }
    }
}

/* table[ids[n] - start, c0:c0+nc] += dy[n, c0:c0+nc] for every n in order whose row is in the
 * table's [0, rows), for every column block. */
static void scatter_add(float *table, int64_t start, int64_t rows, struct tensor ids, const float *dy,
                        int64_t N, int64_t H)
{
    const int32_t *id = ids.data;
    int64_t blocks = (H + EMB_COLS - 1) / EMB_COLS;
#pragma omp parallel for schedule(static) if (blocks > 1 && N * H >= CPU_PARALLEL_MIN_WORK)
    for (int64_t blk = 0; blk < blocks; blk++) {
        int64_t c0 = blk * EMB_COLS, nc = H - c0 < EMB_COLS ? H - c0 : EMB_COLS;
        for (int64_t n = 0; n < N; n++) {
            int64_t row = (int64_t)id[n] - start;
            if (row < 0 || row >= rows) continue;
            float *dst = table + row * H + c0;
            const float *src = dy + n * H + c0;
            for (int64_t c = 0; c < nc; c++) dst[c] += src[c];
        }
    }
}

void cpu_embedding_backward(struct tensor dwte, int64_t vocab_start, struct tensor dwpe,
                            struct tensor dy, struct tensor tokens, struct tensor positions)
{
    int64_t N = dy.shape[0], H = dy.shape[1];
    if (tensor_present(dwte)) {
        scatter_add(dwte.data, vocab_start, dwte.shape[0], tokens, dy.data, N, H);
    }
    if (tensor_present(dwpe)) {
        check_ids("op_embedding_backward", "positions", positions, dwpe.shape[0]);
        scatter_add(dwpe.data, 0, dwpe.shape[0], positions, dy.data, N, H);
    }
}

void cpu_position_embedding_backward(struct tensor dwpe, struct tensor dy, int64_t seq)
{
    int64_t N = dy.shape[0], H = dy.shape[1];
    const float *g = dy.data;
    float *table = dwpe.data;
#pragma omp parallel for schedule(static) if (N * H >= CPU_PARALLEL_MIN_WORK)
    for (int64_t t = 0; t < seq; t++) /* scatter_add's order for each row: n ascending */
        for (int64_t n = t; n < N; n += seq)
            for (int64_t h = 0; h < H; h++) table[t * H + h] += g[n * H + h];
}
