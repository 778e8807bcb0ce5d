/*
 * xsum.c - the exact accumulator (xsum.h): merging two sums, and rounding
 * one to double or to a double-double.
 */
#include "xsum.h"

#include <math.h>
#include <stdbool.h>

void crl_xsum_merge(crl_xsum *x, const crl_xsum *y)
{
    uint64_t c = 0;
    for (int k = 0; k < CRL_XSUM_LIMBS; k++) {
        uint64_t t = x->limb[k] + c;
        c = t < c;
        t += y->limb[k];
        c += t < y->limb[k];
        x->limb[k] = t;
    }
    x->limb[CRL_XSUM_LIMBS] += y->limb[CRL_XSUM_LIMBS];
}

/* 64 bits of the magnitude m from bit `at` up (at may be below 0). */
static uint64_t bits_from(const uint64_t *m, int at)
{
    if (at < 0)
        return m[0] << -at;
    int i = at >> 6, s = at & 63;
    uint64_t v = m[i] >> s;
    if (s && i + 1 < CRL_XSUM_LIMBS)
        v |= m[i + 1] << (64 - s);
    return v;
}

/* Whether any bit of m below bit `at` is set. */
static bool any_below(const uint64_t *m, int at)
{
    if (at <= 0)
        return false;
    int i = at >> 6, s = at & 63;
    for (int k = 0; k < i; k++)
        if (m[k])
            return true;
    return s && (m[i] & ((1ULL << s) - 1));
}

double crl_xsum_round(const crl_xsum *x)
{
    if (x->limb[CRL_XSUM_LIMBS])
        return NAN;
    uint64_t m[CRL_XSUM_LIMBS];
    bool negative = x->limb[CRL_XSUM_LIMBS - 1] >> 63;
    uint64_t c = negative;
    for (int k = 0; k < CRL_XSUM_LIMBS; k++) {
        uint64_t w = negative ? ~x->limb[k] : x->limb[k];
        m[k] = w + c;
        c = m[k] < c;
    }
    int top = CRL_XSUM_LIMBS - 1;
    while (top >= 0 && m[top] == 0)
        top--;
    if (top < 0)
        return 0.0;
    int msb = 64 * top + 63 - __builtin_clzll(m[top]);
    double v;
    if (msb < 53) {
        v = ldexp((double) m[0], -1074);   /* exact: at most 53 bits */
    } else {
        /* The 64 bits from the leading one down, then to 53 bits, ties to
         * even, the bits below the 64 as a sticky bit. */
        uint64_t head = bits_from(m, msb - 63);
        uint64_t keep = head >> 11, rest = head & 0x7ff;
        bool sticky = any_below(m, msb - 63);
        if (rest > 0x400 || (rest == 0x400 && (sticky || (keep & 1))))
            keep++;
        v = ldexp((double) keep, msb - 52 - 1074);   /* keep <= 2^53: exact or inf */
    }
    return negative ? -v : v;
}

crl_dd crl_xsum_dd(const crl_xsum *x)
{
    double hi = crl_xsum_round(x);
    if (!isfinite(hi))
        return (crl_dd){hi, 0.0};
    crl_xsum rest = *x;
    crl_xsum_add(&rest, -hi);
    return (crl_dd){hi, crl_xsum_round(&rest)};
}
