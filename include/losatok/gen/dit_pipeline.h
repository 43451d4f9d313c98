// Generation with a DiT (docs/method.md, "DiT"): conditioning, the Euler sampler with CFG,
// durations, de-normalisation and decoding with the tokenizer. A sibling of training: the DiT
// stage's validation, `losatok generate` and the evaluation commands share it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "losatok/core/run_config.h"
#include "losatok/data/text.h"
#include "losatok/io/weights.h"
#include "losatok/models/dit.h"
#include "losatok/models/dit_config.h"
#include "losatok/models/t5.h"
#include "losatok/models/tokenizer_checkpoint.h"

namespace losatok::gen {

// One clip to generate.
struct GenerationRequest {
  std::string text;                 // caption (TTA / TTM) or transcript (TTS)
  double seconds = 0;               // 0 = estimated (TTS); the prompt is not counted
  std::vector<float> prompt_audio;  // TTS: audio prompt at audio.sample_rate (may be empty)
  std::string prompt_text;          // its transcript
  torch::Tensor condition;          // (L, C) embeddings, for models conditioned on a cache
  // UniFlow TTS: the speaker (a name for a table, a (dim) vector for a cache), the phonemes when
  // given (espeak-ng --ipa --sep=_ style; else espeak-ng makes them).
  std::string speaker, phonemes;
  torch::Tensor speaker_embedding;
  std::string task;  // the joint model: tta | ttm | tts ("" = the model's own task)
};

// The row of a speaker name in the learned speaker table: a 64-bit FNV-1a hash of the name
// modulo the rows, so that training, resuming and generation agree without a list.
int64_t speaker_row(const std::string& name, int rows);

// The generation model with its conditioning and the tokenizer that decodes its latents.
class DiTPipeline {
 public:
  // cond_dim: width of cached condition embeddings (dit.condition.source cache), else unused.
  DiTPipeline(const RootConfig& cfg, const torch::Device& device, int cond_dim = 0);
  models::DiTModelImpl& model() { return *model_; }
  const RootConfig& config() const { return cfg_; }
  const DiTStageConfig& dit_config() const { return dit_; }
  // Loads a tokenizer checkpoint to decode (and encode prompts) with.
  void load_tokenizer(const std::string& path);
  void set_tokenizer(models::LoadedTokenizer tokenizer);
  models::AudioVAEImpl* tokenizer() { return tokenizer_.vae ? tokenizer_.vae.get() : nullptr; }
  const models::LoadedTokenizer& tokenizer_checkpoint() const { return tokenizer_; }

  struct Condition {
    torch::Tensor cond, cond_mask;  // (B, L, C), (B, L) bool
    torch::Tensor aligned;          // TTS: (B, T, C) text stretched to the frames with the filler
  };
  // The text condition of a batch; frame_mask (B, T) bool gives the TTS alignment length.
  Condition text_condition(const std::vector<std::string>& texts, const torch::Tensor& frame_mask);
  // Condition from per-clip embeddings (L_i, C).
  Condition embedding_condition(const std::vector<torch::Tensor>& embeddings);
  // Text tokens of one text (their count sets the TTS duration).
  std::vector<int64_t> tokens(const std::string& text) { return text_tokens_->encode(text); }

  // UniFlow TTS inputs of a batch: phoneme units (B, P, K), their mask (B, P) and the speakers
  // (ids (B) for a table, vectors (B, dim) for a cache, undefined for none), on the device.
  struct SpeechInputs {
    torch::Tensor units, mask, speaker;
    std::vector<int64_t> phonemes;  // per row
  };
  // texts[i] with phonemes[i] when given (else espeak-ng); speakers: names (table) ...
  SpeechInputs speech_inputs(const std::vector<std::string>& texts, const std::vector<std::string>& phonemes,
                             const std::vector<std::string>& speaker_names,
                             const std::vector<torch::Tensor>& speaker_vectors);
  // The speaker names a training run saw (checkpoint metadata kSpeakersKey): generation warns
  // about others.
  void set_known_speakers(std::vector<std::string> names) { known_speakers_ = std::move(names); }
  const std::vector<std::string>& known_speakers() const { return known_speakers_; }
  models::T5TextEncoder* t5() { return t5_.get(); }
  // The joint model's task of a request (kDiTTasks index; -1 for single-task models).
  int task_index(const std::string& task) const;

  // Latent frames to generate for a request (without the prompt).
  int64_t frames_for(const GenerationRequest& r);
  // Normalised prompt latents (P, D) of an audio prompt.
  torch::Tensor encode_prompt(const std::vector<float>& audio);
  // Euler + CFG: the de-normalised latents (T_i, D) of each request, on the CPU.
  std::vector<torch::Tensor> generate(const std::vector<GenerationRequest>& requests,
                                      const SamplerConfig& sampler);
  // Waveform of de-normalised latents (T, D).
  std::vector<float> decode(const torch::Tensor& latents);

 private:
  RootConfig cfg_;
  DiTStageConfig dit_;
  torch::Device device_;
  models::DiTModel model_{nullptr};
  std::unique_ptr<data::TextTokenizer> text_tokens_;
  std::unique_ptr<data::PhonemeTokenizer> phonemes_;
  std::unique_ptr<models::T5TextEncoder> t5_;
  std::vector<std::string> known_speakers_;
  models::LoadedTokenizer tokenizer_;
  // generate() for requests of one task.
  std::vector<torch::Tensor> generate_task(const std::vector<GenerationRequest>& requests,
                                           const SamplerConfig& sampler, int task);
};

// A DiT checkpoint ready to generate: its config and the pipeline with its weights loaded
// (eval mode), and the tokenizer that decodes its latents when one is known.
struct LoadedDiT {
  RootConfig config;
  std::unique_ptr<DiTPipeline> pipeline;
  std::string source;
};
// Reads a DiT checkpoint (a file or a checkpoint folder) whose metadata carries `stage: dit` and
// its section. `config` is the config to build with (the checkpoint's own when null: a command
// composes files and overrides over it); `strict` refuses missing / unexpected weights;
// `tokenizer` overrides dit.tokenizer_checkpoint ("" = that one; no decoding when both are empty).
LoadedDiT load_dit_checkpoint(const io::WeightSet& weights, const RootConfig& config,
                              const torch::Device& device, bool strict = true,
                              const std::string& tokenizer = "");
// Where a DiT checkpoint's tokenizer is (train/checkpoint.h's metadata, README.md "Generation"):
// tensors `tokenizer.*` embedded by `export` (with kTokenizerConfigKey), else the file recorded
// in kTokenizerKey ({"path": absolute, "run_dir_relative": from the DiT's run_dir, "xxh64"}) at
// its absolute path, then relative to the run_dir the checkpoint sits in, then
// dit.tokenizer_checkpoint as written. A file whose checksum differs from the recorded one is a
// warning.
inline constexpr const char* kTokenizerKey = "losatok.tokenizer";
inline constexpr const char* kTokenizerConfigKey = "losatok.tokenizer_config";
inline constexpr const char* kTokenizerPrefix = "tokenizer.";
// The speaker names of a UniFlow TTS run (a JSON array), for generation's warnings.
inline constexpr const char* kSpeakersKey = "losatok.speakers";
// The tokenizer file to read ("" when the weights embed it); an error listing the places tried
// when it is nowhere.
std::string find_dit_tokenizer(const io::WeightSet& weights, const DiTStageConfig& dit);
// The kTokenizerKey record of the tokenizer a DiT run at `run_dir` loads from `path`.
std::string tokenizer_record(const std::string& path, const std::string& run_dir);

// The config sections the checkpoint carries (stage, dit, model, frontend), checked to be a
// DiT's (an error naming the file otherwise): the base a command composes its config over.
YAML::Node dit_checkpoint_config(const io::WeightSet& weights);

}  // namespace losatok::gen
