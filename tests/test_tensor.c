/* Tests of tensor views and the exact bf16/fp16 conversions of kernels/tensor.h: round to nearest
 * even at ties, NaN and infinity, fp16 subnormals and overflow, checked against gcc's own
 * _Float16 conversion over a large sample of fp32 bit patterns and over every half value. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "kernels/tensor.h"

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* gcc's conversion (libgcc's soft-fp, or F16C where enabled): IEEE round to nearest even. */
static uint16_t gcc_f32_to_f16(float f)
{
    _Float16 h = (_Float16)f;
    uint16_t b;
    memcpy(&b, &h, 2);
    return b;
}

static float gcc_f16_to_f32(uint16_t b)
{
    _Float16 h;
    memcpy(&h, &b, 2);
    return (float)h;
}

static bool f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
static bool bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }

/* ---- tensor views ---- */

static void test_tensor_views_report_shape_and_size(void **state)
{
    (void)state;
    float buf[24];
    int64_t shape[3] = {2, 3, 4};
    struct tensor t = tensor_make(buf, DT_F32, DEV_CPU, 3, shape);
    assert_int_equal(tensor_numel(t), 24);
    assert_int_equal(tensor_bytes(t), 96);
    assert_int_equal(t.shape[3], 0);
    assert_true(tensor_present(t));
    assert_false(tensor_present(tensor_none()));
    struct tensor h = tensor_2d(buf, DT_BF16, DEV_CPU, 4, 6);
    assert_int_equal(tensor_bytes(h), 48);
    assert_int_equal(dtype_size(DT_I64), 8);
    assert_int_equal(dtype_size(DT_U8), 1);
    assert_string_equal(dtype_name(DT_F16), "float16");
}

/* ---- bf16 ---- */

static void test_bf16_rounds_to_nearest_even_at_ties(void **state)
{
    (void)state;
    /* 1 + 2^-8 lies halfway between bf16 1.0 (0x3f80, even) and 1 + 2^-7 (0x3f81) */
    assert_int_equal(f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);
    assert_int_equal(f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);
    assert_int_equal(f32_to_bf16(from_bits(0x3f807fffu)), 0x3f80);
    /* halfway between 0x3f81 (odd) and 0x3f82: up to the even one */
    assert_int_equal(f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);
    assert_int_equal(f32_to_bf16(from_bits(0xbf818000u)), 0xbf82);
    /* the carry runs into the exponent: 2 - 2^-8 rounds to 2.0 */
    assert_int_equal(f32_to_bf16(from_bits(0x3fffc000u)), 0x4000);
    assert_true(bf16_to_f32(0x3f81) == 1.0f + 1.0f / 128.0f);
}

static void test_bf16_keeps_nan_and_infinity_and_overflows_to_infinity(void **state)
{
    (void)state;
    assert_int_equal(f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(f32_to_bf16(-INFINITY), 0xff80);
    /* a NaN whose payload sits in the low 16 bits must not truncate to infinity */
    assert_true(bf16_is_nan(f32_to_bf16(from_bits(0x7f800001u))));
    assert_true(bf16_is_nan(f32_to_bf16(from_bits(0xffc00000u))));
    assert_true(f32_to_bf16(from_bits(0xff800001u)) & 0x8000u);
    assert_true(isnan(bf16_to_f32(f32_to_bf16(NAN))));
    /* the largest float is past the largest bf16 by more than half a step */
    assert_int_equal(f32_to_bf16(from_bits(0x7f7fffffu)), 0x7f80);
    assert_int_equal(f32_to_bf16(from_bits(0x7f7f7fffu)), 0x7f7f);
    assert_int_equal(f32_to_bf16(-0.0f), 0x8000);
}

/* The value of a bf16 as if the exponent range went on: infinity stands for 2^128, which is how
 * IEEE rounding decides overflow. */
static double bf16_unbounded(uint16_t h)
{
    if ((h & 0x7fffu) == 0x7f80u) return (h & 0x8000u) ? -0x1p128 : 0x1p128;
    return bf16_to_f32(h);
}

/* Against a reference that picks the nearer of the two bf16 neighbours in double, ties to the
 * even one, for every 97th fp32 bit pattern (all exponents, both signs). */
static void test_bf16_matches_nearest_even_reference_over_sampled_floats(void **state)
{
    (void)state;
    for (uint64_t u = 0; u <= 0xffffffffu; u += 97) {
        float f = from_bits((uint32_t)u);
        uint16_t got = f32_to_bf16(f);
        if (isnan(f)) {
            assert_true(bf16_is_nan(got));
            continue;
        }
        uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1); /* neighbours by magnitude */
        if (isinf(f)) {
            assert_int_equal(got, lo);
            continue;
        }
        double dlo = fabs((double)f - bf16_unbounded(lo)), dhi = fabs((double)f - bf16_unbounded(hi));
        uint16_t want = dlo < dhi ? lo : dhi < dlo ? hi : (lo & 1u) ? hi : lo;
        if (got != want) fail_msg("f32 0x%08x: bf16 0x%04x, want 0x%04x", (unsigned)u, got, want);
    }
}

/* ---- fp16 ---- */

static void test_f16_rounds_to_nearest_even_at_ties(void **state)
{
    (void)state;
    /* 1 + 2^-11 lies halfway between 1.0 (0x3c00) and 1 + 2^-10 (0x3c01) */
    assert_int_equal(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    assert_int_equal(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(f32_to_f16(-(1.0f + 3 * 0x1p-11f)), 0xbc02);
    /* carry into the exponent: 2 - 2^-11 rounds to 2.0 */
    assert_int_equal(f32_to_f16(2.0f - 0x1p-11f), 0x4000);
}

static void test_f16_subnormals_round_to_nearest_even(void **state)
{
    (void)state;
    assert_int_equal(f32_to_f16(0x1p-24f), 0x0001);            /* smallest subnormal */
    assert_true(f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(f16_to_f32(0x03ff) == 1023 * 0x1p-24f);       /* largest subnormal */
    assert_int_equal(f32_to_f16(0x1p-25f), 0x0000);            /* half of it: tie to even zero */
    assert_int_equal(f32_to_f16(0x1.000002p-25f), 0x0001);     /* just past the tie */
    assert_int_equal(f32_to_f16(3 * 0x1p-25f), 0x0002);        /* 1.5 steps: tie to even 2 */
    assert_int_equal(f32_to_f16(5 * 0x1p-25f), 0x0002);        /* 2.5 steps: tie to even 2 */
    assert_int_equal(f32_to_f16(1023.5f * 0x1p-24f), 0x0400);  /* rounds up to the smallest normal */
    assert_int_equal(f32_to_f16(0x1p-14f), 0x0400);
    assert_int_equal(f32_to_f16(-0x1p-24f), 0x8001);
    assert_int_equal(f32_to_f16(1e-10f), 0x0000);
    assert_int_equal(f32_to_f16(-1e-10f), 0x8000);
    assert_int_equal(f32_to_f16(from_bits(0x00000001u)), 0x0000); /* fp32 subnormal */
    assert_int_equal(f32_to_f16(-0.0f), 0x8000);
}

static void test_f16_overflows_to_infinity_and_keeps_nan(void **state)
{
    (void)state;
    assert_int_equal(f32_to_f16(65504.0f), 0x7bff);                  /* largest half */
    assert_int_equal(f32_to_f16(65519.996f), 0x7bff);                /* below the tie at 65520 */
    assert_int_equal(f32_to_f16(65520.0f), 0x7c00);                  /* tie goes to even: infinity */
    assert_int_equal(f32_to_f16(1e6f), 0x7c00);
    assert_int_equal(f32_to_f16(-1e6f), 0xfc00);
    assert_int_equal(f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(f32_to_f16(-INFINITY), 0xfc00);
    assert_true(isinf(f16_to_f32(0x7c00)) && f16_to_f32(0xfc00) < 0);
    assert_true(f16_is_nan(f32_to_f16(NAN)));
    assert_true(f16_is_nan(f32_to_f16(from_bits(0x7f800001u)))); /* payload only in low bits */
    assert_true(f32_to_f16(from_bits(0xffc00000u)) & 0x8000u);
    assert_true(isnan(f16_to_f32(0x7e00)) && isnan(f16_to_f32(0x7c01)));
}

/* Whether f32_to_f16 agrees with gcc on one fp32 bit pattern; NaNs need only stay NaN with their
 * sign (payloads may differ). */
static bool f16_agrees_with_gcc(uint32_t u)
{
    float f = from_bits(u);
    uint16_t got = f32_to_f16(f), want = gcc_f32_to_f16(f);
    if (isnan(f)) return f16_is_nan(got) && f16_is_nan(want) && (got & 0x8000u) == (want & 0x8000u);
    return got == want;
}

/* Against gcc's _Float16 conversion for every 97th fp32 bit pattern: ~44 million values covering
 * every exponent, sign and rounding case. gcc converts in software (libgcc), so the sample is
 * split over threads; the first disagreement is reported. */
static void test_f16_matches_gcc_float16_over_every_97th_bit_pattern(void **state)
{
    (void)state;
    const int64_t step = 97, count = (int64_t)(0xffffffffu / step) + 1;
    int64_t first_bad = count;
#pragma omp parallel for schedule(static) reduction(min : first_bad)
    for (int64_t i = 0; i < count; i++)
        if (i < first_bad && !f16_agrees_with_gcc((uint32_t)(i * step))) first_bad = i;
    if (first_bad < count) {
        uint32_t u = (uint32_t)(first_bad * step);
        fail_msg("f32 0x%08x: f16 0x%04x, gcc says 0x%04x", (unsigned)u, f32_to_f16(from_bits(u)),
                 gcc_f32_to_f16(from_bits(u)));
    }
}

/* Every half value widens exactly (as gcc does) and narrows back to itself. */
static void test_f16_round_trips_all_65536_half_values(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        if (f16_is_nan((uint16_t)h)) {
            assert_true(isnan(f));
            assert_true(f16_is_nan(f32_to_f16(f)));
            continue;
        }
        float g = gcc_f16_to_f32((uint16_t)h);
        if (bits_of(f) != bits_of(g)) fail_msg("f16 0x%04x widens to %a, gcc says %a", h, f, g);
        if (f32_to_f16(f) != h) fail_msg("f16 0x%04x does not round trip", h);
    }
}

static void test_round_to_dtype_stores_the_nearest_representable_value(void **state)
{
    (void)state;
    float x[4] = {1.0f + 0x1p-11f + 0x1p-20f, 1.0f + 0x1p-8f, 70000.0f, -0x1p-25f};
    float b[4], h[4], f[4];
    memcpy(b, x, sizeof x), memcpy(h, x, sizeof x), memcpy(f, x, sizeof x);
    round_to_dtype(b, 4, DT_BF16);
    round_to_dtype(h, 4, DT_F16);
    round_to_dtype(f, 4, DT_F32);
    for (int i = 0; i < 4; i++) {
        assert_true(bits_of(b[i]) == bits_of(bf16_to_f32(f32_to_bf16(x[i]))));
        assert_true(bits_of(h[i]) == bits_of(f16_to_f32(f32_to_f16(x[i]))));
    }
    assert_memory_equal(f, x, sizeof x);
    assert_true(h[0] == 1.0f + 0x1p-10f && isinf(h[2]) && h[3] == 0.0f && signbit(h[3]));
    assert_true(b[1] == 1.0f && b[2] == 70144.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_views_report_shape_and_size),
        cmocka_unit_test(test_bf16_rounds_to_nearest_even_at_ties),
        cmocka_unit_test(test_bf16_keeps_nan_and_infinity_and_overflows_to_infinity),
        cmocka_unit_test(test_bf16_matches_nearest_even_reference_over_sampled_floats),
        cmocka_unit_test(test_f16_rounds_to_nearest_even_at_ties),
        cmocka_unit_test(test_f16_subnormals_round_to_nearest_even),
        cmocka_unit_test(test_f16_overflows_to_infinity_and_keeps_nan),
        cmocka_unit_test(test_f16_matches_gcc_float16_over_every_97th_bit_pattern),
        cmocka_unit_test(test_f16_round_trips_all_65536_half_values),
        cmocka_unit_test(test_round_to_dtype_stores_the_nearest_representable_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
