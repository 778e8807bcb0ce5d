/*
 * test_vecmath.c - the vectorized kernels (src/vecmath.c): crl_log_array
 * within 2 ulp of glibc's log over the whole positive normal range and at
 * its edges, the same bits for an element whether a vector body or a scalar
 * tail computes it, and the fixed order of crl_sum_fixed / crl_dot_fixed.
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

/* The order of crl_sum_fixed, spelled out: lane k mod 8, combined pairwise. */
static double sum_reference(const double *x, const double *y, int64_t n)
{
    double lane[8] = {0};
    for (int64_t k = 0; k < n; k++)
        lane[k % 8] += y ? x[k] * y[k] : x[k];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3]))
           + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

static void test_fixed_order_sums(void **state)
{
    (void) state;
    enum { LEN = 100 };
    double buf[LEN + 3], other[LEN + 3];
    uint64_t s = 13;
    for (int k = 0; k < LEN + 3; k++) {
        /* wide magnitudes, so that a different order gives different bits */
        buf[k] = ldexp(h_uniform(&s, -1, 1), (int) (h_rand(&s) % 60));
        other[k] = h_uniform(&s, -1, 1);
    }
    for (int64_t n = 0; n <= LEN; n++)
        for (int start = 0; start < 3; start++) {
            const double *x = buf + start, *y = other + start;
            assert_true(bits_of(crl_sum_fixed(x, n)) == bits_of(sum_reference(x, NULL, n)));
            assert_true(bits_of(crl_dot_fixed(x, y, n)) == bits_of(sum_reference(x, y, n)));
        }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_random_over_the_exponent_range),
        cmocka_unit_test(test_log_edge_values),
        cmocka_unit_test(test_log_vector_and_tail_agree),
        cmocka_unit_test(test_fixed_order_sums),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "vecmath");
}
