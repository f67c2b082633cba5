#!/usr/bin/env python3
"""Generate NFC reference fixtures for myrmex (tests/test_nfc.c). Nothing is downloaded.

tests/fixtures/nfc/cases.bin: expected unicodedata.normalize("NFC", s) (Python's Unicode
data, 14.0) for
  section 1: every code point whose NFC differs from itself, sorted (every other code
             point must come out unchanged; the C test walks all of them);
  section 2: sequences: every canonical decomposition's NFD and its reorderings, every
             composition pair, Hangul L+V(+T) and LV+T, reordering and blocking cases,
             composition exclusions and singletons in context, and random mixes of
             starters, decomposable characters, jamo and combining marks.
  Format: "MXNF", u32 version 1, then per section u32 count and count records of
  u32 in_len, in bytes (UTF-8), u32 out_len, out bytes; little-endian.

tests/fixtures/nfc/qwen2/: a tiny Qwen2-style tokenizer.json (NFC normalizer, Split with the
Qwen2 regex + ByteLevel, byte-level BPE) TRAINED with the `tokenizers` library, and
expected.bin: per string its ids (encode, add_special_tokens=False) and the library's decode.
  Format: "MXNQ", u32 version 1, u32 count, then per record u32 text_len, text, u32 n_ids,
  n_ids * u32 ids, u32 decode_len, decode.

Usage: python3 tests/make_nfc_fixtures.py
"""

import json
import os
import random
import struct
import unicodedata as ud

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures", "nfc")
SEED = 1402

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def nfc(s):
    return ud.normalize("NFC", s)


def u32(v):
    return struct.pack("<I", v)


def rec(s, out):
    a, b = s.encode(), out.encode()
    return u32(len(a)) + a + u32(len(b)) + b


def all_chars():
    for c in range(0x110000):
        if not 0xD800 <= c < 0xE000:
            yield chr(c)


def sequences(rng):
    seqs = []
    decomposable = []
    pairs = []
    marks = []
    for ch in all_chars():
        if ud.combining(ch):
            marks.append(ch)
        d = ud.decomposition(ch)
        if d and not d.startswith("<"):
            decomposable.append(ch)
            parts = [chr(int(x, 16)) for x in d.split()]
            if len(parts) == 2:
                pairs.append(parts)
    for ch in decomposable:
        d = ud.normalize("NFD", ch)
        seqs.append(d)
        if len(d) > 2:
            seqs.append(d[0] + d[:0:-1])  # marks reversed
    for a, b in pairs:
        seqs.append(a + b)
        seqs.append(a + "\u0323" + b)  # a blocker of another class in between
        seqs.append(a + "\u0301" + b)
    # Hangul: every L+V, LV+T and L+V+T for a sample of each, jamo in odd orders.
    L = [chr(0x1100 + i) for i in range(19)]
    V = [chr(0x1161 + i) for i in range(21)]
    T = [chr(0x11A7 + i) for i in range(28)]  # T[0] (U+11A7) is not a trailing consonant
    for l in L:
        for v in V:
            seqs.append(l + v)
            seqs.append(l + v + rng.choice(T))
    for s in range(0xAC00, 0xAC00 + 11172, 97):
        seqs.append(chr(s) + rng.choice(T))
        seqs.append(chr(s) + rng.choice(V))
    seqs += ["\u1100\u1161\u11a8\u11a8", "\u11a8\u1161\u1100", "\u1100\u0301\u1161", "\uac00\u11a8",
             "\uac01\u11a8", "\u1100\u1161\u11a7", "\u1100\u1161\u11c3", "\u1113\u1161", "\u1100\u1176"]
    # Reordering and blocking.
    seqs += ["a\u0323\u0302", "a\u0302\u0323", "\u1ea1\u0302", "\u00e2\u0323", "q\u0307\u0323", "q\u0323\u0307",
             "e\u0301", "e\u0301\u0301", "e\u0327\u0301", "e\u0301\u0327", "A\u030a", "\u212b", "\u2126", "\u1e0b\u0323",
             "\u0344", "\u0958", "\u0f73", "\u0f75", "\u0f81", "\u2adc", "\ufb2c", "\U0001d160", "\u0915\u093c",
             "\u05d0\u05b7\u05bc", "\u0061\u05ae\u0300\u0301\u0062", "\u00c5\u0300", "\u0041\u0300\u0300",
             "\u0300", "\u0300a", "\u0301\u0323e", "Vi\u1ec7t Nam", "Vie\u0323\u0302t Nam", "ca\u0300 phe\u0302",
             "\u0cc6\u0cc2\u0cd5", "\u0b47\u0b3e", "\u0bc6\u0bbe", "\u1025\u102e", "\U00011131\U00011127",
             "\U000110a5\U000110ba", "\u0627\u0653", "\u3099\u304b", "\u304b\u3099", "\u304b\u309a", "\u0300" * 40,
             "a" + "\u0301\u0323" * 30, "a" + "\u0323\u0301" * 30, "\u00e9" * 5 + "\u0327", ""]
    # Random mixes.
    starters = [chr(c) for c in list(range(0x41, 0x7b)) + [0x20, 0x391, 0x3b1, 0x3c9, 0x413, 0x627, 0x928,
                                                          0x995, 0x9c7, 0xb47, 0xcc6, 0xd46, 0x1025,
                                                          0x304b, 0x30cf, 0x4e00, 0x1f600]]
    pool_marks = marks[:60] + rng.sample(marks, 60) + ["\u0301", "\u0323", "\u0302", "\u0308", "\u0327",
                                                       "\u0306", "\u031b", "\u0309", "\u0303", "\u0345"]
    jamo = L + V + T + [chr(0xAC00 + rng.randrange(11172)) for _ in range(20)]
    pools = [starters, pool_marks, decomposable, jamo, ["\u00e9", "\u1ec7", "\u2126", "\u212b", "\u0344"]]
    weights = [4, 5, 2, 2, 1]
    for _ in range(9000):
        k = rng.randint(1, 8)
        seqs.append("".join(rng.choice(rng.choices(pools, weights)[0]) for _ in range(k)))
    return seqs


def write_cases(rng):
    singles = []
    for ch in all_chars():
        o = nfc(ch)
        if o != ch:
            singles.append(rec(ch, o))
    seqs = sequences(rng)
    body = b"MXNF" + u32(1) + u32(len(singles)) + b"".join(singles)
    body += u32(len(seqs)) + b"".join(rec(s, nfc(s)) for s in seqs)
    path = os.path.join(OUT_DIR, "cases.bin")
    with open(path, "wb") as f:
        f.write(body)
    print("wrote %s: %d single code points, %d sequences, %d bytes" % (path, len(singles), len(seqs), len(body)))


# ---- the Qwen2-style tokenizer --------------------------------------------------------------

WORDS = ["café", "naïve", "résumé", "Việt Nam", "tiếng Việt", "Hà Nội", "phở", "nguyễn", "đường",
         "한국어", "안녕하세요", "서울", "갑니다", "Ångström", "Ω", "Zürich", "façade", "São Paulo",
         "crème brûlée", "Ελληνικά", "ἀγάπη", "Москва", "йогурт", "ё", "हिन्दी", "क़", "日本語", "がぎぐげご",
         "パピプペポ", "hello", "world", "the", "of", "tokenizer", "normalization", "Qwen", "don't",
         "I'm", "we'll", "they've", "2024", "3.14", "x = y + 1;", "print('hi')", "\t", "\n", "\r\n"]


def variants(s, rng):
    """s in NFC, NFD and a mix (some characters decomposed), Hangul as conjoining jamo."""
    out = [s, ud.normalize("NFD", s)]
    out.append("".join(ud.normalize("NFD", c) if rng.random() < 0.5 else c for c in s))
    return out


def qwen_strings(rng):
    strs = []
    for w in WORDS:
        strs += variants(w, rng)
    for _ in range(400):
        k = rng.randint(1, 7)
        s = "".join(rng.choice(WORDS) + rng.choice([" ", " ", "  ", "\n", ", ", ". ", ""]) for _ in range(k))
        strs.append(rng.choice(variants(s, rng)))
    strs += ["e\u0301", "E\u0301t\u00e9", "\u1100\u1161\u11a8", "\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165",
             "Vie\u0323\u0302t", "Vie\u0302\u0323t", "a\u0323\u0302", "a\u0302\u0323", "\u2126 \u212b \u0958 \u0344",
             "\u0301 leading mark", "cafe\u0301 <|endoftext|> cafe\u0301", "xcafe\u0301y", "café au lait",
             "<|endoftext|>", "e" + "\u0301" * 20, "  e\u0301  \n\n", ""]
    return strs


def write_qwen2(rng):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"])
    train = []
    for _ in range(3000):
        k = rng.randint(1, 6)
        s = " ".join(rng.choice(WORDS) for _ in range(k))
        train.append(rng.choice(variants(s, rng)))
    tok.train_from_iterator(train, trainer)
    # A normalized added token given in decomposed form: it matches "café" and "cafe\u0301".
    tok.add_tokens([AddedToken("cafe\u0301", normalized=True)])
    d = os.path.join(OUT_DIR, "qwen2")
    os.makedirs(d, exist_ok=True)
    cfg = json.loads(tok.to_str())
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))  # check what is stored
    strs = qwen_strings(rng)
    body = [b"MXNQ", u32(1), u32(len(strs))]
    for s in strs:
        ids = tok.encode(s, add_special_tokens=False).ids
        dec = tok.decode(ids, skip_special_tokens=False).encode()
        b = s.encode()
        body += [u32(len(b)), b, u32(len(ids))] + [u32(i) for i in ids] + [u32(len(dec)), dec]
    with open(os.path.join(d, "expected.bin"), "wb") as f:
        f.write(b"".join(body))
    print("wrote %s: vocab %d, %d strings" % (d, tok.get_vocab_size(), len(strs)))


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    rng = random.Random(SEED)
    write_cases(rng)
    write_qwen2(rng)


if __name__ == "__main__":
    main()
