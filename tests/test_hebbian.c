/*
 * test_hebbian.c - HebbianLoss (src/terms/hebbian.c, docs/losses.md "HebbianLoss"): a
 * hand-computed case, gradients against finite differences, float64 against
 * the formulas in plain loops and float32 against float64 math, bitwise
 * identity across splits, layouts and chunks, a weight whose dtype differs
 * from the states', and errors raised on one rank or all.
 */
#include <config.h>

#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
#include <cblas.h>
#endif

enum { GRAD_STATES_ONLY = H_GRAD_STATES, GRAD_BOTH = H_GRAD_STATES | H_GRAD_W_HEBB };

static void assert_close(double got, double want)
{
    if (!(fabs(got - want) <= 1e-15 * fmax(1, fabs(want))))
        fail_msg("got %.17g, want %.17g", got, want);
}

/* A random problem; rates in [-1, 1) give h_b of both signs. */
static h_problem random_problem(crl_dtype dtype, bool time_major, int64_t B, int64_t T, int64_t N,
                                uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = B, .T = T, .N = N,
                   .hebb = true};
    h_problem_fill(&p, seed, -1, 1);
    return p;
}

/* docs/losses.md "HebbianLoss" in plain float64 loops: returns L; h (B values), ds
 * (B T N) and dw (N N) are filled when not NULL. */
static double naive(const h_problem *p, double *h, double *ds, double *dw)
{
    int64_t B = p->B, T = p->T, N = p->N;
    const double *W = p->w_hebb;
    double L = 0;
    if (dw)
        memset(dw, 0, sizeof *dw * (size_t) (N * N));
    for (int64_t b = 0; b < B; b++) {
        const double *S = p->states + b * T * N;
        double hb = 0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < N; j++) {
                double c = 0;
                for (int64_t t = 0; t < T; t++)
                    c += S[t * N + i] * S[t * N + j];
                hb += W[i * N + j] * (c / (double) T);
            }
        double sign = (hb > 0) - (hb < 0);
        L += fabs(hb);
        if (h)
            h[b] = hb;
        for (int64_t i = 0; i < N && dw; i++)
            for (int64_t j = 0; j < N; j++) {
                double c = 0;
                for (int64_t t = 0; t < T; t++)
                    c += S[t * N + i] * S[t * N + j];
                dw[i * N + j] += sign * c / (double) T / (double) B;
            }
        for (int64_t t = 0; t < T && ds; t++)
            for (int64_t i = 0; i < N; i++) {
                double y = 0;
                for (int64_t j = 0; j < N; j++)
                    y += (W[i * N + j] + W[j * N + i]) * S[t * N + j];
                ds[(b * T + t) * N + i] = sign * y / (double) (B * T);
            }
    }
    return L / (double) B;
}

/* max |got - want| / max |want| over n values (got in dtype). */
static double relative_error(const void *got, crl_dtype dtype, const double *want, int64_t n)
{
    double err = 0, scale = 0;
    for (int64_t k = 0; k < n; k++) {
        double g = dtype == CRL_FLOAT32 ? ((const float *) got)[k] : ((const double *) got)[k];
        err = fmax(err, fabs(g - want[k]));
        scale = fmax(scale, fabs(want[k]));
    }
    return err / scale;
}

/* ------------------------------------------------------------------------ */

static void test_hand_computed_values(void **state)
{
    (void) state;
    /* B = 3, T = 2, N = 2; W = [[1, 2], [-1, -1]], so W + W^T = [[2, 1], [1, -2]]
     * and h_b = C00 + C01 - C11.
     *   b=0: s = (1, 1), (2, 0): C = [[2.5, 0.5], [0.5, 0.5]], h =  2.5
     *   b=1: s = (0, 2), (1, 1): C = [[0.5, 0.5], [0.5, 2.5]], h = -1.5
     *   b=2: s = (0, 1), (1, 0): C = [[0.5, 0], [0, 0.5]],     h =  0
     * L = (2.5 + 1.5 + 0) / 3 = 4/3; with weight 2 the total is 8/3.
     * dL/dW = 1/3 (C_0 - C_1) = [[2/3, 0], [0, -2/3]] (b=2 has sign 0).
     * dL/ds = sign/6 (W + W^T) s:  b=0: (3, -1)/6, (4, 2)/6;
     *   b=1: -(2, -4)/6, -(3, -1)/6;  b=2: 0. */
    double s[12] = {1, 1, 2, 0, /* b=1 */ 0, 2, 1, 1, /* b=2 */ 0, 1, 1, 0};
    double w[4] = {1, 2, -1, -1};
    h_problem p = {.dtype = CRL_FLOAT64, .B = 3, .T = 2, .N = 2, .hebb = true, .states = s,
                   .w_hebb = w};
    h_term terms[] = {{"hebb", "hebbian", 2.0, NULL}};
    h_result r;
    h_eval_self(&p, terms, 1, GRAD_BOTH, &r);
    assert_int_equal(r.status, CRL_OK);
    assert_int_equal(r.n_values, 1);
    assert_string_equal(r.names[0], "hebb");
    assert_close(h_value(&r, "hebb"), 8.0 / 3);
    assert_close(r.total, 8.0 / 3);
    const double *ds = r.grad[0], *dw = r.grad[7];
    const double want_ds[12] = {1, -1.0 / 3, 4.0 / 3, 2.0 / 3, -2.0 / 3, 4.0 / 3, -1, 1.0 / 3,
                                0, 0, 0, 0};
    for (int k = 0; k < 12; k++)
        assert_close(ds[k], want_ds[k]);
    const double want_dw[4] = {4.0 / 3, 0, 0, -4.0 / 3};
    for (int k = 0; k < 4; k++)
        assert_close(dw[k], want_dw[k]);
    h_result_free(&r);
}

static void test_gradients_match_finite_differences(void **state)
{
    (void) state;
    for (int tm = 0; tm < 2; tm++) {
        h_problem p = random_problem(CRL_FLOAT64, tm, 4, 5, 5, 20);
        /* |h| is kept away from the kink at 0, and both signs occur. */
        double h[4];
        naive(&p, h, NULL, NULL);
        int positive = 0;
        for (int b = 0; b < 4; b++) {
            assert_true(fabs(h[b]) > 0.1);
            positive += h[b] > 0;
        }
        assert_true(positive > 0 && positive < 4);
        h_term terms[] = {{"hebb", "hebbian", 1.5, NULL}};
        h_check_gradients(&p, terms, 1, GRAD_BOTH, 1e-6, 1e-6, 200);
        h_problem_free(&p);
    }
}

static void test_float64_matches_the_formulas(void **state)
{
    (void) state;
    /* N = 130 and T = 150: backward tiles of 64, 64 and 22 rows, and BLAS
     * kernels' edge cases; T = 600: gemm blocks of 256, 256 and 88 rows,
     * read by tiles of 64 rows (N = 130) or by one tile across all three
     * (N = 5), batch-major and time-major. */
    const int64_t shapes[][4] = {{5, 150, 130, 0}, {3, 600, 130, 0}, {3, 600, 5, 1}};
    for (int k = 0; k < 3; k++) {
        h_problem p = random_problem(CRL_FLOAT64, shapes[k][3], shapes[k][0], shapes[k][1],
                                     shapes[k][2], 4 + (uint64_t) k);
        int64_t n_s = p.B * p.T * p.N, n_w = p.N * p.N;
        double *ds = malloc(sizeof *ds * (size_t) n_s), *dw = malloc(sizeof *dw * (size_t) n_w);
        assert_non_null(ds);
        assert_non_null(dw);
        double L = naive(&p, NULL, ds, dw);
        h_term terms[] = {{"hebb", "hebbian", 1.0, NULL}};
        h_result r;
        h_eval_self(&p, terms, 1, GRAD_BOTH, &r);
        assert_int_equal(r.status, CRL_OK);
        double e_value = fabs(r.total - L) / L, e_s = relative_error(r.grad[0], p.dtype, ds, n_s);
        double e_w = relative_error(r.grad[7], p.dtype, dw, n_w);
        if (!(e_value <= 1e-13 && e_s <= 1e-13 && e_w <= 1e-13))
            fail_msg("B T N = %lld %lld %lld: relative errors: value %.3g, dS %.3g, dW %.3g",
                     (long long) p.B, (long long) p.T, (long long) p.N, e_value, e_s, e_w);
        h_result_free(&r);
        free(ds);
        free(dw);
        h_problem_free(&p);
    }
}

static void test_float32_within_1e5_of_float64_math(void **state)
{
    (void) state;
    /* The same (float-rounded) numbers evaluated as float32 and as float64. */
    for (int positive = 0; positive < 2; positive++) {
        h_problem p32 = {.dtype = CRL_FLOAT32, .B = 5, .T = 150, .N = 130, .hebb = true};
        h_problem_fill(&p32, 5, positive ? 0 : -1, 1);
        h_problem p64 = p32;
        p64.dtype = CRL_FLOAT64;
        h_term terms[] = {{"hebb", "hebbian", 1.0, NULL}};
        h_result r32, r64;
        h_eval_self(&p32, terms, 1, GRAD_BOTH, &r32);
        h_eval_self(&p64, terms, 1, GRAD_BOTH, &r64);
        assert_int_equal(r32.status, CRL_OK);
        assert_int_equal(r64.status, CRL_OK);
        int64_t n_s = p32.B * p32.T * p32.N, n_w = p32.N * p32.N;
        double e_value = fabs(r32.total - r64.total) / r64.total;
        double e_s = relative_error(r32.grad[0], CRL_FLOAT32, r64.grad[0], n_s);
        double e_w = relative_error(r32.grad[7], CRL_FLOAT32, r64.grad[7], n_w);
        if (!(e_value <= 1e-5 && e_s <= 1e-5 && e_w <= 1e-5))
            fail_msg("relative errors: value %.3g, dS %.3g, dW %.3g", e_value, e_s, e_w);
        h_result_free(&r32);
        h_result_free(&r64);
        h_problem_free(&p32);
    }
}

static void test_bitwise_identical_across_splits(void **state)
{
    (void) state;
    const unsigned masks[] = {0, GRAD_STATES_ONLY, GRAD_BOTH, H_GRAD_W_HEBB};
    for (int dt = 0; dt < 2; dt++)
        for (int tm = 0; tm < 2; tm++)
            for (int m = 0; m < 4; m++) {
                if (m == 0 && tm == 1)
                    continue;
                h_problem p = random_problem(dt ? CRL_FLOAT64 : CRL_FLOAT32, tm, 7, 150, 130,
                                             20 + (uint64_t) dt);
                h_term terms[] = {{"hebb", "hebbian", 0.7, NULL}};
                h_check_splits(&p, terms, 1, masks[m]);
                h_problem_free(&p);
            }
}

static void test_layouts_give_identical_results(void **state)
{
    (void) state;
    for (int dt = 0; dt < 2; dt++) {
        h_problem p = random_problem(dt ? CRL_FLOAT64 : CRL_FLOAT32, false, 6, 70, 33, 30);
        h_term terms[] = {{"hebb", "hebbian", 1.0, NULL}};
        h_check_layouts(&p, terms, 1, GRAD_BOTH);
        h_problem_free(&p);
    }
}

static void test_chunks_give_the_whole_result(void **state)
{
    (void) state;
    /* The sign of h_b is kept per element across chunks; two terms keep
     * their own. */
    h_term terms[] = {{"hebb", "hebbian", 1.0, NULL}, {"again", "hebbian", -0.25, NULL}};
    for (int dt = 0; dt < 2; dt++) {
        h_problem p = random_problem(dt ? CRL_FLOAT64 : CRL_FLOAT32, dt, 9, 20, 12, 50);
        h_result whole;
        h_eval_self(&p, terms, 2, GRAD_BOTH, &whole);
        h_assert_all(whole.status == CRL_OK);
        h_assert_all(whole.total == 0.75 * h_value(&whole, "hebb"));
        h_result_free(&whole);
        h_check_chunks(&p, terms, 2, GRAD_BOTH, 4);
        h_problem_free(&p);
    }
}

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
/* Threaded OpenBLAS gives other bits than one thread (its partition of the
 * product picks other kernels at the edges), and a rank's thread count
 * follows Open MPI's binding, which changes with the rank count: the loss
 * must give the same bits whatever the caller's BLAS thread count, and leave
 * that count as it found it. */
static void test_bits_independent_of_blas_threads(void **state)
{
    (void) state;
    int saved = openblas_get_num_threads();
    h_term terms[] = {{"hebb", "hebbian", 1.0, NULL}};
    for (int dt = 0; dt < 2; dt++) {
        h_problem p = random_problem(dt ? CRL_FLOAT64 : CRL_FLOAT32, false, 3, 257, 203, 70);
        h_range whole = {0, p.B}, none = {0, 0};
        h_result one;
        openblas_set_num_threads(1);
        h_eval_self(&p, terms, 1, GRAD_BOTH, &one);
        const int counts[] = {2, 3};
        for (int k = 0; k < 2; k++) {
            openblas_set_num_threads(counts[k]);
            h_result many;
            h_eval_self(&p, terms, 1, GRAD_BOTH, &many);
            h_assert_all(openblas_get_num_threads() == counts[k]);
            char why[256] = "";
            bool same = h_result_equal_slice(&p, &one, &many, whole, none, why, sizeof why);
            if (!same)
                print_message("%s, %d BLAS threads: %s\n", dt ? "float64" : "float32",
                              counts[k], why);
            h_assert_all(same);
            h_result_free(&many);
        }
        h_result_free(&one);
        h_problem_free(&p);
    }
    openblas_set_num_threads(saved);
}
#endif

/* ------------------------------------------------------------------------ */

static void *typed_copy(const double *values, int64_t n, crl_dtype dtype)
{
    void *buf = malloc((size_t) n * crl_dtype_size(dtype));
    assert_non_null(buf);
    for (int64_t k = 0; k < n; k++) {
        if (dtype == CRL_FLOAT32)
            ((float *) buf)[k] = (float) values[k];
        else
            ((double *) buf)[k] = values[k];
    }
    return buf;
}

static double get(const void *buf, crl_dtype dtype, int64_t k)
{
    return dtype == CRL_FLOAT32 ? ((const float *) buf)[k] : ((const double *) buf)[k];
}

/* One hebbian term on MPI_COMM_SELF with states (batch-major) and w_hebb
 * in their own dtypes; the gradients come back in those dtypes. */
static double eval_mixed(const h_problem *p, crl_dtype states_dtype, crl_dtype w_dtype,
                         void **ds, void **dw)
{
    int64_t n_s = p->B * p->T * p->N, n_w = p->N * p->N;
    void *s = typed_copy(p->states, n_s, states_dtype), *w = typed_copy(p->w_hebb, n_w, w_dtype);
    *ds = calloc((size_t) n_s, crl_dtype_size(states_dtype));
    *dw = calloc((size_t) n_w, crl_dtype_size(w_dtype));
    assert_non_null(*ds);
    assert_non_null(*dw);
    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_SELF, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "hebb", "hebbian", 1.0, NULL), CRL_OK);
    crl_tensors in = {0}, grad = {0};
    in.states = crl_array_batch_major(states_dtype, s, p->B, p->T, p->N);
    in.w_hebb = crl_matrix_dense(w_dtype, w, p->N, p->N);
    grad.states = crl_array_batch_major(states_dtype, *ds, p->B, p->T, p->N);
    grad.w_hebb = crl_matrix_dense(w_dtype, *dw, p->N, p->N);
    int rc = crl_loss_evaluate(loss, &in, &grad);
    if (rc != CRL_OK)
        fail_msg("%s", crl_context_error(ctx));
    double total = crl_loss_total(loss);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    free(s);
    free(w);
    return total;
}

static void test_weight_dtype_may_differ_from_the_states(void **state)
{
    (void) state;
    /* Float-rounded numbers: a float32 W and a float64 W hold the same
     * values, so the values and the states gradient are bitwise those of
     * the matching dtype, and the W gradient is that one rounded to W's. */
    h_problem p = random_problem(CRL_FLOAT32, false, 4, 30, 9, 60);
    int64_t n_s = p.B * p.T * p.N, n_w = p.N * p.N;
    for (int dt = 0; dt < 2; dt++) {
        crl_dtype sd = dt ? CRL_FLOAT64 : CRL_FLOAT32;
        crl_dtype other = dt ? CRL_FLOAT32 : CRL_FLOAT64;
        void *ds_same, *dw_same, *ds_mixed, *dw_mixed;
        double same = eval_mixed(&p, sd, sd, &ds_same, &dw_same);
        double mixed = eval_mixed(&p, sd, other, &ds_mixed, &dw_mixed);
        assert_memory_equal(&same, &mixed, sizeof same);
        assert_memory_equal(ds_same, ds_mixed, (size_t) n_s * crl_dtype_size(sd));
        for (int64_t k = 0; k < n_w; k++) {
            double a = get(dw_same, sd, k), b = get(dw_mixed, other, k);
            if (dt ? (float) a != b : a != (float) b)
                fail_msg("dW[%lld]: %.9g (states' dtype) vs %.9g", (long long) k, a, b);
        }
        free(ds_same);
        free(dw_same);
        free(ds_mixed);
        free(dw_mixed);
    }
    h_problem_free(&p);
}

/* ------------------------------------------------------------------------ */

static void test_nan_in_w_hebb_on_every_rank(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT64, false, 5, 4, 6, 70);
    p.w_hebb[1 * 6 + 2] = NAN;
    h_term terms[] = {{"hebb", "hebbian", 1.0, NULL}};
    h_result r;
    h_grad_fill = 1.5;
    h_eval(&p, terms, 1, MPI_COMM_WORLD, h_split(0, p.B, h_rank, h_size), (h_range){0, 0},
           GRAD_BOTH, &r);
    h_assert_error(&r, CRL_ERR_NONFINITE, "w_hebb[1, 2] is NaN");
    /* every rank found it: no rank is named */
    h_assert_all(h_size == 1 || strncmp(r.message, "rank", 4) != 0);
    h_assert_all(h_grads_untouched(&p, &r));
    h_grad_fill = 0;
    h_result_free(&r);
    h_problem_free(&p);
}

static void test_w_hebb_must_be_n_by_n(void **state)
{
    (void) state;
    h_problem p = random_problem(CRL_FLOAT64, false, 5, 4, 6, 71);
    const int64_t shapes[2][2] = {{5, 5}, {6, 5}};
    for (int k = 0; k < 2; k++) {
        crl_context *ctx;
        crl_loss *loss;
        h_assert_all(crl_context_create(MPI_COMM_WORLD, &ctx) == CRL_OK);
        h_assert_all(crl_loss_create(ctx, &loss) == CRL_OK);
        h_assert_all(crl_loss_add(loss, "hebb", "hebbian", 1, NULL) == CRL_OK);
        h_range r = h_split(0, p.B, h_rank, h_size);
        crl_tensors in = {0};
        in.states = crl_array_batch_major(CRL_FLOAT64,
                                          r.count ? p.states + r.start * p.T * p.N : NULL,
                                          r.count, p.T, p.N);
        in.w_hebb = crl_matrix_dense(CRL_FLOAT64, p.w_hebb, shapes[k][0], shapes[k][1]);
        h_assert_all(crl_loss_evaluate(loss, &in, NULL) == CRL_ERR_INVALID);
        char needle[96];
        snprintf(needle, sizeof needle,
                 "term 'hebb' (hebbian): w_hebb is %lld x %lld, expected N x N with N = 6",
                 (long long) shapes[k][0], (long long) shapes[k][1]);
        const char *msg = crl_context_error(ctx);
        if (strstr(msg, needle) == NULL)
            fprintf(stderr, "rank %d: '%s' lacks '%s'\n", h_rank, msg, needle);
        h_assert_all(strstr(msg, needle) != NULL);
        crl_loss_destroy(&loss);
        crl_context_destroy(&ctx);
    }
    h_problem_free(&p);
}

static void test_w_hebb_differing_on_one_rank(void **state)
{
    (void) state;
    if (h_size == 1)
        skip();
    h_problem p = random_problem(CRL_FLOAT32, false, 5, 4, 6, 72);
    if (h_rank == h_size - 1)
        p.w_hebb[7] += 0.25;
    h_term terms[] = {{"hebb", "hebbian", 1.0, NULL}};
    h_result r;
    h_eval(&p, terms, 1, MPI_COMM_WORLD, h_split(0, p.B, h_rank, h_size), (h_range){0, 0},
           GRAD_BOTH, &r);
    h_assert_error(&r, CRL_ERR_INVALID, "ranks disagree on w_hebb: values (replicated weights)");
    h_result_free(&r);
    h_problem_free(&p);
}

/* A NaN or an infinite rate in one rank's states, in float32 and float64,
 * where W's row and column of that neuron are 0 (its products with W vanish
 * only for finite rates): the pass itself finds it and names it. */
static void test_nonfinite_states_on_one_rank(void **state)
{
    (void) state;
    const double bad[] = {NAN, INFINITY, -INFINITY};
    const char *names[] = {"NaN", "infinite", "infinite"};
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 3; k++) {
            h_problem p = random_problem(d ? CRL_FLOAT64 : CRL_FLOAT32, d == 1, 5, 4, 6,
                                         80 + (uint64_t) (3 * d + k));
            for (int64_t j = 0; j < p.N; j++)
                p.w_hebb[3 * p.N + j] = p.w_hebb[j * p.N + 3] = 0;
            int last = h_size - 1;
            h_range theirs = h_split(0, p.B, last, h_size);
            int64_t b = theirs.count - 1;
            p.states[((theirs.start + b) * p.T + 2) * p.N + 3] = bad[k];
            h_term terms[] = {{"hebb", "hebbian", 1.0, NULL}};
            h_result r;
            h_grad_fill = -2;
            h_eval(&p, terms, 1, MPI_COMM_WORLD, h_split(0, p.B, h_rank, h_size),
                   (h_range){0, 0}, GRAD_BOTH, &r);
            char needle[128];
            snprintf(needle, sizeof needle, "rank %d: term 'hebb' (hebbian): states[b=%lld, t=2, i=3] is %s",
                     last, (long long) b, names[k]);
            h_assert_error(&r, CRL_ERR_NONFINITE, needle);
            h_assert_all(h_grads_untouched(&p, &r));
            h_grad_fill = 0;
            h_result_free(&r);
            h_problem_free(&p);
        }
}

static void test_float32_overflow_on_one_rank(void **state)
{
    (void) state;
    /* 1e20 is a finite float, its square is not: S^T S overflows. */
    h_problem p = random_problem(CRL_FLOAT32, true, 5, 4, 6, 73);
    int last = h_size - 1;
    h_range theirs = h_split(0, p.B, last, h_size);
    int64_t b = theirs.count - 1;
    p.states[((theirs.start + b) * p.T + 2) * p.N + 3] = 1e20;
    h_term terms[] = {{"hebb", "hebbian", 1.0, NULL}};
    h_result r;
    h_grad_fill = -2;
    h_eval(&p, terms, 1, MPI_COMM_WORLD, h_split(0, p.B, h_rank, h_size), (h_range){0, 0},
           GRAD_BOTH, &r);
    char needle[128];
    snprintf(needle, sizeof needle,
             "rank %d: term 'hebb' (hebbian): states[b=%lld]: S^T S overflows float32", last,
             (long long) b);
    h_assert_error(&r, CRL_ERR_DOMAIN, needle);
    h_assert_all(h_grads_untouched(&p, &r));
    h_grad_fill = 0;
    h_result_free(&r);
    h_problem_free(&p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed_values),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_float64_matches_the_formulas),
        cmocka_unit_test(test_float32_within_1e5_of_float64_math),
        cmocka_unit_test(test_bitwise_identical_across_splits),
        cmocka_unit_test(test_layouts_give_identical_results),
        cmocka_unit_test(test_chunks_give_the_whole_result),
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
        cmocka_unit_test(test_bits_independent_of_blas_threads),
#endif
        cmocka_unit_test(test_weight_dtype_may_differ_from_the_states),
        cmocka_unit_test(test_nan_in_w_hebb_on_every_rank),
        cmocka_unit_test(test_w_hebb_must_be_n_by_n),
        cmocka_unit_test(test_w_hebb_differing_on_one_rank),
        cmocka_unit_test(test_float32_overflow_on_one_rank),
        cmocka_unit_test(test_nonfinite_states_on_one_rank),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "hebbian");
}
