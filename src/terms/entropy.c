/*
 * entropy.c - EntropyLoss (docs/losses.md "EntropyLoss"): the mean entropy
 * of the normalized population activity of each time step, plus an L2
 * penalty on the rates,
 *
 *   Z_{b,t} = sum_j S_{b,t,j} + eps,   p_{b,t,i} = S_{b,t,i} / Z_{b,t},
 *   H_{b,t} = -sum_i p_{b,t,i} log(p_{b,t,i} + eps),
 *   L = 1/(B T) sum_{b,t} H_{b,t} + reg/(B T) sum_{b,t} |s_{b,t}|^2.
 *
 * One packed slot: sum H, each unit's (docs/losses.md "Exactness") as the
 * fixed-order sum over neurons of per-neuron sums over its t.  The
 * penalty's value comes from the shared sum of S^2.  The gradient (docs/losses.md),
 *
 *   dL/dS_j = ((q_j - sum_i p_i q_i) / Z + 2 reg S_j) / (B T),
 *   q_i = -log(p_i + eps) - p_i/(p_i + eps),
 *
 * needs two sums over the row before any element can be written; the
 * forward keeps them per row (1/Z and sum_i p_i q_i, by the element's running
 * index and t), so that the backward is one pass over each row with one
 * logarithm per element.  That logarithm stays: what the backward needs of
 * an element beyond the row's two sums is log(p_j + eps) itself, and
 * keeping it would be a B T N temporary (docs/PERFORMANCE.md forbids one);
 * writing the gradient in the forward instead is not possible either, since
 * no output may change before the reduction has agreed that the call
 * succeeds.  When the gradient was not announced the backward forms a row's
 * sums itself, and then keeps the row's w_j = log(p_j + eps) + p_j/(p_j + eps)
 * (N values, O(row)) for its second pass instead of taking the logarithms
 * again.  The penalty's part is added in that pass too rather than through
 * the engine's affine alpha/beta: the row is read there anyway, and the
 * engine then need not form an affine tile first.
 *
 * The hooks read the raw rows (float32 or float64, widened element by
 * element).  Each row is summed in a fixed order (vecmath.h; a float32
 * row's sum and peak come from the moments sweep, CRL_PASS_ROW_SUMS, with
 * the same bits as forming them here) and its logarithms taken inside one
 * vectorized loop per row, so a row gives the same bits wherever it lies.
 * As the first hook of a backward tile it starts the tile's rows itself
 * (crl_rows.init).
 *
 * Float32 rows are computed in float32 where that is enough (docs/losses.md
 * "Exactness"): p, p + eps, its logarithm (crl_logf, no division, twice the
 * lanes of crl_log), w and p w in float32, each h = p log(p + eps) widened
 * to double exactly (a product of two floats), the sums in double in the
 * fixed order.  The condition, per row and from the row alone (so
 * that its bits still do not depend on where the row lies): every
 * p + eps <= 1/2 as the path computes it, with eps in [FLT_MIN, 1/2] and
 * 1/Z in [2^-100, FLT_MAX] (float_row).  Then |log| >=
 * log 2 for every element, and the float32 roundings of p (2u, u = 2^-24),
 * of the argument (3u in all: a relative error d of p + eps moves its
 * logarithm by d, absolutely) and crl_logf's 0.94 ulp (1.88u relative) add
 * up to |dh| <= u p (3.88 |log| + 3) <= 8.2u |h|, all h of one sign: H of a
 * row, and so the loss, within 8.2u = 4.9e-7 relative (plus the double
 * sums' 2^-50), 20 times inside the float32 tolerance of 1e-5.  The
 * gradient's entropy part of element j is within k u (21 + 3 |log_j| + 4 H)
 * absolutely, k = weight / (B T Z) (w to u (10 + 3 |log|), sum p w to
 * u (11 + 4 H)): far inside 1e-5 of the largest element of the gradient,
 * unless every row's entropy gradient is all but zero (rows of equal rates,
 * where even the double path's rounding is large against it).  A row in
 * which one rate holds nearly half the row's sum or more (|log| small, where
 * the argument's rounding would be large against it) takes the double path;
 * so do all rows of float64 inputs.
 *
 * Reads: states (all rates must be >= 0).
 */
#include "../internal.h"
#include "../vecmath.h"

#include <float.h>
#include <stdlib.h>

enum { REG, EPS };

/* Doubles kept per row for an announced gradient: 1/Z, sum p a, the path. */
enum { KEPT = 3 };

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
    double *w;                     /* N: backward without announced
                                      gradient: a row's w_j                  */
    float *a_float;                /* N: a, float32 path                     */
    int64_t n;
    bool keep_rows;                /* the gradient is wanted: keep row_sums  */
    double *row_sums;              /* per row (element * T + t): 1/Z, sum p a,
                                      1 if it took the float32 path else 0 */
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
        size_t count = (size_t) (n > 0 ? n : 1);
        if ((s->h_sum = malloc((sizeof(double) * 3 + sizeof(float)) * count)) == NULL)
            return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
        s->a = s->h_sum + n;
        s->w = s->a + n;
        s->a_float = (float *) (s->w + n);
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

/*
 * The backward's sums of a row without the forward's: a_i as the forward
 * kernel forms it (the same bits, so that the row's sum is the one an
 * announced gradient keeps) and w_i = log(p_i + eps) + p_i/(p_i + eps) as
 * the backward kernel forms it, with one logarithm.
 */
#define TERMS_ROW_KERNEL(name, type)                                                            \
    CRL_HOT_FMA static void name(const type *restrict x, int64_t n, double inv_z, double eps,  \
                                 double *restrict a, double *restrict w)                       \
    {                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                      \
            double v = (double) x[i], p = v * inv_z, shifted = p + eps;                        \
            double log_shifted = crl_log(shifted), ratio = p / shifted;                        \
            a[i] = fma(p, ratio, p * log_shifted);                                             \
            w[i] = log_shifted + ratio;                                                        \
        }                                                                                      \
    }
TERMS_ROW_KERNEL(terms_row_f32, float)
TERMS_ROW_KERNEL(terms_row_f64, double)

/* The backward kernel's update from a row's w:
 * grad_j += slope x_j - k (w_j - pa), the operations of backward_row_*. */
#define BACKWARD_KEPT_KERNEL(name, type)                                                        \
    CRL_HOT_FMA static void name(const type *restrict x, const double *restrict w, int64_t n,  \
                                 double pa, double k, double slope, double *restrict grad)     \
    {                                                                                          \
        for (int64_t i = 0; i < n; i++)                                                        \
            grad[i] = fma(slope, (double) x[i], fma(-k, w[i] - pa, grad[i]));                  \
    }
BACKWARD_KEPT_KERNEL(backward_kept_f32, float)
BACKWARD_KEPT_KERNEL(backward_kept_f64, double)

/*
 * The float32 path (the header's condition holds for the row): p = x 1/Z,
 * shifted = p + eps and w = log(shifted) + p/shifted in float32; h = p
 * log(shifted) widened to double exactly; a = p w in float32 (its rounding,
 * u relative, is below the bound's terms), the row's sum of it in double.
 */
CRL_HOT_FMA static bool forward_row_float(const float *restrict x, int64_t n, float inv_z,
                                          float eps, double *restrict h_sum, float *restrict a)
{
    int negative = 0;
    if (a == NULL)
        for (int64_t i = 0; i < n; i++) {
            float p = x[i] * inv_z;
            h_sum[i] += (double) p * (double) crl_logf(p + eps);
            negative |= x[i] < 0;
        }
    else
        for (int64_t i = 0; i < n; i++) {
            float p = x[i] * inv_z, shifted = p + eps, log_shifted = crl_logf(shifted);
            h_sum[i] += (double) p * (double) log_shifted;
            a[i] = p * (log_shifted + p / shifted);
            negative |= x[i] < 0;
        }
    return negative;
}

/* forward_row_float's a and w of a row, w widened to double. */
CRL_HOT_FMA static void terms_row_float(const float *restrict x, int64_t n, float inv_z,
                                        float eps, float *restrict a, double *restrict w)
{
    for (int64_t i = 0; i < n; i++) {
        float p = x[i] * inv_z, shifted = p + eps;
        float wf = crl_logf(shifted) + p / shifted;
        a[i] = p * wf;
        w[i] = (double) wf;
    }
}

/* backward_kept_f32 with w recomputed (one logarithm), the same bits;
 * BASE(i, v) is grad[i] (adding) or the row's starting value
 * (crl_rows.init, from pop). */
#define BACKWARD_FLOAT_KERNEL(name, BASE)                                                       \
    CRL_HOT_FMA static void name(const float *restrict x, int64_t n, float inv_z, float eps,   \
                                 double pa, double k, double slope, const crl_population *pop, \
                                 double *restrict grad)                                        \
    {                                                                                          \
        (void) pop;                                                                            \
        for (int64_t i = 0; i < n; i++) {                                                      \
            float p = x[i] * inv_z, shifted = p + eps;                                         \
            double v = (double) x[i], w = (double) (crl_logf(shifted) + p / shifted);          \
            grad[i] = fma(slope, v, fma(-k, w - pa, BASE(i, v)));                              \
        }                                                                                      \
    }
#define TILE_VALUE(i, v) grad[i]
#define ZERO_START(i, v) 0.0
#define AFFINE_START(i, v) CRL_INIT_AFFINE(pop, i, v)
BACKWARD_FLOAT_KERNEL(backward_row_float, TILE_VALUE)
BACKWARD_FLOAT_KERNEL(backward_start_zero_float, ZERO_START)
BACKWARD_FLOAT_KERNEL(backward_start_affine_float, AFFINE_START)

/*
 * Whether a float32 row takes the float32 path (the header's condition):
 * eps and 1/Z in float32's range (checked in double, before converting),
 * and p + eps <= 1/2 for every rate in the path's own float operations.
 * Those two roundings are monotone in the rate (1/Z > 0), so the row's
 * largest rate decides for all of them: peak, the value of the row whose
 * bits are the largest as a signed integer (crl_rows.row_sum), which in a
 * finite row - as 1/Z in range implies - is its largest rate >= +0 (rates
 * below it never exceed 1/2 here; the row reports negative ones).
 */
static bool float_row(double peak, double inv_z, double eps)
{
    if (!(eps >= FLT_MIN && eps <= 0.5 && inv_z >= 0x1p-100 && inv_z <= FLT_MAX))
        return false;
    return !((float) peak * (float) inv_z + (float) eps > 0.5f);
}

/* 1 / Z of row r of rows (Z = sum x + eps, the sum in crl_sum_fixed_f32's
 * or crl_sum_fixed's order; a float32 row's from the moments pass where it
 * formed it), and whether it takes the float32 path. */
static double inverse_normalizer(const crl_rows *rows, int64_t r, const void *x, double eps,
                                 bool *in_float)
{
    const crl_array *a = rows->array;
    if (a->dtype == CRL_FLOAT32) {
        const double *sweep = rows->row_sum; /* the moments sweep's, or NULL */
        double sum = sweep ? sweep[r] : crl_sum_fixed_f32(x, a->width);
        double peak = sweep ? sweep[rows->count + r] : crl_row_peak_f32(x, a->width);
        double inv_z = 1.0 / (sum + eps);
        *in_float = float_row(peak, inv_z, eps);
        return inv_z;
    }
    *in_float = false;
    return 1.0 / (crl_sum_fixed(x, a->width) + eps);
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
    int64_t n = rows->n;
    double eps = t->param[EPS];
    if (rows->first)
        for (int64_t i = 0; i < n; i++)
            s->h_sum[i] = 0;
    if (s->keep_rows
        && !crl_reserve(&s->row_sums, &s->row_sums_cap, KEPT * (rows->row + rows->count),
                        sizeof(double)))
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory for the row sums of element %lld",
                        (long long) rows->element);
    for (int64_t r = 0; r < rows->count; r++) {
        int64_t row = rows->t0 + r;
        const void *x = crl_array_row(a, rows->b, row);
        crl_rows_prefetch(rows, r);
        bool in_float;
        double inv_z = inverse_normalizer(rows, r, x, eps, &in_float);
        bool negative;
        if (in_float)
            negative = forward_row_float(x, n, (float) inv_z, (float) eps, s->h_sum,
                                         s->keep_rows ? s->a_float : NULL);
        else if (a->dtype == CRL_FLOAT32)
            negative = forward_row_f32(x, n, inv_z, eps, s->h_sum, s->keep_rows ? s->a : NULL);
        else
            negative = forward_row_f64(x, n, inv_z, eps, s->h_sum, s->keep_rows ? s->a : NULL);
        if (negative)
            return report_negative(rows, row, err);
        if (s->keep_rows) {
            double *kept = s->row_sums + KEPT * (rows->row + r);
            kept[0] = inv_z;
            kept[1] = in_float ? crl_sum_fixed_f32(s->a_float, n) : crl_sum_fixed(s->a, n);
            kept[2] = in_float;
        }
    }
    return CRL_OK;
}

/* Sum over the unit's t of H_t = -(sum over neurons of h_sum), in a fixed
 * order. */
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
    const double *kept = s->keep_rows ? s->row_sums + KEPT * rows->row : NULL;
    for (int64_t r = 0; r < rows->count; r++, kept += kept ? KEPT : 0) {
        const void *x = crl_array_row(a, rows->b, rows->t0 + r);
        double *out = grad + r * n;
        crl_rows_prefetch(rows, r);
        bool f32 = a->dtype == CRL_FLOAT32;
        if (!s->keep_rows) {
            if (rows->init)
                crl_rows_init(rows, r, out);
            /* The forward's a on the same row (the same bits) and the
             * backward kernel's w, one logarithm per element. */
            bool in_float;
            double inv_z = inverse_normalizer(rows, r, x, eps, &in_float), pa;
            if (in_float) {
                terms_row_float(x, n, (float) inv_z, (float) eps, s->a_float, s->w);
                pa = crl_sum_fixed_f32(s->a_float, n);
            } else {
                if (f32)
                    terms_row_f32(x, n, inv_z, eps, s->a, s->w);
                else
                    terms_row_f64(x, n, inv_z, eps, s->a, s->w);
                pa = crl_sum_fixed(s->a, n);
            }
            double k = s->coef * inv_z;
            if (f32)
                backward_kept_f32(x, s->w, n, pa, k, s->slope, out);
            else
                backward_kept_f64(x, s->w, n, pa, k, s->slope, out);
            continue;
        }
        double inv_z = kept[0], k = s->coef * inv_z;
        const crl_population *pop = rows->init;
        if (kept[2] != 0) {
            /* The first hook of a tile starts its rows (crl_rows.init). */
            void (*kernel)(const float *restrict, int64_t, float, float, double, double, double,
                           const crl_population *, double *restrict) =
                !pop           ? backward_row_float
                : pop->affine  ? backward_start_affine_float
                               : backward_start_zero_float;
            kernel(x, n, (float) inv_z, (float) eps, kept[1], k, s->slope, pop, out);
            continue;
        }
        if (pop)
            crl_rows_init(rows, r, out);
        if (f32)
            backward_row_f32(x, n, inv_z, eps, kept[1], k, s->slope, out);
        else
            backward_row_f64(x, n, inv_z, eps, kept[1], k, s->slope, out);
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
    .backward_inits = true,
    .passes = CRL_PASS_MOMENTS | CRL_PASS_SQUARES | CRL_PASS_ROW_SUMS,
    .uses = uses,
    .prepare = prepare,
    .accumulate_rows = accumulate_rows,
    .accumulate_element = accumulate_element,
    .finalize = finalize,
    .backward_rows = backward_rows,
    .destroy = destroy,
};
