// The tokenizer stage: VAE with dual-level semantic supervision, spectral, KL and GAN losses.
#include "losatok/train/tokenizer_stage.h"

#include <torch/torch.h>

#include <filesystem>

#include "losatok/audio/audio_io.h"
#include "losatok/audio/spectrogram_image.h"
#include "losatok/core/config.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/data/extract.h"
#include "losatok/io/weights.h"
#include "losatok/train/sembo_stage.h"

namespace fs = std::filesystem;

namespace losatok::train {

namespace {

constexpr const char* kFrozenPrefix = "semantic_encoder.";

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// Loads semantic_encoder.* (encoder + bottleneck) from a SemBo run into the tokenizer, checking
// that the bottleneck method the run used is the one this config builds.
void load_sembo(models::AudioVAEImpl& vae, const RootConfig& cfg, const std::string& path) {
  const io::WeightSet w = io::read_weights(path);
  if (const auto it = w.metadata.find(kConfigMetadataKey); it != w.metadata.end()) {
    try {
      const YAML::Node method = YAML::Load(it->second)["model"]["sembo"]["method"];
      if (method && method.as<std::string>() != cfg.model.sembo.method)
        throw ConfigError("model.sembo.method",
                          "tokenizer.sembo_checkpoint " + w.source + " holds a '" + method.as<std::string>() +
                              "' bottleneck; this config builds '" + cfg.model.sembo.method + "'");
    } catch (const YAML::Exception&) {  // no usable config in the metadata: the key check below decides
    }
  }
  const io::MappedWeights mapped = io::map_to_vae_names(w.tensors);
  io::TensorMap kept;
  bool has_bottleneck = false;
  for (const auto& [name, t] : mapped.tensors)
    if (starts_with(name, kFrozenPrefix)) {
      kept[name] = t;
      has_bottleneck |= starts_with(name, "semantic_encoder.bottleneck.");
    }
  io::LoadOptions o;
  o.scope = has_bottleneck ? kFrozenPrefix : "semantic_encoder.encoder.";
  const io::LoadReport report = io::load_weights(vae, kept, w.source, o);
  spdlog::info("frozen semantic encoder{} from {}: {}", has_bottleneck ? " + SemBo" : "", w.source,
               report.summary());
  if (!has_bottleneck && cfg.model.variant == "losatok" && cfg.model.sembo.method == "mlp")
    spdlog::warn("{} has no SemBo bottleneck: semantic_emb_low comes from a random, frozen compressor",
                 w.source);
}

}  // namespace

using config::check;

void TokenizerLossConfig::validate() const {
  for (const auto& [name, value] : {std::pair<const char*, double>{"lambda_sem", lambda_sem},
                                    {"lambda_kl", lambda_kl},
                                    {"kl_clamp", kl_clamp},
                                    {"lambda_logvar", lambda_logvar},
                                    {"lambda_mel", lambda_mel},
                                    {"lambda_stft", lambda_stft}})
    check(value >= 0, name, "must be >= 0");
  check(semantic_mode == "both" || semantic_mode == "high_only" || semantic_mode == "low_only",
        "semantic_mode", "must be both, high_only or low_only, got '" + semantic_mode + "'");
  check(mel_loss == "dac" || mel_loss == "vocos", "mel_loss", "must be dac or vocos, got '" + mel_loss + "'");
  check(!mel_n_fft.empty() && mel_n_fft.size() == mel_n_mels.size(), "mel_n_mels",
        "needs one entry per mel_n_fft entry");
  check(!stft_n_fft.empty() && stft_n_fft.size() == stft_hop.size(), "stft_hop",
        "needs one entry per stft_n_fft entry");
  for (int n : mel_n_fft) check(n >= 16, "mel_n_fft", "entries must be >= 16");
  for (int m : mel_n_mels) check(m >= 1, "mel_n_mels", "entries must be >= 1");
  for (int n : stft_n_fft) check(n >= 16, "stft_n_fft", "entries must be >= 16");
  for (int n : stft_hop) check(n >= 1, "stft_hop", "entries must be >= 1");
}

void GanConfig::validate() const {
  check(start_step >= 0, "start_step", "must be >= 0");
  check(!periods.empty(), "periods", "must not be empty");
  for (int p : periods) check(p >= 1, "periods", "entries must be >= 1");
  check(mpd_channels.size() == 5, "mpd_channels", "must list the 5 convolutions' widths");
  for (int c : mpd_channels) check(c >= 1, "mpd_channels", "entries must be >= 1");
  check(!mrd_windows.empty(), "mrd_windows", "must not be empty");
  for (int w : mrd_windows) check(w >= 64, "mrd_windows", "entries must be >= 64 (five bands need bins)");
  check(mrd_channels >= 1, "mrd_channels", "must be >= 1");
  check(mrd_weight >= 0 && lambda_adv >= 0 && lambda_fm >= 0, "mrd_weight", "weights must be >= 0");
}

void TokenizerStageConfig::validate() const {
  check(demo_clips >= 0, "demo_clips", "must be >= 0");
}

StageRegistration tokenizer_stage() {
  std::vector<std::pair<std::string, std::string>> moved = {{"gan", "tokenizer.gan"}};
  for (const char* k : {"semantic_mode", "lambda_sem", "lambda_kl", "kl_clamp", "lambda_logvar", "lambda_mel",
                        "mel_loss", "mel_n_fft", "mel_n_mels", "lambda_stft", "stft_n_fft", "stft_hop"})
    moved.emplace_back(std::string("loss.") + k, std::string("tokenizer.loss.") + k);
  return stage_registration<TokenizerStage, TokenizerStageConfig>(
      "tokenizer", "the LoSATok tokenizer (VAE) on a frozen encoder + SemBo", std::move(moved));
}

TokenizerStage::TokenizerStage(const RootConfig& cfg, const torch::Device& device)
    : cfg_(cfg),
      section_(cfg.section<TokenizerStageConfig>()),
      device_(device),
      mel_loss_(section_.loss.mel_loss, cfg.audio.sample_rate, section_.loss.mel_n_fft,
                section_.loss.mel_n_mels),
      stft_loss_(section_.loss.stft_n_fft, section_.loss.stft_hop),
      val_metrics_(cfg.frontend.vocos) {
  vae_ = models::AudioVAE(cfg.model, cfg.frontend.dasheng, cfg.frontend.vocos);
  if (vae_->semantic_encoder) {
    if (!section_.sembo_checkpoint.empty()) {
      load_sembo(*vae_, cfg, section_.sembo_checkpoint);
    } else if (!cfg.train.encoder_weights.empty()) {
      load_semantic_encoder(*vae_->semantic_encoder->encoder, cfg.train.encoder_weights);
      spdlog::warn(
          "tokenizer.sembo_checkpoint is empty: the frozen SemBo compressor is random (smoke runs only)");
    } else {
      spdlog::warn(
          "tokenizer.sembo_checkpoint and train.encoder_weights are empty: the frozen semantic encoder "
          "and SemBo are random (seed {}); smoke runs only",
          cfg.seed);
    }
    for (auto& p : vae_->semantic_encoder->parameters()) p.set_requires_grad(false);
  }
  if (section_.gan.enabled) {
    disc_ = std::make_shared<torch::nn::Module>();
    mpd_ = disc_->register_module(
        "multiperioddisc", models::MultiPeriodDiscriminator(section_.gan.periods, section_.gan.mpd_channels));
    mrd_ = disc_->register_module("multiresddisc", models::MultiResolutionDiscriminator(
                                                       section_.gan.mrd_windows, section_.gan.mrd_channels));
    disc_->to(device_);
  }
  vae_->to(device_);
  set_training(true);
}

void TokenizerStage::set_training(bool training) {
  vae_->train(training);
  if (vae_->semantic_encoder) vae_->semantic_encoder->eval();  // frozen
  if (disc_) disc_->train(training);
}

NamedTensors TokenizerStage::ema_parameters() {
  NamedTensors out;
  for (const auto& item : vae_->named_parameters())
    if (item.value().requires_grad()) out.emplace_back(item.key(), item.value());
  return out;
}

NamedTensors TokenizerStage::discriminator_parameters() {
  NamedTensors out;
  if (disc_)
    for (const auto& item : disc_->named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

std::vector<OptimizerSpec> TokenizerStage::optimizers() {
  std::vector<OptimizerSpec> out;
  if (section_.gan.enabled) out.push_back({"discriminator", discriminator_parameters(), section_.gan.optim});
  out.push_back({"generator", ema_parameters(), cfg_.train.optim});
  return out;
}

bool TokenizerStage::optimizer_active(std::size_t index, int64_t step) const {
  const bool is_disc = section_.gan.enabled && index == 0;
  return !is_disc || gan_on(step);
}

std::optional<data::CacheProducer> TokenizerStage::cache_producer() {
  if (!vae_->semantic_encoder) return std::nullopt;
  return data::semantic_cache_producer(*vae_->semantic_encoder->encoder, cfg_);
}

TokenizerStage::Forward TokenizerStage::forward(const data::Batch& batch, bool sample) {
  if (!batch.audio.defined()) throw Error("tokenizer: the batch has no audio");
  Forward out;
  const torch::Tensor y = batch.audio.to(device_);
  const torch::Tensor lengths = batch.lengths.to(device_);
  const torch::Tensor acoustic = vae_->dasheng_tokenizer->encoder->forward(y);
  torch::Tensor semantic;
  if (vae_->semantic_encoder) {
    if (const auto it = batch.features.find("semantic_emb"); it != batch.features.end()) {
      semantic = it->second.to(device_, torch::kFloat32);
    } else {
      torch::NoGradGuard no_grad;  // frozen
      semantic = vae_->semantic_encoder->encoder->forward(y, lengths);
    }
  }
  out.f = vae_->encode_embeddings(acoustic, semantic, sample && cfg_.model.is_variational());
  out.f.mask = vae_->token_mask(lengths, out.f.z.size(1));
  torch::Tensor y_hat = vae_->decode(out.f.z);  // (B, T * samples_per_token)
  const int64_t n = std::min(y.size(1), y_hat.size(1));
  out.mask = (torch::arange(n, lengths.options()).unsqueeze(0) < lengths.unsqueeze(1)).to(torch::kFloat32);
  out.y = y.narrow(1, 0, n) * out.mask;
  out.y_hat = y_hat.narrow(1, 0, n) * out.mask;
  return out;
}

std::map<std::string, double> TokenizerStage::loss_counts(std::size_t index, const data::Batch& batch,
                                                          int64_t) const {
  const double clips = static_cast<double>(batch.size());
  if (section_.gan.enabled && index == 0) return {{"clips", clips}};
  double tokens = 0;
  if (batch.lengths.defined()) {
    const torch::Tensor n = batch.lengths.to(torch::kCPU, torch::kLong);
    for (int64_t i = 0; i < n.size(0); ++i)
      tokens += static_cast<double>(n[i].item<int64_t>() / cfg_.samples_per_token());
  }
  return {{"clips", clips}, {"tokens", tokens}};
}

StepOutput TokenizerStage::train_step(std::size_t index, const data::Batch& batch, int64_t step) {
  StepOutput out;
  const bool is_disc = section_.gan.enabled && index == 0;
  if (is_disc) {
    Forward fw;
    {
      torch::NoGradGuard no_grad;
      fw = forward(batch, section_.sample_latent);
    }
    // Real and generated audio in one pass of each discriminator.
    const torch::Tensor both = torch::cat({fw.y, fw.y_hat});
    const int64_t b = fw.y.size(0);
    const auto mpd = models::split_rows(mpd_->forward(both), b);
    const auto mrd = models::split_rows(mrd_->forward(both), b);
    const torch::Tensor d_mpd = losses::discriminator_hinge_loss(mpd.first, mpd.second);
    const torch::Tensor d_mrd = losses::discriminator_hinge_loss(mrd.first, mrd.second);
    out.loss = d_mpd + section_.gan.mrd_weight * d_mrd;
    out.terms.emplace_back("clips", out.loss);
    out.metrics = {{"d_loss", out.loss.detach()}, {"d_mpd", d_mpd.detach()}, {"d_mrd", d_mrd.detach()}};
    return out;
  }
  const Forward fw = forward(batch, section_.sample_latent);
  const TokenizerLossConfig& L = section_.loss;
  const torch::Tensor mel = mel_loss_(fw.y_hat, fw.y);
  torch::Tensor loss = L.lambda_mel * mel;
  // The terms that average over valid tokens; the rest average over clips.
  torch::Tensor per_token = torch::zeros({}, loss.options());
  out.metrics = {{"mel", mel.detach()}};
  if (L.lambda_stft > 0) {
    const auto [sc, mag] = stft_loss_(fw.y_hat, fw.y);
    loss = loss + L.lambda_stft * (sc + mag);
    out.metrics["stft_sc"] = sc.detach();
    out.metrics["stft_mag"] = mag.detach();
  }
  const models::VaeFeatures& f = fw.f;
  if (cfg_.model.is_variational()) {
    const torch::Tensor kl = losses::kl_loss(f.mu, f.logvar, f.mask, L.kl_clamp);
    per_token = per_token + L.lambda_kl * kl;
    out.metrics["kl"] = kl.detach();
    if (L.lambda_logvar > 0) {
      const torch::Tensor pen = losses::logvar_penalty(f.logvar, f.mask);
      per_token = per_token + L.lambda_logvar * pen;
      out.metrics["logvar_penalty"] = pen.detach();
    }
  }
  if (cfg_.model.variant == "losatok") {  // dual-level semantic supervision
    torch::Tensor sem = torch::zeros({}, loss.options());
    if (L.semantic_mode != "low_only") {
      const torch::Tensor high = losses::masked_mse(f.acoustic_emb, f.semantic_emb, f.mask);
      sem = sem + high;
      out.metrics["sem_high"] = high.detach();
    }
    if (L.semantic_mode != "high_only") {
      const torch::Tensor low = losses::masked_mse(f.acoustic_emb_low, f.semantic_emb_low, f.mask);
      sem = sem + low;
      out.metrics["sem_low"] = low.detach();
    }
    per_token = per_token + L.lambda_sem * sem;
  }
  if (gan_on(step)) {
    std::vector<models::DiscriminatorOutput> real_mpd, real_mrd;
    {
      torch::NoGradGuard no_grad;  // the targets of feature matching
      real_mpd = mpd_->forward(fw.y);
      real_mrd = mrd_->forward(fw.y);
    }
    const auto fake_mpd = mpd_->forward(fw.y_hat);
    const auto fake_mrd = mrd_->forward(fw.y_hat);
    const torch::Tensor g_mpd = losses::generator_hinge_loss(fake_mpd),
                        g_mrd = losses::generator_hinge_loss(fake_mrd);
    const torch::Tensor fm_mpd = losses::feature_matching_loss(real_mpd, fake_mpd);
    const torch::Tensor fm_mrd = losses::feature_matching_loss(real_mrd, fake_mrd);
    const double w = section_.gan.mrd_weight;
    loss =
        loss + section_.gan.lambda_adv * (g_mpd + w * g_mrd) + section_.gan.lambda_fm * (fm_mpd + w * fm_mrd);
    out.metrics["g_mpd"] = g_mpd.detach();
    out.metrics["g_mrd"] = g_mrd.detach();
    out.metrics["fm_mpd"] = fm_mpd.detach();
    out.metrics["fm_mrd"] = fm_mrd.detach();
  }
  out.terms = {{"clips", loss}, {"tokens", per_token}};
  out.loss = loss + per_token;
  out.metrics["loss"] = out.loss.detach();
  return out;
}

std::map<std::string, double> TokenizerStage::validate(const std::function<bool(data::Batch&)>& next,
                                                       const ValidationContext& ctx) {
  torch::NoGradGuard no_grad;
  eval::ReconMeans recon;
  double kl = 0, sem_high = 0, sem_low = 0;
  int64_t batches = 0, demos = 0;
  data::Batch batch;
  const int sr = cfg_.audio.sample_rate;
  while (next(batch)) {
    const Forward fw = forward(batch, /*sample=*/false);
    const torch::Tensor valid = fw.mask.sum(1).to(torch::kInt64).cpu();
    for (int64_t i = 0; i < fw.y.size(0); ++i) {
      const int64_t n = valid[i].item<int64_t>();
      if (n < eval::ReconMetrics::kMinSamples) continue;  // too short for the spectral distances
      const torch::Tensor y = fw.y[i].narrow(0, 0, n), y_hat = fw.y_hat[i].narrow(0, 0, n);
      recon.add(val_metrics_(y_hat, y, /*with_stoi=*/false));
      if (demos < section_.demo_clips && !ctx.dir.empty()) {
        const torch::Tensor mel_y = val_metrics_.mel(y), mel_hat = val_metrics_.mel(y_hat);
        fs::create_directories(ctx.dir);
        const std::string stem = (fs::path(ctx.dir) / ("clip" + std::to_string(demos))).string();
        const torch::Tensor cpu_hat = y_hat.to(torch::kCPU).contiguous(),
                            cpu_y = y.to(torch::kCPU).contiguous();
        audio::write_audio(stem + ".recon.wav", cpu_hat.data_ptr<float>(), n, 1, sr, "pcm16");
        audio::write_audio(stem + ".input.wav", cpu_y.data_ptr<float>(), n, 1, sr, "pcm16");
        audio::write_spectrogram_png(stem + ".recon.png", mel_hat);
        audio::write_spectrogram_png(stem + ".input.png", mel_y);
        if (ctx.audio)
          ctx.audio("val/clip" + std::to_string(demos),
                    std::vector<float>(cpu_hat.data_ptr<float>(), cpu_hat.data_ptr<float>() + n), sr);
        ++demos;
      }
    }
    const models::VaeFeatures& f = fw.f;
    if (cfg_.model.is_variational()) kl += losses::kl_loss(f.mu, f.logvar, f.mask).item<double>();
    if (cfg_.model.variant == "losatok") {
      sem_high += losses::masked_mse(f.acoustic_emb, f.semantic_emb, f.mask).item<double>();
      sem_low += losses::masked_mse(f.acoustic_emb_low, f.semantic_emb_low, f.mask).item<double>();
    }
    ++batches;
  }
  if (recon.clips() == 0)
    throw Error("tokenizer: the validation set gave no clip of at least " +
                std::to_string(eval::ReconMetrics::kMinSamples) + " samples");
  std::map<std::string, double> out;
  const auto& metrics = eval::recon_metrics();
  for (std::size_t i = 0; i < metrics.size(); ++i)
    if (metrics[i].in_validation) out[std::string("val/") + metrics[i].key] = recon.mean(i);
  if (cfg_.model.is_variational()) out["val/kl"] = kl / batches;
  if (cfg_.model.variant == "losatok") {
    out["val/sem_high"] = sem_high / batches;
    out["val/sem_low"] = sem_low / batches;
  }
  return out;
}

TensorMap TokenizerStage::model_state(bool include_frozen) {
  TensorMap out;
  for (const auto& [name, t] : io::module_state(*vae_))
    if (include_frozen || !starts_with(name, kFrozenPrefix)) out[name] = t;
  return out;
}

void TokenizerStage::load_model_state(const TensorMap& tensors, const std::string& source, bool strict) {
  io::LoadOptions o;
  o.strict = strict;
  bool has_frozen = false;
  for (const auto& [name, t] : tensors) has_frozen |= starts_with(name, kFrozenPrefix);
  TensorMap use = tensors;
  if (!has_frozen && vae_->semantic_encoder) {
    // Saved without the frozen modules: keep the ones this run loaded.
    for (const auto& [name, t] : io::module_state(*vae_))
      if (starts_with(name, kFrozenPrefix)) use[name] = t;
  }
  const io::LoadReport report = io::load_weights(*vae_, use, source, o);
  io::log_load_report(source, report);
}

TensorMap TokenizerStage::extra_state() {
  TensorMap out;
  if (disc_)
    for (const auto& [name, t] : io::module_state(*disc_)) out["disc." + name] = t;
  return out;
}

void TokenizerStage::load_extra_state(const TensorMap& tensors, const std::string& where) {
  if (!disc_) return;
  TensorMap mine;
  for (const auto& [k, v] : tensors)
    if (starts_with(k, "disc.")) mine[k.substr(5)] = v;
  io::load_weights(*disc_, mine, where + " (discriminators)");
}

}  // namespace losatok::train
