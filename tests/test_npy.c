/*
 * test_npy.c - .npy files (src/npy.c): the pure header parser and formatter
 * on good, broken and mutated bytes, and the MPI-IO functions (each rank its
 * own slice, both layouts, collective errors).
 */
#include "harness.h"

#include "npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A header as NumPy writes it: preamble, dict, spaces, newline, 64-aligned. */
static size_t numpy_header(char *buf, int major, const char *dict)
{
    size_t preamble = major == 1 ? 10 : 12, n = strlen(dict);
    size_t total = (preamble + n + 1 + 63) / 64 * 64, len = total - preamble;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (char) major;
    buf[7] = 0;
    for (size_t k = 0; k < preamble - 8; k++)
        buf[8 + k] = (char) ((len >> (8 * k)) & 0xff);
    memcpy(buf + preamble, dict, n);
    memset(buf + preamble + n, ' ', len - n - 1);
    buf[total - 1] = '\n';
    return total;
}

static int parse(const char *dict, int major, crl_npy_header *h, crl_error *err)
{
    char buf[4096];
    size_t len = numpy_header(buf, major, dict);
    *err = (crl_error){0};
    return crl_npy_parse_header(buf, len, h, err);
}

static void expect_error(const char *dict, const char *needle)
{
    crl_npy_header h;
    crl_error err;
    int rc = parse(dict, 1, &h, &err);
    if (rc != CRL_ERR_IO || strstr(err.message, needle) == NULL)
        fail_msg("header %s: status %d, message '%s', expected '%s'", dict, rc, err.message,
                 needle);
}

static void test_numpy_headers(void **state)
{
    (void) state;
    crl_npy_header h;
    crl_error err;
    /* What numpy.save writes for np.zeros((2, 3), np.float32), with and
     * without the growth padding of NumPy >= 1.24. */
    assert_int_equal(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 1, &h,
                           &err), CRL_OK);
    assert_int_equal(h.dtype, CRL_FLOAT32);
    assert_int_equal(h.ndim, 2);
    assert_int_equal(h.shape[0], 2);
    assert_int_equal(h.shape[1], 3);
    assert_int_equal(h.count, 6);
    assert_int_equal(h.data_bytes, 24);
    assert_int_equal(h.data_offset, 128);
    assert_false(h.fortran_order);
    assert_int_equal(parse("{'descr': '<f8', 'fortran_order': False, 'shape': (7, 6, 5), }"
                           "                    ", 1, &h, &err), CRL_OK);
    assert_int_equal(h.dtype, CRL_FLOAT64);
    assert_int_equal(h.count, 210);
    /* Versions 2.0 and 3.0: a 4-byte length. */
    assert_int_equal(parse("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", 2, &h,
                           &err), CRL_OK);
    assert_int_equal(h.major, 2);
    assert_int_equal(h.data_offset, 128);
    assert_int_equal(h.ndim, 1);
    assert_int_equal(parse("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", 3, &h,
                           &err), CRL_OK);
    assert_int_equal(h.major, 3);
    /* Any key order, double quotes, no trailing comma, spaces, Python 2 longs. */
    assert_int_equal(parse("{ \"shape\" : ( 4L ,5L ) , \"fortran_order\":False,'descr':'<f4'}",
                           1, &h, &err), CRL_OK);
    assert_int_equal(h.shape[0], 4);
    assert_int_equal(h.shape[1], 5);
    /* A scalar and zero-sized arrays. */
    assert_int_equal(parse("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 1, &h,
                           &err), CRL_OK);
    assert_int_equal(h.ndim, 0);
    assert_int_equal(h.count, 1);
    assert_int_equal(parse("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3), }", 1, &h,
                           &err), CRL_OK);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.data_bytes, 0);
    /* Fortran order is reported, not refused (the reader decides). */
    assert_int_equal(parse("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }", 1, &h,
                           &err), CRL_OK);
    assert_true(h.fortran_order);
}

static void test_broken_headers(void **state)
{
    (void) state;
    expect_error("[1, 2]", "header is not a dictionary: '[1, 2]");
    expect_error("", "header is not a dictionary");
    expect_error("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
                 "unsupported dtype '<i4'");
    expect_error("{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }",
                 "unsupported dtype '>f8'");
    expect_error("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }",
                 "unsupported dtype '|u1'");
    expect_error("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (2,), }",
                 "structured");
    expect_error("{'descr': '<f8', 'fortran_order': False}", "the header has no 'shape'");
    expect_error("{'descr': '<f8', 'shape': (2,)}", "no 'fortran_order'");
    expect_error("{'fortran_order': False, 'shape': (2,)}", "no 'descr'");
    expect_error("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (2,)}",
                 "key 'descr' appears twice");
    expect_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': 1}",
                 "unknown key 'x'");
    expect_error("{'descr': '<f8', 'fortran_order': false, 'shape': (2,)}", "True or False");
    expect_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2)}",
                 "shape (2) is not a tuple");
    expect_error("{'descr': '<f8', 'fortran_order': False, 'shape': [2, 3]}", "a shape tuple");
    expect_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2, -3)}",
                 "non-negative dimension");
    expect_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2 3)}", "',' or ')'");
    expect_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2,,)}", "a dimension");
    expect_error("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}",
                 "dimension '99999999999999999999' does not fit in 64 bits");
    expect_error("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
                 "shape (4294967296, 4294967296) overflows: more than 2^63 elements");
    expect_error("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,)}",
                 "overflows: more than 2^63 bytes");
    expect_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2,)", "at its end");
    expect_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2,)} x",
                 "only spaces after the dictionary");
    expect_error("{'descr': '<f8' 'fortran_order': False, 'shape': (2,)}", "',' or '}'");
    expect_error("{'descr' '<f8', 'fortran_order': False, 'shape': (2,)}", "expected ':'");
    expect_error("{'de\\x': '<f8', 'fortran_order': False, 'shape': (2,)}", "no escapes");
    expect_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'descr", "line breaks");
    char many[512] = "{'descr': '<f8', 'fortran_order': False, 'shape': (";
    for (int k = 0; k < 33; k++)
        strcat(many, "1, ");
    strcat(many, ")}");
    expect_error(many, "more than 32 dimensions");
}

static void test_broken_preambles(void **state)
{
    (void) state;
    crl_npy_header h;
    crl_error err = {0};
    char buf[256];
    size_t len = numpy_header(buf, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }");
    /* Every proper prefix of a good header is refused, none read past len. */
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = malloc(cut + 1);
        memcpy(copy, buf, cut);
        err = (crl_error){0};
        assert_int_equal(crl_npy_parse_header(copy, cut, &h, &err), CRL_ERR_IO);
        assert_non_null(strstr(err.message, "truncated"));
        free(copy);
    }
    buf[5] = 'X';
    err = (crl_error){0};
    assert_int_equal(crl_npy_parse_header(buf, len, &h, &err), CRL_ERR_IO);
    assert_string_equal(err.message, "not a .npy file (bad magic string)");
    buf[5] = 'Y';
    buf[6] = 4;
    err = (crl_error){0};
    assert_int_equal(crl_npy_parse_header(buf, len, &h, &err), CRL_ERR_IO);
    assert_string_equal(err.message, "unsupported .npy format version 4.0 (1.0 to 3.0)");
    buf[6] = 1;
    buf[7] = 1;
    err = (crl_error){0};
    assert_int_equal(crl_npy_parse_header(buf, len, &h, &err), CRL_ERR_IO);
    assert_non_null(strstr(err.message, "version 1.1"));
    /* A 4-byte length beyond the limit. */
    char v2[12] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 2, 0, 0, 0, 0, 0x7f};
    int64_t size = 0;
    err = (crl_error){0};
    assert_int_equal(crl_npy_header_size(v2, sizeof v2, &size, &err), CRL_ERR_IO);
    assert_non_null(strstr(err.message, "exceeds the limit"));
    /* A string cut by the end of the header (no padding newline). */
    err = (crl_error){0};
    assert_int_equal(crl_npy_parse_header("\x93NUMPY\x01\x00\x07\x00{'descr", 17, &h, &err),
                     CRL_ERR_IO);
    assert_non_null(strstr(err.message, "expected a closing quote at its end"));
    err = (crl_error){0};
    assert_int_equal(crl_npy_parse_header("\x93NUM", 4, &h, &err), CRL_ERR_IO);
    assert_non_null(strstr(err.message, "truncated header: the file has only 4 bytes"));
}

static void test_format_round_trip(void **state)
{
    (void) state;
    const int64_t shapes[][3] = {{7, 6, 5}, {0, 3, 2}, {123456789, 1, 1}, {1, 1, 1}};
    char buf[1024];
    for (int d = 0; d < 2; d++)
        for (int s = 0; s < 4; s++)
            for (int ndim = 0; ndim <= 3; ndim++) {
                crl_dtype dtype = d ? CRL_FLOAT64 : CRL_FLOAT32;
                size_t len = 0;
                crl_error err = {0};
                assert_int_equal(crl_npy_format_header(dtype, ndim, shapes[s], buf, sizeof buf,
                                                       &len, &err), CRL_OK);
                assert_int_equal(len % 64, 0);
                assert_int_equal(buf[len - 1], '\n');
                assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
                crl_npy_header h;
                assert_int_equal(crl_npy_parse_header(buf, len, &h, &err), CRL_OK);
                assert_int_equal(h.dtype, dtype);
                assert_int_equal(h.ndim, ndim);
                assert_int_equal(h.data_offset, (int64_t) len);
                for (int k = 0; k < ndim; k++)
                    assert_int_equal(h.shape[k], shapes[s][k]);
            }
    /* Exactly NumPy's dictionary text (a 1-D shape has a trailing comma). */
    size_t len;
    crl_error err = {0};
    int64_t one = 5;
    assert_int_equal(crl_npy_format_header(CRL_FLOAT32, 1, &one, buf, sizeof buf, &len, &err),
                     CRL_OK);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }";
    assert_memory_equal(buf + 10, dict, strlen(dict));
    assert_int_equal(buf[8] + 256 * buf[9], (int) len - 10);
    /* Too small a buffer, a negative dimension. */
    assert_int_equal(crl_npy_format_header(CRL_FLOAT32, 1, &one, buf, 32, &len, &err),
                     CRL_ERR_INVALID);
    int64_t negative = -1;
    err = (crl_error){0};
    assert_int_equal(crl_npy_format_header(CRL_FLOAT32, 1, &negative, buf, sizeof buf, &len, &err),
                     CRL_ERR_INVALID);
}

/* Mutated headers (bytes flipped, inserted, cut, lengths forged): the parser
 * must return OK or CRL_ERR_IO, never crash or read past the buffer (ASan). */
static void test_mutations(void **state)
{
    (void) state;
    static const char alphabet[] = "{}()[],:'\" 0123456789-LTrueFalse<f48descrshape\n\x93\x00\xff";
    char base[256];
    size_t base_len = numpy_header(base, 1,
                                   "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
    uint64_t rng = 12345;
    int ok = 0;
    for (int round = 0; round < 20000; round++) {
        char buf[300];
        size_t len = base_len;
        memcpy(buf, base, base_len);
        int edits = 1 + (int) (h_rand(&rng) % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t) (h_rand(&rng) % len);
            char c = alphabet[h_rand(&rng) % (sizeof alphabet - 1)];
            switch (h_rand(&rng) % 4) {
            case 0: buf[at] = c; break;
            case 1:
                if (len < sizeof buf) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = c;
                    len++;
                }
                break;
            case 2: len = at; break;
            default: buf[8] = (char) (h_rand(&rng) & 0xff); break;
            }
            if (len == 0)
                break;
        }
        char *copy = malloc(len ? len : 1);
        memcpy(copy, buf, len);
        crl_npy_header h;
        crl_error err = {0};
        int rc = crl_npy_parse_header(copy, len, &h, &err);
        free(copy);
        if (rc == CRL_OK) {
            ok++;
            assert_true(h.count >= 0 && h.data_offset <= (int64_t) len);
        } else {
            assert_int_equal(rc, CRL_ERR_IO);
            assert_true(err.message[0] != '\0');
        }
    }
    assert_true(ok > 0);
}

/* ------------------------------------------------------------------------ */
/* Files                                                                      */
/* ------------------------------------------------------------------------ */

static char work_dir[256];

/* A directory for this run's files, named by rank 0's process id. */
static void make_work_dir(void)
{
    long pid = (long) getpid();
    MPI_Bcast(&pid, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    snprintf(work_dir, sizeof work_dir, "test_npy.%ld.tmp", pid);
    if (h_rank == 0 && mkdir(work_dir, 0777) != 0)
        fail_msg("cannot create %s", work_dir);
    MPI_Barrier(MPI_COMM_WORLD);
}

static void remove_work_dir(void)
{
    MPI_Barrier(MPI_COMM_WORLD);
    if (h_rank == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", work_dir);
        assert_int_equal(system(cmd), 0);
    }
}

/* Every rank writes its slices of a (4, 7, 3) float64 array along axis 0 or 1
 * (batch-major or time-major), reads them back, and rank 0 checks the file's
 * bytes. */
static void test_slices(void **state)
{
    (void) state;
    make_work_dir();
    crl_context *ctx;
    assert_int_equal(crl_context_create(MPI_COMM_WORLD, &ctx), CRL_OK);
    const int64_t shape[3] = {4, 7, 3};
    double whole[84];
    for (int k = 0; k < 84; k++)
        whole[k] = k + 0.25;
    for (int axis = 0; axis < 2; axis++) {
        char path[512];
        snprintf(path, sizeof path, "%s/slices%d.npy", work_dir, axis);
        crl_npy_file f;
        assert_int_equal(crl_npy_create(ctx, path, "test file", CRL_FLOAT64, 3, shape, &f),
                         CRL_OK);
        /* This rank's share of dimension axis, as the command splits it. */
        int64_t dim = shape[axis], base = dim / h_size, extra = dim % h_size;
        int64_t start = h_rank * base + (h_rank < extra ? h_rank : extra);
        int64_t count = base + (h_rank < extra);
        int64_t outer = axis == 0 ? 1 : shape[0], inner = axis == 0 ? 21 : 3;
        double part[84];
        for (int64_t o = 0; o < outer; o++)
            for (int64_t e = 0; e < count * inner; e++)
                part[o * count * inner + e] = whole[(o * dim + start) * inner + e];
        crl_error err = {0};
        assert_int_equal(crl_npy_write_slice(&f, axis, start, count, part, &err), CRL_OK);
        assert_int_equal(crl_npy_close(ctx, &f), CRL_OK);

        assert_int_equal(crl_npy_open(ctx, path, "test file", &f), CRL_OK);
        assert_int_equal(f.header.ndim, 3);
        assert_int_equal(f.header.shape[1], 7);
        double back[84];
        assert_int_equal(crl_npy_read_slice(&f, axis, start, count, back, &err), CRL_OK);
        h_assert_all(memcmp(back, part, sizeof(double) * (size_t) (outer * count * inner)) == 0);
        /* Out of range: a local error. */
        assert_int_equal(crl_npy_read_slice(&f, axis, dim - 1, 2, back, &err), CRL_ERR_INVALID);
        assert_int_equal(crl_npy_close(ctx, &f), CRL_OK);
        if (h_rank == 0) {
            FILE *in = fopen(path, "rb");
            char bytes[128 + sizeof whole];
            assert_int_equal(fread(bytes, 1, sizeof bytes, in), sizeof bytes);
            assert_int_equal(fgetc(in), EOF);
            fclose(in);
            assert_memory_equal(bytes + 128, whole, sizeof whole);
        }
        /* The file exists now: creating it again fails on every rank. */
        assert_int_equal(crl_npy_create(ctx, path, "test file", CRL_FLOAT64, 3, shape, &f),
                         CRL_ERR_IO);
        h_assert_all(strstr(crl_context_error(ctx), "test file: cannot create") != NULL);
    }
    crl_context_destroy(&ctx);
    remove_work_dir();
}

/* The same message on every rank. */
static void assert_same_everywhere(const char *message)
{
    char root[CRL_MESSAGE_MAX];
    snprintf(root, sizeof root, "%s", message);
    MPI_Bcast(root, (int) sizeof root, MPI_CHAR, 0, MPI_COMM_WORLD);
    h_assert_all(strcmp(root, message) == 0);
}

static void test_open_errors(void **state)
{
    (void) state;
    make_work_dir();
    crl_context *ctx;
    assert_int_equal(crl_context_create(MPI_COMM_WORLD, &ctx), CRL_OK);
    crl_npy_file f;
    char path[512];
    snprintf(path, sizeof path, "%s/missing.npy", work_dir);
    assert_int_equal(crl_npy_open(ctx, path, "--states 'missing.npy'", &f), CRL_ERR_IO);
    assert_string_equal(crl_context_error(ctx),
                        "--states 'missing.npy': cannot open: No such file or directory");
    assert_same_everywhere(crl_context_error(ctx));
    assert_int_equal(crl_npy_open(ctx, work_dir, "--states 'dir'", &f), CRL_ERR_IO);
    assert_string_equal(crl_context_error(ctx), "--states 'dir': cannot open: not a regular file");

    /* Data shorter than the header says; a Fortran-order matrix. */
    if (h_rank == 0) {
        char buf[256];
        size_t len = numpy_header(buf, 1,
                                  "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 2), }");
        memset(buf + len, 0, 40);
        snprintf(path, sizeof path, "%s/short.npy", work_dir);
        FILE *out = fopen(path, "wb");
        fwrite(buf, 1, len + 40, out);
        fclose(out);
        len = numpy_header(buf, 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }");
        snprintf(path, sizeof path, "%s/fortran.npy", work_dir);
        out = fopen(path, "wb");
        fwrite(buf, 1, len + 32, out);
        fclose(out);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    snprintf(path, sizeof path, "%s/short.npy", work_dir);
    assert_int_equal(crl_npy_open(ctx, path, "short", &f), CRL_ERR_IO);
    assert_string_equal(crl_context_error(ctx),
                        "short: truncated data: the header describes 64 bytes of data, the file "
                        "holds 40");
    assert_same_everywhere(crl_context_error(ctx));
    snprintf(path, sizeof path, "%s/fortran.npy", work_dir);
    assert_int_equal(crl_npy_open(ctx, path, "f", &f), CRL_ERR_IO);
    assert_non_null(strstr(crl_context_error(ctx), "f: Fortran order is not supported"));
    crl_context_destroy(&ctx);
    remove_work_dir();
}

/* crl_agree: nothing failed costs nothing; one failing rank is heard by all. */
static void test_agree(void **state)
{
    (void) state;
    crl_context *ctx;
    assert_int_equal(crl_context_create(MPI_COMM_WORLD, &ctx), CRL_OK);
    crl_error err = {0};
    assert_int_equal(crl_agree(ctx, &err), CRL_OK);
    int last = h_size - 1;
    if (h_rank == last)
        crl_fail(&err, CRL_ERR_IO, "short read");
    assert_int_equal(crl_agree(ctx, &err), CRL_ERR_IO);
    char want[64];
    snprintf(want, sizeof want, "rank %d: short read", last);
    assert_string_equal(crl_context_error(ctx), want);
    crl_context_destroy(&ctx);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numpy_headers),
        cmocka_unit_test(test_broken_headers),
        cmocka_unit_test(test_broken_preambles),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_slices),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_agree),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof *tests, "npy");
}
