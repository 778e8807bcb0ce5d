/*
 * xsum.c - the exact accumulators (xsum.h): spilling, merging, the wide
 * accumulator's additions, and rounding to double or to a double-double.
 * The functions on limbs take the limb count n and the power of two `unit`
 * of bit 0, and serve both formats.
 */
#include "xsum.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static _Thread_local crl_spill *current;

void crl_spill_begin(crl_spill *s, const crl_xsum *base, int64_t slots)
{
    s->base = base;
    s->slots = slots;
    s->shift = 0;
    current = s;
}

void crl_spill_end(void)
{
    current = NULL;
}

crl_spill *crl_spill_swap(crl_spill *s)
{
    crl_spill *previous = current;
    current = s;
    return previous;
}

void crl_xsum_spill(crl_xsum *x, double v)
{
    crl_spill *s = current;
    if (s == NULL || x < s->base || x >= s->base + s->slots) {
        fprintf(stderr, "ctrnn-loss: internal error: a value spilled outside a spill list\n");
        abort();
    }
    if (s->count == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 64;
        crl_spilled *grown = realloc(s->items, sizeof *grown * (size_t) cap);
        if (grown == NULL) {
            s->failed = true;
            return;
        }
        s->items = grown;
        s->cap = cap;
    }
    s->items[s->count++] = (crl_spilled){x - s->base + s->shift, v};
}

/* w += y over n limbs (mod 2^(64 n)): an add-with-carry chain. */
static inline void limbs_merge(uint64_t *restrict w, const uint64_t *restrict y, int n)
{
#ifdef __SIZEOF_INT128__
    unsigned __int128 c = 0;
    for (int k = 0; k < n; k++) {
        c += (unsigned __int128) w[k] + y[k];
        w[k] = (uint64_t) c;
        c >>= 64;
    }
#else
    uint64_t c = 0;
    for (int k = 0; k < n; k++) {
        uint64_t t = w[k] + c;
        c = t < c;
        t += y[k];
        c += t < y[k];
        w[k] = t;
    }
#endif
}

void crl_xsum_merge(crl_xsum *x, const crl_xsum *y)
{
    limbs_merge(x->limb, y->limb, CRL_XSUM_LIMBS);
}

void crl_xsum_merge_negated(crl_xsum *x, const crl_xsum *y)
{
    /* x - y = x + (~y + 1) mod 2^512. */
    crl_xsum minus;
    uint64_t carry = 1;
    for (int k = 0; k < CRL_XSUM_LIMBS; k++) {
        minus.limb[k] = ~y->limb[k] + carry;
        carry = carry && minus.limb[k] == 0;
    }
    limbs_merge(x->limb, minus.limb, CRL_XSUM_LIMBS);
}

void crl_xsum_wide_merge(crl_xsum_wide *x, const crl_xsum_wide *y)
{
    limbs_merge(x->limb, y->limb, CRL_XSUM_WIDE_LIMBS);
    x->limb[CRL_XSUM_WIDE_LIMBS] += y->limb[CRL_XSUM_WIDE_LIMBS];
}

/* w += v exactly for a finite v whose bits lie in the n limbs (below the
 * sign bit); false, and w unchanged, if they do not. */
static inline bool limbs_add(uint64_t *w, int n, int unit, double v)
{
    if (v == 0)
        return true;
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int e = (int) ((bits >> 52) & 0x7ff);
    uint64_t m = bits & 0xfffffffffffffULL;
    if (e == 0)
        e = 1;   /* subnormal: m 2^-1074 */
    else
        m |= 1ULL << 52;
    int at = e - 1075 - unit;   /* the lowest mantissa bit is 2^(e - 1075) */
    if (at < 0 || at + 53 > 64 * n - 2)
        return false;
    int i = at >> 6, s = at & 63;
    uint64_t part[2] = {m << s, s ? m >> (64 - s) : 0};
    if (v > 0) {
        uint64_t c = 0;
        for (int k = i; k < n && (k < i + 2 || c); k++) {
            uint64_t add = (k < i + 2 ? part[k - i] : 0) + c;
            c = add < c;
            w[k] += add;
            c += w[k] < add;
        }
    } else {
        uint64_t b = 0;
        for (int k = i; k < n && (k < i + 2 || b); k++) {
            uint64_t sub = (k < i + 2 ? part[k - i] : 0) + b;
            b = sub < b;
            b += w[k] < sub;
            w[k] -= sub;
        }
    }
    return true;
}

void crl_xsum_wide_add(crl_xsum_wide *x, double v)
{
    if (!isfinite(v))
        x->limb[CRL_XSUM_WIDE_LIMBS]++;
    else
        limbs_add(x->limb, CRL_XSUM_WIDE_LIMBS, CRL_XSUM_WIDE_UNIT, v);   /* always fits */
}

void crl_xsum_wide_add_narrow(crl_xsum_wide *x, const crl_xsum *y)
{
    /* y sign-extended to the wide width, shifted to the wide units. */
    enum { SHIFT = CRL_XSUM_UNIT - CRL_XSUM_WIDE_UNIT, WORDS = SHIFT / 64, BITS = SHIFT % 64 };
    uint64_t ext[CRL_XSUM_WIDE_LIMBS], shifted[CRL_XSUM_WIDE_LIMBS] = {0};
    uint64_t sign = (y->limb[CRL_XSUM_LIMBS - 1] >> 63) ? ~0ULL : 0;
    for (int k = 0; k < CRL_XSUM_WIDE_LIMBS; k++)
        ext[k] = k < CRL_XSUM_LIMBS ? y->limb[k] : sign;
    _Static_assert(BITS > 0 && BITS < 64, "a whole-limb shift needs no second word");
    for (int k = WORDS; k < CRL_XSUM_WIDE_LIMBS; k++) {
        shifted[k] = ext[k - WORDS] << BITS;
        if (k > WORDS)
            shifted[k] |= ext[k - WORDS - 1] >> (64 - BITS);
    }
    limbs_merge(x->limb, shifted, CRL_XSUM_WIDE_LIMBS);
}

/* 64 bits of the magnitude m from bit `at` up (at may be below 0). */
static inline uint64_t bits_from(const uint64_t *m, int n, int at)
{
    if (at < 0)
        return m[0] << -at;
    int i = at >> 6, s = at & 63;
    uint64_t v = m[i] >> s;
    if (s && i + 1 < n)
        v |= m[i + 1] << (64 - s);
    return v;
}

/* Whether any bit of m below bit `at` is set. */
static inline bool any_below(const uint64_t *m, int at)
{
    if (at <= 0)
        return false;
    int i = at >> 6, s = at & 63;
    for (int k = 0; k < i; k++)
        if (m[k])
            return true;
    return s && (m[i] & ((1ULL << s) - 1));
}

/* The magnitude m (n limbs, the highest nonzero one `top`) rounded to the
 * nearest double, ties to even, with the sign of negative; *low is the
 * lowest bit position kept (-1: all kept, exactly) and *up whether it
 * rounded up. */
static inline double magnitude_round(const uint64_t *m, int n, int top, int unit, bool negative,
                                     int *low, bool *up)
{
    int msb = 64 * top + 63 - __builtin_clzll(m[top]);
    *low = -1;
    *up = false;
    if (msb < 53) {
        /* At most 53 bits: exact, the product by a power of two too (for
         * the wide units a subnormal, representable). */
        double v = (double) m[0] * (unit == CRL_XSUM_UNIT ? 0x1p-256 : 0x1p-1074);
        return negative ? -v : v;
    }
    /* The 64 bits from the leading one down, then to 53 bits, ties to even,
     * the bits below the 64 as a sticky bit. */
    uint64_t head = bits_from(m, n, msb - 63);
    uint64_t keep = head >> 11, rest = head & 0x7ff;
    bool sticky = any_below(m, msb - 63);
    *low = msb - 52;
    *up = rest > 0x400 || (rest == 0x400 && (sticky || (keep & 1)));
    keep += *up;
    /* keep 2^(msb - 52 + unit), keep in [2^52, 2^53]: a normal double
     * (msb >= 53 puts it above 2^-1021 for either unit) or beyond the range. */
    int64_t biased = (int64_t) msb + unit + 1023;
    if (keep >> 53) {
        keep >>= 1;
        biased++;
    }
    if (biased >= 2047)
        return negative ? -INFINITY : INFINITY;
    uint64_t bits = (uint64_t) negative << 63 | (uint64_t) biased << 52 | (keep & 0xfffffffffffffULL);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* The magnitude of the two's-complement w into m; whether w < 0, and the
 * highest nonzero limb of m in *top (-1: w is 0). */
static inline bool magnitude(const uint64_t *w, int n, uint64_t *m, int *top)
{
    bool negative = w[n - 1] >> 63;
    uint64_t c = negative;
    for (int k = 0; k < n; k++) {
        uint64_t x = negative ? ~w[k] : w[k];
        m[k] = x + c;
        c = m[k] < c;
    }
    *top = n - 1;
    while (*top >= 0 && m[*top] == 0)
        (*top)--;
    return negative;
}

static inline double limbs_round(const uint64_t *w, int n, int unit)
{
    uint64_t m[CRL_XSUM_WIDE_LIMBS];
    int top, low;
    bool up, negative = magnitude(w, n, m, &top);
    return top < 0 ? 0.0 : magnitude_round(m, n, top, unit, negative, &low, &up);
}

double crl_xsum_round(const crl_xsum *x)
{
    return limbs_round(x->limb, CRL_XSUM_LIMBS, CRL_XSUM_UNIT);
}

double crl_xsum_wide_round(const crl_xsum_wide *x)
{
    if (x->limb[CRL_XSUM_WIDE_LIMBS])
        return NAN;
    return limbs_round(x->limb, CRL_XSUM_WIDE_LIMBS, CRL_XSUM_WIDE_UNIT);
}

/* hi, the sum rounded, and lo, the rest rounded, in one pass: with |w| =
 * K 2^low + r (r < 2^low), the rest is r with w's sign, or, when hi
 * rounded up to (K + 1) 2^low, 2^low - r with the other sign. */
static inline crl_dd limbs_dd(const uint64_t *w, int n, int unit)
{
    uint64_t m[CRL_XSUM_WIDE_LIMBS];
    int top, low;
    bool up, negative = magnitude(w, n, m, &top);
    if (top < 0)
        return (crl_dd){0.0, 0.0};
    double hi = magnitude_round(m, n, top, unit, negative, &low, &up);
    if (low <= 0 || !isfinite(hi))
        return (crl_dd){hi, 0.0};
    int i = low >> 6, s = low & 63;
    if (s)
        m[i] &= (1ULL << s) - 1;
    else
        i--;   /* the bits below low end with limb i - 1 */
    for (int k = i + 1; k <= top; k++)
        m[k] = 0;
    if (up) {  /* 2^low - r: the two's complement of r in low bits (r > 0) */
        uint64_t c = 1;
        for (int k = 0; k <= i; k++) {
            m[k] = ~m[k] + c;
            c = c && m[k] == 0;
        }
        if (s)
            m[i] &= (1ULL << s) - 1;
    }
    int rtop = i;
    while (rtop >= 0 && m[rtop] == 0)
        rtop--;
    if (rtop < 0)
        return (crl_dd){hi, 0.0};
    int rlow;
    bool rup;
    return (crl_dd){hi, magnitude_round(m, n, rtop, unit, negative != up, &rlow, &rup)};
}

crl_dd crl_xsum_dd(const crl_xsum *x)
{
    return limbs_dd(x->limb, CRL_XSUM_LIMBS, CRL_XSUM_UNIT);
}

crl_dd crl_xsum_wide_dd(const crl_xsum_wide *x)
{
    if (x->limb[CRL_XSUM_WIDE_LIMBS])
        return (crl_dd){NAN, 0.0};
    return limbs_dd(x->limb, CRL_XSUM_WIDE_LIMBS, CRL_XSUM_WIDE_UNIT);
}
