// The SemBo stage (docs/method.md, "SemBo"): the frozen semantic encoder's features (computed
// on the fly or read from the feature cache) compressed to latent_dim and restored, trained with
// lambda_rec L_rec + lambda_rel L_rel; or one of the training-free baselines (`pca` fitted by
// streaming the features through, `channel_merge`), saved as a checkpoint all the same.
#pragma once

#include "losatok/models/sembo.h"
#include "losatok/train/stage.h"

namespace losatok::train {

// sembo.loss: L = lambda_rec L_rec + lambda_rel L_rel.
struct SemBoLossConfig {
  double lambda_rec = 1e3;
  double lambda_rel = 1.0;  // 0 = no time-relation loss

  template <class V>
  void visit(V& v) {
    v("lambda_rec", lambda_rec);
    v("lambda_rel", lambda_rel);
  }
  void validate() const;
};

// The `sembo:` section.
struct SemBoStageConfig {
  // Validation also reports the training-free baselines (channel merge, and PCA fitted on the
  // features of the first `baseline_fit_steps` training steps).
  bool baselines = true;
  int64_t baseline_fit_steps = 100;
  SemBoLossConfig loss;

  template <class V>
  void visit(V& v) {
    v("baselines", baselines);
    v("baseline_fit_steps", baseline_fit_steps);
    v("loss", loss);
  }
  void validate() const;
};

// Loads frozen encoder weights from any file read_weights understands (our checkpoints,
// MiDashengLM / Dasheng files, HF folders), strictly; errors name the file.
void load_semantic_encoder(models::DashengEncoderImpl& encoder, const std::string& path);

class SemBoStage : public Stage {
 public:
  SemBoStage(const RootConfig& cfg, const torch::Device& device);
  std::string name() const override { return "sembo"; }
  std::vector<OptimizerSpec> optimizers() override;
  StepOutput train_step(std::size_t index, const data::Batch& batch, int64_t step) override;
  // "tokens" (L_rec: valid tokens) and "pairs" (L_rel: valid token pairs, sum of T_i^2).
  std::map<std::string, double> loss_counts(std::size_t index, const data::Batch& batch,
                                            int64_t step) const override;
  void set_training(bool training) override;
  std::map<std::string, double> validate(const std::function<bool(data::Batch&)>& next,
                                         const ValidationContext& context) override;
  std::string best_metric() const override { return "val/rec_cos_err"; }
  TensorMap model_state(bool include_frozen) override;
  void load_model_state(const TensorMap& tensors, const std::string& source, bool strict) override;
  NamedTensors ema_parameters() override;
  TensorMap extra_state() override;
  void load_extra_state(const TensorMap& tensors, const std::string& where) override;
  std::optional<data::CacheProducer> cache_producer() override;

  models::SemanticEncoder& model() { return model_; }

 private:
  // (B, T, D) features and (B, T) valid-token mask of a batch, on the device.
  std::pair<torch::Tensor, torch::Tensor> features(const data::Batch& batch);
  void apply_pca_fit();  // method pca: the fitted projection into the bottleneck's buffers

  RootConfig cfg_;
  SemBoStageConfig section_;
  torch::Device device_;
  std::shared_ptr<torch::nn::Module> root_;  // registers `semantic_encoder` for reference names
  models::SemanticEncoder model_{nullptr};
  models::SemanticBottleneck channel_merge_{nullptr};  // baseline (when the sizes allow it)
  models::PcaFit pca_fit_;                             // the pca method's fit, or the PCA baseline's
};

}  // namespace losatok::train
