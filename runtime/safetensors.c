// Reading and validating safetensors files and sharded indexes (see safetensors.h).
//
// A file is trusted only after every check of RELIABILITY.md ("Model files") has passed:
//
//   [u64 LE N][N bytes of header JSON][data: size - 8 - N bytes]
//
//   1. 8 <= size; 0 < N <= ST_MAX_HEADER; N <= size - 8 (no 8 + N that could overflow).
//   2. The header is copied into a NUL-terminated buffer (the mapping is never parsed in
//      place), must be UTF-8 and strict JSON (json_strict_ok in json_util: cJSON alone accepts NUL
//      and control bytes as whitespace, leading zeros, "1.", raw control bytes in strings).
//   3. The root is an object without duplicate names; "__metadata__" is an object of
//      strings; every other member is {dtype, shape, data_offsets} and nothing else.
//   4. Geometry: product(shape) * element size fits in u64 and equals end - begin; sorted
//      by (begin, end) the spans tile [0, data size) exactly.
// Only then are data pointers formed, so none ever points outside the buffer.
//
// Choices the format leaves open:
//   - A second "__metadata__" is reported as MX_ERR_ST_DUPLICATE_TENSOR (it is a duplicate
//     root name); a duplicate key inside "__metadata__" as MX_ERR_ST_DUPLICATE_KEY.
//   - A zero-sized tensor may sit at any offset where the tiling is at that moment (between
//     two tensors or at the very end), never inside another tensor's span.
//   - A zero dimension makes a tensor 0 bytes even when the other dimensions' product
//     would overflow.
//   - JSON strings may not contain \u0000 (C strings cannot hold it: cJSON would truncate
//     the name silently); the header is rejected as MX_ERR_ST_HEADER_JSON.
//   - Nesting deeper than JSON_STRICT_MAX_DEPTH is MX_ERR_ST_HEADER_JSON.
//   - Dimensions and offsets must be below 2^53 (get_dim); "1.0", "1e3" and "-0" are JSON
//     spellings of integers and are read as such.
//   - The index file must be UTF-8 strict JSON as well (else MX_ERR_INDEX_JSON), and a
//     duplicate key in its root object is MX_ERR_INDEX_JSON. A shard path that exists but is
//     not a regular file is MX_ERR_IO.
//   - In an index: an empty weight_map is MX_ERR_INDEX_JSON; tensors a shard holds but the
//     weight_map does not list are kept (tensor_set_find finds them) unless another shard
//     also holds them (MX_ERR_INDEX_DUPLICATE_TENSOR).
// Because text that passes json_strict_ok is JSON cJSON accepts, a later cJSON failure can
// only be an allocation failure and is reported as MX_ERR_NOMEM.
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "json_util.h"
#include "utf8.h"

#define INDEX_MAX_BYTES (64u * 1024u * 1024u) // a 64 MB index file lists millions of tensors

// ---- dtypes ------------------------------------------------------------------------------

static const struct {
    const char *name;
    size_t size;
} st_dtypes[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1},        [ST_U8] = {"U8", 1},     [ST_I8] = {"I8", 1},
    [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
    [ST_I16] = {"I16", 2},          [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},        [ST_I32] = {"I32", 4},   [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},          [ST_I64] = {"I64", 8},   [ST_U64] = {"U64", 8},
    [ST_F64] = {"F64", 8},
};

int st_dtype_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < ST_DTYPE_COUNT; t++)
        if (strcmp(name, st_dtypes[t].name) == 0) return t;
    return -1;
}

const char *st_dtype_name(StDType t) { return (unsigned)t < ST_DTYPE_COUNT ? st_dtypes[t].name : "?"; }

size_t st_dtype_size(StDType t) { return (unsigned)t < ST_DTYPE_COUNT ? st_dtypes[t].size : 0; }

int st_dtype_to_dtype(StDType t) {
    switch (t) {
    case ST_F32: return DT_F32;
    case ST_F16: return DT_F16;
    case ST_BF16: return DT_BF16;
    default: return -1;
    }
}

// ---- one file ----------------------------------------------------------------------------

typedef struct Span {
    uint64_t begin, end; // data_offsets, relative to the data region
    int idx;             // into the tensor array
} Span;

static int cmp_span(const void *a, const void *b) {
    const Span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

static void free_tensors(StTensor *t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++) mx_free(t[i].name);
    mx_free(t);
}

// A shape dimension or offset: an integer in [0, 2^53). cJSON keeps only the double, and
// 2^53 + 1 (like any larger integer) rounds to an even double >= 2^53, so 2^53 itself is
// refused too: every accepted value is the one the file spelled (fractional spellings that
// round to an integer at 2^52 and above are read as that integer; geometry checks still hold).
static int get_dim(const cJSON *item, uint64_t *out) {
    return json_get_u53(item, out) && *out < (UINT64_C(1) << 53);
}

static MxStatus check_metadata(const cJSON *meta, const char *what) {
    if (!cJSON_IsObject(meta)) return mx_fail(MX_ERR_ST_METADATA, "%s: __metadata__ is not an object", what);
    int dup = json_has_duplicate_keys(meta);
    if (dup < 0) return mx_fail(MX_ERR_NOMEM, "%s: checking __metadata__", what);
    if (dup) return mx_fail(MX_ERR_ST_DUPLICATE_KEY, "%s: __metadata__ has a duplicate key", what);
    for (const cJSON *c = meta->child; c; c = c->next)
        if (!cJSON_IsString(c) || !c->valuestring)
            return mx_fail(MX_ERR_ST_METADATA, "%s: __metadata__ value '%.128s' is not a string", what,
                           c->string ? c->string : "");
    return MX_OK;
}

// Validates one tensor entry e (named e->string) into *t and *span; t->name is set last,
// so on failure t owns nothing.
static MxStatus read_entry(const cJSON *e, const char *what, StTensor *t, Span *span) {
    const char *name = e->string ? e->string : "";
    if (!cJSON_IsObject(e))
        return mx_fail(MX_ERR_ST_ENTRY_KEYS, "%s: tensor '%.128s': entry is not an object", what, name);
    int dup = json_has_duplicate_keys(e);
    if (dup < 0) return mx_fail(MX_ERR_NOMEM, "%s: tensor '%.128s'", what, name);
    if (dup) return mx_fail(MX_ERR_ST_DUPLICATE_KEY, "%s: tensor '%.128s': duplicate key", what, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (cJSON_GetArraySize(e) != 3 || !dtype || !shape || !offs)
        return mx_fail(MX_ERR_ST_ENTRY_KEYS, "%s: tensor '%.128s': keys must be exactly dtype, shape, data_offsets",
                       what, name);

    int dt = cJSON_IsString(dtype) ? st_dtype_from_name(dtype->valuestring) : -1;
    if (dt < 0)
        return mx_fail(MX_ERR_ST_DTYPE, "%s: tensor '%.128s': dtype %.32s", what, name,
                       cJSON_IsString(dtype) ? dtype->valuestring : "(not a string)");
    t->dtype = (StDType)dt;

    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > ST_MAX_RANK)
        return mx_fail(MX_ERR_ST_SHAPE, "%s: tensor '%.128s': not an array of at most %d dims", what, name,
                       ST_MAX_RANK);
    int rank = 0, has_zero = 0;
    for (const cJSON *d = shape->child; d; d = d->next) {
        uint64_t v;
        if (!get_dim(d, &v))
            return mx_fail(MX_ERR_ST_SHAPE, "%s: tensor '%.128s': dim %d is not an integer in [0, 2^53)", what,
                           name, rank);
        t->shape[rank++] = (int64_t)v;
        has_zero |= v == 0;
    }
    t->rank = rank;

    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !get_dim(offs->child, &begin) ||
        !get_dim(offs->child->next, &end) || begin > end)
        return mx_fail(MX_ERR_ST_OFFSETS, "%s: tensor '%.128s': want [begin, end], integers in [0, 2^53), begin <= end",
                       what, name);

    uint64_t nbytes = st_dtype_size(t->dtype);
    if (has_zero) nbytes = 0;
    for (int k = 0; k < rank && nbytes; k++)
        if (__builtin_mul_overflow(nbytes, (uint64_t)t->shape[k], &nbytes))
            return mx_fail(MX_ERR_ST_SIZE_OVERFLOW, "%s: tensor '%.128s'", what, name);
    if (end - begin != nbytes)
        return mx_fail(MX_ERR_ST_SIZE_MISMATCH, "%s: tensor '%.128s': offsets span %llu bytes, shape x %s is %llu",
                       what, name, (unsigned long long)(end - begin), st_dtype_name(t->dtype),
                       (unsigned long long)nbytes);
    t->nbytes = nbytes;
    span->begin = begin;
    span->end = end;

    t->name = mx_strdup(name);
    if (!t->name) return mx_fail(MX_ERR_NOMEM, "%s: tensor '%.128s'", what, name);
    return MX_OK;
}

// Builds out's tensor table from a parsed header. data[0..data_size) is the data region.
static MxStatus index_entries(const cJSON *root, const char *what, const uint8_t *data, uint64_t data_size,
                              StFile *out) {
    if (!cJSON_IsObject(root)) return mx_fail(MX_ERR_ST_HEADER_NOT_OBJECT, "%s", what);
    int dup = json_has_duplicate_keys(root);
    if (dup < 0) return mx_fail(MX_ERR_NOMEM, "%s: checking tensor names", what);
    if (dup) return mx_fail(MX_ERR_ST_DUPLICATE_TENSOR, "%s", what);

    long count = 0;
    for (const cJSON *c = root->child; c; c = c->next)
        if (!c->string || strcmp(c->string, "__metadata__") != 0) count++;
    if (count > INT32_MAX) return mx_fail(MX_ERR_ST_HEADER_TOO_LARGE, "%s: %ld tensors", what, count);

    StTensor *tensors = NULL;
    Span *spans = NULL;
    int n = 0; // tensors whose name is owned by the table
    MxStatus st = MX_OK;
    if (count > 0) {
        tensors = mx_calloc((size_t)count, sizeof *tensors);
        spans = mx_calloc((size_t)count, sizeof *spans);
        if (!tensors || !spans) {
            st = mx_fail(MX_ERR_NOMEM, "%s: %ld tensors", what, count);
            goto fail;
        }
    }
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c->string && strcmp(c->string, "__metadata__") == 0) {
            st = check_metadata(c, what);
        } else {
            st = read_entry(c, what, &tensors[n], &spans[n]);
            if (st == MX_OK) spans[n].idx = n, n++;
        }
        if (st != MX_OK) goto fail;
    }

    if (n > 0) qsort(spans, (size_t)n, sizeof *spans, cmp_span);
    uint64_t at = 0;
    for (int k = 0; k < n; k++) {
        if (spans[k].begin != at) {
            st = mx_fail(MX_ERR_ST_LAYOUT, "%s: tensor '%.128s' starts at %llu, expected %llu", what,
                         tensors[spans[k].idx].name, (unsigned long long)spans[k].begin, (unsigned long long)at);
            goto fail;
        }
        at = spans[k].end;
    }
    if (at != data_size) {
        st = mx_fail(MX_ERR_ST_FILE_SIZE, "%s: tensors end at %llu, data region is %llu bytes", what,
                     (unsigned long long)at, (unsigned long long)data_size);
        goto fail;
    }
    // Every span now lies inside [0, data_size): the pointers are in bounds.
    for (int k = 0; k < n; k++) tensors[spans[k].idx].data = data + spans[k].begin;
    if (n > 0) qsort(tensors, (size_t)n, sizeof *tensors, cmp_tensor_name);
    mx_free(spans);
    out->tensors = tensors;
    out->n_tensors = n;
    return MX_OK;

fail:
    free_tensors(tensors, n);
    mx_free(spans);
    return st;
}

static MxStatus parse_named(const uint8_t *buf, size_t size, const char *what, StFile *out) {
    memset(out, 0, sizeof *out);
    if (size < 8) return mx_fail(MX_ERR_ST_TOO_SMALL, "%s: %zu bytes", what, size);
    uint64_t n = 0;
    for (int k = 7; k >= 0; k--) n = n << 8 | buf[k];
    if (n == 0) return mx_fail(MX_ERR_ST_HEADER_EMPTY, "%s", what);
    if (n > ST_MAX_HEADER) return mx_fail(MX_ERR_ST_HEADER_TOO_LARGE, "%s: N = %llu", what, (unsigned long long)n);
    if (n > size - 8)
        return mx_fail(MX_ERR_ST_HEADER_PAST_EOF, "%s: N = %llu, file is %zu bytes", what, (unsigned long long)n,
                       size);

    size_t len = (size_t)n;
    char *text = mx_malloc(len + 1);
    if (!text) return mx_fail(MX_ERR_NOMEM, "%s: header copy of %zu bytes", what, len);
    memcpy(text, buf + 8, len);
    text[len] = 0;

    MxStatus st;
    cJSON *root = NULL;
    if (!utf8_valid((const uint8_t *)text, len)) st = mx_fail(MX_ERR_ST_HEADER_UTF8, "%s", what);
    else if (!json_strict_ok(text, len)) st = mx_fail(MX_ERR_ST_HEADER_JSON, "%s", what);
    else st = json_parse_checked(text, len, what, &root);
    mx_free(text);
    if (st == MX_OK) st = index_entries(root, what, buf + 8 + len, (uint64_t)(size - 8 - len), out);
    cJSON_Delete(root);
    if (st != MX_OK) memset(out, 0, sizeof *out);
    return st;
}

MxStatus st_parse(const uint8_t *buf, size_t size, StFile *out) {
    if (!out) return mx_fail(MX_ERR_ARG, "st_parse: out is NULL");
    if (!buf && size) {
        memset(out, 0, sizeof *out);
        return mx_fail(MX_ERR_ARG, "st_parse: buf is NULL");
    }
    return parse_named(buf, size, "<buffer>", out);
}

MxStatus st_open(const char *path, StFile *out) {
    if (!out) return mx_fail(MX_ERR_ARG, "st_open: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return mx_fail(MX_ERR_ARG, "st_open: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mx_fail(MX_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return mx_fail(MX_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < 8) { // also keeps size 0, which mmap refuses, away from mmap
        close(fd);
        return mx_fail(MX_ERR_ST_TOO_SMALL, "%s: %lld bytes", path, (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return mx_fail(MX_ERR_IO, "%s: too large to map", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) return mx_fail(MX_ERR_IO, "%s: mmap: %s", path, strerror(map_errno));
    char *copy = mx_strdup(path);
    if (!copy) {
        munmap(map, size);
        return mx_fail(MX_ERR_NOMEM, "%s", path);
    }
    MxStatus st = parse_named(map, size, path, out);
    if (st != MX_OK) {
        munmap(map, size);
        mx_free(copy);
        return st;
    }
    out->path = copy;
    out->map = map;
    out->map_size = size;
    return MX_OK;
}

void st_close(StFile *f) {
    if (!f) return;
    free_tensors(f->tensors, f->n_tensors);
    if (f->map) munmap(f->map, f->map_size);
    mx_free(f->path);
    memset(f, 0, sizeof *f);
}

const StTensor *st_find(const StFile *f, const char *name) {
    if (!f || !name) return NULL;
    int lo = 0, hi = f->n_tensors; // search [lo, hi)
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->tensors[mid].name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

// ---- tensor sets -------------------------------------------------------------------------

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = mx_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

// 0: exists; 1: does not exist (ENOENT/ENOTDIR); -1: cannot tell (errno set).
static int path_missing(const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0) return 0;
    return errno == ENOENT || errno == ENOTDIR ? 1 : -1;
}

// A shard must name a file directly inside the model directory.
static int shard_name_ok(const cJSON *v) {
    if (!cJSON_IsString(v) || !v->valuestring) return 0;
    const char *s = v->valuestring;
    return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct NameAt {
    const char *name;
    int file;
} NameAt;

static int cmp_name_at(const void *a, const void *b) {
    const NameAt *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->file > y->file) - (x->file < y->file);
}

static void close_files(StFile *files, int n) {
    if (!files) return;
    for (int i = 0; i < n; i++) st_close(&files[i]);
    mx_free(files);
}

// Opens every shard of the parsed weight_map wm (non-empty, names checked) into
// *files[0..*n_files), sorted by shard name; on failure closes what it opened.
static MxStatus open_shards(const char *dir, const char *index, const cJSON *wm, StFile **files_out,
                            int *n_files_out) {
    int n = cJSON_GetArraySize(wm);
    const char **names = mx_malloc((size_t)n * sizeof *names);
    if (!names) return mx_fail(MX_ERR_NOMEM, "%s: %d entries", index, n);
    int k = 0;
    for (const cJSON *c = wm->child; c && k < n; c = c->next) names[k++] = c->valuestring;
    qsort(names, (size_t)k, sizeof *names, cmp_str_ptr);
    int n_shards = 0;
    for (int i = 0; i < k; i++)
        if (n_shards == 0 || strcmp(names[n_shards - 1], names[i]) != 0) names[n_shards++] = names[i];

    MxStatus st = MX_OK;
    int opened = 0;
    StFile *files = mx_calloc((size_t)n_shards, sizeof *files);
    if (!files) {
        st = mx_fail(MX_ERR_NOMEM, "%s: %d shards", index, n_shards);
        goto fail;
    }
    for (; opened < n_shards; opened++) {
        char *path = path_join(dir, names[opened]);
        if (!path) {
            st = mx_fail(MX_ERR_NOMEM, "%s", index);
            goto fail;
        }
        if (path_missing(path) == 1) st = mx_fail(MX_ERR_INDEX_MISSING_SHARD, "%s: %s", index, path);
        else st = st_open(path, &files[opened]); // its own code, with the shard's path
        mx_free(path);
        if (st != MX_OK) goto fail;
    }

    // Every listed tensor is in the shard the index names.
    for (const cJSON *c = wm->child; c; c = c->next) {
        const char **hit = bsearch(&c->valuestring, names, (size_t)n_shards, sizeof *names, cmp_str_ptr);
        MX_ASSERT(hit);
        if (!st_find(&files[hit - names], c->string)) {
            st = mx_fail(MX_ERR_INDEX_TENSOR_NOT_IN_SHARD, "%s: tensor '%.128s' is not in %s", index, c->string,
                         *hit);
            goto fail;
        }
    }
    mx_free(names);
    names = NULL;

    // No tensor is held by two shards.
    long total = 0;
    for (int i = 0; i < n_shards; i++) total += files[i].n_tensors;
    if (total > 1) {
        NameAt *all = mx_malloc((size_t)total * sizeof *all);
        if (!all) {
            st = mx_fail(MX_ERR_NOMEM, "%s: %ld tensors", index, total);
            goto fail;
        }
        long m = 0;
        for (int i = 0; i < n_shards; i++)
            for (int j = 0; j < files[i].n_tensors; j++) all[m++] = (NameAt){files[i].tensors[j].name, i};
        qsort(all, (size_t)m, sizeof *all, cmp_name_at);
        for (long j = 1; j < m && st == MX_OK; j++)
            if (strcmp(all[j - 1].name, all[j].name) == 0)
                st = mx_fail(MX_ERR_INDEX_DUPLICATE_TENSOR, "%s: tensor '%.128s' is in %s and %s", index,
                             all[j].name, files[all[j - 1].file].path, files[all[j].file].path);
        mx_free(all);
        if (st != MX_OK) goto fail;
    }
    *files_out = files;
    *n_files_out = n_shards;
    return MX_OK;

fail:
    close_files(files, opened);
    mx_free(names);
    return st;
}

// The index root: {"weight_map": {tensor: shard file name, ...}, ...}, no duplicate keys.
static MxStatus check_index_root(const cJSON *root, const char *index) {
    if (!cJSON_IsObject(root)) return mx_fail(MX_ERR_INDEX_JSON, "%s: root is not an object", index);
    int dup = json_has_duplicate_keys(root);
    if (dup < 0) return mx_fail(MX_ERR_NOMEM, "%s", index);
    if (dup) return mx_fail(MX_ERR_INDEX_JSON, "%s: duplicate key in the root object", index);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) return mx_fail(MX_ERR_INDEX_JSON, "%s: no \"weight_map\" object", index);
    if (!wm->child) return mx_fail(MX_ERR_INDEX_JSON, "%s: weight_map is empty", index);
    dup = json_has_duplicate_keys(wm);
    if (dup < 0) return mx_fail(MX_ERR_NOMEM, "%s", index);
    if (dup) return mx_fail(MX_ERR_INDEX_DUPLICATE_TENSOR, "%s: a weight_map key appears twice", index);
    for (const cJSON *c = wm->child; c; c = c->next)
        if (!shard_name_ok(c))
            return mx_fail(MX_ERR_INDEX_SHARD_NAME, "%s: tensor '%.128s' maps to '%.128s'", index, c->string,
                           cJSON_IsString(c) && c->valuestring ? c->valuestring : "(not a string)");
    return MX_OK;
}

static MxStatus open_index(const char *dir, const char *index, TensorSet *out) {
    char *text = NULL;
    size_t len = 0;
    MxStatus st = json_read_file(index, INDEX_MAX_BYTES, &text, &len);
    if (st != MX_OK) return st;
    cJSON *root = NULL;
    if (!utf8_valid((const uint8_t *)text, len)) st = mx_fail(MX_ERR_INDEX_JSON, "%s: not valid UTF-8", index);
    else if (!json_strict_ok(text, len)) st = mx_fail(MX_ERR_INDEX_JSON, "%s: not valid JSON", index);
    else st = json_parse_checked(text, len, index, &root);
    mx_free(text);
    if (st != MX_OK) return st;

    st = check_index_root(root, index);
    if (st == MX_OK)
        st = open_shards(dir, index, cJSON_GetObjectItemCaseSensitive(root, "weight_map"), &out->files,
                         &out->n_files);
    cJSON_Delete(root);
    return st;
}

MxStatus tensor_set_open(const char *dir, TensorSet *out) {
    if (!out) return mx_fail(MX_ERR_ARG, "tensor_set_open: out is NULL");
    memset(out, 0, sizeof *out);
    if (!dir) return mx_fail(MX_ERR_ARG, "tensor_set_open: dir is NULL");

    char *path = path_join(dir, "model.safetensors.index.json");
    if (!path) return mx_fail(MX_ERR_NOMEM, "%s", dir);
    int missing = path_missing(path);
    if (missing < 0) {
        MxStatus st = mx_fail(MX_ERR_IO, "%s: %s", path, strerror(errno));
        mx_free(path);
        return st;
    }
    if (!missing) {
        MxStatus st = open_index(dir, path, out);
        mx_free(path);
        if (st != MX_OK) memset(out, 0, sizeof *out);
        return st;
    }
    mx_free(path);

    path = path_join(dir, "model.safetensors");
    if (!path) return mx_fail(MX_ERR_NOMEM, "%s", dir);
    missing = path_missing(path);
    MxStatus st;
    if (missing == 1) {
        st = mx_fail(MX_ERR_NO_WEIGHTS, "%s", dir);
    } else {
        StFile *files = mx_calloc(1, sizeof *files);
        st = files ? st_open(path, files) : mx_fail(MX_ERR_NOMEM, "%s", path);
        if (st == MX_OK) {
            out->files = files;
            out->n_files = 1;
        } else {
            mx_free(files);
        }
    }
    mx_free(path);
    return st;
}

void tensor_set_close(TensorSet *s) {
    if (!s) return;
    close_files(s->files, s->n_files);
    memset(s, 0, sizeof *s);
}

const StTensor *tensor_set_find(const TensorSet *s, const char *name) {
    if (!s) return NULL;
    for (int i = 0; i < s->n_files; i++) {
        const StTensor *t = st_find(&s->files[i], name);
        if (t) return t;
    }
    return NULL;
}

int tensor_set_count(const TensorSet *s) {
    long n = 0;
    for (int i = 0; s && i < s->n_files; i++) n += s->files[i].n_tensors;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

uint64_t tensor_set_bytes(const TensorSet *s) {
    uint64_t n = 0;
    for (int i = 0; s && i < s->n_files; i++)
        for (int j = 0; j < s->files[i].n_tensors; j++) n += s->files[i].tensors[j].nbytes;
    return n;
}
