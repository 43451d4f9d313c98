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
The Unicode tables of the C++ normalisers come from tests/reference/make_unicode_tables.py.
"""
import argparse
import base64
import json
import os
import sys
import types

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--whisper-src", required=True)
    parser.add_argument("out_dir")
    args = parser.parse_args()
    out = os.path.join(args.out_dir, "whisper_text")
    os.makedirs(out, exist_ok=True)
    write_tokenizer(out)
    write_normalizer(out, args.whisper_src)


if __name__ == "__main__":
    main()
