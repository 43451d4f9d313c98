// BERT's uncased WordPiece against tests/reference/wordpiece_ref.py on tricky strings (accents,
// punctuation, CJK, Hangul, control characters, literal specials, long words), the caption-word
// fallback vocabulary, batch padding and errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "fixture_data.h"
#include "losatok/data/wordpiece.h"
#include "test_util.h"

namespace losatok {
namespace {

using data::BertWordPiece;

const nlohmann::json& expected() {
  return test::fixture_json("wordpiece/expected.json");
}

const BertWordPiece& tiny() {
  static const BertWordPiece w = BertWordPiece::from_vocab_file(test::fixture("wordpiece/vocab.txt"));
  return w;
}

TEST(WordPiece, MatchesPythonReference) {
  const BertWordPiece& w = tiny();
  EXPECT_EQ(w.pad_id(), 0);
  EXPECT_EQ(w.unk_id(), 1);
  EXPECT_EQ(w.cls_id(), 2);
  EXPECT_EQ(w.sep_id(), 3);
  ASSERT_GE(expected()["cases"].size(), 20u);
  for (const auto& c : expected()["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(data::bert_basic_tokenize(text), c["basic"].get<std::vector<std::string>>()) << text;
    EXPECT_EQ(w.tokenize(text), c["pieces"].get<std::vector<std::string>>()) << text;
    EXPECT_EQ(w.encode(text), c["ids"].get<std::vector<int64_t>>()) << text;
  }
}

TEST(WordPiece, HandCases) {
  const BertWordPiece& w = tiny();
  EXPECT_EQ(w.tokenize("unaffable"), (std::vector<std::string>{"un", "##aff", "##able"}));
  EXPECT_EQ(w.tokenize(std::string(101, 'a')), (std::vector<std::string>{"[UNK]"}));
  EXPECT_EQ(w.tokenize(std::string(100, 'a')).size(), 100u);
  EXPECT_EQ(w.tokenize("Café"), (std::vector<std::string>{"cafe"}));
  // An invalid UTF-8 byte reads as U+FFFD, which the normaliser drops.
  EXPECT_EQ(w.tokenize("dog\xff"
                       "s"),
            (std::vector<std::string>{"dogs"}));
  EXPECT_EQ(w.encode(""), (std::vector<int64_t>{w.cls_id(), w.sep_id()}));
  EXPECT_EQ(w.token(w.token_id("##able")), "##able");
  EXPECT_EQ(w.token_id("no-such-token"), -1);
}

TEST(WordPiece, CaptionVocabularyFallback) {
  const auto captions = expected()["captions"].get<std::vector<std::string>>();
  const BertWordPiece w = BertWordPiece::from_captions(captions);
  const auto tokens = expected()["caption_vocab"].get<std::vector<std::string>>();
  ASSERT_EQ(w.vocab_size(), static_cast<int64_t>(tokens.size()));
  for (std::size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(w.token(static_cast<int64_t>(i)), tokens[i]);
  for (const auto& c : expected()["caption_cases"])
    EXPECT_EQ(w.encode(c["text"].get<std::string>()), c["ids"].get<std::vector<int64_t>>()) << c["text"];
}

TEST(WordPiece, BatchPadsToTheLongest) {
  const BertWordPiece& w = tiny();
  const torch::Tensor ids = w.encode_batch({"hello", "", "unaffable"});
  ASSERT_EQ(ids.sizes(), (std::vector<int64_t>{3, 5}));
  const std::vector<int64_t> u = w.encode("unaffable");
  for (int64_t k = 0; k < 5; ++k) EXPECT_EQ(ids[2][k].item<int64_t>(), u[static_cast<std::size_t>(k)]);
  EXPECT_EQ(ids[0][2].item<int64_t>(), w.sep_id());
  EXPECT_EQ(ids[0][3].item<int64_t>(), w.pad_id());
  EXPECT_EQ(ids[1][1].item<int64_t>(), w.sep_id());
  EXPECT_EQ(ids[1][4].item<int64_t>(), w.pad_id());
}

TEST(WordPiece, Errors) {
  test::expect_error([] { BertWordPiece::from_vocab_file("/nonexistent/vocab.txt"); },
                     {"/nonexistent/vocab.txt"});
  test::TempDir dir;
  test::write_text(dir.path("vocab.txt"), "[PAD]\n[UNK]\n[SEP]\nhello\n");
  test::expect_error([&] { BertWordPiece::from_vocab_file(dir.path("vocab.txt")); }, {"vocab.txt", "[CLS]"});
  test::expect_error([] { BertWordPiece::from_captions({}); }, {"no captions"});
  test::expect_error([] { tiny().token(100000); }, {"100000", "outside"});
}

}  // namespace
}  // namespace losatok
