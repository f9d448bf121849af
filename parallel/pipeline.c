/* Pipeline stages and schedules: the layers of each (pp rank, model chunk), Megatron's rules for
 * them with errors that say which number to change, and the per-rank schedule tables of
 * forward_backward_no_pipelining, 1F1B and interleaved 1F1B
 * (megatron/core/pipeline_parallel/schedules.py). Checking and timing the tables lives in
 * pipeline_check.c. */
#include "parallel/pipeline.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define PRI PRId64

/* "1, 2, 4 or 8": the divisors of v (the first dozen). */
static void divisors_text(int64_t v, char *buf, size_t n)
{
    int64_t d[12];
    int k = 0;
    for (int64_t i = 1; i <= v && k < 12; i++) {
        if (i > 100000 && i != v) i = v; /* huge v: only v itself */
        if (v % i == 0) d[k++] = i;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < k && used + 24 < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%" PRI, i == 0 ? "" : i == k - 1 ? " or " : ", ", d[i]);
}

/* "8 or 12": the multiples of unit just below (if positive) and above v. */
static void multiples_text(int64_t v, int64_t unit, char *buf, size_t n)
{
    int64_t lo = v - v % unit, hi;
    if (__builtin_add_overflow(lo, unit, &hi)) snprintf(buf, n, "%" PRI, lo);
    else if (lo > 0 && lo != v) snprintf(buf, n, "%" PRI " or %" PRI, lo, hi);
    else snprintf(buf, n, "%" PRI, hi);
}

/* ------------------------------------------------------------------ stages and layers */

static bool is_uneven(const struct pipeline_spec *s) { return s->first_stage_layers >= 0 || s->last_stage_layers >= 0; }

static int middle_stages(const struct pipeline_spec *s)
{
    return s->pp - (s->first_stage_layers >= 0) - (s->last_stage_layers >= 0);
}

static int64_t middle_layers(const struct pipeline_spec *s)
{
    int64_t edge = (s->first_stage_layers > 0 ? s->first_stage_layers : 0) +
                   (s->last_stage_layers > 0 ? s->last_stage_layers : 0);
    return s->num_layers - edge;
}

/* Transformer layers of pp rank r over all its chunks. */
int64_t pipeline_rank_layers(const struct pipeline_spec *s, int r)
{
    if (!is_uneven(s)) return s->num_layers / s->pp;
    if (r == 0 && s->first_stage_layers >= 0) return s->first_stage_layers;
    if (r == s->pp - 1 && s->last_stage_layers >= 0) return s->last_stage_layers;
    return middle_layers(s) / middle_stages(s);
}

/* Every stage's layers split evenly over its chunks, so one "row" of chunks (chunk v of every
 * rank) holds L / vp layers and chunk v of rank r starts after the rows before it and the chunks
 * of ranks < r in its row: Megatron's offset, for the even and the uneven split alike. */
int64_t pipeline_layers(const struct pipeline_spec *s, int pp_rank, int chunk, int64_t *first)
{
    int64_t offset = (int64_t)chunk * (s->num_layers / s->vp);
    for (int r = 0; r < pp_rank; r++) offset += pipeline_rank_layers(s, r) / s->vp;
    if (first) *first = offset;
    return pipeline_rank_layers(s, pp_rank) / s->vp;
}

bool pipeline_holds_embedding(const struct pipeline_spec *s, int pp_rank, int chunk)
{
    (void)s;
    return pp_rank == 0 && chunk == 0;
}

bool pipeline_holds_loss(const struct pipeline_spec *s, int pp_rank, int chunk)
{
    return pp_rank == s->pp - 1 && chunk == s->vp - 1;
}

/* ------------------------------------------------------------------ validation */

/* --num-layers over --pipeline-model-parallel-size stages, all equal. */
static int check_even_split(const struct pipeline_spec *s, char *err, size_t errlen)
{
    char m[64], d[160];
    if (s->num_layers % s->pp == 0) return 0;
    multiples_text(s->num_layers, s->pp, m, sizeof m);
    divisors_text(s->num_layers, d, sizeof d);
    error_set(err, errlen,
                "--num-layers %" PRI ": must be divisible by --pipeline-model-parallel-size = %d (every stage holds "
                "the same number of layers); use --num-layers %s, a --pipeline-model-parallel-size of %s, or "
                "--decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers for an uneven split",
                s->num_layers, s->pp, m, d);
    return -1;
}

/* The middle stages' share: a layer count the edge flags leave, divisible by the middle stages
 * (TransformerConfig.__post_init__'s uneven PP checks). */
static int check_middle_layers(const struct pipeline_spec *s, char *err, size_t errlen)
{
    int64_t f = s->first_stage_layers, l = s->last_stage_layers, mid = middle_layers(s);
    int ms = middle_stages(s);
    char sum[160];
    if (f >= 0 && l >= 0)
        snprintf(sum, sizeof sum, "--decoder-first-pipeline-num-layers %" PRI " + --decoder-last-pipeline-num-layers %"
                 PRI " = %" PRI, f, l, f + l);
    else
        snprintf(sum, sizeof sum, "%s %" PRI, f >= 0 ? "--decoder-first-pipeline-num-layers"
                 : "--decoder-last-pipeline-num-layers", f >= 0 ? f : l);
    if (ms == 0 && mid != 0) {
        error_set(err, errlen, "%s: with --pipeline-model-parallel-size %d there are no middle stages, so the first "
                    "and last stage must hold all --num-layers = %" PRI "; use --decoder-last-pipeline-num-layers %" PRI,
                    sum, s->pp, s->num_layers, s->num_layers - f);
        return -1;
    }
    if (ms > 0 && mid <= 0) {
        error_set(err, errlen, "%s: leaves %s for the %d middle pipeline stage%s (--num-layers = %" PRI "); lower the "
                    "edge stages' layers by at least %" PRI, sum, mid == 0 ? "no layers" : "fewer than zero layers", ms,
                    ms == 1 ? "" : "s", s->num_layers, (int64_t)ms - mid);
        return -1;
    }
    if (ms > 0 && mid % ms != 0) {
        const char *flag = f >= 0 ? "--decoder-first-pipeline-num-layers" : "--decoder-last-pipeline-num-layers";
        int64_t edge = f >= 0 ? f : l, down = mid % ms, up = ms - down;
        char alt[64] = "";
        if (edge - up >= 1) snprintf(alt, sizeof alt, " or %" PRI, edge - up);
        error_set(err, errlen, "%s: leaves %" PRI " layers (--num-layers %" PRI " minus the edge stages) for %d "
                    "middle pipeline stages, not divisible by %d; use %s %" PRI "%s", sum, mid, s->num_layers, ms, ms,
                    flag, edge + down, alt);
        return -1;
    }
    return 0;
}

static int check_uneven_split(const struct pipeline_spec *s, char *err, size_t errlen)
{
    const char *flag = s->first_stage_layers >= 0 ? "--decoder-first-pipeline-num-layers"
                                                  : "--decoder-last-pipeline-num-layers";
    int64_t v = s->first_stage_layers >= 0 ? s->first_stage_layers : s->last_stage_layers;
    if (s->pp < 2) {
        error_set(err, errlen, "%s %" PRI ": an uneven split needs --pipeline-model-parallel-size > 1; raise it or "
                    "remove the flag", flag, v);
        return -1;
    }
    if (s->first_stage_layers == 0 || s->last_stage_layers == 0) {
        error_set(err, errlen, "%s 0: every pipeline stage needs at least 1 layer; give 1 or more",
                    s->first_stage_layers == 0 ? "--decoder-first-pipeline-num-layers"
                                               : "--decoder-last-pipeline-num-layers");
        return -1;
    }
    return check_middle_layers(s, err, errlen);
}

/* One stage's layers (named by what) must split evenly over vp chunks. */
static int check_stage_chunks(int64_t layers, const char *what, const char *fix_flag, const char *vflag, int vp,
                              char *err, size_t errlen)
{
    char d[160], m[64], fix[160] = "";
    if (layers % vp == 0) return 0;
    divisors_text(layers, d, sizeof d);
    multiples_text(layers, vp, m, sizeof m);
    if (fix_flag) snprintf(fix, sizeof fix, ", or %s %s", fix_flag, m);
    error_set(err, errlen, "%s: %d virtual stages must divide the %" PRI " layers of %s (every model chunk of a "
                "stage holds the same number of layers); use a virtual stage count of %s%s", vflag, vp, layers, what,
                d, fix);
    return -1;
}

static int check_chunks(const struct pipeline_spec *s, const char *vflag, char *err, size_t errlen)
{
    char what[160];
    if (s->vp == 1) return 0;
    if (!is_uneven(s)) {
        snprintf(what, sizeof what, "each pipeline stage (--num-layers %" PRI " / --pipeline-model-parallel-size %d)",
                 s->num_layers, s->pp);
        return check_stage_chunks(s->num_layers / s->pp, what, NULL, vflag, s->vp, err, errlen);
    }
    if (s->first_stage_layers >= 0 &&
        check_stage_chunks(s->first_stage_layers, "the first stage", "--decoder-first-pipeline-num-layers", vflag,
                           s->vp, err, errlen))
        return -1;
    if (s->last_stage_layers >= 0 &&
        check_stage_chunks(s->last_stage_layers, "the last stage", "--decoder-last-pipeline-num-layers", vflag,
                           s->vp, err, errlen))
        return -1;
    if (middle_stages(s) > 0) {
        snprintf(what, sizeof what, "each middle stage (%" PRI " middle layers / %d middle stages)", middle_layers(s),
                 middle_stages(s));
        return check_stage_chunks(middle_layers(s) / middle_stages(s), what, NULL, vflag, s->vp, err, errlen);
    }
    return 0;
}

/* arguments.py: the interleaved schedule needs PP > 1, and PP > 2 when p2p communication is not
 * overlapped (with 2 stages both neighbours are one rank, and a batch would pair two sends and two
 * receives between the same two ranks). */
static int check_interleaving_stages(const struct pipeline_spec *s, const char *vflag, char *err, size_t errlen)
{
    if (s->pp < 2) {
        error_set(err, errlen, "%s: the interleaved schedule needs --pipeline-model-parallel-size > 1; raise it or "
                    "remove the flag", vflag);
        return -1;
    }
    if (s->pp < 3 && !s->overlap_p2p) {
        error_set(err, errlen, "--no-overlap-p2p-communication: the interleaved schedule without overlapped p2p "
                    "communication needs --pipeline-model-parallel-size > 2 (with 2 stages both neighbours are the "
                    "same rank and one batch would hold two sends and two receives between them); use "
                    "--pipeline-model-parallel-size 3 or more, or drop --no-overlap-p2p-communication");
        return -1;
    }
    return 0;
}

/* Megatron's rule for M micro batches in groups of G (forward_backward_pipelining_with_interleaving):
 * PP <= G <= M, and the last group (M % G) empty or at least PP, else stages wait on each other. */
static bool group_fits(int64_t m, int64_t g, int pp) { return g <= m && (m % g == 0 || m % g >= pp); }

/* "4 or 8 micro batches (--global-batch-size 32 or 64)": the nearest valid M below and above. */
static void valid_micro_batches_text(int64_t m, int64_t g, int pp, int64_t mbdp, char *buf, size_t n)
{
    int64_t lo = 0, hi = m + 1;
    for (int64_t k = m - 1; k >= g; k--)
        if (group_fits(k, g, pp)) {
            lo = k;
            break;
        }
    while (!group_fits(hi, g, pp)) hi++;
    int64_t gbs_hi;
    int used = lo ? snprintf(buf, n, "%" PRI " or %" PRI " micro batches", lo, hi)
                  : snprintf(buf, n, "%" PRI " micro batches", hi);
    if (mbdp > 0 && !__builtin_mul_overflow(hi, mbdp, &gbs_hi) && used > 0 && (size_t)used < n) {
        if (lo) snprintf(buf + used, n - (size_t)used, " (--global-batch-size %" PRI " or %" PRI ")", lo * mbdp, gbs_hi);
        else snprintf(buf + used, n - (size_t)used, " (--global-batch-size %" PRI ")", gbs_hi);
    }
}

/* ", or --microbatch-group-size-per-virtual-pipeline-stage 6": the valid group size nearest G. */
static void valid_group_text(int64_t m, int64_t g, int pp, char *buf, size_t n)
{
    buf[0] = '\0';
    for (int64_t d = 1; d <= m; d++) {
        int64_t cand[2] = {g - d, g + d};
        for (int i = 0; i < 2; i++)
            if (cand[i] >= pp && group_fits(m, cand[i], pp)) {
                snprintf(buf, n, ", or --microbatch-group-size-per-virtual-pipeline-stage %" PRI, cand[i]);
                return;
            }
    }
}

static int check_micro_batch_groups(const struct pipeline_spec *s, bool group_given, int64_t mbdp, char *err,
                                    size_t errlen)
{
    int64_t m = s->num_micro_batches, g = s->group_size;
    char mtext[200], vm[160], vg[96];
    if (mbdp > 0)
        snprintf(mtext, sizeof mtext, "%" PRI " micro batches per iteration (--global-batch-size %" PRI " / "
                 "(--micro-batch-size x data-parallel size = %" PRI "))", m, m * mbdp, mbdp);
    else
        snprintf(mtext, sizeof mtext, "%" PRI " micro batches per iteration", m);
    if (group_given && g < s->pp) {
        error_set(err, errlen, "--microbatch-group-size-per-virtual-pipeline-stage %" PRI ": must be at least "
                    "--pipeline-model-parallel-size = %d (a group keeps every stage busy while it passes); use %d or "
                    "more", g, s->pp, s->pp);
        return -1;
    }
    valid_micro_batches_text(m, g, s->pp, mbdp, vm, sizeof vm);
    if (!group_given && m < g) {
        error_set(err, errlen, "%s: the interleaved schedule needs at least --pipeline-model-parallel-size = %d "
                    "micro batches; use %s, or no virtual stages", mtext, s->pp, vm);
        return -1;
    }
    if (m < g) {
        error_set(err, errlen, "--microbatch-group-size-per-virtual-pipeline-stage %" PRI ": more than the %s; use "
                    "%" PRI " or less%s, or %s", g, mtext, m, m >= s->pp ? "" : " (after raising the batch)", vm);
        return -1;
    }
    if (!group_fits(m, g, s->pp)) {
        valid_group_text(m, g, s->pp, vg, sizeof vg);
        error_set(err, errlen, "%s: the interleaved schedule runs them in groups of %" PRI " (--microbatch-group-"
                    "size-per-virtual-pipeline-stage%s) and the last group, %" PRI " %% %" PRI " = %" PRI ", is smaller "
                    "than --pipeline-model-parallel-size = %d, so stages would wait on each other; use %s%s", mtext, g,
                    group_given ? "" : ", default --pipeline-model-parallel-size", m, g, m % g, s->pp, vm, vg);
        return -1;
    }
    return 0;
}

/* Tables hold 2 x M x vp compute actions per rank, indexed by int. */
#define MAX_VIRTUAL_MICRO_BATCHES (INT_MAX / 16)

static int check_basics(const struct pipeline_spec *s, char *err, size_t errlen)
{
    if (s->pp < 1 || s->vp < 1 || s->num_layers < 1 || s->num_micro_batches < 1) {
        error_set(err, errlen, "pipeline: needs at least 1 stage, 1 virtual stage, 1 layer and 1 micro batch (got %d, "
                    "%d, %" PRI ", %d); fix the flags", s->pp, s->vp, s->num_layers, s->num_micro_batches);
        return -1;
    }
    if ((int64_t)s->num_micro_batches * s->vp > MAX_VIRTUAL_MICRO_BATCHES) {
        error_set(err, errlen, "pipeline: %d micro batches x %d virtual stages are too many to schedule; use fewer "
                    "micro batches (a larger --micro-batch-size) or fewer virtual stages", s->num_micro_batches, s->vp);
        return -1;
    }
    return 0;
}

static int validate(const struct pipeline_spec *s, const char *vflag, bool group_given, int64_t mbdp, char *err,
                    size_t errlen)
{
    if (check_basics(s, err, errlen)) return -1;
    if (is_uneven(s) ? check_uneven_split(s, err, errlen) : check_even_split(s, err, errlen)) return -1;
    if (s->vp == 1) return 0;
    if (check_chunks(s, vflag, err, errlen) || check_interleaving_stages(s, vflag, err, errlen)) return -1;
    return check_micro_batch_groups(s, group_given, mbdp, err, errlen);
}

int pipeline_spec_validate(const struct pipeline_spec *s, char *err, size_t errlen)
{
    char vflag[64];
    snprintf(vflag, sizeof vflag, "--num-virtual-stages-per-pipeline-rank %d", s->vp);
    return validate(s, vflag, s->group_size != s->pp, 0, err, errlen);
}

/* vp from --num-layers-per-virtual-pipeline-stage K (layers per stage / K) or
 * --num-virtual-stages-per-pipeline-rank; 1 when neither is given or they give 1 (arguments.py). */
static int virtual_stages_from_config(const struct config *c, struct pipeline_spec *s, char *vflag, size_t n,
                                      char *err, size_t errlen)
{
    int64_t k = c->num_layers_per_virtual_pipeline_stage, v = c->num_virtual_stages_per_pipeline_rank;
    char d[160];
    s->vp = 1;
    if (k > 0) {
        snprintf(vflag, n, "--num-layers-per-virtual-pipeline-stage %" PRI, k);
        if (is_uneven(s)) {
            error_set(err, errlen, "%s: cannot be combined with --decoder-first-pipeline-num-layers / "
                        "--decoder-last-pipeline-num-layers; give --num-virtual-stages-per-pipeline-rank instead",
                        vflag);
            return -1;
        }
        int64_t per = s->num_layers / s->pp;
        divisors_text(per, d, sizeof d);
        if (per % k != 0) {
            error_set(err, errlen, "%s: must divide the layers per pipeline stage = %" PRI " (--num-layers %" PRI
                        " / --pipeline-model-parallel-size %d); use %s", vflag, per, s->num_layers, s->pp, d);
            return -1;
        }
        v = per / k;
    } else if (v > 0) {
        snprintf(vflag, n, "--num-virtual-stages-per-pipeline-rank %" PRI, v);
        if (v > s->num_layers) {
            error_set(err, errlen, "%s: more virtual stages than --num-layers = %" PRI "; use a divisor of each "
                        "stage's layers", vflag, s->num_layers);
            return -1;
        }
    } else {
        return 0;
    }
    if (v > MAX_VIRTUAL_MICRO_BATCHES) {
        error_set(err, errlen, "%s: %" PRI " virtual stages per rank are too many to schedule; use fewer", vflag, v);
        return -1;
    }
    s->vp = (int)v;
    return 0;
}

int pipeline_spec_from_config(const struct config *c, struct pipeline_spec *s, char *err, size_t errlen)
{
    char vflag[96] = "";
    memset(s, 0, sizeof *s);
    if (c->pipeline_model_parallel_size > INT_MAX / 2) {
        error_set(err, errlen, "--pipeline-model-parallel-size %" PRI ": too large; use fewer stages",
                    c->pipeline_model_parallel_size);
        return -1;
    }
    if (c->num_micro_batches > INT_MAX / 64) {
        error_set(err, errlen, "--global-batch-size %" PRI ": %" PRI " micro batches per iteration are too many to "
                    "schedule; use a larger --micro-batch-size or a smaller --global-batch-size",
                    c->global_batch_size, c->num_micro_batches);
        return -1;
    }
    s->pp = (int)c->pipeline_model_parallel_size;
    s->num_layers = c->num_layers;
    s->first_stage_layers = c->decoder_first_pipeline_num_layers;
    s->last_stage_layers = c->decoder_last_pipeline_num_layers;
    s->num_micro_batches = (int)c->num_micro_batches;
    s->overlap_p2p = c->overlap_p2p_comm;
    s->vp = 1;
    if (check_basics(s, err, errlen)) return -1;
    if (is_uneven(s) ? check_uneven_split(s, err, errlen) : check_even_split(s, err, errlen)) return -1;
    if (virtual_stages_from_config(c, s, vflag, sizeof vflag, err, errlen)) return -1;
    int64_t g = c->microbatch_group_size_per_vp_stage;
    s->group_size = g > 0 ? (g > INT_MAX / 2 ? INT_MAX / 2 : (int)g) : s->pp;
    return validate(s, vflag, g > 0, c->micro_batch_size * c->data_parallel_size, err, errlen);
}

/* ------------------------------------------------------------------ schedule tables */

const char *pipeline_kind_name(enum pipeline_kind kind)
{
    switch (kind) {
    case PIPE_NO_PIPELINING: return "forward_backward_no_pipelining";
    case PIPE_1F1B: return "forward_backward_pipelining_without_interleaving";
    case PIPE_INTERLEAVED: return "forward_backward_pipelining_with_interleaving";
    }
    return "?";
}

int pipeline_num_warmup(const struct pipeline_spec *s, int pp_rank)
{
    int64_t total = (int64_t)s->num_micro_batches * s->vp, w;
    if (s->pp == 1) return 0;
    if (s->vp == 1) w = s->pp - pp_rank - 1;
    else w = (int64_t)(s->pp - pp_rank - 1) * 2 + (int64_t)(s->vp - 1) * s->group_size;
    return (int)(w < total ? w : total);
}

void pipeline_table_push(struct pipeline_table *t, struct pipeline_action a)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->actions = xrealloc(t->actions, (size_t)t->cap * sizeof *t->actions);
    }
    t->actions[t->n++] = a;
}

/* Megatron's get_schedule_table: virtual micro batch k -> (micro batch, forward chunk). Micro
 * batches go in groups of G (the last group takes the remainder); within a group chunk 0 runs on
 * every micro batch, then chunk 1, and so on. */
static void virtual_order(const struct pipeline_spec *s, int *mb, int *chunk)
{
    int k = 0, m = s->num_micro_batches, g = s->vp == 1 ? m : s->group_size;
    for (int start = 0; start < m; start += g) {
        int end = start + g < m ? start + g : m;
        for (int c = 0; c < s->vp; c++)
            for (int i = start; i < end; i++) {
                mb[k] = i;
                chunk[k++] = c;
            }
    }
}

static int stage_of(const struct pipeline_spec *s, int rank, int chunk) { return chunk * s->pp + rank; }

/* One compute action of a rank, the slot of the rank's order it belongs to, and the step the
 * slot runs at. */
struct step_action {
    struct pipeline_action a;
    int slot, step;
};

static void add_compute(struct step_action *out, int *n, int slot, enum pipeline_op op, int mb, int chunk,
                        enum pipeline_phase phase)
{
    out[*n] = (struct step_action){{op, mb, chunk, -1, false, phase}, slot, -1};
    (*n)++;
}

/* Megatron's order of compute on one rank: warm-up forwards, then steady rounds of forward k + W
 * with backward k, then the cool-down backwards (schedules.py); with W = 0 and one stage this is
 * forward_backward_no_pipelining. Each action is a slot of its own, except that an interleaved
 * steady round (forward, backward, then one batch: Megatron's
 * send_forward_backward_recv_forward_backward) is one slot. Fills out[2 * M * vp]. */
static void compute_order(const struct pipeline_spec *s, int rank, const int *mb, const int *chunk,
                          struct step_action *out)
{
    int total = s->num_micro_batches * s->vp, w = pipeline_num_warmup(s, rank), n = 0, slot = 0;
    for (int k = 0; k < w; k++) add_compute(out, &n, slot++, PIPE_FORWARD, mb[k], chunk[k], PIPE_WARMUP);
    for (int k = 0; k < total - w; k++) {
        add_compute(out, &n, slot, PIPE_FORWARD, mb[k + w], chunk[k + w], PIPE_STEADY);
        slot += s->vp == 1;
        add_compute(out, &n, slot++, PIPE_BACKWARD, mb[k], s->vp - 1 - chunk[k], PIPE_STEADY);
    }
    for (int k = total - w; k < total; k++)
        add_compute(out, &n, slot++, PIPE_BACKWARD, mb[k], s->vp - 1 - chunk[k], PIPE_COOLDOWN);
}

/* The stage whose output a compute action needs (-1: none: stage 0's forward reads data, the last
 * stage's backward starts from the loss). */
static int producer_stage(const struct pipeline_spec *s, int rank, const struct pipeline_action *a)
{
    int stage = stage_of(s, rank, a->chunk), last = s->pp * s->vp - 1;
    if (a->op == PIPE_FORWARD) return stage > 0 ? stage - 1 : -1;
    return stage < last ? stage + 1 : -1;
}

/* The earliest step slot `first..` of a rank can run at: after the rank's previous slot and after
 * every action that produces an input of the slot; -1 while a producer has no step yet. */
static int slot_step(const struct pipeline_spec *s, int r, const struct step_action *order, int first, int end,
                     const int *done_f, const int *done_b)
{
    int stages = s->pp * s->vp, step = first ? order[first - 1].step + 1 : 0;
    for (int i = first; i < end; i++) {
        int from = producer_stage(s, r, &order[i].a);
        if (from < 0) continue;
        int at = (order[i].a.op == PIPE_FORWARD ? done_f : done_b)[order[i].a.mb * stages + from];
        if (at < 0) return -1;
        if (at + 1 > step) step = at + 1;
    }
    return step;
}

/* Assigns every slot a step (into order[][].step, and per (micro batch, stage) into done_f /
 * done_b): the earliest one after the rank's previous slot and after the slots that produce its
 * inputs (unit-time steps). */
static void assign_steps(const struct pipeline_spec *s, struct step_action **order, int *done_f, int *done_b)
{
    int per_rank = 2 * s->num_micro_batches * s->vp, stages = s->pp * s->vp;
    int *next = xcalloc((size_t)s->pp, sizeof *next), remaining = per_rank * s->pp;
    for (int i = 0; i < s->num_micro_batches * stages; i++) done_f[i] = done_b[i] = -1;
    while (remaining > 0) {
        int progress = 0;
        for (int r = 0; r < s->pp; r++)
            while (next[r] < per_rank) {
                int end = next[r];
                while (end < per_rank && order[r][end].slot == order[r][next[r]].slot) end++;
                int step = slot_step(s, r, order[r], next[r], end, done_f, done_b);
                if (step < 0) break;
                for (; next[r] < end; next[r]++, remaining--, progress++) {
                    struct step_action *c = &order[r][next[r]];
                    c->step = step;
                    (c->a.op == PIPE_FORWARD ? done_f : done_b)[c->a.mb * stages + stage_of(s, r, c->a.chunk)] = step;
                }
            }
        if (!progress) BUG("pipeline: the compute order of ranks 0..%d waits in a cycle", s->pp - 1);
    }
    free(next);
}

/* The message a compute action's output makes, if it leaves the stage: the send on this rank and
 * the receive on the consumer's rank (*to), both in the batch of step *at: the step before the
 * consumer runs. Any step from the producer's to that one would do, as long as both ranks use the
 * same: batch j of a rank then only meets batch j of its neighbours, so every batch completes
 * (induction on j) and no blocking send or receive can wait forever, whatever the compute
 * times. The latest step pairs them as Megatron's 1F1B does (send_forward_recv_backward meets
 * send_backward_recv_forward) and keeps no received input waiting on the consumer. */
static bool output_message(const struct pipeline_spec *s, int rank, const struct step_action *c, const int *done_f,
                           const int *done_b, struct step_action *send, struct step_action *recv, int *to)
{
    int stage = stage_of(s, rank, c->a.chunk), last = s->pp * s->vp - 1, stages = s->pp * s->vp;
    bool fwd = c->a.op == PIPE_FORWARD;
    int dest = fwd ? stage + 1 : stage - 1;
    if (fwd ? stage == last : stage == 0) return false;
    int at = (fwd ? done_f : done_b)[c->a.mb * stages + dest] - 1;
    *to = dest % s->pp;
    *send = (struct step_action){{fwd ? PIPE_SEND_FORWARD : PIPE_SEND_BACKWARD, c->a.mb, c->a.chunk, *to, false,
                                  c->a.phase}, 0, at};
    *recv = (struct step_action){{fwd ? PIPE_RECV_FORWARD : PIPE_RECV_BACKWARD, c->a.mb, dest / s->pp, rank, false,
                                  c->a.phase}, 0, at};
    return true;
}

/* The sends and receives of one rank with their steps. */
struct messages {
    struct step_action *items;
    int n;
};

static int by_step(const void *x, const void *y)
{
    const struct step_action *a = x, *b = y;
    bool ra = a->a.op == PIPE_RECV_FORWARD || a->a.op == PIPE_RECV_BACKWARD;
    bool rb = b->a.op == PIPE_RECV_FORWARD || b->a.op == PIPE_RECV_BACKWARD;
    if (a->step != b->step) return a->step < b->step ? -1 : 1;
    if (ra != rb) return ra ? 1 : -1;   /* a batch lists its sends, then its receives */
    return (int)a->a.op - (int)b->a.op; /* at most one of each op per step */
}

/* Rank r's table: for each step its compute actions, then the batch of that step. */
static void emit_table(const struct pipeline_spec *s, const struct step_action *order, const struct messages *msg,
                       struct pipeline_table *t)
{
    int per_rank = 2 * s->num_micro_batches * s->vp, i = 0, j = 0;
    while (i < per_rank || j < msg->n) {
        int step = i < per_rank ? order[i].step : INT_MAX, before;
        if (j < msg->n && msg->items[j].step < step) step = msg->items[j].step;
        for (; i < per_rank && order[i].step == step; i++) pipeline_table_push(t, order[i].a);
        before = t->n;
        for (; j < msg->n && msg->items[j].step == step; j++) pipeline_table_push(t, msg->items[j].a);
        if (t->n > before) t->actions[t->n - 1].wait = true;
    }
}

static void collect_messages(const struct pipeline_spec *s, struct step_action **order, const int *done_f,
                             const int *done_b, struct messages *msg)
{
    int per_rank = 2 * s->num_micro_batches * s->vp;
    for (int r = 0; r < s->pp; r++)
        for (int i = 0; i < per_rank; i++) {
            struct step_action send, recv;
            int to;
            if (!output_message(s, r, &order[r][i], done_f, done_b, &send, &recv, &to)) continue;
            msg[r].items[msg[r].n++] = send;
            msg[to].items[msg[to].n++] = recv;
        }
    for (int r = 0; r < s->pp; r++) qsort(msg[r].items, (size_t)msg[r].n, sizeof *msg[r].items, by_step);
}

void pipeline_schedule_build(struct pipeline_schedule *sched, const struct pipeline_spec *s)
{
    int total = s->num_micro_batches * s->vp, per_rank = 2 * total, stages = s->pp * s->vp;
    size_t cells = (size_t)s->num_micro_batches * (size_t)stages;
    int *mb = xmalloc((size_t)total * sizeof *mb), *chunk = xmalloc((size_t)total * sizeof *chunk);
    int *done_f = xmalloc(cells * sizeof *done_f), *done_b = xmalloc(cells * sizeof *done_b);
    struct step_action **order = xcalloc((size_t)s->pp, sizeof *order);
    struct messages *msg = xcalloc((size_t)s->pp, sizeof *msg);
    memset(sched, 0, sizeof *sched);
    sched->kind = s->pp == 1 ? PIPE_NO_PIPELINING : s->vp == 1 ? PIPE_1F1B : PIPE_INTERLEAVED;
    sched->pp = s->pp;
    sched->vp = s->vp;
    sched->num_micro_batches = s->num_micro_batches;
    sched->group_size = s->vp == 1 ? s->num_micro_batches : s->group_size;
    sched->tables = xcalloc((size_t)s->pp, sizeof *sched->tables);
    virtual_order(s, mb, chunk);
    for (size_t i = 0; i < cells; i++) done_f[i] = done_b[i] = -1;
    for (int r = 0; r < s->pp; r++) {
        order[r] = xmalloc((size_t)per_rank * sizeof **order);
        msg[r].items = xmalloc((size_t)2 * (size_t)per_rank * sizeof *msg[r].items);
        compute_order(s, r, mb, chunk, order[r]);
    }
    assign_steps(s, order, done_f, done_b);
    collect_messages(s, order, done_f, done_b, msg);
    for (int r = 0; r < s->pp; r++) {
        sched->tables[r].pp_rank = r;
        sched->tables[r].num_warmup = pipeline_num_warmup(s, r);
        emit_table(s, order[r], &msg[r], &sched->tables[r]);
        free(order[r]);
        free(msg[r].items);
    }
    free(order);
    free(msg);
    free(mb);
    free(chunk);
    free(done_f);
    free(done_b);
}

void pipeline_schedule_free(struct pipeline_schedule *sched)
{
    if (!sched->tables) return;
    for (int r = 0; r < sched->pp; r++) free(sched->tables[r].actions);
    free(sched->tables);
    sched->tables = NULL;
}

/* ------------------------------------------------------------------ activation slots */

/* One kind of buffer of each chunk: how many are in use, and the most at once. */
struct usage {
    int *live, *peak;
};

static void use(struct usage *u, int chunk, int delta)
{
    u->live[chunk] += delta;
    if (u->live[chunk] > u->peak[chunk]) u->peak[chunk] = u->live[chunk];
}

void pipeline_table_memory(const struct pipeline_table *t, int vp, int num_micro_batches, struct pipeline_memory *chunks)
{
    size_t cells = (size_t)num_micro_batches * (size_t)vp;
    bool *sending = xcalloc(cells, sizeof *sending);
    struct usage u[3];
    for (int k = 0; k < 3; k++) {
        u[k].live = xcalloc((size_t)vp, sizeof(int));
        u[k].peak = xcalloc((size_t)vp, sizeof(int));
    }
    enum { ACTS, INPUTS, GRADS };
    for (int i = 0; i < t->n; i++) {
        const struct pipeline_action *a = &t->actions[i];
        size_t cell = (size_t)a->mb * (size_t)vp + (size_t)a->chunk;
        switch (a->op) {
        case PIPE_RECV_FORWARD: use(&u[INPUTS], a->chunk, 1); break;
        case PIPE_FORWARD:
            if (t->pp_rank != 0 || a->chunk != 0) use(&u[INPUTS], a->chunk, -1); /* stage 0 reads data */
            use(&u[ACTS], a->chunk, 1);
            break;
        case PIPE_BACKWARD:
            use(&u[ACTS], a->chunk, -1);
            if (t->pp_rank != 0 || a->chunk != 0) use(&u[GRADS], a->chunk, 1); /* stage 0 sends nothing back */
            break;
        case PIPE_SEND_BACKWARD: sending[cell] = true; break;
        case PIPE_SEND_FORWARD:
        case PIPE_RECV_BACKWARD: break;
        }
        if (a->op > PIPE_BACKWARD && a->wait)
            for (size_t c = 0; c < cells; c++)
                if (sending[c]) {
                    sending[c] = false;
                    use(&u[GRADS], (int)(c % (size_t)vp), -1);
                }
    }
    for (int v = 0; v < vp; v++)
        chunks[v] = (struct pipeline_memory){u[ACTS].peak[v], u[INPUTS].peak[v], u[GRADS].peak[v]};
    for (int k = 0; k < 3; k++) {
        free(u[k].live);
        free(u[k].peak);
    }
    free(sending);
}

/* ------------------------------------------------------------------ printing */

static void format_compute(const struct pipeline_table *t, int i, FILE *f)
{
    const struct pipeline_action *a = &t->actions[i];
    fprintf(f, "%c%d.%d", a->op == PIPE_FORWARD ? 'F' : 'B', a->mb, a->chunk);
}

void pipeline_table_format(const struct pipeline_table *t, int max_actions, FILE *f)
{
    int count = 0;
    for (int i = 0; i < t->n; i++) count += t->actions[i].op <= PIPE_BACKWARD;
    int head = count > max_actions ? max_actions * 3 / 4 : count, tail = count > max_actions ? max_actions - head : 0;
    enum pipeline_phase phase = PIPE_WARMUP;
    bool first = true;
    for (int i = 0, k = 0; i < t->n; i++) {
        const struct pipeline_action *a = &t->actions[i];
        if (a->op > PIPE_BACKWARD) continue;
        if (k >= head && k < count - tail) {
            if (k == head) fprintf(f, " ... (%d more) ...", count - head - tail);
            k++;
            phase = a->phase;
            continue;
        }
        if (!first && a->phase != phase) fputs(" |", f);
        fputs(first ? "" : " ", f);
        format_compute(t, i, f);
        phase = a->phase;
        first = false;
        k++;
    }
}
