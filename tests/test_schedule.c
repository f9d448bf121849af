/* Unit tests for optim/schedule: Megatron's learning-rate and weight-decay schedules checked at
 * chosen sample counts against closed forms, and the flag-to-schedule arithmetic of
 * training.py:get_optimizer_param_scheduler with the checks of validate_args. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "optim/schedule.h"

#define MAX_LR 1e-3
#define MIN_LR 1e-5

/* Closed forms and the code's expression order differ by a few double roundings at most. */
static void assert_near(double actual, double expected)
{
    if (!(fabs(actual - expected) <= 1e-12 * MAX_LR)) {
        print_error("got %.17g, expected %.17g\n", actual, expected);
        fail();
    }
}

/* A schedule with warmup 100 samples, decay over 1000, the given style; weight decay constant. */
static struct lr_schedule make_lr(double init_lr, double warmup, enum lr_decay_style style,
                                  int64_t wsd_steps, enum lr_wsd_decay_style wsd_style)
{
    struct lr_schedule s;
    char err[256] = "";
    bool ok = lr_schedule_init(&s, init_lr, MAX_LR, MIN_LR, warmup, 1000, style, wsd_steps,
                               wsd_style, 0.1, 0.1, 1000, WD_INCR_CONSTANT, err, sizeof(err));
    if (!ok) print_error("%s\n", err);
    assert_true(ok);
    return s;
}

/* ---- learning rate ---- */

static void test_warmup_rises_linearly_to_max_lr(void **state)
{
    (void)state;
    struct lr_schedule s = make_lr(0.0, 100, LR_DECAY_LINEAR, -1, LR_WSD_EXPONENTIAL);
    assert_near(lr_schedule_lr(&s, 0), 0.0);
    assert_near(lr_schedule_lr(&s, 25), MAX_LR / 4);
    assert_near(lr_schedule_lr(&s, 50), MAX_LR / 2);
    assert_near(lr_schedule_lr(&s, 100), MAX_LR);
}

static void test_warmup_starts_from_lr_warmup_init(void **state)
{
    (void)state;
    const double init = 2e-4;
    struct lr_schedule s = make_lr(init, 100, LR_DECAY_COSINE, -1, LR_WSD_EXPONENTIAL);
    assert_near(lr_schedule_lr(&s, 0), init);
    assert_near(lr_schedule_lr(&s, 50), (init + MAX_LR) / 2);
    assert_near(lr_schedule_lr(&s, 100), MAX_LR);
}

static void test_no_warmup_starts_at_max_lr(void **state)
{
    (void)state;
    struct lr_schedule s = make_lr(0.0, 0, LR_DECAY_LINEAR, -1, LR_WSD_EXPONENTIAL);
    assert_near(lr_schedule_lr(&s, 0), MAX_LR);
    assert_near(lr_schedule_lr(&s, 500), MIN_LR + 0.5 * (MAX_LR - MIN_LR));
}

static void test_linear_decay_reaches_min_lr_at_decay_steps(void **state)
{
    (void)state;
    struct lr_schedule s = make_lr(0.0, 100, LR_DECAY_LINEAR, -1, LR_WSD_EXPONENTIAL);
    /* decay runs from sample 100 to 1000: midpoint 550, quarter 325 */
    assert_near(lr_schedule_lr(&s, 550), MIN_LR + 0.5 * (MAX_LR - MIN_LR));
    assert_near(lr_schedule_lr(&s, 325), MIN_LR + 0.75 * (MAX_LR - MIN_LR));
    assert_near(lr_schedule_lr(&s, 1000), MIN_LR);
    assert_true(lr_schedule_lr(&s, 1001) == MIN_LR);
    assert_true(lr_schedule_lr(&s, 1000000) == MIN_LR);
}

static void test_cosine_decay_follows_half_cosine(void **state)
{
    (void)state;
    struct lr_schedule s = make_lr(0.0, 100, LR_DECAY_COSINE, -1, LR_WSD_EXPONENTIAL);
    assert_near(lr_schedule_lr(&s, 100), MAX_LR);
    assert_near(lr_schedule_lr(&s, 550), MIN_LR + 0.5 * (MAX_LR - MIN_LR));
    /* a quarter of the way: (1 + cos(pi/4)) / 2 = (2 + sqrt 2) / 4 */
    assert_near(lr_schedule_lr(&s, 325), MIN_LR + (2.0 + sqrt(2.0)) / 4.0 * (MAX_LR - MIN_LR));
    assert_near(lr_schedule_lr(&s, 1000), MIN_LR);
    assert_true(lr_schedule_lr(&s, 1001) == MIN_LR);
}

static void test_constant_style_holds_max_lr_past_decay_steps(void **state)
{
    (void)state;
    struct lr_schedule s = make_lr(0.0, 100, LR_DECAY_CONSTANT, -1, LR_WSD_EXPONENTIAL);
    assert_near(lr_schedule_lr(&s, 50), MAX_LR / 2);
    assert_true(lr_schedule_lr(&s, 101) == MAX_LR);
    assert_true(lr_schedule_lr(&s, 1000) == MAX_LR);
    assert_true(lr_schedule_lr(&s, 50000) == MAX_LR);
}

static void test_inverse_square_root_decay(void **state)
{
    (void)state;
    struct lr_schedule s = make_lr(0.0, 100, LR_DECAY_INVERSE_SQUARE_ROOT, -1, LR_WSD_EXPONENTIAL);
    assert_near(lr_schedule_lr(&s, 100), MAX_LR);
    assert_near(lr_schedule_lr(&s, 400), MAX_LR / 2);    /* sqrt(100/400) */
    assert_near(lr_schedule_lr(&s, 900), MAX_LR / 3);    /* sqrt(100/900) */
    assert_true(lr_schedule_lr(&s, 1001) == MIN_LR);
}

/* The floor: with min_lr above max_lr * sqrt(w/s) the rate stays at min_lr. */
static void test_inverse_square_root_is_floored_at_min_lr(void **state)
{
    (void)state;
    struct lr_schedule s;
    char err[256];
    assert_true(lr_schedule_init(&s, 0.0, MAX_LR, 4e-4, 100, 1000, LR_DECAY_INVERSE_SQUARE_ROOT,
                                 -1, LR_WSD_EXPONENTIAL, 0.0, 0.0, 1000, WD_INCR_CONSTANT, err,
                                 sizeof(err)));
    assert_near(lr_schedule_lr(&s, 400), MAX_LR / 2);
    assert_true(lr_schedule_lr(&s, 900) == 4e-4); /* max_lr / 3 < 4e-4 */
}

/* Without warmup both square roots take max(., 1): the rate starts at max_lr. */
static void test_inverse_square_root_without_warmup_counts_from_one(void **state)
{
    (void)state;
    struct lr_schedule s = make_lr(0.0, 0, LR_DECAY_INVERSE_SQUARE_ROOT, -1, LR_WSD_EXPONENTIAL);
    assert_near(lr_schedule_lr(&s, 0), MAX_LR);
    assert_near(lr_schedule_lr(&s, 1), MAX_LR);
    assert_near(lr_schedule_lr(&s, 4), MAX_LR / 2);
    assert_near(lr_schedule_lr(&s, 100), MAX_LR / 10);
}

/* WSD with a 200-sample anneal: stable at max_lr through sample 800, then each anneal shape; at
 * the anneal's midpoint (900) the coefficient is 2*0.5^0.5 - 1, 0.5, 0.5 and 1 - sqrt(0.5). */
static void test_wsd_holds_then_anneals_in_each_style(void **state)
{
    (void)state;
    const struct {
        enum lr_wsd_decay_style style;
        double mid_coeff, quarter_coeff;
    } cases[] = {
        {LR_WSD_EXPONENTIAL, sqrt(2.0) - 1.0, 2.0 * pow(0.5, 0.25) - 1.0},
        {LR_WSD_LINEAR, 0.5, 0.75},
        {LR_WSD_COSINE, 0.5, (2.0 + sqrt(2.0)) / 4.0},
        {LR_WSD_MINUS_SQRT, 1.0 - sqrt(0.5), 0.5},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct lr_schedule s = make_lr(0.0, 100, LR_DECAY_WSD, 200, cases[k].style);
        assert_near(lr_schedule_lr(&s, 50), MAX_LR / 2);
        assert_true(lr_schedule_lr(&s, 101) == MAX_LR);
        assert_true(lr_schedule_lr(&s, 800) == MAX_LR);
        assert_near(lr_schedule_lr(&s, 850), MIN_LR + cases[k].quarter_coeff * (MAX_LR - MIN_LR));
        assert_near(lr_schedule_lr(&s, 900), MIN_LR + cases[k].mid_coeff * (MAX_LR - MIN_LR));
        assert_near(lr_schedule_lr(&s, 1000), MIN_LR);
        assert_true(lr_schedule_lr(&s, 1001) == MIN_LR);
    }
}

/* A fractional warmup (from --lr-warmup-fraction) is kept as is, as upstream's float. */
static void test_fractional_warmup_steps_are_kept(void **state)
{
    (void)state;
    struct lr_schedule s = make_lr(0.0, 12.5, LR_DECAY_LINEAR, -1, LR_WSD_EXPONENTIAL);
    assert_near(lr_schedule_lr(&s, 5), MAX_LR * 5 / 12.5);
    assert_near(lr_schedule_lr(&s, 12), MAX_LR * 12 / 12.5);
    /* past 12.5: the decay ratio counts from 12.5, not from 13 */
    assert_near(lr_schedule_lr(&s, 13), MIN_LR + (1.0 - 0.5 / 987.5) * (MAX_LR - MIN_LR));
}

/* ---- weight decay ---- */

static struct lr_schedule make_wd(double start, double end, enum wd_incr_style style)
{
    struct lr_schedule s;
    char err[256] = "";
    bool ok = lr_schedule_init(&s, 0.0, MAX_LR, MIN_LR, 0, 1000, LR_DECAY_LINEAR, -1,
                               LR_WSD_EXPONENTIAL, start, end, 1000, style, err, sizeof(err));
    if (!ok) print_error("%s\n", err);
    assert_true(ok);
    return s;
}

static void test_weight_decay_constant(void **state)
{
    (void)state;
    struct lr_schedule s = make_wd(0.1, 0.1, WD_INCR_CONSTANT);
    assert_true(lr_schedule_wd(&s, 0) == 0.1);
    assert_true(lr_schedule_wd(&s, 500) == 0.1);
    assert_true(lr_schedule_wd(&s, 5000) == 0.1);
}

static void test_weight_decay_linear_increase(void **state)
{
    (void)state;
    struct lr_schedule s = make_wd(0.0, 0.1, WD_INCR_LINEAR);
    assert_near(lr_schedule_wd(&s, 0), 0.0);
    assert_near(lr_schedule_wd(&s, 250), 0.025);
    assert_near(lr_schedule_wd(&s, 1000), 0.1);
    assert_true(lr_schedule_wd(&s, 1001) == 0.1);
}

/* Cosine increase: (cos(pi (1 - r)) + 1) / 2, slow at both ends. */
static void test_weight_decay_cosine_increase(void **state)
{
    (void)state;
    struct lr_schedule s = make_wd(0.02, 0.1, WD_INCR_COSINE);
    assert_near(lr_schedule_wd(&s, 0), 0.02);
    assert_near(lr_schedule_wd(&s, 250), 0.02 + (2.0 - sqrt(2.0)) / 4.0 * 0.08);
    assert_near(lr_schedule_wd(&s, 500), 0.06);
    assert_near(lr_schedule_wd(&s, 1000), 0.1);
    assert_true(lr_schedule_wd(&s, 2000) == 0.1);
}

/* ---- lr_schedule_init's checks ---- */

static bool init_ok(double init_lr, double max_lr, double min_lr, double warmup, int64_t decay,
                    enum lr_decay_style style, int64_t wsd, double start_wd, double end_wd,
                    enum wd_incr_style wd_style, char *err, size_t errlen)
{
    struct lr_schedule s;
    return lr_schedule_init(&s, init_lr, max_lr, min_lr, warmup, decay, style, wsd,
                            LR_WSD_EXPONENTIAL, start_wd, end_wd, 1000, wd_style, err, errlen);
}

static void test_init_rejects_upstream_assertion_failures(void **state)
{
    (void)state;
    char err[256];
    const enum lr_decay_style L = LR_DECAY_LINEAR;
    const enum wd_incr_style C = WD_INCR_CONSTANT;
    assert_true(init_ok(0, 1e-3, 1e-5, 100, 1000, L, -1, 0.1, 0.1, C, err, sizeof(err)));
    assert_false(init_ok(0, 1e-3, 2e-3, 100, 1000, L, -1, 0.1, 0.1, C, err, sizeof(err)));
    assert_non_null(strstr(err, "--min-lr"));
    assert_false(init_ok(0, 1e-3, -1e-5, 100, 1000, L, -1, 0.1, 0.1, C, err, sizeof(err)));
    assert_non_null(strstr(err, "--min-lr"));
    assert_false(init_ok(2e-3, 1e-3, 0, 100, 1000, L, -1, 0.1, 0.1, C, err, sizeof(err)));
    assert_non_null(strstr(err, "--lr-warmup-init"));
    assert_false(init_ok(0, 1e-3, 0, 1000, 1000, L, -1, 0.1, 0.1, C, err, sizeof(err)));
    assert_non_null(strstr(err, "warmup"));
    assert_false(init_ok(0, 1e-3, 0, 0, 0, L, -1, 0.1, 0.1, C, err, sizeof(err)));
    assert_non_null(strstr(err, "decay"));
    assert_false(init_ok(0, 1e-3, 0, 0, 1000, LR_DECAY_WSD, -1, 0.1, 0.1, C, err, sizeof(err)));
    assert_non_null(strstr(err, "--lr-wsd-decay-iters"));
    assert_false(init_ok(0, 1e-3, 0, 0, 1000, L, -1, 0.1, 0.2, C, err, sizeof(err)));
    assert_non_null(strstr(err, "constant"));
    assert_false(init_ok(0, 1e-3, 0, 0, 1000, L, -1, 0.2, 0.1, WD_INCR_LINEAR, err, sizeof(err)));
    assert_non_null(strstr(err, "weight decay"));
    assert_false(init_ok(0, NAN, 0, 0, 1000, L, -1, 0.1, 0.1, C, err, sizeof(err)));
}

static void test_style_names_round_trip(void **state)
{
    (void)state;
    const char *decay[] = {"constant", "linear", "cosine", "inverse-square-root", "WSD"};
    for (size_t i = 0; i < sizeof(decay) / sizeof(decay[0]); i++) {
        enum lr_decay_style st;
        assert_true(lr_schedule_parse_decay_style(decay[i], &st));
        assert_string_equal(lr_schedule_decay_style_name(st), decay[i]);
    }
    const char *wsd[] = {"exponential", "linear", "cosine", "minus_sqrt"};
    for (size_t i = 0; i < sizeof(wsd) / sizeof(wsd[0]); i++) {
        enum lr_wsd_decay_style st;
        assert_true(lr_schedule_parse_wsd_style(wsd[i], &st));
        assert_string_equal(lr_schedule_wsd_style_name(st), wsd[i]);
    }
    enum lr_decay_style d;
    enum wd_incr_style w;
    assert_false(lr_schedule_parse_decay_style("wsd", &d)); /* choices are case-sensitive */
    assert_false(lr_schedule_parse_wd_style("exponential", &w));
    assert_true(lr_schedule_parse_wd_style("cosine", &w) && w == WD_INCR_COSINE);
}

/* ---- from Megatron's flags ---- */

static struct lr_schedule_flags iteration_flags(void)
{
    struct lr_schedule_flags f;
    lr_schedule_flags_default(&f);
    f.lr = MAX_LR;
    f.min_lr = MIN_LR;
    f.train_iters = 1000;
    f.global_batch_size = 8;
    return f;
}

static struct lr_schedule from_flags(const struct lr_schedule_flags *f)
{
    struct lr_schedule s;
    char err[256] = "";
    bool ok = lr_schedule_from_flags(&s, f, err, sizeof(err));
    if (!ok) print_error("%s\n", err);
    assert_true(ok);
    return s;
}

static void test_flags_defaults_are_megatrons(void **state)
{
    (void)state;
    /* NULL styles mean Megatron's defaults */
    struct lr_schedule_flags g = iteration_flags();
    g.lr_decay_style = g.lr_wsd_decay_style = g.weight_decay_incr_style = NULL;
    struct lr_schedule s = from_flags(&g);
    assert_int_equal(s.decay_style, LR_DECAY_LINEAR);
    assert_int_equal(s.wsd_style, LR_WSD_EXPONENTIAL);
    assert_int_equal(s.wd_style, WD_INCR_CONSTANT);
    assert_true(s.warmup_steps == 0.0);

    struct lr_schedule_flags f;
    lr_schedule_flags_default(&f);
    assert_true(isnan(f.lr) && f.min_lr == 0.0 && f.weight_decay == 0.01);
    assert_string_equal(f.lr_decay_style, "linear");
    assert_string_equal(f.lr_wsd_decay_style, "exponential");
    assert_string_equal(f.weight_decay_incr_style, "constant");
    assert_true(f.lr_warmup_iters == 0 && f.lr_warmup_samples == 0 && f.train_iters == -1);
}

/* Iteration-based: every count is iterations times the global batch; decay defaults to training. */
static void test_flags_iteration_based_counts_samples(void **state)
{
    (void)state;
    struct lr_schedule_flags f = iteration_flags();
    f.lr_warmup_iters = 10;
    struct lr_schedule s = from_flags(&f);
    assert_true(s.warmup_steps == 80.0);
    assert_int_equal(s.decay_steps, 8000);
    assert_int_equal(s.wd_incr_steps, 8000);
    assert_int_equal(s.wsd_decay_steps, -1);
    assert_true(s.start_wd == 0.01 && s.end_wd == 0.01);
    assert_near(lr_schedule_lr(&s, 40), MAX_LR / 2);

    f.lr_decay_iters = 500;
    f.lr_decay_style = "WSD";
    f.lr_wsd_decay_iters = 100;
    f.lr_wsd_decay_style = "linear";
    s = from_flags(&f);
    assert_int_equal(s.decay_steps, 4000);
    assert_int_equal(s.wd_incr_steps, 8000);
    assert_int_equal(s.wsd_decay_steps, 800);
    assert_int_equal(s.decay_style, LR_DECAY_WSD);
    assert_int_equal(s.wsd_style, LR_WSD_LINEAR);
    assert_near(lr_schedule_lr(&s, 3600), MIN_LR + 0.5 * (MAX_LR - MIN_LR));
}

static void test_flags_warmup_fraction_of_decay(void **state)
{
    (void)state;
    struct lr_schedule_flags f = iteration_flags();
    f.lr_warmup_fraction = 0.01;
    f.lr_decay_iters = 900;
    struct lr_schedule s = from_flags(&f);
    assert_int_equal(s.decay_steps, 7200);
    assert_true(s.warmup_steps == 0.01 * 7200.0); /* 72, computed as upstream does */
}

static void test_flags_sample_based(void **state)
{
    (void)state;
    struct lr_schedule_flags f;
    lr_schedule_flags_default(&f);
    f.lr = MAX_LR;
    f.train_samples = 5000;
    f.global_batch_size = 16;
    f.lr_warmup_samples = 100;
    f.lr_decay_style = "cosine";
    struct lr_schedule s = from_flags(&f);
    assert_true(s.warmup_steps == 100.0);
    assert_int_equal(s.decay_steps, 5000);
    assert_int_equal(s.wd_incr_steps, 5000);
    assert_near(lr_schedule_lr(&s, 2550), 0.5 * MAX_LR);

    f.lr_decay_samples = 3000;
    f.lr_warmup_samples = 0;
    f.lr_warmup_fraction = 0.1;
    f.lr_decay_style = "WSD";
    f.lr_wsd_decay_samples = 600;
    s = from_flags(&f);
    assert_int_equal(s.decay_steps, 3000);
    assert_true(s.warmup_steps == 300.0);
    assert_int_equal(s.wsd_decay_steps, 600);
    assert_int_equal(s.wd_incr_steps, 5000);
}

static void test_flags_increasing_weight_decay(void **state)
{
    (void)state;
    struct lr_schedule_flags f = iteration_flags();
    f.weight_decay_incr_style = "linear";
    f.start_weight_decay = 0.0;
    f.end_weight_decay = 0.1;
    struct lr_schedule s = from_flags(&f);
    assert_int_equal(s.wd_style, WD_INCR_LINEAR);
    assert_near(lr_schedule_wd(&s, 4000), 0.05);
}

/* Each bad combination is refused with a message naming the flag at fault. */
static void test_flags_rejects_bad_combinations(void **state)
{
    (void)state;
    struct lr_schedule s;
    char err[256];
    struct lr_schedule_flags f;

#define EXPECT_REJECT(stmt, needle)                                                                \
    do {                                                                                           \
        f = iteration_flags();                                                                     \
        stmt;                                                                                      \
        err[0] = 0;                                                                                \
        assert_false(lr_schedule_from_flags(&s, &f, err, sizeof(err)));                            \
        if (!strstr(err, needle)) print_error("message \"%s\" lacks \"%s\"\n", err, needle);       \
        assert_non_null(strstr(err, needle));                                                      \
    } while (0)

    EXPECT_REJECT(f.lr = NAN, "--lr");
    EXPECT_REJECT(f.lr_decay_style = "exponential", "--lr-decay-style");
    EXPECT_REJECT(f.lr_wsd_decay_style = "step", "--lr-wsd-decay-style");
    EXPECT_REJECT(f.weight_decay_incr_style = "WSD", "--weight-decay-incr-style");
    EXPECT_REJECT(f.train_samples = 100, "--train-samples");
    EXPECT_REJECT((f.train_iters = -1, f.train_samples = -1), "--train-iters");
    EXPECT_REJECT(f.global_batch_size = 0, "--global-batch-size");
    EXPECT_REJECT(f.lr_decay_samples = 100, "--lr-decay-samples");
    EXPECT_REJECT(f.lr_warmup_samples = 100, "--lr-warmup-samples");
    EXPECT_REJECT(f.lr_wsd_decay_samples = 100, "--lr-wsd-decay-samples");
    EXPECT_REJECT((f.lr_warmup_fraction = 0.1, f.lr_warmup_iters = 10), "--lr-warmup-fraction");
    EXPECT_REJECT(f.lr_warmup_iters = 1000, "warmup");
    EXPECT_REJECT(f.lr_warmup_fraction = 1.0, "warmup");
    EXPECT_REJECT(f.lr_decay_style = "WSD", "--lr-wsd-decay-iters");
    EXPECT_REJECT(f.min_lr = 1.0, "--min-lr");
    EXPECT_REJECT(f.start_weight_decay = 0.0, "--start-weight-decay");
    EXPECT_REJECT(f.weight_decay_incr_style = "cosine", "--start-weight-decay");
    EXPECT_REJECT(f.lr_decay_iters = INT64_MAX / 4, "overflows");
    EXPECT_REJECT(f.lr_warmup_iters = -5, "--lr-warmup-iters");
    /* sample-based training refuses iteration-based schedule flags */
    EXPECT_REJECT((f.train_iters = -1, f.train_samples = 800, f.lr_decay_iters = 10),
                  "--lr-decay-iters");
    EXPECT_REJECT((f.train_iters = -1, f.train_samples = 800, f.lr_warmup_iters = 10),
                  "--lr-warmup-iters");
    EXPECT_REJECT((f.train_iters = -1, f.train_samples = 800, f.lr_wsd_decay_iters = 10),
                  "--lr-wsd-decay-iters");
    EXPECT_REJECT((f.train_iters = -1, f.train_samples = 800, f.lr_warmup_samples = 10,
                   f.lr_warmup_fraction = 0.1),
                  "--lr-warmup-fraction");
    EXPECT_REJECT((f.train_iters = 0, f.train_samples = 800), "--train-iters");
#undef EXPECT_REJECT
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warmup_rises_linearly_to_max_lr),
        cmocka_unit_test(test_warmup_starts_from_lr_warmup_init),
        cmocka_unit_test(test_no_warmup_starts_at_max_lr),
        cmocka_unit_test(test_linear_decay_reaches_min_lr_at_decay_steps),
        cmocka_unit_test(test_cosine_decay_follows_half_cosine),
        cmocka_unit_test(test_constant_style_holds_max_lr_past_decay_steps),
        cmocka_unit_test(test_inverse_square_root_decay),
        cmocka_unit_test(test_inverse_square_root_is_floored_at_min_lr),
        cmocka_unit_test(test_inverse_square_root_without_warmup_counts_from_one),
        cmocka_unit_test(test_wsd_holds_then_anneals_in_each_style),
        cmocka_unit_test(test_fractional_warmup_steps_are_kept),
        cmocka_unit_test(test_weight_decay_constant),
        cmocka_unit_test(test_weight_decay_linear_increase),
        cmocka_unit_test(test_weight_decay_cosine_increase),
        cmocka_unit_test(test_init_rejects_upstream_assertion_failures),
        cmocka_unit_test(test_style_names_round_trip),
        cmocka_unit_test(test_flags_defaults_are_megatrons),
        cmocka_unit_test(test_flags_iteration_based_counts_samples),
        cmocka_unit_test(test_flags_warmup_fraction_of_decay),
        cmocka_unit_test(test_flags_sample_based),
        cmocka_unit_test(test_flags_increasing_weight_decay),
        cmocka_unit_test(test_flags_rejects_bad_combinations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
