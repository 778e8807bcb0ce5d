/*
 * test_fr_dist.c - FiringRateDistLoss (src/terms/fr_dist.c, docs/losses.md
 * "FiringRateDistLoss"): hand-computed values and gradients of every metric,
 * ties and zero deviations, the torch.std correction, gradients against
 * finite differences, bitwise identity across splits and layouts, and errors
 * raised on one rank only.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/*
 * B=2, T=2, N=3:
 *   b=0: (1, 2, -1), (3, -2, 1)     b=1: (2, 0, -3), (2, 0, -1)
 * mu = (2, 0, -1), m = 1/3, mu - m = (5/3, -1/3, -4/3),
 * sum (mu - m)^2 = (25 + 1 + 16) / 9 = 14/3.
 */
static const double hand_states[12] = {1, 2, -1, 3, -2, 1, 2, 0, -3, 2, 0, -1};

static h_problem hand_problem(double *states)
{
    memcpy(states, hand_states, sizeof hand_states);
    return (h_problem){.dtype = CRL_FLOAT64, .B = 2, .T = 2, .N = 3, .states = states};
}

static void assert_close(double got, double want)
{
    if (!(fabs(got - want) <= 1e-14 * fmax(1, fabs(want))))
        fail_msg("got %.17g, want %.17g", got, want);
}

/*
 * Evaluates one fr_dist term with weight 2 on p and checks its value and
 * d total / dS[b,t,i] = 2 g_i / (B T), the same for every (b, t).
 */
static void check_by_hand(const h_problem *p, const char *params, double value, const double *g)
{
    h_term terms[] = {{"d", "fr_dist", 2.0, params}};
    h_result r;
    h_eval_self(p, terms, 1, H_GRAD_STATES, &r);
    if (r.status != CRL_OK)
        fail_msg("%s: %s", params, r.message);
    assert_int_equal(r.n_values, 1);
    assert_close(h_value(&r, "d"), 2 * value);
    assert_close(r.total, 2 * value);
    const double *d = r.grad[0];
    for (int64_t e = 0; e < p->B * p->T * p->N; e++)
        assert_close(d[e], 2 * g[e % p->N] / (double) (p->B * p->T));
    h_result_free(&r);
}

static void test_sd_by_hand(void **state)
{
    (void) state;
    double s[12];
    h_problem p = hand_problem(s);
    /* sigma_0 = sqrt(14/3 / 3) = sqrt(14)/3; g_i = (mu_i - m) / (3 sigma_0)
     * = (5/3, -1/3, -4/3) / sqrt(14). */
    double r14 = sqrt(14.0);
    const double g[3] = {5 / (3 * r14), -1 / (3 * r14), -4 / (3 * r14)};
    check_by_hand(&p, NULL, r14 / 3, g);
    check_by_hand(&p, "metric=sd", r14 / 3, g);
}

static void test_cv_by_hand(void **state)
{
    (void) state;
    double s[12];
    h_problem p = hand_problem(s);
    /* sigma_0 / m = (sqrt(14)/3) / (1/3) = sqrt(14);
     * g_i = (mu_i - m) / (3 sigma_0 m) - sigma_0 / (3 m^2)
     *     = 3 (mu_i - m) / sqrt(14) - sqrt(14) = (5 - 14, -1 - 14, -4 - 14) / sqrt(14). */
    double r14 = sqrt(14.0);
    const double g[3] = {-9 / r14, -15 / r14, -18 / r14};
    check_by_hand(&p, "metric=cv", r14, g);
}

static void test_mean_ad_by_hand(void **state)
{
    (void) state;
    double s[12];
    h_problem p = hand_problem(s);
    /* 1/3 (5/3 + 1/3 + 4/3) = 10/9; s = (1, -1, -1), mean s = -1/3,
     * g = (1 + 1/3, -1 + 1/3, -1 + 1/3) / 3 = (4/9, -2/9, -2/9). */
    const double g[3] = {4.0 / 9, -2.0 / 9, -2.0 / 9};
    check_by_hand(&p, "metric=mean_ad", 10.0 / 9, g);
    /* correction is a divisor of sd and cv: with mean_ad it is refused,
     * not silently ignored. */
    h_term terms[] = {{"d", "fr_dist", 2.0, "metric=mean_ad,correction=5"}};
    h_result r;
    h_eval_self(&p, terms, 1, H_GRAD_STATES, &r);
    assert_int_equal(r.status, CRL_ERR_INVALID);
    if (strstr(r.message, "correction applies to metric sd and cv only, not mean_ad") == NULL)
        fail_msg("unexpected message: %s", r.message);
    h_result_free(&r);
}

static void test_max_ad_by_hand(void **state)
{
    (void) state;
    double s[12];
    h_problem p = hand_problem(s);
    /* max |mu - m| = 5/3 at i* = 0, s_0 = 1: g = (1 - 1/3, -1/3, -1/3). */
    const double g[3] = {2.0 / 3, -1.0 / 3, -1.0 / 3};
    check_by_hand(&p, "metric=max_ad", 5.0 / 3, g);
}

static void test_ties_and_zero_deviations(void **state)
{
    (void) state;
    /* B=1, T=1: mu = (0, 2, 1), m = 1, mu - m = (-1, 1, 0). */
    double s[3] = {0, 2, 1};
    h_problem p = {.dtype = CRL_FLOAT64, .B = 1, .T = 1, .N = 3, .states = s};
    /* max_ad: |mu - m| = 1 at i = 0 and 1; i* = 0 (the smallest), s_0 = -1:
     * g = -(1 - 1/3, -1/3, -1/3) = (-2/3, 1/3, 1/3). */
    const double g_max[3] = {-2.0 / 3, 1.0 / 3, 1.0 / 3};
    check_by_hand(&p, "metric=max_ad", 1.0, g_max);
    /* mean_ad: (1 + 1 + 0) / 3; s = (-1, 1, 0) with sign(0) = 0, sum s = 0:
     * g = s / 3. */
    const double g_mean[3] = {-1.0 / 3, 1.0 / 3, 0};
    check_by_hand(&p, "metric=mean_ad", 2.0 / 3, g_mean);
}

static void test_correction_one_is_torch_std(void **state)
{
    (void) state;
    double s[12];
    h_problem p = hand_problem(s);
    /* torch.std(mu) = sqrt(14/3 / (3 - 1)) = sqrt(7/3); cv = 3 sqrt(7/3) = sqrt(21).
     * sd: g_i = (mu_i - m) / (2 sigma_1) = (5/3, -1/3, -4/3) / (2 sqrt(7/3)). */
    double s1 = sqrt(7.0 / 3);
    const double g[3] = {5 / (6 * s1), -1 / (6 * s1), -4 / (6 * s1)};
    check_by_hand(&p, "metric=sd,correction=1", s1, g);
    h_term terms[] = {{"d", "fr_dist", 1.0, "metric=cv,correction=1"}};
    h_result r;
    h_eval_self(&p, terms, 1, 0, &r);
    assert_int_equal(r.status, CRL_OK);
    assert_close(r.total, sqrt(21.0));
    h_result_free(&r);
}

static h_problem random_problem(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 7, .T = 5, .N = 6};
    h_problem_fill(&p, seed, 0.1, 1.0);
    return p;
}

static const char *variants[] = {"metric=sd", "metric=cv", "metric=mean_ad", "metric=max_ad",
                                 "metric=sd,correction=1", "metric=cv,correction=2"};

static void test_gradients_match_finite_differences(void **state)
{
    (void) state;
    /* Random means: no mean is within a step of m, and no two deviations tie. */
    for (int v = 0; v < 6; v++) {
        h_problem p = random_problem(CRL_FLOAT64, v % 2, 10 + (uint64_t) v);
        p.B = 3;
        h_term terms[] = {{"d", "fr_dist", 1.5, variants[v]}};
        h_check_gradients(&p, terms, 1, H_GRAD_STATES, 1e-6, 1e-6, 60);
        h_problem_free(&p);
    }
}

static void test_bitwise_identical_across_splits_and_layouts(void **state)
{
    (void) state;
    for (int v = 0; v < 6; v++) {
        h_term terms[] = {{"d", "fr_dist", 0.7, variants[v]}};
        h_check_exact(random_problem, 20 + (uint64_t) v, terms, 1, H_GRAD_STATES);
    }
}

static void test_cv_of_zero_mean_is_a_domain_error(void **state)
{
    (void) state;
    h_problem p = {.dtype = CRL_FLOAT64, .B = 5, .T = 3, .N = 4};
    h_problem_fill(&p, 1, 0, 0);
    h_term terms[] = {{"d", "fr_dist", 1.0, "metric=cv"}};
    h_check_error(&p, terms, 1, h_split(2, p.B, h_rank, h_size), (h_range){0, 0}, H_GRAD_STATES,
                  CRL_ERR_DOMAIN, "term 'd' (fr_dist): cv: the mean rate is 0");
    h_problem_free(&p);
}

static void test_correction_of_n_on_one_rank(void **state)
{
    (void) state;
    /* The last rank holds 3 neurons, the others 4; correction 3 fails there
     * only, before the ranks compare widths. */
    int last = h_size - 1;
    h_problem p = {.dtype = CRL_FLOAT64, .B = 7, .T = 5, .N = h_rank == last ? 3 : 4};
    h_problem_fill(&p, 50, 0.1, 1.0);
    char needle[128];
    snprintf(needle, sizeof needle,
             "rank %d: term 'd' (fr_dist): correction 3 needs more than 3 neurons, got 3", last);
    for (int v = 0; v < 2; v++) {
        h_term terms[] = {{"d", "fr_dist", 1.0, v ? "metric=cv,correction=3" : "correction=3"}};
        h_check_error(&p, terms, 1, h_split(0, p.B, h_rank, h_size), (h_range){0, 0},
                      H_GRAD_STATES, CRL_ERR_INVALID, needle);
    }
    h_problem_free(&p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sd_by_hand),
        cmocka_unit_test(test_cv_by_hand),
        cmocka_unit_test(test_mean_ad_by_hand),
        cmocka_unit_test(test_max_ad_by_hand),
        cmocka_unit_test(test_ties_and_zero_deviations),
        cmocka_unit_test(test_correction_one_is_torch_std),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_bitwise_identical_across_splits_and_layouts),
        cmocka_unit_test(test_cv_of_zero_mean_is_a_domain_error),
        cmocka_unit_test(test_correction_of_n_on_one_rank),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "fr_dist");
}
