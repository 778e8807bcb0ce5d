/*
 * test_catalogue.c - the catalogue of term types (crl_term_type_describe)
 * and the typed parameter setters:
 *   - every registered type has its Python class name here (a type without
 *     one fails), an example --term that crl_loss_add accepts, and
 *     gradients among its inputs;
 *   - crl_loss_set_real/_int/_bool/_choice check the kind, validate like
 *     the text of crl_loss_add and give the same evaluation;
 *   - crl_loss_find says why it failed; crl_loss_destroy returns a status.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The criteria of the Python binding, by type. */
static const char *const python_names[][2] = {
    {"rnn", "RNNLoss"},           {"fr", "FiringRateLoss"},
    {"fr_dist", "FiringRateDistLoss"}, {"state_pred", "StatePredictionLoss"},
    {"hebbian", "HebbianLoss"},   {"entropy", "EntropyLoss"},
    {"population_kl", "PopulationKL"}, {"mse", "MSELoss"},
    {"rnn_conn", "RNNConnectivityLoss"}, {"cross_entropy", "CrossEntropyLoss"},
};
enum { N_NAMES = sizeof python_names / sizeof python_names[0] };

static const char *expected_python_name(const char *type)
{
    for (int k = 0; k < N_NAMES; k++)
        if (strcmp(python_names[k][0], type) == 0)
            return python_names[k][1];
    return NULL;
}

static void test_every_type_is_described(void **state)
{
    (void) state;
    crl_context *ctx;
    assert_int_equal(crl_context_create(MPI_COMM_SELF, &ctx), CRL_OK);
    bool ok = true;
    for (int k = 0; k < crl_term_type_count(); k++) {
        crl_term_type_info info;
        assert_int_equal(crl_term_type_describe(k, &info), CRL_OK);
        const char *want = expected_python_name(info.name);
        if (want == NULL || info.python_name == NULL || strcmp(want, info.python_name) != 0) {
            fprintf(stderr, "%s: Python name %s, this test expects %s\n", info.name,
                    info.python_name ? info.python_name : "(none)", want ? want : "(no case)");
            ok = false;
        }
        /* The example is NAME=TYPE:PARAMS with lambda=W among the params. */
        char text[256], *colon, *eq;
        snprintf(text, sizeof text, "%s", info.example ? info.example : "");
        eq = strchr(text, '=');
        colon = strchr(text, ':');
        ok = ok && eq != NULL && info.summary != NULL && info.inputs != 0
             && (info.gradients & ~info.inputs) == 0;
        if (eq == NULL)
            continue;
        *eq = '\0';
        if (colon)
            *colon = '\0';
        ok = ok && strcmp(eq + 1, info.name) == 0;
        char params[256] = "";
        double weight = 1;
        for (char *item = colon ? strtok(colon + 1, ",") : NULL; item; item = strtok(NULL, ",")) {
            if (strncmp(item, "lambda=", 7) == 0)
                weight = atof(item + 7);
            else
                snprintf(params + strlen(params), sizeof params - strlen(params), "%s%s",
                         params[0] ? "," : "", item);
        }
        crl_loss *loss;
        assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
        if (crl_loss_add(loss, text, info.name, weight, params) != CRL_OK) {
            fprintf(stderr, "%s: example '%s': %s\n", info.name, info.example,
                    crl_context_error(ctx));
            ok = false;
        }
        int n = 0;
        while (crl_term_type_param(info.name, n) != NULL)
            n++;
        ok = ok && n == info.n_params;
        assert_int_equal(crl_loss_destroy(&loss), CRL_OK);
        ok = ok && loss == NULL;
    }
    crl_term_type_info info;
    ok = ok && crl_term_type_describe(crl_term_type_count(), &info) == CRL_ERR_INVALID
         && crl_term_type_describe(0, NULL) == CRL_ERR_INVALID
         && crl_loss_destroy(NULL) == CRL_OK;
    crl_context_destroy(&ctx);
    h_assert_all(ok);
}

/* total of one fr_dist term, set up by text or by a typed setter. */
static double fr_dist_total(const char *params, const char *choice, int64_t correction)
{
    double rates[2 * 3 * 4];
    for (int k = 0; k < 24; k++)
        rates[k] = 0.1 + 0.37 * (double) ((k * 7) % 11);
    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_SELF, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "d", "fr_dist", 1.0, params), CRL_OK);
    if (choice) {
        assert_int_equal(crl_loss_set_choice(loss, "d", "metric", choice), CRL_OK);
        assert_int_equal(crl_loss_set_int(loss, "d", "correction", correction), CRL_OK);
    }
    crl_tensors in = {0};
    in.states = crl_array_batch_major(CRL_FLOAT64, rates, 2, 3, 4);
    assert_int_equal(crl_loss_evaluate(loss, &in, NULL), CRL_OK);
    double total = crl_loss_total(loss);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    return total;
}

static void test_typed_setters(void **state)
{
    (void) state;
    double by_text = fr_dist_total("metric=cv,correction=1", NULL, 0);
    double typed = fr_dist_total(NULL, "cv", 1);
    h_assert_all(memcmp(&by_text, &typed, sizeof typed) == 0);

    crl_context *ctx;
    crl_loss *loss;
    assert_int_equal(crl_context_create(MPI_COMM_SELF, &ctx), CRL_OK);
    assert_int_equal(crl_loss_create(ctx, &loss), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "d", "fr_dist", 1.0, NULL), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "k", "population_kl", 1.0, NULL), CRL_OK);
    assert_int_equal(crl_loss_add(loss, "e", "entropy", 1.0, NULL), CRL_OK);
    bool ok = true;
    ok = ok && crl_loss_set_choice(loss, "d", "metric", "median") == CRL_ERR_INVALID
         && strstr(crl_context_error(ctx), "one of: sd, cv, mean_ad, max_ad") != NULL;
    ok = ok && crl_loss_set_real(loss, "d", "correction", 1) == CRL_ERR_INVALID
         && strstr(crl_context_error(ctx), "not a real") != NULL;
    ok = ok && crl_loss_set_int(loss, "d", "correction", -1) == CRL_ERR_INVALID;
    ok = ok && crl_loss_set_bool(loss, "k", "symmetric", 0) == CRL_OK;
    ok = ok && crl_loss_set_bool(loss, "k", "reg", 1) == CRL_ERR_INVALID;
    ok = ok && crl_loss_set_real(loss, "e", "reg", NAN) == CRL_ERR_INVALID;
    ok = ok && crl_loss_set_real(loss, "e", "reg", 2.5) == CRL_OK;
    ok = ok && crl_loss_set_choice(loss, "k", "reduction", "sum") == CRL_OK;
    ok = ok && crl_loss_set_choice(loss, "nope", "metric", "cv") == CRL_ERR_INVALID
         && strstr(crl_context_error(ctx), "no term named 'nope'") != NULL;
    ok = ok && crl_loss_set_choice(loss, "d", "metric", NULL) == CRL_ERR_INVALID;

    /* crl_loss_find says why. */
    double v;
    ok = ok && crl_loss_find(loss, "d", &v) == CRL_ERR_INVALID
         && strstr(crl_context_error(ctx), "no value named 'd'") != NULL;
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    h_assert_all(ok);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_is_described),
        cmocka_unit_test(test_typed_setters),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "catalogue");
}
