// The root config every subcommand reads (docs/configs.md): the shared sections (run,
// runtime, audio, front ends, model, data, train) and the chosen stage's own section, which the
// stage declares next to its code (core/stage_section.h). Each section is a small struct with
// defaults, `visit` and `validate`.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "losatok/audio/mel_config.h"
#include "losatok/core/config.h"
#include "losatok/core/stage_section.h"
#include "losatok/data/data_config.h"
#include "losatok/models/model_config.h"
#include "losatok/train/train_config.h"

namespace losatok {

// Threads and device. OpenBLAS's own pthreads and LibTorch's OpenMP pool must not both
// spin on the same cores: see README "Threads" for the measurements behind the defaults.
struct RuntimeConfig {
  std::string device = "cpu";  // cpu | cuda | cuda:N
  int threads = 0;             // LibTorch intra-op (OpenMP) threads; 0 = all cores
  int interop_threads = 1;     // LibTorch inter-op pool
  int blas_threads = 0;        // OpenBLAS threads; 0 = same as `threads`
  std::string log_level = "info";

  template <class V>
  void visit(V& v) {
    v("device", device);
    v("threads", threads);
    v("interop_threads", interop_threads);
    v("blas_threads", blas_threads);
    v("log_level", log_level);
  }
  void validate() const;
};

struct AudioConfig {
  int sample_rate = 16000;
  std::string resample_quality = "hq";  // libsoxr recipe: quick | low | mq | hq | vhq

  template <class V>
  void visit(V& v) {
    v("sample_rate", sample_rate);
    v("resample_quality", resample_quality);
  }
  void validate() const;
};

// The two log-mel front ends of docs/method.md.
struct FrontEndsConfig {
  MelConfig dasheng = MelConfig::dasheng();
  MelConfig vocos = MelConfig::vocos();

  template <class V>
  void visit(V& v) {
    v("dasheng", dasheng);
    v("vocos", vocos);
  }
};

struct RootConfig {
  std::string stage;  // a registered stage (stage_names()); empty for tools
  std::string run_dir = "runs/default";
  int64_t seed = 0;
  RuntimeConfig runtime;
  AudioConfig audio;
  FrontEndsConfig frontend;
  ModelConfig model;  // sizes of the LoSATok modules (configs/model/*.yaml)
  DataConfig data;
  TrainConfig train;

  template <class V>
  void visit(V& v) {
    v("stage", stage);
    v("run_dir", run_dir);
    v("seed", seed);
    v("runtime", runtime);
    v("audio", audio);
    v("frontend", frontend);
    v("model", model);
    v("data", data);
    v("train", train);
    // `stage` is read first: its section is known by now.
    if constexpr (std::is_same_v<V, config::Reader>) check_stage_keys(v.node(), v.path());
    sync_stage_section();
    if (!stage_section_.empty()) v(stage.c_str(), stage_section_);
  }
  void validate() const;

  // The chosen stage's section, typed by the stage (`cfg.section<SemBoStageConfig>()`); an error
  // naming the stage when this config's stage has another section type.
  template <class T>
  T& section() {
    sync_stage_section();
    if (T* p = stage_section_.as<T>()) return *p;
    throw_wrong_section();
  }
  template <class T>
  const T& section() const {
    if (const T* p = stage_section_.as<T>()) return *p;
    throw_wrong_section();
  }
  // Sets `stage` and gives it its section's defaults.
  RootConfig& set_stage(const std::string& name);

  // Audio samples per 25 Hz token (the encoder's hop x patch): crops, cache frames, durations.
  int64_t samples_per_token() const { return 1LL * frontend.dasheng.hop_length * model.encoder.patch_frames; }
  // Tokens (latent frames) per second: 25 for the paper's 16 kHz and 640 samples per token.
  double token_rate() const { return static_cast<double>(audio.sample_rate) / samples_per_token(); }

 private:
  // Keys of another stage's section, or of the old flat layout (`loss.*`, `gan.*`): one-line
  // errors naming the key and where it belongs now.
  void check_stage_keys(const YAML::Node& node, const std::string& path) const;
  // Makes the section holder match `stage` (a registered stage's defaults; empty otherwise).
  void sync_stage_section();
  [[noreturn]] void throw_wrong_section() const;

  StageSectionHolder stage_section_;
  std::string section_stage_;  // the stage stage_section_ was made for
};

// The config tree a root config is read from: defaults (with the section of the stage the files
// or overrides choose) -> `base` (sections a checkpoint carries; its stage section only when the
// stage stays the same) -> files -> overrides -> interpolation.
config::ConfigTree compose_root_config(const std::vector<std::string>& files,
                                       const std::vector<std::string>& overrides,
                                       const YAML::Node& base = {});
// compose_root_config + read + validate.
RootConfig read_root_config(const std::vector<std::string>& files, const std::vector<std::string>& overrides,
                            const YAML::Node& base = {});

// Safetensors metadata key under which our weight files carry the `frontend` and `model`
// config sections, the stage and its section (a DiT generates without its training config).
inline constexpr const char* kConfigMetadataKey = "losatok.config";
// YAML of those sections.
std::string weights_config_yaml(const RootConfig& cfg);

}  // namespace losatok
