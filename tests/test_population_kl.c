/*
 * test_population_kl.c - PopulationKL (src/terms/population_kl.c, docs/losses.md
 * "PopulationKL"): hand-computed values of every reduction, symmetric and
 * not, and a hand-computed gradient; gradients of both populations against
 * finite differences; bitwise identity across splits (states and states1
 * split differently) and layouts; errors raised on one rank only.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/*
 * N = 2.  P = states (B=2, T=1):   b=0: (0, -1)   b=1: (2, 1)
 *   neuron 0: {0, 2}, mu = 1, v = 1;  neuron 1: {-1, 1}, mu = 0, v = 1.
 * Q = states1 (B1=2, T1=2):  b=0: (1, -2), (3, 2)   b=1: (1, 2), (3, -2)
 *   neuron 0: {1, 3, 1, 3}, mu = 2, v = 1;  neuron 1: {-2, 2, 2, -2}, mu = 0, v = 4.
 * KL_0(P||Q) = 1/2 [log 1 + (1 + 1)/1 - 1] = 1/2, KL_0(Q||P) = 1/2 likewise.
 * KL_1(P||Q) = 1/2 [log 4 + 1/4 - 1] = log 2 - 3/8,
 * KL_1(Q||P) = 1/2 [log(1/4) + 4/1 - 1] = 3/2 - log 2.
 * Symmetric: d = (1/2, 1/2 (9/8)) = (1/2, 9/16).
 * sum S^2: P 0 + 4 + 1 + 1 = 6 over B T = 2 -> 3; Q 20 + 16 = 36 over 4 -> 9;
 * R = reg (3 + 9) = 12 reg.
 */
static const double hand_p[4] = {0, -1, 2, 1};
static const double hand_q[8] = {1, -2, 3, 2, 1, 2, 3, -2};

static h_problem hand_problem(double *p, double *q)
{
    memcpy(p, hand_p, sizeof hand_p);
    memcpy(q, hand_q, sizeof hand_q);
    return (h_problem){.dtype = CRL_FLOAT64, .B = 2, .T = 1, .N = 2, .B1 = 2, .T1 = 2,
                       .states = p, .states1 = q};
}

static void assert_close(double got, double want)
{
    if (!(fabs(got - want) <= 1e-14 * fmax(1, fabs(want))))
        fail_msg("got %.17g, want %.17g", got, want);
}

static double hand_total(const char *params)
{
    double p[4], q[8];
    h_problem pr = hand_problem(p, q);
    h_term terms[] = {{"kl", "population_kl", 2.0, params}};
    h_result r;
    h_eval_self(&pr, terms, 1, 0, &r);
    if (r.status != CRL_OK)
        fail_msg("%s: %s", params, r.message);
    assert_int_equal(r.n_values, 1);
    assert_close(h_value(&r, "kl"), r.total);
    double total = r.total;
    h_result_free(&r);
    return total;
}

static void test_values_by_hand(void **state)
{
    (void) state;
    double ln2 = log(2.0);
    /* Weight 2 throughout. */
    assert_close(hand_total("reg=0.01"), 2 * ((0.5 + 9.0 / 16) / 2 + 0.12));
    assert_close(hand_total(NULL), 2 * ((0.5 + 9.0 / 16) / 2 + 0.012));
    assert_close(hand_total("reg=0.01,reduction=sum"), 2 * (0.5 + 9.0 / 16 + 0.12));
    assert_close(hand_total("reg=0,symmetric=false"), 2 * (0.5 + ln2 - 0.375) / 2);
    assert_close(hand_total("reg=0.5,symmetric=false,reduction=sum"), 2 * (0.5 + ln2 - 0.375 + 6));
}

static void test_var_eps_by_hand(void **state)
{
    (void) state;
    /* var_eps = 1: v^P = (2, 2), v^Q = (2, 5).
     * KL_0 both ways: 1/2 [0 + (2 + 1)/2 - 1] = 1/4.
     * KL_1(P||Q) = 1/2 [log(5/2) + 2/5 - 1], KL_1(Q||P) = 1/2 [log(2/5) + 5/2 - 1];
     * symmetric d_1 = 1/4 (2/5 + 5/2 - 2) = 9/40. */
    assert_close(hand_total("reg=0,var_eps=1,reduction=sum"), 2 * (0.25 + 9.0 / 40));
}

static void test_reduction_none_reports_the_divergences(void **state)
{
    (void) state;
    double p[4], q[8];
    h_problem pr = hand_problem(p, q);
    h_term terms[] = {{"kl", "population_kl", 2.0, "reg=0.01,reduction=none"},
                      {"other", "population_kl", 1.0, "reg=0"}};
    h_result r;
    h_eval_self(&pr, terms, 2, 0, &r);
    assert_int_equal(r.status, CRL_OK);
    assert_int_equal(r.n_values, 3);
    assert_string_equal(r.names[0], "kl");
    assert_string_equal(r.names[1], "kl.reg");
    assert_string_equal(r.names[2], "other");
    assert_int_equal(r.lengths[0], 2);
    assert_int_equal(r.lengths[1], 1);
    /* Weighted d = 2 (1/2, 9/16), R = 2 * 0.12; neither is in the total,
     * which is the other term's alone. */
    assert_close(r.values[0], 1.0);
    assert_close(r.values[1], 9.0 / 8);
    assert_close(r.values[2], 0.24);
    assert_close(r.total, (0.5 + 9.0 / 16) / 2);
    h_result_free(&r);
}

static void test_gradient_by_hand(void **state)
{
    (void) state;
    double p[4], q[8];
    h_problem pr = hand_problem(p, q);
    h_term terms[] = {{"kl", "population_kl", 1.0, "reg=0.25"}};
    h_result r;
    h_eval_self(&pr, terms, 1, H_GRAD_STATES | H_GRAD_STATES1, &r);
    assert_int_equal(r.status, CRL_OK);
    /*
     * Neuron 0, a = mu^P - mu^Q = -1, v^P = v^Q = 1:
     *   KL(P||Q): d/dmu^P = a/v^Q = -1, d/dv^P = 1/2 (1 - 1) = 0,
     *             d/dv^Q = 1/2 (1 - (1 + 1)/1) = -1/2;
     *   KL(Q||P): d/dmu^P = -1, d/dv^Q = 0, d/dv^P = -1/2.
     *   Symmetric, mean over N = 2: dL/dmu^P = -1/2, dL/dmu^Q = 1/2,
     *   dL/dv^P = dL/dv^Q = -1/8.
     * dL/dS^P = (dL/dmu^P + 2 dL/dv^P (S - 1) + 2 reg S) / 2:
     *   S = 0: (-1/2 + 1/4 + 0) / 2 = -1/8;  S = 2: (-1/2 - 1/4 + 1) / 2 = 1/8.
     * dL/dS^Q = (1/2 + 2 (-1/8)(S - 2) + 2 reg S) / 4:
     *   S = 1: (1/2 + 1/4 + 1/2) / 4 = 5/16;  S = 3: (1/2 - 1/4 + 3/2) / 4 = 7/16.
     */
    const double *dp = r.grad[0], *dq = r.grad[1];
    assert_close(dp[0], -1.0 / 8);
    assert_close(dp[2], 1.0 / 8);
    const double q0[4] = {5.0 / 16, 7.0 / 16, 5.0 / 16, 7.0 / 16};
    for (int k = 0; k < 4; k++)
        assert_close(dq[2 * k], q0[k]);
    h_result_free(&r);
}

static h_problem random_problem(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 7, .T = 5, .N = 6,
                   .B1 = 5, .T1 = 3};
    h_problem_fill(&p, seed, 0.1, 1.0);
    return p;
}

static const char *variants[] = {
    "",
    "symmetric=false",
    "reduction=sum,reg=0.1",
    "symmetric=false,reduction=sum,reg=0.1",
    "var_eps=0.01,reg=0",
};

static void test_gradients_match_finite_differences(void **state)
{
    (void) state;
    for (int v = 0; v < 5; v++) {
        h_problem p = random_problem(CRL_FLOAT64, v % 2, 10 + (uint64_t) v);
        p.B = 3;
        p.T = 2;
        h_term terms[] = {{"kl", "population_kl", 1.5, variants[v]}};
        h_check_gradients(&p, terms, 1, H_GRAD_STATES | H_GRAD_STATES1, 1e-6, 1e-6, 40);
        h_problem_free(&p);
    }
}

static void test_bitwise_identical_across_splits_and_layouts(void **state)
{
    (void) state;
    /* The five variants with gradients, then reduction=none without; states1
     * has its own B1, T1 and is split with a different pattern. */
    for (int v = 0; v < 6; v++) {
        bool none = v == 5;
        h_term terms[] = {{"kl", "population_kl", 0.7, none ? "reduction=none" : variants[v]}};
        h_check_exact(random_problem, 20 + (uint64_t) v, terms, 1,
                      none ? 0 : H_GRAD_STATES | H_GRAD_STATES1);
    }
}

/* A constant neuron (index 4) in one population: zero variance, for a
 * dyadic constant and for ones (0.3, 1/3) whose n c^2 the double-double sums
 * cannot hold exactly: the core treats a variance below the noise floor of
 * its sums as 0. */
static void test_zero_variance_is_a_domain_error(void **state)
{
    (void) state;
    const double constants[] = {0.5, 0.3, 1.0 / 3, 0.7};
    for (int which = 0; which < 8; which++) {
        h_problem p = random_problem(which % 2 ? CRL_FLOAT64 : CRL_FLOAT32, which % 2, 40);
        double *s = which % 2 ? p.states1 : p.states;
        int64_t count = which % 2 ? p.B1 * p.T1 : p.B * p.T;
        double c = constants[which / 2];
        if (p.dtype == CRL_FLOAT32)
            c = (float) c;
        for (int64_t e = 0; e < count; e++)
            s[e * p.N + 4] = c;
        h_term terms[] = {{"kl", "population_kl", 1.0, NULL}};
        char needle[128];
        snprintf(needle, sizeof needle,
                 "term 'kl' (population_kl): neuron 4 of %s has variance 0 (var_eps = 0",
                 which % 2 ? "states1" : "states");
        h_check_error(&p, terms, 1, h_split(2, p.B, h_rank, h_size),
                      h_split(4, p.B1, h_rank, h_size), H_GRAD_STATES | H_GRAD_STATES1,
                      CRL_ERR_DOMAIN, needle);
        /* var_eps > 0 makes it legal. */
        terms[0].params = "var_eps=1e-3";
        h_check_splits(&p, terms, 1, H_GRAD_STATES | H_GRAD_STATES1);
        h_problem_free(&p);
    }
}

static void test_gradient_of_reduction_none_on_one_rank(void **state)
{
    (void) state;
    int last = h_size - 1;
    h_problem p = random_problem(CRL_FLOAT32, false, 41);
    h_term terms[] = {{"kl", "population_kl", 1.0, "reduction=none"}};
    unsigned grads[2] = {H_GRAD_STATES, H_GRAD_STATES1};
    char needle[160];
    snprintf(needle, sizeof needle,
             "rank %d: term 'kl' (population_kl): reduction=none is forward-only: no gradient "
             "of states or states1",
             last);
    for (int k = 0; k < 2; k++)
        h_check_error(&p, terms, 1, h_split(0, p.B, h_rank, h_size),
                      h_split(1, p.B1, h_rank, h_size), h_rank == last ? grads[k] : 0,
                      CRL_ERR_INVALID, needle);
    h_problem_free(&p);
}

static void test_neurons_that_differ_on_one_rank(void **state)
{
    (void) state;
    /* The last rank passes states1 with 5 neurons, states with 6. */
    int last = h_size - 1;
    h_problem p = random_problem(CRL_FLOAT64, false, 42);
    h_range r = h_split(0, p.B, h_rank, h_size), r1 = h_split(0, p.B1, h_rank, h_size);
    int64_t n1 = h_rank == last ? p.N - 1 : p.N;
    crl_tensors in = {0}, grad = {0};
    in.states = crl_array_batch_major(CRL_FLOAT64, r.count ? p.states + r.start * p.T * p.N : NULL,
                                      r.count, p.T, p.N);
    in.states1 = crl_array_batch_major(CRL_FLOAT64, r1.count ? p.states1 + r1.start * p.T1 * n1
                                                             : NULL,
                                       r1.count, p.T1, n1);
    double dp[7 * 5 * 6], dq[5 * 3 * 6];
    for (size_t e = 0; e < sizeof dp / sizeof *dp; e++)
        dp[e] = 1.5;
    for (size_t e = 0; e < sizeof dq / sizeof *dq; e++)
        dq[e] = 1.5;
    grad.states = in.states;
    grad.states.data = r.count ? dp : NULL;
    grad.states1 = in.states1;
    grad.states1.data = r1.count ? dq : NULL;
    crl_context *ctx;
    crl_loss *loss;
    h_assert_all(crl_context_create(MPI_COMM_WORLD, &ctx) == CRL_OK);
    h_assert_all(crl_loss_create(ctx, &loss) == CRL_OK);
    h_assert_all(crl_loss_add(loss, "kl", "population_kl", 1, NULL) == CRL_OK);
    h_result res = {.status = crl_loss_evaluate(loss, &in, &grad)};
    snprintf(res.message, sizeof res.message, "%s", crl_context_error(ctx));
    char needle[160];
    snprintf(needle, sizeof needle,
             "rank %d: term 'kl' (population_kl): states has 6 neurons but states1 has 5", last);
    h_assert_error(&res, CRL_ERR_INVALID, needle);
    bool untouched = true;
    for (size_t e = 0; e < sizeof dp / sizeof *dp; e++)
        untouched &= dp[e] == 1.5;
    for (size_t e = 0; e < sizeof dq / sizeof *dq; e++)
        untouched &= dq[e] == 1.5;
    h_assert_all(untouched);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    h_problem_free(&p);
}

static void test_nan_in_one_ranks_states1(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT32, true, 43);
    int last = h_size - 1;
    h_range theirs = h_split(1, p.B1, last, h_size);
    p.states1[((theirs.start + 3) * p.T1 + 1) * p.N + 2] = INFINITY;
    h_term terms[] = {{"kl", "population_kl", 1.0, NULL}};
    char needle[96];
    snprintf(needle, sizeof needle, "rank %d: states1[b=3, t=1, i=2] is infinite", last);
    h_check_error(&p, terms, 1, h_split(0, p.B, h_rank, h_size), h_split(1, p.B1, h_rank, h_size),
                  H_GRAD_STATES | H_GRAD_STATES1, CRL_ERR_NONFINITE, needle);
    h_problem_free(&p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_by_hand),
        cmocka_unit_test(test_var_eps_by_hand),
        cmocka_unit_test(test_reduction_none_reports_the_divergences),
        cmocka_unit_test(test_gradient_by_hand),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_bitwise_identical_across_splits_and_layouts),
        cmocka_unit_test(test_zero_variance_is_a_domain_error),
        cmocka_unit_test(test_gradient_of_reduction_none_on_one_rank),
        cmocka_unit_test(test_neurons_that_differ_on_one_rank),
        cmocka_unit_test(test_nan_in_one_ranks_states1),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "population_kl");
}
