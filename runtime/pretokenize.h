// Pre-tokenization: splitting text into the pieces BPE runs on, with the exact semantics
// of the regular expressions real tokenizers use, but without a regex engine (linear time
// on any input, no backtracking). Also Unicode helpers the tokenizer needs.
#ifndef MYRMEX_PRETOKENIZE_H
#define MYRMEX_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "utf8.h"

// The split patterns myrmex implements. Each is recognised by its exact pattern string in
// tokenizer.json (pretok_pattern_from_string); any other pattern is an error naming it.
typedef enum PretokPattern {
    PRETOK_GPT2,   // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    PRETOK_LLAMA3, // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    PRETOK_QWEN2,  // Llama-3's with \p{N} for \p{N}{1,3}: digits one at a time (Qwen2, Qwen2.5, Qwen3)
} PretokPattern;

// -1 when the pattern is not one of the above.
int pretok_pattern_from_string(const char *regex);
// The pattern string of a PretokPattern (NULL if it is not one).
const char *pretok_pattern_string(PretokPattern pattern);

// A piece of the input: bytes [start, end).
typedef struct Span {
    size_t start, end;
} Span;

// Splits valid UTF-8 text[0..len) into the matches of `pattern` (the text between matches
// is also emitted as spans, as tokenizers' Split with behavior "Isolated" does).
// Writes up to max spans into out and returns the total count (call again with a larger
// buffer when it exceeds max). Runs in O(len). Any bytes are safe: an invalid sequence
// reads as U+FFFD per maximal subpart (as after bytes.decode(errors="replace")). Aborts if
// pattern is not a PretokPattern.
size_t pretok_split(PretokPattern pattern, const char *text, size_t len, Span *out, size_t max);

// Unicode properties of a code point, from tables generated from the Unicode Character
// Database by scripts/gen_unicode_tables.py (runtime/unicode_tables.c).
int unicode_is_letter(uint32_t cp);     // \p{L}
int unicode_is_number(uint32_t cp);     // \p{N}
int unicode_is_whitespace(uint32_t cp); // \s as the tokenizers library's regex engine defines it

// The classes the split patterns distinguish; \p{L}, \p{N} and \s are disjoint.
enum { UCLASS_OTHER = 0, UCLASS_LETTER = 1, UCLASS_NUMBER = 2, UCLASS_SPACE = 3 };
// The class of cp (any value; above U+10FFFF is OTHER). When lo and hi are not NULL, also
// stores the widest range [*lo, *hi] around cp whose code points all have that class, so a
// caller can skip the lookup for the next code point in it.
int unicode_class(uint32_t cp, uint32_t *lo, uint32_t *hi);
// UCLASS_* of each ASCII character.
extern const uint8_t unicode_ascii_class[128];
// The class of a code point below U+10000 by two table loads, no search (the split's fast
// path; unicode_tables.c documents the layout).
extern const uint8_t unicode_bmp_index[256];
extern const uint8_t unicode_bmp_blocks[][64];
static inline int unicode_class_bmp(uint32_t cp) {
    return (unicode_bmp_blocks[unicode_bmp_index[(cp >> 8) & 0xFF]][(cp & 0xFF) >> 2] >> ((cp & 3) * 2)) & 3;
}

// GPT-2's byte-to-unicode map used by the ByteLevel pre-tokenizer and decoder: byte b is
// shown as code point byte_level_char(b); byte_level_byte inverts it (-1 if cp is not one).
uint32_t byte_level_char(uint8_t b);
int byte_level_byte(uint32_t cp);

#endif
