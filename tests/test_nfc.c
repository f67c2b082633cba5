// Unicode NFC (runtime/unicode_nfc.c) against Python's unicodedata.normalize("NFC", ...), and
// the NFC normalizer of a tokenizer.json against the Hugging Face `tokenizers` library.
// Fixtures: tests/fixtures/nfc, made by tests/make_nfc_fixtures.py (formats described there).
//
//   every code point alone; 15,000+ sequences (decompositions, composition pairs, Hangul,
//   reordering, blocking, exclusions, singletons, random mixes), one by one and all joined
//   into one text; the output capacity limit; a 100,000-mark run (no quadratic sort); a
//   trained Qwen2-style tokenizer (NFC, Split with the Qwen2 regex, byte-level BPE, a
//   normalized added token) on 500+ strings, NFC alone and inside a Sequence; the speed on
//   ASCII, NFC Latin/Vietnamese and decomposed text (printed, not checked).
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "test_util.h"
#include "tokenizer.h"
#include "unicode_nfc.h"
#include "utf8.h"

static const char *g_fixtures = "tests/fixtures";

static void show(const char *what, const char *s, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n && i < 64;) {
        uint32_t cp;
        i += utf8_decode((const uint8_t *)s + i, n - i, &cp);
        fprintf(stderr, " %04X", (unsigned)cp);
    }
    fprintf(stderr, "\n");
}

// Checks unicode_nfc(in) == want; prints the first few mismatches.
static int g_shown;
static bool check_nfc(const char *in, size_t n, const char *want, size_t wn) {
    size_t cap = 3 * n + 1;
    char *out = malloc(cap);
    size_t got = unicode_nfc(in, n, out, cap);
    bool ok = got == wn && memcmp(out, want, wn) == 0;
    CHECK(ok);
    if (!ok && g_shown++ < 8) {
        show("input   ", in, n);
        show("expected", want, wn);
        if (got != SIZE_MAX) show("got     ", out, got);
    }
    free(out);
    return ok;
}

// ---- cases.bin --------------------------------------------------------------------------------

typedef struct Rec {
    const char *in, *out;
    size_t in_len, out_len;
} Rec;

static TestBytes g_cases;
static Rec *g_single, *g_seq;
static size_t g_n_single, g_n_seq;

static Rec *read_section(Cur *c, size_t *n) {
    *n = cur_u32(c);
    if (c->bad || *n > 1000000) {
        c->bad = true;
        *n = 0;
        return NULL;
    }
    Rec *r = calloc(*n ? *n : 1, sizeof *r);
    for (size_t i = 0; i < *n; i++) {
        r[i].in = cur_str(c, &r[i].in_len);
        r[i].out = cur_str(c, &r[i].out_len);
    }
    return r;
}

static bool load_cases(void) {
    if (g_cases.data) return true;
    if (test_read_file(test_path(g_fixtures, "nfc/cases.bin"), &g_cases)) {
        fprintf(stderr, "cannot read %s\n", test_path(g_fixtures, "nfc/cases.bin"));
        CHECK(0);
        return false;
    }
    Cur c = {g_cases.data, g_cases.data + g_cases.len, false};
    bool magic = g_cases.len >= 4 && memcmp(c.p, "MXNF", 4) == 0;
    c.p += 4;
    CHECK(magic && cur_u32(&c) == 1);
    g_single = read_section(&c, &g_n_single);
    g_seq = read_section(&c, &g_n_seq);
    CHECK(!c.bad && c.p == c.end && g_n_single > 1000 && g_n_seq > 10000);
    return !c.bad;
}

static void test_every_code_point(void) {
    if (!load_cases()) return;
    size_t k = 0, changed = 0;
    int fails = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp < 0xE000) continue;
        char in[4], out[16];
        size_t n = utf8_encode(cp, in);
        const char *want = in;
        size_t wn = n;
        uint32_t rc = 0;
        if (k < g_n_single && utf8_decode((const uint8_t *)g_single[k].in, g_single[k].in_len, &rc) &&
            rc == cp) {
            want = g_single[k].out;
            wn = g_single[k].out_len;
            k++;
            changed++;
        }
        size_t got = unicode_nfc(in, n, out, sizeof out);
        if (got != wn || memcmp(out, want, wn) != 0) {
            if (fails++ < 8) fprintf(stderr, "U+%04X: NFC differs\n", (unsigned)cp);
            CHECK(0);
        }
    }
    CHECK(k == g_n_single && changed == g_n_single);
    CHECK(fails == 0);
}

static void test_sequences(void) {
    if (!load_cases()) return;
    size_t ok = 0;
    for (size_t i = 0; i < g_n_seq; i++)
        ok += check_nfc(g_seq[i].in, g_seq[i].in_len, g_seq[i].out, g_seq[i].out_len);
    CHECK(ok == g_n_seq);
    // All of them (and the single code points) joined by '|', which composes with nothing:
    // NFC(a|b) = NFC(a)|NFC(b). Exercises the copying between segments and the heap scratch.
    size_t in_len = 0, out_len = 0;
    for (size_t i = 0; i < g_n_seq; i++) in_len += g_seq[i].in_len + 1, out_len += g_seq[i].out_len + 1;
    for (size_t i = 0; i < g_n_single; i++) in_len += g_single[i].in_len + 1, out_len += g_single[i].out_len + 1;
    char *in = malloc(in_len), *want = malloc(out_len);
    size_t a = 0, b = 0;
    for (int pass = 0; pass < 2; pass++) {
        const Rec *r = pass ? g_single : g_seq;
        size_t n = pass ? g_n_single : g_n_seq;
        for (size_t i = 0; i < n; i++) {
            memcpy(in + a, r[i].in, r[i].in_len);
            a += r[i].in_len;
            in[a++] = '|';
            memcpy(want + b, r[i].out, r[i].out_len);
            b += r[i].out_len;
            want[b++] = '|';
        }
    }
    check_nfc(in, in_len, want, out_len);
    free(in);
    free(want);
}

static void test_capacity(void) {
    // U+1D160 (4 bytes) becomes three 4-byte code points: the 3x bound is reached.
    const char *in = "\xF0\x9D\x85\xA0\xF0\x9D\x85\xA0";
    char out[24];
    CHECK(unicode_nfc(in, 8, out, 24) == 24);
    CHECK(unicode_nfc(in, 8, out, 23) == SIZE_MAX);
    CHECK(unicode_nfc("abc", 3, out, 3) == 3 && memcmp(out, "abc", 3) == 0);
    CHECK(unicode_nfc("abc", 3, out, 2) == SIZE_MAX);
    CHECK(unicode_nfc("e\xCC\x81", 3, out, 2) == 2 && memcmp(out, "\xC3\xA9", 2) == 0); // e + U+0301
    CHECK(unicode_nfc("e\xCC\x81", 3, out, 1) == SIZE_MAX);
    CHECK(unicode_nfc("", 0, out, 0) == 0);
}

// 'a' then N times (U+0301 U+0323): sorted to a, N x U+0323, N x U+0301; a + U+0323 gives
// U+1EA1 and nothing else composes.
static void test_long_mark_run(void) {
    enum { N = 50000 };
    size_t n = 1 + 4 * (size_t)N;
    char *in = malloc(n), *want = malloc(n);
    in[0] = 'a';
    for (size_t i = 0; i < N; i++) memcpy(in + 1 + 4 * i, "\xCC\x81\xCC\xA3", 4);
    size_t b = 0;
    memcpy(want, "\xE1\xBA\xA1", 3); // U+1EA1
    b = 3;
    for (size_t i = 1; i < N; i++, b += 2) memcpy(want + b, "\xCC\xA3", 2);
    for (size_t i = 0; i < N; i++, b += 2) memcpy(want + b, "\xCC\x81", 2);
    clock_t t0 = clock();
    check_nfc(in, n, want, b);
    double s = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(s < 5.0);
    free(in);
    free(want);
}

// ---- the Qwen2-style tokenizer ----------------------------------------------------------------

static void run_qwen2(const Tokenizer *t, const char *label) {
    TestBytes e;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/nfc/qwen2/expected.bin", g_fixtures);
    if (test_read_file(dir, &e)) {
        CHECK(0);
        return;
    }
    Cur c = {e.data, e.data + e.len, false};
    CHECK(e.len >= 4 && memcmp(c.p, "MXNQ", 4) == 0);
    c.p += 4;
    CHECK(cur_u32(&c) == 1);
    uint32_t count = cur_u32(&c);
    CHECK(count > 500);
    int bad_ids = 0, bad_dec = 0;
    for (uint32_t r = 0; r < count && !c.bad; r++) {
        size_t tl, dl;
        const char *text = cur_str(&c, &tl);
        uint32_t n = cur_u32(&c);
        if (c.bad || n > 100000) break;
        int32_t *want = malloc((n ? n : 1) * sizeof *want);
        for (uint32_t i = 0; i < n; i++) want[i] = (int32_t)cur_u32(&c);
        const char *dec = cur_str(&c, &dl);
        int32_t *ids = NULL;
        int got = 0;
        MxStatus st = tokenizer_encode(t, text, tl, false, &ids, &got);
        CHECK_STATUS(st, MX_OK);
        bool same = !st && got == (int)n && memcmp(ids, want, n * sizeof *ids) == 0;
        if (!same && bad_ids++ < 4) {
            fprintf(stderr, "%s: record %u: ids differ (%d vs %u)\n", label, r, got, n);
            show("text", text, tl);
        }
        char *out = NULL;
        size_t ol = 0;
        if (!st) {
            CHECK_STATUS(tokenizer_decode(t, ids, got, false, &out, &ol), MX_OK);
            if (!(out && ol == dl && memcmp(out, dec, dl) == 0) && bad_dec++ < 4)
                fprintf(stderr, "%s: record %u: decode differs\n", label, r);
        }
        mx_free(out);
        mx_free(ids);
        free(want);
    }
    CHECK(!c.bad);
    CHECK(bad_ids == 0);
    CHECK(bad_dec == 0);
    free(e.data);
}

static void test_tokenizer_qwen2(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/nfc/qwen2", g_fixtures);
    Tokenizer *t = NULL;
    MxStatus st = tokenizer_load(dir, 0, &t);
    CHECK_STATUS(st, MX_OK);
    if (st) return;
    run_qwen2(t, "NFC");
    // The normalized added token "cafe\u0301" is matched on normalized text.
    int32_t *ids = NULL;
    int n = 0;
    int32_t added = tokenizer_find(t, "cafe\xCC\x81");
    CHECK(added >= 0);
    CHECK_STATUS(tokenizer_encode(t, "caf\xC3\xA9", 5, false, &ids, &n), MX_OK);
    CHECK(n == 1 && ids && ids[0] == added);
    mx_free(ids);
    tokenizer_free(t);

    // The same with the NFC inside a Sequence: alone, and after a Replace of U+2126 (OHM SIGN)
    // by U+03A9, which is what NFC does with it anyway.
    TestBytes js;
    snprintf(dir, sizeof dir, "%s/nfc/qwen2/tokenizer.json", g_fixtures);
    if (test_read_file(dir, &js)) {
        CHECK(0);
        return;
    }
    const char *old = "\"normalizer\": {\n  \"type\": \"NFC\"\n }";
    const char *seqs[] = {
        "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]}",
        "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Replace\", \"pattern\": "
        "{\"String\": \"\\u2126\"}, \"content\": \"\\u03a9\"}, {\"type\": \"NFC\"}]}",
    };
    char *text = malloc(js.len + 1);
    memcpy(text, js.data, js.len);
    text[js.len] = 0;
    char *hit = strstr(text, old);
    CHECK(hit != NULL);
    for (size_t k = 0; hit && k < sizeof seqs / sizeof *seqs; k++) {
        size_t pre = (size_t)(hit - text), ol = strlen(old), sl = strlen(seqs[k]);
        size_t len = js.len - ol + sl;
        char *j2 = malloc(len + 1);
        memcpy(j2, text, pre);
        memcpy(j2 + pre, seqs[k], sl);
        memcpy(j2 + pre + sl, hit + ol, js.len - pre - ol);
        j2[len] = 0;
        t = NULL;
        st = tokenizer_load_json(j2, len, 0, &t);
        CHECK_STATUS(st, MX_OK);
        if (!st) run_qwen2(t, k ? "Sequence[Replace, NFC]" : "Sequence[NFC]");
        tokenizer_free(t);
        free(j2);
    }
    free(text);
    free(js.data);
}

// ---- speed (printed only) --------------------------------------------------------------------

static double mb_per_s(const char *in, size_t n, char *out, size_t cap) {
    size_t got = 0;
    clock_t t0 = clock();
    int reps = 0;
    do {
        got = unicode_nfc(in, n, out, cap);
        reps++;
    } while (clock() - t0 < CLOCKS_PER_SEC / 10);
    double s = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(got != SIZE_MAX);
    return (double)n * reps / s / 1e6;
}

static void fill(char *buf, size_t n, const char *unit) {
    size_t u = strlen(unit);
    for (size_t i = 0; i + u <= n; i += u) memcpy(buf + i, unit, u);
}

static void test_speed(void) {
    enum { N = 1 << 20 };
    char *in = calloc(N, 1), *out = malloc(3 * (size_t)N);
    const char *units[][2] = {
        {"ascii", "The quick brown fox jumps over the lazy dog. "},
        {"latin-1 nfc", "Caf\xC3\xA9 na\xC3\xAFve r\xC3\xA9sum\xC3\xA9 Z\xC3\xBCrich "},
        {"vietnamese nfc", "Ti\xE1\xBA\xBFng Vi\xE1\xBB\x87t "},
        {"decomposed", "Tie\xCC\x82\xCC\x81ng Vie\xCC\xA3\xCC\x82t cafe\xCC\x81 "},
        {"cjk", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE6\x96\x87 "},
    };
    for (size_t k = 0; k < sizeof units / sizeof *units; k++) {
        memset(in, ' ', N);
        fill(in, N, units[k][1]);
        fprintf(stderr, "  NFC speed, %-15s %8.0f MB/s\n", units[k][0], mb_per_s(in, N, out, 3 * (size_t)N));
    }
    free(in);
    free(out);
}

int main(int argc, char **argv) {
    if (argc > 1) g_fixtures = argv[1];
    fprintf(stderr, "Unicode data %s\n", nfc_unicode_version);
    RUN(test_every_code_point);
    RUN(test_sequences);
    RUN(test_capacity);
    RUN(test_long_mark_run);
    RUN(test_tokenizer_qwen2);
    RUN(test_speed);
    free(g_single);
    free(g_seq);
    free(g_cases.data);
    return test_exit();
}
