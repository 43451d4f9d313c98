// The MAE stage: masking, a falling loss, exact resume, and its checkpoint as the semantic
// encoder of SemBo and of the tokenizer.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "losatok/core/config.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/train/checkpoint.h"
#include "losatok/train/mae_stage.h"
#include "losatok/train/sembo_stage.h"
#include "losatok/train/tokenizer_stage.h"
#include "losatok/train/trainer.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::train;

namespace {

RootConfig mae_config(const test::TinyCorpus& corpus, const std::string& run_dir) {
  RootConfig c = test::model_config("tiny");
  c.set_stage("mae");
  MaeStageConfig& m = c.section<MaeStageConfig>();
  m.decoder.width = 16;
  m.decoder.depth = 1;
  m.decoder.num_heads = 2;
  c.run_dir = run_dir;
  c.seed = 5;
  c.data.sources = {{corpus.train, 0.0}};
  c.data.valid_sources = {{corpus.valid, 0.0}};
  c.data.segment_seconds = 0.96;
  c.data.batch_size = 3;
  c.data.workers = 2;
  c.train.max_steps = 8;
  c.train.log_every = 1;
  c.train.val_every = 4;
  c.train.tensorboard = false;
  c.train.ema.decay = 0.9;
  c.train.checkpoint.every = 3;
  return c;
}

using test::train_run;

// Two clips: 24 valid patches and 10 valid patches (the rest padding).
data::Batch two_clips() {
  data::Batch b;
  torch::manual_seed(3);
  b.audio = 0.1 * torch::randn({2, 24 * 640});
  b.audio[1].narrow(0, 10 * 640, 14 * 640).zero_();
  b.lengths = torch::tensor({24 * 640, 10 * 640}, torch::kLong);
  b.items.resize(2);
  return b;
}

}  // namespace

TEST(MaeStage, MasksItsShareOfEachClipsValidPatchesOnly) {
  test::TinyCorpus corpus;
  test::TempDir dir;
  const RootConfig cfg = mae_config(corpus, dir.path("run"));
  MaeStage stage(cfg, torch::kCPU);
  stage.set_training(false);
  torch::NoGradGuard no_grad;
  const data::Batch b = two_clips();
  at::Generator g1 = at::detail::createCPUGenerator(1), g2 = at::detail::createCPUGenerator(1),
                g3 = at::detail::createCPUGenerator(2);
  const auto a = stage.reconstruct(b, false, g1);
  // 0.75 of 24 and of 10 patches hidden (round(6) and round(2.5) = 2 kept): padding never counts.
  EXPECT_EQ(a.masked_count.item<double>(), 18 + 8);
  EXPECT_EQ(a.visible_count.item<double>(), 6 + 2);
  EXPECT_TRUE(std::isfinite(a.masked_mse.item<double>()));
  // The same generator state gives the same masks; another one other masks.
  EXPECT_EQ(stage.reconstruct(b, false, g2).masked_mse.item<double>(), a.masked_mse.item<double>());
  EXPECT_NE(stage.reconstruct(b, false, g3).masked_mse.item<double>(), a.masked_mse.item<double>());
  // With nothing masked there is no masked error.
  RootConfig none = cfg;
  none.section<MaeStageConfig>().mask_ratio = 0.0;
  MaeStage all_visible(none, torch::kCPU);
  EXPECT_EQ(all_visible.reconstruct(b, false, g1).masked_count.item<double>(), 0);
}

TEST(MaeStage, ResumeIsBitwiseExactAndTheCheckpointIsTheOtherStagesEncoder) {
  test::TinyCorpus corpus;
  test::TempDir dir;
  const TrainResult a = train_run(mae_config(corpus, dir.path("straight")));
  EXPECT_TRUE(a.finished);
  RootConfig first = mae_config(corpus, dir.path("split"));
  first.train.stop_at_step = 5;
  EXPECT_EQ(train_run(first).step, 5);
  const RootConfig second = mae_config(corpus, dir.path("split"));
  EXPECT_EQ(train_run(second, Checkpointer::latest(second.run_dir)->path).step, 8);
  const auto la = test::lines_with(dir.path("straight/metrics.jsonl"), "train/loss");
  const auto lb = test::lines_with(dir.path("split/metrics.jsonl"), "train/loss");
  ASSERT_EQ(la.size(), 8u);
  ASSERT_EQ(lb.size(), 8u);
  for (const auto& [step, j] : la)
    for (const char* k : {"train/loss", "train/mse_masked", "train/mse_visible", "train/grad_norm"})
      EXPECT_EQ(j[k].get<double>(), lb.at(step)[k].get<double>()) << k << " at step " << step;
  const auto va = test::lines_with(dir.path("straight/metrics.jsonl"), "val/mae_loss");
  const auto vb = test::lines_with(dir.path("split/metrics.jsonl"), "val/mae_loss");
  EXPECT_EQ(va.at(8)["val/mae_loss"].get<double>(), vb.at(8)["val/mae_loss"].get<double>());
  for (const char* f :
       {"model.safetensors", "ema.safetensors", "optimizer.safetensors", "state.safetensors"}) {
    const auto ta = io::load_safetensors(dir.path(std::string("straight/checkpoints/step-8/") + f)).tensors;
    const auto tb = io::load_safetensors(dir.path(std::string("split/checkpoints/step-8/") + f)).tensors;
    ASSERT_EQ(ta.size(), tb.size()) << f;
    for (const auto& [k, v] : ta) EXPECT_TRUE(torch::equal(v, tb.at(k))) << f << ": " << k;
  }

  // The checkpoint (its EMA weights, as read_weights picks them) is SemBo's frozen encoder ...
  const std::string ckpt = dir.path("straight/checkpoints/step-8");
  const auto mae = io::load_safetensors(ckpt + "/ema.safetensors").tensors;
  RootConfig s = test::model_config("tiny");
  s.set_stage("sembo");
  s.train.encoder_weights = ckpt;
  SemBoStage sembo(s, torch::kCPU);
  for (const auto& item : sembo.model()->encoder->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), mae.at("semantic_encoder.encoder." + item.key()))) << item.key();
  EXPECT_TRUE(torch::equal(sembo.model()->encoder->init_bn->running_mean,
                           mae.at("semantic_encoder.encoder.init_bn.running_mean")));
  // ... and the tokenizer's, through train.encoder_weights as through a SemBo run's checkpoint.
  RootConfig t = test::model_config("tiny");
  t.set_stage("tokenizer");
  t.train.encoder_weights = ckpt;
  TokenizerStage tok(t, torch::kCPU);
  const auto w = tok.vae()->semantic_encoder->encoder->named_parameters();
  EXPECT_TRUE(
      torch::equal(w["blocks.1.mlp.fc2.weight"], mae.at("semantic_encoder.encoder.blocks.1.mlp.fc2.weight")));
}

TEST(MaeStage, TheMaskedLossFalls) {
  test::TinyCorpus corpus;
  test::TempDir dir;
  RootConfig c = mae_config(corpus, dir.path("run"));
  c.train.max_steps = 40;
  c.train.val_every = 0;
  c.train.checkpoint.every = 0;
  c.data.valid_sources.clear();
  train_run(c);
  const auto lines = test::lines_with(dir.path("run/metrics.jsonl"), "train/mse_masked");
  double early = 0, late = 0;
  for (int64_t s = 1; s <= 5; ++s) early += lines.at(s)["train/mse_masked"].get<double>();
  for (int64_t s = 36; s <= 40; ++s) late += lines.at(s)["train/mse_masked"].get<double>();
  // Each target patch is standardised: predicting zeros scores 1.
  EXPECT_LT(late, 0.85 * early) << "masked MSE: first 5 steps " << early / 5 << ", last 5 " << late / 5;
  EXPECT_LT(late / 5, 0.8);
}

TEST(MaeStage, ConfigErrorsNameTheKey) {
  test::TinyCorpus corpus;
  test::TempDir dir;
  RootConfig c = mae_config(corpus, dir.path("run"));
  c.data.segment_seconds = 0;  // whole clips can outgrow the position table
  test::expect_error([&] { MaeStage(c, torch::kCPU); }, {"data.segment_seconds", "10.08 s"});
  test::expect_error(
      [&] { read_root_config({test::source_path("configs/mae_tiny.yaml")}, {"mae.mask_ratio=1.0"}); },
      {"mae.mask_ratio", "[0, 1)"});
  test::expect_error(
      [&] { read_root_config({test::source_path("configs/mae_tiny.yaml")}, {"+sembo.loss.lambda_rec=1"}); },
      {"sembo.loss.lambda_rec", "sembo stage", "mae"});
}
