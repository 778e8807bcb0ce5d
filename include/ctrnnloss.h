/*
 * ctrnnloss.h - exact, MPI-sharded losses and gradients for continuous-time
 * recurrent neural networks (CTRNNs).
 *
 * The batch dimension of every batched input is split over the ranks of an MPI
 * communicator; every rank gets the global loss and the gradient of its own
 * slice, bitwise identical whatever the split (see SPEC.md, "Exactness").
 *
 * Typical use (every rank):
 *
 *     crl_context *ctx;
 *     crl_loss *loss;
 *     crl_context_create(MPI_COMM_WORLD, &ctx);
 *     crl_loss_create(ctx, &loss);
 *     crl_loss_add(loss, "rnn", "rnn", 1.0, "lambda_fr=0.01,lambda_fr_sd=0.1");
 *
 *     crl_tensors in = {0}, grad = {0};
 *     in.states = crl_array_batch_major(CRL_FLOAT32, rates, b_local, T, N);
 *     in.pred   = crl_array_batch_major(CRL_FLOAT32, out,   b_local, T, K);
 *     in.label  = crl_array_batch_major(CRL_FLOAT32, y,     b_local, T, K);
 *     grad.states = crl_array_batch_major(CRL_FLOAT32, d_rates, b_local, T, N);
 *     if (crl_loss_evaluate(loss, &in, &grad) != CRL_OK)
 *         fprintf(stderr, "%s\n", crl_context_error(ctx));
 *     double total = crl_loss_total(loss);
 *
 * Conventions:
 *  - "Collective" functions must be called by every rank of the context's
 *    communicator, in the same order; they return the same status on every
 *    rank.  "Not collective" functions are purely local.
 *  - Functions return a crl_status; on failure a message is kept in the
 *    context (crl_context_error) and no output buffer has been modified.
 *  - Gradients ACCUMULATE by default: the gradient is added to what the buffer
 *    holds, so zero the buffers first to get the plain gradient
 *    (crl_loss_set_grad_mode selects overwriting instead).
 *  - Sizes and indices are int64_t.
 */
#ifndef CTRNNLOSS_H
#define CTRNNLOSS_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CRL_API __attribute__((visibility("default")))
#else
#define CRL_API
#endif

#define CRL_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------ */
/* Status codes                                                               */
/* ------------------------------------------------------------------------ */

typedef enum crl_status {
    CRL_OK = 0,
    CRL_ERR_INVALID = 1,   /* invalid argument: NULL data, shapes or parameters
                              that disagree across ranks, T <= tau, unknown
                              metric or type, size overflow                  */
    CRL_ERR_DOMAIN = 2,    /* mean rate 0 for a CV, negative rate in entropy,
                              zero variance in population_kl, overflow       */
    CRL_ERR_NONFINITE = 3, /* NaN or +-Inf in an input                       */
    CRL_ERR_IO = 4,        /* unreadable, truncated or malformed file        */
    CRL_ERR_NOMEM = 5,     /* out of memory                                  */
    CRL_ERR_MPI = 6        /* an MPI call failed                             */
} crl_status;

/* Not collective.  A static, generic description of a status code. */
CRL_API const char *crl_strerror(int status);

/* Not collective.  The library version, "MAJOR.MINOR.PATCH". */
CRL_API const char *crl_version(void);

/* ------------------------------------------------------------------------ */
/* Arrays                                                                     */
/* ------------------------------------------------------------------------ */

typedef enum crl_dtype {
    CRL_FLOAT32 = 1,
    CRL_FLOAT64 = 2
} crl_dtype;

/* Not collective.  Bytes per element (4 or 8), 0 for an unknown type. */
CRL_API size_t crl_dtype_size(crl_dtype dtype);

/*
 * A rank's local slice of a batched array of global shape (B, T, width):
 * element (b, t, i) of the slice, 0 <= b < batch, is at
 *     data + (b * batch_stride + t * time_stride + i) * element size.
 * The innermost (neuron or output) dimension has unit stride.  Batch-major
 * (B_r, T, W) and time-major (T, B_r, W) arrays, and slices of a larger array,
 * are all described by choosing the two strides (in elements).
 *
 * An array with data == NULL and batch == 0 is absent.  batch == 0 with time
 * and width set is an empty shard: legal, data may be NULL.
 */
typedef struct crl_array {
    crl_dtype dtype;
    void *data;            /* input arrays are only read                      */
    int64_t batch;         /* local batch elements B_r >= 0                   */
    int64_t time;          /* time steps T >= 1 (same on every rank)          */
    int64_t width;         /* neurons N or outputs K >= 1 (same on every rank)*/
    int64_t batch_stride;  /* elements between (b, t, i) and (b + 1, t, i)    */
    int64_t time_stride;   /* elements between (b, t, i) and (b, t + 1, i)    */
} crl_array;

/* Not collective.  A dense batch-major (batch, time, width) array. */
CRL_API crl_array crl_array_batch_major(crl_dtype dtype, void *data, int64_t batch,
                                        int64_t time, int64_t width);

/* Not collective.  A dense time-major (time, batch, width) array. */
CRL_API crl_array crl_array_time_major(crl_dtype dtype, void *data, int64_t batch,
                                       int64_t time, int64_t width);

/*
 * A replicated matrix (every rank passes the same values), row-major, element
 * (r, c) at data + (r * row_stride + c) * element size.  PyTorch Linear.weight
 * convention: W_in is N x N_in, W_hid and the Hebbian W are N x N, W_out is
 * N_out x N.  data == NULL means absent.
 */
typedef struct crl_matrix {
    crl_dtype dtype;
    void *data;
    int64_t rows, cols;
    int64_t row_stride;    /* elements between (r, c) and (r + 1, c)          */
} crl_matrix;

/* Not collective.  A dense row-major rows x cols matrix. */
CRL_API crl_matrix crl_matrix_dense(crl_dtype dtype, void *data, int64_t rows, int64_t cols);

/*
 * The inputs of an evaluation, by role.  The same structure describes the
 * gradient outputs: a gradient buffer has the dtype and shape of its input
 * (strides may differ).  A batched gradient is requested by giving its shape
 * (an empty shard gives batch 0 and data NULL, like its input) and skipped
 * when left zeroed; a matrix gradient is requested by its data.  Zero-
 * initialize and fill in what is used.
 *
 *   states   S  (B, T, N)      firing rates
 *   states1  S1 (B1, T1, N)    second population (population_kl)
 *   pred     y^ (B, T, K)      network outputs
 *   label    y  (B, T, K)      targets (its gradient is -d/d pred)
 *   w_in     N x N_in, w_hid N x N, w_out N_out x N, w_hebb N x N
 */
typedef struct crl_tensors {
    crl_array states, states1, pred, label;
    crl_matrix w_in, w_hid, w_out, w_hebb;
} crl_tensors;

/* ------------------------------------------------------------------------ */
/* Context                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct crl_context crl_context;

/* Input roles, in the order of the members of crl_tensors. */
typedef enum crl_role {
    CRL_ROLE_STATES,
    CRL_ROLE_STATES1,
    CRL_ROLE_PRED,
    CRL_ROLE_LABEL,
    CRL_ROLE_W_IN,
    CRL_ROLE_W_HID,
    CRL_ROLE_W_OUT,
    CRL_ROLE_W_HEBB,
    CRL_ROLE_COUNT
} crl_role;

/* Not collective.  The name of a role ("states", "w_hid", ...), as the
 * messages and the command-line options spell it; "?" for another value. */
CRL_API const char *crl_role_name(int role);

#define CRL_ERROR_MESSAGE_SIZE 512

/*
 * What went wrong, as facts (crl_context_error_info):
 *   code     the status (CRL_OK when the last call succeeded)
 *   rank     the rank whose local input was at fault: the lowest failing rank;
 *            -1 when the error is not one rank's (every rank found the same,
 *            e.g. a shape all ranks share, or a value computed from the
 *            global sums)
 *   role     the input (crl_role) at fault, or -1
 *   term     the index of the term at fault (in order of crl_loss_add), or -1
 *   b, t, i  indices into that rank's LOCAL array as passed (the chunk, for
 *            crl_loss_accumulate); for a matrix input t is the row and i the
 *            column; for a per-neuron value (a zero variance) i alone; -1
 *            where not applicable
 *   message  the text of crl_context_error
 */
typedef struct crl_error_info {
    int code;
    int rank;
    int role;
    int term;
    int64_t b, t, i;
    char message[CRL_ERROR_MESSAGE_SIZE];
} crl_error_info;

/*
 * Collective over comm.  Creates a context on a duplicate of comm, with
 * MPI_ERRORS_RETURN set on the duplicate, and the double-double reduction
 * operator.  *ctx is NULL on failure.
 */
CRL_API int crl_context_create(MPI_Comm comm, crl_context **ctx);

/* Collective.  Frees the context and sets *ctx to NULL; NULL is a no-op. */
CRL_API int crl_context_destroy(crl_context **ctx);

/* Not collective.  The message of the last failed call on this context
 * ("" if none).  Messages name the term, the rank and the offending index. */
CRL_API const char *crl_context_error(const crl_context *ctx);

/* Not collective.  The last status (CRL_OK after a success). */
CRL_API int crl_context_status(const crl_context *ctx);

/* Not collective.  Rank and size of the context's communicator. */
CRL_API int crl_context_rank(const crl_context *ctx);
CRL_API int crl_context_size(const crl_context *ctx);

/* Not collective.  The context's (duplicated) communicator. */
CRL_API MPI_Comm crl_context_comm(const crl_context *ctx);

/*
 * Not collective.  Copies the record of the last call on this context into
 * *info (code CRL_OK and empty fields after a success).  After a failed
 * collective call the record is the same on every rank.
 * Errors: CRL_ERR_INVALID when ctx or info is NULL.
 */
CRL_API int crl_context_error_info(const crl_context *ctx, crl_error_info *info);

/*
 * Collective.  Agreement for front ends: every rank passes its local status
 * (CRL_OK when its part is fine) and, when it failed, why (local_message,
 * NULL for the generic text).  Every rank returns the same status: CRL_OK
 * when all ranks passed CRL_OK, otherwise the code of the lowest failing
 * rank, whose message (prefixed "rank R: " unless all ranks failed with the
 * same message) and rank become the context's error (crl_context_error,
 * crl_context_error_info).  One MPI_Allreduce when every rank is fine.
 */
CRL_API int crl_context_agree(crl_context *ctx, int local_code, const char *local_message);

/* ------------------------------------------------------------------------ */
/* Losses                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * A loss is an ordered list of named terms (SPEC "MSE and CompositeLoss").
 * Each term has a type (see crl_term_type_name), parameters and a weight
 * lambda; the total is sum_k lambda_k L_k.  One evaluation costs one
 * MPI_Allreduce whatever the number of terms.
 *
 * A term whose weight is 0 is not computed, its inputs may be absent, and it
 * reports 0 (likewise each lambda of an "rnn" term).
 */
typedef struct crl_loss crl_loss;

/* Not collective.  An empty loss bound to ctx (which must outlive it). */
CRL_API int crl_loss_create(crl_context *ctx, crl_loss **loss);

/* Not collective.  Frees the loss, sets *loss to NULL; NULL is a no-op. */
CRL_API void crl_loss_destroy(crl_loss **loss);

/*
 * Not collective.  Appends a term.
 *   name    unique within the loss; letters, digits, '_' and '-' (reported
 *           values are "name" and, for some types, "name.part")
 *   type    "rnn", "fr", "fr_dist", "state_pred", "hebbian", "entropy",
 *           "population_kl" or "mse"
 *   weight  lambda_k (finite)
 *   params  "key=value,key=value" or NULL/"" for the defaults; keys and values
 *           as in SPEC (e.g. "metric=cv,correction=1", "symmetric=false")
 * Errors: CRL_ERR_INVALID naming the offending text.  Every rank must add the
 * same terms; crl_loss_evaluate reports a collective error otherwise.
 */
CRL_API int crl_loss_add(crl_loss *loss, const char *name, const char *type,
                         double weight, const char *params);

/* Not collective.  Sets one numeric parameter of the term called name
 * (for a choice parameter, value is the index into its choices). */
CRL_API int crl_loss_set(crl_loss *loss, const char *name, const char *key, double value);

/* Not collective.  Sets the weight lambda_k of the term called name. */
CRL_API int crl_loss_set_weight(crl_loss *loss, const char *name, double weight);

/* How the backward pass stores gradients (crl_loss_set_grad_mode). */
typedef enum crl_grad_mode {
    CRL_GRAD_ACCUMULATE = 0,  /* buffer += gradient (the default)            */
    CRL_GRAD_OVERWRITE = 1    /* buffer = gradient; the buffer is not read   */
} crl_grad_mode;

/*
 * Not collective.  Selects how gradients are stored from the next
 * crl_loss_backward (or crl_loss_evaluate) on.  CRL_GRAD_OVERWRITE writes
 * every given gradient buffer without reading it, so buffers need no
 * zeroing; a given buffer whose gradient is identically zero (an input no
 * active term reads, or one no term differentiates) is written with zeros.
 * The result is bitwise that of CRL_GRAD_ACCUMULATE into zeroed buffers.
 * Overwriting is per crl_loss_backward call: each call writes the batched
 * buffers it is given (the chunks of a shard are distinct buffers); weight
 * gradients are written by the first call of a cycle, as they are added.
 * Errors: CRL_ERR_INVALID for another mode.
 */
CRL_API int crl_loss_set_grad_mode(crl_loss *loss, crl_grad_mode mode);

/*
 * Not collective.  The backward pass stores scale * dL/dx instead of dL/dx
 * (added or overwritten as the mode says); the product is formed when each
 * element is stored, not in a further pass.  scale = 1 (the default) gives
 * bitwise the plain gradient.  Every rank should use the same scale.
 * Errors: CRL_ERR_INVALID when scale is not finite.
 */
CRL_API int crl_loss_set_grad_scale(crl_loss *loss, double scale);

/* Not collective.  Number of terms. */
CRL_API int crl_loss_term_count(const crl_loss *loss);

/*
 * Collective.  Evaluates the loss on every rank's local inputs and, when grads
 * is not NULL, ADDS the gradient of the total with respect to every input
 * whose gradient buffer is set.  Every rank must pass the same T, N, K, weight
 * matrices, dtypes and weight-gradient requests; batch sizes may differ (0
 * included).
 *
 * Errors (the same status and message on every rank; no output modified):
 *   CRL_ERR_INVALID, CRL_ERR_DOMAIN, CRL_ERR_NONFINITE, CRL_ERR_NOMEM,
 *   CRL_ERR_MPI.  Gradients are refused (CRL_ERR_INVALID) for a term that has
 *   none (population_kl with reduction=none).
 */
CRL_API int crl_loss_evaluate(crl_loss *loss, const crl_tensors *inputs,
                              const crl_tensors *grads);

/*
 * Evaluation in parts, for shards larger than memory.  crl_loss_evaluate is
 *
 *     crl_loss_accumulate(loss, inputs, grads);   Not collective
 *     crl_loss_reduce(loss);                      Collective
 *     crl_loss_backward(loss, inputs, grads);     Not collective
 *
 * and a rank may instead pass its shard in chunks of batch elements: call
 * crl_loss_accumulate once per chunk (at least once: an empty shard passes
 * one empty chunk), then crl_loss_reduce once, then crl_loss_backward once per
 * chunk, with the same chunks in the same order.  Chunks may differ in batch
 * size only: T, N, K, dtypes, weight matrices (same pointers) and gradient
 * requests are those of the first chunk.  The results are bitwise identical
 * to one evaluation of the whole shard, with one MPI_Allreduce.
 *
 * Gradients may be decided at backward time: crl_loss_accumulate with grads
 * NULL (or fewer requests), crl_loss_reduce, then crl_loss_backward with any
 * gradient buffers of inputs the active terms read gives bitwise the result
 * of announcing them at accumulate (finalize prepares the backward of every
 * input read).  The exception is a weight gradient that is itself a sum over
 * all ranks (hebbian's w_hebb): it must be requested at accumulate, as it
 * shapes the reduction; asking for it only in backward is CRL_ERR_INVALID.
 * All crl_loss_backward calls of a cycle pass the same gradient requests.
 *
 * crl_loss_accumulate and crl_loss_backward return a local status: an error
 * found by accumulate is kept and reported collectively by crl_loss_reduce,
 * so every rank must still call crl_loss_reduce.  Weight gradients are added
 * by the first crl_loss_backward call.  Values are available after a
 * successful crl_loss_reduce; gradients only after crl_loss_backward.
 */
CRL_API int crl_loss_accumulate(crl_loss *loss, const crl_tensors *inputs,
                                const crl_tensors *grads);
CRL_API int crl_loss_reduce(crl_loss *loss);
CRL_API int crl_loss_backward(crl_loss *loss, const crl_tensors *inputs,
                              const crl_tensors *grads);

/* Not collective.  The total of the last successful evaluation (0 before). */
CRL_API double crl_loss_total(const crl_loss *loss);

/*
 * Not collective.  The values reported by the last successful evaluation, in
 * term order: for each term "name" = lambda_k L_k, then its parts:
 *   rnn:            name.mse name.in name.hid name.out name.fr name.fr_sd
 *                   name.fr_cv  (each weighted by its own lambda and by
 *                   lambda_k; they add up to "name")
 *   population_kl with reduction=none: "name" is a vector of N weighted
 *                   per-neuron divergences (not added to the total) and
 *                   "name.reg" the weighted regularizer.
 * crl_loss_value returns a pointer to `*length` doubles (1 for a scalar),
 * valid until the next evaluation or destroy.
 */
CRL_API int64_t crl_loss_value_count(const crl_loss *loss);
CRL_API const char *crl_loss_value_name(const crl_loss *loss, int64_t index);
CRL_API const double *crl_loss_value(const crl_loss *loss, int64_t index, int64_t *length);

/* Not collective.  The scalar value called name; CRL_ERR_INVALID if there is
 * no such value or it is a vector. */
CRL_API int crl_loss_find(const crl_loss *loss, const char *name, double *value);

/* ------------------------------------------------------------------------ */
/* The catalogue of term types (for tools and bindings)                       */
/* ------------------------------------------------------------------------ */

typedef enum crl_param_kind {
    CRL_PARAM_REAL = 1,
    CRL_PARAM_INT = 2,
    CRL_PARAM_BOOL = 3,    /* value 0 or 1; text true/false/1/0           */
    CRL_PARAM_CHOICE = 4   /* value is the index into choices             */
} crl_param_kind;

typedef struct crl_param_info {
    const char *key;
    crl_param_kind kind;
    double default_value;
    double min, max;                 /* allowed range (REAL and INT)      */
    const char *const *choices;      /* NULL-terminated (CHOICE)          */
    const char *help;
} crl_param_info;

/* Not collective.  Number of term types, and each type's name and summary. */
CRL_API int crl_term_type_count(void);
CRL_API const char *crl_term_type_name(int index);
CRL_API const char *crl_term_type_summary(int index);

/* Not collective.  The parameters of a type; NULL past the end or for an
 * unknown type. */
CRL_API const crl_param_info *crl_term_type_param(const char *type, int index);

#ifdef __cplusplus
}
#endif

#endif /* CTRNNLOSS_H */
