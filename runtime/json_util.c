// Strict cJSON helpers (see json_util.h).
#include "json_util.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define JSON_STRICT_MAX_DEPTH 64 // nesting levels; deeper is rejected

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
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!*out) return -1;
    // Only JSON whitespace may follow the value (cJSON stops right after it).
    for (const char *p = end; p < text + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(*out);
            *out = NULL;
            return -1;
        }
    }
    return 0;
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

// ---- strict JSON syntax (RFC 8259) -------------------------------------------------------
// A recognizer only: it builds nothing. Every index is checked against n before use.

typedef struct JsonScan {
    const uint8_t *s;
    size_t n, i;
} JsonScan;

static void scan_ws(JsonScan *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int scan_hex4(JsonScan *p, unsigned *out) {
    if (p->n - p->i < 4) return 0;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t c = p->s[p->i++];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10u
                   : c >= 'A' && c <= 'F' ? c - 'A' + 10u
                                          : 16u;
        if (d > 15) return 0;
        v = v * 16 + d;
    }
    *out = v;
    return 1;
}

// At the opening quote. Rejects raw control bytes, unknown escapes, \u0000 and unpaired
// surrogate escapes (which cJSON also refuses).
static int scan_string(JsonScan *p) {
    p->i++;
    for (;;) {
        if (p->i >= p->n) return 0;
        uint8_t c = p->s[p->i++];
        if (c == '"') return 1;
        if (c < 0x20) return 0;
        if (c != '\\') continue;
        if (p->i >= p->n) return 0;
        uint8_t e = p->s[p->i++];
        if (e && strchr("\"\\/bfnrt", e)) continue;
        if (e != 'u') return 0;
        unsigned u, lo;
        if (!scan_hex4(p, &u) || u == 0 || (u >= 0xDC00 && u <= 0xDFFF)) return 0;
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') return 0;
            p->i += 2;
            if (!scan_hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF) return 0;
        }
    }
}

static int scan_digits(JsonScan *p) {
    size_t start = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    return p->i > start;
}

// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? ; "01" fails later, at the '1'.
static int scan_number(JsonScan *p) {
    if (p->s[p->i] == '-') p->i++;
    if (p->i >= p->n) return 0;
    if (p->s[p->i] == '0') p->i++;
    else if (!scan_digits(p)) return 0;
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        if (!scan_digits(p)) return 0;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (!scan_digits(p)) return 0;
    }
    return 1;
}

static int scan_literal(JsonScan *p, const char *word) {
    size_t len = strlen(word);
    if (p->n - p->i < len || memcmp(p->s + p->i, word, len) != 0) return 0;
    p->i += len;
    return 1;
}

static int scan_value(JsonScan *p, int depth) {
    if (depth > JSON_STRICT_MAX_DEPTH) return 0;
    scan_ws(p);
    if (p->i >= p->n) return 0;
    uint8_t c = p->s[p->i];
    if (c == '{' || c == '[') {
        uint8_t close = c == '{' ? '}' : ']';
        p->i++;
        scan_ws(p);
        if (p->i < p->n && p->s[p->i] == close) {
            p->i++;
            return 1;
        }
        for (;;) {
            if (c == '{') {
                scan_ws(p);
                if (p->i >= p->n || p->s[p->i] != '"' || !scan_string(p)) return 0;
                scan_ws(p);
                if (p->i >= p->n || p->s[p->i] != ':') return 0;
                p->i++;
            }
            if (!scan_value(p, depth + 1)) return 0;
            scan_ws(p);
            if (p->i >= p->n) return 0;
            uint8_t sep = p->s[p->i++];
            if (sep == close) return 1;
            if (sep != ',') return 0;
        }
    }
    if (c == '"') return scan_string(p);
    if (c == '-' || (c >= '0' && c <= '9')) return scan_number(p);
    return scan_literal(p, "true") || scan_literal(p, "false") || scan_literal(p, "null");
}

int json_strict_ok(const char *text, size_t n) {
    JsonScan p = {(const uint8_t *)text, n, 0};
    if (!scan_value(&p, 0)) return 0;
    scan_ws(&p);
    return p.i == n;
}

MxStatus json_parse_checked(const char *text, size_t len, const char *what, cJSON **root) {
    if (json_parse(text, len, root) != 0)
        return mx_fail(MX_ERR_NOMEM, "%s: cJSON failed on checked JSON (allocation)", what);
    return MX_OK;
}
