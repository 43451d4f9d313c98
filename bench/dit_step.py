#!/usr/bin/env python3
"""PyTorch-eager twin of `losatok bench` for the DiT stage: the same text-to-audio training step
(byte-level text encoder, condition dropout to zeros, logit-normal sigma, rectified-
flow interpolation, masked MSE to e - z, backward, clip 1.0, AdamW with decay on matrices only,
EMA) on the same sizes, so the C++ / Python step-time ratio is measured on one CPU. AdamW,
clipping and EMA are the best a PyTorch user has here (fused AdamW on >= 2.4, foreach on 1.13;
--per-tensor for the loops); --count-ops counts a step's ATen operations as `losatok bench
--count-ops` does.

  /usr/bin/python3 bench/dit_step.py --width 512 --batch 2 --seconds 10 --threads 2
  build/src/losatok --threads 2 bench --config configs/dit_tta.yaml --config configs/model/dit_512.yaml \\
      dit.condition.source=text \\
      data.batch_size=2
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "reference"))
import dit_ref as ref  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import step_timing  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", default="512", help="256 | 512 | 768 | 1024 | tiny")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--ema", type=float, default=0.9999)
    ap.add_argument("--count-ops", action="store_true", help="count one more step's ATen operations by phase")
    ap.add_argument("--per-tensor", action="store_true", help="per-parameter AdamW, clipping and EMA loops")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dit_cfg, text_cfg = ref.TINY if a.width == "tiny" else ref.paper(int(a.width))
    model = ref.DiTModel(dit_cfg, text_cfg, tts=False)
    params = list(model.named_parameters())
    print(f"DiT: {sum(p.numel() for _, p in params) / 1e6:.2f} M parameters")
    opt = step_timing.adamw(
        [{"params": [p for _, p in params if p.dim() >= 2], "weight_decay": 0.01},
         {"params": [p for _, p in params if p.dim() < 2], "weight_decay": 0.0}],
        1e-4, (0.9, 0.999), a.per_tensor)
    ema = [p.detach().clone() for _, p in params]
    frames = int(a.seconds * 16000) // 640
    z = torch.randn(a.batch, frames, dit_cfg["latent_dim"])
    mask = torch.ones(a.batch, frames, dtype=torch.bool)
    caption = [list(f"a synthetic caption number {i:02d} for timing the text encoder and cross-attention".encode())
               for i in range(a.batch)]
    tokens = torch.tensor(caption) + 2
    tmask = torch.ones_like(tokens, dtype=torch.bool)

    def step():
        with step_timing.phase("forward"):
            drop = torch.rand(a.batch) < 0.2
            cond = model.text_encoder(tokens, tmask)
            cond = torch.where(drop[:, None, None], torch.zeros_like(cond), cond)  # dit.flow.uncond: zero
            sigma = torch.sigmoid(torch.randn(a.batch))
            noise = torch.randn_like(z)
            s = sigma[:, None, None]
            x = (1 - s) * z + s * noise
            v = model.velocity(x, sigma, mask, cond, tmask)
            m = mask[..., None].float()
            loss = ((v - (noise - z)).pow(2) * m).sum() / (m.sum() * z.shape[-1])
        opt.zero_grad(set_to_none=True)
        with step_timing.phase("backward"):
            loss.backward()
        with step_timing.phase("clipping"):
            norm = step_timing.clip(model.parameters(), 1.0, a.per_tensor)
        if torch.isfinite(loss) and torch.isfinite(norm):
            with step_timing.phase("optimizer"):
                opt.step()
        with torch.no_grad(), step_timing.phase("ema"):
            step_timing.ema_update(ema, [p for _, p in params], a.ema, a.per_tensor)
        return loss.item()

    times = step_timing.time_steps(step, a.warmup, a.steps)
    step_timing.report(f"pytorch eager {torch.__version__} dit (width {a.width}, batch {a.batch}, {a.seconds:.2f} s, "
                       f"{a.threads} threads):", times, a.batch)
    if a.count_ops:
        step_timing.count_ops(step)

if __name__ == "__main__":
    main()
