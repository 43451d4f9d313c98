// Sizes of the LoSATok modules (docs/method.md). torch-free so configs need not include torch.
// The defaults are the paper's; configs/model/tiny.yaml shrinks them for tests.
#pragma once

#include <string>

namespace losatok {

// The frozen semantic encoder (MiDashengLM / Dasheng-0.6B shape). Its input is the
// `frontend.dasheng` log-mel; one token per `patch_frames` mel frames (25 Hz).
struct EncoderConfig {
  int embed_dim = 1280;
  int depth = 32;
  int num_heads = 16;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  int patch_frames = 4;
  int target_length = 1008;  // mel frames per independently encoded chunk (10.08 s)
  double norm_eps = 1e-6;    // LayerNorms
  double bn_eps = 1e-5;      // init_bn over the mel bins

  template <class V>
  void visit(V& v) {
    v("embed_dim", embed_dim);
    v("depth", depth);
    v("num_heads", num_heads);
    v("mlp_ratio", mlp_ratio);
    v("qkv_bias", qkv_bias);
    v("patch_frames", patch_frames);
    v("target_length", target_length);
    v("norm_eps", norm_eps);
    v("bn_eps", bn_eps);
  }
  void validate() const;
  int mlp_dim() const { return static_cast<int>(embed_dim * mlp_ratio); }
  int patches_per_chunk() const { return target_length / patch_frames; }
};

// SemBo: compressor embed_dim -> hidden_dim -> latent_dim and restorer back (`mlp`), or one of
// the paper's training-free baselines for the same latent size: `pca` (projection fitted on
// encoder features) and `channel_merge` (mean over groups of embed_dim / latent_dim adjacent
// channels).
struct SemBoConfig {
  std::string method = "mlp";  // mlp | pca | channel_merge
  int hidden_dim = 512;
  int latent_dim = 128;
  double dropout = 0.0;  // on the compressed latent while training (mlp)

  template <class V>
  void visit(V& v) {
    v("method", method);
    v("hidden_dim", hidden_dim);
    v("latent_dim", latent_dim);
    v("dropout", dropout);
  }
  void validate() const;
};

// Acoustic branch: `frontend.vocos` log-mel -> Conv2d patch (all mels x patch_frames) ->
// LayerNorm, at the encoder's width.
struct AcousticConfig {
  int patch_frames = 4;
  double norm_eps = 1e-5;  // PyTorch's default, as the released model

  template <class V>
  void visit(V& v) {
    v("patch_frames", patch_frames);
    v("norm_eps", norm_eps);
  }
  void validate() const;
};

// Decoder: ConvTranspose1d upsampler (latent -> dim, x`upsample`) -> Vocos backbone ->
// iSTFT head.
struct DecoderConfig {
  int dim = 1280;
  int intermediate_dim = 5120;
  int num_layers = 12;
  int kernel_size = 7;
  int upsample = 2;               // token rate -> backbone frame rate (25 -> 50 Hz)
  double layer_scale_init = 0.0;  // 0 = 1 / num_layers (Vocos)
  int n_fft = 1280;
  int hop_length = 320;
  double mag_max = 100.0;  // exp(log-magnitude) is clipped here
  double norm_eps = 1e-6;
  bool grad_checkpointing = false;  // recompute each ConvNeXt block in backward (less memory)

  template <class V>
  void visit(V& v) {
    v("dim", dim);
    v("intermediate_dim", intermediate_dim);
    v("num_layers", num_layers);
    v("kernel_size", kernel_size);
    v("upsample", upsample);
    v("layer_scale_init", layer_scale_init);
    v("n_fft", n_fft);
    v("hop_length", hop_length);
    v("mag_max", mag_max);
    v("norm_eps", norm_eps);
    v("grad_checkpointing", grad_checkpointing);
  }
  void validate() const;
};

// `variant` picks the tokenizer: `losatok` (the paper's), or one of its baselines:
// `acoustic_only` (no semantic branch: the latent comes from the acoustic branch alone) and
// `unified_1280` (no bottleneck: the decoder takes semantic_emb + acoustic_emb, 1280-d,
// deterministic, DashengTokenizer-like).
struct ModelConfig {
  std::string variant = "losatok";
  EncoderConfig encoder;
  SemBoConfig sembo;
  AcousticConfig acoustic;
  DecoderConfig decoder;
  double logvar_clamp = 20.0;  // logvar = clamp(fc_logvar(.), -c, c)

  template <class V>
  void visit(V& v) {
    v("variant", variant);
    v("encoder", encoder);
    v("sembo", sembo);
    v("acoustic", acoustic);
    v("decoder", decoder);
    v("logvar_clamp", logvar_clamp);
  }
  void validate() const;
  int latent_dim() const { return variant == "unified_1280" ? encoder.embed_dim : sembo.latent_dim; }
  bool has_semantic_branch() const { return variant != "acoustic_only"; }
  bool is_variational() const { return variant != "unified_1280"; }
};

}  // namespace losatok
