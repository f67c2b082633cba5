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
} PretokPattern;

// -1 when the pattern is not one of the above.
int pretok_pattern_from_string(const char *regex);

// A piece of the input: bytes [start, end).
typedef struct Span {
    size_t start, end;
} Span;

// Splits valid UTF-8 text[0..len) into the matches of `pattern` (the text between matches
// is also emitted as spans, as tokenizers' Split with behavior "Isolated" does).
// Writes up to max spans into out and returns the total count (call again with a larger
// buffer when it exceeds max). Runs in O(len).
size_t pretok_split(PretokPattern pattern, const char *text, size_t len, Span *out, size_t max);

// Unicode properties of a code point, from tables generated from the Unicode Character
// Database by scripts/gen_unicode_tables.py (runtime/unicode_tables.c).
int unicode_is_letter(uint32_t cp);     // \p{L}
int unicode_is_number(uint32_t cp);     // \p{N}
int unicode_is_whitespace(uint32_t cp); // \s as the tokenizers library's regex engine defines it

// GPT-2's byte-to-unicode map used by the ByteLevel pre-tokenizer and decoder: byte b is
// shown as code point byte_level_char(b); byte_level_byte inverts it (-1 if cp is not one).
uint32_t byte_level_char(uint8_t b);
int byte_level_byte(uint32_t cp);

#endif
