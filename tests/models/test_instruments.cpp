// VGGish and PANNs CNN14: front ends and outputs equal PyTorch references written from the
// published architectures (tests/reference/audio_instruments_ref.py) on real clips, for tiny
// random-weight files in the official layouts (a plain torchvggish state dict; PANNs'
// {"model": ..., "iteration": ...} with its STFT kernels and mel filterbank); loaders fail with
// one line naming the file.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <iostream>

#include "losatok/core/error.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/panns.h"
#include "losatok/models/vggish.h"
#include "test_util.h"

using namespace losatok;

namespace {

const io::SafetensorsData& expected() {
  static const io::SafetensorsData f =
      io::load_safetensors(test::fixture("instruments_expected.safetensors"));
  return f;
}
torch::Tensor fx(const std::string& name) {
  const auto it = expected().tensors.find(name);
  if (it == expected().tensors.end()) throw std::runtime_error("fixture has no " + name);
  return it->second.to(torch::kFloat32);
}

}  // namespace

TEST(Vggish, FrontEndAndEmbeddingEqualTheReference) {
  models::Vggish vggish = models::load_vggish(test::fixture("vggish_tiny.pth"), torch::kCPU);
  torch::NoGradGuard no_grad;
  for (const std::string clip : {"clip0", "clip1"}) {
    const std::string p = "vggish." + clip + ".";
    const torch::Tensor examples = models::vggish_examples(fx(p + "wave"));
    ASSERT_EQ(examples.sizes(), fx(p + "examples").sizes()) << clip;
    EXPECT_LT(test::rel_l2(examples, fx(p + "examples")), 1e-6) << clip;
    const torch::Tensor e = vggish->forward(examples);
    std::cout << "vggish " << clip << ": examples rel. L2 " << test::rel_l2(examples, fx(p + "examples"))
              << ", embedding " << test::rel_l2(e, fx(p + "embedding")) << "\n";
    EXPECT_LT(test::rel_l2(e, fx(p + "embedding")), 1e-4) << clip;
    EXPECT_LT(test::rel_l2(vggish->forward(examples, /*final_relu=*/true), fx(p + "embedding_relu")), 1e-4)
        << clip;
  }
  // Under one example (0.975 s at 16 kHz): none.
  EXPECT_EQ(models::vggish_examples(torch::randn({15599})).size(0), 0);
  EXPECT_EQ(models::vggish_examples(torch::randn({15600})).size(0), 1);
}

TEST(Vggish, MelMatrixIsHtkInTheMelDomain) {
  const torch::Tensor m = models::vggish_mel_matrix();
  ASSERT_EQ(m.sizes(), torch::IntArrayRef({257, 64}));
  EXPECT_EQ(m[0].abs().sum().item<double>(), 0.0);  // DC contributes to no band
  EXPECT_LE(m.max().item<double>(), 1.0);
  // Every band peaks near 1 (its centre falls between two bins) and bins above 7500 Hz are empty.
  EXPECT_GT(std::get<0>(m.max(0)).min().item<double>(), 0.3);
  EXPECT_EQ(m.narrow(0, 241, 16).abs().sum().item<double>(), 0.0);  // 7500 Hz = bin 240
}

TEST(Cnn14, SixteenKilohertzEqualsTheReference) {
  models::Cnn14 cnn = models::load_cnn14(test::fixture("panns16k_tiny.pth"), torch::kCPU);
  EXPECT_EQ(cnn->front_end.sample_rate, 16000);
  torch::NoGradGuard no_grad;
  for (const std::string clip : {"clip0", "clip1"}) {
    const std::string p = "panns16k." + clip + ".";
    const torch::Tensor wave = fx(p + "wave").unsqueeze(0);
    const torch::Tensor mel = cnn->log_mel(wave)[0];
    ASSERT_EQ(mel.sizes(), fx(p + "logmel").sizes()) << clip;
    EXPECT_LT(test::rel_l2(mel, fx(p + "logmel")), 1e-5) << clip;
    const models::Cnn14Output o = cnn->forward(wave);
    std::cout << "cnn14 16k " << clip << ": log-mel rel. L2 " << test::rel_l2(mel, fx(p + "logmel"))
              << ", embedding " << test::rel_l2(o.embedding[0], fx(p + "embedding")) << ", logits "
              << test::rel_l2(o.logits[0], fx(p + "logits")) << "\n";
    EXPECT_LT(test::rel_l2(o.embedding[0], fx(p + "embedding")), 1e-4) << clip;
    EXPECT_LT(test::rel_l2(o.logits[0], fx(p + "logits")), 1e-4) << clip;
    EXPECT_LT(test::rel_l2(o.clipwise[0], fx(p + "clipwise")), 1e-4) << clip;
  }
}

TEST(Cnn14, ThirtyTwoKilohertzFrontEndEqualsTheReference) {
  models::Cnn14 cnn(models::Cnn14FrontEnd::variant_32k(), std::vector<int64_t>{4, 4, 4, 4, 4, 4}, 8, 527);
  for (const std::string clip : {"clip0", "clip1"}) {
    const std::string p = "panns32k." + clip + ".";
    const torch::Tensor mel = cnn->log_mel(fx(p + "wave").unsqueeze(0))[0];
    ASSERT_EQ(mel.sizes(), fx(p + "logmel").sizes()) << clip;
    EXPECT_LT(test::rel_l2(mel, fx(p + "logmel")), 1e-5) << clip;
  }
}

TEST(Instruments, BrokenFilesAreOneLineErrors) {
  test::TempDir dir;
  test::expect_error([&] { models::load_vggish(dir.path("vggish-10086976.pth"), torch::kCPU); },
                     {"vggish-10086976.pth", "harritaylor/torchvggish"});
  test::expect_error([&] { models::load_cnn14(dir.path("Cnn14_16k_mAP=0.438.pth"), torch::kCPU); },
                     {"Cnn14_16k_mAP=0.438.pth", "zenodo"});
  // Truncated.
  const std::string bytes = test::read_bytes(test::fixture("panns16k_tiny.pth"));
  test::write_bytes(dir.path("cut.pth"), bytes.substr(0, bytes.size() / 2));
  test::expect_error([&] { models::load_cnn14(dir.path("cut.pth"), torch::kCPU); }, {"cut.pth"});
  // A VGGish file is no CNN14, and a wrong-shaped tensor is refused.
  test::expect_error([&] { models::load_cnn14(test::fixture("vggish_tiny.pth"), torch::kCPU); },
                     {"vggish_tiny.pth", "conv_block1.conv1.weight"});
  io::TensorMap t = io::read_weights(test::fixture("vggish_tiny.pth")).tensors;
  t["embeddings.2.weight"] = torch::zeros({3, 3});
  io::save_weights(dir.path("bad.safetensors"), t, "safetensors");
  test::expect_error([&] { models::load_vggish(dir.path("bad.safetensors"), torch::kCPU); },
                     {"bad.safetensors", "embeddings.2.weight"});
  // A filterbank for another band than the STFT size says.
  io::TensorMap p = io::read_weights(test::fixture("panns16k_tiny.pth")).tensors;
  io::TensorMap q;
  for (auto& [k, v] : p) q[k.rfind("model.", 0) == 0 ? k.substr(6) : k] = v;
  q["logmel_extractor.melW"] = q["logmel_extractor.melW"].roll(1, 1);
  io::save_weights(dir.path("melw.safetensors"), q, "safetensors");
  test::expect_error([&] { models::load_cnn14(dir.path("melw.safetensors"), torch::kCPU); },
                     {"melw.safetensors", "melW", "16 kHz"});
}
