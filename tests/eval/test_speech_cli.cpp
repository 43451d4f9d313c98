// The speech instruments through the command line: `transcribe`, `eval gen --wer whisper --sim
// --mos` and `embed --model wavlm-sv|whisper-encoder`, with tiny random-weight models in the
// official layouts (a Whisper made here on the tiny test vocabulary; the WavLM-SV and UTMOS
// fixtures). The numbers are the plumbing's: identical clips score SIM 1 and equal MOS, the WER
// is the mean of what `transcribe` reports, and bad input is a one-line error.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "fixture_data.h"
#include "losatok/data/whisper_tokenizer.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/whisper.h"
#include "test_util.h"

using namespace losatok;

namespace {

const std::string kBin = std::string(LOSATOK_BINARY) + " --log-level warn ";

// A random-weight Whisper (openai's names, torch.save layout) whose vocabulary is the tiny
// test tokenizer's with one language: 30 s windows as the real model, everything else tiny.
std::string write_tiny_whisper(const test::TempDir& dir) {
  const int64_t vocab =
      data::WhisperTokenizer::from_tiktoken(test::fixture("whisper_text/tiny.tiktoken"), 1, true)
          .vocab_size();
  models::WhisperConfig c;
  c.n_mels = 80;
  c.n_audio_ctx = 1500;
  c.n_audio_state = 64;
  c.n_audio_head = 1;
  c.n_audio_layer = 1;
  c.n_vocab = static_cast<int>(vocab);
  c.n_text_ctx = 16;
  c.n_text_state = 64;
  c.n_text_head = 1;
  c.n_text_layer = 1;
  torch::manual_seed(7);
  models::Whisper w(c);
  const std::string path = dir.path("tiny-whisper.pt");
  io::save_weights(path, io::module_state(*w), "pt");
  return path;
}

}  // namespace

TEST(SpeechCli, TranscribeAndEvalGenWithTinyInstruments) {
  test::TinyCorpus corpus;
  const std::string whisper = write_tiny_whisper(corpus.dir);
  const std::string tok = " --whisper-tokenizer " + test::fixture("whisper_text/tiny.tiktoken") +
                          " --whisper-normalizer " + test::fixture("whisper_text/english.json");
  // Speech clips with transcripts that name themselves as their references.
  std::ifstream in(corpus.valid);
  std::string line, tagged;
  while (std::getline(in, line)) {
    const std::string audio = nlohmann::json::parse(line).at("audio").get<std::string>();
    tagged += "{\"audio\": \"" + audio +
              "\", \"text\": \"twenty one colours\", \"task\": \"tts\", \"reference\": \"" + audio + "\"}\n";
  }
  test::write_text(corpus.dir.path("speech.jsonl"), tagged);
  std::string out;

  // transcribe: one JSON line a clip; the errors of a clip count the normalised reference words.
  ASSERT_EQ(test::run_command(kBin + "transcribe --checkpoint " + whisper + " --tokenizer " +
                                  test::fixture("whisper_text/tiny.tiktoken") + " --normalizer " +
                                  test::fixture("whisper_text/english.json") + " --beam-size 1 --manifest " +
                                  corpus.dir.path("speech.jsonl") + " --out " + corpus.dir.path("t.jsonl"),
                              &out),
            0)
      << out;
  const std::vector<nlohmann::json> lines = test::read_jsonl(corpus.dir.path("t.jsonl"));
  ASSERT_EQ(lines.size(), 3u);
  int64_t errors = 0, words = 0;
  for (const auto& j : lines) {
    EXPECT_TRUE(j.at("text").is_string());
    EXPECT_EQ(j.at("words").get<int>(), 2);  // "21 colors": numbers and spelling normalised
    errors += j.at("errors").get<int64_t>();
    words += j.at("words").get<int64_t>();
  }

  // eval gen: the same WER (greedy), SIM 1 for a clip against itself, equal MOS on both sides.
  const std::string speech = " --wer whisper --whisper " + whisper + tok + " --whisper-beam 1 --sim " +
                             test::fixture("wavlm_sv_tiny/wavlm_large_finetune.pth") + " --mos " +
                             test::fixture("utmos_tiny/utmos22_strong_step7459_v1.pt");
  ASSERT_EQ(
      test::run_command(kBin + "eval gen --generated " + corpus.dir.path("speech.jsonl") + " --reference " +
                            corpus.dir.path("speech.jsonl") + speech + " --out " + corpus.dir.path("g.json"),
                        &out),
      0)
      << out;
  const nlohmann::json g = test::read_json(corpus.dir.path("g.json"));
  EXPECT_NEAR(g.at("wer").at("generated").get<double>(), static_cast<double>(errors) / words, 1e-12) << g;
  EXPECT_EQ(g.at("wer").at("generated_clips").get<int>(), 3);
  EXPECT_DOUBLE_EQ(g.at("wer").at("generated").get<double>(), g.at("wer").at("reference").get<double>());
  EXPECT_EQ(g.at("speaker_similarity").at("pairs").get<int>(), 3);
  EXPECT_NEAR(g.at("speaker_similarity").at("mean").get<double>(), 1.0, 1e-5);
  EXPECT_EQ(g.at("mos").at("model").get<std::string>(), "UTMOS22 strong");
  EXPECT_NEAR(g.at("mos").at("generated").get<double>(), g.at("mos").at("reference").get<double>(), 1e-9);
  EXPECT_EQ(g.at("instruments").at("whisper").get<std::string>(), whisper);

  const nlohmann::json& detail = g.at("wer").at("generated_detail");
  ASSERT_EQ(detail.at("per_clip").size(), 3u);
  EXPECT_EQ(detail.at("per_clip")[0].at("transcript").get<std::string>(),
            lines[0].at("text").get<std::string>());
  EXPECT_NEAR(detail.at("utterance_mean").get<double>(), static_cast<double>(errors) / words, 1e-12);

  // Other clips against one reference: SIM below 1; an audio prompt, when recorded, is what a
  // clip is compared with (the first clip's prompt is itself).
  const std::string first_ref = lines[0].at("audio").get<std::string>();
  std::string others;
  std::ifstream tr(corpus.train);
  for (int i = 0; i < 3 && std::getline(tr, line); ++i) {
    const std::string audio = nlohmann::json::parse(line).at("audio").get<std::string>();
    others += "{\"audio\": \"" + audio + "\", \"task\": \"tts\", \"reference\": \"" + first_ref + "\"" +
              (i == 0 ? ", \"prompt_audio\": \"" + audio + "\"" : std::string()) + "}\n";
  }
  test::write_text(corpus.dir.path("others.jsonl"), others);
  ASSERT_EQ(test::run_command(kBin + "eval gen --generated " + corpus.dir.path("others.jsonl") +
                                  " --reference " + corpus.dir.path("speech.jsonl") + " --wer off --sim " +
                                  test::fixture("wavlm_sv_tiny/wavlm_large_finetune.pth") + " --out " +
                                  corpus.dir.path("o.json"),
                              &out),
            0)
      << out;
  const nlohmann::json o = test::read_json(corpus.dir.path("o.json"));
  EXPECT_EQ(o.at("speaker_similarity").at("pairs").get<int>(), 3);
  EXPECT_LT(o.at("speaker_similarity").at("mean").get<double>(), 1.0 - 1e-4);
  const nlohmann::json& sims = o.at("speaker_similarity").at("clips");
  EXPECT_NEAR(sims[0].at("similarity").get<double>(), 1.0, 1e-5) << sims;
  EXPECT_TRUE(sims[0].contains("prompt_audio")) << sims;
  EXPECT_LT(sims[1].at("similarity").get<double>(), 1.0 - 1e-4) << sims;
  EXPECT_TRUE(sims[1].contains("reference")) << sims;

  // embed: one speaker embedding a clip; Whisper's encoder frames with their count per clip.
  ASSERT_EQ(
      test::run_command(kBin + "embed --model wavlm-sv --checkpoint " +
                            test::fixture("wavlm_sv_tiny/wavlm_large_finetune.pth") + " --manifest " +
                            corpus.dir.path("speech.jsonl") + " --out " + corpus.dir.path("sv.safetensors"),
                        &out),
      0)
      << out;
  EXPECT_EQ(io::load_safetensors(corpus.dir.path("sv.safetensors")).tensors.at("embedding").size(0), 3);
  ASSERT_EQ(test::run_command(kBin + "embed --model whisper-encoder --checkpoint " + whisper + " --input " +
                                  corpus.dir.path("c0.wav") + " --out " + corpus.dir.path("we.safetensors"),
                              &out),
            0)
      << out;
  const auto we = io::load_safetensors(corpus.dir.path("we.safetensors")).tensors;
  EXPECT_EQ(we.at("embedding").size(1), 64);
  EXPECT_EQ(we.at("frames_per_clip")[0].item<int64_t>(), we.at("embedding").size(0));
  EXPECT_EQ(we.at("embedding").size(0), 50);  // 1 s: 100 mel frames, 2 per encoder row
}

TEST(SpeechCli, BadInputIsOneLineError) {
  test::TinyCorpus corpus;
  std::string out;
  // --wer whisper without a Whisper.
  EXPECT_EQ(test::run_command(kBin + "eval gen --generated " + corpus.train + " --reference " + corpus.valid +
                                  " --wer whisper",
                              &out),
            1)
      << out;
  EXPECT_NE(out.find("--wer whisper needs --whisper"), std::string::npos) << out;
  // A missing speaker model names the file.
  EXPECT_EQ(test::run_command(kBin + "eval gen --generated " + corpus.train + " --reference " + corpus.valid +
                                  " --wer off --sim " + corpus.dir.path("nope.pth"),
                              &out),
            1)
      << out;
  EXPECT_NE(out.find("nope.pth"), std::string::npos) << out;
  // A Whisper with no tokenizer beside it says where to get one.
  const std::string whisper = write_tiny_whisper(corpus.dir);
  EXPECT_EQ(test::run_command(
                kBin + "transcribe --checkpoint " + whisper + " --input " + corpus.dir.path("c0.wav"), &out),
            1)
      << out;
  EXPECT_NE(out.find("no tokenizer beside it"), std::string::npos) << out;
}
