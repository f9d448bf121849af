/* Tests of the op interface on the CPU backend: every forward against a naive double-precision
 * reference written here from ops.h, every backward against central finite differences of
 * L = sum(y * r) through that reference, plus dropout masks, gradient accumulation conventions,
 * thread-count independence and argument checking. */

#include "tests/ops_reference.h"

/* y[n,o] = sum_k x[n,k] w[o,k] + b[o]; in = {x, w, b}, dim = {N, K, O} */
static void ref_linear(struct ref *c)
{
    int64_t N = c->dim[0], K = c->dim[1], O = c->dim[2];
    const double *x = c->in[0], *w = c->in[1], *b = c->in[2];
    for (int64_t n = 0; n < N; n++) {
        for (int64_t o = 0; o < O; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t k = 0; k < K; k++) s += x[n * K + k] * w[o * K + k];
            c->y[n * O + o] = s;
        }
    }
}

static void test_linear_forward_matches_reference(void **state)
{
    (void)state;
    /* 70 x 300 x 140 crosses every block edge of the GEMM (64 rows, 128 columns, 256 deep) */
    int64_t N = 70, K = 300, O = 140;
    float *x = frand(N * K, 1), *w = frand(O * K, 2), *b = frand(O, 3), *y = ffill(N * O, NAN);
    struct ref c = new_ref(ref_linear, N * O);
    c.in[0] = to_double(x, N * K), c.in[1] = to_double(w, O * K), c.in[2] = to_double(b, O);
    c.dim[0] = N, c.dim[1] = K, c.dim[2] = O;
    op_linear_forward(f2(y, N, O), f2(x, N, K), f2(w, O, K), f1(b, O));
    check_forward(&c, y, "linear with bias");
    free(c.in[2]);
    c.in[2] = NULL;
    op_linear_forward(f2(y, N, O), f2(x, N, K), f2(w, O, K), tensor_none());
    check_forward(&c, y, "linear without bias");
    free_ref(&c);
    free(x), free(w), free(b), free(y);
}

static void test_linear_backward_matches_finite_differences(void **state)
{
    (void)state;
    int64_t N = 5, K = 7, O = 6;
    float *x = frand(N * K, 11), *w = frand(O * K, 12), *b = frand(O, 13), *r = frand(N * O, 14);
    /* dx is overwritten; dw and db accumulate onto the ones already there */
    float *dx = ffill(N * K, 123.0f), *dw = ffill(O * K, 1.0f), *db = ffill(O, 1.0f);
    op_linear_backward(f2(dx, N, K), f2(dw, O, K), f1(db, O), f2(r, N, O), f2(x, N, K), f2(w, O, K));
    struct ref c = new_ref(ref_linear, N * O);
    c.in[0] = to_double(x, N * K), c.in[1] = to_double(w, O * K), c.in[2] = to_double(b, O);
    c.dim[0] = N, c.dim[1] = K, c.dim[2] = O;
    c.r = to_double(r, N * O);
    check_grad(&c, 0, N * K, dx, 0.0, "linear dx");
    check_grad(&c, 1, O * K, dw, 1.0, "linear dw");
    check_grad(&c, 2, O, db, 1.0, "linear db");
    free_ref(&c);
    free(x), free(w), free(b), free(r), free(dx), free(dw), free(db);
}

/* The blocked GEMM in its two backward layouts, at sizes that cross every block edge. */
static void test_linear_backward_matches_reference_across_blocks(void **state)
{
    (void)state;
    int64_t N = 260, K = 150, O = 270;
    float *x = frand(N * K, 21), *w = frand(O * K, 22), *dy = frand(N * O, 23);
    float *dx = ffill(N * K, NAN), *dw = ffill(O * K, 1.0f);
    op_linear_backward(f2(dx, N, K), f2(dw, O, K), tensor_none(), f2(dy, N, O), f2(x, N, K),
                       f2(w, O, K));
    double *want_dx = calloc((size_t)(N * K), sizeof(double)), *want_dw = calloc((size_t)(O * K), sizeof(double));
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t k = 0; k < K; k++) {
                want_dx[n * K + k] += (double)dy[n * O + o] * w[o * K + k];
                want_dw[o * K + k] += (double)dy[n * O + o] * x[n * K + k];
            }
    assert_true(max_rel_err(dx, want_dx, N * K, 0.0) < FWD_TOL);
    assert_true(max_rel_err(dw, want_dw, O * K, 1.0) < FWD_TOL);
    free(x), free(w), free(dy), free(dx), free(dw), free(want_dx), free(want_dw);
}

/* Backward ops overwrite dx and add to dw/db (Megatron's main_grad); absent grads are skipped. */
static void test_linear_backward_overwrites_dx_and_accumulates_dw(void **state)
{
    (void)state;
    int64_t N = 9, K = 12, O = 10;
    float *x = frand(N * K, 31), *w = frand(O * K, 32), *dy = frand(N * O, 33);
    float *dx1 = ffill(N * K, 0.0f), *dx2 = ffill(N * K, -7.0f);
    float *dw0 = ffill(O * K, 0.0f), *dw1 = ffill(O * K, 1.0f), *db0 = ffill(O, 0.0f), *db1 = ffill(O, 1.0f);
    op_linear_backward(f2(dx1, N, K), f2(dw0, O, K), f1(db0, O), f2(dy, N, O), f2(x, N, K), f2(w, O, K));
    op_linear_backward(f2(dx2, N, K), f2(dw1, O, K), f1(db1, O), f2(dy, N, O), f2(x, N, K), f2(w, O, K));
    assert_memory_equal(dx1, dx2, (size_t)(N * K) * sizeof(float));
    for (int64_t i = 0; i < O * K; i++) assert_true(dw1[i] == 1.0f + dw0[i]);
    for (int64_t i = 0; i < O; i++) assert_true(db1[i] == 1.0f + db0[i]);
    /* only dw: x is needed, w and dx are not */
    float *dw2 = ffill(O * K, 0.0f);
    op_linear_backward(tensor_none(), f2(dw2, O, K), tensor_none(), f2(dy, N, O), f2(x, N, K), tensor_none());
    assert_memory_equal(dw0, dw2, (size_t)(O * K) * sizeof(float));
    free(x), free(w), free(dy), free(dx1), free(dx2), free(dw0), free(dw1), free(db0), free(db1), free(dw2);
}

/* The weight gradient alone: written whole (what was there never read, NaN included) or added,
 * the same bits as op_linear_backward's dw into zeros and into what is there. */
static void test_linear_weight_grad_writes_or_adds(void **state)
{
    (void)state;
    int64_t N = 37, K = 70, O = 45; /* partial blocks of the blocked GEMM */
    float *x = frand(N * K, 51), *dy = frand(N * O, 52);
    float *want = ffill(O * K, 0.0f), *acc = frand(O * K, 53), *want_acc = malloc((size_t)(O * K) * sizeof(float));
    memcpy(want_acc, acc, (size_t)(O * K) * sizeof(float));
    op_linear_backward(tensor_none(), f2(want, O, K), tensor_none(), f2(dy, N, O), f2(x, N, K), tensor_none());
    op_linear_backward(tensor_none(), f2(want_acc, O, K), tensor_none(), f2(dy, N, O), f2(x, N, K), tensor_none());
    float *dw = ffill(O * K, NAN);
    op_linear_weight_grad(f2(dw, O, K), f2(dy, N, O), f2(x, N, K), false);
    assert_memory_equal(dw, want, (size_t)(O * K) * sizeof(float));
    op_linear_weight_grad(f2(acc, O, K), f2(dy, N, O), f2(x, N, K), true);
    assert_memory_equal(acc, want_acc, (size_t)(O * K) * sizeof(float));
    /* no rows: written means zero, added means unchanged */
    float *z = ffill(O * K, NAN), *keep = ffill(O * K, 3.0f);
    op_linear_weight_grad(f2(z, O, K), f2(dy, 0, O), f2(x, 0, K), false);
    op_linear_weight_grad(f2(keep, O, K), f2(dy, 0, O), f2(x, 0, K), true);
    for (int64_t i = 0; i < O * K; i++) assert_true(z[i] == 0.0f && keep[i] == 3.0f);
    free(x), free(dy), free(want), free(acc), free(want_acc), free(dw), free(z), free(keep);
}

static void test_zero_ranges_zeroes_exactly_the_ranges(void **state)
{
    (void)state;
    float *x = ffill(20, 5.0f);
    int64_t r[6] = {0, 2, 7, 1, 10, 10};
    op_zero_ranges(f1(x, 20), tensor_2d(r, DT_I64, DEV_CPU, 3, 2));
    for (int64_t i = 0; i < 20; i++) assert_true(x[i] == ((i < 2 || i == 7 || i >= 10) ? 0.0f : 5.0f));
    op_zero_ranges(f1(x, 20), tensor_2d(r, DT_I64, DEV_CPU, 0, 2)); /* none */
    assert_true(x[3] == 5.0f);
    free(x);
}

/* ---- embedding ---- */

/* y[n] = wte[tokens[n]] + wpe[positions[n]]; in = {wte, wpe}, ids = {tokens, positions}, dim = {N, H} */
static void ref_embedding(struct ref *c)
{
    int64_t N = c->dim[0], H = c->dim[1];
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < H; h++) {
            double v = c->in[0][c->ids[0][n] * H + h];
            if (c->in[1]) v += c->in[1][c->ids[1][n] * H + h];
            c->y[n * H + h] = v;
        }
}

static void test_embedding_forward_and_backward_match_reference(void **state)
{
    (void)state;
    int64_t N = 8, H = 6, V = 5, P = 10;
    int32_t tokens[8] = {3, 1, 3, 0, 4, 3, 1, 2}; /* repeated ids sum their gradients */
    int32_t positions[8] = {0, 1, 2, 3, 0, 1, 2, 9};
    float *wte = frand(V * H, 41), *wpe = frand(P * H, 42), *y = ffill(N * H, NAN), *r = frand(N * H, 43);
    struct ref c = new_ref(ref_embedding, N * H);
    c.in[0] = to_double(wte, V * H), c.in[1] = to_double(wpe, P * H);
    c.ids[0] = tokens, c.ids[1] = positions, c.dim[0] = N, c.dim[1] = H;
    c.r = to_double(r, N * H);
    op_embedding_forward(f2(y, N, H), i1(tokens, N), f2(wte, V, H), 0, f2(wpe, P, H), i1(positions, N));
    check_forward(&c, y, "embedding with positions");

    float *dwte = ffill(V * H, 1.0f), *dwpe = ffill(P * H, 1.0f);
    op_embedding_backward(f2(dwte, V, H), 0, f2(dwpe, P, H), f2(r, N, H), i1(tokens, N), i1(positions, N));
    check_grad(&c, 0, V * H, dwte, 1.0, "embedding dwte");
    check_grad(&c, 1, P * H, dwpe, 1.0, "embedding dwpe");

    /* whole sequences (two of 4) with positions 0 .. 3: summed by sequence, the scatter's sums */
    int32_t arange[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    float *by_scatter = ffill(P * H, 1.0f), *by_sequence = ffill(P * H, 1.0f);
    op_embedding_backward(tensor_none(), 0, f2(by_scatter, P, H), f2(r, N, H), tensor_none(),
                          i1(arange, N));
    op_position_embedding_backward(f2(by_sequence, P, H), f2(r, N, H), 4);
    assert_memory_equal(by_sequence, by_scatter, (size_t)(P * H) * sizeof(float));
    assert_true(by_sequence[0] != 1.0f && by_sequence[4 * H] == 1.0f); /* rows 4 .. P untouched */
    free(by_scatter), free(by_sequence);

    free(c.in[1]);
    c.in[1] = NULL;
    op_embedding_forward(f2(y, N, H), i1(tokens, N), f2(wte, V, H), 0, tensor_none(), tensor_none());
    check_forward(&c, y, "embedding without positions");
    free_ref(&c);
    free(wte), free(wpe), free(y), free(r), free(dwte), free(dwpe);
}

/* ---- activations ---- */

/* in = {x}, dim = {numel}, p[0] = 1 for the tanh approximation */
static void ref_gelu(struct ref *c)
{
    for (int64_t i = 0; i < c->dim[0]; i++) {
        double x = c->in[0][i];
        c->y[i] = c->p[0] != 0.0
                      ? 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)))
                      : 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    }
}

static void test_gelu_both_forms_match_reference_and_finite_differences(void **state)
{
    (void)state;
    int64_t N = 6, C = 20;
    float *x = frand(N * C, 71), *r = frand(N * C, 72), *y = ffill(N * C, NAN), *dx = ffill(N * C, NAN);
    for (int64_t i = 0; i < N * C; i++) x[i] *= 4.0f; /* reach both tails */
    for (int tanh_form = 0; tanh_form < 2; tanh_form++) {
        struct ref c = new_ref(ref_gelu, N * C);
        c.in[0] = to_double(x, N * C), c.dim[0] = N * C, c.p[0] = tanh_form, c.r = to_double(r, N * C);
        op_gelu_forward(f2(y, N, C), f2(x, N, C), tanh_form);
        check_forward(&c, y, tanh_form ? "gelu tanh" : "gelu erf");
        op_gelu_backward(f2(dx, N, C), f2(r, N, C), f2(x, N, C), tanh_form);
        check_grad(&c, 0, N * C, dx, 0.0, tanh_form ? "gelu tanh dx" : "gelu erf dx");
        free_ref(&c);
    }
    /* the two forms differ (by up to ~1e-3 near |x| ~ 2), so the flag is honoured */
    float *y2 = ffill(N * C, NAN);
    op_gelu_forward(f2(y2, N, C), f2(x, N, C), false);
    assert_memory_not_equal(y, y2, (size_t)(N * C) * sizeof(float));
    free(x), free(r), free(y), free(dx), free(y2);
}

/* y[n,o] = sum_k gelu(pre[n,k] + bias[k]) w[o,k]: linear_fc2 on the GeLU of linear_fc1's output,
 * with fc1's bias as a variable so that its gradient (the column sums of dpre) is checked too;
 * in = {pre, w, bias}, dim = {N, K, O}, p[0] = 1 for the tanh form */
static void ref_gelu_linear(struct ref *c)
{
    int64_t N = c->dim[0], K = c->dim[1], O = c->dim[2];
    double *act = malloc((size_t)(N * K) * sizeof(double));
    for (int64_t i = 0; i < N * K; i++) {
        double x = c->in[0][i] + c->in[2][i % K];
        act[i] = c->p[0] != 0.0 ? 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)))
                                : 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    }
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++) {
            double s = 0.0;
            for (int64_t k = 0; k < K; k++) s += act[n * K + k] * c->in[1][o * K + k];
            c->y[n * O + o] = s;
        }
    free(act);
}

/* The fused ops are the unfused ones in turn on this backend: the same bits. The backward also
 * matches finite differences of fc2(gelu(pre + bias)) for dpre, dw and the bias gradient. */
static void test_linear_gelu_ops_equal_unfused_ops_and_finite_differences(void **state)
{
    (void)state;
    int64_t N = 7, K = 12, O = 9; /* fc1: K -> O, then fc2: O -> K */
    float *x = frand(N * K, 91), *w1 = frand(O * K, 92), *b1 = frand(O, 93);
    float *w2 = frand(K * O, 94), *dy = frand(N * K, 95);
    for (int64_t i = 0; i < O * K; i++) w1[i] *= 2.0f; /* pre reaches both tails of the GeLU */
    for (int tanh_form = 0; tanh_form < 2; tanh_form++) {
        float *y = ffill(N * O, NAN), *pre = ffill(N * O, NAN), *y2 = ffill(N * O, NAN), *pre2 = ffill(N * O, NAN);
        op_linear_gelu_forward(f2(y, N, O), f2(pre, N, O), f2(x, N, K), f2(w1, O, K), f1(b1, O), tanh_form);
        op_linear_forward(f2(pre2, N, O), f2(x, N, K), f2(w1, O, K), f1(b1, O));
        op_gelu_forward(f2(y2, N, O), f2(pre2, N, O), tanh_form);
        assert_memory_equal(pre, pre2, (size_t)(N * O) * sizeof(float));
        assert_memory_equal(y, y2, (size_t)(N * O) * sizeof(float));

        /* dpre is overwritten; dw and the bias gradient accumulate */
        float *dpre = ffill(N * O, 123.0f), *dw = ffill(K * O, 1.0f), *db = ffill(O, 1.0f);
        op_linear_dgelu_backward(f2(dpre, N, O), f1(db, O), f2(dw, K, O), f2(dy, N, K), f2(y, N, O),
                                 f2(w2, K, O), f2(pre, N, O), tanh_form);
        float *dact = ffill(N * O, NAN), *dpre2 = ffill(N * O, NAN), *dw2 = ffill(K * O, 1.0f), *db2 = ffill(O, 1.0f);
        op_linear_backward(f2(dact, N, O), f2(dw2, K, O), tensor_none(), f2(dy, N, K), f2(y, N, O), f2(w2, K, O));
        op_gelu_backward(f2(dpre2, N, O), f2(dact, N, O), f2(pre, N, O), tanh_form);
        op_linear_backward(tensor_none(), tensor_none(), f1(db2, O), f2(dpre2, N, O), tensor_none(), tensor_none());
        assert_memory_equal(dpre, dpre2, (size_t)(N * O) * sizeof(float));
        assert_memory_equal(dw, dw2, (size_t)(K * O) * sizeof(float));
        assert_memory_equal(db, db2, (size_t)O * sizeof(float));

        struct ref c = new_ref(ref_gelu_linear, N * K);
        c.in[0] = to_double(pre, N * O), c.in[1] = to_double(w2, K * O), c.in[2] = calloc((size_t)O, sizeof(double));
        c.dim[0] = N, c.dim[1] = O, c.dim[2] = K, c.p[0] = tanh_form, c.r = to_double(dy, N * K);
        check_grad(&c, 0, N * O, dpre, 0.0, tanh_form ? "dgelu tanh dpre" : "dgelu erf dpre");
        check_grad(&c, 1, K * O, dw, 1.0, "dgelu dw");
        check_grad(&c, 2, O, db, 1.0, "dgelu bias gradient");
        free_ref(&c);
        free(y), free(pre), free(y2), free(pre2), free(dpre), free(dw), free(db);
        free(dact), free(dpre2), free(dw2), free(db2);
    }
    free(x), free(w1), free(b1), free(w2), free(dy);
}

/* On the CPU the training forward keeps pre (false, the same bits as op_linear_gelu_forward), and
 * the backward given gelu'(pre) is the backward given pre. */
static void test_linear_gelu_saving_grad_ops_equal_the_ops_given_pre(void **state)
{
    (void)state;
    int64_t N = 7, K = 12, O = 9;
    float *x = frand(N * K, 191), *w1 = frand(O * K, 192), *b1 = frand(O, 193);
    float *w2 = frand(K * O, 194), *dy = frand(N * K, 195), *ones = ffill(N * O, 1.0f);
    float *y = ffill(N * O, NAN), *pre = ffill(N * O, NAN), *y2 = ffill(N * O, NAN);
    float *pre2 = ffill(N * O, NAN);
    assert_false(op_linear_gelu_forward_train(f2(y, N, O), f2(pre, N, O), f2(x, N, K), f2(w1, O, K),
                                              f1(b1, O), true));
    op_linear_gelu_forward(f2(y2, N, O), f2(pre2, N, O), f2(x, N, K), f2(w1, O, K), f1(b1, O),
                           true);
    assert_memory_equal(pre, pre2, (size_t)(N * O) * sizeof(float));
    assert_memory_equal(y, y2, (size_t)(N * O) * sizeof(float));
    float *dg = ffill(N * O, NAN);
    op_gelu_backward(f2(dg, N, O), f2(ones, N, O), f2(pre, N, O), true);
    float *dpre = ffill(N * O, 123.0f), *dw = ffill(K * O, 1.0f), *db = ffill(O, 1.0f);
    float *dpre2 = ffill(N * O, 123.0f), *dw2 = ffill(K * O, 1.0f), *db2 = ffill(O, 1.0f);
    op_linear_dgelu_backward_saved(f2(dpre, N, O), f1(db, O), f2(dw, K, O), f2(dy, N, K),
                                   f2(y, N, O), f2(w2, K, O), f2(dg, N, O));
    op_linear_dgelu_backward(f2(dpre2, N, O), f1(db2, O), f2(dw2, K, O), f2(dy, N, K), f2(y, N, O),
                             f2(w2, K, O), f2(pre, N, O), true);
    for (int64_t i = 0; i < N * O; i++)
        assert_float_equal(dpre[i], dpre2[i], 1e-6 * (1 + fabsf(dpre2[i])));
    assert_memory_equal(dw, dw2, (size_t)(K * O) * sizeof(float));
    for (int64_t i = 0; i < O; i++) assert_float_equal(db[i], db2[i], 1e-5 * (1 + fabsf(db2[i])));
    free(x), free(w1), free(b1), free(w2), free(dy), free(ones), free(y), free(pre), free(y2);
    free(pre2);
    free(dg), free(dpre), free(dw), free(db), free(dpre2), free(dw2), free(db2);
}

/* y = silu(gate) * up with x = [gate | up]; in = {x}, dim = {N, F} */
static void ref_swiglu(struct ref *c)
{
    int64_t N = c->dim[0], F = c->dim[1];
    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < F; f++) {
            double g = c->in[0][n * 2 * F + f], u = c->in[0][n * 2 * F + F + f];
            c->y[n * F + f] = g / (1.0 + exp(-g)) * u;
        }
}

static void test_swiglu_matches_reference_and_finite_differences(void **state)
{
    (void)state;
    int64_t N = 5, F = 9;
    float *x = frand(N * 2 * F, 81), *r = frand(N * F, 82), *y = ffill(N * F, NAN), *dx = ffill(N * 2 * F, NAN);
    for (int64_t i = 0; i < N * 2 * F; i++) x[i] *= 3.0f;
    struct ref c = new_ref(ref_swiglu, N * F);
    c.in[0] = to_double(x, N * 2 * F), c.dim[0] = N, c.dim[1] = F, c.r = to_double(r, N * F);
    op_swiglu_forward(f2(y, N, F), f2(x, N, 2 * F));
    check_forward(&c, y, "swiglu");
    op_swiglu_backward(f2(dx, N, 2 * F), f2(r, N, F), f2(x, N, 2 * F));
    check_grad(&c, 0, N * 2 * F, dx, 0.0, "swiglu dx");
    free_ref(&c);
    free(x), free(r), free(y), free(dx);
}

/* ---- rotary embedding and attention ---- */

/* Column offsets in Megatron's fused qkv row: per group, n/g query heads, its key, its value. */
static void ref_bias_dropout_add(struct ref *c)
{
    int64_t N = c->dim[0], C = c->dim[1];
    for (int64_t e = 0; e < N * C; e++) {
        double v = c->in[0][e] + (c->in[1] ? c->in[1][e % C] : 0.0);
        c->y[e] = v * ref_mask(c->drop, (uint64_t)e) + (c->in[2] ? c->in[2][e] : 0.0);
    }
}

static void test_bias_dropout_add_matches_reference_and_finite_differences(void **state)
{
    (void)state;
    int64_t N = 6, C = 11;
    struct dropout_key drop = dropout(0.4f, 3, 50);
    float *x = frand(N * C, 111), *b = frand(C, 112), *res = frand(N * C, 113), *r = frand(N * C, 114);
    float *y = malloc((size_t)(N * C) * sizeof(float));
    memcpy(y, res, (size_t)(N * C) * sizeof(float)); /* y aliases the residual */
    op_bias_dropout_add_forward(f2(y, N, C), f2(x, N, C), f1(b, C), f2(y, N, C), drop);
    struct ref c = new_ref(ref_bias_dropout_add, N * C);
    c.in[0] = to_double(x, N * C), c.in[1] = to_double(b, C), c.in[2] = to_double(res, N * C);
    c.dim[0] = N, c.dim[1] = C, c.drop = drop, c.r = to_double(r, N * C);
    check_forward(&c, y, "bias-dropout-add");
    float *dx = ffill(N * C, 123.0f), *db = ffill(C, 1.0f), *db_only = ffill(C, 1.0f);
    op_bias_dropout_add_backward(f2(dx, N, C), f1(db, C), f2(r, N, C), drop);
    check_grad(&c, 0, N * C, dx, 0.0, "bias-dropout-add dx");
    check_grad(&c, 1, C, db, 1.0, "bias-dropout-add db");
    /* db without dx takes another path and must agree */
    op_bias_dropout_add_backward(tensor_none(), f1(db_only, C), f2(r, N, C), drop);
    assert_memory_equal(db, db_only, (size_t)C * sizeof(float));
    /* in place: dx aliasing dy, and y aliasing x, give the same results */
    float *inplace = malloc((size_t)(N * C) * sizeof(float));
    memcpy(inplace, r, (size_t)(N * C) * sizeof(float));
    op_bias_dropout_add_backward(f2(inplace, N, C), tensor_none(), f2(inplace, N, C), drop);
    assert_memory_equal(inplace, dx, (size_t)(N * C) * sizeof(float));
    memcpy(inplace, x, (size_t)(N * C) * sizeof(float));
    op_bias_dropout_add_forward(f2(inplace, N, C), f2(inplace, N, C), f1(b, C), f2(res, N, C), drop);
    assert_memory_equal(inplace, y, (size_t)(N * C) * sizeof(float));
    free(inplace);
    free_ref(&c);
    free(x), free(b), free(res), free(r), free(y), free(dx), free(db), free(db_only);
}

static void test_dropout_drops_fraction_p_and_scales_kept_by_one_over_one_minus_p(void **state)
{
    (void)state;
    int64_t N = 200, C = 500;
    float p = 0.3f, scale = 1.0f / (1.0f - p);
    float *x = ffill(N * C, 1.0f), *y = ffill(N * C, NAN), *dy = ffill(N * C, 1.0f), *dx = ffill(N * C, NAN);
    op_bias_dropout_add_forward(f2(y, N, C), f2(x, N, C), tensor_none(), tensor_none(), dropout(p, 9, 0));
    int64_t dropped = 0;
    for (int64_t i = 0; i < N * C; i++) {
        assert_true(y[i] == 0.0f || y[i] == scale);
        dropped += y[i] == 0.0f;
    }
    /* binomial: 5 standard deviations of the dropped fraction is 0.0072 */
    double frac = (double)dropped / (double)(N * C);
    assert_true(fabs(frac - p) < 5.0 * sqrt(p * (1.0 - p) / (double)(N * C)));
    /* the backward recomputes the same mask: dx of dy = 1 is y */
    op_bias_dropout_add_backward(f2(dx, N, C), tensor_none(), f2(dy, N, C), dropout(p, 9, 0));
    assert_memory_equal(dx, y, (size_t)(N * C) * sizeof(float));
    /* another stream draws another mask */
    op_bias_dropout_add_forward(f2(dx, N, C), f2(x, N, C), tensor_none(), tensor_none(), dropout(p, 10, 0));
    assert_memory_not_equal(dx, y, (size_t)(N * C) * sizeof(float));
    free(x), free(y), free(dy), free(dx);
}

static void test_dropout_with_p_zero_is_the_identity(void **state)
{
    (void)state;
    int64_t N = 7, C = 13;
    float *x = frand(N * C, 121), *b = frand(C, 122), *res = frand(N * C, 123), *y = ffill(N * C, NAN);
    op_bias_dropout_add_forward(f2(y, N, C), f2(x, N, C), f1(b, C), f2(res, N, C), dropout(0.0f, 1, 0));
    for (int64_t i = 0; i < N * C; i++) assert_true(y[i] == (x[i] + b[i % C]) + res[i]);
    float *dx = ffill(N * C, NAN);
    op_bias_dropout_add_backward(f2(dx, N, C), tensor_none(), f2(x, N, C), dropout(0.0f, 1, 0));
    assert_memory_equal(dx, x, (size_t)(N * C) * sizeof(float));
    /* in place (what the embedding does), with and without the bias gradient */
    float *db = ffill(C, 1.0f), *db2 = ffill(C, 1.0f);
    op_bias_dropout_add_forward(f2(dx, N, C), f2(dx, N, C), tensor_none(), tensor_none(), dropout(0.0f, 1, 0));
    op_bias_dropout_add_backward(f2(dx, N, C), f1(db, C), f2(dx, N, C), dropout(0.0f, 1, 0));
    assert_memory_equal(dx, x, (size_t)(N * C) * sizeof(float));
    op_bias_dropout_add_backward(tensor_none(), f1(db2, C), f2(x, N, C), dropout(0.0f, 1, 0));
    assert_memory_equal(db, db2, (size_t)C * sizeof(float));
    free(x), free(b), free(res), free(y), free(dx), free(db), free(db2);
}

/* A shard of the batch (here rows 4..9) with offset = its first element draws the slice of the
 * whole batch's mask: what makes dropout layout-invariant. */
static void test_dropout_mask_of_a_shard_is_the_slice_of_the_full_mask(void **state)
{
    (void)state;
    int64_t N = 12, C = 16, r0 = 4, rows = 6;
    float *x = frand(N * C, 131), *full = ffill(N * C, NAN), *part = ffill(rows * C, NAN);
    op_bias_dropout_add_forward(f2(full, N, C), f2(x, N, C), tensor_none(), tensor_none(), dropout(0.5f, 5, 100));
    op_bias_dropout_add_forward(f2(part, rows, C), f2(x + r0 * C, rows, C), tensor_none(), tensor_none(),
                                dropout(0.5f, 5, 100 + (uint64_t)(r0 * C)));
    assert_memory_equal(part, full + r0 * C, (size_t)(rows * C) * sizeof(float));
    free(x), free(full), free(part);
}

static void test_add_allows_aliasing_and_zero_clears(void **state)
{
    (void)state;
    int64_t n = 33;
    float *a = frand(n, 141), *b = frand(n, 142), *y = ffill(n, NAN), *a2 = malloc((size_t)n * sizeof(float));
    memcpy(a2, a, (size_t)n * sizeof(float));
    op_add(f1(y, n), f1(a, n), f1(b, n));
    for (int64_t i = 0; i < n; i++) assert_true(y[i] == a[i] + b[i]);
    op_add(f1(a2, n), f1(a2, n), f1(b, n)); /* y aliases a */
    assert_memory_equal(a2, y, (size_t)n * sizeof(float));
    op_zero(f1(y, n));
    for (int64_t i = 0; i < n; i++) assert_true(y[i] == 0.0f && !signbit(y[i]));
    free(a), free(b), free(y), free(a2);
}

/* ---- cross-entropy ---- */

/* losses[n] = logsumexp(logits[n]) - logits[n, target]; in = {logits}, ids = {targets}, dim = {N, V} */
static void ref_cross_entropy(struct ref *c)
{
    int64_t N = c->dim[0], V = c->dim[1];
    for (int64_t n = 0; n < N; n++) {
        const double *l = c->in[0] + n * V;
        double mx = -INFINITY, s = 0.0;
        for (int64_t v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        for (int64_t v = 0; v < V; v++) s += exp(l[v] - mx);
        c->y[n] = mx + log(s) - l[c->ids[0][n]];
    }
}

static void test_cross_entropy_matches_reference_and_finite_differences(void **state)
{
    (void)state;
    int64_t N = 6, V = 23;
    int32_t targets[6] = {0, 22, 5, 5, 17, 9};
    float *logits = frand(N * V, 151), *r = frand(N, 152), *losses = ffill(N, NAN);
    /* rows far from zero need the max shift: exp(1000) overflows even in double */
    for (int64_t i = 0; i < N * V; i++) logits[i] = 4.0f * logits[i] + (i / V == 2 ? 1000.0f : 0.0f);
    op_cross_entropy_forward(f1(losses, N), f2(logits, N, V), i1(targets, N));
    struct ref c = new_ref(ref_cross_entropy, N);
    c.in[0] = to_double(logits, N * V), c.ids[0] = targets, c.dim[0] = N, c.dim[1] = V;
    c.r = to_double(r, N);
    check_forward(&c, losses, "cross-entropy");
    float *dlogits = ffill(N * V, 123.0f);
    op_cross_entropy_backward(f2(dlogits, N, V), f2(logits, N, V), i1(targets, N), f1(r, N));
    check_grad(&c, 0, N * V, dlogits, 0.0, "cross-entropy dlogits");
    /* in place: dlogits aliasing logits gives the same gradient */
    op_cross_entropy_backward(f2(logits, N, V), f2(logits, N, V), i1(targets, N), f1(r, N));
    assert_memory_equal(logits, dlogits, (size_t)(N * V) * sizeof(float));
    free_ref(&c);
    free(logits), free(r), free(losses), free(dlogits);
}

/* On the CPU the output layer's cross-entropy is the logits GEMM then the cross-entropy in place:
 * the same bits as those ops, the gradient as it is (no row scale). */
static void test_output_layer_cross_entropy_is_the_linear_and_loss_ops(void **state)
{
    (void)state;
    int64_t N = 7, H = 12, V = 29;
    int32_t targets[7] = {0, 28, 5, 5, 17, 9, 3};
    float *x = frand(N * H, 161), *w = frand(V * H, 162), *dl = frand(N, 163);
    float *losses = ffill(N, NAN), *probs = ffill(N * V, NAN), *scale = ffill(N, 7.0f);
    bool scaled = op_output_layer_cross_entropy(f1(losses, N), f2(probs, N, V), f1(scale, N),
                                                f2(x, N, H), f2(w, V, H), i1(targets, N),
                                                f1(dl, N));
    assert_false(scaled);
    for (int64_t n = 0; n < N; n++) assert_true(scale[n] == 7.0f); /* not written */
    float *logits = ffill(N * V, NAN), *want = ffill(N, NAN);
    op_linear_forward(f2(logits, N, V), f2(x, N, H), f2(w, V, H), tensor_none());
    op_cross_entropy_forward(f1(want, N), f2(logits, N, V), i1(targets, N));
    op_cross_entropy_backward(f2(logits, N, V), f2(logits, N, V), i1(targets, N), f1(dl, N));
    assert_memory_equal(losses, want, (size_t)N * sizeof(float));
    assert_memory_equal(probs, logits, (size_t)(N * V) * sizeof(float));
    free(x), free(w), free(dl), free(losses), free(probs), free(scale), free(logits), free(want);
}

/* The linear layer with the residual added: the linear op, then the bias-dropout-add without
 * dropout, bit for bit (the CPU runs the two); with and without the bias. */
static void test_linear_residual_is_linear_then_bias_add(void **state)
{
    (void)state;
    int64_t N = 7, K = 13, O = 11;
    float *x = frand(N * K, 181), *w = frand(O * K, 182), *b = frand(O, 183);
    float *r = frand(N * O, 184);
    float *y = ffill(N * O, NAN), *t = ffill(N * O, NAN), *want = ffill(N * O, NAN);
    struct dropout_key none = {0};
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        struct tensor tb = with_bias ? f1(b, O) : tensor_none();
        op_linear_residual_forward(f2(y, N, O), f2(x, N, K), f2(w, O, K), tb, f2(r, N, O));
        op_linear_forward(f2(t, N, O), f2(x, N, K), f2(w, O, K), tensor_none());
        op_bias_dropout_add_forward(f2(want, N, O), f2(t, N, O), tb, f2(r, N, O), none);
        assert_memory_equal(y, want, (size_t)(N * O) * sizeof(float));
    }
    assert_false(
        op_fuses_linear_residual(f2(y, N, O), f2(x, N, K), f2(w, O, K), f1(b, O), f2(r, N, O)));
    free(x), free(w), free(b), free(r), free(y), free(t), free(want);
}

static void test_scale_rows_scales_each_row_and_allows_aliasing(void **state)
{
    (void)state;
    int64_t N = 5, C = 9;
    float *x = frand(N * C, 171), *s = frand(N, 172), *y = ffill(N * C, NAN);
    op_scale_rows(f2(y, N, C), f2(x, N, C), f1(s, N));
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) assert_true(y[n * C + c] == x[n * C + c] * s[n]);
    op_scale_rows(f2(x, N, C), f2(x, N, C), f1(s, N)); /* in place */
    assert_memory_equal(x, y, (size_t)(N * C) * sizeof(float));
    free(x), free(s), free(y);
}

/* ---- properties across ops ---- */

/* Slices of one output buffer, so a whole run of ops can be compared with memcmp. */
struct outbuf {
    float *data;
    int64_t used, cap;
};

static float *take(struct outbuf *o, int64_t n)
{
    assert_true(o->used + n <= o->cap);
    float *p = o->data + o->used;
    o->used += n;
    return p;
}

static void run_linear_and_norms(struct outbuf *o)
{
    int64_t N = 128, K = 96, O = 200, C = 300, R = 64;
    float *x = frand(N * K, 201), *w = frand(O * K, 202), *b = frand(O, 203), *dy = frand(N * O, 204);
    op_linear_forward(f2(take(o, N * O), N, O), f2(x, N, K), f2(w, O, K), f1(b, O));
    op_linear_backward(f2(take(o, N * K), N, K), f2(take(o, O * K), O, K), f1(take(o, O), O),
                       f2(dy, N, O), f2(x, N, K), f2(w, O, K));
    float *xn = frand(R * C, 205), *wn = frand(C, 206), *dyn = frand(R * C, 207);
    float *mean = take(o, R), *rstd = take(o, R);
    op_layernorm_forward(f2(take(o, R * C), R, C), f1(mean, R), f1(rstd, R), f2(xn, R, C), f1(wn, C),
                         f1(wn, C), 1e-5f);
    op_layernorm_backward(f2(take(o, R * C), R, C), f1(take(o, C), C), f1(take(o, C), C), f2(dyn, R, C),
                          f2(xn, R, C), f1(wn, C), f1(mean, R), f1(rstd, R), tensor_none());
    op_rmsnorm_forward(f2(take(o, R * C), R, C), f1(rstd, R), f2(xn, R, C), f1(wn, C), 1e-5f);
    op_rmsnorm_backward(f2(take(o, R * C), R, C), f1(take(o, C), C), f2(dyn, R, C), f2(xn, R, C),
                        f1(wn, C), f1(rstd, R), tensor_none());
    free(x), free(w), free(b), free(dy), free(xn), free(wn), free(dyn);
}

static void run_attention_embedding_loss(struct outbuf *o)
{
    struct attention_shape s = {.batch = 2, .seq = 64, .heads = 4, .groups = 2, .head_dim = 16};
    int64_t N = 128, W = 2 * 4 * 16, D = 4 * 16, V = 500, H = 600;
    struct dropout_key drop = dropout(0.1f, 11, 0);
    int32_t *pos = malloc((size_t)N * sizeof(int32_t)), *tok = malloc((size_t)N * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) pos[n] = (int32_t)(n % 64), tok[n] = (int32_t)(n * 7 % 50);
    float *qkv = take(o, N * W), *dout = frand(N * D, 211), *out = take(o, N * D);
    float *src = frand(N * W, 212);
    memcpy(qkv, src, (size_t)(N * W) * sizeof(float));
    int64_t pshape[4] = {2, 4, 64, 64};
    struct tensor probs = tensor_make(take(o, 2 * 4 * 64 * 64), DT_F32, DEV_CPU, 4, pshape);
    op_rope_forward(f2(qkv, N, W), i1(pos, N), s, 8, 10000.0f);
    op_attention_forward(f2(out, N, D), probs, f2(qkv, N, W), s, drop);
    op_attention_backward(f2(take(o, N * W), N, W), tensor_none(), f2(dout, N, D), f2(qkv, N, W), probs,
                          f2(out, N, D), s, drop);
    float *dy = frand(N * H, 213), *logits = frand(N * V, 214);
    op_embedding_backward(f2(take(o, 50 * H), 50, H), 0, tensor_none(), f2(dy, N, H), i1(tok, N), tensor_none());
    op_cross_entropy_forward(f1(take(o, N), N), f2(logits, N, V), i1(tok, N));
    op_cross_entropy_backward(f2(take(o, N * V), N, V), f2(logits, N, V), i1(tok, N), f1(dout, N));
    op_bias_dropout_add_backward(f2(take(o, N * H), N, H), f1(take(o, H), H), f2(dy, N, H), drop);
    op_bias_dropout_add_backward(tensor_none(), f1(take(o, H), H), f2(dy, N, H), drop);
    free(pos), free(tok), free(dout), free(src), free(dy), free(logits);
}

/* Every op reduces in a fixed order inside one thread, so 1, 2 or 3 threads agree bit for bit
 * (sizes are past the thresholds below which an op stays on one thread). */
static void test_results_do_not_depend_on_thread_count(void **state)
{
    (void)state;
    int saved = omp_get_max_threads();
    struct outbuf runs[3];
    for (int i = 0; i < 3; i++) {
        runs[i] = (struct outbuf){.data = calloc(1 << 21, sizeof(float)), .cap = 1 << 21};
        omp_set_num_threads(i + 1);
        run_linear_and_norms(&runs[i]);
        run_attention_embedding_loss(&runs[i]);
    }
    omp_set_num_threads(saved);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(runs[i].used, runs[0].used);
        assert_memory_equal(runs[i].data, runs[0].data, (size_t)runs[0].used * sizeof(float));
    }
    for (int i = 0; i < 3; i++) free(runs[i].data);
}

/* Runs fn in a child process; returns its exit code and what it wrote to stderr. */
static int run_child(void (*fn)(void), char *err, size_t len)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t k;
    while (got + 1 < len && (k = read(fds[0], err + got, len - 1 - got)) > 0) got += (size_t)k;
    err[got] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The checks fire before any data is read, so one small buffer stands in for every tensor. */
static void linear_with_mismatched_w(void)
{
    float dummy[16];
    op_linear_forward(f2(dummy, 4, 16), f2(dummy, 4, 8), f2(dummy, 16, 9), tensor_none());
}

static void embedding_with_float_tokens(void)
{
    float dummy[16];
    op_embedding_forward(f2(dummy, 4, 8), f1(dummy, 4), f2(dummy, 10, 8), 0, tensor_none(), tensor_none());
}

static void linear_on_cuda(void)
{
    float dummy[16];
    struct tensor x = tensor_2d(dummy, DT_F32, DEV_CUDA, 2, 2);
    op_linear_forward(x, x, x, tensor_none());
}

/* dpre would be overwritten before pre is read */
static void dgelu_backward_over_its_input(void)
{
    float dummy[64];
    op_linear_dgelu_backward(f2(dummy, 4, 8), tensor_none(), tensor_none(), f2(dummy, 4, 2), tensor_none(),
                             f2(dummy, 2, 8), f2(dummy, 4, 8), false);
}

/* the residual would be overwritten while the GEMM still reads it */
static void linear_residual_over_its_residual(void)
{
    float dummy[64];
    op_linear_residual_forward(f2(dummy, 4, 4), f2(dummy, 4, 2), f2(dummy, 4, 2), tensor_none(),
                               f2(dummy, 4, 4));
}

static void test_bad_arguments_are_bugs_naming_the_op_and_shapes(void **state)
{
    (void)state;
    char err[1024];
    assert_int_equal(run_child(linear_residual_over_its_residual, err, sizeof err), 1);
    assert_non_null(strstr(err, "op_linear_residual_forward: y must not alias residual"));
    assert_int_equal(run_child(dgelu_backward_over_its_input, err, sizeof err), 1);
    assert_non_null(strstr(err, "op_linear_dgelu_backward: dpre must not overwrite pre"));
    assert_int_equal(run_child(linear_with_mismatched_w, err, sizeof err), 1);
    assert_non_null(strstr(err, "op_linear_forward: x and w disagree"));
    assert_non_null(strstr(err, "x float32[4, 8], w float32[16, 9]"));
    assert_int_equal(run_child(embedding_with_float_tokens, err, sizeof err), 1);
    assert_non_null(strstr(err, "op_embedding_forward: tokens must be a 1-D int32 tensor"));
#ifndef MEGATRON_CUDA /* a CUDA build dispatches to the GPU; tests/gpu covers that path */
    assert_int_equal(run_child(linear_on_cuda, err, sizeof err), 1);
    assert_non_null(strstr(err, "op_linear_forward: this build has no CUDA backend"));
#else
    (void)linear_on_cuda;
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_forward_matches_reference),
        cmocka_unit_test(test_linear_backward_matches_finite_differences),
        cmocka_unit_test(test_linear_backward_matches_reference_across_blocks),
        cmocka_unit_test(test_linear_backward_overwrites_dx_and_accumulates_dw),
        cmocka_unit_test(test_linear_weight_grad_writes_or_adds),
        cmocka_unit_test(test_zero_ranges_zeroes_exactly_the_ranges),
        cmocka_unit_test(test_embedding_forward_and_backward_match_reference),
        cmocka_unit_test(test_gelu_both_forms_match_reference_and_finite_differences),
        cmocka_unit_test(test_linear_gelu_ops_equal_unfused_ops_and_finite_differences),
        cmocka_unit_test(test_linear_gelu_saving_grad_ops_equal_the_ops_given_pre),
        cmocka_unit_test(test_swiglu_matches_reference_and_finite_differences),
        cmocka_unit_test(test_bias_dropout_add_matches_reference_and_finite_differences),
        cmocka_unit_test(test_dropout_drops_fraction_p_and_scales_kept_by_one_over_one_minus_p),
        cmocka_unit_test(test_dropout_with_p_zero_is_the_identity),
        cmocka_unit_test(test_dropout_mask_of_a_shard_is_the_slice_of_the_full_mask),
        cmocka_unit_test(test_add_allows_aliasing_and_zero_clears),
        cmocka_unit_test(test_cross_entropy_matches_reference_and_finite_differences),
        cmocka_unit_test(test_output_layer_cross_entropy_is_the_linear_and_loss_ops),
        cmocka_unit_test(test_linear_residual_is_linear_then_bias_add),
        cmocka_unit_test(test_scale_rows_scales_each_row_and_allows_aliasing),
        cmocka_unit_test(test_results_do_not_depend_on_thread_count),
        cmocka_unit_test(test_bad_arguments_are_bugs_naming_the_op_and_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
