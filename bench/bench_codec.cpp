// Encode / decode speed of the LoSATok tokenizer (x real time) for a model config, with the
// parameter count per module. Weights are random (speed does not depend on their values).
//
//   losatok_bench_codec [--config FILE] [--seconds S] [--threads N] [--reps R] [--save PATH]
//
// --save writes the model's weights with its config (as `losatok import` does), for checks
// such as loading the paper-size model back and running `losatok reconstruct` with it.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "losatok/core/config.h"
#include "losatok/core/error.h"
#include "losatok/core/runtime.h"
#include "losatok/io/weights.h"
#include "losatok/models/audio_vae.h"

using namespace losatok;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) try {
  set_openmp_wait_policy_and_reexec(argv);
  std::string config_file = "configs/model/tiny.yaml", save;
  double seconds = 10.0;
  int threads = 1, reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--config")
      config_file = v;
    else if (a == "--seconds")
      seconds = std::stod(v);
    else if (a == "--threads")
      threads = std::stoi(v);
    else if (a == "--reps")
      reps = std::stoi(v);
    else if (a == "--save")
      save = v;
    else
      throw Error("unknown option " + a);
  }
  const RootConfig cfg = read_root_config({config_file}, {});
  RuntimeConfig rt = cfg.runtime;
  rt.threads = threads;
  rt.blas_threads = threads;
  const RuntimeInfo info = init_runtime(rt);
  std::printf("%s, %d thread(s), %s, %.1f s of audio, best of %d\n", config_file.c_str(), threads,
              info.blas.name.c_str(), seconds, reps);

  auto t0 = Clock::now();
  models::AudioVAE vae(cfg.model, cfg.frontend.dasheng, cfg.frontend.vocos);
  vae->eval();
  std::printf("  build + init                  : %8.2f s\n", seconds_since(t0));
  for (const auto& [part, n] : models::parameter_breakdown(*vae))
    std::printf("  %-30s: %12lld parameters (%.1f M)\n", part.c_str(), static_cast<long long>(n), n / 1e6);
  if (!save.empty()) {
    io::save_weights(save, io::module_state(*vae), "safetensors",
                     {{"format", "losatok"}, {kConfigMetadataKey, weights_config_yaml(cfg)}});
    std::printf("  saved %s\n", save.c_str());
  }

  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  const torch::Tensor wave = 0.1 * torch::randn({1, static_cast<int64_t>(seconds * cfg.audio.sample_rate)});
  double enc = 1e30, dec = 1e30;
  torch::Tensor z;
  for (int r = 0; r < reps + 1; ++r) {  // the first run warms up
    t0 = Clock::now();
    z = vae->encode(wave).mu;
    if (r > 0) enc = std::min(enc, seconds_since(t0));
    t0 = Clock::now();
    vae->decode(z);
    if (r > 0) dec = std::min(dec, seconds_since(t0));
  }
  std::printf("  encode (both branches + head) : %8.1f x real time (%.3f s)\n", seconds / enc, enc);
  std::printf("  decode                        : %8.1f x real time (%.3f s)\n", seconds / dec, dec);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "losatok_bench_codec: error: %s\n", first_line(e.what()).c_str());
  return 1;
}
