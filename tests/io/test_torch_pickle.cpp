// Import of Python torch.save files, checked against tensors saved by the same Python script.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "losatok/core/error.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/torch_pickle.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::io;

namespace {

const std::map<std::string, torch::Tensor>& expected() {
  static const auto e = load_safetensors(test::fixture("pt_expected.safetensors")).tensors;
  return e;
}

void expect_model_state_dict(const TorchStateDict& sd) {
  const std::vector<std::string> names = {
      "encoder.0.weight", "encoder.0.bias",    "encoder.2.weight", "encoder.2.bias",           "norm.weight",
      "norm.bias",        "norm.running_mean", "norm.running_var", "norm.num_batches_tracked", "steps"};
  EXPECT_EQ(sd.tensors.size(), names.size());
  for (const auto& n : names) {
    SCOPED_TRACE(n);
    ASSERT_TRUE(sd.tensors.count(n));
    EXPECT_EQ(sd.tensors.at(n).scalar_type(), expected().at(n).scalar_type());
    EXPECT_TRUE(torch::equal(sd.tensors.at(n), expected().at(n)));
  }
}

}  // namespace

TEST(TorchImport, BareOrderedDictStateDict) {
  // torch.save(model.state_dict()): an OrderedDict, which torch::pickle_load rejects.
  expect_model_state_dict(load_torch_state_dict(test::fixture("pt_ordered.pt")));
}

TEST(TorchImport, StateDictNestedUnderStateDictKey) {
  const TorchStateDict sd = load_torch_state_dict(test::fixture("pt_nested_ordered.pt"));
  expect_model_state_dict(sd);
}

TEST(TorchImport, ExplicitKeyAndMissingKey) {
  expect_model_state_dict(load_torch_state_dict(test::fixture("pt_nested_ordered.pt"), "state_dict"));
  EXPECT_THROW(load_torch_state_dict(test::fixture("pt_nested_ordered.pt"), "ema"), Error);
}

TEST(TorchImport, PlainDictAllDtypesViewsAndNesting) {
  const TorchStateDict sd = load_torch_state_dict(test::fixture("pt_plain.pt"));
  int checked = 0;
  for (const auto& [name, want] : expected()) {
    if (name.rfind("plain.", 0) != 0) continue;
    const std::string key = name.substr(6);
    SCOPED_TRACE(key);
    ASSERT_TRUE(sd.tensors.count(key));
    const auto& got = sd.tensors.at(key);
    EXPECT_EQ(got.scalar_type(), want.scalar_type());
    EXPECT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(torch::equal(got, want));
    ++checked;
  }
  EXPECT_EQ(checked, 16);
  // view_t shares storage with base in Python; ours are independent copies.
  EXPECT_TRUE(torch::equal(sd.tensors.at("view_t"), sd.tensors.at("base").t()));
}

TEST(TorchImport, NonTensorEntriesAreSkippedAndListed) {
  const TorchStateDict sd = load_torch_state_dict(test::fixture("pt_nested_ordered.pt"), "");
  EXPECT_TRUE(sd.skipped.empty());  // only the state_dict entry was selected
}

TEST(TorchImport, LegacyFormatIsAClearError) {
  test::expect_error([] { load_torch_state_dict(test::fixture("pt_legacy.pt")); },
                     {"pt_legacy.pt", "torch < 1.6"});
}

TEST(TorchImport, TruncatedAndGarbageFilesAreClearErrors) {
  test::TempDir tmp;
  const std::string bytes = test::read_bytes(test::fixture("pt_plain.pt"));
  for (std::size_t cut : {bytes.size() / 2, bytes.size() - 30, std::size_t{10}}) {
    const std::string path = tmp.path("cut" + std::to_string(cut) + ".pt");
    test::write_bytes(path, bytes.substr(0, cut));
    test::expect_error([&] { load_torch_state_dict(path); }, {path});
  }
  const std::string garbage = tmp.path("garbage.pt");
  test::write_bytes(garbage, std::string(1000, 'x'));
  EXPECT_THROW(load_torch_state_dict(garbage), Error);
  EXPECT_THROW(load_torch_state_dict(tmp.path("absent.pt")), Error);
}

namespace {

// Storage records for unpickle_state_dict without an archive: data/0 holds 16 float32.
class FixedRecords : public StorageRecords {
 public:
  bool get(const std::string& name, const void*& data, uint64_t& size) const override {
    if (name != "data/0") return false;
    data = bytes_.data();
    size = bytes_.size();
    return true;
  }

 private:
  std::string bytes_ = std::string(64, '\0');
};

// Pickle fragments (protocol 2 opcodes).
const std::string kProto = "\x80\x02";
std::string short_str(const std::string& s) {
  return "X" + std::string{static_cast<char>(s.size()), 0, 0, 0} + s;
}
std::string global(const std::string& module, const std::string& name) {
  return "c" + module + "\n" + name + "\n";
}
std::string binint1(int v) {
  return std::string{'K', static_cast<char>(v)};
}
std::string long_int(int64_t v) {  // LONG1 with 8 bytes
  std::string s = "\x8a\x08";
  for (int i = 0; i < 8; ++i) s += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
  return s;
}
// torch._utils._rebuild_tensor_v2(storage data/0, offset 0, size, stride, False, OrderedDict())
std::string rebuild_tensor(const std::string& size_tuple, const std::string& stride_tuple) {
  const std::string pid = "(" + short_str("storage") + global("torch", "FloatStorage") + short_str("0") +
                          short_str("cpu") + binint1(16) + "tQ";
  return global("torch._utils", "_rebuild_tensor_v2") + "(" + pid + binint1(0) + size_tuple + stride_tuple +
         "\x89" + global("collections", "OrderedDict") + ")R" + "tR";
}

TorchStateDict unpickle(const std::string& pkl) {
  static const FixedRecords records;
  return unpickle_state_dict(pkl.data(), pkl.size(), records, "'test.pkl'");
}

}  // namespace

TEST(TorchImportHostile, HandWrittenPickleOfOneTensorLoads) {
  const std::string pkl =
      kProto + "}" + short_str("w") + rebuild_tensor("(" + binint1(4) + "t", "(" + binint1(1) + "t") + "s.";
  const auto sd = unpickle(pkl);
  ASSERT_TRUE(sd.tensors.count("w"));
  EXPECT_EQ(sd.tensors.at("w").sizes(), torch::IntArrayRef({4}));
}

TEST(TorchImportHostile, MillionDeepNestingDoesNotOverflowTheStack) {
  std::string pkl = kProto + "N";
  pkl += std::string(1000000, '\x85');  // TUPLE1, a million times
  pkl += "0}.";                         // pop it, return an empty dict
  EXPECT_TRUE(unpickle(pkl).tensors.empty());
}

TEST(TorchImportHostile, SharedDictFanOutIsRefused) {
  // D0 = {}; Dk = {a: Dk-1, b: Dk-1} for 60 levels: 2^60 paths through ~1 KB of pickle.
  std::string pkl = kProto + "}q";
  pkl += '\0';  // BINPUT 0
  for (int k = 1; k <= 60; ++k)
    pkl += "}" + short_str("a") + "h" + std::string(1, static_cast<char>(k - 1)) + "s" + short_str("b") +
           "h" + std::string(1, static_cast<char>(k - 1)) + "sq" + std::string(1, static_cast<char>(k));
  pkl += ".";
  test::expect_error([&] { unpickle(pkl); }, {"test.pkl", "more than once"});
}

TEST(TorchImportHostile, StrideZeroAmplificationIsRefused) {
  // A 16-element storage viewed as 2^34 elements with stride 0 would clone 64 GB.
  const std::string pkl = kProto + "}" + short_str("w") +
                          rebuild_tensor("(" + long_int(int64_t{1} << 34) + "t", "(" + binint1(0) + "t") +
                          "s.";
  test::expect_error([&] { unpickle(pkl); }, {"test.pkl", "16x"});
}

TEST(TorchImportHostile, OverflowingStridesAreRefused) {
  const std::string pkl =
      kProto + "}" + short_str("w") +
      rebuild_tensor("(" + long_int(int64_t{1} << 40) + long_int(int64_t{1} << 40) + "t",
                     "(" + long_int(int64_t{1} << 40) + long_int(int64_t{1} << 40) + "t") +
      "s.";
  EXPECT_THROW(unpickle(pkl), Error);
}
