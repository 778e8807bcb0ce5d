/*
 * test_blocks.c - time sharding (docs/losses.md "Decompositions"): ranks
 * holding blocks of batch elements x time steps (crl_loss_set_block), passed
 * whole or in chunks along time, give bitwise the values and gradients of the
 * whole input on one rank, for every term type at once and for the terms
 * whose blocks need more than the reduction (state_pred's rows of other
 * ranks, hebbian's h_b of elements split over ranks); and the errors of
 * blocks that do not fit the units or do not tile the plane.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { U = CRL_TIME_UNIT };

static const h_term every_type[] = {
    {"rnn", "rnn", 0.5,
     "lambda_in=0.1,lambda_hid=0.2,lambda_out=0.3,lambda_fr=0.4,lambda_fr_sd=0.5,lambda_fr_cv=0.6"},
    {"fr1", "fr", 0.7, "metric=l1"},
    {"fr2", "fr", 0.3, "metric=l2"},
    {"sd", "fr_dist", 1.1, "metric=sd,correction=1"},
    {"cv", "fr_dist", 0.9, "metric=cv"},
    {"mad", "fr_dist", 0.2, "metric=mean_ad"},
    {"xad", "fr_dist", 0.4, "metric=max_ad"},
    {"lag1", "state_pred", 1.3, "tau=1"},
    {"lag3", "state_pred", 0.6, "tau=3"},
    {"lag700", "state_pred", 0.2, "tau=700"},
    {"hebb", "hebbian", 0.8, ""},
    {"ent", "entropy", 0.05, "reg=0.5"},
    {"kl", "population_kl", 1.2, "symmetric=true,reg=0.01,reduction=sum"},
    {"mse", "mse", 2.0, ""},
    {"conn", "rnn_conn", 0.15, "layer=all,metric=fro"},
    {"ce", "cross_entropy", 0.5, "clamp=1e-6"},
};
enum { N_TERMS = sizeof every_type / sizeof every_type[0] };

/* Three units of states (the last one partial), two of states1. */
static h_problem make(crl_dtype dtype, uint64_t seed)
{
    h_problem p = {.dtype = dtype, .B = 3, .T = 2 * U + 276, .N = 5, .K = 3,
                   .B1 = 2, .T1 = U + 188, .N_in = 3, .N_out = 2, .hebb = true, .K_mask = 1};
    h_problem_fill(&p, seed, 0.1, 1.0);
    return p;
}

/* A block of the plane: elements b, steps t. */
typedef struct block {
    h_range b, t;
} block;

static size_t dsize(crl_dtype t)
{
    return t == CRL_FLOAT32 ? 4 : 8;
}

/* Batch-major copy of block k of a global (B, T, W) array. */
static void *block_copy(const h_problem *p, const double *global, int64_t T, int64_t W,
                        block k)
{
    size_t n = (size_t) (k.b.count * k.t.count * W);
    void *buf = malloc((n ? n : 1) * dsize(p->dtype));
    assert_non_null(buf);
    for (int64_t b = 0; b < k.b.count; b++)
        for (int64_t t = 0; t < k.t.count; t++)
            for (int64_t i = 0; i < W; i++) {
                double v = global[((k.b.start + b) * T + k.t.start + t) * W + i];
                size_t at = (size_t) ((b * k.t.count + t) * W + i);
                if (p->dtype == CRL_FLOAT32)
                    ((float *) buf)[at] = (float) v;
                else
                    ((double *) buf)[at] = v;
            }
    return buf;
}

/* Steps t0 .. t0 + count - 1 of a batch-major block buffer. */
static crl_array steps_of(crl_dtype dtype, void *buf, block k, int64_t W, int64_t t0,
                          int64_t count)
{
    crl_array a = crl_array_batch_major(dtype, buf, k.b.count, k.t.count, W);
    a.data = k.b.count ? (char *) buf + (size_t) (t0 * W) * crl_dtype_size(dtype) : NULL;
    a.time = count > 0 ? count : 1;
    if (count == 0)
        a.batch = 0;
    return a;
}

static crl_block plane(int64_t B, int64_t T, block k, int64_t t0)
{
    return (crl_block){B, k.b.start, T, k.t.start + t0};
}

/*
 * Evaluates on comm with this rank holding block k of states, pred, label
 * and mask and block k1 of states1, the states' block passed in chunks of
 * `chunk` steps (0: one chunk), states1 with the first chunk.
 */
static void eval_blocks(const h_problem *p, const h_term *terms, int n_terms, block k,
                        block k1, int64_t chunk, unsigned grad_mask, h_result *out)
{
    memset(out, 0, sizeof *out);
    void *s = block_copy(p, p->states, p->T, p->N, k);
    void *s1 = block_copy(p, p->states1, p->T1, p->N, k1);
    void *pr = block_copy(p, p->pred, p->T, p->K, k);
    void *lb = block_copy(p, p->label, p->T, p->K, k);
    void *mk = block_copy(p, p->mask, p->T, p->K_mask, k);
    size_t rows = (size_t) (k.b.count * k.t.count), rows1 = (size_t) (k1.b.count * k1.t.count);
    void *gs = calloc(rows * (size_t) p->N + 1, dsize(p->dtype));
    void *gs1 = calloc(rows1 * (size_t) p->N + 1, dsize(p->dtype));
    void *gp = calloc(rows * (size_t) p->K + 1, dsize(p->dtype));
    void *gl = calloc(rows * (size_t) p->K + 1, dsize(p->dtype));
    const double *mats[4] = {p->w_in, p->w_hid, p->w_out, p->w_hebb};
    int64_t mr[4] = {p->N, p->N, p->N_out, p->N}, mc[4] = {p->N_in, p->N, p->N, p->N};
    void *wm[4], *gw[4];
    crl_tensors in = {0}, grad = {0};
    crl_matrix *min[4] = {&in.w_in, &in.w_hid, &in.w_out, &in.w_hebb};
    crl_matrix *gmat[4] = {&grad.w_in, &grad.w_hid, &grad.w_out, &grad.w_hebb};
    for (int m = 0; m < 4; m++) {
        if (mats[m] == NULL)
            mr[m] = mc[m] = 0;
        wm[m] = malloc((size_t) (mr[m] * mc[m]) * dsize(p->dtype) + 1);
        gw[m] = calloc((size_t) (mr[m] * mc[m]) + 1, dsize(p->dtype));
        if (mats[m] == NULL)
            continue;
        for (int64_t e = 0; e < mr[m] * mc[m]; e++)
            if (p->dtype == CRL_FLOAT32)
                ((float *) wm[m])[e] = (float) mats[m][e];
            else
                ((double *) wm[m])[e] = mats[m][e];
        *min[m] = crl_matrix_dense(p->dtype, wm[m], mr[m], mc[m]);
        if (grad_mask & (H_GRAD_W_IN << m))
            *gmat[m] = crl_matrix_dense(p->dtype, gw[m], mr[m], mc[m]);
    }
    crl_context *ctx = NULL;
    crl_loss *loss = NULL;
    assert_int_equal(crl_context_create(MPI_COMM_WORLD, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    for (int j = 0; j < n_terms; j++)
        assert_int_equal(crl_loss_add(loss, terms[j].name, terms[j].type, terms[j].weight,
                                      terms[j].params),
                         CRL_OK);
    int64_t step = chunk > 0 ? chunk : (k.t.count > 0 ? k.t.count : 1);
    int chunks = k.t.count > 0 ? (int) ((k.t.count + step - 1) / step) : 1;
    int status = CRL_OK;
    for (int pass = 0; pass < 2 && status == CRL_OK; pass++) {
        for (int c = 0; c < chunks; c++) {
            int64_t t0 = c * step, count = k.t.count - t0 < step ? k.t.count - t0 : step;
            in.states = steps_of(p->dtype, s, k, p->N, t0, count);
            in.pred = steps_of(p->dtype, pr, k, p->K, t0, count);
            in.label = steps_of(p->dtype, lb, k, p->K, t0, count);
            if (p->mask)
                in.mask = steps_of(p->dtype, mk, k, p->K_mask, t0, count);
            if (p->states1)
                in.states1 = steps_of(p->dtype, s1, k1, p->N, 0, c == 0 ? k1.t.count : 0);
            grad.states = steps_of(p->dtype, gs, k, p->N, t0, count);
            grad.pred = steps_of(p->dtype, gp, k, p->K, t0, count);
            grad.label = steps_of(p->dtype, gl, k, p->K, t0, count);
            if (p->states1)
                grad.states1 = steps_of(p->dtype, gs1, k1, p->N, 0, c == 0 ? k1.t.count : 0);
            crl_array *ga[4] = {&grad.states, &grad.states1, &grad.pred, &grad.label};
            for (int r = 0; r < 4; r++)
                if (!(grad_mask & (1u << r)))
                    *ga[r] = (crl_array){0};
            crl_block b = plane(p->B, p->T, k, t0), b1 = plane(p->B1, p->T1, k1, 0);
            assert_int_equal(crl_loss_set_block(loss, &b), CRL_OK);
            assert_int_equal(crl_loss_set_block_states1(loss, p->states1 ? &b1 : NULL), CRL_OK);
            if (pass == 0)
                crl_loss_accumulate(loss, &in, grad_mask ? &grad : NULL);
            else
                assert_int_equal(crl_loss_backward(loss, &in, &grad), CRL_OK);
        }
        if (pass == 0)
            status = crl_loss_reduce(loss);
        if (!grad_mask)
            break;
    }
    out->status = status;
    h_result_values(loss, ctx, out);
    void *gb[4] = {gs, gs1, gp, gl};
    size_t gbytes[4] = {rows * (size_t) p->N, rows1 * (size_t) p->N, rows * (size_t) p->K,
                        rows * (size_t) p->K};
    for (int r = 0; r < 4; r++) {
        out->grad[r] = gb[r];
        out->grad_bytes[r] = gbytes[r] * dsize(p->dtype);
        out->grad[r + 4] = gw[r];
        out->grad_bytes[r + 4] = (size_t) (mr[r] * mc[r]) * dsize(p->dtype);
        free(wm[r]);
    }
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    free(s);
    free(s1);
    free(pr);
    free(lb);
    free(mk);
}

/* Whether the block gradients of part are the rows of whole's. */
static bool same_rows(const h_problem *p, const h_result *whole, const h_result *part, int r,
                      block k, int64_t T, int64_t W, char *why, size_t len)
{
    size_t size = dsize(p->dtype), row = (size_t) W * size;
    for (int64_t b = 0; b < k.b.count; b++)
        for (int64_t t = 0; t < k.t.count; t++) {
            const char *w = (const char *) whole->grad[r]
                            + (size_t) ((k.b.start + b) * T + k.t.start + t) * row;
            const char *q = (const char *) part->grad[r] + (size_t) (b * k.t.count + t) * row;
            if (memcmp(w, q, row) != 0) {
                snprintf(why, len, "gradient %d differs at element %lld, step %lld", r,
                         (long long) (k.b.start + b), (long long) (k.t.start + t));
                return false;
            }
        }
    return true;
}

static bool same_outcome(const h_problem *p, const h_result *whole, const h_result *part,
                         block k, block k1, unsigned grad_mask, char *why, size_t len)
{
    if (whole->status != part->status) {
        snprintf(why, len, "status %d vs %d (%s)", whole->status, part->status, part->message);
        return false;
    }
    if (whole->n_numbers != part->n_numbers) {
        snprintf(why, len, "value counts differ");
        return false;
    }
    for (int64_t v = 0; v < whole->n_numbers; v++)
        if (memcmp(&whole->values[v], &part->values[v], sizeof(double)) != 0) {
            snprintf(why, len, "value number %lld: %.17g vs %.17g", (long long) v,
                     whole->values[v], part->values[v]);
            return false;
        }
    if (memcmp(&whole->total, &part->total, sizeof(double)) != 0) {
        snprintf(why, len, "total %.17g vs %.17g", whole->total, part->total);
        return false;
    }
    int64_t T[4] = {p->T, p->T1, p->T, p->T}, W[4] = {p->N, p->N, p->K, p->K};
    for (int r = 0; r < 4; r++)
        if ((grad_mask & (1u << r))
            && !same_rows(p, whole, part, r, r == 1 ? k1 : k, T[r], W[r], why, len))
            return false;
    for (int r = 4; r < 8; r++)
        if ((grad_mask & (1u << r))
            && memcmp(whole->grad[r], part->grad[r], whole->grad_bytes[r]) != 0) {
            snprintf(why, len, "weight gradient %d differs", r - 4);
            return false;
        }
    return true;
}

/* Steps of T in units dealt to `parts` ranks as evenly as possible; part
 * q's range (empty when there are fewer units than parts). */
static h_range time_part(int64_t T, int parts, int q)
{
    int64_t units = (T + U - 1) / U, per = units / parts, extra = units % parts;
    int64_t u0 = q * per + (q < extra ? q : extra), nu = per + (q < extra);
    int64_t t0 = u0 * U, t1 = (u0 + nu) * U < T ? (u0 + nu) * U : T;
    return (h_range){t0 < T ? t0 : T, t1 > t0 ? t1 - t0 : 0};
}

/* This rank's blocks under pattern: 0 time only (all elements, steps split
 * over every rank); 1 batch x time (two batch groups when there are two
 * ranks or more); 2 time only with rank 0 empty; 3 batch only (whole
 * elements, as blocks); 4 everything on the last rank. */
static void pattern_blocks(int pattern, const h_problem *p, block *k, block *k1)
{
    int pb = pattern == 1 && h_size >= 2 ? 2 : 1, pt = h_size / pb;
    int rank = h_rank, q = rank % pt, g = rank / pt;
    int64_t B[2] = {p->B, p->B1}, T[2] = {p->T, p->T1};
    for (int w = 0; w < 2; w++) {
        block out = {{0, 0}, {0, 0}};
        switch (pattern) {
        case 0:
        case 1:
            if (g < pb) {
                out.b = h_split(0, B[w], g, pb);
                out.t = time_part(T[w], pt, q);
            }
            break;
        case 2:
            if (h_size == 1 || rank > 0) {
                out.b = (h_range){0, B[w]};
                out.t = time_part(T[w], h_size > 1 ? h_size - 1 : 1, h_size > 1 ? rank - 1 : 0);
            }
            break;
        case 3:
            out.b = h_split(0, B[w], rank, h_size);
            out.t = (h_range){0, T[w]};
            break;
        default:
            if (rank == h_size - 1)
                out = (block){{0, B[w]}, {0, T[w]}};
            break;
        }
        if (out.b.count == 0 || out.t.count == 0)
            out = (block){{0, 0}, {0, 0}};
        *(w == 0 ? k : k1) = out;
    }
}

static void check_blocks(const h_problem *p, const h_term *terms, int n_terms, unsigned grad_mask)
{
    h_result whole;
    h_eval_self(p, terms, n_terms, grad_mask, &whole);
    if (whole.status != CRL_OK)
        fprintf(stderr, "the whole input on one rank: %s\n", whole.message);
    h_assert_all(whole.status == CRL_OK);
    bool ok = true;
    for (int pattern = 0; pattern < 5; pattern++)
        for (int64_t chunk = 0; chunk <= U; chunk += U) {
            block k, k1;
            pattern_blocks(pattern, p, &k, &k1);
            h_result part;
            eval_blocks(p, terms, n_terms, k, k1, chunk, grad_mask, &part);
            char why[256] = "";
            if (!same_outcome(p, &whole, &part, k, k1, grad_mask, why, sizeof why)) {
                fprintf(stderr, "rank %d, pattern %d, chunks of %lld: %s\n", h_rank, pattern,
                        (long long) chunk, why);
                ok = false;
            }
            h_result_free(&part);
        }
    h_result_free(&whole);
    h_assert_all(ok);
}

/* The composite holds every registered type: a type added to the registry
 * without a term here fails. */
static void test_every_registered_type_is_in_the_composite(void **state)
{
    (void) state;
    h_assert_all(h_covers_every_type(every_type, N_TERMS));
}

static void test_every_type_in_blocks_float64(void **state)
{
    (void) state;
    h_problem p = make(CRL_FLOAT64, 11);
    check_blocks(&p, every_type, N_TERMS, H_GRAD_ALL);
    h_problem_free(&p);
}

static void test_every_type_in_blocks_float32(void **state)
{
    (void) state;
    h_problem p = make(CRL_FLOAT32, 12);
    check_blocks(&p, every_type, N_TERMS, H_GRAD_ALL);
    h_problem_free(&p);
}

/* Each type alone (a term's second reduction without the others'), values
 * only and with gradients. */
static void test_each_type_alone_in_blocks(void **state)
{
    (void) state;
    h_problem p = make(CRL_FLOAT64, 13);
    for (int j = 0; j < N_TERMS; j++) {
        check_blocks(&p, &every_type[j], 1, 0);
        check_blocks(&p, &every_type[j], 1, H_GRAD_ALL);
    }
    h_problem_free(&p);
}

/* Elements of one unit (T <= 512) as blocks: a chunk holds each whole, and
 * hebbian adds its signed Gram matrix through running sums. */
static void test_one_unit_elements_in_blocks(void **state)
{
    (void) state;
    h_problem p = {.dtype = CRL_FLOAT64, .B = 5, .T = 40, .N = 4, .K = 2, .B1 = 3, .T1 = 30,
                   .N_in = 2, .N_out = 2, .hebb = true, .K_mask = 1};
    h_problem_fill(&p, 21, 0.1, 1.0);
    h_term short_lags[N_TERMS];
    int n = 0;
    for (int j = 0; j < N_TERMS; j++)
        if (strcmp(every_type[j].name, "lag700") != 0)   /* needs T > 700 */
            short_lags[n++] = every_type[j];
    check_blocks(&p, short_lags, n, H_GRAD_ALL);
    h_problem_free(&p);
}

/* A single long trial: B = 1, over every rank along time. */
static void test_single_trial(void **state)
{
    (void) state;
    for (int masked = 0; masked < 2; masked++)
        for (int64_t k = 2; k <= 3; k++) {
            /* K = 3: the output error's 5 lanes do not divide a unit. */
            h_problem p = {.dtype = CRL_FLOAT32, .B = 1, .T = 5 * U + 7, .N = 4, .K = k,
                           .B1 = 1, .T1 = 3 * U, .N_in = 2, .N_out = k, .hebb = true,
                           .K_mask = masked ? k : 0};
            h_problem_fill(&p, 14 + (uint64_t) k, 0.0, 2.0);
            check_blocks(&p, every_type, N_TERMS, H_GRAD_ALL);
            h_problem_free(&p);
        }
    /* mse alone: float32 pred and label without a mask take the raw rows;
     * several inputs, since a lane moved by a block boundary changes a
     * unit's sum only in its last bit, which the total may round away. */
    static const h_term mse = {"mse", "mse", 1.0, ""};
    for (uint64_t seed = 0; seed < 8; seed++)
        for (int64_t k = 2; k <= 3; k++) {
            h_problem p = {.dtype = CRL_FLOAT32, .B = 1, .T = 2 * U + 276, .N = 1, .K = k};
            h_problem_fill(&p, 40 + seed, 0.0, 1.0);
            check_blocks(&p, &mse, 1, H_GRAD_PRED | H_GRAD_LABEL);
            h_problem_free(&p);
        }
}

/* Crafted values (2^-80 .. 2^70, exact cancellation, sums on and next to a
 * rounding tie) one per unit of a single trial, so that every block holds a
 * different part of each sum. */
static void test_crafted_single_trial(void **state)
{
    (void) state;
    static const h_term crafted[] = {
        {"l1", "fr", 1.0, "metric=l1"},
        {"l2", "fr", 1.0, "metric=l2"},
        {"sd", "fr_dist", 1.0, "metric=sd"},
        {"lag", "state_pred", 1.0, "tau=1"},
        {"lag600", "state_pred", 1.0, "tau=600"},
        {"hebb", "hebbian", 1.0, ""},
        {"mse", "mse", 1.0, ""},
    };
    const double values[] = {0x1p60, 1.0, 0x1p-53, 0x1p-80, -0x1p60, 0x1p70, -0x1p70, 0x1p-53};
    enum { UNITS = sizeof values / sizeof values[0] };
    for (int dtype = 0; dtype < 2; dtype++) {
        h_problem p = {.dtype = dtype ? CRL_FLOAT64 : CRL_FLOAT32, .B = 1, .T = UNITS * U,
                       .N = 2, .K = 1, .hebb = true};
        h_problem_fill(&p, 18, 0.0, 1.0);
        for (int64_t k = 0; k < p.T * p.N; k++)
            p.states[k] = 0;
        for (int u = 0; u < UNITS; u++) {
            /* float32: 2^70 squared overflows its Gram products; 2^62 */
            double v = dtype ? values[u] : (double) (float) (fabs(values[u]) > 0x1p62 ? values[u] / 0x1p8 : values[u]);
            p.states[(u * U + 7 * u) * p.N] = v;
            p.states[(u * U + U - 1) * p.N + 1] = -v;
            p.pred[u * U + 3] = v;
        }
        check_blocks(&p, crafted, sizeof crafted / sizeof crafted[0], H_GRAD_STATES | H_GRAD_PRED
                                                                          | H_GRAD_W_HEBB);
        h_problem_free(&p);
    }
}

/* A block must start at a unit and end at one or at T. */
static void test_a_block_off_the_units_is_refused(void **state)
{
    (void) state;
    h_problem p = make(CRL_FLOAT64, 15);
    block k = {{0, p.B}, {0, p.T}}, k1 = {{0, p.B1}, {0, p.T1}};
    if (h_rank == 0)
        k.t = (h_range){100, p.T - 100};
    h_result res;
    eval_blocks(&p, &every_type[1], 1, k, k1, 0, H_GRAD_STATES, &res);
    h_assert_error(&res, CRL_ERR_INVALID, "a block starts at a multiple of 512 steps");
    h_result_free(&res);
    h_problem_free(&p);
}

/* Blocks that do not cover the plane (every rank the whole of it, with two
 * ranks or more; a missing part with one). */
static void test_blocks_that_do_not_tile_are_refused(void **state)
{
    (void) state;
    h_problem p = make(CRL_FLOAT64, 16);
    block k = {{0, p.B}, {0, h_size > 1 ? p.T : U}}, k1 = {{0, p.B1}, {0, p.T1}};
    h_result res;
    eval_blocks(&p, &every_type[1], 1, k, k1, 0, 0, &res);
    h_assert_error(&res, CRL_ERR_INVALID, "the blocks of all ranks hold");
    h_result_free(&res);
    h_problem_free(&p);
}

/* Blocks on some ranks and none on the others: the disagreement is named
 * (with two ranks or more). */
static void test_blocks_on_some_ranks_only_are_named(void **state)
{
    (void) state;
    if (h_size < 2)
        return;
    h_problem p = make(CRL_FLOAT64, 19);
    h_range mine = h_split(0, p.B, h_rank, h_size);
    crl_context *ctx = NULL;
    crl_loss *loss = NULL;
    assert_int_equal(crl_context_create(MPI_COMM_WORLD, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "f", "fr", 1.0, "metric=l1"), CRL_OK);
    block k = {mine, {0, p.T}};
    void *s = block_copy(&p, p.states, p.T, p.N, k);
    crl_tensors in = {0};
    in.states = crl_array_batch_major(p.dtype, mine.count ? s : NULL, mine.count, p.T, p.N);
    crl_block b = plane(p.B, p.T, k, 0);
    if (h_rank == 1)
        assert_int_equal(crl_loss_set_block(loss, &b), CRL_OK);
    h_result res = {0};
    res.status = crl_loss_evaluate(loss, &in, NULL);
    snprintf(res.message, sizeof res.message, "%s", crl_context_error(ctx));
    h_assert_error(&res, CRL_ERR_INVALID, "blocks (crl_loss_set_block)");
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    free(s);
    h_problem_free(&p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_registered_type_is_in_the_composite),
        cmocka_unit_test(test_every_type_in_blocks_float64),
        cmocka_unit_test(test_every_type_in_blocks_float32),
        cmocka_unit_test(test_each_type_alone_in_blocks),
        cmocka_unit_test(test_one_unit_elements_in_blocks),
        cmocka_unit_test(test_single_trial),
        cmocka_unit_test(test_crafted_single_trial),
        cmocka_unit_test(test_a_block_off_the_units_is_refused),
        cmocka_unit_test(test_blocks_that_do_not_tile_are_refused),
        cmocka_unit_test(test_blocks_on_some_ranks_only_are_named),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "blocks");
}
