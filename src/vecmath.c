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
        for (int width = (lanes) / 2; width >= 1; width /= 2)                                  \
            for (int j = 0; j < width; j++)                                                    \
                lane[j] = lane[2 * j] + lane[2 * j + 1];                                       \
        return lane[0];                                                                        \
    }
SUM_FIXED_KERNEL(crl_sum_fixed, double, 8)
SUM_FIXED_KERNEL(crl_sum_fixed_f32, float, 16)

/* The loop of crl_sq_diff_rows; inlined with a constant n for the narrow
 * widths, where a loop over i of one or two values would cost more than
 * its arithmetic.  The same operations in the same order for every n. */
static inline void sq_diff_loop(const double *restrict x, int64_t ldx,
                                const double *restrict y, int64_t ldy, int64_t count,
                                int64_t n, double *restrict acc)
{
    for (int64_t r = 0; r < count; r++)
        for (int64_t i = 0; i < n; i++) {
            double d = x[r * ldx + i] - y[r * ldy + i];
            acc[i] += d * d;
        }
}

CRL_HOT void crl_sq_diff_rows(const double *restrict x, int64_t ldx, const double *restrict y,
                              int64_t ldy, int64_t count, int64_t n, double *restrict acc)
{
    switch (n) {
    case 1: sq_diff_loop(x, ldx, y, ldy, count, 1, acc); break;
    case 2: sq_diff_loop(x, ldx, y, ldy, count, 2, acc); break;
    case 3: sq_diff_loop(x, ldx, y, ldy, count, 3, acc); break;
    case 4: sq_diff_loop(x, ldx, y, ldy, count, 4, acc); break;
    default: sq_diff_loop(x, ldx, y, ldy, count, n, acc); break;
    }
}
