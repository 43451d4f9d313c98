#!/usr/bin/env python3
"""PyTorch-eager twin of `losatok bench --config configs/sembo.yaml`: the same SemBo training
step (frozen Dasheng encoder forward under no_grad, compressor / restorer, lambda_rec L_rec +
lambda_rel L_rel over valid tokens, backward, clip 1.0, AdamW with decay on matrices only, EMA)
on the same sizes and noise batch, so the C++ / Python step-time ratio is measured on one CPU.

  /usr/bin/python3 bench/sembo_step.py --size paper --batch 2 --seconds 4 --threads 2
  build/src/losatok --threads 2 bench --config configs/sembo.yaml data.batch_size=2 \
      data.segment_seconds=4 sembo.baselines=false
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "reference"))
import losatok_ref as ref  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import step_timing  # noqa: E402

SIZES = {
    "tiny": dict(enc=dict(dim=32, depth=2, heads=2), sembo=dict(hidden=24, latent=8)),
    "paper": dict(enc=dict(dim=1280, depth=32, heads=16), sembo=dict(hidden=512, latent=128)),
}


def time_relation(x):
    n = F.normalize(x, dim=-1)
    return n @ n.transpose(1, 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=SIZES, default="paper")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--from-features", action="store_true", help="random encoder-shaped features, no encoder")
    ap.add_argument("--lambda-rec", type=float, default=1e3)
    ap.add_argument("--lambda-rel", type=float, default=1.0)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--count-ops", action="store_true", help="count one more step's ATen operations by phase")
    ap.add_argument("--per-tensor", action="store_true", help="per-parameter AdamW, clipping and EMA loops")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    size = SIZES[a.size]
    model = ref.SemanticEncoder(size["enc"], size["sembo"])
    enc, bott = model.encoder.eval(), model.bottleneck
    for p in enc.parameters():
        p.requires_grad_(False)
    params = list(bott.named_parameters())
    opt = step_timing.adamw(
        [
            {"params": [p for n, p in params if p.dim() >= 2], "weight_decay": 0.01},
            {"params": [p for n, p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        1e-3,
        (0.9, 0.999),
        a.per_tensor,
    )
    ema = [p.detach().clone() for _, p in params]
    tokens = int(a.seconds * 16000) // 640
    wav = 0.1 * torch.randn(a.batch, tokens * 640)
    lengths = torch.full((a.batch,), tokens * 640, dtype=torch.long)
    feats = torch.randn(a.batch, tokens, size["enc"]["dim"]) if a.from_features else None

    def step():
        with step_timing.phase("forward"):
            if feats is None:
                with torch.no_grad():
                    h = enc(wav, lengths)
            else:
                h = feats
            mask = (torch.arange(h.shape[1])[None, :] < (lengths // 640)[:, None]).float()
            low = bott.downsample(h)
            restored = bott.upsample(low)
            m = mask.unsqueeze(-1)
            rec = ((F.normalize(restored, dim=-1) - F.normalize(h, dim=-1)).pow(2) * m).sum() / (m.sum() * h.shape[-1])
            pm = mask.unsqueeze(2) * mask.unsqueeze(1)
            rel = ((time_relation(low) - time_relation(h)).pow(2) * pm).sum() / pm.sum()
            loss = a.lambda_rec * rec + a.lambda_rel * rel
        opt.zero_grad(set_to_none=True)
        with step_timing.phase("backward"):
            loss.backward()
        with step_timing.phase("clipping"):
            norm = step_timing.clip(bott.parameters(), 1.0, a.per_tensor)
        if torch.isfinite(loss) and torch.isfinite(norm):
            with step_timing.phase("optimizer"):
                opt.step()
        with torch.no_grad(), step_timing.phase("ema"):
            step_timing.ema_update(ema, [p for _, p in params], a.ema, a.per_tensor)
        return loss.item()

    times = step_timing.time_steps(step, a.warmup, a.steps)
    step_timing.report(
        f"pytorch eager {torch.__version__} sembo ({a.size}, batch {a.batch}, {a.seconds:.2f} s, "
        f"{'from cached features' if a.from_features else 'from audio'}, {a.threads} threads):",
        times, a.batch, a.batch * tokens * 0.04)
    if a.count_ops:
        step_timing.count_ops(step)

if __name__ == "__main__":
    main()
