/*
 * population_kl.c - PopulationKL (docs/losses.md "PopulationKL"): per neuron,
 * the Gaussian KL divergence between two populations of rates P = states and
 * Q = states1 (each with its own batch and time), from their means and
 * population variances, plus an L2 regularizer on both.  It needs no slots of
 * its own: means, variances and sums of squares are shared statistics, and the
 * gradient is affine in S per neuron:
 *
 *   dL/dS^k = (dL/dmu^k_i + 2 reg mu^k_i) / n_k
 *             + (2 dL/dv^k_i + 2 reg) / n_k * (S^k - mu^k_i),   n_k = B_k T_k,
 *
 * added into each population's alpha and beta.
 *
 * Reads: states, states1.
 */
#include "../internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

enum { SYMMETRIC, REG, REDUCTION, VAR_EPS };
enum { MEAN, SUM, NONE };

static const char *const reductions[] = {"mean", "sum", "none", NULL};

static const crl_param_info params[] = {
    {"symmetric", CRL_PARAM_BOOL, 1, 0, 1, NULL,
     "average KL(P||Q) and KL(Q||P) instead of KL(P||Q) alone"},
    {"reg", CRL_PARAM_REAL, 1e-3, 0, DBL_MAX, NULL,
     "weight of the mean squared norm of each population's rate vectors"},
    {"reduction", CRL_PARAM_CHOICE, MEAN, 0, 0, reductions,
     "mean or sum over neurons; none reports the per-neuron divergences (no gradient)"},
    {"var_eps", CRL_PARAM_REAL, 0, 0, DBL_MAX, NULL, "added to every variance"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static const char *const parts[] = {"reg", NULL};

/* The per-neuron divergences reported with reduction=none. */
typedef struct kl_state {
    double *divergence;
    int64_t cap;
} kl_state;

static unsigned uses(const crl_term *t)
{
    (void) t;
    return CRL_USES(CRL_ROLE_STATES) | CRL_USES(CRL_ROLE_STATES1);
}

/* reduction=none is forward-only (docs/losses.md "PopulationKL"). */
static unsigned grads(const crl_term *t, unsigned announced)
{
    (void) announced;
    return t->param[REDUCTION] == NONE ? 0 : uses(t);
}

static bool has_parts(const crl_term *t)
{
    return t->param[REDUCTION] == NONE;
}

static int prepare(crl_term *t, const crl_global *g, int64_t *slots, crl_error *err)
{
    const crl_tensors *in = g->inputs;
    int64_t n = in->states.width;
    *slots = 0;
    if (in->states1.width != n)
        return crl_fail(err, CRL_ERR_INVALID,
                        "states has %lld neurons but states1 has %lld; they must be the same",
                        (long long) n, (long long) in->states1.width);
    if (t->param[REDUCTION] == NONE
        && (g->grad_announced & (CRL_USES(CRL_ROLE_STATES) | CRL_USES(CRL_ROLE_STATES1))))
        return crl_fail(err, CRL_ERR_INVALID,
                        "reduction=none is forward-only: no gradient of states or states1");
    kl_state *s = t->state;
    if (s == NULL && (s = t->state = calloc(1, sizeof *s)) == NULL)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
    if (!crl_reserve(&s->divergence, &s->cap, n, sizeof(double)))
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory for %lld divergences", (long long) n);
    return CRL_OK;
}

/* KL(A||B) of two Gaussians and its partial derivatives (docs/losses.md "PopulationKL");
 * d/dmean_b = -d/dmean_a. */
typedef struct gaussian_kl {
    double value, d_mean_a, d_var_a, d_var_b;
} gaussian_kl;

static gaussian_kl kl_of(double mean_a, double var_a, double mean_b, double var_b)
{
    double diff = mean_a - mean_b, ratio = (var_a + diff * diff) / var_b;
    return (gaussian_kl){
        .value = 0.5 * (log(var_b / var_a) + ratio - 1),
        .d_mean_a = diff / var_b,
        .d_var_a = 0.5 * (1 / var_b - 1 / var_a),
        .d_var_b = 0.5 * (1 / var_b - ratio / var_b),
    };
}

/* A variance <= 0 (a constant neuron with var_eps = 0) is a domain error. */
static int check_variances(const crl_population *pop, double eps, int role, crl_error *err)
{
    const char *what = crl_role_name(role);
    for (int64_t i = 0; i < pop->n; i++)
        if (!(pop->var[i] + eps > 0))
            return crl_fail_at(err, CRL_ERR_DOMAIN, role, -1, -1, i,
                            "neuron %lld of %s has variance %g (var_eps = %g; a constant neuron "
                            "needs var_eps > 0)",
                            (long long) i, what, pop->var[i] + eps, eps);
    return CRL_OK;
}

/* Adds weight * dL/dS for one population in the affine form of the header. */
static void add_affine(crl_population *pop, int64_t i, double d_mean, double d_var, double reg,
                       double weight)
{
    double c = weight / pop->count;
    pop->alpha[i] += c * (d_mean + 2 * reg * pop->mean[i]);
    pop->beta[i] += c * (2 * d_var + 2 * reg);
}

static int finalize(crl_term *t, crl_global *g, const crl_dd *slots, crl_term_out *out,
                    crl_error *err)
{
    (void) slots;
    crl_population *p = &g->pop[0], *q = &g->pop[1];
    double eps = t->param[VAR_EPS], reg = t->param[REG];
    bool symmetric = t->param[SYMMETRIC] != 0;
    int reduction = (int) t->param[REDUCTION];
    int64_t n = p->n;
    if (check_variances(p, eps, CRL_ROLE_STATES, err) != CRL_OK
        || check_variances(q, eps, CRL_ROLE_STATES1, err) != CRL_OK)
        return err->code;
    bool grad_p = g->grad_mask & CRL_USES(CRL_ROLE_STATES);
    bool grad_q = g->grad_mask & CRL_USES(CRL_ROLE_STATES1);
    double *divergence = ((kl_state *) t->state)->divergence;
    /* dL/dd_i: 1/N for mean, 1 for sum (none has no gradient). */
    double scale = reduction == MEAN ? 1 / (double) n : 1;
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double mp = p->mean[i], vp = p->var[i] + eps, mq = q->mean[i], vq = q->var[i] + eps;
        gaussian_kl pq = kl_of(mp, vp, mq, vq), d = pq;
        if (symmetric) {
            gaussian_kl qp = kl_of(mq, vq, mp, vp);
            d = (gaussian_kl){
                .value = 0.5 * (pq.value + qp.value),
                .d_mean_a = 0.5 * (pq.d_mean_a - qp.d_mean_a),
                .d_var_a = 0.5 * (pq.d_var_a + qp.d_var_b),
                .d_var_b = 0.5 * (pq.d_var_b + qp.d_var_a),
            };
        }
        divergence[i] = d.value;
        total += d.value;
        if (grad_p)
            add_affine(p, i, scale * d.d_mean_a, scale * d.d_var_a, reg, t->weight);
        if (grad_q)
            add_affine(q, i, -scale * d.d_mean_a, scale * d.d_var_b, reg, t->weight);
    }
    p->affine |= grad_p;
    q->affine |= grad_q;
    double r = reg * (p->sumsq / p->count + q->sumsq / q->count);
    if (reduction == NONE) {
        out->vector = divergence;
        out->vector_length = n;
        out->part[0] = r;
    } else {
        out->value = (reduction == MEAN ? total / (double) n : total) + r;
    }
    return CRL_OK;
}

static void destroy(crl_term *t)
{
    kl_state *s = t->state;
    if (s != NULL)
        free(s->divergence);
    free(s);
    t->state = NULL;
}

const crl_term_class crl_term_population_kl = {
    .type = "population_kl",
    .summary = "PopulationKL: per-neuron Gaussian KL divergence between states and states1, "
               "plus an L2 regularizer",
    .python_name = "PopulationKL",
    .example = "k=population_kl:symmetric=false,reg=0.01",
    .inputs = CRL_USES(CRL_ROLE_STATES) | CRL_USES(CRL_ROLE_STATES1),
    .gradients = CRL_USES(CRL_ROLE_STATES) | CRL_USES(CRL_ROLE_STATES1),
    .params = params,
    .parts = parts,
    .passes = CRL_PASS_MOMENTS | CRL_PASS_SQUARES,
    .uses = uses,
    .grads = grads,
    .has_parts = has_parts,
    .prepare = prepare,
    .finalize = finalize,
    .destroy = destroy,
};
