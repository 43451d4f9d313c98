#!/usr/bin/python3
"""Fixtures for the T5 v1.1 / Flan-T5 encoder port and its SentencePiece tokeniser, computed with
Debian's python3-torch 1.13 from t5_ref.py and python3-sentencepiece 0.1.97 (plus the `spm_train`
CLI, Debian's sentencepiece package):

    /usr/bin/python3 tests/reference/make_t5_fixtures.py tests/fixtures

Needs the demo corpus (build/demo-corpus/manifests/all.train.jsonl): the `text` field of every
row, plus EXTRA_LINES below (German, French, Chinese, Japanese, emoji), is the SentencePiece
training text. If the manifest is absent, the spiece.model already in OUT_DIR/t5_tiny/ is reused
(the committed model file is what the C++ tests use; the ids below are always recomputed from it).

Writes
  OUT_DIR/t5_tiny/{config.json, model.safetensors (float32), spiece.model}
      d_model 32, d_kv 8, 4 heads, d_ff 48, 3 layers, gated-gelu, 16 buckets, max_distance 20
      (16 rather than 8: per direction 4 exact buckets, log buckets 4..7 for |rel| 4..19 and the
      clamp from |rel| 20 on; with 8 the log branch only ever yields 2 or 3).
  OUT_DIR/t5_small_like/{config.json, pytorch_model.bin (bfloat16, torch.save zip), spiece.model}
      t5-v1_1-small / flan-t5-small widths (d_model 512, 6 heads x d_kv 64 = 384, d_ff 1024,
      32 buckets, max_distance 128) but 1 layer; also holds encoder.embed_tokens.weight and
      decoder.embed_tokens.weight (same storage as shared.weight, as in HF's files), a few small
      decoder.* tensors and lm_head.weight, which an encoder loader must ignore.
  OUT_DIR/t5_expected.safetensors
      {tiny,small_like}/ids (int64, (3, Lmax), 0-padded), {tiny,small_like}/mask (bool),
      {tiny,small_like}/last_hidden_state (float32, (3, Lmax, d_model); only mask==True positions
      are meaningful), tok/ids{k} (int64, sp.encode(text_k) + [1]) and tok/text{k} (uint8, the
      UTF-8 bytes of text_k) for k = 0..6; metadata text0..text6 hold the same texts (JSON-escaped
      by the writer: non-ASCII arrives as \\uXXXX, emoji as surrogate pairs).
      Texts 0-2 are the model batch, 3-6 tokeniser-only.

SentencePiece: unigram, vocab 400, character_coverage 1.0 (so exactly the characters absent from
the training text map to <unk>), nmt_nfkc normalisation, T5's ids (pad 0, eos 1, unk 2, no bos),
one thread, fixed seed, no sentence sampling, run inside a temporary directory with the relative
paths corpus.txt / spiece (the model file records them). Two runs of spm_train 0.1.97 so produced
byte-identical models, and so byte-identical fixtures, on the machine that made them. Note for the
C++ tokeniser: the model's normalizer is nmt_nfkc (its precompiled charsmap is most of the
~240 kB file), and consecutive unknown characters encode as ONE <unk> ("龍鳳" -> [..., 2]).

Before writing, the script checks t5_ref itself: the bucket function against hand values and an
independent scalar loop, and padding invariance (a padded row's valid positions equal the same row
run alone, to 1e-5).
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import sentencepiece as spm
import torch

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402
import t5_ref as ref  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = os.path.join(REPO, "build", "demo-corpus", "manifests", "all.train.jsonl")

# Non-ASCII training lines. The em dash "—" and "龍", "鳳" are deliberately absent from all
# training text, so they map to <unk> (id 2).
EXTRA_LINES = [
    "Grüße aus Köln, schöne Grüße und viel Spaß beim Hören.",
    "Über den Wolken spielt eine Geige; die Bässe dröhnen leise.",
    "Ein Café in Köln: Straßenmusik, Glocken und Möwen.",
    "Un café crème, s'il vous plaît : la mélodie est très élégante.",
    "Noël à Montréal : chœur, cloches et façade illuminée, naïve et gaie.",
    "Le garçon écoute la pluie sur le toit, à côté de la fenêtre.",
    "钢琴音乐和鸟叫声，还有远处的雷声。",
    "日本語の音楽と雨の音。",
    "ピアノとドラムの演奏、そして拍手。",
    "Musique 🎵 et applaudissements 👏 dans la salle 🎶",
    "Canción del niño, jalapeño y señor 🎵",
]

SPM_VOCAB = 400
VOCAB_PAD = 28  # the model's vocab_size exceeds the tokenizer's, as flan-t5's 32128 > 32100

TEXTS = [
    # model batch
    "ambi choir (Sonic Pi sample, ambi)",
    "That agent is already logged on.  Please enter your agent number followed by the pound key, "
    "then listen to the General MIDI game music rendered with a GM soundfont and a dark woosh.",
    "Grüße aus Köln — café, naïve 日本語 🎵",
    # tokeniser only
    "",
    "   leading,  multiple   and trailing spaces   ",
    "line one\nline two\tafter a tab\r\n",
    "ＦＵＬＬ ｗｉｄｔｈ ①② ﬁne ½ x 龍鳳 ——y",
]

TINY = ref.default_config(d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=3, num_decoder_layers=3,
                          relative_attention_num_buckets=16, relative_attention_max_distance=20,
                          torch_dtype="float32")
SMALL_LIKE = ref.default_config(d_model=512, d_kv=64, num_heads=6, d_ff=1024, num_layers=1,
                                num_decoder_layers=1, relative_attention_num_buckets=32,
                                relative_attention_max_distance=128, torch_dtype="bfloat16")
for _c in (TINY, SMALL_LIKE):
    _c.update(dense_act_fn="gelu_new", is_gated_act=True, n_positions=512, use_cache=True)


# ---------------------------------------------------------------------------------------------
# self-checks of the reference


def bucket_loop(rel, num_buckets, max_distance):
    """Scalar re-derivation of the bidirectional bucket (double-precision log)."""
    half = num_buckets // 2
    base = half if rel > 0 else 0
    n = abs(rel)
    exact = half // 2
    if n < exact:
        return base + n
    v = exact + int(math.log(n / exact) / math.log(max_distance / exact) * (half - exact))
    return base + min(v, half - 1)


def check_buckets():
    hand = {  # (num_buckets, max_distance): {rel: bucket}, worked out by hand
        (32, 128): {0: 0, -1: 1, 1: 17, -7: 7, 7: 23, -8: 8, 8: 24, 12: 25, -16: 10, 16: 26, 20: 26,
                    -32: 12, 32: 28, -64: 14, 64: 30, -90: 14, -91: 15, -127: 15, -128: 15, -200: 15, 200: 31},
        # half 8, exact 4: 4 + int(log(n/4)/log(5)*4); 6 -> 1.007, 9 -> 2.01, 20 -> 4 -> clamp 7
        (16, 20): {0: 0, -1: 1, 1: 9, -3: 3, 3: 11, -4: 4, -5: 4, -6: 5, -8: 5, -9: 6, 13: 14,
                   -14: 7, 14: 15, -19: 7, 19: 15, -20: 7, 20: 15, -30: 7, 30: 15},
    }
    for (nb, md), cases in hand.items():
        rel = torch.tensor(sorted(cases))
        got = ref.relative_position_bucket(rel, True, nb, md).tolist()
        want = [cases[r] for r in sorted(cases)]
        assert got == want, ((nb, md), list(zip(sorted(cases), got, want)))
        rel = torch.arange(-2000, 2001)
        got = ref.relative_position_bucket(rel, True, nb, md).tolist()
        want = [bucket_loop(r, nb, md) for r in rel.tolist()]
        bad = [(r, g, w) for r, g, w in zip(rel.tolist(), got, want) if g != w]
        assert not bad, ((nb, md), bad[:10])
    print("bucket checks: ok")


def check_padding_invariance(enc, ids, mask, out, name):
    worst = 0.0
    for b in range(ids.shape[0]):
        n = int(mask[b].sum())
        alone = enc(ids[b:b + 1, :n])
        worst = max(worst, (alone[0] - out[b, :n]).abs().max().item())
    assert worst < 1e-5, (name, worst)
    print("%s: padding invariance ok (max diff %.2e)" % (name, worst))


# ---------------------------------------------------------------------------------------------
# tokenizer


def train_spm(work_dir):
    with open(MANIFEST, encoding="utf-8") as f:
        lines = [json.loads(line)["text"] for line in f if line.strip()]
    lines += EXTRA_LINES
    corpus = os.path.join(work_dir, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line.replace("\n", " ") + "\n")
    for ch in "—龍鳳":
        assert not any(ch in line for line in lines), ch
    # Relative paths: the model's trainer_spec records --input and --model_prefix verbatim, so a
    # temporary directory's name would otherwise make every run's file differ.
    cmd = ["spm_train", "--input=corpus.txt", "--model_prefix=spiece", "--model_type=unigram",
           "--vocab_size=%d" % SPM_VOCAB, "--character_coverage=1.0",
           "--pad_id=0", "--eos_id=1", "--unk_id=2", "--bos_id=-1",
           "--input_sentence_size=0", "--shuffle_input_sentence=false", "--num_threads=1",
           "--random_seed=1234", "--minloglevel=2"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=work_dir)
    return os.path.join(work_dir, "spiece.model")


def tokenizer_model(out_dir, work_dir):
    if os.path.exists(MANIFEST):
        return train_spm(work_dir)
    old = os.path.join(out_dir, "t5_tiny", "spiece.model")
    if not os.path.exists(old):
        sys.exit("no demo corpus at %s and no %s to reuse" % (MANIFEST, old))
    print("demo corpus absent: reusing", old)
    path = os.path.join(work_dir, "spiece.model")
    shutil.copyfile(old, path)
    return path


# ---------------------------------------------------------------------------------------------


def extra_keys(cfg, shared, gen):
    """Keys a full T5ForConditionalGeneration file has that an encoder loader must ignore."""
    d, v = cfg["d_model"], shared.shape[0]
    return {
        "encoder.embed_tokens.weight": shared,
        "decoder.embed_tokens.weight": shared,
        "decoder.final_layer_norm.weight": 1.0 + 0.1 * torch.randn(d, generator=gen),
        "decoder.block.0.layer.0.layer_norm.weight": 1.0 + 0.1 * torch.randn(d, generator=gen),
        "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight":
            0.5 * torch.randn(cfg["relative_attention_num_buckets"], cfg["num_heads"], generator=gen),
        "lm_head.weight": torch.randn(v, d, generator=gen) / math.sqrt(d),
    }


def write_config(path, cfg):
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def main(out_dir):
    torch.manual_seed(0)
    check_buckets()

    with tempfile.TemporaryDirectory() as work:
        model_path = tokenizer_model(out_dir, work)
        with open(model_path, "rb") as f:
            spiece = f.read()
    sp = spm.SentencePieceProcessor(model_proto=spiece)
    n_pieces = sp.get_piece_size()
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    tok_ids = [sp.encode(t) + [1] for t in TEXTS]
    for k, (t, ids) in enumerate(zip(TEXTS, tok_ids)):
        print("text%d %r -> %d ids %s" % (k, t, len(ids), ids))
    assert 2 in tok_ids[2], "the non-ASCII model text must contain an <unk>"
    assert len(tok_ids[1]) > 33, "the long text must reach |rel| >= 32"

    expected = {}
    meta = {"made_by": "tests/reference/make_t5_fixtures.py", "spm_vocab_size": str(n_pieces)}
    for k, (t, ids) in enumerate(zip(TEXTS, tok_ids)):
        meta["text%d" % k] = t
        expected["tok/ids%d" % k] = torch.tensor(ids, dtype=torch.int64)
        expected["tok/text%d" % k] = torch.tensor(list(t.encode("utf-8")), dtype=torch.uint8)

    batch = tok_ids[:3]
    lmax = max(len(x) for x in batch)
    ids = torch.zeros(len(batch), lmax, dtype=torch.int64)
    mask = torch.zeros(len(batch), lmax, dtype=torch.bool)
    for b, x in enumerate(batch):
        ids[b, :len(x)] = torch.tensor(x)
        mask[b, :len(x)] = True

    gen = torch.Generator().manual_seed(20240601)
    written = []

    # --- tiny: float32 safetensors, encoder keys only
    cfg = dict(TINY, vocab_size=n_pieces + VOCAB_PAD)
    d = os.path.join(out_dir, "t5_tiny")
    os.makedirs(d, exist_ok=True)
    w = ref.random_weights(cfg, gen)
    st.save(os.path.join(d, "model.safetensors"), w, {"format": "pt"})
    write_config(os.path.join(d, "config.json"), cfg)
    with open(os.path.join(d, "spiece.model"), "wb") as f:
        f.write(spiece)
    written += [os.path.join(d, n) for n in ("config.json", "model.safetensors", "spiece.model")]
    enc = ref.T5Encoder(cfg, w)
    with torch.no_grad():
        out = enc(ids, mask)
        check_padding_invariance(enc, ids, mask, out, "tiny")
    expected.update({"tiny/ids": ids, "tiny/mask": mask, "tiny/last_hidden_state": out})

    # --- small_like: bfloat16 pytorch_model.bin with the extra keys of a full checkpoint
    cfg = dict(SMALL_LIKE, vocab_size=n_pieces + VOCAB_PAD)
    d = os.path.join(out_dir, "t5_small_like")
    os.makedirs(d, exist_ok=True)
    w = {k: v.to(torch.bfloat16) for k, v in ref.random_weights(cfg, gen).items()}
    extra = {k: v.to(torch.bfloat16) for k, v in extra_keys(cfg, w["shared.weight"], gen).items()}
    extra["encoder.embed_tokens.weight"] = w["shared.weight"]  # shared storage, as HF saves them
    extra["decoder.embed_tokens.weight"] = w["shared.weight"]
    sd = dict(w)
    sd.update(extra)
    torch.save({k: sd[k] for k in sorted(sd)}, os.path.join(d, "pytorch_model.bin"))
    write_config(os.path.join(d, "config.json"), cfg)
    with open(os.path.join(d, "spiece.model"), "wb") as f:
        f.write(spiece)
    written += [os.path.join(d, n) for n in ("config.json", "pytorch_model.bin", "spiece.model")]
    loaded = torch.load(os.path.join(d, "pytorch_model.bin"))
    enc = ref.T5Encoder(cfg, {k: v.float() for k, v in loaded.items()})  # float32 compute
    with torch.no_grad():
        out = enc(ids, mask)
        check_padding_invariance(enc, ids, mask, out, "small_like")
    expected.update({"small_like/ids": ids.clone(), "small_like/mask": mask.clone(),
                     "small_like/last_hidden_state": out})

    path = os.path.join(out_dir, "t5_expected.safetensors")
    st.save(path, expected, meta)
    written.append(path)
    print("spm pieces %d, model vocab %d" % (n_pieces, n_pieces + VOCAB_PAD))
    total = 0
    for p in written:
        total += os.path.getsize(p)
        print("%9d  %s" % (os.path.getsize(p), os.path.relpath(p, out_dir)))
    print("%9d  total" % total)


if __name__ == "__main__":
    main(sys.argv[1])
