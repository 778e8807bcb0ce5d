/*
 * fuzz_ini.c - the INI parser (src/cli/config.c) on any bytes (not
 * NUL-terminated, as the command passes a file's contents): it either adds
 * at least one term, each of which reads back through the --term parser as
 * the same term, or fails with a message and adds nothing.
 */
#include "fuzz.h"

#include "cli/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_copy(data, size, 0);
    cli_terms terms = {0};
    crl_error err = {0};
    int rc = cli_terms_add_ini(&terms, text, size, "fuzz.ini", &err);
    if (rc != CRL_OK) {
        fuzz_require(err.code == rc && terms.count == 0);
        fuzz_require_message(err);
    } else {
        fuzz_require(terms.count >= 1);
        for (int k = 0; k < terms.count; k++) {
            const cli_term *t = &terms.items[k];
            fuzz_require(crl_term_name_valid(t->name) && crl_term_class_find(t->type) != NULL);
            for (int j = 0; j < k; j++)
                fuzz_require(strcmp(terms.items[j].name, t->name) != 0);
            char spec[4096];
            int n = snprintf(spec, sizeof spec, "%s=%s:%s%slambda=%.17g", t->name, t->type,
                             t->params, t->params[0] ? "," : "", t->weight);
            fuzz_require(n > 0 && (size_t) n < sizeof spec);
            cli_terms copy = {0};
            crl_error err2 = {0};
            fuzz_require(cli_terms_add_spec(&copy, spec, &err2) == CRL_OK && copy.count == 1);
            fuzz_require(strcmp(copy.items[0].params, t->params) == 0);
            fuzz_require(copy.items[0].weight == t->weight);
            cli_terms_free(&copy);
        }
    }
    cli_terms_free(&terms);
    free(text);
    return 0;
}
