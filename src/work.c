/*
 * work.c - memory: growable arrays, overflow-checked sizes, and the work
 * memory of one evaluation, all taken before the reduction so that nothing
 * after it can fail for want of memory.
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool crl_reserve(void *ptr_to_ptr, int64_t *cap, int64_t want, size_t size)
{
    if (want <= *cap)
        return true;
    int64_t n = *cap > 0 ? *cap : 16, bytes;
    while (n < want)
        n *= 2;
    void **pp = ptr_to_ptr;
    void *p = crl_mul_size(n, (int64_t) size, &bytes) ? realloc(*pp, (size_t) bytes) : NULL;
    if (p == NULL)
        return false;
    *pp = p;
    *cap = n;
    return true;
}

bool crl_mul_size(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0)
        return false;
    return !__builtin_mul_overflow(a, b, out);
}

void crl_free_scratch(scratch *w)
{
    free(w->tile);
    free(w->tile2);
    free(w->grad_tile);
    free(w->grad_tile2);
    free(w->tile3);
    free(w->shift);
    free(w->s1);
    free(w->s2);
    free(w->row_sums);
    for (int p = 0; p < 2; p++)
        free(w->pop_data[p]);
    for (int k = 0; k < 4; k++)
        free(w->weight_grad[k]);
}

/* Rows per tile: about 64 KiB of doubles, at least what the terms ask for,
 * at most a unit (the tiles of a unit start at its first row, so their
 * boundaries are a function of the global step alone). */
int64_t crl_tile_rows(const crl_loss *loss, int64_t n)
{
    int64_t rows = 8192 / n;
    for (int k = 0; k < loss->n_terms; k++)
        if (term_active(&loss->terms[k]) && loss->terms[k].cls->tile_rows > rows)
            rows = loss->terms[k].cls->tile_rows;
    if (rows < 1)
        rows = 1;
    return rows < CRL_TIME_UNIT ? rows : CRL_TIME_UNIT;
}

/* Grows each of the k buffers to want doubles; they share one capacity. */
static bool reserve_all(double **buffers[], int k, int64_t *cap, int64_t want)
{
    for (int j = 0; j < k; j++) {
        int64_t c = *cap;
        if (!crl_reserve(buffers[j], &c, want, sizeof(double)))
            return false;
        if (j == k - 1)
            *cap = c;
    }
    return true;
}

bool crl_scratch_rows(scratch *w, int64_t rows, int64_t n)
{
    double **tiles[] = {&w->tile, &w->tile2, &w->grad_tile, &w->grad_tile2, &w->tile3};
    double **vectors[] = {&w->shift, &w->s1, &w->s2};
    /* n per-neuron values, or the output error's lanes (at most 16 or n). */
    return reserve_all(tiles, 5, &w->tile_cap, rows * n)
           && reserve_all(vectors, 3, &w->n_cap, n < 16 ? 16 : n)
           && crl_reserve(&w->row_sums, &w->row_sums_cap, 2 * rows, sizeof(double));
}

int crl_reserve_work(crl_loss *loss, crl_global *g, unsigned uses, crl_error *err)
{
    scratch *w = &loss->work;
    const crl_tensors *in = g->inputs;
    bool ok = true;
    for (int p = 0; p < 2 && ok; p++) {
        if (!(uses & CRL_USES(pop_role(p))))
            continue;
        int64_t n = g->pop[p].array->width;
        ok = crl_scratch_rows(w, crl_tile_rows(loss, n), n)
             && crl_reserve(&w->pop_data[p], &w->pop_cap[p], 4 * n, sizeof(double));
        if (ok) {
            g->pop[p].mean = w->pop_data[p];
            g->pop[p].var = w->pop_data[p] + n;
            g->pop[p].alpha = w->pop_data[p] + 2 * n;
            g->pop[p].beta = w->pop_data[p] + 3 * n;
        }
    }
    if (ok && (uses & CRL_USES(CRL_ROLE_PRED)))
        ok = crl_scratch_rows(w, crl_tile_rows(loss, in->pred.width), in->pred.width);
    for (int role = CRL_FIRST_MATRIX_ROLE; role < CRL_ROLE_COUNT && ok; role++) {
        int s = role - CRL_FIRST_MATRIX_ROLE;
        const crl_matrix *m = crl_tensors_matrix(in, role);
        if (g->grad_mask & CRL_USES(role)) {
            ok = crl_reserve(&w->weight_grad[s], &w->weight_grad_cap[s], m->rows * m->cols, sizeof(double));
            g->weights.grad[s] = w->weight_grad[s];
        }
    }
    /* Room for the reported values: each term's value (a vector of at most
     * N), and its parts. */
    int64_t n_max = 1 + (uses & CRL_USES(CRL_ROLE_STATES) ? in->states.width : 0);
    int64_t entries = (int64_t) loss->n_terms * (1 + CRL_MAX_PARTS);
    ok = ok && crl_reserve(&loss->values, &loss->cap_values, entries, sizeof *loss->values)
         && crl_reserve(&loss->value_data, &loss->value_data_cap,
                    (int64_t) loss->n_terms * (n_max + CRL_MAX_PARTS), sizeof(double));
    if (!ok)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory for the evaluation's work space");
    return CRL_OK;
}

