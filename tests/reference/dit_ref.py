"""A PyTorch implementation of the DiT of docs/method.md, "DiT" (UniFlow-Audio's AudioUDiT as I
read it: AdaLN time modulation with UniFlow's gates tanh(1 - g) / 1 - g or adaLN-Zero's g,
self-attention with rotate-half RoPE and q/k LayerNorm, the time-aligned context added per block,
cross-attention to the embedded condition, GEGLU, U-ViT long skips around a mid block, Conv1d
output) and its byte-level text encoder, written from docs/method.md with the module names our checkpoints use,
for the C++ parity fixture and the PyTorch-eager step benchmark. Runs on Debian's
python3-torch 1.13 (no scaled_dot_product_attention there: the math is spelt out).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

TEXT_VOCAB = 258  # 0 pad, 1 filler, 2 + byte


def apply_rope(x, theta):
    t, dh = x.shape[-2], x.shape[-1]
    half = dh // 2
    inv = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(theta) / half))
    ang = torch.arange(t, dtype=torch.float32)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)
    sin = torch.cat([ang.sin(), ang.sin()], -1)
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def timestep_features(t, dim):
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / half))
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([args.cos(), args.sin()], -1)


def attention(q, k, v, key_mask):
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if key_mask is not None:
        att = att.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return att.softmax(-1) @ v


class Attention(nn.Module):
    def __init__(self, dim, heads, context_dim, qk_norm, rope_theta):
        super().__init__()
        self.heads, self.rope_theta, self.self_attn = heads, rope_theta, context_dim == 0
        if self.self_attn:
            self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        else:
            self.q = nn.Linear(dim, dim, bias=False)
            self.kv = nn.Linear(context_dim, 2 * dim, bias=False)
        if qk_norm:
            self.q_norm = nn.LayerNorm(dim // heads, eps=1e-6)
            self.k_norm = nn.LayerNorm(dim // heads, eps=1e-6)
        else:
            self.q_norm = self.k_norm = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context=None, key_mask=None):
        b, t, d = x.shape
        split = lambda y: y.reshape(b, y.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        if self.self_attn:
            q, k, v = (split(y) for y in self.qkv(x).chunk(3, -1))
        else:
            k, v = (split(y) for y in self.kv(context).chunk(2, -1))
            q = split(self.q(x))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.self_attn and self.rope_theta > 0:
            q, k = apply_rope(q, self.rope_theta), apply_rope(k, self.rope_theta)
        o = attention(q, k, v, key_mask)
        return self.proj(o.transpose(1, 2).reshape(b, t, d))


class GegluMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * hidden)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x):
        a, g = self.proj(x).chunk(2, -1)
        return self.out(a * F.gelu(g))


class DiTBlock(nn.Module):
    def __init__(self, c, ta_dim, takes_skip):
        super().__init__()
        w = c["width"]
        self.uniflow = c.get("gating", "uniflow") == "uniflow"
        if takes_skip:
            self.skip_norm = nn.LayerNorm(2 * w, eps=1e-6)
            self.skip_linear = nn.Linear(2 * w, w)
        else:
            self.skip_linear = None
        self.norm1 = nn.LayerNorm(w, eps=1e-6, elementwise_affine=False)
        self.attn = Attention(w, c["heads"], 0, c["qk_norm"], c["rope_theta"])
        if ta_dim > 0:
            self.ta_norm = nn.LayerNorm(ta_dim, eps=1e-6)
            self.ta_proj = nn.Linear(ta_dim, w, bias=False)
        else:
            self.ta_proj = None
        self.norm_cross = nn.LayerNorm(w, eps=1e-6)
        self.norm_context = nn.LayerNorm(w, eps=1e-6)
        self.cross_attn = Attention(w, c["heads"], w, c["qk_norm"], 0.0)
        self.norm2 = nn.LayerNorm(w, eps=1e-6, elementwise_affine=False)
        self.mlp = GegluMlp(w, int(w * c["mlp_ratio"]))
        self.adaln = nn.Linear(w, 6 * w)

    def forward(self, x, t, mask, cond, cond_mask, ta, skip):
        if self.skip_linear is not None:
            x = self.skip_linear(self.skip_norm(torch.cat([x, skip], -1)))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(t)[:, None, :].chunk(6, -1)
        g_attn = torch.tanh(1 - gate1) if self.uniflow else gate1
        g_mlp = 1 - gate2 if self.uniflow else gate2
        x = x + g_attn * self.attn(self.norm1(x) * (1 + scale1) + shift1, None, mask)
        if self.ta_proj is not None:
            x = x + self.ta_proj(self.ta_norm(ta))
        x = x + self.cross_attn(self.norm_cross(x), self.norm_context(cond), cond_mask)
        return x + g_mlp * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class DiT(nn.Module):
    def __init__(self, c, cond_dim, ta_dim):
        super().__init__()
        self.c = c
        w, half = c["width"], c["depth"] // 2
        self.n_blocks = 2 * half + 1 if c["uvit_skips"] else c["depth"]
        self.input_proj = nn.Linear(c["latent_dim"], w)
        self.time_embed = nn.Sequential(nn.Linear(c["time_freq_dim"], w), nn.SiLU(), nn.Linear(w, w))
        self.context_embed = nn.Sequential(nn.Linear(cond_dim, w), nn.SiLU(), nn.Linear(w, w))
        # in-blocks 0 .. half-1, the mid block `half`, out-blocks half+1 .. 2 half (with skips)
        self.blocks = nn.ModuleList(
            [DiTBlock(c, ta_dim, c["uvit_skips"] and i > half) for i in range(self.n_blocks)])
        self.final_norm = nn.LayerNorm(w, eps=1e-6, elementwise_affine=False)
        self.final_adaln = nn.Linear(w, 2 * w)
        self.final_proj = nn.Linear(w, c["latent_dim"])
        d = c["latent_dim"]
        self.final_conv = nn.Conv1d(d, d, 3, padding=1) if c.get("final_conv", True) else None

    def forward(self, x, sigma, mask, cond, cond_mask, ta=None):
        wts = mask[..., None].to(x.dtype)
        h = self.input_proj(x) * wts
        t = F.silu(self.time_embed(timestep_features(sigma * 1000.0, self.c["time_freq_dim"])))
        cond = self.context_embed(cond)
        half, skips = self.c["depth"] // 2, []
        for i, blk in enumerate(self.blocks):
            skip = skips.pop() if blk.skip_linear is not None else None
            h = blk(h, t, mask, cond, cond_mask, ta, skip)
            if self.c["uvit_skips"] and i < half:
                skips.append(h)  # in-block outputs, taken back in reverse order
        shift, scale = self.final_adaln(t)[:, None, :].chunk(2, -1)
        out = self.final_proj(self.final_norm(h) * (1 + scale) + shift) * wts
        if self.final_conv is not None:
            out = self.final_conv(out.transpose(1, 2)).transpose(1, 2) * wts
        return out


class TextBlock(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.norm1 = nn.LayerNorm(t["width"], eps=1e-6)
        self.attn = Attention(t["width"], t["heads"], 0, True, 10000.0)
        self.norm2 = nn.LayerNorm(t["width"], eps=1e-6)
        self.mlp = GegluMlp(t["width"], int(t["width"] * t["mlp_ratio"]))

    def forward(self, x, mask):
        x = x + self.attn(self.norm1(x), None, mask)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.embed = nn.Embedding(TEXT_VOCAB, t["width"])
        self.blocks = nn.ModuleList([TextBlock(t) for _ in range(t["depth"])])
        self.norm = nn.LayerNorm(t["width"], eps=1e-6)

    def forward(self, tokens, mask):
        x = self.embed(tokens)
        for b in self.blocks:
            x = b(x, mask)
        return self.norm(x) * mask[..., None].to(x.dtype)


class DiTModel(nn.Module):
    """Root module: dit.*, text_encoder.*, null_cond (learned unconditional input only) and the
    latent statistics buffers."""

    def __init__(self, c, t, tts, learned_null=False):
        super().__init__()
        self.tts = tts
        cond = t["width"]
        self.dit = DiT(c, cond, c["latent_dim"] + cond if tts else 0)
        self.text_encoder = TextEncoder(t)
        if learned_null:
            self.null_cond = nn.Parameter(torch.zeros(1, cond))
        self.register_buffer("latent_mean", torch.zeros(c["latent_dim"]))
        self.register_buffer("latent_std", torch.ones(c["latent_dim"]))
        self.register_buffer("frames_per_token", torch.ones(()))

    def velocity(self, x, sigma, mask, cond, cond_mask, prompt=None, aligned=None):
        ta = torch.cat([prompt, aligned], -1) if self.tts else None
        return self.dit(x, sigma, mask, cond, cond_mask, ta)


# configs/model/dit_tiny.yaml / dit_{256,512}.yaml
TINY = (dict(latent_dim=8, width=96, depth=4, heads=2, mlp_ratio=2.0, qk_norm=True, rope_theta=10000.0,
             uvit_skips=True, gating="uniflow", final_conv=True, time_freq_dim=64),
        dict(width=64, depth=2, heads=2, mlp_ratio=2.0))


def paper(width, latent_dim=128):
    text = min(width, 512)
    return (dict(latent_dim=latent_dim, width=width, depth=20, heads=width // 64, mlp_ratio=4.0, qk_norm=True,
                 rope_theta=10000.0, uvit_skips=True, gating="uniflow", final_conv=True, time_freq_dim=256),
            dict(width=text, depth=4, heads=text // 64, mlp_ratio=4.0))
