// Console logger set-up.
#include "losatok/core/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

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

}  // namespace losatok
