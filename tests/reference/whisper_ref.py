"""A PyTorch Whisper (Radford et al. 2022) written from openai/whisper's model.py, audio.py,
decoding.py and transcribe.py, with the official checkpoint names, as the reference of the C++
port (src/models/whisper.cpp). Float32 only, one audio at a time, timestamp-free decoding.

The mel filterbank is librosa's Slaney mel (htk=False, norm="slaney") recomputed here without
librosa; openai ships the same matrices precomputed in whisper/assets/mel_filters.npz.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_SAMPLES = 30 * SAMPLE_RATE
N_FRAMES = N_SAMPLES // HOP


# --- front end -------------------------------------------------------------------------------

def _hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-30) / min_log_hz) / logstep, mels)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


def mel_filters(n_mels, sr=SAMPLE_RATE, n_fft=N_FFT):
    """(n_mels, n_fft // 2 + 1) float32: triangles on the Slaney mel scale, area-normalised."""
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    w = np.zeros((n_mels, len(fft_freqs)))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        w[i] = np.maximum(0, np.minimum(lower, upper))
    w *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return torch.from_numpy(w.astype(np.float32))


def pad_or_trim(x, length, dim=-1):
    if x.shape[dim] > length:
        x = x.narrow(dim, 0, length)
    if x.shape[dim] < length:
        pad = [0, 0] * x.dim()
        pad[2 * (x.dim() - 1 - (dim % x.dim())) + 1] = length - x.shape[dim]
        x = F.pad(x, pad)
    return x


def log_mel(audio, n_mels, padding=0):
    """(n_mels, frames) as whisper.log_mel_spectrogram for a 1-D 16 kHz float32 clip."""
    if padding > 0:
        audio = F.pad(audio, (0, padding))
    stft = torch.stft(audio, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = stft[..., :-1].abs() ** 2
    spec = torch.clamp(mel_filters(n_mels) @ power, min=1e-10).log10()
    spec = torch.maximum(spec, spec.max() - 8.0)
    return (spec + 4.0) / 4.0


# --- model -----------------------------------------------------------------------------------

def sinusoids(length, channels, max_timescale=10000):
    inc = np.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class MultiHeadAttention(nn.Module):
    def __init__(self, n_state, n_head):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x, kv=None, mask=None, cache=None, cross=False):
        """cache: a dict for this module ("k", "v"); self-attention appends, cross computes once."""
        q = self.query(x)
        if cross:
            if cache is not None and "k" in cache:
                k, v = cache["k"], cache["v"]
            else:
                k, v = self.key(kv), self.value(kv)
                if cache is not None:
                    cache["k"], cache["v"] = k, v
        else:
            k, v = self.key(x), self.value(x)
            if cache is not None:
                if "k" in cache:
                    k = torch.cat([cache["k"], k], dim=1)
                    v = torch.cat([cache["v"], v], dim=1)
                cache["k"], cache["v"] = k, v
        b, n, d = q.shape
        scale = (d // self.n_head) ** -0.25
        q = q.view(b, n, self.n_head, -1).permute(0, 2, 1, 3)
        k = k.view(k.shape[0], k.shape[1], self.n_head, -1).permute(0, 2, 1, 3)
        v = v.view(v.shape[0], v.shape[1], self.n_head, -1).permute(0, 2, 1, 3)
        qk = (q * scale) @ (k * scale).transpose(-1, -2)
        if mask is not None:
            qk = qk + mask
        w = qk.softmax(dim=-1)
        return self.out((w @ v).permute(0, 2, 1, 3).flatten(start_dim=2))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, n_state, n_head, cross_attention=False):
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = nn.LayerNorm(n_state)
        self.cross_attn = MultiHeadAttention(n_state, n_head) if cross_attention else None
        self.cross_attn_ln = nn.LayerNorm(n_state) if cross_attention else None
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))
        self.mlp_ln = nn.LayerNorm(n_state)

    def forward(self, x, xa=None, mask=None, cache=None):
        c = cache if cache is not None else None
        x = x + self.attn(self.attn_ln(x), mask=mask, cache=None if c is None else c.setdefault("self", {}))
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.cross_attn_ln(x), xa, cache=None if c is None else c.setdefault("cross", {}),
                                    cross=True)
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    def __init__(self, n_mels, n_ctx, n_state, n_head, n_layer):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(n_state, n_state, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(n_ctx, n_state))
        self.blocks = nn.ModuleList([ResidualAttentionBlock(n_state, n_head) for _ in range(n_layer)])
        self.ln_post = nn.LayerNorm(n_state)

    def forward(self, x):
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        x = x + self.positional_embedding
        for b in self.blocks:
            x = b(x)
        return self.ln_post(x)


class TextDecoder(nn.Module):
    def __init__(self, n_vocab, n_ctx, n_state, n_head, n_layer):
        super().__init__()
        self.token_embedding = nn.Embedding(n_vocab, n_state)
        self.positional_embedding = nn.Parameter(torch.empty(n_ctx, n_state))
        self.blocks = nn.ModuleList([ResidualAttentionBlock(n_state, n_head, True) for _ in range(n_layer)])
        self.ln = nn.LayerNorm(n_state)
        self.register_buffer("mask", torch.empty(n_ctx, n_ctx).fill_(-np.inf).triu_(1), persistent=False)

    def forward(self, tokens, xa, cache=None):
        offset = cache[0]["self"]["k"].shape[1] if cache and "self" in cache[0] else 0
        n = tokens.shape[-1]
        x = self.token_embedding(tokens) + self.positional_embedding[offset:offset + n]
        mask = self.mask[offset:offset + n, :offset + n]
        for i, b in enumerate(self.blocks):
            x = b(x, xa, mask=mask, cache=None if cache is None else cache[i])
        return self.ln(x) @ self.token_embedding.weight.t()


class Whisper(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims
        self.encoder = AudioEncoder(dims["n_mels"], dims["n_audio_ctx"], dims["n_audio_state"], dims["n_audio_head"],
                                    dims["n_audio_layer"])
        self.decoder = TextDecoder(dims["n_vocab"], dims["n_text_ctx"], dims["n_text_state"], dims["n_text_head"],
                                   dims["n_text_layer"])


# --- decoding (decoding.py, without_timestamps=True, temperature 0, one audio) ----------------

def _filter(logits, tokens, sample_begin, opt):
    if opt.get("suppress_blank") and tokens.shape[1] == sample_begin:
        logits[:, opt["blank_ids"]] = -np.inf
    if opt.get("suppress_tokens"):
        logits[:, opt["suppress_tokens"]] = -np.inf


def _rearrange(cache, idx):
    for layer in cache:
        if "self" in layer:
            layer["self"]["k"] = layer["self"]["k"][idx]
            layer["self"]["v"] = layer["self"]["v"][idx]


@torch.no_grad()
def decode(model, audio_features, initial_tokens, opt):
    """audio_features (1, T, D). Returns (tokens, sum_logprob, avg_logprob)."""
    eot = opt["eot"]
    beam = opt.get("beam_size", 0)
    n_group = beam if beam and beam > 1 else 1
    n_ctx = model.dims["n_text_ctx"]
    sample_len = opt.get("sample_len") or n_ctx // 2
    sample_begin = len(initial_tokens)
    tokens = torch.tensor([initial_tokens]).repeat(n_group, 1)
    xa = audio_features.repeat(n_group, 1, 1)
    sum_lp = torch.zeros(n_group)
    cache = [{} for _ in model.decoder.blocks]
    finished = {}
    max_candidates = round(n_group * (opt.get("patience") or 1.0))
    for i in range(sample_len):
        inp = tokens if i == 0 else tokens[:, -1:]
        logits = model.decoder(inp, xa, cache)[:, -1]
        _filter(logits, tokens, sample_begin, opt)
        logprobs = F.log_softmax(logits.float(), dim=-1)
        if n_group == 1:
            nxt = logits.argmax(dim=-1)
            cur = logprobs[torch.arange(1), nxt]
            sum_lp += cur * (tokens[:, -1] != eot)
            nxt[tokens[:, -1] == eot] = eot
            tokens = torch.cat([tokens, nxt[:, None]], dim=-1)
            completed = bool((tokens[:, -1] == eot).all())
        else:
            scores, sources = {}, {}
            for j in range(n_group):
                prefix = tokens[j].tolist()
                for lp, tok in zip(*logprobs[j].topk(n_group + 1)):
                    seq = tuple(prefix + [tok.item()])
                    scores[seq] = (sum_lp[j] + lp).item()
                    sources[seq] = j
            nxt, src, new_finished = [], [], {}
            for seq in sorted(scores, key=scores.get, reverse=True):
                if seq[-1] == eot:
                    new_finished[seq] = scores[seq]
                else:
                    sum_lp[len(nxt)] = scores[seq]
                    nxt.append(seq)
                    src.append(sources[seq])
                    if len(nxt) == n_group:
                        break
            tokens = torch.tensor(nxt)
            if src != list(range(len(src))):
                _rearrange(cache, src)
            for seq in sorted(new_finished, key=new_finished.get, reverse=True):
                if len(finished) >= max_candidates:
                    break
                finished[seq] = new_finished[seq]
            completed = len(finished) >= max_candidates
        if completed or tokens.shape[-1] > n_ctx:
            break
    # finalize
    if n_group == 1:
        t = F.pad(tokens, (0, 1), value=eot)[0]
        cands = [(t, sum_lp[0].item())]
    else:
        if len(finished) < n_group:
            for j in list(np.argsort(sum_lp.numpy()))[::-1]:
                finished[tuple(tokens[j].tolist() + [eot])] = sum_lp[j].item()
                if len(finished) >= n_group:
                    break
        cands = [(torch.tensor(s), lp) for s, lp in finished.items()]
    seqs = [t[sample_begin:(t == eot).nonzero()[0, 0]].tolist() for t, _ in cands]
    lps = [lp for _, lp in cands]
    lpen = opt.get("length_penalty")
    scores = [lp / (len(s) if lpen is None else ((5 + len(s)) / 6) ** lpen) for s, lp in zip(seqs, lps)]
    best = int(np.argmax(scores))
    return seqs[best], lps[best], lps[best] / (len(seqs[best]) + 1)


@torch.no_grad()
def transcribe(model, audio, sot_sequence, opt, condition_on_previous_text=False, sot_prev=None):
    """transcribe.py's loop without timestamps: 30 s windows, seek += segment size."""
    mel = log_mel(audio, model.dims["n_mels"], padding=N_SAMPLES)
    content_frames = mel.shape[-1] - N_FRAMES
    n_ctx = model.dims["n_text_ctx"]
    seek, all_tokens, reset = 0, [], 0
    while seek < content_frames:
        size = min(N_FRAMES, content_frames - seek)
        segment = pad_or_trim(mel[:, seek:seek + size], N_FRAMES)
        feats = model.encoder(segment[None])
        prompt = all_tokens[reset:]
        initial = list(sot_sequence)
        if prompt:
            initial = [sot_prev] + prompt[-(n_ctx // 2 - 1):] + initial
        tokens, _, _ = decode(model, feats, initial, opt)
        seek += size
        all_tokens.extend(tokens)
        if not condition_on_previous_text:
            reset = len(all_tokens)
    return all_tokens


# --- the Hugging Face layout (transformers' convert_openai_to_hf.py) --------------------------

_HF_TOP = [("encoder.conv1.", "model.encoder.conv1."), ("encoder.conv2.", "model.encoder.conv2."),
           ("encoder.positional_embedding", "model.encoder.embed_positions.weight"),
           ("encoder.ln_post.", "model.encoder.layer_norm."), ("encoder.blocks.", "model.encoder.layers."),
           ("decoder.token_embedding.", "model.decoder.embed_tokens."),
           ("decoder.positional_embedding", "model.decoder.embed_positions.weight"),
           ("decoder.ln.", "model.decoder.layer_norm."), ("decoder.blocks.", "model.decoder.layers.")]
_HF_BLOCK = [("cross_attn_ln.", "encoder_attn_layer_norm."), ("cross_attn.query.", "encoder_attn.q_proj."),
             ("cross_attn.key.", "encoder_attn.k_proj."), ("cross_attn.value.", "encoder_attn.v_proj."),
             ("cross_attn.out.", "encoder_attn.out_proj."), ("attn_ln.", "self_attn_layer_norm."),
             ("attn.query.", "self_attn.q_proj."), ("attn.key.", "self_attn.k_proj."),
             ("attn.value.", "self_attn.v_proj."), ("attn.out.", "self_attn.out_proj."),
             ("mlp_ln.", "final_layer_norm."), ("mlp.0.", "fc1."), ("mlp.2.", "fc2.")]


def to_hf_name(name):
    for a, b in _HF_TOP:
        if name.startswith(a):
            rest = name[len(a):]
            if a.endswith("blocks."):
                idx, sub = rest.split(".", 1)
                for c, d in _HF_BLOCK:
                    if sub.startswith(c):
                        return b + idx + "." + d + sub[len(c):]
                raise KeyError(name)
            return b + rest
    raise KeyError(name)
