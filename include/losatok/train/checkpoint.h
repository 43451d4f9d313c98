// The checkpointer (README.md, "Training"; docs/run-directory.md): `run_dir/checkpoints/step-N/` folders
// written under a temporary name and renamed when complete, so a crash mid-write never produces a folder that
// looks valid; keep-last-k and keep-best pruning; finding the latest valid checkpoint.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "losatok/train/train_config.h"

namespace losatok::train {

// The file that is written last and lists every other file with its size: a folder without
// it, or whose files differ from it, is not a checkpoint.
inline constexpr const char* kProgressFile = "progress.json";

struct CheckpointInfo {
  int64_t step = 0;
  std::string path;
};

// One file of a checkpoint: its name and a function that writes it at the path it is given.
using FileWriter = std::pair<std::string, std::function<void(const std::string& path)>>;

class Checkpointer {
 public:
  Checkpointer(std::string run_dir, const CheckpointConfig& config);

  // Writes `files` and then progress.json (`progress_json`, a JSON object; the file list is
  // added to it) into a temporary folder, syncs, and renames it to step-N (replacing an older
  // step-N). `after_file` is called after each file (tests use it to interrupt the writer).
  // Returns the checkpoint's path.
  std::string save(int64_t step, const std::vector<FileWriter>& files, const std::string& progress_json,
                   const std::function<void(const std::string& name)>& after_file = {});

  // Removes all but the newest keep_last checkpoints, sparing `best_step` when keep_best
  // (-1 = none); also leftovers of interrupted writes. Points `checkpoints/best` at best_step.
  void prune(int64_t best_step);

  const std::string& dir() const { return dir_; }

  // Valid checkpoints under run_dir, oldest first. Invalid step-N folders are skipped with a
  // warning naming what is wrong.
  static std::vector<CheckpointInfo> list(const std::string& run_dir);
  static std::optional<CheckpointInfo> latest(const std::string& run_dir);
  // "" when `dir` is a complete checkpoint, else what is wrong with it.
  static std::string check(const std::string& dir);

 private:
  std::string run_dir_, dir_;
  CheckpointConfig config_;
};

}  // namespace losatok::train
