// Text into the DiT's token ids (models/dit_config.h): UTF-8 bytes of the caption or
// transcript, or of its IPA phonemes from espeak-ng when `text.tokens` is `phonemes`.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "losatok/models/dit_config.h"

namespace losatok::data {

// 2 + byte for every byte of `text`.
std::vector<int64_t> byte_tokens(const std::string& text);

// Whether the espeak-ng program is on PATH.
bool espeak_available();

// IPA phonemes of a text from the espeak-ng program (one process per new text, memoised).
// Missing espeak-ng or an espeak-ng failure is an error naming the voice and the text.
class Phonemizer {
 public:
  explicit Phonemizer(std::string voice);
  std::string operator()(const std::string& text);

 private:
  std::string voice_;
  std::mutex mutex_;
  std::map<std::string, std::string> memo_;
};

// The tokenizer of a TextEncoderConfig: texts longer than max_tokens are cut.
class TextTokenizer {
 public:
  explicit TextTokenizer(const TextEncoderConfig& config);
  // Never empty: an empty text is one filler token.
  std::vector<int64_t> encode(const std::string& text);

 private:
  TextEncoderConfig config_;
  std::unique_ptr<Phonemizer> phonemizer_;
};

}  // namespace losatok::data
