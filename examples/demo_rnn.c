/*
 * demo_rnn.c - each rank simulates its share of a small CTRNN batch (relu
 * rates, alpha = dt/tau = 0.1), evaluates RNNLoss with every component on,
 * and rank 0 prints the weighted components and the gradient norms.
 *
 *   mpirun -np 2 examples/demo_rnn [B T N]
 *
 * Batch element b is simulated from seed b, so the numbers do not depend on
 * the number of ranks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctrnnloss.h"

static double uniform(unsigned long long *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double) (*s >> 11) * 0x1.0p-53;
}

static void fill(float *w, long n, double scale, unsigned long long seed)
{
    for (long k = 0; k < n; k++)
        w[k] = (float) (scale * (2 * uniform(&seed) - 1));
}

/* r <- (1 - alpha) r + alpha relu(W_hid r + W_in u); y = W_out r. */
static void simulate(long b, long T, long N, long N_in, long K, const float *w_in,
                     const float *w_hid, const float *w_out, float *rates, float *pred,
                     float *label)
{
    unsigned long long seed = 1000 + (unsigned long long) b;
    double *r = calloc((size_t) N, sizeof *r), *next = calloc((size_t) N, sizeof *next);
    double u[8];
    double freq = 0.05 + 0.1 * uniform(&seed);
    for (long t = 0; t < T; t++) {
        for (long j = 0; j < N_in; j++)
            u[j] = sin(freq * (double) t + (double) j) + 0.1 * (2 * uniform(&seed) - 1);
        for (long i = 0; i < N; i++) {
            double x = 0;
            for (long j = 0; j < N; j++)
                x += w_hid[i * N + j] * r[j];
            for (long j = 0; j < N_in; j++)
                x += w_in[i * N_in + j] * u[j];
            next[i] = 0.9 * r[i] + 0.1 * (x > 0 ? x : 0);
        }
        for (long i = 0; i < N; i++) {
            r[i] = next[i];
            rates[t * N + i] = (float) r[i];
        }
        for (long k = 0; k < K; k++) {
            double y = 0;
            for (long i = 0; i < N; i++)
                y += w_out[k * N + i] * r[i];
            pred[t * K + k] = (float) y;
            label[t * K + k] = (float) sin(freq * (double) (t + 10) + (double) k);
        }
    }
    free(r);
    free(next);
}

static double norm2(const float *x, long n, MPI_Comm comm, int replicated)
{
    double s = 0, all = 0;
    for (long k = 0; k < n; k++)
        s += (double) x[k] * x[k];
    if (replicated)
        return sqrt(s);
    MPI_Allreduce(&s, &all, 1, MPI_DOUBLE, MPI_SUM, comm);
    return sqrt(all);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long B = argc > 1 ? atol(argv[1]) : 16, T = argc > 2 ? atol(argv[2]) : 100;
    long N = argc > 3 ? atol(argv[3]) : 64, N_in = 3, K = 2;
    long b0 = rank * (B / size) + (rank < B % size ? rank : B % size);
    long nb = B / size + (rank < B % size);

    float *w_in = malloc(sizeof(float) * (size_t) (N * N_in));
    float *w_hid = malloc(sizeof(float) * (size_t) (N * N));
    float *w_out = malloc(sizeof(float) * (size_t) (K * N));
    fill(w_in, N * N_in, 1.0, 1);
    fill(w_hid, N * N, 1.5 / sqrt((double) N), 2);
    fill(w_out, K * N, 1.0 / sqrt((double) N), 3);
    float *rates = malloc(sizeof(float) * (size_t) (nb * T * N + 1));
    float *pred = malloc(sizeof(float) * (size_t) (nb * T * K + 1));
    float *label = malloc(sizeof(float) * (size_t) (nb * T * K + 1));
    for (long b = 0; b < nb; b++)
        simulate(b0 + b, T, N, N_in, K, w_in, w_hid, w_out, rates + b * T * N, pred + b * T * K,
                 label + b * T * K);

    crl_context *ctx;
    crl_loss *loss;
    crl_context_create(MPI_COMM_WORLD, &ctx);
    crl_loss_create(ctx, &loss);
    crl_loss_add(loss, "rnn", "rnn", 1.0,
                 "lambda_mse=1,lambda_in=0.01,lambda_hid=0.01,lambda_out=0.01,"
                 "lambda_fr=0.1,lambda_fr_sd=0.05,lambda_fr_cv=0.02");

    crl_tensors in = {0}, grad = {0};
    in.states = crl_array_batch_major(CRL_FLOAT32, rates, nb, T, N);
    in.pred = crl_array_batch_major(CRL_FLOAT32, pred, nb, T, K);
    in.label = crl_array_batch_major(CRL_FLOAT32, label, nb, T, K);
    in.w_in = crl_matrix_dense(CRL_FLOAT32, w_in, N, N_in);
    in.w_hid = crl_matrix_dense(CRL_FLOAT32, w_hid, N, N);
    in.w_out = crl_matrix_dense(CRL_FLOAT32, w_out, K, N);
    float *d_rates = calloc((size_t) (nb * T * N + 1), sizeof(float));
    float *d_pred = calloc((size_t) (nb * T * K + 1), sizeof(float));
    float *d_w_in = calloc((size_t) (N * N_in), sizeof(float));
    float *d_w_hid = calloc((size_t) (N * N), sizeof(float));
    float *d_w_out = calloc((size_t) (K * N), sizeof(float));
    grad.states = crl_array_batch_major(CRL_FLOAT32, d_rates, nb, T, N);
    grad.pred = crl_array_batch_major(CRL_FLOAT32, d_pred, nb, T, K);
    grad.w_in = crl_matrix_dense(CRL_FLOAT32, d_w_in, N, N_in);
    grad.w_hid = crl_matrix_dense(CRL_FLOAT32, d_w_hid, N, N);
    grad.w_out = crl_matrix_dense(CRL_FLOAT32, d_w_out, K, N);

    double t0 = MPI_Wtime();
    int rc = crl_loss_evaluate(loss, &in, &grad);
    double seconds = MPI_Wtime() - t0;
    if (rc != CRL_OK) {
        if (rank == 0)
            fprintf(stderr, "evaluation failed: %s\n", crl_context_error(ctx));
        MPI_Finalize();
        return 1;
    }
    double nr = norm2(d_rates, nb * T * N, MPI_COMM_WORLD, 0);
    double np = norm2(d_pred, nb * T * K, MPI_COMM_WORLD, 0);
    if (rank == 0) {
        printf("RNNLoss on a simulated CTRNN: B=%ld T=%ld N=%ld K=%ld, %d rank(s), float32\n", B, T,
               N, K, size);
        for (int64_t k = 0; k < crl_loss_value_count(loss); k++)
            printf("  %-12s %.17g\n", crl_loss_value_name(loss, k), *crl_loss_value(loss, k, NULL));
        printf("  %-12s %.17g\n", "total", crl_loss_total(loss));
        printf("gradient norms: states %.6g  pred %.6g  w_in %.6g  w_hid %.6g  w_out %.6g\n", nr,
               np, norm2(d_w_in, N * N_in, MPI_COMM_WORLD, 1),
               norm2(d_w_hid, N * N, MPI_COMM_WORLD, 1), norm2(d_w_out, K * N, MPI_COMM_WORLD, 1));
        printf("evaluation (forward + backward): %.3f ms\n", seconds * 1e3);
    }
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    free(w_in), free(w_hid), free(w_out), free(rates), free(pred), free(label);
    free(d_rates), free(d_pred), free(d_w_in), free(d_w_hid), free(d_w_out);
    MPI_Finalize();
    return 0;
}
