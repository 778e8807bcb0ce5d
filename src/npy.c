/*
 * npy.c - NumPy .npy files through MPI-IO, built on the pure header parser
 * and formatter of npy_header.c (see npy.h).
 */
#ifdef __linux__
#define _GNU_SOURCE /* sync_file_range */
#endif
#include "npy.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest transfer of one MPI-IO call: counts are int. */
#define IO_PIECE ((int64_t) 1 << 30)

/* Rank 0's outcome, sent to every rank as bytes. */
typedef struct root_result {
    crl_error err;
    crl_npy_header header;
} root_result;

static int share_from_root(crl_context *ctx, root_result *r)
{
    if (MPI_Bcast(r, (int) sizeof *r, MPI_BYTE, 0, ctx->comm) != MPI_SUCCESS)
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Bcast of a file header failed");
    r->err.message[CRL_MESSAGE_MAX - 1] = '\0';
    return crl_context_set(ctx, r->err.code, r->err.message);
}

static void mpi_message(int rc, char *out, int cap)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error %d", rc);
    snprintf(out, (size_t) cap, "%s", text);
}

/* MPI-IO reports a short write by its byte count alone.  The rest is
 * written again with pwrite(2), whose errno says why it fails (a full disk,
 * a file-size limit); 0 when the second try writes it all. */
static int write_rest_posix(const crl_npy_file *f, MPI_Offset offset, const char *buf,
                            int64_t len)
{
    int fd = open(f->path, O_WRONLY);
    if (fd < 0)
        return errno;
    int e = 0;
    while (len > 0 && e == 0) {
        ssize_t n = pwrite(fd, buf, (size_t) len, (off_t) offset);
        if (n < 0 && errno != EINTR)
            e = errno;
        else if (n == 0)
            e = EIO;
        else if (n > 0) {
            buf += n;
            offset += n;
            len -= n;
        }
    }
    if (close(fd) != 0 && e == 0)
        e = errno;
    return e;
}

/* Reads (write false) or writes len bytes at offset, in pieces MPI's int
 * counts can hold; CRL_ERR_IO on failure or a short transfer (with the
 * system's reason for a short write). */
static int transfer_bytes(const crl_npy_file *f, bool write, MPI_Offset offset, char *buf,
                          int64_t len, crl_error *err)
{
    while (len > 0) {
        int piece = (int) (len < IO_PIECE ? len : IO_PIECE), done = 0;
        MPI_Status status;
        int rc = write ? MPI_File_write_at(f->handle, offset, buf, piece, MPI_BYTE, &status)
                       : MPI_File_read_at(f->handle, offset, buf, piece, MPI_BYTE, &status);
        if (rc == MPI_SUCCESS)
            MPI_Get_count(&status, MPI_BYTE, &done);
        int e = 0;
        if (rc == MPI_SUCCESS && done != piece && write
            && (e = write_rest_posix(f, offset + done, buf + done, piece - done)) == 0)
            done = piece;
        if (rc != MPI_SUCCESS || done != piece) {
            char why[MPI_MAX_ERROR_STRING + 64];
            if (rc != MPI_SUCCESS)
                mpi_message(rc, why, sizeof why);
            else if (write)
                snprintf(why, sizeof why, "%s (MPI-IO wrote %d of %d bytes)", strerror(e), done,
                         piece);
            else
                snprintf(why, sizeof why, "got %d of %d bytes", done, piece);
            return crl_fail(err, CRL_ERR_IO, "%s: %s failed at byte %lld: %s", f->label,
                            write ? "write" : "read", (long long) offset, why);
        }
        offset += piece;
        buf += piece;
        len -= piece;
    }
    return CRL_OK;
}

/* Rank 0: the header of an open file, and the check that its data is all
 * there. */
static int read_header(crl_npy_file *f, crl_error *err)
{
    MPI_Offset file_size = 0;
    if (MPI_File_get_size(f->handle, &file_size) != MPI_SUCCESS)
        return crl_fail(err, CRL_ERR_IO, "%s: cannot get the file size", f->label);
    char first[12];
    int64_t have = file_size < 12 ? (int64_t) file_size : 12, size;
    crl_error e = {0};
    if (transfer_bytes(f, false, 0, first, have, err) != CRL_OK)
        return err->code;
    if (crl_npy_header_size(first, (size_t) have, &size, &e) != CRL_OK)
        return crl_fail(err, e.code, "%s: %s", f->label, e.message);
    if (size > file_size)
        return crl_fail(err, CRL_ERR_IO, "%s: truncated header: %lld bytes announced, %lld present",
                        f->label, (long long) size, (long long) file_size);
    char *text = malloc((size_t) size);
    if (text == NULL)
        return crl_fail(err, CRL_ERR_NOMEM, "%s: out of memory for the header", f->label);
    if (transfer_bytes(f, false, 0, text, size, err) == CRL_OK
        && crl_npy_parse_header(text, (size_t) size, &f->header, &e) != CRL_OK)
        crl_fail(err, e.code, "%s: %s", f->label, e.message);
    free(text);
    if (err->code != CRL_OK)
        return err->code;
    const crl_npy_header *h = &f->header;
    if (h->fortran_order && h->ndim >= 2)
        return crl_fail(err, CRL_ERR_IO,
                        "%s: Fortran order is not supported (save a C-order array, e.g. "
                        "numpy.ascontiguousarray)",
                        f->label);
    if (file_size - h->data_offset < h->data_bytes)
        return crl_fail(err, CRL_ERR_IO,
                        "%s: truncated data: the header describes %lld bytes of data, the file "
                        "holds %lld",
                        f->label, (long long) h->data_bytes,
                        (long long) (file_size - h->data_offset));
    return CRL_OK;
}

/*
 * Whether this rank can open path (O_RDONLY or O_WRONLY) and it is a regular
 * file.  MPI_File_open is collective, and a rank whose open fails inside it
 * leaves the others waiting there for ever (a file on one node's disk only,
 * a relative path under another working directory): every rank tries first,
 * and the ranks agree.  O_NONBLOCK: a FIFO is refused, not waited on; MPI-IO
 * would also open a directory and read nothing from it.
 */
static int check_openable(const char *path, int flags, const char *label, crl_error *err)
{
    const char *verb = flags == O_RDONLY ? "cannot open" : "cannot open for writing";
    int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return crl_fail(err, CRL_ERR_IO, "%s: %s: %s", label, verb, strerror(errno));
    struct stat st;
    bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    if (!regular)
        return crl_fail(err, CRL_ERR_IO, "%s: %s: not a regular file", label, verb);
    return CRL_OK;
}

/* Keeps the context's error while f is closed (collectively). */
static int close_after_error(crl_context *ctx, crl_npy_file *f)
{
    crl_error keep = ctx->info;
    if (f->handle != MPI_FILE_NULL)
        MPI_File_close(&f->handle);
    return crl_context_set_error(ctx, &keep);
}

/* MPI_File_open on every rank, which have all checked that they can open
 * path (check_openable). */
static int open_mpi(crl_context *ctx, const char *path, int mode, const char *label,
                    const char *verb, crl_npy_file *f)
{
    crl_error err = {0};
    int rc = MPI_File_open(ctx->comm, path, mode, MPI_INFO_NULL, &f->handle);
    if (rc != MPI_SUCCESS) {
        char why[MPI_MAX_ERROR_STRING];
        mpi_message(rc, why, sizeof why);
        crl_fail(&err, CRL_ERR_IO, "%s: %s: %s", label, verb, why);
        /* Not closed: closing is collective over ranks some of which may not
         * hold the file; the process ends soon after such an error. */
        f->handle = MPI_FILE_NULL;
    }
    if (crl_agree(ctx, &err) != CRL_OK)
        return ctx->status;
    MPI_File_set_errhandler(f->handle, MPI_ERRORS_RETURN);
    return CRL_OK;
}

int crl_npy_open(crl_context *ctx, const char *path, const char *label, crl_npy_file *f)
{
    f->handle = MPI_FILE_NULL;
    f->behind = false;
    f->header = (crl_npy_header){0};
    snprintf(f->label, sizeof f->label, "%s", label);
    f->path[0] = '\0';
    /* Rank 0 first: when it cannot open the file, no rank is named. */
    root_result r = {0};
    if (ctx->rank == 0)
        check_openable(path, O_RDONLY, label, &r.err);
    if (share_from_root(ctx, &r) != CRL_OK)
        return ctx->status;
    crl_error err = {0};
    if (ctx->rank != 0)
        check_openable(path, O_RDONLY, label, &err);
    if (crl_agree(ctx, &err) != CRL_OK
        || open_mpi(ctx, path, MPI_MODE_RDONLY, label, "cannot open", f) != CRL_OK)
        return ctx->status;

    if (ctx->rank == 0 && read_header(f, &r.err) == CRL_OK)
        r.header = f->header;
    if (share_from_root(ctx, &r) != CRL_OK)
        return close_after_error(ctx, f);
    f->header = r.header;
    return CRL_OK;
}

/* Rank 0: creates path, which must not exist, holding the header; removes
 * it again if that fails. */
static int create_with_header(const char *path, const char *label, const char *header,
                              size_t len, crl_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        return crl_fail(err, CRL_ERR_IO, "%s: cannot create: %s", label, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, header + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            crl_fail(err, CRL_ERR_IO, "%s: write failed at byte %zu: %s", label, done,
                     n < 0 ? strerror(errno) : "nothing written");
            break;
        }
        done += (size_t) n;
    }
    if (close(fd) != 0)
        crl_fail(err, CRL_ERR_IO, "%s: close failed: %s", label, strerror(errno));
    if (err->code != CRL_OK)
        unlink(path);
    return err->code;
}

/* The descriptor of the write-behind: on Linux, a second open of the file
 * (MPI-IO keeps its own to itself); none when that fails, which only costs
 * the streaming. */
static void open_behind(crl_npy_file *f)
{
    f->behind = false;
    f->pending[0] = f->pending[1] = 0;
    f->handed = 0;
#ifdef __linux__
    f->fd = open(f->path, O_WRONLY | O_CLOEXEC);
    f->behind = f->fd >= 0;
#endif
}

int crl_npy_create(crl_context *ctx, const char *path, const char *label, crl_dtype dtype,
                   int ndim, const int64_t *shape, crl_npy_file *f)
{
    f->handle = MPI_FILE_NULL;
    f->behind = false;
    f->header = (crl_npy_header){0};
    snprintf(f->label, sizeof f->label, "%s", label);
    snprintf(f->path, sizeof f->path, "%s", path);
    crl_error err = {0};
    char header[1024];
    size_t len = 0;
    if (crl_npy_format_header(dtype, ndim, shape, header, sizeof header, &len, &err) != CRL_OK
        || crl_npy_parse_header(header, len, &f->header, &err) != CRL_OK)
        return crl_context_set(ctx, err.code, err.message);

    /* Rank 0 creates the file and writes the header with plain POSIX calls;
     * then every rank checks that it can open that file for writing before
     * the collective MPI_File_open (see check_openable). */
    root_result r = {0};
    if (ctx->rank == 0)
        create_with_header(path, label, header, len, &r.err);
    if (share_from_root(ctx, &r) != CRL_OK)
        return ctx->status;
    if (ctx->rank != 0)
        check_openable(path, O_WRONLY, label, &err);
    if (crl_agree(ctx, &err) != CRL_OK
        || open_mpi(ctx, path, MPI_MODE_WRONLY, label, "cannot open for writing", f) != CRL_OK) {
        if (ctx->rank == 0)
            unlink(path);
        return ctx->status;
    }
    open_behind(f);
    return CRL_OK;
}

int crl_npy_close(crl_context *ctx, crl_npy_file *f)
{
    crl_error err = {0};
    if (f->behind)
        close(f->fd); /* written through MPI-IO only: nothing to lose */
    f->behind = false;
    if (f->handle != MPI_FILE_NULL) {
        int rc = MPI_File_close(&f->handle);
        if (rc != MPI_SUCCESS) {
            char why[MPI_MAX_ERROR_STRING];
            mpi_message(rc, why, sizeof why);
            crl_fail(&err, CRL_ERR_IO, "%s: close failed: %s", f->label, why);
        }
        f->handle = MPI_FILE_NULL;
    }
    return crl_agree(ctx, &err);
}

/* The slice [start, start + count) of dimension axis as outer runs of run
 * bytes, stride apart, the first at byte first of the file; false when it
 * is outside the array. */
typedef struct slice_runs {
    int64_t outer, run, stride, first;
} slice_runs;

static bool slice_of(const crl_npy_header *h, int axis, int64_t start, int64_t count,
                     slice_runs *s)
{
    if (axis < 0 || axis >= h->ndim || start < 0 || count < 0 || start > h->shape[axis]
        || count > h->shape[axis] - start)
        return false;
    /* Every product below is at most the element count, which the parser
     * checked against 64 bits. */
    int64_t outer = 1, inner = (int64_t) crl_dtype_size(h->dtype);
    for (int k = 0; k < axis; k++)
        outer *= h->shape[k];
    for (int k = axis + 1; k < h->ndim; k++)
        inner *= h->shape[k];
    *s = (slice_runs){outer, count * inner, h->shape[axis] * inner,
                      h->data_offset + start * inner};
    return true;
}

/* Reads or writes the slice [start, start + count) of dimension axis: outer
 * runs of count * inner elements (see crl_npy_read_slice). */
static int transfer_slice(const crl_npy_file *f, bool write, int axis, int64_t start,
                          int64_t count, char *buf, crl_error *err)
{
    slice_runs s;
    if (!slice_of(&f->header, axis, start, count, &s))
        return crl_fail(err, CRL_ERR_INVALID, "%s: slice [%lld, %lld) of dimension %d is outside "
                        "the array", f->label, (long long) start, (long long) (start + count), axis);
    for (int64_t o = 0; o < s.outer && count > 0; o++)
        if (transfer_bytes(f, write, s.first + o * s.stride, buf + o * s.run, s.run, err)
            != CRL_OK)
            return err->code;
    return CRL_OK;
}

/*
 * The write-behind (see crl_npy_write_slice).  Without it a large file is
 * all dirty pages until the sync that publishes it: fresh memory for every
 * page (each a page fault of the host on a virtual machine), then the whole
 * disk write at the end.  Here the disk writes each range while the caller
 * computes the next ones, and the range CRL_NPY_BEHIND ranges before,
 * written by now, is dropped from the cache, so that its pages are the next
 * write's: a window of several ranges, so that the disk rarely runs dry nor
 * the writer waits.  Ranges of at least CRL_NPY_BEHIND_BYTES: small slices
 * are gathered first, or every tiny chunk would cost a disk round trip.
 * Only pages wholly inside a range are dropped: a page shared with a
 * neighbouring write stays, lest that write read it back from the disk.
 * Errors are left to the sync (fsync reports a failed write-back).
 */
#ifdef __linux__
static void hand_off(crl_npy_file *f)
{
    int64_t lo = f->pending[0], hi = f->pending[1];
    f->pending[0] = f->pending[1] = 0;
    if (hi <= lo)
        return;
    (void) sync_file_range(f->fd, lo, hi - lo, SYNC_FILE_RANGE_WRITE);
    int64_t *old = f->range[f->handed % CRL_NPY_BEHIND];
    if (f->handed >= CRL_NPY_BEHIND) {
        (void) sync_file_range(f->fd, old[0], old[1] - old[0],
                               SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE
                                   | SYNC_FILE_RANGE_WAIT_AFTER);
        int64_t page = sysconf(_SC_PAGESIZE), a = (old[0] + page - 1) / page * page;
        int64_t b = old[1] / page * page;
        if (b > a)
            (void) posix_fadvise(f->fd, a, b - a, POSIX_FADV_DONTNEED);
    }
    old[0] = lo;
    old[1] = hi;
    f->handed++;
}
#endif

/* Bytes [lo, hi) were just written, contiguously. */
static void write_behind(crl_npy_file *f, int64_t lo, int64_t hi)
{
#ifdef __linux__
    if (!f->behind || hi <= lo)
        return;
    if (f->pending[1] > f->pending[0] && lo != f->pending[1])
        hand_off(f); /* not a continuation: a range of its own */
    if (f->pending[1] <= f->pending[0])
        f->pending[0] = lo;
    f->pending[1] = hi;
    if (f->pending[1] - f->pending[0] >= CRL_NPY_BEHIND_BYTES)
        hand_off(f);
#else
    (void) f, (void) lo, (void) hi;
#endif
}

int crl_npy_read_slice(const crl_npy_file *f, int axis, int64_t start, int64_t count, void *buf,
                       crl_error *err)
{
    return transfer_slice(f, false, axis, start, count, buf, err);
}

int crl_npy_write_slice(crl_npy_file *f, int axis, int64_t start, int64_t count,
                        const void *buf, crl_error *err)
{
    /* Only read from: MPI_File_write_at takes the buffer as const. */
    if (transfer_slice(f, true, axis, start, count, (char *) buf, err) != CRL_OK)
        return err->code;
    slice_runs s;
    if (count > 0 && slice_of(&f->header, axis, start, count, &s) && s.outer == 1)
        write_behind(f, s.first, s.first + s.run);
    return CRL_OK;
}
