// JSON Lines manifest reader.
#include "losatok/data/manifest.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "losatok/core/error.h"
#include "losatok/core/file_util.h"

namespace losatok::data {

namespace {

[[noreturn]] void bad(const std::string& path, int line, const std::string& message) {
  throw Error("manifest '" + path + "' line " + std::to_string(line) + ": " + message);
}

void read_string(const nlohmann::json& j, const char* key, std::string& out, const std::string& path,
                 int line) {
  if (!j.contains(key) || j[key].is_null()) return;
  if (!j[key].is_string()) bad(path, line, std::string("\"") + key + "\" must be a string");
  out = j[key].get<std::string>();
}

void read_number(const nlohmann::json& j, const char* key, double& out, const std::string& path, int line) {
  if (!j.contains(key) || j[key].is_null()) return;
  if (!j[key].is_number()) bad(path, line, std::string("\"") + key + "\" must be a number");
  out = j[key].get<double>();
}

}  // namespace

std::vector<ManifestEntry> read_manifest(const std::string& path) {
  if (const std::string why = not_regular_file(path); !why.empty())
    throw Error("manifest '" + path + "' " + why);
  std::ifstream in(path);
  if (!in) throw Error("manifest '" + path + "': cannot open");
  const std::filesystem::path base = std::filesystem::path(path).parent_path();
  std::vector<ManifestEntry> entries;
  std::string text;
  // istream::getline into a fixed buffer: a line without an end cannot grow without bound.
  std::vector<char> buf(kMaxManifestLineBytes + 2);
  for (int line = 1;; ++line) {
    in.getline(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.fail() && !in.eof() && in.gcount() == static_cast<std::streamsize>(buf.size()) - 1)
      bad(path, line, "longer than " + std::to_string(kMaxManifestLineBytes) + " bytes");
    if (in.gcount() == 0 && (in.eof() || in.fail())) break;
    text.assign(buf.data());
    if (line > kMaxManifestLines)
      throw Error("manifest '" + path + "' has more than " + std::to_string(kMaxManifestLines) +
                  " lines: split it into several data.sources");
    if (text.find_first_not_of(" \t\r") == std::string::npos) {
      if (in.eof()) break;
      continue;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      bad(path, line, "not valid JSON (" + std::string(e.what()).substr(0, 120) + ")");
    }
    if (!j.is_object()) bad(path, line, "expected a JSON object");
    ManifestEntry e;
    e.line = line;
    read_string(j, "audio", e.audio, path, line);
    if (e.audio.empty()) bad(path, line, "missing \"audio\"");
    if (std::filesystem::path(e.audio).is_relative()) e.audio = (base / e.audio).string();
    read_string(j, "text", e.text, path, line);
    read_string(j, "label", e.label, path, line);
    read_string(j, "domain", e.domain, path, line);
    read_string(j, "split", e.split, path, line);
    read_string(j, "speaker", e.speaker, path, line);
    read_string(j, "phonemes", e.phonemes, path, line);
    if (j.contains("durations") && !j["durations"].is_null()) {
      const auto& d = j["durations"];
      if (!d.is_array()) bad(path, line, "\"durations\" must be an array of frame counts");
      for (const auto& x : d) {
        if (!x.is_number_integer() || x.get<int64_t>() < 0)
          bad(path, line, "\"durations\" must hold integers >= 0 (frames per phoneme)");
        e.durations.push_back(x.get<int64_t>());
      }
    }
    const bool has_duration = j.contains("duration") && !j["duration"].is_null();
    read_number(j, "duration", e.duration, path, line);
    read_number(j, "offset", e.offset, path, line);
    if (!std::isfinite(e.offset) || e.offset < 0) bad(path, line, "\"offset\" must be a finite number >= 0");
    if (has_duration && (!std::isfinite(e.duration) || e.duration <= 0))
      bad(path, line, "\"duration\" must be a finite number > 0 (or absent: to the end of the file)");
    entries.push_back(std::move(e));
    if (in.eof()) break;
  }
  if (entries.empty()) throw Error("manifest '" + path + "' has no clips");
  return entries;
}

}  // namespace losatok::data
