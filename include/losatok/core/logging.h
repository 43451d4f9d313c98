// The process-wide logger (spdlog): console output on stderr, optional run-directory file.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace losatok {

// True for the level names below.
bool is_log_level(const std::string& level);

// Level names: trace, debug, info, warn, error, off. Throws losatok::Error on an unknown one.
void init_logging(const std::string& level = "info");

}  // namespace losatok
