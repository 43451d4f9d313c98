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

// The file that is written last and lists every other file with its size and XXH64 content
// checksum: a folder without it, or whose files differ from it, is not a checkpoint.
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

  // Writes `files` and then progress.json (`progress_json`, a JSON object; the file list with
  // sizes and checksums is added to it) into a temporary folder, syncs, and renames it to step-N
  // (replacing an older step-N). `after_file` is called after each file (tests use it to
  // interrupt the writer). When a write fails (a full disk), the oldest checkpoint that pruning
  // would remove after this save goes first and the save is tried again; never the newest valid
  // one nor the best. Returns the checkpoint's path.
  std::string save(int64_t step, const std::vector<FileWriter>& files, const std::string& progress_json,
                   const std::function<void(const std::string& name)>& after_file = {});

  // Removes all but the newest keep_last checkpoints, sparing `best_step` when keep_best
  // (-1 = none); also leftovers of interrupted writes and prunes. Points `checkpoints/best` at
  // best_step. A checkpoint is renamed to a hidden name before its files go, so a kill midway
  // never leaves a step-N folder behind.
  void prune(int64_t best_step);

  const std::string& dir() const { return dir_; }

  // Valid checkpoints under run_dir (file sizes checked), oldest first. Invalid step-N folders
  // are skipped with a warning (once per folder) naming what is wrong.
  static std::vector<CheckpointInfo> list(const std::string& run_dir);
  // The newest valid checkpoint. With `verify_content`, the newest whose files also match their
  // checksums: each newer one that does not is skipped with a warning naming the file.
  static std::optional<CheckpointInfo> latest(const std::string& run_dir, bool verify_content = false);
  // "" when `dir` is a complete checkpoint, else what is wrong with it; `verify_content` also
  // reads every file and compares its XXH64 with progress.json's.
  static std::string check(const std::string& dir, bool verify_content = false);

 private:
  // The oldest checkpoint the next prune would remove anyway, sparing the newest valid one and
  // the one `checkpoints/best` points at; removes it and returns its path, or "" when there is none.
  std::string make_room();
  std::string run_dir_, dir_;
  CheckpointConfig config_;
};

}  // namespace losatok::train
