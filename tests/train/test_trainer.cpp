// The training loop on the SemBo stage: exact resume, non-finite steps, signals, the CLI, and
// (on the demo corpus) losses that fall.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "losatok/audio/audio_io.h"
#include "losatok/core/config.h"
#include "losatok/io/safetensors.h"
#include "losatok/train/metrics.h"
#include "losatok/train/sembo_stage.h"
#include "losatok/train/tokenizer_stage.h"
#include "losatok/train/trainer.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::train;
namespace fs = std::filesystem;

namespace {

using test::TinyCorpus;

RootConfig sembo_config(const TinyCorpus& corpus, const std::string& run_dir) {
  RootConfig c = test::model_config("tiny");
  c.stage = "sembo";
  c.run_dir = run_dir;
  c.seed = 7;
  c.model.sembo.dropout = 0.1;  // the resume test needs the RNG to matter
  c.data.sources = {{corpus.train, 0.0}};
  c.data.valid_sources = {{corpus.valid, 0.0}};
  c.data.segment_seconds = 0.64;
  c.data.batch_size = 3;
  c.data.workers = 2;
  c.train.max_steps = 8;
  c.train.log_every = 1;
  c.train.val_every = 4;
  c.train.tensorboard = true;
  c.train.optim.schedule.warmup_steps = 2;
  c.train.ema.decay = 0.9;
  c.train.checkpoint.every = 3;
  c.section<SemBoStageConfig>().baseline_fit_steps = 3;
  return c;
}

using test::lines_with;
using test::read_jsonl;

using test::expect_same_tensors;
using test::train_run;

std::string bin() {
  return std::string(LOSATOK_BINARY) + " --threads 1 ";
}

// A SemBo run that would go on for ever, its config written to `dir`/cfg.yaml.
RootConfig endless_config(const TinyCorpus& corpus, const test::TempDir& dir) {
  RootConfig cfg = sembo_config(corpus, dir.path("run"));
  cfg.section<SemBoStageConfig>().baseline_fit_steps = 0;
  cfg.train.max_steps = 1000000;
  cfg.train.val_every = 0;
  cfg.train.checkpoint.every = 0;
  cfg.data.valid_sources.clear();
  test::write_text(dir.path("cfg.yaml"), config::dump(config::to_yaml(cfg)));
  return cfg;
}

// Runs `command` in the background (output to `log`), sends `signal` once `metrics` has its
// first line, and returns what the shell printed: "rc=<exit status>".
std::string signal_when_training(const std::string& command, const std::string& metrics,
                                 const std::string& signal, const std::string& log) {
  std::string out;
  const int rc = test::run_command(
      "(" + command + " > " + log + " 2>&1 & pid=$!; " + "for i in $(seq 600); do [ -s " + metrics +
          " ] && break; sleep 0.05; done; sleep 0.3; kill -" + signal + " $pid; wait $pid; echo \"rc=$?\")",
      &out);
  EXPECT_EQ(rc, 0) << out;
  return out;
}

}  // namespace

TEST(Trainer, ResumeIsBitwiseExact) {
  TinyCorpus corpus;
  test::TempDir dir;
  const RootConfig straight = sembo_config(corpus, dir.path("straight"));
  const TrainResult a = train_run(straight);
  EXPECT_TRUE(a.finished);
  EXPECT_EQ(a.step, 8);

  RootConfig first = sembo_config(corpus, dir.path("split"));
  first.train.stop_at_step = 5;  // between checkpoints (every 3): the stop writes its own
  const TrainResult b1 = train_run(first);
  EXPECT_FALSE(b1.finished);
  EXPECT_EQ(b1.stop_reason, "stop_at_step");
  EXPECT_EQ(b1.step, 5);
  RootConfig second = sembo_config(corpus, dir.path("split"));
  const TrainResult b2 = train_run(second, Checkpointer::latest(second.run_dir)->path);
  EXPECT_EQ(b2.step, 8);

  // Every logged training loss, the validations and all the state at step 8 are identical.
  const auto la = lines_with(dir.path("straight/metrics.jsonl"), "train/loss");
  const auto lb = lines_with(dir.path("split/metrics.jsonl"), "train/loss");
  ASSERT_EQ(la.size(), 8u);
  ASSERT_EQ(lb.size(), 8u);  // steps 1..5 from the first part, 6..8 from the resumed one
  for (const auto& [step, j] : la)
    for (const char* k : {"train/loss", "train/rec", "train/rel", "train/grad_norm", "lr/sembo"})
      EXPECT_EQ(j[k].get<double>(), lb.at(step)[k].get<double>()) << k << " at step " << step;
  const auto va = lines_with(dir.path("straight/metrics.jsonl"), "val/rec_cos_err");
  const auto vb = lines_with(dir.path("split/metrics.jsonl"), "val/rec_cos_err");
  EXPECT_EQ(va.at(8)["val/rec_cos_err"].get<double>(), vb.at(8)["val/rec_cos_err"].get<double>());
  EXPECT_EQ(va.at(8)["val/pca/rel_err"].get<double>(), vb.at(8)["val/pca/rel_err"].get<double>());
  for (const char* f : {"model.safetensors", "ema.safetensors", "optimizer.safetensors", "state.safetensors"})
    expect_same_tensors(dir.path(std::string("straight/checkpoints/step-8/") + f),
                        dir.path(std::string("split/checkpoints/step-8/") + f));
  // The untrained model is validated at step 0, and dropout made the run depend on the RNG:
  // a different seed gives different losses.
  EXPECT_TRUE(va.count(0));
  RootConfig other = sembo_config(corpus, dir.path("other"));
  other.seed = 8;
  other.train.max_steps = 1;
  train_run(other);
  EXPECT_NE(lines_with(dir.path("other/metrics.jsonl"), "train/loss").at(1)["train/loss"].get<double>(),
            la.at(1)["train/loss"].get<double>());
  // The checkpoint's weights carry their config and load by reference names.
  const auto model = io::load_safetensors(dir.path("straight/checkpoints/step-8/model.safetensors"));
  EXPECT_TRUE(model.metadata.count(kConfigMetadataKey));
  EXPECT_TRUE(model.tensors.count("semantic_encoder.bottleneck.downsample.0.weight"));
  EXPECT_TRUE(model.tensors.count("semantic_encoder.encoder.blocks.0.attn.qkv.weight"));
  EXPECT_FALSE(fs::exists(dir.path("straight/checkpoints/step-3")));  // keep_last 3 + best
}

namespace {
// SemBo with a NaN loss at chosen steps.
class NanSemBo : public SemBoStage {
 public:
  NanSemBo(const RootConfig& cfg, std::set<int64_t> at) : SemBoStage(cfg, torch::kCPU), at_(std::move(at)) {}
  StepOutput train_step(std::size_t i, const data::Batch& b, int64_t step) override {
    StepOutput out = SemBoStage::train_step(i, b, step);
    if (at_.count(step)) {
      out.loss = out.loss * std::numeric_limits<float>::quiet_NaN();
      out.metrics["loss"] = out.loss.detach();
    }
    return out;
  }

 private:
  std::set<int64_t> at_;
};
}  // namespace

TEST(Trainer, NonFiniteStepsAreSkippedCountedAndStopTheRunWhenTheyRepeat) {
  TinyCorpus corpus;
  test::TempDir dir;
  RootConfig cfg = sembo_config(corpus, dir.path("one"));
  cfg.train.max_steps = 4;
  auto stage = std::make_unique<NanSemBo>(cfg, std::set<int64_t>{1});
  Trainer t(cfg, config::to_yaml(cfg), std::move(stage));
  const TrainResult r = t.run({});
  EXPECT_TRUE(r.finished);
  const auto lines = lines_with(dir.path("one/metrics.jsonl"), "train/nonfinite_steps");
  EXPECT_EQ(lines.at(1)["train/nonfinite_steps"].get<double>(), 0);
  EXPECT_EQ(lines.at(2)["train/nonfinite_steps"].get<double>(), 1);  // step index 1 = the 2nd step
  EXPECT_EQ(lines.at(2)["train/loss"], "nan");
  EXPECT_EQ(lines.at(4)["train/nonfinite_steps"].get<double>(), 1);
  EXPECT_TRUE(std::isfinite(lines.at(4)["train/loss"].get<double>()));  // the weights were not poisoned
  EXPECT_FALSE(lines.at(2).contains("lr/sembo"));                       // no update at the bad step

  // Three in a row stop the run with the last good checkpoint named and intact (step 4: its
  // update was skipped, so its weights are step 3's).
  RootConfig cfg2 = sembo_config(corpus, dir.path("two"));
  cfg2.train.max_steps = 20;
  cfg2.train.max_nonfinite = 3;
  cfg2.train.checkpoint.every = 2;
  test::expect_error(
      [&] {
        train_run(cfg2, "", std::make_unique<NanSemBo>(cfg2, std::set<int64_t>{3, 4, 5, 6, 7}));
      },
      {"3 non-finite steps in a row", "step-4"});
  const auto latest = Checkpointer::latest(cfg2.run_dir);
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->step, 4);
  EXPECT_EQ(Checkpointer::check(latest->path), "");
}

TEST(TrainCli, SigtermWritesAResumableCheckpointAndResumeAppliesOverrides) {
  TinyCorpus corpus;
  test::TempDir dir;
  const RootConfig cfg = endless_config(corpus, dir);
  const std::string yaml = dir.path("cfg.yaml");
  const std::string metrics = dir.path("run/metrics.jsonl");
  std::string out = signal_when_training(bin() + "train --config " + yaml, metrics, "TERM", dir.path("log"));
  EXPECT_NE(out.find("rc=0"), std::string::npos) << out << test::read_bytes(dir.path("log"));
  const auto ck = Checkpointer::latest(cfg.run_dir);
  ASSERT_TRUE(ck) << test::read_bytes(dir.path("log"));
  EXPECT_GT(ck->step, 0);
  EXPECT_NE(test::read_bytes(dir.path("log")).find("stopped (signal)"), std::string::npos);

  // A fresh run into the same folder is refused; --resume RUN_DIR with an override finishes.
  EXPECT_NE(test::run_command(bin() + "train --config " + yaml, &out), 0);
  EXPECT_NE(out.find("already has checkpoints"), std::string::npos) << out;
  const int64_t target = ck->step + 2;
  ASSERT_EQ(test::run_command(
                bin() + "train --resume " + cfg.run_dir + " train.max_steps=" + std::to_string(target), &out),
            0)
      << out;
  EXPECT_NE(out.find("train.max_steps changed"), std::string::npos) << out;
  EXPECT_EQ(Checkpointer::latest(cfg.run_dir)->step, target);
  // Lines the interrupted run logged past its checkpoint are gone; each step is logged once.
  std::map<int64_t, int> seen;
  for (auto& j : read_jsonl(metrics)) ++seen[j["step"].get<int64_t>()];
  for (const auto& [step, n] : seen) EXPECT_EQ(n, 1) << "step " << step;
  EXPECT_EQ(seen.rbegin()->first, target);
  // --init-from: a fresh run (new folder) starting from those weights.
  ASSERT_EQ(test::run_command(bin() + "train --config " + yaml + " run_dir=" + dir.path("fork") +
                                  " train.max_steps=1 --init-from " + Checkpointer::latest(cfg.run_dir)->path,
                              &out),
            0)
      << out;
  EXPECT_EQ(Checkpointer::latest(dir.path("fork"))->step, 1);
  // Bad input: a wrong key names its path, a missing resume folder says so.
  EXPECT_NE(test::run_command(bin() + "train --config " + yaml + " train.max_stepz=3", &out), 0);
  EXPECT_NE(out.find("train.max_stepz"), std::string::npos) << out;
  EXPECT_NE(test::run_command(bin() + "train --resume " + dir.path("nowhere"), &out), 0);
  EXPECT_NE(out.find("no valid checkpoint"), std::string::npos) << out;
}

TEST(SemBoStage, PcaAndChannelMergeRunsWriteCheckpointsTheTokenizerCanLoad) {
  TinyCorpus corpus;
  test::TempDir dir;
  RootConfig cfg = sembo_config(corpus, dir.path("pca"));
  cfg.model.sembo.method = "pca";
  cfg.model.sembo.dropout = 0;
  cfg.train.max_steps = 3;
  cfg.train.ema.decay = 0;
  const TrainResult r = train_run(cfg);
  const auto w = io::load_safetensors(r.checkpoint + "/model.safetensors").tensors;
  const torch::Tensor comp = w.at("semantic_encoder.bottleneck.pca_components");
  EXPECT_EQ(comp.sizes(), (std::vector<int64_t>{8, 32}));
  EXPECT_LT(test::max_abs_diff(torch::matmul(comp, comp.t()), torch::eye(8)), 1e-4);  // orthonormal rows
  EXPECT_GT(r.validation.at("val/rec_cos_err"), 0.0);
  RootConfig m = cfg;
  m.run_dir = dir.path("merge");
  m.model.sembo.method = "channel_merge";
  m.train.max_steps = 0;
  const TrainResult rm = train_run(m);
  EXPECT_EQ(rm.step, 0);
  EXPECT_TRUE(fs::exists(rm.checkpoint + "/model.safetensors"));
  EXPECT_TRUE(rm.validation.count("val/rec_cos_err"));
}

namespace {
// The tiny tokenizer with narrow discriminators and two-scale spectral losses, GAN from step 2.
RootConfig tokenizer_config(const TinyCorpus& corpus, const std::string& run_dir) {
  RootConfig c = sembo_config(corpus, run_dir);
  c.stage = "tokenizer";
  c.model.sembo.dropout = 0;
  c.data.batch_size = 2;
  c.train.max_steps = 6;
  c.train.val_every = 3;
  c.train.checkpoint.every = 2;
  c.section<TokenizerStageConfig>().gan.start_step = 2;
  c.section<TokenizerStageConfig>().gan.mpd_channels = {4, 4, 8, 8, 8};
  c.section<TokenizerStageConfig>().gan.mrd_channels = 2;
  c.section<TokenizerStageConfig>().gan.mrd_windows = {512, 256, 128};
  c.section<TokenizerStageConfig>().loss.mel_n_fft = {256, 512};
  c.section<TokenizerStageConfig>().loss.mel_n_mels = {20, 40};
  c.section<TokenizerStageConfig>().loss.stft_n_fft = {256, 512};
  c.section<TokenizerStageConfig>().loss.stft_hop = {64, 128};
  c.section<TokenizerStageConfig>().demo_clips = 1;
  return c;
}

data::Batch noise_batch(int64_t n, int64_t samples) {
  data::Batch b;
  b.audio = 0.1 * torch::randn({n, samples});
  b.lengths = torch::full({n}, samples, torch::kInt64);
  b.lengths[n - 1] = samples - 700;  // one padded clip
  b.items.resize(n);
  return b;
}
}  // namespace

TEST(TokenizerStage, ResumeIsBitwiseExactWithBothOptimizers) {
  TinyCorpus corpus;
  test::TempDir dir;
  const TrainResult a = train_run(tokenizer_config(corpus, dir.path("straight")));
  EXPECT_EQ(a.step, 6);
  RootConfig first = tokenizer_config(corpus, dir.path("split"));
  first.train.stop_at_step = 3;
  EXPECT_EQ(train_run(first).step, 3);
  RootConfig second = tokenizer_config(corpus, dir.path("split"));
  EXPECT_EQ(train_run(second, Checkpointer::latest(second.run_dir)->path).step, 6);
  const auto la = lines_with(dir.path("straight/metrics.jsonl"), "train/loss");
  const auto lb = lines_with(dir.path("split/metrics.jsonl"), "train/loss");
  ASSERT_EQ(la.size(), 6u);
  ASSERT_EQ(lb.size(), 6u);
  for (const auto& [step, j] : la) {
    for (const char* k :
         {"train/loss", "train/mel", "train/kl", "train/sem_low", "train/grad_norm/generator"})
      EXPECT_EQ(j[k].get<double>(), lb.at(step)[k].get<double>()) << k << " at step " << step;
    EXPECT_EQ(j.contains("train/d_loss"), step > 2) << step;  // the discriminator starts at step index 2
    if (step > 2)
      for (const char* k : {"train/d_loss", "train/g_mpd", "train/fm_mrd", "train/grad_norm/discriminator"})
        EXPECT_EQ(j[k].get<double>(), lb.at(step)[k].get<double>()) << k << " at step " << step;
  }
  for (const char* f : {"model.safetensors", "ema.safetensors", "optimizer.safetensors", "state.safetensors"})
    expect_same_tensors(dir.path(std::string("straight/checkpoints/step-6/") + f),
                        dir.path(std::string("split/checkpoints/step-6/") + f));
  const auto state = io::load_safetensors(dir.path("straight/checkpoints/step-6/state.safetensors")).tensors;
  EXPECT_TRUE(state.count("stage.disc.multiperioddisc.discriminators.4.convs.0.weight_g"));
  EXPECT_TRUE(state.count("stage.disc.multiresddisc.discriminators.2.band_convs.4.4.weight_v"));
  const auto v = lines_with(dir.path("straight/metrics.jsonl"), "val/mel_distance");
  ASSERT_TRUE(v.count(0) && v.count(6));
  for (const char* k : {"val/stft_distance", "val/si_sdr", "val/kl", "val/sem_high", "val/sem_low"})
    EXPECT_TRUE(v.at(6).contains(k)) << k;
  // Validation writes the demo clip as WAV and spectrogram PNG, and logs it to TensorBoard.
  EXPECT_TRUE(fs::exists(dir.path("straight/samples/step-6/clip0.recon.wav")));
  EXPECT_TRUE(fs::exists(dir.path("straight/samples/step-6/clip0.input.png")));
  bool audio_logged = false;
  for (const auto& e : fs::directory_iterator(dir.path("straight/tensorboard")))
    for (const auto& r : read_tensorboard_events(e.path().string())) audio_logged |= r.tag == "val/clip0";
  EXPECT_TRUE(audio_logged);
}

TEST(TokenizerStage, FrozenModulesGetNoGradientsAndTheGanSwitches) {
  TinyCorpus corpus;
  RootConfig cfg = tokenizer_config(corpus, "unused");
  torch::manual_seed(1);
  TokenizerStage stage(cfg, torch::kCPU);
  ASSERT_EQ(stage.optimizers().size(), 2u);
  EXPECT_EQ(stage.optimizers()[0].name, "discriminator");
  EXPECT_FALSE(stage.optimizer_active(0, 1));  // before gan.start_step
  EXPECT_TRUE(stage.optimizer_active(0, 2));
  EXPECT_TRUE(stage.optimizer_active(1, 0));
  const data::Batch batch = noise_batch(2, 640 * 6);
  const auto grads_of = [](const NamedTensors& ps) {
    int n = 0;
    for (const auto& [name, p] : ps) n += p.grad().defined() && p.grad().abs().sum().item<double>() > 0;
    return n;
  };
  const auto clear = [&] {
    for (auto& p : stage.vae()->parameters()) p.mutable_grad() = torch::Tensor();
    for (auto& [n, p] : stage.discriminator_parameters()) p.mutable_grad() = torch::Tensor();
  };
  // Generator step with the GAN on: the acoustic branch, heads and decoder learn; the frozen
  // encoder and SemBo never get a gradient.
  StepOutput g = stage.train_step(1, batch, 5);
  EXPECT_TRUE(g.metrics.count("g_mpd") && g.metrics.count("fm_mrd") && g.metrics.count("sem_high"));
  g.loss.backward();
  EXPECT_EQ(grads_of(stage.ema_parameters()), static_cast<int>(stage.ema_parameters().size()));
  for (const auto& item : stage.vae()->semantic_encoder->named_parameters())
    EXPECT_FALSE(item.value().grad().defined()) << item.key();
  for (const auto& [name, p] : stage.ema_parameters())
    EXPECT_NE(name.rfind("semantic_encoder.", 0), 0u) << name;
  clear();
  // Discriminator step: only the discriminators.
  StepOutput d = stage.train_step(0, batch, 5);
  d.loss.backward();
  EXPECT_EQ(grads_of(stage.ema_parameters()), 0);
  EXPECT_GT(grads_of(stage.discriminator_parameters()), 0);
  clear();
  // Before gan.start_step the generator sees spectral losses only.
  EXPECT_FALSE(stage.train_step(1, batch, 1).metrics.count("g_mpd"));
  // GAN off: one optimizer, no adversarial terms at any step.
  cfg.section<TokenizerStageConfig>().gan.enabled = false;
  TokenizerStage plain(cfg, torch::kCPU);
  ASSERT_EQ(plain.optimizers().size(), 1u);
  EXPECT_EQ(plain.optimizers()[0].name, "generator");
  EXPECT_FALSE(plain.train_step(0, batch, 100).metrics.count("g_mpd"));
  EXPECT_TRUE(plain.discriminator_parameters().empty());
}

TEST(TokenizerStage, BaselineVariantsTrainAndSaveTheirOwnKeys) {
  TinyCorpus corpus;
  test::TempDir dir;
  RootConfig a = tokenizer_config(corpus, dir.path("acoustic"));
  a.model.variant = "acoustic_only";
  a.train.max_steps = 2;
  a.section<TokenizerStageConfig>().gan.enabled = false;
  const TrainResult ra = train_run(a);
  const auto wa = io::load_safetensors(ra.checkpoint + "/model.safetensors").tensors;
  EXPECT_TRUE(wa.count("fc_mu.weight"));
  for (const auto& [k, v] : wa) EXPECT_NE(k.rfind("semantic_encoder.", 0), 0u) << k;
  EXPECT_FALSE(ra.validation.count("val/sem_high"));
  RootConfig u = tokenizer_config(corpus, dir.path("unified"));
  u.model.variant = "unified_1280";
  u.train.max_steps = 2;
  u.section<TokenizerStageConfig>().gan.enabled = false;
  const TrainResult ru = train_run(u);
  const auto wu = io::load_safetensors(ru.checkpoint + "/model.safetensors").tensors;
  EXPECT_FALSE(wu.count("fc_mu.weight"));
  EXPECT_EQ(wu.at("dasheng_tokenizer.upsampler.weight").size(0), 32);  // latent = encoder width
  EXPECT_FALSE(ru.validation.count("val/kl"));
  EXPECT_TRUE(ru.validation.count("val/mel_distance"));
}

// On the demo corpus (scripts/make_demo_corpus.sh, built by the ctest fixture): the tiny
// encoder's SemBo halves its validation errors within 300 CPU steps, the time-relation loss
// lowers the time-relation error, and the tokenizer trained on that SemBo cuts its held-out mel
// distance by 30 %. Run by the `train.demo_corpus` ctest entry.
TEST(DemoCorpus, DISABLED_SemBoTokenizerAndDiTLossesFall) {
  const char* corpus = std::getenv("LOSATOK_DEMO_CORPUS");
  ASSERT_TRUE(corpus != nullptr) << "set LOSATOK_DEMO_CORPUS to a scripts/make_demo_corpus.sh folder";
  const std::string manifests = std::string(corpus) + "/manifests/";
  ASSERT_TRUE(fs::exists(manifests + "all.train.jsonl")) << manifests;
  test::TempDir dir;
  const std::string common = " 'data.sources=[{manifest: " + manifests +
                             "all.train.jsonl}]' 'data.valid_sources=[{manifest: " + manifests +
                             "all.valid.jsonl}]' train.tensorboard=false";
  std::string out;
  ASSERT_EQ(test::run_command(bin() + "train --config " + test::source_path("configs/sembo_tiny.yaml") +
                                  " run_dir=" + dir.path("with") + common,
                              &out),
            0)
      << out;
  ASSERT_EQ(test::run_command(bin() + "train --config " + test::source_path("configs/sembo_tiny.yaml") +
                                  " run_dir=" + dir.path("without") + " sembo.loss.lambda_rel=0" + common,
                              &out),
            0)
      << out;
  const auto with = lines_with(dir.path("with/metrics.jsonl"), "val/rec_cos_err");
  const auto without = lines_with(dir.path("without/metrics.jsonl"), "val/rec_cos_err");
  ASSERT_TRUE(with.count(0) && with.count(300));
  for (const char* k : {"val/rec_cos_err", "val/rel_err", "val/rec_loss"}) {
    std::cout << k << ": step 0 " << with.at(0)[k].get<double>() << " -> step 300 "
              << with.at(300)[k].get<double>()
              << " (without time relation: " << without.at(300)[k].get<double>() << ")\n";
    EXPECT_LE(with.at(300)[k].get<double>(), 0.5 * with.at(0)[k].get<double>()) << k;
  }
  EXPECT_LT(with.at(300)["val/rel_err"].get<double>(), without.at(300)["val/rel_err"].get<double>());

  // The tokenizer on that SemBo (configs/tokenizer_tiny.yaml: 250 spectral steps, then 50 with
  // the GAN): held-out mel distance down by at least 30 % from the untrained decoder.
  ASSERT_EQ(test::run_command(bin() + "train --config " + test::source_path("configs/tokenizer_tiny.yaml") +
                                  " run_dir=" + dir.path("tok") +
                                  " tokenizer.sembo_checkpoint=" + dir.path("with/checkpoints/best") + common,
                              &out),
            0)
      << out;
  const auto tok = lines_with(dir.path("tok/metrics.jsonl"), "val/mel_distance");
  ASSERT_TRUE(tok.count(0) && tok.count(300));
  std::cout << "tokenizer val/mel_distance: step 0 " << tok.at(0)["val/mel_distance"].get<double>()
            << " -> step 300 " << tok.at(300)["val/mel_distance"].get<double>() << "\n";
  EXPECT_LE(tok.at(300)["val/mel_distance"].get<double>(), 0.7 * tok.at(0)["val/mel_distance"].get<double>());
  // `losatok reconstruct` with that checkpoint: a WAV as long as its input.
  std::string clip;
  {
    std::ifstream in(manifests + "all.valid.jsonl");
    std::string line;
    std::getline(in, line);
    clip = manifests + nlohmann::json::parse(line)["audio"].get<std::string>();
  }
  ASSERT_EQ(test::run_command(bin() + "reconstruct --checkpoint " + dir.path("tok/checkpoints/step-300") +
                                  " --input " + clip + " --output " + dir.path("recon.wav"),
                              &out),
            0)
      << out;
  const audio::AudioInfo in = audio::probe_audio(clip), rec = audio::probe_audio(dir.path("recon.wav"));
  EXPECT_EQ(rec.sample_rate, 16000);
  EXPECT_NEAR(static_cast<double>(rec.frames), static_cast<double>(in.frames) * 16000.0 / in.sample_rate,
              1.0);

  // The DiT on that tokenizer's latents: extraction, then text-to-audio (every domain, captions
  // through the tiny T5 of tests/fixtures), text-to-music, UniFlow-style text-to-speech (espeak-ng
  // phonemes, speaker table, durations from the alignment search) and the joint model on the
  // tiny configs. Held-out flow-matching loss at fixed sigmas and noise down by at least 20 % in
  // 300 steps (and the TTS duration loss by half); generation writes WAVs of the asked length.
  const std::string tok_ckpt = dir.path("tok/checkpoints/step-300");
  for (const char* m : {"all.train.jsonl", "all.valid.jsonl"})
    ASSERT_EQ(test::run_command(bin() + "extract --checkpoint " + tok_ckpt + " --what latents --manifest " +
                                    manifests + m + " --out " + dir.path("latents"),
                                &out),
              0)
        << out;
  const std::string dit_common = common + " dit.tokenizer_checkpoint=" + tok_ckpt +
                                 " data.cache_dir=" + dir.path("latents") +
                                 " dit.condition.text_encoder=" + test::source_path("tests/fixtures/t5_tiny");
  const auto domain = [&](const std::string& d) {
    return " 'data.sources=[{manifest: " + manifests + d +
           ".train.jsonl}]' 'data.valid_sources=[{manifest: " + manifests + d + ".valid.jsonl}]'";
  };
  const std::string joint_sources =
      " 'data.sources=[{manifest: " + manifests +
      "audio.train.jsonl, weight: 1, task: tta}, {manifest: " + manifests +
      "music.train.jsonl, weight: 1, task: ttm}, {manifest: " + manifests +
      "speech.train.jsonl, weight: 1, task: tts}]' 'data.valid_sources=[{manifest: " + manifests +
      "audio.valid.jsonl, task: tta}, {manifest: " + manifests +
      "music.valid.jsonl, task: ttm}, {manifest: " + manifests + "speech.valid.jsonl, task: tts}]'";
  for (const auto& [task, sources] : {std::pair<std::string, std::string>{"tta", ""},
                                      {"ttm", domain("music")},
                                      {"tts", domain("speech")},
                                      {"joint", joint_sources}}) {
    ASSERT_EQ(test::run_command(bin() + "train --config " +
                                    test::source_path("configs/dit_" + task + "_tiny.yaml") +
                                    " run_dir=" + dir.path(task) + dit_common + sources,
                                &out),
              0)
        << out;
    const auto fm = lines_with(dir.path(task + "/metrics.jsonl"), "val/fm_loss");
    ASSERT_TRUE(fm.count(0) && fm.count(300)) << task;
    std::vector<std::string> keys = {"val/fm_loss"};
    if (task == "tts" || task == "joint") keys.push_back("val/duration_loss");
    if (task == "joint") keys.insert(keys.end(), {"val/tta/fm_loss", "val/ttm/fm_loss", "val/tts/fm_loss"});
    for (const auto& k : keys) {
      std::cout << task << " " << k << ": step 0 " << fm.at(0)[k].get<double>() << " -> step 300 "
                << fm.at(300)[k].get<double>() << "\n";
      const double factor = k == "val/duration_loss" ? 0.5 : 0.8;
      EXPECT_LE(fm.at(300)[k].get<double>(), factor * fm.at(0)[k].get<double>()) << task << " " << k;
    }
    EXPECT_TRUE(fs::exists(dir.path(task + "/samples/step-300/gen0.wav"))) << task;
  }
  const auto generate = [&](const std::string& task, const std::string& args, const std::string& wav) {
    EXPECT_EQ(test::run_command(bin() + "generate --checkpoint " + dir.path(task + "/checkpoints/best") +
                                    " " + args + " --out " + dir.path(wav),
                                &out),
              0)
        << out;
    return audio::probe_audio(dir.path(wav));
  };
  EXPECT_EQ(generate("tta", "--text 'ambi dark woosh (Sonic Pi sample, ambi)' --seconds 3", "tta.wav").frames,
            75 * 640);
  EXPECT_EQ(generate("ttm", "--text 'Your basic rock beat from the 50s.' --seconds 4.5", "ttm.wav").frames,
            113 * 640);
  EXPECT_EQ(
      generate("tts", "--text 'And God said, Let there be light.' --speaker allison --seconds 2", "tts.wav")
          .frames,
      50 * 640);
  EXPECT_EQ(
      generate("joint", "--task ttm --text 'Your basic rock beat from the 50s.' --seconds 2", "joint.wav")
          .frames,
      50 * 640);
  // Without --seconds the length is the predicted durations': it follows the text (two held-out
  // verses of 2.95 s and 8.05 s).
  const double short_s =
      generate("tts", "--text 'In the beginning God created the heaven and the earth.' --speaker allison",
               "s.wav")
          .frames /
      16000.0;
  const double long_s =
      generate(
          "tts",
          "--text 'And the earth was without form, and void; and darkness was upon the face of the deep. And "
          "the Spirit of God moved upon the face of the waters.' --speaker allison",
          "l.wav")
          .frames /
      16000.0;
  std::cout << "tts generated lengths: " << short_s << " s (held-out clip 2.95 s), " << long_s
            << " s (8.05 s)\n";
  EXPECT_GT(short_s, 0.5 * 2.95);
  EXPECT_LT(short_s, 1.5 * 2.95);
  EXPECT_GT(long_s, 2.0 * short_s);
}

namespace {

// `cfg` written as a YAML file in `dir`.
std::string write_config(const RootConfig& cfg, const test::TempDir& dir, const std::string& name) {
  const std::string path = dir.path(name);
  test::write_text(path, config::dump(config::to_yaml(cfg)));
  return path;
}

// K steps of `cfg` in one process with batch 2B, and as two Gloo processes (`losatok launch`)
// with batch B each: the same global batch, so the same weights up to reduction order.
void expect_two_ranks_match_one_process(RootConfig cfg, const std::vector<std::string>& keys,
                                        double weight_tolerance = 2e-5) {
  test::TempDir dir;
  cfg.data.valid_sources.clear();
  cfg.train.checkpoint.every = 0;
  cfg.train.log_every = 1;
  const int per_rank = cfg.data.batch_size;
  cfg.run_dir = dir.path("one");
  cfg.data.batch_size = 2 * per_rank;
  std::string out;
  ASSERT_EQ(test::run_command(bin() + "train --config " + write_config(cfg, dir, "one.yaml") + " 2>&1", &out),
            0)
      << out;
  cfg.run_dir = dir.path("two");
  cfg.data.batch_size = per_rank;
  ASSERT_EQ(
      test::run_command(std::string(LOSATOK_BINARY) + " launch --nproc 2 -- --threads 1 train --config " +
                            write_config(cfg, dir, "two.yaml") + " 2>&1",
                        &out),
      0)
      << out;
  EXPECT_NE(out.find("2 ranks over gloo"), std::string::npos) << out;
  EXPECT_NE(out.find("[rank 1]"), std::string::npos) << out;  // rank 1 speaks only in warnings
  const std::string last = "/checkpoints/step-" + std::to_string(cfg.train.max_steps) + "/model.safetensors";
  const auto a = io::load_safetensors(dir.path("one" + last)).tensors;
  const auto b = io::load_safetensors(dir.path("two" + last)).tensors;
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [k, v] : a) {
    ASSERT_TRUE(b.count(k)) << k;
    worst = std::max(worst, test::max_abs_diff(v, b.at(k)));
  }
  EXPECT_LT(worst, weight_tolerance);  // the same weights, up to the order of floating-point sums
  const auto la = lines_with(dir.path("one/metrics.jsonl"), "train/loss");
  const auto lb = lines_with(dir.path("two/metrics.jsonl"), "train/loss");
  ASSERT_EQ(la.size(), static_cast<std::size_t>(cfg.train.max_steps));
  ASSERT_EQ(lb.size(), la.size());
  for (const auto& [step, j] : la)
    for (const auto& k : keys) {
      if (!j.contains(k)) continue;  // the discriminator's, before it starts
      ASSERT_TRUE(lb.at(step).contains(k)) << k;
      EXPECT_NEAR(j[k].get<double>(), lb.at(step)[k].get<double>(), 1e-4 * (1 + std::abs(j[k].get<double>())))
          << k << " at step " << step;
    }
  EXPECT_NE(la.at(1).at(keys[0]), la.at(cfg.train.max_steps).at(keys[0]));  // it did train
}

}  // namespace

TEST(Distributed, TwoGlooProcessesMatchOneProcessWithTheSameGlobalBatchSemBo) {
  TinyCorpus corpus;
  test::TempDir dir;
  RootConfig cfg = sembo_config(corpus, dir.path("unused"));
  cfg.model.sembo.dropout = 0;  // no randomness inside the step
  cfg.section<SemBoStageConfig>().baseline_fit_steps = 0;
  cfg.data.batch_size = 2;
  cfg.train.max_steps = 4;  // crosses an epoch (4 global batches of 4 from 9 clips: 2 per epoch)
  expect_two_ranks_match_one_process(cfg, {"train/loss", "train/grad_norm"});
}

TEST(Distributed, PaddedBatchesTakeTheSameStepOnTwoRanksAsInOneProcess) {
  TinyCorpus corpus;
  test::TempDir dir;
  RootConfig cfg = sembo_config(corpus, dir.path("unused"));
  cfg.model.sembo.dropout = 0;
  cfg.section<SemBoStageConfig>().baseline_fit_steps = 0;
  // A 1.6 s crop: the clips of 1.0 to 1.5 s are padded, so the ranks' batches hold different
  // numbers of valid tokens; each term is normalised by the global count.
  cfg.data.segment_seconds = 1.6;
  cfg.data.batch_size = 2;
  cfg.train.max_steps = 4;
  // train/loss is the mean of the ranks' own means (a log value); the update is what must agree.
  expect_two_ranks_match_one_process(cfg, {"train/grad_norm"}, 1e-5);
}

TEST(Distributed, TwoGlooProcessesMatchOneProcessWithTheSameGlobalBatchTokenizer) {
  TinyCorpus corpus;
  test::TempDir dir;
  RootConfig cfg = tokenizer_config(corpus, dir.path("unused"));
  cfg.section<TokenizerStageConfig>().sample_latent = false;
  // Spectral convergence is one norm ratio over the whole batch (ParallelWaveGAN): its gradient
  // depends on how the batch is split, in any data-parallel run. Everything else is per clip.
  cfg.section<TokenizerStageConfig>().loss.lambda_stft = 0;
  cfg.data.batch_size = 1;
  cfg.train.max_steps = 4;  // the discriminator joins at step index 2: both optimizers sync
  expect_two_ranks_match_one_process(cfg,
                                     {"train/loss", "train/grad_norm/generator", "train/mel", "train/d_loss",
                                      "train/grad_norm/discriminator", "train/g_mpd", "train/fm_mrd"});
}

TEST(Trainer, Fp16LossScalingIsExactWithoutOverflowAndItsStateResumes) {
  // On the CPU there is no autocast, but the loss scaler runs: a power-of-two scale makes the
  // run bitwise the fp32 one, and the scale (grown every 2 clean steps, halved on the
  // non-finite step) is saved and restored.
  TinyCorpus corpus;
  test::TempDir dir;
  RootConfig base = sembo_config(corpus, dir.path("fp32"));
  base.train.max_steps = 6;
  base.train.checkpoint.every = 3;
  train_run(base);
  RootConfig half = sembo_config(corpus, dir.path("fp16"));
  half.train.max_steps = 6;
  half.train.checkpoint.every = 3;
  half.train.precision = "fp16";
  half.train.loss_scale.init = 256;
  half.train.loss_scale.growth_interval = 2;
  train_run(half);
  for (const char* f : {"model.safetensors", "optimizer.safetensors"})
    expect_same_tensors(dir.path(std::string("fp32/checkpoints/step-6/") + f),
                        dir.path(std::string("fp16/checkpoints/step-6/") + f));
  const auto scale = lines_with(dir.path("fp16/metrics.jsonl"), "train/loss_scale");
  EXPECT_EQ(scale.at(1)["train/loss_scale"].get<double>(), 256);
  EXPECT_EQ(scale.at(2)["train/loss_scale"].get<double>(), 512);
  EXPECT_EQ(scale.at(6)["train/loss_scale"].get<double>(), 2048);
  const auto state = io::load_safetensors(dir.path("fp16/checkpoints/step-3/state.safetensors")).tensors;
  EXPECT_EQ(state.at("loss_scaler.scale").item<float>(), 512);

  // Resumed from step 3 with a non-finite step 4: the scale halves instead of growing.
  RootConfig again = half;
  again.run_dir = dir.path("fp16b");
  again.train.stop_at_step = 3;
  train_run(again);
  again.train.stop_at_step = 0;
  Trainer t(again, config::to_yaml(again), std::make_unique<NanSemBo>(again, std::set<int64_t>{3}));
  TrainStart s;
  s.resume_checkpoint = Checkpointer::latest(again.run_dir)->path;
  t.run(s);
  const auto after = lines_with(dir.path("fp16b/metrics.jsonl"), "train/loss_scale");
  EXPECT_EQ(after.at(3)["train/loss_scale"].get<double>(), 512);
  EXPECT_EQ(after.at(4)["train/loss_scale"].get<double>(), 256);  // overflow: halved, step skipped
  EXPECT_EQ(after.at(6)["train/loss_scale"].get<double>(), 512);
}

TEST(Distributed, ResumeWithTheSameWorldSizeIsExactAndAnotherIsExplained) {
  TinyCorpus corpus;
  test::TempDir dir;
  RootConfig cfg = sembo_config(corpus, dir.path("straight"));
  cfg.model.sembo.dropout = 0.1;  // each rank's random stream matters
  cfg.section<SemBoStageConfig>().baseline_fit_steps = 0;
  cfg.data.valid_sources.clear();
  cfg.train.max_steps = 4;
  cfg.train.checkpoint.every = 2;
  const std::string launch = std::string(LOSATOK_BINARY) + " launch --nproc 2 -- --threads 1 train ";
  std::string out;
  ASSERT_EQ(test::run_command(launch + "--config " + write_config(cfg, dir, "a.yaml"), &out), 0) << out;
  cfg.run_dir = dir.path("split");
  cfg.train.stop_at_step = 2;
  ASSERT_EQ(test::run_command(launch + "--config " + write_config(cfg, dir, "b.yaml"), &out), 0) << out;
  ASSERT_EQ(test::run_command(launch + "--resume " + cfg.run_dir + " train.stop_at_step=0", &out), 0) << out;
  expect_same_tensors(dir.path("straight/checkpoints/step-4/model.safetensors"),
                      dir.path("split/checkpoints/step-4/model.safetensors"));
  const auto state = io::load_safetensors(dir.path("split/checkpoints/step-4/state.safetensors")).tensors;
  EXPECT_TRUE(state.count("rng.cpu.rank1"));

  // One process continues a two-process run, and says what that means.
  cfg.run_dir = dir.path("shrink");
  ASSERT_EQ(test::run_command(launch + "--config " + write_config(cfg, dir, "c.yaml"), &out), 0) << out;
  ASSERT_EQ(test::run_command(bin() + "train --resume " + cfg.run_dir + " train.stop_at_step=0 2>&1", &out),
            0)
      << out;
  EXPECT_NE(out.find("was written by 2 process(es), this run has 1"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir.path("shrink/checkpoints/step-4/model.safetensors")));

  // A rank that fails stops the job: one line, non-zero status.
  EXPECT_NE(test::run_command(launch + "--config " + dir.path("missing.yaml") + " 2>&1", &out), 0);
  EXPECT_NE(out.find("missing.yaml"), std::string::npos) << out;
}

TEST(Distributed, SigintToTheLauncherCheckpointsEveryRankAndExitsCleanly) {
  TinyCorpus corpus;
  test::TempDir dir;
  const RootConfig cfg = endless_config(corpus, dir);
  // SIGINT to the launcher once training is under way: it forwards one signal per rank, each
  // finishes its step, rank 0 checkpoints, and every rank exits 0.
  const std::string out = signal_when_training(
      std::string(LOSATOK_BINARY) + " launch --nproc 2 -- --threads 1 train --config " + dir.path("cfg.yaml"),
      dir.path("run/metrics.jsonl"), "INT", dir.path("log"));
  EXPECT_NE(out.find("rc=0"), std::string::npos) << out << test::read_bytes(dir.path("log"));
  const auto ck = Checkpointer::latest(cfg.run_dir);
  ASSERT_TRUE(ck) << test::read_bytes(dir.path("log"));
  EXPECT_GT(ck->step, 0);
  EXPECT_TRUE(io::load_safetensors(ck->path + "/state.safetensors").tensors.count("rng.cpu.rank1"));
}

// CUDA only (skipped without a GPU): bf16 autocast steps of the SemBo and tokenizer stages stay
// near the fp32 losses; fp16 runs with its loss scaler (overflowing steps at the start are
// skipped while the scale backs off) and ends finite.
TEST(Cuda, MixedPrecisionTrains) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  TinyCorpus corpus;
  test::TempDir dir;
  for (const std::string stage : {"sembo", "tokenizer"}) {
    std::map<std::string, std::vector<double>> losses;
    for (const std::string precision : {"fp32", "bf16", "fp16"}) {
      RootConfig cfg = stage == "sembo" ? sembo_config(corpus, dir.path(stage + precision))
                                        : tokenizer_config(corpus, dir.path(stage + precision));
      cfg.runtime.device = "cuda";
      cfg.train.precision = precision;
      cfg.train.max_steps = 8;
      const TrainResult r = train_run(cfg);
      EXPECT_TRUE(r.finished) << stage << " " << precision;
      for (const auto& [step, j] : lines_with(dir.path(stage + precision + "/metrics.jsonl"), "train/loss")) {
        losses[precision].push_back(j["train/loss"].is_number() ? j["train/loss"].get<double>() : NAN);
        if (precision == "fp16") EXPECT_TRUE(j.contains("train/loss_scale"));
      }
    }
    for (std::size_t i = 0; i < 2; ++i)  // before the runs drift apart
      EXPECT_NEAR(losses["bf16"][i], losses["fp32"][i], 0.05 * std::abs(losses["fp32"][i]) + 1e-3)
          << stage << " bf16 step " << i + 1;
    EXPECT_TRUE(std::isfinite(losses["fp16"].back())) << stage;
  }
}
