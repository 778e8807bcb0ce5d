/*
 * test_entropy.c - EntropyLoss (src/terms/entropy.c, docs/losses.md "EntropyLoss"):
 * hand-computed values and gradients, the formulas of docs/losses.md computed directly
 * (float64 and float32), finite differences, bitwise identity across splits
 * and layouts; with two state_pred terms in the same loss, the composite
 * against its terms alone and chunked evaluation; the row sums the forward
 * keeps for the backward across evaluations of one loss; the float32 path
 * (which rows take it, its error bound) and a gradient asked for only at
 * backward against an announced one; and the errors: a
 * negative rate on one rank, and zero rates, which eps keeps finite.
 */
#include "harness.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void assert_close(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol * fmax(1, fabs(want))))
        fail_msg("got %.17g, want %.17g", got, want);
}

/* B=1, T=2, N=2: s_0 = (1, 1), s_1 = (3, 0). */
static h_problem hand_problem(double *states)
{
    static const double s[4] = {1, 1, 3, 0};
    memcpy(states, s, sizeof s);
    return (h_problem){.dtype = CRL_FLOAT64, .B = 1, .T = 2, .N = 2, .states = states};
}

static void test_hand_computed_with_negligible_eps(void **state)
{
    (void) state;
    double s[4];
    h_problem p = hand_problem(s);
    /* eps = 1e-300 vanishes next to the rates: Z = (2, 3), p_0 = (1/2, 1/2),
     * p_1 = (1, 0).  H_0 = log 2, H_1 = -(1 log 1 + 0) = 0.  Sum S^2 = 11.
     * L = (log 2 + 0)/2 + reg 11/2, reg = 0.5. */
    h_term terms[] = {{"ent", "entropy", 1.0, "reg=0.5,eps=1e-300"}};
    h_result r;
    h_eval_self(&p, terms, 1, H_GRAD_STATES, &r);
    assert_int_equal(r.status, CRL_OK);
    assert_close(r.total, log(2.0) / 2 + 0.5 * 11 / 2, 1e-15);
    /* q = -log p - p/(p + eps), dH/dS_j = (q_j - sum p q)/Z:
     * t=0: q = (log 2 - 1) twice, sum p q = log 2 - 1: dH/dS = 0.
     * t=1: q = (-1, -log eps), sum p q = -1: dH/dS = (0, 1 - log eps)/3.
     * dL/dS = (dH/dS + 2 reg S)/(B T) = (dH/dS + S)/2. */
    const double want[4] = {0.5, 0.5, 1.5, (1 - log(1e-300)) / 3 / 2};
    const double *g = r.grad[0];
    for (int k = 0; k < 4; k++)
        assert_close(g[k], want[k], 1e-15);
    h_result_free(&r);
}

static void test_hand_computed_with_default_eps(void **state)
{
    (void) state;
    double s[4];
    h_problem p = hand_problem(s);
    /* Defaults reg = 10, eps = 1e-8:
     * H_0 = -2 a log(a + eps), a = 1/(2 + eps);
     * H_1 = -(b log(b + eps) + 0), b = 3/(3 + eps). */
    const double eps = 1e-8, a = 1 / (2 + eps), b = 3 / (3 + eps);
    double h0 = -2 * a * log(a + eps), h1 = -b * log(b + eps);
    h_term terms[] = {{"ent", "entropy", 3.0, NULL}};
    h_result r;
    h_eval_self(&p, terms, 1, 0, &r);
    assert_int_equal(r.status, CRL_OK);
    assert_close(h_value(&r, "ent"), 3 * ((h0 + h1) / 2 + 10 * 11.0 / 2), 1e-15);
    h_result_free(&r);
}

static void test_gradients_match_finite_differences(void **state)
{
    (void) state;
    const char *params[] = {NULL, "reg=0", "reg=0.3,eps=1e-3", "reg=2,eps=0.5"};
    for (int k = 0; k < 4; k++) {
        h_problem p = {.dtype = CRL_FLOAT64, .time_major = k % 2, .B = 3, .T = 4, .N = 5 + k};
        /* rates bounded away from 0: p + eps stays far from log's pole */
        h_problem_fill(&p, 10 + (uint64_t) k, 0.1, 1.0);
        h_term terms[] = {{"ent", "entropy", 0.8, params[k]}};
        h_check_gradients(&p, terms, 1, H_GRAD_STATES, 1e-6, 1e-7, 60);
        h_problem_free(&p);
    }
}





/* The formulas of docs/losses.md with libm's log, in double: value and weight dL/dS. */
static double reference(const h_problem *p, double weight, double reg, double eps, double *grad)
{
    int64_t B = p->B, T = p->T, N = p->N;
    double count = (double) (B * T), sum_h = 0, sumsq = 0;
    double *q = malloc(sizeof(double) * (size_t) N);
    assert_non_null(q);
    for (int64_t bt = 0; bt < B * T; bt++) {
        const double *s = p->states + bt * N;
        double z = eps, pq = 0;
        for (int64_t i = 0; i < N; i++)
            z += s[i];
        for (int64_t i = 0; i < N; i++) {
            double pi = s[i] / z;
            sum_h -= pi * log(pi + eps);
            q[i] = -log(pi + eps) - pi / (pi + eps);
            pq += pi * q[i];
            sumsq += s[i] * s[i];
        }
        for (int64_t i = 0; i < N; i++)
            grad[bt * N + i] = weight * ((q[i] - pq) / z + 2 * reg * s[i]) / count;
    }
    free(q);
    return weight * (sum_h / count + reg * sumsq / count);
}

/* Value and gradient against the formulas: within 1e-12 for float64 inputs
 * and 1e-6 for float32 inputs (the problem holds float values; the rows are
 * computed in float32 and the gradient rounded to it), relative to the
 * largest gradient element; the value within 1e-13 for float64 and the
 * float32 path's bound of 8.2 2^-24 (entropy.c) for float32.  N = 300: tiles
 * of 27 rows, T = 40 spans two. */
static void test_matches_the_spec_formulas(void **state)
{
    (void) state;
    for (int variant = 0; variant < 4; variant++) {
        crl_dtype dtype = variant < 2 ? CRL_FLOAT64 : CRL_FLOAT32;
        h_problem p = {.dtype = dtype, .time_major = variant % 2, .B = 3, .T = 40, .N = 300};
        h_problem_fill(&p, 30 + (uint64_t) variant, 0, 1);
        for (int64_t e = 0; e < p.B * p.T * p.N; e += 7)
            p.states[e] = 0; /* p + eps at eps: log's far end */
        h_term terms[] = {{"ent", "entropy", 0.9, "reg=0.3,eps=1e-8"}};
        int64_t size = p.B * p.T * p.N;
        double *want = malloc(sizeof(double) * (size_t) size);
        assert_non_null(want);
        double value = reference(&p, 0.9, 0.3, 1e-8, want);
        h_result r;
        h_eval_self(&p, terms, 1, H_GRAD_STATES, &r);
        assert_int_equal(r.status, CRL_OK);
        double tol = dtype == CRL_FLOAT64 ? 1e-12 : 1e-6, scale = 0;
        assert_close(r.total, value, dtype == CRL_FLOAT64 ? 1e-13 : 8.2 * 0x1p-24);
        for (int64_t e = 0; e < size; e++)
            scale = fmax(scale, fabs(want[e]));
        for (int64_t e = 0; e < size; e++) {
            double g = dtype == CRL_FLOAT64 ? ((const double *) r.grad[0])[e]
                                            : ((const float *) r.grad[0])[e];
            if (!(fabs(g - want[e]) <= tol * scale))
                fail_msg("variant %d, gradient %lld: %.17g vs %.17g", variant, (long long) e, g,
                         want[e]);
        }
        h_result_free(&r);
        free(want);
        h_problem_free(&p);
    }
}

/*
 * The float32 path and its bound (entropy.c): reg = 0, so that the value is
 * the mean entropy alone.
 *  - Spread rows (every p + eps <= 1/2; N = 300, zeros among them): within
 *    8.2 2^-24 of the double formula, and not the double path's bits (the
 *    same values as float64 inputs give those), so the float32 path ran.
 *  - Peaked rows (one rate holding more than half the row; H small, where
 *    a float32 argument's rounding would be large against it): the double
 *    path, bit for bit the float64 inputs' result, within 1e-13 of the
 *    formula.  (The float32 path on these rows, tried, is 7.8e-7 off,
 *    outside its bound, and rows of smaller H would be further off.)
 *  - Both kinds in one batch: within the bound.
 * Gradients within 1e-6 of the largest element in each case.
 */
static void test_float32_path_and_its_bound(void **state)
{
    (void) state;
    for (int kind = 0; kind < 3; kind++) {
        h_problem p = {.dtype = CRL_FLOAT32, .B = 2, .T = 20, .N = kind == 1 ? 37 : 300};
        h_problem_fill(&p, 50 + (uint64_t) kind, 0, 1);
        int64_t size = p.B * p.T * p.N;
        for (int64_t e = 0; e < size; e += 5)
            p.states[e] = 0;
        for (int64_t bt = 0; bt < p.B * p.T; bt++) {
            double *row = p.states + bt * p.N;
            if (kind == 1 || (kind == 2 && bt % 3 == 0)) {
                for (int64_t i = 0; i < p.N; i++)
                    row[i] *= 1e-4;
                row[bt % p.N] = 1; /* p about 0.998 */
            }
            for (int64_t i = 0; i < p.N; i++)
                row[i] = (double) (float) row[i];
        }
        h_problem p64 = p;
        p64.dtype = CRL_FLOAT64;
        h_term terms[] = {{"ent", "entropy", 1.0, "reg=0"}};
        double *want = malloc(sizeof(double) * (size_t) size);
        assert_non_null(want);
        double value = reference(&p, 1.0, 0, 1e-8, want), scale = 0;
        h_result r, r64;
        h_eval_self(&p, terms, 1, H_GRAD_STATES, &r);
        h_eval_self(&p64, terms, 1, 0, &r64);
        assert_int_equal(r.status, CRL_OK);
        assert_int_equal(r64.status, CRL_OK);
        if (kind == 1) {
            assert_true(memcmp(&r.total, &r64.total, sizeof r.total) == 0);
            assert_close(r.total, value, 1e-13);
            assert_true(value < 0.05);
        } else {
            assert_close(r.total, value, 8.2 * 0x1p-24);
            assert_true(r.total != r64.total);
        }
        for (int64_t e = 0; e < size; e++)
            scale = fmax(scale, fabs(want[e]));
        for (int64_t e = 0; e < size; e++) {
            double g = ((const float *) r.grad[0])[e];
            if (!(fabs(g - want[e]) <= 1e-6 * scale))
                fail_msg("kind %d, gradient %lld: %.17g vs %.17g", kind, (long long) e, g,
                         want[e]);
        }
        h_result_free(&r);
        h_result_free(&r64);
        free(want);
        h_problem_free(&p);
    }
}

/* An eps that float32 cannot hold as a normal number (below FLT_MIN), or
 * above 1/2 (every p + eps beyond it), sends every row to the double path:
 * float32 inputs give the bits of the same values as float64 inputs. */
static void test_eps_outside_the_float32_path(void **state)
{
    (void) state;
    const char *params[] = {"reg=0,eps=1e-300", "reg=0,eps=0.75", "reg=0,eps=1e300"};
    for (int k = 0; k < 3; k++) {
        h_problem p = {.dtype = CRL_FLOAT32, .B = 2, .T = 5, .N = 300};
        h_problem_fill(&p, 70 + (uint64_t) k, 0, 1);
        for (int64_t e = 0; e < p.B * p.T * p.N; e++)
            p.states[e] = (double) (float) p.states[e];
        h_problem p64 = p;
        p64.dtype = CRL_FLOAT64;
        h_term terms[] = {{"ent", "entropy", 1.0, params[k]}};
        h_result r, r64;
        h_eval_self(&p, terms, 1, 0, &r);
        h_eval_self(&p64, terms, 1, 0, &r64);
        assert_int_equal(r.status, CRL_OK);
        assert_int_equal(r64.status, CRL_OK);
        if (memcmp(&r.total, &r64.total, sizeof r.total) != 0)
            fail_msg("%s: float32 %.17g, float64 %.17g", params[k], r.total, r64.total);
        h_result_free(&r);
        h_result_free(&r64);
        h_problem_free(&p);
    }
}

/* A gradient asked for only at backward (the backward forms the row sums
 * and keeps the row's w instead of taking the logarithms twice) gives the
 * bits of one announced at accumulate, for float32 rows of either path and
 * float64 rows. */
static void test_late_gradient_matches_announced(void **state)
{
    (void) state;
    for (int variant = 0; variant < 3; variant++) {
        h_problem p = {.dtype = variant == 2 ? CRL_FLOAT64 : CRL_FLOAT32, .time_major = variant == 1,
                       .B = 3, .T = 11, .N = 45};
        h_problem_fill(&p, 60 + (uint64_t) variant, 0, 1);
        for (int64_t bt = 0; bt < p.B * p.T; bt += 2)
            p.states[bt * p.N + bt % p.N] = 40; /* peaked: the double path */
        h_term terms[] = {{"ent", "entropy", 0.7, "reg=0.4,eps=1e-6"}};
        h_result early, late;
        h_eval_self(&p, terms, 1, H_GRAD_STATES, &early);
        h_late_grads = true;
        h_eval_self(&p, terms, 1, H_GRAD_STATES, &late);
        h_late_grads = false;
        assert_int_equal(early.status, CRL_OK);
        assert_int_equal(late.status, CRL_OK);
        assert_true(memcmp(&early.total, &late.total, sizeof early.total) == 0);
        assert_true(early.grad_bytes[0] == late.grad_bytes[0]);
        assert_true(memcmp(early.grad[0], late.grad[0], early.grad_bytes[0]) == 0);
        h_result_free(&early);
        h_result_free(&late);
        h_problem_free(&p);
    }
}

/* Spread rows (the float32 path) and peaked ones (the double path) in one
 * batch. */
static h_problem mixed_rows_problem(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 7, .T = 9, .N = 37};
    h_problem_fill(&p, seed, 0, 1);
    for (int64_t bt = 0; bt < p.B * p.T; bt += 3)
        p.states[bt * p.N + bt % p.N] = 50;
    return p;
}

/* N = 37: vector bodies and scalar tails in every row. */
static h_problem narrow_problem(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 7, .T = 9, .N = 37};
    h_problem_fill(&p, seed, 0, 1);
    return p;
}

/* N = 1024: several tiles per element. */
static h_problem tiled_problem(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 7, .T = 20, .N = 1024};
    h_problem_fill(&p, seed, 0, 1);
    return p;
}

static void test_bitwise_identical_across_splits_and_layouts(void **state)
{
    (void) state;
    h_term terms[] = {{"ent", "entropy", 0.7, "reg=0.1"}};
    h_check_exact(narrow_problem, 20, terms, 1, H_GRAD_STATES);
    h_check_exact(tiled_problem, 21, terms, 1, H_GRAD_STATES);
    h_check_exact(mixed_rows_problem, 24, terms, 1, H_GRAD_STATES);
}

/* Two lags and an entropy term in one loss, as in a training script. */
static const h_term mixed_terms[] = {{"sp2", "state_pred", 0.5, "tau=2"},
                                     {"sp9", "state_pred", 2.0, "tau=9"},
                                     {"ent", "entropy", 0.3, "reg=0.7"}};

/* Each term's value in the composite is its value alone, and the gradient
 * is the sum of theirs. */
static void test_composite_is_the_sum_of_its_terms(void **state)
{
    (void) state;
    h_problem p = tiled_problem(CRL_FLOAT64, false, 22);
    h_range mine = h_split(0, p.B, h_rank, h_size);
    h_result all, alone[3];
    h_eval(&p, mixed_terms, 3, MPI_COMM_WORLD, mine, (h_range){0, 0}, H_GRAD_STATES, &all);
    h_assert_all(all.status == CRL_OK);
    double total = 0;
    for (int k = 0; k < 3; k++) {
        h_eval(&p, &mixed_terms[k], 1, MPI_COMM_WORLD, mine, (h_range){0, 0}, H_GRAD_STATES,
               &alone[k]);
        h_assert_all(alone[k].status == CRL_OK);
        h_assert_all(h_value(&all, mixed_terms[k].name) == alone[k].total);
        total += alone[k].total;
    }
    h_assert_all(all.total == total);
    bool ok = true;
    const double *g = all.grad[0];
    for (int64_t e = 0; e < mine.count * p.T * p.N; e++) {
        double sum = 0, scale = 0;
        for (int k = 0; k < 3; k++) {
            sum += ((const double *) alone[k].grad[0])[e];
            scale += fabs(((const double *) alone[k].grad[0])[e]);
        }
        ok = ok && fabs(g[e] - sum) <= 1e-14 * scale;
    }
    h_assert_all(ok);
    h_result_free(&all);
    for (int k = 0; k < 3; k++)
        h_result_free(&alone[k]);
    h_problem_free(&p);
}

/* Chunks of 1, 2 and 3 elements of each rank's slice give the whole-batch
 * bits: nothing of one element (state_pred's per-neuron sums and lagged
 * rows, entropy's sum over time) leaks into the next. */
static void test_chunked_evaluation_is_identical(void **state)
{
    (void) state;
    for (int dt = 0; dt < 2; dt++) {
        h_problem p = tiled_problem(dt ? CRL_FLOAT64 : CRL_FLOAT32, !dt, 23);
        h_check_chunks(&p, mixed_terms, 3, H_GRAD_STATES, 3);
        h_problem_free(&p);
    }
}

/* One evaluation on a fresh loss: total and gradient (NULL: values only). */
static double evaluate_fresh(const h_term *term, crl_tensors *in, crl_tensors *grads)
{
    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_SELF, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, term->name, term->type, term->weight, term->params), CRL_OK);
    assert_int_equal(crl_loss_evaluate(loss, in, grads), CRL_OK);
    double total = crl_loss_total(loss);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    return total;
}

/* The row sums the forward keeps for the backward are sized and indexed per
 * evaluation: one loss evaluated for values only, then with the gradient on
 * a larger batch (the kept rows grow), then values only and a gradient on a
 * smaller one, gives every time the bits of a fresh loss. */
static void test_kept_row_sums_across_evaluations(void **state)
{
    (void) state;
    h_problem p = {.dtype = CRL_FLOAT64, .B = 6, .T = 9, .N = 37};
    h_problem_fill(&p, 40, 0, 1);
    const h_term term = {"ent", "entropy", 0.6, "reg=0.2"};
    const int64_t batches[] = {2, 6, 3, 1};
    const bool with_grad[] = {false, true, false, true};
    int64_t size = p.B * p.T * p.N;
    double *got = calloc((size_t) size, sizeof(double)), *want = calloc((size_t) size, sizeof(double));
    assert_non_null(got);
    assert_non_null(want);
    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_SELF, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, term.name, term.type, term.weight, term.params), CRL_OK);
    bool ok = true;
    for (int k = 0; k < 4; k++) {
        int64_t b = batches[k], part = b * p.T * p.N;
        /* the last elements of the batch, so that each evaluation sees rows
         * the previous one did not */
        double *rates = p.states + size - part;
        crl_tensors in = {0}, gin = {0}, gfresh = {0};
        in.states = crl_array_batch_major(CRL_FLOAT64, rates, b, p.T, p.N);
        memset(got, 0, sizeof(double) * (size_t) part);
        memset(want, 0, sizeof(double) * (size_t) part);
        gin.states = crl_array_batch_major(CRL_FLOAT64, got, b, p.T, p.N);
        gfresh.states = crl_array_batch_major(CRL_FLOAT64, want, b, p.T, p.N);
        assert_int_equal(crl_loss_evaluate(loss, &in, with_grad[k] ? &gin : NULL), CRL_OK);
        double total = crl_loss_total(loss);
        double fresh = evaluate_fresh(&term, &in, with_grad[k] ? &gfresh : NULL);
        ok = ok && memcmp(&total, &fresh, sizeof total) == 0
             && memcmp(got, want, sizeof(double) * (size_t) part) == 0;
    }
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    free(got);
    free(want);
    h_problem_free(&p);
    h_assert_all(ok);
}

/* The first negative rate in row order is named, in the first tile (N = 37)
 * or a later one (N = 1024: 8-row tiles, t = 13), float32 and float64. */
static void test_negative_rate_in_one_ranks_slice(void **state)
{
    (void) state;
    for (int variant = 0; variant < 4; variant++) {
        crl_dtype dtype = variant % 2 ? CRL_FLOAT64 : CRL_FLOAT32;
        bool tiled = variant >= 2;
        h_problem p = tiled ? tiled_problem(dtype, variant % 2, 24)
                            : narrow_problem(dtype, variant % 2, 24);
        int64_t t = tiled ? 13 : 3, i = tiled ? 700 : 4;
        int last = h_size - 1;
        h_range theirs = h_split(0, p.B, last, h_size);
        int64_t b = theirs.count - 1;
        p.states[((theirs.start + b) * p.T + t) * p.N + i] = -0.25;
        p.states[((theirs.start + b) * p.T + t) * p.N + i + 1] = -2;  /* later ones */
        p.states[((theirs.start + b) * p.T + t + 1) * p.N + 0] = -1;
        h_term terms[] = {{"ent", "entropy", 1.0, NULL}};
        char needle[128];
        snprintf(needle, sizeof needle,
                 "rank %d: term 'ent' (entropy): states[b=%lld, t=%lld, i=%lld] = -0.25 is negative",
                 last, (long long) b, (long long) t, (long long) i);
        h_check_error(&p, terms, 1, h_split(0, p.B, h_rank, h_size), (h_range){0, 0},
                      H_GRAD_STATES, CRL_ERR_DOMAIN, needle);
        h_problem_free(&p);
    }
}

/* Zero rates: whole rows of zeros give Z = eps, p = 0, H = 0, and a large
 * but finite gradient -log(eps)/eps / (B T). */
static void test_zero_rates_stay_finite(void **state)
{
    (void) state;
    for (int dt = 0; dt < 2; dt++) {
        h_problem p = {.dtype = dt ? CRL_FLOAT64 : CRL_FLOAT32, .B = 4, .T = 3, .N = 5};
        h_problem_fill(&p, 60, 0, 0);
        h_term terms[] = {{"ent", "entropy", 1.0, NULL}};
        h_result r;
        h_eval(&p, terms, 1, MPI_COMM_WORLD, h_split(2, p.B, h_rank, h_size), (h_range){0, 0},
               H_GRAD_STATES, &r);
        h_assert_all(r.status == CRL_OK && r.total == 0);
        bool finite = true, positive = true;
        for (size_t e = 0; e < r.grad_bytes[0] / (dt ? 8 : 4); e++) {
            double g = dt ? ((const double *) r.grad[0])[e] : ((const float *) r.grad[0])[e];
            finite = finite && isfinite(g);
            positive = positive && g > 0;
        }
        h_assert_all(finite && positive);
        bool near = true;
        if (r.grad_bytes[0] > 0) {
            double g0 = dt ? ((const double *) r.grad[0])[0] : ((const float *) r.grad[0])[0];
            double want = -log(1e-8) / 1e-8 / (double) (p.B * p.T);
            near = fabs(g0 - want) <= (dt ? 1e-14 : 1e-7) * want;
        }
        h_assert_all(near);
        h_result_free(&r);
        h_problem_free(&p);
    }
    /* Some zeros among positive rates: finite as well. */
    h_problem q = {.dtype = CRL_FLOAT64, .B = 3, .T = 4, .N = 6};
    h_problem_fill(&q, 61, 0, 1);
    for (int64_t e = 0; e < q.B * q.T * q.N; e += 2)
        q.states[e] = 0;
    h_term terms[] = {{"ent", "entropy", 1.0, "eps=1e-12"}};
    h_result r;
    h_eval_self(&q, terms, 1, H_GRAD_STATES, &r);
    assert_int_equal(r.status, CRL_OK);
    assert_true(isfinite(r.total));
    for (int64_t e = 0; e < q.B * q.T * q.N; e++)
        assert_true(isfinite(((const double *) r.grad[0])[e]));
    h_result_free(&r);
    h_problem_free(&q);
}

static void test_eps_must_be_positive(void **state)
{
    (void) state;
    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_SELF, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "a", "entropy", 1, "eps=0"), CRL_ERR_INVALID);
    assert_non_null(strstr(crl_context_error(ctx), "parameter eps: 0 is outside"));
    assert_int_equal(crl_loss_add(loss, "b", "entropy", 1, "eps=-1e-8"), CRL_ERR_INVALID);
    assert_int_equal(crl_loss_add(loss, "c", "entropy", 1, "eps=1e-300"), CRL_OK);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed_with_negligible_eps),
        cmocka_unit_test(test_hand_computed_with_default_eps),
        cmocka_unit_test(test_matches_the_spec_formulas),
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_float32_path_and_its_bound),
        cmocka_unit_test(test_eps_outside_the_float32_path),
        cmocka_unit_test(test_late_gradient_matches_announced),
        cmocka_unit_test(test_bitwise_identical_across_splits_and_layouts),
        cmocka_unit_test(test_composite_is_the_sum_of_its_terms),
        cmocka_unit_test(test_chunked_evaluation_is_identical),
        cmocka_unit_test(test_kept_row_sums_across_evaluations),
        cmocka_unit_test(test_negative_rate_in_one_ranks_slice),
        cmocka_unit_test(test_zero_rates_stay_finite),
        cmocka_unit_test(test_eps_must_be_positive),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "entropy");
}
