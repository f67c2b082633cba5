// Writing safetensors files (see safetensors_write.h).
//
// The header is built by hand rather than with cJSON: cJSON prints numbers as doubles
// ("1e+15"), and safetensors readers want plain integers for shapes and offsets.
#include "safetensors_write.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "utf8.h"

// ---------------------------------------------------------------------------------------
// A growable string for the header

typedef struct Buf {
    char *p;
    size_t len, cap;
    int oom; // sticky: any failed append makes the whole buffer invalid
} Buf;

static void buf_reserve(Buf *b, size_t extra) {
    if (b->oom) return;
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = mx_realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void buf_add(Buf *b, const char *s, size_t n) {
    buf_reserve(b, n);
    if (b->oom) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
    char tmp[64]; // only used for numbers
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = 1;
        return;
    }
    buf_add(b, tmp, (size_t)n);
}

// A JSON string literal. The text is valid UTF-8 (checked when added), so only quotes,
// backslashes and control characters need escaping.
static void buf_add_json_string(Buf *b, const char *s) {
    buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            buf_add(b, esc, 2);
        } else if (*p < 0x20) {
            buf_printf(b, "\\u%04x", *p);
        } else {
            buf_add(b, (const char *)p, 1);
        }
    }
    buf_add(b, "\"", 1);
}

// ---------------------------------------------------------------------------------------
// Collecting tensors

// A NUL-terminated string's UTF-8 validity (the bytes before its NUL).
static int cstr_utf8_valid(const char *s) { return utf8_valid((const uint8_t *)s, strlen(s)); }

const char *st_writer_dtype_name(DType t) {
    return t == DT_F32 ? "F32" : t == DT_F16 ? "F16" : "BF16";
}

void st_writer_init(StWriter *w) { memset(w, 0, sizeof *w); }

void st_writer_free(StWriter *w) {
    for (int i = 0; i < w->n_tensors; i++) mx_free(w->tensors[i].name);
    mx_free(w->tensors);
    for (int i = 0; i < 2 * w->n_meta; i++) mx_free(w->meta[i]);
    mx_free(w->meta);
    memset(w, 0, sizeof *w);
}

MxStatus st_writer_set_metadata(StWriter *w, const char *key, const char *value) {
    if (!cstr_utf8_valid(key) || !cstr_utf8_valid(value))
        return mx_fail(MX_ERR_ARG, "safetensors metadata is not valid UTF-8");
    char *v = mx_strdup(value);
    if (!v) return mx_fail(MX_ERR_NOMEM, "safetensors metadata");
    for (int i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta[2 * i], key) == 0) {
            mx_free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return MX_OK;
        }
    }
    char *k = mx_strdup(key);
    char **meta = k ? mx_realloc(w->meta, sizeof *meta * 2 * (size_t)(w->n_meta + 1)) : NULL;
    if (!meta) {
        mx_free(k);
        mx_free(v);
        return mx_fail(MX_ERR_NOMEM, "safetensors metadata");
    }
    w->meta = meta;
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return MX_OK;
}

static MxStatus add_tensor(StWriter *w, const char *name, DType dtype, int rank,
                           const int64_t *shape, const void *data, StFillFn fill, void *ctx) {
    if (!name || !*name || strcmp(name, "__metadata__") == 0 || !cstr_utf8_valid(name))
        return mx_fail(MX_ERR_ARG, "invalid safetensors tensor name");
    for (int i = 0; i < w->n_tensors; i++) {
        if (strcmp(w->tensors[i].name, name) == 0)
            return mx_fail(MX_ERR_ARG, "tensor %s added twice", name);
    }
    if (rank < 0 || rank > ST_MAX_RANK || (rank > 0 && !shape))
        return mx_fail(MX_ERR_ARG, "tensor %s: rank %d is not in [0, %d]", name, rank, ST_MAX_RANK);
    if (dtype != DT_F32 && dtype != DT_F16 && dtype != DT_BF16)
        return mx_fail(MX_ERR_ARG, "tensor %s: unknown dtype %d", name, (int)dtype);
    if (!data && !fill) return mx_fail(MX_ERR_ARG, "tensor %s has no data", name);
    StWriterTensor t = {.dtype = dtype, .rank = rank, .data = data, .fill = fill, .fill_ctx = ctx};
    uint64_t nbytes = dtype_size(dtype);
    for (int d = 0; d < rank; d++) {
        if (shape[d] < 0) return mx_fail(MX_ERR_ARG, "tensor %s: negative dimension", name);
        t.shape[d] = shape[d];
        if (__builtin_mul_overflow(nbytes, (uint64_t)shape[d], &nbytes))
            return mx_fail(MX_ERR_ST_SIZE_OVERFLOW, "tensor %s", name);
    }
    uint64_t total;
    if (__builtin_add_overflow(w->data_bytes, nbytes, &total))
        return mx_fail(MX_ERR_ST_SIZE_OVERFLOW, "tensor %s: file too large", name);
    t.nbytes = nbytes;
    if (w->n_tensors == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        StWriterTensor *grown = mx_realloc(w->tensors, sizeof *grown * (size_t)cap);
        if (!grown) return mx_fail(MX_ERR_NOMEM, "adding tensor %s", name);
        w->tensors = grown;
        w->cap = cap;
    }
    t.name = mx_strdup(name);
    if (!t.name) return mx_fail(MX_ERR_NOMEM, "adding tensor %s", name);
    w->tensors[w->n_tensors++] = t;
    w->data_bytes = total;
    return MX_OK;
}

MxStatus st_writer_add(StWriter *w, const char *name, DType dtype, int rank, const int64_t *shape,
                       const void *data) {
    return add_tensor(w, name, dtype, rank, shape, data, NULL, NULL);
}

MxStatus st_writer_add_fill(StWriter *w, const char *name, DType dtype, int rank,
                            const int64_t *shape, StFillFn fill, void *ctx) {
    return add_tensor(w, name, dtype, rank, shape, NULL, fill, ctx);
}

// ---------------------------------------------------------------------------------------
// Writing

// The header JSON padded with spaces to a multiple of 8 bytes. Returns 0 or -1 (no memory).
static int build_header(const StWriter *w, Buf *b) {
    memset(b, 0, sizeof *b);
    buf_add(b, "{", 1);
    int first = 1;
    if (w->n_meta) {
        buf_add_json_string(b, "__metadata__");
        buf_add(b, ":{", 2);
        for (int i = 0; i < w->n_meta; i++) {
            if (i) buf_add(b, ",", 1);
            buf_add_json_string(b, w->meta[2 * i]);
            buf_add(b, ":", 1);
            buf_add_json_string(b, w->meta[2 * i + 1]);
        }
        buf_add(b, "}", 1);
        first = 0;
    }
    uint64_t offset = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        const StWriterTensor *t = &w->tensors[i];
        if (!first) buf_add(b, ",", 1);
        first = 0;
        buf_add_json_string(b, t->name);
        buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", st_writer_dtype_name(t->dtype));
        for (int d = 0; d < t->rank; d++) buf_printf(b, d ? ",%" PRId64 : "%" PRId64, t->shape[d]);
        buf_printf(b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, offset + t->nbytes);
        offset += t->nbytes;
    }
    buf_add(b, "}", 1);
    while (!b->oom && b->len % 8 != 0) buf_add(b, " ", 1);
    if (b->oom) {
        mx_free(b->p);
        memset(b, 0, sizeof *b);
        return -1;
    }
    return 0;
}

uint64_t st_writer_header_bytes(const StWriter *w) {
    Buf b;
    if (build_header(w, &b) != 0) return 0;
    uint64_t n = b.len;
    mx_free(b.p);
    return n;
}

static MxStatus write_all(FILE *f, const char *path, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, f) != n)
        return mx_fail(MX_ERR_IO, "writing %s: %s", path, strerror(errno));
    return MX_OK;
}

// Streams one fill-callback tensor through a bounded scratch buffer.
static MxStatus write_filled(FILE *f, const char *path, const StWriterTensor *t, void *scratch) {
    size_t esize = dtype_size(t->dtype);
    uint64_t count = t->nbytes / esize;
    uint64_t per_chunk = ST_WRITE_CHUNK / esize;
    for (uint64_t first = 0; first < count; first += per_chunk) {
        uint64_t n = count - first < per_chunk ? count - first : per_chunk;
        MxStatus s = t->fill(t->fill_ctx, scratch, first, n);
        if (s != MX_OK) return s;
        s = write_all(f, path, scratch, (size_t)(n * esize));
        if (s != MX_OK) return s;
    }
    return MX_OK;
}

MxStatus st_writer_write(const StWriter *w, const char *path) {
    Buf header;
    if (build_header(w, &header) != 0) return mx_fail(MX_ERR_NOMEM, "safetensors header for %s", path);
    void *scratch = NULL;
    for (int i = 0; i < w->n_tensors && !scratch; i++) {
        if (!w->tensors[i].data && w->tensors[i].nbytes) {
            scratch = mx_malloc(ST_WRITE_CHUNK);
            if (!scratch) {
                mx_free(header.p);
                return mx_fail(MX_ERR_NOMEM, "write buffer for %s", path);
            }
        }
    }
    MxStatus s = MX_OK;
    FILE *f = fopen(path, "wb");
    if (!f) {
        s = mx_fail(MX_ERR_IO, "cannot create %s: %s", path, strerror(errno));
        goto done;
    }
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (uint8_t)((uint64_t)header.len >> (8 * i));
    s = write_all(f, path, len_le, sizeof len_le);
    if (s == MX_OK) s = write_all(f, path, header.p, header.len);
    for (int i = 0; i < w->n_tensors && s == MX_OK; i++) {
        const StWriterTensor *t = &w->tensors[i];
        if (t->nbytes == 0) continue;
        s = t->data ? write_all(f, path, t->data, (size_t)t->nbytes) : write_filled(f, path, t, scratch);
    }
    if (fclose(f) != 0 && s == MX_OK) s = mx_fail(MX_ERR_IO, "closing %s: %s", path, strerror(errno));
    if (s != MX_OK) unlink(path);
done:
    mx_free(scratch);
    mx_free(header.p);
    return s;
}
