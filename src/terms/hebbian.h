/*
 * hebbian.h - what hebbian.c (the term: BLAS products, forward, finalize,
 * backward) and hebbian_sums.c (its exact sums of Gram matrices) share.
 */
#ifndef CRL_TERMS_HEBBIAN_H
#define CRL_TERMS_HEBBIAN_H

#include "../internal.h"

/* An element some chunk of this rank holds only part of (blocks): the exact
 * sum of the G of its units here, added times sign(h_b) by add_more. */
typedef struct hebbian_part {
    int64_t batch;            /* global element                               */
    crl_xsum *gram;           /* N (N + 1) / 2                                */
    int64_t gram_cap;         /* bytes                                        */
    crl_spill spill;          /* what gram could not take                     */
} hebbian_part;

typedef struct hebbian_state {
    crl_dtype dtype;          /* the states' element type                     */
    int64_t n;
    bool want_weight_grad;
    double *coef;             /* n x n, upper triangle: W_ii, W_ij + W_ji     */
    void *gram;               /* n x n in dtype, upper triangle of G_b: syrk's
                                 output, read as it is (widened per entry)    */
    double *column;           /* n: column sums of the weighted G_b           */
    void *wsym;               /* n x n in dtype: W + W^T (backward)           */
    void *product;            /* GEMM_ROWS x n in dtype: rows (W + W^T)       */
    const void *block;        /* the first row of the block product holds     */
    int64_t block_element, block_t0, block_rows;  /* which rows those are     */
    int64_t coef_cap, gram_cap, column_cap, wsym_cap, product_cap;  /* bytes */
    signed char *sign;        /* sign(h_b) by the element's running index     */
    int64_t *part_of;         /* by running index: the global element of a part
                                 (blocks), else -1                            */
    int64_t sign_cap, part_of_cap, n_signs;
    crl_xsum_wide h_acc;      /* h_b T of the current element so far          */
    crl_xsum *units;          /* N (N + 1) / 2: sum of the current element's
                                 units' G (more than one unit)                */
    crl_spill units_spill;    /* what units could not take                    */
    int64_t units_cap;        /* bytes                                        */
    hebbian_part *parts;      /* elements held in part (blocks)               */
    int64_t n_parts, parts_cap;
    int64_t h_slot, weight_slot;  /* first slot of h_b T (blocks), of dL/dW   */
    bool blocked;
    int64_t batch;            /* blocks: the global B                         */
    double *run;              /* N (N + 1) / 2: running sums of the chunk     */
    double *rest;             /* n: one row's TwoSum errors                   */
    int64_t run_cap, rest_cap;  /* bytes */
    double scale;             /* backward: weight / (B T), set by finalize    */
} hebbian_state;

/* sums[k] + run[k] += sign G_ij over the upper triangle of s->gram, k
 * running row by row: exactly, the errors of the running sums into sums. */
void crl_hebbian_add_signed_upper(hebbian_state *s, crl_xsum *sums, double sign);
/* The chunk's running sums into sums (and back to 0). */
void crl_hebbian_flush_running(hebbian_state *s, crl_xsum *sums);
/* The upper triangle of the unit's G in s->gram into acc exactly (what it
 * cannot take into spill, begun on acc). */
int crl_hebbian_add_gram(hebbian_state *s, crl_xsum *acc, crl_spill *spill, crl_error *err);
/* slots += sign acc exactly (acc's spilled values through the current list). */
void crl_hebbian_add_signed_sums(crl_xsum *slots, const crl_xsum *acc, const crl_spill *spill,
                                 int64_t count, double sign);
/* Zeroed exact sums of tri entries at *acc (grown as needed). */
bool crl_hebbian_zeroed_sums(crl_xsum **acc, int64_t *cap, crl_spill *spill, int64_t tri);
/* The part of global element batch this rank's chunks hold (blocks): found,
 * or added with zeroed sums; NULL when out of memory. */
hebbian_part *crl_hebbian_part_for(hebbian_state *s, int64_t batch);

#endif /* CRL_TERMS_HEBBIAN_H */
