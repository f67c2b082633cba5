// Pre-tokenization against Hugging Face tokenizers: the splits of a corpus of a few thousand
// strings under each pattern (tests/fixtures/pretok/, written by make_pretok_fixtures.py),
// the Unicode class tables against the engine's classes for every code point, the byte-level
// alphabet, robustness on invalid UTF-8, linear time on pathological input, and throughput.
//
// Usage: test_pretokenize [FIXTURES_DIR]   (default tests/fixtures)
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pretokenize.h"
#include "test_util.h"

static const char *fixtures = "tests/fixtures";

// ---- helpers -----------------------------------------------------------------------------

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Reads fixtures/pretok/name into a malloc'd buffer; NULL (and a failed check) if missing.
static uint8_t *load(const char *name, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/pretok/%s", fixtures, name);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    CHECK(*len == (size_t)n);
    return buf;
}

// A bounds-checked reader over a fixture file; any overrun sets bad and reads zeros.
typedef struct Reader {
    const uint8_t *p;
    size_t len, pos;
    int bad;
} Reader;

static uint32_t rd_u32(Reader *r) {
    if (r->len - r->pos < 4) {
        r->bad = 1;
        return 0;
    }
    const uint8_t *p = r->p + r->pos;
    r->pos += 4;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint8_t rd_u8(Reader *r) {
    if (r->pos >= r->len) {
        r->bad = 1;
        return 0;
    }
    return r->p[r->pos++];
}

static uint64_t rd_uvarint(Reader *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b = rd_u8(r);
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return v;
    }
    r->bad = 1;
    return 0;
}

static const uint8_t *rd_bytes(Reader *r, size_t n) {
    if (r->len - r->pos < n) {
        r->bad = 1;
        return NULL;
    }
    r->pos += n;
    return r->p + r->pos - n;
}

static int rd_magic(Reader *r, const char *magic) {
    const uint8_t *m = rd_bytes(r, 4);
    return m && memcmp(m, magic, 4) == 0 && rd_u32(r) == 1;
}

static uint32_t fnv1a32(const uint8_t *p, size_t n) {
    uint32_t h = 0x811C9DC5u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x01000193u;
    return h;
}

// Prints s[a..b) with escapes, for failure messages.
static void print_piece(const char *s, size_t a, size_t b) {
    fputc('"', stderr);
    for (size_t i = a; i < b; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fputc('"', stderr);
}

// Spans of `pattern` over s[0..n) into a malloc'd array (exactly sized: sanitizers see overruns).
static Span *split_all(PretokPattern pattern, const char *s, size_t n, size_t *count) {
    size_t c = pretok_split(pattern, s, n, NULL, 0);
    Span *spans = malloc((c ? c : 1) * sizeof *spans);
    *count = pretok_split(pattern, s, n, spans, c);
    CHECK(*count == c);
    return spans;
}

// 1 when spans are non-empty, back to back and cover [0, n).
static int spans_cover(const Span *spans, size_t count, size_t n) {
    size_t pos = 0;
    for (size_t i = 0; i < count; i++) {
        if (spans[i].start != pos || spans[i].end <= spans[i].start) return 0;
        pos = spans[i].end;
    }
    return pos == n;
}

// ---- tables ------------------------------------------------------------------------------

static void test_tables(void) {
    for (uint32_t c = 0; c < 128; c++) {
        int letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        int digit = c >= '0' && c <= '9';
        int space = c == ' ' || (c >= '\t' && c <= '\r');
        CHECK(unicode_is_letter(c) == letter);
        CHECK(unicode_is_number(c) == digit);
        CHECK(unicode_is_whitespace(c) == space);
        CHECK(unicode_ascii_class[c] == unicode_class(c, NULL, NULL));
    }
    // Letters: Latin-1, Greek, Cyrillic, CJK, Hangul, Arabic, a modifier letter, ſ, a
    // letter from Unicode 16.0 (Todhri) that the engine knows and Python 14.0 does not.
    const uint32_t letters[] = {0xE9, 0xDF, 0x3A9, 0x436, 0x4E2D, 0xAC00, 0x627, 0x2B0, 0x17F, 0x105C0};
    for (size_t i = 0; i < sizeof letters / sizeof letters[0]; i++) CHECK(unicode_is_letter(letters[i]));
    // Numbers: Arabic-Indic, Devanagari, fullwidth, superscript two (No), Roman twelve (Nl).
    const uint32_t numbers[] = {0x660, 0x966, 0xFF11, 0xB2, 0x216B, 0xBD, 0x11F50};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) CHECK(unicode_is_number(numbers[i]));
    // White_Space beyond ASCII.
    const uint32_t spaces[] = {0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    for (size_t i = 0; i < sizeof spaces / sizeof spaces[0]; i++) CHECK(unicode_is_whitespace(spaces[i]));
    // Other: U+001C (Python's isspace says yes; \s says no), zero-width space, BOM,
    // Mongolian vowel separator (not White_Space since Unicode 6.3), combining acute, emoji,
    // ZWJ, U+FFFD, private use, unassigned, surrogates, the last code point, beyond it.
    const uint32_t other[] = {0x1C, 0x1F, 0x200B, 0xFEFF, 0x180E, 0x301, 0x1F600, 0x200D, 0xFFFD, 0xE000,
                              0x0378, 0xD800, 0xDFFF, 0x10FFFF, 0x110000, 0xFFFFFFFF};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        uint32_t lo, hi;
        CHECK(unicode_class(other[i], &lo, &hi) == UCLASS_OTHER && lo <= other[i] && other[i] <= hi);
        CHECK(!unicode_is_letter(other[i]) && !unicode_is_number(other[i]) && !unicode_is_whitespace(other[i]));
    }
}

// Every code point's class and range against the engine's classes (classes.bin).
static void test_classes_fixture(void) {
    size_t len;
    uint8_t *buf = load("classes.bin", &len);
    if (!buf) return;
    Reader r = {buf, len, 0, 0};
    CHECK(rd_magic(&r, "PTKU"));
    uint32_t n = rd_u32(&r);
    uint8_t *want = calloc(0x110000, 1); // surrogates and everything unlisted: OTHER
    for (uint32_t i = 0; i < n && !r.bad; i++) {
        uint32_t a = rd_u32(&r), b = rd_u32(&r);
        uint8_t k = rd_u8(&r);
        CHECK(a <= b && b < 0x110000 && k >= 1 && k <= 3);
        if (a > b || b >= 0x110000) break;
        memset(want + a, k, b - a + 1);
    }
    CHECK(!r.bad && r.pos == len);
    int bad = 0;
    for (uint32_t a = 0; a < 0x110000;) {
        uint32_t b = a; // the maximal run [a, b] of one class: unicode_class must return it
        while (b + 1 < 0x110000 && want[b + 1] == want[a]) b++;
        for (uint32_t c = a; c <= b; c++) {
            uint32_t lo = 0, hi = 0;
            if (unicode_class(c, &lo, &hi) != want[a] || lo != a || hi != b ||
                (c < 0x10000 && unicode_class_bmp(c) != want[a])) {
                if (bad++ < 5) fprintf(stderr, "U+%04X: class %d [%X, %X], want %d [%X, %X]\n", c,
                                       unicode_class(c, NULL, NULL), lo, hi, want[a], a, b);
            }
        }
        a = b + 1;
    }
    CHECK(bad == 0);
    free(want);
    free(buf);
}

// ---- patterns ----------------------------------------------------------------------------

static void test_pattern_strings(void) {
    // As tokenizer.json holds them, JSON escapes decoded (each \ is one backslash).
    CHECK(pretok_pattern_from_string("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
                                     "\\s+(?!\\S)|\\s+") == PRETOK_GPT2);
    CHECK(pretok_pattern_from_string("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+") == PRETOK_LLAMA3);
    CHECK(pretok_pattern_from_string("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+") == PRETOK_QWEN2);
    for (int p = PRETOK_GPT2; p <= PRETOK_QWEN2; p++)
        CHECK(pretok_pattern_from_string(pretok_pattern_string((PretokPattern)p)) == p);
    // Near misses are not these patterns.
    CHECK(pretok_pattern_from_string(NULL) == -1);
    CHECK(pretok_pattern_from_string("") == -1);
    CHECK(pretok_pattern_from_string("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
                                     "\\s+(?!\\S)") == -1); // without the final \s+
    CHECK(pretok_pattern_from_string("'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+| ?[^\\\\s\\\\p{L}\\\\p{N}]+|"
                                     "\\\\s+(?!\\\\S)|\\\\s+") == -1); // still JSON-escaped
    CHECK(pretok_pattern_from_string("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|"
                                     "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                                     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+") == -1); // not the same (U+017F)
    CHECK(pretok_pattern_string((PretokPattern)7) == NULL);
}

// Compares every string of corpus.bin with the spans in name.bin.
static void check_fixture(const char *name, PretokPattern want_pattern) {
    size_t clen, slen;
    uint8_t *corpus = load("corpus.bin", &clen), *spans = load(name, &slen);
    if (!corpus || !spans) {
        free(corpus);
        free(spans);
        return;
    }
    Reader c = {corpus, clen, 0, 0}, s = {spans, slen, 0, 0};
    CHECK(rd_magic(&c, "PTKC") && rd_magic(&s, "PTKS"));
    uint32_t n = rd_u32(&c);
    CHECK(rd_u32(&s) == n);
    CHECK(rd_u32(&s) == fnv1a32(corpus, clen));
    size_t plen = (size_t)rd_uvarint(&s);
    const uint8_t *pat = rd_bytes(&s, plen);
    char pattern[1024] = {0};
    if (pat && plen < sizeof pattern) memcpy(pattern, pat, plen);
    int p = pretok_pattern_from_string(pattern);
    CHECK(p == (int)want_pattern);
    size_t strings = 0, total = 0, bad = 0, bytes = 0;
    for (uint32_t i = 0; i < n && !c.bad && !s.bad && p >= 0; i++) {
        size_t len = (size_t)rd_uvarint(&c);
        const uint8_t *src = rd_bytes(&c, len);
        size_t nwant = (size_t)rd_uvarint(&s);
        if (!src || nwant > len) {
            c.bad = 1;
            break;
        }
        char *text = malloc(len ? len : 1); // exactly sized: reading past it trips ASan
        memcpy(text, src, len);
        size_t ngot;
        Span *got = split_all((PretokPattern)p, text, len, &ngot);
        int ok = ngot == nwant, first_diff = -1;
        size_t pos = 0;
        for (size_t k = 0; k < nwant; k++) {
            size_t end = pos + (size_t)rd_uvarint(&s);
            if (ok && (k >= ngot || got[k].start != pos || got[k].end != end)) {
                ok = 0;
                first_diff = (int)k;
            }
            pos = end;
        }
        if (!ok && bad++ < 5) {
            fprintf(stderr, "%s: string %u ", name, i);
            print_piece(text, 0, len);
            fprintf(stderr, ": %zu spans, want %zu (first difference at %d)\n  got:", ngot, nwant, first_diff);
            for (size_t k = 0; k < ngot && k < 12; k++) print_piece(text, got[k].start, got[k].end);
            fputc('\n', stderr);
        }
        strings++;
        total += nwant;
        bytes += len;
        free(got);
        free(text);
    }
    CHECK(!c.bad && !s.bad && c.pos == clen && s.pos == slen);
    CHECK(strings == n && bad == 0);
    fprintf(stderr, "  %s: %zu strings, %zu bytes, %zu spans, %zu differ\n", name, strings, bytes, total, bad);
    free(corpus);
    free(spans);
}

static void test_fixture_gpt2(void) {
    check_fixture("gpt2.bin", PRETOK_GPT2);
}
static void test_fixture_llama3(void) {
    check_fixture("llama3.bin", PRETOK_LLAMA3);
}
static void test_fixture_qwen2(void) {
    check_fixture("qwen2.bin", PRETOK_QWEN2);
}

// A few splits spelled out, so a reader sees the semantics without the fixtures.
static int split_is(PretokPattern p, const char *s, const char *const *want) {
    Span out[64];
    size_t n = pretok_split(p, s, strlen(s), out, 64), k = 0;
    for (; want[k]; k++)
        if (k >= n || out[k].end - out[k].start != strlen(want[k]) ||
            memcmp(s + out[k].start, want[k], strlen(want[k])) != 0)
            return 0;
    return n == k;
}

static void test_examples(void) {
    CHECK(split_is(PRETOK_GPT2, "Hello  world's 123!!\n", (const char *const[]){"Hello", " ", " world", "'s", " 123", "!!", "\n", NULL}));
    CHECK(split_is(PRETOK_GPT2, "DON'T\tgo", (const char *const[]){"DON", "'", "T", "\t", "go", NULL}));
    CHECK(split_is(PRETOK_LLAMA3, "DON'T\tgo", (const char *const[]){"DON", "'T", "\tgo", NULL}));
    CHECK(split_is(PRETOK_LLAMA3, "12345 a  \n\n b", (const char *const[]){"123", "45", " a", "  \n\n", " b", NULL}));
    CHECK(split_is(PRETOK_QWEN2, "x=12;\r\n", (const char *const[]){"x", "=", "1", "2", ";\r\n", NULL}));
    CHECK(split_is(PRETOK_LLAMA3, "it'\xC5\xBFt", (const char *const[]){"it", "'\xC5\xBF", "t", NULL}));
    CHECK(split_is(PRETOK_GPT2, "", (const char *const[]){NULL}));
}

static void test_small_buffer(void) {
    const char *s = "one two three";
    Span out[3] = {{99, 99}, {99, 99}, {99, 99}};
    CHECK(pretok_split(PRETOK_GPT2, s, strlen(s), out, 1) == 3);
    CHECK(out[0].start == 0 && out[0].end == 3 && out[1].start == 99 && out[2].start == 99);
    CHECK(pretok_split(PRETOK_LLAMA3, s, strlen(s), NULL, 0) == 3);
    CHECK(pretok_split(PRETOK_LLAMA3, NULL, 0, NULL, 0) == 0);
}

// Arbitrary bytes (the caller should have replaced invalid UTF-8, but must not crash if not).
static void test_invalid_utf8(void) {
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int bad = 0;
    for (int it = 0; it < 20000; it++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t len = (size_t)(x % 24) + 1;
        char *s = malloc(len);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            // Mostly bytes that start or continue multi-byte sequences, some ASCII.
            static const uint8_t pool[] = {0x80, 0xBF, 0xC2, 0xC5, 0xDF, 0xE0, 0xE3, 0xED, 0xEF, 0xF0,
                                           0xF4, 0xF5, 0xFF, 0xA0, 0x9F, ' ', '\'', 's', 'a', '1', '\n'};
            s[i] = (char)pool[x % sizeof pool];
        }
        for (int p = PRETOK_GPT2; p <= PRETOK_QWEN2; p++) {
            size_t n;
            Span *spans = split_all((PretokPattern)p, s, len, &n);
            if (!spans_cover(spans, n, len)) bad++;
            free(spans);
        }
        free(s);
    }
    CHECK(bad == 0);
}

// ---- speed -------------------------------------------------------------------------------

// Each pathological 1 MB input splits in well under a second (a backtracking engine takes
// quadratic time on some of these: minutes). The bound is 3 s so that a sanitizer build on a
// loaded 2-core CI machine does not fail it; quadratic time would still be far over it.
static void test_linear_time(void) {
    const size_t n = 1 << 20;
    char *s = malloc(n + 1);
    Span *spans = malloc((n + 1) * sizeof *spans);
    for (int kind = 0; kind < 8; kind++) {
        for (size_t i = 0; i < n; i++) {
            static const char alt[] = "a1 !'\n\t\xC2\xA0";
            switch (kind) {
            case 0: s[i] = ' '; break;                         // spaces, then a letter
            case 1: s[i] = '\''; break;                        // apostrophes
            case 2: s[i] = alt[i % 4]; break;                  // alternating classes
            case 3: s[i] = i % 2 ? '\n' : ' '; break;          // space/newline runs
            case 4: s[i] = i % 2 ? '\t' : ' '; break;          // whitespace, no newline
            case 5: s[i] = alt[i % (sizeof alt - 1)]; break;   // everything, with U+00A0
            case 6: s[i] = "\xE4\xB8\xAD"[i % 3]; break;       // CJK
            default: s[i] = i % 3 == 0 ? '\'' : "sT"[i % 2]; break; // contractions
            }
        }
        size_t len = n - n % 6;
        s[len] = 'a';
        for (int p = PRETOK_GPT2; p <= PRETOK_QWEN2; p++) {
            double t = now_s();
            size_t count = pretok_split((PretokPattern)p, s, len + 1, spans, n + 1);
            t = now_s() - t;
            CHECK(count <= n + 1 && spans_cover(spans, count, len + 1));
            CHECK(t < 3.0);
            if (t >= 0.5) fprintf(stderr, "input %d pattern %d: %.3f s\n", kind, p, t);
            if (kind == 0) // "   ...   a": the run less one space, then " a"
                CHECK(count == 2 && spans[0].end == len - 1 && spans[1].start == len - 1);
        }
    }
    free(spans);
    free(s);
}

// Throughput on the corpus repeated to 8 MB (printed, not checked).
static void test_throughput(void) {
    size_t clen;
    uint8_t *corpus = load("corpus.bin", &clen);
    if (!corpus) return;
    Reader c = {corpus, clen, 12, 0};
    size_t cap = 8u << 20, len = 0, ascii_len = 0;
    char *text = malloc(cap), *ascii = malloc(cap);
    // All strings joined by spaces; and the ASCII-only strings alone; each repeated to 8 MB.
    for (int full = 0; full != 3;) {
        if (c.pos >= clen) c.pos = 12;
        size_t n = (size_t)rd_uvarint(&c);
        const uint8_t *src = rd_bytes(&c, n);
        if (!src) break;
        int is_ascii = 1;
        for (size_t k = 0; k < n; k++) is_ascii &= src[k] < 0x80;
        if (len + n + 1 <= cap) {
            memcpy(text + len, src, n);
            len += n;
            text[len++] = ' ';
        } else {
            full |= 1;
        }
        if (is_ascii && ascii_len + n + 1 <= cap) {
            memcpy(ascii + ascii_len, src, n);
            ascii_len += n;
            ascii[ascii_len++] = ' ';
        } else if (is_ascii) {
            full |= 2;
        }
    }
    size_t max = len + 1;
    Span *spans = malloc(max * sizeof *spans);
    static const char *const names[] = {"gpt2", "llama3", "qwen2"};
    for (int p = PRETOK_GPT2; p <= PRETOK_QWEN2; p++) {
        for (int which = 0; which < 2; which++) {
            const char *t = which ? ascii : text;
            size_t n = which ? ascii_len : len;
            double best = 1e9;
            size_t count = 0;
            for (int rep = 0; rep < 3; rep++) {
                double t0 = now_s();
                count = pretok_split((PretokPattern)p, t, n, spans, max);
                double dt = now_s() - t0;
                if (dt < best) best = dt;
            }
            CHECK(spans_cover(spans, count, n));
            fprintf(stderr, "  split %-6s %-5s %5.1f MB: %7.1f MB/s (%zu spans)\n", names[p],
                    which ? "ascii" : "mixed", (double)n / 1e6, (double)n / 1e6 / best, count);
        }
    }
    free(spans);
    free(text);
    free(ascii);
    free(corpus);
}

// ---- byte-level alphabet -----------------------------------------------------------------

static void test_byte_level(void) {
    uint8_t seen[0x200] = {0};
    int distinct = 1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = byte_level_char((uint8_t)b);
        CHECK(cp < 0x144);
        if (cp >= 0x200 || seen[cp]++) distinct = 0;
        CHECK(byte_level_byte(cp) == b);
    }
    CHECK(distinct);
    // Known values: space is 'Ġ' (U+0120), newline 'Ċ' (U+010A), 0xAD (soft hyphen) 'Ń'.
    CHECK(byte_level_char(' ') == 0x120 && byte_level_char('\n') == 0x10A && byte_level_char(0xAD) == 0x143);
    CHECK(byte_level_char('A') == 'A' && byte_level_char(0xA1) == 0xA1 && byte_level_char(0x7F) == 0x121);
    // Code points that are no byte's character.
    const uint32_t none[] = {0, ' ', 0x7F, 0xA0, 0xAD, 0x144, 0x1000, 0x10FFFF, 0xFFFFFFFF};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) CHECK(byte_level_byte(none[i]) == -1);
    int inverse = 0;
    for (uint32_t cp = 0; cp < 0x300; cp++) inverse += byte_level_byte(cp) >= 0;
    CHECK(inverse == 256);
}

int main(int argc, char **argv) {
    if (argc > 1) fixtures = argv[1];
    RUN(test_tables);
    RUN(test_classes_fixture);
    RUN(test_pattern_strings);
    RUN(test_examples);
    RUN(test_fixture_gpt2);
    RUN(test_fixture_llama3);
    RUN(test_fixture_qwen2);
    RUN(test_small_buffer);
    RUN(test_invalid_utf8);
    RUN(test_byte_level);
    RUN(test_linear_time);
    RUN(test_throughput);
    return test_exit();
}
