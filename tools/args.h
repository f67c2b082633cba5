// Command-line options for the myrmex subcommands: a table of specs, one parse call.
//
//   ArgSpec specs[] = {
//       {"--model", ARG_STRING, &model_dir, "DIR", "model directory (required)"},
//       {"--max-tokens", ARG_INT, &max_tokens, "N", "tokens to generate (default 32)"},
//       {"--json", ARG_FLAG, &json, NULL, "print one JSON object"},
//   };
//   int rc = args_parse("generate", "myrmex generate --model DIR [options]", specs, N, argc, argv,
//                       positional, 0, 0);
//   if (rc != ARGS_OK) return rc == ARGS_HELP ? 0 : 2;
//
// Accepts "--name value" and "--name=value". Numbers are checked strictly (no trailing junk,
// no overflow, finite floats). --help / -h prints usage plus every spec's help line to stdout.
// Errors print one line "myrmex CMD: ..." to stderr plus a hint to run --help.
// A separate value may not start with "--" (write "--prompt=--x" for that); "-5" is fine.
// "--" ends the options: everything after it is positional. A repeated option: the last wins.
#ifndef MYRMEX_ARGS_H
#define MYRMEX_ARGS_H

#include <stdint.h>

typedef enum ArgKind {
    ARG_FLAG,     // int *: set to 1 when present, takes no value
    ARG_INT,      // int *
    ARG_INT64,    // int64_t *
    ARG_FLOAT,    // float *
    ARG_STRING,   // const char **: points into argv
    ARG_INT_LIST, // IntList *: comma-separated ints, e.g. "1,2,3"
    ARG_DOUBLE,   // double *
} ArgKind;

// Start it zeroed. args_parse replaces it on each occurrence of the option; the caller
// releases it with int_list_free whatever args_parse returned.
typedef struct IntList {
    int *items; // malloc'd by args_parse; release with int_list_free
    int n;
} IntList;

typedef struct ArgSpec {
    const char *name;    // "--max-tokens"
    ArgKind kind;
    void *dest;
    const char *metavar; // "N"; NULL for flags
    const char *help;    // one line
} ArgSpec;

enum { ARGS_OK = 0, ARGS_HELP = 1, ARGS_ERROR = 2 };

// Parses argv[1..argc) (argv[0] is the subcommand name). Arguments that are not options are
// stored in positional[] up to max_positional; fewer than min_positional, or more than
// max_positional, is an error. Returns ARGS_OK, ARGS_HELP (usage printed) or ARGS_ERROR
// (message printed).
int args_parse(const char *cmd, const char *usage, const ArgSpec *specs, int n_specs, int argc,
               char **argv, const char **positional, int min_positional, int max_positional);

// Strict parsers, also used for values read elsewhere. Return 0 on success, -1 on error.
int parse_int(const char *s, int *out);
int parse_int64(const char *s, int64_t *out);
int parse_float(const char *s, float *out);
int parse_double(const char *s, double *out);
int parse_int_list(const char *s, IntList *out); // empty items and junk are errors

void int_list_free(IntList *l);

// For checks a command makes after args_parse (e.g. "--heads must divide --hidden"): prints
// "myrmex CMD: <message>" and the --help hint to stderr, exactly as args_parse does, and
// returns ARGS_ERROR so a command can `return args_usage_error(...);` (exit status 2).
int args_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// The candidate closest to word by edit distance, or NULL when none is close (used for
// "did you mean" hints on unknown options and commands).
const char *args_closest(const char *word, const char *const *candidates, int n);

#endif
