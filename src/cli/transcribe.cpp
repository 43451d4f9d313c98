// `losatok transcribe`: Whisper transcripts of clips (the TTS WER's recogniser), printed and
// written as JSON Lines; with a manifest whose lines carry a `text`, the WER against it.
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "clip_inputs.h"
#include "commands.h"
#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/data/manifest.h"
#include "losatok/eval/speech_instruments.h"

namespace losatok::cli {

namespace {

struct TranscribeOptions {
  eval::SpeechInstrumentFiles files;
  std::vector<std::string> inputs;
  std::string manifest, out, device = "cpu";
};

int run_transcribe(const TranscribeOptions& o) {
  if (o.inputs.empty() == o.manifest.empty())
    throw Error("transcribe: give --input (repeatable) or --manifest");
  const std::vector<data::ManifestEntry> clips = clips_from(o.inputs, o.manifest);
  const eval::SpeechInstruments asr(o.files, resolve_device(o.device));
  spdlog::info("transcribe: {} clip(s) through {}", clips.size(), asr.whisper_name());
  std::vector<nlohmann::json> lines;
  std::vector<std::string> refs, hyps;
  int64_t errors = 0, words = 0;
  for (const auto& c : clips) {
    std::string text;
    try {
      text = asr.transcribe(eval::SpeechInstruments::read_16k(c));
    } catch (const std::exception& e) {
      throw Error("transcribe: " + clip_place(c) + ": " + first_line(e.what()));
    }
    const std::string norm = asr.normalize(text);
    nlohmann::json j = {{"audio", c.audio}, {"text", text}, {"normalized", norm}};
    if (!c.text.empty()) {
      const auto [e, n] = asr.word_errors(c.text, text);
      errors += e;
      words += n;
      j["reference"] = c.text;
      j["errors"] = e;
      j["words"] = n;
    }
    std::cout << c.audio << "\t" << text << "\n";
    lines.push_back(j);
  }
  if (words > 0)
    spdlog::info("transcribe: WER {:.4f} ({} errors / {} reference words, Whisper-normalised)",
                 static_cast<double>(errors) / static_cast<double>(words), errors, words);
  if (!o.out.empty()) {
    std::string body;
    for (const auto& j : lines) body += j.dump() + "\n";
    write_file_atomic(o.out, body);
  }
  return 0;
}

}  // namespace

void add_transcribe_command(CLI::App& app, Context& ctx) {
  auto* sub =
      app.add_subcommand("transcribe", "Whisper transcripts of clips (timestamp-free, English by default)");
  auto o = std::make_shared<TranscribeOptions>();
  sub->add_option(
         "--checkpoint", o->files.whisper,
         "Whisper: openai's .pt (e.g. large-v3.pt) or a Hugging Face folder (openai/whisper-large-v3)")
      ->required();
  sub->add_option(
      "--tokenizer", o->files.whisper_tokenizer,
      "a Hugging Face folder or openai's multilingual.tiktoken / gpt2.tiktoken (default: beside the "
      "checkpoint)");
  sub->add_option(
      "--normalizer", o->files.whisper_normalizer,
      "english.json / normalizer.json, the normaliser's spelling map (default: beside the checkpoint)");
  sub->add_option("--input", o->inputs, "an audio file (repeatable)");
  sub->add_option("--manifest", o->manifest, "a manifest: its clips; lines with a `text` are scored (WER)");
  sub->add_option("--language", o->files.language, "language token of multilingual models")
      ->capture_default_str();
  sub->add_option("--beam-size", o->files.beam_size, "beam search width (1: greedy)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  sub->add_option("--out", o->out, "JSON Lines: audio, text, normalized (and reference, errors, words)");
  sub->add_option("--device", o->device, "cpu, cuda or cuda:N")->capture_default_str();
  sub->callback([&ctx, o]() { ctx.action = [o]() { return run_transcribe(*o); }; });
}

}  // namespace losatok::cli
