// Byte-level BPE tokenisation (GPT-2's, as roberta-base uses it) from a Hugging Face vocab.json
// + merges.txt: the ids transformers' RobertaTokenizer gives, for LAION-CLAP's text branch.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace losatok::data {

// The GPT-2 pre-tokenisation regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// run by hand over UTF-8 text: \p{L} / \p{N} are the Unicode general categories L* / N*
// (Unicode 14.0 tables, as Python 3.11's unicodedata has them), \s the White_Space property.
// Invalid UTF-8 bytes count as single code points of no class. Returns the pieces' bytes.
std::vector<std::string> gpt2_pretokenize(const std::string& text);

// GPT-2's bytes_to_unicode: byte -> the UTF-8 of its printable stand-in (printable Latin-1
// bytes stand for themselves, the others for U+0100, U+0101, ... in byte order).
std::vector<std::string> gpt2_byte_symbols();

// A merges.txt: one "a b" pair a line, ranked by order; a "#version" line and blank lines are
// skipped. A missing file or a malformed line is an error "<what> '<path>' ...".
std::vector<std::pair<std::string, std::string>> read_bpe_merges(const std::string& path,
                                                                 const std::string& what);

class ByteLevelBpe {
 public:
  // vocab.json (token -> id) and merges.txt (one "a b" pair a line, ranked by order; a
  // "#version" line and blank lines are skipped). A missing or malformed file is an error
  // naming it.
  ByteLevelBpe(const std::string& vocab_path, const std::string& merges_path);

  // The ids of `text`'s pieces, without special tokens (a piece absent from the vocabulary
  // gets unk_id()).
  std::vector<int64_t> encode(const std::string& text) const;
  // <s> ids </s>, cut to max_length - 2 pieces, then <pad> up to max_length (RobertaTokenizer
  // with padding="max_length", truncation=True). `mask` gets 1 on tokens, 0 on padding.
  std::vector<int64_t> encode_padded(const std::string& text, int max_length,
                                     std::vector<int64_t>* mask) const;

  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  int64_t bos_id() const { return bos_; }
  int64_t eos_id() const { return eos_; }
  int64_t pad_id() const { return pad_; }
  int64_t unk_id() const { return unk_; }

 private:
  std::vector<std::string> bpe(const std::string& word) const;  // word: the mapped bytes

  std::unordered_map<std::string, int64_t> vocab_;
  std::map<std::pair<std::string, std::string>, int> ranks_;
  std::vector<std::string> byte_symbol_;  // byte -> its printable UTF-8 stand-in
  int64_t bos_ = 0, pad_ = 1, eos_ = 2, unk_ = 3;
  std::string vocab_path_, merges_path_;
};

}  // namespace losatok::data
