// The DiT stage on a small synthetic corpus: exact resume for TTA and TTS, the latents cache
// from `losatok extract`, its producer check, and `losatok generate` writing WAVs of the
// requested duration.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "losatok/audio/audio_io.h"
#include "losatok/core/config.h"
#include "losatok/data/feature_cache.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/audio_vae.h"
#include "losatok/train/checkpoint.h"
#include "losatok/train/dit_stage.h"
#include "losatok/train/trainer.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::train;
namespace fs = std::filesystem;

namespace {

// Ten short captioned clips (8 train, 2 valid) and a cache of random 8-d latents for them.
struct LatentCorpus {
  test::TempDir dir;
  std::string train, valid, cache;
  LatentCorpus() {
    std::string tr, va;
    const char* words[] = {"a low hum", "bright bell", "soft rain", "deep drum", "high whistle"};
    for (int i = 0; i < 10; ++i) {
      const int64_t n = 12800 + 3200 * i;  // 0.8 .. 2.6 s
      std::vector<float> w(n);
      for (int64_t k = 0; k < n; ++k) w[k] = 0.2f * std::sin(0.002f * (i + 1) * k);
      const std::string name = "c" + std::to_string(i) + ".wav";
      audio::write_audio(dir.path(name), w.data(), n, 1, 16000, "pcm16");
      (i < 8 ? tr : va) += "{\"audio\": \"" + name + "\", \"text\": \"" + words[i % 5] + " number " +
                           std::to_string(i) + "\"}\n";
    }
    train = dir.path("train.jsonl");
    valid = dir.path("valid.jsonl");
    test::write_text(train, tr);
    test::write_text(valid, va);
    cache = dir.path("latents");
    data::FeatureCacheWriter writer(cache, {"latents", "test-weights", "test-config"});
    torch::manual_seed(11);
    for (const auto& src : {train, valid})
      for (const auto& c : data::read_sources({{src, 0.0}})) {
        const int64_t frames = audio::probe_audio(c.entry.audio).frames / 640;
        writer.add(c.key, {{"mu", 2.0 + 3.0 * torch::randn({frames, 8})},
                           {"logvar", torch::full({frames, 8}, -2.0)}});
      }
  }
};

RootConfig dit_config(const LatentCorpus& corpus, const std::string& run_dir, const std::string& task) {
  RootConfig c = read_root_config(
      {test::source_path("configs/model/tiny.yaml"), test::source_path("configs/model/dit_tiny.yaml")},
      {"stage=dit"});
  c.run_dir = run_dir;
  c.seed = 3;
  c.section<DiTStageConfig>().task = task;
  c.section<DiTStageConfig>().model.latent_dim = 8;
  c.section<DiTStageConfig>().sample_latent = true;  // one more random draw that resume must reproduce
  c.section<DiTStageConfig>().sample.steps = 4;
  c.data.sources = {{corpus.train, 0.0}};
  c.data.valid_sources = {{corpus.valid, 0.0}};
  c.data.cache_dir = corpus.cache;
  c.data.segment_seconds = task == "tts" ? 0.0 : 0.64;
  c.data.batch_size = 3;
  c.data.workers = 2;
  c.train.max_steps = 6;
  c.train.log_every = 1;
  c.train.val_every = 3;
  c.train.tensorboard = false;
  c.train.optim.lr = 1e-3;
  c.train.ema.decay = 0.9;
  c.train.checkpoint.every = 2;
  return c;
}

using test::lines_with;

using test::train_run;

std::string bin() {
  return std::string(LOSATOK_BINARY) + " --threads 1 ";
}

}  // namespace

TEST(DiTStage, ResumeIsBitwiseExactForTtaAndTts) {
  LatentCorpus corpus;
  for (const std::string task : {"tta", "tts"}) {
    test::TempDir dir;
    RootConfig straight = dit_config(corpus, dir.path("straight"), task);
    straight.section<DiTStageConfig>().standardize = true;  // the statistics are checked below
    const TrainResult a = train_run(straight);
    EXPECT_EQ(a.step, 6);
    RootConfig first = dit_config(corpus, dir.path("split"), task);
    first.section<DiTStageConfig>().standardize = true;
    first.train.stop_at_step = 3;
    EXPECT_EQ(train_run(first).step, 3);
    RootConfig second = dit_config(corpus, dir.path("split"), task);
    second.section<DiTStageConfig>().standardize = true;
    EXPECT_EQ(train_run(second, Checkpointer::latest(second.run_dir)->path).step, 6);

    const auto la = lines_with(dir.path("straight/metrics.jsonl"), "train/loss");
    const auto lb = lines_with(dir.path("split/metrics.jsonl"), "train/loss");
    ASSERT_EQ(la.size(), 6u) << task;
    ASSERT_EQ(lb.size(), 6u) << task;
    for (const auto& [step, j] : la)
      for (const char* k : {"train/loss", "train/grad_norm"})
        EXPECT_EQ(j[k].get<double>(), lb.at(step)[k].get<double>())
            << task << " " << k << " at step " << step;
    const auto va = lines_with(dir.path("straight/metrics.jsonl"), "val/fm_loss");
    const auto vb = lines_with(dir.path("split/metrics.jsonl"), "val/fm_loss");
    ASSERT_TRUE(va.count(0) && va.count(6)) << task;
    EXPECT_EQ(va.at(6)["val/fm_loss"].get<double>(), vb.at(6)["val/fm_loss"].get<double>()) << task;
    EXPECT_TRUE(va.at(6).contains("val/fm_loss/sigma_0.5"));
    for (const char* f : {"model.safetensors", "ema.safetensors", "optimizer.safetensors"}) {
      const auto ta = io::load_safetensors(dir.path(std::string("straight/checkpoints/step-6/") + f)).tensors;
      const auto tb = io::load_safetensors(dir.path(std::string("split/checkpoints/step-6/") + f)).tensors;
      ASSERT_EQ(ta.size(), tb.size());
      for (const auto& [k, v] : ta) EXPECT_TRUE(torch::equal(v, tb.at(k))) << task << " " << f << ": " << k;
    }
    // The latent statistics went into the checkpoint: mean ~2, std ~sqrt(9 + exp(-2)).
    const auto model = io::load_safetensors(dir.path("straight/checkpoints/step-6/model.safetensors"));
    EXPECT_NEAR(model.tensors.at("latent_mean").mean().item<double>(), 2.0, 0.3);
    EXPECT_NEAR(model.tensors.at("latent_std").mean().item<double>(), std::sqrt(9.0 + std::exp(-2.0)), 0.3);
    EXPECT_EQ(model.tensors.count("text_encoder.embed.weight"), 1u);
    if (task == "tts") EXPECT_GT(model.tensors.at("frames_per_token").item<double>(), 0.5);
  }
}

TEST(DiTStage, TrainsFromTheCacheWithoutDecodingAudio) {
  // The DiT reads latents only: the loader crops on the cached frames and never opens the audio.
  LatentCorpus corpus;
  for (int i = 0; i < 10; ++i) fs::remove(corpus.dir.path("c" + std::to_string(i) + ".wav"));
  test::TempDir dir;
  RootConfig c = dit_config(corpus, dir.path("run"), "tts");
  c.train.max_steps = 2;
  const TrainResult r = train_run(c);
  EXPECT_EQ(r.step, 2);
  EXPECT_TRUE(lines_with(dir.path("run/metrics.jsonl"), "val/fm_loss").count(2));
}

TEST(DiTStage, ConditionEmbeddingsFromACache) {
  // Embeddings made elsewhere (T5, CLAP): a cache whose producer is `condition`, one (L, C)
  // tensor per clip, read instead of the text encoder; generate takes them from a file.
  LatentCorpus corpus;
  test::TempDir dir;
  {
    data::FeatureCacheWriter writer(dir.path("cond"), {"condition", "t5-made-elsewhere", "x"});
    torch::manual_seed(12);
    for (const auto& src : {corpus.train, corpus.valid})
      for (const auto& c : data::read_sources({{src, 0.0}}))
        writer.add(c.key, {{"cond_emb", torch::randn({5, 12})}});
  }
  RootConfig c = dit_config(corpus, dir.path("run"), "tta");
  c.section<DiTStageConfig>().condition.source = "cache";
  c.section<DiTStageConfig>().condition.cache_dir = dir.path("cond");
  c.train.max_steps = 2;
  EXPECT_EQ(train_run(c).step, 2);
  const auto model = io::load_safetensors(dir.path("run/checkpoints/step-2/model.safetensors"));
  EXPECT_EQ(model.tensors.count("text_encoder.embed.weight"), 0u);
  EXPECT_EQ(model.tensors.at("dit.context_embed.0.weight").size(1), 12);
  EXPECT_EQ(model.tensors.at("dit.blocks.0.cross_attn.kv.weight").size(1),
            96);  // from the embedded condition (width)
  // Not standardised (the default): the latents go in as the tokenizer made them.
  EXPECT_EQ(model.tensors.at("latent_mean").abs().max().item<float>(), 0.0f);
  EXPECT_EQ(model.tensors.at("latent_std").min().item<float>(), 1.0f);
  // `losatok generate --condition`: embeddings from a file, decoded by a tokenizer given at
  // generation time.
  RootConfig tok_cfg = test::model_config("tiny");
  models::AudioVAE vae(tok_cfg.model, tok_cfg.frontend.dasheng, tok_cfg.frontend.vocos);
  io::save_safetensors(dir.path("tok.safetensors"), io::module_state(*vae),
                       {{kConfigMetadataKey, weights_config_yaml(tok_cfg)}});
  io::save_safetensors(dir.path("cond.safetensors"), {{"cond_emb", torch::randn({3, 12})}}, {});
  std::string out;
  ASSERT_EQ(
      test::run_command(bin() + "generate --checkpoint " + dir.path("run/checkpoints/step-2") +
                            " --condition " + dir.path("cond.safetensors") + " --seconds 0.8 --tokenizer " +
                            dir.path("tok.safetensors") + " --steps 2 --out " + dir.path("c.wav"),
                        &out),
      0)
      << out;
  EXPECT_EQ(audio::probe_audio(dir.path("c.wav")).frames, 20 * 640);
  EXPECT_NE(test::run_command(bin() + "generate --checkpoint " + dir.path("run/checkpoints/step-2") +
                                  " --text x --seconds 1 --out " + dir.path("x.wav"),
                              &out),
            0);
  EXPECT_NE(out.find("--condition"), std::string::npos) << out;
  // A cache of another kind is refused by name.
  RootConfig wrong = c;
  wrong.run_dir = dir.path("wrong");
  wrong.section<DiTStageConfig>().condition.cache_dir = corpus.cache;
  test::expect_error([&] { DiTStage(wrong, torch::kCPU); }, {"dit.condition.cache_dir", "latents"});
}

TEST(DiTStage, PhonemeTokensForTts) {
  if (!data::espeak_available()) GTEST_SKIP() << "espeak-ng is not installed";
  LatentCorpus corpus;
  test::TempDir dir;
  RootConfig c = dit_config(corpus, dir.path("run"), "tts");
  c.section<DiTStageConfig>().text.tokens = "phonemes";
  c.train.max_steps = 2;
  EXPECT_EQ(train_run(c).step, 2);
  // IPA bytes per frame differ from characters: the speaking rate is measured in phoneme bytes.
  const auto model = io::load_safetensors(dir.path("run/checkpoints/step-2/model.safetensors"));
  RootConfig chars = dit_config(corpus, dir.path("chars"), "tts");
  chars.train.max_steps = 1;
  train_run(chars);
  const auto model_chars = io::load_safetensors(dir.path("chars/checkpoints/step-1/model.safetensors"));
  EXPECT_NE(model.tensors.at("frames_per_token").item<double>(),
            model_chars.tensors.at("frames_per_token").item<double>());
}

TEST(DiTStage, ConfigErrorsNameTheKey) {
  LatentCorpus corpus;
  test::TempDir dir;
  RootConfig c = dit_config(corpus, dir.path("run"), "tta");
  c.data.cache_dir = "";
  test::expect_error([&] { DiTStage(c, torch::kCPU); }, {"data.cache_dir", "--what latents"});
  c = dit_config(corpus, dir.path("run2"), "tta");
  c.section<DiTStageConfig>().model.latent_dim = 16;
  test::expect_error([&] { train_run(c); }, {"dit.model.latent_dim", "8-d"});
}

using test::write_random_tokenizer;

TEST(DiTGenerate, ExtractTrainAndGenerateWavsOfTheRequestedDuration) {
  LatentCorpus corpus;
  test::TempDir dir;
  const std::string tok = write_random_tokenizer(dir.path("tokenizer.safetensors"));
  std::string out;
  for (const auto& m : {corpus.train, corpus.valid})
    ASSERT_EQ(test::run_command(bin() + "extract --checkpoint " + tok + " --what latents --manifest " + m +
                                    " --out " + dir.path("latents"),
                                &out),
              0)
        << out;
  for (const std::string task : {"tta", "tts"}) {
    RootConfig c = dit_config(corpus, dir.path("dit_" + task), task);
    c.data.cache_dir = dir.path("latents");
    c.section<DiTStageConfig>().tokenizer_checkpoint = tok;
    c.section<DiTStageConfig>().val_prompts = {{"soft rain", 1.0}};
    c.train.max_steps = 3;
    c.section<DiTStageConfig>().sample_latent = false;
    if (task == "tts") c.section<DiTStageConfig>().val_prompts = {{"a low hum number one", 0.0}};
    ASSERT_EQ(train_run(c).step, 3);
    // Validation generated the fixed prompts: WAV + spectrogram.
    EXPECT_TRUE(fs::exists(dir.path("dit_" + task + "/samples/step-3/gen0.wav")));
    EXPECT_TRUE(fs::exists(dir.path("dit_" + task + "/samples/step-3/gen0.png")));
  }
  // A cache made by another tokenizer is refused, naming both producers' folder.
  {
    RootConfig c = dit_config(corpus, dir.path("dit_wrong"), "tta");
    c.section<DiTStageConfig>().tokenizer_checkpoint = tok;  // corpus.cache was not made by it
    test::expect_error([&] { train_run(c); }, {corpus.cache, "was made by"});
  }
  const std::string ckpt = dir.path("dit_tta/checkpoints/step-3");
  ASSERT_EQ(
      test::run_command(bin() + "generate --checkpoint " + ckpt + " --text 'deep drum' --seconds 1.5 --out " +
                            dir.path("drum.wav") + " --steps 3",
                        &out),
      0)
      << out;
  const audio::AudioInfo drum = audio::probe_audio(dir.path("drum.wav"));
  EXPECT_EQ(drum.sample_rate, 16000);
  EXPECT_EQ(drum.frames, 38 * 640);  // 1.5 s at 25 Hz, rounded to tokens
  // A prompts file: several clips and durations, one batch.
  test::write_text(
      dir.path("prompts.jsonl"),
      "{\"text\": \"soft rain\", \"seconds\": 0.8}\n{\"text\": \"bright bell\", \"seconds\": 2.0, "
      "\"out\": \"bell.wav\"}\n");
  ASSERT_EQ(
      test::run_command(bin() + "generate --checkpoint " + ckpt + " --prompts " + dir.path("prompts.jsonl") +
                            " --out-dir " + dir.path("gen") + " --cfg 1 --steps 2",
                        &out),
      0)
      << out;
  EXPECT_EQ(audio::probe_audio(dir.path("gen/gen-000.wav")).frames, 20 * 640);
  EXPECT_EQ(audio::probe_audio(dir.path("gen/bell.wav")).frames, 50 * 640);
  // generated.jsonl records each clip's task; `eval gen` given the DiT finds its tokenizer for the
  // encoder-space distance.
  EXPECT_NE(test::read_bytes(dir.path("gen/generated.jsonl")).find("\"task\":\"tta\""), std::string::npos);
  ASSERT_EQ(
      test::run_command(bin() + "eval gen --checkpoint " + ckpt + " --generated " + dir.path("gen") +
                            " --reference " + corpus.train + " --vggish " + test::fixture("vggish_tiny.pth") +
                            " --wer off --out " + dir.path("gen.json"),
                        &out),
      0)
      << out;
  {
    std::ifstream in(dir.path("gen.json"));
    const nlohmann::json g = nlohmann::json::parse(in);
    EXPECT_EQ(g.at("encoder_space").at("tokenizer").get<std::string>(), tok) << g;
    EXPECT_TRUE(g.at("overall").at("fad_vggish").is_number()) << g;
  }
  // TTS with an audio prompt: the output is the continuation only, its length from the
  // prompt's speaking rate (or given).
  const std::string tts = dir.path("dit_tts/checkpoints/step-3");
  const std::string prompt_wav = corpus.dir.path("c3.wav");  // 22400 samples = 35 tokens
  ASSERT_EQ(test::run_command(bin() + "generate --checkpoint " + tts +
                                  " --text 'deep drums!' --prompt-audio " + prompt_wav +
                                  " --prompt-text 'a low hum' --out " + dir.path("tts.wav") + " --steps 2",
                              &out),
            0)
      << out;
  // 35 prompt frames for 9 prompt bytes: 11 bytes of text -> round(11 * 35 / 9) = 43 frames.
  EXPECT_EQ(audio::probe_audio(dir.path("tts.wav")).frames, 43 * 640);
  ASSERT_EQ(
      test::run_command(bin() + "generate --checkpoint " + tts + " --text 'deep drum' --seconds 1 --out " +
                            dir.path("tts2.wav") + " --steps 2",
                        &out),
      0)
      << out;
  EXPECT_EQ(audio::probe_audio(dir.path("tts2.wav")).frames, 25 * 640);
  // Bad input: one line naming the thing.
  EXPECT_NE(test::run_command(bin() + "generate --checkpoint " + tok + " --text x --out " + dir.path("x.wav"),
                              &out),
            0);
  EXPECT_NE(out.find("is not a DiT"), std::string::npos) << out;
  EXPECT_NE(test::run_command(
                bin() + "generate --checkpoint " + ckpt + " --text x --out " + dir.path("x.wav"), &out),
            0);
  EXPECT_NE(out.find("duration"), std::string::npos) << out;
  // Absurd sampling options: one line naming the option, nothing written.
  const std::vector<std::pair<std::string, std::string>> absurd = {
      {"--seconds 100000", "is more than dit.sample.max_seconds"},
      {"--seconds inf", "--seconds must be a finite number"},
      {"--seconds 1 --cfg inf", "--cfg must be a guidance scale"},
      {"--seconds 1 --cfg nan", "--cfg must be a guidance scale"},
      {"--seconds 1 --steps 0", "--steps must be in [1, 10000]"},
      {"--seconds 1 --steps -1", "--steps must be in [1, 10000]"},
      {"--seconds 1 --sway nan", "--sway must be in [-1, 1]"},
      {"--seconds 1 --batch-size 0", "--batch-size must be >= 1"},
  };
  for (const auto& [options, message] : absurd) {
    EXPECT_NE(test::run_command(bin() + "generate --checkpoint " + ckpt + " --text x " + options + " --out " +
                                    dir.path("absurd.wav") + " 2>&1",
                                &out),
              0)
        << options;
    EXPECT_NE(out.find(message), std::string::npos) << options << ": " << out;
    EXPECT_FALSE(fs::exists(dir.path("absurd.wav"))) << options;
  }
  // A prompts file's durations are held to the same bounds.
  test::write_text(dir.path("long.jsonl"), "{\"text\": \"x\", \"seconds\": 1e9}\n");
  EXPECT_NE(test::run_command(bin() + "generate --checkpoint " + ckpt + " --prompts " +
                                  dir.path("long.jsonl") + " --out-dir " + dir.path("long") + " 2>&1",
                              &out),
            0);
  EXPECT_NE(out.find("long.jsonl' line 1: \"seconds\" must be in [0, 600"), std::string::npos) << out;
}

TEST(DiTGenerate, ACheckpointFindsItsTokenizerFromAnyFolderAndItsExportCarriesIt) {
  LatentCorpus corpus;
  test::TempDir dir;
  write_random_tokenizer(dir.path("work/tokenizer.safetensors"));
  std::string out;
  ASSERT_EQ(
      test::run_command(bin() + "extract --checkpoint " + dir.path("work/tokenizer.safetensors") +
                            " --what latents --manifest " + corpus.train + " --out " + dir.path("latents"),
                        &out),
      0)
      << out;
  // Trained from `work/` with the paths as a user types them there: relative.
  RootConfig c = dit_config(corpus, "runs/dit", "tta");
  c.data.cache_dir = dir.path("latents");
  c.data.valid_sources.clear();
  c.section<DiTStageConfig>().tokenizer_checkpoint = "tokenizer.safetensors";
  c.train.max_steps = 2;
  c.train.val_every = 0;
  test::write_text(dir.path("work/dit.yaml"), config::dump(config::to_yaml(c)));
  ASSERT_EQ(
      test::run_command("cd " + dir.path("work") + " && " + bin() + "train --config dit.yaml 2>&1", &out), 0)
      << out;
  const auto generate = [&](const std::string& checkpoint, const std::string& wav) {
    return test::run_command("cd / && " + bin() + "generate --checkpoint " + checkpoint +
                                 " --text 'soft rain' --seconds 0.4 --steps 2 --out " + dir.path(wav) +
                                 " 2>&1",
                             &out);
  };
  // From another folder: the recorded absolute path.
  EXPECT_EQ(generate(dir.path("work/runs/dit/checkpoints/step-2"), "a.wav"), 0) << out;
  // The whole work folder moved (another machine): found relative to the run_dir.
  fs::rename(dir.path("work"), dir.path("moved"));
  EXPECT_EQ(generate(dir.path("moved/runs/dit/checkpoints/step-2"), "b.wav"), 0) << out;
  // An export carries the tokenizer; without it on disk the folder cannot generate, the export can.
  ASSERT_EQ(test::run_command(bin() + "export --checkpoint " + dir.path("moved/runs/dit/checkpoints/step-2") +
                                  " --out " + dir.path("dit_export.safetensors") + " 2>&1",
                              &out),
            0)
      << out;
  fs::remove(dir.path("moved/tokenizer.safetensors"));
  EXPECT_NE(generate(dir.path("moved/runs/dit/checkpoints/step-2"), "c.wav"), 0);
  EXPECT_NE(out.find("is not found (tried " + dir.path("work/tokenizer.safetensors")), std::string::npos)
      << out;
  EXPECT_EQ(generate(dir.path("dit_export.safetensors"), "d.wav"), 0) << out;
  EXPECT_EQ(audio::probe_audio(dir.path("d.wav")).frames, 10 * 640);
}
