/*
 * entropy.c - EntropyLoss (SPEC "EntropyLoss", seed 001): the mean entropy
 * of the normalized population activity of each time step, plus an L2
 * penalty on the rates,
 *
 *   Z_{b,t} = sum_j S_{b,t,j} + eps,   p_{b,t,i} = S_{b,t,i} / Z_{b,t},
 *   H_{b,t} = -sum_i p_{b,t,i} log(p_{b,t,i} + eps),
 *   L = 1/(B T) sum_{b,t} H_{b,t} + reg/(B T) sum_{b,t} |s_{b,t}|^2.
 *
 * One packed slot: sum H.  The penalty comes from the shared sum of S^2 and
 * its gradient is affine (alpha, beta); the entropy's gradient is written per
 * row, recomputing p.  Rows are summed in fixed orders (vecmath.h) and
 * logarithms taken by crl_log_array, so a row gives the same bits wherever
 * it lies.
 *
 * Reads: states (all rates must be >= 0).
 */
#include "../internal.h"
#include "../vecmath.h"

#include <float.h>
#include <stdlib.h>

enum { REG, EPS };

static const crl_param_info params[] = {
    {"reg", CRL_PARAM_REAL, 10, -DBL_MAX, DBL_MAX, NULL, "weight of the mean squared rate norm"},
    {"eps", CRL_PARAM_REAL, 1e-8, DBL_MIN, DBL_MAX, NULL,
     "added to the normalizer and inside the log (> 0)"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

typedef struct entropy {
    double *p, *shifted, *log_p;   /* N each: p, p + eps, log(p + eps) of a row */
    int64_t n;
    double sum_h;                  /* sum over t of H of the current element */
    double coef;                   /* backward: weight / (B T)               */
} entropy;

static unsigned uses(const crl_term *t)
{
    (void) t;
    return CRL_USES(CRL_ROLE_STATES);
}

static void destroy(crl_term *t)
{
    entropy *s = t->state;
    if (s != NULL)
        free(s->p);
    free(s);
    t->state = NULL;
}

static int prepare(crl_term *t, const crl_global *g, int64_t *slots, crl_error *err)
{
    int64_t n = g->pop[0].array->width;
    entropy *s = t->state;
    if (s == NULL && (s = t->state = calloc(1, sizeof *s)) == NULL)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
    if (s->n != n) {
        free(s->p);
        s->n = 0;
        if ((s->p = malloc(sizeof(double) * 3 * (size_t) n)) == NULL)
            return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
        s->shifted = s->p + n;
        s->log_p = s->p + 2 * n;
        s->n = n;
    }
    *slots = 1;
    return CRL_OK;
}

/* Number of negative elements of a tile. */
CRL_HOT static int64_t count_negative(const double *restrict x, int64_t ld, int64_t count,
                                      int64_t n)
{
    int64_t negative = 0;
    for (int64_t r = 0; r < count; r++)
        for (int64_t i = 0; i < n; i++)
            negative += x[r * ld + i] < 0;
    return negative;
}

/* p = x / z and shifted = p + eps (z = sum x + eps, given as 1/z). */
CRL_HOT static void normalize_row(const double *restrict x, int64_t n, double inv_z, double eps,
                                  double *restrict p, double *restrict shifted)
{
    for (int64_t i = 0; i < n; i++) {
        p[i] = x[i] * inv_z;
        shifted[i] = p[i] + eps;
    }
}

/* q_i = -log(p_i + eps) - p_i / (p_i + eps), the derivative of H by p_i,
 * into shifted. */
CRL_HOT static void entropy_slope(const double *restrict p, const double *restrict log_p,
                                  int64_t n, double *restrict shifted)
{
    for (int64_t i = 0; i < n; i++)
        shifted[i] = -log_p[i] - p[i] / shifted[i];
}

/* grad_j += k (q_j - center). */
CRL_HOT static void add_centered(const double *restrict q, int64_t n, double center, double k,
                                 double *restrict grad)
{
    for (int64_t j = 0; j < n; j++)
        grad[j] += k * (q[j] - center);
}

/* p, p + eps and log(p + eps) of one row into the scratch; returns 1 / Z. */
static double row_distribution(const entropy *s, const double *x, int64_t n, double eps)
{
    double inv_z = 1.0 / (crl_sum_fixed(x, n) + eps);
    normalize_row(x, n, inv_z, eps, s->p, s->shifted);
    crl_log_array(s->shifted, s->log_p, n);
    return inv_z;
}

static int forward_rows(crl_term *t, const crl_rows *rows, crl_dd *slots, crl_error *err)
{
    (void) slots;
    entropy *s = t->state;
    int64_t n = rows->n;
    double eps = t->param[EPS];
    if (count_negative(rows->x, rows->ld, rows->count, n) > 0)
        for (int64_t r = 0; r < rows->count; r++)
            for (int64_t i = 0; i < n; i++)
                if (rows->x[r * rows->ld + i] < 0)
                    return crl_fail(err, CRL_ERR_DOMAIN,
                                    "states[b=%lld, t=%lld, i=%lld] = %g is negative",
                                    (long long) rows->b, (long long) (rows->t0 + r), (long long) i,
                                    rows->x[r * rows->ld + i]);
    if (rows->t0 == 0)
        s->sum_h = 0;
    for (int64_t r = 0; r < rows->count; r++) {
        row_distribution(s, rows->x + r * rows->ld, n, eps);
        s->sum_h -= crl_dot_fixed(s->p, s->log_p, n);
    }
    return CRL_OK;
}

static int forward_element(crl_term *t, const crl_rows *element, crl_dd *slots, crl_error *err)
{
    (void) element;
    (void) err;
    const entropy *s = t->state;
    slots[0] = crl_dd_add(slots[0], crl_dd_make(s->sum_h));
    return CRL_OK;
}

static int finalize(crl_term *t, crl_global *g, const crl_dd *slots, crl_term_out *out,
                    crl_error *err)
{
    (void) err;
    entropy *s = t->state;
    crl_population *pop = &g->pop[0];
    double reg = t->param[REG];
    out->value = crl_dd_round(crl_dd_div_d(slots[0], pop->count)) + reg * pop->sumsq / pop->count;
    s->coef = t->weight / pop->count;
    if ((g->grad_mask & CRL_USES(CRL_ROLE_STATES)) && reg != 0) {
        /* d/dS of reg sum S^2 / (B T) is 2 reg S / (B T): alpha takes its
         * value at the mean, beta the slope. */
        double slope = t->weight * (2 * reg / pop->count);
        for (int64_t i = 0; i < pop->n; i++) {
            pop->alpha[i] += slope * pop->mean[i];
            pop->beta[i] += slope;
        }
        pop->affine = true;
    }
    return CRL_OK;
}

/* dH/dS_j = (q_j - sum_i p_i q_i) / Z (SPEC), times weight / (B T). */
static void backward_rows(const crl_term *t, const crl_global *g, const crl_rows *rows,
                          double *grad)
{
    (void) g;
    const entropy *s = t->state;
    int64_t n = rows->n;
    for (int64_t r = 0; r < rows->count; r++) {
        double inv_z = row_distribution(s, rows->x + r * rows->ld, n, t->param[EPS]);
        entropy_slope(s->p, s->log_p, n, s->shifted);
        double p_dot_q = crl_dot_fixed(s->p, s->shifted, n);
        add_centered(s->shifted, n, p_dot_q, s->coef * inv_z, grad + r * n);
    }
}

const crl_term_class crl_term_entropy = {
    .type = "entropy",
    .summary = "EntropyLoss: mean entropy of the normalized rates of each step, plus "
               "reg mean |s|^2 (seed 001)",
    .params = params,
    .uses = uses,
    .prepare = prepare,
    .forward_rows = forward_rows,
    .forward_element = forward_element,
    .finalize = finalize,
    .backward_rows = backward_rows,
    .destroy = destroy,
};
