// Atomic checkpoint folders, validity checks and pruning.
#include "losatok/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

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

// Warns once per process and message: list() runs at every save, and a folder that stays
// invalid would otherwise be reported at each.
void warn_once(const std::string& message) {
  static std::mutex mutex;
  static std::set<std::string> said;
  std::lock_guard<std::mutex> lock(mutex);
  if (said.insert(message).second) spdlog::warn("{}", message);
}

// Removes a folder by first renaming it to a hidden name (one atomic step), so a kill while its
// files go leaves `.step-N.pruning`, which the next prune removes, never a half step-N.
void remove_checkpoint_dir(const fs::path& dir) {
  std::error_code ec;
  const fs::path hidden = dir.parent_path() / ("." + dir.filename().string() + ".pruning");
  fs::remove_all(hidden, ec);
  fs::rename(dir, hidden, ec);
  if (ec) {
    spdlog::warn("checkpoint: could not remove {}: {}", dir.string(), ec.message());
    return;
  }
  fs::remove_all(hidden, ec);
  if (ec) spdlog::warn("checkpoint: could not remove {}: {}", hidden.string(), ec.message());
}

// The step `checkpoints/best` points at, -1 when none.
int64_t best_link_step(const fs::path& dir) {
  std::error_code ec;
  const fs::path target = fs::read_symlink(dir / "best", ec);
  return ec ? -1 : step_of(target.filename().string());
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
  nlohmann::json progress;
  try {
    progress = nlohmann::json::parse(progress_json);
  } catch (const std::exception& e) {
    throw Error(std::string("checkpoint: progress is not JSON: ") + e.what());
  }
  for (;;) {
    try {
      fs::remove_all(tmp, ec);
      fs::create_directories(tmp, ec);
      if (ec) throw Error("checkpoint: cannot create " + tmp.string() + ": " + ec.message());
      nlohmann::json listed = nlohmann::json::object();
      for (const auto& [name, write] : files) {
        const fs::path p = tmp / name;
        write(p.string());
        if (!fs::is_regular_file(p)) throw Error("checkpoint: " + p.string() + " was not written");
        sync_path(p.string());
        // Read back from the page cache: the checksum is of the bytes the file holds.
        listed[name] = {{"bytes", fs::file_size(p)}, {"xxh64", file_xxh64(p.string())}};
        if (after_file) after_file(name);
      }
      progress["files"] = listed;
      write_file_atomic((tmp / kProgressFile).string(), progress.dump(2) + "\n");
      sync_path(tmp.string());
      break;
    } catch (const std::exception& e) {
      fs::remove_all(tmp, ec);
      // Only a full disk or quota frees space; any other failure keeps every checkpoint.
      const std::string what = e.what();
      if (what.find(std::strerror(ENOSPC)) == std::string::npos &&
          what.find(std::strerror(EDQUOT)) == std::string::npos)
        throw;
      const std::string freed = make_room();
      if (freed.empty()) throw;
      spdlog::warn("checkpoint of step {} failed ({}): removed the older checkpoint {} first, trying again",
                   step, first_line(e.what()), freed);
    }
  }
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

std::string Checkpointer::make_room() {
  const auto all = list(run_dir_);
  if (all.size() < 2) return "";  // the newest valid checkpoint always stays
  // After this save, prune keeps keep_last including the new one.
  if (config_.keep_last == 0 || static_cast<std::size_t>(config_.keep_last) > all.size()) return "";
  const int64_t best = config_.keep_best ? best_link_step(dir_) : -1;
  for (std::size_t i = 0; i + 1 < all.size() && i + config_.keep_last <= all.size(); ++i) {
    if (all[i].step == best) continue;
    remove_checkpoint_dir(all[i].path);
    return all[i].path;
  }
  return "";
}

std::string Checkpointer::check(const std::string& dir, bool verify_content) {
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
  for (const auto& [name, entry] : j["files"].items()) {
    const fs::path p = fs::path(dir) / name;
    // {"bytes": N, "xxh64": hex}; checkpoints written before checksums list the size alone.
    const nlohmann::json size = entry.is_object() && entry.contains("bytes") ? entry["bytes"] : entry;
    std::error_code ec;
    const auto actual = fs::file_size(p, ec);
    if (ec) return name + " is missing";
    if (!size.is_number_unsigned() || actual != size.get<uint64_t>())
      return name + " has " + std::to_string(actual) + " bytes, " + kProgressFile + " says " + size.dump();
    if (!verify_content || !entry.is_object() || !entry.contains("xxh64")) continue;
    if (!entry["xxh64"].is_string()) return std::string(kProgressFile) + " has a bad checksum for " + name;
    std::string sum;
    try {
      sum = file_xxh64(p.string());
    } catch (const std::exception& e) {
      return first_line(e.what());
    }
    if (sum != entry["xxh64"].get<std::string>())
      return name + " does not match its checksum (xxh64 " + sum + ", " + kProgressFile + " says " +
             entry["xxh64"].get<std::string>() + "): it changed after it was written";
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
      warn_once("checkpoint " + entry.path().string() + " is incomplete and ignored: " + why);
      continue;
    }
    out.push_back({step, entry.path().string()});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return out;
}

std::optional<CheckpointInfo> Checkpointer::latest(const std::string& run_dir, bool verify_content) {
  const auto all = list(run_dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (!verify_content) return *it;
    const std::string why = check(it->path, /*verify_content=*/true);
    if (why.empty()) return *it;
    spdlog::warn("checkpoint {} is damaged and skipped: {}{}", it->path, why,
                 std::next(it) == all.rend() ? "" : "; falling back to " + std::next(it)->path);
  }
  return std::nullopt;
}

void Checkpointer::prune(int64_t best_step) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    // Interrupted writes and prunes; a step-N without progress.json is what a prune of older
    // versions left when it was killed (a write never produces one: it renames a whole folder).
    if (name.rfind(".step-", 0) == 0) {
      fs::remove_all(entry.path(), ec);
    } else if (step_of(name) >= 0 && entry.is_directory(ec) && !fs::exists(entry.path() / kProgressFile)) {
      spdlog::info("checkpoint: removing {}, left without {} by an interrupted prune", entry.path().string(),
                   kProgressFile);
      remove_checkpoint_dir(entry.path());
    }
  }
  const auto all = list(run_dir_);
  const std::size_t keep = config_.keep_last == 0 ? all.size() : static_cast<std::size_t>(config_.keep_last);
  for (std::size_t i = 0; i + keep < all.size(); ++i) {
    if (config_.keep_best && all[i].step == best_step) continue;
    remove_checkpoint_dir(all[i].path);
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
