// Subcommand registration: each src/cli/<name>.cpp adds one subcommand to the app.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "losatok/core/run_config.h"

namespace losatok::cli {

// What main() hands every subcommand: options shared by all of them, and where the chosen
// subcommand leaves its action (run after parsing, logging and runtime set-up).
struct Context {
  RuntimeConfig runtime;  // from --threads / --blas-threads / --log-level (or a config file)
  std::function<int()> action;
};

// --config FILE (repeatable), key=value overrides, --print-config: the config options every
// config-driven subcommand shares.
struct ConfigOptions {
  std::vector<std::string> files;
  std::vector<std::string> overrides;
  bool print_config = false;
};
void add_config_options(CLI::App& sub, ConfigOptions& opts);
// Composes and validates the root config; prints it and returns true when --print-config.
RootConfig resolve_root_config(const ConfigOptions& opts, bool& printed);

void add_features_command(CLI::App& app, Context& ctx);
void add_config_command(CLI::App& app, Context& ctx);
void add_inspect_command(CLI::App& app, Context& ctx);

}  // namespace losatok::cli
