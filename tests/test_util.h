// Helpers shared by the tests: fixture paths, temporary folders, tensor comparisons.
#pragma once

#include <gtest/gtest.h>
#include <torch/types.h>

#include <filesystem>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "losatok/core/error.h"
#include "losatok/core/run_config.h"
#include "losatok/train/trainer.h"

namespace losatok::test {

std::string fixture(const std::string& name);
// A path inside the source tree (configs/..., tests/reference/...).
std::string source_path(const std::string& relative);
// The root config with configs/model/<name>.yaml applied.
RootConfig model_config(const std::string& name = "tiny");
// A random tiny tokenizer checkpoint (configs/model/tiny.yaml, seed 5) that carries its config,
// as a tokenizer run writes it; returns `path`.
std::string write_random_tokenizer(const std::string& path);
// Runs `command` through the shell; returns its exit status and fills `output` with stdout + stderr.
// The JSON objects of a JSON Lines file (metrics.jsonl), in order.
std::vector<nlohmann::json> read_jsonl(const std::string& path);
// step -> the line's values, for the lines of a metrics.jsonl holding `key`.
std::map<int64_t, nlohmann::json> lines_with(const std::string& path, const std::string& key);

int run_command(const std::string& command, std::string* output = nullptr);

// A fresh folder under the system temp dir, removed when the object goes.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

void write_text(const std::string& path, const std::string& text);
void write_bytes(const std::string& path, const std::string& bytes);
std::string read_bytes(const std::string& path);

// Twelve short clips of distinct noisy tones (1 to 2.4 s), split 9 train / 3 valid, with their
// manifests.
struct TinyCorpus {
  TempDir dir;
  std::string train, valid;
  TinyCorpus();
};

// A training run of `cfg` as `losatok train` runs it, resuming the checkpoint folder `resume`
// when given; `stage` replaces the one cfg.stage names.
train::TrainResult train_run(const RootConfig& cfg, const std::string& resume = "",
                             std::unique_ptr<train::Stage> stage = nullptr);
// Expects two safetensors files to hold the same tensors, bit for bit.
void expect_same_tensors(const std::string& a, const std::string& b);

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b);
// ||a - b|| / ||b||
double rel_l2(const torch::Tensor& a, const torch::Tensor& b);

// Expects `fn` to throw a losatok::Error whose one-line message contains every needle.
template <class F>
void expect_error(F&& fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "error must be one line: " << msg;
  }
}

}  // namespace losatok::test
