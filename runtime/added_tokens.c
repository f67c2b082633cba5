// Finding added tokens in text: a byte trie searched leftmost-longest, then tokenizers'
// single_word / lstrip / rstrip rules (AddedVocabulary::find_matches in added_vocabulary.rs).
//
// Cost: at each text position where some pattern's first byte occurs, one walk down the trie
// of at most max_len steps, so O(n * longest added token) on any input (added tokens are
// short; the longest real ones are a few dozen bytes).
#include <string.h>

#include "alloc.h"
#include "tokenizer_internal.h"
#include "utf8.h"

// ---- trie -----------------------------------------------------------------------------------

MxStatus trie_init(AddedTrie *t) {
    memset(t, 0, sizeof *t);
    t->cap_nodes = 16;
    t->term = mx_malloc(t->cap_nodes * sizeof *t->term);
    t->edge_mask = 31;
    t->edges = mx_malloc((t->edge_mask + 1) * sizeof *t->edges);
    if (!t->term || !t->edges) {
        trie_free(t);
        return mx_fail(MX_ERR_NOMEM, "added-token trie");
    }
    for (uint32_t i = 0; i <= t->edge_mask; i++) t->edges[i].node = UINT32_MAX;
    t->term[0] = -1;
    t->n_nodes = 1;
    return MX_OK;
}

void trie_free(AddedTrie *t) {
    mx_free(t->term);
    mx_free(t->edges);
    memset(t, 0, sizeof *t);
}

static inline uint32_t edge_hash(uint32_t node, uint8_t byte) {
    return (uint32_t)(((uint64_t)node * 256 + byte) * 0x9E3779B97F4A7C15ull >> 32);
}

static inline uint32_t trie_child(const AddedTrie *t, uint32_t node, uint8_t byte) {
    for (uint32_t i = edge_hash(node, byte) & t->edge_mask;; i = (i + 1) & t->edge_mask) {
        const TrieEdge *e = &t->edges[i];
        if (e->node == node && e->byte == byte) return e->child;
        if (e->node == UINT32_MAX) return 0; // the root is nobody's child
    }
}

static void edge_insert(TrieEdge *edges, uint32_t mask, TrieEdge e) {
    uint32_t i = edge_hash(e.node, e.byte) & mask;
    while (edges[i].node != UINT32_MAX) i = (i + 1) & mask;
    edges[i] = e;
}

static MxStatus trie_new_child(AddedTrie *t, uint32_t node, uint8_t byte, uint32_t *child) {
    if (t->n_nodes == t->cap_nodes) {
        if (t->cap_nodes > (1u << 28)) return mx_fail(MX_ERR_TOKENIZER_ADDED, "added tokens too long");
        int32_t *p = mx_realloc(t->term, 2 * t->cap_nodes * sizeof *p);
        if (!p) return mx_fail(MX_ERR_NOMEM, "added-token trie");
        t->term = p;
        t->cap_nodes *= 2;
    }
    if ((t->n_edges + 1) * 2 > t->edge_mask + 1) { // rehash into twice the slots
        uint32_t mask = t->edge_mask * 2 + 1;
        TrieEdge *e = mx_malloc(((size_t)mask + 1) * sizeof *e);
        if (!e) return mx_fail(MX_ERR_NOMEM, "added-token trie");
        for (uint32_t i = 0; i <= mask; i++) e[i].node = UINT32_MAX;
        for (uint32_t i = 0; i <= t->edge_mask; i++)
            if (t->edges[i].node != UINT32_MAX) edge_insert(e, mask, t->edges[i]);
        mx_free(t->edges);
        t->edges = e;
        t->edge_mask = mask;
    }
    *child = t->n_nodes++;
    t->term[*child] = -1;
    edge_insert(t->edges, t->edge_mask, (TrieEdge){node, byte, *child});
    t->n_edges++;
    return MX_OK;
}

MxStatus trie_add(AddedTrie *t, const char *s, size_t n, int32_t tok) {
    MX_ASSERT(n > 0);
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = trie_child(t, node, (uint8_t)s[i]);
        if (!c) {
            MxStatus st = trie_new_child(t, node, (uint8_t)s[i], &c);
            if (st) return st;
        }
        node = c;
    }
    if (t->term[node] < 0) t->term[node] = tok;
    t->first[(uint8_t)s[0]] = 1;
    if (n > t->max_len) t->max_len = n;
    return MX_OK;
}

// Length of the longest pattern starting at s[i], 0 if none; *tok its token index.
static size_t trie_longest(const AddedTrie *t, const uint8_t *s, size_t n, size_t i, int32_t *tok) {
    size_t best = 0, end = n - i < t->max_len ? n : i + t->max_len;
    uint32_t node = 0;
    for (size_t j = i; j < end; j++) {
        node = trie_child(t, node, s[j]);
        if (!node) break;
        if (t->term[node] >= 0) {
            best = j + 1 - i;
            *tok = t->term[node];
        }
    }
    return best;
}

// ---- splitting ------------------------------------------------------------------------------

static MxStatus piece_push(PieceVec *v, size_t start, size_t end, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 32;
        Piece *p = mx_realloc(v->v, cap * sizeof *p);
        if (!p) return mx_fail(MX_ERR_NOMEM, "text pieces");
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = (Piece){start, end, id};
    return MX_OK;
}

// The code point of the character ending at s[end) (end > 0) and where it starts.
static uint32_t char_before(const uint8_t *s, size_t end, size_t *start) {
    size_t j = end - 1;
    while (j > 0 && end - j < 4 && (s[j] & 0xC0) == 0x80) j--;
    uint32_t cp;
    utf8_decode(s + j, end - j, &cp);
    *start = j;
    return cp;
}

// Start of the run of whitespace that ends s[0..end) (regex \s*$).
static size_t space_run_before(const uint8_t *s, size_t end) {
    while (end > 0) {
        size_t j;
        if (!unicode_is_whitespace(char_before(s, end, &j))) break;
        end = j;
    }
    return end;
}

// Length of the run of whitespace that starts s[i..n) (regex ^\s*).
static size_t space_run_after(const uint8_t *s, size_t n, size_t i) {
    size_t k = i;
    while (k < n) {
        uint32_t cp;
        size_t len = utf8_decode(s + k, n - k, &cp);
        if (!unicode_is_whitespace(cp)) break;
        k += len;
    }
    return k - i;
}

MxStatus added_split(const Tokenizer *t, const AddedTrie *trie, const char *text, size_t n, PieceVec *out) {
    const uint8_t *s = (const uint8_t *)text;
    size_t start_offset = 0;
    MxStatus st;
    if (trie->n_nodes > 1) {
        for (size_t i = 0; i < n;) {
            if (!trie->first[s[i]]) {
                i++;
                continue;
            }
            int32_t tok = -1;
            size_t len = trie_longest(trie, s, n, i, &tok);
            if (len == 0) {
                i++;
                continue;
            }
            // The next search resumes after this match, even when the rules below drop it.
            size_t start = i, stop = i + len;
            i = stop;
            const AddedToken *a = &t->added[tok];
            if (a->single_word) {
                size_t j;
                bool start_space = start == 0 || !tok_is_word_char(char_before(s, start, &j));
                uint32_t next = 0;
                if (stop < n) utf8_decode(s + stop, n - stop, &next);
                bool stop_space = stop == n || !tok_is_word_char(next);
                if (!start_space || !stop_space) continue;
            }
            if (a->lstrip) {
                size_t ns = space_run_before(s, start);
                start = ns > start_offset ? ns : start_offset;
            }
            if (a->rstrip) stop += space_run_after(s, n, stop);
            if (start_offset < start && (st = piece_push(out, start_offset, start, -1))) return st;
            // An lstrip clipped by an earlier rstrip can leave nothing: tokenizers drops such
            // an empty split, token and all.
            if (start < stop && (st = piece_push(out, start, stop, a->id))) return st;
            start_offset = stop;
        }
    }
    if (start_offset < n && (st = piece_push(out, start_offset, n, -1))) return st;
    return MX_OK;
}
