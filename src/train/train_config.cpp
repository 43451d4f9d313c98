// validate() of the training config sections.
#include "losatok/train/train_config.h"

#include "losatok/core/config.h"

namespace losatok {

using config::check;

void ScheduleConfig::validate() const {
  check(kind == "cosine" || kind == "linear" || kind == "constant", "kind",
        "must be cosine, linear or constant, got '" + kind + "'");
  check(warmup_steps >= 0, "warmup_steps", "must be >= 0");
  check(decay_steps >= 0, "decay_steps", "must be >= 0 (0 = train.max_steps)");
  check(min_lr_ratio >= 0 && min_lr_ratio <= 1, "min_lr_ratio", "must be in [0, 1]");
}

void OptimConfig::validate() const {
  check(lr > 0, "lr", "must be positive");
  check(betas.size() == 2 && betas[0] >= 0 && betas[0] < 1 && betas[1] >= 0 && betas[1] < 1, "betas",
        "must be two numbers in [0, 1)");
  check(eps > 0, "eps", "must be positive");
  check(weight_decay >= 0, "weight_decay", "must be >= 0");
}

void EmaConfig::validate() const {
  check(decay >= 0 && decay < 1, "decay", "must be in [0, 1) (0 = off)");
  check(start_step >= 0, "start_step", "must be >= 0");
}

void CheckpointConfig::validate() const {
  check(every >= 0, "every", "must be >= 0 (0 = only at the end)");
  check(keep_last >= 0, "keep_last", "must be >= 0 (0 = keep all)");
}

void LossScaleConfig::validate() const {
  check(init > 0, "init", "must be positive");
  check(growth_factor > 1, "growth_factor", "must be > 1");
  check(backoff_factor > 0 && backoff_factor < 1, "backoff_factor", "must be in (0, 1)");
  check(growth_interval >= 1, "growth_interval", "must be >= 1");
}

void DistributedConfig::validate() const {
  check(backend == "auto" || backend == "gloo" || backend == "nccl", "backend",
        "must be auto, gloo or nccl, got '" + backend + "'");
  check(bucket_mb > 0, "bucket_mb", "must be positive");
  check(timeout_s >= 1, "timeout_s", "must be >= 1");
}

void TrainConfig::validate() const {
  check(max_steps >= 0, "max_steps", "must be >= 0");
  check(stop_at_step >= 0, "stop_at_step", "must be >= 0 (0 = run to max_steps)");
  check(grad_accum >= 1, "grad_accum", "must be >= 1");
  check(grad_clip >= 0, "grad_clip", "must be >= 0 (0 = off)");
  check(precision == "fp32" || precision == "bf16" || precision == "fp16", "precision",
        "must be fp32, bf16 or fp16 (autocast on CUDA), got '" + precision + "'");
  check(log_every >= 1, "log_every", "must be >= 1");
  check(val_every >= 0, "val_every", "must be >= 0 (0 = only at the end)");
  check(val_batches >= 0, "val_batches", "must be >= 0 (0 = all)");
  check(best_mode == "min" || best_mode == "max", "best_mode", "must be min or max");
  check(max_nonfinite >= 1, "max_nonfinite", "must be >= 1");
}

void LossConfig::validate() const {
  for (const auto& [name, value] : {std::pair<const char*, double>{"lambda_rec", lambda_rec},
                                    {"lambda_rel", lambda_rel},
                                    {"lambda_sem", lambda_sem},
                                    {"lambda_kl", lambda_kl},
                                    {"kl_clamp", kl_clamp},
                                    {"lambda_logvar", lambda_logvar},
                                    {"lambda_mel", lambda_mel},
                                    {"lambda_stft", lambda_stft}})
    check(value >= 0, name, "must be >= 0");
  check(semantic_mode == "both" || semantic_mode == "high_only" || semantic_mode == "low_only",
        "semantic_mode", "must be both, high_only or low_only, got '" + semantic_mode + "'");
  check(!mel_n_fft.empty() && mel_n_fft.size() == mel_n_mels.size(), "mel_n_mels",
        "needs one entry per mel_n_fft entry");
  check(!stft_n_fft.empty() && stft_n_fft.size() == stft_hop.size(), "stft_hop",
        "needs one entry per stft_n_fft entry");
  for (int n : mel_n_fft) check(n >= 16, "mel_n_fft", "entries must be >= 16");
  for (int n : stft_n_fft) check(n >= 16, "stft_n_fft", "entries must be >= 16");
  for (int n : stft_hop) check(n >= 1, "stft_hop", "entries must be >= 1");
}

void GanConfig::validate() const {
  check(start_step >= 0, "start_step", "must be >= 0");
  check(!periods.empty(), "periods", "must not be empty");
  for (int p : periods) check(p >= 1, "periods", "entries must be >= 1");
  check(mpd_channels.size() == 5, "mpd_channels", "must list the 5 convolutions' widths");
  for (int c : mpd_channels) check(c >= 1, "mpd_channels", "entries must be >= 1");
  check(!mrd_windows.empty(), "mrd_windows", "must not be empty");
  for (int w : mrd_windows) check(w >= 64, "mrd_windows", "entries must be >= 64 (five bands need bins)");
  check(mrd_channels >= 1, "mrd_channels", "must be >= 1");
  check(mrd_weight >= 0 && lambda_adv >= 0 && lambda_fm >= 0, "mrd_weight", "weights must be >= 0");
}

void TokenizerStageConfig::validate() const {
  check(demo_clips >= 0, "demo_clips", "must be >= 0");
}

void SemBoStageConfig::validate() const {
  check(baseline_fit_steps >= 0, "baseline_fit_steps", "must be >= 0");
}

void PromptConfig::validate() const {
  check(seconds >= 0, "seconds", "must be >= 0 (0 = estimated)");
}

void ConditionConfig::validate() const {
  check(source == "text" || source == "cache", "source", "must be text or cache, got '" + source + "'");
  check(source != "cache" || !cache_dir.empty(), "cache_dir", "source cache needs the cache folder");
  check(!tensor.empty(), "tensor", "must not be empty");
}

void DiTStageConfig::validate() const {
  check(task == "tta" || task == "ttm" || task == "tts", "task",
        "must be tta, ttm or tts, got '" + task + "'");
  check(norm_max_clips >= 1, "norm_max_clips", "must be >= 1");
  check(task != "tts" || condition.source == "text", "condition.source",
        "tts aligns the transcript to the latent frames: it needs source text");
  for (double s : val_sigmas) check(s > 0 && s <= 1, "val_sigmas", "entries must be in (0, 1]");
}

}  // namespace losatok
