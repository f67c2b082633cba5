#!/usr/bin/env python3
"""Writes tests/fixtures/pretok/: the splits Hugging Face tokenizers gives for a corpus of
strings under each pattern myrmex implements, and the engine's character classes, for
tests/test_pretokenize.c (which needs no Python).

Usage: python3 tests/make_pretok_fixtures.py [OUT_DIR]   (default tests/fixtures/pretok)

The reference is tokenizers.pre_tokenizers.Split(Regex(PATTERN), "isolated"), the
pre-tokenizer tokenizer.json files name, run by the library's regex engine (Oniguruma). The
`regex` module cross-checks every split; the script stops if the two disagree.

Files (integers little-endian; "uvarint" is LEB128: 7 bits per byte, low group first, high
bit set on all but the last byte):

  corpus.bin    "PTKC", u32 version (1), u32 count, then per string: uvarint byte length,
                the UTF-8 bytes.
  <name>.bin    one per pattern (gpt2, llama3, qwen2): "PTKS", u32 version (1), u32 count
                (as corpus.bin), u32 FNV-1a 32 of the whole of corpus.bin, uvarint length and
                bytes of the pattern string (as tokenizer.json holds it once its JSON escapes
                are decoded), then per string: uvarint span count, and each span's length in
                bytes (uvarint, > 0). Spans are back to back and cover the string: the matches
                and the text between them, as "isolated" emits them.
  classes.bin   "PTKU", u32 version (1), u32 count, then per range: u32 first, u32 last,
                u8 class (1 \\p{L}, 2 \\p{N}, 3 \\s): the maximal runs of code points the engine
                puts in each class, sorted; every other scalar value matches none of them.

The corpus is deterministic (fixed seed): hand-picked edge cases, sentences in Latin,
Cyrillic, Greek, CJK, Arabic, Hebrew, Devanagari, Thai and Korean scripts and mutations of
them, emoji (ZWJ sequences, skin tones, flags, keycaps), combining marks, whitespace runs of
every White_Space character, digits of several scripts, contractions in mixed case, code,
long runs, and random strings over an alphabet mixing all of these. Code points whose class
differs between the engine and the `regex` module (assigned after the engine's Unicode
version) are kept out; letters and digits assigned after Unicode 14.0 that both know are in.
"""
import json
import os
import random
import struct
import sys
import unicodedata

import regex
import tokenizers
from tokenizers import Regex
from tokenizers.pre_tokenizers import Split

# The pattern strings exactly as tokenizer.json writes them (JSON string literals).
PATTERNS_JSON = {
    # GPT-2 (built into the ByteLevel pre-tokenizer; some files spell it out as a Split)
    "gpt2": r'''"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"''',
    # Llama 3 (and tiktoken's cl100k_base)
    "llama3": r'''"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"''',
    # Qwen2, Qwen2.5, Qwen3
    "qwen2": r'''"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"''',
}
PATTERNS = {name: json.loads(lit) for name, lit in PATTERNS_JSON.items()}

WHITESPACE = ["\t", "\n", "\x0b", "\x0c", "\r", " ", "\x85", "\xa0", "\u1680", "\u2000", "\u2003",
              "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
NOT_WHITESPACE = ["\x1c", "\x1d", "\x1e", "\x1f", "\u200b", "\u180e", "\ufeff", "\u2060"]

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I can't believe it's not butter! We'll see, they've said; you'd agree, I'm sure.",
    "L'élève n'a pas compris l'exercice, n'est-ce pas ?",
    "Größenordnung: Straße, Fußgänger und übermäßig viele Äpfel.",
    "Tiếng Việt có nhiều dấu thanh điệu rất đẹp.",
    "Zażółć gęślą jaźń — İstanbul'da ılık bir gün.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Україна — це держава; «лапки» та №5.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Η γλώσσα μου έδωσαν ελληνική;",
    "我能吞下玻璃而不伤身体。这是一个测试，包括标点符号！",
    "日本語のテキスト、カタカナとひらがな。東京は２０２４年に…",
    "ｈｅｌｌｏ　ｗｏｒｌｄ　１２３　ＡＢＣ",
    "أنا قادر على أكل الزجاج و هذا لا يؤلمني. العدد ٠١٢٣٤٥٦٧٨٩ و ۱۲۳",
    "مَرْحَبًا بِالْعَالَمِ",
    "אני יכול לאכול זכוכית וזה לא מזיק לי. שָׁלוֹם עֲלֵיכֶם",
    "मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती। संख्या ०१२३४५६७८९",
    "ฉันกินกระจกได้ แต่มันไม่ทำให้ฉันเจ็บ ๐๑๒๓",
    "나는 유리를 먹을 수 있어요. 그래도 아프지 않아요!",
    unicodedata.normalize("NFD", "한국어 자모 분해와 Ελληνικά και café"),
    "Emoji: 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇩🇪 #️⃣ ❤️ 🧑🏿‍🚀 and text😀after",
    "Z̴̡a̶l̷g̸o̵ t͟e͠x̢t with c\u0327ombining mar\u0301ks",
    "Roman Ⅻ, fractions ½ ¾, superscripts x² y³, circled ① ②, Ⅿ",
    "Tab\tseparated\tvalues\t123\t4.5e-6\n",
    "Windows\r\nline\r\nendings\r\n\r\n",
    "Mixed   spaces\u00a0\u00a0nbsp\u3000ideographic\u2009thin\u202fnarrow",
]

CODE = [
    "int main(int argc, char **argv) {\n    printf(\"%d\\n\", argc);\n    return 0;\n}\n",
    "def f(x):\n\treturn x ** 2  # square\n\n\nprint(f(3))\n",
    '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
    "for (size_t i = 0; i < n; i++) a[i] += b[i] * 1.5f;",
    "if x != y && !z || w >= 10 { x <<= 2; } // comment",
    "<div class='x'>Hello &amp; goodbye</div>\n  <br/>",
    "SELECT * FROM t WHERE name = 'O''Brien' AND id IN (1,2,3);",
    "    \n    \n\t\t\n        x = 1\n",
    "#include <stdio.h>\r\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\r\n",
    "https://example.com/path?q=1&r=two#frag   user@example.org",
    "$ ls -la | grep '.py' > out.txt 2>&1",
    "λx.λy.x — ∀ε>0 ∃δ>0: |x−a|<δ ⇒ |f(x)−L|<ε",
]

EDGE = [
    "", " ", "  ", "   ", "a", " a", "  a", "   a", "a ", "a  ", "\t", "\ta", " \ta", "\t a",
    "\n", "\na", " \n", " \na", "\n a", "\n\n", " \n \n ", "a\n\nb", "a \n\n b", "a\r\n", "\r\n\r\n",
    "!!", "!!a", " !", " !a", "! a", "a!", "a !", "a!!\n\n", "a !!\r\n\r\n b", "...\n", "?\r",
    "1", "12", "123", "1234", "1234567", " 1", "  12", "a1", "1a", "a 1", "1 a", "١٢٣٤٥", "०१२३४",
    "１２３４", "²³¹", "Ⅻ2", "1.5", "-1", "'", "''", "'''", "'s", "'t", "'re", "'ve", "'m", "'ll",
    "'d", "'S", "'T", "'RE", "'Ve", "'vE", "'M", "'LL", "'lL", "'D", "'x", "'sx", "'rex", "'r",
    "'v", "'l", "'e", "'ſ", "'ſt", "'\u017fs", "don't", "DON'T", "she'S", "I'LL", "we'Re",
    "you'VE", "it'D", "o'clock", "rock 'n' roll", "'tis", "a's", " 's", "  's", "\t's", "'s's",
    "'''s", "' s", "'1", "'\n", "'!", "’s", "don’t", "‘quoted’", "\"dq\"", "x'", "x''", "'ss",
    "\u00a0", "\u00a0a", " \u00a0a", "\u3000", "\u3000a", "a\u3000\u3000b", "\u0085a", "\u2028\u2029",
    "\x0b\x0c", "\x1c\x1d\x1e\x1f", "a\x1cb", " \x1c", "\u200b", "a\u200bb", "\ufeffa", "\u180e a",
    "\x00", "a\x00b", " \x00", "\x7f", "e\u0301", " \u0301", "\u0301a", "a\u0301\u0302b",
    "😀", " 😀", "😀a", "a😀", "😀😀", " 😀😀 ", "👨‍👩‍👧", "👍🏿", "\u200d", "a\u200db", "#️⃣",
    "🇺🇸", "\ufffd", "a\ufffdb", "\U0010fffd", "\U000e0041", "a\u00ad b", "\u2063",
    "\U0001e030\U0001e031", "𐗀𐗁", "\U0002ebf0", "\U00011f50\U00011f51", " \U000105c0",
    "x" * 300, " " * 300, " " * 300 + "a", "\n" * 100, "1" * 100, "!" * 200, "'" * 100,
    "a" * 50 + "1" * 50 + " " * 50 + "." * 50, "日本" * 100, "\t " * 80 + "x", " \r" * 60,
]


def build_alphabet(eng_class):
    chars = set()
    for s in SENTENCES + CODE:
        chars.update(s)
    chars.update(WHITESPACE + NOT_WHITESPACE)
    chars.update("'sStTrReEvVmMlLdDſ0123456789")
    chars.update(" !\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~")
    chars.update("\u0300\u0301\u0308\u0327\u064e\u05b0\u093f\u0e31\u200c\u200d\ufe0f\U0001f3fb")
    chars.update("٠١٢٣٤٥٦٧٨٩۰۱۲۳०१२३४५६७८९０１２３４５６７８９๐๑๒")
    chars.update("😀👍🏽🚀💡🇫🇷\U0001e030\U000105c0\U0002ebf0\U00011f50")
    return sorted(c for c in chars if eng_class(ord(c)) is not None)


def mutate(rng, s):
    ops = rng.randrange(1, 4)
    for _ in range(ops):
        op = rng.randrange(8)
        if op == 0:
            s = s.upper()
        elif op == 1:
            s = s.replace(" ", rng.choice(WHITESPACE + ["  ", " \n", "\r\n", "\t "]))
        elif op == 2:
            i = rng.randrange(len(s) + 1)
            s = s[:i] + rng.choice(["'s", "'T", "'re", "'LL", "'ſ", "'", "123456", "٣٤", " ", "\n\n",
                                    "😀", "\u0301", "!?", " - ", "\t", "\u3000"]) + s[i:]
        elif op == 3:
            s = rng.choice(WHITESPACE) * rng.randrange(1, 4) + s
        elif op == 4:
            s = s + rng.choice(WHITESPACE) * rng.randrange(1, 4)
        elif op == 5:
            s = s + rng.choice(["", " "]) + rng.choice(SENTENCES)
        elif op == 6 and len(s) > 4:
            i = rng.randrange(len(s))
            j = min(len(s), i + rng.randrange(1, 20))
            s = s[i:j]
        else:
            s = "".join(ch.swapcase() if rng.random() < 0.3 else ch for ch in s)
    return s


def build_corpus(eng_class):
    rng = random.Random(20240611)
    corpus = list(EDGE) + list(SENTENCES) + list(CODE)
    for _ in range(1200):
        corpus.append(mutate(rng, rng.choice(SENTENCES + CODE)))
    alphabet = build_alphabet(eng_class)
    ws = WHITESPACE + ["\r\n"] * 3 + [" "] * 10
    for _ in range(1800):
        n = rng.randrange(1, 60)
        weights = rng.random()
        out = []
        for _ in range(n):
            r = rng.random()
            out.append(rng.choice(ws) if r < 0.25 * weights else
                       rng.choice("'sStTrReEvVlLdDmM") if r < 0.35 else rng.choice(alphabet))
        corpus.append("".join(out))
    for _ in range(20):  # long words and runs
        corpus.append(rng.choice(alphabet) * rng.randrange(50, 400))
        corpus.append("".join(rng.choice("абвгдежзийклмнопрстуфхцчшщъыьэюя") for _ in range(rng.randrange(100, 600))))
    return corpus


def engine_classes():
    """Maps each scalar value to 1/2/3 (\\p{L}/\\p{N}/\\s) as the tokenizers engine sees it."""
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(map(chr, cps))
    cls = {}
    for k, pattern in ((1, r"\p{L}"), (2, r"\p{N}"), (3, r"\s")):
        unmatched = bytearray(len(cps))
        for _, (a, b) in Split(Regex(pattern), "removed").pre_tokenize_str(text):
            unmatched[a:b] = b"\x01" * (b - a)
        for i, c in enumerate(cps):
            if not unmatched[i]:
                assert c not in cls, f"U+{c:04X} in two classes"
                cls[c] = k
    return cls


def regex_class(c):
    ch = chr(c)
    return (1 if regex.match(r"\p{L}", ch) else 2 if regex.match(r"\p{N}", ch) else
            3 if regex.match(r"\s", ch) else 0)


def split_tokenizers(pattern, s):
    """Byte spans of Split(pattern, "isolated") (its offsets count characters)."""
    pieces = Split(Regex(pattern), "isolated").pre_tokenize_str(s)
    off = [0]
    for ch in s:
        off.append(off[-1] + len(ch.encode()))
    return [(off[a], off[b]) for _, (a, b) in pieces]


def split_regex(pattern, s):
    """The same with the `regex` module: matches plus the text between them."""
    spans, pos = [], 0
    for m in regex.finditer(pattern, s):
        if m.start() > pos:
            spans.append((pos, m.start()))
        if m.end() > m.start():
            spans.append((m.start(), m.end()))
        pos = max(pos, m.end())
    if pos < len(s):
        spans.append((pos, len(s)))
    off = [0]
    for ch in s:
        off.append(off[-1] + len(ch.encode()))
    return [(off[a], off[b]) for a, b in spans]


def uvarint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fnv1a32(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures", "pretok")
    os.makedirs(out_dir, exist_ok=True)

    eng = engine_classes()
    # Code points the engine and the regex module classify alike; the others stay out.
    cache = {}

    def agreed_class(c):
        if c not in cache:
            cache[c] = eng.get(c, 0) if eng.get(c, 0) == regex_class(c) else None
        return cache[c]

    corpus = build_corpus(agreed_class)
    for s in corpus:
        for ch in s:
            if agreed_class(ord(ch)) is None:
                sys.exit(f"corpus holds U+{ord(ch):04X}, classified differently by the engine and regex")

    blob = bytearray(b"PTKC" + struct.pack("<II", 1, len(corpus)))
    for s in corpus:
        b = s.encode()
        blob += uvarint(len(b)) + b
    with open(os.path.join(out_dir, "corpus.bin"), "wb") as f:
        f.write(blob)
    digest = fnv1a32(blob)

    for name, pattern in PATTERNS.items():
        out = bytearray(b"PTKS" + struct.pack("<III", 1, len(corpus), digest))
        pb = pattern.encode()
        out += uvarint(len(pb)) + pb
        total = 0
        for s in corpus:
            spans = split_tokenizers(pattern, s)
            if spans != split_regex(pattern, s):
                sys.exit(f"{name}: tokenizers and regex disagree on {s!r}")
            pos = 0
            for a, b in spans:
                assert a == pos and b > a
                pos = b
            assert pos == len(s.encode())
            out += uvarint(len(spans))
            for a, b in spans:
                out += uvarint(b - a)
            total += len(spans)
        with open(os.path.join(out_dir, f"{name}.bin"), "wb") as f:
            f.write(out)
        print(f"{name}: {total} spans, {len(out)} bytes", file=sys.stderr)

    ranges = []
    for c in sorted(eng):
        if ranges and ranges[-1][1] == c - 1 and ranges[-1][2] == eng[c]:
            ranges[-1][1] = c
        else:
            ranges.append([c, c, eng[c]])
    cb = bytearray(b"PTKU" + struct.pack("<II", 1, len(ranges)))
    for a, b, k in ranges:
        cb += struct.pack("<IIB", a, b, k)
    with open(os.path.join(out_dir, "classes.bin"), "wb") as f:
        f.write(cb)
    print(f"corpus: {len(corpus)} strings, {len(blob)} bytes; classes: {len(ranges)} ranges; "
          f"tokenizers {tokenizers.__version__}, regex {regex.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
