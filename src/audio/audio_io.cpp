// libsndfile decoding and encoding, libsoxr resampling.
#include "losatok/audio/audio_io.h"

#include <sndfile.h>
#include <soxr.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>

#include "losatok/core/error.h"

namespace losatok::audio {

namespace {

struct SndCloser {
  void operator()(SNDFILE* f) const { sf_close(f); }
};
using SndPtr = std::unique_ptr<SNDFILE, SndCloser>;

SndPtr open_read(const std::string& path, SF_INFO& info) {
  if (!std::filesystem::exists(path)) throw Error("audio file '" + path + "' does not exist");
  info = SF_INFO{};
  SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
  if (!f) throw Error("cannot decode audio file '" + path + "': " + sf_strerror(nullptr));
  return SndPtr(f);
}

std::string major_format_name(int format) {
  SF_FORMAT_INFO fi{};
  fi.format = format & SF_FORMAT_TYPEMASK;
  if (sf_command(nullptr, SFC_GET_FORMAT_INFO, &fi, sizeof(fi)) == 0 && fi.name) return fi.name;
  return "unknown";
}

}  // namespace

AudioInfo probe_audio(const std::string& path) {
  SF_INFO info;
  SndPtr f = open_read(path, info);
  AudioInfo out;
  out.sample_rate = info.samplerate;
  out.channels = info.channels;
  out.frames = info.frames;
  out.format = major_format_name(info.format);
  return out;
}

AudioBuffer read_audio(const std::string& path, double offset_seconds, double duration_seconds) {
  SF_INFO info;
  SndPtr f = open_read(path, info);
  if (info.channels <= 0 || info.samplerate <= 0)
    throw Error("audio file '" + path + "' has no channels or no sample rate");
  AudioBuffer out;
  out.sample_rate = info.samplerate;
  out.channels = info.channels;

  int64_t start = std::max<int64_t>(0, std::llround(offset_seconds * info.samplerate));
  int64_t want = duration_seconds >= 0 ? std::llround(duration_seconds * info.samplerate) : -1;
  // Some decoders (MP3, some OGG) report frames approximately or not at all: read in chunks.
  if (start > 0 && sf_seek(f.get(), start, SEEK_SET) < 0) {
    if (info.seekable)
      throw Error("audio file '" + path + "': cannot seek to " + std::to_string(offset_seconds) + " s");
    std::vector<float> skip(static_cast<std::size_t>(4096) * info.channels);
    while (start > 0) {
      const sf_count_t got = sf_readf_float(f.get(), skip.data(), std::min<int64_t>(start, 4096));
      if (got <= 0) break;
      start -= got;
    }
  }
  // No SFC_SET_SCALE_FLOAT_INT_READ: it only matters for integer reads, and on Ogg Vorbis it
  // makes libsndfile decode from the start again (measured: a 4 s crop 100 s into a track took
  // 370 ms instead of 10 ms).
  const sf_count_t chunk = 65536;
  std::vector<float> buf(static_cast<std::size_t>(chunk) * info.channels);
  int64_t total = 0;
  while (want < 0 || total < want) {
    const sf_count_t n = want < 0 ? chunk : std::min<int64_t>(chunk, want - total);
    const sf_count_t got = sf_readf_float(f.get(), buf.data(), n);
    if (got <= 0) break;
    out.samples.insert(out.samples.end(), buf.begin(), buf.begin() + got * info.channels);
    total += got;
  }
  if (sf_error(f.get()) != SF_ERR_NO_ERROR)
    throw Error("error decoding audio file '" + path + "': " + sf_strerror(f.get()));
  return out;
}

std::vector<float> downmix(const AudioBuffer& audio) {
  const int64_t frames = audio.frames();
  if (audio.channels == 1) return audio.samples;
  std::vector<float> mono(static_cast<std::size_t>(frames));
  const float scale = 1.0f / static_cast<float>(audio.channels);
  for (int64_t i = 0; i < frames; ++i) {
    float s = 0.f;
    for (int c = 0; c < audio.channels; ++c)
      s += audio.samples[static_cast<std::size_t>(i * audio.channels + c)];
    mono[static_cast<std::size_t>(i)] = s * scale;
  }
  return mono;
}

int resample_quality_index(const std::string& quality) {
  static const char* kNames[] = {"quick", "low", "mq", "hq", "vhq"};
  for (int i = 0; i < 5; ++i)
    if (quality == kNames[i]) return i;
  return -1;
}

std::vector<float> resample(const std::vector<float>& mono, int in_rate, int out_rate,
                            const std::string& quality) {
  if (in_rate <= 0 || out_rate <= 0) throw Error("resample: sample rates must be positive");
  if (in_rate == out_rate || mono.empty()) return mono;
  const int index = resample_quality_index(quality);
  if (index < 0) throw Error("resample: unknown quality '" + quality + "' (quick, low, mq, hq, vhq)");
  static const unsigned long kRecipes[] = {SOXR_QQ, SOXR_LQ, SOXR_MQ, SOXR_HQ, SOXR_VHQ};
  const unsigned long recipe = kRecipes[index];
  const double ratio = static_cast<double>(out_rate) / in_rate;
  const std::size_t out_len =
      static_cast<std::size_t>(std::llround(static_cast<double>(mono.size()) * ratio));
  std::vector<float> out(out_len);
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t q = soxr_quality_spec(recipe, 0);
  const soxr_runtime_spec_t rt = soxr_runtime_spec(1);  // callers parallelise across files
  std::size_t done = 0;
  const soxr_error_t err = soxr_oneshot(in_rate, out_rate, 1, mono.data(), mono.size(), nullptr, out.data(),
                                        out.size(), &done, &io, &q, &rt);
  if (err)
    throw Error(std::string("resample ") + std::to_string(in_rate) + " -> " + std::to_string(out_rate) +
                " Hz failed: " + err);
  out.resize(done);
  return out;
}

std::vector<float> load_audio(const std::string& path, int sample_rate, double offset_seconds,
                              double duration_seconds, const std::string& quality) {
  AudioBuffer buf = read_audio(path, offset_seconds, duration_seconds);
  if (buf.samples.empty()) throw Error("audio file '" + path + "' is empty");
  for (std::size_t i = 0; i < buf.samples.size(); ++i)
    if (!std::isfinite(buf.samples[i]))
      throw Error("audio file '" + path + "' has a non-finite sample at frame " +
                  std::to_string(i / static_cast<std::size_t>(buf.channels)));
  return resample(downmix(buf), buf.sample_rate, sample_rate, quality);
}

void write_audio(const std::string& path, const float* samples, int64_t frames, int channels, int sample_rate,
                 const std::string& subtype) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  int major = 0;
  if (ext == ".wav")
    major = SF_FORMAT_WAV;
  else if (ext == ".flac")
    major = SF_FORMAT_FLAC;
  else if (ext == ".ogg" || ext == ".oga" || ext == ".opus")
    major = SF_FORMAT_OGG;
  else if (ext == ".mp3")
    major = SF_FORMAT_MPEG;
  else
    throw Error("cannot write audio '" + path + "': use .wav, .flac, .ogg, .opus or .mp3");
  int sub = SF_FORMAT_PCM_16;
  if (ext == ".opus")
    sub = SF_FORMAT_OPUS;
  else if (major == SF_FORMAT_OGG)
    sub = SF_FORMAT_VORBIS;
  else if (major == SF_FORMAT_MPEG)
    sub = SF_FORMAT_MPEG_LAYER_III;
  else if (subtype == "pcm24")
    sub = SF_FORMAT_PCM_24;
  else if (subtype == "float" && major == SF_FORMAT_WAV)
    sub = SF_FORMAT_FLOAT;
  else if (subtype != "pcm16" && subtype != "float")
    throw Error("write_audio: unknown subtype '" + subtype + "'");
  SF_INFO info{};
  info.samplerate = sample_rate;
  info.channels = channels;
  info.format = major | sub;
  if (!sf_format_check(&info))
    throw Error("cannot write audio '" + path + "': unsupported format/rate/channels");
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  SNDFILE* raw = sf_open(path.c_str(), SFM_WRITE, &info);
  if (!raw) throw Error("cannot write audio '" + path + "': " + sf_strerror(nullptr));
  SndPtr f(raw);
  // Clip instead of letting integer formats wrap around.
  sf_command(f.get(), SFC_SET_CLIPPING, nullptr, SF_TRUE);
  if (sf_writef_float(f.get(), samples, frames) != frames)
    throw Error("writing audio '" + path + "' failed: " + sf_strerror(f.get()));
}

}  // namespace losatok::audio
