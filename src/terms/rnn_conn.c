/*
 * rnn_conn.c - RNNConnectivityLoss (docs/losses.md "RNNConnectivityLoss", nn4n's code):
 * the Frobenius norm (not squared, not normalised) or the L1 norm of the
 * chosen weight matrices, summed over them for layer=all:
 *
 *     fro: ||W||_F = sqrt(sum W^2),  d/dW = W / ||W||_F  (0 when W = 0)
 *     l1:  sum |W|,                  d/dW = sign(W)      (sign(0) = 0)
 *
 * It needs no slots: the matrices are replicated and the engine checks that
 * every rank passes the same bits, so every rank computes the same norms
 * from its own copy, in the same order, and the result cannot depend on the
 * rank count.
 *
 * Reads: w_in (layer all, input), w_hid (all, hidden), w_out (all, readout).
 */
#include "../internal.h"

#include <math.h>

enum { LAYER, METRIC };
enum { ALL, INPUT, HIDDEN, READOUT };
enum { FRO, L1 };

static const char *const layers[] = {"all", "input", "hidden", "readout", NULL};
static const char *const metrics[] = {"fro", "l1", NULL};

static const crl_param_info params[] = {
    {"layer", CRL_PARAM_CHOICE, ALL, 0, 0, layers,
     "all: w_in + w_hid + w_out; input: w_in; hidden: w_hid; readout: w_out"},
    {"metric", CRL_PARAM_CHOICE, FRO, 0, 0, metrics,
     "fro: sqrt(sum W^2) (not squared, not normalised), l1: sum |W|"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static unsigned uses(const crl_term *t)
{
    switch ((int) t->param[LAYER]) {
    case INPUT: return CRL_USES(CRL_ROLE_W_IN);
    case HIDDEN: return CRL_USES(CRL_ROLE_W_HID);
    case READOUT: return CRL_USES(CRL_ROLE_W_OUT);
    default:
        return CRL_USES(CRL_ROLE_W_IN) | CRL_USES(CRL_ROLE_W_HID) | CRL_USES(CRL_ROLE_W_OUT);
    }
}

/* The matrices of one model must fit one hidden size N (that of w_hid). */
static int prepare(crl_term *t, const crl_global *g, int64_t *slots, crl_error *err)
{
    *slots = 0;
    return crl_weights_fit(g->inputs, uses(t), 0, err);
}

/* sum W^2 (fro) or sum |W| (l1): each row in double in column order, the
 * rows combined in double-double, so that a large matrix loses no more than
 * one row's rounding. */
static double matrix_sum(const crl_matrix *m, bool l1)
{
    crl_dd total = crl_dd_make(0.0);
    for (int64_t r = 0; r < m->rows; r++) {
        double s = 0;
        for (int64_t c = 0; c < m->cols; c++) {
            double w = crl_matrix_get(m, r, c);
            s += l1 ? fabs(w) : w * w;
        }
        total = crl_dd_add(total, crl_dd_make(s));
    }
    return crl_dd_round(total);
}

static int finalize(crl_term *t, crl_global *g, const crl_dd *slots, crl_term_out *out,
                    crl_error *err)
{
    (void) slots;
    (void) err;
    bool l1 = t->param[METRIC] == L1;
    unsigned used = uses(t);
    out->value = 0;
    for (int role = CRL_ROLE_W_IN; role <= CRL_ROLE_W_OUT; role++) {
        if (!(used & CRL_USES(role)))
            continue;
        const crl_matrix *m = crl_tensors_matrix(g->inputs, role);
        double sum = matrix_sum(m, l1), norm = l1 ? sum : sqrt(sum);
        out->value += norm;
        double *d = g->weights.grad[role - CRL_FIRST_MATRIX_ROLE];
        if (d == NULL || (!l1 && norm == 0))
            continue;
        for (int64_t r = 0; r < m->rows; r++)
            for (int64_t c = 0; c < m->cols; c++) {
                double w = crl_matrix_get(m, r, c);
                d[r * m->cols + c] += t->weight * (l1 ? crl_sign(w) : w / norm);
            }
    }
    return CRL_OK;
}

const crl_term_class crl_term_rnn_conn = {
    .type = "rnn_conn",
    .summary = "RNNConnectivityLoss: Frobenius or L1 norm of the weight matrices (nn4n)",
    .python_name = "RNNConnectivityLoss",
    .example = "a=rnn_conn:layer=all,metric=fro",
    .inputs = CRL_USES(CRL_ROLE_W_IN) | CRL_USES(CRL_ROLE_W_HID) | CRL_USES(CRL_ROLE_W_OUT),
    .gradients = CRL_USES(CRL_ROLE_W_IN) | CRL_USES(CRL_ROLE_W_HID) | CRL_USES(CRL_ROLE_W_OUT),
    .params = params,
    .uses = uses,
    .prepare = prepare,
    .finalize = finalize,
};
