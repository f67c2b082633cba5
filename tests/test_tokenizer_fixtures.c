// The tokenizer against the Hugging Face `tokenizers` library: for every fixture tokenizer
// made by tests/make_tokenizer_fixtures.py (llama3, gpt2, llama2, mistral) and every string
// of the shared corpus (10,000+ strings: many scripts, emoji, combining marks, whitespace
// runs, code, 1000+ character words, special-token strings, invalid UTF-8), the ids of
// tokenizer_encode (add_special off; on for a subset) equal the library's, tokenizer_decode
// (skip_special off and on) gives the library's text, and a Detokenizer fed one id at a time
// gives exactly the same text. Random id sequences (partial UTF-8, byte tokens, specials)
// are decoded too. Format of the files: tests/fixtures/tokenizers/README.md.
//
// Mismatches are counted per check and tokenizer; the first few are printed, escaped.
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "test_util.h"
#include "tokenizer.h"
#include "utf8.h"

#define SHOW_FIRST 4  // mismatches printed per check and tokenizer
#define SHOW_CHARS 160 // bytes of a text shown in a message
#define SHOW_IDS 24    // ids shown in a message

static const char *const NAMES[] = {"llama3", "gpt2", "llama2", "mistral"};

// ---- reading the files ---------------------------------------------------------------------

static uint8_t cur_byte(Cur *c) {
    if (c->p >= c->end) {
        c->bad = true;
        return 0;
    }
    return *c->p++;
}

static uint64_t cur_varint(Cur *c) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b = cur_byte(c);
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    c->bad = true;
    return 0;
}

// A list of ids read from the file (pointer into a malloc'd array owned by the caller).
typedef struct Ids {
    int32_t *v;
    int n;
} Ids;

static void cur_ids(Cur *c, Ids *ids) {
    uint64_t n = cur_varint(c);
    if (n > (uint64_t)(c->end - c->p)) { // every id takes at least one byte
        c->bad = true;
        n = 0;
    }
    ids->v = realloc(ids->v, (n ? n : 1) * sizeof *ids->v);
    ids->n = (int)n;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t id = cur_varint(c);
        if (id > INT32_MAX) c->bad = true;
        ids->v[i] = (int32_t)id;
    }
}

// A text field: tag < 4 refers to refs[tag] (0 = the corpus string when it is valid UTF-8,
// then the earlier texts of the record); otherwise tag - 4 bytes of UTF-8 follow.
typedef struct Text {
    const char *s;
    size_t len;
} Text;

static Text cur_text(Cur *c, const Text *refs, int n_refs) {
    uint64_t tag = cur_varint(c);
    Text t = {"", 0};
    if (tag < 4) {
        if ((int)tag >= n_refs || !refs[tag].s) c->bad = true;
        else t = refs[tag];
        return t;
    }
    uint64_t len = tag - 4;
    if (len > (uint64_t)(c->end - c->p)) {
        c->bad = true;
        return t;
    }
    t.s = (const char *)c->p;
    t.len = (size_t)len;
    c->p += len;
    return t;
}

typedef struct Corpus {
    TestBytes file;
    int n;
    Text *items; // into file.data
} Corpus;

static int corpus_load(const char *dir, Corpus *c) {
    memset(c, 0, sizeof *c);
    if (test_read_file(test_path(dir, "corpus.bin"), &c->file)) return -1;
    Cur cur = {c->file.data, c->file.data + c->file.len, false};
    bool bad = c->file.len < 12 || memcmp(c->file.data, "MXTC", 4) != 0;
    cur.p += 4;
    uint32_t version = cur_u32(&cur), n = cur_u32(&cur);
    bad |= version != 1 || n == 0 || n > 10000000;
    if (!bad) c->items = calloc(n, sizeof *c->items);
    for (uint32_t i = 0; !bad && i < n; i++) {
        uint32_t len = cur_u32(&cur);
        bad = cur.bad || len > (size_t)(cur.end - cur.p);
        if (bad) break;
        c->items[i].s = (const char *)cur.p;
        c->items[i].len = len;
        cur.p += len;
        c->n++;
    }
    bad |= cur.p != cur.end;
    return bad ? -1 : 0;
}

static void corpus_free(Corpus *c) {
    free(c->file.data);
    free(c->items);
}

// ---- reporting -------------------------------------------------------------------------------

static void put_escaped(const char *s, size_t len) {
    fputc('"', stderr);
    size_t shown = len < SHOW_CHARS ? len : SHOW_CHARS;
    for (size_t i = 0; i < shown; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') fprintf(stderr, "\\%c", ch);
        else if (ch == '\n') fputs("\\n", stderr);
        else if (ch == '\r') fputs("\\r", stderr);
        else if (ch == '\t') fputs("\\t", stderr);
        else if (ch < 0x20 || ch >= 0x7f) fprintf(stderr, "\\x%02x", ch);
        else fputc(ch, stderr);
    }
    fputc('"', stderr);
    if (shown < len) fprintf(stderr, "...(%zu bytes)", len);
}

static void put_ids(const int32_t *v, int n) {
    fputc('[', stderr);
    for (int i = 0; i < n && i < SHOW_IDS; i++) fprintf(stderr, "%s%d", i ? "," : "", v[i]);
    if (n > SHOW_IDS) fprintf(stderr, ",...(%d ids)", n);
    fputc(']', stderr);
}

// One kind of comparison for one tokenizer: counts and the first few mismatches.
typedef struct Check {
    const char *what;
    long done, bad;
} Check;

enum {
    C_ENCODE,
    C_ENCODE_SPECIAL,
    C_DECODE,
    C_DECODE_SKIP,
    C_STREAM,
    C_STREAM_SKIP,
    C_SEQ_DECODE,
    C_SEQ_DECODE_SKIP,
    C_SEQ_STREAM,
    C_SEQ_STREAM_SKIP,
    C_COUNT
};
static const char *const CHECK_NAMES[C_COUNT] = {
    "encode",          "encode add_special",  "decode",       "decode skip_special",
    "stream",          "stream skip_special", "decode (random ids)",
    "decode skip_special (random ids)", "stream (random ids)", "stream skip_special (random ids)"};

static bool show(Check *c, const char *name, int index) {
    c->bad++;
    if (c->bad > SHOW_FIRST) return false;
    fprintf(stderr, "  %s: %s mismatch at #%d\n", name, c->what, index);
    return true;
}

static void compare_ids(Check *c, const char *name, int index, const Text *input, const int32_t *got, int n_got,
                        MxStatus st, const Ids *want) {
    c->done++;
    if (st == MX_OK && n_got == want->n && (n_got == 0 || memcmp(got, want->v, (size_t)n_got * sizeof *got) == 0))
        return;
    if (!show(c, name, index)) return;
    fprintf(stderr, "    input: ");
    put_escaped(input->s, input->len);
    if (st != MX_OK) {
        fprintf(stderr, "\n    status %s: %s\n", mx_status_name(st), mx_last_error());
        return;
    }
    int first = 0;
    while (first < n_got && first < want->n && got[first] == want->v[first]) first++;
    fprintf(stderr, "\n    got  (%d ids): ", n_got);
    put_ids(got, n_got);
    fprintf(stderr, "\n    want (%d ids): ", want->n);
    put_ids(want->v, want->n);
    fprintf(stderr, "\n    first difference at id #%d", first);
    if (first < want->n) fprintf(stderr, ": want %d", want->v[first]);
    if (first < n_got) fprintf(stderr, ", got %d", got[first]);
    fputc('\n', stderr);
}

static void compare_text(Check *c, const char *name, int index, const Ids *ids, const char *got, size_t got_len,
                         MxStatus st, const Text *want) {
    c->done++;
    if (st == MX_OK && got_len == want->len && memcmp(got, want->s, got_len) == 0) return;
    if (!show(c, name, index)) return;
    fprintf(stderr, "    ids: ");
    put_ids(ids->v, ids->n);
    if (st != MX_OK) {
        fprintf(stderr, "\n    status %s: %s\n", mx_status_name(st), mx_last_error());
        return;
    }
    fprintf(stderr, "\n    got:  ");
    put_escaped(got, got_len);
    fprintf(stderr, "\n    want: ");
    put_escaped(want->s, want->len);
    fputc('\n', stderr);
}

// ---- the checks ------------------------------------------------------------------------------

static void check_encode(const Tokenizer *t, Check *c, const char *name, int index, const Text *input, bool add_special,
                         const Ids *want) {
    int32_t *ids = NULL;
    int n = 0;
    MxStatus st = tokenizer_encode(t, input->s, input->len, add_special, &ids, &n);
    compare_ids(c, name, index, input, ids, n, st, want);
    mx_free(ids);
}

static void check_decode(const Tokenizer *t, Check *c, const char *name, int index, const Ids *ids, bool skip,
                         const Text *want) {
    char *text = NULL;
    size_t len = 0;
    MxStatus st = tokenizer_decode(t, ids->v, ids->n, skip, &text, &len);
    if (st == MX_OK && (text[len] != 0 || !utf8_valid((const uint8_t *)text, len))) {
        fprintf(stderr, "  %s: decode #%d is not NUL-terminated valid UTF-8\n", name, index);
        st = MX_ERR_ARG;
    }
    compare_text(c, name, index, ids, text ? text : "", len, st, want);
    mx_free(text);
}

// Feeds ids one at a time; every piece must be valid UTF-8 and the whole must equal want.
static void check_stream(const Tokenizer *t, Check *c, const char *name, int index, const Ids *ids, bool skip,
                         const Text *want) {
    Detokenizer *d = NULL;
    MxStatus st = detokenizer_new(t, skip, &d);
    size_t cap = want->len + 64, len = 0;
    char *all = malloc(cap);
    bool pieces_ok = true;
    for (int i = 0; st == MX_OK && i <= ids->n; i++) {
        const char *piece = NULL;
        size_t n = 0;
        st = i < ids->n ? detokenizer_push(d, ids->v[i], &piece, &n) : detokenizer_finish(d, &piece, &n);
        if (st != MX_OK) break;
        if (n && !piece) {
            st = MX_ERR_ARG;
            break;
        }
        if (n && !utf8_valid((const uint8_t *)piece, n)) pieces_ok = false;
        if (len + n + 1 > cap) {
            cap = 2 * (len + n + 1);
            all = realloc(all, cap);
        }
        if (n) memcpy(all + len, piece, n);
        len += n;
    }
    if (st == MX_OK && !pieces_ok) {
        fprintf(stderr, "  %s: stream #%d produced a piece that is not valid UTF-8\n", name, index);
        st = MX_ERR_ARG;
    }
    compare_text(c, name, index, ids, all, len, st, want);
    detokenizer_free(d);
    free(all);
}

// Checks the header: vocab size, bos, eos ids, the special ids, and that every id's token
// string finds the id again.
static void check_header(const Tokenizer *t, const char *name, Cur *cur, int *n_corpus, int *n_seqs) {
    *n_corpus = (int)cur_u32(cur);
    *n_seqs = (int)cur_u32(cur);
    int vocab = (int)cur_u32(cur);
    int32_t bos = (int32_t)cur_u32(cur);
    uint32_t n_eos = cur_u32(cur);
    if (cur->bad || n_eos > 64) {
        cur->bad = true;
        return;
    }
    int32_t want_eos[64];
    for (uint32_t i = 0; i < n_eos; i++) want_eos[i] = (int32_t)cur_u32(cur);
    uint32_t n_special = cur_u32(cur);
    if (cur->bad || n_special > 100000) {
        cur->bad = true;
        return;
    }
    int32_t *special = malloc((n_special ? n_special : 1) * sizeof *special);
    for (uint32_t i = 0; i < n_special; i++) special[i] = (int32_t)cur_u32(cur);

    CHECK(tokenizer_vocab_size(t) == vocab);
    CHECK(tokenizer_bos(t) == bos);
    const int32_t *eos = NULL;
    int got_eos = tokenizer_eos(t, &eos);
    bool eos_ok = got_eos == (int)n_eos;
    for (int i = 0; eos_ok && i < got_eos; i++) { // the same set, in any order
        bool found = false;
        for (uint32_t k = 0; k < n_eos; k++) found |= eos[i] == want_eos[k];
        eos_ok = found;
    }
    if (!eos_ok) {
        fprintf(stderr, "  %s: eos ids: got", name);
        for (int i = 0; i < got_eos; i++) fprintf(stderr, " %d", eos[i]);
        fprintf(stderr, ", want");
        for (uint32_t k = 0; k < n_eos; k++) fprintf(stderr, " %d", want_eos[k]);
        fputc('\n', stderr);
    }
    CHECK(eos_ok);

    long special_bad = 0, token_bad = 0;
    for (int32_t id = 0; id < vocab; id++) {
        bool want = false;
        for (uint32_t k = 0; k < n_special; k++) want |= special[k] == id;
        if (tokenizer_is_special(t, id) != want && special_bad++ < SHOW_FIRST)
            fprintf(stderr, "  %s: tokenizer_is_special(%d) is %d\n", name, id, !want);
        const char *tok = tokenizer_token(t, id);
        if ((!tok || tokenizer_find(t, tok) != id) && token_bad++ < SHOW_FIRST)
            fprintf(stderr, "  %s: token %d (%s) does not find itself (%d)\n", name, id, tok ? tok : "NULL",
                    tok ? tokenizer_find(t, tok) : -1);
    }
    CHECK(special_bad == 0);
    CHECK(token_bad == 0);
    CHECK(tokenizer_token(t, vocab) == NULL);
    CHECK(tokenizer_token(t, -1) == NULL);
    free(special);
}

static void check_tokenizer(const char *fixtures, const char *name, const Corpus *corpus) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tokenizers/%s", fixtures, name);
    Tokenizer *t = NULL;
    MxStatus st = tokenizer_load(dir, 0, &t);
    CHECK_STATUS(st, MX_OK);
    if (st != MX_OK) return;
    TestBytes file;
    if (test_read_file(test_path(dir, "expected.bin"), &file)) {
        fprintf(stderr, "  %s: cannot read %s/expected.bin\n", name, dir);
        CHECK(0);
        tokenizer_free(t);
        return;
    }
    Cur cur = {file.data, file.data + file.len, false};
    CHECK(file.len >= 8 && memcmp(file.data, "MXTE", 4) == 0);
    cur.p += 4;
    CHECK(cur_u32(&cur) == 1); // format version
    int n_corpus = 0, n_seqs = 0;
    check_header(t, name, &cur, &n_corpus, &n_seqs);
    CHECK(n_corpus == corpus->n);

    Check checks[C_COUNT];
    for (int k = 0; k < C_COUNT; k++) checks[k] = (Check){CHECK_NAMES[k], 0, 0};
    Ids ids0 = {0}, ids1 = {0};
    for (int i = 0; !cur.bad && i < n_corpus && i < corpus->n; i++) {
        const Text *input = &corpus->items[i];
        Text refs[5] = {{NULL, 0}};
        if (utf8_valid((const uint8_t *)input->s, input->len)) refs[0] = *input;
        cur_ids(&cur, &ids0);
        refs[1] = cur_text(&cur, refs, 1);
        refs[2] = cur_text(&cur, refs, 2);
        bool has_special = cur_byte(&cur) != 0;
        if (has_special) {
            cur_ids(&cur, &ids1);
            refs[3] = cur_text(&cur, refs, 3);
            refs[4] = cur_text(&cur, refs, 4);
        }
        if (cur.bad) break;
        check_encode(t, &checks[C_ENCODE], name, i, input, false, &ids0);
        check_decode(t, &checks[C_DECODE], name, i, &ids0, false, &refs[1]);
        check_decode(t, &checks[C_DECODE_SKIP], name, i, &ids0, true, &refs[2]);
        check_stream(t, &checks[C_STREAM], name, i, &ids0, false, &refs[1]);
        check_stream(t, &checks[C_STREAM_SKIP], name, i, &ids0, true, &refs[2]);
        if (has_special) {
            check_encode(t, &checks[C_ENCODE_SPECIAL], name, i, input, true, &ids1);
            check_decode(t, &checks[C_DECODE], name, i, &ids1, false, &refs[3]);
            check_decode(t, &checks[C_DECODE_SKIP], name, i, &ids1, true, &refs[4]);
            check_stream(t, &checks[C_STREAM], name, i, &ids1, false, &refs[3]);
            check_stream(t, &checks[C_STREAM_SKIP], name, i, &ids1, true, &refs[4]);
        }
    }
    for (int i = 0; !cur.bad && i < n_seqs; i++) {
        Text refs[3] = {{NULL, 0}}; // refs[0]: no corpus string
        cur_ids(&cur, &ids0);
        refs[1] = cur_text(&cur, refs, 1);
        refs[2] = cur_text(&cur, refs, 2);
        if (cur.bad) break;
        check_decode(t, &checks[C_SEQ_DECODE], name, i, &ids0, false, &refs[1]);
        check_decode(t, &checks[C_SEQ_DECODE_SKIP], name, i, &ids0, true, &refs[2]);
        check_stream(t, &checks[C_SEQ_STREAM], name, i, &ids0, false, &refs[1]);
        check_stream(t, &checks[C_SEQ_STREAM_SKIP], name, i, &ids0, true, &refs[2]);
    }
    if (cur.bad || cur.p != cur.end) fprintf(stderr, "  %s: expected.bin is malformed\n", name);
    CHECK(!cur.bad && cur.p == cur.end);

    long total_bad = 0;
    for (int k = 0; k < C_COUNT; k++) {
        total_bad += checks[k].bad;
        if (checks[k].bad)
            fprintf(stderr, "  %s: %s: %ld of %ld mismatch\n", name, checks[k].what, checks[k].bad, checks[k].done);
        CHECK(checks[k].bad == 0);
    }
    CHECK(checks[C_ENCODE].done == corpus->n);
    fprintf(stderr, "  %s: %d strings, %d id sequences, %ld comparisons, %ld mismatches\n", name, n_corpus, n_seqs,
            checks[C_ENCODE].done + checks[C_ENCODE_SPECIAL].done + checks[C_DECODE].done + checks[C_DECODE_SKIP].done +
                checks[C_STREAM].done + checks[C_STREAM_SKIP].done + checks[C_SEQ_DECODE].done +
                checks[C_SEQ_DECODE_SKIP].done + checks[C_SEQ_STREAM].done + checks[C_SEQ_STREAM_SKIP].done,
            total_bad);
    free(ids0.v);
    free(ids1.v);
    free(file.data);
    tokenizer_free(t);
}

static const char *g_fixtures;
static Corpus g_corpus;

static void test_llama3(void) { check_tokenizer(g_fixtures, NAMES[0], &g_corpus); }
static void test_gpt2(void) { check_tokenizer(g_fixtures, NAMES[1], &g_corpus); }
static void test_llama2(void) { check_tokenizer(g_fixtures, NAMES[2], &g_corpus); }
static void test_mistral(void) { check_tokenizer(g_fixtures, NAMES[3], &g_corpus); }

// tokenizer_load_json on the text of tokenizer.json alone encodes like tokenizer_load (without
// add_special, which may depend on tokenizer_config.json).
static void test_load_json(void) {
    for (size_t k = 0; k < sizeof NAMES / sizeof *NAMES; k++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/tokenizers/%s", g_fixtures, NAMES[k]);
        TestBytes json;
        if (test_read_file(test_path(dir, "tokenizer.json"), &json)) {
            CHECK(0);
            continue;
        }
        // An exact-size copy with no NUL after it: the length is the whole input (an over-read
        // shows up under AddressSanitizer).
        char *exact = malloc(json.len);
        memcpy(exact, json.data, json.len);
        Tokenizer *a = NULL, *b = NULL;
        CHECK_STATUS(tokenizer_load(dir, 0, &a), MX_OK);
        CHECK_STATUS(tokenizer_load_json(exact, json.len, 0, &b), MX_OK);
        free(exact);
        long bad = 0;
        for (int i = 0; a && b && i < g_corpus.n && i < 2000; i++) {
            int32_t *x = NULL, *y = NULL;
            int nx = 0, ny = 0;
            MxStatus sx = tokenizer_encode(a, g_corpus.items[i].s, g_corpus.items[i].len, false, &x, &nx);
            MxStatus sy = tokenizer_encode(b, g_corpus.items[i].s, g_corpus.items[i].len, false, &y, &ny);
            bad += sx != MX_OK || sy != MX_OK || nx != ny || (nx && memcmp(x, y, (size_t)nx * sizeof *x) != 0);
            mx_free(x);
            mx_free(y);
        }
        if (bad) fprintf(stderr, "  %s: tokenizer_load_json encodes %ld strings differently\n", NAMES[k], bad);
        CHECK(bad == 0);
        // model_vocab below the highest id is refused
        Tokenizer *c = NULL;
        MxStatus st = tokenizer_load(dir, a ? tokenizer_vocab_size(a) - 1 : 1, &c);
        CHECK(st != MX_OK && c == NULL);
        tokenizer_free(a);
        tokenizer_free(b);
        free(json.data);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    g_fixtures = argv[1];
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tokenizers", g_fixtures);
    if (corpus_load(dir, &g_corpus)) {
        fprintf(stderr, "cannot read %s/corpus.bin\n", dir);
        return 1;
    }
    RUN(test_llama3);
    RUN(test_gpt2);
    RUN(test_llama2);
    RUN(test_mistral);
    RUN(test_load_json);
    corpus_free(&g_corpus);
    return test_exit();
}
