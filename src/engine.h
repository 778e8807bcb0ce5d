/*
 * engine.h - what the files of the evaluation engine share: the loss object,
 * its packed buffer's layout, its work memory, and the steps of one cycle
 * (docs/losses.md "How a global loss is computed"):
 *
 *   loss.c     the loss object, its terms and parameters, the reported values
 *   check.c    the boundary checks of a cycle's inputs and gradient requests,
 *              the agreement list and the payload layout
 *   work.c     work memory of one evaluation (taken before the reduction)
 *   moments.c  the shared per-neuron moments pass over states / states1:
 *              its accumulate, finalize and backward side by side
 *   outputs.c  the pass over pred / label rows (mse's output error and the
 *              terms' row hooks), accumulate and backward
 *   agree.c    cross-rank agreement: the digest, the diagnosis of a
 *              disagreement, the agreement on an error
 *   cycle.c    the evaluation cycle: accumulate -> reduce -> finalize ->
 *              backward
 *   reduce.c   the reduction step: one exact MPI_Allreduce, agreement,
 *              the wide and the blocks' second reductions, rounding
 *
 * The packed buffer of one evaluation is
 *
 *   header  [0] ranks that failed  [1] ranks whose layout changed
 *           [2 + 2k], [3 + 2k]  byte k of the agreement digest c, and c^2
 *           [18] values the slots spilled (outside a crl_xsum's range)
 *   payload batch counts of states, states1, pred;
 *           per population: sum_bt S_i (N), sum_bt S_i^2 (N);
 *           sum (pred - label)^2;  then each term's slots.
 *
 * Ranks agree on the payload layout once (the first evaluation, or when N,
 * the terms or the weight-gradient requests change); after that an
 * evaluation is exactly one MPI_Allreduce.  Every slot is an exact
 * accumulator (crl_xsum), so the reduced sums do not depend on how the
 * batch is split or in which order ranks meet; after the reduction each
 * slot becomes a double-double (crl_xsum_dd), from which finalize works.
 * Values of magnitude outside 2^-204 .. 2^191 (and subnormals) do not fit a
 * crl_xsum: they are spilled to a list, and when any rank spilled, a second
 * reduction adds the lists of all ranks in wide accumulators.
 * The digest carries everything
 * ranks must agree on (T, N, K, dtypes, parameters, the weights' bits): all
 * ranks hold the same byte c iff P * sum c^2 == (sum c)^2.
 */
#ifndef CRL_ENGINE_H
#define CRL_ENGINE_H

#include "internal.h"

enum {
    HEADER_FAILED = 0,
    HEADER_RELAYOUT = 1,
    HEADER_DIGEST = 2,
    DIGEST_BYTES = 8,
    HEADER_SPILLED = HEADER_DIGEST + 2 * DIGEST_BYTES,
    HEADER_SLOTS,
};

/* Payload regions, as offsets from the start of the payload. */
enum {
    REGION_COUNTS,   /* batch counts: states, states1, pred */
    REGION_POP0,
    REGION_POP1,
    REGION_SQERR,
    REGION_TERMS,    /* first term; then one per term */
};

/* One value every rank must agree on, and what to call it if they do not. */
typedef struct agree_item {
    int64_t value;
    const char *what;   /* static text                                  */
    int term;           /* term index or -1                             */
    int role;           /* input role or -1                             */
    bool real;          /* value holds the bits of a double             */
} agree_item;

/* A reported value: name and where its numbers are in the value data. */
typedef struct value_entry {
    char name[96];
    int64_t offset, length;
} value_entry;

/* Per-evaluation work memory, grown as needed and kept between calls. */
typedef struct scratch {
    double *tile, *tile2, *grad_tile, *grad_tile2;   /* rows x N, as doubles */
    double *tile3;                                   /* rows x K: the mask    */
    double *shift, *s1, *s2;            /* N: per-element moments       */
    double *pop_data[2];                /* mean, var, alpha, beta: 4 N  */
    double *weight_grad[4];
    double *row_sums;                   /* 2 rows: CRL_PASS_ROW_SUMS    */
    int64_t tile_cap, n_cap, pop_cap[2], weight_grad_cap[4], row_sums_cap;
} scratch;

enum { PHASE_IDLE, PHASE_ACCUMULATING, PHASE_REDUCED };

struct crl_loss {
    crl_context *ctx;
    crl_term *terms;
    int n_terms;

    /* The layout all ranks agreed on: region offsets, then the payload size,
     * and the packed buffer (header + payload) laid out by it. */
    int64_t *layout;
    int layout_len;
    int64_t payload_slots;
    crl_xsum *buffer;
    int64_t buffer_cap;
    /* A rank whose local layout differs accumulates here (header + payload);
     * it becomes the buffer when the ranks adopt that layout. */
    crl_xsum *pending;
    int64_t pending_cap;
    /* The packed sums of a group led by this loss (crl_loss_reduce_group). */
    crl_xsum *group;
    int64_t group_cap;
    /* The reduced buffer rounded: the header, and the payload (sized
     * before the reduction, so that nothing fails after it). */
    crl_dd head[HEADER_SLOTS];
    crl_dd *sums;
    int64_t sums_cap;
    /* Values the target's slots could not take, and the wide sums of a
     * reduction that needs them. */
    crl_spill spill;
    crl_xsum_wide *wide;
    int64_t wide_cap;
    /* The second reduction of blocks (the terms' add_more): header, then
     * the slots more_first .. more_first + more_slots - 1 of the payload. */
    crl_xsum *more;
    int64_t more_cap, more_first, more_slots;

    /* The current cycle. */
    int phase;
    crl_error err;             /* this rank's first error of the cycle      */
    crl_global g;
    unsigned uses;
    crl_tensors first, first_grads;  /* the first chunk: shapes, weights    */
    uint64_t digest;
    bool relayout;
    crl_xsum *target;          /* buffer or pending, NULL after an error    */
    int64_t target_slots;
    int64_t seen[3], done[3];  /* elements accumulated / back-propagated:
                                  states, states1, pred (an element counts
                                  once per chunk that holds rows of it)     */
    int64_t seen_rows[3], done_rows[3];  /* the same in rows                */
    /* crl_loss_set_block: where the next chunks lie (blocked false: whole
     * elements), and whether this cycle's chunks are blocks. */
    crl_place place, place1;   /* place1: states1's, when set apart      */
    bool cycle_blocked;
    bool weights_written;
    bool backward_started;
    unsigned backward_mask;    /* gradients the backward calls of the cycle
                                  write (CRL_USES bits of used roles)       */

    /* How gradients are stored (crl_loss_set_grad_mode / _scale). */
    crl_grad_mode grad_mode;
    double grad_scale;

    agree_item *agree;
    int n_agree, cap_agree;

    /* Per-term work of one evaluation, sized when terms are added. */
    int64_t *next_layout;
    crl_term_out *outs;

    scratch work;

    /* Results of the last successful evaluation. */
    value_entry *values;
    int64_t n_values, cap_values;
    double *value_data;
    int64_t value_data_len, value_data_cap;
    double total;
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                              */
/* ------------------------------------------------------------------------ */

static inline bool term_active(const crl_term *t)
{
    return t->weight != 0.0;
}

static inline int pop_role(int p)
{
    return p == 0 ? CRL_ROLE_STATES : CRL_ROLE_STATES1;
}

static inline bool term_uses_pop(const crl_term *t, int p)
{
    return term_active(t) && (t->cls->uses(t) & CRL_USES(pop_role(p)));
}

/* Whether the first row hook of a backward tile may start the tile itself
 * (crl_term_class.backward_inits): true, but for the tests that hold its
 * rows to the bits of the engine's own start (tests/test_composite.c). */
extern bool crl_hooks_start_tiles;

/* Whether an active term reading role declares the shared pass. */
static inline bool crl_pass_needed(const crl_loss *loss, int role, unsigned pass)
{
    for (int k = 0; k < loss->n_terms; k++) {
        const crl_term *t = &loss->terms[k];
        if (term_active(t) && (t->cls->passes & pass) && (t->cls->uses(t) & CRL_USES(role)))
            return true;
    }
    return false;
}

/* Names the role of an error a check of that role's input just recorded. */
static inline void blame_role(crl_error *err, int role)
{
    if (err->code != CRL_OK && err->role < 0)
        err->role = role;
}

static inline crl_store store_how(const crl_loss *loss)
{
    return (crl_store){loss->grad_scale, loss->grad_mode == CRL_GRAD_OVERWRITE, false};
}

/* loss.c */
int crl_term_error(const crl_loss *loss, const crl_term *t, crl_error *err);
void crl_store_results(crl_loss *loss, const crl_term_out *outs);

/* agree.c */
bool crl_agree_add(crl_loss *loss, int64_t value, const char *what, int term, int role, bool real);
int64_t crl_real_bits(double x);
uint64_t crl_mix64(uint64_t x);
uint64_t crl_hash_text(const char *s);
uint64_t crl_agree_digest(const crl_loss *loss);
void crl_write_digest(crl_xsum *header, uint64_t digest);
bool crl_digest_agrees(const crl_dd *header, int size);
int crl_diagnose_disagreement(crl_loss *loss);

/* check.c */
int crl_prepare(crl_loss *loss, const crl_tensors *in, const crl_tensors *grads, crl_global *g,
                unsigned *uses_out, int64_t *layout, crl_error *err);
int crl_check_chunk(const crl_loss *loss, const crl_tensors *in, const crl_tensors *grads,
                    unsigned want_mask, crl_error *err);
int crl_place_chunk(const crl_loss *loss, const crl_tensors *in, unsigned uses, crl_place out[2],
                    crl_error *err);
unsigned crl_requested(const crl_loss *loss, const crl_tensors *grads);
int crl_check_requests(const crl_loss *loss, const crl_tensors *grads, unsigned want,
                       crl_error *err);
int crl_unused_buffers(const crl_loss *loss, const crl_tensors *inputs, const crl_tensors *grads,
                       bool weights, bool zero, crl_error *err);

/* work.c */
void crl_free_scratch(scratch *w);
int64_t crl_tile_rows(const crl_loss *loss, int64_t n);
bool crl_scratch_rows(scratch *w, int64_t rows, int64_t n);
int crl_reserve_work(crl_loss *loss, crl_global *g, unsigned uses, crl_error *err);

/* cycle.c: values and backward coefficients from the rounded sums (the
 * same on every rank, so its errors are collective). */
int crl_finalize_cycle(crl_loss *loss, crl_global *g, unsigned uses, const crl_dd *payload,
                       crl_term_out *outs, crl_error *err);

/* moments.c */
int crl_states_forward(crl_loss *loss, crl_global *g, int p, crl_xsum *payload, crl_error *err);
int crl_finalize_population(crl_population *pop, const crl_dd *sum, const crl_dd *sumsq,
                            double batch, int64_t time, int role, bool moments, bool squares,
                            crl_error *err);
void crl_states_backward(crl_loss *loss, const crl_global *g, int p, const crl_array *out);

/* outputs.c */
int crl_outputs_forward(crl_loss *loss, const crl_tensors *in, crl_xsum *payload, crl_error *err);
void crl_outputs_backward(crl_loss *loss, const crl_global *g, const crl_tensors *grads,
                          unsigned want);

#endif /* CRL_ENGINE_H */
