/*
 * gather.c - the one collective a term calls itself: every rank's records
 * gathered on every rank (state_pred's rows at the edges of time blocks,
 * docs/losses.md "Decompositions"), each step agreed on first so that no
 * rank is left waiting.
 */
#include "internal.h"

#include <limits.h>
#include <stdlib.h>

int crl_allgather_records(MPI_Comm comm, const double *send, int64_t count, int64_t width,
                          double **out, int64_t *total, crl_error *err)
{
    int size, ok, all = 0;
    MPI_Comm_size(comm, &size);
    int *counts = malloc(sizeof(int) * (size_t) size), *starts = malloc(sizeof(int) * (size_t) size);
    int64_t *records = malloc(sizeof(int64_t) * (size_t) size), sum = 0;
    double *recv = NULL;
    *out = NULL;
    *total = 0;
    ok = counts && starts && records;
    /* Every step agrees first that every rank can take it. */
    if (MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, comm) != MPI_SUCCESS || !all
        || MPI_Allgather(&count, 1, MPI_INT64_T, records, 1, MPI_INT64_T, comm) != MPI_SUCCESS)
        goto done;
    for (int r = 0; r < size && ok; r++) {
        if (records[r] > (INT_MAX - sum) / width) {
            ok = 0;
        } else {
            counts[r] = (int) (records[r] * width);
            starts[r] = (int) sum;
            sum += counts[r];
        }
    }
    ok = ok && (recv = malloc(sizeof(double) * (size_t) (sum + 1))) != NULL;
    all = 0;
    if (MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, comm) != MPI_SUCCESS || !all)
        goto done;
    if (MPI_Allgatherv(send, (int) (count * width), MPI_DOUBLE, recv, counts, starts, MPI_DOUBLE,
                       comm) != MPI_SUCCESS) {
        all = 0;
        goto done;
    }
    *out = recv;
    *total = sum / width;
    recv = NULL;
done:
    if (!all)
        crl_fail(err, CRL_ERR_NOMEM,
                 "out of memory (or beyond MPI's int counts) gathering the rows of other ranks");
    free(counts);
    free(starts);
    free(records);
    free(recv);
    return all ? CRL_OK : err->code;
}
