// The process-wide logger (spdlog): console output on stderr, optional run-directory file.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace losatok {

// True for the level names below.
bool is_log_level(const std::string& level);

// Level names: trace, debug, info, warn, error, off. Throws losatok::Error on an unknown one.
void init_logging(const std::string& level = "info");

// Also appends every message to `path` (a run's train.log); replaces an earlier log file.
void log_to_file(const std::string& path);

}  // namespace losatok
