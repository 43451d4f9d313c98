// Audio decoding at many rates / containers / channel counts, resampling, and bad input.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "losatok/audio/audio_io.h"
#include "losatok/core/error.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::audio;
using losatok::test::TempDir;

namespace {

constexpr double kPi = 3.14159265358979323846;

// Interleaved stereo sine, both channels equal.
std::vector<float> stereo_sine(double freq, int rate, double seconds, float amp = 0.5f) {
  const int64_t n = static_cast<int64_t>(seconds * rate);
  std::vector<float> out(static_cast<std::size_t>(n * 2));
  for (int64_t i = 0; i < n; ++i) {
    const float s = amp * static_cast<float>(std::sin(2 * kPi * freq * i / rate));
    out[static_cast<std::size_t>(2 * i)] = s;
    out[static_cast<std::size_t>(2 * i + 1)] = s;
  }
  return out;
}

// Frequency of the strongest FFT bin, with parabolic interpolation.
double peak_frequency(const std::vector<float>& x, int rate) {
  auto t = torch::from_blob(const_cast<float*>(x.data()), {static_cast<int64_t>(x.size())}, torch::kFloat32);
  auto mag = torch::fft::rfft(t * torch::hann_window(t.size(0), false)).abs();
  const int64_t k = mag.argmax().item<int64_t>();
  const double a = mag[k - 1].item<double>(), b = mag[k].item<double>(), c = mag[k + 1].item<double>();
  const double delta = 0.5 * (a - c) / (a - 2 * b + c);
  return (k + delta) * rate / static_cast<double>(x.size());
}

}  // namespace

class AudioFormats : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(AudioFormats, DecodesToMono16kKeepingTheSine) {
  const auto [ext, rate] = GetParam();
  TempDir tmp;
  const std::string path = tmp.path("sine." + ext);
  const double freq = 1000.0, seconds = 1.5;
  const auto stereo = stereo_sine(freq, rate, seconds);
  write_audio(path, stereo.data(), static_cast<int64_t>(stereo.size() / 2), 2, rate);
  const AudioInfo info = probe_audio(path);
  EXPECT_EQ(info.sample_rate, rate);
  EXPECT_EQ(info.channels, 2);

  const std::vector<float> mono = load_audio(path, 16000);
  EXPECT_NEAR(static_cast<double>(mono.size()), seconds * 16000, 2.0);
  EXPECT_NEAR(peak_frequency(mono, 16000), freq, 1.0);
  // Level is kept (lossy Vorbis within a few percent).
  double rms = 0;
  for (std::size_t i = 2000; i < mono.size() - 2000; ++i) rms += mono[i] * mono[i];
  rms = std::sqrt(rms / (mono.size() - 4000));
  EXPECT_NEAR(rms, 0.5 / std::sqrt(2.0), 0.02);
}

INSTANTIATE_TEST_SUITE_P(WavFlacOgg, AudioFormats,
                         ::testing::Combine(::testing::Values("wav", "flac", "ogg"),
                                            ::testing::Values(8000, 22050, 44100, 48000)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::to_string(std::get<1>(info.param));
                         });

// Lossy codecs with encoder delay, where this libsndfile has them.
class LossyFormats : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(LossyFormats, DecodesKeepingTheSine) {
  const auto [ext, rate] = GetParam();
  TempDir tmp;
  const std::string path = tmp.path("sine." + ext);
  const auto stereo = stereo_sine(1000.0, rate, 2.0);
  try {
    write_audio(path, stereo.data(), static_cast<int64_t>(stereo.size() / 2), 2, rate);
  } catch (const Error& e) {
    GTEST_SKIP() << "this libsndfile cannot write " << ext << ": " << e.what();
  }
  const std::vector<float> mono = load_audio(path, 16000);
  EXPECT_NEAR(mono.size() / 16000.0, 2.0, 0.1);  // codec padding
  EXPECT_NEAR(peak_frequency(mono, 16000), 1000.0, 1.0);
}

INSTANTIATE_TEST_SUITE_P(OpusMp3, LossyFormats,
                         ::testing::Values(std::make_tuple(std::string("opus"), 48000),
                                           std::make_tuple(std::string("mp3"), 44100)),
                         [](const auto& info) { return std::get<0>(info.param); });

TEST(Resample, KeepsFrequencyAndLengthAcrossRates) {
  for (int in_rate : {8000, 22050, 44100, 48000, 96000}) {
    SCOPED_TRACE(in_rate);
    const int64_t n = in_rate * 2;
    std::vector<float> x(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      x[static_cast<std::size_t>(i)] = static_cast<float>(std::sin(2 * kPi * 3000.0 * i / in_rate));
    const auto y = resample(x, in_rate, 16000);
    EXPECT_NEAR(static_cast<double>(y.size()), 32000.0, 1.0);
    EXPECT_NEAR(peak_frequency(y, 16000), 3000.0, 0.5);
  }
  EXPECT_THROW(resample({1.f}, 16000, 8000, "best"), Error);
}

TEST(Resample, RejectsContentAboveTheNewNyquist) {
  // A 12 kHz tone at 48 kHz cannot exist at 16 kHz and must not alias back into the band.
  std::vector<float> x(48000);
  for (int i = 0; i < 48000; ++i) x[i] = static_cast<float>(std::sin(2 * kPi * 12000.0 * i / 48000));
  const auto y = resample(x, 48000, 16000);
  double rms = 0;
  for (std::size_t i = 1000; i < y.size() - 1000; ++i) rms += y[i] * y[i];
  EXPECT_LT(std::sqrt(rms / (y.size() - 2000)), 1e-3);
}

TEST(AudioIO, OffsetAndDuration) {
  TempDir tmp;
  const std::string path = tmp.path("ramp.wav");
  std::vector<float> ramp(16000);
  for (int i = 0; i < 16000; ++i) ramp[i] = static_cast<float>(i) / 32768.0f;
  write_audio(path, ramp.data(), 16000, 1, 16000, "float");
  const auto part = load_audio(path, 16000, 0.25, 0.5);
  ASSERT_EQ(part.size(), 8000u);
  EXPECT_FLOAT_EQ(part.front(), ramp[4000]);
  EXPECT_FLOAT_EQ(part.back(), ramp[11999]);
}

TEST(AudioIO, WriteWavReadsBackWithin16BitPrecision) {
  TempDir tmp;
  std::vector<float> x(1600);
  for (int i = 0; i < 1600; ++i) x[i] = 0.9f * static_cast<float>(std::sin(i * 0.05));
  write_wav(tmp.path("x.wav"), x, 16000);
  const auto y = load_audio(tmp.path("x.wav"), 16000);
  ASSERT_EQ(y.size(), x.size());
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], 1.0 / 32768 + 1e-6);
}

namespace {
void expect_audio_error(const std::string& path, const std::string& needle) {
  test::expect_error([&] { load_audio(path, 16000); }, {path, needle});
}
}  // namespace

TEST(AudioIO, BadInputGivesErrorsNamingTheFile) {
  TempDir tmp;
  expect_audio_error(tmp.path("missing.wav"), "does not exist");
  test::write_bytes(tmp.path("garbage.wav"), std::string(4096, 'z'));
  expect_audio_error(tmp.path("garbage.wav"), "cannot decode");
  write_audio(tmp.path("empty.wav"), nullptr, 0, 1, 16000);
  expect_audio_error(tmp.path("empty.wav"), "empty");
  std::vector<float> nan_audio(100, 0.1f);
  nan_audio[42] = std::nanf("");
  write_audio(tmp.path("nan.wav"), nan_audio.data(), 100, 1, 16000, "float");
  expect_audio_error(tmp.path("nan.wav"), "non-finite");
  // A file cut short (its header promises more) is an error saying how much decodes, never a
  // shorter clip that trains silently.
  const auto sine = stereo_sine(440, 16000, 1.0);
  write_audio(tmp.path("full.flac"), sine.data(), 16000, 2, 16000);
  const std::string bytes = test::read_bytes(tmp.path("full.flac"));
  test::write_bytes(tmp.path("cut.flac"), bytes.substr(0, bytes.size() / 2));
  expect_audio_error(tmp.path("cut.flac"), "is truncated");
  test::expect_error([&] { load_audio(tmp.path("cut.flac"), 16000, 0.1, 0.8); },
                     {"cut.flac", "of 16000 samples"});
  // A header libsndfile reads but no encoder writes: 7-bit samples, block align 0.
  write_audio(tmp.path("ok.wav"), sine.data(), 16000, 2, 16000);
  std::string wav = test::read_bytes(tmp.path("ok.wav"));
  const std::size_t fmt = wav.find("fmt ");
  ASSERT_NE(fmt, std::string::npos);
  wav[fmt + 8 + 12] = 0;  // block align
  wav[fmt + 8 + 13] = 0;
  wav[fmt + 8 + 14] = 7;  // bits per sample
  test::write_bytes(tmp.path("odd.wav"), wav);
  expect_audio_error(tmp.path("odd.wav"), "implausible header");
  // Manifest times checked against the file (1 s long).
  test::expect_error([&] { load_audio(tmp.path("ok.wav"), 16000, 1e308, -1); }, {"ok.wav", "past its end"});
  test::expect_error([&] { load_audio(tmp.path("ok.wav"), 16000, 0.5, 1e308); },
                     {"ok.wav", "runs past its end"});
  test::expect_error([&] { load_audio(tmp.path("ok.wav"), 16000, 0.0, 2.0); },
                     {"ok.wav", "runs past its end"});
  EXPECT_EQ(load_audio(tmp.path("ok.wav"), 16000, 0.5, 0.55).size(), 8000u);  // rounding slack: to the end
  test::expect_error([] { load_audio("/dev/zero", 16000); }, {"/dev/zero", "not a regular file"});
}

TEST(AudioIO, TruncatedOggIsAnErrorOrDecodesWhatItsLastPageSays) {
  TempDir tmp;
  const auto sine = stereo_sine(440, 16000, 2.0);
  write_audio(tmp.path("full.ogg"), sine.data(), 32000, 2, 16000);
  const std::string bytes = test::read_bytes(tmp.path("full.ogg"));
  test::write_bytes(tmp.path("cut.ogg"), bytes.substr(0, bytes.size() / 2));
  // Ogg has no length in its header: libsndfile reads it from the last complete page, so a cut
  // file either fails to decode or decodes exactly the frames it now claims.
  try {
    const AudioInfo info = probe_audio(tmp.path("cut.ogg"));
    const AudioBuffer b = read_audio(tmp.path("cut.ogg"));
    EXPECT_LT(info.frames, 32000);
    EXPECT_EQ(b.frames(), info.frames);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cut.ogg"), std::string::npos) << e.what();
  }
}
