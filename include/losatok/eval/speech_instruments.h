// The paper's speech instruments (docs/method.md, "Evaluation"): Whisper transcripts for the TTS
// WER, WavLM-Large + ECAPA-TDNN embeddings for the speaker similarity, UTMOS22 strong for the
// MOS. Each loads its official file (the user supplies it); `eval gen`, `losatok transcribe` and
// `losatok embed` use them through this one interface.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "losatok/data/manifest.h"
#include "losatok/eval/asr.h"

namespace losatok::eval {

// The files of the instruments to load ("" = that instrument is not used).
struct SpeechInstrumentFiles {
  // Whisper: openai's `large-v3.pt` (any size), or a Hugging Face folder / .safetensors.
  std::string whisper;
  // Its tokenizer: a Hugging Face folder or openai's `multilingual.tiktoken` / `gpt2.tiktoken`;
  // "" = the Hugging Face folder itself, else the .tiktoken file beside the checkpoint.
  std::string whisper_tokenizer;
  // The British -> American spelling map of the English normaliser: whisper's `english.json` or
  // the Hugging Face `normalizer.json`; "" = the one beside the checkpoint, else no spelling step.
  std::string whisper_normalizer;
  bool whisper_encoder_only = false;  // `embed`: no tokenizer or normaliser needed
  std::string speaker;                // UniSpeech's WavLM-Large + ECAPA-TDNN `wavlm_large_finetune.pth`
  std::string utmos;                  // SpeechMOS's `utmos22_strong_step7459_v1.pt`
  std::string language = "en";
  int beam_size = 5;  // 0 / 1: greedy (the TTS evaluation tools decode with beam 5)
  bool any() const { return !whisper.empty() || !speaker.empty() || !utmos.empty(); }
};

class SpeechInstruments {
 public:
  SpeechInstruments(const SpeechInstrumentFiles& files, const torch::Device& device);
  ~SpeechInstruments();
  SpeechInstruments(const SpeechInstruments&) = delete;
  SpeechInstruments& operator=(const SpeechInstruments&) = delete;

  bool has_whisper() const;
  bool has_speaker() const;
  bool has_mos() const;
  // "whisper large-v3 (beam 5)", ... for tables.
  std::string whisper_name() const;
  std::string speaker_name() const;
  std::string mos_name() const;  // "UTMOS22 strong"
  // The spelling map the normaliser uses ("" = none), and which normaliser: Whisper's English one
  // for --language en, its basic one otherwise.
  const std::string& normalizer_file() const;
  const std::string& normalizer_name() const;

  // A manifest clip (offset / duration) as the instruments read it: the channels' average at 16 kHz.
  static torch::Tensor read_16k(const data::ManifestEntry& clip);

  // Whisper's transcript of a 16 kHz clip of any length (30 s windows), as decoded.
  std::string transcribe(const torch::Tensor& wave16k) const;
  // Whisper's text normaliser (English: with the spelling map when there is one).
  std::string normalize(const std::string& text) const;
  // Word errors of a transcript against its reference text, both normalised: {errors, reference words}.
  std::pair<int64_t, int64_t> word_errors(const std::string& reference, const std::string& transcript) const;
  // Corpus-level WER of the clips' transcripts against their `text`, both normalised.
  WerResult word_error_rate(const std::vector<data::ManifestEntry>& clips) const;
  // The encoder's output over a 16 kHz clip, (frames, width).
  torch::Tensor whisper_encoder(const torch::Tensor& wave16k) const;

  // The speaker embedding (256) of a 16 kHz clip (not normalised).
  torch::Tensor speaker_embedding(const torch::Tensor& wave16k) const;
  // The predicted MOS of a 16 kHz clip.
  double mos(const torch::Tensor& wave16k) const;

 private:
  struct Models;
  std::unique_ptr<Models> m_;
};

}  // namespace losatok::eval
