// Whisper's English and basic text normalisers, ported from the rules of openai/whisper's
// normalizers/english.py and basic.py (each regular expression there is one scan below, with
// Python `re`'s Unicode \w, \d, \s and \b), over the Unicode data of src/data/unicode.h.
#include "losatok/eval/text_normalizer.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_set>
#include <vector>

#include "../data/unicode.h"
#include "losatok/core/error.h"

namespace losatok::eval {

namespace {

namespace unicode = data::unicode;
using unicode::from_utf8;
using unicode::to_utf8;

// The general-category classes the normalisers and Python `re` test.
enum CharClass { kOther, kNonSpacingMark, kMark, kSymbol, kPunct, kNumber, kDecimal, kLetter };

CharClass char_class(char32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return kLetter;
    if (cp >= '0' && cp <= '9') return kDecimal;
  }
  const unicode::Category c = unicode::category(cp);
  switch (c) {
    case unicode::Category::kMn: return kNonSpacingMark;
    case unicode::Category::kMc:
    case unicode::Category::kMe: return kMark;
    case unicode::Category::kNd: return kDecimal;
    case unicode::Category::kNl:
    case unicode::Category::kNo: return kNumber;
    default: break;
  }
  const char major = unicode::major_category(c);
  return major == 'S' ? kSymbol : major == 'P' ? kPunct : major == 'L' ? kLetter : kOther;
}

// Python `re`'s \w, \d, \s on str.
bool is_word(char32_t c) {
  const CharClass k = char_class(c);
  return k == kLetter || k == kNumber || k == kDecimal || c == U'_';
}
bool is_digit(char32_t c) {
  return char_class(c) == kDecimal;
}
bool is_ascii_digit(char32_t c) {
  return c >= U'0' && c <= U'9';
}
bool is_space(char32_t c) {  // str.isspace(): White_Space and the separators U+001C..U+001F
  return unicode::is_white_space(c) || (c >= 0x1C && c <= 0x1F);
}

bool boundary(const std::u32string& s, size_t i) {
  const bool left = i > 0 && is_word(s[i - 1]);
  const bool right = i < s.size() && is_word(s[i]);
  return left != right;
}

bool starts_with(const std::u32string& s, size_t i, const std::u32string& lit) {
  return s.compare(i, lit.size(), lit) == 0 && i + lit.size() <= s.size();
}

// [<\[][^>\]]*[>\]] and \(([^)]+?)\) -> "": bracketed and parenthesised words.
std::u32string remove_bracketed(const std::u32string& s) {
  std::u32string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == U'<' || s[i] == U'[') {
      size_t j = i + 1;
      while (j < s.size() && s[j] != U'>' && s[j] != U']') ++j;
      if (j < s.size()) {
        i = j;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  std::u32string out2;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == U'(' && i + 1 < out.size() && out[i + 1] != U')') {
      const size_t j = out.find(U')', i + 1);
      if (j != std::u32string::npos) {
        i = j;
        continue;
      }
    }
    out2.push_back(out[i]);
  }
  return out2;
}

// \s+ -> " "
std::u32string collapse_spaces(const std::u32string& s) {
  std::u32string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (is_space(s[i])) {
      while (i + 1 < s.size() && is_space(s[i + 1])) ++i;
      out.push_back(U' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// str.split(): the non-empty runs between whitespace.
std::vector<std::u32string> split_words(const std::u32string& s) {
  std::vector<std::u32string> words;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) words.push_back(s.substr(i, j - i));
    i = j;
  }
  return words;
}

std::u32string join(const std::vector<std::u32string>& words) {
  std::u32string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i) out.push_back(U' ');
    out += words[i];
  }
  return out;
}

// A literal with optional \b on either side, replaced left to right without overlaps.
struct Replacer {
  bool lead;
  std::u32string literal;
  bool trail;
  std::u32string replacement;
};

std::u32string replace_all(const std::u32string& s, const Replacer& r) {
  std::u32string out;
  size_t i = 0;
  while (i < s.size()) {
    if ((!r.lead || boundary(s, i)) && starts_with(s, i, r.literal) &&
        (!r.trail || boundary(s, i + r.literal.size()))) {
      out += r.replacement;
      i += r.literal.size();
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

std::u32string symbols_and_diacritics32(const std::u32string& s, const std::u32string& keep) {
  std::u32string out;
  for (const char32_t c : unicode::nfkd(s)) {
    if (keep.find(c) != std::u32string::npos) {
      out.push_back(c);
      continue;
    }
    // Letters NFKD does not split into base + mark.
    switch (c) {
      case U'œ': out += U"oe"; continue;
      case U'Œ': out += U"OE"; continue;
      case U'ø': out += U"o"; continue;
      case U'Ø': out += U"O"; continue;
      case U'æ': out += U"ae"; continue;
      case U'Æ': out += U"AE"; continue;
      case U'ß': out += U"ss"; continue;
      case U'ẞ': out += U"SS"; continue;
      case U'đ':
      case U'ð': out += U"d"; continue;
      case U'Đ':
      case U'Ð': out += U"D"; continue;
      case U'þ':
      case U'Þ': out += U"th"; continue;
      case U'ł': out += U"l"; continue;
      case U'Ł': out += U"L"; continue;
      default: break;
    }
    const char32_t k = char_class(c);
    if (k == kNonSpacingMark) continue;
    out.push_back(k == kMark || k == kSymbol || k == kPunct ? U' ' : c);
  }
  return out;
}

std::u32string symbols32(const std::u32string& s) {
  std::u32string out;
  for (const char32_t c : unicode::nfkc(s)) {
    const char32_t k = char_class(c);
    out.push_back(k == kNonSpacingMark || k == kMark || k == kSymbol || k == kPunct ? U' ' : c);
  }
  return out;
}

// ---- EnglishNumberNormalizer ----

// Non-negative integers of any size as decimal strings (multipliers reach 10^33).
std::string big_add(const std::string& a, const std::string& b) {
  std::string out;
  int carry = 0;
  for (size_t i = 0; i < std::max(a.size(), b.size()) || carry; ++i) {
    int d = carry;
    if (i < a.size()) d += a[a.size() - 1 - i] - '0';
    if (i < b.size()) d += b[b.size() - 1 - i] - '0';
    out.push_back(static_cast<char>('0' + d % 10));
    carry = d / 10;
  }
  std::reverse(out.begin(), out.end());
  const size_t nz = out.find_first_not_of('0');
  return nz == std::string::npos ? "0" : out.substr(nz);
}
int last_digits(const std::string& a, size_t n) {  // a % 10^n for small n
  return std::stoi(a.size() > n ? a.substr(a.size() - n) : a);
}

// Python's Fraction(s) for the decimals the normaliser builds ("12", "1.5", ".5", "3."),
// as digits and the count of them after the point; nullopt where Fraction raises.
struct Decimal {
  std::string digits;
  size_t scale;
};
std::optional<Decimal> to_fraction(const std::u32string& s) {
  Decimal d{"", 0};
  bool point = false, any = false;
  for (const char32_t c : s) {
    if (c == U'.' && !point) {
      point = true;
    } else if (is_digit(c)) {
      d.digits.push_back(static_cast<char>('0' + unicode::decimal_value(c)));
      if (point) ++d.scale;
      any = true;
    } else {
      return std::nullopt;
    }
  }
  if (!any) return std::nullopt;
  return d;
}
// digits * 10^-scale * 10^k as an integer string, or nullopt when it is not an integer.
std::optional<std::string> times_power(const Decimal& d, size_t k) {
  std::string digits = d.digits;
  size_t scale = d.scale;
  while (scale > 0 && digits.back() == '0') digits.pop_back(), --scale;
  if (scale > k) return std::nullopt;
  digits.append(k - scale, '0');
  return big_add(digits, "0");
}

struct NumberWords {
  std::unordered_set<std::u32string> zeros = {U"o", U"oh", U"zero"};
  std::unordered_map<std::u32string, int> ones, tens;
  std::unordered_map<std::u32string, std::pair<int, std::u32string>> ones_suffixed, tens_suffixed;
  std::unordered_map<std::u32string, size_t> multipliers;  // name -> power of ten
  std::unordered_map<std::u32string, std::pair<size_t, std::u32string>> multipliers_suffixed;
  std::unordered_map<std::u32string, std::u32string> preceding_prefixers = {
      {U"minus", U"-"}, {U"negative", U"-"}, {U"plus", U"+"}, {U"positive", U"+"}};
  std::unordered_map<std::u32string, std::u32string> following_prefixers = {
      {U"pound", U"£"},  {U"pounds", U"£"},  {U"euro", U"€"}, {U"euros", U"€"},
      {U"dollar", U"$"}, {U"dollars", U"$"}, {U"cent", U"¢"}, {U"cents", U"¢"}};
  std::u32string prefixes = U"-+£€$¢";
  std::unordered_set<std::u32string> specials = {U"and", U"double", U"triple", U"point"};
  std::unordered_set<std::u32string> words;

  NumberWords() {
    const char32_t* names[] = {U"one",     U"two",       U"three",    U"four",     U"five",
                               U"six",     U"seven",     U"eight",    U"nine",     U"ten",
                               U"eleven",  U"twelve",    U"thirteen", U"fourteen", U"fifteen",
                               U"sixteen", U"seventeen", U"eighteen", U"nineteen"};
    for (int i = 0; i < 19; ++i) {
      const std::u32string name = names[i];
      const int v = i + 1;
      ones[name] = v;
      ones_suffixed[name == U"six" ? U"sixes" : name + U"s"] = {v, U"s"};
      if (v > 3 && v != 5 && v != 12) ones_suffixed[name + (name.back() == U't' ? U"h" : U"th")] = {v, U"th"};
    }
    ones_suffixed[U"zeroth"] = {0, U"th"};
    ones_suffixed[U"first"] = {1, U"st"};
    ones_suffixed[U"second"] = {2, U"nd"};
    ones_suffixed[U"third"] = {3, U"rd"};
    ones_suffixed[U"fifth"] = {5, U"th"};
    ones_suffixed[U"twelfth"] = {12, U"th"};
    const char32_t* tens_names[] = {U"twenty", U"thirty",  U"forty",  U"fifty",
                                    U"sixty",  U"seventy", U"eighty", U"ninety"};
    for (int i = 0; i < 8; ++i) {
      const std::u32string name = tens_names[i];
      const std::u32string stem = name.substr(0, name.size() - 1);  // the one 'y' is last
      tens[name] = 20 + 10 * i;
      tens_suffixed[stem + U"ies"] = {20 + 10 * i, U"s"};
      tens_suffixed[stem + U"ieth"] = {20 + 10 * i, U"th"};
    }
    const std::pair<const char32_t*, size_t> mults[] = {
        {U"hundred", 2},     {U"thousand", 3},     {U"million", 6},      {U"billion", 9},
        {U"trillion", 12},   {U"quadrillion", 15}, {U"quintillion", 18}, {U"sextillion", 21},
        {U"septillion", 24}, {U"octillion", 27},   {U"nonillion", 30},   {U"decillion", 33}};
    for (const auto& [name, power] : mults) {
      multipliers[name] = power;
      multipliers_suffixed[std::u32string(name) + U"s"] = {power, U"s"};
      multipliers_suffixed[std::u32string(name) + U"th"] = {power, U"th"};
    }
    for (const auto& z : zeros) words.insert(z);
    for (const auto& m : {ones, tens})
      for (const auto& [k, v] : m) words.insert(k);
    for (const auto& m : {ones_suffixed, tens_suffixed})
      for (const auto& [k, v] : m) words.insert(k);
    for (const auto& [k, v] : multipliers) words.insert(k);
    for (const auto& [k, v] : multipliers_suffixed) words.insert(k);
    for (const auto& m : {preceding_prefixers, following_prefixers})
      for (const auto& [k, v] : m) words.insert(k);
    words.insert(U"per");
    words.insert(U"percent");
    for (const auto& k : specials) words.insert(k);
  }
  bool is_decimal_word(const std::u32string& w) const {
    return zeros.count(w) || ones.count(w) || tens.count(w);
  }
};

const NumberWords& number_words() {
  static const NumberWords words;
  return words;
}

std::u32string ascii32(const std::string& s) {
  return std::u32string(s.begin(), s.end());
}
std::string narrow(const std::u32string& s) {
  return to_utf8(s);
}

// ^\d+(\.\d+)?$
bool is_numeric(const std::u32string& s) {
  size_t i = 0;
  while (i < s.size() && is_digit(s[i])) ++i;
  if (i == 0) return false;
  if (i == s.size()) return true;
  if (s[i] != U'.' || i + 1 == s.size()) return false;
  for (++i; i < s.size(); ++i)
    if (!is_digit(s[i])) return false;
  return true;
}

// The number being read: nothing, an integer (decimal digits) or a string of digits.
struct Value {
  enum Kind { kNone, kInt, kStr } kind = kNone;
  std::u32string text;
  bool none() const { return kind == kNone; }
  bool is_int() const { return kind == kInt; }
  bool is_str() const { return kind == kStr; }
  std::string digits() const { return narrow(text); }
  // Python's str(value or ""): None and 0 are falsy.
  std::u32string or_empty() const { return kind == kNone || (kind == kInt && text == U"0") ? U"" : text; }
  static Value integer(const std::string& d) { return {kInt, ascii32(d)}; }
  static Value str(const std::u32string& s) { return {kStr, s}; }
};

std::vector<std::u32string> process_words(const std::vector<std::u32string>& words) {
  const NumberWords& W = number_words();
  std::vector<std::u32string> out;
  std::optional<std::u32string> prefix;
  Value value;
  bool skip = false;
  const auto output = [&](const std::u32string& result) {
    out.push_back(prefix ? *prefix + result : result);
    value = Value();
    prefix.reset();
  };
  const auto in = [](const auto& map, const std::u32string* w) { return w != nullptr && map.count(*w) > 0; };
  for (size_t idx = 0; idx < words.size(); ++idx) {
    if (skip) {
      skip = false;
      continue;
    }
    const std::u32string* prev = idx > 0 ? &words[idx - 1] : nullptr;
    const std::u32string& current = words[idx];
    const std::u32string* next = idx + 1 < words.size() ? &words[idx + 1] : nullptr;
    const bool next_is_numeric = next != nullptr && is_numeric(*next);
    const bool has_prefix = W.prefixes.find(current[0]) != std::u32string::npos;
    const std::u32string without_prefix = has_prefix ? current.substr(1) : current;

    if (is_numeric(without_prefix)) {
      // Arabic numbers, possibly with a sign or currency and decimals.
      const Decimal f = *to_fraction(without_prefix);
      if (!value.none()) {
        if (value.is_str() && value.text.back() == U'.') {  // decimals, IP address parts
          value.text += current;
          continue;
        }
        output(value.text);
      }
      if (has_prefix) prefix = current.substr(0, 1);
      const auto integer = times_power(f, 0);
      value = integer ? Value::integer(*integer) : Value::str(without_prefix);
    } else if (!W.words.count(current)) {
      if (!value.none()) output(value.text);
      output(current);
    } else if (W.zeros.count(current)) {
      value = Value::str(value.or_empty() + U"0");
    } else if (W.ones.count(current)) {
      const int ones = W.ones.at(current);
      if (value.none()) {
        value = Value::integer(std::to_string(ones));
      } else if (value.is_str() || in(W.ones, prev)) {
        if (in(W.tens, prev) && ones < 10)  // replace the tens' zero with the digit
          value = Value::str(value.text.substr(0, value.text.size() - 1) + ascii32(std::to_string(ones)));
        else
          value = Value::str(value.text + ascii32(std::to_string(ones)));
      } else if (last_digits(value.digits(), ones < 10 ? 1 : 2) == 0) {
        value = Value::integer(big_add(value.digits(), std::to_string(ones)));
      } else {
        value = Value::str(value.text + ascii32(std::to_string(ones)));
      }
    } else if (W.ones_suffixed.count(current)) {
      // Ordinal or plural: the number ends here.
      const auto& [ones, suffix] = W.ones_suffixed.at(current);
      if (value.none()) {
        output(ascii32(std::to_string(ones)) + suffix);
      } else if (value.is_str() || in(W.ones, prev)) {
        if (in(W.tens, prev) && ones < 10)
          output(value.text.substr(0, value.text.size() - 1) + ascii32(std::to_string(ones)) + suffix);
        else
          output(value.text + ascii32(std::to_string(ones)) + suffix);
      } else if (last_digits(value.digits(), ones < 10 ? 1 : 2) == 0) {
        output(ascii32(big_add(value.digits(), std::to_string(ones))) + suffix);
      } else {
        output(value.text + ascii32(std::to_string(ones)) + suffix);
      }
      value = Value();
    } else if (W.tens.count(current)) {
      const int tens = W.tens.at(current);
      if (value.none()) {
        value = Value::integer(std::to_string(tens));
      } else if (value.is_str()) {
        value = Value::str(value.text + ascii32(std::to_string(tens)));
      } else if (last_digits(value.digits(), 2) == 0) {
        value = Value::integer(big_add(value.digits(), std::to_string(tens)));
      } else {
        value = Value::str(value.text + ascii32(std::to_string(tens)));
      }
    } else if (W.tens_suffixed.count(current)) {
      const auto& [tens, suffix] = W.tens_suffixed.at(current);
      if (value.none()) {
        output(ascii32(std::to_string(tens)) + suffix);
      } else if (value.is_str()) {
        output(value.text + ascii32(std::to_string(tens)) + suffix);
      } else if (last_digits(value.digits(), 2) == 0) {
        output(ascii32(big_add(value.digits(), std::to_string(tens))) + suffix);
      } else {
        output(value.text + ascii32(std::to_string(tens)) + suffix);
      }
    } else if (W.multipliers.count(current)) {
      const size_t power = W.multipliers.at(current);
      const std::string multiplier = "1" + std::string(power, '0');
      if (value.none()) {
        value = Value::integer(multiplier);
      } else if (value.is_str() || value.text == U"0") {
        const auto f = to_fraction(value.text);
        const auto p = f ? times_power(*f, power) : std::nullopt;
        if (p) {
          value = Value::integer(*p);
        } else {
          output(value.text);
          value = Value::integer(multiplier);
        }
      } else {
        const std::string d = value.digits();
        const std::string before = d.size() > 3 ? d.substr(0, d.size() - 3) + "000" : "0";
        const int residual = last_digits(d, 3);
        value = Value::integer(
            big_add(before, residual == 0 ? "0" : std::to_string(residual) + std::string(power, '0')));
      }
    } else if (W.multipliers_suffixed.count(current)) {
      const auto& [power, suffix] = W.multipliers_suffixed.at(current);
      const std::string multiplier = "1" + std::string(power, '0');
      if (value.none()) {
        output(ascii32(multiplier) + suffix);
      } else if (value.is_str()) {
        const auto f = to_fraction(value.text);
        const auto p = f ? times_power(*f, power) : std::nullopt;
        if (p) {
          output(ascii32(*p) + suffix);
        } else {
          output(value.text);
          output(ascii32(multiplier) + suffix);
        }
      } else {
        const std::string d = value.digits();
        const std::string before = d.size() > 3 ? d.substr(0, d.size() - 3) + "000" : "0";
        const int residual = last_digits(d, 3);
        output(ascii32(big_add(before,
                               residual == 0 ? "0" : std::to_string(residual) + std::string(power, '0'))) +
               suffix);
      }
      value = Value();
    } else if (W.preceding_prefixers.count(current)) {
      // minus / plus apply only before a number.
      if (!value.none()) output(value.text);
      if (in(W.words, next) || next_is_numeric)
        prefix = W.preceding_prefixers.at(current);
      else
        output(current);
    } else if (W.following_prefixers.count(current)) {
      // dollars / cents apply only after a number.
      if (!value.none()) {
        prefix = W.following_prefixers.at(current);
        output(value.text);
      } else {
        output(current);
      }
    } else if (current == U"per" || current == U"percent") {
      if (value.none()) {
        output(current);
      } else if (current == U"percent") {
        output(value.text + U"%");
      } else if (next != nullptr && *next == U"cent") {
        output(value.text + U"%");
        skip = true;
      } else {
        output(value.text);
        output(current);
      }
    } else {  // and, double, triple, point
      if (!in(W.words, next) && !next_is_numeric) {
        if (!value.none()) output(value.text);
        output(current);
      } else if (current == U"and") {
        // "and" after hundreds, thousands, ... is dropped.
        if (!in(W.multipliers, prev)) {
          if (!value.none()) output(value.text);
          output(current);
        }
      } else if (current == U"double" || current == U"triple") {
        if (in(W.ones, next) || in(W.zeros, next)) {
          const int repeats = current == U"double" ? 2 : 3;
          const std::u32string digit = ascii32(std::to_string(W.ones.count(*next) ? W.ones.at(*next) : 0));
          std::u32string text = value.or_empty();
          for (int r = 0; r < repeats; ++r) text += digit;
          value = Value::str(text);
          skip = true;
        } else {
          if (!value.none()) output(value.text);
          output(current);
        }
      } else if (W.is_decimal_word(*next) || next_is_numeric) {  // point
        value = Value::str(value.or_empty() + U".");
      }
    }
  }
  if (!value.none()) output(value.text);
  return out;
}

bool is_lower_ascii(char32_t c) {
  return c >= U'a' && c <= U'z';
}

std::u32string preprocess_numbers(const std::u32string& s) {
  const NumberWords& W = number_words();
  // "<number> and a half" -> "<number> point five": split at \band\s+a\s+half\b.
  std::vector<std::u32string> segments;
  size_t start = 0, i = 0;
  const auto match_half = [&](size_t at) -> size_t {  // the match's end, or 0
    if (!boundary(s, at) || !starts_with(s, at, U"and")) return 0;
    size_t j = at + 3;
    if (j >= s.size() || !is_space(s[j])) return 0;
    while (j < s.size() && is_space(s[j])) ++j;
    if (!starts_with(s, j, U"a")) return 0;
    ++j;
    if (j >= s.size() || !is_space(s[j])) return 0;
    while (j < s.size() && is_space(s[j])) ++j;
    if (!starts_with(s, j, U"half") || !boundary(s, j + 4)) return 0;
    return j + 4;
  };
  while (i < s.size()) {
    if (const size_t end = match_half(i)) {
      segments.push_back(s.substr(start, i - start));
      start = i = end;
    } else {
      ++i;
    }
  }
  segments.push_back(s.substr(start));
  std::vector<std::u32string> results;
  for (size_t k = 0; k < segments.size(); ++k) {
    const auto words = split_words(segments[k]);
    if (words.empty()) continue;
    results.push_back(segments[k]);
    if (k + 1 == segments.size()) continue;
    const std::u32string& last = words.back();
    results.push_back(W.is_decimal_word(last) || W.multipliers.count(last) ? U"point five" : U"and a half");
  }
  std::u32string t = join(results);

  // A space at letter/digit boundaries, then none before a suffix (1 st -> 1st).
  const auto split_pairs = [](const std::u32string& x, auto first, auto second) {
    std::u32string out;
    size_t i = 0;
    while (i < x.size()) {
      if (i + 1 < x.size() && first(x[i]) && second(x[i + 1])) {
        out.push_back(x[i]);
        out.push_back(U' ');
        out.push_back(x[i + 1]);
        i += 2;
      } else {
        out.push_back(x[i++]);
      }
    }
    return out;
  };
  t = split_pairs(t, is_lower_ascii, is_ascii_digit);
  t = split_pairs(t, is_ascii_digit, is_lower_ascii);
  std::u32string out;
  i = 0;
  while (i < t.size()) {
    if (is_ascii_digit(t[i]) && i + 1 < t.size() && is_space(t[i + 1])) {
      size_t j = i + 1;
      while (j < t.size() && is_space(t[j])) ++j;
      bool matched = false;
      for (const std::u32string suffix : {U"st", U"nd", U"rd", U"th", U"s"}) {
        if (starts_with(t, j, suffix) && boundary(t, j + suffix.size())) {
          out.push_back(t[i]);
          out += suffix;
          i = j + suffix.size();
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    out.push_back(t[i++]);
  }
  return out;
}

bool is_currency(char32_t c) {
  return c == U'€' || c == U'£' || c == U'$';
}

std::u32string postprocess_numbers(const std::u32string& s) {
  // "$2 and ¢7" -> "$2.07": ([€£$])([0-9]+) (?:and )?¢([0-9]{1,2})\b
  const auto cents_at = [&](const std::u32string& x, size_t j, size_t* end) -> int {  // -1: no match
    size_t k = j;
    while (k < x.size() && k < j + 2 && is_ascii_digit(x[k])) ++k;
    for (; k > j; --k)
      if (boundary(x, k)) {
        *end = k;
        return std::stoi(narrow(x.substr(j, k - j)));
      }
    return -1;
  };
  std::u32string a;
  size_t i = 0;
  while (i < s.size()) {
    if (is_currency(s[i])) {
      size_t j = i + 1;
      while (j < s.size() && is_ascii_digit(s[j])) ++j;
      if (j > i + 1 && j < s.size() && s[j] == U' ') {
        size_t end = 0;
        int cents = -1;
        for (const std::u32string middle : {U"and ¢", U"¢"}) {
          if (starts_with(s, j + 1, middle) && (cents = cents_at(s, j + 1 + middle.size(), &end)) >= 0) break;
        }
        if (cents >= 0) {
          a += s.substr(i, j - i) + U"." +
               ascii32(cents < 10 ? "0" + std::to_string(cents) : std::to_string(cents));
          i = end;
          continue;
        }
      }
    }
    a.push_back(s[i++]);
  }
  // [€£$]0.([0-9]{1,2})\b -> ¢cents (the '.' is any character but a newline)
  std::u32string b;
  i = 0;
  while (i < a.size()) {
    size_t end = 0;
    int cents = -1;
    if (is_currency(a[i]) && i + 2 < a.size() && a[i + 1] == U'0' && a[i + 2] != U'\n' &&
        (cents = cents_at(a, i + 3, &end)) >= 0) {
      b += U"¢" + ascii32(std::to_string(cents));
      i = end;
      continue;
    }
    b.push_back(a[i++]);
  }
  // \b1(s?)\b -> one\1
  std::u32string c;
  i = 0;
  while (i < b.size()) {
    if (b[i] == U'1' && boundary(b, i)) {
      if (i + 1 < b.size() && b[i + 1] == U's' && boundary(b, i + 2)) {
        c += U"ones";
        i += 2;
        continue;
      }
      if (boundary(b, i + 1)) {
        c += U"one";
        ++i;
        continue;
      }
    }
    c.push_back(b[i++]);
  }
  return c;
}

std::u32string normalize_numbers32(const std::u32string& s) {
  return postprocess_numbers(join(process_words(split_words(preprocess_numbers(s)))));
}

std::vector<Replacer> english_replacers() {
  std::vector<Replacer> r;
  const std::pair<const char32_t*, const char32_t*> words[] = {// common contractions
                                                               {U"won't", U"will not"},
                                                               {U"can't", U"can not"},
                                                               {U"let's", U"let us"},
                                                               {U"ain't", U"aint"},
                                                               {U"y'all", U"you all"},
                                                               {U"wanna", U"want to"},
                                                               {U"gotta", U"got to"},
                                                               {U"gonna", U"going to"},
                                                               {U"i'ma", U"i am going to"},
                                                               {U"imma", U"i am going to"},
                                                               {U"woulda", U"would have"},
                                                               {U"coulda", U"could have"},
                                                               {U"shoulda", U"should have"},
                                                               {U"ma'am", U"madam"},
                                                               // titles and prefixes
                                                               {U"mr", U"mister "},
                                                               {U"mrs", U"missus "},
                                                               {U"st", U"saint "},
                                                               {U"dr", U"doctor "},
                                                               {U"prof", U"professor "},
                                                               {U"capt", U"captain "},
                                                               {U"gov", U"governor "},
                                                               {U"ald", U"alderman "},
                                                               {U"gen", U"general "},
                                                               {U"sen", U"senator "},
                                                               {U"rep", U"representative "},
                                                               {U"pres", U"president "},
                                                               {U"rev", U"reverend "},
                                                               {U"hon", U"honorable "},
                                                               {U"asst", U"assistant "},
                                                               {U"assoc", U"associate "},
                                                               {U"lt", U"lieutenant "},
                                                               {U"col", U"colonel "},
                                                               {U"jr", U"junior "},
                                                               {U"sr", U"senior "},
                                                               {U"esq", U"esquire "}};
  for (const auto& [from, to] : words) r.push_back({true, from, true, to});
  const std::pair<const char32_t*, const char32_t*> endings[] = {// perfect tenses ("'s done" is ambiguous)
                                                                 {U"'d been", U" had been"},
                                                                 {U"'s been", U" has been"},
                                                                 {U"'d gone", U" had gone"},
                                                                 {U"'s gone", U" has gone"},
                                                                 {U"'d done", U" had done"},
                                                                 {U"'s got", U" has got"},
                                                                 // general contractions
                                                                 {U"n't", U" not"},
                                                                 {U"'re", U" are"},
                                                                 {U"'s", U" is"},
                                                                 {U"'d", U" would"},
                                                                 {U"'ll", U" will"},
                                                                 {U"'t", U" not"},
                                                                 {U"'ve", U" have"},
                                                                 {U"'m", U" am"}};
  for (const auto& [from, to] : endings) r.push_back({false, from, true, to});
  return r;
}

}  // namespace

std::string nfkd(const std::string& text) {
  return to_utf8(unicode::nfkd(from_utf8(text)));
}
std::string nfkc(const std::string& text) {
  return to_utf8(unicode::nfkc(from_utf8(text)));
}
std::string unicode_lower(const std::string& text) {
  return to_utf8(unicode::lower(from_utf8(text)));
}

std::string remove_symbols_and_diacritics(const std::string& text, const std::string& keep) {
  return to_utf8(symbols_and_diacritics32(from_utf8(text), from_utf8(keep)));
}

std::string remove_symbols(const std::string& text) {
  return to_utf8(symbols32(from_utf8(text)));
}

std::string normalize_english_numbers(const std::string& text) {
  return to_utf8(normalize_numbers32(from_utf8(text)));
}

EnglishTextNormalizer::EnglishTextNormalizer(const std::string& spelling_path) {
  if (spelling_path.empty()) return;
  std::ifstream in(spelling_path);
  if (!in) throw Error("English spelling map '" + spelling_path + "': cannot read it");
  try {
    const auto j = nlohmann::json::parse(in);
    for (const auto& [british, american] : j.items()) spelling_[british] = american.get<std::string>();
  } catch (const std::exception& e) {
    throw Error("English spelling map '" + spelling_path + "': not a JSON object of strings (" +
                first_line(e.what()) + ")");
  }
}

std::string EnglishTextNormalizer::operator()(const std::string& text) const {
  static const std::vector<Replacer> replacers = english_replacers();
  std::u32string s = remove_bracketed(unicode::lower(from_utf8(text)));

  // \b(hmm|mm|mhm|mmm|uh|um)\b -> "": fillers, tried in that order at each position.
  {
    std::u32string out;
    size_t i = 0;
    while (i < s.size()) {
      size_t len = 0;
      if (boundary(s, i))
        for (const std::u32string filler : {U"hmm", U"mm", U"mhm", U"mmm", U"uh", U"um"})
          if (starts_with(s, i, filler) && boundary(s, i + filler.size())) {
            len = filler.size();
            break;
          }
      if (len > 0) {
        i += len;
      } else {
        out.push_back(s[i++]);
      }
    }
    s = out;
  }
  // \s+' -> ': no space before an apostrophe.
  {
    std::u32string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (is_space(s[i])) {
        size_t j = i;
        while (j < s.size() && is_space(s[j])) ++j;
        if (j < s.size() && s[j] == U'\'') {
          i = j - 1;
          continue;
        }
      }
      out.push_back(s[i]);
    }
    s = out;
  }
  for (const Replacer& r : replacers) s = replace_all(s, r);
  {
    // (\d),(\d) -> \1\2: commas between digits.
    std::u32string out;
    size_t i = 0;
    while (i < s.size()) {
      if (i + 2 < s.size() && is_digit(s[i]) && s[i + 1] == U',' && is_digit(s[i + 2])) {
        out.push_back(s[i]);
        out.push_back(s[i + 2]);
        i += 3;
      } else {
        out.push_back(s[i++]);
      }
    }
    s = out;
  }
  {
    // \.([^0-9]|$) -> " \1": periods not followed by a digit.
    std::u32string out;
    size_t i = 0;
    while (i < s.size()) {
      if (s[i] == U'.' && (i + 1 == s.size() || !is_ascii_digit(s[i + 1]))) {
        out.push_back(U' ');
        if (i + 1 < s.size()) out.push_back(s[i + 1]);
        i += 2;
      } else {
        out.push_back(s[i++]);
      }
    }
    s = out;
  }
  s = symbols_and_diacritics32(s, U".%$¢€£");  // keeps the numeric symbols
  s = normalize_numbers32(s);
  if (!spelling_.empty()) {
    auto words = split_words(s);
    for (auto& w : words) {
      const auto it = spelling_.find(to_utf8(w));
      if (it != spelling_.end()) w = from_utf8(it->second);
    }
    s = join(words);
  }
  {
    // [.$¢€£]([^0-9]) -> " \1", then ([^0-9])% -> "\1 ": symbols without their number.
    std::u32string out;
    size_t i = 0;
    const std::u32string symbols = U".$¢€£";
    while (i < s.size()) {
      if (symbols.find(s[i]) != std::u32string::npos && i + 1 < s.size() && !is_ascii_digit(s[i + 1])) {
        out.push_back(U' ');
        out.push_back(s[i + 1]);
        i += 2;
      } else {
        out.push_back(s[i++]);
      }
    }
    s.clear();
    i = 0;
    while (i < out.size()) {
      if (i + 1 < out.size() && !is_ascii_digit(out[i]) && out[i + 1] == U'%') {
        s.push_back(out[i]);
        s.push_back(U' ');
        i += 2;
      } else {
        s.push_back(out[i++]);
      }
    }
  }
  return to_utf8(collapse_spaces(s));
}

std::string BasicTextNormalizer::operator()(const std::string& text) const {
  std::u32string s = remove_bracketed(unicode::lower(from_utf8(text)));
  s = remove_diacritics_ ? symbols_and_diacritics32(s, U"") : symbols32(s);
  return to_utf8(collapse_spaces(unicode::lower(s)));
}

}  // namespace losatok::eval
