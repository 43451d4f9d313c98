// `losatok generate`: DiT sampling (Euler, sway, classifier-free guidance) + tokenizer decoding
// to WAV, for one text or a JSON Lines file of prompts.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "losatok/audio/audio_io.h"
#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/gen/dit_pipeline.h"
#include "losatok/models/init.h"
#include "model_setup.h"

namespace fs = std::filesystem;

namespace losatok::cli {

namespace {

struct GenerateOptions {
  ModelOptions model;
  ConfigOptions config;
  std::vector<std::string> texts;
  std::string prompts, out, out_dir, tokenizer, prompt_audio, prompt_text, condition;
  std::string speaker, speaker_embedding, phonemes, task;
  double seconds = 0;
  int steps = 0, batch_size = 8;
  double cfg_scale = 0, sway = 0;
  int64_t seed = 0;
  // Which of --steps / --cfg / --sway / --seed were given (else the checkpoint's dit.sample).
  const CLI::Option *steps_opt = nullptr, *cfg_opt = nullptr, *sway_opt = nullptr, *seed_opt = nullptr;
};

// The bytes of memory a sampling batch of `frames` latent frames needs for its attention scores
// (the math path: batch x 2 for guidance x heads x T x T floats, with the softmax's copy).
double attention_bytes(const DiTConfig& m, int64_t frames, int batch) {
  return 2.0 * batch * 2.0 * m.heads * static_cast<double>(frames) * static_cast<double>(frames) * 4.0;
}

// MemAvailable of /proc/meminfo in bytes, 0 when unknown.
double available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024.0;
  return 0;
}

// Every sampling option given on the command line, checked with a message naming it.
void check_generate_options(const GenerateOptions& o, const SamplerConfig& sampler) {
  if (!std::isfinite(o.seconds) || o.seconds < 0)
    throw Error("--seconds must be a finite number >= 0 (0 = estimated from the text), got " +
                fmt::format("{:g}", o.seconds));
  if (o.seconds > sampler.max_seconds)
    throw Error("--seconds " + fmt::format("{:g}", o.seconds) + " is more than dit.sample.max_seconds (" +
                fmt::format("{:g}", sampler.max_seconds) +
                "): raise it (dit.sample.max_seconds=S) to generate longer clips");
  if (o.steps_opt->count() && (o.steps < 1 || o.steps > SamplerConfig::kMaxSteps))
    throw Error("--steps must be in [1, " + std::to_string(SamplerConfig::kMaxSteps) + "], got " +
                std::to_string(o.steps));
  if (o.cfg_opt->count() && !(o.cfg_scale >= 0 && o.cfg_scale <= SamplerConfig::kMaxCfgScale))
    throw Error("--cfg must be a guidance scale in [0, " +
                std::to_string(static_cast<int>(SamplerConfig::kMaxCfgScale)) + "] (1 = none), got " +
                fmt::format("{:g}", o.cfg_scale));
  if (o.sway_opt->count() && !(o.sway >= -1 && o.sway <= 1))
    throw Error("--sway must be in [-1, 1] (0 = uniform steps), got " + fmt::format("{:g}", o.sway));
  if (o.seed_opt->count() && o.seed < 0) throw Error("--seed must be >= 0, got " + std::to_string(o.seed));
  if (o.batch_size < 1) throw Error("--batch-size must be >= 1, got " + std::to_string(o.batch_size));
}

struct Job {
  gen::GenerationRequest request;
  std::string out, domain;
  std::string reference;     // the clip of a manifest line used as the prompt (absolute)
  std::string prompt_audio;  // the speaker / infill prompt's file (absolute), when there is one
};

std::vector<Job> read_prompt_file(const std::string& path, const RootConfig& cfg,
                                  const std::string& out_dir) {
  const double max_seconds = cfg.section<DiTStageConfig>().sample.max_seconds;
  if (const std::string why = not_regular_file(path); !why.empty())
    throw Error("prompts '" + path + "' " + why);
  std::ifstream in(path);
  if (!in) throw Error("prompts '" + path + "': cannot open");
  const fs::path dir = fs::path(path).parent_path();
  std::vector<Job> jobs;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      Job job;
      if (!j.is_object() || !j.contains("text")) throw Error("needs an object with \"text\"");
      job.request.text = j.at("text").get<std::string>();
      // A manifest works as a prompt file: its clip durations are the lengths to generate.
      job.request.seconds = j.contains("seconds") ? j.value("seconds", 0.0) : j.value("duration", 0.0);
      if (!std::isfinite(job.request.seconds) || job.request.seconds < 0 || job.request.seconds > max_seconds)
        throw Error(fmt::format("\"seconds\" must be in [0, {:g}] (dit.sample.max_seconds), got {:g}",
                                max_seconds, job.request.seconds));
      job.domain = j.value("domain", std::string());
      job.request.prompt_text = j.value("prompt_text", std::string());
      job.request.phonemes = j.value("phonemes", std::string());
      // A manifest's speaker is its `speaker`, else its `label` (as training reads it).
      job.request.speaker = j.value("speaker", j.value("label", std::string()));
      job.request.task = j.value("task", std::string());
      if (j.contains("audio") && j.at("audio").is_string()) {
        fs::path a = j.at("audio").get<std::string>();
        if (a.is_relative()) a = dir / a;
        job.reference = fs::absolute(a).lexically_normal().string();
      }
      if (j.contains("prompt_audio")) {
        fs::path a = j.at("prompt_audio").get<std::string>();
        if (a.is_relative()) a = dir / a;
        job.request.prompt_audio = audio::load_audio(a.string(), cfg.audio.sample_rate);
        job.prompt_audio = fs::absolute(a).lexically_normal().string();
      }
      std::string out = j.value("out", std::string());
      if (out.empty())
        out = (fs::path(out_dir) / fmt::format("gen-{:03d}.wav", jobs.size())).string();
      else if (fs::path(out).is_relative() && !out_dir.empty())
        out = (fs::path(out_dir) / out).string();
      job.out = out;
      jobs.push_back(std::move(job));
    } catch (const nlohmann::json::exception& e) {
      throw Error("prompts '" + path + "' line " + std::to_string(n) + ": " + first_line(e.what()));
    } catch (const Error& e) {
      throw Error("prompts '" + path + "' line " + std::to_string(n) + ": " + first_line(e.what()));
    }
  }
  if (jobs.empty()) throw Error("prompts '" + path + "': no prompt in the file");
  return jobs;
}

int run_generate(const GenerateOptions& o, const Context& ctx) {
  const io::WeightSet weights = io::read_weights(o.model.checkpoint);
  const YAML::Node base = gen::dit_checkpoint_config(weights);
  ConfigOptions options = o.config;
  if (!o.model.device.empty()) options.overrides.push_back("runtime.device=" + o.model.device);
  const RootConfig cfg = resolve_root_config(options, ctx, base);
  if (o.config.print_config) return 0;

  const DiTStageConfig& dit = cfg.section<DiTStageConfig>();
  SamplerConfig sampler = dit.sample;
  check_generate_options(o, sampler);
  if (o.steps_opt->count()) sampler.steps = o.steps;
  if (o.cfg_opt->count()) sampler.cfg_scale = o.cfg_scale;
  if (o.sway_opt->count()) sampler.sway = o.sway;
  if (o.seed_opt->count()) sampler.seed = o.seed;
  sampler.validate();

  std::vector<Job> jobs;
  if (!o.prompts.empty()) {
    if (!o.texts.empty()) throw Error("give --text or --prompts, not both");
    if (o.out_dir.empty()) throw Error("--prompts needs --out-dir");
    jobs = read_prompt_file(o.prompts, cfg, o.out_dir);
  } else {
    std::vector<std::string> texts = o.texts;
    if (texts.empty() && !o.condition.empty()) texts.push_back("");  // the embeddings are the prompt
    if (texts.empty()) throw Error("give --text (or --prompts FILE)");
    if (texts.size() > 1 && o.out_dir.empty()) throw Error("several --text need --out-dir");
    if (texts.size() == 1 && o.out.empty() && o.out_dir.empty()) throw Error("give --out X.wav");
    std::vector<float> prompt;
    if (!o.prompt_audio.empty()) prompt = audio::load_audio(o.prompt_audio, cfg.audio.sample_rate);
    for (std::size_t i = 0; i < texts.size(); ++i) {
      Job j;
      j.request.text = texts[i];
      j.request.seconds = o.seconds;
      j.request.prompt_audio = prompt;
      if (!o.prompt_audio.empty()) j.prompt_audio = fs::absolute(o.prompt_audio).lexically_normal().string();
      j.request.prompt_text = o.prompt_text;
      j.request.speaker = o.speaker;
      j.request.phonemes = o.phonemes;
      j.request.task = o.task;
      j.out = (texts.size() == 1 && !o.out.empty())
                  ? o.out
                  : (fs::path(o.out_dir) / fmt::format("gen-{:03d}.wav", i)).string();
      jobs.push_back(std::move(j));
    }
  }
  if (dit.condition.source == "cache") {
    if (o.condition.empty())
      throw Error("this DiT is conditioned on cached embeddings: give --condition FILE.safetensors");
    const io::WeightSet c = io::read_weights(o.condition);
    const auto t = c.tensors.find(dit.condition.tensor);
    if (t == c.tensors.end())
      throw Error("condition '" + o.condition + "' has no tensor '" + dit.condition.tensor + "'");
    for (auto& j : jobs) j.request.condition = t->second;
  } else if (!o.condition.empty()) {
    throw Error("--condition is for models conditioned on cached embeddings; this one reads text");
  }
  if (!o.speaker_embedding.empty()) {
    if (!(dit.uniflow_tts() && dit.tts.speaker.source == "cache"))
      throw Error("--speaker-embedding is for UniFlow TTS with dit.tts.speaker.source cache");
    const io::WeightSet w = io::read_weights(o.speaker_embedding);
    const auto t = w.tensors.find(dit.tts.speaker.tensor);
    if (t == w.tensors.end())
      throw Error("speaker embedding '" + o.speaker_embedding + "' has no tensor '" + dit.tts.speaker.tensor +
                  "'");
    for (auto& j : jobs) j.request.speaker_embedding = t->second;
  }
  if (dit.joint())
    for (auto& j : jobs)
      if (j.request.task.empty()) {
        // A manifest's domain names the task: speech -> tts, music -> ttm, else tta.
        j.request.task = j.domain == "speech"  ? "tts"
                         : j.domain == "music" ? "ttm"
                         : !j.domain.empty()   ? "tta"
                                               : "";
        if (j.request.task.empty())
          throw Error(
              "the joint model needs each prompt's task: give --task tta|ttm|tts (or \"task\" per prompt)");
      }
  {
    // The longest clip of a batch sets its attention's memory; refuse what cannot fit in RAM.
    const double rate = cfg.token_rate();
    double longest = 0;
    for (const Job& j : jobs) longest = std::max(longest, j.request.seconds);
    const int batch =
        static_cast<int>(std::min<std::size_t>(jobs.size(), static_cast<std::size_t>(o.batch_size)));
    const double need = attention_bytes(dit.model, std::llround(longest * rate), batch);
    const double have = available_memory();
    if (resolve_device(cfg.runtime.device).is_cpu() && have > 0 && need > have)
      throw Error(
          fmt::format("--seconds {} at --batch-size {} needs about {:.1f} GiB for attention, {:.1f} GiB is "
                      "available: generate shorter clips or fewer at once",
                      longest, batch, need / (1 << 30), have / (1 << 30)));
  }
  gen::LoadedDiT loaded = gen::load_dit_checkpoint(weights, cfg, resolve_device(cfg.runtime.device),
                                                   !o.model.lenient, o.tokenizer);
  gen::DiTPipeline* pipeline = loaded.pipeline.get();
  if (!pipeline->tokenizer())
    throw Error("generate needs the tokenizer that decodes the latents: --tokenizer CHECKPOINT");

  const auto t0 = std::chrono::steady_clock::now();
  double seconds_out = 0;
  const int sr = cfg.audio.sample_rate;
  for (std::size_t start = 0; start < jobs.size(); start += o.batch_size) {
    std::vector<gen::GenerationRequest> batch;
    for (std::size_t i = start; i < std::min(jobs.size(), start + o.batch_size); ++i)
      batch.push_back(jobs[i].request);
    SamplerConfig s = sampler;
    s.seed = sampler.seed + static_cast<int64_t>(start);  // another batch, other noise
    const auto latents = pipeline->generate(batch, s);
    for (std::size_t i = 0; i < latents.size(); ++i) {
      const Job& job = jobs[start + i];
      const std::vector<float> wave = pipeline->decode(latents[i]);
      const fs::path parent = fs::path(job.out).parent_path();
      if (!parent.empty()) fs::create_directories(parent);
      audio::write_audio(job.out, wave.data(), static_cast<int64_t>(wave.size()), 1, sr, "pcm16");
      seconds_out += static_cast<double>(wave.size()) / sr;
      spdlog::info("{}: {:.2f} s  \"{}\"", job.out, static_cast<double>(wave.size()) / sr,
                   job.request.text.substr(0, 60));
    }
  }
  if (!o.out_dir.empty()) {
    // What `losatok eval gen` reads: each clip with the text it was generated from.
    const std::string dit_task = cfg.section<DiTStageConfig>().task;
    std::string lines;
    for (const Job& job : jobs) {
      nlohmann::json j = {{"audio", fs::relative(job.out, o.out_dir).string()}, {"text", job.request.text}};
      if (!job.domain.empty()) j["domain"] = job.domain;
      // The task it was generated for (a single-task DiT's own), by which `eval gen` groups clips.
      const std::string task = !job.request.task.empty() ? job.request.task : dit_task;
      if (!task.empty() && task != "joint") j["task"] = task;
      // The clip the prompt came from: `eval gen` pairs the two for the KL.
      if (!job.reference.empty()) j["reference"] = job.reference;
      // The audio prompt: `eval gen` scores the speaker similarity against it.
      if (!job.prompt_audio.empty()) j["prompt_audio"] = job.prompt_audio;
      lines += j.dump() + "\n";
    }
    write_file_atomic((fs::path(o.out_dir) / "generated.jsonl").string(), lines);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("generated {} clips, {:.1f} s of audio in {:.1f} s ({} Euler steps, CFG {}, sway {})",
               jobs.size(), seconds_out, s, sampler.steps, sampler.cfg_scale, sampler.sway);
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app, Context& ctx) {
  auto* sub =
      app.add_subcommand("generate", "DiT sampling + tokenizer decoding: text (and a TTS prompt) -> WAV");
  auto o = std::make_shared<GenerateOptions>();
  sub->add_option("--checkpoint", o->model.checkpoint, "DiT checkpoint folder or weights (.safetensors)")
      ->required();
  sub->add_flag("--lenient", o->model.lenient,
                "load the tensors that match and list the rest instead of failing");
  sub->add_option("--device", o->model.device, "cpu, cuda or cuda:N (overrides runtime.device)");
  sub->add_option("--text", o->texts, "caption (TTA / TTM) or transcript (TTS); repeatable");
  sub->add_option("--prompts", o->prompts,
                  "JSON Lines (a manifest works): {\"text\", \"seconds\" or \"duration\", \"prompt_audio\", "
                  "\"prompt_text\", \"speaker\", \"phonemes\", \"task\", \"out\", \"domain\"} per clip; "
                  "--out-dir gets generated.jsonl");
  sub->add_option("--seconds", o->seconds, "duration (TTS: estimated from the text when 0)")
      ->capture_default_str();
  sub->add_option("--prompt-audio", o->prompt_audio, "TTS: audio prompt (the voice to continue)");
  sub->add_option("--prompt-text", o->prompt_text, "TTS: the prompt's transcript");
  sub->add_option("--speaker", o->speaker, "UniFlow TTS with a speaker table: the speaker's name");
  sub->add_option("--speaker-embedding", o->speaker_embedding,
                  "UniFlow TTS with cached speaker vectors: a .safetensors holding dit.tts.speaker.tensor");
  sub->add_option("--phonemes", o->phonemes,
                  "UniFlow TTS: the phonemes (espeak-ng --ipa --sep=_ style) instead of espeak-ng's");
  sub->add_option("--task", o->task, "the joint model: tta, ttm or tts");
  sub->add_option(
      "--condition", o->condition,
      "models conditioned on cached embeddings: a .safetensors holding dit.condition.tensor (L, C)");
  sub->add_option("--out", o->out, "output WAV (one --text)");
  sub->add_option("--out-dir", o->out_dir, "output folder (several texts or --prompts)");
  sub->add_option("--tokenizer", o->tokenizer,
                  "tokenizer checkpoint (default: the DiT's dit.tokenizer_checkpoint)");
  o->steps_opt = sub->add_option("--steps", o->steps, "Euler steps (default dit.sample.steps)");
  o->cfg_opt =
      sub->add_option("--cfg", o->cfg_scale, "classifier-free guidance scale (default dit.sample.cfg_scale)");
  o->sway_opt =
      sub->add_option("--sway", o->sway, "sway-sampling coefficient in [-1, 1] (default dit.sample.sway)");
  o->seed_opt = sub->add_option("--seed", o->seed, "noise seed (default dit.sample.seed)");
  sub->add_option("--batch-size", o->batch_size, "clips per sampling batch")->capture_default_str();
  on_config_command(*sub, ctx, o->config, [&ctx, o]() { return run_generate(*o, ctx); });
}

}  // namespace losatok::cli
