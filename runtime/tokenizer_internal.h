// The inside of a Tokenizer, shared by tokenizer_load.c (builds it), tokenizer.c (encodes),
// added_tokens.c (finds added tokens in text) and detokenizer.c (decodes). Not a public API.
//
// Pipeline, as Hugging Face `tokenizers` runs it for Tokenizer.encode:
//   text -> split out added tokens that match the raw text (normalized=false)
//        -> each remaining piece: normalizer -> split out added tokens matching the normalized
//           text (normalized=true) -> pre-tokenizer -> BPE on each pre-token
//        -> post-processor (bos/eos) when add_special.
#ifndef MYRMEX_TOKENIZER_INTERNAL_H
#define MYRMEX_TOKENIZER_INTERNAL_H

#include "bpe.h"
#include "pretokenize.h"
#include "tokenizer.h"

// ---- added tokens ---------------------------------------------------------------------------

enum {
    TOKF_ADDED = 1,   // an entry of tokenizer.json's added_tokens
    TOKF_SPECIAL = 2, // ... with "special": true
    TOKF_SKIP = 4,    // dropped by skip_special: its decode string is a special token's content
    TOKF_ALT = 8,     // decodes as an entry of Tokenizer.alt instead of its vocab string
};

// tokenizers decodes an added token with normalized=true as its content run through the
// normalizer (AddedVocabulary's normalized_cache), when that differs from the content.
typedef struct AltString {
    int32_t id;
    char *s;
    size_t n;
} AltString;

typedef struct AddedToken {
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} AddedToken;

// A byte trie over added-token strings, searched leftmost-longest (as the aho-corasick crate's
// MatchKind::LeftmostLongest that tokenizers uses). Edges live in one hash table keyed by
// (node, byte); node 0 is the root.
typedef struct TrieEdge {
    uint32_t node; // UINT32_MAX: empty slot
    uint8_t byte;
    uint32_t child;
} TrieEdge;

typedef struct AddedTrie {
    int32_t *term;   // (n_nodes) index into Tokenizer.added of the token ending here, or -1
    uint32_t n_nodes, cap_nodes;
    TrieEdge *edges; // open addressing, at most half full
    uint32_t edge_mask, n_edges;
    uint8_t first[256]; // 1 if some pattern starts with this byte
    size_t max_len;     // longest pattern
} AddedTrie;

MxStatus trie_init(AddedTrie *t);
void trie_free(AddedTrie *t);
// Adds s[0..n) (n > 0) for added token index tok; an identical pattern keeps the first.
MxStatus trie_add(AddedTrie *t, const char *s, size_t n, int32_t tok);

// A split of a string: bytes [start, end), an added token's id or -1 for plain text.
typedef struct Piece {
    size_t start, end;
    int32_t id;
} Piece;

typedef struct PieceVec {
    Piece *v;
    size_t n, cap;
} PieceVec;

// Splits s[0..n) (valid UTF-8) around the added tokens of trie, honouring each token's
// single_word / lstrip / rstrip exactly as tokenizers' AddedVocabulary::find_matches does
// (including its quirk that an rstrip can overlap the next match). Appends pieces to out;
// empty text pieces are left out. MX_ERR_NOMEM only.
MxStatus added_split(const Tokenizer *t, const AddedTrie *trie, const char *s, size_t n, PieceVec *out);

// Unicode White_Space (Rust's char::is_whitespace and regex \s) and regex \w (Alphabetic,
// marks, decimal digits, connector punctuation, join controls): what tokenizers' lstrip,
// rstrip and single_word look at.
bool tok_is_word_char(uint32_t cp);

// ---- normalizer -----------------------------------------------------------------------------

typedef enum NormKind { NORM_PREPEND, NORM_REPLACE, NORM_NFC } NormKind;

typedef struct NormStep {
    NormKind kind;
    char *a; // Prepend: the prefix; Replace: the pattern (non-empty); NFC: unused
    size_t alen;
    char *b; // Replace: the content
    size_t blen;
} NormStep;

// ---- pre-tokenizer --------------------------------------------------------------------------

#define MAX_PRETOK_SPLITS 4

typedef enum PretokTail { TAIL_NONE, TAIL_BYTELEVEL, TAIL_METASPACE } PretokTail;
typedef enum PrependScheme { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } PrependScheme;

typedef struct Pretok {
    int n_splits; // Split{Regex, Isolated} steps, applied in order
    PretokPattern split[MAX_PRETOK_SPLITS];
    PretokTail tail;
    bool bl_add_prefix_space, bl_use_regex; // ByteLevel
    char ms_rep[4];                         // Metaspace replacement character (UTF-8)
    size_t ms_rep_len;
    PrependScheme ms_scheme;
    bool ms_split;
} Pretok;

// ---- decoder --------------------------------------------------------------------------------

#define MAX_DECODE_STAGES 16

typedef enum DecKind {
    DEC_BYTELEVEL,
    DEC_REPLACE,
    DEC_BYTEFALLBACK,
    DEC_FUSE,
    DEC_STRIP,
    DEC_METASPACE,
    DEC_JOIN_SPACE, // no decoder: tokens joined with " "
} DecKind;

typedef struct DecStage {
    DecKind kind;
    char *a; // Replace: pattern; Strip: content char; Metaspace: replacement char
    size_t alen;
    char *b; // Replace: content
    size_t blen;
    int start;             // Strip: leading characters to strip
    bool metaspace_prefix; // Metaspace: prepend_scheme != never (first token loses its ▁)
} DecStage;

// ---- the tokenizer --------------------------------------------------------------------------

struct Tokenizer {
    Vocab vocab;       // id -> string, model vocab and added tokens
    uint8_t *flags;    // (vocab.n_ids) TOKF_*
    BpeModel bpe;
    int model_vocab;   // the model's vocab_size (0: unknown)
    char missing_unk[64]; // unk_token named but not in the vocab (printable), "" if none
    int id_limit;      // ids >= this are out of range: max(vocab.n_ids, model_vocab)

    AddedToken *added; // tokenizer.json added_tokens, in file order
    int n_added;
    StrMap added_map;  // content -> id
    AddedTrie trie_raw, trie_norm; // normalized=false / normalized=true tokens
    AltString *alt;    // sorted by id
    int n_alt;

    NormStep *norm;
    int n_norm;
    Pretok pretok;
    DecStage dec[MAX_DECODE_STAGES];
    int n_dec;

    int32_t *prefix_ids, *suffix_ids; // added around the text when add_special
    int n_prefix, n_suffix;

    int32_t bos, pad;
    int32_t *eos;
    int n_eos;
};

// A growable byte buffer.
typedef struct TokBuf {
    char *p;
    size_t n, cap;
} TokBuf;

MxStatus tokbuf_reserve(TokBuf *b, size_t total);
MxStatus tokbuf_append(TokBuf *b, const char *s, size_t n);
void tokbuf_free(TokBuf *b);

// The string the decoder sees for id (which must have a token).
const char *tok_decode_string(const Tokenizer *t, int32_t id, size_t *len);

// Normalizes s[0..n) into out as the tokenizer's normalizer does (tmp: scratch). With no
// normalizer, out is a copy. MX_ERR_NOMEM only.
MxStatus tok_normalize(const Tokenizer *t, const char *s, size_t n, TokBuf *out, TokBuf *tmp);

#endif
