/*
 * cli.h - what the files of the ctrnn-loss command share: the commands, exit
 * statuses, messages on rank 0, the reports (JSON, table, catalogue of term
 * types) and the progress bar.
 */
#ifndef CRL_CLI_H
#define CRL_CLI_H

#include "cli/term_spec.h"
#include "internal.h"
#include "npy.h"

#include <stdio.h>

/* Exit statuses, the same on every rank. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILED = 1,   /* an input file, the I/O or the evaluation failed */
    CLI_EXIT_USAGE = 2     /* the command line, a term or a config file is wrong */
};

/* Collective.  The commands: every rank runs them with the same arguments
 * (argv[0] is the command's name) and returns the same exit status. */
int cli_eval(crl_context *ctx, int argc, char **argv);
int cli_demo(crl_context *ctx, int argc, char **argv);

/* Not collective.  Prints "ctrnn-loss: error: ..." to stderr on rank 0 only. */
void cli_error(const crl_context *ctx, const char *fmt, ...) CRL_PRINTF(2, 3);

/* Not collective.  The context's error message as the command reports it:
 * without the library's "rank 0: " at one rank, so that a message does not
 * depend on the rank count. */
const char *cli_context_error(const crl_context *ctx);

/* Not collective.  The catalogue of term types with their parameters. */
void cli_print_types(FILE *out);

/* Not collective.  Parses a whole number >= min from an option's text. */
bool cli_parse_count(const char *text, int64_t min, int64_t *out);

/* Not collective.  Parses a size in bytes >= 1 from an option's text: a
 * whole number, optionally followed by K, M, G or T (or KiB ... TiB; powers
 * of 1024, either case), e.g. 64M; false when malformed or beyond int64_t. */
bool cli_parse_size(const char *text, int64_t *out);

/* Not collective.  The index of text among the NULL-terminated choices, or
 * -1. */
int cli_choice(const char *text, const char *const *choices);

/* Not collective.  Reports what getopt_long returned for a bad argument
 * (':' a missing value, anything else an unknown option, or a prefix of
 * several of options, named) of command; returns CLI_EXIT_USAGE. */
struct option;
int cli_option_failure(const crl_context *ctx, int c, char **argv, const struct option *options,
                       const char *command);

/* ------------------------------------------------------------------------ */
/* Reports (rank 0)                                                           */
/* ------------------------------------------------------------------------ */

typedef struct cli_meta {
    int ranks;
    int64_t batch, time, neurons;
    crl_dtype dtype;
} cli_meta;

const char *cli_dtype_name(crl_dtype dtype);

/* The phases `eval --timing` reports, in the order printed; CLI_PHASE_TOTAL
 * is the whole run from before MPI_Init. */
enum {
    CLI_PHASE_STARTUP,
    CLI_PHASE_READ,
    CLI_PHASE_ACCUMULATE,
    CLI_PHASE_REDUCE,
    CLI_PHASE_BACKWARD,
    CLI_PHASE_WRITE,
    CLI_PHASE_TOTAL,
    CLI_PHASES
};
/* The names of the phases: the JSON keys and the stderr labels. */
extern const char *const cli_phase_names[CLI_PHASES];

/* main.c: the seconds MPI_Init took on this rank, and MPI_Wtime() right
 * after it.  Globals because start-up happens before any command runs and
 * only --timing asks about it. */
extern double cli_startup_seconds, cli_started;

/* One line of JSON: {"total": x, "terms": {...}, "meta": {...}}, numbers with
 * 17 significant digits (null if not finite); with timing (seconds per
 * phase, not NULL), a "timing" object after "meta". */
void cli_print_json(FILE *out, const crl_loss *loss, const cli_meta *meta,
                    const double *timing);
/* The same with the decomposition (not NULL: ranks along the batch and
 * along the time) as "decomposition": {"batch": Pb, "time": Pt} at the end
 * of "meta".  (Not a field of cli_meta: tests/npy-tool's reference fills
 * one in without it.) */
void cli_print_json_decomposed(FILE *out, const crl_loss *loss, const cli_meta *meta,
                               const int64_t *decomposition, const double *timing);

/* The seconds per phase, one a line, for ranks ranks (the maximum over
 * them). */
void cli_print_timing(FILE *out, const double *timing, int ranks);

/* The values of the last evaluation as a table, then the total. */
void cli_print_table(FILE *out, const crl_loss *loss);

/* ------------------------------------------------------------------------ */
/* Progress bar (rank 0, stderr)                                              */
/* ------------------------------------------------------------------------ */

enum { CLI_PROGRESS_AUTO, CLI_PROGRESS_ALWAYS, CLI_PROGRESS_NEVER };

typedef struct cli_progress {
    bool enabled;      /* rank 0 and not "never"                           */
    bool always;       /* show from the start, even when not a terminal    */
    bool terminal;     /* the user's terminal shows it: redraw one line    */
    bool shown;
    double start, last;
} cli_progress;

void cli_progress_start(cli_progress *p, int mode, int rank);
/* Step done of total in the phase called what. */
void cli_progress_update(cli_progress *p, const char *what, int64_t done, int64_t total);
void cli_progress_end(cli_progress *p);

#endif /* CRL_CLI_H */
