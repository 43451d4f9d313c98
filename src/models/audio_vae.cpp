// The LoSATok tokenizer: acoustic branch, tokenizer head, decoder, and chunked decoding.
#include "losatok/models/audio_vae.h"

#include <torch/torch.h>

#include "losatok/core/error.h"
#include "losatok/models/init.h"
#include "losatok/models/layers.h"

namespace losatok::models {

namespace nn = torch::nn;

AcousticEncoderImpl::AcousticEncoderImpl(int dim, const AcousticConfig& c, const MelConfig& mel)
    : frontend_(std::make_shared<audio::LogMel>(mel)) {
  c.validate();
  patch_embed = register_module(
      "patch_embed",
      nn::Conv2d(
          nn::Conv2dOptions(1, dim, {mel.n_mels, c.patch_frames}).stride({mel.n_mels, c.patch_frames})));
  norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({dim}).eps(c.norm_eps)));
  init_trunc_normal(*this);
}

torch::Tensor AcousticEncoderImpl::forward(const torch::Tensor& wave) {
  const torch::Tensor mel = (*frontend_)(wave);                    // (B, n_mels, F)
  const torch::Tensor x = patch_embed->forward(mel.unsqueeze(1));  // (B, D, 1, T)
  return norm->forward(x.squeeze(2).transpose(1, 2));              // (B, T, D)
}

DashengTokenizerImpl::DashengTokenizerImpl(const ModelConfig& c, const MelConfig& vocos_mel) {
  encoder = register_module("encoder", AcousticEncoder(c.encoder.embed_dim, c.acoustic, vocos_mel));
  upsampler = register_module(
      "upsampler",
      nn::ConvTranspose1d(nn::ConvTranspose1dOptions(c.latent_dim(), c.decoder.dim, c.decoder.upsample)
                              .stride(c.decoder.upsample)));
  decoder = register_module("decoder", VocosDecoder(c.decoder.dim, c.decoder));
}

std::vector<std::pair<std::string, torch::Tensor>> VaeFeatures::named() const {
  std::vector<std::pair<std::string, torch::Tensor>> all = {{"z", z},
                                                            {"mu", mu},
                                                            {"logvar", logvar},
                                                            {"semantic_emb", semantic_emb},
                                                            {"acoustic_emb", acoustic_emb},
                                                            {"unified_emb", unified_emb},
                                                            {"semantic_emb_low", semantic_emb_low},
                                                            {"acoustic_emb_low", acoustic_emb_low},
                                                            {"unified_emb_low", unified_emb_low}};
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& [name, t] : all)
    if (t.defined()) out.emplace_back(name, t);  // the baselines lack some
  return out;
}

AudioVAEImpl::AudioVAEImpl(const ModelConfig& c, const MelConfig& dasheng_mel, const MelConfig& vocos_mel)
    : config_(c) {
  c.validate();
  samples_per_token_ = static_cast<int64_t>(dasheng_mel.hop_length) * c.encoder.patch_frames;
  const int64_t acoustic_spt = static_cast<int64_t>(vocos_mel.hop_length) * c.acoustic.patch_frames;
  const int64_t decoder_spt = static_cast<int64_t>(c.decoder.hop_length) * c.decoder.upsample;
  if (acoustic_spt != samples_per_token_ || decoder_spt != samples_per_token_)
    throw Error(
        "model: the token rate must agree: semantic encoder " + std::to_string(samples_per_token_) +
        " samples per token (frontend.dasheng.hop_length x model.encoder.patch_frames), acoustic branch " +
        std::to_string(acoustic_spt) + ", decoder " + std::to_string(decoder_spt) +
        " (model.decoder.hop_length x model.decoder.upsample)");
  dasheng_tokenizer = register_module("dasheng_tokenizer", DashengTokenizer(c, vocos_mel));
  if (c.has_semantic_branch())
    semantic_encoder = register_module("semantic_encoder", SemanticEncoder(c, dasheng_mel));
  const int dim = c.encoder.embed_dim, latent = c.latent_dim();
  if (c.is_variational()) {
    fc_a = register_module("fc_a", nn::Linear(dim, latent));
    fc_mu = register_module("fc_mu", nn::Linear(latent, latent));
    fc_logvar = register_module("fc_logvar", nn::Linear(latent, latent));
  }
}

torch::Tensor AudioVAEImpl::token_mask(const torch::Tensor& lengths, int64_t tokens) const {
  const torch::Tensor t = torch::arange(tokens, lengths.options());
  return t.unsqueeze(0) < torch::div(lengths, samples_per_token_, "floor").unsqueeze(1);
}

VaeFeatures AudioVAEImpl::encode(const torch::Tensor& wave, const torch::Tensor& lengths, bool sample) {
  if (wave.dim() != 2)
    throw Error("encode: expected a (batch, samples) waveform, got " + std::to_string(wave.dim()) +
                " dimensions");
  torch::Tensor semantic_emb;
  if (semantic_encoder) semantic_emb = semantic_encoder->encoder->forward(wave, lengths);
  torch::Tensor acoustic_emb = dasheng_tokenizer->encoder->forward(wave);
  VaeFeatures f = encode_embeddings(acoustic_emb, semantic_emb, sample);
  if (lengths.defined()) f.mask = token_mask(lengths.to(wave.device()), f.mu.size(1));
  return f;
}

VaeFeatures AudioVAEImpl::encode_embeddings(torch::Tensor acoustic_emb, torch::Tensor semantic_emb,
                                            bool sample) {
  VaeFeatures f;
  if (!config_.has_semantic_branch()) {  // acoustic_only
    f.acoustic_emb = acoustic_emb;
    f.acoustic_emb_low = apply_linear(fc_a, f.acoustic_emb);
    f.unified_emb = f.acoustic_emb;
    f.unified_emb_low = f.acoustic_emb_low;
  } else {
    if (!semantic_emb.defined()) throw Error("encode: the semantic features are missing");
    const int64_t t = std::min(acoustic_emb.size(1), semantic_emb.size(1));
    f.acoustic_emb = acoustic_emb.narrow(1, 0, t);
    f.semantic_emb = semantic_emb.narrow(1, 0, t);
    f.unified_emb = f.acoustic_emb + f.semantic_emb;
    if (!config_.is_variational()) {  // unified_1280: the decoder takes unified_emb itself
      f.mu = f.z = f.unified_emb;
      return f;
    }
    f.semantic_emb_low = semantic_encoder->bottleneck->compress(f.semantic_emb);
    f.acoustic_emb_low = apply_linear(fc_a, f.acoustic_emb);
    f.unified_emb_low = f.acoustic_emb_low + f.semantic_emb_low;
  }
  f.mu = apply_linear(fc_mu, f.unified_emb_low);
  f.logvar = apply_linear(fc_logvar, f.unified_emb_low).clamp(-config_.logvar_clamp, config_.logvar_clamp);
  f.z = sample ? f.mu + torch::exp(0.5 * f.logvar) * torch::randn_like(f.mu) : f.mu;
  return f;
}

torch::Tensor AudioVAEImpl::decode(const torch::Tensor& z) {
  if (z.dim() != 3 || z.size(2) != config_.latent_dim())
    throw Error("decode: expected latents (batch, tokens, " + std::to_string(config_.latent_dim()) +
                "), got " + c10::str(z.sizes()));
  const torch::Tensor x = dasheng_tokenizer->upsampler->forward(z.transpose(1, 2));  // (B, dim, T * upsample)
  return dasheng_tokenizer->decoder->forward(x);
}

int64_t AudioVAEImpl::decoder_context_tokens() const {
  const DecoderConfig& d = config_.decoder;
  // Each conv (embed + one per block) sees kernel/2 frames each side; the overlap-add adds
  // n_fft / hop frames. LayerNorms and Linears are per frame.
  const int64_t frames = static_cast<int64_t>(d.kernel_size / 2) * (d.num_layers + 1) +
                         (d.n_fft + d.hop_length - 1) / d.hop_length + 1;
  return (frames + d.upsample - 1) / d.upsample;
}

torch::Tensor AudioVAEImpl::decode_chunked(const torch::Tensor& z, int64_t chunk_tokens) {
  const int64_t total = z.size(1), context = decoder_context_tokens();
  if (chunk_tokens <= 0 || total <= chunk_tokens + 2 * context) return decode(z);
  std::vector<torch::Tensor> pieces;
  for (int64_t start = 0; start < total; start += chunk_tokens) {
    const int64_t len = std::min(chunk_tokens, total - start);
    const int64_t a = std::max<int64_t>(0, start - context), b = std::min(total, start + len + context);
    const torch::Tensor y = decode(z.narrow(1, a, b - a));
    pieces.push_back(y.narrow(1, (start - a) * samples_per_token_, len * samples_per_token_));
  }
  return torch::cat(pieces, 1);
}

std::vector<std::pair<std::string, int64_t>> parameter_breakdown(AudioVAEImpl& vae) {
  std::vector<std::pair<std::string, int64_t>> rows;
  if (vae.semantic_encoder) {
    rows.emplace_back("semantic_encoder.encoder", count_parameters(*vae.semantic_encoder->encoder));
    rows.emplace_back("semantic_encoder.bottleneck", count_parameters(*vae.semantic_encoder->bottleneck));
  }
  rows.emplace_back("dasheng_tokenizer.encoder", count_parameters(*vae.dasheng_tokenizer->encoder));
  rows.emplace_back("dasheng_tokenizer.upsampler", count_parameters(*vae.dasheng_tokenizer->upsampler));
  rows.emplace_back("dasheng_tokenizer.decoder", count_parameters(*vae.dasheng_tokenizer->decoder));
  if (vae.fc_a)
    rows.emplace_back("fc_a + fc_mu + fc_logvar", count_parameters(*vae.fc_a) + count_parameters(*vae.fc_mu) +
                                                      count_parameters(*vae.fc_logvar));
  rows.emplace_back("total", count_parameters(vae));
  return rows;
}

}  // namespace losatok::models
