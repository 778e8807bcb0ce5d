/*
 * state_pred.c - StatePredictionLoss (docs/losses.md "StatePredictionLoss"):
 * the mean squared difference between the rates and the rates tau steps
 * later, along time within each batch element,
 *
 *   L = 1/(B (T - tau) N) sum_b sum_{t < T - tau} sum_i D_{b,t,i}^2,
 *   D_{b,t,i} = S_{b,t,i} - S_{b,t+tau,i}.
 *
 * Time is never split across ranks, so each batch element is whole on one
 * rank, and the rows t + tau and t - tau a tile needs are read straight from
 * the raw array (float32 or float64, widened element by element), wherever
 * the engine's tiles end.  One packed slot: sum D^2.
 *
 * Exactness: each neuron's sum of D^2 adds its rows in time order, and the
 * gradient of row t is one expression of rows t - tau, t, t + tau chosen by
 * t alone, so no tile or chunk boundary changes a bit.
 *
 * Reads: states (raw rows).
 */
#include "../internal.h"
#include "../vecmath.h"

#include <stdlib.h>

enum { TAU };

static const crl_param_info params[] = {
    {"tau", CRL_PARAM_INT, 1, 1, 1e15, NULL, "time lag of the prediction (steps, T > tau)"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

typedef struct state_pred {
    double *sq_sum;      /* per neuron: sum over t of D^2 of the current element */
    int64_t n;
    double coef;         /* backward: weight * 2 / (B (T - tau) N)               */
} state_pred;

static int64_t lag_of(const crl_term *t)
{
    return (int64_t) t->param[TAU];
}

static unsigned uses(const crl_term *t)
{
    (void) t;
    return CRL_USES(CRL_ROLE_STATES);
}

static void destroy(crl_term *t)
{
    state_pred *s = t->state;
    if (s != NULL)
        free(s->sq_sum);
    free(s);
    t->state = NULL;
}

static int prepare(crl_term *t, const crl_global *g, int64_t *slots, crl_error *err)
{
    const crl_array *a = g->pop[0].array;
    int64_t tau = lag_of(t), n = a->width;
    if (a->time <= tau)
        return crl_fail(err, CRL_ERR_INVALID, "T = %lld time steps, but tau = %lld needs T > tau",
                        (long long) a->time, (long long) tau);
    state_pred *s = t->state;
    if (s == NULL && (s = t->state = calloc(1, sizeof *s)) == NULL)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
    if (s->n != n) {
        free(s->sq_sum);
        s->n = 0;
        if ((s->sq_sum = malloc(sizeof(double) * (size_t) (n > 0 ? n : 1))) == NULL)
            return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
        s->n = n;
    }
    *slots = 1;
    return CRL_OK;
}

/*
 * acc[i] += (x[r, i] - x[r + tau, i])^2 for rows r < count in turn, x's rows
 * ld apart and row r + tau at lag = tau * ld.  Four rows per sweep over the
 * neurons keep acc in registers; each acc[i] still adds its rows in time
 * order.
 */
#define SQ_LAG_KERNEL(name, type)                                                               \
    CRL_HOT_FMA static void name(const type *restrict x, int64_t ld, int64_t lag, int64_t count,   \
                             int64_t n, double *restrict acc)                                  \
    {                                                                                          \
        int64_t r = 0;                                                                         \
        for (; r + 4 <= count; r += 4) {                                                       \
            const type *x0 = x + r * ld, *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;          \
            const type *y0 = x0 + lag, *y1 = x1 + lag, *y2 = x2 + lag, *y3 = x3 + lag;         \
            for (int64_t i = 0; i < n; i++) {                                                  \
                double d0 = (double) x0[i] - (double) y0[i];                                   \
                double d1 = (double) x1[i] - (double) y1[i];                                   \
                double d2 = (double) x2[i] - (double) y2[i];                                   \
                double d3 = (double) x3[i] - (double) y3[i];                                   \
                acc[i] = fma(d3, d3, fma(d2, d2, fma(d1, d1, fma(d0, d0, acc[i]))));          \
            }                                                                                  \
        }                                                                                      \
        for (; r < count; r++) {                                                               \
            const type *x0 = x + r * ld, *y0 = x0 + lag;                                       \
            for (int64_t i = 0; i < n; i++) {                                                  \
                double d = (double) x0[i] - (double) y0[i];                                    \
                acc[i] = fma(d, d, acc[i]);                                                    \
            }                                                                                  \
        }                                                                                      \
    }
SQ_LAG_KERNEL(sq_lag_f32, float)
SQ_LAG_KERNEL(sq_lag_f64, double)

/*
 * grad[r, i] += c (D_t [t < T - tau] - D_{t-tau} [t >= tau]) for the rows
 * t = t0 + r of x (rows ld apart, lag = tau * ld): rows that have both
 * neighbours take c ((x_t - x_{t+tau}) - (x_{t-tau} - x_t)), the others the
 * one difference they have, in one pass.
 */
#define LAG_GRAD_KERNEL(name, type)                                                             \
    CRL_HOT static void name(const type *restrict x, int64_t ld, int64_t lag, int64_t t0,      \
                             int64_t count, int64_t time, int64_t tau, int64_t n, double c,    \
                             double *restrict grad)                                            \
    {                                                                                          \
        for (int64_t r = 0; r < count; r++) {                                                  \
            int64_t t = t0 + r;                                                                \
            bool ahead = t + tau < time, behind = t >= tau;                                    \
            const type *xt = x + r * ld;                                                       \
            double *g = grad + r * n;                                                          \
            if (ahead && behind) {                                                             \
                const type *xa = xt + lag, *xb = xt - lag;                                     \
                for (int64_t i = 0; i < n; i++) {                                              \
                    double v = (double) xt[i];                                                 \
                    g[i] += c * ((v - (double) xa[i]) - ((double) xb[i] - v));                 \
                }                                                                              \
            } else if (ahead) {                                                                \
                const type *xa = xt + lag;                                                     \
                for (int64_t i = 0; i < n; i++)                                                \
                    g[i] += c * ((double) xt[i] - (double) xa[i]);                             \
            } else if (behind) {                                                               \
                const type *xb = xt - lag;                                                     \
                for (int64_t i = 0; i < n; i++)                                                \
                    g[i] += c * ((double) xt[i] - (double) xb[i]);                             \
            }                                                                                  \
        }                                                                                      \
    }
LAG_GRAD_KERNEL(lag_grad_f32, float)
LAG_GRAD_KERNEL(lag_grad_f64, double)

/* Rows t < T - tau of the tile add D_t^2 to the element's per-neuron sums,
 * in time order whatever the tiles. */
static int accumulate_rows(crl_term *t, const crl_rows *rows, crl_xsum *slots, crl_error *err)
{
    (void) slots;
    (void) err;
    state_pred *s = t->state;
    const crl_array *a = rows->array;
    int64_t tau = lag_of(t), n = rows->n, ld = a->time_stride;
    if (rows->t0 == 0)
        for (int64_t i = 0; i < n; i++)
            s->sq_sum[i] = 0;
    int64_t ahead = a->time - tau - rows->t0; /* rows with t < T - tau */
    if (ahead > rows->count)
        ahead = rows->count;
    if (ahead <= 0)
        return CRL_OK;
    const void *x = crl_array_row(a, rows->b, rows->t0);
    if (a->dtype == CRL_FLOAT32)
        sq_lag_f32(x, ld, tau * ld, ahead, n, s->sq_sum);
    else
        sq_lag_f64(x, ld, tau * ld, ahead, n, s->sq_sum);
    return CRL_OK;
}

/* The element's sum over neurons, in a fixed order, into the slot. */
static int accumulate_element(crl_term *t, const crl_rows *element, crl_xsum *slots, crl_error *err)
{
    const state_pred *s = t->state;
    double sum = crl_sum_fixed(s->sq_sum, element->n);
    if (!isfinite(sum))
        return crl_fail(err, CRL_ERR_DOMAIN,
                        "states[b=%lld]: the sum of squared differences overflows",
                        (long long) element->b);
    crl_xsum_add(&slots[0], sum);
    return CRL_OK;
}

static int finalize(crl_term *t, crl_global *g, const crl_dd *slots, crl_term_out *out,
                    crl_error *err)
{
    (void) err;
    state_pred *s = t->state;
    const crl_population *pop = &g->pop[0];
    double count = (double) pop->batch * (double) (pop->time - lag_of(t)) * (double) pop->n;
    out->value = crl_dd_round(crl_dd_div_d(slots[0], count));
    s->coef = t->weight * 2 / count;
    return CRL_OK;
}

/* dL/dS_t = 2/(B (T - tau) N) (D_t [t < T - tau] - D_{t-tau} [t >= tau])
 * (docs/losses.md), one pass over the tile reading rows t - tau, t, t + tau. */
static void backward_rows(const crl_term *t, const crl_global *g, const crl_rows *rows,
                          double *grad)
{
    (void) g;
    const state_pred *s = t->state;
    const crl_array *a = rows->array;
    int64_t tau = lag_of(t), ld = a->time_stride;
    const void *x = crl_array_row(a, rows->b, rows->t0);
    if (a->dtype == CRL_FLOAT32)
        lag_grad_f32(x, ld, tau * ld, rows->t0, rows->count, a->time, tau, rows->n, s->coef,
                     grad);
    else
        lag_grad_f64(x, ld, tau * ld, rows->t0, rows->count, a->time, tau, rows->n, s->coef,
                     grad);
}

const crl_term_class crl_term_state_pred = {
    .type = "state_pred",
    .summary = "StatePredictionLoss: mean squared change of the rates over tau time steps "
               "",
    .python_name = "StatePredictionLoss",
    .example = "s=state_pred:tau=2",
    .inputs = CRL_USES(CRL_ROLE_STATES),
    .gradients = CRL_USES(CRL_ROLE_STATES),
    .params = params,
    .raw_rows = true,
    .passes = CRL_PASS_MOMENTS,
    .uses = uses,
    .prepare = prepare,
    .accumulate_rows = accumulate_rows,
    .accumulate_element = accumulate_element,
    .finalize = finalize,
    .backward_rows = backward_rows,
    .destroy = destroy,
};
