// The MAE stage (docs/method.md, "MAE pretraining of the semantic encoder"): Dasheng-style
// masked-autoencoder pretraining of the semantic encoder on log-mel patches. A random share
// `mask_ratio` of each clip's 64x4 patches (in pairs of adjacent patches, as Dasheng's group
// masking) is dropped, the encoder sees the rest, a light transformer decoder fills the sequence
// back in with a learned mask token, and the loss is the MSE between the reconstructed and the
// dB log-mel patches (each standardised on its own) on the masked ones. The checkpoint's
// `semantic_encoder.encoder.*` is what SemBo's `train.encoder_weights` and the tokenizer load.
#pragma once

#include <torch/nn/modules/linear.h>

#include "losatok/models/dasheng.h"
#include "losatok/train/stage.h"

namespace losatok::train {

// mae.decoder: the light transformer that reconstructs the patches (Dasheng / MAE: 8 blocks of
// width 512 for a 768-wide encoder).
struct MaeDecoderConfig {
  int width = 512;
  int depth = 8;
  int num_heads = 16;
  double mlp_ratio = 4.0;

  template <class V>
  void visit(V& v) {
    v("width", width);
    v("depth", depth);
    v("num_heads", num_heads);
    v("mlp_ratio", mlp_ratio);
  }
  void validate() const;
  // The same block as the encoder's, at the decoder's sizes.
  EncoderConfig blocks(const EncoderConfig& encoder) const;
};

// mae.loss: L = lambda_mse x MSE over the masked patches (and lambda_visible x MSE over the
// visible ones; MAE uses 0).
struct MaeLossConfig {
  double lambda_mse = 1.0;
  double lambda_visible = 0.0;
  bool norm_patches = true;  // target = each patch standardised over its own values (norm_pix_loss)

  template <class V>
  void visit(V& v) {
    v("lambda_mse", lambda_mse);
    v("lambda_visible", lambda_visible);
    v("norm_patches", norm_patches);
  }
  void validate() const;
};

// The `mae:` section.
struct MaeStageConfig {
  double mask_ratio = 0.75;  // share of each clip's valid patches hidden from the encoder
  int mask_group = 2;        // adjacent patches masked together (Dasheng: 2, i.e. 80 ms)
  MaeDecoderConfig decoder;
  MaeLossConfig loss;

  template <class V>
  void visit(V& v) {
    v("mask_ratio", mask_ratio);
    v("mask_group", mask_group);
    v("decoder", decoder);
    v("loss", loss);
  }
  void validate() const;
};

// The decoder with its checkpoint names: `decoder_embed`, `mask_token`, `decoder_pos_embed`,
// `decoder_blocks.{i}`, `decoder_norm`, `decoder_pred` (under `mae_decoder.`).
struct MaeDecoderImpl : torch::nn::Module {
  MaeDecoderImpl(const MaeStageConfig& c, const EncoderConfig& encoder, int patch_dim);
  // visible (B, K, D) encoder outputs of the first K patches of the shuffled order, of which a
  // row's own kept ones are true in kept (B, K); restore (B, T) each patch's place in the
  // shuffled order; valid (B, T) bool. Returns (B, T, patch_dim).
  torch::Tensor forward(const torch::Tensor& visible, const torch::Tensor& kept, const torch::Tensor& restore,
                        const torch::Tensor& valid);

  torch::nn::Linear decoder_embed{nullptr}, decoder_pred{nullptr};
  torch::Tensor mask_token;         // (1, 1, width)
  torch::Tensor decoder_pos_embed;  // (1, patches_per_chunk, width)
  torch::nn::ModuleList decoder_blocks{nullptr};
  torch::nn::LayerNorm decoder_norm{nullptr};
};
TORCH_MODULE(MaeDecoder);

class MaeStage : public Stage {
 public:
  MaeStage(const RootConfig& cfg, const torch::Device& device);
  std::string name() const override { return "mae"; }
  std::vector<OptimizerSpec> optimizers() override;
  StepOutput train_step(std::size_t index, const data::Batch& batch, int64_t step) override;
  void set_training(bool training) override;
  std::map<std::string, double> validate(const std::function<bool(data::Batch&)>& next,
                                         const ValidationContext& context) override;
  std::string best_metric() const override { return "val/mae_loss"; }
  TensorMap model_state(bool include_frozen) override;
  void load_model_state(const TensorMap& tensors, const std::string& source, bool strict) override;
  NamedTensors ema_parameters() override;

  models::DashengEncoderImpl& encoder() { return *encoder_; }

  struct Output {
    torch::Tensor masked_mse, visible_mse;      // 0-d: mean squared error per patch value
    torch::Tensor masked_count, visible_count;  // 0-d: masked / visible valid patches
  };
  // One masked reconstruction of a batch; the mask comes from `generator` (the default one when
  // undefined).
  Output reconstruct(const data::Batch& batch, bool train_bn, c10::optional<at::Generator> generator);

 private:
  RootConfig cfg_;
  MaeStageConfig section_;
  torch::Device device_;
  std::shared_ptr<torch::nn::Module> root_;  // `semantic_encoder.encoder`, `mae_decoder`
  std::shared_ptr<torch::nn::Module> semantic_encoder_;
  models::DashengEncoder encoder_{nullptr};
  MaeDecoder decoder_{nullptr};
};

}  // namespace losatok::train
