// libFuzzer target for the tokenizer: tokenizer.json loading, encoding and decoding.
// Built with clang under ASan + UBSan (cmake -DMYRMEX_FUZZ=ON): 20,000 inputs in the test
// suite (CTest label fuzz), longer with scripts/fuzz.sh [SECONDS], which also holds the seeds.
//
// Seeds worth adding: the fixtures of tests/test_tokenizer.c, prefixed with a 0 byte
// (MYRMEX_TOKENIZER_DUMP=dir ./test_tokenizer writes them).
//
// The first byte picks what the rest is:
//   0: a tokenizer.json. When it loads, a fixed text is encoded and decoded through it.
//   1: text, encoded with built-in tokenizers of both families (invalid UTF-8 included).
//   2: id sequence (2 bytes per id), decoded whole and streamed by those tokenizers.
// Invariants checked: ids in range, decoded text is valid UTF-8, streaming equals decoding,
// byte-level tokenizers round-trip valid UTF-8.
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "tokenizer.h"
#include "utf8.h"

// ---- built-in tokenizers --------------------------------------------------------------------

typedef struct Buf {
    char *p;
    size_t n, cap;
} Buf;

static void put(Buf *b, const char *fmt, ...) {
    if (!b->p) { // vsnprintf into NULL + 0 would be undefined
        b->cap = 256;
        b->p = malloc(b->cap);
        if (!b->p) abort();
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k >= 0 && (size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        b->cap = b->cap * 2 + (size_t)k + 256;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
}

static const char ADDED[] =
    "{\"id\":%d,\"content\":\"<m>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":%d,\"content\":\"ab\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,\"normalized\":true,\"special\":false},"
    "{\"id\":%d,\"content\":\"\\n\",\"single_word\":false,\"lstrip\":true,\"rstrip\":true,\"normalized\":false,\"special\":false},"
    "{\"id\":%d,\"content\":\"b c\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":true,\"special\":true}";

// SentencePiece family, Llama 2 layout: specials, 256 byte tokens, a few pieces and merges.
static char *sp_json(void) {
    Buf b = {0};
    put(&b, "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true,\"normalized\":false},"
            "{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false},");
    put(&b, ADDED, 268, 269, 270, 271);
    put(&b, "],\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xE2\x96\x81\"},"
            "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xE2\x96\x81\"}]},\"pre_tokenizer\":null,"
            "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},"
            "{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1]}}},"
            "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xE2\x96\x81\"},"
            "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \","
            "\"start\":1,\"stop\":0}]},\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,"
            "\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<s>\":1");
    for (int i = 0; i < 256; i++) put(&b, ",\"<0x%02X>\":%d", i, i + 2);
    put(&b, ",\"\xE2\x96\x81\":258,\"a\":259,\"b\":260,\"h\":261,\"e\":262,\"l\":263,\"\xE2\x96\x81h\":264,\"he\":265,"
            "\"ll\":266,\"\xE2\x96\x81he\":267},\"merges\":[\"\xE2\x96\x81 h\",\"h e\",\"l l\",\"\xE2\x96\x81h e\"]}}");
    return b.p;
}

static int gpt2_is_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

// Byte-level family, Llama 3 layout (pre-tokenizer regex) with the GPT-2 alphabet.
static char *bl_json(void) {
    Buf b = {0};
    put(&b, "{\"added_tokens\":[{\"id\":261,\"content\":\"<|bos|>\",\"special\":true,\"normalized\":false},");
    put(&b, ADDED, 262, 263, 264, 265);
    put(&b, "],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
            "\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}|"
            " ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\","
            "\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]},"
            "\"post_processor\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},"
            "\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{");
    int extra = 0;
    for (int i = 0; i < 256; i++) {
        uint32_t cp = gpt2_is_printable(i) ? (uint32_t)i : 256u + (uint32_t)extra++;
        char c[5] = {0};
        utf8_encode(cp, c);
        if (c[0] == '"' || c[0] == '\\') put(&b, "%s\"\\%s\":%d", i ? "," : "", c, i);
        else put(&b, "%s\"%s\":%d", i ? "," : "", c, i);
    }
    put(&b, ",\"he\":256,\"ll\":257,\"hell\":258,\"\xC4\xA0h\":259,\"hello\":260},"
            "\"merges\":[[\"h\",\"e\"],[\"l\",\"l\"],[\"he\",\"ll\"],[\"\xC4\xA0\",\"h\"],[\"hell\",\"o\"]]}}");
    return b.p;
}

static Tokenizer *builtin[2];

static void load_builtins(void) {
    if (builtin[0]) return;
    char *json[2] = {sp_json(), bl_json()};
    for (int i = 0; i < 2; i++) {
        if (tokenizer_load_json(json[i], strlen(json[i]), 0, &builtin[i]) != MX_OK) {
            fprintf(stderr, "built-in tokenizer %d: %s\n", i, mx_last_error());
            abort();
        }
        free(json[i]);
    }
}

// ---- checks ---------------------------------------------------------------------------------

static void check_decode(const Tokenizer *t, const int32_t *ids, int n) {
    for (int skip = 0; skip < 2; skip++) {
        char *text;
        size_t len;
        if (tokenizer_decode(t, ids, n, skip, &text, &len) != MX_OK) abort();
        if (!utf8_valid((const uint8_t *)text, len) || text[len] != 0) abort();
        Detokenizer *d;
        if (detokenizer_new(t, skip, &d) != MX_OK) abort();
        size_t at = 0;
        for (int i = 0; i <= n; i++) {
            const char *piece;
            size_t plen;
            MxStatus st = i < n ? detokenizer_push(d, ids[i], &piece, &plen) : detokenizer_finish(d, &piece, &plen);
            if (st != MX_OK || !utf8_valid((const uint8_t *)piece, plen)) abort();
            if (plen > len - at || memcmp(text + at, piece, plen) != 0) abort();
            at += plen;
        }
        if (at != len) abort();
        detokenizer_free(d);
        mx_free(text);
    }
}

static void check_encode(const Tokenizer *t, const char *text, size_t len, bool roundtrip) {
    int32_t *ids;
    int n;
    MxStatus st = tokenizer_encode(t, text, len, true, &ids, &n);
    // A fuzzed tokenizer.json may have normalizers that grow the text past the cap.
    if (st == MX_ERR_ARG && t != builtin[0] && t != builtin[1] && !ids && !n &&
        strstr(mx_last_error(), "normalized text is over"))
        return;
    if (st != MX_OK) abort();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tokenizer_vocab_size(t)) abort();
    check_decode(t, ids, n);
    mx_free(ids);
    // lstrip / rstrip tokens swallow whitespace, so only texts without them round-trip.
    bool strip = memchr(text, '\n', len) != NULL;
    for (size_t i = 0; i + 3 <= len && !strip; i++) strip = memcmp(text + i, "<m>", 3) == 0;
    if (roundtrip && !strip && utf8_valid((const uint8_t *)text, len)) {
        char *out;
        size_t olen;
        if (tokenizer_encode(t, text, len, false, &ids, &n) != MX_OK) abort();
        if (tokenizer_decode(t, ids, n, false, &out, &olen) != MX_OK) abort();
        if (olen != len || memcmp(out, text, len) != 0) abort();
        mx_free(out);
        mx_free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    load_builtins();
    switch (data[0] % 3) {
    case 0: { // passed as is: the loader must not read past n
        Tokenizer *t;
        if (tokenizer_load_json(rest, n, 0, &t) == MX_OK) {
            static const char text[] = "Hello <m> world ab\n\n b c 123 \xE6\x97\xA5\xF0\x9F\x8E\x89 \xFF!";
            check_encode(t, text, sizeof text - 1, false);
            tokenizer_free(t);
        }
        break;
    }
    case 1:
        check_encode(builtin[0], rest, n, false);
        check_encode(builtin[1], rest, n, true);
        break;
    default: {
        int count = (int)(n / 2);
        int32_t *ids = malloc((size_t)(count + 1) * sizeof *ids);
        for (int k = 0; k < 2; k++) {
            int v = tokenizer_vocab_size(builtin[k]);
            for (int i = 0; i < count; i++) ids[i] = (int32_t)(((uint8_t)rest[2 * i] | (uint8_t)rest[2 * i + 1] << 8) % v);
            check_decode(builtin[k], ids, count);
        }
        free(ids);
        break;
    }
    }
    return 0;
}
