// Loading the speech instruments, finding Whisper's tokenizer and spelling map beside it, and the
// decoding setup of the TTS evaluation tools (timestamp-free English transcription, beam 5).
#include "losatok/eval/speech_instruments.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <sstream>

#include "losatok/audio/audio_io.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/data/whisper_tokenizer.h"
#include "losatok/eval/text_normalizer.h"
#include "losatok/models/speaker_verification.h"
#include "losatok/models/utmos.h"
#include "losatok/models/whisper.h"

namespace fs = std::filesystem;

namespace losatok::eval {

namespace {

constexpr int kRate = 16000;

std::string whisper_size_name(const models::WhisperConfig& c) {
  const std::map<int, std::string> by_width = {
      {384, "tiny"}, {512, "base"}, {768, "small"}, {1024, "medium"}, {1280, "large"}};
  const auto it = by_width.find(c.n_audio_state);
  std::string name = it == by_width.end() ? "custom-" + std::to_string(c.n_audio_state) : it->second;
  if (c.n_vocab == 51864) name += ".en";
  if (c.n_mels == 128) name += "-v3";
  return name;
}

// The folder of Whisper's checkpoint: itself (Hugging Face) or the file's.
fs::path checkpoint_folder(const std::string& checkpoint) {
  const fs::path p(checkpoint);
  return fs::is_directory(p) ? p : p.parent_path();
}

// The tokenizer: the flag's path, else the Hugging Face folder itself, else the rank file of
// the model's vocabulary beside the checkpoint.
std::string find_tokenizer(const SpeechInstrumentFiles& f, int64_t n_vocab) {
  if (!f.whisper_tokenizer.empty()) {
    if (!fs::exists(f.whisper_tokenizer))
      throw Error("whisper tokenizer '" + f.whisper_tokenizer + "' does not exist");
    return f.whisper_tokenizer;
  }
  const fs::path dir = checkpoint_folder(f.whisper);
  if (fs::exists(dir / "tokenizer.json") || fs::exists(dir / "vocab.json")) return dir.string();
  const fs::path rank =
      dir / (data::WhisperTokenizer::multilingual_for(n_vocab) ? "multilingual.tiktoken" : "gpt2.tiktoken");
  if (fs::exists(rank)) return rank.string();
  throw Error("whisper '" + f.whisper +
              "': no tokenizer beside it (a Hugging Face folder's tokenizer.json / " +
              "vocab.json, or openai's " + rank.filename().string() +
              " from the whisper package's assets/); name it with --whisper-tokenizer");
}

// whisper's n_vocab rule for the official vocabularies; a smaller (test) vocabulary holds as
// many languages as the model's n_vocab leaves after the text tokens (eot's id) and the 1509
// other specials (eot, sot, 6 task / prompt tokens, 1501 timestamps).
data::WhisperTokenizer load_tokenizer(const std::string& path, int64_t n_vocab, const std::string& model) {
  const bool is_dir = fs::is_directory(path);
  auto load = [&](int languages) {
    return is_dir ? data::WhisperTokenizer::from_hf(path, languages, true)
                  : data::WhisperTokenizer::from_tiktoken(path, languages, true);
  };
  data::WhisperTokenizer tok = n_vocab >= 51864 ? data::WhisperTokenizer::load(path, n_vocab) : [&] {
    const int64_t languages = n_vocab - load(1).eot() - 1509;
    if (languages < 1 || languages > 100)
      throw Error("whisper '" + model + "': its vocabulary (" + std::to_string(n_vocab) +
                  " tokens) does not fit the tokenizer '" + path + "'");
    return load(static_cast<int>(languages));
  }();
  if (tok.vocab_size() > n_vocab)
    throw Error("whisper '" + model + "': the tokenizer '" + path + "' has " +
                std::to_string(tok.vocab_size()) + " tokens, the model " + std::to_string(n_vocab));
  return tok;
}

std::string find_normalizer(const SpeechInstrumentFiles& f) {
  if (!f.whisper_normalizer.empty()) {
    if (!fs::exists(f.whisper_normalizer))
      throw Error("whisper normalizer '" + f.whisper_normalizer + "' does not exist");
    return f.whisper_normalizer;
  }
  const fs::path dir = checkpoint_folder(f.whisper);
  for (const char* name : {"normalizer.json", "english.json"})
    if (fs::exists(dir / name)) return (dir / name).string();
  return {};
}

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

}  // namespace

struct SpeechInstruments::Models {
  torch::Device device = torch::kCPU;
  models::Whisper whisper{nullptr};
  std::optional<data::WhisperTokenizer> tokenizer;
  std::function<std::string(const std::string&)> normalizer;
  std::string normalizer_file, normalizer_name, whisper_name;
  std::vector<int64_t> sot;
  models::WhisperTranscribeOptions transcribe;
  models::SpeakerVerification speaker{nullptr};
  std::string speaker_file;
  models::Utmos22Strong utmos{nullptr};
};

SpeechInstruments::SpeechInstruments(const SpeechInstrumentFiles& f, const torch::Device& device)
    : m_(std::make_unique<Models>()) {
  m_->device = device;
  if (!f.whisper.empty()) {
    if (!fs::exists(f.whisper))
      throw Error(
          "whisper checkpoint '" + f.whisper +
          "' does not exist (openai's large-v3.pt, or the Hugging Face openai/whisper-large-v3 folder)");
    m_->whisper = models::load_whisper(f.whisper, device);
    const models::WhisperConfig& c = m_->whisper->config;
    m_->whisper_name = "whisper " + whisper_size_name(c) +
                       (f.beam_size > 1 ? " (beam " + std::to_string(f.beam_size) + ")" : " (greedy)");
  }
  if (!f.whisper.empty() && !f.whisper_encoder_only) {
    const models::WhisperConfig& c = m_->whisper->config;
    m_->tokenizer.emplace(load_tokenizer(find_tokenizer(f, c.n_vocab), c.n_vocab, f.whisper));
    const data::WhisperTokenizer& tok = *m_->tokenizer;
    // Whisper's English normaliser for English, its basic one for other languages (as the
    // evaluation tools apply them).
    if (f.language == "en") {
      m_->normalizer_file = find_normalizer(f);
      if (m_->normalizer_file.empty())
        spdlog::warn(
            "whisper: no spelling map beside '{}' (english.json / normalizer.json): the English "
            "normaliser skips its British -> American step",
            f.whisper);
      m_->normalizer = EnglishTextNormalizer(m_->normalizer_file);
      m_->normalizer_name = "whisper EnglishTextNormalizer";
    } else {
      m_->normalizer = BasicTextNormalizer();
      m_->normalizer_name = "whisper BasicTextNormalizer";
    }
    m_->sot =
        tok.sot_sequence(tok.is_multilingual() ? f.language : "", "transcribe", /*without_timestamps=*/true);
    // decoding.py's suppress_tokens "-1": the non-speech symbols, plus the task and prompt specials.
    models::WhisperDecodeOptions& d = m_->transcribe.decode;
    d.beam_size = f.beam_size;
    d.eot = tok.eot();
    d.blank_ids = tok.blank_ids();
    std::set<int64_t> suppress;
    for (const int64_t t : tok.non_speech_tokens()) suppress.insert(t);
    for (const char* name : {"<|transcribe|>", "<|translate|>", "<|startoftranscript|>", "<|startofprev|>",
                             "<|startoflm|>", "<|nospeech|>"})
      suppress.insert(tok.special(name));
    d.suppress_tokens.assign(suppress.begin(), suppress.end());
    d.validate();
  }
  if (!f.speaker.empty()) {
    if (!fs::exists(f.speaker))
      throw Error("speaker model '" + f.speaker +
                  "' does not exist (UniSpeech's WavLM-Large + ECAPA-TDNN wavlm_large_finetune.pth)");
    m_->speaker = models::load_speaker_verification(f.speaker, device);
    m_->speaker_file = f.speaker;
  }
  if (!f.utmos.empty()) {
    if (!fs::exists(f.utmos))
      throw Error("UTMOS checkpoint '" + f.utmos +
                  "' does not exist (SpeechMOS's utmos22_strong_step7459_v1.pt, from its GitHub release)");
    m_->utmos = models::load_utmos(f.utmos, device);
  }
}

SpeechInstruments::~SpeechInstruments() = default;

bool SpeechInstruments::has_whisper() const {
  return !m_->whisper.is_empty();
}
bool SpeechInstruments::has_speaker() const {
  return !m_->speaker.is_empty();
}
bool SpeechInstruments::has_mos() const {
  return !m_->utmos.is_empty();
}
std::string SpeechInstruments::whisper_name() const {
  return m_->whisper_name;
}
std::string SpeechInstruments::speaker_name() const {
  return has_speaker() ? "WavLM-Large + ECAPA-TDNN (" + fs::path(m_->speaker_file).filename().string() + ")"
                       : std::string();
}
std::string SpeechInstruments::mos_name() const {
  return has_mos() ? models::kUtmosName : "";
}
const std::string& SpeechInstruments::normalizer_file() const {
  return m_->normalizer_file;
}
const std::string& SpeechInstruments::normalizer_name() const {
  return m_->normalizer_name;
}

torch::Tensor SpeechInstruments::read_16k(const data::ManifestEntry& clip) {
  std::vector<float> w = audio::load_audio(clip.audio, kRate, clip.offset, clip.duration);
  if (w.empty()) throw Error("'" + clip.audio + "' holds no samples");
  return torch::from_blob(w.data(), {static_cast<int64_t>(w.size())}, torch::kFloat).clone();
}

std::string SpeechInstruments::transcribe(const torch::Tensor& wave16k) const {
  if (!m_->tokenizer) throw Error("transcribe: no Whisper checkpoint is loaded with its tokenizer");
  torch::NoGradGuard no_grad;
  return m_->tokenizer->decode(m_->whisper->transcribe(wave16k, m_->sot, m_->transcribe));
}

std::string SpeechInstruments::normalize(const std::string& text) const {
  if (!m_->normalizer) throw Error("normalize: no Whisper checkpoint is loaded");
  return m_->normalizer(text);
}

std::pair<int64_t, int64_t> SpeechInstruments::word_errors(const std::string& reference,
                                                           const std::string& transcript) const {
  const std::vector<std::string> ref = split_words(normalize(reference)),
                                 hyp = split_words(normalize(transcript));
  return {edit_distance(ref, hyp), static_cast<int64_t>(ref.size())};
}

WerResult SpeechInstruments::word_error_rate(const std::vector<data::ManifestEntry>& clips) const {
  WerResult r;
  for (const auto& c : clips) {
    std::string transcript;
    try {
      transcript = transcribe(read_16k(c));
    } catch (const std::exception& e) {
      throw Error("whisper: '" + c.audio + "': " + first_line(e.what()));
    }
    const std::string hypothesis = normalize(transcript);
    const std::vector<std::string> ref = split_words(normalize(c.text)), hyp = split_words(hypothesis);
    const int64_t errors = edit_distance(ref, hyp), words = static_cast<int64_t>(ref.size());
    r.errors += errors;
    r.words += words;
    r.clip_errors.push_back(errors);
    r.clip_words.push_back(words);
    r.transcripts.push_back(transcript);
    r.hypotheses.push_back(hypothesis);
    ++r.clips;
  }
  r.wer = r.words > 0 ? static_cast<double>(r.errors) / static_cast<double>(r.words) : std::nan("");
  return r;
}

torch::Tensor SpeechInstruments::whisper_encoder(const torch::Tensor& wave16k) const {
  if (!has_whisper()) throw Error("whisper encoder: no Whisper checkpoint is loaded");
  torch::NoGradGuard no_grad;
  return m_->whisper->embed(wave16k);
}

torch::Tensor SpeechInstruments::speaker_embedding(const torch::Tensor& wave16k) const {
  if (!has_speaker()) throw Error("speaker embedding: no speaker model is loaded");
  // WavLM's first conv needs 400 samples (25 ms).
  if (wave16k.size(-1) < 400)
    throw Error("speaker embedding: the clip is shorter than 25 ms (" + std::to_string(wave16k.size(-1)) +
                " samples at 16 kHz)");
  torch::NoGradGuard no_grad;
  return m_->speaker->embed(wave16k).cpu();
}

double SpeechInstruments::mos(const torch::Tensor& wave16k) const {
  if (!has_mos()) throw Error("MOS: no UTMOS checkpoint is loaded");
  torch::NoGradGuard no_grad;
  return m_->utmos->predict(wave16k);
}

}  // namespace losatok::eval
