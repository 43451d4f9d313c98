// The representations `eval probe` and `eval rank` compare (docs/method.md, "Evaluation"), all
// computed from one tokenizer: its frozen encoder, SemBo, training-free baselines, latents.
#pragma once

#include <torch/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "losatok/core/run_config.h"
#include "losatok/data/loader.h"
#include "losatok/models/audio_vae.h"

namespace losatok::eval {

// semantic (semantic_emb, the encoder's width), sembo (semantic_emb_low), pca and
// channel_merge (the 128-d training-free baselines of semantic_emb), latent (mu), acoustic
// (acoustic_emb_low, the acoustic branch alone after fc_a).
const std::vector<std::string>& representation_names();
// The encoder output a representation is computed from; an unknown name is an error.
std::string source_tensor(const std::string& representation);

// The distinct source tensors of `representations`, in first-use order (validates the names).
std::vector<std::string> source_tensors(const std::vector<std::string>& representations);

// One split encoded once: per source tensor, the mean over each clip's valid frames and
// (when frames are kept) the frames themselves.
struct EncodedSplit {
  std::vector<data::Clip> clips;                // readable clips, in manifest order
  std::map<std::string, torch::Tensor> pooled;  // source tensor -> (clips, D)
  std::map<std::string, torch::Tensor> frames;  // source tensor -> (frames, D), if kept
  std::vector<std::string> bad;                 // clip keys that could not be read
  double audio_seconds = 0, seconds = 0;        // audio encoded, wall time
};

// Encodes `clips` with `vae` and keeps the `sources` tensors pooled; for the `frames_of`
// sources also up to `keep_frames` frames each (a seeded uniform subset when there are more).
EncodedSplit encode_split(models::AudioVAEImpl& vae, const RootConfig& cfg,
                          const std::vector<data::Clip>& clips, const std::vector<std::string>& sources,
                          int batch_size, const torch::Device& device,
                          const std::vector<std::string>& frames_of = {}, int64_t keep_frames = 0);

// Up to `max_rows` rows of `x` (N, D): all of them, or a uniform subset drawn with `seed`,
// kept in their original order.
torch::Tensor subsample_rows(const torch::Tensor& x, int64_t max_rows, uint64_t seed);

// Maps source features (..., D) to a representation: the identity, or for pca / channel_merge
// the SemanticBottleneck baseline of `model.sembo.latent_dim` channels, PCA fitted on
// `pca_fit_frames` (rows of semantic_emb).
std::function<torch::Tensor(const torch::Tensor&)> representation_map(
    const std::string& representation, const ModelConfig& model, const torch::Tensor& pca_fit_frames = {});

}  // namespace losatok::eval
