// Whole-file reads and crash-safe writes, shared by configs, weights and checkpoints.
#pragma once

#include <string>

namespace losatok {

// The file's bytes; throws losatok::Error naming `path` when it cannot be read.
std::string read_file(const std::string& path);

// Writes `bytes` to a temporary name beside `path`, fsyncs it, then renames it over `path`:
// a crash at any moment leaves either the old file or the new one, never a mix. Creates the
// parent folders.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace losatok
