/*
 * error.c - the one way the library records an error.  No MPI here, so that
 * the pure parsers (npy_header.c, params.c, cli/config.c) build without it
 * (tests/fuzz).
 */
#include "internal.h"

#include <stdio.h>

static int fail_v(crl_error *err, int code, int role, int64_t b, int64_t t, int64_t i,
                  const char *fmt, va_list ap)
{
    if (err->code != CRL_OK)
        return err->code;
    err->code = code;
    err->rank = -1;
    err->role = role;
    err->term = -1;
    err->b = b;
    err->t = t;
    err->i = i;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    return code;
}

int crl_fail(crl_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fail_v(err, code, -1, -1, -1, -1, fmt, ap);
    va_end(ap);
    return rc;
}

int crl_fail_at(crl_error *err, int code, int role, int64_t b, int64_t t, int64_t i,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fail_v(err, code, role, b, t, i, fmt, ap);
    va_end(ap);
    return rc;
}
