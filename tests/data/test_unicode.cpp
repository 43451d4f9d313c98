// The shared Unicode data (src/data/unicode.h) against Python's unicodedata
// (tests/reference/make_unicode_tables.py --fixture) and hand values.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "../../src/data/unicode.h"
#include "fixture_data.h"

namespace losatok {
namespace {

namespace unicode = data::unicode;

std::u32string u32(const std::string& s) {
  return unicode::from_utf8(s);
}

TEST(Unicode, MatchesPythonUnicodedata) {
  const nlohmann::json& j = test::fixture_json("unicode_expected.json");
  ASSERT_EQ(j["unidata_version"].get<std::string>(), "14.0.0");
  std::size_t points = 0, strings = 0;
  for (const auto& p : j["points"]) {
    const auto cp = static_cast<char32_t>(p[0].get<uint32_t>());
    EXPECT_EQ(static_cast<int>(unicode::category(cp)), p[1].get<int>()) << std::hex << cp;
    EXPECT_EQ(unicode::combining_class(cp), p[2].get<int>()) << std::hex << cp;
    EXPECT_EQ(unicode::decimal_value(cp), p[3].get<int>()) << std::hex << cp;
    ++points;
  }
  for (const auto& s : j["strings"]) {
    const std::u32string text = u32(s[0].get<std::string>());
    const std::string where = s[0].get<std::string>();
    EXPECT_EQ(unicode::nfd(text), u32(s[1].get<std::string>())) << where;
    EXPECT_EQ(unicode::nfkd(text), u32(s[2].get<std::string>())) << where;
    EXPECT_EQ(unicode::nfc(text), u32(s[3].get<std::string>())) << where;
    EXPECT_EQ(unicode::nfkc(text), u32(s[4].get<std::string>())) << where;
    EXPECT_EQ(unicode::lower(text), u32(s[5].get<std::string>())) << where;
    ++strings;
  }
  EXPECT_GT(points, 2000u);
  EXPECT_GT(strings, 1500u);
}

TEST(Unicode, HandValues) {
  using unicode::Category;
  EXPECT_EQ(unicode::category(U'A'), Category::kLu);
  EXPECT_EQ(unicode::category(U'\u0378'), Category::kCn);  // unassigned
  EXPECT_EQ(unicode::category(0x110000), Category::kCn);
  EXPECT_EQ(unicode::category(U'\u2160'), Category::kNl);                 // Ⅰ
  EXPECT_EQ(unicode::major_category(unicode::category(U'\u00A7')), 'P');  // §
  EXPECT_EQ(unicode::decimal_value(U'\u0663'), 3);                        // Arabic-Indic three
  EXPECT_EQ(unicode::decimal_value(U'\u00B2'), -1);                       // superscript two: No, not Nd
  EXPECT_EQ(unicode::combining_class(U'\u0301'), 230);
  EXPECT_TRUE(unicode::is_white_space(U'\u3000'));
  EXPECT_FALSE(unicode::is_white_space(U'\u200B'));
  EXPECT_EQ(unicode::classify(-1), unicode::CharClass::kOther);
  EXPECT_EQ(unicode::classify(0x00BD), unicode::CharClass::kNumber);  // ½

  EXPECT_EQ(unicode::nfc(U"e\u0301"), U"\u00E9");
  EXPECT_EQ(unicode::nfc(U"a\u0323\u0302"), U"\u1EAD");  // ậ: reordered, then composed
  EXPECT_EQ(unicode::nfd(U"\u1EAD"), U"a\u0323\u0302");
  EXPECT_EQ(unicode::nfc(U"\u212B"), U"\u00C5");              // Ångström sign: a singleton
  EXPECT_EQ(unicode::nfc(U"\u1100\u1161\u11A8"), U"\uAC01");  // Hangul by formula
  EXPECT_EQ(unicode::nfkc(U"\uFB01\u2460"), U"fi1");          // compatibility forms
  EXPECT_EQ(unicode::nfc(U"\uFB01"), U"\uFB01");
  EXPECT_EQ(unicode::nfc(std::u32string(1, 0x110041)), std::u32string(1, 0x110041));  // passes through

  EXPECT_EQ(unicode::lower(U"\u039F\u0394\u039F\u03A3 \u03A3"), U"\u03BF\u03B4\u03BF\u03C2 \u03C3");
  std::u32string out;
  unicode::append_lower(U'\u0130', &out);
  unicode::append_lower(U'\u03A3', &out);  // no context: always σ
  EXPECT_EQ(out, U"i\u0307\u03C3");
}

TEST(Unicode, Utf8) {
  EXPECT_EQ(unicode::from_utf8("a\xC3\xA9\xF0\x9F\x98\x80"), U"a\u00E9\U0001F600");
  EXPECT_EQ(unicode::from_utf8("a\xC3"), U"a\uFFFD");  // truncated
  // A surrogate: one code point leniently, three invalid bytes with scalar_values_only.
  EXPECT_EQ(unicode::from_utf8("\xED\xA0\x80"), std::u32string(1, 0xD800));
  EXPECT_EQ(unicode::from_utf8("\xED\xA0\x80", true), U"\uFFFD\uFFFD\uFFFD");
  const auto cps = unicode::decode_utf8("x\xFFy");
  ASSERT_EQ(cps.size(), 3u);
  EXPECT_EQ(cps[1].cp, -1);
  EXPECT_EQ(cps[2].offset, 2u);
  EXPECT_EQ(unicode::to_utf8(U"a\u00E9\u4E2D\U0001F600"), "a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80");
}

}  // namespace
}  // namespace losatok
