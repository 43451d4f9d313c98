// Where a run is (train/trainer.h): the training state that `progress.json` records, which
// reads and writes its own JSON so each key is spelled once; and the scheduler that decides,
// from the step and train:, when the loop logs, validates, saves and stops.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "losatok/data/loader.h"
#include "losatok/train/train_config.h"

namespace losatok::train {

struct TrainingState {
  std::string stage;
  int64_t step = 0;  // optimizer steps taken
  int64_t samples_seen = 0;
  double audio_seconds_seen = 0;
  int64_t nonfinite_total = 0, nonfinite_in_row = 0;  // skipped updates, as last read back
  // keep-best: the validation metric watched, its best value and the step it was reached at
  // (-1 = none yet).
  std::string best_metric;
  double best_value = 0;
  int64_t best_step = -1;
  std::optional<data::LoaderState> loader;   // the training loader's position
  std::map<std::string, double> validation;  // the last validation's figures
  int world_size = 1;                        // processes that wrote it

  std::string to_json() const;
  // Errors name `where` (the progress file) and the key. `best_metric` is the run's own: a saved
  // best of another metric is not restored.
  static TrainingState from_json(const std::string& text, const std::string& where,
                                 const std::string& best_metric);

  // Whether a validation `value` beats the best so far (`mode` min | max); non-finite never does.
  bool is_better(double value, const std::string& mode) const;
};

// When the loop logs, validates, saves and stops (marian's scheduler).
class Scheduler {
 public:
  explicit Scheduler(const TrainConfig& config) : config_(config) {}
  bool log(int64_t step) const { return step % config_.log_every == 0 || step == config_.max_steps; }
  bool validate(int64_t step) const { return config_.val_every > 0 && step % config_.val_every == 0; }
  bool save(int64_t step) const {
    return config_.checkpoint.every > 0 && step % config_.checkpoint.every == 0;
  }
  // Why the loop stops before taking step `step` + 1: "max_steps", "stop_at_step", "signal", or
  // "" to go on.
  std::string stop_reason(int64_t step, bool signal) const;

 private:
  TrainConfig config_;
};

}  // namespace losatok::train
