/* CPU rotary position embedding and causal self-attention with grouped query heads on Megatron's
 * fused qkv layout (ops.h). Attention keeps the full probability matrix [B, n, T, T] for the
 * backward; attention dropout is keyed per probability element, so no mask is stored. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/rng.h"
#include "util/error.h"

/* ---- fused qkv layout: per query group, its n/g query heads, then its key, then its value ---- */

static int64_t qkv_width(struct attention_shape s)
{
    return (int64_t)s.groups * (s.heads / s.groups + 2) * s.head_dim;
}

/* Column of query head h in a qkv row. */
static int64_t q_col(struct attention_shape s, int h)
{
    int per = s.heads / s.groups;
    return ((int64_t)(h / per) * (per + 2) + h % per) * s.head_dim;
}

/* Column of the key head of query group j (its value head follows at + head_dim). */
static int64_t k_col(struct attention_shape s, int j)
{
    int per = s.heads / s.groups;
    return ((int64_t)j * (per + 2) + per) * s.head_dim;
}

/* ---- rotary embedding ---- */

/* Rotates the first 2*half dims of x by the angles whose cos and sin are given; sign -1 rotates
 * backwards (the transpose, which is the backward of the rotation). */
static void rotate_half(float *x, const float *cs, const float *sn, int half, float sign)
{
    for (int i = 0; i < half; i++) {
        float a = x[i], b = x[i + half], s = sign * sn[i];
        x[i] = a * cs[i] - b * s;
        x[i + half] = b * cs[i] + a * s;
    }
}

/* Rotates every q and k head of every row in place; v is left alone. */
static void rope_apply(struct tensor qkv, struct tensor positions, struct attention_shape s,
                       int rotary_dim, float base, float sign)
{
    int64_t N = qkv.shape[0], W = qkv_width(s);
    int half = rotary_dim / 2, per = s.heads / s.groups;
    if (half == 0) return;
    /* inv_freq[i] = base^(-2i/rotary_dim), rounded to fp32 as Megatron's RotaryEmbedding holds it */
    float *inv_freq = xmalloc((size_t)half * sizeof(float));
    for (int i = 0; i < half; i++) inv_freq[i] = (float)(1.0 / pow((double)base, 2.0 * i / rotary_dim));
    const int32_t *pos = positions.data;
    float *data = qkv.data;
#pragma omp parallel if (N * W >= CPU_PARALLEL_MIN_WORK)
    {
        float *cs = xmalloc(2 * (size_t)half * sizeof(float)), *sn = cs + half;
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            for (int i = 0; i < half; i++) {
                float angle = (float)pos[n] * inv_freq[i]; /* fp32 product, as in Megatron */
                cs[i] = (float)cos((double)angle);
                sn[i] = (float)sin((double)angle);
            }
            float *row = data + n * W;
            for (int j = 0; j < s.groups; j++) {
                float *grp = row + k_col(s, j) - (int64_t)per * s.head_dim;
                for (int h = 0; h <= per; h++) /* the group's query heads, then its key head */
                    rotate_half(grp + (int64_t)h * s.head_dim, cs, sn, half, sign);
            }
        }
        free(cs);
    }
    free(inv_freq);
}

void cpu_rope_forward(struct tensor qkv, struct tensor positions, struct attention_shape s,
                      int rotary_dim, float base)
{
    rope_apply(qkv, positions, s, rotary_dim, base, 1.0f);
}

void cpu_rope_backward(struct tensor dqkv, struct tensor positions, struct attention_shape s,
                       int rotary_dim, float base)
{
    rope_apply(dqkv, positions, s, rotary_dim, base, -1.0f);
}

/* ---- attention ---- */

static float dot(const float *a, const float *b, int d)
{
    float s = 0.0f;
    for (int i = 0; i < d; i++) s += a[i] * b[i];
    return s;
}

/* y[0:d] += a * x[0:d] */
static void axpy(float *restrict y, float a, const float *restrict x, int d)
{
    for (int i = 0; i < d; i++) y[i] += a * x[i];
}

/* The dropout factor of probability (b, h, t, t'): its counter is offset + the element's index
 * in the probabilities of all heads [B, total_heads, T, T] (h counted from head_offset, so a
 * tensor-parallel rank draws the slice the whole model would); 0 if dropped, else 1/(1-p). */
static inline float attn_dropout(struct dropout_key d, float scale, struct attention_shape s,
                                 int64_t b, int h, int64_t t, int64_t u)
{
    if (d.p == 0.0f) return 1.0f;
    int64_t total = s.total_heads > 0 ? s.total_heads : s.heads;
    uint64_t e = (uint64_t)(((b * total + s.head_offset + h) * s.seq + t) * s.seq + u);
    return rng_uniform(d.seed, d.stream, d.offset + e) >= d.p ? scale : 0.0f;
}

/* Softmax of the causal scores of query (b, h, t) into prow[0..T) (zero above the diagonal). */
static void attention_probs_row(float *prow, const float *qkv, struct attention_shape s, int64_t b,
                                int h, int64_t t, float scale)
{
    int64_t W = qkv_width(s), T = s.seq;
    int d = s.head_dim;
    const float *q = qkv + (b * T + t) * W + q_col(s, h);
    int64_t kc = k_col(s, h / (s.heads / s.groups));
    float mx = -INFINITY;
    for (int64_t u = 0; u <= t; u++) {
        float sc = dot(q, qkv + (b * T + u) * W + kc, d) * scale;
        prow[u] = sc;
        mx = sc > mx ? sc : mx;
    }
    double sum = 0.0;
    for (int64_t u = 0; u <= t; u++) {
        prow[u] = expf(prow[u] - mx);
        sum += prow[u];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t u = 0; u <= t; u++) prow[u] *= inv;
    for (int64_t u = t + 1; u < T; u++) prow[u] = 0.0f;
}

void cpu_attention_forward(struct tensor out, struct tensor probs, struct tensor qkv,
                           struct attention_shape s, struct dropout_key drop)
{
    int64_t B = s.batch, T = s.seq, W = qkv_width(s), rows = B * s.heads * T;
    int n = s.heads, d = s.head_dim;
    float scale = (float)(1.0 / sqrt((double)d)), dscale = cpu_dropout_scale(drop.p);
    const float *x = qkv.data;
    float *os = out.data, *ps = probs.data;
#pragma omp parallel for schedule(dynamic, 16) if (rows * T * d >= CPU_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        int64_t b = r / (n * T), t = r % T;
        int h = (int)(r / T % n);
        float *prow = ps + r * T;
        attention_probs_row(prow, x, s, b, h, t, scale);
        float *o = os + (b * T + t) * ((int64_t)n * d) + (int64_t)h * d;
        const float *v = x + b * T * W + k_col(s, h / (n / s.groups)) + d;
        memset(o, 0, (size_t)d * sizeof(float));
        for (int64_t u = 0; u <= t; u++) {
            float pd = prow[u] * attn_dropout(drop, dscale, s, b, h, t, u);
            if (pd != 0.0f) axpy(o, pd, v + u * W, d);
        }
    }
}

/* Backward of softmax and dropout for query (b, h, t), writing dq[t] and D[r] = sum_u P dP, the
 * row term of the softmax backward dS = P (dP - D) that the key/value pass needs again.
 * dP[u] = (dout[t] . v[u]) * dropout factor. */
static void attention_dq_row(float *dq, double *D, float *dp, const float *x, const float *dout,
                             const float *prow, struct attention_shape s, struct dropout_key drop,
                             int64_t b, int h, int64_t t)
{
    int64_t T = s.seq, W = qkv_width(s);
    int n = s.heads, d = s.head_dim;
    float scale = (float)(1.0 / sqrt((double)d)), dscale = cpu_dropout_scale(drop.p);
    const float *go = dout + (b * T + t) * ((int64_t)n * d) + (int64_t)h * d;
    int64_t kc = k_col(s, h / (n / s.groups));
    double sum = 0.0;
    for (int64_t u = 0; u <= t; u++) {
        float m = attn_dropout(drop, dscale, s, b, h, t, u);
        dp[u] = m != 0.0f ? dot(go, x + (b * T + u) * W + kc + d, d) * m : 0.0f;
        sum += (double)prow[u] * dp[u];
    }
    *D = sum;
    float dd = (float)sum;
    memset(dq, 0, (size_t)d * sizeof(float));
    for (int64_t u = 0; u <= t; u++) {
        float ds = prow[u] * (dp[u] - dd) * scale;
        axpy(dq, ds, x + (b * T + u) * W + kc, d);
    }
}

/* dk[u] and dv[u] of key/value head j at position u of batch b: sums over the group's query heads
 * and the queries t >= u that see it, in order. */
static void attention_dkv_row(float *dk, float *dv, const float *x, const float *dout,
                              const float *ps, const double *D, struct attention_shape s,
                              struct dropout_key drop, int64_t b, int j, int64_t u)
{
    int64_t T = s.seq, W = qkv_width(s);
    int n = s.heads, d = s.head_dim, per = n / s.groups;
    float scale = (float)(1.0 / sqrt((double)d)), dscale = cpu_dropout_scale(drop.p);
    const float *v = x + (b * T + u) * W + k_col(s, j) + d;
    memset(dk, 0, (size_t)d * sizeof(float));
    memset(dv, 0, (size_t)d * sizeof(float));
    for (int h = j * per; h < (j + 1) * per; h++) {
        for (int64_t t = u; t < T; t++) {
            int64_t r = (b * n + h) * T + t;
            float p = ps[r * T + u];
            float m = attn_dropout(drop, dscale, s, b, h, t, u);
            const float *go = dout + (b * T + t) * ((int64_t)n * d) + (int64_t)h * d;
            float dp = m != 0.0f ? dot(go, v, d) * m : 0.0f;
            float ds = p * (dp - (float)D[r]) * scale;
            axpy(dk, ds, x + (b * T + t) * W + q_col(s, h), d);
            if (m != 0.0f) axpy(dv, p * m, go, d);
        }
    }
}

/* Two passes so every output row is written by one task: dq per query row (which also leaves
 * D for the second pass), then dk and dv per key row of each query group. */
void cpu_attention_backward(struct tensor dqkv, struct tensor dout, struct tensor qkv,
                            struct tensor probs, struct tensor out, struct attention_shape s,
                            struct dropout_key drop)
{
    (void)out; /* the CPU backend has P itself; D is recomputed from it */
    int64_t B = s.batch, T = s.seq, W = qkv_width(s), rows = B * s.heads * T;
    int n = s.heads, d = s.head_dim;
    const float *x = qkv.data, *go = dout.data, *ps = probs.data;
    float *dx = dqkv.data;
    double *D = xmalloc((size_t)rows * sizeof(double));
    bool parallel = rows * T * d >= CPU_PARALLEL_MIN_WORK;
#pragma omp parallel if (parallel)
    {
        float *dp = xmalloc((size_t)T * sizeof(float));
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; r++) {
            int64_t b = r / (n * T), t = r % T;
            int h = (int)(r / T % n);
            float *dq = dx + (b * T + t) * W + q_col(s, h);
            attention_dq_row(dq, &D[r], dp, x, go, ps + r * T, s, drop, b, h, t);
        }
        free(dp);
    }
    int64_t kv_rows = B * s.groups * T;
#pragma omp parallel for schedule(dynamic, 16) if (parallel)
    for (int64_t r = 0; r < kv_rows; r++) {
        int64_t b = r / (s.groups * T), u = r % T;
        int j = (int)(r / T % s.groups);
        float *dk = dx + (b * T + u) * W + k_col(s, j);
        attention_dkv_row(dk, dk + d, x, go, ps, D, s, drop, b, j, u);
    }
    free(D);
}
