#!/usr/bin/python3
"""Fixtures for the VGGish and PANNs CNN14 ports and the FAD / FD / KL / IS metrics, computed
with Debian's python3-torch 1.13, python3-torchaudio 0.13, numpy and scipy from
audio_instruments_ref.py (our implementations written from the published architectures):

    scripts/setup.sh --reference
    scripts/fetch_sample_audio.sh /tmp/sample_audio
    /usr/bin/python3 tests/reference/make_instrument_fixtures.py tests/fixtures [/tmp/sample_audio]

The second argument (default /tmp/sample_audio, else /usr/share/sounds) is the folder
fetch_sample_audio.sh fills. Weights are random (seeded), so the outputs are reproducible on
one machine; the C++ tests consume the stored waves and weights, not the audio files.

Writes
  OUT_DIR/vggish_tiny.pth          torch.save of a plain state dict, as vggish-10086976.pth:
      features.{0,3,6,8,11,13}.{weight,bias}, embeddings.{0,2,4}.{weight,bias};
      conv widths VGGISH_CHANNELS below, fc width VGGISH_FC, embedding 128.
  OUT_DIR/panns16k_tiny.pth        torch.save({'model': state_dict, 'iteration': 0}), as the
      released Cnn14 files: every Cnn14 key (STFT conv kernels for n_fft 512, melW (257, 64),
      bn0 and every bn's weight/bias/running_mean/running_var/num_batches_tracked with random
      non-trivial values), conv widths PANNS_CHANNELS below, fc1 PANNS_FC1, 527 classes.
  OUT_DIR/instruments_expected.safetensors (float32 unless noted; clipK = clip0, clip1)
      vggish.clipK.wave (N,) 16 kHz; vggish.clipK.examples (E, 96, 64);
      vggish.clipK.embedding (E, 128) without the final ReLU; vggish.clipK.embedding_relu
      panns16k.clipK.wave (N,) 16 kHz; panns16k.clipK.logmel (T, 64) after power_to_db, before
      bn0, T = N // 160 + 1; panns16k.clipK.embedding (PANNS_FC1,) (relu(fc1), audioldm_eval's
      "2048"); panns16k.clipK.logits (527,) pre-sigmoid; panns16k.clipK.clipwise (527,)
      panns32k.clipK.wave (N,) 32 kHz; panns32k.clipK.logmel (T, 64), T = N // 320 + 1
      (the 32k front end alone: n_fft 1024, hop 320, fmin 50, fmax 14000, with the computed
      kernels and filterbank)
      metrics.a (40, 8) float64, metrics.b (50, 8) float64; metrics.fad (1,) float64: the
        Frechet distance between their row sets (np.mean, np.cov ddof 1, scipy sqrtm)
      metrics.logits_gen, metrics.logits_ref (23, 527) float32, row i of one paired with row i
        of the other (audioldm_eval pairs by file name); metrics.kl_softmax, metrics.kl_sigmoid
        (1,) float64, computed in float64 from the float32 logits
      metrics.inception_score_mean / _std (1,) float64: IS of metrics.logits_gen with
        audioldm_eval's 10 splits after the RandomState(2020) shuffle; 23 rows make uneven
        splits (rows [i*23//10, (i+1)*23//10): 2,2,2,3,2,2,3,2,2,3); metrics.is_perm (23,) int64
        is that permutation (np.random.RandomState(2020).permutation(23));
        metrics.inception_score_mean_noshuffle / _std_noshuffle: the same without the shuffle
      metadata: clip sources, lengths before padding, the tiny widths.

Clips (as audioldm_eval's WaveDataset prepares them: first channel, minus its mean,
torchaudio.functional.resample to the model rate, zero-padded at the end to >= 32000 samples):
  16 kHz (the same waves feed VGGish and PANNs 16k; stored under both prefixes)
  clip0 alsa-utils Front_Center.wav (speech, 48 kHz, 1.43 s): 22849 samples, zero-padded to
        32000, so its second VGGish example and the end of the PANNs input are digital silence
        (log(0 + 0.01) and the 1e-10 amin clamp, -100 dB, are exercised); 198 frames -> 2
        examples (6 frames dropped)
  clip1 sound-theme-freedesktop alarm-clock-elapsed.oga (48 kHz), first 2.0 s (two beeps):
        32000 samples, 2 examples
  32 kHz (front end only; not padded, to keep the files small)
  clip0 Front_Center.wav first 0.75 s (a word, then exact zeros): 24000 samples
  clip1 complete.oga (44.1 kHz stereo, first channel) first 0.75 s: 24000 samples

The expected model outputs come from the float64 run of the same float32 weights and inputs
(rounded to float32 at the end); the script prints how far torch's float32 run is from them
(VGGish embeddings ~1e-6, PANNs logits ~3e-6 abs; log-mel ~1e-4 dB where above -60 dB, up to
~1e-2 dB in near-silent bins around -95 dB, where float32 STFT cancellation dominates).

Before writing, the script checks the reference against independent computations: the Slaney
filterbank against torchaudio's melscale_fbanks, the conv STFT against torch.stft, the VGGish
STFT magnitude against torch.stft, the state-dict key lists, the Frechet distance with scipy
against an eigh-based trace, KL against torch's kl_div and IS against a torch double version,
and the IS permutation against a from-scratch MT19937 + legacy shuffle (what a C++ port can
reproduce with std::mt19937(2020)). It prints float32-vs-float64 model differences, which
bound the tolerances a float32 port can expect.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

sys.path.insert(0, os.path.dirname(__file__))
import audio_instruments_ref as ref  # noqa: E402
import st  # noqa: E402

VGGISH_CHANNELS = (4, 8, 8, 8, 16, 16)
VGGISH_FC = 32
PANNS_CHANNELS = (4, 8, 8, 16, 16, 32)
PANNS_FC1 = 32
CLASSES = 527
MIN_SAMPLES = 32000  # audioldm_eval's pad_short_audio

# name: (package folder, file, seconds to keep from the start or None)
CLIPS_16K = {
    "clip0": ("alsa-utils", "Front_Center.wav", None),
    "clip1": ("sound-theme-freedesktop", "alarm-clock-elapsed.oga", 2.0),
}
# The 32k clips feed the front end alone and are not padded (fixture size).
CLIPS_32K = {
    "clip0": ("alsa-utils", "Front_Center.wav", 0.75),
    "clip1": ("sound-theme-freedesktop", "complete.oga", 0.75),
}
SYSTEM_DIRS = {"alsa-utils": "/usr/share/sounds/alsa",
               "sound-theme-freedesktop": "/usr/share/sounds/freedesktop/stereo"}


def audio_path(audio_dir, pkg, fname):
    p = os.path.join(audio_dir, pkg, fname)
    if os.path.exists(p):
        return p
    p = os.path.join(SYSTEM_DIRS[pkg], fname)
    if os.path.exists(p):
        return p
    sys.exit(f"missing {fname}: run scripts/fetch_sample_audio.sh {audio_dir}")


def load_clip(path, rate, seconds, pad=True):
    """audioldm_eval WaveDataset.read_from_file, on the first `seconds` of the file (pad=False:
    without its zero-padding to MIN_SAMPLES)."""
    wav, sr = torchaudio.load(path)
    if seconds is not None:
        wav = wav[:, : int(round(seconds * sr))]
    x = wav[0:1]
    x = x - x.mean()
    if sr != rate:
        x = torchaudio.functional.resample(x, orig_freq=sr, new_freq=rate)
    n = x.shape[-1]
    if pad and n < MIN_SAMPLES:
        x = F.pad(x, (0, MIN_SAMPLES - n))
    return x[0].contiguous().float(), n, sr


# --------------------------------------------------------------------------------------------
# random weights


def randomize_vggish(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                fan_in = p[0].numel()
                last = name.startswith("embeddings.4")
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 if last else 2.0) ** 0.5
                        / fan_in ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def randomize_bn(bn, gen, mean_loc=0.0, mean_scale=0.2, var_lo=0.5, var_hi=2.0):
    c = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(0.6 + 0.8 * torch.rand(c, generator=gen))
        bn.bias.copy_(0.1 * torch.randn(c, generator=gen))
        bn.running_mean.copy_(mean_loc + mean_scale * torch.randn(c, generator=gen))
        bn.running_var.copy_(var_lo + (var_hi - var_lo) * torch.rand(c, generator=gen))
        bn.num_batches_tracked.fill_(int(torch.randint(1000, 1000000, (1,), generator=gen)))


def randomize_panns(model, gen):
    # bn0 sees dB values: give it the scale of real log-mel statistics.
    randomize_bn(model.bn0, gen, mean_loc=-30.0, mean_scale=8.0, var_lo=100.0, var_hi=400.0)
    with torch.no_grad():
        for b in range(1, model.n_blocks + 1):
            blk = getattr(model, f"conv_block{b}")
            for conv in (blk.conv1, blk.conv2):
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen)
                                  * (2.0 / fan_in) ** 0.5)
            randomize_bn(blk.bn1, gen)
            randomize_bn(blk.bn2, gen)
        for lin, gain, bias in ((model.fc1, 2.0, 0.05), (model.fc_audioset, 4.0, -2.0)):
            fan_in = lin.weight.shape[1]
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * (gain / fan_in) ** 0.5)
            lin.bias.copy_(bias + 0.5 * torch.randn(lin.bias.shape, generator=gen))


# --------------------------------------------------------------------------------------------
# self-checks


def check(name, err, tol):
    status = "ok" if err <= tol else "FAILED"
    print(f"  check {name}: {err:.3g} (tol {tol:g}) {status}")
    if err > tol:
        sys.exit(f"self-check {name} failed")


def check_frontends():
    for v in ref.PANNS_VARIANTS.values():
        mine = ref.slaney_mel_filterbank(v["sample_rate"], v["window_size"], v["mel_bins"],
                                         v["fmin"], v["fmax"]).double()
        ta = torchaudio.functional.melscale_fbanks(
            v["window_size"] // 2 + 1, v["fmin"], v["fmax"], v["mel_bins"], v["sample_rate"],
            norm="slaney", mel_scale="slaney").double()
        check(f"slaney melW {v['sample_rate']} vs torchaudio (max abs / max)",
              float((mine - ta).abs().max() / ta.abs().max()), 1e-5)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 8000, generator=gen)
    for v in ref.PANNS_VARIANTS.values():
        n_fft, hop = v["window_size"], v["hop_size"]
        spec = ref._Spectrogram(n_fft, hop)
        with torch.no_grad():
            mine = spec(x)[:, 0]
        st_ = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft, periodic=True),
                         center=True, pad_mode="reflect", return_complex=True)
        theirs = st_.abs().pow(2).transpose(1, 2)
        check(f"conv STFT power n_fft {n_fft} vs torch.stft (rel)",
              float((mine - theirs).abs().max() / theirs.abs().max()), 1e-5)
    # VGGish magnitude: the 400-sample window centred in torch.stft's 512 frame is a circular
    # shift of mel_features' end-padded frame, so magnitudes agree after padding x by 56.
    xx = np.random.default_rng(3).standard_normal(5000)
    frames = ref.frame_no_pad(xx, 400, 160) * ref.periodic_hann_np(400)
    mag = np.abs(np.fft.rfft(frames, 512))
    xt = F.pad(torch.from_numpy(xx), (56, 56))
    t = torch.stft(xt, 512, 160, win_length=400,
                   window=torch.hann_window(400, periodic=True, dtype=torch.float64),
                   center=False, return_complex=True).abs().T.numpy()
    check("VGGish |rfft| frames vs torch.stft", float(np.abs(mag - t[: mag.shape[0]]).max()
                                                      / np.abs(t).max()), 1e-12)
    if t.shape[0] != mag.shape[0]:
        sys.exit("VGGish frame count differs from torch.stft's")
    # HTK matrix: one entry by hand (bin 40 = 1250 Hz).
    m = ref.vggish_mel_matrix()
    mel = lambda f: 1127.0 * np.log(1 + f / 700.0)  # noqa: E731
    edges = [mel(125.0) + i * (mel(7500.0) - mel(125.0)) / 65 for i in range(66)]
    b = mel(40 * 8000.0 / 256)
    hand = np.zeros(64)
    for j in range(64):
        hand[j] = max(0.0, min((b - edges[j]) / (edges[j + 1] - edges[j]),
                               (edges[j + 2] - b) / (edges[j + 2] - edges[j + 1])))
    check("VGGish mel row 40 by hand", float(np.abs(m[40] - hand).max()), 1e-12)
    check("VGGish mel DC row zero", float(np.abs(m[0]).max()), 0.0)


def mt19937_legacy_permutation(seed, n):
    """np.random.RandomState(seed).permutation(n) from scratch: MT19937 init_genrand(seed), then
    for i = n-1 .. 1: j = rejection-sampled (next32 & mask) <= i with mask = 2^bits(i) - 1,
    swap a[i], a[j]."""
    mt = [0] * 624
    mt[0] = seed & 0xFFFFFFFF
    for i in range(1, 624):
        mt[i] = (1812433253 * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i) & 0xFFFFFFFF
    state = {"mt": mt, "idx": 624}

    def next32():
        if state["idx"] >= 624:
            for k in range(624):
                y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7FFFFFFF)
                mt[k] = mt[(k + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
            state["idx"] = 0
        y = mt[state["idx"]]
        state["idx"] += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        return y & 0xFFFFFFFF

    a = list(range(n))
    for i in range(n - 1, 0, -1):
        mask = i
        for s in (1, 2, 4, 8, 16):
            mask |= mask >> s
        while True:
            j = next32() & mask
            if j <= i:
                break
        a[i], a[j] = a[j], a[i]
    return np.array(a)


# --------------------------------------------------------------------------------------------


def run_vggish(audio_dir, tensors, meta):
    gen = torch.Generator().manual_seed(20240601)
    model = ref.VGGish(channels=VGGISH_CHANNELS, fc=VGGISH_FC).eval()
    randomize_vggish(model, gen)
    sd = model.state_dict()
    if list(sd.keys()) != ref.vggish_key_names(VGGISH_CHANNELS):
        sys.exit(f"VGGish keys differ: {list(sd.keys())}")
    model64 = ref.VGGish(channels=VGGISH_CHANNELS, fc=VGGISH_FC).double().eval()
    model64.load_state_dict(sd, strict=True)
    for clip, (pkg, fname, secs) in CLIPS_16K.items():
        wave, n, sr = load_clip(audio_path(audio_dir, pkg, fname), 16000, secs)
        ex = ref.vggish_examples(wave.double().numpy())
        with torch.no_grad():
            pre32, _ = model(ex)
            pre, post = model64(ex.double())
        err = float((pre32.double() - pre).abs().max())
        print(f"  vggish {clip}: wave {tuple(wave.shape)} examples {tuple(ex.shape)} "
              f"emb |max| {float(pre.abs().max()):.3g}, relu>0 {float((post > 0).double().mean()):.2f}; "
              f"torch float32 run off by max abs {err:.2g}")
        p = f"vggish.{clip}."
        tensors[p + "wave"] = wave
        tensors[p + "examples"] = ex.contiguous()
        tensors[p + "embedding"] = pre.float().contiguous()
        tensors[p + "embedding_relu"] = post.float().contiguous()
        meta[p + "source"] = f"{pkg}/{fname} ({sr} Hz)" + (f", first {secs} s" if secs else "")
        meta[p + "samples_before_pad"] = n
    return sd


def run_panns(audio_dir, tensors, meta):
    gen = torch.Generator().manual_seed(20240602)
    model = ref.Cnn14("16k", channels=PANNS_CHANNELS, fc1=PANNS_FC1, classes=CLASSES).eval()
    randomize_panns(model, gen)
    sd = model.state_dict()
    if list(sd.keys()) != ref.panns_key_names(len(PANNS_CHANNELS)):
        sys.exit(f"PANNs keys differ: {list(sd.keys())}")
    model64 = ref.Cnn14("16k", channels=PANNS_CHANNELS, fc1=PANNS_FC1, classes=CLASSES)
    model64 = model64.double().eval()
    model64.load_state_dict(sd, strict=True)
    for clip, (pkg, fname, secs) in CLIPS_16K.items():
        wave, n, sr = load_clip(audio_path(audio_dir, pkg, fname), 16000, secs)
        with torch.no_grad():
            out32 = model(wave[None])
            out = model64(wave[None].double())
        errs = {k: float((out32[k].double() - out[k]).abs().max())
                for k in ("logmel", "embedding", "logits", "clipwise")}
        loud = out["logmel"] > -60
        errs["logmel>-60dB"] = float((out32["logmel"].double() - out["logmel"])[loud].abs().max())
        print(f"  panns16k {clip}: wave {tuple(wave.shape)} logmel {tuple(out['logmel'][0].shape)} "
              f"[{float(out['logmel'].min()):.1f}, {float(out['logmel'].max()):.1f}] dB, "
              f"emb>0 {float((out['embedding'] > 0).float().mean()):.2f}, logits "
              f"[{float(out['logits'].min()):.2f}, {float(out['logits'].max()):.2f}], "
              f"torch float32 run off by max abs {', '.join(f'{k} {v:.2g}' for k, v in errs.items())}")
        p = f"panns16k.{clip}."
        tensors[p + "wave"] = wave
        for k in ("logmel", "embedding", "logits", "clipwise"):
            tensors[p + k] = out[k][0].float().contiguous()
        meta[p + "source"] = f"{pkg}/{fname} ({sr} Hz)" + (f", first {secs} s" if secs else "")
        meta[p + "samples_before_pad"] = n
    fe32 = ref.Cnn14("32k", channels=(1,), fc1=1, classes=1).eval()
    for clip, (pkg, fname, secs) in CLIPS_32K.items():
        wave, n, sr = load_clip(audio_path(audio_dir, pkg, fname), 32000, secs, pad=False)
        with torch.no_grad():
            lm32 = fe32.front_end(wave[None])[0, 0]
            lm = fe32.double().front_end(wave[None].double())[0, 0]
            fe32.float()
        d = (lm32.double() - lm).abs()
        print(f"  panns32k {clip}: wave {tuple(wave.shape)} logmel {tuple(lm.shape)} "
              f"[{float(lm.min()):.1f}, {float(lm.max()):.1f}] dB; torch float32 run off by max "
              f"abs {float(d.max()):.2g} dB ({float(d[lm > -60].max()):.2g} where > -60 dB)")
        p = f"panns32k.{clip}."
        tensors[p + "wave"] = wave
        tensors[p + "logmel"] = lm.float().contiguous()
        meta[p + "source"] = f"{pkg}/{fname} ({sr} Hz)" + (f", first {secs} s" if secs else "")
        meta[p + "samples_before_pad"] = n
    return sd


def run_metrics(tensors, meta):
    rng = np.random.default_rng(11)
    a = rng.standard_normal((40, 8)) * 1.3 + 0.2
    b = rng.standard_normal((50, 8)) @ (rng.standard_normal((8, 8)) * 0.6) - 0.4
    fd = ref.fad(a, b)
    fd_eigh = ref.fad(a, b, use_scipy=False)
    check("FD scipy sqrtm vs eigh (rel)", abs(fd - fd_eigh) / abs(fd), 1e-10)
    print(f"  metrics.fad = {fd:.12g}")

    n, c = 23, CLASSES
    ref_logits = (rng.standard_normal((n, c)) * 2.0 - 4.0)
    hot = rng.integers(0, c, size=(n, 3))
    for i in range(n):
        ref_logits[i, hot[i]] += rng.uniform(3.0, 7.0, size=3)
    gen_logits = ref_logits + rng.standard_normal((n, c)) * 1.5
    gen_logits[rng.permutation(n)[:4]] = rng.standard_normal((4, c)) * 2.0 - 4.0  # some misses
    g32 = torch.from_numpy(gen_logits).float()
    r32 = torch.from_numpy(ref_logits).float()
    kls = ref.kl_softmax(g32.double().numpy(), r32.double().numpy())
    klg = ref.kl_sigmoid(g32.double().numpy(), r32.double().numpy())
    eps = ref.KL_EPS
    for dt in (torch.float64, torch.float32):
        g, r = g32.to(dt), r32.to(dt)
        t_soft = float(F.kl_div((g.softmax(1) + eps).log(), r.softmax(1), reduction="sum") / n)
        t_sig = float(F.kl_div((g.sigmoid() + eps).log(), r.sigmoid(), reduction="sum") / n)
        tol = 1e-12 if dt == torch.float64 else 1e-4
        check(f"KL softmax vs torch kl_div {dt} (rel)", abs(t_soft - kls) / kls, tol)
        check(f"KL sigmoid vs torch kl_div {dt} (rel)", abs(t_sig - klg) / klg, tol)
    print(f"  metrics.kl_softmax = {kls:.12g}, kl_sigmoid = {klg:.12g}")

    is_mean, is_std, perm = ref.inception_score(g32.double().numpy())
    if not np.array_equal(perm, mt19937_legacy_permutation(ref.IS_SEED, n)):
        sys.exit("RandomState permutation not reproduced by the MT19937 sketch")
    print("  check IS permutation = MT19937(2020) + legacy shuffle: ok")
    # torch double version of isc.py's loop
    f = g32.double()[torch.from_numpy(perm)]
    p, lp = f.softmax(1), f.log_softmax(1)
    sc = []
    for i in range(ref.IS_SPLITS):
        lo, hi = i * n // ref.IS_SPLITS, (i + 1) * n // ref.IS_SPLITS
        q = p[lo:hi].mean(0, keepdim=True)
        sc.append((p[lo:hi] * (lp[lo:hi] - q.log())).sum(1).mean().exp().item())
    check("IS mean vs torch double", abs(float(np.mean(sc)) - is_mean) / is_mean, 1e-12)
    check("IS std vs torch double", abs(float(np.std(sc)) - is_std) / max(is_std, 1e-300), 1e-9)
    ns_mean, ns_std, _ = ref.inception_score(g32.double().numpy(), shuffle=False)
    print(f"  metrics.inception_score mean {is_mean:.12g} std {is_std:.12g} "
          f"(no shuffle {ns_mean:.12g} / {ns_std:.12g}); perm {perm.tolist()}")

    scalar = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    tensors.update({
        "metrics.a": torch.from_numpy(a), "metrics.b": torch.from_numpy(b),
        "metrics.fad": scalar(fd),
        "metrics.logits_gen": g32.contiguous(), "metrics.logits_ref": r32.contiguous(),
        "metrics.kl_softmax": scalar(kls), "metrics.kl_sigmoid": scalar(klg),
        "metrics.inception_score_mean": scalar(is_mean),
        "metrics.inception_score_std": scalar(is_std),
        "metrics.inception_score_mean_noshuffle": scalar(ns_mean),
        "metrics.inception_score_std_noshuffle": scalar(ns_std),
        "metrics.is_perm": torch.from_numpy(perm.astype(np.int64)),
    })
    meta["metrics.kl_eps"] = ref.KL_EPS
    meta["metrics.is_splits"] = ref.IS_SPLITS
    meta["metrics.is_seed"] = ref.IS_SEED


def main(out_dir, audio_dir):
    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    print("self-checks:")
    check_frontends()
    tensors, meta = {}, {
        "vggish.channels": ",".join(map(str, VGGISH_CHANNELS)), "vggish.fc": VGGISH_FC,
        "vggish.embedding_dim": 128,
        "panns.channels": ",".join(map(str, PANNS_CHANNELS)), "panns.fc1": PANNS_FC1,
        "panns.classes": CLASSES, "pad_min_samples": MIN_SAMPLES,
    }
    print("models:")
    vsd = run_vggish(audio_dir, tensors, meta)
    psd = run_panns(audio_dir, tensors, meta)
    print("metrics:")
    run_metrics(tensors, meta)

    torch.save(vsd, os.path.join(out_dir, "vggish_tiny.pth"))
    torch.save({"model": psd, "iteration": 0}, os.path.join(out_dir, "panns16k_tiny.pth"))
    st.save(os.path.join(out_dir, "instruments_expected.safetensors"), tensors, meta)
    total = 0
    for f in ("vggish_tiny.pth", "panns16k_tiny.pth", "instruments_expected.safetensors"):
        size = os.path.getsize(os.path.join(out_dir, f))
        total += size
        print(f"wrote {os.path.join(out_dir, f)} ({size / 1024:.0f} KiB)")
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "/tmp/sample_audio")
