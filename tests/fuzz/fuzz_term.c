/*
 * fuzz_term.c - the --term parser (src/cli/term_spec.c) on any text: it either
 * adds exactly one term, whose specification written back
 * (NAME=TYPE:params,lambda=x) parses to the same term, or fails with a
 * message and adds nothing.  The same text twice is a duplicate name.
 */
#include "fuzz_terms.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *spec = fuzz_copy(data, size, 1);
    cli_terms terms = {0};
    crl_error err = {0};
    int rc = cli_terms_add_spec(&terms, spec, &err);
    if (rc != CRL_OK) {
        fuzz_require(err.code == rc && terms.count == 0);
        fuzz_require_message(err);
    } else {
        fuzz_require(terms.count == 1);
        fuzz_check_term(&terms.items[0]);

        crl_error err2 = {0};
        fuzz_require(cli_terms_add_spec(&terms, spec, &err2) == CRL_ERR_INVALID);
        fuzz_require(terms.count == 1 && strstr(err2.message, "is already used") != NULL);
    }
    cli_terms_free(&terms);
    free(spec);
    return 0;
}
