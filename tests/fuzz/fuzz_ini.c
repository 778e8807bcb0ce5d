/*
 * fuzz_ini.c - the INI parser (src/cli/term_spec.c) on any bytes (not
 * NUL-terminated, as the command passes a file's contents): it either adds
 * at least one term, each of which reads back through the --term parser as
 * the same term, or fails with a message and adds nothing.
 */
#include "fuzz_terms.h"

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
            fuzz_check_term(t);
            for (int j = 0; j < k; j++)
                fuzz_require(strcmp(terms.items[j].name, t->name) != 0);
        }
    }
    cli_terms_free(&terms);
    free(text);
    return 0;
}
