// The shared `train:` config section (docs/configs.md, docs/run-directory.md): steps, schedules, optimizers,
// EMA, checkpoints, validation and logging for every stage. A stage's own switches and loss weights live in
// its section, next to its code. torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
  // How the update runs (same arithmetic, same checkpoints): auto = fused (one kernel per group,
  // LibTorch >= 2.4, CPU and CUDA) where LibTorch has it, else foreach; foreach = one multi-
  // tensor op per step of the algorithm (on LibTorch < 2.4 a skipped step is decided on the
  // host: free on a CPU); per_tensor = a loop over the parameters (the reference; slowest).
  std::string implementation = "auto";

  template <class V>
  void visit(V& v) {
    v("lr", lr);
    v("betas", betas);
    v("eps", eps);
    v("weight_decay", weight_decay);
    v("schedule", schedule);
    v("implementation", implementation);
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

}  // namespace losatok
