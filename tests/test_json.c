/* Tests of util/json: RFC 8259 acceptance and rejection (with byte offsets), escapes and
 * surrogates, UTF-8 validation, numbers, nesting limit, big-object iteration, json_escape. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

static struct json_doc *parse_ok(const char *text, size_t len)
{
    char err[256];
    struct json_doc *d = json_parse(text, len, err, sizeof err);
    if (!d) fail_msg("rejected %.*s: %s", (int)len, text, err);
    assert_string_equal(err, "");
    return d;
}

static struct json_doc *parse_str(const char *text) { return parse_ok(text, strlen(text)); }

/* Parses a JSON string literal and checks its decoded bytes. */
static void expect_decoded(const char *literal, const char *bytes, size_t n)
{
    struct json_doc *d = parse_str(literal);
    size_t len;
    const char *s = json_string(json_root(d), &len);
    assert_non_null(s);
    if (len != n || memcmp(s, bytes, n)) fail_msg("%s decoded to %zu bytes, want %zu", literal, len, n);
    assert_int_equal(s[len], '\0');
    json_free(d);
}

static void expect_error(const char *text, size_t len, const char *want)
{
    char err[256];
    struct json_doc *d = json_parse(text, len, err, sizeof err);
    if (d) fail_msg("accepted %.*s", (int)len, text);
    if (strcmp(err, want)) fail_msg("for %.*s: got \"%s\", want \"%s\"", (int)len, text, err, want);
}

static void expect_error_str(const char *text, const char *want) { expect_error(text, strlen(text), want); }

static void test_parses_every_value_type(void **state)
{
    (void)state;
    struct json_doc *d = parse_str(" {\"a\": [1, 2.5, -3e2, true, false, null, \"s\"], \"b\": {}, \"c\": []}\n");
    const struct json_value *r = json_root(d);
    assert_int_equal(json_type(r), JSON_OBJECT);
    assert_int_equal(json_count(r), 3);
    const struct json_value *a = json_get(r, "a");
    assert_int_equal(json_type(a), JSON_ARRAY);
    assert_int_equal(json_count(a), 7);
    assert_true(json_number(json_at(a, 0)) == 1.0);
    assert_true(json_number(json_at(a, 1)) == 2.5);
    assert_true(json_number(json_at(a, 2)) == -300.0);
    assert_true(json_bool(json_at(a, 3)));
    assert_int_equal(json_type(json_at(a, 4)), JSON_BOOL);
    assert_false(json_bool(json_at(a, 4)));
    assert_int_equal(json_type(json_at(a, 5)), JSON_NULL);
    assert_string_equal(json_string(json_at(a, 6), NULL), "s");
    assert_null(json_at(a, 7));
    assert_int_equal(json_type(json_get(r, "b")), JSON_OBJECT);
    assert_int_equal(json_count(json_get(r, "b")), 0);
    assert_int_equal(json_count(json_get(r, "c")), 0);
    assert_null(json_get(r, "missing"));
    json_free(d);
}

static void test_scalar_roots_and_whitespace(void **state)
{
    (void)state;
    struct json_doc *d = parse_str(" \t\r\n42 \n");
    assert_true(json_number(json_root(d)) == 42.0);
    json_free(d);
    d = parse_str("\"x\"");
    assert_string_equal(json_string(json_root(d), NULL), "x");
    json_free(d);
    d = parse_str("null");
    assert_int_equal(json_type(json_root(d)), JSON_NULL);
    json_free(d);
    expect_error_str("\f1", "unexpected byte 0x0c at byte 0");
    expect_error_str("\v1", "unexpected byte 0x0b at byte 0");
    expect_error_str("1\f", "unexpected data after the JSON value at byte 1");
}

static void test_member_order_and_duplicate_keys(void **state)
{
    (void)state;
    struct json_doc *d = parse_str("{\"z\":1,\"a\":2,\"z\":3}");
    const struct json_value *r = json_root(d);
    assert_int_equal(json_count(r), 3);
    size_t len = 0;
    assert_string_equal(json_key(r, 0, &len), "z");
    assert_int_equal(len, 1);
    assert_string_equal(json_key(r, 1, NULL), "a");
    assert_string_equal(json_key(r, 2, NULL), "z");
    assert_true(json_number(json_member(r, 2)) == 3.0);
    assert_true(json_number(json_get(r, "z")) == 1.0); /* the first one */
    assert_null(json_key(r, 3, NULL));
    assert_null(json_member(r, 3));
    json_free(d);
}

static void test_decodes_simple_escapes(void **state)
{
    (void)state;
    expect_decoded("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8);
    expect_decoded("\"\\u0041\\u00e9\\u20AC\\uFFFF\"", "A\xc3\xa9\xe2\x82\xac\xef\xbf\xbf", 9);
    expect_decoded("\"a\\u0000b\"", "a\0b", 3);
    expect_decoded("\"\"", "", 0);
    expect_decoded("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14);
}

static void test_decodes_surrogate_pairs(void **state)
{
    (void)state;
    expect_decoded("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4);        /* U+1F600 */
    expect_decoded("\"\\uD800\\uDC00\"", "\xf0\x90\x80\x80", 4);        /* U+10000 */
    expect_decoded("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf", 4);        /* U+10FFFF */
}

/* Documented choice: an unpaired surrogate escape decodes to U+FFFD (EF BF BD). */
static void test_lone_surrogates_become_replacement_character(void **state)
{
    (void)state;
    expect_decoded("\"\\ud800\"", "\xef\xbf\xbd", 3);
    expect_decoded("\"\\udc00\"", "\xef\xbf\xbd", 3);
    expect_decoded("\"\\ud800x\"", "\xef\xbf\xbdx", 4);
    expect_decoded("\"\\ud800\\u0041\"", "\xef\xbf\xbd" "A", 4);
    expect_decoded("\"\\ud800\\ud800\\udc00\"", "\xef\xbf\xbd\xf0\x90\x80\x80", 7);
    expect_decoded("\"\\ude00\\ud83d\"", "\xef\xbf\xbd\xef\xbf\xbd", 6);
    expect_error_str("\"\\ud800\\u12\"", "invalid \\u escape (needs 4 hex digits) at byte 7");
}

static void test_accepts_utf8_boundaries(void **state)
{
    (void)state;
    static const char *ok[] = {"\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80",
                               "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", "\x7f"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char lit[16];
        snprintf(lit, sizeof lit, "\"%s\"", ok[i]);
        expect_decoded(lit, ok[i], strlen(ok[i]));
    }
}

static void test_rejects_invalid_utf8_with_offsets(void **state)
{
    (void)state;
    static const char *bad[] = {
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\x80",     /* overlong 3-byte */
        "\xe0\x9f\xbf",     /* overlong below U+0800 */
        "\xf0\x8f\xbf\xbf", /* overlong 4-byte */
        "\xed\xa0\x80",     /* encoded surrogate U+D800 */
        "\xed\xbf\xbf",     /* encoded surrogate U+DFFF */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80", /* lead byte above F4 */
        "\xff",
        "\x80",             /* lone continuation */
        "\xe2\x82",         /* truncated */
        "\xe2\x28\xa1",     /* bad continuation */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char lit[32];
        snprintf(lit, sizeof lit, "[\"ab%s\"]", bad[i]);
        expect_error_str(lit, "invalid UTF-8 in string at byte 4");
    }
    /* Bytes that are not ASCII outside strings are unexpected. */
    expect_error_str("\xef\xbb\xbf{}", "unexpected byte 0xef at byte 0");
}

static void test_error_messages_name_byte_offsets(void **state)
{
    (void)state;
    static const struct {
        const char *text, *err;
    } cases[] = {
        {"", "unexpected end of input, expected a value at byte 0"},
        {"   ", "unexpected end of input, expected a value at byte 3"},
        {"\"abc", "unterminated string at byte 0"},
        {"[\"a\\\"]", "unterminated string at byte 1"},
        {"[1", "unterminated array at byte 0"},
        {"{\"a\":1", "unterminated object at byte 0"},
        {"{", "unterminated object at byte 0"},
        {" [ ", "unterminated array at byte 1"},
        {"{\"a\":1,", "unexpected end of input, expected a string key at byte 7"},
        {"[1,", "unexpected end of input, expected a value at byte 3"},
        {"[1,]", "unexpected character ']' at byte 3"},
        {"[,1]", "unexpected character ',' at byte 1"},
        {"[1 2]", "expected ',' or ']' at byte 3"},
        {"{\"a\":1 \"b\":2}", "expected ',' or '}' at byte 7"},
        {"{\"a\" 1}", "expected ':' after object key at byte 5"},
        {"{\"a\":1,}", "expected a string key at byte 7"},
        {"{1:2}", "expected a string key at byte 1"},
        {"{'a':2}", "expected a string key at byte 1"},
        {"tru", "invalid literal (expected true, false or null) at byte 0"},
        {"nul", "invalid literal (expected true, false or null) at byte 0"},
        {"True", "unexpected character 'T' at byte 0"},
        {"NaN", "unexpected character 'N' at byte 0"},
        {"[Infinity]", "unexpected character 'I' at byte 1"},
        {"01", "invalid number: leading zero at byte 0"},
        {"-01", "invalid number: leading zero at byte 0"},
        {"-", "invalid number: expected a digit at byte 0"},
        {"-a", "invalid number: expected a digit at byte 0"},
        {"+1", "unexpected character '+' at byte 0"},
        {".5", "unexpected character '.' at byte 0"},
        {"[1.]", "invalid number: expected a digit after '.' at byte 1"},
        {"1.e5", "invalid number: expected a digit after '.' at byte 0"},
        {"1e", "invalid number: expected a digit in the exponent at byte 0"},
        {"1e+", "invalid number: expected a digit in the exponent at byte 0"},
        {"[1e400]", "number out of range at byte 1"},
        {"-1e400", "number out of range at byte 0"},
        {"\"\\x\"", "invalid escape '\\x' at byte 1"},
        {"\"ab\\'\"", "invalid escape '\\'' at byte 3"},
        {"\"\\u12g4\"", "invalid \\u escape (needs 4 hex digits) at byte 1"},
        {"\"\\u12\"", "invalid \\u escape (needs 4 hex digits) at byte 1"},
        {"\"a\nb\"", "unescaped control character 0x0a in string at byte 2"},
        {"\"a\tb\"", "unescaped control character 0x09 in string at byte 2"},
        {"1 2", "unexpected data after the JSON value at byte 2"},
        {"{} {}", "unexpected data after the JSON value at byte 3"},
        {"[1,2]x", "unexpected data after the JSON value at byte 5"},
        {"/* c */ 1", "unexpected character '/' at byte 0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) expect_error_str(cases[i].text, cases[i].err);
    expect_error("\"a\0b\"", 5, "unescaped control character 0x00 in string at byte 2");
    expect_error("\"\\\x01\"", 4, "invalid escape: backslash before byte 0x01 at byte 1");
}

static void test_error_buffer_is_optional_and_truncated(void **state)
{
    (void)state;
    assert_null(json_parse("[", 1, NULL, 0));
    char small[8];
    assert_null(json_parse("[", 1, small, sizeof small));
    assert_string_equal(small, "untermi"); /* cut, still terminated */
    assert_null(json_parse(NULL, 0, NULL, 0));
}

static void nested(char *buf, int depth, char open, char close)
{
    memset(buf, open, (size_t)depth);
    memset(buf + depth, close, (size_t)depth);
}

static void test_nesting_limit_is_512(void **state)
{
    (void)state;
    char buf[2 * 513];
    nested(buf, 512, '[', ']');
    json_free(parse_ok(buf, 1024));
    nested(buf, 513, '[', ']');
    expect_error(buf, 1026, "nesting deeper than 512 at byte 512");

    /* Objects count too: {"a":{"a":...1...}} */
    size_t cap = 513 * 6 + 600, n = 0;
    char *obj = malloc(cap);
    for (int i = 0; i < 512; i++) n += (size_t)sprintf(obj + n, "{\"a\":");
    n += (size_t)sprintf(obj + n, "1");
    for (int i = 0; i < 512; i++) obj[n++] = '}';
    struct json_doc *d = parse_ok(obj, n);
    const struct json_value *v = json_root(d);
    for (int i = 0; i < 512; i++) v = json_get(v, "a");
    assert_true(json_number(v) == 1.0);
    json_free(d);
    n = 0;
    for (int i = 0; i < 513; i++) n += (size_t)sprintf(obj + n, "{\"a\":");
    expect_error(obj, n, "nesting deeper than 512 at byte 2560");
    free(obj);
}

static void test_numbers_follow_the_grammar_and_int64_is_exact(void **state)
{
    (void)state;
    struct json_doc *d = parse_str("[0, -0, 1.5e-3, 1E2, 123456789012345678, 9007199254740993, 9223372036854775807,"
                                   " -9223372036854775808, 9223372036854775808, 1e3, 2.5, 1e-400, 0.1, -12.75e+1]");
    const struct json_value *a = json_root(d);
    int64_t i;
    assert_true(json_int64(json_at(a, 0), &i) && i == 0);
    assert_true(json_number(json_at(a, 1)) == 0.0 && signbit(json_number(json_at(a, 1))));
    assert_true(json_int64(json_at(a, 1), &i) && i == 0);
    assert_true(json_number(json_at(a, 2)) == 1.5e-3);
    assert_false(json_int64(json_at(a, 2), &i));
    assert_true(json_int64(json_at(a, 3), &i) && i == 100);
    assert_true(json_int64(json_at(a, 4), &i) && i == 123456789012345678LL);
    assert_true(json_int64(json_at(a, 5), &i) && i == 9007199254740993LL);
    assert_true(json_number(json_at(a, 5)) == 9007199254740992.0); /* nearest double */
    assert_true(json_int64(json_at(a, 6), &i) && i == INT64_MAX);
    assert_true(json_int64(json_at(a, 7), &i) && i == INT64_MIN);
    assert_false(json_int64(json_at(a, 8), &i));
    assert_true(json_number(json_at(a, 8)) == 9223372036854775808.0);
    assert_true(json_int64(json_at(a, 9), &i) && i == 1000);
    assert_false(json_int64(json_at(a, 10), &i));
    assert_true(json_number(json_at(a, 11)) == 0.0);
    assert_true(json_number(json_at(a, 12)) == 0.1);
    assert_true(json_number(json_at(a, 13)) == -127.5);
    json_free(d);
}

/* A comma-decimal locale must not change how "0.5" reads. Skipped when no such locale exists. */
static void test_numbers_ignore_the_process_locale(void **state)
{
    (void)state;
    static const char *locales[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", "ru_RU.UTF-8"};
    const char *set = NULL;
    for (size_t i = 0; i < sizeof(locales) / sizeof(locales[0]) && !set; i++)
        set = setlocale(LC_NUMERIC, locales[i]);
    if (!set) skip();
    struct json_doc *d = parse_str("[0.5, 1.25e1]");
    setlocale(LC_NUMERIC, "C");
    assert_true(json_number(json_at(json_root(d), 0)) == 0.5);
    assert_true(json_number(json_at(json_root(d), 1)) == 12.5);
    json_free(d);
}

static void test_accessors_tolerate_wrong_types(void **state)
{
    (void)state;
    struct json_doc *d = parse_str("[\"s\", 1, {\"k\": 2}]");
    const struct json_value *a = json_root(d);
    int64_t i = 7;
    assert_true(isnan(json_number(json_at(a, 0))));
    assert_false(json_int64(json_at(a, 0), &i));
    assert_int_equal(i, 7);
    assert_null(json_string(json_at(a, 1), NULL));
    assert_false(json_bool(json_at(a, 1)));
    assert_int_equal(json_count(json_at(a, 1)), 0);
    assert_null(json_get(a, "k"));
    assert_null(json_key(a, 0, NULL));
    assert_null(json_member(a, 0));
    assert_null(json_at(json_at(a, 2), 0));
    assert_null(json_get(NULL, "k"));
    assert_int_equal(json_type(NULL), JSON_NULL);
    json_free(d);
    json_free(NULL);
}

/* A vocab.json-sized object: 60k members, read back in order by index. */
static void test_big_object_iterates_in_file_order(void **state)
{
    (void)state;
    enum { N = 60000 };
    size_t cap = (size_t)N * 32, n = 0;
    char *text = malloc(cap);
    text[n++] = '{';
    for (int i = 0; i < N; i++) n += (size_t)sprintf(text + n, "%s\"tok\\u0120%d\":%d", i ? "," : "", i, N - i);
    text[n++] = '}';
    struct json_doc *d = parse_ok(text, n);
    const struct json_value *r = json_root(d);
    assert_int_equal(json_count(r), N);
    char want[32];
    for (int i = 0; i < N; i++) {
        size_t klen;
        const char *k = json_key(r, (size_t)i, &klen);
        int len = snprintf(want, sizeof want, "tok\xc4\xa0%d", i);
        if (klen != (size_t)len || strcmp(k, want)) fail_msg("key %d is %s", i, k);
        int64_t v;
        assert_true(json_int64(json_member(r, (size_t)i), &v) && v == N - i);
    }
    assert_true(json_number(json_get(r, "tok\xc4\xa0" "59999")) == 1.0);
    json_free(d);
    free(text);
}

/* GPT-2's encoder.json (../data/gpt2 next to the fixtures), when present. */
static void test_parses_gpt2_vocab(void **state)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/../data/gpt2/encoder.json", (const char *)*state);
    FILE *fp = fopen(path, "rb");
    if (!fp) skip();
    fseek(fp, 0, SEEK_END);
    size_t n = (size_t)ftell(fp);
    rewind(fp);
    char *text = malloc(n);
    assert_int_equal(fread(text, 1, n, fp), n);
    fclose(fp);
    struct json_doc *d = parse_ok(text, n);
    const struct json_value *r = json_root(d);
    assert_int_equal(json_count(r), 50257);
    int64_t v;
    for (size_t i = 0; i < json_count(r); i++) assert_true(json_int64(json_member(r, i), &v) && v >= 0 && v < 50257);
    assert_true(json_int64(json_get(r, "<|endoftext|>"), &v) && v == 50256);
    assert_true(json_int64(json_get(r, "\xc4\xa0the"), &v) && v == 262); /* "Ġthe" */
    json_free(d);
    free(text);
}

static void expect_escaped(const char *s, size_t len, const char *want)
{
    char out[256];
    size_t n = json_escape(out, sizeof out, s, len);
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
}

static void test_escape_output_format(void **state)
{
    (void)state;
    expect_escaped("plain", 5, "\"plain\"");
    expect_escaped("a\"b\\c/d", 7, "\"a\\\"b\\\\c/d\"");
    expect_escaped("\b\f\n\r\t", 5, "\"\\b\\f\\n\\r\\t\"");
    expect_escaped("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\"");
    expect_escaped("a\0b", 3, "\"a\\u0000b\"");
    expect_escaped("\xc3\xa9\xf0\x9f\x98\x80", 6, "\"\xc3\xa9\xf0\x9f\x98\x80\"");
    /* Bytes outside valid UTF-8 become U+FFFD so the output is always valid JSON. */
    expect_escaped("a\xff" "b", 3, "\"a\xef\xbf\xbd" "b\"");
    expect_escaped("\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    expect_escaped("\xe2\x82", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
}

static void test_escape_capacity_contract(void **state)
{
    (void)state;
    assert_int_equal(json_escape(NULL, 0, "a\n", 2), 5); /* "a\n" with its quotes */
    char out[8];
    memset(out, 'X', sizeof out);
    assert_int_equal(json_escape(out, 4, "a\n", 2), 5); /* too small: nothing written */
    assert_int_equal(out[0], 'X');
    assert_int_equal(json_escape(out, 5, "a\n", 2), 5); /* exact: no NUL */
    assert_memory_equal(out, "\"a\\n\"", 5);
    assert_int_equal(out[5], 'X');
    assert_int_equal(json_escape(out, 6, "a\n", 2), 5); /* room: NUL-terminated */
    assert_string_equal(out, "\"a\\n\"");
}

/* Every byte value and a few multi-byte characters survive escape + parse unchanged. */
static void test_escape_round_trips_through_parse(void **state)
{
    (void)state;
    char s[200];
    size_t n = 0;
    for (int c = 0; c < 128; c++) s[n++] = (char)c;
    const char *multi = "\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf";
    memcpy(s + n, multi, strlen(multi));
    n += strlen(multi);
    size_t need = json_escape(NULL, 0, s, n);
    char *lit = malloc(need + 1);
    assert_int_equal(json_escape(lit, need + 1, s, n), need);
    struct json_doc *d = parse_ok(lit, need);
    size_t len;
    const char *back = json_string(json_root(d), &len);
    assert_int_equal(len, n);
    assert_memory_equal(back, s, n);
    json_free(d);
    free(lit);
}

int main(int argc, char **argv)
{
    const char *fixtures = argc > 1 ? argv[1] : "../shared/fixtures";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parses_every_value_type),
        cmocka_unit_test(test_scalar_roots_and_whitespace),
        cmocka_unit_test(test_member_order_and_duplicate_keys),
        cmocka_unit_test(test_decodes_simple_escapes),
        cmocka_unit_test(test_decodes_surrogate_pairs),
        cmocka_unit_test(test_lone_surrogates_become_replacement_character),
        cmocka_unit_test(test_accepts_utf8_boundaries),
        cmocka_unit_test(test_rejects_invalid_utf8_with_offsets),
        cmocka_unit_test(test_error_messages_name_byte_offsets),
        cmocka_unit_test(test_error_buffer_is_optional_and_truncated),
        cmocka_unit_test(test_nesting_limit_is_512),
        cmocka_unit_test(test_numbers_follow_the_grammar_and_int64_is_exact),
        cmocka_unit_test(test_numbers_ignore_the_process_locale),
        cmocka_unit_test(test_accessors_tolerate_wrong_types),
        cmocka_unit_test(test_big_object_iterates_in_file_order),
        cmocka_unit_test_prestate(test_parses_gpt2_vocab, (void *)fixtures),
        cmocka_unit_test(test_escape_output_format),
        cmocka_unit_test(test_escape_capacity_contract),
        cmocka_unit_test(test_escape_round_trips_through_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
