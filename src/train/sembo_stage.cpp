// The SemBo stage: frozen encoder features -> compressor / restorer, with the reconstruction and
// time-relation losses; validation figures for the model and the training-free baselines.
#include "losatok/train/sembo_stage.h"

#include <torch/torch.h>

#include "losatok/core/config.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/data/extract.h"
#include "losatok/io/weights.h"
#include "losatok/losses/sembo_losses.h"
#include "losatok/models/init.h"

namespace losatok::train {

namespace {

constexpr const char* kPrefix = "semantic_encoder.";
constexpr const char* kBottleneckPrefix = "semantic_encoder.bottleneck.";

// Sums behind the validation means, so every clip counts by its valid tokens (pairs).
struct ValidationSums {
  double cos_err = 0, tokens = 0, rel_sq = 0, pairs = 0, rec_sq = 0;
  void add(const torch::Tensor& low, const torch::Tensor& restored, const torch::Tensor& h,
           const torch::Tensor& mask) {
    const torch::Tensor m = mask.to(torch::kFloat32);
    const double n = m.sum().item<double>();
    const torch::Tensor cos = (losses::l2_normalize(restored) * losses::l2_normalize(h)).sum(-1);
    cos_err += ((1 - cos) * m).sum().item<double>();
    rec_sq += ((losses::l2_normalize(restored) - losses::l2_normalize(h)).pow(2) * m.unsqueeze(-1))
                  .sum()
                  .item<double>();
    tokens += n;
    const torch::Tensor pm = m.unsqueeze(2) * m.unsqueeze(1);
    rel_sq += ((losses::time_relation_matrix(low) - losses::time_relation_matrix(h)).pow(2) * pm)
                  .sum()
                  .item<double>();
    pairs += pm.sum().item<double>();
  }
  void report(std::map<std::string, double>& out, const std::string& prefix, int64_t dim) const {
    if (tokens == 0) return;
    out[prefix + "rec_cos_err"] = cos_err / tokens;
    out[prefix + "rel_err"] = rel_sq / pairs;
    out[prefix + "rec_loss"] = rec_sq / (tokens * dim);
  }
};

}  // namespace

void SemBoLossConfig::validate() const {
  config::check(lambda_rec >= 0, "lambda_rec", "must be >= 0");
  config::check(lambda_rel >= 0, "lambda_rel", "must be >= 0");
}

void SemBoStageConfig::validate() const {
  config::check(baseline_fit_steps >= 0, "baseline_fit_steps", "must be >= 0");
}

StageRegistration sembo_stage() {
  return stage_registration<SemBoStage, SemBoStageConfig>(
      "sembo", "SemBo: compress the frozen encoder's features to 128-d and restore them",
      {{"loss.lambda_rec", "sembo.loss.lambda_rec"}, {"loss.lambda_rel", "sembo.loss.lambda_rel"}});
}

void load_semantic_encoder(models::DashengEncoderImpl& encoder, const std::string& path) {
  const std::string want = std::string(kPrefix) + "encoder.";
  const io::WeightSet weights = io::read_weights(path);
  const io::MappedWeights mapped = io::map_to_vae_names(weights.tensors);
  io::TensorMap tensors;
  for (const auto& [name, t] : mapped.tensors)
    if (name.rfind(want, 0) == 0) tensors[name.substr(want.size())] = t;
  if (tensors.empty())
    throw Error("encoder weights '" + weights.source + "' hold no semantic encoder (" + want +
                "* or audio_encoder.*)");
  const io::LoadReport report = io::load_weights(encoder, tensors, weights.source);
  spdlog::info("semantic encoder: {} ({})", weights.source, report.summary());
}

SemBoStage::SemBoStage(const RootConfig& cfg, const torch::Device& device)
    : cfg_(cfg),
      section_(cfg.section<SemBoStageConfig>()),
      device_(device),
      pca_fit_(cfg.model.encoder.embed_dim) {
  root_ = std::make_shared<torch::nn::Module>();
  model_ =
      root_->register_module("semantic_encoder", models::SemanticEncoder(cfg.model, cfg.frontend.dasheng));
  models::init_trunc_normal(*model_);
  if (!cfg.train.encoder_weights.empty()) {
    load_semantic_encoder(*model_->encoder, cfg.train.encoder_weights);
  } else {
    spdlog::warn(
        "train.encoder_weights is empty: the semantic encoder is randomly initialised (seed {}); "
        "fine for smoke tests, meaningless for research",
        cfg.seed);
  }
  for (auto& p : model_->encoder->parameters()) p.set_requires_grad(false);
  const int dim = cfg.model.encoder.embed_dim;
  if (section_.baselines && dim % cfg.model.sembo.latent_dim == 0) {
    SemBoConfig merge = cfg.model.sembo;
    merge.method = "channel_merge";
    channel_merge_ = models::SemanticBottleneck(dim, merge);
  }
  root_->to(device_);
  set_training(true);
}

void SemBoStage::set_training(bool training) {
  model_->bottleneck->train(training);
  model_->encoder->eval();  // frozen: BatchNorm on running statistics, no dropout
}

std::vector<OptimizerSpec> SemBoStage::optimizers() {
  if (cfg_.model.sembo.method != "mlp") return {};
  return {{"sembo", ema_parameters(), cfg_.train.optim}};
}

NamedTensors SemBoStage::ema_parameters() {
  NamedTensors out;
  if (cfg_.model.sembo.method != "mlp") return out;
  for (const auto& item : model_->bottleneck->named_parameters())
    out.emplace_back(std::string(kBottleneckPrefix) + item.key(), item.value());
  return out;
}

std::optional<data::CacheProducer> SemBoStage::cache_producer() {
  return data::semantic_cache_producer(*model_->encoder, cfg_);
}

std::pair<torch::Tensor, torch::Tensor> SemBoStage::features(const data::Batch& batch) {
  if (const auto it = batch.features.find("semantic_emb"); it != batch.features.end()) {
    const torch::Tensor h = it->second.to(device_, torch::kFloat32);  // (B, T, D)
    return {h, batch.feature_mask().to(device_)};
  }
  if (!batch.audio.defined())
    throw Error("sembo: the batch has neither audio nor cached 'semantic_emb' features");
  torch::NoGradGuard no_grad;
  const torch::Tensor audio = batch.audio.to(device_), lengths = batch.lengths.to(device_);
  const torch::Tensor h = model_->encoder->forward(audio, lengths);  // (B, T, D)
  return {h, model_->encoder->token_mask(lengths, h.size(1))};
}

namespace {

// Valid tokens per clip as the stages' masks count them: the cached features' lengths, or
// floor(samples / samples_per_token) of the audio.
std::vector<int64_t> valid_tokens(const data::Batch& batch, int64_t samples_per_token,
                                  const std::string& feature = "") {
  std::vector<int64_t> out;
  const bool cached = !feature.empty() && batch.features.count(feature) > 0;
  const torch::Tensor n = (cached ? batch.feature_lengths : batch.lengths).to(torch::kCPU, torch::kLong);
  for (int64_t i = 0; i < n.size(0); ++i)
    out.push_back(cached ? n[i].item<int64_t>() : n[i].item<int64_t>() / samples_per_token);
  return out;
}

}  // namespace

std::map<std::string, double> SemBoStage::loss_counts(std::size_t, const data::Batch& batch, int64_t) const {
  double tokens = 0, pairs = 0;
  if (batch.lengths.defined() || batch.feature_lengths.defined())
    for (const int64_t t : valid_tokens(batch, cfg_.samples_per_token(), "semantic_emb")) {
      tokens += static_cast<double>(t);
      pairs += static_cast<double>(t) * static_cast<double>(t);
    }
  return {{"tokens", tokens}, {"pairs", pairs}};
}

StepOutput SemBoStage::train_step(std::size_t, const data::Batch& batch, int64_t step) {
  auto [h, mask] = features(batch);
  const std::string& method = cfg_.model.sembo.method;
  const bool fit = method == "pca" || (section_.baselines && step < section_.baseline_fit_steps);
  if (fit && method != "channel_merge") pca_fit_.add(h.index({mask}));
  StepOutput out;
  if (method != "mlp") {
    out.metrics["pca_frames"] = torch::tensor(static_cast<double>(pca_fit_.count()));
    return out;
  }
  const torch::Tensor low = model_->bottleneck->compress(h);
  const torch::Tensor restored = model_->bottleneck->restore(low);
  const torch::Tensor rec = losses::reconstruction_loss(restored, h, mask);
  torch::Tensor loss = section_.loss.lambda_rec * rec;
  out.terms.emplace_back("tokens", section_.loss.lambda_rec * rec);
  out.metrics["rec"] = rec.detach();
  if (section_.loss.lambda_rel > 0) {
    const torch::Tensor rel = losses::time_relation_loss(low, h, mask);
    loss = loss + section_.loss.lambda_rel * rel;
    out.terms.emplace_back("pairs", section_.loss.lambda_rel * rel);
    out.metrics["rel"] = rel.detach();
  }
  out.loss = loss;
  out.metrics["loss"] = loss.detach();
  return out;
}

void SemBoStage::apply_pca_fit() {
  if (cfg_.model.sembo.method != "pca" || pca_fit_.count() < 2) return;
  auto [mean, components] = pca_fit_.solve(cfg_.model.sembo.latent_dim);
  torch::NoGradGuard no_grad;
  model_->bottleneck->pca_mean.copy_(mean);
  model_->bottleneck->pca_components.copy_(components);
}

std::map<std::string, double> SemBoStage::validate(const std::function<bool(data::Batch&)>& next,
                                                   const ValidationContext&) {
  torch::NoGradGuard no_grad;
  apply_pca_fit();
  const std::string& method = cfg_.model.sembo.method;
  // The PCA baseline from the features seen in training so far (the model itself when it is PCA).
  models::SemanticBottleneck pca{nullptr};
  if (section_.baselines && method != "pca" && pca_fit_.count() >= 2) {
    SemBoConfig c = cfg_.model.sembo;
    c.method = "pca";
    pca = models::SemanticBottleneck(cfg_.model.encoder.embed_dim, c);
    auto [mean, components] = pca_fit_.solve(c.latent_dim);
    pca->pca_mean.copy_(mean);
    pca->pca_components.copy_(components);
    pca->to(device_);
  }
  ValidationSums model_sums, merge_sums, pca_sums;
  data::Batch batch;
  int64_t batches = 0;
  while (next(batch)) {
    auto [h, mask] = features(batch);
    const torch::Tensor low = model_->bottleneck->compress(h);
    model_sums.add(low, model_->bottleneck->restore(low), h, mask);
    if (channel_merge_ && method != "channel_merge") {
      const torch::Tensor l = channel_merge_->compress(h);
      merge_sums.add(l, channel_merge_->restore(l), h, mask);
    }
    if (pca) {
      const torch::Tensor l = pca->compress(h);
      pca_sums.add(l, pca->restore(l), h, mask);
    }
    ++batches;
  }
  if (batches == 0) throw Error("sembo: the validation set gave no batches (data.valid_sources)");
  std::map<std::string, double> out;
  const int64_t dim = cfg_.model.encoder.embed_dim;
  model_sums.report(out, "val/", dim);
  merge_sums.report(out, "val/channel_merge/", dim);
  pca_sums.report(out, "val/pca/", dim);
  return out;
}

TensorMap SemBoStage::model_state(bool include_frozen) {
  apply_pca_fit();
  TensorMap out;
  for (const auto& [name, t] : io::module_state(*root_))
    if (include_frozen || name.rfind(kBottleneckPrefix, 0) == 0) out[name] = t;
  return out;
}

void SemBoStage::load_model_state(const TensorMap& tensors, const std::string& source, bool strict) {
  io::LoadOptions o;
  o.strict = strict;
  bool has_encoder = false;
  for (const auto& [name, t] : tensors) has_encoder |= name.rfind(std::string(kPrefix) + "encoder.", 0) == 0;
  if (!has_encoder) o.scope = kBottleneckPrefix;  // a checkpoint saved without the frozen encoder
  const io::LoadReport report = io::load_weights(*root_, tensors, source, o);
  io::log_load_report(source, report);
}

TensorMap SemBoStage::extra_state() {
  TensorMap out;
  for (const auto& [k, v] : pca_fit_.state()) out["pca_fit." + k] = v;
  return out;
}

void SemBoStage::load_extra_state(const TensorMap& tensors, const std::string& where) {
  std::map<std::string, torch::Tensor> fit;
  for (const auto& [k, v] : tensors)
    if (k.rfind("pca_fit.", 0) == 0) fit[k.substr(8)] = v;
  pca_fit_.load_state(fit, where);
}

}  // namespace losatok::train
