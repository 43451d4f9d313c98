// Evaluation metrics (docs/method.md, "Evaluation") on plain tensors: reconstruction distances and STOI,
// the Frechet distance and diversity of embedding sets, effective rank and PCA variance.
#pragma once

#include <torch/types.h>

#include <memory>
#include <vector>

#include "losatok/audio/mel_config.h"
#include "losatok/losses/tokenizer_losses.h"

namespace losatok::audio {
class LogMel;
}

namespace losatok::eval {

// Short-Time Objective Intelligibility (Taal, Hendriks, Heusdens, Jensen, IEEE TASLP 2011) of
// `processed` against `clean`, both 1-D at `sample_rate` (resampled to 10 kHz when not).
// Frames where the clean signal is more than 40 dB below its loudest frame are removed from
// both; 15 one-third-octave bands from 150 Hz; 384 ms segments (30 frames of 256 samples,
// hop 128); the processed envelope is scaled to the clean one and clipped at -15 dB SDR; the
// score is the mean correlation over bands and segments, about 1 for identical signals.
// Signals shorter than one segment after silence removal are an error.
double stoi(const torch::Tensor& clean, const torch::Tensor& processed, int sample_rate);
// The same at 10 kHz (no resampling).
double stoi_10k(const torch::Tensor& clean, const torch::Tensor& processed);

// One clip's reconstruction scores.
struct ReconScores {
  double mel_distance = 0;   // mean |log-mel difference| with the Vocos front end
  double mel_dac = 0;        // DAC's multi-scale mel distance (the paper's Table 4 "Mel")
  double stft_distance = 0;  // multi-resolution STFT: spectral convergence + log-magnitude L1
  double si_sdr = 0;         // dB
  double stoi = 0;           // NaN when not computed
};

// One metric of the reconstruction family, declared once in recon_metrics(): its ReconScores
// field, the key `eval recon` writes (and the tokenizer's validation reports as `val/<key>`),
// the table column and its decimals. A new reconstruction metric is a field, its computation in
// ReconMetrics and one entry there (docs/architecture.md, "Adding a metric").
struct ReconMetric {
  const char* key;
  const char* column;
  int digits;
  bool in_validation;  // cheap enough for every validation (STOI is not): optional elsewhere
  double ReconScores::*field;
};
const std::vector<ReconMetric>& recon_metrics();

// Per-metric means of the reconstruction family over clips; a NaN score (not computed) is left
// out of its metric's mean.
class ReconMeans {
 public:
  ReconMeans();
  void add(const ReconScores& s);
  int64_t clips() const { return clips_; }
  int64_t count(std::size_t metric) const { return count_[metric]; }
  double mean(std::size_t metric) const;  // NaN when no clip had it

 private:
  std::vector<double> sum_;
  std::vector<int64_t> count_;
  int64_t clips_ = 0;
};

// The reconstruction metrics the tokenizer's validation and `losatok eval recon` share.
class ReconMetrics {
 public:
  ReconMetrics(const MelConfig& mel, const std::vector<int>& stft_n_fft = {512, 1024, 2048},
               const std::vector<int>& stft_hop = {128, 256, 512});
  ~ReconMetrics();
  // y_hat, y: (N) of equal length >= kMinSamples, on any device.
  ReconScores operator()(const torch::Tensor& y_hat, const torch::Tensor& y, bool with_stoi = true) const;
  // The log-mel the mel distance compares, (n_mels, frames), for spectrogram images.
  torch::Tensor mel(const torch::Tensor& wave) const;
  int sample_rate() const { return sample_rate_; }
  // The 2048-point scales reflect-pad 1024 samples on each side, which needs more samples.
  static constexpr int64_t kMinSamples = 2048;

 private:
  std::unique_ptr<audio::LogMel> mel_;
  losses::MultiScaleMelLoss mel_dac_;
  losses::MultiResolutionStftLoss stft_;
  int sample_rate_;
};

// Frechet distance between Gaussians: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2),
// in float64 with a symmetric eigendecomposition (negative eigenvalues from rounding clamp to 0).
double frechet_distance(const torch::Tensor& mu1, const torch::Tensor& sigma1, const torch::Tensor& mu2,
                        const torch::Tensor& sigma2);
// Of the Gaussians fitted to the rows (N, D) of `a` and `b` (unbiased covariance, N >= 2).
double frechet_distance(const torch::Tensor& a, const torch::Tensor& b);
// Mean over pairs i < j of the cosine distance 1 - cos(x_i, x_j) of rows (N, D), N >= 2.
double mean_pairwise_cosine_distance(const torch::Tensor& x);

// One metric of the generation family (`eval gen`, per set: all clips, each task or domain),
// declared once: the key it writes, its instrument, decimals and direction.
struct GenMetric {
  const char* key;
  const char* instrument;
  int digits;
  bool higher_better;
};
const std::vector<GenMetric>& gen_metrics();

// KL divergence of paired tagger outputs as AudioGen / audioldm_eval compute it: rows (N, C) of
// the generated and the reference clip of each pair; sum over pairs and classes of
// KL(ref || gen) = sum ref (log ref - log(gen + eps)), divided by N (F.kl_div, reduction "sum").
// `softmax` normalises each row over the classes; `sigmoid` takes the per-class sigmoids as they
// are (as the tools do: not normalised, no 1 - p terms).
struct PairedKl {
  double softmax = 0, sigmoid = 0;
  int64_t pairs = 0;
};
PairedKl paired_kl(const torch::Tensor& generated, const torch::Tensor& reference, double eps = 1e-6);

// Inception Score (Salimans et al. 2016) as torch-fidelity (audioldm_eval's isc) computes it:
// the rows (N, C) are logits, in float64, shuffled by numpy's RandomState(seed).permutation
// (`shuffle`); `splits` consecutive chunks (chunk i holds rows [i N / splits, (i+1) N / splits));
// per chunk exp(mean_rows KL(p(y|x) || mean_chunk p(y))); the mean and the population standard
// deviation over chunks.
struct InceptionScore {
  double mean = 0, std = 0;
  int splits = 0;
};
// numpy.random.RandomState(seed).permutation(n): MT19937 seeded as init_genrand(seed), then the
// legacy Fisher-Yates from the end with masked rejection sampling of 32-bit draws.
std::vector<int64_t> numpy_legacy_permutation(int64_t n, uint32_t seed);
InceptionScore inception_score(const torch::Tensor& logits, int splits = 10, bool shuffle = true,
                               uint32_t seed = 2020);

// Effective rank (Roy & Vetterli 2007) of a feature matrix (N, D): exp of the Shannon entropy
// of its singular values normalised to sum 1 (uncentred, as RankMe). Between 1 and min(N, D).
double effective_rank(const torch::Tensor& x);
// PCA of the rows (N, D): the cumulative explained-variance ratio of the first k components,
// k = 1..min(N - 1, D), as float64.
torch::Tensor pca_cumulative_variance(const torch::Tensor& x);
// Components needed to explain `fraction` of the variance, from a cumulative curve.
int64_t components_for(const torch::Tensor& cumulative, double fraction);

}  // namespace losatok::eval
