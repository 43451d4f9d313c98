// libsndfile decoding and encoding, libsoxr resampling.
#include "losatok/audio/audio_io.h"

#include <sndfile.h>
#include <soxr.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "losatok/core/error.h"
#include "losatok/core/file_util.h"

namespace losatok::audio {

namespace {

struct SndCloser {
  void operator()(SNDFILE* f) const { sf_close(f); }
};
using SndPtr = std::unique_ptr<SNDFILE, SndCloser>;

std::string check_wav_fmt(const std::string& path);
std::string check_wav_fmt_bytes(const std::string& bytes);

// Sample rates and channel counts a real recording has; anything else is a damaged header.
constexpr int kMaxSampleRate = 1536000, kMinSampleRate = 1000, kMaxChannels = 256;

// What read_audio and decode_audio check once libsndfile has opened the audio. `subject` names
// it in errors ("audio file 'x.wav'"); `wav_fmt` is check_wav_fmt's verdict on its bytes.
template <class WavFmt>
void check_opened(const SF_INFO& info, const std::string& subject, WavFmt wav_fmt) {
  if (info.samplerate < kMinSampleRate || info.samplerate > kMaxSampleRate)
    throw Error(subject + ": implausible sample rate " + std::to_string(info.samplerate) + " Hz");
  if (info.channels < 1 || info.channels > kMaxChannels)
    throw Error(subject + ": implausible channel count " + std::to_string(info.channels));
  if (info.frames < 0) throw Error(subject + ": negative frame count in its header");
  if ((info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_WAV ||
      (info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_WAVEX ||
      (info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_RF64)
    if (const std::string why = wav_fmt(); !why.empty())
      throw Error(subject + ": implausible header: " + why);
}

std::string file_subject(const std::string& path) {
  return "audio file '" + path + "'";
}

SndPtr open_read(const std::string& path, SF_INFO& info) {
  if (const std::string why = not_regular_file(path); !why.empty())
    throw Error("audio file '" + path + "' " + why);
  info = SF_INFO{};
  SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
  if (!f) throw Error("cannot decode audio file '" + path + "': " + sf_strerror(nullptr));
  SndPtr out(f);
  check_opened(info, file_subject(path), [&] { return check_wav_fmt(path); });
  return out;
}

// libsndfile's virtual I/O over bytes in memory (read only).
struct MemoryFile {
  const std::string* bytes;
  sf_count_t pos = 0;
  sf_count_t size() const { return static_cast<sf_count_t>(bytes->size()); }
};

sf_count_t memory_length(void* user) {
  return static_cast<MemoryFile*>(user)->size();
}

sf_count_t memory_seek(sf_count_t offset, int whence, void* user) {
  auto* m = static_cast<MemoryFile*>(user);
  const sf_count_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->size() : 0;
  if (offset < -base) return -1;
  m->pos = base + offset;
  return m->pos;
}

sf_count_t memory_read(void* out, sf_count_t count, void* user) {
  auto* m = static_cast<MemoryFile*>(user);
  const sf_count_t n = std::max<sf_count_t>(0, std::min(count, m->size() - m->pos));
  if (n > 0) std::memcpy(out, m->bytes->data() + m->pos, static_cast<std::size_t>(n));
  m->pos += n;
  return n;
}

sf_count_t memory_write(const void*, sf_count_t, void*) {
  return 0;
}
sf_count_t memory_tell(void* user) {
  return static_cast<MemoryFile*>(user)->pos;
}

// Whether libsndfile's frame count for this format comes from the header exactly (MP3's is an
// estimate from the bit rate).
bool exact_frames(const SF_INFO& info) {
  return (info.format & SF_FORMAT_TYPEMASK) != SF_FORMAT_MPEG && info.frames > 0 &&
         info.frames < (int64_t{1} << 60);
}

// A WAV header libsndfile accepts can still be implausible (block align 0, 7-bit samples): the
// fmt chunk's fields must agree with each other. "" when plausible (or not a RIFF/WAVE file).
// `read(buf, n)` reads exactly n bytes or fails; `skip(n)` moves past n bytes or fails.
template <class Read, class Skip>
std::string check_wav_fmt_from(Read read, Skip skip) {
  unsigned char head[12];
  std::string why;
  const auto u16 = [](const unsigned char* p) { return static_cast<uint32_t>(p[0] | (p[1] << 8)); };
  const auto u32 = [](const unsigned char* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
           (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
  };
  if (read(head, 12) && std::memcmp(head + 8, "WAVE", 4) == 0 &&
      (std::memcmp(head, "RIFF", 4) == 0 || std::memcmp(head, "RF64", 4) == 0)) {
    unsigned char chunk[8];
    for (int i = 0; i < 64 && read(chunk, 8); ++i) {
      const uint32_t size = u32(chunk + 4);
      if (std::memcmp(chunk, "fmt ", 4) != 0) {
        if (!skip(static_cast<uint64_t>(size) + (size & 1))) break;
        continue;
      }
      unsigned char fmt[16];
      if (size < 16 || !read(fmt, 16)) {
        why = "its fmt chunk is shorter than 16 bytes";
        break;
      }
      const uint32_t tag = u16(fmt), channels = u16(fmt + 2), rate = u32(fmt + 4), byte_rate = u32(fmt + 8),
                     align = u16(fmt + 12), bits = u16(fmt + 14);
      // PCM, IEEE float and extensible carry whole-byte samples; compressed tags have their own rules.
      if (tag == 1 || tag == 3 || tag == 0xFFFE) {
        const uint32_t bytes = (bits + 7) / 8;
        if (bits == 0 || bits > 64 || (tag != 0xFFFE && bits % 8 != 0))
          why = "its header claims " + std::to_string(bits) + "-bit samples";
        else if (channels == 0 || align != channels * bytes)
          why = "its header's block align (" + std::to_string(align) +
                ") is not channels x bytes per sample (" + std::to_string(channels) + " x " +
                std::to_string(bytes) + ")";
        else if (byte_rate != rate * align)
          why = "its header's byte rate (" + std::to_string(byte_rate) +
                ") is not sample rate x block align (" + std::to_string(rate) + " x " +
                std::to_string(align) + ")";
      }
      break;
    }
  }
  return why;
}

std::string check_wav_fmt(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return "";
  const std::string why =
      check_wav_fmt_from([&](unsigned char* buf, std::size_t n) { return std::fread(buf, 1, n, f) == n; },
                         [&](uint64_t n) { return std::fseek(f, static_cast<long>(n), SEEK_CUR) == 0; });
  std::fclose(f);
  return why;
}

std::string check_wav_fmt_bytes(const std::string& bytes) {
  std::size_t pos = 0;
  return check_wav_fmt_from(
      [&](unsigned char* buf, std::size_t n) {
        if (bytes.size() - pos < n) return false;
        std::memcpy(buf, bytes.data() + pos, n);
        pos += n;
        return true;
      },
      [&](uint64_t n) {
        if (bytes.size() - pos < n) return false;
        pos += static_cast<std::size_t>(n);
        return true;
      });
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

namespace {

// The samples of [offset, offset + duration) of opened audio; `subject` names it in errors.
AudioBuffer read_opened(const SndPtr& f, const SF_INFO& info, const std::string& subject,
                        double offset_seconds, double duration_seconds) {
  if (info.channels <= 0 || info.samplerate <= 0) throw Error(subject + " has no channels or no sample rate");
  AudioBuffer out;
  out.sample_rate = info.samplerate;
  out.channels = info.channels;

  if (!std::isfinite(offset_seconds) || offset_seconds < 0)
    throw Error(subject + ": offset " + std::to_string(offset_seconds) + " s is not a time in the file");
  if (duration_seconds >= 0 && !std::isfinite(duration_seconds))
    throw Error(subject + ": duration is not finite");
  const double length = static_cast<double>(info.frames) / info.samplerate;
  const bool exact = exact_frames(info);
  // Manifest times are rounded: a crop may run past the end by this much, no more.
  const double slack = 0.1 + 1e-3 * length;
  if (exact && offset_seconds >= length)
    throw Error(subject + ": offset " + std::to_string(offset_seconds) + " s is past its end (" +
                std::to_string(length) + " s)");
  if (exact && duration_seconds >= 0 && offset_seconds + duration_seconds > length + slack)
    throw Error(subject + ": offset + duration (" + std::to_string(offset_seconds) + " + " +
                std::to_string(duration_seconds) + " s) runs past its end (" + std::to_string(length) +
                " s)");
  constexpr double kMaxFrames = 9.0e15;  // llround's range, with room
  if (offset_seconds * info.samplerate > kMaxFrames || duration_seconds * info.samplerate > kMaxFrames)
    throw Error(subject + ": offset or duration out of range");
  int64_t start = std::max<int64_t>(0, std::llround(offset_seconds * info.samplerate));
  int64_t want = duration_seconds >= 0 ? std::llround(duration_seconds * info.samplerate) : -1;
  const int64_t first = start;
  // Some decoders (MP3, some OGG) report frames approximately or not at all: read in chunks.
  if (start > 0 && sf_seek(f.get(), start, SEEK_SET) < 0) {
    if (info.seekable) throw Error(subject + ": cannot seek to " + std::to_string(offset_seconds) + " s");
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
    throw Error("error decoding " + subject + ": " + sf_strerror(f.get()));
  // A file cut short (a partial download) decodes fewer frames than its header promises.
  if (exact) {
    const int64_t promised = want >= 0 ? std::min<int64_t>(want, info.frames - first) : info.frames - first;
    if (total < promised)
      throw Error(subject + " is truncated: " + std::to_string(first + total) + " of " +
                  std::to_string(info.frames) + " samples decode");
  }
  return out;
}

}  // namespace

AudioBuffer read_audio(const std::string& path, double offset_seconds, double duration_seconds) {
  SF_INFO info;
  SndPtr f = open_read(path, info);
  return read_opened(f, info, file_subject(path), offset_seconds, duration_seconds);
}

AudioBuffer decode_audio(const std::string& bytes, const std::string& what) {
  const std::string subject = "audio '" + what + "'";
  if (bytes.empty()) throw Error(subject + " is empty (0 bytes)");
  MemoryFile file{&bytes};
  SF_VIRTUAL_IO io{memory_length, memory_seek, memory_read, memory_write, memory_tell};
  SF_INFO info{};
  SNDFILE* raw = sf_open_virtual(&io, SFM_READ, &info, &file);
  if (!raw) throw Error("cannot decode " + subject + ": " + sf_strerror(nullptr));
  SndPtr f(raw);
  check_opened(info, subject, [&] { return check_wav_fmt_bytes(bytes); });
  return read_opened(f, info, subject, 0.0, -1.0);
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
