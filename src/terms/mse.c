/*
 * mse.c - the mean squared error of the outputs on its own (docs/losses.md,
 * "mse"): 1/(B T K) sum (pred - label)^2, or with the optional mask
 * 1/(B T K) sum (m (pred - label))^2 (docs/losses.md "Output masks", PsychRNN's form),
 * and the shared output-error pass it declares (CRL_PASS_OUTPUT_ERROR),
 * which rnn's mse part reads too.  The engine runs the pass once over pred /
 * label rows (outputs.c) with the functions below; the gradient
 * 2 m^2 (pred - label) / (B T K) goes through the pass's coefficient.
 *
 * Reads: pred, label; mask when given.
 */
#include "../internal.h"
#include "../vecmath.h"

#include <math.h>

/* ------------------------------------------------------------------------ */
/* The output-error pass                                                      */
/* ------------------------------------------------------------------------ */

/* Accumulate: acc[(t mod L) K + j] += (m (x - y))^2 over the rows, each
 * lane in time order (crl_sq_diff_rows). */
CRL_HOT void crl_output_error_rows(const crl_rows *v, double *restrict acc)
{
    /* Lanes count from the unit's first row (units start at local
     * multiples of CRL_TIME_UNIT), so that no block boundary moves a row
     * to another lane. */
    int64_t t = v->t0 % CRL_TIME_UNIT;
    if (v->m == NULL) {
        crl_sq_diff_rows(v->x, v->ld, v->y, v->ldy, t, v->count, v->n, acc);
        return;
    }
    int64_t lanes = crl_output_lanes(v->n);
    for (int64_t r = 0; r < v->count; r++) {
        double *a = acc + ((t + r) % lanes) * v->n;
        for (int64_t j = 0; j < v->n; j++) {
            double d = crl_mask_at(v, r, j) * (v->x[r * v->ld + j] - v->y[r * v->ldy + j]);
            a[j] += d * d;
        }
    }
}

int crl_report_nonfinite_outputs(const crl_array *pred, const crl_array *label,
                                 const crl_array *mask, int64_t b, crl_error *err)
{
    if (crl_report_nonfinite(pred, CRL_ROLE_PRED, b, err) != CRL_OK
        || crl_report_nonfinite(label, CRL_ROLE_LABEL, b, err) != CRL_OK)
        return err->code;
    return mask ? crl_report_nonfinite(mask, CRL_ROLE_MASK, b, err) : CRL_OK;
}

/* After the last rows of element b: its sum in a fixed order into *slot. */
int crl_output_error_element(const crl_array *pred, const crl_array *label,
                             const crl_array *mask, int64_t b, const double *acc, crl_xsum *slot,
                             crl_error *err)
{
    double s = crl_sum_fixed(acc, pred->width * crl_output_lanes(pred->width));
    if (!isfinite(s)) {
        if (crl_report_nonfinite_outputs(pred, label, mask, b, err) == CRL_OK)
            crl_fail_at(err, CRL_ERR_DOMAIN, CRL_ROLE_PRED, b, -1, -1,
                        "pred - label [b=%lld]: sum of squares overflows", (long long) b);
        return err->code;
    }
    crl_xsum_add(slot, s);
    return CRL_OK;
}

/* Backward: out = coef m^2 (x - y), count x k. */
CRL_HOT void crl_output_error_backward_rows(const crl_rows *v, double coef, double *restrict out)
{
    int64_t k = v->n;
    if (v->m == NULL && v->ld == k && v->ldy == k) {   /* contiguous rows: one run */
        for (int64_t e = 0; e < v->count * k; e++)
            out[e] = coef * (v->x[e] - v->y[e]);
        return;
    }
    if (v->m == NULL) {
        for (int64_t r = 0; r < v->count; r++)
            for (int64_t j = 0; j < k; j++)
                out[r * k + j] = coef * (v->x[r * v->ld + j] - v->y[r * v->ldy + j]);
        return;
    }
    for (int64_t r = 0; r < v->count; r++)
        for (int64_t j = 0; j < k; j++) {
            double m = crl_mask_at(v, r, j);
            out[r * k + j] = coef * (m * m) * (v->x[r * v->ld + j] - v->y[r * v->ldy + j]);
        }
}

/* ------------------------------------------------------------------------ */
/* The term                                                                   */
/* ------------------------------------------------------------------------ */

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
    out->value = g->out.sqerr / g->out.count;
    g->out.coef += t->weight * 2 / g->out.count;
    return CRL_OK;
}

const crl_term_class crl_term_mse = {
    .type = "mse",
    .summary = "MSE: mean squared error of pred against label",
    .python_name = "MSELoss",
    .example = "m=mse:lambda=1.5",
    .inputs = CRL_USES(CRL_ROLE_PRED) | CRL_USES(CRL_ROLE_LABEL) | CRL_USES(CRL_ROLE_MASK),
    .gradients = CRL_USES(CRL_ROLE_PRED) | CRL_USES(CRL_ROLE_LABEL),
    .params = params,
    .takes_mask = true,
    .passes = CRL_PASS_OUTPUT_ERROR,
    .uses = uses,
    .finalize = finalize,
};
