/*
 * vecmath.h - elementwise kernels for the terms' hot loops that the compiler
 * vectorizes and whose results do not depend on it: each element goes
 * through the same IEEE operations whether a vector body or a scalar tail
 * computes it, and every reduction has an order fixed by its length alone
 * (SPEC "Exactness": no -ffast-math, no contraction into fma).
 */
#ifndef CRL_VECMATH_H
#define CRL_VECMATH_H

#include <stdint.h>

/*
 * y[k] = log(x[k]) for k < n, within 1 ulp of the exact natural logarithm
 * (tests/test_vecmath.c: at most 2 ulp from glibc's log) for every positive
 * normal finite x[k].  Zero, subnormal, negative, infinite and NaN inputs
 * give unspecified values.  x and y must not overlap.
 */
void crl_log_array(const double *restrict x, double *restrict y, int64_t n);

/* Sum of x[0 .. n-1] in a fixed order: eight interleaved partial sums
 * (element k goes to lane k mod 8), combined pairwise. */
double crl_sum_fixed(const double *x, int64_t n);

/* Sum of x[k] * y[k] in the order of crl_sum_fixed. */
double crl_dot_fixed(const double *x, const double *y, int64_t n);

/* acc[i] += (x[r * ldx + i] - y[r * ldy + i])^2 for each row r < count in
 * turn: per-column sums of squared differences, in row order. */
void crl_sq_diff_rows(const double *restrict x, int64_t ldx, const double *restrict y,
                      int64_t ldy, int64_t count, int64_t n, double *restrict acc);

#endif /* CRL_VECMATH_H */
