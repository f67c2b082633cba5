// Tests of the command-line parsing in tools/args.c: the strict scalar parsers, and
// args_parse on every option kind, with the messages it prints captured and checked.
//
// tools/*.c is linked into the myrmex binary only, so the file is compiled in here.
#include "../tools/args.c"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

// ---------------------------------------------------------------------------------------
// Scalar parsers

static void test_parse_int(void) {
    int v = 0;
    CHECK(parse_int("0", &v) == 0 && v == 0);
    CHECK(parse_int("42", &v) == 0 && v == 42);
    CHECK(parse_int("-7", &v) == 0 && v == -7);
    CHECK(parse_int("+3", &v) == 0 && v == 3);
    CHECK(parse_int("2147483647", &v) == 0 && v == INT_MAX);
    CHECK(parse_int("-2147483648", &v) == 0 && v == INT_MIN);
    v = 99;
    static const char *const bad[] = {"", " 1", "1 ", "1x", "x1", "0x10", "1.0", "1e3", "--1",
                                      "2147483648", "-2147483649", "99999999999999999999", "+", "-"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = parse_int(bad[i], &v);
        CHECK(rc == -1);
        if (rc != -1) fprintf(stderr, "  parse_int accepted '%s'\n", bad[i]);
    }
    CHECK(v == 99); // untouched on failure
    CHECK(parse_int(NULL, &v) == -1);
}

static void test_parse_int64(void) {
    int64_t v = 0;
    CHECK(parse_int64("9223372036854775807", &v) == 0 && v == INT64_MAX);
    CHECK(parse_int64("-9223372036854775808", &v) == 0 && v == INT64_MIN);
    CHECK(parse_int64("99999999999", &v) == 0 && v == 99999999999LL);
    CHECK(parse_int64("9223372036854775808", &v) == -1);
    CHECK(parse_int64("-9223372036854775809", &v) == -1);
    CHECK(parse_int64("12 ", &v) == -1);
    CHECK(parse_int64("", &v) == -1);
}

static void test_parse_float(void) {
    float f = 0;
    CHECK(parse_float("1.5", &f) == 0 && f == 1.5f);
    CHECK(parse_float("-2e3", &f) == 0 && f == -2000.0f);
    CHECK(parse_float("0", &f) == 0 && f == 0.0f);
    CHECK(parse_float(".25", &f) == 0 && f == 0.25f);
    CHECK(parse_float("3.4e38", &f) == 0);
    static const char *const bad[] = {"", " 1", "1 ", "1.5x", "nan", "NaN", "inf", "-inf",
                                      "infinity", "1e39", "-1e39", "1e-50", "0x1p3", ".", "e5", "1,5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = parse_float(bad[i], &f);
        CHECK(rc == -1);
        if (rc != -1) fprintf(stderr, "  parse_float accepted '%s'\n", bad[i]);
    }
    double d = 0;
    CHECK(parse_double("1e300", &d) == 0 && d == 1e300);
    CHECK(parse_double("500000", &d) == 0 && d == 500000.0);
    CHECK(parse_double("1e309", &d) == -1);
    CHECK(parse_double("nan", &d) == -1);
    CHECK(parse_double("inf", &d) == -1);
    CHECK(parse_double("2.5.1", &d) == -1);
}

static void test_parse_int_list(void) {
    IntList l = {0};
    CHECK(parse_int_list("1,2,3", &l) == 0 && l.n == 3 && l.items[0] == 1 && l.items[2] == 3);
    int_list_free(&l);
    CHECK(l.items == NULL && l.n == 0);
    CHECK(parse_int_list("7", &l) == 0 && l.n == 1 && l.items[0] == 7);
    int_list_free(&l);
    CHECK(parse_int_list("-1,+2,2147483647", &l) == 0 && l.n == 3 && l.items[2] == INT_MAX);
    int_list_free(&l);
    static const char *const bad[] = {"", ",", "1,", ",1", "1,,2", "1,a", "1, 2", "1 ,2",
                                      "2147483648", "1,2,3x", "1;2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = parse_int_list(bad[i], &l);
        CHECK(rc == -1 && l.items == NULL && l.n == 0);
        if (rc != -1) fprintf(stderr, "  parse_int_list accepted '%s'\n", bad[i]);
    }
    // A long list: every item kept, in order.
    char buf[4096];
    size_t o = 0;
    for (int i = 0; i < 500; i++) o += (size_t)snprintf(buf + o, sizeof buf - o, i ? ",%d" : "%d", i * 3);
    CHECK(parse_int_list(buf, &l) == 0 && l.n == 500 && l.items[499] == 1497);
    int_list_free(&l);
    int_list_free(NULL); // allowed
}

static void test_closest(void) {
    static const char *const names[] = {"--layers", "--heads", "--kv-heads", "--hidden"};
    CHECK(args_closest("--layer", names, 4) == names[0]);
    CHECK(args_closest("--haeds", names, 4) == names[1]);
    CHECK(args_closest("--kvheads", names, 4) == names[2]);
    CHECK(args_closest("--xyzzy", names, 4) == NULL);
    CHECK(args_closest("-h", names, 4) == NULL);
    CHECK(args_closest("--layers", names, 0) == NULL);
}

// ---------------------------------------------------------------------------------------
// args_parse, with stdout and stderr captured

typedef struct Opts {
    int flag, n;
    int64_t big;
    float f;
    double d;
    const char *s;
    IntList list;
} Opts;

static char out_text[8192], err_text[8192];

static void read_back(FILE *tmp, char *buf, size_t size) {
    rewind(tmp);
    size_t n = fread(buf, 1, size - 1, tmp);
    buf[n] = '\0';
}

// Runs args_parse on {"test", args..., NULL} with 0..2 positionals; captures both streams.
static int run_parse(Opts *o, const char **pos, char **args) {
    ArgSpec specs[] = {
        {"--flag", ARG_FLAG, &o->flag, NULL, "a flag"},
        {"--n", ARG_INT, &o->n, "N", "an int"},
        {"--big", ARG_INT64, &o->big, "B", "an int64"},
        {"--f", ARG_FLOAT, &o->f, "F", "a float"},
        {"--d", ARG_DOUBLE, &o->d, "D", "a double"},
        {"--s", ARG_STRING, &o->s, "TEXT", "a string"},
        {"--list", ARG_INT_LIST, &o->list, "IDS", "ints"},
    };
    char *argv[32] = {"test"};
    int argc = 1;
    while (args[argc - 1]) argv[argc] = args[argc - 1], argc++;
    fflush(stdout);
    fflush(stderr);
    FILE *tout = tmpfile(), *terr = tmpfile();
    int save_out = dup(1), save_err = dup(2);
    dup2(fileno(tout), 1);
    dup2(fileno(terr), 2);
    int rc = args_parse("test", "myrmex test [options] [A [B]]", specs, 7, argc, argv, pos, 0, 2);
    fflush(stdout);
    fflush(stderr);
    dup2(save_out, 1);
    dup2(save_err, 2);
    close(save_out);
    close(save_err);
    read_back(tout, out_text, sizeof out_text);
    read_back(terr, err_text, sizeof err_text);
    fclose(tout);
    fclose(terr);
    return rc;
}

#define PARSE(o, pos, ...) run_parse((o), (pos), (char *[]){__VA_ARGS__, NULL})

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

// An error: ARGS_ERROR, nothing on stdout, "myrmex test: <what>" then the --help hint.
static void check_error(int rc, const char *what) {
    CHECK(rc == ARGS_ERROR);
    CHECK(out_text[0] == '\0');
    CHECK(strncmp(err_text, "myrmex test: ", 13) == 0);
    CHECK(strstr(err_text, what) != NULL);
    CHECK(strstr(err_text, "run 'myrmex test --help' for usage") != NULL);
    CHECK(count_lines(err_text) == 2);
    if (!strstr(err_text, what)) fprintf(stderr, "  expected '%s' in: %s", what, err_text);
}

static void test_parse_values(void) {
    Opts o = {0};
    const char *pos[2] = {0};
    int rc = PARSE(&o, pos, "--flag", "--n", "5", "--big=99999999999", "--f", "0.5", "--d=-2.5", "--s",
                   "hello world", "--list=1,2,3", "a", "b");
    CHECK(rc == ARGS_OK);
    CHECK(o.flag == 1 && o.n == 5 && o.big == 99999999999LL && o.f == 0.5f && o.d == -2.5);
    CHECK(o.s && strcmp(o.s, "hello world") == 0);
    CHECK(o.list.n == 3 && o.list.items[1] == 2);
    CHECK(pos[0] && strcmp(pos[0], "a") == 0 && pos[1] && strcmp(pos[1], "b") == 0);
    CHECK(out_text[0] == '\0' && err_text[0] == '\0');
    int_list_free(&o.list);

    // Negative numbers as separate values; empty string as a string value; the last wins.
    Opts p = {0};
    rc = PARSE(&p, pos, "--n", "-5", "--f", "-1e-3", "--s=", "--n=7", "--list", "4", "--list", "5,6");
    CHECK(rc == ARGS_OK && p.n == 7 && p.f == -1e-3f && p.s && p.s[0] == '\0');
    CHECK(p.list.n == 2 && p.list.items[0] == 5); // the first list was freed, not leaked
    int_list_free(&p.list);

    // "--" ends options; later "--n" and "-x" are positionals.
    Opts q = {0};
    rc = PARSE(&q, pos, "--n", "1", "--", "--n", "-x");
    CHECK(rc == ARGS_OK && q.n == 1 && strcmp(pos[0], "--n") == 0 && strcmp(pos[1], "-x") == 0);
    // A value that starts with "--" is fine after "=".
    rc = PARSE(&q, pos, "--s=--weird");
    CHECK(rc == ARGS_OK && strcmp(q.s, "--weird") == 0);
    // A lone "-" is a positional (stdin by convention).
    rc = PARSE(&q, pos, "-");
    CHECK(rc == ARGS_OK && strcmp(pos[0], "-") == 0);
}

static void test_parse_errors(void) {
    Opts o = {0};
    const char *pos[2] = {0};
    check_error(PARSE(&o, pos, "--nope"), "unknown option '--nope'");
    check_error(PARSE(&o, pos, "--nn=3"), "did you mean --n?");
    check_error(PARSE(&o, pos, "-x"), "unknown option '-x'");
    check_error(PARSE(&o, pos, "--n"), "option --n needs a value (N)");
    check_error(PARSE(&o, pos, "--n", "--flag"), "needs a value, got option '--flag'");
    check_error(PARSE(&o, pos, "--n", "abc"), "invalid value 'abc' for --n (expected an integer)");
    check_error(PARSE(&o, pos, "--n="), "invalid value '' for --n");
    check_error(PARSE(&o, pos, "--n", "5x"), "invalid value '5x'");
    check_error(PARSE(&o, pos, "--n", "3000000000"), "value '3000000000' for --n is out of range");
    check_error(PARSE(&o, pos, "--big", "1e3"), "invalid value '1e3' for --big");
    check_error(PARSE(&o, pos, "--f", "nan"), "expected a finite number");
    check_error(PARSE(&o, pos, "--f", "inf"), "expected a finite number");
    check_error(PARSE(&o, pos, "--f", "1e40"), "expected a finite number");
    check_error(PARSE(&o, pos, "--d", "1e400"), "expected a finite number");
    check_error(PARSE(&o, pos, "--list", "1,,2"), "invalid value '1,,2' for --list");
    check_error(PARSE(&o, pos, "--flag=1"), "option --flag takes no value");
    check_error(PARSE(&o, pos, "a", "b", "c"), "too many arguments: 'c'");
    int_list_free(&o.list);

    // Too few positionals, with no options spec at all.
    const char *one[1];
    char *argv[] = {"test", NULL};
    fflush(stderr);
    FILE *terr = tmpfile();
    int save = dup(2);
    dup2(fileno(terr), 2);
    int rc = args_parse("test", "myrmex test DIR", NULL, 0, 1, argv, one, 1, 1);
    char *argv2[] = {"test", "x", NULL};
    int rc2 = args_parse("test", "myrmex test", NULL, 0, 2, argv2, NULL, 0, 0);
    fflush(stderr);
    dup2(save, 2);
    close(save);
    read_back(terr, err_text, sizeof err_text);
    fclose(terr);
    CHECK(rc == ARGS_ERROR && rc2 == ARGS_ERROR);
    CHECK(strstr(err_text, "myrmex test: missing argument (usage: myrmex test DIR)") != NULL);
    CHECK(strstr(err_text, "myrmex test: unexpected argument 'x'") != NULL);
}

static void test_parse_help(void) {
    Opts o = {0};
    const char *pos[2] = {0};
    int rc = PARSE(&o, pos, "--help");
    CHECK(rc == ARGS_HELP);
    CHECK(err_text[0] == '\0');
    CHECK(strncmp(out_text, "usage: myrmex test [options] [A [B]]\n", 37) == 0);
    CHECK(strstr(out_text, "  --n N ") != NULL);
    CHECK(strstr(out_text, "an int64") != NULL);
    CHECK(strstr(out_text, "--list IDS") != NULL);
    CHECK(strstr(out_text, "-h, --help") != NULL);
    // -h too, and help wins over errors elsewhere on the line.
    CHECK(PARSE(&o, pos, "-h") == ARGS_HELP);
    CHECK(PARSE(&o, pos, "--n", "abc", "--help") == ARGS_HELP && err_text[0] == '\0');
    // ... but not as an option's value, nor after "--", where it is a positional.
    CHECK(PARSE(&o, pos, "--s", "-h") == ARGS_OK && strcmp(o.s, "-h") == 0);
    CHECK(PARSE(&o, pos, "--s", "--help") == ARGS_HELP); // a value may not start with "--"
    CHECK(PARSE(&o, pos, "--", "--help") == ARGS_OK && strcmp(pos[0], "--help") == 0);
    // args_usage_error has the same shape as the parser's own errors.
    fflush(stderr);
    FILE *terr = tmpfile();
    int save = dup(2);
    dup2(fileno(terr), 2);
    rc = args_usage_error("test", "--heads %d does not divide --hidden %d", 3, 64);
    fflush(stderr);
    dup2(save, 2);
    close(save);
    read_back(terr, err_text, sizeof err_text);
    fclose(terr);
    out_text[0] = '\0';
    check_error(rc, "myrmex test: --heads 3 does not divide --hidden 64\n");
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    RUN(test_parse_int);
    RUN(test_parse_int64);
    RUN(test_parse_float);
    RUN(test_parse_int_list);
    RUN(test_closest);
    RUN(test_parse_values);
    RUN(test_parse_errors);
    RUN(test_parse_help);
    return test_exit();
}
