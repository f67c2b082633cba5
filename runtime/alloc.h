// Host allocation for the runtime, with a fault-injection hook for tests.
//
// Everything the runtime allocates on the host goes through these, so a test can make the
// n-th allocation fail (mx_alloc_fail_after) and check that the caller returns MX_ERR_NOMEM
// and leaks nothing (LeakSanitizer in the ASan build).
#ifndef MYRMEX_ALLOC_H
#define MYRMEX_ALLOC_H

#include <stddef.h>

void *mx_malloc(size_t bytes);
void *mx_calloc(size_t count, size_t size); // NULL when count * size overflows
void *mx_realloc(void *p, size_t bytes);
char *mx_strdup(const char *s);
void mx_free(void *p);

// Test hook: the next n allocations succeed, every later one fails; n < 0 disables.
void mx_alloc_fail_after(long n);

#endif
