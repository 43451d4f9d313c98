// The evaluation metrics on signals and sets with known answers, STOI and the Frechet distance
// against tests/reference/make_eval_fixtures.py, the probes on separable and shuffled data.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "losatok/audio/mel_config.h"
#include "losatok/eval/asr.h"
#include "losatok/eval/metrics.h"
#include "losatok/eval/plot.h"
#include "losatok/eval/probe.h"
#include "losatok/eval/representations.h"
#include "losatok/io/safetensors.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace losatok;

namespace {

torch::Tensor fixture_tensor(const std::string& name) {
  static const io::SafetensorsData data = io::load_safetensors(test::fixture("eval_metrics.safetensors"));
  return data.tensors.at(name);
}
double expected(const std::string& name) {
  return fixture_tensor("expected_" + name).item<double>();
}

// A 1.5 s harmonic tone under a syllable-like envelope at `rate`.
torch::Tensor speechlike(int rate, double seconds = 1.5) {
  const torch::Tensor t = torch::arange(static_cast<int64_t>(rate * seconds), torch::kFloat64) / rate;
  torch::Tensor voiced = torch::zeros_like(t);
  for (int h = 1; h < 10; ++h) voiced += torch::sin(2 * M_PI * 150.0 * h * t) / h;
  const torch::Tensor env = torch::sin(2 * M_PI * 3.0 * t).clamp_min(0).pow(2);
  return (0.3 * env * voiced).to(torch::kFloat32);
}

torch::Tensor noise_at_snr(const torch::Tensor& x, double snr_db, uint64_t seed) {
  torch::manual_seed(seed);
  const torch::Tensor n = torch::randn_like(x);
  return n * (x.norm() / n.norm() / std::pow(10.0, snr_db / 20.0));
}

}  // namespace

TEST(Stoi, MatchesTheIndependentReference) {
  for (const char* rate : {"10k", "16k"})
    for (const char* kind : {"noisy", "muffled"}) {
      const std::string name = std::string("stoi_") + rate + "_" + kind;
      const double got = eval::stoi(fixture_tensor(std::string("stoi_") + rate + "_clean"),
                                    fixture_tensor(name), std::string(rate) == "10k" ? 10000 : 16000);
      // 10 kHz: the same arithmetic; 16 kHz: libsoxr against torchaudio's resampler.
      EXPECT_NEAR(got, expected(name), std::string(rate) == "10k" ? 1e-6 : 5e-3) << name;
    }
}

TEST(Stoi, KnownAnswers) {
  const torch::Tensor x = speechlike(16000);
  EXPECT_NEAR(eval::stoi(x, x, 16000), 1.0, 1e-6);
  EXPECT_NEAR(eval::stoi(x, 0.25 * x, 16000), 1.0, 1e-6)
      << "STOI is invariant to the processed signal's level";
  // Less intelligible as the noise grows.
  double previous = 1.0;
  for (double snr : {20.0, 5.0, -5.0, -15.0}) {
    const double s = eval::stoi(x, x + noise_at_snr(x, snr, 3), 16000);
    EXPECT_LT(s, previous) << snr << " dB";
    previous = s;
  }
  // Noise alone carries nothing of the clean signal: far below even -15 dB SNR.
  EXPECT_LT(std::abs(eval::stoi(x, noise_at_snr(x, 0.0, 4), 16000)), 0.3);
  test::expect_error([&] { eval::stoi(x, x.narrow(0, 0, 8000), 16000); }, {"differ in length"});
  test::expect_error([&] { eval::stoi(x.narrow(0, 0, 3000), x.narrow(0, 0, 3000), 16000); },
                     {"fewer than one 384 ms segment"});
}

TEST(ReconMetrics, KnownAnswers) {
  const eval::ReconMetrics metrics(MelConfig::vocos());
  torch::manual_seed(0);
  const torch::Tensor noise = 0.1 * torch::randn({16000});
  const eval::ReconScores same = metrics(noise, noise);
  EXPECT_NEAR(same.mel_distance, 0.0, 1e-7);
  EXPECT_NEAR(same.stft_distance, 0.0, 1e-6);
  EXPECT_GT(same.si_sdr, 80.0);
  EXPECT_NEAR(same.stoi, 1.0, 1e-6);
  // Half the amplitude: every magnitude-mel bin halves, so the log-mel distance is log 2;
  // SI-SDR does not see the scale.
  const eval::ReconScores half = metrics(0.5 * noise, noise);
  EXPECT_NEAR(half.mel_distance, std::log(2.0), 1e-4);
  EXPECT_GT(half.si_sdr, 80.0);
  // White noise added at 10 dB SNR: SI-SDR is that SNR (up to the noise's chance projection).
  const torch::Tensor x = speechlike(16000);
  const eval::ReconScores snr10 = metrics(x + noise_at_snr(x, 10.0, 5), x);
  EXPECT_NEAR(snr10.si_sdr, 10.0, 0.3);
  const eval::ReconScores snr0 = metrics(x + noise_at_snr(x, 0.0, 5), x);
  EXPECT_NEAR(snr0.si_sdr, 0.0, 0.3);
  EXPECT_GT(snr0.mel_distance, snr10.mel_distance);
  EXPECT_GT(snr0.stft_distance, snr10.stft_distance);
  // White noise one sample late: uncorrelated samples (SI-SDR far below 0), but each frame's
  // spectrum barely changes (spectral distances near 0, far below the 0 dB noise's).
  const torch::Tensor late_noise = torch::cat({torch::zeros({1}), noise.narrow(0, 0, noise.size(0) - 1)});
  const eval::ReconScores late = metrics(late_noise, noise);
  EXPECT_LT(late.si_sdr, -15.0);
  EXPECT_LT(late.mel_distance, 0.05);
  EXPECT_LT(late.mel_distance, 0.1 * snr0.mel_distance);
  test::expect_error([&] { metrics(noise.narrow(0, 0, 500), noise.narrow(0, 0, 500)); }, {"fewer than 2048"});
}

TEST(Frechet, IdenticalShiftedScaledAndReference) {
  torch::manual_seed(1);
  torch::Tensor a = torch::randn({200, 6}, torch::kFloat64) * torch::linspace(0.5, 2.0, 6, torch::kFloat64);
  a = a - a.mean(0, true);  // so that 3 a + m has mean m
  EXPECT_NEAR(eval::frechet_distance(a, a), 0.0, 1e-9);
  // Shifting a set moves only the means: the distance is |m|^2 exactly.
  const torch::Tensor m = torch::tensor({1.0, -2.0, 0.5, 0.0, 3.0, -1.0}, torch::kFloat64);
  EXPECT_NEAR(eval::frechet_distance(a, a + m), m.pow(2).sum().item<double>(), 1e-8);
  // Scaling by s: S2 = s^2 S1, so the trace term is (1 - s)^2 tr(S1).
  const double tr = (a.t().mm(a) / 199.0).trace().item<double>();
  EXPECT_NEAR(eval::frechet_distance(a, 3.0 * a + m), m.pow(2).sum().item<double>() + 4.0 * tr, 1e-7);
  // Two Gaussians: N(0, I) and N(m, 4 I) in 6-d give |m|^2 + 6 (2 - 1)^2 in the limit.
  const torch::Tensor g1 = torch::randn({20000, 6}, torch::kFloat64),
                      g2 = 2.0 * torch::randn({20000, 6}, torch::kFloat64) + m;
  EXPECT_NEAR(eval::frechet_distance(g1, g2), m.pow(2).sum().item<double>() + 6.0, 0.5);
  EXPECT_NEAR(eval::frechet_distance(fixture_tensor("frechet_a"), fixture_tensor("frechet_b")),
              expected("frechet"), 1e-6 * expected("frechet"));
  test::expect_error([&] { eval::frechet_distance(a, a.narrow(1, 0, 3)); }, {"frechet distance"});
}

TEST(Diversity, IdenticalAndOrthogonal) {
  EXPECT_NEAR(eval::mean_pairwise_cosine_distance(torch::ones({5, 4})), 0.0, 1e-12);
  EXPECT_NEAR(eval::mean_pairwise_cosine_distance(torch::eye(4)), 1.0, 1e-12);
}

TEST(Rank, EffectiveRankAndExplainedVariance) {
  // k orthogonal directions with equal singular values: effective rank k.
  torch::manual_seed(2);
  const torch::Tensor q = std::get<0>(torch::linalg_qr(torch::randn({64, 16}, torch::kFloat64)));
  EXPECT_NEAR(eval::effective_rank(q.narrow(1, 0, 5).mm(q.narrow(1, 0, 5).t().narrow(0, 0, 5))), 5.0, 1e-6);
  EXPECT_NEAR(eval::effective_rank(torch::ones({10, 7})), 1.0, 1e-9);
  // Features living in a 3-d subspace of 12: three components explain everything.
  const torch::Tensor x = torch::randn({500, 3}).mm(torch::randn({3, 12})) + 4.0;
  const torch::Tensor cum = eval::pca_cumulative_variance(x);
  EXPECT_EQ(cum.size(0), 12);
  EXPECT_NEAR(cum[2].item<double>(), 1.0, 1e-6);
  EXPECT_LE(eval::components_for(cum, 0.99), 3);
  EXPECT_TRUE((cum.diff() >= -1e-12).all().item<bool>()) << "cumulative curves never fall";
}

TEST(Probe, SeparableDataNearOneShuffledNearChance) {
  torch::manual_seed(3);
  const int64_t classes = 4, dim = 32;
  const torch::Tensor centres = 3.0 * torch::randn({classes, dim});
  auto make = [&](int64_t n, bool shuffled) {
    const torch::Tensor y = torch::randint(classes, {n}, torch::kInt64);
    const torch::Tensor x = centres.index_select(0, y) + torch::randn({n, dim});
    return eval::LabelledSet{x, shuffled ? y.index_select(0, torch::randperm(n, torch::kInt64)) : y};
  };
  const eval::ProbeConfig c;
  const eval::ProbeResult good =
      eval::run_probe(make(400, false), make(100, false), make(200, false), classes, c);
  EXPECT_GE(good.linear_accuracy, 0.95);
  EXPECT_GE(good.knn_accuracy, 0.95);
  // X-ARES' loop: one validation per epoch, the first best epoch kept, the loss falling.
  ASSERT_EQ(good.epoch_valid.size(), static_cast<std::size_t>(c.epochs));
  EXPECT_EQ(good.best_epoch, std::max_element(good.epoch_valid.begin(), good.epoch_valid.end()) -
                                 good.epoch_valid.begin() + 1);
  EXPECT_EQ(good.valid_accuracy, good.epoch_valid[good.best_epoch - 1]);
  EXPECT_LT(good.epoch_loss.back(), good.epoch_loss.front());
  const eval::ProbeResult bad =
      eval::run_probe(make(400, true), make(100, true), make(200, true), classes, c);
  EXPECT_LT(bad.linear_accuracy, 0.45) << "chance is 0.25";
  EXPECT_LT(bad.knn_accuracy, 0.45);
  // A test label the training split never had is always wrong.
  eval::LabelledSet test = make(50, false);
  test.y.fill_(-1);
  EXPECT_EQ(eval::run_probe(make(200, false), make(50, false), test, classes, c).linear_accuracy, 0.0);
  test::expect_error([&] { eval::run_probe(make(50, false), make(10, false), make(10, false), 1, c); },
                     {"1 class"});
}

TEST(Probe, LabelIds) {
  const auto vocab = eval::label_vocabulary({"music", "speech", "music", "audio"});
  ASSERT_EQ(vocab, (std::vector<std::string>{"audio", "music", "speech"}));
  const torch::Tensor ids = eval::label_ids({"speech", "noise", "audio"}, vocab);
  EXPECT_EQ(ids[0].item<int64_t>(), 2);
  EXPECT_EQ(ids[1].item<int64_t>(), -1);
  EXPECT_EQ(ids[2].item<int64_t>(), 0);
}

TEST(Representations, LinearBaselinesCommuteWithPooling) {
  // The probes pool first and map after: exact for the (affine) PCA and channel-merge maps.
  const RootConfig cfg = test::model_config("tiny");
  const int64_t d = cfg.model.encoder.embed_dim;
  torch::manual_seed(4);
  const torch::Tensor frames = torch::randn({300, d});
  for (const char* r : {"pca", "channel_merge"}) {
    const auto map = eval::representation_map(r, cfg.model, frames);
    const torch::Tensor clip = frames.narrow(0, 0, 40);
    EXPECT_LT(test::max_abs_diff(map(clip).mean(0), map(clip.mean(0, true))[0]), 1e-5) << r;
    EXPECT_EQ(map(clip).size(1), cfg.model.sembo.latent_dim) << r;
  }
  test::expect_error([&] { eval::source_tensor("mfcc"); }, {"unknown representation 'mfcc'"});
  test::expect_error([&] { eval::representation_map("pca", cfg.model); }, {"needs training features"});
}

TEST(Wer, NormalisationAndEditDistance) {
  EXPECT_EQ(eval::normalize_words("Let there be light: and there WAS light."),
            (std::vector<std::string>{"let", "there", "be", "light", "and", "there", "was", "light"}));
  EXPECT_EQ(eval::edit_distance({"a", "b", "c"}, {"a", "b", "c"}), 0);
  EXPECT_EQ(eval::edit_distance({"a", "b", "c"}, {"a", "x", "c", "d"}), 2);  // a substitution, an insertion
  EXPECT_EQ(eval::edit_distance({"a", "b", "c"}, {}), 3);
}

TEST(Plot, RunCurvesAsPngOrData) {
  test::TempDir dir;
  test::write_text(
      dir.path("metrics.jsonl"),
      "{\"step\":0,\"val/loss\":2.0}\n{\"step\":10,\"train/loss\":1.5,\"lr/g\":0.001}\n"
      "{\"step\":20,\"train/loss\":1.0,\"val/loss\":1.2}\n{\"step\":30,\"train/lo");  // cut short
  const auto pngs = eval::plot_run(dir.path(""));
  for (const char* group : {"train", "val", "lr"})
    EXPECT_TRUE(fs::exists(dir.path("plots/" + std::string(group) + ".tsv")));
  if (eval::find_gnuplot().empty()) GTEST_SKIP() << "gnuplot not installed: data files only";
  ASSERT_EQ(pngs.size(), 3u);
  for (const auto& p : pngs) EXPECT_EQ(test::read_bytes(p).substr(1, 3), "PNG") << p;
  test::expect_error([&] { eval::plot_run(dir.path("nowhere")); }, {"no metrics file"});
}

TEST(EvalCli, BadInputIsAOneLineError) {
  test::TempDir dir;
  const std::string bin = std::string(LOSATOK_BINARY) + " --log-level warn ";
  test::write_text(dir.path("m.jsonl"), "{\"audio\": \"nowhere.wav\", \"label\": \"a\"}\n");
  struct Case {
    std::string args, needle;
  };
  for (const Case& c : std::vector<Case>{
           {"eval rank --features " + dir.path("no-cache"), "no-cache"},
           {"eval recon --checkpoint " + dir.path("none.safetensors") + " --manifest " + dir.path("m.jsonl"),
            "none.safetensors"},
           {"eval probe --checkpoint x --representation mfcc --train a --valid b --test c",
            "unknown representation 'mfcc'"},
           {"eval gen --checkpoint x --generated " + dir.path("empty") + " --reference " +
                dir.path("m.jsonl"),
            "x"},
           {"plot " + dir.path("no-run"), "no metrics file"}}) {
    std::string out;
    EXPECT_EQ(test::run_command(bin + c.args, &out), 1) << c.args << "\n" << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
    EXPECT_NE(out.find("losatok: error:"), std::string::npos) << out;
    EXPECT_NE(out.find(c.needle), std::string::npos) << out;
  }
}
