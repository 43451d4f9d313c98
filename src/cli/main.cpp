// losatok: one binary, one subcommand per job. Errors become one line on stderr and exit 1.
#include <iostream>

#include "commands.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/core/runtime.h"

int main(int argc, char** argv) {
  using namespace losatok;
  set_openmp_wait_policy_and_reexec(argv);
  CLI::App app{"losatok: LoSATok semantic-acoustic tokenizer and diffusion training (LibTorch)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "losatok 0.1.0");
  cli::Context ctx;
  app.add_option("--threads", ctx.runtime.threads, "LibTorch intra-op threads (0 = all cores)")
      ->capture_default_str();
  app.add_option("--blas-threads", ctx.runtime.blas_threads, "OpenBLAS threads (0 = same as --threads)")
      ->capture_default_str();
  app.add_option("--log-level", ctx.runtime.log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  cli::add_features_command(app, ctx);
  cli::add_config_command(app, ctx);
  cli::add_inspect_command(app, ctx);
  cli::add_codec_commands(app, ctx);
  cli::add_weights_commands(app, ctx);
  cli::add_extract_command(app, ctx);
  cli::add_text_encode_command(app, ctx);
  cli::add_embed_command(app, ctx);
  cli::add_transcribe_command(app, ctx);
  cli::add_train_command(app, ctx);
  cli::add_bench_command(app, ctx);
  cli::add_generate_command(app, ctx);
  cli::add_launch_command(app, ctx);
  cli::add_eval_command(app, ctx);
  cli::add_plot_command(app, ctx);
  cli::add_report_command(app, ctx);
  cli::add_table_command(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "losatok: error: " << e.what() << " (see losatok --help)" << std::endl;
    return 2;
  }
  try {
    for (const auto& [flag, key] : {std::pair<const char*, const char*>{"--threads", "threads"},
                                    {"--blas-threads", "blas_threads"},
                                    {"--log-level", "log_level"}}) {
      if (app.get_option(flag)->count() > 0)
        ctx.runtime_overrides.push_back(std::string("runtime.") + key + "=" +
                                        app.get_option(flag)->as<std::string>());
    }
    if (!ctx.config_driven) {
      config::validate_all(ctx.runtime, "runtime");
      init_logging(ctx.runtime.log_level);
      init_runtime(ctx.runtime);
    }
    return ctx.action ? ctx.action() : 0;
  } catch (const std::exception& e) {
    std::cerr << "losatok: error: " << first_line(e.what()) << std::endl;
    return 1;
  }
}
