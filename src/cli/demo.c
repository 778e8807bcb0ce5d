/*
 * demo.c - `ctrnn-loss demo`: the main job on an embedded default.
 *
 * Each rank simulates its share of a batch of a small CTRNN,
 *     r <- (1 - alpha) r + alpha relu(W_hid r + W_in u),  alpha = dt/tau = 0.1,
 *     y = W_out r,
 * from seeded random weights and inputs (batch element b from its own seed,
 * so the data do not depend on the number of ranks), evaluates a loss with
 * one term of every registered type, with gradients, and prints the terms,
 * the gradient norms, the time per evaluation and a finite-difference check
 * of one gradient entry.
 *
 * Inputs of the terms: states = the rates of T steps, pred / label the
 * outputs and sinusoidal targets, the three weight matrices, W_hebb = W_hid
 * (Hebbian co-activity weighted by the recurrent connections).  The second
 * population of population_kl is the same network's rates in the T/2 steps
 * after that window: "does the activity drift once training data end?".  Both
 * populations are views with strides into one simulated array.
 */
#include "cli.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char demo_usage[] =
    "usage: mpirun -np P ctrnn-loss demo [OPTIONS]\n"
    "\n"
    "Simulates a CTRNN (relu rates, alpha = dt/tau = 0.1, seeded random weights and\n"
    "inputs), each rank its share of the batch, and evaluates a loss with one term\n"
    "of every type, with gradients: prints the terms, the gradient norms, the time\n"
    "per evaluation and a finite-difference check of one gradient entry.\n"
    "\n"
    "options:\n"
    "  -B, --batch B      batch size (default 64)\n"
    "  -T, --time T       time steps (default 200)\n"
    "  -N, --neurons N    neurons (default 256)\n"
    "  --inputs N_IN      network inputs (default 4)\n"
    "  --outputs K        network outputs (default 2)\n"
    "  --dtype TYPE       float32 or float64 (default float32)\n"
    "  --repeat R         timed evaluations (default 5)\n"
    "  --seed S           seed of weights and inputs (default 1)\n"
    "  -h, --help         show this help\n";

/* The parameters each type gets in the demo; a type not listed here gets
 * its defaults and weight 1. */
static const struct suggestion {
    const char *type;
    double weight;
    const char *params;
} suggestions[] = {
    {"rnn", 1.0,
     "lambda_mse=1,lambda_in=0.01,lambda_hid=0.01,lambda_out=0.01,lambda_fr=0.1,"
     "lambda_fr_sd=0.05,lambda_fr_cv=0.02"},
    {"fr", 0.1, "metric=l2"},
    {"fr_dist", 0.05, "metric=cv,correction=1"},
    {"state_pred", 0.5, "tau=5"},
    {"hebbian", 0.01, ""},
    {"entropy", 0.01, "reg=0.1"},
    {"population_kl", 0.1, "symmetric=true,reg=0.001,reduction=mean,var_eps=1e-6"},
    {"mse", 1.0, ""},
};

typedef struct demo_options {
    int64_t batch, time, neurons, inputs, outputs, repeat, seed;
    crl_dtype dtype;
} demo_options;

typedef struct network {
    int64_t n, n_in, k;
    double *w_in, *w_hid_t, *w_out;   /* double copies for the simulation */
    void *w_in_d, *w_hid_d, *w_out_d; /* in the demo's dtype */
} network;

static double uniform(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (double) ((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

static void store(void *data, crl_dtype dtype, int64_t k, double v)
{
    if (dtype == CRL_FLOAT32)
        ((float *) data)[k] = (float) v;
    else
        ((double *) data)[k] = v;
}

static double load(const void *data, crl_dtype dtype, int64_t k)
{
    return dtype == CRL_FLOAT32 ? (double) ((const float *) data)[k] : ((const double *) data)[k];
}

/* Weights uniform in [-scale, scale), rounded to dtype; the simulation uses
 * the rounded values.  transpose stores the double copy transposed. */
static void fill_weights(double *copy, void *data, crl_dtype dtype, int64_t rows, int64_t cols,
                         double scale, uint64_t seed, bool transpose)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            store(data, dtype, r * cols + c, scale * (2 * uniform(&seed) - 1));
            double v = load(data, dtype, r * cols + c);
            copy[transpose ? c * rows + r : r * cols + c] = v;
        }
}

/*
 * Simulates batch element b for steps steps: rates (steps, N), and for the
 * first `time` steps pred and label (time, K), in dtype.  The recurrent sum
 * runs over presynaptic neurons in a fixed order (axpy over columns of
 * W_hid), so it is deterministic and vectorizes.
 */
static void simulate(const network *net, const demo_options *o, int64_t b, int64_t steps,
                     void *rates, void *pred, void *label, double *work)
{
    int64_t n = net->n, n_in = net->n_in, k_out = net->k;
    double *r = work, *x = work + n, u[64];
    uint64_t seed = (uint64_t) o->seed * 1000003u + (uint64_t) b + 17;
    double freq = 0.02 + 0.08 * uniform(&seed), phase = 6.283185307179586 * uniform(&seed);
    for (int64_t i = 0; i < n; i++)
        r[i] = 0.2 * uniform(&seed);
    for (int64_t t = 0; t < steps; t++) {
        for (int64_t j = 0; j < n_in; j++)
            u[j] = sin(freq * (double) t + phase + (double) j) + 0.2 * (2 * uniform(&seed) - 1);
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int64_t j = 0; j < n_in; j++)
                s += net->w_in[i * n_in + j] * u[j];
            x[i] = s;
        }
        for (int64_t j = 0; j < n; j++) {
            double rj = r[j];
            if (rj == 0)
                continue;
            const double *col = net->w_hid_t + j * n;
            for (int64_t i = 0; i < n; i++)
                x[i] += col[i] * rj;
        }
        for (int64_t i = 0; i < n; i++) {
            r[i] = 0.9 * r[i] + 0.1 * (x[i] > 0 ? x[i] : 0);
            store(rates, o->dtype, t * n + i, r[i]);
        }
        if (t >= o->time)
            continue;
        for (int64_t c = 0; c < k_out; c++) {
            double y = 0;
            for (int64_t i = 0; i < n; i++)
                y += net->w_out[c * n + i] * load(rates, o->dtype, t * n + i);
            store(pred, o->dtype, t * k_out + c, y);
            store(label, o->dtype, t * k_out + c, 0.5 * sin(freq * (double) (t + 10) + (double) c));
        }
    }
}

enum { OPT_INPUTS = 1000, OPT_OUTPUTS, OPT_DTYPE, OPT_REPEAT, OPT_SEED };

static int parse_options(crl_context *ctx, int argc, char **argv, demo_options *o)
{
    static const struct option long_options[] = {
        {"batch", required_argument, NULL, 'B'},
        {"time", required_argument, NULL, 'T'},
        {"neurons", required_argument, NULL, 'N'},
        {"inputs", required_argument, NULL, OPT_INPUTS},
        {"outputs", required_argument, NULL, OPT_OUTPUTS},
        {"dtype", required_argument, NULL, OPT_DTYPE},
        {"repeat", required_argument, NULL, OPT_REPEAT},
        {"seed", required_argument, NULL, OPT_SEED},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (demo_options){64, 200, 256, 4, 2, 5, 1, CRL_FLOAT32};
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+:B:T:N:h", long_options, NULL)) != -1) {
        int64_t *target = NULL, min = 1, max = INT64_C(1) << 40;
        const char *name = NULL;
        switch (c) {
        case 'B': target = &o->batch, name = "--batch"; break;
        case 'T': target = &o->time, name = "--time", min = 2; break;
        case 'N': target = &o->neurons, name = "--neurons", min = 2, max = 1 << 16; break;
        case OPT_INPUTS: target = &o->inputs, name = "--inputs", max = 64; break;
        case OPT_OUTPUTS: target = &o->outputs, name = "--outputs", max = 1 << 16; break;
        case OPT_REPEAT: target = &o->repeat, name = "--repeat", max = 1 << 20; break;
        case OPT_SEED: target = &o->seed, name = "--seed", min = 0; break;
        case OPT_DTYPE: {
            static const char *const names[] = {"float32", "float64", NULL};
            int k = cli_choice(optarg, names);
            if (k < 0) {
                cli_error(ctx, "--dtype '%s' is not float32 or float64", optarg);
                return CLI_EXIT_USAGE;
            }
            o->dtype = k == 0 ? CRL_FLOAT32 : CRL_FLOAT64;
            continue;
        }
        case 'h': return -1;
        default: return cli_option_failure(ctx, c, argv, long_options, "demo");
        }
        if (!cli_parse_count(optarg, min, target) || *target > max) {
            cli_error(ctx, "%s '%s' must be a whole number in [%lld, %lld]", name, optarg,
                      (long long) min, (long long) max);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_error(ctx, "unexpected argument '%s'; see ctrnn-loss demo --help", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* A loss with one term of every registered type. */
static int build_loss(crl_context *ctx, crl_loss *loss)
{
    for (int k = 0; k < crl_term_type_count(); k++) {
        const char *type = crl_term_type_name(k);
        const struct suggestion *s = NULL;
        for (size_t j = 0; j < sizeof suggestions / sizeof *suggestions; j++)
            if (strcmp(suggestions[j].type, type) == 0)
                s = &suggestions[j];
        if (s != NULL && crl_loss_add(loss, type, type, s->weight, s->params) == CRL_OK)
            continue;
        if (s != NULL && crl_context_rank(ctx) == 0)
            fprintf(stderr, "ctrnn-loss: warning: %s with '%s': %s; using its defaults\n",
                    type, s->params, cli_context_error(ctx));
        if (crl_loss_add(loss, type, type, s ? s->weight : 1.0, NULL) != CRL_OK) {
            cli_error(ctx, "%s", cli_context_error(ctx));
            return CLI_EXIT_FAILED;
        }
    }
    return CLI_EXIT_OK;
}

/* Global 2-norm of n local values (summed over ranks unless replicated). */
static double norm(const void *data, crl_dtype dtype, int64_t n, MPI_Comm comm, bool replicated)
{
    double s = 0, all = 0;
    for (int64_t k = 0; k < n; k++) {
        double v = load(data, dtype, k);
        s += v * v;
    }
    if (replicated)
        return sqrt(s);
    MPI_Allreduce(&s, &all, 1, MPI_DOUBLE, MPI_SUM, comm);
    return sqrt(all);
}

typedef struct demo_data {
    int64_t nb, steps, later;       /* local batch, simulated steps, T1 */
    void *rates, *pred, *label;
    void *d_states, *d_states1, *d_pred, *d_w[4];
    crl_tensors in, grad;
} demo_data;

static void zero_grads(demo_data *d, const demo_options *o, const network *net)
{
    size_t size = crl_dtype_size(o->dtype);
    int64_t n = net->n;
    memset(d->d_states, 0, size * (size_t) (d->nb * o->time * n + 1));
    memset(d->d_states1, 0, size * (size_t) (d->nb * d->later * n + 1));
    memset(d->d_pred, 0, size * (size_t) (d->nb * o->time * net->k + 1));
    int64_t sizes[4] = {n * net->n_in, n * n, net->k * n, n * n};
    for (int k = 0; k < 4; k++)
        memset(d->d_w[k], 0, size * (size_t) sizes[k]);
}

/* Central difference of the total in states[b = 0, t, i] on rank 0 against
 * the analytic gradient; every rank takes part in the evaluations. */
static int finite_difference(crl_context *ctx, crl_loss *loss, demo_data *d,
                             const demo_options *o, const network *net)
{
    bool root = crl_context_rank(ctx) == 0;
    int64_t t = o->time / 2, i = 0, n = net->n;
    double x = 0, hp = 0, hm = 0, analytic = 0, value[2];
    if (root) {
        /* The most active neuron, so that x - h stays a valid (>= 0) rate. */
        for (int64_t j = 1; j < n; j++)
            if (load(d->rates, o->dtype, t * n + j) > load(d->rates, o->dtype, t * n + i))
                i = j;
        x = load(d->rates, o->dtype, t * n + i);
        analytic = load(d->d_states, o->dtype, t * n + i);
    }
    for (int side = 0; side < 2; side++) {
        if (root) {
            /* Central differences err by h^2 f'''/6: a small step for float64;
             * float32 rates need a step their precision resolves. */
            double h = (x > 0 ? x : 1.0) * (o->dtype == CRL_FLOAT64 ? 0x1p-14 : 0x1p-7);
            store(d->rates, o->dtype, t * n + i, side == 0 ? x + h : x - h);
            double moved = load(d->rates, o->dtype, t * n + i);
            if (side == 0)
                hp = moved - x;
            else
                hm = x - moved;
        }
        if (crl_loss_evaluate(loss, &d->in, NULL) != CRL_OK) {
            cli_error(ctx, "%s", cli_context_error(ctx));
            return CLI_EXIT_FAILED;
        }
        value[side] = crl_loss_total(loss);
    }
    if (root)
        store(d->rates, o->dtype, t * n + i, x);
    int status = CLI_EXIT_OK;
    if (root) {
        double numeric = (value[0] - value[1]) / (hp + hm);
        double rel = fabs(analytic - numeric) / fmax(fabs(numeric), 1e-300);
        double tolerance = o->dtype == CRL_FLOAT32 ? 1e-3 : 1e-5;
        printf("finite-difference check of d total / d states[b=0, t=%lld, i=%lld]:\n"
               "  analytic %.10e  numeric %.10e  relative difference %.2e  (%s, tolerance %.0e)\n",
               (long long) t, (long long) i, analytic, numeric, rel,
               rel <= tolerance ? "ok" : "MISMATCH", tolerance);
        status = rel <= tolerance ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    }
    MPI_Bcast(&status, 1, MPI_INT, 0, crl_context_comm(ctx));
    return status;
}

static int run_demo(crl_context *ctx, const demo_options *o, network *net, demo_data *d,
                    crl_loss *loss)
{
    MPI_Comm comm = crl_context_comm(ctx);
    int rank = crl_context_rank(ctx), size = crl_context_size(ctx);
    bool root = rank == 0;
    crl_dtype dt = o->dtype;
    size_t es = crl_dtype_size(dt);
    int64_t n = net->n, k_out = net->k, T = o->time;
    int64_t b0 = rank * (o->batch / size) + (rank < o->batch % size ? rank : o->batch % size);
    d->nb = o->batch / size + (rank < o->batch % size);
    d->later = T / 2 > 0 ? T / 2 : 1;
    d->steps = T + d->later;

    /* Memory: every rank must have it before anyone goes on. */
    d->rates = malloc(es * (size_t) (d->nb * d->steps * n + 1));
    d->pred = malloc(es * (size_t) (d->nb * T * k_out + 1));
    d->label = malloc(es * (size_t) (d->nb * T * k_out + 1));
    d->d_states = malloc(es * (size_t) (d->nb * T * n + 1));
    d->d_states1 = malloc(es * (size_t) (d->nb * d->later * n + 1));
    d->d_pred = malloc(es * (size_t) (d->nb * T * k_out + 1));
    int64_t wsizes[4] = {n * net->n_in, n * n, k_out * n, n * n};
    bool ok = d->rates && d->pred && d->label && d->d_states && d->d_states1 && d->d_pred;
    for (int k = 0; k < 4; k++)
        ok = ok && (d->d_w[k] = malloc(es * (size_t) wsizes[k])) != NULL;
    double *work = malloc(sizeof(double) * (size_t) (2 * n));
    crl_error err = {0};
    if (!ok || work == NULL)
        crl_fail(&err, CRL_ERR_NOMEM, "out of memory for the demo's arrays");
    if (crl_agree(ctx, &err) != CRL_OK) {
        free(work);
        cli_error(ctx, "%s", cli_context_error(ctx));
        return CLI_EXIT_FAILED;
    }

    double t_sim = MPI_Wtime();
    for (int64_t b = 0; b < d->nb; b++)
        simulate(net, o, b0 + b, d->steps, (char *) d->rates + es * (size_t) (b * d->steps * n),
                 (char *) d->pred + es * (size_t) (b * T * k_out),
                 (char *) d->label + es * (size_t) (b * T * k_out), work);
    free(work);
    t_sim = MPI_Wtime() - t_sim;

    /* states: the first T steps; states1: the T/2 steps after them. */
    int64_t stride = d->steps * n;
    crl_tensors *in = &d->in, *grad = &d->grad;
    in->states = (crl_array){dt, d->nb ? d->rates : NULL, d->nb, T, n, stride, n};
    in->states1 = (crl_array){dt, d->nb ? (char *) d->rates + es * (size_t) (T * n) : NULL,
                              d->nb, d->later, n, stride, n};
    in->pred = crl_array_batch_major(dt, d->nb ? d->pred : NULL, d->nb, T, k_out);
    in->label = crl_array_batch_major(dt, d->nb ? d->label : NULL, d->nb, T, k_out);
    in->w_in = crl_matrix_dense(dt, net->w_in_d, n, net->n_in);
    in->w_hid = crl_matrix_dense(dt, net->w_hid_d, n, n);
    in->w_out = crl_matrix_dense(dt, net->w_out_d, k_out, n);
    in->w_hebb = in->w_hid;
    grad->states = crl_array_batch_major(dt, d->nb ? d->d_states : NULL, d->nb, T, n);
    grad->states1 = crl_array_batch_major(dt, d->nb ? d->d_states1 : NULL, d->nb, d->later, n);
    grad->pred = crl_array_batch_major(dt, d->nb ? d->d_pred : NULL, d->nb, T, k_out);
    grad->w_in = crl_matrix_dense(dt, d->d_w[0], n, net->n_in);
    grad->w_hid = crl_matrix_dense(dt, d->d_w[1], n, n);
    grad->w_out = crl_matrix_dense(dt, d->d_w[2], k_out, n);
    grad->w_hebb = crl_matrix_dense(dt, d->d_w[3], n, n);

    double best = INFINITY, sum = 0;
    for (int64_t rep = 0; rep < o->repeat; rep++) {
        zero_grads(d, o, net);
        MPI_Barrier(comm);
        double t0 = MPI_Wtime();
        int rc = crl_loss_evaluate(loss, in, grad);
        double local = MPI_Wtime() - t0, slowest = 0;
        MPI_Allreduce(&local, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
        if (rc != CRL_OK) {
            cli_error(ctx, "%s", cli_context_error(ctx));
            return CLI_EXIT_FAILED;
        }
        best = slowest < best ? slowest : best;
        sum += slowest;
    }

    double norms[7] = {
        norm(d->d_states, dt, d->nb * T * n, comm, false),
        norm(d->d_states1, dt, d->nb * d->later * n, comm, false),
        norm(d->d_pred, dt, d->nb * T * k_out, comm, false),
    };
    for (int k = 0; k < 4; k++)
        norms[3 + k] = norm(d->d_w[k], dt, wsizes[k], comm, true);
    if (root) {
        printf("ctrnn-loss demo: a simulated CTRNN on %d MPI rank(s), %s\n"
               "  batch %lld, time %lld (+ %lld later steps for population_kl), neurons %lld, "
               "inputs %lld, outputs %lld\n"
               "  relu rates, alpha = dt/tau = 0.1, seed %lld; simulation %.3f s on rank 0\n\n",
               size, cli_dtype_name(dt), (long long) o->batch, (long long) T,
               (long long) d->later, (long long) n, (long long) net->n_in, (long long) k_out,
               (long long) o->seed, t_sim);
        cli_print_table(stdout, loss);
        static const char *const names[7] = {"states", "states1", "pred", "w_in",
                                             "w_hid", "w_out", "w_hebb"};
        printf("\ngradient norms (2-norm over the whole batch):\n ");
        for (int k = 0; k < 7; k++)
            printf(" %s %.6g%s", names[k], norms[k], k == 3 ? "\n " : "");
        printf("\ntime per evaluation (values and all gradients, slowest rank, %d rank(s)):\n"
               "  best %.3f ms, mean %.3f ms over %lld evaluation(s)\n",
               size, 1e3 * best, 1e3 * sum / (double) o->repeat, (long long) o->repeat);
        fflush(stdout);
    }
    return finite_difference(ctx, loss, d, o, net);
}

int cli_demo(crl_context *ctx, int argc, char **argv)
{
    demo_options o;
    int status = parse_options(ctx, argc, argv, &o);
    if (status < 0) {
        if (crl_context_rank(ctx) == 0)
            fputs(demo_usage, stdout);
        return CLI_EXIT_OK;
    }
    if (status != CLI_EXIT_OK)
        return status;

    network net = {.n = o.neurons, .n_in = o.inputs, .k = o.outputs};
    int64_t n = net.n;
    size_t es = crl_dtype_size(o.dtype);
    net.w_in = malloc(sizeof(double) * (size_t) (n * net.n_in));
    net.w_hid_t = malloc(sizeof(double) * (size_t) (n * n));
    net.w_out = malloc(sizeof(double) * (size_t) (net.k * n));
    net.w_in_d = malloc(es * (size_t) (n * net.n_in));
    net.w_hid_d = malloc(es * (size_t) (n * n));
    net.w_out_d = malloc(es * (size_t) (net.k * n));
    crl_loss *loss = NULL;
    demo_data d = {0};
    crl_error err = {0};
    if (!net.w_in || !net.w_hid_t || !net.w_out || !net.w_in_d || !net.w_hid_d || !net.w_out_d
        || crl_loss_create(ctx, &loss) != CRL_OK)
        crl_fail(&err, CRL_ERR_NOMEM, "out of memory for the network");
    if (crl_agree(ctx, &err) != CRL_OK) {
        cli_error(ctx, "%s", cli_context_error(ctx));
        status = CLI_EXIT_FAILED;
    } else {
        uint64_t seed = (uint64_t) o.seed;
        fill_weights(net.w_in, net.w_in_d, o.dtype, n, net.n_in, 1.0, seed * 3 + 1, false);
        fill_weights(net.w_hid_t, net.w_hid_d, o.dtype, n, n, 1.5 / sqrt((double) n),
                     seed * 3 + 2, true);
        fill_weights(net.w_out, net.w_out_d, o.dtype, net.k, n, 1.0 / sqrt((double) n),
                     seed * 3 + 3, false);
        status = build_loss(ctx, loss);
        if (status == CLI_EXIT_OK)
            status = run_demo(ctx, &o, &net, &d, loss);
    }
    crl_loss_destroy(&loss);
    free(net.w_in), free(net.w_hid_t), free(net.w_out);
    free(net.w_in_d), free(net.w_hid_d), free(net.w_out_d);
    free(d.rates), free(d.pred), free(d.label);
    free(d.d_states), free(d.d_states1), free(d.d_pred);
    for (int k = 0; k < 4; k++)
        free(d.d_w[k]);
    return status;
}
