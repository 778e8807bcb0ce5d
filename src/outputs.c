/*
 * outputs.c - the pass over pred / label rows (and the optional mask): the
 * output error (mse's statistic, see terms/mse.c) and the terms' row hooks
 * over pred rows (cross_entropy), accumulate and backward side by side.
 */
#include "engine.h"
#include "vecmath.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether some active term reading pred has output row hooks (accumulate
 * or backward). */
static bool output_hooks(const crl_loss *loss, bool backward)
{
    for (int k = 0; k < loss->n_terms; k++) {
        const crl_term *t = &loss->terms[k];
        const crl_term_class *cls = t->cls;
        bool has = backward ? cls->backward_output_rows != NULL
                            : cls->accumulate_output_rows || cls->accumulate_output_element;
        if (term_active(t) && (cls->uses(t) & CRL_USES(CRL_ROLE_PRED)) && has)
            return true;
    }
    return false;
}

/* Rows t0 .. t0 + count - 1 of element b of pred, label and the mask (when
 * the terms read one), as doubles. */
static crl_rows output_rows(crl_loss *loss, const crl_tensors *in, int64_t b, int64_t element,
                            int64_t t0, int64_t count)
{
    scratch *w = &loss->work;
    const crl_array *x = &in->pred, *y = &in->label;
    crl_rows v = {CRL_ROLE_PRED, x, b, element, t0, count, x->width, NULL, 0, y, NULL, 0,
                  NULL, 0, 0, NULL, &loss->g.place[0], 0, t0 % CRL_TIME_UNIT == 0, false, 0, NULL, NULL};
    v.x = crl_rows_load(x, b, t0, count, w->tile, &v.ld);
    v.y = crl_rows_load(y, b, t0, count, w->tile2, &v.ldy);
    if (loss->uses & CRL_USES(CRL_ROLE_MASK)) {
        v.mask = &in->mask;
        v.m = crl_rows_load(&in->mask, b, t0, count, w->tile3, &v.ldm);
        v.mask_width = in->mask.width;
    }
    return v;
}

/* Whether the output error alone reads float32 pred and label without a
 * mask: its sums then read the raw rows (crl_sq_diff_rows_f32 widens each
 * value as the double rows would hold it: the same bits), and its gradient
 * is written from them straight (output_error_store). */
static bool raw_output_error(const crl_loss *loss, const crl_tensors *in)
{
    return in->pred.dtype == CRL_FLOAT32 && in->label.dtype == CRL_FLOAT32
           && !(loss->uses & CRL_USES(CRL_ROLE_MASK));
}

/* out (+)= how.scale * sign * coef (x - y) over count rows of k values: the
 * operations of crl_output_error_backward_rows (a negated copy for label)
 * and crl_rows_store, fused, so the same bits. */
CRL_HOT static void output_error_store(const float *restrict x, int64_t ldx,
                                       const float *restrict y, int64_t ldy, float *restrict out,
                                       int64_t ldo, int64_t count, int64_t k, double coef,
                                       bool negate, crl_store how)
{
    /* -(c d) is (-c) d to the bit: the label's negation folds into c. */
    double scale = how.scale, c = negate ? -coef : coef;
    if (ldx == k && ldy == k && ldo == k) {   /* contiguous rows: one run */
        k *= count;
        count = 1;
    }
    if (how.overwrite && scale == 1.0)   /* 1 g is g: a multiply less, the same bits */
        for (int64_t r = 0; r < count; r++)
            for (int64_t j = 0; j < k; j++) {
                double g = c * ((double) x[r * ldx + j] - (double) y[r * ldy + j]);
                out[r * ldo + j] = (float) (0.0 + g);
            }
    else if (how.overwrite)
        for (int64_t r = 0; r < count; r++)
            for (int64_t j = 0; j < k; j++) {
                double g = c * ((double) x[r * ldx + j] - (double) y[r * ldy + j]);
                out[r * ldo + j] = (float) (0.0 + scale * g);
            }
    else
        for (int64_t r = 0; r < count; r++)
            for (int64_t j = 0; j < k; j++) {
                double g = c * ((double) x[r * ldx + j] - (double) y[r * ldy + j]);
                out[r * ldo + j] = (float) ((double) out[r * ldo + j] + scale * g);
            }
}

/* Rows u0 .. u1 - 1 of element b of pred and label, one canonical unit: its
 * output error (sum (pred - label)^2 in a fixed order, into its exact slot)
 * and the terms' row hooks tile by tile, then their element hooks. */
static int outputs_unit(crl_loss *loss, const crl_tensors *in, crl_xsum *payload, int64_t b,
                        int64_t u0, int64_t u1, bool error_pass, bool hooks, bool raw,
                        crl_error *err)
{
    const crl_array *x = &in->pred, *y = &in->label;
    scratch *w = &loss->work;
    int64_t k = x->width, rows = crl_tile_rows(loss, k);
    int64_t element = loss->seen[2] + b, base = loss->seen_rows[2] + b * x->time;
    crl_xsum *slot = payload + loss->next_layout[REGION_SQERR];
    if (error_pass)
        memset(w->s1, 0, sizeof(double) * (size_t) (k * crl_output_lanes(k)));
    for (int64_t t0 = u0; t0 < u1 && raw; t0 += rows) {
        int64_t count = u1 - t0 < rows ? u1 - t0 : rows;
        crl_sq_diff_rows_f32(crl_array_row(x, b, t0), x->time_stride, crl_array_row(y, b, t0),
                             y->time_stride, t0 - u0, count, k, w->s1);
    }
    for (int64_t t0 = u0; t0 < u1 && !raw; t0 += rows) {
        int64_t count = u1 - t0 < rows ? u1 - t0 : rows;
        crl_rows view = output_rows(loss, in, b, element, t0, count);
        view.row = base + t0;
        view.first = t0 == u0;
        if (error_pass)
            crl_output_error_rows(&view, w->s1);
        for (int j = 0; j < loss->n_terms && hooks; j++) {
            crl_term *t = &loss->terms[j];
            if (term_active(t) && (t->cls->uses(t) & CRL_USES(CRL_ROLE_PRED))
                && t->cls->accumulate_output_rows
                && t->cls->accumulate_output_rows(t, &view, payload + t->slot, err) != CRL_OK)
                return crl_term_error(loss, t, err);
        }
    }
    const crl_array *mask = loss->uses & CRL_USES(CRL_ROLE_MASK) ? &in->mask : NULL;
    if (error_pass && crl_output_error_element(x, y, mask, b, w->s1, slot, err) != CRL_OK)
        return err->code;
    crl_rows unit = {CRL_ROLE_PRED, x, b, element, u0, u1 - u0, k, NULL, 0, y, NULL, 0,
                     NULL, 0, 0, mask, &loss->g.place[0], base + u0, true, u1 == x->time, 0, NULL, NULL};
    for (int j = 0; j < loss->n_terms && hooks; j++) {
        crl_term *t = &loss->terms[j];
        if (term_active(t) && (t->cls->uses(t) & CRL_USES(CRL_ROLE_PRED))
            && t->cls->accumulate_output_element
            && t->cls->accumulate_output_element(t, &unit, payload + t->slot, err) != CRL_OK)
            return crl_term_error(loss, t, err);
    }
    return CRL_OK;
}

/* One pass over pred and label rows of this chunk, unit by unit: the output
 * error when a term declared it, and the terms' row hooks. */
int crl_outputs_forward(crl_loss *loss, const crl_tensors *in, crl_xsum *payload, crl_error *err)
{
    const crl_array *x = &in->pred;
    bool error_pass = crl_pass_needed(loss, CRL_ROLE_PRED, CRL_PASS_OUTPUT_ERROR);
    bool hooks = output_hooks(loss, false);
    if (!error_pass && !hooks)
        return CRL_OK;
    bool raw = error_pass && !hooks && raw_output_error(loss, in);
    for (int64_t b = 0; b < x->batch; b++)
        for (int64_t u0 = 0; u0 < x->time; u0 += CRL_TIME_UNIT) {
            int64_t u1 = x->time - u0 < CRL_TIME_UNIT ? x->time : u0 + CRL_TIME_UNIT;
            if (outputs_unit(loss, in, payload, b, u0, u1, error_pass, hooks, raw, err) != CRL_OK)
                return err->code;
        }
    return CRL_OK;
}

/* The gradients of pred and label for this chunk: coef (pred - label) and
 * its negative from the output error, plus the terms' row hooks. */
void crl_outputs_backward(crl_loss *loss, const crl_global *g, const crl_tensors *grads,
                          unsigned want)
{
    const crl_array *x = &g->inputs->pred;
    bool want_pred = want & CRL_USES(CRL_ROLE_PRED);
    bool want_label = want & CRL_USES(CRL_ROLE_LABEL);
    bool hooks = output_hooks(loss, true);
    double coef = g->out.coef;
    crl_store how = store_how(loss);
    if (coef == 0.0 && !hooks) {
        if (how.overwrite && want_pred)
            crl_array_zero(&grads->pred);
        if (how.overwrite && want_label)
            crl_array_zero(&grads->label);
        return;
    }
    if (!(want_pred || want_label))
        return;
    scratch *w = &loss->work;
    int64_t k = x->width, time = x->time, rows = crl_tile_rows(loss, k);
    double *d = w->grad_tile, *dl = w->grad_tile2;
    const crl_array *y = &g->inputs->label;
    if (!hooks && raw_output_error(loss, g->inputs)
        && (!want_pred || grads->pred.dtype == CRL_FLOAT32)
        && (!want_label || grads->label.dtype == CRL_FLOAT32)) {
        for (int64_t b = 0; b < x->batch; b++)
            for (int r = 0; r < 2; r++) {
                const crl_array *out = r == 0 ? &grads->pred : &grads->label;
                if (r == 0 ? want_pred : want_label)
                    output_error_store(crl_array_row(x, b, 0), x->time_stride,
                                       crl_array_row(y, b, 0), y->time_stride,
                                       (float *) crl_array_row(out, b, 0), out->time_stride,
                                       time, k, coef, r == 1, how);
            }
        return;
    }
    for (int64_t b = 0; b < x->batch; b++)
        for (int64_t t0 = 0; t0 < time; t0 += rows) {
            int64_t count = time - t0 < rows ? time - t0 : rows;
            crl_rows view = output_rows(loss, g->inputs, b, loss->done[2] + b, t0, count);
            view.row = loss->done_rows[2] + b * time + t0;
            crl_output_error_backward_rows(&view, coef, d);
            if (!hooks) {
                /* The output error alone: label's gradient is -pred's. */
                if (want_pred)
                    crl_rows_store(&grads->pred, b, t0, count, d, k, how, w->s1);
                if (want_label) {
                    for (int64_t e = 0; e < count * k; e++)
                        d[e] = -d[e];
                    crl_rows_store(&grads->label, b, t0, count, d, k, how, w->s1);
                }
                continue;
            }
            for (int64_t e = 0; e < count * k; e++)
                dl[e] = -d[e];
            for (int j = 0; j < loss->n_terms; j++) {
                const crl_term *t = &loss->terms[j];
                if (term_active(t) && (t->cls->uses(t) & CRL_USES(CRL_ROLE_PRED))
                    && t->cls->backward_output_rows)
                    t->cls->backward_output_rows(t, g, &view, d, dl);
            }
            if (want_pred)
                crl_rows_store(&grads->pred, b, t0, count, d, k, how, w->s1);
            if (want_label)
                crl_rows_store(&grads->label, b, t0, count, dl, k, how, w->s1);
        }
}
