#!/usr/bin/python3
"""LAION-CLAP (HTSAT-tiny audio branch + RoBERTa text branch, non-fusion, the layout of
`630k-audioset-best.pt`) in plain PyTorch, written from the published architectures, as the
reference for the C++ port (src/models/clap.cpp). Weights are a {name: tensor} dict with the
checkpoint's names after the DDP `module.` prefix is removed; every size comes from the shapes.

Audio: wave (B, 480000) at 48 kHz
  -> torchlibrosa STFT (conv1d with a Hann-windowed DFT kernel, n_fft 1024, hop 480, centre,
     reflect padding) -> |X|^2 -> @ melW (librosa slaney mel, 64 bands, 50..14000 Hz)
  -> 10 log10(max(x, 1e-10))                                   log-mel (B, T=1001, 64)
  -> bn0 (BatchNorm2d over the mel bins, eval)
  -> bicubic (align_corners) time interpolation to spec_size * freq_ratio = 1024 frames,
     the freq_ratio (4) time chunks stacked along frequency        (B, 1, 256, 256)
  -> patch embed (conv 4x4 / 4) + LayerNorm -> Swin stages (window attention with relative
     position bias, shifted windows with the -100 attn_mask on odd blocks, patch merging)
  -> LayerNorm -> mean over tokens                               embedding (B, C_last)
  -> audio_projection (Linear, ReLU, Linear) -> L2 normalise.
Text: RoBERTa (post-LN, exact GELU, LayerNorm eps 1e-5, position ids counted from
padding_idx + 1 over non-pad tokens) -> pooler tanh(dense(h[:, 0])) -> text_projection ->
L2 normalise.

Tokenizer: roberta-base's byte-level BPE (GPT-2's), `<s>` 0 `<pad>` 1 `</s>` 2 `<unk>` 3,
truncated to 75 pieces + `<s>`/`</s>`, padded to 77. The GPT-2 pre-tokenisation regex
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
is run by Python's `re` with explicit classes: L = general category L*, N = N*, from this
Python's unicodedata (the C++ general-category table in src/data/unicode.cpp is generated from
the same unicodedata by make_unicode_tables.py), whitespace = the Unicode White_Space property
(WHITE_SPACE below).

Importing this module has no side effects.
"""
import json
import math
import re
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 48000
N_FFT = 1024
HOP = 480
FMIN = 50.0
FMAX = 14000.0
CLIP_SAMPLES = 480000
SPEC_SIZE = 256
CONTEXT_LENGTH = 77
LN_EPS = 1e-5

# ---------------------------------------------------------------------------------------------
# front end


def hz_to_mel_slaney(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep, mels)


def mel_to_hz_slaney(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


def slaney_mel_filters(sr, n_fft, n_mels, fmin, fmax):
    """librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) (htk=False, norm='slaney') in float64,
    returned transposed, (n_fft // 2 + 1, n_mels) float32, as torchlibrosa's melW."""
    fftfreqs = np.arange(n_fft // 2 + 1, dtype=np.float64) * sr / n_fft
    mel_f = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    w = np.zeros((n_mels, n_fft // 2 + 1))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        w[i] = np.maximum(0, np.minimum(lower, upper))
    w *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return torch.from_numpy(w.T.astype(np.float32).copy())


def stft_kernels(n_fft):
    """torchlibrosa's conv_real / conv_imag weights: (n_fft // 2 + 1, 1, n_fft) float32 of
    cos / -sin (2 pi k n / N) times the periodic Hann window, computed in float64."""
    n = np.arange(n_fft, dtype=np.float64)
    k = np.arange(n_fft // 2 + 1, dtype=np.float64)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    ang = 2 * np.pi * np.outer(k, n) / n_fft
    real = (np.cos(ang) * win[None, :]).astype(np.float32)[:, None, :]
    imag = (-np.sin(ang) * win[None, :]).astype(np.float32)[:, None, :]
    return torch.from_numpy(real.copy()), torch.from_numpy(imag.copy())


def power_spectrogram(wave, conv_real, conv_imag, n_fft, hop):
    """(B, N) -> (B, T, n_fft // 2 + 1)."""
    x = F.pad(wave[:, None, :], (n_fft // 2, n_fft // 2), mode="reflect")
    re_ = F.conv1d(x, conv_real, stride=hop)
    im_ = F.conv1d(x, conv_imag, stride=hop)
    return (re_ ** 2 + im_ ** 2).transpose(1, 2)


def fit_clip(wave, clip=CLIP_SAMPLES):
    """LAION's 'repeatpad' for short clips (whole copies, then zeros); longer clips keep their
    first `clip` samples (LAION crops at random)."""
    n = wave.shape[-1]
    if n > clip:
        return wave[:clip]
    if n < clip:
        wave = wave.repeat(clip // n)
        wave = F.pad(wave, (0, clip - wave.shape[-1]))
    return wave


# ---------------------------------------------------------------------------------------------
# HTSAT


def layer_norm(x, w, p, eps=LN_EPS):
    return F.layer_norm(x, (x.shape[-1],), w[p + ".weight"], w[p + ".bias"], eps)


def linear(x, w, p, bias=True):
    return F.linear(x, w[p + ".weight"], w[p + ".bias"] if bias else None)


def relative_position_index(ws):
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    return (rel[..., 0] + ws - 1) * (2 * ws - 1) + (rel[..., 1] + ws - 1)


def shifted_window_mask(res, ws, shift):
    """(nW, ws*ws, ws*ws): 0 within a region, -100 across regions of the cyclically shifted map."""
    region = torch.zeros(res, res)
    bounds = [(0, res - ws), (res - ws, res - shift), (res - shift, res)]
    cnt = 0
    for h0, h1 in bounds:
        for w0, w1 in bounds:
            region[h0:h1, w0:w1] = cnt
            cnt += 1
    win = region.view(res // ws, ws, res // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
    diff = win[:, None, :] - win[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class Htsat:
    def __init__(self, w):
        self.w = w
        p = "audio_branch."
        self.embed_dim = w[p + "patch_embed.proj.weight"].shape[0]
        self.patch = w[p + "patch_embed.proj.weight"].shape[-1]
        self.mel_bins = w[p + "bn0.weight"].shape[0]
        self.freq_ratio = SPEC_SIZE // self.mel_bins
        n_layers = 1 + max(int(k.split(".")[2]) for k in w if k.startswith(p + "layers."))
        self.depths = [1 + max(int(k.split(".")[4]) for k in w if k.startswith(p + "layers.%d.blocks." % i))
                       for i in range(n_layers)]
        self.mel_w = w.get(p + "logmel_extractor.melW")
        if self.mel_w is None:
            self.mel_w = slaney_mel_filters(SAMPLE_RATE, N_FFT, self.mel_bins, FMIN, FMAX)
        self.conv_real = w.get(p + "spectrogram_extractor.stft.conv_real.weight")
        self.conv_imag = w.get(p + "spectrogram_extractor.stft.conv_imag.weight")
        if self.conv_real is None:
            self.conv_real, self.conv_imag = stft_kernels(N_FFT)

    def log_mel(self, wave):
        spec = power_spectrogram(wave, self.conv_real, self.conv_imag, N_FFT, HOP)
        mel = spec @ self.mel_w
        return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))  # ref 1.0: minus 10 log10(1) = 0

    def image(self, log_mel):
        p = "audio_branch.bn0."
        w = self.w
        x = (log_mel - w[p + "running_mean"]) / torch.sqrt(w[p + "running_var"] + 1e-5) * w[p + "weight"] + w[p + "bias"]
        x = x[:, None]  # (B, 1, T, M)
        target_t = SPEC_SIZE * self.freq_ratio
        assert x.shape[2] <= target_t
        if x.shape[2] < target_t:
            x = F.interpolate(x, (target_t, x.shape[3]), mode="bicubic", align_corners=True)
        b, m = x.shape[0], x.shape[3]
        x = x[:, 0].reshape(b, self.freq_ratio, target_t // self.freq_ratio, m)  # chunks of time
        x = x.permute(0, 1, 3, 2).reshape(b, 1, self.freq_ratio * m, target_t // self.freq_ratio)
        return x  # rows: chunk * M + mel, columns: time within the chunk

    def window_attention(self, x, p, heads, ws, mask):
        w = self.w
        bw, n, c = x.shape
        qkv = linear(x, w, p + "qkv").view(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        table = w[p + "relative_position_bias_table"]
        bias = table[relative_position_index(ws).reshape(-1)].view(n, n, heads).permute(2, 0, 1)
        attn = attn + bias[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, heads, n, n) + mask[None, :, None]
            attn = attn.view(bw, heads, n, n)
        attn = attn.softmax(-1)
        out = (attn @ v).transpose(1, 2).reshape(bw, n, c)
        return linear(out, w, p + "proj")

    def block(self, x, p, res, heads, ws, shift):
        w = self.w
        b, L, c = x.shape
        h = layer_norm(x, w, p + "norm1").view(b, res, res, c)
        if shift:
            h = torch.roll(h, (-shift, -shift), (1, 2))
        g = res // ws
        win = h.view(b, g, ws, g, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        mask = shifted_window_mask(res, ws, shift) if shift else None
        if shift and (p + "attn_mask") in w:
            assert torch.equal(w[p + "attn_mask"], mask), p
        out = self.window_attention(win, p + "attn.", heads, ws, mask)
        out = out.view(b, g, g, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, res, res, c)
        if shift:
            out = torch.roll(out, (shift, shift), (1, 2))
        x = x + out.reshape(b, L, c)
        y = F.gelu(linear(layer_norm(x, w, p + "norm2"), w, p + "mlp.fc1"))
        return x + linear(y, w, p + "mlp.fc2")

    def merge(self, x, p, res):
        b, L, c = x.shape
        x = x.view(b, res, res, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        x = layer_norm(x.view(b, -1, 4 * c), self.w, p + "norm")
        return linear(x, self.w, p + "reduction", bias=False)

    def embedding(self, image):
        w = self.w
        p = "audio_branch."
        x = F.conv2d(image, w[p + "patch_embed.proj.weight"], w[p + "patch_embed.proj.bias"], stride=self.patch)
        res = x.shape[-1]
        x = layer_norm(x.flatten(2).transpose(1, 2), w, p + "patch_embed.norm")
        for i, depth in enumerate(self.depths):
            for j in range(depth):
                q = p + "layers.%d.blocks.%d." % (i, j)
                heads = w[q + "attn.relative_position_bias_table"].shape[1]
                ws = (int(round(math.sqrt(w[q + "attn.relative_position_bias_table"].shape[0]))) + 1) // 2
                shift = ws // 2 if (j % 2 == 1 and res > ws) else 0
                x = self.block(x, q, res, heads, ws, shift)
            if i + 1 < len(self.depths):
                x = self.merge(x, p + "layers.%d.downsample." % i, res)
                res //= 2
        x = layer_norm(x, w, p + "norm")
        return x.mean(1)  # latent_output: the average over every token


# ---------------------------------------------------------------------------------------------
# RoBERTa


class Roberta:
    def __init__(self, w):
        self.w = w
        self.hidden = w["text_branch.embeddings.word_embeddings.weight"].shape[1]
        self.heads = self.hidden // 64  # RoBERTa's head size is 64 (roberta-base: 768 / 64 = 12)
        self.layers = 1 + max(int(k.split(".")[3]) for k in w if k.startswith("text_branch.encoder.layer."))

    def pooled(self, ids, mask):
        w = self.w
        p = "text_branch."
        not_pad = (ids != 1).long()
        pos = torch.cumsum(not_pad, 1) * not_pad + 1
        x = (w[p + "embeddings.word_embeddings.weight"][ids] + w[p + "embeddings.position_embeddings.weight"][pos]
             + w[p + "embeddings.token_type_embeddings.weight"][0])
        x = layer_norm(x, w, p + "embeddings.LayerNorm")
        b, L, d = x.shape
        hd = d // self.heads
        add = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for i in range(self.layers):
            q = p + "encoder.layer.%d." % i

            def split(t):
                return t.view(b, L, self.heads, hd).transpose(1, 2)

            qh = split(linear(x, w, q + "attention.self.query"))
            kh = split(linear(x, w, q + "attention.self.key"))
            vh = split(linear(x, w, q + "attention.self.value"))
            att = (qh @ kh.transpose(-1, -2)) / math.sqrt(hd) + add
            ctx = (att.softmax(-1) @ vh).transpose(1, 2).reshape(b, L, d)
            x = layer_norm(linear(ctx, w, q + "attention.output.dense") + x, w, q + "attention.output.LayerNorm")
            h = F.gelu(linear(x, w, q + "intermediate.dense"))
            x = layer_norm(linear(h, w, q + "output.dense") + x, w, q + "output.LayerNorm")
        return torch.tanh(linear(x[:, 0], w, p + "pooler.dense"))


# ---------------------------------------------------------------------------------------------
# CLAP


def strip_module(state_dict):
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def projection(x, w, p):
    return linear(F.relu(linear(x, w, p + ".0")), w, p + ".2")


class Clap:
    def __init__(self, state_dict):
        self.w = {k: v.float() if v.is_floating_point() else v for k, v in strip_module(state_dict).items()}
        self.audio = Htsat(self.w)
        self.text = Roberta(self.w)

    def audio_features(self, waves):
        """list of 1-D waves -> dict(log_mel, embedding, audio_embedding)."""
        x = torch.stack([fit_clip(wv) for wv in waves])
        log_mel = self.audio.log_mel(x)
        emb = self.audio.embedding(self.audio.image(log_mel))
        proj = F.normalize(projection(emb, self.w, "audio_projection"), dim=-1)
        return {"log_mel": log_mel, "embedding": emb, "audio_embedding": proj}

    def text_embedding(self, ids, mask):
        return F.normalize(projection(self.text.pooled(ids, mask), self.w, "text_projection"), dim=-1)


# ---------------------------------------------------------------------------------------------
# tokenizer

WHITE_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
               (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)]


def class_ranges(major):
    """Inclusive code point ranges whose general category starts with `major` ('L' or 'N')."""
    out, start = [], None
    for cp in range(0x110000):
        hit = unicodedata.category(chr(cp))[0] == major
        if hit and start is None:
            start = cp
        elif not hit and start is not None:
            out.append((start, cp - 1))
            start = None
    if start is not None:
        out.append((start, 0x10FFFF))
    return out


def _class(ranges):
    return "".join("\\U%08x-\\U%08x" % r if r[0] != r[1] else "\\U%08x" % r[0] for r in ranges)


_PATTERN = None


def pretokenize_pattern():
    global _PATTERN  # a cache of a constant (the classes take a second to build)
    if _PATTERN is None:
        L, N, S = _class(class_ranges("L")), _class(class_ranges("N")), _class(WHITE_SPACE)
        _PATTERN = re.compile(
            "'s|'t|'re|'ve|'m|'ll|'d| ?[%s]+| ?[%s]+| ?[^%s%s%s]+|[%s]+(?![^%s])|[%s]+" % (L, N, S, L, N, S, S, S))
    return _PATTERN


def pretokenize(text):
    return pretokenize_pattern().findall(text)


def bytes_to_unicode():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


class ByteLevelBpe:
    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.byte_map = bytes_to_unicode()

    @staticmethod
    def from_files(vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            vocab = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            lines = [ln for ln in f.read().split("\n") if ln and not ln.startswith("#version")]
        return ByteLevelBpe(vocab, [tuple(ln.split(" ")) for ln in lines])

    def bpe(self, word):
        word = list(word)
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word[:-1], word[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def pieces(self, text):
        out = []
        for tok in pretokenize(text):
            out += self.bpe("".join(self.byte_map[b] for b in tok.encode("utf-8")))
        return out

    def encode(self, text, max_length=CONTEXT_LENGTH):
        """roberta-base's ids with padding='max_length', truncation=True: (ids, mask) lists."""
        ids = [self.vocab.get(p, 3) for p in self.pieces(text)][:max_length - 2]
        ids = [0] + ids + [2]
        mask = [1] * len(ids) + [0] * (max_length - len(ids))
        return ids + [1] * (max_length - len(ids)), mask
