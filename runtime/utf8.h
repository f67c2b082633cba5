// UTF-8 validation for untrusted text (safetensors headers, index files, tokenizer data).
#ifndef MYRMEX_UTF8_H
#define MYRMEX_UTF8_H

#include <stddef.h>
#include <stdint.h>

// 1 if s[0..n) is well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence at the end; else 0.
// NUL bytes are valid UTF-8 (callers that cannot hold them check separately).
int utf8_valid(const uint8_t *s, size_t n);

// Decodes one character at s[0..n) (n >= 1): returns its length (1..4) and stores the code
// point. An invalid or truncated sequence returns the length of its maximal subpart (>= 1:
// the longest prefix that could start a valid sequence, or 1) and stores U+FFFD, the rule
// of Unicode's "best practice" and Python's bytes.decode(errors="replace").
size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

// Encodes a code point (<= U+10FFFF, not a surrogate) as UTF-8 into out[0..4); returns the
// length. Anything else is encoded as U+FFFD.
size_t utf8_encode(uint32_t cp, char *out);

#endif
