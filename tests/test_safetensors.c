// Tests for runtime/safetensors.c: every check builds its own corrupted bytes and asserts the
// specific error code, through st_parse on a buffer and, for some, st_open/tensor_set_open on
// disk. Headers are written with ' for " (see hdr()) to keep them readable.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "safetensors.h"
#include "status.h"
#include "test_util.h"
#include "utf8.h"

// ---- helpers -----------------------------------------------------------------------------

typedef struct Bytes {
    uint8_t *p;
    size_t n;
} Bytes;

// u64 LE n_field | header[0..hlen) | data_len bytes (byte i of the data is i & 0xff).
static Bytes st_bytes(uint64_t n_field, const char *header, size_t hlen, size_t data_len) {
    Bytes b = {malloc(8 + hlen + data_len + 1), 8 + hlen + data_len};
    if (!b.p) abort();
    for (int k = 0; k < 8; k++) b.p[k] = (uint8_t)(n_field >> (8 * k));
    memcpy(b.p + 8, header, hlen);
    for (size_t i = 0; i < data_len; i++) b.p[8 + hlen + i] = (uint8_t)i;
    return b;
}

// The header with every ' turned into ", in a static buffer.
static const char *hdr(const char *text) {
    static char buf[8192];
    size_t n = strlen(text);
    if (n >= sizeof buf) abort();
    for (size_t i = 0; i <= n; i++) buf[i] = text[i] == '\'' ? '"' : text[i];
    return buf;
}

static Bytes st_make(const char *header, size_t data_len) {
    header = hdr(header);
    return st_bytes(strlen(header), header, strlen(header), data_len);
}

static int is_zero(const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

// Parses b; on failure also checks that *out was zeroed. Frees b.
static MxStatus parse_bytes(Bytes b) {
    StFile f;
    memset(&f, 0xAB, sizeof f);
    MxStatus st = st_parse(b.p, b.n, &f);
    if (st != MX_OK) CHECK(is_zero(&f, sizeof f));
    st_close(&f);
    free(b.p);
    return st;
}

#define EXPECT_HDR(header, data_len, code) CHECK_STATUS(parse_bytes(st_make((header), (data_len))), (code))
#define EXPECT_RAW(n_field, bytes, len, data_len, code)                                        \
    CHECK_STATUS(parse_bytes(st_bytes((n_field), (bytes), (len), (data_len))), (code))

// A one-tensor header: F32 of shape [2] at [0, 8) plus whatever `extra` adds.
#define ONE_F32 "'w':{'dtype':'F32','shape':[2],'data_offsets':[0,8]}"

static void write_st(const char *dir, const char *name, const char *header, size_t data_len) {
    Bytes b = st_make(header, data_len);
    CHECK(test_write_file(dir, name, b.p, b.n) == 0);
    free(b.p);
}

static void write_text(const char *dir, const char *name, const char *text) {
    text = hdr(text);
    CHECK(test_write_file(dir, name, text, strlen(text)) == 0);
}

// ---- valid files -------------------------------------------------------------------------

static void test_valid_file(void) {
    // Listed out of offset order, with metadata, a scalar and a zero-sized tensor.
    const char *h = "{'__metadata__':{'format':'pt','note':''},"
                    "'b.bias':{'dtype':'BF16','shape':[4],'data_offsets':[24,32]},"
                    "'a.weight':{'dtype':'F32','shape':[2,3],'data_offsets':[0,24]},"
                    "'empty':{'dtype':'U8','shape':[0],'data_offsets':[40,40]},"
                    "'step':{'dtype':'I64','shape':[],'data_offsets':[32,40]}}   ";
    Bytes b = st_make(h, 40);
    size_t hlen = strlen(hdr(h));
    StFile f;
    CHECK_STATUS(st_parse(b.p, b.n, &f), MX_OK);
    CHECK(f.n_tensors == 4 && f.path == NULL && f.map == NULL);
    const char *sorted[] = {"a.weight", "b.bias", "empty", "step"};
    for (int i = 0; i < f.n_tensors && i < 4; i++) CHECK(strcmp(f.tensors[i].name, sorted[i]) == 0);
    const uint8_t *data = b.p + 8 + hlen;

    const StTensor *t = st_find(&f, "a.weight");
    CHECK(t && t->dtype == ST_F32 && t->rank == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    CHECK(t && t->nbytes == 24 && t->data == data);
    t = st_find(&f, "b.bias");
    CHECK(t && t->dtype == ST_BF16 && t->rank == 1 && t->shape[0] == 4 && t->nbytes == 8 && t->data == data + 24);
    CHECK(t && ((const uint8_t *)t->data)[0] == 24);
    t = st_find(&f, "step");
    CHECK(t && t->dtype == ST_I64 && t->rank == 0 && t->nbytes == 8 && t->data == data + 32);
    t = st_find(&f, "empty");
    CHECK(t && t->rank == 1 && t->shape[0] == 0 && t->nbytes == 0 && t->data == data + 40);
    CHECK(st_find(&f, "missing") == NULL && st_find(&f, "") == NULL && st_find(&f, "a") == NULL);
    st_close(&f);
    CHECK(is_zero(&f, sizeof f));
    st_close(&f); // closing twice is harmless
    free(b.p);
}

static void test_dtypes(void) {
    static const char *names[] = {"BOOL", "U8",  "I8",  "F8_E4M3", "F8_E5M2", "I16", "U16", "F16",
                                  "BF16", "I32", "U32", "F32", "I64",     "U64",     "F64"};
    static const size_t sizes[] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
    char h[4096];
    size_t at = 0, len = 0;
    len += (size_t)snprintf(h + len, sizeof h - len, "{");
    for (int t = 0; t < ST_DTYPE_COUNT; t++) {
        CHECK(st_dtype_from_name(names[t]) == t);
        CHECK(strcmp(st_dtype_name((StDType)t), names[t]) == 0);
        CHECK(st_dtype_size((StDType)t) == sizes[t]);
        len += (size_t)snprintf(h + len, sizeof h - len, "%s'%s':{'dtype':'%s','shape':[3],'data_offsets':[%zu,%zu]}",
                                t ? "," : "", names[t], names[t], at, at + 3 * sizes[t]);
        at += 3 * sizes[t];
    }
    snprintf(h + len, sizeof h - len, "}");
    StFile f;
    Bytes b = st_make(h, at);
    CHECK_STATUS(st_parse(b.p, b.n, &f), MX_OK);
    CHECK(f.n_tensors == ST_DTYPE_COUNT);
    for (int t = 0; t < ST_DTYPE_COUNT; t++) {
        const StTensor *x = st_find(&f, names[t]);
        CHECK(x && x->dtype == (StDType)t && x->nbytes == 3 * sizes[t]);
    }
    st_close(&f);
    free(b.p);

    CHECK(st_dtype_from_name("f32") == -1 && st_dtype_from_name("") == -1 && st_dtype_from_name(NULL) == -1);
    CHECK(st_dtype_to_dtype(ST_F32) == DT_F32 && st_dtype_to_dtype(ST_F16) == DT_F16);
    CHECK(st_dtype_to_dtype(ST_BF16) == DT_BF16 && st_dtype_to_dtype(ST_I32) == -1);
    CHECK(st_dtype_to_dtype(ST_F8_E4M3) == -1 && st_dtype_to_dtype(ST_F64) == -1);
    CHECK(strcmp(st_dtype_name(ST_DTYPE_COUNT), "?") == 0 && st_dtype_size(ST_DTYPE_COUNT) == 0);
}

static void test_valid_edge_cases(void) {
    EXPECT_HDR("{}", 0, MX_OK);                           // no tensors, no data
    EXPECT_HDR("{'__metadata__':{}}", 0, MX_OK);
    EXPECT_HDR(" \t\r\n{ }  \n ", 0, MX_OK);              // JSON whitespace, space padding
    EXPECT_HDR("{" ONE_F32 "}", 8, MX_OK);
    // Zero-sized tensors at the start, between two tensors and at the end.
    EXPECT_HDR("{'z0':{'dtype':'F16','shape':[0,5],'data_offsets':[0,0]}," ONE_F32 ","
               "'z1':{'dtype':'F16','shape':[3,0],'data_offsets':[8,8]},"
               "'v':{'dtype':'U8','shape':[2],'data_offsets':[8,10]},"
               "'z2':{'dtype':'F64','shape':[0],'data_offsets':[10,10]}}",
               10, MX_OK);
    // A zero dimension makes the size 0 even when the others' product would overflow.
    EXPECT_HDR("{'z':{'dtype':'F64','shape':[9007199254740991,9007199254740991,0],'data_offsets':[0,0]}}", 0, MX_OK);
    // Largest rank, and 2^53 - 1, the largest accepted dimension.
    EXPECT_HDR("{'r':{'dtype':'U8','shape':[1,1,1,1,1,1,1,2],'data_offsets':[0,2]}}", 2, MX_OK);
    EXPECT_HDR("{'r':{'dtype':'U8','shape':[9007199254740991,0],'data_offsets':[0,0]}}", 0, MX_OK);
    // Names: escapes, non-ASCII (raw and as a surrogate-pair escape), empty.
    EXPECT_HDR("{'a\\\"b\\\\c\\n\\u00e9':{'dtype':'U8','shape':[1],'data_offsets':[0,1]},"
               "'\xc3\xa9\xf0\x9f\x90\x9c \\ud83d\\udc1c':{'dtype':'U8','shape':[1],'data_offsets':[1,2]},"
               "'':{'dtype':'U8','shape':[1],'data_offsets':[2,3]}}",
               3, MX_OK);
    // Metadata next to tensors, anywhere in the object; numbers like -0 and 0 spelled plainly.
    EXPECT_HDR("{" ONE_F32 ",'__metadata__':{'k':'v'}}", 8, MX_OK);
    EXPECT_HDR("{'w':{'data_offsets':[0,-0],'shape':[0],'dtype':'F32'}}", 0, MX_OK);
}

// ---- header length -----------------------------------------------------------------------

static void test_header_length(void) {
    uint8_t small[8] = {2, 0, 0, 0, 0, 0, 0, 0};
    for (size_t n = 0; n < 8; n++) {
        StFile f;
        CHECK_STATUS(st_parse(small, n, &f), MX_ERR_ST_TOO_SMALL);
        CHECK(is_zero(&f, sizeof f));
    }
    StFile f;
    CHECK_STATUS(st_parse(NULL, 0, &f), MX_ERR_ST_TOO_SMALL);
    CHECK_STATUS(st_parse(NULL, 10, &f), MX_ERR_ARG);

    EXPECT_RAW(0, "{}", 2, 0, MX_ERR_ST_HEADER_EMPTY);
    EXPECT_RAW(0, "", 0, 0, MX_ERR_ST_HEADER_EMPTY);
    EXPECT_RAW((uint64_t)ST_MAX_HEADER + 1, "{}", 2, 0, MX_ERR_ST_HEADER_TOO_LARGE);
    EXPECT_RAW(UINT64_MAX, "{}", 2, 0, MX_ERR_ST_HEADER_TOO_LARGE);      // 8 + N overflows
    EXPECT_RAW(UINT64_MAX - 7, "{}", 2, 0, MX_ERR_ST_HEADER_TOO_LARGE);  // 8 + N == 2^64
    EXPECT_RAW(UINT64_C(1) << 63, "{}", 2, 0, MX_ERR_ST_HEADER_TOO_LARGE);
    EXPECT_RAW(ST_MAX_HEADER, "{}", 2, 0, MX_ERR_ST_HEADER_PAST_EOF);    // allowed size, short file
    EXPECT_RAW(1000, "{}", 2, 90, MX_ERR_ST_HEADER_PAST_EOF);
    EXPECT_RAW(3, "{}", 2, 0, MX_ERR_ST_HEADER_PAST_EOF);                // one byte past the end
    EXPECT_RAW(2, "{}", 2, 0, MX_OK);
    EXPECT_RAW(1, "{}", 2, 0, MX_ERR_ST_HEADER_JSON);                    // header "{", data "}"
}

// ---- header text -------------------------------------------------------------------------

static void test_header_utf8(void) {
    EXPECT_HDR("{'\xff':{}}", 0, MX_ERR_ST_HEADER_UTF8);
    EXPECT_HDR("{'\xc0\xaf':{}}", 0, MX_ERR_ST_HEADER_UTF8);         // overlong '/'
    EXPECT_HDR("{'\xe0\x80\xaf':{}}", 0, MX_ERR_ST_HEADER_UTF8);     // overlong, 3 bytes
    EXPECT_HDR("{'\xed\xa0\x80':{}}", 0, MX_ERR_ST_HEADER_UTF8);     // surrogate U+D800
    EXPECT_HDR("{'\xf4\x90\x80\x80':{}}", 0, MX_ERR_ST_HEADER_UTF8); // U+110000
    EXPECT_HDR("{'\x80':{}}", 0, MX_ERR_ST_HEADER_UTF8);             // lone continuation
    EXPECT_HDR("{}\xe2\x82", 0, MX_ERR_ST_HEADER_UTF8);              // truncated at the end
    // UTF-8 is checked before JSON: invalid bytes in an invalid document still say UTF-8.
    EXPECT_HDR("not json \xfe", 0, MX_ERR_ST_HEADER_UTF8);
}

static void test_utf8_valid(void) {
    struct {
        const char *s;
        int ok;
    } cases[] = {
        {"", 1},
        {"plain ascii", 1},
        {"\xc2\x80", 1},                 // U+0080
        {"\xdf\xbf", 1},                 // U+07FF
        {"\xe0\xa0\x80", 1},             // U+0800
        {"\xed\x9f\xbf", 1},             // U+D7FF
        {"\xee\x80\x80", 1},             // U+E000
        {"\xef\xbf\xbf", 1},             // U+FFFF
        {"\xf0\x90\x80\x80", 1},         // U+10000
        {"\xf4\x8f\xbf\xbf", 1},         // U+10FFFF
        {"\xc1\xbf", 0},                 // overlong U+007F
        {"\xc0\x80", 0},                 // overlong NUL
        {"\xe0\x9f\xbf", 0},             // overlong U+07FF
        {"\xf0\x8f\xbf\xbf", 0},         // overlong U+FFFF
        {"\xed\xa0\x80", 0},             // U+D800
        {"\xed\xbf\xbf", 0},             // U+DFFF
        {"\xf4\x90\x80\x80", 0},         // U+110000
        {"\xf5\x80\x80\x80", 0},
        {"\xff", 0},
        {"\x80", 0},
        {"\xc2", 0},                     // truncated
        {"\xe2\x82", 0},
        {"\xf0\x9f\x90", 0},
        {"\xe2\x28\xa1", 0},             // bad second byte
        {"\xe2\x82\x28", 0},             // bad third byte
        {"\xf0\x9f\x90\x28", 0},         // bad fourth byte
        {"a\xc3\xa9z", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = utf8_valid((const uint8_t *)cases[i].s, strlen(cases[i].s));
        if (got != cases[i].ok) fprintf(stderr, "utf8 case %zu\n", i);
        CHECK(got == cases[i].ok);
    }
    CHECK(utf8_valid((const uint8_t *)"a\0b", 3) == 1);
    CHECK(utf8_valid(NULL, 0) == 1);
}

static void test_header_json(void) {
    EXPECT_HDR("not json", 0, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{'a':", 0, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{" ONE_F32, 8, MX_ERR_ST_HEADER_JSON);         // unclosed
    EXPECT_HDR("{} x", 0, MX_ERR_ST_HEADER_JSON);              // trailing garbage
    EXPECT_HDR("{}{}", 0, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{" ONE_F32 ",}", 8, MX_ERR_ST_HEADER_JSON);    // trailing comma
    EXPECT_HDR("{'a' 1}", 0, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{a:1}", 0, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{\x01}", 0, MX_ERR_ST_HEADER_JSON);            // control byte as whitespace
    EXPECT_HDR("{'a\tb':{}}", 0, MX_ERR_ST_HEADER_JSON);       // raw control byte in a string
    EXPECT_HDR("{'a\\x':{}}", 0, MX_ERR_ST_HEADER_JSON);       // unknown escape
    EXPECT_HDR("{'a\\u12':{}}", 0, MX_ERR_ST_HEADER_JSON);     // short \u
    EXPECT_HDR("{'a\\u0000b':{}}", 0, MX_ERR_ST_HEADER_JSON);  // NUL would truncate the name
    EXPECT_HDR("{'\\ud800':{}}", 0, MX_ERR_ST_HEADER_JSON);    // lone high surrogate
    EXPECT_HDR("{'\\udc00':{}}", 0, MX_ERR_ST_HEADER_JSON);    // lone low surrogate
    EXPECT_HDR("{'\\ud800\\u0041':{}}", 0, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[02],'data_offsets':[0,8]}}", 8, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[2.],'data_offsets':[0,8]}}", 8, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[+2],'data_offsets':[0,8]}}", 8, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[.5],'data_offsets':[0,8]}}", 8, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[2e],'data_offsets':[0,8]}}", 8, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[-],'data_offsets':[0,8]}}", 8, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[NaN],'data_offsets':[0,8]}}", 8, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("{'a':tru}", 0, MX_ERR_ST_HEADER_JSON);
    EXPECT_HDR("   ", 0, MX_ERR_ST_HEADER_JSON);
    // Embedded NUL bytes: after the object, between tokens, inside a string.
    EXPECT_RAW(3, "{}\0", 3, 0, MX_ERR_ST_HEADER_JSON);
    EXPECT_RAW(5, "{}\0\0 ", 5, 0, MX_ERR_ST_HEADER_JSON);
    EXPECT_RAW(4, "{\0 }", 4, 0, MX_ERR_ST_HEADER_JSON);
    EXPECT_RAW(8, "{\"a\0\":1}", 8, 0, MX_ERR_ST_HEADER_JSON);
    // Nesting deeper than any header needs (and than the stack should take).
    char deep[1200];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{'__metadata__':");
    for (int i = 0; i < 500; i++) deep[n++] = '[';
    for (int i = 0; i < 500; i++) deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = 0;
    EXPECT_HDR(deep, 0, MX_ERR_ST_HEADER_JSON);
}

static void test_header_not_object(void) {
    EXPECT_HDR("[]", 0, MX_ERR_ST_HEADER_NOT_OBJECT);
    EXPECT_HDR("[{" ONE_F32 "}]", 8, MX_ERR_ST_HEADER_NOT_OBJECT);
    EXPECT_HDR("'tensor'", 0, MX_ERR_ST_HEADER_NOT_OBJECT);
    EXPECT_HDR("3", 0, MX_ERR_ST_HEADER_NOT_OBJECT);
    EXPECT_HDR("null", 0, MX_ERR_ST_HEADER_NOT_OBJECT);
    EXPECT_HDR("true", 0, MX_ERR_ST_HEADER_NOT_OBJECT);
}

// ---- entries -----------------------------------------------------------------------------

static void test_duplicates(void) {
    EXPECT_HDR("{" ONE_F32 "," ONE_F32 "}", 16, MX_ERR_ST_DUPLICATE_TENSOR);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},"
               "'w':{'dtype':'F32','shape':[2],'data_offsets':[8,16]}}",
               16, MX_ERR_ST_DUPLICATE_TENSOR);
    EXPECT_HDR("{'__metadata__':{},'__metadata__':{}}", 0, MX_ERR_ST_DUPLICATE_TENSOR);
    EXPECT_HDR("{'w':{'dtype':'F32','dtype':'F32','shape':[2],'data_offsets':[0,8]}}", 8,
               MX_ERR_ST_DUPLICATE_KEY);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[2],'shape':[2],'data_offsets':[0,8]}}", 8, MX_ERR_ST_DUPLICATE_KEY);
    EXPECT_HDR("{'__metadata__':{'k':'a','k':'b'}}", 0, MX_ERR_ST_DUPLICATE_KEY);
    // Names that differ only by case or by an escape are different / the same names.
    EXPECT_HDR("{'W':{'dtype':'U8','shape':[1],'data_offsets':[0,1]},"
               "'w':{'dtype':'U8','shape':[1],'data_offsets':[1,2]}}",
               2, MX_OK);
    EXPECT_HDR("{'w':{'dtype':'U8','shape':[1],'data_offsets':[0,1]},"
               "'\\u0077':{'dtype':'U8','shape':[1],'data_offsets':[1,2]}}",
               2, MX_ERR_ST_DUPLICATE_TENSOR);
}

static void test_metadata(void) {
    EXPECT_HDR("{'__metadata__':[]}", 0, MX_ERR_ST_METADATA);
    EXPECT_HDR("{'__metadata__':'pt'}", 0, MX_ERR_ST_METADATA);
    EXPECT_HDR("{'__metadata__':null}", 0, MX_ERR_ST_METADATA);
    EXPECT_HDR("{'__metadata__':{'a':1}}", 0, MX_ERR_ST_METADATA);
    EXPECT_HDR("{'__metadata__':{'a':'x','b':null}}", 0, MX_ERR_ST_METADATA);
    EXPECT_HDR("{'__metadata__':{'a':{'b':'c'}}}", 0, MX_ERR_ST_METADATA);
    EXPECT_HDR("{'__metadata__':{'a':['b']}}", 0, MX_ERR_ST_METADATA);
    EXPECT_HDR("{" ONE_F32 ",'__metadata__':{'a':true}}", 8, MX_ERR_ST_METADATA);
}

static void test_entry_keys(void) {
    EXPECT_HDR("{'w':[]}", 0, MX_ERR_ST_ENTRY_KEYS);
    EXPECT_HDR("{'w':'F32'}", 0, MX_ERR_ST_ENTRY_KEYS);
    EXPECT_HDR("{'w':1}", 0, MX_ERR_ST_ENTRY_KEYS);
    EXPECT_HDR("{'w':null}", 0, MX_ERR_ST_ENTRY_KEYS);
    EXPECT_HDR("{'w':{}}", 0, MX_ERR_ST_ENTRY_KEYS);
    EXPECT_HDR("{'w':{'shape':[2],'data_offsets':[0,8]}}", 8, MX_ERR_ST_ENTRY_KEYS);
    EXPECT_HDR("{'w':{'dtype':'F32','data_offsets':[0,8]}}", 8, MX_ERR_ST_ENTRY_KEYS);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[2]}}", 8, MX_ERR_ST_ENTRY_KEYS);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[2],'data_offsets':[0,8],'x':1}}", 8, MX_ERR_ST_ENTRY_KEYS);
    EXPECT_HDR("{'w':{'Dtype':'F32','shape':[2],'data_offsets':[0,8]}}", 8, MX_ERR_ST_ENTRY_KEYS);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[2],'offsets':[0,8]}}", 8, MX_ERR_ST_ENTRY_KEYS);
}

static void test_dtype_field(void) {
    EXPECT_HDR("{'w':{'dtype':'f32','shape':[2],'data_offsets':[0,8]}}", 8, MX_ERR_ST_DTYPE);
    EXPECT_HDR("{'w':{'dtype':'F128','shape':[2],'data_offsets':[0,8]}}", 8, MX_ERR_ST_DTYPE);
    EXPECT_HDR("{'w':{'dtype':'','shape':[2],'data_offsets':[0,8]}}", 8, MX_ERR_ST_DTYPE);
    EXPECT_HDR("{'w':{'dtype':'F32 ','shape':[2],'data_offsets':[0,8]}}", 8, MX_ERR_ST_DTYPE);
    EXPECT_HDR("{'w':{'dtype':4,'shape':[2],'data_offsets':[0,8]}}", 8, MX_ERR_ST_DTYPE);
    EXPECT_HDR("{'w':{'dtype':null,'shape':[2],'data_offsets':[0,8]}}", 8, MX_ERR_ST_DTYPE);
    EXPECT_HDR("{'w':{'dtype':['F32'],'shape':[2],'data_offsets':[0,8]}}", 8, MX_ERR_ST_DTYPE);
}

static void test_shape_field(void) {
#define SHAPE(s) "{'w':{'dtype':'U8','shape':" s ",'data_offsets':[0,2]}}"
    EXPECT_HDR(SHAPE("[2]"), 2, MX_OK);
    EXPECT_HDR(SHAPE("2"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("'2'"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("{}"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("null"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("[-1]"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("[2,-1]"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("[1.5]"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("[2e-1]"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("['2']"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("[null]"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("[true]"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("[[2]]"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("[1e300]"), 2, MX_ERR_ST_SHAPE);
    EXPECT_HDR(SHAPE("[1e400]"), 2, MX_ERR_ST_SHAPE);                // inf
    EXPECT_HDR(SHAPE("[9007199254740993]"), 2, MX_ERR_ST_SHAPE);     // 2^53 + 1
    EXPECT_HDR(SHAPE("[9007199254740992]"), 2, MX_ERR_ST_SHAPE);     // 2^53
    EXPECT_HDR(SHAPE("[18446744073709551617]"), 2, MX_ERR_ST_SHAPE); // 2^64 + 1
    EXPECT_HDR(SHAPE("[4294967298]"), 2, MX_ERR_ST_SIZE_MISMATCH);   // 2^32 + 2: read as 64-bit
    EXPECT_HDR(SHAPE("[1,1,1,1,1,1,1,1,2]"), 2, MX_ERR_ST_SHAPE);    // rank 9
#undef SHAPE
}

static void test_offsets_field(void) {
#define OFFS(o) "{'w':{'dtype':'U8','shape':[2],'data_offsets':" o "}}"
    EXPECT_HDR(OFFS("[0,2]"), 2, MX_OK);
    EXPECT_HDR(OFFS("[0]"), 2, MX_ERR_ST_OFFSETS);
    EXPECT_HDR(OFFS("[]"), 2, MX_ERR_ST_OFFSETS);
    EXPECT_HDR(OFFS("[0,2,4]"), 2, MX_ERR_ST_OFFSETS);
    EXPECT_HDR(OFFS("'0,2'"), 2, MX_ERR_ST_OFFSETS);
    EXPECT_HDR(OFFS("{'0':2}"), 2, MX_ERR_ST_OFFSETS);
    EXPECT_HDR(OFFS("[-1,1]"), 2, MX_ERR_ST_OFFSETS);
    EXPECT_HDR(OFFS("[0,1.5]"), 2, MX_ERR_ST_OFFSETS);
    EXPECT_HDR(OFFS("[0,'2']"), 2, MX_ERR_ST_OFFSETS);
    EXPECT_HDR(OFFS("[0,null]"), 2, MX_ERR_ST_OFFSETS);
    EXPECT_HDR(OFFS("[0,1e300]"), 2, MX_ERR_ST_OFFSETS);
    EXPECT_HDR(OFFS("[9007199254740993,9007199254740995]"), 2, MX_ERR_ST_OFFSETS);
    EXPECT_HDR(OFFS("[0,9007199254740993]"), 2, MX_ERR_ST_OFFSETS);
    EXPECT_HDR(OFFS("[2,0]"), 2, MX_ERR_ST_OFFSETS);                  // begin > end
#undef OFFS
}

// ---- geometry ----------------------------------------------------------------------------

static void test_sizes(void) {
    // 2^32 * 2^32 * 4 bytes, and 2^26 cubed bytes * 2, overflow u64.
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[4294967296,4294967296],'data_offsets':[0,0]}}", 0,
               MX_ERR_ST_SIZE_OVERFLOW);
    EXPECT_HDR("{'w':{'dtype':'I16','shape':[67108864,67108864,67108864],'data_offsets':[0,0]}}", 0,
               MX_ERR_ST_SIZE_OVERFLOW);
    // 2^62 elements of 4 bytes = 2^64: overflows by the element size alone.
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[2147483648,2147483648],'data_offsets':[0,0]}}", 0,
               MX_ERR_ST_SIZE_OVERFLOW);
    // 2^63 bytes fits in u64 but cannot match an offset span below 2^53.
    EXPECT_HDR("{'w':{'dtype':'U8','shape':[2147483648,4294967296],'data_offsets':[0,0]}}", 0,
               MX_ERR_ST_SIZE_MISMATCH);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[2],'data_offsets':[0,4]}}", 4, MX_ERR_ST_SIZE_MISMATCH);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[2],'data_offsets':[0,12]}}", 12, MX_ERR_ST_SIZE_MISMATCH);
    EXPECT_HDR("{'w':{'dtype':'BF16','shape':[2,2],'data_offsets':[0,16]}}", 16, MX_ERR_ST_SIZE_MISMATCH);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[],'data_offsets':[0,0]}}", 0, MX_ERR_ST_SIZE_MISMATCH);
    EXPECT_HDR("{'w':{'dtype':'F32','shape':[0],'data_offsets':[0,4]}}", 4, MX_ERR_ST_SIZE_MISMATCH);
}

static void test_layout(void) {
    EXPECT_HDR("{'a':{'dtype':'U8','shape':[4],'data_offsets':[0,4]},"
               "'b':{'dtype':'U8','shape':[4],'data_offsets':[8,12]}}",
               12, MX_ERR_ST_LAYOUT); // gap
    EXPECT_HDR("{'a':{'dtype':'U8','shape':[8],'data_offsets':[0,8]},"
               "'b':{'dtype':'U8','shape':[8],'data_offsets':[4,12]}}",
               12, MX_ERR_ST_LAYOUT); // overlap
    EXPECT_HDR("{'a':{'dtype':'U8','shape':[4],'data_offsets':[0,4]},"
               "'b':{'dtype':'U8','shape':[4],'data_offsets':[0,4]}}",
               4, MX_ERR_ST_LAYOUT); // the same span twice
    EXPECT_HDR("{'a':{'dtype':'U8','shape':[4],'data_offsets':[4,8]}}", 8, MX_ERR_ST_LAYOUT); // not from 0
    EXPECT_HDR("{'a':{'dtype':'U8','shape':[8],'data_offsets':[0,8]},"
               "'z':{'dtype':'U8','shape':[0],'data_offsets':[4,4]}}",
               8, MX_ERR_ST_LAYOUT); // zero-sized, inside another tensor
    EXPECT_HDR("{'a':{'dtype':'U8','shape':[8],'data_offsets':[0,8]},"
               "'z':{'dtype':'U8','shape':[0],'data_offsets':[9,9]}}",
               8, MX_ERR_ST_LAYOUT); // zero-sized, past the end
    EXPECT_HDR("{'z':{'dtype':'U8','shape':[0],'data_offsets':[3,3]}}", 3, MX_ERR_ST_LAYOUT);
    // Offsets far past the data: no pointer is formed, nothing is read.
    EXPECT_HDR("{'a':{'dtype':'U8','shape':[4],'data_offsets':[0,4]},"
               "'b':{'dtype':'U8','shape':[4],'data_offsets':[4000000000000,4000000000004]}}",
               4, MX_ERR_ST_LAYOUT);
}

static void test_file_size(void) {
    EXPECT_HDR("{" ONE_F32 "}", 9, MX_ERR_ST_FILE_SIZE);  // one trailing byte
    EXPECT_HDR("{" ONE_F32 "}", 7, MX_ERR_ST_FILE_SIZE);  // one byte short
    EXPECT_HDR("{" ONE_F32 "}", 0, MX_ERR_ST_FILE_SIZE);
    EXPECT_HDR("{}", 1, MX_ERR_ST_FILE_SIZE);             // no tensors, but data
    EXPECT_HDR("{'w':{'dtype':'U8','shape':[4000000000000],'data_offsets':[0,4000000000000]}}", 4,
               MX_ERR_ST_FILE_SIZE);
}

// The first failing check, in document order, decides the code.
static void test_check_order(void) {
    EXPECT_HDR("{'w':{'dtype':'X','shape':[-1],'data_offsets':[2,1]}}", 0, MX_ERR_ST_DTYPE);
    EXPECT_HDR("{'w':{'dtype':'U8','shape':[-1],'data_offsets':[2,1]}}", 0, MX_ERR_ST_SHAPE);
    EXPECT_HDR("{'a':{'dtype':'U8','shape':[1],'data_offsets':[1,0]},'b':{'dtype':'Q'}}", 0, MX_ERR_ST_OFFSETS);
    EXPECT_HDR("{'__metadata__':1,'w':{}}", 0, MX_ERR_ST_METADATA);
    EXPECT_HDR("{'w':{},'__metadata__':1}", 0, MX_ERR_ST_ENTRY_KEYS);
    EXPECT_HDR("{'w':{'dtype':'U8','dtype':'U8'},'w':{}}", 0, MX_ERR_ST_DUPLICATE_TENSOR);
}

// ---- files on disk -----------------------------------------------------------------------

static void test_st_open(void) {
    const char *dir = test_tmpdir("st-open");
    const char *h = "{'b':{'dtype':'U8','shape':[3],'data_offsets':[8,11]}," ONE_F32 "}";
    write_st(dir, "ok.safetensors", h, 11);
    StFile f;
    CHECK_STATUS(st_open(test_path(dir, "ok.safetensors"), &f), MX_OK);
    CHECK(f.n_tensors == 2 && f.map && f.path && strstr(f.path, "ok.safetensors"));
    size_t hlen = strlen(hdr(h));
    CHECK(f.map_size == 8 + hlen + 11);
    const StTensor *b = st_find(&f, "b");
    CHECK(b && b->data == (const uint8_t *)f.map + 8 + hlen + 8);
    CHECK(b && memcmp(b->data, "\x08\x09\x0a", 3) == 0);
    st_close(&f);
    CHECK(is_zero(&f, sizeof f));

    CHECK(test_write_file(dir, "empty.safetensors", "", 0) == 0);
    memset(&f, 0xAB, sizeof f);
    CHECK_STATUS(st_open(test_path(dir, "empty.safetensors"), &f), MX_ERR_ST_TOO_SMALL);
    CHECK(is_zero(&f, sizeof f));
    CHECK(test_write_file(dir, "short.safetensors", "\x02\0\0\0\0", 5) == 0);
    CHECK_STATUS(st_open(test_path(dir, "short.safetensors"), &f), MX_ERR_ST_TOO_SMALL);
    CHECK_STATUS(st_open(test_path(dir, "missing.safetensors"), &f), MX_ERR_IO);
    CHECK(strstr(mx_last_error(), "missing.safetensors") != NULL);
    CHECK_STATUS(st_open(dir, &f), MX_ERR_IO); // a directory
    CHECK_STATUS(st_open(NULL, &f), MX_ERR_ARG);

    // Each failure is reported with the file's path, and leaves *out zeroed.
    write_st(dir, "gap.safetensors", "{'a':{'dtype':'U8','shape':[1],'data_offsets':[1,2]}}", 2);
    memset(&f, 0xAB, sizeof f);
    CHECK_STATUS(st_open(test_path(dir, "gap.safetensors"), &f), MX_ERR_ST_LAYOUT);
    CHECK(is_zero(&f, sizeof f));
    CHECK(strstr(mx_last_error(), "gap.safetensors") != NULL);
    write_st(dir, "long.safetensors", "{" ONE_F32 "}", 100);
    CHECK_STATUS(st_open(test_path(dir, "long.safetensors"), &f), MX_ERR_ST_FILE_SIZE);
    Bytes big = st_bytes(UINT64_MAX, "{}", 2, 0);
    CHECK(test_write_file(dir, "n.safetensors", big.p, big.n) == 0);
    free(big.p);
    CHECK_STATUS(st_open(test_path(dir, "n.safetensors"), &f), MX_ERR_ST_HEADER_TOO_LARGE);
    Bytes past = st_bytes(64, "{}", 2, 0);
    CHECK(test_write_file(dir, "past.safetensors", past.p, past.n) == 0);
    free(past.p);
    CHECK_STATUS(st_open(test_path(dir, "past.safetensors"), &f), MX_ERR_ST_HEADER_PAST_EOF);
}

static void test_single_file_set(void) {
    const char *dir = test_tmpdir("st-single");
    TensorSet s;
    memset(&s, 0xAB, sizeof s);
    CHECK_STATUS(tensor_set_open(dir, &s), MX_ERR_NO_WEIGHTS);
    CHECK(is_zero(&s, sizeof s));
    CHECK_STATUS(tensor_set_open(test_path(dir, "does-not-exist"), &s), MX_ERR_NO_WEIGHTS);
    CHECK_STATUS(tensor_set_open(NULL, &s), MX_ERR_ARG);

    write_st(dir, "model.safetensors", "{'b':{'dtype':'U8','shape':[3],'data_offsets':[8,11]}," ONE_F32 "}", 11);
    CHECK_STATUS(tensor_set_open(dir, &s), MX_OK);
    CHECK(s.n_files == 1 && tensor_set_count(&s) == 2 && tensor_set_bytes(&s) == 11);
    CHECK(tensor_set_find(&s, "w") && tensor_set_find(&s, "b") && !tensor_set_find(&s, "c"));
    tensor_set_close(&s);
    CHECK(is_zero(&s, sizeof s));

    write_st(dir, "model.safetensors", "{'w':{'dtype':'F32','shape':[2],'data_offsets':[0,4]}}", 4);
    memset(&s, 0xAB, sizeof s);
    CHECK_STATUS(tensor_set_open(dir, &s), MX_ERR_ST_SIZE_MISMATCH);
    CHECK(is_zero(&s, sizeof s));
    CHECK(test_write_file(dir, "model.safetensors", "", 0) == 0);
    CHECK_STATUS(tensor_set_open(dir, &s), MX_ERR_ST_TOO_SMALL);
}

#define SHARD1 "{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},'b':{'dtype':'U8','shape':[3],'data_offsets':[8,11]}}"
#define SHARD2 "{'__metadata__':{'format':'pt'},'c':{'dtype':'BF16','shape':[2,2],'data_offsets':[0,8]}}"
#define INDEX_OK                                                                                \
    "{'metadata':{'total_size':19},'weight_map':{'a':'model-00001-of-00002.safetensors',"      \
    "'b':'model-00001-of-00002.safetensors','c':'model-00002-of-00002.safetensors'}}"

// A scratch directory with two valid shards and, if index is not NULL, that index file.
static const char *sharded_dir(const char *tag, const char *index) {
    const char *dir = test_tmpdir(tag);
    write_st(dir, "model-00001-of-00002.safetensors", SHARD1, 11);
    write_st(dir, "model-00002-of-00002.safetensors", SHARD2, 8);
    if (index) write_text(dir, "model.safetensors.index.json", index);
    return dir;
}

static MxStatus open_set_with_index(const char *index) {
    const char *dir = sharded_dir("st-index", index);
    TensorSet s;
    memset(&s, 0xAB, sizeof s);
    MxStatus st = tensor_set_open(dir, &s);
    if (st != MX_OK) CHECK(is_zero(&s, sizeof s));
    tensor_set_close(&s);
    return st;
}

static void test_sharded_set(void) {
    const char *dir = sharded_dir("st-sharded", INDEX_OK);
    // The index wins over a model.safetensors next to it.
    write_st(dir, "model.safetensors", "{'z':{'dtype':'U8','shape':[1],'data_offsets':[0,1]}}", 1);
    TensorSet s;
    CHECK_STATUS(tensor_set_open(dir, &s), MX_OK);
    CHECK(s.n_files == 2 && tensor_set_count(&s) == 3 && tensor_set_bytes(&s) == 19);
    const StTensor *a = tensor_set_find(&s, "a"), *c = tensor_set_find(&s, "c");
    CHECK(a && a->dtype == ST_F32 && a->shape[0] == 2);
    CHECK(c && c->dtype == ST_BF16 && c->rank == 2 && c->nbytes == 8);
    CHECK(tensor_set_find(&s, "b") && !tensor_set_find(&s, "z") && !tensor_set_find(&s, "d"));
    tensor_set_close(&s);
    CHECK(is_zero(&s, sizeof s));
    tensor_set_close(&s);

    // One shard for everything; the index may list a subset of a shard's tensors.
    CHECK_STATUS(open_set_with_index("{'weight_map':{'a':'model-00001-of-00002.safetensors'}}"), MX_OK);
}

static void test_index_errors(void) {
    CHECK_STATUS(open_set_with_index("not json"), MX_ERR_INDEX_JSON);
    CHECK_STATUS(open_set_with_index(""), MX_ERR_INDEX_JSON);
    CHECK_STATUS(open_set_with_index("{'weight_map':{'a':'x'}"), MX_ERR_INDEX_JSON);
    CHECK_STATUS(open_set_with_index("{'weight_map':{}} trailing"), MX_ERR_INDEX_JSON);
    CHECK_STATUS(open_set_with_index("{'weight_map':{'\xff':'x'}}"), MX_ERR_INDEX_JSON);
    CHECK_STATUS(open_set_with_index("[]"), MX_ERR_INDEX_JSON);
    CHECK_STATUS(open_set_with_index("{}"), MX_ERR_INDEX_JSON);
    CHECK_STATUS(open_set_with_index("{'weight_map':[]}"), MX_ERR_INDEX_JSON);
    CHECK_STATUS(open_set_with_index("{'weight_map':'model-00001-of-00002.safetensors'}"), MX_ERR_INDEX_JSON);
    CHECK_STATUS(open_set_with_index("{'weight_map':{}}"), MX_ERR_INDEX_JSON);
    CHECK_STATUS(open_set_with_index("{'Weight_map':{'a':'model-00001-of-00002.safetensors'}}"),
                 MX_ERR_INDEX_JSON);
    CHECK_STATUS(open_set_with_index("{'weight_map':{'a':'model-00001-of-00002.safetensors'},"
                                     "'weight_map':{'a':'model-00001-of-00002.safetensors'}}"),
                 MX_ERR_INDEX_JSON);

    CHECK_STATUS(open_set_with_index("{'weight_map':{'a':'model-00001-of-00002.safetensors',"
                                     "'a':'model-00001-of-00002.safetensors'}}"),
                 MX_ERR_INDEX_DUPLICATE_TENSOR);
    CHECK_STATUS(open_set_with_index("{'weight_map':{'a':'model-00001-of-00002.safetensors',"
                                     "'a':'model-00002-of-00002.safetensors'}}"),
                 MX_ERR_INDEX_DUPLICATE_TENSOR);

    static const char *bad_names[] = {"'../x.safetensors'", "'/abs'", "'/etc/passwd'", "'a/b'", "''", "'.'",
                                      "'..'", "'./model-00001-of-00002.safetensors'", "'sub/'", "5", "null",
                                      "['model-00001-of-00002.safetensors']", "{}", "true"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        char index[512];
        snprintf(index, sizeof index, "{'weight_map':{'a':'model-00001-of-00002.safetensors','c':%s}}",
                 bad_names[i]);
        CHECK_STATUS(open_set_with_index(index), MX_ERR_INDEX_SHARD_NAME);
    }

    CHECK_STATUS(open_set_with_index("{'weight_map':{'a':'model-00001-of-00002.safetensors',"
                                     "'c':'model-00003-of-00003.safetensors'}}"),
                 MX_ERR_INDEX_MISSING_SHARD);
    CHECK(strstr(mx_last_error(), "model-00003-of-00003.safetensors") != NULL);
    CHECK_STATUS(open_set_with_index("{'weight_map':{'a':'model-00001-of-00002.safetensors',"
                                     "'c':'model-00001-of-00002.safetensors'}}"),
                 MX_ERR_INDEX_TENSOR_NOT_IN_SHARD);
    CHECK_STATUS(open_set_with_index("{'weight_map':{'zz':'model-00002-of-00002.safetensors'}}"),
                 MX_ERR_INDEX_TENSOR_NOT_IN_SHARD);

    // A tensor held by two shards, even if the index maps it to one of them.
    const char *dir = sharded_dir("st-twice", INDEX_OK);
    write_st(dir, "model-00002-of-00002.safetensors",
             "{'c':{'dtype':'BF16','shape':[2,2],'data_offsets':[0,8]},'a':{'dtype':'U8','shape':[1],'data_offsets':[8,9]}}",
             9);
    TensorSet s;
    CHECK_STATUS(tensor_set_open(dir, &s), MX_ERR_INDEX_DUPLICATE_TENSOR);
    CHECK(is_zero(&s, sizeof s));

    // A broken shard reports its own code and path.
    dir = sharded_dir("st-badshard", INDEX_OK);
    write_st(dir, "model-00002-of-00002.safetensors", "{'c':{'dtype':'BF16','shape':[2,2],'data_offsets':[0,8]}}", 9);
    CHECK_STATUS(tensor_set_open(dir, &s), MX_ERR_ST_FILE_SIZE);
    CHECK(strstr(mx_last_error(), "model-00002-of-00002.safetensors") != NULL);
    CHECK(is_zero(&s, sizeof s));
    dir = sharded_dir("st-emptyshard", INDEX_OK);
    CHECK(test_write_file(dir, "model-00001-of-00002.safetensors", "", 0) == 0);
    CHECK_STATUS(tensor_set_open(dir, &s), MX_ERR_ST_TOO_SMALL);

    // A shard name that is a directory.
    dir = sharded_dir("st-dirshard", "{'weight_map':{'a':'sub'}}");
    CHECK(mkdir(test_path(dir, "sub"), 0755) == 0);
    CHECK_STATUS(tensor_set_open(dir, &s), MX_ERR_IO);

    // An index file that is a directory cannot be read.
    dir = sharded_dir("st-dirindex", NULL);
    CHECK(mkdir(test_path(dir, "model.safetensors.index.json"), 0755) == 0);
    CHECK_STATUS(tensor_set_open(dir, &s), MX_ERR_IO);
}

// ---- allocation failures -----------------------------------------------------------------

// Fails the k-th allocation for k = 0, 1, ... until the call succeeds; every failure must be
// MX_ERR_NOMEM with *out zeroed (LeakSanitizer checks that nothing leaked).
static void test_alloc_failures(void) {
    const char *dir = sharded_dir("st-nomem", INDEX_OK);
    char sharded[4096];
    snprintf(sharded, sizeof sharded, "%s", dir);
    int done = 0;
    long k;
    for (k = 0; k < 10000 && !done; k++) {
        TensorSet s;
        mx_alloc_fail_after(k);
        MxStatus st = tensor_set_open(sharded, &s);
        mx_alloc_fail_after(-1);
        if (st == MX_OK) {
            CHECK(tensor_set_count(&s) == 3);
            tensor_set_close(&s);
            done = 1;
        } else {
            CHECK_STATUS(st, MX_ERR_NOMEM);
            CHECK(is_zero(&s, sizeof s));
        }
    }
    CHECK(done && k > 5);
    fprintf(stderr, "  sharded open: %ld allocation points\n", k - 1);

    const char *single = test_tmpdir("st-nomem1");
    write_st(single, "model.safetensors", SHARD2, 8);
    done = 0;
    for (k = 0; k < 10000 && !done; k++) {
        TensorSet s;
        mx_alloc_fail_after(k);
        MxStatus st = tensor_set_open(single, &s);
        mx_alloc_fail_after(-1);
        if (st == MX_OK) tensor_set_close(&s), done = 1;
        else CHECK_STATUS(st, MX_ERR_NOMEM);
    }
    CHECK(done);

    Bytes b = st_make(SHARD1, 11);
    done = 0;
    for (k = 0; k < 10000 && !done; k++) {
        StFile f;
        mx_alloc_fail_after(k);
        MxStatus st = st_parse(b.p, b.n, &f);
        mx_alloc_fail_after(-1);
        if (st == MX_OK) st_close(&f), done = 1;
        else {
            CHECK_STATUS(st, MX_ERR_NOMEM);
            CHECK(is_zero(&f, sizeof f));
        }
    }
    CHECK(done);
    free(b.p);
}

// Files written by the real safetensors library (tests/fixtures, when present): a single
// file with __metadata__ and space padding, and a 3-shard checkpoint with its index.
static const char *fixtures;

static void test_reference_fixtures(void) {
    struct stat sb;
    if (!fixtures || stat(fixtures, &sb) != 0) {
        fprintf(stderr, "  no fixtures directory; skipped\n");
        return;
    }
    static const char *dirs[] = {"bf16", "sharded"};
    for (int i = 0; i < 2; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", fixtures, dirs[i]);
        if (stat(dir, &sb) != 0) continue;
        TensorSet s;
        CHECK_STATUS(tensor_set_open(dir, &s), MX_OK);
        CHECK(tensor_set_count(&s) == 21 && tensor_set_find(&s, "model.embed_tokens.weight"));
        tensor_set_close(&s);
    }
}

int main(int argc, char **argv) {
    fixtures = argc > 1 ? argv[1] : NULL; // everything else builds its own files
    RUN(test_valid_file);
    RUN(test_dtypes);
    RUN(test_valid_edge_cases);
    RUN(test_header_length);
    RUN(test_header_utf8);
    RUN(test_utf8_valid);
    RUN(test_header_json);
    RUN(test_header_not_object);
    RUN(test_duplicates);
    RUN(test_metadata);
    RUN(test_entry_keys);
    RUN(test_dtype_field);
    RUN(test_shape_field);
    RUN(test_offsets_field);
    RUN(test_sizes);
    RUN(test_layout);
    RUN(test_file_size);
    RUN(test_check_order);
    RUN(test_st_open);
    RUN(test_single_file_set);
    RUN(test_sharded_set);
    RUN(test_index_errors);
    RUN(test_alloc_failures);
    RUN(test_reference_fixtures);
    return test_exit();
}
