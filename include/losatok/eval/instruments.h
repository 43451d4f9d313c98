// The paper's generation instruments (docs/method.md, "Evaluation"): VGGish for the FAD, PANNs
// CNN14 for the KL, the Inception Score and the PANNs Frechet distance, LAION-CLAP for the CLAP
// score. Each loads its official file (the user supplies it); `eval gen` and `losatok embed`
// measure clips through this one interface.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "losatok/data/manifest.h"

namespace losatok::models {
class ClapModel;
}

namespace losatok::eval {

// The files of the instruments to load ("" = that instrument is not used).
struct InstrumentFiles {
  std::string vggish;          // torchvggish's vggish-10086976.pth
  std::string panns;           // Cnn14_16k_mAP=0.438.pth or Cnn14_mAP=0.431.pth
  std::string clap;            // LAION-CLAP 630k-audioset-best.pt
  std::string clap_tokenizer;  // the roberta-base folder (vocab.json, merges.txt)
  bool any() const { return !vggish.empty() || !panns.empty() || !clap.empty(); }
};

// One clip measured by every loaded instrument (undefined tensors for the others).
struct ClipMeasures {
  torch::Tensor vggish;           // (E, 128): one row per 0.96 s example (E >= 2: clips are padded to 2 s)
  torch::Tensor panns_embedding;  // (2048)
  torch::Tensor panns_logits;     // (527) before the sigmoid
  torch::Tensor clap_audio;       // (512), L2-normalised
};

class Instruments {
 public:
  Instruments(const InstrumentFiles& files, const torch::Device& device);
  ~Instruments();
  Instruments(const Instruments&) = delete;
  Instruments& operator=(const Instruments&) = delete;

  bool has_vggish() const;
  bool has_panns() const;
  bool has_clap() const;
  int panns_sample_rate() const;
  // "vggish", "panns 16 kHz", ... for tables.
  std::vector<std::string> names() const;

  // Reads the clip (offset / duration of its manifest entry) and measures it. VGGish and CNN14
  // see it as audioldm_eval prepares it: the first channel, its mean removed, resampled to the
  // model's rate (libsoxr, not torchaudio / resampy) and zero-padded to kMinSamples; CLAP sees
  // the channels' average at 48 kHz.
  ClipMeasures measure(const data::ManifestEntry& clip) const;
  // The same for audio already loaded at `sample_rate`: its first channel, and the average of its
  // channels (the same vector for mono).
  ClipMeasures measure(const std::vector<float>& first_channel, int sample_rate,
                       const std::vector<float>& mono_mix) const;
  // audioldm_eval's pad_short_audio: at least 32000 samples at the model's rate.
  static constexpr int64_t kMinSamples = 32000;
  // CLAP text embeddings (B, 512), L2-normalised.
  torch::Tensor clap_text(const std::vector<std::string>& texts) const;

 private:
  struct Models;
  std::unique_ptr<Models> m_;
  torch::Device device_;
};

}  // namespace losatok::eval
