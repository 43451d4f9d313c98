// Fixture files loaded once (see fixture_data.h).
#include "fixture_data.h"

#include <fstream>
#include <map>
#include <mutex>

#include "losatok/core/error.h"
#include "test_util.h"

namespace losatok::test {

namespace {

template <class T, class Load>
const T& cached(const std::string& name, Load load) {
  static std::mutex mutex;
  static std::map<std::string, T> loaded;
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = loaded.find(name);
  if (it == loaded.end()) it = loaded.emplace(name, load(fixture(name))).first;
  return it->second;
}

}  // namespace

const io::SafetensorsData& fixture_tensors(const std::string& name) {
  return cached<io::SafetensorsData>(name, [](const std::string& p) { return io::load_safetensors(p); });
}

const nlohmann::json& fixture_json(const std::string& name) {
  return cached<nlohmann::json>(name, [](const std::string& p) { return read_json(p); });
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot read '" + path + "'");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error("'" + path + "': " + e.what());
  }
}

}  // namespace losatok::test
