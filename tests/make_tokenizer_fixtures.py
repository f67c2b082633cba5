#!/usr/bin/env python3
"""Generate tokenizer reference fixtures for myrmex from the Hugging Face `tokenizers` library.

Everything is built locally and deterministically; nothing is downloaded.

  1. A synthetic multilingual corpus (scripts, emoji and ZWJ sequences, combining marks,
     whitespace runs, \\r\\n, digits, code, 1000+ character words, special-token strings
     embedded in text, invalid UTF-8, ...) is generated from a fixed seed and written once,
     shared by every tokenizer: tests/fixtures/tokenizers/corpus.bin.
  2. Small tokenizers configured like the real ones are TRAINED with `tokenizers` on a
     different draw of the same generator plus license-free text found on this machine
     (/usr/share/common-licenses, Python's own stdlib sources), then edited into the shape
     of the real files (special tokens at the end of the vocab, <0xNN> byte tokens, ...):
        llama3   byte-level BPE, Llama-3 split regex, ignore_merges, TemplateProcessing
        gpt2     byte-level BPE, ByteLevel(use_regex=True); merges stored as "a b" strings
        llama2   SentencePiece-style BPE: Prepend/Replace normalizer, byte_fallback, <0xNN>
        mistral  SentencePiece-style BPE: Metaspace pre-tokenizer and decoder, no byte
                 fallback (unknown characters become <unk>, fused)
  3. For every corpus string (bytes; the reference is computed on
     bytes.decode("utf-8", errors="replace")) the ids of encode(add_special_tokens=False),
     for a subset also add_special_tokens=True, and the decode of those ids with
     skip_special_tokens False and True; plus random id sequences and their decodes.
     Written to tests/fixtures/tokenizers/<name>/expected.bin (format in README.md).

Usage:
  python3 tests/make_tokenizer_fixtures.py           # regenerate everything
  python3 tests/make_tokenizer_fixtures.py --verify  # re-read the files and recheck them
                                                     # against the live library
"""

import hashlib
import json
import os
import random
import struct
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures", "tokenizers")

CORPUS_MAGIC = b"MXTC"
EXPECTED_MAGIC = b"MXTE"
FORMAT_VERSION = 1

CORPUS_SEED = 20250114  # the test corpus
TRAIN_SEED = 77031  # the training text (a different draw of the same generator)
N_SENTENCES = 9850  # ordinary generated strings in the test corpus (plus the fixed cases)
SPECIAL_EVERY = 10  # add_special_tokens=True is stored for i % SPECIAL_EVERY == 0 (+ flagged cases)
N_RANDOM_ID_SEQS = 800  # decode-only records per tokenizer

# ----------------------------------------------------------------------------------------
# Unicode: only code points assigned in Python's unicodedata (14.0) are generated. The Rust
# library's regex engine (Oniguruma, in tokenizers 0.23) uses Unicode 16: its \p{L} / \p{N}
# are a strict superset of Python 14's, the extra members all being code points unassigned
# in 14.0, so excluding unassigned code points keeps every generated string classified the
# same by both. (Checked by check_unicode_agreement() below on every run.)
# ----------------------------------------------------------------------------------------


def _assigned(cp):
    if 0xD800 <= cp <= 0xDFFF:
        return False
    return unicodedata.category(chr(cp)) != "Cn"


_ASSIGNED_CACHE = None


def assigned_code_points():
    global _ASSIGNED_CACHE
    if _ASSIGNED_CACHE is None:
        _ASSIGNED_CACHE = [cp for cp in range(0x110000) if _assigned(cp)]
    return _ASSIGNED_CACHE


def check_unicode_agreement():
    """Asserts that, on code points assigned in unicodedata's version, Oniguruma's \\p{L},
    \\p{N} and \\s (as the tokenizers library evaluates them) agree with unicodedata's
    categories and the White_Space list. Returns the whitespace set."""
    from tokenizers import Regex, pre_tokenizers

    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    text = "".join(map(chr, cps))

    def members(pattern):
        kept = set()
        for piece, (a, b) in pre_tokenizers.Split(Regex(pattern), "removed").pre_tokenize_str(text):
            assert text[a:b] == piece
            kept.update(cps[a:b])
        return set(cps) - kept

    letters, numbers, spaces = members(r"\p{L}"), members(r"\p{N}"), members(r"\s")
    for cp in assigned_code_points():
        cat = unicodedata.category(chr(cp))
        assert (cp in letters) == cat.startswith("L"), hex(cp)
        assert (cp in numbers) == cat.startswith("N"), hex(cp)
    white_space = {0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
                   0x202F, 0x205F, 0x3000}
    assert spaces == white_space, sorted(map(hex, spaces ^ white_space))
    return spaces


# ----------------------------------------------------------------------------------------
# Corpus generation
# ----------------------------------------------------------------------------------------

WORDS = {
    "en": "the of and to in is was for that with as on by at from his her they have this which one you were "
    "all we can there been if more when will would who so no time people year way day man thing woman life "
    "child world school state family student group country problem hand part place case week company system "
    "program question work government number night point home water room mother area money story fact month "
    "lot right study book eye job word business issue side kind head house service friend father power hour "
    "game line end member law car city community name president team minute idea kid body information back "
    "parent face others level office door health person art war history party result change morning reason "
    "research girl guy moment air teacher force education tokenizer runtime inference attention transformer "
    "embedding quickly brown fox jumps over lazy dog don't can't won't it's I'm we'll they've she'd you're "
    "O'Neil rock'n'roll well-known state-of-the-art e-mail re-enter naïve café résumé coöperate façade",
    "de": "der die das und ist nicht ein eine zu mit sich des auf für im dem den von auch es an werden aus er "
    "hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur oder aber vor "
    "zur bis mehr durch man sein wurde sei Straße größer Übung Mädchen Fußball schön Bäckerei Weißwurst "
    "Donaudampfschifffahrtsgesellschaftskapitän Rechtsschutzversicherungsgesellschaften Grüße",
    "fr": "le de un être et à il avoir ne je son que se qui ce dans en du elle au pour pas que vous par sur faire "
    "plus dire me on mon lui nous comme mais pouvoir avec tout y aller voir en bien où sans tu ou leur homme si "
    "deux mari moi vouloir te femme venir quand grand celui si notre devoir là jour prendre même votre tout "
    "rien petit encore aussi quelque dont tout mer trouver donner temps ça peu même falloir sous parler alors "
    "français garçon élève être été déjà hôpital naïveté œuvre cœur aujourd'hui c'est l'homme qu'il",
    "es": "el la de que y a en un ser se no haber por con su para como estar tener le lo todo pero más hacer o "
    "poder decir este ir otro ese la si me ya ver porque dar cuando él muy sin vez mucho saber qué sobre mi "
    "alguno mismo yo también hasta año dos querer entre así primero desde grande eso ni nos llegar pasar "
    "tiempo ella sí día uno bien poco deber entonces poner cosa tanto hombre parecer nuestro tan donde ahora "
    "niño señor mañana corazón canción pingüino ¿qué? ¡hola!",
    "pl": "nie się na jest że do to w z co jak ale tak za od jego po już tylko o być przez może mnie jeszcze "
    "źdźbło żółć gęś łódź zażółć gęślą jaźń Szczebrzeszyn chrząszcz brzmi w trzcinie",
    "tr": "ve bir bu da ne için çok ile gibi daha kadar ama sonra o ben sen şey ağaç ığdır İstanbul ılık "
    "öğretmen güneş çiçek Çekoslovakyalılaştıramadıklarımızdanmışsınız",
    "vi": "của và các có được trong là cho những với không này đã người một khi thì để đến nhiều Việt Nam "
    "tiếng ngày hôm nay cảm ơn rất nhiều Hà Nội thành phố Hồ Chí Minh",
    "ru": "и в не на я быть он с что а по это она этот к но они мы как из у который то за свой что весь год "
    "от так о для ты же все тот мочь вы человек такой его сказать только или ещё бы себя один как уже до "
    "время если сам когда другой вот говорить наш мой знать стать при чтобы дело жизнь кто первый очень "
    "два день её новый рука даже во со раз где там под можно ну какой после их работа без самый потом надо "
    "хотеть ли слово идти большой должен место иметь ничто Ёлка ёж съешь же ещё этих мягких французских булок",
    "uk": "і в не на що з як це та до у за від він але ти її ґанок їжак Київ Україна дякую",
    "el": "και το να του η της με που την από είναι για τα στο ο δεν θα των ένα στην σε τους τη μου αλλά "
    "Ελλάδα γλώσσα ευχαριστώ καλημέρα ψυχή ΑΘΗΝΑ Σίσυφος ς σ Σ",
    "ar": "في من على أن إلى التي الذي عن مع هذا هذه كان لا ما هو كل بين قد ذلك بعد عند لم و ثم أو "
    "العربية مرحبا شكرا السلام عليكم كتاب مدرسة القاهرة ٢٠٢٤ ١٢٣",
    "he": "של את על לא זה הוא עם היא אני כל גם אבל מה יש או כי אם שלום תודה עברית ירושלים",
    "hi": "के में की है और से को एक पर यह भी नहीं था कि लिए हैं तो हो गया कर नमस्ते धन्यवाद हिन्दी भारत "
    "क्षत्रिय ज्ञान श्रीमान् २०२४",
    "bn": "এবং আমি তুমি বাংলা ভাষা ধন্যবাদ ঢাকা কলকাতা",
    "ta": "தமிழ் நன்றி வணக்கம் சென்னை மொழி",
    "th": "ที่ และ ใน การ ของ เป็น มี ได้ ไม่ ว่า จะ ให้ กับ นี้ ภาษาไทย สวัสดี ขอบคุณ กรุงเทพมหานคร",
    "zh": "的 一 是 不 了 人 我 在 有 他 这 中 大 来 上 国 个 到 说 们 为 子 和 你 地 出 道 也 时 年 得 就 那 要 下 "
    "以 生 会 自 着 去 之 过 家 学 对 可 她 里 后 小 么 心 多 天 而 能 好 都 然 没 日 于 起 还 发 成 事 只 作 当 想 看 "
    "文 无 开 手 十 用 主 行 方 又 如 前 所 本 见 经 头 面 公 同 三 已 老 从 动 两 长 知 民 样 现 分 将 外 但 身 些 "
    "中华人民共和国 北京 上海 分词器 语言模型 你好世界 謝謝 繁體中文 龘",
    "ja": "の に は を た が で て と し れ さ ある いる も する から な こと として い や れる など なっ ない "
    "この ため その あっ よう また もの という あり まで られ なる へ か だ これ によって により おり より "
    "日本語 東京 ありがとう こんにちは カタカナ ひらがな 漢字 トークナイザー ｶﾀｶﾅ",
    "ko": "이 그 저 것 수 등 들 및 에서 으로 하다 있다 되다 없다 않다 한국어 안녕하세요 감사합니다 서울 "
    "대한민국 토크나이저",
    "ka": "გამარჯობა მადლობა საქართველო",
    "hy": "բարեւ շնորհակալություն Հայաստան",
    "am": "ሰላም አመሰግናለሁ ኢትዮጵያ",
}
LANGS = sorted(WORDS)
WORDLISTS = {k: v.split() for k, v in WORDS.items()}
# weight of each language in generated sentences (English and code dominate, as in real text)
LANG_WEIGHT = {k: (12 if k == "en" else 3 if k in ("de", "fr", "es", "ru", "zh", "ja") else 1) for k in LANGS}

EMOJI = [
    "😀", "😂", "🥲", "🤔", "🙃", "😍", "🔥", "✨", "🎉", "🚀", "🐍", "🦀", "🍕", "🌍", "💯", "👀", "🫠", "🫶",
    "👍🏽", "👋🏿", "🙏🏻", "💪🏾", "🧑🏿‍🚀", "👩🏼‍💻", "👨‍👩‍👧‍👦", "👩‍❤️‍💋‍👨", "🏳️‍🌈", "🏴‍☠️", "🐻‍❄️",
    "🫱🏼‍🫲🏿", "❤️", "❤️‍🔥", "☺️", "✌️", "1️⃣", "#️⃣", "*️⃣", "🇺🇸", "🇯🇵", "🇩🇪", "🇧🇷", "🇺🇦", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "👁️‍🗨️", "🧔‍♀️", "🤷‍♂️", "🙅🏽‍♀️", "©️", "™️", "⌚", "☕", "♻️",
]

# Special-token strings of every fixture tokenizer, and near misses, embedded in text.
SPECIAL_STRINGS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_0|>",
    "<|reserved_special_token_5|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "[INST]", "[/INST]",
]
NEAR_MISSES = [
    "<|eot_id|", "|eot_id|>", "<|eot_id|>>", "<<|eot_id|>", "<|EOT_ID|>", "< s>", "<s >", "<S>", "<<s>>",
    "</s", "<|endoftext|", "<|endoftext|>>", "<|reserved_special_token_99|>", "<0x41>", "<0xE4><0xBD><0xA0>",
    "<0x0A>", "<0xZZ>", "[INST", "[inst]", "<|begin_of_text|", "<|", "|>", "<>", "<|>",
]

CODE_SNIPPETS = [
    "def f(x):\n    return x * 2\n",
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "for (size_t i = 0; i < n; i++) {\r\n    sum += a[i] * b[i];\r\n}\r\n",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son';",
    "$ ls -la /usr/local/bin | grep -E '^d' && echo \"done\" || exit 1",
    "x = [i**2 for i in range(10) if i % 3 == 0]  # squares\n",
    "const f = async (a, b) => { await g(a ?? b); };",
    "#include <stdio.h>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\n",
    "if __name__ == '__main__':\n    main()\n",
    "fn main() { let v: Vec<u8> = vec![0xFF; 16]; println!(\"{:?}\", v); }",
    "<div class=\"x\">&nbsp;&lt;tag&gt;</div>",
    "matrix[i][j] += alpha * (x[i] - y[j]) / 2.0f;",
    "    \t  mixed indentation\n\t\tdeeper\n        spaces\n",
    "https://example.com/path?query=a%20b&x=1#frag",
    "user@example.org, +1 (555) 010-9999, 192.168.0.1:8080",
    "git commit -m \"fix: off-by-one in tokenizer\" --no-verify",
    "a_b_c __init__ CamelCaseName snake_case_name SCREAMING_CASE kebab-case-name",
]

WHITESPACE = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", "\r\n\r\n", " \n", "\n ", " \t ",
              "\u00a0", "\u3000", "\u2009", "\u200a", "\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\u1680",
              "\u202f", "\u205f", "\u200b", "\ufeff", "\x1c", "\x1f"]

PUNCT = list(".,;:!?-—–()[]{}\"'«»“”‘’…/\\|@#$%^&*+=<>~`_") + ["...", "?!", "--", "''", "\"\"", "·", "、", "。", "！", "？", "،", "؟", "।"]

UNICODE_DIGITS = ["٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "０１２３４５６７８９", "²³¹⁴", "½¼¾⅓", "ⅠⅡⅢⅫ", "①②③",
                  "𝟎𝟏𝟐", "〇一二三", "᠐᠑᠒", "๐๑๒"]

COMBINING = ["\u0301", "\u0300", "\u0308", "\u0327", "\u0303", "\u030a", "\u0323", "\u0338", "\u20dd", "\u0489",
             "\u093f", "\u094d", "\u0e31", "\u05b7", "\u064e", "\u0651", "\u302a", "\u1ab0", "\ufe0f", "\u200d"]

APOSTROPHES = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Re", "'rE", "'VE", "'M", "'LL",
               "'Ll", "'D", "'ſ", "'ﬆ", "'K", "’s", "'x", "'", "''s", "'1", "' s"]


def _pick_lang(rng):
    total = sum(LANG_WEIGHT.values())
    r = rng.randrange(total)
    for k in LANGS:
        r -= LANG_WEIGHT[k]
        if r < 0:
            return k
    return LANGS[-1]


def _sentence(rng, lang=None):
    lang = lang or _pick_lang(rng)
    words = WORDLISTS[lang]
    n = rng.randint(1, 18)
    nospace = lang in ("zh", "ja", "th") and rng.random() < 0.7
    out = []
    for i in range(n):
        w = rng.choice(words)
        r = rng.random()
        if r < 0.08:
            w = w.capitalize()
        elif r < 0.11:
            w = w.upper()
        if i and not nospace:
            out.append(" ")
        out.append(w)
        r = rng.random()
        if r < 0.10:
            out.append(rng.choice(",;:"))
        elif r < 0.13:
            out.append(rng.choice(APOSTROPHES))
        elif r < 0.15:
            out.append(" " + str(rng.randint(0, 10 ** rng.randint(1, 7))))
    out.append(rng.choice([".", ".", "!", "?", "", "...", "。" if lang in ("zh", "ja") else "."]))
    return "".join(out)


def _random_chars(rng, n):
    cps = assigned_code_points()
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35:
            out.append(chr(rng.randrange(0x20, 0x7F)))
        elif r < 0.55:
            out.append(chr(rng.choice(cps[:2000])))  # Latin/Greek/Cyrillic/combining region
        elif r < 0.65:
            out.append(rng.choice(WHITESPACE))
        else:
            out.append(chr(rng.choice(cps)))
    return "".join(out)


def _number(rng):
    r = rng.random()
    if r < 0.4:
        return str(rng.randint(0, 10 ** rng.randint(1, 24)))
    if r < 0.6:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}"
    if r < 0.7:
        return f"{rng.randint(0, 10**9):,}"
    if r < 0.8:
        return "".join(rng.choice(rng.choice(UNICODE_DIGITS)) for _ in range(rng.randint(1, 9)))
    if r < 0.9:
        return f"{rng.randint(1, 31):02d}/{rng.randint(1, 12):02d}/{rng.randint(1900, 2100)} {rng.randint(0, 23)}:{rng.randint(0, 59):02d}"
    return "v" + ".".join(str(rng.randint(0, 99)) for _ in range(rng.randint(2, 4)))


def _emoji_text(rng):
    parts = []
    for _ in range(rng.randint(1, 6)):
        r = rng.random()
        if r < 0.5:
            parts.append(rng.choice(EMOJI))
        elif r < 0.8:
            parts.append(_sentence(rng, "en")[: rng.randint(1, 30)])
        else:
            parts.append(rng.choice(EMOJI) * rng.randint(2, 5))
        parts.append(rng.choice(["", " ", " ", "\n"]))
    return "".join(parts)


def _combining_text(rng):
    out = []
    for _ in range(rng.randint(1, 12)):
        base = rng.choice("aeiouAEOnc" + "аеиο" + "कखग" + "กข" + "אב" + "بت" + "ㄱ가")
        out.append(base + "".join(rng.choice(COMBINING) for _ in range(rng.choice([0, 1, 1, 2, 3, 8]))))
        if rng.random() < 0.3:
            out.append(" ")
    s = "".join(out)
    r = rng.random()
    if r < 0.2:
        s = unicodedata.normalize("NFD", s)
    elif r < 0.4:
        s = unicodedata.normalize("NFC", s)
    elif r < 0.5:
        s = unicodedata.normalize("NFKC", s)
    return s


def _whitespace_text(rng):
    out = []
    for _ in range(rng.randint(1, 10)):
        r = rng.random()
        if r < 0.4:
            out.append(rng.choice(WHITESPACE) * rng.randint(1, 4))
        elif r < 0.7:
            out.append(rng.choice(WORDLISTS[_pick_lang(rng)]))
        elif r < 0.8:
            out.append(rng.choice(PUNCT))
        elif r < 0.9:
            out.append(str(rng.randint(0, 99999)))
        else:
            out.append(rng.choice(["\r\n", "\n\n\n", "\t\n", " \r\n  ", "\n\t\t"]))
    return "".join(out)


def _special_text(rng):
    out = []
    for _ in range(rng.randint(1, 6)):
        r = rng.random()
        if r < 0.35:
            out.append(rng.choice(SPECIAL_STRINGS))
        elif r < 0.5:
            out.append(rng.choice(NEAR_MISSES))
        elif r < 0.85:
            out.append(_sentence(rng)[: rng.randint(0, 40)])
        else:
            out.append(rng.choice(WHITESPACE))
    return "".join(out)


def _code_text(rng, code_lines):
    r = rng.random()
    if r < 0.4 or not code_lines:
        return rng.choice(CODE_SNIPPETS)
    i = rng.randrange(len(code_lines))
    return "".join(code_lines[i : i + rng.randint(1, 6)])


def _invalid_utf8(rng):
    """Bytes that are not valid UTF-8, mixed with text."""
    bad = [b"\xff", b"\xfe", b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",
           b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80",
           b"\xe2\x82", b"\xe2", b"\xf0\x9f\x98", b"\xf0\x9f", b"\xc3", b"\xe4\xbd", b"\xc3\x28", b"\xe2\x28\xa1",
           b"\xf0\x28\x8c\xbc", b"\xa0\xa1", b"\xe0\xa0", b"\xf4\x8f\xbf"]
    out = []
    for _ in range(rng.randint(1, 8)):
        r = rng.random()
        if r < 0.4:
            out.append(rng.choice(bad))
        elif r < 0.5:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 6))))
        else:
            out.append(_sentence(rng)[: rng.randint(0, 30)].encode())
    return b"".join(out)


def _long_word(rng):
    """A 1000+ character piece with no (or few) boundaries."""
    n = rng.randint(1000, 2600)
    r = rng.random()
    if r < 0.12:
        return rng.choice("aZ") * n
    if r < 0.22:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
    if r < 0.30:
        return "".join(rng.choice("0123456789") for _ in range(n))
    if r < 0.38:
        return rng.choice([" ", "\n", "\t", "\r\n", " \n"]) * (n // 2) + rng.choice(["", "x", " x"])
    if r < 0.46:
        return "".join(rng.choice(WORDLISTS["zh"]) for _ in range(n // 2))
    if r < 0.54:
        return "".join(rng.choice(EMOJI) for _ in range(n // 4))
    if r < 0.62:
        return "".join(rng.choice("!@#$%^&*()_+-=[]{};:,./<>?") for _ in range(n))
    if r < 0.70:
        return "".join(rng.choice(WORDLISTS["de"]) for _ in range(n // 8))
    if r < 0.78:
        return "x" + "\u0301" * n
    if r < 0.86:
        return "".join(rng.choice(WORDLISTS["ru"]).lower() for _ in range(n // 6))
    return " ".join(_sentence(rng) for _ in range(n // 60))


def fixed_cases():
    """Hand-written edge cases (str or bytes). add_special data is stored for all of them."""
    cases = [
        "", " ", "  ", "\n", "\t", "\r\n", "a", "A", "0", "!", "'", "▁", "▁▁", " ▁", "▁a", "a▁b", "\u3000",
        "Hello world", " Hello world", "Hello  world", "Hello world ", "Hello world  ", "hello\nworld",
        "hello\r\nworld", "hello\n\nworld", "hello \n world", "hello\t\tworld", "  leading", "trailing  ",
        "1", "12", "123", "1234", "12345", "1234567890", "3.14159", "1,000,000", "-42", "+7", "0x1F",
        "١٢٣٤", "١٢٣٤٥", "x²", "½", "Ⅻ", "①②③④",
        "don't", "DON'T", "we'll", "WE'LL", "I'm", "I'M", "they've", "it's", "It'S", "'s", "'S", "'ſ", "x'ſ",
        "x'ſt", "'ll", "'LL", "'Ll", "'lL", "'re", "'RE", "'rE", "'ve", "'VE", "'d", "'D", "'m", "'M", "’s",
        "''s", "'''", "a's b'S c'ſ", "x'K", "x'ﬆ",
        "<s>", "</s>", "<unk>", "<s></s>", "<s><s>", " <s> ", "<s>hi", "hi<s>", "hi <s> there", "hi<s>there",
        "<|eot_id|>", "hi<|eot_id|>there", "hi <|eot_id|> there", "<|eot_id|><|eot_id|>", "<|begin_of_text|>",
        "<|begin_of_text|>Hello", "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|endoftext|>", "a<|endoftext|>b",
        "<|endoftext|><|endoftext|>", "[INST] Hello [/INST]", "[INST]Hello[/INST]", "<|eot_id|", "<|eot_id|>>",
        "<0x41>", "<0xE4><0xBD><0xA0>", "<<s>>", "<|reserved_special_token_0|>", "<|reserved_special_token_99|>",
        "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇯🇵", "1️⃣", "❤️", "🫱🏼‍🫲🏿", "a😀b", " 😀 ", "😀😀😀",
        "e\u0301", "\u0301", "\u0301\u0301", " \u0301", "a\u0301\u0302\u0303", "\u200d", "\u200b", "\ufeff",
        "\ufeffhello", "\u00a0", "a\u00a0b", "\u2028", "\u0085", "\x00", "a\x00b", "\x00\x00", "\x7f", "\x1b[31m",
        "\ufffd", "\ufffd\ufffd", "\uffff" if _assigned(0xFFFF) else "\ufffc", "\U0010fffd", "\ue000",
        "\U0001d54f\U0001d552", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ǅ", "ﬁ", "ß", "İ", "ı", "ς", "ǰ", "ﬃ", "Å", "K",
        "日本語", "中文字符", "한국어", "ภาษาไทย", "हिन्दी", "العربية", "עברית", "Ελληνικά", "Русский",
        "a" * 1000, "a " * 600, " " * 1500, "\n" * 1200, "\t" * 1100, "\r\n" * 700, "0" * 1300, "é" * 1001,
        "日" * 1000, "😀" * 300, "👨‍👩‍👧‍👦" * 100, "<s>" * 400, "<|eot_id|>" * 150, "ab" * 800, "'s" * 600,
        b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xe2\x82\xac",
        b"\xf0\x9f\x98", b"hi\xffthere", b"\xe4\xbd\xa0\xe5\xa5", b"\xff" * 50, b"\xc3\x28", b"a\xe2\x28\xa1b",
        b"<s>\xff</s>", b"\xfe\xff", b"\xf8\x88\x80\x80\x80", b"\x80\x80\x80\x80",
    ]
    return cases


KINDS = {}  # strings per kind in the last make_corpus() call


def make_corpus(seed, n_sentences, code_lines=(), with_fixed=True, long_words=True, invalid=True):
    """Returns (list of bytes, list of bool 'always store add_special')."""
    rng = random.Random(seed)
    items = []
    flags = []
    KINDS.clear()
    if with_fixed:
        for c in fixed_cases():
            items.append(c.encode() if isinstance(c, str) else c)
            flags.append(True)
        KINDS["hand-written edge cases"] = len(items)
    gens = [
        ("sentences", 30, lambda: " ".join(_sentence(rng) for _ in range(rng.randint(1, 3)))),
        ("sentences with line breaks", 6,
         lambda: _sentence(rng) + rng.choice(["\n", "\r\n", "\n\n", " "]) + _sentence(rng)),
        ("random code points", 6, lambda: _random_chars(rng, rng.randint(1, 40))),
        ("numbers", 6,
         lambda: _number(rng) + rng.choice(["", " ", " km", "%", "x", "th"]) + rng.choice(["", " " + _number(rng)])),
        ("emoji", 6, lambda: _emoji_text(rng)),
        ("combining marks", 5, lambda: _combining_text(rng)),
        ("whitespace runs", 8, lambda: _whitespace_text(rng)),
        ("special tokens in text", 6, lambda: _special_text(rng)),
        ("code", 8, lambda: _code_text(rng, code_lines)),
        ("punctuation", 2, lambda: "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 12)))),
        ("contractions", 2,
         lambda: rng.choice(WORDLISTS[_pick_lang(rng)]) + rng.choice(APOSTROPHES) + rng.choice(["", " ", "x"])),
    ]
    if invalid:
        gens.append(("invalid UTF-8", 4, lambda: _invalid_utf8(rng)))
    total = sum(w for _, w, _ in gens)
    for i in range(n_sentences):
        r = rng.randrange(total)
        for kind, w, g in gens:
            r -= w
            if r < 0:
                s = g()
                break
        items.append(s if isinstance(s, bytes) else s.encode())
        flags.append(False)
        KINDS[kind] = KINDS.get(kind, 0) + 1
    if long_words:
        for _ in range(30):
            pre = rng.choice(["", " ", "x", "Hello ", "\n", "1"])
            post = rng.choice(["", " ", ".", " end", "\n"])
            items.append((pre + _long_word(rng) + post).encode())
            flags.append(False)
        KINDS["1000+ character words"] = KINDS.get("1000+ character words", 0) + 30
    return items, flags


def code_lines_from_stdlib():
    """Lines of a fixed set of Python stdlib sources (license-free text on this machine)."""
    import sysconfig

    base = sysconfig.get_paths()["stdlib"]
    names = ["textwrap.py", "json/decoder.py", "json/encoder.py", "string.py", "heapq.py", "bisect.py",
             "fractions.py", "shlex.py", "csv.py", "colorsys.py", "difflib.py", "base64.py"]
    lines = []
    for n in names:
        p = os.path.join(base, n)
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                lines.extend(f.readlines())
    return lines


def license_texts():
    base = "/usr/share/common-licenses"
    out = []
    for n in ["Apache-2.0", "Artistic", "BSD", "GPL-3", "LGPL-3", "MPL-2.0", "GFDL-1.3"]:
        p = os.path.join(base, n)
        if os.path.exists(p):
            with open(p, encoding="utf-8", errors="replace") as f:
                out.append(f.read())
    return out


def training_text():
    code = code_lines_from_stdlib()
    items, _ = make_corpus(TRAIN_SEED, 60000, code, with_fixed=False, long_words=False, invalid=False)
    texts = [b.decode("utf-8") for b in items]
    for t in license_texts():
        texts.extend(p for p in t.split("\n\n") if p.strip())
    # code as whole files' chunks
    for i in range(0, len(code), 20):
        texts.append("".join(code[i : i + 20]))
    return texts


# ----------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_SPECIALS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|reserved_special_token_3|>", "<|reserved_special_token_4|>",
    "<|reserved_special_token_5|>", "<|reserved_special_token_6|>", "<|reserved_special_token_7|>",
]


def _added_token(i, content, special=True):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": not special, "special": special}


def _template(bos, bos_id):
    return {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }


def _train_bytelevel(texts, pre_tokenizer, vocab_size):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=sorted(pre_tokenizers.ByteLevel.alphabet()))
    tok.train_from_iterator(texts, trainer)
    return json.loads(tok.to_str())


def _add_unmerged_words(j, texts, count):
    """Adds `count` frequent pre-tokens that BPE splits into 3+ pieces to the vocab (not to the
    merges), as whole tokens. With ignore_merges (Llama-3) such a pre-token is one token; a
    BPE implementation that ignores the flag splits it."""
    from collections import Counter

    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json.dumps(j))
    counts = Counter()
    for t in texts[:8000]:
        counts.update(p for p, _ in tok.pre_tokenizer.pre_tokenize_str(t) if len(p) >= 5)
    vocab = j["model"]["vocab"]
    added = 0
    for piece, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if piece in vocab or len(tok.model.tokenize(piece)) < 3:
            continue
        vocab[piece] = len(vocab)
        added += 1
        if added == count:
            break


def build_llama3(texts):
    from tokenizers import Regex, pre_tokenizers

    pt = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), "isolated"),
                                  pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    j = _train_bytelevel(texts, pt, 6000)
    _add_unmerged_words(j, texts, 24)
    n = len(j["model"]["vocab"])
    j["added_tokens"] = [_added_token(n + i, s) for i, s in enumerate(LLAMA3_SPECIALS)]
    j["normalizer"] = None
    j["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ],
    }
    j["post_processor"] = {
        "type": "Sequence",
        "processors": [{"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
                       _template("<|begin_of_text|>", n)],
    }
    j["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    j["model"].update(dropout=None, unk_token=None, continuing_subword_prefix=None, end_of_word_suffix=None,
                      fuse_unk=False, byte_fallback=False, ignore_merges=True)
    config = {
        "added_tokens_decoder": {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                               "single_word", "special")} for t in j["added_tokens"]},
        "bos_token": "<|begin_of_text|>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|eot_id|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    gen = {"bos_token_id": n, "eos_token_id": [n + 1, n + 8, n + 9], "do_sample": True, "temperature": 0.6,
           "top_p": 0.9}
    return j, config, gen


def build_gpt2(texts):
    from tokenizers import pre_tokenizers

    pt = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    j = _train_bytelevel(texts, pt, 4000)
    n = len(j["model"]["vocab"])
    j["added_tokens"] = [_added_token(n, "<|endoftext|>")]
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    j["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    j["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    j["model"].update(dropout=None, unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                      fuse_unk=False, byte_fallback=False, ignore_merges=False)
    # merges as "a b" strings, the older form real GPT-2 files use
    j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {str(n): {k: j["added_tokens"][0][k] for k in ("content", "lstrip", "normalized",
                                                                           "rstrip", "single_word", "special")}},
        "bos_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 1024,
        "pad_token": None,
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": "<|endoftext|>",
    }
    return j, config, None


def _train_sp(texts, vocab_size, n_alphabet, specials):
    from collections import Counter

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    # The alphabet: the n_alphabet most frequent characters, ties broken by code point. (The
    # trainer's own limit_alphabet breaks ties in hash order, which is not reproducible.)
    counts = Counter()
    for t in texts:
        counts.update("▁" + t.replace(" ", "▁"))
    alphabet = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n_alphabet]]
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    # Train on ▁-prefixed words (as SentencePiece does), so no merge crosses a word boundary;
    # the saved files use the real normalizer / pre-tokenizer.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=specials, initial_alphabet=alphabet, limit_alphabet=len(alphabet))
    tok.train_from_iterator(texts, trainer)
    return json.loads(tok.to_str())


def build_llama2(texts):
    specials = ["<unk>", "<s>", "</s>"]
    j = _train_sp(texts, 4000, 400, specials)
    old = j["model"]["vocab"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    vocab = {s: i for i, s in enumerate(specials)}
    for b in byte_tokens:
        vocab[b] = len(vocab)
    for s, _ in sorted(old.items(), key=lambda kv: kv[1]):
        if s not in vocab:
            vocab[s] = len(vocab)
    j["model"]["vocab"] = vocab
    j["added_tokens"] = [_added_token(i, s) for i, s in enumerate(specials)]
    j["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                           {"type": "Replace", "pattern": {"String": " "},
                                                            "content": "▁"}]}
    j["pre_tokenizer"] = None
    j["post_processor"] = _template("<s>", 1)
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
    ]}
    j["model"].update(dropout=None, unk_token="<unk>", continuing_subword_prefix=None, end_of_word_suffix=None,
                      fuse_unk=True, byte_fallback=True, ignore_merges=False)
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                               "single_word", "special")} for t in j["added_tokens"]},
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": True,
        "model_max_length": 4096,
        "pad_token": None,
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
    }
    gen = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "do_sample": True, "temperature": 0.6}
    return j, config, gen


def build_mistral(texts):
    specials = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"]
    j = _train_sp(texts, 3000, 900, specials)
    j["added_tokens"] = [_added_token(i, s) for i, s in enumerate(specials)]
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    j["post_processor"] = _template("<s>", 1)
    j["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    j["model"].update(dropout=None, unk_token="<unk>", continuing_subword_prefix=None, end_of_word_suffix=None,
                      fuse_unk=True, byte_fallback=False, ignore_merges=False)
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                               "single_word", "special")} for t in j["added_tokens"]},
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": False,
        "model_max_length": 32768,
        "pad_token": None,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
    }
    return j, config, None


BUILDERS = {"llama3": build_llama3, "gpt2": build_gpt2, "llama2": build_llama2, "mistral": build_mistral}
NAMES = list(BUILDERS)

# ----------------------------------------------------------------------------------------
# Reference computation and the binary formats
# ----------------------------------------------------------------------------------------


def _varint(v):
    assert v >= 0
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf, pos):
    v = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, pos


def write_corpus(path, items):
    with open(path, "wb") as f:
        f.write(CORPUS_MAGIC + struct.pack("<II", FORMAT_VERSION, len(items)))
        for b in items:
            f.write(struct.pack("<I", len(b)) + b)


def read_corpus(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == CORPUS_MAGIC
    version, n = struct.unpack_from("<II", data, 4)
    assert version == FORMAT_VERSION
    pos = 12
    items = []
    for _ in range(n):
        (ln,) = struct.unpack_from("<I", data, pos)
        pos += 4
        items.append(data[pos : pos + ln])
        pos += ln
    assert pos == len(data)
    return items


def _ids(ids):
    return _varint(len(ids)) + b"".join(_varint(i) for i in ids)


def _text(t, refs):
    """refs: earlier texts of the record, index 0 = the corpus string (if valid UTF-8)."""
    for k, r in enumerate(refs):
        if r is not None and t == r:
            return _varint(k)
    b = t.encode("utf-8")
    return _varint(len(b) + 4) + b


def _special_ids(j):
    return sorted(t["id"] for t in j["added_tokens"] if t["special"])


def random_id_seqs(rng, j, n):
    """Random id sequences for decode-only checks: uniform ids, byte-token runs (valid and
    invalid UTF-8 when <0xNN> tokens exist), and specials mixed in."""
    vocab = j["model"]["vocab"]
    size = max(max(vocab.values()), *(t["id"] for t in j["added_tokens"])) + 1
    byte_ids = [vocab[f"<0x{b:02X}>"] for b in range(256) if f"<0x{b:02X}>" in vocab]
    specials = _special_ids(j)
    # ids of single-byte byte-level tokens (the 256 alphabet chars), when byte-level
    from tokenizers import pre_tokenizers

    bl_ids = [vocab[c] for c in sorted(pre_tokenizers.ByteLevel.alphabet()) if c in vocab]
    seqs = []
    for i in range(n):
        ln = rng.choice([1, 1, 2, 3, 4, 5, 8, 13, 21, 40])
        seq = []
        for _ in range(ln):
            r = rng.random()
            if r < 0.5:
                seq.append(rng.randrange(size))
            elif r < 0.8 and (byte_ids or bl_ids):
                seq.append(rng.choice(byte_ids or bl_ids))
            elif r < 0.9 and byte_ids:
                # a valid multi-byte character as byte tokens, sometimes cut short
                ch = chr(rng.choice(assigned_code_points()[128:]))
                bs = ch.encode()
                if rng.random() < 0.3:
                    bs = bs[: rng.randrange(1, len(bs) + 1)]
                seq.extend(byte_ids[b] for b in bs)
            else:
                seq.append(rng.choice(specials))
        seqs.append(seq)
    return seqs


def bos_eos(j, config, gen):
    """bos id (-1 when none) and eos ids as tokenizer_config.json + generation_config.json name them."""
    vocab = dict(j["model"]["vocab"])
    for t in j["added_tokens"]:
        vocab[t["content"]] = t["id"]
    bos = vocab.get(config.get("bos_token"), -1) if config.get("bos_token") else -1
    eos = []
    if config.get("eos_token") in vocab:
        eos.append(vocab[config["eos_token"]])
    e = (gen or {}).get("eos_token_id")
    for x in e if isinstance(e, list) else [] if e is None else [e]:
        if x not in eos:
            eos.append(x)
    return bos, eos


class _Buf:
    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos

    def u32(self, n=None):
        if n is None:
            (v,) = struct.unpack_from("<I", self.data, self.pos)
            self.pos += 4
            return v
        v = list(struct.unpack_from(f"<{n}I", self.data, self.pos))
        self.pos += 4 * n
        return v

    def i32(self):
        (v,) = struct.unpack_from("<i", self.data, self.pos)
        self.pos += 4
        return v

    def byte(self):
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self):
        v, self.pos = _read_varint(self.data, self.pos)
        return v

    def ids(self):
        return [self.varint() for _ in range(self.varint())]

    def text(self, refs):
        tag = self.varint()
        if tag < 4:
            assert refs[tag] is not None, "text refers to a missing reference"
            return refs[tag]
        t = self.data[self.pos : self.pos + tag - 4].decode("utf-8")
        self.pos += tag - 4
        return t


def encode_expected(tok, j, config, gen, items, flags, seed):
    """The bytes of expected.bin (format version 1, see README.md) and statistics."""
    bos, eos = bos_eos(j, config, gen)
    special_ids = _special_ids(j)
    stats = {"strings": len(items), "tokens": 0, "special_records": 0, "decode_ne_input": 0, "max_ids": 0}
    texts = [b.decode("utf-8", errors="replace") for b in items]
    enc0 = tok.encode_batch(texts, add_special_tokens=False)
    body = bytearray()
    for i, (b, text) in enumerate(zip(items, texts)):
        valid = text.encode("utf-8") == b
        ids0 = enc0[i].ids
        d0 = tok.decode(ids0, skip_special_tokens=False)
        d1 = tok.decode(ids0, skip_special_tokens=True)
        stats["tokens"] += len(ids0)
        stats["max_ids"] = max(stats["max_ids"], len(ids0))
        stats["decode_ne_input"] += d0 != text
        body += _ids(ids0)
        refs = [text if valid else None]
        body += _text(d0, refs)
        refs.append(d0)
        body += _text(d1, refs)
        refs.append(d1)
        has_special = flags[i] or i % SPECIAL_EVERY == 0
        body.append(1 if has_special else 0)
        if has_special:
            stats["special_records"] += 1
            ids1 = tok.encode(text, add_special_tokens=True).ids
            d2 = tok.decode(ids1, skip_special_tokens=False)
            d3 = tok.decode(ids1, skip_special_tokens=True)
            body += _ids(ids1)
            body += _text(d2, refs)
            refs.append(d2)
            body += _text(d3, refs)
    seqs = random_id_seqs(random.Random(seed), j, N_RANDOM_ID_SEQS)
    for seq in seqs:
        d0 = tok.decode(seq, skip_special_tokens=False)
        d1 = tok.decode(seq, skip_special_tokens=True)
        body += _ids(seq) + _text(d0, [None]) + _text(d1, [None, d0])
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    head = EXPECTED_MAGIC + struct.pack("<IIIIiI", FORMAT_VERSION, len(items), len(seqs), vocab_size, bos, len(eos))
    head += struct.pack(f"<{len(eos)}I", *eos)
    head += struct.pack("<I", len(special_ids)) + struct.pack(f"<{len(special_ids)}I", *special_ids)
    stats["id_seqs"] = len(seqs)
    return bytes(head + body), stats


def read_expected(path, items):
    """Parses expected.bin. Returns (header dict, list of corpus records, list of id-sequence
    records); a corpus record is (ids0, d0, d1, ids1 or None, d2, d3), a sequence record
    (ids, d0, d1)."""
    with open(path, "rb") as f:
        buf = _Buf(f.read())
    assert buf.data[:4] == EXPECTED_MAGIC, path
    buf.pos = 4
    version, n_corpus, n_seqs, vocab_size = buf.u32(4)
    assert version == FORMAT_VERSION and n_corpus == len(items)
    bos = buf.i32()
    eos = buf.u32(buf.u32())
    specials = buf.u32(buf.u32())
    corpus = []
    for b in items:
        try:
            s = b.decode("utf-8")
        except UnicodeDecodeError:
            s = None
        ids0 = buf.ids()
        refs = [s]
        refs.append(buf.text(refs))
        refs.append(buf.text(refs))
        ids1 = None
        if buf.byte():
            ids1 = buf.ids()
            refs.append(buf.text(refs))
            refs.append(buf.text(refs))
        corpus.append((ids0, refs[1], refs[2], ids1, refs[3] if ids1 is not None else None, refs[4] if ids1 is not None else None))
    seqs = []
    for _ in range(n_seqs):
        ids = buf.ids()
        d0 = buf.text([None])
        d1 = buf.text([None, d0])
        seqs.append((ids, d0, d1))
    assert buf.pos == len(buf.data), "trailing bytes"
    head = {"vocab_size": vocab_size, "bos": bos, "eos": eos, "specials": specials}
    return head, corpus, seqs


def load_tokenizer(name):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(os.path.join(OUT_DIR, name, "tokenizer.json"))


def load_corpus():
    return read_corpus(os.path.join(OUT_DIR, "corpus.bin"))


def verify(names):
    """Re-reads every file and rechecks it against the live library."""
    items = load_corpus()
    texts = [b.decode("utf-8", errors="replace") for b in items]
    for name in names:
        tok = load_tokenizer(name)
        head, corpus, seqs = read_expected(os.path.join(OUT_DIR, name, "expected.bin"), items)
        bad = 0
        enc = tok.encode_batch(texts, add_special_tokens=False)
        for i, (ids0, d0, d1, ids1, d2, d3) in enumerate(corpus):
            ok = enc[i].ids == ids0 and tok.decode(ids0, skip_special_tokens=False) == d0
            ok = ok and tok.decode(ids0, skip_special_tokens=True) == d1
            if ids1 is not None:
                ok = ok and tok.encode(texts[i], add_special_tokens=True).ids == ids1
                ok = ok and tok.decode(ids1, skip_special_tokens=False) == d2
                ok = ok and tok.decode(ids1, skip_special_tokens=True) == d3
            bad += not ok
        for ids, d0, d1 in seqs:
            bad += tok.decode(ids, skip_special_tokens=False) != d0 or tok.decode(ids, skip_special_tokens=True) != d1
        print(f"{name}: {len(corpus)} strings, {len(seqs)} id sequences, {bad} mismatches")
        if bad:
            sys.exit(1)


def check_merges_string_form(j, items):
    """The "a b" string form of merges loads to the same tokenizer as the ["a","b"] pair form."""
    from tokenizers import Tokenizer

    a = json.loads(json.dumps(j))
    b = json.loads(json.dumps(j))
    a["model"]["merges"] = [m.split(" ") if isinstance(m, str) else list(m) for m in a["model"]["merges"]]
    b["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in b["model"]["merges"]]
    assert all(len(m) == 2 for m in a["model"]["merges"]), "a token contains a space"
    ta, tb = Tokenizer.from_str(json.dumps(a)), Tokenizer.from_str(json.dumps(b))
    texts = [x.decode("utf-8", errors="replace") for x in items]
    ea = [e.ids for e in ta.encode_batch(texts, add_special_tokens=False)]
    eb = [e.ids for e in tb.encode_batch(texts, add_special_tokens=False)]
    assert ea == eb, "merges in string form encode differently"
    assert json.loads(ta.to_str())["model"]["merges"] == json.loads(tb.to_str())["model"]["merges"]


def count_ignore_merges_effect(j, items):
    """How many corpus strings encode differently with ignore_merges false (llama3)."""
    from tokenizers import Tokenizer

    k = json.loads(json.dumps(j))
    k["model"]["ignore_merges"] = not k["model"]["ignore_merges"]
    t0, t1 = Tokenizer.from_str(json.dumps(j)), Tokenizer.from_str(json.dumps(k))
    texts = [x.decode("utf-8", errors="replace") for x in items]
    e0 = t0.encode_batch(texts, add_special_tokens=False)
    e1 = t1.encode_batch(texts, add_special_tokens=False)
    return sum(a.ids != b.ids for a, b in zip(e0, e1))


def check_transformers(name, items):
    """Diagnostic: transformers' AutoTokenizer on the directory against the raw library."""
    try:
        from transformers import AutoTokenizer
    except Exception as e:  # noqa: BLE001
        return f"transformers unavailable ({e})"
    d = os.path.join(OUT_DIR, name)
    try:
        at = AutoTokenizer.from_pretrained(d, local_files_only=True)
    except Exception as e:  # noqa: BLE001
        return f"AutoTokenizer failed: {type(e).__name__}: {e}"
    tok = load_tokenizer(name)
    diffs = {"encode": 0, "encode_special": 0, "decode": 0, "decode_skip": 0}
    for b in items[:3000]:
        t = b.decode("utf-8", errors="replace")
        ids = tok.encode(t, add_special_tokens=False).ids
        diffs["encode"] += at.encode(t, add_special_tokens=False) != ids
        diffs["encode_special"] += at.encode(t, add_special_tokens=True) != tok.encode(t, add_special_tokens=True).ids
        diffs["decode"] += at.decode(ids, skip_special_tokens=False) != tok.decode(ids, skip_special_tokens=False)
        diffs["decode_skip"] += at.decode(ids, skip_special_tokens=True) != tok.decode(ids, skip_special_tokens=True)
    return f"{type(at).__name__}: differences from tokenizers on 3000 strings: {diffs}"


def _dump_json(obj, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def _dump_tokenizer_json(j, path):
    """Pretty-printed like the Hub's files, but with one vocab entry / merge per line."""
    k = dict(j)
    k["model"] = dict(j["model"], vocab="@VOCAB@", merges="@MERGES@")
    text = json.dumps(k, ensure_ascii=False, indent=2)
    dump = lambda v: json.dumps(v, ensure_ascii=False)  # noqa: E731
    vocab = "{\n" + ",\n".join(f"      {dump(t)}: {i}" for t, i in j["model"]["vocab"].items()) + "\n    }"
    merges = "[\n" + ",\n".join(f"      {dump(m)}" for m in j["model"]["merges"]) + "\n    ]"
    text = text.replace('"@VOCAB@"', vocab, 1).replace('"@MERGES@"', merges, 1)
    assert json.loads(text) == j
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def main(argv):
    if "--verify" in argv:
        verify([a for a in argv if not a.startswith("-")] or NAMES)
        return
    import tokenizers

    names = [a for a in argv if not a.startswith("-")] or NAMES
    check_unicode_agreement()
    os.makedirs(OUT_DIR, exist_ok=True)
    code = code_lines_from_stdlib()
    items, flags = make_corpus(CORPUS_SEED, N_SENTENCES, code)
    kinds = dict(KINDS)
    write_corpus(os.path.join(OUT_DIR, "corpus.bin"), items)
    n_invalid = sum(1 for b in items if b.decode("utf-8", errors="replace").encode() != b)
    print(f"corpus: {len(items)} strings, {sum(map(len, items))} bytes, {n_invalid} invalid UTF-8, "
          f"{sum(1 for b in items if len(b.decode('utf-8', 'replace')) >= 1000)} of 1000+ chars, "
          f"sha256 {hashlib.sha256(open(os.path.join(OUT_DIR, 'corpus.bin'), 'rb').read()).hexdigest()[:16]}")
    print("  kinds: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    texts = training_text()
    print(f"training text: {len(texts)} pieces, {sum(len(t.encode()) for t in texts)} bytes, sha256 "
          f"{hashlib.sha256(chr(0).join(texts).encode()).hexdigest()[:16]} (tokenizers {tokenizers.__version__})")
    for idx, name in enumerate(names):
        from tokenizers import Tokenizer

        j, config, gen = BUILDERS[name](texts)
        d = os.path.join(OUT_DIR, name)
        os.makedirs(d, exist_ok=True)
        _dump_tokenizer_json(j, os.path.join(d, "tokenizer.json"))
        _dump_json(config, os.path.join(d, "tokenizer_config.json"))
        if gen:
            _dump_json(gen, os.path.join(d, "generation_config.json"))
        elif os.path.exists(os.path.join(d, "generation_config.json")):
            os.remove(os.path.join(d, "generation_config.json"))
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        check_merges_string_form(j, items[:4000])
        data, stats = encode_expected(tok, j, config, gen, items, flags, seed=CORPUS_SEED + 1 + NAMES.index(name))
        with open(os.path.join(d, "expected.bin"), "wb") as f:
            f.write(data)
        sizes = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
        extra = ""
        if j["model"].get("ignore_merges"):
            extra = f", ignore_merges changes {count_ignore_merges_effect(j, items)} strings"
        print(f"{name}: vocab {tok.get_vocab_size()} ({len(j['added_tokens'])} added), {stats}{extra}, files {sizes}")
        print(f"  {check_transformers(name, items)}")
    verify(names)


if __name__ == "__main__":
    main(sys.argv[1:])
