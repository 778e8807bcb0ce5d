/*
 * hebbian.c - HebbianLoss (docs/losses.md "HebbianLoss") on BLAS-3:
 *
 *     G_b = S_b^T S_b  (N x N),  h_b = 1/T sum_ij W_ij G_b,ij,  L = 1/B sum_b |h_b|
 *     dL/ds_{b,t} = sign(h_b) / (B T) (W + W^T) s_{b,t}
 *     dL/dW       = 1/(B T) sum_b sign(h_b) G_b
 *
 * Forward: one syrk per canonical unit of a batch element (CRL_TIME_UNIT
 * steps; the upper triangle of G_b,u), and its weighted sum in double in a
 * fixed order; h_b T is the exact sum of its units' (a wide accumulator),
 * rounded once.  Backward: one gemm per block of rows, S_rows (W + W^T), in
 * the states' element type.
 *
 * Reads: states (B, T, N), w_hebb (N x N, any dtype).
 * Slots, whole elements: [0] sum_b |h_b|; with the gradient of w_hebb
 * requested, then the upper triangle of sum_b sign(h_b) G_b row by row
 * (N (N + 1) / 2 slots), so that dL/dW is the global sum, the same on every
 * rank after the reduction.  With blocks (crl_loss_set_block): [0] 0, [1]
 * the number of elements some chunk holds only part of, [2, 2 + B) h_b T
 * per global element (docs/losses.md "Decompositions": sign(h_b) is known
 * only after the reduction), then the weight gradient's slots; an element
 * a chunk holds whole adds sign(h_b) G_b at once, the sum of the units' G
 * of a part is kept (exactly, per element) and added times sign(h_b) in a
 * second reduction (add_more).
 *
 * Exactness: G_b,u is computed by BLAS from the rows of one unit only (the
 * kernels pack their operands, so neither the element's address nor the
 * stride between its rows changes the arithmetic), its weighted sum in
 * double in a fixed order, and everything else is combined exactly: a
 * one-unit element's sign(h_b) G_b into a running double per
 * weight-gradient slot (vectorized) plus the exact error of each addition
 * (TwoSum) into the slot when it is not 0, the running sums themselves at
 * the end of each chunk (accumulate_end); the units of a longer element
 * into exact accumulators first.  So each slot holds its sum exactly,
 * whatever the grouping, and sum |h_b| is rounded once in both layouts.
 */
#include "../internal.h"
#include "hebbian.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The engine's tiles of the backward: BLOCK_ROWS rows at least.  Its gemm
 * runs on GEMM_ROWS rows at a time, from an element's first row (M large
 * enough for the kernels to run at speed, and one packing of W + W^T per
 * block rather than per tile); the tiles read their rows of the block. */
enum { BLOCK_ROWS = 64, GEMM_ROWS = 256 };

/*
 * Threaded OpenBLAS gives other bits than one thread (its partition of a
 * product among threads picks other kernels at the edges), and a rank's
 * thread count follows Open MPI's binding, which changes with the rank
 * count.  The products here run on one thread (the ranks are the
 * parallelism), and the caller's thread count is restored after them.
 */
static int blas_serial_begin(void)
{
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    int threads = openblas_get_num_threads();
    if (threads != 1)
        openblas_set_num_threads(1);
    return threads;
#else
    return 1;
#endif
}

static void blas_serial_end(int threads)
{
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    if (threads != 1)
        openblas_set_num_threads(threads);
#else
    (void) threads;
#endif
}


static const crl_param_info params[] = {
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static unsigned uses(const crl_term *t)
{
    (void) t;
    return CRL_USES(CRL_ROLE_STATES) | CRL_USES(CRL_ROLE_W_HEBB);
}

/* The states' gradient always; the weight's only when it was announced
 * (its sums are part of the reduction). */
static unsigned grads(const crl_term *t, unsigned announced)
{
    (void) t;
    return CRL_USES(CRL_ROLE_STATES) | (announced & CRL_USES(CRL_ROLE_W_HEBB));
}

/* Stride between the rows of a BLAS operand of count rows (any value >= n
 * when there is one row: a (T = 1) array may have any time stride). */
static int64_t rows_ld(const crl_array *a, int64_t count)
{
    return count > 1 ? a->time_stride : a->width;
}

/* coef: the upper triangle of W + W^T with W's own diagonal, so that
 * sum_ij W_ij G_ij = sum_{i <= j} coef_ij G_ij for a symmetric G; wsym: the
 * full W + W^T in the states' type, when the backward needs it. */
static void build_from_weight(hebbian_state *s, const crl_matrix *w, bool backward)
{
    int64_t n = s->n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++)
            s->coef[i * n + j] = i == j ? crl_matrix_get(w, i, i)
                                        : crl_matrix_get(w, i, j) + crl_matrix_get(w, j, i);
    if (!backward)
        return;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double v = crl_matrix_get(w, i, j) + crl_matrix_get(w, j, i);
            if (s->dtype == CRL_FLOAT32)
                ((float *) s->wsym)[i * n + j] = (float) v;
            else
                ((double *) s->wsym)[i * n + j] = v;
        }
}

/* Checks W against N, takes the memory of the evaluation, and builds what
 * forward and backward need from W. */
static int prepare(crl_term *t, const crl_global *g, int64_t *slots, crl_error *err)
{
    const crl_array *a = &g->inputs->states;
    const crl_matrix *w = &g->inputs->w_hebb;
    int64_t n = a->width, square_bytes, tri;
    if (w->rows != n || w->cols != n)
        return crl_fail(err, CRL_ERR_INVALID, "w_hebb is %lld x %lld, expected N x N with N = %lld",
                        (long long) w->rows, (long long) w->cols, (long long) n);
    /* dL/dW is a sum over all ranks: only when asked for at accumulate. */
    bool want_weight = g->grad_announced & CRL_USES(CRL_ROLE_W_HEBB);
    bool want_states = g->grad_mask & CRL_USES(CRL_ROLE_STATES);
    if (n > INT_MAX || !crl_mul_size(n, n, &square_bytes)
        || !crl_mul_size(square_bytes, (int64_t) sizeof(double), &square_bytes)
        || !crl_mul_size(n, n + 1, &tri) || (want_weight && tri / 2 >= INT_MAX / 2))
        return crl_fail(err, CRL_ERR_INVALID,
                        "N = %lld is too large for the Hebbian correlation%s", (long long) n,
                        want_weight ? " and its gradient" : "");
    if (t->state == NULL && (t->state = calloc(1, sizeof(hebbian_state))) == NULL)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
    hebbian_state *s = t->state;
    size_t size = crl_dtype_size(a->dtype);
    int64_t typed_bytes = square_bytes / (int64_t) sizeof(double) * (int64_t) size;
    bool ok = crl_reserve(&s->coef, &s->coef_cap, square_bytes, 1)
              && crl_reserve(&s->gram, &s->gram_cap, typed_bytes, 1)
              && crl_reserve(&s->column, &s->column_cap, n * (int64_t) sizeof(double), 1)
              && (!want_states || (crl_reserve(&s->wsym, &s->wsym_cap, typed_bytes, 1)
                                   && crl_reserve(&s->product, &s->product_cap,
                                                 GEMM_ROWS * n * (int64_t) size, 1)))
              && crl_reserve(&s->sign, &s->sign_cap, a->batch, 1)
              && crl_reserve(&s->part_of, &s->part_of_cap, a->batch, sizeof(int64_t))
              && (!want_weight
                  || (crl_reserve(&s->run, &s->run_cap, tri / 2 * (int64_t) sizeof(double), 1)
                      && crl_reserve(&s->rest, &s->rest_cap, n * (int64_t) sizeof(double), 1)));
    if (!ok)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory for N = %lld", (long long) n);
    s->dtype = a->dtype;
    s->n = n;
    s->want_weight_grad = want_weight;
    build_from_weight(s, w, want_states);
    s->block = NULL;   /* a new evaluation: no product block is current */
    if (want_weight)
        memset(s->run, 0, (size_t) (tri / 2) * sizeof(double));
    s->blocked = g->place[0].blocked;
    s->batch = s->blocked ? g->place[0].batch : 0;
    s->h_slot = 2;
    s->weight_slot = s->blocked ? 2 + s->batch : 1;
    s->n_parts = 0;
    s->n_signs = 0;
    if (s->blocked && s->batch > INT64_MAX / 4 - tri / 2)
        return crl_fail(err, CRL_ERR_INVALID, "a batch of %lld is too large", (long long) s->batch);
    *slots = s->weight_slot + (want_weight ? tri / 2 : 0);
    return CRL_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                    */
/* ------------------------------------------------------------------------ */

/* The upper triangle of G = S^T S into s->gram (in s->dtype); S is (time,
 * n) at rows with row stride ld, in s->dtype. */
static void gram_upper(hebbian_state *s, const void *rows, int64_t ld, int64_t time)
{
    int n = (int) s->n;
    int threads = blas_serial_begin();
    if (s->dtype == CRL_FLOAT64)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, (int) time, 1.0, rows, (int) ld,
                    0.0, s->gram, n);
    else
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, (int) time, 1.0f, rows, (int) ld,
                    0.0f, s->gram, n);
    blas_serial_end(threads);
}

/*
 * The weighted pass over G_b's upper triangle, for each type syrk writes
 * (the other, into the running sums, is in hebbian_sums.c):
 *
 * weighted_upper: sum_{i <= j} coef_ij G_ij in a fixed order: column sums
 * acc_j over the rows i <= j (element-wise, so it vectorizes without
 * reassociation), then the sum of the column sums in index order.
 *
 *
 * Each entry is widened to double where it is read: the same values as a
 * double copy of G_b, without writing one.
 */
#define HEBBIAN_KERNELS(suffix, type)                                                           \
    CRL_HOT static double weighted_upper##suffix(const double *restrict coef,                    \
                                                 const type *restrict gram, int64_t n,            \
                                                 double *restrict acc)                            \
    {                                                                                           \
        for (int64_t j = 0; j < n; j++)                                                         \
            acc[j] = 0;                                                                         \
        for (int64_t i = 0; i < n; i++)                                                         \
            for (int64_t j = i; j < n; j++)                                                     \
                acc[j] += coef[i * n + j] * (double) gram[i * n + j];                           \
        double total = 0;                                                                       \
        for (int64_t j = 0; j < n; j++)                                                         \
            total += acc[j];                                                                    \
        return total;                                                                           \
    }
HEBBIAN_KERNELS(_f64, double)
HEBBIAN_KERNELS(_f32, float)

/* h_b T: sum_ij W_ij G_ij of the element's G_b in s->gram. */
static double weighted_gram(hebbian_state *s)
{
    if (s->dtype == CRL_FLOAT64)
        return weighted_upper_f64(s->coef, s->gram, s->n, s->column);
    return weighted_upper_f32(s->coef, s->gram, s->n, s->column);
}

/* The chunk's running sums into the slots (and back to 0). */
static void accumulate_end(crl_term *t, crl_xsum *slots)
{
    crl_hebbian_flush_running(t->state, slots + ((hebbian_state *) t->state)->weight_slot);
}

/* One unit of a batch element: its G_u by syrk and sum_ij W_ij G_u,ij; after
 * the chunk's last unit of the element, |h_b| and sign(h_b) G_b into the
 * slots when the chunk holds the element whole, else (blocks) its part. */
static int accumulate_element(crl_term *t, const crl_rows *unit, crl_xsum *slots, crl_error *err)
{
    hebbian_state *s = t->state;
    const crl_array *a = unit->array;
    const crl_place *place = unit->place;
    int64_t rows = unit->count, e = unit->element, tri = s->n * (s->n + 1) / 2;
    if (rows_ld(a, rows) > INT_MAX)
        return crl_fail(err, CRL_ERR_INVALID, "states: time stride %lld exceeds BLAS's int",
                        (long long) a->time_stride);
    gram_upper(s, crl_array_row(a, unit->b, unit->t0), rows_ld(a, rows), rows);
    double part = weighted_gram(s);
    /* A NaN or infinite rate makes its diagonal entry of G_u, and so this
     * sum, non-finite whatever W holds: this is the pass's check of the
     * rates (no moments pass is needed for it). */
    if (!isfinite(part)) {
        if (crl_report_nonfinite(a, CRL_ROLE_STATES, unit->b, err) != CRL_OK)
            return err->code;
        return crl_fail(err, CRL_ERR_DOMAIN, "states[b=%lld]: S^T S overflows %s",
                        (long long) unit->b, s->dtype == CRL_FLOAT32 ? "float32" : "float64");
    }
    bool whole = crl_place_whole(place, a->time), single = whole && unit->t0 == 0 && unit->last;
    int64_t batch = place->batch_offset + unit->b;
    hebbian_part *held = NULL;
    if (unit->t0 == 0) {
        memset(&s->h_acc, 0, sizeof s->h_acc);
        if (s->want_weight_grad && whole && !single
            && !crl_hebbian_zeroed_sums(&s->units, &s->units_cap, &s->units_spill, tri))
            return crl_fail(err, CRL_ERR_NOMEM, "out of memory for the Gram sums");
    }
    if (!whole && (held = crl_hebbian_part_for(s, batch)) == NULL)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory for the part of element %lld",
                        (long long) batch);
    crl_xsum_wide_add(&s->h_acc, part);
    if (s->blocked)
        crl_xsum_add(&slots[s->h_slot + batch], part);
    if (s->want_weight_grad && !single
        && crl_hebbian_add_gram(s, whole ? s->units : held->gram, whole ? &s->units_spill : &held->spill, err)
               != CRL_OK)
        return err->code;
    if (!unit->last)
        return CRL_OK;
    if (!crl_reserve(&s->sign, &s->sign_cap, e + 1, 1)
        || !crl_reserve(&s->part_of, &s->part_of_cap, e + 1, sizeof(int64_t)))
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory for the sign of element %lld",
                        (long long) e);
    s->sign[e] = 0;
    s->part_of[e] = whole ? -1 : batch;
    s->n_signs = e + 1 > s->n_signs ? e + 1 : s->n_signs;
    if (!whole) {
        crl_xsum_add(&slots[1], 1.0);  /* one more part: a second reduction */
        return CRL_OK;
    }
    double h = crl_xsum_wide_round(&s->h_acc) / (double) place->time, sign = crl_sign(h);
    s->sign[e] = (signed char) sign;
    if (!s->blocked)
        crl_xsum_add(&slots[0], fabs(h));
    if (s->want_weight_grad && sign != 0 && single)
        crl_hebbian_add_signed_upper(s, slots + s->weight_slot, sign);
    else if (s->want_weight_grad && sign != 0)
        crl_hebbian_add_signed_sums(slots + s->weight_slot, s->units, &s->units_spill, tri, sign);
    return CRL_OK;
}

/* h_b of global element b from the reduced sums (blocks). */
static double element_h(const hebbian_state *s, const crl_dd *slots, int64_t b, double time)
{
    return crl_dd_round(slots[s->h_slot + b]) / time;
}

/* Blocks: a second reduction adds sign(h_b) times the parts' sums of G. */
static bool more(const crl_term *t, const crl_global *g, const crl_dd *slots)
{
    (void) g;
    const hebbian_state *s = t->state;
    return s->blocked && s->want_weight_grad && crl_dd_round(slots[1]) > 0;
}

static void add_more(crl_term *t, MPI_Comm comm, const crl_global *g, const crl_dd *slots,
                     crl_xsum *more_slots, crl_error *err)
{
    (void) comm;
    (void) err;
    hebbian_state *s = t->state;
    int64_t tri = s->n * (s->n + 1) / 2;
    for (int64_t k = 0; k < s->n_parts; k++) {
        const hebbian_part *part = &s->parts[k];
        double sign = crl_sign(element_h(s, slots, part->batch, (double) g->time[0]));
        if (sign != 0)
            crl_hebbian_add_signed_sums(more_slots + s->weight_slot, part->gram, &part->spill, tri, sign);
    }
}

static int finalize(crl_term *t, crl_global *g, const crl_dd *slots, crl_term_out *out,
                    crl_error *err)
{
    (void) err;
    hebbian_state *s = t->state;
    const crl_population *pop = &g->pop[0];
    int64_t n = s->n;
    if (s->blocked) {
        /* sum_b |h_b|, exactly, rounded once: the bits of slot 0's sum of
         * whole elements. */
        crl_xsum_wide sum;
        memset(&sum, 0, sizeof sum);
        for (int64_t b = 0; b < s->batch; b++)
            crl_xsum_wide_add(&sum, fabs(element_h(s, slots, b, (double) pop->time)));
        out->value = crl_dd_round(crl_dd_div_d(crl_xsum_wide_dd(&sum), (double) pop->batch));
        for (int64_t k = 0; k < s->n_signs; k++)
            if (s->part_of[k] >= 0)
                s->sign[k] = (signed char) crl_sign(element_h(s, slots, s->part_of[k],
                                                              (double) pop->time));
    } else {
        out->value = crl_dd_round(crl_dd_div_d(slots[0], (double) pop->batch));
    }
    s->scale = t->weight / pop->count;
    double *d = g->weights.grad[CRL_ROLE_W_HEBB - CRL_FIRST_MATRIX_ROLE];
    if (d != NULL) {
        /* dL/dW = 1/(B T) sum_b sign(h_b) G_b, symmetric. */
        const crl_dd *sum = slots + s->weight_slot;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i; j < n; j++, sum++) {
                double v = t->weight * (crl_dd_round(*sum) / pop->count);
                d[i * n + j] += v;
                if (j != i)
                    d[j * n + i] += v;
            }
    }
    return CRL_OK;
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                   */
/* ------------------------------------------------------------------------ */

CRL_HOT static void add_scaled_f32(double *restrict grad, const float *restrict x, int64_t count,
                                   double c)
{
    for (int64_t k = 0; k < count; k++)
        grad[k] += c * (double) x[k];
}

CRL_HOT static void add_scaled_f64(double *restrict grad, const double *restrict x,
                                   int64_t count, double c)
{
    for (int64_t k = 0; k < count; k++)
        grad[k] += c * x[k];
}

/* s->product = the block of GEMM_ROWS rows (fewer at the end) that holds
 * row t of the element of rows, times W + W^T, unless it holds it already. */
static void product_block(hebbian_state *s, const crl_rows *rows, int64_t t)
{
    const crl_array *a = rows->array;
    int64_t t0 = t / GEMM_ROWS * GEMM_ROWS;
    const void *x = crl_array_row(a, rows->b, t0);
    if (s->block == x && s->block_element == rows->element && s->block_t0 == t0)
        return;
    int n = (int) s->n;
    int m = (int) (a->time - t0 < GEMM_ROWS ? a->time - t0 : GEMM_ROWS);
    int ld = (int) rows_ld(a, m);
    int threads = blas_serial_begin();
    if (s->dtype == CRL_FLOAT32)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, n, 1.0f, x, ld, s->wsym, n,
                    0.0f, s->product, n);
    else
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, n, 1.0, x, ld, s->wsym, n,
                    0.0, s->product, n);
    blas_serial_end(threads);
    s->block = x;
    s->block_element = rows->element;
    s->block_t0 = t0;
    s->block_rows = m;
}

/* grad (count x n) += weight sign(h_b) / (B T) S_rows (W + W^T), from the
 * gemm blocks of the element's raw rows. */
static void backward_rows(const crl_term *t, const crl_global *g, const crl_rows *rows,
                          double *grad)
{
    (void) g;
    hebbian_state *s = t->state;
    double c = s->scale * s->sign[rows->element];
    if (c == 0)
        return;
    int64_t n = s->n;
    for (int64_t r = 0; r < rows->count;) {
        int64_t at = rows->t0 + r;
        product_block(s, rows, at);
        int64_t from = at - s->block_t0, m = s->block_t0 + s->block_rows - at;
        if (m > rows->count - r)
            m = rows->count - r;
        if (s->dtype == CRL_FLOAT32)
            add_scaled_f32(grad + r * n, (const float *) s->product + from * n, m * n, c);
        else
            add_scaled_f64(grad + r * n, (const double *) s->product + from * n, m * n, c);
        r += m;
    }
}

static void destroy(crl_term *t)
{
    hebbian_state *s = t->state;
    if (s != NULL) {
        free(s->coef);
        free(s->gram);
        free(s->column);
        free(s->wsym);
        free(s->product);
        free(s->sign);
        free(s->part_of);
        free(s->units);
        free(s->units_spill.items);
        for (int64_t k = 0; k < s->parts_cap; k++) {
            free(s->parts[k].gram);
            free(s->parts[k].spill.items);
        }
        free(s->parts);
        free(s->run);
        free(s->rest);
        free(s);
    }
    t->state = NULL;
}

const crl_term_class crl_term_hebbian = {
    .type = "hebbian",
    .summary = "HebbianLoss: mean over batch elements of |sum_ij W_ij C_ij|, C the time-averaged "
               "correlation of the rates",
    .python_name = "HebbianLoss",
    .example = "h=hebbian:lambda=0.3",
    .inputs = CRL_USES(CRL_ROLE_STATES) | CRL_USES(CRL_ROLE_W_HEBB),
    .gradients = CRL_USES(CRL_ROLE_STATES) | CRL_USES(CRL_ROLE_W_HEBB),
    .params = params,
    .tile_rows = BLOCK_ROWS,
    .raw_rows = true,
    .uses = uses,
    .grads = grads,
    .prepare = prepare,
    .accumulate_element = accumulate_element,
    .accumulate_end = accumulate_end,
    .more = more,
    .add_more = add_more,
    .finalize = finalize,
    .backward_rows = backward_rows,
    .destroy = destroy,
};
