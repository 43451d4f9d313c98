// The trainer's parts: schedules, AdamW, clipping, EMA, checkpoints, TensorBoard files; and
// SemBo's losses and baselines.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "losatok/losses/sembo_losses.h"
#include "losatok/models/sembo.h"
#include "losatok/train/checkpoint.h"
#include "losatok/train/ema.h"
#include "losatok/train/metrics.h"
#include "losatok/train/optimizer.h"
#include "losatok/train/schedule.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::train;
namespace fs = std::filesystem;

TEST(Schedule, WarmupThenCosineLinearConstantAtBoundaries) {
  ScheduleConfig s;
  s.warmup_steps = 10;
  s.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(lr_factor(s, 0, 110), 0.1);                 // (0 + 1) / 10
  EXPECT_DOUBLE_EQ(lr_factor(s, 9, 110), 1.0);                 // last warm-up step reaches the peak
  EXPECT_DOUBLE_EQ(lr_factor(s, 10, 110), 1.0);                // decay starts at the peak
  EXPECT_NEAR(lr_factor(s, 60, 110), 0.1 + 0.9 * 0.5, 1e-12);  // half-way down the cosine
  EXPECT_NEAR(lr_factor(s, 110, 110), 0.1, 1e-12);
  EXPECT_NEAR(lr_factor(s, 500, 110), 0.1, 1e-12);  // past the end: stays at the floor
  s.kind = "linear";
  EXPECT_NEAR(lr_factor(s, 60, 110), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_NEAR(lr_factor(s, 35, 110), 0.1 + 0.9 * 0.75, 1e-12);
  s.kind = "constant";
  EXPECT_DOUBLE_EQ(lr_factor(s, 5, 110), 0.6);
  EXPECT_DOUBLE_EQ(lr_factor(s, 1000, 110), 1.0);
  s.kind = "cosine";
  s.warmup_steps = 0;
  s.decay_steps = 50;  // decay_steps wins over max_steps
  EXPECT_DOUBLE_EQ(lr_factor(s, 0, 110), 1.0);
  EXPECT_NEAR(lr_factor(s, 50, 110), 0.1, 1e-12);
}

TEST(AdamW, MatchesLibTorchAdamWWithDecayOnMatricesOnly) {
  torch::manual_seed(3);
  torch::Tensor w = torch::randn({4, 3}, torch::requires_grad()),
                b = torch::randn({3}, torch::requires_grad());
  torch::Tensor w2 = w.detach().clone().requires_grad_(), b2 = b.detach().clone().requires_grad_();
  OptimConfig c;
  c.lr = 0.01;
  c.betas = {0.8, 0.9};
  c.weight_decay = 0.1;
  AdamW ours("m", {{"w", w}, {"b", b}}, c);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{w2},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(0.01).betas({0.8, 0.9}).weight_decay(0.1)));
  groups.emplace_back(std::vector<torch::Tensor>{b2},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(0.01).betas({0.8, 0.9}).weight_decay(0)));
  torch::optim::AdamW ref(std::move(groups), torch::optim::AdamWOptions(0.01));
  const torch::Tensor x = torch::randn({5, 4});
  for (int i = 0; i < 5; ++i) {
    ours.zero_grad();
    ref.zero_grad();
    torch::tanh(torch::matmul(x, w) + b).pow(2).sum().backward();
    torch::tanh(torch::matmul(x, w2) + b2).pow(2).sum().backward();
    ours.step(0.01);
    ref.step();
  }
  EXPECT_LT(test::max_abs_diff(w, w2), 1e-6);
  EXPECT_LT(test::max_abs_diff(b, b2), 1e-6);
  EXPECT_EQ(ours.steps_taken(), 5);
  // The state round-trips by name, and a wrong shape is refused naming the tensor.
  AdamW other("m", {{"w", w2}, {"b", b2}}, c);
  other.load_state(ours.state(), "test");
  EXPECT_EQ(other.steps_taken(), 5);
  EXPECT_TRUE(torch::equal(other.state().at("w.exp_avg_sq"), ours.state().at("w.exp_avg_sq")));
  auto bad = ours.state();
  bad["b.exp_avg"] = torch::zeros({4});
  test::expect_error([&] { other.load_state(bad, "ck/optimizer.safetensors"); },
                     {"ck/optimizer.safetensors", "b.exp_avg", "shape"});
}

TEST(ClipGradNorm, ScalesToTheLimitAndReportsTheNorm) {
  torch::Tensor a = torch::zeros({2}, torch::requires_grad()), b = torch::zeros({1}, torch::requires_grad());
  (a * torch::tensor({3.0f, 0.0f})).sum().backward();
  (b * torch::tensor({4.0f})).sum().backward();
  const torch::Tensor n = clip_grad_norm({{"a", a}, {"b", b}}, 1.0);
  EXPECT_NEAR(n.item<double>(), 5.0, 1e-6);
  EXPECT_NEAR(a.grad()[0].item<double>(), 3.0 / 5.0, 1e-5);
  EXPECT_NEAR(b.grad()[0].item<double>(), 4.0 / 5.0, 1e-5);
  EXPECT_NEAR(clip_grad_norm({{"a", a}, {"b", b}}, 10.0).item<double>(), 1.0,
              1e-5);  // under the limit: unchanged
  EXPECT_NEAR(a.grad()[0].item<double>(), 3.0 / 5.0, 1e-5);
}

TEST(Ema, CopiesBeforeStartThenAverages) {
  torch::Tensor p = torch::zeros({2});
  EmaConfig c;
  c.decay = 0.9;
  c.start_step = 1;
  Ema ema({{"p", p}}, c);
  p.fill_(1.0);
  ema.update(0);  // before start_step: a copy
  EXPECT_TRUE(torch::allclose(ema.shadow().at("p"), torch::ones({2})));
  p.fill_(3.0);
  ema.update(1);  // 0.9 * 1 + 0.1 * 3
  EXPECT_NEAR(ema.shadow().at("p")[0].item<double>(), 1.2, 1e-6);
  EXPECT_FALSE(Ema({{"p", p}}, EmaConfig{}).enabled());
}

TEST(SemBoLosses, HandValues) {
  // Two tokens of 2-d features; the second is padding and must not count.
  const torch::Tensor h = torch::tensor({{{1.0f, 0.0f}, {5.0f, 5.0f}}});
  const torch::Tensor r = torch::tensor({{{0.0f, 2.0f}, {-7.0f, 1.0f}}});  // orthogonal to h's first token
  const torch::Tensor mask = torch::tensor({{true, false}});
  // normalize: (1,0) vs (0,1): squared difference 2 over D = 2 channels -> 1.
  EXPECT_NEAR(losses::reconstruction_loss(r, h, mask).item<double>(), 1.0, 1e-6);
  EXPECT_NEAR(losses::reconstruction_loss(3 * h, h, mask).item<double>(), 0.0, 1e-7);  // scale-free
  EXPECT_NEAR(losses::cosine_error(r, h, mask).item<double>(), 1.0, 1e-6);
  // Time relation: 3 tokens, low-dim copy keeps relations exactly -> 0.
  const torch::Tensor x = torch::tensor({{{1.0f, 0.0f}, {0.0f, 1.0f}, {1.0f, 1.0f}}});
  const torch::Tensor all = torch::ones({1, 3}, torch::kBool);
  EXPECT_NEAR(losses::time_relation_loss(2 * x, x, all).item<double>(), 0.0, 1e-7);
  // A constant low-dim sequence: S_low all 1; S_high = [[1,0,c],[0,1,c],[c,c,1]], c = 1/sqrt2.
  const torch::Tensor low = torch::ones({1, 3, 1});
  const double c = 1.0 / std::sqrt(2.0);
  const double expected = (2 * 1.0 + 4 * (1 - c) * (1 - c)) / 9.0;
  EXPECT_NEAR(losses::time_relation_loss(low, x, all).item<double>(), expected, 1e-6);
  // Padding: only the first two tokens valid -> pairs (0,1), (1,0) differ by 1, over 4 pairs.
  const torch::Tensor two = torch::tensor({{true, true, false}});
  EXPECT_NEAR(losses::time_relation_loss(low, x, two).item<double>(), 0.5, 1e-6);
  // Gradients reach the low-dim side only.
  torch::Tensor lo = torch::randn({1, 3, 2}, torch::requires_grad()),
                hi = torch::randn({1, 3, 4}, torch::requires_grad());
  losses::time_relation_loss(lo, hi, all).backward();
  EXPECT_TRUE(lo.grad().defined());
  EXPECT_FALSE(hi.grad().defined());
}

TEST(SemBoBaselines, ChannelMergeAndStreamedPca) {
  SemBoConfig c;
  c.method = "channel_merge";
  c.latent_dim = 2;
  models::SemanticBottleneck merge(6, c);
  const torch::Tensor x = torch::arange(12, torch::kFloat32).reshape({1, 2, 6});
  const torch::Tensor low = merge->compress(x);
  EXPECT_TRUE(torch::allclose(low, torch::tensor({{{1.0f, 4.0f}, {7.0f, 10.0f}}})));
  EXPECT_TRUE(
      torch::allclose(merge->restore(low)[0][0], torch::tensor({1.0f, 1.0f, 1.0f, 4.0f, 4.0f, 4.0f})));
  EXPECT_EQ(merge->parameters().size(), 0u);
  c.latent_dim = 4;
  test::expect_error([&] { models::SemanticBottleneck(6, c); }, {"channel_merge", "6", "4"});

  // Features that vary along one direction: PCA recovers it and reconstructs exactly.
  torch::manual_seed(0);
  const torch::Tensor dir = torch::tensor({0.6f, 0.0f, -0.8f});
  const torch::Tensor t = torch::randn({200, 1});
  const torch::Tensor feats = t * dir + torch::tensor({1.0f, 2.0f, 3.0f});
  models::PcaFit whole(3), streamed(3);
  whole.add(feats);
  for (int i = 0; i < 200; i += 37) streamed.add(feats.narrow(0, i, std::min(37, 200 - i)));
  auto [mean, comp] = streamed.solve(1);
  auto [mean2, comp2] = whole.solve(1);
  EXPECT_LT(test::max_abs_diff(comp, comp2), 1e-5);
  EXPECT_LT(test::max_abs_diff(comp[0], -dir), 1e-4);  // sign fixed: the largest entry (-0.8) made positive
  EXPECT_NEAR(whole.explained_variance_ratio()[0].item<double>(), 1.0, 1e-6);
  SemBoConfig p;
  p.method = "pca";
  p.latent_dim = 1;
  models::SemanticBottleneck pca(3, p);
  pca->pca_mean.copy_(mean);
  pca->pca_components.copy_(comp);
  EXPECT_LT(test::max_abs_diff(pca->restore(pca->compress(feats)), feats), 1e-4);
  // Statistics round-trip through a checkpoint.
  models::PcaFit loaded(3);
  loaded.load_state(streamed.state(), "test");
  EXPECT_EQ(loaded.count(), 200);
  EXPECT_LT(test::max_abs_diff(loaded.solve(1).second, comp), 1e-7);
}

TEST(Checkpointer, AtomicFoldersLatestAndPruning) {
  test::TempDir dir;
  CheckpointConfig c;
  c.keep_last = 2;
  Checkpointer ck(dir.path("run"), c);
  const auto files = [](const std::string& text) {
    return std::vector<FileWriter>{{"a.txt", [text](const std::string& p) { test::write_text(p, text); }},
                                   {"b.txt", [](const std::string& p) { test::write_text(p, "b"); }}};
  };
  for (int step : {10, 20, 30})
    ck.save(step, files("step " + std::to_string(step)), "{\"step\": " + std::to_string(step) + "}");
  ck.prune(/*best_step=*/10);
  auto all = Checkpointer::list(dir.path("run"));
  ASSERT_EQ(all.size(), 3u);  // 20, 30 (last two) and 10 (best)
  EXPECT_EQ(all.front().step, 10);
  EXPECT_EQ(Checkpointer::latest(dir.path("run"))->step, 30);
  EXPECT_TRUE(fs::is_symlink(dir.path("run/checkpoints/best")));
  EXPECT_EQ(fs::read_symlink(dir.path("run/checkpoints/best")).string(), "step-10");

  // A writer interrupted after its first file leaves a folder that never becomes latest.
  EXPECT_THROW(ck.save(40, files("x"), "{\"step\": 40}",
                       [](const std::string& name) {
                         if (name == "a.txt") throw std::runtime_error("killed");
                       }),
               std::runtime_error);
  EXPECT_EQ(Checkpointer::latest(dir.path("run"))->step, 30);
  // A step folder whose file was cut short (a copy gone wrong) is not valid either.
  const std::string cut = dir.path("run/checkpoints/step-30/a.txt");
  test::write_text(cut, "st");
  EXPECT_NE(Checkpointer::check(dir.path("run/checkpoints/step-30")).find("a.txt has 2 bytes"),
            std::string::npos);
  EXPECT_EQ(Checkpointer::latest(dir.path("run"))->step, 20);
  ck.prune(10);  // leftovers of the interrupted write go
  EXPECT_FALSE(fs::exists(dir.path("run/checkpoints/.step-40.partial")));
  // The same step saved again replaces the folder.
  ck.save(20, files("again"), "{\"step\": 20}");
  EXPECT_EQ(test::read_bytes(dir.path("run/checkpoints/step-20/a.txt")), "again");
}

TEST(TensorBoard, EventFilesReadBackWithCrcs) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C check value
  test::TempDir dir;
  std::string path;
  {
    TensorBoardWriter w(dir.path("tb"));
    w.add_scalar("train/loss", 0.25, 7);
    w.add_scalar("val/err", -3.5, 8);
    w.add_audio("val/audio", std::vector<float>(160, 0.5f), 16000, 8);
    path = w.path();
  }
  const auto records = read_tensorboard_events(path);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].tag, "train/loss");
  EXPECT_EQ(records[0].step, 7);
  EXPECT_FLOAT_EQ(records[0].value, 0.25f);
  EXPECT_FLOAT_EQ(records[1].value, -3.5f);
  EXPECT_EQ(records[2].audio_bytes.size(), 44u + 320u);
  EXPECT_EQ(records[2].audio_bytes.substr(0, 4), "RIFF");
  // A flipped byte is caught.
  std::string bytes = test::read_bytes(path);
  bytes[bytes.size() - 10] ^= 0x40;
  test::write_bytes(path, bytes);
  test::expect_error([&] { read_tensorboard_events(path); }, {path, "CRC"});
}
