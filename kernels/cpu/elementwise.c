/* CPU elementwise ops: Megatron's bias-dropout-add and its backward, add, zero, and the row sum
 * that bias gradients share. Dropout masks come from the counter-based RNG (kernels/rng.h):
 * element e is kept iff rng_uniform(seed, stream, offset + e) >= p, so nothing is stored. */
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/rng.h"
#include "util/error.h"

/* Columns per task of a row sum: each task owns its columns and sums all rows in order. */
enum { SUM_COLS = 64 };

void cpu_sum_rows_acc(float *dst, const float *src, int64_t N, int64_t C)
{
    int64_t blocks = (C + SUM_COLS - 1) / SUM_COLS;
#pragma omp parallel for schedule(static) if (blocks > 1 && N * C >= CPU_PARALLEL_MIN_WORK)
    for (int64_t blk = 0; blk < blocks; blk++) {
        int64_t c0 = blk * SUM_COLS, nc = C - c0 < SUM_COLS ? C - c0 : SUM_COLS;
        double acc[SUM_COLS] = {0};
        for (int64_t n = 0; n < N; n++) {
            const float *row = src + n * C + c0;
            for (int64_t c = 0; c < nc; c++) acc[c] += row[c];
        }
        for (int64_t c = 0; c < nc; c++) dst[c0 + c] += (float)acc[c];
    }
}

/* The dropout factor of element e: 0 if dropped, else 1/(1-p) (1 when dropout is off). */
static inline float dropout_factor(struct dropout_key d, float scale, int64_t e)
{
    if (d.p == 0.0f) return 1.0f;
    return rng_uniform(d.seed, d.stream, d.offset + (uint64_t)e) >= d.p ? scale : 0.0f;
}

void cpu_bias_dropout_add_forward(struct tensor y, struct tensor x, struct tensor b,
                                  struct tensor residual, struct dropout_key drop)
{
    int64_t N = x.shape[0], C = x.shape[1];
    const float *xs = x.data, *bs = tensor_present(b) ? b.data : NULL;
    const float *rs = tensor_present(residual) ? residual.data : NULL;
    float *ys = y.data;
    float scale = cpu_dropout_scale(drop.p);
    if (drop.p == 0.0f && !bs && !rs && ys == xs) return; /* the identity, in place */
#pragma omp parallel for schedule(static) if (N * C >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        for (int64_t c = 0; c < C; c++) {
            int64_t e = n * C + c;
            float v = bs ? xs[e] + bs[c] : xs[e];
            v *= dropout_factor(drop, scale, e);
            ys[e] = rs ? v + rs[e] : v; /* reads rs[e] before writing ys[e]: y may alias residual */
        }
    }
}

void cpu_bias_dropout_add_backward(struct tensor dx, struct tensor db, struct tensor dy,
                                   struct dropout_key drop)
{
    int64_t N = dy.shape[0], C = dy.shape[1];
    const float *dys = dy.data;
    float scale = cpu_dropout_scale(drop.p);
    if (tensor_present(dx)) {
        float *dxs = dx.data;
        if (drop.p == 0.0f && dxs == dys) { /* the identity, in place: only db is left */
            if (tensor_present(db)) cpu_sum_rows_acc(db.data, dxs, N, C);
            return;
        }
#pragma omp parallel for schedule(static) if (N * C >= CPU_PARALLEL_MIN_WORK)
        for (int64_t n = 0; n < N; n++) {
            for (int64_t c = 0; c < C; c++) {
                int64_t e = n * C + c;
                dxs[e] = dys[e] * dropout_factor(drop, scale, e);
            }
        }
        if (tensor_present(db)) cpu_sum_rows_acc(db.data, dxs, N, C);
        return;
    }
    if (!tensor_present(db)) return;
    /* db alone: sum the masked dy column by column without a dx buffer */
    float *dbs = db.data;
    int64_t blocks = (C + SUM_COLS - 1) / SUM_COLS;
#pragma omp parallel for schedule(static) if (blocks > 1 && N * C >= CPU_PARALLEL_MIN_WORK)
    for (int64_t blk = 0; blk < blocks; blk++) {
        int64_t c0 = blk * SUM_COLS, nc = C - c0 < SUM_COLS ? C - c0 : SUM_COLS;
        double acc[SUM_COLS] = {0};
        for (int64_t n = 0; n < N; n++) {
            for (int64_t c = 0; c < nc; c++) {
                int64_t e = n * C + c0 + c;
                acc[c] += dys[e] * dropout_factor(drop, scale, e);
            }
        }
        for (int64_t c = 0; c < nc; c++) dbs[c0 + c] += (float)acc[c];
    }
}

void cpu_add(struct tensor y, struct tensor a, struct tensor b)
{
    int64_t n = tensor_numel(y);
    float *ys = y.data;
    const float *as = a.data, *bs = b.data;
#pragma omp parallel for schedule(static) if (n >= 4 * CPU_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) ys[i] = as[i] + bs[i];
}

void cpu_scale_rows(struct tensor y, struct tensor x, struct tensor s)
{
    const int64_t N = x.shape[0], C = x.shape[1];
    float *ys = y.data;
    const float *xs = x.data, *ss = s.data;
#pragma omp parallel for schedule(static) if (N * C >= 4 * CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) ys[n * C + c] = xs[n * C + c] * ss[n];
}

void cpu_zero(struct tensor x) { memset(x.data, 0, tensor_bytes(x)); }

void cpu_zero_ranges(struct tensor x, struct tensor ranges)
{
    const int64_t *r = ranges.data, n = tensor_numel(x);
    size_t es = dtype_size(x.dtype);
    for (int64_t i = 0; i < ranges.shape[0]; i++) {
        if (r[2 * i] < 0 || r[2 * i + 1] < 0 || r[2 * i] + r[2 * i + 1] > n)
            BUG("cpu_zero_ranges: range %lld (+%lld) outside the %lld elements", (long long)r[2 * i],
                (long long)r[2 * i + 1], (long long)n);
        memset((char *)x.data + (size_t)r[2 * i] * es, 0, (size_t)r[2 * i + 1] * es);
    }
}

void cpu_copy(struct tensor y, struct tensor x) { memcpy(y.data, x.data, tensor_bytes(x)); }
