// The training state's JSON and the loop's scheduler.
#include "losatok/train/training_state.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "losatok/core/compat.h"
#include "losatok/core/error.h"

namespace losatok::train {

std::string TrainingState::to_json() const {
  nlohmann::json j;
  j["step"] = step;
  j["stage"] = stage;
  j["samples_seen"] = samples_seen;
  j["audio_seconds_seen"] = audio_seconds_seen;
  j["nonfinite_steps"] = nonfinite_total;
  j["nonfinite_in_row"] = nonfinite_in_row;
  j["best"] = {{"metric", best_metric}, {"value", best_value}, {"step", best_step}};
  j["loader"] = loader ? nlohmann::json::parse(loader->to_json()) : nlohmann::json(nullptr);
  j["validation"] = validation;
  j["world_size"] = world_size;
  j["torch_version"] = std::to_string(compat::kTorchMajor) + "." + std::to_string(compat::kTorchMinor);
  return j.dump();
}

TrainingState TrainingState::from_json(const std::string& text, const std::string& where,
                                       const std::string& best_metric) {
  TrainingState s;
  s.best_metric = best_metric;
  try {
    const auto j = nlohmann::json::parse(text);
    s.step = j.at("step").get<int64_t>();
    s.stage = j.value("stage", std::string());
    s.samples_seen = j.value("samples_seen", int64_t{0});
    s.audio_seconds_seen = j.value("audio_seconds_seen", 0.0);
    s.nonfinite_total = j.value("nonfinite_steps", int64_t{0});
    s.nonfinite_in_row = j.value("nonfinite_in_row", int64_t{0});
    const auto& best = j.at("best");
    if (best.value("metric", std::string()) == best_metric) {
      s.best_value = best.value("value", 0.0);
      s.best_step = best.value("step", int64_t{-1});
    }
    if (j.contains("loader") && !j["loader"].is_null())
      s.loader = data::LoaderState::from_json(j["loader"].dump());
    if (j.contains("validation") && j["validation"].is_object())
      s.validation = j["validation"].get<std::map<std::string, double>>();
    s.world_size = j.value("world_size", 1);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": " + first_line(e.what()));
  } catch (const Error& e) {
    throw Error(where + ": " + first_line(e.what()));
  }
  return s;
}

bool TrainingState::is_better(double value, const std::string& mode) const {
  if (!std::isfinite(value)) return false;
  if (best_step < 0) return true;
  return mode == "min" ? value < best_value : value > best_value;
}

std::string Scheduler::stop_reason(int64_t step, bool signal) const {
  if (step >= config_.max_steps) return "max_steps";
  if (signal) return "signal";
  if (config_.stop_at_step > 0 && step >= config_.stop_at_step) return "stop_at_step";
  return "";
}

}  // namespace losatok::train
