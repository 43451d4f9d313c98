// The stage registry: one line per stage. The trainer never names a stage.
#include "losatok/core/error.h"
#include "losatok/train/dit_stage.h"
#include "losatok/train/sembo_stage.h"
#include "losatok/train/stage.h"
#include "losatok/train/tokenizer_stage.h"

namespace losatok::train {

std::unique_ptr<Stage> make_stage(const RootConfig& cfg, const torch::Device& device) {
  if (cfg.stage == "sembo") return std::make_unique<SemBoStage>(cfg, device);
  if (cfg.stage == "tokenizer") return std::make_unique<TokenizerStage>(cfg, device);
  if (cfg.stage == "dit") return std::make_unique<DiTStage>(cfg, device);
  if (cfg.stage.empty()) throw ConfigError("stage", "training needs a stage (sembo, tokenizer, dit)");
  throw ConfigError(
      "stage", "the '" + cfg.stage + "' stage is not in this build yet (it trains: sembo, tokenizer, dit)");
}

}  // namespace losatok::train
