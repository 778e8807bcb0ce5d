/*
 * hebbian_sums.c - HebbianLoss's exact sums of Gram matrices (hebbian.c):
 * a one-unit element's sign(h_b) G_b into running doubles with their TwoSum
 * errors into the slots, a longer element's units and (blocks) the parts of
 * elements split over chunks into exact accumulators, added times sign(h_b)
 * where the sign is known.
 */
#include "../internal.h"
#include "hebbian.h"

#include <string.h>

/* add_running: run[j] += sign x[j] for j < m with each addition's exact
 * error (TwoSum) in rest[j]; whether any error is not 0.  Vectorizes; each
 * entry is widened to double where it is read. */
#define ADD_RUNNING_KERNEL(suffix, type)                                                        \
    CRL_HOT static bool add_running##suffix(double *restrict run, const type *restrict x,        \
                                            double sign, double *restrict rest, int64_t m)       \
    {                                                                                           \
        int any = 0;                                                                            \
        for (int64_t j = 0; j < m; j++) {                                                       \
            double v = sign * (double) x[j], s = run[j] + v, bb = s - run[j];                   \
            double e = (run[j] - (s - bb)) + (v - bb);                                          \
            run[j] = s;                                                                         \
            rest[j] = e;                                                                        \
            any |= e != 0;                                                                      \
        }                                                                                       \
        return any;                                                                             \
    }
ADD_RUNNING_KERNEL(_f64, double)
ADD_RUNNING_KERNEL(_f32, float)

/* sums[k] + run[k] += sign G_ij over the upper triangle, k running row by
 * row: exactly, the errors of the running sums into the slots. */
void crl_hebbian_add_signed_upper(hebbian_state *s, crl_xsum *restrict sums, double sign)
{
    int64_t n = s->n, k = 0;
    for (int64_t i = 0; i < n; k += n - i, i++)
        if (s->dtype == CRL_FLOAT64
                ? add_running_f64(s->run + k, (const double *) s->gram + i * n + i, sign,
                                  s->rest, n - i)
                : add_running_f32(s->run + k, (const float *) s->gram + i * n + i, sign,
                                  s->rest, n - i))
            for (int64_t j = 0; j < n - i; j++)
                crl_xsum_add(&sums[k + j], s->rest[j]);
}

void crl_hebbian_flush_running(hebbian_state *s, crl_xsum *slots)
{
    if (!s->want_weight_grad)
        return;
    int64_t tri = s->n * (s->n + 1) / 2;
    for (int64_t k = 0; k < tri; k++) {
        crl_xsum_add(&slots[k], s->run[k]);
        s->run[k] = 0;
    }
}

/* The upper triangle of the unit's G in s->gram into acc exactly (what it
 * cannot take into spill, begun on acc). */
int crl_hebbian_add_gram(hebbian_state *s, crl_xsum *acc, crl_spill *spill, crl_error *err)
{
    int64_t n = s->n;
    spill->base = acc;
    spill->slots = n * (n + 1) / 2;
    crl_spill *previous = crl_spill_swap(spill);
    for (int64_t i = 0, k = 0; i < n; i++)
        for (int64_t j = i; j < n; j++, k++)
            crl_xsum_add(&acc[k], s->dtype == CRL_FLOAT64 ? ((const double *) s->gram)[i * n + j]
                                                          : ((const float *) s->gram)[i * n + j]);
    crl_spill_swap(previous);
    return spill->failed ? crl_fail(err, CRL_ERR_NOMEM, "out of memory for the Gram sums")
                         : CRL_OK;
}

/* slots += sign acc exactly (acc's spilled values through the current list). */
void crl_hebbian_add_signed_sums(crl_xsum *slots, const crl_xsum *acc, const crl_spill *spill,
                            int64_t count, double sign)
{
    for (int64_t k = 0; k < count; k++)
        if (sign > 0)
            crl_xsum_merge(&slots[k], &acc[k]);
        else
            crl_xsum_merge_negated(&slots[k], &acc[k]);
    for (int64_t k = 0; k < spill->count; k++)
        crl_xsum_add(&slots[spill->items[k].slot], sign * spill->items[k].value);
}

/* Zeroed exact sums of N (N + 1) / 2 entries at *acc (grown as needed). */
bool crl_hebbian_zeroed_sums(crl_xsum **acc, int64_t *cap, crl_spill *spill, int64_t tri)
{
    if (!crl_reserve(acc, cap, tri * (int64_t) sizeof(crl_xsum), 1))
        return false;
    if (tri > 0)
        memset(*acc, 0, sizeof(crl_xsum) * (size_t) tri);
    spill->count = 0;
    spill->failed = false;
    return true;
}

/* The part of global element batch this rank's chunks hold (blocks): found,
 * or added with zeroed sums; NULL when out of memory. */
hebbian_part *crl_hebbian_part_for(hebbian_state *s, int64_t batch)
{
    for (int64_t k = s->n_parts - 1; k >= 0; k--)
        if (s->parts[k].batch == batch)
            return &s->parts[k];
    int64_t cap = s->parts_cap, tri = s->n * (s->n + 1) / 2;
    if (!crl_reserve(&s->parts, &s->parts_cap, s->n_parts + 1, sizeof *s->parts))
        return NULL;
    for (int64_t k = cap; k < s->parts_cap; k++)
        s->parts[k] = (hebbian_part){0};
    hebbian_part *part = &s->parts[s->n_parts];
    if (!crl_hebbian_zeroed_sums(&part->gram, &part->gram_cap, &part->spill, s->want_weight_grad ? tri : 0))
        return NULL;
    part->batch = batch;
    s->n_parts++;
    return part;
}
