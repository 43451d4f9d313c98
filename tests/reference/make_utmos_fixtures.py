#!/usr/bin/python3
"""Fixtures of the UTMOS22 strong port (tests/models/test_utmos.cpp): a tiny checkpoint in the
layout of SpeechMOS's `utmos22_strong_step7459_v1.pt`, the same weights in the official Lightning
layout, and what utmos_ref.py computes from them.

Usage: /usr/bin/python3 tests/reference/make_utmos_fixtures.py OUT_DIR   (the tests read tests/fixtures/)

Writes OUT_DIR/utmos_tiny/
  utmos22_strong_step7459_v1.pt   torch.save({name: tensor}) as SpeechMOS's release, float32,
      random weights: wav2vec 2.0 extractor mode "default" with 32 conv channels and base's
      kernels/strides (10/5, 3/2 x 4, 2/2 x 2), embed 64, 2 post-LN layers, 2 heads, ffn 128,
      pos_conv kernel 16 groups 4 (weight-normed: weight_g, weight_v), with mask_emb as the
      release has it; domain_emb and judge_emb (1, 8); BLSTM hidden 16; projection 32 -> 1.
  (The official Lightning layout, `epoch=3-step=7459.ckpt`, is not committed, to keep the
  fixtures small: the test writes it from this file; `lightning_layout` below checks that
  utmos_ref.from_lightning undoes that renaming.)
OUT_DIR/utmos_expected.safetensors
  wave0, wave1   16 kHz float32 in [-1, 1): 24000 samples of asterisk-agent-loginok.wav and 23700
                 of asterisk-all-circuits-busy-now.wav (74 and 73 frames: the odd count takes
                 fairseq's pad-to-even path). Asterisk core sound prompts (English), from
                 Debian's asterisk-core-sounds-en-wav, CC-BY-SA 3.0 (Digium, Inc.), via the demo
                 corpus (scripts/; build/demo-corpus/audio/speech/).
  ssl{0,1}       (1, F, 64)  the last transformer layer's output
  frames{0,1}    (1, F)      frame scores before the mean
  mos            (2,)        mean(frames) * 2 + 3 for each clip
"""
import os
import sys

import numpy as np
import scipy.io.wavfile
import torch

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402
import utmos_ref as ref  # noqa: E402

SPEECH = os.path.join(os.path.dirname(__file__), "../../build/demo-corpus/audio/speech")
CLIPS = [("asterisk-agent-loginok.wav", 24000), ("asterisk-all-circuits-busy-now.wav", 23700)]
HEADS = 2


def random_weights(seed=11):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=None):
        fan_in = shape[-1] if len(shape) > 1 else shape[0]
        s = scale if scale is not None else fan_in ** -0.5
        return (torch.randn(*shape, generator=g) * s).float()

    c, d, ffn, layers, k, groups = 32, 64, 128, 2, 16, 4
    emb, hid, proj = 8, 16, 32
    w = {}
    p = "wav2vec2."
    convs = [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2
    cin = 1
    for i, (kk, _) in enumerate(convs):
        w[f"{p}feature_extractor.conv_layers.{i}.0.weight"] = rnd(c, cin, kk, scale=(cin * kk) ** -0.5)
        if i == 0:
            w[f"{p}feature_extractor.conv_layers.0.2.weight"] = 1 + 0.1 * rnd(c, scale=1)
            w[f"{p}feature_extractor.conv_layers.0.2.bias"] = 0.1 * rnd(c, scale=1)
        cin = c
    w[p + "layer_norm.weight"] = 1 + 0.1 * rnd(c, scale=1)
    w[p + "layer_norm.bias"] = 0.1 * rnd(c, scale=1)
    w[p + "post_extract_proj.weight"] = rnd(d, c)
    w[p + "post_extract_proj.bias"] = 0.1 * rnd(d, scale=1)
    w[p + "mask_emb"] = rnd(d, scale=1)
    e = p + "encoder."
    w[e + "pos_conv.0.weight_g"] = 0.5 + torch.rand(1, 1, k, generator=g)
    w[e + "pos_conv.0.weight_v"] = rnd(d, d // groups, k, scale=1)
    w[e + "pos_conv.0.bias"] = 0.1 * rnd(d, scale=1)
    w[e + "layer_norm.weight"] = 1 + 0.1 * rnd(d, scale=1)
    w[e + "layer_norm.bias"] = 0.1 * rnd(d, scale=1)
    for n in range(layers):
        q = f"{e}layers.{n}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w[q + f"self_attn.{name}.weight"] = rnd(d, d)
            w[q + f"self_attn.{name}.bias"] = 0.1 * rnd(d, scale=1)
        w[q + "fc1.weight"], w[q + "fc1.bias"] = rnd(ffn, d), 0.1 * rnd(ffn, scale=1)
        w[q + "fc2.weight"], w[q + "fc2.bias"] = rnd(d, ffn), 0.1 * rnd(d, scale=1)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            w[q + ln + ".weight"] = 1 + 0.1 * rnd(d, scale=1)
            w[q + ln + ".bias"] = 0.1 * rnd(d, scale=1)
    w["domain_emb"] = rnd(1, emb, scale=1)
    w["judge_emb"] = rnd(1, emb, scale=1)
    cat = d + 2 * emb
    for sfx in ("", "_reverse"):
        w["blstm.weight_ih_l0" + sfx] = rnd(4 * hid, cat)
        w["blstm.weight_hh_l0" + sfx] = rnd(4 * hid, hid)
        w["blstm.bias_ih_l0" + sfx] = 0.1 * rnd(4 * hid, scale=1)
        w["blstm.bias_hh_l0" + sfx] = 0.1 * rnd(4 * hid, scale=1)
    w["projection.0.weight"], w["projection.0.bias"] = rnd(proj, 2 * hid), 0.1 * rnd(proj, scale=1)
    w["projection.2.weight"], w["projection.2.bias"] = rnd(1, proj), 0.1 * rnd(1, scale=1)
    return w


def lightning_layout(w, seed=12):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, t in w.items():
        if name.startswith("wav2vec2."):
            sd["feature_extractors.0.ssl_model." + name[len("wav2vec2."):]] = t
        elif name.startswith("blstm."):
            sd["output_layers.0.decoder_rnn." + name[len("blstm."):]] = t
        elif name.startswith("projection."):
            i, rest = name[len("projection."):].split(".", 1)
            sd[f"output_layers.1.net.{ {'0': 0, '2': 3}[i] }.{rest}"] = t
    domains = torch.randn(3, w["domain_emb"].shape[1], generator=g)
    domains[ref.DOMAIN_ID] = w["domain_emb"][0]
    judges = torch.randn(300, w["judge_emb"].shape[1], generator=g)
    judges[ref.JUDGE_ID] = w["judge_emb"][0]
    sd["feature_extractors.1.embedding.weight"] = domains
    sd["output_layers.0.judge_embedding.weight"] = judges
    back = ref.from_lightning(sd)
    assert sorted(back) == sorted(w) and all(torch.equal(back[k], w[k]) for k in w)
    return {"state_dict": sd, "epoch": 3, "global_step": 7459}


def check_blstm_against_torch(w):
    # The step-by-step BLSTM of utmos_ref.py equals torch.nn.LSTM loaded with the same names.
    hid = w["blstm.weight_hh_l0"].shape[1]
    lstm = torch.nn.LSTM(w["blstm.weight_ih_l0"].shape[1], hid, batch_first=True, bidirectional=True)
    lstm.load_state_dict({k[len("blstm."):]: v for k, v in w.items() if k.startswith("blstm.")})
    x = torch.randn(2, 9, w["blstm.weight_ih_l0"].shape[1])
    with torch.no_grad():
        err = (lstm(x)[0] - ref.blstm(w, x)).abs().max().item()
    assert err < 1e-5, err


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "utmos_tiny"), exist_ok=True)
    torch.manual_seed(0)
    w = random_weights()
    check_blstm_against_torch(w)
    torch.save(w, os.path.join(out, "utmos_tiny/utmos22_strong_step7459_v1.pt"))
    lightning_layout(w)

    expected = {}
    mos = []
    for i, (name, n) in enumerate(CLIPS):
        sr, x = scipy.io.wavfile.read(os.path.join(SPEECH, name))
        assert sr == 16000 and x.dtype == np.int16 and x.ndim == 1, (name, sr, x.dtype, x.shape)
        wave = torch.from_numpy(x[:n].astype(np.float32) / 32768.0)
        ssl, frames, m = ref.predict(w, wave.unsqueeze(0), HEADS)
        expected[f"wave{i}"] = wave
        expected[f"ssl{i}"] = ssl
        expected[f"frames{i}"] = frames
        mos.append(m)
        print(f"{name}: {n} samples, {ssl.shape[1]} frames, MOS {m.item():.6f}")
    expected["mos"] = torch.cat(mos)
    st.save(os.path.join(out, "utmos_expected.safetensors"), expected,
            {"heads": HEADS, "judge_id": ref.JUDGE_ID, "domain_id": ref.DOMAIN_ID})


if __name__ == "__main__":
    main()
