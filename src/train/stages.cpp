// The stage registry. Each stage's files define `StageRegistration <name>_stage()` (its name, its
// config section, how to build it); adding a stage is one more entry in LOSATOK_STAGES.
#include "losatok/core/error.h"
#include "losatok/train/stage.h"

#define LOSATOK_STAGES(X) X(sembo) X(tokenizer) X(dit) X(mae)

namespace losatok {
namespace train {

#define LOSATOK_DECLARE_STAGE(name) StageRegistration name##_stage();
LOSATOK_STAGES(LOSATOK_DECLARE_STAGE)
#undef LOSATOK_DECLARE_STAGE

const std::vector<StageRegistration>& stage_registry() {
#define LOSATOK_LIST_STAGE(name) name##_stage(),
  static const std::vector<StageRegistration> stages = {LOSATOK_STAGES(LOSATOK_LIST_STAGE)};
#undef LOSATOK_LIST_STAGE
  return stages;
}

std::unique_ptr<Stage> make_stage(const RootConfig& cfg, const torch::Device& device) {
  if (cfg.stage.empty()) throw ConfigError("stage", "training needs a stage (" + stage_names() + ")");
  for (const auto& s : stage_registry())
    if (s.info.name == cfg.stage) return s.make(cfg, device);
  throw ConfigError("stage", "must be one of " + stage_names() + ", got '" + cfg.stage + "'");
}

}  // namespace train

const std::vector<StageInfo>& registered_stages() {
  static const std::vector<StageInfo> infos = [] {
    std::vector<StageInfo> out;
    for (const auto& s : train::stage_registry()) out.push_back(s.info);
    return out;
  }();
  return infos;
}

}  // namespace losatok
