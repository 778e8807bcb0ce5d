/*
 * grad_files.c - the gradient files of `ctrnn-loss eval --grad-dir`: each
 * rank writes its slice of each file under a temporary name; rank 0 renames
 * them at the end.
 */
#include "cli/eval.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
                         eval_roles[role].grad_file);
        int b = snprintf(x->grad_temp, sizeof x->grad_temp, "%s/.%s.%ld.tmp", dir,
                         eval_roles[role].grad_file, head.pid);
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
int grad_files_write(eval_run *r, int64_t c, crl_error *err)
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

int grad_files_create(eval_run *r)
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
    return CLI_EXIT_OK;
}

int grad_files_finish(eval_run *r, int status, const char *why)
{
    crl_context *ctx = r->ctx;
    char message[CRL_MESSAGE_MAX];
    snprintf(message, sizeof message, "%s", why);
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
