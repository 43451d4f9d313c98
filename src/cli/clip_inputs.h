// The audio a command reads: files named on the command line or a manifest's clips, and how an
// error names one of them.
#pragma once

#include <string>
#include <vector>

#include "losatok/data/manifest.h"

namespace losatok::cli {

// `manifest`'s clips when it is given, else one entry per file.
inline std::vector<data::ManifestEntry> clips_from(const std::vector<std::string>& files,
                                                   const std::string& manifest) {
  if (!manifest.empty()) return data::read_manifest(manifest);
  std::vector<data::ManifestEntry> clips;
  for (const auto& f : files) {
    data::ManifestEntry e;
    e.audio = f;
    clips.push_back(e);
  }
  return clips;
}

// "'a.wav'", or "'a.wav' (line 3)" for a manifest's clip.
inline std::string clip_place(const data::ManifestEntry& c) {
  return "'" + c.audio + "'" + (c.line ? " (line " + std::to_string(c.line) + ")" : "");
}

}  // namespace losatok::cli
