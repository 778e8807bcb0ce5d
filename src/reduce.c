/*
 * reduce.c - the reduction step of an evaluation (crl_loss_reduce, a group
 * of losses in one crl_loss_reduce_group): the header and packed sums of
 * every rank summed exactly in one MPI_Allreduce, a failure or disagreement
 * agreed on, a new layout adopted, the values beyond a slot's range in a
 * wide reduction, the blocks' second reduction, every slot rounded once;
 * then finalize (cycle.c).
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

static void write_header(crl_loss *loss, crl_xsum *buffer)
{
    memset(buffer, 0, sizeof(crl_xsum) * HEADER_SLOTS);
    crl_xsum_add(&buffer[HEADER_FAILED], loss->err.code != CRL_OK);
    crl_xsum_add(&buffer[HEADER_RELAYOUT], loss->relayout);
    crl_xsum_add(&buffer[HEADER_SPILLED], loss->target ? (double) loss->spill.count : 0.0);
    crl_write_digest(buffer, loss->digest);
}

/* Room for the rounded payload of slots accumulators (also those of the
 * layout a first evaluation adopts, which has as many as pending). */
static bool reserve_sums(crl_loss *loss, int64_t slots)
{
    int64_t adopt = loss->relayout ? loss->next_layout[REGION_TERMS + loss->n_terms] : 0;
    int64_t need = slots > adopt ? slots : adopt;
    return crl_reserve(&loss->sums, &loss->sums_cap, need > 0 ? need : 1, sizeof(crl_dd));
}

/* Before the reduction: the header of loss's buffer, and the payload of a
 * cycle that accumulated into pending or failed zeroed.  Returns the count
 * of slots to reduce. */
static int64_t reduce_begin(crl_loss *loss)
{
    if (loss->phase != PHASE_ACCUMULATING) {
        /* A misuse on this rank: still take part, as a failure. */
        loss->err = (crl_error){0};
        crl_fail(&loss->err, CRL_ERR_INVALID, "crl_loss_reduce called without crl_loss_accumulate");
        loss->target = NULL;
        loss->relayout = false;
    }
    loss->phase = PHASE_IDLE;
    int64_t count = HEADER_SLOTS + loss->payload_slots;
    if (loss->target != loss->buffer)
        memset(loss->buffer + HEADER_SLOTS, 0, sizeof(crl_xsum) * (size_t) loss->payload_slots);
    if ((!reserve_sums(loss, loss->payload_slots) || loss->spill.failed)
        && loss->err.code == CRL_OK) {
        crl_fail(&loss->err, CRL_ERR_NOMEM, "out of memory for the reduced sums");
        loss->target = NULL;
    }
    write_header(loss, loss->buffer);
    return count;
}

/* After the reduction: a failure any rank found, a disagreement, or the
 * first evaluation of a new layout (every rank accumulated into pending:
 * adopted, and *again set to the slots it must reduce once more). */
static int reduce_check(crl_loss *loss, int64_t *again)
{
    crl_context *ctx = loss->ctx;
    *again = 0;
    for (int k = 0; k < HEADER_SLOTS; k++)
        loss->head[k] = crl_xsum_dd(&loss->buffer[k]);
    if (crl_dd_round(loss->head[HEADER_FAILED]) > 0)
        return crl_context_agree_error(ctx, &loss->err);
    if (!crl_digest_agrees(loss->head, ctx->size))
        return crl_diagnose_disagreement(loss);
    double relayouts = crl_dd_round(loss->head[HEADER_RELAYOUT]);
    if (relayouts > 0) {
        /* The digests agree, so every rank has the same local layout and
         * every rank accumulated into its pending buffer: adopt it. */
        if (relayouts != ctx->size)
            return crl_context_set(ctx, CRL_ERR_INVALID, "ranks could not agree on a layout");
        int len = REGION_TERMS + loss->n_terms + 1;
        memcpy(loss->layout, loss->next_layout, sizeof(int64_t) * (size_t) len);
        loss->layout_len = len;
        loss->payload_slots = loss->next_layout[len - 1];
        crl_xsum *swap = loss->buffer;
        int64_t cap = loss->buffer_cap;
        loss->buffer = loss->pending;
        loss->buffer_cap = loss->pending_cap;
        loss->pending = swap;
        loss->pending_cap = cap;
        loss->relayout = false;
        write_header(loss, loss->buffer);
        *again = HEADER_SLOTS + loss->payload_slots;
    }
    return CRL_OK;
}

/* Collective (every rank takes the same call: spills counted in a reduced
 * header).  Slots first .. first + n - 1 of the payload: the reduced exact
 * sums narrow[0 .. n) plus every rank's spilled values of those slots, in
 * wide accumulators, each rounded into sums. */
static int round_wide(crl_loss *loss, int64_t first, int64_t n, const crl_xsum *narrow)
{
    crl_context *ctx = loss->ctx;
    int ok = crl_reserve(&loss->wide, &loss->wide_cap, n > 0 ? n : 1, sizeof(crl_xsum_wide)), all = 0;
    if (MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, ctx->comm) != MPI_SUCCESS)
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Allreduce of the packed sums failed");
    if (!all)
        return crl_context_set(ctx, CRL_ERR_NOMEM,
                               "out of memory for the wide sums of values beyond 2^-204 .. 2^191");
    memset(loss->wide, 0, sizeof(crl_xsum_wide) * (size_t) n);
    for (int64_t k = 0; k < loss->spill.count; k++) {
        const crl_spilled *s = &loss->spill.items[k];
        int64_t at = s->slot - HEADER_SLOTS - first;
        if (at >= 0 && at < n)
            crl_xsum_wide_add(&loss->wide[at], s->value);
    }
    int rc = crl_context_reduce_wide(ctx, loss->wide, n);
    if (rc != CRL_OK)
        return rc;
    for (int64_t k = 0; k < n; k++) {
        crl_xsum_wide_add_narrow(&loss->wide[k], &narrow[k]);
        loss->sums[first + k] = crl_xsum_wide_dd(&loss->wide[k]);
    }
    return CRL_OK;
}

/* Every slot rounded into sums: the reduced slots, and when any rank
 * spilled (the same on every rank: the reduced header says so), the
 * spilled values of all ranks summed in wide accumulators too. */
static int round_sums(crl_loss *loss)
{
    int64_t n = loss->payload_slots;
    const crl_xsum *reduced = loss->buffer + HEADER_SLOTS;
    if (crl_dd_round(loss->head[HEADER_SPILLED]) == 0) {
        for (int64_t k = 0; k < n; k++)
            loss->sums[k] = crl_xsum_dd(&reduced[k]);
        return CRL_OK;
    }
    return round_wide(loss, 0, n, reduced);
}

/* Blocks: the second reduction (docs/losses.md "Decompositions").  The
 * terms whose more says so (from the first reduction's sums: the same on
 * every rank) write this rank's part into a zeroed second buffer; it is
 * reduced, added exactly to the first reduction's slots, and those are
 * rounded again. */
static int second_reduction(crl_loss *loss)
{
    crl_context *ctx = loss->ctx;
    crl_global *g = &loss->g;
    int64_t first = loss->more_first, n = loss->more_slots;
    bool any = false;
    for (int k = 0; k < loss->n_terms && n > 0; k++) {
        crl_term *t = &loss->terms[k];
        any |= term_active(t) && t->cls->more && t->cls->more(t, g, loss->sums + t->slot);
    }
    if (!any)
        return CRL_OK;
    crl_xsum *buffer = loss->more, *slots = buffer + HEADER_SLOTS;
    crl_error err = {0};
    int64_t spilled = loss->spill.count;
    memset(buffer, 0, sizeof(crl_xsum) * (size_t) (HEADER_SLOTS + n));
    crl_spill_begin(&loss->spill, slots, n);
    loss->spill.shift = HEADER_SLOTS + first;
    for (int k = 0; k < loss->n_terms; k++) {
        crl_term *t = &loss->terms[k];
        if (term_active(t) && t->cls->more && t->cls->more(t, g, loss->sums + t->slot)) {
            crl_error mine = {0};
            t->cls->add_more(t, ctx->comm, g, loss->sums + t->slot, slots + (t->slot - first),
                             &mine);
            if (mine.code != CRL_OK && err.code == CRL_OK) {
                err = mine;
                crl_term_error(loss, t, &err);
            }
        }
    }
    crl_spill_end();
    if (loss->spill.failed && err.code == CRL_OK)
        crl_fail(&err, CRL_ERR_NOMEM, "out of memory for the values beyond 2^-204 .. 2^191");
    crl_xsum_add(&buffer[HEADER_FAILED], err.code != CRL_OK);
    crl_xsum_add(&buffer[HEADER_SPILLED], (double) (loss->spill.count - spilled));
    int rc = crl_context_reduce(ctx, buffer, HEADER_SLOTS + n);
    if (rc != CRL_OK)
        return rc;
    if (crl_xsum_round(&buffer[HEADER_FAILED]) > 0)
        return crl_context_agree_error(ctx, &err);
    crl_xsum *reduced = loss->buffer + HEADER_SLOTS + first;
    for (int64_t k = 0; k < n; k++)
        crl_xsum_merge(&reduced[k], &slots[k]);
    if (crl_dd_round(loss->head[HEADER_SPILLED]) == 0 && crl_xsum_round(&buffer[HEADER_SPILLED]) == 0) {
        for (int64_t k = 0; k < n; k++)
            loss->sums[first + k] = crl_xsum_dd(&reduced[k]);
        return CRL_OK;
    }
    return round_wide(loss, first, n, reduced);
}

/* Finalize: the same on every rank, so its errors are collective. */
static int reduce_end(crl_loss *loss)
{
    crl_context *ctx = loss->ctx;
    crl_global *g = &loss->g;
    g->inputs = &loss->first;
    g->pop[0].array = &loss->first.states;
    g->pop[1].array = &loss->first.states1;
    if (round_sums(loss) != CRL_OK || second_reduction(loss) != CRL_OK)
        return ctx->status;
    if (crl_finalize_cycle(loss, g, loss->uses, loss->sums, loss->outs, &loss->err) != CRL_OK)
        return crl_context_set_error(ctx, &loss->err);
    crl_store_results(loss, loss->outs);
    loss->phase = PHASE_REDUCED;
    loss->weights_written = false;
    loss->backward_started = false;
    return crl_context_set(ctx, CRL_OK, NULL);
}

int crl_loss_reduce(crl_loss *loss)
{
    return loss ? crl_loss_reduce_group(&loss, 1) : CRL_ERR_INVALID;
}

/* One reduction of the buffers of losses[0 .. n) (counts[k] slots each):
 * in place for one loss, else through one contiguous copy kept by the
 * first loss.  The copy grows only when a layout grows, the same way on
 * every rank (the counts are agreed); then the ranks agree that it could
 * (a failure frees it everywhere, so that they stay alike). */
static int reduce_buffers(crl_context *ctx, crl_loss *const *losses, const int64_t *counts, int n)
{
    if (n == 1)
        return crl_context_reduce(ctx, losses[0]->buffer, counts[0]);
    crl_loss *lead = losses[0];
    int64_t total = 0;
    for (int k = 0; k < n; k++)
        total += counts[k];
    if (total > lead->group_cap) {
        int ok = crl_reserve(&lead->group, &lead->group_cap, total, sizeof(crl_xsum)), all = 0;
        if (MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, ctx->comm) != MPI_SUCCESS || !all) {
            free(lead->group);
            lead->group = NULL;
            lead->group_cap = 0;
            return crl_context_set(ctx, all ? CRL_ERR_MPI : CRL_ERR_NOMEM,
                                   "out of memory for the packed sums of a group of losses");
        }
    }
    crl_xsum *packed = lead->group;
    for (int64_t k = 0, at = 0; k < n; at += counts[k], k++)
        memcpy(packed + at, losses[k]->buffer, sizeof *packed * (size_t) counts[k]);
    int rc = crl_context_reduce(ctx, packed, total);
    for (int64_t k = 0, at = 0; k < n && rc == CRL_OK; at += counts[k], k++)
        memcpy(losses[k]->buffer, packed + at, sizeof *packed * (size_t) counts[k]);
    return rc;
}

int crl_loss_reduce_group(crl_loss *const *losses, int n)
{
    if (losses == NULL || n < 1 || n > CRL_MAX_GROUP)
        return CRL_ERR_INVALID;
    crl_context *ctx = losses[0] ? losses[0]->ctx : NULL;
    for (int k = 0; k < n; k++)
        if (losses[k] == NULL || losses[k]->ctx != ctx)
            return ctx ? crl_context_set(ctx, CRL_ERR_INVALID,
                                         "a group of losses needs losses on one context")
                       : CRL_ERR_INVALID;
    int64_t counts[CRL_MAX_GROUP] = {0}, again[CRL_MAX_GROUP] = {0};
    crl_loss *second[CRL_MAX_GROUP];
    for (int k = 0; k < n; k++)
        counts[k] = reduce_begin(losses[k]);
    int rc = reduce_buffers(ctx, losses, counts, n);
    /* Every rank sees the same reduced headers: the same losses fail, and
     * the same ones reduce again. */
    int m = 0;
    for (int k = 0; k < n && rc == CRL_OK; k++)
        if ((rc = reduce_check(losses[k], &again[m])) == CRL_OK && again[m] > 0)
            second[m++] = losses[k];
    if (rc == CRL_OK && m > 0)
        rc = reduce_buffers(ctx, second, again, m);
    for (int k = 0; k < n && rc == CRL_OK; k++)
        rc = reduce_end(losses[k]);
    return rc;
}
