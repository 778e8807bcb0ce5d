/*
 * term_spec.c - --term specifications and INI files into terms (see term_spec.h).
 * Everything is checked against the catalogue of term types, so a new type
 * is understood here as soon as it is registered.
 */
#include "cli/term_spec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX 256

/* A term being built: which keys it has set so far. */
typedef struct draft {
    cli_term *term;
    const char *keys[CRL_MAX_PARAMS + 2];
    int n_keys;
    size_t params_len;
} draft;

/* Copies [begin, end) without surrounding blanks into out (cap bytes);
 * false when it does not fit. */
static bool trimmed(const char *begin, const char *end, char *out, size_t cap)
{
    while (begin < end && (*begin == ' ' || *begin == '\t'))
        begin++;
    while (end > begin && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t n = (size_t) (end - begin);
    if (n >= cap)
        return false;
    memcpy(out, begin, n);
    out[n] = '\0';
    return true;
}

static bool type_known(const char *type)
{
    for (int k = 0; k < crl_term_type_count(); k++)
        if (strcmp(crl_term_type_name(k), type) == 0)
            return true;
    return false;
}

static void type_list(char *out, size_t cap)
{
    out[0] = '\0';
    for (int k = 0; k < crl_term_type_count(); k++) {
        strncat(out, k ? ", " : "", cap - strlen(out) - 1);
        strncat(out, crl_term_type_name(k), cap - strlen(out) - 1);
    }
}

static void key_list(const char *type, char *out, size_t cap)
{
    snprintf(out, cap, "%s", CLI_WEIGHT_KEY);
    const crl_param_info *info;
    for (int k = 0; (info = crl_term_type_param(type, k)) != NULL; k++) {
        strncat(out, ", ", cap - strlen(out) - 1);
        strncat(out, info->key, cap - strlen(out) - 1);
    }
}

/* Appends a term named name of type; d describes it from then on. */
static int begin_term(cli_terms *terms, const char *name, const char *type, const char *source,
                      draft *d, crl_error *err)
{
    if (!crl_term_name_valid(name))
        return crl_fail(err, CRL_ERR_INVALID,
                        "%s: term name '%s' must be 1-63 letters, digits, '_' or '-'", source,
                        name);
    if (!type_known(type)) {
        char known[512];
        type_list(known, sizeof known);
        return crl_fail(err, CRL_ERR_INVALID, "%s: term '%s': unknown type '%s' (one of: %s)",
                        source, name, type, known);
    }
    for (int k = 0; k < terms->count; k++)
        if (strcmp(terms->items[k].name, name) == 0)
            return crl_fail(err, CRL_ERR_INVALID,
                            "%s: term name '%s' is already used (by %s)", source, name,
                            terms->items[k].source);
    if (terms->count == terms->cap) {
        int cap = terms->cap ? 2 * terms->cap : 8;
        cli_term *items = realloc(terms->items, sizeof *items * (size_t) cap);
        if (items == NULL)
            return crl_fail(err, CRL_ERR_NOMEM, "out of memory for the terms");
        terms->items = items;
        terms->cap = cap;
    }
    char *params = calloc(1, 1);
    if (params == NULL)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory for the terms");
    cli_term *t = &terms->items[terms->count++];
    *t = (cli_term){.weight = 1.0, .params = params};
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->type, sizeof t->type, "%s", type);
    snprintf(t->source, sizeof t->source, "%s", source);
    *d = (draft){.term = t};
    return CRL_OK;
}

/* Sets key = value on the draft term; where names the text in messages. */
static int set_param(draft *d, const char *key, const char *value, const char *where,
                     crl_error *err)
{
    cli_term *t = d->term;
    const crl_param_info *info = NULL;
    bool weight = strcmp(key, CLI_WEIGHT_KEY) == 0;
    for (int k = 0; !weight && (info = crl_term_type_param(t->type, k)) != NULL; k++)
        if (strcmp(info->key, key) == 0)
            break;
    if (!weight && info == NULL) {
        char known[512];
        key_list(t->type, known, sizeof known);
        return crl_fail(err, CRL_ERR_INVALID,
                        "%s: term '%s': unknown parameter '%s' for type %s (known: %s)", where,
                        t->name, key, t->type, known);
    }
    for (int k = 0; k < d->n_keys; k++)
        if (strcmp(d->keys[k], weight ? CLI_WEIGHT_KEY : info->key) == 0)
            return crl_fail(err, CRL_ERR_INVALID, "%s: term '%s': '%s' is set twice", where,
                            t->name, key);
    if (value[0] == '\0')
        return crl_fail(err, CRL_ERR_INVALID, "%s: term '%s': '%s' has no value", where, t->name,
                        key);
    d->keys[d->n_keys++] = weight ? CLI_WEIGHT_KEY : info->key;
    if (weight) {
        crl_error e = {0};
        double v;
        if (crl_parse_decimal(value, CLI_WEIGHT_KEY, &v, &e) != CRL_OK)
            return crl_fail(err, e.code, "%s: term '%s': %s", where, t->name, e.message);
        t->weight = v;
        return CRL_OK;
    }
    crl_error e = {0};
    double v;
    if (crl_param_parse(info, value, &v, &e) != CRL_OK)
        return crl_fail(err, e.code, "%s: term '%s': %s", where, t->name, e.message);
    /* A value that parsed holds no ',' or '=', so the text reads back. */
    size_t add = strlen(key) + strlen(value) + 2;
    char *params = realloc(t->params, d->params_len + add + 1);
    if (params == NULL)
        return crl_fail(err, CRL_ERR_NOMEM, "out of memory for the terms");
    t->params = params;
    d->params_len += (size_t) snprintf(params + d->params_len, add + 1, "%s%s=%s",
                                       d->params_len ? "," : "", key, value);
    return CRL_OK;
}

/* Drops the last term (after an error while building it). */
static void drop_last(cli_terms *terms)
{
    if (terms->count > 0) {
        terms->count--;
        free(terms->items[terms->count].params);
    }
}

int cli_terms_add_spec(cli_terms *terms, const char *spec, crl_error *err)
{
    char source[200], head[TEXT_MAX], name[TEXT_MAX], type[TEXT_MAX];
    snprintf(source, sizeof source, "--term '%.150s%s'", spec, strlen(spec) > 150 ? "..." : "");
    const char *colon = strchr(spec, ':');
    const char *head_end = colon ? colon : spec + strlen(spec);
    if (!trimmed(spec, head_end, head, sizeof head))
        return crl_fail(err, CRL_ERR_INVALID, "%s: the term name and type are too long", source);
    char *eq = strchr(head, '=');
    if (eq != NULL) {
        *eq = '\0';
        trimmed(head, eq, name, sizeof name);
        trimmed(eq + 1, eq + 1 + strlen(eq + 1), type, sizeof type);
    } else {
        snprintf(name, sizeof name, "%s", head);
        snprintf(type, sizeof type, "%s", head);
    }
    if (type[0] == '\0')
        return crl_fail(err, CRL_ERR_INVALID, "%s: expected NAME=TYPE[:key=value,...]", source);
    draft d;
    if (begin_term(terms, name, type, source, &d, err) != CRL_OK)
        return err->code;
    const char *p = colon ? colon + 1 : head_end;
    while (colon != NULL) {
        const char *comma = strchr(p, ',');
        const char *item_end = comma ? comma : p + strlen(p);
        char item[TEXT_MAX], key[TEXT_MAX], value[TEXT_MAX];
        if (!trimmed(p, item_end, item, sizeof item)) {
            drop_last(terms);
            return crl_fail(err, CRL_ERR_INVALID, "%s: a parameter is too long", source);
        }
        char *sep = strchr(item, '=');
        if (sep == NULL || sep == item) {
            drop_last(terms);
            return crl_fail(err, CRL_ERR_INVALID, "%s: '%s' is not key=value", source, item);
        }
        trimmed(item, sep, key, sizeof key);
        trimmed(sep + 1, sep + 1 + strlen(sep + 1), value, sizeof value);
        if (set_param(&d, key, value, source, err) != CRL_OK) {
            drop_last(terms);
            return err->code;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return CRL_OK;
}

/* ------------------------------------------------------------------------ */
/* INI                                                                        */
/* ------------------------------------------------------------------------ */

/* One "key = value" line of a section. */
typedef struct ini_line {
    char key[TEXT_MAX], value[TEXT_MAX];
    int line;
} ini_line;

typedef struct ini_section {
    char name[TEXT_MAX];
    int line;
    ini_line *lines;
    int count, cap;
} ini_section;

/* Turns a finished section into a term: its type first, then the other
 * keys in order. */
static int finish_section(cli_terms *terms, ini_section *s, const char *file, crl_error *err)
{
    char source[200], where[200];
    snprintf(source, sizeof source, "%.150s:%d", file, s->line);
    const char *type = NULL;
    for (int k = 0; k < s->count; k++)
        if (strcmp(s->lines[k].key, "type") == 0) {
            if (type != NULL)
                return crl_fail(err, CRL_ERR_INVALID, "%.150s:%d: 'type' is set twice in [%s]",
                                file, s->lines[k].line, s->name);
            type = s->lines[k].value;
        }
    if (type == NULL)
        return crl_fail(err, CRL_ERR_INVALID, "%s: section [%s] has no 'type = TYPE' line", source,
                        s->name);
    draft d;
    if (begin_term(terms, s->name, type, source, &d, err) != CRL_OK)
        return err->code;
    for (int k = 0; k < s->count; k++) {
        if (strcmp(s->lines[k].key, "type") == 0)
            continue;
        snprintf(where, sizeof where, "%.150s:%d", file, s->lines[k].line);
        if (set_param(&d, s->lines[k].key, s->lines[k].value, where, err) != CRL_OK) {
            drop_last(terms);
            return err->code;
        }
    }
    return CRL_OK;
}

/* The end of the meaningful part of a line: before a comment that starts
 * the line or follows a blank. */
static const char *strip_comment(const char *begin, const char *end)
{
    for (const char *p = begin; p < end; p++)
        if ((*p == '#' || *p == ';') && (p == begin || p[-1] == ' ' || p[-1] == '\t'))
            return p;
    return end;
}

static int parse_ini(cli_terms *terms, const char *text, size_t len, const char *file,
                     ini_section *s, crl_error *err)
{
    const char *p = text, *end = text + len;
    bool in_section = false;
    int line = 0, added = 0;
    while (p < end) {
        line++;
        const char *eol = memchr(p, '\n', (size_t) (end - p));
        const char *line_end = eol ? eol : end;
        if (memchr(p, '\0', (size_t) (line_end - p)) != NULL)
            return crl_fail(err, CRL_ERR_INVALID, "%.150s:%d: NUL byte in the text", file, line);
        const char *stop = strip_comment(p, line_end);
        while (stop > p && (stop[-1] == '\r' || stop[-1] == ' ' || stop[-1] == '\t'))
            stop--;
        const char *q = p;
        while (q < stop && (*q == ' ' || *q == '\t'))
            q++;
        char text_line[TEXT_MAX + 16];
        trimmed(q, stop - q > TEXT_MAX ? q + TEXT_MAX : stop, text_line, sizeof text_line);
        if (q == stop) {
            /* blank or comment */
        } else if (*q == '[') {
            if (stop[-1] != ']' || stop - q < 3)
                return crl_fail(err, CRL_ERR_INVALID, "%.150s:%d: malformed section header '%s'",
                                file, line, text_line);
            if (in_section) {
                if (finish_section(terms, s, file, err) != CRL_OK)
                    return err->code;
                added++;
            }
            *s = (ini_section){.lines = s->lines, .cap = s->cap, .line = line};
            if (!trimmed(q + 1, stop - 1, s->name, sizeof s->name))
                return crl_fail(err, CRL_ERR_INVALID, "%.150s:%d: section name too long", file,
                                line);
            in_section = true;
        } else {
            const char *eq = memchr(q, '=', (size_t) (stop - q));
            if (eq == NULL)
                return crl_fail(err, CRL_ERR_INVALID,
                                "%.150s:%d: expected 'key = value', found '%s'", file, line,
                                text_line);
            if (!in_section)
                return crl_fail(err, CRL_ERR_INVALID,
                                "%.150s:%d: '%s' is outside a [NAME] section", file, line,
                                text_line);
            if (s->count == s->cap) {
                int cap = s->cap ? 2 * s->cap : 8;
                ini_line *lines = realloc(s->lines, sizeof *lines * (size_t) cap);
                if (lines == NULL)
                    return crl_fail(err, CRL_ERR_NOMEM, "out of memory reading %.150s", file);
                s->lines = lines;
                s->cap = cap;
            }
            ini_line *l = &s->lines[s->count];
            if (!trimmed(q, eq, l->key, sizeof l->key)
                || !trimmed(eq + 1, stop, l->value, sizeof l->value))
                return crl_fail(err, CRL_ERR_INVALID, "%.150s:%d: line too long", file, line);
            if (l->key[0] == '\0')
                return crl_fail(err, CRL_ERR_INVALID, "%.150s:%d: no key before '='", file, line);
            l->line = line;
            s->count++;
        }
        p = eol ? eol + 1 : end;
    }
    if (in_section) {
        if (finish_section(terms, s, file, err) != CRL_OK)
            return err->code;
        added++;
    }
    if (added == 0)
        return crl_fail(err, CRL_ERR_INVALID, "%.150s: defines no terms (no [NAME] section)",
                        file);
    return CRL_OK;
}

int cli_terms_add_ini(cli_terms *terms, const char *text, size_t len, const char *file,
                      crl_error *err)
{
    ini_section s = {0};
    int before = terms->count;
    int rc = parse_ini(terms, text, len, file, &s, err);
    free(s.lines);
    if (rc != CRL_OK)
        while (terms->count > before)
            drop_last(terms);
    return rc;
}

void cli_terms_free(cli_terms *terms)
{
    for (int k = 0; k < terms->count; k++)
        free(terms->items[k].params);
    free(terms->items);
    *terms = (cli_terms){0};
}
