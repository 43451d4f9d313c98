// Subcommand registration: each src/cli/<name>.cpp adds one subcommand to the app.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "losatok/core/run_config.h"

namespace losatok::cli {

// What main() hands every subcommand: options shared by all of them, and where the chosen
// subcommand leaves its action.
struct Context {
  RuntimeConfig runtime;  // from --threads / --blas-threads / --log-level
  // The same flags, only those given, as `runtime.*` overrides for config-driven commands.
  std::vector<std::string> runtime_overrides;
  // Config-driven commands set up logging and the runtime from their resolved config (in
  // resolve_root_config); main() does it from the flags for the others.
  bool config_driven = false;
  std::function<int()> action;
};

// --config FILE (repeatable), key=value overrides, --print-config: the config options every
// config-driven subcommand shares (added by on_config_command).
struct ConfigOptions {
  std::vector<std::string> files;
  std::vector<std::string> overrides;
  bool print_config = false;
};
// The one way to register a config-driven subcommand: adds the config options (`config`, kept
// alive by the caller's shared options) after the command's own, and makes `run` its action;
// the runtime and logging then come from the resolved config (resolve_root_config), not from
// main's flags.
void on_config_command(CLI::App& sub, Context& ctx, ConfigOptions& config, std::function<int()> run);
// Composes and validates the root config (files, then overrides, then the global runtime
// flags), sets up logging and the runtime from it, and prints it when --print-config.
// `base` (a map of top-level sections, e.g. the model config a checkpoint carries) replaces
// those sections of the built-in defaults before files and overrides apply.
RootConfig resolve_root_config(const ConfigOptions& opts, const Context& ctx, const YAML::Node& base = {});

void add_features_command(CLI::App& app, Context& ctx);
void add_config_command(CLI::App& app, Context& ctx);
void add_inspect_command(CLI::App& app, Context& ctx);
void add_codec_commands(CLI::App& app, Context& ctx);    // encode, decode, reconstruct
void add_weights_commands(CLI::App& app, Context& ctx);  // import, export
void add_extract_command(CLI::App& app, Context& ctx);
void add_text_encode_command(CLI::App& app, Context& ctx);  // one text through a T5 encoder
void add_embed_command(CLI::App& app, Context& ctx);        // the generation instruments' embeddings
void add_transcribe_command(CLI::App& app, Context& ctx);   // Whisper transcripts
void add_train_command(CLI::App& app, Context& ctx);
void add_bench_command(CLI::App& app, Context& ctx);
void add_generate_command(CLI::App& app, Context& ctx);
void add_launch_command(CLI::App& app, Context& ctx);  // multi-process jobs on one machine
void add_eval_command(CLI::App& app, Context& ctx);    // eval recon | probe | gen | rank
void add_plot_command(CLI::App& app, Context& ctx);
void add_report_command(CLI::App& app, Context& ctx);  // summary table of runs and eval JSONs
void add_table_command(CLI::App& app, Context& ctx);   // one paper table: runs, evals, ours beside the paper

}  // namespace losatok::cli
