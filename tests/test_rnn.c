/*
 * test_rnn.c - RNNLoss (src/terms/rnn.c, docs/losses.md "RNNLoss"): a hand-computed
 * case, every gradient against finite differences, bitwise identity across
 * splits and layouts, and each error raised on one rank only.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *all_on = "lambda_mse=1,lambda_in=0.1,lambda_hid=0.2,lambda_out=0.01,"
                            "lambda_fr=0.5,lambda_fr_sd=2,lambda_fr_cv=3";

/* B=2, T=2, N=2, K=1, N_in=1, N_out=1, the numbers worked out by hand. */
static void hand_problem(h_problem *p, double *states, double *pred, double *label, double *w_in,
                         double *w_hid, double *w_out)
{
    static const double s[8] = {1, 2, 3, 0, /* b=1 */ 0, 1, 2, 5};
    static const double y[4] = {0.5, -1, 2, 0}, l[4] = {0, 0, 1, 1};
    static const double wi[2] = {1, -2}, wh[4] = {1, 0, 0, 2}, wo[2] = {3, 4};
    memcpy(states, s, sizeof s);
    memcpy(pred, y, sizeof y);
    memcpy(label, l, sizeof l);
    memcpy(w_in, wi, sizeof wi);
    memcpy(w_hid, wh, sizeof wh);
    memcpy(w_out, wo, sizeof wo);
    *p = (h_problem){.dtype = CRL_FLOAT64, .B = 2, .T = 2, .N = 2, .K = 1, .N_in = 1, .N_out = 1,
                     .states = states, .pred = pred, .label = label, .w_in = w_in,
                     .w_hid = w_hid, .w_out = w_out};
}

static void assert_close(double got, double want)
{
    if (!(fabs(got - want) <= 1e-15 * fmax(1, fabs(want))))
        fail_msg("got %.17g, want %.17g", got, want);
}

static void test_hand_computed_values(void **state)
{
    (void) state;
    double s[8], y[4], l[4], wi[2], wh[4], wo[2];
    h_problem p;
    hand_problem(&p, s, y, l, wi, wh, wo);
    /* mu = (1.5, 2), m = 1.75, sigma_0 = 0.25; sum S^2 = 44; squared errors
     * 0.25 + 1 + 1 + 1; ||W_in||^2 = 5, ||W_hid||^2 = 5, ||W_out||^2 = 25. */
    h_term terms[] = {{"rnn", "rnn", 2.0, all_on}};
    h_result r;
    h_eval_self(&p, terms, 1, H_GRAD_PRED | H_GRAD_LABEL, &r);
    assert_int_equal(r.status, CRL_OK);
    double mse = 3.25 / 4, in = 0.1 * 5 / 2, hid = 0.2 * 5 / 4, out = 0.01 * 25 / 2;
    double fr = 0.5 * 44 / 8, sd = 2 * 0.25, cv = 3 * 0.25 / 1.75;
    assert_close(h_value(&r, "rnn.mse"), 2 * mse);
    assert_close(h_value(&r, "rnn.in"), 2 * in);
    assert_close(h_value(&r, "rnn.hid"), 2 * hid);
    assert_close(h_value(&r, "rnn.out"), 2 * out);
    assert_close(h_value(&r, "rnn.fr"), 2 * fr);
    assert_close(h_value(&r, "rnn.fr_sd"), 2 * sd);
    assert_close(h_value(&r, "rnn.fr_cv"), 2 * cv);
    double total = 2 * (mse + in + hid + out + fr + sd + cv);
    assert_close(h_value(&r, "rnn"), total);
    assert_close(r.total, total);
    /* The docs/losses.md's order of the seven components. */
    const char *order[] = {"rnn", "rnn.mse", "rnn.in", "rnn.hid", "rnn.out",
                           "rnn.fr", "rnn.fr_sd", "rnn.fr_cv"};
    assert_int_equal(r.n_values, 8);
    for (int k = 0; k < 8; k++)
        assert_string_equal(r.names[k], order[k]);
    /* d/d pred = 2 * lambda_k * 2 (pred - label) / (B T K) = pred - label. */
    const double *dp = r.grad[2], *dl = r.grad[3];
    const double diff[4] = {0.5, -1, 1, -1};
    for (int k = 0; k < 4; k++) {
        assert_close(dp[k], diff[k]);
        assert_close(dl[k], -diff[k]);
    }
    h_result_free(&r);
}

/* The mask weighs the mse component only (docs/losses.md "Output masks"). */
static void test_mask_weighs_the_mse_component(void **state)
{
    (void) state;
    double s[8], y[4], l[4], wi[2], wh[4], wo[2], mask[4] = {1, 0.5, 0, 2};
    h_problem p;
    hand_problem(&p, s, y, l, wi, wh, wo);
    p.mask = mask;
    p.K_mask = 1;
    h_term terms[] = {{"rnn", "rnn", 2.0, all_on}};
    h_result r;
    h_eval_self(&p, terms, 1, H_GRAD_PRED | H_GRAD_LABEL | H_GRAD_STATES, &r);
    assert_int_equal(r.status, CRL_OK);
    /* (m (pred - label))^2 = 0.25, 0.25, 0, 4 */
    assert_close(h_value(&r, "rnn.mse"), 2 * 4.5 / 4);
    assert_close(h_value(&r, "rnn.in"), 2 * 0.1 * 5 / 2);
    assert_close(h_value(&r, "rnn.fr"), 2 * 0.5 * 44 / 8);
    const double want[4] = {0.5, -0.25, 0, -4}; /* 2 * 2 m^2 d / 4 */
    const double *dp = r.grad[2], *dl = r.grad[3];
    for (int k = 0; k < 4; k++) {
        assert_close(dp[k], want[k]);
        assert_close(dl[k], -want[k]);
    }
    h_result_free(&r);
}

static void test_correction_one_is_torch_std(void **state)
{
    (void) state;
    double s[8], y[4], l[4], wi[2], wh[4], wo[2];
    h_problem p;
    hand_problem(&p, s, y, l, wi, wh, wo);
    h_term terms[] = {{"r", "rnn", 1.0, "lambda_mse=0,lambda_fr_sd=1,lambda_fr_cv=1,correction=1"}};
    h_result r;
    h_eval_self(&p, terms, 1, 0, &r);
    assert_int_equal(r.status, CRL_OK);
    /* torch.std([1.5, 2]) = sqrt(((-0.25)^2 + 0.25^2) / 1) */
    assert_close(h_value(&r, "r.fr_sd"), sqrt(0.125));
    assert_close(h_value(&r, "r.fr_cv"), sqrt(0.125) / 1.75);
    h_result_free(&r);
}

static h_problem random_problem(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 7, .T = 5, .N = 6, .K = 2,
                   .N_in = 3, .N_out = 2};
    h_problem_fill(&p, seed, 0.1, 1.0);
    return p;
}

static void test_gradients_match_finite_differences(void **state)
{
    (void) state;
    const char *variants[] = {
        all_on,
        "lambda_mse=0,lambda_fr_sd=1",
        "lambda_mse=0,lambda_fr_cv=1,correction=1",
        "lambda_mse=0.5,lambda_fr=1",
    };
    for (int v = 0; v < 4; v++) {
        h_problem p = random_problem(CRL_FLOAT64, v % 2, 10 + (uint64_t) v);
        p.B = 3;
        h_term terms[] = {{"rnn", "rnn", 1.5, variants[v]}};
        h_check_gradients(&p, terms, 1, H_GRAD_ALL, 1e-6, 1e-6, 60);
        h_problem_free(&p);
    }
}

static void test_bitwise_identical_across_splits(void **state)
{
    (void) state;
    for (int dt = 0; dt < 2; dt++)
        for (int tm = 0; tm < 2; tm++) {
            h_problem p = random_problem(dt ? CRL_FLOAT64 : CRL_FLOAT32, tm, 20 + (uint64_t) dt);
            h_term terms[] = {{"rnn", "rnn", 0.7, all_on}};
            h_check_splits(&p, terms, 1, H_GRAD_ALL);
            h_problem_free(&p);
        }
}

static void test_layouts_give_identical_results(void **state)
{
    (void) state;
    for (int dt = 0; dt < 2; dt++) {
        h_problem p = random_problem(dt ? CRL_FLOAT64 : CRL_FLOAT32, false, 30);
        h_term terms[] = {{"rnn", "rnn", 1.0, all_on}};
        h_check_layouts(&p, terms, 1, H_GRAD_ALL);
        h_problem_free(&p);
    }
}

static void test_inactive_components_need_no_inputs(void **state)
{
    (void) state;
    double w[4] = {1, 2, 3, 4};
    h_problem p = {.dtype = CRL_FLOAT64, .N = 2, .w_hid = w};
    h_term terms[] = {{"rnn", "rnn", 1.0, "lambda_mse=0,lambda_hid=1"}};
    h_result r;
    h_eval(&p, terms, 1, MPI_COMM_WORLD, (h_range){0, 0}, (h_range){0, 0}, H_GRAD_W_HID, &r);
    h_assert_all(r.status == CRL_OK);
    h_assert_all(r.total == 30.0 / 4 && h_value(&r, "rnn.mse") == 0 && h_value(&r, "rnn.fr") == 0);
    const double *d = r.grad[5];
    h_assert_all(d[0] == 0.5 && d[3] == 2.0); /* 2 W / N^2 */
    h_result_free(&r);
    /* Weight 0 for the whole term: nothing is read, everything reports 0. */
    h_problem empty = {.dtype = CRL_FLOAT64};
    h_term off[] = {{"rnn", "rnn", 0.0, all_on}, {"hid", "rnn", 1.0, "lambda_mse=0,lambda_hid=1"}};
    empty.N = 2;
    empty.w_hid = w;
    h_eval(&empty, off, 2, MPI_COMM_WORLD, (h_range){0, 0}, (h_range){0, 0}, 0, &r);
    h_assert_all(r.status == CRL_OK && h_value(&r, "rnn") == 0 && h_value(&r, "rnn.fr_cv") == 0);
    h_assert_all(r.total == 7.5);
    h_result_free(&r);
}

static void test_cv_of_zero_mean_is_a_domain_error(void **state)
{
    (void) state;
    h_problem p = {.dtype = CRL_FLOAT64, .B = 5, .T = 3, .N = 4};
    h_problem_fill(&p, 1, 0, 0);
    h_term terms[] = {{"reg", "rnn", 1.0, "lambda_mse=0,lambda_fr_cv=1"}};
    h_result r;
    h_grad_fill = 1.5;
    h_eval(&p, terms, 1, MPI_COMM_WORLD, h_split(2, p.B, h_rank, h_size), (h_range){0, 0},
           H_GRAD_STATES, &r);
    h_assert_error(&r, CRL_ERR_DOMAIN, "term 'reg' (rnn): fr_cv: the mean rate is 0");
    h_assert_all(h_grads_untouched(&p, &r));
    h_grad_fill = 0;
    h_result_free(&r);
    h_problem_free(&p);
}

static void test_nan_in_one_ranks_pred(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT32, false, 40);
    int last = h_size - 1;
    h_range mine = h_split(0, p.B, h_rank, h_size), theirs = h_split(0, p.B, last, h_size);
    int64_t b = theirs.count - 1, t = 3, k = 1;
    p.pred[((theirs.start + b) * p.T + t) * p.K + k] = NAN;
    h_term terms[] = {{"rnn", "rnn", 1.0, all_on}};
    h_result r;
    h_grad_fill = 1.5;
    h_eval(&p, terms, 1, MPI_COMM_WORLD, mine, (h_range){0, 0}, H_GRAD_ALL, &r);
    char needle[96];
    snprintf(needle, sizeof needle, "rank %d: pred[b=%lld, t=3, i=1] is NaN", last, (long long) b);
    h_assert_error(&r, CRL_ERR_NONFINITE, needle);
    h_assert_all(h_grads_untouched(&p, &r));
    h_grad_fill = 0;
    h_result_free(&r);
    h_problem_free(&p);
}

static void test_inf_in_one_ranks_states(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT64, true, 41);
    int last = h_size - 1;
    h_range theirs = h_split(0, p.B, last, h_size);
    p.states[(theirs.start * p.T + 2) * p.N + 5] = -INFINITY;
    h_term terms[] = {{"rnn", "rnn", 1.0, "lambda_mse=0,lambda_fr=1"}};
    h_result r;
    h_eval(&p, terms, 1, MPI_COMM_WORLD, h_split(0, p.B, h_rank, h_size), (h_range){0, 0}, 0, &r);
    char needle[96];
    snprintf(needle, sizeof needle, "rank %d: states[b=0, t=2, i=5] is infinite", last);
    h_assert_error(&r, CRL_ERR_NONFINITE, needle);
    h_result_free(&r);
    h_problem_free(&p);
}

static void test_lambdas_that_differ_on_one_rank(void **state)
{
    (void) state;
    if (h_size == 1)
        skip();
    h_problem p = random_problem(CRL_FLOAT64, false, 42);
    h_term terms[] = {{"rnn", "rnn", 1.0, h_rank == h_size - 1 ? "lambda_fr=0.2" : "lambda_fr=0.1"}};
    h_result r;
    h_eval(&p, terms, 1, MPI_COMM_WORLD, h_split(0, p.B, h_rank, h_size), (h_range){0, 0}, 0, &r);
    h_assert_error(&r, CRL_ERR_INVALID, "ranks disagree on term 'rnn' (rnn): lambda_fr (from 0.1 to 0.2)");
    h_result_free(&r);
    h_problem_free(&p);
}

static void test_output_width_that_differs_on_one_rank(void **state)
{
    (void) state;
    if (h_size == 1)
        skip();
    h_problem p = random_problem(CRL_FLOAT64, false, 43);
    if (h_rank == h_size - 1) {
        h_problem_free(&p);
        p = (h_problem){.dtype = CRL_FLOAT64, .B = 7, .T = 5, .N = 6, .K = 3, .N_in = 3, .N_out = 2};
        h_problem_fill(&p, 43, 0.1, 1.0);
    }
    h_term terms[] = {{"rnn", "rnn", 1.0, all_on}};
    h_result r;
    h_eval(&p, terms, 1, MPI_COMM_WORLD, h_split(0, p.B, h_rank, h_size), (h_range){0, 0}, 0, &r);
    h_assert_error(&r, CRL_ERR_INVALID, "ranks disagree on pred: width (from 2 to 3)");
    h_result_free(&r);
    h_problem_free(&p);
}

static void test_weights_must_fit_n(void **state)
{
    (void) state;
    /* w_in with N_in = 3 but given as 3 x 6 (transposed) */
    h_problem p = random_problem(CRL_FLOAT64, false, 44);
    crl_context *ctx;
    crl_loss *loss;
    h_assert_all(crl_context_create(MPI_COMM_WORLD, &ctx) == CRL_OK);
    h_assert_all(crl_loss_create(ctx, &loss) == CRL_OK);
    h_assert_all(crl_loss_add(loss, "rnn", "rnn", 1, "lambda_mse=0,lambda_in=1,lambda_fr=1") == CRL_OK);
    crl_tensors in = {0};
    h_range r = h_split(0, p.B, h_rank, h_size);
    in.states = crl_array_batch_major(CRL_FLOAT64, r.count ? p.states + r.start * p.T * p.N : NULL,
                                      r.count, p.T, p.N);
    in.w_in = crl_matrix_dense(CRL_FLOAT64, p.w_in, p.N_in, p.N);
    h_assert_all(crl_loss_evaluate(loss, &in, NULL) == CRL_ERR_INVALID);
    h_assert_all(strstr(crl_context_error(ctx), "w_in has 3 rows, expected N = 6") != NULL);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    h_problem_free(&p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed_values),
        cmocka_unit_test(test_mask_weighs_the_mse_component),
        cmocka_unit_test(test_correction_one_is_torch_std),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_bitwise_identical_across_splits),
        cmocka_unit_test(test_layouts_give_identical_results),
        cmocka_unit_test(test_inactive_components_need_no_inputs),
        cmocka_unit_test(test_cv_of_zero_mean_is_a_domain_error),
        cmocka_unit_test(test_nan_in_one_ranks_pred),
        cmocka_unit_test(test_inf_in_one_ranks_states),
        cmocka_unit_test(test_lambdas_that_differ_on_one_rank),
        cmocka_unit_test(test_output_width_that_differs_on_one_rank),
        cmocka_unit_test(test_weights_must_fit_n),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "rnn");
}
