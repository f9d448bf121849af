/* GPU checks of the CUDA backend (kernels/cuda/): every CUDA op against the CPU op (the reference)
 * on fresh random inputs, the fused ops included, AdamW bitwise, the sum of squares, dropout
 * masks, determinism.
 * Needs a GPU; `make test-gpu` builds and runs it. `--dry-run` needs none: it builds and validates
 * the cuDNN attention graphs through the cuDNN library alone. Each test runs in its own process,
 * so one crash cannot hide the others' results (the parent never initializes CUDA: a CUDA context
 * does not survive fork); `--in-process` runs them in this process instead, for compute-sanitizer,
 * which did not instrument the forked children. Output follows cmocka's summary lines.
 *
 * Method: inputs are drawn in fp32 and rounded to bf16 (the GPU's storage); the CPU op runs in fp32
 * on exactly those values; outputs are compared by relative L2 error ||gpu - cpu|| / ||cpu||.
 * Tolerances: a bf16 output carries its own rounding, a relative error up to 2^-9 per element,
 * about 1.1e-3 in L2 for uniform rounding; the GPU also rounds a few intermediates to bf16
 * (attention's P and dS, as cuDNN does), which adds a few 1e-3. So bf16 outputs must agree to
 * TOL_BF16 = 1e-2. fp32 outputs (parameter gradients, statistics, losses) come from the same bf16
 * inputs with fp32 arithmetic in another order: TOL_F32 = 1e-4 (observed errors are near 1e-6).
 * Outputs are poisoned with NaN before every run and a NaN anywhere fails the check. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/rng.h"
#include "optim/adam.h"
#include "optim/clip.h"
#include "util/error.h"

#define TOL_BF16 1e-2
#define TOL_F32 1e-4

/* ---- per-test allocations, freed together when the test ends ---- */

enum { MAX_ALLOCS = 256 };
struct allocs {
    void *host[MAX_ALLOCS], *dev[MAX_ALLOCS];
    int nhost, ndev;
    uint64_t seed, counter; /* random stream of this test */
};
static struct allocs A;

static void *halloc(size_t bytes)
{
    CHECK(A.nhost < MAX_ALLOCS);
    return A.host[A.nhost++] = xcalloc(1, bytes ? bytes : 1);
}

static void *dalloc(size_t bytes)
{
    CHECK(A.ndev < MAX_ALLOCS);
    return A.dev[A.ndev++] = cuda_alloc(bytes);
}

static void free_all(void)
{
    for (int i = 0; i < A.nhost; i++) free(A.host[i]);
    for (int i = 0; i < A.ndev; i++) cuda_free(A.dev[i]);
    A.nhost = A.ndev = 0;
}

/* ---- data ---- */

/* n normal values times scale, rounded to bf16 (what the GPU will hold). */
static float *randn(int64_t n, float scale)
{
    float *x = halloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = (float)rng_normal(A.seed, 1, A.counter++) * scale;
    round_to_dtype(x, n, DT_BF16);
    return x;
}

static int32_t *rand_ids(int64_t n, int64_t bound)
{
    int32_t *x = halloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) x[i] = (int32_t)(rng_bits(A.seed, 2, A.counter++) % bound);
    return x;
}

static float *copy_f(const float *x, int64_t n)
{
    float *y = halloc((size_t)n * sizeof(float));
    memcpy(y, x, (size_t)n * sizeof(float));
    return y;
}

static void *to_dev_bf16(const float *x, int64_t n)
{
    uint16_t *h = halloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(x[i]);
    void *d = dalloc((size_t)n * 2);
    cuda_memcpy_h2d(d, h, (size_t)n * 2);
    return d;
}

static void *to_dev(const void *x, size_t bytes)
{
    void *d = dalloc(bytes);
    cuda_memcpy_h2d(d, x, bytes);
    return d;
}

/* Fills device memory with NaN so an unwritten output cannot pass. */
static void poison(void *d, int64_t n, enum dtype dt)
{
    size_t es = dtype_size(dt);
    unsigned char *h = halloc((size_t)n * es);
    for (int64_t i = 0; i < n; i++) {
        if (dt == DT_BF16) {
            uint16_t v = 0x7fc0;
            memcpy(h + i * es, &v, 2);
        } else {
            float v = NAN;
            memcpy(h + i * es, &v, 4);
        }
    }
    cuda_memcpy_h2d(d, h, (size_t)n * es);
}

static float *from_dev_bf16(const void *d, int64_t n)
{
    uint16_t *h = halloc((size_t)n * 2);
    cuda_memcpy_d2h(h, d, (size_t)n * 2);
    float *x = halloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = bf16_to_f32(h[i]);
    return x;
}

static float *from_dev_f32(const void *d, int64_t n)
{
    float *x = halloc((size_t)n * sizeof(float));
    cuda_memcpy_d2h(x, d, (size_t)n * sizeof(float));
    return x;
}

static struct tensor H2(float *p, int64_t a, int64_t b)
{
    return tensor_2d(p, DT_F32, DEV_CPU, a, b);
}
static struct tensor H1(void *p, enum dtype dt, int64_t a) { return tensor_1d(p, dt, DEV_CPU, a); }
static struct tensor D2(void *p, enum dtype dt, int64_t a, int64_t b)
{
    return tensor_2d(p, dt, DEV_CUDA, a, b);
}
static struct tensor D1(void *p, enum dtype dt, int64_t a) { return tensor_1d(p, dt, DEV_CUDA, a); }

/* ---- comparison ---- */

static double rel_l2(const float *got, const float *want, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(want[i])) return INFINITY;
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static bool close_to(const char *what, const float *got, const float *want, int64_t n, double tol)
{
    double e = rel_l2(got, want, n);
    bool ok = e <= tol;
    printf("    %-34s rel L2 %.2e (tol %.0e) %s\n", what, e, tol, ok ? "ok" : "FAIL");
    return ok;
}

static bool bitwise(const char *what, const float *got, const float *want, int64_t n)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += memcmp(&got[i], &want[i], sizeof(float)) != 0;
    printf("    %-34s %lld of %lld differ bitwise %s\n", what, (long long)bad, (long long)n,
           bad ? "FAIL" : "ok");
    return bad == 0;
}

/* ---- dense layers ---- */

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

    void *gx = to_dev_bf16(x, N * in), *gw = to_dev_bf16(w, out * in), *gb = to_dev_bf16(b, out);
    void *gdy = to_dev_bf16(dy, N * out), *gy = dalloc(N * out * 2), *gdx = dalloc(N * in * 2);
    void *gdw = to_dev(dw0, out * in * 4), *gdb = to_dev(db0, out * 4);
    poison(gy, N * out, DT_BF16);
    poison(gdx, N * in, DT_BF16);
    cuda_linear_forward(D2(gy, DT_BF16, N, out), D2(gx, DT_BF16, N, in),
                        D2(gw, DT_BF16, out, in), bias ? D1(gb, DT_BF16, out) : tensor_none());
    cuda_linear_backward(D2(gdx, DT_BF16, N, in), D2(gdw, DT_F32, out, in), D1(gdb, DT_F32, out),
                         D2(gdy, DT_BF16, N, out), D2(gx, DT_BF16, N, in),
                         D2(gw, DT_BF16, out, in));
    printf("   N=%lld in=%lld out=%lld bias=%d\n", (long long)N, (long long)in, (long long)out,
           bias);
    bool ok = close_to("y", from_dev_bf16(gy, N * out), y, N * out, TOL_BF16);
    ok &= close_to("dx", from_dev_bf16(gdx, N * in), dx, N * in, TOL_BF16);
    ok &= close_to("dw (+=, fp32)", from_dev_f32(gdw, out * in), dw, out * in, TOL_F32);
    ok &= close_to("db (+=, fp32)", from_dev_f32(gdb, out), db, out, TOL_F32);
    return ok;
}

static bool test_linear_matches_cpu(void)
{
    return linear_case(256, 512, 768, true) & linear_case(100, 72, 200, false) &
           linear_case(33, 40, 24, true);
}

/* The two GeLU forms differ by less than bf16's rounding per element, but over many elements the
 * output sits measurably closer (in L2) to the form that computed it (about 1% for y, simulated
 * with bf16 rounding: never the wrong way in 300 draws of 20000 elements): a check that the right
 * form ran (cuBLASLt's epilogue, say), which the tolerances alone could not make. */
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

/* The GEMM + kernel path applies the GeLU to the stored bf16 pre, so its y is the requested form
 * on those values rounded to bf16: at most one bf16 step away (the GPU's and the CPU's tanhf and
 * erff may differ in their last fp32 bit), and rarely that. Below pre = -2.5 both forms compute
 * 1 + (a number near -1), where that last bit is a large part of the result: those elements are
 * left to the tolerance checks. The forms differ by less than a bf16 step over most of the range,
 * so statistics on a few hundred distinct bf16 inputs could not tell them apart; this exact check
 * makes the form's computation, not its name, what is tested. */
static bool rounds_to_form(const char *what, const float *got, const float *form, const float *pre, int64_t n)
{
    int64_t off_by_one = 0, worse = 0, tail = 0;
    for (int64_t i = 0; i < n; i++) {
        if (pre[i] < -2.5f) {
            tail++;
            continue;
        }
        float want = form[i];
        round_to_dtype(&want, 1, DT_BF16);
        if (got[i] == want) continue;
        float step = fabsf(want) * 0x1p-7f; /* one bf16 step at this magnitude (8 significant bits) */
        if (fabsf(got[i] - want) <= step * 1.01f) off_by_one++;
        else worse++;
    }
    bool ok = worse == 0 && off_by_one * 1000 <= n;
    printf("    %-34s %lld of %lld one bf16 step off, %lld further (%lld below -2.5 not counted): %s\n", what,
           (long long)off_by_one, (long long)n, (long long)worse, (long long)tail, ok ? "ok" : "FAIL");
    return ok;
}

/* linear_fc1 + GeLU forward, and linear_fc2's backward through the GeLU (independent inputs, so
 * the backward is checked on its own). Which path ran (cuBLASLt epilogue or GEMM + kernel) is
 * printed: the tanh form with widths that are multiples of 8 should take the epilogue. */
static bool linear_gelu_case(int64_t N, int64_t in, int64_t F, bool bias, bool tanh_approx)
{
    float *x = randn(N * in, 1.0f), *w1 = randn(F * in, 0.05f), *b1 = randn(F, 0.5f);
    float *y = halloc(N * F * 4), *pre = halloc(N * F * 4);
    struct tensor hb = bias ? H1(b1, DT_F32, F) : tensor_none();
    cpu_linear_gelu_forward(H2(y, N, F), H2(pre, N, F), H2(x, N, in), H2(w1, F, in), hb, tanh_approx);
    void *gx = to_dev_bf16(x, N * in), *gw1 = to_dev_bf16(w1, F * in), *gb1 = to_dev_bf16(b1, F);
    void *gy = dalloc(N * F * 2), *gpre = dalloc(N * F * 2);
    poison(gy, N * F, DT_BF16), poison(gpre, N * F, DT_BF16);
    cuda_linear_gelu_forward(D2(gy, DT_BF16, N, F), D2(gpre, DT_BF16, N, F), D2(gx, DT_BF16, N, in),
                             D2(gw1, DT_BF16, F, in), bias ? D1(gb1, DT_BF16, F) : tensor_none(),
                             tanh_approx);
    bool fwd_epilogue = cuda_linear_gelu_paths().forward_epilogue;

    /* fc2: F -> in; its input act and the saved pre drawn afresh */
    float *act = randn(N * F, 1.0f), *pre2 = randn(N * F, 2.0f), *w2 = randn(in * F, 0.05f);
    float *dy = randn(N * in, 1.0f), *dw0 = randn(in * F, 0.01f), *db0 = randn(F, 0.01f);
    float *dpre = halloc(N * F * 4), *dw = copy_f(dw0, in * F), *db = copy_f(db0, F);
    cpu_linear_dgelu_backward(H2(dpre, N, F), bias ? H1(db, DT_F32, F) : tensor_none(),
                              H2(dw, in, F), H2(dy, N, in), H2(act, N, F), H2(w2, in, F),
                              H2(pre2, N, F), tanh_approx);
    void *gact = to_dev_bf16(act, N * F), *gpre2 = to_dev_bf16(pre2, N * F);
    void *gw2 = to_dev_bf16(w2, in * F), *gdy = to_dev_bf16(dy, N * in);
    void *gdpre = dalloc(N * F * 2), *gdw = to_dev(dw0, in * F * 4), *gdb = to_dev(db0, F * 4);
    poison(gdpre, N * F, DT_BF16);
    cuda_linear_dgelu_backward(D2(gdpre, DT_BF16, N, F), bias ? D1(gdb, DT_F32, F) : tensor_none(),
                               D2(gdw, DT_F32, in, F), D2(gdy, DT_BF16, N, in),
                               D2(gact, DT_BF16, N, F), D2(gw2, DT_BF16, in, F),
                               D2(gpre2, DT_BF16, N, F), tanh_approx);
    bool bwd_epilogue = cuda_linear_gelu_paths().backward_epilogue;
    printf("   N=%lld in=%lld F=%lld bias=%d tanh=%d: forward %s, backward %s\n", (long long)N,
           (long long)in, (long long)F, bias, tanh_approx,
           fwd_epilogue ? "cuBLASLt GELU_AUX epilogue" : "GEMM + kernel",
           bwd_epilogue ? "cuBLASLt DGELU epilogue" : "GEMM + kernel");
    float *gpre_h = from_dev_bf16(gpre, N * F), *gy_h = from_dev_bf16(gy, N * F);
    float *gdpre_h = from_dev_bf16(gdpre, N * F);
    bool ok = close_to("pre", gpre_h, pre, N * F, TOL_BF16);
    ok &= close_to("y = gelu(pre)", gy_h, y, N * F, TOL_BF16);
    ok &= close_to("dpre", gdpre_h, dpre, N * F, TOL_BF16);
    /* both forms of y on the pre the GPU applied the GeLU to (the epilogue: the fp32 product, as
     * the CPU's; the kernel: the stored bf16 pre), and of dpre (with a throwaway bias gradient) */
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
    /* The epilogue sums the fp32 products; the GEMM + kernel path stores dy w as bf16 before the
     * GeLU's derivative (as the unfused ops did), so its sum carries that rounding (~1e-3). */
    if (bias)
        ok &= close_to(bwd_epilogue ? "fc1 db (+=, fp32)" : "fc1 db (+=, from bf16 dy w)",
                       from_dev_f32(gdb, F), db, F, bwd_epilogue ? TOL_F32 : TOL_BF16);
    return ok;
}

static bool test_linear_gelu_matches_cpu(void)
{
    return linear_gelu_case(256, 512, 768, true, true) & linear_gelu_case(128, 96, 256, false, true) &
           linear_gelu_case(100, 72, 200, true, false) &
           linear_gelu_case(1000, 40, 20, true, true) &
           linear_gelu_case(600, 128, 3072, true, false);
}

/* ---- embeddings ---- */

/* vocab_start > 0: the word table is a shard [vocab_start, vocab_start + V) of a larger
 * vocabulary, and tokens outside it give zero rows and no gradient. */
static bool embedding_case(int64_t vocab_start, int64_t vocab_total)
{
    const int64_t N = 512, H = 96, V = 37, P = 64; /* few ids: many repeats */
    float *wte = randn(V * H, 0.1f), *wpe = randn(P * H, 0.1f), *dy = randn(N * H, 1.0f);
    float *dwte0 = randn(V * H, 0.01f), *dwpe0 = randn(P * H, 0.01f);
    int32_t *tok = rand_ids(N, vocab_total), *pos = rand_ids(N, P);
    float *y = halloc(N * H * 4), *dwte = copy_f(dwte0, V * H), *dwpe = copy_f(dwpe0, P * H);
    cpu_embedding_forward(H2(y, N, H), H1(tok, DT_I32, N), H2(wte, V, H), vocab_start,
                          H2(wpe, P, H), H1(pos, DT_I32, N));
    cpu_embedding_backward(H2(dwte, V, H), vocab_start, H2(dwpe, P, H), H2(dy, N, H),
                           H1(tok, DT_I32, N), H1(pos, DT_I32, N));
    void *gy = dalloc(N * H * 2), *gtok = to_dev(tok, N * 4), *gpos = to_dev(pos, N * 4);
    void *gwte = to_dev_bf16(wte, V * H), *gwpe = to_dev_bf16(wpe, P * H);
    void *gdy = to_dev_bf16(dy, N * H), *gdwte = to_dev(dwte0, V * H * 4);
    void *gdwpe = to_dev(dwpe0, P * H * 4);
    poison(gy, N * H, DT_BF16);
    cuda_embedding_forward(D2(gy, DT_BF16, N, H), D1(gtok, DT_I32, N), D2(gwte, DT_BF16, V, H),
                           vocab_start, D2(gwpe, DT_BF16, P, H), D1(gpos, DT_I32, N));
    cuda_embedding_backward(D2(gdwte, DT_F32, V, H), vocab_start, D2(gdwpe, DT_F32, P, H),
                            D2(gdy, DT_BF16, N, H), D1(gtok, DT_I32, N), D1(gpos, DT_I32, N));
    printf("   embedding rows [%lld, %lld) of a vocabulary of %lld\n", (long long)vocab_start,
           (long long)(vocab_start + V), (long long)vocab_total);
    bool ok = close_to("y", from_dev_bf16(gy, N * H), y, N * H, TOL_BF16);
    ok &= bitwise("dwte (same adds, same order)", from_dev_f32(gdwte, V * H), dwte, V * H);
    ok &= bitwise("dwpe", from_dev_f32(gdwpe, P * H), dwpe, P * H);
    return ok;
}

static bool test_embedding_matches_cpu_and_backward_is_bitwise(void)
{
    return embedding_case(0, 37) & embedding_case(20, 90);
}

/* ---- norms ---- */

static bool layernorm_case(int64_t N, int64_t C)
{
    float *x = randn(N * C, 2.0f), *w = randn(C, 1.0f), *b = randn(C, 0.5f);
    float *dy = randn(N * C, 1.0f);
    float *dw0 = randn(C, 0.1f), *db0 = randn(C, 0.1f);
    for (int64_t i = 0; i < N * C; i++) x[i] += 0.5f; /* a nonzero mean */
    round_to_dtype(x, N * C, DT_BF16);
    float *y = halloc(N * C * 4), *mean = halloc(N * 4), *rstd = halloc(N * 4);
    float *dx = halloc(N * C * 4), *dw = copy_f(dw0, C), *db = copy_f(db0, C);
    cpu_layernorm_forward(H2(y, N, C), H1(mean, DT_F32, N), H1(rstd, DT_F32, N), H2(x, N, C),
                          H1(w, DT_F32, C), H1(b, DT_F32, C), 1e-5f);
    cpu_layernorm_backward(H2(dx, N, C), H1(dw, DT_F32, C), H1(db, DT_F32, C), H2(dy, N, C),
                           H2(x, N, C), H1(w, DT_F32, C), H1(mean, DT_F32, N),
                           H1(rstd, DT_F32, N));
    void *gx = to_dev_bf16(x, N * C), *gw = to_dev_bf16(w, C), *gb = to_dev_bf16(b, C);
    void *gdy = to_dev_bf16(dy, N * C), *gy = dalloc(N * C * 2), *gdx = dalloc(N * C * 2);
    void *gm = dalloc(N * 4), *gr = dalloc(N * 4);
    void *gdw = to_dev(dw0, C * 4), *gdb = to_dev(db0, C * 4);
    poison(gy, N * C, DT_BF16), poison(gdx, N * C, DT_BF16);
    poison(gm, N, DT_F32), poison(gr, N, DT_F32);
    cuda_layernorm_forward(D2(gy, DT_BF16, N, C), D1(gm, DT_F32, N), D1(gr, DT_F32, N),
                           D2(gx, DT_BF16, N, C), D1(gw, DT_BF16, C), D1(gb, DT_BF16, C), 1e-5f);
    cuda_layernorm_backward(D2(gdx, DT_BF16, N, C), D1(gdw, DT_F32, C), D1(gdb, DT_F32, C),
                            D2(gdy, DT_BF16, N, C), D2(gx, DT_BF16, N, C), D1(gw, DT_BF16, C),
                            D1(gm, DT_F32, N), D1(gr, DT_F32, N));
    printf("   layernorm N=%lld C=%lld\n", (long long)N, (long long)C);
    bool ok = close_to("y", from_dev_bf16(gy, N * C), y, N * C, TOL_BF16);
    ok &= close_to("mean", from_dev_f32(gm, N), mean, N, TOL_F32);
    ok &= close_to("rstd", from_dev_f32(gr, N), rstd, N, TOL_F32);
    ok &= close_to("dx", from_dev_bf16(gdx, N * C), dx, N * C, TOL_BF16);
    ok &= close_to("dw (+=)", from_dev_f32(gdw, C), dw, C, TOL_F32);
    ok &= close_to("db (+=)", from_dev_f32(gdb, C), db, C, TOL_F32);
    return ok;
}

static bool rmsnorm_case(int64_t N, int64_t C)
{
    float *x = randn(N * C, 2.0f), *w = randn(C, 1.0f), *dy = randn(N * C, 1.0f);
    float *dw0 = randn(C, 0.1f);
    float *y = halloc(N * C * 4), *rstd = halloc(N * 4), *dx = halloc(N * C * 4);
    float *dw = copy_f(dw0, C);
    cpu_rmsnorm_forward(H2(y, N, C), H1(rstd, DT_F32, N), H2(x, N, C), H1(w, DT_F32, C), 1e-6f);
    cpu_rmsnorm_backward(H2(dx, N, C), H1(dw, DT_F32, C), H2(dy, N, C), H2(x, N, C),
                         H1(w, DT_F32, C), H1(rstd, DT_F32, N));
    void *gx = to_dev_bf16(x, N * C), *gw = to_dev_bf16(w, C), *gdy = to_dev_bf16(dy, N * C);
    void *gy = dalloc(N * C * 2), *gdx = dalloc(N * C * 2), *gr = dalloc(N * 4);
    void *gdw = to_dev(dw0, C * 4);
    poison(gy, N * C, DT_BF16), poison(gdx, N * C, DT_BF16), poison(gr, N, DT_F32);
    cuda_rmsnorm_forward(D2(gy, DT_BF16, N, C), D1(gr, DT_F32, N), D2(gx, DT_BF16, N, C),
                         D1(gw, DT_BF16, C), 1e-6f);
    cuda_rmsnorm_backward(D2(gdx, DT_BF16, N, C), D1(gdw, DT_F32, C), D2(gdy, DT_BF16, N, C),
                          D2(gx, DT_BF16, N, C), D1(gw, DT_BF16, C), D1(gr, DT_F32, N));
    printf("   rmsnorm N=%lld C=%lld\n", (long long)N, (long long)C);
    bool ok = close_to("y", from_dev_bf16(gy, N * C), y, N * C, TOL_BF16);
    ok &= close_to("rstd", from_dev_f32(gr, N), rstd, N, TOL_F32);
    ok &= close_to("dx", from_dev_bf16(gdx, N * C), dx, N * C, TOL_BF16);
    ok &= close_to("dw (+=)", from_dev_f32(gdw, C), dw, C, TOL_F32);
    return ok;
}

/* Widths: the one-pass backward with 1 to 8 pieces per lane (264: a last piece in lane 0 only;
 * 2048: the widest), and past it (2304) or unaligned (100): the dx kernel and column sum. Row
 * counts that leave the backward's last block of rows part full. */
static bool test_norms_match_cpu(void)
{
    return layernorm_case(300, 768) & layernorm_case(37, 100) & layernorm_case(257, 264) &
           layernorm_case(1000, 2048) & layernorm_case(130, 2304) & rmsnorm_case(300, 1024) &
           rmsnorm_case(37, 100) & rmsnorm_case(200, 1600) & rmsnorm_case(129, 4096);
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
                             H1(w, DT_F32, C), H1(rstd, DT_F32, N));
    } else {
        cpu_layernorm_forward(H2(y, N, C), H1(mean, DT_F32, N), H1(rstd, DT_F32, N), H2(x, N, C),
                              H1(w, DT_F32, C), tensor_none(), 1e-5f);
        cpu_layernorm_backward(tensor_none(), H1(dw, DT_F32, C), hdb, H2(dy, N, C), H2(x, N, C),
                               H1(w, DT_F32, C), H1(mean, DT_F32, N), H1(rstd, DT_F32, N));
    }
    void *gx = to_dev_bf16(x, N * C), *gdy = to_dev_bf16(dy, N * C);
    void *gm = to_dev(mean, N * 4), *gs = to_dev(rstd, N * 4);
    void *gdw = to_dev(dw0, C * 4), *gdb = to_dev(db0, C * 4);
    if (rms)
        cuda_rmsnorm_backward(tensor_none(), D1(gdw, DT_F32, C), D2(gdy, DT_BF16, N, C),
                              D2(gx, DT_BF16, N, C), tensor_none(), D1(gs, DT_F32, N));
    else
        cuda_layernorm_backward(tensor_none(), D1(gdw, DT_F32, C),
                                with_db ? D1(gdb, DT_F32, C) : tensor_none(),
                                D2(gdy, DT_BF16, N, C), D2(gx, DT_BF16, N, C), tensor_none(),
                                D1(gm, DT_F32, N), D1(gs, DT_F32, N));
    printf("   %s backward, weight gradients only%s, N=%lld C=%lld\n",
           rms ? "rmsnorm" : "layernorm", !rms && !with_db ? " (no db)" : "", (long long)N,
           (long long)C);
    bool ok = close_to("dw (+=)", from_dev_f32(gdw, C), dw, C, TOL_F32);
    if (!rms)
        ok &= close_to(with_db ? "db (+=)" : "db untouched", from_dev_f32(gdb, C), db, C, TOL_F32);
    return ok;
}

static bool test_norm_weight_gradients_alone_match_cpu(void)
{
    return norm_weight_grads_case(300, 768, false, true) &
           norm_weight_grads_case(300, 768, false, false) &
           norm_weight_grads_case(37, 100, false, true) &
           norm_weight_grads_case(300, 1024, true, true);
}

/* mid = residual + dropout(x + b) then the norm, fused, against the CPU's two ops on the same
 * inputs with mid rounded to bf16 in between (the GPU normalizes mid as it stores it). C = 2304
 * is past the kernel's registers and takes the two-kernel path. */
static bool bias_dropout_add_norm_case(int64_t N, int64_t C, bool rms, float p, bool in_place)
{
    struct dropout_key drop = {p, A.seed, 31, 777};
    float *x = randn(N * C, 1.0f), *b = randn(C, 0.5f), *r = randn(N * C, 1.0f);
    float *w = randn(C, 1.0f), *nb = randn(C, 0.5f);
    for (int64_t i = 0; i < N * C; i++) r[i] += 0.5f; /* a nonzero mean */
    round_to_dtype(r, N * C, DT_BF16);
    float *mid = halloc(N * C * 4), *y = halloc(N * C * 4), *mean = halloc(N * 4);
    float *rstd = halloc(N * 4);
    cpu_bias_dropout_add_forward(H2(mid, N, C), H2(x, N, C), H1(b, DT_F32, C), H2(r, N, C), drop);
    round_to_dtype(mid, N * C, DT_BF16);
    if (rms)
        cpu_rmsnorm_forward(H2(y, N, C), H1(rstd, DT_F32, N), H2(mid, N, C), H1(w, DT_F32, C), 1e-5f);
    else
        cpu_layernorm_forward(H2(y, N, C), H1(mean, DT_F32, N), H1(rstd, DT_F32, N), H2(mid, N, C),
                              H1(w, DT_F32, C), H1(nb, DT_F32, C), 1e-5f);

    void *gx = to_dev_bf16(x, N * C), *gb = to_dev_bf16(b, C), *gr = to_dev_bf16(r, N * C);
    void *gw = to_dev_bf16(w, C), *gnb = to_dev_bf16(nb, C);
    void *gmid = in_place ? gr : dalloc(N * C * 2), *gy = dalloc(N * C * 2);
    void *gm = dalloc(N * 4), *gs = dalloc(N * 4);
    if (!in_place) poison(gmid, N * C, DT_BF16);
    poison(gy, N * C, DT_BF16), poison(gm, N, DT_F32), poison(gs, N, DT_F32);
    if (rms)
        cuda_bias_dropout_add_rmsnorm_forward(D2(gmid, DT_BF16, N, C), D2(gy, DT_BF16, N, C),
                                              D1(gs, DT_F32, N), D2(gx, DT_BF16, N, C),
                                              D1(gb, DT_BF16, C), D2(gr, DT_BF16, N, C), drop,
                                              D1(gw, DT_BF16, C), 1e-5f);
    else
        cuda_bias_dropout_add_layernorm_forward(D2(gmid, DT_BF16, N, C), D2(gy, DT_BF16, N, C),
                                                D1(gm, DT_F32, N), D1(gs, DT_F32, N),
                                                D2(gx, DT_BF16, N, C), D1(gb, DT_BF16, C),
                                                D2(gr, DT_BF16, N, C), drop, D1(gw, DT_BF16, C),
                                                D1(gnb, DT_BF16, C), 1e-5f);
    printf("   bias-dropout-add + %s N=%lld C=%lld p=%.1f%s\n", rms ? "rmsnorm" : "layernorm",
           (long long)N, (long long)C, p, in_place ? " (mid over the residual)" : "");
    bool ok = close_to("mid", from_dev_bf16(gmid, N * C), mid, N * C, TOL_BF16);
    ok &= close_to("y", from_dev_bf16(gy, N * C), y, N * C, TOL_BF16);
    if (!rms) ok &= close_to("mean", from_dev_f32(gm, N), mean, N, TOL_F32);
    ok &= close_to("rstd", from_dev_f32(gs, N), rstd, N, TOL_F32);
    return ok;
}

static bool test_bias_dropout_add_norm_matches_cpu(void)
{
    return bias_dropout_add_norm_case(300, 768, false, 0.1f, false) &
           bias_dropout_add_norm_case(300, 768, false, 0.0f, true) &
           bias_dropout_add_norm_case(37, 100, false, 0.1f, true) &
           bias_dropout_add_norm_case(64, 2048, false, 0.1f, false) &
           bias_dropout_add_norm_case(16, 2304, false, 0.1f, false) &
           bias_dropout_add_norm_case(300, 1024, true, 0.1f, true) &
           bias_dropout_add_norm_case(37, 100, true, 0.0f, false);
}

/* dx = norm' + dresidual, once into its own buffer and once over dresidual. */
static bool norm_backward_add_case(int64_t N, int64_t C, bool rms)
{
    float *x = randn(N * C, 2.0f), *w = randn(C, 1.0f), *dy = randn(N * C, 1.0f);
    float *dres = randn(N * C, 1.0f), *dw0 = randn(C, 0.1f), *db0 = randn(C, 0.1f);
    for (int64_t i = 0; i < N * C; i++) x[i] += 0.5f;
    round_to_dtype(x, N * C, DT_BF16);
    float *y = halloc(N * C * 4), *mean = halloc(N * 4), *rstd = halloc(N * 4);
    float *dx = halloc(N * C * 4), *dw = copy_f(dw0, C), *db = copy_f(db0, C);
    if (rms) {
        cpu_rmsnorm_forward(H2(y, N, C), H1(rstd, DT_F32, N), H2(x, N, C), H1(w, DT_F32, C), 1e-5f);
        cpu_rmsnorm_backward_add(H2(dx, N, C), H1(dw, DT_F32, C), H2(dy, N, C), H2(x, N, C),
                                 H1(w, DT_F32, C), H1(rstd, DT_F32, N), H2(dres, N, C));
    } else {
        cpu_layernorm_forward(H2(y, N, C), H1(mean, DT_F32, N), H1(rstd, DT_F32, N), H2(x, N, C),
                              H1(w, DT_F32, C), tensor_none(), 1e-5f);
        cpu_layernorm_backward_add(H2(dx, N, C), H1(dw, DT_F32, C), H1(db, DT_F32, C),
                                   H2(dy, N, C), H2(x, N, C), H1(w, DT_F32, C),
                                   H1(mean, DT_F32, N), H1(rstd, DT_F32, N), H2(dres, N, C));
    }
    void *gx = to_dev_bf16(x, N * C), *gw = to_dev_bf16(w, C), *gdy = to_dev_bf16(dy, N * C);
    void *gdres = to_dev_bf16(dres, N * C), *gdres2 = to_dev_bf16(dres, N * C);
    void *gm = to_dev(mean, N * 4), *gs = to_dev(rstd, N * 4), *gdx = dalloc(N * C * 2);
    void *gdw = to_dev(dw0, C * 4), *gdb = to_dev(db0, C * 4);
    poison(gdx, N * C, DT_BF16);
    if (rms) {
        cuda_rmsnorm_backward_add(D2(gdx, DT_BF16, N, C), D1(gdw, DT_F32, C), D2(gdy, DT_BF16, N, C),
                                  D2(gx, DT_BF16, N, C), D1(gw, DT_BF16, C), D1(gs, DT_F32, N),
                                  D2(gdres, DT_BF16, N, C));
        cuda_rmsnorm_backward_add(D2(gdres2, DT_BF16, N, C), tensor_none(), D2(gdy, DT_BF16, N, C),
                                  D2(gx, DT_BF16, N, C), D1(gw, DT_BF16, C), D1(gs, DT_F32, N),
                                  D2(gdres2, DT_BF16, N, C));
    } else {
        cuda_layernorm_backward_add(D2(gdx, DT_BF16, N, C), D1(gdw, DT_F32, C), D1(gdb, DT_F32, C),
                                    D2(gdy, DT_BF16, N, C), D2(gx, DT_BF16, N, C),
                                    D1(gw, DT_BF16, C), D1(gm, DT_F32, N), D1(gs, DT_F32, N),
                                    D2(gdres, DT_BF16, N, C));
        cuda_layernorm_backward_add(D2(gdres2, DT_BF16, N, C), tensor_none(), tensor_none(),
                                    D2(gdy, DT_BF16, N, C), D2(gx, DT_BF16, N, C),
                                    D1(gw, DT_BF16, C), D1(gm, DT_F32, N), D1(gs, DT_F32, N),
                                    D2(gdres2, DT_BF16, N, C));
    }
    printf("   %s backward + residual N=%lld C=%lld\n", rms ? "rmsnorm" : "layernorm", (long long)N,
           (long long)C);
    bool ok = close_to("dx = norm' + dresidual", from_dev_bf16(gdx, N * C), dx, N * C, TOL_BF16);
    ok &= close_to("dx over dresidual", from_dev_bf16(gdres2, N * C), dx, N * C, TOL_BF16);
    ok &= close_to("dw (+=)", from_dev_f32(gdw, C), dw, C, TOL_F32);
    if (!rms) ok &= close_to("db (+=)", from_dev_f32(gdb, C), db, C, TOL_F32);
    return ok;
}

static bool test_norm_backward_add_matches_cpu(void)
{
    return norm_backward_add_case(300, 768, false) & norm_backward_add_case(37, 100, false) &
           norm_backward_add_case(1000, 2048, false) & norm_backward_add_case(70, 3072, false) &
           norm_backward_add_case(300, 1024, true) & norm_backward_add_case(37, 100, true) &
           norm_backward_add_case(520, 1280, true);
}

/* ---- activations ---- */

static bool gelu_case(int64_t n, bool tanh_approx)
{
    float *x = randn(n, 2.0f), *dy = randn(n, 1.0f), *y = halloc(n * 4), *dx = halloc(n * 4);
    cpu_gelu_forward(H1(y, DT_F32, n), H1(x, DT_F32, n), tanh_approx);
    cpu_gelu_backward(H1(dx, DT_F32, n), H1(dy, DT_F32, n), H1(x, DT_F32, n), tanh_approx);
    void *gx = to_dev_bf16(x, n), *gdy = to_dev_bf16(dy, n);
    void *gy = dalloc(n * 2), *gdx = dalloc(n * 2);
    poison(gy, n, DT_BF16), poison(gdx, n, DT_BF16);
    cuda_gelu_forward(D1(gy, DT_BF16, n), D1(gx, DT_BF16, n), tanh_approx);
    cuda_gelu_backward(D1(gdx, DT_BF16, n), D1(gdy, DT_BF16, n), D1(gx, DT_BF16, n), tanh_approx);
    printf("   gelu n=%lld tanh=%d\n", (long long)n, tanh_approx);
    return close_to("y", from_dev_bf16(gy, n), y, n, TOL_BF16) &
           close_to("dx", from_dev_bf16(gdx, n), dx, n, TOL_BF16);
}

static bool swiglu_case(int64_t N, int64_t F)
{
    float *x = randn(N * 2 * F, 2.0f), *dy = randn(N * F, 1.0f);
    float *y = halloc(N * F * 4), *dx = halloc(N * 2 * F * 4);
    cpu_swiglu_forward(H2(y, N, F), H2(x, N, 2 * F));
    cpu_swiglu_backward(H2(dx, N, 2 * F), H2(dy, N, F), H2(x, N, 2 * F));
    void *gx = to_dev_bf16(x, N * 2 * F), *gdy = to_dev_bf16(dy, N * F);
    void *gy = dalloc(N * F * 2), *gdx = dalloc(N * 2 * F * 2);
    poison(gy, N * F, DT_BF16), poison(gdx, N * 2 * F, DT_BF16);
    cuda_swiglu_forward(D2(gy, DT_BF16, N, F), D2(gx, DT_BF16, N, 2 * F));
    cuda_swiglu_backward(D2(gdx, DT_BF16, N, 2 * F), D2(gdy, DT_BF16, N, F),
                         D2(gx, DT_BF16, N, 2 * F));
    printf("   swiglu N=%lld F=%lld\n", (long long)N, (long long)F);
    return close_to("y", from_dev_bf16(gy, N * F), y, N * F, TOL_BF16) &
           close_to("dx", from_dev_bf16(gdx, N * 2 * F), dx, N * 2 * F, TOL_BF16);
}

static bool test_activations_match_cpu(void)
{
    return gelu_case(100000, false) & gelu_case(1001, true) & swiglu_case(64, 256) &
           swiglu_case(9, 100);
}

/* ---- attention ---- */

/* B, T, heads, groups, head dim; all heads on this rank. */
static struct attention_shape shape(int64_t B, int64_t T, int n, int g, int d)
{
    struct attention_shape s = {.batch = B, .seq = T, .heads = n, .groups = g, .head_dim = d};
    return s;
}

static int64_t qkv_width(struct attention_shape s)
{
    return (int64_t)s.groups * (s.heads / s.groups + 2) * s.head_dim;
}

static bool rope_case(struct attention_shape s, int rotary_dim)
{
    int64_t N = s.batch * s.seq, W = qkv_width(s);
    float *qkv = randn(N * W, 1.0f), *dqkv = randn(N * W, 1.0f);
    int32_t *pos = rand_ids(N, 4096);
    void *gq = to_dev_bf16(qkv, N * W), *gd = to_dev_bf16(dqkv, N * W), *gp = to_dev(pos, N * 4);
    cpu_rope_forward(H2(qkv, N, W), H1(pos, DT_I32, N), s, rotary_dim, 10000.0f);
    cpu_rope_backward(H2(dqkv, N, W), H1(pos, DT_I32, N), s, rotary_dim, 10000.0f);
    cuda_rope_forward(D2(gq, DT_BF16, N, W), D1(gp, DT_I32, N), s, rotary_dim, 10000.0f);
    cuda_rope_backward(D2(gd, DT_BF16, N, W), D1(gp, DT_I32, N), s, rotary_dim, 10000.0f);
    printf("   rope n=%d g=%d d=%d rotary_dim=%d\n", s.heads, s.groups, s.head_dim, rotary_dim);
    return close_to("qkv (in place)", from_dev_bf16(gq, N * W), qkv, N * W, TOL_BF16) &
           close_to("dqkv (in place)", from_dev_bf16(gd, N * W), dqkv, N * W, TOL_BF16);
}

static bool test_rope_matches_cpu(void)
{
    struct attention_shape a = shape(2, 64, 8, 2, 64), b = shape(1, 32, 4, 4, 128);
    return rope_case(a, 64) & rope_case(b, 32);
}

/* The natural-log LSE of every causal score row, in double: the CUDA backend's saved statistic. */
static float *reference_lse(const float *qkv, struct attention_shape s)
{
    int64_t T = s.seq, W = qkv_width(s);
    int per = s.heads / s.groups, d = s.head_dim;
    double scale = (float)(1.0 / sqrt((double)d));
    float *lse = halloc((size_t)s.batch * s.heads * T * 4);
    for (int64_t b = 0; b < s.batch; b++)
        for (int h = 0; h < s.heads; h++)
            for (int64_t t = 0; t < T; t++) {
                int64_t group = (int64_t)(h / per) * (per + 2) * d;
                const float *q = qkv + (b * T + t) * W + group + (int64_t)(h % per) * d;
                double mx = -INFINITY, sum = 0.0, sc[4096];
                CHECK(T <= 4096);
                for (int64_t u = 0; u <= t; u++) {
                    const float *k = qkv + (b * T + u) * W + group + (int64_t)per * d;
                    double dot = 0.0;
                    for (int i = 0; i < d; i++) dot += (double)q[i] * k[i];
                    sc[u] = dot * scale;
                    mx = sc[u] > mx ? sc[u] : mx;
                }
                for (int64_t u = 0; u <= t; u++) sum += exp(sc[u] - mx);
                lse[(b * s.heads + h) * T + t] = (float)(mx + log(sum));
            }
    return lse;
}

static bool attention_case(struct attention_shape s)
{
    int64_t N = s.batch * s.seq, W = qkv_width(s), C = (int64_t)s.heads * s.head_dim;
    int64_t rows = s.batch * s.heads * s.seq;
    struct dropout_key nodrop = {0};
    float *qkv = randn(N * W, 1.0f), *dout = randn(N * C, 1.0f);
    float *out = halloc(N * C * 4), *probs = halloc(rows * s.seq * 4), *dqkv = halloc(N * W * 4);
    struct tensor hprobs = H1(probs, DT_F32, rows * s.seq);
    cpu_attention_forward(H2(out, N, C), hprobs, H2(qkv, N, W), s, nodrop);
    round_to_dtype(out, N * C, DT_BF16); /* the backward reads O as the GPU stores it */
    cpu_attention_backward(H2(dqkv, N, W), H2(dout, N, C), H2(qkv, N, W),
                           hprobs, H2(out, N, C), s, nodrop);
    float *lse = reference_lse(qkv, s);

    void *gq = to_dev_bf16(qkv, N * W), *gdo = to_dev_bf16(dout, N * C);
    void *go = dalloc(N * C * 2), *gl = dalloc(rows * 4), *gd = dalloc(N * W * 2);
    poison(go, N * C, DT_BF16), poison(gl, rows, DT_F32), poison(gd, N * W, DT_BF16);
    int64_t ldims[3] = {s.batch, s.heads, s.seq};
    struct tensor glse = tensor_make(gl, DT_F32, DEV_CUDA, 3, ldims);
    cuda_attention_forward(D2(go, DT_BF16, N, C), glse, D2(gq, DT_BF16, N, W), s, nodrop);
    cuda_attention_backward(D2(gd, DT_BF16, N, W), D2(gdo, DT_BF16, N, C), D2(gq, DT_BF16, N, W),
                            glse, D2(go, DT_BF16, N, C), s, nodrop);
    printf("   attention B=%lld T=%lld n=%d g=%d d=%d\n", (long long)s.batch, (long long)s.seq,
           s.heads, s.groups, s.head_dim);
    bool ok = close_to("out", from_dev_bf16(go, N * C), out, N * C, TOL_BF16);
    ok &= close_to("log-sum-exp (vs double)", from_dev_f32(gl, rows), lse, rows, TOL_F32);
    ok &= close_to("dqkv", from_dev_bf16(gd, N * W), dqkv, N * W, TOL_BF16);
    return ok;
}

static bool test_attention_mha_matches_cpu(void)
{
    struct attention_shape s = shape(2, 256, 4, 4, 64);
    return attention_case(s);
}

static bool test_attention_gqa_matches_cpu(void)
{
    struct attention_shape s = shape(2, 128, 8, 2, 128);
    return attention_case(s);
}

static bool test_attention_seq_not_multiple_of_128_matches_cpu(void)
{
    struct attention_shape s = shape(2, 96, 4, 1, 64);
    return attention_case(s);
}

/* ---- elementwise ---- */

/* Element e of a site is kept iff rng_uniform(seed, stream, offset + e) >= p (ops.h). */
static bool kept(struct dropout_key d, int64_t e)
{
    return rng_uniform(d.seed, d.stream, d.offset + (uint64_t)e) >= d.p;
}

static bool test_bias_dropout_add_matches_cpu_and_cpu_mask(void)
{
    const int64_t N = 200, C = 264;
    struct dropout_key drop = {0.1f, A.seed, 77, 12345};
    float *x = randn(N * C, 1.0f), *b = randn(C, 0.5f), *r = randn(N * C, 1.0f);
    float *dy = randn(N * C, 1.0f), *db0 = randn(C, 0.1f);
    float *y = halloc(N * C * 4), *y2 = halloc(N * C * 4), *dx = halloc(N * C * 4);
    float *db = copy_f(db0, C);
    cpu_bias_dropout_add_forward(H2(y, N, C), H2(x, N, C), H1(b, DT_F32, C), H2(r, N, C), drop);
    cpu_bias_dropout_add_forward(H2(y2, N, C), H2(x, N, C), H1(b, DT_F32, C), tensor_none(), drop);
    cpu_bias_dropout_add_backward(H2(dx, N, C), H1(db, DT_F32, C), H2(dy, N, C), drop);

    void *gx = to_dev_bf16(x, N * C), *gb = to_dev_bf16(b, C), *gr = to_dev_bf16(r, N * C);
    void *gx2 = to_dev_bf16(x, N * C), *gdy = to_dev_bf16(dy, N * C), *gdb = to_dev(db0, C * 4);
    /* y aliases x (in place), y2 has no residual; dx aliases dy */
    cuda_bias_dropout_add_forward(D2(gx, DT_BF16, N, C), D2(gx, DT_BF16, N, C), D1(gb, DT_BF16, C),
                                  D2(gr, DT_BF16, N, C), drop);
    cuda_bias_dropout_add_forward(D2(gx2, DT_BF16, N, C), D2(gx2, DT_BF16, N, C),
                                  D1(gb, DT_BF16, C), tensor_none(), drop);
    cuda_bias_dropout_add_backward(D2(gdy, DT_BF16, N, C), D1(gdb, DT_F32, C),
                                   D2(gdy, DT_BF16, N, C), drop);
    float *gy2 = from_dev_bf16(gx2, N * C), *gdx = from_dev_bf16(gdy, N * C);
    int64_t wrong = 0, dropped = 0;
    for (int64_t e = 0; e < N * C; e++) {
        bool keep = kept(drop, e);
        dropped += !keep;
        if (x[e] + b[e % C] != 0.0f && (gy2[e] != 0.0f) != keep) wrong++;
        if (dy[e] != 0.0f && (gdx[e] != 0.0f) != keep) wrong++;
    }
    printf("    %-34s %lld dropped of %lld, %lld disagree with rng.h %s\n", "masks",
           (long long)dropped, (long long)(N * C), (long long)wrong, wrong ? "FAIL" : "ok");
    bool ok = wrong == 0 && dropped > 0;
    ok &= close_to("y = dropout(x + b) + r", from_dev_bf16(gx, N * C), y, N * C, TOL_BF16);
    ok &= close_to("y = dropout(x + b)", gy2, y2, N * C, TOL_BF16);
    ok &= close_to("dx", gdx, dx, N * C, TOL_BF16);
    ok &= close_to("db (+=)", from_dev_f32(gdb, C), db, C, TOL_F32);
    return ok;
}

static bool test_add_zero_and_copy(void)
{
    const int64_t n = 10007;
    float *a = randn(n, 1.0f), *b = randn(n, 1.0f), *y = halloc(n * 4), *z = halloc(n * 4);
    cpu_add(H1(y, DT_F32, n), H1(a, DT_F32, n), H1(b, DT_F32, n));
    void *ga = to_dev_bf16(a, n), *gb = to_dev_bf16(b, n), *gy = dalloc(n * 2), *gz = dalloc(n * 4);
    void *gc = dalloc(n * 2);
    poison(gy, n, DT_BF16), poison(gz, n, DT_F32), poison(gc, n, DT_BF16);
    cuda_copy(D1(gc, DT_BF16, n), D1(ga, DT_BF16, n)); /* before a changes below */
    cuda_add(D1(gy, DT_BF16, n), D1(ga, DT_BF16, n), D1(gb, DT_BF16, n));
    cuda_add(D1(ga, DT_BF16, n), D1(ga, DT_BF16, n), D1(gb, DT_BF16, n)); /* y aliases a */
    cuda_zero(D1(gz, DT_F32, n));
    bool ok = close_to("y = a + b", from_dev_bf16(gy, n), y, n, TOL_BF16);
    ok &= close_to("a += b (aliased)", from_dev_bf16(ga, n), y, n, TOL_BF16);
    ok &= bitwise("zero", from_dev_f32(gz, n), z, n);
    ok &= bitwise("copy", from_dev_bf16(gc, n), a, n);
    return ok;
}

/* ---- loss ---- */

/* In place (as the LM head does) or into its own buffer. V = 50304 takes the backward that keeps
 * a row in shared memory; V = 128256 (Llama 3's vocabulary) is past it (statistics, then a second
 * read); V = 1003 has no 16-byte pieces. */
static bool cross_entropy_case(int64_t N, int64_t V, bool in_place)
{
    float *logits = randn(N * V, 3.0f), *dl = randn(N, 1.0f), *loss = halloc(N * 4);
    float *dlogits = halloc(N * V * 4);
    int32_t *t = rand_ids(N, V);
    cpu_cross_entropy_forward(H1(loss, DT_F32, N), H2(logits, N, V), H1(t, DT_I32, N));
    cpu_cross_entropy_backward(H2(dlogits, N, V), H2(logits, N, V), H1(t, DT_I32, N),
                               H1(dl, DT_F32, N));
    void *gl = to_dev_bf16(logits, N * V), *gt = to_dev(t, N * 4), *gdl = to_dev(dl, N * 4);
    void *gloss = dalloc(N * 4), *gd = in_place ? gl : dalloc(N * V * 2);
    poison(gloss, N, DT_F32);
    if (!in_place) poison(gd, N * V, DT_BF16);
    cuda_cross_entropy_forward(D1(gloss, DT_F32, N), D2(gl, DT_BF16, N, V), D1(gt, DT_I32, N));
    cuda_cross_entropy_backward(D2(gd, DT_BF16, N, V), D2(gl, DT_BF16, N, V), D1(gt, DT_I32, N),
                                D1(gdl, DT_F32, N));
    printf("   cross-entropy N=%lld V=%lld%s\n", (long long)N, (long long)V,
           in_place ? " (in place)" : "");
    return close_to("losses (fp32)", from_dev_f32(gloss, N), loss, N, TOL_F32) &
           close_to(in_place ? "dlogits (in place)" : "dlogits", from_dev_bf16(gd, N * V), dlogits,
                    N * V, TOL_BF16);
}

static bool test_cross_entropy_matches_cpu(void)
{
    return cross_entropy_case(64, 50304, true) & cross_entropy_case(300, 50304, false) &
           cross_entropy_case(33, 1003, true) & cross_entropy_case(5, 1003, false) &
           cross_entropy_case(12, 128256, true) & cross_entropy_case(3, 16, true);
}

/* One rank's shard [start, start + V) of a vocabulary of 3V; the other ranks' statistics are
 * stood in for by a global max above the local one, which the rescale must apply. */
static bool test_vocab_parallel_cross_entropy_matches_cpu(void)
{
    const int64_t N = 48, V = 1000, start = 1000;
    float *logits = randn(N * V, 3.0f), *dl = randn(N, 1.0f);
    int32_t *t = rand_ids(N, 3 * V);
    float *mx = halloc(N * 4), *se = halloc(N * 4), *tl = halloc(N * 4), *gmax = halloc(N * 4);
    float *loss = halloc(N * 4), *lse = halloc(N * 4), *dlogits = halloc(N * V * 4);
    cpu_vocab_parallel_ce_stats(H1(mx, DT_F32, N), H1(se, DT_F32, N), H1(tl, DT_F32, N),
                                H2(logits, N, V), H1(t, DT_I32, N), start);
    for (int64_t n = 0; n < N; n++) gmax[n] = mx[n] + 0.25f * (float)(n % 3);
    void *gl = to_dev_bf16(logits, N * V), *gt = to_dev(t, N * 4), *gdl = to_dev(dl, N * 4);
    void *ggm = to_dev(gmax, N * 4), *gmx = dalloc(N * 4), *gse = dalloc(N * 4);
    void *gtl = dalloc(N * 4), *gloss = dalloc(N * 4), *glse = dalloc(N * 4);
    poison(gmx, N, DT_F32), poison(gse, N, DT_F32), poison(gtl, N, DT_F32);
    poison(gloss, N, DT_F32), poison(glse, N, DT_F32);
    cuda_vocab_parallel_ce_stats(D1(gmx, DT_F32, N), D1(gse, DT_F32, N), D1(gtl, DT_F32, N),
                                 D2(gl, DT_BF16, N, V), D1(gt, DT_I32, N), start);
    bool ok = bitwise("row_max", from_dev_f32(gmx, N), mx, N);
    ok &= close_to("sum_exp", from_dev_f32(gse, N), se, N, TOL_F32);
    ok &= bitwise("target_logit", from_dev_f32(gtl, N), tl, N);
    cpu_vocab_parallel_ce_rescale(H1(se, DT_F32, N), H1(mx, DT_F32, N), H1(gmax, DT_F32, N));
    cpu_vocab_parallel_ce_loss(H1(loss, DT_F32, N), H1(lse, DT_F32, N), H1(gmax, DT_F32, N),
                               H1(se, DT_F32, N), H1(tl, DT_F32, N));
    cpu_vocab_parallel_ce_backward(H2(dlogits, N, V), H2(logits, N, V), H1(t, DT_I32, N), start,
                                   H1(lse, DT_F32, N), H1(dl, DT_F32, N));
    cuda_vocab_parallel_ce_rescale(D1(gse, DT_F32, N), D1(gmx, DT_F32, N), D1(ggm, DT_F32, N));
    cuda_vocab_parallel_ce_loss(D1(gloss, DT_F32, N), D1(glse, DT_F32, N), D1(ggm, DT_F32, N),
                                D1(gse, DT_F32, N), D1(gtl, DT_F32, N));
    cuda_vocab_parallel_ce_backward(D2(gl, DT_BF16, N, V), D2(gl, DT_BF16, N, V),
                                    D1(gt, DT_I32, N), start, D1(glse, DT_F32, N),
                                    D1(gdl, DT_F32, N));
    ok &= close_to("sum_exp rescaled", from_dev_f32(gse, N), se, N, TOL_F32);
    ok &= close_to("lse", from_dev_f32(glse, N), lse, N, TOL_F32);
    ok &= close_to("losses", from_dev_f32(gloss, N), loss, N, TOL_F32);
    ok &= close_to("dlogits (in place)", from_dev_bf16(gl, N * V), dlogits, N * V, TOL_BF16);
    return ok;
}

/* ---- optimizer ---- */

static bool adam_case(bool decoupled)
{
    const int64_t n = 100003;
    struct adam_params ap = adam_params_default();
    ap.decoupled_weight_decay = decoupled;
    float *p = randn(n, 1.0f), *m = halloc(n * 4), *v = halloc(n * 4);
    float *gp = to_dev(p, n * 4), *gm = to_dev(m, n * 4), *gv = to_dev(v, n * 4);
    void *gg = dalloc(n * 4);
    for (int64_t step = 1; step <= 3; step++) {
        float *g = randn(n, 0.01f);
        for (int64_t i = 0; i < n; i++) g[i] *= 1.0f + 1e-3f * (float)i / n; /* not bf16 values */
        cuda_memcpy_h2d(gg, g, n * 4);
        adam_update(p, g, m, v, n, 3e-4 * step, 0.1, ap, step);
        cuda_adam_update(gp, gg, gm, gv, n, 3e-4 * step, 0.1, ap, step);
    }
    printf("   adam decoupled=%d, 3 steps\n", decoupled);
    return bitwise("param", from_dev_f32(gp, n), p, n) &
           bitwise("exp_avg", from_dev_f32(gm, n), m, n) &
           bitwise("exp_avg_sq", from_dev_f32(gv, n), v, n);
}

static bool test_adam_is_bitwise_the_cpu(void) { return adam_case(true) & adam_case(false); }

static bool test_sum_squares_matches_clip_norm(void)
{
    bool ok = true;
    const int64_t sizes[3] = {1, 1000, 3000017};
    for (int i = 0; i < 3; i++) {
        int64_t n = sizes[i];
        float *x = halloc(n * 4);
        for (int64_t k = 0; k < n; k++) x[k] = (float)rng_normal(A.seed, 3, A.counter++);
        const float *bufs[1] = {x};
        double want = clip_global_norm_sq(bufs, &n, 1);
        void *gx = to_dev(x, n * 4);
        double got = cuda_sum_squares(gx, n), again = cuda_sum_squares(gx, n);
        double rel = fabs(got - want) / want;
        bool good = rel <= 1e-12 && memcmp(&got, &again, sizeof got) == 0;
        printf("    n=%-10lld rel diff %.1e (tol 1e-12), repeat %s %s\n", (long long)n, rel,
               memcmp(&got, &again, sizeof got) ? "differs" : "bitwise equal",
               good ? "ok" : "FAIL");
        ok &= good;
    }
    return ok;
}

/* ---- determinism ---- */

static bool test_gradient_reductions_repeat_bitwise(void)
{
    const int64_t N = 4096, C = 768, V = 50;
    float *dy = randn(N * C, 1.0f), *x = randn(N * C, 1.0f);
    int32_t *tok = rand_ids(N, V);
    void *gdy = to_dev_bf16(dy, N * C), *gx = to_dev_bf16(x, N * C), *gt = to_dev(tok, N * 4);
    void *gw = to_dev_bf16(randn(C * C, 0.05f), C * C);
    float *first[3] = {0};
    bool ok = true;
    for (int run = 0; run < 2; run++) {
        void *db = dalloc(C * 4), *dw = dalloc(C * C * 4), *dwte = dalloc(V * C * 4);
        cuda_memset_zero(db, C * 4), cuda_memset_zero(dw, C * C * 4);
        cuda_memset_zero(dwte, V * C * 4);
        cuda_linear_backward(tensor_none(), D2(dw, DT_F32, C, C), D1(db, DT_F32, C),
                             D2(gdy, DT_BF16, N, C), D2(gx, DT_BF16, N, C), D2(gw, DT_BF16, C, C));
        cuda_embedding_backward(D2(dwte, DT_F32, V, C), 0, tensor_none(),
                                D2(gdy, DT_BF16, N, C), D1(gt, DT_I32, N), tensor_none());
        float *now[3] = {from_dev_f32(db, C), from_dev_f32(dw, C * C), from_dev_f32(dwte, V * C)};
        if (run == 0) {
            memcpy(first, now, sizeof now);
            continue;
        }
        ok &= bitwise("linear db, second run", now[0], first[0], C);
        ok &= bitwise("linear dw, second run", now[1], first[1], C * C);
        ok &= bitwise("embedding dwte, second run", now[2], first[2], V * C);
    }
    /* linear_fc2's backward through the GeLU: the bias gradient of either path, and dpre */
    for (int form = 0; form < 2; form++) {
        void *pre = to_dev_bf16(randn(N * C, 2.0f), N * C), *dpre = dalloc(N * C * 2);
        float *dbs[2], *dpres[2];
        for (int run = 0; run < 2; run++) {
            void *db = dalloc(C * 4);
            cuda_memset_zero(db, C * 4);
            cuda_linear_dgelu_backward(D2(dpre, DT_BF16, N, C), D1(db, DT_F32, C), tensor_none(),
                                       D2(gdy, DT_BF16, N, C), tensor_none(),
                                       D2(gw, DT_BF16, C, C), D2(pre, DT_BF16, N, C), form == 1);
            dbs[run] = from_dev_f32(db, C);
            dpres[run] = from_dev_bf16(dpre, N * C);
        }
        ok &= bitwise(form ? "dgelu (tanh) fc1 db, second run" : "dgelu (erf) fc1 db, second run",
                      dbs[1], dbs[0], C);
        ok &= bitwise("dgelu dpre, second run", dpres[1], dpres[0], N * C);
    }
    /* the norm backwards with the residual add: dx, dw (and db) of the one-pass kernel */
    for (int rms = 0; rms < 2; rms++) {
        void *nw = to_dev_bf16(randn(C, 1.0f), C), *dres = to_dev_bf16(randn(N * C, 1.0f), N * C);
        float *m = randn(N, 0.1f), *r = randn(N, 0.2f);
        for (int64_t i = 0; i < N; i++) r[i] = 1.0f + fabsf(r[i]);
        void *gm = to_dev(m, N * 4), *gr = to_dev(r, N * 4), *dx = dalloc(N * C * 2);
        float *got[2][3];
        for (int run = 0; run < 2; run++) {
            void *dw = dalloc(C * 4), *db = dalloc(C * 4);
            cuda_memset_zero(dw, C * 4), cuda_memset_zero(db, C * 4);
            if (rms)
                cuda_rmsnorm_backward_add(D2(dx, DT_BF16, N, C), D1(dw, DT_F32, C),
                                          D2(gdy, DT_BF16, N, C), D2(gx, DT_BF16, N, C),
                                          D1(nw, DT_BF16, C), D1(gr, DT_F32, N),
                                          D2(dres, DT_BF16, N, C));
            else
                cuda_layernorm_backward_add(D2(dx, DT_BF16, N, C), D1(dw, DT_F32, C),
                                            D1(db, DT_F32, C), D2(gdy, DT_BF16, N, C),
                                            D2(gx, DT_BF16, N, C), D1(nw, DT_BF16, C),
                                            D1(gm, DT_F32, N), D1(gr, DT_F32, N),
                                            D2(dres, DT_BF16, N, C));
            got[run][0] = from_dev_bf16(dx, N * C);
            got[run][1] = from_dev_f32(dw, C);
            got[run][2] = from_dev_f32(db, C);
        }
        ok &= bitwise(rms ? "rmsnorm backward dx, second run" : "layernorm backward dx, second run",
                      got[1][0], got[0][0], N * C);
        ok &= bitwise(rms ? "rmsnorm dw, second run" : "layernorm dw, second run", got[1][1],
                      got[0][1], C);
        if (!rms) ok &= bitwise("layernorm db, second run", got[1][2], got[0][2], C);
    }
    return ok;
}

/* ---- user errors ---- */

/* Runs in its own process: must end with exit code 2 and the one-line message. */
static bool test_attention_dropout_is_rejected(void)
{
    struct attention_shape s = shape(1, 128, 2, 2, 64);
    int64_t N = 128, W = qkv_width(s);
    void *q = dalloc(N * W * 2), *o = dalloc(N * 128 * 2), *l = dalloc(2 * 128 * 4);
    struct dropout_key drop = {0.1f, 1, 2, 0};
    cuda_attention_forward(D2(o, DT_BF16, N, 128), D1(l, DT_F32, 256), D2(q, DT_BF16, N, W), s,
                           drop);
    printf("    attention dropout was accepted FAIL\n");
    return false;
}

/* ---- runner ---- */

struct test {
    const char *name;
    bool (*fn)(void);
    int expect_exit; /* 0, or the exit code the test must end with */
};

#define T(fn) {#fn, fn, 0}
static const struct test TESTS[] = {
    T(test_linear_matches_cpu),
    T(test_linear_gelu_matches_cpu),
    T(test_embedding_matches_cpu_and_backward_is_bitwise),
    T(test_norms_match_cpu),
    T(test_bias_dropout_add_norm_matches_cpu),
    T(test_norm_backward_add_matches_cpu),
    T(test_norm_weight_gradients_alone_match_cpu),
    T(test_activations_match_cpu),
    T(test_rope_matches_cpu),
    T(test_attention_mha_matches_cpu),
    T(test_attention_gqa_matches_cpu),
    T(test_attention_seq_not_multiple_of_128_matches_cpu),
    T(test_bias_dropout_add_matches_cpu_and_cpu_mask),
    T(test_add_zero_and_copy),
    T(test_cross_entropy_matches_cpu),
    T(test_vocab_parallel_cross_entropy_matches_cpu),
    T(test_adam_is_bitwise_the_cpu),
    T(test_sum_squares_matches_clip_norm),
    T(test_gradient_reductions_repeat_bitwise),
    {"test_attention_dropout_is_rejected", test_attention_dropout_is_rejected, 2},
};
#undef T

/* One test (in a child process unless --in-process): 0 when it passed. */
static int run_child(const struct test *t, uint64_t seed)
{
    alarm(300);
    A.seed = seed;
    cuda_init(0);
    bool ok = t->fn();
    cuda_synchronize();
    free_all();
    fflush(stdout);
    return ok ? 0 : 1;
}

/* Asks in a child process: CUDA initialized in this process would not survive the forks. */
static bool gpu_present(void)
{
    pid_t pid = fork();
    if (pid == 0) _exit(cuda_device_count() > 0 ? 0 : 1);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int dry_run(void)
{
    const struct attention_shape shapes[] = {shape(2, 256, 4, 4, 64), shape(2, 128, 8, 2, 128),
                                             shape(2, 96, 4, 1, 64), shape(64, 1024, 12, 12, 64)};
    int failed = 0;
    printf("cuda_device_count() = %d\n", cuda_device_count());
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char err[600];
        bool ok = cuda_attention_dry_run(shapes[i], err, sizeof err);
        printf("attention graphs B=%lld T=%lld n=%d g=%d d=%d: %s\n", (long long)shapes[i].batch,
               (long long)shapes[i].seq, shapes[i].heads, shapes[i].groups, shapes[i].head_dim,
               ok ? "finalized" : err);
        failed += !ok;
    }
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order when piped, children included */
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    const char *only[16]; /* run the tests whose name contains one of these (all if none) */
    int nonly = 0;
    bool in_process = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dry-run")) return dry_run();
        if (!strcmp(argv[i], "--in-process")) {
            in_process = true;
            continue;
        }
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 0);
        } else if (nonly < 16) {
            only[nonly++] = argv[i];
        }
    }
    if (!gpu_present()) {
        printf("no GPU: nothing to test (use --dry-run to check the cuDNN graphs)\n");
        return 1;
    }
    printf("[==========] CUDA ops vs CPU ops, seed %llu (--seed to repeat)\n",
           (unsigned long long)seed);
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof TESTS / sizeof TESTS[0]; i++) {
        const struct test *t = &TESTS[i];
        bool wanted = nonly == 0;
        for (int k = 0; k < nonly; k++) wanted |= strstr(t->name, only[k]) != NULL;
        if (!wanted || (in_process && t->expect_exit)) continue; /* that one must exit */
        printf("[ RUN      ] %s\n", t->name);
        fflush(stdout);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int code;
        if (in_process) {
            code = run_child(t, seed + i);
        } else {
            pid_t pid = fork();
            if (pid == 0) _exit(run_child(t, seed + i));
            int status = 0;
            waitpid(pid, &status, 0);
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        bool ok = code == t->expect_exit;
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        printf("[ %s ] %s (%.0f ms)\n", ok ? "      OK" : " FAILED ", t->name, ms);
        passed += ok;
        failed += !ok;
    }
    printf("[==========] %d test(s) run.\n", passed + failed);
    printf("[  PASSED  ] %d test(s).\n", passed);
    if (failed) printf("[  FAILED  ] %d test(s).\n", failed);
    return failed ? 1 : 0;
}
