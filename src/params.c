/*
 * params.c - the text of a term: its name, and its parameters' "key=value"
 * text and range checks, driven by each term type's table of
 * crl_param_info.  Pure (no MPI): the command's parsers use it (tests/fuzz).
 */
#include "internal.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool crl_term_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof ((crl_term *) 0)->name)
        return false;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')
              || *c == '_' || *c == '-'))
            return false;
    return true;
}

int crl_param_validate(const crl_param_info *info, double value, crl_error *err)
{
    switch (info->kind) {
    case CRL_PARAM_BOOL:
        if (value != 0.0 && value != 1.0)
            return crl_fail(err, CRL_ERR_INVALID, "parameter %s: %g is not a boolean", info->key,
                            value);
        return CRL_OK;
    case CRL_PARAM_CHOICE: {
        int count = 0;
        while (info->choices[count] != NULL)
            count++;
        if (value != floor(value) || value < 0 || value >= count)
            return crl_fail(err, CRL_ERR_INVALID, "parameter %s: choice index %g out of range",
                            info->key, value);
        return CRL_OK;
    }
    case CRL_PARAM_INT:
        if (value != floor(value))
            return crl_fail(err, CRL_ERR_INVALID, "parameter %s: %g is not an integer", info->key,
                            value);
        /* fall through */
    case CRL_PARAM_REAL:
        if (!isfinite(value) || value < info->min || value > info->max)
            return crl_fail(err, CRL_ERR_INVALID, "parameter %s: %.17g is outside [%g, %g]",
                            info->key, value, info->min, info->max);
        return CRL_OK;
    }
    return crl_fail(err, CRL_ERR_INVALID, "parameter %s: unknown kind", info->key);
}

int crl_parse_decimal(const char *text, const char *what, double *value, crl_error *err)
{
    /* [+-] digits [. digits] [(e|E) [+-] digits], at least one digit before
     * the exponent: no hexadecimal, inf or nan, which strtod would take. */
    const char *p = text;
    int digits = 0;
    p += *p == '+' || *p == '-';
    for (; *p >= '0' && *p <= '9'; p++)
        digits++;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            digits++;
    if (digits > 0 && (*p == 'e' || *p == 'E')) {
        p++;
        p += *p == '+' || *p == '-';
        if (*p < '0' || *p > '9')
            digits = 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (digits == 0 || *p != '\0')
        return crl_fail(err, CRL_ERR_INVALID, "%s: '%s' is not a number (a decimal number such "
                        "as 0.5 or 1e-3)", what, text);
    errno = 0;
    double v = strtod(text, NULL);
    if (errno == ERANGE || (v != 0 && fabs(v) < DBL_MIN))
        return crl_fail(err, CRL_ERR_INVALID, "%s: '%s' is out of range: a number is 0 or of "
                        "magnitude from %.17g to %.17g", what, text, DBL_MIN, DBL_MAX);
    *value = v;
    return CRL_OK;
}

int crl_param_parse(const crl_param_info *info, const char *text, double *value, crl_error *err)
{
    double v = 0;
    switch (info->kind) {
    case CRL_PARAM_BOOL:
        if (!strcasecmp(text, "true") || !strcmp(text, "1") || !strcasecmp(text, "yes"))
            v = 1;
        else if (!strcasecmp(text, "false") || !strcmp(text, "0") || !strcasecmp(text, "no"))
            v = 0;
        else
            return crl_fail(err, CRL_ERR_INVALID,
                            "parameter %s: '%s' is not a boolean (true or false)", info->key, text);
        break;
    case CRL_PARAM_CHOICE: {
        int k = 0;
        while (info->choices[k] != NULL && strcmp(info->choices[k], text) != 0)
            k++;
        if (info->choices[k] == NULL) {
            char known[256] = "";
            for (int j = 0; info->choices[j] != NULL; j++) {
                strncat(known, j ? ", " : "", sizeof known - strlen(known) - 1);
                strncat(known, info->choices[j], sizeof known - strlen(known) - 1);
            }
            return crl_fail(err, CRL_ERR_INVALID, "parameter %s: unknown value '%s' (one of: %s)",
                            info->key, text, known);
        }
        v = k;
        break;
    }
    case CRL_PARAM_INT:
    case CRL_PARAM_REAL: {
        char what[80];
        snprintf(what, sizeof what, "parameter %s", info->key);
        if (crl_parse_decimal(text, what, &v, err) != CRL_OK)
            return err->code;
        break;
    }
    default:
        return crl_fail(err, CRL_ERR_INVALID, "parameter %s: unknown kind", info->key);
    }
    int rc = crl_param_validate(info, v, err);
    if (rc == CRL_OK)
        *value = v;
    return rc;
}
