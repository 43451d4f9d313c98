#!/usr/bin/python3
"""Fixtures for the tokenizer stage's losses and discriminators, computed with Debian's
python3-torch 1.13 / python3-torchaudio 0.13 from my own reading of Vocos (discriminators.py,
loss.py), Parallel WaveGAN (multi-resolution STFT loss) and docs/method.md, "Tokenizer" (KL, SI-SDR):

    /usr/bin/python3 tests/reference/make_tokenizer_fixtures.py tests/fixtures

Writes tokenizer_losses.safetensors (inputs, expected loss values) and
discriminators.safetensors (a narrow MPD + MRD with weight-norm parameters `weight_g` /
`weight_v` under Vocos' names, an input batch of odd length, and every logit / feature map).
"""
import os
import sys

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from torch.nn.utils import weight_norm

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402

SR = 16000


def multi_scale_mel(y_hat, y, n_ffts, n_mels):
    total = 0.0
    for n_fft, m in zip(n_ffts, n_mels):
        mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SR, n_fft=n_fft, win_length=n_fft, hop_length=n_fft // 4, n_mels=m,
            center=True, power=1.0, f_min=0.0, f_max=None)
        total = total + (torch.log(mel(y_hat).clamp(min=1e-7)) - torch.log(mel(y).clamp(min=1e-7))).abs().mean()
    return total / len(n_ffts)


DAC_WINDOWS, DAC_MELS = [32, 64, 128, 256, 512, 1024, 2048], [5, 10, 20, 40, 80, 160, 320]


def slaney_fbanks(window, n_mels):
    """librosa.filters.mel's default (Slaney scale, Slaney area norm), as (n_freqs, n_mels)."""
    return torchaudio.functional.melscale_fbanks(window // 2 + 1, 0.0, SR / 2, n_mels, SR,
                                                 norm="slaney", mel_scale="slaney")


def dac_mel(y_hat, y):
    """DAC's MelSpectrogramLoss as descript-audio-codec's conf/base.yml sets it (my reading of
    dac/nn/loss.py and audiotools' AudioSignal.stft / mel_spectrogram): per window w, a periodic
    Hann STFT with hop w / 4, centred reflect padding (match_stride off), magnitude, Slaney mel
    0..sr/2, L1 of log10(clamp(mel, 1e-5)); mag_weight 0; summed over the scales."""
    total = 0.0
    for w, m in zip(DAC_WINDOWS, DAC_MELS):
        fb = slaney_fbanks(w, m)

        def mel(x):
            s = torch.stft(x, w, w // 4, w, torch.hann_window(w), center=True, pad_mode="reflect",
                           return_complex=True).abs()
            return s.transpose(-1, -2) @ fb

        total = total + (mel(y_hat).clamp(min=1e-5).log10() - mel(y).clamp(min=1e-5).log10()).abs().mean()
    return total


def mr_stft(y_hat, y, n_ffts, hops):
    sc = mag = 0.0
    for n_fft, hop in zip(n_ffts, hops):
        w = torch.hann_window(n_fft)
        s_hat = torch.stft(y_hat, n_fft, hop, n_fft, w, center=True, pad_mode="reflect", return_complex=True).abs().clamp(min=1e-7)
        s = torch.stft(y, n_fft, hop, n_fft, w, center=True, pad_mode="reflect", return_complex=True).abs().clamp(min=1e-7)
        sc = sc + torch.norm(s - s_hat, p="fro") / torch.norm(s, p="fro")
        mag = mag + (s.log() - s_hat.log()).abs().mean()
    return sc / len(n_ffts), mag / len(n_ffts)


def kl(mu, logvar, mask, clamp):
    terms = -0.5 * (1 + logvar - mu ** 2 - logvar.exp())
    if clamp > 0:
        terms = terms.clamp(min=clamp)
    per = terms.sum(-1)
    m = mask.float()
    return (per * m).sum() / m.sum()


def si_sdr(y_hat, y):
    y = y - y.mean(-1, keepdim=True)
    y_hat = y_hat - y_hat.mean(-1, keepdim=True)
    a = (y_hat * y).sum(-1, keepdim=True) / (y ** 2).sum(-1, keepdim=True)
    t = a * y
    return 10 * torch.log10((t ** 2).sum(-1) / ((t - y_hat) ** 2).sum(-1))


class DiscriminatorP(nn.Module):
    def __init__(self, period, ch):
        super().__init__()
        self.period = period
        chans = [1] + ch
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0)))
            for i in range(5)])
        self.conv_post = weight_norm(nn.Conv2d(chans[5], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x):
        x = x.unsqueeze(1)
        fmap = []
        b, c, t = x.shape
        if t % self.period != 0:
            n_pad = self.period - (t % self.period)
            x = F.pad(x, (0, n_pad), "reflect")
            t = t + n_pad
        x = x.view(b, c, t // self.period, self.period)
        for i, l in enumerate(self.convs):
            x = F.leaky_relu(l(x), 0.1)
            if i > 0:
                fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class DiscriminatorR(nn.Module):
    def __init__(self, window_length, channels, bands=((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))):
        super().__init__()
        self.window_length = window_length
        self.spec_fn = torchaudio.transforms.Spectrogram(
            n_fft=window_length, hop_length=window_length // 4, win_length=window_length, power=None)
        n_fft = window_length // 2 + 1
        self.bands = [(int(b[0] * n_fft), int(b[1] * n_fft)) for b in bands]

        def convs():
            return nn.ModuleList([
                weight_norm(nn.Conv2d(2, channels, (3, 9), (1, 1), padding=(1, 4))),
                weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(channels, channels, (3, 3), (1, 1), padding=(1, 1))),
            ])
        self.band_convs = nn.ModuleList([convs() for _ in self.bands])
        self.conv_post = weight_norm(nn.Conv2d(channels, 1, (3, 3), (1, 1), padding=(1, 1)))

    def forward(self, x):
        x = x - x.mean(dim=-1, keepdims=True)
        x = 0.8 * x / (x.abs().max(dim=-1, keepdim=True)[0] + 1e-9)
        x = torch.view_as_real(self.spec_fn(x))      # b f t c
        x = x.permute(0, 3, 2, 1)                    # b c t f
        fmap, outs = [], []
        for (lo, hi), stack in zip(self.bands, self.band_convs):
            band = x[..., lo:hi]
            for i, layer in enumerate(stack):
                band = F.leaky_relu(layer(band), 0.1)
                if i > 0:
                    fmap.append(band)
            outs.append(band)
        x = self.conv_post(torch.cat(outs, dim=-1))
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


def main(out_dir):
    torch.manual_seed(11)
    t = torch.arange(4001) / SR
    y = (0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(2, 4001)).float()
    y_hat = (0.8 * y + 0.05 * torch.randn(2, 4001)).float()
    mu, logvar = torch.randn(2, 7, 5), 0.5 * torch.randn(2, 7, 5)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3], dtype=torch.bool)
    n_ffts, n_mels, hops = [256, 512], [20, 40], [64, 128]
    sc, mag = mr_stft(y_hat, y, n_ffts, hops)
    out = {
        "y": y, "y_hat": y_hat, "mu": mu, "logvar": logvar, "mask": mask.to(torch.uint8),
        "mel_loss": multi_scale_mel(y_hat, y, n_ffts, n_mels).reshape(1),
        "stft_sc": sc.reshape(1), "stft_mag": mag.reshape(1),
        "dac_mel": dac_mel(y_hat, y).reshape(1),
        "dac_mel_clip1": dac_mel(y_hat[1], y[1]).reshape(1),
        "slaney_fb_32_5": slaney_fbanks(32, 5), "slaney_fb_2048_320": slaney_fbanks(2048, 320),
        "logvar_penalty": ((logvar ** 2).sum(-1) * mask.float()).sum().reshape(1) / mask.float().sum(),
        "kl": kl(mu, logvar, mask, 0.0).reshape(1), "kl_clamped": kl(mu, logvar, mask, 0.2).reshape(1),
        "si_sdr": si_sdr(y_hat, y),
    }
    st.save(os.path.join(out_dir, "tokenizer_losses.safetensors"), out)

    periods, mpd_ch, windows, mrd_ch = [2, 3, 5], [4, 8, 8, 16, 16], [512, 256], 4
    mpd = nn.ModuleDict({"discriminators": nn.ModuleList([DiscriminatorP(p, mpd_ch) for p in periods])})
    mrd = nn.ModuleDict({"discriminators": nn.ModuleList([DiscriminatorR(w, mrd_ch) for w in windows])})
    disc = {}
    for name, m in (("multiperioddisc", mpd), ("multiresddisc", mrd)):
        for k, v in m.state_dict().items():
            if not k.endswith(".window"):
                disc[f"{name}.{k}"] = (v + 0.01 * torch.randn_like(v)).contiguous()  # off the init
    mpd.load_state_dict({k[len("multiperioddisc."):]: v for k, v in disc.items() if k.startswith("multiperioddisc.")})
    mrd.load_state_dict({k[len("multiresddisc."):]: v for k, v in disc.items() if k.startswith("multiresddisc.")},
                        strict=False)
    x = 0.3 * torch.randn(2, 3001)  # odd length: reflect padding for every period
    with torch.no_grad():
        for name, m in (("mpd", mpd), ("mrd", mrd)):
            for i, d in enumerate(m["discriminators"]):
                logits, fmap = d(x)
                disc[f"out.{name}.{i}.logits"] = logits
                for k, f in enumerate(fmap):
                    disc[f"out.{name}.{i}.fmap.{k}"] = f.contiguous()
    disc["input"] = x
    st.save(os.path.join(out_dir, "discriminators.safetensors"), disc,
            {"periods": "2,3,5", "mpd_channels": "4,8,8,16,16", "windows": "512,256", "mrd_channels": "4"})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
