/*
 * eval.h - what the files of `ctrnn-loss eval` share: the options, the
 * inputs with their shards and buffers, and the stages of a run.
 *
 *   eval_options.c  the command line and the --help text
 *   eval_terms.c    the loss from --term and --config (rank 0 reads a config
 *                   file, every rank parses the same text)
 *   inputs.c        input files: open, check shapes, read chunks
 *   decompose.c     the (batch, time) grid of ranks and each rank's block
 *   grad_files.c    the gradient files: written as one set, all or nothing
 *   grad_set.c      the directory's generations of sets (rank 0, POSIX)
 *   eval.c          the driver: forward, backward, the report
 *
 * Every stage ends with every rank knowing the same status.
 */
#ifndef CRL_CLI_EVAL_H
#define CRL_CLI_EVAL_H

#include "cli.h"
#include "cli/grad_set.h"

#include <limits.h>

/* The command-line option of each input, its gradient file (NULL: none) and
 * its shape in words. */
typedef struct role_text {
    const char *option, *grad_file, *shape;
} role_text;
extern const role_text eval_roles[CRL_ROLE_COUNT];

/* The chunk buffers' budget per rank without --memory: large enough for
 * transfers of many MiB (what file systems stream best), small enough that
 * the buffers are faulted in quickly and that a chunk read for the backward
 * pass is still in the cache when its gradients are computed and written.
 * On the 1 GiB case (docs/PERFORMANCE.md) 16 and 32 MiB ran alike at 1
 * rank, 64 MiB 25% slower at 2 (two ranks' 128 MiB against a 32 MiB L3). */
#define EVAL_MEMORY_DEFAULT ((int64_t) 32 << 20)

/* A --term or --config argument, in command-line order. */
typedef struct term_source {
    bool config;
    const char *text;
} term_source;

/* --decompose: how the ranks split the (batch, time) plane. */
enum { DECOMPOSE_AUTO, DECOMPOSE_BATCH, DECOMPOSE_GRID };

typedef struct eval_options {
    const char *path[CRL_ROLE_COUNT];
    bool time_major, json, timing;
    const char *grad_dir;
    int decompose;             /* DECOMPOSE_*                            */
    int64_t grid_batch, grid_time; /* DECOMPOSE_GRID: ranks along each axis, product <= P */
    int64_t chunk_batch;       /* 0: as many as --memory allows          */
    int64_t memory;            /* bytes per rank for the chunk buffers   */
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
    /* Batched: this rank's block, global batch elements and time steps
     * (all T steps unless the time is split), and the most steps of any
     * rank's block (the chunk size is chosen from it, alike on every rank). */
    int64_t shard_start, shard_count;
    int64_t time_start, time_count, span;
    int64_t capacity, capacity_steps;  /* batch elements and steps the buffers hold */
    /* The current chunk, global: elements chunk_start.., steps chunk_step.. */
    int64_t chunk_start, chunk_count, chunk_step, chunk_steps;
    void *data, *grad;
    uint64_t digest[2];        /* of the data read by the forward, backward pass */
    crl_npy_file grad_file;
    char grad_temp[PATH_MAX], grad_path[PATH_MAX]; /* in the generation; DIR/NAME */
} input;

typedef struct eval_run {
    crl_context *ctx;
    eval_options opt;
    input in[CRL_ROLE_COUNT];
    crl_dtype dtype;
    int64_t neurons;
    /* The decomposition: ranks along batch and along time (rank r holds
     * block (r / time_ranks, r % time_ranks) of the grid, nothing when r >=
     * batch_ranks * time_ranks), and the global B and T it splits (states1
     * the same grid over its own B1 and T1). */
    int64_t batch_ranks, time_ranks;
    int64_t batch, time;
    /* Whether the chunks are described with crl_loss_set_block: on every
     * rank alike when the time is split over ranks or chunks. */
    bool blocks;
    /* Batch elements and time steps per chunk (chunk_time: a multiple of
     * CRL_TIME_UNIT, or at least every rank's span: no split), the chunks
     * along time of one batch chunk, and the chunks of this rank. */
    int64_t chunk, chunk_time, chunks_time, chunks;
    int64_t steps;             /* passes over chunks: the progress bar's total */
    int pass;                  /* 0 forward, 1 backward                   */
    crl_tensors tensors, grads;
    crl_loss *loss;
    cli_progress progress;
    grad_set set;              /* rank 0: the gradient directory            */
    /* This rank's seconds in each phase, summed over chunks; measured on
     * every run (a clock read per step), reported with --timing. */
    double phase[CLI_PHASES];
} eval_run;

/* eval_options.c.  Not collective.  CLI_EXIT_OK, CLI_EXIT_USAGE (reported),
 * or -1 for --help. */
int eval_parse_options(crl_context *ctx, int argc, char **argv, eval_options *o);
/* Not collective.  The --help text with the catalogue of term types. */
void eval_print_help(FILE *out);

/* eval_terms.c.  Collective.  Builds r->loss from the --term and --config
 * arguments, in order; a CLI exit status (reported). */
int eval_build_loss(eval_run *r);

/* inputs.c.  Collective: opens every given input; on failure (reported),
 * those opened are closed. */
int eval_open_inputs(eval_run *r);
/* Not collective (the same headers everywhere give the same verdict):
 * checks dtypes and shapes and sets the global sizes. */
int eval_check_shapes(eval_run *r, crl_error *err);
/* decompose.c.  Not collective (the same grid everywhere): the
 * decomposition and this rank's block of each batched input. */
void eval_decompose(eval_run *r);
/* inputs.c. */
/* Local (the caller agrees): chunk size and buffers. */
int eval_allocate(eval_run *r, crl_error *err);
/* Local: every rank reads every weight matrix whole and describes it. */
int eval_read_weights(eval_run *r, crl_error *err);
/* Local: the global elements [*batch_start, + *batch_count) and steps
 * [*time_start, + *time_count) of chunk c of batched input x on this rank;
 * counts 0 (and starts 0) for an empty chunk. */
void eval_chunk_range(const eval_run *r, const input *x, int64_t c, int64_t *batch_start,
                      int64_t *batch_count, int64_t *time_start, int64_t *time_count);
/* Local: describes chunk c of each batched input, reading it when read is
 * set (and adding what was read to the digest of pass r->pass), and with
 * r->blocks tells the loss where it lies (crl_loss_set_block). */
int eval_load_chunk(eval_run *r, int64_t c, bool read, crl_error *err);
/* Local: reads (write false) or writes the current chunk of batched input
 * x between buf and f, x's file or its gradient file (the same shape). */
int eval_transfer_chunk(const eval_run *r, const input *x, crl_npy_file *f, bool write,
                        void *buf, crl_error *err);
/* Local: an input the backward pass read differently from the forward. */
int eval_check_unchanged(const eval_run *r, crl_error *err);
/* Local: refuses inputs held in the gradient directory (which a run
 * replaces). */
int eval_check_grad_dir(const eval_run *r, crl_error *err);

/* grad_files.c.  Collective: the directory and the gradient files, created
 * empty; a CLI exit status (reported). */
int grad_files_create(eval_run *r);
/* Local: writes this rank's blocks of the gradients of chunk c. */
int grad_files_write(eval_run *r, int64_t c, crl_error *err);
/* Collective: closes the files and, when every rank wrote its part
 * (status CRL_OK everywhere, message the agreed error otherwise), makes them
 * the gradient set of the directory; otherwise removes them.  A CLI exit
 * status (reported). */
int grad_files_finish(eval_run *r, int status, const char *message);

#endif /* CRL_CLI_EVAL_H */
