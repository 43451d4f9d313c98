// The training loop shared by every stage.
#include "losatok/train/trainer.h"

#include <torch/torch.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <set>

#include "losatok/core/compat.h"
#include "losatok/core/config.h"
#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/train/metrics.h"
#include "losatok/train/op_count.h"
#include "losatok/train/schedule.h"

namespace fs = std::filesystem;

namespace losatok::train {

namespace {

// Set from a signal handler, so it cannot live in an object.
std::atomic<bool> g_stop_requested{false};

extern "C" void on_stop_signal(int) {
  g_stop_requested.store(true);
}

// Installs the SIGTERM / SIGINT handlers for the loop's lifetime. SA_RESETHAND: a second
// signal takes the default action, so a stuck run can still be killed with a second Ctrl-C.
class StopSignals {
 public:
  StopSignals() {
    g_stop_requested.store(false);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGTERM, &sa, &old_term_);
    sigaction(SIGINT, &sa, &old_int_);
  }
  ~StopSignals() {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
  }

 private:
  struct sigaction old_term_ {
  }, old_int_{};
};

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, static_cast<int>((s % 3600) / 60));
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, static_cast<int>(s % 60));
  return fmt::format("{}s", s);
}

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kEmaFile = "ema.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kStateFile = "state.safetensors";
constexpr const char* kConfigFile = "config.yaml";
constexpr const char* kRunLockFile = ".lock";

data::LoaderOptions loader_options(const RootConfig& cfg, bool train) {
  data::LoaderOptions o;
  o.seed = static_cast<uint64_t>(cfg.seed);
  o.sample_rate = cfg.audio.sample_rate;
  o.resample_quality = cfg.audio.resample_quality;
  o.samples_per_token = cfg.samples_per_token();
  o.train = train;
  return o;
}

// The default generator's state (a byte tensor) of a device, under its lock.
torch::Tensor generator_state(const c10::Device& device) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_generator_state(const c10::Device& device, const torch::Tensor& state) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// cfg's device; "cuda" in a multi-process job means this process's local GPU.
torch::Device training_device(const RootConfig& cfg, const DistributedEnv& dist) {
  torch::Device d = resolve_device(cfg.runtime.device);
  if (d.is_cuda() && dist.enabled() && cfg.runtime.device == "cuda") {
    const int gpus = std::max<int>(1, static_cast<int>(torch::cuda::device_count()));
    if (dist.local_world_size > gpus)
      spdlog::warn("distributed: {} processes share {} GPU(s) on this machine (NCCL refuses that; use gloo)",
                   dist.local_world_size, gpus);
    d = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(dist.local_rank % gpus));
  }
  return d;
}

// The entries of `all` whose names start with `prefix`, without it.
TensorMap with_prefix(const TensorMap& all, const std::string& prefix) {
  TensorMap out;
  for (const auto& [k, v] : all)
    if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
  return out;
}

// 0-d bool on `device`.
torch::Tensor bool_scalar(bool v, const torch::Device& device) {
  return torch::full({}, v, torch::dtype(torch::kBool).device(device));
}

}  // namespace

void Trainer::request_stop() {
  g_stop_requested.store(true);
}

Trainer::Trainer(const RootConfig& cfg, const YAML::Node& resolved, std::unique_ptr<Stage> stage)
    : cfg_(cfg),
      resolved_(config::deep_copy(resolved)),
      dist_(DistributedEnv::from_environment()),
      device_(training_device(cfg, dist_)),
      scheduler_(cfg.train) {
  if (dist_.enabled()) {
    // Rank 0 speaks for the job; the others report warnings and errors only.
    if (dist_.rank != 0) {
      spdlog::set_level(std::max(spdlog::get_level(), spdlog::level::warn));
      spdlog::set_pattern(fmt::format("[%H:%M:%S.%e] [rank {}] [%l] %v", dist_.rank));
    }
    group_ = ProcessGroup::connect(dist_, device_, cfg_.train.distributed.backend,
                                   std::chrono::seconds(cfg_.train.distributed.timeout_s));
  }
  // The same seed everywhere builds the same models; rank 0's weights are broadcast anyway.
  torch::manual_seed(static_cast<uint64_t>(cfg_.seed));
  stage_ = stage ? std::move(stage) : make_stage(cfg_, device_);
  for (auto& spec : stage_->optimizers()) optimizers_.emplace_back(spec.name, spec.parameters, spec.config);
  ema_ = std::make_unique<Ema>(stage_->ema_parameters(), cfg_.train.ema);
  {
    std::set<const void*> averaged;
    for (const auto& [n, p] : stage_->ema_parameters()) averaged.insert(p.unsafeGetTensorImpl());
    for (const auto& opt : optimizers_) {
      bool owns = false;
      for (const auto& [n, p] : opt.parameters()) owns |= averaged.count(p.unsafeGetTensorImpl()) > 0;
      ema_owners_.push_back(owns);
    }
  }
  state_.stage = stage_->name();
  state_.world_size = dist_.world_size;
  state_.best_metric = cfg_.train.best_metric.empty() ? stage_->best_metric() : cfg_.train.best_metric;
  if (cfg_.train.precision == "fp16") scaler_ = std::make_unique<LossScaler>(cfg_.train.loss_scale, device_);
  if (group_) {
    const auto bucket_bytes = static_cast<int64_t>(cfg_.train.distributed.bucket_mb * (1 << 20));
    for (const auto& opt : optimizers_) {
      std::vector<torch::Tensor> params;
      for (const auto& [n, p] : opt.parameters()) params.push_back(p);
      grad_syncs_.push_back(
          std::make_unique<GradSync>(*group_, params, bucket_bytes, cfg_.train.distributed.find_unused));
    }
    spdlog::info("distributed: {} ranks over {}, gradients in {} bucket(s) of <= {} MB", group_->world_size(),
                 group_->backend(), grad_syncs_.empty() ? 0 : grad_syncs_.front()->buckets(),
                 cfg_.train.distributed.bucket_mb);
  }
  skip_run_ = torch::zeros({}, torch::dtype(torch::kInt64).device(device_));
  skip_total_ = torch::zeros_like(skip_run_);
  skip_worst_ = torch::zeros_like(skip_run_);
}

Trainer::~Trainer() = default;

StepReport Trainer::step(const std::vector<data::Batch>& micro_batches) {
  if (micro_batches.empty()) throw Error("trainer: a step needs at least one batch");
  StepReport report;
  stage_->set_training(true);
  const double scale = 1.0 / static_cast<double>(micro_batches.size());
  const std::size_t phases = std::max<std::size_t>(1, optimizers_.size());
  const bool autocast = cfg_.train.precision != "fp32" && device_.is_cuda();
  const at::ScalarType autocast_dtype = cfg_.train.precision == "fp16" ? at::kHalf : at::kBFloat16;
  torch::Tensor all_ok = bool_scalar(true, device_);
  torch::Tensor ema_ok;  // the updates of the optimizers whose weights the EMA averages
  for (std::size_t phase = 0; phase < phases; ++phase) {
    AdamW* opt = optimizers_.empty() ? nullptr : &optimizers_[phase];
    if (opt && !stage_->optimizer_active(phase, state_.step)) continue;
    if (opt) opt->zero_grad();
    // Split-invariant normalisation: the counts the stage's loss terms average over, summed over
    // micro-batches and ranks (one small CPU all-reduce; lengths live on the host).
    std::vector<std::map<std::string, double>> counts;
    std::map<std::string, double> total;
    if (opt) {
      for (const auto& batch : micro_batches) {
        counts.push_back(stage_->loss_counts(phase, batch, state_.step));
        for (const auto& [k, v] : counts.back()) total[k] += v;
      }
      if (group_ && !total.empty()) {
        std::vector<double> flat;
        for (const auto& [k, v] : total) flat.push_back(v);
        torch::Tensor t = torch::tensor(flat, torch::kFloat64);
        group_->all_reduce(t, "sum");
        std::size_t i = 0;
        for (auto& [k, v] : total) v = t[static_cast<int64_t>(i++)].item<double>();
      }
    }
    torch::Tensor loss_sum;
    for (std::size_t m = 0; m < micro_batches.size(); ++m) {
      const data::Batch& batch = micro_batches[m];
      StepOutput out;
      {
        const compat::AutocastGuard guard(autocast, autocast_dtype);
        const OpPhaseScope ops(OpPhase::kForward);
        out = stage_->train_step(phase, batch, state_.step);
      }
      if (out.loss.defined() && opt) {
        torch::Tensor loss;
        if (out.terms.empty()) {
          loss = out.loss.to(torch::kFloat32) * scale;
        } else {
          for (const auto& [key, term] : out.terms) {
            const auto c = counts[m].find(key);
            if (c == counts[m].end())
              throw Error("stage " + stage_->name() + ": loss term '" + key + "' has no count (loss_counts)");
            if (c->second <= 0) continue;  // nothing of this kind here: its mean is undefined
            const torch::Tensor part =
                term.to(torch::kFloat32) * (c->second * dist_.world_size / total.at(key));
            loss = loss.defined() ? loss + part : part;
          }
          if (!loss.defined()) loss = out.loss.to(torch::kFloat32) * 0.0;
        }
        if (scaler_) loss = loss * scaler_->scale();
        const OpPhaseScope ops(OpPhase::kBackward);
        loss.backward();
        loss_sum = loss_sum.defined() ? loss_sum + out.loss.detach() : out.loss.detach();
      }
      for (auto& [k, v] : out.metrics) {
        const torch::Tensor part = v.detach().to(torch::kFloat64) * scale;
        auto it = report.metrics.find(k);
        if (it == report.metrics.end())
          report.metrics[k] = part;
        else
          it->second = it->second + part;
      }
    }
    if (!opt) continue;
    if (!grad_syncs_.empty()) {
      const OpPhaseScope ops(OpPhase::kGradSync);
      grad_syncs_[phase]->sync();
    }
    if (scaler_) {
      const OpPhaseScope ops(OpPhase::kScaler);
      scaler_->unscale(opt->parameters());
    }
    const std::string suffix = optimizers_.size() > 1 ? "/" + opt->name() : "";
    torch::Tensor norm;
    {
      const OpPhaseScope ops(OpPhase::kClipping);
      norm = clip_grad_norm(opt->parameters(), cfg_.train.grad_clip);
    }
    report.metrics["grad_norm" + suffix] = norm.to(torch::kFloat64);
    // A non-finite loss or gradient skips this update. Decided on the device (no host sync);
    // every rank takes the decision of the worst one.
    torch::Tensor ok = torch::isfinite(norm).to(device_);
    if (loss_sum.defined()) ok = ok.logical_and(torch::isfinite(loss_sum).to(device_));
    if (group_) {
      torch::Tensor f = ok.to(torch::kFloat32);
      group_->all_reduce(f, "min");
      ok = f.to(device_) > 0.5f;
    }
    const double lr = opt->config().lr * lr_factor(opt->config().schedule, state_.step, cfg_.train.max_steps);
    {
      const OpPhaseScope ops(OpPhase::kOptimizer);
      opt->step(lr, ok);
    }
    report.lr[opt->name()] = lr;
    report.applied[opt->name()] = ok;
    all_ok = all_ok.logical_and(ok);
    if (ema_owners_[phase]) ema_ok = ema_ok.defined() ? ema_ok.logical_and(ok) : ok;
  }
  for (const auto& b : micro_batches) {
    report.samples += b.size();
    if (b.lengths.defined()) report.audio_seconds += b.lengths.sum().item<double>() / cfg_.audio.sample_rate;
  }
  torch::Tensor counted = all_ok.logical_not();
  if (scaler_) {
    // fp16 overflow is the scaler's business while it backs off (PyTorch's GradScaler skips
    // such steps silently): they count as non-finite steps once the scale is below 1.
    counted = counted.logical_and(scaler_->scale() < 1.0f);
    const OpPhaseScope ops(OpPhase::kScaler);
    scaler_->update(all_ok.logical_not());
    report.metrics["loss_scale"] = scaler_->scale().to(torch::kFloat64);
  }
  const torch::Tensor skipped = counted.to(torch::kInt64);
  skip_run_ = (skip_run_ + skipped) * skipped;
  skip_total_ = skip_total_ + skipped;
  skip_worst_ = torch::maximum(skip_worst_, skip_run_);
  report.skipped = all_ok.logical_not();
  {
    const OpPhaseScope ops(OpPhase::kEma);
    ema_->update(state_.step, ema_ok.defined() ? ema_ok : all_ok);
  }
  ++state_.step;
  state_.samples_seen += report.samples * dist_.world_size;
  state_.audio_seconds_seen += report.audio_seconds * dist_.world_size;
  return report;
}

void Trainer::check_nonfinite() {
  const torch::Tensor v = torch::stack({skip_run_, skip_total_, skip_worst_}).cpu();
  const int64_t worst = v[2].item<int64_t>();
  state_.nonfinite_in_row = v[0].item<int64_t>();
  state_.nonfinite_total = v[1].item<int64_t>();
  skip_worst_ = skip_run_.clone();
  if (worst >= cfg_.train.max_nonfinite)
    throw Error(
        fmt::format("{} non-finite steps in a row (up to step {}): stopping; the last good checkpoint is {}",
                    worst, state_.step, last_checkpoint_.empty() ? "none" : last_checkpoint_));
}

bool Trainer::agree(bool flag) {
  if (!group_) return flag;
  torch::Tensor t = torch::full({1}, flag ? 1.0f : 0.0f);
  std::vector<torch::Tensor> one{t};
  group_->broadcast(one);
  return one[0].item<float>() > 0.5f;
}

void Trainer::broadcast_state() {
  if (!group_) return;
  const auto t0 = std::chrono::steady_clock::now();
  TensorMap state = stage_->model_state(/*include_frozen=*/false);
  std::vector<torch::Tensor> tensors;
  for (auto& [k, v] : state) tensors.push_back(v);
  if (ema_->enabled())
    for (const auto& [k, v] : ema_->shadow()) tensors.push_back(v);
  group_->broadcast(tensors);
  std::size_t i = 0;
  for (auto& [k, v] : state) v = tensors[i++];
  if (dist_.rank != 0) stage_->load_model_state(state, "rank 0's weights", /*strict=*/true);
  spdlog::info("distributed: {} tensors broadcast from rank 0 ({:.1f} s)", tensors.size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

std::map<std::string, double> Trainer::validate() {
  if (cfg_.data.valid_sources.empty()) return {};
  data::LoaderOptions o = loader_options(cfg_, /*train=*/false);
  o.cache = cache_;
  o.features_only = cache_ && !stage_->needs_audio();
  data::AudioLoader loader(cfg_.data, cfg_.data.valid_sources, o);
  int64_t left = loader.batches_per_epoch();
  if (cfg_.train.val_batches > 0) left = std::min(left, cfg_.train.val_batches);
  // Validation sees the EMA weights; the trained ones are put back afterwards.
  std::vector<torch::Tensor> saved;
  const NamedTensors params = stage_->ema_parameters();
  torch::NoGradGuard no_grad;
  if (ema_->enabled())
    for (const auto& [n, p] : params) {
      saved.push_back(p.detach().clone());
      p.copy_(ema_->shadow().at(n));
    }
  stage_->set_training(false);
  std::map<std::string, double> out;
  try {
    ValidationContext context;
    context.step = state_.step;
    context.dir = (fs::path(cfg_.run_dir) / "samples" / ("step-" + std::to_string(state_.step))).string();
    context.audio = [this](const std::string& tag, const std::vector<float>& samples, int sr) {
      if (metrics_) metrics_->audio(tag, samples, sr, state_.step);
    };
    out = stage_->validate(
        [&](data::Batch& b) {
          if (left-- <= 0) return false;
          b = loader.next();
          return true;
        },
        context);
  } catch (...) {
    for (std::size_t i = 0; i < saved.size(); ++i) params[i].second.copy_(saved[i]);
    throw;
  }
  for (std::size_t i = 0; i < saved.size(); ++i) params[i].second.copy_(saved[i]);
  stage_->set_training(true);
  return out;
}

std::string Trainer::save_checkpoint(const std::string& why) {
  check_nonfinite();  // the progress file records the counters
  // Every rank's generator states (a collective: all ranks are here), written by rank 0.
  std::map<std::string, torch::Tensor> rng;
  rng["rng.cpu"] = generator_state(at::kCPU);
  if (device_.is_cuda()) rng["rng.cuda." + std::to_string(device_.index())] = generator_state(device_);
  if (group_) {
    const auto cpu = group_->all_gather(generator_state(at::kCPU));
    for (int r = 1; r < group_->world_size(); ++r) rng["rng.cpu.rank" + std::to_string(r)] = cpu[r];
    if (device_.is_cuda()) {
      const auto cuda = group_->all_gather(generator_state(device_));
      for (int r = 1; r < group_->world_size(); ++r) rng["rng.cuda.rank" + std::to_string(r)] = cuda[r];
    }
  }
  if (!is_main_process()) {
    if (!agree(true))
      throw Error("rank 0 could not write the checkpoint of step " + std::to_string(state_.step));
    last_saved_step_ = state_.step;
    return last_checkpoint_;
  }
  std::map<std::string, std::string> meta = stage_->checkpoint_metadata();
  meta[kConfigMetadataKey] = weights_config_yaml(cfg_);
  meta["losatok.stage"] = stage_->name();
  meta["losatok.step"] = std::to_string(state_.step);
  const TensorMap model = stage_->model_state(cfg_.train.checkpoint.include_frozen);
  std::vector<FileWriter> files;
  files.emplace_back(kModelFile, [&](const std::string& p) { io::save_safetensors(p, model, meta); });
  if (ema_->enabled())
    files.emplace_back(kEmaFile, [&](const std::string& p) {
      TensorMap ema = model;
      for (const auto& [n, t] : ema_->shadow()) ema[n] = t;
      io::save_safetensors(p, ema, meta);
    });
  files.emplace_back(kOptimizerFile, [&](const std::string& p) {
    TensorMap all;
    for (const auto& opt : optimizers_)
      for (const auto& [k, v] : opt.state()) all[opt.name() + "/" + k] = v;
    io::save_safetensors(p, all, {{"losatok.step", std::to_string(state_.step)}});
  });
  files.emplace_back(kStateFile, [&](const std::string& p) {
    TensorMap state = rng;
    if (scaler_)
      for (const auto& [k, v] : scaler_->state()) state["loss_scaler." + k] = v;
    for (const auto& [k, v] : stage_->extra_state()) state["stage." + k] = v;
    io::save_safetensors(p, state);
  });
  files.emplace_back(kConfigFile,
                     [&](const std::string& p) { write_file_atomic(p, config::dump(resolved_)); });
  const auto t0 = std::chrono::steady_clock::now();
  std::string error;
  try {
    if (loader_) state_.loader = loader_->state();
    last_checkpoint_ = checkpointer_->save(state_.step, files, state_.to_json());
    checkpointer_->prune(state_.best_step);
  } catch (const std::exception& e) {
    error = e.what();
  }
  // The other ranks wait until the checkpoint is complete, and stop too when it failed.
  agree(error.empty());
  if (!error.empty()) throw Error(error);
  last_saved_step_ = state_.step;
  spdlog::info("checkpoint {} ({}, {:.1f} s)", last_checkpoint_, why,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return last_checkpoint_;
}

void Trainer::restore(const std::string& dir) {
  const std::string why = Checkpointer::check(dir, /*verify_content=*/true);
  if (!why.empty()) throw Error("checkpoint " + dir + " is incomplete: " + why);
  const auto path = [&](const char* f) { return (fs::path(dir) / f).string(); };
  try {
    const TrainingState saved =
        TrainingState::from_json(read_file(path(kProgressFile)), path(kProgressFile), state_.best_metric);
    if (saved.stage != stage_->name())
      throw Error("checkpoint " + dir + " is of the '" + saved.stage + "' stage, this run is '" +
                  stage_->name() + "'");
    stage_->load_model_state(io::load_safetensors(path(kModelFile)).tensors, path(kModelFile),
                             /*strict=*/true);
    if (ema_->enabled()) {
      if (fs::exists(path(kEmaFile)))
        ema_->load(io::load_safetensors(path(kEmaFile)).tensors, path(kEmaFile));
      else
        spdlog::warn("{} has no EMA weights: the average restarts from the current weights", dir);
    }
    const auto opt_state = io::load_safetensors(path(kOptimizerFile)).tensors;
    for (auto& opt : optimizers_)
      opt.load_state(with_prefix(opt_state, opt.name() + "/"), path(kOptimizerFile));
    const auto state = io::load_safetensors(path(kStateFile)).tensors;
    stage_->load_extra_state(with_prefix(state, "stage."), path(kStateFile));
    if (scaler_) {
      const TensorMap ls = with_prefix(state, "loss_scaler.");
      if (ls.empty())
        spdlog::warn("{} has no loss scaler state (an fp32 / bf16 run): the scale starts at {}", dir,
                     cfg_.train.loss_scale.init);
      else
        scaler_->load_state(ls, path(kStateFile));
    }
    // This run's process count and validation stay this run's.
    const int saved_world = saved.world_size;
    const std::map<std::string, double> validation = state_.validation;
    state_ = saved;
    state_.world_size = dist_.world_size;
    state_.validation = validation;
    skip_run_.fill_(state_.nonfinite_in_row);
    skip_total_.fill_(state_.nonfinite_total);
    skip_worst_.fill_(state_.nonfinite_in_row);
    if (saved.loader) {
      data::LoaderState ls = *saved.loader;
      if (saved_world != dist_.world_size) {
        // Same per-rank batch size: keep the number of clips the epoch has served.
        ls.batch = ls.batch * saved_world / dist_.world_size;
        spdlog::warn(
            "resume: {} was written by {} process(es), this run has {}: weights, optimizer, EMA and schedule "
            "continue exactly; the epoch's clips are re-sharded from the same position (batch {} per rank), "
            "so the data order differs from an uninterrupted run, and ranks without a saved random state "
            "start "
            "from a fresh seed",
            dir, saved_world, dist_.world_size, ls.batch);
      }
      loader_->restore(ls);
    }
    // Last, so nothing above draws from the generators after they are set. Rank r > 0 has its
    // own states; a rank the checkpoint does not know is seeded fresh.
    const std::string mine = dist_.rank == 0 ? "" : ".rank" + std::to_string(dist_.rank);
    if (dist_.rank == 0 && !state.count("rng.cpu")) throw std::out_of_range("rng.cpu");
    if (const auto it = state.find("rng.cpu" + mine); it != state.end())
      set_generator_state(at::kCPU, it->second);
    else
      torch::manual_seed(static_cast<uint64_t>(cfg_.seed) + 1000003ULL * dist_.rank + state_.step);
    if (device_.is_cuda()) {
      auto it =
          state.find(dist_.rank == 0 ? "rng.cuda." + std::to_string(device_.index()) : "rng.cuda" + mine);
      if (dist_.rank == 0 && it == state.end()) it = state.find("rng.cuda.0");
      if (it != state.end()) set_generator_state(device_, it->second);
    }
  } catch (const std::out_of_range&) {
    throw Error("checkpoint " + dir + ": " + kStateFile + " has no CPU RNG state");
  }
  last_saved_step_ = state_.step;
  last_checkpoint_ = dir;
  spdlog::info("resumed {} at step {} (epoch {}, {} samples seen)", dir, state_.step, loader_->state().epoch,
               state_.samples_seen);
}

void Trainer::log_step(const StepReport& report, double seconds, int64_t steps) {
  // The one place a step's values come back to the host.
  std::map<std::string, double> values;
  if (!report.metrics.empty()) {
    // The ranks' mean (every rank has the same metrics), in one read-back.
    std::vector<torch::Tensor> parts;
    for (const auto& [k, v] : report.metrics) parts.push_back(v.reshape({1}).to(torch::kFloat64));
    torch::Tensor all = torch::cat(parts).cpu();
    if (group_) group_->all_reduce(all, "sum");
    std::size_t i = 0;
    for (const auto& [k, v] : report.metrics)
      values["train/" + k] = all[i++].item<double>() / dist_.world_size;
  }
  std::map<std::string, double> lr;
  for (const auto& [k, v] : report.lr)
    if (report.applied.at(k).item<bool>()) lr[k] = v;  // a skipped update used no learning rate
  for (const auto& [k, v] : lr) values["lr/" + k] = v;
  const double per_step = steps > 0 ? seconds / steps : 0;
  values["perf/samples_per_s"] = per_step > 0 ? dist_.world_size * report.samples / per_step : 0;
  values["perf/audio_s_per_s"] = per_step > 0 ? dist_.world_size * report.audio_seconds / per_step : 0;
  values["perf/step_s"] = per_step;
  values["train/nonfinite_steps"] = static_cast<double>(state_.nonfinite_total);
  if (!metrics_) return;  // ranks other than 0
  metrics_->log(state_.step, values);
  std::string line = fmt::format("step {}/{}", state_.step, cfg_.train.max_steps);
  for (const auto& [k, v] : report.metrics) line += fmt::format(" {} {:.4g}", k, values["train/" + k]);
  for (const auto& [k, v] : lr) line += fmt::format(" | lr{} {:.3g}", report.lr.size() > 1 ? "/" + k : "", v);
  line += fmt::format(" | {:.1f} samples/s {:.1f} audio-s/s | ETA {}", values["perf/samples_per_s"],
                      values["perf/audio_s_per_s"],
                      format_duration(per_step * (cfg_.train.max_steps - state_.step)));
  spdlog::info("{}", line);
}

TrainResult Trainer::run(const TrainStart& start) {
  const fs::path run_dir = cfg_.run_dir;
  const bool main = is_main_process();
  checkpointer_ = std::make_unique<Checkpointer>(cfg_.run_dir, cfg_.train.checkpoint);
  if (start.resume_checkpoint.empty() && Checkpointer::latest(cfg_.run_dir))
    throw Error("run_dir '" + cfg_.run_dir +
                "' already has checkpoints: add --resume to continue it, or choose "
                "another run_dir");
  std::string setup_error;
  std::unique_ptr<FileLock> lock;  // one run per run_dir, for the whole run
  if (main) {
    try {
      std::error_code ec;
      fs::create_directories(run_dir, ec);
      if (ec) throw Error("cannot create run_dir '" + cfg_.run_dir + "': " + ec.message());
      lock = std::make_unique<FileLock>((run_dir / kRunLockFile).string(), "run_dir '" + cfg_.run_dir + "'");
      log_to_file((run_dir / "train.log").string());
      // overrides.yaml: every start's overrides in order (a resume appends its own).
      std::vector<std::string> overrides;
      const fs::path saved = run_dir / "overrides.yaml";
      if (!start.resume_checkpoint.empty() && fs::is_regular_file(saved)) {
        try {
          const YAML::Node before = config::load_yaml_file(saved.string(), "overrides file");
          if (before.IsSequence())
            for (const auto& o : before) overrides.push_back(o.as<std::string>());
        } catch (const std::exception& e) {
          spdlog::warn("{}: unreadable ({}); it restarts with this start's overrides", saved.string(),
                       first_line(e.what()));
        }
      }
      overrides.insert(overrides.end(), start.overrides.begin(), start.overrides.end());
      config::save_run_config(cfg_.run_dir, resolved_, overrides);
    } catch (const std::exception& e) {
      setup_error = e.what();
    }
  }
  if (!agree(setup_error.empty()))
    throw Error(main ? setup_error : "rank 0 could not set up run_dir '" + cfg_.run_dir + "'");

  if (!start.init_from.empty()) {
    const io::WeightSet w = io::read_weights(start.init_from);
    stage_->load_model_state(w.tensors, w.source, /*strict=*/false);
  }
  if (cfg_.data.sources.empty()) throw ConfigError("data.sources", "training needs at least one manifest");
  if (!cfg_.data.cache_dir.empty()) {
    const auto producer = stage_->cache_producer();
    if (!producer)
      throw ConfigError("data.cache_dir", "the " + stage_->name() + " stage reads no feature cache");
    cache_ = std::make_shared<data::FeatureCache>(cfg_.data.cache_dir, *producer);
  }
  data::LoaderOptions lo = loader_options(cfg_, /*train=*/true);
  lo.cache = cache_;
  lo.features_only = cache_ && !stage_->needs_audio();
  lo.rank = dist_.rank;
  lo.world_size = dist_.world_size;
  loader_ = std::make_unique<data::AudioLoader>(cfg_.data, cfg_.data.sources, lo);
  if (!start.resume_checkpoint.empty()) restore(start.resume_checkpoint);
  if (group_) {
    broadcast_state();
    // Rank 0 draws what a single process would; the others their own streams.
    if (start.resume_checkpoint.empty() && dist_.rank != 0)
      torch::manual_seed(static_cast<uint64_t>(cfg_.seed) + 1000003ULL * dist_.rank);
  }
  if (main)
    metrics_ = std::make_unique<MetricsLogger>(cfg_.run_dir, cfg_.train.tensorboard,
                                               start.resume_checkpoint.empty() ? -1 : state_.step);
  if (cfg_.data.valid_sources.empty()) spdlog::warn("data.valid_sources is empty: no validation");
  spdlog::info("training {} in {}: steps {} -> {}, {} optimizer(s), {} batches per epoch{}, precision {}",
               stage_->name(), cfg_.run_dir, state_.step, cfg_.train.max_steps, optimizers_.size(),
               loader_->batches_per_epoch(),
               group_ ? fmt::format(" per rank x {} ranks", group_->world_size()) : "", cfg_.train.precision);

  const StopSignals signals;
  TrainResult result;
  // A metrics line that cannot be written (a full disk) stops the run, with a checkpoint when
  // one can still be written; rank 0 decides, every rank stops at the same step.
  std::string write_error;
  const auto stop_if_write_failed = [&] {
    if (agree(write_error.empty())) return;
    std::string saved = "none";
    try {
      saved = save_checkpoint("stopped: metrics could not be written");
    } catch (const std::exception& e) {
      saved = "none (" + first_line(e.what()) + "; the last good one is " +
              (last_checkpoint_.empty() ? "none" : last_checkpoint_) + ")";
    }
    throw Error((main ? first_line(write_error) : "rank 0 could not write its metrics") +
                "; stopped at step " + std::to_string(state_.step) + ", checkpoint " + saved);
  };
  auto last_log = std::chrono::steady_clock::now();
  int64_t steps_since_log = 0;
  // Validation runs on rank 0 alone; the others wait for its keep-best decision.
  const auto run_validation = [&] {
    last_validated_step_ = state_.step;
    bool save_best = false;
    std::string failed;
    if (main) {
      try {
        state_.validation = validate();
      } catch (const std::exception& e) {
        failed = e.what();
      }
    }
    // Rank 0's failure stops every rank instead of leaving them at the next collective.
    if (!agree(failed.empty())) throw Error(main ? failed : "validation failed on rank 0");
    if (main) {
      if (!state_.validation.empty()) {
        try {
          metrics_->log(state_.step, state_.validation);
        } catch (const std::exception& e) {
          write_error = e.what();
        }
        std::string line = fmt::format("validation at step {}:", state_.step);
        for (const auto& [k, v] : state_.validation) line += fmt::format(" {} {:.5g}", k, v);
        spdlog::info("{}", line);
        const auto it = state_.validation.find(state_.best_metric);
        if (it == state_.validation.end()) {
          spdlog::warn("validation has no metric '{}' for keep-best (train.best_metric)", state_.best_metric);
        } else if (state_.step > 0 &&
                   state_.is_better(it->second, cfg_.train.best_mode)) {  // step 0 is the untrained reference
          state_.best_value = it->second;
          state_.best_step = state_.step;
          save_best = true;
        }
      }
    }
    if (agree(save_best))
      save_checkpoint("best " + state_.best_metric + fmt::format(" {:.5g}", state_.best_value));
    stop_if_write_failed();
  };
  // In a multi-process job every rank must leave the loop at the same step: a signal to any
  // rank stops all (a CPU all-reduce over Gloo each step; it never waits for the GPU).
  const auto stop_requested = [&] {
    if (!group_) return g_stop_requested.load();
    torch::Tensor flag = torch::full({1}, g_stop_requested.load() ? 1.0f : 0.0f);
    group_->all_reduce(flag, "max");
    return flag.item<float>() > 0.5f;
  };

  // The untrained model's figures: the reference every later validation is read against.
  if (start.resume_checkpoint.empty() && state_.step == 0 && cfg_.train.max_steps > 0) run_validation();
  for (;;) {
    result.stop_reason = scheduler_.stop_reason(state_.step, stop_requested());
    if (!result.stop_reason.empty()) break;
    std::vector<data::Batch> micro;
    for (int i = 0; i < cfg_.train.grad_accum; ++i) micro.push_back(loader_->next());
    const StepReport report = step(micro);
    ++steps_since_log;
    if (scheduler_.log(state_.step)) {
      const int64_t total_before = state_.nonfinite_total;
      check_nonfinite();
      if (state_.nonfinite_total > total_before)
        spdlog::warn(
            "step {}: {} non-finite step(s) since the last log, updates skipped ({} in a row, {} in total)",
            state_.step, state_.nonfinite_total - total_before, state_.nonfinite_in_row,
            state_.nonfinite_total);
      const auto now = std::chrono::steady_clock::now();
      try {
        log_step(report, std::chrono::duration<double>(now - last_log).count(), steps_since_log);
      } catch (const Error& e) {
        if (!main) throw;
        write_error = e.what();
      }
      stop_if_write_failed();
      last_log = now;
      steps_since_log = 0;
    }
    if (scheduler_.validate(state_.step)) run_validation();
    if (scheduler_.save(state_.step) && last_saved_step_ != state_.step)
      save_checkpoint("every " + std::to_string(cfg_.train.checkpoint.every) + " steps");
  }
  if (result.stop_reason == "max_steps") {
    result.finished = true;
    if (last_validated_step_ != state_.step) run_validation();
  }
  if (last_saved_step_ != state_.step) save_checkpoint(result.stop_reason);
  if (metrics_) metrics_->flush();
  spdlog::info("{} at step {}: {}", result.finished ? "finished" : "stopped (" + result.stop_reason + ")",
               state_.step, last_checkpoint_);
  result.step = state_.step;
  result.checkpoint = last_checkpoint_;
  result.validation = state_.validation;
  return result;
}

}  // namespace losatok::train
