// GPT-2 / RoBERTa byte-level BPE, written from the published algorithm (Radford et al. 2019;
// Sennrich et al. 2016): pre-tokenise with GPT-2's regex, map each byte to a printable stand-in,
// merge pairs by rank, look the pieces up.
#include "losatok/data/bpe.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "losatok/core/error.h"
#include "unicode.h"

namespace losatok::data {

using unicode::CharClass;
using unicode::classify;
using unicode::CodePoint;
using unicode::decode_utf8;

std::vector<std::string> gpt2_pretokenize(const std::string& text) {
  const std::vector<CodePoint> cps = decode_utf8(text);
  const std::size_t n = cps.size();
  const auto cls = [&](std::size_t k) { return classify(cps[k].cp); };
  const auto is = [&](std::size_t k, char c) { return k < n && cps[k].cp == c; };
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < n) {
    std::size_t end = i;
    // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive)
    if (is(i, '\'')) {
      if (is(i + 1, 's') || is(i + 1, 't') || is(i + 1, 'm') || is(i + 1, 'd'))
        end = i + 2;
      else if ((is(i + 1, 'r') && is(i + 2, 'e')) || (is(i + 1, 'v') && is(i + 2, 'e')) ||
               (is(i + 1, 'l') && is(i + 2, 'l')))
        end = i + 3;
    }
    // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional space, then a run of one class.
    if (end == i) {
      const std::size_t k = is(i, ' ') ? i + 1 : i;
      if (k < n && cls(k) != CharClass::kSpace) {
        const CharClass c = cls(k);
        end = k;
        while (end < n && cls(end) == c) ++end;
      }
    }
    // '\s+(?!\S)' leaves a run's last space to the next piece unless the text ends; '\s+' takes a
    // lone space before a non-space.
    if (end == i) {
      std::size_t j = i;
      while (j < n && cls(j) == CharClass::kSpace) ++j;
      end = (j == n || j - i == 1) ? j : j - 1;
    }
    const std::size_t from = cps[i].offset, to = end < n ? cps[end].offset : text.size();
    out.push_back(text.substr(from, to - from));
    i = end;
  }
  return out;
}

std::vector<std::string> gpt2_byte_symbols() {
  std::vector<std::string> symbols(256);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    unicode::append_utf8(static_cast<char32_t>(printable ? b : next++), &symbols[b]);
  }
  return symbols;
}

std::vector<std::pair<std::string, std::string>> read_bpe_merges(const std::string& path,
                                                                 const std::string& what) {
  std::ifstream in(path);
  if (!in) throw Error(what + " '" + path + "': cannot read it");
  std::vector<std::pair<std::string, std::string>> merges;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const auto space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos)
      throw Error(what + " '" + path + "' line " + std::to_string(line_no) +
                  ": not two symbols separated by one space");
    merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return merges;
}

ByteLevelBpe::ByteLevelBpe(const std::string& vocab_path, const std::string& merges_path)
    : vocab_path_(vocab_path), merges_path_(merges_path) {
  {
    std::ifstream in(vocab_path);
    if (!in) throw Error("BPE vocabulary '" + vocab_path + "': cannot read it");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
      for (const auto& [token, id] : j.items()) vocab_[token] = id.get<int64_t>();
    } catch (const std::exception& e) {
      throw Error("BPE vocabulary '" + vocab_path + "': not a JSON object of token ids (" +
                  first_line(e.what()) + ")");
    }
    const auto special = [&](const char* name) {
      const auto it = vocab_.find(name);
      if (it == vocab_.end())
        throw Error("BPE vocabulary '" + vocab_path + "' has no " + name + " (not a RoBERTa vocab.json)");
      return it->second;
    };
    bos_ = special("<s>");
    pad_ = special("<pad>");
    eos_ = special("</s>");
    unk_ = special("<unk>");
  }
  for (auto& pair : read_bpe_merges(merges_path, "BPE merges"))
    ranks_.emplace(std::move(pair), static_cast<int>(ranks_.size()));
  byte_symbol_ = gpt2_byte_symbols();
}

std::vector<std::string> ByteLevelBpe::bpe(const std::string& word) const {
  std::vector<std::string> parts;
  for (const CodePoint& c : decode_utf8(word)) parts.push_back(word.substr(c.offset, c.length));
  while (parts.size() > 1) {
    int best = std::numeric_limits<int>::max();
    std::pair<std::string, std::string> best_pair;
    for (std::size_t k = 0; k + 1 < parts.size(); ++k) {
      auto key = std::make_pair(parts[k], parts[k + 1]);
      const auto it = ranks_.find(key);
      if (it != ranks_.end() && it->second < best) {
        best = it->second;
        best_pair = std::move(key);
      }
    }
    if (best == std::numeric_limits<int>::max()) break;
    std::vector<std::string> merged;
    for (std::size_t k = 0; k < parts.size(); ++k) {
      if (k + 1 < parts.size() && parts[k] == best_pair.first && parts[k + 1] == best_pair.second) {
        merged.push_back(parts[k] + parts[k + 1]);
        ++k;
      } else {
        merged.push_back(parts[k]);
      }
    }
    parts = std::move(merged);
  }
  return parts;
}

std::vector<int64_t> ByteLevelBpe::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const std::string& piece : gpt2_pretokenize(text)) {
    std::string mapped;
    for (const char ch : piece) mapped += byte_symbol_[static_cast<unsigned char>(ch)];
    for (const std::string& sym : bpe(mapped)) {
      const auto it = vocab_.find(sym);
      ids.push_back(it == vocab_.end() ? unk_ : it->second);
    }
  }
  return ids;
}

std::vector<int64_t> ByteLevelBpe::encode_padded(const std::string& text, int max_length,
                                                 std::vector<int64_t>* mask) const {
  if (max_length < 2) throw Error("BPE: max_length must be at least 2, not " + std::to_string(max_length));
  std::vector<int64_t> pieces = encode(text);
  if (static_cast<int>(pieces.size()) > max_length - 2) pieces.resize(max_length - 2);
  std::vector<int64_t> ids{bos_};
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  ids.push_back(eos_);
  if (mask) {
    mask->assign(ids.size(), 1);
    mask->resize(max_length, 0);
  }
  ids.resize(max_length, pad_);
  return ids;
}

}  // namespace losatok::data
