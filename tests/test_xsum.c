/*
 * test_xsum.c - the exact accumulator (src/xsum.h): every finite double
 * held exactly, sums independent of order and grouping to the last bit,
 * rounding to nearest with ties to even, overflow, non-finite values, and
 * the double-double of a sum.
 */
#include "harness.h"

#include "xsum.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Any finite double: random bits, the exponent field below all ones. */
static double any_double(uint64_t *s)
{
    for (;;) {
        uint64_t bits = h_rand(s);
        double v;
        memcpy(&v, &bits, sizeof v);
        if (isfinite(v))
            return v;
    }
}

static crl_xsum of(const double *v, int n)
{
    crl_xsum x = {{0}};
    for (int k = 0; k < n; k++)
        crl_xsum_add(&x, v[k]);
    return x;
}

static void test_one_value_rounds_to_itself(void **state)
{
    (void) state;
    const double edges[] = {0x1p-1074, -0x1p-1074, DBL_MIN, DBL_MAX, -DBL_MAX, 1.0, -0.5,
                            0x1.fffffffffffffp-1022, 0x1p-1022 - 0x1p-1074};
    for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++) {
        crl_xsum x = of(&edges[k], 1);
        assert_true(crl_xsum_round(&x) == edges[k]);
    }
    uint64_t s = 7;
    for (int k = 0; k < 200000; k++) {
        double v = any_double(&s);
        crl_xsum x = of(&v, 1);
        double r = crl_xsum_round(&x);
        assert_true(r == v);
        crl_xsum_add(&x, -v);   /* and back to zero: every limb */
        crl_xsum zero = {{0}};
        assert_memory_equal(&x, &zero, sizeof x);
    }
}

/* Sums of k * 2^-20 with 60-bit k: the exact sum is an int64 (times
 * 2^-20), and converting an int64 to double rounds to nearest, ties to
 * even: the reference.  Small k make ties frequent. */
static void test_rounding_is_to_nearest_even(void **state)
{
    (void) state;
    uint64_t s = 11;
    for (int trial = 0; trial < 100000; trial++) {
        int n = 1 + (int) (h_rand(&s) % 8), bits = 54 + (int) (h_rand(&s) % 6);
        double v[8];
        int64_t exact = 0;
        for (int k = 0; k < n; k++) {
            int64_t m = (int64_t) (h_rand(&s) >> (64 - bits));
            /* a 53-bit-or-shorter value: the top bits, or the low bit alone */
            m = h_rand(&s) % 3 ? m & ~(int64_t) 0x7f : (int64_t) (h_rand(&s) % 4);
            if (h_rand(&s) % 2)
                m = -m;
            v[k] = ldexp((double) m, -20);
            assert_true((int64_t) ldexp(v[k], 20) == m);   /* m is exact in a double */
            exact += m;
        }
        crl_xsum x = of(v, n);
        assert_true(crl_xsum_round(&x) == ldexp((double) exact, -20));
    }
}

static void test_the_crafted_tie(void **state)
{
    (void) state;
    const double above[] = {0x1p60, 1.0, 0x1p-53, 0x1p-80, -0x1p60};
    const double tie[] = {0x1p60, 1.0, 0x1p-53, -0x1p60};
    const double below[] = {0x1p60, 1.0, 0x1p-53, -0x1p-80, -0x1p60};
    crl_xsum a = of(above, 5), t = of(tie, 4), b = of(below, 5);
    assert_true(crl_xsum_round(&a) == 1.0 + 0x1p-52);
    assert_true(crl_xsum_round(&t) == 1.0);
    assert_true(crl_xsum_round(&b) == 1.0);
    crl_dd d = crl_xsum_dd(&a);   /* the rest: -2^-53 + 2^-80, exact */
    assert_true(d.hi == 1.0 + 0x1p-52 && d.lo == -0x1p-53 + 0x1p-80);
}

/* Wide-range values (2^-1074 .. 2^1000, mixed signs, cancellation) summed
 * forward, backward and in random groups merged in random order: the same
 * accumulator, bit for bit. */
static void test_order_and_grouping_do_not_matter(void **state)
{
    (void) state;
    enum { N = 3000, GROUPS = 7 };
    double *v = malloc(N * sizeof *v);
    uint64_t s = 3;
    for (int trial = 0; trial < 20; trial++) {
        for (int k = 0; k < N; k++) {
            v[k] = ldexp(h_uniform(&s, -1, 1), (int) (h_rand(&s) % 2075) - 1074);
            if (k % 3 == 2)
                v[k] = -v[k - 2];   /* exact cancellation */
        }
        crl_xsum forward = of(v, N), backward = {{0}}, merged = {{0}};
        for (int k = N - 1; k >= 0; k--)
            crl_xsum_add(&backward, v[k]);
        crl_xsum group[GROUPS];
        memset(group, 0, sizeof group);
        for (int k = 0; k < N; k++)
            crl_xsum_add(&group[h_rand(&s) % GROUPS], v[k]);
        for (int g = GROUPS - 1; g >= 0; g--)
            crl_xsum_merge(&merged, &group[(g * 3) % GROUPS]);
        assert_memory_equal(&forward, &backward, sizeof forward);
        assert_memory_equal(&forward, &merged, sizeof forward);
    }
    free(v);
}

static void test_overflow_and_non_finite(void **state)
{
    (void) state;
    const double twice[] = {DBL_MAX, DBL_MAX};
    crl_xsum x = of(twice, 2);
    assert_true(crl_xsum_round(&x) == INFINITY);
    crl_xsum_add(&x, -DBL_MAX);   /* the sum is exact beyond the double range */
    assert_true(crl_xsum_round(&x) == DBL_MAX);
    crl_xsum_add(&x, -DBL_MAX);
    crl_xsum_add(&x, -DBL_MAX);
    assert_true(crl_xsum_round(&x) == -DBL_MAX);
    crl_xsum_add(&x, INFINITY);
    assert_true(isnan(crl_xsum_round(&x)));
    crl_dd d = crl_xsum_dd(&x);
    assert_true(isnan(d.hi) && d.lo == 0);
    /* Many of the largest doubles: no wrap-around. */
    crl_xsum many = {{0}};
    for (int k = 0; k < 1 << 20; k++)
        crl_xsum_add(&many, -DBL_MAX);
    assert_true(crl_xsum_round(&many) == -INFINITY);
    for (int k = 0; k < 1 << 20; k++)
        crl_xsum_add(&many, DBL_MAX);
    assert_true(crl_xsum_round(&many) == 0);
}

/* Subnormal sums are exact integers of 2^-1074, and a subnormal rest
 * survives the double-double. */
static void test_subnormals(void **state)
{
    (void) state;
    const double v[] = {0x1p-1074, 0x1p-1074, 0x3p-1074, -0x1p-1073};
    crl_xsum x = of(v, 4);
    assert_true(crl_xsum_round(&x) == 0x3p-1074);
    const double w[] = {1.0, 0x1p-1074};
    crl_xsum y = of(w, 2);
    crl_dd d = crl_xsum_dd(&y);
    assert_true(d.hi == 1.0 && d.lo == 0x1p-1074);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_value_rounds_to_itself),
        cmocka_unit_test(test_rounding_is_to_nearest_even),
        cmocka_unit_test(test_the_crafted_tie),
        cmocka_unit_test(test_order_and_grouping_do_not_matter),
        cmocka_unit_test(test_overflow_and_non_finite),
        cmocka_unit_test(test_subnormals),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "xsum");
}
