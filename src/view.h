/*
 * view.h - the inputs as the passes see them (view.c): arrays and their
 * checks, rows as doubles, the stores of the gradients (streamed or not)
 * and the prefetching of rows ahead.  Part of internal.h, which includes
 * it after the error type it uses.
 */
#ifndef CRL_VIEW_H
#define CRL_VIEW_H

#define CRL_USES(role) (1u << (role))
#define CRL_FIRST_MATRIX_ROLE CRL_ROLE_W_IN

const crl_array *crl_tensors_array(const crl_tensors *t, int role);
const crl_matrix *crl_tensors_matrix(const crl_tensors *t, int role);

/* Local checks of an input array or matrix (types, sizes, strides, overflow). */
int crl_array_check(const crl_array *a, const char *what, crl_error *err);
int crl_matrix_check(const crl_matrix *m, const char *what, crl_error *err);
/* The weight matrices among roles (CRL_USES bits) fit one hidden size N:
 * w_in N x N_in, w_hid N x N, w_out N_out x N.  n = 0: N is that of w_hid
 * when roles hold it, else unknown (nothing to compare). */
int crl_weights_fit(const crl_tensors *in, unsigned roles, int64_t n, crl_error *err);
/* A gradient buffer must match its input's dtype and shape. */
int crl_array_check_grad(const crl_array *g, const crl_array *a, const char *what, crl_error *err);
int crl_matrix_check_grad(const crl_matrix *g, const crl_matrix *m, const char *what, crl_error *err);

static inline bool crl_array_present(const crl_array *a)
{
    return a->data != NULL || a->batch > 0 || a->time > 0 || a->width > 0;
}

/* Address of element (b, t, 0). */
static inline const void *crl_array_row(const crl_array *a, int64_t b, int64_t t)
{
    size_t size = crl_dtype_size(a->dtype);
    return (const char *) a->data + (size_t) (b * a->batch_stride + t * a->time_stride) * size;
}

/*
 * Rows t0 .. t0+count-1 of batch element b as doubles: float64 data is
 * returned in place (*ld = time stride), float32 data is converted into tile
 * (*ld = width).
 */
const double *crl_rows_load(const crl_array *a, int64_t b, int64_t t0, int64_t count,
                            double *tile, int64_t *ld);

/* How the backward stores a gradient: out = out + scale g, or 0 + scale g
 * without reading out (crl_loss_set_grad_mode, crl_loss_set_grad_scale). */
typedef struct crl_store {
    double scale;
    bool overwrite;
    bool stream;   /* overwrite with streaming stores (crl_store_for) */
} crl_store;

/*
 * States' gradients at least this large are overwritten with streaming
 * (non-temporal) stores: such a buffer does not stay in the caches until
 * its next reader anyway, and a streaming store writes a line without first
 * reading it (a third of a backward pass's memory traffic).  Smaller ones,
 * and the outputs' gradients (K wide, read back by the caller's next step),
 * are stored through the caches, where their next reader finds them.
 */
#define CRL_STREAM_BYTES ((int64_t) 4 << 20)

/* how, streaming when it overwrites an array of out's size of at least
 * CRL_STREAM_BYTES. */
crl_store crl_store_for(crl_store how, const crl_array *out);
/* dst = src (bytes bytes), with streaming stores of its whole 64-byte lines
 * where the machine has them (the part lines at the ends, and everything
 * elsewhere, by memcpy); crl_stream_fence orders them before what follows. */
void crl_stream_copy(void *restrict dst, const void *restrict src, size_t bytes);
void crl_stream_fence(void);

/* out[b, t0 + r, i] (+)= how.scale * tile[r * ld + i], rounded to out's dtype;
 * row: room for one row of out (width values of its dtype), used with
 * how.stream (NULL otherwise). */
void crl_rows_store(const crl_array *out, int64_t b, int64_t t0, int64_t count,
                    const double *tile, int64_t ld, crl_store how, void *row);
/* crl_rows_store accumulating with scale 1. */
void crl_rows_store_add(const crl_array *out, int64_t b, int64_t t0, int64_t count,
                        const double *tile, int64_t ld);
/* Every element of out (or of the matrix) set to +0. */
void crl_array_zero(const crl_array *out);

/* The first non-finite element of batch element b; false if there is none. */
bool crl_array_find_nonfinite(const crl_array *a, int64_t b, int64_t *t, int64_t *i);
/* Records the first non-finite element of batch element b of a (input role)
 * as CRL_ERR_NONFINITE; CRL_OK when there is none. */
int crl_report_nonfinite(const crl_array *a, int role, int64_t b, crl_error *err);
/* Asks for the cache lines of rows t0 .. t0 + count - 1 of element b. */
void crl_prefetch_rows(const crl_array *a, int64_t b, int64_t t0, int64_t count, bool write);

/*
 * Software prefetch inside a kernel's row loop: the hardware prefetchers of
 * the machines we run on (virtual machines among them) keep too few lines in
 * flight for one core to reach the memory bandwidth on a row stream, so a
 * loop over rows asks, as it reaches a row, for the row CRL_PREFETCH_BYTES
 * further on (at least 4 rows).  Prefetching never faults, so a loop may ask
 * for rows past the end of its array; the cost is a few lines read for
 * nothing.  Results do not depend on it.
 */
#define CRL_PREFETCH_BYTES 4096

/* Asks for the cache lines of bytes bytes from p, to read or to write. */
static inline void crl_prefetch_lines(const void *p, int64_t bytes, bool write)
{
    for (int64_t k = 0; k < bytes; k += 64) {
        if (write)
            __builtin_prefetch((const char *) p + k, 1, 3);
        else
            __builtin_prefetch((const char *) p + k, 0, 3);
    }
}

/* The prefetch distance in rows of row_bytes bytes. */
static inline int64_t crl_prefetch_rows_ahead(int64_t row_bytes)
{
    int64_t ahead = row_bytes > 0 ? CRL_PREFETCH_BYTES / row_bytes : 4;
    return ahead > 4 ? ahead : 4;
}

/* For rows of row_bytes bytes, ld elements of elem bytes apart: asks for
 * the row the prefetch distance after row. */
static inline void crl_prefetch_ahead(const void *row, int64_t ld, int64_t row_bytes,
                                      int64_t elem, bool write)
{
    crl_prefetch_lines((const char *) row + crl_prefetch_rows_ahead(row_bytes) * ld * elem,
                       row_bytes, write);
}

/* Matrix element as double. */
static inline double crl_matrix_get(const crl_matrix *m, int64_t r, int64_t c)
{
    int64_t k = r * m->row_stride + c;
    return m->dtype == CRL_FLOAT32 ? (double) ((const float *) m->data)[k]
                                   : ((const double *) m->data)[k];
}

/* out[r, c] (+)= how.scale * values[r * cols + c], rounded to out's dtype. */
void crl_matrix_store(const crl_matrix *out, const double *values, crl_store how);
void crl_matrix_zero(const crl_matrix *out);

#endif /* CRL_VIEW_H */
