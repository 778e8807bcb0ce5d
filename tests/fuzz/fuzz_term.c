/*
 * fuzz_term.c - the --term parser (src/cli/config.c) on any text: it either
 * adds exactly one term, whose specification written back
 * (NAME=TYPE:params,lambda=x) parses to the same term, or fails with a
 * message and adds nothing.  The same text twice is a duplicate name.
 */
#include "fuzz.h"

#include "cli/config.h"

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
        fuzz_require(terms.count == 1 && crl_term_name_valid(terms.items[0].name));
        const cli_term *t = &terms.items[0];
        fuzz_require(crl_term_class_find(t->type) != NULL);
        char again[4096];
        int n = snprintf(again, sizeof again, "%s=%s:%s%slambda=%.17g", t->name, t->type,
                         t->params, t->params[0] ? "," : "", t->weight);
        fuzz_require(n > 0 && (size_t) n < sizeof again);
        cli_terms copy = {0};
        crl_error err2 = {0};
        fuzz_require(cli_terms_add_spec(&copy, again, &err2) == CRL_OK && copy.count == 1);
        fuzz_require(strcmp(copy.items[0].name, t->name) == 0);
        fuzz_require(strcmp(copy.items[0].type, t->type) == 0);
        fuzz_require(strcmp(copy.items[0].params, t->params) == 0);
        fuzz_require(copy.items[0].weight == t->weight);
        cli_terms_free(&copy);

        crl_error err3 = {0};
        fuzz_require(cli_terms_add_spec(&terms, spec, &err3) == CRL_ERR_INVALID);
        fuzz_require(terms.count == 1 && strstr(err3.message, "is already used") != NULL);
    }
    cli_terms_free(&terms);
    free(spec);
    return 0;
}
