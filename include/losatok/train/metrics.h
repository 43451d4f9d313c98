// Metric sinks of a run: `metrics.jsonl` (one JSON object per logging event) and TensorBoard
// event files (scalars and audio), written without TensorFlow or protobuf libraries.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace losatok::train {

// CRC-32C (Castagnoli), as TFRecord framing uses it.
uint32_t crc32c(const void* data, std::size_t size);

// One TensorBoard event file: TFRecord framing (length, masked CRC-32C) around Event protos.
class TensorBoardWriter {
 public:
  // Creates `dir/events.out.tfevents.<seconds>.<host>.<pid>` and writes the file-version event.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void add_scalar(const std::string& tag, double value, int64_t step);
  // Mono float samples in [-1, 1], stored as 16-bit WAV.
  void add_audio(const std::string& tag, const std::vector<float>& samples, int sample_rate, int64_t step);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);
  std::string path_;
  std::FILE* file_ = nullptr;
};

// What an event file holds, for tests and tools; CRC errors are losatok::Error naming the file.
struct TensorBoardRecord {
  int64_t step = 0;
  std::string tag;
  double value = 0;         // scalars
  std::string audio_bytes;  // audio (a WAV file image)
};
std::vector<TensorBoardRecord> read_tensorboard_events(const std::string& path);

// metrics.jsonl plus TensorBoard under run_dir/tensorboard.
class MetricsLogger {
 public:
  // `keep_until_step` >= 0 (a resumed run): lines of metrics.jsonl after that step, written by
  // the interrupted run past its checkpoint, are dropped first.
  MetricsLogger(const std::string& run_dir, bool tensorboard, int64_t keep_until_step = -1);
  ~MetricsLogger();
  MetricsLogger(const MetricsLogger&) = delete;
  MetricsLogger& operator=(const MetricsLogger&) = delete;
  // One JSON line {"step": N, "time": unix seconds, key: value...}; scalars to TensorBoard.
  void log(int64_t step, const std::map<std::string, double>& values);
  void audio(const std::string& tag, const std::vector<float>& samples, int sample_rate, int64_t step);
  void flush();
  const std::string& jsonl_path() const { return jsonl_path_; }

 private:
  std::string jsonl_path_;
  std::FILE* jsonl_ = nullptr;
  std::unique_ptr<TensorBoardWriter> tb_;
};

}  // namespace losatok::train
