// Test helpers (see test_util.h).
#include "test_util.h"

#include <sys/wait.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "losatok/audio/audio_io.h"
#include "losatok/core/config.h"
#include "losatok/core/file_util.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/audio_vae.h"

namespace losatok::test {

std::string source_path(const std::string& relative) {
  return std::string(LOSATOK_SOURCE_DIR) + "/" + relative;
}

RootConfig model_config(const std::string& name) {
  return read_root_config({source_path("configs/model/" + name + ".yaml")}, {});
}

std::string write_random_tokenizer(const std::string& path) {
  const RootConfig cfg = model_config("tiny");
  torch::manual_seed(5);
  models::AudioVAE vae(cfg.model, cfg.frontend.dasheng, cfg.frontend.vocos);
  io::save_safetensors(path, io::module_state(*vae), {{kConfigMetadataKey, weights_config_yaml(cfg)}});
  return path;
}

TinyCorpus::TinyCorpus() {
  std::string tr, va;
  for (int i = 0; i < 12; ++i) {
    const int64_t n = 16000 + 2000 * i;
    std::vector<float> w(n);
    uint32_t s = 1234 + i;
    for (int64_t k = 0; k < n; ++k) {
      s = s * 1664525u + 1013904223u;
      w[k] = 0.2f * std::sin(0.003f * (i + 1) * k) + 0.05f * ((s >> 9) / 8388608.0f - 1.0f);
    }
    const std::string name = "c" + std::to_string(i) + ".wav";
    audio::write_audio(dir.path(name), w.data(), n, 1, 16000, "pcm16");
    (i < 9 ? tr : va) += "{\"audio\": \"" + name + "\"}\n";
  }
  train = dir.path("train.jsonl");
  valid = dir.path("valid.jsonl");
  write_text(train, tr);
  write_text(valid, va);
}

train::TrainResult train_run(const RootConfig& cfg, const std::string& resume,
                             std::unique_ptr<train::Stage> stage) {
  train::Trainer t(cfg, config::to_yaml(cfg), std::move(stage));
  train::TrainStart s;
  s.resume_checkpoint = resume;
  return t.run(s);
}

void expect_same_tensors(const std::string& a, const std::string& b) {
  const auto ta = io::load_safetensors(a).tensors, tb = io::load_safetensors(b).tensors;
  ASSERT_EQ(ta.size(), tb.size()) << a;
  for (const auto& [k, v] : ta) {
    ASSERT_TRUE(tb.count(k)) << k;
    EXPECT_TRUE(torch::equal(v, tb.at(k))) << a << ": " << k;
  }
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::map<int64_t, nlohmann::json> lines_with(const std::string& path, const std::string& key) {
  std::map<int64_t, nlohmann::json> out;
  for (auto& j : read_jsonl(path))
    if (j.contains(key)) out[j["step"].get<int64_t>()] = j;
  return out;
}

int run_command(const std::string& command, std::string* output) {
  TempDir dir;
  const std::string log = dir.path("output.txt");
  const int status = std::system((command + " > '" + log + "' 2>&1").c_str());
  if (output) *output = read_bytes(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string fixture(const std::string& name) {
  return std::string(LOSATOK_FIXTURES_DIR) + "/" + name;
}

TempDir::TempDir() {
  // mkdtemp: created atomically with a name nobody else holds.
  std::string pattern = (std::filesystem::temp_directory_path() / "losatok_test_XXXXXX").string();
  if (!::mkdtemp(pattern.data()))
    throw std::runtime_error("mkdtemp " + pattern + ": " + std::strerror(errno));
  dir_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void write_text(const std::string& path, const std::string& text) {
  write_bytes(path, text);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  return read_file(path);
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

double rel_l2(const torch::Tensor& a, const torch::Tensor& b) {
  const auto a64 = a.to(torch::kFloat64), b64 = b.to(torch::kFloat64);
  return ((a64 - b64).norm() / b64.norm()).item<double>();
}

}  // namespace losatok::test
