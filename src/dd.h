/*
 * dd.h - double-double arithmetic: the error-free transforms (TwoSum,
 * TwoProduct) and the about 2^-104-accurate arithmetic of finalize.
 *
 * A crl_dd is an unevaluated sum hi + lo with |lo| <= ulp(hi)/2.  The packed
 * sums themselves are exact (xsum.h); after the reduction each becomes a
 * crl_dd (crl_xsum_dd), a function of the exact sum alone, so that what
 * finalize computes from it in double-double is the same on every rank and
 * for every decomposition.
 *
 * Requires strict IEEE double evaluation: no -ffast-math, no contraction of
 * a*b+c into fma (configure passes -ffp-contract=off).
 */
#ifndef CRL_DD_H
#define CRL_DD_H

#include <math.h>

typedef struct crl_dd {
    double hi, lo;
} crl_dd;

static inline crl_dd crl_dd_make(double x)
{
    return (crl_dd){x, 0.0};
}

/* Knuth's TwoSum: s + e == a + b exactly. */
static inline crl_dd crl_two_sum(double a, double b)
{
    double s = a + b;
    double bb = s - a;
    double e = (a - (s - bb)) + (b - bb);
    return (crl_dd){s, e};
}

/* Dekker's FastTwoSum, valid when |a| >= |b| (or a == 0). */
static inline crl_dd crl_fast_two_sum(double a, double b)
{
    double s = a + b;
    double e = b - (s - a);
    return (crl_dd){s, e};
}

/* TwoProduct: p + e == a * b exactly (barring overflow of p and
 * underflow of e). */
static inline crl_dd crl_two_prod(double a, double b)
{
    double p = a * b;
#ifdef __FP_FAST_FMA
    return (crl_dd){p, fma(a, b, -p)};
#else
    /* Dekker's splitting multiplies by 2^27 + 1, which overflows above
     * 2^996: there the (slower, library) fma is exact. */
    if (fabs(a) > 0x1p995 || fabs(b) > 0x1p995)
        return (crl_dd){p, fma(a, b, -p)};
    /* Dekker's splitting: a = ah + al with 26-bit halves. */
    const double split = 134217729.0; /* 2^27 + 1 */
    double ca = split * a, cb = split * b;
    double ah = ca - (ca - a), al = a - ah;
    double bh = cb - (cb - b), bl = b - bh;
    double e = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
    return (crl_dd){p, e};
#endif
}

/* Accurate double-double addition (both halves summed error-free). */
static inline crl_dd crl_dd_add(crl_dd a, crl_dd b)
{
    crl_dd s = crl_two_sum(a.hi, b.hi);
    crl_dd t = crl_two_sum(a.lo, b.lo);
    s.lo += t.hi;
    s = crl_fast_two_sum(s.hi, s.lo);
    s.lo += t.lo;
    return crl_fast_two_sum(s.hi, s.lo);
}

static inline crl_dd crl_dd_neg(crl_dd a)
{
    return (crl_dd){-a.hi, -a.lo};
}

static inline crl_dd crl_dd_sub(crl_dd a, crl_dd b)
{
    return crl_dd_add(a, crl_dd_neg(b));
}

static inline crl_dd crl_dd_mul(crl_dd a, crl_dd b)
{
    crl_dd p = crl_two_prod(a.hi, b.hi);
    p.lo += a.hi * b.lo + a.lo * b.hi;
    return crl_fast_two_sum(p.hi, p.lo);
}

static inline crl_dd crl_dd_mul_d(crl_dd a, double b)
{
    crl_dd p = crl_two_prod(a.hi, b);
    p.lo += a.lo * b;
    return crl_fast_two_sum(p.hi, p.lo);
}

static inline crl_dd crl_dd_div_d(crl_dd a, double d)
{
    double q1 = a.hi / d;
    crl_dd r = crl_dd_sub(a, crl_two_prod(q1, d));
    double q2 = r.hi / d;
    r = crl_dd_sub(r, crl_two_prod(q2, d));
    double q3 = r.hi / d;
    crl_dd q = crl_fast_two_sum(q1, q2);
    return crl_dd_add(q, crl_dd_make(q3));
}

/* The double nearest to hi + lo (hi, since the pair is normalized). */
static inline double crl_dd_round(crl_dd a)
{
    return a.hi + a.lo;
}

static inline int crl_dd_isfinite(crl_dd a)
{
    return isfinite(a.hi) && isfinite(a.lo);
}

#endif /* CRL_DD_H */
