// Deterministic epoch plans: mixture draws, shuffling, duration bucketing, rank sharding.
#include "losatok/data/sampler.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>

#include "losatok/core/error.h"

namespace losatok::data {

uint64_t mix_seed(std::initializer_list<uint64_t> values) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (uint64_t v : values) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    uint64_t z = (h += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    h = z ^ (z >> 31);
  }
  return h;
}

BatchSampler::BatchSampler(std::vector<int64_t> source_sizes, std::vector<double> weights,
                           std::vector<double> durations, SamplerOptions options)
    : sizes_(std::move(source_sizes)), durations_(std::move(durations)), options_(options) {
  if (options_.batch_size <= 0) throw Error("sampler: batch_size must be positive");
  if (options_.world_size <= 0 || options_.rank < 0 || options_.rank >= options_.world_size)
    throw Error("sampler: rank " + std::to_string(options_.rank) + " outside world size " +
                std::to_string(options_.world_size));
  weights.resize(sizes_.size(), 0.0);
  int64_t total = 0;
  for (auto n : sizes_) {
    offsets_.push_back(total);
    total += n;
  }
  if (total == 0) throw Error("sampler: no clips");
  for (std::size_t s = 0; s < sizes_.size(); ++s)
    if (sizes_[s] == 0) throw Error("sampler: data source " + std::to_string(s) + " has no clips");
  const double weight_sum = std::accumulate(weights.begin(), weights.end(), 0.0);
  for (std::size_t s = 0; s < weights.size(); ++s)
    if (weight_sum > 0 && weights[s] <= 0)
      throw Error("sampler: data source " + std::to_string(s) +
                  " has weight 0 while others are weighted: give every source a weight, or none");
  for (std::size_t s = 0; s < sizes_.size(); ++s) {
    // Each epoch draws `total` clips; a weighted source gets its share (cycling through its
    // clips when the share exceeds its size).
    const double share = weight_sum > 0 ? weights[s] / weight_sum : static_cast<double>(sizes_[s]) / total;
    counts_.push_back(sizes_[s] == 0 ? 0 : static_cast<int64_t>(std::llround(share * total)));
  }
  const int64_t drawn = std::accumulate(counts_.begin(), counts_.end(), int64_t{0});
  const auto batches_for = [&](int64_t n) {
    const int64_t per_rank = n / options_.world_size;
    return options_.drop_last ? per_rank / options_.batch_size
                              : (per_rank + options_.batch_size - 1) / options_.batch_size;
  };
  if (options_.source_groups.empty()) {
    batches_per_epoch_ = batches_for(drawn);
  } else {
    if (options_.source_groups.size() != sizes_.size())
      throw Error("sampler: " + std::to_string(options_.source_groups.size()) + " source groups for " +
                  std::to_string(sizes_.size()) + " sources");
    std::map<int, int64_t> per_group;
    for (std::size_t s = 0; s < sizes_.size(); ++s) per_group[options_.source_groups[s]] += counts_[s];
    for (const auto& [g, n] : per_group) {
      const int64_t k = batches_for(n);
      if (k == 0)
        throw Error("sampler: group " + std::to_string(g) + " has " + std::to_string(n) +
                    " clips per epoch, no full batch of " + std::to_string(options_.batch_size) +
                    " per rank");
      batches_per_epoch_ += k;
    }
  }
  if (batches_per_epoch_ == 0)
    throw Error("sampler: " + std::to_string(drawn) + " clips make no full batch of " +
                std::to_string(options_.batch_size) + " per rank (world size " +
                std::to_string(options_.world_size) + ")");
}

int BatchSampler::group_of(int64_t id) const {
  const auto it = std::upper_bound(offsets_.begin(), offsets_.end(), id);
  return options_.source_groups[static_cast<std::size_t>(it - offsets_.begin() - 1)];
}

std::vector<int64_t> BatchSampler::draws(int64_t epoch) const {
  std::vector<int64_t> ids;
  for (std::size_t s = 0; s < sizes_.size(); ++s) {
    for (int64_t round = 0, taken = 0; taken < counts_[s]; ++round) {
      std::vector<int64_t> order(sizes_[s]);
      std::iota(order.begin(), order.end(), offsets_[s]);
      if (options_.shuffle) {
        std::mt19937_64 rng(
            mix_seed({options_.seed, static_cast<uint64_t>(epoch), s, static_cast<uint64_t>(round)}));
        std::shuffle(order.begin(), order.end(), rng);
      }
      for (int64_t i = 0; i < sizes_[s] && taken < counts_[s]; ++i, ++taken) ids.push_back(order[i]);
    }
  }
  if (options_.shuffle) {
    std::mt19937_64 rng(mix_seed({options_.seed, static_cast<uint64_t>(epoch), 0xB1u}));
    std::shuffle(ids.begin(), ids.end(), rng);
  }
  return ids;
}

std::vector<std::vector<int64_t>> BatchSampler::batches_of(const std::vector<int64_t>& ids,
                                                           int64_t epoch) const {
  // Rank r takes every world_size-th clip of the same global order (DistributedSampler).
  std::vector<int64_t> mine;
  const int64_t per_rank = static_cast<int64_t>(ids.size()) / options_.world_size;
  for (int64_t i = 0; i < per_rank; ++i) mine.push_back(ids[i * options_.world_size + options_.rank]);
  const int64_t b = options_.batch_size;
  if (options_.bucket_batches > 0 && !durations_.empty()) {
    // Similar durations in a batch waste less padding; windows keep the order random.
    const int64_t window = b * options_.bucket_batches;
    for (int64_t start = 0; start < static_cast<int64_t>(mine.size()); start += window) {
      const auto first = mine.begin() + start;
      const auto last = mine.begin() + std::min<int64_t>(start + window, mine.size());
      std::stable_sort(first, last, [&](int64_t x, int64_t y) { return durations_[x] < durations_[y]; });
    }
  }
  const int64_t count = options_.drop_last ? static_cast<int64_t>(mine.size()) / b
                                           : (static_cast<int64_t>(mine.size()) + b - 1) / b;
  std::vector<std::vector<int64_t>> batches;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t end = std::min<int64_t>((i + 1) * b, mine.size());
    batches.emplace_back(mine.begin() + i * b, mine.begin() + end);
  }
  return batches;
}

std::vector<std::vector<int64_t>> BatchSampler::epoch(int64_t epoch) const {
  const std::vector<int64_t> ids = draws(epoch);
  std::vector<std::vector<int64_t>> batches;
  if (options_.source_groups.empty()) {
    batches = batches_of(ids, epoch);
  } else {
    // One group's clips per batch: each group is sharded and cut on its own (the same count on
    // every rank), then the groups' batches are interleaved.
    std::map<int, std::vector<int64_t>> by_group;
    for (int64_t id : ids) by_group[group_of(id)].push_back(id);
    std::vector<std::vector<std::vector<int64_t>>> per_group;
    for (const auto& [g, members] : by_group) per_group.push_back(batches_of(members, epoch));
    for (std::size_t round = 0;; ++round) {
      bool any = false;
      for (const auto& gb : per_group)
        if (round < gb.size()) {
          batches.push_back(gb[round]);
          any = true;
        }
      if (!any) break;
    }
  }
  if ((options_.bucket_batches > 0 || !options_.source_groups.empty()) && options_.shuffle) {
    std::mt19937_64 rng(mix_seed({options_.seed, static_cast<uint64_t>(epoch), 0xB2u}));
    std::shuffle(batches.begin(), batches.end(), rng);
  }
  return batches;
}

}  // namespace losatok::data
