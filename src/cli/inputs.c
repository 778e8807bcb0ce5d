/*
 * inputs.c - the input files of `ctrnn-loss eval` as crl_tensors: open
 * (rank 0 reads each header), check shapes and dtypes (the same headers
 * everywhere, so the same verdict), read the weights (every rank, whole)
 * and each rank's block of the batched inputs (decompose.c) chunk by
 * chunk.
 */
#include "cli/eval.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static crl_array *array_of(crl_tensors *t, int role)
{
    switch (role) {
    case CRL_ROLE_STATES: return &t->states;
    case CRL_ROLE_STATES1: return &t->states1;
    case CRL_ROLE_PRED: return &t->pred;
    case CRL_ROLE_MASK: return &t->mask;
    default: return &t->label;
    }
}

static crl_matrix *matrix_of(crl_tensors *t, int role)
{
    switch (role) {
    case CRL_ROLE_W_IN: return &t->w_in;
    case CRL_ROLE_W_HID: return &t->w_hid;
    case CRL_ROLE_W_OUT: return &t->w_out;
    default: return &t->w_hebb;
    }
}

static void shape_text(const crl_npy_header *h, char *out, size_t cap)
{
    size_t n = (size_t) snprintf(out, cap, "(");
    for (int k = 0; k < h->ndim && n < cap; k++)
        n += (size_t) snprintf(out + n, cap - n, "%s%lld", k ? ", " : "", (long long) h->shape[k]);
    if (n < cap)
        snprintf(out + n, cap - n, h->ndim == 1 ? ",)" : ")");
}

/* Opens every given input (collective); on failure, those opened are closed. */
int eval_open_inputs(eval_run *r)
{
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        input *x = &r->in[role];
        x->file.handle = MPI_FILE_NULL;
        x->grad_file.handle = MPI_FILE_NULL;
        x->given = r->opt.path[role] != NULL;
        x->batched = role < CRL_FIRST_MATRIX_ROLE;
        if (!x->given)
            continue;
        snprintf(x->label, sizeof x->label, "%s '%.290s'", eval_roles[role].option,
                 r->opt.path[role]);
        if (crl_npy_open(r->ctx, r->opt.path[role], x->label, &x->file) != CRL_OK) {
            cli_error(r->ctx, "%s", cli_context_error(r->ctx));
            x->given = false;
            return CLI_EXIT_FAILED;
        }
    }
    return CLI_EXIT_OK;
}

/* A dimension that must agree between files: the first file that has it
 * sets it. */
typedef struct dimension {
    const char *name;          /* "N", "K" */
    int64_t value;
    const char *set_by;        /* the label of that file, NULL if unset */
    const char *as;            /* what it is in that file */
} dimension;

static int agree_dimension(dimension *d, int64_t value, const input *x, const char *as,
                           crl_error *err)
{
    if (d->set_by == NULL) {
        *d = (dimension){d->name, value, x->label, as};
        return CRL_OK;
    }
    if (value != d->value)
        return crl_fail(err, CRL_ERR_INVALID,
                        "%s has %s = %lld (%s) but %s has %s = %lld (%s): the shapes disagree",
                        x->label, d->name, (long long) value, as, d->set_by, d->name,
                        (long long) d->value, d->as);
    return CRL_OK;
}

/* Checks dtypes and shapes of the headers and sets the global sizes.  Every
 * rank holds the same headers, so every rank reaches the same verdict. */
int eval_check_shapes(eval_run *r, crl_error *err)
{
    const input *first = NULL;
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        input *x = &r->in[role];
        if (!x->given)
            continue;
        const crl_npy_header *h = &x->file.header;
        char shape[256];
        shape_text(h, shape, sizeof shape);
        if (first == NULL) {
            first = x;
            r->dtype = h->dtype;
        } else if (h->dtype != r->dtype) {
            return crl_fail(err, CRL_ERR_INVALID,
                            "%s is %s but %s is %s: all inputs must have the same dtype",
                            x->label, cli_dtype_name(h->dtype), first->label,
                            cli_dtype_name(r->dtype));
        }
        int want = x->batched ? 3 : 2;
        if (h->ndim != want)
            return crl_fail(err, CRL_ERR_INVALID, "%s: expected %d dimensions %s%s, got shape %s",
                            x->label, want, eval_roles[role].shape,
                            x->batched && r->opt.time_major ? " in (T, B, .) order" : "", shape);
        for (int k = 0; k < h->ndim; k++)
            if (h->shape[k] == 0)
                return crl_fail(err, CRL_ERR_INVALID,
                                "%s: shape %s is empty: fewer batch elements, time steps or "
                                "neurons than needed (at least 1 each)",
                                x->label, shape);
        if (x->batched) {
            bool tm = r->opt.time_major;
            x->batch = h->shape[tm ? 1 : 0];
            x->time = h->shape[tm ? 0 : 1];
            x->width = h->shape[2];
        } else {
            x->time = h->shape[0];
            x->width = h->shape[1];
        }
    }

    const input *states = &r->in[CRL_ROLE_STATES], *states1 = &r->in[CRL_ROLE_STATES1];
    const input *pred = &r->in[CRL_ROLE_PRED], *label = &r->in[CRL_ROLE_LABEL];
    const input *w_in = &r->in[CRL_ROLE_W_IN], *w_hid = &r->in[CRL_ROLE_W_HID];
    const input *w_out = &r->in[CRL_ROLE_W_OUT], *w_hebb = &r->in[CRL_ROLE_W_HEBB];
    dimension batch = {"B", 0, NULL, NULL}, time = {"T", 0, NULL, NULL};
    dimension n = {"N", 0, NULL, NULL}, k = {"K", 0, NULL, NULL};
    const input *outputs[2] = {pred, label}, *mask = &r->in[CRL_ROLE_MASK];
    if (states->given) {
        agree_dimension(&batch, states->batch, states, "batch elements", err);
        agree_dimension(&time, states->time, states, "time steps", err);
        agree_dimension(&n, states->width, states, "neurons", err);
    }
    for (int j = 0; j < 2 && err->code == CRL_OK; j++)
        if (outputs[j]->given) {
            agree_dimension(&batch, outputs[j]->batch, outputs[j], "batch elements", err);
            agree_dimension(&time, outputs[j]->time, outputs[j], "time steps", err);
            agree_dimension(&k, outputs[j]->width, outputs[j], "outputs", err);
        }
    if (mask->given && err->code == CRL_OK) {
        /* Its width, K or 1, is the library's rule. */
        agree_dimension(&batch, mask->batch, mask, "batch elements", err);
        agree_dimension(&time, mask->time, mask, "time steps", err);
    }
    if (states1->given)
        agree_dimension(&n, states1->width, states1, "neurons", err);
    if (w_hid->given) {
        agree_dimension(&n, w_hid->time, w_hid, "rows", err);
        agree_dimension(&n, w_hid->width, w_hid, "columns", err);
    }
    if (w_hebb->given) {
        agree_dimension(&n, w_hebb->time, w_hebb, "rows", err);
        agree_dimension(&n, w_hebb->width, w_hebb, "columns", err);
    }
    if (w_in->given)
        agree_dimension(&n, w_in->time, w_in, "rows", err);
    if (w_out->given) {
        agree_dimension(&n, w_out->width, w_out, "columns", err);
        agree_dimension(&k, w_out->time, w_out, "rows", err);
    }
    r->neurons = n.set_by ? n.value : 0;
    return err->code;
}

/* Bytes one batch element of a block takes in the chunk buffers (each
 * batched input's span x W values, twice for an input with a gradient), or
 * one time step of it (step set); at most INT64_MAX. */
static int64_t element_bytes(const eval_run *r, bool step)
{
    int64_t total = 0, one;
    for (int role = 0; role < CRL_FIRST_MATRIX_ROLE; role++) {
        const input *x = &r->in[role];
        if (!x->given)
            continue;
        if (!crl_mul_size(step ? x->width : x->span * x->width, (int64_t) crl_dtype_size(r->dtype),
                          &one)
            || !crl_mul_size(one, x->want_grad ? 2 : 1, &one) || one > INT64_MAX - total)
            return INT64_MAX;
        total += one;
    }
    return total;
}

/*
 * Batch elements and time steps per chunk: --chunk-batch elements of whole
 * blocks when given; else as many elements of whole blocks as the memory
 * budget holds, at most the largest shard (one chunk: the backward pass
 * needs no second read); and when not even one fits, one element and as
 * many units of CRL_TIME_UNIT steps as fit, at least one (the chunks then
 * split the time: r->blocks; alike on every rank, as it depends on global
 * sizes only).  The buffers are allocated once and reused by
 * every chunk of both passes, so a run faults in at most the budget, not
 * its shard.
 */
static void chunk_size(eval_run *r, int64_t largest)
{
    r->chunk_time = 0;
    for (int role = 0; role < CRL_FIRST_MATRIX_ROLE; role++)
        if (r->in[role].given && r->in[role].span > r->chunk_time)
            r->chunk_time = r->in[role].span;
    if (r->opt.chunk_batch > 0) {
        r->chunk = r->opt.chunk_batch;
        return;
    }
    int64_t per = element_bytes(r, false), fit = per > 0 ? r->opt.memory / per : largest;
    if (per > 0 && fit < 1) {
        int64_t units = r->opt.memory / element_bytes(r, true) / CRL_TIME_UNIT;
        int64_t steps = (units > 1 ? units : 1) * CRL_TIME_UNIT;
        if (steps < r->chunk_time) {
            r->chunk_time = steps;
            r->blocks = true;
        }
    }
    fit = fit < largest ? fit : largest;
    r->chunk = fit > 1 ? fit : 1;
}

/* Chunk size and buffers (local; the caller agrees on errors). */
int eval_allocate(eval_run *r, crl_error *err)
{
    size_t element = crl_dtype_size(r->dtype);
    int64_t largest = 0, longest = 0;
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        input *x = &r->in[role];
        x->want_grad = x->given && r->opt.grad_dir != NULL && eval_roles[role].grad_file != NULL;
        if (x->given && x->batched && x->shard_count > 0) {
            largest = x->shard_count > largest ? x->shard_count : largest;
            longest = x->time_count > longest ? x->time_count : longest;
        }
    }
    chunk_size(r, largest);
    r->chunks_time = longest > r->chunk_time ? (longest + r->chunk_time - 1) / r->chunk_time : 1;
    r->chunks = (largest > 0 ? (largest + r->chunk - 1) / r->chunk : 1) * r->chunks_time;
    r->steps = r->chunks * (r->opt.grad_dir != NULL ? 2 : 1);
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        input *x = &r->in[role];
        if (!x->given)
            continue;
        /* Sizes below are at most the file's data size: no overflow. */
        int64_t elements = x->time * x->width;
        if (x->batched) {
            x->capacity = x->shard_count < r->chunk ? x->shard_count : r->chunk;
            x->capacity_steps = x->time_count < r->chunk_time ? x->time_count : r->chunk_time;
            elements = x->capacity * x->capacity_steps * x->width;
        }
        if (elements == 0)
            continue;
        size_t bytes = (size_t) elements * element;
        x->data = malloc(bytes);
        /* The backward pass overwrites the batched gradients (eval.c): no
         * zeroing.  The weights' are written once, whole; zeroed anyway. */
        x->grad = !x->want_grad ? NULL : x->batched ? malloc(bytes) : calloc(1, bytes);
        if (x->data == NULL || (x->want_grad && x->grad == NULL))
            return crl_fail(err, CRL_ERR_NOMEM,
                            "out of memory: %.1f MiB for %s%s", (double) bytes / (1 << 20),
                            x->label,
                            x->batched ? " (a smaller --memory or --chunk-batch reads fewer "
                                         "batch elements at a time)"
                                       : "");
    }
    return CRL_OK;
}

/* Every rank reads every weight matrix whole, and describes it. */
int eval_read_weights(eval_run *r, crl_error *err)
{
    for (int role = CRL_FIRST_MATRIX_ROLE; role < CRL_ROLE_COUNT; role++) {
        input *x = &r->in[role];
        if (!x->given)
            continue;
        double t = MPI_Wtime();
        int status = crl_npy_read_slice(&x->file, 0, 0, x->time, x->data, err);
        r->phase[CLI_PHASE_READ] += MPI_Wtime() - t;
        if (status != CRL_OK)
            return err->code;
        *matrix_of(&r->tensors, role) = crl_matrix_dense(r->dtype, x->data, x->time, x->width);
        if (x->want_grad)
            *matrix_of(&r->grads, role) = crl_matrix_dense(r->dtype, x->grad, x->time, x->width);
    }
    return CRL_OK;
}

static uint64_t rotl(uint64_t v, int k)
{
    return (v << k) | (v >> (64 - k));
}

/*
 * The digest of bytes, continuing from h: FNV-1a's step over 64-bit words
 * in eight interleaved lanes, each step followed by a rotation (the
 * multiplication moves bits only upwards; the rotation brings the high ones
 * down, so that two flips of a top bit do not cancel), the tail byte by
 * byte, then the lanes folded into one.  Eight independent multiplications
 * hide their latency: a few GB/s, where FNV-1a byte by byte took seconds
 * per GiB read twice.  Every step is a bijection of its lane, so a change
 * within one lane of one chunk always changes the digest.
 */
static uint64_t digest_bytes(uint64_t h, const void *data, size_t n)
{
    const uint64_t prime = 1099511628211ULL;
    uint64_t lane[8];
    for (int j = 0; j < 8; j++)
        lane[j] = h ^ (0x9e3779b97f4a7c15ULL * (uint64_t) (j + 1));
    const unsigned char *p = data;
    size_t k = 0;
    for (; k + sizeof lane <= n; k += sizeof lane)
        for (int j = 0; j < 8; j++) {
            uint64_t w;
            memcpy(&w, p + k + 8 * j, 8);
            lane[j] = rotl((lane[j] ^ w) * prime, 29);
        }
    for (; k < n; k++)
        lane[0] = rotl((lane[0] ^ p[k]) * prime, 29);
    h = lane[0];
    for (int j = 1; j < 8; j++)
        h = rotl((h ^ lane[j]) * prime, 29);
    return h;
}

void eval_chunk_range(const eval_run *r, const input *x, int64_t c, int64_t *batch_start,
                      int64_t *batch_count, int64_t *time_start, int64_t *time_count)
{
    int64_t first = c / r->chunks_time * r->chunk, step = c % r->chunks_time * r->chunk_time;
    int64_t count = x->shard_count - first, steps = x->time_count - step;
    count = count < 0 ? 0 : count > r->chunk ? r->chunk : count;
    steps = steps < 0 ? 0 : steps > r->chunk_time ? r->chunk_time : steps;
    if (count == 0 || steps == 0)
        *batch_start = *batch_count = *time_start = *time_count = 0;
    else {
        *batch_start = x->shard_start + first;
        *batch_count = count;
        *time_start = x->time_start + step;
        *time_count = steps;
    }
}

/*
 * The current chunk of x between buf and f.  Whole elements are one slice
 * of the file's batch axis.  A part of the time steps is a slice of the
 * second axis (time; batch with --time-major) within a range of the first:
 * f's header narrowed to that range for the one call, then restored, so
 * that the transfer is npy.c's (pieces, a short write's reason, f's
 * write-behind of contiguous writes: a batch-major chunk of one element).
 */
int eval_transfer_chunk(const eval_run *r, const input *x, crl_npy_file *f, bool write,
                        void *buf, crl_error *err)
{
    bool time_major = r->opt.time_major;
    int axis = time_major ? 1 : 0;
    if (x->chunk_step == 0 && x->chunk_steps == x->time)
        return write ? crl_npy_write_slice(f, axis, x->chunk_start, x->chunk_count, buf, err)
                     : crl_npy_read_slice(f, axis, x->chunk_start, x->chunk_count, buf, err);
    int64_t outer_start = time_major ? x->chunk_step : x->chunk_start;
    int64_t outer_count = time_major ? x->chunk_steps : x->chunk_count;
    int64_t inner_start = time_major ? x->chunk_start : x->chunk_step;
    int64_t inner_count = time_major ? x->chunk_count : x->chunk_steps;
    crl_npy_header whole = f->header, *h = &f->header;
    /* Within the file's data: no overflow. */
    int64_t row = h->shape[1] * h->shape[2], size = (int64_t) crl_dtype_size(h->dtype);
    h->data_offset += outer_start * row * size;
    h->shape[0] = outer_count;
    h->count = outer_count * row;
    h->data_bytes = h->count * size;
    int status = write ? crl_npy_write_slice(f, 1, inner_start, inner_count, buf, err)
                       : crl_npy_read_slice(f, 1, inner_start, inner_count, buf, err);
    f->header = whole;
    return status;
}

/* Describes chunk c of each batched input, reading it when read is set. */
int eval_load_chunk(eval_run *r, int64_t c, bool read, crl_error *err)
{
    /* Empty chunks: no elements of all T steps.  states1 has a block of its
     * own plane; the other inputs share theirs. */
    crl_block block = {r->batch, 0, r->time, 0}, block1 = {0};
    for (int role = 0; role < CRL_FIRST_MATRIX_ROLE; role++) {
        input *x = &r->in[role];
        if (!x->given)
            continue;
        eval_chunk_range(r, x, c, &x->chunk_start, &x->chunk_count, &x->chunk_step,
                         &x->chunk_steps);
        int64_t count = x->chunk_count, steps = count > 0 ? x->chunk_steps : x->time;
        crl_block *place = role == CRL_ROLE_STATES1 ? &block1 : &block;
        place->batch = x->batch;
        place->time = x->time;
        if (count > 0) {
            place->batch_offset = x->chunk_start;
            place->time_offset = x->chunk_step;
        }
        if (read && count > 0) {
            double t = MPI_Wtime();
            int status = eval_transfer_chunk(r, x, &x->file, false, x->data, err);
            r->phase[CLI_PHASE_READ] += MPI_Wtime() - t;
            if (status != CRL_OK)
                return err->code;
            if (r->opt.grad_dir != NULL && r->chunks > 1) /* read twice */
                x->digest[r->pass] = digest_bytes(x->digest[r->pass], x->data,
                                              (size_t) (count * steps * x->width)
                                                  * crl_dtype_size(r->dtype));
        }
        void *data = count > 0 ? x->data : NULL, *grad = count > 0 ? x->grad : NULL;
        crl_array (*layout)(crl_dtype, void *, int64_t, int64_t, int64_t) =
            r->opt.time_major ? crl_array_time_major : crl_array_batch_major;
        *array_of(&r->tensors, role) = layout(r->dtype, data, count, steps, x->width);
        if (x->want_grad)
            *array_of(&r->grads, role) = layout(r->dtype, grad, count, steps, x->width);
    }
    if (r->blocks
        && (crl_loss_set_block(r->loss, &block) != CRL_OK
            || (r->in[CRL_ROLE_STATES1].given
                && crl_loss_set_block_states1(r->loss, &block1) != CRL_OK)))
        return crl_fail(err, crl_context_status(r->ctx), "%s", cli_context_error(r->ctx));
    return CRL_OK;
}

int eval_check_unchanged(const eval_run *r, crl_error *err)
{
    for (int role = 0; role < CRL_FIRST_MATRIX_ROLE; role++) {
        const input *x = &r->in[role];
        if (x->given && x->digest[0] != x->digest[1])
            return crl_fail(err, CRL_ERR_IO,
                            "%s changed while it was read: the backward pass read other data "
                            "than the forward pass (was the file rewritten during the run?); "
                            "no gradients written",
                            x->label);
    }
    return CRL_OK;
}

/* Whether path lies in dir (resolved, real) or in its store of gradient
 * generations. */
static bool held_by(const char *path, const char *dir)
{
    char real[PATH_MAX];
    if (realpath(path, real) == NULL)
        return false;
    size_t n = strlen(dir);
    if (strncmp(real, dir, n) != 0 || real[n] != '/')
        return false;
    const char *rest = real + n + 1;
    return strchr(rest, '/') == NULL
           || (strncmp(rest, GRAD_STORE "/", sizeof GRAD_STORE) == 0);
}

int eval_check_grad_dir(const eval_run *r, crl_error *err)
{
    char dir[PATH_MAX];
    if (r->opt.grad_dir == NULL || realpath(r->opt.grad_dir, dir) == NULL)
        return CRL_OK; /* a directory yet to be made holds no input */
    for (int role = 0; role < CRL_ROLE_COUNT; role++)
        if (r->in[role].given && held_by(r->opt.path[role], dir))
            return crl_fail(err, CRL_ERR_IO,
                            "%s is in the gradient directory --grad-dir '%s', whose files a run "
                            "replaces: move the input or write the gradients elsewhere",
                            r->in[role].label, r->opt.grad_dir);
    return CRL_OK;
}
