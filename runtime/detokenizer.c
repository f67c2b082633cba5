// Decoding ids to text, streaming or whole: the tokenizer.json decoder chain run as a chain
// of streaming stages.
//
// tokenizers decodes a list of token strings by passing the whole list through each decoder
// (decode_chain) and joining the result. Here each decoder is a stage that consumes a stream
// of events, "text of the current token" and "the current token ends", and emits such events
// to the next stage as soon as its output is certain; the last stage appends to the output.
// Stages hold back only what a later token could still change: a run of <0xNN> byte tokens
// (ByteFallback decides a whole run at once), an incomplete UTF-8 sequence (ByteLevel), the
// tail of a token that may be the start of a Replace pattern. tokenizer_decode is the same
// machinery run over all ids, so streaming output equals decoding the whole sequence by
// construction. Every piece passed between stages is whole UTF-8 characters.
#include <string.h>

#include "alloc.h"
#include "tokenizer_internal.h"
#include "utf8.h"

typedef struct StageState {
    TokBuf buf;      // Replace: held bytes; ByteFallback: the token so far; ByteLevel: token bytes
    TokBuf aux;      // ByteFallback: the pending byte run; ByteLevel: the raw token text
    TokBuf pending;  // ByteLevel: bytes of an incomplete UTF-8 sequence
    size_t count;    // Strip: characters stripped; Metaspace: token index; join: tokens done
    bool flag;       // ByteFallback: token is not a byte token; Strip: done; ByteLevel: raw
    bool token_open; // join: the current token has had text
} StageState;

struct Detokenizer {
    const Tokenizer *t;
    bool skip_special, finished;
    MxStatus broken; // a failed allocation leaves the stream unusable
    StageState st[MAX_DECODE_STAGES];
    TokBuf out; // text produced by the current call
};

static void feed(Detokenizer *d, int k, const char *s, size_t n);
static void boundary(Detokenizer *d, int k);

static void append(Detokenizer *d, TokBuf *b, const char *s, size_t n) {
    if (!d->broken && tokbuf_append(b, s, n)) d->broken = MX_ERR_NOMEM;
}

static const char replacement_char[] = "\xEF\xBF\xBD";

// ---- Replace: every non-overlapping occurrence of a pattern within a token -----------------

static void replace_feed(Detokenizer *d, int k, const char *s, size_t n) {
    const DecStage *ds = &d->t->dec[k];
    StageState *ss = &d->st[k];
    append(d, &ss->buf, s, n);
    if (d->broken) return;
    size_t i = 0, m = ds->alen;
    while (ss->buf.n - i >= m) {
        const char *p = ss->buf.p + i, *hit = NULL;
        for (size_t j = 0; j + m <= ss->buf.n - i; j++) {
            if (p[j] == ds->a[0] && memcmp(p + j, ds->a, m) == 0) {
                hit = p + j;
                break;
            }
        }
        if (!hit) break;
        if (hit > p) feed(d, k + 1, p, (size_t)(hit - p));
        if (ds->blen) feed(d, k + 1, ds->b, ds->blen);
        i += (size_t)(hit - p) + m;
    }
    // Hold the longest tail that a later piece of this token could complete into a match.
    size_t rest = ss->buf.n - i, hold = rest < m ? rest : m - 1;
    while (hold > 0 && memcmp(ss->buf.p + ss->buf.n - hold, ds->a, hold) != 0) hold--;
    if (rest > hold) feed(d, k + 1, ss->buf.p + i, rest - hold);
    if (hold) memmove(ss->buf.p, ss->buf.p + ss->buf.n - hold, hold);
    ss->buf.n = hold;
}

static void replace_boundary(Detokenizer *d, int k) {
    StageState *ss = &d->st[k];
    if (ss->buf.n) feed(d, k + 1, ss->buf.p, ss->buf.n);
    ss->buf.n = 0;
    boundary(d, k + 1);
}

// ---- ByteFallback: runs of <0xNN> tokens become their bytes, if valid UTF-8 ------------------

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

// As tokenizers: length 6, "<0x" ... ">", and u8::from_str_radix(&token[3..5], 16) succeeds
// (which also takes a leading '+'). Returns the byte or -1.
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
    if (s[3] == '+' && lo >= 0) return lo;
    return hi >= 0 && lo >= 0 ? hi * 16 + lo : -1;
}

// A finished run: one token of its bytes when they are valid UTF-8, else one U+FFFD token per
// byte (tokenizers' ByteFallback, not a lossy decode).
static void fallback_flush(Detokenizer *d, int k) {
    StageState *ss = &d->st[k];
    if (ss->aux.n == 0) return;
    if (utf8_valid((const uint8_t *)ss->aux.p, ss->aux.n)) {
        feed(d, k + 1, ss->aux.p, ss->aux.n);
        boundary(d, k + 1);
    } else {
        for (size_t i = 0; i < ss->aux.n; i++) {
            feed(d, k + 1, replacement_char, 3);
            boundary(d, k + 1);
        }
    }
    ss->aux.n = 0;
}

static void fallback_feed(Detokenizer *d, int k, const char *s, size_t n) {
    StageState *ss = &d->st[k];
    if (ss->flag) {
        feed(d, k + 1, s, n);
        return;
    }
    append(d, &ss->buf, s, n);
    if (ss->buf.n > 6) { // too long for <0xNN>: an ordinary token, streamed from here on
        ss->flag = true;
        fallback_flush(d, k);
        feed(d, k + 1, ss->buf.p, ss->buf.n);
        ss->buf.n = 0;
    }
}

static void fallback_boundary(Detokenizer *d, int k) {
    StageState *ss = &d->st[k];
    if (!ss->flag) {
        int b = byte_token_value(ss->buf.p, ss->buf.n);
        if (b >= 0) {
            char c = (char)b;
            append(d, &ss->aux, &c, 1);
            ss->buf.n = 0;
            return;
        }
        fallback_flush(d, k);
        if (ss->buf.n) feed(d, k + 1, ss->buf.p, ss->buf.n);
    }
    ss->buf.n = 0;
    ss->flag = false;
    boundary(d, k + 1);
}

// ---- Strip: up to `start` leading `content` characters of each token ---------------------------

static void strip_feed(Detokenizer *d, int k, const char *s, size_t n) {
    const DecStage *ds = &d->t->dec[k];
    StageState *ss = &d->st[k];
    size_t i = 0;
    while (!ss->flag && i < n) {
        if (ss->count == (size_t)ds->start || n - i < ds->alen || memcmp(s + i, ds->a, ds->alen) != 0) {
            ss->flag = true;
            break;
        }
        i += ds->alen;
        ss->count++;
    }
    if (i < n) feed(d, k + 1, s + i, n - i);
}

// ---- Metaspace: the replacement character becomes a space, except in the first token ---------

static void metaspace_feed(Detokenizer *d, int k, const char *s, size_t n) {
    const DecStage *ds = &d->t->dec[k];
    bool drop = d->st[k].count == 0 && ds->metaspace_prefix;
    size_t start = 0;
    for (size_t i = 0; i + ds->alen <= n;) {
        if (memcmp(s + i, ds->a, ds->alen) == 0) {
            if (i > start) feed(d, k + 1, s + start, i - start);
            if (!drop) feed(d, k + 1, " ", 1);
            i += ds->alen;
            start = i;
        } else {
            i++;
        }
    }
    if (start < n) feed(d, k + 1, s + start, n - start);
}

// ---- ByteLevel: characters back to bytes, then one lossy UTF-8 string ----------------------------

static void bytelevel_feed(Detokenizer *d, int k, const char *s, size_t n) {
    StageState *ss = &d->st[k];
    append(d, &ss->aux, s, n);
    for (size_t i = 0; i < n && !ss->flag;) {
        uint32_t cp;
        i += utf8_decode((const uint8_t *)s + i, n - i, &cp);
        int b = byte_level_byte(cp);
        if (b < 0) ss->flag = true; // a character outside the map: the token's own bytes
        else {
            char c = (char)b;
            append(d, &ss->buf, &c, 1);
        }
    }
}

static size_t seq_len(uint8_t lead) {
    return lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3 : lead >= 0xF0 && lead <= 0xF4 ? 4 : 1;
}

// Emits the decodable part of ss->pending (invalid bytes as U+FFFD per maximal subpart) and
// keeps an incomplete sequence at the end unless `all`.
static void bytelevel_drain(Detokenizer *d, int k, bool all) {
    StageState *ss = &d->st[k];
    const uint8_t *p = (const uint8_t *)ss->pending.p;
    size_t n = ss->pending.n, i = 0, run = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_decode(p + i, n - i, &cp);
        if (!all && cp == 0xFFFD && i + len == n && len < seq_len(p[i])) break; // may complete later
        if (cp == 0xFFFD && !(len == 3 && p[i] == 0xEF)) {
            if (i > run) feed(d, k + 1, (const char *)p + run, i - run);
            feed(d, k + 1, replacement_char, 3);
            run = i + len;
        }
        i += len;
    }
    if (i > run) feed(d, k + 1, (const char *)p + run, i - run);
    if (n > i) memmove(ss->pending.p, ss->pending.p + i, n - i);
    ss->pending.n = n - i;
}

static void bytelevel_boundary(Detokenizer *d, int k) {
    StageState *ss = &d->st[k];
    const TokBuf *bytes = ss->flag ? &ss->aux : &ss->buf;
    append(d, &ss->pending, bytes->p, bytes->n);
    ss->buf.n = ss->aux.n = 0;
    ss->flag = false;
    if (!d->broken) bytelevel_drain(d, k, false);
}

// ---- no decoder: tokens joined with " " ---------------------------------------------------------

static void join_open(Detokenizer *d, int k) {
    StageState *ss = &d->st[k];
    if (!ss->token_open && ss->count > 0) feed(d, k + 1, " ", 1);
    ss->token_open = true;
}

// ---- the chain ------------------------------------------------------------------------------------

static void feed(Detokenizer *d, int k, const char *s, size_t n) {
    if (d->broken) return;
    if (k == d->t->n_dec) {
        append(d, &d->out, s, n);
        return;
    }
    switch (d->t->dec[k].kind) {
    case DEC_REPLACE: replace_feed(d, k, s, n); break;
    case DEC_BYTEFALLBACK: fallback_feed(d, k, s, n); break;
    case DEC_FUSE: feed(d, k + 1, s, n); break;
    case DEC_STRIP: strip_feed(d, k, s, n); break;
    case DEC_METASPACE: metaspace_feed(d, k, s, n); break;
    case DEC_BYTELEVEL: bytelevel_feed(d, k, s, n); break;
    case DEC_JOIN_SPACE:
        join_open(d, k);
        feed(d, k + 1, s, n);
        break;
    }
}

static void boundary(Detokenizer *d, int k) {
    if (d->broken || k == d->t->n_dec) return;
    StageState *ss = &d->st[k];
    switch (d->t->dec[k].kind) {
    case DEC_REPLACE: replace_boundary(d, k); break;
    case DEC_BYTEFALLBACK: fallback_boundary(d, k); break;
    case DEC_FUSE: break; // one token in the end, at finish
    case DEC_BYTELEVEL: bytelevel_boundary(d, k); break;
    case DEC_STRIP:
        ss->count = 0;
        ss->flag = false;
        boundary(d, k + 1);
        break;
    case DEC_METASPACE:
        ss->count++;
        boundary(d, k + 1);
        break;
    case DEC_JOIN_SPACE:
        join_open(d, k);
        ss->count++;
        ss->token_open = false;
        boundary(d, k + 1);
        break;
    }
}

// End of the stream: stages that merge tokens emit their one token.
static void finish(Detokenizer *d, int k) {
    if (d->broken || k == d->t->n_dec) return;
    switch (d->t->dec[k].kind) {
    case DEC_BYTEFALLBACK: fallback_flush(d, k); break;
    case DEC_FUSE: boundary(d, k + 1); break;
    case DEC_BYTELEVEL:
        bytelevel_drain(d, k, true);
        boundary(d, k + 1);
        break;
    default: break;
    }
    finish(d, k + 1);
}

// ---- API ------------------------------------------------------------------------------------------

MxStatus detokenizer_new(const Tokenizer *t, bool skip_special, Detokenizer **out) {
    *out = NULL;
    if (!t) return mx_fail(MX_ERR_ARG, "detokenizer_new: no tokenizer");
    Detokenizer *d = mx_calloc(1, sizeof *d);
    if (!d) return mx_fail(MX_ERR_NOMEM, "detokenizer");
    d->t = t;
    d->skip_special = skip_special;
    *out = d;
    return MX_OK;
}

void detokenizer_free(Detokenizer *d) {
    if (!d) return;
    for (int k = 0; k < MAX_DECODE_STAGES; k++) {
        tokbuf_free(&d->st[k].buf);
        tokbuf_free(&d->st[k].aux);
        tokbuf_free(&d->st[k].pending);
    }
    tokbuf_free(&d->out);
    mx_free(d);
}

static MxStatus result(Detokenizer *d, const char **text, size_t *len) {
    if (d->broken) {
        *text = "";
        *len = 0;
        return mx_fail(d->broken, "detokenizer buffers");
    }
    *text = d->out.p ? d->out.p : "";
    *len = d->out.n;
    return MX_OK;
}

MxStatus detokenizer_push(Detokenizer *d, int32_t id, const char **text, size_t *len) {
    *text = "";
    *len = 0;
    if (d->broken) return mx_fail(d->broken, "detokenizer is unusable after an earlier failure");
    if (d->finished) return mx_fail(MX_ERR_ARG, "detokenizer_push after detokenizer_finish");
    const Tokenizer *t = d->t;
    if (id < 0 || id >= t->id_limit) return mx_fail(MX_ERR_TOKEN, "id %d is outside [0, %d)", id, t->id_limit);
    d->out.n = 0;
    if (d->out.p) d->out.p[0] = 0;
    // Ids without a token (gaps, or model rows past the tokenizer) decode to nothing, as in
    // tokenizers; so do special tokens when skipping them.
    if (vocab_has(&t->vocab, id) && !(d->skip_special && (t->flags[id] & TOKF_SKIP))) {
        size_t n;
        const char *s = tok_decode_string(t, id, &n);
        feed(d, 0, s, n);
        boundary(d, 0);
    }
    return result(d, text, len);
}

MxStatus detokenizer_finish(Detokenizer *d, const char **text, size_t *len) {
    *text = "";
    *len = 0;
    if (d->broken) return mx_fail(d->broken, "detokenizer is unusable after an earlier failure");
    if (d->finished) return MX_OK;
    d->finished = true;
    d->out.n = 0;
    if (d->out.p) d->out.p[0] = 0;
    finish(d, 0);
    return result(d, text, len);
}

MxStatus tokenizer_decode(const Tokenizer *t, const int32_t *ids, int n, bool skip_special, char **text,
                          size_t *len) {
    *text = NULL;
    *len = 0;
    if (!t || n < 0 || (!ids && n > 0)) return mx_fail(MX_ERR_ARG, "tokenizer_decode: bad arguments");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->id_limit)
            return mx_fail(MX_ERR_TOKEN, "id %d at position %d is outside [0, %d)", ids[i], i, t->id_limit);
    Detokenizer *d;
    MxStatus st = detokenizer_new(t, skip_special, &d);
    if (st) return st;
    TokBuf all = {0};
    const char *piece;
    size_t plen;
    st = tokbuf_append(&all, "", 0);
    for (int i = 0; !st && i <= n; i++) {
        st = i < n ? detokenizer_push(d, ids[i], &piece, &plen) : detokenizer_finish(d, &piece, &plen);
        if (!st) st = tokbuf_append(&all, piece, plen);
    }
    detokenizer_free(d);
    if (st) {
        tokbuf_free(&all);
        return st;
    }
    *text = all.p;
    *len = all.n;
    return MX_OK;
}
