/* Tests of the normalisations on the CPU backend: LayerNorm and RMSNorm against a naive
 * double-precision reference and their backwards against central finite differences of
 * L = sum(y * r) (also with the output gradient given by rows), and the fused forms a pre-norm
 * layer's residual stream uses against the ops they fuse. */

#include "tests/ops_reference.h"

/* in = {x, w, b}, dim = {N, C}, p[0] = eps; rms selects RMSNorm (no mean, no bias) */
static void ref_norm(struct ref *c, int rms)
{
    int64_t N = c->dim[0], C = c->dim[1];
    const double *x = c->in[0], *w = c->in[1], *b = c->in[2];
    for (int64_t n = 0; n < N; n++) {
        double mu = 0.0, var = 0.0;
        if (!rms) {
            for (int64_t i = 0; i < C; i++) mu += x[n * C + i];
            mu /= (double)C;
        }
        for (int64_t i = 0; i < C; i++) var += (x[n * C + i] - mu) * (x[n * C + i] - mu);
        double rstd = 1.0 / sqrt(var / (double)C + c->p[0]);
        for (int64_t i = 0; i < C; i++)
            c->y[n * C + i] = (x[n * C + i] - mu) * rstd * w[i] + (b ? b[i] : 0.0);
    }
}
static void ref_layernorm(struct ref *c) { ref_norm(c, 0); }
static void ref_rmsnorm(struct ref *c) { ref_norm(c, 1); }

static void test_layernorm_matches_reference_and_finite_differences(void **state)
{
    (void)state;
    int64_t N = 9, C = 37;
    float eps = 1e-5f;
    float *x = frand(N * C, 51), *w = frand(C, 52), *b = frand(C, 53), *r = frand(N * C, 54);
    for (int64_t i = 0; i < N * C; i++) x[i] = 3.0f + 2.0f * x[i]; /* a mean far from zero */
    float *y = ffill(N * C, NAN), *mean = ffill(N, NAN), *rstd = ffill(N, NAN);
    op_layernorm_forward(f2(y, N, C), f1(mean, N), f1(rstd, N), f2(x, N, C), f1(w, C), f1(b, C), eps);
    struct ref c = new_ref(ref_layernorm, N * C);
    c.in[0] = to_double(x, N * C), c.in[1] = to_double(w, C), c.in[2] = to_double(b, C);
    c.dim[0] = N, c.dim[1] = C, c.p[0] = eps, c.r = to_double(r, N * C);
    check_forward(&c, y, "layernorm y");
    for (int64_t n = 0; n < N; n++) {
        double mu = 0.0, var = 0.0;
        for (int64_t i = 0; i < C; i++) mu += c.in[0][n * C + i] / (double)C;
        for (int64_t i = 0; i < C; i++) var += pow(c.in[0][n * C + i] - mu, 2) / (double)C;
        assert_true(fabs(mean[n] - mu) <= 1e-6 * fabs(mu));
        assert_true(fabs(rstd[n] - 1.0 / sqrt(var + eps)) <= 1e-6 / sqrt(var + eps));
    }
    float *dx = ffill(N * C, 123.0f), *dw = ffill(C, 1.0f), *db = ffill(C, 1.0f);
    op_layernorm_backward(f2(dx, N, C), f1(dw, C), f1(db, C), f2(r, N, C), f2(x, N, C), f1(w, C),
                          f1(mean, N), f1(rstd, N), tensor_none());
    check_grad(&c, 0, N * C, dx, 0.0, "layernorm dx");
    check_grad(&c, 1, C, dw, 1.0, "layernorm dw");
    check_grad(&c, 2, C, db, 1.0, "layernorm db");
    /* the output gradient given by rows: diag(s) r, the loss's weights scaled the same way */
    float *s = frand(N, 55);
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < C; i++) c.r[n * C + i] = (double)s[n] * r[n * C + i];
    float *dx2 = ffill(N * C, 123.0f), *dw2 = ffill(C, 1.0f), *db2 = ffill(C, 1.0f);
    op_layernorm_backward(f2(dx2, N, C), f1(dw2, C), f1(db2, C), f2(r, N, C), f2(x, N, C), f1(w, C),
                          f1(mean, N), f1(rstd, N), f1(s, N));
    check_grad(&c, 0, N * C, dx2, 0.0, "layernorm dx, dy's rows scaled");
    check_grad(&c, 1, C, dw2, 1.0, "layernorm dw, dy's rows scaled");
    check_grad(&c, 2, C, db2, 1.0, "layernorm db, dy's rows scaled");
    free_ref(&c);
    free(x), free(w), free(b), free(r), free(y), free(mean), free(rstd), free(dx), free(dw), free(db);
    free(s), free(dx2), free(dw2), free(db2);
}

static void test_rmsnorm_matches_reference_and_finite_differences(void **state)
{
    (void)state;
    int64_t N = 7, C = 41;
    float eps = 1e-6f;
    float *x = frand(N * C, 61), *w = frand(C, 62), *r = frand(N * C, 63);
    float *y = ffill(N * C, NAN), *rstd = ffill(N, NAN);
    op_rmsnorm_forward(f2(y, N, C), f1(rstd, N), f2(x, N, C), f1(w, C), eps);
    struct ref c = new_ref(ref_rmsnorm, N * C);
    c.in[0] = to_double(x, N * C), c.in[1] = to_double(w, C);
    c.dim[0] = N, c.dim[1] = C, c.p[0] = eps, c.r = to_double(r, N * C);
    check_forward(&c, y, "rmsnorm y");
    float *dx = ffill(N * C, 123.0f), *dw = ffill(C, 1.0f);
    op_rmsnorm_backward(f2(dx, N, C), f1(dw, C), f2(r, N, C), f2(x, N, C), f1(w, C), f1(rstd, N),
                        tensor_none());
    check_grad(&c, 0, N * C, dx, 0.0, "rmsnorm dx");
    check_grad(&c, 1, C, dw, 1.0, "rmsnorm dw");
    /* the output gradient given by rows, as in the layernorm test */
    float *s = frand(N, 64);
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < C; i++) c.r[n * C + i] = (double)s[n] * r[n * C + i];
    float *dx2 = ffill(N * C, 123.0f), *dw2 = ffill(C, 1.0f);
    op_rmsnorm_backward(f2(dx2, N, C), f1(dw2, C), f2(r, N, C), f2(x, N, C), f1(w, C), f1(rstd, N),
                        f1(s, N));
    check_grad(&c, 0, N * C, dx2, 0.0, "rmsnorm dx, dy's rows scaled");
    check_grad(&c, 1, C, dw2, 1.0, "rmsnorm dw, dy's rows scaled");
    free_ref(&c);
    free(x), free(w), free(r), free(y), free(rstd), free(dx), free(dw);
    free(s), free(dx2), free(dw2);
}

/* ---- fused with the residual stream ---- */

/* The fused forwards are the bias-dropout-add and the norm in turn on this backend: the same bits,
 * also with mid written over the residual as the layer does. */
static void test_bias_dropout_add_norm_equals_the_two_ops(void **state)
{
    (void)state;
    int64_t N = 6, C = 37;
    struct dropout_key drop = dropout(0.3f, 7, 90);
    float *x = frand(N * C, 161), *b = frand(C, 162), *res = frand(N * C, 163), *w = frand(C, 164);
    float *nb = frand(C, 165);
    for (int rms = 0; rms < 2; rms++) {
        float *mid = ffill(N * C, NAN), *y = ffill(N * C, NAN), *mean = ffill(N, NAN), *rstd = ffill(N, NAN);
        float *mid2 = ffill(N * C, NAN), *y2 = ffill(N * C, NAN), *mean2 = ffill(N, NAN), *rstd2 = ffill(N, NAN);
        op_bias_dropout_add_forward(f2(mid2, N, C), f2(x, N, C), f1(b, C), f2(res, N, C), drop);
        if (rms) {
            op_rmsnorm_forward(f2(y2, N, C), f1(rstd2, N), f2(mid2, N, C), f1(w, C), 1e-5f);
            memcpy(mid, res, (size_t)(N * C) * sizeof(float)); /* mid aliases the residual */
            op_bias_dropout_add_rmsnorm_forward(f2(mid, N, C), f2(y, N, C), f1(rstd, N), f2(x, N, C), f1(b, C),
                                                f2(mid, N, C), drop, f1(w, C), 1e-5f);
        } else {
            op_layernorm_forward(f2(y2, N, C), f1(mean2, N), f1(rstd2, N), f2(mid2, N, C), f1(w, C), f1(nb, C), 1e-5f);
            op_bias_dropout_add_layernorm_forward(f2(mid, N, C), f2(y, N, C), f1(mean, N), f1(rstd, N), f2(x, N, C),
                                                  f1(b, C), f2(res, N, C), drop, f1(w, C), f1(nb, C), 1e-5f);
            assert_memory_equal(mean, mean2, (size_t)N * sizeof(float));
        }
        assert_memory_equal(mid, mid2, (size_t)(N * C) * sizeof(float));
        assert_memory_equal(y, y2, (size_t)(N * C) * sizeof(float));
        assert_memory_equal(rstd, rstd2, (size_t)N * sizeof(float));
        free(mid), free(y), free(mean), free(rstd), free(mid2), free(y2), free(mean2), free(rstd2);
    }
    free(x), free(b), free(res), free(w), free(nb);
}

/* dx = norm' + dresidual as one op gives the bits of the norm backward followed by op_add, also
 * with dx written over dresidual; the parameter gradients are the norm backward's, and
 * dresidual_sum the bits of the dropout-free bias-dropout-add backward's bias gradient of
 * dresidual (taken before dx overwrites it). */
static void test_norm_backward_add_equals_backward_then_add(void **state)
{
    (void)state;
    int64_t N = 5, C = 29;
    float *x = frand(N * C, 171), *w = frand(C, 172), *dy = frand(N * C, 173), *dres = frand(N * C, 174);
    float *mean = ffill(N, NAN), *rstd = ffill(N, NAN), *y = ffill(N * C, NAN);
    op_layernorm_forward(f2(y, N, C), f1(mean, N), f1(rstd, N), f2(x, N, C), f1(w, C), tensor_none(), 1e-5f);
    for (int rms = 0; rms < 2; rms++) {
        float *dx = ffill(N * C, NAN), *dw = ffill(C, 1.0f), *db = ffill(C, 1.0f);
        float *dx2 = ffill(N * C, NAN), *dw2 = ffill(C, 1.0f), *db2 = ffill(C, 1.0f);
        float *rs = ffill(C, 0.5f), *rs2 = ffill(C, 0.5f), *rs3 = ffill(C, 0.5f);
        op_bias_dropout_add_backward(tensor_none(), f1(rs2, C), f2(dres, N, C), dropout(0.0f, 9, 0));
        float *inplace = malloc((size_t)(N * C) * sizeof(float));
        memcpy(inplace, dres, (size_t)(N * C) * sizeof(float));
        if (rms) {
            op_rmsnorm_backward(f2(dx2, N, C), f1(dw2, C), f2(dy, N, C), f2(x, N, C), f1(w, C),
                                f1(rstd, N), tensor_none());
            op_rmsnorm_backward_add(f2(dx, N, C), f1(dw, C), f2(dy, N, C), f2(x, N, C), f1(w, C), f1(rstd, N),
                                    f2(dres, N, C), f1(rs, C));
            op_rmsnorm_backward_add(f2(inplace, N, C), tensor_none(), f2(dy, N, C), f2(x, N, C), f1(w, C),
                                    f1(rstd, N), f2(inplace, N, C), f1(rs3, C));
        } else {
            op_layernorm_backward(f2(dx2, N, C), f1(dw2, C), f1(db2, C), f2(dy, N, C), f2(x, N, C), f1(w, C),
                                  f1(mean, N), f1(rstd, N), tensor_none());
            op_layernorm_backward_add(f2(dx, N, C), f1(dw, C), f1(db, C), f2(dy, N, C), f2(x, N, C), f1(w, C),
                                      f1(mean, N), f1(rstd, N), f2(dres, N, C), f1(rs, C));
            op_layernorm_backward_add(f2(inplace, N, C), tensor_none(), tensor_none(), f2(dy, N, C), f2(x, N, C),
                                      f1(w, C), f1(mean, N), f1(rstd, N), f2(inplace, N, C), f1(rs3, C));
        }
        op_add(f2(dx2, N, C), f2(dx2, N, C), f2(dres, N, C));
        assert_memory_equal(dx, dx2, (size_t)(N * C) * sizeof(float));
        assert_memory_equal(inplace, dx2, (size_t)(N * C) * sizeof(float));
        assert_memory_equal(dw, dw2, (size_t)C * sizeof(float));
        assert_memory_equal(db, db2, (size_t)C * sizeof(float));
        assert_memory_equal(rs, rs2, (size_t)C * sizeof(float));
        assert_memory_equal(rs3, rs2, (size_t)C * sizeof(float));
        free(dx), free(dw), free(db), free(dx2), free(dw2), free(db2), free(inplace);
        free(rs), free(rs2), free(rs3);
    }
    free(x), free(w), free(dy), free(dres), free(mean), free(rstd), free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm_matches_reference_and_finite_differences),
        cmocka_unit_test(test_rmsnorm_matches_reference_and_finite_differences),
        cmocka_unit_test(test_bias_dropout_add_norm_equals_the_two_ops),
        cmocka_unit_test(test_norm_backward_add_equals_backward_then_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
