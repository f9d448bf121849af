/* CPU embedding lookup (word + optional learned position table) and its backward, a scatter-add
 * that each thread does for its own block of columns, rows in order, so repeated ids sum
 * deterministically. */
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
                           struct tensor wpe, struct tensor positions)
{
    int64_t N = y.shape[0], H = y.shape[1];
    bool use_wpe = tensor_present(wpe);
    check_ids("op_embedding_forward", "tokens", tokens, wte.shape[0]);
    if (use_wpe) check_ids("op_embedding_forward", "positions", positions, wpe.shape[0]);
    const int32_t *tok = tokens.data, *pos = use_wpe ? positions.data : NULL;
    const float *te = wte.data, *pe = use_wpe ? wpe.data : NULL;
    float *ys = y.data;
#pragma omp parallel for schedule(static) if (N * H >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const float *wt = te + (int64_t)tok[n] * H;
        float *out = ys + n * H;
        if (pe) {
            const float *wp = pe + (int64_t)pos[n] * H;
            for (int64_t h = 0; h < H; h++) out[h] = wt[h] + wp[h];
        } else {
            memcpy(out, wt, (size_t)H * sizeof(float));
        }
    }
}

/* table[ids[n], c0:c0+nc] += dy[n, c0:c0+nc] for every n in order, for every column block. */
static void scatter_add(float *table, struct tensor ids, const float *dy, int64_t N, int64_t H)
{
    const int32_t *id = ids.data;
    int64_t blocks = (H + EMB_COLS - 1) / EMB_COLS;
#pragma omp parallel for schedule(static) if (blocks > 1 && N * H >= CPU_PARALLEL_MIN_WORK)
    for (int64_t blk = 0; blk < blocks; blk++) {
        int64_t c0 = blk * EMB_COLS, nc = H - c0 < EMB_COLS ? H - c0 : EMB_COLS;
        for (int64_t n = 0; n < N; n++) {
            float *dst = table + (int64_t)id[n] * H + c0;
            const float *src = dy + n * H + c0;
            for (int64_t c = 0; c < nc; c++) dst[c] += src[c];
        }
    }
}

void cpu_embedding_backward(struct tensor dwte, struct tensor dwpe, struct tensor dy,
                            struct tensor tokens, struct tensor positions)
{
    int64_t N = dy.shape[0], H = dy.shape[1];
    if (tensor_present(dwte)) {
        check_ids("op_embedding_backward", "tokens", tokens, dwte.shape[0]);
        scatter_add(dwte.data, tokens, dy.data, N, H);
    }
    if (tensor_present(dwpe)) {
        check_ids("op_embedding_backward", "positions", positions, dwpe.shape[0]);
        scatter_add(dwpe.data, positions, dy.data, N, H);
    }
}
