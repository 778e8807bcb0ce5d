/*
 * view.c - element types, layouts, strides and shape checks of the arrays a
 * caller passes, and the row loads and stores the passes use.
 */
#include "internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

size_t crl_dtype_size(crl_dtype dtype)
{
    switch (dtype) {
    case CRL_FLOAT32: return 4;
    case CRL_FLOAT64: return 8;
    default: return 0;
    }
}

crl_array crl_array_batch_major(crl_dtype dtype, void *data, int64_t batch, int64_t time,
                                int64_t width)
{
    return (crl_array){dtype, data, batch, time, width, time * width, width};
}

crl_array crl_array_time_major(crl_dtype dtype, void *data, int64_t batch, int64_t time,
                               int64_t width)
{
    return (crl_array){dtype, data, batch, time, width, width, batch * width};
}

crl_matrix crl_matrix_dense(crl_dtype dtype, void *data, int64_t rows, int64_t cols)
{
    return (crl_matrix){dtype, data, rows, cols, cols};
}

static const char *const role_names[CRL_ROLE_COUNT] = {
    "states", "states1", "pred", "label", "mask", "w_in", "w_hid", "w_out", "w_hebb",
};

const char *crl_role_name(int role)
{
    return role >= 0 && role < CRL_ROLE_COUNT ? role_names[role] : "?";
}

const crl_array *crl_tensors_array(const crl_tensors *t, int role)
{
    switch (role) {
    case CRL_ROLE_STATES: return &t->states;
    case CRL_ROLE_STATES1: return &t->states1;
    case CRL_ROLE_PRED: return &t->pred;
    case CRL_ROLE_LABEL: return &t->label;
    case CRL_ROLE_MASK: return &t->mask;
    default: return NULL;
    }
}

const crl_matrix *crl_tensors_matrix(const crl_tensors *t, int role)
{
    switch (role) {
    case CRL_ROLE_W_IN: return &t->w_in;
    case CRL_ROLE_W_HID: return &t->w_hid;
    case CRL_ROLE_W_OUT: return &t->w_out;
    case CRL_ROLE_W_HEBB: return &t->w_hebb;
    default: return NULL;
    }
}

/* Largest element offset + 1 of a (rows x cols) grid with the given strides,
 * checked for overflow of the byte offset; false on overflow. */
static bool extent(int64_t n1, int64_t s1, int64_t n2, int64_t s2, int64_t width, size_t size,
                   int64_t *out)
{
    int64_t a, b, e, bytes;
    if (!crl_mul_size(n1 > 0 ? n1 - 1 : 0, s1, &a) || !crl_mul_size(n2 > 0 ? n2 - 1 : 0, s2, &b)
        || __builtin_add_overflow(a, b, &e) || __builtin_add_overflow(e, width, &e)
        || !crl_mul_size(e, (int64_t) size, &bytes))
        return false;
    *out = e;
    return true;
}

int crl_array_check(const crl_array *a, const char *what, crl_error *err)
{
    size_t size = crl_dtype_size(a->dtype);
    if (size == 0)
        return crl_fail(err, CRL_ERR_INVALID, "%s: unknown dtype %d", what, (int) a->dtype);
    if (a->batch < 0 || a->time < 1 || a->width < 1)
        return crl_fail(err, CRL_ERR_INVALID,
                        "%s: shape (%lld, %lld, %lld) needs batch >= 0, time >= 1, width >= 1",
                        what, (long long) a->batch, (long long) a->time, (long long) a->width);
    if (a->batch > 0 && a->data == NULL)
        return crl_fail(err, CRL_ERR_INVALID, "%s: data is NULL for %lld batch elements", what,
                        (long long) a->batch);
    if (a->batch_stride < 0 || a->time_stride < 0)
        return crl_fail(err, CRL_ERR_INVALID, "%s: negative stride (batch %lld, time %lld)", what,
                        (long long) a->batch_stride, (long long) a->time_stride);
    int64_t elements, e;
    if (!crl_mul_size(a->batch, a->time, &elements) || !crl_mul_size(elements, a->width, &elements)
        || !extent(a->batch, a->batch_stride, a->time, a->time_stride, a->width, size, &e))
        return crl_fail(err, CRL_ERR_INVALID, "%s: size overflow (shape %lld x %lld x %lld)", what,
                        (long long) a->batch, (long long) a->time, (long long) a->width);
    /* Strides must not make two elements share memory: the smaller stride
     * spans a row, the larger spans all of the smaller dimension. */
    int64_t sb = a->batch_stride, st = a->time_stride, nb = a->batch, nt = a->time;
    bool batch_inner = sb < st;
    int64_t s_in = batch_inner ? sb : st, n_in = batch_inner ? nb : nt;
    int64_t s_out = batch_inner ? st : sb, n_out = batch_inner ? nt : nb, span;
    if (a->batch == 0) /* no elements: nothing can overlap */
        return CRL_OK;
    if ((n_in > 1 && s_in < a->width)
        || (n_out > 1 && (!crl_mul_size(n_in, s_in, &span) || s_out < (n_in > 1 ? span : a->width))))
        return crl_fail(err, CRL_ERR_INVALID,
                        "%s: strides (batch %lld, time %lld) overlap rows of width %lld", what,
                        (long long) sb, (long long) st, (long long) a->width);
    return CRL_OK;
}

int crl_matrix_check(const crl_matrix *m, const char *what, crl_error *err)
{
    size_t size = crl_dtype_size(m->dtype);
    int64_t e;
    if (size == 0)
        return crl_fail(err, CRL_ERR_INVALID, "%s: unknown dtype %d", what, (int) m->dtype);
    if (m->data == NULL)
        return crl_fail(err, CRL_ERR_INVALID, "%s: data is NULL", what);
    if (m->rows < 1 || m->cols < 1)
        return crl_fail(err, CRL_ERR_INVALID, "%s: shape %lld x %lld needs rows, cols >= 1", what,
                        (long long) m->rows, (long long) m->cols);
    if ((m->rows > 1 && m->row_stride < m->cols)
        || !extent(m->rows, m->row_stride, 1, 0, m->cols, size, &e))
        return crl_fail(err, CRL_ERR_INVALID, "%s: row stride %lld for %lld columns", what,
                        (long long) m->row_stride, (long long) m->cols);
    return CRL_OK;
}

int crl_weights_fit(const crl_tensors *in, unsigned roles, int64_t n, crl_error *err)
{
    bool hid = roles & CRL_USES(CRL_ROLE_W_HID);
    if (n == 0 && hid)
        n = in->w_hid.rows;
    if (hid && (in->w_hid.rows != in->w_hid.cols || (n && in->w_hid.rows != n)))
        return crl_fail(err, CRL_ERR_INVALID, "w_hid is %lld x %lld, expected N x N with N = %lld",
                        (long long) in->w_hid.rows, (long long) in->w_hid.cols, (long long) n);
    if ((roles & CRL_USES(CRL_ROLE_W_IN)) && n && in->w_in.rows != n)
        return crl_fail(err, CRL_ERR_INVALID, "w_in has %lld rows, expected N = %lld",
                        (long long) in->w_in.rows, (long long) n);
    if ((roles & CRL_USES(CRL_ROLE_W_OUT)) && n && in->w_out.cols != n)
        return crl_fail(err, CRL_ERR_INVALID, "w_out has %lld columns, expected N = %lld",
                        (long long) in->w_out.cols, (long long) n);
    return CRL_OK;
}

int crl_array_check_grad(const crl_array *g, const crl_array *a, const char *what, crl_error *err)
{
    if (g->dtype != a->dtype || g->batch != a->batch || g->time != a->time
        || g->width != a->width)
        return crl_fail(err, CRL_ERR_INVALID,
                        "gradient of %s: dtype/shape (%d: %lld, %lld, %lld) differ from the "
                        "input's (%d: %lld, %lld, %lld)",
                        what, (int) g->dtype, (long long) g->batch, (long long) g->time,
                        (long long) g->width, (int) a->dtype, (long long) a->batch,
                        (long long) a->time, (long long) a->width);
    char label[64];
    snprintf(label, sizeof label, "gradient of %s", what);
    return crl_array_check(g, label, err);
}

int crl_matrix_check_grad(const crl_matrix *g, const crl_matrix *m, const char *what,
                          crl_error *err)
{
    if (g->dtype != m->dtype || g->rows != m->rows || g->cols != m->cols)
        return crl_fail(err, CRL_ERR_INVALID,
                        "gradient of %s: dtype/shape (%d: %lld x %lld) differ from the input's "
                        "(%d: %lld x %lld)",
                        what, (int) g->dtype, (long long) g->rows, (long long) g->cols,
                        (int) m->dtype, (long long) m->rows, (long long) m->cols);
    char label[64];
    snprintf(label, sizeof label, "gradient of %s", what);
    return crl_matrix_check(g, label, err);
}

/* Rows shorter than this (a few cache lines), contiguous, are widened or
 * stored as one run: no per-row overhead, and no prefetch (a tile of them
 * is a few lines). */
enum { SHORT_ROW_BYTES = 256 };

CRL_HOT static void widen_rows(const float *restrict src, int64_t ld_src, int64_t count,
                               int64_t n, double *restrict dst)
{
    int64_t bytes = n * (int64_t) sizeof(float);
    if (ld_src == n && bytes < SHORT_ROW_BYTES) {   /* contiguous short rows: one run */
        n *= count;
        count = 1;
        bytes = 0;
    }
    for (int64_t r = 0; r < count; r++) {
        crl_prefetch_ahead(src + r * ld_src, ld_src, bytes, sizeof(float), false);
        for (int64_t i = 0; i < n; i++)
            dst[r * n + i] = (double) src[r * ld_src + i];
    }
}

const double *crl_rows_load(const crl_array *a, int64_t b, int64_t t0, int64_t count,
                            double *tile, int64_t *ld)
{
    const void *row = crl_array_row(a, b, t0);
    if (a->dtype == CRL_FLOAT64) {
        *ld = a->time_stride;
        return row;
    }
    widen_rows(row, a->time_stride, count, a->width, tile);
    *ld = a->width;
    return tile;
}

crl_store crl_store_for(crl_store how, const crl_array *out)
{
    int64_t bytes = out->batch * out->time * out->width * (int64_t) crl_dtype_size(out->dtype);
    how.stream = how.overwrite && bytes >= CRL_STREAM_BYTES;
    return how;
}

void crl_stream_copy(void *restrict dst, const void *restrict src, size_t bytes)
{
#if defined(__SSE2__)
    char *d = dst;
    const char *s = src;
    /* Whole lines only: the part lines at either end (shared with the
     * neighbouring rows of a strided or 16-byte aligned array) go through
     * the caches.  A line written in parts by streaming stores at different
     * times leaves the write-combining buffer in parts, and a part-line
     * write costs the memory a read (on EPYC machines a quarter of a
     * backward pass's time). */
    size_t head = (64 - ((uintptr_t) d & 63)) & 63;
    if (head > bytes)
        head = bytes;
    memcpy(d, s, head);
    size_t k = head;
    for (; k + 64 <= bytes; k += 64)
        for (size_t j = k; j < k + 64; j += 16)
            _mm_stream_si128((__m128i *) (d + j), _mm_loadu_si128((const __m128i *) (s + j)));
    memcpy(d + k, s + k, bytes - k);
#else
    memcpy(dst, src, bytes);
#endif
}

void crl_stream_fence(void)
{
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

/* dst = dst + scale src (accumulate) or 0 + scale src (overwrite: dst is not
 * read; the + 0 gives the bits of accumulating into a zeroed buffer); with
 * how.stream, each row is rounded into row (n values) and streamed out.
 * Rows of a few cache lines at most are one run when contiguous (unless
 * streamed); longer ones ask for the row ahead (crl_prefetch_ahead). */
#define STORE_ROWS_KERNEL(name, type)                                                           \
    CRL_HOT static void name(type *restrict dst, int64_t ld_dst, int64_t count, int64_t n,     \
                             const double *restrict src, int64_t ld_src, crl_store how,        \
                             type *restrict row)                                               \
    {                                                                                          \
        double scale = how.scale;                                                              \
        int64_t bytes = n * (int64_t) sizeof(type);                                            \
        /* Contiguous short rows: one run (not with how.stream: row holds one row). */         \
        if (ld_dst == n && ld_src == n && bytes < SHORT_ROW_BYTES && !how.stream) {            \
            n *= count;                                                                        \
            count = 1;                                                                         \
            bytes = 0;                                                                         \
        }                                                                                      \
        for (int64_t r = 0; r < count && how.stream; r++) {                                    \
            for (int64_t i = 0; i < n; i++)                                                    \
                row[i] = (type) (0.0 + scale * src[r * ld_src + i]);                           \
            crl_stream_copy(dst + r * ld_dst, row, sizeof(type) * (size_t) n);                 \
        }                                                                                      \
        if (how.stream)                                                                        \
            crl_stream_fence();                                                                \
        else if (how.overwrite)                                                                \
            for (int64_t r = 0; r < count; r++) {                                              \
                crl_prefetch_ahead(dst + r * ld_dst, ld_dst, bytes, sizeof(type), true);       \
                for (int64_t i = 0; i < n; i++)                                                \
                    dst[r * ld_dst + i] = (type) (0.0 + scale * src[r * ld_src + i]);          \
            }                                                                                  \
        else                                                                                   \
            for (int64_t r = 0; r < count; r++) {                                              \
                crl_prefetch_ahead(dst + r * ld_dst, ld_dst, bytes, sizeof(type), true);       \
                for (int64_t i = 0; i < n; i++)                                                \
                    dst[r * ld_dst + i] =                                                      \
                        (type) ((double) dst[r * ld_dst + i] + scale * src[r * ld_src + i]);   \
            }                                                                                  \
    }
STORE_ROWS_KERNEL(store_rows_f32, float)
STORE_ROWS_KERNEL(store_rows_f64, double)

void crl_rows_store(const crl_array *out, int64_t b, int64_t t0, int64_t count,
                    const double *tile, int64_t ld, crl_store how, void *row)
{
    void *dst = (void *) crl_array_row(out, b, t0);
    if (out->dtype == CRL_FLOAT32)
        store_rows_f32(dst, out->time_stride, count, out->width, tile, ld, how, row);
    else
        store_rows_f64(dst, out->time_stride, count, out->width, tile, ld, how, row);
}

void crl_rows_store_add(const crl_array *out, int64_t b, int64_t t0, int64_t count,
                        const double *tile, int64_t ld)
{
    crl_rows_store(out, b, t0, count, tile, ld, (crl_store){1.0, false, false}, NULL);
}

void crl_array_zero(const crl_array *out)
{
    size_t size = crl_dtype_size(out->dtype);
    for (int64_t b = 0; b < out->batch; b++)
        for (int64_t t = 0; t < out->time; t++)
            memset((void *) crl_array_row(out, b, t), 0, (size_t) out->width * size);
}

bool crl_array_find_nonfinite(const crl_array *a, int64_t b, int64_t *t, int64_t *i)
{
    for (int64_t tt = 0; tt < a->time; tt++) {
        const void *row = crl_array_row(a, b, tt);
        for (int64_t k = 0; k < a->width; k++) {
            double v = a->dtype == CRL_FLOAT32 ? (double) ((const float *) row)[k]
                                               : ((const double *) row)[k];
            if (!isfinite(v)) {
                *t = tt;
                *i = k;
                return true;
            }
        }
    }
    return false;
}

void crl_matrix_store(const crl_matrix *out, const double *values, crl_store how)
{
    for (int64_t r = 0; r < out->rows; r++) {
        const double *v = values + r * out->cols;
        if (out->dtype == CRL_FLOAT32) {
            float *row = (float *) out->data + r * out->row_stride;
            for (int64_t c = 0; c < out->cols; c++)
                row[c] = (float) ((how.overwrite ? 0.0 : (double) row[c]) + how.scale * v[c]);
        } else {
            double *row = (double *) out->data + r * out->row_stride;
            for (int64_t c = 0; c < out->cols; c++)
                row[c] = (how.overwrite ? 0.0 : row[c]) + how.scale * v[c];
        }
    }
}

void crl_matrix_zero(const crl_matrix *out)
{
    size_t size = crl_dtype_size(out->dtype);
    for (int64_t r = 0; r < out->rows; r++)
        memset((char *) out->data + (size_t) (r * out->row_stride) * size, 0,
               (size_t) out->cols * size);
}

int crl_report_nonfinite(const crl_array *a, int role, int64_t b, crl_error *err)
{
    const char *what = crl_role_name(role);
    int64_t t, i;
    if (crl_array_find_nonfinite(a, b, &t, &i)) {
        const void *row = crl_array_row(a, b, t);
        double v = a->dtype == CRL_FLOAT32 ? ((const float *) row)[i] : ((const double *) row)[i];
        return crl_fail_at(err, CRL_ERR_NONFINITE, role, b, t, i, "%s[b=%lld, t=%lld, i=%lld] is %s", what,
                        (long long) b, (long long) t, (long long) i,
                        isnan(v) ? "NaN" : "infinite");
    }
    return CRL_OK;
}

/* Asks for the cache lines of rows t0 .. t0 + count - 1 of element b ahead
 * of use: the tile passes touch memory in bursts between passes in cache,
 * which the hardware prefetchers alone do not overlap. */
void crl_prefetch_rows(const crl_array *a, int64_t b, int64_t t0, int64_t count, bool write)
{
    int64_t bytes = a->width * (int64_t) crl_dtype_size(a->dtype);
    for (int64_t t = t0; t < t0 + count && t < a->time; t++)
        crl_prefetch_lines(crl_array_row(a, b, t), bytes, write);
}
