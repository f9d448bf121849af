/* Tests of the GPT data pipeline: numpy's random streams, Megatron's GPTDataset samples for the
 * jargon fixture (byte for byte), the index builders, masks, the index cache, blends and mock data.
 * argv[1]: the fixture directory (default ../shared/fixtures). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/blend.h"
#include "data/gpt_dataset.h"
#include "data/indexed.h"
#include "data/mock.h"
#include "data/numpy_random.h"

#define EOD 50256
#define SEQ 128

static const char *fixtures = "../shared/fixtures";

#include "tests/tmpdir.h"

static char jargon[512];

/* The configuration of the fixture: seq 128, seed 1234, split 949,50,1, EOD 50256. */
static void jargon_config(struct gpt_dataset_config *cfg, const char *const *path, const char *cache)
{
    gpt_dataset_config_init(cfg);
    cfg->seq_length = SEQ;
    cfg->seed = 1234;
    cfg->split = "949,50,1";
    cfg->eod_id = EOD;
    cfg->data_path = path;
    cfg->data_path_count = 1;
    cfg->cache_dir = cache;
}

static int32_t *read_i32(const char *path, size_t *count)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    int32_t *b = malloc((size_t)n);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *count = (size_t)n / sizeof(int32_t);
    return b;
}

/* ---- numpy streams ---- */

static void test_mt19937_first_output_for_seed_5489(void **state)
{
    (void)state;
    struct nprs rs;
    nprs_seed(&rs, 5489); /* the reference implementation's default seed */
    assert_int_equal(nprs_next_uint32(&rs), 3499211612U);
}

/* Values printed by numpy 1.24 (RandomState / default_rng) for the same calls. */
static void test_random_state_matches_numpy(void **state)
{
    (void)state;
    struct nprs rs;
    nprs_seed(&rs, 1234);
    assert_int_equal(nprs_next_uint32(&rs), 822569775U);
    assert_int_equal(nprs_next_uint32(&rs), 2137449171U);
    assert_int_equal(nprs_next_uint32(&rs), 2671936806U);

    nprs_seed(&rs, 0); /* np.random.seed(0); np.random.random_sample() */
    assert_true(nprs_random_sample(&rs) == 0.5488135039273248);
    assert_true(nprs_random_sample(&rs) == 0.7151893663724195);
    assert_true(nprs_random_sample(&rs) == 0.6027633760716439);

    const int64_t small[5] = {6, 3, 7, 4, 6}; /* RandomState(42).randint(0, 10) x5 */
    nprs_seed(&rs, 42);
    for (int i = 0; i < 5; i++) assert_int_equal(nprs_randint(&rs, 0, 10), small[i]);
    const int64_t big[3] = {787846409, 2563451919, 9019323601}; /* randint(-5, 10**10): 64-bit draws */
    nprs_seed(&rs, 42);
    for (int i = 0; i < 3; i++) assert_int_equal(nprs_randint(&rs, -5, 10000000000LL), big[i]);

    const uint32_t key[3] = {1, 2, 3}; /* RandomState([1, 2, 3]) */
    nprs_seed_by_array(&rs, key, 3);
    assert_int_equal(nprs_next_uint32(&rs), 2619334238U);
}

static void test_shuffle_matches_numpy(void **state)
{
    (void)state;
    /* a = np.arange(20, dtype=np.int32); np.random.RandomState(1234).shuffle(a) */
    const int32_t want[20] = {3, 13, 2, 16, 14, 5, 4, 0, 8, 18, 17, 11, 10, 9, 7, 1, 19, 12, 6, 15};
    int32_t a[20];
    int64_t b[20];
    for (int i = 0; i < 20; i++) a[i] = i, b[i] = i;
    struct nprs rs;
    nprs_seed(&rs, 1234);
    nprs_shuffle(&rs, a, 20, sizeof(int32_t));
    assert_memory_equal(a, want, sizeof(want));
    nprs_seed(&rs, 1234); /* the item size does not change the draws */
    nprs_shuffle(&rs, b, 20, sizeof(int64_t));
    for (int i = 0; i < 20; i++) assert_int_equal(b[i], want[i]);
}

static void test_default_rng_matches_numpy(void **state)
{
    (void)state;
    struct np_pcg64 g;
    np_pcg64_seed(&g, 0); /* np.random.PCG64(0).random_raw() */
    assert_true(np_pcg64_next_uint64(&g) == 11749869230777074271ULL);
    np_pcg64_seed(&g, 12345678901ULL);
    assert_true(np_pcg64_next_uint64(&g) == 15424019608117653474ULL);
    /* np.random.default_rng(0).integers(1, 4096, size=8, dtype=np.int32) */
    const int32_t want[8] = {3484, 2609, 2094, 1105, 1261, 168, 309, 68};
    int32_t out[8];
    np_pcg64_seed(&g, 0);
    np_generator_integers_int32(&g, 1, 4096, out, 8);
    assert_memory_equal(out, want, sizeof(want));
}

/* ---- the fixture ---- */

static void check_split_against_fixture(const struct blend_dataset *b, const char *split)
{
    char path[600];
    size_t nt, nl;
    snprintf(path, sizeof(path), "%s/samples/samples_jargon_s128_%s_tokens.i32", fixtures, split);
    int32_t *tokens = read_i32(path, &nt);
    snprintf(path, sizeof(path), "%s/samples/samples_jargon_s128_%s_labels.i32", fixtures, split);
    int32_t *labels = read_i32(path, &nl);
    assert_int_equal(nt, nl);
    int32_t tok[SEQ], lab[SEQ];
    char err[512];
    for (size_t i = 0; i < nt / SEQ; i++) {
        struct gpt_sample s = {tok, lab, NULL, NULL, NULL};
        if (blend_dataset_get(b, (int64_t)i, &s, NULL, err, sizeof(err))) fail_msg("%s", err);
        if (memcmp(tok, tokens + i * SEQ, sizeof(tok)) || memcmp(lab, labels + i * SEQ, sizeof(lab)))
            fail_msg("%s sample %zu differs from Megatron's", split, i);
    }
    free(tokens);
    free(labels);
}

static void test_jargon_samples_match_megatron(void **state)
{
    struct tmp *t = *state;
    const char *path[1] = {jargon};
    struct gpt_dataset_config cfg;
    jargon_config(&cfg, path, t->dir);
    const int64_t requested[3] = {3000, 200, 20};
    struct blend_data *bd;
    char err[1024];
    if (blend_data_build(&cfg, requested, &bd, err, sizeof(err))) fail_msg("%s", err);
    assert_int_equal(blend_dataset_len(bd->split[GPT_SPLIT_TRAIN]), 3469);
    assert_int_equal(blend_dataset_len(bd->split[GPT_SPLIT_VALID]), 255);
    assert_int_equal(blend_dataset_len(bd->split[GPT_SPLIT_TEST]), 20);
    check_split_against_fixture(bd->split[GPT_SPLIT_TRAIN], "train");
    check_split_against_fixture(bd->split[GPT_SPLIT_VALID], "valid");
    check_split_against_fixture(bd->split[GPT_SPLIT_TEST], "test");
    blend_data_free(bd);
}

/* ---- split, sample counts, index builders ---- */

static void test_split_parse_and_ranges(void **state)
{
    (void)state;
    double be[3][2];
    bool present[3];
    char err[256];
    int64_t beg, end;
    assert_int_equal(gpt_split_parse("949,50,1", be, present, err, sizeof(err)), 0);
    const int64_t want[3][2] = {{0, 939}, {939, 988}, {988, 989}};
    for (int i = 0; i < 3; i++) {
        assert_true(present[i]);
        gpt_split_range(be[i], 989, &beg, &end);
        assert_int_equal(beg, want[i][0]);
        assert_int_equal(end, want[i][1]);
    }
    assert_int_equal(gpt_split_parse("99,1", be, present, err, sizeof(err)), 0); /* padded with 0 */
    assert_true(present[0] && present[1] && !present[2]);
    assert_int_equal(gpt_split_parse("1 / 1 / 2", be, present, err, sizeof(err)), 0); /* runs of [.0-9] */
    gpt_split_range(be[0], 10, &beg, &end);
    assert_int_equal(end, 2); /* round(2.5) == 2: half to even, as Python */
    gpt_split_range(be[1], 10, &beg, &end);
    assert_int_equal(end, 5);
    assert_int_equal(gpt_split_parse("1.2.3", be, present, err, sizeof(err)), -1);
    assert_int_equal(gpt_split_parse("1,2,3,4", be, present, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "more than 3"));
    assert_int_equal(gpt_split_parse("0,0,0", be, present, err, sizeof(err)), -1);
    assert_int_equal(gpt_split_parse("-1,1,1", be, present, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--split -1,1,1"));
}

static void test_requested_sample_counts(void **state)
{
    (void)state;
    int64_t n[3];
    gpt_num_samples(1000, 0, 8, 100, 10, n);
    assert_int_equal(n[0], 8000);
    assert_int_equal(n[1], (1000 / 100 + 1) * 10 * 8);
    assert_int_equal(n[2], 80);
    gpt_num_samples(1000, 5000, 8, 300, 2, n); /* --train-samples wins */
    assert_int_equal(n[0], 5000);
    assert_int_equal(n[1], 4 * 2 * 8);
}

static void test_sample_index_overlaps_by_one_token(void **state)
{
    (void)state;
    /* documents of 5, 3 and 4 tokens, samples of 4 + 1: worked by hand from build_sample_idx */
    const int32_t lengths[3] = {5, 3, 4}, docs[3] = {0, 1, 2};
    int64_t n;
    int64_t *idx = gpt_build_sample_index(lengths, docs, 3, 4, 1, 12, true, 1, &n);
    assert_int_equal(n, 2);
    const int64_t want[6] = {0, 0, 0, 4, 2, 0};
    assert_memory_equal(idx, want, sizeof(want));
    free(idx);
    /* keeping the partial last sample: ceil(11 / 4) = 3, ending on the last document's last token */
    idx = gpt_build_sample_index(lengths, docs, 3, 4, 1, 12, false, 1, &n);
    assert_int_equal(n, 3);
    assert_int_equal(idx[6], 2);
    assert_int_equal(idx[7], 3);
    free(idx);
    assert_int_equal(gpt_num_epochs(100, 10, 10, 1), 2); /* 101 tokens needed */
    assert_int_equal(gpt_num_epochs(100, 9, 11, 1), 1);
    assert_int_equal(gpt_num_epochs(100, -1, 11, 1), 1);
}

static void test_final_epoch_shuffled_apart_below_80_percent(void **state)
{
    struct tmp *t = *state;
    struct idx_dataset *f = idx_open_or_die(jargon);
    struct gpt_low_level low;
    gpt_low_level_from_idx(f, &low);
    struct gpt_dataset_config cfg;
    jargon_config(&cfg, NULL, t->dir);
    struct gpt_dataset *ds;
    char err[512];
    /* train holds 3469 samples per epoch: 6000 needs a second epoch contributing 2531 < 0.8 * 3469 */
    assert_int_equal(gpt_dataset_build(&cfg, &low, GPT_SPLIT_TRAIN, 0, 939, 6000, &ds, err, sizeof(err)), 0);
    assert_int_equal(ds->num_epochs, 2);
    assert_true(ds->separate_final_epoch);
    int64_t tokens = 0;
    for (int i = 0; i < 939; i++) tokens += f->sequence_lengths[i];
    int64_t sans = (tokens - 1) / SEQ;
    for (int64_t i = 0; i < ds->length; i++) assert_true((ds->shuffle_index[i] < sans) == (i < sans));
    for (int64_t i = 0; i < ds->document_len; i++) /* each epoch's block holds every document once */
        assert_true((ds->document_index[i] < 939) && (ds->document_index[i] >= 0));
    gpt_dataset_free(ds);
    /* 6700 takes more than 80% of the second epoch: one shuffle over both */
    assert_int_equal(gpt_dataset_build(&cfg, &low, GPT_SPLIT_TRAIN, 0, 939, 6700, &ds, err, sizeof(err)), 0);
    assert_int_equal(ds->num_epochs, 2);
    assert_false(ds->separate_final_epoch);
    gpt_dataset_free(ds);
    idx_close(f);
}

/* ---- masks and padding on a dataset whose documents are all [7, 8, EOD] ---- */

static void write_repeated_dataset(const char *dir, char *prefix, size_t n)
{
    snprintf(prefix, n, "%s/rep", dir);
    char path[256];
    const uint16_t tok[12] = {7, 8, EOD, 7, 8, EOD, 7, 8, EOD, 7, 8, EOD};
    snprintf(path, sizeof(path), "%s.bin", prefix);
    FILE *f = fopen(path, "wb");
    fwrite(tok, 2, 12, f);
    fclose(f);
    unsigned char b[IDX_HEADER_LEN + 12 * 4 + 8 * 5] = {0};
    uint64_t v1 = 1, s = 4, d = 5;
    memcpy(b, IDX_MAGIC, IDX_MAGIC_LEN);
    memcpy(b + 9, &v1, 8);
    b[17] = IDX_UINT16;
    memcpy(b + 18, &s, 8);
    memcpy(b + 26, &d, 8);
    for (int64_t i = 0; i < 4; i++) {
        int32_t len = 3;
        int64_t ptr = 6 * i;
        memcpy(b + IDX_HEADER_LEN + 4 * i, &len, 4);
        memcpy(b + IDX_HEADER_LEN + 16 + 8 * i, &ptr, 8);
    }
    for (int64_t i = 0; i <= 4; i++) memcpy(b + IDX_HEADER_LEN + 48 + 8 * i, &i, 8);
    snprintf(path, sizeof(path), "%s.idx", prefix);
    f = fopen(path, "wb");
    fwrite(b, 1, sizeof(b), f);
    fclose(f);
}

static void test_eod_masks_positions_and_segments(void **state)
{
    struct tmp *t = *state;
    char prefix[128], err[512];
    write_repeated_dataset(t->dir, prefix, sizeof(prefix));
    struct idx_dataset *f = idx_open_or_die(prefix);
    struct gpt_low_level low;
    gpt_low_level_from_idx(f, &low);
    struct gpt_dataset_config cfg;
    jargon_config(&cfg, NULL, t->dir);
    cfg.seq_length = 4;
    cfg.eod_mask_loss = cfg.reset_position_ids = cfg.reset_attention_mask = true;
    struct gpt_dataset *ds;
    assert_int_equal(gpt_dataset_build(&cfg, &low, GPT_SPLIT_TRAIN, 0, 4, 2, &ds, err, sizeof(err)), 0);
    assert_int_equal(ds->length, 2); /* (12 - 1) // 4 */
    int seen = 0;
    for (int64_t i = 0; i < 2; i++) {
        int32_t tok[4], lab[4], pos[4], seg[4];
        float loss[4];
        struct gpt_sample s = {tok, lab, loss, pos, seg};
        assert_int_equal(gpt_dataset_get(ds, i, &s, err, sizeof(err)), 0);
        if (tok[0] == 7) { /* text 7 8 E 7 8 */
            const int32_t wt[4] = {7, 8, EOD, 7}, wl[4] = {8, EOD, 7, 8}, wp[4] = {0, 1, 2, 0}, ws[4] = {0, 0, 0, 1};
            const float wm[4] = {1, 1, 0, 1};
            assert_memory_equal(tok, wt, sizeof(wt));
            assert_memory_equal(lab, wl, sizeof(wl));
            assert_memory_equal(pos, wp, sizeof(wp));
            assert_memory_equal(seg, ws, sizeof(ws));
            assert_memory_equal(loss, wm, sizeof(wm));
            seen |= 1;
        } else { /* text 8 E 7 8 E: starts on the previous sample's last token */
            const int32_t wt[4] = {8, EOD, 7, 8}, wp[4] = {0, 1, 0, 1}, ws[4] = {0, 0, 1, 1};
            const float wm[4] = {1, 0, 1, 1};
            assert_memory_equal(tok, wt, sizeof(wt));
            assert_int_equal(lab[3], EOD);
            assert_memory_equal(pos, wp, sizeof(wp));
            assert_memory_equal(seg, ws, sizeof(ws));
            assert_memory_equal(loss, wm, sizeof(wm));
            seen |= 2;
        }
    }
    assert_int_equal(seen, 3);
    gpt_dataset_free(ds);

    /* without the flags: plain positions, one segment, full loss */
    cfg.eod_mask_loss = cfg.reset_position_ids = cfg.reset_attention_mask = false;
    assert_int_equal(gpt_dataset_build(&cfg, &low, GPT_SPLIT_TRAIN, 0, 4, 2, &ds, err, sizeof(err)), 0);
    int32_t tok[4], pos[4], seg[4];
    float loss[4];
    struct gpt_sample s = {tok, NULL, loss, pos, seg};
    assert_int_equal(gpt_dataset_get(ds, 0, &s, err, sizeof(err)), 0);
    for (int j = 0; j < 4; j++) {
        assert_int_equal(pos[j], j);
        assert_int_equal(seg[j], 0);
        assert_true(loss[j] == 1.0f);
    }
    gpt_dataset_free(ds);
    idx_close(f);
}

static void test_partial_validation_sample_padded(void **state)
{
    struct tmp *t = *state;
    char prefix[128], err[512];
    write_repeated_dataset(t->dir, prefix, sizeof(prefix));
    struct idx_dataset *f = idx_open_or_die(prefix);
    struct gpt_low_level low;
    gpt_low_level_from_idx(f, &low);
    struct gpt_dataset_config cfg;
    jargon_config(&cfg, NULL, t->dir);
    cfg.seq_length = 4;
    cfg.drop_last_partial_validation = false;
    struct gpt_dataset *ds;
    /* 2 samples need 9 of the 12 tokens: one epoch, ceil(11 / 4) samples */
    assert_int_equal(gpt_dataset_build(&cfg, &low, GPT_SPLIT_VALID, 0, 4, 2, &ds, err, sizeof(err)), 0);
    assert_int_equal(ds->length, 3);
    int found = 0;
    for (int64_t i = 0; i < 3; i++) {
        int32_t tok[4], lab[4];
        float loss[4];
        struct gpt_sample s = {tok, lab, loss, NULL, NULL};
        assert_int_equal(gpt_dataset_get(ds, i, &s, err, sizeof(err)), 0);
        if (tok[0] != EOD) continue;
        /* text E 7 8 E then one pad: the pad label becomes 0 and carries no loss */
        const int32_t wl[4] = {7, 8, EOD, 0};
        const float wm[4] = {1, 1, 1, 0};
        assert_memory_equal(lab, wl, sizeof(wl));
        assert_memory_equal(loss, wm, sizeof(wm));
        found = 1;
    }
    assert_true(found);
    gpt_dataset_free(ds);
    idx_close(f);
}

/* ---- cache ---- */

static int file_exists(const char *p)
{
    return access(p, F_OK) == 0;
}

static void build_train(const char *prefix, const char *cache, struct idx_dataset **f, struct gpt_dataset **ds)
{
    *f = idx_open_or_die(prefix);
    struct gpt_low_level low;
    gpt_low_level_from_idx(*f, &low);
    struct gpt_dataset_config cfg;
    jargon_config(&cfg, NULL, cache);
    char err[512];
    if (gpt_dataset_build(&cfg, &low, GPT_SPLIT_TRAIN, 0, 939, 3000, ds, err, sizeof(err))) fail_msg("%s", err);
}

static void assert_same_indices(const struct gpt_dataset *a, const struct gpt_dataset *b)
{
    assert_int_equal(a->length, b->length);
    assert_int_equal(a->document_len, b->document_len);
    assert_memory_equal(a->document_index, b->document_index, (size_t)a->document_len * sizeof(int32_t));
    assert_memory_equal(a->sample_index, b->sample_index, (size_t)(a->length + 1) * 2 * sizeof(int64_t));
    assert_memory_equal(a->shuffle_index, b->shuffle_index, (size_t)a->length * sizeof(int64_t));
}

static void test_cache_reused_then_rebuilt_when_corrupt(void **state)
{
    struct tmp *t = *state;
    struct idx_dataset *f1, *f2, *f3;
    struct gpt_dataset *a, *b, *c;
    build_train(jargon, t->dir, &f1, &a);
    assert_false(a->from_cache);
    assert_non_null(a->cache_path);
    assert_true(file_exists(a->cache_path));
    assert_int_equal(strncmp(a->cache_path, t->dir, strlen(t->dir)), 0);
    assert_non_null(strstr(a->cache_path, "-GPTDataset-train-indices.bin"));
    build_train(jargon, t->dir, &f2, &b);
    assert_true(b->from_cache);
    assert_same_indices(a, b);

    /* flip one byte in the middle: checksum fails, the cache is rebuilt and rewritten */
    FILE *fp = fopen(a->cache_path, "r+b");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, n / 2, SEEK_SET);
    int ch = fgetc(fp);
    fseek(fp, n / 2, SEEK_SET);
    fputc(ch ^ 0x5a, fp);
    fclose(fp);
    build_train(jargon, t->dir, &f3, &c);
    assert_false(c->from_cache);
    assert_same_indices(a, c);
    gpt_dataset_free(c);
    idx_close(f3);
    build_train(jargon, t->dir, &f3, &c);
    assert_true(c->from_cache);

    /* truncated: rebuilt as well */
    assert_int_equal(truncate(a->cache_path, n - 9), 0);
    gpt_dataset_free(c);
    idx_close(f3);
    build_train(jargon, t->dir, &f3, &c);
    assert_false(c->from_cache);
    assert_same_indices(a, c);
    gpt_dataset_free(a);
    gpt_dataset_free(b);
    gpt_dataset_free(c);
    idx_close(f1);
    idx_close(f2);
    idx_close(f3);
}

static void copy_file(const char *from, const char *to, size_t drop_tail)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    fseek(in, 0, SEEK_END);
    long n = ftell(in) - (long)drop_tail;
    fseek(in, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    assert_int_equal(fread(buf, 1, (size_t)n, in), (size_t)n);
    fwrite(buf, 1, (size_t)n, out);
    free(buf);
    fclose(in);
    fclose(out);
}

static void test_cache_stale_when_dataset_changes(void **state)
{
    struct tmp *t = *state;
    char prefix[128], from[600], to[160], cache[160];
    snprintf(prefix, sizeof(prefix), "%s/copy", t->dir);
    snprintf(cache, sizeof(cache), "%s/cache", t->dir);
    snprintf(from, sizeof(from), "%s.bin", jargon);
    snprintf(to, sizeof(to), "%s.bin", prefix);
    copy_file(from, to, 0);
    snprintf(from, sizeof(from), "%s.idx", jargon);
    snprintf(to, sizeof(to), "%s.idx", prefix);
    copy_file(from, to, 0);
    struct idx_dataset *f1, *f2;
    struct gpt_dataset *a, *b;
    build_train(prefix, cache, &f1, &a);
    assert_false(a->from_cache);
    idx_close(f1);
    /* same prefix, different lengths: document 3 loses a token to document 4 */
    FILE *fp = fopen(to, "r+b");
    int32_t len[2];
    fseek(fp, IDX_HEADER_LEN + 4 * 3, SEEK_SET);
    assert_int_equal(fread(len, 4, 2, fp), 2);
    len[0]--, len[1]++;
    fseek(fp, IDX_HEADER_LEN + 4 * 3, SEEK_SET);
    fwrite(len, 4, 2, fp);
    int64_t ptr;
    fseek(fp, IDX_HEADER_LEN + 4 * 989 + 8 * 4, SEEK_SET);
    assert_int_equal(fread(&ptr, 8, 1, fp), 1);
    ptr -= 2;
    fseek(fp, IDX_HEADER_LEN + 4 * 989 + 8 * 4, SEEK_SET);
    fwrite(&ptr, 8, 1, fp);
    fclose(fp);
    build_train(prefix, cache, &f2, &b);
    assert_false(b->from_cache);
    assert_string_not_equal(a->cache_path, b->cache_path);
    assert_true(file_exists(a->cache_path) && file_exists(b->cache_path));
    gpt_dataset_free(a);
    gpt_dataset_free(b);
    idx_close(f2);
}

static void test_unwritable_cache_still_builds(void **state)
{
    struct tmp *t = *state;
    char blocker[128], cache[160];
    snprintf(blocker, sizeof(blocker), "%s/file", t->dir);
    FILE *fp = fopen(blocker, "w");
    fclose(fp);
    snprintf(cache, sizeof(cache), "%s/sub", blocker); /* a directory under a file cannot exist */
    struct idx_dataset *f;
    struct gpt_dataset *ds;
    build_train(jargon, cache, &f, &ds);
    assert_int_equal(ds->length, 3469);
    assert_false(file_exists(ds->cache_path));
    gpt_dataset_free(ds);
    idx_close(f);
}

/* ---- blends and mock data ---- */

static void test_blending_follows_weights_at_every_prefix(void **state)
{
    (void)state;
    const double w[3] = {0.2, 0.3, 0.5};
    int16_t di[1000];
    int64_t dsi[1000], count[3] = {0, 0, 0};
    blend_build_indices(w, 3, 1000, di, dsi);
    for (int64_t s = 0; s < 1000; s++) {
        assert_int_equal(dsi[s], count[di[s]]); /* each dataset read in order */
        count[di[s]]++;
        for (int d = 0; d < 3; d++) assert_true(fabs((double)count[d] - w[d] * (double)(s + 1)) <= 1.0);
    }
    assert_int_equal(count[0], 200);
    assert_int_equal(count[1], 300);
    assert_int_equal(count[2], 500);
    assert_int_equal(blend_dataset_request(3000, 0.3, 0.005), 905);  /* ceil(900 * 1.005) */
    assert_int_equal(blend_dataset_request(3000, 0.7, 0.005), 2111); /* ceil(2100 * 1.005) */
    const int64_t sizes[2] = {3, 5};
    int16_t ei[8];
    int64_t esi[8];
    blend_build_exhaustive_indices(sizes, 2, ei, esi);
    int64_t c0 = 0;
    for (int i = 0; i < 8; i++) c0 += ei[i] == 0;
    assert_int_equal(c0, 3);
}

static void test_blend_parse_forms(void **state)
{
    (void)state;
    struct blend_spec s;
    char err[256];
    const char *weighted[4] = {"30", "a", "70", " b "};
    assert_int_equal(blend_parse("--data-path", 4, weighted, &s, err, sizeof(err)), 0);
    assert_int_equal(s.count, 2);
    assert_true(s.weights[0] == 30.0 && s.weights[1] == 70.0);
    assert_string_equal(s.prefixes[1], "b");
    blend_spec_free(&s);
    const char *plain[2] = {"a", "b"};
    assert_int_equal(blend_parse("--data-path", 2, plain, &s, err, sizeof(err)), 0);
    assert_null(s.weights);
    assert_int_equal(s.count, 2);
    blend_spec_free(&s);
    const char *odd[3] = {"0.3", "a", "b"}; /* odd: all prefixes, as Megatron reads it */
    assert_int_equal(blend_parse("--data-path", 3, odd, &s, err, sizeof(err)), 0);
    assert_null(s.weights);
    assert_string_equal(s.prefixes[0], "0.3");
    blend_spec_free(&s);
    const char *mixed[4] = {"0.3", "a", "b", "c"};
    assert_int_equal(blend_parse("--data-path", 4, mixed, &s, err, sizeof(err)), -1);
    const char *negative[4] = {"-1", "a", "2", "b"};
    assert_int_equal(blend_parse("--data-path", 4, negative, &s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--data-path: weight '-1'"));
    const char *huge[4] = {"1e308", "a", "1e308", "b"}; /* finite weights, an infinite sum */
    assert_int_equal(blend_parse("--data-path", 4, huge, &s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "sum to inf"));
}

static void test_weighted_blend_of_two_prefixes(void **state)
{
    struct tmp *t = *state;
    const char *path[4] = {"0.3", jargon, "0.7", jargon};
    struct gpt_dataset_config cfg;
    jargon_config(&cfg, path, t->dir);
    cfg.data_path_count = 4;
    const int64_t requested[3] = {3000, 200, 20};
    struct blend_data *bd;
    char err[1024];
    if (blend_data_build(&cfg, requested, &bd, err, sizeof(err))) fail_msg("%s", err);
    const struct blend_dataset *train = bd->split[GPT_SPLIT_TRAIN];
    assert_int_equal(blend_dataset_len(train), 3000);
    assert_int_equal(train->count, 2);
    assert_int_equal(train->datasets[0]->num_samples, 905);
    assert_int_equal(train->datasets[1]->num_samples, 2111);
    int64_t from0 = 0;
    for (int64_t i = 0; i < 3000; i++) from0 += train->dataset_index[i] == 0;
    assert_int_equal(from0, 900);
    /* a sample of the blend is the chosen dataset's sample */
    int32_t a[SEQ], b[SEQ];
    struct gpt_sample sa = {a, NULL, NULL, NULL, NULL}, sb = {b, NULL, NULL, NULL, NULL};
    int id;
    assert_int_equal(blend_dataset_get(train, 10, &sa, &id, err, sizeof(err)), 0);
    assert_int_equal(gpt_dataset_get(train->datasets[id], train->dataset_sample_index[10], &sb, err, sizeof(err)), 0);
    assert_memory_equal(a, b, sizeof(a));
    assert_int_equal(blend_dataset_len(bd->split[GPT_SPLIT_TEST]), 20);
    blend_data_free(bd);

    /* without weights: weighed by the datasets' lengths, size capped at their sum */
    const char *plain[2] = {jargon, jargon};
    jargon_config(&cfg, plain, t->dir);
    cfg.data_path_count = 2;
    const int64_t big[3] = {100000, 200, 20};
    if (blend_data_build(&cfg, big, &bd, err, sizeof(err))) fail_msg("%s", err);
    assert_int_equal(blend_dataset_len(bd->split[GPT_SPLIT_TRAIN]), 2 * 3469);
    assert_true(bd->split[GPT_SPLIT_TRAIN]->weights[0] == 0.5);
    blend_data_free(bd);
}

static void test_per_split_paths_use_whole_datasets(void **state)
{
    struct tmp *t = *state;
    const char *one[1] = {jargon};
    struct gpt_dataset_config cfg;
    jargon_config(&cfg, NULL, t->dir);
    cfg.data_path_count = 0;
    cfg.split = NULL;
    cfg.split_data_path_count[GPT_SPLIT_VALID] = 1;
    cfg.split_data_path[GPT_SPLIT_VALID] = one;
    const int64_t requested[3] = {3000, 200, 20};
    struct blend_data *bd;
    char err[1024];
    if (blend_data_build(&cfg, requested, &bd, err, sizeof(err))) fail_msg("%s", err);
    assert_null(bd->split[GPT_SPLIT_TRAIN]);
    assert_null(bd->split[GPT_SPLIT_TEST]);
    const struct gpt_dataset *v = bd->split[GPT_SPLIT_VALID]->datasets[0];
    assert_int_equal(v->beg, 0);
    assert_int_equal(v->end, 989);
    assert_int_equal(v->split, GPT_SPLIT_VALID);
    blend_data_free(bd);
}

static void test_mock_data_as_megatron_builds_it(void **state)
{
    (void)state;
    char err[256];
    struct mock_dataset *m = mock_dataset_create(1000, 999, err, sizeof(err));
    assert_non_null(m);
    assert_int_equal(m->sequence_lengths[0], 3484); /* default_rng(0).integers(1, 4096) */
    assert_int_equal(m->sequence_lengths[7], 68);
    for (int i = 0; i < MOCK_NUM_SEQUENCES; i++)
        assert_true(m->sequence_lengths[i] >= 1 && m->sequence_lengths[i] < MOCK_MAX_SEQUENCE_LENGTH);
    struct gpt_low_level low;
    mock_low_level(m, &low);
    int32_t tok[3484];
    assert_int_equal(low.read(low.ctx, 0, 0, 3484, tok, err, sizeof(err)), 0);
    assert_int_equal(tok[0], 1);
    assert_int_equal(tok[998], 999 % 1000);
    assert_int_equal(tok[999], 0); /* 1000 % vocab */
    assert_int_equal(tok[3483], 999); /* EOD last */
    mock_dataset_free(m);

    struct gpt_dataset_config cfg;
    gpt_dataset_config_init(&cfg);
    cfg.mock = true;
    cfg.vocab_size = 50257;
    cfg.eod_id = EOD;
    cfg.seq_length = 256;
    cfg.split = "949,50,1"; /* ignored: Megatron's mock data always splits 1,1,1 */
    const int64_t requested[3] = {10, 10, 10};
    struct blend_data *bd;
    if (blend_data_build(&cfg, requested, &bd, err, sizeof(err))) fail_msg("%s", err);
    const struct gpt_dataset *test = bd->split[GPT_SPLIT_TEST]->datasets[0];
    assert_int_equal(test->beg, 66667); /* round(2/3 * 100000) */
    assert_int_equal(test->end, 100000);
    assert_null(test->cache_path); /* mock indices are never cached */
    int32_t t2[256];
    struct gpt_sample s = {t2, NULL, NULL, NULL, NULL};
    assert_int_equal(blend_dataset_get(bd->split[GPT_SPLIT_TRAIN], 0, &s, NULL, err, sizeof(err)), 0);
    blend_data_free(bd);
    assert_null(mock_dataset_create(0, 0, err, sizeof(err)));
}

static void test_missing_data_and_tiny_split_refused(void **state)
{
    struct tmp *t = *state;
    struct gpt_dataset_config cfg;
    const char *path[1] = {"/nonexistent/data"};
    jargon_config(&cfg, path, t->dir);
    const int64_t requested[3] = {10, 10, 10};
    struct blend_data *bd;
    char err[1024];
    assert_int_equal(blend_data_build(&cfg, requested, &bd, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/data.idx: cannot open"));
    gpt_dataset_config_init(&cfg);
    assert_int_equal(blend_data_build(&cfg, requested, &bd, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no training data"));
    const char *jp[1] = {jargon};
    jargon_config(&cfg, jp, t->dir);
    cfg.split = "999999,1,0"; /* the valid share rounds to no document */
    assert_int_equal(blend_data_build(&cfg, requested, &bd, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "valid split holds 0 tokens"));
}

int main(int argc, char **argv)
{
    if (argc > 1) fixtures = argv[1];
    else if (getenv("MEGATRON_FIXTURES")) fixtures = getenv("MEGATRON_FIXTURES");
    snprintf(jargon, sizeof(jargon), "%s/megatron_data/jargon_text_document", fixtures);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mt19937_first_output_for_seed_5489),
        cmocka_unit_test(test_random_state_matches_numpy),
        cmocka_unit_test(test_shuffle_matches_numpy),
        cmocka_unit_test(test_default_rng_matches_numpy),
        cmocka_unit_test_setup_teardown(test_jargon_samples_match_megatron, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_split_parse_and_ranges),
        cmocka_unit_test(test_requested_sample_counts),
        cmocka_unit_test(test_sample_index_overlaps_by_one_token),
        cmocka_unit_test_setup_teardown(test_final_epoch_shuffled_apart_below_80_percent, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_eod_masks_positions_and_segments, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_partial_validation_sample_padded, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_cache_reused_then_rebuilt_when_corrupt, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_cache_stale_when_dataset_changes, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_cache_still_builds, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_blending_follows_weights_at_every_prefix),
        cmocka_unit_test(test_blend_parse_forms),
        cmocka_unit_test_setup_teardown(test_weighted_blend_of_two_prefixes, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_per_split_paths_use_whole_datasets, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_mock_data_as_megatron_builds_it),
        cmocka_unit_test_setup_teardown(test_missing_data_and_tiny_split_refused, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
