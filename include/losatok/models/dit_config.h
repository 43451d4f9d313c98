// Sizes of the generation models (docs/method.md, "DiT"): the DiT over LoSATok latents and its
// built-in text encoder. torch-free; configs/model/dit_*.yaml set the paper's width sweep.
#pragma once

#include <cstdint>
#include <string>

namespace losatok {

// Text token ids: 0 pads, 1 is the TTS filler that stretches a transcript to the latent
// length, 2 + b is the byte b of the UTF-8 text (or of its IPA phonemes).
inline constexpr int kTextPad = 0, kTextFiller = 1, kTextVocab = 258;

// The DiT backbone (UniFlow-Audio's AudioUDiT): 1-D latents (B, T, latent_dim) -> input
// projection -> blocks of AdaLN-modulated self-attention (RoPE, q/k LayerNorm), the time-aligned
// context added, cross-attention to the embedded condition sequence and a GEGLU MLP -> AdaLN
// final layer -> Conv1d -> velocity.
struct DiTConfig {
  int latent_dim = 128;
  int width = 512;
  int depth = 20;
  int heads = 8;
  double mlp_ratio = 4.0;     // GEGLU hidden = mlp_ratio * width
  bool qk_norm = true;        // LayerNorm over each head's q and k
  double rope_theta = 10000;  // rotary position base of the self-attention
  // U-ViT long skips: depth/2 in-blocks, one mid block, depth/2 out-blocks; out-block i takes
  // the output of in-block depth/2 - 1 - i (concat -> LayerNorm -> Linear back to width).
  // false: `depth` plain blocks.
  bool uvit_skips = true;
  // How the AdaLN gates g scale the residual branches: uniflow (self-attention tanh(1 - g), MLP
  // 1 - g: both open at init) | adaln_zero (g, so every block starts as the identity; DiT).
  std::string gating = "uniflow";
  bool final_conv = true;   // Conv1d(latent_dim, latent_dim, 3) after the output projection
  int time_freq_dim = 256;  // sinusoidal features of sigma * 1000 before the time MLP
  bool grad_checkpointing = false;

  template <class V>
  void visit(V& v) {
    v("latent_dim", latent_dim);
    v("width", width);
    v("depth", depth);
    v("heads", heads);
    v("mlp_ratio", mlp_ratio);
    v("qk_norm", qk_norm);
    v("rope_theta", rope_theta);
    v("uvit_skips", uvit_skips);
    v("gating", gating);
    v("final_conv", final_conv);
    v("time_freq_dim", time_freq_dim);
    v("grad_checkpointing", grad_checkpointing);
  }
  void validate() const;
  int mlp_dim() const { return static_cast<int>(width * mlp_ratio); }
  int blocks() const { return uvit_skips ? 2 * (depth / 2) + 1 : depth; }
};

// The trainable text encoder: byte tokens of the caption / transcript (`chars`) or of its IPA
// phonemes from espeak-ng (`phonemes`) -> embedding -> pre-norm transformer with RoPE.
struct TextEncoderConfig {
  std::string tokens = "chars";        // chars | phonemes
  std::string espeak_voice = "en-us";  // phonemes: espeak-ng -v
  int width = 256;
  int depth = 4;
  int heads = 4;
  double mlp_ratio = 4.0;
  int max_tokens = 512;  // longer texts are cut (with a warning)

  template <class V>
  void visit(V& v) {
    v("tokens", tokens);
    v("espeak_voice", espeak_voice);
    v("width", width);
    v("depth", depth);
    v("heads", heads);
    v("mlp_ratio", mlp_ratio);
    v("max_tokens", max_tokens);
  }
  void validate() const;
};

// Flow matching of the DiT stage (docs/method.md, "DiT"): noise at sigma = 1,
// x = (1 - sigma) z + sigma e, target e - z, sigma drawn logit-normal (or uniform).
struct FlowConfig {
  std::string sigma_sampling = "logit_normal";  // logit_normal | uniform
  double logit_mean = 0.0, logit_std = 1.0;
  double cond_dropout = 0.2;  // the whole condition (text, and the TTS prompt) -> unconditional, for CFG
  // The unconditional input: zero (the content and time-aligned context zeroed, UniFlow-Audio) |
  // learned (a trained row `null_cond` in place of each condition token).
  std::string uncond = "zero";
  // TTS (F5-TTS in-context infilling): a random span of infill_min..infill_max of the frames is
  // noised and predicted; the rest is the audio prompt, itself dropped with prompt_dropout.
  double infill_min = 0.7, infill_max = 1.0;
  double prompt_dropout = 0.3;

  template <class V>
  void visit(V& v) {
    v("sigma_sampling", sigma_sampling);
    v("logit_mean", logit_mean);
    v("logit_std", logit_std);
    v("cond_dropout", cond_dropout);
    v("uncond", uncond);
    v("infill_min", infill_min);
    v("infill_max", infill_max);
    v("prompt_dropout", prompt_dropout);
  }
  void validate() const;
};

// The Euler ODE sampler from sigma = 1 to 0.
struct SamplerConfig {
  static constexpr int kMaxSteps = 10000;
  static constexpr double kMaxCfgScale = 100.0;
  int steps = 32;
  double sway = -1.0;      // sway-sampling coefficient (0 = uniform steps)
  double cfg_scale = 3.0;  // classifier-free guidance (1 = the conditional model alone)
  int64_t seed = 0;
  // The longest clip `generate` makes (seconds): a typo of a few zeros is an error, not an
  // allocation of the machine's memory.
  double max_seconds = 600.0;

  template <class V>
  void visit(V& v) {
    v("steps", steps);
    v("sway", sway);
    v("cfg_scale", cfg_scale);
    v("seed", seed);
    v("max_seconds", max_seconds);
  }
  void validate() const;
};

// A fixed prompt validation generates (and `losatok generate` reads from a prompts file).
struct PromptConfig {
  std::string text;
  double seconds = 0.0;  // 0 = estimated (TTS: from the text length, or the predicted durations)
  std::string task;      // the joint model: tta | ttm | tts
  std::string speaker;   // UniFlow TTS with a speaker table

  template <class V>
  void visit(V& v) {
    v("text", text);
    v("seconds", seconds);
    v("task", task);
    v("speaker", speaker);
  }
  void validate() const;
};

// The condition sequence of TTA / TTM: the built-in text encoder over the manifest's `text`, a
// frozen T5 / Flan-T5 (a Hugging Face folder) encoding it on the fly, or embeddings made
// elsewhere (`losatok extract --what text`, or any other model) read per clip from a feature
// cache whose producer is `condition`.
struct ConditionConfig {
  std::string source = "text";  // text | t5 | cache
  // t5: the Hugging Face folder (config.json, model.safetensors | pytorch_model.bin,
  // spiece.model). cache: when given, the cache's producer must be this encoder.
  std::string text_encoder;
  int max_tokens = 512;   // t5: longer captions are cut (EOS kept)
  std::string cache_dir;  // source cache: the cache folder
  std::string tensor = "cond_emb";

  template <class V>
  void visit(V& v) {
    v("source", source);
    v("text_encoder", text_encoder);
    v("max_tokens", max_tokens);
    v("cache_dir", cache_dir);
    v("tensor", tensor);
  }
  void validate() const;
};

// The phoneme encoder of UniFlow-style TTS (FastSpeech 2's encoder: embedding,
// rotary positions in the self-attention -> feed-forward transformer blocks with a
// convolutional FFN, post-norm).
struct PhonemeEncoderConfig {
  int width = 256;
  int depth = 4;
  int heads = 2;
  int conv_kernel = 9;      // the FFN's first Conv1d
  double mlp_ratio = 4.0;   // FFN hidden = mlp_ratio * width
  int duration_kernel = 3;  // the duration predictor's Conv1d (two layers, FastSpeech 2)

  template <class V>
  void visit(V& v) {
    v("width", width);
    v("depth", depth);
    v("heads", heads);
    v("conv_kernel", conv_kernel);
    v("mlp_ratio", mlp_ratio);
    v("duration_kernel", duration_kernel);
  }
  void validate() const;
};

// Who speaks (UniFlow-style TTS): none | table (a learned embedding per speaker name: the
// manifest's `speaker`, else the clip's `label`; the names are saved with the checkpoint) |
// cache (a per-clip vector read from a feature cache: any speaker model a user trusts, e.g.
// WavLM-ECAPA or WeSpeaker, extracted elsewhere).
struct SpeakerConfig {
  std::string source = "table";
  int dim = 256;            // the speaker vector's width (cache: must match the cache)
  int max_speakers = 4096;  // table: rows (names beyond are an error)
  std::string cache_dir;
  std::string tensor = "spk_emb";  // cache: (dim) or (1, dim) per clip

  template <class V>
  void visit(V& v) {
    v("source", source);
    v("dim", dim);
    v("max_speakers", max_speakers);
    v("cache_dir", cache_dir);
    v("tensor", tensor);
  }
  void validate() const;
};

// Text-to-speech. infill: F5-TTS in-context infilling (the transcript stretched to the frames,
// an audio prompt). uniflow: UniFlow-Audio's content path: phonemes -> phoneme encoder (+ speaker)
// -> per-phoneme and global duration predictors; the encodings are the cross-attention content
// and, expanded by durations to the latent frames, the time-aligned context.
struct TtsConfig {
  std::string mode = "infill";      // infill | uniflow
  std::string phonemes = "espeak";  // uniflow: espeak (text.espeak_voice) | manifest (`phonemes` field)
  // uniflow: durations for training from a monotonic alignment search between the phonemes'
  // prior and the latents (mas), or the manifest's `durations` (frames per phoneme).
  std::string durations = "mas";
  PhonemeEncoderConfig encoder;
  SpeakerConfig speaker;
  double duration_weight = 0.1;         // local: MSE of log(1 + frames) per phoneme
  double global_duration_weight = 0.1;  // global: MSE of log(1 + seconds)
  double prior_weight = 1.0;            // the alignment prior's MSE to the latents (Grad-TTS)
  // Generation: the local predictions' sum sets the length (false), or the global prediction
  // does and the local ones share it out (true). On the demo corpus (tiny, 300 steps) the local
  // sum follows the held-out clips' lengths closely (r 0.99), the global prediction less (r 0.9).
  bool use_global_duration = false;

  template <class V>
  void visit(V& v) {
    v("mode", mode);
    v("phonemes", phonemes);
    v("durations", durations);
    v("encoder", encoder);
    v("speaker", speaker);
    v("duration_weight", duration_weight);
    v("global_duration_weight", global_duration_weight);
    v("prior_weight", prior_weight);
    v("use_global_duration", use_global_duration);
  }
  void validate() const;
  bool uniflow() const { return mode == "uniflow"; }
};

// The `dit:` section (the DiT stage and generation): flow matching on tokenizer latents read from the feature
// cache (data.cache_dir, `losatok extract --what latents`), for text-to-audio / music / speech.
struct DiTStageConfig {
  // tta | ttm | tts | joint (one model for all three, UniFlow-Audio: each data source names its
  // task, batches hold one task, and a learned task token leads the content)
  std::string task = "tta";
  // The tokenizer whose latents the cache holds: checks the cache's producer and decodes
  // generated latents to audio. "" = accept any latents cache, and no audio at validation.
  std::string tokenizer_checkpoint;
  // Train on posterior samples z = mu + exp(logvar / 2) eps (UniFlow-Audio), or on mu.
  bool sample_latent = true;
  // Standardise latents per dimension with statistics of the training clips (off: the latents
  // as the tokenizer makes them, UniFlow-Audio; the scale lambda_KL shapes stays visible).
  bool standardize = false;
  int64_t norm_max_clips = 2000;  // training clips the statistics (and the TTS speaking rate) read
  DiTConfig model;
  TextEncoderConfig text;
  ConditionConfig condition;
  TtsConfig tts;
  FlowConfig flow;
  SamplerConfig sample;
  std::vector<double> val_sigmas = {0.1, 0.3, 0.5, 0.7, 0.9};  // validation loss at these sigmas
  std::vector<PromptConfig> val_prompts;  // generated at each validation (WAV, PNG, TensorBoard)

  template <class V>
  void visit(V& v) {
    v("task", task);
    v("tokenizer_checkpoint", tokenizer_checkpoint);
    v("sample_latent", sample_latent);
    v("standardize", standardize);
    v("norm_max_clips", norm_max_clips);
    v("model", model);
    v("text", text);
    v("condition", condition);
    v("tts", tts);
    v("flow", flow);
    v("sample", sample);
    v("val_sigmas", val_sigmas);
    v("val_prompts", val_prompts);
  }
  void validate() const;
  bool joint() const { return task == "joint"; }
  // Whether the model generates speech with UniFlow's phoneme path (task tts or joint).
  bool uniflow_tts() const { return joint() || phonemes_only(); }
  // A UniFlow TTS model alone: its content is the phonemes', no caption encoder.
  bool phonemes_only() const { return task == "tts" && tts.uniflow(); }
};

// The tasks of the joint model, in the order of its task tokens.
inline constexpr const char* kDiTTasks[] = {"tta", "ttm", "tts"};
inline constexpr int kNumDiTTasks = 3;
int dit_task_index(const std::string& task);  // -1 when not one of kDiTTasks

}  // namespace losatok
