/* GPU op tests of the layers' kernels against the CPU ops: linear (with the fused bias and GeLU
 * epilogues), embeddings, LayerNorm/RMSNorm (fused with bias-dropout-add and the residual), and
 * the activations. Method and tolerances: test_cuda_ops.c. */
#include "kernels/ops.h"
#include "tests/gpu/cuda_test.h"

/* ---- dense layers ---- */

/* The forward GEMM under test: a variant of our own forced (where it fits), never (the default),
 * or timed. */
static int own_gemm_mode = CUDA_HOPPER_GEMM_NEVER;

static const char *own_gemm_mode_name(int m)
{
    static const char *const forced[] = {"our GEMM, variant 0", "our GEMM, variant 1",
                                         "our GEMM, variant 2"};
    return m == CUDA_HOPPER_GEMM_NEVER   ? "cuBLASLt"
           : m == CUDA_HOPPER_GEMM_TIMED ? "timed"
                                         : forced[m];
}

/* Which forward GEMM ran (after a linear forward of out x in weights): with a variant forced, on a
 * GPU that runs it, bf16 and widths that are multiples of 8, ours must have; with it ruled out,
 * cuBLASLt. */
static bool forward_gemm_as_forced(int64_t in, int64_t out)
{
    bool own = cuda_linear_gelu_paths().forward_own_gemm;
    bool fits =
        cuda_linear_hopper_gemm_available() && A.dt == DT_BF16 && in % 8 == 0 && out % 8 == 0;
    bool ok = own_gemm_mode >= 0                       ? own == fits
              : own_gemm_mode == CUDA_HOPPER_GEMM_NEVER ? !own
                                                        : true;
    printf("    forward GEMM: %s%s\n", own ? "ours" : "cuBLASLt",
           ok ? "" : " (FAIL: not as forced)");
    return ok;
}

/* Each forward GEMM choice in turn (tests/gpu's cases run under each), the default last. */
static const int own_gemm_modes[] = {CUDA_HOPPER_GEMM_TIMED, 0, 1, 2, CUDA_HOPPER_GEMM_NEVER};
enum { OWN_GEMM_MODES = 5 };

static void force_own_gemm(int m)
{
    own_gemm_mode = m;
    cuda_linear_force_hopper_gemm(m);
    printf("  forward GEMM: %s\n", own_gemm_mode_name(m));
}

static bool linear_case(int64_t N, int64_t in, int64_t out, bool bias)
{
    float *x = randn(N * in, 1.0f), *w = randn(out * in, 0.05f), *b = randn(out, 0.1f);
    float *dy = randn(N * out, 1.0f), *dw0 = randn(out * in, 0.01f), *db0 = randn(out, 0.01f);
    float *y = halloc(N * out * 4), *dx = halloc(N * in * 4), *dw = copy_f(dw0, out * in);
    float *db = copy_f(db0, out);
    struct tensor hb = bias ? H1(b, DT_F32, out) : tensor_none();
    cpu_linear_forward(H2(y, N, out), H2(x, N, in), H2(w, out, in), hb);
    cpu_linear_backward(H2(dx, N, in), H2(dw, out, in), H1(db, DT_F32, out), H2(dy, N, out),
                        H2(x, N, in), H2(w, out, in));

    void *gx = to_dev_lp(x, N * in), *gw = to_dev_lp(w, out * in), *gb = to_dev_lp(b, out);
    void *gdy = to_dev_lp(dy, N * out), *gy = dalloc(N * out * 2), *gdx = dalloc(N * in * 2);
    void *gdw = to_dev(dw0, out * in * 4), *gdb = to_dev(db0, out * 4);
    poison(gy, N * out, A.dt);
    poison(gdx, N * in, A.dt);
    cuda_linear_forward(D2(gy, A.dt, N, out), D2(gx, A.dt, N, in),
                        D2(gw, A.dt, out, in), bias ? D1(gb, A.dt, out) : tensor_none());
    bool ok = forward_gemm_as_forced(in, out);
    cuda_linear_backward(D2(gdx, A.dt, N, in), D2(gdw, DT_F32, out, in), D1(gdb, DT_F32, out),
                         D2(gdy, A.dt, N, out), D2(gx, A.dt, N, in),
                         D2(gw, A.dt, out, in));
    printf("   N=%lld in=%lld out=%lld bias=%d\n", (long long)N, (long long)in, (long long)out,
           bias);
    ok &= close_to("y", from_dev_lp(gy, N * out), y, N * out, TOL_LP);
    ok &= close_to("dx", from_dev_lp(gdx, N * in), dx, N * in, TOL_LP);
    ok &= close_to("dw (+=, fp32)", from_dev_f32(gdw, out * in), dw, out * in, TOL_F32);
    ok &= close_to("db (+=, fp32)", from_dev_f32(gdb, out), db, out, TOL_F32);
    return ok;
}

/* Under each forward GEMM: rows, columns and depth that are not multiples of our GEMM's tiles
 * (100 x 72 -> 200: its loads past them read zeros, its stores leave them out), a tiny one, and
 * widths cuBLASLt alone takes (not multiples of 8). */
bool test_linear_matches_cpu(void)
{
    bool ok = true;
    for (int m = 0; m < OWN_GEMM_MODES; m++) {
        force_own_gemm(own_gemm_modes[m]);
        ok &= linear_case(256, 512, 768, true) & linear_case(100, 72, 200, false) &
              linear_case(33, 40, 24, true) & linear_case(300, 36, 52, true) &
              linear_case(1100, 320, 1000, true);
    }
    return ok;
}

/* The weight gradient alone (a step's first backward writes it, the later ones add): written
 * over NaN (beta 0: never read) and added to what is there, against the CPU's op; no rows write
 * zeros and add nothing. */
static bool weight_grad_case(int64_t N, int64_t in, int64_t out)
{
    const int64_t rows = N > 0 ? N : 1; /* allocated (no rows still needs the pointers) */
    float *x = randn(rows * in, 1.0f), *dy = randn(rows * out, 1.0f), *dw0 = randn(out * in, 0.01f);
    float *written = halloc((size_t)(out * in) * sizeof(float)), *added = copy_f(dw0, out * in);
    for (int64_t i = 0; i < out * in; i++) written[i] = NAN;
    cpu_linear_weight_grad(H2(written, out, in), H2(dy, N, out), H2(x, N, in), false);
    cpu_linear_weight_grad(H2(added, out, in), H2(dy, N, out), H2(x, N, in), true);
    void *gx = to_dev_lp(x, rows * in), *gdy = to_dev_lp(dy, rows * out);
    void *gw = dalloc(out * in * 4), *ga = to_dev(dw0, out * in * 4);
    poison(gw, out * in, DT_F32);
    cuda_linear_weight_grad(D2(gw, DT_F32, out, in), D2(gdy, A.dt, N, out), D2(gx, A.dt, N, in),
                            false);
    cuda_linear_weight_grad(D2(ga, DT_F32, out, in), D2(gdy, A.dt, N, out), D2(gx, A.dt, N, in),
                            true);
    printf("   N=%lld in=%lld out=%lld\n", (long long)N, (long long)in, (long long)out);
    bool ok = close_to("dw written (=, fp32)", from_dev_f32(gw, out * in), written, out * in, TOL_F32);
    ok &= close_to("dw added (+=, fp32)", from_dev_f32(ga, out * in), added, out * in, TOL_F32);
    return ok;
}

bool test_linear_weight_grad_matches_cpu(void)
{
    bool ok = weight_grad_case(256, 512, 768) & weight_grad_case(100, 72, 200) &
              weight_grad_case(1100, 320, 1000) & weight_grad_case(0, 40, 24);
    /* and the zeroing of a step's added gradients: exactly the ranges, in one launch */
    int64_t n = 3000000, r[8] = {0, 5, 17, 1, 4096, 2000000, 2999990, 10};
    float *h = randn(n, 1.0f), *want = copy_f(h, n);
    for (int k = 0; k < 4; k++)
        for (int64_t i = r[2 * k]; i < r[2 * k] + r[2 * k + 1]; i++) want[i] = 0.0f;
    void *g = to_dev(h, n * 4), *gr = to_dev(r, sizeof r);
    cuda_zero_ranges(D1(g, DT_F32, n), D2(gr, DT_I64, 4, 2));
    ok &= bitwise("zeroed ranges, the rest kept", from_dev_f32(g, n), want, n);
    return ok;
}

/* linear_proj or linear_fc2 with the bias-dropout-add after it (no dropout) in the GEMM:
 * y = x w^T + b + residual against the CPU's op (the GEMM, then the add); the residual, read as
 * the GEMM's C, must be left as it was. */
static bool linear_residual_case(int64_t N, int64_t in, int64_t out, bool bias)
{
    float *x = randn(N * in, 1.0f), *w = randn(out * in, 0.05f), *b = randn(out, 0.1f);
    float *r = randn(N * out, 1.0f), *y = halloc(N * out * 4);
    struct tensor hb = bias ? H1(b, DT_F32, out) : tensor_none();
    op_linear_residual_forward(H2(y, N, out), H2(x, N, in), H2(w, out, in), hb, H2(r, N, out));
    void *gx = to_dev_lp(x, N * in), *gw = to_dev_lp(w, out * in), *gb = to_dev_lp(b, out);
    void *gr = to_dev_lp(r, N * out), *gy = dalloc(N * out * 2);
    poison(gy, N * out, A.dt);
    cuda_linear_residual_forward(D2(gy, A.dt, N, out), D2(gx, A.dt, N, in), D2(gw, A.dt, out, in),
                                 bias ? D1(gb, A.dt, out) : tensor_none(), D2(gr, A.dt, N, out));
    printf("   N=%lld in=%lld out=%lld bias=%d\n", (long long)N, (long long)in, (long long)out,
           bias);
    bool ok = close_to("y", from_dev_lp(gy, N * out), y, N * out, TOL_LP);
    ok &= bitwise("residual, after", from_dev_lp(gr, N * out), r, N * out);
    return ok;
}

bool test_linear_residual_matches_cpu(void)
{
    return linear_residual_case(256, 512, 768, true) & linear_residual_case(100, 72, 200, false) &
           linear_residual_case(33, 40, 24, true) & linear_residual_case(1100, 320, 1000, true);
}

/* The two GeLU forms differ by less than bf16's rounding per element, but over many elements the
 * output sits measurably closer (in L2) to the form that computed it (about 1% for y, simulated
 * with bf16 rounding: never the wrong way in 300 draws of 20000 elements; fp16's finer rounding
 * only widens the gap): a check that the right form ran (cuBLASLt's epilogue, say), which the
 * tolerances alone could not make. */
static bool closer_to_form(const char *what, const float *got, const float *tanh_form,
                           const float *erf_form, int64_t n, bool tanh_approx)
{
    CHECK(n >= 20000); /* below that, bf16 rounding noise can hide a gap of 0.6% in L2 */
    double et = rel_l2(got, tanh_form, n), ee = rel_l2(got, erf_form, n);
    bool ok = tanh_approx ? et < ee : ee < et;
    printf("    %-34s vs tanh form %.3e, vs erf form %.3e: %s %s\n", what, et, ee,
           et < ee ? "tanh" : "erf", ok ? "ok" : "FAIL");
    return ok;
}

/* The GEMM + kernel path applies the GeLU to the stored 16-bit pre, so its y is the requested form
 * on those values rounded to the 16-bit type: at most one step of it away (the GPU's and the CPU's
 * tanhf and erff may differ in their last fp32 bit), and rarely that. Below pre = -2.5 both forms
 * compute 1 + (a number near -1), where that last bit is a large part of the result: those
 * elements are left to the tolerance checks. The forms differ by less than a bf16 step over most
 * of the range, so statistics on a few hundred distinct bf16 inputs could not tell them apart;
 * this exact check makes the form's computation, not its name, what is tested. */
static bool rounds_to_form(const char *what, const float *got, const float *form, const float *pre, int64_t n)
{
    int64_t off_by_one = 0, worse = 0, tail = 0;
    for (int64_t i = 0; i < n; i++) {
        if (pre[i] < -2.5f) {
            tail++;
            continue;
        }
        float want = form[i];
        round_to_dtype(&want, 1, A.dt);
        if (got[i] == want) continue;
        if (fabsf(got[i] - want) <= lp_step(want) * 1.01f) off_by_one++;
        else worse++;
    }
    bool ok = worse == 0 && off_by_one * 1000 <= n;
    printf("    %-34s %lld of %lld one step off, %lld further (%lld below -2.5 not counted): %s\n", what,
           (long long)off_by_one, (long long)n, (long long)worse, (long long)tail, ok ? "ok" : "FAIL");
    return ok;
}

/* linear_fc1 + GeLU forward, and linear_fc2's backward through the GeLU (independent inputs, so
 * the backward is checked on its own). Which paths ran (cuBLASLt epilogues or GEMM + kernel) is
 * printed: the tanh form with widths that are multiples of 8 should take an epilogue forward. */
static bool linear_gelu_case(int64_t N, int64_t in, int64_t F, bool bias, bool tanh_approx)
{
    float *x = randn(N * in, 1.0f), *w1 = randn(F * in, 0.05f), *b1 = randn(F, 0.5f);
    float *y = halloc(N * F * 4), *pre = halloc(N * F * 4);
    struct tensor hb = bias ? H1(b1, DT_F32, F) : tensor_none();
    cpu_linear_gelu_forward(H2(y, N, F), H2(pre, N, F), H2(x, N, in), H2(w1, F, in), hb, tanh_approx);
    void *gx = to_dev_lp(x, N * in), *gw1 = to_dev_lp(w1, F * in), *gb1 = to_dev_lp(b1, F);
    void *gy = dalloc(N * F * 2), *gpre = dalloc(N * F * 2);
    poison(gy, N * F, A.dt), poison(gpre, N * F, A.dt);
    cuda_linear_gelu_forward(D2(gy, A.dt, N, F), D2(gpre, A.dt, N, F), D2(gx, A.dt, N, in),
                             D2(gw1, A.dt, F, in), bias ? D1(gb1, A.dt, F) : tensor_none(),
                             tanh_approx);
    bool fwd_epilogue = cuda_linear_gelu_paths().forward_epilogue;
    bool fwd_ok = forward_gemm_as_forced(in, F);

    /* fc2: F -> in; its input act and the saved pre drawn afresh */
    float *act = randn(N * F, 1.0f), *pre2 = randn(N * F, 2.0f), *w2 = randn(in * F, 0.05f);
    float *dy = randn(N * in, 1.0f), *dw0 = randn(in * F, 0.01f), *db0 = randn(F, 0.01f);
    float *dpre = halloc(N * F * 4), *dw = copy_f(dw0, in * F), *db = copy_f(db0, F);
    cpu_linear_dgelu_backward(H2(dpre, N, F), bias ? H1(db, DT_F32, F) : tensor_none(),
                              H2(dw, in, F), H2(dy, N, in), H2(act, N, F), H2(w2, in, F),
                              H2(pre2, N, F), tanh_approx);
    void *gact = to_dev_lp(act, N * F), *gpre2 = to_dev_lp(pre2, N * F);
    void *gw2 = to_dev_lp(w2, in * F), *gdy = to_dev_lp(dy, N * in);
    void *gdpre = dalloc(N * F * 2), *gdw = to_dev(dw0, in * F * 4), *gdb = to_dev(db0, F * 4);
    poison(gdpre, N * F, A.dt);
    cuda_linear_dgelu_backward(D2(gdpre, A.dt, N, F), bias ? D1(gdb, DT_F32, F) : tensor_none(),
                               D2(gdw, DT_F32, in, F), D2(gdy, A.dt, N, in),
                               D2(gact, A.dt, N, F), D2(gw2, A.dt, in, F),
                               D2(gpre2, A.dt, N, F), tanh_approx);
    struct cuda_gelu_paths bwd = cuda_linear_gelu_paths();
    printf("   N=%lld in=%lld F=%lld bias=%d tanh=%d: forward %s, backward %s\n", (long long)N,
           (long long)in, (long long)F, bias, tanh_approx,
           fwd_epilogue                               ? "cuBLASLt GELU_AUX epilogue"
           : cuda_linear_gelu_paths().forward_own_gemm ? "our GEMM with the GeLU"
                                                       : "GEMM + kernel",
           bwd.bias_grad_epilogue    ? "cuBLASLt DGELU_BGRAD epilogue"
           : bwd.backward_row_halves ? "cuBLASLt DGELU epilogue on each half of the rows"
           : bwd.backward_epilogue   ? (bias ? "cuBLASLt DGELU epilogue + column sum"
                                             : "cuBLASLt DGELU epilogue")
                                     : "GEMM + kernel");
    float *gpre_h = from_dev_lp(gpre, N * F), *gy_h = from_dev_lp(gy, N * F);
    float *gdpre_h = from_dev_lp(gdpre, N * F);
    bool ok = fwd_ok & close_to("pre", gpre_h, pre, N * F, TOL_LP);
    ok &= close_to("y = gelu(pre)", gy_h, y, N * F, TOL_LP);
    ok &= close_to("dpre", gdpre_h, dpre, N * F, TOL_LP);
    /* both forms of y on the pre the GPU applied the GeLU to (the epilogue: the fp32 product, as
     * the CPU's; the kernel: the stored 16-bit pre), and of dpre (with a throwaway bias gradient) */
    float *yt = halloc(N * F * 4), *ye = halloc(N * F * 4), *dpt = halloc(N * F * 4);
    float *dpe = halloc(N * F * 4), *dbx = halloc(F * 4);
    float *applied = fwd_epilogue ? pre : gpre_h;
    cpu_gelu_forward(H1(yt, DT_F32, N * F), H1(applied, DT_F32, N * F), true);
    cpu_gelu_forward(H1(ye, DT_F32, N * F), H1(applied, DT_F32, N * F), false);
    for (int form = 0; form < 2; form++)
        cpu_linear_dgelu_backward(H2(form ? dpt : dpe, N, F), H1(dbx, DT_F32, F), tensor_none(),
                                  H2(dy, N, in), tensor_none(), H2(w2, in, F), H2(pre2, N, F),
                                  form == 1);
    if (fwd_epilogue) ok &= closer_to_form("y: form computed", gy_h, yt, ye, N * F, tanh_approx);
    else ok &= rounds_to_form("y: the form on the stored pre", gy_h, tanh_approx ? yt : ye, gpre_h, N * F);
    ok &= closer_to_form("dpre: form computed", gdpre_h, dpt, dpe, N * F, tanh_approx);
    ok &= close_to("dw (+=, fp32)", from_dev_f32(gdw, in * F), dw, in * F, TOL_F32);
    /* DGELU_BGRAD sums the fp32 products; the other paths sum dpre as stored in 16 bits (the GEMM
     * + kernel path also rounds dy w before the GeLU's derivative, as the unfused ops did), so
     * their sums carry that rounding (~1e-3). */
    if (bias)
        ok &= close_to(bwd.bias_grad_epilogue ? "fc1 db (+=, fp32)" : "fc1 db (+=, from 16-bit dpre)",
                       from_dev_f32(gdb, F), db, F, bwd.bias_grad_epilogue ? TOL_F32 : TOL_LP);
    return ok;
}

/* A training step's fc1 + GeLU, which on Hopper in bf16 keeps gelu'(pre) in pre's place, and
 * fc2's backward given it (bf16 only: only that path keeps it). The forward must keep it exactly
 * where our GEMM runs (bf16, Hopper, widths multiples of 64 and 8). */
static bool gelu_saving_grad_case(int64_t N, int64_t in, int64_t F, bool bias)
{
    float *x = randn(N * in, 1.0f), *w1 = randn(F * in, 0.05f), *b1 = randn(F, 0.5f);
    float *y = halloc(N * F * 4), *pre = halloc(N * F * 4), *dg = halloc(N * F * 4);
    float *ones = halloc(N * F * 4);
    for (int64_t i = 0; i < N * F; i++) ones[i] = 1.0f;
    struct tensor hb = bias ? H1(b1, DT_F32, F) : tensor_none();
    cpu_linear_gelu_forward(H2(y, N, F), H2(pre, N, F), H2(x, N, in), H2(w1, F, in), hb, true);
    cpu_gelu_backward(H2(dg, N, F), H2(ones, N, F), H2(pre, N, F), true); /* gelu'(pre) */
    void *gx = to_dev_lp(x, N * in), *gw1 = to_dev_lp(w1, F * in), *gb1 = to_dev_lp(b1, F);
    void *gy = dalloc(N * F * 2), *gpre = dalloc(N * F * 2);
    poison(gy, N * F, A.dt), poison(gpre, N * F, A.dt);
    bool kept = cuda_linear_gelu_forward_train(D2(gy, A.dt, N, F), D2(gpre, A.dt, N, F),
                                               D2(gx, A.dt, N, in), D2(gw1, A.dt, F, in),
                                               bias ? D1(gb1, A.dt, F) : tensor_none(), true);
    bool should = cuda_linear_hopper_gemm_available() && A.dt == DT_BF16 && F % 64 == 0 &&
                  in % 8 == 0;
    printf("   N=%lld in=%lld F=%lld bias=%d: %s\n", (long long)N, (long long)in, (long long)F,
           bias, kept ? "gelu'(pre) kept" : "pre kept");
    bool ok = kept == should;
    if (!ok) printf("    FAIL: the forward should have kept %s\n", should ? "gelu'(pre)" : "pre");
    ok &= close_to("y = gelu(pre)", from_dev_lp(gy, N * F), y, N * F, TOL_LP);
    ok &= close_to(kept ? "gelu'(pre)" : "pre", from_dev_lp(gpre, N * F), kept ? dg : pre, N * F,
                   TOL_LP);
    if (A.dt != DT_BF16) return ok;
    /* fc2: F -> in, given gelu'(pre) drawn afresh (between its bounds, -0.17 and 1.13) */
    float *act = randn(N * F, 1.0f), *g2 = randn(N * F, 0.4f), *w2 = randn(in * F, 0.05f);
    for (int64_t i = 0; i < N * F; i++) g2[i] = fminf(fmaxf(g2[i] + 0.5f, -0.17f), 1.13f);
    round_to_dtype(g2, N * F, A.dt);
    float *dy = randn(N * in, 1.0f), *dw0 = randn(in * F, 0.01f), *db0 = randn(F, 0.01f);
    float *dpre = halloc(N * F * 4), *dw = copy_f(dw0, in * F), *db = copy_f(db0, F);
    cpu_linear_dgelu_backward_saved(H2(dpre, N, F), bias ? H1(db, DT_F32, F) : tensor_none(),
                                    H2(dw, in, F), H2(dy, N, in), H2(act, N, F), H2(w2, in, F),
                                    H2(g2, N, F));
    void *gact = to_dev_lp(act, N * F), *gg2 = to_dev_lp(g2, N * F);
    void *gw2 = to_dev_lp(w2, in * F), *gdy = to_dev_lp(dy, N * in);
    void *gdpre = dalloc(N * F * 2), *gdw = to_dev(dw0, in * F * 4), *gdb = to_dev(db0, F * 4);
    poison(gdpre, N * F, A.dt);
    cuda_linear_dgelu_backward_saved(D2(gdpre, A.dt, N, F),
                                     bias ? D1(gdb, DT_F32, F) : tensor_none(),
                                     D2(gdw, DT_F32, in, F), D2(gdy, A.dt, N, in),
                                     D2(gact, A.dt, N, F), D2(gw2, A.dt, in, F),
                                     D2(gg2, A.dt, N, F));
    ok &= close_to("dpre = (dy w) gelu'", from_dev_lp(gdpre, N * F), dpre, N * F, TOL_LP);
    ok &= close_to("dw (+=, fp32)", from_dev_f32(gdw, in * F), dw, in * F, TOL_F32);
    /* summed from dpre as rounded to bf16 (as the DGELU epilogue + column sum path) */
    if (bias) ok &= close_to("fc1 db (+=, from 16-bit dpre)", from_dev_f32(gdb, F), db, F, TOL_LP);
    return ok;
}

bool test_linear_gelu_saving_grad_matches_cpu(void)
{
    /* 300 and 100 rows: partial row tiles; F = 200: no kept gelu' (not a multiple of 64) */
    return gelu_saving_grad_case(300, 768, 3072, true) &
           gelu_saving_grad_case(256, 128, 512, false) & gelu_saving_grad_case(100, 64, 192, true) &
           gelu_saving_grad_case(128, 72, 200, true);
}

/* Each backward path (forced where cuBLASLt offers it), and the timed choice. */
bool test_linear_gelu_matches_cpu(void)
{
    static const enum cuda_dgelu_path paths[] = {CUDA_DGELU_TIMED, CUDA_DGELU_BGRAD_EPILOGUE,
                                                 CUDA_DGELU_EPILOGUE_COLSUM, CUDA_DGELU_EPILOGUE_HALVES,
                                                 CUDA_DGELU_GEMM_KERNEL};
    static const char *const names[] = {"timed", "DGELU_BGRAD epilogue", "DGELU epilogue + column sum",
                                        "DGELU epilogue in row halves + column sum", "GEMM + kernel"};
    bool ok = true;
    /* each backward path under the default forward (cuBLASLt's), then each other forward GEMM
       choice under the timed backward */
    for (int r = 0; r < 5 + OWN_GEMM_MODES - 1; r++) {
        if (r < 5) {
            printf("  backward path: %s\n", names[r]);
            cuda_linear_dgelu_force_path(paths[r]);
        } else {
            cuda_linear_dgelu_force_path(CUDA_DGELU_TIMED);
            force_own_gemm(own_gemm_modes[r - 5]);
        }
        ok &= linear_gelu_case(256, 512, 768, true, true) & linear_gelu_case(128, 96, 256, false, true) &
              linear_gelu_case(100, 72, 200, true, false) & linear_gelu_case(1000, 40, 20, true, true) &
              linear_gelu_case(600, 128, 3072, true, false) &
              linear_gelu_case(257, 64, 256, true, true) & /* halves of 128 and 129 rows */
              linear_gelu_case(300, 200, 392, true, true);
        free_all(); /* a round's cases take ~250 of the test's MAX_ALLOCS host buffers */
    }
    cuda_linear_dgelu_force_path(CUDA_DGELU_TIMED);
    force_own_gemm(CUDA_HOPPER_GEMM_NEVER); /* the default */
    return ok;
}

/* ---- embeddings ---- */

/* vocab_start > 0: the word table is a shard [vocab_start, vocab_start + V) of a larger
 * vocabulary, and tokens outside it give zero rows and no gradient. H not a multiple of 8 takes
 * the kernels' per-element paths, H over 1024 more than one block of columns. */
static bool embedding_case(int64_t vocab_start, int64_t vocab_total, int64_t H)
{
    const int64_t N = 512, V = 37, P = 64; /* few ids: many repeats */
    float *wte = randn(V * H, 0.1f), *wpe = randn(P * H, 0.1f), *dy = randn(N * H, 1.0f);
    float *dwte0 = randn(V * H, 0.01f), *dwpe0 = randn(P * H, 0.01f);
    int32_t *tok = rand_ids(N, vocab_total), *pos = rand_ids(N, P);
    float *y = halloc(N * H * 4), *dwte = copy_f(dwte0, V * H), *dwpe = copy_f(dwpe0, P * H);
    cpu_embedding_forward(H2(y, N, H), H1(tok, DT_I32, N), H2(wte, V, H), vocab_start,
                          H2(wpe, P, H), H1(pos, DT_I32, N));
    cpu_embedding_backward(H2(dwte, V, H), vocab_start, H2(dwpe, P, H), H2(dy, N, H),
                           H1(tok, DT_I32, N), H1(pos, DT_I32, N));
    void *gy = dalloc(N * H * 2), *gtok = to_dev(tok, N * 4), *gpos = to_dev(pos, N * 4);
    void *gwte = to_dev_lp(wte, V * H), *gwpe = to_dev_lp(wpe, P * H);
    void *gdy = to_dev_lp(dy, N * H), *gdwte = to_dev(dwte0, V * H * 4);
    void *gdwpe = to_dev(dwpe0, P * H * 4);
    poison(gy, N * H, A.dt);
    cuda_embedding_forward(D2(gy, A.dt, N, H), D1(gtok, DT_I32, N), D2(gwte, A.dt, V, H),
                           vocab_start, D2(gwpe, A.dt, P, H), D1(gpos, DT_I32, N));
    cuda_embedding_backward(D2(gdwte, DT_F32, V, H), vocab_start, D2(gdwpe, DT_F32, P, H),
                            D2(gdy, A.dt, N, H), D1(gtok, DT_I32, N), D1(gpos, DT_I32, N));
    printf("   embedding rows [%lld, %lld) of a vocabulary of %lld, hidden %lld\n",
           (long long)vocab_start, (long long)(vocab_start + V), (long long)vocab_total,
           (long long)H);
    bool ok = close_to("y", from_dev_lp(gy, N * H), y, N * H, TOL_LP);
    ok &= bitwise("dwte (same adds, same order)", from_dev_f32(gdwte, V * H), dwte, V * H);
    ok &= bitwise("dwpe", from_dev_f32(gdwpe, P * H), dwpe, P * H);
    return ok;
}

/* The position gradient summed by sequence (positions 0 .. seq - 1 in each of the sequences), on
 * both backends, against the scatter by sorted positions: the same sums, bit for bit. More
 * positions than a grid's 65535 rows of blocks take some blocks twice. */
static bool position_case(int64_t seq, int64_t sequences, int64_t H)
{
    const int64_t N = seq * sequences, P = seq + 36; /* the rows past seq left as they were */
    float *dy = randn(N * H, 1.0f), *dwpe0 = randn(P * H, 0.01f);
    int32_t *pos = halloc(N * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) pos[n] = (int32_t)(n % seq);
    float *ref = copy_f(dwpe0, P * H), *cpu = copy_f(dwpe0, P * H);
    cpu_embedding_backward(tensor_none(), 0, H2(ref, P, H), H2(dy, N, H), tensor_none(),
                           H1(pos, DT_I32, N));
    cpu_position_embedding_backward(H2(cpu, P, H), H2(dy, N, H), seq);
    void *gdy = to_dev_lp(dy, N * H), *gd = to_dev(dwpe0, P * H * 4);
    cuda_position_embedding_backward(D2(gd, DT_F32, P, H), D2(gdy, A.dt, N, H), seq);
    printf("   position gradient by sequence, %lld sequences of %lld, hidden %lld\n",
           (long long)(N / seq), (long long)seq, (long long)H);
    bool ok = bitwise("dwpe, CPU, vs the scatter", cpu, ref, P * H);
    ok &= bitwise("dwpe, GPU, vs the scatter", from_dev_f32(gd, P * H), ref, P * H);
    return ok;
}

bool test_embedding_matches_cpu_and_backward_is_bitwise(void)
{
    return embedding_case(0, 37, 96) & embedding_case(20, 90, 96) & embedding_case(0, 37, 100) &
           embedding_case(0, 37, 1100) & position_case(64, 8, 96) & position_case(64, 8, 100) &
           position_case(64, 8, 1100) & position_case(70000, 2, 8);
}

/* ---- norms ---- */

/* Rows scaled as the output layer's gradient comes (op_output_layer_cross_entropy): dy's row n
 * times s[n], here 0.05 .. 2, or absent. */
static float *row_scales(int64_t N, bool scaled)
{
    if (!scaled) return NULL;
    float *s = randn(N, 1.0f);
    for (int64_t n = 0; n < N; n++) s[n] = 0.05f + fminf(fabsf(s[n]), 1.95f);
    return s;
}

static bool layernorm_case(int64_t N, int64_t C, bool scaled)
{
    float *x = randn(N * C, 2.0f), *w = randn(C, 1.0f), *b = randn(C, 0.5f);
    float *dy = randn(N * C, 1.0f), *s = row_scales(N, scaled);
    float *dw0 = randn(C, 0.1f), *db0 = randn(C, 0.1f);
    for (int64_t i = 0; i < N * C; i++) x[i] += 0.5f; /* a nonzero mean */
    round_to_dtype(x, N * C, A.dt);
    float *y = halloc(N * C * 4), *mean = halloc(N * 4), *rstd = halloc(N * 4);
    float *dx = halloc(N * C * 4), *dw = copy_f(dw0, C), *db = copy_f(db0, C);
    cpu_layernorm_forward(H2(y, N, C), H1(mean, DT_F32, N), H1(rstd, DT_F32, N), H2(x, N, C),
                          H1(w, DT_F32, C), H1(b, DT_F32, C), 1e-5f);
    cpu_layernorm_backward(H2(dx, N, C), H1(dw, DT_F32, C), H1(db, DT_F32, C), H2(dy, N, C),
                           H2(x, N, C), H1(w, DT_F32, C), H1(mean, DT_F32, N),
                           H1(rstd, DT_F32, N), s ? H1(s, DT_F32, N) : tensor_none());
    void *gx = to_dev_lp(x, N * C), *gw = to_dev_lp(w, C), *gb = to_dev_lp(b, C);
    void *gs = s ? to_dev(s, N * 4) : NULL;
    void *gdy = to_dev_lp(dy, N * C), *gy = dalloc(N * C * 2), *gdx = dalloc(N * C * 2);
    void *gm = dalloc(N * 4), *gr = dalloc(N * 4);
    void *gdw = to_dev(dw0, C * 4), *gdb = to_dev(db0, C * 4);
    poison(gy, N * C, A.dt), poison(gdx, N * C, A.dt);
    poison(gm, N, DT_F32), poison(gr, N, DT_F32);
    cuda_layernorm_forward(D2(gy, A.dt, N, C), D1(gm, DT_F32, N), D1(gr, DT_F32, N),
                           D2(gx, A.dt, N, C), D1(gw, A.dt, C), D1(gb, A.dt, C), 1e-5f);
    cuda_layernorm_backward(D2(gdx, A.dt, N, C), D1(gdw, DT_F32, C), D1(gdb, DT_F32, C),
                            D2(gdy, A.dt, N, C), D2(gx, A.dt, N, C), D1(gw, A.dt, C),
                            D1(gm, DT_F32, N), D1(gr, DT_F32, N),
                            gs ? D1(gs, DT_F32, N) : tensor_none());
    printf("   layernorm N=%lld C=%lld%s\n", (long long)N, (long long)C,
           s ? ", dy's rows scaled" : "");
    bool ok = close_to("y", from_dev_lp(gy, N * C), y, N * C, TOL_LP);
    ok &= close_to("mean", from_dev_f32(gm, N), mean, N, TOL_F32);
    ok &= close_to("rstd", from_dev_f32(gr, N), rstd, N, TOL_F32);
    ok &= close_to("dx", from_dev_lp(gdx, N * C), dx, N * C, TOL_LP);
    ok &= close_to("dw (+=)", from_dev_f32(gdw, C), dw, C, TOL_F32);
    ok &= close_to("db (+=)", from_dev_f32(gdb, C), db, C, TOL_F32);
    return ok;
}

static bool rmsnorm_case(int64_t N, int64_t C, bool scaled)
{
    float *x = randn(N * C, 2.0f), *w = randn(C, 1.0f), *dy = randn(N * C, 1.0f);
    float *s = row_scales(N, scaled);
    float *dw0 = randn(C, 0.1f);
    float *y = halloc(N * C * 4), *rstd = halloc(N * 4), *dx = halloc(N * C * 4);
    float *dw = copy_f(dw0, C);
    cpu_rmsnorm_forward(H2(y, N, C), H1(rstd, DT_F32, N), H2(x, N, C), H1(w, DT_F32, C), 1e-6f);
    cpu_rmsnorm_backward(H2(dx, N, C), H1(dw, DT_F32, C), H2(dy, N, C), H2(x, N, C),
                         H1(w, DT_F32, C), H1(rstd, DT_F32, N),
                         s ? H1(s, DT_F32, N) : tensor_none());
    void *gx = to_dev_lp(x, N * C), *gw = to_dev_lp(w, C), *gdy = to_dev_lp(dy, N * C);
    void *gs = s ? to_dev(s, N * 4) : NULL;
    void *gy = dalloc(N * C * 2), *gdx = dalloc(N * C * 2), *gr = dalloc(N * 4);
    void *gdw = to_dev(dw0, C * 4);
    poison(gy, N * C, A.dt), poison(gdx, N * C, A.dt), poison(gr, N, DT_F32);
    cuda_rmsnorm_forward(D2(gy, A.dt, N, C), D1(gr, DT_F32, N), D2(gx, A.dt, N, C),
                         D1(gw, A.dt, C), 1e-6f);
    cuda_rmsnorm_backward(D2(gdx, A.dt, N, C), D1(gdw, DT_F32, C), D2(gdy, A.dt, N, C),
                          D2(gx, A.dt, N, C), D1(gw, A.dt, C), D1(gr, DT_F32, N),
                          gs ? D1(gs, DT_F32, N) : tensor_none());
    printf("   rmsnorm N=%lld C=%lld%s\n", (long long)N, (long long)C,
           s ? ", dy's rows scaled" : "");
    bool ok = close_to("y", from_dev_lp(gy, N * C), y, N * C, TOL_LP);
    ok &= close_to("rstd", from_dev_f32(gr, N), rstd, N, TOL_F32);
    ok &= close_to("dx", from_dev_lp(gdx, N * C), dx, N * C, TOL_LP);
    ok &= close_to("dw (+=)", from_dev_f32(gdw, C), dw, C, TOL_F32);
    return ok;
}

/* Widths: the one-pass backward with 1 to 8 pieces per lane (264: a last piece in lane 0 only;
 * 2048: the widest), and past it (2304) or unaligned (100): the dx kernel and column sum. Row
 * counts that leave the backward's last block of rows part full. The output gradient scaled by
 * rows on every path (one warp a row, several, the dx kernel and column sum). */
bool test_norms_match_cpu(void)
{
    return layernorm_case(300, 768, false) & layernorm_case(37, 100, false) &
           layernorm_case(257, 264, false) & layernorm_case(1000, 2048, false) &
           layernorm_case(200, 1600, false) & layernorm_case(300, 1024, false) &
           layernorm_case(130, 2304, false) & rmsnorm_case(300, 1024, false) &
           rmsnorm_case(37, 100, false) & rmsnorm_case(200, 1600, false) &
           rmsnorm_case(129, 4096, false) & layernorm_case(300, 768, true) &
           layernorm_case(200, 1600, true) & layernorm_case(37, 100, true) &
           layernorm_case(130, 2304, true) & rmsnorm_case(300, 1024, true) &
           rmsnorm_case(37, 100, true) & rmsnorm_case(129, 4096, true);
}

/* The backward with no input gradient: dw and db alone, or dw alone. */
static bool norm_weight_grads_case(int64_t N, int64_t C, bool rms, bool with_db)
{
    float *x = randn(N * C, 2.0f), *w = randn(C, 1.0f), *dy = randn(N * C, 1.0f);
    float *dw0 = randn(C, 0.1f), *db0 = randn(C, 0.1f);
    float *y = halloc(N * C * 4), *mean = halloc(N * 4), *rstd = halloc(N * 4);
    float *dw = copy_f(dw0, C), *db = copy_f(db0, C);
    struct tensor hdb = with_db ? H1(db, DT_F32, C) : tensor_none();
    if (rms) {
        cpu_rmsnorm_forward(H2(y, N, C), H1(rstd, DT_F32, N), H2(x, N, C), H1(w, DT_F32, C), 1e-5f);
        cpu_rmsnorm_backward(tensor_none(), H1(dw, DT_F32, C), H2(dy, N, C), H2(x, N, C),
                             H1(w, DT_F32, C), H1(rstd, DT_F32, N), tensor_none());
    } else {
        cpu_layernorm_forward(H2(y, N, C), H1(mean, DT_F32, N), H1(rstd, DT_F32, N), H2(x, N, C),
                              H1(w, DT_F32, C), tensor_none(), 1e-5f);
        cpu_layernorm_backward(tensor_none(), H1(dw, DT_F32, C), hdb, H2(dy, N, C), H2(x, N, C),
                               H1(w, DT_F32, C), H1(mean, DT_F32, N), H1(rstd, DT_F32, N),
                               tensor_none());
    }
    void *gx = to_dev_lp(x, N * C), *gdy = to_dev_lp(dy, N * C);
    void *gm = to_dev(mean, N * 4), *gs = to_dev(rstd, N * 4);
    void *gdw = to_dev(dw0, C * 4), *gdb = to_dev(db0, C * 4);
    if (rms)
        cuda_rmsnorm_backward(tensor_none(), D1(gdw, DT_F32, C), D2(gdy, A.dt, N, C),
                              D2(gx, A.dt, N, C), tensor_none(), D1(gs, DT_F32, N),
                              tensor_none());
    else
        cuda_layernorm_backward(tensor_none(), D1(gdw, DT_F32, C),
                                with_db ? D1(gdb, DT_F32, C) : tensor_none(),
                                D2(gdy, A.dt, N, C), D2(gx, A.dt, N, C), tensor_none(),
                                D1(gm, DT_F32, N), D1(gs, DT_F32, N), tensor_none());
    printf("   %s backward, weight gradients only%s, N=%lld C=%lld\n",
           rms ? "rmsnorm" : "layernorm", !rms && !with_db ? " (no db)" : "", (long long)N,
           (long long)C);
    bool ok = close_to("dw (+=)", from_dev_f32(gdw, C), dw, C, TOL_F32);
    if (!rms)
        ok &= close_to(with_db ? "db (+=)" : "db untouched", from_dev_f32(gdb, C), db, C, TOL_F32);
    return ok;
}

bool test_norm_weight_gradients_alone_match_cpu(void)
{
    return norm_weight_grads_case(300, 768, false, true) &
           norm_weight_grads_case(300, 768, false, false) &
           norm_weight_grads_case(37, 100, false, true) &
           norm_weight_grads_case(300, 1024, true, true) &
           norm_weight_grads_case(300, 1600, false, true) & /* rows by several warps each */
           norm_weight_grads_case(200, 1600, true, true);
}

/* mid = residual + dropout(x + b) then the norm, fused, against the CPU's two ops on the same
 * inputs with mid rounded to the 16-bit type in between (the GPU normalizes mid as it stores it). C = 2304
 * is past the kernel's registers and takes the two-kernel path. */
static bool bias_dropout_add_norm_case(int64_t N, int64_t C, bool rms, float p, bool in_place)
{
    struct dropout_key drop = {p, A.seed, 31, 777, NULL};
    float *x = randn(N * C, 1.0f), *b = randn(C, 0.5f), *r = randn(N * C, 1.0f);
    float *w = randn(C, 1.0f), *nb = randn(C, 0.5f);
    for (int64_t i = 0; i < N * C; i++) r[i] += 0.5f; /* a nonzero mean */
    round_to_dtype(r, N * C, A.dt);
    float *mid = halloc(N * C * 4), *y = halloc(N * C * 4), *mean = halloc(N * 4);
    float *rstd = halloc(N * 4);
    cpu_bias_dropout_add_forward(H2(mid, N, C), H2(x, N, C), H1(b, DT_F32, C), H2(r, N, C), drop);
    round_to_dtype(mid, N * C, A.dt);
    if (rms)
        cpu_rmsnorm_forward(H2(y, N, C), H1(rstd, DT_F32, N), H2(mid, N, C), H1(w, DT_F32, C), 1e-5f);
    else
        cpu_layernorm_forward(H2(y, N, C), H1(mean, DT_F32, N), H1(rstd, DT_F32, N), H2(mid, N, C),
                              H1(w, DT_F32, C), H1(nb, DT_F32, C), 1e-5f);

    void *gx = to_dev_lp(x, N * C), *gb = to_dev_lp(b, C), *gr = to_dev_lp(r, N * C);
    void *gw = to_dev_lp(w, C), *gnb = to_dev_lp(nb, C);
    void *gmid = in_place ? gr : dalloc(N * C * 2), *gy = dalloc(N * C * 2);
    void *gm = dalloc(N * 4), *gs = dalloc(N * 4);
    if (!in_place) poison(gmid, N * C, A.dt);
    poison(gy, N * C, A.dt), poison(gm, N, DT_F32), poison(gs, N, DT_F32);
    if (rms)
        cuda_bias_dropout_add_rmsnorm_forward(D2(gmid, A.dt, N, C), D2(gy, A.dt, N, C),
                                              D1(gs, DT_F32, N), D2(gx, A.dt, N, C),
                                              D1(gb, A.dt, C), D2(gr, A.dt, N, C), drop,
                                              D1(gw, A.dt, C), 1e-5f);
    else
        cuda_bias_dropout_add_layernorm_forward(D2(gmid, A.dt, N, C), D2(gy, A.dt, N, C),
                                                D1(gm, DT_F32, N), D1(gs, DT_F32, N),
                                                D2(gx, A.dt, N, C), D1(gb, A.dt, C),
                                                D2(gr, A.dt, N, C), drop, D1(gw, A.dt, C),
                                                D1(gnb, A.dt, C), 1e-5f);
    printf("   bias-dropout-add + %s N=%lld C=%lld p=%.1f%s\n", rms ? "rmsnorm" : "layernorm",
           (long long)N, (long long)C, p, in_place ? " (mid over the residual)" : "");
    bool ok = close_to("mid", from_dev_lp(gmid, N * C), mid, N * C, TOL_LP);
    ok &= close_to("y", from_dev_lp(gy, N * C), y, N * C, TOL_LP);
    if (!rms) ok &= close_to("mean", from_dev_f32(gm, N), mean, N, TOL_F32);
    ok &= close_to("rstd", from_dev_f32(gs, N), rstd, N, TOL_F32);
    return ok;
}

bool test_bias_dropout_add_norm_matches_cpu(void)
{
    return bias_dropout_add_norm_case(300, 768, false, 0.1f, false) &
           bias_dropout_add_norm_case(300, 768, false, 0.0f, true) &
           bias_dropout_add_norm_case(37, 100, false, 0.1f, true) &
           bias_dropout_add_norm_case(64, 2048, false, 0.1f, false) &
           bias_dropout_add_norm_case(16, 2304, false, 0.1f, false) &
           bias_dropout_add_norm_case(300, 1024, true, 0.1f, true) &
           bias_dropout_add_norm_case(37, 100, true, 0.0f, false);
}

/* dx = norm' + dresidual, once into its own buffer and once over dresidual, and dresidual's column
 * sums both times. */
static bool norm_backward_add_case(int64_t N, int64_t C, bool rms)
{
    float *x = randn(N * C, 2.0f), *w = randn(C, 1.0f), *dy = randn(N * C, 1.0f);
    float *dres = randn(N * C, 1.0f), *dw0 = randn(C, 0.1f), *db0 = randn(C, 0.1f);
    float *rs0 = randn(C, 0.1f);
    for (int64_t i = 0; i < N * C; i++) x[i] += 0.5f;
    round_to_dtype(x, N * C, A.dt);
    round_to_dtype(dres, N * C, A.dt);
    float *y = halloc(N * C * 4), *mean = halloc(N * 4), *rstd = halloc(N * 4);
    float *dx = halloc(N * C * 4), *dw = copy_f(dw0, C), *db = copy_f(db0, C), *rs = copy_f(rs0, C);
    if (rms) {
        cpu_rmsnorm_forward(H2(y, N, C), H1(rstd, DT_F32, N), H2(x, N, C), H1(w, DT_F32, C), 1e-5f);
        cpu_rmsnorm_backward_add(H2(dx, N, C), H1(dw, DT_F32, C), H2(dy, N, C), H2(x, N, C),
                                 H1(w, DT_F32, C), H1(rstd, DT_F32, N), H2(dres, N, C),
                                 H1(rs, DT_F32, C));
    } else {
        cpu_layernorm_forward(H2(y, N, C), H1(mean, DT_F32, N), H1(rstd, DT_F32, N), H2(x, N, C),
                              H1(w, DT_F32, C), tensor_none(), 1e-5f);
        cpu_layernorm_backward_add(H2(dx, N, C), H1(dw, DT_F32, C), H1(db, DT_F32, C),
                                   H2(dy, N, C), H2(x, N, C), H1(w, DT_F32, C),
                                   H1(mean, DT_F32, N), H1(rstd, DT_F32, N), H2(dres, N, C),
                                   H1(rs, DT_F32, C));
    }
    void *gx = to_dev_lp(x, N * C), *gw = to_dev_lp(w, C), *gdy = to_dev_lp(dy, N * C);
    void *gdres = to_dev_lp(dres, N * C), *gdres2 = to_dev_lp(dres, N * C);
    void *gm = to_dev(mean, N * 4), *gs = to_dev(rstd, N * 4), *gdx = dalloc(N * C * 2);
    void *gdw = to_dev(dw0, C * 4), *gdb = to_dev(db0, C * 4);
    void *grs = to_dev(rs0, C * 4), *grs2 = to_dev(rs0, C * 4);
    poison(gdx, N * C, A.dt);
    if (rms) {
        cuda_rmsnorm_backward_add(D2(gdx, A.dt, N, C), D1(gdw, DT_F32, C), D2(gdy, A.dt, N, C),
                                  D2(gx, A.dt, N, C), D1(gw, A.dt, C), D1(gs, DT_F32, N),
                                  D2(gdres, A.dt, N, C), D1(grs, DT_F32, C));
        cuda_rmsnorm_backward_add(D2(gdres2, A.dt, N, C), tensor_none(), D2(gdy, A.dt, N, C),
                                  D2(gx, A.dt, N, C), D1(gw, A.dt, C), D1(gs, DT_F32, N),
                                  D2(gdres2, A.dt, N, C), D1(grs2, DT_F32, C));
    } else {
        cuda_layernorm_backward_add(D2(gdx, A.dt, N, C), D1(gdw, DT_F32, C), D1(gdb, DT_F32, C),
                                    D2(gdy, A.dt, N, C), D2(gx, A.dt, N, C),
                                    D1(gw, A.dt, C), D1(gm, DT_F32, N), D1(gs, DT_F32, N),
                                    D2(gdres, A.dt, N, C), D1(grs, DT_F32, C));
        cuda_layernorm_backward_add(D2(gdres2, A.dt, N, C), tensor_none(), tensor_none(),
                                    D2(gdy, A.dt, N, C), D2(gx, A.dt, N, C),
                                    D1(gw, A.dt, C), D1(gm, DT_F32, N), D1(gs, DT_F32, N),
                                    D2(gdres2, A.dt, N, C), D1(grs2, DT_F32, C));
    }
    printf("   %s backward + residual N=%lld C=%lld\n", rms ? "rmsnorm" : "layernorm", (long long)N,
           (long long)C);
    bool ok = close_to("dx = norm' + dresidual", from_dev_lp(gdx, N * C), dx, N * C, TOL_LP);
    ok &= close_to("dx over dresidual", from_dev_lp(gdres2, N * C), dx, N * C, TOL_LP);
    ok &= close_to("dw (+=)", from_dev_f32(gdw, C), dw, C, TOL_F32);
    if (!rms) ok &= close_to("db (+=)", from_dev_f32(gdb, C), db, C, TOL_F32);
    ok &= close_to("dresidual's column sums (+=)", from_dev_f32(grs, C), rs, C, TOL_F32);
    ok &= close_to("... with dx over dresidual", from_dev_f32(grs2, C), rs, C, TOL_F32);
    return ok;
}

bool test_norm_backward_add_matches_cpu(void)
{
    return norm_backward_add_case(300, 768, false) & norm_backward_add_case(37, 100, false) &
           norm_backward_add_case(1000, 2048, false) & norm_backward_add_case(70, 3072, false) &
           norm_backward_add_case(300, 1600, false) & norm_backward_add_case(600, 1024, false) &
           norm_backward_add_case(300, 1024, true) & norm_backward_add_case(37, 100, true) &
           norm_backward_add_case(520, 1280, true) & norm_backward_add_case(37, 1000, false);
}

/* ---- activations ---- */

static bool gelu_case(int64_t n, bool tanh_approx)
{
    float *x = randn(n, 2.0f), *dy = randn(n, 1.0f), *y = halloc(n * 4), *dx = halloc(n * 4);
    cpu_gelu_forward(H1(y, DT_F32, n), H1(x, DT_F32, n), tanh_approx);
    cpu_gelu_backward(H1(dx, DT_F32, n), H1(dy, DT_F32, n), H1(x, DT_F32, n), tanh_approx);
    void *gx = to_dev_lp(x, n), *gdy = to_dev_lp(dy, n);
    void *gy = dalloc(n * 2), *gdx = dalloc(n * 2);
    poison(gy, n, A.dt), poison(gdx, n, A.dt);
    cuda_gelu_forward(D1(gy, A.dt, n), D1(gx, A.dt, n), tanh_approx);
    cuda_gelu_backward(D1(gdx, A.dt, n), D1(gdy, A.dt, n), D1(gx, A.dt, n), tanh_approx);
    printf("   gelu n=%lld tanh=%d\n", (long long)n, tanh_approx);
    return close_to("y", from_dev_lp(gy, n), y, n, TOL_LP) &
           close_to("dx", from_dev_lp(gdx, n), dx, n, TOL_LP);
}

static bool swiglu_case(int64_t N, int64_t F)
{
    float *x = randn(N * 2 * F, 2.0f), *dy = randn(N * F, 1.0f);
    float *y = halloc(N * F * 4), *dx = halloc(N * 2 * F * 4);
    cpu_swiglu_forward(H2(y, N, F), H2(x, N, 2 * F));
    cpu_swiglu_backward(H2(dx, N, 2 * F), H2(dy, N, F), H2(x, N, 2 * F));
    void *gx = to_dev_lp(x, N * 2 * F), *gdy = to_dev_lp(dy, N * F);
    void *gy = dalloc(N * F * 2), *gdx = dalloc(N * 2 * F * 2);
    poison(gy, N * F, A.dt), poison(gdx, N * 2 * F, A.dt);
    cuda_swiglu_forward(D2(gy, A.dt, N, F), D2(gx, A.dt, N, 2 * F));
    cuda_swiglu_backward(D2(gdx, A.dt, N, 2 * F), D2(gdy, A.dt, N, F),
                         D2(gx, A.dt, N, 2 * F));
    printf("   swiglu N=%lld F=%lld\n", (long long)N, (long long)F);
    return close_to("y", from_dev_lp(gy, N * F), y, N * F, TOL_LP) &
           close_to("dx", from_dev_lp(gdx, N * 2 * F), dx, N * 2 * F, TOL_LP);
}

bool test_activations_match_cpu(void)
{
    return gelu_case(100000, false) & gelu_case(1001, true) & swiglu_case(64, 256) &
           swiglu_case(9, 100);
}
