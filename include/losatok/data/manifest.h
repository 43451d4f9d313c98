// The JSON Lines manifest of README.md, "Data": one clip per line, only "audio" required,
// relative paths resolved against the manifest's folder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace losatok::data {

struct ManifestEntry {
  std::string audio;  // resolved path
  std::string text, label, domain, split;
  // TTS (UniFlow-style): the speaker's name (else `label` names it), phonemes as espeak-ng
  // --ipa --sep=_ writes them ("_" between phonemes, spaces between words) and frames per
  // phoneme from an external aligner (25 Hz latent frames, one per phoneme).
  std::string speaker, phonemes;
  std::vector<int64_t> durations;
  double duration = -1.0;  // seconds; < 0 = unknown (to the end of the file)
  double offset = 0.0;     // seconds into the file
  int line = 0;            // 1-based line in the manifest, for messages
};

// Who speaks in a clip: its `speaker`, else its `label`.
inline const std::string& speaker_name(const ManifestEntry& e) {
  return e.speaker.empty() ? e.label : e.speaker;
}

// Bounds on a manifest: one clip per line, a line at most this long, at most this many lines.
inline constexpr int kMaxManifestLineBytes = 1 << 20;
inline constexpr int kMaxManifestLines = 50000000;

// Blank lines are skipped. A malformed line, a missing "audio", a field of the wrong type, an
// offset < 0 or a duration <= 0, or a line over the limits is an error naming the manifest and
// the line; a path that is not a regular file, or a manifest without clips, is an error naming it.
std::vector<ManifestEntry> read_manifest(const std::string& path);

}  // namespace losatok::data
