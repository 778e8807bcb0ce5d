/*
 * test_all_terms.c - a composite of every term type at once
 * (docs/losses.md "A loss: named, weighted terms"): each reported value is
 * bitwise the term's value alone, the gradients are the sum of the terms'
 * gradients, everything is exact across splits, layouts and chunks, and one
 * evaluation is one reduction.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int allreduce_calls;

int MPI_Allreduce(const void *send, void *recv, int count, MPI_Datatype type, MPI_Op op,
                  MPI_Comm comm)
{
    allreduce_calls++;
    return PMPI_Allreduce(send, recv, count, type, op, comm);
}

static const h_term every_type[] = {
    {"rnn", "rnn", 0.5,
     "lambda_in=0.1,lambda_hid=0.2,lambda_out=0.3,lambda_fr=0.4,lambda_fr_sd=0.5,lambda_fr_cv=0.6"},
    {"fr1", "fr", 0.7, "metric=l1"},
    {"fr2", "fr", 0.3, "metric=l2"},
    {"sd", "fr_dist", 1.1, "metric=sd,correction=1"},
    {"cv", "fr_dist", 0.9, "metric=cv"},
    {"mad", "fr_dist", 0.2, "metric=mean_ad"},
    {"xad", "fr_dist", 0.4, "metric=max_ad"},
    {"lag1", "state_pred", 1.3, "tau=1"},
    {"lag3", "state_pred", 0.6, "tau=3"},
    {"hebb", "hebbian", 0.8, ""},
    {"ent", "entropy", 0.05, "reg=0.5"},
    {"kl", "population_kl", 1.2, "symmetric=false,reg=0.01,reduction=sum"},
    {"mse", "mse", 2.0, ""},
    {"conn", "rnn_conn", 0.15, "layer=all,metric=fro"},
    {"conn1", "rnn_conn", 0.25, "layer=hidden,metric=l1"},
    {"ce", "cross_entropy", 0.5, "clamp=1e-6"},
};
enum { N_TERMS = sizeof every_type / sizeof every_type[0] };

static h_problem make(crl_dtype dtype, bool time_major, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .time_major = time_major, .B = 6, .T = 5, .N = 7, .K = 2,
                   .B1 = 4, .T1 = 3, .N_in = 3, .N_out = 2, .hebb = true};
    h_problem_fill(&p, seed, 0.1, 1.0);
    return p;
}

static int n_inputs_of(const h_problem *p, int k)
{
    int64_t n[8] = {p->B * p->T * p->N, p->B1 * p->T1 * p->N, p->B * p->T * p->K,
                    p->B * p->T * p->K, p->N * p->N_in,       p->N * p->N,
                    p->N_out * p->N,    p->N * p->N};
    return (int) n[k];
}

/* The composite holds every registered type: a type added to the registry
 * without a term here fails. */
static void test_every_registered_type_is_in_the_composite(void **state)
{
    (void) state;
    h_assert_all(h_covers_every_type(every_type, N_TERMS));
}

/* Every value of the composite is bitwise the value of its term alone; the
 * total is their sum in term order; the gradient is the sum of the terms'
 * gradients (one rounding per term instead of one: 1e-13 relative). */
static void test_composite_is_the_sum_of_its_terms(void **state)
{
    (void) state;
    h_problem p = make(CRL_FLOAT64, false, 1);
    h_result all;
    h_eval_self(&p, every_type, N_TERMS, H_GRAD_ALL, &all);
    h_assert_all(all.status == CRL_OK);
    double total = 0;
    double *sum[8] = {0};
    for (int k = 0; k < 8; k++)
        sum[k] = calloc((size_t) n_inputs_of(&p, k) + 1, sizeof(double));
    bool same = true;
    for (int j = 0; j < N_TERMS; j++) {
        h_result one;
        h_eval_self(&p, &every_type[j], 1, H_GRAD_ALL, &one);
        h_assert_all(one.status == CRL_OK);
        for (int64_t v = 0; v < one.n_values; v++) {
            double a = h_value(&all, one.names[v]), b = h_value(&one, one.names[v]);
            if (memcmp(&a, &b, sizeof a) != 0) {
                fprintf(stderr, "%s: %.17g in the composite, %.17g alone\n", one.names[v], a, b);
                same = false;
            }
        }
        total += one.total;
        for (int k = 0; k < 8; k++)
            for (int e = 0; one.grad[k] && e < n_inputs_of(&p, k); e++)
                sum[k][e] += ((const double *) one.grad[k])[e];
        h_result_free(&one);
    }
    h_assert_all(same);
    h_assert_all(memcmp(&total, &all.total, sizeof total) == 0);
    bool close = true;
    for (int k = 0; k < 8; k++) {
        double scale = 0, worst = 0;
        for (int e = 0; e < n_inputs_of(&p, k); e++) {
            scale = fmax(scale, fabs(sum[k][e]));
            worst = fmax(worst, fabs(sum[k][e] - ((const double *) all.grad[k])[e]));
        }
        if (worst > 1e-13 * scale) {
            fprintf(stderr, "gradient %d: composite differs from the sum by %g (scale %g)\n", k,
                    worst, scale);
            close = false;
        }
        /* every input gets a gradient from some term */
        close &= scale > 0;
        free(sum[k]);
    }
    h_assert_all(close);
    h_result_free(&all);
    h_problem_free(&p);
}

static void test_every_type_at_once_is_exact(void **state)
{
    (void) state;
    h_check_exact(make, 2, every_type, N_TERMS, H_GRAD_ALL);
}

static void test_every_type_at_once_in_chunks(void **state)
{
    (void) state;
    for (int dt = 0; dt < 2; dt++) {
        /* Chunks cover states, pred and label; states1 stays whole. */
        h_problem p = make(dt ? CRL_FLOAT64 : CRL_FLOAT32, dt == 1, 3);
        h_problem q = p;
        q.B1 = 0;
        q.states1 = NULL;
        h_term terms[N_TERMS - 1];
        int n = 0;
        for (int j = 0; j < N_TERMS; j++)
            if (strcmp(every_type[j].type, "population_kl") != 0)
                terms[n++] = every_type[j];
        h_check_chunks(&q, terms, n, H_GRAD_ALL, 3);
        h_problem_free(&p);
    }
}

static void test_every_gradient_of_the_composite(void **state)
{
    (void) state;
    h_problem p = make(CRL_FLOAT64, true, 4);
    h_check_gradients(&p, every_type, N_TERMS, H_GRAD_ALL, 1e-6, 1e-6, 40);
    h_problem_free(&p);
}

/* An analysis term (population_kl, reduction=none) rides along: its vector
 * is reported, the total is the other terms' alone. */
static void test_analysis_term_stays_out_of_the_total(void **state)
{
    (void) state;
    h_problem p = make(CRL_FLOAT64, false, 5);
    h_term terms[N_TERMS + 1];
    memcpy(terms, every_type, sizeof every_type);
    terms[N_TERMS] = (h_term){"map", "population_kl", 3.0, "reduction=none"};
    h_result with, without;
    h_eval_self(&p, terms, N_TERMS + 1, 0, &with);
    h_eval_self(&p, every_type, N_TERMS, 0, &without);
    h_assert_all(with.status == CRL_OK && without.status == CRL_OK);
    h_assert_all(memcmp(&with.total, &without.total, sizeof(double)) == 0);
    int64_t at = 0, length = 0;
    for (int64_t v = 0; v < with.n_values; v++) {
        if (strcmp(with.names[v], "map") == 0)
            length = with.lengths[v];
        at += with.lengths[v];
    }
    h_assert_all(length == p.N && at == with.n_numbers);
    h_result_free(&with);
    h_result_free(&without);
    h_problem_free(&p);
}

/* Thirteen terms, one reduction per evaluation once the ranks agreed on
 * the layout: three evaluations cost two reductions more than one. */
static void test_one_reduction_for_every_type(void **state)
{
    (void) state;
    h_problem p = make(CRL_FLOAT32, false, 6);
    h_range r = h_split(0, p.B, h_rank, h_size), r1 = h_split(0, p.B1, h_rank, h_size);
    int calls[2];
    for (int k = 0; k < 2; k++) {
        h_result res;
        h_repeat = k == 0 ? 1 : 3;
        allreduce_calls = 0;
        h_eval(&p, every_type, N_TERMS, MPI_COMM_WORLD, r, r1, H_GRAD_ALL, &res);
        calls[k] = allreduce_calls;
        h_repeat = 1;
        h_assert_all(res.status == CRL_OK);
        h_result_free(&res);
    }
    h_assert_all(calls[1] - calls[0] == 2);
    h_problem_free(&p);
}

/* Two losses on two sets of inputs (two populations), each evaluated alone
 * and both reduced by crl_loss_reduce_group: bitwise the same values and
 * gradients, one reduction for the group (more on the first); a refusal
 * on the last rank fails the group everywhere with its message. */
typedef struct side {
    crl_loss *loss;
    crl_tensors in, grad;
    double *g_states, *g_pred;
} side;

static void side_make(side *s, crl_context *ctx, const h_problem *p, h_range r, bool outputs)
{
    static const h_term first[] = {{"a", "fr", 0.7, "metric=l1"}, {"b", "fr_dist", 1.1, ""},
                                   {"m", "mse", 2.0, ""}};
    static const h_term second[] = {{"c", "fr", 0.3, "metric=l2"}, {"e", "entropy", 0.05, ""},
                                    {"s", "state_pred", 1.3, "tau=2"}};
    const h_term *terms = outputs ? first : second;
    assert_int_equal(crl_loss_create(ctx, &s->loss), CRL_OK);
    for (int k = 0; k < 3; k++)
        assert_int_equal(crl_loss_add(s->loss, terms[k].name, terms[k].type, terms[k].weight,
                                      terms[k].params), CRL_OK);
    assert_int_equal(crl_loss_set_grad_mode(s->loss, CRL_GRAD_OVERWRITE), CRL_OK);
    s->in = s->grad = (crl_tensors){0};
    s->g_states = calloc((size_t) (p->B * p->T * p->N) + 1, sizeof(double));
    s->g_pred = calloc((size_t) (p->B * p->T * p->K) + 1, sizeof(double));
    s->in.states = crl_array_batch_major(CRL_FLOAT64, p->states + r.start * p->T * p->N, r.count,
                                         p->T, p->N);
    s->grad.states = crl_array_batch_major(CRL_FLOAT64, s->g_states, r.count, p->T, p->N);
    if (outputs) {
        s->in.pred = crl_array_batch_major(CRL_FLOAT64, p->pred + r.start * p->T * p->K, r.count,
                                           p->T, p->K);
        s->in.label = crl_array_batch_major(CRL_FLOAT64, p->label + r.start * p->T * p->K,
                                            r.count, p->T, p->K);
        s->grad.pred = crl_array_batch_major(CRL_FLOAT64, s->g_pred, r.count, p->T, p->K);
    }
}

static void side_free(side *s)
{
    crl_loss_destroy(&s->loss);
    free(s->g_states);
    free(s->g_pred);
}

/* The values and gradients of both sides, as bytes, after their backward. */
static void side_results(side *s, const h_problem *p, h_range r, double *out)
{
    assert_int_equal(crl_loss_backward(s[0].loss, &s[0].in, &s[0].grad), CRL_OK);
    assert_int_equal(crl_loss_backward(s[1].loss, &s[1].in, &s[1].grad), CRL_OK);
    int64_t at = 0;
    for (int k = 0; k < 2; k++) {
        out[at++] = crl_loss_total(s[k].loss);
        for (int64_t j = 0; j < crl_loss_value_count(s[k].loss); j++)
            out[at++] = crl_loss_value(s[k].loss, j, NULL)[0];
        memcpy(out + at, s[k].g_states, sizeof(double) * (size_t) (r.count * p->T * p->N));
        at += r.count * p->T * p->N;
    }
    memcpy(out + at, s[0].g_pred, sizeof(double) * (size_t) (r.count * p->T * p->K));
}

static void test_group_reduction(void **state)
{
    (void) state;
    h_problem p1 = make(CRL_FLOAT64, false, 41), p2 = make(CRL_FLOAT64, false, 42);
    size_t n_out = (size_t) (16 + 2 * p1.B * p1.T * p1.N + p1.B * p1.T * p1.K);
    double *alone = calloc(n_out, sizeof(double)), *together = calloc(n_out, sizeof(double));
    for (int split = 0; split < h_split_count(); split++) {
        h_range r = h_split(split, p1.B, h_rank, h_size);
        crl_context *ctx;
        assert_int_equal(crl_context_create(MPI_COMM_WORLD, &ctx), CRL_OK);
        side s[2];
        side_make(&s[0], ctx, &p1, r, true);
        side_make(&s[1], ctx, &p2, r, false);
        crl_loss *both[2] = {s[0].loss, s[1].loss};
        for (int k = 0; k < 2; k++)
            assert_int_equal(crl_loss_evaluate(s[k].loss, &s[k].in, NULL), CRL_OK);
        for (int k = 0; k < 2; k++) {
            assert_int_equal(crl_loss_accumulate(s[k].loss, &s[k].in, NULL), CRL_OK);
            assert_int_equal(crl_loss_reduce(s[k].loss), CRL_OK);
        }
        memset(alone, 0, n_out * sizeof(double));
        side_results(s, &p1, r, alone);
        /* A fresh pair: the group's first reduction meets new layouts. */
        side t[2];
        side_make(&t[0], ctx, &p1, r, true);
        side_make(&t[1], ctx, &p2, r, false);
        crl_loss *fresh[2] = {t[0].loss, t[1].loss};
        int calls[2];
        for (int round = 0; round < 2; round++) {
            for (int k = 0; k < 2; k++)
                assert_int_equal(crl_loss_accumulate(t[k].loss, &t[k].in, NULL), CRL_OK);
            allreduce_calls = 0;
            assert_int_equal(crl_loss_reduce_group(fresh, 2), CRL_OK);
            calls[round] = allreduce_calls;
        }
        /* The first: two reductions (the second of the new layouts), each
         * after an agreement on the packed copy's memory; then one. */
        if (!(calls[0] == 4 && calls[1] == 1))
            fprintf(stderr, "allreduce calls %d, %d\n", calls[0], calls[1]);
        h_assert_all(calls[0] == 4 && calls[1] == 1);
        memset(together, 0, n_out * sizeof(double));
        side_results(t, &p1, r, together);
        h_assert_all(memcmp(alone, together, n_out * sizeof(double)) == 0);

        /* The last rank refuses the second loss's inputs. */
        int last = h_size - 1;
        assert_int_equal(crl_loss_accumulate(both[0], &s[0].in, NULL), CRL_OK);
        if (h_rank == last)
            crl_loss_refuse(both[1], CRL_ERR_INVALID, "states is a 2-D array");
        else
            assert_int_equal(crl_loss_accumulate(both[1], &s[1].in, NULL), CRL_OK);
        char expect[64];
        snprintf(expect, sizeof expect, "rank %d: states is a 2-D array", last);
        h_assert_all(crl_loss_reduce_group(both, 2) == CRL_ERR_INVALID
                     && strcmp(crl_context_error(ctx), expect) == 0);
        for (int k = 0; k < 2; k++)
            assert_int_equal(crl_loss_accumulate(both[k], &s[k].in, NULL), CRL_OK);
        h_assert_all(crl_loss_reduce_group(both, 2) == CRL_OK);
        h_assert_all(crl_loss_reduce_group(both, 0) == CRL_ERR_INVALID);
        crl_loss *with_null[2] = {both[0], NULL};
        h_assert_all(crl_loss_reduce_group(with_null, 2) == CRL_ERR_INVALID);
        for (int k = 0; k < 2; k++) {
            side_free(&s[k]);
            side_free(&t[k]);
        }
        crl_context_destroy(&ctx);
    }
    free(alone);
    free(together);
    h_problem_free(&p1);
    h_problem_free(&p2);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_registered_type_is_in_the_composite),
        cmocka_unit_test(test_composite_is_the_sum_of_its_terms),
        cmocka_unit_test(test_every_type_at_once_is_exact),
        cmocka_unit_test(test_every_type_at_once_in_chunks),
        cmocka_unit_test(test_every_gradient_of_the_composite),
        cmocka_unit_test(test_analysis_term_stays_out_of_the_total),
        cmocka_unit_test(test_one_reduction_for_every_type),
        cmocka_unit_test(test_group_reduction),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "all_terms");
}
