// `losatok config`: compose, validate and print a config; and the config options that every
// config-driven subcommand shares.
#include <fstream>
#include <iostream>

#include "commands.h"
#include "losatok/core/config.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/core/runtime.h"

namespace losatok::cli {

namespace {

void add_config_options(CLI::App& sub, ConfigOptions& opts) {
  sub.add_option("--config,-c", opts.files, "YAML config file (repeatable; later files win)")
      ->allow_extra_args(false);  // `--config a.yaml x=1`: x=1 is an override, not a second file
  sub.add_option("overrides", opts.overrides, "overrides: a.b=v, +a.b=v (add), ++a.b=v, ~a.b (delete)");
  sub.add_flag("--print-config", opts.print_config, "print the resolved config and exit");
}

}  // namespace

void on_config_command(CLI::App& sub, Context& ctx, ConfigOptions& config, std::function<int()> run) {
  add_config_options(sub, config);
  sub.callback([&ctx, run = std::move(run)] {
    ctx.config_driven = true;
    ctx.action = run;
  });
}

RootConfig resolve_root_config(const ConfigOptions& opts, const Context& ctx, const YAML::Node& base) {
  std::vector<std::string> overrides = opts.overrides;
  overrides.insert(overrides.end(), ctx.runtime_overrides.begin(), ctx.runtime_overrides.end());
  RootConfig cfg = read_root_config(opts.files, overrides, base);
  init_logging(cfg.runtime.log_level);
  init_runtime(cfg.runtime);
  if (opts.print_config) std::cout << config::dump(config::to_yaml(cfg));
  return cfg;
}

void add_config_command(CLI::App& app, Context& ctx) {
  auto* sub =
      app.add_subcommand("config", "compose, validate and print a config (defaults -> files -> overrides)");
  auto opts = std::make_shared<ConfigOptions>();
  auto out = std::make_shared<std::string>();
  sub->add_option("--out,-o", *out, "also write the resolved YAML to this file");
  on_config_command(*sub, ctx, *opts, [&ctx, opts, out]() {
    ConfigOptions o = *opts;
    o.print_config = true;
    const RootConfig cfg = resolve_root_config(o, ctx);
    if (!out->empty()) write_file_atomic(*out, config::dump(config::to_yaml(cfg)));
    return 0;
  });
}

}  // namespace losatok::cli
