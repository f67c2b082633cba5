// Byte-pair encoding (see bpe.h): token table, open-addressing maps, and the merge loop.
//
// The merge loop is the one of Hugging Face `tokenizers` (model/bpe/word.rs): the word's
// symbols form a doubly linked list, candidate merges sit in a binary min-heap ordered by
// (rank, position), and an entry whose pair has changed since it was pushed is skipped when
// popped. O(n log n) per word, so a 1 MB word (SentencePiece tokenizers without a
// pre-tokenizer see the whole text as one word) costs milliseconds, not hours.
#include "bpe.h"

#include <string.h>

#include "alloc.h"
#include "pretokenize.h"
#include "utf8.h"

// ---- token table ----------------------------------------------------------------------------

MxStatus vocab_init(Vocab *v, int n_ids, size_t bytes) {
    memset(v, 0, sizeof *v);
    size_t n = n_ids > 0 ? (size_t)n_ids : 1;
    v->off = mx_malloc(n * sizeof *v->off);
    v->len = mx_calloc(n, sizeof *v->len);
    v->cap = bytes + 1;
    v->arena = mx_malloc(v->cap);
    if (!v->off || !v->len || !v->arena) {
        vocab_free(v);
        return mx_fail(MX_ERR_NOMEM, "token table of %d ids", n_ids);
    }
    memset(v->off, 0xFF, n * sizeof *v->off); // every id starts as a hole
    v->n_ids = n_ids;
    return MX_OK;
}

MxStatus vocab_set(Vocab *v, int32_t id, const char *s, size_t n) {
    MX_ASSERT(id >= 0 && id < v->n_ids && v->off[id] == VOCAB_NO_TOKEN);
    if (n + 1 > v->cap - v->used) {
        size_t cap = v->cap * 2 > v->used + n + 1 ? v->cap * 2 : v->used + n + 1;
        if (cap > UINT32_MAX) return mx_fail(MX_ERR_TOKENIZER_VOCAB, "token strings exceed 4 GB");
        char *a = mx_realloc(v->arena, cap);
        if (!a) return mx_fail(MX_ERR_NOMEM, "token strings");
        v->arena = a;
        v->cap = cap;
    }
    memcpy(v->arena + v->used, s, n);
    v->arena[v->used + n] = 0;
    v->off[id] = (uint32_t)v->used;
    v->len[id] = (uint32_t)n;
    v->used += n + 1;
    return MX_OK;
}

void vocab_free(Vocab *v) {
    mx_free(v->arena);
    mx_free(v->off);
    mx_free(v->len);
    memset(v, 0, sizeof *v);
}

// ---- hashing and the string map ---------------------------------------------------------------

uint32_t bpe_hash(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        h = (h ^ x) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t x = 0;
    memcpy(&x, s, n);
    h = (h ^ x) * 0x94D049BB133111EBull;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    return (uint32_t)(h >> 32);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

MxStatus strmap_init(StrMap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    if (expected > (1u << 29)) return mx_fail(MX_ERR_TOKENIZER_VOCAB, "%zu tokens", expected);
    size_t cap = pow2_at_least(expected * 2 + 1);
    m->slots = mx_malloc(cap * sizeof *m->slots);
    if (!m->slots) return mx_fail(MX_ERR_NOMEM, "token map of %zu slots", cap);
    for (size_t i = 0; i < cap; i++) m->slots[i] = (StrSlot){0, -1};
    m->mask = (uint32_t)(cap - 1);
    return MX_OK;
}

void strmap_free(StrMap *m) {
    mx_free(m->slots);
    memset(m, 0, sizeof *m);
}

int32_t strmap_get(const StrMap *m, const Vocab *v, const char *s, size_t n) {
    if (!m->slots) return -1;
    uint32_t h = bpe_hash(s, n);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const StrSlot *sl = &m->slots[i];
        if (sl->id < 0) return -1;
        if (sl->hash == h && v->len[sl->id] == n && memcmp(vocab_str(v, sl->id), s, n) == 0) return sl->id;
    }
}

int32_t strmap_put(StrMap *m, const Vocab *v, int32_t id) {
    const char *s = vocab_str(v, id);
    size_t n = v->len[id];
    uint32_t h = bpe_hash(s, n);
    MX_ASSERT((size_t)m->count * 2 < (size_t)m->mask + 1);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        StrSlot *sl = &m->slots[i];
        if (sl->id < 0) {
            *sl = (StrSlot){h, id};
            m->count++;
            return -1;
        }
        if (sl->hash == h && v->len[sl->id] == n && memcmp(vocab_str(v, sl->id), s, n) == 0) return sl->id;
    }
}

// ---- merge map ------------------------------------------------------------------------------

MxStatus mergemap_init(MergeMap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    if (expected > (1u << 28)) return mx_fail(MX_ERR_TOKENIZER_MERGES, "%zu merges", expected);
    size_t cap = pow2_at_least(expected * 2 + 1);
    m->slots = mx_malloc(cap * sizeof *m->slots);
    if (!m->slots) return mx_fail(MX_ERR_NOMEM, "merge map of %zu slots", cap);
    for (size_t i = 0; i < cap; i++) m->slots[i].key = UINT64_MAX;
    m->mask = cap - 1;
    return MX_OK;
}

void mergemap_free(MergeMap *m) {
    mx_free(m->slots);
    memset(m, 0, sizeof *m);
}

void mergemap_put(MergeMap *m, int32_t left, int32_t right, uint32_t rank, int32_t id) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    MX_ASSERT(m->count * 2 < m->mask + 1);
    for (uint64_t i = (h >> 20) & m->mask;; i = (i + 1) & m->mask) {
        MergeSlot *s = &m->slots[i];
        if (s->key == UINT64_MAX) m->count++;
        if (s->key == UINT64_MAX || s->key == key) {
            *s = (MergeSlot){key, rank, id};
            return;
        }
    }
}

// ---- model tables ---------------------------------------------------------------------------

static inline uint64_t pair_key(uint32_t a, uint32_t b) { return (uint64_t)a << 21 | b; }

static inline size_t pair_slot(uint64_t key, size_t mask) { return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 24) & mask; }

static bool pair_known(const BpeModel *m, uint32_t a, uint32_t b) {
    uint64_t key = pair_key(a, b);
    for (size_t i = pair_slot(key, m->pair_mask);; i = (i + 1) & m->pair_mask) {
        if (m->pairs[i] == key) return true;
        if (m->pairs[i] == UINT64_MAX) return false;
    }
}

static MxStatus pair_add(BpeModel *m, uint64_t key) {
    if ((m->n_pairs + 1) * 2 > m->pair_mask + 1) {
        size_t cap = m->pairs ? 2 * (m->pair_mask + 1) : 1024;
        uint64_t *p = mx_malloc(cap * sizeof *p);
        if (!p) return mx_fail(MX_ERR_NOMEM, "character pair set");
        for (size_t i = 0; i < cap; i++) p[i] = UINT64_MAX;
        for (size_t i = 0; m->pairs && i <= m->pair_mask; i++) {
            if (m->pairs[i] == UINT64_MAX) continue;
            size_t j = pair_slot(m->pairs[i], cap - 1);
            while (p[j] != UINT64_MAX) j = (j + 1) & (cap - 1);
            p[j] = m->pairs[i];
        }
        mx_free(m->pairs);
        m->pairs = p;
        m->pair_mask = cap - 1;
    }
    size_t i = pair_slot(key, m->pair_mask);
    while (m->pairs[i] != UINT64_MAX && m->pairs[i] != key) i = (i + 1) & m->pair_mask;
    if (m->pairs[i] == UINT64_MAX) {
        m->pairs[i] = key;
        m->n_pairs++;
    }
    return MX_OK;
}

void bpe_model_free(BpeModel *m) {
    strmap_free(&m->map);
    mergemap_free(&m->merges);
    mx_free(m->pairs);
    m->pairs = NULL;
}

MxStatus bpe_prepare(BpeModel *m) {
    const StrSlot *slots = m->map.slots;
    for (uint32_t i = 0; i <= m->map.mask; i++) {
        if (slots[i].id < 0) continue;
        const uint8_t *s = (const uint8_t *)vocab_str(m->vocab, slots[i].id);
        size_t n = m->vocab->len[slots[i].id];
        uint32_t prev = UINT32_MAX, cp;
        for (size_t k = 0; k < n; prev = cp) {
            k += utf8_decode(s + k, n - k, &cp);
            MxStatus st = prev != UINT32_MAX ? pair_add(m, pair_key(prev, cp)) : MX_OK;
            if (st) return st;
        }
    }
    if (!m->pairs && pair_add(m, pair_key(0x10FFFF, 0x10FFFF))) return mx_fail(MX_ERR_NOMEM, "character pair set");
    char buf[8];
    for (int b = 0; b < 256; b++) {
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        m->byte_token[b] = strmap_get(&m->map, m->vocab, buf, 6);
        m->bl_len[b] = (uint8_t)utf8_encode(byte_level_char((uint8_t)b), m->bl_utf8[b]);
        m->bl_id[b] = strmap_get(&m->map, m->vocab, m->bl_utf8[b], m->bl_len[b]);
    }
    for (uint32_t cp = 0; cp < 0x800; cp++) {
        size_t n = utf8_encode(cp, buf);
        m->small_cp_id[cp] = strmap_get(&m->map, m->vocab, buf, n);
    }
    return MX_OK;
}

// ---- id vector ------------------------------------------------------------------------------

MxStatus idvec_reserve(IdVec *v, size_t extra) {
    if (extra <= v->cap - v->n) return MX_OK;
    size_t cap = v->cap ? v->cap : 64;
    while (cap - v->n < extra) {
        if (cap > (SIZE_MAX / sizeof *v->v) / 2) return mx_fail(MX_ERR_NOMEM, "id list");
        cap *= 2;
    }
    int32_t *p = mx_realloc(v->v, cap * sizeof *p);
    if (!p) return mx_fail(MX_ERR_NOMEM, "id list of %zu", cap);
    v->v = p;
    v->cap = cap;
    return MX_OK;
}

MxStatus idvec_push(IdVec *v, int32_t id) {
    if (v->n == v->cap) {
        MxStatus st = idvec_reserve(v, 1);
        if (st) return st;
    }
    v->v[v->n++] = id;
    return MX_OK;
}

// ---- the merge loop -------------------------------------------------------------------------

typedef struct BpeSym {
    int32_t id; // -1 once merged into its left neighbour
    int32_t prev, next;
} BpeSym;

typedef struct BpeHeapEntry {
    uint32_t rank, pos;
    int32_t id; // the merged token's id
} BpeHeapEntry;

static inline bool heap_less(const BpeHeapEntry *a, const BpeHeapEntry *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(BpeHeapEntry *h, size_t *n, BpeHeapEntry e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static BpeHeapEntry heap_pop(BpeHeapEntry *h, size_t *n) {
    BpeHeapEntry top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m > 0) h[i] = last;
    return top;
}

static void push_pair(const BpeModel *m, BpeSym *sym, BpeHeapEntry *heap, size_t *nh, int32_t pos) {
    const MergeSlot *ms = mergemap_get(&m->merges, sym[pos].id, sym[sym[pos].next].id);
    if (ms) heap_push(heap, nh, (BpeHeapEntry){ms->rank, (uint32_t)pos, ms->id});
}

// Applies merges to sym[0..n) (a linked list in array order) until none applies.
static void bpe_merge(const BpeModel *m, BpeSym *sym, int32_t n, BpeHeapEntry *heap) {
    size_t nh = 0;
    for (int32_t i = 0; i + 1 < n; i++) push_pair(m, sym, heap, &nh, i);
    while (nh > 0) {
        BpeHeapEntry top = heap_pop(heap, &nh);
        BpeSym *s = &sym[top.pos];
        if (s->id < 0 || s->next < 0) continue;
        int32_t right = s->next;
        // A stale entry: this position's pair has changed since it was pushed.
        const MergeSlot *ms = mergemap_get(&m->merges, s->id, sym[right].id);
        if (!ms || ms->id != top.id) continue;
        s->id = top.id;
        s->next = sym[right].next;
        sym[right].id = -1;
        if (s->next >= 0) sym[s->next].prev = (int32_t)top.pos;
        if (s->prev >= 0) push_pair(m, sym, heap, &nh, s->prev);
        if (s->next >= 0) push_pair(m, sym, heap, &nh, (int32_t)top.pos);
    }
}

static MxStatus reserve_syms(BpeScratch *s, size_t nsym) {
    if (nsym > INT32_MAX / 4) return mx_fail(MX_ERR_NOMEM, "word of %zu symbols", nsym);
    if (nsym <= s->sym_cap) return MX_OK;
    size_t cap = nsym < 256 ? 256 : nsym + nsym / 2;
    BpeSym *p = mx_realloc(s->sym, cap * sizeof *p);
    if (!p) return mx_fail(MX_ERR_NOMEM, "BPE symbols");
    s->sym = p;
    uint32_t *c = mx_realloc(s->cp, cap * sizeof *c);
    if (!c) return mx_fail(MX_ERR_NOMEM, "BPE symbols");
    s->cp = c;
    s->sym_cap = cap;
    return MX_OK;
}

// Each merge pushes at most two entries on top of the n - 1 initial ones.
static MxStatus reserve_heap(BpeScratch *s, size_t nsym) {
    size_t nheap = 3 * nsym + 1;
    if (nheap <= s->heap_cap) return MX_OK;
    size_t cap = nheap < 768 ? 768 : nheap + nheap / 2;
    BpeHeapEntry *p = mx_realloc(s->heap, cap * sizeof *p);
    if (!p) return mx_fail(MX_ERR_NOMEM, "BPE heap");
    s->heap = p;
    s->heap_cap = cap;
    return MX_OK;
}

void bpe_scratch_free(BpeScratch *s) {
    mx_free(s->sym);
    mx_free(s->cp);
    mx_free(s->heap);
    mx_free(s->mapped);
    memset(s, 0, sizeof *s);
}

static inline size_t utf8_len_of_lead(uint8_t c) {
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

// ignore_merges: a word that is itself a vocab token is that token, merges or not.
static int32_t whole_word_id(const BpeModel *m, const char *w, size_t n, bool byte_level, BpeScratch *s,
                             MxStatus *st) {
    *st = MX_OK;
    if (!byte_level) return strmap_get(&m->map, m->vocab, w, n);
    if (n > SIZE_MAX / 4 - 1) return -1;
    if (4 * n > s->mapped_cap) {
        char *p = mx_realloc(s->mapped, 4 * n);
        if (!p) {
            *st = mx_fail(MX_ERR_NOMEM, "byte-level word");
            return -1;
        }
        s->mapped = p;
        s->mapped_cap = 4 * n;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)w[i];
        memcpy(s->mapped + k, m->bl_utf8[b], m->bl_len[b]);
        k += m->bl_len[b];
    }
    return strmap_get(&m->map, m->vocab, s->mapped, k);
}

// Words at least this long are cut into segments no merge can cross (see BpeModel.pairs).
#define SEGMENT_MIN_SYMBOLS 32

MxStatus bpe_word(const BpeModel *m, const char *w, size_t n, bool byte_level, BpeScratch *s, IdVec *out) {
    if (n == 0) return MX_OK;
    MxStatus st;
    if (m->ignore_merges) {
        int32_t id = whole_word_id(m, w, n, byte_level, s, &st);
        if (st) return st;
        if (id >= 0) return idvec_push(out, id);
    }
    // One symbol per character, plus one for a pending unk; more only when a byte-level
    // character (2-byte UTF-8) falls back to <0xNN> tokens, which grows the arrays.
    if ((st = reserve_syms(s, n + 1))) return st;
    BpeSym *sym = s->sym;
    uint32_t *sym_cp = s->cp;
    int32_t nsym = 0;
    bool unk_pending = false;
#define ADD_SYM(x, c)                                                                        \
    do {                                                                                     \
        sym[nsym].id = (x);                                                                  \
        sym_cp[nsym++] = (c);                                                                \
    } while (0)
    for (size_t i = 0; i < n;) {
        const uint8_t *c = (const uint8_t *)w + i;
        const uint8_t *cs; // the character's UTF-8 as the vocab spells it
        size_t clen;
        int32_t id;
        uint32_t cp;
        if (byte_level) {
            cs = (const uint8_t *)m->bl_utf8[*c];
            clen = m->bl_len[*c];
            id = m->bl_id[*c];
            cp = byte_level_char(*c);
            i++;
        } else {
            cs = c;
            clen = utf8_len_of_lead(*c);
            if (clen > n - i) clen = n - i; // cannot happen on valid UTF-8
            if (clen == 1) {
                cp = *c;
                id = m->small_cp_id[cp];
            } else if (clen == 2) {
                cp = ((uint32_t)(c[0] & 0x1F) << 6) | (c[1] & 0x3F);
                id = m->small_cp_id[cp];
            } else {
                utf8_decode(c, clen, &cp);
                id = strmap_get(&m->map, m->vocab, (const char *)c, clen);
            }
            i += clen;
        }
        if (id >= 0) {
            if (unk_pending) ADD_SYM(m->unk_id, UINT32_MAX);
            unk_pending = false;
            ADD_SYM(id, cp);
            continue;
        }
        if (m->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < clen; k++) all = all && m->byte_token[cs[k]] >= 0;
            if (all) { // as tokenizers: a pending unk is not flushed before the bytes
                if ((size_t)nsym + clen + 1 + (n - i) > s->sym_cap) {
                    if ((st = reserve_syms(s, (size_t)nsym + clen + 1 + (n - i)))) return st;
                    sym = s->sym;
                    sym_cp = s->cp;
                }
                for (size_t k = 0; k < clen; k++) ADD_SYM(m->byte_token[cs[k]], UINT32_MAX);
                continue;
            }
        }
        if (m->unk_id >= 0) {
            if (unk_pending && !m->fuse_unk) ADD_SYM(m->unk_id, UINT32_MAX);
            unk_pending = true;
        } // no unk token: the character is dropped, as tokenizers does
    }
    if (unk_pending) ADD_SYM(m->unk_id, UINT32_MAX);
#undef ADD_SYM
    if (nsym == 0) return MX_OK;
    if ((st = idvec_reserve(out, (size_t)nsym))) return st;
    // Merge segment by segment; a boundary needs two plain characters that never meet in a
    // vocab token (byte-fallback and unk symbols never start or end a segment).
    for (int32_t seg = 0; seg < nsym;) {
        int32_t end = seg + 1;
        if (nsym >= SEGMENT_MIN_SYMBOLS) {
            while (end < nsym && (sym_cp[end - 1] == UINT32_MAX || sym_cp[end] == UINT32_MAX ||
                                  pair_known(m, sym_cp[end - 1], sym_cp[end])))
                end++;
        } else {
            end = nsym;
        }
        BpeSym *g = sym + seg;
        int32_t len = end - seg;
        if (len > 1 && (st = reserve_heap(s, (size_t)len))) return st;
        for (int32_t k = 0; k < len; k++) {
            g[k].prev = k - 1;
            g[k].next = k + 1 < len ? k + 1 : -1;
        }
        if (len > 1) bpe_merge(m, g, len, s->heap);
        for (int32_t k = 0; k >= 0; k = g[k].next) out->v[out->n++] = g[k].id;
        seg = end;
    }
    return MX_OK;
}
