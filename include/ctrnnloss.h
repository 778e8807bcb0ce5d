/*
 * ctrnnloss.h - exact, MPI-sharded losses and gradients for continuous-time
 * recurrent neural networks (CTRNNs).
 *
 * The batch dimension of every batched input is split over the ranks of an MPI
 * communicator; every rank gets the global loss and the gradient of its own
 * slice, bitwise identical whatever the split.  Every loss, its parameters,
 * formula, gradient and errors, and what the exactness guarantee covers, are
 * in docs/losses.md (installed as $(docdir)/losses.md).
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

/*
 * crl_strerror - a static, generic description of a status code.
 *
 * Not Collective
 *
 * Input Parameters:
 *   status - a crl_status (any int)
 *
 * Output Parameters:
 *   returns the text; "unknown error" for another value
 */
CRL_API const char *crl_strerror(int status);

/*
 * crl_version - the library version.
 *
 * Not Collective
 *
 * Output Parameters:
 *   returns "MAJOR.MINOR.PATCH"
 */
CRL_API const char *crl_version(void);

/* ------------------------------------------------------------------------ */
/* Arrays                                                                     */
/* ------------------------------------------------------------------------ */

typedef enum crl_dtype {
    CRL_FLOAT32 = 1,
    CRL_FLOAT64 = 2
} crl_dtype;

/*
 * crl_dtype_size - bytes per element.
 *
 * Not Collective
 *
 * Input Parameters:
 *   dtype - CRL_FLOAT32 or CRL_FLOAT64
 *
 * Output Parameters:
 *   returns 4 or 8; 0 for an unknown type
 */
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

/*
 * crl_array_batch_major - a dense batch-major (batch, time, width) array.
 *
 * Not Collective
 *
 * Input Parameters:
 *   dtype, data - element type and first element
 *   batch, time, width - the local shape
 *
 * Output Parameters:
 *   returns the array (strides time * width and width)
 *
 * Notes:
 *   Nothing is checked here; evaluations check the arrays they use.
 */
CRL_API crl_array crl_array_batch_major(crl_dtype dtype, void *data, int64_t batch,
                                        int64_t time, int64_t width);

/*
 * crl_array_time_major - a dense time-major (time, batch, width) array.
 *
 * Not Collective
 *
 * Input Parameters:
 *   dtype, data - element type and first element
 *   batch, time, width - the local shape
 *
 * Output Parameters:
 *   returns the array (strides width and batch * width)
 *
 * Notes:
 *   Nothing is checked here; evaluations check the arrays they use.
 */
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

/*
 * crl_matrix_dense - a dense row-major rows x cols matrix.
 *
 * Not Collective
 *
 * Input Parameters:
 *   dtype, data - element type and first element
 *   rows, cols - the shape
 *
 * Output Parameters:
 *   returns the matrix (row stride cols)
 */
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
 *   label    y  (B, T, K)      targets
 *   mask     m  (B, T, K) or (B, T, 1)  optional weights of the output error
 *                               of mse, rnn's mse and cross_entropy, per
 *                               element (width 1: broadcast over K); read
 *                               only when given and some such term is in
 *                               the loss; it has no gradient
 *   w_in     N x N_in, w_hid N x N, w_out N_out x N, w_hebb N x N
 */
typedef struct crl_tensors {
    crl_array states, states1, pred, label, mask;
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
    CRL_ROLE_MASK,
    CRL_ROLE_W_IN,
    CRL_ROLE_W_HID,
    CRL_ROLE_W_OUT,
    CRL_ROLE_W_HEBB,
    CRL_ROLE_COUNT
} crl_role;

/*
 * crl_role_name - the name of an input role.
 *
 * Not Collective
 *
 * Input Parameters:
 *   role - a crl_role
 *
 * Output Parameters:
 *   returns "states", "w_hid", ... as messages and the command-line options
 *     spell it; "?" for another value
 */
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
 * crl_context_create - a context on a duplicate of comm.
 *
 * Collective over comm
 *
 * Input Parameters:
 *   comm - the communicator (MPI must be initialized)
 *
 * Output Parameters:
 *   ctx - the new context; NULL on failure
 *
 * Errors:
 *   CRL_ERR_INVALID - ctx NULL, MPI not initialized or comm MPI_COMM_NULL
 *   CRL_ERR_NOMEM - out of memory on some rank (every rank fails)
 *   CRL_ERR_MPI - an MPI call failed
 *
 * Notes:
 *   The duplicate has MPI_ERRORS_RETURN; the context holds the exact-sum
 *     reduction operators.
 */
CRL_API int crl_context_create(MPI_Comm comm, crl_context **ctx);

/*
 * crl_context_destroy - frees a context.
 *
 * Collective
 *
 * Input Parameters:
 *   ctx - the context, or NULL (a no-op)
 *
 * Output Parameters:
 *   *ctx - NULL
 *
 * Errors:
 *   CRL_ERR_MPI - freeing the communicator failed
 *
 * Notes:
 *   Destroy the losses bound to it first.
 */
CRL_API int crl_context_destroy(crl_context **ctx);

/*
 * crl_context_error - the message of the last failed call.
 *
 * Not Collective
 *
 * Input Parameters:
 *   ctx - the context
 *
 * Output Parameters:
 *   returns the message ("" after a success); it names the term, the rank and
 *     the offending index
 */
CRL_API const char *crl_context_error(const crl_context *ctx);

/*
 * crl_context_status - the status of the last call.
 *
 * Not Collective
 *
 * Input Parameters:
 *   ctx - the context
 *
 * Output Parameters:
 *   returns CRL_OK after a success; CRL_ERR_INVALID for NULL
 */
CRL_API int crl_context_status(const crl_context *ctx);

/*
 * crl_context_rank - this rank in the context's communicator.
 *
 * Not Collective
 *
 * Input Parameters:
 *   ctx - the context
 *
 * Output Parameters:
 *   returns the rank; -1 for NULL
 */
CRL_API int crl_context_rank(const crl_context *ctx);

/*
 * crl_context_size - the number of ranks of the context's communicator.
 *
 * Not Collective
 *
 * Input Parameters:
 *   ctx - the context
 *
 * Output Parameters:
 *   returns the size; 0 for NULL
 */
CRL_API int crl_context_size(const crl_context *ctx);

/*
 * crl_context_comm - the context's (duplicated) communicator.
 *
 * Not Collective
 *
 * Input Parameters:
 *   ctx - the context
 *
 * Output Parameters:
 *   returns the communicator; MPI_COMM_NULL for NULL
 */
CRL_API MPI_Comm crl_context_comm(const crl_context *ctx);

/*
 * crl_context_error_info - the record of the last call on this context, as
 *   facts.
 *
 * Not Collective
 *
 * Input Parameters:
 *   ctx - the context
 *
 * Output Parameters:
 *   info - code, rank, role, term, local b, t, i and message (see
 *          crl_error_info); code CRL_OK and fields -1 after a success
 *
 * Errors:
 *   CRL_ERR_INVALID - ctx or info NULL
 *
 * Notes:
 *   After a failed collective call the record is the same on every rank.
 */
CRL_API int crl_context_error_info(const crl_context *ctx, crl_error_info *info);

/*
 * crl_context_agree - makes one rank's local failure every rank's.
 *
 * Collective
 *
 * Input Parameters:
 *   ctx - the context
 *   local_code - this rank's status (CRL_OK when its part is fine)
 *   local_message - why, or NULL for the generic text
 *
 * Output Parameters:
 *   returns the same status on every rank
 *
 * Errors:
 *   the code of the lowest failing rank; CRL_ERR_MPI if an MPI call failed
 *
 * Notes:
 *   Front ends call it after their own local checks (a file, a dtype), so that
 *     no rank is left waiting in a later collective.
 *   The context's message becomes "rank R: local_message" of the lowest failing
 *     rank R (without the prefix, and rank -1 in the record, when every rank
 *     failed with the same message).
 *   One small MPI_Allreduce when every rank is fine.
 */
CRL_API int crl_context_agree(crl_context *ctx, int local_code, const char *local_message);

/* ------------------------------------------------------------------------ */
/* Losses                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * A loss is an ordered list of named terms (docs/losses.md "A loss: named, weighted terms").
 * Each term has a type (see crl_term_type_name), parameters and a weight
 * lambda; the total is sum_k lambda_k L_k.  One evaluation costs one
 * MPI_Allreduce whatever the number of terms.
 *
 * A term whose weight is 0 is not computed, its inputs may be absent, and it
 * reports 0 (likewise each lambda of an "rnn" term).
 */
typedef struct crl_loss crl_loss;

/*
 * crl_loss_create - an empty loss bound to a context.
 *
 * Not Collective
 *
 * Input Parameters:
 *   ctx - the context (it must outlive the loss)
 *
 * Output Parameters:
 *   loss - the new loss; NULL on failure
 *
 * Errors:
 *   CRL_ERR_INVALID - ctx or loss NULL
 *   CRL_ERR_NOMEM - out of memory
 */
CRL_API int crl_loss_create(crl_context *ctx, crl_loss **loss);

/*
 * crl_loss_destroy - frees a loss.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss, or NULL (a no-op)
 *
 * Output Parameters:
 *   *loss - NULL
 *
 * Errors:
 *   none (returns CRL_OK)
 */
CRL_API int crl_loss_destroy(crl_loss **loss);

/*
 * crl_loss_add - appends a term.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   name - unique within the loss: 1-63 letters, digits, '_' or '-' (values are
 *          reported as "name" and "name.part")
 *   type - a registered type (crl_term_type_name): "rnn", "fr", "fr_dist",
 *          "state_pred", "hebbian", "entropy", "population_kl", "mse",
 *          "rnn_conn", "cross_entropy"
 *   weight - lambda_k (finite)
 *   params - "key=value,key=value" (as in docs/losses.md, e.g. "metric=cv,correction=1"),
 *            or NULL / "" for the defaults
 *
 * Errors:
 *   CRL_ERR_INVALID - a bad name, type, weight or parameter, named in the
 *                     message
 *   CRL_ERR_NOMEM - out of memory
 *
 * Notes:
 *   Every rank must add the same terms; crl_loss_evaluate reports a collective
 *     error otherwise.
 */
CRL_API int crl_loss_add(crl_loss *loss, const char *name, const char *type,
                         double weight, const char *params);

/*
 * crl_loss_set - sets a numeric parameter of a term, whatever its kind.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   name - the term
 *   key - the parameter
 *   value - the value (for a choice, the index into its choices; a boolean 0 or
 *           1)
 *
 * Errors:
 *   CRL_ERR_INVALID - no such term or parameter, or a value out of its range
 *
 * Notes:
 *   crl_loss_set_real, _int, _bool and _choice check the kind as well; all of
 *     them, and the text of crl_loss_add, validate the same way.
 */
CRL_API int crl_loss_set(crl_loss *loss, const char *name, const char *key, double value);

/*
 * crl_loss_set_real - sets a real parameter of a term.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss, name, key - the loss, the term, the parameter (of kind
 *                     CRL_PARAM_REAL)
 *   value - finite, within the parameter's range
 *
 * Errors:
 *   CRL_ERR_INVALID - no such term or parameter, another kind, or a value out
 *                     of range
 */
CRL_API int crl_loss_set_real(crl_loss *loss, const char *name, const char *key, double value);

/*
 * crl_loss_set_int - sets an integer parameter of a term.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss, name, key - the loss, the term, the parameter (of kind CRL_PARAM_INT)
 *   value - within the parameter's range
 *
 * Errors:
 *   CRL_ERR_INVALID - no such term or parameter, another kind, or a value out
 *                     of range
 */
CRL_API int crl_loss_set_int(crl_loss *loss, const char *name, const char *key, int64_t value);

/*
 * crl_loss_set_bool - sets a boolean parameter of a term.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss, name, key - the loss, the term, the parameter (of kind
 *                     CRL_PARAM_BOOL)
 *   value - zero for false, anything else for true
 *
 * Errors:
 *   CRL_ERR_INVALID - no such term or parameter, or another kind
 */
CRL_API int crl_loss_set_bool(crl_loss *loss, const char *name, const char *key, int value);

/*
 * crl_loss_set_choice - sets a choice parameter of a term by name.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss, name, key - the loss, the term, the parameter (of kind
 *                     CRL_PARAM_CHOICE)
 *   choice - one of its choices (e.g. "cv")
 *
 * Errors:
 *   CRL_ERR_INVALID - no such term or parameter, another kind, or an unknown
 *                     choice (the message lists the choices)
 */
CRL_API int crl_loss_set_choice(crl_loss *loss, const char *name, const char *key,
                                const char *choice);

/*
 * crl_loss_set_weight - sets the weight lambda_k of a term.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   name - the term
 *   weight - finite
 *
 * Errors:
 *   CRL_ERR_INVALID - no such term, or a weight that is not finite
 *
 * Notes:
 *   Weight 0 switches the term off: not computed, its inputs may be absent.
 */
CRL_API int crl_loss_set_weight(crl_loss *loss, const char *name, double weight);

/* How the backward pass stores gradients (crl_loss_set_grad_mode). */
typedef enum crl_grad_mode {
    CRL_GRAD_ACCUMULATE = 0,  /* buffer += gradient (the default)            */
    CRL_GRAD_OVERWRITE = 1    /* buffer = gradient; the buffer is not read   */
} crl_grad_mode;

/*
 * crl_loss_set_grad_mode - how the backward pass stores gradients.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   mode - CRL_GRAD_ACCUMULATE (the default: buffer += gradient) or
 *          CRL_GRAD_OVERWRITE
 *
 * Errors:
 *   CRL_ERR_INVALID - another mode
 *
 * Notes:
 *   CRL_GRAD_OVERWRITE writes every given gradient buffer without reading it,
 *     so buffers need no zeroing; a given buffer whose gradient is identically
 *     zero (an input no active term reads) is written with zeros. The result is
 *     bitwise that of accumulating into zeroed buffers.
 *   Overwriting is per crl_loss_backward call: each call writes the batched
 *     buffers it is given (the chunks of a shard are distinct buffers); weight
 *     gradients are written by the first call of a cycle.
 *   Applies from the next crl_loss_backward (or crl_loss_evaluate) on.
 */
CRL_API int crl_loss_set_grad_mode(crl_loss *loss, crl_grad_mode mode);

/*
 * crl_loss_set_grad_scale - the backward pass stores scale * dL/dx.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   scale - finite (default 1)
 *
 * Errors:
 *   CRL_ERR_INVALID - scale not finite
 *
 * Notes:
 *   The product is formed as each element is stored (added or overwritten as
 *     the mode says), not in a further pass. scale = 1 gives bitwise the plain
 *     gradient. Every rank should use the same scale.
 */
CRL_API int crl_loss_set_grad_scale(crl_loss *loss, double scale);

/*
 * crl_loss_set_term_grad_scale - the backward pass weights one term's
 *   gradient by scale, besides crl_loss_set_grad_scale.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   name - the term's name
 *   scale - finite (default 1)
 *
 * Errors:
 *   CRL_ERR_INVALID - no term of that name, scale not finite, or a change
 *     between the chunks of one backward pass
 *
 * Notes:
 *   The gradient of sum_k scale_k lambda_k L_k instead of that of the total:
 *     what a front end needs when the terms' values were used apart (an
 *     autograd graph through one term's value only). Applies from the next
 *     crl_loss_backward (or crl_loss_evaluate) on, until changed; the values
 *     are not affected. With every scale 1 the backward pass is the plain
 *     one, bitwise; otherwise its first call forms the backward coefficients
 *     again from the reduced sums (no communication). Every rank should use
 *     the same scales, or the weight gradients differ between ranks.
 */
CRL_API int crl_loss_set_term_grad_scale(crl_loss *loss, const char *name, double scale);

/*
 * crl_loss_term_count - the number of terms.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *
 * Output Parameters:
 *   returns the count; 0 for NULL
 */
CRL_API int crl_loss_term_count(const crl_loss *loss);

/*
 * Time steps of a canonical unit: every partial sum formed in floating point
 * covers at most the rows of one batch element within one unit (global steps
 * u * CRL_TIME_UNIT .. (u + 1) * CRL_TIME_UNIT - 1), so that the bits of a
 * result do not depend on where a block of time steps starts or ends.
 */
#define CRL_TIME_UNIT 512

/*
 * A block of the (batch, time) plane of the batched inputs: the chunks a
 * rank passes hold local batch elements batch_offset .. batch_offset +
 * B_local - 1 of the global batch, and global time steps time_offset ..
 * time_offset + T_local - 1 of T (B_local and T_local are the arrays' batch
 * and time).
 */
typedef struct crl_block {
    int64_t batch;         /* global batch B >= 1                              */
    int64_t batch_offset;  /* global index of local element 0                  */
    int64_t time;          /* global time steps T >= 1                         */
    int64_t time_offset;   /* global step of local step 0                      */
} crl_block;

/*
 * crl_loss_set_block - where the chunks passed next lie in the global (batch,
 *   time) plane: time sharding.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   block - the block of the chunks of the following crl_loss_accumulate and
 *           crl_loss_backward calls (every batched input alike: states,
 *           states1, pred, label, mask), or NULL for whole batch elements
 *           (the default: every chunk holds all T steps of its elements)
 *
 * Errors:
 *   CRL_ERR_INVALID - loss NULL, B or T < 1, an offset < 0 (local)
 *
 * Notes:
 *   Collective in effect: in one evaluation every rank passes blocks, or none
 *     does, with the same B and T (a disagreement fails the reduction on
 *     every rank). The blocks of all ranks and chunks must tile the plane:
 *     each (element, step) in exactly one chunk of one rank; the reduction
 *     checks that they cover B T rows. A block starts at a multiple of
 *     CRL_TIME_UNIT and ends at one or at T (checked at accumulate).
 *   Set it before each chunk (accumulate) and again before the same chunk's
 *     backward. The results are bitwise those of any other decomposition of
 *     the same global input, whole elements included.
 */
CRL_API int crl_loss_set_block(crl_loss *loss, const crl_block *block);

/*
 * crl_loss_set_block_states1 - the block of states1 alone, when its plane
 *   (B1, T1: PopulationKL's second population) is decomposed apart from the
 *   other inputs'.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   block - the block of states1 in the following chunks, or NULL: states1
 *           follows crl_loss_set_block's block
 *
 * Errors:
 *   CRL_ERR_INVALID - as crl_loss_set_block
 *
 * Notes:
 *   Takes effect only with a block set by crl_loss_set_block (which may
 *     describe an empty chunk of the other inputs). The same rules: every
 *     rank the same B1 and T1, blocks tiling the plane, unit boundaries.
 */
CRL_API int crl_loss_set_block_states1(crl_loss *loss, const crl_block *block);

/*
 * crl_loss_evaluate - the loss of every rank's local inputs and, optionally,
 *   its gradients.
 *
 * Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   inputs - this rank's inputs by role
 *   grads - gradient buffers by role, or NULL for values only (a batched buffer
 *           is requested by its shape, a matrix by its data)
 *
 * Output Parameters:
 *   grads - the gradient of the total w.r.t. every input whose buffer is given,
 *           added (or stored, see crl_loss_set_grad_mode), times the scale
 *
 * Errors:
 *   CRL_ERR_INVALID, CRL_ERR_DOMAIN, CRL_ERR_NONFINITE, CRL_ERR_NOMEM,
 *     CRL_ERR_MPI - the same status and message on every rank; no output
 *     modified (crl_context_error_info names rank, role, term and local index)
 *   CRL_ERR_INVALID - gradients asked of a term that has none (population_kl
 *                     with reduction=none)
 *
 * Notes:
 *   Every rank must pass the same T, N, K, weight matrices, dtypes and weight-
 *     gradient requests; batch sizes may differ (0 included). Equivalent to
 *     crl_loss_accumulate, crl_loss_reduce, crl_loss_backward on the whole
 *     shard; one MPI_Allreduce.
 */
CRL_API int crl_loss_evaluate(crl_loss *loss, const crl_tensors *inputs,
                              const crl_tensors *grads);

/*
 * crl_loss_accumulate - the local sums of one chunk of this rank's shard (the
 *   first step of an evaluation in parts).
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   inputs - a chunk of batch elements (an empty shard passes one empty chunk)
 *   grads - the gradient requests, or NULL to decide them at backward
 *
 * Errors:
 *   a local status: an error is kept and reported collectively by
 *     crl_loss_reduce, so every rank must still call crl_loss_reduce
 *
 * Notes:
 *   crl_loss_evaluate is crl_loss_accumulate, crl_loss_reduce,
 *     crl_loss_backward. A rank may pass its shard in chunks: accumulate once
 *     per chunk, reduce once, backward once per chunk with the same chunks in
 *     the same order. Chunks may differ in batch size only: T, N, K, dtypes,
 *     weight matrices (same pointers) and gradient requests are those of the
 *     first chunk. The results are bitwise those of one evaluation of the whole
 *     shard, with one MPI_Allreduce.
 *   Gradients may be decided at backward time: accumulate with grads NULL,
 *     reduce, then backward with any gradient buffers of inputs the active
 *     terms read gives bitwise the announced result (finalize prepares the
 *     backward of every input read). The exception is a weight gradient that is
 *     a sum over all ranks (hebbian's w_hebb): it must be requested at
 *     accumulate, as it shapes the reduction; asked for only at backward it is
 *     CRL_ERR_INVALID.
 */
CRL_API int crl_loss_accumulate(crl_loss *loss, const crl_tensors *inputs,
                                const crl_tensors *grads);

/*
 * crl_loss_refuse - this rank cannot pass its inputs to this evaluation, and
 *   says why; in place of (or after) crl_loss_accumulate.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   code - the status to report (CRL_OK is taken as CRL_ERR_INVALID)
 *   message - why, e.g. "states: a tensor on device 'cuda:0'"; NULL for the
 *             generic text of code
 *
 * Output Parameters:
 *   returns code (CRL_ERR_INVALID for loss NULL)
 *
 * Notes:
 *   For front ends whose own checks of a rank's inputs fail (a dtype, a
 *     device, a layout they cannot describe): every rank must still call
 *     crl_loss_reduce, which then fails on every rank with this status and
 *     "rank R: message" of the lowest refusing rank (the message alone when
 *     every rank refused alike), in the same MPI_Allreduce as the sums: no
 *     extra communication. crl_context_error_info gives the code and rank.
 */
CRL_API int crl_loss_refuse(crl_loss *loss, int code, const char *message);

/*
 * crl_loss_reduce - one MPI_Allreduce of every rank's sums, then the values
 *   (finalize).
 *
 * Collective
 *
 * Input Parameters:
 *   loss - the loss, after crl_loss_accumulate
 *
 * Errors:
 *   the same status and message on every rank: an error any rank found in
 *     accumulate (the lowest failing rank's), a disagreement between ranks, or
 *     an error of finalize (CRL_ERR_DOMAIN ...)
 *
 * Notes:
 *   Values are available after a successful call; gradients after
 *     crl_loss_backward.
 */
CRL_API int crl_loss_reduce(crl_loss *loss);

/* The most losses one crl_loss_reduce_group reduces together. */
#define CRL_MAX_GROUP 64

/*
 * crl_loss_reduce_group - crl_loss_reduce of several losses in one
 *   MPI_Allreduce.
 *
 * Collective
 *
 * Input Parameters:
 *   losses - n losses on one context, each after crl_loss_accumulate (or
 *            crl_loss_refuse), in the same order on every rank
 *   n - 1 to CRL_MAX_GROUP
 *
 * Errors:
 *   the same status and message on every rank: the first failing loss's, in
 *     order (the losses after it are not reduced: evaluate them again);
 *     CRL_ERR_NOMEM for the packed copy
 *
 * Notes:
 *   Each loss ends as crl_loss_reduce would leave it, bitwise: the group only
 *     packs the losses' sums into one reduction. For terms that read different
 *     inputs in the same role (two firing-rate terms on two populations): one
 *     loss per set of inputs, one reduction for all.
 *   n = 1 is crl_loss_reduce. The packed copy is kept by losses[0]: once
 *     it has the size of the group's layouts, a group costs one
 *     MPI_Allreduce (a first call, or one after a layout grew, first agrees
 *     on the copy's memory with one more small one).
 */
CRL_API int crl_loss_reduce_group(crl_loss *const *losses, int n);

/*
 * crl_loss_backward - the gradients of one chunk, after crl_loss_reduce.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   inputs - the chunk, as passed to crl_loss_accumulate
 *   grads - its gradient buffers (the same requests in every backward call of a
 *           cycle)
 *
 * Output Parameters:
 *   grads - the gradients (added or stored, times the scale)
 *
 * Errors:
 *   CRL_ERR_INVALID - no successful crl_loss_reduce, chunks that differ from
 *                     the accumulated ones, a gradient that is not available
 *                     (see crl_loss_accumulate); a local status, nothing
 *                     written
 *
 * Notes:
 *   Weight gradients are written by the first call of a cycle.
 */
CRL_API int crl_loss_backward(crl_loss *loss, const crl_tensors *inputs,
                              const crl_tensors *grads);

/*
 * crl_loss_total - the total of the last successful evaluation.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *
 * Output Parameters:
 *   returns sum_k lambda_k L_k (0 before any evaluation)
 */
CRL_API double crl_loss_total(const crl_loss *loss);

/*
 * crl_loss_value_count - the number of values the last successful evaluation
 *   reported.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *
 * Output Parameters:
 *   returns the count
 *
 * Notes:
 *   In term order: for each term "name" = lambda_k L_k, then its parts. rnn:
 *     name.mse name.in name.hid name.out name.fr name.fr_sd name.fr_cv (each
 *     weighted by its own lambda and by lambda_k; they add up to "name").
 *     population_kl with reduction=none: "name" is a vector of N weighted per-
 *     neuron divergences (not in the total) and "name.reg" the weighted
 *     regularizer.
 */
CRL_API int64_t crl_loss_value_count(const crl_loss *loss);

/*
 * crl_loss_value_name - the name of a reported value.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   index - 0 .. crl_loss_value_count - 1
 *
 * Output Parameters:
 *   returns the name; NULL out of range
 */
CRL_API const char *crl_loss_value_name(const crl_loss *loss, int64_t index);

/*
 * crl_loss_value - the numbers of a reported value.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   index - 0 .. crl_loss_value_count - 1
 *
 * Output Parameters:
 *   length - the number of doubles (1 for a scalar); may be NULL
 *   returns a pointer valid until the next evaluation or destroy; NULL out of
 *     range
 */
CRL_API const double *crl_loss_value(const crl_loss *loss, int64_t index, int64_t *length);

/*
 * crl_loss_find - the scalar value called name.
 *
 * Not Collective
 *
 * Input Parameters:
 *   loss - the loss
 *   name - a reported name ("name" or "name.part")
 *
 * Output Parameters:
 *   value - the value (may be NULL)
 *
 * Errors:
 *   CRL_ERR_INVALID - no such value, or a vector; the message
 *                     (crl_context_error) says which
 */
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

/*
 * crl_term_type_count - the number of registered term types.
 *
 * Not Collective
 *
 * Output Parameters:
 *   returns the count
 */
CRL_API int crl_term_type_count(void);

/*
 * crl_term_type_name - the name of a term type.
 *
 * Not Collective
 *
 * Input Parameters:
 *   index - 0 .. crl_term_type_count - 1
 *
 * Output Parameters:
 *   returns the name (e.g. "fr_dist"); NULL out of range
 */
CRL_API const char *crl_term_type_name(int index);

/*
 * crl_term_type_summary - one line on a term type.
 *
 * Not Collective
 *
 * Input Parameters:
 *   index - 0 .. crl_term_type_count - 1
 *
 * Output Parameters:
 *   returns the summary; NULL out of range
 */
CRL_API const char *crl_term_type_summary(int index);

/* A term type as the catalogue describes it (crl_term_type_describe). */
typedef struct crl_term_type_info {
    const char *name;          /* the type, e.g. "fr_dist"                       */
    const char *summary;       /* one line                                       */
    const char *python_name;   /* the criterion's class, e.g. "FiringRateDistLoss" */
    const char *example;       /* a --term of the command-line tool              */
    unsigned inputs;           /* 1u << crl_role of every input it may read      */
    unsigned gradients;        /* those whose gradient it can give               */
    int n_params;              /* parameters 0 .. n_params - 1 (crl_term_type_param) */
} crl_term_type_info;

/*
 * crl_term_type_describe - everything the catalogue says of a term type.
 *
 * Not Collective
 *
 * Input Parameters:
 *   index - 0 .. crl_term_type_count - 1
 *
 * Output Parameters:
 *   info - name, summary, the criterion's Python class name, an example --term,
 *          the roles read and those with gradients, the number of parameters
 *          (crl_term_type_param)
 *
 * Errors:
 *   CRL_ERR_INVALID - index out of range or info NULL
 */
CRL_API int crl_term_type_describe(int index, crl_term_type_info *info);

/*
 * crl_term_type_param - a parameter of a term type.
 *
 * Not Collective
 *
 * Input Parameters:
 *   type - the type's name
 *   index - 0, 1, ...
 *
 * Output Parameters:
 *   returns its key, kind, default, range, choices and help; NULL past the end
 *     or for an unknown type
 */
CRL_API const crl_param_info *crl_term_type_param(const char *type, int index);

#ifdef __cplusplus
}
#endif

#endif /* CTRNNLOSS_H */
