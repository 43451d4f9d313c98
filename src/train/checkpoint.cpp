// Atomic checkpoint folders, validity checks and pruning.
#include "losatok/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"

namespace fs = std::filesystem;

namespace losatok::train {

namespace {

constexpr const char* kPartialSuffix = ".partial";

// step-N -> N, or -1 for any other name.
int64_t step_of(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() == 5) return -1;
  int64_t n = 0;
  for (std::size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    n = n * 10 + (name[i] - '0');
  }
  return n;
}

void sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

Checkpointer::Checkpointer(std::string run_dir, const CheckpointConfig& config)
    : run_dir_(std::move(run_dir)), dir_((fs::path(run_dir_) / "checkpoints").string()), config_(config) {}

std::string Checkpointer::save(int64_t step, const std::vector<FileWriter>& files,
                               const std::string& progress_json,
                               const std::function<void(const std::string&)>& after_file) {
  const fs::path final_dir = fs::path(dir_) / ("step-" + std::to_string(step));
  const fs::path tmp = fs::path(dir_) / (".step-" + std::to_string(step) + kPartialSuffix);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw Error("checkpoint: cannot create " + tmp.string() + ": " + ec.message());
  nlohmann::json progress;
  try {
    progress = nlohmann::json::parse(progress_json);
  } catch (const std::exception& e) {
    throw Error(std::string("checkpoint: progress is not JSON: ") + e.what());
  }
  nlohmann::json listed = nlohmann::json::object();
  for (const auto& [name, write] : files) {
    const fs::path p = tmp / name;
    write(p.string());
    if (!fs::is_regular_file(p)) throw Error("checkpoint: " + p.string() + " was not written");
    sync_path(p.string());
    listed[name] = fs::file_size(p);
    if (after_file) after_file(name);
  }
  progress["files"] = listed;
  write_file_atomic((tmp / kProgressFile).string(), progress.dump(2) + "\n");
  sync_path(tmp.string());
  if (fs::exists(final_dir)) {  // the same step again (a resumed run stopped where it started)
    const fs::path old = fs::path(dir_) / (".step-" + std::to_string(step) + ".old");
    fs::remove_all(old, ec);
    fs::rename(final_dir, old);
    fs::rename(tmp, final_dir);
    fs::remove_all(old, ec);
  } else {
    fs::rename(tmp, final_dir);
  }
  sync_path(dir_);
  return final_dir.string();
}

std::string Checkpointer::check(const std::string& dir) {
  const fs::path progress = fs::path(dir) / kProgressFile;
  if (!fs::is_regular_file(progress)) return std::string(kProgressFile) + " is missing";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(progress.string()));
  } catch (const std::exception& e) {
    return std::string(kProgressFile) + " is unreadable (" + first_line(e.what()) + ")";
  }
  if (!j.is_object() || !j.contains("files") || !j["files"].is_object() || !j.contains("step"))
    return std::string(kProgressFile) + " has no step or file list";
  for (const auto& [name, size] : j["files"].items()) {
    const fs::path p = fs::path(dir) / name;
    std::error_code ec;
    const auto actual = fs::file_size(p, ec);
    if (ec) return name + " is missing";
    if (!size.is_number_unsigned() || actual != size.get<uint64_t>())
      return name + " has " + std::to_string(actual) + " bytes, " + kProgressFile + " says " + size.dump();
  }
  return "";
}

std::vector<CheckpointInfo> Checkpointer::list(const std::string& run_dir) {
  std::vector<CheckpointInfo> out;
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const int64_t step = step_of(entry.path().filename().string());
    if (step < 0 || !entry.is_directory()) continue;
    const std::string why = check(entry.path().string());
    if (!why.empty()) {
      spdlog::warn("checkpoint {} is incomplete and ignored: {}", entry.path().string(), why);
      continue;
    }
    out.push_back({step, entry.path().string()});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return out;
}

std::optional<CheckpointInfo> Checkpointer::latest(const std::string& run_dir) {
  auto all = list(run_dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

void Checkpointer::prune(int64_t best_step) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(".step-", 0) == 0) fs::remove_all(entry.path(), ec);  // interrupted writes
  }
  const auto all = list(run_dir_);
  const std::size_t keep = config_.keep_last == 0 ? all.size() : static_cast<std::size_t>(config_.keep_last);
  for (std::size_t i = 0; i + keep < all.size(); ++i) {
    if (config_.keep_best && all[i].step == best_step) continue;
    fs::remove_all(all[i].path, ec);
    if (ec) spdlog::warn("checkpoint: could not remove {}: {}", all[i].path, ec.message());
  }
  const fs::path link = fs::path(dir_) / "best";
  if (config_.keep_best && best_step >= 0 &&
      fs::is_directory(fs::path(dir_) / ("step-" + std::to_string(best_step)))) {
    const fs::path tmp = fs::path(dir_) / ".best.tmp";
    fs::remove(tmp, ec);
    fs::create_directory_symlink("step-" + std::to_string(best_step), tmp, ec);
    if (!ec) fs::rename(tmp, link, ec);
  }
}

}  // namespace losatok::train
