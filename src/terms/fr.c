/*
 * fr.c - FiringRateLoss (docs/losses.md "FiringRateLoss"): the mean over
 * neurons of mu_i^2 (l2) or |mu_i| (l1).  It needs no slots of its own: the
 * per-neuron means are shared statistics, and its gradient g_i / (B T) is a
 * constant per neuron (docs/losses.md "Data and notation"), added into the population's alpha.
 *
 * Reads: states.
 */
#include "../internal.h"

#include <math.h>

enum { METRIC };
enum { L2, L1 };

static const char *const metrics[] = {"l2", "l1", NULL};

static const crl_param_info params[] = {
    {"metric", CRL_PARAM_CHOICE, L2, 0, 0, metrics,
     "l2: mean_i mu_i^2, l1: mean_i |mu_i| (mu_i: mean rate of neuron i)"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static unsigned uses(const crl_term *t)
{
    (void) t;
    return CRL_USES(CRL_ROLE_STATES);
}

/* l2: 1/N sum mu_i^2, g_i = 2 mu_i / N;  l1: 1/N sum |mu_i|, g_i = sign(mu_i) / N. */
static int finalize(crl_term *t, crl_global *g, const crl_dd *slots, crl_term_out *out,
                    crl_error *err)
{
    (void) slots;
    (void) err;
    crl_population *pop = &g->pop[0];
    const double *mean = pop->mean;
    int64_t n = pop->n;
    bool l1 = t->param[METRIC] == L1;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += l1 ? fabs(mean[i]) : mean[i] * mean[i];
    out->value = sum / (double) n;
    if (g->grad_mask & CRL_USES(CRL_ROLE_STATES)) {
        double scale = t->weight / ((double) n * pop->count);
        for (int64_t i = 0; i < n; i++)
            pop->alpha[i] += scale * (l1 ? crl_sign(mean[i]) : 2 * mean[i]);
        pop->affine = true;
    }
    return CRL_OK;
}

const crl_term_class crl_term_fr = {
    .type = "fr",
    .summary = "FiringRateLoss: mean over neurons of mu_i^2 or |mu_i|",
    .python_name = "FiringRateLoss",
    .example = "f=fr:metric=l1",
    .inputs = CRL_USES(CRL_ROLE_STATES),
    .gradients = CRL_USES(CRL_ROLE_STATES),
    .params = params,
    .passes = CRL_PASS_MOMENTS,
    .uses = uses,
    .finalize = finalize,
};
