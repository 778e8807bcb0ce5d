/*
 * test_cross_entropy.c - CrossEntropyLoss (src/terms/cross_entropy.c, docs/losses.md
 * "CrossEntropyLoss") and the output mask (docs/losses.md "Output masks"): hand-worked
 * values and gradients with and without the softmax, the clamp, masks of
 * width K and 1, gradients against finite differences, bitwise identity
 * across splits (empty and uneven shards), layouts and chunks, and its errors
 * raised on one rank only.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void assert_close(double got, double want)
{
    if (!(fabs(got - want) <= 1e-15 * fmax(1, fabs(want))))
        fail_msg("got %.17g, want %.17g", got, want);
}

/* B=1, T=2, K=2: logits (0, ln 3) give p = (1/4, 3/4), (0, 0) give (1/2, 1/2). */
static double logits[4], targets[4] = {1, 0, 0.5, 0.5};

static h_problem hand_problem(double *mask, int64_t k_mask)
{
    logits[0] = 0;
    logits[1] = log(3.0);
    logits[2] = logits[3] = 0;
    return (h_problem){.dtype = CRL_FLOAT64, .B = 1, .T = 2, .K = 2, .pred = logits,
                       .label = targets, .mask = mask, .K_mask = k_mask};
}

static void test_softmax_by_hand(void **state)
{
    (void) state;
    h_problem p = hand_problem(NULL, 0);
    h_term terms[] = {{"ce", "cross_entropy", 2.0, NULL}};
    h_result r;
    h_eval_self(&p, terms, 1, H_GRAD_PRED | H_GRAD_LABEL, &r);
    assert_int_equal(r.status, CRL_OK);
    /* L = -1/2 (log 1/4 + 1/2 log 1/2 + 1/2 log 1/2) = 3/2 ln 2; weight 2. */
    assert_close(r.total, 3 * log(2.0));
    assert_close(h_value(&r, "ce"), 3 * log(2.0));
    /* d/d pred = weight / (B T) (p sum(y) - y); d/d y = -weight log q / (B T). */
    const double *dp = r.grad[2], *dl = r.grad[3];
    const double want_dp[4] = {-0.75, 0.75, 0, 0};
    const double want_dl[4] = {log(4.0), -log(0.75), log(2.0), log(2.0)};
    for (int k = 0; k < 4; k++) {
        assert_close(dp[k], want_dp[k]);
        assert_close(dl[k], want_dl[k]);
    }
    h_result_free(&r);
}

static void test_probabilities_and_clamp_by_hand(void **state)
{
    (void) state;
    /* p = pred; 0.05 < clamp = 0.1: q = 0.1 and no gradient there. */
    double pred[3] = {0.5, 0.05, 0.45}, label[3] = {0.2, 0.3, 0.5};
    h_problem p = {.dtype = CRL_FLOAT64, .B = 1, .T = 1, .K = 3, .pred = pred, .label = label};
    h_term terms[] = {{"ce", "cross_entropy", 1.0, "apply_softmax=false,clamp=0.1"}};
    h_result r;
    h_eval_self(&p, terms, 1, H_GRAD_PRED | H_GRAD_LABEL, &r);
    assert_int_equal(r.status, CRL_OK);
    assert_close(r.total, -(0.2 * log(0.5) + 0.3 * log(0.1) + 0.5 * log(0.45)));
    const double *dp = r.grad[2], *dl = r.grad[3];
    assert_close(dp[0], -0.2 / 0.5);
    assert_true(dp[1] == 0);
    assert_close(dp[2], -0.5 / 0.45);
    assert_close(dl[0], -log(0.5));
    assert_close(dl[1], -log(0.1));
    assert_close(dl[2], -log(0.45));
    h_result_free(&r);
}

/* A mask of width 1 (0 at t = 1) keeps only the first row; width K the same
 * numbers give the same bits. */
static void test_mask_by_hand(void **state)
{
    (void) state;
    double m1[2] = {1, 0}, mk[4] = {1, 1, 0, 0};
    h_term terms[] = {{"ce", "cross_entropy", 1.0, NULL}};
    h_result r1, rk;
    h_problem p1 = hand_problem(m1, 1), pk = hand_problem(mk, 2);
    h_eval_self(&p1, terms, 1, H_GRAD_PRED | H_GRAD_LABEL, &r1);
    h_eval_self(&pk, terms, 1, H_GRAD_PRED | H_GRAD_LABEL, &rk);
    assert_int_equal(r1.status, CRL_OK);
    /* -1/(B T) log 1/4 = ln 2: the mean still over B T. */
    assert_close(r1.total, log(2.0));
    const double *dp = r1.grad[2], *dl = r1.grad[3];
    const double want_dp[4] = {-0.375, 0.375, 0, 0};
    const double want_dl[4] = {log(4.0) / 2, -log(0.75) / 2, 0, 0};
    for (int k = 0; k < 4; k++) {
        assert_close(dp[k], want_dp[k]);
        assert_close(dl[k], want_dl[k]);
    }
    char why[256];
    assert_true(h_result_equal_slice(&pk, &rk, &r1, (h_range){0, 1}, (h_range){0, 0}, why,
                                     sizeof why));
    h_result_free(&r1);
    h_result_free(&rk);
}

static h_problem random_problem(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 7, .T = 5, .K = 4, .K_mask = 4};
    h_problem_fill(&p, seed, 0, 1);
    return p;
}

static h_problem random_problem_mask1(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 6, .T = 3, .K = 3, .K_mask = 1};
    h_problem_fill(&p, seed, 0, 1);
    return p;
}

static void test_gradients_match_finite_differences(void **state)
{
    (void) state;
    const char *variants[] = {"", "apply_softmax=false", "clamp=0.3",
                              "apply_softmax=false,clamp=1e-3"};
    for (int v = 0; v < 4; v++)
        for (int masked = 0; masked < 2; masked++) {
            h_problem p = random_problem(CRL_FLOAT64, v % 2, 10 + (uint64_t) v);
            p.B = 3;
            if (v % 2) /* probabilities away from the clamp's kink */
                for (int64_t e = 0; e < p.B * p.T * p.K; e++)
                    p.pred[e] = 0.05 + 0.9 * fabs(p.pred[e]);
            if (!masked) {
                free(p.mask);
                p.mask = NULL;
                p.K_mask = 0;
            }
            h_term terms[] = {{"ce", "cross_entropy", 1.5, variants[v]},
                              {"m", "mse", 0.5, NULL}};
            h_check_gradients(&p, terms, 2, H_GRAD_PRED | H_GRAD_LABEL, 1e-6, 1e-6, 60);
            h_problem_free(&p);
        }
}

static void test_bitwise_identical_across_splits_and_layouts(void **state)
{
    (void) state;
    h_term terms[] = {{"ce", "cross_entropy", 0.7, NULL}, {"m", "mse", 0.3, NULL},
                      {"r", "rnn", 0.2, ""}};
    h_check_exact(random_problem, 20, terms, 3, H_GRAD_PRED | H_GRAD_LABEL);
    h_check_exact(random_problem_mask1, 21, terms, 3, H_GRAD_PRED | H_GRAD_LABEL);
    h_term plain[] = {{"ce", "cross_entropy", 1.0, "apply_softmax=false,clamp=0.2"}};
    h_check_exact(random_problem, 22, plain, 1, H_GRAD_PRED | H_GRAD_LABEL);
}

static void test_chunks_give_identical_results(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT64, false, 25);
    h_term terms[] = {{"ce", "cross_entropy", 1.0, NULL}, {"m", "mse", 1.0, NULL}};
    h_check_chunks(&p, terms, 2, H_GRAD_PRED | H_GRAD_LABEL, 3);
    h_problem_free(&p);
}

/* A mask reaches only the terms that take one: fr ignores it, whatever its shape. */
static void test_mask_ignored_without_an_output_term(void **state)
{
    (void) state;
    h_problem p = {.dtype = CRL_FLOAT64, .B = 4, .T = 3, .N = 2, .K = 2, .K_mask = 2};
    h_problem_fill(&p, 30, 0, 1);
    h_problem q = p;
    q.mask = NULL;
    q.K_mask = 0;
    h_term terms[] = {{"fr", "fr", 1.0, NULL}, {"r", "rnn", 1.0, "lambda_mse=0,lambda_fr=1"}};
    h_result with, without;
    h_eval_self(&p, terms, 2, H_GRAD_STATES, &with);
    h_eval_self(&q, terms, 2, H_GRAD_STATES, &without);
    assert_int_equal(with.status, CRL_OK);
    char why[256];
    assert_true(h_result_equal_slice(&q, &without, &with, (h_range){0, p.B}, (h_range){0, 0}, why,
                                     sizeof why));
    h_result_free(&with);
    h_result_free(&without);
    h_problem_free(&p);
}

static void expect_add_error(const char *params, const char *needle)
{
    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_SELF, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "ce", "cross_entropy", 1, params), CRL_ERR_INVALID);
    if (strstr(crl_context_error(ctx), needle) == NULL)
        fail_msg("'%s' does not contain '%s'", crl_context_error(ctx), needle);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
}

static void test_parameter_ranges(void **state)
{
    (void) state;
    expect_add_error("clamp=0", "parameter clamp: 0 is outside");
    expect_add_error("clamp=-1e-12", "parameter clamp: -9.9999999999999998e-13 is outside");
    expect_add_error("clamp=2", "parameter clamp: 2 is outside");
    expect_add_error("apply_softmax=maybe", "'maybe' is not a boolean");
}

static void test_mask_of_the_wrong_width(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT64, false, 40);
    h_problem_free(&p);
    p = (h_problem){.dtype = CRL_FLOAT64, .B = 7, .T = 5, .K = 4, .K_mask = 2};
    h_problem_fill(&p, 40, 0, 1);
    h_term terms[] = {{"ce", "cross_entropy", 1.0, NULL}};
    h_range mine = h_split(2, p.B, h_rank, h_size);
    h_check_error(&p, terms, 1, mine, (h_range){0, 0}, H_GRAD_PRED, CRL_ERR_INVALID,
                  "must be pred's shape");
    h_problem_free(&p);
}

static void test_nan_in_one_ranks_mask(void **state)
{
    (void) state;
    for (int dt = 0; dt < 2; dt++) {
        h_problem p = random_problem(dt ? CRL_FLOAT64 : CRL_FLOAT32, dt == 0, 41);
        int last = h_size - 1;
        h_range theirs = h_split(0, p.B, last, h_size);
        p.mask[((theirs.start + 0) * p.T + 3) * p.K_mask + 2] = NAN;
        h_term terms[] = {{"ce", "cross_entropy", 1.0, NULL}};
        char needle[96];
        snprintf(needle, sizeof needle,
                 "rank %d: term 'ce' (cross_entropy): mask[b=0, t=3, i=2] is NaN", last);
        h_check_error(&p, terms, 1, h_split(0, p.B, h_rank, h_size), (h_range){0, 0},
                      H_GRAD_PRED | H_GRAD_LABEL, CRL_ERR_NONFINITE, needle);
        h_problem_free(&p);
    }
}

static void test_inf_in_one_ranks_pred(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT64, false, 42);
    int last = h_size - 1;
    h_range theirs = h_split(2, p.B, last, h_size);
    p.pred[((theirs.start + 1) * p.T + 4) * p.K + 0] = INFINITY;
    h_term terms[] = {{"ce", "cross_entropy", 1.0, NULL}};
    char needle[96];
    snprintf(needle, sizeof needle,
             "rank %d: term 'ce' (cross_entropy): pred[b=1, t=4, i=0] is infinite", last);
    h_check_error(&p, terms, 1, h_split(2, p.B, h_rank, h_size), (h_range){0, 0}, H_GRAD_PRED,
                  CRL_ERR_NONFINITE, needle);
    h_problem_free(&p);
}

/* pred and label must agree; the mask has no gradient to ask for. */
/* -inf in pred is hidden by the softmax (exp gives 0) and, without one, by
 * the clamp: still a non-finite input. */
static void test_minus_inf_hidden_by_softmax_and_clamp(void **state)
{
    (void) state;
    for (int softmax = 0; softmax < 2; softmax++) {
        h_problem p = random_problem(CRL_FLOAT64, false, 43);
        p.pred[(2 * p.T + 1) * p.K + 3] = -INFINITY;
        h_term terms[] = {{"ce", "cross_entropy", 1.0,
                           softmax ? "apply_softmax=true" : "apply_softmax=false"}};
        h_check_error(&p, terms, 1, h_split(0, p.B, h_rank, h_size), (h_range){0, 0}, H_GRAD_PRED,
                      CRL_ERR_NONFINITE, "is infinite");
        h_problem_free(&p);
    }
}

static void test_shapes_and_mask_gradient(void **state)
{
    (void) state;
    double pred[6] = {0}, label[4] = {0}, mask[2] = {1, 1}, dmask[2];
    crl_context *ctx;
    crl_loss *loss;
    h_assert_all(crl_context_create(MPI_COMM_WORLD, &ctx) == CRL_OK);
    h_assert_all(crl_loss_create(ctx, &loss) == CRL_OK);
    h_assert_all(crl_loss_add(loss, "ce", "cross_entropy", 1, NULL) == CRL_OK);
    crl_tensors in = {0}, grad = {0};
    in.pred = crl_array_batch_major(CRL_FLOAT64, pred, 1, 2, 3);
    in.label = crl_array_batch_major(CRL_FLOAT64, label, 1, 2, 2);
    h_assert_all(crl_loss_evaluate(loss, &in, NULL) == CRL_ERR_INVALID);
    h_assert_all(strstr(crl_context_error(ctx), "pred (1, 2, 3) and label (1, 2, 2) differ")
                 != NULL);
    in.pred.width = 2;
    in.pred.batch_stride = 4;
    in.pred.time_stride = 2;
    in.mask = crl_array_batch_major(CRL_FLOAT64, mask, 1, 2, 1);
    grad.mask = crl_array_batch_major(CRL_FLOAT64, dmask, 1, 2, 1);
    h_assert_all(crl_loss_evaluate(loss, &in, &grad) == CRL_ERR_INVALID);
    h_assert_all(strstr(crl_context_error(ctx), "gradient of mask") != NULL);
    grad.mask = (crl_array){0};
    h_assert_all(crl_loss_evaluate(loss, &in, &grad) == CRL_OK);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_by_hand),
        cmocka_unit_test(test_probabilities_and_clamp_by_hand),
        cmocka_unit_test(test_mask_by_hand),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_bitwise_identical_across_splits_and_layouts),
        cmocka_unit_test(test_chunks_give_identical_results),
        cmocka_unit_test(test_mask_ignored_without_an_output_term),
        cmocka_unit_test(test_parameter_ranges),
        cmocka_unit_test(test_mask_of_the_wrong_width),
        cmocka_unit_test(test_nan_in_one_ranks_mask),
        cmocka_unit_test(test_inf_in_one_ranks_pred),
        cmocka_unit_test(test_minus_inf_hidden_by_softmax_and_clamp),
        cmocka_unit_test(test_shapes_and_mask_gradient),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "cross_entropy");
}
