// `losatok train`: runs the stage a config names into its run_dir; `--resume [RUN_DIR]`
// continues the latest valid checkpoint exactly, `--init-from CKPT` starts a fresh run from
// another run's weights.
#include <filesystem>

#include "commands.h"
#include "losatok/core/config.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/train/checkpoint.h"
#include "losatok/train/trainer.h"

namespace fs = std::filesystem;

namespace losatok::cli {

namespace {

struct TrainOptions {
  ConfigOptions config;
  std::string resume_dir;
  std::string init_from;
};

// The config of a resumed run: the checkpoint's saved config, then this command's overrides;
// every key they change is reported.
RootConfig resumed_config(const TrainOptions& o, const Context& ctx, const train::CheckpointInfo& ck) {
  ConfigOptions co;
  co.files = {(fs::path(ck.path) / "config.yaml").string()};
  co.overrides = o.config.overrides;
  co.print_config = o.config.print_config;
  const RootConfig cfg = resolve_root_config(co, ctx);
  const YAML::Node saved = config::load_config_file(co.files[0]).root;
  // One line per key: the values in YAML's flow style.
  const auto one_line = [](const YAML::Node& n) {
    if (!n.IsDefined()) return std::string("(unset)");
    YAML::Emitter out;
    out << YAML::Flow << n;
    return std::string(out.c_str());
  };
  for (const auto& key : config::changed_keys(saved, config::to_yaml(cfg))) {
    const YAML::Node before = config::find(saved, key), after = config::find(config::to_yaml(cfg), key);
    spdlog::warn("resume: {} changed from {} to {}", key, one_line(before), one_line(after));
  }
  return cfg;
}

int run_train(const TrainOptions& o, bool resume, const Context& ctx) {
  if (resume && !o.init_from.empty()) throw Error("train: --resume and --init-from exclude each other");
  RootConfig cfg;
  train::TrainStart start;
  start.overrides = o.config.overrides;
  start.init_from = o.init_from;
  if (resume && !o.resume_dir.empty()) {
    if (!o.config.files.empty())
      throw Error("train: --resume " + o.resume_dir +
                  " uses the run's saved config; give overrides, not --config");
    const auto ck = train::Checkpointer::latest(o.resume_dir, /*verify_content=*/true);
    if (!ck) throw Error("train --resume: no valid checkpoint in " + o.resume_dir + "/checkpoints");
    cfg = resumed_config(o, ctx, *ck);
    if (fs::weakly_canonical(cfg.run_dir) != fs::weakly_canonical(o.resume_dir)) {
      spdlog::info("resume: run_dir {} -> {}", cfg.run_dir, o.resume_dir);
      cfg.run_dir = o.resume_dir;
    }
    start.resume_checkpoint = ck->path;
  } else {
    if (o.config.files.empty()) throw Error("train: give --config FILE (or --resume RUN_DIR)");
    cfg = resolve_root_config(o.config, ctx);
    if (resume) {
      if (const auto ck = train::Checkpointer::latest(cfg.run_dir, /*verify_content=*/true)) {
        cfg = resumed_config(o, ctx, *ck);
        start.resume_checkpoint = ck->path;
      } else {
        spdlog::info("resume: no checkpoint in {} yet: starting a fresh run", cfg.run_dir);
      }
    }
  }
  if (o.config.print_config) return 0;
  train::Trainer trainer(cfg, config::to_yaml(cfg));
  const train::TrainResult r = trainer.run(start);
  return r.finished || r.stop_reason == "signal" || r.stop_reason == "stop_at_step" ? 0 : 1;
}

}  // namespace

void add_train_command(CLI::App& app, Context& ctx) {
  std::string stages;
  for (const auto& s : train::stage_registry()) stages += "\n  " + s.info.name + ": " + s.info.summary;
  auto* sub =
      app.add_subcommand("train", "train the stage a config names into its run_dir; stages:" + stages);
  auto o = std::make_shared<TrainOptions>();
  auto* resume =
      sub->add_option("--resume", o->resume_dir,
                      "continue the latest valid checkpoint exactly: of RUN_DIR, or of the config's "
                      "run_dir (a fresh start when it has none); overrides apply on top of the saved "
                      "config")
          ->expected(0, 1);
  sub->add_option("--init-from", o->init_from, "a fresh run whose weights come from this checkpoint or file");
  on_config_command(*sub, ctx, o->config, [&ctx, o, resume] {
    // `--resume a.b=v`: CLI11 hands the first override to --resume's optional value.
    if (!o->resume_dir.empty() && o->resume_dir.find('=') != std::string::npos &&
        !fs::is_directory(o->resume_dir)) {
      o->config.overrides.insert(o->config.overrides.begin(), o->resume_dir);
      o->resume_dir.clear();
    }
    return run_train(*o, resume->count() > 0, ctx);
  });
}

}  // namespace losatok::cli
