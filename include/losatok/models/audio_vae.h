// The LoSATok tokenizer (`AudioVAE`, docs/method.md, "Tokenizer") with the reference's parameter names:
// acoustic branch + upsampler + Vocos decoder under `dasheng_tokenizer`, the frozen encoder
// and SemBo under `semantic_encoder`, and the `fc_a` / `fc_mu` / `fc_logvar` heads.
#pragma once

#include <torch/nn/modules/conv.h>

#include <string>
#include <utility>
#include <vector>

#include "losatok/models/sembo.h"
#include "losatok/models/vocos.h"

namespace losatok::models {

// Vocos log-mel -> Conv2d patch (all mels x patch_frames, stride = kernel) -> LayerNorm.
struct AcousticEncoderImpl : torch::nn::Module {
  AcousticEncoderImpl(int dim, const AcousticConfig& c, const MelConfig& mel);
  torch::Tensor forward(const torch::Tensor& wave);  // (B, N) -> (B, T, dim)
  torch::nn::Conv2d patch_embed{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  std::shared_ptr<audio::LogMel> frontend_;
};
TORCH_MODULE(AcousticEncoder);

struct DashengTokenizerImpl : torch::nn::Module {
  explicit DashengTokenizerImpl(const ModelConfig& c, const MelConfig& vocos_mel);
  AcousticEncoder encoder{nullptr};
  torch::nn::ConvTranspose1d upsampler{nullptr};  // latent -> decoder.dim, x upsample
  VocosDecoder decoder{nullptr};
};
TORCH_MODULE(DashengTokenizer);

// Everything `encode` computes, each (B, T, D) at the token rate.
struct VaeFeatures {
  torch::Tensor semantic_emb, semantic_emb_low;  // frozen encoder and SemBo compressor
  torch::Tensor acoustic_emb, acoustic_emb_low;  // acoustic branch and fc_a
  torch::Tensor unified_emb, unified_emb_low;    // acoustic + semantic, at both widths
  torch::Tensor mu, logvar, z;                   // z = mu unless sampled
  torch::Tensor mask;                            // (B, T) bool valid tokens; undefined = all
  // The `encode` output names (README.md, "The command line") in a fixed order (mask excluded; tensors a
  // baseline variant lacks are left out).
  std::vector<std::pair<std::string, torch::Tensor>> named() const;
};

struct AudioVAEImpl : torch::nn::Module {
  AudioVAEImpl(const ModelConfig& c, const MelConfig& dasheng_mel, const MelConfig& vocos_mel);

  // wave (B, N) 16 kHz; lengths (B) int64 valid samples of a zero-padded batch or undefined.
  // `sample` draws z = mu + exp(logvar / 2) * eps from the global generator.
  VaeFeatures encode(const torch::Tensor& wave, const torch::Tensor& lengths = {}, bool sample = false);
  // The tokenizer head on given branch outputs, cut to their common length.
  VaeFeatures encode_embeddings(torch::Tensor acoustic_emb, torch::Tensor semantic_emb, bool sample = false);
  // z (B, T, latent) -> waveform (B, T * samples_per_token).
  torch::Tensor decode(const torch::Tensor& z);
  // The same in windows of `chunk_tokens` with enough context on each side that the result
  // equals decode(z) (to float rounding) while memory stays bounded for long inputs.
  torch::Tensor decode_chunked(const torch::Tensor& z, int64_t chunk_tokens);
  // Tokens of context each side of a chunk that cover the decoder's receptive field.
  int64_t decoder_context_tokens() const;
  int64_t samples_per_token() const { return samples_per_token_; }
  // (B, T) bool: token t is valid when t < floor(length / samples_per_token).
  torch::Tensor token_mask(const torch::Tensor& lengths, int64_t tokens) const;
  const ModelConfig& config() const { return config_; }

  DashengTokenizer dasheng_tokenizer{nullptr};
  SemanticEncoder semantic_encoder{nullptr};                            // null for acoustic_only
  torch::nn::Linear fc_a{nullptr}, fc_mu{nullptr}, fc_logvar{nullptr};  // null for unified_1280

 private:
  ModelConfig config_;
  int64_t samples_per_token_;
};
TORCH_MODULE(AudioVAE);

// Parameter counts per top-level part ("semantic_encoder.encoder", ...) and the total, for logs.
std::vector<std::pair<std::string, int64_t>> parameter_breakdown(AudioVAEImpl& vae);

}  // namespace losatok::models
