/*
 * test_grad_api.c - how the backward stores gradients and what a failure
 * reports, for every registered term type:
 *   - CRL_GRAD_OVERWRITE into buffers full of NaN is bitwise accumulation
 *     into zeroed buffers, whole and chunked, float32 and float64, every
 *     split (unused inputs' buffers are written with zeros), and so with
 *     the streaming stores of large gradients;
 *   - crl_loss_set_grad_scale: 2 gives bitwise twice the gradient, any
 *     scale is the gradient times it, a non-finite scale is refused;
 *   - gradients asked for only at backward are bitwise the announced ones
 *     (hebbian's w_hebb, a sum over ranks, must be announced);
 *   - crl_loss_set_term_grad_scale: scales s_k give bitwise the gradient of
 *     the loss whose weights are lambda_k s_k, the values unchanged; all 1
 *     is bitwise the plain backward; a change between chunks is refused;
 *   - crl_context_error_info names code, rank, role, term and the local
 *     indices; crl_context_agree makes one rank's local failure everyone's,
 *     and crl_loss_refuse one rank's refused inputs in the reduction.
 */
#include "harness.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One case per registered type; a registered type without one fails. */
static const h_term cases[] = {
    {"rnn", "rnn", 0.5,
     "lambda_in=0.1,lambda_hid=0.2,lambda_out=0.3,lambda_fr=0.4,lambda_fr_sd=0.5,lambda_fr_cv=0.6"},
    {"fr", "fr", 0.7, "metric=l1"},
    {"fr_dist", "fr_dist", 1.1, "metric=cv,correction=1"},
    {"state_pred", "state_pred", 1.3, "tau=2"},
    {"hebbian", "hebbian", 0.8, ""},
    {"entropy", "entropy", 0.05, "reg=0.5"},
    {"population_kl", "population_kl", 1.2, "symmetric=true,reg=0.01,reduction=mean"},
    {"mse", "mse", 2.0, ""},
    {"rnn_conn", "rnn_conn", 0.4, "layer=all,metric=fro"},
    {"cross_entropy", "cross_entropy", 0.6, "apply_softmax=true,clamp=1e-9"},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

static const h_term *case_of(const char *type)
{
    for (int k = 0; k < N_CASES; k++)
        if (strcmp(cases[k].type, type) == 0)
            return &cases[k];
    return NULL;
}

/* Every input present, so that every gradient buffer is given (states1
 * only with two_populations: the chunked harness splits the others). */
static h_problem make_problem(crl_dtype dtype, uint64_t seed, bool two_populations)
{
    h_problem p = {.dtype = dtype, .B = 5, .T = 4, .N = 6, .K = 3, .B1 = two_populations ? 4 : 0,
                   .T1 = two_populations ? 3 : 0, .N_in = 2, .N_out = 3, .hebb = true};
    h_problem_fill(&p, seed, 0.1, 1.0);
    return p;
}

static h_problem make(crl_dtype dtype, uint64_t seed)
{
    return make_problem(dtype, seed, true);
}

/* Bitwise equality of two results of the same split. */
static bool same_result(const h_result *a, const h_result *b, const char *what)
{
    bool same = a->status == b->status && a->n_numbers == b->n_numbers
                && memcmp(a->values, b->values, sizeof(double) * (size_t) a->n_numbers) == 0;
    for (int k = 0; k < 8 && same; k++)
        same = a->grad_bytes[k] == b->grad_bytes[k]
               && (a->grad_bytes[k] == 0 || memcmp(a->grad[k], b->grad[k], a->grad_bytes[k]) == 0);
    if (!same)
        fprintf(stderr, "rank %d: %s differs (status %d / %d: %s %s)\n", h_rank, what, a->status,
                b->status, a->message, b->message);
    return same;
}

static void reset_modes(void)
{
    h_grad_fill = 0.0;
    h_grad_mode = CRL_GRAD_ACCUMULATE;
    h_grad_scale = 1.0;
    h_late_grads = false;
    h_term_grad_scales = NULL;
}

/* Bitwise equality of the gradients of two results. */
static bool same_gradients(const h_result *a, const h_result *b)
{
    bool same = a->status == CRL_OK && b->status == CRL_OK;
    for (int k = 0; k < 8 && same; k++)
        same = a->grad_bytes[k] == b->grad_bytes[k]
               && (a->grad_bytes[k] == 0 || memcmp(a->grad[k], b->grad[k], a->grad_bytes[k]) == 0);
    return same;
}

/* Evaluates terms with the current modes under split pattern s (chunk 0:
 * whole). */
static void eval_split(const h_problem *p, const h_term *t, int s, int64_t chunk, unsigned mask,
                       h_result *out)
{
    h_range r = h_split(s, p->B, h_rank, h_size), r1 = h_split(s, p->B1, h_rank, h_size);
    if (chunk == 0)
        h_eval(p, t, 1, MPI_COMM_WORLD, r, r1, mask, out);
    else
        h_eval_chunked(p, t, 1, MPI_COMM_WORLD, r, chunk, mask, out);
}

static void test_every_type_has_a_case(void **state)
{
    (void) state;
    bool all = true;
    for (int k = 0; k < crl_term_type_count(); k++)
        if (case_of(crl_term_type_name(k)) == NULL) {
            fprintf(stderr, "type %s has no case in test_grad_api.c\n", crl_term_type_name(k));
            all = false;
        }
    h_assert_all(all);
}

/* Runs check(type case, problem, split, chunk) for every registered type,
 * both dtypes, every split, whole and in chunks of 2 (chunks skip
 * population_kl: h_eval_chunked holds no states1). */
static void for_every_case(void (*check)(const h_problem *, const h_term *, int, int64_t))
{
    for (int k = 0; k < crl_term_type_count(); k++) {
        const h_term *t = case_of(crl_term_type_name(k));
        h_assert_all(t != NULL);
        for (int d = 0; d < 2; d++) {
            crl_dtype dtype = d ? CRL_FLOAT64 : CRL_FLOAT32;
            h_problem p = make(dtype, 11 + (uint64_t) k);
            h_problem one = make_problem(dtype, 11 + (uint64_t) k, false);
            for (int s = 0; s < h_split_count(); s++) {
                check(&p, t, s, 0);
                if (strcmp(t->type, "population_kl") != 0)
                    check(&one, t, s, 2);
            }
            h_problem_free(&p);
            h_problem_free(&one);
        }
    }
}

static void check_overwrite(const h_problem *p, const h_term *t, int s, int64_t chunk)
{
    h_result acc, over;
    reset_modes();
    eval_split(p, t, s, chunk, H_GRAD_ALL, &acc);
    h_grad_fill = NAN;
    h_grad_mode = CRL_GRAD_OVERWRITE;
    eval_split(p, t, s, chunk, H_GRAD_ALL, &over);
    reset_modes();
    h_assert_all(acc.status == CRL_OK);
    h_assert_all(same_result(&acc, &over, t->type));
    h_result_free(&acc);
    h_result_free(&over);
}

static void test_overwrite_is_accumulate_into_zeros(void **state)
{
    (void) state;
    for_every_case(check_overwrite);
}

/* Gradients of CRL_STREAM_BYTES or more are overwritten with streaming
 * stores (view.c): bitwise accumulation into zeros again, for each way the
 * states' gradient is stored (a constant row copied, the affine gradient
 * written straight, tiles of the row hooks), float32 and float64, both
 * layouts, scaled; N = 509 makes rows that start off 16-byte boundaries,
 * N = 5 rows of a fraction of a line (a tile of them is one contiguous run,
 * streamed row by row through a buffer of one row).  Each rank evaluates
 * the whole problem alone, so that every rank's gradient is above the
 * threshold. */
static void test_streamed_overwrite_is_accumulate_into_zeros(void **state)
{
    (void) state;
    const h_term sets[][2] = {
        {{"fr", "fr", 0.7, "metric=l1"}, {NULL, NULL, 0, NULL}},
        {{"cv", "fr_dist", 1.1, "metric=cv"}, {NULL, NULL, 0, NULL}},
        {{"sp", "state_pred", 1.3, "tau=2"}, {"e", "entropy", 0.05, "reg=0.5"}},
    };
    for (int d = 0; d < 2; d++)
        for (int tm = 0; tm < 4; tm++)
            for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++) {
                bool narrow = tm >= 2;
                h_problem p = {.dtype = d ? CRL_FLOAT64 : CRL_FLOAT32, .time_major = tm % 2,
                               .B = 3, .T = narrow ? 70000 : 700, .N = narrow ? 5 : 509};
                h_problem_fill(&p, 90 + k, 0.1, 1.0);
                assert_true(p.B * p.T * p.N * (d ? 8 : 4) >= CRL_STREAM_BYTES);
                int n_terms = sets[k][1].name ? 2 : 1;
                h_result acc, over;
                reset_modes();
                h_grad_scale = -0.75;
                h_eval_self(&p, sets[k], n_terms, H_GRAD_STATES, &acc);
                h_grad_fill = NAN;
                h_grad_mode = CRL_GRAD_OVERWRITE;
                h_eval_self(&p, sets[k], n_terms, H_GRAD_STATES, &over);
                reset_modes();
                assert_int_equal(acc.status, CRL_OK);
                h_assert_all(same_result(&acc, &over, sets[k][0].type));
                h_result_free(&acc);
                h_result_free(&over);
                h_problem_free(&p);
            }
}

static void check_scale_two(const h_problem *p, const h_term *t, int s, int64_t chunk)
{
    h_result one, two;
    reset_modes();
    eval_split(p, t, s, chunk, H_GRAD_ALL, &one);
    h_grad_scale = 2.0;
    eval_split(p, t, s, chunk, H_GRAD_ALL, &two);
    reset_modes();
    h_assert_all(one.status == CRL_OK && two.status == CRL_OK);
    bool ok = true;
    size_t size = p->dtype == CRL_FLOAT32 ? 4 : 8;
    for (int k = 0; k < 8; k++)
        for (size_t e = 0; e < one.grad_bytes[k] / size && ok; e++) {
            double a = size == 4 ? ((float *) one.grad[k])[e] : ((double *) one.grad[k])[e];
            double b = size == 4 ? ((float *) two.grad[k])[e] : ((double *) two.grad[k])[e];
            ok = 2 * a == b;
        }
    if (!ok)
        fprintf(stderr, "%s: scale 2 is not twice the gradient\n", t->type);
    h_assert_all(ok);
    h_assert_all(memcmp(one.values, two.values, sizeof(double) * (size_t) one.n_numbers) == 0);
    h_result_free(&one);
    h_result_free(&two);
}

static void test_scale_two_doubles_every_gradient(void **state)
{
    (void) state;
    for_every_case(check_scale_two);
}

/* Any scale: the gradient times it (one rounding apart), overwrite too. */
static void test_scale_multiplies(void **state)
{
    (void) state;
    h_problem p = make(CRL_FLOAT64, 3);
    h_term every[N_CASES];
    memcpy(every, cases, sizeof every);
    h_result one, scaled;
    reset_modes();
    h_eval_self(&p, every, N_CASES, H_GRAD_ALL, &one);
    h_grad_scale = -0.3;
    h_grad_mode = CRL_GRAD_OVERWRITE;
    h_grad_fill = 1e300;
    h_eval_self(&p, every, N_CASES, H_GRAD_ALL, &scaled);
    reset_modes();
    h_assert_all(one.status == CRL_OK && scaled.status == CRL_OK);
    bool ok = true;
    for (int k = 0; k < 8; k++)
        for (size_t e = 0; e < one.grad_bytes[k] / 8; e++) {
            double a = -0.3 * ((double *) one.grad[k])[e], b = ((double *) scaled.grad[k])[e];
            ok = ok && fabs(a - b) <= 1e-15 * fabs(a);
        }
    h_assert_all(ok);
    h_result_free(&one);
    h_result_free(&scaled);
    h_problem_free(&p);

    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_WORLD, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    h_assert_all(crl_loss_set_grad_scale(loss, NAN) == CRL_ERR_INVALID);
    h_assert_all(crl_loss_set_grad_scale(loss, INFINITY) == CRL_ERR_INVALID);
    h_assert_all(crl_loss_set_grad_mode(loss, (crl_grad_mode) 2) == CRL_ERR_INVALID);
    h_assert_all(crl_loss_set_grad_scale(loss, 0.0) == CRL_OK);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
}

/* Every type in one loss, each term's gradient scaled apart (one of them by
 * 0), on every split, whole and (without population_kl) in chunks of 2:
 * the gradients are bitwise those of the weights lambda_k s_k, the values
 * those of lambda_k; scales of 1 are the plain backward, bitwise. */
static void test_term_scales_are_weights(void **state)
{
    (void) state;
    static const double scales[N_CASES] = {2, -1, 0.5, 0, 3, 1.25, -0.25, 1.5, 4, 0.75};
    static const double ones[N_CASES] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    h_term plain[N_CASES], weighted[N_CASES];
    memcpy(plain, cases, sizeof plain);
    memcpy(weighted, cases, sizeof weighted);
    for (int k = 0; k < N_CASES; k++)
        weighted[k].weight = cases[k].weight * scales[k];
    for (int d = 0; d < 2; d++) {
        crl_dtype dtype = d ? CRL_FLOAT64 : CRL_FLOAT32;
        h_problem two = make(dtype, 21), one = make_problem(dtype, 22, false);
        for (int s = 0; s < h_split_count(); s++)
            for (int chunked = 0; chunked < 2; chunked++) {
                const h_problem *p = chunked ? &one : &two;
                int n = chunked ? N_CASES - 1 : N_CASES;   /* population_kl is case 6 */
                h_term pl[N_CASES], we[N_CASES];
                double sc[N_CASES];
                for (int k = 0, j = 0; k < N_CASES; k++)
                    if (!chunked || strcmp(cases[k].type, "population_kl") != 0) {
                        pl[j] = plain[k];
                        we[j] = weighted[k];
                        sc[j++] = scales[k];
                    }
                h_range r = h_split(s, p->B, h_rank, h_size), r1 = h_split(s, p->B1, h_rank, h_size);
                h_result base, by_weight, scaled, unit;
                reset_modes();
                #define EVAL(terms, out)                                                       \
                    (chunked ? h_eval_chunked(p, terms, n, MPI_COMM_WORLD, r, 2, H_GRAD_ALL, out) \
                             : h_eval(p, terms, n, MPI_COMM_WORLD, r, r1, H_GRAD_ALL, out))
                EVAL(pl, &base);
                EVAL(we, &by_weight);
                h_term_grad_scales = sc;
                EVAL(pl, &scaled);
                h_term_grad_scales = ones;
                EVAL(pl, &unit);
                #undef EVAL
                reset_modes();
                h_assert_all(same_gradients(&scaled, &by_weight));
                h_assert_all(scaled.n_numbers == base.n_numbers
                             && memcmp(scaled.values, base.values,
                                       sizeof(double) * (size_t) base.n_numbers) == 0);
                h_assert_all(same_result(&unit, &base, "scales of 1"));
                h_result_free(&base);
                h_result_free(&by_weight);
                h_result_free(&scaled);
                h_result_free(&unit);
            }
        h_problem_free(&two);
        h_problem_free(&one);
    }

    /* Refused: no such term, a non-finite scale, a change between chunks. */
    h_problem p = make_problem(CRL_FLOAT64, 23, false);
    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_SELF, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "f", "fr", 1.0, NULL), CRL_OK);
    h_assert_all(crl_loss_set_term_grad_scale(loss, "nope", 2) == CRL_ERR_INVALID
                 && strstr(crl_context_error(ctx), "no term named 'nope'") != NULL);
    h_assert_all(crl_loss_set_term_grad_scale(loss, "f", NAN) == CRL_ERR_INVALID);
    h_assert_all(crl_loss_set_term_grad_scale(NULL, "f", 1) == CRL_ERR_INVALID);
    size_t bytes = sizeof(double) * (size_t) (p.B * p.T * p.N);
    double *g = calloc(bytes, 1);
    crl_tensors in = {0}, grad = {0};
    in.states = crl_array_batch_major(CRL_FLOAT64, p.states, p.B, p.T, p.N);
    grad.states = crl_array_batch_major(CRL_FLOAT64, g, p.B, p.T, p.N);
    crl_tensors first = in, first_grad = grad;
    first.states.batch = first_grad.states.batch = 1;
    assert_int_equal(crl_loss_accumulate(loss, &in, NULL), CRL_OK);
    assert_int_equal(crl_loss_reduce(loss), CRL_OK);
    assert_int_equal(crl_loss_set_term_grad_scale(loss, "f", 3), CRL_OK);
    assert_int_equal(crl_loss_backward(loss, &first, &first_grad), CRL_OK);
    h_assert_all(crl_loss_set_term_grad_scale(loss, "f", 2) == CRL_ERR_INVALID
                 && strstr(crl_context_error(ctx), "between the chunks") != NULL);
    h_assert_all(crl_loss_set_term_grad_scale(loss, "f", 3) == CRL_OK);
    free(g);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    h_problem_free(&p);
}

static void check_late(const h_problem *p, const h_term *t, int s, int64_t chunk)
{
    unsigned mask = H_GRAD_ALL & ~(unsigned) H_GRAD_W_HEBB;
    h_result announced, late;
    reset_modes();
    eval_split(p, t, s, chunk, mask, &announced);
    h_late_grads = true;
    eval_split(p, t, s, chunk, mask, &late);
    reset_modes();
    h_assert_all(announced.status == CRL_OK);
    h_assert_all(same_result(&announced, &late, t->type));
    h_result_free(&announced);
    h_result_free(&late);
}

static void test_gradients_decided_at_backward(void **state)
{
    (void) state;
    for_every_case(check_late);
    /* w_hebb's gradient is a sum over all ranks: announced, or refused. */
    h_problem p = make(CRL_FLOAT64, 5);
    h_result late;
    h_late_grads = true;
    h_eval_self(&p, case_of("hebbian"), 1, H_GRAD_W_HEBB, &late);
    reset_modes();
    h_assert_all(late.status == CRL_ERR_INVALID && strstr(late.message, "w_hebb") != NULL);
    h_result_free(&late);
    h_problem_free(&p);
}

/* Evaluates "first" (mse) and "second" on this rank's slice of a float64
 * problem, where the last rank holding elements has `bad` at its local
 * element (b, t, i) of states; returns the status and the record. */
static int eval_with_bad(const char *type, double bad, int64_t b, int64_t t, int64_t i,
                         int *culprit, crl_error_info *info)
{
    h_problem p = make(CRL_FLOAT64, 9);
    h_range r = h_split(0, p.B, h_rank, h_size);
    int last = -1;
    for (int q = 0; q < h_size; q++)
        if (h_split(0, p.B, q, h_size).count > b)
            last = q;
    *culprit = last;
    double *rates = malloc(sizeof(double) * (size_t) (r.count * p.T * p.N + 1));
    double *out = malloc(sizeof(double) * (size_t) (r.count * p.T * p.K + 1));
    double *lab = malloc(sizeof(double) * (size_t) (r.count * p.T * p.K + 1));
    memcpy(rates, p.states + r.start * p.T * p.N, sizeof(double) * (size_t) (r.count * p.T * p.N));
    memcpy(out, p.pred + r.start * p.T * p.K, sizeof(double) * (size_t) (r.count * p.T * p.K));
    memcpy(lab, p.label + r.start * p.T * p.K, sizeof(double) * (size_t) (r.count * p.T * p.K));
    if (h_rank == last)
        rates[(b * p.T + t) * p.N + i] = bad;
    crl_tensors in = {0};
    in.states = crl_array_batch_major(CRL_FLOAT64, rates, r.count, p.T, p.N);
    in.pred = crl_array_batch_major(CRL_FLOAT64, out, r.count, p.T, p.K);
    in.label = crl_array_batch_major(CRL_FLOAT64, lab, r.count, p.T, p.K);
    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_WORLD, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "first", "mse", 1.0, NULL), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "second", type, 1.0, NULL), CRL_OK);
    int rc = crl_loss_evaluate(loss, &in, NULL);
    assert_int_equal(crl_context_error_info(ctx, info), CRL_OK);
    h_assert_all(strcmp(info->message, crl_context_error(ctx)) == 0 && info->code == rc);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    free(rates);
    free(out);
    free(lab);
    h_problem_free(&p);
    return rc;
}

static void test_error_info_names_rank_role_term_and_index(void **state)
{
    (void) state;
    crl_error_info info;
    int culprit;
    int rc = eval_with_bad("fr", NAN, 0, 2, 4, &culprit, &info);
    h_assert_all(rc == CRL_ERR_NONFINITE && info.rank == culprit && info.role == CRL_ROLE_STATES
                 && info.b == 0 && info.t == 2 && info.i == 4 && info.term == -1);
    rc = eval_with_bad("entropy", -0.5, 0, 3, 1, &culprit, &info);
    h_assert_all(rc == CRL_ERR_DOMAIN && info.rank == culprit && info.role == CRL_ROLE_STATES
                 && info.term == 1 && info.b == 0 && info.t == 3 && info.i == 1);
    h_assert_all(strcmp(crl_role_name(CRL_ROLE_LABEL), "label") == 0
                 && strcmp(crl_role_name(CRL_ROLE_COUNT), "?") == 0);

    /* A success clears the record. */
    crl_context *ctx;
    assert_int_equal(crl_context_create(MPI_COMM_WORLD, &ctx), CRL_OK);
    h_assert_all(crl_context_agree(ctx, CRL_OK, NULL) == CRL_OK);
    assert_int_equal(crl_context_error_info(ctx, &info), CRL_OK);
    h_assert_all(info.code == CRL_OK && info.rank == -1 && info.role == -1 && info.message[0] == 0);
    h_assert_all(crl_context_error_info(ctx, NULL) == CRL_ERR_INVALID);
    crl_context_destroy(&ctx);
}

static void test_agree_makes_one_failure_everyones(void **state)
{
    (void) state;
    crl_context *ctx;
    crl_error_info info;
    assert_int_equal(crl_context_create(MPI_COMM_WORLD, &ctx), CRL_OK);
    /* The last rank alone fails. */
    int last = h_size - 1;
    int rc = crl_context_agree(ctx, h_rank == last ? CRL_ERR_DOMAIN : CRL_OK,
                               h_rank == last ? "my input is unusable" : NULL);
    crl_context_error_info(ctx, &info);
    char expect[64];
    snprintf(expect, sizeof expect, "rank %d: my input is unusable", last);
    h_assert_all(rc == CRL_ERR_DOMAIN && info.code == rc && info.rank == last
                 && strcmp(crl_context_error(ctx), expect) == 0);
    /* Two ranks fail differently: the lowest wins. */
    rc = crl_context_agree(ctx, h_rank == 0 ? CRL_ERR_IO : h_rank == last ? CRL_ERR_NOMEM : CRL_OK,
                           h_rank == 0 ? "zero" : "other");
    crl_context_error_info(ctx, &info);
    h_assert_all(rc == CRL_ERR_IO && info.rank == 0 && strstr(info.message, "zero") != NULL);
    /* Every rank fails alike: no rank to name (one rank: its own). */
    rc = crl_context_agree(ctx, CRL_ERR_INVALID, "same everywhere");
    crl_context_error_info(ctx, &info);
    h_assert_all(rc == CRL_ERR_INVALID && info.rank == (h_size > 1 ? -1 : 0));
    rc = crl_context_agree(ctx, CRL_OK, NULL);
    h_assert_all(rc == CRL_OK && crl_context_status(ctx) == CRL_OK);
    crl_context_destroy(&ctx);
}

/* crl_loss_refuse: one rank's refusal fails the reduction on every rank
 * with its message, in place of its inputs or after some chunks; the loss
 * works again after. */
static void test_refuse_fails_the_reduction_everywhere(void **state)
{
    (void) state;
    h_problem p = make_problem(CRL_FLOAT64, 31, false);
    h_range r = h_split(0, p.B, h_rank, h_size);
    crl_context *ctx;
    crl_loss *loss;
    crl_error_info info;
    assert_int_equal(crl_context_create(MPI_COMM_WORLD, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "f", "fr", 1.0, NULL), CRL_OK);
    crl_tensors in = {0};
    in.states = crl_array_batch_major(CRL_FLOAT64, p.states + r.start * p.T * p.N, r.count, p.T,
                                      p.N);
    int last = h_size - 1;
    char expect[96];
    snprintf(expect, sizeof expect, "rank %d: states: a tensor on device 'meta'", last);
    for (int after_chunk = 0; after_chunk < 2; after_chunk++) {
        if (h_rank != last || after_chunk)
            assert_int_equal(crl_loss_accumulate(loss, &in, NULL), CRL_OK);
        if (h_rank == last)
            assert_int_equal(crl_loss_refuse(loss, CRL_ERR_INVALID,
                                             "states: a tensor on device 'meta'"),
                             CRL_ERR_INVALID);
        int rc = crl_loss_reduce(loss);
        crl_context_error_info(ctx, &info);
        h_assert_all(rc == CRL_ERR_INVALID && info.rank == last
                     && strcmp(crl_context_error(ctx), expect) == 0);
    }
    /* Every rank alike: no rank named (one rank: its own); CRL_OK is taken
     * as CRL_ERR_INVALID, NULL as the generic text. */
    h_assert_all(crl_loss_refuse(loss, CRL_OK, NULL) == CRL_ERR_INVALID);
    h_assert_all(crl_loss_reduce(loss) == CRL_ERR_INVALID);
    crl_context_error_info(ctx, &info);
    h_assert_all(info.rank == (h_size > 1 ? -1 : 0)
                 && strstr(crl_context_error(ctx), crl_strerror(CRL_ERR_INVALID)) != NULL);
    /* The next evaluation is whole. */
    h_assert_all(crl_loss_evaluate(loss, &in, NULL) == CRL_OK);
    h_assert_all(crl_loss_refuse(NULL, CRL_ERR_INVALID, "x") == CRL_ERR_INVALID);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    h_problem_free(&p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_has_a_case),
        cmocka_unit_test(test_overwrite_is_accumulate_into_zeros),
        cmocka_unit_test(test_streamed_overwrite_is_accumulate_into_zeros),
        cmocka_unit_test(test_scale_two_doubles_every_gradient),
        cmocka_unit_test(test_scale_multiplies),
        cmocka_unit_test(test_term_scales_are_weights),
        cmocka_unit_test(test_gradients_decided_at_backward),
        cmocka_unit_test(test_error_info_names_rank_role_term_and_index),
        cmocka_unit_test(test_agree_makes_one_failure_everyones),
        cmocka_unit_test(test_refuse_fails_the_reduction_everywhere),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "grad_api");
}
