// UTF-8 validation for untrusted text (safetensors headers, index files, tokenizer data).
#ifndef MYRMEX_UTF8_H
#define MYRMEX_UTF8_H

#include <stddef.h>
#include <stdint.h>

// 1 if s[0..n) is well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence at the end; else 0.
// NUL bytes are valid UTF-8 (callers that cannot hold them check separately).
int utf8_valid(const uint8_t *s, size_t n);

#endif
