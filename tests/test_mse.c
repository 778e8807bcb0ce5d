/*
 * test_mse.c - the standalone MSE term (src/terms/mse.c, docs/losses.md,
 * "mse"): a hand-computed value and gradient, gradients against
 * finite differences, bitwise identity across splits and layouts, several
 * mse terms in one loss, and errors raised on one rank only.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void assert_close(double got, double want)
{
    if (!(fabs(got - want) <= 1e-15 * fmax(1, fabs(want))))
        fail_msg("got %.17g, want %.17g", got, want);
}

static void test_by_hand(void **state)
{
    (void) state;
    /* B=2, T=2, K=1: pred - label = (0.5, -1, 1, -1), squares sum to 3.25. */
    double pred[4] = {0.5, -1, 2, 0}, label[4] = {0, 0, 1, 1};
    h_problem p = {.dtype = CRL_FLOAT64, .B = 2, .T = 2, .K = 1, .pred = pred, .label = label};
    h_term terms[] = {{"mse", "mse", 3.0, NULL}};
    h_result r;
    h_eval_self(&p, terms, 1, H_GRAD_PRED | H_GRAD_LABEL, &r);
    assert_int_equal(r.status, CRL_OK);
    assert_int_equal(r.n_values, 1);
    /* 3 * 3.25 / 4 */
    assert_close(h_value(&r, "mse"), 3 * 3.25 / 4);
    assert_close(r.total, 3 * 3.25 / 4);
    /* d/d pred = 3 * 2 (pred - label) / 4 = 1.5 (pred - label); d/d label = -that. */
    const double diff[4] = {0.5, -1, 1, -1};
    const double *dp = r.grad[2], *dl = r.grad[3];
    for (int k = 0; k < 4; k++) {
        assert_close(dp[k], 1.5 * diff[k]);
        assert_close(dl[k], -1.5 * diff[k]);
    }
    h_result_free(&r);
}

/* docs/losses.md "Output masks": 1/(B T K) sum (m (pred - label))^2, PsychRNN's form. */
static void test_mask_by_hand(void **state)
{
    (void) state;
    double pred[4] = {0.5, -1, 2, 0}, label[4] = {0, 0, 1, 1}, mask[4] = {1, 0.5, 0, 2};
    h_problem p = {.dtype = CRL_FLOAT64, .B = 2, .T = 2, .K = 1, .pred = pred, .label = label,
                   .mask = mask, .K_mask = 1};
    h_term terms[] = {{"mse", "mse", 3.0, NULL}};
    h_result r;
    h_eval_self(&p, terms, 1, H_GRAD_PRED | H_GRAD_LABEL, &r);
    assert_int_equal(r.status, CRL_OK);
    /* (m d)^2 = 0.25, 0.25, 0, 4; the mean still over all B T K. */
    assert_close(r.total, 3 * 4.5 / 4);
    /* d/d pred = 3 * 2 m^2 d / 4 */
    const double want[4] = {0.75, -0.375, 0, -6};
    const double *dp = r.grad[2], *dl = r.grad[3];
    for (int k = 0; k < 4; k++) {
        assert_close(dp[k], want[k]);
        assert_close(dl[k], -want[k]);
    }
    h_result_free(&r);
}

static h_problem masked_problem(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 7, .T = 5, .K = 3,
                   .K_mask = seed % 2 ? 1 : 3};
    h_problem_fill(&p, seed, 0, 1);
    return p;
}

static void test_masked_gradients_and_exactness(void **state)
{
    (void) state;
    h_term terms[] = {{"mse", "mse", 1.5, NULL}};
    for (uint64_t seed = 50; seed < 52; seed++) {
        h_problem p = masked_problem(CRL_FLOAT64, seed % 2, seed);
        p.B = 3;
        h_check_gradients(&p, terms, 1, H_GRAD_PRED | H_GRAD_LABEL, 1e-6, 1e-6, 60);
        h_problem_free(&p);
        h_check_exact(masked_problem, seed, terms, 1, H_GRAD_PRED | H_GRAD_LABEL);
    }
}

static h_problem random_problem(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 7, .T = 5, .K = 3};
    h_problem_fill(&p, seed, 0, 1);
    return p;
}

static void test_gradients_match_finite_differences(void **state)
{
    (void) state;
    for (int tm = 0; tm < 2; tm++) {
        h_problem p = random_problem(CRL_FLOAT64, tm, 10);
        p.B = 3;
        h_term terms[] = {{"mse", "mse", 1.5, NULL}};
        h_check_gradients(&p, terms, 1, H_GRAD_PRED | H_GRAD_LABEL, 1e-6, 1e-6, 60);
        h_problem_free(&p);
    }
}

static void test_bitwise_identical_across_splits_and_layouts(void **state)
{
    (void) state;
    h_term terms[] = {{"mse", "mse", 0.7, NULL}};
    h_check_exact(random_problem, 20, terms, 1, H_GRAD_PRED | H_GRAD_LABEL);
}

/* The output error's two routes give the same bits: float32 pred and
 * label without a mask are read raw (outputs.c), with a mask of ones as
 * double rows; K = 2 over 600 steps spreads each column over its lanes;
 * both layouts, gradients accumulated into non-zero buffers, overwritten,
 * and scaled. */
static void test_raw_rows_give_the_bits_of_double_rows(void **state)
{
    (void) state;
    h_term terms[] = {{"mse", "mse", 1.5, NULL}};
    for (int tm = 0; tm < 2; tm++)
        for (int mode = 0; mode < 3; mode++) {
            h_problem masked = {.dtype = CRL_FLOAT32, .time_major = tm, .B = 3, .T = 600, .K = 2,
                                .K_mask = 2};
            h_problem_fill(&masked, 70 + (uint64_t) tm, 0, 1);
            /* Magnitudes 2^-20 .. 2^10: sums that round, so that the
             * order of the lanes shows in the bits. */
            for (int64_t k = 0; k < masked.B * masked.T * masked.K; k++) {
                masked.mask[k] = 1.0;
                masked.pred[k] = ldexp(masked.pred[k], (int) ((k * 7) % 31) - 20);
            }
            h_problem plain = masked;
            plain.K_mask = 0;
            plain.mask = NULL;
            h_grad_fill = mode == 0 ? 0.25 : 0.5;
            h_grad_mode = mode == 1 ? CRL_GRAD_OVERWRITE : CRL_GRAD_ACCUMULATE;
            h_grad_scale = mode == 2 ? -0.75 : 1.0;
            h_result a, b;
            h_eval_self(&plain, terms, 1, H_GRAD_PRED | H_GRAD_LABEL, &a);
            h_eval_self(&masked, terms, 1, H_GRAD_PRED | H_GRAD_LABEL, &b);
            assert_int_equal(a.status, CRL_OK);
            assert_int_equal(b.status, CRL_OK);
            assert_memory_equal(&a.total, &b.total, sizeof a.total);
            for (int g = 2; g < 4; g++) {
                assert_int_equal(a.grad_bytes[g], b.grad_bytes[g]);
                assert_memory_equal(a.grad[g], b.grad[g], a.grad_bytes[g]);
            }
            h_result_free(&a);
            h_result_free(&b);
            h_problem_free(&masked);
        }
    h_grad_fill = 0;
    h_grad_mode = CRL_GRAD_ACCUMULATE;
    h_grad_scale = 1.0;
}

static void test_two_mse_terms_add_up(void **state)
{
    (void) state;
    /* Weights 0.5 and 1.5 share one sum of squared errors: the total and the
     * gradient are those of one term of weight 2. */
    h_problem p = random_problem(CRL_FLOAT64, false, 35);
    h_term two[] = {{"a", "mse", 0.5, NULL}, {"b", "mse", 1.5, NULL}};
    h_term one[] = {{"c", "mse", 2.0, NULL}};
    h_result r2, r1;
    h_eval_self(&p, two, 2, H_GRAD_PRED, &r2);
    h_eval_self(&p, one, 1, H_GRAD_PRED, &r1);
    assert_int_equal(r2.status, CRL_OK);
    assert_close(h_value(&r2, "b"), 3 * h_value(&r2, "a"));
    assert_close(r2.total, r1.total);
    const double *d2 = r2.grad[2], *d1 = r1.grad[2];
    for (int64_t e = 0; e < p.B * p.T * p.K; e++)
        assert_close(d2[e], d1[e]);
    h_result_free(&r2);
    h_result_free(&r1);
    h_problem_free(&p);
}

static void test_nan_in_one_ranks_label(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT32, true, 40);
    int last = h_size - 1;
    h_range theirs = h_split(2, p.B, last, h_size);
    p.label[((theirs.start + 1) * p.T + 2) * p.K + 1] = NAN;
    h_term terms[] = {{"mse", "mse", 1.0, NULL}};
    char needle[96];
    snprintf(needle, sizeof needle, "rank %d: label[b=1, t=2, i=1] is NaN", last);
    h_check_error(&p, terms, 1, h_split(2, p.B, h_rank, h_size), (h_range){0, 0},
                  H_GRAD_PRED | H_GRAD_LABEL, CRL_ERR_NONFINITE, needle);
    h_problem_free(&p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_by_hand),
        cmocka_unit_test(test_mask_by_hand),
        cmocka_unit_test(test_raw_rows_give_the_bits_of_double_rows),
        cmocka_unit_test(test_masked_gradients_and_exactness),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_bitwise_identical_across_splits_and_layouts),
        cmocka_unit_test(test_two_mse_terms_add_up),
        cmocka_unit_test(test_nan_in_one_ranks_label),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "mse");
}
