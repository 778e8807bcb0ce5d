/*
 * test_fr.c - FiringRateLoss (src/terms/fr.c, docs/losses.md "FiringRateLoss"): hand-
 * computed values and gradients of both metrics, gradients against finite
 * differences, bitwise identity across splits and layouts, and errors raised
 * on one rank only.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/*
 * B=2, T=2, N=3:
 *   b=0: (1, 2, -1), (3, -2, 1)     b=1: (2, 0, -3), (2, 0, -1)
 * mu = (8/4, 0/4, -4/4) = (2, 0, -1).
 */
static const double hand_states[12] = {1, 2, -1, 3, -2, 1, 2, 0, -3, 2, 0, -1};

static h_problem hand_problem(double *states)
{
    memcpy(states, hand_states, sizeof hand_states);
    return (h_problem){.dtype = CRL_FLOAT64, .B = 2, .T = 2, .N = 3, .states = states};
}

static void assert_close(double got, double want)
{
    if (!(fabs(got - want) <= 1e-15 * fmax(1, fabs(want))))
        fail_msg("got %.17g, want %.17g", got, want);
}

/* d total / dS[b,t,i] is the same for every (b, t): expect[i]. */
static void assert_rowwise_gradient(const h_result *r, const h_problem *p, const double *expect)
{
    const double *d = r->grad[0];
    for (int64_t e = 0; e < p->B * p->T * p->N; e++)
        assert_close(d[e], expect[e % p->N]);
}

static void test_l2_by_hand(void **state)
{
    (void) state;
    double s[12];
    h_problem p = hand_problem(s);
    h_term terms[] = {{"fr", "fr", 2.0, NULL}};
    h_result r;
    h_eval_self(&p, terms, 1, H_GRAD_STATES, &r);
    assert_int_equal(r.status, CRL_OK);
    /* 1/3 (4 + 0 + 1) = 5/3, weighted by 2. */
    assert_close(h_value(&r, "fr"), 2 * 5.0 / 3);
    assert_close(r.total, 10.0 / 3);
    assert_int_equal(r.n_values, 1);
    /* g_i = 2 mu_i / 3 = (4/3, 0, -2/3); dS = 2 g_i / (B T) = (2/3, 0, -1/3). */
    const double expect[3] = {2.0 / 3, 0, -1.0 / 3};
    assert_rowwise_gradient(&r, &p, expect);
    h_result_free(&r);
}

static void test_l1_by_hand(void **state)
{
    (void) state;
    double s[12];
    h_problem p = hand_problem(s);
    h_term terms[] = {{"fr", "fr", 2.0, "metric=l1"}};
    h_result r;
    h_eval_self(&p, terms, 1, H_GRAD_STATES, &r);
    assert_int_equal(r.status, CRL_OK);
    /* 1/3 (2 + 0 + 1) = 1, weighted by 2. */
    assert_close(h_value(&r, "fr"), 2.0);
    /* g_i = sign(mu_i) / 3 with sign(0) = 0: (1/3, 0, -1/3);
     * dS = 2 g_i / 4 = (1/6, 0, -1/6). */
    const double expect[3] = {1.0 / 6, 0, -1.0 / 6};
    assert_rowwise_gradient(&r, &p, expect);
    h_result_free(&r);
}

static h_problem random_problem(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 7, .T = 5, .N = 6};
    h_problem_fill(&p, seed, -1.0, 1.0);
    return p;
}

static const char *metrics[] = {"metric=l2", "metric=l1"};

static void test_gradients_match_finite_differences(void **state)
{
    (void) state;
    for (int m = 0; m < 2; m++) {
        /* Rates of both signs; no mean is within a step of the kink of |.|. */
        h_problem p = random_problem(CRL_FLOAT64, m, 10);
        p.B = 3;
        h_term terms[] = {{"fr", "fr", 1.5, metrics[m]}};
        h_check_gradients(&p, terms, 1, H_GRAD_STATES, 1e-6, 1e-6, 60);
        h_problem_free(&p);
    }
}

static void test_bitwise_identical_across_splits_and_layouts(void **state)
{
    (void) state;
    for (int m = 0; m < 2; m++) {
        h_term terms[] = {{"fr", "fr", 0.7, metrics[m]}};
        h_check_exact(random_problem, 20 + (uint64_t) m, terms, 1, H_GRAD_STATES);
    }
}

static void test_unknown_metric(void **state)
{
    (void) state;
    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_SELF, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "fr", "fr", 1, "metric=l3"), CRL_ERR_INVALID);
    assert_non_null(strstr(crl_context_error(ctx), "unknown value 'l3' (one of: l2, l1)"));
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
}

static void test_nan_in_one_ranks_states(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT32, true, 40);
    int last = h_size - 1;
    h_range theirs = h_split(0, p.B, last, h_size);
    p.states[(theirs.start * p.T + 4) * p.N + 2] = NAN;
    h_term terms[] = {{"fr", "fr", 1.0, "metric=l1"}};
    char needle[96];
    snprintf(needle, sizeof needle, "rank %d: states[b=0, t=4, i=2] is NaN", last);
    h_check_error(&p, terms, 1, h_split(0, p.B, h_rank, h_size), (h_range){0, 0}, H_GRAD_STATES,
                  CRL_ERR_NONFINITE, needle);
    h_problem_free(&p);
}

/* Rates of 1e200 (finite, their squares are not): fr alone forms no sums
 * of squares, so L1 gives its finite value; L2 squares the mean rates, and
 * its infinite value is an error naming the term, on every rank. */
static void test_rates_near_the_top_of_the_range(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT64, false, 41);
    for (int64_t k = 0; k < p.B * p.T * p.N; k++)
        p.states[k] = 1e200 * (1 + 0.5 * p.states[k]);
    h_term l1[] = {{"fr", "fr", 1.0, "metric=l1"}};
    h_result r;
    h_eval(&p, l1, 1, MPI_COMM_WORLD, h_split(0, p.B, h_rank, h_size), (h_range){0, 0},
           H_GRAD_STATES, &r);
    h_assert_all(r.status == CRL_OK && isfinite(r.total) && r.total > 1e199);
    h_result_free(&r);
    h_term l2[] = {{"fr", "fr", 1.0, "metric=l2"}};
    h_check_error(&p, l2, 1, h_split(0, p.B, h_rank, h_size), (h_range){0, 0}, H_GRAD_STATES,
                  CRL_ERR_DOMAIN, "term 'fr' (fr): the value overflows (inf)");
    h_problem_free(&p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_l2_by_hand),
        cmocka_unit_test(test_l1_by_hand),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_bitwise_identical_across_splits_and_layouts),
        cmocka_unit_test(test_unknown_metric),
        cmocka_unit_test(test_nan_in_one_ranks_states),
        cmocka_unit_test(test_rates_near_the_top_of_the_range),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "fr");
}
