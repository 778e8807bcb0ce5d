/*
 * harness.c - shared test machinery; see harness.h.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int h_rank, h_size;
double h_grad_fill = 0.0;
int h_repeat = 1;
int h_grad_mode = CRL_GRAD_ACCUMULATE;
double h_grad_scale = 1.0;
bool h_late_grads = false;
const double *h_term_grad_scales = NULL;

int h_main(int argc, char **argv, const struct CMUnitTest *tests, size_t count, const char *name)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &h_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &h_size);
    /* One copy of the report: other ranks write only their own failures,
     * which go to stderr. */
    if (h_rank > 0 && freopen("/dev/null", "w", stdout) == NULL)
        return 1;
    int failed = _cmocka_run_group_tests(name, tests, count, NULL, NULL);
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any != 0;
}

void h_assert_all_impl(bool cond, const char *expr, const char *file, int line)
{
    int ok = cond, all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    if (!ok)
        fprintf(stderr, "rank %d/%d: %s:%d: assertion failed: %s\n", h_rank, h_size, file, line,
                expr);
    if (!all)
        _fail(file, line);
}

uint64_t h_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double h_uniform(uint64_t *state, double lo, double hi)
{
    return lo + (hi - lo) * ((double) (h_rand(state) >> 11) * 0x1.0p-53);
}

/* ------------------------------------------------------------------------ */

static double *filled(int64_t n, uint64_t *state, double lo, double hi, crl_dtype dtype)
{
    if (n <= 0)
        return NULL;
    double *x = malloc(sizeof *x * (size_t) n);
    assert_non_null(x);
    for (int64_t i = 0; i < n; i++) {
        double v = h_uniform(state, lo, hi);
        x[i] = dtype == CRL_FLOAT32 ? (double) (float) v : v;
    }
    return x;
}

void h_problem_fill(h_problem *p, uint64_t seed, double rate_lo, double rate_hi)
{
    uint64_t s = seed;
    p->states = filled(p->B * p->T * p->N, &s, rate_lo, rate_hi, p->dtype);
    p->states1 = filled(p->B1 * p->T1 * p->N, &s, rate_lo, rate_hi, p->dtype);
    p->pred = filled(p->B * p->T * p->K, &s, -1, 1, p->dtype);
    p->label = filled(p->B * p->T * p->K, &s, -1, 1, p->dtype);
    p->w_in = filled(p->N * p->N_in, &s, -0.5, 0.5, p->dtype);
    p->w_hid = p->N_in || p->N_out ? filled(p->N * p->N, &s, -0.5, 0.5, p->dtype) : NULL;
    p->w_out = filled(p->N_out * p->N, &s, -0.5, 0.5, p->dtype);
    p->w_hebb = p->hebb ? filled(p->N * p->N, &s, -0.5, 0.5, p->dtype) : NULL;
    p->mask = filled(p->B * p->T * p->K_mask, &s, 0, 1, p->dtype);
    for (int64_t e = 0; p->mask && e < p->B * p->T * p->K_mask; e += 4)
        p->mask[e] = 0;
}

void h_problem_free(h_problem *p)
{
    free(p->states);
    free(p->states1);
    free(p->pred);
    free(p->label);
    free(p->w_in);
    free(p->w_hid);
    free(p->w_out);
    free(p->w_hebb);
    free(p->mask);
}

/* ------------------------------------------------------------------------ */

int h_split_count(void)
{
    return 5;
}

h_range h_split(int pattern, int64_t B, int rank, int size)
{
    int64_t start = 0, count = 0;
    switch (pattern) {
    case 0: /* as even as possible, the first B mod P ranks one more */
        count = B / size + (rank < B % size);
        start = rank * (B / size) + (rank < B % size ? rank : B % size);
        break;
    case 1: /* everything on the last rank */
        start = 0;
        count = rank == size - 1 ? B : 0;
        break;
    case 2: { /* growing shares: rank r gets about (r + 1) parts */
        int64_t parts = (int64_t) size * (size + 1) / 2;
        int64_t lo = B * ((int64_t) rank * (rank + 1) / 2) / parts;
        int64_t hi = B * ((int64_t) (rank + 1) * (rank + 2) / 2) / parts;
        start = lo;
        count = hi - lo;
        break;
    }
    case 3: /* rank 0 empty, the others even */
        if (size == 1) {
            count = B;
        } else if (rank > 0) {
            int64_t q = B / (size - 1), rem = B % (size - 1), k = rank - 1;
            count = q + (k < rem);
            start = k * q + (k < rem ? k : rem);
        }
        break;
    default: { /* one element each for the last ranks, the rest on rank 0 */
        int64_t others = size - 1 < B ? size - 1 : B;
        int64_t first = B - others;
        if (rank == 0) {
            count = first;
        } else if (rank <= others) {
            start = first + rank - 1;
            count = 1;
        }
        break;
    }
    }
    return (h_range){start, count};
}

/* ------------------------------------------------------------------------ */

static size_t dsize(crl_dtype t)
{
    return t == CRL_FLOAT32 ? 4 : 8;
}

static void put(void *base, crl_dtype t, int64_t k, double v)
{
    if (t == CRL_FLOAT32)
        ((float *) base)[k] = (float) v;
    else
        ((double *) base)[k] = v;
}

/* Local copy of batch range r of a global (B, T, W) array in the problem's
 * layout; returns the buffer and the array description. */
static void *local_array(const h_problem *p, const double *global, int64_t T, int64_t W,
                         h_range r, crl_array *a)
{
    size_t bytes = (size_t) (r.count * T * W) * dsize(p->dtype);
    void *buf = malloc(bytes > 0 ? bytes : 1);
    assert_non_null(buf);
    for (int64_t b = 0; b < r.count; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < W; i++) {
                int64_t k = p->time_major ? (t * r.count + b) * W + i : (b * T + t) * W + i;
                put(buf, p->dtype, k, global[((r.start + b) * T + t) * W + i]);
            }
    *a = p->time_major ? crl_array_time_major(p->dtype, r.count ? buf : NULL, r.count, T, W)
                       : crl_array_batch_major(p->dtype, r.count ? buf : NULL, r.count, T, W);
    return buf;
}

/* A buffer of count elements holding h_grad_fill. */
static void *fill_buffer(crl_dtype dtype, int64_t count)
{
    void *buf = malloc((size_t) (count > 0 ? count : 1) * crl_dtype_size(dtype));
    assert_non_null(buf);
    for (int64_t k = 0; k < count; k++)
        put(buf, dtype, k, h_grad_fill);
    return buf;
}

/* A gradient buffer of the same layout. */
static void *grad_array(const crl_array *a, crl_array *g)
{
    void *buf = fill_buffer(a->dtype, a->batch * a->time * a->width);
    *g = *a;
    g->data = a->batch ? buf : NULL;
    return buf;
}

/* Canonical (b, t, i) bytes of a local array in the problem's layout. */
static void *canonical(const h_problem *p, const crl_array *a, size_t *bytes)
{
    size_t size = dsize(p->dtype);
    *bytes = (size_t) (a->batch * a->time * a->width) * size;
    char *out = malloc(*bytes > 0 ? *bytes : 1);
    assert_non_null(out);
    for (int64_t b = 0; b < a->batch; b++)
        for (int64_t t = 0; t < a->time; t++)
            memcpy(out + (size_t) ((b * a->time + t) * a->width) * size,
                   (const char *) a->data + (size_t) (b * a->batch_stride + t * a->time_stride) * size,
                   (size_t) a->width * size);
    return out;
}

static void *matrix_copy(const h_problem *p, const double *global, int64_t rows, int64_t cols,
                         crl_matrix *m)
{
    void *buf = malloc((size_t) (rows * cols) * dsize(p->dtype));
    assert_non_null(buf);
    for (int64_t k = 0; k < rows * cols; k++)
        put(buf, p->dtype, k, global[k]);
    *m = crl_matrix_dense(p->dtype, buf, rows, cols);
    return buf;
}

/* Batch elements b0 .. b0 + count - 1 of a local array, as a strided view. */
static crl_array chunk_of(const crl_array *a, int64_t b0, int64_t count)
{
    crl_array c = *a;
    c.batch = count;
    c.data = count ? (char *) a->data + (size_t) (b0 * a->batch_stride) * crl_dtype_size(a->dtype)
                   : NULL;
    return c;
}

static crl_tensors chunk_tensors(const crl_tensors *t, int64_t b0, int64_t count)
{
    crl_tensors c = *t;
    crl_array *arrays[5] = {&c.states, &c.states1, &c.pred, &c.label, &c.mask};
    const crl_array *whole[5] = {&t->states, &t->states1, &t->pred, &t->label, &t->mask};
    for (int k = 0; k < 5; k++)
        if (whole[k]->time > 0)
            *arrays[k] = chunk_of(whole[k], b0, count);
    return c;
}

void h_result_values(const crl_loss *loss, const crl_context *ctx, h_result *out)
{
    snprintf(out->message, sizeof out->message, "%s", crl_context_error(ctx));
    out->total = crl_loss_total(loss);
    out->n_values = crl_loss_value_count(loss);
    out->names = calloc((size_t) out->n_values + 1, sizeof *out->names);
    out->lengths = calloc((size_t) out->n_values + 1, sizeof *out->lengths);
    int64_t numbers = 0;
    for (int64_t k = 0; k < out->n_values; k++) {
        crl_loss_value(loss, k, &out->lengths[k]);
        numbers += out->lengths[k];
    }
    out->values = calloc((size_t) numbers + 1, sizeof(double));
    out->n_numbers = numbers;
    numbers = 0;
    for (int64_t k = 0; k < out->n_values; k++) {
        snprintf(out->names[k], sizeof out->names[k], "%s", crl_loss_value_name(loss, k));
        const double *v = crl_loss_value(loss, k, NULL);
        memcpy(out->values + numbers, v, sizeof(double) * (size_t) out->lengths[k]);
        numbers += out->lengths[k];
    }
}

/* h_eval, whole (chunk 0) or in chunks of this rank's batch. */
static void eval_common(const h_problem *p, const h_term *terms, int n_terms, MPI_Comm comm,
                        h_range r, h_range r1, unsigned grad_mask, int64_t chunk, h_result *out)
{
    memset(out, 0, sizeof *out);
    crl_tensors in = {0}, grad = {0};
    void *bufs[16] = {0};
    int nb = 0;
    if (p->states)
        bufs[nb++] = local_array(p, p->states, p->T, p->N, r, &in.states);
    if (p->states1)
        bufs[nb++] = local_array(p, p->states1, p->T1, p->N, r1, &in.states1);
    if (p->pred) {
        bufs[nb++] = local_array(p, p->pred, p->T, p->K, r, &in.pred);
        bufs[nb++] = local_array(p, p->label, p->T, p->K, r, &in.label);
    }
    if (p->mask)
        bufs[nb++] = local_array(p, p->mask, p->T, p->K_mask, r, &in.mask);
    if (p->w_in)
        bufs[nb++] = matrix_copy(p, p->w_in, p->N, p->N_in, &in.w_in);
    if (p->w_hid)
        bufs[nb++] = matrix_copy(p, p->w_hid, p->N, p->N, &in.w_hid);
    if (p->w_out)
        bufs[nb++] = matrix_copy(p, p->w_out, p->N_out, p->N, &in.w_out);
    if (p->w_hebb)
        bufs[nb++] = matrix_copy(p, p->w_hebb, p->N, p->N, &in.w_hebb);

    crl_array *arrays[4] = {&grad.states, &grad.states1, &grad.pred, &grad.label};
    const crl_array *inputs[4] = {&in.states, &in.states1, &in.pred, &in.label};
    crl_matrix *mats[4] = {&grad.w_in, &grad.w_hid, &grad.w_out, &grad.w_hebb};
    const crl_matrix *mins[4] = {&in.w_in, &in.w_hid, &in.w_out, &in.w_hebb};
    void *gbufs[8] = {0};
    for (int k = 0; k < 4; k++) {
        if ((grad_mask & (1u << k)) && inputs[k]->time > 0)
            gbufs[k] = grad_array(inputs[k], arrays[k]);
        if ((grad_mask & (1u << (k + 4))) && mins[k]->data) {
            gbufs[k + 4] = fill_buffer(p->dtype, mins[k]->rows * mins[k]->cols);
            *mats[k] = crl_matrix_dense(p->dtype, gbufs[k + 4], mins[k]->rows, mins[k]->cols);
        }
    }

    crl_context *ctx = NULL;
    crl_loss *loss = NULL;
    assert_int_equal(crl_context_create(comm, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    for (int k = 0; k < n_terms; k++) {
        int rc = crl_loss_add(loss, terms[k].name, terms[k].type, terms[k].weight,
                              terms[k].params);
        if (rc != CRL_OK)
            fprintf(stderr, "crl_loss_add(%s): %s\n", terms[k].name, crl_context_error(ctx));
        assert_int_equal(rc, CRL_OK);
    }
    assert_int_equal(crl_loss_set_grad_mode(loss, (crl_grad_mode) h_grad_mode), CRL_OK);
    assert_int_equal(crl_loss_set_grad_scale(loss, h_grad_scale), CRL_OK);
    for (int k = 0; k < n_terms && h_term_grad_scales; k++)
        assert_int_equal(crl_loss_set_term_grad_scale(loss, terms[k].name, h_term_grad_scales[k]),
                         CRL_OK);
    if (chunk == 0 && h_late_grads) {
        for (int k = 0; k < h_repeat; k++) {
            crl_loss_accumulate(loss, &in, NULL);
            out->status = crl_loss_reduce(loss);
            if (out->status == CRL_OK && grad_mask)
                out->status = crl_loss_backward(loss, &in, &grad);
        }
    } else if (chunk == 0) {
        for (int k = 0; k < h_repeat; k++)
            out->status = crl_loss_evaluate(loss, &in, grad_mask ? &grad : NULL);
    } else {
        const crl_tensors *g = grad_mask ? &grad : NULL;
        int64_t b0 = 0;
        do {
            int64_t c = r.count - b0 < chunk ? r.count - b0 : chunk;
            crl_tensors ci = chunk_tensors(&in, b0, c), cg = chunk_tensors(&grad, b0, c);
            crl_loss_accumulate(loss, &ci, g && !h_late_grads ? &cg : NULL);
            b0 += c;
        } while (b0 < r.count);
        out->status = crl_loss_reduce(loss);
        /* The same chunks again (an empty shard: one empty chunk). */
        for (b0 = 0; out->status == CRL_OK && g && (b0 < r.count || b0 == 0); b0 += chunk) {
            int64_t c = r.count - b0 < chunk ? r.count - b0 : chunk;
            crl_tensors ci = chunk_tensors(&in, b0, c), cg = chunk_tensors(&grad, b0, c);
            assert_int_equal(crl_loss_backward(loss, &ci, &cg), CRL_OK);
            if (r.count == 0)
                break;
        }
    }
    h_result_values(loss, ctx, out);
    for (int k = 0; k < 4; k++) {
        if (gbufs[k]) {
            out->grad[k] = canonical(p, arrays[k], &out->grad_bytes[k]);
            free(gbufs[k]);
        }
        if (gbufs[k + 4]) {
            out->grad[k + 4] = gbufs[k + 4];
            out->grad_bytes[k + 4] = (size_t) (mins[k]->rows * mins[k]->cols) * dsize(p->dtype);
        }
    }
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    for (int k = 0; k < nb; k++)
        free(bufs[k]);
}

void h_eval(const h_problem *p, const h_term *terms, int n_terms, MPI_Comm comm, h_range r,
            h_range r1, unsigned grad_mask, h_result *out)
{
    eval_common(p, terms, n_terms, comm, r, r1, grad_mask, 0, out);
}

void h_eval_chunked(const h_problem *p, const h_term *terms, int n_terms, MPI_Comm comm,
                    h_range r, int64_t chunk, unsigned grad_mask, h_result *out)
{
    eval_common(p, terms, n_terms, comm, r, (h_range){0, 0}, grad_mask, chunk, out);
}

void h_result_free(h_result *res)
{
    free(res->names);
    free(res->lengths);
    free(res->values);
    for (int k = 0; k < 8; k++)
        free(res->grad[k]);
    memset(res, 0, sizeof *res);
}

bool h_grads_untouched(const h_problem *p, const h_result *res)
{
    for (int k = 0; k < 8; k++)
        for (size_t e = 0; e < res->grad_bytes[k] / dsize(p->dtype); e++) {
            double v = p->dtype == CRL_FLOAT32 ? ((const float *) res->grad[k])[e]
                                               : ((const double *) res->grad[k])[e];
            if (v != h_grad_fill)
                return false;
        }
    return true;
}

void h_eval_self(const h_problem *p, const h_term *terms, int n_terms, unsigned grad_mask,
                 h_result *out)
{
    h_eval(p, terms, n_terms, MPI_COMM_SELF, (h_range){0, p->B}, (h_range){0, p->B1}, grad_mask,
           out);
}

bool h_result_equal_slice(const h_problem *p, const h_result *whole, const h_result *part,
                          h_range r, h_range r1, char *why, size_t why_len)
{
    if (whole->status != part->status) {
        snprintf(why, why_len, "status %d vs %d (%s)", whole->status, part->status,
                 part->message);
        return false;
    }
    if (memcmp(&whole->total, &part->total, sizeof(double)) != 0) {
        snprintf(why, why_len, "total %.17g vs %.17g", whole->total, part->total);
        return false;
    }
    if (whole->n_values != part->n_values || whole->n_numbers != part->n_numbers) {
        snprintf(why, why_len, "value counts differ");
        return false;
    }
    for (int64_t k = 0; k < whole->n_numbers; k++)
        if (memcmp(&whole->values[k], &part->values[k], sizeof(double)) != 0) {
            snprintf(why, why_len, "value number %lld: %.17g vs %.17g", (long long) k,
                     whole->values[k], part->values[k]);
            return false;
        }
    size_t size = dsize(p->dtype);
    for (int k = 0; k < 8; k++) {
        if (!whole->grad[k] && !part->grad[k])
            continue;
        const char *w = whole->grad[k];
        size_t offset = 0, bytes = whole->grad_bytes[k];
        if (k < 4) {
            int64_t T = k == 1 ? p->T1 : p->T, W = k >= 2 ? p->K : p->N;
            h_range rr = k == 1 ? r1 : r;
            offset = (size_t) (rr.start * T * W) * size;
            bytes = (size_t) (rr.count * T * W) * size;
        }
        if (bytes != part->grad_bytes[k]) {
            snprintf(why, why_len, "gradient %d: %zu vs %zu bytes", k, bytes, part->grad_bytes[k]);
            return false;
        }
        if (bytes && (!w || !part->grad[k] || memcmp(w + offset, part->grad[k], bytes) != 0)) {
            size_t e = 0;
            while (e < bytes / size
                   && memcmp(w + offset + e * size, (char *) part->grad[k] + e * size, size) == 0)
                e++;
            snprintf(why, why_len, "gradient %d differs at local element %zu", k, e);
            return false;
        }
    }
    return true;
}

void h_check_splits(const h_problem *p, const h_term *terms, int n_terms, unsigned grad_mask)
{
    h_result whole;
    h_eval_self(p, terms, n_terms, grad_mask, &whole);
    if (whole.status != CRL_OK)
        fprintf(stderr, "rank %d: whole-batch evaluation failed: %s\n", h_rank, whole.message);
    h_assert_all(whole.status == CRL_OK);
    for (int pattern = 0; pattern < h_split_count(); pattern++) {
        h_range r = h_split(pattern, p->B, h_rank, h_size);
        h_range r1 = h_split((pattern + 2) % h_split_count(), p->B1, h_rank, h_size);
        h_result part;
        h_eval(p, terms, n_terms, MPI_COMM_WORLD, r, r1, grad_mask, &part);
        char why[256] = "";
        bool same = h_result_equal_slice(p, &whole, &part, r, r1, why, sizeof why);
        if (!same)
            fprintf(stderr, "rank %d/%d, split %d (%lld+%lld): %s\n", h_rank, h_size, pattern,
                    (long long) r.start, (long long) r.count, why);
        h_assert_all(same);
        h_result_free(&part);
    }
    h_result_free(&whole);
}

void h_check_layouts(const h_problem *p, const h_term *terms, int n_terms, unsigned grad_mask)
{
    h_problem batch_major = *p, time_major = *p;
    batch_major.time_major = false;
    time_major.time_major = true;
    h_result rb, rt;
    h_eval_self(&batch_major, terms, n_terms, grad_mask, &rb);
    h_eval_self(&time_major, terms, n_terms, grad_mask, &rt);
    char why[256] = "";
    h_range all = {0, p->B}, all1 = {0, p->B1};
    bool same = rb.status == CRL_OK
                && h_result_equal_slice(p, &rb, &rt, all, all1, why, sizeof why);
    if (!same)
        fprintf(stderr, "rank %d: batch-major vs time-major: %s %s\n", h_rank, why, rb.message);
    h_assert_all(same);
    h_result_free(&rb);
    h_result_free(&rt);
}

void h_check_exact(h_problem_maker make, uint64_t seed, const h_term *terms, int n_terms,
                   unsigned grad_mask)
{
    for (int dt = 0; dt < 2; dt++) {
        crl_dtype dtype = dt ? CRL_FLOAT64 : CRL_FLOAT32;
        for (int tm = 0; tm < 2; tm++) {
            h_problem p = make(dtype, tm, seed);
            h_check_splits(&p, terms, n_terms, grad_mask);
            if (tm == 0)
                h_check_layouts(&p, terms, n_terms, grad_mask);
            h_problem_free(&p);
        }
    }
}

void h_check_chunks(const h_problem *p, const h_term *terms, int n_terms, unsigned grad_mask,
                    int64_t max_chunk)
{
    assert_null(p->states1);
    h_result whole;
    h_eval_self(p, terms, n_terms, grad_mask, &whole);
    h_assert_all(whole.status == CRL_OK);
    for (int64_t chunk = 1; chunk <= max_chunk; chunk++) {
        h_range r = h_split((int) (chunk % h_split_count()), p->B, h_rank, h_size);
        h_result part;
        h_eval_chunked(p, terms, n_terms, MPI_COMM_WORLD, r, chunk, grad_mask, &part);
        char why[256] = "";
        bool same = h_result_equal_slice(p, &whole, &part, r, (h_range){0, 0}, why, sizeof why);
        if (!same)
            fprintf(stderr, "rank %d/%d, chunks of %lld (slice %lld+%lld): %s\n", h_rank, h_size,
                    (long long) chunk, (long long) r.start, (long long) r.count, why);
        h_assert_all(same);
        h_result_free(&part);
    }
    h_result_free(&whole);
}

/* ------------------------------------------------------------------------ */

static double total_of(const h_problem *p, const h_term *terms, int n_terms)
{
    h_result res;
    h_eval_self(p, terms, n_terms, 0, &res);
    if (res.status != CRL_OK)
        fprintf(stderr, "finite difference evaluation failed: %s\n", res.message);
    assert_int_equal(res.status, CRL_OK);
    double total = res.total;
    h_result_free(&res);
    return total;
}

void h_check_gradients(const h_problem *p, const h_term *terms, int n_terms, unsigned grad_mask,
                       double step, double tol, int64_t max_elements)
{
    assert_int_equal(p->dtype, CRL_FLOAT64);
    h_result base;
    h_eval_self(p, terms, n_terms, grad_mask, &base);
    h_assert_all(base.status == CRL_OK);
    h_problem q = *p;
    double *arrays[8] = {q.states, q.states1, q.pred, q.label, q.w_in, q.w_hid, q.w_out, q.w_hebb};
    int64_t lengths[8] = {p->B * p->T * p->N, p->B1 * p->T1 * p->N, p->B * p->T * p->K,
                          p->B * p->T * p->K,  p->N * p->N_in,       p->N * p->N,
                          p->N_out * p->N,     p->N * p->N};
    const char *names[8] = {"states", "states1", "pred", "label",
                            "w_in",   "w_hid",   "w_out", "w_hebb"};
    bool ok = true;
    for (int k = 0; k < 8 && ok; k++) {
        if (!(grad_mask & (1u << k)) || arrays[k] == NULL)
            continue;
        const double *g = base.grad[k];
        int64_t n = lengths[k];
        double gmax = 0;
        for (int64_t e = 0; e < n; e++)
            gmax = fmax(gmax, fabs(g[e]));
        int64_t stride = n > max_elements ? n / max_elements : 1;
        /* The ranks share the probes. */
        for (int64_t e = (int64_t) h_rank * stride; e < n; e += stride * h_size) {
            double x = arrays[k][e], h = step * fmax(1.0, fabs(x));
            arrays[k][e] = x + h;
            double fp = total_of(&q, terms, n_terms);
            arrays[k][e] = x - h;
            double fm = total_of(&q, terms, n_terms);
            arrays[k][e] = x;
            double fd = (fp - fm) / (2 * h);
            double bound = tol * gmax + 1e-9 * fmax(1.0, fabs(base.total));
            if (!(fabs(fd - g[e]) <= bound)) {
                fprintf(stderr,
                        "rank %d: d total / d %s[%lld]: finite difference %.12g, analytic %.12g "
                        "(bound %.3g)\n",
                        h_rank, names[k], (long long) e, fd, g[e], bound);
                ok = false;
                break;
            }
        }
    }
    h_result_free(&base);
    h_assert_all(ok);
}

bool h_covers_every_type(const h_term *terms, int n_terms)
{
    bool all = true;
    for (int k = 0; k < crl_term_type_count(); k++) {
        bool found = false;
        for (int j = 0; j < n_terms; j++)
            found = found || strcmp(terms[j].type, crl_term_type_name(k)) == 0;
        if (!found)
            fprintf(stderr, "type %s has no case in the list\n", crl_term_type_name(k));
        all = all && found;
    }
    return all;
}

double h_value(const h_result *res, const char *name)
{
    int64_t at = 0;
    for (int64_t k = 0; k < res->n_values; k++) {
        if (strcmp(res->names[k], name) == 0)
            return res->values[at];
        at += res->lengths[k];
    }
    fprintf(stderr, "no value named %s\n", name);
    fail();
    return NAN;
}

static uint64_t text_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char) *s) * 1099511628211ULL;
    return h >> 1;
}

void h_assert_error(const h_result *res, int code, const char *needle)
{
    bool ok = res->status == code && strstr(res->message, needle) != NULL;
    if (!ok)
        fprintf(stderr, "rank %d: expected status %d with '%s', got %d: %s\n", h_rank, code,
                needle, res->status, res->message);
    h_assert_all(ok);
    /* The same message on every rank. */
    int64_t h = (int64_t) text_hash(res->message), pair[2] = {-h, h}, all[2];
    MPI_Allreduce(pair, all, 2, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    h_assert_all(-all[0] == all[1]);
}

void h_check_error(const h_problem *p, const h_term *terms, int n_terms, h_range r, h_range r1,
                   unsigned grad_mask, int code, const char *needle)
{
    double fill = h_grad_fill;
    h_grad_fill = 1.5;
    h_result res;
    h_eval(p, terms, n_terms, MPI_COMM_WORLD, r, r1, grad_mask, &res);
    h_assert_error(&res, code, needle);
    h_assert_all(h_grads_untouched(p, &res));
    h_grad_fill = fill;
    h_result_free(&res);
}
