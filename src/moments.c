/*
 * moments.c - the shared per-neuron moments pass over a population (states
 * or states1), declared by the terms that read mu_i, the variances or
 * sum S^2 (docs/losses.md "Data and notation"): accumulate (shifted sums
 * per unit of CRL_TIME_UNIT steps of an element, each about the unit's first
 * row, folded exactly into the packed buffer), finalize (means and variances from the
 * global sums), and backward (the affine gradient alpha_i + beta_i (S - mu_i)
 * the terms' finalize filled in, plus their row hooks), side by side.
 */
#include "engine.h"
#include "vecmath.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Four rows' moments over width neurons (the kernel's y0..y3, ci, t1, t2 at
 * the first of them); with rows, also the rows' lanes and peaks
 * (ROW_LANES_STEP). */
#define MOMENTS_STEP(width, squares, rows)                                                      \
    for (int64_t i = 0; i < (width); i++) {                                                    \
        double d0 = (double) y0[i] - ci[i], d1 = (double) y1[i] - ci[i];                       \
        double d2 = (double) y2[i] - ci[i], d3 = (double) y3[i] - ci[i];                       \
        t1[i] = (((t1[i] + d0) + d1) + d2) + d3;                                               \
        if (squares)                                                                           \
            t2[i] = (((t2[i] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3;                       \
        if (rows) {                                                                            \
            ROW_LANES_STEP(0, y0)                                                              \
            ROW_LANES_STEP(1, y1)                                                              \
            ROW_LANES_STEP(2, y2)                                                              \
            ROW_LANES_STEP(3, y3)                                                              \
        }                                                                                      \
    }

/* Row q's lane i (element i0 + i: lane k mod line of crl_sum_fixed_f32's
 * order, where line is its 16 lanes) and the largest of its bit patterns
 * as signed integers. */
#define ROW_LANES_STEP(q, y)                                                                    \
    {                                                                                          \
        int32_t bits;                                                                          \
        memcpy(&bits, &(y)[i], sizeof bits);                                                   \
        lanes[q][i] += (double) (y)[i];                                                        \
        peaks[q][i] = bits > peaks[q][i] ? bits : peaks[q][i];                                 \
    }

/*
 * Per-element moments about shift c: s1 += x - c, s2 += (x - c)^2 (when
 * squares), row after row.  Four rows per sweep over the neurons keep s1 and
 * s2 in registers four times longer; each s1[i] still adds its rows in time
 * order, so the bits are those of one row at a time, with or without s2.
 * With rows (float32 only), the sweep also forms each row's sum in
 * crl_sum_fixed_f32's lanes (a line of 16 floats is its 16 lanes, the lines
 * in index order, then crl_combine_lanes: its bits) and its peak
 * (crl_rows.row_sum) into row_sum[r] and row_sum[count + r], while the
 * row's lines are in registers, rather than in two more passes of the
 * entropy's over each row.
 */
#define MOMENTS_KERNEL(name, type, squares, rows)                                               \
    CRL_HOT static void name(const type *restrict x, int64_t ld, int64_t count, int64_t n,     \
                             const double *restrict c, double *restrict s1,                    \
                             double *restrict s2, double *restrict row_sum)                    \
    {                                                                                          \
        enum { line = 64 / (int) sizeof(type) };                                               \
        double lanes[4][line];                                                                 \
        int32_t peaks[4][line];                                                                \
        /* The distance counts from the sweep's last row: a sweep reads 4. */                  \
        int64_t r = 0, ahead = (4 + crl_prefetch_rows_ahead(n * (int64_t) sizeof(type))) * ld;  \
        for (; r + 4 <= count; r += 4) {                                                       \
            const type *x0 = x + r * ld, *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;          \
            if (rows)                                                                          \
                for (int q = 0; q < 4; q++)                                                    \
                    for (int j = 0; j < line; j++) {                                           \
                        lanes[q][j] = 0;                                                       \
                        peaks[q][j] = INT32_MIN;                                               \
                    }                                                                          \
            for (int64_t i0 = 0; i0 < n; i0 += line) {   /* a line of each row at a time */    \
                for (int k = 0; k < 4; k++)                                                    \
                    __builtin_prefetch(x0 + ahead + k * ld + i0, 0, 3);                        \
                /* A whole line is a loop of constant length, unrolled into                    \
                 * vectors without the checks of a variable one. */                            \
                int64_t width = n - i0 < line ? n - i0 : line;                                 \
                const type *y0 = x0 + i0, *y1 = x1 + i0, *y2 = x2 + i0, *y3 = x3 + i0;         \
                const double *ci = c + i0;                                                     \
                double *t1 = s1 + i0, *t2 = s2 + i0;                                           \
                if (width == line) {                                                           \
                    MOMENTS_STEP(line, squares, rows)                                          \
                } else {                                                                       \
                    MOMENTS_STEP(width, squares, rows)                                         \
                }                                                                              \
            }                                                                                  \
            for (int q = 0; q < 4 && rows; q++) {                                              \
                int32_t top = INT32_MIN;                                                       \
                for (int j = 0; j < line; j++)                                                 \
                    top = peaks[q][j] > top ? peaks[q][j] : top;                               \
                float value;                                                                   \
                memcpy(&value, &top, sizeof value);                                            \
                row_sum[r + q] = crl_combine_lanes(lanes[q], line);                            \
                row_sum[count + r + q] = value;                                                \
            }                                                                                  \
        }                                                                                      \
        for (; r < count; r++) {                                                               \
            crl_prefetch_ahead(x + r * ld, ld, n * (int64_t) sizeof(type), sizeof(type),        \
                               false);                                                         \
            for (int64_t i = 0; i < n; i++) {                                                  \
                double d = (double) x[r * ld + i] - c[i];                                      \
                s1[i] += d;                                                                    \
                if (squares)                                                                   \
                    s2[i] += d * d;                                                            \
            }                                                                                  \
            if (rows) {                                                                        \
                row_sum[r] = crl_sum_fixed_f32((const float *) (x + r * ld), n);               \
                row_sum[count + r] = crl_row_peak_f32((const float *) (x + r * ld), n);        \
            }                                                                                  \
        }                                                                                      \
    }
MOMENTS_KERNEL(moments_f64, double, true, false)
MOMENTS_KERNEL(moments_f32, float, true, false)
MOMENTS_KERNEL(moments_rows_f32, float, true, true)
MOMENTS_KERNEL(sums_f64, double, false, false)
MOMENTS_KERNEL(sums_f32, float, false, false)

/* Adds one batch element's shifted moments to the global sums:
 * sum S = T c + s1,  sum S^2 = s2 + 2 c s1 + T c^2 (sumsq not NULL), each
 * product split into its exact two parts (TwoProduct), every part added
 * exactly. */
static void fold_moments(crl_xsum *sum, crl_xsum *sumsq, const double *c, const double *s1,
                         const double *s2, int64_t n, double time)
{
    for (int64_t i = 0; i < n; i++) {
        crl_dd tc = crl_two_prod(time, c[i]);
        crl_xsum_add(&sum[i], tc.hi);
        crl_xsum_add(&sum[i], tc.lo);
        crl_xsum_add(&sum[i], s1[i]);
        if (sumsq == NULL)
            continue;
        crl_dd cc = crl_two_prod(c[i], c[i]);
        crl_dd hi = crl_two_prod(cc.hi, time), lo = crl_two_prod(cc.lo, time);
        crl_dd cs = crl_two_prod(2.0 * c[i], s1[i]);
        const double parts[] = {hi.hi, hi.lo, lo.hi, lo.lo, cs.hi, cs.lo, s2[i]};
        for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
            crl_xsum_add(&sumsq[i], parts[k]);
    }
}

/* Whether some term reading population p has row hooks, and whether one of
 * them needs the rows as doubles. */
static void row_hook_needs(const crl_loss *loss, int p, bool backward, bool *hooks,
                           bool *doubles)
{
    *hooks = *doubles = false;
    for (int k = 0; k < loss->n_terms; k++) {
        const crl_term_class *cls = loss->terms[k].cls;
        bool has = backward ? cls->backward_rows != NULL : cls->accumulate_rows != NULL;
        if (term_uses_pop(&loss->terms[k], p) && has) {
            *hooks = true;
            *doubles |= !cls->raw_rows;
        }
    }
}

/* Rows u0 .. u1 - 1 of element b of population p, one canonical unit
 * (docs/losses.md "Exactness"): its shifted moments, folded exactly into the
 * sums, and the terms' row hooks tile by tile, then their element hooks. */
static int forward_unit(crl_loss *loss, crl_global *g, int p, crl_xsum *payload, int64_t b,
                        int64_t element, int64_t base, int64_t u0, int64_t u1, crl_error *err)
{
    const crl_array *a = g->pop[p].array;
    const char *what = crl_role_name(pop_role(p));
    scratch *w = &loss->work;
    int64_t n = a->width, rows = crl_tile_rows(loss, n), ld;
    crl_xsum *sum = payload + loss->next_layout[REGION_POP0 + p], *sumsq = sum + n;
    bool row_hooks, doubles;
    bool moments = crl_pass_needed(loss, pop_role(p), CRL_PASS_MOMENTS);
    /* Without squares their slots stay 0 (the layout does not change). */
    bool squares = moments && crl_pass_needed(loss, pop_role(p), CRL_PASS_SQUARES);
    bool row_sums = crl_pass_needed(loss, pop_role(p), CRL_PASS_ROW_SUMS);
    row_hook_needs(loss, p, false, &row_hooks, &doubles);
    doubles |= a->dtype == CRL_FLOAT64; /* in place: free */
    if (!moments)
        doubles = doubles && row_hooks;
    const double *c = crl_rows_load(a, b, u0, 1, w->shift, &ld);
    memset(w->s1, 0, sizeof(double) * (size_t) n);
    memset(w->s2, 0, sizeof(double) * (size_t) n);
    for (int64_t t0 = u0; t0 < u1; t0 += rows) {
        int64_t count = u1 - t0 < rows ? u1 - t0 : rows;
        const double *x = NULL;
        ld = 0;
        if (row_hooks && !moments)
            crl_prefetch_rows(a, b, t0 + rows, rows, false);
        const float *raw = doubles ? NULL : (const float *) crl_array_row(a, b, t0);
        double *row_sum = squares && row_sums && !doubles ? w->row_sums : NULL;
        if (doubles) {
            x = crl_rows_load(a, b, t0, count, w->tile, &ld);
            if (squares)
                moments_f64(x, ld, count, n, c, w->s1, w->s2, NULL);
            else if (moments)
                sums_f64(x, ld, count, n, c, w->s1, w->s2, NULL);
        } else if (squares) {
            (row_sum ? moments_rows_f32 : moments_f32)(raw, a->time_stride, count, n, c, w->s1,
                                                       w->s2, row_sum);
        } else if (moments) {
            sums_f32(raw, a->time_stride, count, n, c, w->s1, w->s2, NULL);
        }
        crl_rows view = {pop_role(p), a, b, element, t0, count, n, x, ld,
                         NULL, NULL, 0, NULL, 0, 0, NULL,
                         &g->place[p], base + t0, t0 == u0, false, rows, row_sum, NULL};
        for (int k = 0; k < loss->n_terms && row_hooks; k++) {
            crl_term *t = &loss->terms[k];
            if (term_uses_pop(t, p) && t->cls->accumulate_rows
                && t->cls->accumulate_rows(t, &view, payload + t->slot, err) != CRL_OK)
                return crl_term_error(loss, t, err);
        }
    }
    for (int64_t i = 0; i < n && moments; i++)
        if (!isfinite(w->s1[i]) || !isfinite(w->s2[i])) {
            if (crl_report_nonfinite(a, pop_role(p), b, err) == CRL_OK)
                crl_fail_at(err, CRL_ERR_DOMAIN, pop_role(p), b, -1, -1,
                            "%s[b=%lld]: sum%s overflows", what, (long long) b,
                            squares ? " of squares" : "");
            return err->code;
        }
    if (moments)
        fold_moments(sum, squares ? sumsq : NULL, c, w->s1, w->s2, n, (double) (u1 - u0));
    crl_rows unit = {pop_role(p), a, b, element, u0, u1 - u0, n, NULL, 0,
                     NULL, NULL, 0, NULL, 0, 0, NULL,
                     &g->place[p], base + u0, true, u1 == a->time, 0, NULL, NULL};
    for (int k = 0; k < loss->n_terms; k++) {
        crl_term *t = &loss->terms[k];
        if (term_uses_pop(t, p) && t->cls->accumulate_element
            && t->cls->accumulate_element(t, &unit, payload + t->slot, err) != CRL_OK)
            return crl_term_error(loss, t, err);
    }
    return CRL_OK;
}

/* One pass over this chunk of population p: the shared moments of every
 * batch element, and the row and element hooks of the terms reading it, on
 * the same rows while they are in cache, unit by unit. */
int crl_states_forward(crl_loss *loss, crl_global *g, int p, crl_xsum *payload, crl_error *err)
{
    const crl_array *a = g->pop[p].array;
    int64_t time = a->time;

    for (int64_t b = 0; b < a->batch; b++) {
        int64_t element = loss->seen[p] + b, base = loss->seen_rows[p] + b * time;
        for (int64_t u0 = 0; u0 < time; u0 += CRL_TIME_UNIT) {
            int64_t u1 = time - u0 < CRL_TIME_UNIT ? time : u0 + CRL_TIME_UNIT;
            if (forward_unit(loss, g, p, payload, b, element, base, u0, u1, err) != CRL_OK)
                return err->code;
        }
    }
    for (int k = 0; k < loss->n_terms; k++) {
        crl_term *t = &loss->terms[k];
        if (term_uses_pop(t, p) && t->cls->accumulate_end)
            t->cls->accumulate_end(t, payload + t->slot);
    }
    return CRL_OK;
}

/*
 * Means and variances from the reduced sums.  The sums are exact; as
 * double-doubles they carry at most 2^-106 of themselves (a constant c gives
 * n c^2, which no double-double holds exactly), and the variance's few
 * double-double operations add about 2^-103 sum S^2 / n, so a variance below
 * 2^-96 sum S^2 / n is a constant neuron and is 0: population_kl's
 * zero-variance check must not depend on the value of the constant.  The
 * floor is a function of the global sums alone, so of no decomposition.
 */
int crl_finalize_population(crl_population *pop, const crl_dd *sum, const crl_dd *sumsq,
                            double batch, int64_t time, int role, bool moments, bool squares,
                            crl_error *err)
{
    const char *what = crl_role_name(role);
    const crl_array *a = pop->array;
    pop->batch = (int64_t) batch;
    pop->time = time;
    pop->n = a->width;
    pop->count = batch * (double) time;
    if (pop->batch == 0)
        return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                           "%s: no rank holds a batch element", what);
    memset(pop->alpha, 0, sizeof(double) * (size_t) pop->n);
    memset(pop->beta, 0, sizeof(double) * (size_t) pop->n);
    pop->affine = false;
    if (!moments || !squares) {   /* the means alone, or nothing: no term reads more */
        for (int64_t i = 0; i < pop->n; i++)
            pop->mean[i] = moments ? crl_dd_round(crl_dd_div_d(sum[i], pop->count)) : 0.0;
        memset(pop->var, 0, sizeof(double) * (size_t) pop->n);
        pop->sumsq = 0;
        return CRL_OK;
    }
    crl_dd total = crl_dd_make(0.0);
    for (int64_t i = 0; i < pop->n; i++) {
        pop->mean[i] = crl_dd_round(crl_dd_div_d(sum[i], pop->count));
        crl_dd centered = crl_dd_sub(sumsq[i], crl_dd_div_d(crl_dd_mul(sum[i], sum[i]), pop->count));
        double v = crl_dd_round(crl_dd_div_d(centered, pop->count));
        double floor = 0x1p-96 * crl_dd_round(sumsq[i]) / pop->count;
        pop->var[i] = v > floor ? v : 0.0;
        total = crl_dd_add(total, sumsq[i]);
    }
    pop->sumsq = crl_dd_round(total);
    if (!isfinite(pop->sumsq))
        return crl_fail_at(err, CRL_ERR_DOMAIN, role, -1, -1, -1, "%s: the sum of squares overflows",
                           what);
    return CRL_OK;
}

/* crl_affine_rows's gradient times the kernel's scale, rounded into o[j]. */
#define AFFINE_STORE_STEP(o, y, i0, width, type)                                                \
    for (int64_t j = 0; j < (width); j++) {                                                    \
        double g = alpha[(i0) + j] + beta[(i0) + j] * ((double) (y)[j] - mean[(i0) + j]);      \
        (o)[j] = (type) (0.0 + scale * g);                                                     \
    }

/* The affine gradient added straight into the output, one pass over each
 * row: the same operations, in the same order, as crl_affine_rows followed by
 * crl_rows_store, so the same bits (with how.stream, each row rounded into
 * row and streamed out). */
#define AFFINE_ADD_KERNEL(name, type)                                                           \
    CRL_HOT static void name(const type *restrict x, int64_t ldx, type *restrict out,          \
                             int64_t ldo, int64_t count, int64_t n,                            \
                             const double *restrict mean, const double *restrict alpha,        \
                             const double *restrict beta, crl_store how, type *restrict row)   \
    {                                                                                          \
        double scale = how.scale;                                                              \
        const int64_t line = 64 / (int64_t) sizeof(type);                                      \
        int64_t bytes = n * (int64_t) sizeof(type);                                            \
        int64_t ahead = crl_prefetch_rows_ahead(bytes) * ldx;                                   \
        for (int64_t r = 0; r < count; r++) {                                                  \
            if (how.stream) {                                                                  \
                for (int64_t i0 = 0; i0 < n; i0 += line) {   /* a line at a time */            \
                    __builtin_prefetch(x + r * ldx + ahead + i0, 0, 3);                        \
                    const type *y = x + r * ldx + i0;                                          \
                    if (n - i0 >= line) {                                                      \
                        AFFINE_STORE_STEP(row + i0, y, i0, line, type)                         \
                    } else {                                                                   \
                        AFFINE_STORE_STEP(row + i0, y, i0, n - i0, type)                       \
                    }                                                                          \
                }                                                                              \
                crl_stream_copy(out + r * ldo, row, (size_t) bytes);                           \
                continue;                                                                      \
            }                                                                                  \
            crl_prefetch_ahead(x + r * ldx, ldx, bytes, sizeof(type), false);                  \
            crl_prefetch_ahead(out + r * ldo, ldo, bytes, sizeof(type), true);                 \
            if (how.overwrite)                                                                 \
                for (int64_t i = 0; i < n; i++) {                                              \
                    double g = alpha[i] + beta[i] * ((double) x[r * ldx + i] - mean[i]);       \
                    out[r * ldo + i] = (type) (0.0 + scale * g);                               \
                }                                                                              \
            else                                                                               \
                for (int64_t i = 0; i < n; i++) {                                              \
                    double g = alpha[i] + beta[i] * ((double) x[r * ldx + i] - mean[i]);       \
                    out[r * ldo + i] = (type) ((double) out[r * ldo + i] + scale * g);         \
                }                                                                              \
        }                                                                                      \
        if (how.stream)                                                                        \
            crl_stream_fence();                                                                \
    }
AFFINE_ADD_KERNEL(affine_add_f32, float)
AFFINE_ADD_KERNEL(affine_add_f64, double)

/* Whether every beta_i is 0: the affine gradient is then alpha_i on every
 * row (beta_i (x - mu_i) is a zero for finite rates, and alpha_i, a sum
 * from +0, is never -0), and the rates need not be read. */
static bool rows_constant(const crl_population *pop)
{
    for (int64_t i = 0; i < pop->n; i++)
        if (pop->beta[i] != 0)
            return false;
    return true;
}

/* out = alpha_i on every row, stored as affine_add_f32/f64 store it: one
 * row converted once, then copied (overwrite; streamed with how.stream),
 * or added into each row. */
#define CONSTANT_ROWS_KERNEL(name, type)                                                        \
    CRL_HOT static void name(type *restrict out, int64_t ldo, int64_t count, int64_t n,        \
                             const double *restrict alpha, type *restrict row, crl_store how)  \
    {                                                                                          \
        double scale = how.scale;                                                              \
        size_t bytes = sizeof(type) * (size_t) n;                                              \
        if (how.overwrite) {                                                                   \
            for (int64_t i = 0; i < n; i++)                                                    \
                row[i] = (type) (0.0 + scale * alpha[i]);                                      \
            for (int64_t r = 0; r < count; r++)                                                \
                if (how.stream)                                                                \
                    crl_stream_copy(out + r * ldo, row, bytes);                                \
                else                                                                           \
                    memcpy(out + r * ldo, row, bytes);                                         \
            if (how.stream)                                                                    \
                crl_stream_fence();                                                            \
        } else                                                                                 \
            for (int64_t r = 0; r < count; r++) {                                              \
                crl_prefetch_ahead(out + r * ldo, ldo, (int64_t) bytes, sizeof(type), true);    \
                for (int64_t i = 0; i < n; i++)                                                \
                    out[r * ldo + i] = (type) ((double) out[r * ldo + i] + scale * alpha[i]);  \
            }                                                                                  \
    }
CONSTANT_ROWS_KERNEL(constant_rows_f32, float)
CONSTANT_ROWS_KERNEL(constant_rows_f64, double)

void crl_states_backward(crl_loss *loss, const crl_global *g, int p, const crl_array *out)
{
    const crl_population *pop = &g->pop[p];
    const crl_array *a = pop->array;
    scratch *w = &loss->work;
    bool hooks, doubles;
    row_hook_needs(loss, p, true, &hooks, &doubles);
    doubles |= a->dtype == CRL_FLOAT64; /* in place: free */
    crl_store how = crl_store_for(store_how(loss), out);
    if (!pop->affine && !hooks) {
        if (how.overwrite)
            crl_array_zero(out);
        return;
    }
    int64_t n = a->width, time = a->time, rows = crl_tile_rows(loss, n);
    if (!hooks && rows_constant(pop)) {
        for (int64_t b = 0; b < a->batch; b++) {
            void *o = (void *) crl_array_row(out, b, 0);
            if (out->dtype == CRL_FLOAT32)
                constant_rows_f32(o, out->time_stride, time, n, pop->alpha, (float *) w->tile,
                                  how);
            else
                constant_rows_f64(o, out->time_stride, time, n, pop->alpha, (double *) w->tile,
                                  how);
        }
        return;
    }
    if (!hooks) {
        for (int64_t b = 0; b < a->batch; b++) {
            const void *x = crl_array_row(a, b, 0);
            void *o = (void *) crl_array_row(out, b, 0);
            if (a->dtype == CRL_FLOAT32)
                affine_add_f32(x, a->time_stride, o, out->time_stride, time, n, pop->mean,
                               pop->alpha, pop->beta, how, (float *) w->s1);
            else
                affine_add_f64(x, a->time_stride, o, out->time_stride, time, n, pop->mean,
                               pop->alpha, pop->beta, how, w->s1);
        }
        return;
    }
    /* The first hook starts the tile itself where it can (float32 rows). */
    int first = 0;
    while (!(term_uses_pop(&loss->terms[first], p) && loss->terms[first].cls->backward_rows))
        first++;
    bool hook_inits = crl_hooks_start_tiles && !doubles && loss->terms[first].cls->backward_inits;
    for (int64_t b = 0; b < a->batch; b++)
        for (int64_t t0 = 0; t0 < time; t0 += rows) {
            int64_t count = time - t0 < rows ? time - t0 : rows, ld;
            const double *x = doubles ? crl_rows_load(a, b, t0, count, w->tile, &ld) : NULL;
            if (!doubles)
                ld = 0;
            if (hook_inits)
                ;
            else if (pop->affine && x)
                crl_affine_rows(x, ld, count, n, pop->mean, pop->alpha, pop->beta, w->grad_tile);
            else if (pop->affine)
                crl_affine_rows_f32(crl_array_row(a, b, t0), a->time_stride, count, n,
                                    pop->mean, pop->alpha, pop->beta, w->grad_tile);
            else
                memset(w->grad_tile, 0, sizeof(double) * (size_t) (count * n));
            crl_rows view = {pop_role(p), a, b, loss->done[p] + b, t0, count, n, x, ld,
                             NULL, NULL, 0, NULL, 0, 0, NULL,
                             &g->place[p], loss->done_rows[p] + b * time + t0, t0 % CRL_TIME_UNIT == 0,
                             false, rows, NULL, NULL};
            for (int k = first; k < loss->n_terms; k++) {
                const crl_term *t = &loss->terms[k];
                view.init = k == first && hook_inits ? pop : NULL;
                if (term_uses_pop(t, p) && t->cls->backward_rows)
                    t->cls->backward_rows(t, g, &view, w->grad_tile);
            }
            crl_rows_store(out, b, t0, count, w->grad_tile, n, how, w->s1);
        }
}

bool crl_hooks_start_tiles = true;
