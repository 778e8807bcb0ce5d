/*
 * internal.h - what the library's files share: the context, error records,
 * array helpers, and the term interface every loss implements.
 *
 * The shape of one evaluation (docs/losses.md "How a global loss is computed"):
 *   1. accumulate: one pass over each local input; the composite computes the
 *      shared statistics of each population (per-neuron sums and sums of
 *      squares) and calls each term's forward hooks on the same rows, each term
 *      writing partial sums into its own slots of one packed buffer of exact
 *      accumulators (xsum.h);
 *   2. reduce: one MPI_Allreduce of that buffer (crl_context_reduce), a
 *      second only for values beyond a slot's range (cycle.c);
 *   3. finalize: every rank turns the global sums into values and backward
 *      coefficients (crl_global);
 *   4. backward: one more pass over each local input writes its gradient.
 */
#ifndef CRL_INTERNAL_H
#define CRL_INTERNAL_H

#include "config.h"
#include "ctrnnloss.h"
#include "xsum.h"

#include <stdarg.h>
#include <stdbool.h>

#if defined(CRL_HAVE_TARGET_CLONES)
#define CRL_HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CRL_HOT
#endif

#if defined(__GNUC__)
#define CRL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CRL_PRINTF(f, a)
#endif

#define CRL_MESSAGE_MAX CRL_ERROR_MESSAGE_SIZE

/* ------------------------------------------------------------------------ */
/* Errors                                                                     */
/* ------------------------------------------------------------------------ */

/* The first error seen by a rank during one call: the public record (its
 * fields other than code are meaningful only when code is not CRL_OK). */
typedef crl_error_info crl_error;

/* Records code and message unless an error is already recorded; returns the
 * recorded code.  The one way an error is reported inside the library; the
 * rank, role, term and indices of a new record are -1. */
int crl_fail(crl_error *err, int code, const char *fmt, ...) CRL_PRINTF(3, 4);

/* Not collective; pure.  A decimal number ([+-]d[.d][e[+-]d]: no
 * hexadecimal, inf or nan); what names it in messages.  CRL_ERR_INVALID for
 * other text, and for a value that overflows or underflows a double (out of
 * range, naming the range). */
int crl_parse_decimal(const char *text, const char *what, double *value, crl_error *err);

/* crl_fail naming the input role and the local indices (b, t, i; -1 where
 * not applicable, see crl_error_info). */
int crl_fail_at(crl_error *err, int code, int role, int64_t b, int64_t t, int64_t i,
                const char *fmt, ...) CRL_PRINTF(7, 8);

/* ------------------------------------------------------------------------ */
/* Context                                                                    */
/* ------------------------------------------------------------------------ */

struct crl_context {
    MPI_Comm comm;
    int rank, size;
    MPI_Datatype xsum_type; /* one crl_xsum: CRL_XSUM_LIMBS uint64s          */
    MPI_Op xsum_sum;        /* element-wise crl_xsum_merge                   */
    MPI_Datatype wide_type; /* one crl_xsum_wide                             */
    MPI_Op wide_sum;        /* element-wise crl_xsum_wide_merge              */
    int status;             /* last status and message                       */
    char message[CRL_MESSAGE_MAX];
    crl_error_info info;    /* the same, as facts                            */
};

/* Stores the outcome of a call in the context; returns status.  The record
 * names no rank, role, term or index. */
int crl_context_set(crl_context *ctx, int status, const char *message);

/* Stores a whole error record (its rank field as given); returns its code. */
int crl_context_set_error(crl_context *ctx, const crl_error *err);

/* Collective.  Every rank passes its local error (code 0 if none); returns
 * the same status on every rank (crl_context_agree_error when one failed). */
int crl_agree(crl_context *ctx, const crl_error *local);

/* Collective.  In-place exact sum of count accumulators over all ranks. */
int crl_context_reduce(crl_context *ctx, crl_xsum *buffer, int64_t count);
int crl_context_reduce_wide(crl_context *ctx, crl_xsum_wide *buffer, int64_t count);

/* Collective.  Every rank's count records of width doubles, concatenated in
 * rank order into *out (malloc'd: the caller frees it; *total records).  The
 * ranks agree at each step that every one can take it (memory, MPI's int
 * counts): otherwise every rank fails with CRL_ERR_NOMEM, *out NULL.  For
 * the terms' add_more (they call no MPI themselves). */
int crl_allgather_records(MPI_Comm comm, const double *send, int64_t count, int64_t width,
                          double **out, int64_t *total, crl_error *err);

/*
 * Collective, called when the reduction reported that some rank failed:
 * every rank learns the error of the lowest failing rank (code and message,
 * prefixed with that rank unless several ranks all failed with the very
 * same message), stores it in the context and returns its code.  local is
 * this rank's error (code 0 if it did not fail).
 */
int crl_context_agree_error(crl_context *ctx, const crl_error *local);

/* ------------------------------------------------------------------------ */
/* Arrays (view.c)                                                            */
/* ------------------------------------------------------------------------ */

#include "view.h"

/* Memory (work.c).  Grows the array *ptr_to_ptr (of elements of size bytes, *cap of them) to
 * hold want elements, doubling; false when out of memory (*ptr unchanged). */
bool crl_reserve(void *ptr_to_ptr, int64_t *cap, int64_t want, size_t size);

/* Overflow-checked a * b for sizes; false on overflow or negative input. */
bool crl_mul_size(int64_t a, int64_t b, int64_t *out);

/* ------------------------------------------------------------------------ */
/* Parameters (params.c)                                                      */
/* ------------------------------------------------------------------------ */

#define CRL_MAX_PARAMS 12

/* Parses the text of one value for info into *value. */
int crl_param_parse(const crl_param_info *info, const char *text, double *value, crl_error *err);
/* Checks a numeric value against info's kind and range. */
int crl_param_validate(const crl_param_info *info, double value, crl_error *err);

/* ------------------------------------------------------------------------ */
/* Terms                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct crl_term crl_term;
typedef struct crl_term_class crl_term_class;

/* Where a chunk lies in the global (batch, time) plane: the caller's block
 * (crl_loss_set_block), or for whole elements batch_offset -1 (unknown),
 * time_offset 0 and time T. */
typedef struct crl_place {
    int64_t batch, batch_offset, time, time_offset;
    bool blocked;             /* the caller described a block               */
} crl_place;

/* Whether the chunk holds every step of its elements. */
static inline bool crl_place_whole(const crl_place *p, int64_t local_time)
{
    return p->time_offset == 0 && local_time == p->time;
}

/* Global statistics of one population of rates, valid after the reduction. */
typedef struct crl_population {
    const crl_array *array;   /* this rank's slice                          */
    int64_t batch;            /* global batch B                             */
    int64_t time, n;          /* T and N                                    */
    double count;             /* B * T                                      */
    double *mean;             /* mu_i, N values                             */
    double *var;              /* population variance over (b, t), N values  */
    double sumsq;             /* sum of S^2 over all elements               */
    /* Backward, filled by the terms' finalize: the gradient of the total is
     * alpha_i + beta_i * (S[b,t,i] - mean_i) plus the terms' row hooks.      */
    double *alpha, *beta;
    bool affine;              /* some term wrote alpha or beta              */
} crl_population;

/* The shared output-error pass over pred / label (terms/mse.c), run when
 * an active term declares CRL_PASS_OUTPUT_ERROR. */
typedef struct crl_output_error {
    int64_t batch, time, width;    /* global B, T and K                      */
    double count;                  /* B * T * K                              */
    double sqerr;                  /* sum of (pred - label)^2                */
    double coef;                   /* backward: d pred += coef (pred - label),
                                      filled by the terms' finalize          */
} crl_output_error;

/* The replicated weights, by role - CRL_FIRST_MATRIX_ROLE. */
typedef struct crl_weights {
    double sumsq[4];               /* squared Frobenius norm (CRL_PASS_WEIGHT_NORMS) */
    double *grad[4];               /* gradient sink, rows * cols doubles, or NULL */
} crl_weights;

/* What finalize and backward see: global statistics and backward sinks. */
typedef struct crl_global {
    const crl_tensors *inputs;
    /* Of the current chunk, by population: [0] states, pred, label, mask;
     * [1] states1 (PopulationKL's second population, blocked apart). */
    crl_place place[2];
    int64_t time[2];               /* global T of each                       */
    /* CRL_USES(role) bits: the gradients finalize prepares the backward of
     * (every input read, so that backward may ask for any of them), and the
     * subset requested already at accumulate. */
    unsigned grad_mask;
    unsigned grad_announced;
    crl_population pop[2];         /* states, states1 (CRL_PASS_MOMENTS)     */
    crl_output_error out;          /* pred / label                           */
    crl_weights weights;
} crl_global;

/* Rows of one batch element, as seen by the hooks: of a population
 * (states, states1), or of pred with the same rows of label. */
typedef struct crl_rows {
    int role;                 /* CRL_ROLE_STATES, _STATES1 or _PRED         */
    const crl_array *array;   /* the raw local array (this chunk)           */
    int64_t b;                /* batch index in array                       */
    int64_t element;          /* this rank's running element index across the
                                 chunks of an evaluation: the same element has
                                 the same index in forward and backward      */
    int64_t t0, count;        /* rows t0 .. t0 + count - 1                  */
    int64_t n;                /* neurons                                    */
    const double *x;          /* row r at x + r * ld (NULL for a whole element,
                                 and for raw_rows terms when no term needs it) */
    int64_t ld;
    const crl_array *label;   /* pred rows: label, and its rows as doubles  */
    const double *y;          /* (row r at y + r * ldy; NULL as x is)       */
    int64_t ldy;
    /* pred rows: the optional mask (docs/losses.md "Output masks"), row r at
     * m + r * ldm, mask_width K or 1 (broadcast over K); NULL without one. */
    const double *m;
    int64_t ldm, mask_width;
    const crl_array *mask;    /* the raw mask (this chunk), or NULL         */
    /* Where the rows lie (docs/losses.md "Decompositions"): the tiles of a
     * batch element run unit by unit (CRL_TIME_UNIT steps from a global
     * multiple of it); the element hooks are called after the last tile of
     * each unit, with t0 and count those of the unit. */
    const crl_place *place;   /* the chunk's place in the global plane      */
    int64_t row;              /* running index of row t0 among this rank's
                                 rows of the role in this cycle (the same in
                                 forward and backward)                      */
    bool first;               /* the first tile of its unit                 */
    bool last;                /* element hooks: the chunk's last unit of the
                                 element                                    */
    int64_t ahead;            /* row hooks that walk the rows one by one ask,
                                 at row r, for row t0 + r + ahead (the next
                                 tile's; crl_rows_prefetch), so that it
                                 arrives while they compute; 0: they do not */
    /* Forward, float32 rows of a population whose terms declare
     * CRL_PASS_ROW_SUMS: the moments pass's sum of row r (crl_sum_fixed_f32
     * of it, the same bits) at row_sum[r], and at row_sum[count + r] the
     * row's value whose bits, read as a signed integer, are the largest
     * (in a finite row: its largest value >= +0, or one <= 0 if it has
     * none); NULL otherwise. */
    const double *row_sum;
    /* Backward, the first hook of a tile, where its class has
     * backward_inits: not NULL when the tile holds nothing yet.  The hook
     * then writes into each row the row's starting value, the affine
     * gradient of this population (crl_rows_init: alpha_i + beta_i (x -
     * mu_i) where init->affine, else +0), plus its part, with the operations
     * of crl_rows_init followed by its adding kernel (the same bits). */
    const crl_population *init;
} crl_rows;

/* Row r of the tile as the engine starts it (crl_rows.init): float32 rows
 * only. */
void crl_rows_init(const crl_rows *rows, int64_t r, double *grad_row);

/* The starting value of element i, of value v, of a row (crl_rows.init),
 * in the operations of crl_rows_init. */
#define CRL_INIT_AFFINE(pop, i, v) ((pop)->alpha[i] + (pop)->beta[i] * ((v) - (pop)->mean[i]))

/* Asks for the cache lines of row t0 + r + rows->ahead of the array (past
 * the element's last row, the next element's rows), when ahead is set. */
static inline void crl_rows_prefetch(const crl_rows *rows, int64_t r)
{
    if (rows->ahead == 0)
        return;
    const crl_array *a = rows->array;
    int64_t b = rows->b, t = rows->t0 + r + rows->ahead;
    if (t >= a->time) {
        t -= a->time;
        b++;
    }
    /* Inline, not crl_prefetch_rows: this runs once per row of a hot loop. */
    if (b < a->batch && t < a->time)
        crl_prefetch_lines(crl_array_row(a, b, t), a->width * (int64_t) crl_dtype_size(a->dtype),
                           false);
}

/* Element j of row r of the mask of pred rows (1 without a mask). */
static inline double crl_mask_at(const crl_rows *rows, int64_t r, int64_t j)
{
    if (rows->m == NULL)
        return 1.0;
    return rows->m[r * rows->ldm + (rows->mask_width == 1 ? 0 : j)];
}

/* Whether the T rows of a batch element lie back to back (time stride ==
 * width): a whole-element hook may then read them as one block. */
static inline bool crl_rows_contiguous(const crl_array *a)
{
    return a->time_stride == a->width || a->time == 1;
}

/* Shared passes a term declares in its class table (crl_term_class.passes);
 * the engine runs a pass only when an active term reading its inputs asks. */
enum {
    CRL_PASS_MOMENTS = 1u << 0,       /* per-neuron sums and sums of squares of
                                         each population read (mu_i, variances,
                                         sum S^2, the affine backward), and the
                                         check that every rate is finite      */
    CRL_PASS_OUTPUT_ERROR = 1u << 1,  /* sum (pred - label)^2 and its gradient
                                         coef (pred - label) (terms/mse.c)     */
    CRL_PASS_WEIGHT_NORMS = 1u << 2,  /* squared Frobenius norms of the weights */
    CRL_PASS_SQUARES = 1u << 3,       /* with CRL_PASS_MOMENTS: the per-neuron
                                         sums of squares too (the variances and
                                         sum S^2); without it they are 0 and
                                         only the sums are formed             */
    CRL_PASS_ROW_SUMS = 1u << 4,      /* with CRL_PASS_SQUARES: each float32
                                         row's sum and peak, formed in the same
                                         sweep (crl_rows.row_sum; without the
                                         squares, the term forms them)        */
};

/* Values a term reports from finalize (before its weight lambda_k). */
#define CRL_MAX_PARTS 8
typedef struct crl_term_out {
    double value;
    const double *vector;     /* vector-valued terms: n values, not in the total */
    int64_t vector_length;
    double part[CRL_MAX_PARTS];
} crl_term_out;

struct crl_term {
    const crl_term_class *cls;
    char name[64];
    double weight;                 /* lambda_k                                */
    double param[CRL_MAX_PARAMS];  /* in the order of cls->params             */
    int64_t slot;                  /* first of its slots in the packed buffer */
    int64_t slot_count;
    void *state;                   /* class-private, freed by cls->destroy    */
    double grad_factor;            /* crl_loss_set_term_grad_scale (1)         */
    double saved_weight;           /* weight while a backward scales it       */
};

/*
 * A loss: the table a term type fills in.  Every hook but uses and finalize
 * may be NULL.  Hooks receive only their own slots of the packed buffer.
 */
struct crl_term_class {
    /* The catalogue (crl_term_type_describe): everything a front end needs. */
    const char *type;
    const char *summary;
    const char *python_name;        /* the criterion's class in the binding  */
    const char *example;            /* a --term of the command-line tool     */
    unsigned inputs;                /* CRL_USES bits of every role it may read */
    unsigned gradients;             /* those it can give the gradient of     */
    const crl_param_info *params;   /* terminated by an entry with key NULL  */
    const char *const *parts;       /* names of the parts, NULL-terminated, or NULL */
    int64_t tile_rows;              /* rows per tile the backward hook wants (0: any) */
    /* The row hooks read the raw typed rows (rows->array from rows->t0): the
     * engine then need not widen float32 rows into doubles for them, and
     * rows->x is NULL unless another term asked for doubles. */
    bool raw_rows;
    /* Its backward_rows honours crl_rows.init (float32 raw rows): the
     * engine then lets it, when it is the first hook, write each row's
     * starting value together with its part, rather than forming the tile
     * in a pass of its own first. */
    bool backward_inits;
    /* The term weighs its output error by the optional mask input (docs/losses.md
     * "Output masks"): the engine then reads the mask when one is given. */
    bool takes_mask;

    /* Shared passes it reads (CRL_PASS_ bits). */
    unsigned passes;

    /* Roles (CRL_USES bits) the term reads with its current parameters. */
    unsigned (*uses)(const crl_term *t);
    /* The roles among uses(t) whose gradient the term can write, given the
     * requests announced at accumulate (NULL: all of them). */
    unsigned (*grads)(const crl_term *t, unsigned announced);
    /* Whether the parts are reported (e.g. only for some parameters). */
    bool (*has_parts)(const crl_term *t);
    /* Local checks once shapes are known (g->pop[].array, g->inputs and
     * g->grad_mask set, global fields not yet), and per-evaluation
     * preparation (weights are final; batch sizes may grow chunk by chunk);
     * returns the number of packed slots it needs in *slots. */
    int (*prepare)(crl_term *t, const crl_global *g, int64_t *slots, crl_error *err);
    /* Accumulate, per row tile of each population the term uses. */
    int (*accumulate_rows)(crl_term *t, const crl_rows *rows, crl_xsum *slots, crl_error *err);
    /* Accumulate, after the last tile of each unit of a batch element (t0
     * and count those of the unit, x = NULL: read the raw array; rows->last
     * on the chunk's last unit of the element). */
    int (*accumulate_element)(crl_term *t, const crl_rows *element, crl_xsum *slots,
                              crl_error *err);
    /* After the last element of a chunk of the population (optional): what
     * the term holds back from its slots goes into them, so that the slots
     * are complete before the reduction. */
    void (*accumulate_end)(crl_term *t, crl_xsum *slots);
    /* The same over pred rows (rows->x) and label rows (rows->y), K wide,
     * for terms that read pred; the element hook sees each unit's rows of
     * the raw arrays. */
    int (*accumulate_output_rows)(crl_term *t, const crl_rows *rows, crl_xsum *slots,
                                  crl_error *err);
    int (*accumulate_output_element)(crl_term *t, const crl_rows *element, crl_xsum *slots,
                                     crl_error *err);
    /* Values from the global sums; with gradients wanted, also adds the
     * backward coefficients (times t->weight) into g.  Runs on every rank
     * with the same sums, so its errors are collective; it must not fail for
     * any other reason (allocate in prepare). */
    int (*finalize)(crl_term *t, crl_global *g, const crl_dd *slots, crl_term_out *out,
                    crl_error *err);
    /* A second reduction, for what a rank can add only once the first is
     * known (the blocks of crl_loss_set_block: an element split across
     * chunks, rows held by other ranks).  Both optional and collective: more
     * says, from the first reduction's sums (the same on every rank),
     * whether the term takes part; then add_more writes this rank's part into
     * its zeroed slots of the second buffer, and may communicate (every rank
     * calls it, also after a local error, which it records in err).  The two
     * reductions' sums are added exactly before finalize. */
    bool (*more)(const crl_term *t, const crl_global *g, const crl_dd *slots);
    void (*add_more)(crl_term *t, MPI_Comm comm, const crl_global *g, const crl_dd *slots,
                     crl_xsum *more_slots, crl_error *err);
    /* Backward, per row tile: adds t->weight * dL/dS into grad (count x n). */
    void (*backward_rows)(const crl_term *t, const crl_global *g, const crl_rows *rows,
                          double *grad);
    /* Backward over pred / label rows: adds t->weight * dL/dpred into
     * grad_pred and t->weight * dL/dlabel into grad_label (count x K each). */
    void (*backward_output_rows)(const crl_term *t, const crl_global *g, const crl_rows *rows,
                                 double *grad_pred, double *grad_label);
    void (*destroy)(crl_term *t);
};

/* The table of all term types (terms/registry.c). */
extern const crl_term_class *const crl_term_classes[];
const crl_term_class *crl_term_class_find(const char *type);

/* A term name: 1-63 letters, digits, '_' or '-'. */
bool crl_term_name_valid(const char *name);

/* Index of a parameter of t's class by key (a programming error if absent). */
int crl_term_param_index(const crl_term_class *cls, const char *key);

/* ------------------------------------------------------------------------ */
/* Shared helpers for terms                                                   */
/* ------------------------------------------------------------------------ */

/* Spread of per-neuron means (docs/losses.md "Data and notation"): m and sigma_c. */
typedef struct crl_spread {
    double m;        /* population mean rate                                */
    double sigma;    /* SD across neurons with the given correction         */
    double denom;    /* N - correction                                      */
} crl_spread;
crl_spread crl_spread_of(const double *mean, int64_t n, double correction);

/* Adds d sigma_c / d mu_i * scale into g (zero when sigma_c is 0). */
void crl_spread_grad_sd(const double *mean, int64_t n, crl_spread s, double scale, double *g);
/* Adds d (sigma_c / m) / d mu_i * scale into g. */
void crl_spread_grad_cv(const double *mean, int64_t n, crl_spread s, double scale, double *g);

/* The output-error pass (terms/mse.c) over pred rows (x, y and the mask m
 * of rows): acc[(t mod L) K + j] += (m (x - y))^2 over the rows (L =
 * crl_output_lanes(K) lanes per column: acc holds L K doubles); after an
 * element's last rows, its sum into *slot in a fixed order (a non-finite
 * sum names the element of pred, label or mask); backward out = coef m^2
 * (x - y). */
void crl_output_error_rows(const crl_rows *rows, double *acc);
int crl_output_error_element(const crl_array *pred, const crl_array *label,
                             const crl_array *mask, int64_t b, const double *acc, crl_xsum *slot,
                             crl_error *err);
void crl_output_error_backward_rows(const crl_rows *rows, double coef, double *out);
/* The first non-finite element of batch element b of pred, label or the
 * mask (NULL: none), as crl_report_nonfinite reports it; CRL_OK if none. */
int crl_report_nonfinite_outputs(const crl_array *pred, const crl_array *label,
                                 const crl_array *mask, int64_t b, crl_error *err);

/* Sign with sign(0) = 0. */
static inline double crl_sign(double x)
{
    return (double) ((x > 0) - (x < 0));
}

#endif /* CRL_INTERNAL_H */
