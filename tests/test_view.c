/*
 * test_view.c - array descriptions (src/view.c): layouts, stride and shape
 * checks, size overflow, row loads and stores, locating non-finite values,
 * the streamed copy of gradient rows.
 */
#include "harness.h"

#include "internal.h"

#include <math.h>
#include <string.h>

static void test_layouts(void **state)
{
    (void) state;
    float x[2 * 3 * 4];
    crl_array b = crl_array_batch_major(CRL_FLOAT32, x, 2, 3, 4);
    assert_int_equal(b.batch_stride, 12);
    assert_int_equal(b.time_stride, 4);
    crl_array t = crl_array_time_major(CRL_FLOAT32, x, 2, 3, 4);
    assert_int_equal(t.batch_stride, 4);
    assert_int_equal(t.time_stride, 8);
    crl_error err = {0};
    assert_int_equal(crl_array_check(&b, "states", &err), CRL_OK);
    assert_int_equal(crl_array_check(&t, "states", &err), CRL_OK);
    assert_int_equal(crl_dtype_size(CRL_FLOAT32), 4);
    assert_int_equal(crl_dtype_size(CRL_FLOAT64), 8);
    assert_int_equal(crl_dtype_size((crl_dtype) 7), 0);
}

static void expect_invalid(crl_array a, const char *needle)
{
    crl_error err = {0};
    assert_int_equal(crl_array_check(&a, "states", &err), CRL_ERR_INVALID);
    if (strstr(err.message, needle) == NULL)
        fail_msg("message '%s' lacks '%s'", err.message, needle);
}

static void test_bad_arrays(void **state)
{
    (void) state;
    float x[64];
    expect_invalid(crl_array_batch_major((crl_dtype) 3, x, 1, 1, 1), "dtype");
    expect_invalid(crl_array_batch_major(CRL_FLOAT32, x, -1, 2, 2), "shape");
    expect_invalid(crl_array_batch_major(CRL_FLOAT32, x, 1, 0, 2), "shape");
    expect_invalid(crl_array_batch_major(CRL_FLOAT32, x, 1, 2, 0), "shape");
    expect_invalid(crl_array_batch_major(CRL_FLOAT32, NULL, 2, 2, 2), "NULL");
    crl_array a = crl_array_batch_major(CRL_FLOAT32, x, 2, 2, 4);
    a.time_stride = 3; /* rows of width 4 overlap */
    expect_invalid(a, "overlap");
    a = crl_array_batch_major(CRL_FLOAT32, x, 2, 2, 4);
    a.batch_stride = 4; /* batch elements overlap in time */
    expect_invalid(a, "overlap");
    a = crl_array_batch_major(CRL_FLOAT32, x, 2, 2, 4);
    a.batch_stride = -8;
    expect_invalid(a, "negative stride");
    /* Shape products beyond 64 bits. */
    expect_invalid(crl_array_batch_major(CRL_FLOAT64, x, INT64_C(1) << 40, INT64_C(1) << 20, 1 << 10),
                   "overflow");
    crl_array big = {CRL_FLOAT64, x, 2, 2, 2, INT64_C(1) << 62, 2};
    expect_invalid(big, "overflow");
}

static void test_empty_shard_is_legal(void **state)
{
    (void) state;
    crl_error err = {0};
    crl_array a = crl_array_batch_major(CRL_FLOAT64, NULL, 0, 5, 3);
    assert_int_equal(crl_array_check(&a, "states", &err), CRL_OK);
    assert_true(crl_array_present(&a));
    a = crl_array_time_major(CRL_FLOAT32, NULL, 0, 5, 3); /* time stride 0 */
    assert_int_equal(crl_array_check(&a, "states", &err), CRL_OK);
    crl_array none = {0};
    assert_false(crl_array_present(&none));
}

static void test_grad_must_match(void **state)
{
    (void) state;
    double x[8], g[8];
    crl_error err = {0};
    crl_array a = crl_array_batch_major(CRL_FLOAT64, x, 1, 2, 4);
    crl_array d = crl_array_time_major(CRL_FLOAT64, g, 1, 2, 4);
    assert_int_equal(crl_array_check_grad(&d, &a, "states", &err), CRL_OK);
    d = crl_array_batch_major(CRL_FLOAT32, g, 1, 2, 4);
    assert_int_equal(crl_array_check_grad(&d, &a, "states", &err), CRL_ERR_INVALID);
    assert_non_null(strstr(err.message, "gradient of states"));
    crl_matrix m = crl_matrix_dense(CRL_FLOAT64, x, 2, 4), dm = crl_matrix_dense(CRL_FLOAT64, g, 4, 2);
    crl_error err2 = {0};
    assert_int_equal(crl_matrix_check_grad(&dm, &m, "w_hid", &err2), CRL_ERR_INVALID);
    crl_error err3 = {0};
    crl_matrix bad = crl_matrix_dense(CRL_FLOAT64, NULL, 2, 2);
    assert_int_equal(crl_matrix_check(&bad, "w_hid", &err3), CRL_ERR_INVALID);
}

static void test_rows_load_and_store(void **state)
{
    (void) state;
    /* time-major (T=3, B=2, N=2), float32 */
    float x[12];
    for (int k = 0; k < 12; k++)
        x[k] = (float) k + 0.5f;
    crl_array a = crl_array_time_major(CRL_FLOAT32, x, 2, 3, 2);
    double tile[6];
    int64_t ld;
    const double *rows = crl_rows_load(&a, 1, 1, 2, tile, &ld);
    assert_int_equal(ld, 2);
    /* (b=1, t=1) is at t*B*N + b*N = 6; (b=1, t=2) at 10 */
    assert_true(rows[0] == 6.5 && rows[1] == 7.5 && rows[2] == 10.5 && rows[3] == 11.5);
    double add[4] = {1, 2, 3, 0.25};
    crl_rows_store_add(&a, 1, 1, 2, add, 2);
    assert_true(x[6] == 7.5f && x[7] == 9.5f && x[10] == 13.5f && x[11] == 11.75f);
    assert_true(x[8] == 8.5f); /* other batch element untouched */

    double y[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    crl_array b = crl_array_batch_major(CRL_FLOAT64, y, 2, 2, 2);
    rows = crl_rows_load(&b, 1, 0, 2, tile, &ld);
    assert_ptr_equal(rows, y + 4); /* float64 is read in place */
    assert_int_equal(ld, 2);
}

static void test_find_nonfinite(void **state)
{
    (void) state;
    double y[2 * 3 * 2] = {0};
    crl_array a = crl_array_batch_major(CRL_FLOAT64, y, 2, 3, 2);
    int64_t t, i;
    assert_false(crl_array_find_nonfinite(&a, 1, &t, &i));
    y[1 * 6 + 2 * 2 + 1] = INFINITY;
    assert_true(crl_array_find_nonfinite(&a, 1, &t, &i));
    assert_int_equal(t, 2);
    assert_int_equal(i, 1);
    assert_false(crl_array_find_nonfinite(&a, 0, &t, &i));
}

static void test_mul_size(void **state)
{
    (void) state;
    int64_t out;
    assert_true(crl_mul_size(INT64_C(1) << 31, INT64_C(1) << 31, &out));
    assert_true(out == INT64_C(1) << 62);
    assert_false(crl_mul_size(INT64_C(1) << 32, INT64_C(1) << 31, &out));
    assert_false(crl_mul_size(-1, 2, &out));
}

/* crl_stream_copy at every offset in a line and every length up to a few
 * lines: exactly the bytes asked for, whichever pieces (part lines through
 * the caches, whole lines streamed) carry them. */
static void test_stream_copy_every_offset_and_length(void **state)
{
    (void) state;
    enum { MAX = 300, PAD = 64 };
    static unsigned char src[MAX], dst[PAD + 64 + MAX + PAD] __attribute__((aligned(64)));
    for (int k = 0; k < MAX; k++)
        src[k] = (unsigned char) (k * 37 + 11);
    for (int off = 0; off < 64; off++)
        for (int len = 0; len <= MAX; len++) {
            memset(dst, 0xa5, sizeof dst);
            crl_stream_copy(dst + PAD + off, src, (size_t) len);
            crl_stream_fence();
            assert_memory_equal(dst + PAD + off, src, (size_t) len);
            for (int k = 0; k < PAD + off; k++)
                assert_int_equal(dst[k], 0xa5);
            for (size_t k = (size_t) (PAD + off + len); k < sizeof dst; k++)
                assert_int_equal(dst[k], 0xa5);
        }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts),
        cmocka_unit_test(test_bad_arrays),
        cmocka_unit_test(test_empty_shard_is_legal),
        cmocka_unit_test(test_grad_must_match),
        cmocka_unit_test(test_rows_load_and_store),
        cmocka_unit_test(test_find_nonfinite),
        cmocka_unit_test(test_mul_size),
        cmocka_unit_test(test_stream_copy_every_offset_and_length),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof tests[0], "view");
}
