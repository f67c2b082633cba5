// Strict cJSON helpers (see json_util.h).
#include "json_util.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

static pthread_once_t json_once = PTHREAD_ONCE_INIT;

static void json_init_hooks(void) {
    cJSON_Hooks hooks = {.malloc_fn = mx_malloc, .free_fn = mx_free};
    cJSON_InitHooks(&hooks);
}

void json_init(void) { pthread_once(&json_once, json_init_hooks); }

MxStatus json_read_file(const char *path, size_t max_bytes, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return mx_fail(MX_ERR_IO, "cannot open %s", path);
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return mx_fail(MX_ERR_IO, "cannot seek %s", path);
    }
    long size = ftell(f);
    if (size < 0 || (unsigned long)size > max_bytes) {
        fclose(f);
        return mx_fail(MX_ERR_IO, "%s: size %ld is over the limit of %zu bytes", path, size, max_bytes);
    }
    rewind(f);
    char *buf = mx_malloc((size_t)size + 1);
    if (!buf) {
        fclose(f);
        return mx_fail(MX_ERR_NOMEM, "reading %s", path);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        mx_free(buf);
        return mx_fail(MX_ERR_IO, "short read of %s", path);
    }
    buf[size] = 0;
    *out = buf;
    *len = (size_t)size;
    return MX_OK;
}

int json_parse(const char *text, size_t len, cJSON **out) {
    json_init();
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    return *out ? 0 : -1;
}

int json_get_u53(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double d = item->valuedouble;
    if (!isfinite(d) || d < 0 || d > JSON_MAX_SAFE_INT || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

int json_get_int(const cJSON *item, int *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double d = item->valuedouble;
    if (!isfinite(d) || d < INT_MIN || d > INT_MAX || floor(d) != d) return 0;
    *out = (int)d;
    return 1;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int json_has_duplicate_keys(const cJSON *object) {
    int n = cJSON_GetArraySize(object);
    if (n < 2) return 0;
    const char **names = mx_malloc((size_t)n * sizeof *names);
    if (!names) return -1;
    int i = 0;
    for (const cJSON *c = object->child; c && i < n; c = c->next) names[i++] = c->string ? c->string : "";
    qsort(names, (size_t)i, sizeof *names, cmp_str_ptr);
    int dup = 0;
    for (int j = 1; j < i && !dup; j++) dup = strcmp(names[j - 1], names[j]) == 0;
    mx_free(names);
    return dup;
}
