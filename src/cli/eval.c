/*
 * eval.c - `ctrnn-loss eval`: a loss and its gradient on .npy files.
 *
 * Stages, each ending with every rank knowing the same status:
 *   1. options, terms (--term, --config: rank 0 reads the file, every rank
 *      parses the same text), the loss;
 *   2. inputs: open (rank 0 reads each header), check shapes and dtypes
 *      (the same headers everywhere, so the same verdict), read the weights
 *      (every rank, whole);
 *   3. forward: this rank's shard of the batch, K elements at a time
 *      (crl_loss_accumulate per chunk), then one crl_loss_reduce;
 *   4. backward (--grad-dir): the same chunks again (re-read unless the shard
 *      is one chunk), crl_loss_backward, each rank writing its slice of the
 *      gradient files under temporary names renamed by rank 0 at the end;
 *   5. rank 0 prints the values.
 * Local failures (a short read, memory) are agreed on (crl_agree) before the
 * next collective step, so every rank fails with the same message.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char eval_usage[] =
    "usage: mpirun -np P ctrnn-loss eval [INPUTS] (--term SPEC | --config FILE)... [OPTIONS]\n"
    "\n"
    "Evaluates a loss of named terms on NumPy .npy files; rank r reads only its\n"
    "own slice of the batch.  Batched inputs are (B, T, .) arrays, or (T, B, .)\n"
    "with --time-major; weights are 2-D.  float32 ('<f4') or float64 ('<f8'),\n"
    "C order, format 1.0-3.0, one dtype for all inputs.\n"
    "\n"
    "inputs:\n"
    "  --states FILE      firing rates S (B, T, N)\n"
    "  --states1 FILE     second population S1 (B1, T1, N) (population_kl)\n"
    "  --pred FILE        network outputs (B, T, K)\n"
    "  --label FILE       targets (B, T, K)\n"
    "  --w-in FILE        input weights (N, N_in)\n"
    "  --w-hid FILE       recurrent weights (N, N)\n"
    "  --w-out FILE       output weights (K, N)\n"
    "  --w-hebb FILE      Hebbian weights (N, N)\n"
    "  --time-major       batched inputs are (T, B, .) instead of (B, T, .)\n"
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
    "  --chunk-batch K    read and evaluate K batch elements of a rank's shard at a\n"
    "                     time (bounded memory; identical results)\n"
    "  --progress WHEN    progress bar on stderr: auto (when run from a terminal,\n"
    "                     after 1 s of work), always or never (default auto)\n"
    "  -h, --help         show this help\n"
    "\n"
    "exit status: 0 success, 1 an input file, the I/O or the evaluation failed,\n"
    "2 a wrong command line, term specification or config file.\n"
    "\n"
    "term types (TYPE: parameter, values, default):\n";

/* The command-line options of each input, its gradient file, and its shape
 * in words. */
static const struct role_text {
    const char *option, *grad_file, *shape;
} role_text[CRL_ROLE_COUNT] = {
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

/* A --term or --config argument, in command-line order. */
typedef struct term_source {
    bool config;
    const char *text;
} term_source;

typedef struct eval_options {
    const char *path[CRL_ROLE_COUNT];
    bool time_major, json;
    const char *grad_dir;
    int64_t chunk_batch;       /* 0: the whole shard at once            */
    int progress;
    term_source *sources;
    int n_sources;
} eval_options;

/* One given input file. */
typedef struct input {
    bool given, batched, want_grad;
    char label[320];           /* "--states 'x.npy'"                     */
    crl_npy_file file;
    int64_t batch, time, width; /* batched: global B, T, W; weights: rows, cols in time, width */
    int64_t shard_start, shard_count;  /* this rank's slice of the batch */
    int64_t capacity;          /* batch elements the buffers hold        */
    int64_t chunk_count;       /* batch elements of the current chunk    */
    void *data, *grad;
    crl_npy_file grad_file;
    char grad_temp[PATH_MAX], grad_path[PATH_MAX];
} input;

typedef struct eval_run {
    crl_context *ctx;
    eval_options opt;
    input in[CRL_ROLE_COUNT];
    crl_dtype dtype;
    int64_t neurons;
    int64_t chunk, chunks;     /* batch elements per chunk, chunks of this rank */
    int64_t steps;             /* passes over chunks: the progress bar's total */
    crl_tensors tensors, grads;
    crl_loss *loss;
    cli_progress progress;
} eval_run;

/* ------------------------------------------------------------------------ */
/* Options                                                                    */
/* ------------------------------------------------------------------------ */

enum {
    OPT_ROLE = 1000, /* + role */
    OPT_TIME_MAJOR = 2000,
    OPT_TERM,
    OPT_CONFIG,
    OPT_JSON,
    OPT_GRAD_DIR,
    OPT_CHUNK_BATCH,
    OPT_PROGRESS,
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
    {"progress", required_argument, NULL, OPT_PROGRESS},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Returns CLI_EXIT_OK, CLI_EXIT_USAGE, or -1 for --help. */
static int parse_options(crl_context *ctx, int argc, char **argv, eval_options *o)
{
    *o = (eval_options){.progress = CLI_PROGRESS_AUTO};
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
                cli_error(ctx, "%s is given twice", role_text[role].option);
                return CLI_EXIT_USAGE;
            }
            o->path[role] = optarg;
            continue;
        }
        switch (c) {
        case OPT_TIME_MAJOR: o->time_major = true; break;
        case OPT_JSON: o->json = true; break;
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
        case OPT_PROGRESS: {
            /* In the order of CLI_PROGRESS_AUTO, _ALWAYS, _NEVER. */
            static const char *const when[] = {"auto", "always", "never", NULL};
            if ((o->progress = cli_choice(optarg, when)) < 0) {
                cli_error(ctx, "--progress '%s' is not auto, always or never", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'h': return -1;
        default: return cli_option_failure(ctx, c, argv, "eval");
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

/* ------------------------------------------------------------------------ */
/* Terms                                                                      */
/* ------------------------------------------------------------------------ */

/* Rank 0 reads a whole text file; every rank receives the text (NUL-
 * terminated, *len bytes) or the same error. */
static int share_text_file(crl_context *ctx, const char *path, char **text, size_t *len)
{
    struct {
        crl_error err;
        int64_t length;
    } head = {0};
    char *buf = NULL;
    if (crl_context_rank(ctx) == 0) {
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            crl_fail(&head.err, CRL_ERR_IO, "--config '%s': cannot open: %s", path,
                     strerror(errno));
        } else {
            size_t cap = 4096, n = 0, got;
            buf = malloc(cap);
            while (buf != NULL && (got = fread(buf + n, 1, cap - n, f)) > 0) {
                n += got;
                if (n == cap) {
                    char *bigger = cap < ((size_t) 64 << 20) ? realloc(buf, cap * 2) : NULL;
                    if (bigger == NULL) {
                        crl_fail(&head.err, CRL_ERR_IO, "--config '%s': too large", path);
                        break;
                    }
                    buf = bigger;
                    cap *= 2;
                }
            }
            if (buf == NULL)
                crl_fail(&head.err, CRL_ERR_NOMEM, "--config '%s': out of memory", path);
            else if (ferror(f))
                crl_fail(&head.err, CRL_ERR_IO, "--config '%s': cannot read: %s", path,
                         strerror(errno));
            fclose(f);
            head.length = (int64_t) n;
        }
    }
    MPI_Comm comm = crl_context_comm(ctx);
    if (MPI_Bcast(&head, (int) sizeof head, MPI_BYTE, 0, comm) != MPI_SUCCESS) {
        free(buf);
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Bcast of a config file failed");
    }
    if (head.err.code != CRL_OK) {
        free(buf);
        head.err.message[CRL_MESSAGE_MAX - 1] = '\0';
        return crl_context_set(ctx, head.err.code, head.err.message);
    }
    if (crl_context_rank(ctx) != 0)
        buf = malloc((size_t) head.length + 1);
    int ok = buf != NULL, all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, comm);
    if (!all) {
        free(buf);
        return crl_context_set(ctx, CRL_ERR_NOMEM, "out of memory for a config file");
    }
    if (crl_context_rank(ctx) == 0 && (size_t) head.length == 0)
        buf[0] = '\0';
    if (head.length > 0
        && MPI_Bcast(buf, (int) head.length, MPI_BYTE, 0, comm) != MPI_SUCCESS) {
        free(buf);
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Bcast of a config file failed");
    }
    *text = buf;
    *len = (size_t) head.length;
    return crl_context_set(ctx, CRL_OK, NULL);
}

/* Builds the loss from the --term and --config arguments, in order. */
static int build_loss(eval_run *r)
{
    crl_context *ctx = r->ctx;
    cli_terms terms = {0};
    crl_error err = {0};
    int status = CLI_EXIT_OK;
    for (int k = 0; k < r->opt.n_sources && status == CLI_EXIT_OK; k++) {
        const term_source *s = &r->opt.sources[k];
        if (!s->config) {
            if (cli_terms_add_spec(&terms, s->text, &err) != CRL_OK)
                status = CLI_EXIT_USAGE;
            continue;
        }
        char *text = NULL;
        size_t len = 0;
        if (share_text_file(ctx, s->text, &text, &len) != CRL_OK) {
            crl_fail(&err, crl_context_status(ctx), "%s", crl_context_error(ctx));
            status = CLI_EXIT_USAGE;
        } else if (cli_terms_add_ini(&terms, text, len, s->text, &err) != CRL_OK) {
            status = CLI_EXIT_USAGE;
        }
        free(text);
    }
    if (status == CLI_EXIT_OK && crl_loss_create(ctx, &r->loss) != CRL_OK) {
        crl_fail(&err, CRL_ERR_NOMEM, "out of memory creating the loss");
        status = CLI_EXIT_FAILED;
    }
    for (int k = 0; k < terms.count && status == CLI_EXIT_OK; k++) {
        const cli_term *t = &terms.items[k];
        if (crl_loss_add(r->loss, t->name, t->type, t->weight, t->params) != CRL_OK) {
            crl_fail(&err, CRL_ERR_INVALID, "%s: %s", t->source, crl_context_error(ctx));
            status = CLI_EXIT_USAGE;
        }
    }
    if (status != CLI_EXIT_OK)
        cli_error(ctx, "%s", err.message);
    cli_terms_free(&terms);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Inputs                                                                     */
/* ------------------------------------------------------------------------ */

static crl_array *array_of(crl_tensors *t, int role)
{
    switch (role) {
    case CRL_ROLE_STATES: return &t->states;
    case CRL_ROLE_STATES1: return &t->states1;
    case CRL_ROLE_PRED: return &t->pred;
    case CRL_ROLE_MASK: return &t->mask;
    default: return &t->label;
    }
}

static crl_matrix *matrix_of(crl_tensors *t, int role)
{
    switch (role) {
    case CRL_ROLE_W_IN: return &t->w_in;
    case CRL_ROLE_W_HID: return &t->w_hid;
    case CRL_ROLE_W_OUT: return &t->w_out;
    default: return &t->w_hebb;
    }
}

static void shape_text(const crl_npy_header *h, char *out, size_t cap)
{
    size_t n = (size_t) snprintf(out, cap, "(");
    for (int k = 0; k < h->ndim && n < cap; k++)
        n += (size_t) snprintf(out + n, cap - n, "%s%lld", k ? ", " : "", (long long) h->shape[k]);
    if (n < cap)
        snprintf(out + n, cap - n, h->ndim == 1 ? ",)" : ")");
}

/* Opens every given input (collective); on failure, those opened are closed. */
static int open_inputs(eval_run *r)
{
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        input *x = &r->in[role];
        x->file.handle = MPI_FILE_NULL;
        x->grad_file.handle = MPI_FILE_NULL;
        x->given = r->opt.path[role] != NULL;
        x->batched = role < CRL_FIRST_MATRIX_ROLE;
        if (!x->given)
            continue;
        snprintf(x->label, sizeof x->label, "%s '%.290s'", role_text[role].option,
                 r->opt.path[role]);
        if (crl_npy_open(r->ctx, r->opt.path[role], x->label, &x->file) != CRL_OK) {
            cli_error(r->ctx, "%s", crl_context_error(r->ctx));
            x->given = false;
            return CLI_EXIT_FAILED;
        }
    }
    return CLI_EXIT_OK;
}

/* A dimension that must agree between files: the first file that has it
 * sets it. */
typedef struct dimension {
    const char *name;          /* "N", "K" */
    int64_t value;
    const char *set_by;        /* the label of that file, NULL if unset */
    const char *as;            /* what it is in that file */
} dimension;

static int agree_dimension(dimension *d, int64_t value, const input *x, const char *as,
                           crl_error *err)
{
    if (d->set_by == NULL) {
        *d = (dimension){d->name, value, x->label, as};
        return CRL_OK;
    }
    if (value != d->value)
        return crl_fail(err, CRL_ERR_INVALID,
                        "%s has %s = %lld (%s) but %s has %s = %lld (%s): the shapes disagree",
                        x->label, d->name, (long long) value, as, d->set_by, d->name,
                        (long long) d->value, d->as);
    return CRL_OK;
}

/* Checks dtypes and shapes of the headers and sets the global sizes.  Every
 * rank holds the same headers, so every rank reaches the same verdict. */
static int check_shapes(eval_run *r, crl_error *err)
{
    const input *first = NULL;
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        input *x = &r->in[role];
        if (!x->given)
            continue;
        const crl_npy_header *h = &x->file.header;
        char shape[256];
        shape_text(h, shape, sizeof shape);
        if (first == NULL) {
            first = x;
            r->dtype = h->dtype;
        } else if (h->dtype != r->dtype) {
            return crl_fail(err, CRL_ERR_INVALID,
                            "%s is %s but %s is %s: all inputs must have the same dtype",
                            x->label, cli_dtype_name(h->dtype), first->label,
                            cli_dtype_name(r->dtype));
        }
        int want = x->batched ? 3 : 2;
        if (h->ndim != want)
            return crl_fail(err, CRL_ERR_INVALID, "%s: expected %d dimensions %s%s, got shape %s",
                            x->label, want, role_text[role].shape,
                            x->batched && r->opt.time_major ? " in (T, B, .) order" : "", shape);
        for (int k = 0; k < h->ndim; k++)
            if (h->shape[k] == 0)
                return crl_fail(err, CRL_ERR_INVALID,
                                "%s: shape %s is empty: fewer batch elements, time steps or "
                                "neurons than needed (at least 1 each)",
                                x->label, shape);
        if (x->batched) {
            bool tm = r->opt.time_major;
            x->batch = h->shape[tm ? 1 : 0];
            x->time = h->shape[tm ? 0 : 1];
            x->width = h->shape[2];
        } else {
            x->time = h->shape[0];
            x->width = h->shape[1];
        }
    }

    const input *states = &r->in[CRL_ROLE_STATES], *states1 = &r->in[CRL_ROLE_STATES1];
    const input *pred = &r->in[CRL_ROLE_PRED], *label = &r->in[CRL_ROLE_LABEL];
    const input *w_in = &r->in[CRL_ROLE_W_IN], *w_hid = &r->in[CRL_ROLE_W_HID];
    const input *w_out = &r->in[CRL_ROLE_W_OUT], *w_hebb = &r->in[CRL_ROLE_W_HEBB];
    dimension batch = {"B", 0, NULL, NULL}, time = {"T", 0, NULL, NULL};
    dimension n = {"N", 0, NULL, NULL}, k = {"K", 0, NULL, NULL};
    const input *outputs[2] = {pred, label}, *mask = &r->in[CRL_ROLE_MASK];
    if (states->given) {
        agree_dimension(&batch, states->batch, states, "batch elements", err);
        agree_dimension(&time, states->time, states, "time steps", err);
        agree_dimension(&n, states->width, states, "neurons", err);
    }
    for (int j = 0; j < 2 && err->code == CRL_OK; j++)
        if (outputs[j]->given) {
            agree_dimension(&batch, outputs[j]->batch, outputs[j], "batch elements", err);
            agree_dimension(&time, outputs[j]->time, outputs[j], "time steps", err);
            agree_dimension(&k, outputs[j]->width, outputs[j], "outputs", err);
        }
    if (mask->given && err->code == CRL_OK) {
        /* Its width, K or 1, is the library's rule. */
        agree_dimension(&batch, mask->batch, mask, "batch elements", err);
        agree_dimension(&time, mask->time, mask, "time steps", err);
    }
    if (states1->given)
        agree_dimension(&n, states1->width, states1, "neurons", err);
    if (w_hid->given) {
        agree_dimension(&n, w_hid->time, w_hid, "rows", err);
        agree_dimension(&n, w_hid->width, w_hid, "columns", err);
    }
    if (w_hebb->given) {
        agree_dimension(&n, w_hebb->time, w_hebb, "rows", err);
        agree_dimension(&n, w_hebb->width, w_hebb, "columns", err);
    }
    if (w_in->given)
        agree_dimension(&n, w_in->time, w_in, "rows", err);
    if (w_out->given) {
        agree_dimension(&n, w_out->width, w_out, "columns", err);
        agree_dimension(&k, w_out->time, w_out, "rows", err);
    }
    r->neurons = n.set_by ? n.value : 0;
    return err->code;
}

/* This rank's share of B elements over P ranks: the first B mod P ranks
 * get one more. */
static void shard(int64_t batch, int rank, int size, int64_t *start, int64_t *count)
{
    int64_t base = batch / size, extra = batch % size;
    *start = rank * base + (rank < extra ? rank : extra);
    *count = base + (rank < extra);
}

/* Shards, chunk size and buffers (local; the caller agrees on errors). */
static int allocate(eval_run *r, crl_error *err)
{
    int rank = crl_context_rank(r->ctx), size = crl_context_size(r->ctx);
    size_t element = crl_dtype_size(r->dtype);
    int64_t largest = 0;
    for (int role = 0; role < CRL_FIRST_MATRIX_ROLE; role++) {
        input *x = &r->in[role];
        if (x->given) {
            shard(x->batch, rank, size, &x->shard_start, &x->shard_count);
            largest = x->shard_count > largest ? x->shard_count : largest;
        }
    }
    r->chunk = r->opt.chunk_batch > 0 ? r->opt.chunk_batch : (largest > 0 ? largest : 1);
    r->chunks = largest > 0 ? (largest + r->chunk - 1) / r->chunk : 1;
    r->steps = r->chunks * (r->opt.grad_dir != NULL ? 2 : 1);
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        input *x = &r->in[role];
        if (!x->given)
            continue;
        x->want_grad = r->opt.grad_dir != NULL && role_text[role].grad_file != NULL;
        /* Sizes below are at most the file's data size: no overflow. */
        int64_t elements = x->time * x->width;
        if (x->batched) {
            x->capacity = x->shard_count < r->chunk ? x->shard_count : r->chunk;
            elements *= x->capacity;
        }
        if (elements == 0)
            continue;
        size_t bytes = (size_t) elements * element;
        x->data = malloc(bytes);
        x->grad = x->want_grad ? calloc(1, bytes) : NULL;
        if (x->data == NULL || (x->want_grad && x->grad == NULL))
            return crl_fail(err, CRL_ERR_NOMEM,
                            "out of memory: %.1f MiB for %s%s", (double) bytes / (1 << 20),
                            x->label,
                            x->batched ? " (--chunk-batch reads fewer batch elements at a time)"
                                       : "");
    }
    return CRL_OK;
}

/* Every rank reads every weight matrix whole, and describes it. */
static int read_weights(eval_run *r, crl_error *err)
{
    for (int role = CRL_FIRST_MATRIX_ROLE; role < CRL_ROLE_COUNT; role++) {
        input *x = &r->in[role];
        if (!x->given)
            continue;
        if (crl_npy_read_slice(&x->file, 0, 0, x->time, x->data, err) != CRL_OK)
            return err->code;
        *matrix_of(&r->tensors, role) = crl_matrix_dense(r->dtype, x->data, x->time, x->width);
        if (x->want_grad)
            *matrix_of(&r->grads, role) = crl_matrix_dense(r->dtype, x->grad, x->time, x->width);
    }
    return CRL_OK;
}

/* Describes chunk c of each batched input, reading it when read is set. */
static int load_chunk(eval_run *r, int64_t c, bool read, crl_error *err)
{
    int axis = r->opt.time_major ? 1 : 0;
    for (int role = 0; role < CRL_FIRST_MATRIX_ROLE; role++) {
        input *x = &r->in[role];
        if (!x->given)
            continue;
        int64_t first = c * r->chunk, count = x->shard_count - first;
        count = count < 0 ? 0 : count > r->chunk ? r->chunk : count;
        x->chunk_count = count;
        if (read && count > 0
            && crl_npy_read_slice(&x->file, axis, x->shard_start + first, count, x->data, err)
                   != CRL_OK)
            return err->code;
        void *data = count > 0 ? x->data : NULL, *grad = count > 0 ? x->grad : NULL;
        crl_array (*layout)(crl_dtype, void *, int64_t, int64_t, int64_t) =
            r->opt.time_major ? crl_array_time_major : crl_array_batch_major;
        *array_of(&r->tensors, role) = layout(r->dtype, data, count, x->time, x->width);
        if (x->want_grad)
            *array_of(&r->grads, role) = layout(r->dtype, grad, count, x->time, x->width);
    }
    return CRL_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward and backward                                                       */
/* ------------------------------------------------------------------------ */

/*
 * The library names a bad element by its index in the chunk it was given
 * ("states[b=0, t=2, i=5]"); adds where that chunk starts in the file.
 * Collective, after a failed reduction.
 */
static void locate_chunk(eval_run *r, bool failed_here, int64_t failed_chunk, char *note,
                         size_t cap)
{
    MPI_Comm comm = crl_context_comm(r->ctx);
    int rank = crl_context_rank(r->ctx), mine = failed_here ? rank : INT_MAX, first = INT_MAX;
    note[0] = '\0';
    if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS
        || first == INT_MAX)
        return;
    int64_t starts[2] = {-1, -1};
    if (rank == first)
        for (int p = 0; p < 2; p++) {
            const input *x = &r->in[p == 0 ? CRL_ROLE_STATES : CRL_ROLE_STATES1];
            starts[p] = x->given ? x->shard_start + failed_chunk * r->chunk : -1;
            if (p == 0 && !x->given && r->in[CRL_ROLE_PRED].given)
                starts[0] = r->in[CRL_ROLE_PRED].shard_start + failed_chunk * r->chunk;
        }
    if (MPI_Bcast(starts, 2, MPI_INT64_T, first, comm) != MPI_SUCCESS)
        return;
    const char *message = crl_context_error(r->ctx);
    int p = strstr(message, "states1[b=") != NULL ? 1 : strstr(message, "[b=") != NULL ? 0 : -1;
    if (p >= 0 && starts[p] >= 0)
        snprintf(note, cap, " (b counts from batch element %lld of the file)",
                 (long long) starts[p]);
}

/* The library names a missing input by its role ("pred: required input is
 * missing"); says which option gives it. */
static void missing_input_hint(const char *message, char *note, size_t cap)
{
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        char needle[64];
        snprintf(needle, sizeof needle, "%s: required input is missing", crl_role_name(role));
        if (strstr(message, needle) != NULL) {
            snprintf(note, cap, " (give %s FILE)", role_text[role].option);
            return;
        }
    }
}

static int forward(eval_run *r)
{
    crl_context *ctx = r->ctx;
    crl_error err = {0};
    bool failed_here = false;
    int64_t c = 0;
    const crl_tensors *grads = r->opt.grad_dir ? &r->grads : NULL;
    for (; c < r->chunks; c++) {
        if (load_chunk(r, c, true, &err) != CRL_OK)
            break;
        if (crl_loss_accumulate(r->loss, &r->tensors, grads) != CRL_OK) {
            failed_here = true; /* reported by crl_loss_reduce */
            break;
        }
        cli_progress_update(&r->progress, "forward chunk", c + 1, r->steps);
    }
    if (crl_agree(ctx, &err) != CRL_OK) {
        cli_error(ctx, "%s", crl_context_error(ctx));
        return CLI_EXIT_FAILED;
    }
    if (crl_loss_reduce(r->loss) != CRL_OK) {
        char note[128] = "";
        if (crl_context_status(ctx) != CRL_ERR_MPI)
            locate_chunk(r, failed_here, c, note, sizeof note);
        if (note[0] == '\0')
            missing_input_hint(crl_context_error(ctx), note, sizeof note);
        cli_error(ctx, "%s%s", crl_context_error(ctx), note);
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

/* mkdir -p: creates dir and its missing parents. */
static int make_directories(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int) sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0777) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(path, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

/* Rank 0 creates DIR (and its parents) if needed; every rank learns the
 * outcome; the gradient files' names. */
static int prepare_grad_dir(eval_run *r)
{
    crl_context *ctx = r->ctx;
    const char *dir = r->opt.grad_dir;
    struct {
        crl_error err;
        long pid;
    } head = {0};
    if (crl_context_rank(ctx) == 0) {
        struct stat st;
        head.pid = (long) getpid();
        if (make_directories(dir) != 0)
            crl_fail(&head.err, CRL_ERR_IO, "--grad-dir '%s': cannot create: %s", dir,
                     strerror(errno));
        else if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            crl_fail(&head.err, CRL_ERR_IO, "--grad-dir '%s': not a directory", dir);
    }
    if (MPI_Bcast(&head, (int) sizeof head, MPI_BYTE, 0, crl_context_comm(ctx)) != MPI_SUCCESS)
        crl_fail(&head.err, CRL_ERR_MPI, "MPI_Bcast failed");
    for (int role = 0; role < CRL_ROLE_COUNT && head.err.code == CRL_OK; role++) {
        input *x = &r->in[role];
        if (!x->want_grad)
            continue;
        int a = snprintf(x->grad_path, sizeof x->grad_path, "%s/%s", dir,
                         role_text[role].grad_file);
        int b = snprintf(x->grad_temp, sizeof x->grad_temp, "%s/.%s.%ld.tmp", dir,
                         role_text[role].grad_file, head.pid);
        if (a < 0 || b < 0 || (size_t) a >= sizeof x->grad_path
            || (size_t) b >= sizeof x->grad_temp)
            crl_fail(&head.err, CRL_ERR_IO, "--grad-dir '%s': the name is too long", dir);
    }
    if (head.err.code != CRL_OK) {
        head.err.message[CRL_MESSAGE_MAX - 1] = '\0';
        cli_error(ctx, "%s", head.err.message);
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

/* Rank 0 removes the temporary files (after a failure). */
static void remove_temporaries(eval_run *r)
{
    if (crl_context_rank(r->ctx) != 0)
        return;
    for (int role = 0; role < CRL_ROLE_COUNT; role++)
        if (r->in[role].want_grad && r->in[role].grad_temp[0] != '\0')
            unlink(r->in[role].grad_temp);
}

/* Closes the gradient files (collective); true if every close succeeded. */
static bool close_grad_files(eval_run *r)
{
    bool ok = true;
    for (int role = 0; role < CRL_ROLE_COUNT; role++)
        if (r->in[role].want_grad && crl_npy_close(r->ctx, &r->in[role].grad_file) != CRL_OK)
            ok = false;
    return ok;
}

/* Rank 0 renames every temporary file to its name; all or none. */
static int publish_grad_files(eval_run *r)
{
    crl_error err = {0};
    if (crl_context_rank(r->ctx) == 0) {
        int role = 0;
        for (; role < CRL_ROLE_COUNT; role++) {
            input *x = &r->in[role];
            if (x->want_grad && rename(x->grad_temp, x->grad_path) != 0) {
                crl_fail(&err, CRL_ERR_IO, "cannot rename '%s' to '%s': %s", x->grad_temp,
                         x->grad_path, strerror(errno));
                break;
            }
        }
        if (err.code != CRL_OK) {
            for (int j = 0; j < role; j++)
                if (r->in[j].want_grad)
                    unlink(r->in[j].grad_path);
            remove_temporaries(r);
        }
    }
    if (crl_agree(r->ctx, &err) != CRL_OK) {
        cli_error(r->ctx, "%s", crl_context_error(r->ctx));
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

/* Writes this rank's slices of the gradients of chunk c; rank 0 also writes
 * the weight gradients (whole, the same on every rank) after the first. */
static int write_grads(eval_run *r, int64_t c, crl_error *err)
{
    int axis = r->opt.time_major ? 1 : 0;
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        input *x = &r->in[role];
        if (!x->want_grad)
            continue;
        if (x->batched && x->chunk_count > 0
            && crl_npy_write_slice(&x->grad_file, axis, x->shard_start + c * r->chunk,
                                   x->chunk_count, x->grad, err) != CRL_OK)
            return err->code;
        if (!x->batched && c == 0 && crl_context_rank(r->ctx) == 0
            && crl_npy_write_slice(&x->grad_file, 0, 0, x->time, x->grad, err) != CRL_OK)
            return err->code;
    }
    return CRL_OK;
}

static int backward(eval_run *r)
{
    crl_context *ctx = r->ctx;
    if (prepare_grad_dir(r) != CLI_EXIT_OK)
        return CLI_EXIT_FAILED;
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        input *x = &r->in[role];
        if (!x->want_grad)
            continue;
        char label[PATH_MAX + 64];
        snprintf(label, sizeof label, "gradient file '%s'", x->grad_path);
        if (crl_npy_create(ctx, x->grad_temp, label, r->dtype, x->file.header.ndim,
                           x->file.header.shape, &x->grad_file) != CRL_OK) {
            char message[CRL_MESSAGE_MAX];
            snprintf(message, sizeof message, "%s", crl_context_error(ctx));
            close_grad_files(r);
            remove_temporaries(r);
            cli_error(ctx, "%s", message);
            return CLI_EXIT_FAILED;
        }
    }
    crl_error err = {0};
    bool resident = r->chunks == 1;
    for (int64_t c = 0; c < r->chunks; c++) {
        if (load_chunk(r, c, !resident, &err) != CRL_OK)
            break;
        for (int role = 0; role < CRL_FIRST_MATRIX_ROLE; role++) {
            input *x = &r->in[role];
            if (x->want_grad && x->chunk_count > 0)
                memset(x->grad, 0,
                       (size_t) (x->chunk_count * x->time * x->width) * crl_dtype_size(r->dtype));
        }
        if (crl_loss_backward(r->loss, &r->tensors, &r->grads) != CRL_OK) {
            crl_fail(&err, crl_context_status(ctx), "%s", crl_context_error(ctx));
            break;
        }
        if (write_grads(r, c, &err) != CRL_OK)
            break;
        cli_progress_update(&r->progress, "backward chunk", r->chunks + c + 1, r->steps);
    }
    int status = crl_agree(ctx, &err);
    char message[CRL_MESSAGE_MAX];
    snprintf(message, sizeof message, "%s", crl_context_error(ctx));
    if (!close_grad_files(r) && status == CRL_OK) {
        status = crl_context_status(ctx);
        snprintf(message, sizeof message, "%s", crl_context_error(ctx));
    }
    if (status != CRL_OK) {
        remove_temporaries(r);
        cli_error(ctx, "%s", message);
        return CLI_EXIT_FAILED;
    }
    return publish_grad_files(r);
}

/* ------------------------------------------------------------------------ */

static void report(const eval_run *r)
{
    crl_context *ctx = r->ctx;
    if (crl_context_rank(ctx) != 0)
        return;
    static const int primary[] = {CRL_ROLE_STATES, CRL_ROLE_PRED, CRL_ROLE_LABEL,
                                  CRL_ROLE_STATES1};
    cli_meta meta = {crl_context_size(ctx), 0, 0, r->neurons, r->dtype};
    for (int k = 0; k < 4; k++)
        if (r->in[primary[k]].given) {
            meta.batch = r->in[primary[k]].batch;
            meta.time = r->in[primary[k]].time;
            break;
        }
    if (r->opt.json) {
        cli_print_json(stdout, r->loss, &meta);
    } else {
        printf("ctrnn-loss eval: %d rank(s), batch %lld, time %lld, neurons %lld, %s\n",
               meta.ranks, (long long) meta.batch, (long long) meta.time,
               (long long) meta.neurons, cli_dtype_name(meta.dtype));
        cli_print_table(stdout, r->loss);
        if (r->opt.grad_dir) {
            printf("gradients written to %s:", r->opt.grad_dir);
            for (int role = 0; role < CRL_ROLE_COUNT; role++)
                if (r->in[role].want_grad && role_text[role].grad_file != NULL)
                    printf(" %s", role_text[role].grad_file);
            printf("\n");
        }
    }
    fflush(stdout);
}

static int evaluate(eval_run *r)
{
    crl_context *ctx = r->ctx;
    int status = build_loss(r);
    if (status != CLI_EXIT_OK)
        return status;
    if (open_inputs(r) != CLI_EXIT_OK)
        return CLI_EXIT_FAILED;
    crl_error err = {0};
    if (check_shapes(r, &err) != CRL_OK) {
        cli_error(ctx, "%s", err.message);
        return CLI_EXIT_FAILED;
    }
    allocate(r, &err);
    if (err.code == CRL_OK)
        read_weights(r, &err);
    if (crl_agree(ctx, &err) != CRL_OK) {
        cli_error(ctx, "%s", crl_context_error(ctx));
        return CLI_EXIT_FAILED;
    }
    cli_progress_start(&r->progress, r->opt.progress, crl_context_rank(ctx));
    status = forward(r);
    if (status == CLI_EXIT_OK && r->opt.grad_dir != NULL)
        status = backward(r);
    cli_progress_end(&r->progress);
    if (status == CLI_EXIT_OK)
        report(r);
    return status;
}

int cli_eval(crl_context *ctx, int argc, char **argv)
{
    eval_run r = {.ctx = ctx};
    int status = parse_options(ctx, argc, argv, &r.opt);
    if (status < 0) {
        if (crl_context_rank(ctx) == 0) {
            fputs(eval_usage, stdout);
            cli_print_types(stdout);
        }
        status = CLI_EXIT_OK;
    } else if (status == CLI_EXIT_OK) {
        status = evaluate(&r);
    }
    /* Every rank opened the same files: closing them is balanced. */
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        if (r.in[role].given && crl_npy_close(ctx, &r.in[role].file) != CRL_OK
            && status == CLI_EXIT_OK) {
            cli_error(ctx, "%s", crl_context_error(ctx));
            status = CLI_EXIT_FAILED;
        }
        free(r.in[role].data);
        free(r.in[role].grad);
    }
    crl_loss_destroy(&r.loss);
    free(r.opt.sources);
    return status;
}
