/*
 * xsum.h - the exact accumulator of the packed sums (docs/losses.md
 * "Exactness").
 *
 * A crl_xsum holds a sum of doubles exactly: a two's-complement integer of
 * CRL_XSUM_LIMBS 64-bit limbs counting units of 2^-1074 (the least
 * subnormal), so every finite double is an integer in it.  The largest
 * double is below 2^1024 = 2^2098 units; 2176 bits leave 77 bits of
 * headroom, so more than 2^63 additions of the largest doubles cannot
 * overflow it.  One more limb counts the non-finite values added (an inf or
 * NaN poisons the sum: it rounds to NaN).
 *
 * Integer addition is associative and commutative, so a set of values
 * summed in any order and any grouping (elements on one rank, ranks in any
 * order of the MPI reduction) gives the same bits; the sum is rounded to
 * double once, to nearest with ties to even (crl_xsum_round).
 */
#ifndef CRL_XSUM_H
#define CRL_XSUM_H

#include "dd.h"

#include <stdint.h>
#include <string.h>

enum {
    CRL_XSUM_LIMBS = 34,                 /* the value                        */
    CRL_XSUM_WORDS = CRL_XSUM_LIMBS + 1, /* and the non-finite count         */
};

typedef struct crl_xsum {
    uint64_t limb[CRL_XSUM_WORDS];
} crl_xsum;

/* *x += v, exactly.  The mantissa lands in two limbs; a carry (or borrow)
 * runs further only while limbs overflow, which is rare. */
static inline void crl_xsum_add(crl_xsum *x, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint64_t e = (bits >> 52) & 0x7ff, m = bits & 0xfffffffffffffULL;
    if (e == 0x7ff) {
        x->limb[CRL_XSUM_LIMBS]++;
        return;
    }
    if (e == 0) {
        if (m == 0)
            return;
        e = 1;   /* subnormal: m * 2^-1074 */
    } else {
        m |= 1ULL << 52;
    }
    unsigned at = (unsigned) e - 1, i = at >> 6, s = at & 63;
    uint64_t lo = m << s, hi = s ? m >> (64 - s) : 0;
    uint64_t *w = x->limb;
    if (!(bits >> 63)) {
        uint64_t t = w[i] + lo, c = t < lo;
        w[i] = t;
        uint64_t add = hi + c;
        t = w[i + 1] + add;
        c = t < add;
        w[i + 1] = t;
        for (unsigned k = i + 2; c && k < CRL_XSUM_LIMBS; k++)
            c = ++w[k] == 0;
    } else {
        uint64_t b = w[i] < lo;
        w[i] -= lo;
        uint64_t sub = hi + b;
        b = w[i + 1] < sub;
        w[i + 1] -= sub;
        for (unsigned k = i + 2; b && k < CRL_XSUM_LIMBS; k++)
            b = w[k]-- == 0;
    }
}

/* *x += y, exactly (the reduction operator's step). */
void crl_xsum_merge(crl_xsum *x, const crl_xsum *y);

/* The double nearest the sum (ties to even; beyond the double range, inf;
 * NaN if a non-finite value was added). */
double crl_xsum_round(const crl_xsum *x);

/* The sum as a normalized double-double: hi the nearest double, lo the
 * nearest double to the rest; a function of the exact sum alone. */
crl_dd crl_xsum_dd(const crl_xsum *x);

#endif /* CRL_XSUM_H */
