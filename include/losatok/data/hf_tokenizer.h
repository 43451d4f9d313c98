// A Hugging Face tokenizer.json of Qwen2's kind (Qwen/Qwen2.5-0.5B, the LLM of X-ARES's ASR task):
// NFC, Qwen2's pre-tokenisation regex, byte-level BPE, added (special) tokens, the ByteLevel
// decoder; the ids the `tokenizers` library gives for that file.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace losatok::data {

// Unicode NFC of UTF-8 text: canonical decomposition, canonical ordering, canonical composition,
// from tables generated from Python 3.11's unicodedata (Unicode 14.0; Hangul by formula). Bytes
// that start no valid UTF-8 sequence pass through unchanged and block composition.
std::string nfc(const std::string& text);

// Qwen2's pre-tokenisation regex (tokenizer.json's Split pattern, Isolated)
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
//   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// run by hand over UTF-8 text, with gpt2_pretokenize's classes (bpe.h): \p{L} / \p{N} the general
// categories L* / N*, \s the White_Space property (Oniguruma's \s); the contractions match
// either case, and U+017F (long s) as s, as case folding has it. Returns the pieces' bytes.
std::vector<std::string> qwen2_pretokenize(const std::string& text);

class HfTokenizer {
 public:
  // `path`: a tokenizer.json, or a folder holding one. tokenizer_config.json beside it, when
  // there, gives eos_token / pad_token (a string or {"content": ...}). Supported: normalizer NFC
  // or none; pre_tokenizer Sequence[Split(Qwen2's regex, Isolated), ByteLevel(add_prefix_space
  // false, use_regex false)]; model BPE (merges as "a b" strings or [a, b] pairs, ignore_merges,
  // no unk_token / dropout / byte_fallback / subword affixes); decoder ByteLevel; added tokens
  // without single_word / lstrip / rstrip. Anything else, or a broken file, is a one-line error
  // naming the file.
  static HfTokenizer load(const std::string& path);

  // Added tokens are split out of the text first (literal, leftmost-longest; those marked
  // "normalized" are looked for in the NFC'd text), the rest is NFC'd, pre-tokenised and merged.
  // parse_special = false treats special tokens' text as text (tokenizers'
  // split_special_tokens); added tokens that are not special are still split out.
  std::vector<int64_t> encode(const std::string& text, bool parse_special = true) const;
  // Tokens' characters mapped back to bytes (a token holding a character outside the byte map,
  // e.g. an added token, contributes its own UTF-8), invalid UTF-8 replaced by U+FFFD (one per
  // maximal invalid subsequence). skip_special drops special added tokens. An unknown id is an
  // error.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = true) const;

  // The id of a vocabulary or added token; an error when it has none.
  int64_t token_id(const std::string& token) const;
  bool is_special(int64_t id) const;
  // From tokenizer_config.json; -1 when it names none (or is absent).
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  // The largest id of the vocabulary and the added tokens, plus one.
  int64_t vocab_size() const { return vocab_size_; }
  const std::string& source() const { return source_; }

 private:
  struct AddedToken {
    std::string content;  // as matched: NFC'd when `normalized`
    int64_t id;
    bool special, normalized;
  };
  struct Merge {
    int64_t rank, id;
  };
  HfTokenizer() = default;
  std::vector<int64_t> bpe(const std::string& symbols) const;
  const std::string* token_of(int64_t id) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<int64_t, std::string> id_to_token_;  // vocabulary, then added tokens over it
  std::unordered_map<uint64_t, Merge> merges_;            // (left id << 32 | right id) -> merge
  std::vector<AddedToken> added_;
  std::vector<std::string> byte_symbol_;              // byte -> its printable stand-in (UTF-8)
  std::unordered_map<int32_t, uint8_t> symbol_byte_;  // stand-in code point -> byte
  bool nfc_ = false, ignore_merges_ = false;
  int64_t eos_id_ = -1, pad_id_ = -1, vocab_size_ = 0;
  std::string source_;
};

}  // namespace losatok::data
