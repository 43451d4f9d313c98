// `losatok extract`: fill the feature cache with frozen-encoder features or tokenizer latents.
#include "losatok/data/extract.h"

#include <torch/torch.h>

#include <chrono>

#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/models/t5.h"
#include "model_setup.h"

namespace losatok::cli {

void add_extract_command(CLI::App& app, Context& ctx) {
  auto* sub =
      app.add_subcommand("extract", "precompute semantic features or tokenizer latents into a feature cache");
  struct Opts {
    ModelOptions model;
    ConfigOptions config;
    std::string manifest, what = "semantic", out, text_encoder;
    int max_tokens = 512;
    int batch_size = 8;
    double shard_mb = 256;
  };
  auto o = std::make_shared<Opts>();
  add_model_options(*sub, o->model);
  sub->get_option("--checkpoint")->required(false)->description("the tokenizer (semantic, latents)");
  sub->add_option("--manifest", o->manifest, "JSON Lines manifest of the clips")->required();
  sub->add_option("--what", o->what,
                  "semantic (encoder features), latents (tokenizer mu, logvar) or text (T5 features of the "
                  "captions, `cond_emb`, for dit.condition.source cache)")
      ->check(CLI::IsMember({"semantic", "latents", "text"}))
      ->capture_default_str();
  sub->add_option("--text-encoder", o->text_encoder,
                  "--what text: a Hugging Face T5 / Flan-T5 folder (config.json, weights, spiece.model)");
  sub->add_option("--max-tokens", o->max_tokens, "--what text: longer captions are cut (EOS kept)")
      ->check(CLI::Range(2, 1 << 20))
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
    if (o->what == "text") {
      if (o->text_encoder.empty()) throw Error("extract --what text needs --text-encoder DIR");
      if (!o->model.checkpoint.empty())
        throw Error("extract --what text reads no --checkpoint (the T5 is --text-encoder)");
      ConfigOptions co = o->config;
      if (!o->model.device.empty()) co.overrides.push_back("runtime.device=" + o->model.device);
      const RootConfig cfg = resolve_root_config(co, ctx);
      if (o->config.print_config) return 0;
      const auto t0 = std::chrono::steady_clock::now();
      models::T5TextEncoder t5(o->text_encoder, resolve_device(cfg.runtime.device), o->max_tokens);
      data::FeatureCacheWriter writer(o->out, data::text_cache_producer(t5), o->shard_mb);
      const auto r =
          data::extract_text_features(t5, data::read_sources({{o->manifest, 0.0}}), writer, o->batch_size);
      spdlog::info("extract text {} -> {}: {} captions written, {} already there ({:.1f} s)", o->manifest,
                   o->out, r.written, r.skipped_existing,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      return 0;
    }
    if (o->model.checkpoint.empty())
      throw Error("extract --what " + o->what + " needs --checkpoint (the tokenizer)");
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
