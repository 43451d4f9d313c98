// The `data:` config section (README.md, "Data"): which manifests, how clips are cropped and
// batched, the worker pool, bad-file tolerance and the feature cache. torch-free.
#pragma once

#include <string>
#include <vector>

namespace losatok {

// One manifest of the training mixture.
struct DataSource {
  std::string manifest;
  double weight = 0.0;  // share of each epoch's draws; all 0 = in proportion to clip counts
  // The joint DiT's task of this source's clips (tta | ttm | tts); batches then hold one task.
  std::string task = "";

  template <class V>
  void visit(V& v) {
    v("manifest", manifest);
    v("weight", weight);
    v("task", task);
  }
  void validate() const;
};

struct DataConfig {
  std::vector<DataSource> sources;
  std::vector<DataSource> valid_sources;  // validation manifests (no crops: whole clips)
  double segment_seconds = 4.0;           // random crop length; 0 = whole clips (up to max_seconds)
  double max_seconds = 30.0;              // longer clips are cropped to this when segment_seconds is 0
  double min_seconds = 0.2;               // shorter clips count as bad
  int batch_size = 8;
  bool shuffle = true;
  bool drop_last = true;
  int bucket_batches = 0;  // > 0: sort clips by duration within windows of this many batches
  int workers = 2;         // decoding threads
  int prefetch_batches = 4;
  int max_bad_files = 50;  // more unreadable / empty / short / non-finite clips is an error; < 0 = no limit
  std::string cache_dir;   // feature cache to read (losatok extract); "" = compute from audio

  template <class V>
  void visit(V& v) {
    v("sources", sources);
    v("valid_sources", valid_sources);
    v("segment_seconds", segment_seconds);
    v("max_seconds", max_seconds);
    v("min_seconds", min_seconds);
    v("batch_size", batch_size);
    v("shuffle", shuffle);
    v("drop_last", drop_last);
    v("bucket_batches", bucket_batches);
    v("workers", workers);
    v("prefetch_batches", prefetch_batches);
    v("max_bad_files", max_bad_files);
    v("cache_dir", cache_dir);
  }
  void validate() const;
};

}  // namespace losatok
