// UTMOS22 strong: SSL features, frame scores and MOS equal a PyTorch reference written from the
// architectures (tests/reference/utmos_ref.py) for a tiny checkpoint in SpeechMOS's layout, on two
// real speech clips; the official Lightning layout loads to the same model; one-line errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>

#include "fixture_data.h"
#include "losatok/core/error.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/utmos.h"
#include "test_util.h"

using namespace losatok;
namespace fs = std::filesystem;

namespace {

const io::SafetensorsData& expected() {
  return test::fixture_tensors("utmos_expected.safetensors");
}

const torch::Tensor& want(const std::string& name) {
  return expected().tensors.at(name);
}

int heads() {
  return std::stoi(expected().metadata.at("heads"));
}

std::string checkpoint() {
  return test::fixture("utmos_tiny/utmos22_strong_step7459_v1.pt");
}

models::Utmos22Strong& tiny() {
  static models::Utmos22Strong m = models::load_utmos(checkpoint(), torch::kCPU, heads());
  return m;
}

torch::Tensor wave(int k) {
  return want("wave" + std::to_string(k));
}

// SpeechMOS names -> the UTMOS22 Lightning checkpoint's (phoneme-free config), with domain and
// judge tables holding the fixed rows among random ones.
io::TensorMap lightning_layout(const io::TensorMap& w) {
  io::TensorMap out;
  const auto rename = [](const std::string& name, const std::string& from, const std::string& to) {
    return name.rfind(from, 0) == 0 ? to + name.substr(from.size()) : std::string();
  };
  for (const auto& [name, t] : w) {
    for (const auto& [from, to] :
         std::vector<std::pair<std::string, std::string>>{{"wav2vec2.", "feature_extractors.0.ssl_model."},
                                                          {"blstm.", "output_layers.0.decoder_rnn."},
                                                          {"projection.0.", "output_layers.1.net.0."},
                                                          {"projection.2.", "output_layers.1.net.3."}})
      if (const std::string r = rename(name, from, to); !r.empty()) out[r] = t;
  }
  torch::manual_seed(3);
  torch::Tensor domains = torch::randn({3, w.at("domain_emb").size(1)});
  domains[models::kUtmosDomainId].copy_(w.at("domain_emb")[0]);
  torch::Tensor judges = torch::randn({3000, w.at("judge_emb").size(1)});
  judges[models::kUtmosJudgeId].copy_(w.at("judge_emb")[0]);
  out["feature_extractors.1.embedding.weight"] = domains;
  out["output_layers.0.judge_embedding.weight"] = judges;
  return out;
}

}  // namespace

TEST(Utmos, EqualsThePyTorchReferenceOnSpeech) {
  auto& m = tiny();
  EXPECT_STREQ(models::kUtmosName, "UTMOS22 strong");
  const torch::Tensor mos = want("mos");
  for (int k = 0; k < 2; ++k) {
    const std::string i = std::to_string(k);
    const torch::Tensor w = wave(k).unsqueeze(0);
    const torch::Tensor ssl = m->ssl_features(w);
    const torch::Tensor frames = m->frame_scores(ssl);
    ASSERT_EQ(ssl.sizes(), want("ssl" + i).sizes());
    const double r_ssl = test::rel_l2(ssl, want("ssl" + i));
    const double r_frames = test::rel_l2(frames, want("frames" + i));
    const double p = m->predict(wave(k));
    const double r_mos = std::abs(p - mos[k].item<double>()) / std::abs(mos[k].item<double>());
    std::cout << std::setprecision(9) << models::kUtmosName << " parity, clip " << k << " (" << ssl.size(1)
              << " frames): ssl " << r_ssl << ", frame scores " << r_frames << ", MOS " << p << " vs "
              << mos[k].item<double>() << " (rel " << r_mos << ")\n";
    EXPECT_LT(r_ssl, 1e-4);
    EXPECT_LT(r_frames, 1e-4);
    EXPECT_LT(r_mos, 1e-4);
  }
}

TEST(Utmos, BatchedFormsGiveEachClipsScore) {
  auto& m = tiny();
  const std::vector<double> each = m->predict(std::vector<torch::Tensor>{wave(0), wave(1)});
  ASSERT_EQ(each.size(), 2u);
  EXPECT_NEAR(each[0], want("mos")[0].item<double>(), 1e-4);
  EXPECT_NEAR(each[1], want("mos")[1].item<double>(), 1e-4);
  // Rows of one length go through as one batch.
  const int64_t n = wave(1).size(0);
  const torch::Tensor batch = torch::stack({wave(0).narrow(0, 0, n), wave(1)});
  const torch::Tensor scores = m->forward(batch);
  ASSERT_EQ(scores.sizes(), (std::vector<int64_t>{2}));
  EXPECT_NEAR(scores[0].item<double>(), m->predict(wave(0).narrow(0, 0, n)), 1e-5);
  EXPECT_NEAR(scores[1].item<double>(), each[1], 1e-5);
}

TEST(Utmos, OfficialLayoutsLoad) {
  // SpeechMOS's release: a plain state dict in these names, LSTM parameters included.
  const io::WeightSet w = io::read_weights(checkpoint());
  EXPECT_TRUE(w.tensors.count("wav2vec2.mask_emb"));  // kept by the release, unused here
  auto& m = tiny();
  const auto params = m->named_parameters();
  for (const char* name :
       {"blstm.weight_ih_l0", "blstm.weight_hh_l0_reverse", "blstm.bias_ih_l0_reverse", "projection.2.weight",
        "domain_emb", "judge_emb", "wav2vec2.encoder.pos_conv.0.weight_g"})
    EXPECT_TRUE(params.contains(name)) << name;
  EXPECT_TRUE(torch::equal(params["blstm.weight_ih_l0_reverse"], w.tensors.at("blstm.weight_ih_l0_reverse")));

  // The UTMOS22 Lightning checkpoint: {"state_dict": ...} under the training code's names.
  test::TempDir dir;
  const std::string ckpt = dir.path("epoch=3-step=7459.ckpt");
  io::save_weights(ckpt, lightning_layout(w.tensors), "pt");
  models::Utmos22Strong official = models::load_utmos(ckpt, torch::kCPU, heads());
  EXPECT_NEAR(official->predict(wave(0)), want("mos")[0].item<double>(), 1e-4);
}

TEST(Utmos, BadFilesAndInputsAreOneLineErrors) {
  test::TempDir dir;
  test::expect_error([&] { models::load_utmos(dir.path("absent.pt")); }, {"absent.pt", "SpeechMOS"});

  const std::string cut = dir.path("cut.pt");
  fs::copy_file(checkpoint(), cut);
  fs::resize_file(cut, 20000);
  test::expect_error([&] { models::load_utmos(cut, torch::kCPU, heads()); }, {"cut.pt"});

  const io::WeightSet w = io::read_weights(checkpoint());
  const auto save_with = [&](const std::string& name, const std::function<void(io::TensorMap&)>& edit) {
    io::TensorMap t = w.tensors;
    edit(t);
    const std::string path = dir.path(name);
    io::save_weights(path, t, "pt");
    return path;
  };
  const std::string judge = save_with("judge.pt", [](io::TensorMap& t) { t.erase("judge_emb"); });
  test::expect_error([&] { models::load_utmos(judge, torch::kCPU, heads()); }, {"judge.pt", "judge_emb"});
  const std::string layer =
      save_with("layer.pt", [](io::TensorMap& t) { t.erase("wav2vec2.encoder.layers.1.fc2.bias"); });
  test::expect_error([&] { models::load_utmos(layer, torch::kCPU, heads()); },
                     {"layer.pt", "encoder.layers.1.fc2.bias"});
  const std::string shape = save_with("shape.pt", [](io::TensorMap& t) {
    t["projection.2.weight"] = torch::zeros({1, 5});
  });
  test::expect_error([&] { models::load_utmos(shape, torch::kCPU, heads()); },
                     {"shape.pt", "projection.2.weight"});
  const std::string extra =
      save_with("extra.pt", [](io::TensorMap& t) { t["phoneme_encoder.x"] = torch::zeros({2}); });
  test::expect_error([&] { models::load_utmos(extra, torch::kCPU, heads()); },
                     {"extra.pt", "phoneme_encoder.x"});

  // The Lightning layout needs its judge table; the phoneme-encoder config is refused.
  io::TensorMap official = lightning_layout(w.tensors);
  official.erase("output_layers.0.judge_embedding.weight");
  io::save_weights(dir.path("nojudge.ckpt"), official, "pt");
  test::expect_error([&] { models::load_utmos(dir.path("nojudge.ckpt"), torch::kCPU, heads()); },
                     {"nojudge.ckpt", "output_layers.0.judge_embedding.weight"});
  official = lightning_layout(w.tensors);
  official["feature_extractors.2.embedding.weight"] = official["feature_extractors.1.embedding.weight"];
  official.erase("feature_extractors.1.embedding.weight");
  io::save_weights(dir.path("phoneme.ckpt"), official, "pt");
  test::expect_error([&] { models::load_utmos(dir.path("phoneme.ckpt"), torch::kCPU, heads()); },
                     {"phoneme.ckpt", "phoneme"});

  auto& m = tiny();
  test::expect_error([&] { m->predict(torch::zeros({2, 16000})); }, {"UTMOS22 strong", "(T)"});
  test::expect_error([&] { m->predict(torch::zeros({300})); }, {"UTMOS22 strong", "300 samples"});
}
