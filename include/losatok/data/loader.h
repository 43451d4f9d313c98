// The audio loader (README.md, "Data"): worker threads decode, resample and crop clips into
// padded batches ahead of the training step, in an order fixed by (seed, epoch, batch), with
// bad files skipped, counted and listed, and a position that checkpoints and resumes exactly.
#pragma once

#include <torch/types.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "losatok/data/data_config.h"
#include "losatok/data/feature_cache.h"
#include "losatok/data/manifest.h"
#include "losatok/data/sampler.h"

namespace losatok::data {

struct Clip {
  ManifestEntry entry;
  int source = 0;
  std::string key;  // clip_key(): names the clip in caches and logs
};

// Manifests of `sources`, clip ids in order (source by source).
std::vector<Clip> read_sources(const std::vector<DataSource>& sources);

struct BatchItem {
  const Clip* clip = nullptr;
  int64_t offset = 0;  // crop start, samples into the clip (a multiple of samples_per_token)
};

struct Batch {
  int64_t epoch = 0, index = 0;  // this batch's position
  torch::Tensor audio;           // (B, N) float32, zero-padded
  torch::Tensor lengths;         // (B) int64 valid samples
  std::vector<BatchItem> items;
  std::map<std::string, torch::Tensor> features;  // from the cache: (B, T, D) zero-padded
  torch::Tensor feature_lengths;                  // (B) int64 valid tokens
  int64_t size() const { return static_cast<int64_t>(items.size()); }
  torch::Tensor mask() const;          // (B, N) bool, true on valid samples
  torch::Tensor feature_mask() const;  // (B, T) bool, true on valid tokens of `features`
};

// The bad-clip policy the loader and extraction share: appends `key` to `bad`, logs it with the
// reason and the running count, and throws once there are more than `max_bad` (< 0: no limit).
// `who` prefixes the messages ("data", "extract").
void record_bad_clip(std::vector<std::string>& bad, const std::string& key, const std::string& why,
                     int max_bad, const std::string& who);

// Zero-padded (B, max(longest, min_length)) float32 audio and (B) int64 lengths of `waves`.
std::pair<torch::Tensor, torch::Tensor> pad_waves(const std::vector<std::vector<float>>& waves,
                                                  int64_t min_length = 0);

// Where the loader is: the next batch to return, and the bad files seen so far.
struct LoaderState {
  int64_t epoch = 0, batch = 0;
  std::vector<std::string> bad_files;  // clip keys, in the order they were found
  std::string to_json() const;
  static LoaderState from_json(const std::string& text);  // errors name what is wrong
};

struct LoaderOptions {
  uint64_t seed = 0;
  int sample_rate = 16000;
  std::string resample_quality = "hq";
  int64_t samples_per_token = 640;  // crop offsets and lengths snap to this grid
  bool train = true;                // false: no shuffling, whole clips, keep the last batch
  int rank = 0, world_size = 1;
  std::shared_ptr<const FeatureCache> cache;  // serve cached features beside the audio
  // With a cache: crop on the cached frames and leave the audio silent instead of decoding it,
  // for stages that read only features (the DiT). Clips missing from the cache are bad.
  bool features_only = false;
};

class AudioLoader {
 public:
  AudioLoader(std::vector<Clip> clips, std::vector<double> weights, const DataConfig& config,
              const LoaderOptions& options);
  // Sources that name a `task` (the joint DiT) batch by task: each batch holds one task's clips.
  AudioLoader(const DataConfig& config, const std::vector<DataSource>& sources, const LoaderOptions& options);
  ~AudioLoader();
  AudioLoader(const AudioLoader&) = delete;
  AudioLoader& operator=(const AudioLoader&) = delete;

  // The next batch (epochs follow each other). Batches whose clips were all bad are skipped.
  // Throws when more than data.max_bad_files clips were bad, or a worker failed otherwise.
  Batch next();
  int64_t batches_per_epoch() const { return sampler_->batches_per_epoch(); }
  const std::vector<Clip>& clips() const { return clips_; }
  LoaderState state() const;
  void restore(const LoaderState& state);

 private:
  struct Slot;
  void start();
  void stop();
  void work();
  Batch build(int64_t global);
  std::vector<float> read_item(const Clip& clip, uint64_t seed, int64_t* offset, bool* bad, std::string* why,
                               bool* permanent);
  std::vector<int64_t> batch_ids(int64_t epoch, int64_t index);
  SamplerOptions sampler_options() const;

  std::vector<Clip> clips_;
  DataConfig config_;
  LoaderOptions options_;
  std::unique_ptr<BatchSampler> sampler_;
  std::vector<int64_t> sizes_;  // clips per source
  std::vector<double> weights_, durations_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
  int64_t consumed_ = 0, claimed_ = 0;  // global batch numbers (epoch * per_epoch + index)
  std::map<int64_t, Batch> ready_;
  std::map<int64_t, std::vector<std::pair<std::string, std::string>>> ready_bad_;  // key, reason
  std::string worker_error_;
  int64_t error_global_ = -1;  // the batch whose building failed first
  std::map<int64_t, std::vector<std::vector<int64_t>>> plans_;
  std::map<std::string, std::string> known_bad_;  // key -> reason: not read again
  std::set<std::string> reported_;
  std::vector<std::string> bad_files_;  // as reported, in consumption order
};

}  // namespace losatok::data
