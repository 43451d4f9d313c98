// Audio files in and out: anything libsndfile reads (WAV, FLAC, OGG/Vorbis, Opus, MP3), any
// rate and channel count, to float mono at the model rate through libsoxr; WAV/FLAC/OGG out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace losatok::audio {

struct AudioInfo {
  int sample_rate = 0;
  int channels = 0;
  int64_t frames = 0;
  std::string format;  // libsndfile's name of the major format
  double duration() const { return sample_rate > 0 ? static_cast<double>(frames) / sample_rate : 0.0; }
};

// Header only; throws losatok::Error naming the file when it cannot be opened.
AudioInfo probe_audio(const std::string& path);

// Interleaved samples at the file's own rate.
struct AudioBuffer {
  std::vector<float> samples;
  int sample_rate = 0;
  int channels = 0;
  int64_t frames() const { return channels > 0 ? static_cast<int64_t>(samples.size()) / channels : 0; }
};

// Reads [offset, offset + duration) seconds (duration < 0: to the end).
AudioBuffer read_audio(const std::string& path, double offset_seconds = 0.0, double duration_seconds = -1.0);

// The whole of an encoded file held in memory (a WebDataset member): what read_audio makes of the
// same bytes on disk, with the same checks. `what` names it in errors ("shard.tar: key.flac").
AudioBuffer decode_audio(const std::string& bytes, const std::string& what);

// Mean over channels.
std::vector<float> downmix(const AudioBuffer& audio);

// Index of a libsoxr quality name (quick, low, mq, hq, vhq), -1 when unknown.
int resample_quality_index(const std::string& quality);

// libsoxr one-shot resampling of a mono signal; quality: quick | low | mq | hq | vhq.
std::vector<float> resample(const std::vector<float>& mono, int in_rate, int out_rate,
                            const std::string& quality = "hq");

// The model's input: mono float at `sample_rate`. Errors (naming the file) for unreadable,
// empty or non-finite audio.
std::vector<float> load_audio(const std::string& path, int sample_rate = 16000, double offset_seconds = 0.0,
                              double duration_seconds = -1.0, const std::string& quality = "hq");

// Writes interleaved float samples; the container comes from the extension (.wav, .flac,
// .ogg (Vorbis), .opus (8/12/16/24/48 kHz only), .mp3). `subtype`: pcm16 | pcm24 | float (WAV/FLAC ignore
// float where unsupported).
void write_audio(const std::string& path, const float* samples, int64_t frames, int channels, int sample_rate,
                 const std::string& subtype = "pcm16");
inline void write_wav(const std::string& path, const std::vector<float>& mono, int sample_rate) {
  write_audio(path, mono.data(), static_cast<int64_t>(mono.size()), 1, sample_rate, "pcm16");
}

}  // namespace losatok::audio
