/*
 * npy_header.c - NumPy .npy headers: the pure parser and formatter (see
 * npy.h).  No I/O and no MPI, so that the parser builds and is fuzzed on its
 * own (tests/fuzz); the MPI-IO functions built on it are in npy.c.
 *
 * Format (numpy/lib/format.py): the magic "\x93NUMPY", two version bytes,
 * the header length (2 bytes little-endian in version 1.0, 4 bytes in 2.0
 * and 3.0), then a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and ending in a newline; the data follows.
 */
#include "npy.h"

#include <stdio.h>
#include <string.h>

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* ------------------------------------------------------------------------ */
/* Parsing (pure)                                                             */
/* ------------------------------------------------------------------------ */

/* Up to 24 bytes of the line at p as printable ASCII, others as \xNN, and
 * "..." if more than blanks follow. */
static void snippet(const char *p, const char *end, char *out, size_t cap)
{
    size_t n = 0;
    for (int k = 0; k < 24 && p < end && *p != '\n' && n + 5 < cap; k++, p++) {
        unsigned char c = (unsigned char) *p;
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[n++] = (char) c;
        else
            n += (size_t) snprintf(out + n, cap - n, "\\x%02x", c);
    }
    while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\t'))
        n--;
    const char *rest = p;
    while (rest < end && (*rest == ' ' || *rest == '\t' || *rest == '\n' || *rest == '\r'))
        rest++;
    if (rest < end && n + 4 < cap) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

int crl_npy_header_size(const char *buf, size_t len, int64_t *size, crl_error *err)
{
    size_t have = len < sizeof npy_magic ? len : sizeof npy_magic;
    if (memcmp(buf, npy_magic, have) != 0)
        return crl_fail(err, CRL_ERR_IO, "not a .npy file (bad magic string)");
    if (len < 8)
        return crl_fail(err, CRL_ERR_IO, "truncated header: the file has only %zu bytes", len);
    int major = (unsigned char) buf[6], minor = (unsigned char) buf[7];
    if (major < 1 || major > 3 || minor != 0)
        return crl_fail(err, CRL_ERR_IO, "unsupported .npy format version %d.%d (1.0 to 3.0)",
                        major, minor);
    size_t preamble = major == 1 ? 10 : 12;
    if (len < preamble)
        return crl_fail(err, CRL_ERR_IO, "truncated header: the file has only %zu bytes", len);
    const unsigned char *u = (const unsigned char *) buf;
    uint64_t length = major == 1 ? (uint64_t) u[8] | (uint64_t) u[9] << 8
                                 : (uint64_t) u[8] | (uint64_t) u[9] << 8
                                       | (uint64_t) u[10] << 16 | (uint64_t) u[11] << 24;
    if (length > CRL_NPY_MAX_HEADER)
        return crl_fail(err, CRL_ERR_IO, "header length %llu exceeds the limit of %d bytes",
                        (unsigned long long) length, CRL_NPY_MAX_HEADER);
    *size = (int64_t) (preamble + length);
    return CRL_OK;
}

/* A cursor over the dictionary text. */
typedef struct cursor {
    const char *p, *begin, *end;
    crl_error *err;
} cursor;

static void skip_space(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int malformed(cursor *c, const char *expected)
{
    char near[128];
    snippet(c->p, c->end, near, sizeof near);
    if (c->p >= c->end)
        return crl_fail(c->err, CRL_ERR_IO, "malformed header: expected %s at its end", expected);
    return crl_fail(c->err, CRL_ERR_IO, "malformed header: expected %s at byte %lld, found '%s'",
                    expected, (long long) (c->p - c->begin), near);
}

static bool accept(cursor *c, char ch)
{
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted string without escapes; out holds up to cap - 1 bytes of it. */
static int parse_string(cursor *c, char *out, size_t cap)
{
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return malformed(c, "a quoted string");
    char quote = *c->p++;
    const char *start = c->p;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || *c->p == '\n' || *c->p == '\0')
            return malformed(c, "a plain string (no escapes or line breaks)");
        c->p++;
    }
    if (c->p >= c->end)
        return malformed(c, "a closing quote");
    size_t n = (size_t) (c->p - start);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, start, n);
    out[n] = '\0';
    c->p++;
    return CRL_OK;
}

static bool starts_with(const cursor *c, const char *word)
{
    size_t n = strlen(word);
    return (size_t) (c->end - c->p) >= n && memcmp(c->p, word, n) == 0;
}

static int parse_bool(cursor *c, bool *out)
{
    skip_space(c);
    if (starts_with(c, "True")) {
        c->p += 4;
        *out = true;
    } else if (starts_with(c, "False")) {
        c->p += 5;
        *out = false;
    } else {
        return malformed(c, "True or False");
    }
    return CRL_OK;
}

/* A non-negative decimal integer (Python 2's 'L' suffix tolerated). */
static int parse_dimension(cursor *c, int64_t *out)
{
    skip_space(c);
    if (c->p < c->end && *c->p == '-')
        return malformed(c, "a non-negative dimension");
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return malformed(c, "a dimension");
    const char *start = c->p, *digits_end = c->p;
    while (digits_end < c->end && *digits_end >= '0' && *digits_end <= '9')
        digits_end++;
    int64_t v = 0;
    for (; c->p < digits_end; c->p++)
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *c->p - '0', &v)) {
            char digits[128];
            snippet(start, digits_end, digits, sizeof digits);
            return crl_fail(c->err, CRL_ERR_IO,
                            "shape: dimension '%s' does not fit in 64 bits", digits);
        }
    if (c->p < c->end && *c->p == 'L')
        c->p++;
    *out = v;
    return CRL_OK;
}

/* A tuple of dimensions: (), (n,), (n, m), with an optional trailing comma. */
static int parse_shape(cursor *c, crl_npy_header *h)
{
    skip_space(c);
    if (c->p >= c->end || *c->p != '(')
        return malformed(c, "a shape tuple");
    c->p++;
    h->ndim = 0;
    bool comma = false;
    while (!accept(c, ')')) {
        if (h->ndim > 0 && !comma)
            return malformed(c, "',' or ')' in the shape");
        if (h->ndim == CRL_NPY_MAX_DIMS)
            return crl_fail(c->err, CRL_ERR_IO, "shape has more than %d dimensions",
                            CRL_NPY_MAX_DIMS);
        if (parse_dimension(c, &h->shape[h->ndim]) != CRL_OK)
            return c->err->code;
        h->ndim++;
        comma = accept(c, ',');
    }
    if (h->ndim == 1 && !comma)
        return crl_fail(c->err, CRL_ERR_IO, "shape (%lld) is not a tuple: write (%lld,)",
                        (long long) h->shape[0], (long long) h->shape[0]);
    return CRL_OK;
}

/* "(2, 3)" for messages. */
static void format_shape(const int64_t *shape, int ndim, char *out, size_t cap)
{
    size_t n = (size_t) snprintf(out, cap, "(");
    for (int k = 0; k < ndim && n < cap; k++)
        n += (size_t) snprintf(out + n, cap - n, "%s%lld", k ? ", " : "", (long long) shape[k]);
    if (n < cap)
        snprintf(out + n, cap - n, ndim == 1 ? ",)" : ")");
}

static int parse_descr(cursor *c, crl_npy_header *h)
{
    skip_space(c);
    if (c->p < c->end && *c->p == '[')
        return crl_fail(c->err, CRL_ERR_IO,
                        "unsupported dtype: a structured array (need '<f4' or '<f8')");
    char descr[64];
    if (parse_string(c, descr, sizeof descr) != CRL_OK)
        return c->err->code;
    if (strcmp(descr, "<f4") == 0)
        h->dtype = CRL_FLOAT32;
    else if (strcmp(descr, "<f8") == 0)
        h->dtype = CRL_FLOAT64;
    else
        return crl_fail(c->err, CRL_ERR_IO,
                        "unsupported dtype '%s' (need '<f4' float32 or '<f8' float64, "
                        "little-endian)",
                        descr);
    return CRL_OK;
}

int crl_npy_parse_header(const char *buf, size_t len, crl_npy_header *h, crl_error *err)
{
    int64_t size;
    *h = (crl_npy_header){0};
    if (crl_npy_header_size(buf, len, &size, err) != CRL_OK)
        return err->code;
    if ((uint64_t) size > len)
        return crl_fail(err, CRL_ERR_IO, "truncated header: %lld bytes announced, %zu present",
                        (long long) size, len);
    h->major = (unsigned char) buf[6];
    h->minor = (unsigned char) buf[7];
    h->data_offset = size;
    size_t preamble = h->major == 1 ? 10 : 12;
    cursor c = {buf + preamble, buf + preamble, buf + size, err};

    skip_space(&c);
    if (c.p >= c.end || *c.p != '{') {
        char near[128];
        snippet(c.p, c.end, near, sizeof near);
        return crl_fail(err, CRL_ERR_IO, "header is not a dictionary: '%s'", near);
    }
    c.p++;
    bool seen[3] = {false, false, false};
    static const char *const keys[3] = {"descr", "fortran_order", "shape"};
    bool comma = true;
    while (!accept(&c, '}')) {
        if (!comma)
            return malformed(&c, "',' or '}'");
        char key[64];
        if (parse_string(&c, key, sizeof key) != CRL_OK)
            return err->code;
        int k = 0;
        while (k < 3 && strcmp(key, keys[k]) != 0)
            k++;
        if (k == 3)
            return crl_fail(err, CRL_ERR_IO, "unknown key '%s' in the header", key);
        if (seen[k])
            return crl_fail(err, CRL_ERR_IO, "key '%s' appears twice in the header", key);
        seen[k] = true;
        if (!accept(&c, ':'))
            return malformed(&c, "':'");
        int rc = k == 0 ? parse_descr(&c, h) : k == 1 ? parse_bool(&c, &h->fortran_order)
                                                      : parse_shape(&c, h);
        if (rc != CRL_OK)
            return rc;
        comma = accept(&c, ',');
    }
    skip_space(&c);
    if (c.p < c.end)
        return malformed(&c, "only spaces after the dictionary");
    for (int k = 0; k < 3; k++)
        if (!seen[k])
            return crl_fail(err, CRL_ERR_IO, "the header has no '%s'", keys[k]);

    int64_t count = 1, bytes, end;
    for (int k = 0; k < h->ndim; k++)
        if (__builtin_mul_overflow(count, h->shape[k], &count)) {
            char shape[256];
            format_shape(h->shape, h->ndim, shape, sizeof shape);
            return crl_fail(err, CRL_ERR_IO, "shape %s overflows: more than 2^63 elements", shape);
        }
    if (__builtin_mul_overflow(count, (int64_t) crl_dtype_size(h->dtype), &bytes)
        || __builtin_add_overflow(bytes, size, &end)) {
        char shape[256];
        format_shape(h->shape, h->ndim, shape, sizeof shape);
        return crl_fail(err, CRL_ERR_IO, "shape %s overflows: more than 2^63 bytes", shape);
    }
    h->count = count;
    h->data_bytes = bytes;
    return CRL_OK;
}

int crl_npy_format_header(crl_dtype dtype, int ndim, const int64_t *shape, char *buf, size_t cap,
                          size_t *len, crl_error *err)
{
    if (crl_dtype_size(dtype) == 0 || ndim < 0 || ndim > CRL_NPY_MAX_DIMS)
        return crl_fail(err, CRL_ERR_INVALID, "cannot describe dtype %d with %d dimensions",
                        (int) dtype, ndim);
    for (int k = 0; k < ndim; k++)
        if (shape[k] < 0)
            return crl_fail(err, CRL_ERR_INVALID, "negative dimension %lld", (long long) shape[k]);
    char dict[1024], dims[800];
    format_shape(shape, ndim, dims, sizeof dims);
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     dtype == CRL_FLOAT32 ? "<f4" : "<f8", dims);
    /* Spaces and a newline up to a multiple of 64 bytes, as NumPy pads. */
    size_t total = 10 + (size_t) n + 1;
    total = (total + 63) / 64 * 64;
    if (n < 0 || (size_t) n >= sizeof dict || total > cap || total - 10 > 65535)
        return crl_fail(err, CRL_ERR_INVALID, "the .npy header does not fit in %zu bytes", cap);
    size_t length = total - 10;
    memcpy(buf, npy_magic, sizeof npy_magic);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char) (length & 0xff);
    buf[9] = (char) (length >> 8);
    memcpy(buf + 10, dict, (size_t) n);
    memset(buf + 10 + n, ' ', length - (size_t) n - 1);
    buf[total - 1] = '\n';
    *len = total;
    return CRL_OK;
}
