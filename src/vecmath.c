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

/* Lane k mod 8 of the fixed order; the compiler keeps the lanes in vector
 * registers. */
enum { LANES = 8 };

static double combine_lanes(const double lane[LANES])
{
    return ((lane[0] + lane[1]) + (lane[2] + lane[3]))
           + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* crl_sum_fixed and its float32 twin: the same order, each element widened
 * to double first. */
#define SUM_FIXED_KERNEL(name, type)                                                            \
    CRL_HOT double name(const type *x, int64_t n)                                              \
    {                                                                                          \
        double lane[LANES] = {0};                                                              \
        int64_t k = 0;                                                                         \
        for (; k + LANES <= n; k += LANES)                                                     \
            for (int j = 0; j < LANES; j++)                                                    \
                lane[j] += (double) x[k + j];                                                  \
        for (int j = 0; k + j < n; j++)                                                        \
            lane[j] += (double) x[k + j];                                                      \
        return combine_lanes(lane);                                                            \
    }
SUM_FIXED_KERNEL(crl_sum_fixed, double)
SUM_FIXED_KERNEL(crl_sum_fixed_f32, float)

CRL_HOT void crl_sq_diff_rows(const double *restrict x, int64_t ldx, const double *restrict y,
                              int64_t ldy, int64_t count, int64_t n, double *restrict acc)
{
    for (int64_t r = 0; r < count; r++)
        for (int64_t i = 0; i < n; i++) {
            double d = x[r * ldx + i] - y[r * ldy + i];
            acc[i] += d * d;
        }
}
