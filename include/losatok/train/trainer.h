// The trainer (README.md, "Training"; docs/run-directory.md): one loop for every stage. It owns the device,
// precision, gradient accumulation, clipping, optimizers and their schedules, EMA, validation, logging,
// checkpoints, signals and non-finite losses; the stage owns the models and the losses.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "losatok/core/run_config.h"
#include "losatok/train/checkpoint.h"
#include "losatok/train/distributed.h"
#include "losatok/train/ema.h"
#include "losatok/train/loss_scaler.h"
#include "losatok/train/optimizer.h"
#include "losatok/train/stage.h"
#include "losatok/train/training_state.h"

namespace losatok::train {

// How a run starts: fresh, resuming a checkpoint folder exactly, or a fresh run whose weights
// come from a checkpoint (the fork case).
struct TrainStart {
  std::string resume_checkpoint;       // a step-N folder
  std::string init_from;               // weights file or checkpoint folder
  std::vector<std::string> overrides;  // as given, saved beside the config
};

struct TrainResult {
  int64_t step = 0;
  bool finished = false;                     // reached train.max_steps
  std::string stop_reason;                   // "max_steps", "stop_at_step", "signal"
  std::string checkpoint;                    // the last checkpoint written
  std::map<std::string, double> validation;  // the last validation
};

// What one optimizer step did. Tensors stay on the device until the step is logged.
struct StepReport {
  std::map<std::string, torch::Tensor> metrics;  // "loss", "grad_norm", ... (0-d tensors)
  std::map<std::string, double> lr;              // per optimizer that ran
  std::map<std::string, torch::Tensor> applied;  // per optimizer: 0-d bool, false = update skipped
  torch::Tensor skipped;                         // 0-d bool: a non-finite loss or gradient skipped an update
  int64_t samples = 0;                           // this process's
  double audio_seconds = 0;
};

class Trainer {
 public:
  // `resolved` is the config tree saved in the run and its checkpoints. `stage` = null builds
  // the one cfg.stage names.
  Trainer(const RootConfig& cfg, const YAML::Node& resolved, std::unique_ptr<Stage> stage = nullptr);
  ~Trainer();

  // Runs to train.max_steps (or stop_at_step, or a signal) and writes the final checkpoint.
  TrainResult run(const TrainStart& start);

  // One optimizer step over `micro_batches` (train.grad_accum of them): every optimizer of the
  // stage in turn, backward (loss-scaled in fp16), gradient all-reduce across ranks, clipping,
  // non-finite check, update, EMA. Nothing in it waits for the device, except the one small
  // read-back of train.distributed.find_unused in multi-process runs. The benchmark calls it.
  StepReport step(const std::vector<data::Batch>& micro_batches);

  // Validation over `batches` (or the validation manifests when empty), with EMA weights when
  // the EMA is on.
  std::map<std::string, double> validate();

  Stage& stage() { return *stage_; }
  int64_t global_step() const { return state_.step; }
  const TrainingState& state() const { return state_; }
  const torch::Device& device() const { return device_; }
  const DistributedEnv& distributed() const { return dist_; }
  bool is_main_process() const { return dist_.rank == 0; }

  // What SIGTERM / SIGINT do: the loop writes a checkpoint and returns after the current step.
  static void request_stop();

 private:
  void restore(const std::string& checkpoint_dir);
  std::string save_checkpoint(const std::string& why);
  void log_step(const StepReport& report, double seconds_since_log, int64_t steps_since_log);
  // Reads the device's non-finite counters back (a sync point) and stops the run when too
  // many steps in a row were skipped.
  void check_nonfinite();
  // Every rank gets rank 0's weights, buffers and EMA.
  void broadcast_state();
  // Rank 0's `flag` on every rank.
  bool agree(bool flag);

  RootConfig cfg_;
  YAML::Node resolved_;
  DistributedEnv dist_;
  torch::Device device_;
  std::unique_ptr<ProcessGroup> group_;                // null in a single process
  std::vector<std::unique_ptr<GradSync>> grad_syncs_;  // per optimizer
  std::unique_ptr<LossScaler> scaler_;                 // fp16 only
  std::vector<bool> ema_owners_;                       // per optimizer: updates EMA-averaged weights
  std::unique_ptr<Stage> stage_;
  std::vector<AdamW> optimizers_;
  std::unique_ptr<Ema> ema_;
  std::unique_ptr<data::AudioLoader> loader_;
  std::shared_ptr<const data::FeatureCache> cache_;
  std::unique_ptr<class MetricsLogger> metrics_;
  std::unique_ptr<Checkpointer> checkpointer_;

  TrainingState state_;  // what progress.json records
  Scheduler scheduler_;
  // On the device: skipped steps in a row, in total, and the longest run since the last check.
  torch::Tensor skip_run_, skip_total_, skip_worst_;
  int64_t last_saved_step_ = -1, last_validated_step_ = -1;
  std::string last_checkpoint_;
};

}  // namespace losatok::train
