/*
 * eval_terms.c - the loss of `ctrnn-loss eval` from its --term and --config
 * arguments: rank 0 reads a config file, every rank parses the same text.
 */
#include "cli/eval.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
        /* O_NONBLOCK: a FIFO or a device is refused, not waited on while
         * the other ranks wait in the broadcast. */
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        struct stat st;
        FILE *f = NULL;
        if (fd < 0) {
            crl_fail(&head.err, CRL_ERR_IO, "--config '%s': cannot open: %s", path,
                     strerror(errno));
        } else if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            crl_fail(&head.err, CRL_ERR_IO, "--config '%s': cannot open: not a regular file",
                     path);
            close(fd);
        } else if ((f = fdopen(fd, "rb")) == NULL) {
            crl_fail(&head.err, CRL_ERR_IO, "--config '%s': cannot open: %s", path,
                     strerror(errno));
            close(fd);
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
int eval_build_loss(eval_run *r)
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
            crl_fail(&err, crl_context_status(ctx), "%s", cli_context_error(ctx));
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
            crl_fail(&err, CRL_ERR_INVALID, "%s: %s", t->source, cli_context_error(ctx));
            status = CLI_EXIT_USAGE;
        }
    }
    if (status != CLI_EXIT_OK)
        cli_error(ctx, "%s", err.message);
    cli_terms_free(&terms);
    return status;
}
