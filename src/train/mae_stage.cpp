// The MAE stage: Dasheng-style masked-autoencoder pretraining of the semantic encoder.
#include "losatok/train/mae_stage.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "losatok/core/config.h"
#include "losatok/core/error.h"
#include "losatok/io/weights.h"
#include "losatok/models/init.h"
#include "losatok/models/layers.h"
#include "losatok/train/sembo_stage.h"

namespace losatok::train {

namespace nn = torch::nn;
using config::check;

void MaeDecoderConfig::validate() const {
  check(width >= 1, "width", "must be >= 1");
  check(depth >= 1, "depth", "must be >= 1");
  check(num_heads >= 1 && width % num_heads == 0, "num_heads", "must divide width");
  check(mlp_ratio > 0, "mlp_ratio", "must be positive");
}

EncoderConfig MaeDecoderConfig::blocks(const EncoderConfig& encoder) const {
  EncoderConfig c = encoder;
  c.embed_dim = width;
  c.depth = depth;
  c.num_heads = num_heads;
  c.mlp_ratio = mlp_ratio;
  return c;
}

void MaeLossConfig::validate() const {
  check(lambda_mse >= 0, "lambda_mse", "must be >= 0");
  check(lambda_visible >= 0, "lambda_visible", "must be >= 0");
  check(lambda_mse + lambda_visible > 0, "lambda_mse", "some loss weight must be positive");
}

void MaeStageConfig::validate() const {
  check(mask_ratio >= 0 && mask_ratio < 1, "mask_ratio", "must be in [0, 1)");
  check(mask_group >= 1, "mask_group", "must be >= 1");
}

StageRegistration mae_stage() {
  return stage_registration<MaeStage, MaeStageConfig>(
      "mae", "MAE: Dasheng-style masked-autoencoder pretraining of the semantic encoder");
}

namespace {

// Rows with no true entry attend everywhere: their outputs are padding, but stay finite.
torch::Tensor attendable(const torch::Tensor& keys) {
  return keys | keys.any(1, /*keepdim=*/true).logical_not();
}

// Mean of `err` (B, T) over the true entries of `where` (B, T), as a 0-d tensor.
torch::Tensor masked_mean(const torch::Tensor& err, const torch::Tensor& where) {
  const torch::Tensor w = where.to(err.dtype());
  return (err * w).sum() / w.sum().clamp_min(1.0);
}

}  // namespace

MaeDecoderImpl::MaeDecoderImpl(const MaeStageConfig& c, const EncoderConfig& encoder, int patch_dim) {
  const EncoderConfig b = c.decoder.blocks(encoder);
  decoder_embed = register_module("decoder_embed", nn::Linear(encoder.embed_dim, b.embed_dim));
  mask_token = register_parameter("mask_token", torch::zeros({1, 1, b.embed_dim}));
  // Zero-initialised, as Dasheng's decoder position table.
  decoder_pos_embed =
      register_parameter("decoder_pos_embed", torch::zeros({1, encoder.patches_per_chunk(), b.embed_dim}));
  decoder_blocks = register_module("decoder_blocks", nn::ModuleList());
  for (int i = 0; i < b.depth; ++i) decoder_blocks->push_back(models::DashengBlock(b));
  decoder_norm =
      register_module("decoder_norm", nn::LayerNorm(nn::LayerNormOptions({b.embed_dim}).eps(b.norm_eps)));
  decoder_pred = register_module("decoder_pred", nn::Linear(b.embed_dim, patch_dim));
  models::init_trunc_normal(*this);
  if (!models::SkipInit::active()) models::trunc_normal_(mask_token);
}

torch::Tensor MaeDecoderImpl::forward(const torch::Tensor& visible, const torch::Tensor& kept,
                                      const torch::Tensor& restore, const torch::Tensor& valid) {
  const int64_t b = visible.size(0), k = visible.size(1), t = restore.size(1);
  torch::Tensor y = models::apply_linear(decoder_embed, visible);  // (B, K, W)
  const int64_t w = y.size(2);
  // A row's positions past its own share hold masked patches: mask tokens there too.
  y = torch::where(kept.unsqueeze(-1), y, mask_token.to(y.dtype()));
  // The shuffled sequence: the kept patches first, then mask tokens; back in time order.
  y = torch::cat({y, mask_token.expand({b, t - k, w})}, 1);
  y = torch::gather(y, 1, restore.unsqueeze(-1).expand({b, t, w}));
  y = y + decoder_pos_embed.narrow(1, 0, t);
  const torch::Tensor keys = attendable(valid);
  for (const auto& block : *decoder_blocks) y = block->as<models::DashengBlock>()->forward(y, keys);
  return models::apply_linear(decoder_pred, decoder_norm->forward(y));
}

MaeStage::MaeStage(const RootConfig& cfg, const torch::Device& device)
    : cfg_(cfg), section_(cfg.section<MaeStageConfig>()), device_(device) {
  const EncoderConfig& e = cfg.model.encoder;
  const MelConfig& mel = cfg.frontend.dasheng;
  // Every crop is one chunk of the encoder's position table.
  const double tokens =
      cfg.data.segment_seconds * cfg.audio.sample_rate / static_cast<double>(cfg.samples_per_token());
  if (cfg.data.segment_seconds <= 0 || tokens > e.patches_per_chunk())
    throw ConfigError(
        "data.segment_seconds",
        "the mae stage trains on crops of at most model.encoder.target_length mel frames (" +
            config::detail::shortest_float(1.0 * e.target_length * mel.hop_length / cfg.audio.sample_rate) +
            " s); got " + config::detail::shortest_float(cfg.data.segment_seconds));
  root_ = std::make_shared<nn::Module>();
  semantic_encoder_ = root_->register_module("semantic_encoder", std::make_shared<nn::Module>());
  encoder_ = semantic_encoder_->register_module("encoder", models::DashengEncoder(e, mel));
  decoder_ = root_->register_module("mae_decoder", MaeDecoder(section_, e, mel.n_mels * e.patch_frames));
  if (!cfg.train.encoder_weights.empty()) load_semantic_encoder(*encoder_, cfg.train.encoder_weights);
  root_->to(device_);
  set_training(true);
}

void MaeStage::set_training(bool training) {
  root_->train(training);
}

NamedTensors MaeStage::ema_parameters() {
  NamedTensors out;
  for (const auto& item : root_->named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

std::vector<OptimizerSpec> MaeStage::optimizers() {
  return {{"mae", ema_parameters(), cfg_.train.optim}};
}

MaeStage::Output MaeStage::reconstruct(const data::Batch& batch, bool train_bn,
                                       c10::optional<at::Generator> generator) {
  if (!batch.audio.defined()) throw Error("mae: the batch has no audio");
  const torch::Tensor audio = batch.audio.to(device_), lengths = batch.lengths.to(device_);
  const int64_t pf = cfg_.model.encoder.patch_frames;
  torch::Tensor mel;
  {
    torch::NoGradGuard no_grad;
    mel = encoder_->frontend()(audio);  // (B, M, F) dB log-mel
  }
  // At most one chunk of the position table: training crops fit (checked in the constructor);
  // longer validation clips are scored on their first chunk.
  const int64_t b = mel.size(0), m = mel.size(1),
                t = std::min<int64_t>(mel.size(2) / pf, cfg_.model.encoder.patches_per_chunk());
  if (t == 0) throw Error("mae: the batch's clips are shorter than one patch");
  mel = mel.narrow(2, 0, t * pf);
  // init_bn over the mel bins; in training its batch statistics update the running ones
  // (Dasheng trains it with the rest).
  encoder_->init_bn->train(train_bn);
  const torch::Tensor x = encoder_->init_bn->forward(mel.unsqueeze(-1)).squeeze(-1);  // (B, M, F)
  // Targets: the dB log-mel patches before init_bn, (B, T, M x pf), as Dasheng's.
  torch::Tensor target = mel.reshape({b, m, t, pf}).permute({0, 2, 1, 3}).reshape({b, t, m * pf});
  if (section_.loss.norm_patches) {
    const torch::Tensor mean = target.mean(-1, true), var = target.var(-1, /*unbiased=*/false, true);
    target = (target - mean) / (var + 1e-6).sqrt();
  }
  // Patch tokens with the encoder's separable position embeddings (one chunk: checked in the
  // constructor), as the encoder's own forward builds them.
  torch::Tensor h = encoder_->patch_embed->forward(x.unsqueeze(1));  // (B, D, 1, T)
  h = h + encoder_->time_pos_embed.narrow(-1, 0, t) + encoder_->freq_pos_embed;
  h = h.flatten(2).transpose(1, 2);                              // (B, T, D)
  const torch::Tensor valid = encoder_->token_mask(lengths, t);  // (B, T)

  // Random masking per clip, in groups of mask_group adjacent patches (one noise value each);
  // invalid patches sort last and are never kept.
  const int64_t g = section_.mask_group, groups = (t + g - 1) / g;
  const torch::Tensor noise = at::rand({b, groups}, generator, torch::TensorOptions().dtype(torch::kFloat32))
                                  .repeat_interleave(g, 1)
                                  .narrow(1, 0, t)
                                  .to(device_) +
                              valid.logical_not().to(torch::kFloat32) * 2;
  const torch::Tensor shuffle = torch::argsort(noise, int64_t{1}),
                      restore = torch::argsort(shuffle, int64_t{1});
  // Patches kept per clip, from the lengths on the host: no device read-back in the step.
  const torch::Tensor valid_n =
      torch::div(batch.lengths.cpu(), encoder_->samples_per_token(), "floor").clamp_max(t);  // = valid.sum(1)
  const torch::Tensor keep_cpu =
      ((1.0 - section_.mask_ratio) * valid_n.to(torch::kFloat64)).round().clamp_min(1).to(torch::kLong);
  const int64_t k = std::min<int64_t>(t, keep_cpu.max().item<int64_t>());
  const torch::Tensor keep_n = keep_cpu.to(device_);
  const torch::Tensor kept =
      torch::arange(k, keep_n.options()).unsqueeze(0) < keep_n.unsqueeze(1);  // (B, K): a row's own share
  torch::Tensor visible =
      torch::gather(h, 1, shuffle.narrow(1, 0, k).unsqueeze(-1).expand({b, k, h.size(2)}));
  const torch::Tensor keys = attendable(kept);
  for (const auto& block : *encoder_->blocks)
    visible = block->as<models::DashengBlock>()->forward(visible, keys);
  visible = encoder_->norm->forward(visible);
  const torch::Tensor is_kept = restore < keep_n.unsqueeze(1);  // (B, T) in time order
  const torch::Tensor pred = decoder_->forward(visible, kept, restore, valid);
  const torch::Tensor err = (pred.to(torch::kFloat32) - target).pow(2).mean(-1);  // (B, T)
  const torch::Tensor masked = valid & is_kept.logical_not(), shown = valid & is_kept;
  Output out;
  out.masked_mse = masked_mean(err, masked);
  out.visible_mse = masked_mean(err, shown);
  out.masked_count = masked.sum().to(torch::kFloat64);
  out.visible_count = shown.sum().to(torch::kFloat64);
  return out;
}

StepOutput MaeStage::train_step(std::size_t, const data::Batch& batch, int64_t) {
  const Output o = reconstruct(batch, /*train_bn=*/true, c10::nullopt);
  StepOutput out;
  torch::Tensor loss = section_.loss.lambda_mse * o.masked_mse;
  if (section_.loss.lambda_visible > 0) loss = loss + section_.loss.lambda_visible * o.visible_mse;
  out.loss = loss;
  out.metrics = {{"loss", loss.detach()},
                 {"mse_masked", o.masked_mse.detach()},
                 {"mse_visible", o.visible_mse.detach()}};
  return out;
}

std::map<std::string, double> MaeStage::validate(const std::function<bool(data::Batch&)>& next,
                                                 const ValidationContext&) {
  torch::NoGradGuard no_grad;
  // The same masks at every validation, from a generator of its own (the training streams are
  // untouched, so resumed runs stay exact).
  at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(cfg_.seed) + 104729);
  double sum = 0, count = 0, visible = 0, visible_count = 0;
  int64_t batches = 0;
  data::Batch batch;
  while (next(batch)) {
    const Output o = reconstruct(batch, /*train_bn=*/false, gen);
    const double n = o.masked_count.item<double>();
    sum += o.masked_mse.item<double>() * n;
    const double v = o.visible_count.item<double>();
    visible += o.visible_mse.item<double>() * v;
    visible_count += v;
    count += n;
    ++batches;
  }
  if (batches == 0) throw Error("mae: the validation set gave no batches (data.valid_sources)");
  if (count == 0) return {};
  return {{"val/mae_loss", sum / count}, {"val/mse_visible", visible / std::max(1.0, visible_count)}};
}

TensorMap MaeStage::model_state(bool) {
  return io::module_state(*root_);
}

void MaeStage::load_model_state(const TensorMap& tensors, const std::string& source, bool strict) {
  io::LoadOptions o;
  o.strict = strict;
  const io::LoadReport report = io::load_weights(*root_, tensors, source, o);
  io::log_load_report(source, report);
}

}  // namespace losatok::train
