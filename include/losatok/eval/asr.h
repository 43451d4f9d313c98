// Word error rate through an offline recogniser: pocketsphinx with Debian's US English model
// (packages pocketsphinx, pocketsphinx-en-us), a rough, relative check of TTS intelligibility.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "losatok/data/manifest.h"

namespace losatok::eval {

// Lower case, letters, digits and apostrophes; everything else separates words.
std::vector<std::string> normalize_words(const std::string& text);
// Word-level Levenshtein distance (substitutions + deletions + insertions).
int64_t edit_distance(const std::vector<std::string>& reference, const std::vector<std::string>& hypothesis);

struct WerResult {
  double wer = 0;  // errors / reference words over all clips (corpus-level)
  int64_t clips = 0, words = 0, errors = 0;
  std::vector<std::string> hypotheses;           // per clip, normalised
  std::vector<std::string> transcripts;          // per clip, as recognised (Whisper only)
  std::vector<int64_t> clip_errors, clip_words;  // per clip (Whisper only)
  // The mean of the clips' own WERs over clips with reference words (how F5-TTS and
  // seed-tts-eval average); NaN without per-clip counts.
  double utterance_mean() const;
};

class Recognizer {
 public:
  // pocketsphinx_batch on PATH and the model in /usr/share/pocketsphinx/model/en-us (or
  // $LOSATOK_POCKETSPHINX_MODEL); otherwise unavailable, with the reason.
  static Recognizer find();
  bool available() const { return why_.empty(); }
  const std::string& why_unavailable() const { return why_; }
  std::string name() const { return "pocketsphinx en-us"; }
  // Manifest clips (audio, offset, duration) against their `text`, decoded in one recogniser
  // process at 16 kHz.
  WerResult word_error_rate(const std::vector<data::ManifestEntry>& clips) const;

 private:
  std::string binary_, model_, why_;
};

}  // namespace losatok::eval
