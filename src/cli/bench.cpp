// `losatok bench --config C`: the training step of a config's stage on synthetic batches of
// the configured size, timed after warm-up: steps/s, samples/s, audio-seconds/s, peak memory.
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "losatok/core/config.h"
#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/train/dit_stage.h"
#include "losatok/train/trainer.h"

namespace fs = std::filesystem;

namespace losatok::cli {

namespace {

struct BenchOptions {
  ConfigOptions config;
  int steps = 10;
  int warmup = 2;
  bool from_features = false;
};

// A batch of noise audio at the configured segment length (or cached-feature shaped tensors).
data::Batch synthetic_batch(const RootConfig& cfg, bool from_features, int64_t index) {
  data::Batch b;
  b.index = index;
  const int64_t spt = cfg.samples_per_token();
  const double seconds = cfg.data.segment_seconds > 0 ? cfg.data.segment_seconds : cfg.data.max_seconds;
  const int64_t tokens = std::max<int64_t>(1, static_cast<int64_t>(seconds * cfg.audio.sample_rate) / spt);
  const int64_t n = cfg.data.batch_size;
  b.audio = 0.1 * torch::randn({n, tokens * spt});
  b.lengths = torch::full({n}, tokens * spt, torch::kInt64);
  if (from_features) {
    b.features["semantic_emb"] = torch::randn({n, tokens, cfg.model.encoder.embed_dim});
    b.feature_lengths = torch::full({n}, tokens, torch::kInt64);
  }
  b.items.resize(static_cast<std::size_t>(n));
  return b;
}

// The DiT reads latents and texts: a throw-away manifest of captioned clips and a latents
// cache for them (the stage computes its statistics from it), and batches of those clips.
struct SyntheticLatents {
  fs::path dir;
  std::vector<data::Clip> clips;
  std::vector<torch::Tensor> mu;  // (frames, latent_dim) per clip, as written to the cache
  SyntheticLatents(RootConfig& cfg) {
    dir = fs::temp_directory_path() / fmt::format("losatok_bench_{}", ::getpid());
    fs::create_directories(dir);
    const int64_t spt = cfg.samples_per_token();
    const double seconds = cfg.data.segment_seconds > 0 ? cfg.data.segment_seconds : cfg.data.max_seconds;
    const int64_t frames = std::max<int64_t>(1, static_cast<int64_t>(seconds * cfg.audio.sample_rate) / spt);
    std::string manifest;
    for (int i = 0; i < cfg.data.batch_size; ++i)  // captions of a typical length (~70 characters)
      manifest += fmt::format(
          "{{\"audio\": \"clip{}.wav\", \"duration\": {}, \"text\": \"a synthetic caption number {:02} for "
          "timing "
          "the text encoder and cross-attention\"}}\n",
          i, seconds, i);
    write_file_atomic((dir / "bench.jsonl").string(), manifest);
    clips = data::read_sources({{(dir / "bench.jsonl").string(), 0.0}});
    {
      data::FeatureCacheWriter writer((dir / "latents").string(), {"latents", "bench", "bench"});
      for (const auto& c : clips) {
        mu.push_back(torch::randn({frames, cfg.section<DiTStageConfig>().model.latent_dim}));
        writer.add(c.key, {{"mu", mu.back()}});
      }
    }
    cfg.data.sources = {{(dir / "bench.jsonl").string(), 0.0}};
    cfg.data.cache_dir = (dir / "latents").string();
    cfg.section<DiTStageConfig>().tokenizer_checkpoint.clear();  // no producer check, no decoding
  }
  ~SyntheticLatents() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  data::Batch batch(const RootConfig& cfg, int64_t index) const {
    data::Batch b;
    b.index = index;
    for (const auto& c : clips) b.items.push_back({&c, 0});
    b.features["mu"] = torch::stack(mu);
    b.feature_lengths = torch::full({b.size()}, mu[0].size(0), torch::kInt64);
    const int64_t spt = cfg.samples_per_token();
    b.lengths = b.feature_lengths * spt;
    return b;
  }
};

int run_bench(const BenchOptions& o, const Context& ctx) {
  RootConfig cfg = resolve_root_config(o.config, ctx);
  if (o.config.print_config) return 0;
  if (o.steps < 1 || o.warmup < 0) throw Error("bench: --steps must be >= 1 and --warmup >= 0");
  std::unique_ptr<SyntheticLatents> latents;
  if (cfg.stage == "dit") latents = std::make_unique<SyntheticLatents>(cfg);
  train::Trainer trainer(cfg, config::to_yaml(cfg));
  std::vector<data::Batch> micro;
  for (int i = 0; i < cfg.train.grad_accum; ++i)
    micro.push_back(latents ? latents->batch(cfg, i) : synthetic_batch(cfg, o.from_features, i));
  std::vector<double> times;
  train::StepReport report;
  for (int i = 0; i < o.warmup + o.steps; ++i) {
    if (trainer.device().is_cuda()) torch::cuda::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    report = trainer.step(micro);
    for (auto& [k, v] : report.metrics) (void)v.item<double>();  // wait for the step's work
    if (trainer.device().is_cuda()) torch::cuda::synchronize();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i >= o.warmup) times.push_back(dt);
  }
  std::sort(times.begin(), times.end());
  double total = 0;
  for (double t : times) total += t;
  const double mean = total / times.size(), median = times[times.size() / 2];
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::cout << fmt::format(
      "bench {} ({}, batch {} x {} micro-batch(es), {:.2f} s of audio per step, {}):\n"
      "  step      mean {:.4f} s  median {:.4f} s  min {:.4f} s  ({} steps after {} warm-up)\n"
      "  steps/s   {:.3f}\n  samples/s {:.2f}\n  audio-s/s {:.2f}\n  peak RSS  {:.0f} MiB\n",
      trainer.stage().name(), cfg.runtime.device, cfg.data.batch_size, cfg.train.grad_accum,
      report.audio_seconds, (o.from_features || latents) ? "from cached features" : "from audio", mean,
      median, times.front(), times.size(), o.warmup, 1.0 / mean, report.samples / mean,
      report.audio_seconds / mean, ru.ru_maxrss / 1024.0);
  int64_t params = 0;
  for (const auto& spec : trainer.stage().optimizers())
    for (const auto& [n, p] : spec.parameters) params += p.numel();
  std::cout << fmt::format("  trained parameters {:.1f} M\n", params / 1e6);
  if (latents) {
    // Model FLOPs of a DiT training step (forward + backward = 3 x forward): 6 N T for the
    // weights, plus self-attention's two (T x T x width) products per block and sequence.
    // Text-side and cross-attention terms are left out: a slight underestimate.
    double frames = 0;
    int64_t sequences = 0;
    for (const auto& b : micro) {
      frames += b.feature_lengths.sum().item<double>();
      sequences += b.size();
    }
    const double per_seq = frames / std::max<int64_t>(1, sequences);
    const auto& m = cfg.section<DiTStageConfig>().model;
    const double flops =
        6.0 * params * frames + 3.0 * 4.0 * m.depth * sequences * per_seq * per_seq * m.width;
    std::cout << fmt::format(
        "  model FLOPs {:.3f} TFLOP per step, {:.1f} TFLOP/s achieved ({:.0f} latent frames)\n", flops / 1e12,
        flops / mean / 1e12, frames);
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, Context& ctx) {
  auto* sub = app.add_subcommand("bench", "time the training step of a config's stage on synthetic batches");
  auto o = std::make_shared<BenchOptions>();
  sub->add_option("--steps", o->steps, "timed steps")->capture_default_str();
  sub->add_option("--warmup", o->warmup, "untimed steps first")->capture_default_str();
  sub->add_flag(
      "--from-features", o->from_features,
      "feed features shaped like the feature cache's (skips the frozen encoder, as data.cache_dir does)");
  on_config_command(*sub, ctx, o->config, [&ctx, o] { return run_bench(*o, ctx); });
}

}  // namespace losatok::cli
