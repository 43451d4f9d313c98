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
// `separator` (espeak-ng --sep) goes between the phonemes of a word ("" = none).
class Phonemizer {
 public:
  explicit Phonemizer(std::string voice, std::string separator = "");
  std::string operator()(const std::string& text);

 private:
  std::string voice_, separator_;
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

// Phonemes for UniFlow-style TTS. One phoneme is the bag of its code points' symbol ids (the IPA
// letter with its stress and length marks), led by kPhonemeWordStart on a word's first phoneme,
// so that a phoneme and its marks share one duration.
inline constexpr int kPhonemePad = 0, kPhonemeWordStart = 1, kPhonemeVocab = 1024, kMaxPhonemeSymbols = 8;
using PhonemeUnit = std::vector<int64_t>;
// U+0000..U+036F (Latin, IPA, modifier letters, combining marks) map one to one; others share
// the remaining ids by code point modulo their count.
int phoneme_symbol_id(char32_t cp);
// The phonemes of espeak-ng's `--ipa --sep=_` output (or a manifest's `phonemes`): "_" between the
// phonemes of a word, white space between words.
std::vector<PhonemeUnit> phoneme_units(const std::string& separated);

// The phonemes of a clip or a prompt: its given phonemes, else espeak-ng's (source espeak).
class PhonemeTokenizer {
 public:
  PhonemeTokenizer(const std::string& source, const std::string& voice);  // espeak | manifest
  std::vector<PhonemeUnit> units(const std::string& text, const std::string& phonemes = "");

 private:
  std::string source_;
  std::unique_ptr<Phonemizer> phonemizer_;
};

}  // namespace losatok::data
