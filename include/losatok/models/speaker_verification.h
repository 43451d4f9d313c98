// Speaker similarity (SIM) as seed-tts-eval / F5-TTS compute it: UniSpeech's WavLM-Large +
// ECAPA-TDNN speaker-verification model (`wavlm_large_finetune.pth`), frozen; SIM is the cosine
// between two clips' embeddings. Followed: microsoft/UniSpeech
// downstreams/speaker_verification/{verification.py, models/ecapa_tdnn.py} (as copied into
// SWivid/F5-TTS src/f5_tts/eval/ecapa_tdnn.py), s3prl/s3prl s3prl/upstream/wavlm/{expert.py,
// WavLM.py, modules.py}. Module names are the checkpoint's (its "model" dict).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <string>

#include "losatok/models/wav2vec2.h"

namespace losatok::models {

// ECAPA_TDNN_SMALL's head: channels 512, emb_dim 256, 1536 pooled channels, attention 128,
// SE bottleneck 128, Res2Net scale 8, dilations 2 / 3 / 4 (fixed by the code, not the file).
struct EcapaTdnnConfig {
  int feat_dim = 1024;  // the encoder's width
  int num_states = 25;  // feature_weight: one per hidden state (layers + 1)
  int channels = 512;
  int cat_channels = 1536;  // conv's output = the pooled channels
  int emb_dim = 256;
  int attention_channels = 128;
  int se_bottleneck = 128;
  int scale = 8;
  int first_kernel = 5;
  bool global_context_att = false;
  // From the shapes of the head's tensors (names without the checkpoint's "model." level).
  static EcapaTdnnConfig from_state_dict(const std::map<std::string, torch::Tensor>& w,
                                         const std::string& source);
};

// conv -> ReLU -> bn (the order of the code: BatchNorm after the ReLU).
struct Conv1dReluBnImpl : torch::nn::Module {
  Conv1dReluBnImpl(int in, int out, int kernel, int padding, int dilation);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv1d conv{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};
TORCH_MODULE(Conv1dReluBn);

// Res2Net: scale - 1 chained (conv -> ReLU -> bn) on channel groups, the last group passed on.
struct Res2Conv1dReluBnImpl : torch::nn::Module {
  Res2Conv1dReluBnImpl(int channels, int kernel, int padding, int dilation, int scale);
  torch::Tensor forward(const torch::Tensor& x);
  int width;
  torch::nn::ModuleList convs{nullptr}, bns{nullptr};
};
TORCH_MODULE(Res2Conv1dReluBn);

struct SeConnectImpl : torch::nn::Module {
  SeConnectImpl(int channels, int bottleneck);
  torch::Tensor forward(const torch::Tensor& x);  // (B, C, T)
  torch::nn::Linear linear1{nullptr}, linear2{nullptr};
};
TORCH_MODULE(SeConnect);

// Conv1dReluBn1, Res2Conv1dReluBn, Conv1dReluBn2, SE_Connect, plus the input (through
// `shortcut`, a 1x1 conv, only when the widths differ).
struct SeRes2BlockImpl : torch::nn::Module {
  SeRes2BlockImpl(int in, int out, int kernel, int dilation, int scale, int se_bottleneck);
  torch::Tensor forward(const torch::Tensor& x);
  Conv1dReluBn conv1{nullptr}, conv2{nullptr};
  Res2Conv1dReluBn res2{nullptr};
  SeConnect se{nullptr};
  torch::nn::Conv1d shortcut{nullptr};
};
TORCH_MODULE(SeRes2Block);

// Attentive statistics pooling: (B, C, T) -> (B, 2C) = [weighted mean, weighted std].
struct AttentiveStatsPoolImpl : torch::nn::Module {
  AttentiveStatsPoolImpl(int in, int attention_channels, bool global_context_att);
  torch::Tensor forward(const torch::Tensor& x);
  bool global_context_att;
  torch::nn::Conv1d linear1{nullptr}, linear2{nullptr};
};
TORCH_MODULE(AttentiveStatsPool);

// The checkpoint's "model": feature_extract.model.* (the WavLM), feature_weight, layer1..4,
// conv, pooling, bn, linear. instance_norm (InstanceNorm1d, no affine, no running stats) has no
// tensors.
struct SpeakerVerificationImpl : torch::nn::Module {
  SpeakerVerificationImpl(const Wav2Vec2Config& encoder, const EcapaTdnnConfig& head);
  // wave16k (T) or (B, T) float mono at 16 kHz -> (emb_dim) or (B, emb_dim), not normalised:
  // the encoder's hidden states (s3prl's, with the wave layer-normed first when the encoder's
  // normalize_waveform is set), softmax(feature_weight)-weighted sum, + 1e-6, instance norm over
  // time, ECAPA-TDNN. Inputs go to `device`; the output stays there.
  torch::Tensor embed(const torch::Tensor& wave16k);
  // The features the TDNN reads (B, feat_dim, T), after the instance norm.
  torch::Tensor features(const torch::Tensor& wave16k);

  Wav2Vec2Config encoder_config;
  EcapaTdnnConfig config;
  torch::Device device = torch::kCPU;
  Wav2Vec2Encoder encoder{nullptr};  // registered as feature_extract.model
  torch::Tensor feature_weight;      // (num_states)
  Conv1dReluBn layer1{nullptr};
  SeRes2Block layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::Conv1d conv{nullptr};
  AttentiveStatsPool pooling{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  torch::nn::Linear linear{nullptr};
};
TORCH_MODULE(SpeakerVerification);

// UniSpeech's checkpoint: a torch.save of {"model": state dict, ...} (read through
// io::read_weights, whose names then start with "model."), or the state dict itself (.pth or
// safetensors). Tensors outside the model (the WavLM's mask_emb, the training loss head's
// loss_calculator.*, optimizer state) are ignored; a missing one is an error naming the file and
// the key. The WavLM's sizes come from the shapes (heads as its relative bias table shows them,
// 16 for WavLM-Large); normalize_waveform is set
// (WavLM-Large's cfg.normalize); WavLM's max_distance is not in the file (WavLM-Large: 800).
// Frozen, eval mode, float32 on `device`.
SpeakerVerification load_speaker_verification(const std::string& path,
                                              const torch::Device& device = torch::kCPU,
                                              int max_distance = 800);

// Cosine similarity of two embeddings (D) or rows (B, D) -> a scalar or (B), as
// F.cosine_similarity (eps 1e-8).
torch::Tensor speaker_similarity(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace losatok::models
