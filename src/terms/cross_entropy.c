/*
 * cross_entropy.c - CrossEntropyLoss (docs/losses.md "CrossEntropyLoss", nn4n's code),
 * with the optional output mask (docs/losses.md "Output masks"):
 *
 *     p = softmax(pred) along K (row maximum subtracted), or p = pred
 *     q = max(p, clamp)
 *     L = -1/(B T) sum_{b,t} sum_k m_k y_k log q_k
 *
 *     g_k = dL/dp_k = -m_k y_k / (B T q_k) where p_k >= clamp, else 0
 *     dL/d pred_j = p_j (g_j - sum_k p_k g_k)   (g_j without the softmax)
 *     dL/d y_k = -m_k log q_k / (B T)
 *
 * Reads: pred, label (B, T, K); mask when given.
 * Slots: [0] sum of m y log q, per row tile of a batch element in double in
 * row order (the tiles of an element do not move with the decomposition),
 * tiles combined double-double.
 * Errors: a non-finite pred, label or mask (found while accumulating: the
 * softmax and the clamp would hide an infinite pred); a finite input whose
 * products overflow is a domain error.
 */
#include "../internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { APPLY_SOFTMAX, CLAMP };

static const crl_param_info params[] = {
    {"apply_softmax", CRL_PARAM_BOOL, 1, 0, 1, NULL,
     "true: pred are logits (softmax along K); false: pred are probabilities"},
    {"clamp", CRL_PARAM_REAL, 1e-12, DBL_MIN, 1, NULL,
     "q = max(p, clamp) inside the log; no gradient where p < clamp"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* Per-evaluation state: one row of p, and the backward scale. */
typedef struct state {
    double *p;
    int64_t cap;
    double scale;    /* t->weight / (B T) */
} state;

static unsigned uses(const crl_term *t)
{
    (void) t;
    return CRL_USES(CRL_ROLE_PRED) | CRL_USES(CRL_ROLE_LABEL);
}

static int prepare(crl_term *t, const crl_global *g, int64_t *slots, crl_error *err)
{
    state *s = t->state;
    if (s == NULL && (s = t->state = calloc(1, sizeof *s)) == NULL)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
    if (!crl_reserve(&s->p, &s->cap, g->inputs->pred.width, sizeof(double)))
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory for a row of %lld outputs",
                        (long long) g->inputs->pred.width);
    *slots = 1;
    return CRL_OK;
}

/* p of row r (into s->p). */
static const double *row_probabilities(const crl_term *t, const crl_rows *v, int64_t r)
{
    state *s = t->state;
    const double *x = v->x + r * v->ld;
    if (!t->param[APPLY_SOFTMAX])
        return x;
    double top = x[0], z = 0;
    for (int64_t j = 1; j < v->n; j++)
        top = x[j] > top ? x[j] : top;
    for (int64_t j = 0; j < v->n; j++) {
        s->p[j] = exp(x[j] - top);
        z += s->p[j];
    }
    for (int64_t j = 0; j < v->n; j++)
        s->p[j] /= z;
    return s->p;
}

static int accumulate_output_rows(crl_term *t, const crl_rows *v, crl_xsum *slots, crl_error *err)
{
    double clamp = t->param[CLAMP], sum = 0, probe = 0;
    for (int64_t r = 0; r < v->count; r++) {
        const double *p = row_probabilities(t, v, r), *x = v->x + r * v->ld;
        const double *y = v->y + r * v->ldy;
        for (int64_t j = 0; j < v->n; j++) {
            double m = crl_mask_at(v, r, j);
            sum += m * y[j] * log(p[j] > clamp ? p[j] : clamp);
            /* NaN unless all three are finite (a softmax or the clamp can
             * hide an infinity of pred). */
            probe += (x[j] * 0) * (y[j] * 0) * (m * 0);
        }
    }
    if (!isfinite(sum) || !isfinite(probe)) {
        if (crl_report_nonfinite_outputs(v->array, v->label, v->mask, v->b, err) == CRL_OK)
            crl_fail_at(err, CRL_ERR_DOMAIN, CRL_ROLE_PRED, v->b, -1, -1,
                        "m y log q overflows at b=%lld", (long long) v->b);
        return err->code;
    }
    crl_xsum_add(&slots[0], sum);
    return CRL_OK;
}

static int finalize(crl_term *t, crl_global *g, const crl_dd *slots, crl_term_out *out,
                    crl_error *err)
{
    (void) err;
    state *s = t->state;
    double count = (double) g->out.batch * (double) g->out.time;
    out->value = -crl_dd_round(slots[0]) / count;
    s->scale = t->weight / count;
    return CRL_OK;
}

static void backward_output_rows(const crl_term *t, const crl_global *g, const crl_rows *v,
                                 double *dpred, double *dlabel)
{
    (void) g;
    const state *s = t->state;
    double clamp = t->param[CLAMP], scale = s->scale;
    bool softmax = t->param[APPLY_SOFTMAX];
    int64_t k = v->n;
    for (int64_t r = 0; r < v->count; r++) {
        const double *p = row_probabilities(t, v, r), *y = v->y + r * v->ldy;
        double *dp = dpred + r * k, *dl = dlabel + r * k;
        for (int64_t j = 0; j < k; j++)
            dl[j] -= scale * crl_mask_at(v, r, j) * log(p[j] > clamp ? p[j] : clamp);
        /* g_j = -m_j y_j / q_j (times scale, below), 0 where p_j < clamp. */
        double pg = 0;
        for (int64_t j = 0; j < k; j++)
            if (p[j] >= clamp)
                pg += p[j] * (-crl_mask_at(v, r, j) * y[j] / p[j]);
        for (int64_t j = 0; j < k; j++) {
            double gj = p[j] >= clamp ? -crl_mask_at(v, r, j) * y[j] / p[j] : 0;
            dp[j] += scale * (softmax ? p[j] * (gj - pg) : gj);
        }
    }
}

static void destroy(crl_term *t)
{
    state *s = t->state;
    if (s)
        free(s->p);
    free(s);
    t->state = NULL;
}

const crl_term_class crl_term_cross_entropy = {
    .type = "cross_entropy",
    .summary = "CrossEntropyLoss: mean over (b, t) of minus sum_k y_k log softmax(pred)_k (nn4n)",
    .python_name = "CrossEntropyLoss",
    .example = "c=cross_entropy:apply_softmax=true,clamp=1e-12",
    .inputs = CRL_USES(CRL_ROLE_PRED) | CRL_USES(CRL_ROLE_LABEL) | CRL_USES(CRL_ROLE_MASK),
    .gradients = CRL_USES(CRL_ROLE_PRED) | CRL_USES(CRL_ROLE_LABEL),
    .params = params,
    .takes_mask = true,
    .uses = uses,
    .prepare = prepare,
    .finalize = finalize,
    .accumulate_output_rows = accumulate_output_rows,
    .backward_output_rows = backward_output_rows,
    .destroy = destroy,
};
