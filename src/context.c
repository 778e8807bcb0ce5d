/*
 * context.c - the communicator, the error record of the last call, and the
 * packed exact reduction (one user-defined MPI_Op over crl_xsum).
 */
#include "internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *crl_version(void)
{
    return CRL_VERSION_STRING;
}

const char *crl_strerror(int status)
{
    switch (status) {
    case CRL_OK: return "success";
    case CRL_ERR_INVALID: return "invalid argument";
    case CRL_ERR_DOMAIN: return "domain error";
    case CRL_ERR_NONFINITE: return "non-finite input";
    case CRL_ERR_IO: return "input/output error";
    case CRL_ERR_NOMEM: return "out of memory";
    case CRL_ERR_MPI: return "MPI error";
    default: return "unknown error";
    }
}

/* The MPI_Op: element-wise exact sum.  MPI may call it on any segment of
 * the buffer and combine ranks in any order and grouping: integer addition
 * makes every one of them give the same bits. */
static void xsum_sum_op(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void) type;
    const crl_xsum *a = in;
    crl_xsum *b = inout;
    for (int k = 0; k < *len; k++)
        crl_xsum_merge(&b[k], &a[k]);
}

static void wide_sum_op(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void) type;
    const crl_xsum_wide *a = in;
    crl_xsum_wide *b = inout;
    for (int k = 0; k < *len; k++)
        crl_xsum_wide_merge(&b[k], &a[k]);
}

/* An exact-sum datatype of n uint64s and its operator, or false. */
static bool make_sum(int n, MPI_User_function *fn, MPI_Datatype *type, MPI_Op *op)
{
    if (MPI_Type_contiguous(n, MPI_UINT64_T, type) != MPI_SUCCESS)
        return false;
    if (MPI_Type_commit(type) == MPI_SUCCESS && MPI_Op_create(fn, 1, op) == MPI_SUCCESS)
        return true;
    MPI_Type_free(type);
    return false;
}

int crl_context_create(MPI_Comm comm, crl_context **out)
{
    if (out == NULL)
        return CRL_ERR_INVALID;
    *out = NULL;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized || comm == MPI_COMM_NULL)
        return CRL_ERR_INVALID;

    crl_context *ctx = calloc(1, sizeof *ctx);
    /* The allocation may fail on one rank only: agree before any other
     * collective so that no rank is left waiting. */
    int ok = ctx != NULL, all_ok = 0;
    if (MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, comm) != MPI_SUCCESS) {
        free(ctx);
        return CRL_ERR_MPI;
    }
    if (!all_ok) {
        free(ctx);
        return CRL_ERR_NOMEM;
    }
    if (MPI_Comm_dup(comm, &ctx->comm) != MPI_SUCCESS) {
        free(ctx);
        return CRL_ERR_MPI;
    }
    MPI_Comm_set_errhandler(ctx->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(ctx->comm, &ctx->rank);
    MPI_Comm_size(ctx->comm, &ctx->size);
    bool narrow = make_sum(CRL_XSUM_LIMBS, xsum_sum_op, &ctx->xsum_type, &ctx->xsum_sum);
    bool wide = narrow
                && make_sum(CRL_XSUM_WIDE_WORDS, wide_sum_op, &ctx->wide_type, &ctx->wide_sum);
    if (!wide) {
        if (narrow) {
            MPI_Op_free(&ctx->xsum_sum);
            MPI_Type_free(&ctx->xsum_type);
        }
        MPI_Comm_free(&ctx->comm);
        free(ctx);
        return CRL_ERR_MPI;
    }
    *out = ctx;
    return CRL_OK;
}

int crl_context_destroy(crl_context **ctx)
{
    if (ctx == NULL || *ctx == NULL)
        return CRL_OK;
    crl_context *c = *ctx;
    MPI_Op_free(&c->xsum_sum);
    MPI_Type_free(&c->xsum_type);
    MPI_Op_free(&c->wide_sum);
    MPI_Type_free(&c->wide_type);
    int rc = MPI_Comm_free(&c->comm) == MPI_SUCCESS ? CRL_OK : CRL_ERR_MPI;
    free(c);
    *ctx = NULL;
    return rc;
}

const char *crl_context_error(const crl_context *ctx)
{
    return ctx ? ctx->message : "no context";
}

int crl_context_status(const crl_context *ctx)
{
    return ctx ? ctx->status : CRL_ERR_INVALID;
}

int crl_context_rank(const crl_context *ctx)
{
    return ctx ? ctx->rank : -1;
}

int crl_context_size(const crl_context *ctx)
{
    return ctx ? ctx->size : 0;
}

MPI_Comm crl_context_comm(const crl_context *ctx)
{
    return ctx ? ctx->comm : MPI_COMM_NULL;
}

int crl_context_set(crl_context *ctx, int status, const char *message)
{
    crl_error e = {.code = status, .rank = -1, .role = -1, .term = -1, .b = -1, .t = -1, .i = -1};
    if (status != CRL_OK)
        snprintf(e.message, sizeof e.message, "%s", message ? message : crl_strerror(status));
    return crl_context_set_error(ctx, &e);
}

int crl_context_set_error(crl_context *ctx, const crl_error *err)
{
    ctx->info = *err;
    if (err->code == CRL_OK) {
        ctx->info = (crl_error_info){.rank = -1, .role = -1, .term = -1, .b = -1, .t = -1, .i = -1};
    }
    ctx->info.message[sizeof ctx->info.message - 1] = '\0';
    ctx->status = ctx->info.code;
    memcpy(ctx->message, ctx->info.message, sizeof ctx->message);
    return ctx->status;
}

int crl_context_error_info(const crl_context *ctx, crl_error_info *info)
{
    if (ctx == NULL || info == NULL)
        return CRL_ERR_INVALID;
    *info = ctx->info;
    return CRL_OK;
}

/* One in-place MPI_Allreduce of count elements of type with op. */
static int reduce(crl_context *ctx, void *buffer, int64_t count, MPI_Datatype type, MPI_Op op)
{
    if (count > INT_MAX)
        return crl_context_set(ctx, CRL_ERR_INVALID,
                               "the packed sums exceed one MPI_Allreduce (more than INT_MAX "
                               "accumulators)");
    if (MPI_Allreduce(MPI_IN_PLACE, buffer, (int) count, type, op, ctx->comm) != MPI_SUCCESS)
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Allreduce of the packed sums failed");
    return CRL_OK;
}

int crl_context_reduce(crl_context *ctx, crl_xsum *buffer, int64_t count)
{
    return reduce(ctx, buffer, count, ctx->xsum_type, ctx->xsum_sum);
}

int crl_context_reduce_wide(crl_context *ctx, crl_xsum_wide *buffer, int64_t count)
{
    return reduce(ctx, buffer, count, ctx->wide_type, ctx->wide_sum);
}
