#!/usr/bin/env python3
"""Generates runtime/unicode_tables.c: the character classes the pre-tokenizer's split
patterns use (\\p{L}, \\p{N}, \\s), as one sorted table of code point ranges (looked up by
binary search) and, for speed, the same classes of the BMP as a two-stage table.

Usage: python3 scripts/gen_unicode_tables.py [--no-engine] [-o runtime/unicode_tables.c]

Sources, in order:
  1. Python's unicodedata (the local Unicode Character Database): \\p{L} is general category
     L* (Lu Ll Lt Lm Lo), \\p{N} is N* (Nd Nl No).
  2. \\s is the White_Space property. unicodedata does not expose it, so the list is written
     out below (stable since Unicode 6.3, when U+180E left it) and checked against
     str.isspace(), which is White_Space plus U+001C..U+001F (bidi class B/S).
  3. The ground truth is the regex engine of the Hugging Face `tokenizers` library
     (Oniguruma), which may follow a newer Unicode version than the local database. Unless
     --no-engine is given, every code point is classified by that engine too; code points it
     calls \\p{L} or \\p{N} that the local database leaves unassigned (Cn) are added, and
     any other disagreement is an error. The header of the output lists what was added.
"""
import argparse
import sys
import unicodedata

OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3
CLASS_NAMES = {LETTER: "LETTER", NUMBER: "NUMBER", SPACE: "SPACE"}

WHITE_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680),
               (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F),
               (0x3000, 0x3000)]

# A letter first assigned in each Unicode version after 14.0: the newest one the engine
# calls \p{L} names the version it follows.
VERSION_SENTINELS = [("15.0", 0x1E030), ("15.1", 0x2EBF0), ("16.0", 0x105C0), ("17.0", 0x323B0)]


def scalar_values():
    return [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def ucd_classes():
    cls = {}
    for c in scalar_values():
        cat = unicodedata.category(chr(c))
        if cat[0] == "L":
            cls[c] = LETTER
        elif cat[0] == "N":
            cls[c] = NUMBER
    spaces = {c for lo, hi in WHITE_SPACE for c in range(lo, hi + 1)}
    isspace = {c for c in scalar_values() if chr(c).isspace()}
    if isspace - spaces != set(range(0x1C, 0x20)) or not spaces <= isspace:
        sys.exit("White_Space list disagrees with str.isspace() beyond U+001C..U+001F")
    for c in spaces:
        assert c not in cls
        cls[c] = SPACE
    return cls


def engine_sets():
    """The code points the tokenizers library's regex engine matches with \\p{L}, \\p{N}, \\s."""
    import tokenizers
    from tokenizers import Regex
    from tokenizers.pre_tokenizers import Split

    cps = scalar_values()
    text = "".join(map(chr, cps))
    out = {}
    for name, pattern in (("L", r"\p{L}"), ("N", r"\p{N}"), ("S", r"\s")):
        # "removed" keeps the unmatched pieces (offsets in characters): the rest matched.
        unmatched = bytearray(len(cps))
        for _, (a, b) in Split(Regex(pattern), "removed").pre_tokenize_str(text):
            unmatched[a:b] = b"\x01" * (b - a)
        out[name] = {cps[i] for i in range(len(cps)) if not unmatched[i]}
    return tokenizers.__version__, out


def ranges_of(codes):
    out = []
    for c in sorted(codes):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def fmt_ranges(rs):
    return ", ".join(f"U+{a:04X}" if a == b else f"U+{a:04X}..U+{b:04X}" for a, b in rs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", default="runtime/unicode_tables.c")
    ap.add_argument("--no-engine", action="store_true",
                    help="use the local database only (no tokenizers library needed)")
    args = ap.parse_args()

    cls = ucd_classes()
    notes = []
    if args.no_engine:
        notes.append("Generated with --no-engine: the local database only, not checked against")
        notes.append("the tokenizers library's regex engine.")
    else:
        version, eng = engine_sets()
        added = {LETTER: set(), NUMBER: set()}
        bad = []
        for c in scalar_values():
            want = (LETTER if c in eng["L"] else NUMBER if c in eng["N"] else
                    SPACE if c in eng["S"] else OTHER)
            have = cls.get(c, OTHER)
            if want == have:
                continue
            if have == OTHER and want in added and unicodedata.category(chr(c)) == "Cn":
                added[want].add(c)
                cls[c] = want
            else:
                bad.append(c)
        if bad:
            sys.exit("engine disagrees on assigned code points: " + fmt_ranges(ranges_of(bad)))
        follows = "14.0 or older"
        for v, c in VERSION_SENTINELS:
            if c in eng["L"]:
                follows = v
        notes.append(f"Checked against tokenizers {version} (Oniguruma), which follows Unicode")
        notes.append(f"{follows} by its sentinel letters. Code points unassigned in the local")
        notes.append("database that the engine classifies are added, so the table agrees with it")
        notes.append("on every code point:")
        for k in (LETTER, NUMBER):
            rs = ranges_of(added[k])
            notes.append(f"  {CLASS_NAMES[k]} (+{len(added[k])} code points): {fmt_ranges(rs) or 'none'}")

    # One merged table: maximal runs of equal non-OTHER class.
    table = []
    for c in sorted(cls):
        k = cls[c]
        if table and table[-1][1] == c - 1 and table[-1][2] == k:
            table[-1][1] = c
        else:
            table.append([c, c, k])

    ascii_cls = [cls.get(c, OTHER) for c in range(128)]
    # The BMP as a two-stage table: 256 blocks of 256 code points, identical blocks shared,
    # each block 64 bytes of 2-bit classes (code point c at bits 2*(c%4) of byte c%256/4).
    index, blocks = [], []
    for base in range(0, 0x10000, 256):
        packed = bytearray(64)
        for c in range(base, base + 256):
            packed[(c & 0xFF) >> 2] |= cls.get(c, OTHER) << ((c & 3) * 2)
        packed = bytes(packed)
        if packed not in blocks:
            blocks.append(packed)
        index.append(blocks.index(packed))
    assert len(blocks) <= 256
    emit(args.output, table, ascii_cls, index, blocks, notes)


def wrap(words, indent, width=100):
    lines, line = [], indent
    for w in words:
        if len(line) + len(w) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += w + " "
    if line.strip():
        lines.append(line.rstrip())
    return lines


def emit(path, table, ascii_cls, index, blocks, notes):
    o = []
    o.append("// GENERATED by scripts/gen_unicode_tables.py: do not edit by hand.")
    o.append("//")
    o.append("// The character classes of the pre-tokenizer's split patterns: \\p{L} (general category")
    o.append("// L*), \\p{N} (N*) and \\s (the White_Space property), as sorted ranges of code points.")
    o.append(f"// Source: Unicode {unicodedata.unidata_version} (Python {sys.version.split()[0]} unicodedata).")
    body = []
    for n in notes:
        if len(n) <= 97:
            body.append("// " + n)
            continue
        lines = wrap(n.split(" "), "// ")
        body.append(lines[0])
        body.extend(wrap(" ".join(l[3:] for l in lines[1:]).split(" "), "//       "))
    o.extend(body)
    o.append("// Regenerate with: python3 scripts/gen_unicode_tables.py")
    o.append("#include \"pretokenize.h\"")
    o.append("")
    o.append("// Class of each ASCII character (UCLASS_*).")
    o.append("const uint8_t unicode_ascii_class[128] = {")
    o.extend(wrap([f"{k}," for k in ascii_cls], "    "))
    o.append("};")
    o.append("")
    o.append("// The BMP's classes: block unicode_bmp_index[c >> 8] of unicode_bmp_blocks holds c's class")
    o.append("// in bits 2 * (c % 4) of byte (c % 256) / 4 (see unicode_class_bmp).")
    o.append("const uint8_t unicode_bmp_index[256] = {")
    o.extend(wrap([f"{k}," for k in index], "    "))
    o.append("};")
    o.append(f"const uint8_t unicode_bmp_blocks[{len(blocks)}][64] = {{")
    for blk in blocks:
        o.append("    {")
        o.extend(wrap([f"0x{b:02X}," for b in blk], "        "))
        o.append("    },")
    o.append("};")
    o.append("")
    o.append(f"#define RANGES {len(table)}")
    o.append("// Range i is [range_lo[i], range_hi[i]] with class range_cls[i]; code points in no")
    o.append("// range are UCLASS_OTHER. Sorted, disjoint.")
    o.append("static const uint32_t range_lo[RANGES] = {")
    o.extend(wrap([f"0x{a:X}," for a, _, _ in table], "    "))
    o.append("};")
    o.append("static const uint32_t range_hi[RANGES] = {")
    o.extend(wrap([f"0x{b:X}," for _, b, _ in table], "    "))
    o.append("};")
    o.append("static const uint8_t range_cls[RANGES] = {")
    o.extend(wrap([f"{k}," for _, _, k in table], "    "))
    o.append("};")
    o.append("")
    o.append("""int unicode_class(uint32_t cp, uint32_t *lo, uint32_t *hi) {
    // Binary search for the last range starting at or before cp.
    size_t a = 0, b = RANGES; // answer in [a, b): the first range with range_lo > cp is b
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (range_lo[m] <= cp) a = m + 1;
        else b = m;
    }
    // Range a - 1 (if any) starts at or before cp; range a starts after it.
    uint32_t gap_lo = 0, gap_hi = a < RANGES ? range_lo[a] - 1 : 0x10FFFF;
    if (a > 0) {
        size_t r = a - 1;
        if (cp <= range_hi[r]) {
            if (lo) *lo = range_lo[r];
            if (hi) *hi = range_hi[r];
            return range_cls[r];
        }
        gap_lo = range_hi[r] + 1;
    }
    if (lo) *lo = gap_lo;
    if (hi) *hi = cp > 0x10FFFF ? cp : gap_hi; // beyond Unicode: a range of its own
    return UCLASS_OTHER;
}

int unicode_is_letter(uint32_t cp) {
    return (cp < 0x10000 ? unicode_class_bmp(cp) : unicode_class(cp, NULL, NULL)) == UCLASS_LETTER;
}

int unicode_is_number(uint32_t cp) {
    return (cp < 0x10000 ? unicode_class_bmp(cp) : unicode_class(cp, NULL, NULL)) == UCLASS_NUMBER;
}

int unicode_is_whitespace(uint32_t cp) {
    return (cp < 0x10000 ? unicode_class_bmp(cp) : unicode_class(cp, NULL, NULL)) == UCLASS_SPACE;
}""")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")
    print(f"{path}: {len(table)} ranges", file=sys.stderr)


if __name__ == "__main__":
    main()
