/*
 * test_rnn_conn.c - RNNConnectivityLoss (src/terms/rnn_conn.c, docs/losses.md
 * "RNNConnectivityLoss"): hand-computed norms and gradients for every layer
 * and metric, zero matrices, gradients against finite differences, bitwise
 * identity across splits and layouts next to a sharded term, and its errors.
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

/* N = 2, N_in = 1, N_out = 1: W_in = (1, -2)^T, W_hid = diag(1, 2) with a
 * zero off the diagonal, W_out = (3, 4). */
static double w_in[2] = {1, -2}, w_hid[4] = {1, 0, 0, 2}, w_out[2] = {3, 4};

static h_problem hand_problem(void)
{
    return (h_problem){.dtype = CRL_FLOAT64, .N = 2, .N_in = 1, .N_out = 1, .w_in = w_in,
                       .w_hid = w_hid, .w_out = w_out};
}

static void eval_hand(const char *params, double weight, h_result *r)
{
    h_problem p = hand_problem();
    h_term terms[] = {{"conn", "rnn_conn", weight, params}};
    h_eval(&p, terms, 1, MPI_COMM_WORLD, (h_range){0, 0}, (h_range){0, 0},
           H_GRAD_W_IN | H_GRAD_W_HID | H_GRAD_W_OUT, r);
    h_assert_all(r->status == CRL_OK);
}

static void test_fro_all_by_hand(void **state)
{
    (void) state;
    h_result r;
    /* The default: layer=all, metric=fro.  sqrt(5) + sqrt(5) + 5. */
    eval_hand(NULL, 2.0, &r);
    assert_int_equal(r.n_values, 1);
    assert_close(h_value(&r, "conn"), 2 * (2 * sqrt(5.0) + 5));
    assert_close(r.total, 2 * (2 * sqrt(5.0) + 5));
    const double *din = r.grad[4], *dhid = r.grad[5], *dout = r.grad[6];
    for (int k = 0; k < 2; k++) {
        assert_close(din[k], 2 * w_in[k] / sqrt(5.0));
        assert_close(dout[k], 2 * w_out[k] / 5);
    }
    for (int k = 0; k < 4; k++)
        assert_close(dhid[k], 2 * w_hid[k] / sqrt(5.0));
    h_result_free(&r);
}

static void test_l1_all_by_hand(void **state)
{
    (void) state;
    h_result r;
    eval_hand("layer=all,metric=l1", 0.5, &r);
    assert_close(r.total, 0.5 * (3 + 3 + 7));
    const double *din = r.grad[4], *dhid = r.grad[5], *dout = r.grad[6];
    assert_close(din[0], 0.5);
    assert_close(din[1], -0.5);
    /* sign(0) = 0 on the zeros of W_hid. */
    const double want_hid[4] = {0.5, 0, 0, 0.5};
    for (int k = 0; k < 4; k++)
        assert_close(dhid[k], want_hid[k]);
    assert_close(dout[0], 0.5);
    assert_close(dout[1], 0.5);
    h_result_free(&r);
}

/* One layer reads one matrix: the others may be absent, and get no gradient. */
static void test_each_layer_alone(void **state)
{
    (void) state;
    const char *layer[] = {"input", "hidden", "readout"};
    const double fro[] = {sqrt(5.0), sqrt(5.0), 5}, l1[] = {3, 3, 7};
    for (int k = 0; k < 3; k++)
        for (int m = 0; m < 2; m++) {
            h_problem p = {.dtype = CRL_FLOAT64, .N = 2, .N_in = 1, .N_out = 1};
            double **only[] = {&p.w_in, &p.w_hid, &p.w_out};
            double *mat[] = {w_in, w_hid, w_out};
            *only[k] = mat[k];
            char params[64];
            snprintf(params, sizeof params, "layer=%s,metric=%s", layer[k], m ? "l1" : "fro");
            h_term terms[] = {{"c", "rnn_conn", 1.0, params}};
            h_result r;
            h_eval(&p, terms, 1, MPI_COMM_WORLD, (h_range){0, 0}, (h_range){0, 0},
                   H_GRAD_W_IN | H_GRAD_W_HID | H_GRAD_W_OUT, &r);
            h_assert_all(r.status == CRL_OK);
            h_assert_all(fabs(r.total - (m ? l1[k] : fro[k])) <= 1e-15 * r.total);
            for (int j = 0; j < 3; j++)
                h_assert_all((r.grad[4 + j] != NULL) == (j == k));
            h_result_free(&r);
        }
}

/* fro of W = 0 is 0 with gradient 0 (not 0/0). */
static void test_zero_matrix(void **state)
{
    (void) state;
    double zero[4] = {0, 0, 0, 0};
    h_problem p = {.dtype = CRL_FLOAT64, .N = 2, .w_hid = zero};
    for (int m = 0; m < 2; m++) {
        h_term terms[] = {{"c", "rnn_conn", 1.0, m ? "layer=hidden,metric=l1" : "layer=hidden"}};
        h_result r;
        h_eval(&p, terms, 1, MPI_COMM_WORLD, (h_range){0, 0}, (h_range){0, 0}, H_GRAD_W_HID, &r);
        h_assert_all(r.status == CRL_OK && r.total == 0);
        const double *d = r.grad[5];
        for (int k = 0; k < 4; k++)
            h_assert_all(d[k] == 0 && !signbit(d[k]));
        h_result_free(&r);
    }
}

static h_problem random_problem(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 7, .T = 4, .N = 6, .K = 2,
                   .N_in = 3, .N_out = 2};
    h_problem_fill(&p, seed, 0.1, 1.0);
    return p;
}

static void test_gradients_match_finite_differences(void **state)
{
    (void) state;
    const char *variants[] = {"", "metric=l1", "layer=input", "layer=readout,metric=l1"};
    for (int v = 0; v < 4; v++) {
        h_problem p = random_problem(CRL_FLOAT64, false, 10 + (uint64_t) v);
        h_term terms[] = {{"c", "rnn_conn", 1.5, variants[v]}};
        h_check_gradients(&p, terms, 1, H_GRAD_W_IN | H_GRAD_W_HID | H_GRAD_W_OUT, 1e-6, 1e-6, 60);
        h_problem_free(&p);
    }
}

/* Next to a term that reads the sharded states and outputs, so that the
 * splits (empty and uneven shards included) reach the engine's every path. */
static void test_bitwise_identical_across_splits_and_layouts(void **state)
{
    (void) state;
    for (int m = 0; m < 2; m++) {
        h_term terms[] = {{"c", "rnn_conn", 0.7, m ? "metric=l1" : "metric=fro"},
                          {"r", "rnn", 0.3, "lambda_fr=1,lambda_hid=0.5"}};
        h_check_exact(random_problem, 20 + (uint64_t) m, terms, 2, H_GRAD_ALL);
    }
}

/* Its weight gradient adds to rnn's on the same matrix. */
static void test_gradient_adds_to_other_terms(void **state)
{
    (void) state;
    h_problem p = hand_problem();
    h_term both[] = {{"c", "rnn_conn", 1.0, "layer=hidden"},
                     {"r", "rnn", 1.0, "lambda_mse=0,lambda_hid=1"}};
    h_result r;
    h_eval_self(&p, both, 2, H_GRAD_W_HID, &r);
    assert_int_equal(r.status, CRL_OK);
    assert_close(r.total, sqrt(5.0) + 5.0 / 4);
    const double *d = r.grad[5];
    for (int k = 0; k < 4; k++)
        assert_close(d[k], w_hid[k] / sqrt(5.0) + 2 * w_hid[k] / 4);
    h_result_free(&r);
}

static void test_unknown_layer_and_metric(void **state)
{
    (void) state;
    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_SELF, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "c", "rnn_conn", 1, "layer=output"), CRL_ERR_INVALID);
    assert_non_null(strstr(crl_context_error(ctx),
                           "unknown value 'output' (one of: all, input, hidden, readout)"));
    assert_int_equal(crl_loss_add(loss, "c", "rnn_conn", 1, "metric=l2"), CRL_ERR_INVALID);
    assert_non_null(strstr(crl_context_error(ctx), "unknown value 'l2' (one of: fro, l1)"));
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
}

/* layer=all: the three matrices must fit one N (w_in transposed here). */
static void test_matrices_must_fit_one_model(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT64, false, 30);
    crl_context *ctx;
    crl_loss *loss;
    h_assert_all(crl_context_create(MPI_COMM_WORLD, &ctx) == CRL_OK);
    h_assert_all(crl_loss_create(ctx, &loss) == CRL_OK);
    h_assert_all(crl_loss_add(loss, "c", "rnn_conn", 1, "") == CRL_OK);
    crl_tensors in = {0};
    in.w_in = crl_matrix_dense(CRL_FLOAT64, p.w_in, p.N_in, p.N);
    in.w_hid = crl_matrix_dense(CRL_FLOAT64, p.w_hid, p.N, p.N);
    in.w_out = crl_matrix_dense(CRL_FLOAT64, p.w_out, p.N_out, p.N);
    h_assert_all(crl_loss_evaluate(loss, &in, NULL) == CRL_ERR_INVALID);
    h_assert_all(strstr(crl_context_error(ctx),
                        "term 'c' (rnn_conn): w_in has 3 rows, expected N = 6") != NULL);
    /* A missing matrix of the layer (the engine names it; its words are the
     * matrix checks'). */
    in.w_in = (crl_matrix){0};
    h_assert_all(crl_loss_evaluate(loss, &in, NULL) == CRL_ERR_INVALID);
    h_assert_all(strstr(crl_context_error(ctx), "w_in: ") != NULL);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    h_problem_free(&p);
}

static void test_nonfinite_weight(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT32, false, 40);
    p.w_out[1 * p.N + 4] = INFINITY;
    h_term terms[] = {{"c", "rnn_conn", 1.0, "layer=readout"}};
    h_check_error(&p, terms, 1, h_split(0, p.B, h_rank, h_size), (h_range){0, 0}, H_GRAD_W_OUT,
                  CRL_ERR_NONFINITE, "w_out[1, 4] is infinite");
    h_problem_free(&p);
}

/* Replicated means replicated: one rank with other values is refused. */
static void test_weights_that_differ_on_one_rank(void **state)
{
    (void) state;
    if (h_size == 1)
        skip();
    h_problem p = random_problem(CRL_FLOAT64, false, 41);
    if (h_rank == h_size - 1)
        p.w_hid[7] += 0x1p-40;
    h_term terms[] = {{"c", "rnn_conn", 1.0, "metric=l1"}};
    h_check_error(&p, terms, 1, h_split(0, p.B, h_rank, h_size), (h_range){0, 0}, H_GRAD_W_HID,
                  CRL_ERR_INVALID, "ranks disagree on w_hid: values (replicated weights)");
    h_problem_free(&p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fro_all_by_hand),
        cmocka_unit_test(test_l1_all_by_hand),
        cmocka_unit_test(test_each_layer_alone),
        cmocka_unit_test(test_zero_matrix),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_bitwise_identical_across_splits_and_layouts),
        cmocka_unit_test(test_gradient_adds_to_other_terms),
        cmocka_unit_test(test_unknown_layer_and_metric),
        cmocka_unit_test(test_matrices_must_fit_one_model),
        cmocka_unit_test(test_nonfinite_weight),
        cmocka_unit_test(test_weights_that_differ_on_one_rank),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "rnn_conn");
}
