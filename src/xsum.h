/*
 * xsum.h - the exact accumulators of the packed sums (docs/losses.md
 * "Exactness").
 *
 * Both hold a sum of doubles exactly, as a two's-complement integer of
 * 64-bit limbs counting units of a fixed power of two.  Integer addition is
 * associative and commutative, so a set of values summed in any order and
 * any grouping (elements on one rank, ranks in any order of the MPI
 * reduction) gives the same bits; the sum is rounded to double once, to
 * nearest with ties to even.
 *
 *   crl_xsum       the packed buffer's slot: 8 limbs (one cache line), units
 *                  of 2^-256.  It takes a double whose bits all lie in
 *                  [2^-256, 2^192) - every value of magnitude 2^-204 to
 *                  2^191 - with 64 bits of headroom (2^63 additions).  Any
 *                  other value (smaller, larger, subnormal, inf, NaN) is
 *                  not lost: it is spilled to the current crl_spill list,
 *                  and the reduction adds the spilled values of all ranks
 *                  in a second, wide reduction (cycle.c).
 *   crl_xsum_wide  the whole double range: 34 limbs in units of 2^-1074
 *                  (2^1024 is 2^2098 units; 77 bits of headroom), and a
 *                  count of the non-finite values added (the sum is NaN).
 */
#ifndef CRL_XSUM_H
#define CRL_XSUM_H

#include "dd.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

enum {
    CRL_XSUM_LIMBS = 8,
    CRL_XSUM_UNIT = -256,                 /* bit 0 is 2^-256                  */
    CRL_XSUM_WIDE_LIMBS = 34,
    CRL_XSUM_WIDE_UNIT = -1074,
    CRL_XSUM_WIDE_WORDS = CRL_XSUM_WIDE_LIMBS + 1, /* and the non-finite count */
};

typedef struct crl_xsum {
    uint64_t limb[CRL_XSUM_LIMBS];
} crl_xsum;

typedef struct crl_xsum_wide {
    uint64_t limb[CRL_XSUM_WIDE_WORDS];
} crl_xsum_wide;

/* Values a crl_xsum could not take, by slot: the slot's index in the
 * buffer the list was begun on. */
typedef struct crl_spilled {
    int64_t slot;
    double value;
} crl_spilled;

typedef struct crl_spill {
    const crl_xsum *base;
    int64_t slots;
    int64_t shift;         /* an item's slot: its index from base, plus shift */
    crl_spilled *items;
    int64_t count, cap;
    bool failed;   /* out of memory for an item: the cycle must fail      */
} crl_spill;

/* Spills of this thread go to s, for the slots base[0 .. slots) (NULL:
 * none may spill; a spill then is a programming error and aborts). */
void crl_spill_begin(crl_spill *s, const crl_xsum *base, int64_t slots);
void crl_spill_end(void);

/* Makes s (begun on its own slots, or NULL) this thread's current list for
 * a while; returns the list it replaces, to be swapped back. */
crl_spill *crl_spill_swap(crl_spill *s);

/* Records v for slot x in the current spill list. */
void crl_xsum_spill(crl_xsum *x, double v);

/* *x += v, exactly.  The mantissa lands in two limbs, added as a signed
 * 128-bit two's-complement number (no branch on the sign, which is random
 * for the low parts of the exact products); what reaches the limbs above -
 * the carry out, less one for a negative value - is 0 but rarely, and only
 * then runs further. */
static inline void crl_xsum_add(crl_xsum *x, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    /* The exponent field e puts the lowest mantissa bit at 2^(e - 1075):
     * bit e - 819 of the slot; the highest must stay below bit 448. */
    uint64_t at = ((bits >> 52) & 0x7ff) - 819;
    if (at > 395) {
        if (v != 0)
            crl_xsum_spill(x, v);
        return;
    }
    uint64_t m = (bits & 0xfffffffffffffULL) | 1ULL << 52, negative = bits >> 63;
    unsigned i = (unsigned) at >> 6;
    unsigned __int128 magnitude = (unsigned __int128) m << (at & 63);
    unsigned __int128 sign = (unsigned __int128) 0 - negative; /* 0 or all ones */
    unsigned __int128 addend = (magnitude ^ sign) - sign;
    uint64_t *w = x->limb;
    unsigned __int128 old = (unsigned __int128) w[i + 1] << 64 | w[i];
    unsigned __int128 sum = old + addend;
    w[i] = (uint64_t) sum;
    w[i + 1] = (uint64_t) (sum >> 64);
    int carry = (int) (sum < old) - (int) negative;
    if (carry > 0)
        for (unsigned k = i + 2; k < CRL_XSUM_LIMBS && ++w[k] == 0; k++)
            continue;
    else if (carry < 0)
        for (unsigned k = i + 2; k < CRL_XSUM_LIMBS && w[k]-- == 0; k++)
            continue;
}

/* *x += y, exactly (the reduction operators' step). */
void crl_xsum_merge(crl_xsum *x, const crl_xsum *y);
void crl_xsum_wide_merge(crl_xsum_wide *x, const crl_xsum_wide *y);
/* *x -= y, exactly. */
void crl_xsum_merge_negated(crl_xsum *x, const crl_xsum *y);

/* *x += v exactly, for any double (a non-finite one is counted). */
void crl_xsum_wide_add(crl_xsum_wide *x, double v);
/* *x += y exactly. */
void crl_xsum_wide_add_narrow(crl_xsum_wide *x, const crl_xsum *y);

/* The double nearest the sum (ties to even; beyond the double range, inf;
 * NaN if a non-finite value was added). */
double crl_xsum_round(const crl_xsum *x);
double crl_xsum_wide_round(const crl_xsum_wide *x);

/* The sum as a normalized double-double: hi the nearest double, lo the
 * nearest double to the rest; a function of the exact sum alone. */
crl_dd crl_xsum_dd(const crl_xsum *x);
crl_dd crl_xsum_wide_dd(const crl_xsum_wide *x);

#endif /* CRL_XSUM_H */
