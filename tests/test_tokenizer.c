// Tokenizer: encode and decode against ids and text computed with Hugging Face `tokenizers`
// 0.23 on the same tokenizer.json files, every named load error, allocation-failure sweeps,
// and the streaming detokenizer against whole-sequence decoding.
//
// The fixtures are small tokenizer.json files built by this test (sp_*: the SentencePiece
// family, Llama 2 / Mistral layout; bl_*: the byte-level family, GPT-2 / Llama 3 layout).
// To recompute the expected tables: MYRMEX_TOKENIZER_DUMP=/tmp/tokjson ./test_tokenizer
// writes every fixture as /tmp/tokjson/<name>.json; then, for each case,
//   from tokenizers import Tokenizer
//   t = Tokenizer.from_file(f"/tmp/tokjson/{name}.json")
//   t.encode(text.decode("utf-8", errors="replace"), add_special_tokens=add_special).ids
//   t.decode(ids, skip_special_tokens=skip)
// (the tables below were printed by exactly that, looping over the cases).
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "pretokenize.h"
#include "test_util.h"
#include "tokenizer.h"
#include "utf8.h"

// ---- building fixtures ---------------------------------------------------------------------

typedef struct Buf {
    char *p;
    size_t n, cap;
} Buf;

static void bprintf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(Buf *b, const char *fmt, ...) {
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

// s as a JSON string literal (quotes included).
static void json_str(Buf *b, const char *s) {
    bprintf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') bprintf(b, "\\%c", c);
        else if (c < 0x20) bprintf(b, "\\u%04x", c);
        else bprintf(b, "%c", c);
    }
    bprintf(b, "\"");
}

// GPT-2's byte-to-character map, computed here independently of pretokenize.c.
static uint32_t gpt2_char(int byte) {
    if ((byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255)) return (uint32_t)byte;
    int n = 0;
    for (int b = 0; b < byte; b++)
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) n++;
    return 256u + (uint32_t)n;
}

#define ADDED(id, content, sw, l, r, n, s)                                                    \
    "{\"id\":" #id ",\"content\":" content ",\"single_word\":" #sw ",\"lstrip\":" #l ",\"rstrip\":" #r \
    ",\"normalized\":" #n ",\"special\":" #s "}"

static const char *const LLAMA2_NORMALIZER =
    "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xE2\x96\x81\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xE2\x96\x81\"}]}";
static const char *const LLAMA2_DECODER =
    "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xE2\x96\x81\"},"
    "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \","
    "\"start\":1,\"stop\":0}]}";
static const char *const SP_TEMPLATE =
    "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\","
    "\"ids\":[1],\"tokens\":[\"<s>\"]}}}";
// Extra added tokens with every flag combination that matters (ids after a 282-token vocab).
static const char *const SP_FLAG_TOKENS =
    "," ADDED(282, "\"<m>\"", false, true, false, false, true) "," ADDED(283, "\"ab\"", true, false, false, true, false)
    "," ADDED(284, "\"\\n\"", false, true, true, false, false) "," ADDED(285, "\" \"", false, false, false, false, false)
    "," ADDED(286, "\"<mm>\"", false, false, false, false, true) "," ADDED(287, "\"b c\"", false, false, false, true, true)
    "," ADDED(288, "\"bc\"", false, false, false, false, false);

typedef struct SpOptions {
    const char *normalizer, *pre_tokenizer, *decoder, *added; // raw JSON; NULL: defaults
    bool byte_fallback, fuse_unk;
} SpOptions;

// Llama 2's layout: <unk> <s> </s>, 256 byte tokens, then pieces and their merges.
static char *sp_json(SpOptions o) {
    static const char *const pieces[] = {"\xE2\x96\x81", "a", "b", "c", "h", "e", "l", "o", "w", "r", "d",
                                         "\xE2\x96\x81h", "he", "ll", "llo", "\xE2\x96\x81he", "\xE2\x96\x81hello",
                                         "hello", "\xE2\x96\x81w", "or", "\xE2\x96\x81wor", "ld", "\xE2\x96\x81world"};
    static const char *const merges[] = {"\xE2\x96\x81 h", "h e", "l l", "ll o", "\xE2\x96\x81h e",
                                         "\xE2\x96\x81he llo", "he llo", "\xE2\x96\x81 w", "o r",
                                         "\xE2\x96\x81w or", "l d", "\xE2\x96\x81wor ld"};
    Buf b = {0};
    bprintf(&b, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[" ADDED(0, "\"<unk>\"", false, false, false, false, true) "," ADDED(1, "\"<s>\"", false, false, false, false, true) "," ADDED(2, "\"</s>\"", false, false, false, false, true) "%s],",
            o.added ? o.added : "");
    bprintf(&b, "\"normalizer\":%s,\"pre_tokenizer\":%s,\"post_processor\":%s,\"decoder\":%s,",
            o.normalizer ? o.normalizer : LLAMA2_NORMALIZER, o.pre_tokenizer ? o.pre_tokenizer : "null", SP_TEMPLATE,
            o.decoder ? o.decoder : LLAMA2_DECODER);
    bprintf(&b, "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
                "\"end_of_word_suffix\":null,\"fuse_unk\":%s,\"byte_fallback\":%s,\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2",
            o.fuse_unk ? "true" : "false", o.byte_fallback ? "true" : "false");
    int id = 3;
    for (int byte = 0; byte < 256; byte++) bprintf(&b, ",\"<0x%02X>\":%d", byte, id++);
    for (size_t i = 0; i < sizeof pieces / sizeof *pieces; i++) {
        bprintf(&b, ",");
        json_str(&b, pieces[i]);
        bprintf(&b, ":%d", id++);
    }
    bprintf(&b, "},\"merges\":[");
    for (size_t i = 0; i < sizeof merges / sizeof *merges; i++) {
        bprintf(&b, "%s", i ? "," : "");
        json_str(&b, merges[i]);
    }
    bprintf(&b, "]}}");
    return b.p;
}

static const SpOptions SP_DEFAULT = {NULL, NULL, NULL, NULL, true, true};

typedef struct BlOptions {
    const char *pre_tokenizer, *post_processor, *added; // raw JSON; NULL: Llama 3's
    bool ignore_merges;
} BlOptions;

// GPT-2's byte alphabet (ids 0-255 by byte value), 20 merges spelling "hello", " world",
// " hello", "world", "lo", "ll", and two special tokens.
static char *bl_json(BlOptions o) {
    static const char *const merges[][2] = {
        {"h", "e"}, {"he", "l"}, {"hel", "l"}, {"hell", "o"}, {"\xC4\xA0", "w"}, {"\xC4\xA0w", "o"}, {"\xC4\xA0wo", "r"},
        {"\xC4\xA0wor", "l"}, {"\xC4\xA0worl", "d"}, {"\xC4\xA0", "h"}, {"\xC4\xA0h", "e"}, {"\xC4\xA0he", "l"},
        {"\xC4\xA0hel", "l"}, {"\xC4\xA0hell", "o"}, {"w", "o"}, {"wo", "r"}, {"wor", "l"}, {"worl", "d"},
        {"l", "o"}, {"l", "l"}};
    Buf b = {0}, re = {0};
    json_str(&re, pretok_pattern_string(PRETOK_LLAMA3));
    bprintf(&b, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[" ADDED(276, "\"<|bos|>\"", false, false, false, false, true) "," ADDED(277, "\"<|eos|>\"", false, false, false, false, true) "%s],\"normalizer\":null,",
            o.added ? o.added : "");
    if (o.pre_tokenizer) bprintf(&b, "\"pre_tokenizer\":%s,", o.pre_tokenizer);
    else
        bprintf(&b, "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":%s},"
                    "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                    "\"trim_offsets\":true,\"use_regex\":false}]},",
                re.p);
    if (o.post_processor) bprintf(&b, "\"post_processor\":%s,", o.post_processor);
    else
        bprintf(&b, "\"post_processor\":{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\",\"add_prefix_space\":true,"
                    "\"trim_offsets\":false,\"use_regex\":true},{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
                    "{\"id\":\"<|bos|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],"
                    "\"special_tokens\":{\"<|bos|>\":{\"id\":\"<|bos|>\",\"ids\":[276],\"tokens\":[\"<|bos|>\"]}}}]},");
    bprintf(&b, "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},"
                "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
                "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":%s,\"vocab\":{",
            o.ignore_merges ? "true" : "false");
    for (int byte = 0; byte < 256; byte++) {
        char c[5] = {0};
        utf8_encode(gpt2_char(byte), c);
        bprintf(&b, "%s", byte ? "," : "");
        json_str(&b, c);
        bprintf(&b, ":%d", byte);
    }
    for (size_t i = 0; i < sizeof merges / sizeof *merges; i++) {
        char cat[32];
        snprintf(cat, sizeof cat, "%s%s", merges[i][0], merges[i][1]);
        bprintf(&b, ",");
        json_str(&b, cat);
        bprintf(&b, ":%zu", 256 + i);
    }
    bprintf(&b, "},\"merges\":[");
    for (size_t i = 0; i < sizeof merges / sizeof *merges; i++) {
        bprintf(&b, "%s[", i ? "," : "");
        json_str(&b, merges[i][0]);
        bprintf(&b, ",");
        json_str(&b, merges[i][1]);
        bprintf(&b, "]");
    }
    bprintf(&b, "]}}");
    free(re.p);
    return b.p;
}

static const BlOptions BL_DEFAULT = {NULL, NULL, NULL, false};

static const char *const BL_FLAG_TOKENS =
    "," ADDED(278, "\"<m>\"", false, true, false, false, true) "," ADDED(279, "\"ab\"", true, false, false, true, false)
    "," ADDED(280, "\"\\n\"", false, true, true, false, false) "," ADDED(281, "\" \"", false, false, false, false, false)
    "," ADDED(282, "\"<mm>\"", false, false, false, false, true) "," ADDED(283, "\"b c\"", false, false, false, true, true)
    "," ADDED(284, "\"bc\"", false, false, false, false, false);

#define MS(scheme, split)                                                                     \
    "{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"" scheme "\",\"split\":" split "}"

// Every fixture by name.
static char *fixture(const char *name) {
    SpOptions sp = SP_DEFAULT;
    BlOptions bl = BL_DEFAULT;
    if (strcmp(name, "sp") == 0) return sp_json(sp);
    if (strcmp(name, "sp_ms_first") == 0) {
        sp.normalizer = "null";
        sp.pre_tokenizer = MS("first", "true");
        sp.decoder = MS("first", "true");
        return sp_json(sp);
    }
    if (strcmp(name, "sp_ms_always") == 0) {
        sp.normalizer = "null";
        sp.pre_tokenizer = MS("always", "false");
        return sp_json(sp);
    }
    if (strcmp(name, "sp_ms_never") == 0) {
        sp.normalizer = "null";
        sp.pre_tokenizer = MS("never", "true");
        sp.decoder = MS("never", "true");
        return sp_json(sp);
    }
    if (strcmp(name, "sp_flags") == 0) {
        sp.added = SP_FLAG_TOKENS;
        return sp_json(sp);
    }
    if (strcmp(name, "sp_unk") == 0) { // no byte fallback, unk not fused, no decoder
        sp.byte_fallback = sp.fuse_unk = false;
        sp.decoder = "null";
        return sp_json(sp);
    }
    if (strcmp(name, "bl") == 0) return bl_json(bl);
    if (strcmp(name, "bl_gpt2") == 0) {
        bl.pre_tokenizer = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}";
        bl.post_processor = "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":false,\"use_regex\":true}";
        return bl_json(bl);
    }
    if (strcmp(name, "bl_prefix") == 0) {
        bl.pre_tokenizer = "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}";
        bl.ignore_merges = true;
        return bl_json(bl);
    }
    if (strcmp(name, "bl_flags") == 0) {
        bl.added = BL_FLAG_TOKENS;
        return bl_json(bl);
    }
    return NULL;
}

static const char *const FIXTURES[] = {"sp", "sp_ms_first", "sp_ms_always", "sp_ms_never", "sp_flags", "sp_unk",
                                       "bl", "bl_gpt2", "bl_prefix", "bl_flags"};

static Tokenizer *load_fixture(const char *name) {
    char *json = fixture(name);
    Tokenizer *t = NULL;
    CHECK_STATUS(tokenizer_load_json(json, strlen(json), 0, &t), MX_OK);
    free(json);
    return t;
}

static void dump_fixtures(const char *dir) {
    for (size_t i = 0; i < sizeof FIXTURES / sizeof *FIXTURES; i++) {
        char *json = fixture(FIXTURES[i]), name[64];
        snprintf(name, sizeof name, "%s.json", FIXTURES[i]);
        CHECK(test_write_file(dir, name, json, strlen(json)) == 0);
        free(json);
    }
}

// ---- expected ids and text (printed by tokenizers 0.23, see the top of the file) ---------------

typedef struct EncodeCase {
    const char *fixture, *text;
    size_t len;
    bool add_special;
    const char *ids; // space-separated
} EncodeCase;

typedef struct DecodeCase {
    const char *fixture, *ids;
    bool skip_special;
    const char *text;
} DecodeCase;

// clang-format off
static const EncodeCase ENCODE_CASES[] = {
    {"sp", "hello world", 11, 0, "275 281"},
    {"sp", "hello world", 11, 1, "1 275 281"},
    {"sp", "<s>hello</s> world", 18, 0, "1 275 2 259 281"},
    {"sp", "<s>hello</s> world", 18, 1, "1 1 275 2 259 281"},
    {"sp", "  hello", 7, 0, "259 259 275"},
    {"sp", "  hello", 7, 1, "1 259 259 275"},
    {"sp", "", 0, 0, ""},
    {"sp", "", 0, 1, "1"},
    {"sp", "h\303\251llo\n", 7, 0, "270 198 172 273 13"},
    {"sp", "h\303\251llo\n", 7, 1, "1 270 198 172 273 13"},
    {"sp", " ", 1, 0, "259 259"},
    {"sp", " ", 1, 1, "1 259 259"},
    {"sp", "hello<s>", 8, 0, "275 1"},
    {"sp", "hello<s>", 8, 1, "1 275 1"},
    {"sp", "a  b", 4, 0, "259 260 259 259 261"},
    {"sp", "a  b", 4, 1, "1 259 260 259 259 261"},
    {"sp", "x\342\200\203ab\342\200\215 \346\227\245\346\234\254 \360\237\216\211 ok", 24, 0, "259 123 229 131 134 260 261 229 131 144 259 233 154 168 233 159 175 259 243 162 145 140 259 266 110"},
    {"sp", "x\342\200\203ab\342\200\215 \346\227\245\346\234\254 \360\237\216\211 ok", 24, 1, "1 259 123 229 131 134 260 261 229 131 144 259 233 154 168 233 159 175 259 243 162 145 140 259 266 110"},
    {"sp", "bad \377\376 utf8 \344\275", 14, 0, "259 261 260 269 259 242 194 192 242 194 192 259 120 119 105 59 259 242 194 192"},
    {"sp", "bad \377\376 utf8 \344\275", 14, 1, "1 259 261 260 269 259 242 194 192 242 194 192 259 120 119 105 59 259 242 194 192"},
    {"sp", "<s><s></s>", 10, 0, "1 1 2"},
    {"sp", "<s><s></s>", 10, 1, "1 1 1 2"},
    {"sp", "hexyz\303\251\342\202\254l", 11, 0, "274 123 124 125 198 172 229 133 175 265"},
    {"sp", "hexyz\303\251\342\202\254l", 11, 1, "1 274 123 124 125 198 172 229 133 175 265"},
    {"sp", "\000nul\000", 5, 0, "259 3 113 120 265 3"},
    {"sp", "\000nul\000", 5, 1, "1 259 3 113 120 265 3"},
    {"sp", "hello world hello world hello", 29, 0, "275 281 275 281 275"},
    {"sp", "hello world hello world hello", 29, 1, "1 275 281 275 281 275"},
    {"sp_ms_first", "hello world", 11, 0, "275 281"},
    {"sp_ms_first", "hello world", 11, 1, "1 275 281"},
    {"sp_ms_first", "<s>hello</s> world", 18, 0, "1 276 2 281"},
    {"sp_ms_first", "<s>hello</s> world", 18, 1, "1 1 276 2 281"},
    {"sp_ms_first", "  hello", 7, 0, "259 275"},
    {"sp_ms_first", "  hello", 7, 1, "1 259 275"},
    {"sp_ms_first", "", 0, 0, ""},
    {"sp_ms_first", "", 0, 1, "1"},
    {"sp_ms_first", "h\303\251llo\n", 7, 0, "270 198 172 273 13"},
    {"sp_ms_first", "h\303\251llo\n", 7, 1, "1 270 198 172 273 13"},
    {"sp_ms_first", " ", 1, 0, "259"},
    {"sp_ms_first", " ", 1, 1, "1 259"},
    {"sp_ms_first", "hello<s>", 8, 0, "275 1"},
    {"sp_ms_first", "hello<s>", 8, 1, "1 275 1"},
    {"sp_ms_first", "a  b", 4, 0, "259 260 259 259 261"},
    {"sp_ms_first", "a  b", 4, 1, "1 259 260 259 259 261"},
    {"sp_ms_first", "x\342\200\203ab\342\200\215 \346\227\245\346\234\254 \360\237\216\211 ok", 24, 0, "259 123 229 131 134 260 261 229 131 144 259 233 154 168 233 159 175 259 243 162 145 140 259 266 110"},
    {"sp_ms_first", "x\342\200\203ab\342\200\215 \346\227\245\346\234\254 \360\237\216\211 ok", 24, 1, "1 259 123 229 131 134 260 261 229 131 144 259 233 154 168 233 159 175 259 243 162 145 140 259 266 110"},
    {"sp_ms_always", "hello world", 11, 0, "275 281"},
    {"sp_ms_always", "hello world", 11, 1, "1 275 281"},
    {"sp_ms_always", "<s>hello</s> world", 18, 0, "1 275 2 281"},
    {"sp_ms_always", "<s>hello</s> world", 18, 1, "1 1 275 2 281"},
    {"sp_ms_always", "  hello", 7, 0, "259 275"},
    {"sp_ms_always", "  hello", 7, 1, "1 259 275"},
    {"sp_ms_always", "", 0, 0, ""},
    {"sp_ms_always", "", 0, 1, "1"},
    {"sp_ms_always", "h\303\251llo\n", 7, 0, "270 198 172 273 13"},
    {"sp_ms_always", "h\303\251llo\n", 7, 1, "1 270 198 172 273 13"},
    {"sp_ms_always", " ", 1, 0, "259"},
    {"sp_ms_always", " ", 1, 1, "1 259"},
    {"sp_ms_always", "hello<s>", 8, 0, "275 1"},
    {"sp_ms_always", "hello<s>", 8, 1, "1 275 1"},
    {"sp_ms_always", "a  b", 4, 0, "259 260 259 259 261"},
    {"sp_ms_always", "a  b", 4, 1, "1 259 260 259 259 261"},
    {"sp_ms_always", "x\342\200\203ab\342\200\215 \346\227\245\346\234\254 \360\237\216\211 ok", 24, 0, "259 123 229 131 134 260 261 229 131 144 259 233 154 168 233 159 175 259 243 162 145 140 259 266 110"},
    {"sp_ms_always", "x\342\200\203ab\342\200\215 \346\227\245\346\234\254 \360\237\216\211 ok", 24, 1, "1 259 123 229 131 134 260 261 229 131 144 259 233 154 168 233 159 175 259 243 162 145 140 259 266 110"},
    {"sp_ms_never", "hello world", 11, 0, "276 281"},
    {"sp_ms_never", "hello world", 11, 1, "1 276 281"},
    {"sp_ms_never", "<s>hello</s> world", 18, 0, "1 276 2 281"},
    {"sp_ms_never", "<s>hello</s> world", 18, 1, "1 1 276 2 281"},
    {"sp_ms_never", "  hello", 7, 0, "259 275"},
    {"sp_ms_never", "  hello", 7, 1, "1 259 275"},
    {"sp_ms_never", "", 0, 0, ""},
    {"sp_ms_never", "", 0, 1, "1"},
    {"sp_ms_never", "h\303\251llo\n", 7, 0, "263 198 172 273 13"},
    {"sp_ms_never", "h\303\251llo\n", 7, 1, "1 263 198 172 273 13"},
    {"sp_ms_never", " ", 1, 0, "259"},
    {"sp_ms_never", " ", 1, 1, "1 259"},
    {"sp_ms_never", "hello<s>", 8, 0, "276 1"},
    {"sp_ms_never", "hello<s>", 8, 1, "1 276 1"},
    {"sp_ms_never", "a  b", 4, 0, "260 259 259 261"},
    {"sp_ms_never", "a  b", 4, 1, "1 260 259 259 261"},
    {"sp_ms_never", "x\342\200\203ab\342\200\215 \346\227\245\346\234\254 \360\237\216\211 ok", 24, 0, "123 229 131 134 260 261 229 131 144 259 233 154 168 233 159 175 259 243 162 145 140 259 266 110"},
    {"sp_ms_never", "x\342\200\203ab\342\200\215 \346\227\245\346\234\254 \360\237\216\211 ok", 24, 1, "1 123 229 131 134 260 261 229 131 144 259 233 154 168 233 159 175 259 243 162 145 140 259 266 110"},
    {"sp_flags", "x <m> y", 7, 0, "259 123 285 282 285 259 124"},
    {"sp_flags", "x <m> y", 7, 1, "1 259 123 285 282 285 259 124"},
    {"sp_flags", "x  <m>  <m>  y", 14, 0, "259 123 285 285 282 285 285 282 285 285 259 124"},
    {"sp_flags", "x  <m>  <m>  y", 14, 1, "1 259 123 285 285 282 285 285 282 285 285 259 124"},
    {"sp_flags", "ab abc ab_ xab ab. \303\251ab ab\314\201 1ab", 32, 0, "283 285 259 260 288 285 259 260 261 98 285 259 123 260 261 285 283 49 285 259 198 172 260 261 285 259 260 261 207 132 285 259 52 260 261"},
    {"sp_flags", "ab abc ab_ xab ab. \303\251ab ab\314\201 1ab", 32, 1, "1 283 285 259 260 288 285 259 260 261 98 285 259 123 260 261 285 283 49 285 259 198 172 260 261 285 259 260 261 207 132 285 259 52 260 261"},
    {"sp_flags", "a b ab", 6, 0, "259 260 285 259 261 285 283"},
    {"sp_flags", "a b ab", 6, 1, "1 259 260 285 259 261 285 283"},
    {"sp_flags", "x \n \n y", 7, 0, "259 123 285 284 285 284 285 259 124"},
    {"sp_flags", "x \n \n y", 7, 1, "1 259 123 285 284 285 284 285 259 124"},
    {"sp_flags", "\343\200\200<m>\302\240 y", 10, 0, "282 259 197 163 285 259 124"},
    {"sp_flags", "\343\200\200<m>\302\240 y", 10, 1, "1 282 259 197 163 285 259 124"},
    {"sp_flags", "<mm><m>m>  \n\n ab\n", 17, 0, "286 282 259 112 65 285 285 284 285 283 284"},
    {"sp_flags", "<mm><m>m>  \n\n ab\n", 17, 1, "1 286 282 259 112 65 285 285 284 285 283 284"},
    {"sp_flags", " a b c bc abc", 13, 0, "285 259 260 285 259 261 285 259 262 285 288 285 259 260 288"},
    {"sp_flags", " a b c bc abc", 13, 1, "1 285 259 260 285 259 261 285 259 262 285 288 285 259 260 288"},
    {"sp_flags", "x\342\200\203ab\342\200\215", 9, 0, "259 123 229 131 134 260 261 229 131 144"},
    {"sp_flags", "x\342\200\203ab\342\200\215", 9, 1, "1 259 123 229 131 134 260 261 229 131 144"},
    {"sp_flags", "\n", 1, 0, "284"},
    {"sp_flags", "\n", 1, 1, "1 284"},
    {"sp_unk", "bad \377\376 utf8 \344\275", 14, 0, "259 261 260 269 259 0 0 259 0 0 0 0 259 0"},
    {"sp_unk", "bad \377\376 utf8 \344\275", 14, 1, "1 259 261 260 269 259 0 0 259 0 0 0 0 259 0"},
    {"sp_unk", "<s><s></s>", 10, 0, "1 1 2"},
    {"sp_unk", "<s><s></s>", 10, 1, "1 1 1 2"},
    {"sp_unk", "hexyz\303\251\342\202\254l", 11, 0, "274 0 0 0 0 0 265"},
    {"sp_unk", "hexyz\303\251\342\202\254l", 11, 1, "1 274 0 0 0 0 0 265"},
    {"sp_unk", "\000nul\000", 5, 0, "259 0 0 0 265 0"},
    {"sp_unk", "\000nul\000", 5, 1, "1 259 0 0 0 265 0"},
    {"bl", "hello world", 11, 0, "259 264"},
    {"bl", "hello world", 11, 1, "276 259 264"},
    {"bl", "<|bos|>hello world<|eos|>", 25, 0, "276 259 264 277"},
    {"bl", "<|bos|>hello world<|eos|>", 25, 1, "276 276 259 264 277"},
    {"bl", "h\303\251llo  \n\n world 12345", 22, 0, "104 195 169 108 274 32 32 10 10 264 32 49 50 51 52 53"},
    {"bl", "h\303\251llo  \n\n world 12345", 22, 1, "276 104 195 169 108 274 32 32 10 10 264 32 49 50 51 52 53"},
    {"bl", "", 0, 0, ""},
    {"bl", "", 0, 1, "276"},
    {"bl", " ", 1, 0, "32"},
    {"bl", " ", 1, 1, "276 32"},
    {"bl", "I'm here, they'LL 12345678 go!!\r\n\r\n  ok", 39, 0, "73 39 109 32 256 114 101 44 32 116 256 121 39 76 76 32 49 50 51 52 53 54 55 56 32 103 111 33 33 13 10 13 10 32 32 111 107"},
    {"bl", "I'm here, they'LL 12345678 go!!\r\n\r\n  ok", 39, 1, "276 73 39 109 32 256 114 101 44 32 116 256 121 39 76 76 32 49 50 51 52 53 54 55 56 32 103 111 33 33 13 10 13 10 32 32 111 107"},
    {"bl", "bad \377\376 utf8 \344\275", 14, 0, "98 97 100 32 239 191 189 239 191 189 32 117 116 102 56 32 239 191 189"},
    {"bl", "bad \377\376 utf8 \344\275", 14, 1, "276 98 97 100 32 239 191 189 239 191 189 32 117 116 102 56 32 239 191 189"},
    {"bl", "\000nul\000", 5, 0, "0 110 117 108 0"},
    {"bl", "\000nul\000", 5, 1, "276 0 110 117 108 0"},
    {"bl", " hello", 6, 0, "32 259"},
    {"bl", " hello", 6, 1, "276 32 259"},
    {"bl", "\346\227\245\346\234\254\360\237\216\211", 10, 0, "230 151 165 230 156 172 240 159 142 137"},
    {"bl", "\346\227\245\346\234\254\360\237\216\211", 10, 1, "276 230 151 165 230 156 172 240 159 142 137"},
    {"bl_gpt2", "hello world", 11, 0, "259 264"},
    {"bl_gpt2", "hello world", 11, 1, "259 264"},
    {"bl_gpt2", "<|bos|>hello world<|eos|>", 25, 0, "276 259 264 277"},
    {"bl_gpt2", "<|bos|>hello world<|eos|>", 25, 1, "276 259 264 277"},
    {"bl_gpt2", "h\303\251llo  \n\n world 12345", 22, 0, "104 195 169 108 274 32 32 10 10 264 32 49 50 51 52 53"},
    {"bl_gpt2", "h\303\251llo  \n\n world 12345", 22, 1, "104 195 169 108 274 32 32 10 10 264 32 49 50 51 52 53"},
    {"bl_gpt2", "", 0, 0, ""},
    {"bl_gpt2", "", 0, 1, ""},
    {"bl_gpt2", " ", 1, 0, "32"},
    {"bl_gpt2", " ", 1, 1, "32"},
    {"bl_gpt2", "I'm here, they'LL 12345678 go!!\r\n\r\n  ok", 39, 0, "73 39 109 32 256 114 101 44 32 116 256 121 39 76 76 32 49 50 51 52 53 54 55 56 32 103 111 33 33 13 10 13 10 32 32 111 107"},
    {"bl_gpt2", "I'm here, they'LL 12345678 go!!\r\n\r\n  ok", 39, 1, "73 39 109 32 256 114 101 44 32 116 256 121 39 76 76 32 49 50 51 52 53 54 55 56 32 103 111 33 33 13 10 13 10 32 32 111 107"},
    {"bl_gpt2", "bad \377\376 utf8 \344\275", 14, 0, "98 97 100 32 239 191 189 239 191 189 32 117 116 102 56 32 239 191 189"},
    {"bl_gpt2", "bad \377\376 utf8 \344\275", 14, 1, "98 97 100 32 239 191 189 239 191 189 32 117 116 102 56 32 239 191 189"},
    {"bl_gpt2", "\000nul\000", 5, 0, "0 110 117 108 0"},
    {"bl_gpt2", "\000nul\000", 5, 1, "0 110 117 108 0"},
    {"bl_gpt2", " hello", 6, 0, "32 259"},
    {"bl_gpt2", " hello", 6, 1, "32 259"},
    {"bl_gpt2", "\346\227\245\346\234\254\360\237\216\211", 10, 0, "230 151 165 230 156 172 240 159 142 137"},
    {"bl_gpt2", "\346\227\245\346\234\254\360\237\216\211", 10, 1, "230 151 165 230 156 172 240 159 142 137"},
    {"bl_prefix", "hello world", 11, 0, "269 264"},
    {"bl_prefix", "hello world", 11, 1, "276 269 264"},
    {"bl_prefix", "<|bos|>hello world<|eos|>", 25, 0, "276 269 264 277"},
    {"bl_prefix", "<|bos|>hello world<|eos|>", 25, 1, "276 276 269 264 277"},
    {"bl_prefix", "h\303\251llo  \n\n world 12345", 22, 0, "265 195 169 108 274 32 32 10 10 264 32 49 50 51 52 53"},
    {"bl_prefix", "h\303\251llo  \n\n world 12345", 22, 1, "276 265 195 169 108 274 32 32 10 10 264 32 49 50 51 52 53"},
    {"bl_prefix", " hello", 6, 0, "269"},
    {"bl_prefix", " hello", 6, 1, "276 269"},
    {"bl_flags", "x <m> y", 7, 0, "120 281 278 281 121"},
    {"bl_flags", "x <m> y", 7, 1, "276 120 281 278 281 121"},
    {"bl_flags", "x  <m>  <m>  y", 14, 0, "120 281 281 278 281 281 278 281 281 121"},
    {"bl_flags", "x  <m>  <m>  y", 14, 1, "276 120 281 281 278 281 281 278 281 281 121"},
    {"bl_flags", "ab abc ab_ xab ab. \303\251ab ab\314\201 1ab", 32, 0, "279 281 97 284 281 97 98 95 281 120 97 98 281 279 46 281 195 169 97 98 281 97 98 204 129 281 49 97 98"},
    {"bl_flags", "ab abc ab_ xab ab. \303\251ab ab\314\201 1ab", 32, 1, "276 279 281 97 284 281 97 98 95 281 120 97 98 281 279 46 281 195 169 97 98 281 97 98 204 129 281 49 97 98"},
    {"bl_flags", "a b ab", 6, 0, "97 281 98 281 279"},
    {"bl_flags", "a b ab", 6, 1, "276 97 281 98 281 279"},
    {"bl_flags", "x \n \n y", 7, 0, "120 281 280 281 280 281 121"},
    {"bl_flags", "x \n \n y", 7, 1, "276 120 281 280 281 280 281 121"},
    {"bl_flags", "\343\200\200<m>\302\240 y", 10, 0, "278 194 160 281 121"},
    {"bl_flags", "\343\200\200<m>\302\240 y", 10, 1, "276 278 194 160 281 121"},
    {"bl_flags", "<mm><m>m>  \n\n ab\n", 17, 0, "282 278 109 62 281 281 280 281 279 280"},
    {"bl_flags", "<mm><m>m>  \n\n ab\n", 17, 1, "276 282 278 109 62 281 281 280 281 279 280"},
    {"bl_flags", " a b c bc abc", 13, 0, "281 97 281 98 281 99 281 284 281 97 284"},
    {"bl_flags", " a b c bc abc", 13, 1, "276 281 97 281 98 281 99 281 284 281 97 284"},
    {"bl_flags", "x\342\200\203ab\342\200\215", 9, 0, "120 226 128 131 97 98 226 128 141"},
    {"bl_flags", "x\342\200\203ab\342\200\215", 9, 1, "276 120 226 128 131 97 98 226 128 141"},
    {"bl_flags", "\n", 1, 0, "280"},
    {"bl_flags", "\n", 1, 1, "276 280"},
};
static const DecodeCase DECODE_CASES[] = {
    {"sp", "1 68 198 172 231 192 68 0 2 269", 0, "<s>\357\277\275\357\277\275\357\277\275\357\277\275\357\277\275\357\277\275<unk></s>d"},
    {"sp", "1 68 198 172 231 192 68 0 2 269", 1, "\357\277\275\357\277\275\357\277\275\357\277\275\357\277\275\357\277\275d"},
    {"sp", "259 259 260 275 259", 0, " a hello "},
    {"sp", "259 259 260 275 259", 1, " a hello "},
    {"sp", "1 275 259", 0, "<s> hello "},
    {"sp", "1 275 259", 1, "hello "},
    {"sp", "259 260 1 275", 0, "a<s> hello"},
    {"sp", "259 260 1 275", 1, "a hello"},
    {"sp", "231 192 163", 0, "\344\275\240"},
    {"sp", "231 192 163", 1, "\344\275\240"},
    {"sp", "231 192", 0, "\357\277\275\357\277\275"},
    {"sp", "231 192", 1, "\357\277\275\357\277\275"},
    {"sp", "258 275", 0, "\357\277\275 hello"},
    {"sp", "258 275", 1, "\357\277\275 hello"},
    {"sp", "275 68 258 259", 0, "hello\357\277\275\357\277\275 "},
    {"sp", "275 68 258 259", 1, "hello\357\277\275\357\277\275 "},
    {"sp", "", 0, ""},
    {"sp", "", 1, ""},
    {"sp_ms_first", "259 259 260 275 259", 0, " a hello "},
    {"sp_ms_first", "259 259 260 275 259", 1, " a hello "},
    {"sp_ms_first", "1 275 259", 0, "<s> hello "},
    {"sp_ms_first", "1 275 259", 1, "hello "},
    {"sp_ms_first", "259 260 1 275", 0, "a<s> hello"},
    {"sp_ms_first", "259 260 1 275", 1, "a hello"},
    {"sp_ms_never", "259 259 260 275 259", 0, "  a hello "},
    {"sp_ms_never", "259 259 260 275 259", 1, "  a hello "},
    {"sp_ms_never", "1 275 259", 0, "<s> hello "},
    {"sp_ms_never", "1 275 259", 1, " hello "},
    {"sp_flags", "282 283 287 275 283 284 286", 0, "<m> ab b c hello ab\n<mm>"},
    {"sp_flags", "282 283 287 275 283 284 286", 1, "ab b c hello ab\n"},
    {"sp_flags", "283 283", 0, "ab ab"},
    {"sp_flags", "283 283", 1, "ab ab"},
    {"sp_flags", "260 287 1", 0, "a b c<s>"},
    {"sp_flags", "260 287 1", 1, "a b c"},
    {"sp_unk", "259 260 1 275 0", 0, "\342\226\201 a <s> \342\226\201hello <unk>"},
    {"sp_unk", "259 260 1 275 0", 1, "\342\226\201 a \342\226\201hello"},
    {"bl", "276 259 264 277", 0, "<|bos|>hello world<|eos|>"},
    {"bl", "276 259 264 277", 1, "hello world"},
    {"bl", "195 169 108", 0, "\303\251l"},
    {"bl", "195 169 108", 1, "\303\251l"},
    {"bl", "195", 0, "\357\277\275"},
    {"bl", "195", 1, "\357\277\275"},
    {"bl", "228 189 160 228 189", 0, "\344\275\240\357\277\275"},
    {"bl", "228 189 160 228 189", 1, "\344\275\240\357\277\275"},
    {"bl", "255 254 104", 0, "\357\277\275\357\277\275h"},
    {"bl", "255 254 104", 1, "\357\277\275\357\277\275h"},
    {"bl", "32 32 277 32", 0, "  <|eos|> "},
    {"bl", "32 32 277 32", 1, "   "},
    {"bl_flags", "278 279 280 281 282 283 284 259", 0, "<m>ab\n <mm>b cbchello"},
    {"bl_flags", "278 279 280 281 282 283 284 259", 1, "ab\n bchello"},
};
// clang-format on

static int parse_ids(const char *s, int32_t *ids, int max) {
    int n = 0;
    for (char *end; *s && n < max; s = end) {
        long v = strtol(s, &end, 10);
        if (end == s) break;
        ids[n++] = (int32_t)v;
    }
    return n;
}

// One loaded tokenizer per fixture name, for the table-driven tests.
static Tokenizer *loaded[sizeof FIXTURES / sizeof *FIXTURES];

static Tokenizer *cached(const char *name) {
    for (size_t i = 0; i < sizeof FIXTURES / sizeof *FIXTURES; i++) {
        if (strcmp(FIXTURES[i], name) != 0) continue;
        if (!loaded[i]) loaded[i] = load_fixture(name);
        return loaded[i];
    }
    MX_ASSERT(!"unknown fixture");
    return NULL;
}

static void test_encode_cases(void) {
    for (size_t i = 0; i < sizeof ENCODE_CASES / sizeof *ENCODE_CASES; i++) {
        const EncodeCase *c = &ENCODE_CASES[i];
        const Tokenizer *t = cached(c->fixture);
        int32_t want[256], *ids = NULL;
        int n_want = parse_ids(c->ids, want, 256), n = -1;
        CHECK_STATUS(tokenizer_encode(t, c->text, c->len, c->add_special, &ids, &n), MX_OK);
        bool same = n == n_want && (n == 0 || memcmp(ids, want, (size_t)n * sizeof *ids) == 0);
        CHECK(same);
        if (!same) {
            fprintf(stderr, "  %s case %zu (add_special %d): want %s, got", c->fixture, i, c->add_special, c->ids);
            for (int k = 0; k < n; k++) fprintf(stderr, " %d", ids[k]);
            fprintf(stderr, "\n");
        }
        mx_free(ids);
    }
}

// Decodes ids one push at a time; checks every chunk is whole UTF-8. Returns the
// concatenation (malloc'd).
static char *stream_decode(const Tokenizer *t, const int32_t *ids, int n, bool skip, size_t *len) {
    Detokenizer *d;
    CHECK_STATUS(detokenizer_new(t, skip, &d), MX_OK);
    Buf all = {0};
    bprintf(&all, "%s", "");
    for (int i = 0; i <= n; i++) {
        const char *piece;
        size_t plen;
        MxStatus st = i < n ? detokenizer_push(d, ids[i], &piece, &plen) : detokenizer_finish(d, &piece, &plen);
        CHECK_STATUS(st, MX_OK);
        CHECK(utf8_valid((const uint8_t *)piece, plen) && piece[plen] == 0);
        for (size_t k = 0; k < plen; k++) bprintf(&all, "%c", piece[k]);
    }
    detokenizer_free(d);
    *len = all.n;
    return all.p;
}

static void test_decode_cases(void) {
    for (size_t i = 0; i < sizeof DECODE_CASES / sizeof *DECODE_CASES; i++) {
        const DecodeCase *c = &DECODE_CASES[i];
        const Tokenizer *t = cached(c->fixture);
        int32_t ids[256];
        int n = parse_ids(c->ids, ids, 256);
        char *text = NULL;
        size_t len = 0;
        CHECK_STATUS(tokenizer_decode(t, ids, n, c->skip_special, &text, &len), MX_OK);
        bool same = text && len == strlen(c->text) && memcmp(text, c->text, len) == 0 && text[len] == 0;
        CHECK(same);
        if (!same) fprintf(stderr, "  %s decode [%s] skip %d: want \"%s\", got \"%s\"\n", c->fixture, c->ids, c->skip_special, c->text, text);
        size_t slen;
        char *streamed = stream_decode(t, ids, n, c->skip_special, &slen);
        CHECK(slen == len && memcmp(streamed, text, len) == 0);
        free(streamed);
        mx_free(text);
    }
}

// ---- load errors --------------------------------------------------------------------------

// Loads fixture `name` with the first occurrence of `from` replaced by `to`.
static MxStatus load_edited(const char *name, const char *from, const char *to, int model_vocab) {
    char *json = fixture(name);
    char *at = strstr(json, from);
    CHECK(at != NULL);
    if (!at) {
        fprintf(stderr, "  %s: no \"%s\" to replace\n", name, from);
        free(json);
        return MX_OK;
    }
    Buf b = {0};
    bprintf(&b, "%.*s%s%s", (int)(at - json), json, to, at + strlen(from));
    free(json);
    Tokenizer *t = (Tokenizer *)1;
    MxStatus st = tokenizer_load_json(b.p, b.n, model_vocab, &t);
    CHECK(st == MX_OK ? t != NULL : t == NULL);
    tokenizer_free(t);
    free(b.p);
    return st;
}

static void test_load_errors(void) {
    // Malformed JSON and wrong shapes.
    char *json = fixture("sp");
    Tokenizer *t;
    CHECK_STATUS(tokenizer_load_json(json, strlen(json) / 2, 0, &t), MX_ERR_TOKENIZER_JSON);
    free(json);
    CHECK_STATUS(load_edited("sp", "\"hello\"", "\"hel\xFFlo\"", 0), MX_ERR_TOKENIZER_JSON);      // bad UTF-8
    CHECK_STATUS(load_edited("sp", "{\"version\"", "{\"decoder\":null,\"version\"", 0), MX_ERR_TOKENIZER_JSON); // duplicate key
    CHECK_STATUS(load_edited("sp", "\"model\":{", "\"model\":7,\"x\":{", 0), MX_ERR_TOKENIZER_JSON);
    CHECK_STATUS(load_edited("sp", "\"special\":true", "\"special\":1", 0), MX_ERR_TOKENIZER_JSON);
    CHECK_STATUS(load_edited("sp", "\"start\":1", "\"start\":-1", 0), MX_ERR_TOKENIZER_JSON);
    CHECK_STATUS(load_edited("sp_ms_first", "\"replacement\":\"\xE2\x96\x81\"", "\"replacement\":\"ab\"", 0), MX_ERR_TOKENIZER_JSON);
    CHECK_STATUS(load_edited("sp_ms_first", "\"prepend_scheme\":\"first\"", "\"prepend_scheme\":\"First\"", 0), MX_ERR_TOKENIZER_JSON);
    // Components myrmex does not implement are refused by name.
    CHECK_STATUS(load_edited("sp", "\"type\":\"BPE\"", "\"type\":\"WordPiece\"", 0), MX_ERR_TOKENIZER_UNSUPPORTED);
    CHECK(strstr(mx_last_error(), "WordPiece") != NULL);
    CHECK_STATUS(load_edited("sp", LLAMA2_NORMALIZER, "{\"type\":\"NFKC\"}", 0), MX_ERR_TOKENIZER_UNSUPPORTED);
    CHECK(strstr(mx_last_error(), "NFKC") != NULL);
    CHECK_STATUS(load_edited("sp", "\"pre_tokenizer\":null", "\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"}", 0), MX_ERR_TOKENIZER_UNSUPPORTED);
    CHECK_STATUS(load_edited("sp", "{\"type\":\"Fuse\"}", "{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true}", 0), MX_ERR_TOKENIZER_UNSUPPORTED);
    CHECK_STATUS(load_edited("sp", "{\"type\":\"TemplateProcessing\"", "{\"type\":\"RobertaProcessing\"", 0), MX_ERR_TOKENIZER_UNSUPPORTED);
    CHECK_STATUS(load_edited("sp", "\"dropout\":null", "\"dropout\":0.1", 0), MX_ERR_TOKENIZER_UNSUPPORTED);
    CHECK_STATUS(load_edited("sp", "\"dropout\":null", "\"dropout\":0", 0), MX_OK);
    CHECK_STATUS(load_edited("sp", "\"continuing_subword_prefix\":null", "\"continuing_subword_prefix\":\"##\"", 0), MX_ERR_TOKENIZER_UNSUPPORTED);
    CHECK_STATUS(load_edited("sp", "\"stop\":0", "\"stop\":1", 0), MX_ERR_TOKENIZER_UNSUPPORTED);
    CHECK_STATUS(load_edited("sp", "\"pattern\":{\"String\":\" \"}", "\"pattern\":{\"Regex\":\" \"}", 0), MX_ERR_TOKENIZER_UNSUPPORTED);
    CHECK_STATUS(load_edited("bl", "\"Regex\":\"", "\"Regex\":\"\\\\s+|", 0), MX_ERR_TOKENIZER_UNSUPPORTED);
    CHECK_STATUS(load_edited("bl", "\"behavior\":\"Isolated\"", "\"behavior\":\"Removed\"", 0), MX_ERR_TOKENIZER_UNSUPPORTED);
    // Vocabulary ids.
    CHECK_STATUS(load_edited("sp", "\"a\":260", "\"a\":260,\"a\":999", 0), MX_ERR_TOKENIZER_VOCAB); // duplicate key
    CHECK_STATUS(load_edited("sp", "\"b\":261", "\"b\":260", 0), MX_ERR_TOKENIZER_VOCAB);           // duplicate id
    CHECK_STATUS(load_edited("sp", "\"b\":261", "\"b\":-1", 0), MX_ERR_TOKENIZER_VOCAB);
    CHECK_STATUS(load_edited("sp", "\"b\":261", "\"b\":261.5", 0), MX_ERR_TOKENIZER_VOCAB);
    CHECK_STATUS(load_edited("sp", "\"b\":261", "\"b\":\"261\"", 0), MX_ERR_TOKENIZER_VOCAB);
    CHECK_STATUS(load_edited("sp_unk", "\"unk_token\":\"<unk>\"", "\"unk_token\":\"<nope>\"", 0), MX_ERR_TOKENIZER_VOCAB);
    // ... unless no input can need it: every byte has a token.
    CHECK_STATUS(load_edited("sp", "\"unk_token\":\"<unk>\"", "\"unk_token\":\"<nope>\"", 0), MX_OK);
    CHECK_STATUS(load_edited("bl", "\"unk_token\":null", "\"unk_token\":\"<nope>\"", 0), MX_OK);
    CHECK_STATUS(load_edited("sp", "\"version\"", "\"version\"", 281), MX_ERR_TOKENIZER_VOCAB); // ids reach 281
    CHECK_STATUS(load_edited("sp", "\"version\"", "\"version\"", 282), MX_OK);
    // Added tokens.
    CHECK_STATUS(load_edited("sp", "\"id\":1,\"content\":\"<s>\"", "\"id\":5,\"content\":\"<s>\"", 0), MX_ERR_TOKENIZER_ADDED);
    CHECK_STATUS(load_edited("sp_flags", "\"id\":288,", "\"id\":290,", 0), MX_ERR_TOKENIZER_ADDED); // tokenizers says 288
    CHECK_STATUS(load_edited("sp_flags", "\"content\":\"bc\"", "\"content\":\"<m>\"", 0), MX_ERR_TOKENIZER_ADDED);
    CHECK_STATUS(load_edited("sp_flags", "\"content\":\"bc\"", "\"content\":\"\"", 0), MX_ERR_TOKENIZER_ADDED);
    CHECK_STATUS(load_edited("sp_flags", "\"version\"", "\"version\"", 288), MX_ERR_TOKENIZER_ADDED);
    CHECK_STATUS(load_edited("sp_flags", "\"id\":282,", "\"id\":-282,", 0), MX_ERR_TOKENIZER_ADDED);
    CHECK_STATUS(load_edited("sp", "\"ids\":[1]", "\"ids\":[999]", 0), MX_ERR_TOKENIZER_ADDED);
    CHECK_STATUS(load_edited("sp", "\"added_tokens\":[", "\"added_tokens\":[{\"id\":3}],\"x\":[", 0), MX_ERR_TOKENIZER_ADDED);
    // Merges.
    CHECK_STATUS(load_edited("sp", "\"l d\"", "\"l q\"", 0), MX_ERR_TOKENIZER_MERGES);   // q is no token
    CHECK_STATUS(load_edited("sp", "\"h e\"", "\"h o\"", 0), MX_ERR_TOKENIZER_MERGES);   // "ho" is no token
    CHECK_STATUS(load_edited("sp", "\"h e\"", "\"he\"", 0), MX_ERR_TOKENIZER_MERGES);
    CHECK_STATUS(load_edited("sp", "\"h e\"", "\"h e l\"", 0), MX_ERR_TOKENIZER_MERGES);
    CHECK_STATUS(load_edited("sp", "\"h e\"", "[\"h\",\"e\"]", 0), MX_ERR_TOKENIZER_MERGES); // mixed forms
    CHECK_STATUS(load_edited("bl", "[\"h\",\"e\"]", "[\"h\",\"e\",\"l\"]", 0), MX_ERR_TOKENIZER_MERGES);
    CHECK_STATUS(load_edited("bl", "[\"h\",\"e\"]", "[\"h\",\"x\"]", 0), MX_ERR_TOKENIZER_MERGES);
    // Byte tokens, when byte fallback is in play.
    CHECK_STATUS(load_edited("sp", "\"<0x0A>\"", "\"<0x0a>\"", 0), MX_ERR_TOKENIZER_BYTE_TOKEN);
    CHECK_STATUS(load_edited("sp", "\"<0xAB>\"", "\"<0xZB>\"", 0), MX_ERR_TOKENIZER_BYTE_TOKEN);
    CHECK_STATUS(load_edited("bl", "\"version\"", "\"version\"", 0), MX_OK);
}

// ---- tokenizer_config.json and generation_config.json --------------------------------------------

static MxStatus load_dir(const char *config, const char *generation, Tokenizer **t) {
    const char *dir = test_tmpdir("tokenizer");
    char *json = fixture("sp");
    CHECK(test_write_file(dir, "tokenizer.json", json, strlen(json)) == 0);
    free(json);
    if (config) CHECK(test_write_file(dir, "tokenizer_config.json", config, strlen(config)) == 0);
    if (generation) CHECK(test_write_file(dir, "generation_config.json", generation, strlen(generation)) == 0);
    return tokenizer_load(dir, 0, t);
}

static void check_encoding(const Tokenizer *t, const char *text, bool add_special, const char *want) {
    int32_t w[64], *ids = NULL;
    int nw = parse_ids(want, w, 64), n = -1;
    CHECK_STATUS(tokenizer_encode(t, text, strlen(text), add_special, &ids, &n), MX_OK);
    CHECK(n == nw && (n == 0 || memcmp(ids, w, (size_t)n * sizeof *w) == 0));
    mx_free(ids);
}

static void test_config_files(void) {
    Tokenizer *t;
    const int32_t *eos;
    // Without side files: the post-processor adds <s>; no bos/eos known.
    CHECK_STATUS(load_dir(NULL, NULL, &t), MX_OK);
    check_encoding(t, "hello", true, "1 275");
    CHECK(tokenizer_bos(t) == -1 && tokenizer_eos(t, &eos) == 0 && tokenizer_pad(t) == -1);
    tokenizer_free(t);
    // add_bos_token / add_eos_token replace the template (transformers 5's rule).
    CHECK_STATUS(load_dir("{\"bos_token\":\"<s>\",\"eos_token\":{\"__type\":\"AddedToken\",\"content\":\"</s>\"},"
                          "\"pad_token\":\"<unk>\",\"add_bos_token\":true,\"add_eos_token\":true}",
                          "{\"bos_token_id\":1,\"eos_token_id\":[2,0]}", &t),
                 MX_OK);
    check_encoding(t, "hello", true, "1 275 2");
    check_encoding(t, "hello", false, "275");
    CHECK(tokenizer_bos(t) == 1 && tokenizer_pad(t) == 0);
    CHECK(tokenizer_eos(t, &eos) == 2 && eos[0] == 2 && eos[1] == 0);
    tokenizer_free(t);
    CHECK_STATUS(load_dir("{\"bos_token\":\"<s>\",\"add_bos_token\":false}", "{\"eos_token_id\":2}", &t), MX_OK);
    check_encoding(t, "hello", true, "275"); // an absent add_eos_token is false
    CHECK(tokenizer_eos(t, &eos) == 1 && eos[0] == 2);
    tokenizer_free(t);
    CHECK_STATUS(load_dir("{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}", NULL, &t), MX_OK);
    check_encoding(t, "hello", true, "1 275"); // no add_* keys: the template stands
    tokenizer_free(t);
    CHECK_STATUS(load_dir("{\"bos_token\":null,\"add_bos_token\":true}", NULL, &t), MX_OK);
    check_encoding(t, "hello", true, "275"); // add_bos_token without a bos token adds nothing
    tokenizer_free(t);
    CHECK_STATUS(load_dir("{\"pad_token\":\"<pad>\"}", NULL, &t), MX_OK); // unknown pad: ignored
    CHECK(tokenizer_pad(t) == -1);
    tokenizer_free(t);
    // Errors.
    CHECK_STATUS(load_dir("{\"bos_token\":\"<nope>\"}", NULL, &t), MX_ERR_TOKENIZER_ADDED);
    CHECK_STATUS(load_dir("{\"bos_token\":5}", NULL, &t), MX_ERR_TOKENIZER_JSON);
    CHECK_STATUS(load_dir("{\"add_bos_token\":\"yes\"}", NULL, &t), MX_ERR_TOKENIZER_JSON);
    CHECK_STATUS(load_dir("{\"bos_token\":", NULL, &t), MX_ERR_TOKENIZER_JSON);
    CHECK_STATUS(load_dir(NULL, "{\"eos_token_id\":[2,999]}", &t), MX_ERR_TOKENIZER_ADDED);
    CHECK_STATUS(load_dir(NULL, "{\"eos_token_id\":\"2\"}", &t), MX_ERR_TOKENIZER_ADDED);
    CHECK_STATUS(load_dir(NULL, "[1,2]", &t), MX_ERR_TOKENIZER_JSON);
    CHECK(t == NULL);
    CHECK_STATUS(tokenizer_load(test_tmpdir("tokenizer-empty"), 0, &t), MX_ERR_TOKENIZER_JSON);
}

// ---- accessors ----------------------------------------------------------------------------

static void test_accessors(void) {
    const Tokenizer *t = cached("sp_flags");
    CHECK(tokenizer_vocab_size(t) == 289);
    CHECK(strcmp(tokenizer_token(t, 275), "\xE2\x96\x81hello") == 0);
    CHECK(strcmp(tokenizer_token(t, 283), "ab") == 0 && strcmp(tokenizer_token(t, 3 + 0x0A), "<0x0A>") == 0);
    CHECK(tokenizer_token(t, 289) == NULL && tokenizer_token(t, -1) == NULL);
    CHECK(tokenizer_find(t, "<mm>") == 286 && tokenizer_find(t, "\xE2\x96\x81world") == 281 && tokenizer_find(t, "zz") == -1);
    CHECK(tokenizer_is_special(t, 1) && tokenizer_is_special(t, 282) && tokenizer_is_special(t, 287));
    CHECK(!tokenizer_is_special(t, 283) && !tokenizer_is_special(t, 275) && !tokenizer_is_special(t, 5000));
    // Ids past the token table but below the model's vocab_size decode to nothing; past both,
    // MX_ERR_TOKEN.
    char *json = fixture("sp"), *text;
    size_t len;
    Tokenizer *big;
    CHECK_STATUS(tokenizer_load_json(json, strlen(json), 300, &big), MX_OK);
    free(json);
    int32_t ids[] = {275, 290, 299, 281};
    CHECK_STATUS(tokenizer_decode(big, ids, 4, false, &text, &len), MX_OK);
    CHECK(strcmp(text, "hello world") == 0);
    mx_free(text);
    ids[1] = 300;
    CHECK_STATUS(tokenizer_decode(big, ids, 4, false, &text, &len), MX_ERR_TOKEN);
    CHECK(text == NULL);
    ids[1] = -1;
    CHECK_STATUS(tokenizer_decode(big, ids, 4, false, &text, &len), MX_ERR_TOKEN);
    Detokenizer *d;
    const char *piece;
    CHECK_STATUS(detokenizer_new(big, false, &d), MX_OK);
    CHECK_STATUS(detokenizer_push(d, 300, &piece, &len), MX_ERR_TOKEN);
    CHECK_STATUS(detokenizer_push(d, 275, &piece, &len), MX_OK); // the stream is still usable
    CHECK(strcmp(piece, "hello") == 0);
    CHECK_STATUS(detokenizer_finish(d, &piece, &len), MX_OK);
    CHECK_STATUS(detokenizer_push(d, 275, &piece, &len), MX_ERR_ARG);
    detokenizer_free(d);
    tokenizer_free(big);
}

// ---- properties over random inputs ----------------------------------------------------------

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

// Random ids, biased towards byte tokens and the few multi-character tokens, so sequences
// often split characters across tokens.
static int random_ids(const Tokenizer *t, int32_t *ids, int max) {
    int n = (int)rnd((uint32_t)max + 1), v = tokenizer_vocab_size(t);
    bool sp = tokenizer_find(t, "<0x41>") >= 0;
    for (int i = 0; i < n; i++) {
        uint32_t r = rnd(10);
        if (r < 5) ids[i] = sp ? 3 + (int32_t)(0x80 + rnd(0x80)) : (int32_t)(0x80 + rnd(0x80)); // UTF-8 lead/continuation bytes
        else if (r < 7) ids[i] = sp ? 3 + (int32_t)rnd(0x80) : (int32_t)rnd(0x80);
        else ids[i] = (int32_t)rnd((uint32_t)v);
    }
    return n;
}

static void test_streaming_equals_decode(void) {
    int32_t ids[64];
    for (size_t f = 0; f < sizeof FIXTURES / sizeof *FIXTURES; f++) {
        const Tokenizer *t = cached(FIXTURES[f]);
        for (int iter = 0; iter < 400; iter++) {
            int n = random_ids(t, ids, 64);
            for (int skip = 0; skip < 2; skip++) {
                char *text = NULL;
                size_t len = 0, slen;
                CHECK_STATUS(tokenizer_decode(t, ids, n, skip, &text, &len), MX_OK);
                CHECK(text && utf8_valid((const uint8_t *)text, len) && text[len] == 0);
                char *streamed = stream_decode(t, ids, n, skip, &slen);
                bool same = slen == len && memcmp(streamed, text, len) == 0;
                CHECK(same);
                if (!same) fprintf(stderr, "  %s: stream \"%s\" vs decode \"%s\"\n", FIXTURES[f], streamed, text);
                free(streamed);
                mx_free(text);
            }
        }
    }
}

// Byte-level tokenizers lose nothing: decode(encode(text)) == text for any valid UTF-8,
// and encoding arbitrary bytes always succeeds with ids in range.
static void test_random_text(void) {
    const Tokenizer *bl = cached("bl"), *sp = cached("sp");
    static const char *const atoms[] = {"hello", " world", " ", "\n", "\r\n", "'s", "'LL", "123456", "\xC3\xA9", "\xE6\x97\xA5",
                                        "\xF0\x9F\x8E\x89", "\xE2\x96\x81", "<|bos|>", "<s>", "\t", "\xE3\x80\x80", "!!", "a"};
    for (int iter = 0; iter < 300; iter++) {
        Buf b = {0};
        bprintf(&b, "%s", "");
        int parts = (int)rnd(20);
        for (int i = 0; i < parts; i++) bprintf(&b, "%s", atoms[rnd(sizeof atoms / sizeof *atoms)]);
        int32_t *ids;
        int n;
        CHECK_STATUS(tokenizer_encode(bl, b.p, b.n, false, &ids, &n), MX_OK);
        char *text;
        size_t len;
        CHECK_STATUS(tokenizer_decode(bl, ids, n, false, &text, &len), MX_OK);
        CHECK(len == b.n && memcmp(text, b.p, len) == 0);
        mx_free(text);
        mx_free(ids);
        // Random bytes (invalid UTF-8 included) through both families.
        for (size_t i = 0; i < b.n; i++)
            if (rnd(4) == 0) b.p[i] = (char)rnd(256);
        for (int k = 0; k < 2; k++) {
            const Tokenizer *t = k ? sp : bl;
            CHECK_STATUS(tokenizer_encode(t, b.p, b.n, true, &ids, &n), MX_OK);
            for (int i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < tokenizer_vocab_size(t));
            mx_free(ids);
        }
        free(b.p);
    }
}

// A long word (the SentencePiece layout sees a whole text without added tokens as one word)
// and long runs: bounded time, and the same ids as short pieces would give.
static void test_long_inputs(void) {
    const Tokenizer *sp = cached("sp"), *bl = cached("bl");
    size_t reps = 200000;
    Buf b = {0};
    for (size_t i = 0; i < reps; i++) bprintf(&b, "hello world ");
    int32_t *ids;
    int n;
    CHECK_STATUS(tokenizer_encode(sp, b.p, b.n, false, &ids, &n), MX_OK);
    // "▁hello▁world" per repetition, and a lone "▁" for the trailing space.
    CHECK(n == (int)(2 * reps + 1) && ids[0] == 275 && ids[1] == 281 && ids[n - 1] == 259);
    mx_free(ids);
    CHECK_STATUS(tokenizer_encode(bl, b.p, b.n, false, &ids, &n), MX_OK);
    // "hello", then " world" as one token and " hello" as "Ġ" "hello" (merge order).
    CHECK(n == (int)(3 * reps) && ids[0] == 259 && ids[1] == 264 && ids[2] == 32 && ids[3] == 259);
    mx_free(ids);
    memset(b.p, ' ', b.n); // one whitespace run of 2.4 MB
    CHECK_STATUS(tokenizer_encode(bl, b.p, b.n, false, &ids, &n), MX_OK);
    CHECK(n == (int)b.n);
    mx_free(ids);
    memset(b.p, 'l', b.n); // one letter run: a 2.4 MB word merged as "ll" pairs
    CHECK_STATUS(tokenizer_encode(bl, b.p, b.n, false, &ids, &n), MX_OK);
    CHECK(n == (int)b.n / 2 && ids[0] == 275);
    mx_free(ids);
    free(b.p);

    // Fuzz campaign (an out-of-memory in fuzz_tokenizer): three chained 1000-fold Replace
    // normalizers turn 15 bytes into 7 GB; normalized text is capped (64 MB), the encode fails.
    Buf norm = {0};
    bprintf(&norm, "{\"type\":\"Sequence\",\"normalizers\":[");
    for (int k = 0; k < 3; k++) {
        bprintf(&norm, "%s{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"", k ? "," : "");
        for (int j = 0; j < 1000; j++) bprintf(&norm, " ");
        bprintf(&norm, "\"}");
    }
    bprintf(&norm, "]}");
    char *json = sp_json((SpOptions){norm.p, NULL, NULL, NULL, true, true});
    Tokenizer *t = NULL;
    CHECK_STATUS(tokenizer_load_json(json, strlen(json), 0, &t), MX_OK);
    if (t) {
        CHECK_STATUS(tokenizer_encode(t, "a b c d e f g h", 15, false, &ids, &n), MX_ERR_ARG);
        CHECK(ids == NULL && n == 0);
        CHECK_STATUS(tokenizer_encode(t, "ab", 2, false, &ids, &n), MX_OK); // nothing to grow
        CHECK(n == 2);
        mx_free(ids);
    }
    tokenizer_free(t);
    free(json);
    free(norm.p);
}

// ---- allocation failures ----------------------------------------------------------------------

// Runs op with the k-th allocation failing, for k = 0, 1, ... until it succeeds; each failure
// must be MX_ERR_NOMEM (LeakSanitizer checks nothing leaks).
#define ALLOC_SWEEP(op, cleanup)                                                              \
    do {                                                                                      \
        for (long k_ = 0;; k_++) {                                                            \
            mx_alloc_fail_after(k_);                                                          \
            MxStatus st_ = (op);                                                              \
            mx_alloc_fail_after(-1);                                                          \
            if (st_ == MX_OK) {                                                               \
                cleanup;                                                                      \
                break;                                                                        \
            }                                                                                 \
            CHECK_STATUS(st_, MX_ERR_NOMEM);                                                  \
            if (st_ != MX_ERR_NOMEM || k_ > 100000) break;                                    \
        }                                                                                     \
    } while (0)

static void test_alloc_failures(void) {
    static const char *const names[] = {"sp_flags", "bl_flags", "sp_ms_first"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *json = fixture(names[i]);
        Tokenizer *t = NULL;
        ALLOC_SWEEP(tokenizer_load_json(json, strlen(json), 0, &t), (void)0);
        free(json);
        static const char text[] = "x <m> ab <mm>hello world\n\n b c \xFF\xE6\x97\xA5 12345";
        int32_t *ids = NULL;
        int n = 0;
        ALLOC_SWEEP(tokenizer_encode(t, text, sizeof text - 1, true, &ids, &n), (void)0);
        char *out = NULL;
        size_t len;
        ALLOC_SWEEP(tokenizer_decode(t, ids, n, false, &out, &len), mx_free(out));
        Detokenizer *d = NULL;
        ALLOC_SWEEP(detokenizer_new(t, false, &d), (void)0);
        for (int k = 0; k < n; k++) {
            const char *piece;
            mx_alloc_fail_after(k % 2 ? 0 : 1000);
            MxStatus st = detokenizer_push(d, ids[k], &piece, &len);
            mx_alloc_fail_after(-1);
            CHECK(st == MX_OK || st == MX_ERR_NOMEM);
        }
        detokenizer_free(d);
        mx_free(ids);
        tokenizer_free(t);
    }
    const char *dir = test_tmpdir("tokenizer-alloc");
    char *json = fixture("sp");
    static const char config[] = "{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"add_bos_token\":true}";
    static const char generation[] = "{\"eos_token_id\":[2,0]}";
    CHECK(test_write_file(dir, "tokenizer.json", json, strlen(json)) == 0);
    CHECK(test_write_file(dir, "tokenizer_config.json", config, sizeof config - 1) == 0);
    CHECK(test_write_file(dir, "generation_config.json", generation, sizeof generation - 1) == 0);
    free(json);
    Tokenizer *t = NULL;
    ALLOC_SWEEP(tokenizer_load(dir, 0, &t), tokenizer_free(t));
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    const char *dump = getenv("MYRMEX_TOKENIZER_DUMP");
    if (dump) {
        dump_fixtures(dump);
        return test_exit();
    }
    RUN(test_encode_cases);
    RUN(test_decode_cases);
    RUN(test_load_errors);
    RUN(test_config_files);
    RUN(test_accessors);
    RUN(test_streaming_equals_decode);
    RUN(test_random_text);
    RUN(test_long_inputs);
    RUN(test_alloc_failures);
    for (size_t i = 0; i < sizeof loaded / sizeof *loaded; i++) tokenizer_free(loaded[i]);
    return test_exit();
}
