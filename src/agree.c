/*
 * agree.c - what ranks must agree on before their sums meet: the digest of
 * the agreement list (one MPI_Allreduce with the sums), the diagnosis that
 * names the first value that differs, and the agreement on an error.
 */
#include "engine.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool crl_agree_add(crl_loss *loss, int64_t value, const char *what, int term, int role,
                      bool real)
{
    int64_t cap = loss->cap_agree;
    if (!crl_reserve(&loss->agree, &cap, loss->n_agree + 1, sizeof *loss->agree))
        return false;
    loss->cap_agree = (int) cap;
    loss->agree[loss->n_agree++] = (agree_item){value, what, term, role, real};
    return true;
}

int64_t crl_real_bits(double x)
{
    int64_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}

uint64_t crl_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t crl_agree_digest(const crl_loss *loss)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (int k = 0; k < loss->n_agree; k++)
        h = crl_mix64(h ^ crl_mix64((uint64_t) loss->agree[k].value + (uint64_t) k));
    return h;
}

/* The one hash of a text (FNV-1a): term names and types in the digest,
 * error messages in the error agreement. */
uint64_t crl_hash_text(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char) *s) * 1099511628211ULL;
    return h;
}

void crl_write_digest(crl_xsum *header, uint64_t digest)
{
    for (int k = 0; k < DIGEST_BYTES; k++) {
        double c = (double) ((digest >> (8 * k)) & 0xff);
        crl_xsum_add(&header[HEADER_DIGEST + 2 * k], c);
        crl_xsum_add(&header[HEADER_DIGEST + 2 * k + 1], c * c);
    }
}

bool crl_digest_agrees(const crl_dd *header, int size)
{
    for (int k = 0; k < DIGEST_BYTES; k++) {
        uint64_t s1 = (uint64_t) crl_dd_round(header[HEADER_DIGEST + 2 * k]);
        uint64_t s2 = (uint64_t) crl_dd_round(header[HEADER_DIGEST + 2 * k + 1]);
        if ((uint64_t) size * s2 != s1 * s1)
            return false;
    }
    return true;
}

static void describe_item(const crl_loss *loss, int index, char *buf, size_t len)
{
    if (index >= loss->n_agree) {
        snprintf(buf, len, "the list of terms");
        return;
    }
    const agree_item *it = &loss->agree[index];
    if (it->term >= 0 && it->term < loss->n_terms)
        snprintf(buf, len, "term '%s' (%s): %s", loss->terms[it->term].name,
                 loss->terms[it->term].cls->type, it->what);
    else if (it->role >= 0)
        snprintf(buf, len, "%s: %s", crl_role_name(it->role), it->what);
    else
        snprintf(buf, len, "%s", it->what);
}

static void format_item(const crl_loss *loss, int index, int64_t v, char *buf, size_t len)
{
    double d;
    memcpy(&d, &v, sizeof d);
    const agree_item *it = index < loss->n_agree ? &loss->agree[index] : NULL;
    /* A choice or a flag by its name, not its index. */
    for (int j = 0; it != NULL && it->term >= 0 && it->term < loss->n_terms
                    && loss->terms[it->term].cls->params[j].key != NULL; j++) {
        const crl_param_info *p = &loss->terms[it->term].cls->params[j];
        if (strcmp(p->key, it->what) != 0 || (p->kind != CRL_PARAM_CHOICE && p->kind != CRL_PARAM_BOOL))
            continue;
        int k = (int) d, n = 0;
        while (p->kind == CRL_PARAM_CHOICE && p->choices[n] != NULL)
            n++;
        if (p->kind == CRL_PARAM_BOOL)
            snprintf(buf, len, "%s", d != 0 ? "true" : "false");
        else if (d == (double) k && k >= 0 && k < n)
            snprintf(buf, len, "%s", p->choices[k]);
        else
            break;
        return;
    }
    if (index < loss->n_agree && loss->agree[index].real) {
        /* The shortest text that reads back as the same double. */
        for (int digits = 6; digits <= 17; digits++) {
            snprintf(buf, len, "%.*g", digits, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    }
    else
        snprintf(buf, len, "%lld", (long long) v);
}

/*
 * Collective, only after the digest showed a disagreement: finds the first
 * value that differs (one MPI_MAX of (-x, x) per value, as PETSc does) and
 * names it on every rank.
 */
int crl_diagnose_disagreement(crl_loss *loss)
{
    crl_context *ctx = loss->ctx;
    int64_t counts[2] = {-(int64_t) loss->n_agree, loss->n_agree}, c[2];
    if (MPI_Allreduce(counts, c, 2, MPI_INT64_T, MPI_MAX, ctx->comm) != MPI_SUCCESS)
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Allreduce of the agreement failed");
    int64_t n_min = -c[0], n_max = c[1];
    int64_t *pairs = malloc(sizeof *pairs * 2 * (size_t) (n_max > 0 ? n_max : 1));
    int ok = pairs != NULL, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, ctx->comm);
    if (!all_ok) {
        free(pairs);
        return crl_context_set(ctx, CRL_ERR_NOMEM, "out of memory diagnosing a disagreement");
    }
    for (int64_t k = 0; k < n_max; k++) {
        int64_t v = k < loss->n_agree ? loss->agree[k].value : 0;
        pairs[2 * k] = v == INT64_MIN ? INT64_MAX : -v;
        pairs[2 * k + 1] = v;
    }
    if (MPI_Allreduce(MPI_IN_PLACE, pairs, (int) (2 * n_max), MPI_INT64_T, MPI_MAX, ctx->comm)
        != MPI_SUCCESS) {
        free(pairs);
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Allreduce of the agreement failed");
    }
    int64_t first = n_min;
    for (int64_t k = 0; k < n_min; k++)
        if (-pairs[2 * k] != pairs[2 * k + 1]) {
            first = k;
            break;
        }
    char what[256], lo[40], hi[40], msg[CRL_MESSAGE_MAX];
    if (first < n_min) {
        describe_item(loss, (int) first, what, sizeof what);
        format_item(loss, (int) first, -pairs[2 * first], lo, sizeof lo);
        format_item(loss, (int) first, pairs[2 * first + 1], hi, sizeof hi);
        snprintf(msg, sizeof msg, "ranks disagree on %s (from %s to %s)", what, lo, hi);
    } else if (n_min != n_max) {
        snprintf(msg, sizeof msg, "ranks disagree on the terms or the inputs used");
    } else {
        snprintf(msg, sizeof msg, "ranks disagree on the arguments");
    }
    free(pairs);
    /* Descriptions come from local term names: take rank 0's words. */
    MPI_Bcast(msg, (int) sizeof msg, MPI_CHAR, 0, ctx->comm);
    msg[sizeof msg - 1] = '\0';
    return crl_context_set(ctx, CRL_ERR_INVALID, msg);
}

/* ------------------------------------------------------------------------ */
/* Agreement on an error                                                      */
/* ------------------------------------------------------------------------ */

int crl_context_agree_error(crl_context *ctx, const crl_error *local)
{
    int mine = local->code != CRL_OK ? ctx->rank : INT_MAX, first = INT_MAX;
    if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, ctx->comm) != MPI_SUCCESS)
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Allreduce of the error status failed");
    if (first == INT_MAX)
        return crl_context_set(ctx, CRL_ERR_MPI, "error agreement found no failing rank");
    /* An error every rank found alike (a shape all ranks share, a NaN in a
     * replicated weight) has no rank to name: compare the messages. */
    int64_t h = local->code != CRL_OK ? (int64_t) (crl_hash_text(local->message) >> 1) : -1;
    int64_t pair[2] = {-h, h}, range[2];
    if (MPI_Allreduce(pair, range, 2, MPI_INT64_T, MPI_MAX, ctx->comm) != MPI_SUCCESS)
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Allreduce of the error status failed");
    bool everywhere = ctx->size > 1 && -range[0] == range[1] && range[1] >= 0;
    crl_error record = {0};
    if (ctx->rank == first) {
        record = *local;
        record.rank = everywhere ? -1 : first;
        if (!everywhere)
            snprintf(record.message, sizeof record.message, "rank %d: %.480s", first,
                     local->message);
    }
    if (MPI_Bcast(&record, (int) sizeof record, MPI_BYTE, first, ctx->comm) != MPI_SUCCESS)
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Bcast of the error message failed");
    return crl_context_set_error(ctx, &record);
}

int crl_agree(crl_context *ctx, const crl_error *local)
{
    int failed = local->code != CRL_OK, any = 0;
    if (MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, ctx->comm) != MPI_SUCCESS)
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Allreduce of the error status failed");
    if (!any)
        return crl_context_set(ctx, CRL_OK, NULL);
    return crl_context_agree_error(ctx, local);
}

int crl_context_agree(crl_context *ctx, int local_code, const char *local_message)
{
    if (ctx == NULL)
        return CRL_ERR_INVALID;
    crl_error local = {0};
    if (local_code != CRL_OK)
        crl_fail(&local, local_code, "%s",
                 local_message ? local_message : crl_strerror(local_code));
    return crl_agree(ctx, &local);
}
