#!/usr/bin/python3
"""BERT's uncased WordPiece tokenisation as Hugging Face's BertTokenizerFast runs it for
bert-base-uncased (what X-ARES' RetrivalMLP calls through AutoTokenizer), written from the
tokenizers library's description, as the reference for src/data/wordpiece.cpp.

Steps, in the fast tokenizer's order:
  added tokens  the literal special tokens ([PAD] [UNK] [CLS] [SEP] [MASK], the ones the vocab has)
                are cut out of the raw text first (leftmost, longest) and keep their ids;
  BertNormalizer(clean_text, handle_chinese_chars, strip_accents=None -> lowercase, lowercase):
    clean       U+0000, U+FFFD and "other" characters (Cc Cf Co Cs, tab / LF / CR excepted) go;
                White_Space characters (and tab / LF / CR) become ' ';
    chinese     a space either side of each CJK ideograph (the fast tokenizer's block list);
    accents     NFD, then non-spacing marks (Mn) go;
    lowercase   per code point (char::to_lowercase: no final-sigma rule);
  BertPreTokenizer: split on White_Space, each punctuation character (ASCII punctuation or a P*
                category) its own word;
  WordPiece:    a word of more than 100 code points is [UNK]; otherwise greedy longest match from
                the left, continuation pieces prefixed "##"; any unmatched rest makes the whole
                word [UNK];
  template:     [CLS] ... [SEP]; a batch is padded with [PAD] to its longest row.

The fallback vocabulary (no vocab.txt): [PAD] [UNK] [CLS] [SEP] [MASK], then the sorted distinct
words the normaliser and pre-tokenizer find in the training captions (sorted by UTF-8 bytes).

The Unicode tables of the C++ side come from tests/reference/make_unicode_tables.py.

Importing this module has no side effects.
"""
import string
import unicodedata

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_WORD_CHARS = 100
WHITE_SPACE = set([chr(c) for c in range(0x09, 0x0E)] + [" ", "\x85", "\xa0", "\u1680"] +
                  [chr(c) for c in range(0x2000, 0x200B)] + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"])
CJK = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
       (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]


def is_control(c):
    return c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs")


def is_punctuation(c):
    return c in string.punctuation or unicodedata.category(c).startswith("P")


def is_cjk(c):
    return any(lo <= ord(c) <= hi for lo, hi in CJK)


def normalize(text):
    text = "".join(" " if (c in WHITE_SPACE) else c for c in text
                   if not (c == "\0" or c == "\ufffd" or is_control(c)))
    text = "".join(" " + c + " " if is_cjk(c) else c for c in text)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    return "".join(c.lower() for c in text)


def pre_tokenize(text):
    words, cur = [], ""
    for c in text:
        if c in WHITE_SPACE or is_punctuation(c):
            if cur:
                words.append(cur)
            cur = ""
            if c not in WHITE_SPACE:
                words.append(c)
        else:
            cur += c
    if cur:
        words.append(cur)
    return words


def basic_tokenize(text):
    return pre_tokenize(normalize(text))


def wordpiece(word, vocab):
    if len(word) > MAX_WORD_CHARS:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        end, found = len(word), None
        while start < end:
            piece = ("##" if start > 0 else "") + word[start:end]
            if piece in vocab:
                found = piece
                break
            end -= 1
        if found is None:
            return ["[UNK]"]
        pieces.append(found)
        start = end
    return pieces


def split_specials(text, vocab):
    """[(is_special, segment)] with the vocabulary's special tokens cut out (leftmost, longest)."""
    specials = [s for s in SPECIALS if s in vocab]
    out, i, start = [], 0, 0
    while i < len(text):
        hit = max((s for s in specials if text.startswith(s, i)), key=len, default=None)
        if hit is None:
            i += 1
            continue
        if i > start:
            out.append((False, text[start:i]))
        out.append((True, hit))
        i = start = i + len(hit)
    if start < len(text):
        out.append((False, text[start:]))
    return out


def tokenize(text, vocab):
    pieces = []
    for special, segment in split_specials(text, vocab):
        if special:
            pieces.append(segment)
        else:
            for word in basic_tokenize(segment):
                pieces += wordpiece(word, vocab)
    return pieces


def encode(text, vocab):
    return [vocab["[CLS]"]] + [vocab[p] for p in tokenize(text, vocab)] + [vocab["[SEP]"]]


def read_vocab(path):
    """vocab.txt: token -> id (the line number; a later duplicate wins, as load_vocab does)."""
    vocab = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n").rstrip("\r")] = i
    return vocab


def caption_vocab(captions):
    words = sorted({w for c in captions for w in basic_tokenize(c)}, key=lambda w: w.encode())
    return {t: i for i, t in enumerate(SPECIALS + [w for w in words if w not in SPECIALS])}
