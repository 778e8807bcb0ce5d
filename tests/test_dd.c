/*
 * test_dd.c - double-double arithmetic (src/dd.h): error-free transforms
 * checked exactly against binary128, and order independence of sums.
 */
#include "harness.h"

#include "dd.h"

#include <math.h>
#include <stdlib.h>

typedef __float128 quad;

static double random_double(uint64_t *s)
{
    /* Mixed signs and magnitudes over 2^-40 .. 2^40. */
    double m = h_uniform(s, -1, 1);
    int e = (int) (h_rand(s) % 81) - 40;
    return ldexp(m, e);
}

static void test_two_sum_and_prod_are_exact(void **state)
{
    (void) state;
    uint64_t s = 1;
    for (int k = 0; k < 100000; k++) {
        double a = random_double(&s), b = random_double(&s);
        crl_dd t = crl_two_sum(a, b);
        assert_true((quad) t.hi + (quad) t.lo == (quad) a + (quad) b);
        assert_true(t.hi == a + b);
        crl_dd p = crl_two_prod(a, b);
        assert_true((quad) p.hi + (quad) p.lo == (quad) a * (quad) b);
        crl_dd f = crl_fast_two_sum(fabs(a) >= fabs(b) ? a : b, fabs(a) >= fabs(b) ? b : a);
        assert_true((quad) f.hi + (quad) f.lo == (quad) a + (quad) b);
    }
}

/* Operands up to the top of the double range (Dekker's splitting alone
 * overflows above 2^996 and gave NaN). */
static void test_two_prod_is_exact_for_large_operands(void **state)
{
    (void) state;
    uint64_t s = 2;
    for (int k = 0; k < 100000; k++) {
        int ea = 400 + (int) (h_rand(&s) % 623), eb = 1000 - ea - (int) (h_rand(&s) % 40);
        double a = ldexp(h_uniform(&s, -1, 1), ea), b = ldexp(h_uniform(&s, -1, 1), eb);
        crl_dd p = crl_two_prod(a, b);
        assert_true(isfinite(p.hi) && isfinite(p.lo));
        assert_true((quad) p.hi + (quad) p.lo == (quad) a * (quad) b);
    }
}

static quad dd_quad(crl_dd x)
{
    return (quad) x.hi + (quad) x.lo;
}

static double rel(quad got, quad want)
{
    quad d = got - want;
    if (d < 0)
        d = -d;
    quad w = want < 0 ? -want : want;
    return (double) (w == 0 ? d : d / w);
}

static void test_add_mul_div_are_double_double_accurate(void **state)
{
    (void) state;
    uint64_t s = 2;
    for (int k = 0; k < 20000; k++) {
        crl_dd a = crl_two_prod(random_double(&s), random_double(&s));
        crl_dd b = crl_two_prod(random_double(&s), random_double(&s));
        double d = random_double(&s);
        assert_true(rel(dd_quad(crl_dd_add(a, b)), dd_quad(a) + dd_quad(b)) < 0x1p-100
                    || fabs((double) (dd_quad(a) + dd_quad(b))) < 1e-300);
        assert_true(rel(dd_quad(crl_dd_mul(a, b)), dd_quad(a) * dd_quad(b)) < 0x1p-100);
        assert_true(rel(dd_quad(crl_dd_div_d(a, d)), dd_quad(a) / (quad) d) < 0x1p-100);
        /* Normalized: hi is the double nearest the pair. */
        crl_dd c = crl_dd_add(a, b);
        assert_true(c.hi == crl_dd_round(c));
    }
}

static void test_cancellation_keeps_the_low_part(void **state)
{
    (void) state;
    crl_dd a = {1.0, 0x1p-60}, b = {-1.0, 0x1p-61};
    crl_dd c = crl_dd_add(a, b);
    assert_true(c.hi == 0x1p-60 + 0x1p-61);
    assert_true(c.lo == 0);
}

/* The property docs/losses.md "Exactness" rests on: summing the same doubles in any
 * order and grouping gives the same rounded result. */
static void test_sum_is_independent_of_order(void **state)
{
    (void) state;
    enum { N = 20000 };
    double *x = malloc(sizeof *x * N);
    uint64_t s = 3;
    for (int trial = 0; trial < 20; trial++) {
        for (int k = 0; k < N; k++)
            x[k] = random_double(&s) * (k % 7 == 0 ? 1e10 : 1);
        crl_dd forward = crl_dd_make(0), backward = crl_dd_make(0), grouped = crl_dd_make(0);
        quad exact = 0;
        for (int k = 0; k < N; k++) {
            forward = crl_dd_add(forward, crl_dd_make(x[k]));
            backward = crl_dd_add(backward, crl_dd_make(x[N - 1 - k]));
            exact += (quad) x[k];
        }
        /* Groups of uneven sizes summed separately, then merged. */
        int start = 0, size = 1;
        while (start < N) {
            crl_dd part = crl_dd_make(0);
            for (int k = start; k < start + size && k < N; k++)
                part = crl_dd_add(part, crl_dd_make(x[k]));
            grouped = crl_dd_add(part, grouped);
            start += size;
            size = size * 3 + 1;
        }
        assert_true(crl_dd_round(forward) == crl_dd_round(backward));
        assert_true(crl_dd_round(forward) == crl_dd_round(grouped));
        assert_true(rel(dd_quad(forward), exact) < 0x1p-90);
        /* A plain double sum is not order independent here. */
    }
    free(x);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_sum_and_prod_are_exact),
        cmocka_unit_test(test_two_prod_is_exact_for_large_operands),
        cmocka_unit_test(test_add_mul_div_are_double_double_accurate),
        cmocka_unit_test(test_cancellation_keeps_the_low_part),
        cmocka_unit_test(test_sum_is_independent_of_order),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "dd");
}
