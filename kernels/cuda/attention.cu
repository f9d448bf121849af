/* CUDA causal self-attention through cuDNN's fused flash-attention engine, built from plain
 * backend-API calls (/work/shared/reference/cudnn_sdpa.md). On cuDNN 9.14 the engine is reached
 * through the "composite" graph: matmuls, pointwise ops, reductions and reshapes in exactly the
 * pattern cudnn-frontend's CompositeSDPANode / CompositeSDPABackwardNode lower to, which the
 * engine recognises; this file mirrors those lowerings (ops, dims, strides, dtypes, order).
 *
 * Layout: our fused qkv row holds, per query group, its n/g query heads, its key head and its
 * value head. K and V (and dK, dV) are strided 4-D views straight into qkv / dqkv. So is Q when
 * each group has one query head (n = g); otherwise the query heads of a row are not equally
 * spaced, and a small kernel packs Q into [N, n, d] (and unpacks dQ) around the cuDNN call.
 * Q, K, V, O and their gradients are the model's 16-bit type (bf16 or fp16), as are the graph's
 * 16-bit intermediates (P, dS^T, the GQA full-head products); all math is fp32. The saved
 * statistic is the natural-log LSE [B, n, T] (fp32), the op's `probs` argument: that of the
 * softmax before dropout. Each (shape, 16-bit type, dropout probability, direction) builds its
 * execution plan once and keeps it in the context.
 *
 * Attention dropout (p > 0) is drawn inside the graph as the frontend's set_dropout does: a
 * Philox RNG op (Bernoulli, keep probability 1 - p) makes a 0/1 mask, and P * mask * 1/(1-p)
 * feeds P.V; the backward's RNG op, with the same seed and offset, regenerates the same mask.
 * The seed is a 64-bit mix of the site's dropout_key (and the rank's first head), the offset 0,
 * so the forward and backward of a site agree and every run repeats. The mask is cuDNN's, not
 * kernels/rng.h's, so it differs from the CPU backend's attention mask (the hidden dropout masks,
 * drawn by our own kernels, match the CPU's). With p = 0 the graphs have no RNG op at all.
 *
 * The backward is our own kernel (flash_backward.cu) where it applies (bf16, head dimension 64,
 * n = g, no attention dropout, T a multiple of 128, on sm_90): faster than cuDNN's there. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cudnn_graph.h"
#include "kernels/rng.h"

/* Unique ids of the non-virtual tensors (the variant pack's keys); virtual ones count from
 * UID_VIRTUAL. */
enum {
    UID_Q = 1, UID_K, UID_V, UID_O, UID_STATS, UID_SCALE, UID_NEG_INF, UID_NEG_INF_PAD, UID_ONE,
    UID_DO, UID_DQ, UID_DK, UID_DV, UID_SOFTMAX_SUM, UID_DQ_ACCUM, UID_SEQ_Q, UID_SEQ_KV,
    UID_SEED, UID_OFFSET, UID_DROP_SCALE, UID_DROP_SCALE_INV,
    UID_VIRTUAL = 100
};

/* The attention problem a graph is built for; also the plan cache key. */
struct sdpa_dims {
    int64_t B, T, H, G, D; /* batch, sequence, query heads, key/value heads, head dim */
    enum dtype dt;         /* of Q, K, V, O and their gradients: DT_BF16 or DT_F16 */
    float dropout_p;       /* attention dropout probability; 0: no RNG op in the graph */
    bool q_packed;         /* Q (and dQ) in a packed [N, H, D] buffer rather than inside qkv */
    bool backward;
    bool pad_workaround;   /* backward, T % 128 != 0, cuDNN <= 9.15: the frontend's padding mask */
};

/* Execution plans of one graph: the first sdpa_configs(dims) of cuDNN's engine configs that
 * finalize (at most SDPA_PLANS), one chosen on the first execution (sdpa_execute, sdpa_fastest). */
enum { SDPA_PLANS = 8 };
struct cuda_sdpa_plan {
    struct sdpa_dims dims;
    struct graph_builder *gb;
    cudnnBackendDescriptor_t plans[SDPA_PLANS];
    int64_t workspaces[SDPA_PLANS];
    int nplans;
    int chosen;        /* -1 until the first execution */
    int64_t workspace; /* the largest of the plans' */
};

/* ---- the SDPA graphs ---- */

/* Element strides of the [B, heads, T, D] views into our buffers. */
struct sdpa_strides {
    int64_t q[4], k[4], v[4], o[4];
};

static struct sdpa_strides sdpa_strides_of(const struct sdpa_dims *m)
{
    int64_t per = m->H / m->G, W = m->G * (per + 2) * m->D, T = m->T, D = m->D;
    struct sdpa_strides s;
    const int64_t kv[4] = {T * W, (per + 2) * D, W, 1};
    const int64_t o[4] = {T * m->H * D, D, m->H * D, 1};
    memcpy(s.k, kv, sizeof kv);
    memcpy(s.v, kv, sizeof kv);
    memcpy(s.o, o, sizeof o);
    if (m->q_packed) {
        memcpy(s.q, o, sizeof o);
    } else { /* one query head per group: head h at column h * (per + 2) * D */
        memcpy(s.q, kv, sizeof kv);
    }
    return s;
}

/* cuDNN's name of m's 16-bit type. */
static cudnnDataType_t sdpa_io_type(const struct sdpa_dims *m)
{
    CHECK(m->dt == DT_BF16 || m->dt == DT_F16);
    return m->dt == DT_F16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
}

/* The transposed view [B, G, D, T] of a [B, G, T, D] tensor: dims 2 and 3 swapped. */
static void transposed(const int64_t s[4], int64_t out[4])
{
    out[0] = s[0], out[1] = s[1], out[2] = s[3], out[3] = s[2];
}

/* Causal mask as the frontend lowers it (right bound 0, top-left diagonal): keep row >= col,
 * else -inf. */
static cudnnBackendDescriptor_t gb_causal_mask(struct graph_builder *gb,
                                               cudnnBackendDescriptor_t x,
                                               cudnnBackendDescriptor_t neg_inf,
                                               const int64_t sd[4], const int64_t ss[4])
{
    cudnnBackendDescriptor_t row = gb_tensor(gb, CUDNN_DATA_INT32, sd, ss, 0, false);
    cudnnBackendDescriptor_t col = gb_tensor(gb, CUDNN_DATA_INT32, sd, ss, 0, false);
    cudnnBackendDescriptor_t keep = gb_tensor(gb, CUDNN_DATA_BOOLEAN, sd, ss, 0, false);
    cudnnBackendDescriptor_t y = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_FLOAT, x, NULL, NULL, row, 2);
    gb_pointwise(gb, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_FLOAT, x, NULL, NULL, col, 3);
    gb_pointwise(gb, CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, col, NULL, keep, -1);
    gb_pointwise(gb, CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, x, neg_inf, keep, y, -1);
    return y;
}

/* The padding mask the frontend adds to the backward when T % 128 != 0 on cuDNN <= 9.15 (a
 * workaround for the engine): keep row < seq_q[b] and col < seq_kv[b] (both T here). */
static cudnnBackendDescriptor_t gb_padding_mask(struct graph_builder *gb,
                                                cudnnBackendDescriptor_t x, int64_t B,
                                                const int64_t sd[4], const int64_t ss[4])
{
    const int64_t bd[4] = {B, 1, 1, 1}, bs[4] = {1, 1, 1, 1};
    cudnnBackendDescriptor_t seq_q = gb_tensor(gb, CUDNN_DATA_INT32, bd, bs, UID_SEQ_Q, false);
    cudnnBackendDescriptor_t seq_kv = gb_tensor(gb, CUDNN_DATA_INT32, bd, bs, UID_SEQ_KV, false);
    cudnnBackendDescriptor_t neg_inf = gb_scalar(gb, UID_NEG_INF_PAD);
    cudnnBackendDescriptor_t row = gb_tensor(gb, CUDNN_DATA_INT32, sd, ss, 0, false);
    cudnnBackendDescriptor_t col = gb_tensor(gb, CUDNN_DATA_INT32, sd, ss, 0, false);
    cudnnBackendDescriptor_t row_ok = gb_tensor(gb, CUDNN_DATA_BOOLEAN, sd, ss, 0, false);
    cudnnBackendDescriptor_t col_ok = gb_tensor(gb, CUDNN_DATA_BOOLEAN, sd, ss, 0, false);
    cudnnBackendDescriptor_t keep = gb_tensor(gb, CUDNN_DATA_BOOLEAN, sd, ss, 0, false);
    cudnnBackendDescriptor_t y = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, x, NULL, NULL, row, 2);
    gb_pointwise(gb, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, x, NULL, NULL, col, 3);
    gb_pointwise(gb, CUDNN_POINTWISE_CMP_LT, CUDNN_DATA_BOOLEAN, row, seq_q, NULL, row_ok, -1);
    gb_pointwise(gb, CUDNN_POINTWISE_CMP_LT, CUDNN_DATA_BOOLEAN, col, seq_kv, NULL, col_ok, -1);
    gb_pointwise(gb, CUDNN_POINTWISE_LOGICAL_AND, CUDNN_DATA_BOOLEAN, row_ok, col_ok, NULL, keep,
                 -1);
    gb_pointwise(gb, CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, x, neg_inf, keep, y, -1);
    return y;
}

/* The probability that the dropout mask keeps an element, one value for the forward and the
 * backward graphs (the frontend computes it in double in one and in float in the other). */
static double sdpa_keep_probability(float p)
{
    return (double)(1.0f - p);
}

/* The attention dropout mask as the frontend's set_dropout draws it: an RNG op, Bernoulli with
 * keep probability 1 - p, seeded by int64 [1,1,1,1] seed and offset tensors in device memory;
 * y is 1.0f (kept) or 0.0f, fp32 [B, H, T, T]. */
static cudnnBackendDescriptor_t gb_dropout_mask(struct graph_builder *gb, float p,
                                                const int64_t sd[4], const int64_t ss[4])
{
    const int64_t one[4] = {1, 1, 1, 1};
    cudnnBackendDescriptor_t seed = gb_tensor(gb, CUDNN_DATA_INT64, one, one, UID_SEED, false);
    cudnnBackendDescriptor_t offset = gb_tensor(gb, CUDNN_DATA_INT64, one, one, UID_OFFSET, false);
    cudnnBackendDescriptor_t y = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    cudnnRngDistribution_t dist = CUDNN_RNG_DISTRIBUTION_BERNOULLI;
    double keep = sdpa_keep_probability(p);
    cudnnBackendDescriptor_t rng = gb_new(gb, CUDNN_BACKEND_RNG_DESCRIPTOR, "rng");
    gb_set(gb, rng, CUDNN_ATTR_RNG_DISTRIBUTION, CUDNN_TYPE_RNG_DISTRIBUTION, 1, &dist,
           "rng distribution");
    gb_set(gb, rng, CUDNN_ATTR_RNG_BERNOULLI_DIST_PROBABILITY, CUDNN_TYPE_DOUBLE, 1, &keep,
           "rng bernoulli probability");
    gb_finalize(gb, rng, "rng descriptor");
    cudnnBackendDescriptor_t op = gb_new(gb, CUDNN_BACKEND_OPERATION_RNG_DESCRIPTOR, "rng op");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_RNG_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rng,
           "rng op desc");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_RNG_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, "rng y");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_RNG_SEED, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &seed,
           "rng seed");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_RNG_OFFSET_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &offset,
           "rng offset");
    gb_finalize(gb, op, "rng op");
    gb_op(gb, op);
    return y;
}

/* Forward: S = Q K^T * scale, causal mask, softmax with Stats = max + log(sum exp), O = P V;
 * with dropout O = (P * mask / (1 - p)) V, Stats unchanged. */
static void build_forward(struct graph_builder *gb, const struct sdpa_dims *m)
{
    const int64_t B = m->B, H = m->H, G = m->G, S = m->T, D = m->D;
    struct sdpa_strides st = sdpa_strides_of(m);
    const int64_t qd[4] = {B, H, S, D}, kvd[4] = {B, G, S, D}, ktd[4] = {B, G, D, S};
    const int64_t sd[4] = {B, H, S, S}, ss[4] = {H * S * S, S * S, S, 1};
    const int64_t rd[4] = {B, H, S, 1}, rs[4] = {H * S, S, 1, 1};
    const cudnnDataType_t io = sdpa_io_type(m);
    int64_t kts[4];
    transposed(st.k, kts);
    cudnnBackendDescriptor_t q = gb_tensor(gb, io, qd, st.q, UID_Q, false);
    cudnnBackendDescriptor_t kt = gb_tensor(gb, io, ktd, kts, UID_K, false);
    cudnnBackendDescriptor_t v = gb_tensor(gb, io, kvd, st.v, UID_V, false);
    cudnnBackendDescriptor_t o = gb_tensor(gb, io, qd, st.o, UID_O, false);
    cudnnBackendDescriptor_t stats = gb_tensor(gb, CUDNN_DATA_FLOAT, rd, rs, UID_STATS, false);
    cudnnBackendDescriptor_t scale = gb_scalar(gb, UID_SCALE);
    cudnnBackendDescriptor_t neg_inf = gb_scalar(gb, UID_NEG_INF);

    cudnnBackendDescriptor_t s1 = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_matmul(gb, q, kt, s1);
    cudnnBackendDescriptor_t s2 = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, s1, scale, NULL, s2, -1);
    cudnnBackendDescriptor_t s3 = gb_causal_mask(gb, s2, neg_inf, sd, ss);
    cudnnBackendDescriptor_t mx = gb_tensor(gb, CUDNN_DATA_FLOAT, rd, rs, 0, false);
    gb_reduction(gb, CUDNN_REDUCE_TENSOR_MAX, s3, mx);
    cudnnBackendDescriptor_t s4 = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, s3, mx, NULL, s4, -1);
    cudnnBackendDescriptor_t e = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, s4, NULL, NULL, e, -1);
    cudnnBackendDescriptor_t z = gb_tensor(gb, CUDNN_DATA_FLOAT, rd, rs, 0, false);
    gb_reduction(gb, CUDNN_REDUCE_TENSOR_ADD, e, z);
    cudnnBackendDescriptor_t logz = gb_tensor(gb, CUDNN_DATA_FLOAT, rd, rs, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_LOG, CUDNN_DATA_FLOAT, z, NULL, NULL, logz, -1);
    gb_pointwise(gb, CUDNN_POINTWISE_ADD, CUDNN_DATA_FLOAT, mx, logz, NULL, stats, -1);
    if (m->dropout_p == 0.0f) {
        cudnnBackendDescriptor_t p = gb_tensor(gb, io, sd, ss, 0, false);
        gb_pointwise(gb, CUDNN_POINTWISE_DIV, CUDNN_DATA_FLOAT, e, z, NULL, p, -1);
        gb_matmul(gb, p, v, o);
        return;
    }
    /* the frontend's dropout branch: P stays fp32 until the scaled, masked P */
    cudnnBackendDescriptor_t drop_scale = gb_scalar(gb, UID_DROP_SCALE);
    cudnnBackendDescriptor_t p = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_DIV, CUDNN_DATA_FLOAT, e, z, NULL, p, -1);
    cudnnBackendDescriptor_t mask = gb_dropout_mask(gb, m->dropout_p, sd, ss);
    cudnnBackendDescriptor_t pm = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, p, mask, NULL, pm, -1);
    cudnnBackendDescriptor_t pd = gb_tensor(gb, io, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, pm, drop_scale, NULL, pd, -1);
    gb_matmul(gb, pd, v, o);
}

/* dX[B, G, T, D] = reduce over each group's heads of full[B, H, T, D] (GQA), or direct (MHA). */
static void gb_matmul_to_kv(struct graph_builder *gb, cudnnBackendDescriptor_t a,
                            cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t out,
                            const struct sdpa_dims *m)
{
    if (m->H == m->G) {
        gb_matmul(gb, a, b, out);
        return;
    }
    const int64_t H = m->H, S = m->T, D = m->D;
    const int64_t fd[4] = {m->B, H, S, D}, fs[4] = {H * S * D, S * D, D, 1};
    cudnnBackendDescriptor_t full = gb_tensor(gb, sdpa_io_type(m), fd, fs, 0, false);
    gb_matmul(gb, a, b, full);
    gb_reduction(gb, CUDNN_REDUCE_TENSOR_ADD, full, out);
}

/* Backward (the frontend's default, non-deterministic dQ accumulation in fp32):
 * softmax_sum = rowsum(dO * O); P = exp(S * scale - Stats) masked; dV = P^T dO;
 * dS = P (dO V^T - softmax_sum) * scale; dK = dS^T Q; dQ = dS K. With dropout (mask M, keep
 * probability 1 - p), as the frontend lowers it: the RNG op first, softmax_sum = rowsum(dO * O)
 * * (1 - p); dV = (P * M / (1 - p))^T dO; dS = P (dO V^T * M - softmax_sum) / (1 - p) * scale.
 * That is the softmax backward P (dP - rowsum(dO * O)) * scale of dP = dO V^T * M / (1 - p), the
 * gradient of the undropped P, as rowsum(P * dP) = rowsum(dO * O). */
static void build_backward(struct graph_builder *gb, const struct sdpa_dims *m)
{
    const int64_t B = m->B, H = m->H, G = m->G, S = m->T, D = m->D;
    struct sdpa_strides st = sdpa_strides_of(m);
    const int64_t qd[4] = {B, H, S, D}, kvd[4] = {B, G, S, D}, ktd[4] = {B, G, D, S};
    const int64_t sd[4] = {B, H, S, S}, ss[4] = {H * S * S, S * S, S, 1};
    const int64_t sts[4] = {H * S * S, S * S, 1, S}; /* the transposed [kv, q] view */
    const int64_t rd[4] = {B, H, S, 1}, rs[4] = {H * S, S, 1, 1};
    const int64_t dod_s[4] = {H * S * D, S * D, H * D, 1}, acc_s[4] = {H * S * D, S * D, D, 1};
    const cudnnDataType_t io = sdpa_io_type(m);
    int64_t kts[4], vts[4];
    transposed(st.k, kts);
    transposed(st.v, vts);
    cudnnBackendDescriptor_t q = gb_tensor(gb, io, qd, st.q, UID_Q, false);
    cudnnBackendDescriptor_t kt = gb_tensor(gb, io, ktd, kts, UID_K, false);
    cudnnBackendDescriptor_t vt = gb_tensor(gb, io, ktd, vts, UID_V, false);
    cudnnBackendDescriptor_t o = gb_tensor(gb, io, qd, st.o, UID_O, false);
    cudnnBackendDescriptor_t dout = gb_tensor(gb, io, qd, st.o, UID_DO, false);
    cudnnBackendDescriptor_t stats = gb_tensor(gb, CUDNN_DATA_FLOAT, rd, rs, UID_STATS, false);
    cudnnBackendDescriptor_t dq = gb_tensor(gb, io, qd, st.q, UID_DQ, false);
    cudnnBackendDescriptor_t dk = gb_tensor(gb, io, kvd, st.k, UID_DK, false);
    cudnnBackendDescriptor_t dv = gb_tensor(gb, io, kvd, st.v, UID_DV, false);
    cudnnBackendDescriptor_t scale = gb_scalar(gb, UID_SCALE);
    cudnnBackendDescriptor_t one = m->dropout_p > 0.0f ? NULL : gb_scalar(gb, UID_ONE);
    cudnnBackendDescriptor_t neg_inf = gb_scalar(gb, UID_NEG_INF);
    cudnnBackendDescriptor_t softmax_sum =
        gb_tensor(gb, CUDNN_DATA_FLOAT, rd, rs, UID_SOFTMAX_SUM, false);
    cudnnBackendDescriptor_t dq_accum =
        gb_tensor(gb, CUDNN_DATA_FLOAT, qd, acc_s, UID_DQ_ACCUM, false);
    const bool dropout = m->dropout_p > 0.0f;
    cudnnBackendDescriptor_t mask = NULL, drop_scale = NULL;
    if (dropout) { /* 1 - p takes the place of the constant 1.0 */
        drop_scale = gb_scalar(gb, UID_DROP_SCALE);
        one = gb_scalar(gb, UID_DROP_SCALE_INV);
        mask = gb_dropout_mask(gb, m->dropout_p, sd, ss);
    }

    cudnnBackendDescriptor_t t1 = gb_tensor(gb, CUDNN_DATA_FLOAT, qd, dod_s, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, dout, o, NULL, t1, -1);
    cudnnBackendDescriptor_t t2 = gb_tensor(gb, CUDNN_DATA_FLOAT, rd, rs, 0, false);
    gb_reduction(gb, CUDNN_REDUCE_TENSOR_ADD, t1, t2);
    gb_pointwise(gb, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, t2, one, NULL, softmax_sum, -1);

    cudnnBackendDescriptor_t s1 = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_matmul(gb, q, kt, s1);
    cudnnBackendDescriptor_t s2 = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, s1, scale, NULL, s2, -1);
    cudnnBackendDescriptor_t s3 = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, s2, stats, NULL, s3, -1);
    if (m->pad_workaround) s3 = gb_padding_mask(gb, s3, B, sd, ss);
    cudnnBackendDescriptor_t s4 = gb_causal_mask(gb, s3, neg_inf, sd, ss);
    cudnnBackendDescriptor_t p = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, s4, NULL, NULL, p, -1);
    cudnnBackendDescriptor_t p_used = p; /* what P.V used: P, or P * M / (1 - p) */
    if (dropout) {
        cudnnBackendDescriptor_t pm = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
        gb_pointwise(gb, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, p, mask, NULL, pm, -1);
        p_used = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
        gb_pointwise(gb, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, pm, drop_scale, NULL, p_used, -1);
    }
    cudnnBackendDescriptor_t pt = gb_tensor(gb, io, sd, sts, 0, false);
    gb_reshape(gb, p_used, pt);
    gb_matmul_to_kv(gb, pt, dout, dv, m);

    cudnnBackendDescriptor_t dp = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_matmul(gb, dout, vt, dp);
    if (dropout) {
        cudnnBackendDescriptor_t dpm = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
        gb_pointwise(gb, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, dp, mask, NULL, dpm, -1);
        dp = dpm;
    }
    cudnnBackendDescriptor_t t3 = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, dp, softmax_sum, NULL, t3, -1);
    cudnnBackendDescriptor_t t4 = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, t3, p, NULL, t4, -1);
    if (dropout) {
        cudnnBackendDescriptor_t t5 = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
        gb_pointwise(gb, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, t4, drop_scale, NULL, t5, -1);
        t4 = t5;
    }
    cudnnBackendDescriptor_t ds = gb_tensor(gb, CUDNN_DATA_FLOAT, sd, ss, 0, false);
    gb_pointwise(gb, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, t4, scale, NULL, ds, -1);
    cudnnBackendDescriptor_t dst = gb_tensor(gb, io, sd, sts, 0, false);
    gb_reshape(gb, ds, dst);
    gb_matmul_to_kv(gb, dst, q, dk, m);

    cudnnBackendDescriptor_t k = gb_tensor(gb, CUDNN_DATA_FLOAT, kvd, st.k, 0, false);
    gb_reshape(gb, kt, k);
    gb_matmul(gb, ds, k, dq_accum);
    gb_pointwise(gb, CUDNN_POINTWISE_IDENTITY, CUDNN_DATA_FLOAT, dq_accum, NULL, NULL, dq, -1);
}

/* The operation graph of m, finalized (validated by cuDNN); NULL on failure (reason in gb). */
static cudnnBackendDescriptor_t gb_graph(struct graph_builder *gb, const struct sdpa_dims *m)
{
    gb->next_uid = UID_VIRTUAL;
    if (m->backward) {
        build_backward(gb, m);
    } else {
        build_forward(gb, m);
    }
    cudnnBackendDescriptor_t g = gb_new(gb, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "graph");
    gb_set(gb, g, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, gb->nops, gb->ops,
           "graph ops");
    if (gb->handle)
        gb_set(gb, g, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &gb->handle,
               "graph handle");
    gb_finalize(gb, g, "operation graph");
    return gb->failed ? NULL : g;
}

/* How many of cuDNN's engine configs a graph builds, to time them on its first execution
 * (sdpa_fastest) where there are more than one: by default the forward's first two where its
 * causal FLOPs reach SDPA_TIMED_FLOP (GPT-2 124M's layer: 1e11), else the first alone (the
 * frontend's choice). At d = 64 and T = 1024 the forward's second config is 7-10% faster, the
 * backward's first the fastest (docs/PERFORMANCE.md); each config built is one more kernel for
 * cuDNN to compile on a machine's first run (seconds, for all eight), and below that size the
 * configs time alike, would be chosen differently from run to run and round differently (a run's
 * last bits would vary: seen in tests/gpu/ckpt_gpu.sh and gpu_train.sh's checks).
 * MEGATRON_ATTENTION_AUTOTUNE=1 builds and times every config of every graph, =0 none. */
#define SDPA_TIMED_FLOP 1e10
static int sdpa_configs(const struct sdpa_dims *m)
{
    static int mode = -1; /* read once: a setting of the process, like the backend context */
    if (mode < 0) {
        const char *v = getenv("MEGATRON_ATTENTION_AUTOTUNE");
        mode = !v ? 2 : strcmp(v, "1") == 0 ? 1 : strcmp(v, "0") == 0 ? 0 : 2;
    }
    if (cuda_ctx()->deterministic) return 1; /* no choice by timing */
    if (mode != 2) return mode == 1 ? SDPA_PLANS : 1;
    double causal_flop =
        2.0 * (double)m->B * (double)m->H * (double)m->T * (double)m->T * (double)m->D;
    return !m->backward && causal_flop >= SDPA_TIMED_FLOP ? 2 : 1;
}

/* The plan for m, built on first use and kept in the context. */
static struct cuda_sdpa_plan *sdpa_plan(const struct sdpa_dims *m)
{
    struct cuda_context *ctx = cuda_ctx();
    int free_slot = -1;
    for (int i = 0; i < CUDA_SDPA_CACHE; i++) {
        struct cuda_sdpa_plan *p = ctx->sdpa[i];
        if (!p) {
            if (free_slot < 0) free_slot = i;
            continue;
        }
        if (!memcmp(&p->dims, m, sizeof *m)) return p;
    }
    if (free_slot < 0)
        BUG("more than %d attention shapes: raise CUDA_SDPA_CACHE", (int)CUDA_SDPA_CACHE);
    struct graph_builder *gb = (struct graph_builder *)xcalloc(1, sizeof *gb);
    gb->handle = ctx->dnn;
    cudnnBackendDescriptor_t graph = gb_graph(gb, m);
    struct cuda_sdpa_plan *p = (struct cuda_sdpa_plan *)xcalloc(1, sizeof *p);
    if (graph) p->nplans = gb_plans(gb, graph, p->plans, p->workspaces, sdpa_configs(m));
    p->chosen = -1;
    for (int i = 0; i < p->nplans; i++)
        if (p->workspaces[i] > p->workspace) p->workspace = p->workspaces[i];
    if (p->nplans == 0)
        BUG("cuDNN attention %s (B=%lld T=%lld heads=%lld groups=%lld d=%lld, %s): %s",
            m->backward ? "backward" : "forward", (long long)m->B, (long long)m->T,
            (long long)m->H, (long long)m->G, (long long)m->D, dtype_name(m->dt), gb->err);
    memcpy(&p->dims, m, sizeof *m); /* padding bytes too: the cache compares bytewise */
    p->gb = gb;
    ctx->sdpa[free_slot] = p;
    return p;
}

/* A config after the first is kept where it takes at most this share of the first's time. */
#define SDPA_MARGIN 0.96f
enum { SDPA_TIMED_RUNS = 8 };

/* The plan to keep of p's on this variant pack: each run once to warm up and SDPA_TIMED_RUNS times
 * timed; the fastest where it beats the first by SDPA_MARGIN, else the first. The runs write the
 * op's own outputs, which every plan overwrites whole (nothing accumulates), and the chosen plan
 * runs again after them. Once per graph, on its first execution: the synchronisation happens
 * then, never in a later step. With MEGATRON_OP_TIMING set, one line per graph says what was
 * chosen. */
static int sdpa_fastest(struct cuda_sdpa_plan *p, cudnnBackendDescriptor_t pack)
{
    struct cuda_context *ctx = cuda_ctx();
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    int best = 0;
    float best_ms = 0.0f, first_ms = 0.0f;
    for (int i = 0; i < p->nplans; i++) {
        bool ok = true;
        for (int r = 0; r <= SDPA_TIMED_RUNS && ok; r++) {
            if (r == 1) CUDA_CHECK(cudaEventRecord(start, ctx->stream));
            ok = cudnnBackendExecute(ctx->dnn, p->plans[i], pack) == CUDNN_STATUS_SUCCESS;
        }
        if (!ok) continue;
        CUDA_CHECK(cudaEventRecord(stop, ctx->stream));
        CUDA_CHECK(cudaEventSynchronize(stop));
        float ms;
        CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        ms /= SDPA_TIMED_RUNS;
        if (i == 0) first_ms = ms;
        if (i == 0 || ms < best_ms) {
            best = i;
            best_ms = ms;
        }
    }
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    int chosen = best_ms <= SDPA_MARGIN * first_ms ? best : 0;
    if (getenv("MEGATRON_OP_TIMING"))
        fprintf(stderr,
                "attention %s B=%lld T=%lld heads=%lld/%lld d=%lld %s dropout %g: %d engine "
                "configs, #%d chosen (the fastest #%d: %.3f ms against the first's %.3f ms)\n",
                p->dims.backward ? "backward" : "forward", (long long)p->dims.B,
                (long long)p->dims.T, (long long)p->dims.H, (long long)p->dims.G,
                (long long)p->dims.D, dtype_name(p->dims.dt), (double)p->dims.dropout_p, p->nplans,
                chosen, best, best_ms, first_ms);
    return chosen;
}

/* Runs plan p (its chosen engine config) with the (uid, pointer) pairs given; the workspace has
 * room for the largest of p's plans. */
static void sdpa_execute(struct cuda_sdpa_plan *p, const int64_t *uids, void *const *ptrs, int n,
                         void *workspace)
{
    struct cuda_context *ctx = cuda_ctx();
    cudnnBackendDescriptor_t pack;
    CUDNN_CHECK(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack));
    CUDNN_CHECK(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                                         CUDNN_TYPE_INT64, n, uids));
    CUDNN_CHECK(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                         CUDNN_TYPE_VOID_PTR, n, ptrs));
    CUDNN_CHECK(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                         CUDNN_TYPE_VOID_PTR, 1, &workspace));
    CUDNN_CHECK(cudnnBackendFinalize(pack));
    if (p->chosen < 0) p->chosen = p->nplans > 1 ? sdpa_fastest(p, pack) : 0;
    CUDNN_CHECK(cudnnBackendExecute(ctx->dnn, p->plans[p->chosen], pack));
    CUDNN_CHECK(cudnnBackendDestroyDescriptor(pack));
}

/* ---- Q packing for grouped-query attention ---- */

/* dst[n, h, :] = qkv[n, q_col(h) :] (pack) or the reverse (unpack), 8 values per thread. */
template <class T>
static __global__ void q_pack_kernel(T *packed, T *qkv, int64_t N, int H, int per, int D,
                                     bool unpack)
{
    int64_t W = (int64_t)(H / per) * (per + 2) * D, pieces = N * H * (D / 8);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < pieces;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t n = i / (H * (D / 8));
        int h = (int)(i / (D / 8) % H), c = (int)(i % (D / 8)) * 8;
        uint4 *a = reinterpret_cast<uint4 *>(packed + (n * H + h) * D + c);
        int64_t col = ((int64_t)(h / per) * (per + 2) + h % per) * D + c;
        uint4 *b = reinterpret_cast<uint4 *>(qkv + n * W + col);
        if (unpack) {
            *b = *a;
        } else {
            *a = *b;
        }
    }
}

template <class T>
static void q_pack(T *packed, T *qkv, int64_t N, struct attention_shape s, bool unpack)
{
    int64_t pieces = N * s.heads * (s.head_dim / 8);
    q_pack_kernel<T><<<cuda_blocks(pieces, 256), 256, 0, cuda_ctx()->stream>>>(
        packed, qkv, N, s.heads, s.heads / s.groups, s.head_dim, unpack);
    CUDA_CHECK_LAUNCH("q_pack_kernel");
}

static __global__ void fill_int_kernel(int32_t *v, int n, int32_t value)
{
    if ((int)threadIdx.x < n) v[threadIdx.x] = value;
}

/* ---- the ops ---- */

static struct sdpa_dims sdpa_dims_of(struct attention_shape s, enum dtype dt, float dropout_p,
                                     bool backward)
{
    struct sdpa_dims m;
    memset(&m, 0, sizeof m); /* the struct is compared bytewise as a cache key */
    m.B = s.batch, m.T = s.seq, m.H = s.heads, m.G = s.groups, m.D = s.head_dim;
    m.dt = dt;
    m.dropout_p = dropout_p;
    m.q_packed = s.heads != s.groups;
    m.backward = backward;
    m.pad_workaround = backward && s.seq % 128 != 0 && cudnnGetVersion() <= 91500;
    return m;
}

static void check_attention(const char *op, struct attention_shape s, struct dropout_key drop,
                            struct tensor qkv)
{
    if (!(drop.p >= 0.0f && drop.p < 1.0f)) BUG("%s: dropout probability %g", op, (double)drop.p);
    if (s.head_dim % 8 != 0 || s.head_dim > 256)
        die_user("attention head dimension %d: the CUDA backend's fused attention needs a multiple "
                 "of 8 up to 256; change --kv-channels or the hidden size and heads", s.head_dim);
    if (s.groups <= 0 || s.heads % s.groups != 0) BUG("%s: heads %% groups != 0", op);
    if (!cuda_aligned16(qkv.data)) BUG("%s: qkv must be 16-byte aligned", op);
}

/* The (uid, pointer) pairs of one execution. */
struct sdpa_pack {
    int64_t uids[24];
    void *ptrs[24];
    int n;
};

static void pack_add(struct sdpa_pack *pk, int64_t uid, void *ptr)
{
    CHECK(pk->n < 24);
    pk->uids[pk->n] = uid;
    pk->ptrs[pk->n++] = ptr;
}

/* The by-value scales of a dropout graph: host memory that must live until the execution. */
struct sdpa_dropout {
    float scale, scale_inv; /* 1 / (1 - p) and 1 - p */
};
/* Device scratch for the seed and offset tensors (two int64, 16-byte aligned each). */
enum { SDPA_SEED_BYTES = 256 };

/* The cuDNN Philox seed of a dropout site at dst[0] and its offset 0 at dst[2] (each tensor 16-byte
 * aligned, as the graph declares): the key and the rank's first head mixed into 64 bits by
 * kernels/rng.h's mixer, so each site, step, micro batch and tensor-parallel rank draws its own
 * mask, and the forward and backward of one site the same. On the device, so a key whose stream
 * is in device memory works too. */
static __global__ void philox_seed_kernel(int64_t *dst, struct dropout_key drop, uint32_t head_offset)
{
    const struct dropout_key d = dropout_resolve(drop);
    const uint64_t stream = rng_mix64(d.stream) ^ (uint64_t)head_offset;
    dst[0] = (int64_t)rng_bits(d.seed, stream, d.offset);
    dst[2] = 0;
}

/* Adds a dropout graph's entries to pk: the scales from d (filled here) and the seed and offset,
 * written in stream order into dev (SDPA_SEED_BYTES of scratch) without a host sync. */
static void pack_dropout(struct sdpa_pack *pk, struct sdpa_dropout *d, struct dropout_key drop,
                         struct attention_shape s, char *dev, bool backward)
{
    int64_t *seed = (int64_t *)dev;
    d->scale = 1.0f / (1.0f - drop.p);
    d->scale_inv = 1.0f - drop.p;
    philox_seed_kernel<<<1, 1, 0, cuda_ctx()->stream>>>(seed, drop, (uint32_t)s.head_offset);
    CUDA_CHECK_LAUNCH("philox_seed_kernel");
    pack_add(pk, UID_SEED, seed);
    pack_add(pk, UID_OFFSET, seed + 2);
    pack_add(pk, UID_DROP_SCALE, &d->scale);
    if (backward) pack_add(pk, UID_DROP_SCALE_INV, &d->scale_inv);
}

/* The forward with its arguments checked, T the 16-bit type of qkv and out. */
template <class T>
static void sdpa_forward(struct tensor out, struct tensor probs, struct tensor qkv,
                         struct attention_shape s, struct dropout_key drop)
{
    int64_t N = s.batch * s.seq;
    if (N == 0) return;
    struct sdpa_dims m = sdpa_dims_of(s, lp_dtype<T>::value, drop.p, false);
    struct cuda_sdpa_plan *p = sdpa_plan(&m);
    size_t ws = cuda_align256((size_t)p->workspace);
    size_t qbytes = m.q_packed ? cuda_align256((size_t)N * s.heads * s.head_dim * sizeof(T)) : 0;
    char *scratch = (char *)cuda_scratch(ws + qbytes + SDPA_SEED_BYTES + 256);
    T *base = (T *)qkv.data, *q = base;
    if (m.q_packed) {
        q = (T *)(scratch + ws);
        q_pack<T>(q, base, N, s, false);
    }
    int per = s.heads / s.groups;
    float scale = (float)(1.0 / sqrt((double)s.head_dim)), neg_inf = -INFINITY;
    struct sdpa_pack pk;
    struct sdpa_dropout d;
    pk.n = 0;
    pack_add(&pk, UID_Q, q);
    pack_add(&pk, UID_K, base + (int64_t)per * s.head_dim);
    pack_add(&pk, UID_V, base + (int64_t)(per + 1) * s.head_dim);
    pack_add(&pk, UID_O, out.data);
    pack_add(&pk, UID_STATS, probs.data);
    pack_add(&pk, UID_SCALE, &scale);
    pack_add(&pk, UID_NEG_INF, &neg_inf);
    if (m.dropout_p > 0.0f) pack_dropout(&pk, &d, drop, s, scratch + ws + qbytes, false);
    sdpa_execute(p, pk.uids, pk.ptrs, pk.n, scratch);
}

void cuda_attention_forward(struct tensor out, struct tensor probs, struct tensor qkv,
                            struct attention_shape s, struct dropout_key drop)
{
    const char *op = "cuda_attention_forward";
    enum dtype dt = cuda_need_lp(op, "out", out);
    cuda_need(op, "probs", probs, DT_F32);
    cuda_need(op, "qkv", qkv, dt);
    check_attention(op, s, drop, qkv);
    if (tensor_numel(probs) != s.batch * s.heads * s.seq)
        BUG("%s: probs must hold the log-sum-exp [B, n, T] on the CUDA backend", op);
    CUDA_LP_DISPATCH(dt, sdpa_forward<T>(out, probs, qkv, s, drop));
}

/* The backward with its arguments checked, T the 16-bit type of dqkv, dout, qkv and out. */
template <class T>
static void sdpa_backward(struct tensor dqkv, struct tensor dout, struct tensor qkv,
                          struct tensor probs, struct tensor out, struct attention_shape s,
                          struct dropout_key drop)
{
    int64_t N = s.batch * s.seq, H = s.heads, D = s.head_dim;
    if (N == 0) return;
    struct sdpa_dims m = sdpa_dims_of(s, lp_dtype<T>::value, drop.p, true);
    struct cuda_sdpa_plan *p = sdpa_plan(&m);
    size_t ws = cuda_align256((size_t)p->workspace);
    size_t sum_bytes = cuda_align256((size_t)s.batch * H * s.seq * sizeof(float));
    size_t acc_bytes = cuda_align256((size_t)N * H * D * sizeof(float));
    size_t qbytes = m.q_packed ? cuda_align256((size_t)N * H * D * sizeof(T)) : 0;
    size_t seq_bytes = cuda_align256((size_t)s.batch * sizeof(int32_t));
    char *scratch = (char *)cuda_scratch(ws + sum_bytes + acc_bytes + 2 * qbytes + 2 * seq_bytes +
                                         SDPA_SEED_BYTES + 256);
    char *at = scratch + ws;
    float *softmax_sum = (float *)at;
    float *dq_accum = (float *)(at += sum_bytes);
    T *q = (T *)qkv.data, *dq = (T *)dqkv.data;
    at += acc_bytes;
    if (m.q_packed) {
        q = (T *)at;
        dq = (T *)(at + qbytes);
        q_pack<T>(q, (T *)qkv.data, N, s, false);
        at += 2 * qbytes;
    }
    int32_t *seq_q = (int32_t *)at, *seq_kv = (int32_t *)(at + seq_bytes);
    char *seeds = at + 2 * seq_bytes;
    int per = s.heads / s.groups;
    T *x = (T *)qkv.data, *dx = (T *)dqkv.data;
    float scale = (float)(1.0 / sqrt((double)D)), neg_inf = -INFINITY, one = 1.0f;
    struct sdpa_pack pk;
    struct sdpa_dropout d;
    pk.n = 0;
    pack_add(&pk, UID_Q, q);
    pack_add(&pk, UID_K, x + per * D);
    pack_add(&pk, UID_V, x + (per + 1) * D);
    pack_add(&pk, UID_O, out.data);
    pack_add(&pk, UID_DO, dout.data);
    pack_add(&pk, UID_STATS, probs.data);
    pack_add(&pk, UID_DQ, dq);
    pack_add(&pk, UID_DK, dx + per * D);
    pack_add(&pk, UID_DV, dx + (per + 1) * D);
    pack_add(&pk, UID_SCALE, &scale);
    pack_add(&pk, UID_NEG_INF, &neg_inf);
    pack_add(&pk, UID_SOFTMAX_SUM, softmax_sum);
    pack_add(&pk, UID_DQ_ACCUM, dq_accum);
    if (m.dropout_p > 0.0f) {
        pack_dropout(&pk, &d, drop, s, seeds, true);
    } else {
        pack_add(&pk, UID_ONE, &one);
    }
    if (m.pad_workaround) {
        CHECK(s.batch <= 1024);
        fill_int_kernel<<<1, 1024, 0, cuda_ctx()->stream>>>(seq_q, (int)s.batch, (int32_t)s.seq);
        fill_int_kernel<<<1, 1024, 0, cuda_ctx()->stream>>>(seq_kv, (int)s.batch, (int32_t)s.seq);
        CUDA_CHECK_LAUNCH("fill_int_kernel");
        pack_add(&pk, UID_SEQ_Q, seq_q);
        pack_add(&pk, UID_SEQ_KV, seq_kv);
        pack_add(&pk, UID_NEG_INF_PAD, &neg_inf);
    }
    sdpa_execute(p, pk.uids, pk.ptrs, pk.n, scratch);
    if (m.q_packed) q_pack<T>(dq, dx, N, s, true);
}

void cuda_attention_backward(struct tensor dqkv, struct tensor db, struct tensor dout,
                             struct tensor qkv, struct tensor probs, struct tensor out,
                             struct attention_shape s, struct dropout_key drop)
{
    const char *op = "cuda_attention_backward";
    enum dtype dt = cuda_need_lp(op, "dqkv", dqkv);
    cuda_need(op, "dout", dout, dt);
    cuda_need(op, "qkv", qkv, dt);
    cuda_need(op, "probs", probs, DT_F32);
    cuda_need(op, "out", out, dt);
    cuda_maybe(op, "db", db, DT_F32);
    check_attention(op, s, drop, qkv);
    if (!cuda_aligned16(dqkv.data)) BUG("%s: dqkv must be 16-byte aligned", op);
    float *dbp = tensor_present(db) ? (float *)db.data : NULL;
    bool summed = false;
    if (flash_backward_fits(s, dt, drop.p, dqkv.data, qkv.data, dout.data, out.data, probs.data)) {
        if (s.batch * s.seq > 0)
            summed = flash_backward(dqkv.data, dbp, dout.data, qkv.data, (const float *)probs.data,
                                    out.data, s);
    } else {
        if (cuda_ctx()->deterministic) /* train.c checks the model's shape before the first step */
            BUG("%s: --deterministic-mode, and the attention backward of our own does not take "
                "this shape", op);
        CUDA_LP_DISPATCH(dt, sdpa_backward<T>(dqkv, dout, qkv, probs, out, s, drop));
    }
    if (dbp && !summed) /* the column sums by the linear layer's pass */
        cuda_linear_backward(tensor_none(), tensor_none(), db, dqkv, tensor_none(), tensor_none());
}

void cuda_set_deterministic(void) { cuda_ctx()->deterministic = true; }

bool cuda_attention_force_backward(enum cuda_attention_backward which)
{
    struct cuda_context *ctx = cuda_ctx();
    if (!ctx->hopper_gemm) return false;
    ctx->flash_backward = which;
    return true;
}

bool cuda_attention_flash_backward_applies(struct attention_shape s, enum dtype dt, float dropout_p)
{
    return flash_backward_takes(s, dt, dropout_p);
}

/* Declared in cuda_ops.h: cuda_attention_dry_run for the 16-bit type dt (DT_BF16 or DT_F16) and
 * attention dropout probability dropout_p (0: the graphs without RNG ops). */
extern "C" bool cuda_attention_dry_run_dtype(struct attention_shape s, enum dtype dt,
                                             float dropout_p, char *err, size_t errlen)
{
    if (dt != DT_BF16 && dt != DT_F16) {
        snprintf(err, errlen, "attention on %s: the fused attention takes bf16 or fp16",
                 dtype_name(dt));
        return false;
    }
    if (!(dropout_p >= 0.0f && dropout_p < 1.0f)) {
        snprintf(err, errlen, "attention dropout %g: not in [0, 1)", (double)dropout_p);
        return false;
    }
    for (int backward = 0; backward < 2; backward++) {
        struct sdpa_dims m = sdpa_dims_of(s, dt, dropout_p, backward);
        m.pad_workaround = backward && s.seq % 128 != 0; /* check the workaround graph too */
        struct graph_builder *gb = (struct graph_builder *)xcalloc(1, sizeof *gb);
        bool ok = gb_graph(gb, &m) != NULL;
        if (!ok)
            snprintf(err, errlen, "%s graph: %s", backward ? "backward" : "forward", gb->err);
        gb_destroy(gb);
        if (!ok) return false;
    }
    return true;
}

bool cuda_attention_dry_run(struct attention_shape s, char *err, size_t errlen)
{
    return cuda_attention_dry_run_dtype(s, DT_BF16, 0.0f, err, errlen);
}
