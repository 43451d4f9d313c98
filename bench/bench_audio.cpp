// Benchmarks for the foundation: audio decode + resample + front ends (x real time), and the
// thread set-up (LibTorch intra-op threads x OpenBLAS threads) on a SemBo-shaped training step.
//
//   losatok_bench_audio audio FILE...      decode/resample/front-end throughput, one core
//   losatok_bench_audio threads [STEPS]    ms per training step for each thread combination
//   losatok_bench_audio loader MANIFEST [WORKERS] [SEGMENT_S]   loader throughput (x real time)
//     (run it with and without OMP_WAIT_POLICY=PASSIVE: the policy is fixed at load time)
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "losatok/audio/audio_io.h"
#include "losatok/audio/mel.h"
#include "losatok/core/runtime.h"
#include "losatok/data/loader.h"

using namespace losatok;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int bench_audio(const std::vector<std::string>& files) {
  torch::set_num_threads(1);
  set_blas_threads(1);
  const audio::LogMel dasheng(MelConfig::dasheng()), vocos(MelConfig::vocos());
  double audio_s = 0, decode_s = 0, dasheng_s = 0, vocos_s = 0;
  for (int rep = 0; rep < 3; ++rep) {
    for (const auto& f : files) {
      auto t0 = Clock::now();
      const auto wave = audio::load_audio(f, 16000);
      decode_s += seconds_since(t0);
      audio_s += wave.size() / 16000.0;
      auto x = torch::from_blob(const_cast<float*>(wave.data()), {static_cast<int64_t>(wave.size())});
      torch::NoGradGuard ng;
      t0 = Clock::now();
      dasheng(x);
      dasheng_s += seconds_since(t0);
      t0 = Clock::now();
      vocos(x);
      vocos_s += seconds_since(t0);
    }
  }
  std::printf("audio: %zu files x 3, %.1f s of audio, one thread\n", files.size(), audio_s);
  std::printf("  decode + resample to 16 kHz mono : %8.0f x real time\n", audio_s / decode_s);
  std::printf("  dasheng log-mel (64, dB)         : %8.0f x real time\n", audio_s / dasheng_s);
  std::printf("  vocos log-mel (128, log)         : %8.0f x real time\n", audio_s / vocos_s);
  return 0;
}

// One SemBo-shaped step: compressor 1280->512->128, restorer 128->512->1280, cosine-normalised
// MSE, backward, AdamW. (B*T) = 16 clips x 250 frames.
double mlp_step_ms(int steps) {
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(1280, 512), torch::nn::Functional(torch::gelu, "none"),
                            torch::nn::Linear(512, 128), torch::nn::Linear(128, 512),
                            torch::nn::Functional(torch::gelu, "none"), torch::nn::Linear(512, 1280));
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-4));
  auto h = torch::randn({16 * 250, 1280});
  auto target = torch::nn::functional::normalize(h, torch::nn::functional::NormalizeFuncOptions().dim(-1));
  auto step = [&] {
    opt.zero_grad();
    auto y = torch::nn::functional::normalize(net->forward(h),
                                              torch::nn::functional::NormalizeFuncOptions().dim(-1));
    auto loss = torch::mse_loss(y, target);
    loss.backward();
    opt.step();
  };
  for (int i = 0; i < 2; ++i) step();  // warm-up
  const auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) step();
  return 1000.0 * seconds_since(t0) / steps;
}

// A transformer-encoder-shaped step (the frozen encoder's kind of work): many small
// element-wise ops between GEMMs, where spinning OpenMP workers and OpenBLAS threads collide.
double encoder_step_ms(int steps) {
  torch::manual_seed(0);
  const int64_t B = 4, T = 250, D = 384, H = 6;
  torch::nn::ModuleList blocks;
  for (int i = 0; i < 4; ++i) {
    blocks->push_back(torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
    blocks->push_back(torch::nn::Linear(D, 3 * D));
    blocks->push_back(torch::nn::Linear(D, D));
    blocks->push_back(torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
    blocks->push_back(torch::nn::Linear(D, 4 * D));
    blocks->push_back(torch::nn::Linear(4 * D, D));
  }
  torch::optim::AdamW opt(blocks->parameters(), torch::optim::AdamWOptions(1e-4));
  auto x0 = torch::randn({B, T, D});
  auto step = [&] {
    opt.zero_grad();
    auto x = x0;
    for (size_t i = 0; i < blocks->size(); i += 6) {
      auto h = blocks[i]->as<torch::nn::LayerNorm>()->forward(x);
      auto qkv = blocks[i + 1]
                     ->as<torch::nn::Linear>()
                     ->forward(h)
                     .view({B, T, 3, H, D / H})
                     .permute({2, 0, 3, 1, 4});
      auto att = torch::softmax(torch::matmul(qkv[0], qkv[1].transpose(-2, -1)) / 8.0, -1);
      auto a = torch::matmul(att, qkv[2]).transpose(1, 2).reshape({B, T, D});
      x = x + blocks[i + 2]->as<torch::nn::Linear>()->forward(a);
      h = blocks[i + 3]->as<torch::nn::LayerNorm>()->forward(x);
      x = x + blocks[i + 5]->as<torch::nn::Linear>()->forward(
                  torch::gelu(blocks[i + 4]->as<torch::nn::Linear>()->forward(h)));
    }
    x.pow(2).mean().backward();
    opt.step();
  };
  for (int i = 0; i < 2; ++i) step();
  const auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) step();
  return 1000.0 * seconds_since(t0) / steps;
}

int bench_threads(int steps) {
  const int cores = physical_cores();
  std::printf(
      "threads: SemBo-shaped MLP step (4000 x 1280) and 4-block encoder step (4 x 250 x 384), %d steps "
      "each, %d cores, BLAS %s, OpenMP wait %s\n",
      steps, cores, detect_blas().name.c_str(), openmp_wait_policy().c_str());
  std::printf("  %-14s %-14s %12s %12s\n", "torch threads", "BLAS threads", "MLP ms/step", "enc ms/step");
  std::vector<int> counts;
  for (int n = 1; n <= cores; n *= 2) counts.push_back(n);
  if (counts.back() != cores) counts.push_back(cores);
  for (int t : counts) {
    for (int b : counts) {
      torch::set_num_threads(t);
      set_blas_threads(b);
      const double mlp = mlp_step_ms(steps);
      std::printf("  %-14d %-14d %12.1f %12.1f\n", t, b, mlp, encoder_step_ms(steps));
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

// The data loader end to end (decode + resample + crop + batch): audio-seconds per second of
// wall time, and per worker thread, over two epochs of the manifest.
int bench_loader(const std::string& manifest, int workers, double segment) {
  torch::set_num_threads(1);
  set_blas_threads(1);
  DataConfig cfg;
  cfg.segment_seconds = segment;
  cfg.batch_size = 8;
  cfg.drop_last = false;
  cfg.workers = workers;
  cfg.max_bad_files = -1;
  data::LoaderOptions options;
  data::AudioLoader loader(cfg, {{manifest, 0.0}}, options);
  loader.next();  // start the workers
  const auto t0 = Clock::now();
  double audio_s = 0;
  int64_t batches = 0;
  while (loader.state().epoch < 2) {
    audio_s += loader.next().lengths.sum().item<int64_t>() / 16000.0;
    ++batches;
  }
  const double wall = seconds_since(t0);
  std::printf("loader: %s, %lld batches of 8, %s crops, %d worker(s)\n", manifest.c_str(),
              static_cast<long long>(batches),
              segment > 0 ? (std::to_string(segment).substr(0, 4) + " s").c_str() : "whole", workers);
  std::printf("  %.1f s of audio in %.2f s: %.0f x real time, %.0f x per worker\n", audio_s, wall,
              audio_s / wall, audio_s / wall / std::max(1, workers));
  return 0;
}

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "audio" && argc > 2) return bench_audio(std::vector<std::string>(argv + 2, argv + argc));
    if (mode == "threads") return bench_threads(argc > 2 ? std::stoi(argv[2]) : 10);
    if (mode == "loader" && argc > 2)
      return bench_loader(argv[2], argc > 3 ? std::stoi(argv[3]) : 1, argc > 4 ? std::stod(argv[4]) : 4.0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "losatok_bench_audio: error: %s\n", e.what());
    return 1;
  }
  std::fprintf(
      stderr,
      "usage: losatok_bench_audio audio FILE... | threads [STEPS] | loader MANIFEST [WORKERS] [SEGMENT_S]\n");
  return 2;
}
