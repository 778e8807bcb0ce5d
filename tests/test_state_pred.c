/*
 * test_state_pred.c - StatePredictionLoss (src/terms/state_pred.c, docs/losses.md
 * "StatePredictionLoss"): hand-computed values and gradients, a direct
 * reference when lagged rows lie outside the engine's tiles, finite
 * differences, bitwise identity across splits and layouts, and the errors.
 * Chunked evaluation and composites with entropy: test_entropy.c.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void assert_close(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol * fmax(1, fabs(want))))
        fail_msg("got %.17g, want %.17g", got, want);
}

/* B=2, T=3, N=2, worked out by hand below. */
static const double hand_states[12] = {
    1, 2, /* b=0, t=0 */ 3, 0, /* t=1 */ 0, 1, /* t=2 */
    2, 2, /* b=1, t=0 */ 2, 5, /* t=1 */ 4, 1, /* t=2 */
};

static h_problem hand_problem(double *states, bool time_major)
{
    memcpy(states, hand_states, sizeof hand_states);
    return (h_problem){.dtype = CRL_FLOAT64, .time_major = time_major, .B = 2, .T = 3, .N = 2,
                       .states = states};
}

static void test_hand_computed_tau_1(void **state)
{
    (void) state;
    for (int tm = 0; tm < 2; tm++) {
        double s[12];
        h_problem p = hand_problem(s, tm);
        /* D = S_t - S_{t+1}:  b=0: (-2, 2), (3, -1)   -> 8 + 10 = 18
         *                     b=1: (0, -3), (-2, 4)   -> 9 + 20 = 29
         * L = 47 / (B (T - 1) N) = 47 / 8; the term reports 2 L. */
        h_term terms[] = {{"sp", "state_pred", 2.0, NULL}};
        h_result r;
        h_eval_self(&p, terms, 1, H_GRAD_STATES, &r);
        assert_int_equal(r.status, CRL_OK);
        assert_close(h_value(&r, "sp"), 2 * 47.0 / 8, 1e-15);
        assert_close(r.total, 2 * 47.0 / 8, 1e-15);
        /* 2 * 2/(B (T-1) N) (D_t [t < 2] - D_{t-1} [t >= 1]) = 0.5 (...):
         * b=0: t0 0.5 (-2, 2); t1 0.5 ((3, -1) - (-2, 2)); t2 -0.5 (3, -1)
         * b=1: t0 0.5 (0, -3); t1 0.5 ((-2, 4) - (0, -3)); t2 -0.5 (-2, 4) */
        const double want[12] = {-1, 1, 2.5, -1.5, -1.5, 0.5, 0, -1.5, -1, 3.5, 1, -2};
        const double *g = r.grad[0];
        for (int k = 0; k < 12; k++)
            assert_close(g[k], want[k], 1e-15);
        h_result_free(&r);
    }
}

static void test_hand_computed_tau_2(void **state)
{
    (void) state;
    double s[12];
    h_problem p = hand_problem(s, false);
    /* tau = 2 = T - 1: one difference per element.  b=0: (1, 1) -> 2;
     * b=1: (-2, 1) -> 5;  L = 7 / (B (T - 2) N) = 7 / 4.  Gradient
     * 2/4 (D_0 at t=0, -D_0 at t=2, 0 at t=1). */
    h_term terms[] = {{"sp", "state_pred", 1.0, "tau=2"}};
    h_result r;
    h_eval_self(&p, terms, 1, H_GRAD_STATES, &r);
    assert_int_equal(r.status, CRL_OK);
    assert_close(r.total, 7.0 / 4, 1e-15);
    const double want[12] = {0.5, 0.5, 0, 0, -0.5, -0.5, -1, 0.5, 0, 0, 1, -0.5};
    const double *g = r.grad[0];
    for (int k = 0; k < 12; k++)
        assert_close(g[k], want[k], 1e-15);
    h_result_free(&r);
}

/* The formulas of docs/losses.md, directly, on a float64 problem: value and gradient. */
static double reference(const h_problem *p, int64_t tau, double weight, double *grad)
{
    int64_t B = p->B, T = p->T, N = p->N;
    double denom = (double) (B * (T - tau) * N), sum = 0;
    memset(grad, 0, sizeof(double) * (size_t) (B * T * N));
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t + tau < T; t++)
            for (int64_t i = 0; i < N; i++) {
                double d = p->states[(b * T + t) * N + i] - p->states[(b * T + t + tau) * N + i];
                sum += d * d;
                grad[(b * T + t) * N + i] += weight * 2 * d / denom;
                grad[(b * T + t + tau) * N + i] -= weight * 2 * d / denom;
            }
    return weight * sum / denom;
}

/* Gradient element e of a result as double, whatever the problem's dtype. */
static double grad_at(const h_problem *p, const h_result *r, int64_t e)
{
    return p->dtype == CRL_FLOAT32 ? ((const float *) r->grad[0])[e]
                                   : ((const double *) r->grad[0])[e];
}

/* N = 2048 makes the engine's tiles 4 rows, so lags of 1, 3, 4, 6 and 12
 * reach into the next tile, across several tiles and past the end of the
 * element; the term reads those rows from the raw array, float32 and
 * float64, batch- and time-major.  The float32 problem holds float values,
 * so the reference sees the term's inputs; its gradient is then rounded to
 * float32 once. */
static void test_lags_across_tiles_match_a_direct_reference(void **state)
{
    (void) state;
    const int64_t lags[] = {1, 3, 4, 6, 12};
    for (int k = 0; k < 5; k++)
        for (int variant = 0; variant < 4; variant++) {
            crl_dtype dtype = variant < 2 ? CRL_FLOAT64 : CRL_FLOAT32;
            h_problem p = {.dtype = dtype, .time_major = variant % 2, .B = 2, .T = 13, .N = 2048};
            h_problem_fill(&p, 100 + (uint64_t) k, -1, 1);
            char params[32];
            snprintf(params, sizeof params, "tau=%lld", (long long) lags[k]);
            h_term terms[] = {{"sp", "state_pred", 0.5, params}};
            double *want = malloc(sizeof(double) * (size_t) (p.B * p.T * p.N));
            assert_non_null(want);
            double value = reference(&p, lags[k], 0.5, want);
            h_result r;
            h_eval_self(&p, terms, 1, H_GRAD_STATES, &r);
            assert_int_equal(r.status, CRL_OK);
            assert_close(r.total, value, 1e-13);
            for (int64_t e = 0; e < p.B * p.T * p.N; e++) {
                double g = grad_at(&p, &r, e);
                double tol = dtype == CRL_FLOAT32 ? 1e-7 * fabs(want[e]) + 1e-30 : 1e-15;
                if (!(fabs(g - want[e]) <= tol))
                    fail_msg("tau %lld, variant %d: gradient %lld: %.17g vs %.17g",
                             (long long) lags[k], variant, (long long) e, g, want[e]);
            }
            h_result_free(&r);
            free(want);
            h_problem_free(&p);
        }
}

static void test_gradients_match_finite_differences(void **state)
{
    (void) state;
    /* tau = 1, 2, and T = tau + 1 (one difference per element). */
    const struct {
        int64_t T;
        const char *params;
    } cases[] = {{6, "tau=1"}, {6, "tau=2"}, {3, "tau=2"}, {2, NULL}};
    for (int k = 0; k < 4; k++) {
        h_problem p = {.dtype = CRL_FLOAT64, .time_major = k % 2, .B = 3, .T = cases[k].T, .N = 4};
        h_problem_fill(&p, 200 + (uint64_t) k, -1, 1);
        h_term terms[] = {{"sp", "state_pred", 1.5, cases[k].params}};
        h_check_gradients(&p, terms, 1, H_GRAD_STATES, 1e-6, 1e-7, 80);
        h_problem_free(&p);
    }
}






/* N = 1024: 8-row tiles, and lags inside and beyond a tile. */
static h_problem tiled_problem(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 7, .T = 19, .N = 1024};
    h_problem_fill(&p, seed, 0, 1);
    return p;
}

static void test_bitwise_identical_across_splits_and_layouts(void **state)
{
    (void) state;
    h_term terms[] = {{"near", "state_pred", 0.7, "tau=1"}, {"far", "state_pred", 1.3, "tau=10"}};
    h_check_exact(tiled_problem, 300, terms, 2, H_GRAD_STATES);
}

static void test_t_not_above_tau_is_invalid(void **state)
{
    (void) state;
    const char *params[] = {"tau=3", "tau=4"};
    for (int k = 0; k < 2; k++) {
        h_problem p = {.dtype = CRL_FLOAT32, .B = 5, .T = 3, .N = 4};
        h_problem_fill(&p, 700, 0, 1);
        h_term terms[] = {{"lagged", "state_pred", 1.0, params[k]}};
        char needle[128];
        snprintf(needle, sizeof needle,
                 "term 'lagged' (state_pred): T = 3 time steps, but tau = %d needs T > tau", 3 + k);
        h_check_error(&p, terms, 1, h_split(2, p.B, h_rank, h_size), (h_range){0, 0},
                      H_GRAD_STATES, CRL_ERR_INVALID, needle);
        h_problem_free(&p);
    }
}

static void test_tau_must_be_a_positive_integer(void **state)
{
    (void) state;
    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_SELF, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "a", "state_pred", 1, "tau=0"), CRL_ERR_INVALID);
    assert_int_equal(crl_loss_add(loss, "b", "state_pred", 1, "tau=1.5"), CRL_ERR_INVALID);
    assert_non_null(strstr(crl_context_error(ctx), "tau: 1.5 is not an integer"));
    assert_int_equal(crl_loss_add(loss, "c", "state_pred", 1, "tau=7"), CRL_OK);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
}


static void test_nan_in_one_ranks_slice(void **state)
{
    (void) state;
    h_problem p = {.dtype = CRL_FLOAT64, .B = 7, .T = 5, .N = 6};
    h_problem_fill(&p, 800, 0, 1);
    int last = h_size - 1;
    h_range theirs = h_split(0, p.B, last, h_size);
    p.states[((theirs.start + theirs.count - 1) * p.T + 4) * p.N + 2] = NAN;
    h_term terms[] = {{"sp", "state_pred", 1.0, "tau=2"}};
    char needle[96];
    snprintf(needle, sizeof needle, "rank %d: states[b=%lld, t=4, i=2] is NaN", last,
             (long long) theirs.count - 1);
    h_check_error(&p, terms, 1, h_split(0, p.B, h_rank, h_size), (h_range){0, 0}, H_GRAD_STATES,
                  CRL_ERR_NONFINITE, needle);
    h_problem_free(&p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed_tau_1),
        cmocka_unit_test(test_hand_computed_tau_2),
        cmocka_unit_test(test_lags_across_tiles_match_a_direct_reference),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_bitwise_identical_across_splits_and_layouts),
        cmocka_unit_test(test_t_not_above_tau_is_invalid),
        cmocka_unit_test(test_tau_must_be_a_positive_integer),
        cmocka_unit_test(test_nan_in_one_ranks_slice),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "state_pred");
}
