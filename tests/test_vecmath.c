/*
 * test_vecmath.c - the vectorized kernels (src/vecmath.c): crl_log_array
 * within 2 ulp of glibc's log over the whole positive normal range and at
 * its edges, the same bits for an element whether a vector body or a scalar
 * tail computes it, or crl_log inlined here (built without SIMD clones);
 * crl_logf_array within its bound of 1 float ulp (vecmath.h) on a sweep of
 * the positive normal floats and at the worst input of the exhaustive
 * measurement, with the same bit-for-bit agreements; and the fixed order of
 * crl_sum_fixed and crl_sum_fixed_f32.
 */
#include "harness.h"

#include "vecmath.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t bits_of(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static double from_bits(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Distance in units in the last place: doubles ordered as integers. */
static int64_t ulp_distance(double a, double b)
{
    int64_t ia = (int64_t) bits_of(a), ib = (int64_t) bits_of(b);
    if (ia < 0)
        ia = INT64_MIN - ia;
    if (ib < 0)
        ib = INT64_MIN - ib;
    return ia > ib ? ia - ib : ib - ia;
}

/* A positive normal double with a uniformly random exponent and mantissa. */
static double random_normal(uint64_t *s)
{
    uint64_t exponent = 1 + h_rand(s) % 2046;
    return from_bits(exponent << 52 | (h_rand(s) & 0x000fffffffffffffULL));
}

/* Largest ulp distance of crl_log_array from log over x[0 .. n-1]; reports
 * the worst input. */
static int64_t worst_ulp(const double *x, int64_t n)
{
    double *y = malloc(sizeof *y * (size_t) n);
    assert_non_null(y);
    crl_log_array(x, y, n);
    int64_t worst = 0;
    double at = 1;
    for (int64_t k = 0; k < n; k++) {
        int64_t d = ulp_distance(y[k], log(x[k]));
        if (d > worst) {
            worst = d;
            at = x[k];
        }
    }
    if (worst > 2)
        fprintf(stderr, "log(%a): %lld ulp from glibc\n", at, (long long) worst);
    free(y);
    return worst;
}

static void test_log_random_over_the_exponent_range(void **state)
{
    (void) state;
    enum { COUNT = 1 << 20 };
    double *x = malloc(sizeof *x * COUNT);
    assert_non_null(x);
    uint64_t s = 7;
    for (int k = 0; k < COUNT; k++)
        x[k] = random_normal(&s);
    assert_true(worst_ulp(x, COUNT) <= 2);
    /* Near 1, where log is small and cancellation would show. */
    for (int k = 0; k < COUNT; k++)
        x[k] = k % 2 ? h_uniform(&s, 0.5, 2.0) : 1 + ldexp(h_uniform(&s, -1, 1), -(int) (k % 60));
    assert_true(worst_ulp(x, COUNT) <= 2);
    free(x);
}

static void test_log_edge_values(void **state)
{
    (void) state;
    double x[2800];
    int n = 0;
    const double edges[] = {
        DBL_MIN, nextafter(DBL_MIN, 1), DBL_MAX, nextafter(DBL_MAX, 0), 1.0,
        nextafter(1, 0), nextafter(1, 2), nextafter(nextafter(1, 2), 2), M_E, 10, 0.1,
        M_SQRT2, nextafter(M_SQRT2, 0), nextafter(M_SQRT2, 2), M_SQRT1_2,
        nextafter(M_SQRT1_2, 0), nextafter(M_SQRT1_2, 2), 1e-300, 1e300, 1e-8, 1 + 1e-8,
    };
    for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++)
        x[n++] = edges[k];
    /* Every power of two, and its neighbours. */
    for (int e = -1022; e <= 1023; e++)
        x[n++] = ldexp(1, e);
    for (int e = -1022; e <= 1023; e += 7) {
        x[n++] = nextafter(ldexp(1, e), 0);
        x[n++] = nextafter(ldexp(1, e), INFINITY);
    }
    assert_true(n <= (int) (sizeof x / sizeof x[0]));
    assert_true(worst_ulp(x, n) <= 2);
    double y[3];
    crl_log_array((const double[]){1.0, 2.0, 0.5}, y, 3);
    assert_true(bits_of(y[0]) == bits_of(0.0)); /* +0, as glibc */
    assert_true(y[1] == log(2.0) && y[2] == -log(2.0));
}

/* Each value placed at every offset of arrays of every short length (vector
 * bodies of 4 and 2 lanes, scalar tails) and of a long one gives the bits of
 * a one-element call, which only a scalar path can compute. */
static void test_log_vector_and_tail_agree(void **state)
{
    (void) state;
    enum { LEN = 40 };
    double x[LEN + 1], y[LEN + 1];
    uint64_t s = 11;
    for (int v = 0; v < 400; v++) {
        double value = v % 4 ? random_normal(&s) : h_uniform(&s, 1e-8, 1.0);
        double alone;
        crl_log_array(&value, &alone, 1);
        for (int k = 0; k <= LEN; k++)
            x[k] = random_normal(&s);
        for (int len = 1; len <= LEN; len += len < 12 ? 1 : 9)
            for (int start = 0; start < 2; start++)
                for (int at = 0; at < len; at++) {
                    double saved = x[start + at];
                    x[start + at] = value;
                    crl_log_array(x + start, y + start, len);
                    x[start + at] = saved;
                    if (bits_of(y[start + at]) != bits_of(alone))
                        fail_msg("log(%a) at %d of %d (start %d): %a vs %a", value, at, len, start,
                                 y[start + at], alone);
                }
    }
}

/* crl_log inlined into this file, which is built for the baseline target
 * (its fma() a libm call where the machine lacks FMA), gives the bits of the
 * library's vectorized clone: the terms may call either. */
static void test_log_inline_matches_the_array(void **state)
{
    (void) state;
    enum { COUNT = 1 << 16 };
    double *x = malloc(sizeof *x * COUNT), *y = malloc(sizeof *y * COUNT);
    assert_non_null(x);
    assert_non_null(y);
    uint64_t s = 17;
    for (int k = 0; k < COUNT; k++)
        x[k] = k % 2 ? random_normal(&s) : h_uniform(&s, 1e-9, 2.0);
    crl_log_array(x, y, COUNT);
    for (int k = 0; k < COUNT; k++)
        if (bits_of(crl_log(x[k])) != bits_of(y[k]))
            fail_msg("log(%a): inline %a, array %a", x[k], crl_log(x[k]), y[k]);
    free(x);
    free(y);
}

static float float_from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static uint32_t float_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* Error of y as an approximation of r (glibc's double log, within 2^-29 of
 * a float ulp of the exact value), in float ulps of r: 2^(e - 23) for
 * |r| in [2^e, 2^(e+1)).  The measure of vecmath.h's analysis. */
static double float_ulps(float y, double r)
{
    int e;
    frexp(fabs(r), &e);
    return r == 0 ? (y == 0 ? 0 : INFINITY) : fabs((double) y - r) / ldexp(1.0, e - 24);
}

/* Largest float-ulp error of crl_logf_array over x[0 .. n-1]; reports the
 * worst input when it is 1 ulp or more. */
static double worst_float_ulps(const float *x, int64_t n)
{
    float *y = malloc(sizeof *y * (size_t) n);
    assert_non_null(y);
    crl_logf_array(x, y, n);
    double worst = 0;
    float at = 1;
    for (int64_t k = 0; k < n; k++) {
        double d = float_ulps(y[k], log((double) x[k]));
        if (!(d <= worst)) {
            worst = d;
            at = x[k];
        }
    }
    if (!(worst < 1))
        fprintf(stderr, "logf(%a) = %a: %.3f ulp\n", (double) at,
                (double) crl_logf(at), worst);
    free(y);
    return worst;
}

/* Every 61st positive normal float (35 million, every binade, mantissas
 * spread by the odd stride), then the edges and the neighbours of the worst
 * input of the exhaustive run: all within 1 ulp. */
static void test_logf_within_one_ulp(void **state)
{
    (void) state;
    enum { CHUNK = 1 << 16, STRIDE = 61 };
    float *x = malloc(sizeof *x * CHUNK);
    assert_non_null(x);
    double worst = 0;
    uint32_t u = 0x00800000U;
    while (u < 0x7f800000U) {
        int n = 0;
        for (; n < CHUNK && u < 0x7f800000U; n++, u += STRIDE)
            x[n] = float_from_bits(u);
        double w = worst_float_ulps(x, n);
        worst = w > worst ? w : worst;
    }
    assert_true(worst < 1);
    /* It is a real bound, not slack: the sweep comes near it. */
    assert_true(worst > 0.8);
    int n = 0;
    const float edges[] = {FLT_MIN, FLT_MAX, 1.0f, 0x1.8f7178p+0f, 2.0f, 0.5f, 1e-8f,
                           (float) M_SQRT2, (float) M_SQRT1_2, (float) M_E};
    for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++)
        for (int d = -64; d <= 64; d++) {
            uint32_t b = float_bits(edges[k]) + (uint32_t) d;
            if (b >= 0x00800000U && b < 0x7f800000U)
                x[n++] = float_from_bits(b);
        }
    for (int e = -126; e <= 127; e++)
        x[n++] = ldexpf(1, e);
    assert_true(worst_float_ulps(x, n) < 1);
    float one;
    crl_logf_array((const float[]){1.0f}, &one, 1);
    assert_true(float_bits(one) == 0); /* +0 */
    free(x);
}

/* As for crl_log: a value gives the same bits at every offset of arrays of
 * every short length (vector bodies of 16, 8 and 4 lanes, scalar tails), and
 * crl_logf inlined here, built for the baseline target, those of the clone. */
static void test_logf_vector_tail_and_inline_agree(void **state)
{
    (void) state;
    enum { LEN = 70, COUNT = 1 << 16 };
    float x[LEN + 1], y[LEN + 1];
    uint64_t s = 19;
    for (int v = 0; v < 200; v++) {
        float value = v % 4 ? (float) ldexp(h_uniform(&s, 1, 2), (int) (h_rand(&s) % 252) - 126)
                            : (float) h_uniform(&s, 1e-8, 2.0);
        float alone;
        crl_logf_array(&value, &alone, 1);
        for (int k = 0; k <= LEN; k++)
            x[k] = (float) h_uniform(&s, 1e-8, 4.0);
        for (int len = 1; len <= LEN; len += len < 20 ? 1 : 13)
            for (int start = 0; start < 2; start++)
                for (int at = 0; at < len; at++) {
                    float saved = x[start + at];
                    x[start + at] = value;
                    crl_logf_array(x + start, y + start, len);
                    x[start + at] = saved;
                    if (float_bits(y[start + at]) != float_bits(alone))
                        fail_msg("logf(%a) at %d of %d (start %d): %a vs %a", (double) value,
                                 at, len, start, (double) y[start + at], (double) alone);
                }
    }
    float *a = malloc(sizeof *a * COUNT), *b = malloc(sizeof *b * COUNT);
    assert_non_null(a);
    assert_non_null(b);
    for (int k = 0; k < COUNT; k++)
        a[k] = k % 2 ? float_from_bits(0x00800000U + (uint32_t) (h_rand(&s) % 0x7effffffU))
                     : (float) h_uniform(&s, 1e-9, 2.0);
    crl_logf_array(a, b, COUNT);
    for (int k = 0; k < COUNT; k++)
        if (float_bits(crl_logf(a[k])) != float_bits(b[k]))
            fail_msg("logf(%a): inline %a, array %a", (double) a[k], (double) crl_logf(a[k]),
                     (double) b[k]);
    free(a);
    free(b);
}

/* The orders of crl_sum_fixed (8 lanes) and crl_sum_fixed_f32 (16), spelled
 * out: lane k mod lanes, combined pairwise. */
static double sum_reference(const double *x, int64_t n, int lanes)
{
    double lane[16] = {0};
    for (int64_t k = 0; k < n; k++)
        lane[k % lanes] += x[k];
    double pair[8];
    for (int j = 0; j < 8; j++)
        pair[j] = lane[2 * j] + lane[2 * j + 1];
    if (lanes == 16)
        for (int j = 0; j < 4; j++)
            pair[j] = pair[2 * j] + pair[2 * j + 1];
    return (pair[0] + pair[1]) + (pair[2] + pair[3]);
}

static void test_fixed_order_sums(void **state)
{
    (void) state;
    enum { LEN = 100 };
    double buf[LEN + 3], widened[LEN + 3];
    float narrow[LEN + 3];
    uint64_t s = 13;
    for (int k = 0; k < LEN + 3; k++) {
        /* wide magnitudes, so that a different order gives different bits */
        buf[k] = ldexp(h_uniform(&s, -1, 1), (int) (h_rand(&s) % 60));
        narrow[k] = (float) buf[k];
        widened[k] = (double) narrow[k];
    }
    for (int64_t n = 0; n <= LEN; n++)
        for (int start = 0; start < 3; start++) {
            const double *x = buf + start;
            assert_true(bits_of(crl_sum_fixed(x, n)) == bits_of(sum_reference(x, n, 8)));
            assert_true(bits_of(crl_sum_fixed_f32(narrow + start, n))
                        == bits_of(sum_reference(widened + start, n, 16)));
        }
}

/* crl_row_peak_f32: the largest value >= +0 of a finite row, below it
 * every negative value and -0.0f; a value <= 0 when the row has none. */
static void test_row_peak(void **state)
{
    (void) state;
    const float mixed[] = {0.25f, -3.0f, 7.5f, -0.0f, 7.25f, 1e-30f, 0.0f};
    assert_true(crl_row_peak_f32(mixed, 7) == 7.5);
    assert_true(crl_row_peak_f32(mixed + 3, 4) == 7.25);
    const float negative[] = {-1.0f, -0.0f, -FLT_MAX};
    assert_true(crl_row_peak_f32(negative, 3) <= 0);
    const float subnormal[] = {-2.0f, 0x1p-140f, 0.0f};
    assert_true(crl_row_peak_f32(subnormal, 3) == 0x1p-140);
    assert_true(crl_row_peak_f32(mixed, 0) <= 0);
    /* every position, for the vector body and tail */
    float row[100];
    for (int at = 0; at < 100; at++) {
        for (int k = 0; k < 100; k++)
            row[k] = (float) (k % 7) * 0.125f - (k % 3 == 0 ? 1.0f : 0.0f);
        row[at] = 9.0f;
        assert_true(crl_row_peak_f32(row, 100) == 9.0);
        assert_true(crl_row_peak_f32(row, at) < 9.0);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_peak),
        cmocka_unit_test(test_log_random_over_the_exponent_range),
        cmocka_unit_test(test_log_edge_values),
        cmocka_unit_test(test_log_vector_and_tail_agree),
        cmocka_unit_test(test_log_inline_matches_the_array),
        cmocka_unit_test(test_logf_within_one_ulp),
        cmocka_unit_test(test_logf_vector_tail_and_inline_agree),
        cmocka_unit_test(test_fixed_order_sums),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "vecmath");
}
