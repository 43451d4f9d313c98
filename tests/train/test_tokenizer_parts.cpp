// The tokenizer stage's parts against PyTorch (tests/reference/make_tokenizer_fixtures.py):
// spectral, KL and SI-SDR losses, the discriminators; plus hand-computed GAN losses and the PNG
// writer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "losatok/audio/mel.h"
#include "losatok/audio/spectrogram_image.h"
#include "losatok/core/error.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/losses/tokenizer_losses.h"
#include "losatok/models/audio_vae.h"
#include "losatok/models/discriminators.h"
#include "test_util.h"

using namespace losatok;

namespace {
double rel(const torch::Tensor& a, const torch::Tensor& b) {
  return test::rel_l2(a.to(torch::kFloat64), b.to(torch::kFloat64));
}
}  // namespace

TEST(TokenizerLosses, MatchPyTorch) {
  const auto f = io::load_safetensors(test::fixture("tokenizer_losses.safetensors")).tensors;
  const torch::Tensor y = f.at("y"), y_hat = f.at("y_hat"), mask = f.at("mask").to(torch::kBool);
  const losses::MultiScaleMelLoss mel("vocos", 16000, {256, 512}, {20, 40});
  EXPECT_LT(rel(mel(y_hat, y).reshape({1}), f.at("mel_loss")), 1e-4);
  const losses::MultiResolutionStftLoss stft({256, 512}, {64, 128});
  const auto [sc, mag] = stft(y_hat, y);
  EXPECT_LT(rel(sc.reshape({1}), f.at("stft_sc")), 1e-4);
  EXPECT_LT(rel(mag.reshape({1}), f.at("stft_mag")), 1e-4);
  EXPECT_LT(rel(losses::kl_loss(f.at("mu"), f.at("logvar"), mask).reshape({1}), f.at("kl")), 1e-5);
  EXPECT_LT(rel(losses::kl_loss(f.at("mu"), f.at("logvar"), mask, 0.2).reshape({1}), f.at("kl_clamped")),
            1e-5);
  EXPECT_LT(rel(losses::si_sdr(y_hat, y), f.at("si_sdr")), 1e-4);
  // SI-SDR is scale-invariant and is the SNR for added noise orthogonal to the signal.
  EXPECT_LT(rel(losses::si_sdr(3 * y_hat, y), f.at("si_sdr")), 1e-4);
  // Identical signals: zero spectral losses.
  EXPECT_NEAR(mel(y, y).item<double>(), 0.0, 1e-7);
  EXPECT_NEAR(stft(y, y).first.item<double>(), 0.0, 1e-7);
}

TEST(TokenizerLosses, DacMelLossAndLogvarPenaltyMatchPyTorch) {
  const auto f = io::load_safetensors(test::fixture("tokenizer_losses.safetensors")).tensors;
  const torch::Tensor y = f.at("y"), y_hat = f.at("y_hat"), mask = f.at("mask").to(torch::kBool);
  EXPECT_LT(rel(audio::melscale_fbanks(17, 0, 8000, 5, 16000, "slaney", "slaney"), f.at("slaney_fb_32_5")),
            1e-5);
  EXPECT_LT(
      rel(audio::melscale_fbanks(1025, 0, 8000, 320, 16000, "slaney", "slaney"), f.at("slaney_fb_2048_320")),
      1e-5);
  const losses::MultiScaleMelLoss dac("dac", 16000, losses::MultiScaleMelLoss::dac_n_ffts(),
                                      losses::MultiScaleMelLoss::dac_n_mels());
  EXPECT_LT(rel(dac(y_hat, y).reshape({1}), f.at("dac_mel")), 1e-4);
  EXPECT_LT(rel(dac(y_hat[1], y[1]).reshape({1}), f.at("dac_mel_clip1")), 1e-4);
  EXPECT_NEAR(dac(y, y).item<double>(), 0.0, 1e-7);
  EXPECT_LT(rel(losses::logvar_penalty(f.at("logvar"), mask).reshape({1}), f.at("logvar_penalty")), 1e-5);
  EXPECT_THROW(losses::MultiScaleMelLoss("dca", 16000, {64}, {5}), Error);
}

TEST(TokenizerLosses, HingeAndFeatureMatchingByHand) {
  std::vector<models::DiscriminatorOutput> real(2), fake(2);
  real[0].logits = torch::tensor({0.5f, 2.0f});   // relu(1 - x): 0.5, 0 -> mean 0.25
  fake[0].logits = torch::tensor({-2.0f, 0.0f});  // relu(1 + x): 0, 1 -> mean 0.5
  real[1].logits = torch::tensor({1.0f});         // 0
  fake[1].logits = torch::tensor({1.0f});         // relu(2) = 2
  EXPECT_NEAR(losses::discriminator_hinge_loss(real, fake).item<double>(), (0.25 + 0.5 + 0 + 2) / 2, 1e-6);
  // G: relu(1 - fake): (3 + 1) / 2 -> 2 ; 0 -> mean over discriminators 1.0
  EXPECT_NEAR(losses::generator_hinge_loss(fake).item<double>(), (2.0 + 0.0) / 2, 1e-6);
  real[0].features = {torch::ones({2, 3}), torch::zeros({4})};
  fake[0].features = {torch::zeros({2, 3}), torch::full({4}, 2.0f)};
  real[1].features = {torch::ones({1})};
  fake[1].features = {torch::ones({1})};
  EXPECT_NEAR(losses::feature_matching_loss(real, fake).item<double>(), (1.0 + 2.0 + 0.0) / 2, 1e-6);
}

TEST(Discriminators, MatchPyTorchWithWeightNormNames) {
  const auto file = io::load_safetensors(test::fixture("discriminators.safetensors"));
  const auto& f = file.tensors;
  auto root = std::make_shared<torch::nn::Module>();
  auto mpd = root->register_module(
      "multiperioddisc",
      models::MultiPeriodDiscriminator(std::vector<int>{2, 3, 5}, std::vector<int>{4, 8, 8, 16, 16}));
  auto mrd = root->register_module("multiresddisc",
                                   models::MultiResolutionDiscriminator(std::vector<int>{512, 256}, 4));
  io::TensorMap weights;
  for (const auto& [k, v] : f)
    if (k.rfind("multi", 0) == 0) weights[k] = v;
  const io::LoadReport report = io::load_weights(*root, weights, "discriminators.safetensors");  // strict
  EXPECT_TRUE(report.clean()) << report.summary();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = f.at("input");
  const auto check = [&](const std::vector<models::DiscriminatorOutput>& outs, const std::string& name) {
    for (std::size_t i = 0; i < outs.size(); ++i) {
      const std::string p = "out." + name + "." + std::to_string(i);
      EXPECT_LT(rel(outs[i].logits, f.at(p + ".logits")), 1e-4) << p;
      for (std::size_t k = 0; k < outs[i].features.size(); ++k) {
        const torch::Tensor& want = f.at(p + ".fmap." + std::to_string(k));
        ASSERT_EQ(outs[i].features[k].sizes(), want.sizes()) << p << " fmap " << k;
        EXPECT_LT(rel(outs[i].features[k], want), 1e-4) << p << " fmap " << k;
      }
      EXPECT_FALSE(f.count(p + ".fmap." + std::to_string(outs[i].features.size())))
          << p << ": feature maps missing";
    }
  };
  check(mpd->forward(x), "mpd");
  check(mrd->forward(x), "mrd");
}

TEST(Discriminators, OddAndShortLengths) {
  models::MultiPeriodDiscriminator mpd(std::vector<int>{2, 3, 5, 7, 11}, std::vector<int>{4, 4, 4, 4, 4});
  models::MultiResolutionDiscriminator mrd(std::vector<int>{512, 256, 128}, 2);
  torch::NoGradGuard no_grad;
  for (int64_t n : {5, 11, 1001, 1280, 4097}) {
    const torch::Tensor x = torch::randn({3, n});
    for (const auto& o : mpd->forward(x)) {
      EXPECT_EQ(o.logits.size(0), 3);
      EXPECT_EQ(o.features.size(), 5u);
      EXPECT_TRUE(torch::isfinite(o.logits).all().item<bool>()) << n;
    }
    if (n < 128) continue;  // the STFT reflect-pads half a window
    for (const auto& o : mrd->forward(x)) {
      EXPECT_EQ(o.logits.size(0), 3);
      EXPECT_EQ(o.features.size(), 5u * 4 + 1);
      EXPECT_TRUE(torch::isfinite(o.logits).all().item<bool>()) << n;
    }
  }
}

TEST(SpectrogramImage, PngStructure) {
  const std::string png = audio::encode_png_rgb(3, 2, std::string(18, '\x7f'));
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(static_cast<unsigned char>(png[19]), 3u);  // width, big-endian
  EXPECT_EQ(static_cast<unsigned char>(png[23]), 2u);  // height
  EXPECT_EQ(png.substr(png.size() - 8, 4), "IEND");
  test::expect_error([] { audio::encode_png_rgb(3, 2, "x"); }, {"png", "3 x 2"});
  test::TempDir dir;
  audio::write_spectrogram_png(dir.path("s.png"), torch::randn({16, 40}), 5.0, 1);
  EXPECT_EQ(test::read_bytes(dir.path("s.png")).substr(1, 3), "PNG");
}

TEST(GradientCheckpointing, SameGradientsAsWithout) {
  RootConfig cfg = test::model_config("tiny");
  const auto run = [&](bool on) {
    cfg.model.decoder.grad_checkpointing = on;
    torch::manual_seed(5);
    models::AudioVAE vae(cfg.model, cfg.frontend.dasheng, cfg.frontend.vocos);
    vae->train();
    torch::manual_seed(6);
    const torch::Tensor z = torch::randn({2, 9, cfg.model.latent_dim()});
    const torch::Tensor y = vae->decode(z);
    y.pow(2).sum().backward();
    std::map<std::string, torch::Tensor> grads;
    for (const auto& item : vae->dasheng_tokenizer->named_parameters())
      if (item.value().grad().defined()) grads[item.key()] = item.value().grad().clone();
    return std::make_pair(y.detach(), grads);
  };
  const auto [y0, g0] = run(false);
  const auto [y1, g1] = run(true);
  EXPECT_TRUE(torch::allclose(y0, y1));
  ASSERT_EQ(g0.size(), g1.size());
  EXPECT_GT(g0.size(), 10u);
  for (const auto& [k, g] : g0)
    EXPECT_LT(test::max_abs_diff(g, g1.at(k)), 1e-6 * (1 + g.abs().max().item<double>())) << k;
}
