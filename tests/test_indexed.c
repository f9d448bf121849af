/* Tests of data/indexed.c: the jargon fixture reads as Megatron wrote it, every dtype reads back,
 * and every way an .idx/.bin pair can be wrong is refused with a one-line message naming the file
 * and the field. argv[1]: the fixture directory (default ../shared/fixtures). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/indexed.h"

static const char *fixtures = "../shared/fixtures";

#include "tests/tmpdir.h"

static void jargon_prefix(char *buf, size_t n)
{
    snprintf(buf, n, "%s/megatron_data/jargon_text_document", fixtures);
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len + 1);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Writes <dir>/<name>.idx and .bin in Megatron's layout: one document per sequence. */
static void write_dataset(const char *dir, const char *name, int dtype, const int32_t *lengths, int n,
                          const void *tokens)
{
    size_t item = idx_dtype_size(dtype), total = 0;
    for (int i = 0; i < n; i++) total += (size_t)lengths[i];
    char path[256];
    snprintf(path, sizeof(path), "%s/%s.bin", dir, name);
    write_file(path, tokens, total * item);
    size_t len = IDX_HEADER_LEN + 12 * (size_t)n + 8 * ((size_t)n + 1);
    unsigned char *b = calloc(1, len), *p = b;
    uint64_t one = 1, s = (uint64_t)n, d = (uint64_t)n + 1;
    memcpy(p, IDX_MAGIC, IDX_MAGIC_LEN);
    memcpy(p + 9, &one, 8);
    p[17] = (unsigned char)dtype;
    memcpy(p + 18, &s, 8);
    memcpy(p + 26, &d, 8);
    p += IDX_HEADER_LEN;
    memcpy(p, lengths, 4 * (size_t)n);
    p += 4 * (size_t)n;
    int64_t ptr = 0;
    for (int i = 0; i < n; i++, p += 8) {
        memcpy(p, &ptr, 8);
        ptr += (int64_t)lengths[i] * (int64_t)item;
    }
    for (int64_t i = 0; i <= n; i++, p += 8) memcpy(p, &i, 8);
    snprintf(path, sizeof(path), "%s/%s.idx", dir, name);
    write_file(path, b, len);
    free(b);
}

static void test_jargon_fixture_counts(void **state)
{
    (void)state;
    char prefix[512], err[512];
    jargon_prefix(prefix, sizeof(prefix));
    struct idx_dataset *ds = idx_open(prefix, err, sizeof(err));
    if (!ds) fail_msg("%s", err);
    assert_int_equal(idx_document_count(ds), 989);
    assert_int_equal(idx_sequence_count(ds), 989); /* one sequence per document without --split-sentences */
    assert_int_equal(ds->num_tokens, 476843);
    assert_int_equal(ds->index.dtype, IDX_UINT16);
    idx_close(ds);
}

static void test_jargon_documents_end_with_eod(void **state)
{
    (void)state;
    char prefix[512], err[512];
    jargon_prefix(prefix, sizeof(prefix));
    struct idx_dataset *ds = idx_open_or_die(prefix);
    for (int64_t i = 0; i < idx_sequence_count(ds); i++) {
        struct idx_sequence s = idx_get(ds, i);
        int32_t last;
        assert_int_equal(idx_read_tokens(ds, i, s.length - 1, 1, &last, err, sizeof(err)), 0);
        assert_int_equal(last, 50256); /* --append-eod */
    }
    /* the int32 copy equals the raw uint16 items */
    struct idx_sequence s = idx_get(ds, 7);
    int32_t *tok = malloc((size_t)s.length * sizeof(int32_t));
    assert_int_equal(idx_read_tokens(ds, 7, 0, s.length, tok, err, sizeof(err)), 0);
    for (int64_t k = 0; k < s.length; k++) {
        uint16_t v;
        memcpy(&v, (const unsigned char *)s.data + 2 * k, 2);
        assert_int_equal(tok[k], v);
    }
    free(tok);
    idx_close(ds);
}

static void test_read_outside_sequence_refused(void **state)
{
    (void)state;
    char prefix[512], err[512];
    jargon_prefix(prefix, sizeof(prefix));
    struct idx_dataset *ds = idx_open_or_die(prefix);
    int32_t buf[4];
    int64_t n = idx_get(ds, 0).length;
    assert_int_equal(idx_read_tokens(ds, 0, n - 1, 2, buf, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "outside"));
    assert_int_equal(idx_read_tokens(ds, 989, 0, 1, buf, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "does not exist"));
    assert_int_equal(idx_read_tokens(ds, 0, n, 0, buf, err, sizeof(err)), 0);
    idx_close(ds);
}

static void test_every_dtype_reads_back(void **state)
{
    struct tmp *t = *state;
    const int32_t lengths[3] = {2, 0, 3};
    const int64_t want[5] = {1, 100, 7, 0, 120};
    for (int code = 1; code <= 8; code++) {
        unsigned char buf[5 * 8];
        size_t item = idx_dtype_size(code);
        for (int k = 0; k < 5; k++) {
            int64_t v = want[k];
            unsigned char *p = buf + (size_t)k * item;
            switch (code) {
            case IDX_UINT8: case IDX_INT8: *p = (unsigned char)v; break;
            case IDX_INT16: case IDX_UINT16: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
            case IDX_INT32: { int32_t x = (int32_t)v; memcpy(p, &x, 4); break; }
            case IDX_INT64: memcpy(p, &v, 8); break;
            case IDX_FLOAT32: { float x = (float)v; memcpy(p, &x, 4); break; }
            case IDX_FLOAT64: { double x = (double)v; memcpy(p, &x, 8); break; }
            }
        }
        char name[32], prefix[128], err[512];
        snprintf(name, sizeof(name), "dtype%d", code);
        write_dataset(t->dir, name, code, lengths, 3, buf);
        snprintf(prefix, sizeof(prefix), "%s/%s", t->dir, name);
        struct idx_dataset *ds = idx_open(prefix, err, sizeof(err));
        if (!ds) fail_msg("dtype %s: %s", idx_dtype_name(code), err);
        assert_int_equal(ds->index.dtype, code);
        assert_int_equal(idx_get(ds, 1).length, 0);
        int32_t out[3];
        assert_int_equal(idx_read_tokens(ds, 0, 0, 2, out, err, sizeof(err)), 0);
        assert_int_equal(out[0], 1);
        assert_int_equal(out[1], 100);
        assert_int_equal(idx_read_tokens(ds, 2, 1, 2, out, err, sizeof(err)), 0);
        assert_int_equal(out[0], 0);
        assert_int_equal(out[1], 120);
        idx_close(ds);
    }
}

static void test_wide_and_fractional_tokens_refused(void **state)
{
    struct tmp *t = *state;
    const int32_t lengths[1] = {2};
    int64_t wide[2] = {5, (int64_t)1 << 40};
    double frac[2] = {3.0, 1.5};
    char prefix[128], err[512];
    int32_t out[2];
    write_dataset(t->dir, "wide", IDX_INT64, lengths, 1, wide);
    snprintf(prefix, sizeof(prefix), "%s/wide", t->dir);
    struct idx_dataset *ds = idx_open_or_die(prefix);
    assert_int_equal(idx_read_tokens(ds, 0, 0, 1, out, err, sizeof(err)), 0);
    assert_int_equal(idx_read_tokens(ds, 0, 0, 2, out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "int32 range"));
    idx_close(ds);
    write_dataset(t->dir, "frac", IDX_FLOAT64, lengths, 1, frac);
    snprintf(prefix, sizeof(prefix), "%s/frac", t->dir);
    ds = idx_open_or_die(prefix);
    assert_int_equal(idx_read_tokens(ds, 0, 1, 1, out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not an integer"));
    idx_close(ds);
}

/* A broken copy of the jargon .idx: `edit` changes the bytes (it may shorten or grow them). */
struct breakage {
    const char *what;  /* test label */
    const char *field; /* must appear in the message */
    void (*edit)(unsigned char *b, size_t *len);
};

static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static void put_i32(unsigned char *p, int32_t v) { memcpy(p, &v, 4); }
static uint64_t s_of(const unsigned char *b) { uint64_t v; memcpy(&v, b + 18, 8); return v; }
static uint64_t d_of(const unsigned char *b) { uint64_t v; memcpy(&v, b + 26, 8); return v; }
static unsigned char *ptr_at(unsigned char *b, uint64_t i) { return b + IDX_HEADER_LEN + 4 * s_of(b) + 8 * i; }
static unsigned char *doc_at(unsigned char *b, uint64_t i) { return b + IDX_HEADER_LEN + 12 * s_of(b) + 8 * i; }

static void e_truncated_header(unsigned char *b, size_t *len) { (void)b; *len = 20; }
static void e_magic(unsigned char *b, size_t *len) { (void)len; b[0] = 'X'; }
static void e_version(unsigned char *b, size_t *len) { (void)len; put_u64(b + 9, 2); }
static void e_dtype_zero(unsigned char *b, size_t *len) { (void)len; b[17] = 0; }
static void e_dtype_nine(unsigned char *b, size_t *len) { (void)len; b[17] = 9; }
static void e_seq_count_huge(unsigned char *b, size_t *len) { (void)len; put_u64(b + 18, UINT64_MAX / 4); }
static void e_doc_count_huge(unsigned char *b, size_t *len) { (void)len; put_u64(b + 26, UINT64_MAX); }
static void e_doc_count_zero(unsigned char *b, size_t *len) { *len -= 8 * d_of(b); put_u64(b + 26, 0); }
static void e_trailing(unsigned char *b, size_t *len) { b[*len] = 0; *len += 1; }
static void e_truncated_tail(unsigned char *b, size_t *len) { (void)b; *len -= 8; }
static void e_negative_length(unsigned char *b, size_t *len) { (void)len; put_i32(b + IDX_HEADER_LEN + 4 * 5, -3); }
static void e_first_pointer(unsigned char *b, size_t *len) { (void)len; put_u64(ptr_at(b, 0), 2); }
static void e_pointer_gap(unsigned char *b, size_t *len)
{
    (void)len;
    uint64_t v;
    memcpy(&v, ptr_at(b, 10), 8);
    put_u64(ptr_at(b, 10), v + 2);
}
static void e_doc_first(unsigned char *b, size_t *len) { (void)len; put_u64(doc_at(b, 0), 1); }
static void e_doc_decreasing(unsigned char *b, size_t *len) { (void)len; put_u64(doc_at(b, 500), 3); }
static void e_doc_last(unsigned char *b, size_t *len) { (void)len; put_u64(doc_at(b, d_of(b) - 1), s_of(b) - 1); }

static const struct breakage breakages[] = {
    {"truncated header", "header", e_truncated_header},
    {"bad magic", "magic", e_magic},
    {"bad version", "version", e_version},
    {"dtype 0", "dtype", e_dtype_zero},
    {"dtype 9", "dtype", e_dtype_nine},
    {"sequence count past the file", "sequence_count", e_seq_count_huge},
    {"document count past the file", "document_count", e_doc_count_huge},
    {"document count 0", "document_count", e_doc_count_zero},
    {"trailing bytes", "size", e_trailing},
    {"truncated arrays", "truncated", e_truncated_tail},
    {"negative length", "sequence_lengths[5]", e_negative_length},
    {"first pointer not 0", "sequence_pointers[0]", e_first_pointer},
    {"pointer not after its predecessor", "sequence_pointers[10]", e_pointer_gap},
    {"document indices not starting at 0", "document_indices[0]", e_doc_first},
    {"document indices decreasing", "document_indices[", e_doc_decreasing},
    {"document indices not ending at S", "document_indices[989]", e_doc_last},
};

static void test_malformed_idx_refused_with_field(void **state)
{
    struct tmp *t = *state;
    char prefix[512], path[600], err[1024];
    jargon_prefix(prefix, sizeof(prefix));
    snprintf(path, sizeof(path), "%s.idx", prefix);
    size_t len;
    unsigned char *orig = read_file(path, &len);
    snprintf(path, sizeof(path), "%s.bin", prefix);
    size_t bin_len;
    unsigned char *bin = read_file(path, &bin_len);
    for (size_t k = 0; k < sizeof(breakages) / sizeof(breakages[0]); k++) {
        unsigned char *b = malloc(len + 16);
        memcpy(b, orig, len);
        size_t n = len;
        breakages[k].edit(b, &n);
        char name[64], bad[128];
        snprintf(name, sizeof(name), "broken%zu", k);
        snprintf(bad, sizeof(bad), "%s/%s", t->dir, name);
        snprintf(path, sizeof(path), "%s.idx", bad);
        write_file(path, b, n);
        snprintf(path, sizeof(path), "%s.bin", bad);
        write_file(path, bin, bin_len);
        err[0] = '\0';
        struct idx_dataset *ds = idx_open(bad, err, sizeof(err));
        if (ds) fail_msg("%s: accepted", breakages[k].what);
        char want[160];
        snprintf(want, sizeof(want), "%s.idx: ", bad);
        if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, breakages[k].field) || strchr(err, '\n') ||
            !strchr(err, ';'))
            fail_msg("%s: message '%s' lacks file, field '%s' or remedy", breakages[k].what, err, breakages[k].field);
        free(b);
    }
    free(orig);
    free(bin);
}

static void test_bin_not_matching_idx_refused(void **state)
{
    struct tmp *t = *state;
    const int32_t lengths[2] = {3, 2};
    const uint16_t tokens[5] = {1, 2, 3, 4, 5};
    char prefix[128], path[160], err[512];
    write_dataset(t->dir, "short", IDX_UINT16, lengths, 2, tokens);
    snprintf(prefix, sizeof(prefix), "%s/short", t->dir);
    snprintf(path, sizeof(path), "%s.bin", prefix);
    write_file(path, tokens, 8); /* one token short */
    assert_null(idx_open(prefix, err, sizeof(err)));
    assert_non_null(strstr(err, "do not belong together"));
    unlink(path);
    assert_null(idx_open(prefix, err, sizeof(err)));
    assert_non_null(strstr(err, "short.bin: cannot open"));
    assert_null(idx_open("/nonexistent/prefix", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/prefix.idx: cannot open"));
}

static void test_multimodal_sequence_modes_accepted(void **state)
{
    (void)state;
    /* Megatron's multimodal index appends one int8 mode per sequence after the document indices */
    unsigned char b[IDX_HEADER_LEN + 12 + 16 + 1] = {0};
    uint64_t one = 1, two = 2;
    int32_t n = 4;
    memcpy(b, IDX_MAGIC, IDX_MAGIC_LEN);
    memcpy(b + 9, &one, 8);
    b[17] = IDX_INT32;
    memcpy(b + 18, &one, 8);
    memcpy(b + 26, &two, 8);
    memcpy(b + IDX_HEADER_LEN, &n, 4);
    memcpy(b + IDX_HEADER_LEN + 12 + 8, &one, 8);
    struct idx_index ix;
    char err[256];
    assert_int_equal(idx_parse(b, sizeof(b), 16, "mm.idx", &ix, err, sizeof(err)), 0);
    assert_int_equal(idx_parse(b, sizeof(b) - 1, 16, "mm.idx", &ix, err, sizeof(err)), 0);
    assert_int_equal(idx_parse(b, sizeof(b) - 1, IDX_BIN_SIZE_UNKNOWN, "mm.idx", &ix, err, sizeof(err)), 0);
    assert_int_equal(idx_parse(b, sizeof(b) - 1, 15, "mm.idx", &ix, err, sizeof(err)), -1);
}

static void test_open_or_die_prints_one_line_and_exits_2(void **state)
{
    struct tmp *t = *state;
    char path[160];
    snprintf(path, sizeof(path), "%s/stderr.txt", t->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen(path, "w", stderr)) _exit(99);
        idx_open_or_die("/nonexistent/prefix");
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    size_t len;
    unsigned char *msg = read_file(path, &len);
    msg[len] = '\0';
    assert_true(strncmp((char *)msg, "megatron: error: /nonexistent/prefix.idx: cannot open", 53) == 0);
    assert_non_null(strchr((char *)msg, '\n'));
    assert_true(strchr((char *)msg, '\n') == (char *)msg + len - 1); /* one line */
    free(msg);
}

int main(int argc, char **argv)
{
    if (argc > 1) fixtures = argv[1];
    else if (getenv("MEGATRON_FIXTURES")) fixtures = getenv("MEGATRON_FIXTURES");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jargon_fixture_counts),
        cmocka_unit_test(test_jargon_documents_end_with_eod),
        cmocka_unit_test(test_read_outside_sequence_refused),
        cmocka_unit_test_setup_teardown(test_every_dtype_reads_back, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_wide_and_fractional_tokens_refused, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_idx_refused_with_field, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_bin_not_matching_idx_refused, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_multimodal_sequence_modes_accepted),
        cmocka_unit_test_setup_teardown(test_open_or_die_prints_one_line_and_exits_2, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
