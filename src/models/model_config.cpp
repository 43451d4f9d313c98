// validate() of the model sizes.
#include "losatok/models/model_config.h"

#include <cmath>
#include <string>

#include "losatok/core/config.h"
#include "losatok/models/dit_config.h"

namespace losatok {

using config::check;

void EncoderConfig::validate() const {
  check(embed_dim > 0, "embed_dim", "must be positive");
  check(depth >= 0, "depth", "must be >= 0");
  check(num_heads > 0 && embed_dim % num_heads == 0, "num_heads",
        "must be positive and divide embed_dim (" + std::to_string(embed_dim) + ")");
  check(mlp_ratio > 0, "mlp_ratio", "must be positive");
  check(patch_frames > 0, "patch_frames", "must be positive");
  check(target_length >= patch_frames && target_length % patch_frames == 0, "target_length",
        "must be a positive multiple of patch_frames (" + std::to_string(patch_frames) + ")");
  check(norm_eps > 0, "norm_eps", "must be positive");
  check(bn_eps > 0, "bn_eps", "must be positive");
}

void SemBoConfig::validate() const {
  check(hidden_dim > 0, "hidden_dim", "must be positive");
  check(latent_dim > 0, "latent_dim", "must be positive");
  check(method == "mlp" || method == "pca" || method == "channel_merge", "method",
        "must be mlp, pca or channel_merge, got '" + method + "'");
  check(dropout >= 0 && dropout < 1, "dropout", "must be in [0, 1)");
}

void AcousticConfig::validate() const {
  check(patch_frames > 0, "patch_frames", "must be positive");
  check(norm_eps > 0, "norm_eps", "must be positive");
}

void DecoderConfig::validate() const {
  check(dim > 0, "dim", "must be positive");
  check(intermediate_dim > 0, "intermediate_dim", "must be positive");
  check(num_layers >= 0, "num_layers", "must be >= 0");
  check(kernel_size > 0 && kernel_size % 2 == 1, "kernel_size", "must be a positive odd number");
  check(upsample > 0, "upsample", "must be positive");
  check(layer_scale_init >= 0, "layer_scale_init", "must be >= 0 (0 = 1 / num_layers)");
  check(hop_length > 0, "hop_length", "must be positive");
  check(n_fft >= hop_length && (n_fft - hop_length) % 2 == 0, "n_fft",
        "must be >= hop_length with (n_fft - hop_length) even (same-padding iSTFT)");
  check(mag_max > 0, "mag_max", "must be positive");
  check(norm_eps > 0, "norm_eps", "must be positive");
}

void ModelConfig::validate() const {
  check(logvar_clamp > 0, "logvar_clamp", "must be positive");
  check(variant == "losatok" || variant == "acoustic_only" || variant == "unified_1280", "variant",
        "must be losatok, acoustic_only or unified_1280, got '" + variant + "'");
  check(sembo.method != "channel_merge" || encoder.embed_dim % sembo.latent_dim == 0, "sembo.latent_dim",
        "channel_merge needs encoder.embed_dim (" + std::to_string(encoder.embed_dim) +
            ") to be a multiple of latent_dim (" + std::to_string(sembo.latent_dim) + ")");
}

void DiTConfig::validate() const {
  check(latent_dim >= 1, "latent_dim", "must be >= 1");
  check(width >= 1 && heads >= 1 && width % heads == 0, "heads", "must divide width");
  check((width / heads) % 2 == 0, "heads", "width / heads must be even (rotary embedding)");
  check(depth >= 1, "depth", "must be >= 1");
  check(mlp_ratio > 0, "mlp_ratio", "must be positive");
  check(rope_theta > 1, "rope_theta", "must be > 1");
  check(time_freq_dim >= 2 && time_freq_dim % 2 == 0, "time_freq_dim", "must be even and >= 2");
  check(gating == "uniflow" || gating == "adaln_zero", "gating",
        "must be uniflow or adaln_zero, got '" + gating + "'");
}

void TextEncoderConfig::validate() const {
  check(tokens == "chars" || tokens == "phonemes", "tokens",
        "must be chars or phonemes, got '" + tokens + "'");
  check(width >= 1 && heads >= 1 && width % heads == 0, "heads", "must divide width");
  check((width / heads) % 2 == 0, "heads", "width / heads must be even (rotary embedding)");
  check(depth >= 0, "depth", "must be >= 0");
  check(mlp_ratio > 0, "mlp_ratio", "must be positive");
  check(max_tokens >= 1, "max_tokens", "must be >= 1");
}

void FlowConfig::validate() const {
  check(sigma_sampling == "logit_normal" || sigma_sampling == "uniform", "sigma_sampling",
        "must be logit_normal or uniform, got '" + sigma_sampling + "'");
  check(logit_std > 0, "logit_std", "must be positive");
  check(cond_dropout >= 0 && cond_dropout < 1, "cond_dropout", "must be in [0, 1)");
  check(uncond == "zero" || uncond == "learned", "uncond", "must be zero or learned, got '" + uncond + "'");
  check(prompt_dropout >= 0 && prompt_dropout <= 1, "prompt_dropout", "must be in [0, 1]");
  check(infill_min > 0 && infill_min <= infill_max && infill_max <= 1, "infill_min",
        "need 0 < infill_min <= infill_max <= 1");
}

void SamplerConfig::validate() const {
  check(steps >= 1 && steps <= kMaxSteps, "steps", "must be in [1, " + std::to_string(kMaxSteps) + "]");
  check(sway >= -1 && sway <= 1, "sway", "must be in [-1, 1] (0 = off)");
  check(cfg_scale >= 0 && cfg_scale <= kMaxCfgScale, "cfg_scale",
        "must be in [0, " + std::to_string(static_cast<int>(kMaxCfgScale)) + "] (1 = no guidance)");
  check(seed >= 0, "seed", "must be >= 0");
  check(max_seconds > 0 && std::isfinite(max_seconds), "max_seconds",
        "must be a finite number of seconds > 0");
}

void PromptConfig::validate() const {
  check(seconds >= 0, "seconds", "must be >= 0 (0 = estimated)");
}

void ConditionConfig::validate() const {
  check(source == "text" || source == "t5" || source == "cache", "source",
        "must be text, t5 or cache, got '" + source + "'");
  check(source != "cache" || !cache_dir.empty(), "cache_dir", "source cache needs the cache folder");
  check(source != "t5" || !text_encoder.empty(), "text_encoder",
        "source t5 needs the Hugging Face T5 / Flan-T5 folder");
  check(max_tokens >= 2, "max_tokens", "must be >= 2 (a piece and EOS)");
  check(!tensor.empty(), "tensor", "must not be empty");
}

void PhonemeEncoderConfig::validate() const {
  check(width > 0 && depth >= 0 && heads > 0, "width", "width, heads must be positive and depth >= 0");
  check(width % heads == 0, "heads", "must divide width");
  check(conv_kernel > 0 && conv_kernel % 2 == 1, "conv_kernel", "must be odd and positive");
  check(duration_kernel > 0 && duration_kernel % 2 == 1, "duration_kernel", "must be odd and positive");
  check(mlp_ratio > 0, "mlp_ratio", "must be positive");
}

void SpeakerConfig::validate() const {
  check(source == "none" || source == "table" || source == "cache", "source",
        "must be none, table or cache, got '" + source + "'");
  check(dim > 0, "dim", "must be positive");
  check(max_speakers > 0, "max_speakers", "must be positive");
  check(source != "cache" || !cache_dir.empty(), "cache_dir", "source cache needs the cache folder");
}

void TtsConfig::validate() const {
  check(mode == "infill" || mode == "uniflow", "mode", "must be infill or uniflow, got '" + mode + "'");
  check(phonemes == "espeak" || phonemes == "manifest", "phonemes",
        "must be espeak or manifest, got '" + phonemes + "'");
  check(durations == "mas" || durations == "manifest", "durations",
        "must be mas or manifest, got '" + durations + "'");
  check(duration_weight >= 0 && global_duration_weight >= 0 && prior_weight >= 0, "duration_weight",
        "loss weights must be >= 0");
}

int dit_task_index(const std::string& task) {
  for (int i = 0; i < kNumDiTTasks; ++i)
    if (task == kDiTTasks[i]) return i;
  return -1;
}

void DiTStageConfig::validate() const {
  check(task == "tta" || task == "ttm" || task == "tts" || task == "joint", "task",
        "must be tta, ttm, tts or joint, got '" + task + "'");
  check(norm_max_clips >= 1, "norm_max_clips", "must be >= 1");
  check(task != "tts" || tts.uniflow() || condition.source == "text", "condition.source",
        "tts with mode infill aligns the transcript to the latent frames: it needs source text");
  check(!joint() || tts.uniflow(), "tts.mode",
        "the joint model speaks through UniFlow's phoneme path: set tts.mode uniflow");
  for (double s : val_sigmas) check(s > 0 && s <= 1, "val_sigmas", "entries must be in (0, 1]");
}

}  // namespace losatok
