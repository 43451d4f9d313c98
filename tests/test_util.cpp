// Test helpers (see test_util.h).
#include "test_util.h"

#include <sys/wait.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "losatok/core/config.h"
#include "losatok/core/file_util.h"

namespace losatok::test {

std::string source_path(const std::string& relative) {
  return std::string(LOSATOK_SOURCE_DIR) + "/" + relative;
}

RootConfig model_config(const std::string& name) {
  const auto tree =
      config::compose(config::to_yaml(RootConfig{}), {source_path("configs/model/" + name + ".yaml")}, {});
  return config::read<RootConfig>(tree);
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
