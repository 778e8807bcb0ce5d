/*
 * eval_options.c - the command line of `ctrnn-loss eval` and its --help.
 */
#include "cli/eval.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char eval_usage[] =
    "usage: mpirun -np P ctrnn-loss eval [INPUTS] (--term SPEC | --config FILE)... [OPTIONS]\n"
    "\n"
    "Evaluates a loss of named terms on NumPy .npy files; rank r reads only its\n"
    "own block of the batch (and of the time steps when B < P; see --decompose).\n"
    "Batched inputs are (B, T, .) arrays, or (T, B, .) with --time-major; weights\n"
    "are 2-D.  float32 ('<f4') or float64 ('<f8'), C order, format 1.0-3.0, one\n"
    "dtype for all inputs.\n"
    "\n"
    "inputs:\n"
    "  --states FILE      firing rates S (B, T, N)\n"
    "  --states1 FILE     second population S1 (B1, T1, N) (population_kl)\n"
    "  --pred FILE        network outputs (B, T, K)\n"
    "  --label FILE       targets (B, T, K)\n"
    "  --mask FILE        output mask (B, T, K) or (B, T, 1) for mse, rnn's mse and\n"
    "                     cross_entropy (no gradient file)\n"
    "  --w-in FILE        input weights (N, N_in)\n"
    "  --w-hid FILE       recurrent weights (N, N)\n"
    "  --w-out FILE       output weights (K, N)\n"
    "  --w-hebb FILE      Hebbian weights (N, N)\n"
    "  --time-major       batched inputs are (T, B, .) instead of (B, T, .)\n"
    "\n"
    "sharding (identical results for every choice):\n"
    "  --decompose HOW    how the P ranks split the (batch, time) plane: auto\n"
    "                     (default: batch when B >= P, else the grid of smallest\n"
    "                     blocks), batch (slices of the batch only), or PbxPt,\n"
    "                     e.g. 2x2: Pb ranks along the batch times Pt along the\n"
    "                     time, Pb*Pt <= P (the ranks beyond hold nothing); rank r\n"
    "                     holds batch slice r / Pt and time range r % Pt, time\n"
    "                     ranges in whole units of 512 steps\n"
    "\n"
    "terms (at least one; added in command-line order):\n"
    "  --term SPEC        NAME=TYPE[:key=value,...], e.g. 'act=fr:metric=l1,lambda=0.1';\n"
    "                     'lambda' is the term's weight (default 1)\n"
    "  --config FILE      INI file, one [NAME] section per term with 'type = TYPE',\n"
    "                     optionally 'lambda = x', and the type's parameters\n"
    "\n"
    "output:\n"
    "  --json             one JSON object {\"total\", \"terms\", \"meta\"} (17 digits)\n"
    "  --grad-dir DIR     write d_states.npy, d_states1.npy, d_pred.npy, d_w_in.npy,\n"
    "                     d_w_hid.npy, d_w_out.npy, d_w_hebb.npy (for each given input)\n"
    "                     as one set: links through DIR/.ctrnn-loss/current, switched\n"
    "                     when every file is written; a failed or interrupted run\n"
    "                     leaves the earlier set; d_*.npy of inputs not given go\n"
    "  --memory SIZE      memory per rank for a chunk of the batched inputs and\n"
    "                     their gradients (default 32M): each rank reads and\n"
    "                     evaluates its block in chunks of as many batch elements\n"
    "                     as fit, or when not one fits, of one element and as many\n"
    "                     units of 512 time steps as fit, at least one; SIZE in\n"
    "                     bytes or with K, M, G, T (powers of 1024), e.g. 512M\n"
    "                     (identical results)\n"
    "  --chunk-batch K    chunks of K batch elements instead, whatever --memory\n"
    "                     says (identical results)\n"
    "  --progress WHEN    progress bar on stderr: auto (when run from a terminal,\n"
    "                     after 1 s of work), always or never (default auto)\n"
    "  --timing           the seconds of each phase on stderr (the maximum over the\n"
    "                     ranks): startup (MPI_Init), read, accumulate, reduce,\n"
    "                     backward, write (gradient files), total; with --json also\n"
    "                     as \"timing\": {...} in the JSON object\n"
    "  -h, --help         show this help\n"
    "\n"
    "exit status: 0 success, 1 an input file, the I/O or the evaluation failed,\n"
    "2 a wrong command line, term specification or config file.\n"
    "\n"
    "term types (TYPE: parameter, values, default):\n";

/* The command-line options of each input, its gradient file, and its shape
 * in words. */
const role_text eval_roles[CRL_ROLE_COUNT] = {
    [CRL_ROLE_STATES] = {"--states", "d_states.npy", "(B, T, N)"},
    [CRL_ROLE_STATES1] = {"--states1", "d_states1.npy", "(B1, T1, N)"},
    [CRL_ROLE_PRED] = {"--pred", "d_pred.npy", "(B, T, K)"},
    [CRL_ROLE_LABEL] = {"--label", NULL, "(B, T, K)"},
    [CRL_ROLE_MASK] = {"--mask", NULL, "(B, T, K) or (B, T, 1)"},
    [CRL_ROLE_W_IN] = {"--w-in", "d_w_in.npy", "(N, N_in)"},
    [CRL_ROLE_W_HID] = {"--w-hid", "d_w_hid.npy", "(N, N)"},
    [CRL_ROLE_W_OUT] = {"--w-out", "d_w_out.npy", "(K, N)"},
    [CRL_ROLE_W_HEBB] = {"--w-hebb", "d_w_hebb.npy", "(N, N)"},
};

enum {
    OPT_ROLE = 1000, /* + role */
    OPT_TIME_MAJOR = 2000,
    OPT_TERM,
    OPT_CONFIG,
    OPT_JSON,
    OPT_GRAD_DIR,
    OPT_CHUNK_BATCH,
    OPT_MEMORY,
    OPT_PROGRESS,
    OPT_TIMING,
    OPT_DECOMPOSE,
};

static const struct option long_options[] = {
    {"states", required_argument, NULL, OPT_ROLE + CRL_ROLE_STATES},
    {"states1", required_argument, NULL, OPT_ROLE + CRL_ROLE_STATES1},
    {"pred", required_argument, NULL, OPT_ROLE + CRL_ROLE_PRED},
    {"label", required_argument, NULL, OPT_ROLE + CRL_ROLE_LABEL},
    {"mask", required_argument, NULL, OPT_ROLE + CRL_ROLE_MASK},
    {"w-in", required_argument, NULL, OPT_ROLE + CRL_ROLE_W_IN},
    {"w-hid", required_argument, NULL, OPT_ROLE + CRL_ROLE_W_HID},
    {"w-out", required_argument, NULL, OPT_ROLE + CRL_ROLE_W_OUT},
    {"w-hebb", required_argument, NULL, OPT_ROLE + CRL_ROLE_W_HEBB},
    {"time-major", no_argument, NULL, OPT_TIME_MAJOR},
    {"term", required_argument, NULL, OPT_TERM},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"json", no_argument, NULL, OPT_JSON},
    {"grad-dir", required_argument, NULL, OPT_GRAD_DIR},
    {"chunk-batch", required_argument, NULL, OPT_CHUNK_BATCH},
    {"memory", required_argument, NULL, OPT_MEMORY},
    {"progress", required_argument, NULL, OPT_PROGRESS},
    {"timing", no_argument, NULL, OPT_TIMING},
    {"decompose", required_argument, NULL, OPT_DECOMPOSE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* --decompose auto, batch or PbxPt (Pb*Pt at most the rank count: the same
 * verdict on every rank). */
static int parse_decompose(crl_context *ctx, const char *text, eval_options *o)
{
    static const char *const words[] = {"auto", "batch", NULL};
    int word = cli_choice(text, words);
    if (word >= 0) {
        o->decompose = word == 0 ? DECOMPOSE_AUTO : DECOMPOSE_BATCH;
        return CLI_EXIT_OK;
    }
    const char *times = strchr(text, 'x');
    char batch[32];
    size_t len = times != NULL ? (size_t) (times - text) : 0;
    if (times == NULL || len == 0 || len >= sizeof batch) {
        cli_error(ctx, "--decompose '%s' is not auto, batch or PbxPt (ranks along the batch x "
                  "along the time, e.g. 2x2)", text);
        return CLI_EXIT_USAGE;
    }
    memcpy(batch, text, len);
    batch[len] = '\0';
    /* cli_parse_count would take a sign or leading blanks. */
    if (batch[0] < '0' || batch[0] > '9' || times[1] < '0' || times[1] > '9'
        || !cli_parse_count(batch, 1, &o->grid_batch)
        || !cli_parse_count(times + 1, 1, &o->grid_time)) {
        cli_error(ctx, "--decompose '%s' is not auto, batch or PbxPt with whole numbers Pb, "
                  "Pt >= 1 (ranks along the batch x along the time, e.g. 2x2)", text);
        return CLI_EXIT_USAGE;
    }
    int ranks = crl_context_size(ctx);
    if (o->grid_batch > ranks || o->grid_time > ranks / o->grid_batch) {
        char need[32] = "more";
        if (o->grid_time <= INT64_MAX / o->grid_batch)
            snprintf(need, sizeof need, "%lld", (long long) (o->grid_batch * o->grid_time));
        cli_error(ctx, "--decompose '%s' needs %s ranks but the run has %d: Pb*Pt must be at "
                  "most the rank count", text, need, ranks);
        return CLI_EXIT_USAGE;
    }
    o->decompose = DECOMPOSE_GRID;
    return CLI_EXIT_OK;
}

/* Returns CLI_EXIT_OK, CLI_EXIT_USAGE, or -1 for --help. */
int eval_parse_options(crl_context *ctx, int argc, char **argv, eval_options *o)
{
    *o = (eval_options){.progress = CLI_PROGRESS_AUTO, .memory = EVAL_MEMORY_DEFAULT};
    o->sources = calloc((size_t) argc, sizeof *o->sources);
    if (o->sources == NULL) {
        cli_error(ctx, "out of memory");
        return CLI_EXIT_FAILED;
    }
    opterr = 0;
    optind = 0; /* full re-initialization (GNU) */
    int c;
    while ((c = getopt_long(argc, argv, "+:h", long_options, NULL)) != -1) {
        if (c >= OPT_ROLE && c < OPT_ROLE + CRL_ROLE_COUNT) {
            int role = c - OPT_ROLE;
            if (o->path[role] != NULL) {
                cli_error(ctx, "%s is given twice", eval_roles[role].option);
                return CLI_EXIT_USAGE;
            }
            o->path[role] = optarg;
            continue;
        }
        switch (c) {
        case OPT_TIME_MAJOR: o->time_major = true; break;
        case OPT_JSON: o->json = true; break;
        case OPT_TIMING: o->timing = true; break;
        case OPT_TERM:
        case OPT_CONFIG:
            o->sources[o->n_sources++] = (term_source){c == OPT_CONFIG, optarg};
            break;
        case OPT_GRAD_DIR:
            if (optarg[0] == '\0') {
                cli_error(ctx, "--grad-dir needs a directory name");
                return CLI_EXIT_USAGE;
            }
            o->grad_dir = optarg;
            break;
        case OPT_CHUNK_BATCH:
            if (!cli_parse_count(optarg, 1, &o->chunk_batch)) {
                cli_error(ctx, "--chunk-batch '%s' is not a whole number >= 1", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case OPT_MEMORY:
            if (!cli_parse_size(optarg, &o->memory)) {
                cli_error(ctx, "--memory '%s' is not a size: a whole number of bytes >= 1, "
                          "optionally with K, M, G or T (powers of 1024), e.g. 64M", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case OPT_PROGRESS: {
            /* In the order of CLI_PROGRESS_AUTO, _ALWAYS, _NEVER. */
            static const char *const when[] = {"auto", "always", "never", NULL};
            if ((o->progress = cli_choice(optarg, when)) < 0) {
                cli_error(ctx, "--progress '%s' is not auto, always or never", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case OPT_DECOMPOSE:
            if (parse_decompose(ctx, optarg, o) != CLI_EXIT_OK)
                return CLI_EXIT_USAGE;
            break;
        case 'h': return -1;
        default: return cli_option_failure(ctx, c, argv, long_options, "eval");
        }
    }
    if (optind < argc) {
        cli_error(ctx, "unexpected argument '%s'; see ctrnn-loss eval --help", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    if (o->n_sources == 0) {
        cli_error(ctx, "no terms: give --term NAME=TYPE[:key=value,...] or --config FILE");
        return CLI_EXIT_USAGE;
    }
    bool any = false;
    for (int role = 0; role < CRL_ROLE_COUNT; role++)
        any |= o->path[role] != NULL;
    if (!any) {
        cli_error(ctx, "no input files: give --states, --pred, --label, ...");
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

void eval_print_help(FILE *out)
{
    fputs(eval_usage, out);
    cli_print_types(out);
}
