// Parameters of a log-mel front end (torch-free so configs need not include torch).
#pragma once

#include <string>

namespace losatok {

struct MelConfig {
  int sample_rate = 16000;
  int n_fft = 512;
  int win_length = 512;
  int hop_length = 160;
  int n_mels = 64;
  double f_min = 0.0;
  double f_max = 8000.0;  // <= 0 means sample_rate / 2
  double power = 2.0;     // 1 = magnitude, 2 = power
  // db: 10*log10(max(x, floor)) | log: log(max(x, floor)) | log10: log10(max(x, floor))
  std::string scale = "db";
  std::string mel_scale = "htk";  // htk | slaney (librosa's default, as DAC's mel loss)
  std::string mel_norm = "none";  // none | slaney (each triangle scaled to unit area, librosa's default)
  double floor = 1e-10;
  double top_db = 120.0;  // db only: clamp at (per-clip max - top_db); <= 0 disables
  bool center = true;     // reflect-pad n_fft/2 on both sides, as torch.stft(center=True)

  // Dasheng / MiDashengLM encoder input: 64 HTK mels 0-8 kHz, power, dB with 120 dB range.
  static MelConfig dasheng() { return MelConfig{}; }
  // Vocos acoustic branch: 1024-point FFT, 128 mels, magnitude, natural log floored at 1e-7.
  static MelConfig vocos() {
    MelConfig c;
    c.n_fft = 1024;
    c.win_length = 1024;
    c.n_mels = 128;
    c.f_max = 0.0;
    c.power = 1.0;
    c.scale = "log";
    c.floor = 1e-7;
    c.top_db = 0.0;
    return c;
  }
  // One scale of DAC's multi-scale mel loss: periodic Hann window of `window` samples, hop
  // window / 4, centred reflect padding, magnitude, Slaney mel 0..sample_rate/2,
  // log10(max(mel, 1e-5)).
  static MelConfig dac(int sample_rate, int window, int n_mels) {
    MelConfig c;
    c.sample_rate = sample_rate;
    c.n_fft = c.win_length = window;
    c.hop_length = window / 4;
    c.n_mels = n_mels;
    c.f_max = 0.0;
    c.power = 1.0;
    c.scale = "log10";
    c.mel_scale = "slaney";
    c.mel_norm = "slaney";
    c.floor = 1e-5;
    c.top_db = 0.0;
    return c;
  }

  double effective_f_max() const { return f_max > 0 ? f_max : sample_rate / 2.0; }
  int n_freqs() const { return n_fft / 2 + 1; }
  // Frames produced for `samples` input samples.
  long long frames(long long samples) const {
    return center ? 1 + samples / hop_length : 1 + (samples - n_fft) / hop_length;
  }

  template <class V>
  void visit(V& v) {
    v("sample_rate", sample_rate);
    v("n_fft", n_fft);
    v("win_length", win_length);
    v("hop_length", hop_length);
    v("n_mels", n_mels);
    v("f_min", f_min);
    v("f_max", f_max);
    v("power", power);
    v("scale", scale);
    v("mel_scale", mel_scale);
    v("mel_norm", mel_norm);
    v("floor", floor);
    v("top_db", top_db);
    v("center", center);
  }
  void validate() const;
};

}  // namespace losatok
