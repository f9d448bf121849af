/* Tests of ckpt/safetensors: reading the Hugging Face fixtures, fp32 conversion, the writer's byte
 * layout and atomicity, and one refusal (with its message) per class of malformed file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/safetensors.h"
#include "util/json.h"

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    rewind(fp);
    char *buf = malloc(*len ? *len : 1);
    assert_int_equal(fread(buf, 1, *len, fp), *len);
    fclose(fp);
    return buf;
}

static void fixture_path(char *out, size_t cap, void **state, const char *rel)
{
    snprintf(out, cap, "%s/%s", (const char *)*state, rel);
}

static uint64_t header_len(const char *buf)
{
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | (unsigned char)buf[i];
    return n;
}

/* A scratch directory for written files, removed with its files at the end of each test. */
struct scratch {
    char dir[64];
};

static void scratch_make(struct scratch *s)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/test_safetensors_XXXXXX");
    assert_non_null(mkdtemp(s->dir));
}

static void scratch_path(const struct scratch *s, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", s->dir, name);
}

static void scratch_remove(struct scratch *s, const char *const *names)
{
    char path[256];
    for (size_t i = 0; names[i]; i++) {
        scratch_path(s, names[i], path, sizeof path);
        unlink(path);
    }
    assert_int_equal(rmdir(s->dir), 0); /* fails if a stray file (a .tmp) was left behind */
}

static void test_opens_gpt2_fixture_with_known_tensors(void **state)
{
    char path[4096], err[512];
    fixture_path(path, sizeof path, state, "gpt2_tiny/model.safetensors");
    struct st_file *f = st_open(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(st_count(f), 28); /* 12 per layer x 2, ln_f weight and bias, wpe, wte */
    assert_string_equal(st_metadata(f, "format"), "pt");
    assert_null(st_metadata(f, "absent"));

    const struct st_tensor *t = st_find(f, "transformer.h.0.attn.c_attn.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 64);
    assert_int_equal(t->shape[1], 192);
    assert_int_equal(t->nbytes, 64 * 192 * 4);
    assert_int_equal((uintptr_t)t->data % 4, 0);

    /* The bytes are the file's, found independently from the header length and data_offsets. */
    size_t len;
    char *raw = read_file(path, &len);
    const char *data = raw + 8 + header_len(raw);
    assert_memory_equal(t->data, data + 768, t->nbytes);
    const struct st_tensor *wte = st_find(f, "transformer.wte.weight");
    assert_int_equal(wte->shape[0], 512);
    assert_int_equal(wte->shape[1], 64);
    assert_memory_equal(wte->data, data + 416768, wte->nbytes);

    /* Data order, and every tensor reachable by name. */
    size_t end = 0;
    for (size_t i = 0; i < st_count(f); i++) {
        const struct st_tensor *a = st_at(f, i);
        assert_int_equal((const char *)a->data - (const char *)st_at(f, 0)->data, end);
        assert_memory_equal(a->data, data + end, a->nbytes);
        end += a->nbytes;
        assert_ptr_equal(st_find(f, a->name), a);
    }
    assert_int_equal(end, len - 8 - header_len(raw));
    assert_string_equal(st_at(f, 0)->name, "transformer.h.0.attn.c_attn.bias");
    assert_null(st_at(f, st_count(f)));
    assert_null(st_find(f, "lm_head.weight")); /* tied to wte, not stored */
    assert_null(st_find(f, "transformer"));
    free(raw);
    st_close(f);
}

static void test_reference_tokens_are_int32_within_vocab(void **state)
{
    char path[4096], err[512];
    fixture_path(path, sizeof path, state, "gpt2_tiny/config.json");
    size_t len;
    char *text = read_file(path, &len);
    struct json_doc *config = json_parse(text, len, err, sizeof err);
    if (!config) fail_msg("%s", err);
    int64_t vocab;
    assert_true(json_int64(json_get(json_root(config), "vocab_size"), &vocab));

    fixture_path(path, sizeof path, state, "gpt2_tiny/reference.safetensors");
    struct st_file *f = st_open(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    const char *names[] = {"tokens", "targets"};
    for (int k = 0; k < 2; k++) {
        const struct st_tensor *t = st_find(f, names[k]);
        assert_non_null(t);
        assert_int_equal(t->dtype, ST_I32);
        assert_int_equal(t->ndim, 2);
        assert_int_equal(t->shape[0], 2);
        assert_int_equal(t->shape[1], 16);
        const int32_t *ids = t->data;
        for (int i = 0; i < 32; i++) assert_true(ids[i] >= 0 && ids[i] < vocab);
    }
    const struct st_tensor *logits = st_find(f, "logits");
    assert_int_equal(logits->ndim, 3);
    assert_int_equal(logits->shape[2], vocab);
    assert_null(st_metadata(f, "format")); /* this file has no __metadata__ */
    st_close(f);
    json_free(config);
    free(text);
}

static void test_to_f32_converts_every_float_dtype(void **state)
{
    (void)state;
    char err[256];
    float out[6];
    /* f16: 1, -2.5, 65504 (largest), 2^-24 (smallest subnormal), inf, -0 */
    const uint16_t f16[6] = {0x3c00, 0xc100, 0x7bff, 0x0001, 0x7c00, 0x8000};
    struct st_tensor t = {.name = "h", .dtype = ST_F16, .ndim = 1, .shape = {6}, .data = f16, .nbytes = 12};
    assert_int_equal(st_to_f32(&t, out, err, sizeof err), 0);
    assert_true(out[0] == 1.0f && out[1] == -2.5f && out[2] == 65504.0f && out[3] == ldexpf(1.0f, -24));
    assert_true(isinf(out[4]) && out[4] > 0 && out[5] == 0.0f && signbit(out[5]));

    /* bf16: the top half of the fp32 pattern */
    const uint16_t bf16[3] = {0x3f80, 0xc020, 0x7f80};
    t = (struct st_tensor){.name = "b", .dtype = ST_BF16, .ndim = 1, .shape = {3}, .data = bf16, .nbytes = 6};
    assert_int_equal(st_to_f32(&t, out, err, sizeof err), 0);
    assert_true(out[0] == 1.0f && out[1] == -2.5f && isinf(out[2]));

    const double f64[2] = {0.1, -1e300};
    t = (struct st_tensor){.name = "d", .dtype = ST_F64, .ndim = 1, .shape = {2}, .data = f64, .nbytes = 16};
    assert_int_equal(st_to_f32(&t, out, err, sizeof err), 0);
    assert_true(out[0] == 0.1f && isinf(out[1]) && out[1] < 0);

    const float f32[2] = {3.25f, -0.0f};
    t = (struct st_tensor){.name = "f", .dtype = ST_F32, .ndim = 0, .data = f32, .nbytes = 4};
    out[1] = 7.0f;
    assert_int_equal(st_to_f32(&t, out, err, sizeof err), 0); /* scalar: one element */
    assert_true(out[0] == 3.25f && out[1] == 7.0f);

    const int32_t i32[1] = {5};
    t = (struct st_tensor){.name = "tokens", .dtype = ST_I32, .ndim = 1, .shape = {1}, .data = i32, .nbytes = 4};
    assert_int_equal(st_to_f32(&t, out, err, sizeof err), -1);
    assert_string_equal(err, "tensor \"tokens\" has dtype I32, not a floating-point type");
}

/* Several dtypes, a scalar, a zero-size tensor and eight dimensions, with metadata. */
static void test_write_then_read_is_bitwise_identical(void **state)
{
    (void)state;
    struct scratch s;
    scratch_make(&s);
    char path[256], err[512];
    scratch_path(&s, "rt.safetensors", path, sizeof path);
    float w[15];
    for (int i = 0; i < 15; i++) w[i] = (float)i * 0.37f - 2.0f;
    const uint16_t bf[7] = {0x3f80, 0x0001, 0xffff, 0x7f80, 0x8000, 0x1234, 0x4049};
    const int64_t ids[4] = {INT64_MIN, -1, 0, INT64_MAX};
    const uint8_t flag[1] = {1};
    const int32_t one[1] = {-7};
    const struct st_tensor in[] = {
        {.name = "z.weight", .dtype = ST_F32, .ndim = 2, .shape = {3, 5}, .data = w, .nbytes = sizeof w},
        {.name = "a.bf16", .dtype = ST_BF16, .ndim = 1, .shape = {7}, .data = bf, .nbytes = sizeof bf},
        {.name = "ids", .dtype = ST_I64, .ndim = 2, .shape = {2, 2}, .data = ids, .nbytes = sizeof ids},
        {.name = "empty", .dtype = ST_U8, .ndim = 2, .shape = {0, 4}, .data = NULL, .nbytes = 0},
        {.name = "flag", .dtype = ST_BOOL, .ndim = 0, .data = flag, .nbytes = 1},
        {.name = "deep \"quoted\" \xc3\xa9", .dtype = ST_I32, .ndim = 8, .shape = {1, 1, 1, 1, 1, 1, 1, 1},
         .data = one, .nbytes = 4},
    };
    const size_t n = sizeof(in) / sizeof(in[0]);
    const char *meta[] = {"format", "pt", "step", "10", NULL};
    if (st_write(path, in, n, meta, err, sizeof err)) fail_msg("%s", err);

    size_t len;
    char *raw = read_file(path, &len);
    assert_int_equal(header_len(raw) % 8, 0);
    assert_memory_equal(raw + 8, "{\"__metadata__\":{\"format\":\"pt\",\"step\":\"10\"},\"z.weight\":", 55);
    free(raw);

    struct st_file *f = st_open(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(st_count(f), n);
    for (size_t i = 0; i < n; i++) {
        const struct st_tensor *t = st_at(f, i);
        assert_string_equal(t->name, in[i].name); /* the given order */
        assert_int_equal(t->dtype, in[i].dtype);
        assert_int_equal(t->ndim, in[i].ndim);
        assert_memory_equal(t->shape, in[i].shape, sizeof(int64_t) * (size_t)in[i].ndim);
        assert_int_equal(t->nbytes, in[i].nbytes);
        if (t->nbytes) assert_memory_equal(t->data, in[i].data, t->nbytes);
        assert_int_equal((uintptr_t)t->data % st_dtype_size(t->dtype), 0);
    }
    assert_string_equal(st_metadata(f, "step"), "10");
    st_close(f);
    scratch_remove(&s, (const char *const[]){"rt.safetensors", NULL});
}

/* Writing the fixture's tensors back in its order reproduces the reference writer's file. */
static void test_write_reproduces_fixture_bytes(void **state)
{
    char path[4096], out[256], err[512];
    fixture_path(path, sizeof path, state, "gpt2_tiny/model.safetensors");
    struct st_file *f = st_open(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    struct scratch s;
    scratch_make(&s);
    scratch_path(&s, "copy.safetensors", out, sizeof out);
    struct st_tensor *ts = malloc(st_count(f) * sizeof(*ts));
    for (size_t i = 0; i < st_count(f); i++) ts[i] = *st_at(f, i);
    const char *meta[] = {"format", "pt", NULL};
    if (st_write(out, ts, st_count(f), meta, err, sizeof err)) fail_msg("%s", err);
    size_t a_len, b_len;
    char *a = read_file(path, &a_len), *b = read_file(out, &b_len);
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, a_len);
    free(a);
    free(b);
    free(ts);
    st_close(f);
    scratch_remove(&s, (const char *const[]){"copy.safetensors", NULL});
}

static void test_write_refuses_bad_input_and_leaves_no_file(void **state)
{
    (void)state;
    struct scratch s;
    scratch_make(&s);
    char path[256], err[512];
    scratch_path(&s, "bad.safetensors", path, sizeof path);
    const float x[4] = {0};
    struct st_tensor t[2] = {
        {.name = "a", .dtype = ST_F32, .ndim = 1, .shape = {4}, .data = x, .nbytes = 16},
        {.name = "a", .dtype = ST_F32, .ndim = 1, .shape = {4}, .data = x, .nbytes = 16},
    };
    assert_int_equal(st_write(path, t, 2, NULL, err, sizeof err), -1);
    assert_string_equal(err, "tensor name \"a\" given twice");
    t[1].name = "b";
    t[1].nbytes = 12;
    assert_int_equal(st_write(path, t, 2, NULL, err, sizeof err), -1);
    assert_string_equal(err, "tensor \"b\": 12 bytes of data do not match F32 with 4 elements");
    t[1].nbytes = 16;
    t[1].name = "__metadata__";
    assert_int_equal(st_write(path, t, 2, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "is reserved or not valid UTF-8"));
    t[1].name = "bad\xff";
    assert_int_equal(st_write(path, t, 2, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "is reserved or not valid UTF-8"));
    assert_int_not_equal(access(path, F_OK), 0);

    char missing[300];
    scratch_path(&s, "no/such/dir/x.safetensors", missing, sizeof missing);
    assert_int_equal(st_write(missing, t, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "x.safetensors.tmp: cannot write: No such file or directory"));

    /* A good write over an existing file replaces it and leaves no .tmp (rmdir checks). */
    assert_int_equal(st_write(path, t, 1, NULL, err, sizeof err), 0);
    assert_int_equal(st_write(path, t, 1, NULL, err, sizeof err), 0);
    scratch_remove(&s, (const char *const[]){"bad.safetensors", NULL});
}

/* A file in memory: the 8-byte length of header, the header, then data_len bytes. */
static char *make_file(const char *header, size_t data_len, size_t *len)
{
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    char *buf = calloc(1, *len);
    for (int i = 0; i < 8; i++) buf[i] = (char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    return buf;
}

static void expect_refused(const char *header, size_t data_len, const char *want)
{
    size_t len;
    char *buf = make_file(header, data_len, &len);
    char err[512];
    struct st_file *f = st_open_memory(buf, len, err, sizeof err);
    if (f) fail_msg("accepted %s", header);
    if (strcmp(err, want)) fail_msg("for %s:\n got  %s\n want %s", header, err, want);
    free(buf);
}

#define T(name, dtype, shape, b, e) "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void test_refuses_each_malformed_header_class(void **state)
{
    (void)state;
    const char *p = "<memory>: tensor \"a\": ";
    char want[512];
    expect_refused("[1]", 0, "<memory>: header is not a JSON object");
    expect_refused("{\"a\":1", 0, "<memory>: header is not valid JSON: unterminated object at byte 0 of the header");
    expect_refused("{\"a\":[]}", 0, "<memory>: tensor \"a\": entry is not an object");
    expect_refused("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                   "<memory>: tensor \"a\": \"dtype\" is missing or not a string");
    expect_refused("{" T("a", "F33", "[1]", 0, 4) "}", 4, "<memory>: tensor \"a\": unknown dtype \"F33\"");
    expect_refused("{" T("a", "F4", "[2]", 0, 1) "}", 1, "<memory>: tensor \"a\": unknown dtype \"F4\"");
    snprintf(want, sizeof want, "%sshape is not a list of non-negative integers", p);
    expect_refused("{" T("a", "F32", "[-1]", 0, 4) "}", 4, want);
    expect_refused("{" T("a", "F32", "[1.5]", 0, 4) "}", 4, want);
    expect_refused("{" T("a", "F32", "[\"1\"]", 0, 4) "}", 4, want);
    expect_refused("{" T("a", "F32", "1", 0, 4) "}", 4, "<memory>: tensor \"a\": \"shape\" is missing or not a list");
    expect_refused("{" T("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4,
                   "<memory>: tensor \"a\": shape has 9 dimensions, at most 8 are supported");
    snprintf(want, sizeof want, "%s\"data_offsets\" is not [begin, end] with 0 <= begin <= end", p);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, want);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4, want);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, want);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, want);
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, want);
    expect_refused("{" T("a", "F32", "[4]", 0, 12) "}", 12,
                   "<memory>: tensor \"a\": F32 with 4 elements needs 16 bytes but data_offsets [0, 12] hold 12");
    expect_refused("{" T("a", "F32", "[4]", 0, 16) "}", 12,
                   "<memory>: tensor \"a\": data_offsets end 16 is beyond the 12 bytes of data");
    expect_refused("{" T("a", "U8", "[4294967296,4294967296,2]", 0, 4) "}", 4,
                   "<memory>: tensor \"a\": shape overflows a 64-bit element count");
    expect_refused("{" T("a", "F64", "[2305843009213693952]", 0, 4) "}", 4,
                   "<memory>: tensor \"a\": shape overflows a 64-bit byte count");
    expect_refused("{\"__metadata__\":{\"k\":1}}", 0, "<memory>: \"__metadata__\" is not an object of strings");
    expect_refused("{\"__metadata__\":[]}", 0, "<memory>: \"__metadata__\" is not an object of strings");
    expect_refused("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "<memory>: \"__metadata__\" appears twice");
    expect_refused("{\"a\\u0000b\":{}}", 0, "<memory>: a tensor name contains a NUL byte");
    expect_refused("{\"a\\nb\":[]}", 0, "<memory>: tensor \"a\\nb\": entry is not an object");
}

static void test_refuses_gaps_overlaps_and_uncovered_data(void **state)
{
    (void)state;
    expect_refused("{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 12,
                   "<memory>: tensors \"a\" and \"b\" overlap in the data section");
    expect_refused("{" T("a", "F32", "[1]", 0, 4) "," T("b", "F32", "[1]", 8, 12) "}", 12,
                   "<memory>: bytes 4..8 before tensor \"b\" belong to no tensor (the data must be contiguous)");
    expect_refused("{" T("a", "F32", "[1]", 4, 8) "}", 8,
                   "<memory>: bytes 0..4 before tensor \"a\" belong to no tensor (the data must be contiguous)");
    expect_refused("{" T("a", "F32", "[1]", 0, 4) "}", 8,
                   "<memory>: the data section has 8 bytes but the tensors cover 4");
    expect_refused("{}", 1, "<memory>: the data section has 1 bytes but the tensors cover 0");
    /* Same offsets twice is an overlap; distinct offsets under one name is a duplicate. */
    expect_refused("{" T("a", "F32", "[1]", 0, 4) "," T("a", "F32", "[1]", 0, 4) "}", 4,
                   "<memory>: tensors \"a\" and \"a\" overlap in the data section");
    expect_refused("{" T("a", "F32", "[1]", 0, 4) "," T("a", "F32", "[1]", 4, 8) "}", 8,
                   "<memory>: tensor name \"a\" appears twice");
}

static void test_refuses_bad_lengths(void **state)
{
    (void)state;
    char err[512];
    char buf[16] = {0};
    assert_null(st_open_memory(buf, 5, err, sizeof err));
    assert_string_equal(err, "<memory>: file is 5 bytes, shorter than the 8-byte header length");
    buf[0] = 9; /* header of 9 bytes in a 16-byte file */
    assert_null(st_open_memory(buf, 16, err, sizeof err));
    assert_string_equal(err, "<memory>: header length 9 runs past the end of the 16-byte file");
    memset(buf, 0xff, 8);
    assert_null(st_open_memory(buf, 16, err, sizeof err));
    assert_string_equal(err, "<memory>: header length 18446744073709551615 is absurd (more than 100000000 bytes); "
                             "not a safetensors file?");
    uint64_t big = 100000001;
    for (int i = 0; i < 8; i++) buf[i] = (char)(big >> (8 * i));
    assert_null(st_open_memory(buf, 16, err, sizeof err));
    assert_non_null(strstr(err, "header length 100000001 is absurd"));
    size_t len;
    char *bad = make_file("{\"a\":\xff}", 0, &len);
    assert_null(st_open_memory(bad, len, err, sizeof err));
    assert_string_equal(err, "<memory>: header is not valid JSON: unexpected byte 0xff at byte 5 of the header");
    free(bad);
}

/* Errors from st_open name the file. */
static void test_open_errors_name_the_path(void **state)
{
    (void)state;
    char err[512], path[256];
    assert_null(st_open("/nonexistent/x.safetensors", err, sizeof err));
    assert_string_equal(err, "/nonexistent/x.safetensors: cannot open: No such file or directory");
    struct scratch s;
    scratch_make(&s);
    scratch_path(&s, "short.safetensors", path, sizeof path);
    FILE *fp = fopen(path, "wb");
    fwrite("abc", 1, 3, fp);
    fclose(fp);
    assert_null(st_open(path, err, sizeof err));
    char want[512];
    snprintf(want, sizeof want, "%s: file is 3 bytes, shorter than the 8-byte header length", path);
    assert_string_equal(err, want);
    assert_null(st_open(s.dir, err, sizeof err));
    snprintf(want, sizeof want, "%s: not a regular file", s.dir);
    assert_string_equal(err, want);
    scratch_remove(&s, (const char *const[]){"short.safetensors", NULL});
}

static void test_accepts_empty_files_and_zero_size_tensors(void **state)
{
    (void)state;
    char err[512];
    size_t len;
    char *buf = make_file("{}      ", 0, &len);
    struct st_file *f = st_open_memory(buf, len, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(st_count(f), 0);
    assert_null(st_find(f, "a"));
    assert_null(st_metadata(f, "format"));
    st_close(f);
    free(buf);
    buf = make_file("{\"__metadata__\":null," T("z", "F32", "[0]", 4, 4) "," T("a", "F32", "[1]", 0, 4) ","
                    T("e", "I8", "[3,0]", 4, 4) "}", 4, &len);
    f = st_open_memory(buf, len, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(st_count(f), 3);
    assert_string_equal(st_at(f, 0)->name, "a"); /* data order; ties keep header order */
    assert_string_equal(st_at(f, 1)->name, "z");
    assert_string_equal(st_at(f, 2)->name, "e");
    assert_int_equal(st_find(f, "e")->nbytes, 0);
    st_close(f);
    free(buf);
}

/* A header whose length is not a multiple of 8 leaves the data misaligned in the file; the
 * reader hands out aligned data anyway. */
static void test_misaligned_data_is_served_aligned(void **state)
{
    (void)state;
    char err[512];
    const char *header = "{" T("d", "F64", "[2]", 0, 16) "}"; /* 61 bytes */
    size_t len;
    char *buf = make_file(header, 16, &len);
    assert_int_not_equal((8 + strlen(header)) % 8, 0);
    const double want[2] = {1.5, -0.25};
    memcpy(buf + 8 + strlen(header), want, 16);
    struct st_file *f = st_open_memory(buf, len, err, sizeof err);
    if (!f) fail_msg("%s", err);
    const struct st_tensor *t = st_find(f, "d");
    assert_int_equal((uintptr_t)t->data % 8, 0);
    assert_true(((const double *)t->data)[0] == 1.5 && ((const double *)t->data)[1] == -0.25);
    float out[2];
    assert_int_equal(st_to_f32(t, out, err, sizeof err), 0);
    assert_true(out[0] == 1.5f && out[1] == -0.25f);
    st_close(f);
    free(buf);
}

static void test_dtype_names_and_sizes(void **state)
{
    (void)state;
    for (int d = 0; d < ST_NUM_DTYPES; d++) {
        const char *name = st_dtype_name((enum st_dtype)d);
        assert_int_equal(st_dtype_from_name(name, strlen(name)), d);
        assert_true(st_dtype_size((enum st_dtype)d) >= 1);
    }
    assert_int_equal(st_dtype_size(ST_BF16), 2);
    assert_int_equal(st_dtype_size(ST_I64), 8);
    assert_int_equal(st_dtype_from_name("F3", 2), -1);
    assert_int_equal(st_dtype_from_name("F32", 2), -1);
}

int main(int argc, char **argv)
{
    void *fixtures = argc > 1 ? argv[1] : "../shared/fixtures";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_opens_gpt2_fixture_with_known_tensors, fixtures),
        cmocka_unit_test_prestate(test_reference_tokens_are_int32_within_vocab, fixtures),
        cmocka_unit_test(test_to_f32_converts_every_float_dtype),
        cmocka_unit_test(test_write_then_read_is_bitwise_identical),
        cmocka_unit_test_prestate(test_write_reproduces_fixture_bytes, fixtures),
        cmocka_unit_test(test_write_refuses_bad_input_and_leaves_no_file),
        cmocka_unit_test(test_refuses_each_malformed_header_class),
        cmocka_unit_test(test_refuses_gaps_overlaps_and_uncovered_data),
        cmocka_unit_test(test_refuses_bad_lengths),
        cmocka_unit_test(test_open_errors_name_the_path),
        cmocka_unit_test(test_accepts_empty_files_and_zero_size_tensors),
        cmocka_unit_test(test_misaligned_data_is_served_aligned),
        cmocka_unit_test(test_dtype_names_and_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
