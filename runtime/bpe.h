// Byte-pair encoding: the token table, hash maps over it, and the merge loop of the Hugging
// Face `tokenizers` BPE model (lowest merge rank first, leftmost among equal ranks).
//
// The token table owns every token string once, indexed by id; the maps store ids and compare
// against that table, so a lookup costs one hash and usually one memcmp.
#ifndef MYRMEX_BPE_H
#define MYRMEX_BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

// ---- token table: id -> string -------------------------------------------------------------

#define VOCAB_NO_TOKEN UINT32_MAX

typedef struct Vocab {
    char *arena;      // NUL-terminated token strings back to back
    size_t used, cap; // bytes of arena in use / allocated
    uint32_t *off;    // (n_ids) arena offset of each id's string; VOCAB_NO_TOKEN for a hole
    uint32_t *len;    // (n_ids) byte length
    int n_ids;        // highest id + 1
} Vocab;

// Sizes the table for ids [0, n_ids) and about `bytes` bytes of strings. MX_ERR_NOMEM.
MxStatus vocab_init(Vocab *v, int n_ids, size_t bytes);
// Stores s[0..n) as the string of id (which must be < n_ids and still a hole).
MxStatus vocab_set(Vocab *v, int32_t id, const char *s, size_t n);
void vocab_free(Vocab *v);

static inline bool vocab_has(const Vocab *v, int32_t id) {
    return id >= 0 && id < v->n_ids && v->off[id] != VOCAB_NO_TOKEN;
}
static inline const char *vocab_str(const Vocab *v, int32_t id) { return v->arena + v->off[id]; }

// ---- string -> id map ----------------------------------------------------------------------

typedef struct StrSlot {
    uint32_t hash;
    int32_t id; // -1: empty
} StrSlot;

typedef struct StrMap {
    StrSlot *slots;
    uint32_t mask; // capacity - 1 (capacity is a power of two, at most half full)
    uint32_t count;
} StrMap;

uint32_t bpe_hash(const void *s, size_t n);
MxStatus strmap_init(StrMap *m, size_t expected);
void strmap_free(StrMap *m);
// The id whose string in v is s[0..n), or -1.
int32_t strmap_get(const StrMap *m, const Vocab *v, const char *s, size_t n);
// Adds id (its string already in v). Returns -1 when added, or the id already holding that
// string (nothing changes then). The map never grows: size it with strmap_init.
int32_t strmap_put(StrMap *m, const Vocab *v, int32_t id);

// ---- (left id, right id) -> (rank, merged id) -------------------------------------------------

typedef struct MergeSlot {
    uint64_t key; // left << 32 | right; UINT64_MAX: empty
    uint32_t rank;
    int32_t id;
} MergeSlot;

typedef struct MergeMap {
    MergeSlot *slots;
    uint64_t mask;
    size_t count;
} MergeMap;

MxStatus mergemap_init(MergeMap *m, size_t expected);
void mergemap_free(MergeMap *m);
// Inserts or overwrites (a later duplicate merge wins, as in tokenizers' HashMap).
void mergemap_put(MergeMap *m, int32_t left, int32_t right, uint32_t rank, int32_t id);

static inline const MergeSlot *mergemap_get(const MergeMap *m, int32_t left, int32_t right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    for (uint64_t i = (h >> 20) & m->mask;; i = (i + 1) & m->mask) {
        const MergeSlot *s = &m->slots[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
    }
}

// ---- the model -----------------------------------------------------------------------------

typedef struct BpeModel {
    const Vocab *vocab;   // the tokenizer's table (model vocab + added tokens)
    StrMap map;           // model vocab only: string -> id
    MergeMap merges;
    int32_t unk_id;       // -1: no unk token
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_token[256]; // id of "<0xNN>" in the model vocab, or -1
    // Byte-level words: byte b stands for the character byte_level_char(b), whose UTF-8 is
    // bl_utf8[b][0..bl_len[b]) and whose id (if in the vocab) is bl_id[b] (-1 if not).
    int32_t bl_id[256];
    char bl_utf8[256][4];
    uint8_t bl_len[256];
    // Ids of the code points below 0x800 as one-character tokens (-1: not in the vocab).
    int32_t small_cp_id[0x800];
    // Every pair of characters (a << 21 | b) that occurs side by side in some vocab token.
    // Where two characters of a word form no such pair, no merge can ever join them, so a
    // long word is merged as independent segments (same result, much less heap traffic).
    uint64_t *pairs; // open addressing, UINT64_MAX empty
    size_t pair_mask, n_pairs;
} BpeModel;

// Fills the lookup tables of a model whose vocab, map, and flags are set. MX_ERR_NOMEM.
MxStatus bpe_prepare(BpeModel *m);
void bpe_model_free(BpeModel *m);

// Per-call scratch memory, reused across words (one per encoding thread).
typedef struct BpeScratch {
    struct BpeSym *sym;
    uint32_t *cp; // the character each initial symbol stands for (UINT32_MAX: none)
    size_t sym_cap;
    struct BpeHeapEntry *heap;
    size_t heap_cap;
    char *mapped; // byte-level words as characters (ignore_merges lookups)
    size_t mapped_cap;
} BpeScratch;

void bpe_scratch_free(BpeScratch *s);

// A growable id list.
typedef struct IdVec {
    int32_t *v;
    size_t n, cap;
} IdVec;

MxStatus idvec_push(IdVec *v, int32_t id);
MxStatus idvec_reserve(IdVec *v, size_t extra);

// Tokenizes one pre-token: w[0..n) is valid UTF-8. With byte_level, each byte of w is one
// character, byte_level_char(byte) (the ByteLevel pre-tokenizer's mapping); otherwise the
// characters are those of w. Appends the ids to out. MX_ERR_NOMEM only.
MxStatus bpe_word(const BpeModel *m, const char *w, size_t n, bool byte_level, BpeScratch *s, IdVec *out);

#endif
