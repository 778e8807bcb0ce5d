/*
 * report.c - what ctrnn-loss prints: errors on rank 0, the catalogue of term
 * types, loss values as JSON or as a table, and the progress bar.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include <unistd.h>

void cli_error(const crl_context *ctx, const char *fmt, ...)
{
    if (crl_context_rank(ctx) != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("ctrnn-loss: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}

const char *cli_context_error(const crl_context *ctx)
{
    crl_error_info info;
    const char *message = crl_context_error(ctx);
    /* The library names the failing rank unless every rank failed alike; at
     * one rank that is always rank 0, which P ranks finding the same
     * would not name. */
    if (crl_context_size(ctx) == 1 && crl_context_error_info(ctx, &info) == CRL_OK
        && info.rank == 0 && strncmp(message, "rank 0: ", 8) == 0)
        return message + 8;
    return message;
}

bool cli_parse_count(const char *text, int64_t min, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || v < min)
        return false;
    *out = v;
    return true;
}

bool cli_parse_size(const char *text, int64_t *out)
{
    /* strtoll alone would take leading blanks and signs. */
    if (text[0] < '0' || text[0] > '9')
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno == ERANGE || v < 1)
        return false;
    static const char units[] = "KMGT";
    const char *unit = *end != '\0' ? strchr(units, toupper((unsigned char) *end)) : NULL;
    if (unit != NULL) {
        int shift = 10 * (int) (unit - units + 1);
        if (v > INT64_MAX >> shift)
            return false;
        v <<= shift;
        end += strcmp(end + 1, "iB") == 0 ? 3 : 1;
    }
    if (*end != '\0')
        return false;
    *out = v;
    return true;
}

int cli_choice(const char *text, const char *const *choices)
{
    for (int k = 0; choices[k] != NULL; k++)
        if (strcmp(text, choices[k]) == 0)
            return k;
    return -1;
}

int cli_option_failure(const crl_context *ctx, int c, char **argv, const struct option *options,
                       const char *command)
{
    /* getopt_long has moved optind past the offending argument. */
    const char *arg = argv[optind - 1];
    if (c == ':') {
        cli_error(ctx, "%s needs a value", arg);
        return CLI_EXIT_USAGE;
    }
    /* getopt_long (opterr = 0) says '?' for an ambiguous prefix too. */
    if (strncmp(arg, "--", 2) == 0) {
        size_t n = strcspn(arg + 2, "=");
        char candidates[512] = "";
        size_t used = 0;
        int matches = 0;
        for (const struct option *o = options; o->name != NULL; o++)
            if (n > 0 && strncmp(o->name, arg + 2, n) == 0 && used < sizeof candidates) {
                used += (size_t) snprintf(candidates + used, sizeof candidates - used, "%s--%s",
                                          matches ? ", " : "", o->name);
                matches++;
            }
        if (matches > 1) {
            cli_error(ctx, "option '%.*s' is ambiguous: it could be %s", (int) n + 2, arg,
                      candidates);
            return CLI_EXIT_USAGE;
        }
    }
    cli_error(ctx, "unknown option '%s'; see ctrnn-loss %s --help", arg, command);
    return CLI_EXIT_USAGE;
}

const char *cli_dtype_name(crl_dtype dtype)
{
    return dtype == CRL_FLOAT32 ? "float32" : dtype == CRL_FLOAT64 ? "float64" : "unknown";
}

/* ------------------------------------------------------------------------ */

/* The default value of a parameter as its text. */
static void format_default(const crl_param_info *info, char *out, size_t cap)
{
    if (info->kind == CRL_PARAM_BOOL)
        snprintf(out, cap, "%s", info->default_value != 0 ? "true" : "false");
    else if (info->kind == CRL_PARAM_CHOICE)
        snprintf(out, cap, "%s", info->choices[(int) info->default_value]);
    else
        snprintf(out, cap, "%.17g", info->default_value);
}

/* The values a parameter takes: "true|false", "l1|l2", "real in [0, 1]". */
static void format_range(const crl_param_info *info, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    if (info->kind == CRL_PARAM_BOOL) {
        snprintf(out, cap, "true|false");
    } else if (info->kind == CRL_PARAM_CHOICE) {
        for (int k = 0; info->choices[k] != NULL && n < cap; k++)
            n += (size_t) snprintf(out + n, cap - n, "%s%s", k ? "|" : "", info->choices[k]);
    } else {
        n = (size_t) snprintf(out, cap, "%s", info->kind == CRL_PARAM_INT ? "integer" : "real");
        bool low = info->min > -DBL_MAX, high = info->max < DBL_MAX;
        if ((low || high) && n < cap) {
            char lo[32] = "", hi[32] = "";
            if (low)
                snprintf(lo, sizeof lo, "%g", info->min);
            if (high)
                snprintf(hi, sizeof hi, "%g", info->max);
            snprintf(out + n, cap - n, " in [%s, %s]", lo, hi);
        }
    }
}

void cli_print_types(FILE *out)
{
    for (int k = 0; k < crl_term_type_count(); k++) {
        const char *type = crl_term_type_name(k);
        fprintf(out, "%-14s %s\n", type, crl_term_type_summary(k));
        fprintf(out, "    %-13s %-24s %-8s %s\n", CLI_WEIGHT_KEY, "real", "1",
                "the term's weight lambda_k");
        const crl_param_info *info;
        for (int j = 0; (info = crl_term_type_param(type, j)) != NULL; j++) {
            char range[128], def[64];
            format_range(info, range, sizeof range);
            format_default(info, def, sizeof def);
            fprintf(out, "    %-13s %-24s %-8s %s\n", info->key, range, def,
                    info->help ? info->help : "");
        }
    }
}

/* ------------------------------------------------------------------------ */

static void print_number(FILE *out, double x)
{
    if (isfinite(x))
        fprintf(out, "%.17g", x);
    else
        fputs("null", out);
}

const char *const cli_phase_names[CLI_PHASES] = {
    [CLI_PHASE_STARTUP] = "startup",       [CLI_PHASE_READ] = "read",
    [CLI_PHASE_ACCUMULATE] = "accumulate", [CLI_PHASE_REDUCE] = "reduce",
    [CLI_PHASE_BACKWARD] = "backward",     [CLI_PHASE_WRITE] = "write",
    [CLI_PHASE_TOTAL] = "total",
};

void cli_print_json(FILE *out, const crl_loss *loss, const cli_meta *meta,
                    const double *timing)
{
    cli_print_json_decomposed(out, loss, meta, NULL, timing);
}

void cli_print_json_decomposed(FILE *out, const crl_loss *loss, const cli_meta *meta,
                               const int64_t *decomposition, const double *timing)
{
    fputs("{\"total\": ", out);
    print_number(out, crl_loss_total(loss));
    fputs(", \"terms\": {", out);
    for (int64_t k = 0; k < crl_loss_value_count(loss); k++) {
        int64_t length = 0;
        const double *v = crl_loss_value(loss, k, &length);
        /* Names are letters, digits, '_', '-' and '.': nothing to escape. */
        fprintf(out, "%s\"%s\": ", k ? ", " : "", crl_loss_value_name(loss, k));
        if (length == 1) {
            print_number(out, v[0]);
            continue;
        }
        fputc('[', out);
        for (int64_t i = 0; i < length; i++) {
            if (i)
                fputs(", ", out);
            print_number(out, v[i]);
        }
        fputc(']', out);
    }
    fprintf(out,
            "}, \"meta\": {\"ranks\": %d, \"batch\": %lld, \"time\": %lld, \"neurons\": %lld, "
            "\"dtype\": \"%s\"",
            meta->ranks, (long long) meta->batch, (long long) meta->time,
            (long long) meta->neurons, cli_dtype_name(meta->dtype));
    if (decomposition != NULL)
        fprintf(out, ", \"decomposition\": {\"batch\": %lld, \"time\": %lld}",
                (long long) decomposition[0], (long long) decomposition[1]);
    fputc('}', out);
    /* Microseconds: finer than a phase's variation from run to run, and the
     * same figures as cli_print_timing's. */
    for (int k = 0; timing != NULL && k < CLI_PHASES; k++)
        fprintf(out, "%s\"%s\": %.6f", k ? ", " : ", \"timing\": {", cli_phase_names[k],
                timing[k]);
    fputs(timing != NULL ? "}}\n" : "}\n", out);
}

void cli_print_timing(FILE *out, const double *timing, int ranks)
{
    fprintf(out, "ctrnn-loss eval: timing in seconds, the maximum over %d rank(s):\n", ranks);
    for (int k = 0; k < CLI_PHASES; k++)
        fprintf(out, "  %-12s %.6f\n", cli_phase_names[k], timing[k]);
    fflush(out);
}

void cli_print_table(FILE *out, const crl_loss *loss)
{
    fprintf(out, "  %-28s %s\n", "term", "value (weighted by lambda)");
    for (int64_t k = 0; k < crl_loss_value_count(loss); k++) {
        int64_t length = 0;
        const double *v = crl_loss_value(loss, k, &length);
        const char *name = crl_loss_value_name(loss, k);
        bool part = strchr(name, '.') != NULL;
        fprintf(out, "  %s%-*s ", part ? "  " : "", part ? 26 : 28, name);
        if (length == 1) {
            fprintf(out, "%.10g\n", v[0]);
            continue;
        }
        fprintf(out, "[%lld values]", (long long) length);
        for (int64_t i = 0; i < length && i < 6; i++)
            fprintf(out, " %.6g", v[i]);
        fputs(length > 6 ? " ...\n" : "\n", out);
    }
    fprintf(out, "  %-28s %.10g\n", "total", crl_loss_total(loss));
}

/* ------------------------------------------------------------------------ */

/* In auto mode a bar appears after this many seconds of work. */
#define PROGRESS_DELAY 1.0

/*
 * Whether the user sees this process's stderr on a terminal.  Under mpirun
 * a rank's stderr is a pipe to mpirun even then, so the test is: stderr is
 * a terminal, or the job has a controlling terminal (/dev/tty opens; it does
 * not in batch jobs).  With stderr redirected to a file from an interactive
 * shell this guesses wrong: --progress never.
 */
static bool user_terminal(void)
{
    if (isatty(STDERR_FILENO))
        return true;
    int fd = open("/dev/tty", O_WRONLY | O_NOCTTY);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

void cli_progress_start(cli_progress *p, int mode, int rank)
{
    *p = (cli_progress){0};
    p->terminal = rank == 0 && mode != CLI_PROGRESS_NEVER && user_terminal();
    p->enabled = rank == 0 && mode != CLI_PROGRESS_NEVER
                 && (mode == CLI_PROGRESS_ALWAYS || p->terminal);
    p->always = mode == CLI_PROGRESS_ALWAYS;
    p->start = MPI_Wtime();
    p->last = -1;
}

void cli_progress_update(cli_progress *p, const char *what, int64_t done, int64_t total)
{
    if (!p->enabled)
        return;
    double now = MPI_Wtime();
    if (!p->always && now - p->start < PROGRESS_DELAY)
        return;
    if (done < total && p->last >= 0 && now - p->last < 0.1)
        return;
    p->last = now;
    p->shown = true;
    int width = 30, filled = total > 0 ? (int) (width * done / total) : width;
    char bar[32];
    for (int k = 0; k < width; k++)
        bar[k] = k < filled ? '#' : '.';
    bar[width] = '\0';
    /* A terminal shows one line redrawn; a file gets a line per update. */
    fprintf(stderr, "%sctrnn-loss: [%s] %3d%%  %s %lld/%lld  %.1f s%s",
            p->terminal ? "\r" : "", bar, total > 0 ? (int) (100 * done / total) : 100, what,
            (long long) done, (long long) total, now - p->start, p->terminal ? "" : "\n");
    fflush(stderr);
}

void cli_progress_end(cli_progress *p)
{
    if (p->shown && p->terminal) {
        fputc('\n', stderr);
        fflush(stderr);
    }
    p->shown = false;
}
