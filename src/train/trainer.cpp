// The training loop shared by every stage.
#include "losatok/train/trainer.h"

#include <torch/torch.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "losatok/core/compat.h"
#include "losatok/core/config.h"
#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/train/metrics.h"
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

}  // namespace

void Trainer::request_stop() {
  g_stop_requested.store(true);
}

Trainer::Trainer(const RootConfig& cfg, const YAML::Node& resolved, std::unique_ptr<Stage> stage)
    : cfg_(cfg), resolved_(config::deep_copy(resolved)), device_(resolve_device(cfg.runtime.device)) {
  torch::manual_seed(static_cast<uint64_t>(cfg_.seed));
  stage_ = stage ? std::move(stage) : make_stage(cfg_, device_);
  for (auto& spec : stage_->optimizers()) optimizers_.emplace_back(spec.name, spec.parameters, spec.config);
  ema_ = std::make_unique<Ema>(stage_->ema_parameters(), cfg_.train.ema);
  best_metric_ = cfg_.train.best_metric.empty() ? stage_->best_metric() : cfg_.train.best_metric;
}

Trainer::~Trainer() = default;

StepReport Trainer::step(const std::vector<data::Batch>& micro_batches) {
  if (micro_batches.empty()) throw Error("trainer: a step needs at least one batch");
  StepReport report;
  stage_->set_training(true);
  const double scale = 1.0 / static_cast<double>(micro_batches.size());
  const std::size_t phases = std::max<std::size_t>(1, optimizers_.size());
  const bool autocast = cfg_.train.precision == "bf16" && device_.is_cuda();
  for (std::size_t phase = 0; phase < phases; ++phase) {
    AdamW* opt = optimizers_.empty() ? nullptr : &optimizers_[phase];
    if (opt && !stage_->optimizer_active(phase, step_)) continue;
    if (opt) opt->zero_grad();
    torch::Tensor loss_sum;
    for (const auto& batch : micro_batches) {
      StepOutput out;
      {
        const compat::AutocastGuard guard(autocast, at::kBFloat16);
        out = stage_->train_step(phase, batch, step_);
      }
      if (out.loss.defined() && opt) {
        (out.loss * scale).backward();
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
    const std::string suffix = optimizers_.size() > 1 ? "/" + opt->name() : "";
    const torch::Tensor norm = clip_grad_norm(opt->parameters(), cfg_.train.grad_clip);
    report.metrics["grad_norm" + suffix] = norm.to(torch::kFloat64);
    // The one host sync of the step: a non-finite loss or gradient skips this update.
    const bool finite =
        (!loss_sum.defined() || torch::isfinite(loss_sum).item<bool>()) && torch::isfinite(norm).item<bool>();
    if (!finite) {
      opt->zero_grad();
      report.skipped = true;
      continue;
    }
    const double lr = opt->config().lr * lr_factor(opt->config().schedule, step_, cfg_.train.max_steps);
    opt->step(lr);
    report.lr[opt->name()] = lr;
  }
  for (const auto& b : micro_batches) {
    report.samples += b.size();
    if (b.lengths.defined()) report.audio_seconds += b.lengths.sum().item<double>() / cfg_.audio.sample_rate;
  }
  if (report.skipped) {
    ++nonfinite_in_row_;
    ++nonfinite_total_;
  } else {
    nonfinite_in_row_ = 0;
    ema_->update(step_);
  }
  ++step_;
  samples_seen_ += report.samples;
  audio_seconds_seen_ += report.audio_seconds;
  return report;
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
    context.step = step_;
    context.dir = (fs::path(cfg_.run_dir) / "samples" / ("step-" + std::to_string(step_))).string();
    context.audio = [this](const std::string& tag, const std::vector<float>& samples, int sr) {
      if (metrics_) metrics_->audio(tag, samples, sr, step_);
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

bool Trainer::is_better(double value) const {
  if (!std::isfinite(value)) return false;
  if (best_step_ < 0) return true;
  return cfg_.train.best_mode == "min" ? value < best_value_ : value > best_value_;
}

std::string Trainer::progress_json() const {
  nlohmann::json j;
  j["step"] = step_;
  j["stage"] = stage_->name();
  j["samples_seen"] = samples_seen_;
  j["audio_seconds_seen"] = audio_seconds_seen_;
  j["nonfinite_steps"] = nonfinite_total_;
  j["nonfinite_in_row"] = nonfinite_in_row_;
  j["best"] = {{"metric", best_metric_}, {"value", best_value_}, {"step", best_step_}};
  j["loader"] = loader_ ? nlohmann::json::parse(loader_->state().to_json()) : nlohmann::json(nullptr);
  j["validation"] = last_validation_;
  j["torch_version"] = std::to_string(compat::kTorchMajor) + "." + std::to_string(compat::kTorchMinor);
  return j.dump();
}

std::string Trainer::save_checkpoint(const std::string& why) {
  const std::map<std::string, std::string> meta = {{kConfigMetadataKey, weights_config_yaml(cfg_)},
                                                   {"losatok.stage", stage_->name()},
                                                   {"losatok.step", std::to_string(step_)}};
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
    io::save_safetensors(p, all, {{"losatok.step", std::to_string(step_)}});
  });
  files.emplace_back(kStateFile, [&](const std::string& p) {
    TensorMap state;
    state["rng.cpu"] = generator_state(at::kCPU);
    if (torch::cuda::is_available())
      for (int i = 0; i < static_cast<int>(torch::cuda::device_count()); ++i)
        state["rng.cuda." + std::to_string(i)] =
            generator_state(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)));
    for (const auto& [k, v] : stage_->extra_state()) state["stage." + k] = v;
    io::save_safetensors(p, state);
  });
  files.emplace_back(kConfigFile,
                     [&](const std::string& p) { write_file_atomic(p, config::dump(resolved_)); });
  const auto t0 = std::chrono::steady_clock::now();
  last_checkpoint_ = checkpointer_->save(step_, files, progress_json());
  checkpointer_->prune(best_step_);
  last_saved_step_ = step_;
  spdlog::info("checkpoint {} ({}, {:.1f} s)", last_checkpoint_, why,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return last_checkpoint_;
}

void Trainer::restore(const std::string& dir) {
  const std::string why = Checkpointer::check(dir);
  if (!why.empty()) throw Error("checkpoint " + dir + " is incomplete: " + why);
  const auto path = [&](const char* f) { return (fs::path(dir) / f).string(); };
  nlohmann::json progress;
  try {
    progress = nlohmann::json::parse(read_file(path(kProgressFile)));
    if (progress.value("stage", std::string()) != stage_->name())
      throw Error("checkpoint " + dir + " is of the '" + progress.value("stage", std::string()) +
                  "' stage, this run is '" + stage_->name() + "'");
    stage_->load_model_state(io::load_safetensors(path(kModelFile)).tensors, path(kModelFile),
                             /*strict=*/true);
    if (ema_->enabled()) {
      if (fs::exists(path(kEmaFile)))
        ema_->load(io::load_safetensors(path(kEmaFile)).tensors, path(kEmaFile));
      else
        spdlog::warn("{} has no EMA weights: the average restarts from the current weights", dir);
    }
    const auto opt_state = io::load_safetensors(path(kOptimizerFile)).tensors;
    for (auto& opt : optimizers_) {
      std::map<std::string, torch::Tensor> mine;
      const std::string prefix = opt.name() + "/";
      for (const auto& [k, v] : opt_state)
        if (k.rfind(prefix, 0) == 0) mine[k.substr(prefix.size())] = v;
      opt.load_state(mine, path(kOptimizerFile));
    }
    const auto state = io::load_safetensors(path(kStateFile)).tensors;
    TensorMap extra;
    for (const auto& [k, v] : state)
      if (k.rfind("stage.", 0) == 0) extra[k.substr(6)] = v;
    stage_->load_extra_state(extra, path(kStateFile));
    step_ = progress.at("step").get<int64_t>();
    samples_seen_ = progress.value("samples_seen", int64_t{0});
    audio_seconds_seen_ = progress.value("audio_seconds_seen", 0.0);
    nonfinite_total_ = progress.value("nonfinite_steps", int64_t{0});
    nonfinite_in_row_ = progress.value("nonfinite_in_row", 0);
    const auto& best = progress.at("best");
    if (best.value("metric", std::string()) == best_metric_) {
      best_value_ = best.value("value", 0.0);
      best_step_ = best.value("step", int64_t{-1});
    }
    if (progress.contains("loader") && !progress["loader"].is_null())
      loader_->restore(data::LoaderState::from_json(progress["loader"].dump()));
    // Last, so nothing above draws from the generators after they are set.
    set_generator_state(at::kCPU, state.at("rng.cpu"));
    if (torch::cuda::is_available())
      for (int i = 0; i < static_cast<int>(torch::cuda::device_count()); ++i)
        if (const auto it = state.find("rng.cuda." + std::to_string(i)); it != state.end())
          set_generator_state(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)), it->second);
  } catch (const nlohmann::json::exception& e) {
    throw Error("checkpoint " + dir + ": " + kProgressFile + ": " + e.what());
  } catch (const std::out_of_range&) {
    throw Error("checkpoint " + dir + ": " + kStateFile + " has no CPU RNG state");
  }
  last_saved_step_ = step_;
  last_checkpoint_ = dir;
  spdlog::info("resumed {} at step {} (epoch {}, {} samples seen)", dir, step_, loader_->state().epoch,
               samples_seen_);
}

void Trainer::log_step(const StepReport& report, double seconds, int64_t steps) {
  std::map<std::string, double> values;
  for (const auto& [k, v] : report.metrics) values["train/" + k] = v.item<double>();
  for (const auto& [k, v] : report.lr) values["lr/" + k] = v;
  const double per_step = steps > 0 ? seconds / steps : 0;
  values["perf/samples_per_s"] = per_step > 0 ? report.samples / per_step : 0;
  values["perf/audio_s_per_s"] = per_step > 0 ? report.audio_seconds / per_step : 0;
  values["perf/step_s"] = per_step;
  values["train/nonfinite_steps"] = static_cast<double>(nonfinite_total_);
  metrics_->log(step_, values);
  std::string line = fmt::format("step {}/{}", step_, cfg_.train.max_steps);
  for (const auto& [k, v] : report.metrics) line += fmt::format(" {} {:.4g}", k, v.item<double>());
  for (const auto& [k, v] : report.lr)
    line += fmt::format(" | lr{} {:.3g}", report.lr.size() > 1 ? "/" + k : "", v);
  line +=
      fmt::format(" | {:.1f} samples/s {:.1f} audio-s/s | ETA {}", values["perf/samples_per_s"],
                  values["perf/audio_s_per_s"], format_duration(per_step * (cfg_.train.max_steps - step_)));
  spdlog::info("{}", line);
}

TrainResult Trainer::run(const TrainStart& start) {
  const fs::path run_dir = cfg_.run_dir;
  checkpointer_ = std::make_unique<Checkpointer>(cfg_.run_dir, cfg_.train.checkpoint);
  if (start.resume_checkpoint.empty() && Checkpointer::latest(cfg_.run_dir))
    throw Error("run_dir '" + cfg_.run_dir +
                "' already has checkpoints: add --resume to continue it, or choose "
                "another run_dir");
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  if (ec) throw Error("cannot create run_dir '" + cfg_.run_dir + "': " + ec.message());
  log_to_file((run_dir / "train.log").string());
  config::save_run_config(cfg_.run_dir, resolved_, start.overrides);

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
  loader_ = std::make_unique<data::AudioLoader>(cfg_.data, cfg_.data.sources, lo);
  if (!start.resume_checkpoint.empty()) restore(start.resume_checkpoint);
  metrics_ = std::make_unique<MetricsLogger>(cfg_.run_dir, cfg_.train.tensorboard,
                                             start.resume_checkpoint.empty() ? -1 : step_);
  if (cfg_.data.valid_sources.empty()) spdlog::warn("data.valid_sources is empty: no validation");
  spdlog::info("training {} in {}: steps {} -> {}, {} optimizer(s), {} batches per epoch", stage_->name(),
               cfg_.run_dir, step_, cfg_.train.max_steps, optimizers_.size(), loader_->batches_per_epoch());

  const StopSignals signals;
  TrainResult result;
  auto last_log = std::chrono::steady_clock::now();
  int64_t steps_since_log = 0;
  const auto run_validation = [&] {
    last_validation_ = validate();
    last_validated_step_ = step_;
    if (last_validation_.empty()) return;
    metrics_->log(step_, last_validation_);
    std::string line = fmt::format("validation at step {}:", step_);
    for (const auto& [k, v] : last_validation_) line += fmt::format(" {} {:.5g}", k, v);
    spdlog::info("{}", line);
    const auto it = last_validation_.find(best_metric_);
    if (it == last_validation_.end()) {
      spdlog::warn("validation has no metric '{}' for keep-best (train.best_metric)", best_metric_);
    } else if (step_ > 0 && is_better(it->second)) {  // step 0 is the untrained reference
      best_value_ = it->second;
      best_step_ = step_;
      save_checkpoint("best " + best_metric_ + fmt::format(" {:.5g}", best_value_));
    }
  };

  // The untrained model's figures: the reference every later validation is read against.
  if (start.resume_checkpoint.empty() && step_ == 0 && cfg_.train.max_steps > 0) run_validation();
  while (step_ < cfg_.train.max_steps) {
    if (g_stop_requested.load()) {
      result.stop_reason = "signal";
      break;
    }
    if (cfg_.train.stop_at_step > 0 && step_ >= cfg_.train.stop_at_step) {
      result.stop_reason = "stop_at_step";
      break;
    }
    std::vector<data::Batch> micro;
    for (int i = 0; i < cfg_.train.grad_accum; ++i) micro.push_back(loader_->next());
    const StepReport report = step(micro);
    ++steps_since_log;
    if (report.skipped) {
      spdlog::warn("step {}: non-finite loss or gradient, update skipped ({} in a row, {} in total)", step_,
                   nonfinite_in_row_, nonfinite_total_);
      if (nonfinite_in_row_ >= cfg_.train.max_nonfinite)
        throw Error(
            fmt::format("{} non-finite steps in a row (up to step {}): stopping; the last good checkpoint "
                        "is {}",
                        nonfinite_in_row_, step_, last_checkpoint_.empty() ? "none" : last_checkpoint_));
    }
    if (step_ % cfg_.train.log_every == 0 || step_ == cfg_.train.max_steps) {
      const auto now = std::chrono::steady_clock::now();
      log_step(report, std::chrono::duration<double>(now - last_log).count(), steps_since_log);
      last_log = now;
      steps_since_log = 0;
    }
    if (cfg_.train.val_every > 0 && step_ % cfg_.train.val_every == 0) run_validation();
    if (cfg_.train.checkpoint.every > 0 && step_ % cfg_.train.checkpoint.every == 0 &&
        last_saved_step_ != step_)
      save_checkpoint("every " + std::to_string(cfg_.train.checkpoint.every) + " steps");
  }
  if (result.stop_reason.empty()) {
    result.stop_reason = "max_steps";
    result.finished = true;
    if (last_validated_step_ != step_) run_validation();
  }
  if (last_saved_step_ != step_ || last_checkpoint_.empty()) save_checkpoint(result.stop_reason);
  metrics_->flush();
  spdlog::info("{} at step {}: {}", result.finished ? "finished" : "stopped (" + result.stop_reason + ")",
               step_, last_checkpoint_);
  result.step = step_;
  result.checkpoint = last_checkpoint_;
  result.validation = last_validation_;
  return result;
}

}  // namespace losatok::train
