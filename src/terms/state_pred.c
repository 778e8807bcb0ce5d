/*
 * state_pred.c - StatePredictionLoss (SPEC "StatePredictionLoss", seed 001):
 * the mean squared difference between the rates and the rates tau steps
 * later, along time within each batch element,
 *
 *   L = 1/(B (T - tau) N) sum_b sum_{t < T - tau} sum_i D_{b,t,i}^2,
 *   D_{b,t,i} = S_{b,t,i} - S_{b,t+tau,i}.
 *
 * Time is never split across ranks, so each batch element is whole on one
 * rank; rows t + tau (and t - tau in backward) that lie outside the tile the
 * engine passes are loaded from the raw array into this term's scratch.
 * One packed slot: sum D^2.
 *
 * Reads: states.
 */
#include "../internal.h"
#include "../vecmath.h"

#include <stdlib.h>

enum { TAU };

static const crl_param_info params[] = {
    {"tau", CRL_PARAM_INT, 1, 1, 1e15, NULL, "time lag of the prediction (steps, T > tau)"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* Rows loaded at a time from outside the engine's tile: about 64 KiB. */
enum { LAG_TILE_DOUBLES = 8192 };

typedef struct state_pred {
    double *sq_sum;      /* per neuron: sum over t of D^2 of the current element */
    double *lag_tile;    /* lag_rows x N: rows loaded from outside a tile        */
    int64_t n, lag_rows;
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
    if (s != NULL) {
        free(s->sq_sum);
        free(s->lag_tile);
        free(s);
    }
    t->state = NULL;
}

static int prepare(crl_term *t, const crl_global *g, int64_t *slots, crl_error *err)
{
    const crl_array *a = g->pop[0].array;
    int64_t tau = lag_of(t), n = a->width;
    if (a->time <= tau)
        return crl_fail(err, CRL_ERR_INVALID, "T = %lld time steps, but tau = %lld needs T > tau",
                        (long long) a->time, (long long) tau);
    int64_t lag_rows = LAG_TILE_DOUBLES / n;
    if (lag_rows < 1)
        lag_rows = 1;
    if (lag_rows > a->time)
        lag_rows = a->time;
    state_pred *s = t->state;
    if (s == NULL && (s = t->state = calloc(1, sizeof *s)) == NULL)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
    if (s->n != n || s->lag_rows != lag_rows) {
        free(s->sq_sum);
        free(s->lag_tile);
        s->sq_sum = malloc(sizeof(double) * (size_t) n);
        s->lag_tile = malloc(sizeof(double) * (size_t) (lag_rows * n));
        s->n = s->lag_rows = 0;
        if (s->sq_sum == NULL || s->lag_tile == NULL)
            return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
        s->n = n;
        s->lag_rows = lag_rows;
    }
    *slots = 1;
    return CRL_OK;
}

/*
 * Rows t .. t + want - 1 of the element of `rows` as doubles: in place when
 * row t lies in the engine's tile, else loaded into the term's lag tile.
 * Returns the first row and sets *ld and *got (1 <= *got <= want).
 */
static const double *rows_at(const state_pred *s, const crl_rows *rows, int64_t t, int64_t want,
                             int64_t *ld, int64_t *got)
{
    int64_t end = rows->t0 + rows->count;
    if (t >= rows->t0 && t < end) {
        *got = want < end - t ? want : end - t;
        *ld = rows->ld;
        return rows->x + (t - rows->t0) * rows->ld;
    }
    int64_t n = want < s->lag_rows ? want : s->lag_rows;
    if (t < rows->t0 && rows->t0 - t < n)
        n = rows->t0 - t; /* the rest is in the tile */
    *got = n;
    return crl_rows_load(rows->array, rows->b, t, n, s->lag_tile, ld);
}

/* grad[r, i] += c (x[r, i] - y[r, i]). */
CRL_HOT static void add_scaled_diff_rows(const double *restrict x, int64_t ldx,
                                         const double *restrict y, int64_t ldy, int64_t count,
                                         int64_t n, double c, double *restrict grad)
{
    for (int64_t r = 0; r < count; r++)
        for (int64_t i = 0; i < n; i++)
            grad[r * n + i] += c * (x[r * ldx + i] - y[r * ldy + i]);
}

/* Rows t < T - tau of the tile add D_t^2 to the element's per-neuron sums,
 * in time order whatever the tiles. */
static int forward_rows(crl_term *t, const crl_rows *rows, crl_dd *slots, crl_error *err)
{
    (void) slots;
    (void) err;
    state_pred *s = t->state;
    int64_t tau = lag_of(t), n = rows->n, time = rows->array->time;
    if (rows->t0 == 0)
        for (int64_t i = 0; i < n; i++)
            s->sq_sum[i] = 0;
    int64_t ahead = time - tau - rows->t0; /* rows with t < T - tau */
    if (ahead > rows->count)
        ahead = rows->count;
    for (int64_t r = 0, got, ld; r < ahead; r += got) {
        const double *later = rows_at(s, rows, rows->t0 + r + tau, ahead - r, &ld, &got);
        crl_sq_diff_rows(rows->x + r * rows->ld, rows->ld, later, ld, got, n, s->sq_sum);
    }
    return CRL_OK;
}

/* The element's sum over neurons, in a fixed order, into the slot. */
static int forward_element(crl_term *t, const crl_rows *element, crl_dd *slots, crl_error *err)
{
    const state_pred *s = t->state;
    double sum = crl_sum_fixed(s->sq_sum, element->n);
    if (!isfinite(sum))
        return crl_fail(err, CRL_ERR_DOMAIN,
                        "states[b=%lld]: the sum of squared differences overflows",
                        (long long) element->b);
    slots[0] = crl_dd_add(slots[0], crl_dd_make(sum));
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

/*
 * dL/dS_t = 2/(B (T - tau) N) (D_t [t < T - tau] - D_{t-tau} [t >= tau])
 * (SPEC), as two passes over the tile: + coef (S_t - S_{t+tau}), then
 * - coef (S_{t-tau} - S_t).
 */
static void backward_rows(const crl_term *t, const crl_global *g, const crl_rows *rows,
                          double *grad)
{
    (void) g;
    const state_pred *s = t->state;
    int64_t tau = lag_of(t), n = rows->n, time = rows->array->time, got, ld;
    int64_t ahead = time - tau - rows->t0; /* rows with t < T - tau */
    if (ahead > rows->count)
        ahead = rows->count;
    for (int64_t r = 0; r < ahead; r += got) {
        const double *later = rows_at(s, rows, rows->t0 + r + tau, ahead - r, &ld, &got);
        add_scaled_diff_rows(rows->x + r * rows->ld, rows->ld, later, ld, got, n, s->coef,
                             grad + r * n);
    }
    int64_t first = tau - rows->t0; /* the first row with t >= tau */
    for (int64_t r = first > 0 ? first : 0; r < rows->count; r += got) {
        const double *earlier = rows_at(s, rows, rows->t0 + r - tau, rows->count - r, &ld, &got);
        add_scaled_diff_rows(earlier, ld, rows->x + r * rows->ld, rows->ld, got, n, -s->coef,
                             grad + r * n);
    }
}

const crl_term_class crl_term_state_pred = {
    .type = "state_pred",
    .summary = "StatePredictionLoss: mean squared change of the rates over tau time steps "
               "(seed 001)",
    .params = params,
    .uses = uses,
    .prepare = prepare,
    .forward_rows = forward_rows,
    .forward_element = forward_element,
    .finalize = finalize,
    .backward_rows = backward_rows,
    .destroy = destroy,
};
