// Whisper's text normalisers (openai/whisper's normalizers/english.py and basic.py), applied to
// reference and hypothesis alike before WER: the English one and the multilingual basic one.
#pragma once

#include <string>
#include <unordered_map>

namespace losatok::eval {

// Unicode NFKD / NFKC of UTF-8 text (tables from Python's unicodedata; invalid UTF-8 bytes
// become U+FFFD).
std::string nfkd(const std::string& text);
std::string nfkc(const std::string& text);
// Python's str.lower() (full lowercase mapping, final sigma).
std::string unicode_lower(const std::string& text);

// NFKD, then: characters in `keep` stay; œ æ ø ß ð þ đ ł (and capitals) are spelled out;
// non-spacing marks (Mn) go; other marks, symbols and punctuation become a space.
std::string remove_symbols_and_diacritics(const std::string& text, const std::string& keep = "");
// NFKC, then marks, symbols and punctuation become a space (diacritics stay).
std::string remove_symbols(const std::string& text);

// Spelled-out numbers to digits: "one hundred and twenty three" -> "123", "twenty first" ->
// "21st", "two and a half" -> "2.5", "twenty dollars" -> "$20", "five per cent" -> "5%"
// (english.py's EnglishNumberNormalizer on lowercase text).
std::string normalize_english_numbers(const std::string& text);

class EnglishTextNormalizer {
 public:
  // spelling_path: whisper's english.json (or Hugging Face's normalizer.json), a JSON object of
  // British -> American spellings; empty: no spelling step.
  explicit EnglishTextNormalizer(const std::string& spelling_path = "");
  std::string operator()(const std::string& text) const;

 private:
  std::unordered_map<std::string, std::string> spelling_;
};

class BasicTextNormalizer {
 public:
  explicit BasicTextNormalizer(bool remove_diacritics = false) : remove_diacritics_(remove_diacritics) {}
  std::string operator()(const std::string& text) const;

 private:
  bool remove_diacritics_;
};

}  // namespace losatok::eval
