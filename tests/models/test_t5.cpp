// The frozen T5 text encoder: SentencePiece ids equal Python's, last_hidden_state equals a
// PyTorch T5 encoder written from the published architecture (tests/reference/t5_ref.py) for a
// tiny float32 model.safetensors and a t5-small-like bf16 pytorch_model.bin with decoder keys,
// the relative position buckets on hand values, and one-line errors for broken folders.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "fixture_data.h"
#include "losatok/core/error.h"
#include "losatok/data/sentencepiece.h"
#include "losatok/io/safetensors.h"
#include "losatok/models/t5.h"
#include "test_util.h"

using namespace losatok;
namespace fs = std::filesystem;

namespace {

const io::SafetensorsData& expected() {
  return test::fixture_tensors("t5_expected.safetensors");
}

std::string text_of(int k) {
  const torch::Tensor bytes = expected().tensors.at("tok/text" + std::to_string(k)).contiguous();
  if (bytes.numel() == 0) return "";
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                     static_cast<std::size_t>(bytes.numel()));
}

std::vector<int64_t> ids_of(int k) {
  const torch::Tensor t = expected().tensors.at("tok/ids" + std::to_string(k)).contiguous();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

}  // namespace

TEST(SentencePiece, IdsEqualPythonsIncludingNonAsciiUnknownsAndEos) {
  const data::SentencePieceTokenizer sp(test::fixture("t5_tiny/spiece.model"));
  EXPECT_EQ(sp.eos_id(), 1);
  EXPECT_EQ(sp.pad_id(), 0);
  EXPECT_EQ(sp.vocab_size(), 400);
  bool saw_unk = false;
  for (int k = 0; k <= 6; ++k) {
    const std::vector<int64_t> want = ids_of(k);
    EXPECT_EQ(sp.encode(text_of(k)), want) << "text " << k << ": " << text_of(k);
    saw_unk = saw_unk || std::find(want.begin(), want.end(), 2) != want.end();
  }
  EXPECT_TRUE(saw_unk);  // the fixture exercises <unk>
  // A limit keeps EOS.
  const std::vector<int64_t> cut = sp.encode(text_of(1), 5);
  ASSERT_EQ(cut.size(), 5u);
  EXPECT_EQ(cut.back(), 1);
  const std::vector<int64_t> full = ids_of(1);
  EXPECT_EQ(std::vector<int64_t>(cut.begin(), cut.end() - 1),
            std::vector<int64_t>(full.begin(), full.begin() + 4));
}

TEST(SentencePiece, ABrokenModelIsAOneLineError) {
  test::TempDir dir;
  test::write_text(dir.path("spiece.model"), "not a model");
  test::expect_error([&] { data::SentencePieceTokenizer sp(dir.path("spiece.model")); },
                     {"SentencePiece model", "spiece.model"});
  test::expect_error([&] { data::SentencePieceTokenizer sp(dir.path("absent.model")); }, {"absent.model"});
}

TEST(T5, RelativeBucketsOnHandValues) {
  // Buckets for key - query offsets, 32 buckets over 128 (T5's defaults).
  const torch::Tensor b = models::t5_relative_buckets(260, 32, 128);
  const auto bucket = [&](int64_t rel) {
    return rel >= 0 ? b[0][rel].item<int64_t>() : b[-rel][0].item<int64_t>();
  };
  EXPECT_EQ(bucket(0), 0);
  EXPECT_EQ(bucket(-1), 1);
  EXPECT_EQ(bucket(1), 17);
  EXPECT_EQ(bucket(7), 23);   // exact up to 7
  EXPECT_EQ(bucket(20), 26);  // 8 + floor(log(20/8) / log(16) * 8) = 8 + 2
  EXPECT_EQ(bucket(-32), 12);
  EXPECT_EQ(bucket(64), 30);
  EXPECT_EQ(bucket(-91), 15);
  EXPECT_EQ(bucket(-200), 15);  // clamped
  EXPECT_EQ(bucket(250), 31);
  // Depends only on the offset.
  EXPECT_EQ(b[10][30].item<int64_t>(), bucket(20));
}

class T5Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(T5Parity, LastHiddenStateEqualsThePyTorchReference) {
  const std::string name = GetParam();  // tiny | small_like
  models::T5TextEncoder t5(test::fixture("t5_" + name), torch::kCPU);
  const auto& f = expected();
  const torch::Tensor ids = f.tensors.at(name + "/ids"), mask = f.tensors.at(name + "/mask");
  const torch::Tensor want = f.tensors.at(name + "/last_hidden_state");
  std::vector<std::string> texts;
  for (int k = 0; k < 3; ++k) texts.push_back(text_of(k));
  // The tokenizer's ids, padded, are the fixture's.
  for (int k = 0; k < 3; ++k) {
    const auto got = t5.tokenize(texts[k]);
    const int64_t n = mask[k].sum().item<int64_t>();
    ASSERT_EQ(static_cast<int64_t>(got.size()), n) << k;
    EXPECT_TRUE(torch::equal(torch::tensor(got, torch::kLong), ids[k].narrow(0, 0, n))) << k;
  }
  const auto e = t5.encode(texts);
  ASSERT_EQ(e.hidden.sizes(), want.sizes());
  EXPECT_TRUE(torch::equal(e.mask, mask));
  const torch::Tensor m = mask.unsqueeze(-1).to(torch::kFloat32);
  const double rel = test::rel_l2(e.hidden * m, want * m);
  EXPECT_LT(rel, 1e-4) << name;
  EXPECT_EQ(e.hidden.masked_select(mask.logical_not().unsqueeze(-1)).abs().sum().item<double>(), 0.0);
  // Each row alone gives the same values: padding does not leak.
  const auto alone = t5.encode({texts[0]});
  const int64_t n0 = mask[0].sum().item<int64_t>();
  EXPECT_LT(test::rel_l2(alone.hidden[0], e.hidden[0].narrow(0, 0, n0)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Sizes, T5Parity, ::testing::Values("tiny", "small_like"));

TEST(T5, BrokenFoldersAreOneLineErrorsNamingTheFile) {
  test::TempDir dir;
  test::expect_error([&] { models::T5TextEncoder t5(dir.path("absent"), torch::kCPU); },
                     {"absent", "not a folder"});
  const std::string bad = dir.path("bad");
  fs::create_directories(bad);
  test::expect_error([&] { models::T5TextEncoder t5(bad, torch::kCPU); }, {"config.json"});
  test::write_text(bad + "/config.json", "{\"d_model\": 32,");
  test::expect_error([&] { models::T5TextEncoder t5(bad, torch::kCPU); }, {"config.json", "not JSON"});
  test::write_text(bad + "/config.json", "{\"d_model\": 0}");
  test::expect_error([&] { models::T5TextEncoder t5(bad, torch::kCPU); }, {"d_model", "positive"});
  test::write_text(bad + "/config.json", "{\"feed_forward_proj\": \"gated-swish2\"}");
  test::expect_error([&] { models::T5TextEncoder t5(bad, torch::kCPU); },
                     {"feed_forward_proj", "gated-swish2"});
  // A tiny config with its tokenizer but no weights.
  fs::copy_file(test::fixture("t5_tiny/config.json"), bad + "/config.json",
                fs::copy_options::overwrite_existing);
  test::expect_error([&] { models::T5TextEncoder t5(bad, torch::kCPU); }, {"spiece.model"});
  fs::copy_file(test::fixture("t5_tiny/spiece.model"), bad + "/spiece.model");
  test::expect_error([&] { models::T5TextEncoder t5(bad, torch::kCPU); },
                     {"no weights", "pytorch_model.bin"});
  // Weights of another size: the loader names the tensor.
  {
    std::ifstream in(test::fixture("t5_tiny/config.json"));
    std::string json((std::istreambuf_iterator<char>(in)), {});
    const auto at = json.find("\"d_ff\": 48");
    ASSERT_NE(at, std::string::npos);
    json.replace(at, 10, "\"d_ff\": 40");
    test::write_text(bad + "/config.json", json);
  }
  fs::copy_file(test::fixture("t5_tiny/model.safetensors"), bad + "/model.safetensors");
  test::expect_error([&] { models::T5TextEncoder t5(bad, torch::kCPU); }, {"DenseReluDense"});
  // A truncated weights file.
  fs::copy_file(test::fixture("t5_tiny/config.json"), bad + "/config.json",
                fs::copy_options::overwrite_existing);
  fs::resize_file(bad + "/model.safetensors", 1000);
  test::expect_error([&] { models::T5TextEncoder t5(bad, torch::kCPU); }, {"model.safetensors"});
}
