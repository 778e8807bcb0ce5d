/*
 * fr_dist.c - FiringRateDistLoss (docs/losses.md "FiringRateDistLoss"): how
 * unevenly the mean rates mu_i spread across neurons, as their SD, CV, mean
 * or maximum absolute deviation from the population mean m.  It needs no
 * slots of its own: everything comes from the shared per-neuron means, and
 * its gradient g_i / (B T) is a constant per neuron (docs/losses.md "Data and notation"), added
 * into the population's alpha.
 *
 * Reads: states.
 */
#include "../internal.h"

#include <math.h>

enum { METRIC, CORRECTION };
enum { SD, CV, MEAN_AD, MAX_AD };

static const char *const metrics[] = {"sd", "cv", "mean_ad", "max_ad", NULL};

static const crl_param_info params[] = {
    {"metric", CRL_PARAM_CHOICE, SD, 0, 0, metrics,
     "sd: SD of the mean rates, cv: SD / mean, mean_ad / max_ad: mean / maximum absolute "
     "deviation from the mean"},
    {"correction", CRL_PARAM_INT, 0, 0, 1e9, NULL,
     "SD divisor N - correction for sd and cv (1 reproduces torch.std)"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static unsigned uses(const crl_term *t)
{
    (void) t;
    return CRL_USES(CRL_ROLE_STATES);
}

static bool uses_sigma(const crl_term *t)
{
    return t->param[METRIC] == SD || t->param[METRIC] == CV;
}

static int prepare(crl_term *t, const crl_global *g, int64_t *slots, crl_error *err)
{
    *slots = 0;
    if (!uses_sigma(t) && t->param[CORRECTION] != 0)
        return crl_fail(err, CRL_ERR_INVALID, "correction applies to metric sd and cv only, not "
                        "%s", metrics[(int) t->param[METRIC]]);
    if (uses_sigma(t) && g->inputs->states.width <= t->param[CORRECTION])
        return crl_fail(err, CRL_ERR_INVALID, "correction %g needs more than %g neurons, got %lld",
                        t->param[CORRECTION], t->param[CORRECTION],
                        (long long) g->inputs->states.width);
    return CRL_OK;
}

/* mean_ad = 1/N sum_i |mu_i - m|;  with s_i = sign(mu_i - m),
 * g_j = (s_j - 1/N sum_i s_i) / N  (docs/losses.md "FiringRateDistLoss"). */
static double mean_ad(const double *mean, int64_t n, double m, double scale, double *grad)
{
    double dev = 0, signs = 0;
    for (int64_t i = 0; i < n; i++) {
        dev += fabs(mean[i] - m);
        signs += crl_sign(mean[i] - m);
    }
    if (grad != NULL) {
        double shift = signs / (double) n;
        for (int64_t j = 0; j < n; j++)
            grad[j] += scale * (crl_sign(mean[j] - m) - shift) / (double) n;
    }
    return dev / (double) n;
}

/* max_ad = max_i |mu_i - m| at i*, the smallest index attaining it;
 * g_j = s_{i*} (delta_{j,i*} - 1/N)  (docs/losses.md "FiringRateDistLoss"). */
static double max_ad(const double *mean, int64_t n, double m, double scale, double *grad)
{
    int64_t at = 0;
    for (int64_t i = 1; i < n; i++)
        if (fabs(mean[i] - m) > fabs(mean[at] - m))
            at = i;
    if (grad != NULL) {
        double s = scale * crl_sign(mean[at] - m);
        for (int64_t j = 0; j < n; j++)
            grad[j] -= s / (double) n;
        grad[at] += s;
    }
    return fabs(mean[at] - m);
}

static int finalize(crl_term *t, crl_global *g, const crl_dd *slots, crl_term_out *out,
                    crl_error *err)
{
    (void) slots;
    crl_population *pop = &g->pop[0];
    const double *mean = pop->mean;
    int64_t n = pop->n;
    int metric = (int) t->param[METRIC];
    crl_spread s = crl_spread_of(mean, n, uses_sigma(t) ? t->param[CORRECTION] : 0);
    if (metric == CV && s.m == 0)
        return crl_fail(err, CRL_ERR_DOMAIN, "cv: the mean rate is 0");
    bool want = g->grad_mask & CRL_USES(CRL_ROLE_STATES);
    double *grad = want ? pop->alpha : NULL;
    double scale = t->weight / pop->count; /* dL/dS = g_i / (B T) */
    switch (metric) {
    case SD:
        out->value = s.sigma;
        if (want)
            crl_spread_grad_sd(mean, n, s, scale, grad);
        break;
    case CV:
        out->value = s.sigma / s.m;
        if (want)
            crl_spread_grad_cv(mean, n, s, scale, grad);
        break;
    case MEAN_AD:
        out->value = mean_ad(mean, n, s.m, scale, grad);
        break;
    default:
        out->value = max_ad(mean, n, s.m, scale, grad);
        break;
    }
    pop->affine |= want;
    return CRL_OK;
}

const crl_term_class crl_term_fr_dist = {
    .type = "fr_dist",
    .summary = "FiringRateDistLoss: SD, CV, mean or max absolute deviation of the mean rates "
               "across neurons",
    .python_name = "FiringRateDistLoss",
    .example = "d=fr_dist:metric=cv,correction=1",
    .inputs = CRL_USES(CRL_ROLE_STATES),
    .gradients = CRL_USES(CRL_ROLE_STATES),
    .params = params,
    .passes = CRL_PASS_MOMENTS,
    .uses = uses,
    .prepare = prepare,
    .finalize = finalize,
};
