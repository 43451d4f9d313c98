#!/usr/bin/python3
"""Fixtures of the LAION-CLAP port (tests/models/test_clap.cpp): a tiny checkpoint in the layout
of `630k-audioset-best.pt`, a tiny byte-level BPE tokenizer in roberta-base's file format, and
what clap_ref.py computes from them.

Usage: make_clap_fixtures.py OUT_DIR   (the tests read tests/fixtures/)

Writes OUT_DIR/clap_tiny/
  630k-audioset-best.pt   torch.save({"state_dict": {"module." + name: tensor}, "epoch": 1}),
      float32, random weights: HTSAT embed_dim 4, depths [2, 2, 2, 2], heads [1, 2, 2, 4],
      window 8, mlp_ratio 4, 64 mel bins (so spec_size 256, freq_ratio 4: the stage resolutions
      are 64, 32, 16, 8, and the last stage, as in HTSAT-tiny, has no shifted windows), 5
      classes; RoBERTa hidden 64 (1 head), 2 layers, intermediate 96, 80 positions, the BPE's
      vocabulary; projections to 16. With text_branch.embeddings.position_ids. Left out, to keep
      the file small (the loader recomputes them; the official file has them all):
      spectrogram_extractor.stft.conv_{real,imag}.weight (4 MB), the attn_mask of layers 0 and
      1 (1.3 MB) and relative_position_index except in layer 3. logmel_extractor.melW, layer
      2's attn_mask and layer 3's relative_position_index are present, so the loader's check of
      recomputed buffers runs.
  vocab.json, merges.txt  a byte-level BPE trained here on CAPTIONS + EXTRA (300 merges; ties
      go to the smallest pair), roberta-base's format: <s> 0, <pad> 1, </s> 2, <unk> 3, the 256
      byte symbols, the merges' tokens, <mask> last; merges.txt opens with "#version: 0.2".
OUT_DIR/clap_expected.safetensors
  audio/wave{0,1}       the two clips (48 kHz float32, /usr/share/sounds/alsa or
                        /tmp/sample_audio/alsa-utils: Front_Center.wav, Noise.wav, through
                        torchaudio.functional.resample to 48 kHz), both < 10 s: repeatpad
  audio/log_mel         (2, 1001, 64)  10 log10 mel power of the 480000-sample clips
  audio/embedding       (2, 32)        HTSAT latent_output (pre-projection)
  audio/audio_embedding (2, 16)        normalised projection
  text/ids, text/mask   (K, 77) int64  padding='max_length', truncation, max_length 77
  text/embedding        (K, 16)        normalised text projection
  tok/text{k}           uint8          the UTF-8 bytes of CAPTIONS[k]
"""
import collections
import glob
import json
import os
import sys

import torch
import torchaudio

sys.path.insert(0, os.path.dirname(__file__))
import clap_ref as ref  # noqa: E402
import st  # noqa: E402

CAPTIONS = [
    "A dog barks twice, then a car drives by.",
    "it's raining: thunder rolls   and  rain   falls on the roof!!",
    "Piano in 3/4 time at 120 BPM, 2nd take (v1.0) -- we'll see; they're here, I'm sure you've heard",
    "Café ambience \u2014 people chatting, cups clinking",
    "tab\tnew line\nno-break\u00a0space \u00bd \u0663\u0664 \u65e5\u672c\u8a9e  ",
    "",
    " ".join(["a very long caption about birds singing in the morning forest near a river"] * 8),
]
EXTRA = [
    "The dog barks and the birds sing while rain falls on a car roof.",
    "People are chatting in a cafe; cups and plates are clinking, music plays softly.",
    "Thunder rolls in the distance as heavy rain falls on the forest.",
    "A piano plays a slow melody, then drums and a bass guitar join in.",
]
MERGES = 300
AUDIO_DIRS = ["/usr/share/sounds/alsa", "/tmp/sample_audio/alsa-utils"]
CLIPS = ["Front_Center.wav", "Noise.wav"]


def train_bpe(lines, n_merges):
    byte_map = ref.bytes_to_unicode()
    words = collections.Counter()
    for line in lines:
        for tok in ref.pretokenize(line):
            words[tuple(byte_map[b] for b in tok.encode("utf-8"))] += 1
    words = dict(words)
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w[:-1], w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        out = {}
        for w, c in words.items():
            nw, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    nw.append(w[i] + w[i + 1])
                    i += 2
                else:
                    nw.append(w[i])
                    i += 1
            out[tuple(nw)] = out.get(tuple(nw), 0) + c
        words = out
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for b in range(256):
        vocab[byte_map[b]] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    vocab["<mask>"] = len(vocab)
    return vocab, merges


def random_state_dict(vocab_size, gen):
    def n(*shape, s=1.0):
        return torch.randn(*shape, generator=gen) * s

    sd = {}

    def lin(p, i, o, bias=True):
        sd[p + ".weight"] = n(o, i, s=i ** -0.5)
        if bias:
            sd[p + ".bias"] = n(o, s=0.02)

    def ln(p, d):
        sd[p + ".weight"] = 1.0 + n(d, s=0.1)
        sd[p + ".bias"] = n(d, s=0.05)

    a = "audio_branch."
    embed, depths, heads, ws, mels, classes = 4, [2, 2, 2, 2], [1, 2, 2, 4], 8, 64, 5
    sd[a + "spectrogram_extractor.stft.conv_real.weight"], sd[a + "spectrogram_extractor.stft.conv_imag.weight"] = \
        ref.stft_kernels(ref.N_FFT)
    sd[a + "logmel_extractor.melW"] = ref.slaney_mel_filters(ref.SAMPLE_RATE, ref.N_FFT, mels, ref.FMIN, ref.FMAX)
    sd[a + "bn0.weight"] = 1.0 + n(mels, s=0.1)
    sd[a + "bn0.bias"] = n(mels, s=0.1)
    sd[a + "bn0.running_mean"] = -20.0 + n(mels, s=5.0)
    sd[a + "bn0.running_var"] = 400.0 * (1.0 + n(mels, s=0.1).abs())
    sd[a + "bn0.num_batches_tracked"] = torch.tensor(1000, dtype=torch.int64)
    sd[a + "patch_embed.proj.weight"] = n(embed, 1, 4, 4, s=0.25)
    sd[a + "patch_embed.proj.bias"] = n(embed, s=0.02)
    ln(a + "patch_embed.norm", embed)
    res = ref.SPEC_SIZE // 4
    for i, depth in enumerate(depths):
        d = embed * 2 ** i
        for j in range(depth):
            p = a + "layers.%d.blocks.%d." % (i, j)
            ln(p + "norm1", d)
            sd[p + "attn.relative_position_bias_table"] = n((2 * ws - 1) ** 2, heads[i], s=0.5)
            sd[p + "attn.relative_position_index"] = ref.relative_position_index(ws)
            lin(p + "attn.qkv", d, 3 * d)
            lin(p + "attn.proj", d, d)
            ln(p + "norm2", d)
            lin(p + "mlp.fc1", d, 4 * d)
            lin(p + "mlp.fc2", 4 * d, d)
            if j % 2 == 1 and res > ws:
                sd[p + "attn_mask"] = ref.shifted_window_mask(res, ws, ws // 2)
        if i + 1 < len(depths):
            p = a + "layers.%d.downsample." % i
            lin(p + "reduction", 4 * d, 2 * d, bias=False)
            ln(p + "norm", 4 * d)
            res //= 2
    last = embed * 2 ** (len(depths) - 1)
    ln(a + "norm", last)
    sd[a + "tscam_conv.weight"] = n(classes, last, 64 // (2 ** (len(depths) - 1) * 4), 3, s=0.1)
    sd[a + "tscam_conv.bias"] = n(classes, s=0.02)
    lin(a + "head", classes, classes)

    t = "text_branch."
    hidden, layers, inter, positions, joint = 64, 2, 96, 80, 16
    sd[t + "embeddings.position_ids"] = torch.arange(positions, dtype=torch.int64)[None]
    sd[t + "embeddings.word_embeddings.weight"] = n(vocab_size, hidden, s=0.5)
    sd[t + "embeddings.position_embeddings.weight"] = n(positions, hidden, s=0.5)
    sd[t + "embeddings.token_type_embeddings.weight"] = n(1, hidden, s=0.5)
    ln(t + "embeddings.LayerNorm", hidden)
    for i in range(layers):
        p = t + "encoder.layer.%d." % i
        for name in ("query", "key", "value"):
            lin(p + "attention.self." + name, hidden, hidden)
        lin(p + "attention.output.dense", hidden, hidden)
        ln(p + "attention.output.LayerNorm", hidden)
        lin(p + "intermediate.dense", hidden, inter)
        lin(p + "output.dense", inter, hidden)
        ln(p + "output.LayerNorm", hidden)
    lin(t + "pooler.dense", hidden, hidden)

    lin("audio_projection.0", last, joint)
    lin("audio_projection.2", joint, joint)
    lin("text_projection.0", hidden, joint)
    lin("text_projection.2", joint, joint)
    for p in ("audio_transform.sequential", "text_transform.sequential"):
        lin(p + ".0", joint, joint)
        lin(p + ".3", joint, joint)
    sd["logit_scale_a"] = torch.tensor(2.6592)
    sd["logit_scale_t"] = torch.tensor(2.6592)
    return sd


def left_out(name):
    return (".stft.conv_" in name or ".layers.0.blocks.1.attn_mask" in name
            or ".layers.1.blocks.1.attn_mask" in name
            or (name.endswith("relative_position_index") and ".layers.3." not in name))


def load_clip(name):
    for d in AUDIO_DIRS:
        path = os.path.join(d, name)
        if os.path.exists(path):
            wave, sr = torchaudio.load(path)
            return torchaudio.functional.resample(wave.mean(0), sr, ref.SAMPLE_RATE).contiguous()
    sys.exit("no %s in %s" % (name, AUDIO_DIRS))


def main(out_dir):
    gen = torch.Generator().manual_seed(20240917)
    tiny = os.path.join(out_dir, "clap_tiny")
    os.makedirs(tiny, exist_ok=True)

    vocab, merges = train_bpe(CAPTIONS + EXTRA, MERGES)
    with open(os.path.join(tiny, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(tiny, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))
    tok = ref.ByteLevelBpe.from_files(os.path.join(tiny, "vocab.json"), os.path.join(tiny, "merges.txt"))

    full = random_state_dict(len(vocab), gen)
    sd = {k: v for k, v in full.items() if not left_out(k)}
    ckpt = os.path.join(tiny, "630k-audioset-best.pt")
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 1}, ckpt)

    loaded = torch.load(ckpt)["state_dict"]
    model = ref.Clap(loaded)
    # The buffers left out are what the reference recomputes.
    assert torch.equal(model.audio.conv_real, full["audio_branch.spectrogram_extractor.stft.conv_real.weight"])

    waves = [load_clip(c) for c in CLIPS]
    for w in waves:
        assert w.shape[0] < ref.CLIP_SAMPLES and ref.CLIP_SAMPLES % w.shape[0] != 0
    rows = [tok.encode(c) for c in CAPTIONS]
    ids = torch.tensor([r[0] for r in rows], dtype=torch.int64)
    mask = torch.tensor([r[1] for r in rows], dtype=torch.int64)
    with torch.no_grad():
        audio = model.audio_features(waves)
        text = model.text_embedding(ids, mask)
        # Padding invariance of the text branch: a row alone, unpadded, gives the same pooled value.
        n0 = int(mask[0].sum())
        alone = model.text.pooled(ids[:1, :n0], mask[:1, :n0])
        assert (alone - model.text.pooled(ids[:1], mask[:1])).abs().max() < 1e-5
    assert int(mask[-1].sum()) == ref.CONTEXT_LENGTH, "the long caption must truncate"
    for k, c in enumerate(CAPTIONS):
        print("caption %d: %d ids %s" % (k, int(mask[k].sum()), ids[k, :int(mask[k].sum())].tolist()[:24]))

    expected = {
        "audio/wave0": waves[0], "audio/wave1": waves[1],
        "audio/log_mel": audio["log_mel"], "audio/embedding": audio["embedding"],
        "audio/audio_embedding": audio["audio_embedding"],
        "text/ids": ids, "text/mask": mask, "text/embedding": text,
    }
    for k, c in enumerate(CAPTIONS):
        expected["tok/text%d" % k] = torch.tensor(list(c.encode("utf-8")), dtype=torch.uint8)
    st.save(os.path.join(out_dir, "clap_expected.safetensors"), expected,
            {"made_by": "tests/reference/make_clap_fixtures.py", "captions": str(len(CAPTIONS))})
    print("cosine (audio x text):\n", audio["audio_embedding"] @ text.t())
    total = 0
    for p in sorted(glob.glob(os.path.join(tiny, "*"))) + [os.path.join(out_dir, "clap_expected.safetensors")]:
        total += os.path.getsize(p)
        print("%9d  %s" % (os.path.getsize(p), os.path.relpath(p, out_dir)))
    print("%9d  total" % total)


if __name__ == "__main__":
    main(sys.argv[1])
