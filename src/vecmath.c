/*
 * vecmath.c - see vecmath.h.
 *
 * log(x) for positive normal x.  Write x = 2^k m with m in [sqrt(1/2),
 * sqrt(2)), found from the bits of x alone (integer adds, shifts and masks,
 * which vectorize), and f = m - 1 (exact).  Then with s = f / (2 + f),
 *
 *   log(m) = 2 atanh(s) = 2s + s R(s^2),   R(z) = sum_{j>=1} 2 z^j / (2j + 1),
 *
 * and since 2s = f - s f = f - f^2/2 + s f^2/2,
 *
 *   log(m) = f - (f^2/2 - s (f^2/2 + R(s^2))),
 *
 * a small correction to the exact f, so its rounding errors are scaled down.
 * |s| <= 3 - 2 sqrt(2) = 0.1716, so z = s^2 <= 0.0295.  R is replaced by the
 * degree-7 polynomial z (c1 + c2 z + ... + c7 z^6) minimizing the absolute
 * error max |R(z) - P(z)| on [0, 0.0295]: a Remez exchange in 60-digit
 * arithmetic (mpmath), converged to an equioscillating error of 2^-58.5.
 * Finally log(x) = k ln2 + log(m), with ln2 = LN2_HI + LN2_LO and LN2_HI
 * holding 42 significant bits, so that k LN2_HI is exact for every |k| < 2^11.
 *
 * The exponent k is turned into a double with the 2^52 trick (bits of
 * 2^52 + j, minus 2^52) rather than an int64-to-double conversion, which
 * AVX2 lacks.  Every step is a plain IEEE operation, so the vector body and
 * the scalar tail agree bit for bit (no contraction: -ffp-contract=off).
 */
#include "internal.h"
#include "vecmath.h"

#include <string.h>

/* Remez coefficients of R(z) = sum_j c_j z^j, j = 1..7 (see above). */
static const double LOG_C1 = 0x1.5555555555592p-1; /* 0.6666666666666734 */
static const double LOG_C2 = 0x1.999999997fdb7p-2; /* 0.39999999999414676 */
static const double LOG_C3 = 0x1.24924941f124fp-2; /* 0.2857142874238762 */
static const double LOG_C4 = 0x1.c71c52095d16fp-3; /* 0.22222198573184523 */
static const double LOG_C5 = 0x1.74663ee86e841p-3; /* 0.18183564326119675 */
static const double LOG_C6 = 0x1.39a1bab73fcacp-3; /* 0.15314050552112712 */
static const double LOG_C7 = 0x1.2f0563862e5fdp-3; /* 0.14795949700582858 */
static const double LN2_HI = 0x1.62e42fefa3800p-1;
static const double LN2_LO = 0x1.ef35793c76730p-45;

/* Adding this to the bits of x carries into the exponent field exactly when
 * the mantissa of x is at least sqrt(2) (mantissa bits 0x6a09e667f3bcd). */
#define MANTISSA_CARRY 0x00095f619980c433ULL
#define ONE_BITS 0x3ff0000000000000ULL      /* 1.0                          */
#define TWO52_BITS 0x4330000000000000ULL    /* 2^52                         */

CRL_HOT void crl_log_array(const double *restrict x, double *restrict y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        /* biased = k + 1023 where x = 2^k m, m in [sqrt(1/2), sqrt(2)) */
        uint64_t biased = (bits + MANTISSA_CARRY) >> 52;
        uint64_t m_bits = bits - (biased << 52) + ONE_BITS;
        uint64_t e_bits = TWO52_BITS | biased;
        double m, e_shifted;
        memcpy(&m, &m_bits, sizeof m);
        memcpy(&e_shifted, &e_bits, sizeof e_shifted);
        double e = e_shifted - (0x1p52 + 1023.0);

        double f = m - 1.0;
        double s = f / (2.0 + f);
        double z = s * s, z2 = z * z, z4 = z2 * z2;
        /* Estrin's scheme: short dependency chains, so that the iterations
         * the processor overlaps are not waiting on one long Horner chain. */
        double r = z * ((LOG_C1 + LOG_C2 * z) + z2 * (LOG_C3 + LOG_C4 * z)
                        + z4 * ((LOG_C5 + LOG_C6 * z) + z2 * LOG_C7));
        double half_f2 = 0.5 * f * f;
        y[i] = e * LN2_HI + (f - (half_f2 - (s * (half_f2 + r) + e * LN2_LO)));
    }
}

/* Lane k mod 8 of the fixed order; the compiler keeps the lanes in vector
 * registers. */
enum { LANES = 8 };

static double combine_lanes(const double lane[LANES])
{
    return ((lane[0] + lane[1]) + (lane[2] + lane[3]))
           + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

CRL_HOT double crl_sum_fixed(const double *x, int64_t n)
{
    double lane[LANES] = {0};
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int j = 0; j < LANES; j++)
            lane[j] += x[k + j];
    for (int j = 0; k + j < n; j++)
        lane[j] += x[k + j];
    return combine_lanes(lane);
}

CRL_HOT double crl_dot_fixed(const double *x, const double *y, int64_t n)
{
    double lane[LANES] = {0};
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int j = 0; j < LANES; j++)
            lane[j] += x[k + j] * y[k + j];
    for (int j = 0; k + j < n; j++)
        lane[j] += x[k + j] * y[k + j];
    return combine_lanes(lane);
}

CRL_HOT void crl_sq_diff_rows(const double *restrict x, int64_t ldx, const double *restrict y,
                              int64_t ldy, int64_t count, int64_t n, double *restrict acc)
{
    for (int64_t r = 0; r < count; r++)
        for (int64_t i = 0; i < n; i++) {
            double d = x[r * ldx + i] - y[r * ldy + i];
            acc[i] += d * d;
        }
}
