// BERT's uncased WordPiece tokenisation, as Hugging Face's BertTokenizerFast runs it for
// bert-base-uncased: the text ids of X-ARES' retrieval probe (a learned embedding over them).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace losatok::data {

// BertNormalizer + BertPreTokenizer on UTF-8 text (invalid bytes count as U+FFFD, which goes):
// U+0000, U+FFFD and other characters (Cc Cf Co Cs, tab / LF / CR excepted) dropped, white space
// to ' ', a space either side of each CJK ideograph, NFD without non-spacing marks (Mn),
// lowercase per code point; then split on white space with every punctuation character (ASCII
// punctuation or P*) a word of its own. Unicode 14.0 tables (Python 3.11's unicodedata).
std::vector<std::string> bert_basic_tokenize(const std::string& text);

class BertWordPiece {
 public:
  // A vocab.txt (bert-base-uncased's): one token a line, the id its line number. It must hold
  // [PAD], [UNK], [CLS] and [SEP]; a missing file or token is an error naming the file.
  static BertWordPiece from_vocab_file(const std::string& path);
  // The fallback without a vocab.txt: [PAD] [UNK] [CLS] [SEP] [MASK], then the distinct words
  // bert_basic_tokenize finds in `captions`, sorted by bytes. The ids only index the probe's
  // learned embedding, so this changes the segmentation (whole words; a word the training
  // captions lack is [UNK]), not the protocol.
  static BertWordPiece from_captions(const std::vector<std::string>& captions);
  // Tokens in id order; `origin` names them in errors.
  BertWordPiece(std::vector<std::string> tokens, std::string origin);

  // The pieces of `text`: the literal special tokens ([PAD] [UNK] [CLS] [SEP] [MASK]) cut out
  // of the raw text first, the rest through bert_basic_tokenize, then per word the longest
  // vocabulary prefix, again and again on the rest with "##"; a word of over 100 code points,
  // or one whose rest no piece matches, is [UNK].
  std::vector<std::string> tokenize(const std::string& text) const;
  // [CLS] pieces [SEP] as ids.
  std::vector<int64_t> encode(const std::string& text) const;
  // (B, L) int64: encode() of each text, padded with pad_id() to the longest (as
  // tokenizer(texts, padding=True) does).
  torch::Tensor encode_batch(const std::vector<std::string>& texts) const;

  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t pad_id() const { return pad_; }
  int64_t unk_id() const { return unk_; }
  int64_t cls_id() const { return cls_; }
  int64_t sep_id() const { return sep_; }
  // -1 when the vocabulary lacks it.
  int64_t token_id(const std::string& token) const;
  const std::string& token(int64_t id) const;

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
  std::vector<std::string> specials_;  // the special tokens the vocabulary holds
  std::string origin_;
  int64_t pad_ = 0, unk_ = 0, cls_ = 0, sep_ = 0;
};

}  // namespace losatok::data
