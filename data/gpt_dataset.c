/* GPTDataset: split parsing, the document/sample/shuffle index builders (same RandomState draws in
 * the same order as megatron/core/datasets/gpt_dataset.py), the index cache and __getitem__. */
#include "data/gpt_dataset.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/index_cache.h"
#include "data/indexed.h"
#include "data/numpy_random.h"
#include "util/error.h"

const char *gpt_split_name(int split)
{
    static const char *const names[] = {"train", "valid", "test"};
    return split >= 0 && split < GPT_NUM_SPLITS ? names[split] : "unknown";
}

void gpt_dataset_config_init(struct gpt_dataset_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->seed = 1234;
    cfg->pad_id = -1;
    cfg->eod_id = -1;
    cfg->add_extra_token = true;
    cfg->drop_last_partial_validation = true;
    cfg->mid_level_dataset_surplus = 0.005;
}

/* ---- --split ---- */

/* One run of [.0-9] as Python's float() reads it: digits with at most one '.', not just ".". */
static int parse_split_number(const char *s, size_t n, double *out)
{
    int dots = 0, digits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.')
            dots++;
        else
            digits++;
    }
    if (dots > 1 || digits == 0) return -1;
    char buf[64];
    if (n >= sizeof(buf)) return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    *out = strtod(buf, NULL);
    return 0;
}

int gpt_split_parse(const char *split, double bookend[GPT_NUM_SPLITS][2], bool present[GPT_NUM_SPLITS], char *err,
                    size_t errlen)
{
    double v[GPT_NUM_SPLITS] = {0, 0, 0};
    int count = 0;
    for (const char *p = split; *p;) {
        if (*p == '-') {
            error_set(err, errlen, "--split %s: weights must not be negative; give e.g. 949,50,1", split);
            return -1;
        }
        size_t n = strspn(p, ".0123456789");
        if (n == 0) {
            p++;
            continue;
        }
        if (count == GPT_NUM_SPLITS) {
            error_set(err, errlen, "--split %s: more than 3 numbers; give train,valid,test weights e.g. 949,50,1", split);
            return -1;
        }
        if (parse_split_number(p, n, &v[count])) {
            error_set(err, errlen, "--split %s: '%.*s' is not a number; give e.g. 949,50,1", split, (int)n, p);
            return -1;
        }
        count++;
        p += n;
    }
    /* normalize(): w / sum(w), the sum accumulated left to right as numpy does for short arrays */
    double sum = 0.0;
    for (int i = 0; i < GPT_NUM_SPLITS; i++) sum += v[i];
    if (!(sum > 0.0) || !isfinite(sum)) {
        error_set(err, errlen, "--split %s: the weights must have a positive, finite sum; give e.g. 949,50,1", split);
        return -1;
    }
    double e = 0.0; /* the running bookend, as convert_split_vector_to_split_matrix sums it */
    for (int i = 0; i < GPT_NUM_SPLITS; i++) {
        double next = e + v[i] / sum;
        present[i] = next > e;
        bookend[i][0] = e;
        bookend[i][1] = next;
        e = next;
    }
    return 0;
}

void gpt_split_range(const double bookend[2], int64_t n, int64_t *beg, int64_t *end)
{
    /* Python's round() rounds half to even, as nearbyint does in the default rounding mode */
    *beg = (int64_t)nearbyint(bookend[0] * (double)n);
    *end = (int64_t)nearbyint(bookend[1] * (double)n);
}

void gpt_num_samples(int64_t train_iters, int64_t train_samples, int64_t global_batch_size,
                     int64_t eval_interval, int64_t eval_iters, int64_t out[GPT_NUM_SPLITS])
{
    out[GPT_SPLIT_TRAIN] = train_samples > 0 ? train_samples : train_iters * global_batch_size;
    out[GPT_SPLIT_VALID] = eval_interval > 0 ? (train_iters / eval_interval + 1) * eval_iters * global_batch_size : 0;
    out[GPT_SPLIT_TEST] = eval_iters * global_batch_size;
}

/* ---- the low-level dataset behind a .bin/.idx pair ---- */

static int idx_low_read(const void *ctx, int64_t seq, int64_t offset, int64_t len, int32_t *out, char *err,
                        size_t errlen)
{
    return idx_read_tokens(ctx, seq, offset, len, out, err, errlen);
}

void gpt_low_level_from_idx(const struct idx_dataset *ds, struct gpt_low_level *out)
{
    out->path = ds->prefix;
    out->num_sequences = ds->index.sequence_count;
    out->sequence_lengths = ds->sequence_lengths;
    out->read = idx_low_read;
    out->ctx = ds;
}

/* ---- index builders ---- */

int gpt_num_epochs(int64_t tokens_per_epoch, int64_t num_samples, int32_t seq_length, int add_extra)
{
    if (num_samples < 0) return 1;
    int64_t requested = num_samples * seq_length + add_extra;
    int64_t epochs = (requested + tokens_per_epoch - 1) / tokens_per_epoch; /* the loop's answer */
    return epochs < 1 ? 1 : (int)epochs;
}

/* _build_document_index for one block: the split's sequence ids tiled `epochs` times, shuffled. */
static void document_block(int32_t *out, int64_t beg, int64_t end, int epochs, struct nprs *rs)
{
    int64_t n = end - beg, k = 0;
    for (int e = 0; e < epochs; e++)
        for (int64_t i = 0; i < n; i++) out[k++] = (int32_t)(beg + i);
    nprs_shuffle(rs, out, k, sizeof(int32_t));
}

int64_t *gpt_build_sample_index(const int32_t *lengths, const int32_t *document_index, int64_t document_len,
                                int32_t seq_length, int num_epochs, int64_t tokens_per_epoch,
                                bool drop_last_partial, int add_extra, int64_t *num_samples)
{
    int64_t total = (int64_t)num_epochs * tokens_per_epoch - add_extra;
    int64_t n = drop_last_partial ? total / seq_length : (int64_t)ceilf((float)total / (float)seq_length);
    int64_t *idx = xmalloc((size_t)(n + 1) * 2 * sizeof(int64_t));
    int64_t row = 0, doc_pos = 0, doc_offset = 0;
    idx[0] = 0;
    idx[1] = 0;
    row = 1;
    while (row <= n) {
        int64_t remaining = seq_length + add_extra;
        while (remaining != 0) {
            int64_t doc_len = lengths[document_index[doc_pos]] - doc_offset;
            remaining -= doc_len;
            if (remaining <= 0) {
                /* the sample ends inside this document; the next one starts on its last token */
                doc_offset += remaining + doc_len - add_extra;
                remaining = 0;
            } else {
                if (doc_pos == document_len - 1) { /* out of documents: a last partial sample */
                    CHECK(row == n);
                    doc_offset = lengths[document_index[doc_pos]] - add_extra;
                    break;
                }
                doc_pos++;
                doc_offset = 0;
            }
        }
        idx[2 * row] = doc_pos;
        idx[2 * row + 1] = doc_offset;
        row++;
    }
    *num_samples = n;
    return idx;
}

/* _build_shuffle_index: [0, first) shuffled, then [first, total) shuffled separately. */
static int64_t *shuffle_block(int64_t first, int64_t total, struct nprs *rs)
{
    int64_t *s = xmalloc((size_t)(total > 0 ? total : 1) * sizeof(int64_t));
    for (int64_t i = 0; i < total; i++) s[i] = i;
    int64_t split = first < total ? first : total;
    nprs_shuffle(rs, s, split, sizeof(int64_t));
    if (split < total) nprs_shuffle(rs, s + split, total - split, sizeof(int64_t));
    return s;
}

/* Megatron's decision to shuffle the last epoch apart when it contributes < 80% of an epoch. */
static int final_epoch_plan(const struct gpt_dataset *ds, int64_t tokens_per_epoch, int64_t *sans_final,
                            char *err, size_t errlen)
{
    *sans_final = 0;
    if (ds->num_epochs == 1) return 0;
    int64_t sans = ((int64_t)(ds->num_epochs - 1) * tokens_per_epoch - ds->add_extra_token) / ds->seq_length;
    int64_t from_final = ds->num_samples - sans;
    int64_t per_epoch = (tokens_per_epoch - ds->add_extra_token) / ds->seq_length;
    if (from_final < 0 || from_final > per_epoch + 1) {
        error_set(err, errlen,
                "GPT dataset %s split: inconsistent epoch plan (%" PRId64 " samples from the final epoch); report "
                "this",
                gpt_split_name(ds->split), from_final);
        return -1;
    }
    *sans_final = sans;
    return from_final < (int64_t)(0.80 * (double)per_epoch) ? 1 : 0;
}

static void build_indices(struct gpt_dataset *ds, int64_t tokens_per_epoch, bool separate, int64_t sans_final,
                          uint32_t seed, bool drop_last)
{
    struct nprs rs;
    nprs_seed(&rs, seed);
    int64_t n = ds->end - ds->beg;
    ds->document_len = n * ds->num_epochs;
    ds->document_index = xmalloc((size_t)(ds->document_len > 0 ? ds->document_len : 1) * sizeof(int32_t));
    if (!separate) {
        document_block(ds->document_index, ds->beg, ds->end, ds->num_epochs, &rs);
    } else {
        document_block(ds->document_index, ds->beg, ds->end, ds->num_epochs - 1, &rs);
        document_block(ds->document_index + n * (ds->num_epochs - 1), ds->beg, ds->end, 1, &rs);
    }
    ds->sample_index = gpt_build_sample_index(ds->low.sequence_lengths, ds->document_index, ds->document_len,
                                              ds->seq_length, ds->num_epochs, tokens_per_epoch, drop_last,
                                              ds->add_extra_token, &ds->length);
    ds->shuffle_index = shuffle_block(separate ? sans_final : ds->length, ds->length, &rs);
}

/* ---- the cache ---- */

/* Everything the indices depend on; its hash names the cache file. Megatron hashes a JSON of
 * class, path, num_samples, split and seed; the lengths' hash makes a changed dataset a miss. */
static char *describe(const struct gpt_dataset *ds, uint32_t seed, bool drop_last)
{
    uint64_t h = index_cache_fnv1a(INDEX_CACHE_FNV_BASIS, ds->low.sequence_lengths,
                                   (size_t)ds->low.num_sequences * sizeof(int32_t));
    char num[32];
    if (ds->num_samples < 0)
        snprintf(num, sizeof(num), "null");
    else
        snprintf(num, sizeof(num), "%" PRId64, ds->num_samples);
    const char *fmt = "class: GPTDataset\ndataset_path: %s\nnum_samples: %s\nindex_split: %s\n"
                      "random_seed: %" PRIu32 "\nsequence_length: %" PRId32 "\nindices: [%" PRId64 ", %" PRId64 ")\n"
                      "add_extra_token_to_sequence: %d\ndrop_last_partial_sequence: %d\n"
                      "num_sequences: %" PRId64 "\nsequence_lengths_fnv1a: %016" PRIx64 "\n";
    int n = snprintf(NULL, 0, fmt, ds->low.path, num, gpt_split_name(ds->split), seed, ds->seq_length, ds->beg,
                     ds->end, ds->add_extra_token, drop_last, ds->low.num_sequences, h);
    char *s = xmalloc((size_t)n + 1);
    snprintf(s, (size_t)n + 1, fmt, ds->low.path, num, gpt_split_name(ds->split), seed, ds->seq_length, ds->beg,
             ds->end, ds->add_extra_token, drop_last, ds->low.num_sequences, h);
    return s;
}

static char *default_cache_dir(const char *prefix)
{
    const char *slash = strrchr(prefix, '/');
    size_t dn = slash ? (size_t)(slash - prefix) : 1; /* a prefix in "/" gives "/cache/..." */
    const char *dir = slash ? prefix : ".";
    size_t n = dn + 40;
    char *s = xmalloc(n);
    snprintf(s, n, "%.*s/cache/GPTDataset_indices", (int)dn, dir);
    return s;
}

/* A loaded cache is used only if every value keeps __getitem__ inside the dataset. */
static int cache_consistent(const struct gpt_dataset *ds, const struct index_cache_arrays *a, int64_t expect_len)
{
    if (a->document_len != ds->document_len || a->sample_rows != expect_len + 1 || a->shuffle_len != expect_len)
        return 0;
    for (int64_t i = 0; i < a->document_len; i++)
        if (a->document_index[i] < ds->beg || a->document_index[i] >= ds->end) return 0;
    for (int64_t r = 0; r < a->sample_rows; r++) {
        int64_t pos = a->sample_index[2 * r], off = a->sample_index[2 * r + 1];
        if (pos < 0 || pos >= a->document_len || off < 0 || off > ds->low.sequence_lengths[a->document_index[pos]])
            return 0;
        if (r > 0 && (pos < a->sample_index[2 * r - 2] ||
                      (pos == a->sample_index[2 * r - 2] && off < a->sample_index[2 * r - 1])))
            return 0;
    }
    unsigned char *seen = xcalloc((size_t)expect_len / 8 + 1, 1);
    int ok = 1;
    for (int64_t i = 0; i < a->shuffle_len && ok; i++) {
        int64_t v = a->shuffle_index[i];
        if (v < 0 || v >= expect_len || (seen[v / 8] >> (v % 8) & 1))
            ok = 0;
        else
            seen[v / 8] |= (unsigned char)(1u << (v % 8));
    }
    free(seen);
    return ok;
}

static int64_t expected_length(const struct gpt_dataset *ds, int64_t tokens_per_epoch, bool drop_last)
{
    int64_t total = (int64_t)ds->num_epochs * tokens_per_epoch - ds->add_extra_token;
    return drop_last ? total / ds->seq_length : (int64_t)ceilf((float)total / (float)ds->seq_length);
}

static int try_load(struct gpt_dataset *ds, const char *path, const char *desc, int64_t expect_len)
{
    struct index_cache_arrays a;
    char why[512];
    int rc = index_cache_load(path, desc, &a, why, sizeof(why));
    if (rc == 1) return 0;
    if (rc == 0 && !cache_consistent(ds, &a, expect_len)) {
        snprintf(why, sizeof(why), "%s: indices out of range for this dataset", path);
        index_cache_arrays_free(&a);
        rc = -1;
    }
    if (rc < 0) {
        warn_user("ignoring the GPT dataset index cache (%s); rebuilding it", why);
        return 0;
    }
    ds->document_index = a.document_index;
    ds->sample_index = a.sample_index;
    ds->shuffle_index = a.shuffle_index;
    ds->length = expect_len;
    ds->from_cache = true;
    return 1;
}

static void save(const struct gpt_dataset *ds, const char *path, const char *desc)
{
    struct index_cache_arrays a = {ds->document_index, ds->document_len, ds->sample_index, ds->length + 1,
                                   ds->shuffle_index, ds->length};
    char why[512];
    size_t n = strlen(path);
    char *txt = xmalloc(n + 8);
    memcpy(txt, path, n - strlen("indices.bin"));
    strcpy(txt + n - strlen("indices.bin"), "description.txt");
    if (index_cache_save(path, desc, &a, why, sizeof(why)) || index_cache_write_text(txt, desc, why, sizeof(why)))
        warn_user("GPT dataset index cache not written (%s); the indices stay in memory, pass "
                  "--data-cache-path with a writable directory to keep them", why);
    free(txt);
}

/* ---- build ---- */

static int check_config(const struct gpt_dataset_config *cfg, const struct gpt_low_level *low, int64_t beg,
                        int64_t end, char *err, size_t errlen)
{
    if (cfg->seq_length < 2) {
        error_set(err, errlen, "--seq-length %" PRId32 ": must be at least 2 for a GPT dataset", cfg->seq_length);
        return -1;
    }
    if (beg < 0 || end > low->num_sequences || beg > end || end > INT32_MAX) {
        error_set(err, errlen,
                "GPT dataset: sequence range [%" PRId64 ", %" PRId64 ") outside the %" PRId64 " sequences; report "
                "this",
                beg, end, low->num_sequences);
        return -1;
    }
    return 0;
}

int gpt_dataset_build(const struct gpt_dataset_config *cfg, const struct gpt_low_level *low, int split, int64_t beg,
                      int64_t end, int64_t num_samples, struct gpt_dataset **out, char *err, size_t errlen)
{
    *out = NULL;
    if (check_config(cfg, low, beg, end, err, errlen)) return -1;
    int64_t tokens_per_epoch = 0;
    for (int64_t i = beg; i < end; i++) tokens_per_epoch += low->sequence_lengths[i];
    const char *name = low->path ? low->path : "mock data";
    if (tokens_per_epoch <= cfg->add_extra_token) {
        error_set(err, errlen,
                "%s: the %s split holds %" PRId64 " tokens (sequences %" PRId64 "..%" PRId64 "), too few to draw "
                "samples; give this split a larger --split share or more data",
                name, gpt_split_name(split), tokens_per_epoch, beg, end);
        return -1;
    }
    if (num_samples > 0 && (num_samples > INT64_MAX / cfg->seq_length - 1 ||
                            (num_samples * cfg->seq_length) / tokens_per_epoch >= INT32_MAX)) {
        error_set(err, errlen, "%s: %" PRId64 " samples of the %s split would need over 2^31 epochs of its %" PRId64
                " tokens; request fewer samples or give the split more data",
                name, num_samples, gpt_split_name(split), tokens_per_epoch);
        return -1;
    }
    struct gpt_dataset *ds = xcalloc(1, sizeof(*ds));
    ds->low = *low;
    ds->split = split;
    ds->beg = beg;
    ds->end = end;
    ds->num_samples = num_samples;
    ds->seq_length = cfg->seq_length;
    ds->eod_id = cfg->eod_id;
    ds->pad_id = cfg->pad_id;
    ds->eod_mask_loss = cfg->eod_mask_loss;
    ds->reset_position_ids = cfg->reset_position_ids;
    ds->reset_attention_mask = cfg->reset_attention_mask;
    ds->add_extra_token = cfg->add_extra_token ? 1 : 0;
    ds->num_epochs = gpt_num_epochs(tokens_per_epoch, num_samples, cfg->seq_length, ds->add_extra_token);
    ds->document_len = (end - beg) * ds->num_epochs;
    bool drop_last = split == GPT_SPLIT_VALID ? cfg->drop_last_partial_validation : true;

    int64_t sans_final;
    int separate = final_epoch_plan(ds, tokens_per_epoch, &sans_final, err, errlen);
    if (separate < 0) {
        gpt_dataset_free(ds);
        return -1;
    }
    ds->separate_final_epoch = separate;

    char *desc = NULL;
    if (low->path && !cfg->no_cache) {
        desc = describe(ds, cfg->seed, drop_last);
        char *dir = cfg->cache_dir ? xstrdup(cfg->cache_dir) : default_cache_dir(low->path);
        ds->cache_path = index_cache_path(dir, desc, "GPTDataset", gpt_split_name(split), "indices.bin");
        free(dir);
    }
    if (!desc || !try_load(ds, ds->cache_path, desc, expected_length(ds, tokens_per_epoch, drop_last))) {
        build_indices(ds, tokens_per_epoch, separate, sans_final, cfg->seed, drop_last);
        if (desc) save(ds, ds->cache_path, desc);
    }
    free(desc);
    *out = ds;
    return 0;
}

void gpt_dataset_free(struct gpt_dataset *ds)
{
    if (!ds) return;
    free(ds->document_index);
    free(ds->sample_index);
    free(ds->shuffle_index);
    free(ds->cache_path);
    free(ds);
}

int64_t gpt_dataset_len(const struct gpt_dataset *ds)
{
    return ds->length;
}

/* ---- __getitem__ ---- */

/* The sample's seq_length + add_extra tokens: the document pieces between two sample index rows,
 * padded with pad_id (_query_document_sample_shuffle_indices). */
static int read_text(const struct gpt_dataset *ds, int64_t idx, int32_t *text, char *err, size_t errlen)
{
    int64_t want = ds->seq_length + ds->add_extra_token;
    int64_t s = ds->shuffle_index[idx];
    int64_t db = ds->sample_index[2 * s], ob = ds->sample_index[2 * s + 1];
    int64_t de = ds->sample_index[2 * s + 2], oe = ds->sample_index[2 * s + 3];
    int64_t have = 0;
    for (int64_t i = db; i <= de; i++) {
        int32_t seq = ds->document_index[i];
        int64_t off = i > db ? 0 : ob;
        int64_t len = i < de ? ds->low.sequence_lengths[seq] - off : oe + ds->add_extra_token - off;
        if (len < 0 || len > want - have) {
            error_set(err, errlen,
                    "%s: sample %" PRId64 " of the %s split does not fit its index; delete the index cache and retry",
                    ds->low.path ? ds->low.path : "mock data", idx, gpt_split_name(ds->split));
            return -1;
        }
        if (ds->low.read(ds->low.ctx, seq, off, len, text + have, err, errlen)) return -1;
        have += len;
    }
    for (; have < want; have++) text[have] = ds->pad_id;
    return 0;
}

/* _get_ltor_masks_and_position_ids on the input tokens, then the padding rules of __getitem__. */
static void fill_masks(const struct gpt_dataset *ds, const int32_t *text, struct gpt_sample *out)
{
    int32_t n = ds->seq_length, pos = 0, seg = 0;
    for (int32_t j = 0; j < n; j++) {
        int32_t tok = text[j];
        int32_t label = ds->add_extra_token ? text[j + 1] : (j + 1 < n ? text[j + 1] : ds->pad_id);
        if (out->loss_mask) {
            float m = ds->eod_mask_loss && tok == ds->eod_id ? 0.0f : 1.0f;
            out->loss_mask[j] = label == ds->pad_id ? 0.0f : m;
        }
        if (out->position_ids) out->position_ids[j] = ds->reset_position_ids ? pos : j;
        if (out->segment_ids) out->segment_ids[j] = ds->reset_attention_mask ? seg : 0;
        if (out->tokens) out->tokens[j] = tok == ds->pad_id ? 0 : tok;
        if (out->labels) out->labels[j] = label == ds->pad_id ? 0 : label;
        pos++;
        if (tok == ds->eod_id) {
            pos = 0;
            seg++;
        }
    }
}

int gpt_dataset_get(const struct gpt_dataset *ds, int64_t idx, struct gpt_sample *out, char *err, size_t errlen)
{
    if (idx < 0 || idx >= ds->length) {
        error_set(err, errlen, "GPT dataset %s split: sample %" PRId64 " out of range (%" PRId64 " samples); report this",
                gpt_split_name(ds->split), idx, ds->length);
        return -1;
    }
    int32_t *text = xmalloc(((size_t)ds->seq_length + 1) * sizeof(int32_t));
    int rc = read_text(ds, idx, text, err, errlen);
    if (rc == 0) fill_masks(ds, text, out);
    free(text);
    return rc;
}
