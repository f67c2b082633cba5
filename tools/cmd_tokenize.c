// myrmex tokenize: a model directory's tokenizer from the command line. Text (an argument, or
// all of standard input, any bytes) to comma-separated ids; --decode ids back to text; --json
// for exact text either way; --repeat N to measure encode (or decode) speed on one thread.
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/alloc.h"
#include "../runtime/tokenizer.h"
#include "../runtime/utf8.h"
#include "args.h"
#include "commands.h"

#define CMD "tokenize"
#define REPEAT_UNSET INT_MIN

static int fail(void) {
    fprintf(stderr, "myrmex " CMD ": error: %s\n", mx_last_error());
    return 1;
}

// Reads all of f into a malloc'd buffer (NUL-terminated, *len excludes it).
static MxStatus read_all(FILE *f, char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = mx_malloc(cap);
    if (!buf) return mx_fail(MX_ERR_NOMEM, "reading standard input");
    for (;;) {
        if (cap - n < 2) {
            char *p = cap > ((size_t)-1) / 2 ? NULL : mx_realloc(buf, cap * 2);
            if (!p) {
                mx_free(buf);
                return mx_fail(MX_ERR_NOMEM, "reading standard input (%zu bytes so far)", n);
            }
            buf = p;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        mx_free(buf);
        return mx_fail(MX_ERR_IO, "cannot read standard input");
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return MX_OK;
}

// A JSON string of s[0..n): escapes quotes, backslashes and control characters, and writes
// invalid UTF-8 as U+FFFD (the character the tokenizer reads it as), so the output is JSON
// whatever the bytes.
static void put_json_string(FILE *out, const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    fputc('"', out);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode(u + i, n - i, &cp);
        if (cp == '"' || cp == '\\') fprintf(out, "\\%c", (char)cp);
        else if (cp == '\n') fputs("\\n", out);
        else if (cp == '\t') fputs("\\t", out);
        else if (cp == '\r') fputs("\\r", out);
        else if (cp < 0x20 || cp == 0x7f) fprintf(out, "\\u%04x", (unsigned)cp);
        else if (cp == 0xfffd) fputs("\xef\xbf\xbd", out); // U+FFFD itself, or invalid bytes
        else fwrite(s + i, 1, k, out);
        i += k;
    }
    fputc('"', out);
}

static void put_json(const int32_t *ids, int n, const char *text, size_t len) {
    printf("{\"ids\":[");
    for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
    printf("],\"text\":");
    put_json_string(stdout, text, len);
    printf("}\n");
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// One line on stderr for benchmark scripts: key=value pairs, MB = 10^6 bytes of text.
static void print_bench(const char *op, size_t bytes, int tokens, int repeat, double seconds) {
    double s = seconds > 0 ? seconds : 1e-9;
    fprintf(stderr, "bench: op=%s bytes=%zu tokens=%d repeat=%d seconds=%.6f MB/s=%.3f tokens/s=%.1f\n", op, bytes,
            tokens, repeat, seconds, (double)bytes * repeat / s / 1e6, (double)tokens * repeat / s);
}

static int run_encode(const Tokenizer *tok, const char *text, size_t len, bool add_special, int repeat, bool json) {
    int32_t *ids = NULL;
    int n = 0;
    double spent = 0;
    for (int r = 0; r < (repeat > 0 ? repeat : 1); r++) {
        mx_free(ids);
        ids = NULL;
        double t0 = now_seconds();
        MxStatus st = tokenizer_encode(tok, text, len, add_special, &ids, &n);
        spent += now_seconds() - t0;
        if (st != MX_OK) return fail();
    }
    if (repeat > 0) print_bench("encode", len, n, repeat, spent);
    if (json) {
        put_json(ids, n, text, len);
    } else {
        for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
        printf("\n");
    }
    mx_free(ids);
    return 0;
}

static int run_decode(const Tokenizer *tok, const IntList *list, bool skip_special, int repeat, bool json) {
    int32_t *ids = mx_malloc((size_t)(list->n ? list->n : 1) * sizeof *ids);
    if (!ids) return fail();
    for (int i = 0; i < list->n; i++) ids[i] = (int32_t)list->items[i];
    char *text = NULL;
    size_t len = 0;
    double spent = 0;
    int rc = 0;
    for (int r = 0; r < (repeat > 0 ? repeat : 1) && rc == 0; r++) {
        mx_free(text);
        text = NULL;
        double t0 = now_seconds();
        MxStatus st = tokenizer_decode(tok, ids, list->n, skip_special, &text, &len);
        spent += now_seconds() - t0;
        if (st != MX_OK) rc = fail();
    }
    if (rc == 0) {
        if (repeat > 0) print_bench("decode", len, list->n, repeat, spent);
        if (json) {
            put_json(ids, list->n, text, len);
        } else {
            fwrite(text, 1, len, stdout);
            printf("\n");
        }
    }
    mx_free(text);
    mx_free(ids);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model_dir = NULL;
    IntList decode = {0};
    int json = 0, add_special = 0, skip_special = 0, repeat = REPEAT_UNSET;
    ArgSpec specs[] = {
        {"--model", ARG_STRING, &model_dir, "DIR", "directory with tokenizer.json (required; config.json is not needed)"},
        {"--decode", ARG_INT_LIST, &decode, "IDS", "print the text of these comma-separated ids instead"},
        {"--json", ARG_FLAG, &json, NULL, "print {\"ids\":[...],\"text\":\"...\"} (the text exactly, as JSON)"},
        {"--add-special", ARG_FLAG, &add_special, NULL, "add bos/eos as the tokenizer config says (default: off)"},
        {"--skip-special", ARG_FLAG, &skip_special, NULL, "--decode: leave special tokens out of the text"},
        {"--repeat", ARG_INT, &repeat, "N",
         "run the encode (or decode) N times on one thread and print bytes, seconds, MB/s and tokens/s to stderr"},
    };
    const char *text_arg[1] = {NULL};
    int rc = args_parse(CMD,
                        "myrmex tokenize --model DIR [TEXT]    (ids of TEXT, or of all of standard input)\n"
                        "       myrmex tokenize --model DIR --decode IDS",
                        specs, (int)(sizeof specs / sizeof *specs), argc, argv, text_arg, 0, 1);
    if (rc != ARGS_OK) {
        int_list_free(&decode);
        return rc == ARGS_HELP ? 0 : 2;
    }
    const char *usage = !model_dir                    ? "--model is required (see --help)"
                        : decode.n && text_arg[0]     ? "give TEXT or --decode IDS, not both"
                        : decode.n && add_special     ? "--add-special applies to encoding, not --decode"
                        : !decode.n && skip_special   ? "--skip-special applies to --decode"
                        : repeat != REPEAT_UNSET && repeat < 1 ? "--repeat must be >= 1"
                                                      : NULL;
    if (repeat == REPEAT_UNSET) repeat = 0; // no timing
    if (usage) {
        int_list_free(&decode);
        return args_usage_error(CMD, "%s", usage);
    }

    Tokenizer *tok = NULL;
    if (tokenizer_load(model_dir, 0, &tok) != MX_OK) {
        int_list_free(&decode);
        return fail();
    }
    if (decode.n) {
        rc = run_decode(tok, &decode, skip_special, repeat, json);
    } else if (text_arg[0]) {
        rc = run_encode(tok, text_arg[0], strlen(text_arg[0]), add_special, repeat, json);
    } else {
        char *text = NULL;
        size_t len = 0;
        rc = read_all(stdin, &text, &len) != MX_OK ? fail() : run_encode(tok, text, len, add_special, repeat, json);
        mx_free(text);
    }
    tokenizer_free(tok);
    int_list_free(&decode);
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) { // ferror: an earlier flush failed
        fprintf(stderr, "myrmex " CMD ": error: cannot write standard output\n");
        rc = 1;
    }
    return rc;
}
