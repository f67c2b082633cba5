// Host allocation wrappers with fault injection (see alloc.h).
#include "alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static atomic_long allocs_left = -1; // < 0: never fail

static int should_fail(void) {
    long left = atomic_load(&allocs_left);
    while (left >= 0) {
        if (left == 0) return 1;
        if (atomic_compare_exchange_weak(&allocs_left, &left, left - 1)) return 0;
    }
    return 0;
}

void mx_alloc_fail_after(long n) { atomic_store(&allocs_left, n); }

void *mx_malloc(size_t bytes) { return should_fail() ? NULL : malloc(bytes ? bytes : 1); }

void *mx_calloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return NULL;
    return should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
}

void *mx_realloc(void *p, size_t bytes) { return should_fail() ? NULL : realloc(p, bytes ? bytes : 1); }

char *mx_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = mx_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void mx_free(void *p) { free(p); }
