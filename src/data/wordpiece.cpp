// BERT WordPiece (Wu et al. 2016; Devlin et al. 2019), written from the Hugging Face tokenizers
// description of bert-base-uncased's fast tokenizer; tests/reference/wordpiece_ref.py is the
// Python twin the tests compare against.
#include "losatok/data/wordpiece.h"

#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "losatok/core/error.h"
#include "unicode.h"

namespace losatok::data {

namespace {

constexpr int kMaxWordChars = 100;
const char* const kSpecials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

// Cc Cf Co Cs, tab / LF / CR excepted.
bool is_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  const unicode::Category k = unicode::category(c);
  return unicode::major_category(k) == 'C' && k != unicode::Category::kCn;
}

bool is_punctuation(char32_t c) {
  const bool ascii =
      (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
  return ascii || unicode::major_category(unicode::category(c)) == 'P';
}

// The blocks the fast tokenizer's BertNormalizer spaces out.
bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// NFD of one code point with its non-spacing marks dropped. Code point by code point: NFD's
// canonical reordering only moves combining marks, and those it could move past one another
// are almost all Mn, which go.
void strip_accents(char32_t c, std::u32string* out) {
  if (c < 0xC0) {  // no canonical decomposition, no Mn
    out->push_back(c);
    return;
  }
  for (const char32_t d : unicode::nfd(std::u32string(1, c)))
    if (unicode::category(d) != unicode::Category::kMn) out->push_back(d);
}

std::vector<std::u32string> basic_words(const std::string& text) {
  // BertNormalizer: clean, space out CJK, strip accents, then lowercase.
  std::u32string cleaned;
  for (const char32_t c : unicode::from_utf8(text, /*scalar_values_only=*/true)) {
    if (c == 0 || c == 0xFFFD || is_control(c)) continue;
    if (unicode::is_white_space(c)) {
      cleaned.push_back(U' ');
    } else if (is_cjk(c)) {
      cleaned += U' ';
      cleaned.push_back(c);
      cleaned += U' ';
    } else {
      cleaned.push_back(c);
    }
  }
  std::u32string stripped, lowered;
  for (const char32_t c : cleaned) strip_accents(c, &stripped);
  for (const char32_t c : stripped) unicode::append_lower(c, &lowered);
  // BertPreTokenizer.
  std::vector<std::u32string> words;
  std::u32string cur;
  for (const char32_t c : lowered) {
    const bool space = unicode::is_white_space(c);
    if (space || is_punctuation(c)) {
      if (!cur.empty()) words.push_back(cur);
      cur.clear();
      if (!space) words.emplace_back(1, c);
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) words.push_back(cur);
  return words;
}

}  // namespace

std::vector<std::string> bert_basic_tokenize(const std::string& text) {
  std::vector<std::string> out;
  for (const auto& w : basic_words(text)) out.push_back(unicode::to_utf8(w));
  return out;
}

BertWordPiece::BertWordPiece(std::vector<std::string> tokens, std::string origin)
    : tokens_(std::move(tokens)), origin_(std::move(origin)) {
  for (std::size_t i = 0; i < tokens_.size(); ++i) ids_[tokens_[i]] = static_cast<int64_t>(i);
  for (const char* s : kSpecials)
    if (ids_.count(s)) specials_.push_back(s);
  auto need = [&](const char* name) {
    const int64_t id = token_id(name);
    if (id < 0) throw Error("wordpiece: the vocabulary " + origin_ + " has no " + name + " token");
    return id;
  };
  pad_ = need("[PAD]");
  unk_ = need("[UNK]");
  cls_ = need("[CLS]");
  sep_ = need("[SEP]");
}

BertWordPiece BertWordPiece::from_vocab_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("wordpiece: cannot open the vocabulary '" + path + "'");
  std::vector<std::string> tokens;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    tokens.push_back(line);
  }
  if (tokens.empty()) throw Error("wordpiece: the vocabulary '" + path + "' is empty");
  return BertWordPiece(std::move(tokens), "'" + path + "'");
}

BertWordPiece BertWordPiece::from_captions(const std::vector<std::string>& captions) {
  if (captions.empty()) throw Error("wordpiece: no captions to build a word vocabulary from");
  std::set<std::string> words;
  for (const auto& c : captions)
    for (auto& w : bert_basic_tokenize(c)) words.insert(std::move(w));
  std::vector<std::string> tokens(std::begin(kSpecials), std::end(kSpecials));
  tokens.insert(tokens.end(), words.begin(), words.end());  // no word holds '[': it is punctuation
  return BertWordPiece(std::move(tokens), "of the training captions");
}

int64_t BertWordPiece::token_id(const std::string& token) const {
  const auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

const std::string& BertWordPiece::token(int64_t id) const {
  if (id < 0 || id >= vocab_size())
    throw Error("wordpiece: id " + std::to_string(id) + " is outside the vocabulary " + origin_ + " (" +
                std::to_string(vocab_size()) + " tokens)");
  return tokens_[static_cast<std::size_t>(id)];
}

std::vector<std::string> BertWordPiece::tokenize(const std::string& text) const {
  std::vector<std::string> pieces;
  auto words = [&](const std::string& segment) {
    for (const auto& word : basic_words(segment)) {
      if (word.size() > static_cast<std::size_t>(kMaxWordChars)) {
        pieces.push_back(tokens_[static_cast<std::size_t>(unk_)]);
        continue;
      }
      std::vector<std::string> found;
      std::size_t start = 0;
      while (start < word.size()) {
        std::size_t end = word.size();
        std::string piece;
        for (; end > start; --end) {
          piece = (start > 0 ? "##" : "") + unicode::to_utf8(word.substr(start, end - start));
          if (ids_.count(piece)) break;
        }
        if (end == start) break;
        found.push_back(std::move(piece));
        start = end;
      }
      if (start < word.size())
        pieces.push_back(tokens_[static_cast<std::size_t>(unk_)]);
      else
        pieces.insert(pieces.end(), found.begin(), found.end());
    }
  };
  // The literal special tokens first (leftmost, then longest), as the fast tokenizer's added
  // vocabulary cuts them out of the raw text.
  std::size_t start = 0, i = 0;
  while (i < text.size()) {
    const std::string* hit = nullptr;
    for (const auto& s : specials_)
      if (text.compare(i, s.size(), s) == 0 && (!hit || s.size() > hit->size())) hit = &s;
    if (!hit) {
      ++i;
      continue;
    }
    words(text.substr(start, i - start));
    pieces.push_back(*hit);
    i = start = i + hit->size();
  }
  words(text.substr(start));
  return pieces;
}

std::vector<int64_t> BertWordPiece::encode(const std::string& text) const {
  std::vector<int64_t> ids = {cls_};
  for (const auto& p : tokenize(text)) ids.push_back(ids_.at(p));
  ids.push_back(sep_);
  return ids;
}

torch::Tensor BertWordPiece::encode_batch(const std::vector<std::string>& texts) const {
  std::vector<std::vector<int64_t>> rows;
  std::size_t longest = 0;
  for (const auto& t : texts) {
    rows.push_back(encode(t));
    longest = std::max(longest, rows.back().size());
  }
  torch::Tensor out =
      torch::full({static_cast<int64_t>(rows.size()), static_cast<int64_t>(longest)}, pad_, torch::kInt64);
  auto a = out.accessor<int64_t, 2>();
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t k = 0; k < rows[r].size(); ++k)
      a[static_cast<int64_t>(r)][static_cast<int64_t>(k)] = rows[r][k];
  return out;
}

}  // namespace losatok::data
