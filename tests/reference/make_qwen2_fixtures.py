#!/usr/bin/python3
"""Fixtures for the Qwen2 decoder port and its tokenizer.json BPE (tests/models/test_qwen2.cpp,
tests/data/test_hf_tokenizer.cpp), computed with Debian's python3-torch 1.13 from qwen2_ref.py:

    /usr/bin/python3 tests/reference/make_qwen2_fixtures.py tests/fixtures

Writes
  OUT_DIR/qwen2_tiny/   a Hugging Face folder shaped as Qwen/Qwen2.5-0.5B's:
      config.json         hidden 64, 2 layers, 4 heads, 2 kv heads (head_dim 16), intermediate 128,
                          vocab 416, rope_theta 1e6, eps 1e-6, tied embeddings
      model.safetensors   random weights (seed 0) stored as bfloat16, as Qwen ships them; the
                          reference computes with the same values cast to float32
      tokenizer.json      a byte-level BPE trained here on CORPUS (256 bytes + N_MERGES merges),
                          Qwen2's normalizer / pre-tokenizer / decoder, and the added tokens
                          <|endoftext|> <|im_start|> <|im_end|> <|vision_end|> (special),
                          <tool_call> </tool_call> (not special, as in Qwen2.5) and <|cafe\u0301|>
                          (not special, normalized: matched on the NFC'd text)
      tokenizer_config.json  eos_token / pad_token <|endoftext|>
      generation_config.json
  OUT_DIR/qwen2_expected.safetensors
      tiny/ids, tiny/mask (2, 8) int64, right padding (row 1: 6 tokens), tiny/logits (2, 8, 416)
          forward(embed(ids), mask) (positions 0..7)
      cache/ids1 (2, 6), cache/ids2 (2, 3), cache/mask (2, 9) (row 1 has a 0 at 2: padding in the
          middle), cache/logits2 (2, 3, 416): the second of two calls with one cache
      gen/embeds (2, 8, 64), gen/mask (2, 8): X-ARES's prompt layout (6 "audio" frames, row 1
          with only 4 real ones, then the embedding of <|vision_end|> and of " the");
          gen/ids{r} greedy ids of row r (12 new tokens max, repetition penalty 1.1, eos
          <|endoftext|>), gen/stop_ids{r} the same with eos = the token row 0 generates
          latest that row 1 never does (metadata gen_stop_eos), pad = <|endoftext|>; gen/plain_ids{r} without the penalty
      big/ids (2, 4), big/mask (2, 4) (row 1's last is 0), big/logits (2, 4, 512): the
          "0.5B-shaped" config (hidden 896, 14 heads, 2 kv heads, head_dim 64, intermediate 4864,
          rope_theta 1e6, eps 1e-6, tied) with 2 layers and vocab 512, weights from
          qwen2_ref.formula_weights (both sides compute them; nothing but the logits committed)
      tok/text (uint8 UTF-8), tok/ids (int32), tok/ids_plain (int32, parse_special=False),
          tok/decode (UTF-8 of decode(ids), specials skipped), tok/decode_all (UTF-8, kept): each
          the rows of TEXTS then FUZZ_COUNT random strings (metadata n_texts) one after the other,
          with tok/<name>_end (int64) the rows' end offsets
      dec/ids{k}, dec/text{k}: decodes of hand-made id lists (split UTF-8 sequences -> U+FFFD)
      nfc/in, nfc/out: NFD and NFC of every 7th code point with a canonical decomposition (U+0020
          between), plus hand cases (reordering, blocked marks, exclusions, singletons, Hangul)

Before writing, the script checks the reference: the hand-written pre-tokeniser equals Python's
`re` on all texts and 20000 random strings; NFC(decode(encode(t), skip_special=False)) == NFC(t);
cached logits equal uncached ones (1e-5); a right-padded row's logits equal the row alone (1e-5);
the penalty changes the greedy ids.

The Unicode tables of the C++ NFC come from tests/reference/make_unicode_tables.py.
"""
import argparse
import json
import os
import random
import sys
import unicodedata

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qwen2_ref as ref  # noqa: E402
import st  # noqa: E402

CORPUS = """\
The quick brown fox jumps over the lazy dog. I'm sure it's fine, they'll say; we've seen that
you'd rather not. Hello world! Hello there, hello again and again. The speaker said that the
weather would be better tomorrow, and the children were playing in the garden while their
parents talked about the news. Speech recognition transcribes the speaking voice into text,
and the transcription is compared with the reference transcript to count the word errors.
There are 12 months in a year, 365 days, and 24 hours in a day: 2024, 1999, 3.14159 and 42.
She doesn't know where he's gone; they're waiting at the station for the train to arrive.
"What time is it?" he asked. "It's half past ten," she answered, looking at the clock.
A dog barks, a bird sings, the rain falls on the roof and the wind blows through the trees.
Music plays softly in the background while people are talking and laughing at the table.
The model listens to the audio and writes down what it hears, one word after the other.
"""

N_MERGES = 150          # 256 byte symbols + 150 merges = 406 tokens, then the added tokens
VOCAB_SIZE = 416        # the model's rows exceed the tokenizer's, as Qwen's 151936 > 151665

TEXTS = [
    "Hello world",
    "I'LL be there, you'RE right, it'S fine; DON'T we've They'd I'm",
    "12345 and 3.14159, 1,000,000 x2 2x",
    "中文测试：你好，世界！",
    "日本語のテキスト、カタカナとひらがな",
    "emoji 🎵🎶 👍🏽 family 👨‍👩‍👧 ok",
    "café naïve résumé Ångström",
    "cafe\u0301 combining: e\u0301 a\u0308 n\u0303 A\u030a",
    "line one\r\nline two\n\nline three\r",
    "multiple    spaces   here",
    "trailing spaces   ",
    "\ttabs\tand\t\ttabs",
    "special <|endoftext|> inside<|im_start|>user\nhi<|im_end|>",
    "<|vision_end|>the transcript",
    "",
    "   ",
    "\n\n\n",
    "Ελληνικά και русский текст",
    "x²+y³=z¼ ½ ⅓ ٣",
    "don't 'quote' ''double'' '''",
    "it'ſ the long s and 'S 'Ll 'rE",
    "A\u0323\u0307 vs A\u0307\u0323 vs \u1e0d\u0307",
    "\u212b \u2126 \u0958 \u2000",
    "한국어 텍스트 \u1100\u1161\u11a8 \u1100\u1161",
    "<tool_call>{\"name\": 1}</tool_call>",
    "<|cafe\u0301|> and <|caf\u00e9|> and <|cafe|>",
    "word<|endoftext|><|endoftext|>x",
    "<|endoftext <|im_end",
    "price: $100.00!!! ... ??? --- ***\n",
    "\u00a0nbsp\u3000ideographic\u2028line sep \u0085",
    "a\u0300\u0301\u0302 stacked",
    "\r\n\r\n  \r\n x  \n",
    "   leading spaces",
    "hello123world 4u 2day",
]

FUZZ_COUNT = 30
FUZZ_POOL = list(" \t\r\n\n'sStTrReEvVmMlLdDabcxyz019٣² ,.!?-$\u00a0\u3000中文🎵é\u0301\u0323\u017f") + [
    "<|endoftext|>", "<|im_start|>", "<tool_call>", "<|cafe\u0301|>", " the", "'ll", "\r\n"]


def fuzz_texts():
    rng = random.Random(7)
    return ["".join(rng.choice(FUZZ_POOL) for _ in range(rng.randint(0, 24))) for _ in range(FUZZ_COUNT)]


ADDED = [  # content, special, normalized
    ("<|endoftext|>", True, False),
    ("<|im_start|>", True, False),
    ("<|im_end|>", True, False),
    ("<|vision_end|>", True, False),
    ("<tool_call>", False, False),
    ("</tool_call>", False, False),
    ("<|cafe\u0301|>", False, True),
]

BYTELEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}


def tokenizer_json():
    vocab, merges = ref.train_bpe(CORPUS.split("\n"), N_MERGES)
    added = []
    for k, (content, special, normalized) in enumerate(ADDED):
        added.append({"id": len(vocab) + k, "content": content, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": normalized, "special": special})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": ref.QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
            BYTELEVEL]},
        "post_processor": BYTELEVEL,
        "decoder": BYTELEVEL,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": ["%s %s" % m for m in merges]},
    }


def random_weights(c):
    g = torch.Generator().manual_seed(0)
    sd = {}
    for name, shape in ref.param_shapes(c):
        if name.endswith("norm.weight"):
            w = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith(".bias"):
            w = 0.1 * torch.randn(shape, generator=g)
        elif name == "model.embed_tokens.weight":
            w = 0.3 * torch.randn(shape, generator=g)
        else:
            w = torch.randn(shape, generator=g) / shape[1] ** 0.5
        sd[name] = w.bfloat16()
    return sd


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def utf8(s):
    return torch.tensor(list(s.encode("utf-8")), dtype=torch.uint8)


def pack(rows, dtype):
    """Rows of numbers as one flat tensor and the (N,) int64 end offsets of the rows."""
    ends, total = [], 0
    for r in rows:
        total += len(r)
        ends.append(total)
    return torch.tensor([v for r in rows for v in r], dtype=dtype), torch.tensor(ends, dtype=torch.long)


def close(a, b, tol=1e-5):
    return (a - b).abs().max().item() <= tol


def nfc_cases():
    decomposable = [cp for cp in range(0x110000)
                    if unicodedata.decomposition(chr(cp)) and not unicodedata.decomposition(chr(cp)).startswith("<")]
    text = " ".join(unicodedata.normalize("NFD", chr(cp)) for cp in decomposable[::7])
    text += " \u0041\u0307\u0323 \u0061\u0323\u0302\u0301 e\u0301\u0301 a\u0328\u0301 \u0958 \u2adc"
    text += " \u212b\u2126 \u1100\u1161\u11a8\u1100 \uac00\u11a8 \u0f73 \u0344 x\u0315\u0300 \u05d0\u05b7"
    text += " \u1e9b\u0323 q\u0307\u0323 \u0b47\u0b3e \u0cc6\u0cc2\u0cd5 \u0300a"
    return text, unicodedata.normalize("NFC", text)


def write_fixtures(out_dir):
    tiny_dir = os.path.join(out_dir, "qwen2_tiny")
    os.makedirs(tiny_dir, exist_ok=True)
    tj = tokenizer_json()
    tok_cfg = {"add_bos_token": False, "add_prefix_space": False, "bos_token": None,
               "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>", "errors": "replace",
               "model_max_length": 32768, "pad_token": "<|endoftext|>", "split_special_tokens": False,
               "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}
    tok = ref.Tokenizer(tj, tok_cfg)
    eot = tok.token_id("<|endoftext|>")
    c = ref.Config(VOCAB_SIZE, 64, 128, 2, 4, 2)
    assert max(tok.id_to_token) < VOCAB_SIZE
    write_json(os.path.join(tiny_dir, "config.json"),
               c.to_json(bos_token_id=eot, eos_token_id=eot, torch_dtype="bfloat16"))
    write_json(os.path.join(tiny_dir, "generation_config.json"),
               {"bos_token_id": eot, "do_sample": False, "eos_token_id": eot, "max_new_tokens": 2048})
    write_json(os.path.join(tiny_dir, "tokenizer.json"), tj)
    write_json(os.path.join(tiny_dir, "tokenizer_config.json"), tok_cfg)
    sd16 = random_weights(c)
    st.save(os.path.join(tiny_dir, "model.safetensors"), sd16, {"format": "pt"})
    sd = {k: v.float() for k, v in sd16.items()}

    out, meta = {}, {}
    # A right-padded batch.
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, len(tok.vocab), (2, 8), generator=g)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0
    ids[1, 6:] = eot
    logits = ref.logits(sd, c, ref.embed(sd, ids), mask)
    alone = ref.logits(sd, c, ref.embed(sd, ids[1:, :6]))
    assert close(logits[1, :6], alone[0]), "a right-padded row differs from the row alone"
    out.update({"tiny/ids": ids, "tiny/mask": mask, "tiny/logits": logits})

    # Two calls with one cache; row 1 has a masked key in the middle.
    ids = torch.randint(0, len(tok.vocab), (2, 9), generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 2] = 0
    cache = []
    l1 = ref.logits(sd, c, ref.embed(sd, ids[:, :6]), mask[:, :6], cache=cache)
    l2 = ref.logits(sd, c, ref.embed(sd, ids[:, 6:]), mask, cache=cache)
    full = ref.logits(sd, c, ref.embed(sd, ids), mask)
    assert close(torch.cat((l1, l2), 1), full), "cached logits differ from uncached ones"
    out.update({"cache/ids1": ids[:, :6], "cache/ids2": ids[:, 6:], "cache/mask": mask, "cache/logits2": l2})

    # Generation on X-ARES's layout: audio frames (row 1 padded), then <|vision_end|> " the". The
    # frames' seed is the first from 10 on where the penalty changes the ids and an eos that row
    # 0 reaches late (from its 3rd token on) and row 1 never exists: row 0 stops, row 1 runs on.
    text_ids = torch.tensor([tok.token_id("<|vision_end|>")] + tok.encode(" the"))
    assert len(text_ids) == 2
    gmask = torch.ones(2, 8, dtype=torch.long)
    gmask[1, 4:6] = 0
    for seed in range(10, 200):
        frames = 0.5 * torch.randn(2, 6, 64, generator=torch.Generator().manual_seed(seed))
        frames[1, 4:] = 0
        embeds = torch.cat((frames, ref.embed(sd, text_ids)[None].expand(2, -1, -1)), 1)
        penalized = ref.generate_greedy(sd, c, embeds, gmask, 12, eot, eot, 1.1)
        plain = ref.generate_greedy(sd, c, embeds, gmask, 12, eot, eot, 1.0)
        first = {}
        for k, t in enumerate(penalized[0]):
            first.setdefault(t, k)
        late = [t for t in first if t not in penalized[1] and first[t] >= 2]
        if penalized != plain and late:
            break
    stop_eos = max(late, key=lambda t: first[t])
    margins = []
    stopped = ref.generate_greedy(sd, c, embeds, gmask, 12, stop_eos, eot, 1.1, margins)
    ref.generate_greedy(sd, c, embeds, gmask, 12, eot, eot, 1.1, margins)
    ref.generate_greedy(sd, c, embeds, gmask, 12, eot, eot, 1.0, margins)
    assert min(margins) > 1e-3, "a near tie: float noise could flip the argmax (%g)" % min(margins)
    assert stopped == [penalized[0][:first[stop_eos]], penalized[1]], stopped
    meta["gen_seed"] = str(seed)
    meta["gen_stop_eos"] = str(stop_eos)
    out.update({"gen/embeds": embeds, "gen/mask": gmask})
    for r in range(2):
        out["gen/ids%d" % r] = torch.tensor(penalized[r], dtype=torch.long)
        out["gen/plain_ids%d" % r] = torch.tensor(plain[r], dtype=torch.long)
        out["gen/stop_ids%d" % r] = torch.tensor(stopped[r], dtype=torch.long)

    # The 0.5B-shaped check.
    big = ref.Config(512, 896, 4864, 2, 14, 2)
    assert big.head_dim == 64
    bsd = ref.formula_weights(big)
    bids = torch.tensor([[3, 141, 59, 265], [97, 238, 462, 64]])
    bmask = torch.ones(2, 4, dtype=torch.long)
    bmask[1, 3] = 0
    out.update({"big/ids": bids, "big/mask": bmask, "big/logits": ref.logits(bsd, big, ref.embed(bsd, bids), bmask)})

    # Tokenizer.
    texts = TEXTS + fuzz_texts()
    rng = random.Random(3)
    for _ in range(20000):
        s = "".join(rng.choice(FUZZ_POOL) for _ in range(rng.randint(0, 16)))
        assert ref.pretokenize(s) == ref.pretokenize_re(s), repr(s)
    columns = {"text": [], "ids": [], "ids_plain": [], "decode": [], "decode_all": []}
    for t in texts:
        assert ref.pretokenize(t) == ref.pretokenize_re(t), repr(t)
        ids = tok.encode(t)
        # NFC on both sides: a normalized added token decodes to its content as written (NFD here).
        nfc = unicodedata.normalize("NFC", t)
        assert unicodedata.normalize("NFC", tok.decode(ids, skip_special=False)) == nfc, repr(t)
        columns["text"].append(list(t.encode("utf-8")))
        columns["ids"].append(ids)
        columns["ids_plain"].append(tok.encode(t, parse_special=False))
        columns["decode"].append(list(tok.decode(ids).encode("utf-8")))
        columns["decode_all"].append(list(tok.decode(ids, skip_special=False).encode("utf-8")))
    for name, rows in columns.items():
        dtype = torch.int32 if name.startswith("ids") else torch.uint8
        out["tok/" + name], out["tok/%s_end" % name] = pack(rows, dtype)
    meta["n_texts"] = str(len(texts))
    zhong = [tok.vocab[ref.BYTE_TO_SYMBOL[b]] for b in "中".encode("utf-8")]
    dec = [zhong[:2], zhong[:2] + [tok.vocab["a"]] + zhong, zhong[1:] + [eot] + zhong[:1],
           [tok.token_id("<|cafe\u0301|>"), tok.token_id("<tool_call>")]]
    for k, d in enumerate(dec):
        out["dec/ids%d" % k] = torch.tensor(d, dtype=torch.long)
        out["dec/text%d" % k] = utf8(tok.decode(d))
    meta["n_dec"] = str(len(dec))
    nfd, nfc = nfc_cases()
    out["nfc/in"], out["nfc/out"] = utf8(nfd), utf8(nfc)

    st.save(os.path.join(out_dir, "qwen2_expected.safetensors"),
            {k: v.contiguous() for k, v in out.items()}, meta)
    print("tokenizer: %d vocab + %d added; eos %d; gen seed %d: %s / stop %s / plain %s; smallest margin %.4f" %
          (len(tok.vocab), len(ADDED), eot, seed, penalized, stopped, plain, min(margins)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    args = parser.parse_args()
    write_fixtures(args.out_dir)


if __name__ == "__main__":
    main()
