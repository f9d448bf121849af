/* CPU softmax cross-entropy over the full (possibly padded) vocabulary, forward and backward,
 * one row per task; the log-sum-exp is max-subtracted and summed in double. */
#include <math.h>

#include "kernels/cpu/cpu_ops.h"
#include "util/error.h"

/* log sum_v exp(row[v]), shifted by the row maximum so no exp overflows. */
static double logsumexp(const float *row, int64_t V)
{
    float mx = -INFINITY;
    for (int64_t v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
    double sum = 0.0;
    for (int64_t v = 0; v < V; v++) sum += exp((double)row[v] - (double)mx);
    return (double)mx + log(sum);
}

static void check_targets(const char *op, struct tensor targets, int64_t V)
{
    const int32_t *t = targets.data;
    for (int64_t n = 0; n < targets.shape[0]; n++) {
        if (t[n] < 0 || t[n] >= V)
            BUG("%s: targets[%lld] = %d is outside the vocabulary of %lld", op, (long long)n,
                (int)t[n], (long long)V);
    }
}

void cpu_cross_entropy_forward(struct tensor losses, struct tensor logits, struct tensor targets)
{
    int64_t N = logits.shape[0], V = logits.shape[1];
    check_targets("op_cross_entropy_forward", targets, V);
    const float *ls = logits.data;
    const int32_t *tg = targets.data;
    float *out = losses.data;
#pragma omp parallel for schedule(static) if (N * V >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const float *row = ls + n * V;
        out[n] = (float)(logsumexp(row, V) - (double)row[tg[n]]);
    }
}

void cpu_cross_entropy_backward(struct tensor dlogits, struct tensor logits, struct tensor targets,
                                struct tensor dlosses)
{
    int64_t N = logits.shape[0], V = logits.shape[1];
    check_targets("op_cross_entropy_backward", targets, V);
    const float *ls = logits.data, *dl = dlosses.data;
    const int32_t *tg = targets.data;
    float *dls = dlogits.data;
#pragma omp parallel for schedule(static) if (N * V >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const float *row = ls + n * V;
        float *drow = dls + n * V;
        double lse = logsumexp(row, V), g = dl[n];
        /* each logit is read before its gradient is written: dlogits may alias logits */
        for (int64_t v = 0; v < V; v++) {
            double p = exp((double)row[v] - lse);
            drow[v] = (float)((p - (v == tg[n] ? 1.0 : 0.0)) * g);
        }
    }
}

/* ---- vocab-parallel cross-entropy (ops.h): per-rank statistics, combined by the caller ---- */

void cpu_vocab_parallel_ce_stats(struct tensor row_max, struct tensor sum_exp, struct tensor target_logit,
                                 struct tensor logits, struct tensor targets, int64_t vocab_start)
{
    int64_t N = logits.shape[0], V = logits.shape[1];
    const float *ls = logits.data;
    const int32_t *tg = targets.data;
    float *mx = row_max.data, *se = sum_exp.data, *tl = target_logit.data;
#pragma omp parallel for schedule(static) if (N * V >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const float *row = ls + n * V;
        float m = -INFINITY;
        for (int64_t v = 0; v < V; v++) m = row[v] > m ? row[v] : m;
        double sum = 0.0;
        for (int64_t v = 0; v < V; v++) sum += exp((double)row[v] - (double)m);
        int64_t t = (int64_t)tg[n] - vocab_start;
        mx[n] = m;
        se[n] = (float)sum;
        tl[n] = t >= 0 && t < V ? row[t] : 0.0f;
    }
}

void cpu_vocab_parallel_ce_rescale(struct tensor sum_exp, struct tensor row_max, struct tensor global_max)
{
    float *se = sum_exp.data;
    const float *m = row_max.data, *g = global_max.data;
    for (int64_t n = 0; n < sum_exp.shape[0]; n++) se[n] = (float)((double)se[n] * exp((double)m[n] - (double)g[n]));
}

void cpu_vocab_parallel_ce_loss(struct tensor losses, struct tensor lse, struct tensor global_max,
                                struct tensor sum_exp, struct tensor target_logit)
{
    float *out = losses.data, *l = lse.data;
    const float *g = global_max.data, *se = sum_exp.data, *tl = target_logit.data;
    for (int64_t n = 0; n < losses.shape[0]; n++) {
        double v = (double)g[n] + log((double)se[n]);
        l[n] = (float)v;
        out[n] = (float)(v - (double)tl[n]);
    }
}

void cpu_vocab_parallel_ce_backward(struct tensor dlogits, struct tensor logits, struct tensor targets,
                                    int64_t vocab_start, struct tensor lse, struct tensor dlosses)
{
    int64_t N = logits.shape[0], V = logits.shape[1];
    const float *ls = logits.data, *dl = dlosses.data, *lz = lse.data;
    const int32_t *tg = targets.data;
    float *dls = dlogits.data;
#pragma omp parallel for schedule(static) if (N * V >= CPU_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < N; n++) {
        const float *row = ls + n * V;
        float *drow = dls + n * V;
        double g = dl[n], z = lz[n];
        int64_t t = (int64_t)tg[n] - vocab_start;
        for (int64_t v = 0; v < V; v++) {
            double p = exp((double)row[v] - z);
            drow[v] = (float)((p - (v == t ? 1.0 : 0.0)) * g);
        }
    }
}
