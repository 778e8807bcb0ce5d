/*
 * test_xsum.c - the exact accumulators (src/xsum.h): every finite double
 * held exactly (wide), or taken or spilled (a slot), sums independent of
 * order and grouping to the last bit, rounding to nearest with ties to
 * even, overflow, non-finite values, and the double-double of a sum.
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

static crl_xsum_wide wof(const double *v, int n)
{
    crl_xsum_wide x = {{0}};
    for (int k = 0; k < n; k++)
        crl_xsum_wide_add(&x, v[k]);
    return x;
}

/* Whether a slot takes v (all of v's bits in [2^-256, 2^448 units)). */
static bool in_slot(double v)
{
    return v == 0 || (fabs(v) >= 0x1p-204 && fabs(v) < 0x1p192);
}

static void test_one_value_rounds_to_itself(void **state)
{
    (void) state;
    const double edges[] = {0x1p-1074, -0x1p-1074, DBL_MIN, DBL_MAX, -DBL_MAX, 1.0, -0.5,
                            0x1.fffffffffffffp-1022, 0x1p-1022 - 0x1p-1074, 0x1p-204,
                            -0x1.fffffffffffffp191};
    crl_spill spill = {0};
    crl_xsum slots[2] = {{{0}}};
    crl_spill_begin(&spill, slots, 2);
    for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++) {
        crl_xsum_wide x = wof(&edges[k], 1);
        assert_true(crl_xsum_wide_round(&x) == edges[k]);
        if (in_slot(edges[k])) {
            crl_xsum y = of(&edges[k], 1);
            assert_true(crl_xsum_round(&y) == edges[k]);
        }
    }
    uint64_t s = 7;
    for (int k = 0; k < 200000; k++) {
        double v = any_double(&s);
        crl_xsum_wide x = wof(&v, 1);
        assert_true(crl_xsum_wide_round(&x) == v);
        crl_xsum_wide_add(&x, -v);   /* and back to zero: every limb */
        crl_xsum_wide zero = {{0}};
        assert_memory_equal(&x, &zero, sizeof x);
        /* A slot takes v or spills it, whole. */
        memset(slots, 0, sizeof slots);
        spill.count = 0;
        crl_xsum_add(&slots[1], v);
        crl_xsum y = slots[1];
        if (in_slot(v)) {
            assert_int_equal(spill.count, 0);
            assert_true(crl_xsum_round(&y) == v);
        } else {
            assert_int_equal(spill.count, 1);
            assert_true(spill.items[0].slot == 1 && spill.items[0].value == v);
            assert_true(crl_xsum_round(&y) == 0);
        }
    }
    const double beyond[] = {0x1p-205, 0x1p192, -0x1p-1074, INFINITY, NAN, 0x1.8p-204};
    spill.count = 0;
    for (size_t k = 0; k < sizeof beyond / sizeof beyond[0]; k++)
        crl_xsum_add(&slots[0], beyond[k]);
    assert_int_equal(spill.count, 5);   /* 1.5 * 2^-204 fits */
    crl_spill_end();
    free(spill.items);
}

/* The double-double of a sum against its definition: hi the sum rounded,
 * lo the exact rest (the sum minus hi, formed in a wide accumulator)
 * rounded; rests that round up or down, signs, cancellation. */
static void test_dd_is_hi_and_rounded_rest(void **state)
{
    (void) state;
    uint64_t s = 13;
    for (int trial = 0; trial < 100000; trial++) {
        int n = 1 + (int) (h_rand(&s) % 6);
        double v[6];
        for (int k = 0; k < n; k++)
            v[k] = ldexp(h_uniform(&s, 0.5, 1) * (h_rand(&s) % 2 ? 1 : -1),
                         (int) (h_rand(&s) % 200) - 100);
        crl_xsum x = of(v, n);
        crl_xsum_wide w = {{0}};
        crl_xsum_wide_add_narrow(&w, &x);
        crl_dd d = crl_xsum_dd(&x), e = crl_xsum_wide_dd(&w);
        double hi = crl_xsum_round(&x);
        crl_xsum_wide_add(&w, -hi);
        assert_true(d.hi == hi && d.lo == crl_xsum_wide_round(&w));
        assert_true(e.hi == d.hi && e.lo == d.lo);
    }
}

/* A slot's sum moved to the wide units, and the wide sum of the same
 * values: the same accumulator. */
static void test_slot_joins_wide(void **state)
{
    (void) state;
    uint64_t s = 5;
    for (int trial = 0; trial < 2000; trial++) {
        double v[16];
        for (int k = 0; k < 16; k++)
            v[k] = ldexp(h_uniform(&s, 0.5, 1) * (k % 3 ? 1 : -1), (int) (h_rand(&s) % 380) - 190);
        crl_xsum y = of(v, 16);
        crl_xsum_wide w = {{0}}, direct = wof(v, 16);
        crl_xsum_wide_add_narrow(&w, &y);
        assert_memory_equal(&w, &direct, sizeof w);
        assert_true(crl_xsum_round(&y) == crl_xsum_wide_round(&w));
        crl_dd a = crl_xsum_dd(&y), b = crl_xsum_wide_dd(&w);
        assert_true(a.hi == b.hi && a.lo == b.lo);
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
        crl_xsum_wide w = wof(v, n);
        assert_true(crl_xsum_round(&x) == ldexp((double) exact, -20));
        assert_true(crl_xsum_wide_round(&w) == ldexp((double) exact, -20));
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
        crl_xsum_wide forward = wof(v, N), backward = {{0}}, merged = {{0}};
        for (int k = N - 1; k >= 0; k--)
            crl_xsum_wide_add(&backward, v[k]);
        crl_xsum_wide group[GROUPS];
        memset(group, 0, sizeof group);
        for (int k = 0; k < N; k++)
            crl_xsum_wide_add(&group[h_rand(&s) % GROUPS], v[k]);
        for (int g = GROUPS - 1; g >= 0; g--)
            crl_xsum_wide_merge(&merged, &group[(g * 3) % GROUPS]);
        assert_memory_equal(&forward, &backward, sizeof forward);
        assert_memory_equal(&forward, &merged, sizeof forward);
        /* The same for a slot, over its range. */
        for (int k = 0; k < N; k++)
            v[k] = ldexp(h_uniform(&s, 0.5, 1), (int) (h_rand(&s) % 390) - 200)
                   * (k % 3 == 2 ? -1 : 1);
        crl_xsum f = of(v, N), b = {{0}}, m = {{0}}, part[GROUPS];
        for (int k = N - 1; k >= 0; k--)
            crl_xsum_add(&b, v[k]);
        memset(part, 0, sizeof part);
        for (int k = 0; k < N; k++)
            crl_xsum_add(&part[h_rand(&s) % GROUPS], v[k]);
        for (int g = GROUPS - 1; g >= 0; g--)
            crl_xsum_merge(&m, &part[(g * 3) % GROUPS]);
        assert_memory_equal(&f, &b, sizeof f);
        assert_memory_equal(&f, &m, sizeof f);
    }
    free(v);
}

static void test_overflow_and_non_finite(void **state)
{
    (void) state;
    const double twice[] = {DBL_MAX, DBL_MAX};
    crl_xsum_wide x = wof(twice, 2);
    assert_true(crl_xsum_wide_round(&x) == INFINITY);
    crl_xsum_wide_add(&x, -DBL_MAX);   /* the sum is exact beyond the double range */
    assert_true(crl_xsum_wide_round(&x) == DBL_MAX);
    crl_xsum_wide_add(&x, -DBL_MAX);
    crl_xsum_wide_add(&x, -DBL_MAX);
    assert_true(crl_xsum_wide_round(&x) == -DBL_MAX);
    crl_xsum_wide_add(&x, INFINITY);
    assert_true(isnan(crl_xsum_wide_round(&x)));
    crl_dd d = crl_xsum_wide_dd(&x);
    assert_true(isnan(d.hi) && d.lo == 0);
    /* Many of the largest doubles: no wrap-around, wide or in a slot. */
    crl_xsum_wide many = {{0}};
    crl_xsum slot = {{0}};
    const double big = 0x1.fffffffffffffp191;
    for (int k = 0; k < 1 << 20; k++) {
        crl_xsum_wide_add(&many, -DBL_MAX);
        crl_xsum_add(&slot, -big);
    }
    assert_true(crl_xsum_wide_round(&many) == -INFINITY);
    assert_true(crl_xsum_round(&slot) == -0x1p20 * big);
    for (int k = 0; k < 1 << 20; k++) {
        crl_xsum_wide_add(&many, DBL_MAX);
        crl_xsum_add(&slot, big);
    }
    assert_true(crl_xsum_wide_round(&many) == 0);
    assert_true(crl_xsum_round(&slot) == 0);
}

/* Subnormal sums are exact integers of 2^-1074, and a subnormal rest
 * survives the double-double. */
static void test_subnormals(void **state)
{
    (void) state;
    const double v[] = {0x1p-1074, 0x1p-1074, 0x3p-1074, -0x1p-1073};
    crl_xsum_wide x = wof(v, 4);
    assert_true(crl_xsum_wide_round(&x) == 0x3p-1074);
    const double w[] = {1.0, 0x1p-1074};
    crl_xsum_wide y = wof(w, 2);
    crl_dd d = crl_xsum_wide_dd(&y);
    assert_true(d.hi == 1.0 && d.lo == 0x1p-1074);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_value_rounds_to_itself),
        cmocka_unit_test(test_slot_joins_wide),
        cmocka_unit_test(test_dd_is_hi_and_rounded_rest),
        cmocka_unit_test(test_rounding_is_to_nearest_even),
        cmocka_unit_test(test_the_crafted_tie),
        cmocka_unit_test(test_order_and_grouping_do_not_matter),
        cmocka_unit_test(test_overflow_and_non_finite),
        cmocka_unit_test(test_subnormals),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "xsum");
}
