/*
 * test_context.c - the context (src/context.c): communicator duplication and
 * error handler, the double-double reduction, collective error agreement.
 */
#include "harness.h"

#include "internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_create_duplicates_the_communicator(void **state)
{
    (void) state;
    crl_context *ctx = NULL;
    h_assert_all(crl_context_create(MPI_COMM_WORLD, &ctx) == CRL_OK);
    int cmp;
    MPI_Comm_compare(MPI_COMM_WORLD, crl_context_comm(ctx), &cmp);
    h_assert_all(cmp == MPI_CONGRUENT);
    MPI_Errhandler eh;
    MPI_Comm_get_errhandler(crl_context_comm(ctx), &eh);
    h_assert_all(eh == MPI_ERRORS_RETURN);
    MPI_Errhandler_free(&eh);
    h_assert_all(crl_context_rank(ctx) == h_rank && crl_context_size(ctx) == h_size);
    h_assert_all(crl_context_status(ctx) == CRL_OK && strcmp(crl_context_error(ctx), "") == 0);
    h_assert_all(crl_context_destroy(&ctx) == CRL_OK && ctx == NULL);
    h_assert_all(crl_context_destroy(&ctx) == CRL_OK);
    h_assert_all(crl_context_destroy(NULL) == CRL_OK);
    h_assert_all(crl_context_create(MPI_COMM_NULL, &ctx) == CRL_ERR_INVALID && ctx == NULL);
    h_assert_all(crl_context_create(MPI_COMM_WORLD, NULL) == CRL_ERR_INVALID);
}

static void test_contexts_on_split_communicators(void **state)
{
    (void) state;
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, h_rank % 2, h_rank, &half);
    crl_context *ctx = NULL;
    h_assert_all(crl_context_create(half, &ctx) == CRL_OK);
    int size;
    MPI_Comm_size(half, &size);
    h_assert_all(crl_context_size(ctx) == size);
    crl_context_destroy(&ctx);
    MPI_Comm_free(&half);
}

/* The reduction of per-rank values is the one-rank sum of all of them, to
 * the last bit of the accumulator, whatever the rank count: values of
 * every magnitude a slot takes (and, wide, of the whole double range),
 * with cancellation, dealt to the ranks in a different pattern per slot. */
static void test_reduce_matches_serial_sum(void **state)
{
    (void) state;
    enum { COUNT = 1000, PER_RANK = 50 };
    crl_context *ctx = NULL;
    h_assert_all(crl_context_create(MPI_COMM_WORLD, &ctx) == CRL_OK);
    crl_xsum *mine = calloc(COUNT, sizeof *mine), *serial = calloc(COUNT, sizeof *serial);
    crl_xsum_wide *wmine = calloc(COUNT, sizeof *wmine), *wserial = calloc(COUNT, sizeof *wserial);
    int total_rows = 4 * PER_RANK;
    for (int j = 0; j < total_rows; j++) {
        uint64_t s = 100 + (uint64_t) j;
        for (int k = 0; k < COUNT; k++) {
            double u = h_uniform(&s, 0.5, 1) * (h_rand(&s) % 2 ? 1 : -1);
            double v = ldexp(u, (int) h_uniform(&s, -200, 190));
            double w = ldexp(u, (int) h_uniform(&s, -1074, 1000));
            bool own = (j + k) % h_size == h_rank;
            for (int c = 0; c < 2; c++, v = -v / 3, w = -w / 3) {
                crl_xsum_add(&serial[k], v);
                crl_xsum_wide_add(&wserial[k], w);
                if (own) {
                    crl_xsum_add(&mine[k], v);
                    crl_xsum_wide_add(&wmine[k], w);
                }
            }
        }
    }
    h_assert_all(crl_context_reduce(ctx, mine, COUNT) == CRL_OK);
    h_assert_all(crl_context_reduce_wide(ctx, wmine, COUNT) == CRL_OK);
    h_assert_all(memcmp(mine, serial, COUNT * sizeof *mine) == 0);
    h_assert_all(memcmp(wmine, wserial, COUNT * sizeof *wmine) == 0);
    free(mine);
    free(serial);
    free(wmine);
    free(wserial);
    crl_context_destroy(&ctx);
}

/* The crafted sum 2^60 + 1 + 2^-53 + 2^-80 - 2^60, its terms on
 * the ranks in every rotation: always the correctly rounded 1 + 2^-52
 * (double-double combination gave 1 or 1 + 2^-52 by rank count). */
static void test_reduce_is_exact_on_a_rounding_tie(void **state)
{
    (void) state;
    const double v[] = {0x1p60, 1.0, 0x1p-53, 0x1p-80, -0x1p60};
    enum { N = sizeof v / sizeof v[0] };
    crl_context *ctx = NULL;
    h_assert_all(crl_context_create(MPI_COMM_WORLD, &ctx) == CRL_OK);
    crl_xsum sums[N];
    memset(sums, 0, sizeof sums);
    for (int r = 0; r < N; r++)
        for (int k = 0; k < N; k++)
            if ((k + r) % h_size == h_rank)
                crl_xsum_add(&sums[r], v[k]);
    h_assert_all(crl_context_reduce(ctx, sums, N) == CRL_OK);
    for (int r = 0; r < N; r++)
        h_assert_all(crl_xsum_round(&sums[r]) == 1.0 + 0x1p-52);
    crl_context_destroy(&ctx);
}

static void test_reduce_refuses_more_than_an_int_count(void **state)
{
    (void) state;
    crl_context *ctx = NULL;
    h_assert_all(crl_context_create(MPI_COMM_WORLD, &ctx) == CRL_OK);
    crl_xsum one = {{0}};
    crl_xsum_wide wide = {{0}};
    h_assert_all(crl_context_reduce(ctx, &one, (int64_t) INT_MAX + 1) == CRL_ERR_INVALID);
    h_assert_all(crl_context_reduce_wide(ctx, &wide, (int64_t) INT_MAX + 1) == CRL_ERR_INVALID);
    h_assert_all(strstr(crl_context_error(ctx), "more than INT_MAX") != NULL);
    crl_context_destroy(&ctx);
}

static void test_error_agreement_names_the_first_failing_rank(void **state)
{
    (void) state;
    crl_context *ctx = NULL;
    h_assert_all(crl_context_create(MPI_COMM_WORLD, &ctx) == CRL_OK);
    crl_error err = {0};
    int failing = h_size > 1 ? 1 : 0;
    if (h_rank >= failing)
        crl_fail(&err, h_rank == failing ? CRL_ERR_DOMAIN : CRL_ERR_IO, "problem at rank %d",
                 h_rank);
    int rc = crl_context_agree_error(ctx, &err);
    char expect[64];
    snprintf(expect, sizeof expect, "rank %d: problem at rank %d", failing, failing);
    h_assert_all(rc == CRL_ERR_DOMAIN);
    h_assert_all(crl_context_status(ctx) == CRL_ERR_DOMAIN);
    h_assert_all(strcmp(crl_context_error(ctx), expect) == 0);
    crl_context_destroy(&ctx);
}

/* The same error on every rank names no rank; different ones name the
 * first failing rank. */
static void test_an_error_found_everywhere_names_no_rank(void **state)
{
    (void) state;
    crl_context *ctx = NULL;
    h_assert_all(crl_context_create(MPI_COMM_WORLD, &ctx) == CRL_OK);
    crl_error err = {0};
    crl_fail(&err, CRL_ERR_INVALID, "T = 3 time steps, but tau = 3 needs T > tau");
    h_assert_all(crl_context_agree_error(ctx, &err) == CRL_ERR_INVALID);
    const char *want = h_size > 1 ? "T = 3 time steps, but tau = 3 needs T > tau"
                                  : "rank 0: T = 3 time steps, but tau = 3 needs T > tau";
    h_assert_all(strcmp(crl_context_error(ctx), want) == 0);
    crl_context_destroy(&ctx);
}

static void test_fail_keeps_the_first_error(void **state)
{
    (void) state;
    crl_error err = {0};
    assert_int_equal(crl_fail(&err, CRL_ERR_INVALID, "first %d", 1), CRL_ERR_INVALID);
    assert_int_equal(crl_fail(&err, CRL_ERR_DOMAIN, "second"), CRL_ERR_INVALID);
    assert_string_equal(err.message, "first 1");
}

static void test_strerror(void **state)
{
    (void) state;
    assert_string_equal(crl_strerror(CRL_OK), "success");
    assert_string_equal(crl_strerror(CRL_ERR_INVALID), "invalid argument");
    assert_string_equal(crl_strerror(CRL_ERR_DOMAIN), "domain error");
    assert_string_equal(crl_strerror(CRL_ERR_NONFINITE), "non-finite input");
    assert_string_equal(crl_strerror(CRL_ERR_IO), "input/output error");
    assert_string_equal(crl_strerror(CRL_ERR_NOMEM), "out of memory");
    assert_string_equal(crl_strerror(CRL_ERR_MPI), "MPI error");
    assert_string_equal(crl_strerror(99), "unknown error");
    assert_string_equal(crl_version(), CRL_VERSION_STRING);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_duplicates_the_communicator),
        cmocka_unit_test(test_contexts_on_split_communicators),
        cmocka_unit_test(test_reduce_matches_serial_sum),
        cmocka_unit_test(test_reduce_is_exact_on_a_rounding_tie),
        cmocka_unit_test(test_reduce_refuses_more_than_an_int_count),
        cmocka_unit_test(test_error_agreement_names_the_first_failing_rank),
        cmocka_unit_test(test_an_error_found_everywhere_names_no_rank),
        cmocka_unit_test(test_fail_keeps_the_first_error),
        cmocka_unit_test(test_strerror),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "context");
}
