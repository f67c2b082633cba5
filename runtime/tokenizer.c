// Encoding text to token ids, and the small accessors of tokenizer.h.
//
// The steps and their order are those of Hugging Face `tokenizers` (Tokenizer::encode with
// its AddedVocabulary, normalizer, pre-tokenizer, BPE model and post-processor); see
// tokenizer_internal.h. Everything an encode call needs lives in one Enc, whose buffers are
// reused from piece to piece and word to word: no allocation per token.
#include <string.h>

#include "alloc.h"
#include "tokenizer_internal.h"
#include "unicode_nfc.h"
#include "utf8.h"

// Bytes per encode call. A long word costs about 50 bytes of scratch per byte (symbols and
// merge heap), so this also bounds an encode call's memory.
#define TOKENIZER_MAX_TEXT ((size_t)16 << 20)

// ---- byte buffers ---------------------------------------------------------------------------

MxStatus tokbuf_reserve(TokBuf *b, size_t total) {
    if (total <= b->cap) return MX_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < total) {
        if (cap > SIZE_MAX / 2) return mx_fail(MX_ERR_NOMEM, "text buffer");
        cap *= 2;
    }
    char *p = mx_realloc(b->p, cap);
    if (!p) return mx_fail(MX_ERR_NOMEM, "text buffer of %zu bytes", cap);
    b->p = p;
    b->cap = cap;
    return MX_OK;
}

MxStatus tokbuf_append(TokBuf *b, const char *s, size_t n) {
    if (n > SIZE_MAX - b->n - 1) return mx_fail(MX_ERR_NOMEM, "text buffer");
    MxStatus st = tokbuf_reserve(b, b->n + n + 1);
    if (st) return st;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return MX_OK;
}

void tokbuf_free(TokBuf *b) {
    mx_free(b->p);
    memset(b, 0, sizeof *b);
}

// First occurrence of pat[0..m) (m > 0) in s[0..n), or NULL.
static const char *find_bytes(const char *s, size_t n, const char *pat, size_t m) {
    while (n >= m) {
        const char *p = memchr(s, pat[0], n - m + 1);
        if (!p) return NULL;
        if (memcmp(p, pat, m) == 0) return p;
        n -= (size_t)(p - s) + 1;
        s = p + 1;
    }
    return NULL;
}

// ---- normalizer -----------------------------------------------------------------------------

// Normalizers can grow text without bound: a Replace whose content is longer than its pattern,
// up to 16 of them chained (three 1000-fold Replaces of " " turn 50 bytes into 50 GB). Their
// output is capped so that TOKENIZER_MAX_TEXT still bounds an encode call's memory; real
// normalizers grow text at most 3-fold (" " -> "▁", NFC).
#define TOKENIZER_MAX_NORMALIZED (4 * TOKENIZER_MAX_TEXT)

static MxStatus normalized_too_long(void) {
    return mx_fail(MX_ERR_ARG, "normalized text is over the %zu-byte limit", TOKENIZER_MAX_NORMALIZED);
}

MxStatus tok_normalize(const Tokenizer *t, const char *s, size_t n, TokBuf *out, TokBuf *tmp) {
    MxStatus st;
    out->n = 0;
    if (n > TOKENIZER_MAX_NORMALIZED) return normalized_too_long();
    if ((st = tokbuf_append(out, s, n))) return st;
    for (int k = 0; k < t->n_norm; k++) {
        const NormStep *ns = &t->norm[k];
        TokBuf *cur = out;
        tmp->n = 0;
        if (ns->kind == NORM_PREPEND) {
            if (cur->n == 0) continue; // tokenizers never prepends to an empty string
            if (ns->alen > TOKENIZER_MAX_NORMALIZED - cur->n) return normalized_too_long();
            if ((st = tokbuf_append(tmp, ns->a, ns->alen)) || (st = tokbuf_append(tmp, cur->p, cur->n))) return st;
        } else if (ns->kind == NORM_NFC) { // the text is valid UTF-8 (sanitized, or from the JSON)
            if (cur->n > (SIZE_MAX - 1) / UNICODE_NFC_MAX_EXPANSION) return mx_fail(MX_ERR_NOMEM, "text buffer");
            size_t cap = UNICODE_NFC_MAX_EXPANSION * cur->n;
            if ((st = tokbuf_reserve(tmp, cap + 1))) return st;
            size_t len = unicode_nfc(cur->p, cur->n, tmp->p, cap);
            if (len == SIZE_MAX) return mx_fail(MX_ERR_NOMEM, "NFC of %zu bytes", cur->n);
            if (len > TOKENIZER_MAX_NORMALIZED) return normalized_too_long();
            tmp->n = len;
            tmp->p[len] = 0;
        } else { // NORM_REPLACE: every non-overlapping occurrence, left to right
            const char *p = cur->p, *end = cur->p + cur->n, *hit;
            while ((hit = find_bytes(p, (size_t)(end - p), ns->a, ns->alen))) {
                if ((size_t)(hit - p) + ns->blen > TOKENIZER_MAX_NORMALIZED - tmp->n) return normalized_too_long();
                if ((st = tokbuf_append(tmp, p, (size_t)(hit - p))) || (st = tokbuf_append(tmp, ns->b, ns->blen)))
                    return st;
                p = hit + ns->alen;
            }
            if ((size_t)(end - p) > TOKENIZER_MAX_NORMALIZED - tmp->n) return normalized_too_long();
            if ((st = tokbuf_append(tmp, p, (size_t)(end - p)))) return st;
        }
        TokBuf swap = *out;
        *out = *tmp;
        *tmp = swap;
    }
    return MX_OK;
}

// ---- encoding -------------------------------------------------------------------------------

typedef struct Enc {
    const Tokenizer *t;
    IdVec ids;
    BpeScratch bpe;
    PieceVec raw, norm;                       // pieces of the text / of one normalized piece
    TokBuf clean, normed, tmp, word;          // sanitized text, normalized piece, scratch, word
    Span *spans[MAX_PRETOK_SPLITS + 1];       // one span list per split level (+ ByteLevel's)
    size_t span_cap[MAX_PRETOK_SPLITS + 1];
} Enc;

static void enc_free(Enc *e) {
    bpe_scratch_free(&e->bpe);
    mx_free(e->raw.v);
    mx_free(e->norm.v);
    tokbuf_free(&e->clean);
    tokbuf_free(&e->normed);
    tokbuf_free(&e->tmp);
    tokbuf_free(&e->word);
    for (int i = 0; i <= MAX_PRETOK_SPLITS; i++) mx_free(e->spans[i]);
    mx_free(e->ids.v);
}

// Splits s[0..n) with pattern into e->spans[level]; *count spans.
static MxStatus split_spans(Enc *e, int level, PretokPattern pattern, const char *s, size_t n, size_t *count) {
    for (;;) {
        size_t k = pretok_split(pattern, s, n, e->spans[level], e->span_cap[level]);
        if (k <= e->span_cap[level]) {
            *count = k;
            return MX_OK;
        }
        Span *p = mx_realloc(e->spans[level], k * sizeof *p);
        if (!p) return mx_fail(MX_ERR_NOMEM, "pre-token spans");
        e->spans[level] = p;
        e->span_cap[level] = k;
    }
}

// The ByteLevel pre-tokenizer: optional prefix space, optional GPT-2 split, then BPE on the
// bytes (each byte is one byte-level character).
static MxStatus pretok_bytelevel(Enc *e, const char *s, size_t n) {
    const Pretok *p = &e->t->pretok;
    MxStatus st;
    if (p->bl_add_prefix_space && s[0] != ' ') {
        e->word.n = 0;
        if ((st = tokbuf_append(&e->word, " ", 1)) || (st = tokbuf_append(&e->word, s, n))) return st;
        s = e->word.p;
        n = e->word.n;
    }
    if (!p->bl_use_regex) return bpe_word(&e->t->bpe, s, n, true, &e->bpe, &e->ids);
    size_t count = 0;
    if ((st = split_spans(e, MAX_PRETOK_SPLITS, PRETOK_GPT2, s, n, &count))) return st;
    for (size_t i = 0; i < count; i++) {
        const Span *sp = &e->spans[MAX_PRETOK_SPLITS][i];
        if ((st = bpe_word(&e->t->bpe, s + sp->start, sp->end - sp->start, true, &e->bpe, &e->ids))) return st;
    }
    return MX_OK;
}

// The Metaspace pre-tokenizer: spaces become the replacement character, which is prepended
// per the scheme; with split, each replacement character starts a new word.
static MxStatus pretok_metaspace(Enc *e, const char *s, size_t n, bool at_origin) {
    const Pretok *p = &e->t->pretok;
    const char *rep = p->ms_rep;
    size_t rl = p->ms_rep_len;
    TokBuf *w = &e->word;
    MxStatus st;
    w->n = 0;
    bool starts = n > 0 && (s[0] == ' ' || (n >= rl && memcmp(s, rep, rl) == 0));
    bool prepend = p->ms_scheme == PREPEND_ALWAYS || (p->ms_scheme == PREPEND_FIRST && at_origin);
    if (prepend && !starts && (st = tokbuf_append(w, rep, rl))) return st;
    if ((st = tokbuf_reserve(w, w->n + n * rl + 1))) return st;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(w->p + w->n, rep, rl);
            w->n += rl;
        } else {
            w->p[w->n++] = s[i];
        }
    }
    if (!p->ms_split) return bpe_word(&e->t->bpe, w->p, w->n, false, &e->bpe, &e->ids);
    size_t start = 0;
    for (size_t i = 0; i + rl <= w->n; i++) { // MergedWithNext: a split before each ▁
        if (i > start && memcmp(w->p + i, rep, rl) == 0) {
            if ((st = bpe_word(&e->t->bpe, w->p + start, i - start, false, &e->bpe, &e->ids))) return st;
            start = i;
        }
    }
    return bpe_word(&e->t->bpe, w->p + start, w->n - start, false, &e->bpe, &e->ids);
}

// Pre-tokenizes s[0..n) from split level `level` on. at_origin: the piece starts at offset 0
// of the original text (Metaspace's prepend_scheme "first").
static MxStatus pretokenize(Enc *e, int level, const char *s, size_t n, bool at_origin) {
    const Pretok *p = &e->t->pretok;
    if (n == 0) return MX_OK;
    if (level < p->n_splits) {
        size_t count = 0;
        MxStatus st = split_spans(e, level, p->split[level], s, n, &count);
        for (size_t i = 0; !st && i < count; i++) {
            const Span *sp = &e->spans[level][i];
            st = pretokenize(e, level + 1, s + sp->start, sp->end - sp->start, at_origin && sp->start == 0);
        }
        return st;
    }
    switch (p->tail) {
    case TAIL_BYTELEVEL: return pretok_bytelevel(e, s, n);
    case TAIL_METASPACE: return pretok_metaspace(e, s, n, at_origin);
    case TAIL_NONE: break;
    }
    return bpe_word(&e->t->bpe, s, n, false, &e->bpe, &e->ids);
}

// One piece of raw text between added tokens, at offset `origin` of the text.
static MxStatus encode_piece(Enc *e, const char *s, size_t n, size_t origin) {
    const Tokenizer *t = e->t;
    MxStatus st;
    const char *ns = s;
    size_t nn = n;
    if (t->n_norm > 0) {
        if ((st = tok_normalize(t, s, n, &e->normed, &e->tmp))) return st;
        ns = e->normed.p;
        nn = e->normed.n;
    }
    e->norm.n = 0;
    if ((st = added_split(t, &t->trie_norm, ns, nn, &e->norm))) return st;
    for (size_t i = 0; i < e->norm.n; i++) {
        const Piece *pc = &e->norm.v[i];
        if (pc->id >= 0) st = idvec_push(&e->ids, pc->id);
        else st = pretokenize(e, 0, ns + pc->start, pc->end - pc->start, origin == 0 && pc->start == 0);
        if (st) return st;
    }
    return MX_OK;
}

// Invalid UTF-8 becomes U+FFFD per maximal subpart, as Python's errors="replace".
static MxStatus sanitize(TokBuf *out, const char *text, size_t len) {
    MxStatus st = tokbuf_reserve(out, 3 * len + 1);
    if (st) return st;
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = utf8_decode(s + i, len - i, &cp);
        if (cp == 0xFFFD) { // invalid bytes, or a real U+FFFD: the same three bytes either way
            out->n += utf8_encode(0xFFFD, out->p + out->n);
        } else {
            memcpy(out->p + out->n, s + i, k);
            out->n += k;
        }
        i += k;
    }
    out->p[out->n] = 0;
    return MX_OK;
}

MxStatus tokenizer_encode(const Tokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids,
                          int *n) {
    *ids = NULL;
    *n = 0;
    if (!t || (!text && len)) return mx_fail(MX_ERR_ARG, "tokenizer_encode: no tokenizer or text");
    if (len > TOKENIZER_MAX_TEXT) return mx_fail(MX_ERR_ARG, "text of %zu bytes is over the %zu-byte limit", len, TOKENIZER_MAX_TEXT);
    Enc e = {.t = t};
    MxStatus st = idvec_reserve(&e.ids, 64 + len / 3);
    if (!st && len && !utf8_valid((const uint8_t *)text, len)) {
        st = sanitize(&e.clean, text, len);
        text = e.clean.p;
        len = e.clean.n;
    }
    if (!st && add_special) {
        for (int i = 0; !st && i < t->n_prefix; i++) st = idvec_push(&e.ids, t->prefix_ids[i]);
    }
    if (!st) st = added_split(t, &t->trie_raw, text, len, &e.raw);
    for (size_t i = 0; !st && i < e.raw.n; i++) {
        const Piece *pc = &e.raw.v[i];
        if (pc->id >= 0) st = idvec_push(&e.ids, pc->id);
        else st = encode_piece(&e, text + pc->start, pc->end - pc->start, pc->start);
    }
    if (!st && add_special) {
        for (int i = 0; !st && i < t->n_suffix; i++) st = idvec_push(&e.ids, t->suffix_ids[i]);
    }
    if (!st && e.ids.n > INT32_MAX) st = mx_fail(MX_ERR_ARG, "more than 2^31 ids");
    if (st) {
        enc_free(&e);
        return st;
    }
    *ids = e.ids.v;
    *n = (int)e.ids.n;
    e.ids.v = NULL;
    enc_free(&e);
    return MX_OK;
}

// ---- accessors ------------------------------------------------------------------------------

int tokenizer_vocab_size(const Tokenizer *t) { return t->vocab.n_ids; }

int32_t tokenizer_bos(const Tokenizer *t) { return t->bos; }

int32_t tokenizer_pad(const Tokenizer *t) { return t->pad; }

int tokenizer_eos(const Tokenizer *t, const int32_t **ids) {
    *ids = t->eos;
    return t->n_eos;
}

const char *tokenizer_token(const Tokenizer *t, int32_t id) {
    return vocab_has(&t->vocab, id) ? vocab_str(&t->vocab, id) : NULL;
}

int32_t tokenizer_find(const Tokenizer *t, const char *token) {
    size_t n = strlen(token);
    int32_t id = strmap_get(&t->added_map, &t->vocab, token, n);
    return id >= 0 ? id : strmap_get(&t->bpe.map, &t->vocab, token, n);
}

bool tokenizer_is_special(const Tokenizer *t, int32_t id) {
    return id >= 0 && id < t->vocab.n_ids && (t->flags[id] & TOKF_SPECIAL);
}
