/*
 * rnn.c - RNNLoss (docs/losses.md "RNNLoss"): MSE of the outputs, Frobenius
 * sparsity of the three weight matrices, and the firing-rate terms fr, fr_sd
 * and fr_cv.  It needs no slots of its own: everything comes from the shared
 * statistics (sum of squared errors, per-neuron means, sum of S^2, the weights'
 * norms), and its states gradient is affine in S.
 *
 * Reads: pred, label and the mask when given (mse); w_in, w_hid, w_out; states (fr, fr_sd, fr_cv).
 */
#include "../internal.h"

#include <float.h>

enum { MSE, IN, HID, OUT, FR, FR_SD, FR_CV, CORRECTION };

static const crl_param_info params[] = {
    {"lambda_mse", CRL_PARAM_REAL, 1, -DBL_MAX, DBL_MAX, NULL, "weight of the output MSE"},
    {"lambda_in", CRL_PARAM_REAL, 0, -DBL_MAX, DBL_MAX, NULL, "weight of ||W_in||^2 / (N_in N)"},
    {"lambda_hid", CRL_PARAM_REAL, 0, -DBL_MAX, DBL_MAX, NULL, "weight of ||W_hid||^2 / N^2"},
    {"lambda_out", CRL_PARAM_REAL, 0, -DBL_MAX, DBL_MAX, NULL,
     "weight of ||W_out||^2 / (N_out N)"},
    {"lambda_fr", CRL_PARAM_REAL, 0, -DBL_MAX, DBL_MAX, NULL, "weight of mean(S^2)"},
    {"lambda_fr_sd", CRL_PARAM_REAL, 0, -DBL_MAX, DBL_MAX, NULL,
     "weight of the SD of mean rates across neurons"},
    {"lambda_fr_cv", CRL_PARAM_REAL, 0, -DBL_MAX, DBL_MAX, NULL,
     "weight of the CV (SD / mean) of mean rates"},
    {"correction", CRL_PARAM_INT, 0, 0, 1e9, NULL,
     "SD divisor N - correction (1 reproduces torch.std)"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static const char *const parts[] = {"mse", "in", "hid", "out", "fr", "fr_sd", "fr_cv", NULL};

static bool on(const crl_term *t, int k)
{
    return t->param[k] != 0.0;
}

static unsigned uses(const crl_term *t)
{
    unsigned u = 0;
    if (on(t, MSE))
        u |= CRL_USES(CRL_ROLE_PRED) | CRL_USES(CRL_ROLE_LABEL);
    if (on(t, IN))
        u |= CRL_USES(CRL_ROLE_W_IN);
    if (on(t, HID))
        u |= CRL_USES(CRL_ROLE_W_HID);
    if (on(t, OUT))
        u |= CRL_USES(CRL_ROLE_W_OUT);
    if (on(t, FR) || on(t, FR_SD) || on(t, FR_CV))
        u |= CRL_USES(CRL_ROLE_STATES);
    return u;
}

/* The weights must fit the hidden size N, when the states say what N is. */
static int prepare(crl_term *t, const crl_global *g, int64_t *slots, crl_error *err)
{
    const crl_tensors *in = g->inputs;
    unsigned used = uses(t);
    *slots = 0;
    if ((on(t, FR_SD) || on(t, FR_CV)) && in->states.width <= t->param[CORRECTION])
        return crl_fail(err, CRL_ERR_INVALID, "correction %g needs more than %g neurons",
                        t->param[CORRECTION], t->param[CORRECTION]);
    return crl_weights_fit(in, used, used & CRL_USES(CRL_ROLE_STATES) ? in->states.width : 0, err);
}

/* lambda ||W||_F^2 / (rows cols); gradient 2 lambda W / (rows cols). */
static double sparsity(crl_term *t, crl_global *g, int k, int role)
{
    if (!on(t, k))
        return 0;
    const crl_matrix *m = crl_tensors_matrix(g->inputs, role);
    int s = role - CRL_FIRST_MATRIX_ROLE;
    double size = (double) m->rows * (double) m->cols;
    double *d = g->weights.grad[s];
    if (d) {
        double c = t->weight * 2 * t->param[k] / size;
        for (int64_t r = 0; r < m->rows; r++)
            for (int64_t j = 0; j < m->cols; j++)
                d[r * m->cols + j] += c * crl_matrix_get(m, r, j);
    }
    return t->param[k] * g->weights.sumsq[s] / size;
}

static int finalize(crl_term *t, crl_global *g, const crl_dd *slots, crl_term_out *out,
                    crl_error *err)
{
    (void) slots;
    double *part = out->part;
    if (on(t, MSE)) {
        part[0] = t->param[MSE] * g->out.sqerr / g->out.count;
        g->out.coef += t->weight * 2 * t->param[MSE] / g->out.count;
    }
    part[1] = sparsity(t, g, IN, CRL_ROLE_W_IN);
    part[2] = sparsity(t, g, HID, CRL_ROLE_W_HID);
    part[3] = sparsity(t, g, OUT, CRL_ROLE_W_OUT);

    if (uses(t) & CRL_USES(CRL_ROLE_STATES)) {
        crl_population *pop = &g->pop[0];
        int64_t n = pop->n;
        double size = pop->count * (double) n;
        crl_spread s = crl_spread_of(pop->mean, n, t->param[CORRECTION]);
        if (on(t, FR_CV) && s.m == 0)
            return crl_fail(err, CRL_ERR_DOMAIN, "fr_cv: the mean rate is 0");
        part[4] = t->param[FR] * pop->sumsq / size;
        part[5] = t->param[FR_SD] * s.sigma;
        part[6] = on(t, FR_CV) ? t->param[FR_CV] * s.sigma / s.m : 0;
        if (g->grad_mask & CRL_USES(CRL_ROLE_STATES)) {
            /* d/dS of lambda_fr mean(S^2) is 2 lambda_fr S / (B T N): alpha
             * takes its value at the mean, beta the slope; the SD and CV
             * gradients are g_i / (B T) (docs/losses.md "Data and notation"). */
            double w = t->weight, fr = 2 * t->param[FR] / size;
            if (on(t, FR_SD))
                crl_spread_grad_sd(pop->mean, n, s, w * t->param[FR_SD] / pop->count, pop->alpha);
            if (on(t, FR_CV))
                crl_spread_grad_cv(pop->mean, n, s, w * t->param[FR_CV] / pop->count, pop->alpha);
            if (on(t, FR))
                for (int64_t i = 0; i < n; i++) {
                    pop->alpha[i] += w * fr * pop->mean[i];
                    pop->beta[i] += w * fr;
                }
            pop->affine = true;
        }
    }
    out->value = 0;
    for (int k = 0; k < 7; k++)
        out->value += part[k];
    return CRL_OK;
}

const crl_term_class crl_term_rnn = {
    .type = "rnn",
    .summary = "RNNLoss: output MSE, weight sparsity and firing-rate regularizers",
    .python_name = "RNNLoss",
    .example = "r=rnn:lambda_mse=1,lambda_hid=0.01,lambda_fr=0.01,lambda_fr_sd=0.1",
    .inputs = CRL_USES(CRL_ROLE_STATES) | CRL_USES(CRL_ROLE_PRED) | CRL_USES(CRL_ROLE_LABEL)
              | CRL_USES(CRL_ROLE_MASK) | CRL_USES(CRL_ROLE_W_IN) | CRL_USES(CRL_ROLE_W_HID)
              | CRL_USES(CRL_ROLE_W_OUT),
    .gradients = CRL_USES(CRL_ROLE_STATES) | CRL_USES(CRL_ROLE_PRED) | CRL_USES(CRL_ROLE_LABEL) | CRL_USES(CRL_ROLE_W_IN)
                  | CRL_USES(CRL_ROLE_W_HID) | CRL_USES(CRL_ROLE_W_OUT),
    .params = params,
    .takes_mask = true,
    .parts = parts,
    .passes = CRL_PASS_MOMENTS | CRL_PASS_SQUARES | CRL_PASS_OUTPUT_ERROR | CRL_PASS_WEIGHT_NORMS,
    .uses = uses,
    .prepare = prepare,
    .finalize = finalize,
};
