// `losatok embed`: the evaluation instruments' embeddings (VGGish, PANNs CNN14, LAION-CLAP audio
// and text, WavLM-SV speaker embeddings, Whisper's encoder) of clips or texts, to a safetensors
// file, for analysis and for checks against Python.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "clip_inputs.h"
#include "commands.h"
#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/data/manifest.h"
#include "losatok/eval/instruments.h"
#include "losatok/eval/speech_instruments.h"
#include "losatok/io/weights.h"

namespace losatok::cli {

namespace {

struct EmbedOptions {
  std::string model, checkpoint, tokenizer, input, manifest, out, device = "cpu";
  std::vector<std::string> texts;
};

std::vector<data::ManifestEntry> embed_clips(const EmbedOptions& o) {
  return clips_from(o.input.empty() ? std::vector<std::string>{} : std::vector<std::string>{o.input},
                    o.manifest);
}

// The speech instruments: one speaker embedding a clip, or Whisper's encoder frames of each clip
// (rows of all clips, with frames_per_clip).
int run_speech_embed(const EmbedOptions& o) {
  eval::SpeechInstrumentFiles files;
  (o.model == "wavlm-sv" ? files.speaker : files.whisper) = o.checkpoint;
  files.whisper_encoder_only = true;
  const eval::SpeechInstruments instruments(files, resolve_device(o.device));
  std::vector<torch::Tensor> rows;
  std::vector<int64_t> frames;
  nlohmann::json names = nlohmann::json::array();
  for (const auto& c : embed_clips(o)) {
    try {
      const torch::Tensor wave = eval::SpeechInstruments::read_16k(c);
      if (o.model == "wavlm-sv") {
        rows.push_back(instruments.speaker_embedding(wave).unsqueeze(0));
      } else {
        rows.push_back(instruments.whisper_encoder(wave).cpu());
        frames.push_back(rows.back().size(0));
      }
    } catch (const std::exception& e) {
      throw Error("embed: " + clip_place(c) + ": " + first_line(e.what()));
    }
    names.push_back(c.audio);
  }
  io::TensorMap out;
  out["embedding"] = torch::cat(rows).contiguous();
  if (!frames.empty()) out["frames_per_clip"] = torch::tensor(frames, torch::kLong);
  io::save_weights(o.out, out, "safetensors",
                   {{"model", o.model}, {"checkpoint", o.checkpoint}, {"inputs", names.dump()}});
  spdlog::info("{}: {} {} rows of {}", o.out, o.model, out["embedding"].size(0), out["embedding"].size(1));
  return 0;
}

int run_embed(const EmbedOptions& o) {
  const int sources = !o.input.empty() + !o.manifest.empty() + !o.texts.empty();
  if (sources != 1) throw Error("embed: give exactly one of --input, --manifest, --text");
  const bool text_model = o.model == "clap-text";
  if (text_model && !o.input.empty())
    throw Error("embed: --model clap-text embeds texts: give --text or a --manifest with texts");
  if (!text_model && !o.texts.empty()) throw Error("embed: --text needs --model clap-text");
  if (o.model == "wavlm-sv" || o.model == "whisper-encoder") return run_speech_embed(o);
  eval::InstrumentFiles files;
  if (o.model == "vggish") files.vggish = o.checkpoint;
  if (o.model == "panns") files.panns = o.checkpoint;
  if (o.model == "clap-audio" || text_model) {
    files.clap = o.checkpoint;
    files.clap_tokenizer = o.tokenizer;
  }
  const eval::Instruments instruments(files, resolve_device(o.device));

  const std::vector<data::ManifestEntry> clips = embed_clips(o);
  io::TensorMap out;
  nlohmann::json names = nlohmann::json::array();
  if (text_model) {
    std::vector<std::string> texts = o.texts;
    if (texts.empty())
      for (const auto& c : clips) {
        if (c.text.empty())
          throw Error("embed: manifest '" + o.manifest + "' line " + std::to_string(c.line) + " has no text");
        texts.push_back(c.text);
      }
    out["embedding"] = instruments.clap_text(texts).cpu().contiguous();
    for (const auto& t : texts) names.push_back(t);
  } else {
    std::vector<torch::Tensor> emb, logits;
    std::vector<int64_t> rows;
    for (const auto& c : clips) {
      eval::ClipMeasures m;
      try {
        m = instruments.measure(c);
      } catch (const Error& e) {
        throw Error("embed: " + clip_place(c) + ": " + first_line(e.what()));
      }
      names.push_back(c.audio);
      if (o.model == "vggish") {
        emb.push_back(m.vggish);
        rows.push_back(m.vggish.size(0));
      } else if (o.model == "panns") {
        emb.push_back(m.panns_embedding.unsqueeze(0));
        logits.push_back(m.panns_logits.unsqueeze(0));
      } else {
        emb.push_back(m.clap_audio.unsqueeze(0));
      }
    }
    out["embedding"] = torch::cat(emb).contiguous();
    if (o.model == "vggish") out["examples_per_clip"] = torch::tensor(rows, torch::kLong);
    if (o.model == "panns") {
      out["logits"] = torch::cat(logits).contiguous();
      out["clipwise_output"] = torch::sigmoid(out["logits"]);
    }
  }
  io::save_weights(o.out, out, "safetensors",
                   {{"model", o.model}, {"checkpoint", o.checkpoint}, {"inputs", names.dump()}});
  spdlog::info("{}: {} {} rows of {}", o.out, o.model, out["embedding"].size(0), out["embedding"].size(1));
  return 0;
}

}  // namespace

void add_embed_command(CLI::App& app, Context& ctx) {
  auto* sub = app.add_subcommand(
      "embed",
      "an instrument's embeddings of clips or texts (VGGish, PANNs CNN14, LAION-CLAP, WavLM-SV, Whisper "
      "encoder) -> safetensors");
  auto o = std::make_shared<EmbedOptions>();
  sub->add_option("--model", o->model, "vggish | panns | clap-audio | clap-text | wavlm-sv | whisper-encoder")
      ->required()
      ->check(CLI::IsMember({"vggish", "panns", "clap-audio", "clap-text", "wavlm-sv", "whisper-encoder"}));
  sub->add_option("--checkpoint", o->checkpoint,
                  "the instrument's official file: vggish-10086976.pth, Cnn14_16k_mAP=0.438.pth / "
                  "Cnn14_mAP=0.431.pth, 630k-audioset-best.pt, wavlm_large_finetune.pth, Whisper's .pt or "
                  "Hugging Face folder")
      ->required();
  sub->add_option("--clap-tokenizer", o->tokenizer, "CLAP: the roberta-base folder (vocab.json, merges.txt)");
  sub->add_option("--input", o->input, "one audio file");
  sub->add_option("--manifest", o->manifest, "a manifest: its clips (or, for clap-text, its texts)");
  sub->add_option("--text", o->texts, "clap-text: a caption (repeatable)");
  sub->add_option("--out", o->out,
                  "output .safetensors: embedding (rows, D); vggish: examples_per_clip; panns: logits, "
                  "clipwise_output; whisper-encoder: frames_per_clip")
      ->required();
  sub->add_option("--device", o->device, "cpu, cuda or cuda:N")->capture_default_str();
  sub->callback([&ctx, o]() { ctx.action = [o]() { return run_embed(*o); }; });
}

}  // namespace losatok::cli
