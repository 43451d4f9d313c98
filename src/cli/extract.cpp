// `losatok extract`: fill the feature cache with frozen-encoder features or tokenizer latents.
#include "losatok/data/extract.h"

#include <torch/torch.h>

#include <chrono>

#include "losatok/core/logging.h"
#include "model_setup.h"

namespace losatok::cli {

void add_extract_command(CLI::App& app, Context& ctx) {
  auto* sub =
      app.add_subcommand("extract", "precompute semantic features or tokenizer latents into a feature cache");
  struct Opts {
    ModelOptions model;
    ConfigOptions config;
    std::string manifest, what = "semantic", out;
    int batch_size = 8;
    double shard_mb = 256;
  };
  auto o = std::make_shared<Opts>();
  add_model_options(*sub, o->model);
  sub->add_option("--manifest", o->manifest, "JSON Lines manifest of the clips")->required();
  sub->add_option("--what", o->what, "semantic (encoder features) or latents (tokenizer mu, logvar)")
      ->check(CLI::IsMember({"semantic", "latents"}))
      ->capture_default_str();
  sub->add_option("--out", o->out, "cache folder (resumed when it exists and the producer matches)")
      ->required();
  sub->add_option("--batch-size", o->batch_size, "clips per forward pass")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--shard-mb", o->shard_mb, "features per shard file, MB")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  on_config_command(*sub, ctx, o->config, [&ctx, o]() {
    LoadedVae m = load_vae(o->model, o->config, ctx, /*encoder_only_ok=*/o->what == "semantic");
    if (o->config.print_config) return 0;
    const auto t0 = std::chrono::steady_clock::now();
    const data::CacheProducer producer = data::cache_producer(o->what, *m.vae, m.config);
    data::FeatureCacheWriter writer(o->out, producer, o->shard_mb);
    const auto clips = data::read_sources({{o->manifest, 0.0}});
    const auto r = data::extract_features(*m.vae, m.config, clips, o->what, writer, o->batch_size, m.device);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spdlog::info(
        "extract {} -> {}: {} clips written ({:.1f} s of audio, {:.1f}x real time), {} already there, {} "
        "bad",
        o->manifest, o->out, r.written, r.audio_seconds, r.audio_seconds / s, r.skipped_existing,
        r.bad.size());
    return 0;
  });
}

}  // namespace losatok::cli
