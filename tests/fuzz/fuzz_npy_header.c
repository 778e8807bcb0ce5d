/*
 * fuzz_npy_header.c - the .npy header parser (src/npy_header.c) on any
 * bytes: crl_npy_header_size and crl_npy_parse_header either fail with
 * CRL_ERR_IO and a message, or describe a consistent array (counts and byte
 * sizes that are the checked products of the shape), whose header
 * crl_npy_format_header writes again and the parser reads back the same.
 */
#include "fuzz.h"

#include "npy.h"

static void check_header(const crl_npy_header *h, size_t len)
{
    fuzz_require(h->major >= 1 && h->major <= 3 && h->minor == 0);
    fuzz_require(h->dtype == CRL_FLOAT32 || h->dtype == CRL_FLOAT64);
    fuzz_require(h->ndim >= 0 && h->ndim <= CRL_NPY_MAX_DIMS);
    fuzz_require(h->data_offset >= 10 && (uint64_t) h->data_offset <= len);
    int64_t count = 1;
    for (int k = 0; k < h->ndim; k++) {
        fuzz_require(h->shape[k] >= 0);
        fuzz_require(!__builtin_mul_overflow(count, h->shape[k], &count));
    }
    fuzz_require(count == h->count);
    fuzz_require(h->data_bytes == count * (int64_t) crl_dtype_size(h->dtype));
}

/* What the formatter writes for a parsed header reads back the same. */
static void check_round_trip(const crl_npy_header *h)
{
    char text[1024];
    size_t len = 0;
    crl_error err = {0};
    if (crl_npy_format_header(h->dtype, h->ndim, h->shape, text, sizeof text, &len, &err)
        != CRL_OK) {
        /* Only a shape whose text does not fit may be refused. */
        fuzz_require(err.code == CRL_ERR_INVALID);
        fuzz_require_message(err);
        return;
    }
    fuzz_require(len % 64 == 0 && len <= sizeof text);
    crl_npy_header again;
    crl_error err2 = {0};
    fuzz_require(crl_npy_parse_header(text, len, &again, &err2) == CRL_OK);
    fuzz_require(again.dtype == h->dtype && again.ndim == h->ndim && !again.fortran_order);
    fuzz_require(memcmp(again.shape, h->shape, sizeof h->shape[0] * (size_t) h->ndim) == 0);
    fuzz_require(again.count == h->count && again.data_bytes == h->data_bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size, 0);
    crl_error err = {0};
    int64_t header_size = -1;
    int rc = crl_npy_header_size(buf, size, &header_size, &err);
    if (rc == CRL_OK)
        fuzz_require(header_size >= 10 && header_size <= 12 + CRL_NPY_MAX_HEADER);
    else
        fuzz_require(rc == CRL_ERR_IO && err.code == rc);

    crl_npy_header h;
    crl_error err2 = {0};
    rc = crl_npy_parse_header(buf, size, &h, &err2);
    if (rc == CRL_OK) {
        fuzz_require(err2.code == CRL_OK && header_size >= 0 && h.data_offset == header_size);
        check_header(&h, size);
        check_round_trip(&h);
    } else {
        fuzz_require(rc == CRL_ERR_IO && err2.code == rc);
        fuzz_require_message(err2);
    }
    free(buf);
    return 0;
}
