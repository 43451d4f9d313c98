#!/usr/bin/python3
"""Fixtures of Whisper's text side (tests/data/test_whisper_text.cpp): a tiny vocabulary in both
official tokenizer formats with the ids whisper_text_ref.py gives, and what openai/whisper's own
English / basic normalisers output on tricky strings.

Usage:
  make_whisper_text_fixtures.py --whisper-src DIR OUT_DIR
      DIR holds the `whisper/normalizers/` package of an openai/whisper checkout (MIT licence,
      (c) 2022 OpenAI): it is imported and RUN here as the reference (needs `regex`; its one
      use of more_itertools, `windowed`, is served by a small shim). Writes OUT_DIR/whisper_text/
        tiny.tiktoken            the BPE's ranks, one "base64(bytes) rank" a line
        hf/vocab.json, hf/merges.txt, hf/added_tokens.json   the same vocabulary in Hugging
                                 Face's WhisperTokenizer layout (<|endoftext|> in vocab.json,
                                 the other specials in added_tokens.json), 51865-style layout
        tokenizer_expected.json  texts (as UTF-8 byte lists) with their ids, decodes of id
                                 lists, the special ids and non-speech tokens
        english.json             whisper/normalizers/english.json, the British -> American
                                 spelling map (MIT licence, from the same checkout)
        normalizer_expected.json inputs with EnglishTextNormalizer / BasicTextNormalizer outputs
  make_whisper_text_fixtures.py --unicode-tables FILE
      rewrites the generated block of FILE (src/eval/text_normalizer.cpp) from this Python's
      unicodedata: NFKD decompositions, canonical combining classes and compositions, the
      general-category classes the normalisers test, and the lowercase mapping.
"""
import argparse
import base64
import json
import os
import sys
import types
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import whisper_text_ref as ref  # noqa: E402

CORPUS = (
    "The quick brown fox jumps over the lazy dog. I'm sure it's fine, they'll say; we've seen "
    "that you'd rather not. Hello world! Hello there, hello again. 1234 5678 90, 3.14159 and "
    "2,000,000 people in 2024. Speech recognition transcribes the speaking voice into text, "
    "and the transcription is compared with the reference transcript. "
    "Café, naïve, résumé, jalapeño, über, Straße, façade, coöperate. "
    "日本語のテキストと中文文本。 Привет, как дела? Ελληνικά γράμματα. "
    "♪ music ♪ (laughs) [applause] -- well... \"quoted\" <tag> {braces} #hash @at "
) * 3

TOKENIZER_TEXTS = [
    "", " ", "  ", "hello", "Hello world", " hello", "hello  world", "hello\nworld",
    "line one\n\nline two\n", "I'm", "they'll", "we've", "you'd", "it's", "DON'T", "don't",
    "1234567", "3.14159", "2,000,000", "1st 2nd 3rd", "   leading spaces", "trailing   ",
    "tab\tseparated", "café naïve", "Straße", "日本語のテキスト", "中文", "Привет мир",
    "emoji 😀🎉!", "♪♪♪ music ♪", "(laughs) [applause]", "<|endoftext|>", "a  \n b",
    "über-cool", "x" * 40, "The quick brown fox jumps over the lazy dog.",
    "\u00a0nbsp", "mixed123abc", "ﬁ ligature", "👍🏽",
]

DECODE_IDS = [
    # byte tokens that do not form valid UTF-8 on their own: replaced by U+FFFD
    "first_byte_of:日", "first_two_bytes_of:😀", "lone_continuation", "specials_dropped",
]

NORMALIZER_TEXTS = [
    "one hundred and twenty three", "twenty first", "$5.50", "3.5%", "1,000,000",
    "two and a half", "Mr. Smith's house", "colour", "The colour of the neighbour's favourite "
    "theatre", "won't", "can't stop", "[laughter] hello", "(inaudible) yes", "hmm I see",
    "uh, um, well", "café naïve", "Œuvre, æsthetic, straße, Łódź", "mr jones", "st. james",
    "10:30 am", "1st place", "the 90s", "in the 1990s", "three quarters", "a half",
    "one oh one", "double five", "triple seven", "minus five degrees", "plus two",
    "twenty dollars", "five pounds", "ten euros", "fifty cents", "$20 million",
    "two million dollars", "one point five", "point five", "zero point three", "ninety nine",
    "nineteen eighty four", "two thousand and twenty four", "a thousand", "one thousand",
    "ones and twos", "the first one", "twentieth century", "sixties", "hundreds of people",
    "hundredth", "millionth", "forty-two", "$2 and 7 cents", "five dollars and fifty cents",
    "it's 5 o'clock", "I'd been there", "she's gone", "we'd done it", "he's got it",
    "they're here", "I'll go", "you've seen", "I'm here", "y'all", "gonna wanna gotta",
    "Dr. Who", "Prof. X", "Jr.", "ma'am", "ain't", "let's go", "imma go", "10.5.3.1",
    "192.168.0.1", "5 per cent", "fifty percent", "twelve percent", "& symbols * + = #",
    "« quotes » “curly” ‘single’", "em — dash – en", "hello... world!!", "U.S.A.",
    "e.g. i.e.", "ﬁne ½ ² ™", "Ｆｕｌｌｗｉｄｔｈ １２３", "Ελληνικά", "日本語", "Ünïcödé",
    "  multiple   spaces\tand\nnewlines  ", "", "1 2 3", "one two three", "eleven twelve",
    "twenty twenty", "two hundred thousand", "three point one four", "seventh heaven",
    "the year two thousand", "£3.20", "€100", "¢50", "100%", "1.5 million", "$0.50",
    "sixes and sevens", "mhm yeah", "umbrella", "I ' m", "analyse organise", "a.m. p.m.",
    "rock 'n' roll", "o'neill", "1/2 cup", "2nd", "33rd", "101st", "catalogue",
    # more numbers
    "five decillion", "nineth", "double oh seven", "three and a half million",
    "one dollar and one cent", "twenty one hundred", "two point five million",
    "hundred and one", "one hundred one", "minus", "point", "and a half", "zero zero seven",
    "$1", "1s", "٣ apples", "the 1950's", "2 percent", "thirty thirds",
    # Unicode: composition, Hangul, final sigma, dotted capital I, presentation forms
    "ΣΊΣΥΦΟΣ ὈΔΥΣΣΕΎΣ", "İstanbul", "한국어 텍스트", "ﷺ ﻻ", "ǅemal ﬀ Å", "e\u0301 a\u0323\u0302",
    "Ⅻ ⑤ ㈱", "x\u00a0y\u2009z", "a'Σ. 日Σ ΌΣΟΣ'", "\uf9d8\uf90f \U0002f800",
]


def shim_more_itertools():
    """english.py imports more_itertools.windowed: a stand-in with the same behaviour for the
    windows of size 3 it asks for (the sequence padded with None when shorter)."""
    module = types.ModuleType("more_itertools")

    def windowed(seq, n):
        seq = list(seq)
        if len(seq) < n:
            yield tuple(seq + [None] * (n - len(seq)))
            return
        for i in range(len(seq) - n + 1):
            yield tuple(seq[i:i + n])

    module.windowed = windowed
    sys.modules["more_itertools"] = module


def write_tokenizer(out):
    ranks, merges = ref.train_bpe(CORPUS, 300)
    with open(os.path.join(out, "tiny.tiktoken"), "w") as f:
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write("%s %d\n" % (base64.b64encode(token).decode(), rank))
    symbols = ref.byte_symbols()
    sym = lambda b: "".join(symbols[x] for x in b)  # noqa: E731
    n_ranks = len(ranks)
    specials = ref.special_tokens(n_ranks, 99)
    vocab = {sym(token): rank for token, rank in ranks.items()}
    vocab["<|endoftext|>"] = n_ranks
    os.makedirs(os.path.join(out, "hf"), exist_ok=True)
    with open(os.path.join(out, "hf", "vocab.json"), "w") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out, "hf", "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (sym(a), sym(b)))
    with open(os.path.join(out, "hf", "added_tokens.json"), "w") as f:
        json.dump({k: v for k, v in specials.items() if k != "<|endoftext|>"}, f, indent=1)

    hf_merges = [(sym(a), sym(b)) for a, b in merges]
    cases = []
    for text in TOKENIZER_TEXTS:
        ids = ref.encode(text, ranks)
        hf_ids = ref.encode_hf(text, vocab, hf_merges)
        assert ref.decode(ids, ranks) == text, text
        cases.append({"text": list(text.encode("utf-8")), "ids": ids, "hf_ids": hf_ids})
    by_bytes = lambda b: ranks[b]  # noqa: E731
    decodes = [
        [by_bytes("日".encode()[:1])],
        [by_bytes(b"a"), by_bytes("😀".encode()[:1]), by_bytes("😀".encode()[1:2]), by_bytes(b"b")],
        [by_bytes("é".encode()[1:2]), by_bytes(b"x")],
        [specials["<|startoftranscript|>"], specials["<|en|>"], by_bytes(b"h"), by_bytes(b"i"),
         specials["<|0.00|>"], n_ranks],
    ]
    decode_cases = [{"ids": ids, "text": list(ref.decode(ids, ranks).encode("utf-8"))} for ids in decodes]
    expected = {
        "n_ranks": n_ranks,
        "cases": cases,
        "decodes": decode_cases,
        "non_speech_tokens": ref.non_speech_tokens(ranks),
        "blank_ids": ref.encode(" ", ranks) + [n_ranks],
        "specials_99": {k: v for k, v in specials.items() if not k.startswith("<|0") and
                        not k.startswith("<|1") and not k.startswith("<|2") and not k.startswith("<|3")},
        "specials_100": {k: v for k, v in ref.special_tokens(n_ranks, 100).items()
                         if k in ("<|yue|>", "<|translate|>", "<|transcribe|>", "<|notimestamps|>",
                                  "<|0.00|>", "<|30.00|>")},
    }
    expected["specials_99"]["<|0.00|>"] = specials["<|0.00|>"]
    expected["specials_99"]["<|30.00|>"] = specials["<|30.00|>"]
    with open(os.path.join(out, "tokenizer_expected.json"), "w") as f:
        json.dump(expected, f, indent=0)
    differ = [bytes(c["text"]).decode() for c in cases if c["ids"] != c["hf_ids"]]
    print("tiktoken vs HF-merge ids differ on:", differ)


def write_normalizer(out, whisper_src):
    shim_more_itertools()
    sys.path.insert(0, whisper_src)
    from whisper.normalizers.basic import BasicTextNormalizer
    from whisper.normalizers.english import EnglishTextNormalizer

    english = EnglishTextNormalizer()
    basic = BasicTextNormalizer()
    basic_diacritics = BasicTextNormalizer(remove_diacritics=True)
    cases = [{"text": t, "english": english(t), "basic": basic(t), "basic_diacritics": basic_diacritics(t)}
             for t in NORMALIZER_TEXTS]
    with open(os.path.join(out, "normalizer_expected.json"), "w") as f:
        json.dump(cases, f, indent=0, ensure_ascii=False)
    with open(os.path.join(whisper_src, "whisper", "normalizers", "english.json")) as f:
        spelling = json.load(f)
    with open(os.path.join(out, "english.json"), "w") as f:
        json.dump(spelling, f, indent=0, ensure_ascii=False)


def hex_rows(items, per_line):
    rows = []
    for i in range(0, len(items), per_line):
        rows.append("    " + " ".join(items[i:i + per_line]))
    return "\n".join(rows)


def unicode_tables():
    """The C++ tables (see src/eval/text_normalizer.cpp for their use)."""
    runs, multi, data = [], [], []
    for cp in range(0x110000):
        if 0xAC00 <= cp <= 0xD7A3:  # Hangul syllables: decomposed by formula
            continue
        c = chr(cp)
        d = unicodedata.normalize("NFKD", c)
        if d == c:
            continue
        if len(d) == 1:
            t = ord(d)
            if runs and runs[-1][1] + 1 == cp and runs[-1][2] + (cp - runs[-1][0]) == t:
                runs[-1][1] = cp
            else:
                runs.append([cp, cp, t])
        else:
            multi.append((cp, len(data), len(d)))
            data += [ord(x) for x in d]
    classes = {"Mn": 1, "Mc": 2, "Me": 2, "Nd": 6, "Nl": 5, "No": 5}
    cats = []
    for cp in range(0x110000):
        cat = unicodedata.category(chr(cp))
        k = classes.get(cat) or {"S": 3, "P": 4, "L": 7}.get(cat[0], 0)
        if k == 0:
            continue
        if cats and cats[-1][1] + 1 == cp and cats[-1][2] == k:
            cats[-1][1] = cp
        else:
            cats.append([cp, cp, k])
    ccc = []
    for cp in range(0x110000):
        k = unicodedata.combining(chr(cp))
        if k == 0:
            continue
        if ccc and ccc[-1][1] + 1 == cp and ccc[-1][2] == k:
            ccc[-1][1] = cp
        else:
            ccc.append([cp, cp, k])
    comp = []
    for cp in range(0x110000):
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        p = [int(x, 16) for x in d.split()]
        if len(p) == 2 and unicodedata.normalize("NFC", chr(p[0]) + chr(p[1])) == chr(cp):
            comp.append((p[0], p[1], cp))
    comp.sort()
    lower = []
    for cp in range(0x110000):
        low = chr(cp).lower()
        if low == chr(cp) or len(low) != 1:  # U+0130's two-character lowercase: by hand
            continue
        delta = ord(low) - cp
        if (lower and lower[-1][2] == delta and cp - lower[-1][1] in (1, 2) and
                lower[-1][3] in (0, cp - lower[-1][1])):
            lower[-1][3] = cp - lower[-1][1]
            lower[-1][1] = cp
        else:
            lower.append([cp, cp, delta, 0])
    # For the final sigma of str.lower(): 1 cased, 2 case-ignorable (what lower() skips when it
    # looks for cased neighbours), probed through lower() itself.
    casing = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        k = 1 if (c + "\u03a3").lower()[-1] == "\u03c2" else 2 if ("A" + c + "\u03a3").lower()[-1] == "\u03c2" else 0
        if k == 0:
            continue
        if casing and casing[-1][1] + 1 == cp and casing[-1][2] == k:
            casing[-1][1] = cp
        else:
            casing.append([cp, cp, k])
    # Each table is one string of hex numbers, `columns` a row, '-' marking negatives; with
    # `delta`, a row's first number is its distance from the previous row's (the first's from 0).
    def table(name, comment, rows, columns, delta=True):
        items, last = [], 0
        for row in rows:
            row = list(row)
            if delta:
                row[0], last = row[0] - last, row[0]
            items += [("-%x" % -v) if v < 0 else "%x" % v for v in row]
        lines = ['    "%s "' % " ".join(items[k:k + 24]) for k in range(0, len(items), 24)]
        return ["// " + comment,
                "constexpr Table %s = {%d, %s, %d," % (name, columns, "true" if delta else "false", len(rows))
                ] + lines + ["};"]

    out = ["// Generated by tests/reference/make_whisper_text_fixtures.py --unicode-tables from "
           "Python %s's" % sys.version.split()[0],
           "// unicodedata (Unicode %s)." % unicodedata.unidata_version,
           "// clang-format off"]
    out += table("kDecompRuns", "NFKD to one code point: lo, hi - lo, target - lo (cp -> cp + that)",
                 [(a, b - a, c - a) for a, b, c in runs], 3)
    out += table("kDecompMulti", "NFKD to several code points: cp, count (the code points: kDecompData)",
                 [(a, c) for a, b, c in multi], 2)
    out += table("kDecompData", "kDecompMulti's decompositions, one after the other", [(x,) for x in data], 1,
                 delta=False)
    out += table("kClassRanges", "lo, hi - lo, CharClass", [(a, b - a, c) for a, b, c in cats], 3)
    out += table("kCombiningClass", "lo, hi - lo, canonical combining class", [(a, b - a, c) for a, b, c in ccc], 3)
    out += table("kCompositions", "first, second, composite (sorted)", comp, 3)
    out += table("kCasing", "lo, hi - lo, 1 cased / 2 case-ignorable", [(a, b - a, c) for a, b, c in casing], 3)
    out += table("kLower", "lo, hi - lo, delta, stride (0: one code point)",
                 [(a, b - a, c, d) for a, b, c, d in lower], 4)
    out.append("// clang-format on")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--whisper-src")
    parser.add_argument("--unicode-tables")
    parser.add_argument("out_dir", nargs="?")
    args = parser.parse_args()
    if args.unicode_tables:
        begin, end = "// BEGIN GENERATED UNICODE TABLES\n", "// END GENERATED UNICODE TABLES\n"
        text = open(args.unicode_tables).read()
        i, j = text.index(begin) + len(begin), text.index(end)
        open(args.unicode_tables, "w").write(text[:i] + unicode_tables() + "\n" + text[j:])
        return
    if not args.whisper_src or not args.out_dir:
        parser.error("give --whisper-src DIR OUT_DIR, or --unicode-tables FILE")
    out = os.path.join(args.out_dir, "whisper_text")
    os.makedirs(out, exist_ok=True)
    write_tokenizer(out)
    write_normalizer(out, args.whisper_src)


if __name__ == "__main__":
    main()
