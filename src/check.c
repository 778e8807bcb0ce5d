/*
 * check.c - the boundary of a cycle: the local checks of the inputs the
 * active terms read and of the gradient requests (before any work, PETSc
 * style), the agreement list and the payload layout.  Errors go to the
 * cycle's error record; the rank still takes part in the reduction.
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Checksum of a matrix's bits, its squared Frobenius norm, and the first
 * non-finite element (replicated weights must be identical on all ranks). */
static int scan_weight(const crl_matrix *m, int role, uint64_t *checksum, double *sumsq,
                       crl_error *err)
{
    uint64_t h1 = 0, h2 = 0;
    double s = 0;
    for (int64_t r = 0; r < m->rows; r++) {
        if (m->dtype == CRL_FLOAT32) {
            const float *row = (const float *) m->data + r * m->row_stride;
            for (int64_t c = 0; c < m->cols; c++) {
                uint32_t bits;
                memcpy(&bits, &row[c], sizeof bits);
                h1 += bits;
                h2 += h1;
                s += (double) row[c] * (double) row[c];
            }
        } else {
            const double *row = (const double *) m->data + r * m->row_stride;
            for (int64_t c = 0; c < m->cols; c++) {
                uint64_t bits;
                memcpy(&bits, &row[c], sizeof bits);
                h1 += bits;
                h2 += h1;
                s += row[c] * row[c];
            }
        }
    }
    if (!isfinite(s)) {
        for (int64_t r = 0; r < m->rows; r++)
            for (int64_t c = 0; c < m->cols; c++) {
                double v = crl_matrix_get(m, r, c);
                if (!isfinite(v))
                    return crl_fail_at(err, CRL_ERR_NONFINITE, role, -1, r, c,
                                       "%s[%lld, %lld] is %s", crl_role_name(role), (long long) r,
                                       (long long) c,
                                    isnan(v) ? "NaN" : "infinite");
            }
        return crl_fail_at(err, CRL_ERR_DOMAIN, role, -1, -1, -1,
                           "%s: the sum of squares overflows", crl_role_name(role));
    }
    *checksum = crl_mix64(h1) ^ h2;
    *sumsq = s;
    return CRL_OK;
}

/* The used roles whose gradient the backward can write, given the requests
 * announced at accumulate: every active term reading a role must be able to
 * differentiate it (a term's grads hook; without one, all it reads). */
static unsigned differentiable(const crl_loss *loss, unsigned uses, unsigned announced)
{
    unsigned mask = uses & ~CRL_USES(CRL_ROLE_MASK); /* weights, not an input to fit */
    for (int k = 0; k < loss->n_terms; k++) {
        const crl_term *t = &loss->terms[k];
        if (term_active(t) && t->cls->grads)
            mask &= ~(t->cls->uses(t) & ~t->cls->grads(t, announced));
    }
    return mask;
}

/* The block the caller set for population p's inputs (0: states, pred,
 * label, mask; 1: states1, which follows 0 unless set apart). */
static const crl_place *place_set(const crl_loss *loss, int p)
{
    return p == 1 && loss->place1.blocked ? &loss->place1 : &loss->place;
}

/*
 * Where a chunk lies, for each population: the block the caller set
 * (crl_loss_set_block), checked against the plane and the units, or whole
 * elements of T = the arrays' time.  The batched inputs of one population
 * in one chunk hold the same steps.
 */
int crl_place_chunk(const crl_loss *loss, const crl_tensors *in, unsigned uses, crl_place out[2],
                    crl_error *err)
{
    for (int p = 0; p < 2; p++) {
        const crl_array *first = NULL;
        int first_role = -1;
        const crl_place *set = place_set(loss, p);
        for (int role = 0; role < CRL_FIRST_MATRIX_ROLE; role++) {
            const crl_array *a = crl_tensors_array(in, role);
            if (!(uses & CRL_USES(role)) || role == CRL_ROLE_MASK
                || (role == CRL_ROLE_STATES1) != (p == 1))
                continue;
            if (first == NULL) {
                first = a;
                first_role = role;
            } else if (set->blocked && a->batch > 0 && first->batch > 0
                       && a->time != first->time) {
                return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                                   "%s: %lld time steps in a block where %s has %lld (the "
                                   "batched inputs of a block hold the same steps)",
                                   crl_role_name(role), (long long) a->time,
                                   crl_role_name(first_role), (long long) first->time);
            }
            if (set->blocked && a->batch > 0 && set->batch_offset + a->batch > set->batch)
                return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                                   "%s: block elements %lld .. %lld lie beyond the batch of %lld",
                                   crl_role_name(role), (long long) set->batch_offset,
                                   (long long) (set->batch_offset + a->batch - 1),
                                   (long long) set->batch);
        }
        if (!set->blocked) {
            out[p] = (crl_place){0, -1, first ? first->time : 1, 0, false};
            continue;
        }
        out[p] = *set;
        if (first == NULL || first->batch == 0)
            continue;
        int64_t t0 = set->time_offset, t1;
        if (__builtin_add_overflow(t0, first->time, &t1) || t1 > set->time)
            return crl_fail_at(err, CRL_ERR_INVALID, first_role, -1, -1, -1,
                               "%s: block steps %lld .. %lld lie beyond T = %lld",
                               crl_role_name(first_role), (long long) t0,
                               (long long) (t0 + first->time - 1), (long long) set->time);
        if (t0 % CRL_TIME_UNIT != 0 || (t1 != set->time && t1 % CRL_TIME_UNIT != 0))
            return crl_fail_at(err, CRL_ERR_INVALID, first_role, -1, -1, -1,
                               "%s: block steps %lld .. %lld: a block starts at a multiple of "
                               "%d steps and ends at one or at T = %lld",
                               crl_role_name(first_role), (long long) t0, (long long) (t1 - 1),
                               CRL_TIME_UNIT, (long long) set->time);
    }
    return CRL_OK;
}

/*
 * Local checks of the inputs the active terms use and of the gradient
 * requests; fills g's local fields, the terms' slot counts, the agreement
 * list and the layout.  Errors go to err (the caller still takes part in the
 * reduction).
 */
int crl_prepare(crl_loss *loss, const crl_tensors *in, const crl_tensors *grads,
                   crl_global *g, unsigned *uses_out, int64_t *layout, crl_error *err)
{
    loss->n_agree = 0;
    unsigned uses = 0;
    for (int k = 0; k < loss->n_terms; k++)
        if (term_active(&loss->terms[k]))
            uses |= loss->terms[k].cls->uses(&loss->terms[k]);
    /* The mask is optional: read when given and some term weighs its
     * output error with it. */
    for (int k = 0; k < loss->n_terms && crl_array_present(&in->mask); k++)
        if (term_active(&loss->terms[k]) && loss->terms[k].cls->takes_mask
            && (loss->terms[k].cls->uses(&loss->terms[k]) & CRL_USES(CRL_ROLE_PRED)))
            uses |= CRL_USES(CRL_ROLE_MASK);
    *uses_out = uses;
    g->inputs = in;
    g->pop[0].array = &in->states;
    g->pop[1].array = &in->states1;

    bool ok = crl_agree_add(loss, loss->n_terms, "number of terms", -1, -1, false)
              && crl_agree_add(loss, uses, "inputs used", -1, -1, false)
              /* Blocks or whole elements on every rank, first: the items
               * below are the same list either way. */
              && crl_agree_add(loss, loss->place.blocked, "blocks (crl_loss_set_block)", -1, -1,
                               false);
    /* With blocks, one plane per population (the batch here; T below). */
    for (int p = 0; p < 2 && ok && loss->place.blocked; p++)
        ok = crl_agree_add(loss, place_set(loss, p)->batch, "batch of the blocks", -1,
                           pop_role(p), false);
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        bool used = uses & CRL_USES(role);
        if (role < CRL_FIRST_MATRIX_ROLE) {
            const crl_array *a = crl_tensors_array(in, role);
            const crl_array *d = crl_tensors_array(grads, role);
            bool want = crl_array_present(d); /* an empty shard asks with its shape */
            if (used) {
                if (!crl_array_present(a))
                    crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                                "%s: required input is missing", crl_role_name(role));
                else if (crl_array_check(a, crl_role_name(role), err) == CRL_OK && want)
                    crl_array_check_grad(d, a, crl_role_name(role), err);
                blame_role(err, role);
                /* T: the arrays' time, or with blocks the plane's. */
                int64_t time = loss->place.blocked
                                   ? place_set(loss, role == CRL_ROLE_STATES1)->time
                                   : a->time;
                ok = ok && crl_agree_add(loss, a->dtype, "dtype", -1, role, false)
                     && crl_agree_add(loss, time, "time steps", -1, role, false)
                     && crl_agree_add(loss, a->width, "width", -1, role, false);
            }
            if (used && want)
                g->grad_announced |= CRL_USES(role);
        } else {
            const crl_matrix *m = crl_tensors_matrix(in, role);
            const crl_matrix *d = crl_tensors_matrix(grads, role);
            bool want = d->data != NULL;
            uint64_t checksum = 0;
            int slot = role - CRL_FIRST_MATRIX_ROLE;
            if (used && crl_matrix_check(m, crl_role_name(role), err) == CRL_OK) {
                if (want)
                    crl_matrix_check_grad(d, m, crl_role_name(role), err);
                double norm = 0;
                if (err->code == CRL_OK)
                    scan_weight(m, role, &checksum, &norm, err);
                if (crl_pass_needed(loss, role, CRL_PASS_WEIGHT_NORMS))
                    g->weights.sumsq[slot] = norm;
            }
            if (used)
                blame_role(err, role);
            if (used)
                ok = ok && crl_agree_add(loss, m->dtype, "dtype", -1, role, false)
                     && crl_agree_add(loss, m->rows, "rows", -1, role, false)
                     && crl_agree_add(loss, m->cols, "columns", -1, role, false)
                     && crl_agree_add(loss, (int64_t) checksum, "values (replicated weights)", -1, role,
                                  false);
            if (used && want)
                g->grad_announced |= CRL_USES(role);
        }
    }
    if (err->code == CRL_OK)
        crl_place_chunk(loss, in, uses, g->place, err);
    g->time[0] = g->place[0].time;
    g->time[1] = g->place[1].time;
    g->grad_mask = differentiable(loss, uses, g->grad_announced);
    /* Weight gradients are global sums for some terms (hebbian): their
     * requests shape the packed buffer, so all ranks must make the same. */
    unsigned weight_grads = g->grad_announced & ~((1u << CRL_FIRST_MATRIX_ROLE) - 1);
    ok = ok && crl_agree_add(loss, weight_grads, "weight gradient requests", -1, -1, false);
    if ((uses & CRL_USES(CRL_ROLE_PRED)) && (uses & CRL_USES(CRL_ROLE_LABEL))
        && err->code == CRL_OK
        && (in->pred.batch != in->label.batch || in->pred.time != in->label.time
            || in->pred.width != in->label.width))
        crl_fail(err, CRL_ERR_INVALID, "pred (%lld, %lld, %lld) and label (%lld, %lld, %lld) differ",
                 (long long) in->pred.batch, (long long) in->pred.time, (long long) in->pred.width,
                 (long long) in->label.batch, (long long) in->label.time,
                 (long long) in->label.width);
    if ((uses & CRL_USES(CRL_ROLE_MASK)) && err->code == CRL_OK
        && (in->mask.batch != in->pred.batch || in->mask.time != in->pred.time
            || (in->mask.width != in->pred.width && in->mask.width != 1)))
        crl_fail_at(err, CRL_ERR_INVALID, CRL_ROLE_MASK, -1, -1, -1,
                    "mask (%lld, %lld, %lld) must be pred's shape (%lld, %lld, %lld) or have "
                    "width 1",
                    (long long) in->mask.batch, (long long) in->mask.time,
                    (long long) in->mask.width, (long long) in->pred.batch,
                    (long long) in->pred.time, (long long) in->pred.width);

    /* Layout: regions, then each term's slots (terms size them from shapes). */
    int64_t at = 3;
    layout[REGION_COUNTS] = 0;
    for (int p = 0; p < 2; p++) {
        layout[REGION_POP0 + p] = at;
        if ((uses & CRL_USES(pop_role(p))) && crl_pass_needed(loss, pop_role(p), CRL_PASS_MOMENTS))
            at += 2 * (err->code == CRL_OK ? g->pop[p].array->width : 0);
    }
    layout[REGION_SQERR] = at;
    at += 1;
    for (int k = 0; k < loss->n_terms; k++) {
        crl_term *t = &loss->terms[k];
        t->slot = at;
        t->slot_count = 0;
        ok = ok && crl_agree_add(loss, (int64_t) crl_hash_text(t->cls->type), "type", k, -1, false)
             && crl_agree_add(loss, (int64_t) crl_hash_text(t->name), "name", k, -1, false)
             && crl_agree_add(loss, crl_real_bits(t->weight), "weight", k, -1, true);
        for (int j = 0; t->cls->params[j].key != NULL && ok; j++)
            ok = crl_agree_add(loss, crl_real_bits(t->param[j]), t->cls->params[j].key, k, -1, true);
        if (term_active(t) && err->code == CRL_OK && t->cls->prepare) {
            if (t->cls->prepare(t, g, &t->slot_count, err) != CRL_OK)
                crl_term_error(loss, t, err);
        }
        layout[REGION_TERMS + k] = at;
        at += t->slot_count;
    }
    layout[REGION_TERMS + loss->n_terms] = at;
    if (!ok)
        crl_fail(err, CRL_ERR_NOMEM, "out of memory preparing the evaluation");
    return err->code;
}

/* A later chunk must have the first chunk's shapes, types, weights and
 * gradient requests; only batch sizes may differ. */
int crl_check_chunk(const crl_loss *loss, const crl_tensors *in, const crl_tensors *grads,
                       unsigned want_mask, crl_error *err)
{
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        if (!(loss->uses & CRL_USES(role)))
            continue;
        const char *what = crl_role_name(role);
        if (role < CRL_FIRST_MATRIX_ROLE) {
            const crl_array *a = crl_tensors_array(in, role), *f = crl_tensors_array(&loss->first, role);
            const crl_array *d = crl_tensors_array(grads, role);
            bool want = want_mask & CRL_USES(role);
            if (a->dtype != f->dtype || (a->time != f->time && !loss->cycle_blocked)
                || a->width != f->width)
                return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                                "%s: chunk has dtype %d, time %lld, width %lld; the first chunk "
                                "had %d, %lld, %lld",
                                what, (int) a->dtype, (long long) a->time, (long long) a->width,
                                (int) f->dtype, (long long) f->time, (long long) f->width);
            if (crl_array_check(a, what, err) != CRL_OK) {
                blame_role(err, role);
                return err->code;
            }
            if (loss->place.blocked != loss->cycle_blocked)
                return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                                   "%s: a chunk %s a block where the first chunk %s", what,
                                   loss->place.blocked ? "is" : "is not",
                                   loss->cycle_blocked ? "was" : "was not");
            int p = role == CRL_ROLE_STATES1;
            const crl_place *set = place_set(loss, p), *was = &loss->g.place[p];
            if (loss->cycle_blocked && (set->batch != was->batch || set->time != was->time))
                return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                                   "%s: a block of a batch of %lld and %lld steps where the "
                                   "first chunk's had %lld and %lld",
                                   what, (long long) set->batch, (long long) set->time,
                                   (long long) was->batch, (long long) was->time);
            if (want != crl_array_present(d))
                return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                                "gradient of %s: requested in some chunks but not others", what);
            if (want && crl_array_check_grad(d, a, what, err) != CRL_OK) {
                blame_role(err, role);
                return err->code;
            }
        } else {
            const crl_matrix *m = crl_tensors_matrix(in, role), *f = crl_tensors_matrix(&loss->first, role);
            /* Field by field: memcmp would compare the padding after dtype. */
            if (m->dtype != f->dtype || m->data != f->data || m->rows != f->rows
                || m->cols != f->cols || m->row_stride != f->row_stride)
                return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                                   "%s: changed between chunks", what);
        }
    }
    return CRL_OK;
}

/* The gradient requests of a backward call: the used roles with a buffer. */
unsigned crl_requested(const crl_loss *loss, const crl_tensors *grads)
{
    unsigned mask = 0;
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        bool given = role < CRL_FIRST_MATRIX_ROLE ? crl_array_present(crl_tensors_array(grads, role))
                                                  : crl_tensors_matrix(grads, role)->data != NULL;
        if (given && (loss->uses & CRL_USES(role)))
            mask |= CRL_USES(role);
    }
    return mask;
}

/* The first backward call of a cycle: its requests must be gradients the
 * finalize prepared, and its weight-gradient buffers must fit. */
int crl_check_requests(const crl_loss *loss, const crl_tensors *grads, unsigned want,
                          crl_error *err)
{
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        if (!(want & CRL_USES(role)))
            continue;
        if (!(loss->g.grad_mask & CRL_USES(role)))
            return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                               (loss->g.grad_announced & CRL_USES(role)) == 0
                                   ? "gradient of %s: not available unless requested at "
                                     "crl_loss_accumulate (it is a sum over all ranks), or no "
                                     "gradient exists"
                                   : "gradient of %s: not available",
                               crl_role_name(role));
        if (role >= CRL_FIRST_MATRIX_ROLE
            && crl_matrix_check_grad(crl_tensors_matrix(grads, role),
                                     crl_tensors_matrix(&loss->first, role), crl_role_name(role),
                                     err) != CRL_OK) {
            blame_role(err, role);
            return err->code;
        }
    }
    return CRL_OK;
}

/* Overwrite mode: the checks of the given buffers of inputs no active term
 * reads (their gradient is zero); with zero set, writes the zeros. */
int crl_unused_buffers(const crl_loss *loss, const crl_tensors *inputs,
                          const crl_tensors *grads, bool weights, bool zero, crl_error *err)
{
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        if (loss->uses & CRL_USES(role))
            continue;
        const char *what = crl_role_name(role);
        if (role < CRL_FIRST_MATRIX_ROLE) {
            const crl_array *d = crl_tensors_array(grads, role), *a = crl_tensors_array(inputs, role);
            if (!crl_array_present(d))
                continue;
            if (!zero && (crl_array_present(a) ? crl_array_check_grad(d, a, what, err)
                                               : crl_array_check(d, what, err)) != CRL_OK) {
                blame_role(err, role);
                return err->code;
            }
            if (zero)
                crl_array_zero(d);
        } else if (weights) {
            const crl_matrix *d = crl_tensors_matrix(grads, role), *m = crl_tensors_matrix(inputs, role);
            if (d->data == NULL)
                continue;
            if (!zero && (m->data ? crl_matrix_check_grad(d, m, what, err)
                                  : crl_matrix_check(d, what, err)) != CRL_OK) {
                blame_role(err, role);
                return err->code;
            }
            if (zero)
                crl_matrix_zero(d);
        }
    }
    return CRL_OK;
}

