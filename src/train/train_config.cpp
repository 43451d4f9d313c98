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
  check(implementation == "auto" || implementation == "fused" || implementation == "foreach" ||
            implementation == "per_tensor",
        "implementation", "must be auto, fused, foreach or per_tensor, got '" + implementation + "'");
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

}  // namespace losatok
