// The root config every subcommand reads (SPEC section 3). Later stages add their sections
// here; each section is a small struct with defaults, `visit` and `validate`.
#pragma once

#include <cstdint>
#include <string>

#include "losatok/audio/mel_config.h"
#include "losatok/core/config.h"
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

// The two log-mel front ends of SPEC section 1.
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
  std::string stage;  // sembo | tokenizer | dit | probe (empty for tools)
  std::string run_dir = "runs/default";
  int64_t seed = 0;
  RuntimeConfig runtime;
  AudioConfig audio;
  FrontEndsConfig frontend;
  ModelConfig model;  // sizes of the LoSATok modules (configs/model/*.yaml)
  DataConfig data;
  TrainConfig train;
  LossConfig loss;
  SemBoStageConfig sembo;  // the SemBo stage's own switches
  GanConfig gan;           // the tokenizer's discriminators
  TokenizerStageConfig tokenizer;
  DiTStageConfig dit;  // the DiT stage and `losatok generate`

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
    v("loss", loss);
    v("sembo", sembo);
    v("gan", gan);
    v("tokenizer", tokenizer);
    v("dit", dit);
  }
  void validate() const;
  // Audio samples per 25 Hz token (the encoder's hop x patch): crops, cache frames, durations.
  int64_t samples_per_token() const { return 1LL * frontend.dasheng.hop_length * model.encoder.patch_frames; }
};

// Safetensors metadata key under which our weight files carry the `frontend` and `model`
// config sections (and `dit` for a DiT), so a checkpoint loads without repeating its sizes.
inline constexpr const char* kConfigMetadataKey = "losatok.config";
// YAML of those sections.
std::string weights_config_yaml(const RootConfig& cfg);

}  // namespace losatok
