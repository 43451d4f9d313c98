// `losatok import` (reference / HF weights -> our checkpoint) and `losatok export` (model-only
// weights with the reference names, as safetensors or a .pt that Python's torch.load reads).
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/gen/dit_pipeline.h"
#include "losatok/models/init.h"
#include "losatok/models/tokenizer_checkpoint.h"
#include "model_setup.h"

namespace losatok::cli {

namespace fs = std::filesystem;

namespace {

// An HF folder's config.json describes the encoder; a head count that differs from ours would
// load without a shape error and silently compute something else, so check it.
void check_hf_encoder_config(const std::string& from, const EncoderConfig& ours) {
  fs::path dir = fs::is_directory(from) ? fs::path(from) : fs::path(from).parent_path();
  const fs::path file = dir / "config.json";
  if (!fs::exists(file)) return;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(file.string()));
  } catch (const nlohmann::json::exception&) {
    spdlog::warn("{}: not valid JSON; encoder sizes not cross-checked", file.string());
    return;
  }
  if (!j.is_object() || !j.contains("audio_encoder_config") || !j["audio_encoder_config"].is_object()) return;
  const auto& a = j["audio_encoder_config"];
  auto compare = [&](const char* key, long long value, const char* ours_key) {
    if (a.contains(key) && a[key].is_number_integer() && a[key].get<long long>() != value)
      throw Error(file.string() + ": audio_encoder_config." + key + " is " +
                  std::to_string(a[key].get<long long>()) + " but model.encoder." + ours_key + " is " +
                  std::to_string(value) + " (set it in the config)");
  };
  compare("num_heads", ours.num_heads, "num_heads");
  compare("embed_dim", ours.embed_dim, "embed_dim");
  compare("depth", ours.depth, "depth");
  compare("target_length", ours.target_length, "target_length");
  spdlog::info("{}: encoder sizes agree with model.encoder", file.string());
}

}  // namespace

void add_weights_commands(CLI::App& app, Context& ctx) {
  {
    auto* sub = app.add_subcommand(
        "import",
        "reference LoSATok .pth, MiDashengLM (HF) or Dasheng weights -> our checkpoint (.safetensors)");
    struct Opts {
      ModelOptions model;
      ConfigOptions config;
      std::string out;
    };
    auto o = std::make_shared<Opts>();
    sub->add_option("--from", o->model.checkpoint,
                    "source: .pth / .pt, .safetensors, or an HF folder / index.json")
        ->required();
    sub->add_option("--out", o->out, "our checkpoint (.safetensors)")->required();
    sub->add_flag("--lenient", o->model.lenient, "write what matches and list the rest instead of failing");
    on_config_command(*sub, ctx, o->config, [&ctx, o]() {
      const io::WeightSet weights = io::read_weights(o->model.checkpoint);
      const RootConfig cfg = resolve_root_config(o->config, ctx);
      if (o->config.print_config) return 0;
      const io::MappedWeights mapped = io::map_to_vae_names(weights.tensors);
      if (!mapped.scope.empty()) check_hf_encoder_config(o->model.checkpoint, cfg.model.encoder);
      const models::SkipInit skip;  // only loaded entries are written out
      models::AudioVAE vae(cfg.model, cfg.frontend.dasheng, cfg.frontend.vocos);
      io::LoadOptions lo;
      lo.strict = !o->model.lenient;
      lo.scope = mapped.scope;
      const io::LoadReport report = io::load_weights(*vae, mapped.tensors, weights.source, lo);
      // Only what the source provided and the model accepted, in the model's dtype.
      const io::TensorMap state = io::module_state(*vae);
      io::TensorMap out;
      for (const auto& name : report.loaded) out[name] = state.at(name);
      std::map<std::string, std::string> meta = {{"format", "losatok"},
                                                 {kConfigMetadataKey, weights_config_yaml(cfg)},
                                                 {"imported_from", weights.source}};
      if (!mapped.scope.empty()) meta["scope"] = mapped.scope;
      io::save_weights(o->out, out, "safetensors", meta);
      spdlog::info("{} ({}; {}) -> {}: {}{}", weights.source, weights.format, mapped.layout, o->out,
                   report.summary(),
                   (mapped.dropped.empty() && weights.unread == 0)
                       ? ""
                       : "; " + std::to_string(mapped.dropped.size() + weights.unread) +
                             " non-encoder tensors skipped");
      if (!report.clean())
        spdlog::warn("imported leniently: the model has entries this file did not provide");
      return 0;
    });
  }
  {
    auto* sub = app.add_subcommand(
        "export", "model-only weights (EMA when the checkpoint has it) with the reference names");
    struct Opts {
      std::string checkpoint, out, format;
      bool no_tokenizer = false;
    };
    auto o = std::make_shared<Opts>();
    sub->add_option("--checkpoint", o->checkpoint, "our .safetensors or a checkpoint folder")->required();
    sub->add_option("--out", o->out, "output file")->required();
    sub->add_option("--format", o->format, "safetensors or pt (default: from the --out extension)")
        ->check(CLI::IsMember({"safetensors", "pt"}));
    sub->add_flag(
        "--no-tokenizer", o->no_tokenizer,
        "DiT checkpoints: leave the tokenizer out (by default the export carries it as tokenizer.*, so "
        "`generate` needs nothing else)");
    sub->callback([&ctx, o] {
      ctx.action = [o]() {
        io::WeightSet weights = io::read_weights(o->checkpoint);
        io::TensorMap out;
        for (auto& [name, t] : weights.tensors)
          if (!io::is_recomputed_buffer(name)) out[name] = t;
        const std::string format = o->format.empty() ? io::weight_format_for(o->out) : o->format;
        std::map<std::string, std::string> meta;
        for (const char* key : {kConfigMetadataKey, gen::kTokenizerKey, gen::kTokenizerConfigKey})
          if (const auto it = weights.metadata.find(key); it != weights.metadata.end())
            meta[it->first] = it->second;
        const YAML::Node carried = models::checkpoint_config(weights);
        const bool dit = carried.IsMap() && carried["stage"] && carried["stage"].as<std::string>() == "dit";
        if (dit && !o->no_tokenizer && format == "safetensors" && !meta.count(gen::kTokenizerConfigKey)) {
          const RootConfig cfg = read_root_config({}, {}, gen::dit_checkpoint_config(weights));
          std::string tok;
          try {
            tok = gen::find_dit_tokenizer(weights, cfg.section<DiTStageConfig>());
          } catch (const Error& e) {
            throw Error(first_line(e.what()) + " (export --no-tokenizer leaves it out)");
          }
          if (!tok.empty()) {
            const io::WeightSet t = io::read_weights(tok);
            const auto it = t.metadata.find(kConfigMetadataKey);
            if (it == t.metadata.end())
              throw Error("tokenizer '" + t.source + "' carries no config in its metadata");
            for (const auto& [name, tensor] : t.tensors)
              if (!io::is_recomputed_buffer(name)) out[gen::kTokenizerPrefix + name] = tensor;
            meta[gen::kTokenizerConfigKey] = it->second;
            spdlog::info("the export carries the tokenizer {} ({} tensors)", t.source, t.tensors.size());
          }
        }
        io::save_weights(o->out, out, format, meta);
        spdlog::info("{} -> {} ({}, {} tensors)", weights.source, o->out, format, out.size());
        return 0;
      };
    });
  }
}

}  // namespace losatok::cli
