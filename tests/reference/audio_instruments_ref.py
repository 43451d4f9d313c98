#!/usr/bin/python3
"""VGGish, PANNs CNN14 and the audio-generation metrics built on them, in plain PyTorch / numpy,
written from the published architectures and the evaluation tools' documented conventions, as
the reference for the C++ ports. Used by make_instrument_fixtures.py; importing it has no side
effects.

VGGish (the torchvggish port of the AudioSet model; state-dict names as in vggish-10086976.pth)
  front end, 16 kHz mono, float64 like mel_features.py, then float32:
    frames of 400 samples (25 ms), hop 160 (10 ms), no padding, incomplete tail dropped;
    periodic Hann (0.5 - 0.5 cos(2 pi n / 400)); |rfft| with n_fft 512 (frame zero-padded at the
    end); HTK mel matrix (mel = 1127 ln(1 + f / 700)): 257 bins at linspace(0, 8000, 257) Hz,
    64 triangles with edges at linspace(mel(125), mel(7500), 66), no area normalisation, the DC
    row zeroed; log(mel + 0.01); examples of 96 frames with hop 96 (tail dropped) -> (E, 96, 64).
  network, input (E, 1, 96, 64):
    features.{0,3,6,8,11,13} Conv2d 3x3 pad 1 + ReLU, MaxPool2d 2x2 after the 1st, 2nd, 4th and
    6th conv (module indices 2, 5, 10, 15); flatten in NHWC order (B, 6, 4, C) -> (B, 24 C);
    embeddings.0 Linear(24 C, fc) ReLU, embeddings.2 Linear(fc, fc) ReLU,
    embeddings.4 Linear(fc, 128) [ReLU].  FAD tools drop that last ReLU (use_activation=False)
    and the PCA/quantisation postprocessor (use_pca=False).

PANNs Cnn14 (qiuqiangkong/audioset_tagging_cnn; names as in Cnn14_16k_mAP=0.438.pth)
  spectrogram_extractor.stft.conv_{real,imag}.weight (n_fft/2+1, 1, n_fft): the DFT rows
    cos(2 pi k n / N) w[n] and -sin(2 pi k n / N) w[n], w the periodic Hann, applied as a strided
    conv1d (stride hop) to the input reflect-padded by n_fft/2 on both sides (center=True);
    power = real^2 + imag^2, (B, 1, T, n_fft/2+1), T = len // hop + 1.
  logmel_extractor.melW (n_fft/2+1, n_mels): librosa.filters.mel (Slaney mel scale, Slaney area
    norm, htk=False) transposed; power_to_db: 10 log10(max(x, 1e-10)) - 10 log10(max(1e-10, 1.0)),
    no top_db.
  bn0 = BatchNorm2d(n_mels) applied to x.transpose(1, 3), i.e. per mel bin.
  conv_block1..6: conv1 (3x3, pad 1, no bias) bn1 ReLU conv2 bn2 ReLU, avg_pool 2x2 (floor),
    block 6 pool 1x1 (identity). Then mean over mel, max + mean over time,
    fc1 + ReLU -> embedding ("2048" in audioldm_eval), fc_audioset -> logits, sigmoid ->
    clipwise_output. Dropout / SpecAugment are training-only and absent here.
  Variants: 16k (window 512, hop 160, fmin 50, fmax 8000), 32k (1024, 320, 50, 14000); 64 mels.
  NOTE: melW and the STFT kernels are state-dict entries; load_state_dict overwrites the
  computed ones, so a port must use the checkpoint's tensors.

Metrics (haoheliu/audioldm_eval conventions; see make_instrument_fixtures.py's docstring):
  frechet_distance  mean, np.cov (ddof 1), scipy.linalg.sqrtm(s1 @ s2) (eps 1e-6 on both
                    diagonals only when that is not finite), real part, ||mu1-mu2||^2 +
                    tr s1 + tr s2 - 2 tr sqrt(s1 s2).
  kl_softmax / kl_sigmoid  sum_{i,c} q_ic (log q_ic - log(p_ic + 1e-6)) / N with q from the
                    reference logits and p from the generated ones (softmax over classes, or
                    elementwise sigmoid with no (1-p) terms), rows paired.
  inception_score   softmax(logits) in float64, rows shuffled by
                    np.random.RandomState(2020).permutation(N), 10 splits [i N//10, (i+1) N//10),
                    exp(mean_x KL(p(y|x) || mean p(y))) per split, mean and population std.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------
# VGGish front end


VGGISH_SR = 16000
VGGISH_WIN = 400
VGGISH_HOP = 160
VGGISH_NFFT = 512
VGGISH_MELS = 64
VGGISH_FMIN = 125.0
VGGISH_FMAX = 7500.0
VGGISH_LOG_OFFSET = 0.01
VGGISH_EXAMPLE = 96  # frames per example, and the hop between examples


def frame_no_pad(x, length, hop):
    """Rows x[i*hop : i*hop+length] for every complete frame (mel_features.frame semantics)."""
    n = 1 + int(math.floor((x.shape[0] - length) / hop))
    if n < 1:
        raise ValueError(f"signal of {x.shape[0]} samples is shorter than one frame ({length})")
    starts = hop * np.arange(n)
    return x[starts[:, None] + np.arange(length)[None, :]]


def periodic_hann_np(n):
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def htk_mel(f_hz):
    return 1127.0 * np.log(1.0 + np.asarray(f_hz, np.float64) / 700.0)


def vggish_mel_matrix(n_bins=VGGISH_NFFT // 2 + 1, sample_rate=VGGISH_SR, n_mels=VGGISH_MELS,
                      fmin=VGGISH_FMIN, fmax=VGGISH_FMAX):
    """(n_bins, n_mels) float64, mel_features.spectrogram_to_mel_matrix's construction."""
    bins_mel = htk_mel(np.linspace(0.0, sample_rate / 2.0, n_bins))
    edges = np.linspace(htk_mel(fmin), htk_mel(fmax), n_mels + 2)
    m = np.zeros((n_bins, n_mels))
    for j in range(n_mels):
        lo, mid, hi = edges[j], edges[j + 1], edges[j + 2]
        rising = (bins_mel - lo) / (mid - lo)
        falling = (hi - bins_mel) / (hi - mid)
        m[:, j] = np.maximum(0.0, np.minimum(rising, falling))
    m[0, :] = 0.0
    return m


def vggish_log_mel(wave):
    """(frames, 64) float64 log mel of a 16 kHz mono signal."""
    x = np.asarray(wave, np.float64)
    frames = frame_no_pad(x, VGGISH_WIN, VGGISH_HOP) * periodic_hann_np(VGGISH_WIN)
    mag = np.abs(np.fft.rfft(frames, VGGISH_NFFT))
    mel = mag @ vggish_mel_matrix(mag.shape[1])
    return np.log(mel + VGGISH_LOG_OFFSET)


def vggish_examples(wave):
    """(E, 96, 64) float32 examples, as vggish_input.waveform_to_examples at 16 kHz."""
    log_mel = vggish_log_mel(wave)
    ex = frame_no_pad(log_mel, VGGISH_EXAMPLE, VGGISH_EXAMPLE)
    return torch.from_numpy(np.ascontiguousarray(ex)).float()


# --------------------------------------------------------------------------------------------
# VGGish network


VGGISH_CHANNELS = (64, 128, 256, 256, 512, 512)
VGGISH_POOL_AFTER = (0, 1, 3, 5)  # conv ordinals followed by a 2x2 max-pool


class VGGish(nn.Module):
    """torchvggish's VGG (features + embeddings) with configurable widths."""

    def __init__(self, channels=VGGISH_CHANNELS, fc=4096, emb=128, n_frames=VGGISH_EXAMPLE,
                 n_mels=VGGISH_MELS):
        super().__init__()
        mods, cin, h, w = [], 1, n_frames, n_mels
        for i, c in enumerate(channels):
            mods += [nn.Conv2d(cin, c, kernel_size=3, padding=1), nn.ReLU()]
            if i in VGGISH_POOL_AFTER:
                mods.append(nn.MaxPool2d(kernel_size=2, stride=2))
                h, w = h // 2, w // 2
            cin = c
        self.features = nn.Sequential(*mods)
        self.embeddings = nn.Sequential(nn.Linear(h * w * cin, fc), nn.ReLU(), nn.Linear(fc, fc),
                                        nn.ReLU(), nn.Linear(fc, emb), nn.ReLU())

    def forward(self, examples):
        """examples (E, 96, 64) or (E, 1, 96, 64) -> (embedding without the final ReLU, with it)."""
        x = examples if examples.dim() == 4 else examples.unsqueeze(1)
        x = self.features(x)                 # (E, C, H, W)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # NHWC flatten, as torchvggish
        fc = self.embeddings
        x = F.relu(fc[0](x))
        x = F.relu(fc[2](x))
        pre = fc[4](x)
        return pre, F.relu(pre)


def vggish_key_names(channels=VGGISH_CHANNELS):
    """The state-dict names of vggish-10086976.pth (for widths `channels`)."""
    names, idx = [], 0
    for i in range(len(channels)):
        names += [f"features.{idx}.weight", f"features.{idx}.bias"]
        idx += 3 if i in VGGISH_POOL_AFTER else 2
    for j in (0, 2, 4):
        names += [f"embeddings.{j}.weight", f"embeddings.{j}.bias"]
    return names


# --------------------------------------------------------------------------------------------
# PANNs front end


PANNS_VARIANTS = {
    "16k": dict(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50.0,
                fmax=8000.0),
    "32k": dict(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50.0,
                fmax=14000.0),
}
PANNS_AMIN = 1e-10
PANNS_REF = 1.0


def slaney_hz_to_mel(f):
    f = np.asarray(f, np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    lin = f / f_sp
    with np.errstate(divide="ignore"):
        log = min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log, lin)


def slaney_mel_to_hz(m):
    m = np.asarray(m, np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def slaney_mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax):
    """librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) (htk=False, norm='slaney'), transposed
    to (n_fft/2+1, n_mels) as torchlibrosa's melW. librosa stores the triangles in a float32
    array and then scales that array in place by the float64 Slaney factors; we round the same
    way (the result differs from a pure float64 computation by at most 1 ulp)."""
    n_bins = n_fft // 2 + 1
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)  # librosa.fft_frequencies
    mel_hz = slaney_mel_to_hz(np.linspace(slaney_hz_to_mel(fmin), slaney_hz_to_mel(fmax),
                                          n_mels + 2))
    widths = np.diff(mel_hz)
    weights = np.zeros((n_mels, n_bins), dtype=np.float32)
    for j in range(n_mels):
        rising = (fft_hz - mel_hz[j]) / widths[j]
        falling = (mel_hz[j + 2] - fft_hz) / widths[j + 1]
        weights[j] = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (mel_hz[2:n_mels + 2] - mel_hz[:n_mels]))[:, None]
    return torch.from_numpy(np.ascontiguousarray(weights.T))


def stft_kernels(n_fft):
    """torchlibrosa STFT conv weights: (n_fft/2+1, 1, n_fft) real and imaginary DFT rows times
    the periodic Hann window, computed in float64 (k n reduced mod n_fft), then float32."""
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    ang = 2.0 * np.pi * ((k * n) % n_fft) / n_fft
    w = periodic_hann_np(n_fft)[None, :]
    real = torch.from_numpy(np.cos(ang) * w).float().unsqueeze(1).contiguous()
    imag = torch.from_numpy(-np.sin(ang) * w).float().unsqueeze(1).contiguous()
    return real, imag


# --------------------------------------------------------------------------------------------
# PANNs network


PANNS_CHANNELS = (64, 128, 256, 512, 1024, 2048)


class _STFT(nn.Module):
    def __init__(self, n_fft, hop):
        super().__init__()
        n_bins = n_fft // 2 + 1
        self.n_fft, self.hop = n_fft, hop
        self.conv_real = nn.Conv1d(1, n_bins, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, n_bins, n_fft, stride=hop, bias=False)
        real, imag = stft_kernels(n_fft)
        with torch.no_grad():
            self.conv_real.weight.copy_(real)
            self.conv_imag.weight.copy_(imag)


class _Spectrogram(nn.Module):
    def __init__(self, n_fft, hop):
        super().__init__()
        self.stft = _STFT(n_fft, hop)

    def forward(self, wave):
        """wave (B, N) -> power (B, 1, T, n_fft/2+1)."""
        s = self.stft
        x = F.pad(wave.unsqueeze(1), (s.n_fft // 2, s.n_fft // 2), mode="reflect")
        re, im = s.conv_real(x), s.conv_imag(x)   # (B, F, T)
        return (re * re + im * im).transpose(1, 2).unsqueeze(1)


class _LogMel(nn.Module):
    def __init__(self, sample_rate, n_fft, n_mels, fmin, fmax):
        super().__init__()
        self.melW = nn.Parameter(slaney_mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax),
                                 requires_grad=False)

    def forward(self, power):
        mel = torch.matmul(power, self.melW)
        db = 10.0 * torch.log10(torch.clamp(mel, min=PANNS_AMIN))
        return db - 10.0 * math.log10(max(PANNS_AMIN, PANNS_REF))


class _ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x, pool):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool) if pool != (1, 1) else x


class Cnn14(nn.Module):
    """Cnn14 in eval mode, configurable widths. forward(wave (B, N)) returns a dict with
    logmel (B, T, mel) before bn0, embedding (B, fc1), logits (B, classes), clipwise (B, classes)."""

    def __init__(self, variant="16k", channels=PANNS_CHANNELS, fc1=2048, classes=527):
        super().__init__()
        v = PANNS_VARIANTS[variant]
        self.spectrogram_extractor = _Spectrogram(v["window_size"], v["hop_size"])
        self.logmel_extractor = _LogMel(v["sample_rate"], v["window_size"], v["mel_bins"],
                                        v["fmin"], v["fmax"])
        self.bn0 = nn.BatchNorm2d(v["mel_bins"])
        cin = 1
        for i, c in enumerate(channels):
            setattr(self, f"conv_block{i + 1}", _ConvBlock(cin, c))
            cin = c
        self.n_blocks = len(channels)
        self.fc1 = nn.Linear(cin, fc1)
        self.fc_audioset = nn.Linear(fc1, classes)

    def front_end(self, wave):
        return self.logmel_extractor(self.spectrogram_extractor(wave))  # (B, 1, T, M)

    def forward(self, wave):
        logmel = self.front_end(wave)
        x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)
        for i in range(self.n_blocks):
            pool = (1, 1) if i == self.n_blocks - 1 else (2, 2)
            x = getattr(self, f"conv_block{i + 1}")(x, pool)
        x = x.mean(dim=3)                         # over mel -> (B, C, T')
        x = x.max(dim=2).values + x.mean(dim=2)   # over time -> (B, C)
        emb = F.relu(self.fc1(x))
        logits = self.fc_audioset(emb)
        return {"logmel": logmel[:, 0], "embedding": emb, "logits": logits,
                "clipwise": torch.sigmoid(logits)}


def panns_key_names(n_blocks=6):
    """The state-dict names of the released Cnn14 checkpoints (their 'model' entry)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    names = ["spectrogram_extractor.stft.conv_real.weight",
             "spectrogram_extractor.stft.conv_imag.weight", "logmel_extractor.melW"]
    names += [f"bn0.{s}" for s in bn]
    for b in range(1, n_blocks + 1):
        names += [f"conv_block{b}.conv1.weight", f"conv_block{b}.conv2.weight"]
        names += [f"conv_block{b}.bn{k}.{s}" for k in (1, 2) for s in bn]
    names += ["fc1.weight", "fc1.bias", "fc_audioset.weight", "fc_audioset.bias"]
    return names


# --------------------------------------------------------------------------------------------
# Metrics


def gaussian_stats(x):
    """Mean and unbiased (ddof 1) covariance of the rows of x, as np.mean / np.cov(rowvar=False)."""
    x = np.asarray(x, np.float64)
    mu = x.mean(axis=0)
    d = x - mu
    return mu, d.T @ d / (x.shape[0] - 1)


def trace_sqrt_product_eigh(s1, s2):
    """tr sqrt(s1 s2) for symmetric PSD s1, s2 without scipy: the eigenvalues of s1 s2 are those
    of the PSD matrix s1^1/2 s2 s1^1/2."""
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    lam = np.linalg.eigvalsh(r @ s2 @ r)
    return float(np.sum(np.sqrt(np.clip(lam, 0.0, None))))


def frechet_distance(mu1, s1, mu2, s2, eps=1e-6, use_scipy=True):
    """audioldm_eval / frechet_audio_distance's calculate_frechet_distance."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
    diff = mu1 - mu2
    if use_scipy:
        import scipy.linalg
        covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
        if not np.isfinite(covmean).all():
            off = np.eye(s1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((s1 + off).dot(s2 + off))
        if np.iscomplexobj(covmean):
            if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
                raise ValueError("imaginary component %g" % np.max(np.abs(covmean.imag)))
            covmean = covmean.real
        tr = float(np.trace(covmean))
    else:
        tr = trace_sqrt_product_eigh(s1, s2)
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * tr)


def fad(emb_a, emb_b, use_scipy=True):
    """Frechet distance between two embedding sets (rows = VGGish examples or PANNs clips)."""
    mu1, s1 = gaussian_stats(emb_a)
    mu2, s2 = gaussian_stats(emb_b)
    return frechet_distance(mu1, s1, mu2, s2, use_scipy=use_scipy)


KL_EPS = 1e-6


def _softmax(x):
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _kl_sum(target, pred_prob):
    # torch.nn.functional.kl_div(log(pred + EPS), target, reduction='sum'), xlogy semantics.
    t = np.asarray(target, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tlogt = np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0)
    return float(np.sum(tlogt - t * np.log(pred_prob + KL_EPS)))


def kl_softmax(logits_gen, logits_ref):
    """audioldm_eval kl.py: KL(softmax(ref) || softmax(gen) + EPS), summed, / number of pairs."""
    g, r = np.asarray(logits_gen, np.float64), np.asarray(logits_ref, np.float64)
    return _kl_sum(_softmax(r), _softmax(g)) / g.shape[0]


def kl_sigmoid(logits_gen, logits_ref):
    """audioldm_eval kl.py's sigmoid variant: sum over all (pair, class) of
    s_ref (log s_ref - log(s_gen + EPS)), / number of pairs (no (1-s) terms)."""
    g, r = np.asarray(logits_gen, np.float64), np.asarray(logits_ref, np.float64)
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    return _kl_sum(sig(r), sig(g)) / g.shape[0]


IS_SPLITS = 10
IS_SEED = 2020


def inception_score(logits, splits=IS_SPLITS, shuffle=True, seed=IS_SEED, perm=None):
    """audioldm_eval isc.py on `logits` (N, C). Returns (mean, std, permutation used)."""
    x = np.asarray(logits, np.float64)
    n = x.shape[0]
    if perm is None:
        perm = np.random.RandomState(seed).permutation(n) if shuffle else np.arange(n)
    x = x[perm]
    z = x - x.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        pc, lpc = p[lo:hi], log_p[lo:hi]
        q = pc.mean(axis=0, keepdims=True)
        scores.append(math.exp(float(np.mean(np.sum(pc * (lpc - np.log(q)), axis=1)))))
    return float(np.mean(scores)), float(np.std(scores)), perm
