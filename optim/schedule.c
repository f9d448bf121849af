/* Learning-rate and weight-decay schedules (Megatron's OptimizerParamScheduler) and their
 * construction from Megatron's flag values (training.py:get_optimizer_param_scheduler). */
#include "optim/schedule.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/error.h"

/* ---- style names ---- */

static const char *const decay_style_names[] = {
    [LR_DECAY_CONSTANT] = "constant",
    [LR_DECAY_LINEAR] = "linear",
    [LR_DECAY_COSINE] = "cosine",
    [LR_DECAY_INVERSE_SQUARE_ROOT] = "inverse-square-root",
    [LR_DECAY_WSD] = "WSD",
};
static const char *const wsd_style_names[] = {
    [LR_WSD_EXPONENTIAL] = "exponential",
    [LR_WSD_LINEAR] = "linear",
    [LR_WSD_COSINE] = "cosine",
    [LR_WSD_MINUS_SQRT] = "minus_sqrt",
};
static const char *const wd_style_names[] = {
    [WD_INCR_CONSTANT] = "constant",
    [WD_INCR_LINEAR] = "linear",
    [WD_INCR_COSINE] = "cosine",
};

#define NAMES_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Index of name in names[0..count), or -1. Names are matched exactly, as argparse choices are. */
static int find_name(const char *const *names, int count, const char *name)
{
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], name) == 0) return i;
    return -1;
}

bool lr_schedule_parse_decay_style(const char *name, enum lr_decay_style *out)
{
    int i = find_name(decay_style_names, NAMES_COUNT(decay_style_names), name);
    if (i < 0) return false;
    *out = (enum lr_decay_style)i;
    return true;
}

bool lr_schedule_parse_wsd_style(const char *name, enum lr_wsd_decay_style *out)
{
    int i = find_name(wsd_style_names, NAMES_COUNT(wsd_style_names), name);
    if (i < 0) return false;
    *out = (enum lr_wsd_decay_style)i;
    return true;
}

bool lr_schedule_parse_wd_style(const char *name, enum wd_incr_style *out)
{
    int i = find_name(wd_style_names, NAMES_COUNT(wd_style_names), name);
    if (i < 0) return false;
    *out = (enum wd_incr_style)i;
    return true;
}

const char *lr_schedule_decay_style_name(enum lr_decay_style style)
{
    CHECK((int)style >= 0 && (int)style < NAMES_COUNT(decay_style_names));
    return decay_style_names[style];
}

const char *lr_schedule_wsd_style_name(enum lr_wsd_decay_style style)
{
    CHECK((int)style >= 0 && (int)style < NAMES_COUNT(wsd_style_names));
    return wsd_style_names[style];
}

const char *lr_schedule_wd_style_name(enum wd_incr_style style)
{
    CHECK((int)style >= 0 && (int)style < NAMES_COUNT(wd_style_names));
    return wd_style_names[style];
}

/* ---- construction from explicit numbers ---- */

/* Writes the message to err and returns false, so a check reads `return fail(...)`. */
__attribute__((format(printf, 3, 4))) static bool fail(char *err, size_t errlen, const char *fmt,
                                                       ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errlen > 0) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return false;
}

static bool check_lr_values(double init_lr, double max_lr, double min_lr, char *err, size_t errlen)
{
    if (!isfinite(init_lr) || !isfinite(max_lr) || !isfinite(min_lr))
        return fail(err, errlen,
                    "learning rate: --lr %g, --min-lr %g, --lr-warmup-init %g are not all finite "
                    "numbers; give finite values",
                    max_lr, min_lr, init_lr);
    if (min_lr < 0.0)
        return fail(err, errlen, "--min-lr %g: negative; use a learning-rate floor >= 0", min_lr);
    if (max_lr < min_lr)
        return fail(err, errlen, "--min-lr %g: larger than --lr %g; set --min-lr <= --lr", min_lr,
                    max_lr);
    if (init_lr > max_lr)
        return fail(err, errlen,
                    "--lr-warmup-init %g: larger than --lr %g; warmup rises to --lr, so set "
                    "--lr-warmup-init <= --lr",
                    init_lr, max_lr);
    return true;
}

static bool check_lr_steps(double warmup_steps, int64_t decay_steps,
                           enum lr_decay_style decay_style, int64_t wsd_decay_steps, char *err,
                           size_t errlen)
{
    if (decay_steps <= 0)
        return fail(err, errlen,
                    "learning-rate decay: spans %lld samples; give a positive --lr-decay-iters or "
                    "--lr-decay-samples (default: the training length)",
                    (long long)decay_steps);
    if (!(warmup_steps >= 0.0))
        return fail(err, errlen,
                    "learning-rate warmup: %g samples; use --lr-warmup-iters or "
                    "--lr-warmup-samples >= 0, or --lr-warmup-fraction in [0, 1)",
                    warmup_steps);
    if (!(warmup_steps < (double)decay_steps))
        return fail(err, errlen,
                    "learning-rate warmup: %g samples is not shorter than the decay (%lld "
                    "samples); shorten the warmup or lengthen --lr-decay-iters/--lr-decay-samples",
                    warmup_steps, (long long)decay_steps);
    if (decay_style == LR_DECAY_WSD && wsd_decay_steps < 0)
        return fail(err, errlen,
                    "--lr-decay-style WSD: the anneal length is not given; set "
                    "--lr-wsd-decay-iters or --lr-wsd-decay-samples");
    return true;
}

static bool check_wd(double start_wd, double end_wd, int64_t wd_incr_steps,
                     enum wd_incr_style wd_style, char *err, size_t errlen)
{
    if (!isfinite(start_wd) || !isfinite(end_wd) || start_wd < 0.0 || end_wd < start_wd)
        return fail(err, errlen,
                    "weight decay: start %g and end %g must satisfy 0 <= start <= end; check "
                    "--weight-decay, --start-weight-decay and --end-weight-decay",
                    start_wd, end_wd);
    if (wd_style == WD_INCR_CONSTANT && start_wd != end_wd)
        return fail(err, errlen,
                    "--weight-decay-incr-style constant: start %g and end %g differ; use one "
                    "--weight-decay, or an increasing style (linear, cosine)",
                    start_wd, end_wd);
    if (wd_style != WD_INCR_CONSTANT && wd_incr_steps <= 0)
        return fail(err, errlen,
                    "--weight-decay-incr-style %s: the increase spans %lld samples; give a "
                    "positive training length",
                    lr_schedule_wd_style_name(wd_style), (long long)wd_incr_steps);
    return true;
}

bool lr_schedule_init(struct lr_schedule *s, double init_lr, double max_lr, double min_lr,
                      double warmup_steps, int64_t decay_steps, enum lr_decay_style decay_style,
                      int64_t wsd_decay_steps, enum lr_wsd_decay_style wsd_style, double start_wd,
                      double end_wd, int64_t wd_incr_steps, enum wd_incr_style wd_style,
                      char *err, size_t errlen)
{
    if (!check_lr_values(init_lr, max_lr, min_lr, err, errlen)) return false;
    if (!check_lr_steps(warmup_steps, decay_steps, decay_style, wsd_decay_steps, err, errlen))
        return false;
    if (!check_wd(start_wd, end_wd, wd_incr_steps, wd_style, err, errlen)) return false;
    *s = (struct lr_schedule){
        .init_lr = init_lr,
        .max_lr = max_lr,
        .min_lr = min_lr,
        .warmup_steps = warmup_steps,
        .decay_steps = decay_steps,
        .decay_style = decay_style,
        .wsd_decay_steps = wsd_decay_steps,
        .wsd_style = wsd_style,
        .start_wd = start_wd,
        .end_wd = end_wd,
        .wd_incr_steps = wd_incr_steps,
        .wd_style = wd_style,
    };
    return true;
}

/* ---- evaluation (optimizer_param_scheduler.py: get_lr, get_wd) ---- */

/* The WSD coefficient: 1 through the stable phase, then the anneal of wsd_style. */
static double wsd_coeff(const struct lr_schedule *s, int64_t num_samples)
{
    const int64_t anneal_start = s->decay_steps - s->wsd_decay_steps;
    if (num_samples <= anneal_start) return 1.0;
    const double w = (double)(num_samples - anneal_start) / (double)s->wsd_decay_steps;
    switch (s->wsd_style) {
    case LR_WSD_LINEAR: return 1.0 - w;
    case LR_WSD_COSINE: return 0.5 * (cos(M_PI * w) + 1.0);
    case LR_WSD_EXPONENTIAL: return (2.0 * pow(0.5, w)) - 1.0;
    case LR_WSD_MINUS_SQRT: return 1.0 - sqrt(w);
    }
    BUG("unknown WSD decay style %d", (int)s->wsd_style);
}

/* pow(x, 0.5), not sqrt: upstream writes x**0.5, which Python evaluates with the C library pow. */
static double inverse_sqrt_lr(const struct lr_schedule *s, int64_t num_samples)
{
    const double warmup = s->warmup_steps < 1.0 ? 1.0 : s->warmup_steps;
    const double n = num_samples < 1 ? 1.0 : (double)num_samples;
    const double lr = s->max_lr * pow(warmup, 0.5) / pow(n, 0.5);
    return lr > s->min_lr ? lr : s->min_lr;
}

double lr_schedule_lr(const struct lr_schedule *s, int64_t num_samples)
{
    CHECK(num_samples >= 0);
    const double n = (double)num_samples;
    if (s->warmup_steps > 0.0 && n <= s->warmup_steps)
        return s->init_lr + (s->max_lr - s->init_lr) * n / s->warmup_steps;
    if (s->decay_style == LR_DECAY_CONSTANT) return s->max_lr;
    if (num_samples > s->decay_steps) return s->min_lr;
    if (s->decay_style == LR_DECAY_INVERSE_SQUARE_ROOT) return inverse_sqrt_lr(s, num_samples);

    const double ratio = (n - s->warmup_steps) / ((double)s->decay_steps - s->warmup_steps);
    double coeff;
    switch (s->decay_style) {
    case LR_DECAY_LINEAR: coeff = 1.0 - ratio; break;
    case LR_DECAY_COSINE: coeff = 0.5 * (cos(M_PI * ratio) + 1.0); break;
    case LR_DECAY_WSD: coeff = wsd_coeff(s, num_samples); break;
    default: BUG("unexpected decay style %d", (int)s->decay_style);
    }
    return s->min_lr + coeff * (s->max_lr - s->min_lr);
}

double lr_schedule_wd(const struct lr_schedule *s, int64_t num_samples)
{
    CHECK(num_samples >= 0);
    if (num_samples > s->wd_incr_steps) return s->end_wd;
    if (s->wd_style == WD_INCR_CONSTANT) return s->end_wd;
    const double ratio = (double)num_samples / (double)s->wd_incr_steps;
    double coeff;
    switch (s->wd_style) {
    case WD_INCR_LINEAR: coeff = ratio; break;
    case WD_INCR_COSINE: coeff = 0.5 * (cos(M_PI * (1.0 - ratio)) + 1.0); break;
    default: BUG("unexpected weight-decay style %d", (int)s->wd_style);
    }
    return s->start_wd + coeff * (s->end_wd - s->start_wd);
}

/* ---- construction from Megatron's flags ---- */

void lr_schedule_flags_default(struct lr_schedule_flags *f)
{
    *f = (struct lr_schedule_flags){
        .lr = NAN,
        .min_lr = 0.0,
        .lr_warmup_init = 0.0,
        .lr_decay_style = "linear",
        .lr_wsd_decay_style = "exponential",
        .train_iters = -1,
        .train_samples = -1,
        .global_batch_size = -1,
        .lr_decay_iters = -1,
        .lr_decay_samples = -1,
        .lr_warmup_fraction = NAN,
        .lr_warmup_iters = 0,
        .lr_warmup_samples = 0,
        .lr_wsd_decay_iters = -1,
        .lr_wsd_decay_samples = -1,
        .weight_decay = 0.01,
        .start_weight_decay = NAN,
        .end_weight_decay = NAN,
        .weight_decay_incr_style = "constant",
    };
}

/* The styles, NULL meaning Megatron's default. */
static bool parse_styles(const struct lr_schedule_flags *f, enum lr_decay_style *decay,
                         enum lr_wsd_decay_style *wsd, enum wd_incr_style *wd, char *err,
                         size_t errlen)
{
    const char *d = f->lr_decay_style ? f->lr_decay_style : "linear";
    const char *w = f->lr_wsd_decay_style ? f->lr_wsd_decay_style : "exponential";
    const char *i = f->weight_decay_incr_style ? f->weight_decay_incr_style : "constant";
    if (!lr_schedule_parse_decay_style(d, decay))
        return fail(err, errlen,
                    "--lr-decay-style %s: unknown style; use constant, linear, cosine, "
                    "inverse-square-root or WSD",
                    d);
    if (!lr_schedule_parse_wsd_style(w, wsd))
        return fail(err, errlen,
                    "--lr-wsd-decay-style %s: unknown style; use exponential, linear, cosine or "
                    "minus_sqrt",
                    w);
    if (!lr_schedule_parse_wd_style(i, wd))
        return fail(err, errlen,
                    "--weight-decay-incr-style %s: unknown style; use constant, linear or cosine",
                    i);
    return true;
}

/* Counts are -1 when not given; any other negative value is a mistake. */
static bool check_count(const char *flag, int64_t v, char *err, size_t errlen)
{
    if (v < -1)
        return fail(err, errlen, "%s %lld: negative; give a count >= 0", flag, (long long)v);
    return true;
}

static bool check_counts(const struct lr_schedule_flags *f, char *err, size_t errlen)
{
    const struct {
        const char *flag;
        int64_t v;
    } counts[] = {
        {"--train-iters", f->train_iters},
        {"--train-samples", f->train_samples},
        {"--lr-decay-iters", f->lr_decay_iters},
        {"--lr-decay-samples", f->lr_decay_samples},
        {"--lr-warmup-iters", f->lr_warmup_iters},
        {"--lr-warmup-samples", f->lr_warmup_samples},
        {"--lr-wsd-decay-iters", f->lr_wsd_decay_iters},
        {"--lr-wsd-decay-samples", f->lr_wsd_decay_samples},
    };
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++)
        if (!check_count(counts[k].flag, counts[k].v, err, errlen)) return false;
    if (f->lr_warmup_iters < 0 || f->lr_warmup_samples < 0)
        return fail(err, errlen,
                    "--lr-warmup-iters/--lr-warmup-samples: negative; give a count >= 0");
    if (f->global_batch_size <= 0)
        return fail(err, errlen,
                    "--global-batch-size %lld: not positive; give the number of samples per "
                    "iteration",
                    (long long)f->global_batch_size);
    return true;
}

/* arguments.py:validate_args: iteration-based training takes no sample-based schedule flags. */
static bool check_iteration_based(const struct lr_schedule_flags *f, char *err, size_t errlen)
{
    if (f->train_samples != -1)
        return fail(err, errlen,
                    "--train-iters and --train-samples: both given; give only one of them");
    if (f->lr_decay_samples != -1)
        return fail(err, errlen,
                    "--lr-decay-samples: sample-based, but training is iteration-based "
                    "(--train-iters); use --lr-decay-iters");
    if (f->lr_warmup_samples != 0)
        return fail(err, errlen,
                    "--lr-warmup-samples: sample-based, but training is iteration-based "
                    "(--train-iters); use --lr-warmup-iters or --lr-warmup-fraction");
    if (f->lr_wsd_decay_samples != -1)
        return fail(err, errlen,
                    "--lr-wsd-decay-samples: sample-based, but training is iteration-based "
                    "(--train-iters); use --lr-wsd-decay-iters");
    if (!isnan(f->lr_warmup_fraction) && f->lr_warmup_iters != 0)
        return fail(err, errlen,
                    "--lr-warmup-fraction and --lr-warmup-iters: both given; give only one of "
                    "them");
    return true;
}

/* arguments.py:validate_args: sample-based training takes no iteration-based schedule flags. */
static bool check_sample_based(const struct lr_schedule_flags *f, char *err, size_t errlen)
{
    if (f->lr_decay_iters != -1)
        return fail(err, errlen,
                    "--lr-decay-iters: iteration-based, but training is sample-based "
                    "(--train-samples); use --lr-decay-samples");
    if (f->lr_warmup_iters != 0)
        return fail(err, errlen,
                    "--lr-warmup-iters: iteration-based, but training is sample-based "
                    "(--train-samples); use --lr-warmup-samples or --lr-warmup-fraction");
    if (f->lr_wsd_decay_iters != -1)
        return fail(err, errlen,
                    "--lr-wsd-decay-iters: iteration-based, but training is sample-based "
                    "(--train-samples); use --lr-wsd-decay-samples");
    if (!isnan(f->lr_warmup_fraction) && f->lr_warmup_samples != 0)
        return fail(err, errlen,
                    "--lr-warmup-fraction and --lr-warmup-samples: both given; give only one of "
                    "them");
    return true;
}

/* iters * global batch size, or false when it does not fit in int64. */
static bool samples_of(const char *flag, int64_t iters, int64_t gbs, int64_t *out, char *err,
                       size_t errlen)
{
    if (__builtin_mul_overflow(iters, gbs, out))
        return fail(err, errlen,
                    "%s %lld: times --global-batch-size %lld overflows the sample count; give a "
                    "smaller value",
                    flag, (long long)iters, (long long)gbs);
    return true;
}

struct sched_steps {
    double warmup;
    int64_t decay, wsd_decay, wd_incr;
};

/* get_optimizer_param_scheduler, iteration-based branch. */
static bool steps_from_iterations(const struct lr_schedule_flags *f, struct sched_steps *st,
                                  char *err, size_t errlen)
{
    const int64_t gbs = f->global_batch_size;
    const bool own_decay = f->lr_decay_iters != -1;
    const int64_t decay_iters = own_decay ? f->lr_decay_iters : f->train_iters;
    if (!samples_of(own_decay ? "--lr-decay-iters" : "--train-iters", decay_iters, gbs, &st->decay,
                    err, errlen))
        return false;
    if (!samples_of("--train-iters", f->train_iters, gbs, &st->wd_incr, err, errlen)) return false;
    st->wsd_decay = -1;
    if (f->lr_wsd_decay_iters != -1 &&
        !samples_of("--lr-wsd-decay-iters", f->lr_wsd_decay_iters, gbs, &st->wsd_decay, err,
                    errlen))
        return false;
    if (!isnan(f->lr_warmup_fraction)) {
        st->warmup = f->lr_warmup_fraction * (double)st->decay;
    } else {
        int64_t w;
        if (!samples_of("--lr-warmup-iters", f->lr_warmup_iters, gbs, &w, err, errlen))
            return false;
        st->warmup = (double)w;
    }
    return true;
}

/* get_optimizer_param_scheduler, sample-based branch. */
static void steps_from_samples(const struct lr_schedule_flags *f, struct sched_steps *st)
{
    st->decay = f->lr_decay_samples != -1 ? f->lr_decay_samples : f->train_samples;
    st->wd_incr = f->train_samples;
    st->wsd_decay = f->lr_wsd_decay_samples;
    st->warmup = !isnan(f->lr_warmup_fraction) ? f->lr_warmup_fraction * (double)st->decay
                                                : (double)f->lr_warmup_samples;
}

/* validate_args: a constant weight decay takes --weight-decay and no start/end; an increasing one
 * needs both ends. */
static bool weight_decay_ends(const struct lr_schedule_flags *f, enum wd_incr_style style,
                              double *start, double *end, char *err, size_t errlen)
{
    const bool has_start = !isnan(f->start_weight_decay), has_end = !isnan(f->end_weight_decay);
    if (style == WD_INCR_CONSTANT) {
        if (has_start || has_end)
            return fail(err, errlen,
                        "--start-weight-decay/--end-weight-decay: only used with "
                        "--weight-decay-incr-style linear or cosine; drop them or use "
                        "--weight-decay");
        *start = *end = f->weight_decay;
        return true;
    }
    if (!has_start || !has_end)
        return fail(err, errlen,
                    "--weight-decay-incr-style %s: needs --start-weight-decay and "
                    "--end-weight-decay; give both",
                    lr_schedule_wd_style_name(style));
    *start = f->start_weight_decay;
    *end = f->end_weight_decay;
    return true;
}

bool lr_schedule_from_flags(struct lr_schedule *s, const struct lr_schedule_flags *f, char *err,
                            size_t errlen)
{
    /* Initialised only to quiet gcc's may-be-uninitialized; parse_styles sets all three. */
    enum lr_decay_style decay_style = LR_DECAY_LINEAR;
    enum lr_wsd_decay_style wsd_style = LR_WSD_EXPONENTIAL;
    enum wd_incr_style wd_style = WD_INCR_CONSTANT;
    if (isnan(f->lr))
        return fail(err, errlen, "--lr: not given; set the peak learning rate, e.g. --lr 3e-4");
    if (!parse_styles(f, &decay_style, &wsd_style, &wd_style, err, errlen)) return false;
    if (!check_counts(f, err, errlen)) return false;

    /* Upstream tests truthiness: --train-iters 0 counts as not given. */
    struct sched_steps st;
    if (f->train_iters > 0) {
        if (!check_iteration_based(f, err, errlen)) return false;
        if (!steps_from_iterations(f, &st, err, errlen)) return false;
    } else if (f->train_samples > 0) {
        if (f->train_iters != -1)
            return fail(err, errlen,
                        "--train-iters and --train-samples: both given; give only one of them");
        if (!check_sample_based(f, err, errlen)) return false;
        steps_from_samples(f, &st);
    } else {
        return fail(err, errlen,
                    "training length: neither --train-iters nor --train-samples is positive; give "
                    "one of them");
    }

    double start_wd = 0.0, end_wd = 0.0;
    if (!weight_decay_ends(f, wd_style, &start_wd, &end_wd, err, errlen)) return false;
    return lr_schedule_init(s, f->lr_warmup_init, f->lr, f->min_lr, st.warmup, st.decay,
                            decay_style, st.wsd_decay, wsd_style, start_wd, end_wd, st.wd_incr,
                            wd_style, err, errlen);
}

void lr_schedule_from_flags_or_die(struct lr_schedule *s, const struct lr_schedule_flags *f)
{
    char err[512];
    if (!lr_schedule_from_flags(s, f, err, sizeof(err))) die_user("%s", err);
}
