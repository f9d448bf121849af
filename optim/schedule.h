/* Megatron's OptimizerParamScheduler (megatron/core/optimizer_param_scheduler.py): the learning
 * rate and weight decay as pure functions of the number of training SAMPLES consumed.
 *
 * Learning rate at s samples:
 *   warmup_steps > 0 and s <= warmup_steps:  init_lr + (max_lr - init_lr) * s / warmup_steps
 *   constant style:                          max_lr (even past decay_steps)
 *   s > decay_steps:                         min_lr
 *   inverse-square-root:  max(min_lr, max_lr * sqrt(max(warmup,1)) / sqrt(max(s,1)))
 *   otherwise, with r = (s - warmup) / (decay - warmup):  min_lr + coeff * (max_lr - min_lr),
 *     linear: 1 - r;  cosine: (cos(pi r) + 1) / 2;
 *     WSD: 1 until decay - wsd_decay_steps, then with w = (s - (decay - wsd)) / wsd:
 *       exponential 2 * 0.5^w - 1, linear 1 - w, cosine (cos(pi w) + 1) / 2, minus_sqrt 1 - sqrt(w)
 * Weight decay at s samples: end_wd past wd_incr_steps; constant: end_wd; otherwise with
 *   r = s / wd_incr_steps:  start_wd + coeff * (end_wd - start_wd), linear r, cosine
 *   (cos(pi (1 - r)) + 1) / 2.
 * The arithmetic follows upstream's expression order, so values match Python's bit for bit.
 *
 * How training uses it (megatron/training/training.py:train_step): the update of an iteration uses
 * the rate at the samples consumed BEFORE it; after every successful (not skipped) step the count
 * advances by the global batch size. Per-group multipliers (wd_mult 0 for biases and norms) are the
 * caller's. */
#ifndef MEGATRON_OPTIM_SCHEDULE_H
#define MEGATRON_OPTIM_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lr_decay_style {
    LR_DECAY_CONSTANT,
    LR_DECAY_LINEAR,
    LR_DECAY_COSINE,
    LR_DECAY_INVERSE_SQUARE_ROOT,
    LR_DECAY_WSD,
};

enum lr_wsd_decay_style {
    LR_WSD_EXPONENTIAL,
    LR_WSD_LINEAR,
    LR_WSD_COSINE,
    LR_WSD_MINUS_SQRT,
};

enum wd_incr_style {
    WD_INCR_CONSTANT,
    WD_INCR_LINEAR,
    WD_INCR_COSINE,
};

struct lr_schedule {
    double init_lr, max_lr, min_lr;
    double warmup_steps; /* samples; fractional from --lr-warmup-fraction, as upstream */
    int64_t decay_steps; /* samples */
    enum lr_decay_style decay_style;
    int64_t wsd_decay_steps; /* samples of the WSD anneal; -1 when unset (only WSD needs it) */
    enum lr_wsd_decay_style wsd_style;
    double start_wd, end_wd;
    int64_t wd_incr_steps; /* samples */
    enum wd_incr_style wd_style;
};

/* Flag value <-> enum, with Megatron's spellings ("inverse-square-root", "WSD", "minus_sqrt").
 * parse returns false for an unknown name. */
bool lr_schedule_parse_decay_style(const char *name, enum lr_decay_style *out);
bool lr_schedule_parse_wsd_style(const char *name, enum lr_wsd_decay_style *out);
bool lr_schedule_parse_wd_style(const char *name, enum wd_incr_style *out);
const char *lr_schedule_decay_style_name(enum lr_decay_style style);
const char *lr_schedule_wsd_style_name(enum lr_wsd_decay_style style);
const char *lr_schedule_wd_style_name(enum wd_incr_style style);

/* Fills *s from explicit numbers, in the order of OptimizerParamScheduler's constructor, and checks
 * upstream's assertions (0 <= min_lr <= max_lr, init_lr <= max_lr, decay_steps > 0,
 * warmup_steps < decay_steps, WSD has wsd_decay_steps >= 0, 0 <= start_wd <= end_wd, a constant
 * weight decay has start_wd == end_wd, an increasing one wd_incr_steps > 0). On a violation returns
 * false with "<what>: <why>; <what to do>" in err. */
bool lr_schedule_init(struct lr_schedule *s, double init_lr, double max_lr, double min_lr,
                      double warmup_steps, int64_t decay_steps, enum lr_decay_style decay_style,
                      int64_t wsd_decay_steps, enum lr_wsd_decay_style wsd_style, double start_wd,
                      double end_wd, int64_t wd_incr_steps, enum wd_incr_style wd_style,
                      char *err, size_t errlen);

/* Learning rate / weight decay after num_samples samples (num_samples >= 0). */
double lr_schedule_lr(const struct lr_schedule *s, int64_t num_samples);
double lr_schedule_wd(const struct lr_schedule *s, int64_t num_samples);

/* Megatron's flag values, as plain numbers: -1 is "not given" for counts, NAN for floats, NULL for
 * a style (its default). lr_schedule_flags_default() fills Megatron's defaults. */
struct lr_schedule_flags {
    double lr;                       /* --lr (required) */
    double min_lr;                   /* --min-lr, 0.0 */
    double lr_warmup_init;           /* --lr-warmup-init, 0.0 */
    const char *lr_decay_style;      /* --lr-decay-style, "linear" */
    const char *lr_wsd_decay_style;  /* --lr-wsd-decay-style, "exponential" */
    int64_t train_iters;             /* --train-iters */
    int64_t train_samples;           /* --train-samples */
    int64_t global_batch_size;       /* --global-batch-size (resolved, > 0) */
    int64_t lr_decay_iters;          /* --lr-decay-iters, defaults to --train-iters */
    int64_t lr_decay_samples;        /* --lr-decay-samples, defaults to --train-samples */
    double lr_warmup_fraction;       /* --lr-warmup-fraction */
    int64_t lr_warmup_iters;         /* --lr-warmup-iters, 0 */
    int64_t lr_warmup_samples;       /* --lr-warmup-samples, 0 */
    int64_t lr_wsd_decay_iters;      /* --lr-wsd-decay-iters */
    int64_t lr_wsd_decay_samples;    /* --lr-wsd-decay-samples */
    double weight_decay;             /* --weight-decay, 0.01 */
    double start_weight_decay;       /* --start-weight-decay */
    double end_weight_decay;         /* --end-weight-decay */
    const char *weight_decay_incr_style; /* --weight-decay-incr-style, "constant" */
};

void lr_schedule_flags_default(struct lr_schedule_flags *f);

/* The schedule training.py:get_optimizer_param_scheduler builds from these flags, after the checks
 * arguments.py:validate_args makes on them. Iteration-based (train_iters > 0): decay =
 * lr_decay_iters * gbs, warmup = lr_warmup_fraction * decay or lr_warmup_iters * gbs, wsd decay =
 * lr_wsd_decay_iters * gbs, wd incr = train_iters * gbs. Sample-based (train_samples > 0): the
 * same in samples. A constant weight decay takes start = end = weight_decay. On a bad combination
 * returns false with "<flag>: <why>; <what to do>" in err. */
bool lr_schedule_from_flags(struct lr_schedule *s, const struct lr_schedule_flags *f, char *err,
                            size_t errlen);

/* lr_schedule_from_flags, ending the program through die_user on a bad combination. */
void lr_schedule_from_flags_or_die(struct lr_schedule *s, const struct lr_schedule_flags *f);

#endif
