/* CPU LayerNorm and RMSNorm, forward and backward, also fused with the bias-dropout-add before
 * them and the residual gradient added after their backward (on this backend the fused forwards
 * are the two ops in turn, and the add happens as each dx element is stored). Row statistics are
 * computed in double (two passes for the variance); parameter gradients are column sums over
 * rows, split over column blocks so each sum runs in row order inside one thread. */
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_ops.h"
#include "util/error.h"

/* Columns per task of a parameter-gradient reduction. */
enum { NORM_COLS = 64 };

static int64_t col_blocks(int64_t C) { return (C + NORM_COLS - 1) / NORM_COLS; }
static int64_t block_width(int64_t C, int64_t blk)
{
    int64_t c0 = blk * NORM_COLS;
    return C - c0 < NORM_COLS ? C - c0 : NORM_COLS;
}

void cpu_layernorm_forward(struct tensor y, struct tensor mean, struct tensor rstd, struct tensor x,
                           struct tensor w, struct tensor b, float eps)
{
    int64_t N = x.shape[0], C = x.shape[1];
    const float *xs = x.data, *ws = w.data, *bs = tensor_present(b) ? b.data : NULL;
    float *ys = y.data, *ms = mean.data, *rs = rstd.data;
#pragma omp parallel for schedule(static) if (N * C >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const float *row = xs + n * C;
        double sum = 0.0, sq = 0.0;
        for (int64_t c = 0; c < C; c++) sum += row[c];
        double mu = sum / (double)C;
        for (int64_t c = 0; c < C; c++) sq += (row[c] - mu) * (row[c] - mu);
        /* biased variance, as torch.nn.functional.layer_norm */
        float m = (float)mu, r = (float)(1.0 / sqrt(sq / (double)C + (double)eps));
        ms[n] = m;
        rs[n] = r;
        float *out = ys + n * C;
        for (int64_t c = 0; c < C; c++) {
            float v = (row[c] - m) * r * ws[c];
            out[c] = bs ? v + bs[c] : v;
        }
    }
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w, xhat = (x - mean) * rstd:
 * the derivative of the normalisation (e.g. the LayerNorm paper's appendix, or llm.c); plus
 * dres when present (the value is rounded to fp32 first, as a separate add would see it). */
static void layernorm_dx(struct tensor dx, struct tensor dy, struct tensor x, struct tensor w,
                         struct tensor mean, struct tensor rstd, const float *dres)
{
    int64_t N = x.shape[0], C = x.shape[1];
    const float *xs = x.data, *ws = w.data, *dys = dy.data, *ms = mean.data, *rs = rstd.data;
    float *dxs = dx.data;
#pragma omp parallel for schedule(static) if (N * C >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = xs + n * C, *dyr = dys + n * C;
        float m = ms[n], r = rs[n];
        double sg = 0.0, sgx = 0.0;
        for (int64_t c = 0; c < C; c++) {
            float g = dyr[c] * ws[c];
            sg += g;
            sgx += (double)g * ((xr[c] - m) * r);
        }
        float mg = (float)(sg / (double)C), mgx = (float)(sgx / (double)C);
        float *dxr = dxs + n * C;
        const float *dr = dres ? dres + n * C : NULL;
        for (int64_t c = 0; c < C; c++) {
            float xhat = (xr[c] - m) * r;
            float v = r * (dyr[c] * ws[c] - mg - xhat * mgx);
            dxr[c] = dr ? v + dr[c] : v;
        }
    }
}

/* dw += sum_n dy * xhat, db += sum_n dy. */
static void layernorm_dw_db(struct tensor dw, struct tensor db, struct tensor dy, struct tensor x,
                            struct tensor mean, struct tensor rstd)
{
    int64_t N = x.shape[0], C = x.shape[1], blocks = col_blocks(C);
    const float *xs = x.data, *dys = dy.data, *ms = mean.data, *rs = rstd.data;
    float *dws = tensor_present(dw) ? dw.data : NULL, *dbs = tensor_present(db) ? db.data : NULL;
#pragma omp parallel for schedule(static) if (blocks > 1 && N * C >= CPU_PARALLEL_MIN_WORK)
    for (int64_t blk = 0; blk < blocks; blk++) {
        int64_t c0 = blk * NORM_COLS, nc = block_width(C, blk);
        double aw[NORM_COLS] = {0}, ab[NORM_COLS] = {0};
        for (int64_t n = 0; n < N; n++) {
            const float *xr = xs + n * C + c0, *dyr = dys + n * C + c0;
            float m = ms[n], r = rs[n];
            for (int64_t c = 0; c < nc; c++) {
                aw[c] += dyr[c] * ((xr[c] - m) * r);
                ab[c] += dyr[c];
            }
        }
        for (int64_t c = 0; c < nc; c++) {
            if (dws) dws[c0 + c] += (float)aw[c];
            if (dbs) dbs[c0 + c] += (float)ab[c];
        }
    }
}

/* dsum += dres's column sums (when dsum is present), as the bias-dropout-add's backward sums its
 * bias gradient without dropout. */
static void residual_sum(struct tensor dsum, struct tensor dres)
{
    struct dropout_key nodrop = {0};
    if (tensor_present(dsum)) cpu_bias_dropout_add_backward(tensor_none(), dsum, dres, nodrop);
}

/* diag(s) dy in a buffer of its own (free it with free(t.data)), or dy itself when s is absent. */
static struct tensor rows_scaled(struct tensor dy, struct tensor s)
{
    if (!tensor_present(s)) return dy;
    struct tensor t = dy;
    t.data = xmalloc((size_t)tensor_numel(dy) * sizeof(float));
    cpu_scale_rows(t, dy, s);
    return t;
}

void cpu_layernorm_backward(struct tensor dx, struct tensor dw, struct tensor db, struct tensor dy,
                            struct tensor x, struct tensor w, struct tensor mean,
                            struct tensor rstd, struct tensor dy_row_scale)
{
    struct tensor g = rows_scaled(dy, dy_row_scale);
    if (tensor_present(dx)) layernorm_dx(dx, g, x, w, mean, rstd, NULL);
    if (tensor_present(dw) || tensor_present(db)) layernorm_dw_db(dw, db, g, x, mean, rstd);
    if (g.data != dy.data) free(g.data);
}

void cpu_layernorm_backward_add(struct tensor dx, struct tensor dw, struct tensor db,
                                struct tensor dy, struct tensor x, struct tensor w,
                                struct tensor mean, struct tensor rstd, struct tensor dresidual,
                                struct tensor dresidual_sum)
{
    residual_sum(dresidual_sum, dresidual); /* before dx, which may overwrite dresidual */
    layernorm_dx(dx, dy, x, w, mean, rstd, dresidual.data);
    if (tensor_present(dw) || tensor_present(db)) layernorm_dw_db(dw, db, dy, x, mean, rstd);
}

void cpu_bias_dropout_add_layernorm_forward(struct tensor mid, struct tensor y, struct tensor mean,
                                            struct tensor rstd, struct tensor x, struct tensor b,
                                            struct tensor residual, struct dropout_key drop,
                                            struct tensor w, struct tensor norm_b, float eps)
{
    cpu_bias_dropout_add_forward(mid, x, b, residual, drop);
    cpu_layernorm_forward(y, mean, rstd, mid, w, norm_b, eps);
}

void cpu_rmsnorm_forward(struct tensor y, struct tensor rstd, struct tensor x, struct tensor w,
                         float eps)
{
    int64_t N = x.shape[0], C = x.shape[1];
    const float *xs = x.data, *ws = w.data;
    float *ys = y.data, *rs = rstd.data;
#pragma omp parallel for schedule(static) if (N * C >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const float *row = xs + n * C;
        double sq = 0.0;
        for (int64_t c = 0; c < C; c++) sq += (double)row[c] * row[c];
        float r = (float)(1.0 / sqrt(sq / (double)C + (double)eps));
        rs[n] = r;
        float *out = ys + n * C;
        for (int64_t c = 0; c < C; c++) out[c] = row[c] * r * ws[c];
    }
}

/* dx = rstd * g - x * rstd^3 * mean(g * x) with g = dy * w (the derivative of x / rms(x));
 * plus dres when present, as in layernorm_dx. */
static void rmsnorm_dx(struct tensor dx, struct tensor dy, struct tensor x, struct tensor w,
                       struct tensor rstd, const float *dres)
{
    int64_t N = x.shape[0], C = x.shape[1];
    const float *xs = x.data, *ws = w.data, *dys = dy.data, *rs = rstd.data;
    float *dxs = dx.data;
#pragma omp parallel for schedule(static) if (N * C >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = xs + n * C, *dyr = dys + n * C;
        float r = rs[n];
        double sgx = 0.0;
        for (int64_t c = 0; c < C; c++) sgx += (double)(dyr[c] * ws[c]) * xr[c];
        float k = (float)(sgx / (double)C * (double)r * (double)r * (double)r);
        float *dxr = dxs + n * C;
        const float *dr = dres ? dres + n * C : NULL;
        for (int64_t c = 0; c < C; c++) {
            float v = r * dyr[c] * ws[c] - xr[c] * k;
            dxr[c] = dr ? v + dr[c] : v;
        }
    }
}

/* dw += sum_n dy * x * rstd */
static void rmsnorm_dw(struct tensor dw, struct tensor dy, struct tensor x, struct tensor rstd)
{
    int64_t N = x.shape[0], C = x.shape[1], blocks = col_blocks(C);
    const float *xs = x.data, *dys = dy.data, *rs = rstd.data;
    float *dws = dw.data;
#pragma omp parallel for schedule(static) if (blocks > 1 && N * C >= CPU_PARALLEL_MIN_WORK)
    for (int64_t blk = 0; blk < blocks; blk++) {
        int64_t c0 = blk * NORM_COLS, nc = block_width(C, blk);
        double aw[NORM_COLS] = {0};
        for (int64_t n = 0; n < N; n++) {
            const float *xr = xs + n * C + c0, *dyr = dys + n * C + c0;
            float r = rs[n];
            for (int64_t c = 0; c < nc; c++) aw[c] += dyr[c] * (xr[c] * r);
        }
        for (int64_t c = 0; c < nc; c++) dws[c0 + c] += (float)aw[c];
    }
}

void cpu_rmsnorm_backward(struct tensor dx, struct tensor dw, struct tensor dy, struct tensor x,
                          struct tensor w, struct tensor rstd, struct tensor dy_row_scale)
{
    struct tensor g = rows_scaled(dy, dy_row_scale);
    if (tensor_present(dx)) rmsnorm_dx(dx, g, x, w, rstd, NULL);
    if (tensor_present(dw)) rmsnorm_dw(dw, g, x, rstd);
    if (g.data != dy.data) free(g.data);
}

void cpu_rmsnorm_backward_add(struct tensor dx, struct tensor dw, struct tensor dy, struct tensor x,
                              struct tensor w, struct tensor rstd, struct tensor dresidual,
                              struct tensor dresidual_sum)
{
    residual_sum(dresidual_sum, dresidual); /* before dx, which may overwrite dresidual */
    rmsnorm_dx(dx, dy, x, w, rstd, dresidual.data);
    if (tensor_present(dw)) rmsnorm_dw(dw, dy, x, rstd);
}

void cpu_bias_dropout_add_rmsnorm_forward(struct tensor mid, struct tensor y, struct tensor rstd,
                                          struct tensor x, struct tensor b, struct tensor residual,
                                          struct dropout_key drop, struct tensor w, float eps)
{
    cpu_bias_dropout_add_forward(mid, x, b, residual, drop);
    cpu_rmsnorm_forward(y, rstd, mid, w, eps);
}
