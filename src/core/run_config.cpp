// validate() of the root config sections.
#include "losatok/core/run_config.h"

#include "losatok/audio/audio_io.h"
#include "losatok/core/logging.h"

namespace losatok {

using config::check;

void RuntimeConfig::validate() const {
  check(device == "cpu" || device == "cuda" || device.rfind("cuda:", 0) == 0, "device",
        "must be cpu, cuda or cuda:N, got '" + device + "'");
  check(threads >= 0, "threads", "must be >= 0 (0 = all cores)");
  check(interop_threads >= 1, "interop_threads", "must be >= 1");
  check(blas_threads >= 0, "blas_threads", "must be >= 0 (0 = same as threads)");
  check(is_log_level(log_level), "log_level", "must be trace, debug, info, warn, error or off");
}

void AudioConfig::validate() const {
  check(sample_rate > 0, "sample_rate", "must be positive");
  check(audio::resample_quality_index(resample_quality) >= 0, "resample_quality",
        "must be quick, low, mq, hq or vhq");
}

void MelConfig::validate() const {
  check(sample_rate > 0, "sample_rate", "must be positive");
  check(n_fft > 0, "n_fft", "must be positive");
  check(win_length > 0 && win_length <= n_fft, "win_length", "must be in 1..n_fft");
  check(hop_length > 0, "hop_length", "must be positive");
  check(n_mels > 0, "n_mels", "must be positive");
  check(f_min >= 0, "f_min", "must be >= 0");
  check(effective_f_max() > f_min && effective_f_max() <= sample_rate / 2.0, "f_max",
        "must be in (f_min, sample_rate/2]");
  check(power == 1.0 || power == 2.0, "power", "must be 1 (magnitude) or 2 (power)");
  check(scale == "db" || scale == "log", "scale", "must be db or log");
  check(floor > 0, "floor", "must be positive");
}

void RootConfig::validate() const {
  check(stage.empty() || stage == "sembo" || stage == "tokenizer" || stage == "dit" || stage == "probe",
        "stage", "must be sembo, tokenizer, dit or probe, got '" + stage + "'");
  check(!run_dir.empty(), "run_dir", "must not be empty");
  for (const auto& [name, mel] :
       {std::pair<const char*, const MelConfig*>{"dasheng", &frontend.dasheng}, {"vocos", &frontend.vocos}})
    check(mel->sample_rate == audio.sample_rate, std::string("frontend.") + name + ".sample_rate",
          "must equal audio.sample_rate (" + std::to_string(audio.sample_rate) + ")");
  // One token rate for the semantic encoder, the acoustic branch and the decoder.
  const long long spt = 1LL * frontend.dasheng.hop_length * model.encoder.patch_frames;
  check(1LL * frontend.vocos.hop_length * model.acoustic.patch_frames == spt, "model.acoustic.patch_frames",
        "frontend.vocos.hop_length x patch_frames must equal the encoder's " + std::to_string(spt) +
            " samples per token");
  check(train.precision == "fp32" || runtime.device != "cpu", "train.precision",
        "bf16 / fp16 autocast needs a CUDA device (runtime.device is cpu)");
  check(1LL * model.decoder.hop_length * model.decoder.upsample == spt, "model.decoder.hop_length",
        "hop_length x upsample must equal the encoder's " + std::to_string(spt) + " samples per token");
}

std::string weights_config_yaml(const RootConfig& cfg) {
  YAML::Node n;
  n["frontend"] = config::to_yaml(cfg.frontend);
  n["model"] = config::to_yaml(cfg.model);
  if (cfg.stage == "dit") {  // a DiT checkpoint generates without its training config
    n["stage"] = cfg.stage;
    n["dit"] = config::to_yaml(cfg.dit);
  }
  return config::dump(n);
}

}  // namespace losatok
