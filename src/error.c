/*
 * error.c - the one way the library records an error.  No MPI here, so that
 * the pure parsers (npy_header.c, params.c, cli/config.c) build without it
 * (tests/fuzz).
 */
#include "internal.h"

#include <stdio.h>

int crl_fail(crl_error *err, int code, const char *fmt, ...)
{
    if (err->code != CRL_OK)
        return err->code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}
