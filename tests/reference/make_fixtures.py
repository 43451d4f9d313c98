#!/usr/bin/python3
"""Makes the numeric fixtures the C++ tests compare against, with Debian's python3-torch 1.13
and python3-torchaudio 0.13. Run from the repository root:

    scripts/fetch_sample_audio.sh /tmp/sample_audio
    /usr/bin/python3 tests/reference/make_fixtures.py /tmp/sample_audio tests/fixtures

Writes:
  frontend_<clip>.safetensors  16 kHz mono input `wave` (from a real recording shipped by
                               Debian) and torchaudio's `dasheng` (64-mel dB, top_db 120)
                               and `vocos` (128-mel log) front ends of it
  istft_same.safetensors       a random spectrum and Vocos' same-padding iSTFT of it
  pt_*.pt + pt_expected.safetensors   torch.save files of several shapes and their tensors
  sine_stereo_44k.wav          a short synthetic stereo WAV for the command-line tests
  vae_tiny.pth                 a tiny random LoSATok (tests/reference/losatok_ref.py, the
                               configs/model/tiny.yaml sizes) saved as torch.save({"state_dict": ...})
  vae_tiny_expected.safetensors  real clips (10.4 s of speech; a padded batch of two) as int16
                               and the reference model's encode / decode outputs for them
"""
import collections
import os
import sys

import torch
import torchaudio

sys.path.insert(0, os.path.dirname(__file__))
import st  # noqa: E402

CLIPS = {
    # name: (package folder, file) -- speech and a desktop event sound
    "speech": ("alsa-utils", "Front_Center.wav"),
    "event": ("sound-theme-freedesktop", "complete.oga"),
}


def dasheng_frontend():
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=512, win_length=512, hop_length=160, f_min=0, f_max=8000,
        n_mels=64, center=True)
    db = torchaudio.transforms.AmplitudeToDB(top_db=120)
    # Per-clip dB floor: add a channel dim as the current MiDashengLM port does.
    return lambda w: db(mel(w).unsqueeze(0)).squeeze(0)


def vocos_frontend():
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=1024, hop_length=160, n_mels=128, center=True, power=1)
    return lambda w: torch.log(torch.clip(mel(w), min=1e-7))


def make_frontend(audio_dir, out_dir):
    ds, vc = dasheng_frontend(), vocos_frontend()
    for name, (pkg, fname) in CLIPS.items():
        wav, sr = torchaudio.load(os.path.join(audio_dir, pkg, fname))
        wav = wav.mean(0)
        wav = torchaudio.functional.resample(wav, sr, 16000)
        st.save(os.path.join(out_dir, f"frontend_{name}.safetensors"),
                {"wave": wav, "dasheng": ds(wav), "vocos": vc(wav)},
                {"source": f"{pkg}:{fname}", "source_rate": sr})


def vocos_istft_same(spec, n_fft, hop, win):
    """Vocos ISTFT(padding='same'), written from its description."""
    window = torch.hann_window(win)
    pad = (win - hop) // 2
    B, N, T = spec.shape
    ifft = torch.fft.irfft(spec, n_fft, dim=1, norm="backward")
    ifft = ifft * window[None, :, None]
    output_size = (T - 1) * hop + win
    y = torch.nn.functional.fold(ifft, output_size=(1, output_size), kernel_size=(1, win),
                                 stride=(1, hop))[:, 0, 0, pad:-pad]
    env = window.square().expand(1, T, -1).transpose(1, 2)
    env = torch.nn.functional.fold(env, output_size=(1, output_size), kernel_size=(1, win),
                                   stride=(1, hop)).squeeze()[pad:-pad]
    return y / env


def make_istft(out_dir):
    g = torch.Generator().manual_seed(0)
    n_fft, hop = 320, 80  # the tokenizer head uses 1280 / 320; same ratio, smaller file
    mag = torch.exp(torch.randn(2, n_fft // 2 + 1, 16, generator=g)).clamp(max=100)
    phase = torch.rand(2, n_fft // 2 + 1, 16, generator=g) * 6.283
    spec = mag * torch.exp(1j * phase)
    y = vocos_istft_same(spec, n_fft, hop, n_fft)
    st.save(os.path.join(out_dir, "istft_same.safetensors"),
            {"spec_real": spec.real.contiguous(), "spec_imag": spec.imag.contiguous(), "y": y},
            {"n_fft": n_fft, "hop": hop})


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.GELU(), torch.nn.Linear(3, 2))
        self.norm = torch.nn.BatchNorm1d(2)
        self.register_buffer("steps", torch.tensor([7], dtype=torch.int64))


def make_pt(out_dir):
    torch.manual_seed(0)
    net = TinyNet()
    sd = net.state_dict()  # an OrderedDict with _metadata
    assert isinstance(sd, collections.OrderedDict)
    expected = {}
    # 1. the common training-script layout: {"state_dict": OrderedDict, ...}
    torch.save({"state_dict": sd, "epoch": 3, "optimizer_name": "adamw",
                "lrs": [1e-3, 2e-4], "config": {"lr": 5e-4, "betas": (0.8, 0.9)}},
               os.path.join(out_dir, "pt_nested_ordered.pt"))
    # 2. a bare model.state_dict()
    torch.save(sd, os.path.join(out_dir, "pt_ordered.pt"))
    for k, v in sd.items():
        expected[k] = v
    # 3. a plain dict with many dtypes, a view with offset/stride, shared storage, a Parameter
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    plain = {
        "f32": torch.randn(3, 5),
        "f16": torch.randn(7).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "f64": torch.randn(2).double(),
        "i64": torch.arange(5),
        "i32": torch.arange(4, dtype=torch.int32),
        "u8": torch.arange(6, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "view_t": base.t(),            # non-contiguous, shares `base`'s storage
        "view_off": base[1:, 2:4],     # storage offset
        "base": base,
        "param": torch.nn.Parameter(torch.ones(2, 2)),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "nested": {"a": torch.full((2,), 4.0), "b": {"c": torch.tensor([1, 2], dtype=torch.int16)}},
    }
    torch.save(plain, os.path.join(out_dir, "pt_plain.pt"))
    for k, v in plain.items():
        if isinstance(v, dict):
            expected[f"plain.nested.a"] = v["a"]
            expected[f"plain.nested.b.c"] = v["b"]["c"]
        else:
            expected[f"plain.{k}"] = v.detach()
    # 4. the pre-1.6 legacy format, which we reject with a clear message
    torch.save({"w": torch.ones(1)}, os.path.join(out_dir, "pt_legacy.pt"),
               _use_new_zipfile_serialization=False)
    st.save(os.path.join(out_dir, "pt_expected.safetensors"), expected)


def make_cli_audio(out_dir):
    """A 0.25 s 44.1 kHz stereo 16-bit WAV (440 Hz left, 660 Hz right) for the CLI tests."""
    import math
    import struct
    import wave
    rate, n = 44100, 11025
    with wave.open(os.path.join(out_dir, "sine_stereo_44k.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = b"".join(
            struct.pack("<hh", int(12000 * math.sin(2 * math.pi * 440 * i / rate)),
                        int(12000 * math.sin(2 * math.pi * 660 * i / rate)))
            for i in range(n))
        w.writeframes(frames)


def load_16k(path):
    wav, sr = torchaudio.load(path)
    return torchaudio.functional.resample(wav.mean(0), sr, 16000)


def to_i16(wav):
    return torch.round(wav.clamp(-1, 32767 / 32768) * 32768).to(torch.int16)


def make_model(audio_dir, out_dir):
    """Tiny random LoSATok saved the reference way, real clips, and its outputs."""
    import losatok_ref as ref
    torch.manual_seed(1234)
    model = ref.AudioVAE(**ref.TINY)
    with torch.no_grad():  # move every weight off its init so each one matters
        for name, p in model.named_parameters():
            p.add_(0.05 * torch.randn_like(p) * (p.std() if p.numel() > 1 else 1.0))
        bn = model.semantic_encoder.encoder.init_bn
        bn.running_mean.copy_(torch.randn(64) * 5 - 30)
        bn.running_var.copy_(torch.rand(64) * 500 + 100)
        bn.num_batches_tracked.fill_(1000)
    model.eval()
    torch.save({"state_dict": model.state_dict()}, os.path.join(out_dir, "vae_tiny.pth"))

    # 10.4 s of real speech (the alsa-utils channel announcements back to back): crosses the
    # encoder's 10.08 s chunk boundary.
    speech = torch.cat([load_16k(os.path.join(audio_dir, "alsa-utils", f)) for f in (
        "Front_Left.wav", "Front_Center.wav", "Front_Right.wav", "Side_Left.wav", "Side_Right.wav",
        "Rear_Left.wav", "Rear_Center.wav", "Rear_Right.wav")])
    long_i16 = to_i16(speech[:166400])
    # A padded batch: speech and a chime of different lengths.
    a = to_i16(load_16k(os.path.join(audio_dir, "alsa-utils", "Front_Center.wav")))
    b = to_i16(load_16k(os.path.join(audio_dir, "sound-theme-freedesktop", "service-login.oga")))
    batch_i16 = torch.zeros(2, max(len(a), len(b)), dtype=torch.int16)
    batch_i16[0, :len(a)] = a
    batch_i16[1, :len(b)] = b
    lengths = torch.tensor([len(a), len(b)], dtype=torch.int64)

    out = {"long_wave_i16": long_i16, "batch_wave_i16": batch_i16, "batch_lengths": lengths}
    with torch.no_grad():
        f = model.encode(long_i16.float()[None] / 32768)
        for k, v in f.items():
            out["long." + k] = v
        f = model.encode(batch_i16.float() / 32768, lengths)
        for k, v in f.items():
            out["batch." + k] = v
        out["batch.decoded"] = model.decode(f["mu"])
    st.save(os.path.join(out_dir, "vae_tiny_expected.safetensors"), out,
            {"model": "configs/model/tiny.yaml", "weights": "vae_tiny.pth"})


def main():
    audio_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    make_frontend(audio_dir, out_dir)
    make_istft(out_dir)
    make_pt(out_dir)
    make_cli_audio(out_dir)
    make_model(audio_dir, out_dir)
    print("fixtures written to", out_dir, "with torch", torch.__version__, "torchaudio", torchaudio.__version__)


if __name__ == "__main__":
    main()
