/*
 * state_pred.c - StatePredictionLoss (docs/losses.md "StatePredictionLoss"):
 * the mean squared difference between the rates and the rates tau steps
 * later, along time within each batch element,
 *
 *   L = 1/(B (T - tau) N) sum_b sum_{t < T - tau} sum_i D_{b,t,i}^2,
 *   D_{b,t,i} = S_{b,t,i} - S_{b,t+tau,i}.
 *
 * The rows t + tau and t - tau a tile needs are read straight from the raw
 * array (float32 or float64, widened element by element), wherever the
 * engine's tiles end.  Slots: [0] sum D^2; [1] (blocks) the rows published
 * for other chunks.
 *
 * Blocks (crl_loss_set_block, docs/losses.md "Decompositions"): a chunk that
 * does not hold all of T publishes its first and last tau rows of each
 * element; the pairs (t, t + tau) whose second row lies beyond the chunk
 * wait, with the per-neuron sums of their unit so far, until the second
 * reduction (add_more) has gathered every rank's published rows: they are
 * then added in time order, as the forward would have, and the unit summed.
 * The backward takes rows t +- tau beyond the chunk from the gathered rows.
 *
 * Exactness: each neuron's sum of D^2 over a unit adds its rows in time
 * order, and the gradient of row t is one expression of rows t - tau, t,
 * t + tau chosen by t alone, so no tile, chunk or block boundary changes a
 * bit.
 *
 * Reads: states (raw rows).
 */
#include "../internal.h"
#include "../vecmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { TAU };

static const crl_param_info params[] = {
    {"tau", CRL_PARAM_INT, 1, 1, 1e15, NULL, "time lag of the prediction (steps, T > tau)"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* Rows of the plane as doubles, each with its global (element, step). */
typedef struct row_set {
    int64_t *key;        /* 2 per row: b, t                                      */
    double *data;        /* n per row                                            */
    int64_t count, key_cap, data_cap;
} row_set;

typedef struct state_pred {
    double *sq_sum;      /* per neuron: sum over t of D^2 of the current unit    */
    int64_t n;
    double coef;         /* backward: weight * 2 / (B (T - tau) N)               */
    /* Blocks: rows this rank publishes; units waiting for rows beyond their
     * chunk (key: b, first and end step of the waiting pairs; data: the
     * unit's sq_sum so far); steps before a chunk its backward needs (key:
     * b, first, end); and every rank's published rows, sorted (gathered). */
    row_set published, waiting, needed, gathered;
    double *row_buf;     /* 3 n: rows as doubles (backward)                      */
} state_pred;

/* Room for one more row of n values (keys keys). */
static bool row_set_grow(row_set *r, int keys, int64_t n)
{
    return crl_reserve(&r->key, &r->key_cap, keys * (r->count + 1), sizeof(int64_t))
           && crl_reserve(&r->data, &r->data_cap, n * (r->count + 1), sizeof(double));
}

static void row_set_free(row_set *r)
{
    free(r->key);
    free(r->data);
    *r = (row_set){0};
}

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
        free(s->row_buf);
        row_set_free(&s->published);
        row_set_free(&s->waiting);
        row_set_free(&s->needed);
        row_set_free(&s->gathered);
    }
    free(s);
    t->state = NULL;
}

static int prepare(crl_term *t, const crl_global *g, int64_t *slots, crl_error *err)
{
    const crl_array *a = g->pop[0].array;
    int64_t tau = lag_of(t), n = a->width;
    if (g->time[0] <= tau)
        return crl_fail(err, CRL_ERR_INVALID, "T = %lld time steps, but tau = %lld needs T > tau",
                        (long long) g->time[0], (long long) tau);
    state_pred *s = t->state;
    if (s == NULL && (s = t->state = calloc(1, sizeof *s)) == NULL)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
    if (s->n != n) {
        free(s->sq_sum);
        free(s->row_buf);
        s->n = 0;
        s->sq_sum = malloc(sizeof(double) * (size_t) (n > 0 ? n : 1));
        s->row_buf = malloc(sizeof(double) * (size_t) (n > 0 ? 3 * n : 1));
        if (s->sq_sum == NULL || s->row_buf == NULL)
            return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
        s->n = n;
    }
    s->published.count = s->waiting.count = s->needed.count = s->gathered.count = 0;
    *slots = 2;
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
 * grad[r, i] = BASE + c (D_t [t < T - tau] - D_{t-tau} [t >= tau]) for the
 * rows t = t0 + r of x (rows ld apart, lag = tau * ld): rows that have both
 * neighbours take c ((x_t - x_{t+tau}) - (x_{t-tau} - x_t)), the others the
 * one difference they have, in one pass.  BASE(i, v) is what the tile held
 * (g[i]: an adding kernel), or the row's starting value (crl_rows.init).
 */
#define LAG_GRAD_KERNEL(name, type, BASE)                                                       \
    CRL_HOT static void name(const type *restrict x, int64_t ld, int64_t lag, int64_t t0,      \
                             int64_t count, int64_t time, int64_t tau, int64_t n, double c,    \
                             const crl_population *pop, double *restrict grad)                 \
    {                                                                                          \
        (void) pop;                                                                            \
        for (int64_t r = 0; r < count; r++) {                                                  \
            int64_t t = t0 + r;                                                                \
            bool ahead = t + tau < time, behind = t >= tau;                                    \
            const type *xt = x + r * ld;                                                       \
            double *g = grad + r * n;                                                          \
            /* As the first hook of a tile, the first to read its rows. */                     \
            crl_prefetch_ahead(xt, ld, n * (int64_t) sizeof(type), sizeof(type), false);       \
            if (ahead && behind) {                                                             \
                const type *xa = xt + lag, *xb = xt - lag;                                     \
                for (int64_t i = 0; i < n; i++) {                                              \
                    double v = (double) xt[i];                                                 \
                    g[i] = BASE(i, v) + c * ((v - (double) xa[i]) - ((double) xb[i] - v));     \
                }                                                                              \
            } else if (ahead) {                                                                \
                const type *xa = xt + lag;                                                     \
                for (int64_t i = 0; i < n; i++) {                                              \
                    double v = (double) xt[i];                                                 \
                    g[i] = BASE(i, v) + c * (v - (double) xa[i]);                              \
                }                                                                              \
            } else if (behind) {                                                               \
                const type *xb = xt - lag;                                                     \
                for (int64_t i = 0; i < n; i++) {                                              \
                    double v = (double) xt[i];                                                 \
                    g[i] = BASE(i, v) + c * (v - (double) xb[i]);                              \
                }                                                                              \
            } else                                                                             \
                for (int64_t i = 0; i < n; i++) {                                              \
                    double v = (double) xt[i];                                                 \
                    g[i] = BASE(i, v);                                                         \
                }                                                                              \
        }                                                                                      \
    }
#define TILE_VALUE(i, v) ((void) (v), g[i])
#define ZERO_START(i, v) ((void) (v), 0.0)
#define AFFINE_START(i, v) CRL_INIT_AFFINE(pop, i, v)
LAG_GRAD_KERNEL(lag_grad_f32, float, TILE_VALUE)
LAG_GRAD_KERNEL(lag_grad_f64, double, TILE_VALUE)
LAG_GRAD_KERNEL(lag_start_zero_f32, float, ZERO_START)
LAG_GRAD_KERNEL(lag_start_affine_f32, float, AFFINE_START)

/* Rows t < T - tau of the tile whose row t + tau the chunk holds add D_t^2
 * to the unit's per-neuron sums, in time order whatever the tiles. */
static int accumulate_rows(crl_term *t, const crl_rows *rows, crl_xsum *slots, crl_error *err)
{
    (void) slots;
    (void) err;
    state_pred *s = t->state;
    const crl_array *a = rows->array;
    int64_t tau = lag_of(t), n = rows->n, ld = a->time_stride;
    if (rows->first)
        for (int64_t i = 0; i < n; i++)
            s->sq_sum[i] = 0;
    int64_t end = rows->place->time - tau - rows->place->time_offset; /* local t < T - tau */
    if (end > a->time - tau)
        end = a->time - tau;
    int64_t ahead = end - rows->t0 < rows->count ? end - rows->t0 : rows->count;
    if (ahead <= 0)
        return CRL_OK;
    const void *x = crl_array_row(a, rows->b, rows->t0);
    if (a->dtype == CRL_FLOAT32)
        sq_lag_f32(x, ld, tau * ld, ahead, n, s->sq_sum);
    else
        sq_lag_f64(x, ld, tau * ld, ahead, n, s->sq_sum);
    return CRL_OK;
}

/* Local row t of element b of a as doubles, into out. */
static void row_as_doubles(const crl_array *a, int64_t b, int64_t t, double *out)
{
    const void *x = crl_array_row(a, b, t);
    for (int64_t i = 0; i < a->width; i++)
        out[i] = a->dtype == CRL_FLOAT32 ? (double) ((const float *) x)[i]
                                         : ((const double *) x)[i];
}

/* Publishes local rows from .. to - 1 of element b (global element batch). */
static int publish(state_pred *s, const crl_rows *unit, int64_t from, int64_t to,
                   crl_xsum *slots, crl_error *err)
{
    crl_xsum_add(&slots[1], (double) (to > from ? to - from : 0));
    const crl_array *a = unit->array;
    for (int64_t r = from; r < to; r++) {
        row_set *p = &s->published;
        if (!row_set_grow(p, 2, s->n))
            return crl_fail(err, CRL_ERR_NOMEM, "out of memory for the rows of a block's edges");
        p->key[2 * p->count] = unit->place->batch_offset + unit->b;
        p->key[2 * p->count + 1] = unit->place->time_offset + r;
        row_as_doubles(a, unit->b, r, p->data + s->n * p->count);
        p->count++;
    }
    return CRL_OK;
}

static int record(row_set *r, int64_t b, int64_t from, int64_t to, const double *data, int64_t n,
                  crl_error *err)
{
    if (!row_set_grow(r, 3, data ? n : 0))
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory for the pairs of a block's edge");
    r->key[3 * r->count] = b;
    r->key[3 * r->count + 1] = from;
    r->key[3 * r->count + 2] = to;
    if (data)
        memcpy(r->data + n * r->count, data, sizeof(double) * (size_t) n);
    r->count++;
    return CRL_OK;
}

/* The unit's sum over neurons, in a fixed order, into the slot; or, when
 * pairs of it wait for rows beyond the chunk, its sums so far kept.  A
 * chunk that does not hold all of T publishes its edges. */
static int accumulate_element(crl_term *t, const crl_rows *unit, crl_xsum *slots, crl_error *err)
{
    state_pred *s = t->state;
    const crl_array *a = unit->array;
    const crl_place *place = unit->place;
    int64_t tau = lag_of(t), off = place->time_offset, batch = place->batch_offset + unit->b;
    int64_t lo = a->time - tau > unit->t0 ? a->time - tau : unit->t0;
    int64_t hi = place->time - tau - off < unit->t0 + unit->count ? place->time - tau - off
                                                                   : unit->t0 + unit->count;
    if (!crl_place_whole(place, a->time)) {
        int64_t first_end = off > 0 ? (tau < a->time ? tau : a->time) : 0;
        if (unit->t0 == 0 && off > 0
            && (publish(s, unit, 0, first_end, slots, err) != CRL_OK
                || record(&s->needed, batch, off - tau > 0 ? off - tau : 0, off, NULL, 0, err)
                       != CRL_OK))
            return err->code;
        if (unit->last && off + a->time < place->time) {
            int64_t from = a->time - tau > first_end ? a->time - tau : first_end;
            if (publish(s, unit, from, a->time, slots, err) != CRL_OK)
                return err->code;
        }
        if (lo < hi)
            return record(&s->waiting, batch, off + lo, off + hi, s->sq_sum, s->n, err);
    }
    double sum = crl_sum_fixed(s->sq_sum, unit->n);
    if (!isfinite(sum))
        return crl_fail(err, CRL_ERR_DOMAIN,
                        "states[b=%lld]: the sum of squared differences overflows",
                        (long long) unit->b);
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

/* ------------------------------------------------------------------------ */
/* Blocks: the rows of other chunks                                           */
/* ------------------------------------------------------------------------ */

static int compare_rows(const void *x, const void *y)
{
    const int64_t *a = x, *b = y;
    return a[0] != b[0] ? (a[0] > b[0]) - (a[0] < b[0]) : (a[1] > b[1]) - (a[1] < b[1]);
}

/* The gathered row (b, t), or NULL. */
static const double *gathered_row(const state_pred *s, int64_t b, int64_t t)
{
    int64_t lo = 0, hi = s->gathered.count;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const int64_t *k = s->gathered.key + 2 * mid;
        if (k[0] < b || (k[0] == b && k[1] < t))
            lo = mid + 1;
        else
            hi = mid;
    }
    const int64_t *k = s->gathered.key + 2 * lo;
    return lo < s->gathered.count && k[0] == b && k[1] == t ? s->gathered.data + s->n * lo
                                                            : NULL;
}

/* Whether some chunk published rows: then every rank gathers them. */
static bool more(const crl_term *t, const crl_global *g, const crl_dd *slots)
{
    (void) t;
    return g->place[0].blocked && crl_dd_round(slots[1]) > 0;
}

/* Every rank's published rows, as (b, t, n values) records of 2 + n doubles
 * (indices below 2^53 are exact), sorted by (b, t) into s->gathered. */
static int gather(state_pred *s, MPI_Comm comm, crl_error *err)
{
    int64_t n = s->n, width = 2 + n, mine = s->published.count, count = 0;
    double *send = malloc(sizeof(double) * (size_t) (mine * width + 1)), *recv = NULL;
    row_set *set = &s->gathered;
    set->count = 0;
    for (int64_t r = 0; send && r < mine; r++) {
        send[r * width] = (double) s->published.key[2 * r];
        send[r * width + 1] = (double) s->published.key[2 * r + 1];
        memcpy(send + r * width + 2, s->published.data + n * r, sizeof(double) * (size_t) n);
    }
    /* Without its send buffer a rank still takes part, with no rows, and
     * fails after. */
    int rc = crl_allgather_records(comm, send, send ? mine : 0, width, &recv, &count, err);
    int64_t *order = rc == CRL_OK ? malloc(sizeof(int64_t) * (size_t) (3 * count + 1)) : NULL;
    if (rc == CRL_OK
        && (send == NULL || order == NULL
            || !crl_reserve(&set->key, &set->key_cap, 2 * count + 1, sizeof(int64_t))
            || !crl_reserve(&set->data, &set->data_cap, n * count + 1, sizeof(double))))
        rc = crl_fail(err, CRL_ERR_NOMEM, "out of memory for the rows of the blocks' edges");
    for (int64_t r = 0; rc == CRL_OK && r < count; r++) {
        order[3 * r] = (int64_t) recv[r * width];
        order[3 * r + 1] = (int64_t) recv[r * width + 1];
        order[3 * r + 2] = r;
    }
    if (rc == CRL_OK) {
        qsort(order, (size_t) count, 3 * sizeof(int64_t), compare_rows);
        for (int64_t r = 0; r < count; r++) {
            set->key[2 * r] = order[3 * r];
            set->key[2 * r + 1] = order[3 * r + 1];
            memcpy(set->data + n * r, recv + order[3 * r + 2] * width + 2,
                   sizeof(double) * (size_t) n);
        }
        set->count = count;
    }
    free(order);
    free(send);
    free(recv);
    return rc;
}

/* The waiting pairs, from the gathered rows, in time order after the sums
 * their unit had; each unit's sum into the slot.  And the rows before each
 * chunk its backward reads must be there. */
static void add_more(crl_term *t, MPI_Comm comm, const crl_global *g, const crl_dd *slots,
                     crl_xsum *more_slots, crl_error *err)
{
    (void) g;
    (void) slots;
    state_pred *s = t->state;
    int64_t tau = lag_of(t), n = s->n;
    if (gather(s, comm, err) != CRL_OK)
        return;
    for (int64_t k = 0; k < s->waiting.count; k++) {
        const int64_t *key = s->waiting.key + 3 * k;
        double *acc = s->waiting.data + n * k;
        for (int64_t step = key[1]; step < key[2]; step++) {
            const double *x = gathered_row(s, key[0], step), *y = gathered_row(s, key[0], step + tau);
            if (x == NULL || y == NULL) {
                crl_fail_at(err, CRL_ERR_INVALID, CRL_ROLE_STATES, -1, -1, -1,
                            "states: step %lld of element %lld is in no rank's block",
                            (long long) (x == NULL ? step : step + tau), (long long) key[0]);
                return;
            }
            for (int64_t i = 0; i < n; i++) {
                double d = x[i] - y[i];
                acc[i] = fma(d, d, acc[i]);
            }
        }
        double sum = crl_sum_fixed(acc, n);
        if (!isfinite(sum)) {
            crl_fail(err, CRL_ERR_DOMAIN,
                     "states[element %lld]: the sum of squared differences overflows",
                     (long long) key[0]);
            return;
        }
        crl_xsum_add(&more_slots[0], sum);
    }
    for (int64_t k = 0; k < s->needed.count; k++) {
        const int64_t *key = s->needed.key + 3 * k;
        for (int64_t step = key[1]; step < key[2]; step++)
            if (gathered_row(s, key[0], step) == NULL) {
                crl_fail_at(err, CRL_ERR_INVALID, CRL_ROLE_STATES, -1, -1, -1,
                            "states: step %lld of element %lld is in no rank's block",
                            (long long) step, (long long) key[0]);
                return;
            }
    }
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                   */
/* ------------------------------------------------------------------------ */

/* Row (global) step of the element of rows as doubles: the chunk's own, or
 * a gathered one. */
static const double *row_at(const state_pred *s, const crl_rows *rows, int64_t step, double *buf)
{
    int64_t local = step - rows->place->time_offset;
    if (local >= 0 && local < rows->array->time) {
        row_as_doubles(rows->array, rows->b, local, buf);
        return buf;
    }
    return gathered_row(s, rows->place->batch_offset + rows->b, step);
}

/* The gradient of local row t of a block's element whose neighbours lie
 * beyond the chunk: the kernel's expressions, on the rows as doubles. */
static void edge_row_grad(const state_pred *s, const crl_rows *rows, int64_t t, int64_t tau,
                          double *g)
{
    int64_t n = s->n, step = rows->place->time_offset + t;
    bool ahead = step + tau < rows->place->time, behind = step >= tau;
    double *buf = s->row_buf;
    const double *xt = row_at(s, rows, step, buf);
    const double *xa = ahead ? row_at(s, rows, step + tau, buf + n) : NULL;
    const double *xb = behind ? row_at(s, rows, step - tau, buf + 2 * n) : NULL;
    double c = s->coef;
    if (xa && xb)
        for (int64_t i = 0; i < n; i++) {
            double v = xt[i];
            g[i] += c * ((v - xa[i]) - (xb[i] - v));
        }
    else if (xa)
        for (int64_t i = 0; i < n; i++)
            g[i] += c * (xt[i] - xa[i]);
    else if (xb)
        for (int64_t i = 0; i < n; i++)
            g[i] += c * (xt[i] - xb[i]);
}

/* Whether local row t of a chunk finds its neighbours t +- tau in it (or
 * needs none there). */
static bool inner_row(const crl_rows *rows, int64_t t, int64_t tau)
{
    int64_t step = rows->place->time_offset + t, time = rows->array->time;
    return (step + tau >= rows->place->time || t + tau < time) && (step < tau || t >= tau);
}

/* dL/dS_t = 2/(B (T - tau) N) (D_t [t < T - tau] - D_{t-tau} [t >= tau])
 * (docs/losses.md), one pass over the tile reading rows t - tau, t, t + tau;
 * in a block, the rows near its edges one by one. */
static void backward_rows(const crl_term *t, const crl_global *g, const crl_rows *rows,
                          double *grad)
{
    (void) g;
    const state_pred *s = t->state;
    const crl_array *a = rows->array;
    int64_t tau = lag_of(t), ld = a->time_stride, off = rows->place->time_offset;
    for (int64_t r = 0; r < rows->count;) {
        int64_t from = r;
        bool inner = inner_row(rows, rows->t0 + r, tau);
        while (r < rows->count && inner_row(rows, rows->t0 + r, tau) == inner)
            r++;
        if (!inner) {
            for (int64_t k = from; k < r; k++) {
                if (rows->init)
                    crl_rows_init(rows, k, grad + k * rows->n);
                edge_row_grad(s, rows, rows->t0 + k, tau, grad + k * rows->n);
            }
            continue;
        }
        const void *x = crl_array_row(a, rows->b, rows->t0 + from);
        /* The first hook of a tile starts its rows (crl_rows.init). */
        void (*kernel)(const float *restrict, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, double, const crl_population *, double *restrict) =
            !rows->init          ? lag_grad_f32
            : rows->init->affine ? lag_start_affine_f32
                                 : lag_start_zero_f32;
        if (a->dtype == CRL_FLOAT32)
            kernel(x, ld, tau * ld, off + rows->t0 + from, r - from, rows->place->time, tau,
                   rows->n, s->coef, rows->init, grad + from * rows->n);
        else
            lag_grad_f64(x, ld, tau * ld, off + rows->t0 + from, r - from, rows->place->time,
                         tau, rows->n, s->coef, NULL, grad + from * rows->n);
    }
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
    .backward_inits = true,
    .passes = CRL_PASS_MOMENTS,
    .uses = uses,
    .prepare = prepare,
    .accumulate_rows = accumulate_rows,
    .accumulate_element = accumulate_element,
    .finalize = finalize,
    .more = more,
    .add_more = add_more,
    .backward_rows = backward_rows,
    .destroy = destroy,
};
