/* Unit tests for util/tensorboard: CRC-32C against RFC 3720's vectors, one scalar event against
 * bytes worked out by hand from the protocol-buffer rules, and a written file read back record by
 * record (each length and payload checked against its masked CRC) by a decoder of its own.
 *   test_tensorboard FIXTURES          the tests
 *   test_tensorboard --dump FILE       prints "step<TAB>tag<TAB>value" for each scalar of an event
 *                                      file (tests/cli/tensorboard.sh compares them with a run's log) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/tensorboard.h"

static void test_crc32c_matches_rfc3720(void **state)
{
    (void)state;
    uint8_t zeros[32] = {0}, ones[32], up[32];
    for (int i = 0; i < 32; i++) ones[i] = 0xFF, up[i] = (uint8_t)i;
    assert_int_equal(tb_crc32c(zeros, 32), 0x8A9136AAu);
    assert_int_equal(tb_crc32c(ones, 32), 0x62A8AB43u);
    assert_int_equal(tb_crc32c(up, 32), 0x46DD794Eu);
    assert_int_equal(tb_crc32c("123456789", 9), 0xE3069283u);
    uint32_t c = tb_crc32c("123456789", 9);
    assert_int_equal(tb_masked_crc32c("123456789", 9), ((c >> 15) | (c << 17)) + 0xA282EAD8u);
}

/* Event { wall_time = 1.5 (field 1, fixed64), step = 300 (field 2, varint AC 02), summary (field 5)
 * { value (field 1) { tag = "a" (field 1), simple_value = 2.0f (field 2, fixed32) } } } */
static void test_scalar_event_bytes(void **state)
{
    (void)state;
    const uint8_t want[] = {0x09, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F, 0x10, 0xAC, 0x02, 0x2A, 0x0A, 0x0A, 0x08,
                            0x0A, 0x01, 'a', 0x15, 0x00, 0x00, 0x00, 0x40};
    uint8_t got[64];
    size_t n = tb_scalar_event(got, sizeof got, 1.5, 300, "a", 2.0f);
    assert_int_equal(n, sizeof want);
    assert_memory_equal(got, want, sizeof want);
    assert_int_equal(tb_scalar_event(got, 10, 1.5, 300, "a", 2.0f), 0); /* too small: nothing */
    /* step 0 is left out, as proto3 leaves out zeros */
    n = tb_scalar_event(got, sizeof got, 1.5, 0, "a", 2.0f);
    assert_int_equal(n, sizeof want - 3);
    assert_int_equal(got[9], 0x2A);
}

/* ---- a decoder for the tests: records, then the few Event fields the writer uses ---- */

static uint64_t varint(const uint8_t *p, size_t n, size_t *at)
{
    uint64_t v = 0;
    for (int shift = 0; *at < n && shift < 64; shift += 7) {
        uint8_t b = p[(*at)++];
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return v;
    }
    fail_msg("a varint runs past its message");
    return 0;
}

struct scalar {
    int64_t step;
    char tag[128];
    float value;
    char version[32];
};

/* Event bytes -> step, and the tag and value of its one Value, or its file_version. */
static void decode_event(const uint8_t *p, size_t n, struct scalar *s)
{
    memset(s, 0, sizeof *s);
    size_t at = 0;
    while (at < n) {
        uint64_t key = varint(p, n, &at);
        if (key == (1 << 3 | 1)) { at += 8; continue; } /* wall_time */
        if (key == (2 << 3 | 0)) { s->step = (int64_t)varint(p, n, &at); continue; }
        uint64_t len = varint(p, n, &at);
        if (at + len > n) fail_msg("a field runs past its event");
        if (key == (3 << 3 | 2)) {
            memcpy(s->version, p + at, len < 31 ? len : 31);
        } else if (key == (5 << 3 | 2)) { /* Summary { Value value = 1 } */
            size_t sa = at, se = at + len;
            if (varint(p, se, &sa) != (1 << 3 | 2)) fail_msg("a summary without a value");
            size_t vl = varint(p, se, &sa), va = sa, ve = sa + vl;
            while (va < ve) {
                uint64_t k = varint(p, ve, &va);
                if (k == (1 << 3 | 2)) {
                    size_t tl = varint(p, ve, &va);
                    memcpy(s->tag, p + va, tl < 127 ? tl : 127);
                    va += tl;
                } else if (k == (2 << 3 | 5)) {
                    memcpy(&s->value, p + va, 4);
                    va += 4;
                } else {
                    fail_msg("an unexpected field %llu in a value", (unsigned long long)k);
                }
            }
        } else {
            fail_msg("an unexpected field %llu in an event", (unsigned long long)key);
        }
        at += len;
    }
}

/* Reads every record of path, checking both CRCs; returns the events decoded (malloc'd). */
static struct scalar *read_events(const char *path, int *count)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    struct scalar *out = NULL;
    int n = 0;
    uint64_t len;
    while (fread(&len, 8, 1, f) == 1) {
        uint32_t len_crc, data_crc;
        if (fread(&len_crc, 4, 1, f) != 1 || len_crc != tb_masked_crc32c(&len, 8)) fail_msg("record %d: length CRC", n);
        if (len > 4096) fail_msg("record %d: length %llu", n, (unsigned long long)len);
        uint8_t buf[4096];
        if (fread(buf, 1, len, f) != len || fread(&data_crc, 4, 1, f) != 1) fail_msg("record %d: cut short", n);
        if (data_crc != tb_masked_crc32c(buf, len)) fail_msg("record %d: data CRC", n);
        out = realloc(out, (size_t)(n + 1) * sizeof *out);
        decode_event(buf, len, &out[n++]);
    }
    fclose(f);
    *count = n;
    return out;
}

static void test_file_reads_back(void **state)
{
    (void)state;
    char dir[] = "/tmp/tb_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[64], err[256];
    snprintf(sub, sizeof sub, "%s/a/b", dir); /* created */
    struct tb_writer *w = tb_open(sub, 2, err, sizeof err);
    assert_non_null(w);
    tb_scalar(w, "lm loss", 6.5, 1);
    tb_scalar(w, "lm loss vs samples", 6.5, 8);
    tb_scalar(w, "grad-norm", 1.25e-3, 2);
    tb_close(w);
    char cmd[128], path[512] = "";
    snprintf(cmd, sizeof cmd, "ls %s/events.out.tfevents.*", sub);
    FILE *ls = popen(cmd, "r");
    assert_non_null(fgets(path, sizeof path, ls));
    pclose(ls);
    path[strcspn(path, "\n")] = 0;
    int n;
    struct scalar *e = read_events(path, &n);
    assert_int_equal(n, 4);
    assert_string_equal(e[0].version, "brain.Event:2");
    assert_string_equal(e[1].tag, "lm loss");
    assert_true(e[1].step == 1 && e[1].value == 6.5f);
    assert_true(strcmp(e[2].tag, "lm loss vs samples") == 0 && e[2].step == 8);
    assert_true(strcmp(e[3].tag, "grad-norm") == 0 && e[3].step == 2 && e[3].value == 1.25e-3f);
    free(e);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    /* a directory that cannot be made: NULL and why */
    assert_null(tb_open("/proc/no/such/dir", 1, err, sizeof err));
    assert_non_null(strstr(err, "cannot create /proc/no"));
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--dump") == 0) {
        int n;
        struct scalar *e = read_events(argv[2], &n);
        for (int i = 0; i < n; i++)
            if (e[i].tag[0]) printf("%lld\t%s\t%.9g\n", (long long)e[i].step, e[i].tag, (double)e[i].value);
        free(e);
        return 0;
    }
    (void)argc, (void)argv;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_matches_rfc3720),
        cmocka_unit_test(test_scalar_event_bytes),
        cmocka_unit_test(test_file_reads_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
