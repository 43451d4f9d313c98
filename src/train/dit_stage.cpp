// The DiT stage and the generation pipeline it shares with `losatok generate`.
#include "losatok/train/dit_stage.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "losatok/audio/audio_io.h"
#include "losatok/audio/mel.h"
#include "losatok/audio/spectrogram_image.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/data/extract.h"
#include "losatok/io/weights.h"
#include "losatok/losses/tokenizer_losses.h"
#include "losatok/models/flow_matching.h"
#include "losatok/models/init.h"

namespace fs = std::filesystem;

namespace losatok::train {

namespace {

// Zero-padded (B, longest) int64 tokens and their (B, longest) mask.
std::pair<torch::Tensor, torch::Tensor> pad_tokens(const std::vector<std::vector<int64_t>>& rows,
                                                   int64_t fill, int64_t min_length) {
  int64_t longest = min_length;
  for (const auto& r : rows) longest = std::max<int64_t>(longest, static_cast<int64_t>(r.size()));
  torch::Tensor tokens = torch::full({static_cast<int64_t>(rows.size()), longest}, fill, torch::kLong);
  torch::Tensor mask = torch::zeros({static_cast<int64_t>(rows.size()), longest}, torch::kBool);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const int64_t n = std::min<int64_t>(longest, static_cast<int64_t>(rows[i].size()));
    if (n == 0) continue;
    tokens[i].narrow(0, 0, n).copy_(
        torch::tensor(std::vector<int64_t>(rows[i].begin(), rows[i].begin() + n)));
    mask[i].narrow(0, 0, n).fill_(true);
  }
  return {tokens, mask};
}

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

// ---------------------------------------------------------------------------------------------
// DiTPipeline

DiTPipeline::DiTPipeline(const RootConfig& cfg, const torch::Device& device, int cond_dim)
    : cfg_(cfg), device_(device) {
  const bool text = cfg.dit.condition.source == "text";
  model_ = models::DiTModel(cfg.dit.model, cfg.dit.text, text, cond_dim, cfg.dit.task == "tts");
  model_->to(device_);
  if (text) text_tokens_ = std::make_unique<data::TextTokenizer>(cfg.dit.text);
}

void DiTPipeline::load_tokenizer(const std::string& path) {
  tokenizer_ = models::load_tokenizer_checkpoint(path, device_);
  const int dim = tokenizer_.config.model.latent_dim();
  if (dim != cfg_.dit.model.latent_dim)
    throw ConfigError("dit.model.latent_dim", "the tokenizer " + tokenizer_.source + " makes " +
                                                  std::to_string(dim) + "-d latents, the DiT is built for " +
                                                  std::to_string(cfg_.dit.model.latent_dim));
}

DiTPipeline::Condition DiTPipeline::text_condition(const std::vector<std::string>& texts,
                                                   const torch::Tensor& frames) {
  if (!text_tokens_) throw Error("dit: this model is conditioned on cached embeddings, not on text");
  std::vector<std::vector<int64_t>> rows;
  for (const auto& t : texts) rows.push_back(text_tokens_->encode(t));
  Condition c;
  if (model_->tts) {
    // F5-TTS: the transcript stretched to the latent length with the filler token; the frames'
    // mask is the text's.
    const int64_t t = frames.size(1);
    for (auto& r : rows) r.resize(t, kTextFiller);  // cut, or filled
    torch::Tensor tokens = pad_tokens(rows, kTextPad, t).first.to(device_);
    c.cond_mask = frames.to(device_);
    c.cond = model_->text_encoder->forward(tokens, c.cond_mask);
    c.aligned = c.cond;
    return c;
  }
  auto [tokens, mask] = pad_tokens(rows, kTextPad, 1);
  c.cond_mask = mask.to(device_);
  c.cond = model_->text_encoder->forward(tokens.to(device_), c.cond_mask);
  return c;
}

DiTPipeline::Condition DiTPipeline::embedding_condition(const std::vector<torch::Tensor>& embeddings) {
  int64_t longest = 1;
  for (const auto& e : embeddings) longest = std::max(longest, e.size(0));
  const int64_t b = static_cast<int64_t>(embeddings.size());
  Condition c;
  c.cond = torch::zeros({b, longest, model_->cond_dim});
  c.cond_mask = torch::zeros({b, longest}, torch::kBool);
  for (int64_t i = 0; i < b; ++i) {
    const torch::Tensor& e = embeddings[i];
    if (e.dim() != 2 || e.size(1) != model_->cond_dim) {
      std::string shape;
      for (int64_t s : e.sizes()) shape += (shape.empty() ? "" : ", ") + std::to_string(s);
      throw Error("dit: condition embeddings must be (length, " + std::to_string(model_->cond_dim) +
                  "), got (" + shape + ")");
    }
    c.cond[i].narrow(0, 0, e.size(0)).copy_(e);
    c.cond_mask[i].narrow(0, 0, std::max<int64_t>(e.size(0), 1)).fill_(true);
  }
  c.cond = c.cond.to(device_);
  c.cond_mask = c.cond_mask.to(device_);
  return c;
}

int64_t DiTPipeline::frames_for(const GenerationRequest& r) {
  const double rate = static_cast<double>(cfg_.audio.sample_rate) / cfg_.samples_per_token();
  if (r.seconds > 0) return std::max<int64_t>(1, std::llround(r.seconds * rate));
  if (!model_->tts || !text_tokens_)
    throw Error("generate: give a duration in seconds for \"" + r.text.substr(0, 40) + "\"");
  const double tokens = static_cast<double>(text_tokens_->encode(r.text).size());
  double per_token = model_->frames_per_token.item<double>();
  if (!r.prompt_audio.empty() && !r.prompt_text.empty()) {
    // The prompt's own speaking rate (F5-TTS).
    const double prompt_frames = static_cast<double>(r.prompt_audio.size()) / cfg_.samples_per_token();
    per_token = prompt_frames / static_cast<double>(text_tokens_->encode(r.prompt_text).size());
  }
  return std::max<int64_t>(1, std::llround(tokens * per_token));
}

torch::Tensor DiTPipeline::encode_prompt(const std::vector<float>& audio) {
  if (!tokenizer()) throw Error("generate: an audio prompt needs the tokenizer (dit.tokenizer_checkpoint)");
  const int64_t spt = tokenizer()->samples_per_token();
  if (static_cast<int64_t>(audio.size()) < spt)
    throw Error("generate: the audio prompt is shorter than one token");
  torch::NoGradGuard no_grad;
  const torch::Tensor wave = torch::from_blob(const_cast<float*>(audio.data()),
                                              {1, static_cast<int64_t>(audio.size())}, torch::kFloat32)
                                 .clone()
                                 .to(device_);
  const torch::Tensor lengths = torch::tensor({static_cast<int64_t>(audio.size())}, torch::kLong).to(device_);
  const models::VaeFeatures f = tokenizer()->encode(wave, lengths);
  const int64_t frames = static_cast<int64_t>(audio.size()) / spt;
  return model_->normalize(f.mu[0].narrow(0, 0, std::min(frames, f.mu.size(1))));
}

std::vector<torch::Tensor> DiTPipeline::generate(const std::vector<GenerationRequest>& requests,
                                                 const SamplerConfig& sampler) {
  torch::NoGradGuard no_grad;
  const int64_t b = static_cast<int64_t>(requests.size());
  if (b == 0) return {};
  const int64_t d = cfg_.dit.model.latent_dim;
  std::vector<torch::Tensor> prompts(b);
  std::vector<int64_t> prompt_frames(b, 0), total(b);
  std::vector<std::string> texts(b);
  for (int64_t i = 0; i < b; ++i) {
    const GenerationRequest& r = requests[i];
    texts[i] = r.text;
    if (!r.prompt_audio.empty() && !model_->tts)
      throw Error("generate: an audio prompt needs a TTS model (this one is " + cfg_.dit.task + ")");
    if (model_->tts && !r.prompt_audio.empty()) {
      // Training aligned each clip's whole transcript over all its frames, prompt included.
      if (r.prompt_text.empty())
        throw Error("generate: an audio prompt needs its transcript (--prompt-text)");
      prompts[i] = encode_prompt(r.prompt_audio);
      prompt_frames[i] = prompts[i].size(0);
      texts[i] = r.prompt_text + " " + r.text;
    }
    total[i] = prompt_frames[i] + frames_for(r);
  }
  const int64_t t = *std::max_element(total.begin(), total.end());
  const torch::Tensor mask =
      (torch::arange(t).unsqueeze(0) < torch::tensor(total, torch::kLong).unsqueeze(1)).to(device_);
  Condition c;
  if (requests[0].condition.defined()) {
    std::vector<torch::Tensor> emb;
    for (const auto& r : requests) {
      if (!r.condition.defined()) throw Error("generate: every request needs condition embeddings, or none");
      emb.push_back(r.condition.to(torch::kFloat32).cpu());
    }
    c = embedding_condition(emb);
  } else {
    c = text_condition(texts, mask);
  }
  torch::Tensor prompt;
  if (model_->tts) {
    prompt = torch::zeros({b, t, d});
    for (int64_t i = 0; i < b; ++i)
      if (prompt_frames[i] > 0) prompt[i].narrow(0, 0, prompt_frames[i]).copy_(prompts[i].cpu());
    prompt = prompt.to(device_);
  }
  // The unconditional half of classifier-free guidance: null condition, no text, no prompt.
  const torch::Tensor drop_all = torch::ones({b}, torch::kBool);
  const torch::Tensor cond_u = model_->drop_condition(c.cond, drop_all);
  const bool guided = sampler.cfg_scale != 1.0;
  const torch::Tensor mask2 = guided ? torch::cat({mask, mask}) : mask;
  const torch::Tensor cond2 = guided ? torch::cat({c.cond, cond_u}) : c.cond;
  const torch::Tensor cond_mask2 = guided ? torch::cat({c.cond_mask, c.cond_mask}) : c.cond_mask;
  torch::Tensor prompt2, aligned2;
  if (model_->tts) {
    prompt2 = guided ? torch::cat({prompt, torch::zeros_like(prompt)}) : prompt;
    aligned2 = guided ? torch::cat({c.aligned, torch::zeros_like(c.aligned)}) : c.aligned;
  }
  at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(sampler.seed));
  torch::Tensor x = torch::randn({b, t, d}, gen, torch::kFloat32).to(device_) * mask.unsqueeze(-1);
  const auto velocity = [&](const torch::Tensor& xs, double sigma) {
    const torch::Tensor x2 = guided ? torch::cat({xs, xs}) : xs;
    const torch::Tensor s = torch::full({x2.size(0)}, sigma, x2.options());
    const torch::Tensor v = model_->velocity(x2, s, mask2, cond2, cond_mask2, prompt2, aligned2);
    if (!guided) return v;
    return models::classifier_free_guidance(v.narrow(0, 0, b), v.narrow(0, b, b), sampler.cfg_scale);
  };
  x = models::euler_sample(x, models::sigma_schedule(sampler.steps, sampler.sway), velocity);
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < b; ++i)
    out.push_back(model_->denormalize(x[i].narrow(0, prompt_frames[i], total[i] - prompt_frames[i])).cpu());
  return out;
}

std::vector<float> DiTPipeline::decode(const torch::Tensor& latents) {
  if (!tokenizer()) throw Error("generate: decoding needs the tokenizer (dit.tokenizer_checkpoint)");
  torch::NoGradGuard no_grad;
  const torch::Tensor wave =
      tokenizer()->decode(latents.to(device_, torch::kFloat32).unsqueeze(0))[0].to(torch::kCPU).contiguous();
  return std::vector<float>(wave.data_ptr<float>(), wave.data_ptr<float>() + wave.numel());
}

// ---------------------------------------------------------------------------------------------
// DiTStage

DiTStage::DiTStage(const RootConfig& cfg, const torch::Device& device) : cfg_(cfg), device_(device) {
  if (cfg.data.cache_dir.empty())
    throw ConfigError("data.cache_dir",
                      "the dit stage trains on tokenizer latents: fill a cache with "
                      "`losatok extract --what latents --checkpoint TOKENIZER` and name it here");
  int cond_dim = 0;
  if (cfg.dit.condition.source == "cache") {
    const std::string& dir = cfg.dit.condition.cache_dir;
    condition_cache_ = std::make_shared<data::FeatureCache>(dir, data::CacheProducer{});
    if (condition_cache_->producer().what != "condition")
      throw ConfigError("dit.condition.cache_dir", "'" + dir + "' holds " +
                                                       condition_cache_->producer().what +
                                                       " features, not condition embeddings (producer "
                                                       "`condition`)");
    const auto keys = condition_cache_->keys();
    if (keys.empty()) throw ConfigError("dit.condition.cache_dir", "'" + dir + "' holds no clip");
    const auto first = condition_cache_->read(keys.front());
    const auto it = first.find(cfg.dit.condition.tensor);
    if (it == first.end())
      throw ConfigError("dit.condition.tensor",
                        "'" + cfg.dit.condition.tensor + "' is not in the cache '" + dir + "'");
    if (it->second.dim() != 2)
      throw ConfigError("dit.condition.tensor", "'" + cfg.dit.condition.tensor + "' in '" + dir +
                                                    "' must be (length, width) per clip");
    cond_dim = static_cast<int>(it->second.size(1));
  }
  pipeline_ = std::make_unique<DiTPipeline>(cfg, device, cond_dim);
  if (!cfg.dit.tokenizer_checkpoint.empty())
    pipeline_->load_tokenizer(cfg.dit.tokenizer_checkpoint);
  else
    spdlog::warn(
        "dit.tokenizer_checkpoint is empty: the latents cache's producer is not checked and "
        "validation generates no audio");
  spdlog::info("DiT: {:.2f} M parameters ({} task, {} condition)",
               models::count_parameters(pipeline_->model()) / 1e6, cfg.dit.task, cfg.dit.condition.source);
  set_training(true);
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
    const std::size_t n = std::min<std::size_t>(present.size(), cfg_.dit.norm_max_clips);
    for (std::size_t i = 0; i < n; ++i) chosen.push_back(present[i * present.size() / n]);
  }
  const int64_t d = cfg_.dit.model.latent_dim;
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
    if (cfg_.dit.sample_latent)
      if (const auto lv = t.find("logvar"); lv != t.end())
        noise_var += lv->second.to(torch::kFloat64).exp().sum(0);
    frames += mu.size(0);
    if (cfg_.dit.task == "tts" && !c->entry.text.empty()) {
      text_tokens += static_cast<int64_t>(pipeline_->tokens(c->entry.text).size());
      text_frames += mu.size(0);
    }
  }
  const torch::Tensor mean = sum / frames;
  const torch::Tensor var = (sumsq / frames - mean.pow(2) + noise_var / frames).clamp_min(1e-8);
  auto& m = pipeline_->model();
  {
    torch::NoGradGuard no_grad;
    m.latent_mean.copy_(mean.to(torch::kFloat32));
    m.latent_std.copy_(var.sqrt().to(torch::kFloat32));
    if (text_tokens > 0) m.frames_per_token.fill_(static_cast<double>(text_frames) / text_tokens);
  }
  spdlog::info(
      "latent statistics from {} training clips ({} frames): mean of |mean| {:.3f}, std {:.3f}..{:.3f}{}",
      chosen.size(), frames, mean.abs().mean().item<double>(), var.sqrt().min().item<double>(),
      var.sqrt().max().item<double>(),
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

DiTStage::Inputs DiTStage::inputs(const data::Batch& batch, bool sample) {
  const auto it = batch.features.find("mu");
  if (it == batch.features.end())
    throw Error("dit: the batch has no cached latents 'mu' (data.cache_dir must hold `--what latents`)");
  auto& m = pipeline_->model();
  Inputs in;
  torch::Tensor z = it->second.to(device_, torch::kFloat32);
  in.mask = batch.feature_mask().to(device_);
  if (sample)
    if (const auto lv = batch.features.find("logvar"); lv != batch.features.end())
      z = z + torch::exp(0.5 * lv->second.to(device_, torch::kFloat32)) * torch::randn_like(z);
  in.z = m.normalize(z) * in.mask.unsqueeze(-1);
  if (condition_cache_) {
    std::vector<torch::Tensor> emb;
    for (const auto& item : batch.items) {
      const auto t = condition_cache_->read(item.clip->key);
      const auto c = t.find(cfg_.dit.condition.tensor);
      if (c == t.end())
        throw Error("condition cache '" + cfg_.dit.condition.cache_dir + "': clip " + item.clip->key +
                    " has no '" + cfg_.dit.condition.tensor + "'");
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

void DiTStage::apply_conditioning(Inputs& in, const data::Batch& batch, torch::Tensor drop,
                                  const torch::Tensor& prompt_keep, bool random_span) {
  auto& m = pipeline_->model();
  in.loss_mask = in.mask;
  if (m.tts) {
    // A clip longer than data.max_seconds was cropped: its transcript no longer matches, so it
    // trains (and validates) without text, as a dropped condition.
    int64_t cropped = 0;
    auto flags = drop.accessor<bool, 1>();
    for (int64_t i = 0; i < batch.size(); ++i) {
      const auto& item = batch.items[i];
      if (item.offset > 0 ||
          batch.feature_lengths[i].item<int64_t>() < latents_->clip(item.clip->key).frames) {
        flags[i] = true;
        ++cropped;
      }
    }
    if (cropped > 0 && cropped_clips_ == 0)
      spdlog::warn("tts: clips longer than data.max_seconds are cropped and train without their transcript");
    cropped_clips_ += cropped;
  }
  in.condition.cond = m.drop_condition(in.condition.cond, drop);
  if (!m.tts) return;
  const torch::Tensor keep = drop.logical_not().to(device_).view({-1, 1, 1}).to(in.z.scalar_type());
  in.condition.aligned = in.condition.aligned * keep;  // dropped rows: no text at all
  const torch::Tensor infill =
      infill_mask(batch.feature_lengths.cpu(), in.z.size(1), cfg_.dit.flow, random_span).to(device_);
  torch::Tensor prompt = in.z * infill.logical_not().unsqueeze(-1) * keep;
  if (prompt_keep.defined())
    prompt = prompt * prompt_keep.to(device_).view({-1, 1, 1}).to(in.z.scalar_type());
  in.prompt = prompt;
  in.loss_mask = infill.logical_and(in.mask);
}

StepOutput DiTStage::train_step(std::size_t, const data::Batch& batch, int64_t) {
  ensure_statistics();
  auto& m = pipeline_->model();
  const FlowConfig& flow = cfg_.dit.flow;
  Inputs in = inputs(batch, cfg_.dit.sample_latent);
  const int64_t b = in.z.size(0);
  // Random draws on the CPU generator in a fixed order: resumable bitwise.
  const torch::Tensor drop = torch::rand({b}, torch::kFloat64) < flow.cond_dropout;
  torch::Tensor prompt_keep;
  if (m.tts) prompt_keep = torch::rand({b}, torch::kFloat64) >= flow.prompt_dropout;
  apply_conditioning(in, batch, drop, prompt_keep, /*random_span=*/true);
  const torch::Tensor sigma = models::sample_sigmas(b, flow, in.z.options());
  const torch::Tensor noise = torch::randn_like(in.z) * in.mask.unsqueeze(-1);
  const torch::Tensor x = models::flow_interpolate(in.z, noise, sigma);
  const torch::Tensor v = m.velocity(x, sigma, in.mask, in.condition.cond, in.condition.cond_mask, in.prompt,
                                     in.condition.aligned);
  StepOutput out;
  out.loss = losses::masked_mse(v, models::flow_target(in.z, noise), in.loss_mask);
  out.metrics["loss"] = out.loss.detach();
  return out;
}

std::map<std::string, double> DiTStage::validate(const std::function<bool(data::Batch&)>& next,
                                                 const ValidationContext& ctx) {
  ensure_statistics();
  torch::NoGradGuard no_grad;
  auto& m = pipeline_->model();
  const auto& sigmas = cfg_.dit.val_sigmas;
  std::vector<double> per_sigma(sigmas.size(), 0.0);
  int64_t batches = 0;
  std::vector<GenerationRequest> from_cache;  // cache-conditioned models generate for clips' embeddings
  // The same noise at every validation: the loss curve compares like with like.
  at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(cfg_.seed) + 7919);
  data::Batch batch;
  while (next(batch)) {
    Inputs in = inputs(batch, /*sample=*/false);
    apply_conditioning(in, batch, torch::zeros({in.z.size(0)}, torch::kBool), {}, /*random_span=*/false);
    for (std::size_t k = 0; k < sigmas.size(); ++k) {
      const torch::Tensor noise =
          torch::randn(in.z.sizes(), gen, torch::kFloat32).to(device_) * in.mask.unsqueeze(-1);
      const torch::Tensor sigma = torch::full({in.z.size(0)}, sigmas[k], in.z.options());
      const torch::Tensor v =
          m.velocity(models::flow_interpolate(in.z, noise, sigma), sigma, in.mask, in.condition.cond,
                     in.condition.cond_mask, in.prompt, in.condition.aligned);
      per_sigma[k] += losses::masked_mse(v, models::flow_target(in.z, noise), in.loss_mask).item<double>();
    }
    if (condition_cache_ && from_cache.size() < 2)
      for (int64_t i = 0; i < batch.size() && from_cache.size() < 2; ++i) {
        GenerationRequest r;
        const int64_t frames = batch.feature_lengths[i].item<int64_t>();
        r.seconds = static_cast<double>(frames * cfg_.samples_per_token()) / cfg_.audio.sample_rate;
        r.condition = condition_cache_->read(batch.items[i].clip->key).at(cfg_.dit.condition.tensor);
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

  // Generated samples of the fixed prompts.
  std::vector<GenerationRequest> requests = from_cache;
  if (!condition_cache_)
    for (const auto& p : cfg_.dit.val_prompts) {
      GenerationRequest r;
      r.text = p.text;
      r.seconds = p.seconds;
      requests.push_back(r);
    }
  if (pipeline_->tokenizer() && !requests.empty() && !ctx.dir.empty()) {
    fs::create_directories(ctx.dir);
    const auto latents = pipeline_->generate(requests, cfg_.dit.sample);
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
