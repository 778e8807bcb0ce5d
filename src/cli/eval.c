/*
 * eval.c - `ctrnn-loss eval`: a loss and its gradient on .npy files.
 *
 * Stages, each ending with every rank knowing the same status:
 *   1. options (eval_options.c), terms and the loss (eval_terms.c);
 *   2. inputs (inputs.c): open, check shapes and dtypes, read the weights;
 *   3. forward: this rank's shard of the batch, K elements at a time
 *      (crl_loss_accumulate per chunk), then one crl_loss_reduce;
 *   4. backward (--grad-dir): the same chunks again (re-read unless the shard
 *      is one chunk), crl_loss_backward, each rank writing its slice of the
 *      gradient files (grad_files.c);
 *   5. rank 0 prints the values.
 * Local failures (a short read, memory) are agreed on (crl_agree) before the
 * next collective step, so every rank fails with the same message.
 */
#include "cli/eval.h"

#include <stdlib.h>
#include <string.h>

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
            snprintf(note, cap, " (give %s FILE)", eval_roles[role].option);
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
        if (eval_load_chunk(r, c, true, &err) != CRL_OK)
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


static int backward(eval_run *r)
{
    crl_context *ctx = r->ctx;
    if (grad_files_create(r) != CLI_EXIT_OK)
        return CLI_EXIT_FAILED;
    crl_error err = {0};
    bool resident = r->chunks == 1;
    for (int64_t c = 0; c < r->chunks; c++) {
        if (eval_load_chunk(r, c, !resident, &err) != CRL_OK)
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
        if (grad_files_write(r, c, &err) != CRL_OK)
            break;
        cli_progress_update(&r->progress, "backward chunk", r->chunks + c + 1, r->steps);
    }
    int status = crl_agree(ctx, &err);
    return grad_files_finish(r, status, crl_context_error(ctx));
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
                if (r->in[role].want_grad && eval_roles[role].grad_file != NULL)
                    printf(" %s", eval_roles[role].grad_file);
            printf("\n");
        }
    }
    fflush(stdout);
}

static int evaluate(eval_run *r)
{
    crl_context *ctx = r->ctx;
    int status = eval_build_loss(r);
    if (status != CLI_EXIT_OK)
        return status;
    if (eval_open_inputs(r) != CLI_EXIT_OK)
        return CLI_EXIT_FAILED;
    crl_error err = {0};
    if (eval_check_shapes(r, &err) != CRL_OK) {
        cli_error(ctx, "%s", err.message);
        return CLI_EXIT_FAILED;
    }
    eval_allocate(r, &err);
    if (err.code == CRL_OK)
        eval_read_weights(r, &err);
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

