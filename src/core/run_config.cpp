// validate() of the root config sections; the stage section's place in the root config.
#include "losatok/core/run_config.h"

#include <set>

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
  check(scale == "db" || scale == "log" || scale == "log10", "scale", "must be db, log or log10");
  check(mel_scale == "htk" || mel_scale == "slaney", "mel_scale", "must be htk or slaney");
  check(mel_norm == "none" || mel_norm == "slaney", "mel_norm", "must be none or slaney");
  check(floor > 0, "floor", "must be positive");
}

const StageInfo* find_stage(const std::string& name) {
  for (const auto& s : registered_stages())
    if (s.name == name) return &s;
  return nullptr;
}

std::string stage_names() {
  std::string out;
  for (const auto& s : registered_stages()) out += (out.empty() ? "" : ", ") + s.name;
  return out;
}

void RootConfig::sync_stage_section() {
  if (section_stage_ == stage && (stage.empty() || !stage_section_.empty())) return;
  const StageInfo* info = find_stage(stage);
  stage_section_ = info ? StageSectionHolder(info->make_section()) : StageSectionHolder();
  section_stage_ = stage;
}

RootConfig& RootConfig::set_stage(const std::string& name) {
  if (!find_stage(name))
    throw ConfigError("stage", "must be one of " + stage_names() + ", got '" + name + "'");
  stage = name;
  sync_stage_section();
  return *this;
}

void RootConfig::throw_wrong_section() const {
  throw ConfigError(stage.empty() ? "stage" : stage,
                    stage.empty() ? "this config names no stage, so it has no stage section"
                                  : "the '" + stage + "' stage's section is not the one this code reads");
}

namespace {

// The dotted paths of the leaves under `node` (a scalar or list is a leaf).
void leaves(const YAML::Node& node, const std::string& path, std::vector<std::string>& out) {
  if (node.IsMap() && node.size() > 0) {
    for (const auto& kv : node) leaves(kv.second, path + "." + kv.first.Scalar(), out);
  } else {
    out.push_back(path);
  }
}

bool under(const std::string& path, const std::string& prefix) {
  return path == prefix || (path.rfind(prefix, 0) == 0 && path[prefix.size()] == '.');
}

// Where a key of the old flat layout lives now ("" when it did not move).
std::string moved_to(const std::string& path) {
  for (const auto& info : registered_stages())
    for (const auto& [from, to] : info.moved_keys)
      if (under(path, from)) return to + path.substr(from.size());
  return "";
}

ConfigError moved_error(const std::string& at, const std::string& to) {
  return ConfigError(
      at,
      "moved to " + to + " (loss weights and stage switches live in their stage's section; docs/configs.md)");
}

}  // namespace

void RootConfig::check_stage_keys(const YAML::Node& node, const std::string& path) const {
  if (!node.IsMap()) return;
  static const std::set<std::string> shared = {"stage",    "run_dir", "seed", "runtime", "audio",
                                               "frontend", "model",   "data", "train"};
  for (const auto& kv : node) {
    const std::string key = kv.first.Scalar();
    if (shared.count(key) || key == stage) continue;
    std::vector<std::string> paths;
    leaves(kv.second, key, paths);
    for (const auto& p : paths) {
      const std::string at = config::detail::join_path(path, p);
      if (const std::string to = moved_to(p); !to.empty()) throw moved_error(at, to);
      if (const StageInfo* owner = find_stage(key))
        throw ConfigError(at, "belongs to the " + owner->name + " stage, and this config's stage is " +
                                  (stage.empty() ? "not set" : stage));
    }
    if (key == "loss")
      throw ConfigError(config::detail::join_path(path, paths.front()),
                        "the flat loss: section is gone: loss weights live in their stage's section (" +
                            stage_names() + "; docs/configs.md)");
  }
}

void RootConfig::validate() const {
  check(stage.empty() || find_stage(stage), "stage",
        "must be one of " + stage_names() + ", got '" + stage + "'");
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
  const YAML::Node all = config::to_yaml(cfg);
  YAML::Node n;
  n["frontend"] = all["frontend"];
  n["model"] = all["model"];
  if (!cfg.stage.empty()) {
    n["stage"] = cfg.stage;
    if (all[cfg.stage]) n[cfg.stage] = all[cfg.stage];
  }
  return config::dump(n);
}

namespace {

// The stage an override list sets last (`stage=x`, `++stage=x`), or "".
std::string stage_override(const std::vector<std::string>& overrides) {
  std::string out;
  for (std::string o : overrides) {
    while (!o.empty() && o[0] == '+') o.erase(0, 1);
    if (o.rfind("stage=", 0) == 0) out = o.substr(6);
  }
  return out;
}

}  // namespace

config::ConfigTree compose_root_config(const std::vector<std::string>& files,
                                       const std::vector<std::string>& overrides, const YAML::Node& base) {
  YAML::Node defaults = config::to_yaml(RootConfig{});
  const auto with_base = [&](const YAML::Node& d, const std::string& stage) {
    config::ConfigTree t;
    t.root.reset(config::deep_copy(d));
    if (base.IsMap()) {
      YAML::Node overlay(YAML::NodeType::Map);
      for (const auto& kv : base) {
        const std::string key = kv.first.as<std::string>();
        if (key == "stage" && !stage.empty()) continue;
        if (find_stage(key) && key != stage) continue;  // another stage's section stays behind
        overlay[key] = kv.second;
      }
      config::merge(t, overlay, "defaults");
    }
    return t.root;
  };
  for (const auto& o : overrides) {
    std::string key = o.substr(0, o.find('='));
    key.erase(0, key.find_first_not_of("+~"));
    if (const std::string to = moved_to(key); !to.empty())
      throw moved_error(key, to).with_origin("command line");
  }
  // The stage decides which section's defaults the tree starts from: read it from the files
  // (and the checkpoint's base) first, then let an override have the last word.
  std::string stage = stage_override(overrides);
  if (stage.empty()) {
    const config::ConfigTree first = config::compose(with_base(defaults, ""), files, {});
    const YAML::Node s = first.root["stage"];
    if (s && s.IsScalar()) stage = s.Scalar();
  }
  if (find_stage(stage)) {
    RootConfig r;
    r.set_stage(stage);
    defaults = config::to_yaml(r);
  }
  return config::compose(with_base(defaults, stage), files, overrides);
}

RootConfig read_root_config(const std::vector<std::string>& files, const std::vector<std::string>& overrides,
                            const YAML::Node& base) {
  return config::read<RootConfig>(compose_root_config(files, overrides, base));
}

}  // namespace losatok
