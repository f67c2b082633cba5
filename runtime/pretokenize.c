// Pre-tokenization without a regex engine (see pretokenize.h).
//
// Each supported pattern is an alternation that a backtracking engine (Oniguruma, inside
// Hugging Face tokenizers) tries leftmost-first at every position. Here each pattern is a
// hand-written matcher that decides, from the class of the character at the position and
// of the one after it, which alternative wins and where it ends, exactly as the engine
// would, without backtracking:
//
//   GPT-2   's|'t|'re|'ve|'m|'ll|'d        an apostrophe and one of these, case-sensitive
//           | ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+
//                                          an optional U+0020, then a run of one class; the
//                                          class of the character after the space decides
//           |\s+(?!\S)|\s+                 a whitespace run; when a non-space follows and the
//                                          run has 2+ characters, its last one is left over
//                                          (it then prefixes the next piece: " world")
//   Llama-3 (?i:'s|'t|'re|'ve|'m|'ll|'d)   the same contractions in any case; U+017F (long s)
//                                          also matches s, as Unicode case folding says
//           |[^\r\n\p{L}\p{N}]?\p{L}+      one optional non-letter, non-digit, non-CR/LF
//                                          character (space, tab, punctuation, emoji) and
//                                          a letter run
//           |\p{N}{1,3}                    1-3 digits (Qwen2: \p{N}, one digit)
//           | ?[^\s\p{L}\p{N}]+[\r\n]*     punctuation run with its trailing CR/LFs
//           |\s*[\r\n]+                    a whitespace run up to and including its last CR/LF
//           |\s+(?!\S)|\s+                 as GPT-2
//
// Every character is a letter, a number, whitespace or other, and each class has an
// alternative that matches it, so every position matches something: the spans are the
// matches, back to back. Each character is classified O(1) times, so a split is O(len).
#include "pretokenize.h"

#include <string.h>

// ---- pattern strings ---------------------------------------------------------------------

// The patterns exactly as tokenizer.json holds them once its JSON escapes are decoded.
static const char *const PATTERN_STRINGS[] = {
    [PRETOK_GPT2] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    [PRETOK_LLAMA3] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                      "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    [PRETOK_QWEN2] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                     "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
#define PATTERN_COUNT (int)(sizeof(PATTERN_STRINGS) / sizeof(PATTERN_STRINGS[0]))

int pretok_pattern_from_string(const char *regex) {
    if (!regex) return -1;
    for (int p = 0; p < PATTERN_COUNT; p++)
        if (strcmp(regex, PATTERN_STRINGS[p]) == 0) return p;
    return -1;
}

const char *pretok_pattern_string(PretokPattern pattern) {
    return (int)pattern >= 0 && (int)pattern < PATTERN_COUNT ? PATTERN_STRINGS[pattern] : NULL;
}

// ---- character classes -------------------------------------------------------------------

// A cursor over the text. Code points below U+10000 are classified by the two-stage BMP
// table; above, by binary search over the ranges, remembering the last range found so a run
// of one script (emoji, CJK Extension B) mostly skips the search.
typedef struct Scan {
    const uint8_t *s;
    size_t n;
    uint32_t lo, hi; // every code point in [lo, hi] has class cls
    int cls;
} Scan;

// The class (UCLASS_*) of the non-ASCII character at i < n; its length in bytes goes to
// *len. Bytes that are not valid UTF-8 read as U+FFFD per maximal subpart: class OTHER.
static int class_at_multibyte(Scan *sc, size_t i, size_t *len) {
    const uint8_t *p = sc->s + i;
    size_t left = sc->n - i;
    uint8_t b = p[0];
    // Well-formed 2- and 3-byte sequences inline; everything else through utf8_decode.
    if (b >= 0xC2 && b <= 0xDF && left >= 2 && (p[1] & 0xC0) == 0x80) {
        *len = 2;
        return unicode_class_bmp((uint32_t)(b & 0x1F) << 6 | (p[1] & 0x3F));
    }
    if ((b & 0xF0) == 0xE0 && left >= 3 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80) {
        uint32_t cp = (uint32_t)(b & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
        if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) {
            *len = 3;
            return unicode_class_bmp(cp);
        }
    }
    uint32_t cp;
    *len = utf8_decode(p, left, &cp);
    if (cp < 0x10000) return unicode_class_bmp(cp);
    if (cp - sc->lo > sc->hi - sc->lo) sc->cls = unicode_class(cp, &sc->lo, &sc->hi);
    return sc->cls;
}

// The class of the character at i < n, and its length in *len.
static inline int class_at(Scan *sc, size_t i, size_t *len) {
    uint8_t b = sc->s[i];
    if (b < 0x80) {
        *len = 1;
        return unicode_ascii_class[b];
    }
    return class_at_multibyte(sc, i, len);
}

// The end of the run of class k characters starting at i.
static inline size_t run_of(Scan *sc, size_t i, int k) {
    const uint8_t *s = sc->s;
    size_t n = sc->n, len;
    for (;;) {
        while (i < n && s[i] < 0x80 && unicode_ascii_class[s[i]] == k) i++;
        if (i >= n || s[i] < 0x80 || class_at_multibyte(sc, i, &len) != k) return i;
        i += len;
    }
}

static inline int is_crlf(uint8_t b) {
    return b == '\r' || b == '\n';
}

// ---- matchers ----------------------------------------------------------------------------
// Each returns the end of the match at i (< n), which is > i.

// The length of the contraction at s[i] == '\'' ('s 't 're 've 'm 'll 'd), 0 if none.
// With fold, letters match in either case and U+017F (UTF-8 C5 BF) matches s.
static size_t contraction(const uint8_t *s, size_t n, size_t i, int fold) {
    if (i + 1 >= n) return 0;
    uint8_t a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
    if (fold) {
        if (a == 0xC5 && b == 0xBF) return 3;
        if (a >= 'A' && a <= 'Z') a += 'a' - 'A';
        if (b >= 'A' && b <= 'Z') b += 'a' - 'A';
    }
    switch (a) {
    case 's': case 't': case 'm': case 'd': return 2;
    case 'r': case 'v': return b == 'e' ? 3 : 0;
    case 'l': return b == 'l' ? 3 : 0;
    default: return 0;
    }
}

// \s+(?!\S)|\s+ at a whitespace character i; with crlf, \s*[\r\n]+ first.
static inline size_t match_space(Scan *sc, size_t i, int crlf) {
    size_t end = i, last = i, after_crlf = 0;
    while (end < sc->n) {
        size_t len;
        if (class_at(sc, end, &len) != UCLASS_SPACE) break;
        if (crlf && is_crlf(sc->s[end])) after_crlf = end + 1;
        last = end;
        end += len;
    }
    // \s*[\r\n]+: \s* gives characters back until [\r\n]+ can start, at the last CR/LF.
    if (after_crlf) return after_crlf;
    // \s+(?!\S): at the end of the text the whole run; before a non-space the run less its
    // last character, unless that leaves nothing; then \s+ takes the one character.
    if (end == sc->n || last == i) return end;
    return last;
}

static inline size_t match_gpt2(Scan *sc, size_t i) {
    const uint8_t *s = sc->s;
    size_t len;
    if (s[i] == '\'') {
        size_t c = contraction(s, sc->n, i, 0);
        if (c) return i + c;
    }
    int k = class_at(sc, i, &len);
    if (s[i] == ' ' && i + 1 < sc->n) {
        size_t len2;
        int k2 = class_at(sc, i + 1, &len2);
        if (k2 != UCLASS_SPACE) return run_of(sc, i + 1 + len2, k2);
    }
    if (k != UCLASS_SPACE) return run_of(sc, i + len, k);
    return match_space(sc, i, 0);
}

static inline size_t match_llama3(Scan *sc, size_t i, int max_digits) {
    const uint8_t *s = sc->s;
    size_t n = sc->n, len, len2;
    if (s[i] == '\'') {
        size_t c = contraction(s, n, i, 1);
        if (c) return i + c;
    }
    int k = class_at(sc, i, &len);
    if (k == UCLASS_LETTER) return run_of(sc, i + len, UCLASS_LETTER);
    // [^\r\n\p{L}\p{N}]?\p{L}+ with the optional character present.
    if (k != UCLASS_NUMBER && !is_crlf(s[i]) && i + len < n && class_at(sc, i + len, &len2) == UCLASS_LETTER)
        return run_of(sc, i + len + len2, UCLASS_LETTER);
    if (k == UCLASS_NUMBER) {
        size_t end = i + len;
        for (int d = 1; d < max_digits && end < n && class_at(sc, end, &len2) == UCLASS_NUMBER; d++) end += len2;
        return end;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    size_t others = SIZE_MAX;
    if (k == UCLASS_OTHER) others = i + len;
    else if (s[i] == ' ' && i + 1 < n && class_at(sc, i + 1, &len2) == UCLASS_OTHER) others = i + 1 + len2;
    if (others != SIZE_MAX) {
        size_t end = run_of(sc, others, UCLASS_OTHER);
        while (end < n && is_crlf(s[end])) end++;
        return end;
    }
    return match_space(sc, i, 1);
}

// ---- splitting ---------------------------------------------------------------------------

// The split loop, inlined once per pattern so the matcher is inlined into it.
static inline __attribute__((always_inline)) size_t split_loop(PretokPattern pattern, Scan *sc, Span *out,
                                                               size_t max) {
    size_t count = 0, i = 0, len = sc->n, gap = SIZE_MAX; // gap: start of unmatched text, if any
    while (i < len) {
        size_t end;
        switch (pattern) {
        case PRETOK_GPT2: end = match_gpt2(sc, i); break;
        case PRETOK_LLAMA3: end = match_llama3(sc, i, 3); break;
        default: end = match_llama3(sc, i, 1); break;
        }
        if (end <= i) { // no match here (none of the patterns does this): skip a character
            size_t clen;
            if (gap == SIZE_MAX) gap = i;
            class_at(sc, i, &clen);
            i += clen;
            continue;
        }
        if (gap != SIZE_MAX) {
            if (count < max) out[count] = (Span){gap, i};
            count++;
            gap = SIZE_MAX;
        }
        if (count < max) out[count] = (Span){i, end};
        count++;
        i = end;
    }
    if (gap != SIZE_MAX) {
        if (count < max) out[count] = (Span){gap, len};
        count++;
    }
    return count;
}

size_t pretok_split(PretokPattern pattern, const char *text, size_t len, Span *out, size_t max) {
    Scan sc = {.s = (const uint8_t *)text, .n = len, .lo = 0, .hi = 0, .cls = UCLASS_OTHER};
    switch (pattern) {
    case PRETOK_GPT2: return split_loop(PRETOK_GPT2, &sc, out, max);
    case PRETOK_LLAMA3: return split_loop(PRETOK_LLAMA3, &sc, out, max);
    case PRETOK_QWEN2: return split_loop(PRETOK_QWEN2, &sc, out, max);
    }
    MX_ASSERT(!"pretok_split: not a PretokPattern");
    return 0;
}

// ---- byte-level alphabet -----------------------------------------------------------------
// GPT-2 shows the 188 printable bytes ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) as
// themselves and the other 68 (0x00..0x20, 0x7F..0xA0, 0xAD), in byte order, as U+0100..U+0143.

uint32_t byte_level_char(uint8_t b) {
    if (b <= 0x20) return 0x100 + b;
    if (b >= 0x7F && b <= 0xA0) return 0x100 + 33 + (b - 0x7F);
    if (b == 0xAD) return 0x100 + 67;
    return b;
}

int byte_level_byte(uint32_t cp) {
    if (cp < 0x100) return (cp > 0x20 && cp < 0x7F) || (cp > 0xA0 && cp != 0xAD) ? (int)cp : -1;
    if (cp < 0x100 + 33) return (int)(cp - 0x100);
    if (cp < 0x100 + 67) return (int)(cp - 0x100 - 33 + 0x7F);
    if (cp == 0x100 + 67) return 0xAD;
    return -1;
}
