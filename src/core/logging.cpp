// Console logger set-up.
#include "losatok/core/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <algorithm>

#include "losatok/core/error.h"

namespace losatok {

bool is_log_level(const std::string& level) {
  return spdlog::level::from_str(level) != spdlog::level::off || level == "off";
}

void init_logging(const std::string& level) {
  const auto lvl = spdlog::level::from_str(level);
  if (!is_log_level(level))
    throw Error("unknown log level '" + level + "' (trace, debug, info, warn, error, off)");
  auto logger = spdlog::get("losatok");
  if (!logger) {
    logger = spdlog::stderr_color_mt("losatok");
    logger->set_pattern("[%H:%M:%S] [%^%l%$] %v");
    spdlog::set_default_logger(logger);
  }
  logger->set_level(lvl);
}

void log_to_file(const std::string& path) {
  auto logger = spdlog::get("losatok");
  if (!logger) {
    init_logging();
    logger = spdlog::get("losatok");
  }
  auto& sinks = logger->sinks();
  sinks.erase(std::remove_if(sinks.begin(), sinks.end(),
                             [](const spdlog::sink_ptr& s) {
                               return dynamic_cast<spdlog::sinks::basic_file_sink_mt*>(s.get()) != nullptr;
                             }),
              sinks.end());
  try {
    auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
    file->set_pattern("[%Y-%m-%d %H:%M:%S] [%l] %v");
    sinks.push_back(file);
  } catch (const spdlog::spdlog_ex& e) {
    throw Error("cannot write log file '" + path + "': " + e.what());
  }
}

}  // namespace losatok
