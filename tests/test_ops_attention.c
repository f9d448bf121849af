/* Tests of rotary embeddings and attention on the CPU backend (grouped-query attention, causal
 * masking, attention dropout) against double-precision references and finite differences. */
#include "tests/ops_reference.h"

static int64_t ref_q_col(int n, int g, int d, int h) { return ((h / (n / g)) * (n / g + 2) + h % (n / g)) * (int64_t)d; }
static int64_t ref_k_col(int n, int g, int d, int j) { return (j * (n / g + 2) + n / g) * (int64_t)d; }

/* in = {qkv}, ids = {positions}, dim = {N, n, g, d}, p = {rotary_dim, base}; y = rotated qkv */
static void ref_rope(struct ref *c)
{
    int64_t N = c->dim[0];
    int n = (int)c->dim[1], g = (int)c->dim[2], d = (int)c->dim[3], rd = (int)c->p[0], half = rd / 2;
    int64_t W = (int64_t)g * (n / g + 2) * d;
    memcpy(c->y, c->in[0], (size_t)(N * W) * sizeof(double));
    for (int64_t r = 0; r < N; r++)
        for (int head = 0; head < n + g; head++) { /* the n query heads, then the g key heads */
            int64_t col = head < n ? ref_q_col(n, g, d, head) : ref_k_col(n, g, d, head - n);
            const double *x = c->in[0] + r * W + col;
            double *y = c->y + r * W + col;
            for (int i = 0; i < half; i++) {
                double angle = c->ids[0][r] * pow(c->p[1], -2.0 * i / rd);
                y[i] = x[i] * cos(angle) - x[i + half] * sin(angle);
                y[i + half] = x[i + half] * cos(angle) + x[i] * sin(angle);
            }
        }
}

static void test_rope_rotates_first_rotary_dims_of_q_and_k_only(void **state)
{
    (void)state;
    /* GQA n=4, g=2, d=8 with --rotary-percent 0.5: rotary_dim 4 */
    struct attention_shape s = {.batch = 2, .seq = 3, .heads = 4, .groups = 2, .head_dim = 8};
    int rd = 4;
    float base = 10000.0f;
    int64_t N = s.batch * s.seq, W = 2 * (2 + 2) * 8;
    int32_t positions[6] = {0, 1, 2, 7, 8, 9};
    float *x = frand(N * W, 91), *y = malloc((size_t)(N * W) * sizeof(float)), *r = frand(N * W, 92);
    memcpy(y, x, (size_t)(N * W) * sizeof(float));
    op_rope_forward(f2(y, N, W), i1(positions, N), s, rd, base);
    struct ref c = new_ref(ref_rope, N * W);
    c.in[0] = to_double(x, N * W), c.ids[0] = positions;
    c.dim[0] = N, c.dim[1] = 4, c.dim[2] = 2, c.dim[3] = 8, c.p[0] = rd, c.p[1] = base;
    c.r = to_double(r, N * W);
    check_forward(&c, y, "rope");
    /* v heads and the dims past rotary_dim are left bit for bit */
    for (int64_t row = 0; row < N; row++)
        for (int64_t col = 0; col < W; col++) {
            int64_t in_head = col % 8, head_slot = col / 8 % 4; /* slot 3 of each group is v */
            if (head_slot == 3 || in_head >= rd) assert_true(x[row * W + col] == y[row * W + col]);
        }
    /* the rotation moved rows with a nonzero position */
    assert_memory_not_equal(x + W, y + W, (size_t)W * sizeof(float));
    float *dqkv = malloc((size_t)(N * W) * sizeof(float));
    memcpy(dqkv, r, (size_t)(N * W) * sizeof(float));
    op_rope_backward(f2(dqkv, N, W), i1(positions, N), s, rd, base);
    check_grad(&c, 0, N * W, dqkv, 0.0, "rope backward");
    free_ref(&c);
    free(x), free(y), free(r), free(dqkv);
}

/* P[b,h,t,u] = softmax_u(q.k / sqrt d) over u <= t, 0 above the diagonal; dim = {B, T, n, g, d} */
static void ref_attention_probs(const struct ref *c, double *P)
{
    int64_t B = c->dim[0], T = c->dim[1];
    int n = (int)c->dim[2], g = (int)c->dim[3], d = (int)c->dim[4];
    int64_t W = (int64_t)g * (n / g + 2) * d;
    const double *x = c->in[0];
    for (int64_t b = 0; b < B; b++)
        for (int h = 0; h < n; h++)
            for (int64_t t = 0; t < T; t++) {
                double *row = P + ((b * n + h) * T + t) * T, mx = -INFINITY, sum = 0.0;
                const double *q = x + (b * T + t) * W + ref_q_col(n, g, d, h);
                for (int64_t u = 0; u < T; u++) {
                    const double *k = x + (b * T + u) * W + ref_k_col(n, g, d, h / (n / g));
                    double sc = 0.0;
                    for (int i = 0; i < d; i++) sc += q[i] * k[i];
                    row[u] = sc / sqrt((double)d);
                    if (u <= t && row[u] > mx) mx = row[u];
                }
                for (int64_t u = 0; u < T; u++) {
                    row[u] = u <= t ? exp(row[u] - mx) : 0.0;
                    sum += row[u];
                }
                for (int64_t u = 0; u < T; u++) row[u] /= sum;
            }
}

/* out[b*T+t, h*d+i] = sum_u P * mask * v[u, i], mask counter ((b*n + h)*T + t)*T + u */
static void ref_attention(struct ref *c)
{
    int64_t B = c->dim[0], T = c->dim[1];
    int n = (int)c->dim[2], g = (int)c->dim[3], d = (int)c->dim[4];
    int64_t W = (int64_t)g * (n / g + 2) * d;
    double *P = malloc((size_t)(B * n * T * T) * sizeof(double));
    ref_attention_probs(c, P);
    for (int64_t b = 0; b < B; b++)
        for (int h = 0; h < n; h++)
            for (int64_t t = 0; t < T; t++)
                for (int i = 0; i < d; i++) {
                    double s = 0.0;
                    for (int64_t u = 0; u <= t; u++) {
                        int64_t e = ((b * n + h) * T + t) * T + u;
                        const double *v = c->in[0] + (b * T + u) * W + ref_k_col(n, g, d, h / (n / g)) + d;
                        s += P[e] * ref_mask(c->drop, (uint64_t)e) * v[i];
                    }
                    c->y[(b * T + t) * n * d + h * d + i] = s;
                }
    free(P);
}

/* GQA attention (n=4 query heads on g=2 key/value heads) at one dropout probability. */
static void check_attention(float p)
{
    struct attention_shape s = {.batch = 2, .seq = 5, .heads = 4, .groups = 2, .head_dim = 4};
    int64_t B = 2, T = 5, n = 4, d = 4, N = B * T, W = 2 * (2 + 2) * 4;
    struct dropout_key drop = dropout(p, 7, 1000);
    float *qkv = frand(N * W, 101), *r = frand(N * n * d, 102);
    for (int64_t i = 0; i < N * W; i++) qkv[i] *= 2.0f; /* peaked enough softmax rows */
    float *out = ffill(N * n * d, NAN), *probs = ffill(B * n * T * T, NAN), *dqkv = ffill(N * W, 123.0f);
    int64_t pshape[4] = {B, n, T, T};
    struct tensor tprobs = tensor_make(probs, DT_F32, DEV_CPU, 4, pshape);
    op_attention_forward(f2(out, N, n * d), tprobs, f2(qkv, N, W), s, drop);
    struct ref c = new_ref(ref_attention, N * n * d);
    c.in[0] = to_double(qkv, N * W), c.drop = drop, c.r = to_double(r, N * n * d);
    c.dim[0] = B, c.dim[1] = T, c.dim[2] = n, c.dim[3] = 2, c.dim[4] = d;
    check_forward(&c, out, p > 0 ? "attention out with dropout" : "attention out");
    /* probs hold P before dropout, exactly zero above the diagonal */
    double *P = malloc((size_t)(B * n * T * T) * sizeof(double));
    ref_attention_probs(&c, P);
    assert_true(max_rel_err(probs, P, B * n * T * T, 0.0) < FWD_TOL);
    for (int64_t row = 0; row < B * n * T; row++)
        for (int64_t u = row % T + 1; u < T; u++) assert_true(probs[row * T + u] == 0.0f);
    op_attention_backward(f2(dqkv, N, W), tensor_none(), f2(r, N, n * d), f2(qkv, N, W), tprobs,
                          f2(out, N, n * d), s, drop);
    check_grad(&c, 0, N * W, dqkv, 0.0, p > 0 ? "attention dqkv with dropout" : "attention dqkv");
    free_ref(&c);
    free(qkv), free(r), free(out), free(probs), free(dqkv), free(P);
}

static void test_attention_gqa_matches_reference_and_finite_differences(void **state)
{
    (void)state;
    check_attention(0.0f);
}

static void test_attention_dropout_matches_reference_and_finite_differences(void **state)
{
    (void)state;
    check_attention(0.3f);
}

/* ---- bias-dropout-add and dropout masks ---- */

/* y = (x + b) * mask + residual; in = {x, b, residual}, dim = {N, C} */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rope_rotates_first_rotary_dims_of_q_and_k_only),
        cmocka_unit_test(test_attention_gqa_matches_reference_and_finite_differences),
        cmocka_unit_test(test_attention_dropout_matches_reference_and_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
