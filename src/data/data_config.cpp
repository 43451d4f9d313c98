// validate() of the data section.
#include "losatok/data/data_config.h"

#include "losatok/core/config.h"

namespace losatok {

using config::check;

void DataSource::validate() const {
  check(!manifest.empty(), "manifest", "must name a JSON Lines manifest");
  check(weight >= 0, "weight", "must be >= 0 (0 = in proportion to the clip count)");
  check(task.empty() || task == "tta" || task == "ttm" || task == "tts", "task",
        "must be tta, ttm or tts (or empty), got '" + task + "'");
}

void DataConfig::validate() const {
  check(segment_seconds >= 0, "segment_seconds", "must be >= 0 (0 = whole clips)");
  check(max_seconds > 0, "max_seconds", "must be positive");
  check(min_seconds >= 0, "min_seconds", "must be >= 0");
  check(batch_size > 0, "batch_size", "must be positive");
  check(bucket_batches >= 0, "bucket_batches", "must be >= 0 (0 = no bucketing)");
  check(workers >= 0, "workers", "must be >= 0 (0 = decode on the calling thread)");
  check(prefetch_batches >= 1, "prefetch_batches", "must be >= 1");
}

}  // namespace losatok
