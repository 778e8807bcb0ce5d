/*
 * test_config.c - terms from --term specifications and INI text
 * (src/cli/term_spec.c): what they produce, every error naming the offending
 * text (with FILE:LINE in INI), the two forms agreeing, and robustness on
 * mutated text.  Uses only the rnn type, but goes through the catalogue like
 * the parser does.
 */
#include "harness.h"

#include "cli/term_spec.h"

#include <stdlib.h>
#include <string.h>

static void expect_spec_error(const char *spec, const char *needle)
{
    cli_terms terms = {0};
    crl_error err = {0};
    int rc = cli_terms_add_spec(&terms, spec, &err);
    if (rc != CRL_ERR_INVALID || strstr(err.message, needle) == NULL)
        fail_msg("spec '%s': status %d, message '%s', expected '%s'", spec, rc, err.message,
                 needle);
    assert_int_equal(terms.count, 0);
    cli_terms_free(&terms);
}

static void expect_ini_error(const char *text, const char *needle)
{
    cli_terms terms = {0};
    crl_error err = {0};
    int rc = cli_terms_add_ini(&terms, text, strlen(text), "loss.ini", &err);
    if (rc != CRL_ERR_INVALID || strstr(err.message, needle) == NULL)
        fail_msg("ini '%s': status %d, message '%s', expected '%s'", text, rc, err.message,
                 needle);
    assert_int_equal(terms.count, 0);
    cli_terms_free(&terms);
}

static void test_specs(void **state)
{
    (void) state;
    cli_terms terms = {0};
    crl_error err = {0};
    assert_int_equal(cli_terms_add_spec(&terms, "a=rnn:lambda_fr=0.5,lambda=2,correction=1", &err),
                     CRL_OK);
    assert_int_equal(cli_terms_add_spec(&terms, "rnn", &err), CRL_OK);
    assert_int_equal(cli_terms_add_spec(&terms, " b = rnn : lambda_mse = 0 , lambda = -1e-3 ",
                                        &err), CRL_OK);
    assert_int_equal(terms.count, 3);
    assert_string_equal(terms.items[0].name, "a");
    assert_string_equal(terms.items[0].type, "rnn");
    assert_true(terms.items[0].weight == 2.0);
    assert_string_equal(terms.items[0].params, "lambda_fr=0.5,correction=1");
    assert_string_equal(terms.items[0].source, "--term 'a=rnn:lambda_fr=0.5,lambda=2,correction=1'");
    assert_string_equal(terms.items[1].name, "rnn");
    assert_true(terms.items[1].weight == 1.0);
    assert_string_equal(terms.items[1].params, "");
    assert_string_equal(terms.items[2].name, "b");
    assert_true(terms.items[2].weight == -1e-3);
    assert_string_equal(terms.items[2].params, "lambda_mse=0");
    /* A name used twice, even across calls, names the first use. */
    assert_int_equal(cli_terms_add_spec(&terms, "a=rnn", &err), CRL_ERR_INVALID);
    assert_string_equal(err.message, "--term 'a=rnn': term name 'a' is already used (by --term "
                                     "'a=rnn:lambda_fr=0.5,lambda=2,correction=1')");
    assert_int_equal(terms.count, 3);
    cli_terms_free(&terms);
    assert_int_equal(terms.count, 0);
}

static void test_spec_errors(void **state)
{
    (void) state;
    expect_spec_error("x=nosuch", "--term 'x=nosuch': term 'x': unknown type 'nosuch' (one of: rnn");
    expect_spec_error("x=rnn:lambda_foo=1",
                      "--term 'x=rnn:lambda_foo=1': term 'x': unknown parameter 'lambda_foo' for "
                      "type rnn (known: lambda, lambda_mse, lambda_in,");
    expect_spec_error("x=rnn:lambda_fr=abc", "term 'x': parameter lambda_fr: 'abc' is not a number");
    expect_spec_error("x=rnn:correction=0.5", "parameter correction: 0.5 is not an integer");
    expect_spec_error("x=rnn:correction=-1", "parameter correction: -1 is outside");
    expect_spec_error("x=rnn:lambda_fr=nan", "parameter lambda_fr: 'nan' is not a number");
    expect_spec_error("x=rnn:lambda=inf", "term 'x': lambda: 'inf' is not a number");
    expect_spec_error("x=rnn:lambda=1x", "lambda: '1x' is not a number");
    /* Decimal only, and no silent overflow or underflow. */
    expect_spec_error("x=rnn:lambda=0x10", "lambda: '0x10' is not a number");
    expect_spec_error("x=rnn:lambda=1e-400", "lambda: '1e-400' is out of range");
    expect_spec_error("x=rnn:lambda=-1e999", "lambda: '-1e999' is out of range");
    expect_spec_error("x=entropy:reg=1e999", "parameter reg: '1e999' is out of range");
    expect_spec_error("x=entropy:reg=0x1p3", "parameter reg: '0x1p3' is not a number");
    expect_spec_error("x=entropy:reg=-1", "parameter reg: -1 is outside [0,");
    expect_spec_error("x=rnn:lambda_fr=", "term 'x': 'lambda_fr' has no value");
    expect_spec_error("x=rnn:lambda_fr", "'lambda_fr' is not key=value");
    expect_spec_error("x=rnn:=1", "'=1' is not key=value");
    expect_spec_error("x=rnn:", "'' is not key=value");
    expect_spec_error("x=rnn:lambda_fr=1,,lambda_in=1", "'' is not key=value");
    expect_spec_error("x=rnn:lambda_fr=1,lambda_fr=2", "term 'x': 'lambda_fr' is set twice");
    expect_spec_error("x=rnn:lambda=1,lambda=2", "'lambda' is set twice");
    expect_spec_error("x=rnn:type=rnn", "unknown parameter 'type'");
    expect_spec_error("a b=rnn", "term name 'a b' must be 1-63 letters, digits, '_' or '-'");
    expect_spec_error("=rnn", "term name ''");
    expect_spec_error("x=", "expected NAME=TYPE[:key=value,...]");
    expect_spec_error("", "expected NAME=TYPE");
    char long_name[100];
    memset(long_name, 'n', 70);
    strcpy(long_name + 70, "=rnn");
    expect_spec_error(long_name, "must be 1-63 letters");
}

static const char *ini_text =
    "# a composite loss\n"
    "[a]\r\n"
    "lambda_fr = 0.5   # inline comment\n"
    "type = rnn\n"
    "\n"
    "lambda=2\n"
    "  correction = 1 ; another\n"
    "; comment line\n"
    "[rnn]\n"
    "type=rnn\n"
    "[b]\n"
    "type = rnn\n"
    "lambda_mse = 0\n"
    "lambda = -1e-3";

static void test_ini(void **state)
{
    (void) state;
    cli_terms ini = {0}, spec = {0};
    crl_error err = {0};
    assert_int_equal(cli_terms_add_ini(&ini, ini_text, strlen(ini_text), "loss.ini", &err),
                     CRL_OK);
    assert_int_equal(cli_terms_add_spec(&spec, "a=rnn:lambda_fr=0.5,lambda=2,correction=1", &err),
                     CRL_OK);
    assert_int_equal(cli_terms_add_spec(&spec, "rnn", &err), CRL_OK);
    assert_int_equal(cli_terms_add_spec(&spec, "b=rnn:lambda_mse=0,lambda=-1e-3", &err), CRL_OK);
    /* The two forms give the same terms. */
    assert_int_equal(ini.count, 3);
    for (int k = 0; k < 3; k++) {
        assert_string_equal(ini.items[k].name, spec.items[k].name);
        assert_string_equal(ini.items[k].type, spec.items[k].type);
        assert_true(ini.items[k].weight == spec.items[k].weight);
        assert_string_equal(ini.items[k].params, spec.items[k].params);
    }
    assert_string_equal(ini.items[0].source, "loss.ini:2");
    assert_string_equal(ini.items[2].source, "loss.ini:11");
    /* Text need not end in NUL: a prefix of a longer buffer. */
    cli_terms part = {0};
    const char *two = "[x]\ntype = rnn\n[y]\ntype = rnn\n";
    assert_int_equal(cli_terms_add_ini(&part, two, 14, "cut.ini", &err), CRL_OK);
    assert_int_equal(part.count, 1);
    cli_terms_free(&part);
    cli_terms_free(&ini);
    cli_terms_free(&spec);
}

static void test_ini_errors(void **state)
{
    (void) state;
    expect_ini_error("lambda = 1\n[a]\ntype = rnn\n",
                     "loss.ini:1: 'lambda = 1' is outside a [NAME] section");
    expect_ini_error("[a]\nlambda = 1\n", "loss.ini:1: section [a] has no 'type = TYPE' line");
    expect_ini_error("[a\ntype = rnn\n", "loss.ini:1: malformed section header '[a'");
    expect_ini_error("[]\ntype = rnn\n", "loss.ini:1: malformed section header '[]'");
    expect_ini_error("[a]\ntype = rnn\nlambda_fr\n",
                     "loss.ini:3: expected 'key = value', found 'lambda_fr'");
    expect_ini_error("[a]\ntype = rnn\n= 3\n", "loss.ini:3: no key before '='");
    expect_ini_error("[a]\ntype = rnn\ntype = rnn\n", "loss.ini:3: 'type' is set twice in [a]");
    expect_ini_error("[a]\ntype = nosuch\n", "loss.ini:1: term 'a': unknown type 'nosuch'");
    expect_ini_error("[a]\ntype = rnn\n\nlambda_fr = x\n",
                     "loss.ini:4: term 'a': parameter lambda_fr: 'x' is not a number");
    expect_ini_error("[a]\ntype = rnn\nfoo = 1\n",
                     "loss.ini:3: term 'a': unknown parameter 'foo' for type rnn");
    expect_ini_error("[a]\ntype = rnn\nlambda_fr = 1\nlambda_fr = 2\n",
                     "loss.ini:4: term 'a': 'lambda_fr' is set twice");
    expect_ini_error("[a]\ntype = rnn\nlambda =\n", "loss.ini:3: term 'a': 'lambda' has no value");
    expect_ini_error("[a]\ntype = rnn\n[a]\ntype = rnn\n",
                     "loss.ini:3: term name 'a' is already used (by loss.ini:1)");
    expect_ini_error("[a b]\ntype = rnn\n", "loss.ini:1: term name 'a b' must be");
    expect_ini_error("# nothing\n\n", "loss.ini: defines no terms (no [NAME] section)");
    expect_ini_error("", "defines no terms");
    cli_terms terms = {0};
    crl_error err = {0};
    assert_int_equal(cli_terms_add_ini(&terms, "[a]\ntype = rnn\0x\n", 16, "nul.ini", &err),
                     CRL_ERR_INVALID);
    assert_string_equal(err.message, "nul.ini:2: NUL byte in the text");
    /* A failing file adds nothing, not even its good sections. */
    assert_int_equal(cli_terms_add_spec(&terms, "z=rnn", &err), CRL_OK);
    err = (crl_error){0};
    const char *half = "[a]\ntype = rnn\n[b]\ntype = rnn\nfoo = 1\n";
    assert_int_equal(cli_terms_add_ini(&terms, half, strlen(half), "half.ini", &err),
                     CRL_ERR_INVALID);
    assert_int_equal(terms.count, 1);
    cli_terms_free(&terms);
}

/* Mutated INI text and specifications: OK or CRL_ERR_INVALID, a message on
 * error and nothing added; never a crash (ASan). */
static void test_mutations(void **state)
{
    (void) state;
    static const char alphabet[] = "[]=:,#; \n\r\t\0abxrnlambda_fr0.5-1e9typecorrection";
    size_t base = strlen(ini_text);
    uint64_t rng = 99;
    int ok = 0;
    for (int round = 0; round < 5000; round++) {
        char buf[512];
        size_t len = base;
        memcpy(buf, ini_text, base);
        for (int e = 0, edits = 1 + (int) (h_rand(&rng) % 4); e < edits && len > 0; e++) {
            size_t at = (size_t) (h_rand(&rng) % len);
            char c = alphabet[h_rand(&rng) % (sizeof alphabet - 1)];
            if (h_rand(&rng) % 3 == 0 && len < sizeof buf - 1) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = c;
                len++;
            } else if (h_rand(&rng) % 2) {
                buf[at] = c;
            } else {
                len = at;
            }
        }
        char *copy = malloc(len ? len : 1);
        memcpy(copy, buf, len);
        cli_terms terms = {0};
        crl_error err = {0};
        int rc = cli_terms_add_ini(&terms, copy, len, "m.ini", &err);
        if (rc == CRL_OK) {
            ok++;
        } else {
            assert_true(rc == CRL_ERR_INVALID || rc == CRL_ERR_NOMEM);
            assert_true(err.message[0] != '\0');
            assert_int_equal(terms.count, 0);
        }
        /* The same bytes as one --term argument (up to a NUL). */
        buf[len < sizeof buf ? len : sizeof buf - 1] = '\0';
        err = (crl_error){0};
        int before = terms.count;
        if (cli_terms_add_spec(&terms, buf, &err) != CRL_OK)
            assert_int_equal(terms.count, before);
        cli_terms_free(&terms);
        free(copy);
    }
    assert_true(ok > 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specs),
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_ini),
        cmocka_unit_test(test_ini_errors),
        cmocka_unit_test(test_mutations),
    };
    return h_main(argc, argv, tests, sizeof tests / sizeof *tests, "config");
}
