// Hugging Face tokenizer.json byte-level BPE (Qwen2's), written from the tokenizers library's
// documented pipeline: added tokens, normalizer (NFC, Unicode UAX #15), Split pre-tokenizer,
// ByteLevel byte map, BPE merges by rank, ByteLevel decoder.
#include "losatok/data/hf_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/data/bpe.h"
#include "unicode.h"

namespace fs = std::filesystem;

namespace losatok::data {

namespace {

// Invalid bytes travel through NFC as these stand-ins (beyond Unicode, class 0, composing with
// nothing) and come out as the bytes they were.
constexpr char32_t kInvalidByteBase = 0x110000;

void append_utf8(char32_t cp, std::string* out) {
  if (cp >= kInvalidByteBase)
    out->push_back(static_cast<char>(cp - kInvalidByteBase));
  else
    unicode::append_utf8(cp, out);
}

// UTF-8 with each maximal invalid subsequence replaced by U+FFFD (Unicode's "substitution of
// maximal subparts", what Rust's from_utf8_lossy and Python's errors="replace" do).
std::string valid_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  while (i < s.size()) {
    const unsigned char b = byte(i);
    int need = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    }
    std::size_t k = 1;
    bool ok = need > 0;
    for (; ok && k <= static_cast<std::size_t>(need); ++k) {
      if (i + k >= s.size()) {
        ok = false;
        break;
      }
      const unsigned char c = byte(i + k);
      const bool in_range = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
      if (!in_range) {
        ok = false;
        break;
      }
    }
    if (ok) {
      out.append(s, i, need + 1);
      i += need + 1;
    } else {
      out += "\xEF\xBF\xBD";
      i += std::max<std::size_t>(k, 1);  // the lead and the continuation bytes that fitted
    }
  }
  return out;
}

const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

}  // namespace

std::string nfc(const std::string& text) {
  const std::vector<unicode::CodePoint> cps = unicode::decode_utf8(text);
  // Below U+0300 nothing decomposes into something that composes differently: already NFC.
  if (std::all_of(cps.begin(), cps.end(), [](const unicode::CodePoint& c) { return c.cp < 0x300; }))
    return text;
  std::u32string s;
  s.reserve(cps.size());
  for (const auto& c : cps)
    s.push_back(c.cp < 0 ? kInvalidByteBase + static_cast<unsigned char>(text[c.offset])
                         : static_cast<char32_t>(c.cp));
  const std::u32string out = unicode::nfc(s);
  std::string result;
  result.reserve(text.size());
  for (const char32_t c : out) append_utf8(c, &result);
  return result;
}

std::vector<std::string> qwen2_pretokenize(const std::string& text) {
  using unicode::CharClass;
  const std::vector<unicode::CodePoint> cps = unicode::decode_utf8(text);
  const std::size_t n = cps.size();
  std::vector<CharClass> cls(n);
  for (std::size_t k = 0; k < n; ++k) cls[k] = unicode::classify(cps[k].cp);
  const auto is = [&](std::size_t k, int32_t c) { return k < n && cps[k].cp == c; };
  const auto is_newline = [&](std::size_t k) { return is(k, '\r') || is(k, '\n'); };
  // (?i:...) on the contractions' letters: either case; U+017F (long s) folds to s.
  const auto letter = [&](std::size_t k, char lower) {
    return is(k, lower) || is(k, lower - 'a' + 'A') || (lower == 's' && is(k, 0x17F));
  };
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < n) {
    std::size_t end = i;
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (is(i, '\'')) {
      if (letter(i + 1, 's') || letter(i + 1, 't') || letter(i + 1, 'm') || letter(i + 1, 'd'))
        end = i + 2;
      else if ((letter(i + 1, 'r') && letter(i + 2, 'e')) || (letter(i + 1, 'v') && letter(i + 2, 'e')) ||
               (letter(i + 1, 'l') && letter(i + 2, 'l')))
        end = i + 3;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+: a letter run, after one optional character that is no letter,
    // number or line break.
    if (end == i) {
      std::size_t k = i;
      if (cls[i] != CharClass::kLetter && cls[i] != CharClass::kNumber && !is_newline(i) && i + 1 < n &&
          cls[i + 1] == CharClass::kLetter)
        k = i + 1;
      if (cls[k] == CharClass::kLetter) {
        end = k;
        while (end < n && cls[end] == CharClass::kLetter) ++end;
      }
    }
    // \p{N}: one number character.
    if (end == i && cls[i] == CharClass::kNumber) end = i + 1;
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    if (end == i) {
      const std::size_t k = is(i, ' ') && i + 1 < n && cls[i + 1] == CharClass::kOther ? i + 1 : i;
      if (cls[k] == CharClass::kOther) {
        end = k;
        while (end < n && cls[end] == CharClass::kOther) ++end;
        while (is_newline(end)) ++end;
      }
    }
    // \s*[\r\n]+ ends after the run's last line break; \s+(?!\S) leaves a run's last space to
    // the next piece unless the text ends; \s+ takes a lone space before a non-space.
    if (end == i) {
      std::size_t j = i, newline_end = i;
      for (; j < n && cls[j] == CharClass::kSpace; ++j)
        if (is_newline(j)) newline_end = j + 1;
      end = newline_end > i ? newline_end : (j == n || j - i == 1) ? j : j - 1;
    }
    const std::size_t from = cps[i].offset, to = end < n ? cps[end].offset : text.size();
    out.push_back(text.substr(from, to - from));
    i = end;
  }
  return out;
}

namespace {

// A string field (or null, as "") of a JSON object; `where` names it in errors.
std::string string_or_null(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "";
  return j[key].get<std::string>();
}

bool byte_level_without_regex(const nlohmann::json& j) {
  return j.is_object() && j.value("type", "") == "ByteLevel" && !j.value("add_prefix_space", true) &&
         !j.value("use_regex", true);
}

}  // namespace

HfTokenizer HfTokenizer::load(const std::string& path) {
  std::error_code ec;
  const bool is_dir = fs::is_directory(path, ec);
  const std::string file = is_dir ? (fs::path(path) / "tokenizer.json").string() : path;
  if (is_dir && !fs::exists(file, ec)) throw Error("tokenizer folder '" + path + "' has no tokenizer.json");
  HfTokenizer t;
  t.source_ = file;
  const auto fail = [&](const std::string& what) { return Error("tokenizer.json '" + file + "': " + what); };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(file));
  } catch (const nlohmann::json::exception& e) {
    throw fail("not valid JSON (" + first_line(e.what()) + ")");
  }
  try {
    if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
      throw fail("no \"model\" object (not a Hugging Face tokenizer.json)");
    // Normalizer: NFC or none.
    const nlohmann::json& norm = j.value("normalizer", nlohmann::json());
    if (!norm.is_null()) {
      if (norm.value("type", "") != "NFC")
        throw fail("normalizer '" + norm.value("type", std::string("?")) +
                   "' is not supported (NFC or none)");
      t.nfc_ = true;
    }
    // Pre-tokenizer: Qwen2's Split regex, then the byte map.
    const nlohmann::json& pre = j.value("pre_tokenizer", nlohmann::json());
    const bool qwen2_pre =
        pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
        pre["pretokenizers"].size() == 2 && pre["pretokenizers"][0].value("type", "") == "Split" &&
        pre["pretokenizers"][0].value("pattern", nlohmann::json::object()).value("Regex", "") ==
            kQwen2Pattern &&
        pre["pretokenizers"][0].value("behavior", "") == "Isolated" &&
        !pre["pretokenizers"][0].value("invert", false) && byte_level_without_regex(pre["pretokenizers"][1]);
    if (!qwen2_pre)
      throw fail(
          "pre_tokenizer is not Qwen2's (Sequence of Split with its regex, Isolated, then ByteLevel "
          "without prefix space or regex)");
    const nlohmann::json& dec = j.value("decoder", nlohmann::json());
    if (!dec.is_object() || dec.value("type", "") != "ByteLevel") throw fail("decoder is not ByteLevel");
    const nlohmann::json& post = j.value("post_processor", nlohmann::json());
    if (!post.is_null() && post.value("type", "") != "ByteLevel")
      throw fail("post_processor '" + post.value("type", std::string("?")) +
                 "' is not supported (ByteLevel or none: no tokens added around the text)");
    // The model.
    const nlohmann::json& model = j["model"];
    if (model.value("type", "BPE") != "BPE")
      throw fail("model type '" + model.value("type", "") + "' is not BPE");
    if (!model.contains("vocab") || !model["vocab"].is_object()) throw fail("model has no \"vocab\" object");
    if (!model.contains("merges") || !model["merges"].is_array()) throw fail("model has no \"merges\" array");
    if (!string_or_null(model, "unk_token").empty())
      throw fail("unk_token is not supported (a byte-level vocabulary covers every byte)");
    if (!string_or_null(model, "continuing_subword_prefix").empty() ||
        !string_or_null(model, "end_of_word_suffix").empty())
      throw fail("continuing_subword_prefix / end_of_word_suffix are not supported");
    if (model.value("byte_fallback", false)) throw fail("byte_fallback is not supported");
    if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() > 0.0)
      throw fail("BPE dropout is not supported");
    t.ignore_merges_ = model.value("ignore_merges", false);
    for (const auto& [token, id] : model["vocab"].items()) {
      const int64_t v = id.get<int64_t>();
      if (v < 0 || v > std::numeric_limits<int32_t>::max())
        throw fail("vocab id " + std::to_string(v) + " of '" + token + "' is out of range");
      t.vocab_[token] = v;
      t.id_to_token_[v] = token;
      t.vocab_size_ = std::max(t.vocab_size_, v + 1);
    }
    int64_t rank = 0;
    for (const auto& m : model["merges"]) {
      std::string a, b;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const auto space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
          throw fail("merge " + std::to_string(rank) + " '" + s +
                     "' is not two tokens separated by one space");
        a = s.substr(0, space);
        b = s.substr(space + 1);
      } else if (m.is_array() && m.size() == 2) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        throw fail("merge " + std::to_string(rank) + " is neither \"a b\" nor [a, b]");
      }
      const auto ia = t.vocab_.find(a), ib = t.vocab_.find(b), iab = t.vocab_.find(a + b);
      if (ia == t.vocab_.end() || ib == t.vocab_.end() || iab == t.vocab_.end())
        throw fail("merge " + std::to_string(rank) + " ('" + a + "', '" + b +
                   "') has a token outside the vocab");
      const uint64_t key = static_cast<uint64_t>(ia->second) << 32 | static_cast<uint64_t>(ib->second);
      t.merges_.emplace(key, Merge{rank, iab->second});  // a repeated pair keeps its first rank
      ++rank;
    }
    // Added tokens.
    for (const auto& a : j.value("added_tokens", nlohmann::json::array())) {
      AddedToken tok{a.at("content").get<std::string>(), a.at("id").get<int64_t>(), a.value("special", false),
                     a.value("normalized", !a.value("special", false))};
      if (tok.content.empty()) continue;
      if (a.value("single_word", false) || a.value("lstrip", false) || a.value("rstrip", false))
        throw fail("added token '" + tok.content + "': single_word / lstrip / rstrip are not supported");
      if (tok.id < 0 || tok.id > std::numeric_limits<int32_t>::max())
        throw fail("added token '" + tok.content + "' has id " + std::to_string(tok.id));
      t.id_to_token_[tok.id] = tok.content;
      t.vocab_size_ = std::max(t.vocab_size_, tok.id + 1);
      if (tok.normalized && t.nfc_) tok.content = nfc(tok.content);
      t.added_.push_back(std::move(tok));
    }
  } catch (const nlohmann::json::exception& e) {
    throw fail("a field has the wrong type or is missing (" + first_line(e.what()) + ")");
  }
  t.byte_symbol_ = gpt2_byte_symbols();
  for (int b = 0; b < 256; ++b) {
    const auto cps = unicode::decode_utf8(t.byte_symbol_[b]);
    t.symbol_byte_[cps.at(0).cp] = static_cast<uint8_t>(b);
  }
  // tokenizer_config.json: eos / pad.
  const fs::path config = fs::path(file).parent_path() / "tokenizer_config.json";
  if (fs::exists(config, ec)) {
    nlohmann::json c;
    try {
      c = nlohmann::json::parse(read_file(config.string()));
    } catch (const nlohmann::json::exception& e) {
      throw Error("tokenizer_config.json '" + config.string() + "': not valid JSON (" + first_line(e.what()) +
                  ")");
    }
    const auto special_id = [&](const char* key) -> int64_t {
      if (!c.is_object() || !c.contains(key) || c[key].is_null()) return -1;
      const nlohmann::json& v = c[key];
      std::string token;
      if (v.is_string())
        token = v.get<std::string>();
      else if (v.is_object() && v.contains("content") && v["content"].is_string())
        token = v["content"].get<std::string>();
      else
        throw Error("tokenizer_config.json '" + config.string() + "': " + key +
                    " is neither a string nor {\"content\": ...}");
      try {
        return t.token_id(token);
      } catch (const Error&) {
        throw Error("tokenizer_config.json '" + config.string() + "': " + key + " '" + token +
                    "' is not a token of " + file);
      }
    };
    t.eos_id_ = special_id("eos_token");
    t.pad_id_ = special_id("pad_token");
  }
  return t;
}

int64_t HfTokenizer::token_id(const std::string& token) const {
  for (const AddedToken& a : added_)
    if (id_to_token_.at(a.id) == token) return a.id;
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) throw Error("tokenizer '" + source_ + "' has no token '" + token + "'");
  return it->second;
}

bool HfTokenizer::is_special(int64_t id) const {
  for (const AddedToken& a : added_)
    if (a.id == id) return a.special;
  return false;
}

const std::string* HfTokenizer::token_of(int64_t id) const {
  const auto it = id_to_token_.find(id);
  return it == id_to_token_.end() ? nullptr : &it->second;
}

std::vector<int64_t> HfTokenizer::bpe(const std::string& symbols) const {
  if (ignore_merges_)
    if (const auto it = vocab_.find(symbols); it != vocab_.end()) return {it->second};
  std::vector<int64_t> parts;
  for (const auto& c : unicode::decode_utf8(symbols)) {
    // With unk_token null, tokenizers drops a character outside the vocabulary.
    const auto it = vocab_.find(symbols.substr(c.offset, c.length));
    if (it != vocab_.end()) parts.push_back(it->second);
  }
  // Merge the adjacent pair of lowest rank, the leftmost on a tie (tokenizers' (rank, position)
  // priority queue), until no pair is a merge.
  while (parts.size() > 1) {
    int64_t best_rank = std::numeric_limits<int64_t>::max(), best_id = -1;
    std::size_t best_at = 0;
    for (std::size_t k = 0; k + 1 < parts.size(); ++k) {
      const uint64_t key = static_cast<uint64_t>(parts[k]) << 32 | static_cast<uint64_t>(parts[k + 1]);
      const auto it = merges_.find(key);
      if (it != merges_.end() && it->second.rank < best_rank) {
        best_rank = it->second.rank;
        best_id = it->second.id;
        best_at = k;
      }
    }
    if (best_id < 0) break;
    parts[best_at] = best_id;
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
  }
  return parts;
}

std::vector<int64_t> HfTokenizer::encode(const std::string& text, bool parse_special) const {
  // Leftmost-longest literal matches of the added tokens with `normalized` == `want_normalized`
  // in `s`; calls on_text for the text between them and on_token for each match.
  const auto split = [&](const std::string& s, bool want_normalized, const auto& on_text,
                         const auto& on_token) {
    std::size_t start = 0, i = 0;
    while (i < s.size()) {
      const AddedToken* best = nullptr;
      for (const AddedToken& a : added_) {
        if (a.normalized != want_normalized || (a.special && !parse_special)) continue;
        if (s.compare(i, a.content.size(), a.content) == 0 &&
            (!best || a.content.size() > best->content.size()))
          best = &a;
      }
      if (!best) {
        ++i;
        continue;
      }
      if (i > start) on_text(s.substr(start, i - start));
      on_token(best->id);
      i += best->content.size();
      start = i;
    }
    if (start < s.size()) on_text(s.substr(start));
  };
  std::vector<int64_t> ids;
  const auto push_id = [&](int64_t id) { ids.push_back(id); };
  const auto encode_text = [&](const std::string& s) {
    for (const std::string& piece : qwen2_pretokenize(s)) {
      std::string symbols;
      for (const char ch : piece) symbols += byte_symbol_[static_cast<unsigned char>(ch)];
      for (const int64_t id : bpe(symbols)) ids.push_back(id);
    }
  };
  split(
      text, /*want_normalized=*/false,
      [&](const std::string& raw) {
        split(nfc_ ? nfc(raw) : raw, /*want_normalized=*/true, encode_text, push_id);
      },
      push_id);
  return ids;
}

std::string HfTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::string bytes;
  for (const int64_t id : ids) {
    const std::string* token = token_of(id);
    if (!token)
      throw Error("tokenizer '" + source_ + "': id " + std::to_string(id) +
                  " is neither in the vocab nor added");
    if (skip_special && is_special(id)) continue;
    std::string mapped;
    bool all_mapped = true;
    for (const auto& c : unicode::decode_utf8(*token)) {
      const auto it = symbol_byte_.find(c.cp);
      if (it == symbol_byte_.end()) {
        all_mapped = false;
        break;
      }
      mapped.push_back(static_cast<char>(it->second));
    }
    bytes += all_mapped ? mapped : *token;
  }
  return valid_utf8(bytes);
}

}  // namespace losatok::data
