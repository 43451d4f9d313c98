// The UTMOS22 strong learner (Saeki et al. 2022, sarulab-speech/UTMOS22 `strong/`), frozen: a
// naturalness MOS predictor for 16 kHz speech, as tarepan/SpeechMOS's `utmos22_strong` runs it.
// This is "UTMOS22 strong", not UTMOSv2 (sarulab-speech/UTMOSv2, a different model).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/rnn.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <string>
#include <vector>

#include "losatok/models/wav2vec2.h"

namespace losatok::models {

// How scores from this model are labelled in reports and logs.
inline constexpr const char* kUtmosName = "UTMOS22 strong";

// The standalone predictor conditions on one fixed listener and data domain: the "mean
// listener" row of the judge table and the main (BVCC) domain, as the UTMOS22 demo Space and
// SpeechMOS (which stores just these two rows) do.
inline constexpr int kUtmosJudgeId = 288;
inline constexpr int kUtmosDomainId = 0;

struct UtmosConfig {
  Wav2Vec2Config ssl;      // wav2vec 2.0 base: default extractor mode, post-LN, 768 x 12, 12 heads
  int domain_dim = 128;    // domain_emb (1, 128)
  int judge_dim = 128;     // judge_emb (1, 128)
  int lstm_hidden = 512;   // one bidirectional layer over cat(ssl, domain, judge)
  int proj_hidden = 2048;  // projection: Linear(2 lstm_hidden, 2048), ReLU, Linear(2048, 1)
  // Sizes from a state dict in SpeechMOS's names; heads as Wav2Vec2Config::from_state_dict
  // (0: 12 for wav2vec 2.0 base). A missing tensor is an error naming `source` and the key.
  static UtmosConfig from_state_dict(const std::map<std::string, torch::Tensor>& w, const std::string& source,
                                     int heads = 0);
};

// Module names are SpeechMOS's (`utmos22_strong_step7459_v1.pt`): wav2vec2.*, domain_emb,
// judge_emb, blstm.*, projection.{0,2}.*.
struct Utmos22StrongImpl : torch::nn::Module {
  explicit Utmos22StrongImpl(const UtmosConfig& c);

  // waves (B, T) float at 16 kHz, rows of one length, no normalisation -> (B, F, D): the last
  // wav2vec 2.0 layer's output.
  torch::Tensor ssl_features(const torch::Tensor& waves);
  // ssl (B, F, D) -> (B, F): per-frame scores before the mean (on the model's -1..1 scale).
  torch::Tensor frame_scores(const torch::Tensor& ssl);
  // waves (B, T) of one length -> (B,) MOS = mean frame score * 2 + 3 (about 1..5).
  torch::Tensor forward(const torch::Tensor& waves);

  // The MOS of one clip (T) at 16 kHz.
  double predict(const torch::Tensor& wave16k);
  // The MOS of each clip (any lengths): clips are scored one by one, since the BLSTM and the
  // frame mean have no padding mask (a padded batch would change the scores).
  std::vector<double> predict(const std::vector<torch::Tensor>& waves16k);

  UtmosConfig config;
  Wav2Vec2Encoder wav2vec2{nullptr};
  torch::Tensor domain_emb, judge_emb;  // (1, E) each
  torch::nn::LSTM blstm{nullptr};
  torch::nn::Sequential projection{nullptr};
};
TORCH_MODULE(Utmos22Strong);

// Loads `utmos22_strong_step7459_v1.pt` (SpeechMOS's release: a plain state dict) or the official
// UTMOS22 Lightning checkpoint (`epoch=3-step=7459.ckpt`, phoneme-free config: its domain and
// judge tables give the rows kUtmosDomainId and kUtmosJudgeId). Sizes from the shapes; `heads`
// as UtmosConfig::from_state_dict. Errors are one line naming the file (and the key).
Utmos22Strong load_utmos(const std::string& path, const torch::Device& device = torch::kCPU, int heads = 0);

// The Lightning checkpoint's names -> SpeechMOS's (an empty map when `w` is not in that layout).
std::map<std::string, torch::Tensor> utmos_from_lightning(const std::map<std::string, torch::Tensor>& w,
                                                          const std::string& source);

}  // namespace losatok::models
