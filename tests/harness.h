/*
 * harness.h - what every test program shares: MPI start-up around cmocka,
 * collective assertions, deterministic global inputs, batch splits, one
 * evaluation on any communicator, bitwise comparison of whole results, and
 * central finite differences.
 *
 * Every rank builds the same global problem from a seed; an evaluation gives
 * rank r the batch elements of its range.  Comparing a split evaluation on
 * MPI_COMM_WORLD with the whole batch on MPI_COMM_SELF checks docs/losses.md
 * "Exactness" inside one run of any rank count.
 */
#ifndef CRL_TEST_HARNESS_H
#define CRL_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ctrnnloss.h"

extern int h_rank, h_size;

/* MPI_Init, cmocka group run (rank > 0 prints to stderr only), MPI_Finalize.
 * Returns non-zero on any rank's failure. */
int h_main(int argc, char **argv, const struct CMUnitTest *tests, size_t count, const char *name);

/* Collective assertion: fails on every rank if cond is false on any rank. */
void h_assert_all_impl(bool cond, const char *expr, const char *file, int line);
#define h_assert_all(cond) h_assert_all_impl((cond), #cond, __FILE__, __LINE__)

/* Deterministic uniform numbers in [lo, hi): the same on every rank. */
uint64_t h_rand(uint64_t *state);
double h_uniform(uint64_t *state, double lo, double hi);

/* ------------------------------------------------------------------------ */
/* Problems                                                                   */
/* ------------------------------------------------------------------------ */

/* A global problem, every array held whole (in double) on every rank. */
typedef struct h_problem {
    crl_dtype dtype;
    bool time_major;
    int64_t B, T, N, K;        /* states, pred/label                     */
    int64_t B1, T1;            /* states1 (0 when absent)                */
    int64_t N_in, N_out;       /* weights (0 when absent)                */
    bool hebb;                 /* w_hebb present                         */
    int64_t K_mask;            /* mask (B, T, K_mask): K, 1, or 0 absent  */
    double *states, *states1, *pred, *label, *mask;
    double *w_in, *w_hid, *w_out, *w_hebb;
} h_problem;

/* Fills every array of p that its sizes ask for: rates in [lo, hi), outputs
 * in [-1, 1), weights in [-0.5, 0.5), the mask in [0, 1) with every fourth
 * element 0 (drawn last: the other arrays do not depend on it). */
void h_problem_fill(h_problem *p, uint64_t seed, double rate_lo, double rate_hi);
void h_problem_free(h_problem *p);

/* One term of a loss: name, type, weight, params text. */
typedef struct h_term {
    const char *name, *type;
    double weight;
    const char *params;
} h_term;

/* A range of global batch elements held by this rank. */
typedef struct h_range {
    int64_t start, count;
} h_range;

/* Number of split patterns, and this rank's range under pattern k for a
 * batch of B over size ranks (0 even, then uneven ones with empty ranks). */
int h_split_count(void);
h_range h_split(int pattern, int64_t B, int rank, int size);

/* Gradient requests: CRL_USES-like bits by role order of crl_tensors. */
enum {
    H_GRAD_STATES = 1 << 0,
    H_GRAD_STATES1 = 1 << 1,
    H_GRAD_PRED = 1 << 2,
    H_GRAD_LABEL = 1 << 3,
    H_GRAD_W_IN = 1 << 4,
    H_GRAD_W_HID = 1 << 5,
    H_GRAD_W_OUT = 1 << 6,
    H_GRAD_W_HEBB = 1 << 7,
    H_GRAD_ALL = 0xff,
};

/* The outcome of one evaluation on one rank: status, message, values (by
 * name, in order), and this rank's gradients as raw bytes of the problem's
 * dtype in batch-major order (weights whole). */
typedef struct h_result {
    int status;
    char message[512];
    double total;
    int64_t n_values;
    char (*names)[96];
    int64_t *lengths;
    double *values;            /* concatenated */
    int64_t n_numbers;
    void *grad[8];
    size_t grad_bytes[8];
} h_result;

/*
 * Evaluates terms on p over comm; this rank holds batch range r of states,
 * pred and label, and r1 of states1.  Gradients in grad_mask are computed
 * into buffers pre-filled with the value `seed_grad` (0 for the plain
 * gradient).  The result must be freed with h_result_free.
 */
void h_eval(const h_problem *p, const h_term *terms, int n_terms, MPI_Comm comm, h_range r,
            h_range r1, unsigned grad_mask, h_result *out);
void h_result_free(h_result *res);

/* The status message, total and values of loss's last evaluation into out. */
void h_result_values(const crl_loss *loss, const crl_context *ctx, h_result *out);

/* As h_eval with r1 empty, through crl_loss_accumulate / reduce / backward in
 * chunks of `chunk` batch elements of this rank's range r. */
void h_eval_chunked(const h_problem *p, const h_term *terms, int n_terms, MPI_Comm comm,
                    h_range r, int64_t chunk, unsigned grad_mask, h_result *out);

/* Gradient buffers are pre-filled with this value (0 by default); after a
 * failed call h_grads_untouched tells whether they still hold it. */
extern double h_grad_fill;

/* h_eval evaluates this many times on the same loss (default 1); gradients
 * accumulate, values are those of the last evaluation. */
extern int h_repeat;
bool h_grads_untouched(const h_problem *p, const h_result *res);

/* How h_eval stores gradients (crl_loss_set_grad_mode, _scale; defaults
 * accumulate and 1), and whether it asks for them only at backward
 * (crl_loss_accumulate with NULL gradients; default false). */
extern int h_grad_mode;
extern double h_grad_scale;
extern bool h_late_grads;
/* Per-term gradient scales (crl_loss_set_term_grad_scale), one per term of
 * the h_eval call, or NULL (default) for none set. */
extern const double *h_term_grad_scales;

/* Whole-problem evaluation on MPI_COMM_SELF. */
void h_eval_self(const h_problem *p, const h_term *terms, int n_terms, unsigned grad_mask,
                 h_result *out);

/* Bitwise equality of status, values, and the gradient slice of range r
 * (r1 for states1) of `whole` against `part`. */
bool h_result_equal_slice(const h_problem *p, const h_result *whole, const h_result *part,
                          h_range r, h_range r1, char *why, size_t why_len);

/*
 * The exactness check: evaluates on MPI_COMM_SELF (the whole batch), then on
 * MPI_COMM_WORLD under every split pattern, and asserts (collectively) that
 * all outputs are bitwise identical.  Also checks that the status is OK.
 */
void h_check_splits(const h_problem *p, const h_term *terms, int n_terms, unsigned grad_mask);

/* The chunked-evaluation check: the whole batch on MPI_COMM_SELF against
 * MPI_COMM_WORLD with each rank's slice (split pattern k) passed in chunks of
 * k = 1 .. max_chunk elements; every output must be bitwise identical.
 * Problems without states1 (chunks cover states, pred and label). */
void h_check_chunks(const h_problem *p, const h_term *terms, int n_terms, unsigned grad_mask,
                    int64_t max_chunk);

/* Evaluates p (ignoring p->time_major) batch-major and time-major on
 * MPI_COMM_SELF and asserts (collectively) that every output is bitwise
 * identical and the status is OK. */
void h_check_layouts(const h_problem *p, const h_term *terms, int n_terms, unsigned grad_mask);

/* A problem of a test's shape, filled from seed. */
typedef h_problem (*h_problem_maker)(crl_dtype dtype, bool time_major, uint64_t seed);

/* Every exactness check of one loss: h_check_splits for float32 and float64,
 * batch-major and time-major, and h_check_layouts for both dtypes, on
 * problems made by make from seed. */
void h_check_exact(h_problem_maker make, uint64_t seed, const h_term *terms, int n_terms,
                   unsigned grad_mask);

/*
 * Central finite differences (float64 problems) of the total with respect to
 * every element of every input in grad_mask, on MPI_COMM_SELF, compared with
 * the analytic gradient: |fd - g| <= tol * max(1, max |g|) per input.
 * At most max_elements elements per input are probed (evenly spaced).
 */
void h_check_gradients(const h_problem *p, const h_term *terms, int n_terms, unsigned grad_mask,
                       double step, double tol, int64_t max_elements);

/* Whether every registered term type has a term in terms (those missing
 * are named on stderr): a list that must cover the registry fails when a
 * type is added without a case. */
bool h_covers_every_type(const h_term *terms, int n_terms);

/* Value by name in a result; asserts it exists. */
double h_value(const h_result *res, const char *name);

/* Asserts (collectively) that an evaluation fails with code on every rank
 * with a message containing `needle`. */
void h_assert_error(const h_result *res, int code, const char *needle);

/* Evaluates as h_eval with gradient buffers pre-filled with a non-zero
 * value and asserts (collectively) that it fails with code and a message
 * containing `needle` on every rank, and that no buffer was written. */
void h_check_error(const h_problem *p, const h_term *terms, int n_terms, h_range r, h_range r1,
                   unsigned grad_mask, int code, const char *needle);

#endif
