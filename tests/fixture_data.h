// Fixture files the tests read: tensors (safetensors) and JSON under tests/fixtures/, each file
// loaded once per test binary, and JSON files anywhere.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "losatok/io/safetensors.h"

namespace losatok::test {

// tests/fixtures/<name>, loaded on first use and kept.
const io::SafetensorsData& fixture_tensors(const std::string& name);
const nlohmann::json& fixture_json(const std::string& name);

// A JSON file; an unreadable or malformed one fails with its path.
nlohmann::json read_json(const std::string& path);

}  // namespace losatok::test
