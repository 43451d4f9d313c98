#!/usr/bin/python3
"""Fixtures for the evaluation metrics, from an implementation written here independently of
the C++ one: STOI step by step as Taal et al. (IEEE TASLP 2011) and their MATLAB code describe
it (loops over frames, bands and segments), resampling by torchaudio, and the Frechet distance
with scipy's matrix square root:

    /usr/bin/python3 tests/reference/make_eval_fixtures.py tests/fixtures

Writes eval_metrics.safetensors: signals, feature sets and the expected values.
"""
import math
import os
import sys

import numpy as np
import scipy.linalg
import torch
import torchaudio

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402

FS, N_FRAME, NFFT, NUMBAND, MINFREQ, N, BETA, DYN_RANGE = 10000, 256, 512, 15, 150, 30, -15.0, 40.0
EPS = np.finfo(np.float64).eps


def hanning(n):
    # MATLAB hanning(n): the zero end points of an (n + 2)-point Hann window dropped.
    return np.array([0.5 - 0.5 * math.cos(2 * math.pi * (i + 1) / (n + 1)) for i in range(n)])


def frame_starts(length):
    # MATLAB 1:K:(length - N) in 0-based form.
    return list(range(0, length - N_FRAME, N_FRAME // 2))


def remove_silent_frames(x, y):
    w = hanning(N_FRAME)
    starts = frame_starts(len(x))
    energy = [20 * math.log10(np.linalg.norm(w * x[s:s + N_FRAME]) + EPS) for s in starts]
    top = max(energy)
    kept = [s for s, e in zip(starts, energy) if e > top - DYN_RANGE]
    out_len = (len(kept) - 1) * (N_FRAME // 2) + N_FRAME
    xs, ys = np.zeros(out_len), np.zeros(out_len)
    for j, s in enumerate(kept):
        o = j * (N_FRAME // 2)
        xs[o:o + N_FRAME] += w * x[s:s + N_FRAME]
        ys[o:o + N_FRAME] += w * y[s:s + N_FRAME]
    return xs, ys


def third_octave_matrix():
    f = np.linspace(0, FS, NFFT + 1)[: NFFT // 2 + 1]
    a = np.zeros((NUMBAND, len(f)))
    for k in range(NUMBAND):
        lo = MINFREQ * 2 ** ((2 * k - 1) / 6)
        hi = MINFREQ * 2 ** ((2 * k + 1) / 6)
        lo_i = int(np.argmin((f - lo) ** 2))
        hi_i = int(np.argmin((f - hi) ** 2))
        a[k, lo_i:hi_i] = 1
    return a


def envelopes(x):
    w = hanning(N_FRAME)
    a = third_octave_matrix()
    cols = []
    for s in frame_starts(len(x)):
        spec = np.fft.fft(w * x[s:s + N_FRAME], NFFT)[: NFFT // 2 + 1]
        cols.append(np.sqrt(a @ (np.abs(spec) ** 2)))
    return np.array(cols).T  # (bands, frames)


def stoi(clean, processed):
    x, y = remove_silent_frames(np.asarray(clean, np.float64), np.asarray(processed, np.float64))
    X, Y = envelopes(x), envelopes(y)
    c = 10 ** (-BETA / 20)
    total, count = 0.0, 0
    for m in range(N, X.shape[1] + 1):
        for j in range(NUMBAND):
            xs, ys = X[j, m - N:m], Y[j, m - N:m]
            alpha = np.sqrt(np.sum(xs ** 2) / np.sum(ys ** 2))
            yp = np.minimum(alpha * ys, xs + xs * c)
            xc, yc = xs - xs.mean(), yp - yp.mean()
            total += float(np.dot(xc, yc) / (np.linalg.norm(xc) * np.linalg.norm(yc)))
            count += 1
    return total / count


def to_10k(x, rate):
    return torchaudio.functional.resample(torch.from_numpy(np.asarray(x, np.float64)), rate, FS).numpy()


def test_signal(rate, seconds, rng):
    """Harmonic tones under a syllable-like envelope, with a pause (silence removal has work)."""
    t = np.arange(int(rate * seconds)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(h * phase) / h for h in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    env[(t > 0.55) & (t < 0.75)] = 0.0
    return (0.3 * env * voiced + 0.002 * rng.standard_normal(len(t))).astype(np.float32)


def main(out_dir):
    rng = np.random.default_rng(7)
    tensors, expected = {}, {}
    for rate, name in ((10000, "10k"), (16000, "16k")):
        clean = test_signal(rate, 1.4, rng)
        noise = rng.standard_normal(len(clean)).astype(np.float32)
        noise *= np.linalg.norm(clean) / np.linalg.norm(noise)  # 0 dB SNR
        noisy = (clean + noise).astype(np.float32)
        # A muffled version: a 4-sample moving average.
        muffled = np.convolve(clean, np.ones(4) / 4, mode="same").astype(np.float32)
        tensors[f"stoi_{name}_clean"] = torch.from_numpy(clean)
        for kind, proc in (("noisy", noisy), ("muffled", muffled)):
            tensors[f"stoi_{name}_{kind}"] = torch.from_numpy(proc)
            c, p = clean.astype(np.float64), proc.astype(np.float64)
            if rate != FS:
                c, p = to_10k(c, rate), to_10k(p, rate)
            expected[f"stoi_{name}_{kind}"] = stoi(c, p)

    # Frechet distance between two small Gaussian-ish sets of different sizes and shapes.
    a = rng.standard_normal((64, 8))
    b = rng.standard_normal((80, 8)) @ rng.standard_normal((8, 8)) * 0.7 + 0.3
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected["frechet"] = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    tensors["frechet_a"] = torch.from_numpy(a)
    tensors["frechet_b"] = torch.from_numpy(b)

    for k, v in expected.items():
        tensors["expected_" + k] = torch.tensor([v], dtype=torch.float64)
        print(f"{k}: {v:.6f}")
    st.save(os.path.join(out_dir, "eval_metrics.safetensors"), tensors)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
