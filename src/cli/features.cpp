// `losatok features`: a front end's log-mel of one audio file, as safetensors tensor `mel`.
#include <torch/torch.h>

#include "commands.h"
#include "losatok/audio/audio_io.h"
#include "losatok/audio/mel.h"
#include "losatok/core/logging.h"
#include "losatok/io/safetensors.h"

namespace losatok::cli {

void add_features_command(CLI::App& app, Context& ctx) {
  auto* sub = app.add_subcommand("features", "write a front end's log-mel (n_mels, frames) of an audio file");
  struct Opts {
    std::string frontend = "dasheng", input, output;
    ConfigOptions config;  // front-end parameters: frontend.<name>.*, audio.*
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("--frontend", o->frontend, "dasheng (64 mels, dB) or vocos (128 mels, log)")
      ->check(CLI::IsMember({"dasheng", "vocos"}))
      ->capture_default_str();
  sub->add_option("input", o->input, "audio file (any format libsndfile reads)")->required();
  sub->add_option("output", o->output, "output .safetensors")->required();
  on_config_command(*sub, ctx, o->config, [&ctx, o]() {
    const RootConfig cfg = resolve_root_config(o->config, ctx);
    if (o->config.print_config) return 0;
    const MelConfig& mc = o->frontend == "dasheng" ? cfg.frontend.dasheng : cfg.frontend.vocos;
    const std::vector<float> wave =
        audio::load_audio(o->input, cfg.audio.sample_rate, 0.0, -1.0, cfg.audio.resample_quality);
    const audio::LogMel frontend(mc);
    torch::NoGradGuard no_grad;
    const torch::Tensor x = torch::from_blob(const_cast<float*>(wave.data()),
                                             {static_cast<int64_t>(wave.size())}, torch::kFloat32);
    const torch::Tensor mel = frontend(x);
    io::save_safetensors(o->output, {{"mel", mel}},
                         {{"frontend", o->frontend},
                          {"source", o->input},
                          {"sample_rate", std::to_string(mc.sample_rate)},
                          {"hop_length", std::to_string(mc.hop_length)}});
    spdlog::info("{}: {} mel {} x {} frames ({:.2f} s) -> {}", o->input, o->frontend, mel.size(0),
                 mel.size(1), wave.size() / static_cast<double>(mc.sample_rate), o->output);
    return 0;
  });
}

}  // namespace losatok::cli
