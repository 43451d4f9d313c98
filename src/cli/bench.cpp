// `losatok bench --config C`: the training step of a config's stage on synthetic batches of
// the configured size, timed after warm-up: steps/s, samples/s, audio-seconds/s, peak memory.
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "losatok/core/config.h"
#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/train/dit_stage.h"
#include "losatok/train/op_count.h"
#include "losatok/train/trainer.h"

namespace fs = std::filesystem;

namespace losatok::cli {

namespace {

struct BenchOptions {
  ConfigOptions config;
  int steps = 10;
  int warmup = 2;
  bool from_features = false;
  bool count_ops = false;
  double peak_tflops = 0;  // 0: the detected GPU's known bf16 peak, none on a CPU
  std::string json_out;
};

// The model name of the N-th NVIDIA GPU as the driver reports it (/proc/driver/nvidia/gpus, in
// PCI bus order: the order CUDA uses with CUDA_DEVICE_ORDER=PCI_BUS_ID); empty when unknown.
std::string gpu_model(int64_t index) {
  std::vector<fs::path> gpus;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/driver/nvidia/gpus", ec)) gpus.push_back(e.path());
  std::sort(gpus.begin(), gpus.end());
  if (index < 0 || index >= static_cast<int64_t>(gpus.size())) return "";
  // /proc files report size 0: read them line by line.
  std::ifstream in(gpus[static_cast<std::size_t>(index)] / "information");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("Model:", 0) == 0) {
      std::string name = line.substr(6);
      name.erase(0, name.find_first_not_of(" \t"));
      return name;
    }
  return "";
}

// Dense bf16 tensor-core peaks (TFLOP/s) of GPUs by the driver's model name, from the vendors'
// data sheets (SXM parts; the PCIe/NVL variants are close enough to be named separately later).
double known_peak_tflops(const std::string& name) {
  struct Peak {
    const char* key;
    double tflops;
  };
  static const Peak peaks[] = {{"H200", 989.0}, {"H100", 989.0}, {"GH200", 989.0}, {"B200", 2250.0},
                               {"A100", 312.0}, {"L40S", 362.0}, {"L4", 121.0},    {"A10", 125.0},
                               {"4090", 165.0}, {"V100", 125.0}};
  for (const auto& p : peaks)
    if (name.find(p.key) != std::string::npos) return p.tflops;
  return 0;
}

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
  nlohmann::json out = {{"stage", trainer.stage().name()},
                        {"device", cfg.runtime.device},
                        {"batch_size", cfg.data.batch_size},
                        {"grad_accum", cfg.train.grad_accum},
                        {"precision", cfg.train.precision},
                        {"audio_seconds_per_step", report.audio_seconds},
                        {"steps", times.size()},
                        {"warmup", o.warmup},
                        {"step_s", {{"mean", mean}, {"median", median}, {"min", times.front()}}},
                        {"samples_per_s", report.samples / mean},
                        {"audio_s_per_s", report.audio_seconds / mean},
                        {"peak_rss_mib", ru.ru_maxrss / 1024.0},
                        {"trained_parameters", params}};
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
    out["model_tflop_per_step"] = flops / 1e12;
    out["achieved_tflops"] = flops / mean / 1e12;
    double peak = o.peak_tflops;
    std::string peak_source = "--peak-tflops";
    if (peak <= 0 && trainer.device().is_cuda()) {
      const std::string gpu = gpu_model(trainer.device().has_index() ? trainer.device().index() : 0);
      peak = known_peak_tflops(gpu);
      peak_source = gpu.empty() ? "unknown GPU" : gpu;
    }
    if (peak > 0) {
      std::cout << fmt::format("  MFU {:.1f} % of {:.0f} TFLOP/s ({})\n", 100 * flops / mean / 1e12 / peak,
                               peak, peak_source);
      out["peak_tflops"] = peak;
      out["mfu"] = flops / mean / 1e12 / peak;
    }
  }
  if (o.count_ops) {
    // One more step with a RecordFunction callback counting the ATen operations it dispatches
    // (not timed: the callback slows every operation down).
    train::OpCounter counter;
    {
      const train::StepReport counted = trainer.step(micro);
      for (auto& [k, v] : counted.metrics) (void)v.item<double>();
    }
    const train::OpCounts counts = counter.counts(), views = counter.view_counts();
    std::string line =
        fmt::format("  ATen ops per step {} (and {} view/alias ops):", train::OpCounter::total(counts),
                    train::OpCounter::total(views));
    nlohmann::json by_phase = nlohmann::json::object(), top = nlohmann::json::object(),
                   views_by_phase = nlohmann::json::object();
    std::string tops;
    for (std::size_t i = 0; i < counts.size(); ++i) {
      const auto phase = static_cast<train::OpPhase>(i);
      const char* name = train::op_phase_name(phase);
      line += fmt::format(" {} {}", name, counts[i]);
      by_phase[name] = counts[i];
      views_by_phase[name] = views[i];
      if (counts[i] == 0) continue;
      std::string most = fmt::format("    {:<10}", name);
      std::size_t shown = 0;
      for (const auto& [op, n] : counter.top(phase, 40)) {
        if (shown++ < 6) most += fmt::format(" {} {}", op, n);
        top[name][op] = n;
      }
      tops += most + "\n";
    }
    std::cout << line << "\n  most frequent:\n" << tops;
    out["ops_per_step"] = {{"total", train::OpCounter::total(counts)},
                           {"by_phase", by_phase},
                           {"most_frequent", top},
                           {"view_ops", train::OpCounter::total(views)},
                           {"view_ops_by_phase", views_by_phase}};
  }
  if (!o.json_out.empty()) write_file_atomic(o.json_out, out.dump(2) + "\n");
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, Context& ctx) {
  auto* sub = app.add_subcommand("bench", "time the training step of a config's stage on synthetic batches");
  auto o = std::make_shared<BenchOptions>();
  sub->add_option("--steps", o->steps, "timed steps")->capture_default_str();
  sub->add_option("--warmup", o->warmup, "untimed steps first")->capture_default_str();
  sub->add_flag("--count-ops", o->count_ops,
                "count the ATen operations of one more step by phase (forward, backward, optimizer, ...)");
  sub->add_option("--peak-tflops", o->peak_tflops,
                  "peak TFLOP/s for the MFU (default: the detected GPU's dense bf16 peak)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--json", o->json_out, "write the figures to this JSON file");
  sub->add_flag(
      "--from-features", o->from_features,
      "feed features shaped like the feature cache's (skips the frozen encoder, as data.cache_dir does)");
  on_config_command(*sub, ctx, o->config, [&ctx, o] { return run_bench(*o, ctx); });
}

}  // namespace losatok::cli
