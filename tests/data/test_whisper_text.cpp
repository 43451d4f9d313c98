// Whisper's text side: the tokenizer against whisper_text_ref.py (both official file formats,
// the special-token layout of every released vocabulary), the normalisers against
// openai/whisper's own, run by tests/reference/make_whisper_text_fixtures.py.
#include <fstream>
#include <nlohmann/json.hpp>

#include "fixture_data.h"
#include "losatok/data/whisper_tokenizer.h"
#include "losatok/eval/text_normalizer.h"
#include "test_util.h"

namespace losatok {
namespace {

using data::WhisperTokenizer;

const nlohmann::json& tokenizer_expected() {
  return test::fixture_json("whisper_text/tokenizer_expected.json");
}

std::string bytes_of(const nlohmann::json& list) {
  std::string s;
  for (const auto& b : list) s.push_back(static_cast<char>(b.get<int>()));
  return s;
}

std::vector<int64_t> ids_of(const nlohmann::json& list) {
  return list.get<std::vector<int64_t>>();
}

const WhisperTokenizer& tiny_tiktoken() {
  static const WhisperTokenizer t =
      WhisperTokenizer::from_tiktoken(test::fixture("whisper_text/tiny.tiktoken"), 99, true);
  return t;
}

std::string base64(const std::string& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 2]);
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=');
    out.push_back(i + 2 < bytes.size() ? kAlphabet[n & 63] : '=');
  }
  return out;
}

// A rank file the size of OpenAI's (gpt2: 50256 ranks, multilingual: 50257): the 256 bytes,
// then two-byte tokens; only the count matters for the special ids.
std::string write_rank_file(const test::TempDir& dir, int n_ranks) {
  const std::string path = dir.path("ranks.tiktoken");
  std::ofstream out(path);
  for (int r = 0; r < n_ranks; ++r) {
    const std::string token =
        r < 256 ? std::string(1, static_cast<char>(r))
                : std::string{static_cast<char>((r - 256) / 256), static_cast<char>((r - 256) % 256)};
    out << base64(token) << ' ' << r << '\n';
  }
  return path;
}

TEST(WhisperTokenizer, TiktokenIdsMatchReference) {
  const auto& tok = tiny_tiktoken();
  const auto& cases = tokenizer_expected().at("cases");
  ASSERT_GE(cases.size(), 30u);
  for (const auto& c : cases) {
    const std::string text = bytes_of(c.at("text"));
    const auto ids = tok.encode(text);
    EXPECT_EQ(ids, ids_of(c.at("ids"))) << "text: '" << text << "'";
    EXPECT_EQ(tok.decode(ids), text);
  }
}

TEST(WhisperTokenizer, HuggingFaceFolderGivesTheSameIds) {
  const auto hf = WhisperTokenizer::from_hf(test::fixture("whisper_text/hf"), 99, true);
  const auto& tok = tiny_tiktoken();
  for (const auto& c : tokenizer_expected().at("cases")) {
    const std::string text = bytes_of(c.at("text"));
    EXPECT_EQ(hf.encode(text), ids_of(c.at("hf_ids"))) << "text: '" << text << "'";
    EXPECT_EQ(hf.encode(text), tok.encode(text)) << "text: '" << text << "'";
  }
  EXPECT_EQ(hf.eot(), tok.eot());
  EXPECT_EQ(hf.sot_sequence("de", "translate", true), tok.sot_sequence("de", "translate", true));
  EXPECT_EQ(hf.timestamp_begin(), tok.timestamp_begin());
  EXPECT_EQ(hf.non_speech_tokens(), tok.non_speech_tokens());
  EXPECT_EQ(hf.vocab_size(), tok.vocab_size());
}

TEST(WhisperTokenizer, TokenizerJsonGivesTheSameIds) {
  // tokenizer.json: the same vocabulary, merges as "a b" strings, specials in added_tokens.
  const auto read = [](const std::string& name) {
    std::ifstream in(test::fixture("whisper_text/hf/" + name));
    return nlohmann::json::parse(in);
  };
  nlohmann::json j;
  j["model"]["type"] = "BPE";
  j["model"]["vocab"] = read("vocab.json");
  j["model"]["merges"] = nlohmann::json::array();
  std::ifstream merges(test::fixture("whisper_text/hf/merges.txt"));
  for (std::string line; std::getline(merges, line);)
    if (!line.empty() && line[0] != '#') j["model"]["merges"].push_back(line);
  j["added_tokens"] = nlohmann::json::array();
  const nlohmann::json added = read("added_tokens.json");
  for (const auto& [name, id] : added.items())
    j["added_tokens"].push_back({{"id", id}, {"content", name}, {"special", true}});
  test::TempDir dir;
  test::write_text(dir.path("tokenizer.json"), j.dump());
  const auto tok = WhisperTokenizer::from_hf(dir.dir().string(), 99, true);
  for (const auto& c : tokenizer_expected().at("cases")) {
    const std::string text = bytes_of(c.at("text"));
    EXPECT_EQ(tok.encode(text), ids_of(c.at("ids"))) << "text: '" << text << "'";
  }
  EXPECT_EQ(tok.sot_sequence("en", "transcribe", true),
            tiny_tiktoken().sot_sequence("en", "transcribe", true));
}

TEST(WhisperTokenizer, DecodeReplacesInvalidUtf8AndDropsSpecials) {
  const auto& tok = tiny_tiktoken();
  for (const auto& c : tokenizer_expected().at("decodes"))
    EXPECT_EQ(tok.decode(ids_of(c.at("ids"))), bytes_of(c.at("text")));
  EXPECT_EQ(tok.decode({}), "");
}

TEST(WhisperTokenizer, SpecialLayoutMatchesReference) {
  const auto& j = tokenizer_expected();
  const auto& tok = tiny_tiktoken();
  for (const auto& [name, id] : j.at("specials_99").items())
    EXPECT_EQ(tok.special(name), id.get<int64_t>()) << name;
  const auto v3 = WhisperTokenizer::from_tiktoken(test::fixture("whisper_text/tiny.tiktoken"), 100, true);
  for (const auto& [name, id] : j.at("specials_100").items())
    EXPECT_EQ(v3.special(name), id.get<int64_t>()) << name;
  EXPECT_EQ(tok.non_speech_tokens(), ids_of(j.at("non_speech_tokens")));
  EXPECT_EQ(tok.blank_ids(), ids_of(j.at("blank_ids")));
  EXPECT_EQ(tok.eot(), j.at("n_ranks").get<int64_t>());
}

TEST(WhisperTokenizer, OfficialSpecialIdsForEveryVocabularySize) {
  test::TempDir dir;
  // multilingual.tiktoken has 50257 ranks: tiny ... large-v2 (n_vocab 51865), large-v3 (51866).
  const std::string multilingual = write_rank_file(dir, 50257);
  const auto v2 = WhisperTokenizer::from_tiktoken(multilingual, int64_t{51865});
  EXPECT_TRUE(v2.is_multilingual());
  EXPECT_EQ(v2.num_languages(), 99);
  EXPECT_EQ(v2.eot(), 50257);
  EXPECT_EQ(v2.sot(), 50258);
  EXPECT_EQ(v2.language_id("en"), 50259);
  EXPECT_EQ(v2.special("<|translate|>"), 50358);
  EXPECT_EQ(v2.special("<|transcribe|>"), 50359);
  EXPECT_EQ(v2.special("<|startofprev|>"), 50361);
  EXPECT_EQ(v2.special("<|nospeech|>"), 50362);
  EXPECT_EQ(v2.no_timestamps(), 50363);
  EXPECT_EQ(v2.timestamp_begin(), 50364);
  EXPECT_EQ(v2.special("<|30.00|>"), 51864);
  EXPECT_EQ(v2.vocab_size(), 51865);
  EXPECT_EQ(v2.sot_sequence("en", "transcribe", true), (std::vector<int64_t>{50258, 50259, 50359, 50363}));
  EXPECT_EQ(v2.sot_sequence("en", "transcribe", false), (std::vector<int64_t>{50258, 50259, 50359}));

  const auto v3 = WhisperTokenizer::from_tiktoken(multilingual, int64_t{51866});
  EXPECT_EQ(v3.num_languages(), 100);
  EXPECT_EQ(v3.language_id("yue"), 50358);
  EXPECT_EQ(v3.special("<|translate|>"), 50359);
  EXPECT_EQ(v3.special("<|transcribe|>"), 50360);
  EXPECT_EQ(v3.no_timestamps(), 50364);
  EXPECT_EQ(v3.timestamp_begin(), 50365);
  EXPECT_EQ(v3.vocab_size(), 51866);

  // gpt2.tiktoken has 50256 ranks: the English-only models (n_vocab 51864) have no language
  // or task in their start sequence.
  test::TempDir dir_en;
  const auto en = WhisperTokenizer::from_tiktoken(write_rank_file(dir_en, 50256), int64_t{51864});
  EXPECT_FALSE(en.is_multilingual());
  EXPECT_EQ(en.eot(), 50256);
  EXPECT_EQ(en.sot(), 50257);
  EXPECT_EQ(en.no_timestamps(), 50362);
  EXPECT_EQ(en.timestamp_begin(), 50363);
  EXPECT_EQ(en.sot_sequence("en", "transcribe", true), (std::vector<int64_t>{50257, 50362}));
}

TEST(WhisperTokenizer, BadInputIsAOneLineErrorNamingTheFile) {
  test::TempDir dir;
  const std::string garbled = dir.path("garbled.tiktoken");
  test::write_text(garbled, "IQ== 0\nIg== 1\n!!!notbase64 2\n");
  test::expect_error([&] { WhisperTokenizer::from_tiktoken(garbled, 99, true); },
                     {"garbled.tiktoken", "line 3", "base64"});
  const std::string no_rank = dir.path("no_rank.tiktoken");
  test::write_text(no_rank, "IQ== 0\nIg==\n");
  test::expect_error([&] { WhisperTokenizer::from_tiktoken(no_rank, 99, true); },
                     {"no_rank.tiktoken", "line 2"});
  const std::string gap = dir.path("gap.tiktoken");
  test::write_text(gap, "IQ== 0\nIg== 2\n");
  test::expect_error([&] { WhisperTokenizer::from_tiktoken(gap, 99, true); },
                     {"gap.tiktoken", "missing or repeated"});
  test::expect_error([&] { WhisperTokenizer::from_tiktoken(dir.path("absent.tiktoken"), 99, true); },
                     {"absent.tiktoken", "cannot read"});
  test::expect_error([&] { WhisperTokenizer::from_hf(dir.path("no_such_folder"), 99, true); },
                     {"no_such_folder"});
  test::expect_error([&] { tiny_tiktoken().language_id("xx"); }, {"tiny.tiktoken", "unknown language 'xx'"});
  test::expect_error([&] { tiny_tiktoken().sot_sequence("en", "summarise", true); }, {"unknown task"});
  test::expect_error([&] { tiny_tiktoken().special("<|nope|>"); }, {"no special token <|nope|>"});
}

const nlohmann::json& normalizer_expected() {
  return test::fixture_json("whisper_text/normalizer_expected.json");
}

TEST(EnglishNormalizer, MatchesWhisperOnTrickyStrings) {
  const eval::EnglishTextNormalizer normalize(test::fixture("whisper_text/english.json"));
  const auto& cases = normalizer_expected();
  ASSERT_GE(cases.size(), 60u);
  int matched = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text"), expected = c.at("english");
    const std::string got = normalize(text);
    EXPECT_EQ(got, expected) << "input: '" << text << "'";
    matched += got == expected;
  }
  std::printf("EnglishTextNormalizer: %d / %zu strings equal whisper's\n", matched, cases.size());
}

TEST(EnglishNormalizer, BasicNormalizerMatchesWhisper) {
  const eval::BasicTextNormalizer basic, basic_diacritics(true);
  for (const auto& c : normalizer_expected()) {
    const std::string text = c.at("text");
    EXPECT_EQ(basic(text), c.at("basic").get<std::string>()) << "input: '" << text << "'";
    EXPECT_EQ(basic_diacritics(text), c.at("basic_diacritics").get<std::string>())
        << "input: '" << text << "'";
  }
}

TEST(EnglishNormalizer, SpellingMapIsOptionalAndChecked) {
  EXPECT_EQ(eval::EnglishTextNormalizer()("The Colour"), "the colour");
  EXPECT_EQ(eval::EnglishTextNormalizer(test::fixture("whisper_text/english.json"))("The Colour"),
            "the color");
  test::TempDir dir;
  test::expect_error([&] { eval::EnglishTextNormalizer(dir.path("missing.json")); },
                     {"missing.json", "cannot read"});
  const std::string bad = dir.path("bad.json");
  test::write_text(bad, "{\"colour\": 3}");
  test::expect_error([&] { eval::EnglishTextNormalizer{bad}; }, {"bad.json"});
}

}  // namespace
}  // namespace losatok
