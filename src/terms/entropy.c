/*
 * entropy.c - EntropyLoss (docs/losses.md "EntropyLoss"): the mean entropy
 * of the normalized population activity of each time step, plus an L2
 * penalty on the rates,
 *
 *   Z_{b,t} = sum_j S_{b,t,j} + eps,   p_{b,t,i} = S_{b,t,i} / Z_{b,t},
 *   H_{b,t} = -sum_i p_{b,t,i} log(p_{b,t,i} + eps),
 *   L = 1/(B T) sum_{b,t} H_{b,t} + reg/(B T) sum_{b,t} |s_{b,t}|^2.
 *
 * One packed slot: sum H, each element's as the fixed-order sum over
 * neurons of per-neuron sums over t.  The penalty's value comes from the
 * shared sum of S^2.  The gradient (docs/losses.md),
 *
 *   dL/dS_j = ((q_j - sum_i p_i q_i) / Z + 2 reg S_j) / (B T),
 *   q_i = -log(p_i + eps) - p_i/(p_i + eps),
 *
 * needs two sums over the row before any element can be written; the
 * forward keeps them per row (1/Z and sum_i p_i q_i, by the element's running
 * index and t), so that the backward is one pass over each row with one
 * logarithm per element.  The penalty's part is added in that pass too
 * rather than through the engine's affine alpha/beta: the row is read there
 * anyway, and the engine then need not form an affine tile first.
 *
 * The hooks read the raw rows (float32 or float64, widened element by
 * element).  Each row is summed in a fixed order (vecmath.h) and its
 * logarithms taken by crl_log inside one vectorized loop per row, so a row
 * gives the same bits wherever it lies.
 *
 * Reads: states (all rates must be >= 0).
 */
#include "../internal.h"
#include "../vecmath.h"

#include <float.h>
#include <stdlib.h>

enum { REG, EPS };

static const crl_param_info params[] = {
    {"reg", CRL_PARAM_REAL, 10, 0, DBL_MAX, NULL, "weight of the mean squared rate norm"},
    {"eps", CRL_PARAM_REAL, 1e-8, DBL_MIN, DBL_MAX, NULL,
     "added to the normalizer and inside the log (> 0)"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

typedef struct entropy {
    double *h_sum;                 /* N: sum over t of p log(p + eps), per
                                      neuron, of the current element        */
    double *a;                     /* N: a row's terms of sum p a            */
    int64_t n;
    bool keep_rows;                /* the gradient is wanted: keep row_sums  */
    double *row_sums;              /* per row (element * T + t): 1/Z, sum p a */
    int64_t row_sums_cap;
    double coef;                   /* backward: weight / (B T)               */
    double slope;                  /* backward: weight 2 reg / (B T)         */
} entropy;

static unsigned uses(const crl_term *t)
{
    (void) t;
    return CRL_USES(CRL_ROLE_STATES);
}

static void destroy(crl_term *t)
{
    entropy *s = t->state;
    if (s != NULL) {
        free(s->h_sum);
        free(s->row_sums);
    }
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
        free(s->h_sum);
        s->n = 0;
        if ((s->h_sum = malloc(sizeof(double) * 2 * (size_t) (n > 0 ? n : 1))) == NULL)
            return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
        s->a = s->h_sum + n;
        s->n = n;
    }
    /* Announced gradients keep each row's 1/Z and sum for the backward;
     * a gradient asked for only at backward recomputes them there. */
    s->keep_rows = g->grad_announced & CRL_USES(CRL_ROLE_STATES);
    *slots = 1;
    return CRL_OK;
}

/*
 * Forward of one row x (1/Z given): h_sum_i += p_i log(p_i + eps) and, when
 * a is not NULL, a_i = p_i log(p_i + eps) + p_i p_i/(p_i + eps) = -p_i q_i;
 * returns whether some x_i is negative.
 */
#define FORWARD_ROW_KERNEL(name, type)                                                          \
    CRL_HOT_FMA static bool name(const type *restrict x, int64_t n, double inv_z, double eps,  \
                                 double *restrict h_sum, double *restrict a)                   \
    {                                                                                          \
        int negative = 0;                                                                      \
        if (a == NULL)                                                                         \
            for (int64_t i = 0; i < n; i++) {                                                  \
                double v = (double) x[i], p = v * inv_z;                                       \
                h_sum[i] += p * crl_log(p + eps);                                              \
                negative |= v < 0;                                                             \
            }                                                                                  \
        else                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                  \
                double v = (double) x[i], p = v * inv_z, shifted = p + eps;                    \
                double h = p * crl_log(shifted);                                               \
                h_sum[i] += h;                                                                 \
                a[i] = fma(p, p / shifted, h);                                                 \
                negative |= v < 0;                                                             \
            }                                                                                  \
        return negative;                                                                       \
    }
FORWARD_ROW_KERNEL(forward_row_f32, float)
FORWARD_ROW_KERNEL(forward_row_f64, double)

/*
 * Backward of one row x:
 *   grad_j += k (q_j - sum_i p_i q_i) + slope x_j
 *           = slope x_j - k ((log(p_j + eps) + p_j/(p_j + eps)) - pa),
 * pa = sum_i p_i a_i (from the forward), k = coef / Z.
 */
#define BACKWARD_ROW_KERNEL(name, type)                                                         \
    CRL_HOT_FMA static void name(const type *restrict x, int64_t n, double inv_z, double eps,  \
                                 double pa, double k, double slope, double *restrict grad)     \
    {                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                      \
            double v = (double) x[i], p = v * inv_z, shifted = p + eps;                        \
            double centered = (crl_log(shifted) + p / shifted) - pa;                           \
            grad[i] = fma(slope, v, fma(-k, centered, grad[i]));                               \
        }                                                                                      \
    }
BACKWARD_ROW_KERNEL(backward_row_f32, float)
BACKWARD_ROW_KERNEL(backward_row_f64, double)

/* 1 / Z of row x (Z = sum x + eps, the sum in crl_sum_fixed's order). */
static double inverse_normalizer(const crl_array *a, const void *x, double eps)
{
    double sum = a->dtype == CRL_FLOAT32 ? crl_sum_fixed_f32(x, a->width)
                                         : crl_sum_fixed(x, a->width);
    return 1.0 / (sum + eps);
}

static int report_negative(const crl_rows *rows, int64_t t, crl_error *err)
{
    const crl_array *a = rows->array;
    const void *x = crl_array_row(a, rows->b, t);
    for (int64_t i = 0; i < a->width; i++) {
        double v = a->dtype == CRL_FLOAT32 ? ((const float *) x)[i] : ((const double *) x)[i];
        if (v < 0)
            return crl_fail_at(err, CRL_ERR_DOMAIN, CRL_ROLE_STATES, rows->b, t, i,
                               "states[b=%lld, t=%lld, i=%lld] = %g is negative",
                            (long long) rows->b, (long long) t, (long long) i, v);
    }
    return CRL_OK;
}

static int accumulate_rows(crl_term *t, const crl_rows *rows, crl_xsum *slots, crl_error *err)
{
    (void) slots;
    entropy *s = t->state;
    const crl_array *a = rows->array;
    int64_t n = rows->n, time = a->time;
    double eps = t->param[EPS];
    if (rows->t0 == 0) {
        for (int64_t i = 0; i < n; i++)
            s->h_sum[i] = 0;
        if (s->keep_rows
            && !crl_reserve(&s->row_sums, &s->row_sums_cap, 2 * (rows->element + 1) * time,
                            sizeof(double)))
            return crl_fail(err, CRL_ERR_NOMEM, "out of memory for the row sums of element %lld",
                            (long long) rows->element);
    }
    for (int64_t r = 0; r < rows->count; r++) {
        int64_t row = rows->t0 + r;
        const void *x = crl_array_row(a, rows->b, row);
        double inv_z = inverse_normalizer(a, x, eps);
        double *keep = s->keep_rows ? s->a : NULL;
        bool negative = a->dtype == CRL_FLOAT32
                            ? forward_row_f32(x, n, inv_z, eps, s->h_sum, keep)
                            : forward_row_f64(x, n, inv_z, eps, s->h_sum, keep);
        if (negative)
            return report_negative(rows, row, err);
        if (keep != NULL) {
            double *kept = s->row_sums + 2 * (rows->element * time + row);
            kept[0] = inv_z;
            kept[1] = crl_sum_fixed(keep, n);
        }
    }
    return CRL_OK;
}

/* Sum over t of H_t = -(sum over neurons of h_sum), in a fixed order. */
static int accumulate_element(crl_term *t, const crl_rows *element, crl_xsum *slots, crl_error *err)
{
    (void) err;
    const entropy *s = t->state;
    crl_xsum_add(&slots[0], -crl_sum_fixed(s->h_sum, element->n));
    return CRL_OK;
}

static int finalize(crl_term *t, crl_global *g, const crl_dd *slots, crl_term_out *out,
                    crl_error *err)
{
    (void) err;
    entropy *s = t->state;
    const crl_population *pop = &g->pop[0];
    double reg = t->param[REG];
    out->value = crl_dd_round(crl_dd_div_d(slots[0], pop->count)) + reg * pop->sumsq / pop->count;
    s->coef = t->weight / pop->count;
    s->slope = t->weight * (2 * reg / pop->count);
    return CRL_OK;
}

/* weight dL/dS (docs/losses.md), with the row's 1/Z and sum from the forward. */
static void backward_rows(const crl_term *t, const crl_global *g, const crl_rows *rows,
                          double *grad)
{
    (void) g;
    const entropy *s = t->state;
    const crl_array *a = rows->array;
    int64_t n = rows->n;
    double eps = t->param[EPS];
    const double *kept = s->keep_rows ? s->row_sums + 2 * (rows->element * a->time + rows->t0)
                                      : NULL;
    double again[2];
    for (int64_t r = 0; r < rows->count; r++, kept += kept ? 2 : 0) {
        const void *x = crl_array_row(a, rows->b, rows->t0 + r);
        if (!s->keep_rows) {
            /* The forward's kernel on the same row: the same bits. */
            again[0] = inverse_normalizer(a, x, eps);
            if (a->dtype == CRL_FLOAT32)
                forward_row_f32(x, n, again[0], eps, s->h_sum, s->a);
            else
                forward_row_f64(x, n, again[0], eps, s->h_sum, s->a);
            again[1] = crl_sum_fixed(s->a, n);
            kept = again;
        }
        double k = s->coef * kept[0];
        if (a->dtype == CRL_FLOAT32)
            backward_row_f32(x, n, kept[0], eps, kept[1], k, s->slope, grad + r * n);
        else
            backward_row_f64(x, n, kept[0], eps, kept[1], k, s->slope, grad + r * n);
    }
}

const crl_term_class crl_term_entropy = {
    .type = "entropy",
    .summary = "EntropyLoss: mean entropy of the normalized rates of each step, plus "
               "reg mean |s|^2",
    .python_name = "EntropyLoss",
    .example = "e=entropy:reg=0.5,eps=1e-6",
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
