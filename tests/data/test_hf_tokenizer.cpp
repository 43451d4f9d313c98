// Qwen2's tokenizer.json BPE: ids, decodes and NFC equal the pure-Python reference
// (tests/reference/qwen2_ref.py, fixtures by make_qwen2_fixtures.py) on tricky and random texts;
// the pre-tokeniser on hand values; merges in either JSON form; one-line errors for broken files.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "fixture_data.h"
#include "losatok/core/error.h"
#include "losatok/data/hf_tokenizer.h"
#include "losatok/io/safetensors.h"
#include "test_util.h"

using namespace losatok;
namespace fs = std::filesystem;

namespace {

const io::SafetensorsData& expected() {
  return test::fixture_tensors("qwen2_expected.safetensors");
}

const data::HfTokenizer& tiny() {
  static const data::HfTokenizer t = data::HfTokenizer::load(test::fixture("qwen2_tiny"));
  return t;
}

std::string bytes_of(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()),
                     static_cast<std::size_t>(c.numel()));
}

// Row k of a packed column (tok/<name> with tok/<name>_end), as a tensor.
torch::Tensor row(const std::string& name, int k) {
  const torch::Tensor ends = expected().tensors.at("tok/" + name + "_end");
  const int64_t end = ends[k].item<int64_t>(), begin = k == 0 ? 0 : ends[k - 1].item<int64_t>();
  return expected().tensors.at("tok/" + name).narrow(0, begin, end - begin);
}

std::vector<int64_t> ids_of(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

int n_texts() {
  return std::stoi(expected().metadata.at("n_texts"));
}

}  // namespace

TEST(HfTokenizer, IdsAndDecodesEqualTheReferenceOnTrickyAndRandomTexts) {
  const data::HfTokenizer& tok = tiny();
  ASSERT_GE(n_texts(), 60);
  int with_special = 0;
  for (int k = 0; k < n_texts(); ++k) {
    const std::string text = bytes_of(row("text", k));
    const std::vector<int64_t> ids = ids_of(row("ids", k));
    EXPECT_EQ(tok.encode(text), ids) << "text " << k << ": " << text;
    EXPECT_EQ(tok.encode(text, /*parse_special=*/false), ids_of(row("ids_plain", k))) << "text " << k;
    EXPECT_EQ(tok.decode(ids), bytes_of(row("decode", k))) << "text " << k;
    EXPECT_EQ(tok.decode(ids, /*skip_special=*/false), bytes_of(row("decode_all", k))) << "text " << k;
    for (const int64_t id : ids) with_special += tok.is_special(id);
  }
  EXPECT_GT(with_special, 5);  // the texts exercise special tokens
  EXPECT_TRUE(tok.encode("").empty());
}

TEST(HfTokenizer, DecodeReplacesSplitUtf8AsPythonDoes) {
  const int n = std::stoi(expected().metadata.at("n_dec"));
  for (int k = 0; k < n; ++k) {
    const std::vector<int64_t> ids = ids_of(expected().tensors.at("dec/ids" + std::to_string(k)));
    EXPECT_EQ(tiny().decode(ids), bytes_of(expected().tensors.at("dec/text" + std::to_string(k))))
        << "case " << k;
  }
  test::expect_error([] { tiny().decode({5, 100000}); }, {"tokenizer.json", "100000"});
}

TEST(HfTokenizer, NfcEqualsPythonsUnicodedata) {
  const std::string in = bytes_of(expected().tensors.at("nfc/in"));
  const std::string want = bytes_of(expected().tensors.at("nfc/out"));
  ASSERT_GT(in.size(), 1000u);
  EXPECT_NE(in, want);
  EXPECT_EQ(data::nfc(in), want);
  EXPECT_EQ(data::nfc(want), want);  // idempotent
  EXPECT_EQ(data::nfc("plain ASCII"), "plain ASCII");
  // Hand values: e + acute -> é; a Hangul L V T sequence -> one syllable; an exclusion stays.
  EXPECT_EQ(data::nfc("e\xCC\x81"), "\xC3\xA9");
  EXPECT_EQ(data::nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");
  EXPECT_EQ(data::nfc("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");  // U+0958 -> U+0915 U+093C
  // An invalid byte passes through and blocks composition across it.
  EXPECT_EQ(data::nfc("e\xFF\xCC\x81"), "e\xFF\xCC\x81");
}

TEST(HfTokenizer, Qwen2PretokenizerOnHandValues) {
  using V = std::vector<std::string>;
  EXPECT_EQ(data::qwen2_pretokenize("I'LL go"), (V{"I", "'LL", " go"}));
  EXPECT_EQ(data::qwen2_pretokenize("it's"), (V{"it", "'s"}));
  EXPECT_EQ(data::qwen2_pretokenize("12345"), (V{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(data::qwen2_pretokenize("ab12"), (V{"ab", "1", "2"}));
  EXPECT_EQ(data::qwen2_pretokenize("a  b"), (V{"a", " ", " b"}));
  EXPECT_EQ(data::qwen2_pretokenize("x \n\n y"), (V{"x", " \n\n", " y"}));
  EXPECT_EQ(data::qwen2_pretokenize("hello!!!\n\nworld"), (V{"hello", "!!!\n\n", "world"}));
  EXPECT_EQ(data::qwen2_pretokenize("a\r\n\r\nb"), (V{"a", "\r\n\r\n", "b"}));
  EXPECT_EQ(data::qwen2_pretokenize("trailing  "), (V{"trailing", "  "}));
  EXPECT_EQ(data::qwen2_pretokenize(" ?!x"), (V{" ?!", "x"}));
  EXPECT_EQ(data::qwen2_pretokenize("\tword"), (V{"\tword"}));
  EXPECT_EQ(data::qwen2_pretokenize("'hello"), (V{"'hello"}));
  EXPECT_EQ(data::qwen2_pretokenize("  "), (V{"  "}));
  EXPECT_TRUE(data::qwen2_pretokenize("").empty());
}

TEST(HfTokenizer, SpecialTokensAndTokenizerConfig) {
  const data::HfTokenizer& tok = tiny();
  const int64_t eot = tok.token_id("<|endoftext|>");
  EXPECT_EQ(eot, 406);
  EXPECT_EQ(tok.eos_id(), eot);
  EXPECT_EQ(tok.pad_id(), eot);
  EXPECT_EQ(tok.vocab_size(), 413);
  EXPECT_TRUE(tok.is_special(tok.token_id("<|vision_end|>")));
  EXPECT_FALSE(tok.is_special(tok.token_id("<tool_call>")));
  EXPECT_FALSE(tok.is_special(tok.token_id("he")));
  EXPECT_EQ(tok.encode("<|vision_end|>"), std::vector<int64_t>{tok.token_id("<|vision_end|>")});
  EXPECT_EQ(tok.decode({eot, tok.token_id("Hello")}), "Hello");
  test::expect_error([&] { tok.token_id("<|nope|>"); }, {"tokenizer.json", "<|nope|>"});
  // The file itself, rather than its folder.
  const data::HfTokenizer file = data::HfTokenizer::load(test::fixture("qwen2_tiny/tokenizer.json"));
  EXPECT_EQ(file.encode("Hello <|im_start|>world"), tok.encode("Hello <|im_start|>world"));
}

TEST(HfTokenizer, MergesAsPairsAndContentObjectsReadTheSame) {
  test::TempDir dir;
  nlohmann::json j = nlohmann::json::parse(test::read_bytes(test::fixture("qwen2_tiny/tokenizer.json")));
  nlohmann::json pairs = nlohmann::json::array();
  for (const auto& m : j["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  j["model"]["merges"] = pairs;
  test::write_text(dir.path("tokenizer.json"), j.dump());
  test::write_text(dir.path("tokenizer_config.json"),
                   R"({"eos_token": {"content": "<|im_end|>", "special": true}, "pad_token": null})");
  const data::HfTokenizer tok = data::HfTokenizer::load(dir.dir().string());
  EXPECT_EQ(tok.eos_id(), tiny().token_id("<|im_end|>"));
  EXPECT_EQ(tok.pad_id(), -1);
  for (int k = 0; k < n_texts(); ++k) {
    const std::string text = bytes_of(row("text", k));
    EXPECT_EQ(tok.encode(text), tiny().encode(text)) << "text " << k;
  }
}

TEST(HfTokenizer, BrokenFilesAreOneLineErrorsNamingThem) {
  test::TempDir dir;
  const nlohmann::json good =
      nlohmann::json::parse(test::read_bytes(test::fixture("qwen2_tiny/tokenizer.json")));
  const auto load_with = [&](const nlohmann::json& j) {
    test::write_text(dir.path("tokenizer.json"), j.dump());
    return data::HfTokenizer::load(dir.path("tokenizer.json"));
  };
  test::write_text(dir.path("tokenizer.json"), good.dump().substr(0, 300));  // truncated
  test::expect_error([&] { data::HfTokenizer::load(dir.path("tokenizer.json")); },
                     {"tokenizer.json", dir.path("tokenizer.json"), "not valid JSON"});
  test::expect_error([&] { data::HfTokenizer::load(dir.path("nothing")); }, {dir.path("nothing")});
  fs::create_directory(dir.path("empty"));
  test::expect_error([&] { data::HfTokenizer::load(dir.path("empty")); },
                     {dir.path("empty"), "has no tokenizer.json"});
  nlohmann::json j = good;
  j.erase("model");
  test::expect_error([&] { load_with(j); }, {dir.path("tokenizer.json"), "model"});
  j = good;
  j["normalizer"] = {{"type", "NFKC"}};
  test::expect_error([&] { load_with(j); }, {"normalizer 'NFKC'"});
  j = good;
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+";
  test::expect_error([&] { load_with(j); }, {"pre_tokenizer"});
  j = good;
  j["model"]["merges"].push_back("x zzz");
  test::expect_error([&] { load_with(j); }, {"merge", "zzz", "outside the vocab"});
  j = good;
  j["model"]["merges"][0] = 7;
  test::expect_error([&] { load_with(j); }, {"merge 0"});
  j = good;
  j["model"]["vocab"]["Hello"] = "x";
  test::expect_error([&] { load_with(j); }, {dir.path("tokenizer.json"), "wrong type"});
  j = good;
  j["added_tokens"][0]["lstrip"] = true;
  test::expect_error([&] { load_with(j); }, {"<|endoftext|>", "lstrip"});
  test::write_text(dir.path("tokenizer.json"), good.dump());
  test::write_text(dir.path("tokenizer_config.json"), R"({"eos_token": "<|missing|>"})");
  test::expect_error([&] { data::HfTokenizer::load(dir.path("tokenizer.json")); },
                     {"tokenizer_config.json", "eos_token", "<|missing|>"});
}
