// SentencePiece tokenisation (Debian's libsentencepiece) of the frozen T5 text encoder: the ids
// Python's `sentencepiece` gives for the same model file, with T5's EOS appended.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace losatok::data {

class SentencePieceTokenizer {
 public:
  // An unreadable or malformed model file is an error naming it.
  explicit SentencePieceTokenizer(const std::string& model_path);
  ~SentencePieceTokenizer();
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  // The pieces' ids of `text` (UTF-8), then EOS when the model has one (T5: id 1). Texts of
  // more than max_tokens ids are cut to max_tokens - 1 pieces + EOS (max_tokens <= 0: no limit).
  std::vector<int64_t> encode(const std::string& text, int max_tokens = 0) const;
  int vocab_size() const;
  int eos_id() const;  // -1 when the model has none
  int pad_id() const;
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
};

}  // namespace losatok::data
