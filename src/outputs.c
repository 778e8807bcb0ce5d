/*
 * outputs.c - the pass over pred / label rows (and the optional mask): the
 * output error (mse's statistic, see terms/mse.c) and the terms' output row
 * hooks (cross_entropy), accumulate and backward side by side.
 */
#include "engine.h"
#include "vecmath.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* acc[j] += (m (x - y))^2 row by row: SPEC "Output masks", PsychRNN's form. */
CRL_HOT static void masked_sq_diff_rows(const crl_output_rows *rows, double *restrict acc)
{
    for (int64_t r = 0; r < rows->count; r++)
        for (int64_t j = 0; j < rows->k; j++) {
            double d = crl_mask_at(rows, r, j)
                       * (rows->pred[r * rows->ld_pred + j] - rows->label[r * rows->ld_label + j]);
            acc[j] += d * d;
        }
}

/* Loads rows t0 .. t0 + count - 1 of element b of pred, label and mask. */
static crl_output_rows load_rows(crl_loss *loss, const crl_tensors *in, int64_t b, int64_t t0,
                                 int64_t count)
{
    scratch *w = &loss->work;
    crl_output_rows v = {b, t0, count, in->pred.width, NULL, NULL, NULL, 0, 0, 0, 0};
    v.pred = crl_rows_load(&in->pred, b, t0, count, w->tile, &v.ld_pred);
    v.label = crl_rows_load(&in->label, b, t0, count, w->tile2, &v.ld_label);
    if (loss->uses & CRL_USES(CRL_ROLE_MASK)) {
        v.mask = crl_rows_load(&in->mask, b, t0, count, w->tile3, &v.ld_mask);
        v.mask_width = in->mask.width;
    }
    return v;
}

/* One pass over the outputs: sum (m (pred - label))^2 per batch element in a
 * fixed order, then into the double-double slot; the terms' output hooks on
 * the same row tiles. */
int crl_outputs_forward(crl_loss *loss, const crl_tensors *in, crl_dd *payload,
                           crl_error *err)
{
    const crl_array *x = &in->pred;
    scratch *w = &loss->work;
    int64_t k = x->width, time = x->time, rows = crl_tile_rows(loss, k, time);
    crl_dd *slot = payload + loss->next_layout[REGION_SQERR];
    for (int64_t b = 0; b < x->batch; b++) {
        memset(w->s1, 0, sizeof(double) * (size_t) k);
        for (int64_t t0 = 0; t0 < time; t0 += rows) {
            int64_t count = time - t0 < rows ? time - t0 : rows;
            crl_output_rows v = load_rows(loss, in, b, t0, count);
            if (v.mask)
                masked_sq_diff_rows(&v, w->s1);
            else
                crl_sq_diff_rows(v.pred, v.ld_pred, v.label, v.ld_label, count, k, w->s1);
            for (int j = 0; j < loss->n_terms; j++) {
                crl_term *t = &loss->terms[j];
                if (term_active(t) && t->cls->accumulate_outputs
                    && t->cls->accumulate_outputs(t, &v, payload + t->slot, err) != CRL_OK)
                    return crl_term_error(loss, t, err);
            }
        }
        double s = crl_sum_fixed(w->s1, k);
        if (!isfinite(s)) {
            if (crl_report_nonfinite(x, CRL_ROLE_PRED, b, err) == CRL_OK
                && crl_report_nonfinite(&in->label, CRL_ROLE_LABEL, b, err) == CRL_OK
                && (!(loss->uses & CRL_USES(CRL_ROLE_MASK))
                    || crl_report_nonfinite(&in->mask, CRL_ROLE_MASK, b, err) == CRL_OK))
                crl_fail_at(err, CRL_ERR_DOMAIN, CRL_ROLE_PRED, b, -1, -1,
                            "pred - label [b=%lld]: sum of squares overflows",
                         (long long) b);
            return err->code;
        }
        *slot = crl_dd_add(*slot, crl_dd_make(s));
    }
    return CRL_OK;
}

/* out = c m^2 (x - y): the gradient of the (masked) output error. */
CRL_HOT static void scaled_diff_rows(const crl_output_rows *v, double c, double *restrict out)
{
    if (v->mask == NULL) {
        for (int64_t r = 0; r < v->count; r++)
            for (int64_t j = 0; j < v->k; j++)
                out[r * v->k + j] = c * (v->pred[r * v->ld_pred + j] - v->label[r * v->ld_label + j]);
        return;
    }
    for (int64_t r = 0; r < v->count; r++)
        for (int64_t j = 0; j < v->k; j++) {
            double m = crl_mask_at(v, r, j);
            out[r * v->k + j] = c * (m * m)
                                * (v->pred[r * v->ld_pred + j] - v->label[r * v->ld_label + j]);
        }
}

static bool output_hooks(const crl_loss *loss)
{
    for (int j = 0; j < loss->n_terms; j++)
        if (term_active(&loss->terms[j]) && loss->terms[j].cls->backward_outputs)
            return true;
    return false;
}

void crl_outputs_backward(crl_loss *loss, const crl_global *g, const crl_tensors *grads,
                             unsigned want)
{
    const crl_array *x = &g->inputs->pred;
    bool want_pred = want & CRL_USES(CRL_ROLE_PRED);
    bool want_label = want & CRL_USES(CRL_ROLE_LABEL);
    bool hooks = output_hooks(loss);
    crl_store how = store_how(loss);
    if (g->out_coef == 0.0 && !hooks && how.overwrite) {
        if (want_pred)
            crl_array_zero(&grads->pred);
        if (want_label)
            crl_array_zero(&grads->label);
    }
    if ((g->out_coef == 0.0 && !hooks) || !(want_pred || want_label))
        return;
    scratch *w = &loss->work;
    int64_t k = x->width, time = x->time, rows = crl_tile_rows(loss, k, time);
    double *dp = w->grad_tile, *dl = w->grad_tile2;
    for (int64_t b = 0; b < x->batch; b++)
        for (int64_t t0 = 0; t0 < time; t0 += rows) {
            int64_t count = time - t0 < rows ? time - t0 : rows;
            crl_output_rows v = load_rows(loss, g->inputs, b, t0, count);
            scaled_diff_rows(&v, g->out_coef, dp);
            for (int64_t e = 0; e < count * k; e++)
                dl[e] = -dp[e];
            for (int j = 0; j < loss->n_terms; j++) {
                const crl_term *t = &loss->terms[j];
                if (term_active(t) && t->cls->backward_outputs)
                    t->cls->backward_outputs(t, g, &v, want_pred ? dp : NULL,
                                             want_label ? dl : NULL);
            }
            if (want_pred)
                crl_rows_store(&grads->pred, b, t0, count, dp, k, how);
            if (want_label)
                crl_rows_store(&grads->label, b, t0, count, dl, k, how);
        }
}
