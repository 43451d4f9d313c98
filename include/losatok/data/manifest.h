// The JSON Lines manifest of README.md, "Data": one clip per line, only "audio" required,
// relative paths resolved against the manifest's folder.
#pragma once

#include <string>
#include <vector>

namespace losatok::data {

struct ManifestEntry {
  std::string audio;  // resolved path
  std::string text, label, domain, split;
  double duration = -1.0;  // seconds; < 0 = unknown (to the end of the file)
  double offset = 0.0;     // seconds into the file
  int line = 0;            // 1-based line in the manifest, for messages
};

// Blank lines are skipped. A malformed line, a missing "audio" or a field of the wrong type
// is an error naming the manifest and the line.
std::vector<ManifestEntry> read_manifest(const std::string& path);

}  // namespace losatok::data
