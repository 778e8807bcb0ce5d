/*
 * term_spec.h - the terms of a loss as the command line gives them: --term
 * 'NAME=TYPE:key=value,...' and INI files with one [NAME] section per term.
 *
 * Pure functions over text (no I/O, no MPI), checked against the catalogue of
 * term types, so that every rank parses the same text to the same terms and
 * the parsers can be fuzzed.
 */
#ifndef CRL_CLI_TERM_SPEC_H
#define CRL_CLI_TERM_SPEC_H

#include "internal.h"

/* One term, ready for crl_loss_add(loss, name, type, weight, params). */
typedef struct cli_term {
    char name[64];
    char type[64];
    double weight;          /* "lambda", default 1                          */
    char *params;           /* "key=value,..." without lambda (owned)       */
    char source[200];       /* where it was defined, for messages           */
} cli_term;

typedef struct cli_terms {
    cli_term *items;
    int count, cap;
} cli_terms;

/* The key that sets a term's weight lambda_k, for every type. */
#define CLI_WEIGHT_KEY "lambda"

/*
 * Not collective; pure.  Appends the term of one --term argument,
 * "NAME=TYPE" or "NAME=TYPE:key=value,key=value" ("TYPE[:...]" alone names
 * the term after its type).  Keys are the type's parameters (crl_term_type_param)
 * and "lambda"; every value is checked.  CRL_ERR_INVALID with a message
 * naming the offending text.
 */
int cli_terms_add_spec(cli_terms *terms, const char *spec, crl_error *err);

/*
 * Not collective; pure.  Appends the terms of an INI text of len bytes (not
 * necessarily NUL-terminated): one [NAME] section per term, in order, with
 * "type = TYPE", optionally "lambda = x", and the type's parameters as
 * "key = value" lines.  '#' or ';' start a comment (at the start of a line or
 * after a space).  file names the text in messages ("FILE:LINE: ...").
 */
int cli_terms_add_ini(cli_terms *terms, const char *text, size_t len, const char *file,
                      crl_error *err);

/* Not collective.  Frees the terms' memory and empties the list. */
void cli_terms_free(cli_terms *terms);

#endif /* CRL_CLI_TERM_SPEC_H */
