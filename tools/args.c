// Strict command-line parsing for the myrmex subcommands (see args.h).
//
// Every error is one line "myrmex CMD: ..." on stderr followed by one hint line, and the
// caller exits with status 2. Nothing here exits or aborts.
#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/alloc.h"

// ---------------------------------------------------------------------------------------
// Scalar parsers

// strtol and friends skip leading white space and accept "" as 0; we accept neither.
static int starts_cleanly(const char *s) { return s && *s && !isspace((unsigned char)*s); }

int parse_int64(const char *s, int64_t *out) {
    if (!starts_cleanly(s)) return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || end == s || *end != '\0') return -1;
    *out = (int64_t)v;
    return 0;
}

int parse_int(const char *s, int *out) {
    int64_t v;
    if (parse_int64(s, &v) != 0 || v < INT_MIN || v > INT_MAX) return -1;
    *out = (int)v;
    return 0;
}

// Decimal numbers only: strtod would also take "nan", "inf", "infinity" and hex floats.
static int is_decimal_number_text(const char *s) {
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p) && !strchr("+-.eE", *p)) return 0;
    }
    return 1;
}

int parse_double(const char *s, double *out) {
    if (!starts_cleanly(s) || !is_decimal_number_text(s)) return -1;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    // ERANGE covers overflow and underflow to a denormal or zero ("1e-400"): both are
    // almost certainly typos on a command line.
    if (errno == ERANGE || end == s || *end != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int parse_float(const char *s, float *out) {
    if (!starts_cleanly(s) || !is_decimal_number_text(s)) return -1;
    char *end = NULL;
    errno = 0;
    float v = strtof(s, &end);
    if (errno == ERANGE || end == s || *end != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int parse_int_list(const char *s, IntList *out) {
    out->items = NULL;
    out->n = 0;
    if (!s || !*s) return -1;
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    int *items = mx_calloc((size_t)n, sizeof *items);
    if (!items) return -1;
    const char *p = s;
    for (int i = 0; i < n; i++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char buf[32];
        if (len == 0 || len >= sizeof buf) goto fail; // empty item, or too long for an int
        memcpy(buf, p, len);
        buf[len] = '\0';
        if (parse_int(buf, &items[i]) != 0) goto fail;
        p += len + (comma ? 1 : 0);
    }
    out->items = items;
    out->n = n;
    return 0;
fail:
    mx_free(items);
    return -1;
}

void int_list_free(IntList *l) {
    if (!l) return;
    mx_free(l->items);
    l->items = NULL;
    l->n = 0;
}

// ---------------------------------------------------------------------------------------
// Messages

int args_usage_error(const char *cmd, const char *fmt, ...) {
    fprintf(stderr, "myrmex %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nrun 'myrmex %s --help' for usage\n", cmd);
    return ARGS_ERROR;
}

// Levenshtein distance, capped: strings longer than 63 bytes are never "close".
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return INT_MAX;
    int row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *args_closest(const char *word, const char *const *candidates, int n) {
    const char *best = NULL;
    int best_d = INT_MAX;
    for (int i = 0; i < n; i++) {
        int d = edit_distance(word, candidates[i]);
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    // Close means: at most 2 edits, and fewer edits than a third of the word.
    int len = (int)strlen(word);
    return best && best_d <= 2 && best_d * 3 < len ? best : NULL;
}

static void print_help(const char *usage, const ArgSpec *specs, int n_specs) {
    printf("usage: %s\n", usage);
    // Column width: the longest "--name METAVAR", so help texts line up.
    size_t width = strlen("-h, --help");
    for (int i = 0; i < n_specs; i++) {
        size_t w = strlen(specs[i].name) + (specs[i].metavar ? strlen(specs[i].metavar) + 1 : 0);
        if (w > width) width = w;
    }
    printf("\noptions:\n");
    for (int i = 0; i < n_specs; i++) {
        char left[256];
        snprintf(left, sizeof left, "%s%s%s", specs[i].name, specs[i].metavar ? " " : "",
                 specs[i].metavar ? specs[i].metavar : "");
        printf("  %-*s  %s\n", (int)width, left, specs[i].help ? specs[i].help : "");
    }
    printf("  %-*s  %s\n", (int)width, "-h, --help", "show this help and exit");
}

// ---------------------------------------------------------------------------------------
// args_parse

static const ArgSpec *find_spec(const ArgSpec *specs, int n_specs, const char *name, size_t len) {
    for (int i = 0; i < n_specs; i++) {
        if (strlen(specs[i].name) == len && memcmp(specs[i].name, name, len) == 0) return &specs[i];
    }
    return NULL;
}

static int unknown_option(const char *cmd, const ArgSpec *specs, int n_specs, const char *arg,
                          size_t len) {
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), arg);
    const char *names[128];
    int n = 0;
    for (int i = 0; i < n_specs && n < 127; i++) names[n++] = specs[i].name;
    names[n++] = "--help";
    const char *near = args_closest(name, names, n);
    if (near) return args_usage_error(cmd, "unknown option '%s' (did you mean %s?)", name, near);
    return args_usage_error(cmd, "unknown option '%s'", name);
}

// Stores value into spec->dest according to its kind.
static int set_value(const char *cmd, const ArgSpec *spec, const char *value) {
    switch (spec->kind) {
    case ARG_INT: {
        int64_t wide;
        if (parse_int(value, spec->dest) == 0) return ARGS_OK;
        if (parse_int64(value, &wide) == 0)
            return args_usage_error(cmd, "value '%s' for %s is out of range", value, spec->name);
        return args_usage_error(cmd, "invalid value '%s' for %s (expected an integer)", value,
                                spec->name);
    }
    case ARG_INT64:
        if (parse_int64(value, spec->dest) != 0)
            return args_usage_error(cmd, "invalid value '%s' for %s (expected an integer)", value,
                                    spec->name);
        return ARGS_OK;
    case ARG_FLOAT:
        if (parse_float(value, spec->dest) != 0)
            return args_usage_error(cmd, "invalid value '%s' for %s (expected a finite number)",
                                    value, spec->name);
        return ARGS_OK;
    case ARG_DOUBLE:
        if (parse_double(value, spec->dest) != 0)
            return args_usage_error(cmd, "invalid value '%s' for %s (expected a finite number)",
                                    value, spec->name);
        return ARGS_OK;
    case ARG_STRING:
        *(const char **)spec->dest = value;
        return ARGS_OK;
    case ARG_INT_LIST: {
        IntList parsed;
        if (parse_int_list(value, &parsed) != 0)
            return args_usage_error(cmd,
                                    "invalid value '%s' for %s (expected integers separated by "
                                    "commas, e.g. 1,2,3)",
                                    value, spec->name);
        int_list_free(spec->dest); // a repeated option replaces the earlier list
        *(IntList *)spec->dest = parsed;
        return ARGS_OK;
    }
    case ARG_FLAG: break;
    }
    return args_usage_error(cmd, "internal error: bad spec for %s", spec->name);
}

int args_parse(const char *cmd, const char *usage, const ArgSpec *specs, int n_specs, int argc,
               char **argv, const char **positional, int min_positional, int max_positional) {
    // --help wins over every other problem on the line, as long as it comes before "--" and
    // is not the value of an option ("--stop -h").
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help(usage, specs, n_specs);
            return ARGS_HELP;
        }
        const ArgSpec *spec = argv[i][0] == '-' && !strchr(argv[i], '=')
                                  ? find_spec(specs, n_specs, argv[i], strlen(argv[i]))
                                  : NULL;
        // Skip its value; a "--..." there is an option (and an error in the main loop).
        if (spec && spec->kind != ARG_FLAG && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) i++;
    }
    int n_pos = 0;
    int options_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int is_option = !options_done && arg[0] == '-' && arg[1] != '\0';
        if (!is_option) {
            if (n_pos >= max_positional) {
                if (max_positional == 0)
                    return args_usage_error(cmd, "unexpected argument '%s'", arg);
                return args_usage_error(cmd, "too many arguments: '%s' (at most %d expected)", arg,
                                        max_positional);
            }
            positional[n_pos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = 1;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const ArgSpec *spec = find_spec(specs, n_specs, arg, name_len);
        if (!spec) return unknown_option(cmd, specs, n_specs, arg, name_len);
        if (spec->kind == ARG_FLAG) {
            if (eq) return args_usage_error(cmd, "option %s takes no value", spec->name);
            *(int *)spec->dest = 1;
            continue;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else {
            if (i + 1 >= argc)
                return args_usage_error(cmd, "option %s needs a value (%s)", spec->name,
                                        spec->metavar ? spec->metavar : "VALUE");
            value = argv[i + 1];
            if (strncmp(value, "--", 2) == 0 && value[2] != '\0')
                return args_usage_error(cmd,
                                        "option %s needs a value, got option '%s' (write %s=VALUE "
                                        "for a value that starts with --)",
                                        spec->name, value, spec->name);
            i++;
        }
        int rc = set_value(cmd, spec, value);
        if (rc != ARGS_OK) return rc;
    }
    if (n_pos < min_positional) {
        return args_usage_error(cmd, "missing argument%s (usage: %s)",
                                min_positional - n_pos > 1 ? "s" : "", usage);
    }
    return ARGS_OK;
}
