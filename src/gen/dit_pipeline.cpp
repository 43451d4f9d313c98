// The generation pipeline of a DiT and loading a DiT checkpoint.
#include "losatok/gen/dit_pipeline.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/models/flow_matching.h"
#include "losatok/models/init.h"
#include "losatok/models/tts.h"

namespace losatok::gen {

namespace fs = std::filesystem;

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

}  // namespace

DiTPipeline::DiTPipeline(const RootConfig& cfg, const torch::Device& device, int cond_dim)
    : cfg_(cfg), dit_(cfg.section<DiTStageConfig>()), device_(device) {
  const bool phonemes_only = dit_.phonemes_only();
  if (!phonemes_only && dit_.condition.source == "t5") {
    t5_ = std::make_unique<models::T5TextEncoder>(dit_.condition.text_encoder, device_,
                                                  dit_.condition.max_tokens);
    cond_dim = t5_->dim();
  }
  model_ = models::DiTModel(dit_, cond_dim);
  model_->to(device_);
  if (!phonemes_only && dit_.condition.source == "text")
    text_tokens_ = std::make_unique<data::TextTokenizer>(dit_.text);
  if (dit_.uniflow_tts())
    phonemes_ = std::make_unique<data::PhonemeTokenizer>(dit_.tts.phonemes, dit_.text.espeak_voice);
}

int64_t speaker_row(const std::string& name, int rows) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return static_cast<int64_t>(h % static_cast<uint64_t>(rows));
}

int DiTPipeline::task_index(const std::string& task) const {
  if (!model_->joint) {
    if (!task.empty() && task != dit_.task)
      throw Error("generate: this model does " + dit_.task + ", not " + task);
    return -1;
  }
  const int t = dit_task_index(task);
  if (t < 0)
    throw Error("generate: the joint model needs each prompt's task (tta, ttm or tts), got '" + task + "'");
  return t;
}

DiTPipeline::SpeechInputs DiTPipeline::speech_inputs(const std::vector<std::string>& texts,
                                                     const std::vector<std::string>& phonemes,
                                                     const std::vector<std::string>& speaker_names,
                                                     const std::vector<torch::Tensor>& speaker_vectors) {
  if (!phonemes_) throw Error("dit: this model has no phoneme path (dit.tts.mode uniflow)");
  const int64_t b = static_cast<int64_t>(texts.size());
  std::vector<std::vector<data::PhonemeUnit>> rows;
  int64_t longest = 1, widest = 1;
  SpeechInputs out;
  for (int64_t i = 0; i < b; ++i) {
    std::vector<data::PhonemeUnit> u =
        phonemes_->units(texts[i], i < static_cast<int64_t>(phonemes.size()) ? phonemes[i] : std::string());
    if (u.empty()) u.push_back({data::kPhonemeWordStart});  // an empty text: one silent phoneme
    longest = std::max<int64_t>(longest, static_cast<int64_t>(u.size()));
    for (const auto& p : u) widest = std::max<int64_t>(widest, static_cast<int64_t>(p.size()));
    out.phonemes.push_back(static_cast<int64_t>(u.size()));
    rows.push_back(std::move(u));
  }
  torch::Tensor units = torch::zeros({b, longest, widest}, torch::kLong);
  torch::Tensor mask = torch::zeros({b, longest}, torch::kBool);
  auto ua = units.accessor<int64_t, 3>();
  auto ma = mask.accessor<bool, 2>();
  for (int64_t i = 0; i < b; ++i)
    for (std::size_t k = 0; k < rows[i].size(); ++k) {
      ma[i][static_cast<int64_t>(k)] = true;
      for (std::size_t j = 0; j < rows[i][k].size(); ++j)
        ua[i][static_cast<int64_t>(k)][static_cast<int64_t>(j)] = rows[i][k][j];
    }
  out.units = to_device(units, device_);
  out.mask = to_device(mask, device_);
  const SpeakerConfig& sc = dit_.tts.speaker;
  if (sc.source == "table") {
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < b; ++i)
      ids.push_back(speaker_row(i < static_cast<int64_t>(speaker_names.size()) ? speaker_names[i] : "",
                                sc.max_speakers));
    out.speaker = to_device(torch::tensor(ids, torch::kLong), device_);
  } else if (sc.source == "cache") {
    if (static_cast<int64_t>(speaker_vectors.size()) != b)
      throw Error("tts: every clip or prompt needs a speaker vector (dit.tts.speaker.source cache)");
    std::vector<torch::Tensor> v;
    for (const auto& t : speaker_vectors) {
      const torch::Tensor flat = t.reshape({-1}).to(torch::kFloat32);
      if (flat.numel() != sc.dim)
        throw Error("tts: a speaker vector has " + std::to_string(flat.numel()) +
                    " values, dit.tts.speaker.dim is " + std::to_string(sc.dim));
      v.push_back(flat);
    }
    out.speaker = torch::stack(v).to(device_);
  }
  return out;
}

void DiTPipeline::load_tokenizer(const std::string& path) {
  set_tokenizer(models::load_tokenizer_checkpoint(path, device_));
}

void DiTPipeline::set_tokenizer(models::LoadedTokenizer tokenizer) {
  tokenizer_ = std::move(tokenizer);
  const int dim = tokenizer_.config.model.latent_dim();
  if (dim != dit_.model.latent_dim)
    throw ConfigError("dit.model.latent_dim", "the tokenizer " + tokenizer_.source + " makes " +
                                                  std::to_string(dim) + "-d latents, the DiT is built for " +
                                                  std::to_string(dit_.model.latent_dim));
}

DiTPipeline::Condition DiTPipeline::text_condition(const std::vector<std::string>& texts,
                                                   const torch::Tensor& frames) {
  if (t5_) {
    const models::T5TextEncoder::Encoding e = t5_->encode(texts);
    Condition c;
    c.cond = e.hidden;
    c.cond_mask = e.mask;
    return c;
  }
  if (!text_tokens_) throw Error("dit: this model is conditioned on cached embeddings, not on text");
  std::vector<std::vector<int64_t>> rows;
  for (const auto& t : texts) rows.push_back(text_tokens_->encode(t));
  Condition c;
  if (model_->tts) {
    // F5-TTS: the transcript stretched to the latent length with the filler token; the frames'
    // mask is the text's.
    const int64_t t = frames.size(1);
    for (auto& r : rows) r.resize(t, kTextFiller);  // cut, or filled
    torch::Tensor tokens = to_device(pad_tokens(rows, kTextPad, t).first, device_);
    c.cond_mask = to_device(frames, device_);
    c.cond = model_->text_encoder->forward(tokens, c.cond_mask);
    c.aligned = c.cond;
    return c;
  }
  auto [tokens, mask] = pad_tokens(rows, kTextPad, 1);
  c.cond_mask = to_device(mask, device_);
  c.cond = model_->text_encoder->forward(to_device(tokens, device_), c.cond_mask);
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
  const double rate = cfg_.token_rate();
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
  if (!model_->joint) {
    for (const auto& r : requests) task_index(r.task);  // a wrong task is an error
    return generate_task(requests, sampler, -1);
  }
  // The joint model samples each task's requests together.
  std::vector<torch::Tensor> out(requests.size());
  for (int task = 0; task < kNumDiTTasks; ++task) {
    std::vector<std::size_t> at;
    std::vector<GenerationRequest> group;
    for (std::size_t i = 0; i < requests.size(); ++i)
      if (task_index(requests[i].task) == task) {
        at.push_back(i);
        group.push_back(requests[i]);
      }
    if (group.empty()) continue;
    const auto made = generate_task(group, sampler, task);
    for (std::size_t k = 0; k < at.size(); ++k) out[at[k]] = made[k];
  }
  return out;
}

std::vector<torch::Tensor> DiTPipeline::generate_task(const std::vector<GenerationRequest>& requests,
                                                      const SamplerConfig& sampler, int task) {
  torch::NoGradGuard no_grad;
  const int64_t b = static_cast<int64_t>(requests.size());
  if (b == 0) return {};
  const bool speech = model_->uniflow && (!model_->joint || task == dit_task_index("tts"));
  const double rate = cfg_.token_rate();
  const int64_t d = dit_.model.latent_dim;
  std::vector<torch::Tensor> prompts(b);
  std::vector<int64_t> prompt_frames(b, 0), total(b);
  std::vector<std::string> texts(b);
  for (int64_t i = 0; i < b; ++i) {
    const GenerationRequest& r = requests[i];
    texts[i] = r.text;
    if (!r.prompt_audio.empty() && !model_->tts)
      throw Error("generate: an audio prompt needs an infilling TTS model (this one is " + dit_.task +
                  (speech ? " with UniFlow's phoneme path: give a speaker instead)" : ")"));
    if (model_->tts && !r.prompt_audio.empty()) {
      // Training aligned each clip's whole transcript over all its frames, prompt included.
      if (r.prompt_text.empty())
        throw Error("generate: an audio prompt needs its transcript (--prompt-text)");
      prompts[i] = encode_prompt(r.prompt_audio);
      prompt_frames[i] = prompts[i].size(0);
      texts[i] = r.prompt_text + " " + r.text;
    }
    if (!speech) total[i] = prompt_frames[i] + frames_for(r);
  }
  // UniFlow TTS: the phoneme encodings, their durations (the global prediction, or the request's
  // seconds, shared out by the local ones) and the encodings expanded to the frames.
  Condition speech_condition;
  torch::Tensor durations;
  if (speech) {
    std::vector<std::string> phonemes, names;
    std::vector<torch::Tensor> vectors;
    std::set<std::string> unknown;
    for (const auto& r : requests) {
      phonemes.push_back(r.phonemes);
      names.push_back(r.speaker);
      if (r.speaker_embedding.defined()) vectors.push_back(r.speaker_embedding);
      if (dit_.tts.speaker.source == "table" && !known_speakers_.empty() &&
          std::find(known_speakers_.begin(), known_speakers_.end(), r.speaker) == known_speakers_.end())
        unknown.insert(r.speaker);
    }
    for (const auto& name : unknown)
      spdlog::warn("generate: speaker '{}' was not in the training data (its table row is untrained)", name);
    const SpeechInputs si = speech_inputs(texts, phonemes, names, vectors);
    const auto o = model_->speech().forward(si.units, si.mask, si.speaker);
    durations = torch::zeros(si.mask.sizes(), torch::kLong);
    for (int64_t i = 0; i < b; ++i) {
      const int64_t p = si.phonemes[i];
      int64_t want = 0;
      if (requests[i].seconds > 0)
        want = std::llround(requests[i].seconds * rate);
      else if (dit_.tts.use_global_duration)
        want = std::llround(std::max(0.0, std::exp(o.log_seconds[i].item<double>()) - 1.0) * rate);
      const std::vector<int64_t> d =
          models::durations_from_log(o.log_durations[i].narrow(0, 0, p), want > 0 ? std::max(want, p) : 0);
      durations[i].narrow(0, 0, p).copy_(torch::tensor(d, torch::kLong));
      total[i] = std::accumulate(d.begin(), d.end(), int64_t{0});
    }
    speech_condition.cond = o.content;
    speech_condition.cond_mask = si.mask;
  }
  const int64_t t = *std::max_element(total.begin(), total.end());
  const torch::Tensor mask =
      (torch::arange(t).unsqueeze(0) < torch::tensor(total, torch::kLong).unsqueeze(1)).to(device_);
  Condition c;
  if (speech) {
    c = speech_condition;
    c.aligned = models::length_regulate(c.cond, durations, t);
  } else if (requests[0].condition.defined()) {
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
  if (model_->tts) prompt2 = guided ? torch::cat({prompt, torch::zeros_like(prompt)}) : prompt;
  if (c.aligned.defined())
    aligned2 = guided ? torch::cat({c.aligned, torch::zeros_like(c.aligned)}) : c.aligned;
  at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(sampler.seed));
  torch::Tensor x = torch::randn({b, t, d}, gen, torch::kFloat32).to(device_) * mask.unsqueeze(-1);
  const auto velocity = [&](const torch::Tensor& xs, double sigma) {
    const torch::Tensor x2 = guided ? torch::cat({xs, xs}) : xs;
    const torch::Tensor s = torch::full({x2.size(0)}, sigma, x2.options());
    const torch::Tensor v = model_->velocity(x2, s, mask2, cond2, cond_mask2, prompt2, aligned2, task);
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

namespace {

// The checksum a checkpoint's progress.json records for `file`, else the file's own.
std::string recorded_or_computed_xxh64(const std::string& file) {
  const std::string recorded = io::recorded_checksum(file);
  return recorded.empty() ? file_xxh64(file) : recorded;
}

}  // namespace

std::string tokenizer_record(const std::string& path, const std::string& run_dir) {
  const fs::path file = fs::weakly_canonical(io::resolve_weights_path(path));
  nlohmann::json j = {
      {"path", file.string()},
      {"run_dir_relative", fs::relative(file, fs::weakly_canonical(fs::absolute(run_dir))).string()},
      {"xxh64", recorded_or_computed_xxh64(file.string())}};
  return j.dump();
}

std::string find_dit_tokenizer(const io::WeightSet& weights, const DiTStageConfig& dit) {
  for (const auto& [name, t] : weights.tensors)
    if (name.rfind(kTokenizerPrefix, 0) == 0) return "";
  std::vector<std::string> tried;
  std::string recorded_sum;
  const auto found = [&](const std::string& candidate) {
    std::error_code ec;
    if (candidate.empty()) return false;
    tried.push_back(candidate);
    return fs::exists(candidate, ec);
  };
  std::string hit;
  if (const auto it = weights.metadata.find(kTokenizerKey); it != weights.metadata.end()) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(it->second);
    } catch (const std::exception& e) {
      throw Error("checkpoint '" + weights.source + "': unreadable " + kTokenizerKey + " (" +
                  first_line(e.what()) + ")");
    }
    recorded_sum = j.value("xxh64", std::string());
    // checkpoints/step-N/<file> (or checkpoints/best/<file>) -> the run_dir.
    const fs::path run_dir = fs::path(weights.source).parent_path().parent_path().parent_path();
    const std::string abs = j.value("path", std::string()), rel = j.value("run_dir_relative", std::string());
    if (found(abs))
      hit = abs;
    else if (!rel.empty() && found((run_dir / rel).lexically_normal().string()))
      hit = (run_dir / rel).lexically_normal().string();
  }
  if (hit.empty() && found(dit.tokenizer_checkpoint)) hit = dit.tokenizer_checkpoint;
  if (hit.empty()) {
    if (tried.empty()) return "";  // no tokenizer at all: latents only
    std::string list;
    for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
    throw Error("the tokenizer of DiT checkpoint '" + weights.source + "' is not found (tried " + list +
                "): give --tokenizer CHECKPOINT, or `losatok export` the DiT where its tokenizer is (the "
                "export carries it)");
  }
  if (!recorded_sum.empty()) {
    const std::string file = io::resolve_weights_path(hit);
    const std::string sum = recorded_or_computed_xxh64(file);
    if (sum != recorded_sum)
      spdlog::warn("tokenizer {} is not the one DiT checkpoint {} was trained with (xxh64 {}, recorded {})",
                   file, weights.source, sum, recorded_sum);
  }
  return hit;
}

YAML::Node dit_checkpoint_config(const io::WeightSet& weights) {
  const YAML::Node base = models::checkpoint_config(weights);
  if (!base.IsMap() || !base["stage"] || base["stage"].as<std::string>() != "dit" || !base["dit"])
    throw Error("checkpoint '" + weights.source + "' is not a DiT (its metadata carries no dit config)");
  return base;
}

LoadedDiT load_dit_checkpoint(const io::WeightSet& weights, const RootConfig& config,
                              const torch::Device& device, bool strict, const std::string& tokenizer) {
  LoadedDiT out;
  out.config = config;
  out.source = weights.source;
  const DiTStageConfig& dit = out.config.section<DiTStageConfig>();
  int cond_dim = 0;
  if (dit.condition.source == "cache") {
    const auto it = weights.tensors.find("dit.context_embed.0.weight");  // (width, cond_dim)
    if (it == weights.tensors.end() || it->second.dim() != 2)
      throw Error("checkpoint '" + weights.source +
                  "' has no dit.context_embed.0.weight (not a DiT of this version?)");
    cond_dim = static_cast<int>(it->second.size(1));
  }
  {
    const models::SkipInit skip;  // every weight comes from the checkpoint
    out.pipeline = std::make_unique<DiTPipeline>(out.config, device, cond_dim);
  }
  // An exported DiT carries its tokenizer under tokenizer.*.
  io::TensorMap own;
  io::WeightSet embedded;
  for (const auto& [name, t] : weights.tensors) {
    if (name.rfind(kTokenizerPrefix, 0) == 0)
      embedded.tensors[name.substr(std::string(kTokenizerPrefix).size())] = t;
    else
      own[name] = t;
  }
  io::LoadOptions lo;
  lo.strict = strict;
  const io::LoadReport report = io::load_weights(out.pipeline->model(), own, weights.source, lo);
  io::log_load_report(weights.source, report);
  out.pipeline->model().eval();
  if (const auto it = weights.metadata.find(kSpeakersKey); it != weights.metadata.end()) {
    try {
      out.pipeline->set_known_speakers(nlohmann::json::parse(it->second).get<std::vector<std::string>>());
    } catch (const std::exception& e) {
      throw Error("checkpoint '" + weights.source + "': unreadable " + kSpeakersKey + " (" +
                  first_line(e.what()) + ")");
    }
  }
  if (!tokenizer.empty()) {
    out.pipeline->load_tokenizer(tokenizer);
  } else if (!embedded.tensors.empty()) {
    const auto it = weights.metadata.find(kTokenizerConfigKey);
    if (it == weights.metadata.end())
      throw Error("checkpoint '" + weights.source + "' embeds tokenizer.* tensors without " +
                  kTokenizerConfigKey);
    embedded.metadata[kConfigMetadataKey] = it->second;
    embedded.source = weights.source + " (embedded tokenizer)";
    out.pipeline->set_tokenizer(models::load_tokenizer_weights(embedded, device));
  } else if (const std::string tok = find_dit_tokenizer(weights, dit); !tok.empty()) {
    out.pipeline->load_tokenizer(tok);
  }
  return out;
}

}  // namespace losatok::gen
