/*
 * grad_files.c - the gradient files of `ctrnn-loss eval --grad-dir`, written
 * as one set: rank 0 prepares a new generation of the directory (grad_set.h),
 * every rank writes its blocks of each file in it with MPI-IO, and rank 0
 * makes the generation the directory's set once every rank has written its
 * part and every file is closed.  A failure, SIGINT, SIGTERM or SIGHUP
 * before that removes the generation; a killed run's generation is removed
 * by the next run.  The directory shows the earlier set until the switch,
 * the new set after it.
 */
#include "cli/eval.h"
#include "cli/grad_set.h"

#include <string.h>

/* The gradient file names of the role table, and whether this run writes
 * each; n of them. */
static int grad_names(const eval_run *r, const char **names, bool *in_new)
{
    int n = 0;
    for (int role = 0; role < CRL_ROLE_COUNT; role++)
        if (eval_roles[role].grad_file != NULL) {
            names[n] = eval_roles[role].grad_file;
            in_new[n++] = r->in[role].want_grad;
        }
    return n;
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

/* Rank 0 starts a new generation; every rank learns its path and the
 * files' names in it. */
static int begin_generation(eval_run *r)
{
    crl_context *ctx = r->ctx;
    const char *names[CRL_ROLE_COUNT];
    bool in_new[CRL_ROLE_COUNT];
    int n = grad_names(r, names, in_new);
    struct {
        crl_error err;
        char gen[PATH_MAX];
        int cleaned;
    } head = {0};
    if (crl_context_rank(ctx) == 0) {
        if (grad_set_begin(&r->set, r->opt.grad_dir, names, n, &head.err) == CRL_OK) {
            grad_set_guard(&r->set);
            snprintf(head.gen, sizeof head.gen, "%s", r->set.gen);
            head.cleaned = r->set.cleaned;
        }
    }
    if (MPI_Bcast(&head, (int) sizeof head, MPI_BYTE, 0, crl_context_comm(ctx)) != MPI_SUCCESS)
        crl_fail(&head.err, CRL_ERR_MPI, "MPI_Bcast failed");
    head.err.message[CRL_MESSAGE_MAX - 1] = '\0';
    head.gen[PATH_MAX - 1] = '\0';
    if (head.err.code == CRL_OK && head.cleaned > 0 && crl_context_rank(ctx) == 0)
        fprintf(stderr, "ctrnn-loss: note: --grad-dir '%s': removed %d unfinished set(s) of "
                "gradient files left by interrupted runs\n", r->opt.grad_dir, head.cleaned);
    for (int role = 0; role < CRL_ROLE_COUNT && head.err.code == CRL_OK; role++) {
        input *x = &r->in[role];
        if (!x->want_grad)
            continue;
        int a = snprintf(x->grad_path, sizeof x->grad_path, "%s/%s", r->opt.grad_dir,
                         eval_roles[role].grad_file);
        int b = snprintf(x->grad_temp, sizeof x->grad_temp, "%s/%s", head.gen,
                         eval_roles[role].grad_file);
        if (a < 0 || b < 0 || (size_t) a >= sizeof x->grad_path
            || (size_t) b >= sizeof x->grad_temp)
            crl_fail(&head.err, CRL_ERR_IO, "--grad-dir '%s': the name is too long",
                     r->opt.grad_dir);
    }
    if (head.err.code != CRL_OK) {
        if (crl_context_rank(ctx) == 0)
            grad_set_abort(&r->set);
        cli_error(ctx, "%s", head.err.message);
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

/* Rank 0 switches the directory to the new set; every rank learns the
 * outcome. */
static int publish(eval_run *r)
{
    crl_error err = {0};
    if (crl_context_rank(r->ctx) == 0) {
        const char *names[CRL_ROLE_COUNT];
        bool in_new[CRL_ROLE_COUNT];
        int n = grad_names(r, names, in_new);
        grad_set_commit(&r->set, names, in_new, n, &err);
    }
    if (crl_agree(r->ctx, &err) != CRL_OK) {
        cli_error(r->ctx, "%s", cli_context_error(r->ctx));
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

int grad_files_create(eval_run *r)
{
    crl_context *ctx = r->ctx;
    if (begin_generation(r) != CLI_EXIT_OK)
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
            snprintf(message, sizeof message, "%s", cli_context_error(ctx));
            close_grad_files(r);
            if (crl_context_rank(ctx) == 0)
                grad_set_abort(&r->set);
            cli_error(ctx, "%s", message);
            return CLI_EXIT_FAILED;
        }
    }
    return CLI_EXIT_OK;
}

/* Writes this rank's blocks of the gradients of chunk c (the current one of
 * eval_load_chunk); rank 0 also writes the weight gradients (whole, the
 * same on every rank) after the first. */
int grad_files_write(eval_run *r, int64_t c, crl_error *err)
{
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        input *x = &r->in[role];
        if (!x->want_grad)
            continue;
        if (x->batched && x->chunk_count > 0
            && eval_transfer_chunk(r, x, &x->grad_file, true, x->grad, err) != CRL_OK)
            return err->code;
        if (!x->batched && c == 0 && crl_context_rank(r->ctx) == 0
            && crl_npy_write_slice(&x->grad_file, 0, 0, x->time, x->grad, err) != CRL_OK)
            return err->code;
    }
    return CRL_OK;
}

int grad_files_finish(eval_run *r, int status, const char *why)
{
    crl_context *ctx = r->ctx;
    char message[CRL_MESSAGE_MAX];
    snprintf(message, sizeof message, "%s", why);
    if (!close_grad_files(r) && status == CRL_OK) {
        status = crl_context_status(ctx);
        snprintf(message, sizeof message, "%s", cli_context_error(ctx));
    }
    if (status != CRL_OK) {
        if (crl_context_rank(ctx) == 0)
            grad_set_abort(&r->set);
        cli_error(ctx, "%s", message);
        return CLI_EXIT_FAILED;
    }
    return publish(r);
}
