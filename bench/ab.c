/*
 * ab.c - two builds of libctrnnloss side by side in one process: both
 * shared libraries loaded (dlopen), the same composite added to each, and
 * forward + backward of each run in turn, one evaluation at a time, so that
 * the minutes in which a shared machine runs slower slow both alike.
 *
 *   build/bench/ctrnn-ab [--reps R] [--shape B,T,N] LIB_A LIB_B TERM...
 *
 * LIB_A, LIB_B: paths of libctrnnloss.so builds (e.g. a copy of
 * build/.libs/libctrnnloss.so.0 from each commit).  TERM: NAME=TYPE[:PARAMS]
 * as ctrnn-loss eval's --term takes it, weight 1.  float32 states of shape
 * (B, T, N), batch-major, default (128, 500, 256) as ctrnn-bench's
 * all_state, the same uniform rates for both; the gradients overwritten.
 * One rank.  Prints, for each library, the minimum and the median over the
 * repetitions (default 40, after 3 unmeasured ones) of the forward
 * (crl_loss_accumulate), the reduction and the backward, and whether the
 * two gradients are bitwise the same.
 *
 * The repetitions run in ABBA order; what is loaded first still tends to
 * run a few percent faster (a copy of one build against itself shows it),
 * so run each pair twice, the second time swapped.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctrnnloss.h"

/* The entry points of one loaded build, and its loss. */
typedef struct build {
    const char *path;
    void *lib;
    int (*context_create)(MPI_Comm, crl_context **);
    int (*context_destroy)(crl_context **);
    int (*loss_destroy)(crl_loss **);
    int (*loss_create)(crl_context *, crl_loss **);
    int (*set_grad_mode)(crl_loss *, crl_grad_mode);
    int (*add)(crl_loss *, const char *, const char *, double, const char *);
    int (*accumulate)(crl_loss *, const crl_tensors *, const crl_tensors *);
    int (*reduce)(crl_loss *);
    int (*backward)(crl_loss *, const crl_tensors *, const crl_tensors *);
    const char *(*error)(const crl_context *);
    crl_array (*batch_major)(crl_dtype, const void *, int64_t, int64_t, int64_t);
    crl_context *ctx;
    crl_loss *loss;
    float *grad;
} build;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "ctrnn-ab: %s: %s\n", what, why);
    MPI_Abort(MPI_COMM_WORLD, 2);
}

static void *symbol(void *lib, const build *b, const char *name)
{
    void *f = dlsym(lib, name);
    if (f == NULL)
        die(b->path, dlerror());
    return f;
}

/* Loads b->path and creates its loss.  RTLD_LOCAL: neither library's
 * symbols enter the global scope, so each one's calls among its own
 * functions resolve within itself. */
static void load(build *b, char **terms, int n_terms)
{
    void *lib = dlopen(b->path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        die(b->path, dlerror());
    b->lib = lib;
    *(void **) &b->context_create = symbol(lib, b, "crl_context_create");
    *(void **) &b->context_destroy = symbol(lib, b, "crl_context_destroy");
    *(void **) &b->loss_destroy = symbol(lib, b, "crl_loss_destroy");
    *(void **) &b->loss_create = symbol(lib, b, "crl_loss_create");
    *(void **) &b->set_grad_mode = symbol(lib, b, "crl_loss_set_grad_mode");
    *(void **) &b->add = symbol(lib, b, "crl_loss_add");
    *(void **) &b->accumulate = symbol(lib, b, "crl_loss_accumulate");
    *(void **) &b->reduce = symbol(lib, b, "crl_loss_reduce");
    *(void **) &b->backward = symbol(lib, b, "crl_loss_backward");
    *(void **) &b->error = symbol(lib, b, "crl_context_error");
    *(void **) &b->batch_major = symbol(lib, b, "crl_array_batch_major");
    if (b->context_create(MPI_COMM_SELF, &b->ctx) != CRL_OK
        || b->loss_create(b->ctx, &b->loss) != CRL_OK
        || b->set_grad_mode(b->loss, CRL_GRAD_OVERWRITE) != CRL_OK)
        die(b->path, "cannot create a loss");
    for (int k = 0; k < n_terms; k++) {
        char spec[512];
        snprintf(spec, sizeof spec, "%s", terms[k]);
        char *eq = strchr(spec, '='), *colon;
        if (eq == NULL)
            die(terms[k], "a term is NAME=TYPE[:PARAMS]");
        *eq = '\0';
        colon = strchr(eq + 1, ':');
        if (colon)
            *colon = '\0';
        if (b->add(b->loss, spec, eq + 1, 1.0, colon ? colon + 1 : "") != CRL_OK)
            die(terms[k], b->error(b->ctx));
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static void usage(void)
{
    fprintf(stderr, "usage: ctrnn-ab [--reps R] [--shape B,T,N] LIB_A LIB_B NAME=TYPE[:PARAMS]...\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 1)
        die("ctrnn-ab", "runs on one rank");
    long long B = 128, T = 500, N = 256;
    int reps = 40, k = 1;
    for (; k < argc && strncmp(argv[k], "--", 2) == 0; k++) {
        if (strcmp(argv[k], "--reps") == 0 && k + 1 < argc)
            reps = atoi(argv[++k]);
        else if (strcmp(argv[k], "--shape") == 0 && k + 1 < argc) {
            if (sscanf(argv[++k], "%lld,%lld,%lld", &B, &T, &N) != 3)
                usage();
        } else
            usage();
    }
    if (argc - k < 3 || reps < 1 || B < 1 || T < 1 || N < 1)
        usage();
    build lib[2] = {{.path = argv[k]}, {.path = argv[k + 1]}};
    size_t n = (size_t) (B * T * N);
    float *s = malloc(sizeof(float) * n);
    double *t = malloc(sizeof(double) * 6 * (size_t) reps);
    if (s == NULL || t == NULL)
        die("ctrnn-ab", "out of memory");
    for (int j = 0; j < 2; j++) {
        load(&lib[j], argv + k + 2, argc - k - 2);
        if ((lib[j].grad = calloc(n, sizeof(float))) == NULL)
            die("ctrnn-ab", "out of memory");
    }
    uint64_t state = 1;
    for (size_t i = 0; i < n; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        s[i] = (float) ((double) (state >> 11) * 0x1.0p-53);
    }
    for (int r = -3; r < reps; r++)
        for (int turn = 0; turn < 2; turn++) {
            int j = (r & 1) ? 1 - turn : turn; /* A B B A ... */
            build *b = &lib[j];
            crl_tensors in = {0}, grad = {0};
            in.states = b->batch_major(CRL_FLOAT32, s, B, T, N);
            grad.states = b->batch_major(CRL_FLOAT32, b->grad, B, T, N);
            double t0 = MPI_Wtime();
            int rc = b->accumulate(b->loss, &in, &grad);
            double t1 = MPI_Wtime();
            rc = rc ? rc : b->reduce(b->loss);
            double t2 = MPI_Wtime();
            rc = rc ? rc : b->backward(b->loss, &in, &grad);
            double t3 = MPI_Wtime();
            if (rc != CRL_OK)
                die(b->path, b->error(b->ctx));
            if (r >= 0) {
                t[(j * 3 + 0) * reps + r] = t1 - t0;
                t[(j * 3 + 1) * reps + r] = t2 - t1;
                t[(j * 3 + 2) * reps + r] = t3 - t2;
            }
        }
    printf("ctrnn-ab: (%lld, %lld, %lld) float32, %d repetitions in ABBA order, ms\n", B, T, N,
           reps);
    const char *phase[3] = {"forward", "reduce", "backward"};
    for (int j = 0; j < 2; j++) {
        double total = 0;
        printf("%c %s\n ", j ? 'B' : 'A', lib[j].path);
        for (int p = 0; p < 3; p++) {
            double *v = t + (j * 3 + p) * reps;
            qsort(v, (size_t) reps, sizeof *v, cmp_double);
            printf(" %s min %.3f median %.3f ", phase[p], 1e3 * v[0], 1e3 * v[reps / 2]);
            total += v[reps / 2];
        }
        printf(" sum of medians %.3f\n", 1e3 * total);
    }
    printf("gradients bitwise the same: %s\n",
           memcmp(lib[0].grad, lib[1].grad, sizeof(float) * n) ? "no" : "yes");
    for (int j = 0; j < 2; j++) {
        lib[j].loss_destroy(&lib[j].loss);
        lib[j].context_destroy(&lib[j].ctx);
        free(lib[j].grad);
        dlclose(lib[j].lib);
    }
    free(s);
    free(t);
    MPI_Finalize();
    return 0;
}
