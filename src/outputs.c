/*
 * outputs.c - the pass over pred / label rows: the output error (mse's
 * statistic, see terms/mse.c) and the terms' row hooks over pred rows,
 * accumulate and backward side by side.
 */
#include "engine.h"
#include "vecmath.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One pass over pred and label: sum (pred - label)^2, per batch element in a
 * fixed order, then into the double-double slot. */
int crl_outputs_forward(crl_loss *loss, const crl_tensors *in, crl_dd *payload,
                           crl_error *err)
{
    const crl_array *x = &in->pred, *y = &in->label;
    scratch *w = &loss->work;
    int64_t k = x->width, time = x->time, rows = crl_tile_rows(loss, k, time);
    crl_dd *slot = payload + loss->next_layout[REGION_SQERR];
    for (int64_t b = 0; b < x->batch; b++) {
        memset(w->s1, 0, sizeof(double) * (size_t) k);
        for (int64_t t0 = 0; t0 < time; t0 += rows) {
            int64_t count = time - t0 < rows ? time - t0 : rows, ldx, ldy;
            const double *xr = crl_rows_load(x, b, t0, count, w->tile, &ldx);
            const double *yr = crl_rows_load(y, b, t0, count, w->tile2, &ldy);
            crl_sq_diff_rows(xr, ldx, yr, ldy, count, k, w->s1);
        }
        double s = crl_sum_fixed(w->s1, k);
        if (!isfinite(s)) {
            if (crl_report_nonfinite(x, CRL_ROLE_PRED, b, err) == CRL_OK
                && crl_report_nonfinite(y, CRL_ROLE_LABEL, b, err) == CRL_OK)
                crl_fail_at(err, CRL_ERR_DOMAIN, CRL_ROLE_PRED, b, -1, -1,
                            "pred - label [b=%lld]: sum of squares overflows",
                         (long long) b);
            return err->code;
        }
        *slot = crl_dd_add(*slot, crl_dd_make(s));
    }
    return CRL_OK;
}

CRL_HOT static void scaled_diff_rows(const double *restrict x, int64_t ldx,
                                     const double *restrict y, int64_t ldy, int64_t count,
                                     int64_t k, double c, double *restrict out)
{
    for (int64_t r = 0; r < count; r++)
        for (int64_t j = 0; j < k; j++)
            out[r * k + j] = c * (x[r * ldx + j] - y[r * ldy + j]);
}

void crl_outputs_backward(crl_loss *loss, const crl_global *g, const crl_tensors *grads,
                             unsigned want)
{
    const crl_array *x = &g->inputs->pred, *y = &g->inputs->label;
    bool want_pred = want & CRL_USES(CRL_ROLE_PRED);
    bool want_label = want & CRL_USES(CRL_ROLE_LABEL);
    crl_store how = store_how(loss);
    if (g->out_coef == 0.0 && how.overwrite) {
        if (want_pred)
            crl_array_zero(&grads->pred);
        if (want_label)
            crl_array_zero(&grads->label);
    }
    if (g->out_coef == 0.0 || !(want_pred || want_label))
        return;
    scratch *w = &loss->work;
    int64_t k = x->width, time = x->time, rows = crl_tile_rows(loss, k, time);
    double *d = w->grad_tile;
    for (int64_t b = 0; b < x->batch; b++)
        for (int64_t t0 = 0; t0 < time; t0 += rows) {
            int64_t count = time - t0 < rows ? time - t0 : rows, ldx, ldy;
            const double *xr = crl_rows_load(x, b, t0, count, w->tile, &ldx);
            const double *yr = crl_rows_load(y, b, t0, count, w->tile2, &ldy);
            scaled_diff_rows(xr, ldx, yr, ldy, count, k, g->out_coef, d);
            if (want_pred)
                crl_rows_store(&grads->pred, b, t0, count, d, k, how);
            if (want_label) {
                for (int64_t e = 0; e < count * k; e++)
                    d[e] = -d[e];
                crl_rows_store(&grads->label, b, t0, count, d, k, how);
            }
        }
}
