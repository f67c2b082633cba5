// Shared helpers for the C tests (see test_util.h).
#include "test_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "status.h"

int test_failures;
int test_checks;

void test_check_status(int got, int want, const char *file, int line, const char *expr) {
    test_checks++;
    if (got != want) {
        test_failures++;
        fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", file, line, expr,
                mx_status_name((MxStatus)got), mx_status_name((MxStatus)want), mx_last_error());
    }
}

int test_exit(void) {
    fprintf(stderr, "%d checks, %d failed\n", test_checks, test_failures);
    return test_failures ? 1 : 0;
}

static int mkdir_p(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST) return -1;
            *p = '/';
        }
    }
    return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

const char *test_tmpdir(const char *tag) {
    static char dir[4096];
    static unsigned counter;
    const char *root = getenv("MYRMEX_TMP");
    if (!root || !*root) root = "/tmp/myrmex-test";
    snprintf(dir, sizeof dir, "%s/%s-%d-%u", root, tag, (int)getpid(), counter++);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0 || mkdir_p(dir) != 0) {
        fprintf(stderr, "cannot create scratch directory %s\n", dir);
        exit(1);
    }
    return dir;
}

int test_write_file(const char *dir, const char *name, const void *data, size_t len) {
    FILE *f = fopen(test_path(dir, name), "wb");
    if (!f) return -1;
    size_t n = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && n == len) ? 0 : -1;
}

const char *test_path(const char *dir, const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

int test_read_file(const char *path, TestBytes *out) {
    out->data = NULL;
    out->len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        if (!buf) abort();
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    out->data = buf;
    out->len = n;
    return 0;
}

uint32_t cur_u32(Cur *c) {
    if ((size_t)(c->end - c->p) < 4) {
        c->bad = true;
        return 0;
    }
    uint32_t v = (uint32_t)c->p[0] | (uint32_t)c->p[1] << 8 | (uint32_t)c->p[2] << 16 | (uint32_t)c->p[3] << 24;
    c->p += 4;
    return v;
}

const char *cur_str(Cur *c, size_t *len) {
    *len = cur_u32(c);
    if (c->bad || (size_t)(c->end - c->p) < *len) {
        c->bad = true;
        *len = 0;
        return "";
    }
    const char *s = (const char *)c->p;
    c->p += *len;
    return s;
}

const struct Backend *test_cpu_backend(void) {
    static Backend cpu;
    if (!cpu.ops && backend_open("cpu", &cpu) != MX_OK) {
        fprintf(stderr, "cannot open the CPU backend: %s\n", mx_last_error());
        exit(1);
    }
    return &cpu;
}

static uint64_t test_rng_state;

void test_rng_seed(uint64_t seed) { test_rng_state = seed * 0x9e3779b97f4a7c15ull + 1; }

uint64_t test_rng_next(void) {
    uint64_t z = (test_rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float test_rng_float(float lo, float hi) { return lo + (hi - lo) * (float)((double)(test_rng_next() >> 40) / 16777216.0); }

int test_rng_int(int lo, int hi) { return lo + (int)(test_rng_next() % (uint64_t)(hi - lo + 1)); }

void test_shuffle(int32_t *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = test_rng_int(0, i);
        int32_t tmp = a[i];
        a[i] = a[j];
        a[j] = tmp;
    }
}

void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
    }
    return p;
}
