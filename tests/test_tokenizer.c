/* Tests of the tokenizers: GPT-2's BPE against tiktoken's r50k_base test vectors and against the
 * Megatron-made jargon dataset, its pre-tokenizer against Python's `regex`, and NullTokenizer.
 *   test_tokenizer FIXTURES_DIR   (GPT-2 files: $MEGATRON_GPT2_DIR, default ../shared/data/gpt2;
 *                                  corpus: $MEGATRON_CORPUS_DIR, default ../shared/data/corpus) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "data/tokenizer_gpt2.h"
#include "data/unicode_tables.h"
#include "util/json.h"

struct env {
    char fixtures[512], gpt2_dir[512], corpus_dir[512];
    struct tokenizer *gpt2;
};
static struct env env;

static char *read_file_or_fail(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: needed by this test (see the usage at the top of tests/test_tokenizer.c)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void encode_ok(const struct tokenizer *t, struct tokenizer_scratch *s, const char *text, size_t len,
                      struct token_ids *out)
{
    char err[256] = "";
    if (tokenizer_encode(t, s, text, len, out, err, sizeof(err)) != 0) fail_msg("encode failed: %s", err);
}

/* ---- GPT-2 against tiktoken ---- */

/* Parses "Encoded: [1, 2, 3]" into ids; returns the count. */
static size_t parse_id_list(const char *p, int32_t *ids, size_t cap)
{
    size_t n = 0;
    p = strchr(p, '[');
    assert_non_null(p);
    p++;
    while (*p && *p != ']') {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) {
            p++;
            continue;
        }
        assert_true(n < cap);
        ids[n++] = (int32_t)v;
        p = end;
    }
    return n;
}

static void test_r50k_vectors_match_tiktoken(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof(path), "%s/r50k_test_vectors.txt", env.gpt2_dir);
    size_t len;
    char *text = read_file_or_fail(path, &len);
    struct tokenizer_scratch *s = tokenizer_scratch_create(env.gpt2);
    int vectors = 0;
    static int32_t want[4096];
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "Sample: ", 8) != 0) continue;
        const char *sample = line + 8;
        char *enc = strtok(NULL, "\n");
        assert_non_null(enc);
        assert_true(strncmp(enc, "Encoded: ", 9) == 0);
        size_t nwant = parse_id_list(enc, want, 4096);
        struct token_ids got = {0};
        encode_ok(env.gpt2, s, sample, strlen(sample), &got);
        if (got.len != nwant || memcmp(got.ids, want, nwant * sizeof(int32_t)) != 0)
            fail_msg("vector %d \"%.60s\": %zu ids, tiktoken gives %zu", vectors, sample, got.len, nwant);
        size_t dlen;
        char *back = tokenizer_decode(env.gpt2, got.ids, got.len, &dlen, NULL, 0);
        assert_non_null(back);
        assert_int_equal(dlen, strlen(sample));
        assert_memory_equal(back, sample, dlen);
        free(back);
        token_ids_free(&got);
        vectors++;
    }
    assert_int_equal(vectors, 64);
    tokenizer_scratch_free(s);
    free(text);
}

/* Encodes every document of jargon.jsonl with EOD appended, as preprocess_data.py --append-eod
 * does, and compares with the uint16 stream Megatron wrote. Twice: with and without the cache. */
static void check_jargon_stream(bool use_cache)
{
    char path[1024];
    size_t jlen, blen;
    snprintf(path, sizeof(path), "%s/jargon.jsonl", env.corpus_dir);
    char *jsonl = read_file_or_fail(path, &jlen);
    snprintf(path, sizeof(path), "%s/megatron_data/jargon_text_document.bin", env.fixtures);
    char *bin = read_file_or_fail(path, &blen);
    assert_int_equal(blen, 476843 * 2);
    struct tokenizer_scratch *s = use_cache ? tokenizer_scratch_create(env.gpt2) : NULL;
    struct token_ids ids = {0};
    size_t docs = 0;
    for (size_t pos = 0; pos < jlen;) {
        const char *nl = memchr(jsonl + pos, '\n', jlen - pos);
        size_t end = nl ? (size_t)(nl - jsonl) : jlen;
        char err[256];
        struct json_doc *doc = json_parse(jsonl + pos, end - pos, err, sizeof(err));
        if (!doc) fail_msg("jargon.jsonl line %zu: %s", docs + 1, err);
        size_t tlen;
        const char *t = json_string(json_get(json_root(doc), "text"), &tlen);
        assert_non_null(t);
        encode_ok(env.gpt2, s, t, tlen, &ids);
        token_ids_push(&ids, (int32_t)tokenizer_eod(env.gpt2));
        json_free(doc);
        docs++;
        pos = end + 1;
    }
    assert_int_equal(docs, 989);
    assert_int_equal(ids.len, 476843);
    for (size_t i = 0; i < ids.len; i++) {
        uint16_t want;
        memcpy(&want, bin + 2 * i, 2);
        if ((uint16_t)ids.ids[i] != want) fail_msg("token %zu: %d, Megatron wrote %u", i, ids.ids[i], want);
    }
    token_ids_free(&ids);
    tokenizer_scratch_free(s);
    free(jsonl);
    free(bin);
}

static void test_jargon_stream_matches_megatron_bin(void **state)
{
    (void)state;
    check_jargon_stream(true);
}

static void test_jargon_stream_is_the_same_without_cache(void **state)
{
    (void)state;
    check_jargon_stream(false);
}

static void test_decode_inverts_encode(void **state)
{
    (void)state;
    const char *texts[] = {"", "a", "Hello, world!\n\n  indented\ttab", "\xe2\x80\x8b zero width", "\xf0\x9f\x8c\x8d\xf0\x9f\x8c\x8d",
                           "x<|endoftext|>y", "trailing   ", "\x01\x02\x7f nonprintable", "日本語のテキスト。"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct token_ids ids = {0};
        encode_ok(env.gpt2, NULL, texts[i], strlen(texts[i]), &ids);
        size_t n;
        char *back = tokenizer_decode(env.gpt2, ids.ids, ids.len, &n, NULL, 0);
        assert_non_null(back);
        assert_int_equal(n, strlen(texts[i]));
        assert_memory_equal(back, texts[i], n);
        free(back);
        token_ids_free(&ids);
    }
    int32_t bad = 50257;
    size_t n;
    char err[256];
    assert_null(tokenizer_decode(env.gpt2, &bad, 1, &n, err, sizeof(err)));
    assert_non_null(strstr(err, "50257"));
}

static void test_endoftext_in_text_is_the_eod_token(void **state)
{
    (void)state;
    const char *text = "a<|endoftext|>b";
    struct token_ids ids = {0};
    encode_ok(env.gpt2, NULL, text, strlen(text), &ids);
    assert_int_equal(ids.len, 3);
    assert_int_equal(ids.ids[0], 64);
    assert_int_equal(ids.ids[1], 50256);
    assert_int_equal(ids.ids[2], 65);
    assert_int_equal(tokenizer_eod(env.gpt2), 50256);
    assert_int_equal(tokenizer_vocab_size(env.gpt2), 50257);
    token_ids_free(&ids);
}

static void test_invalid_utf8_is_reported_with_offset(void **state)
{
    (void)state;
    const char *bad[] = {"ab\xff", "ab\xc0\xaf", "ab\xed\xa0\x80", "ab\xe2\x82", "ab\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct token_ids ids = {0};
        char err[256] = "";
        assert_int_equal(tokenizer_encode(env.gpt2, NULL, bad[i], strlen(bad[i]), &ids, err, sizeof(err)), -1);
        assert_string_equal(err, "invalid UTF-8 at byte 2");
        token_ids_free(&ids);
    }
}

/* Expected splits from Python's `regex` module (2026.5.9) running GPT-2's pattern. */
static void test_pretokenize_follows_gpt2_regex(void **state)
{
    (void)state;
    static const char *cases[][8] = {
        {"Hello world", "Hello", " world"},
        {"  leading", " ", " leading"},
        {"trailing  ", "trailing", "  "},
        {"a  b", "a", " ", " b"},
        {"a\n\nb", "a", "\n", "\n", "b"},
        {"a \n b", "a", " \n", " b"},
        {"don't", "don", "'t"},
        {"DON'T", "DON", "'", "T"},
        {"it's'll", "it", "'s", "'ll"},
        {"x!'s", "x", "!'", "s"},
        {"''s", "''", "s"},
        {"12 345abc", "12", " 345", "abc"},
        {" 1.5", " 1", ".", "5"},
        {"\t\tx", "\t", "\t", "x"},
        {"  ", "  "},
        {" ", " "},
        {"\xc2\xa0x", "\xc2\xa0", "x"},                                     /* U+00A0 is White_Space */
        {"a\xe3\x80\x80\xe3\x80\x80" "b", "a", "\xe3\x80\x80", "\xe3\x80\x80", "b"}, /* U+3000 */
        {"\xc3\xa9 caf\xc3\xa9", "\xc3\xa9", " caf\xc3\xa9"},
        {"\xd9\xa3\xd9\xa4 \xe2\x85\xab\xc2\xbd", "\xd9\xa3\xd9\xa4", " \xe2\x85\xab\xc2\xbd"}, /* Nd, Nl, No */
        {"x\xe2\x80\x8bx", "x", "\xe2\x80\x8b", "x"},                       /* U+200B is not White_Space */
        {"\xc2\x85 a", "\xc2\x85", " a"},                                   /* U+0085 is */
        {" 's", " '", "s"},
        {"'\n", "'", "\n"},
        {"a\xcc\x81" "b", "a", "\xcc\x81", "b"}, /* a combining mark is neither L nor N */
        {"!!!  ???", "!!!", " ", " ???"},
        {"I'M", "I", "'", "M"},
        {"'re'", "'re", "'"},
        {"<|end|>", "<|", "end", "|>"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const char *text = cases[c][0];
        size_t len = strlen(text), pos = 0, k = 1;
        while (pos < len) {
            size_t end = gpt2_pretokenize_next(text, len, pos);
            const char *want = cases[c][k++];
            if (!want || end - pos != strlen(want) || memcmp(text + pos, want, end - pos) != 0)
                fail_msg("case %zu: piece %zu is \"%.*s\"", c, k - 1, (int)(end - pos), text + pos);
            pos = end;
        }
        assert_null(cases[c][k]);
    }
}

static void test_unicode_classes_follow_the_ucd(void **state)
{
    (void)state;
    assert_string_equal(unicode_tables_version, "15.0.0");
    assert_int_equal(unicode_class_of('A'), UNICODE_LETTER);
    assert_int_equal(unicode_class_of(0xE9), UNICODE_LETTER);    /* é, Ll */
    assert_int_equal(unicode_class_of(0x2B0), UNICODE_LETTER);   /* modifier letter, Lm */
    assert_int_equal(unicode_class_of(0x4E00), UNICODE_LETTER);  /* CJK range start */
    assert_int_equal(unicode_class_of(0x9FFF), UNICODE_LETTER);  /* CJK range end */
    assert_int_equal(unicode_class_of(0x20000), UNICODE_LETTER); /* plane 2 range */
    assert_int_equal(unicode_class_of(0x663), UNICODE_NUMBER);   /* Arabic-Indic three, Nd */
    assert_int_equal(unicode_class_of(0x216B), UNICODE_NUMBER);  /* Roman numeral twelve, Nl */
    assert_int_equal(unicode_class_of(0xBD), UNICODE_NUMBER);    /* one half, No */
    assert_int_equal(unicode_class_of(0x3000), UNICODE_SPACE);
    assert_int_equal(unicode_class_of(0x85), UNICODE_SPACE);
    assert_int_equal(unicode_class_of(0x1C), UNICODE_OTHER); /* Python's str.isspace() says yes; White_Space no */
    assert_int_equal(unicode_class_of(0x200B), UNICODE_OTHER);
    assert_int_equal(unicode_class_of(0x378), UNICODE_OTHER);  /* unassigned */
    assert_int_equal(unicode_class_of(0xD800), UNICODE_OTHER); /* surrogate */
    assert_int_equal(unicode_class_of(0x110000), UNICODE_OTHER);
    assert_true(unicode_range_count() > 500);
}

/* A vocabulary of the 256 byte tokens plus "ab", "bc", "abc", as JSON. */
static char *tiny_vocab_json(void)
{
    size_t cap = 8192, n = 0;
    char *j = malloc(cap);
    n += (size_t)snprintf(j + n, cap - n, "{");
    for (unsigned b = 0; b < 256; b++) {
        uint32_t cp = gpt2_byte_to_unicode((uint8_t)b);
        char u[3] = {0};
        if (cp < 0x80) u[0] = (char)cp;
        else {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
        }
        const char *esc = (cp == '"' || cp == '\\') ? "\\" : "";
        n += (size_t)snprintf(j + n, cap - n, "\"%s%s\": %u, ", esc, u, b);
    }
    snprintf(j + n, cap - n, "\"ab\": 256, \"bc\": 257, \"abc\": 258, \"<|endoftext|>\": 259}");
    return j;
}

static void test_merges_apply_by_rank(void **state)
{
    (void)state;
    char *vocab = tiny_vocab_json();
    char err[256] = "";
    const char *orders[2] = {"#version: 0.2\nb c\na b\n", "#version: 0.2\na b\nb c\n"};
    const int32_t want[2][2] = {{'a', 257}, {256, 'c'}};
    for (int o = 0; o < 2; o++) {
        struct gpt2_bpe *bpe = gpt2_bpe_create(vocab, strlen(vocab), orders[o], strlen(orders[o]), err, sizeof(err));
        if (!bpe) fail_msg("%s", err);
        assert_int_equal(gpt2_bpe_merge_count(bpe), 2);
        assert_int_equal(gpt2_bpe_vocab_size(bpe), 260);
        struct token_ids ids = {0};
        assert_int_equal(gpt2_bpe_encode(bpe, NULL, "abc", 3, false, &ids, err, sizeof(err)), 0);
        assert_int_equal(ids.len, 2);
        assert_int_equal(ids.ids[0], want[o][0]);
        assert_int_equal(ids.ids[1], want[o][1]);
        token_ids_free(&ids);
        gpt2_bpe_free(bpe);
    }
    /* "a b" then "ab c": a pair made by a merge merges again. */
    const char *chain = "a b\nab c\n";
    struct gpt2_bpe *bpe = gpt2_bpe_create(vocab, strlen(vocab), chain, strlen(chain), err, sizeof(err));
    assert_non_null(bpe);
    struct token_ids ids = {0};
    assert_int_equal(gpt2_bpe_encode(bpe, NULL, "abcab", 5, false, &ids, err, sizeof(err)), 0);
    assert_int_equal(ids.len, 2);
    assert_int_equal(ids.ids[0], 258);
    assert_int_equal(ids.ids[1], 256);
    token_ids_free(&ids);
    gpt2_bpe_free(bpe);
    free(vocab);
}

static void test_bad_tokenizer_files_are_reported(void **state)
{
    (void)state;
    char *vocab = tiny_vocab_json();
    char err[256] = "";
    const char *unknown = "#version: 0.2\nx yz\n";
    assert_null(gpt2_bpe_create(vocab, strlen(vocab), unknown, strlen(unknown), err, sizeof(err)));
    assert_string_equal(err, "merges: line 2: \"x yz\": the right token is not in the vocabulary");
    const char *three = "a b c\n";
    assert_null(gpt2_bpe_create(vocab, strlen(vocab), three, strlen(three), err, sizeof(err)));
    assert_non_null(strstr(err, "line 1"));
    assert_null(gpt2_bpe_create("{\"a\": 0}", 8, "", 0, err, sizeof(err)));
    assert_non_null(strstr(err, "no token for byte 0x00"));
    assert_null(gpt2_bpe_create("[1, 2]", 6, "", 0, err, sizeof(err)));
    assert_non_null(strstr(err, "vocabulary"));
    /* tokens from the file are quoted in the message, their newlines escaped: one line */
    const char *bad_id = "{\"a\\nb\": 7}", *bad_char = "{\"a\\nb\": 0}";
    assert_null(gpt2_bpe_create(bad_id, strlen(bad_id), "", 0, err, sizeof(err)));
    assert_string_equal(err, "vocabulary: token 0 (\"a\\nb\"): id is not an integer in [0, 1)");
    assert_null(gpt2_bpe_create(bad_char, strlen(bad_char), "", 0, err, sizeof(err)));
    assert_string_equal(err, "vocabulary: token 0 (\"a\\nb\") has a character outside GPT-2's byte "
                             "alphabet");
    free(vocab);

    struct tokenizer_options o = {.type = "GPT2BPETokenizer", .vocab_file = "/nonexistent/vocab.json",
                                  .merge_file = "/nonexistent/merges.txt"};
    assert_null(tokenizer_create(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/vocab.json: No such file or directory"));
    o.type = "SentencePieceTokenizer";
    assert_null(tokenizer_create(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "not supported yet"));
}

/* ---- NullTokenizer ---- */

static void test_null_tokenizer_reads_space_separated_ids(void **state)
{
    (void)state;
    char err[256] = "";
    struct tokenizer_options o = {.type = "NullTokenizer", .vocab_size = 1000};
    struct tokenizer *t = tokenizer_create(&o, err, sizeof(err));
    assert_non_null(t);
    assert_int_equal(tokenizer_vocab_size(t), 1000);
    assert_int_equal(tokenizer_eod(t), 999);
    struct token_ids ids = {0};
    encode_ok(t, NULL, "5 0 999 12\n", 11, &ids);
    assert_int_equal(ids.len, 4);
    assert_int_equal(ids.ids[0], 5);
    assert_int_equal(ids.ids[2], 999);
    assert_int_equal(ids.ids[3], 12);
    size_t n;
    char *text = tokenizer_decode(t, ids.ids, ids.len, &n, err, sizeof(err));
    assert_string_equal(text, "5 0 999 12");
    free(text);
    token_ids_free(&ids);
    encode_ok(t, NULL, "", 0, &ids);
    assert_int_equal(ids.len, 0);
    const char *bad[] = {"1 1000", "1  2", "x", "-3", "1.5", "1\nx"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tokenizer_encode(t, NULL, bad[i], strlen(bad[i]), &ids, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "is not a token id in [0, 1000)"));
        assert_null(strchr(err, '\n')); /* the field is quoted, its newline escaped: one line */
    }
    assert_non_null(strstr(err, "\"1\\nx\" at byte 0"));
    token_ids_free(&ids);
    tokenizer_free(t);
    o.vocab_size = 0;
    assert_null(tokenizer_create(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "--vocab-size"));
}

static int setup(void **state)
{
    (void)state;
    char err[512];
    char vocab[1100], merges[1100];
    snprintf(vocab, sizeof(vocab), "%s/encoder.json", env.gpt2_dir);
    snprintf(merges, sizeof(merges), "%s/vocab.bpe", env.gpt2_dir);
    struct tokenizer_options o = {.type = "GPT2BPETokenizer", .vocab_file = vocab, .merge_file = merges};
    env.gpt2 = tokenizer_create(&o, err, sizeof(err));
    if (!env.gpt2) {
        fprintf(stderr, "cannot load the GPT-2 tokenizer: %s (set MEGATRON_GPT2_DIR)\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tokenizer_free(env.gpt2);
    return 0;
}

int main(int argc, char **argv)
{
    const char *gpt2 = getenv("MEGATRON_GPT2_DIR"), *corpus = getenv("MEGATRON_CORPUS_DIR");
    snprintf(env.fixtures, sizeof(env.fixtures), "%s", argc > 1 ? argv[1] : "../shared/fixtures");
    snprintf(env.gpt2_dir, sizeof(env.gpt2_dir), "%s", gpt2 ? gpt2 : "../shared/data/gpt2");
    snprintf(env.corpus_dir, sizeof(env.corpus_dir), "%s", corpus ? corpus : "../shared/data/corpus");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r50k_vectors_match_tiktoken),
        cmocka_unit_test(test_jargon_stream_matches_megatron_bin),
        cmocka_unit_test(test_jargon_stream_is_the_same_without_cache),
        cmocka_unit_test(test_decode_inverts_encode),
        cmocka_unit_test(test_endoftext_in_text_is_the_eod_token),
        cmocka_unit_test(test_invalid_utf8_is_reported_with_offset),
        cmocka_unit_test(test_pretokenize_follows_gpt2_regex),
        cmocka_unit_test(test_unicode_classes_follow_the_ucd),
        cmocka_unit_test(test_merges_apply_by_rank),
        cmocka_unit_test(test_bad_tokenizer_files_are_reported),
        cmocka_unit_test(test_null_tokenizer_reads_space_separated_ids),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
