// A tiny test harness: CHECK macros that count failures, scratch directories, file helpers.
// A test binary returns test_exit(): 0 when every check passed, 1 otherwise (77 = skipped).
#ifndef MYRMEX_TEST_UTIL_H
#define MYRMEX_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int test_failures;
extern int test_checks;

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        test_checks++;                                                                        \
        if (!(cond)) {                                                                        \
            test_failures++;                                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
        }                                                                                     \
    } while (0)

// Checks that status expression `got` equals `want`, printing both names and the detail.
#define CHECK_STATUS(got, want) test_check_status((got), (want), __FILE__, __LINE__, #got)
void test_check_status(int got, int want, const char *file, int line, const char *expr);

// Runs a named test function and reports it.
#define RUN(fn)                                                                               \
    do {                                                                                      \
        int before_ = test_failures;                                                          \
        fn();                                                                                 \
        fprintf(stderr, "%s %s\n", test_failures == before_ ? "ok  " : "FAIL", #fn);          \
    } while (0)

int test_exit(void);

// A fresh, empty scratch directory under $MYRMEX_TMP (or /tmp), unique per call; the
// returned string is static storage valid until the next call.
const char *test_tmpdir(const char *tag);

// A seeded splitmix64 stream for random test inputs (one per process).
void test_rng_seed(uint64_t seed);
uint64_t test_rng_next(void);
float test_rng_float(float lo, float hi); // uniform in [lo, hi), 24 random bits
int test_rng_int(int lo, int hi);         // uniform in [lo, hi]
void test_shuffle(int32_t *a, int n);
// malloc that exits the test on failure (0 bytes gives a unique pointer).
void *xmalloc(size_t bytes);

// The CPU reference backend (backend_open("cpu")), for model_load.
struct Backend;
const struct Backend *test_cpu_backend(void);
// Writes bytes to dir/name (creating or truncating); returns 0 on success.
int test_write_file(const char *dir, const char *name, const void *data, size_t len);
// Joins dir and name into a static buffer (valid until the next call).
const char *test_path(const char *dir, const char *name);

// A whole file read into memory (release data with free()).
typedef struct TestBytes {
    uint8_t *data;
    size_t len;
} TestBytes;
// Returns 0, or -1 when the file cannot be opened.
int test_read_file(const char *path, TestBytes *out);

// A little-endian cursor over a fixture file's bytes; any read past the end sets bad.
typedef struct Cur {
    const uint8_t *p, *end;
    bool bad;
} Cur;
uint32_t cur_u32(Cur *c);
// A u32-length-prefixed string: a pointer into the bytes, its length in *len ("" when bad).
const char *cur_str(Cur *c, size_t *len);

#endif
