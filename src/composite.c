/*
 * composite.c - a loss as named terms in order, evaluated with one reduction
 * for all of them (SPEC "MSE and CompositeLoss", "How a global loss is
 * computed").
 *
 * The packed buffer of one evaluation is
 *
 *   header  [0] ranks that failed  [1] ranks whose layout changed
 *           [2 + 2k], [3 + 2k]  byte k of the agreement digest c, and c^2
 *   payload batch counts of states, states1, pred;
 *           per population: sum_bt S_i (N), sum_bt S_i^2 (N);
 *           sum (pred - label)^2;  then each term's slots.
 *
 * Ranks agree on the payload layout once (the first evaluation, or when N,
 * the terms or the weight-gradient requests change); after that an evaluation
 * is exactly one MPI_Allreduce.  An evaluation is a cycle: accumulate (one or
 * more chunks of this rank's batch), reduce, backward (the same chunks).  The digest carries everything ranks must agree
 * on (T, N, K, dtypes, parameters, the weights' bits): all ranks hold the same
 * byte c iff P * sum c^2 == (sum c)^2.
 */
#include "internal.h"
#include "vecmath.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    HEADER_FAILED = 0,
    HEADER_RELAYOUT = 1,
    HEADER_DIGEST = 2,
    DIGEST_BYTES = 8,
    HEADER_SLOTS = HEADER_DIGEST + 2 * DIGEST_BYTES,
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
    double *tile, *tile2, *grad_tile;   /* rows x N, as doubles         */
    double *shift, *s1, *s2;            /* N: per-element moments       */
    double *pop_data[2];                /* mean, var, alpha, beta: 4 N  */
    double *dweight[4];
    int64_t tile_cap, n_cap, pop_cap[2], dweight_cap[4];
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
    crl_dd *buffer;
    int64_t buffer_cap;
    /* A rank whose local layout differs accumulates here (header + payload);
     * it becomes the buffer when the ranks adopt that layout. */
    crl_dd *pending;
    int64_t pending_cap;

    /* The current cycle. */
    int phase;
    crl_error err;             /* this rank's first error of the cycle      */
    crl_global g;
    unsigned uses;
    crl_tensors first, first_grads;  /* the first chunk: shapes, weights    */
    uint64_t digest;
    bool relayout;
    crl_dd *target;            /* buffer or pending, NULL after an error    */
    int64_t seen[3], done[3];  /* elements accumulated / back-propagated:
                                  states, states1, pred                     */
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

static bool term_active(const crl_term *t)
{
    return t->weight != 0.0;
}

/* Prefixes an error a term reported with the term's name and type, and
 * records the term's index. */
static int term_error(const crl_loss *loss, const crl_term *t, crl_error *err)
{
    char msg[CRL_MESSAGE_MAX];
    snprintf(msg, sizeof msg, "term '%s' (%s): %s", t->name, t->cls->type, err->message);
    memcpy(err->message, msg, sizeof msg);
    if (err->term < 0)
        err->term = t >= loss->terms && t < loss->terms + loss->n_terms ? (int) (t - loss->terms)
                                                                       : loss->n_terms;
    return err->code;
}

/* Names the role of an error a check of that role's input just recorded. */
static void blame_role(crl_error *err, int role)
{
    if (err->code != CRL_OK && err->role < 0)
        err->role = role;
}

static crl_store store_how(const crl_loss *loss)
{
    return (crl_store){loss->grad_scale, loss->grad_mode == CRL_GRAD_OVERWRITE};
}

static crl_term *find_term(const crl_loss *loss, const char *name)
{
    for (int k = 0; k < loss->n_terms; k++)
        if (strcmp(loss->terms[k].name, name) == 0)
            return &loss->terms[k];
    return NULL;
}

int crl_term_param_index(const crl_term_class *cls, const char *key)
{
    for (int k = 0; cls->params[k].key != NULL; k++)
        if (strcmp(cls->params[k].key, key) == 0)
            return k;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Building a loss                                                            */
/* ------------------------------------------------------------------------ */

int crl_loss_create(crl_context *ctx, crl_loss **out)
{
    if (out == NULL || ctx == NULL)
        return CRL_ERR_INVALID;
    crl_loss *loss = calloc(1, sizeof *loss);
    crl_dd *header = calloc(HEADER_SLOTS, sizeof *header);
    if (loss == NULL || header == NULL) {
        free(loss);
        free(header);
        *out = NULL;
        return crl_context_set(ctx, CRL_ERR_NOMEM, "out of memory creating a loss");
    }
    loss->ctx = ctx;
    loss->grad_scale = 1.0;
    loss->buffer = header;
    loss->buffer_cap = HEADER_SLOTS;
    *out = loss;
    return CRL_OK;
}

static void free_scratch(scratch *w)
{
    free(w->tile);
    free(w->tile2);
    free(w->grad_tile);
    free(w->shift);
    free(w->s1);
    free(w->s2);
    for (int p = 0; p < 2; p++)
        free(w->pop_data[p]);
    for (int k = 0; k < 4; k++)
        free(w->dweight[k]);
}

void crl_loss_destroy(crl_loss **loss)
{
    if (loss == NULL || *loss == NULL)
        return;
    crl_loss *l = *loss;
    for (int k = 0; k < l->n_terms; k++)
        if (l->terms[k].cls->destroy)
            l->terms[k].cls->destroy(&l->terms[k]);
    free(l->terms);
    free(l->layout);
    free(l->buffer);
    free(l->pending);
    free(l->agree);
    free(l->next_layout);
    free(l->outs);
    free_scratch(&l->work);
    free(l->values);
    free(l->value_data);
    free(l);
    *loss = NULL;
}

/* Applies "key=value,key=value" to t. */
static int apply_params(crl_term *t, const char *params, crl_error *err)
{
    if (params == NULL || *params == '\0')
        return CRL_OK;
    char *copy = strdup(params);
    if (copy == NULL)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory");
    int rc = CRL_OK;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item && rc == CRL_OK;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (eq == NULL || eq == item || eq[1] == '\0') {
            rc = crl_fail(err, CRL_ERR_INVALID, "'%s' is not key=value", item);
            break;
        }
        *eq = '\0';
        int k = crl_term_param_index(t->cls, item);
        if (k < 0) {
            char known[256] = "";
            for (int j = 0; t->cls->params[j].key; j++) {
                strncat(known, j ? ", " : "", sizeof known - strlen(known) - 1);
                strncat(known, t->cls->params[j].key, sizeof known - strlen(known) - 1);
            }
            rc = crl_fail(err, CRL_ERR_INVALID, "unknown parameter '%s' (known: %s)", item,
                          known[0] ? known : "none");
            break;
        }
        rc = crl_param_parse(&t->cls->params[k], eq + 1, &t->param[k], err);
    }
    free(copy);
    return rc;
}

int crl_loss_add(crl_loss *loss, const char *name, const char *type, double weight,
                 const char *params)
{
    if (loss == NULL)
        return CRL_ERR_INVALID;
    crl_context *ctx = loss->ctx;
    crl_error err = {0};
    if (name == NULL || !crl_term_name_valid(name)) {
        crl_fail(&err, CRL_ERR_INVALID,
                 "term name '%s' must be 1-63 letters, digits, '_' or '-'", name ? name : "(null)");
        return crl_context_set(ctx, err.code, err.message);
    }
    const crl_term_class *cls = type ? crl_term_class_find(type) : NULL;
    if (cls == NULL) {
        char known[256] = "";
        for (int k = 0; crl_term_classes[k]; k++) {
            strncat(known, k ? ", " : "", sizeof known - strlen(known) - 1);
            strncat(known, crl_term_classes[k]->type, sizeof known - strlen(known) - 1);
        }
        crl_fail(&err, CRL_ERR_INVALID, "term '%s': unknown type '%s' (one of: %s)", name,
                 type ? type : "(null)", known);
        return crl_context_set(ctx, err.code, err.message);
    }
    if (find_term(loss, name) != NULL) {
        crl_fail(&err, CRL_ERR_INVALID, "term '%s': the name is already used", name);
        return crl_context_set(ctx, err.code, err.message);
    }
    if (!isfinite(weight)) {
        crl_fail(&err, CRL_ERR_INVALID, "term '%s': weight %g is not finite", name, weight);
        return crl_context_set(ctx, err.code, err.message);
    }
    crl_term t = {.cls = cls, .weight = weight};
    snprintf(t.name, sizeof t.name, "%s", name);
    for (int k = 0; cls->params[k].key != NULL; k++)
        t.param[k] = cls->params[k].default_value;
    if (apply_params(&t, params, &err) != CRL_OK) {
        term_error(loss, &t, &err);
        return crl_context_set(ctx, err.code, err.message);
    }
    int64_t n = loss->n_terms + 1;
    crl_term *terms = realloc(loss->terms, sizeof t * (size_t) n);
    size_t layout_bytes = sizeof(int64_t) * (size_t) (REGION_TERMS + n + 1);
    int64_t *layout = realloc(loss->next_layout, layout_bytes);
    if (layout)
        loss->next_layout = layout;
    int64_t *agreed = realloc(loss->layout, layout_bytes);
    if (agreed)
        loss->layout = agreed;
    crl_term_out *outs = realloc(loss->outs, sizeof *outs * (size_t) n);
    if (terms)
        loss->terms = terms;
    if (outs)
        loss->outs = outs;
    if (!terms || !layout || !agreed || !outs)
        return crl_context_set(ctx, CRL_ERR_NOMEM, "out of memory adding a term");
    loss->terms[loss->n_terms++] = t;
    return crl_context_set(ctx, CRL_OK, NULL);
}

int crl_loss_set(crl_loss *loss, const char *name, const char *key, double value)
{
    if (loss == NULL)
        return CRL_ERR_INVALID;
    crl_error err = {0};
    crl_term *t = name ? find_term(loss, name) : NULL;
    if (t == NULL) {
        crl_fail(&err, CRL_ERR_INVALID, "no term named '%s'", name ? name : "(null)");
        return crl_context_set(loss->ctx, err.code, err.message);
    }
    int k = key ? crl_term_param_index(t->cls, key) : -1;
    if (k < 0)
        crl_fail(&err, CRL_ERR_INVALID, "unknown parameter '%s'", key ? key : "(null)");
    else if (crl_param_validate(&t->cls->params[k], value, &err) == CRL_OK)
        t->param[k] = value;
    if (err.code != CRL_OK)
        term_error(loss, t, &err);
    return crl_context_set_error(loss->ctx, &err);
}

int crl_loss_set_weight(crl_loss *loss, const char *name, double weight)
{
    if (loss == NULL)
        return CRL_ERR_INVALID;
    crl_term *t = name ? find_term(loss, name) : NULL;
    if (t == NULL || !isfinite(weight))
        return crl_context_set(loss->ctx, CRL_ERR_INVALID,
                               t ? "weight must be finite" : "no term with that name");
    t->weight = weight;
    return crl_context_set(loss->ctx, CRL_OK, NULL);
}

int crl_loss_set_grad_mode(crl_loss *loss, crl_grad_mode mode)
{
    if (loss == NULL)
        return CRL_ERR_INVALID;
    if (mode != CRL_GRAD_ACCUMULATE && mode != CRL_GRAD_OVERWRITE)
        return crl_context_set(loss->ctx, CRL_ERR_INVALID,
                               "gradient mode must be CRL_GRAD_ACCUMULATE or CRL_GRAD_OVERWRITE");
    loss->grad_mode = mode;
    return crl_context_set(loss->ctx, CRL_OK, NULL);
}

int crl_loss_set_grad_scale(crl_loss *loss, double scale)
{
    if (loss == NULL)
        return CRL_ERR_INVALID;
    if (!isfinite(scale))
        return crl_context_set(loss->ctx, CRL_ERR_INVALID, "gradient scale must be finite");
    loss->grad_scale = scale;
    return crl_context_set(loss->ctx, CRL_OK, NULL);
}

int crl_loss_term_count(const crl_loss *loss)
{
    return loss ? loss->n_terms : 0;
}

/* ------------------------------------------------------------------------ */
/* Agreement across ranks                                                     */
/* ------------------------------------------------------------------------ */

static bool agree_add(crl_loss *loss, int64_t value, const char *what, int term, int role,
                      bool real)
{
    int64_t cap = loss->cap_agree;
    if (!crl_reserve(&loss->agree, &cap, loss->n_agree + 1, sizeof *loss->agree))
        return false;
    loss->cap_agree = (int) cap;
    loss->agree[loss->n_agree++] = (agree_item){value, what, term, role, real};
    return true;
}

static int64_t real_bits(double x)
{
    int64_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t agree_digest(const crl_loss *loss)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (int k = 0; k < loss->n_agree; k++)
        h = mix64(h ^ mix64((uint64_t) loss->agree[k].value + (uint64_t) k));
    return h;
}

static int64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char) *s) * 1099511628211ULL;
    return (int64_t) h;
}

static void write_digest(crl_dd *header, uint64_t digest)
{
    for (int k = 0; k < DIGEST_BYTES; k++) {
        double c = (double) ((digest >> (8 * k)) & 0xff);
        header[HEADER_DIGEST + 2 * k] = crl_dd_make(c);
        header[HEADER_DIGEST + 2 * k + 1] = crl_dd_make(c * c);
    }
}

static bool digest_agrees(const crl_dd *header, int size)
{
    for (int k = 0; k < DIGEST_BYTES; k++) {
        uint64_t s1 = (uint64_t) crl_dd_round(header[HEADER_DIGEST + 2 * k]);
        uint64_t s2 = (uint64_t) crl_dd_round(header[HEADER_DIGEST + 2 * k + 1]);
        if ((uint64_t) size * s2 != s1 * s1)
            return false;
    }
    return true;
}

static void describe_item(const crl_loss *loss, int index, char *buf, size_t len)
{
    if (index >= loss->n_agree) {
        snprintf(buf, len, "the list of terms");
        return;
    }
    const agree_item *it = &loss->agree[index];
    if (it->term >= 0 && it->term < loss->n_terms)
        snprintf(buf, len, "term '%s' (%s): %s", loss->terms[it->term].name,
                 loss->terms[it->term].cls->type, it->what);
    else if (it->role >= 0)
        snprintf(buf, len, "%s: %s", crl_role_name(it->role), it->what);
    else
        snprintf(buf, len, "%s", it->what);
}

static void format_item(const crl_loss *loss, int index, int64_t v, char *buf, size_t len)
{
    double d;
    memcpy(&d, &v, sizeof d);
    if (index < loss->n_agree && loss->agree[index].real) {
        /* The shortest text that reads back as the same double. */
        for (int digits = 6; digits <= 17; digits++) {
            snprintf(buf, len, "%.*g", digits, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    }
    else
        snprintf(buf, len, "%lld", (long long) v);
}

/*
 * Collective, only after the digest showed a disagreement: finds the first
 * value that differs (one MPI_MAX of (-x, x) per value, as PETSc does) and
 * names it on every rank.
 */
static int diagnose_disagreement(crl_loss *loss)
{
    crl_context *ctx = loss->ctx;
    int64_t counts[2] = {-(int64_t) loss->n_agree, loss->n_agree}, c[2];
    if (MPI_Allreduce(counts, c, 2, MPI_INT64_T, MPI_MAX, ctx->comm) != MPI_SUCCESS)
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Allreduce of the agreement failed");
    int64_t n_min = -c[0], n_max = c[1];
    int64_t *pairs = malloc(sizeof *pairs * 2 * (size_t) (n_max > 0 ? n_max : 1));
    int ok = pairs != NULL, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, ctx->comm);
    if (!all_ok) {
        free(pairs);
        return crl_context_set(ctx, CRL_ERR_NOMEM, "out of memory diagnosing a disagreement");
    }
    for (int64_t k = 0; k < n_max; k++) {
        int64_t v = k < loss->n_agree ? loss->agree[k].value : 0;
        pairs[2 * k] = v == INT64_MIN ? INT64_MAX : -v;
        pairs[2 * k + 1] = v;
    }
    if (MPI_Allreduce(MPI_IN_PLACE, pairs, (int) (2 * n_max), MPI_INT64_T, MPI_MAX, ctx->comm)
        != MPI_SUCCESS) {
        free(pairs);
        return crl_context_set(ctx, CRL_ERR_MPI, "MPI_Allreduce of the agreement failed");
    }
    int64_t first = n_min;
    for (int64_t k = 0; k < n_min; k++)
        if (-pairs[2 * k] != pairs[2 * k + 1]) {
            first = k;
            break;
        }
    char what[256], lo[40], hi[40], msg[CRL_MESSAGE_MAX];
    if (first < n_min) {
        describe_item(loss, (int) first, what, sizeof what);
        format_item(loss, (int) first, -pairs[2 * first], lo, sizeof lo);
        format_item(loss, (int) first, pairs[2 * first + 1], hi, sizeof hi);
        snprintf(msg, sizeof msg, "ranks disagree on %s (from %s to %s)", what, lo, hi);
    } else if (n_min != n_max) {
        snprintf(msg, sizeof msg, "ranks disagree on the terms or the inputs used");
    } else {
        snprintf(msg, sizeof msg, "ranks disagree on the arguments");
    }
    free(pairs);
    /* Descriptions come from local term names: take rank 0's words. */
    MPI_Bcast(msg, (int) sizeof msg, MPI_CHAR, 0, ctx->comm);
    msg[sizeof msg - 1] = '\0';
    return crl_context_set(ctx, CRL_ERR_INVALID, msg);
}

/* ------------------------------------------------------------------------ */
/* Preparing an evaluation (local)                                            */
/* ------------------------------------------------------------------------ */

/* Checksum of a matrix's bits, its squared Frobenius norm, and the first
 * non-finite element (replicated weights must be identical on all ranks). */
static int scan_weight(const crl_matrix *m, int role, uint64_t *checksum, double *sumsq,
                       crl_error *err)
{
    uint64_t h1 = 0, h2 = 0;
    double s = 0;
    for (int64_t r = 0; r < m->rows; r++) {
        if (m->dtype == CRL_FLOAT32) {
            const float *row = (const float *) m->data + r * m->row_stride;
            for (int64_t c = 0; c < m->cols; c++) {
                uint32_t bits;
                memcpy(&bits, &row[c], sizeof bits);
                h1 += bits;
                h2 += h1;
                s += (double) row[c] * (double) row[c];
            }
        } else {
            const double *row = (const double *) m->data + r * m->row_stride;
            for (int64_t c = 0; c < m->cols; c++) {
                uint64_t bits;
                memcpy(&bits, &row[c], sizeof bits);
                h1 += bits;
                h2 += h1;
                s += row[c] * row[c];
            }
        }
    }
    if (!isfinite(s)) {
        for (int64_t r = 0; r < m->rows; r++)
            for (int64_t c = 0; c < m->cols; c++) {
                double v = crl_matrix_get(m, r, c);
                if (!isfinite(v))
                    return crl_fail_at(err, CRL_ERR_NONFINITE, role, -1, r, c,
                                       "%s[%lld, %lld] is %s", crl_role_name(role), (long long) r,
                                       (long long) c,
                                    isnan(v) ? "NaN" : "infinite");
            }
        return crl_fail_at(err, CRL_ERR_DOMAIN, role, -1, -1, -1,
                           "%s: the sum of squares overflows", crl_role_name(role));
    }
    *checksum = mix64(h1) ^ h2;
    *sumsq = s;
    return CRL_OK;
}

/* The used roles whose gradient the backward can write, given the requests
 * announced at accumulate: every active term reading a role must be able to
 * differentiate it (a term's grads hook; without one, all it reads). */
static unsigned differentiable(const crl_loss *loss, unsigned uses, unsigned announced)
{
    unsigned mask = uses;
    for (int k = 0; k < loss->n_terms; k++) {
        const crl_term *t = &loss->terms[k];
        if (term_active(t) && t->cls->grads)
            mask &= ~(t->cls->uses(t) & ~t->cls->grads(t, announced));
    }
    return mask;
}

/*
 * Local checks of the inputs the active terms use and of the gradient
 * requests; fills g's local fields, the terms' slot counts, the agreement
 * list and the layout.  Errors go to err (the caller still takes part in the
 * reduction).
 */
static int prepare(crl_loss *loss, const crl_tensors *in, const crl_tensors *grads,
                   crl_global *g, unsigned *uses_out, int64_t *layout, crl_error *err)
{
    loss->n_agree = 0;
    unsigned uses = 0;
    for (int k = 0; k < loss->n_terms; k++)
        if (term_active(&loss->terms[k]))
            uses |= loss->terms[k].cls->uses(&loss->terms[k]);
    *uses_out = uses;
    g->inputs = in;
    g->pop[0].array = &in->states;
    g->pop[1].array = &in->states1;

    bool ok = agree_add(loss, loss->n_terms, "number of terms", -1, -1, false)
              && agree_add(loss, uses, "inputs used", -1, -1, false);
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        bool used = uses & CRL_USES(role);
        if (role < CRL_FIRST_MATRIX_ROLE) {
            const crl_array *a = crl_tensors_array(in, role);
            const crl_array *d = crl_tensors_array(grads, role);
            bool want = crl_array_present(d); /* an empty shard asks with its shape */
            if (used) {
                if (!crl_array_present(a))
                    crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                                "%s: required input is missing", crl_role_name(role));
                else if (crl_array_check(a, crl_role_name(role), err) == CRL_OK && want)
                    crl_array_check_grad(d, a, crl_role_name(role), err);
                blame_role(err, role);
                ok = ok && agree_add(loss, a->dtype, "dtype", -1, role, false)
                     && agree_add(loss, a->time, "time steps", -1, role, false)
                     && agree_add(loss, a->width, "width", -1, role, false);
            }
            if (used && want)
                g->grad_announced |= CRL_USES(role);
        } else {
            const crl_matrix *m = crl_tensors_matrix(in, role);
            const crl_matrix *d = crl_tensors_matrix(grads, role);
            bool want = d->data != NULL;
            uint64_t checksum = 0;
            int slot = role - CRL_FIRST_MATRIX_ROLE;
            if (used && crl_matrix_check(m, crl_role_name(role), err) == CRL_OK) {
                if (want)
                    crl_matrix_check_grad(d, m, crl_role_name(role), err);
                if (err->code == CRL_OK)
                    scan_weight(m, role, &checksum, &g->weight_sumsq[slot], err);
            }
            if (used)
                blame_role(err, role);
            if (used)
                ok = ok && agree_add(loss, m->dtype, "dtype", -1, role, false)
                     && agree_add(loss, m->rows, "rows", -1, role, false)
                     && agree_add(loss, m->cols, "columns", -1, role, false)
                     && agree_add(loss, (int64_t) checksum, "values (replicated weights)", -1, role,
                                  false);
            if (used && want)
                g->grad_announced |= CRL_USES(role);
        }
    }
    g->grad_mask = differentiable(loss, uses, g->grad_announced);
    /* Weight gradients are global sums for some terms (hebbian): their
     * requests shape the packed buffer, so all ranks must make the same. */
    unsigned weight_grads = g->grad_announced & ~((1u << CRL_FIRST_MATRIX_ROLE) - 1);
    ok = ok && agree_add(loss, weight_grads, "weight gradient requests", -1, -1, false);
    if ((uses & CRL_USES(CRL_ROLE_PRED)) && (uses & CRL_USES(CRL_ROLE_LABEL))
        && err->code == CRL_OK
        && (in->pred.batch != in->label.batch || in->pred.time != in->label.time
            || in->pred.width != in->label.width))
        crl_fail(err, CRL_ERR_INVALID, "pred (%lld, %lld, %lld) and label (%lld, %lld, %lld) differ",
                 (long long) in->pred.batch, (long long) in->pred.time, (long long) in->pred.width,
                 (long long) in->label.batch, (long long) in->label.time,
                 (long long) in->label.width);

    /* Layout: regions, then each term's slots (terms size them from shapes). */
    int64_t at = 3;
    layout[REGION_COUNTS] = 0;
    for (int p = 0; p < 2; p++) {
        layout[REGION_POP0 + p] = at;
        if (uses & CRL_USES(p == 0 ? CRL_ROLE_STATES : CRL_ROLE_STATES1))
            at += 2 * (err->code == CRL_OK ? g->pop[p].array->width : 0);
    }
    layout[REGION_SQERR] = at;
    at += 1;
    for (int k = 0; k < loss->n_terms; k++) {
        crl_term *t = &loss->terms[k];
        t->slot = at;
        t->slot_count = 0;
        ok = ok && agree_add(loss, name_hash(t->cls->type), "type", k, -1, false)
             && agree_add(loss, name_hash(t->name), "name", k, -1, false)
             && agree_add(loss, real_bits(t->weight), "weight", k, -1, true);
        for (int j = 0; t->cls->params[j].key != NULL && ok; j++)
            ok = agree_add(loss, real_bits(t->param[j]), t->cls->params[j].key, k, -1, true);
        if (term_active(t) && err->code == CRL_OK && t->cls->prepare) {
            if (t->cls->prepare(t, g, &t->slot_count, err) != CRL_OK)
                term_error(loss, t, err);
        }
        layout[REGION_TERMS + k] = at;
        at += t->slot_count;
    }
    layout[REGION_TERMS + loss->n_terms] = at;
    if (!ok)
        crl_fail(err, CRL_ERR_NOMEM, "out of memory preparing the evaluation");
    return err->code;
}

/* ------------------------------------------------------------------------ */
/* Forward passes                                                             */
/* ------------------------------------------------------------------------ */

/* Rows per tile: about 64 KiB of doubles, at least what the terms ask for. */
static int64_t tile_rows(const crl_loss *loss, int64_t n, int64_t time)
{
    int64_t rows = 8192 / n;
    for (int k = 0; k < loss->n_terms; k++)
        if (term_active(&loss->terms[k]) && loss->terms[k].cls->tile_rows > rows)
            rows = loss->terms[k].cls->tile_rows;
    if (rows < 1)
        rows = 1;
    return rows < time ? rows : time;
}

/*
 * Per-element moments about shift c: s1 += x - c, s2 += (x - c)^2, row after
 * row.  Four rows per sweep over the neurons keep s1 and s2 in registers
 * four times longer; each s1[i] still adds its rows in time order, so the
 * bits are those of one row at a time.
 */
#define MOMENTS_KERNEL(name, type)                                                              \
    CRL_HOT static void name(const type *restrict x, int64_t ld, int64_t count, int64_t n,     \
                             const double *restrict c, double *restrict s1,                    \
                             double *restrict s2)                                              \
    {                                                                                          \
        int64_t r = 0;                                                                         \
        for (; r + 4 <= count; r += 4) {                                                       \
            const type *x0 = x + r * ld, *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;          \
            for (int64_t i = 0; i < n; i++) {                                                  \
                double d0 = (double) x0[i] - c[i], d1 = (double) x1[i] - c[i];                 \
                double d2 = (double) x2[i] - c[i], d3 = (double) x3[i] - c[i];                 \
                s1[i] = (((s1[i] + d0) + d1) + d2) + d3;                                       \
                s2[i] = (((s2[i] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3;                   \
            }                                                                                  \
        }                                                                                      \
        for (; r < count; r++)                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                  \
                double d = (double) x[r * ld + i] - c[i];                                      \
                s1[i] += d;                                                                    \
                s2[i] += d * d;                                                                \
            }                                                                                  \
    }
MOMENTS_KERNEL(moments_f64, double)
MOMENTS_KERNEL(moments_f32, float)

/* Adds one batch element's shifted moments to the global sums exactly:
 * sum S = T c + s1,  sum S^2 = s2 + 2 c s1 + T c^2. */
static void fold_moments(crl_dd *sum, crl_dd *sumsq, const double *c, const double *s1,
                         const double *s2, int64_t n, double time)
{
    for (int64_t i = 0; i < n; i++) {
        crl_dd a = crl_dd_add(crl_two_prod(time, c[i]), crl_dd_make(s1[i]));
        sum[i] = crl_dd_add(sum[i], a);
        crl_dd q = crl_dd_mul_d(crl_two_prod(c[i], c[i]), time);
        q = crl_dd_add(q, crl_two_prod(2.0 * c[i], s1[i]));
        q = crl_dd_add(q, crl_dd_make(s2[i]));
        sumsq[i] = crl_dd_add(sumsq[i], q);
    }
}

/* Grows each of the k buffers to want doubles; they share one capacity. */
static bool reserve_all(double **buffers[], int k, int64_t *cap, int64_t want)
{
    for (int j = 0; j < k; j++) {
        int64_t c = *cap;
        if (!crl_reserve(buffers[j], &c, want, sizeof(double)))
            return false;
        if (j == k - 1)
            *cap = c;
    }
    return true;
}

static bool scratch_rows(scratch *w, int64_t rows, int64_t n)
{
    double **tiles[] = {&w->tile, &w->tile2, &w->grad_tile};
    double **vectors[] = {&w->shift, &w->s1, &w->s2};
    return reserve_all(tiles, 3, &w->tile_cap, rows * n)
           && reserve_all(vectors, 3, &w->n_cap, n);
}

static int report_nonfinite(const crl_array *a, int role, int64_t b, crl_error *err)
{
    const char *what = crl_role_name(role);
    int64_t t, i;
    if (crl_array_find_nonfinite(a, b, &t, &i)) {
        const void *row = crl_array_row(a, b, t);
        double v = a->dtype == CRL_FLOAT32 ? ((const float *) row)[i] : ((const double *) row)[i];
        return crl_fail_at(err, CRL_ERR_NONFINITE, role, b, t, i, "%s[b=%lld, t=%lld, i=%lld] is %s", what,
                        (long long) b, (long long) t, (long long) i,
                        isnan(v) ? "NaN" : "infinite");
    }
    return CRL_OK;
}

/* Asks for the cache lines of rows t0 .. t0 + count - 1 of element b ahead
 * of use: the tile passes touch memory in bursts between passes in cache,
 * which the hardware prefetchers alone do not overlap. */
static void prefetch_rows(const crl_array *a, int64_t b, int64_t t0, int64_t count, bool write)
{
    size_t bytes = (size_t) a->width * crl_dtype_size(a->dtype);
    for (int64_t t = t0; t < t0 + count && t < a->time; t++) {
        const char *row = crl_array_row(a, b, t);
        for (size_t k = 0; k < bytes; k += 64) {
            if (write)
                __builtin_prefetch(row + k, 1, 3);
            else
                __builtin_prefetch(row + k, 0, 3);
        }
    }
}

static bool term_uses_pop(const crl_term *t, int p)
{
    int role = p == 0 ? CRL_ROLE_STATES : CRL_ROLE_STATES1;
    return term_active(t) && (t->cls->uses(t) & CRL_USES(role));
}

/* Whether some term reading population p has row hooks, and whether one of
 * them needs the rows as doubles. */
static void row_hook_needs(const crl_loss *loss, int p, bool backward, bool *hooks,
                           bool *doubles)
{
    *hooks = *doubles = false;
    for (int k = 0; k < loss->n_terms; k++) {
        const crl_term_class *cls = loss->terms[k].cls;
        bool has = backward ? cls->backward_rows != NULL : cls->forward_rows != NULL;
        if (term_uses_pop(&loss->terms[k], p) && has) {
            *hooks = true;
            *doubles |= !cls->raw_rows;
        }
    }
}

static int pop_role(int p)
{
    return p == 0 ? CRL_ROLE_STATES : CRL_ROLE_STATES1;
}

/* One pass over this chunk of population p: the shared moments of every
 * batch element, and the row and element hooks of the terms reading it, on
 * the same rows while they are in cache. */
static int states_forward(crl_loss *loss, crl_global *g, int p, crl_dd *payload, crl_error *err)
{
    const crl_array *a = g->pop[p].array;
    const char *what = crl_role_name(pop_role(p));
    scratch *w = &loss->work;
    int64_t n = a->width, time = a->time, rows = tile_rows(loss, n, time);
    crl_dd *sum = payload + loss->next_layout[REGION_POP0 + p], *sumsq = sum + n;
    bool row_hooks, doubles;
    row_hook_needs(loss, p, false, &row_hooks, &doubles);
    doubles |= a->dtype == CRL_FLOAT64; /* in place: free */

    for (int64_t b = 0; b < a->batch; b++) {
        int64_t ld, element = loss->seen[p] + b;
        const double *c = crl_rows_load(a, b, 0, 1, w->shift, &ld);
        memset(w->s1, 0, sizeof(double) * (size_t) n);
        memset(w->s2, 0, sizeof(double) * (size_t) n);
        for (int64_t t0 = 0; t0 < time; t0 += rows) {
            int64_t count = time - t0 < rows ? time - t0 : rows;
            const double *x = NULL;
            ld = 0;
            if (row_hooks)
                prefetch_rows(a, b, t0 + rows, rows, false);
            if (doubles) {
                x = crl_rows_load(a, b, t0, count, w->tile, &ld);
                moments_f64(x, ld, count, n, c, w->s1, w->s2);
            } else {
                moments_f32(crl_array_row(a, b, t0), a->time_stride, count, n, c, w->s1, w->s2);
            }
            crl_rows view = {p, a, b, element, t0, count, n, x, ld};
            for (int k = 0; k < loss->n_terms && row_hooks; k++) {
                crl_term *t = &loss->terms[k];
                if (term_uses_pop(t, p) && t->cls->forward_rows
                    && t->cls->forward_rows(t, &view, payload + t->slot, err) != CRL_OK)
                    return term_error(loss, t, err);
            }
        }
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(w->s1[i]) || !isfinite(w->s2[i])) {
                if (report_nonfinite(a, pop_role(p), b, err) == CRL_OK)
                    crl_fail_at(err, CRL_ERR_DOMAIN, pop_role(p), b, -1, -1,
                                "%s[b=%lld]: sum of squares overflows", what,
                             (long long) b);
                return err->code;
            }
        fold_moments(sum, sumsq, c, w->s1, w->s2, n, (double) time);
        crl_rows whole = {p, a, b, element, 0, time, n, NULL, 0};
        for (int k = 0; k < loss->n_terms; k++) {
            crl_term *t = &loss->terms[k];
            if (term_uses_pop(t, p) && t->cls->forward_element
                && t->cls->forward_element(t, &whole, payload + t->slot, err) != CRL_OK)
                return term_error(loss, t, err);
        }
    }
    return CRL_OK;
}

/* One pass over pred and label: sum (pred - label)^2, per batch element in a
 * fixed order, then into the double-double slot. */
static int outputs_forward(crl_loss *loss, const crl_tensors *in, crl_dd *payload,
                           crl_error *err)
{
    const crl_array *x = &in->pred, *y = &in->label;
    scratch *w = &loss->work;
    int64_t k = x->width, time = x->time, rows = tile_rows(loss, k, time);
    crl_dd *slot = payload + loss->next_layout[REGION_SQERR];
    for (int64_t b = 0; b < x->batch; b++) {
        memset(w->s1, 0, sizeof(double) * (size_t) k);
        for (int64_t t0 = 0; t0 < time; t0 += rows) {
            int64_t count = time - t0 < rows ? time - t0 : rows, ldx, ldy;
            const double *xr = crl_rows_load(x, b, t0, count, w->tile, &ldx);
            const double *yr = crl_rows_load(y, b, t0, count, w->tile2, &ldy);
            crl_sq_diff_rows(xr, ldx, yr, ldy, count, k, w->s1);
        }
        double s = crl_sum_fixed(w->s1, k);
        if (!isfinite(s)) {
            if (report_nonfinite(x, CRL_ROLE_PRED, b, err) == CRL_OK
                && report_nonfinite(y, CRL_ROLE_LABEL, b, err) == CRL_OK)
                crl_fail_at(err, CRL_ERR_DOMAIN, CRL_ROLE_PRED, b, -1, -1,
                            "pred - label [b=%lld]: sum of squares overflows",
                         (long long) b);
            return err->code;
        }
        *slot = crl_dd_add(*slot, crl_dd_make(s));
    }
    return CRL_OK;
}

/* Accumulates one chunk into payload (laid out by next_layout). */
static int forward(crl_loss *loss, const crl_tensors *in, crl_dd *payload, crl_error *err)
{
    crl_global *g = &loss->g;
    unsigned uses = loss->uses;
    int64_t batch[3] = {
        uses & CRL_USES(CRL_ROLE_STATES) ? in->states.batch : 0,
        uses & CRL_USES(CRL_ROLE_STATES1) ? in->states1.batch : 0,
        uses & CRL_USES(CRL_ROLE_PRED) ? in->pred.batch : 0,
    };
    g->inputs = in;
    g->pop[0].array = &in->states;
    g->pop[1].array = &in->states1;
    for (int p = 0; p < 2 && err->code == CRL_OK; p++)
        if (uses & CRL_USES(pop_role(p)))
            states_forward(loss, g, p, payload, err);
    if (err->code == CRL_OK && (uses & CRL_USES(CRL_ROLE_PRED)))
        outputs_forward(loss, in, payload, err);
    for (int k = 0; k < 3; k++) {
        payload[REGION_COUNTS + k] =
            crl_dd_add(payload[REGION_COUNTS + k], crl_dd_make((double) batch[k]));
        loss->seen[k] += batch[k];
    }
    return err->code;
}

/* A later chunk must have the first chunk's shapes, types, weights and
 * gradient requests; only batch sizes may differ. */
static int check_chunk(const crl_loss *loss, const crl_tensors *in, const crl_tensors *grads,
                       unsigned want_mask, crl_error *err)
{
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        if (!(loss->uses & CRL_USES(role)))
            continue;
        const char *what = crl_role_name(role);
        if (role < CRL_FIRST_MATRIX_ROLE) {
            const crl_array *a = crl_tensors_array(in, role), *f = crl_tensors_array(&loss->first, role);
            const crl_array *d = crl_tensors_array(grads, role);
            bool want = want_mask & CRL_USES(role);
            if (a->dtype != f->dtype || a->time != f->time || a->width != f->width)
                return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                                "%s: chunk has dtype %d, time %lld, width %lld; the first chunk "
                                "had %d, %lld, %lld",
                                what, (int) a->dtype, (long long) a->time, (long long) a->width,
                                (int) f->dtype, (long long) f->time, (long long) f->width);
            if (crl_array_check(a, what, err) != CRL_OK) {
                blame_role(err, role);
                return err->code;
            }
            if (want != crl_array_present(d))
                return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                                "gradient of %s: requested in some chunks but not others", what);
            if (want && crl_array_check_grad(d, a, what, err) != CRL_OK) {
                blame_role(err, role);
                return err->code;
            }
        } else {
            const crl_matrix *m = crl_tensors_matrix(in, role), *f = crl_tensors_matrix(&loss->first, role);
            /* Field by field: memcmp would compare the padding after dtype. */
            if (m->dtype != f->dtype || m->data != f->data || m->rows != f->rows
                || m->cols != f->cols || m->row_stride != f->row_stride)
                return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                                   "%s: changed between chunks", what);
        }
    }
    return CRL_OK;
}

/* ------------------------------------------------------------------------ */
/* Memory for one evaluation, taken before the reduction                     */
/* ------------------------------------------------------------------------ */

static int reserve_work(crl_loss *loss, crl_global *g, unsigned uses, crl_error *err)
{
    scratch *w = &loss->work;
    const crl_tensors *in = g->inputs;
    bool ok = true;
    for (int p = 0; p < 2 && ok; p++) {
        if (!(uses & CRL_USES(pop_role(p))))
            continue;
        int64_t n = g->pop[p].array->width;
        ok = scratch_rows(w, tile_rows(loss, n, g->pop[p].array->time), n)
             && crl_reserve(&w->pop_data[p], &w->pop_cap[p], 4 * n, sizeof(double));
        if (ok) {
            g->pop[p].mean = w->pop_data[p];
            g->pop[p].var = w->pop_data[p] + n;
            g->pop[p].alpha = w->pop_data[p] + 2 * n;
            g->pop[p].beta = w->pop_data[p] + 3 * n;
        }
    }
    if (ok && (uses & CRL_USES(CRL_ROLE_PRED)))
        ok = scratch_rows(w, tile_rows(loss, in->pred.width, in->pred.time), in->pred.width);
    for (int role = CRL_FIRST_MATRIX_ROLE; role < CRL_ROLE_COUNT && ok; role++) {
        int s = role - CRL_FIRST_MATRIX_ROLE;
        const crl_matrix *m = crl_tensors_matrix(in, role);
        if (g->grad_mask & CRL_USES(role)) {
            ok = crl_reserve(&w->dweight[s], &w->dweight_cap[s], m->rows * m->cols, sizeof(double));
            g->dweight[s] = w->dweight[s];
        }
    }
    /* Room for the reported values: each term's value (a vector of at most
     * N), and its parts. */
    int64_t n_max = 1 + (uses & CRL_USES(CRL_ROLE_STATES) ? in->states.width : 0);
    int64_t entries = (int64_t) loss->n_terms * (1 + CRL_MAX_PARTS);
    ok = ok && crl_reserve(&loss->values, &loss->cap_values, entries, sizeof *loss->values)
         && crl_reserve(&loss->value_data, &loss->value_data_cap,
                    (int64_t) loss->n_terms * (n_max + CRL_MAX_PARTS), sizeof(double));
    if (!ok)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory for the evaluation's work space");
    return CRL_OK;
}

/* ------------------------------------------------------------------------ */
/* Finalize                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Means and variances from the reduced sums.  The double-double sums carry
 * an error of about (additions) 2^-104 sum S^2 (a constant c gives n c^2,
 * which no double-double holds exactly), so a variance below that floor, 16
 * times over, is a constant neuron and is 0: population_kl's zero-variance
 * check must not depend on the value of the constant.
 */
static int finalize_population(crl_population *pop, const crl_dd *sum, const crl_dd *sumsq,
                               double batch, int ranks, int role, crl_error *err)
{
    const char *what = crl_role_name(role);
    const crl_array *a = pop->array;
    pop->batch = (int64_t) batch;
    pop->time = a->time;
    pop->n = a->width;
    pop->count = batch * (double) a->time;
    if (pop->batch == 0)
        return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                           "%s: no rank holds a batch element", what);
    crl_dd total = crl_dd_make(0.0);
    for (int64_t i = 0; i < pop->n; i++) {
        pop->mean[i] = crl_dd_round(crl_dd_div_d(sum[i], pop->count));
        crl_dd centered = crl_dd_sub(sumsq[i], crl_dd_div_d(crl_dd_mul(sum[i], sum[i]), pop->count));
        double v = crl_dd_round(crl_dd_div_d(centered, pop->count));
        double floor = (batch + ranks + 8) * 0x1p-100 * crl_dd_round(sumsq[i]) / pop->count;
        pop->var[i] = v > floor ? v : 0.0;
        total = crl_dd_add(total, sumsq[i]);
    }
    pop->sumsq = crl_dd_round(total);
    if (!isfinite(pop->sumsq))
        return crl_fail_at(err, CRL_ERR_DOMAIN, role, -1, -1, -1, "%s: the sum of squares overflows",
                           what);
    memset(pop->alpha, 0, sizeof(double) * (size_t) pop->n);
    memset(pop->beta, 0, sizeof(double) * (size_t) pop->n);
    pop->affine = false;
    return CRL_OK;
}

static int finalize(crl_loss *loss, crl_global *g, unsigned uses, const crl_dd *payload,
                    crl_term_out *outs, crl_error *err)
{
    for (int p = 0; p < 2; p++) {
        const crl_dd *sum = payload + loss->layout[REGION_POP0 + p];
        if ((uses & CRL_USES(pop_role(p)))
            && finalize_population(&g->pop[p], sum, sum + g->pop[p].array->width,
                                   crl_dd_round(payload[REGION_COUNTS + p]), loss->ctx->size,
                                   pop_role(p), err) != CRL_OK)
            return err->code;
    }
    if (uses & CRL_USES(CRL_ROLE_PRED)) {
        const crl_array *x = &g->inputs->pred;
        g->out_batch = (int64_t) crl_dd_round(payload[REGION_COUNTS + 2]);
        g->out_time = x->time;
        g->out_width = x->width;
        g->out_count = (double) g->out_batch * (double) x->time * (double) x->width;
        g->sqerr = crl_dd_round(payload[loss->layout[REGION_SQERR]]);
        g->out_coef = 0;
        if (g->out_batch == 0)
            return crl_fail_at(err, CRL_ERR_INVALID, CRL_ROLE_PRED, -1, -1, -1,
                               "pred: no rank holds a batch element");
    }
    for (int s = 0; s < 4; s++)
        if (g->dweight[s]) {
            const crl_matrix *m = crl_tensors_matrix(g->inputs, CRL_FIRST_MATRIX_ROLE + s);
            memset(g->dweight[s], 0, sizeof(double) * (size_t) (m->rows * m->cols));
        }
    for (int k = 0; k < loss->n_terms; k++) {
        crl_term *t = &loss->terms[k];
        outs[k] = (crl_term_out){0};
        if (term_active(t) && t->cls->finalize(t, g, payload + t->slot, &outs[k], err) != CRL_OK)
            return term_error(loss, t, err);
    }
    return CRL_OK;
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                   */
/* ------------------------------------------------------------------------ */

/* grad = alpha_i + beta_i * (x - mean_i): the gradient of every term that
 * depends on S through per-neuron sums (SPEC: dL/dS = g_i / (B T) and the
 * variance and sum-of-squares terms), from double or raw float32 rows. */
#define AFFINE_ROWS_KERNEL(name, type)                                                          \
    CRL_HOT static void name(const type *restrict x, int64_t ld, int64_t count, int64_t n,     \
                             const double *restrict mean, const double *restrict alpha,        \
                             const double *restrict beta, double *restrict grad)               \
    {                                                                                          \
        for (int64_t r = 0; r < count; r++)                                                    \
            for (int64_t i = 0; i < n; i++)                                                    \
                grad[r * n + i] = alpha[i] + beta[i] * ((double) x[r * ld + i] - mean[i]);     \
    }
AFFINE_ROWS_KERNEL(affine_rows, double)
AFFINE_ROWS_KERNEL(affine_rows_f32, float)

/* The affine gradient added straight into the output, one pass over each
 * row: the same operations, in the same order, as affine_rows followed by
 * crl_rows_store_add, so the same bits. */
#define AFFINE_ADD_KERNEL(name, type)                                                           \
    CRL_HOT static void name(const type *restrict x, int64_t ldx, type *restrict out,          \
                             int64_t ldo, int64_t count, int64_t n,                            \
                             const double *restrict mean, const double *restrict alpha,        \
                             const double *restrict beta, crl_store how)                       \
    {                                                                                          \
        double scale = how.scale;                                                              \
        if (how.overwrite)                                                                     \
            for (int64_t r = 0; r < count; r++)                                                \
                for (int64_t i = 0; i < n; i++) {                                              \
                    double g = alpha[i] + beta[i] * ((double) x[r * ldx + i] - mean[i]);       \
                    out[r * ldo + i] = (type) (0.0 + scale * g);                               \
                }                                                                              \
        else                                                                                   \
            for (int64_t r = 0; r < count; r++)                                                \
                for (int64_t i = 0; i < n; i++) {                                              \
                    double g = alpha[i] + beta[i] * ((double) x[r * ldx + i] - mean[i]);       \
                    out[r * ldo + i] = (type) ((double) out[r * ldo + i] + scale * g);         \
                }                                                                              \
    }
AFFINE_ADD_KERNEL(affine_add_f32, float)
AFFINE_ADD_KERNEL(affine_add_f64, double)

static void states_backward(crl_loss *loss, const crl_global *g, int p, const crl_array *out)
{
    const crl_population *pop = &g->pop[p];
    const crl_array *a = pop->array;
    scratch *w = &loss->work;
    bool hooks, doubles;
    row_hook_needs(loss, p, true, &hooks, &doubles);
    doubles |= a->dtype == CRL_FLOAT64; /* in place: free */
    crl_store how = store_how(loss);
    if (!pop->affine && !hooks) {
        if (how.overwrite)
            crl_array_zero(out);
        return;
    }
    int64_t n = a->width, time = a->time, rows = tile_rows(loss, n, time);
    if (!hooks) {
        for (int64_t b = 0; b < a->batch; b++) {
            const void *x = crl_array_row(a, b, 0);
            void *o = (void *) crl_array_row(out, b, 0);
            if (a->dtype == CRL_FLOAT32)
                affine_add_f32(x, a->time_stride, o, out->time_stride, time, n, pop->mean,
                               pop->alpha, pop->beta, how);
            else
                affine_add_f64(x, a->time_stride, o, out->time_stride, time, n, pop->mean,
                               pop->alpha, pop->beta, how);
        }
        return;
    }
    for (int64_t b = 0; b < a->batch; b++)
        for (int64_t t0 = 0; t0 < time; t0 += rows) {
            int64_t count = time - t0 < rows ? time - t0 : rows, ld;
            prefetch_rows(a, b, t0 + rows, rows, false);
            prefetch_rows(out, b, t0 + rows, rows, true);
            const double *x = doubles ? crl_rows_load(a, b, t0, count, w->tile, &ld) : NULL;
            if (!doubles)
                ld = 0;
            if (pop->affine && x)
                affine_rows(x, ld, count, n, pop->mean, pop->alpha, pop->beta, w->grad_tile);
            else if (pop->affine)
                affine_rows_f32(crl_array_row(a, b, t0), a->time_stride, count, n, pop->mean,
                                pop->alpha, pop->beta, w->grad_tile);
            else
                memset(w->grad_tile, 0, sizeof(double) * (size_t) (count * n));
            crl_rows view = {p, a, b, loss->done[p] + b, t0, count, n, x, ld};
            for (int k = 0; k < loss->n_terms; k++) {
                const crl_term *t = &loss->terms[k];
                if (term_uses_pop(t, p) && t->cls->backward_rows)
                    t->cls->backward_rows(t, g, &view, w->grad_tile);
            }
            crl_rows_store(out, b, t0, count, w->grad_tile, n, how);
        }
}

CRL_HOT static void scaled_diff_rows(const double *restrict x, int64_t ldx,
                                     const double *restrict y, int64_t ldy, int64_t count,
                                     int64_t k, double c, double *restrict out)
{
    for (int64_t r = 0; r < count; r++)
        for (int64_t j = 0; j < k; j++)
            out[r * k + j] = c * (x[r * ldx + j] - y[r * ldy + j]);
}

static void outputs_backward(crl_loss *loss, const crl_global *g, const crl_tensors *grads,
                             unsigned want)
{
    const crl_array *x = &g->inputs->pred, *y = &g->inputs->label;
    bool want_pred = want & CRL_USES(CRL_ROLE_PRED);
    bool want_label = want & CRL_USES(CRL_ROLE_LABEL);
    crl_store how = store_how(loss);
    if (g->out_coef == 0.0 && how.overwrite) {
        if (want_pred)
            crl_array_zero(&grads->pred);
        if (want_label)
            crl_array_zero(&grads->label);
    }
    if (g->out_coef == 0.0 || !(want_pred || want_label))
        return;
    scratch *w = &loss->work;
    int64_t k = x->width, time = x->time, rows = tile_rows(loss, k, time);
    double *d = w->grad_tile;
    for (int64_t b = 0; b < x->batch; b++)
        for (int64_t t0 = 0; t0 < time; t0 += rows) {
            int64_t count = time - t0 < rows ? time - t0 : rows, ldx, ldy;
            const double *xr = crl_rows_load(x, b, t0, count, w->tile, &ldx);
            const double *yr = crl_rows_load(y, b, t0, count, w->tile2, &ldy);
            scaled_diff_rows(xr, ldx, yr, ldy, count, k, g->out_coef, d);
            if (want_pred)
                crl_rows_store(&grads->pred, b, t0, count, d, k, how);
            if (want_label) {
                for (int64_t e = 0; e < count * k; e++)
                    d[e] = -d[e];
                crl_rows_store(&grads->label, b, t0, count, d, k, how);
            }
        }
}

/* ------------------------------------------------------------------------ */
/* Results                                                                    */
/* ------------------------------------------------------------------------ */

static void push_value(crl_loss *loss, const char *name, const char *part, const double *v,
                       int64_t length, double weight)
{
    value_entry *e = &loss->values[loss->n_values++];
    if (part)
        snprintf(e->name, sizeof e->name, "%s.%s", name, part);
    else
        snprintf(e->name, sizeof e->name, "%s", name);
    e->offset = loss->value_data_len;
    e->length = length;
    for (int64_t i = 0; i < length; i++)
        loss->value_data[loss->value_data_len++] = weight * v[i];
}

static void store_results(crl_loss *loss, const crl_term_out *outs)
{
    loss->n_values = 0;
    loss->value_data_len = 0;
    double total = 0;
    for (int k = 0; k < loss->n_terms; k++) {
        const crl_term *t = &loss->terms[k];
        const crl_term_out *o = &outs[k];
        double weight = t->weight;
        if (o->vector != NULL) {
            push_value(loss, t->name, NULL, o->vector, o->vector_length, weight);
        } else {
            push_value(loss, t->name, NULL, &o->value, 1, weight);
            total += weight * o->value;
        }
        if (t->cls->parts && (!t->cls->has_parts || t->cls->has_parts(t)))
            for (int j = 0; t->cls->parts[j]; j++)
                push_value(loss, t->name, t->cls->parts[j], &o->part[j], 1, weight);
    }
    loss->total = total;
}

double crl_loss_total(const crl_loss *loss)
{
    return loss ? loss->total : 0.0;
}

int64_t crl_loss_value_count(const crl_loss *loss)
{
    return loss ? loss->n_values : 0;
}

const char *crl_loss_value_name(const crl_loss *loss, int64_t index)
{
    if (loss == NULL || index < 0 || index >= loss->n_values)
        return NULL;
    return loss->values[index].name;
}

const double *crl_loss_value(const crl_loss *loss, int64_t index, int64_t *length)
{
    if (loss == NULL || index < 0 || index >= loss->n_values)
        return NULL;
    if (length)
        *length = loss->values[index].length;
    return loss->value_data + loss->values[index].offset;
}

int crl_loss_find(const crl_loss *loss, const char *name, double *value)
{
    if (loss == NULL || name == NULL)
        return CRL_ERR_INVALID;
    for (int64_t k = 0; k < loss->n_values; k++)
        if (strcmp(loss->values[k].name, name) == 0) {
            if (loss->values[k].length != 1)
                return CRL_ERR_INVALID;
            if (value)
                *value = loss->value_data[loss->values[k].offset];
            return CRL_OK;
        }
    return CRL_ERR_INVALID;
}

/* ------------------------------------------------------------------------ */
/* The evaluation cycle                                                       */
/* ------------------------------------------------------------------------ */

static bool same_layout(const crl_loss *loss, const int64_t *layout, int len)
{
    return loss->layout_len == len
           && memcmp(loss->layout, layout, sizeof *layout * (size_t) len) == 0;
}

/* The first chunk of a cycle: checks, agreement list, layout, work memory,
 * and where this rank accumulates. */
static void begin_cycle(crl_loss *loss, const crl_tensors *in, const crl_tensors *grads)
{
    static const crl_tensors none;
    crl_error *err = &loss->err;
    *err = (crl_error){0};
    loss->g = (crl_global){0};
    loss->uses = 0;
    loss->n_agree = 0;
    loss->target = NULL;
    loss->relayout = false;
    memset(loss->seen, 0, sizeof loss->seen);
    memset(loss->done, 0, sizeof loss->done);
    loss->first = in ? *in : none;
    loss->first_grads = grads ? *grads : none;
    loss->phase = PHASE_ACCUMULATING;
    if (in == NULL) {
        crl_fail(err, CRL_ERR_INVALID, "inputs is NULL");
        return;
    }
    if (loss->n_terms == 0) {
        crl_fail(err, CRL_ERR_INVALID, "the loss has no terms");
        return;
    }
    int64_t *layout = loss->next_layout;
    int len = REGION_TERMS + loss->n_terms + 1;
    if (prepare(loss, in, grads ? grads : &none, &loss->g, &loss->uses, layout, err) != CRL_OK
        || reserve_work(loss, &loss->g, loss->uses, err) != CRL_OK)
        return;
    loss->relayout = !same_layout(loss, layout, len);
    int64_t count = HEADER_SLOTS + layout[len - 1];
    if (loss->relayout) {
        if (!crl_reserve(&loss->pending, &loss->pending_cap, count, sizeof(crl_dd))) {
            crl_fail(err, CRL_ERR_NOMEM, "out of memory for the packed sums");
            return;
        }
        loss->target = loss->pending;
    } else {
        loss->target = loss->buffer;
    }
    for (int64_t k = 0; k < count; k++)
        loss->target[k] = crl_dd_make(0.0);
}

int crl_loss_accumulate(crl_loss *loss, const crl_tensors *inputs, const crl_tensors *grads)
{
    static const crl_tensors none;
    if (loss == NULL)
        return CRL_ERR_INVALID;
    if (loss->phase != PHASE_ACCUMULATING) {
        begin_cycle(loss, inputs, grads);
        loss->digest = agree_digest(loss);
    } else if (loss->err.code == CRL_OK) {
        if (inputs == NULL)
            crl_fail(&loss->err, CRL_ERR_INVALID, "inputs is NULL");
        else
            check_chunk(loss, inputs, grads ? grads : &none, loss->g.grad_announced, &loss->err);
    }
    if (loss->err.code == CRL_OK)
        forward(loss, inputs, loss->target + HEADER_SLOTS, &loss->err);
    if (loss->err.code != CRL_OK)
        loss->target = NULL;
    return loss->err.code;
}

static void write_header(crl_loss *loss, crl_dd *buffer)
{
    buffer[HEADER_FAILED] = crl_dd_make(loss->err.code != CRL_OK);
    buffer[HEADER_RELAYOUT] = crl_dd_make(loss->relayout);
    write_digest(buffer, loss->digest);
}

int crl_loss_reduce(crl_loss *loss)
{
    if (loss == NULL)
        return CRL_ERR_INVALID;
    crl_context *ctx = loss->ctx;
    if (loss->phase != PHASE_ACCUMULATING) {
        /* A misuse on this rank: still take part, as a failure. */
        loss->err = (crl_error){0};
        crl_fail(&loss->err, CRL_ERR_INVALID, "crl_loss_reduce called without crl_loss_accumulate");
        loss->target = NULL;
        loss->relayout = false;
    }
    loss->phase = PHASE_IDLE;
    int64_t count = HEADER_SLOTS + loss->payload_slots;
    if (loss->target != loss->buffer)
        for (int64_t k = HEADER_SLOTS; k < count; k++)
            loss->buffer[k] = crl_dd_make(0.0);
    write_header(loss, loss->buffer);
    int rc = crl_context_reduce(ctx, loss->buffer, count);
    if (rc != CRL_OK)
        return rc;
    if (crl_dd_round(loss->buffer[HEADER_FAILED]) > 0)
        return crl_context_agree_error(ctx, &loss->err);
    if (!digest_agrees(loss->buffer, ctx->size))
        return diagnose_disagreement(loss);
    double relayouts = crl_dd_round(loss->buffer[HEADER_RELAYOUT]);
    if (relayouts > 0) {
        /* The digests agree, so every rank has the same local layout and
         * every rank accumulated into its pending buffer: adopt it. */
        if (relayouts != ctx->size)
            return crl_context_set(ctx, CRL_ERR_INVALID, "ranks could not agree on a layout");
        int len = REGION_TERMS + loss->n_terms + 1;
        memcpy(loss->layout, loss->next_layout, sizeof(int64_t) * (size_t) len);
        loss->layout_len = len;
        loss->payload_slots = loss->next_layout[len - 1];
        crl_dd *swap = loss->buffer;
        int64_t cap = loss->buffer_cap;
        loss->buffer = loss->pending;
        loss->buffer_cap = loss->pending_cap;
        loss->pending = swap;
        loss->pending_cap = cap;
        loss->relayout = false;
        write_header(loss, loss->buffer);
        count = HEADER_SLOTS + loss->payload_slots;
        if ((rc = crl_context_reduce(ctx, loss->buffer, count)) != CRL_OK)
            return rc;
    }

    /* Finalize: the same on every rank, so its errors are collective. */
    crl_global *g = &loss->g;
    g->inputs = &loss->first;
    g->pop[0].array = &loss->first.states;
    g->pop[1].array = &loss->first.states1;
    if (finalize(loss, g, loss->uses, loss->buffer + HEADER_SLOTS, loss->outs, &loss->err) != CRL_OK)
        return crl_context_set_error(ctx, &loss->err);
    store_results(loss, loss->outs);
    loss->phase = PHASE_REDUCED;
    loss->weights_written = false;
    loss->backward_started = false;
    return crl_context_set(ctx, CRL_OK, NULL);
}

/* The gradient requests of a backward call: the used roles with a buffer. */
static unsigned requested(const crl_loss *loss, const crl_tensors *grads)
{
    unsigned mask = 0;
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        bool given = role < CRL_FIRST_MATRIX_ROLE ? crl_array_present(crl_tensors_array(grads, role))
                                                  : crl_tensors_matrix(grads, role)->data != NULL;
        if (given && (loss->uses & CRL_USES(role)))
            mask |= CRL_USES(role);
    }
    return mask;
}

/* The first backward call of a cycle: its requests must be gradients the
 * finalize prepared, and its weight-gradient buffers must fit. */
static int check_requests(const crl_loss *loss, const crl_tensors *grads, unsigned want,
                          crl_error *err)
{
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        if (!(want & CRL_USES(role)))
            continue;
        if (!(loss->g.grad_mask & CRL_USES(role)))
            return crl_fail_at(err, CRL_ERR_INVALID, role, -1, -1, -1,
                               (loss->g.grad_announced & CRL_USES(role)) == 0
                                   ? "gradient of %s: not available unless requested at "
                                     "crl_loss_accumulate (it is a sum over all ranks), or no "
                                     "gradient exists"
                                   : "gradient of %s: not available",
                               crl_role_name(role));
        if (role >= CRL_FIRST_MATRIX_ROLE
            && crl_matrix_check_grad(crl_tensors_matrix(grads, role),
                                     crl_tensors_matrix(&loss->first, role), crl_role_name(role),
                                     err) != CRL_OK) {
            blame_role(err, role);
            return err->code;
        }
    }
    return CRL_OK;
}

/* Overwrite mode: the checks of the given buffers of inputs no active term
 * reads (their gradient is zero); with zero set, writes the zeros. */
static int unused_buffers(const crl_loss *loss, const crl_tensors *inputs,
                          const crl_tensors *grads, bool weights, bool zero, crl_error *err)
{
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        if (loss->uses & CRL_USES(role))
            continue;
        const char *what = crl_role_name(role);
        if (role < CRL_FIRST_MATRIX_ROLE) {
            const crl_array *d = crl_tensors_array(grads, role), *a = crl_tensors_array(inputs, role);
            if (!crl_array_present(d))
                continue;
            if (!zero && (crl_array_present(a) ? crl_array_check_grad(d, a, what, err)
                                               : crl_array_check(d, what, err)) != CRL_OK) {
                blame_role(err, role);
                return err->code;
            }
            if (zero)
                crl_array_zero(d);
        } else if (weights) {
            const crl_matrix *d = crl_tensors_matrix(grads, role), *m = crl_tensors_matrix(inputs, role);
            if (d->data == NULL)
                continue;
            if (!zero && (m->data ? crl_matrix_check_grad(d, m, what, err)
                                  : crl_matrix_check(d, what, err)) != CRL_OK) {
                blame_role(err, role);
                return err->code;
            }
            if (zero)
                crl_matrix_zero(d);
        }
    }
    return CRL_OK;
}

int crl_loss_backward(crl_loss *loss, const crl_tensors *inputs, const crl_tensors *grads)
{
    static const crl_tensors none;
    if (loss == NULL)
        return CRL_ERR_INVALID;
    crl_error err = {0};
    crl_global *g = &loss->g;
    int64_t batch[3] = {0};
    unsigned want = 0;
    bool overwrite = loss->grad_mode == CRL_GRAD_OVERWRITE;
    if (grads == NULL)
        grads = &none;
    if (loss->phase != PHASE_REDUCED)
        crl_fail(&err, CRL_ERR_INVALID, "crl_loss_backward needs a successful crl_loss_reduce");
    else if (inputs == NULL)
        crl_fail(&err, CRL_ERR_INVALID, "inputs is NULL");
    else {
        want = loss->backward_started ? loss->backward_mask : requested(loss, grads);
        if ((loss->backward_started || check_requests(loss, grads, want, &err) == CRL_OK)
            && check_chunk(loss, inputs, grads, want, &err) == CRL_OK
            && (!overwrite
                || unused_buffers(loss, inputs, grads, !loss->weights_written, false, &err)
                       == CRL_OK)) {
            batch[0] = loss->uses & CRL_USES(CRL_ROLE_STATES) ? inputs->states.batch : 0;
            batch[1] = loss->uses & CRL_USES(CRL_ROLE_STATES1) ? inputs->states1.batch : 0;
            batch[2] = loss->uses & CRL_USES(CRL_ROLE_PRED) ? inputs->pred.batch : 0;
            for (int k = 0; k < 3; k++)
                if (loss->done[k] + batch[k] > loss->seen[k])
                    crl_fail(&err, CRL_ERR_INVALID,
                             "backward chunks hold more batch elements (%lld) than were "
                             "accumulated (%lld)",
                             (long long) (loss->done[k] + batch[k]), (long long) loss->seen[k]);
        }
    }
    if (err.code != CRL_OK) {
        err.rank = loss->ctx->rank;
        return crl_context_set_error(loss->ctx, &err);
    }
    loss->backward_started = true;
    loss->backward_mask = want;
    if (overwrite)
        unused_buffers(loss, inputs, grads, !loss->weights_written, true, &err);
    g->inputs = inputs;
    g->pop[0].array = &inputs->states;
    g->pop[1].array = &inputs->states1;
    for (int p = 0; p < 2; p++)
        if (want & CRL_USES(pop_role(p)))
            states_backward(loss, g, p, crl_tensors_array(grads, pop_role(p)));
    if (want & (CRL_USES(CRL_ROLE_PRED) | CRL_USES(CRL_ROLE_LABEL)))
        outputs_backward(loss, g, grads, want);
    /* Weight gradients are whole on every rank: stored once per cycle. */
    for (int s = 0; s < 4 && !loss->weights_written; s++)
        if (want & CRL_USES(CRL_FIRST_MATRIX_ROLE + s))
            crl_matrix_store(crl_tensors_matrix(grads, CRL_FIRST_MATRIX_ROLE + s), g->dweight[s],
                             store_how(loss));
    loss->weights_written = true;
    for (int k = 0; k < 3; k++)
        loss->done[k] += batch[k];
    return CRL_OK;
}

int crl_loss_evaluate(crl_loss *loss, const crl_tensors *inputs, const crl_tensors *grads)
{
    if (loss == NULL)
        return CRL_ERR_INVALID;
    loss->phase = PHASE_IDLE; /* a fresh cycle, whatever came before */
    crl_loss_accumulate(loss, inputs, grads);
    int rc = crl_loss_reduce(loss);
    if (rc == CRL_OK && grads != NULL)
        rc = crl_loss_backward(loss, inputs, grads);
    return rc;
}
