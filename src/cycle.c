/*
 * cycle.c - one evaluation (docs/losses.md "How a global loss is computed"):
 *
 *   crl_loss_accumulate  (per chunk)  checks, layout, the passes over the
 *                                     local rows into the packed buffer
 *   crl_loss_reduce                   one MPI_Allreduce of header + sums
 *                                     (reduce.c), then finalize (here: the
 *                                     same on every rank)
 *   crl_loss_backward    (per chunk)  the gradients of the local rows
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The batch elements and rows of a chunk the cycle reads: states, states1,
 * pred. */
static void chunk_counts(const crl_loss *loss, const crl_tensors *in, int64_t batch[3],
                         int64_t rows[3])
{
    const crl_array *arrays[3] = {&in->states, &in->states1, &in->pred};
    const int roles[3] = {CRL_ROLE_STATES, CRL_ROLE_STATES1, CRL_ROLE_PRED};
    for (int k = 0; k < 3; k++) {
        bool used = loss->uses & CRL_USES(roles[k]);
        batch[k] = used ? arrays[k]->batch : 0;
        rows[k] = used ? arrays[k]->batch * arrays[k]->time : 0;
    }
}

/* The global batch of role from the rows all ranks accumulated: rows / T;
 * with blocks, they must cover the plane's B T rows. */
static int global_batch(const crl_loss *loss, const crl_dd *count, int role, double *batch,
                        crl_error *err)
{
    const crl_global *g = &loss->g;
    int p = role == CRL_ROLE_STATES1;
    const crl_place *place = &g->place[p];
    double rows = crl_dd_round(*count), whole = (double) place->batch * (double) g->time[p];
    *batch = rows / (double) g->time[p];
    if (place->blocked && rows != whole && rows > 0)
        return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                           "%s: the blocks of all ranks hold %.0f rows; the plane of B = %lld "
                           "and T = %lld has %.0f",
                           crl_role_name(role), rows, (long long) place->batch,
                           (long long) g->time[p], whole);
    return CRL_OK;
}

/* Accumulates one chunk into payload (laid out by next_layout). */
static int forward(crl_loss *loss, const crl_tensors *in, crl_xsum *payload, crl_error *err)
{
    crl_global *g = &loss->g;
    unsigned uses = loss->uses;
    int64_t batch[3], rows[3];
    chunk_counts(loss, in, batch, rows);
    g->inputs = in;
    g->pop[0].array = &in->states;
    g->pop[1].array = &in->states1;
    for (int p = 0; p < 2 && err->code == CRL_OK; p++)
        if (uses & CRL_USES(pop_role(p)))
            crl_states_forward(loss, g, p, payload, err);
    if (err->code == CRL_OK && (uses & CRL_USES(CRL_ROLE_PRED)))
        crl_outputs_forward(loss, in, payload, err);
    for (int k = 0; k < 3; k++) {
        crl_xsum_add(&payload[REGION_COUNTS + k], (double) rows[k]);
        loss->seen[k] += batch[k];
        loss->seen_rows[k] += rows[k];
    }
    return err->code;
}

int crl_finalize_cycle(crl_loss *loss, crl_global *g, unsigned uses, const crl_dd *payload,
                       crl_term_out *outs, crl_error *err)
{
    for (int p = 0; p < 2; p++) {
        const crl_dd *sum = payload + loss->layout[REGION_POP0 + p];
        double batch;
        if ((uses & CRL_USES(pop_role(p)))
            && (global_batch(loss, &payload[REGION_COUNTS + p], pop_role(p), &batch, err) != CRL_OK
                || crl_finalize_population(&g->pop[p], sum, sum + g->pop[p].array->width, batch,
                                           g->time[p], pop_role(p),
                                           crl_pass_needed(loss, pop_role(p), CRL_PASS_MOMENTS),
                                           crl_pass_needed(loss, pop_role(p), CRL_PASS_SQUARES),
                                           err) != CRL_OK))
            return err->code;
    }
    if (uses & CRL_USES(CRL_ROLE_PRED)) {
        const crl_array *x = &g->inputs->pred;
        double batch;
        if (global_batch(loss, &payload[REGION_COUNTS + 2], CRL_ROLE_PRED, &batch, err) != CRL_OK)
            return err->code;
        g->out.batch = (int64_t) batch;
        g->out.time = g->time[0];
        g->out.width = x->width;
        g->out.count = (double) g->out.batch * (double) g->time[0] * (double) x->width;
        g->out.sqerr = crl_dd_round(payload[loss->layout[REGION_SQERR]]);
        g->out.coef = 0;
        if (g->out.batch == 0)
            return crl_fail_at(err, CRL_ERR_INVALID, CRL_ROLE_PRED, -1, -1, -1,
                               "pred: no rank holds a batch element");
    }
    for (int s = 0; s < 4; s++)
        if (g->weights.grad[s]) {
            const crl_matrix *m = crl_tensors_matrix(g->inputs, CRL_FIRST_MATRIX_ROLE + s);
            memset(g->weights.grad[s], 0, sizeof(double) * (size_t) (m->rows * m->cols));
        }
    for (int k = 0; k < loss->n_terms; k++) {
        crl_term *t = &loss->terms[k];
        outs[k] = (crl_term_out){0};
        if (term_active(t) && t->cls->finalize(t, g, payload + t->slot, &outs[k], err) != CRL_OK)
            return crl_term_error(loss, t, err);
        /* Finite inputs whose loss is not a finite double (rates near the
         * top of the range, squared): an error, not an infinite total. */
        if (term_active(t) && !isfinite(outs[k].value)) {
            crl_fail(err, CRL_ERR_DOMAIN, "the value overflows (%g)", outs[k].value);
            return crl_term_error(loss, t, err);
        }
    }
    return CRL_OK;
}

static bool same_layout(const crl_loss *loss, const int64_t *layout, int len)
{
    return loss->layout_len == len
           && memcmp(loss->layout, layout, sizeof *layout * (size_t) len) == 0;
}

/* The first chunk of a cycle: checks, agreement list, layout, work memory,
 * and where this rank accumulates. */
static void begin_cycle(crl_loss *loss, const crl_tensors *in, const crl_tensors *grads)
{
    static const crl_tensors none;
    crl_error *err = &loss->err;
    *err = (crl_error){0};
    loss->g = (crl_global){0};
    loss->uses = 0;
    loss->n_agree = 0;
    loss->target = NULL;
    loss->relayout = false;
    memset(loss->seen, 0, sizeof loss->seen);
    memset(loss->done, 0, sizeof loss->done);
    memset(loss->seen_rows, 0, sizeof loss->seen_rows);
    memset(loss->done_rows, 0, sizeof loss->done_rows);
    loss->cycle_blocked = loss->place.blocked;
    loss->first = in ? *in : none;
    loss->first_grads = grads ? *grads : none;
    loss->phase = PHASE_ACCUMULATING;
    loss->spill.count = 0;
    loss->spill.failed = false;
    if (in == NULL) {
        crl_fail(err, CRL_ERR_INVALID, "inputs is NULL");
        return;
    }
    if (loss->n_terms == 0) {
        crl_fail(err, CRL_ERR_INVALID, "the loss has no terms");
        return;
    }
    int64_t *layout = loss->next_layout;
    int len = REGION_TERMS + loss->n_terms + 1;
    if (crl_prepare(loss, in, grads ? grads : &none, &loss->g, &loss->uses, layout, err) != CRL_OK
        || crl_reserve_work(loss, &loss->g, loss->uses, err) != CRL_OK)
        return;
    loss->relayout = !same_layout(loss, layout, len);
    int64_t count = HEADER_SLOTS + layout[len - 1];
    loss->target_slots = count;
    /* Blocks: room for a second reduction of the slots of the terms that
     * may take part in one (from first to last). */
    loss->more_first = loss->more_slots = 0;
    for (int k = 0, first = -1; k < loss->n_terms && loss->cycle_blocked; k++) {
        const crl_term *t = &loss->terms[k];
        if (!term_active(t) || t->cls->add_more == NULL)
            continue;
        if (first < 0)
            loss->more_first = layout[REGION_TERMS + k];
        first = k;
        loss->more_slots = layout[REGION_TERMS + k + 1] - loss->more_first;
    }
    if (loss->more_slots > 0
        && !crl_reserve(&loss->more, &loss->more_cap, HEADER_SLOTS + loss->more_slots,
                        sizeof(crl_xsum))) {
        crl_fail(err, CRL_ERR_NOMEM, "out of memory for the second reduction's sums");
        return;
    }
    if (loss->relayout) {
        if (!crl_reserve(&loss->pending, &loss->pending_cap, count, sizeof(crl_xsum))) {
            crl_fail(err, CRL_ERR_NOMEM, "out of memory for the packed sums");
            return;
        }
        loss->target = loss->pending;
    } else {
        loss->target = loss->buffer;
    }
    memset(loss->target, 0, sizeof(crl_xsum) * (size_t) count);
}

int crl_loss_accumulate(crl_loss *loss, const crl_tensors *inputs, const crl_tensors *grads)
{
    static const crl_tensors none;
    if (loss == NULL)
        return CRL_ERR_INVALID;
    if (loss->phase != PHASE_ACCUMULATING) {
        begin_cycle(loss, inputs, grads);
        loss->digest = crl_agree_digest(loss);
    } else if (loss->err.code == CRL_OK) {
        if (inputs == NULL)
            crl_fail(&loss->err, CRL_ERR_INVALID, "inputs is NULL");
        else if (crl_check_chunk(loss, inputs, grads ? grads : &none, loss->g.grad_announced,
                                 &loss->err) == CRL_OK)
            crl_place_chunk(loss, inputs, loss->uses, loss->g.place, &loss->err);
    }
    if (loss->err.code == CRL_OK) {
        crl_spill_begin(&loss->spill, loss->target, loss->target_slots);
        forward(loss, inputs, loss->target + HEADER_SLOTS, &loss->err);
        crl_spill_end();
    }
    if (loss->err.code != CRL_OK)
        loss->target = NULL;
    return loss->err.code;
}

int crl_loss_refuse(crl_loss *loss, int code, const char *message)
{
    if (loss == NULL)
        return CRL_ERR_INVALID;
    if (code == CRL_OK)
        code = CRL_ERR_INVALID;
    if (loss->phase != PHASE_ACCUMULATING) {
        begin_cycle(loss, NULL, NULL);   /* a cycle without inputs */
        loss->digest = crl_agree_digest(loss);
    }
    loss->err = (crl_error){0};
    crl_fail(&loss->err, code, "%s", message ? message : crl_strerror(code));
    loss->target = NULL;
    return code;
}

/* Per-term gradient scales (crl_loss_set_term_grad_scale): during a
 * backward call each weight is multiplied by its term's scale (on) and put
 * back after (off).  Whether any scale is not 1. */
static bool scale_weights(crl_loss *loss, bool on)
{
    bool any = false;
    for (int k = 0; k < loss->n_terms; k++) {
        crl_term *t = &loss->terms[k];
        if (t->grad_factor == 1.0)
            continue;
        any = true;
        if (on) {
            t->saved_weight = t->weight;
            t->weight *= t->grad_factor;
        } else {
            t->weight = t->saved_weight;
        }
    }
    return any;
}

int crl_loss_backward(crl_loss *loss, const crl_tensors *inputs, const crl_tensors *grads)
{
    static const crl_tensors none;
    if (loss == NULL)
        return CRL_ERR_INVALID;
    crl_error err = {0};
    crl_global *g = &loss->g;
    int64_t batch[3] = {0}, rows[3] = {0};
    crl_place place[2] = {g->place[0], g->place[1]};
    unsigned want = 0;
    bool overwrite = loss->grad_mode == CRL_GRAD_OVERWRITE;
    if (grads == NULL)
        grads = &none;
    if (loss->phase != PHASE_REDUCED)
        crl_fail(&err, CRL_ERR_INVALID, "crl_loss_backward needs a successful crl_loss_reduce");
    else if (inputs == NULL)
        crl_fail(&err, CRL_ERR_INVALID, "inputs is NULL");
    else {
        want = loss->backward_started ? loss->backward_mask : crl_requested(loss, grads);
        if ((loss->backward_started || crl_check_requests(loss, grads, want, &err) == CRL_OK)
            && crl_check_chunk(loss, inputs, grads, want, &err) == CRL_OK
            && crl_place_chunk(loss, inputs, loss->uses, place, &err) == CRL_OK
            && (!overwrite
                || crl_unused_buffers(loss, inputs, grads, !loss->weights_written, false, &err)
                       == CRL_OK)) {
            chunk_counts(loss, inputs, batch, rows);
            for (int k = 0; k < 3; k++)
                if (loss->done_rows[k] + rows[k] > loss->seen_rows[k])
                    crl_fail(&err, CRL_ERR_INVALID,
                             "backward chunks hold more rows (%lld) than were accumulated "
                             "(%lld)",
                             (long long) (loss->done_rows[k] + rows[k]),
                             (long long) loss->seen_rows[k]);
        }
    }
    if (err.code != CRL_OK) {
        err.rank = loss->ctx->rank;
        return crl_context_set_error(loss->ctx, &err);
    }
    bool first = !loss->backward_started;
    loss->backward_started = true;
    loss->backward_mask = want;
    if (overwrite)
        crl_unused_buffers(loss, inputs, grads, !loss->weights_written, true, &err);
    bool scaled = scale_weights(loss, true);
    if (scaled && first) {
        /* The backward coefficients again, from the same global sums, with
         * the scaled weights: the same on every rank, and finalize cannot
         * fail now where it did not at the reduction. */
        g->inputs = &loss->first;
        g->pop[0].array = &loss->first.states;
        g->pop[1].array = &loss->first.states1;
        crl_finalize_cycle(loss, g, loss->uses, loss->sums, loss->outs, &err);
    }
    g->inputs = inputs;
    g->place[0] = place[0];
    g->place[1] = place[1];
    g->pop[0].array = &inputs->states;
    g->pop[1].array = &inputs->states1;
    for (int p = 0; p < 2; p++)
        if (want & CRL_USES(pop_role(p)))
            crl_states_backward(loss, g, p, crl_tensors_array(grads, pop_role(p)));
    if (want & (CRL_USES(CRL_ROLE_PRED) | CRL_USES(CRL_ROLE_LABEL)))
        crl_outputs_backward(loss, g, grads, want);
    /* Weight gradients are whole on every rank: stored once per cycle. */
    for (int s = 0; s < 4 && !loss->weights_written; s++)
        if (want & CRL_USES(CRL_FIRST_MATRIX_ROLE + s))
            crl_matrix_store(crl_tensors_matrix(grads, CRL_FIRST_MATRIX_ROLE + s), g->weights.grad[s],
                             store_how(loss));
    loss->weights_written = true;
    for (int k = 0; k < 3; k++) {
        loss->done[k] += batch[k];
        loss->done_rows[k] += rows[k];
    }
    if (scaled)
        scale_weights(loss, false);
    return CRL_OK;
}

int crl_loss_evaluate(crl_loss *loss, const crl_tensors *inputs, const crl_tensors *grads)
{
    if (loss == NULL)
        return CRL_ERR_INVALID;
    loss->phase = PHASE_IDLE; /* a fresh cycle, whatever came before */
    crl_loss_accumulate(loss, inputs, grads);
    int rc = crl_loss_reduce(loss);
    if (rc == CRL_OK && grads != NULL)
        rc = crl_loss_backward(loss, inputs, grads);
    return rc;
}

