// Whisper's tokenizer, written from openai/whisper's tokenizer.py and tiktoken's documented
// behaviour: GPT-2 pre-tokenisation, rank-based byte-pair merging, the special-token layout.
#include "losatok/data/whisper_tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "losatok/core/error.h"
#include "losatok/data/bpe.h"

namespace losatok::data {

namespace {

// whisper/tokenizer.py's LANGUAGES, in its order; large-v3 adds the 100th, yue.
const char* const kLanguageCodes[] = {
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt",  "tr", "pl", "ca", "nl", "ar", "sv", "it", "id",
    "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro",  "da", "hu", "ta", "no", "th", "ur", "hr", "bg",
    "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv",  "bn", "sr", "az", "sl", "kn", "et", "mk", "br",
    "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw",  "gl", "mr", "pa", "si", "km", "sn", "yo", "so",
    "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi",  "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt",
    "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue"};
constexpr int kMaxLanguages = static_cast<int>(sizeof(kLanguageCodes) / sizeof(kLanguageCodes[0]));

std::string pair_key(const std::string& left, const std::string& right) {
  return std::to_string(left.size()) + ':' + left + right;
}

// Strict standard base64 (with '=' padding); false on anything else.
bool base64_decode(const std::string& in, std::string* out) {
  if (in.empty() || in.size() % 4 != 0) return false;
  const auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  out->clear();
  for (size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + k];
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        v[k] = 0;
        ++pad;
      } else if (pad > 0 || (v[k] = value(c)) < 0) {
        return false;
      }
    }
    const uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out->push_back(static_cast<char>(n >> 16));
    if (pad < 2) out->push_back(static_cast<char>((n >> 8) & 0xFF));
    if (pad < 1) out->push_back(static_cast<char>(n & 0xFF));
  }
  return true;
}

// Python's bytes.decode("utf-8", errors="replace"): each maximal invalid subsequence -> U+FFFD.
std::string replace_invalid_utf8(const std::string& s) {
  static const std::string kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out.push_back(s[i++]);
      continue;
    }
    int length = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
    if (b >= 0xC2 && b <= 0xDF) {
      length = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      length = 3;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      length = 4;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    }
    if (length == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    int good = 1;
    for (; good < length && i + good < s.size(); ++good) {
      const auto c = static_cast<unsigned char>(s[i + good]);
      const bool ok = good == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
      if (!ok) break;
    }
    if (good == length) {
      out.append(s, i, length);
    } else {
      out += kReplacement;
    }
    i += good;
  }
  return out;
}

std::vector<std::string> special_layout(int num_languages) {
  std::vector<std::string> names = {"<|endoftext|>", "<|startoftranscript|>"};
  for (int i = 0; i < num_languages; ++i) names.push_back(std::string("<|") + kLanguageCodes[i] + "|>");
  for (const char* name : {"<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
                           "<|nospeech|>", "<|notimestamps|>"})
    names.emplace_back(name);
  for (int i = 0; i <= 1500; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "<|%.2f|>", i * 0.02);
    names.emplace_back(buf);
  }
  return names;
}

void check_languages(const std::string& source, int num_languages) {
  if (num_languages < 0 || num_languages > kMaxLanguages)
    throw Error("Whisper tokenizer '" + source + "': " + std::to_string(num_languages) +
                " languages asked for, whisper knows " + std::to_string(kMaxLanguages) +
                " (n_vocab 51865 -> 99, 51866 -> 100)");
}

// UTF-8 of a GPT-2 byte stand-in string -> the bytes; false when a symbol is not one.
bool symbols_to_bytes(const std::string& token, const std::unordered_map<std::string, char>& inverse,
                      std::string* out) {
  out->clear();
  size_t i = 0;
  while (i < token.size()) {
    const auto b = static_cast<unsigned char>(token[i]);
    const size_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    const auto it = inverse.find(token.substr(i, n));
    if (it == inverse.end()) return false;
    out->push_back(it->second);
    i += n;
  }
  return true;
}

}  // namespace

int WhisperTokenizer::num_languages_for(int64_t n_vocab) {
  return static_cast<int>(n_vocab - 51765 - (multilingual_for(n_vocab) ? 1 : 0));
}

WhisperTokenizer WhisperTokenizer::from_tiktoken(const std::string& path, int64_t n_vocab) {
  return from_tiktoken(path, num_languages_for(n_vocab), multilingual_for(n_vocab));
}

WhisperTokenizer WhisperTokenizer::from_hf(const std::string& dir, int64_t n_vocab) {
  return from_hf(dir, num_languages_for(n_vocab), multilingual_for(n_vocab));
}

WhisperTokenizer WhisperTokenizer::load(const std::string& path, int64_t n_vocab) {
  if (std::filesystem::is_directory(path)) return from_hf(path, n_vocab);
  return from_tiktoken(path, n_vocab);
}

WhisperTokenizer WhisperTokenizer::from_tiktoken(const std::string& path, int num_languages,
                                                 bool multilingual) {
  check_languages(path, num_languages);
  std::ifstream in(path);
  if (!in) throw Error("Whisper tokenizer '" + path + "': cannot read it");
  WhisperTokenizer tok;
  tok.source_ = path;
  tok.num_languages_ = num_languages;
  tok.multilingual_ = multilingual;
  std::string line, bytes;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string token, rank_text, extra;
    fields >> token >> rank_text;
    const auto where = [&] {
      return "Whisper tokenizer '" + path + "' line " + std::to_string(line_no) + ": ";
    };
    if (rank_text.empty() || (fields >> extra)) throw Error(where() + "not \"base64(token) rank\"");
    if (!base64_decode(token, &bytes)) throw Error(where() + "'" + token + "' is not base64");
    if (rank_text.find_first_not_of("0123456789") != std::string::npos || rank_text.size() > 9)
      throw Error(where() + "rank '" + rank_text + "' is not a non-negative integer");
    const int64_t rank = std::stoll(rank_text);
    if (!tok.ranks_.emplace(bytes, rank).second) throw Error(where() + "token listed twice");
    if (static_cast<int64_t>(tok.token_bytes_.size()) <= rank) tok.token_bytes_.resize(rank + 1);
    tok.token_bytes_[rank] = bytes;
  }
  if (tok.ranks_.empty()) throw Error("Whisper tokenizer '" + path + "': no ranks in it");
  if (tok.token_bytes_.size() != tok.ranks_.size())
    throw Error("Whisper tokenizer '" + path + "': ranks are not 0.." +
                std::to_string(tok.ranks_.size() - 1) + " (a rank is missing or repeated)");
  tok.add_specials({});
  return tok;
}

WhisperTokenizer WhisperTokenizer::from_hf(const std::string& dir, int num_languages, bool multilingual) {
  namespace fs = std::filesystem;
  check_languages(dir, num_languages);
  WhisperTokenizer tok;
  tok.source_ = dir;
  tok.num_languages_ = num_languages;
  tok.multilingual_ = multilingual;
  tok.hf_merges_ = true;

  const auto read_json = [](const std::string& path) {
    std::ifstream in(path);
    if (!in) throw Error("Whisper tokenizer '" + path + "': cannot read it");
    try {
      return nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw Error("Whisper tokenizer '" + path + "': not JSON (" + first_line(e.what()) + ")");
    }
  };
  nlohmann::json vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  std::map<std::string, int64_t> added;
  std::string vocab_source;
  const std::string tokenizer_json = (fs::path(dir) / "tokenizer.json").string();
  const std::string vocab_json = (fs::path(dir) / "vocab.json").string();
  if (!fs::exists(vocab_json) && fs::exists(tokenizer_json)) {
    vocab_source = tokenizer_json;
    const nlohmann::json j = read_json(tokenizer_json);
    try {
      vocab = j.at("model").at("vocab");
      for (const auto& m : j.at("model").at("merges")) {
        if (m.is_array()) {
          merges.emplace_back(m.at(0).get<std::string>(), m.at(1).get<std::string>());
        } else {
          const auto s = m.get<std::string>();
          const auto space = s.find(' ');
          if (space == std::string::npos) throw Error("merge '" + s + "' is not two symbols");
          merges.emplace_back(s.substr(0, space), s.substr(space + 1));
        }
      }
      if (j.contains("added_tokens"))
        for (const auto& t : j.at("added_tokens"))
          added[t.at("content").get<std::string>()] = t.at("id").get<int64_t>();
    } catch (const std::exception& e) {
      throw Error("Whisper tokenizer '" + tokenizer_json + "': not a BPE tokenizer.json (" +
                  first_line(e.what()) + ")");
    }
  } else {
    vocab_source = vocab_json;
    vocab = read_json(vocab_json);
    const std::string merges_path = (fs::path(dir) / "merges.txt").string();
    merges = read_bpe_merges(merges_path, "Whisper tokenizer");
    const std::string added_path = (fs::path(dir) / "added_tokens.json").string();
    if (fs::exists(added_path)) {
      const nlohmann::json j = read_json(added_path);
      try {
        for (const auto& [name, id] : j.items()) added[name] = id.get<int64_t>();
      } catch (const std::exception& e) {
        throw Error("Whisper tokenizer '" + added_path + "': not a JSON object of token ids (" +
                    first_line(e.what()) + ")");
      }
    }
  }

  const auto symbols = gpt2_byte_symbols();
  std::unordered_map<std::string, char> inverse;
  for (int b = 0; b < 256; ++b) inverse[symbols[b]] = static_cast<char>(b);
  const auto layout = special_layout(num_languages);
  const std::unordered_map<std::string, int> is_special = [&] {
    std::unordered_map<std::string, int> m;
    for (const auto& name : layout) m[name] = 1;
    return m;
  }();
  std::string bytes;
  if (!vocab.is_object())
    throw Error("Whisper tokenizer '" + vocab_source + "': the vocabulary is not a JSON object");
  for (const auto& [token, id_json] : vocab.items()) {
    if (!id_json.is_number_integer())
      throw Error("Whisper tokenizer '" + vocab_source + "': token '" + token + "' has no integer id");
    const int64_t id = id_json.get<int64_t>();
    if (is_special.count(token)) {
      added[token] = id;
      continue;
    }
    if (!symbols_to_bytes(token, inverse, &bytes))
      throw Error("Whisper tokenizer '" + vocab_source + "': token '" + token +
                  "' is not byte-level BPE symbols");
    if (id < 0 || !tok.ranks_.emplace(bytes, id).second)
      throw Error("Whisper tokenizer '" + vocab_source + "': token '" + token +
                  "' repeated or with a bad id");
    if (static_cast<int64_t>(tok.token_bytes_.size()) <= id) tok.token_bytes_.resize(id + 1);
    tok.token_bytes_[id] = bytes;
  }
  if (tok.ranks_.empty()) throw Error("Whisper tokenizer '" + vocab_source + "': empty vocabulary");
  std::string left, right;
  for (const auto& [a, b] : merges) {
    if (!symbols_to_bytes(a, inverse, &left) || !symbols_to_bytes(b, inverse, &right))
      throw Error("Whisper tokenizer '" + dir + "': merge '" + a + " " + b +
                  "' is not byte-level BPE symbols");
    tok.pair_ranks_.emplace(pair_key(left, right), static_cast<int64_t>(tok.pair_ranks_.size()));
  }
  tok.add_specials(added);
  return tok;
}

void WhisperTokenizer::add_specials(const std::map<std::string, int64_t>& from_files) {
  const auto layout = special_layout(num_languages_);
  int64_t next = static_cast<int64_t>(token_bytes_.size());
  vocab_size_ = next;
  for (const auto& name : layout) {
    const auto it = from_files.find(name);
    const int64_t id = it != from_files.end() ? it->second : next;
    specials_[name] = id;
    ++next;
    vocab_size_ = std::max(vocab_size_, id + 1);
  }
  for (int i = 0; i < num_languages_; ++i) languages_.emplace_back(kLanguageCodes[i]);
  eot_ = specials_.at("<|endoftext|>");
  sot_ = specials_.at("<|startoftranscript|>");
  timestamp_begin_ = specials_.at("<|0.00|>");
  if (eot_ < static_cast<int64_t>(token_bytes_.size()))
    throw Error("Whisper tokenizer '" + source_ + "': <|endoftext|> (" + std::to_string(eot_) +
                ") is inside the text tokens' ids");
}

int64_t WhisperTokenizer::merge_rank(const std::string& left, const std::string& right) const {
  if (hf_merges_) {
    const auto it = pair_ranks_.find(pair_key(left, right));
    return it == pair_ranks_.end() ? -1 : it->second;
  }
  const auto it = ranks_.find(left + right);
  return it == ranks_.end() ? -1 : it->second;
}

std::vector<int64_t> WhisperTokenizer::bpe(const std::string& piece) const {
  if (!hf_merges_) {
    const auto whole = ranks_.find(piece);
    if (whole != ranks_.end()) return {whole->second};
  }
  std::vector<std::string> parts;
  for (const char c : piece) parts.emplace_back(1, c);
  while (parts.size() > 1) {
    int64_t best_rank = std::numeric_limits<int64_t>::max();
    size_t best = parts.size();
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      const int64_t r = merge_rank(parts[i], parts[i + 1]);
      if (r >= 0 && r < best_rank) best_rank = r, best = i;
    }
    if (best == parts.size()) break;
    if (!hf_merges_) {  // tiktoken: the leftmost lowest pair, one at a time
      parts[best] += parts[best + 1];
      parts.erase(parts.begin() + best + 1);
      continue;
    }
    // Hugging Face: every occurrence of the best pair, left to right.
    const std::string left = parts[best], right = parts[best + 1];
    std::vector<std::string> merged;
    for (size_t i = 0; i < parts.size();) {
      if (i + 1 < parts.size() && parts[i] == left && parts[i + 1] == right) {
        merged.push_back(left + right);
        i += 2;
      } else {
        merged.push_back(parts[i++]);
      }
    }
    parts = std::move(merged);
  }
  std::vector<int64_t> ids;
  ids.reserve(parts.size());
  for (const auto& p : parts) {
    const auto it = ranks_.find(p);
    if (it == ranks_.end())
      throw Error("Whisper tokenizer '" + source_ + "': no token for a " + std::to_string(p.size()) +
                  "-byte piece (a byte missing from the vocabulary)");
    ids.push_back(it->second);
  }
  return ids;
}

std::vector<int64_t> WhisperTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const auto& piece : gpt2_pretokenize(text)) {
    const auto piece_ids = bpe(piece);
    ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
  }
  return ids;
}

std::string WhisperTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string bytes;
  for (const int64_t id : ids) {
    if (id >= eot_) continue;
    if (id < 0 || id >= static_cast<int64_t>(token_bytes_.size()))
      throw Error("Whisper tokenizer '" + source_ + "': no token with id " + std::to_string(id));
    bytes += token_bytes_[id];
  }
  return replace_invalid_utf8(bytes);
}

int64_t WhisperTokenizer::special(const std::string& name) const {
  const auto it = specials_.find(name);
  if (it == specials_.end()) throw Error("Whisper tokenizer '" + source_ + "': no special token " + name);
  return it->second;
}

int64_t WhisperTokenizer::language_id(const std::string& code) const {
  if (std::find(languages_.begin(), languages_.end(), code) == languages_.end())
    throw Error("Whisper tokenizer '" + source_ + "': unknown language '" + code + "' (this vocabulary has " +
                std::to_string(languages_.size()) + " languages: en, zh, de, ...)");
  return special("<|" + code + "|>");
}

std::vector<std::string> WhisperTokenizer::language_codes() const {
  return languages_;
}

std::vector<int64_t> WhisperTokenizer::sot_sequence(const std::string& language, const std::string& task,
                                                    bool without_timestamps) const {
  std::vector<int64_t> seq = {sot_};
  if (multilingual_) {
    if (!language.empty()) seq.push_back(language_id(language));
    if (task == "transcribe" || task == "translate")
      seq.push_back(special("<|" + task + "|>"));
    else if (!task.empty())
      throw Error("Whisper tokenizer '" + source_ + "': unknown task '" + task +
                  "' (transcribe or translate)");
  }
  if (without_timestamps) seq.push_back(special("<|notimestamps|>"));
  return seq;
}

std::vector<int64_t> WhisperTokenizer::non_speech_tokens() const {
  // Speaker tags and non-speech annotations ("[DAVID]", "( SPEAKING FOREIGN LANGUAGE )",
  // "♪♪♪") while keeping basic punctuation; the musical symbols U+2669..U+266F share their
  // first UTF-8 bytes, so their first token is safe to suppress even when they are split.
  std::vector<std::string> symbols;
  for (const char c : std::string("\"#()*+/:;<=>@[\\]^_`{|}~")) symbols.emplace_back(1, c);
  for (const char* s : {"「", "」",  "『", "』", "<<",  ">>",  "<<<", ">>>", "--", "---", "-(", "-[",
                        "('", "(\"", "((", "))", "(((", ")))", "[[",  "]]",  "{{", "}}",  "♪♪", "♪♪♪"})
    symbols.emplace_back(s);
  const std::vector<std::string> miscellaneous = {"♩", "♪", "♫", "♬", "♭", "♮", "♯"};
  std::vector<int64_t> result = {encode(" -").at(0), encode(" '").at(0)};
  const auto add = [&](const std::string& symbol, bool always_first) {
    for (const auto& text : {symbol, " " + symbol}) {
      const auto ids = encode(text);
      if (ids.size() == 1 || always_first) result.push_back(ids.at(0));
    }
  };
  for (const auto& s : symbols) add(s, false);
  for (const auto& s : miscellaneous) add(s, true);
  std::sort(result.begin(), result.end());
  result.erase(std::unique(result.begin(), result.end()), result.end());
  return result;
}

std::vector<int64_t> WhisperTokenizer::blank_ids() const {
  auto ids = encode(" ");
  ids.push_back(eot_);
  return ids;
}

}  // namespace losatok::data
