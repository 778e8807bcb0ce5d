/*
 * loss.c - a loss as named terms in order (docs/losses.md "A loss: named, weighted terms"):
 * building it, its parameters and weights, how its gradients are stored,
 * and the values the last evaluation reported.
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prefixes an error a term reported with the term's name and type, and
 * records the term's index. */
int crl_term_error(const crl_loss *loss, const crl_term *t, crl_error *err)
{
    char msg[CRL_MESSAGE_MAX];
    snprintf(msg, sizeof msg, "term '%s' (%s): %s", t->name, t->cls->type, err->message);
    memcpy(err->message, msg, sizeof msg);
    if (err->term < 0)
        err->term = t >= loss->terms && t < loss->terms + loss->n_terms ? (int) (t - loss->terms)
                                                                       : loss->n_terms;
    return err->code;
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

int crl_loss_create(crl_context *ctx, crl_loss **out)
{
    if (out == NULL || ctx == NULL)
        return CRL_ERR_INVALID;
    crl_loss *loss = calloc(1, sizeof *loss);
    crl_xsum *header = calloc(HEADER_SLOTS, sizeof *header);
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

int crl_loss_destroy(crl_loss **loss)
{
    if (loss == NULL || *loss == NULL)
        return CRL_OK;
    crl_loss *l = *loss;
    for (int k = 0; k < l->n_terms; k++)
        if (l->terms[k].cls->destroy)
            l->terms[k].cls->destroy(&l->terms[k]);
    free(l->terms);
    free(l->layout);
    free(l->buffer);
    free(l->pending);
    free(l->group);
    free(l->sums);
    free(l->spill.items);
    free(l->wide);
    free(l->more);
    free(l->agree);
    free(l->next_layout);
    free(l->outs);
    crl_free_scratch(&l->work);
    free(l->values);
    free(l->value_data);
    free(l);
    *loss = NULL;
    return CRL_OK;
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
    crl_term t = {.cls = cls, .weight = weight, .grad_factor = 1.0};
    snprintf(t.name, sizeof t.name, "%s", name);
    for (int k = 0; cls->params[k].key != NULL; k++)
        t.param[k] = cls->params[k].default_value;
    if (apply_params(&t, params, &err) != CRL_OK) {
        crl_term_error(loss, &t, &err);
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

/* The one way a parameter changes after crl_loss_add: the term called name,
 * its parameter key, of kind `kind` (0: any numeric kind), set from value or,
 * for a choice given by name, from text; validated by crl_param_validate
 * (crl_param_parse for text, which validates the same way). */
static int set_param(crl_loss *loss, const char *name, const char *key, int kind, double value,
                     const char *text)
{
    if (loss == NULL)
        return CRL_ERR_INVALID;
    crl_error err = {0};
    crl_term *t = name ? find_term(loss, name) : NULL;
    if (t == NULL) {
        crl_fail(&err, CRL_ERR_INVALID, "no term named '%s'", name ? name : "(null)");
        return crl_context_set_error(loss->ctx, &err);
    }
    int k = key ? crl_term_param_index(t->cls, key) : -1;
    const crl_param_info *info = k >= 0 ? &t->cls->params[k] : NULL;
    static const char *const kinds[] = {"", "real", "integer", "boolean", "choice"};
    if (info == NULL)
        crl_fail(&err, CRL_ERR_INVALID, "unknown parameter '%s'", key ? key : "(null)");
    else if (kind != 0 && (int) info->kind != kind)
        crl_fail(&err, CRL_ERR_INVALID, "parameter %s is not a %s", key, kinds[kind]);
    else if (text != NULL ? crl_param_parse(info, text, &value, &err) == CRL_OK
                          : crl_param_validate(info, value, &err) == CRL_OK)
        t->param[k] = value;
    if (err.code != CRL_OK)
        crl_term_error(loss, t, &err);
    return crl_context_set_error(loss->ctx, &err);
}

int crl_loss_set(crl_loss *loss, const char *name, const char *key, double value)
{
    return set_param(loss, name, key, 0, value, NULL);
}

int crl_loss_set_real(crl_loss *loss, const char *name, const char *key, double value)
{
    return set_param(loss, name, key, CRL_PARAM_REAL, value, NULL);
}

int crl_loss_set_int(crl_loss *loss, const char *name, const char *key, int64_t value)
{
    return set_param(loss, name, key, CRL_PARAM_INT, (double) value, NULL);
}

int crl_loss_set_bool(crl_loss *loss, const char *name, const char *key, int value)
{
    return set_param(loss, name, key, CRL_PARAM_BOOL, value != 0, NULL);
}

int crl_loss_set_choice(crl_loss *loss, const char *name, const char *key, const char *choice)
{
    if (choice == NULL)
        return set_param(loss, name, key, CRL_PARAM_CHOICE, -1, NULL);
    return set_param(loss, name, key, CRL_PARAM_CHOICE, 0, choice);
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

/* The block of crl_loss_set_block(_states1) into *place (NULL: none). */
static int set_place(crl_loss *loss, const crl_block *block, crl_place *place)
{
    if (loss == NULL)
        return CRL_ERR_INVALID;
    if (block == NULL) {
        *place = (crl_place){0};
        return crl_context_set(loss->ctx, CRL_OK, NULL);
    }
    if (block->batch < 1 || block->time < 1 || block->batch_offset < 0
        || block->time_offset < 0) {
        char message[CRL_MESSAGE_MAX];
        snprintf(message, sizeof message,
                 "block: batch %lld and time %lld must be >= 1, offsets %lld and %lld >= 0",
                 (long long) block->batch, (long long) block->time,
                 (long long) block->batch_offset, (long long) block->time_offset);
        return crl_context_set(loss->ctx, CRL_ERR_INVALID, message);
    }
    *place = (crl_place){block->batch, block->batch_offset, block->time, block->time_offset,
                         true};
    return crl_context_set(loss->ctx, CRL_OK, NULL);
}

int crl_loss_set_block(crl_loss *loss, const crl_block *block)
{
    return set_place(loss, block, loss ? &loss->place : NULL);
}

int crl_loss_set_block_states1(crl_loss *loss, const crl_block *block)
{
    return set_place(loss, block, loss ? &loss->place1 : NULL);
}

int crl_loss_set_term_grad_scale(crl_loss *loss, const char *name, double scale)
{
    if (loss == NULL)
        return CRL_ERR_INVALID;
    crl_term *t = name ? find_term(loss, name) : NULL;
    char message[128];
    if (t == NULL) {
        snprintf(message, sizeof message, "no term named '%.64s'", name ? name : "(null)");
        return crl_context_set(loss->ctx, CRL_ERR_INVALID, message);
    }
    if (!isfinite(scale))
        return crl_context_set(loss->ctx, CRL_ERR_INVALID, "a term's gradient scale must be finite");
    if (loss->phase == PHASE_REDUCED && loss->backward_started && scale != t->grad_factor)
        return crl_context_set(loss->ctx, CRL_ERR_INVALID,
                               "a term's gradient scale cannot change between the chunks of "
                               "one backward pass");
    t->grad_factor = scale;
    return crl_context_set(loss->ctx, CRL_OK, NULL);
}

int crl_loss_term_count(const crl_loss *loss)
{
    return loss ? loss->n_terms : 0;
}

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

void crl_store_results(crl_loss *loss, const crl_term_out *outs)
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
    if (loss == NULL)
        return CRL_ERR_INVALID;
    for (int64_t k = 0; name != NULL && k < loss->n_values; k++)
        if (strcmp(loss->values[k].name, name) == 0) {
            if (loss->values[k].length != 1) {
                char msg[CRL_MESSAGE_MAX];
                snprintf(msg, sizeof msg, "value '%s' is a vector of %lld numbers", name,
                         (long long) loss->values[k].length);
                return crl_context_set(loss->ctx, CRL_ERR_INVALID, msg);
            }
            if (value)
                *value = loss->value_data[loss->values[k].offset];
            return CRL_OK;
        }
    char msg[CRL_MESSAGE_MAX];
    snprintf(msg, sizeof msg, "no value named '%s'%s", name ? name : "(null)",
             loss->n_values ? "" : " (no successful evaluation yet)");
    return crl_context_set(loss->ctx, CRL_ERR_INVALID, msg);
}
