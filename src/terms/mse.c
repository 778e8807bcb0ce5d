/*
 * mse.c - the mean squared error of the outputs on its own (SPEC "MSE and
 * CompositeLoss"): 1/(B T K) sum (pred - label)^2, or with a mask
 * 1/(B T K) sum (m (pred - label))^2 (SPEC "Output masks").  It needs no
 * slots of its own: the sum of squared errors is a shared statistic, and the
 * gradient 2 m^2 (pred - label) / (B T K) goes through the shared output
 * coefficient (outputs.c).
 *
 * Reads: pred, label; mask when given.
 */
#include "../internal.h"

static const crl_param_info params[] = {
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static unsigned uses(const crl_term *t)
{
    (void) t;
    return CRL_USES(CRL_ROLE_PRED) | CRL_USES(CRL_ROLE_LABEL);
}

static int finalize(crl_term *t, crl_global *g, const crl_dd *slots, crl_term_out *out,
                    crl_error *err)
{
    (void) slots;
    (void) err;
    out->value = g->sqerr / g->out_count;
    g->out_coef += t->weight * 2 / g->out_count;
    return CRL_OK;
}

const crl_term_class crl_term_mse = {
    .type = "mse",
    .summary = "MSE: mean squared error of pred against label",
    .params = params,
    .takes_mask = true,
    .uses = uses,
    .finalize = finalize,
};
