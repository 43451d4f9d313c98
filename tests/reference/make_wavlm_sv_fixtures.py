#!/usr/bin/python3
"""Fixtures of the wav2vec2 / WavLM + ECAPA-TDNN port (tests/models/test_speaker_verification.cpp):
a tiny speaker-verification checkpoint in the layout of UniSpeech's `wavlm_large_finetune.pth`, a
tiny wav2vec2-base-shaped encoder (UTMOS22's), and what wavlm_sv_ref.py computes from them.

Usage: make_wavlm_sv_fixtures.py OUT_DIR   (the tests read tests/fixtures/)

Writes
OUT_DIR/wavlm_sv_tiny/wavlm_large_finetune.pth
    torch.save({"model": state_dict, "epoch": 7}) of ECAPA_TDNN over a WavLM-Large-shaped
    encoder, float32, random weights and norms: conv layers 7 x 32 channels (fairseq's kernels and
    strides), extractor_mode layer_norm, no conv bias, embed 64, 2 pre-LN layers, 2 heads, ffn 128,
    pos_conv kernel 16 / groups 4, relative bias with 32 buckets and max_distance 100 (not in the
    file: the test passes it), gru_rel_pos, cfg.normalize; ECAPA channels 32, pooled 96,
    attention 16, SE bottleneck 8, scale 8, emb_dim 16. Also feature_extract.model.mask_emb, as
    the released WavLM state dicts carry it (the loader must ignore it).
OUT_DIR/wavlm_sv_tiny/w2v2_base_tiny.safetensors
    A fairseq wav2vec2-base-shaped encoder (extractor_mode default: GroupNorm on the first conv,
    post-LN), float16 to keep it small: conv 7 x 32, embed 64, 2 layers, 4 heads (not in the
    shapes: the test overrides), ffn 64, pos_conv kernel 8 / groups 8; plus mask_emb.
OUT_DIR/wavlm_sv_expected.safetensors
    clip/{a,b}               16 kHz int16 (the models read samples / 32768): 1.0 s of asterisk-agent-alreadyon.wav from 0.25 s,
                             1.2 s of asterisk-agent-incorrect.wav from 0.5 s (Asterisk core
                             sounds, Allison Smith, CC-BY-SA-3.0; build/demo-corpus)
    wavlm/{a,b}/state{i}     (1, T, 64) s3prl's hidden states, i = 0..2 (the wave layer-normed)
    sv/{a,b}/features        (1, 64, T) after the instance norm
    sv/{a,b}/embedding       (1, 16)
    sv/cosine                (1)     F.cosine_similarity of the two embeddings
    w2v2/{a,b}/state{i}      the same for the wav2vec2-base-shaped encoder (no normalisation),
                             computed from its float16 weights
    The last state is also extract_features(...)["x"] (asserted here).
"""
import os
import sys

import scipy.io.wavfile
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402
import wavlm_sv_ref as ref  # noqa: E402

CONV = [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2
WAVLM = dict(conv_layers=CONV, extractor_layer_norm=True, conv_bias=False, embed_dim=64, layers=2, heads=2,
             ffn_dim=128, pos_conv_kernel=16, pos_conv_groups=4, layer_norm_first=True,
             relative_position_bias=True, num_buckets=32, max_distance=100, gru_rel_pos=True, normalize=True)
W2V2 = dict(conv_layers=CONV, extractor_layer_norm=False, conv_bias=False, embed_dim=64, layers=2, heads=4,
            ffn_dim=64, pos_conv_kernel=8, pos_conv_groups=8, layer_norm_first=False, normalize=False)
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "demo-corpus", "audio",
                      "speech")
CLIPS = {"a": ("asterisk-agent-alreadyon.wav", 0.25, 1.0), "b": ("asterisk-agent-incorrect.wav", 0.5, 1.2)}


def clip(name, start, seconds):
    sr, x = scipy.io.wavfile.read(os.path.join(CORPUS, name))
    assert sr == 16000 and x.dtype.name == "int16", (name, sr, x.dtype)
    x = torch.from_numpy(x[int(start * sr):int((start + seconds) * sr)].copy())
    assert x.numel() == int(seconds * sr) and x.abs().max() > 1600, name
    return x


def randomize(model, gen):
    """Non-trivial norms, running statistics, gates and weight-norm gains; feature-extractor convs
    at a variance-keeping scale so the default-mode stack (one GroupNorm) stays well above eps."""
    def rn(t, scale):
        return torch.randn(t.shape, generator=gen) * scale
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d)) and m.weight is not None:
                m.weight.copy_(1 + rn(m.weight, 0.2))
                m.bias.copy_(rn(m.bias, 0.1))
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(rn(m.running_mean, 0.2))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
                m.num_batches_tracked.fill_(100)
            if isinstance(m, nn.Conv1d) and "feature_extractor" in name:
                m.weight.copy_(rn(m.weight, (2.0 / m.weight[0].numel()) ** 0.5))
            if isinstance(m, (nn.Linear, nn.Conv1d)) and m.bias is not None:
                m.bias.copy_(rn(m.bias, 0.1))
            if isinstance(m, nn.Embedding):
                m.weight.copy_(rn(m.weight, 1.0))
        for name, p in model.named_parameters():
            if name.endswith("grep_a"):
                p.copy_(1 + rn(p, 0.3))
            elif name.endswith("weight_g"):
                p.mul_(0.5 + torch.rand(p.shape, generator=gen))
            elif name == "feature_weight":
                p.copy_(rn(p, 1.0))


def states(upstream, wave):
    out = upstream([wave])
    return out["hidden_states"], out["default"]


def main(out_dir):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(20261201)
    tiny = os.path.join(out_dir, "wavlm_sv_tiny")
    os.makedirs(tiny, exist_ok=True)
    pcm = {k: clip(*v) for k, v in CLIPS.items()}
    expected = {f"clip/{k}": v for k, v in pcm.items()}
    clips = {k: v.float() / 32768.0 for k, v in pcm.items()}

    sv = ref.ECAPA_TDNN(WAVLM, channels=32, emb_dim=16, cat_out=96, attention_channels=16, se_bottleneck_dim=8,
                        scale=8)
    randomize(sv, gen)
    sv.eval()
    # Centre the final BatchNorm between the two clips, so their embeddings differ in direction
    # (a random head maps every clip to nearly the same one) and the cosine tests something.
    pooled = []
    hook = sv.pooling.register_forward_hook(lambda m, i, o: pooled.append(o))
    with torch.no_grad():
        for wave in clips.values():
            sv(wave.unsqueeze(0))
    hook.remove()
    with torch.no_grad():
        sv.bn.running_mean.copy_(torch.cat(pooled).mean(0))
        sv.bn.running_var.copy_(torch.cat(pooled).var(0) + 1e-3)
    sd = {k: v.clone() for k, v in sv.state_dict().items()}
    sd["feature_extract.model.mask_emb"] = torch.rand(64, generator=gen)
    torch.save({"model": sd, "epoch": 7}, os.path.join(tiny, "wavlm_large_finetune.pth"))

    w2v2 = ref.UpstreamExpert(W2V2)
    randomize(w2v2, gen)
    half = {k: v.half() for k, v in w2v2.model.state_dict().items()}
    w2v2.model.load_state_dict({k: v.float() for k, v in half.items()})
    w2v2.eval()
    half["mask_emb"] = torch.rand(64, generator=gen).half()
    st.save(os.path.join(tiny, "w2v2_base_tiny.safetensors"), half)

    with torch.no_grad():
        emb = {}
        for k, wave in clips.items():
            hs, x = states(sv.feature_extract, wave)
            assert len(hs) == WAVLM["layers"] + 1
            for i, h in enumerate(hs):
                expected[f"wavlm/{k}/state{i}"] = h
            assert torch.equal(x, hs[-1])  # the encoder's output is the last state
            expected[f"sv/{k}/features"] = sv.get_feat(wave.unsqueeze(0))
            emb[k] = sv(wave.unsqueeze(0))
            expected[f"sv/{k}/embedding"] = emb[k]
            hs, x = states(w2v2, wave)
            for i, h in enumerate(hs):
                expected[f"w2v2/{k}/state{i}"] = h
            assert torch.equal(x, hs[-1])
        expected["sv/cosine"] = F.cosine_similarity(emb["a"], emb["b"])
    for k, v in expected.items():
        assert torch.isfinite(v).all(), k
    st.save(os.path.join(out_dir, "wavlm_sv_expected.safetensors"), {k: v.contiguous() for k, v in expected.items()})
    print("cosine", expected["sv/cosine"].item(), "frames", expected["wavlm/a/state0"].shape[1],
          expected["wavlm/b/state0"].shape[1])


if __name__ == "__main__":
    main(sys.argv[1])
