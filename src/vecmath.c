/*
 * vecmath.c - see vecmath.h (the logarithm's algorithm is described there,
 * next to its inline body).
 */
#include "internal.h"
#include "vecmath.h"

CRL_HOT_FMA void crl_log_array(const double *restrict x, double *restrict y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = crl_log(x[i]);
}

CRL_HOT_FMA void crl_logf_array(const float *restrict x, float *restrict y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = crl_logf(x[i]);
}

/*
 * The fixed orders: element k goes to lane k mod lanes, each lane adds its
 * elements in index order, and the lanes are combined pairwise (neighbours,
 * then neighbouring pairs, ...).  The compiler keeps the lanes in vector
 * registers: 8 doubles for double input, 16 for float32 input (one vector
 * of floats widens into two of doubles, two independent chains).
 */
#define SUM_FIXED_KERNEL(name, type, lanes)                                                     \
    CRL_HOT double name(const type *x, int64_t n)                                              \
    {                                                                                          \
        double lane[lanes] = {0};                                                              \
        int64_t k = 0;                                                                         \
        for (; k + (lanes) <= n; k += (lanes))                                                 \
            for (int j = 0; j < (lanes); j++)                                                  \
                lane[j] += (double) x[k + j];                                                  \
        for (int j = 0; k + j < n; j++)                                                        \
            lane[j] += (double) x[k + j];                                                      \
        return crl_combine_lanes(lane, (lanes));                                               \
    }
SUM_FIXED_KERNEL(crl_sum_fixed, double, 8)
SUM_FIXED_KERNEL(crl_sum_fixed_f32, float, 16)

CRL_HOT double crl_row_peak_f32(const float *x, int64_t n)
{
    int32_t top = INT32_MIN; /* -0.0f's bits, below every other pattern */
    for (int64_t i = 0; i < n; i++) {
        int32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        top = bits > top ? bits : top;
    }
    float value;
    memcpy(&value, &top, sizeof value);
    return value;
}

/*
 * The loops of crl_sq_diff_rows; inlined with a constant n for the narrow
 * widths, where a loop over i of one or two values would cost more than
 * its arithmetic.  Rows whose lanes line up with contiguous storage (rows
 * of n values back to back, the first in lane 0) are one run of L n
 * accumulators that vectorizes; either way each lane adds its rows in
 * time order, the same operations for every n and layout.
 */
#define SQ_DIFF_LOOP(name, type)                                                                \
    static inline void name(const type *restrict x, int64_t ldx, const type *restrict y,       \
                            int64_t ldy, int64_t t0, int64_t count, int64_t n,                 \
                            double *restrict acc)                                              \
    {                                                                                          \
        int64_t lanes = crl_output_lanes(n), l = t0 % lanes, r = 0;                             \
        if (l == 0 && ldx == n && ldy == n) {                                                  \
            int64_t w = lanes * n, total = count * n, e = 0;                                   \
            for (; e + w <= total; e += w)                                                     \
                for (int64_t j = 0; j < w; j++) {                                              \
                    double d = (double) x[e + j] - (double) y[e + j];                          \
                    acc[j] += d * d;                                                           \
                }                                                                              \
            r = e / n;                                                                         \
        }                                                                                      \
        for (l = (t0 + r) % lanes; r < count; r++) {                                           \
            double *a = acc + l * n;                                                           \
            for (int64_t i = 0; i < n; i++) {                                                  \
                double d = (double) x[r * ldx + i] - (double) y[r * ldy + i];                  \
                a[i] += d * d;                                                                 \
            }                                                                                  \
            if (++l == lanes)                                                                  \
                l = 0;                                                                         \
        }                                                                                      \
    }
SQ_DIFF_LOOP(sq_diff_loop, double)
SQ_DIFF_LOOP(sq_diff_loop_f32, float)

#define SQ_DIFF_ROWS(name, loop, type)                                                          \
    CRL_HOT void name(const type *restrict x, int64_t ldx, const type *restrict y, int64_t ldy, \
                      int64_t t0, int64_t count, int64_t n, double *restrict acc)              \
    {                                                                                          \
        switch (n) {                                                                           \
        case 1: loop(x, ldx, y, ldy, t0, count, 1, acc); break;                                \
        case 2: loop(x, ldx, y, ldy, t0, count, 2, acc); break;                                \
        case 3: loop(x, ldx, y, ldy, t0, count, 3, acc); break;                                \
        case 4: loop(x, ldx, y, ldy, t0, count, 4, acc); break;                                \
        default: loop(x, ldx, y, ldy, t0, count, n, acc); break;                               \
        }                                                                                      \
    }
SQ_DIFF_ROWS(crl_sq_diff_rows, sq_diff_loop, double)
SQ_DIFF_ROWS(crl_sq_diff_rows_f32, sq_diff_loop_f32, float)

/* g[j] = the affine gradient of value y[j] of neuron i0 + j, j < width, from
 * the kernel's alpha, beta and mean (a whole line's constant width unrolls
 * into vectors, without the checks of a variable trip count). */
#define AFFINE_STEP(g, y, i0, width)                                                            \
    for (int64_t j = 0; j < (width); j++)                                                      \
        (g)[j] = alpha[(i0) + j] + beta[(i0) + j] * ((double) (y)[j] - mean[(i0) + j]);

/* grad = alpha_i + beta_i * (x - mean_i): the gradient of every term that
 * depends on S through per-neuron sums (docs/losses.md: dL/dS = g_i / (B T) and
 * the variance and sum-of-squares terms), from double or raw float32 rows. */
#define AFFINE_ROWS_KERNEL(name, type)                                                          \
    CRL_HOT void name(const type *restrict x, int64_t ld, int64_t count, int64_t n,            \
                      const double *restrict mean, const double *restrict alpha,               \
                      const double *restrict beta, double *restrict grad)                      \
    {                                                                                          \
        const int64_t line = 64 / (int64_t) sizeof(type);                                      \
        int64_t ahead = crl_prefetch_rows_ahead(n * (int64_t) sizeof(type)) * ld;               \
        for (int64_t r = 0; r < count; r++)                                                    \
            for (int64_t i0 = 0; i0 < n; i0 += line) {   /* a line at a time */                \
                __builtin_prefetch(x + r * ld + ahead + i0, 0, 3);                             \
                const type *y = x + r * ld + i0;                                               \
                double *g = grad + r * n + i0;                                                 \
                if (n - i0 >= line) {                                                          \
                    AFFINE_STEP(g, y, i0, line)                                                \
                } else {                                                                       \
                    AFFINE_STEP(g, y, i0, n - i0)                                              \
                }                                                                              \
            }                                                                                  \
    }
AFFINE_ROWS_KERNEL(crl_affine_rows, double)
AFFINE_ROWS_KERNEL(crl_affine_rows_f32, float)

void crl_rows_init(const crl_rows *rows, int64_t r, double *grad_row)
{
    const crl_population *pop = rows->init;
    const crl_array *a = rows->array;
    if (pop->affine)
        crl_affine_rows_f32(crl_array_row(a, rows->b, rows->t0 + r), a->time_stride, 1,
                            rows->n, pop->mean, pop->alpha, pop->beta, grad_row);
    else
        memset(grad_row, 0, sizeof(double) * (size_t) rows->n);
}
