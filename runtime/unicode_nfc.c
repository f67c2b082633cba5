// Unicode NFC; see unicode_nfc.h.
//
// The text is scanned for characters that are not composition boundaries ("unsafe": ccc
// != 0, NFC_Quick_Check No or Maybe). Around each one, the segment from the last boundary
// character before it up to the next boundary character after it is normalized on its own:
// full canonical decomposition, canonical ordering (stable sort of each run of non-starters
// by ccc), canonical composition. Segments never interact, as a boundary character never
// composes with anything before it and nothing after it reorders across it. The rest of the
// text is copied unchanged.
#include "unicode_nfc.h"

#include <string.h>

#include "alloc.h"
#include "utf8.h"

// Hangul syllables (Unicode chapter 3.12).
#define S_BASE 0xAC00u
#define L_BASE 0x1100u
#define V_BASE 0x1161u
#define T_BASE 0x11A7u
#define L_COUNT 19u
#define V_COUNT 21u
#define T_COUNT 28u
#define N_COUNT (V_COUNT * T_COUNT)
#define S_COUNT (L_COUNT * N_COUNT)

// In the scratch buffer a code point carries its ccc in the top byte.
#define CP_MASK 0x1FFFFFu
#define CCC(v) ((v) >> 24)

#define STACK_CPS 256     // code points of scratch on the stack (a segment longer goes to the heap)
#define INSERTION_MAX 16  // non-starter runs up to this long are insertion-sorted

static uint32_t ccc_of(uint32_t cp) {
    if (cp < 0x300) return 0;
    size_t lo = 0, hi = nfc_ccc_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t c = nfc_ccc[mid] >> 8;
        if (c == cp) return nfc_ccc[mid] & 0xFF;
        if (c < cp) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static int is_unsafe(uint32_t cp) {
    if (cp < 0x300) return 0;
    if (cp < 0x10000 && !(nfc_unsafe_bmp[cp >> 13] >> (cp >> 8 & 31) & 1)) return 0;
    size_t lo = 0, hi = nfc_unsafe_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < nfc_unsafe[mid][0]) hi = mid;
        else if (cp > nfc_unsafe[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

static const NfcDecomp *decomp_of(uint32_t cp) {
    if (cp < 0xC0) return NULL;
    size_t lo = 0, hi = nfc_decomp_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (nfc_decomp[mid].cp == cp) return &nfc_decomp[mid];
        if (nfc_decomp[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

// The primary composite of a + b, or 0.
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a - L_BASE < L_COUNT && b - V_BASE < V_COUNT) return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a - S_BASE < S_COUNT && (a - S_BASE) % T_COUNT == 0 && b - T_BASE - 1 < T_COUNT - 1) return a + (b - T_BASE);
    uint64_t key = (uint64_t)a << 21 | b;
    size_t lo = 0, hi = nfc_comp_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (nfc_comp[mid].key == key) return nfc_comp[mid].composite;
        if (nfc_comp[mid].key < key) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static void push_cp(uint32_t *buf, size_t *m, uint32_t cp) {
    buf[(*m)++] = cp | ccc_of(cp) << 24;
}

// Stable sort of v[0..k) by ccc (all non-zero); tmp has room for k.
static void sort_run(uint32_t *v, size_t k, uint32_t *tmp) {
    if (k <= INSERTION_MAX) {
        for (size_t i = 1; i < k; i++) {
            uint32_t x = v[i];
            size_t j = i;
            while (j > 0 && CCC(v[j - 1]) > CCC(x)) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
        return;
    }
    size_t count[257] = {0};
    for (size_t i = 0; i < k; i++) count[CCC(v[i]) + 1]++;
    for (int c = 1; c <= 256; c++) count[c] += count[c - 1];
    for (size_t i = 0; i < k; i++) tmp[count[CCC(v[i])]++] = v[i];
    memcpy(v, tmp, k * sizeof *v);
}

// Normalizes the segment s[0..n) (valid UTF-8) into out[*o..cap). buf and tmp hold 2 * n
// code points each. Returns 0, or -1 when out is full.
static int normalize_segment(const uint8_t *s, size_t n, uint32_t *buf, uint32_t *tmp, char *out, size_t *o,
                             size_t cap) {
    // Full canonical decomposition: at most 2 code points per byte of UTF-8 (checked by
    // scripts/gen_nfc_tables.py; a Hangul syllable gives 3 for 3 bytes).
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_decode(s + i, n - i, &cp);
        const NfcDecomp *d;
        if (cp - S_BASE < S_COUNT) {
            uint32_t si = cp - S_BASE, t = si % T_COUNT;
            push_cp(buf, &m, L_BASE + si / N_COUNT);
            push_cp(buf, &m, V_BASE + si % N_COUNT / T_COUNT);
            if (t) push_cp(buf, &m, T_BASE + t);
        } else if ((d = decomp_of(cp))) {
            for (uint32_t k = 0; k < d->len; k++) push_cp(buf, &m, nfc_decomp_pool[d->off + k]);
        } else {
            push_cp(buf, &m, cp);
        }
    }
    // Canonical ordering.
    for (size_t i = 0; i < m;) {
        if (CCC(buf[i]) == 0) {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < m && CCC(buf[j]) != 0) j++;
        if (j - i > 1) sort_run(buf + i, j - i, tmp);
        i = j;
    }
    // Canonical composition: a character composes with the last starter when nothing
    // between them is left, or the last one left has a ccc below its own (and not 0).
    size_t w = 0, starter = SIZE_MAX;
    for (size_t r = 0; r < m; r++) {
        uint32_t v = buf[r], c = CCC(v);
        if (starter != SIZE_MAX) {
            uint32_t prev = CCC(buf[w - 1]);
            if (w - 1 == starter || (prev != 0 && prev < c)) {
                uint32_t comp = compose(buf[starter] & CP_MASK, v & CP_MASK);
                if (comp) { // primary composites are starters
                    buf[starter] = comp;
                    continue;
                }
            }
        }
        if (c == 0) starter = w;
        buf[w++] = v;
    }
    for (size_t i = 0; i < w; i++) {
        char enc[4];
        size_t len = utf8_encode(buf[i] & CP_MASK, enc);
        if (cap - *o < len) return -1;
        memcpy(out + *o, enc, len);
        *o += len;
    }
    return 0;
}

static int copy_out(const char *s, size_t n, char *out, size_t *o, size_t cap) {
    if (cap - *o < n) return -1;
    if (n) memcpy(out + *o, s, n);
    *o += n;
    return 0;
}

size_t unicode_nfc(const char *in, size_t n, char *out, size_t cap) {
    const uint8_t *s = (const uint8_t *)in;
    uint32_t stack[STACK_CPS];
    uint32_t *heap = NULL;
    size_t heap_cap = 0; // heap holds 4 * heap_cap code points (buf and tmp of a segment)
    size_t o = 0, done = 0, bstart = 0, i = 0;
    // in[done..bstart) is still to be copied; bstart is where the last boundary character
    // seen begins (or done when none was seen since).
    while (i < n) {
        if (s[i] < 0x80) {
            do i++;
            while (i < n && s[i] < 0x80);
            bstart = i - 1;
            continue;
        }
        uint32_t cp;
        size_t len = utf8_decode(s + i, n - i, &cp);
        if (!is_unsafe(cp)) {
            bstart = i;
            i += len;
            continue;
        }
        size_t j = i + len;
        while (j < n) {
            uint32_t cp2;
            size_t len2 = utf8_decode(s + j, n - j, &cp2);
            if (s[j] < 0x80 || !is_unsafe(cp2)) break;
            j += len2;
        }
        size_t seg = j - bstart; // bytes; code points after decomposition <= 2 * seg
        uint32_t *buf = stack;
        if (4 * seg > STACK_CPS) {
            if (seg > heap_cap) {
                mx_free(heap);
                heap_cap = seg;
                heap = seg <= SIZE_MAX / (4 * sizeof *heap) ? mx_malloc(4 * seg * sizeof *heap) : NULL;
                if (!heap) {
                    o = SIZE_MAX;
                    goto out;
                }
            }
            buf = heap;
        }
        if (copy_out(in + done, bstart - done, out, &o, cap) ||
            normalize_segment(s + bstart, seg, buf, buf + 2 * seg, out, &o, cap)) {
            o = SIZE_MAX;
            goto out;
        }
        done = bstart = i = j;
    }
    if (copy_out(in + done, n - done, out, &o, cap)) o = SIZE_MAX;
out:
    mx_free(heap);
    return o;
}
