/*
 * bench.c - times forward + backward of the benchmark workloads in-process,
 * next to the limits measured in the same run with the same ranks: a
 * STREAM-style memory bandwidth probe and, for hebbian, the BLAS calls alone.
 *
 *   mpirun -np P build/bench/ctrnn-bench [--reps R] [--scale S] [--accumulate] [--csv]
 *                                        [WORKLOAD...]
 *
 * Workloads (float32, batch-major, global sizes B, T, N; each rank holds its
 * even share of the batch):
 *   rnn_loss         (128, 500, 256), K = 2, all seven lambdas non-zero
 *   all_state        (128, 500, 256): fr l1 + l2, fr_dist sd cv mean_ad max_ad,
 *                    state_pred tau=1, entropy, as one composite
 *   population_kl    (128, 500, 256) against a second population of that shape
 *   hebbian          (64, 200, 512)
 *   all_state_large  (32, 1000, 2048)
 *   single_trial     (1, 20000, 512): all_state's terms on one long trial,
 *                    its time split over the ranks (crl_loss_set_block)
 *   single_trial_hebbian  (1, 20000, 512): hebbian with dL/dW, time split
 * --scale S multiplies B (T for the single trials; e.g. 0.25).
 * The backward overwrites the gradient buffers (CRL_GRAD_OVERWRITE), as the
 * command and the Python binding run it and as the bandwidth bound counts
 * a gradient (written, not read); --accumulate adds into them instead (the
 * C API's default, which reads every gradient buffer too).
 *
 * Also per workload: each phase timed alone (crl_loss_accumulate,
 * crl_loss_reduce, crl_loss_backward, each its median over the repetitions
 * of the slowest rank; the CSV keeps the reduction's) and the bytes the
 * reduction hands to MPI_Allreduce, counted through MPI's profiling
 * interface.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "ctrnnloss.h"

typedef struct workload {
    const char *name;
    int64_t B, T, N;
    const char *terms[10][3];   /* name, type, params; weight 1 */
    int K, N_in;                /* outputs and input weights (rnn_loss) */
    bool states1, hebb;
    bool time_split;            /* one trial: each rank holds a time block */
} workload;

/* all_state's composite, also that of the larger and the single-trial runs. */
#define ALL_STATE_TERMS                                                                        \
    {{"fr_l1", "fr", "metric=l1"},                                                             \
     {"fr_l2", "fr", "metric=l2"},                                                             \
     {"sd", "fr_dist", "metric=sd"},                                                           \
     {"cv", "fr_dist", "metric=cv"},                                                           \
     {"mean_ad", "fr_dist", "metric=mean_ad"},                                                 \
     {"max_ad", "fr_dist", "metric=max_ad"},                                                   \
     {"pred", "state_pred", "tau=1"},                                                          \
     {"entropy", "entropy", "reg=10"}}

static const workload workloads[] = {
    {"rnn_loss", 128, 500, 256,
     {{"rnn", "rnn",
       "lambda_mse=1,lambda_in=0.01,lambda_hid=0.01,lambda_out=0.01,lambda_fr=0.1,"
       "lambda_fr_sd=0.05,lambda_fr_cv=0.02"}},
     2, 16, false, false, false},
    {"all_state", 128, 500, 256,
     ALL_STATE_TERMS,
     0, 0, false, false, false},
    {"population_kl", 128, 500, 256, {{"kl", "population_kl", "symmetric=true,reg=1e-3"}}, 0, 0,
     true, false, false},
    {"hebbian", 64, 200, 512, {{"hebb", "hebbian", ""}}, 0, 0, false, true, false},
    {"all_state_large", 32, 1000, 2048,
     ALL_STATE_TERMS,
     0, 0, false, false, false},
    {"single_trial", 1, 20000, 512,
     ALL_STATE_TERMS,
     0, 0, false, false, true},
    {"single_trial_hebbian", 1, 20000, 512, {{"hebb", "hebbian", ""}}, 0, 0, false, true, true},
};

static int rank, size;
static crl_grad_mode grad_mode = CRL_GRAD_OVERWRITE;

/* MPI_Allreduce through PMPI: the bytes of the library's reductions while
 * counting is on (the library calls it from its shared object; this
 * definition in the executable comes first). */
static bool counting;
static double reduced_bytes;

int MPI_Allreduce(const void *send, void *recv, int count, MPI_Datatype type, MPI_Op op,
                  MPI_Comm comm)
{
    if (counting) {
        int bytes;
        MPI_Type_size(type, &bytes);
        reduced_bytes += (double) count * bytes;
    }
    return PMPI_Allreduce(send, recv, count, type, op, comm);
}

static double uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double) (*s >> 11) * 0x1.0p-53;
}

/* Steps t0 .. t0 + nt - 1 of elements b0 .. b0 + count - 1: element b of
 * the global batch gets the same numbers whatever the split. */
static float *rates_block(int64_t b0, int64_t count, int64_t N, uint64_t salt, int64_t t0,
                          int64_t nt)
{
    float *x = malloc(sizeof(float) * (size_t) (count * nt * N + 1));
    for (int64_t b = 0; b < count; b++) {
        uint64_t s = (uint64_t) (b0 + b) * 2654435761ULL + salt;
        for (int64_t k = 0; k < (t0 + nt) * N; k++) {
            float v = (float) uniform(&s);
            if (k >= t0 * N)
                x[b * nt * N + k - t0 * N] = v;
        }
    }
    return x;
}

static float *rates(int64_t b0, int64_t count, int64_t T, int64_t N, uint64_t salt)
{
    return rates_block(b0, count, N, salt, 0, T);
}

/* Rank q's share of T steps in whole units of CRL_TIME_UNIT, as even as
 * the units allow: first step and count. */
static void time_share(int64_t T, int q, int parts, int64_t *t0, int64_t *nt)
{
    int64_t units = (T + CRL_TIME_UNIT - 1) / CRL_TIME_UNIT, per = units / parts;
    int64_t extra = units % parts, u0 = q * per + (q < extra ? q : extra);
    int64_t u1 = u0 + per + (q < extra);
    *t0 = u0 * CRL_TIME_UNIT < T ? u0 * CRL_TIME_UNIT : T;
    *nt = (u1 * CRL_TIME_UNIT < T ? u1 * CRL_TIME_UNIT : T) - *t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static double median_of(double *t, int reps)
{
    qsort(t, (size_t) reps, sizeof *t, cmp_double);
    return reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
}

/* Median over repetitions of the slowest rank's time of fn(arg). */
static double time_median(int reps, void (*fn)(void *), void *arg)
{
    double *t = malloc(sizeof(double) * (size_t) reps);
    fn(arg); /* warm-up */
    fn(arg);
    for (int r = 0; r < reps; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        fn(arg);
        double dt = MPI_Wtime() - t0, slowest;
        MPI_Allreduce(&dt, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        t[r] = slowest;
    }
    double median = median_of(t, reps);
    free(t);
    return median;
}

/* ---- STREAM-style probe: every rank reads one array and writes another
 * (through the caches, and with streaming stores: the better counts). */
typedef struct probe {
    float *a, *b;
    int64_t n;
} probe;

static void probe_scale(void *arg)
{
    probe *p = arg;
    float *restrict a = p->a, *restrict b = p->b;
    for (int64_t i = 0; i < p->n; i++)
        b[i] = 0.5f * a[i] + 1.0f;
}

/* probe_scale with streaming stores (the library's for large gradients):
 * the read+write rate is the better of the two, so that the bound stays a
 * bound for a pass that streams its writes. */
static void probe_scale_stream(void *arg)
{
    probe *p = arg;
#if defined(__SSE2__)
    const float *restrict a = p->a;
    float *restrict b = p->b;   /* malloc's 16-byte alignment */
    int64_t i = 0;
    for (; i + 4 <= p->n; i += 4)
        _mm_stream_ps(b + i, _mm_add_ps(_mm_mul_ps(_mm_set1_ps(0.5f), _mm_loadu_ps(a + i)),
                                        _mm_set1_ps(1.0f)));
    _mm_sfence();
    for (; i < p->n; i++)
        b[i] = 0.5f * a[i] + 1.0f;
#else
    probe_scale(arg);
#endif
}

/* Reads the array; with ahead > 0, asking for the line ahead floats on as
 * the library's passes do (the better of the two counts). */
static void probe_read_ahead(const probe *p, int64_t ahead)
{
    /* 16 independent lanes: vectorizes without reassociation. */
    float acc[16] = {0};
    for (int64_t i = 0; i + 15 < p->n; i += 16) {
        if (ahead)
            __builtin_prefetch(p->a + i + ahead, 0, 3);
        for (int j = 0; j < 16; j++)
            acc[j] += p->a[i + j];
    }
    volatile float sink = 0;
    for (int j = 0; j < 16; j++)
        sink += acc[j];
}

static void probe_read(void *arg)
{
    probe_read_ahead(arg, 0);
}

static void probe_read_prefetch(void *arg)
{
    probe_read_ahead(arg, 1024);   /* 4 KiB, the library's distance */
}

/* Aggregate bytes per second over all ranks: read+write, and read only. */
static void bandwidth(int reps, double *rw, double *ro)
{
    probe p;
    p.n = ((int64_t) 64 << 20) / 4; /* 64 MiB per array per rank, beyond caches */
    p.a = malloc(sizeof(float) * (size_t) p.n);
    p.b = malloc(sizeof(float) * (size_t) p.n);
    for (int64_t i = 0; i < p.n; i++)
        p.a[i] = p.b[i] = (float) i;
    double t = time_median(reps, probe_scale, &p), ts = time_median(reps, probe_scale_stream, &p);
    *rw = 2.0 * 4 * (double) p.n * size / (ts < t ? ts : t);
    t = time_median(reps, probe_read, &p);
    ts = time_median(reps, probe_read_prefetch, &p);
    *ro = 4.0 * (double) p.n * size / (ts < t ? ts : t);
    free(p.a);
    free(p.b);
}

/* ---- one workload */
typedef struct run {
    crl_loss *loss;
    crl_tensors in, grad;
} run;

static void evaluate(void *arg)
{
    run *r = arg;
    if (crl_loss_evaluate(r->loss, &r->in, &r->grad) != CRL_OK) {
        fprintf(stderr, "evaluation failed\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

/* The phases of one evaluation, each timed on its own (median over reps
 * of the slowest rank): phase[0] the accumulate (forward), phase[1] the
 * reduction, phase[2] the backward; and the bytes the reduction hands to
 * MPI_Allreduce. */
static void phase_medians(run *r, int reps, double phase[3], double *bytes)
{
    double *t = malloc(sizeof(double) * 3 * (size_t) reps);
    for (int k = 0; k < reps; k++) {
        double dt[3];
        int rc = CRL_OK;
        for (int p = 0; p < 3 && rc == CRL_OK; p++) {
            MPI_Barrier(MPI_COMM_WORLD);
            reduced_bytes = 0;
            counting = p == 1;
            double t0 = MPI_Wtime();
            rc = p == 0   ? crl_loss_accumulate(r->loss, &r->in, &r->grad)
                 : p == 1 ? crl_loss_reduce(r->loss)
                          : crl_loss_backward(r->loss, &r->in, &r->grad);
            dt[p] = MPI_Wtime() - t0;
            if (p == 1)
                *bytes = reduced_bytes;
            counting = false;
        }
        if (rc != CRL_OK) {
            fprintf(stderr, "evaluation failed\n");
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        for (int p = 0; p < 3; p++)
            MPI_Allreduce(&dt[p], &t[p * reps + k], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    }
    for (int p = 0; p < 3; p++)
        phase[p] = median_of(t + p * reps, reps);
    free(t);
}

/* The BLAS calls of a hebbian evaluation alone: syrk forward, gemm back. */
typedef struct blas_run {
    const float *s;
    float *c, *w, *out;
    int64_t nb, T, N;
} blas_run;

static void blas_only(void *arg)
{
    blas_run *r = arg;
    for (int64_t b = 0; b < r->nb; b++) {
        const float *sb = r->s + b * r->T * r->N;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int) r->N, (int) r->T,
                    1.0f / (float) r->T, sb, (int) r->N, 0.0f, r->c, (int) r->N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) r->T, (int) r->N, (int) r->N,
                    1.0f, sb, (int) r->N, r->w, (int) r->N, 0.0f, r->out, (int) r->N);
    }
}

/* Resident memory (VmRSS) or its peak (VmHWM) in KiB, from /proc. */
static long proc_status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t len = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, len) && line[len] == ':')
            v = atol(line + len + 1);
    if (f)
        fclose(f);
    if (v < 0 && !strcmp(key, "VmHWM")) {
        struct rusage u;
        getrusage(RUSAGE_SELF, &u);
        v = u.ru_maxrss;
    }
    return v;
}

/* Starts a new peak: Linux resets VmHWM to the current RSS on "5". */
static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static long max_over_ranks(long mine)
{
    long most;
    MPI_Allreduce(&mine, &most, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
    return most;
}

static void bench(const workload *w, double scale, int reps, double bw_rw, double bw_ro, bool csv)
{
    int64_t B = (int64_t) llround((double) w->B * scale);
    if (B < size)
        B = size;
    int64_t T = w->T, N = w->N, K = w->K;
    int64_t nb = B / size + (rank < B % size), b0 = rank * (B / size) + (rank < B % size ? rank : B % size);
    int64_t t0 = 0, nt = T;
    if (w->time_split) {
        B = w->B;
        nb = B;
        b0 = 0;
        T = (int64_t) llround((double) w->T * scale);
        time_share(T, rank, size, &t0, &nt);
        if (nt == 0)
            nb = 0;
    }
    reset_peak();
    long baseline = proc_status_kib("VmRSS");
    crl_context *ctx;
    run r = {0};
    crl_context_create(MPI_COMM_WORLD, &ctx);
    crl_loss_create(ctx, &r.loss);
    crl_loss_set_grad_mode(r.loss, grad_mode);
    for (int k = 0; k < 10 && w->terms[k][0]; k++)
        if (crl_loss_add(r.loss, w->terms[k][0], w->terms[k][1], 1.0, w->terms[k][2]) != CRL_OK) {
            if (rank == 0)
                printf("%-16s skipped: %s\n", w->name, crl_context_error(ctx));
            crl_loss_destroy(&r.loss);
            crl_context_destroy(&ctx);
            return;
        }
    if (w->time_split) {
        crl_block block = {B, 0, T, t0};
        crl_loss_set_block(r.loss, &block);
    }
    float *s = rates_block(b0, nb, N, 1, t0, nt);
    float *ds = calloc((size_t) (nb * nt * N + 1), sizeof(float));
    float *s1 = NULL, *ds1 = NULL, *pred = NULL, *label = NULL, *dpred = NULL;
    float *w_in = NULL, *w_hid = NULL, *w_out = NULL, *dw_in = NULL, *dw_hid = NULL, *dw_out = NULL;
    float *w_hebb = NULL, *dw_hebb = NULL;
    double bytes_in = 4.0 * (double) (B * T * N), bytes_grad = bytes_in;
    r.in.states = crl_array_batch_major(CRL_FLOAT32, s, nb, nt > 0 ? nt : 1, N);
    r.grad.states = crl_array_batch_major(CRL_FLOAT32, ds, nb, nt > 0 ? nt : 1, N);
    if (w->states1) {
        s1 = rates(b0, nb, T, N, 2);
        ds1 = calloc((size_t) (nb * T * N + 1), sizeof(float));
        r.in.states1 = crl_array_batch_major(CRL_FLOAT32, s1, nb, T, N);
        r.grad.states1 = crl_array_batch_major(CRL_FLOAT32, ds1, nb, T, N);
        bytes_in *= 2;
        bytes_grad *= 2;
    }
    if (K) {
        pred = rates(b0, nb, T, K, 3);
        label = rates(b0, nb, T, K, 4);
        dpred = calloc((size_t) (nb * T * K + 1), sizeof(float));
        r.in.pred = crl_array_batch_major(CRL_FLOAT32, pred, nb, T, K);
        r.in.label = crl_array_batch_major(CRL_FLOAT32, label, nb, T, K);
        r.grad.pred = crl_array_batch_major(CRL_FLOAT32, dpred, nb, T, K);
        w_in = rates(0, 1, N, w->N_in, 5);
        w_hid = rates(0, 1, N, N, 6);
        w_out = rates(0, 1, K, N, 7);
        dw_in = calloc((size_t) (N * w->N_in), sizeof(float));
        dw_hid = calloc((size_t) (N * N), sizeof(float));
        dw_out = calloc((size_t) (K * N), sizeof(float));
        r.in.w_in = crl_matrix_dense(CRL_FLOAT32, w_in, N, w->N_in);
        r.in.w_hid = crl_matrix_dense(CRL_FLOAT32, w_hid, N, N);
        r.in.w_out = crl_matrix_dense(CRL_FLOAT32, w_out, K, N);
        r.grad.w_in = crl_matrix_dense(CRL_FLOAT32, dw_in, N, w->N_in);
        r.grad.w_hid = crl_matrix_dense(CRL_FLOAT32, dw_hid, N, N);
        r.grad.w_out = crl_matrix_dense(CRL_FLOAT32, dw_out, K, N);
        bytes_in += 2 * 4.0 * (double) (B * T * K);
        bytes_grad += 4.0 * (double) (B * T * K);
    }
    if (w->hebb) {
        w_hebb = rates(0, 1, N, N, 8);
        for (int64_t k = 0; k < N * N; k++)
            w_hebb[k] -= 0.5f;
        dw_hebb = calloc((size_t) (N * N), sizeof(float));
        r.in.w_hebb = crl_matrix_dense(CRL_FLOAT32, w_hebb, N, N);
        r.grad.w_hebb = crl_matrix_dense(CRL_FLOAT32, dw_hebb, N, N);
    }

    double seconds = time_median(reps, evaluate, &r);
    double red_bytes = 0, phase[3];
    phase_medians(&r, reps, phase, &red_bytes);
    double red_seconds = phase[1];
    /* The bandwidth bound: forward must read the inputs (at the read-only
     * probe's rate), backward must read them again and write the gradients
     * (at the read+write probe's rate, which counts both). */
    double bound = bytes_in / bw_ro + (bytes_in + bytes_grad) / bw_rw;
    double states_gbs = 4.0 * (double) (B * T * N) / seconds / 1e9;
    double blas_seconds = 0;
    if (w->hebb) {
        blas_run br = {s, malloc(sizeof(float) * (size_t) (N * N)), w_hebb,
                       malloc(sizeof(float) * (size_t) (nt * N + 1)), nb, nt, N};
        blas_seconds = time_median(reps, blas_only, &br);
        free(br.c);
        free(br.out);
    }
    /* Peak memory of this workload beyond what the process held before it,
     * next to what the inputs and gradients themselves take. */
    long rss = max_over_ranks(proc_status_kib("VmHWM") - baseline);
    double data_mib = (bytes_in + bytes_grad) / size / 1048576.0;
    if (rank == 0) {
        const char *limit = w->hebb ? "blas" : "bandwidth";
        double limit_s = w->hebb ? blas_seconds : bound;
        if (csv)
            printf("%s,%d,%lld,%lld,%lld,%.6g,%.4g,%s,%.6g,%.4f,%ld,%.1f,%.6g,%.0f\n", w->name,
                   size, (long long) B, (long long) T, (long long) N, seconds, states_gbs, limit,
                   limit_s, limit_s / seconds, rss, data_mib, red_seconds, red_bytes);
        else
            printf("%-16s B=%-4lld T=%-5lld N=%-5lld %9.3f ms  states %6.2f GB/s  %s limit %8.3f ms"
                   "  = %5.1f%%  memory %6.1f MiB/rank (inputs+grads %6.1f)"
                   "  forward %7.3f ms  reduce %7.3f ms of %.0f KiB  backward %7.3f ms\n",
                   w->name, (long long) B, (long long) T, (long long) N, seconds * 1e3, states_gbs,
                   limit, limit_s * 1e3, 100 * limit_s / seconds, rss / 1024.0, data_mib,
                   phase[0] * 1e3, red_seconds * 1e3, red_bytes / 1024.0, phase[2] * 1e3);
        fflush(stdout);
    }
    crl_loss_destroy(&r.loss);
    crl_context_destroy(&ctx);
    free(s), free(ds), free(s1), free(ds1), free(pred), free(label), free(dpred);
    free(w_in), free(w_hid), free(w_out), free(dw_in), free(dw_hid), free(dw_out);
    free(w_hebb), free(dw_hebb);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
#if defined(HAVE_OPENBLAS_SET_NUM_THREADS)
    /* The ranks are the parallelism (as in tests/mpi-run): OpenBLAS threads
     * in every rank would oversubscribe the cores in hebbian. */
    openblas_set_num_threads(1);
#endif
    int reps = 10;
    double scale = 1.0;
    bool csv = false;
    const char *only[8];
    int n_only = 0;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--reps") && k + 1 < argc)
            reps = atoi(argv[++k]);
        else if (!strcmp(argv[k], "--scale") && k + 1 < argc)
            scale = atof(argv[++k]);
        else if (!strcmp(argv[k], "--csv"))
            csv = true;
        else if (!strcmp(argv[k], "--accumulate"))
            grad_mode = CRL_GRAD_ACCUMULATE;
        else if (!strcmp(argv[k], "--help")) {
            if (rank == 0)
                printf("usage: mpirun -np P ctrnn-bench [--reps R] [--scale S] [--accumulate] "
                       "[--csv] [rnn_loss|all_state|population_kl|hebbian|all_state_large|"
                       "single_trial|single_trial_hebbian...]\n");
            MPI_Finalize();
            return 0;
        } else if (n_only < 8)
            only[n_only++] = argv[k];
    }
    if (reps < 10)
        reps = 10;
    double bw_rw, bw_ro;
    bandwidth(reps, &bw_rw, &bw_ro);
    if (rank == 0) {
        if (csv)
            printf("workload,ranks,B,T,N,seconds,states_GBps,limit,limit_seconds,fraction,"
                   "peak_extra_rss_KiB,inputs_grads_MiB_per_rank,reduce_seconds,reduce_bytes\n");
        else
            printf("ctrnn-bench: %d rank(s), float32, forward+backward (gradients %s), median "
                   "of %d; probe: read+write %.2f GB/s, read %.2f GB/s (all ranks)\n",
                   size, grad_mode == CRL_GRAD_OVERWRITE ? "overwritten" : "accumulated", reps,
                   bw_rw / 1e9, bw_ro / 1e9);
    }
    for (size_t k = 0; k < sizeof workloads / sizeof workloads[0]; k++) {
        bool want = n_only == 0;
        for (int j = 0; j < n_only; j++)
            want |= !strcmp(only[j], workloads[k].name);
        if (want)
            bench(&workloads[k], scale, reps, bw_rw, bw_ro, csv);
    }
    MPI_Finalize();
    return 0;
}
