// The exception types losatok throws. Each message names the thing and where it is
// (file, dotted config path, checkpoint key); main() prints it as one line.
#pragma once

#include <stdexcept>
#include <string>

namespace losatok {

// Any user-facing failure: bad input, bad config, corrupt file.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A configuration problem at a dotted path ("runtime.threads"); `origin` is the file the
// value came from, filled in by whoever knows it.
class ConfigError : public Error {
 public:
  ConfigError(std::string path, std::string message, std::string origin = {})
      : Error(format(path, message, origin)),
        path_(std::move(path)),
        message_(std::move(message)),
        origin_(std::move(origin)) {}

  const std::string& path() const { return path_; }
  const std::string& bare_message() const { return message_; }
  const std::string& origin() const { return origin_; }

  ConfigError with_origin(const std::string& origin) const { return ConfigError(path_, message_, origin); }

 private:
  static std::string format(const std::string& path, const std::string& message, const std::string& origin) {
    std::string s = "config error at '" + (path.empty() ? std::string("<root>") : path) + "'";
    if (!origin.empty()) s += " (from " + origin + ")";
    return s + ": " + message;
  }
  std::string path_, message_, origin_;
};

// The first line of a message: LibTorch's c10::Error appends a C++ backtrace after it.
inline std::string first_line(const std::string& message) {
  return message.substr(0, message.find('\n'));
}

}  // namespace losatok
