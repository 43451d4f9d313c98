#!/usr/bin/python3
"""Whisper's tokenizer, written from whisper/tokenizer.py's description of it, as the reference
for the C++ port (src/data/whisper_tokenizer.cpp): byte-level BPE over tiktoken rank files, and
the special-token layout appended after the ranks.

Encoding (tiktoken, as whisper's get_encoding builds it): split the text with GPT-2's pattern
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
(the `regex` module), then per piece: the piece's own rank when its bytes are a token, else
repeatedly merge the adjacent pair whose concatenated bytes have the lowest rank (leftmost on a
tie). Decoding joins the tokens' bytes and decodes UTF-8 with errors="replace".

Specials, numbered from len(ranks) on: <|endoftext|>, <|startoftranscript|>, one <|xx|> per
language (the first num_languages of LANGUAGE_CODES), <|translate|>, <|transcribe|>,
<|startoflm|>, <|startofprev|>, <|nospeech|>, <|notimestamps|>, <|0.00|> ... <|30.00|>.
num_languages = n_vocab - 51765 - is_multilingual, is_multilingual = n_vocab >= 51865.

Importing this module has no side effects.
"""
import base64
import collections

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# whisper/tokenizer.py's LANGUAGES keys, in its order (the 100th, yue, is large-v3's).
LANGUAGE_CODES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no "
    "th ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw "
    "gl mr pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl "
    "mg as tt haw ln ha ba jw su yue"
).split()


def byte_symbols():
    """GPT-2's bytes_to_unicode: byte -> printable stand-in character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 256
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(extra)
            extra += 1
    return table


def special_tokens(n_ranks, num_languages):
    names = ["<|endoftext|>", "<|startoftranscript|>"]
    names += ["<|%s|>" % code for code in LANGUAGE_CODES[:num_languages]]
    names += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
              "<|nospeech|>", "<|notimestamps|>"]
    names += ["<|%.2f|>" % (i * 0.02) for i in range(1501)]
    return {name: n_ranks + i for i, name in enumerate(names)}


def num_languages_for(n_vocab):
    multilingual = n_vocab >= 51865
    return n_vocab - 51765 - int(multilingual), multilingual


def train_bpe(text, n_merges):
    """Ranks (bytes -> rank): the 256 bytes in bytes_to_unicode order, then `n_merges` merges
    of the most frequent adjacent pair (ties: the smallest pair of ranks). Also the merges as
    (left bytes, right bytes) pairs, for the Hugging Face files."""
    symbols = byte_symbols()
    order = sorted(range(256), key=lambda b: (ord(symbols[b]) >= 256, ord(symbols[b])))
    ranks = {bytes([b]): i for i, b in enumerate(order)}
    words = collections.Counter(tuple(bytes([b]) for b in piece.encode("utf-8"))
                                for piece in regex.findall(GPT2_PATTERN, text))
    merges = []
    while len(merges) < n_merges:
        pairs = collections.Counter()
        for word, count in words.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], -ranks[kv[0][0]], -ranks[kv[0][1]]))[0]
        merged = best[0] + best[1]
        if merged in ranks:  # the same bytes reached by another split: keep one rank
            words = collections.Counter({merge_word(w, best): c for w, c in words.items()})
            continue
        ranks[merged] = len(ranks)
        merges.append(best)
        words = collections.Counter({merge_word(w, best): c for w, c in words.items()})
    return ranks, merges


def merge_word(word, pair):
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def bpe_piece(piece, ranks):
    if piece in ranks:
        return [ranks[piece]]
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, best_rank = -1, None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best_rank is None or r < best_rank):
                best, best_rank = i, r
        if best < 0:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return [ranks[p] for p in parts]


def encode(text, ranks):
    ids = []
    for piece in regex.findall(GPT2_PATTERN, text):
        ids += bpe_piece(piece.encode("utf-8"), ranks)
    return ids


def encode_hf(text, vocab, merges):
    """Hugging Face's byte-level BPE: merge every occurrence of the best-ranked listed pair."""
    symbols = byte_symbols()
    merge_rank = {pair: i for i, pair in enumerate(merges)}
    ids = []
    for piece in regex.findall(GPT2_PATTERN, text):
        word = ["".join(symbols[b]) for b in piece.encode("utf-8")]
        while len(word) > 1:
            pairs = [(merge_rank.get((a, b), 1 << 60), (a, b)) for a, b in zip(word, word[1:])]
            rank, pair = min(pairs)
            if rank == 1 << 60:
                break
            word = list(merge_word(word, pair))
        ids += [vocab[w] for w in word]
    return ids


def decode(ids, ranks):
    by_rank = {r: b for b, r in ranks.items()}
    eot = len(ranks)
    return b"".join(by_rank[i] for i in ids if i < eot).decode("utf-8", errors="replace")


def non_speech_tokens(ranks):
    """whisper/tokenizer.py's Tokenizer.non_speech_tokens."""
    symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
    symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
    miscellaneous = list("♩♪♫♬♭♮♯")
    result = {encode(" -", ranks)[0], encode(" '", ranks)[0]}
    for symbol in symbols + miscellaneous:
        for tokens in (encode(symbol, ranks), encode(" " + symbol, ranks)):
            if len(tokens) == 1 or symbol in miscellaneous:
                result.add(tokens[0])
    return sorted(result)


def read_tiktoken(path):
    ranks = {}
    for line in open(path):
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks
