// Loading weights by name (strict / lenient / scoped), export and re-import, and Python's
// torch.load of our .pt export.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/audio_vae.h"
#include "test_util.h"

using namespace losatok;

namespace {

models::AudioVAE tiny_vae() {
  const RootConfig c = test::model_config("tiny");
  return models::AudioVAE(c.model, c.frontend.dasheng, c.frontend.vocos);
}

io::TensorMap reference_state() {
  return io::map_to_vae_names(io::read_weights(test::fixture("vae_tiny.pth")).tensors).tensors;
}

bool same_state(const io::TensorMap& a, const io::TensorMap& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, t] : a)
    if (!b.count(name) || !torch::equal(t, b.at(name))) return false;
  return true;
}

}  // namespace

TEST(Weights, StrictLoadNamesEveryProblemAndChangesNothing) {
  auto vae = tiny_vae();
  const auto before = io::module_state(*vae);
  auto state = reference_state();
  state.erase("fc_mu.weight");
  state["fc_extra.weight"] = torch::zeros({2});
  state["fc_a.bias"] = torch::zeros({5});
  test::expect_error([&] { io::load_weights(*vae, state, "ck.pth"); },
                     {"ck.pth", "1 missing (fc_mu.weight)", "1 unexpected (fc_extra.weight)",
                      "fc_a.bias: checkpoint [5] vs model [8]", "--lenient"});
  EXPECT_TRUE(same_state(io::module_state(*vae), before)) << "a failed strict load must not touch the model";

  io::LoadOptions lenient;
  lenient.strict = false;
  const auto report = io::load_weights(*vae, state, "ck.pth", lenient);
  EXPECT_EQ(report.missing, std::vector<std::string>{"fc_mu.weight"});
  EXPECT_EQ(report.unexpected, std::vector<std::string>{"fc_extra.weight"});
  EXPECT_EQ(report.mismatched.size(), 1u);
  EXPECT_TRUE(torch::equal(vae->fc_logvar->weight, state.at("fc_logvar.weight")));
  EXPECT_TRUE(torch::equal(vae->fc_mu->weight, before.at("fc_mu.weight")));
}

TEST(Weights, ConvertsDtypeAndIgnoresRecomputedBuffers) {
  auto vae = tiny_vae();
  auto state = reference_state();
  state["fc_mu.weight"] = state.at("fc_mu.weight").to(torch::kBFloat16);
  state["dasheng_tokenizer.decoder.head.istft.window"] = torch::ones({1280});
  const auto report = io::load_weights(*vae, state, "x");
  EXPECT_EQ(vae->fc_mu->weight.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(vae->fc_mu->weight, state.at("fc_mu.weight").to(torch::kFloat32)));
  // Ours plus the reference's own: two filterbanks and three windows.
  EXPECT_EQ(report.ignored.size(), 5u);
  EXPECT_NE(
      std::find(report.ignored.begin(), report.ignored.end(), "dasheng_tokenizer.decoder.head.istft.window"),
      report.ignored.end());
}

TEST(Weights, ExportThenImportRoundTrips) {
  test::TempDir dir;
  auto vae = tiny_vae();
  io::load_weights(*vae, reference_state(), "ref");
  const auto state = io::module_state(*vae);
  for (const std::string format : {"safetensors", "pt"}) {
    SCOPED_TRACE(format);
    const auto path = dir.path("w." + format);
    io::save_weights(path, state, format, {{"k", "v"}});
    const auto back = io::read_weights(path);
    EXPECT_TRUE(same_state(back.tensors, state));
    auto fresh = tiny_vae();
    EXPECT_TRUE(io::load_weights(*fresh, back.tensors, path).clean());
    EXPECT_TRUE(same_state(io::module_state(*fresh), state));
  }
  EXPECT_EQ(io::read_weights(dir.path("w.safetensors")).metadata.at("k"), "v");
  EXPECT_EQ(io::weight_format_for("a/b.PTH"), "pt");
  EXPECT_EQ(io::weight_format_for("a/b.safetensors"), "safetensors");
}

TEST(Weights, CheckpointFolderPrefersEma) {
  test::TempDir dir;
  io::save_safetensors(dir.path("model.safetensors"), {{"w", torch::zeros({1})}});
  EXPECT_EQ(io::read_weights(dir.dir().string()).tensors.at("w").item<float>(), 0.0f);
  io::save_safetensors(dir.path("ema.safetensors"), {{"w", torch::ones({1})}});
  EXPECT_EQ(io::read_weights(dir.dir().string()).tensors.at("w").item<float>(), 1.0f);
}

TEST(Weights, BadFilesGiveOneLineErrors) {
  test::TempDir dir;
  test::expect_error([&] { io::read_weights(dir.path("none.pth")); }, {"none.pth", "no such file"});
  test::expect_error([&] { io::read_weights(dir.dir().string()); }, {"model.safetensors"});
  const std::string bytes = test::read_bytes(test::fixture("vae_tiny.pth"));
  test::write_bytes(dir.path("cut.pth"), bytes.substr(0, bytes.size() / 2));
  test::expect_error([&] { io::read_weights(dir.path("cut.pth")); }, {"cut.pth"});
  test::write_text(dir.path("model.safetensors.index.json"),
                   "{\"weight_map\": {\"a\": \"../x.safetensors\"}}");
  test::expect_error([&] { io::read_weights(dir.dir().string()); }, {"outside the folder"});
  test::write_text(dir.path("model.safetensors.index.json"),
                   "{\"weight_map\": {\"a\": \"gone.safetensors\"}}");
  test::expect_error([&] { io::read_weights(dir.dir().string()); }, {"gone.safetensors"});
}

TEST(Weights, PythonTorchLoadReadsOurPtExport) {
  if (test::run_command("/usr/bin/python3 -c 'import torch'") != 0)
    GTEST_SKIP() << "/usr/bin/python3 has no torch (scripts/setup.sh --reference installs it): "
                    "Python-side check of the .pt export skipped";
  test::TempDir dir;
  auto vae = tiny_vae();
  io::load_weights(*vae, reference_state(), "ref");
  const auto path = dir.path("export.pt");
  io::save_weights(path, io::module_state(*vae), "pt");
  std::string output;
  const int rc =
      test::run_command("/usr/bin/python3 " + test::source_path("tests/reference/check_exported_pt.py") +
                            " " + path + " " + test::fixture("vae_tiny.pth"),
                        &output);
  EXPECT_EQ(rc, 0) << output;
  EXPECT_NE(output.find("ok:"), std::string::npos) << output;
}
