/* Tests of `megatron preprocess` (data/preprocess.c) and the indexed writer: byte-for-byte parity
 * with the .bin/.idx Megatron wrote for jargon.jsonl, document layout and order rules of
 * preprocess_data.py, and bad input (line numbers, skip mode, nothing left behind).
 *   test_preprocess FIXTURES_DIR   (GPT-2 files: $MEGATRON_GPT2_DIR, default ../shared/data/gpt2;
 *                                   corpus: $MEGATRON_CORPUS_DIR, default ../shared/data/corpus) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/preprocess.h"

struct env {
    char fixtures[512], gpt2_dir[512], corpus_dir[512];
    char vocab[600], merges[600];
    char tmp[64]; /* a fresh directory for this run's files */
};
static struct env env;

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: needed by this test (see the usage at the top of tests/test_preprocess.c)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_all(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void assert_same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *x = read_all(a, &la), *y = read_all(b, &lb);
    if (la != lb) fail_msg("%s has %zu bytes, %s has %zu", a, la, b, lb);
    for (size_t i = 0; i < la; i++)
        if (x[i] != y[i]) fail_msg("%s and %s differ at byte %zu", a, b, i);
    free(x);
    free(y);
}

/* Files in the test directory whose name starts with `name`. */
static int count_files_starting(const char *name)
{
    DIR *d = opendir(env.tmp);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strncmp(e->d_name, name, strlen(name)) == 0;
    closedir(d);
    return n;
}

static struct preprocess_options gpt2_options(const char *input, const char *prefix, int workers)
{
    return (struct preprocess_options){.input = input, .output_prefix = prefix, .tokenizer_type = "GPT2BPETokenizer",
                                       .vocab_file = env.vocab, .merge_file = env.merges, .append_eod = true,
                                       .workers = workers, .log_interval = 0, .partitions = 1};
}

static struct preprocess_options null_options(const char *input, const char *prefix, int64_t vocab)
{
    return (struct preprocess_options){.input = input, .output_prefix = prefix, .tokenizer_type = "NullTokenizer",
                                       .vocab_size = vocab, .append_eod = true, .workers = 2, .log_interval = 0,
                                       .partitions = 1};
}

static void run_ok(const struct preprocess_options *o, struct preprocess_result *r)
{
    char err[1024] = "";
    if (preprocess_run(o, r, err, sizeof(err)) != 0) fail_msg("preprocess failed: %s", err);
}

static void check_jargon(int workers, const char *input)
{
    char prefix[128], path[160], want[700];
    snprintf(prefix, sizeof(prefix), "%s/jargon_w%d", env.tmp, workers);
    struct preprocess_options o = gpt2_options(input, prefix, workers);
    struct preprocess_result r;
    run_ok(&o, &r);
    assert_int_equal(r.documents, 989);
    assert_int_equal(r.tokens, 476843);
    assert_int_equal(r.skipped_lines, 0);
    const char *ext[2] = {"bin", "idx"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s_text_document.%s", prefix, ext[i]);
        snprintf(want, sizeof(want), "%s/megatron_data/jargon_text_document.%s", env.fixtures, ext[i]);
        assert_same_file(path, want);
        unlink(path);
    }
}

static void test_jargon_is_byte_identical_with_one_worker(void **state)
{
    (void)state;
    char input[600];
    snprintf(input, sizeof(input), "%s/jargon.jsonl", env.corpus_dir);
    check_jargon(1, input);
}

static void test_jargon_is_byte_identical_with_two_workers(void **state)
{
    (void)state;
    char input[600];
    snprintf(input, sizeof(input), "%s/jargon.jsonl", env.corpus_dir);
    check_jargon(2, input);
}

/* jargon.jsonl cut in two files, given as a glob: the files are read in sorted order. */
static void test_glob_input_reads_files_in_sorted_order(void **state)
{
    (void)state;
    char path[600];
    size_t len;
    snprintf(path, sizeof(path), "%s/jargon.jsonl", env.corpus_dir);
    char *all = read_all(path, &len);
    size_t cut = 0;
    for (int lines = 0; lines < 400; lines++) cut = (size_t)((char *)memchr(all + cut, '\n', len - cut) - all) + 1;
    char a[128], b[128], glob[128];
    snprintf(a, sizeof(a), "%s/part_1.jsonl", env.tmp);
    snprintf(b, sizeof(b), "%s/part_0.jsonl", env.tmp);
    write_all(b, all, cut);
    write_all(a, all + cut, len - cut);
    snprintf(glob, sizeof(glob), "%s/part_*.jsonl", env.tmp);
    check_jargon(3, glob);
    unlink(a);
    unlink(b);
    free(all);
}

/* Reads <prefix>_text_document.{bin,idx} written with uint16 tokens. */
struct small_ds {
    uint16_t tokens[64];
    size_t n_tokens;
    uint64_t s, d;
    int32_t lengths[16];
    int64_t pointers[16], documents[16];
    uint8_t dtype;
};

static void read_small(const char *prefix, struct small_ds *ds)
{
    char path[200];
    size_t len;
    snprintf(path, sizeof(path), "%s_text_document.bin", prefix);
    char *bin = read_all(path, &len);
    assert_true(len <= sizeof(ds->tokens));
    memcpy(ds->tokens, bin, len);
    ds->n_tokens = len / 2;
    free(bin);
    snprintf(path, sizeof(path), "%s_text_document.idx", prefix);
    char *idx = read_all(path, &len);
    assert_memory_equal(idx, "MMIDIDX\0\0\1\0\0\0\0\0\0\0", 17);
    ds->dtype = (uint8_t)idx[17];
    memcpy(&ds->s, idx + 18, 8);
    memcpy(&ds->d, idx + 26, 8);
    assert_true(ds->s <= 16 && ds->d <= 16);
    assert_int_equal(len, 34 + 12 * ds->s + 8 * ds->d);
    memcpy(ds->lengths, idx + 34, 4 * ds->s);
    memcpy(ds->pointers, idx + 34 + 4 * ds->s, 8 * ds->s);
    memcpy(ds->documents, idx + 34 + 12 * ds->s, 8 * ds->d);
    free(idx);
}

/* Encoder.encode: a list value is a list of sentences (one sequence each, empty ones dropped), EOD
 * goes to the last sequence, and a document without tokens still gets its document entry. */
static void test_documents_sentences_and_eod_follow_megatron(void **state)
{
    (void)state;
    char input[128], prefix[128];
    snprintf(input, sizeof(input), "%s/layout.jsonl", env.tmp);
    snprintf(prefix, sizeof(prefix), "%s/layout", env.tmp);
    const char *text = "{\"text\": \"5 6 7\"}\n"
                       "{\"text\": \"\"}\n"
                       "{\"id\": 3, \"text\": [\"1 2\", \"\", \"3\"]}\n"
                       "{\"text\": \"8\", \"text\": \"9\"}"; /* no final newline; the last key wins */
    write_all(input, text, strlen(text));
    struct preprocess_options o = null_options(input, prefix, 1000);
    struct preprocess_result r;
    run_ok(&o, &r);
    assert_int_equal(r.documents, 4);
    struct small_ds ds;
    read_small(prefix, &ds);
    const uint16_t tokens[] = {5, 6, 7, 999, 1, 2, 3, 999, 9, 999};
    assert_int_equal(ds.n_tokens, 10);
    assert_memory_equal(ds.tokens, tokens, sizeof(tokens));
    assert_int_equal(ds.dtype, 8);
    assert_int_equal(ds.s, 4);
    assert_int_equal(ds.d, 5);
    const int32_t lengths[] = {4, 2, 2, 2};
    const int64_t pointers[] = {0, 8, 12, 16}, documents[] = {0, 1, 1, 3, 4};
    assert_memory_equal(ds.lengths, lengths, sizeof(lengths));
    assert_memory_equal(ds.pointers, pointers, sizeof(pointers));
    assert_memory_equal(ds.documents, documents, sizeof(documents));
}

/* --partitions 2: line i goes to partition i % 2 and partitions are concatenated, as Megatron's
 * partition files and add_index merge do; --keep-sequential-samples keeps the input order. */
static void test_partitions_use_megatron_round_robin_order(void **state)
{
    (void)state;
    char input[128], prefix[128];
    snprintf(input, sizeof(input), "%s/parts.jsonl", env.tmp);
    snprintf(prefix, sizeof(prefix), "%s/parts", env.tmp);
    const char *text = "{\"text\": \"10\"}\n{\"text\": \"11\"}\n{\"text\": \"12\"}\n{\"text\": \"13\"}\n{\"text\": \"14\"}\n";
    write_all(input, text, strlen(text));
    struct preprocess_options o = null_options(input, prefix, 100);
    o.append_eod = false;
    o.partitions = 2;
    struct preprocess_result r;
    run_ok(&o, &r);
    struct small_ds ds;
    read_small(prefix, &ds);
    const uint16_t round_robin[] = {10, 12, 14, 11, 13};
    assert_int_equal(ds.n_tokens, 5);
    assert_memory_equal(ds.tokens, round_robin, sizeof(round_robin));
    o.keep_sequential_samples = true;
    run_ok(&o, &r);
    read_small(prefix, &ds);
    const uint16_t sequential[] = {10, 11, 12, 13, 14};
    assert_memory_equal(ds.tokens, sequential, sizeof(sequential));
}

static void test_large_vocabulary_writes_int32(void **state)
{
    (void)state;
    char input[128], prefix[128], path[160];
    snprintf(input, sizeof(input), "%s/big.jsonl", env.tmp);
    snprintf(prefix, sizeof(prefix), "%s/big", env.tmp);
    write_all(input, "{\"text\": \"69000 1\"}\n", 20);
    struct preprocess_options o = null_options(input, prefix, 70000);
    struct preprocess_result r;
    run_ok(&o, &r);
    size_t len;
    snprintf(path, sizeof(path), "%s_text_document.bin", prefix);
    char *bin = read_all(path, &len);
    const int32_t want[] = {69000, 1, 69999};
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(bin, want, sizeof(want));
    free(bin);
    snprintf(path, sizeof(path), "%s_text_document.idx", prefix);
    char *idx = read_all(path, &len);
    assert_int_equal(idx[17], 4); /* int32 */
    free(idx);
}

static void test_each_json_key_gets_its_own_files(void **state)
{
    (void)state;
    char input[128], prefix[128], path[200];
    snprintf(input, sizeof(input), "%s/keys.jsonl", env.tmp);
    snprintf(prefix, sizeof(prefix), "%s/keys", env.tmp);
    const char *text = "{\"title\": \"7\", \"text\": \"1 2\"}\n";
    write_all(input, text, strlen(text));
    char *keys[] = {"text", "title"};
    struct preprocess_options o = null_options(input, prefix, 100);
    o.json_keys = keys;
    o.json_keys_count = 2;
    struct preprocess_result r;
    run_ok(&o, &r);
    struct small_ds ds;
    read_small(prefix, &ds);
    assert_int_equal(ds.n_tokens, 3);
    size_t len;
    snprintf(path, sizeof(path), "%s_title_document.bin", prefix);
    char *bin = read_all(path, &len);
    const uint16_t want[] = {7, 99};
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(bin, want, sizeof(want));
    free(bin);
}

/* A bad line (stop mode) fails the run with its line number and leaves no file behind. */
static void check_stops(const char *name, const char *text, const char *want_err)
{
    char input[128], prefix[128], err[1024] = "";
    snprintf(input, sizeof(input), "%s/%s.jsonl", env.tmp, name);
    snprintf(prefix, sizeof(prefix), "%s/out_%s", env.tmp, name);
    write_all(input, text, strlen(text));
    struct preprocess_options o = gpt2_options(input, prefix, 2);
    assert_int_equal(preprocess_run(&o, NULL, err, sizeof(err)), -1);
    if (!strstr(err, want_err)) fail_msg("error \"%s\" does not say \"%s\"", err, want_err);
    assert_non_null(strstr(err, input));
    char base[64];
    snprintf(base, sizeof(base), "out_%s", name);
    assert_int_equal(count_files_starting(base), 0);
}

static void test_invalid_json_stops_with_line_number_and_leaves_nothing(void **state)
{
    (void)state;
    check_stops("badjson", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c}\n{\"text\": \"d\"}\n",
                "line 3: invalid JSON: ");
}

static void test_invalid_utf8_stops_with_line_number(void **state)
{
    (void)state;
    check_stops("badutf8", "{\"text\": \"a\"}\n{\"text\": \"b\xff\"}\n", "line 2: invalid JSON: invalid UTF-8");
}

static void test_empty_line_stops_with_line_number(void **state)
{
    (void)state;
    check_stops("empty", "{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n", "line 2: empty line");
}

static void test_missing_key_is_an_error(void **state)
{
    (void)state;
    check_stops("nokey", "{\"text\": \"a\"}\n{\"body\": \"b\"}\n", "line 2: no key \"text\"");
    check_stops("notstr", "{\"text\": 5}\n", "line 1: the value of \"text\" is not a string");
    check_stops("notobj", "[\"text\"]\n", "line 1: not a JSON object");
}

/* Skip mode drops bad lines, counts them, and writes what the good lines alone would give. */
static void test_skip_mode_skips_and_counts_invalid_lines(void **state)
{
    (void)state;
    char input[128], clean[128], prefix[128], clean_prefix[128], a[200], b[200];
    snprintf(input, sizeof(input), "%s/dirty.jsonl", env.tmp);
    snprintf(clean, sizeof(clean), "%s/clean.jsonl", env.tmp);
    snprintf(prefix, sizeof(prefix), "%s/dirty", env.tmp);
    snprintf(clean_prefix, sizeof(clean_prefix), "%s/clean", env.tmp);
    const char *dirty = "{\"text\": \"one\"}\n{\"text\": \"t\n{\"text\": \"two\"}\n{\"text\": \"\xc3\"}\n\n"
                        "{\"text\": \"three\"}\n";
    const char *good = "{\"text\": \"one\"}\n{\"text\": \"two\"}\n{\"text\": \"three\"}\n";
    write_all(input, dirty, strlen(dirty));
    write_all(clean, good, strlen(good));
    struct preprocess_options o = gpt2_options(input, prefix, 2);
    o.on_invalid = "skip";
    struct preprocess_result r;
    run_ok(&o, &r);
    assert_int_equal(r.skipped_lines, 3);
    assert_int_equal(r.documents, 3);
    o = gpt2_options(clean, clean_prefix, 1);
    run_ok(&o, &r);
    const char *ext[2] = {"bin", "idx"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof(a), "%s_text_document.%s", prefix, ext[i]);
        snprintf(b, sizeof(b), "%s_text_document.%s", clean_prefix, ext[i]);
        assert_same_file(a, b);
    }
}

static void test_bad_paths_and_options_are_reported(void **state)
{
    (void)state;
    char err[1024] = "", prefix[128], input[600];
    snprintf(prefix, sizeof(prefix), "%s/missing", env.tmp);
    struct preprocess_options o = gpt2_options("/nonexistent/in.jsonl", prefix, 1);
    assert_int_equal(preprocess_run(&o, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--input /nonexistent/in.jsonl: no such file"));
    snprintf(input, sizeof(input), "%s/jargon.jsonl", env.corpus_dir);
    o = gpt2_options(input, "/nonexistent/dir/out", 1);
    assert_int_equal(preprocess_run(&o, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--output-prefix /nonexistent/dir/out: "));
    o = gpt2_options(input, prefix, 0);
    assert_int_equal(preprocess_run(&o, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--workers 0"));
    o = gpt2_options(input, prefix, 1);
    o.on_invalid = "ignore";
    assert_int_equal(preprocess_run(&o, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--on-invalid ignore"));
    o = gpt2_options(input, prefix, 1);
    o.merge_file = NULL;
    assert_int_equal(preprocess_run(&o, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--merge-file"));
    assert_int_equal(count_files_starting("missing"), 0);
}

static int remove_tmp(void **state)
{
    (void)state;
    DIR *d = opendir(env.tmp);
    if (!d) return 0;
    char path[400];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof(path), "%s/%s", env.tmp, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(env.tmp);
    return 0;
}

int main(int argc, char **argv)
{
    const char *gpt2 = getenv("MEGATRON_GPT2_DIR"), *corpus = getenv("MEGATRON_CORPUS_DIR");
    snprintf(env.fixtures, sizeof(env.fixtures), "%s", argc > 1 ? argv[1] : "../shared/fixtures");
    snprintf(env.gpt2_dir, sizeof(env.gpt2_dir), "%s", gpt2 ? gpt2 : "../shared/data/gpt2");
    snprintf(env.corpus_dir, sizeof(env.corpus_dir), "%s", corpus ? corpus : "../shared/data/corpus");
    snprintf(env.vocab, sizeof(env.vocab), "%s/encoder.json", env.gpt2_dir);
    snprintf(env.merges, sizeof(env.merges), "%s/vocab.bpe", env.gpt2_dir);
    snprintf(env.tmp, sizeof(env.tmp), "/tmp/test_preprocess.XXXXXX");
    if (!mkdtemp(env.tmp)) {
        perror("mkdtemp");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jargon_is_byte_identical_with_one_worker),
        cmocka_unit_test(test_jargon_is_byte_identical_with_two_workers),
        cmocka_unit_test(test_glob_input_reads_files_in_sorted_order),
        cmocka_unit_test(test_documents_sentences_and_eod_follow_megatron),
        cmocka_unit_test(test_partitions_use_megatron_round_robin_order),
        cmocka_unit_test(test_large_vocabulary_writes_int32),
        cmocka_unit_test(test_each_json_key_gets_its_own_files),
        cmocka_unit_test(test_invalid_json_stops_with_line_number_and_leaves_nothing),
        cmocka_unit_test(test_invalid_utf8_stops_with_line_number),
        cmocka_unit_test(test_empty_line_stops_with_line_number),
        cmocka_unit_test(test_missing_key_is_an_error),
        cmocka_unit_test(test_skip_mode_skips_and_counts_invalid_lines),
        cmocka_unit_test(test_bad_paths_and_options_are_reported),
    };
    return cmocka_run_group_tests(tests, NULL, remove_tmp);
}
