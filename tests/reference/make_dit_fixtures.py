#!/usr/bin/python3
"""Fixture for the DiT's numerical parity, computed with Debian's python3-torch 1.13 from
dit_ref.py (written from docs/method.md, "DiT" with our checkpoint names):

    /usr/bin/python3 tests/reference/make_dit_fixtures.py tests/fixtures

Writes dit.safetensors: two tiny models with random weights (gates and output layers too, so
every path counts): `tts/` (U-ViT skips around a mid block, UniFlow gates, the prompt + frame-aligned
text as time-aligned context) and `tta/` (no skips, adaLN-Zero gates, no output conv, the learned
unconditional row, cross-attention to a shorter text), their inputs with padded rows, and the expected text
encodings and velocities.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import dit_ref as ref  # noqa: E402
import st  # noqa: E402


def randomize(m):
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.15)
        for n, mod in m.named_modules():
            if isinstance(mod, torch.nn.LayerNorm) and mod.elementwise_affine:
                mod.weight.add_(1.0)


def main():
    out_dir = sys.argv[1]
    torch.manual_seed(0)
    dit_cfg, text_cfg = ref.TINY
    dit_cfg = dict(dit_cfg, latent_dim=6, width=16, heads=2, time_freq_dim=16)
    text_cfg = dict(text_cfg, width=8)
    t = {}
    b, frames = 2, 7
    mask = torch.ones(b, frames, dtype=torch.bool)
    mask[1, 5:] = False
    x = torch.randn(b, frames, 6) * mask[..., None]
    sigma = torch.tensor([0.3, 0.8])
    t.update({"in/x": x, "in/sigma": sigma, "in/mask": mask})

    tts = ref.DiTModel(dict(dit_cfg, uvit_skips=True), text_cfg, tts=True)
    randomize(tts)
    tokens = torch.randint(2, ref.TEXT_VOCAB, (b, frames))
    tokens[0, 4:] = 1  # the filler
    tokens[1, 5:] = 0
    prompt = torch.randn(b, frames, 6) * mask[..., None]
    with torch.no_grad():
        text = tts.text_encoder(tokens, mask)
        v = tts.velocity(x, sigma, mask, text, mask, prompt, text)
    t.update({"in/tts_tokens": tokens, "in/prompt": prompt, "expect/tts_text": text, "expect/tts_out": v})
    t.update({"tts/" + k: p for k, p in tts.state_dict().items()})

    tta = ref.DiTModel(dict(dit_cfg, uvit_skips=False, depth=3, gating="adaln_zero", final_conv=False), text_cfg,
                       tts=False, learned_null=True)
    randomize(tta)
    cap = torch.randint(2, ref.TEXT_VOCAB, (b, 4))
    cap_mask = torch.ones(b, 4, dtype=torch.bool)
    cap_mask[0, 3:] = False
    cap[0, 3:] = 0
    with torch.no_grad():
        text = tta.text_encoder(cap, cap_mask)
        v = tta.velocity(x, sigma, mask, text, cap_mask)
    t.update({"in/tta_tokens": cap, "in/tta_mask": cap_mask, "expect/tta_text": text, "expect/tta_out": v})
    t.update({"tta/" + k: p for k, p in tta.state_dict().items()})
    st.save(os.path.join(out_dir, "dit.safetensors"), t, {"made_by": "tests/reference/make_dit_fixtures.py"})
    print("dit.safetensors:", len(t), "tensors")


if __name__ == "__main__":
    main()
