/*
 * fuzz.h - what the libFuzzer targets share (built by scripts/fuzz with
 * clang -fsanitize=fuzzer,address,undefined, not by make).
 *
 * A target feeds the bytes to a pure parser and checks what must hold on any
 * input: success leaves a consistent result, failure a message and nothing
 * half-built.  A broken promise is a crash (fuzz_require), found and kept by
 * libFuzzer like a sanitizer report.
 */
#ifndef CRL_FUZZ_H
#define CRL_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define fuzz_require(cond)                                                                     \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* The input in a buffer of its exact size, so that AddressSanitizer sees a
 * read one byte past the end; with nul, one more byte holding '\0'. */
static inline char *fuzz_copy(const uint8_t *data, size_t size, int nul)
{
    char *buf = malloc(size + (nul ? 1 : 0) + (size == 0 && !nul));
    fuzz_require(buf != NULL);
    memcpy(buf, data, size);
    if (nul)
        buf[size] = '\0';
    return buf;
}

/* A message is a non-empty NUL-terminated string. */
#define fuzz_require_message(err)                                                               \
    fuzz_require((err).message[0] != '\0' && memchr((err).message, '\0', sizeof (err).message))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
