"""A PyTorch implementation of the LoSATok tokenizer (docs/method.md), written from docs/method.md
with the reference's module names (README.md, "Models and checkpoints"), for the C++ parity fixtures. Runs on
Debian's python3-torch 1.13 + python3-torchaudio 0.13.

The front ends are torchaudio transforms held as submodules, so `state_dict()` carries their
window / filterbank buffers the way the reference checkpoints do.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio

SAMPLE_RATE = 16000


class DbMel(nn.Module):
    """Dasheng front end: power mel in dB, floor at (per-clip max - 120 dB)."""

    def __init__(self):
        super().__init__()
        self.front_end = nn.Sequential(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=SAMPLE_RATE, n_fft=512, win_length=512, hop_length=160,
                f_min=0, f_max=8000, n_mels=64, center=True),
            torchaudio.transforms.AmplitudeToDB(top_db=120))

    def forward(self, wav):  # (B, N) -> (B, 64, F)
        mel = self.front_end[0](wav).unsqueeze(1)   # channel dim: the floor is per clip
        return self.front_end[1](mel).squeeze(1)


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        if mask is not None:
            att = att.masked_fill(~mask[:, None, None, :], float("-inf"))
        out = att.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, mask=None):
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, n_mels, frames, dim):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=(n_mels, frames), stride=(n_mels, frames))

    def forward(self, x):
        return self.proj(x)


class DashengEncoder(nn.Module):
    def __init__(self, dim, depth, heads, mlp_ratio=4.0, qkv_bias=True, target_length=1008):
        super().__init__()
        self.front_end = DbMel()
        self.target_length = target_length
        self.init_bn = nn.BatchNorm2d(64, momentum=0.01)
        self.patch_embed = PatchEmbed(64, 4, dim)
        self.time_pos_embed = nn.Parameter(torch.randn(1, dim, 1, target_length // 4) * 0.02)
        self.freq_pos_embed = nn.Parameter(torch.randn(1, dim, 1, 1) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio, qkv_bias) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, wav, lengths=None):
        x = self.front_end(wav).unsqueeze(1)            # (B, 1, 64, F)
        x = self.init_bn(x.transpose(1, 2)).transpose(1, 2)  # BatchNorm over the mel bins
        x = self.patch_embed(x)                          # (B, D, 1, T)
        t_total = x.shape[-1]
        mask = None
        if lengths is not None:
            mask = torch.arange(t_total)[None, :] < (lengths // 640)[:, None]
        outs = []
        chunk = self.target_length // 4
        for start in range(0, t_total, chunk):
            h = x[..., start:start + chunk]
            t = h.shape[-1]
            h = h + self.time_pos_embed[..., :t] + self.freq_pos_embed
            h = h.flatten(2).transpose(1, 2)
            m = None if mask is None else mask[:, start:start + t]
            for blk in self.blocks:
                h = blk(h, m)
            outs.append(self.norm(h))
        return torch.cat(outs, 1)


class Bottleneck(nn.Module):
    def __init__(self, dim, hidden, latent):
        super().__init__()
        self.downsample = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, latent))
        self.upsample = nn.Sequential(nn.Linear(latent, hidden), nn.GELU(), nn.Linear(hidden, dim))


class SemanticEncoder(nn.Module):
    def __init__(self, enc, sembo):
        super().__init__()
        self.encoder = DashengEncoder(**enc)
        self.bottleneck = Bottleneck(enc["dim"], **sembo)


class VocosMel(nn.Module):
    def __init__(self):
        super().__init__()
        self.mel_spec = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=1024, hop_length=160, n_mels=128, center=True, power=1)

    def forward(self, wav):
        return torch.log(torch.clip(self.mel_spec(wav), min=1e-7))


class AcousticEncoder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.front_end = VocosMel()
        self.patch_embed = nn.Conv2d(1, dim, kernel_size=(128, 4), stride=(128, 4))
        self.norm = nn.LayerNorm(dim)  # PyTorch's default eps, as the released model

    def forward(self, wav):
        x = self.patch_embed(self.front_end(wav).unsqueeze(1))  # (B, D, 1, T)
        return self.norm(x.squeeze(2).transpose(1, 2))


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim, inter, layer_scale):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, inter)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(inter, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x):
        h = self.dwconv(x).transpose(1, 2)
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class Backbone(nn.Module):
    def __init__(self, dim, inter, layers):
        super().__init__()
        self.embed = nn.Conv1d(dim, dim, 7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.convnext = nn.ModuleList([ConvNeXtBlock(dim, inter, 1.0 / layers) for _ in range(layers)])
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)
        for blk in self.convnext:
            x = blk(x)
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFT(nn.Module):
    """Vocos' ISTFT(padding="same"): irfft, window, overlap-add, divide by the envelope."""

    def __init__(self, n_fft, hop):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, spec):  # (B, F, T) complex
        pad = (self.n_fft - self.hop) // 2
        frames = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * self.window[None, :, None]
        t = spec.shape[-1]
        size = (t - 1) * self.hop + self.n_fft
        y = F.fold(frames, (1, size), (1, self.n_fft), stride=(1, self.hop))[:, 0, 0, pad:-pad]
        env = F.fold(self.window.square().expand(1, t, -1).transpose(1, 2), (1, size), (1, self.n_fft),
                     stride=(1, self.hop)).squeeze()[pad:-pad]
        return y / env


class Head(nn.Module):
    def __init__(self, dim, n_fft=1280, hop=320):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop)

    def forward(self, x):
        mag, p = self.out(x).transpose(1, 2).chunk(2, dim=1)
        mag = torch.clip(torch.exp(mag), max=1e2)
        return self.istft(mag * (torch.cos(p) + 1j * torch.sin(p)))


class Decoder(nn.Module):
    def __init__(self, dim, inter, layers):
        super().__init__()
        self.backbone = Backbone(dim, inter, layers)
        self.head = Head(dim)

    def forward(self, x):
        return self.head(self.backbone(x))


class DashengTokenizer(nn.Module):
    def __init__(self, enc_dim, latent, dec):
        super().__init__()
        self.encoder = AcousticEncoder(enc_dim)
        self.upsampler = nn.ConvTranspose1d(latent, dec["dim"], 2, stride=2)
        self.decoder = Decoder(**dec)


class AudioVAE(nn.Module):
    def __init__(self, enc, sembo, dec):
        super().__init__()
        latent = sembo["latent"]
        self.dasheng_tokenizer = DashengTokenizer(enc["dim"], latent, dec)
        self.semantic_encoder = SemanticEncoder(enc, sembo)
        self.fc_a = nn.Linear(enc["dim"], latent)
        self.fc_mu = nn.Linear(latent, latent)
        self.fc_logvar = nn.Linear(latent, latent)

    def encode(self, wav, lengths=None):
        sem = self.semantic_encoder.encoder(wav, lengths)
        ac = self.dasheng_tokenizer.encoder(wav)
        t = min(sem.shape[1], ac.shape[1])
        sem, ac = sem[:, :t], ac[:, :t]
        sem_low = self.semantic_encoder.bottleneck.downsample(sem)
        ac_low = self.fc_a(ac)
        uni_low = ac_low + sem_low
        mu = self.fc_mu(uni_low)
        logvar = torch.clamp(self.fc_logvar(uni_low), -20, 20)
        return {"semantic_emb": sem, "semantic_emb_low": sem_low, "acoustic_emb": ac,
                "acoustic_emb_low": ac_low, "unified_emb": ac + sem, "unified_emb_low": uni_low,
                "mu": mu, "logvar": logvar}

    def decode(self, z):
        return self.dasheng_tokenizer.decoder(self.dasheng_tokenizer.upsampler(z.transpose(1, 2)))


# configs/model/tiny.yaml
TINY = dict(enc=dict(dim=32, depth=2, heads=2), sembo=dict(hidden=24, latent=8),
            dec=dict(dim=32, inter=64, layers=2))
