/*
 * vecmath.h - elementwise kernels for the terms' hot loops that the compiler
 * vectorizes and whose results do not depend on it: each element goes
 * through the same IEEE operations whether a vector body or a scalar tail
 * computes it, and every reduction has an order fixed by its length alone
 * (docs/losses.md "Exactness": no -ffast-math, no contraction into fma; where a fused
 * multiply-add is wanted it is written out as fma(), which rounds once on
 * every machine).
 */
#ifndef CRL_VECMATH_H
#define CRL_VECMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/*
 * Clones for loops that call crl_log: its fma() is one instruction where the
 * clone's target has FMA (avx512f implies it, x86-64-v3 is AVX2 with FMA),
 * and a correctly rounded libm call elsewhere, so every clone gives the same
 * bits and only the speed differs.
 */
#if defined(CRL_HAVE_TARGET_CLONES)
#define CRL_HOT_FMA __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define CRL_HOT_FMA
#endif

/*
 * log(x) within 1 ulp of the exact natural logarithm (tests/test_vecmath.c:
 * at most 2 ulp from glibc's log) for every positive normal finite x; zero,
 * subnormal, negative, infinite and NaN inputs give unspecified values.
 * Inline, branch-free and made of integer and IEEE operations only, so that
 * the compiler vectorizes it inside the caller's loop (compile the caller
 * with CRL_HOT_FMA).
 *
 * Write x = 2^k m with m in [sqrt(1/2), sqrt(2)), found from the bits of x
 * alone (adding mantissa_carry carries into the exponent field exactly when
 * the mantissa of x is at least sqrt(2)), and f = m - 1 (exact).  With
 * s = f / (m + 1) = f / (2 + f),
 *
 *   log(m) = 2 atanh(s) = 2s + s R(s^2),   R(z) = sum_{j>=1} 2 z^j / (2j + 1),
 *
 * and since 2s = f - s f (from s (2 + f) = f),
 *
 *   log(m) = f - s (f - R(s^2)),
 *
 * a correction to the exact f of relative size f/2 at most, so that the
 * rounding errors of s and of the correction reach the result scaled down.
 * |s| <= 3 - 2 sqrt(2) = 0.1716, so z = s^2 <= 0.0295.  R is replaced by the
 * degree-7 polynomial z (c1 + c2 z + ... + c7 z^6) minimizing the absolute
 * error max |R(z) - P(z)| on [0, 0.0295]: a Remez exchange in 60-digit
 * arithmetic (mpmath), converged to an equioscillating error of 2^-58.5.
 * Finally log(x) = k ln2 + log(m), with ln2 = LN2_HI + LN2_LO and LN2_HI
 * holding 42 significant bits, so that k LN2_HI is exact for every |k| < 2^11.
 * The exponent k is turned into a double with the 2^52 trick (bits of
 * 2^52 + j, minus 2^52) rather than an int64-to-double conversion, which
 * AVX2 and AVX-512F lack.  Largest error seen against x87 logl: 0.91 ulp
 * (6 10^7 samples, densest where k ln2 and log(m) cancel, x near 0.7).
 *
 * The fused multiply-adds keep the operation count low (the loops that call
 * this are bound by the multiply ports): 11 multiplies or fmas, 4 adds, one
 * division and 5 integer operations per element.
 */
static inline double crl_log(double x)
{
    const uint64_t mantissa_carry = 0x00095f619980c433ULL; /* 2^52 (2 - sqrt 2) */
    const uint64_t one_bits = 0x3ff0000000000000ULL;       /* 1.0               */
    const uint64_t two52_bits = 0x4330000000000000ULL;     /* 2^52              */
    const uint64_t mantissa_mask = 0x000fffffffffffffULL;
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    uint64_t carried = bits + mantissa_carry;
    /* m: the mantissa bits of x rebased from carry, with 1.0's exponent;
     * e: (k + 1023) as the low bits of 2^52 + k + 1023. */
    uint64_t m_bits = (carried & mantissa_mask) + (one_bits - mantissa_carry);
    uint64_t e_bits = (carried >> 52) | two52_bits;
    double m, e_shifted;
    memcpy(&m, &m_bits, sizeof m);
    memcpy(&e_shifted, &e_bits, sizeof e_shifted);
    double e = e_shifted - (0x1p52 + 1023.0);

    double f = m - 1.0;
    double s = f / (m + 1.0);
    double z = s * s;
    /* Remez coefficients c7 .. c1 of R(z) / z, by Horner's rule. */
    double p = fma(z, 0x1.2f0563862e5fdp-3, 0x1.39a1bab73fcacp-3);
    p = fma(z, p, 0x1.74663ee86e841p-3);
    p = fma(z, p, 0x1.c71c52095d16fp-3);
    p = fma(z, p, 0x1.24924941f124fp-2);
    p = fma(z, p, 0x1.999999997fdb7p-2);
    p = fma(z, p, 0x1.5555555555592p-1);
    double f_minus_r = fma(-z, p, f);
    double minus_k_ln2_lo = e * -0x1.ef35793c76730p-45;                   /* LN2_LO */
    return fma(e, 0x1.62e42fefa3800p-1, f - fma(s, f_minus_r, minus_k_ln2_lo)); /* LN2_HI */
}

/*
 * logf(x) for float32 x, within 1 ulp of the exact natural logarithm for
 * every positive normal finite float (measured on all of them, below);
 * zero, subnormal, negative, infinite and NaN inputs give unspecified values.
 * Like crl_log, inline, branch-free and made of integer and IEEE operations
 * only, so that GCC vectorizes it inside the caller's loop: 16 lanes in an
 * AVX-512 clone, 8 in an AVX2 one (compile the caller with CRL_HOT_FMA).
 * It has no division, so it runs at the rate of the multiply ports, where
 * crl_log waits on a double division per element.
 *
 * Write x = 2^k m with m in [sqrt(1/2), sqrt(2)) from the bits of x (adding
 * the carry constant 2^23 (2 - sqrt 2), rounded, carries into the exponent
 * field exactly when the mantissa of x is at least sqrt(2)); f = m - 1 is
 * exact (Sterbenz), in [-0.2929, 0.4142].  Then
 *
 *   log(m) = log1p(f) = f + f^2 (-1/2 + f P(f)),
 *
 * P of degree 7 fitted to (log1p(f) - f + f^2/2) / f^3 minimizing the error
 * relative to log1p(f) (Lawson's iteration on 6000 Chebyshev points in
 * double against 40-digit mpmath values): 2^-27.2 with the coefficients
 * rounded to float, a ninth of float32's unit roundoff 2^-24.  The
 * correction to the exact f is at most f/2 in size, so its rounding errors
 * reach the result scaled down.  Finally log(x) = k ln2 + log(m) with
 * ln2 = LN2_HI + LN2_LO, LN2_HI holding 9 significant bits so that k LN2_HI
 * is exact for every float exponent, and the last fma rounds once.
 *
 * Error, measured against glibc's double log (within 2^-52 of the exact
 * value, a 2^-29 part of a float ulp) on all 2130706431 positive normal
 * floats: at most 0.937 ulp, at x = 0x1.8f7178p+0 (k = 1, where k ln2 and
 * log(m) < 0 partly cancel); 99.43% of the inputs are correctly rounded
 * (within 0.5 ulp).  tests/test_vecmath.c holds it to < 1 ulp on a sweep
 * of every 61st float and on the worst input.
 *
 * 11 fmas, a multiply, a subtraction, one int-to-float conversion and 5
 * integer operations per element.
 */
static inline float crl_logf(float x)
{
    const uint32_t mantissa_carry = 0x004afb0dU; /* 0x3f800000 - sqrt(1/2)'s bits */
    const uint32_t sqrt_half_bits = 0x3f3504f3U; /* sqrt(1/2), rounded to float   */
    const uint32_t mantissa_mask = 0x007fffffU;
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    uint32_t carried = bits + mantissa_carry;
    /* m: the mantissa of x rebased to [sqrt(1/2), sqrt(2)); k + 127 is the
     * exponent field of carried. */
    uint32_t m_bits = (carried & mantissa_mask) + sqrt_half_bits;
    float m;
    memcpy(&m, &m_bits, sizeof m);
    float k = (float) ((int32_t) (carried >> 23) - 127);

    float f = m - 1.0f;
    float z = f * f;
    /* Coefficients c7 .. c0 of P, by Horner's rule. */
    float p = fmaf(f, -0x1.38b58cp-4f, 0x1.055b6ep-3f);
    p = fmaf(f, p, -0x1.0d8540p-3f);
    p = fmaf(f, p, 0x1.22da1cp-3f);
    p = fmaf(f, p, -0x1.547244p-3f);
    p = fmaf(f, p, 0x1.99a008p-3f);
    p = fmaf(f, p, -0x1.000226p-2f);
    p = fmaf(f, p, 0x1.555554p-2f);
    float log_m = fmaf(z, fmaf(f, p, -0.5f), f);
    return fmaf(k, 0x1.630000p-1f, fmaf(k, -0x1.bd0106p-13f, log_m)); /* LN2_HI, LN2_LO */
}

/* y[k] = crl_logf(x[k]) for k < n.  x and y must not overlap. */
void crl_logf_array(const float *restrict x, float *restrict y, int64_t n);

/* y[k] = crl_log(x[k]) for k < n.  x and y must not overlap. */
void crl_log_array(const double *restrict x, double *restrict y, int64_t n);

/* The pairwise combination of the fixed orders' lanes, in place:
 * lane[j] = lane[2j] + lane[2j + 1] on halving widths, down to lane[0]
 * (lanes a power of two).  For loops that form crl_sum_fixed_f32's lanes
 * themselves beside other work, so that their sums have its bits. */
static inline double crl_combine_lanes(double *lane, int lanes)
{
    for (int width = lanes / 2; width >= 1; width /= 2)
        for (int j = 0; j < width; j++)
            lane[j] = lane[2 * j] + lane[2 * j + 1];
    return lane[0];
}

/* Sum of x[0 .. n-1] in a fixed order: eight interleaved partial sums
 * (element k goes to lane k mod 8), combined pairwise. */
double crl_sum_fixed(const double *x, int64_t n);
/* Sum of float32 x[0 .. n-1], each widened to double, in the same kind of
 * order with sixteen lanes (k mod 16). */
double crl_sum_fixed_f32(const float *x, int64_t n);

/* The value of float32 x[0 .. n-1] whose bits, read as a signed integer,
 * are the largest (crl_rows.row_sum's peak; -0.0f for n = 0): in a finite
 * row, its largest value >= +0, or a value <= 0 if it has none. */
double crl_row_peak_f32(const float *x, int64_t n);

/* The lanes of the output error's per-unit sums for n columns: row t of
 * a unit adds into lane t mod L of its column, so that a narrow output
 * (K = 2 of a network's readout) is not one chain of T dependent additions
 * per column.  L n accumulators, at least 16 for n < 16. */
static inline int64_t crl_output_lanes(int64_t n)
{
    return n >= 16 ? 1 : 16 / n;
}

/* acc[(t mod L) n + i] += (x[r * ldx + i] - y[r * ldy + i])^2 for rows
 * t = t0 + r, r < count, in turn (L = crl_output_lanes(n), t counted from
 * the first row of the unit): per-lane sums of squared differences in row
 * order.  The _f32 form reads float32 rows, widening each value to double
 * first: the same operations, so the same bits as the double rows of their
 * widened values. */
void crl_sq_diff_rows(const double *restrict x, int64_t ldx, const double *restrict y,
                      int64_t ldy, int64_t t0, int64_t count, int64_t n, double *restrict acc);
void crl_sq_diff_rows_f32(const float *restrict x, int64_t ldx, const float *restrict y,
                          int64_t ldy, int64_t t0, int64_t count, int64_t n,
                          double *restrict acc);

/* grad[r n + i] = alpha[i] + beta[i] (x[r ld + i] - mean[i]) for rows
 * r < count, i < n: the affine gradient of every term that depends on the
 * states through per-neuron sums (docs/losses.md), from double or float32
 * rows (each value widened to double first).  The engine's own starting
 * value of a tile's row, crl_rows_init (internal.h), is this kernel on one
 * row. */
void crl_affine_rows(const double *restrict x, int64_t ld, int64_t count, int64_t n,
                     const double *restrict mean, const double *restrict alpha,
                     const double *restrict beta, double *restrict grad);
void crl_affine_rows_f32(const float *restrict x, int64_t ld, int64_t count, int64_t n,
                         const double *restrict mean, const double *restrict alpha,
                         const double *restrict beta, double *restrict grad);

#endif /* CRL_VECMATH_H */
