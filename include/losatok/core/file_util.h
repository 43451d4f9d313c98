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

// The executable `name` in a folder of $PATH, "" when there is none.
std::string find_program(const std::string& name);
// `s` as one single-quoted POSIX shell word.
std::string shell_quote(const std::string& s);

}  // namespace losatok
