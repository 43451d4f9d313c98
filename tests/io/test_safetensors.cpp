// safetensors: round trips for every dtype, a file written by an independent Python writer,
// and corrupt files that must give a clear error (never a crash or a huge allocation).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "losatok/core/error.h"
#include "losatok/io/safetensors.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::io;
using losatok::test::TempDir;

namespace {

std::string with_header(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json + data;
}

void expect_corrupt(const std::string& bytes, const std::string& needle) {
  TempDir tmp;
  const std::string path = tmp.path("bad.safetensors");
  test::write_bytes(path, bytes);
  test::expect_error([&] { load_safetensors(path); }, {"bad.safetensors", needle});
  test::expect_error([&] { load_safetensors_buffer(bytes.data(), bytes.size(), "'bad.safetensors'"); },
                     {"bad.safetensors", needle});
}

}  // namespace

TEST(Safetensors, RoundTripEveryDtypeWithMetadata) {
  torch::manual_seed(0);
  std::map<std::string, torch::Tensor> t = {
      {"f32", torch::randn({3, 4})},
      {"f16", torch::randn({5}).to(torch::kFloat16)},
      {"bf16", torch::randn({2, 2, 2}).to(torch::kBFloat16)},
      {"f64", torch::randn({2}, torch::kFloat64)},
      {"i64", torch::arange(6, torch::kInt64).reshape({2, 3})},
      {"i32", torch::arange(4, torch::kInt32)},
      {"u8", torch::arange(200, 206, torch::kUInt8)},
      {"bool", torch::tensor({true, false, true})},
      {"scalar", torch::tensor(3.5f)},
      {"empty", torch::zeros({0, 4})},
      {"strided", torch::arange(12, torch::kFloat32).reshape({3, 4}).t()},
  };
  TempDir tmp;
  const std::string path = tmp.path("w.safetensors");
  save_safetensors(path, t, {{"producer", "test"}, {"step", "12"}});
  const SafetensorsData back = load_safetensors(path);
  ASSERT_EQ(back.tensors.size(), t.size());
  for (const auto& [name, want] : t) {
    SCOPED_TRACE(name);
    const auto& got = back.tensors.at(name);
    EXPECT_EQ(got.scalar_type(), want.scalar_type());
    EXPECT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(torch::equal(got, want));
  }
  EXPECT_EQ(back.metadata.at("producer"), "test");
  EXPECT_EQ(back.metadata.at("step"), "12");
  // The data section starts 8-byte aligned, as other writers expect.
  EXPECT_EQ(read_safetensors_header(path).data_offset % 8, 0u);
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.dir())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(Safetensors, ReadsFilesFromAnIndependentWriter) {
  const SafetensorsData d = load_safetensors(test::fixture("pt_expected.safetensors"));
  EXPECT_EQ(d.tensors.at("plain.bf16").scalar_type(), torch::kBFloat16);
  EXPECT_EQ(d.tensors.at("plain.bool").scalar_type(), torch::kBool);
  EXPECT_TRUE(torch::equal(d.tensors.at("plain.i64"), torch::arange(5)));
  EXPECT_TRUE(torch::equal(d.tensors.at("plain.base"), torch::arange(24, torch::kFloat32).reshape({4, 6})));
}

TEST(Safetensors, BufferAndFileAgree) {
  std::map<std::string, torch::Tensor> t = {{"a", torch::ones({2, 3})}, {"b", torch::arange(3)}};
  const std::string bytes = serialize_safetensors(t);
  const auto d = load_safetensors_buffer(bytes.data(), bytes.size());
  EXPECT_TRUE(torch::equal(d.tensors.at("a"), t["a"]));
  EXPECT_TRUE(torch::equal(d.tensors.at("b"), t["b"]));
}

TEST(Safetensors, RejectsCorruptFiles) {
  const std::string data(16, '\0');  // room for 4 f32 / 2 i64
  expect_corrupt("abc", "shorter than");
  expect_corrupt(with_header("{}", "").substr(0, 8), "exceeds the file size");  // length 2, no JSON
  {
    std::string huge(8, '\0');
    huge[7] = 0x7f;  // header length ~ 9e18
    expect_corrupt(huge + "{}", "exceeds 100 MiB");
  }
  expect_corrupt(with_header("{\"a\": {\"dtype\": \"F32\"", data), "not valid JSON");
  expect_corrupt(with_header("[1, 2]", data), "not a JSON object");
  expect_corrupt(with_header(R"({"a": {"dtype": "F32", "shape": [4]}})", data), "lacks");
  expect_corrupt(with_header(R"({"a": {"dtype": "Q7", "shape": [4], "data_offsets": [0, 16]}})", data),
                 "unsupported dtype");
  expect_corrupt(with_header(R"({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})", data),
                 "non-negative");
  expect_corrupt(with_header(R"({"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}})", data),
                 "truncated");
  expect_corrupt(with_header(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}})", data),
                 "begin > end");
  expect_corrupt(with_header(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})", data),
                 "bytes for shape");
  expect_corrupt(with_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                             data),
                 "overlap");
  expect_corrupt(with_header(R"({"a": {"dtype": "U8", "shape": [4611686018427387904, 4611686018427387904],
                                 "data_offsets": [0, 16]}})",
                             data),
                 "overflow");
  expect_corrupt(with_header(R"({"__metadata__": {"k": 3}})", data), "not a string");
  // Overlap hidden behind a zero-length entry and a short neighbour: C overlaps A.
  expect_corrupt(with_header(R"({"a": {"dtype": "U8", "shape": [12], "data_offsets": [0, 12]},
                                 "b": {"dtype": "U8", "shape": [0], "data_offsets": [4, 4]},
                                 "c": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]}})",
                             data),
                 "overlap");
  // Deeply nested JSON must be refused while parsing, not crash the reader.
  expect_corrupt(with_header(R"({"a": {"dtype": "F32", "shape": )" + std::string(200000, '[') +
                                 std::string(200000, ']') + R"(, "data_offsets": [0, 16]}})",
                             data),
                 "nested deeper");
  expect_corrupt(with_header(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0]}})", data),
                 "data_offsets");
}

TEST(Safetensors, TruncatedFileIsAnErrorNamingIt) {
  TempDir tmp;
  const std::string path = tmp.path("trunc.safetensors");
  const std::string bytes = serialize_safetensors({{"w", torch::randn({64, 64})}});
  test::write_bytes(path, bytes.substr(0, bytes.size() - 100));
  test::expect_error([&] { load_safetensors(path); }, {"trunc.safetensors", "truncated"});
}

TEST(Safetensors, MissingFileIsAnErrorNamingIt) {
  EXPECT_THROW(load_safetensors("/nonexistent/x.safetensors"), Error);
}

TEST(Safetensors, AtomicWriteKeepsTheOldFileOnFailure) {
  TempDir tmp;
  const std::string path = tmp.path("keep.safetensors");
  save_safetensors(path, {{"w", torch::ones({2})}});
  // A tensor type safetensors cannot hold fails before anything touches the old file.
  EXPECT_THROW(save_safetensors(path, {{"c", torch::ones({2}, torch::kComplexFloat)}}), Error);
  EXPECT_TRUE(torch::equal(load_safetensors(path).tensors.at("w"), torch::ones({2})));
}
