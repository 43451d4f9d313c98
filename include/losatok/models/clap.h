// LAION-CLAP (Wu et al. 2023), the non-fusion HTSAT-tiny + RoBERTa model of
// `630k-audioset-best.pt`, frozen, for the CLAP score: the cosine between a caption's text
// embedding and a clip's audio embedding, as LAION-CLAP computes them. Module names are the
// checkpoint's (after its DDP `module.` prefix), so the file loads as distributed; every size
// comes from the tensors' shapes, so tiny test checkpoints load through the same code.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "losatok/data/bpe.h"

namespace losatok::models {

// LAION's "repeatpad" for a 1-D clip shorter than `clip_samples` (whole copies, then zeros).
// A longer clip keeps its first `clip_samples` (LAION crops at a random offset: we do not, so
// scores are reproducible).
torch::Tensor clap_fit_clip(const torch::Tensor& wave, int64_t clip_samples);

// HTS-AT (Chen et al. 2022) as LAION-CLAP builds it. The front end is fixed by LAION's
// HTSAT-tiny config (not stored in the file); melW, when the file has it, is checked against it.
struct HtsatConfig {
  int embed_dim = 96;
  std::vector<int> depths{2, 2, 6, 2};
  std::vector<int> heads{4, 8, 16, 32};
  int window = 8;
  int patch = 4;         // patch size = patch stride
  int mlp_hidden = 384;  // of the first stage (mlp_ratio 4), doubling with the width
  int mel_bins = 64;
  int spec_size = 256;  // HTSAT's square input; freq_ratio = spec_size / mel_bins
  int num_classes = 527;
  int tscam_kernel_freq = 2;
  int sample_rate = 48000, n_fft = 1024, hop = 480;
  double fmin = 50, fmax = 14000;
  int64_t clip_samples = 480000;
  int freq_ratio() const { return spec_size / mel_bins; }
  int num_features() const { return embed_dim << (static_cast<int>(depths.size()) - 1); }
};

// RoBERTa (Liu et al. 2019) as Hugging Face's RobertaModel: heads = hidden / 64.
struct RobertaConfig {
  int vocab_size = 50265;
  int hidden = 768;
  int layers = 12;
  int heads = 12;
  int intermediate = 3072;
  int max_positions = 514;
  int type_vocab = 1;
  int pad_id = 1;  // padding_idx: positions count from pad_id + 1
  double layer_norm_eps = 1e-5;
};

struct ClapConfig {
  HtsatConfig audio;
  RobertaConfig text;
  int joint_dim = 512;
  int context_length = 77;
  // Sizes from a state dict's shapes (names without `module.`); a missing tensor or an
  // inconsistent size is an error naming `source` and the key.
  static ClapConfig from_state_dict(const std::map<std::string, torch::Tensor>& w, const std::string& source);
};

// --- HTSAT -----------------------------------------------------------------------------------

// Window attention with a relative position bias (Swin, Liu et al. 2021).
struct SwinWindowAttentionImpl : torch::nn::Module {
  SwinWindowAttentionImpl(int dim, int heads, int window);
  // x (B * nW, window^2, C); mask (nW, window^2, window^2) additive, or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  int heads, window;
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  torch::Tensor relative_position_bias_table;  // ((2 window - 1)^2, heads)
  torch::Tensor relative_position_index;       // (window^2, window^2) int64, recomputed
};
TORCH_MODULE(SwinWindowAttention);

// (window^2, window^2) indices into the bias table, as Swin computes them.
torch::Tensor swin_relative_position_index(int window);
// (nW, window^2, window^2): 0 within, -100 across the regions of the cyclically shifted map.
torch::Tensor swin_shifted_window_mask(int resolution, int window, int shift);

struct SwinMlpImpl : torch::nn::Module {
  SwinMlpImpl(int dim, int hidden);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(SwinMlp);

// One block: (shifted) window attention and an MLP, pre-norm residuals. A block whose map is no
// larger than the window uses one window and no shift, as Swin does.
struct SwinBlockImpl : torch::nn::Module {
  SwinBlockImpl(int dim, int resolution, int heads, int window, bool shifted, int mlp_hidden);
  torch::Tensor forward(const torch::Tensor& x);  // (B, resolution^2, dim)
  int resolution, window, shift;
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  SwinWindowAttention attn{nullptr};
  SwinMlp mlp{nullptr};
  torch::Tensor attn_mask;  // shifted blocks only, recomputed
};
TORCH_MODULE(SwinBlock);

struct PatchMergingImpl : torch::nn::Module {
  explicit PatchMergingImpl(int dim);
  torch::Tensor forward(const torch::Tensor& x, int resolution);  // (B, r^2, C) -> (B, r^2 / 4, 2C)
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear reduction{nullptr};
};
TORCH_MODULE(PatchMerging);

// layers.{i}: the blocks, then patch merging except in the last stage.
struct SwinStageImpl : torch::nn::Module {
  SwinStageImpl(const HtsatConfig& c, int index, int resolution);
  torch::Tensor forward(const torch::Tensor& x);
  int resolution;
  torch::nn::ModuleList blocks{nullptr};
  PatchMerging downsample{nullptr};
};
TORCH_MODULE(SwinStage);

struct PatchEmbedImpl : torch::nn::Module {
  PatchEmbedImpl(int patch, int embed_dim);
  torch::nn::Conv2d proj{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(PatchEmbed);

// audio_branch: wave -> log-mel -> bn0 -> 256 x 256 image -> Swin -> the token average.
// tscam_conv and head (the AudioSet classifier) load but are not computed.
struct HtsatImpl : torch::nn::Module {
  explicit HtsatImpl(const HtsatConfig& c);
  // (B, clip_samples) -> (B, T, mel_bins): 10 log10(max(mel power, 1e-10)).
  torch::Tensor log_mel(const torch::Tensor& wave);
  // (B, T, mel_bins) -> (B, 1, spec_size, spec_size): bn0, bicubic time stretch to
  // spec_size * freq_ratio frames, the freq_ratio time chunks stacked along frequency.
  torch::Tensor image(const torch::Tensor& log_mel);
  // (B, 1, S, S) -> (B, num_features): latent_output.
  torch::Tensor embedding(const torch::Tensor& image);
  HtsatConfig config;
  torch::Tensor conv_real, conv_imag;  // spectrogram_extractor.stft.conv_{real,imag}.weight
  torch::Tensor melW;                  // logmel_extractor.melW (n_fft / 2 + 1, mel_bins)
  torch::nn::BatchNorm2d bn0{nullptr};
  PatchEmbed patch_embed{nullptr};
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Conv2d tscam_conv{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(Htsat);

// --- RoBERTa ---------------------------------------------------------------------------------

struct RobertaEmbeddingsImpl : torch::nn::Module {
  explicit RobertaEmbeddingsImpl(const RobertaConfig& c);
  torch::Tensor forward(const torch::Tensor& ids);  // (B, L) -> (B, L, hidden)
  int pad_id;
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
};
TORCH_MODULE(RobertaEmbeddings);

// encoder.layer.{i}: attention.self.{query,key,value}, attention.output.{dense,LayerNorm},
// intermediate.dense, output.{dense,LayerNorm}; post-LN residuals, exact GELU.
struct RobertaLayerImpl : torch::nn::Module {
  explicit RobertaLayerImpl(const RobertaConfig& c);
  // x (B, L, hidden); bias (B, 1, 1, L) additive key padding mask.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias);
  int heads;
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, attention_dense{nullptr},
      intermediate_dense{nullptr}, output_dense{nullptr};
  torch::nn::LayerNorm attention_norm{nullptr}, output_norm{nullptr};
};
TORCH_MODULE(RobertaLayer);

// text_branch: embeddings, encoder.layer, pooler.dense; forward gives pooler_output.
struct RobertaModelImpl : torch::nn::Module {
  explicit RobertaModelImpl(const RobertaConfig& c);
  // ids (B, L) int64, mask (B, L) (nonzero = token) -> tanh(pooler.dense(h[:, 0])) (B, hidden).
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask);
  RobertaConfig config;
  RobertaEmbeddings embeddings{nullptr};
  torch::nn::ModuleList layer{nullptr};  // registered as encoder.layer
  torch::nn::Linear pooler_dense{nullptr};
};
TORCH_MODULE(RobertaModel);

// --- CLAP ------------------------------------------------------------------------------------

// The whole checkpoint: audio_branch, text_branch, {audio,text}_projection (Linear, ReLU,
// Linear), {audio,text}_transform (the training loss' MLPs: loaded, not computed),
// logit_scale_{a,t}. Inputs go to `device`; outputs stay there, float32.
struct ClapImpl : torch::nn::Module {
  explicit ClapImpl(const ClapConfig& c);

  // wave_48k (B, N) float at 48 kHz, mono: each row fitted to 10 s (clap_fit_clip).
  torch::Tensor log_mel(const torch::Tensor& wave_48k);          // (B, 1001, 64)
  torch::Tensor embedding(const torch::Tensor& wave_48k);        // (B, 768) HTSAT latent_output
  torch::Tensor audio_embedding(const torch::Tensor& wave_48k);  // (B, 512), unit norm
  // Clips of any lengths, each fitted on its own.
  torch::Tensor audio_embedding(const std::vector<torch::Tensor>& waves_48k);

  // Ids (B, context_length) and the attention mask, as RobertaTokenizer gives them.
  std::pair<torch::Tensor, torch::Tensor> tokenize(const std::vector<std::string>& texts) const;
  torch::Tensor text_embedding(const std::vector<std::string>& texts);  // (B, 512), unit norm
  torch::Tensor text_embedding(const torch::Tensor& ids, const torch::Tensor& mask);

  ClapConfig config;
  torch::Device device = torch::kCPU;
  std::shared_ptr<const data::ByteLevelBpe> tokenizer;  // set by load_clap
  Htsat audio_branch{nullptr};
  RobertaModel text_branch{nullptr};
  torch::nn::Sequential audio_projection{nullptr}, text_projection{nullptr};
  std::shared_ptr<torch::nn::Module> audio_transform, text_transform;
  torch::Tensor logit_scale_a, logit_scale_t;
};
TORCH_MODULE(Clap);

// `checkpoint`: LAION-CLAP's 630k-audioset-best.pt (a torch.save of {"state_dict": ...}, keys
// `module.`-prefixed or not); `tokenizer_dir`: roberta-base's vocab.json + merges.txt. Frozen,
// eval mode, float32 on `device`. Recomputed buffers (the STFT kernels, melW, attn_mask,
// relative_position_index) may be absent; when present they must equal the recomputation.
// text_branch.embeddings.position_ids / token_type_ids are accepted and ignored. A fusion
// checkpoint is refused.
Clap load_clap(const std::string& checkpoint, const std::string& tokenizer_dir,
               const torch::Device& device = torch::kCPU);

}  // namespace losatok::models
