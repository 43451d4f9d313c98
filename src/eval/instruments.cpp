// Loading the generation instruments and measuring clips with them.
#include "losatok/eval/instruments.h"

#include <torch/torch.h>

#include "losatok/audio/audio_io.h"
#include "losatok/core/error.h"
#include "losatok/models/clap.h"
#include "losatok/models/panns.h"
#include "losatok/models/vggish.h"

namespace losatok::eval {

namespace {
constexpr int kClapRate = 48000;
}  // namespace

struct Instruments::Models {
  models::Vggish vggish{nullptr};
  models::Cnn14 panns{nullptr};
  models::Clap clap{nullptr};
};

Instruments::Instruments(const InstrumentFiles& files, const torch::Device& device)
    : m_(std::make_unique<Models>()), device_(device) {
  if (!files.vggish.empty()) m_->vggish = models::load_vggish(files.vggish, device);
  if (!files.panns.empty()) m_->panns = models::load_cnn14(files.panns, device);
  if (!files.clap.empty()) {
    if (files.clap_tokenizer.empty())
      throw Error("CLAP '" + files.clap +
                  "': its text branch needs the roberta-base tokenizer folder (vocab.json, merges.txt): give "
                  "--clap-tokenizer");
    m_->clap = models::load_clap(files.clap, files.clap_tokenizer, device);
  }
}

Instruments::~Instruments() = default;

bool Instruments::has_vggish() const {
  return !m_->vggish.is_empty();
}
bool Instruments::has_panns() const {
  return !m_->panns.is_empty();
}
bool Instruments::has_clap() const {
  return !m_->clap.is_empty();
}
int Instruments::panns_sample_rate() const {
  return has_panns() ? m_->panns->front_end.sample_rate : 0;
}

std::vector<std::string> Instruments::names() const {
  std::vector<std::string> n;
  if (has_vggish()) n.push_back("vggish");
  if (has_panns()) n.push_back("panns cnn14 " + std::to_string(panns_sample_rate() / 1000) + " kHz");
  if (has_clap()) n.push_back("laion-clap htsat-tiny");
  return n;
}

ClipMeasures Instruments::measure(const data::ManifestEntry& clip) const {
  const audio::AudioBuffer a = audio::read_audio(clip.audio, clip.offset, clip.duration);
  if (a.frames() == 0) throw Error("'" + clip.audio + "' holds no audio");
  // audioldm_eval reads the first channel; LAION-CLAP averages the channels.
  std::vector<float> first(static_cast<std::size_t>(a.frames()));
  for (int64_t i = 0; i < a.frames(); ++i) first[i] = a.samples[i * a.channels];
  return measure(first, a.sample_rate, a.channels > 1 ? audio::downmix(a) : first);
}

ClipMeasures Instruments::measure(const std::vector<float>& wave, int sample_rate,
                                  const std::vector<float>& mono_mix) const {
  torch::NoGradGuard no_grad;
  // audioldm_eval's WaveDataset for VGGish and CNN14: the mean removed, resampled, zero-padded at
  // the end to at least kMinSamples.
  double mean = 0;
  for (const float x : wave) mean += x;
  mean /= std::max<std::size_t>(wave.size(), 1);
  std::vector<float> centred(wave.size());
  for (std::size_t i = 0; i < wave.size(); ++i) centred[i] = static_cast<float>(wave[i] - mean);
  auto at_rate = [&](const std::vector<float>& w, int rate, int64_t min_samples) {
    std::vector<float> r = rate == sample_rate ? w : audio::resample(w, sample_rate, rate);
    if (static_cast<int64_t>(r.size()) < min_samples) r.resize(static_cast<std::size_t>(min_samples), 0.0f);
    return torch::from_blob(r.data(), {static_cast<int64_t>(r.size())}, torch::kFloat32).clone();
  };
  ClipMeasures out;
  if (has_vggish()) {
    const torch::Tensor examples =
        models::vggish_examples(at_rate(centred, models::VggishFrontEnd::kSampleRate, kMinSamples));
    out.vggish = m_->vggish->forward(examples.to(device_)).to(torch::kCPU);  // 2 s and more: >= 2 rows
  }
  if (has_panns()) {
    const torch::Tensor w = at_rate(centred, panns_sample_rate(), kMinSamples);
    const models::Cnn14Output o = m_->panns->forward(w.unsqueeze(0).to(device_));
    out.panns_embedding = o.embedding[0].to(torch::kCPU);
    out.panns_logits = o.logits[0].to(torch::kCPU);
  }
  if (has_clap()) {
    // LAION-CLAP: the channels' average at 48 kHz, repeat-padded or cut to 10 s by the model.
    std::vector<float> w =
        sample_rate == kClapRate ? mono_mix : audio::resample(mono_mix, sample_rate, kClapRate);
    const torch::Tensor t =
        torch::from_blob(w.data(), {static_cast<int64_t>(w.size())}, torch::kFloat32).clone();
    out.clap_audio = m_->clap->audio_embedding(std::vector<torch::Tensor>{t.to(device_)})[0].to(torch::kCPU);
  }
  return out;
}

torch::Tensor Instruments::clap_text(const std::vector<std::string>& texts) const {
  if (!has_clap()) throw Error("CLAP text embedding: no CLAP checkpoint is loaded");
  torch::NoGradGuard no_grad;
  return m_->clap->text_embedding(texts).to(torch::kCPU);
}

}  // namespace losatok::eval
