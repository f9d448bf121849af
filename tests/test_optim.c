/* Unit tests for optim/adam, optim/sgd and optim/clip: updates against straightforward
 * double-precision references and closed forms, Megatron's clipping rule, a global norm that
 * depends neither on the split into ranges nor on the thread count; and the optimizer's norm of
 * the main parameters (--log-params-norm) and count of zeros in the clipped gradients
 * (--log-num-zeros-in-grad). */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "kernels/rng.h"
#include "models/gpt.h"
#include "optim/adam.h"
#include "optim/clip.h"
#include "optim/optimizer.h"
#include "optim/sgd.h"
#include "tests/tiny_model.h"

#define N_ELEMS 257 /* odd, so nothing lines up with a vector width */

/* Deterministic values in [-1, 1) from a 64-bit LCG (Knuth's MMIX constants). */
static float lcg_uniform(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void fill_uniform(float *x, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) x[i] = lcg_uniform(&seed);
}

/* ---- Adam ---- */

/* Adam as the papers write it (Kingma & Ba; Loshchilov & Hutter for the decoupled decay), in
 * double. Hyperparameters enter as the fused kernel receives them, rounded to float. */
struct adam_ref {
    double p[N_ELEMS], m[N_ELEMS], v[N_ELEMS];
};

static void adam_ref_step(struct adam_ref *r, const float *grad, double lr, double wd,
                          struct adam_params ap, int t)
{
    const double b1 = (float)ap.beta1, b2 = (float)ap.beta2, eps = (float)ap.eps;
    lr = (float)lr;
    wd = (float)wd;
    for (int i = 0; i < N_ELEMS; i++) {
        double g = grad[i];
        if (!ap.decoupled_weight_decay) g += wd * r->p[i];
        r->m[i] = b1 * r->m[i] + (1.0 - b1) * g;
        r->v[i] = b2 * r->v[i] + (1.0 - b2) * g * g;
        const double mhat = r->m[i] / (1.0 - pow(b1, t));
        const double vhat = r->v[i] / (1.0 - pow(b2, t));
        double update = mhat / (sqrt(vhat) + eps);
        if (ap.decoupled_weight_decay) update += wd * r->p[i];
        r->p[i] -= lr * update;
    }
}

/* Runs 10 Adam updates with fresh gradients each step on both implementations and compares.
 * Tolerances from fp32 rounding (2^-24 = 6e-8 relative per operation) over 10 steps: params
 * (|p| < 1.2, about one rounding of p a step plus a far smaller one in lr * update) within 1e-6;
 * m (|m| < 1.2, two roundings a step, terms of both signs so absolute) within 1e-6; v (positive
 * terms only, three roundings a step) within 2e-6 relative. */
static void check_adam_against_reference(double lr, double wd, struct adam_params ap)
{
    enum { STEPS = 10 };
    float p[N_ELEMS], g[N_ELEMS], m[N_ELEMS] = {0}, v[N_ELEMS] = {0};
    struct adam_ref *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    fill_uniform(p, N_ELEMS, 11);
    for (int i = 0; i < N_ELEMS; i++) r->p[i] = p[i];

    for (int t = 1; t <= STEPS; t++) {
        fill_uniform(g, N_ELEMS, 100 + (uint64_t)t);
        adam_update(p, g, m, v, N_ELEMS, lr, wd, ap, t);
        adam_ref_step(r, g, lr, wd, ap, t);
    }
    for (int i = 0; i < N_ELEMS; i++) {
        assert_true(fabs(p[i] - r->p[i]) <= 1e-6);
        assert_true(fabs(m[i] - r->m[i]) <= 1e-6);
        assert_true(fabs(v[i] - r->v[i]) <= 2e-6 * r->v[i]);
    }
    free(r);
}

static void test_adam_matches_double_reference_without_weight_decay(void **state)
{
    (void)state;
    check_adam_against_reference(1e-2, 0.0, adam_params_default());
}

static void test_adamw_matches_double_reference_with_weight_decay(void **state)
{
    (void)state;
    struct adam_params ap = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                             .decoupled_weight_decay = true};
    check_adam_against_reference(3e-3, 0.1, ap);
}

static void test_adam_l2_mode_matches_double_reference(void **state)
{
    (void)state;
    struct adam_params ap = adam_params_default();
    ap.decoupled_weight_decay = false;
    check_adam_against_reference(1e-2, 0.1, ap);
}

/* With bias correction the first step moves every parameter by lr * g / (|g| + eps), i.e. by lr
 * against the sign of its gradient; without it the move would be (1-b1)/sqrt(1-b2) = 3.16 times
 * larger. The moments hold (1-b1) g and (1-b2) g^2. */
static void test_adam_first_step_moves_each_param_by_lr(void **state)
{
    (void)state;
    float p[4] = {0.5f, 0.5f, -2.0f, 0.0f};
    const float g[4] = {0.3f, -0.3f, 1e-3f, -7.0f};
    float m[4] = {0}, v[4] = {0};
    const double lr = 0.01;
    adam_update(p, g, m, v, 4, lr, 0.0, adam_params_default(), 1);
    const double expected[4] = {0.49, 0.51, -2.01, 0.01};
    /* 1 - beta as the kernel sees it: the float beta, subtracted exactly. */
    const double omb1 = 1.0 - (double)(float)0.9, omb2 = 1.0 - (double)(float)0.999;
    for (int i = 0; i < 4; i++) {
        /* |g|/(|g|+eps) differs from 1 by at most 1e-5 here (g = 1e-3), scaled by lr; the result
         * rounds to float (half an ulp at |p| < 2.02 is 1.2e-7). */
        assert_true(fabs(p[i] - expected[i]) <= 1.5e-7 + 1e-5 * lr);
        const double g2 = (double)g[i] * g[i];
        assert_true(fabs(m[i] - omb1 * g[i]) <= 1e-6 * fabs(omb1 * g[i]));
        assert_true(fabs(v[i] - omb2 * g2) <= 1e-6 * omb2 * g2);
    }
}

/* A zero gradient with weight decay 0.1: AdamW shrinks p by lr * wd * p; the L2 form feeds wd * p
 * through the normalisation and moves p by a full lr. */
static void test_adam_decoupled_and_l2_weight_decay_differ_as_upstream(void **state)
{
    (void)state;
    const float g[1] = {0.0f};
    struct adam_params ap = adam_params_default();

    float p[1] = {1.0f}, m[1] = {0}, v[1] = {0};
    adam_update(p, g, m, v, 1, 0.01, 0.1, ap, 1);
    assert_true(fabs(p[0] - 0.999) <= 1e-7);

    ap.decoupled_weight_decay = false;
    float q[1] = {1.0f}, m2[1] = {0}, v2[1] = {0};
    adam_update(q, g, m2, v2, 1, 0.01, 0.1, ap, 1);
    assert_true(fabs(q[0] - 0.99) <= 1e-6);
}

/* ---- SGD ---- */

/* Constant gradient g, momentum mu, no decay: buf_t = g (1 + mu + ... + mu^(t-1)). */
static void test_sgd_momentum_matches_closed_form(void **state)
{
    (void)state;
    float p[1] = {1.0f}, buf[1] = {123.0f}; /* the buffer's prior contents must be ignored */
    const float g[1] = {0.5f};
    for (int t = 1; t <= 3; t++) sgd_update(p, g, buf, 1, 0.1, 0.0, 0.9, t == 1);
    /* sum of buf_t = 0.5 * (1 + 1.9 + 2.71) = 2.805 */
    assert_true(fabs(buf[0] - 0.5 * 2.71) <= 1e-6);
    assert_true(fabs(p[0] - (1.0 - 0.1 * 2.805)) <= 1e-6);
}

/* torch.optim.SGD in double: d = g + wd p; buf = first ? d : mu buf + d; p -= lr buf. */
static void test_sgd_weight_decay_and_momentum_match_reference(void **state)
{
    (void)state;
    enum { STEPS = 5 };
    float p[N_ELEMS], g[N_ELEMS], buf[N_ELEMS];
    double rp[N_ELEMS], rbuf[N_ELEMS];
    const double lr = 0.05, wd = 0.01, mu = 0.9;
    fill_uniform(p, N_ELEMS, 7);
    for (int i = 0; i < N_ELEMS; i++) rp[i] = p[i];
    for (int t = 1; t <= STEPS; t++) {
        fill_uniform(g, N_ELEMS, 200 + (uint64_t)t);
        sgd_update(p, g, buf, N_ELEMS, lr, wd, mu, t == 1);
        for (int i = 0; i < N_ELEMS; i++) {
            const double d = g[i] + (double)(float)wd * rp[i];
            rbuf[i] = t == 1 ? d : (double)(float)mu * rbuf[i] + d;
            rp[i] -= (double)(float)lr * rbuf[i];
        }
    }
    /* fp32 rounding, a few operations a step over 5 steps, |p| and |buf| below 5. */
    for (int i = 0; i < N_ELEMS; i++) {
        assert_true(fabs(p[i] - rp[i]) <= 2e-6);
        assert_true(fabs(buf[i] - rbuf[i]) <= 5e-6);
    }
}

static void test_sgd_without_momentum_needs_no_buffer(void **state)
{
    (void)state;
    float p[2] = {1.0f, -1.0f};
    const float g[2] = {0.25f, 0.5f};
    sgd_update(p, g, NULL, 2, 0.5, 0.0, 0.0, true);
    sgd_update(p, g, NULL, 2, 0.5, 0.0, 0.0, false);
    assert_true(p[0] == 0.75f);
    assert_true(p[1] == -1.5f);
}

/* ---- clipping ---- */

static void test_global_norm_sq_of_known_values(void **state)
{
    (void)state;
    const float a[1] = {3.0f}, b[1] = {4.0f};
    const float *bufs[3] = {a, NULL, b};
    const int64_t lens[3] = {1, 0, 1};
    assert_true(clip_global_norm_sq(bufs, lens, 3) == 25.0);
    assert_true(clip_global_norm_sq(bufs, lens, 0) == 0.0);
}

/* Split at uneven points (and with an empty range) the norm is bit-identical to the norm of the
 * concatenation. */
static void test_global_norm_over_ranges_matches_concatenated_buffer(void **state)
{
    (void)state;
    const int64_t lens[4] = {100003, 7, 0, 54321};
    const int64_t total = lens[0] + lens[1] + lens[2] + lens[3];
    float *all = malloc((size_t)total * sizeof(float));
    assert_non_null(all);
    fill_uniform(all, total, 42);
    const float *bufs[4] = {all, all + lens[0], all + lens[0] + lens[1],
                            all + lens[0] + lens[1] + lens[2]};
    const float *one[1] = {all};
    const int64_t one_len[1] = {total};
    const double split = clip_global_norm_sq(bufs, lens, 4);
    const double whole = clip_global_norm_sq(one, one_len, 1);
    assert_true(split == whole);
    /* and it is the sum of squares: a plain double loop agrees to double rounding */
    double plain = 0.0;
    for (int64_t i = 0; i < total; i++) plain += (double)all[i] * all[i];
    assert_true(fabs(split - plain) <= 1e-12 * plain);
    free(all);
}

static void test_global_norm_independent_of_thread_count(void **state)
{
    (void)state;
    const int64_t n = 300001;
    float *x = malloc((size_t)n * sizeof(float));
    assert_non_null(x);
    fill_uniform(x, n, 5);
    const float *bufs[1] = {x};
    const int64_t lens[1] = {n};
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const double one = clip_global_norm_sq(bufs, lens, 1);
    omp_set_num_threads(4);
    const double four = clip_global_norm_sq(bufs, lens, 1);
    omp_set_num_threads(3);
    const double three = clip_global_norm_sq(bufs, lens, 1);
    omp_set_num_threads(saved);
    assert_true(one == four);
    assert_true(one == three);
    free(x);
}

static void test_clip_below_max_norm_leaves_grads_unchanged(void **state)
{
    (void)state;
    float a[2] = {0.3f, 0.4f};
    float *bufs[1] = {a};
    const int64_t lens[1] = {2};
    const double norm = clip_grad_by_total_norm(bufs, lens, 1, 1.0);
    assert_true(norm == sqrt((double)0.3f * 0.3f + (double)0.4f * 0.4f));
    assert_true(a[0] == 0.3f && a[1] == 0.4f);
}

/* Norm 5 over two ranges, max 1: every grad scales by 1 / (5 + 1e-6); the norm before clipping is
 * returned. */
static void test_clip_above_max_norm_scales_by_megatron_coefficient(void **state)
{
    (void)state;
    float a[1] = {3.0f}, b[1] = {-4.0f};
    float *bufs[2] = {a, b};
    const int64_t lens[2] = {1, 1};
    const double norm = clip_grad_by_total_norm(bufs, lens, 2, 1.0);
    assert_true(norm == 5.0);
    const double c = 1.0 / (5.0 + 1e-6);
    assert_true(fabs(a[0] - 3.0 * c) <= 1e-7);
    assert_true(fabs(b[0] + 4.0 * c) <= 1e-7);
    const double after = sqrt((double)a[0] * a[0] + (double)b[0] * b[0]);
    assert_true(after < 1.0 && after > 1.0 - 1e-6);
}

static void test_clip_coeff_follows_megatron_rule(void **state)
{
    (void)state;
    double c = -1.0;
    assert_true(clip_coeff(5.0, 1.0, &c));
    assert_true(c == 1.0 / (5.0 + 1e-6));
    /* at exactly max_norm the 1e-6 margin still scales, as upstream */
    assert_true(clip_coeff(1.0, 1.0, &c));
    assert_true(!clip_coeff(0.5, 1.0, &c));
    assert_true(!clip_coeff(5.0, 0.0, &c));
    assert_true(!clip_coeff(NAN, 1.0, &c));
    assert_true(!clip_coeff(INFINITY, 1.0, &c));
}

static void test_clip_nonfinite_norm_leaves_grads_untouched(void **state)
{
    (void)state;
    float a[2] = {NAN, 2.0f};
    float *bufs[1] = {a};
    const int64_t lens[1] = {2};
    assert_true(isnan(clip_grad_by_total_norm(bufs, lens, 1, 1.0)));
    assert_true(isnan(a[0]) && a[1] == 2.0f);

    float b[2] = {INFINITY, 2.0f};
    bufs[0] = b;
    assert_true(isinf(clip_grad_by_total_norm(bufs, lens, 1, 1.0)));
    assert_true(isinf(b[0]) && b[1] == 2.0f);
}

static void test_clip_grad_zero_only_measures(void **state)
{
    (void)state;
    float a[2] = {30.0f, 40.0f};
    float *bufs[1] = {a};
    const int64_t lens[1] = {2};
    assert_true(clip_grad_by_total_norm(bufs, lens, 1, 0.0) == 50.0);
    assert_true(a[0] == 30.0f && a[1] == 40.0f);
}

static void test_clip_scale_multiplies_every_range(void **state)
{
    (void)state;
    float a[3] = {1.0f, -2.0f, 4.0f}, b[1] = {8.0f};
    float *bufs[2] = {a, b};
    const int64_t lens[2] = {3, 1};
    clip_scale(bufs, lens, 2, 0.25);
    assert_true(a[0] == 0.25f && a[1] == -0.5f && a[2] == 1.0f && b[0] == 2.0f);
}

/* A tiny model's Adam optimizer clipping at max_norm, storing its weights as dt. */
static struct optimizer *tiny_optimizer(struct gpt_model **m, enum dtype dt, double max_norm,
                                        bool count_zeros)
{
    struct model_config c = tiny_config(16, true);
    *m = gpt_create(&c, 1, DEV_CPU, NULL, 1);
    gpt_init_weights(*m);
    struct optimizer_options o;
    char err[256];
    memset(&o, 0, sizeof o);
    o.type = OPTIMIZER_ADAM;
    o.adam = adam_params_default();
    o.clip_grad = max_norm;
    o.count_zeros = count_zeros;
    o.params_dtype = dt;
    scaler_init_constant(&o.scaler, 1.0);
    if (!lr_schedule_init(&o.schedule, 0.0, 1e-2, 1e-3, 0.0, 10, LR_DECAY_CONSTANT, -1,
                          LR_WSD_EXPONENTIAL, 0.1, 0.1, 10, WD_INCR_CONSTANT, err, sizeof err))
        fail_msg("%s", err);
    struct buffer_range whole = {0, (*m)->numel};
    return optimizer_create(*m, &o, &whole, 1);
}

/* --log-params-norm: after steps on made-up gradients, the L2 norm of the fp32 main parameters
 * (the optimizer's copy under bf16 storage, the weights themselves in fp32), every parameter once,
 * the tied embedding included. */
static void test_params_norm_is_the_main_parameters_l2_norm(void **state)
{
    (void)state;
    const enum dtype dtypes[] = {DT_F32, DT_BF16};
    for (int d = 0; d < 2; d++) {
        struct gpt_model *m;
        struct optimizer *opt = tiny_optimizer(&m, dtypes[d], 1.0, false);
        for (int step = 0; step < 3; step++) {
            for (int64_t i = 0; i < m->numel; i++)
                m->grads[i] = (float)(0.01 * rng_normal(5, (uint64_t)step, (uint64_t)i));
            optimizer_step(opt, 4);
        }
        const float *main = dtypes[d] == DT_F32 ? m->weights : opt->main_params;
        double sq = 0.0;
        for (int64_t i = 0; i < m->numel; i++) sq += (double)main[i] * main[i];
        double norm = optimizer_params_norm(opt);
        if (fabs(norm - sqrt(sq)) > 1e-12 * sqrt(sq))
            fail_msg("%s: %.17g against %.17g", dtype_name(dtypes[d]), norm, sqrt(sq));
        if (dtypes[d] == DT_BF16) { /* not the rounded storage */
            double stored = 0.0;
            for (int64_t i = 0; i < m->numel; i++) stored += (double)m->weights[i] * m->weights[i];
            assert_true(sqrt(stored) != norm);
        }
        optimizer_free(opt);
        gpt_free(m);
    }
}

/* --log-num-zeros-in-grad counts, as Megatron's count_zeros_fp32 after clipping does, the gradient
 * elements that are zero once clipped: +0 and -0, and the smallest subnormals that the clip factor
 * takes to zero, but not larger subnormals that stay above zero. Nothing is counted without the
 * flag or on a skipped step. */
static void test_num_zeros_counts_the_clipped_gradients(void **state)
{
    (void)state;
    const enum dtype dtypes[] = {DT_F32, DT_BF16};
    for (int d = 0; d < 2; d++) {
        struct gpt_model *m;
        struct optimizer *opt = tiny_optimizer(&m, dtypes[d], 1e-3, true);
        for (int step = 0; step < 2; step++) {
            int64_t want = 0;
            for (int64_t i = 0; i < m->numel; i++) {
                float g = (float)(0.01 * rng_normal(7, (uint64_t)step, (uint64_t)i));
                if (i % 5 == 0) g = 0.0f;
                else if (i % 7 == 0) g = -0.0f;
                else if (i % 11 == 0) g = 1.4e-45f; /* the smallest subnormal: clipped to zero */
                else if (i % 13 == 0) g = 1e-38f;   /* clipped to ~1e-41, a subnormal above zero */
                want += i % 5 == 0 || i % 7 == 0 || i % 11 == 0;
                m->grads[i] = g;
            }
            struct step_result r = optimizer_step(opt, 4);
            assert_false(r.skipped);
            /* a factor below 1/2 (the smallest subnormal rounds to zero) and above 1.4e-7 (1e-38
               stays above zero) */
            assert_true(r.grad_norm > 2e-3 && r.grad_norm < 7e3);
            if (r.num_zeros != (double)want)
                fail_msg("%s step %d: %.1f zeros, want %lld", dtype_name(dtypes[d]), step, r.num_zeros,
                         (long long)want);
        }
        m->grads[3] = NAN; /* a skipped step: no count */
        struct step_result r = optimizer_step(opt, 4);
        assert_true(r.skipped && isnan(r.num_zeros));
        optimizer_free(opt);
        gpt_free(m);
    }
    struct gpt_model *m;
    struct optimizer *opt = tiny_optimizer(&m, DT_F32, 1.0, false);
    memset(m->grads, 0, (size_t)m->numel * sizeof(float));
    assert_true(isnan(optimizer_step(opt, 4).num_zeros));
    optimizer_free(opt);
    gpt_free(m);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adam_matches_double_reference_without_weight_decay),
        cmocka_unit_test(test_adamw_matches_double_reference_with_weight_decay),
        cmocka_unit_test(test_adam_l2_mode_matches_double_reference),
        cmocka_unit_test(test_adam_first_step_moves_each_param_by_lr),
        cmocka_unit_test(test_adam_decoupled_and_l2_weight_decay_differ_as_upstream),
        cmocka_unit_test(test_sgd_momentum_matches_closed_form),
        cmocka_unit_test(test_sgd_weight_decay_and_momentum_match_reference),
        cmocka_unit_test(test_sgd_without_momentum_needs_no_buffer),
        cmocka_unit_test(test_global_norm_sq_of_known_values),
        cmocka_unit_test(test_global_norm_over_ranges_matches_concatenated_buffer),
        cmocka_unit_test(test_global_norm_independent_of_thread_count),
        cmocka_unit_test(test_clip_below_max_norm_leaves_grads_unchanged),
        cmocka_unit_test(test_clip_above_max_norm_scales_by_megatron_coefficient),
        cmocka_unit_test(test_clip_coeff_follows_megatron_rule),
        cmocka_unit_test(test_clip_nonfinite_norm_leaves_grads_untouched),
        cmocka_unit_test(test_clip_grad_zero_only_measures),
        cmocka_unit_test(test_clip_scale_multiplies_every_range),
        cmocka_unit_test(test_params_norm_is_the_main_parameters_l2_norm),
        cmocka_unit_test(test_num_zeros_counts_the_clipped_gradients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
