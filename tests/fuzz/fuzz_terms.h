/*
 * fuzz_terms.h - the promise the --term and INI targets share: a term the
 * parser accepted has a valid name and a registered type, and its
 * specification written back (NAME=TYPE:params,lambda=x) parses to the same
 * term.
 */
#ifndef CRL_FUZZ_TERMS_H
#define CRL_FUZZ_TERMS_H

#include "fuzz.h"

#include "cli/term_spec.h"

static void fuzz_check_term(const cli_term *t)
{
    fuzz_require(crl_term_name_valid(t->name) && crl_term_class_find(t->type) != NULL);
    char spec[4096];
    int n = snprintf(spec, sizeof spec, "%s=%s:%s%slambda=%.17g", t->name, t->type, t->params,
                     t->params[0] ? "," : "", t->weight);
    fuzz_require(n > 0 && (size_t) n < sizeof spec);
    cli_terms copy = {0};
    crl_error err = {0};
    fuzz_require(cli_terms_add_spec(&copy, spec, &err) == CRL_OK && copy.count == 1);
    fuzz_require(strcmp(copy.items[0].name, t->name) == 0);
    fuzz_require(strcmp(copy.items[0].type, t->type) == 0);
    fuzz_require(strcmp(copy.items[0].params, t->params) == 0);
    fuzz_require(copy.items[0].weight == t->weight);
    cli_terms_free(&copy);
}

#endif
