/*
 * registry.c - the table of term types.  Adding a loss is one file under
 * terms/ and one line here; the composite, the command-line tool, the
 * bindings and the tests find it through this table.
 */
#include "internal.h"

#include <string.h>

/* In the order of docs/losses.md. */
extern const crl_term_class crl_term_rnn;
extern const crl_term_class crl_term_fr;
extern const crl_term_class crl_term_fr_dist;
extern const crl_term_class crl_term_state_pred;
extern const crl_term_class crl_term_hebbian;
extern const crl_term_class crl_term_entropy;
extern const crl_term_class crl_term_population_kl;
extern const crl_term_class crl_term_mse;
extern const crl_term_class crl_term_rnn_conn;
extern const crl_term_class crl_term_cross_entropy;

const crl_term_class *const crl_term_classes[] = {
    &crl_term_rnn,
    &crl_term_fr,
    &crl_term_fr_dist,
    &crl_term_state_pred,
    &crl_term_hebbian,
    &crl_term_entropy,
    &crl_term_population_kl,
    &crl_term_mse,
    &crl_term_rnn_conn,
    &crl_term_cross_entropy,
    NULL,
};

const crl_term_class *crl_term_class_find(const char *type)
{
    for (int k = 0; crl_term_classes[k] != NULL; k++)
        if (strcmp(crl_term_classes[k]->type, type) == 0)
            return crl_term_classes[k];
    return NULL;
}

int crl_term_type_count(void)
{
    int n = 0;
    while (crl_term_classes[n] != NULL)
        n++;
    return n;
}

const char *crl_term_type_name(int index)
{
    return index >= 0 && index < crl_term_type_count() ? crl_term_classes[index]->type : NULL;
}

const char *crl_term_type_summary(int index)
{
    return index >= 0 && index < crl_term_type_count() ? crl_term_classes[index]->summary : NULL;
}

int crl_term_type_describe(int index, crl_term_type_info *info)
{
    if (info == NULL || index < 0 || index >= crl_term_type_count())
        return CRL_ERR_INVALID;
    const crl_term_class *cls = crl_term_classes[index];
    int n_params = 0;
    while (cls->params[n_params].key != NULL)
        n_params++;
    *info = (crl_term_type_info){cls->type, cls->summary, cls->python_name, cls->example,
                                 cls->inputs, cls->gradients, n_params};
    return CRL_OK;
}

const crl_param_info *crl_term_type_param(const char *type, int index)
{
    const crl_term_class *cls = type ? crl_term_class_find(type) : NULL;
    if (cls == NULL || index < 0)
        return NULL;
    for (int k = 0; k <= index; k++)
        if (cls->params[k].key == NULL)
            return NULL;
    return &cls->params[index];
}
