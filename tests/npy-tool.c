/*
 * npy-tool.c - files for the command-line tests (tests/cli_*.sh), written
 * with plain stdio:
 *
 *   npy-tool gen DIR [--dtype f4|f8] [--time-major] [--seed S]
 *                    [--B n --T n --N n --K n --N-in n --B1 n --T1 n]
 *       deterministic inputs states, states1, pred, label, w_in, w_hid,
 *       w_out, w_hebb, mask (B, T, K) and mask1 (B, T, 1) (.npy); the same values for every layout, so that
 *       batch-major and time-major directories hold the same arrays
 *   npy-tool variants DIR SRC     SRC (an .npy file) as format 2.0 and 3.0 and
 *       with a differently written header: v2.npy v3.npy reordered.npy
 *   npy-tool broken DIR           deliberately broken files (see below)
 *   npy-tool set IN OUT VALUE INDEX...   IN with one element set (nan too)
 *   npy-tool scale IN OUT FACTOR  IN with every element times FACTOR
 *   npy-tool transpose IN OUT     swaps the first two axes of a 3-D array
 *   npy-tool sparse OUT f4|f8 D0 D1 D2 [INDEX=VALUE...]   a (D0, D1, D2) array
 *       of zeros as a sparse file (ftruncate), with the elements at the flat
 *       INDEXes set: arrays larger than the disk, for 64-bit index tests
 *   npy-tool ref [eval options]   the reference: reads whole files, evaluates
 *       on one process in memory (no MPI-IO), prints the JSON of
 *       `ctrnn-loss eval --json` (meta.ranks = 1) and with --grad-dir writes
 *       the gradient files
 *
 * The reference shares the library, the term parser and the JSON printer with
 * the command, not its file access, splitting, chunking or gradient writing.
 */
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *fmt, const char *what)
{
    fprintf(stderr, "npy-tool: ");
    fprintf(stderr, fmt, what);
    fputc('\n', stderr);
    exit(2);
}

/* ------------------------------------------------------------------------ */
/* Writing and reading whole files                                            */
/* ------------------------------------------------------------------------ */

/* Writes a then b to DIR/NAME (to NAME when dir is NULL). */
static void write_raw(const char *dir, const char *name, const void *a, size_t alen,
                      const void *b, size_t blen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s%s", dir ? dir : "", dir ? "/" : "", name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (alen && fwrite(a, 1, alen, f) != alen)
        || (blen && fwrite(b, 1, blen, f) != blen) || fclose(f) != 0)
        die("cannot write %s", path);
}

static void write_npy(const char *path, crl_dtype dtype, int ndim, const int64_t *shape,
                      const void *data)
{
    char header[1024];
    size_t len = 0;
    crl_error err = {0};
    if (crl_npy_format_header(dtype, ndim, shape, header, sizeof header, &len, &err) != CRL_OK)
        die("%s", err.message);
    int64_t count = 1;
    for (int k = 0; k < ndim; k++)
        count *= shape[k];
    write_raw(NULL, path, header, len, data, (size_t) count * crl_dtype_size(dtype));
}

/* A whole .npy file: header and data (malloc'd). */
typedef struct array {
    crl_npy_header h;
    void *data;
} array;

static bool read_npy(const char *path, array *a)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t) size + 1);
    if (buf == NULL || fread(buf, 1, (size_t) size, f) != (size_t) size)
        die("cannot read %s", path);
    fclose(f);
    crl_error err = {0};
    if (crl_npy_parse_header(buf, (size_t) size, &a->h, &err) != CRL_OK)
        die("%s", err.message);
    if (a->h.data_offset + a->h.data_bytes > size)
        die("%s is truncated", path);
    a->data = malloc((size_t) a->h.data_bytes + 1);
    memcpy(a->data, buf + a->h.data_offset, (size_t) a->h.data_bytes);
    free(buf);
    return true;
}

/* ------------------------------------------------------------------------ */
/* gen                                                                        */
/* ------------------------------------------------------------------------ */

static double uniform(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (double) ((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

static void put(void *data, crl_dtype dtype, int64_t k, double v)
{
    if (dtype == CRL_FLOAT32)
        ((float *) data)[k] = (float) v;
    else
        ((double *) data)[k] = v;
}

/* A (B, T, W) array of values in [lo, hi), stored batch- or time-major. */
static void gen_batched(const char *dir, const char *name, crl_dtype dtype, bool time_major,
                        int64_t B, int64_t T, int64_t W, double lo, double hi, uint64_t seed)
{
    void *data = malloc((size_t) (B * T * W) * crl_dtype_size(dtype) + 1);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < W; i++) {
                int64_t k = time_major ? (t * B + b) * W + i : (b * T + t) * W + i;
                put(data, dtype, k, lo + (hi - lo) * uniform(&seed));
            }
    int64_t shape[3] = {time_major ? T : B, time_major ? B : T, W};
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_npy(path, dtype, 3, shape, data);
    free(data);
}

static void gen_matrix(const char *dir, const char *name, crl_dtype dtype, int64_t rows,
                       int64_t cols, uint64_t seed)
{
    void *data = malloc((size_t) (rows * cols) * crl_dtype_size(dtype));
    for (int64_t k = 0; k < rows * cols; k++)
        put(data, dtype, k, uniform(&seed) - 0.5);
    int64_t shape[2] = {rows, cols};
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_npy(path, dtype, 2, shape, data);
    free(data);
}

static int64_t number(const char *text)
{
    int64_t v;
    if (!cli_parse_count(text, 0, &v))
        die("'%s' is not a number", text);
    return v;
}

static int cmd_gen(int argc, char **argv)
{
    if (argc < 2)
        die("%s", "usage: npy-tool gen DIR [options]");
    const char *dir = argv[1];
    crl_dtype dtype = CRL_FLOAT64;
    bool tm = false;
    int64_t B = 7, T = 6, N = 5, K = 3, N_in = 2, B1 = 5, T1 = 4, seed = 1;
    for (int k = 2; k < argc; k++) {
        const char *o = argv[k], *v = k + 1 < argc ? argv[k + 1] : "";
        if (strcmp(o, "--time-major") == 0) {
            tm = true;
            continue;
        }
        k++;
        if (strcmp(o, "--dtype") == 0)
            dtype = strcmp(v, "f4") == 0 ? CRL_FLOAT32 : CRL_FLOAT64;
        else if (strcmp(o, "--seed") == 0)
            seed = number(v);
        else if (strcmp(o, "--B") == 0)
            B = number(v);
        else if (strcmp(o, "--T") == 0)
            T = number(v);
        else if (strcmp(o, "--N") == 0)
            N = number(v);
        else if (strcmp(o, "--K") == 0)
            K = number(v);
        else if (strcmp(o, "--N-in") == 0)
            N_in = number(v);
        else if (strcmp(o, "--B1") == 0)
            B1 = number(v);
        else if (strcmp(o, "--T1") == 0)
            T1 = number(v);
        else
            die("unknown option %s", o);
    }
    uint64_t s = (uint64_t) seed * 100;
    /* Rates are positive (entropy needs S >= 0) and vary (population_kl). */
    gen_batched(dir, "states.npy", dtype, tm, B, T, N, 0.05, 1.05, s + 1);
    gen_batched(dir, "states1.npy", dtype, tm, B1, T1, N, 0.1, 1.3, s + 2);
    gen_batched(dir, "pred.npy", dtype, tm, B, T, K, -1, 1, s + 3);
    gen_batched(dir, "label.npy", dtype, tm, B, T, K, -1, 1, s + 4);
    gen_matrix(dir, "w_in.npy", dtype, N, N_in, s + 5);
    gen_matrix(dir, "w_hid.npy", dtype, N, N, s + 6);
    gen_matrix(dir, "w_out.npy", dtype, K, N, s + 7);
    gen_matrix(dir, "w_hebb.npy", dtype, N, N, s + 8);
    /* Output masks: per output, and per (b, t) broadcast over K. */
    gen_batched(dir, "mask.npy", dtype, tm, B, T, K, 0, 1, s + 9);
    gen_batched(dir, "mask1.npy", dtype, tm, B, T, 1, 0, 1, s + 10);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* variants, broken, nan, transpose                                           */
/* ------------------------------------------------------------------------ */

/* A file with the given version bytes and dictionary text (padded with
 * spaces and a newline like NumPy), followed by data. */
static void write_with_header(const char *dir, const char *name, int major, int minor,
                              const char *dict, const void *data, size_t len)
{
    char buf[2048];
    size_t preamble = major == 1 ? 10 : 12, n = strlen(dict);
    size_t total = (preamble + n + 1 + 63) / 64 * 64, hlen = total - preamble;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (char) major;
    buf[7] = (char) minor;
    for (size_t k = 0; k < preamble - 8; k++)
        buf[8 + k] = (char) ((hlen >> (8 * k)) & 0xff);
    memcpy(buf + preamble, dict, n);
    memset(buf + preamble + n, ' ', hlen - n - 1);
    buf[total - 1] = '\n';
    write_raw(dir, name, buf, total, data, len);
}

static void shape_tuple(const crl_npy_header *h, char *out, size_t cap)
{
    size_t n = (size_t) snprintf(out, cap, "(");
    for (int k = 0; k < h->ndim; k++)
        n += (size_t) snprintf(out + n, cap - n, "%s%lld", k ? ", " : "", (long long) h->shape[k]);
    snprintf(out + n, cap - n, h->ndim == 1 ? ",)" : ")");
}

static int cmd_variants(int argc, char **argv)
{
    if (argc != 3)
        die("%s", "usage: npy-tool variants DIR SRC");
    array a;
    if (!read_npy(argv[2], &a))
        die("cannot read %s", argv[2]);
    char shape[512], dict[1024];
    shape_tuple(&a.h, shape, sizeof shape);
    const char *descr = a.h.dtype == CRL_FLOAT32 ? "<f4" : "<f8";
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr,
             shape);
    write_with_header(argv[1], "v2.npy", 2, 0, dict, a.data, (size_t) a.h.data_bytes);
    write_with_header(argv[1], "v3.npy", 3, 0, dict, a.data, (size_t) a.h.data_bytes);
    /* Keys in another order, double quotes, no trailing comma, Python 2's L. */
    char longs[512] = "(";
    size_t n = 1;
    for (int k = 0; k < a.h.ndim; k++)
        n += (size_t) snprintf(longs + n, sizeof longs - n, "%s%lldL", k ? ", " : "",
                               (long long) a.h.shape[k]);
    snprintf(longs + n, sizeof longs - n, ")");
    snprintf(dict, sizeof dict, "{\"shape\": %s, \"fortran_order\": False, \"descr\": \"%s\"}",
             longs, descr);
    write_with_header(argv[1], "reordered.npy", 1, 0, dict, a.data, (size_t) a.h.data_bytes);
    free(a.data);
    return 0;
}

static int cmd_broken(int argc, char **argv)
{
    if (argc != 2)
        die("%s", "usage: npy-tool broken DIR");
    const char *dir = argv[1];
    double data[4 * 3 * 2];
    for (int k = 0; k < 24; k++)
        data[k] = 0.1 * (k + 1);
    const char *good = "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 3, 2), }";
    write_raw(dir, "empty.npy", "", 0, NULL, 0);
    write_raw(dir, "short_preamble.npy", "\x93NUMPY\x01\x00", 8, NULL, 0);
    /* A preamble announcing a 118-byte dictionary, 40 bytes of it present. */
    char cut[50];
    memcpy(cut, "\x93NUMPY\x01\x00\x76\x00", 10);
    memcpy(cut + 10, good, 40);
    write_raw(dir, "short_header.npy", cut, sizeof cut, NULL, 0);
    write_with_header(dir, "short_data.npy", 1, 0, good, data, sizeof data / 2);
    write_with_header(dir, "no_data.npy", 1, 0, good, NULL, 0);
    char magic[128];
    memcpy(magic, "\x93NUMPX\x01\x00", 8);
    write_raw(dir, "bad_magic.npy", magic, 8, good, strlen(good));
    write_raw(dir, "text.npy", "states,1,2,3\n", 13, NULL, 0);
    write_with_header(dir, "version4.npy", 4, 0, good, data, sizeof data);
    write_with_header(dir, "version1_1.npy", 1, 1, good, data, sizeof data);
    write_with_header(dir, "int32.npy", 1, 0,
                      "{'descr': '<i4', 'fortran_order': False, 'shape': (4, 3, 2), }", data,
                      sizeof data);
    write_with_header(dir, "big_endian.npy", 1, 0,
                      "{'descr': '>f8', 'fortran_order': False, 'shape': (4, 3, 2), }", data,
                      sizeof data);
    write_with_header(dir, "structured.npy", 1, 0,
                      "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (4, 3, 2), }",
                      data, sizeof data);
    write_with_header(dir, "fortran.npy", 1, 0,
                      "{'descr': '<f8', 'fortran_order': True, 'shape': (4, 3, 2), }", data,
                      sizeof data);
    write_with_header(dir, "not_dict.npy", 1, 0, "[4, 3, 2]", data, sizeof data);
    write_with_header(dir, "unclosed.npy", 1, 0,
                      "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 3, 2), ", data,
                      sizeof data);
    write_with_header(dir, "no_shape.npy", 1, 0, "{'descr': '<f8', 'fortran_order': False}",
                      data, sizeof data);
    write_with_header(dir, "extra_key.npy", 1, 0,
                      "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 3, 2), 'x': 1}",
                      data, sizeof data);
    write_with_header(dir, "negative.npy", 1, 0,
                      "{'descr': '<f8', 'fortran_order': False, 'shape': (4, -3, 2), }", data,
                      sizeof data);
    write_with_header(dir, "overflow.npy", 1, 0,
                      "{'descr': '<f8', 'fortran_order': False, "
                      "'shape': (4294967296, 4294967296, 2), }",
                      data, sizeof data);
    write_with_header(dir, "huge_dim.npy", 1, 0,
                      "{'descr': '<f8', 'fortran_order': False, "
                      "'shape': (99999999999999999999, 3, 2), }",
                      data, sizeof data);
    write_with_header(dir, "zero_batch.npy", 1, 0,
                      "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3, 2), }", data, 0);
    write_with_header(dir, "two_d.npy", 1, 0,
                      "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 6), }", data,
                      sizeof data);
    return 0;
}

static double value_of(const char *text)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || *end != '\0')
        die("'%s' is not a number", text);
    return v;
}

/* set IN OUT VALUE INDEX...: IN with one element (C-order indices) set. */
static int cmd_set(int argc, char **argv)
{
    array a;
    if (argc < 4 || !read_npy(argv[1], &a) || argc - 4 != a.h.ndim)
        die("%s", "usage: npy-tool set IN OUT VALUE INDEX... (one index per dimension)");
    int64_t k = 0;
    for (int d = 0; d < a.h.ndim; d++)
        k = k * a.h.shape[d] + number(argv[4 + d]);
    put(a.data, a.h.dtype, k, value_of(argv[3]));
    write_npy(argv[2], a.h.dtype, a.h.ndim, a.h.shape, a.data);
    free(a.data);
    return 0;
}

/* scale IN OUT FACTOR: every element times FACTOR. */
static int cmd_scale(int argc, char **argv)
{
    array a;
    if (argc != 4 || !read_npy(argv[1], &a))
        die("%s", "usage: npy-tool scale IN OUT FACTOR");
    double factor = value_of(argv[3]);
    for (int64_t k = 0; k < a.h.count; k++) {
        double v = a.h.dtype == CRL_FLOAT32 ? (double) ((float *) a.data)[k]
                                            : ((double *) a.data)[k];
        put(a.data, a.h.dtype, k, v * factor);
    }
    write_npy(argv[2], a.h.dtype, a.h.ndim, a.h.shape, a.data);
    free(a.data);
    return 0;
}

static int cmd_transpose(int argc, char **argv)
{
    if (argc != 3)
        die("%s", "usage: npy-tool transpose IN OUT");
    array a;
    if (!read_npy(argv[1], &a) || a.h.ndim != 3)
        die("cannot read a 3-D array from %s", argv[1]);
    int64_t d0 = a.h.shape[0], d1 = a.h.shape[1], w = a.h.shape[2];
    size_t row = (size_t) w * crl_dtype_size(a.h.dtype);
    char *out = malloc((size_t) a.h.data_bytes + 1);
    for (int64_t i = 0; i < d0; i++)
        for (int64_t j = 0; j < d1; j++)
            memcpy(out + (size_t) (j * d0 + i) * row, (char *) a.data + (size_t) (i * d1 + j) * row,
                   row);
    int64_t shape[3] = {d1, d0, w};
    write_npy(argv[2], a.h.dtype, 3, shape, out);
    free(out);
    free(a.data);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* ref                                                                        */
/* ------------------------------------------------------------------------ */

static const char *const options[CRL_ROLE_COUNT] = {
    "--states", "--states1", "--pred", "--label", "--mask", "--w-in", "--w-hid", "--w-out", "--w-hebb",
};

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        die("cannot read %s", path);
    char *text = malloc(1 << 20);
    *len = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    return text;
}

static int cmd_ref(int argc, char **argv)
{
    MPI_Init(NULL, NULL);
    array in[CRL_ROLE_COUNT] = {0};
    bool given[CRL_ROLE_COUNT] = {false}, time_major = false;
    const char *grad_dir = NULL;
    cli_terms terms = {0};
    crl_error err = {0};
    for (int k = 1; k < argc; k++) {
        const char *o = argv[k], *v = k + 1 < argc ? argv[k + 1] : NULL;
        if (strcmp(o, "--time-major") == 0) {
            time_major = true;
            continue;
        }
        if (v == NULL)
            die("%s needs a value", o);
        k++;
        int role = 0;
        while (role < CRL_ROLE_COUNT && strcmp(options[role], o) != 0)
            role++;
        if (role < CRL_ROLE_COUNT) {
            if (!read_npy(v, &in[role]))
                die("cannot read %s", v);
            given[role] = true;
        } else if (strcmp(o, "--term") == 0) {
            if (cli_terms_add_spec(&terms, v, &err) != CRL_OK)
                die("%s", err.message);
        } else if (strcmp(o, "--config") == 0) {
            size_t len;
            char *text = read_text(v, &len);
            if (cli_terms_add_ini(&terms, text, len, v, &err) != CRL_OK)
                die("%s", err.message);
            free(text);
        } else if (strcmp(o, "--grad-dir") == 0) {
            grad_dir = v;
        } else {
            die("unknown option %s", o);
        }
    }
    crl_context *ctx;
    crl_loss *loss;
    crl_context_create(MPI_COMM_SELF, &ctx);
    crl_loss_create(ctx, &loss);
    for (int k = 0; k < terms.count; k++)
        if (crl_loss_add(loss, terms.items[k].name, terms.items[k].type, terms.items[k].weight,
                         terms.items[k].params) != CRL_OK)
            die("%s", crl_context_error(ctx));

    crl_tensors t = {0}, g = {0};
    void *grad[CRL_ROLE_COUNT] = {NULL};
    crl_dtype dtype = CRL_FLOAT64;
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        if (!given[role])
            continue;
        const crl_npy_header *h = &in[role].h;
        dtype = h->dtype;
        bool want = grad_dir != NULL && role != CRL_ROLE_LABEL && role != CRL_ROLE_MASK;
        grad[role] = calloc(1, (size_t) h->data_bytes + 1);
        if (role < CRL_FIRST_MATRIX_ROLE) {
            int64_t B = h->shape[time_major ? 1 : 0], T = h->shape[time_major ? 0 : 1];
            crl_array (*layout)(crl_dtype, void *, int64_t, int64_t, int64_t) =
                time_major ? crl_array_time_major : crl_array_batch_major;
            crl_array a = layout(dtype, in[role].data, B, T, h->shape[2]);
            crl_array d = layout(dtype, grad[role], B, T, h->shape[2]);
            *(role == CRL_ROLE_STATES ? &t.states : role == CRL_ROLE_STATES1 ? &t.states1
                                                    : role == CRL_ROLE_PRED  ? &t.pred
                                                    : role == CRL_ROLE_MASK  ? &t.mask
                                                                             : &t.label) = a;
            if (want)
                *(role == CRL_ROLE_STATES ? &g.states : role == CRL_ROLE_STATES1 ? &g.states1
                                                                                  : &g.pred) = d;
        } else {
            crl_matrix m = crl_matrix_dense(dtype, in[role].data, h->shape[0], h->shape[1]);
            crl_matrix d = crl_matrix_dense(dtype, grad[role], h->shape[0], h->shape[1]);
            crl_matrix *tm = role == CRL_ROLE_W_IN ? &t.w_in : role == CRL_ROLE_W_HID ? &t.w_hid
                             : role == CRL_ROLE_W_OUT ? &t.w_out : &t.w_hebb;
            crl_matrix *gm = role == CRL_ROLE_W_IN ? &g.w_in : role == CRL_ROLE_W_HID ? &g.w_hid
                             : role == CRL_ROLE_W_OUT ? &g.w_out : &g.w_hebb;
            *tm = m;
            if (want)
                *gm = d;
        }
    }
    if (crl_loss_evaluate(loss, &t, grad_dir ? &g : NULL) != CRL_OK)
        die("%s", crl_context_error(ctx));

    /* meta as the command computes it */
    static const int primary[] = {CRL_ROLE_STATES, CRL_ROLE_PRED, CRL_ROLE_LABEL,
                                  CRL_ROLE_STATES1};
    cli_meta meta = {1, 0, 0, 0, dtype};
    for (int k = 0; k < 4; k++)
        if (given[primary[k]]) {
            const crl_npy_header *h = &in[primary[k]].h;
            meta.batch = h->shape[time_major ? 1 : 0];
            meta.time = h->shape[time_major ? 0 : 1];
            break;
        }
    if (given[CRL_ROLE_STATES])
        meta.neurons = in[CRL_ROLE_STATES].h.shape[2];
    else if (given[CRL_ROLE_STATES1])
        meta.neurons = in[CRL_ROLE_STATES1].h.shape[2];
    else if (given[CRL_ROLE_W_HID])
        meta.neurons = in[CRL_ROLE_W_HID].h.shape[0];
    else if (given[CRL_ROLE_W_HEBB])
        meta.neurons = in[CRL_ROLE_W_HEBB].h.shape[0];
    else if (given[CRL_ROLE_W_IN])
        meta.neurons = in[CRL_ROLE_W_IN].h.shape[0];
    else if (given[CRL_ROLE_W_OUT])
        meta.neurons = in[CRL_ROLE_W_OUT].h.shape[1];
    cli_print_json(stdout, loss, &meta, NULL);

    static const char *const files[CRL_ROLE_COUNT] = {
        "d_states.npy", "d_states1.npy", "d_pred.npy", NULL, NULL,
        "d_w_in.npy", "d_w_hid.npy", "d_w_out.npy", "d_w_hebb.npy",
    };
    for (int role = 0; role < CRL_ROLE_COUNT && grad_dir; role++)
        if (given[role] && files[role]) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", grad_dir, files[role]);
            write_npy(path, dtype, in[role].h.ndim, in[role].h.shape, grad[role]);
        }
    for (int role = 0; role < CRL_ROLE_COUNT; role++) {
        free(in[role].data);
        free(grad[role]);
    }
    cli_terms_free(&terms);
    crl_loss_destroy(&loss);
    crl_context_destroy(&ctx);
    MPI_Finalize();
    return 0;
}

static int cmd_sparse(int argc, char **argv)
{
    if (argc < 6)
        die("%s", "usage: npy-tool sparse OUT f4|f8 D0 D1 D2 [INDEX=VALUE...]");
    crl_dtype dtype = strcmp(argv[2], "f4") == 0 ? CRL_FLOAT32 : CRL_FLOAT64;
    int64_t shape[3], count = 1;
    for (int k = 0; k < 3; k++) {
        shape[k] = strtoll(argv[3 + k], NULL, 10);
        count *= shape[k];
    }
    char header[1024];
    size_t len = 0;
    crl_error err = {0};
    if (crl_npy_format_header(dtype, 3, shape, header, sizeof header, &len, &err) != CRL_OK)
        die("%s", err.message);
    size_t size = crl_dtype_size(dtype);
    FILE *f = fopen(argv[1], "wb");
    if (f == NULL || fwrite(header, 1, len, f) != len || fflush(f) != 0
        || ftruncate(fileno(f), (off_t) len + (off_t) (count * (int64_t) size)) != 0)
        die("cannot write %s", argv[1]);
    for (int k = 6; k < argc; k++) {
        char *eq = strchr(argv[k], '=');
        if (eq == NULL)
            die("expected INDEX=VALUE, got %s", argv[k]);
        int64_t index = strtoll(argv[k], NULL, 10);
        double v = strtod(eq + 1, NULL);
        float v32 = (float) v;
        if (index < 0 || index >= count || fseeko(f, (off_t) len + (off_t) (index * (int64_t) size),
                                                  SEEK_SET) != 0
            || fwrite(dtype == CRL_FLOAT32 ? (void *) &v32 : (void *) &v, size, 1, f) != 1)
            die("cannot set element %s", argv[k]);
    }
    if (fclose(f) != 0)
        die("cannot write %s", argv[1]);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        die("%s", "usage: npy-tool gen|variants|broken|set|scale|transpose|sparse|ref ...");
    const char *c = argv[1];
    if (strcmp(c, "gen") == 0)
        return cmd_gen(argc - 1, argv + 1);
    if (strcmp(c, "variants") == 0)
        return cmd_variants(argc - 1, argv + 1);
    if (strcmp(c, "broken") == 0)
        return cmd_broken(argc - 1, argv + 1);
    if (strcmp(c, "set") == 0)
        return cmd_set(argc - 1, argv + 1);
    if (strcmp(c, "scale") == 0)
        return cmd_scale(argc - 1, argv + 1);
    if (strcmp(c, "transpose") == 0)
        return cmd_transpose(argc - 1, argv + 1);
    if (strcmp(c, "sparse") == 0)
        return cmd_sparse(argc - 1, argv + 1);
    if (strcmp(c, "ref") == 0)
        return cmd_ref(argc - 1, argv + 1);
    die("unknown command %s", c);
    return 2;
}
