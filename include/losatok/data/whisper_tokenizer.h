// Whisper's tokenizer (openai/whisper's tokenizer.py): byte-level BPE ids <-> text and the
// special tokens (<|startoftranscript|>, languages, tasks, timestamps) decoding is driven by.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace losatok::data {

class WhisperTokenizer {
 public:
  // OpenAI's rank file (multilingual.tiktoken / gpt2.tiktoken: "base64(token bytes) rank" a
  // line), specials appended after the ranks as whisper's get_encoding lays them out, with
  // the first `num_languages` languages of its table.
  static WhisperTokenizer from_tiktoken(const std::string& path, int num_languages, bool multilingual);
  // The same with the language count and multilinguality the model's n_vocab implies
  // (whisper: multilingual when n_vocab >= 51865, num_languages = n_vocab - 51765 - that).
  static WhisperTokenizer from_tiktoken(const std::string& path, int64_t n_vocab);
  // A Hugging Face folder: tokenizer.json, or vocab.json + merges.txt (+ added_tokens.json),
  // as transformers' WhisperTokenizer reads it. Special ids come from the files; those they
  // lack get the layout's ids.
  static WhisperTokenizer from_hf(const std::string& dir, int num_languages, bool multilingual);
  static WhisperTokenizer from_hf(const std::string& dir, int64_t n_vocab);
  // A folder -> from_hf, a file -> from_tiktoken.
  static WhisperTokenizer load(const std::string& path, int64_t n_vocab);
  // whisper's n_vocab rule.
  static int num_languages_for(int64_t n_vocab);
  static bool multilingual_for(int64_t n_vocab) { return n_vocab >= 51865; }

  // Text ids, no specials: text that spells a special token ("<|endoftext|>") is plain text.
  std::vector<int64_t> encode(const std::string& text) const;
  // Drops ids >= eot() (specials and timestamps: whisper's own decode prints non-timestamp
  // specials such as <|en|> as text; a transcript here is text only); invalid UTF-8 becomes U+FFFD as
  // Python's errors="replace" does (one per maximal invalid subsequence).
  std::string decode(const std::vector<int64_t>& ids) const;

  // "<|endoftext|>", "<|en|>", "<|0.02|>", ...; an unknown name is an error.
  int64_t special(const std::string& name) const;
  // {sot, <|language|>, <|task|>, <|notimestamps|>}; an empty language / task is left out, and
  // English-only vocabularies have neither (whisper sets them to None). task: "transcribe" or
  // "translate".
  std::vector<int64_t> sot_sequence(const std::string& language = "en",
                                    const std::string& task = "transcribe",
                                    bool without_timestamps = true) const;
  // tokenizer.py's non_speech_tokens (what suppress_tokens -1 stands for), sorted.
  std::vector<int64_t> non_speech_tokens() const;
  // encode(" ") + eot: what SuppressBlank forbids at the first step.
  std::vector<int64_t> blank_ids() const;
  int64_t language_id(const std::string& code) const;
  // The language codes of this vocabulary, in id order.
  std::vector<std::string> language_codes() const;

  int64_t eot() const { return eot_; }
  int64_t sot() const { return sot_; }
  int64_t no_timestamps() const { return special("<|notimestamps|>"); }
  int64_t timestamp_begin() const { return timestamp_begin_; }
  bool is_multilingual() const { return multilingual_; }
  int num_languages() const { return num_languages_; }
  // Ranks + specials.
  int64_t vocab_size() const { return vocab_size_; }

 private:
  WhisperTokenizer() = default;
  void add_specials(const std::map<std::string, int64_t>& from_files);
  std::vector<int64_t> bpe(const std::string& piece) const;
  int64_t merge_rank(const std::string& left, const std::string& right) const;

  std::unordered_map<std::string, int64_t> ranks_;  // token bytes -> id
  std::vector<std::string> token_bytes_;            // id -> token bytes (ids < eot)
  // Hugging Face: only the listed pairs merge (pair_key(left, right) -> rank); tiktoken: any
  // adjacent pair whose bytes form a token, and a piece that is a token is taken whole.
  std::unordered_map<std::string, int64_t> pair_ranks_;
  bool hf_merges_ = false;
  std::map<std::string, int64_t> specials_;
  std::vector<std::string> languages_;
  int64_t eot_ = 0, sot_ = 0, timestamp_begin_ = 0, vocab_size_ = 0;
  int num_languages_ = 0;
  bool multilingual_ = false;
  std::string source_;
};

}  // namespace losatok::data
