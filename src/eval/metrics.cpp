// STOI from its definition (Taal et al. 2011), the reconstruction metric set, Frechet
// distance, diversity, effective rank and PCA variance.
#include "losatok/eval/metrics.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "losatok/audio/audio_io.h"
#include "losatok/audio/mel.h"
#include "losatok/core/error.h"

namespace losatok::eval {

namespace {

// The constants of the published algorithm.
constexpr int kStoiRate = 10000;
constexpr int64_t kFrame = 256, kHop = 128, kFft = 512, kBands = 15, kSegment = 30;
constexpr double kMinFreq = 150.0, kBeta = -15.0, kDynamicRange = 40.0;
const double kEps = std::numeric_limits<double>::epsilon();

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// MATLAB's hanning(n): the (n + 2)-point Hann window without its zero end points.
torch::Tensor hanning(int64_t n) {
  const torch::Tensor k = torch::arange(1, n + 1, kF64);
  return 0.5 - 0.5 * torch::cos(2.0 * M_PI * k / static_cast<double>(n + 1));
}

// Windowed frames (count, kFrame) starting at 0, kHop, ... while start < length - kFrame
// (the reference's frame grid, which leaves out a frame ending exactly at the last sample).
torch::Tensor windowed_frames(const torch::Tensor& x, const torch::Tensor& window) {
  const int64_t n = x.size(0);
  if (n <= kFrame) return torch::zeros({0, kFrame}, kF64);
  const int64_t count = (n - kFrame - 1) / kHop + 1;
  return x.narrow(0, 0, (count - 1) * kHop + kFrame).unfold(0, kFrame, kHop) * window;
}

torch::Tensor overlap_add(const torch::Tensor& frames) {
  const int64_t count = frames.size(0);
  torch::Tensor out = torch::zeros({count == 0 ? 0 : (count - 1) * kHop + kFrame}, kF64);
  for (int64_t i = 0; i < count; ++i) out.narrow(0, i * kHop, kFrame).add_(frames[i]);
  return out;
}

// The one-third-octave band matrix (kBands, kFft / 2 + 1): band k spans the FFT bins nearest
// to 150 * 2^((2k - 1) / 6) Hz (inclusive) and 150 * 2^((2k + 1) / 6) Hz (exclusive).
torch::Tensor third_octave_bands() {
  const int64_t bins = kFft / 2 + 1;
  torch::Tensor bands = torch::zeros({kBands, bins}, kF64);
  auto nearest_bin = [&](double hz) {
    int64_t best = 0;
    double best_d = std::numeric_limits<double>::infinity();
    for (int64_t b = 0; b < bins; ++b) {
      const double d = std::abs(static_cast<double>(b) * kStoiRate / kFft - hz);
      if (d < best_d) best_d = d, best = b;
    }
    return best;
  };
  for (int64_t k = 0; k < kBands; ++k) {
    const int64_t lo = nearest_bin(kMinFreq * std::pow(2.0, (2.0 * k - 1) / 6.0));
    const int64_t hi = nearest_bin(kMinFreq * std::pow(2.0, (2.0 * k + 1) / 6.0));
    if (hi > lo) bands[k].narrow(0, lo, hi - lo).fill_(1.0);
  }
  return bands;
}

// Band envelopes (kBands, frames) of a signal: sqrt of the band-summed STFT power.
torch::Tensor band_envelopes(const torch::Tensor& x, const torch::Tensor& window,
                             const torch::Tensor& bands) {
  const torch::Tensor spec = torch::fft::rfft(windowed_frames(x, window), kFft, -1);  // (frames, 257)
  return bands.mm(spec.abs().pow(2).t()).sqrt();
}

torch::Tensor to_f64_cpu(const torch::Tensor& t, const char* what) {
  if (t.dim() != 1) throw Error(std::string("stoi: the ") + what + " signal must be 1-D");
  return t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
}

torch::Tensor resample_to_10k(const torch::Tensor& x, int rate) {
  const torch::Tensor f = x.to(torch::kFloat32).contiguous();
  std::vector<float> v(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
  v = audio::resample(v, rate, kStoiRate, "vhq");
  return torch::from_blob(v.data(), {static_cast<int64_t>(v.size())}, torch::kFloat32).to(torch::kFloat64);
}

torch::Tensor as_f64_rows(const torch::Tensor& x, const char* fn) {
  if (x.dim() != 2) throw Error(std::string(fn) + ": expected a matrix (N, D), got " + c10::str(x.sizes()));
  return x.detach().to(torch::kCPU, torch::kFloat64);
}

}  // namespace

double stoi_10k(const torch::Tensor& clean_in, const torch::Tensor& processed_in) {
  const torch::Tensor clean = to_f64_cpu(clean_in, "clean"),
                      processed = to_f64_cpu(processed_in, "processed");
  if (clean.size(0) != processed.size(0))
    throw Error("stoi: the clean and processed signals differ in length (" + std::to_string(clean.size(0)) +
                " vs " + std::to_string(processed.size(0)) + " samples)");
  const torch::Tensor window = hanning(kFrame);
  // Silent frames: more than 40 dB below the clean signal's loudest frame, removed from both.
  const torch::Tensor xf = windowed_frames(clean, window), yf = windowed_frames(processed, window);
  if (xf.size(0) == 0) throw Error("stoi: the signal is shorter than one frame");
  const torch::Tensor energy = 20.0 * torch::log10(xf.norm(2, 1) + kEps);
  const torch::Tensor keep = energy > (energy.max() - kDynamicRange);
  const torch::Tensor x = overlap_add(xf.index({keep})), y = overlap_add(yf.index({keep}));

  const torch::Tensor bands = third_octave_bands();
  const torch::Tensor xb = band_envelopes(x, window, bands), yb = band_envelopes(y, window, bands);
  const int64_t frames = xb.size(1);
  if (frames < kSegment)
    throw Error("stoi: " + std::to_string(frames) +
                " frames of non-silent audio, fewer than one 384 ms segment (" + std::to_string(kSegment) +
                ")");
  const torch::Tensor xs = xb.unfold(1, kSegment, 1), ys = yb.unfold(1, kSegment, 1);  // (bands, segs, 30)
  // Scale the processed envelope to the clean one's energy, then clip at -15 dB SDR.
  const torch::Tensor alpha = xs.norm(2, -1, true) / (ys.norm(2, -1, true) + kEps);
  torch::Tensor y_prime = torch::min(alpha * ys, xs * (1.0 + std::pow(10.0, -kBeta / 20.0)));
  torch::Tensor xc = xs - xs.mean(-1, true);
  y_prime = y_prime - y_prime.mean(-1, true);
  xc = xc / (xc.norm(2, -1, true) + kEps);
  y_prime = y_prime / (y_prime.norm(2, -1, true) + kEps);
  return (xc * y_prime).sum(-1).mean().item<double>();
}

double stoi(const torch::Tensor& clean, const torch::Tensor& processed, int sample_rate) {
  if (sample_rate <= 0) throw Error("stoi: sample rate must be positive");
  if (sample_rate == kStoiRate) return stoi_10k(clean, processed);
  return stoi_10k(resample_to_10k(to_f64_cpu(clean, "clean"), sample_rate),
                  resample_to_10k(to_f64_cpu(processed, "processed"), sample_rate));
}

ReconMetrics::ReconMetrics(const MelConfig& mel, const std::vector<int>& stft_n_fft,
                           const std::vector<int>& stft_hop)
    : mel_(std::make_unique<audio::LogMel>(mel)),
      mel_dac_("dac", mel.sample_rate, losses::MultiScaleMelLoss::dac_n_ffts(),
               losses::MultiScaleMelLoss::dac_n_mels()),
      stft_(stft_n_fft, stft_hop),
      sample_rate_(mel.sample_rate) {}

ReconMetrics::~ReconMetrics() = default;

torch::Tensor ReconMetrics::mel(const torch::Tensor& wave) const {
  return (*mel_)(wave);
}

ReconScores ReconMetrics::operator()(const torch::Tensor& y_hat, const torch::Tensor& y,
                                     bool with_stoi) const {
  if (y.dim() != 1 || y_hat.sizes() != y.sizes())
    throw Error("recon metrics: expected two 1-D signals of one length, got " + c10::str(y_hat.sizes()) +
                " and " + c10::str(y.sizes()));
  if (y.size(0) < kMinSamples)
    throw Error("recon metrics: " + std::to_string(y.size(0)) + " samples, fewer than " +
                std::to_string(kMinSamples));
  ReconScores s;
  s.mel_distance = (mel(y_hat) - mel(y)).abs().mean().item<double>();
  s.mel_dac = mel_dac_(y_hat, y).item<double>();
  const auto [sc, mag] = stft_(y_hat.unsqueeze(0), y.unsqueeze(0));
  s.stft_distance = (sc + mag).item<double>();
  s.si_sdr = losses::si_sdr(y_hat.unsqueeze(0), y.unsqueeze(0))[0].item<double>();
  s.stoi = with_stoi ? eval::stoi(y, y_hat, sample_rate_) : std::numeric_limits<double>::quiet_NaN();
  return s;
}

const std::vector<ReconMetric>& recon_metrics() {
  static const std::vector<ReconMetric> metrics = {
      {"mel_distance", "mel_dist", 3, true, &ReconScores::mel_distance},
      {"mel_dac", "mel_dac", 3, true, &ReconScores::mel_dac},
      {"stft_distance", "stft_dist", 3, true, &ReconScores::stft_distance},
      {"si_sdr", "si_sdr_dB", 2, true, &ReconScores::si_sdr},
      {"stoi", "stoi", 3, false, &ReconScores::stoi},
  };
  return metrics;
}

ReconMeans::ReconMeans() : sum_(recon_metrics().size(), 0.0), count_(recon_metrics().size(), 0) {}

void ReconMeans::add(const ReconScores& s) {
  ++clips_;
  const auto& metrics = recon_metrics();
  for (std::size_t i = 0; i < metrics.size(); ++i) {
    const double v = s.*metrics[i].field;
    if (!std::isfinite(v)) continue;
    sum_[i] += v;
    ++count_[i];
  }
}

double ReconMeans::mean(std::size_t metric) const {
  return count_[metric] > 0 ? sum_[metric] / static_cast<double>(count_[metric])
                            : std::numeric_limits<double>::quiet_NaN();
}

double frechet_distance(const torch::Tensor& mu1, const torch::Tensor& sigma1, const torch::Tensor& mu2,
                        const torch::Tensor& sigma2) {
  const torch::Tensor m1 = mu1.to(torch::kCPU, torch::kFloat64), m2 = mu2.to(torch::kCPU, torch::kFloat64);
  const torch::Tensor s1 = sigma1.to(torch::kCPU, torch::kFloat64),
                      s2 = sigma2.to(torch::kCPU, torch::kFloat64);
  const int64_t d = m1.numel();
  if (m2.numel() != d || s1.sizes() != torch::IntArrayRef({d, d}) || s2.sizes() != s1.sizes())
    throw Error("frechet distance: means " + c10::str(m1.sizes()) + " / " + c10::str(m2.sizes()) +
                " and covariances " + c10::str(s1.sizes()) + " / " + c10::str(s2.sizes()) + " do not match");
  // tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2), whose argument is symmetric PSD.
  const auto [e1, v1] = torch::linalg_eigh(0.5 * (s1 + s1.t()), "L");
  const torch::Tensor root1 = v1.mul(e1.clamp_min(0).sqrt()).mm(v1.t());
  torch::Tensor inner = root1.mm(s2).mm(root1);
  inner = 0.5 * (inner + inner.t());
  const double tr_root = torch::linalg_eigvalsh(inner, "L").clamp_min(0).sqrt().sum().item<double>();
  const double mean_term = (m1 - m2).pow(2).sum().item<double>();
  return mean_term + s1.trace().item<double>() + s2.trace().item<double>() - 2.0 * tr_root;
}

double frechet_distance(const torch::Tensor& a_in, const torch::Tensor& b_in) {
  const torch::Tensor a = as_f64_rows(a_in, "frechet distance"), b = as_f64_rows(b_in, "frechet distance");
  if (a.size(0) < 2 || b.size(0) < 2 || a.size(1) != b.size(1))
    throw Error("frechet distance: need two sets of at least 2 rows of one width, got " +
                c10::str(a.sizes()) + " and " + c10::str(b.sizes()));
  auto cov = [](const torch::Tensor& x) {
    const torch::Tensor c = x - x.mean(0, true);
    return c.t().mm(c) / static_cast<double>(x.size(0) - 1);
  };
  return frechet_distance(a.mean(0), cov(a), b.mean(0), cov(b));
}

double mean_pairwise_cosine_distance(const torch::Tensor& x_in) {
  const torch::Tensor x = as_f64_rows(x_in, "diversity");
  const int64_t n = x.size(0);
  if (n < 2) throw Error("diversity: need at least 2 embeddings, got " + std::to_string(n));
  const torch::Tensor u = x / x.norm(2, 1, true).clamp_min(1e-12);
  const torch::Tensor g = u.mm(u.t());
  const double off_diagonal = (g.sum() - g.trace()).item<double>() / static_cast<double>(n * (n - 1));
  return 1.0 - off_diagonal;
}

const std::vector<GenMetric>& gen_metrics() {
  static const std::vector<GenMetric> m = {
      {"fad_vggish", "VGGish", 3, false},          {"fd_panns", "PANNs CNN14", 3, false},
      {"kl_softmax", "PANNs CNN14", 3, false},     {"kl_sigmoid", "PANNs CNN14", 3, false},
      {"inception_score", "PANNs CNN14", 3, true}, {"clap_score", "LAION-CLAP", 3, true},
  };
  return m;
}

PairedKl paired_kl(const torch::Tensor& gen_in, const torch::Tensor& ref_in, double eps) {
  const torch::Tensor g = as_f64_rows(gen_in, "paired kl"), r = as_f64_rows(ref_in, "paired kl");
  if (g.sizes() != r.sizes() || g.size(0) < 1)
    throw Error("paired kl: need equally shaped non-empty (pairs, classes) outputs, got " +
                c10::str(g.sizes()) + " and " + c10::str(r.sizes()));
  const double n = static_cast<double>(g.size(0));
  // F.kl_div(input, target, reduction="sum") = sum target (log target - input), 0 log 0 = 0.
  auto kl_sum = [](const torch::Tensor& log_q, const torch::Tensor& p) {
    return torch::where(p > 0, p * (p.log() - log_q), torch::zeros_like(p)).sum().item<double>();
  };
  PairedKl out;
  out.softmax = kl_sum((g.softmax(1) + eps).log(), r.softmax(1)) / n;
  out.sigmoid = kl_sum((g.sigmoid() + eps).log(), r.sigmoid()) / n;
  out.pairs = g.size(0);
  return out;
}

std::vector<int64_t> numpy_legacy_permutation(int64_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int64_t> a(static_cast<std::size_t>(std::max<int64_t>(n, 0)));
  std::iota(a.begin(), a.end(), 0);
  for (int64_t i = n - 1; i >= 1; --i) {
    uint64_t mask = static_cast<uint64_t>(i);
    for (int s = 1; s < 64; s <<= 1) mask |= mask >> s;  // the smallest 2^k - 1 >= i
    uint64_t j;
    do {
      j = static_cast<uint64_t>(g()) & mask;
    } while (j > static_cast<uint64_t>(i));
    std::swap(a[static_cast<std::size_t>(i)], a[static_cast<std::size_t>(j)]);
  }
  return a;
}

InceptionScore inception_score(const torch::Tensor& logits_in, int splits, bool shuffle, uint32_t seed) {
  torch::Tensor x = as_f64_rows(logits_in, "inception score");
  const int64_t n = x.size(0);
  if (splits < 1 || n < splits)
    throw Error("inception score: " + std::to_string(n) + " clips cannot be cut into " +
                std::to_string(splits) + " splits");
  if (shuffle) x = x.index_select(0, torch::tensor(numpy_legacy_permutation(n, seed), torch::kLong));
  const torch::Tensor p = x.softmax(1), log_p = x.log_softmax(1);
  std::vector<double> scores;
  for (int i = 0; i < splits; ++i) {
    const int64_t a = i * n / splits, b = (i + 1) * n / splits;
    const torch::Tensor pc = p.slice(0, a, b), lc = log_p.slice(0, a, b);
    const torch::Tensor q = pc.mean(0, true);
    scores.push_back(std::exp((pc * (lc - q.log())).sum(1).mean().item<double>()));
  }
  InceptionScore out;
  out.splits = splits;
  for (const double s : scores) out.mean += s / splits;
  for (const double s : scores) out.std += (s - out.mean) * (s - out.mean) / splits;
  out.std = std::sqrt(out.std);
  return out;
}

double effective_rank(const torch::Tensor& x_in) {
  const torch::Tensor s = torch::linalg_svdvals(as_f64_rows(x_in, "effective rank"));
  const double total = s.sum().item<double>();
  if (!(total > 0)) throw Error("effective rank: the feature matrix is zero");
  const torch::Tensor p = s / total;
  const torch::Tensor nz = p.index({p > 0});
  return std::exp(-(nz * nz.log()).sum().item<double>());
}

torch::Tensor pca_cumulative_variance(const torch::Tensor& x_in) {
  const torch::Tensor x = as_f64_rows(x_in, "pca");
  if (x.size(0) < 2) throw Error("pca: need at least 2 rows, got " + std::to_string(x.size(0)));
  const torch::Tensor s = torch::linalg_svdvals(x - x.mean(0, true));
  const torch::Tensor var = s.pow(2);
  const double total = var.sum().item<double>();
  if (!(total > 0)) throw Error("pca: the features do not vary");
  const int64_t k = std::min<int64_t>(x.size(0) - 1, x.size(1));
  return (var.cumsum(0) / total).narrow(0, 0, k);
}

int64_t components_for(const torch::Tensor& cumulative, double fraction) {
  const torch::Tensor c = cumulative.to(torch::kFloat64);
  for (int64_t i = 0; i < c.size(0); ++i)
    if (c[i].item<double>() >= fraction - 1e-12) return i + 1;
  return c.size(0);
}

}  // namespace losatok::eval
