// Which clips form each batch: a pure function of (seed, epoch, batch index), so any worker
// can build any batch and a resumed run sees exactly the batches the uninterrupted one would.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace losatok::data {

struct SamplerOptions {
  uint64_t seed = 0;
  int batch_size = 8;
  bool shuffle = true;
  bool drop_last = true;
  int bucket_batches = 0;  // > 0: sort by duration within windows of this many batches
  int rank = 0;            // distributed: this rank takes every world_size-th batch
  int world_size = 1;
  // Per source, the group its clips batch with (the joint DiT's task); empty = no grouping. A
  // batch then holds clips of one group; every rank has the same group at the same batch.
  std::vector<int> source_groups;
};

class BatchSampler {
 public:
  // `source_sizes[s]` clips in source s (ids are consecutive, source by source); `weights[s]`
  // its share of each epoch's draws (all 0 = in proportion to size); `durations` (seconds per
  // clip, < 0 unknown) for bucketing.
  BatchSampler(std::vector<int64_t> source_sizes, std::vector<double> weights, std::vector<double> durations,
               SamplerOptions options);
  // Batches of clip ids of `epoch` for this rank.
  std::vector<std::vector<int64_t>> epoch(int64_t epoch) const;
  // The same count every epoch.
  int64_t batches_per_epoch() const { return batches_per_epoch_; }

 private:
  std::vector<int64_t> draws(int64_t epoch) const;  // clip ids of one epoch, all ranks
  // One rank's batches of `ids` (drawn, all ranks): sharded, bucketed, cut into batches.
  std::vector<std::vector<int64_t>> batches_of(const std::vector<int64_t>& ids, int64_t epoch) const;
  int group_of(int64_t id) const;

  std::vector<int64_t> sizes_, offsets_, counts_;  // per source: clips, first id, draws per epoch
  std::vector<double> durations_;
  SamplerOptions options_;
  int64_t batches_per_epoch_ = 0;
};

// A 64-bit mix of several values (splitmix64), for per-item random streams.
uint64_t mix_seed(std::initializer_list<uint64_t> values);

}  // namespace losatok::data
