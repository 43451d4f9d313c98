// The `train:` and `loss:` config sections (SPEC section 6): steps, schedules, optimizers,
// EMA, checkpoints, validation and logging for every stage. torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "losatok/models/dit_config.h"

namespace losatok {

// Learning-rate schedule: linear warm-up, then cosine / linear decay or constant. A pure
// function of the step (train/schedule.h).
struct ScheduleConfig {
  std::string kind = "cosine";  // cosine | linear | constant
  int64_t warmup_steps = 0;
  int64_t decay_steps = 0;    // end of the decay; 0 = train.max_steps
  double min_lr_ratio = 0.0;  // the lr at the end of the decay, as a fraction of lr

  template <class V>
  void visit(V& v) {
    v("kind", kind);
    v("warmup_steps", warmup_steps);
    v("decay_steps", decay_steps);
    v("min_lr_ratio", min_lr_ratio);
  }
  void validate() const;
};

// AdamW. Weight decay applies to weight matrices and kernels only (tensors of 2 or more
// dimensions); biases, norm scales, layer scales and position embeddings are a group without it.
struct OptimConfig {
  double lr = 1e-3;
  std::vector<double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.01;
  ScheduleConfig schedule;

  template <class V>
  void visit(V& v) {
    v("lr", lr);
    v("betas", betas);
    v("eps", eps);
    v("weight_decay", weight_decay);
    v("schedule", schedule);
  }
  void validate() const;
};

// Exponential moving average of the trained weights; validation and export use it.
struct EmaConfig {
  double decay = 0.0;      // 0 = off; e.g. 0.999
  int64_t start_step = 0;  // the average is a copy of the weights until this step

  template <class V>
  void visit(V& v) {
    v("decay", decay);
    v("start_step", start_step);
  }
  void validate() const;
};

struct CheckpointConfig {
  int64_t every = 1000;        // steps between checkpoints (0 = only at the end / on signals)
  int keep_last = 3;           // newest checkpoints kept (0 = all)
  bool keep_best = true;       // also keep the one with the best validation metric
  bool include_frozen = true;  // frozen modules (the semantic encoder) in model.safetensors too

  template <class V>
  void visit(V& v) {
    v("every", every);
    v("keep_last", keep_last);
    v("keep_best", keep_best);
    v("include_frozen", include_frozen);
  }
  void validate() const;
};

// fp16's dynamic loss scaler (train.precision fp16): PyTorch GradScaler's defaults.
struct LossScaleConfig {
  double init = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int growth_interval = 2000;  // clean steps in a row before the scale grows

  template <class V>
  void visit(V& v) {
    v("init", init);
    v("growth_factor", growth_factor);
    v("backoff_factor", backoff_factor);
    v("growth_interval", growth_interval);
  }
  void validate() const;
};

// Multi-process training (ranks come from torchrun / Slurm / `losatok launch`).
struct DistributedConfig {
  std::string backend = "auto";  // auto (NCCL on CUDA, Gloo on CPU) | gloo | nccl
  double bucket_mb = 25;         // gradient all-reduce bucket size
  int64_t timeout_s = 1800;      // rendezvous and every collective (validation runs on rank 0 alone)
  // Parameters no rank used in a step keep no gradient (one small read-back per step, as DDP's
  // find_unused_parameters). false: no host sync; every parameter must get a gradient.
  bool find_unused = true;

  template <class V>
  void visit(V& v) {
    v("backend", backend);
    v("bucket_mb", bucket_mb);
    v("timeout_s", timeout_s);
    v("find_unused", find_unused);
  }
  void validate() const;
};

struct TrainConfig {
  int64_t max_steps = 10000;
  int64_t stop_at_step = 0;        // > 0: write a checkpoint and exit at this step (resume later)
  int grad_accum = 1;              // micro-batches per optimizer step
  double grad_clip = 1.0;          // max global gradient norm per optimizer; 0 = off
  std::string precision = "fp32";  // fp32 | bf16 | fp16 (autocast, CUDA only; fp16 with loss scaling)
  int64_t log_every = 50;
  int64_t val_every = 500;        // 0 = only at the end
  int64_t val_batches = 0;        // 0 = the whole validation set
  std::string best_metric;        // validation metric for keep-best; "" = the stage's own
  std::string best_mode = "min";  // min | max
  int max_nonfinite = 5;          // this many non-finite steps in a row stop the run
  bool tensorboard = true;
  // Frozen semantic encoder weights (our checkpoint, MiDashengLM / Dasheng file or HF folder).
  // "" = randomly initialised from `seed`: only for smoke tests and the tiny demo.
  std::string encoder_weights;
  OptimConfig optim;
  EmaConfig ema;
  CheckpointConfig checkpoint;
  LossScaleConfig loss_scale;
  DistributedConfig distributed;

  template <class V>
  void visit(V& v) {
    v("max_steps", max_steps);
    v("stop_at_step", stop_at_step);
    v("grad_accum", grad_accum);
    v("grad_clip", grad_clip);
    v("precision", precision);
    v("log_every", log_every);
    v("val_every", val_every);
    v("val_batches", val_batches);
    v("best_metric", best_metric);
    v("best_mode", best_mode);
    v("max_nonfinite", max_nonfinite);
    v("tensorboard", tensorboard);
    v("encoder_weights", encoder_weights);
    v("optim", optim);
    v("ema", ema);
    v("checkpoint", checkpoint);
    v("loss_scale", loss_scale);
    v("distributed", distributed);
  }
  void validate() const;
};

// Loss weights.
//  SemBo (SPEC 1.2): L = lambda_rec L_rec + lambda_rel L_rel.
//  Tokenizer (SPEC 1.3): L_G = lambda_mel L_mel + lambda_stft (SC + log-mag) + lambda_kl KL
//    + lambda_logvar mean(logvar^2) + lambda_sem L_sem + GAN terms (`gan`).
struct LossConfig {
  double lambda_rec = 1e3;
  double lambda_rel = 1.0;  // 0 = no time-relation loss

  std::string semantic_mode = "both";  // both | high_only | low_only: which levels L_sem compares
  double lambda_sem = 1.0;
  double lambda_kl = 1e-2;
  double kl_clamp = 0.0;       // > 0: each KL term clamped from below ("free bits")
  double lambda_logvar = 0.0;  // penalty on logvar^2 (keeps the posterior variance from drifting)
  double lambda_mel = 45.0;    // Vocos
  std::vector<int> mel_n_fft = {512, 1024, 2048};  // multi-scale mel: hop = n_fft / 4
  std::vector<int> mel_n_mels = {40, 80, 128};
  double lambda_stft = 1.0;
  std::vector<int> stft_n_fft = {512, 1024, 2048};
  std::vector<int> stft_hop = {128, 256, 512};

  template <class V>
  void visit(V& v) {
    v("lambda_rec", lambda_rec);
    v("lambda_rel", lambda_rel);
    v("semantic_mode", semantic_mode);
    v("lambda_sem", lambda_sem);
    v("lambda_kl", lambda_kl);
    v("kl_clamp", kl_clamp);
    v("lambda_logvar", lambda_logvar);
    v("lambda_mel", lambda_mel);
    v("mel_n_fft", mel_n_fft);
    v("mel_n_mels", mel_n_mels);
    v("lambda_stft", lambda_stft);
    v("stft_n_fft", stft_n_fft);
    v("stft_hop", stft_hop);
  }
  void validate() const;
};

// The tokenizer's discriminators and their optimizer (SPEC 1.3, Vocos defaults).
struct GanConfig {
  bool enabled = true;
  int64_t start_step = 0;  // spectral losses only before this step (discriminator idle too)
  std::vector<int> periods = {2, 3, 5, 7, 11};
  std::vector<int> mpd_channels = {32, 128, 512, 1024, 1024};  // HiFi-GAN; narrower for CPU runs
  std::vector<int> mrd_windows = {2048, 1024, 512};
  int mrd_channels = 32;
  double mrd_weight = 0.1;  // MRD adversarial + feature-matching terms, and its D loss
  double lambda_adv = 1.0;
  double lambda_fm = 1.0;
  OptimConfig optim{5e-4, {0.8, 0.9}, 1e-8, 0.01, {}};

  template <class V>
  void visit(V& v) {
    v("enabled", enabled);
    v("start_step", start_step);
    v("periods", periods);
    v("mpd_channels", mpd_channels);
    v("mrd_windows", mrd_windows);
    v("mrd_channels", mrd_channels);
    v("mrd_weight", mrd_weight);
    v("lambda_adv", lambda_adv);
    v("lambda_fm", lambda_fm);
    v("optim", optim);
  }
  void validate() const;
};

// The tokenizer stage's own switches.
struct TokenizerStageConfig {
  // A SemBo run's checkpoint (or its export) holding semantic_encoder.* (encoder + bottleneck);
  // "" = train.encoder_weights for the encoder and a random bottleneck (smoke runs only).
  std::string sembo_checkpoint;
  bool sample_latent = true;  // decode z = mu + sigma eps while training (mu at validation)
  int demo_clips = 3;         // validation clips written as WAV + spectrogram PNG + TensorBoard audio

  template <class V>
  void visit(V& v) {
    v("sembo_checkpoint", sembo_checkpoint);
    v("sample_latent", sample_latent);
    v("demo_clips", demo_clips);
  }
  void validate() const;
};

// The SemBo stage's own switches.
struct SemBoStageConfig {
  // Validation also reports the training-free baselines (channel merge, and PCA fitted on the
  // features of the first `baseline_fit_steps` training steps).
  bool baselines = true;
  int64_t baseline_fit_steps = 100;

  template <class V>
  void visit(V& v) {
    v("baselines", baselines);
    v("baseline_fit_steps", baseline_fit_steps);
  }
  void validate() const;
};

// A fixed prompt validation generates (and `losatok generate` reads from a prompts file).
struct PromptConfig {
  std::string text;
  double seconds = 0.0;  // 0 = estimated (TTS: from the text length)

  template <class V>
  void visit(V& v) {
    v("text", text);
    v("seconds", seconds);
  }
  void validate() const;
};

// The condition sequence: the built-in text encoder over the manifest's `text`, or embeddings
// made elsewhere (T5, CLAP) read per clip from a feature cache whose producer is `condition`.
struct ConditionConfig {
  std::string source = "text";  // text | cache
  std::string cache_dir;        // source cache: the cache folder
  std::string tensor = "cond_emb";

  template <class V>
  void visit(V& v) {
    v("source", source);
    v("cache_dir", cache_dir);
    v("tensor", tensor);
  }
  void validate() const;
};

// The DiT stage: flow matching on tokenizer latents read from the feature cache (data.cache_dir,
// `losatok extract --what latents`), for text-to-audio / music / speech.
struct DiTStageConfig {
  std::string task = "tta";  // tta | ttm | tts
  // The tokenizer whose latents the cache holds: checks the cache's producer and decodes
  // generated latents to audio. "" = accept any latents cache, and no audio at validation.
  std::string tokenizer_checkpoint;
  bool sample_latent = false;     // train on z ~ N(mu, exp(logvar)) instead of mu
  int64_t norm_max_clips = 2000;  // training clips the per-dimension latent statistics read
  DiTConfig model;
  TextEncoderConfig text;
  ConditionConfig condition;
  FlowConfig flow;
  SamplerConfig sample;
  std::vector<double> val_sigmas = {0.1, 0.3, 0.5, 0.7, 0.9};  // validation loss at these sigmas
  std::vector<PromptConfig> val_prompts;  // generated at each validation (WAV, PNG, TensorBoard)

  template <class V>
  void visit(V& v) {
    v("task", task);
    v("tokenizer_checkpoint", tokenizer_checkpoint);
    v("sample_latent", sample_latent);
    v("norm_max_clips", norm_max_clips);
    v("model", model);
    v("text", text);
    v("condition", condition);
    v("flow", flow);
    v("sample", sample);
    v("val_sigmas", val_sigmas);
    v("val_prompts", val_prompts);
  }
  void validate() const;
};

}  // namespace losatok
