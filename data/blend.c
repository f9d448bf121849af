/* Blend parsing and arithmetic, the blending indices, and the builder of the three splits
 * (BlendedMegatronDatasetBuilder's cases: mock, one prefix, weighted or size-weighted blends,
 * and separate blends per split). */
#include "data/blend.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/indexed.h"
#include "data/mock.h"
#include "util/error.h"

/* ---- parsing and arithmetic ---- */

/* Python's float(): the whole token (spaces around allowed) must be a number. */
static int parse_float(const char *s, double *out)
{
    char *end;
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) return -1;
    *out = strtod(s, &end);
    if (end == s) return -1;
    while (*end == ' ' || *end == '\t') end++;
    return *end ? -1 : 0;
}

int blend_parse(const char *flag, int argc, const char *const *argv, struct blend_spec *out, char *err,
                size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (argc < 1) {
        error_set(err, errlen, "%s: no dataset prefix given; give PREFIX or W1 PREFIX1 W2 PREFIX2 ...", flag);
        return -1;
    }
    int pairs = argc % 2 == 0, numbers = 0;
    double *w = xcalloc((size_t)argc, sizeof(double));
    for (int i = 0; pairs && i < argc; i += 2) numbers += parse_float(argv[i], &w[i / 2]) == 0;
    if (pairs && numbers > 0 && numbers < argc / 2) {
        error_set(err, errlen,
                "%s: some weights are numbers and some are not; give W1 PREFIX1 W2 PREFIX2 ... or only prefixes",
                flag);
        free(w);
        return -1;
    }
    int weighted = pairs && numbers == argc / 2;
    double sum = 0.0;
    for (int i = 0; weighted && i < argc / 2; i++) {
        if (!isfinite(w[i]) || w[i] < 0.0) {
            error_set(err, errlen, "%s: weight '%s' must be a finite number >= 0", flag, argv[2 * i]);
            free(w);
            return -1;
        }
        sum += w[i];
    }
    if (weighted && !(sum > 0.0 && isfinite(sum))) {
        error_set(err, errlen, "%s: the weights sum to %g; give weights whose sum is positive and "
                  "finite", flag, sum);
        free(w);
        return -1;
    }
    out->count = weighted ? argc / 2 : argc;
    out->prefixes = xcalloc((size_t)out->count, sizeof(char *));
    for (int i = 0; i < out->count; i++) {
        const char *p = weighted ? argv[2 * i + 1] : argv[i];
        while (*p == ' ' || *p == '\t') p++; /* Megatron strips prefixes */
        char *s = xstrdup(p);
        for (size_t n = strlen(s); n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'); n--)
            s[n - 1] = '\0';
        out->prefixes[i] = s;
    }
    if (weighted)
        out->weights = w;
    else
        free(w);
    return 0;
}

void blend_spec_free(struct blend_spec *spec)
{
    for (int i = 0; i < spec->count; i++) free(spec->prefixes[i]);
    free(spec->prefixes);
    free(spec->weights);
    memset(spec, 0, sizeof(*spec));
}

/* numpy's pairwise summation of doubles (loops_utils.h: blocks of 8 partial sums up to 128). */
static double pairwise_sum(const double *a, int64_t n)
{
    if (n < 8) {
        double res = 0.0;
        for (int64_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        int64_t i;
        for (int j = 0; j < 8; j++) r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

void blend_normalize(const double *w, int n, double *out)
{
    double sum = pairwise_sum(w, n);
    for (int i = 0; i < n; i++) out[i] = w[i] / sum;
}

int64_t blend_dataset_request(int64_t target, double weight, double surplus)
{
    double first = ceil((double)target * weight);
    return (int64_t)ceil(first * (1.0 + surplus));
}

void blend_build_indices(const double *weights, int n, int64_t size, int16_t *dataset_index,
                         int64_t *dataset_sample_index)
{
    int64_t *taken = xcalloc((size_t)n, sizeof(int64_t));
    for (int64_t s = 0; s < size; s++) {
        double at = s > 1 ? (double)s : 1.0;
        int best = 0;
        double best_err = weights[0] * at - (double)taken[0];
        for (int d = 1; d < n; d++) {
            double e = weights[d] * at - (double)taken[d];
            if (e > best_err) {
                best_err = e;
                best = d;
            }
        }
        dataset_index[s] = (int16_t)best;
        dataset_sample_index[s] = taken[best]++;
    }
    free(taken);
}

void blend_build_exhaustive_indices(const int64_t *sizes, int n, int16_t *dataset_index,
                                    int64_t *dataset_sample_index)
{
    int64_t total = 0, *taken = xcalloc((size_t)n, sizeof(int64_t));
    for (int d = 0; d < n; d++) total += sizes[d];
    double *w = xmalloc((size_t)n * sizeof(double));
    for (int d = 0; d < n; d++) w[d] = (double)sizes[d] / (double)total;
    for (int64_t s = 0; s < total; s++) {
        double at = s > 1 ? (double)s : 1.0;
        int best = -1;
        double best_err = -INFINITY;
        for (int d = 0; d < n; d++) {
            if (taken[d] == sizes[d]) continue; /* spent */
            double e = w[d] * at - (double)taken[d];
            if (best < 0 || e > best_err) {
                best_err = e;
                best = d;
            }
        }
        dataset_index[s] = (int16_t)best;
        dataset_sample_index[s] = taken[best]++;
    }
    free(w);
    free(taken);
}

/* ---- the top-level datasets ---- */

int64_t blend_dataset_len(const struct blend_dataset *b)
{
    return b->size;
}

int blend_dataset_get(const struct blend_dataset *b, int64_t idx, struct gpt_sample *out, int *dataset_id,
                      char *err, size_t errlen)
{
    if (idx < 0 || idx >= b->size) {
        error_set(err, errlen, "blended dataset: sample %" PRId64 " out of range (%" PRId64 " samples); report this", idx,
                b->size);
        return -1;
    }
    int d = b->dataset_index ? b->dataset_index[idx] : 0;
    int64_t s = b->dataset_index ? b->dataset_sample_index[idx] : idx;
    if (dataset_id) *dataset_id = d;
    return gpt_dataset_get(b->datasets[d], s, out, err, errlen);
}

/* What a struct blend_data owns, freed in reverse. */
struct owned {
    struct idx_dataset **files;
    int nfiles;
    struct gpt_low_level **lows;
    int nlows;
    struct gpt_dataset **gpts;
    int ngpts;
    struct mock_dataset *mock;
};

#define PUSH(arr, n, v)                                                                            \
    do {                                                                                           \
        (arr) = xrealloc((arr), ((size_t)(n) + 1) * sizeof(*(arr)));                               \
        (arr)[(n)++] = (v);                                                                        \
    } while (0)

static struct gpt_low_level *open_prefix(struct owned *o, const char *prefix, char *err, size_t errlen)
{
    struct idx_dataset *f = idx_open(prefix, err, errlen);
    if (!f) return NULL;
    PUSH(o->files, o->nfiles, f);
    struct gpt_low_level *low = xmalloc(sizeof(*low));
    gpt_low_level_from_idx(f, low);
    PUSH(o->lows, o->nlows, low);
    return low;
}

/* _build_megatron_dataset_splits: one GPT dataset per present split of one low-level dataset. */
static int build_splits_of(struct owned *o, const struct gpt_dataset_config *cfg, const struct gpt_low_level *low,
                           const double bookend[GPT_NUM_SPLITS][2], const bool present[GPT_NUM_SPLITS],
                           const int64_t num_samples[GPT_NUM_SPLITS], struct gpt_dataset *out[GPT_NUM_SPLITS],
                           char *err, size_t errlen)
{
    for (int i = 0; i < GPT_NUM_SPLITS; i++) {
        out[i] = NULL;
        if (!present[i]) continue;
        int64_t beg, end;
        gpt_split_range(bookend[i], low->num_sequences, &beg, &end);
        if (gpt_dataset_build(cfg, low, i, beg, end, num_samples[i], &out[i], err, errlen)) return -1;
        PUSH(o->gpts, o->ngpts, out[i]);
    }
    return 0;
}

static struct blend_dataset *pass_through(struct gpt_dataset *ds)
{
    struct blend_dataset *b = xcalloc(1, sizeof(*b));
    b->count = 1;
    b->datasets = xmalloc(sizeof(*b->datasets));
    b->datasets[0] = ds;
    b->size = gpt_dataset_len(ds);
    return b;
}

static void blend_dataset_free(struct blend_dataset *b)
{
    if (!b) return;
    free(b->datasets);
    free(b->weights);
    free(b->dataset_index);
    free(b->dataset_sample_index);
    free(b);
}

/* BlendedDataset(datasets, weights, size): size < 0 builds the exhaustive indices. */
static struct blend_dataset *make_blend(struct gpt_dataset **ds, int n, const double *weights, int64_t size,
                                        const char *what, char *err, size_t errlen)
{
    struct blend_dataset *b = xcalloc(1, sizeof(*b));
    b->count = n;
    b->datasets = xmalloc((size_t)n * sizeof(*b->datasets));
    memcpy(b->datasets, ds, (size_t)n * sizeof(*ds));
    b->weights = xmalloc((size_t)n * sizeof(double));
    blend_normalize(weights, n, b->weights); /* upstream normalises again, for identical bits */
    if (size < 0) {
        int64_t *sizes = xmalloc((size_t)n * sizeof(int64_t));
        size = 0;
        for (int d = 0; d < n; d++) size += sizes[d] = gpt_dataset_len(ds[d]);
        b->dataset_index = xmalloc((size_t)(size > 0 ? size : 1) * sizeof(int16_t));
        b->dataset_sample_index = xmalloc((size_t)(size > 0 ? size : 1) * sizeof(int64_t));
        blend_build_exhaustive_indices(sizes, n, b->dataset_index, b->dataset_sample_index);
        free(sizes);
    } else {
        b->dataset_index = xmalloc((size_t)(size > 0 ? size : 1) * sizeof(int16_t));
        b->dataset_sample_index = xmalloc((size_t)(size > 0 ? size : 1) * sizeof(int64_t));
        blend_build_indices(b->weights, n, size, b->dataset_index, b->dataset_sample_index);
    }
    b->size = size;
    for (int64_t s = 0; s < size; s++) {
        const struct gpt_dataset *d = ds[b->dataset_index[s]];
        if (b->dataset_sample_index[s] >= gpt_dataset_len(d)) {
            error_set(err, errlen,
                    "%s blend: dataset %s would be drawn beyond its %" PRId64 " samples; raise "
                    "--mid-level-dataset-surplus",
                    what, d->low.path ? d->low.path : "(mock)", gpt_dataset_len(d));
            blend_dataset_free(b);
            return NULL;
        }
    }
    return b;
}

/* Several prefixes for one distribution (_build_blended_dataset_splits): mid-level GPT datasets
 * per prefix and split, then one blend per present split. */
static int build_blends(struct owned *o, struct blend_data *bd, const struct gpt_dataset_config *cfg,
                        const struct blend_spec *spec, const double bookend[GPT_NUM_SPLITS][2],
                        const bool present[GPT_NUM_SPLITS], const int64_t sizes[GPT_NUM_SPLITS], const char *flag,
                        char *err, size_t errlen)
{
    int n = spec->count, rc = -1;
    double *w = spec->weights ? xmalloc((size_t)n * sizeof(double)) : NULL;
    int64_t *target = xcalloc((size_t)n * GPT_NUM_SPLITS, sizeof(int64_t));
    struct gpt_dataset **mid = xcalloc((size_t)n * GPT_NUM_SPLITS, sizeof(*mid));
    struct gpt_dataset **col = xcalloc((size_t)n, sizeof(*col));
    double *size_weights = xmalloc((size_t)n * sizeof(double));
    if (w) blend_normalize(spec->weights, n, w);
    for (int i = 0; i < GPT_NUM_SPLITS; i++) {
        if (w && present[i] && sizes[i] < 0) {
            error_set(err, errlen,
                    "%s: weighted blends need a requested sample count for the %s split; give only prefixes",
                    flag, gpt_split_name(i));
            goto out;
        }
    }
    for (int d = 0; d < n; d++) {
        int64_t request[GPT_NUM_SPLITS];
        for (int i = 0; i < GPT_NUM_SPLITS; i++) {
            target[d * GPT_NUM_SPLITS + i] = w ? blend_dataset_request(sizes[i], w[d], 0.0) : -1;
            request[i] = w ? blend_dataset_request(sizes[i], w[d], cfg->mid_level_dataset_surplus) : -1;
        }
        const struct gpt_low_level *low = open_prefix(o, spec->prefixes[d], err, errlen);
        if (!low || build_splits_of(o, cfg, low, bookend, present, request, mid + d * GPT_NUM_SPLITS, err, errlen))
            goto out;
    }
    for (int i = 0; i < GPT_NUM_SPLITS; i++) {
        if (!present[i]) continue;
        int64_t size = 0, total = 0;
        for (int d = 0; d < n; d++) {
            col[d] = mid[d * GPT_NUM_SPLITS + i];
            size += target[d * GPT_NUM_SPLITS + i];
            total += gpt_dataset_len(col[d]);
            size_weights[d] = (double)gpt_dataset_len(col[d]);
        }
        if (!w) size = sizes[i] < 0 ? -1 : (sizes[i] < total ? sizes[i] : total);
        bd->split[i] = make_blend(col, n, w ? w : size_weights, size, gpt_split_name(i), err, errlen);
        if (!bd->split[i]) goto out;
    }
    rc = 0;
out:
    free(w);
    free(target);
    free(mid);
    free(col);
    free(size_weights);
    return rc;
}

/* One --data-path (or a per-split path list) with the given split matrix. */
static int build_distribution(struct owned *o, struct blend_data *bd, const struct gpt_dataset_config *cfg,
                              const char *flag, int argc, const char *const *argv,
                              const double bookend[GPT_NUM_SPLITS][2], const bool present[GPT_NUM_SPLITS],
                              const int64_t sizes[GPT_NUM_SPLITS], bool single_ignores_weights, char *err,
                              size_t errlen)
{
    struct blend_spec spec;
    if (blend_parse(flag, argc, argv, &spec, err, errlen)) return -1;
    int rc;
    if (spec.count == 1 && (!spec.weights || single_ignores_weights)) {
        struct gpt_dataset *ds[GPT_NUM_SPLITS];
        const struct gpt_low_level *low = open_prefix(o, spec.prefixes[0], err, errlen);
        rc = low ? build_splits_of(o, cfg, low, bookend, present, sizes, ds, err, errlen) : -1;
        for (int i = 0; rc == 0 && i < GPT_NUM_SPLITS; i++)
            if (present[i]) bd->split[i] = pass_through(ds[i]);
    } else if (spec.count >= 32767) {
        error_set(err, errlen, "%s: %d datasets; a blend holds at most 32766", flag, spec.count);
        rc = -1;
    } else {
        rc = build_blends(o, bd, cfg, &spec, bookend, present, sizes, flag, err, errlen);
    }
    blend_spec_free(&spec);
    return rc;
}

static int build_mock(struct owned *o, struct blend_data *bd, const struct gpt_dataset_config *cfg,
                      const int64_t sizes[GPT_NUM_SPLITS], char *err, size_t errlen)
{
    double bookend[GPT_NUM_SPLITS][2];
    bool present[GPT_NUM_SPLITS];
    struct gpt_dataset *ds[GPT_NUM_SPLITS];
    o->mock = mock_dataset_create(cfg->vocab_size, cfg->eod_id, err, errlen);
    if (!o->mock) return -1;
    struct gpt_low_level *low = xmalloc(sizeof(*low));
    mock_low_level(o->mock, low);
    PUSH(o->lows, o->nlows, low);
    /* BlendedMegatronDatasetConfig: without a blend, mock = True and split = "1,1,1" */
    if (gpt_split_parse("1,1,1", bookend, present, err, errlen) ||
        build_splits_of(o, cfg, low, bookend, present, sizes, ds, err, errlen))
        return -1;
    for (int i = 0; i < GPT_NUM_SPLITS; i++)
        if (present[i]) bd->split[i] = pass_through(ds[i]);
    return 0;
}

/* --train-data-path etc.: each split from its own list, all of its sequences, other splits absent. */
static int build_per_split(struct owned *o, struct blend_data *bd, const struct gpt_dataset_config *cfg,
                           const int64_t sizes[GPT_NUM_SPLITS], char *err, size_t errlen)
{
    static const char *const flags[] = {"--train-data-path", "--valid-data-path", "--test-data-path"};
    for (int i = 0; i < GPT_NUM_SPLITS; i++) {
        if (cfg->split_data_path_count[i] == 0) continue;
        double bookend[GPT_NUM_SPLITS][2] = {{0, 0}, {0, 0}, {0, 0}};
        bool present[GPT_NUM_SPLITS] = {false, false, false};
        int64_t spoof[GPT_NUM_SPLITS] = {0, 0, 0};
        bookend[i][1] = 1.0;
        present[i] = true;
        spoof[i] = sizes[i];
        if (build_distribution(o, bd, cfg, flags[i], cfg->split_data_path_count[i], cfg->split_data_path[i], bookend,
                               present, spoof, true, err, errlen))
            return -1;
    }
    return 0;
}

int blend_data_build(const struct gpt_dataset_config *cfg, const int64_t num_samples[GPT_NUM_SPLITS],
                     struct blend_data **out, char *err, size_t errlen)
{
    struct blend_data *bd = xcalloc(1, sizeof(*bd));
    struct owned *o = xcalloc(1, sizeof(*o));
    bd->owned = o;
    int rc;
    if (cfg->data_path_count > 0) {
        double bookend[GPT_NUM_SPLITS][2];
        bool present[GPT_NUM_SPLITS];
        if (!cfg->split) {
            error_set(err, errlen, "--data-path: no --split given; give e.g. --split 949,50,1");
            rc = -1;
        } else {
            rc = gpt_split_parse(cfg->split, bookend, present, err, errlen) ||
                 build_distribution(o, bd, cfg, "--data-path", cfg->data_path_count, cfg->data_path, bookend,
                                    present, num_samples, false, err, errlen);
        }
    } else if (cfg->split_data_path_count[0] || cfg->split_data_path_count[1] || cfg->split_data_path_count[2]) {
        rc = build_per_split(o, bd, cfg, num_samples, err, errlen);
    } else if (cfg->mock) {
        rc = build_mock(o, bd, cfg, num_samples, err, errlen);
    } else {
        error_set(err, errlen,
                "no training data: give --data-path, --train-data-path/--valid-data-path/--test-data-path, or "
                "--mock-data");
        rc = -1;
    }
    if (rc) {
        blend_data_free(bd);
        *out = NULL;
        return -1;
    }
    *out = bd;
    return 0;
}

struct blend_data *blend_data_build_or_die(const struct gpt_dataset_config *cfg,
                                           const int64_t num_samples[GPT_NUM_SPLITS])
{
    char err[1024];
    struct blend_data *bd;
    if (blend_data_build(cfg, num_samples, &bd, err, sizeof(err))) die_user("%s", err);
    return bd;
}

void blend_data_free(struct blend_data *d)
{
    if (!d) return;
    for (int i = 0; i < GPT_NUM_SPLITS; i++) blend_dataset_free(d->split[i]);
    struct owned *o = d->owned;
    for (int i = 0; i < o->ngpts; i++) gpt_dataset_free(o->gpts[i]);
    for (int i = 0; i < o->nlows; i++) free(o->lows[i]);
    for (int i = 0; i < o->nfiles; i++) idx_close(o->files[i]);
    mock_dataset_free(o->mock);
    free(o->gpts);
    free(o->lows);
    free(o->files);
    free(o);
    free(d);
}
