// The feature cache (README.md, "Data"): frozen-encoder features or tokenizer latents per clip,
// in sharded safetensors files plus an index that records what produced them. A reader
// expecting another producer gets an error, never silently reused features.
#pragma once

#include <torch/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace losatok::io {
class SafetensorsFile;
}

namespace losatok::data {

// What made the features: `what` (semantic | latents), a hash of the weights that computed
// them and a hash of the config sections that shape them (front ends, model sizes).
struct CacheProducer {
  std::string what, weights_hash, config_hash;
  bool operator==(const CacheProducer& o) const {
    return what == o.what && weights_hash == o.weights_hash && config_hash == o.config_hash;
  }
  bool operator!=(const CacheProducer& o) const { return !(*this == o); }
  std::string describe() const;
};

// Hex FNV-1a 64 over names, dtypes, shapes and bytes of `tensors`.
std::string hash_tensors(const std::map<std::string, torch::Tensor>& tensors);
std::string hash_text(const std::string& text);

// The clip key caches use: the audio path, plus "@offset+duration" for a part of a file.
std::string clip_key(const std::string& audio, double offset, double duration);

struct CachedClip {
  int shard = 0;
  int64_t frames = 0;  // tokens (first dimension of every tensor)
  std::vector<std::string> tensors;
};

// Appends clips; every `shard_megabytes` of features becomes a shard, and the index is
// rewritten (atomically) after each shard, so an interrupted extraction resumes from the last
// complete shard. Opening a folder made by another producer is an error.
class FeatureCacheWriter {
 public:
  FeatureCacheWriter(const std::string& dir, const CacheProducer& producer, double shard_megabytes = 256);
  ~FeatureCacheWriter();  // flushes
  bool contains(const std::string& key) const {
    return clips_.count(key) > 0 || pending_keys_.count(key) > 0;
  }
  // tensors: name -> (T, D) with the same T.
  void add(const std::string& key, const std::map<std::string, torch::Tensor>& tensors);
  void flush();
  std::size_t size() const { return clips_.size() + pending_keys_.size(); }

 private:
  void write_index() const;
  std::string dir_;
  CacheProducer producer_;
  uint64_t shard_bytes_;
  int shards_ = 0;
  std::map<std::string, CachedClip> clips_;
  std::map<std::string, torch::Tensor> pending_;
  std::map<std::string, CachedClip> pending_meta_;
  std::set<std::string> pending_keys_;
  uint64_t pending_bytes_ = 0;
};

class FeatureCache {
 public:
  // `expected` empty what = accept any producer (inspection); otherwise it must match.
  FeatureCache(const std::string& dir, const CacheProducer& expected);
  ~FeatureCache();
  const CacheProducer& producer() const { return producer_; }
  bool contains(const std::string& key) const { return clips_.count(key) > 0; }
  const CachedClip& clip(const std::string& key) const;
  // Every tensor of the clip, (T, D) each. Safe from several threads.
  std::map<std::string, torch::Tensor> read(const std::string& key) const;
  std::size_t size() const { return clips_.size(); }
  std::vector<std::string> keys() const;  // sorted
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  CacheProducer producer_;
  std::map<std::string, CachedClip> clips_;
  std::vector<std::string> shard_files_;
  mutable std::mutex mutex_;
  static constexpr std::size_t kMaxOpenShards = 64;
  // shard -> open file and its last use
  mutable std::map<int, std::pair<std::shared_ptr<io::SafetensorsFile>, uint64_t>> open_;
  mutable uint64_t use_clock_ = 0;
};

}  // namespace losatok::data
