/*
 * npy.h - NumPy .npy files (format versions 1.0 to 3.0, little-endian float32
 * and float64, C order): a pure header parser and formatter, and MPI-IO
 * access in which each rank reads or writes only its own slice of the batch.
 *
 * The parser and the formatter do no I/O and call no MPI: they take bytes and
 * must be safe on any bytes (they are fuzzed).  The file functions are built
 * on them; the collective ones return the same status on every rank.
 */
#ifndef CRL_NPY_H
#define CRL_NPY_H

#include "internal.h"

#define CRL_NPY_MAX_DIMS 32
/* Longest header (preamble + dictionary) accepted; NumPy writes < 200 bytes. */
#define CRL_NPY_MAX_HEADER (1 << 20)

typedef struct crl_npy_header {
    int major, minor;          /* format version                            */
    crl_dtype dtype;
    bool fortran_order;
    int ndim;
    int64_t shape[CRL_NPY_MAX_DIMS];
    int64_t count;             /* elements: the product of shape (1 if 0-D) */
    int64_t data_offset;       /* bytes before the data: the header size    */
    int64_t data_bytes;        /* count * element size                      */
} crl_npy_header;

/*
 * Not collective; pure.  The size of the whole header (preamble and
 * dictionary) from the first len bytes of a file: len >= 12 suffices, a
 * shorter file is truncated.  CRL_ERR_IO for a bad magic string, an
 * unsupported version, a truncated preamble or an oversized header.
 */
int crl_npy_header_size(const char *buf, size_t len, int64_t *size, crl_error *err);

/*
 * Not collective; pure.  Parses the header at the start of buf (len bytes,
 * at least crl_npy_header_size of them).  Checks the dictionary's syntax, its
 * keys ('descr', 'fortran_order', 'shape', each once), the dtype ('<f4' or
 * '<f8'), the shape (non-negative integers) and that the element count and
 * the byte size fit in 64 bits.  Zero dimensions are accepted.  Fortran
 * order is reported, not refused.  CRL_ERR_IO on any defect, with a message
 * naming the offending text.
 */
int crl_npy_parse_header(const char *buf, size_t len, crl_npy_header *h, crl_error *err);

/*
 * Not collective; pure.  Writes a version 1.0 header for a C-order array of
 * dtype and shape into buf (cap bytes), padded with spaces and a newline to a
 * multiple of 64 bytes as NumPy does; *len is its size.  CRL_ERR_INVALID if
 * it does not fit or the shape is invalid.
 */
int crl_npy_format_header(crl_dtype dtype, int ndim, const int64_t *shape, char *buf, size_t cap,
                          size_t *len, crl_error *err);

/* ------------------------------------------------------------------------ */
/* Files                                                                      */
/* ------------------------------------------------------------------------ */

/* The write-behind of crl_npy_write_slice: contiguous bytes gathered
 * before they are handed to the disk as one range, and the ranges in flight
 * before the oldest is waited for and dropped from the page cache. */
#define CRL_NPY_BEHIND_BYTES ((int64_t) 8 << 20)
#define CRL_NPY_BEHIND 4

typedef struct crl_npy_file {
    MPI_File handle;           /* MPI_FILE_NULL when closed                 */
    crl_npy_header header;
    char label[320];           /* how messages name the file                */
    char path[4096];           /* of a file opened for writing, else ""     */
    /* A file opened for writing on Linux: a POSIX descriptor of it (fd,
     * when behind is set) for crl_npy_write_slice's write-behind; the
     * contiguous bytes written and not yet handed to the disk (pending),
     * and the last CRL_NPY_BEHIND ranges handed (a ring, the next slot at
     * handed % CRL_NPY_BEHIND). */
    bool behind;
    int fd;
    int64_t pending[2];
    int64_t handed;
    int64_t range[CRL_NPY_BEHIND][2];
} crl_npy_file;

/*
 * Collective.  Opens path for reading: rank 0 checks that it is a regular
 * file, reads and parses the header and checks that the file holds all the
 * data the header describes; every rank receives the header.  Fortran order
 * is refused for arrays of two or more dimensions.  label names the file in
 * messages (e.g. "--states 'x.npy'").  The same status on every rank (message
 * in ctx); on failure f is closed.
 */
int crl_npy_open(crl_context *ctx, const char *path, const char *label, crl_npy_file *f);

/*
 * Collective.  Creates path, which must not exist, for writing a C-order
 * array of dtype and shape; rank 0 writes the header.  The same status on
 * every rank.
 */
int crl_npy_create(crl_context *ctx, const char *path, const char *label, crl_dtype dtype,
                   int ndim, const int64_t *shape, crl_npy_file *f);

/* Collective.  Closes f (a no-op when it is closed on every rank); the same
 * status on every rank. */
int crl_npy_close(crl_context *ctx, crl_npy_file *f);

/*
 * Not collective.  Reads (writes) the slice [start, start + count) of
 * dimension axis: seen as (outer, shape[axis], inner) with outer the product
 * of the dimensions before axis and inner of those after, the slice is outer
 * contiguous runs of count * inner elements, read into (written from) buf in
 * that order, i.e. buf holds a C-order array whose dimension axis is count.
 * Independent MPI-IO (MPI_File_read_at / write_at).  CRL_ERR_IO on a failed
 * or short transfer.
 *
 * Writes stream (Linux): slices that are one contiguous run each, written
 * one after the other, are handed to the disk (sync_file_range) whenever
 * CRL_NPY_BEHIND_BYTES of them have gathered, and the range handed
 * CRL_NPY_BEHIND ranges before, on the disk by then, leaves the page cache
 * (posix_fadvise DONTNEED), so that a large file written slice by slice in
 * order keeps reusing the same few ranges' pages of memory and is mostly
 * on the disk when it is closed and synced.  The file is not kept in the
 * page cache after its writer.
 */
int crl_npy_read_slice(const crl_npy_file *f, int axis, int64_t start, int64_t count, void *buf,
                       crl_error *err);
int crl_npy_write_slice(crl_npy_file *f, int axis, int64_t start, int64_t count,
                        const void *buf, crl_error *err);

#endif /* CRL_NPY_H */
