#!/usr/bin/python3
"""Fixtures of the X-ARES protocol (tests/eval/test_xares_protocol.cpp, tests/data/test_wordpiece.cpp):
what xares_metrics_ref.py and wordpiece_ref.py compute on small random and tricky inputs.

Usage: /usr/bin/python3 tests/reference/make_xares_metric_fixtures.py OUT_DIR   (the tests read tests/fixtures/)

Writes
OUT_DIR/xares_metrics_expected.safetensors
  ap_scores (40, 6) f32   random scores rounded to 0.1 (many ties); ap_targets (40, 6) f32 0 / 1,
                          class 3 without positives, class 5 all positive
  ap_per_class (6,) f64, ap_macro () f64
  sf1_logits{0,1,2}, sf1_targets{0,1,2}   batches (3, 18, 4), (2, 25, 4), (1, 9, 4): logits with
                          exact zeros (sigmoid 0.5 -> 0), class 2 never true nor predicted
  sf1_micro, sf1_macro () f64          at pool 4 (remainders dropped)
  sf1b_logits{0,1}, sf1b_targets{0,1}  one class, (2, 12, 1), (1, 8, 1); sf1b_micro, sf1b_macro at pool 3
  sf1n_logits0, sf1n_targets0          one class, nothing true nor predicted; sf1n_micro, sf1n_macro
  ret5_audio, ret5_text (60, 8) f64    12 clips x 5 captions (the clip's row repeated)
  ret1_audio, ret1_text (25, 8) f64    25 clips x 1 caption
  ret{5,1}_{a2t,t2a} (6,) f64          r1 r5 r10 mAP10 meanr medr;  ret{5,1}_recall_at_1 () f64
  cl_audio, cl_text (6, 8) f64, cl_log_scale () f64, cl_loss () f64, cl_loss_noreg () f64
OUT_DIR/xares_wer_expected.json        [{references, hypotheses, wer_inv}]
OUT_DIR/wordpiece/vocab.txt            a tiny bert-style vocabulary
OUT_DIR/wordpiece/expected.json        {"cases": [{text, basic, pieces, ids}], "captions": [...],
                                        "caption_vocab": [...], "caption_cases": [{text, ids}]}
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402
import wordpiece_ref as wp  # noqa: E402
import xares_metrics_ref as ref  # noqa: E402

VOCAB = (wp.SPECIALS + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["…", "—", "。", "，"] +
         ["the", "a", "an", "un", "##aff", "##able", "dog", "dogs", "##s", "bark", "##ing", "cafe", "naive",
          "resume", "hello", "##world", "world", "it", "s", "5", "istanbul", "##a", "你", "好", "中", "οδο",
          "##σ", "##ς", "ᄒ", "##ᅡ", "##ᆫ", "##ᄀ", "##ᅮ", "##ᆨ", "##ed", "sound", "of", "rain", "birds"])

CASES = [
    "",
    "Hello, World!",
    "unaffable",
    "unaffablex",
    "The dogs are barking",
    "Café Naïve Résumé",
    "HELLO\tworld\n",
    "hello\u200bworld",
    "bell\x07 dog\x00s \ufffd",
    "[CLS] hello [SEP]",
    "[cls] hello[MASK]world [PAD]",
    "it's $5 ^_^",
    "你好世界中",
    "ΟΔΟΣ",
    "한국",
    "İstanbul",
    "a\u3000dog\u00a0barking…the—end。",
    "a" * 100,
    "a" * 101,
    "the " + "a" * 101 + " dog",
    "\u2028dog\u2029dog\x85dog\x0bdog",
    "ǅ Ǆ ﬁ ①",
]

CAPTIONS = ["A dog barks loudly.", "Rain falls on a tin roof", "Birds sing; a dog barks!", "Café sounds"]
CAPTION_CASES = ["a dog barks in the rain", "Unknown words, known dog.", ""]

WER = [
    (["Hello world", "the cat sat"], ["hello  world", "the cat"]),
    (["A B C D"], ["a x c d e"]),
    (["  leading and trailing  "], ["leading\tand trailing"]),
    (["one two"], ["completely different words here and more"]),
    (["Straße ÉCOLE"], ["straße école"]),
    (["it's fine."], ["its fine"]),
]


def write_metrics(out):
    g = torch.Generator().manual_seed(7)
    t = {}
    scores = (torch.rand(40, 6, generator=g) * 10).round() / 10
    targets = (torch.rand(40, 6, generator=g) < 0.3).float()
    targets[:, 3] = 0
    targets[:, 5] = 1
    targets[0, 0] = 1
    t["ap_scores"], t["ap_targets"] = scores.float(), targets
    t["ap_per_class"] = torch.tensor([ref.average_precision(scores[:, c].numpy(), targets[:, c].numpy())
                                      for c in range(6)], dtype=torch.float64)
    t["ap_macro"] = torch.tensor(ref.average_precision(scores.numpy(), targets.numpy()), dtype=torch.float64)

    logits, tars = [], []
    for i, (b, n) in enumerate([(3, 18), (2, 25), (1, 9)]):
        lg = torch.randn(b, n, 4, generator=g) * 2
        lg[torch.rand(b, n, 4, generator=g) < 0.1] = 0.0
        lg[..., 2] = -abs(lg[..., 2]) - 0.1
        ta = (torch.rand(b, n, 4, generator=g) < 0.35).float()
        ta[..., 2] = 0
        logits.append(lg.float())
        tars.append(ta)
        t[f"sf1_logits{i}"], t[f"sf1_targets{i}"] = lg.float(), ta
    t["sf1_micro"] = torch.tensor(ref.segment_f1(logits, tars, 4, "micro"), dtype=torch.float64)
    t["sf1_macro"] = torch.tensor(ref.segment_f1(logits, tars, 4, "macro"), dtype=torch.float64)
    logits, tars = [], []
    for i, (b, n) in enumerate([(2, 12), (1, 8)]):
        lg = torch.randn(b, n, 1, generator=g)
        ta = (torch.rand(b, n, 1, generator=g) < 0.4).float()
        logits.append(lg.float())
        tars.append(ta)
        t[f"sf1b_logits{i}"], t[f"sf1b_targets{i}"] = lg.float(), ta
    t["sf1b_micro"] = torch.tensor(ref.segment_f1(logits, tars, 3, "micro"), dtype=torch.float64)
    t["sf1b_macro"] = torch.tensor(ref.segment_f1(logits, tars, 3, "macro"), dtype=torch.float64)
    lg, ta = -torch.rand(1, 6, 1, generator=g) - 0.1, torch.zeros(1, 6, 1)
    t["sf1n_logits0"], t["sf1n_targets0"] = lg.float(), ta
    t["sf1n_micro"] = torch.tensor(ref.segment_f1([lg], [ta], 2, "micro"), dtype=torch.float64)
    t["sf1n_macro"] = torch.tensor(ref.segment_f1([lg], [ta], 2, "macro"), dtype=torch.float64)

    for name, clips, caps in [("ret5", 12, 5), ("ret1", 25, 1)]:
        audio = torch.randn(clips, 8, generator=g, dtype=torch.float64).repeat_interleave(caps, dim=0)
        text = audio + 1.2 * torch.randn(clips * caps, 8, generator=g, dtype=torch.float64)
        m = ref.clap_metrics(audio, text, caps)
        t[f"{name}_audio"], t[f"{name}_text"] = audio, text
        for d in ("a2t", "t2a"):
            t[f"{name}_{d}"] = torch.tensor([m[d][k] for k in ("r1", "r5", "r10", "mAP10", "meanr", "medr")],
                                            dtype=torch.float64)
        t[f"{name}_recall_at_1"] = torch.tensor(m["recall_at_1"], dtype=torch.float64)

    audio = torch.randn(6, 8, generator=g, dtype=torch.float64)
    text = torch.randn(6, 8, generator=g, dtype=torch.float64)
    log_scale = torch.tensor(1.0 / 0.07, dtype=torch.float64).log()
    t["cl_audio"], t["cl_text"], t["cl_log_scale"] = audio, text, log_scale
    t["cl_loss"] = ref.contrastive_loss(audio, text, log_scale)
    t["cl_loss_noreg"] = ref.contrastive_loss(audio, text, log_scale, embed_regularization=False)
    st.save(os.path.join(out, "xares_metrics_expected.safetensors"), t)

    with open(os.path.join(out, "xares_wer_expected.json"), "w") as f:
        json.dump([{"references": r, "hypotheses": h, "wer_inv": ref.wer_inv(r, h)} for r, h in WER], f,
                  ensure_ascii=False, indent=1)


def write_wordpiece(out):
    d = os.path.join(out, "wordpiece")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(tok + "\n" for tok in VOCAB))
    vocab = wp.read_vocab(os.path.join(d, "vocab.txt"))
    cases = [{"text": c, "basic": wp.basic_tokenize(c), "pieces": wp.tokenize(c, vocab), "ids": wp.encode(c, vocab)}
             for c in CASES]
    cv = wp.caption_vocab(CAPTIONS)
    caption_cases = [{"text": c, "ids": wp.encode(c, cv)} for c in CAPTION_CASES]
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"cases": cases, "captions": CAPTIONS, "caption_vocab": sorted(cv, key=cv.get),
                   "caption_cases": caption_cases}, f, ensure_ascii=False, indent=1)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    write_metrics(out)
    write_wordpiece(out)


if __name__ == "__main__":
    main()
