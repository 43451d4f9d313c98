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
  try {
    load_torch_state_dict(test::fixture("pt_legacy.pt"));
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("pt_legacy.pt"), std::string::npos) << msg;
    EXPECT_NE(msg.find("torch < 1.6"), std::string::npos) << msg;
  }
}

TEST(TorchImport, TruncatedAndGarbageFilesAreClearErrors) {
  test::TempDir tmp;
  const std::string bytes = test::read_bytes(test::fixture("pt_plain.pt"));
  for (std::size_t cut : {bytes.size() / 2, bytes.size() - 30, std::size_t{10}}) {
    const std::string path = tmp.path("cut" + std::to_string(cut) + ".pt");
    test::write_bytes(path, bytes.substr(0, cut));
    try {
      load_torch_state_dict(path);
      FAIL() << "accepted a truncated file";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  const std::string garbage = tmp.path("garbage.pt");
  test::write_bytes(garbage, std::string(1000, 'x'));
  EXPECT_THROW(load_torch_state_dict(garbage), Error);
  EXPECT_THROW(load_torch_state_dict(tmp.path("absent.pt")), Error);
}
