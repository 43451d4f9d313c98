// The DiT stage: flow matching on cached tokenizer latents; generation at validation goes
// through the pipeline of gen/dit_pipeline.h.
#include "losatok/train/dit_stage.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "losatok/audio/audio_io.h"
#include "losatok/audio/mel.h"
#include "losatok/audio/spectrogram_image.h"
#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/data/extract.h"
#include "losatok/io/weights.h"
#include "losatok/losses/tokenizer_losses.h"
#include "losatok/models/flow_matching.h"
#include "losatok/models/init.h"
#include "losatok/models/tts.h"

namespace fs = std::filesystem;

namespace losatok::train {

namespace {

// TTS infilling: (B, T) bool, true on the frames to generate. Training: a random span of
// infill_min..infill_max of each row's valid frames; validation (random = false): everything
// after the first 30 %.
torch::Tensor infill_mask(const torch::Tensor& lengths_cpu, int64_t frames, const FlowConfig& flow,
                          bool random) {
  const int64_t b = lengths_cpu.size(0);
  torch::Tensor out = torch::zeros({b, frames}, torch::kBool);
  const torch::Tensor u = random ? torch::rand({b, 2}, torch::kFloat64) : torch::Tensor();
  for (int64_t i = 0; i < b; ++i) {
    const int64_t len = lengths_cpu[i].item<int64_t>();
    if (len <= 0) continue;
    int64_t start, span;
    if (random) {
      const double frac = flow.infill_min + (flow.infill_max - flow.infill_min) * u[i][0].item<double>();
      span = std::clamp<int64_t>(std::llround(frac * len), 1, len);
      start = std::min<int64_t>(len - span, static_cast<int64_t>(u[i][1].item<double>() * (len - span + 1)));
    } else {
      start = std::min<int64_t>(len - 1, static_cast<int64_t>(std::floor(0.3 * len)));
      span = len - start;
    }
    out[i].narrow(0, start, span).fill_(true);
  }
  return out;
}

std::string sigma_label(double s) {
  return config::detail::shortest_float(s);
}

}  // namespace

using config::check;
StageRegistration dit_stage() {
  return stage_registration<DiTStage, DiTStageConfig>(
      "dit", "a DiT on cached tokenizer latents (text-to-audio, -music, -speech)");
}

// ---------------------------------------------------------------------------------------------
// DiTStage

DiTStage::DiTStage(const RootConfig& cfg, const torch::Device& device)
    : cfg_(cfg), dit_(cfg.section<DiTStageConfig>()), device_(device) {
  if (cfg.data.cache_dir.empty())
    throw ConfigError("data.cache_dir",
                      "the dit stage trains on tokenizer latents: fill a cache with "
                      "`losatok extract --what latents --checkpoint TOKENIZER` and name it here");
  int cond_dim = 0;
  if (dit_.condition.source == "cache") {
    const std::string& dir = dit_.condition.cache_dir;
    condition_cache_ = std::make_shared<data::FeatureCache>(dir, data::CacheProducer{});
    if (condition_cache_->producer().what != "condition")
      throw ConfigError("dit.condition.cache_dir", "'" + dir + "' holds " +
                                                       condition_cache_->producer().what +
                                                       " features, not condition embeddings (producer "
                                                       "`condition`)");
    const auto keys = condition_cache_->keys();
    if (keys.empty()) throw ConfigError("dit.condition.cache_dir", "'" + dir + "' holds no clip");
    const auto first = condition_cache_->read(keys.front());
    const auto it = first.find(dit_.condition.tensor);
    if (it == first.end())
      throw ConfigError("dit.condition.tensor",
                        "'" + dit_.condition.tensor + "' is not in the cache '" + dir + "'");
    if (it->second.dim() != 2)
      throw ConfigError("dit.condition.tensor",
                        "'" + dit_.condition.tensor + "' in '" + dir + "' must be (length, width) per clip");
    cond_dim = static_cast<int>(it->second.size(1));
    if (!dit_.condition.text_encoder.empty()) {
      // The cache must hold this encoder's features (`losatok extract --what text`).
      const models::T5TextEncoder t5(dit_.condition.text_encoder, torch::kCPU, dit_.condition.max_tokens);
      const data::CacheProducer want = data::text_cache_producer(t5);
      if (!(condition_cache_->producer() == want))
        throw ConfigError("dit.condition.cache_dir", "'" + dir +
                                                         "' was not extracted with the text encoder '" +
                                                         dit_.condition.text_encoder +
                                                         "' (its weights, tokenizer or max_tokens differ)");
    }
  }
  if (dit_.joint())
    for (const auto* list : {&cfg.data.sources, &cfg.data.valid_sources})
      for (const auto& src : *list)
        if (src.task.empty())
          throw ConfigError(
              list == &cfg.data.sources ? "data.sources" : "data.valid_sources",
              "the joint model needs each source's task (tta, ttm or tts): '" + src.manifest + "' has none");
  if (dit_.uniflow_tts()) {
    const SpeakerConfig& sc = dit_.tts.speaker;
    if (sc.source == "cache")
      speaker_cache_ = std::make_shared<data::FeatureCache>(sc.cache_dir, data::CacheProducer{});
    if (sc.source == "table") {
      // The speakers of the training clips: their table rows must differ.
      std::map<int64_t, std::string> rows;
      for (std::size_t s = 0; s < cfg.data.sources.size(); ++s) {
        if (dit_.joint() && cfg.data.sources[s].task != "tts") continue;
        for (const auto& e : data::read_manifest(cfg.data.sources[s].manifest)) {
          const std::string name = data::speaker_name(e);
          const int64_t row = gen::speaker_row(name, sc.max_speakers);
          const auto [it, fresh] = rows.emplace(row, name);
          if (!fresh && it->second != name)
            throw ConfigError("dit.tts.speaker.max_speakers", "speakers '" + it->second + "' and '" + name +
                                                                  "' share table row " + std::to_string(row) +
                                                                  " of " + std::to_string(sc.max_speakers) +
                                                                  ": use more rows");
        }
      }
      for (const auto& [row, name] : rows) speakers_.push_back(name);
      std::sort(speakers_.begin(), speakers_.end());
      spdlog::info("tts: {} speakers in the training data", speakers_.size());
    }
  }
  pipeline_ = std::make_unique<gen::DiTPipeline>(cfg, device, cond_dim);
  pipeline_->set_known_speakers(speakers_);
  if (!dit_.tokenizer_checkpoint.empty()) {
    pipeline_->load_tokenizer(dit_.tokenizer_checkpoint);
    tokenizer_record_ = gen::tokenizer_record(dit_.tokenizer_checkpoint, cfg_.run_dir);
  } else
    spdlog::warn(
        "dit.tokenizer_checkpoint is empty: the latents cache's producer is not checked and "
        "validation generates no audio");
  spdlog::info("DiT: {:.2f} M parameters ({} task, {} condition)",
               models::count_parameters(pipeline_->model()) / 1e6, dit_.task, dit_.condition.source);
  set_training(true);
}

std::map<std::string, std::string> DiTStage::checkpoint_metadata() const {
  std::map<std::string, std::string> out;
  if (!tokenizer_record_.empty()) out[gen::kTokenizerKey] = tokenizer_record_;
  if (!speakers_.empty()) out[gen::kSpeakersKey] = nlohmann::json(speakers_).dump();
  return out;
}

bool DiTStage::cropped(const data::Batch& batch, int64_t i) const {
  const auto& item = batch.items[i];
  return item.offset > 0 || batch.feature_lengths[i].item<int64_t>() < latents_->clip(item.clip->key).frames;
}

int DiTStage::batch_task(const data::Batch& batch, bool valid) const {
  if (!dit_.joint() || batch.items.empty()) return -1;
  const auto& sources = valid ? cfg_.data.valid_sources : cfg_.data.sources;
  const int source = batch.items.front().clip->source;
  if (source < 0 || source >= static_cast<int>(sources.size()))
    throw Error("dit: a batch from an unknown source");
  return dit_task_index(sources[source].task);
}

std::optional<data::CacheProducer> DiTStage::cache_producer() {
  if (!producer_) {
    auto* vae = pipeline_->tokenizer();
    // No tokenizer: any producer (ensure_statistics checks that it holds latents).
    producer_ = vae ? data::cache_producer("latents", *vae, pipeline_->tokenizer_checkpoint().config)
                    : data::CacheProducer{};
  }
  return producer_;
}

void DiTStage::ensure_statistics() {
  if (!latents_) {  // also on a resumed run, whose statistics come with the weights
    latents_ = std::make_shared<data::FeatureCache>(cfg_.data.cache_dir, *cache_producer());
    if (latents_->producer().what != "latents")
      throw ConfigError("data.cache_dir", "'" + cfg_.data.cache_dir + "' holds " + latents_->producer().what +
                                              " features; the dit stage reads tokenizer latents (losatok "
                                              "extract --what latents)");
  }
  if (statistics_ready_) return;
  const data::FeatureCache& cache = *latents_;
  std::vector<const data::Clip*> chosen;
  const std::vector<data::Clip> clips = data::read_sources(cfg_.data.sources);
  {
    std::set<std::string> seen;
    std::vector<const data::Clip*> present;
    for (const auto& c : clips)
      if (cache.contains(c.key) && seen.insert(c.key).second) present.push_back(&c);
    if (present.empty())
      throw ConfigError("data.cache_dir",
                        "'" + cfg_.data.cache_dir +
                            "' holds none of the training clips of data.sources: extract them "
                            "first");
    const std::size_t n = std::min<std::size_t>(present.size(), dit_.norm_max_clips);
    for (std::size_t i = 0; i < n; ++i) chosen.push_back(present[i * present.size() / n]);
  }
  const int64_t d = dit_.model.latent_dim;
  torch::Tensor sum = torch::zeros({d}, torch::kFloat64), sumsq = torch::zeros({d}, torch::kFloat64),
                noise_var = torch::zeros({d}, torch::kFloat64);
  int64_t frames = 0, text_tokens = 0, text_frames = 0;
  for (const data::Clip* c : chosen) {
    const auto t = cache.read(c->key);
    const auto mu_it = t.find("mu");
    if (mu_it == t.end())
      throw Error("feature cache '" + cfg_.data.cache_dir + "': clip " + c->key + " has no mu");
    const torch::Tensor mu = mu_it->second.to(torch::kFloat64);
    if (mu.size(1) != d)
      throw ConfigError("dit.model.latent_dim", "the cache holds " + std::to_string(mu.size(1)) +
                                                    "-d latents, the DiT is built for " + std::to_string(d));
    sum += mu.sum(0);
    sumsq += mu.pow(2).sum(0);
    if (dit_.sample_latent)
      if (const auto lv = t.find("logvar"); lv != t.end())
        noise_var += lv->second.to(torch::kFloat64).exp().sum(0);
    frames += mu.size(0);
    if (dit_.task == "tts" && !dit_.tts.uniflow() && !c->entry.text.empty()) {
      text_tokens += static_cast<int64_t>(pipeline_->tokens(c->entry.text).size());
      text_frames += mu.size(0);
    }
  }
  const torch::Tensor mean = sum / frames;
  const torch::Tensor var = (sumsq / frames - mean.pow(2) + noise_var / frames).clamp_min(1e-8);
  auto& m = pipeline_->model();
  {
    torch::NoGradGuard no_grad;
    if (dit_.standardize) {
      m.latent_mean.copy_(mean.to(torch::kFloat32));
      m.latent_std.copy_(var.sqrt().to(torch::kFloat32));
    }
    if (text_tokens > 0) m.frames_per_token.fill_(static_cast<double>(text_frames) / text_tokens);
  }
  spdlog::info(
      "latent statistics from {} training clips ({} frames): mean of |mean| {:.3f}, std {:.3f}..{:.3f}{}{}",
      chosen.size(), frames, mean.abs().mean().item<double>(), var.sqrt().min().item<double>(),
      var.sqrt().max().item<double>(), dit_.standardize ? " (standardised)" : " (used as they are)",
      text_tokens > 0 ? fmt::format(", {:.2f} frames per text token", m.frames_per_token.item<double>())
                      : std::string());
  statistics_ready_ = true;
}

void DiTStage::set_training(bool training) {
  pipeline_->model().train(training);
  if (auto* vae = pipeline_->tokenizer()) vae->eval();
}

NamedTensors DiTStage::ema_parameters() {
  NamedTensors out;
  for (const auto& item : pipeline_->model().named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

std::vector<OptimizerSpec> DiTStage::optimizers() {
  return {{"dit", ema_parameters(), cfg_.train.optim}};
}

DiTStage::Inputs DiTStage::inputs(const data::Batch& batch, bool sample, bool valid) {
  const auto it = batch.features.find("mu");
  if (it == batch.features.end())
    throw Error("dit: the batch has no cached latents 'mu' (data.cache_dir must hold `--what latents`)");
  auto& m = pipeline_->model();
  Inputs in;
  torch::Tensor z = to_device(it->second, device_, torch::kFloat32);
  in.mask = to_device(batch.feature_mask(), device_);
  if (sample)
    if (const auto lv = batch.features.find("logvar"); lv != batch.features.end())
      z = z + torch::exp(0.5 * to_device(lv->second, device_, torch::kFloat32)) * torch::randn_like(z);
  in.z = m.normalize(z) * in.mask.unsqueeze(-1);
  in.task = batch_task(batch, valid);
  in.speech = m.uniflow && (!m.joint || in.task == dit_task_index("tts"));
  if (in.speech) {
    speech_condition(in, batch);
    return in;
  }
  if (condition_cache_) {
    std::vector<torch::Tensor> emb;
    for (const auto& item : batch.items) {
      const auto t = condition_cache_->read(item.clip->key);
      const auto c = t.find(dit_.condition.tensor);
      if (c == t.end())
        throw Error("condition cache '" + dit_.condition.cache_dir + "': clip " + item.clip->key +
                    " has no '" + dit_.condition.tensor + "'");
      emb.push_back(c->second.to(torch::kFloat32));
    }
    in.condition = pipeline_->embedding_condition(emb);
  } else {
    std::vector<std::string> texts;
    for (const auto& item : batch.items) texts.push_back(item.clip->entry.text);
    in.condition = pipeline_->text_condition(texts, in.mask);
  }
  return in;
}

void DiTStage::speech_condition(Inputs& in, const data::Batch& batch) {
  auto& m = pipeline_->model();
  const int64_t b = batch.size(), frames = in.z.size(1);
  std::vector<std::string> texts, phonemes, names;
  std::vector<torch::Tensor> vectors;
  for (const auto& item : batch.items) {
    const auto& e = item.clip->entry;
    texts.push_back(e.text);
    phonemes.push_back(e.phonemes);
    names.push_back(data::speaker_name(e));
    if (speaker_cache_) {
      const auto t = speaker_cache_->read(item.clip->key);
      const auto it = t.find(dit_.tts.speaker.tensor);
      if (it == t.end())
        throw Error("speaker cache '" + dit_.tts.speaker.cache_dir + "': clip " + item.clip->key +
                    " has no '" + dit_.tts.speaker.tensor + "'");
      vectors.push_back(it->second);
    }
  }
  const gen::DiTPipeline::SpeechInputs si = pipeline_->speech_inputs(texts, phonemes, names, vectors);
  const auto o = m.speech().forward(si.units, si.mask, si.speaker);
  const torch::Tensor prior = m.speech().prior(o.hidden);  // (B, P, D)
  torch::Tensor durations = torch::zeros(si.mask.sizes(), torch::kLong);
  std::vector<uint8_t> ok(static_cast<std::size_t>(b), 0);
  int64_t unalignable = 0;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor p_cpu = prior.detach().to(torch::kCPU, torch::kDouble);
    const torch::Tensor z_cpu = in.z.detach().to(torch::kCPU, torch::kDouble);
    for (int64_t i = 0; i < b; ++i) {
      const int64_t p = si.phonemes[i], t = batch.feature_lengths[i].item<int64_t>();
      if (cropped(batch, i)) continue;
      if (p > t) {
        ++unalignable;
        continue;
      }
      std::vector<int64_t> d;
      if (dit_.tts.durations == "manifest") {
        const auto& e = batch.items[i].clip->entry;
        d = e.durations;
        if (static_cast<int64_t>(d.size()) != p)
          throw Error("manifest line " + std::to_string(e.line) + " (" + batch.items[i].clip->key +
                      "): " + std::to_string(d.size()) + " durations for " + std::to_string(p) + " phonemes");
        // The cached frames may round differently from the aligner's: the last phoneme takes up the
        // difference.
        const int64_t sum = std::accumulate(d.begin(), d.end(), int64_t{0});
        d.back() += t - sum;
        if (d.back() < 0) continue;
      } else {
        // Glow-TTS: log N(z_t; mu_p, I) up to constants, for each phoneme p and frame t.
        const torch::Tensor mu = p_cpu[i].narrow(0, 0, p), z = z_cpu[i].narrow(0, 0, t);
        const torch::Tensor ll =
            -0.5 * (mu.pow(2).sum(1, true) - 2.0 * mu.mm(z.t()) + z.pow(2).sum(1).unsqueeze(0));
        d = models::monotonic_alignment(ll);
      }
      durations[i].narrow(0, 0, p).copy_(torch::tensor(d, torch::kLong));
      ok[static_cast<std::size_t>(i)] = 1;
    }
  }
  if (unalignable > 0 && unalignable_clips_ == 0)
    spdlog::warn("tts: clips with more phonemes than latent frames train without their transcript");
  unalignable_clips_ += unalignable;
  in.aligned_rows = to_device(
      torch::tensor(std::vector<int64_t>(ok.begin(), ok.end()), torch::kLong).to(torch::kBool), device_);
  const torch::Tensor rows = in.aligned_rows.unsqueeze(1);
  // Grad-TTS's prior loss: the prior expanded by the durations against the latents.
  in.prior_loss =
      losses::masked_mse(models::length_regulate(prior, durations, frames), in.z, in.mask.logical_and(rows));
  const torch::Tensor ph = si.mask.logical_and(rows).to(o.log_durations.scalar_type());
  const torch::Tensor target = torch::log1p(to_device(durations, device_).to(o.log_durations.scalar_type()));
  in.local_duration_loss = ((o.log_durations - target).pow(2) * ph).sum() / ph.sum().clamp_min(1.0);
  const double rate = cfg_.token_rate();
  const torch::Tensor seconds =
      to_device(batch.feature_lengths, device_).to(o.log_seconds.scalar_type()) / rate;
  const torch::Tensor r = in.aligned_rows.to(o.log_seconds.scalar_type());
  in.global_duration_loss =
      ((o.log_seconds - torch::log1p(seconds)).pow(2) * r).sum() / r.sum().clamp_min(1.0);
  in.condition.cond = o.content;
  in.condition.cond_mask = si.mask;
  in.condition.aligned = models::length_regulate(o.content, durations, frames);
}

void DiTStage::apply_conditioning(Inputs& in, const data::Batch& batch, torch::Tensor drop,
                                  const torch::Tensor& prompt_keep, bool random_span) {
  auto& m = pipeline_->model();
  in.loss_mask = in.mask;
  if (m.tts) {
    // A clip longer than data.max_seconds was cropped: its transcript no longer matches, so it
    // trains (and validates) without text, as a dropped condition.
    int64_t crops = 0;
    auto flags = drop.accessor<bool, 1>();
    for (int64_t i = 0; i < batch.size(); ++i) {
      if (cropped(batch, i)) {
        flags[i] = true;
        ++crops;
      }
    }
    if (crops > 0 && cropped_clips_ == 0)
      spdlog::warn("tts: clips longer than data.max_seconds are cropped and train without their transcript");
    cropped_clips_ += crops;
  }
  if (in.speech) {
    // Rows whose transcript is not theirs (cropped, or too many phonemes) train unconditioned.
    const torch::Tensor d = drop.to(device_).logical_or(in.aligned_rows.logical_not());
    in.condition.cond = m.drop_condition(in.condition.cond, d);
    in.condition.aligned = in.condition.aligned * d.logical_not().view({-1, 1, 1}).to(in.z.scalar_type());
    return;
  }
  in.condition.cond = m.drop_condition(in.condition.cond, drop);
  if (!m.tts) return;
  const torch::Tensor keep = drop.logical_not().to(device_).view({-1, 1, 1}).to(in.z.scalar_type());
  in.condition.aligned = in.condition.aligned * keep;  // dropped rows: no text at all
  const torch::Tensor infill =
      infill_mask(batch.feature_lengths.cpu(), in.z.size(1), dit_.flow, random_span).to(device_);
  torch::Tensor prompt = in.z * infill.logical_not().unsqueeze(-1) * keep;
  if (prompt_keep.defined())
    prompt = prompt * prompt_keep.to(device_).view({-1, 1, 1}).to(in.z.scalar_type());
  in.prompt = prompt;
  in.loss_mask = infill.logical_and(in.mask);
}

std::map<std::string, double> DiTStage::loss_counts(std::size_t, const data::Batch& batch, int64_t) const {
  if (dit_.task == "tts" || dit_.joint() || !batch.feature_lengths.defined()) return {};
  return {{"tokens", batch.feature_lengths.to(torch::kCPU, torch::kDouble).sum().item<double>()}};
}

StepOutput DiTStage::train_step(std::size_t, const data::Batch& batch, int64_t) {
  ensure_statistics();
  auto& m = pipeline_->model();
  const FlowConfig& flow = dit_.flow;
  Inputs in = inputs(batch, dit_.sample_latent, /*valid=*/false);
  const int64_t b = in.z.size(0);
  // Random draws in a fixed order: resumable bitwise. The condition's dropout is drawn where
  // the model runs (no host-to-device copy), except for TTS, whose cropped clips set it on the
  // host.
  const auto draw =
      torch::TensorOptions(torch::kFloat64).device(m.tts ? torch::Device(torch::kCPU) : device_);
  const torch::Tensor drop = torch::rand({b}, draw) < flow.cond_dropout;
  torch::Tensor prompt_keep;
  if (m.tts) prompt_keep = torch::rand({b}, torch::kFloat64) >= flow.prompt_dropout;
  apply_conditioning(in, batch, drop, prompt_keep, /*random_span=*/true);
  const torch::Tensor sigma = models::sample_sigmas(b, flow, in.z.options());
  const torch::Tensor noise = torch::randn_like(in.z) * in.mask.unsqueeze(-1);
  const torch::Tensor x = models::flow_interpolate(in.z, noise, sigma);
  const torch::Tensor v = m.velocity(x, sigma, in.mask, in.condition.cond, in.condition.cond_mask, in.prompt,
                                     in.condition.aligned, in.task);
  StepOutput out;
  const torch::Tensor fm = losses::masked_mse(v, models::flow_target(in.z, noise), in.loss_mask);
  out.loss = fm;
  if (in.speech) {
    const TtsConfig& t = dit_.tts;
    out.loss = fm + t.duration_weight * in.local_duration_loss +
               t.global_duration_weight * in.global_duration_loss + t.prior_weight * in.prior_loss;
    out.metrics["fm_loss"] = fm.detach();
    out.metrics["duration_loss"] = in.local_duration_loss.detach();
    out.metrics["global_duration_loss"] = in.global_duration_loss.detach();
    out.metrics["prior_loss"] = in.prior_loss.detach();
  }
  if (in.task >= 0) out.metrics[std::string(kDiTTasks[in.task]) + "/fm_loss"] = fm.detach();
  if (!m.tts && !in.speech && !m.joint)
    out.terms.emplace_back("tokens", out.loss);  // loss_mask = the valid frames
  out.metrics["loss"] = out.loss.detach();
  return out;
}

std::map<std::string, double> DiTStage::validate(const std::function<bool(data::Batch&)>& next,
                                                 const ValidationContext& ctx) {
  ensure_statistics();
  torch::NoGradGuard no_grad;
  auto& m = pipeline_->model();
  const auto& sigmas = dit_.val_sigmas;
  std::vector<double> per_sigma(sigmas.size(), 0.0);
  int64_t batches = 0;
  std::vector<gen::GenerationRequest> from_cache;  // cache-conditioned models generate for clips' embeddings
  // The same noise at every validation: the loss curve compares like with like.
  at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(cfg_.seed) + 7919);
  // The joint model's losses per task; UniFlow TTS's duration and prior losses.
  std::map<std::string, std::pair<double, int64_t>> extra;
  const auto add = [&extra](const std::string& key, double value) {
    auto& [sum, n] = extra[key];
    sum += value;
    ++n;
  };
  data::Batch batch;
  while (next(batch)) {
    Inputs in = inputs(batch, /*sample=*/false, /*valid=*/true);
    apply_conditioning(in, batch, torch::zeros({in.z.size(0)}, torch::kBool), {}, /*random_span=*/false);
    double batch_loss = 0;
    for (std::size_t k = 0; k < sigmas.size(); ++k) {
      const torch::Tensor noise =
          torch::randn(in.z.sizes(), gen, torch::kFloat32).to(device_) * in.mask.unsqueeze(-1);
      const torch::Tensor sigma = torch::full({in.z.size(0)}, sigmas[k], in.z.options());
      const torch::Tensor v =
          m.velocity(models::flow_interpolate(in.z, noise, sigma), sigma, in.mask, in.condition.cond,
                     in.condition.cond_mask, in.prompt, in.condition.aligned, in.task);
      const double l = losses::masked_mse(v, models::flow_target(in.z, noise), in.loss_mask).item<double>();
      per_sigma[k] += l;
      batch_loss += l / static_cast<double>(sigmas.size());
    }
    if (in.task >= 0) add(std::string("val/") + kDiTTasks[in.task] + "/fm_loss", batch_loss);
    if (in.speech) {
      add("val/duration_loss", in.local_duration_loss.item<double>());
      add("val/global_duration_loss", in.global_duration_loss.item<double>());
      add("val/prior_loss", in.prior_loss.item<double>());
    }
    if (condition_cache_ && !in.speech && from_cache.size() < 2)
      for (int64_t i = 0; i < batch.size() && from_cache.size() < 2; ++i) {
        gen::GenerationRequest r;
        const int64_t frames = batch.feature_lengths[i].item<int64_t>();
        r.seconds = static_cast<double>(frames * cfg_.samples_per_token()) / cfg_.audio.sample_rate;
        r.condition = condition_cache_->read(batch.items[i].clip->key).at(dit_.condition.tensor);
        r.text = batch.items[i].clip->key;
        from_cache.push_back(r);
      }
    ++batches;
  }
  if (batches == 0) throw Error("dit: the validation set gave no batch");
  std::map<std::string, double> out;
  double total = 0;
  for (std::size_t k = 0; k < sigmas.size(); ++k) {
    out["val/fm_loss/sigma_" + sigma_label(sigmas[k])] = per_sigma[k] / batches;
    total += per_sigma[k] / batches;
  }
  out["val/fm_loss"] = total / static_cast<double>(sigmas.size());
  for (const auto& [key, sum_n] : extra) out[key] = sum_n.first / static_cast<double>(sum_n.second);

  // Generated samples of the fixed prompts.
  std::vector<gen::GenerationRequest> requests = from_cache;
  if (!condition_cache_)
    for (const auto& p : dit_.val_prompts) {
      gen::GenerationRequest r;
      r.text = p.text;
      r.seconds = p.seconds;
      r.task = p.task;
      r.speaker = p.speaker;
      if (dit_.joint() && r.task.empty()) continue;  // validate() cannot guess a task
      requests.push_back(r);
    }
  if (pipeline_->tokenizer() && !requests.empty() && !ctx.dir.empty()) {
    fs::create_directories(ctx.dir);
    const auto latents = pipeline_->generate(requests, dit_.sample);
    audio::LogMel mel(pipeline_->tokenizer_checkpoint().config.frontend.vocos);
    const int sr = cfg_.audio.sample_rate;
    for (std::size_t i = 0; i < latents.size(); ++i) {
      std::vector<float> wave = pipeline_->decode(latents[i]);
      const std::string stem = (fs::path(ctx.dir) / ("gen" + std::to_string(i))).string();
      audio::write_audio(stem + ".wav", wave.data(), static_cast<int64_t>(wave.size()), 1, sr, "pcm16");
      audio::write_spectrogram_png(
          stem + ".png",
          mel(torch::from_blob(wave.data(), {static_cast<int64_t>(wave.size())}, torch::kFloat32)));
      if (ctx.audio) ctx.audio("val/gen" + std::to_string(i), wave, sr);
    }
  }
  return out;
}

TensorMap DiTStage::model_state(bool) {
  ensure_statistics();
  return io::module_state(pipeline_->model());
}

void DiTStage::load_model_state(const TensorMap& tensors, const std::string& source, bool strict) {
  io::LoadOptions o;
  o.strict = strict;
  const io::LoadReport report = io::load_weights(pipeline_->model(), tensors, source, o);
  io::log_load_report(source, report);
  if (tensors.count("latent_std")) statistics_ready_ = true;
}

}  // namespace losatok::train
