/*
 * eval.c - `ctrnn-loss eval`: a loss and its gradient on .npy files.
 *
 * Stages, each ending with every rank knowing the same status:
 *   1. options (eval_options.c), terms and the loss (eval_terms.c);
 *   2. inputs (inputs.c): open, check shapes and dtypes, read the weights;
 *   3. forward: this rank's block of the (batch, time) plane (a slice of
 *      the batch, or with time sharding also a range of the time steps:
 *      decompose.c), K elements at a time (as many as --memory holds, or
 *      --chunk-batch; a range of steps at a time when not even one element
 *      fits; crl_loss_accumulate per chunk, after crl_loss_set_block when
 *      the time is split, into buffers reused by every chunk), then one
 *      crl_loss_reduce;
 *   4. backward (--grad-dir): the same chunks again (re-read unless the shard
 *      is one chunk), crl_loss_backward overwriting the gradient buffers,
 *      each rank writing its blocks of the gradient files (grad_files.c);
 *   5. rank 0 prints the values (and, with --timing, the seconds of each
 *      phase, the maximum over the ranks).
 * Local failures (a short read, memory) are agreed on (crl_agree) before the
 * next collective step, so every rank fails with the same message.
 */
#include "cli/eval.h"

#include <stdlib.h>
#include <string.h>

/*
 * A failed reduction's message, independent of the rank count: the library
 * names a bad element by its indices in the chunk a rank gave it
 * ("rank 2: states[b=0, t=2, i=5]"; crl_context_error_info has the rank,
 * the input, b and t); this says the element's indices in the file
 * instead, without the rank.  Collective.
 */
static void locate_chunk(eval_run *r, int64_t failed_chunk, char *out, size_t cap)
{
    crl_error_info info;
    crl_context_error_info(r->ctx, &info);
    snprintf(out, cap, "%s", cli_context_error(r->ctx));
    if (info.rank < 0 || info.role < 0 || info.role >= CRL_FIRST_MATRIX_ROLE || info.b < 0)
        return;
    int64_t start[2] = {-1, -1}, batch_count, time_count;
    const input *x = &r->in[info.role];
    if (crl_context_rank(r->ctx) == info.rank && x->given)
        eval_chunk_range(r, x, failed_chunk, &start[0], &batch_count, &start[1], &time_count);
    if (MPI_Bcast(start, 2, MPI_INT64_T, info.rank, crl_context_comm(r->ctx)) != MPI_SUCCESS
        || start[0] < 0)
        return;
    char local[128], global[128], prefix[32];
    const char *name = crl_role_name(info.role), *text = info.message, *at = NULL;
    snprintf(prefix, sizeof prefix, "rank %d: ", info.rank);
    if (strncmp(text, prefix, strlen(prefix)) == 0)
        text += strlen(prefix);
    if (info.t >= 0) {
        snprintf(local, sizeof local, "%s[b=%lld, t=%lld,", name, (long long) info.b,
                 (long long) info.t);
        snprintf(global, sizeof global, "%s[b=%lld, t=%lld,", name,
                 (long long) (start[0] + info.b), (long long) (start[1] + info.t));
        at = strstr(text, local);
    }
    if (at == NULL) {
        snprintf(local, sizeof local, "%s[b=%lld,", name, (long long) info.b);
        snprintf(global, sizeof global, "%s[b=%lld,", name, (long long) (start[0] + info.b));
        at = start[1] == 0 ? strstr(text, local) : NULL;
    }
    if (at == NULL) {
        char steps[64] = "";
        if (start[1] != 0)
            snprintf(steps, sizeof steps, ", t=... from step %lld", (long long) start[1]);
        snprintf(out, cap, "%s (%s[b=...] counts from batch element %lld%s of the file)", text,
                 name, (long long) start[0], steps);
        return;
    }
    snprintf(out, cap, "%.*s%s%s", (int) (at - text), text, global, at + strlen(local));
}

/* The library names a missing input by its role ("pred: required input is
 * missing"); says which option gives it. */
static void missing_input_hint(const char *message, char *note, size_t cap)
{
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        char needle[64];
        snprintf(needle, sizeof needle, "%s: required input is missing", crl_role_name(role));
        if (strstr(message, needle) != NULL) {
            snprintf(note, cap, " (give %s FILE)", eval_roles[role].option);
            return;
        }
    }
}

static int forward(eval_run *r)
{
    crl_context *ctx = r->ctx;
    crl_error err = {0};
    int64_t c = 0;
    const crl_tensors *grads = r->opt.grad_dir ? &r->grads : NULL;
    for (; c < r->chunks; c++) {
        if (eval_load_chunk(r, c, true, &err) != CRL_OK)
            break;
        double t = MPI_Wtime();
        int status = crl_loss_accumulate(r->loss, &r->tensors, grads);
        r->phase[CLI_PHASE_ACCUMULATE] += MPI_Wtime() - t;
        if (status != CRL_OK)
            break; /* reported by crl_loss_reduce */
        cli_progress_update(&r->progress, "forward chunk", c + 1, r->steps);
    }
    if (crl_agree(ctx, &err) != CRL_OK) {
        cli_error(ctx, "%s", cli_context_error(ctx));
        return CLI_EXIT_FAILED;
    }
    double t = MPI_Wtime();
    int status = crl_loss_reduce(r->loss);
    r->phase[CLI_PHASE_REDUCE] += MPI_Wtime() - t;
    if (status != CRL_OK) {
        char message[CRL_MESSAGE_MAX + 128], note[128] = "";
        snprintf(message, sizeof message, "%s", cli_context_error(ctx));
        if (crl_context_status(ctx) != CRL_ERR_MPI)
            locate_chunk(r, c, message, sizeof message);
        missing_input_hint(crl_context_error(ctx), note, sizeof note);
        cli_error(ctx, "%s%s", message, note);
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

static int backward(eval_run *r)
{
    crl_context *ctx = r->ctx;
    double t = MPI_Wtime();
    int created = grad_files_create(r);
    r->phase[CLI_PHASE_WRITE] += MPI_Wtime() - t;
    if (created != CLI_EXIT_OK)
        return CLI_EXIT_FAILED;
    crl_error err = {0};
    r->pass = 1;
    bool resident = r->chunks == 1;
    /* The gradient buffers are written, not added to: no zeroing pass over
     * them per chunk, and no read of them in the library's store (bitwise
     * the sums into zeroed buffers). */
    if (crl_loss_set_grad_mode(r->loss, CRL_GRAD_OVERWRITE) != CRL_OK)
        crl_fail(&err, crl_context_status(ctx), "%s", cli_context_error(ctx));
    for (int64_t c = 0; c < r->chunks && err.code == CRL_OK; c++) {
        if (eval_load_chunk(r, c, !resident, &err) != CRL_OK)
            break;
        t = MPI_Wtime();
        int status = crl_loss_backward(r->loss, &r->tensors, &r->grads);
        r->phase[CLI_PHASE_BACKWARD] += MPI_Wtime() - t;
        if (status != CRL_OK) {
            crl_fail(&err, crl_context_status(ctx), "%s", cli_context_error(ctx));
            break;
        }
        t = MPI_Wtime();
        status = grad_files_write(r, c, &err);
        r->phase[CLI_PHASE_WRITE] += MPI_Wtime() - t;
        if (status != CRL_OK)
            break;
        cli_progress_update(&r->progress, "backward chunk", r->chunks + c + 1, r->steps);
    }
    if (err.code == CRL_OK && !resident)
        eval_check_unchanged(r, &err);
    int status = crl_agree(ctx, &err);
    t = MPI_Wtime();
    status = grad_files_finish(r, status, cli_context_error(ctx));
    r->phase[CLI_PHASE_WRITE] += MPI_Wtime() - t;
    return status;
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
    const int64_t decomposition[2] = {r->batch_ranks, r->time_ranks};
    for (int k = 0; k < 4; k++)
        if (r->in[primary[k]].given) {
            meta.batch = r->in[primary[k]].batch;
            meta.time = r->in[primary[k]].time;
            break;
        }
    if (r->opt.json) {
        cli_print_json_decomposed(stdout, r->loss, &meta, decomposition,
                                  r->opt.timing ? r->phase : NULL);
    } else {
        printf("ctrnn-loss eval: %d rank(s), batch %lld, time %lld, neurons %lld, %s, "
               "decomposition %lldx%lld (batch x time)\n",
               meta.ranks, (long long) meta.batch, (long long) meta.time,
               (long long) meta.neurons, cli_dtype_name(meta.dtype),
               (long long) decomposition[0], (long long) decomposition[1]);
        cli_print_table(stdout, r->loss);
        if (r->opt.grad_dir) {
            printf("gradients written to %s:", r->opt.grad_dir);
            for (int role = 0; role < CRL_ROLE_COUNT; role++)
                if (r->in[role].want_grad && eval_roles[role].grad_file != NULL)
                    printf(" %s", eval_roles[role].grad_file);
            printf("\n");
        }
    }
    fflush(stdout);
    if (r->opt.timing)
        cli_print_timing(stderr, r->phase, meta.ranks);
}

/* --timing: the whole run so far, then each phase's maximum over the ranks
 * (the slowest rank is what a run waits for).  Collective; the one extra
 * collective of --timing, after the evaluation and outside every phase. */
static int gather_timing(eval_run *r)
{
    r->phase[CLI_PHASE_STARTUP] = cli_startup_seconds;
    r->phase[CLI_PHASE_TOTAL] = cli_startup_seconds + (MPI_Wtime() - cli_started);
    if (MPI_Allreduce(MPI_IN_PLACE, r->phase, CLI_PHASES, MPI_DOUBLE, MPI_MAX,
                      crl_context_comm(r->ctx))
        != MPI_SUCCESS) {
        cli_error(r->ctx, "--timing: MPI_Allreduce of the phase times failed");
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

static int evaluate(eval_run *r)
{
    crl_context *ctx = r->ctx;
    int status = eval_build_loss(r);
    if (status != CLI_EXIT_OK)
        return status;
    /* Opening reads the headers: part of reading the inputs. */
    double t = MPI_Wtime();
    status = eval_open_inputs(r);
    r->phase[CLI_PHASE_READ] += MPI_Wtime() - t;
    if (status != CLI_EXIT_OK)
        return CLI_EXIT_FAILED;
    crl_error err = {0};
    if (eval_check_shapes(r, &err) != CRL_OK) {
        cli_error(ctx, "%s", err.message);
        return CLI_EXIT_FAILED;
    }
    eval_check_grad_dir(r, &err);
    eval_decompose(r);
    if (err.code == CRL_OK)
        eval_allocate(r, &err);
    if (err.code == CRL_OK)
        eval_read_weights(r, &err);
    if (crl_agree(ctx, &err) != CRL_OK) {
        cli_error(ctx, "%s", cli_context_error(ctx));
        return CLI_EXIT_FAILED;
    }
    cli_progress_start(&r->progress, r->opt.progress, crl_context_rank(ctx));
    status = forward(r);
    if (status == CLI_EXIT_OK && r->opt.grad_dir != NULL)
        status = backward(r);
    cli_progress_end(&r->progress);
    if (status == CLI_EXIT_OK && r->opt.timing)
        status = gather_timing(r);
    if (status == CLI_EXIT_OK)
        report(r);
    return status;
}

int cli_eval(crl_context *ctx, int argc, char **argv)
{
    eval_run r = {.ctx = ctx};
    int status = eval_parse_options(ctx, argc, argv, &r.opt);
    if (status < 0) {
        if (crl_context_rank(ctx) == 0)
            eval_print_help(stdout);
        status = CLI_EXIT_OK;
    } else if (status == CLI_EXIT_OK) {
        status = evaluate(&r);
    }
    /* Every rank opened the same files: closing them is balanced. */
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        if (r.in[role].given && crl_npy_close(ctx, &r.in[role].file) != CRL_OK
            && status == CLI_EXIT_OK) {
            cli_error(ctx, "%s", cli_context_error(ctx));
            status = CLI_EXIT_FAILED;
        }
        free(r.in[role].data);
        free(r.in[role].grad);
    }
    crl_loss_destroy(&r.loss);
    free(r.opt.sources);
    return status;
}

