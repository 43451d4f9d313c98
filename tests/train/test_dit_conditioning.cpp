// The paper's DiT conditioning (docs/method.md, "Conditioning"): a frozen T5 encoding captions
// on the fly and through `losatok extract --what text` (with its producer check), UniFlow-style
// TTS (phonemes, speaker, durations from the alignment search) whose flow-matching and duration
// losses fall and whose generated length follows the predicted durations, and the joint
// TTA + TTM + TTS model with one task per batch, per-task validation and exact resume.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "losatok/audio/audio_io.h"
#include "losatok/core/config.h"
#include "losatok/data/feature_cache.h"
#include "losatok/data/text.h"
#include "losatok/gen/dit_pipeline.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/audio_vae.h"
#include "losatok/models/tts.h"
#include "losatok/train/checkpoint.h"
#include "losatok/train/dit_stage.h"
#include "losatok/train/trainer.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::train;
namespace fs = std::filesystem;

namespace {

constexpr int kDim = 8;

// Clips of "speech" whose latents are a vector per phoneme held for that phoneme's duration
// (a: 2 frames, b: 3, c: 1, d: 4, e: 2), so that alignment, durations and content are learnable;
// and captioned clips of "sound" and "music" with random latents.
struct Corpus {
  test::TempDir dir;
  std::string speech_train, speech_valid, sound_train, sound_valid, music_train, music_valid, cache;
  Corpus() {
    const std::string symbols = "abcde";
    const int frames_of[] = {2, 3, 1, 4, 2};
    torch::manual_seed(21);
    const torch::Tensor vectors = 2.0 * torch::randn({5, kDim});
    data::FeatureCacheWriter writer(dir.path("latents"), {"latents", "test-weights", "test-config"});
    std::mt19937 rng(4);
    const auto add_clip = [&](const std::string& name, const torch::Tensor& mu, nlohmann::json line,
                              std::string& manifest) {
      const int64_t n = mu.size(0) * 640;
      std::vector<float> w(static_cast<std::size_t>(n), 0.0f);
      audio::write_audio(dir.path(name), w.data(), n, 1, 16000, "pcm16");
      line["audio"] = name;
      manifest += line.dump() + "\n";
      writer.add(data::clip_key(dir.path(name), 0.0, -1.0),
                 {{"mu", mu}, {"logvar", torch::full({mu.size(0), kDim}, -4.0)}});
    };
    std::string st, sv, at, av, mt, mv;
    for (int i = 0; i < 16; ++i) {
      std::string phonemes, text;
      std::vector<torch::Tensor> parts;
      const int words = 1 + static_cast<int>(rng() % 3);
      for (int w = 0; w < words; ++w) {
        const int len = 1 + static_cast<int>(rng() % 3);
        if (w > 0) phonemes += ' ', text += ' ';
        for (int k = 0; k < len; ++k) {
          const int s = static_cast<int>(rng() % 5);
          if (k > 0) phonemes += '_';
          phonemes += symbols[s];
          text += symbols[s];
          parts.push_back(vectors[s].unsqueeze(0).expand({frames_of[s], kDim}));
        }
      }
      nlohmann::json line = {
          {"text", text}, {"phonemes", phonemes}, {"domain", "speech"}, {"label", i % 2 ? "spk-a" : "spk-b"}};
      add_clip("s" + std::to_string(i) + ".wav", torch::cat(parts) + 0.05 * torch::randn({1, kDim}), line,
               i < 13 ? st : sv);
    }
    const char* sounds[] = {"a low hum", "bright bell", "soft rain", "deep drum"};
    for (int i = 0; i < 10; ++i) {
      const torch::Tensor mu = 2.0 + 3.0 * torch::randn({20 + 4 * i, kDim});
      add_clip("a" + std::to_string(i) + ".wav", mu,
               {{"text", std::string(sounds[i % 4]) + " " + std::to_string(i)}, {"domain", "audio"}},
               i < 8 ? at : av);
      add_clip("m" + std::to_string(i) + ".wav", -1.0 + torch::randn({24, kDim}),
               {{"text", "piano in C " + std::to_string(i)}, {"domain", "music"}}, i < 8 ? mt : mv);
    }
    const auto save = [&](const char* name, const std::string& text) {
      test::write_text(dir.path(name), text);
      return dir.path(name);
    };
    speech_train = save("speech.train.jsonl", st);
    speech_valid = save("speech.valid.jsonl", sv);
    sound_train = save("audio.train.jsonl", at);
    sound_valid = save("audio.valid.jsonl", av);
    music_train = save("music.train.jsonl", mt);
    music_valid = save("music.valid.jsonl", mv);
    cache = dir.path("latents");
  }
};

RootConfig base_config(const Corpus& corpus, const std::string& run_dir, const std::string& task) {
  RootConfig c = read_root_config(
      {test::source_path("configs/model/tiny.yaml"), test::source_path("configs/model/dit_tiny.yaml")},
      {"stage=dit"});
  c.run_dir = run_dir;
  c.seed = 3;
  auto& d = c.section<DiTStageConfig>();
  d.task = task;
  d.model.latent_dim = kDim;
  d.sample.steps = 4;
  d.tts.mode = "uniflow";
  d.tts.phonemes = "manifest";
  d.tts.encoder.width = 32;
  d.tts.encoder.depth = 1;
  d.tts.encoder.heads = 2;
  d.tts.speaker.dim = 16;
  d.tts.speaker.max_speakers = 64;
  c.data.cache_dir = corpus.cache;
  c.data.segment_seconds = 0.0;
  c.data.batch_size = 4;
  c.data.workers = 1;
  c.train.log_every = 1;
  c.train.tensorboard = false;
  c.train.optim.lr = 2e-3;
  c.train.ema.decay = 0.0;
  c.train.checkpoint.every = 1000;
  return c;
}

// Mean of a metric over the first and the last `n` logged steps.
std::pair<double, double> first_and_last(const std::string& metrics, const std::string& key, std::size_t n) {
  const auto lines = test::lines_with(metrics, key);
  std::vector<double> v;
  for (const auto& [step, j] : lines) v.push_back(j[key].get<double>());
  EXPECT_GE(v.size(), 2 * n) << key;
  if (v.size() < 2 * n) return {0, 0};
  double a = 0, b = 0;
  for (std::size_t i = 0; i < n; ++i) a += v[i] / n, b += v[v.size() - 1 - i] / n;
  return {a, b};
}

std::string bin() {
  return std::string(LOSATOK_BINARY) + " --threads 1 ";
}

}  // namespace

TEST(DiTConditioning, T5CaptionsOnTheFlyTrainWithFallingValidationLoss) {
  Corpus corpus;
  test::TempDir dir;
  RootConfig c = base_config(corpus, dir.path("run"), "tta");
  auto& d = c.section<DiTStageConfig>();
  d.condition.source = "t5";
  d.condition.text_encoder = test::fixture("t5_tiny");
  c.data.sources = {{corpus.sound_train, 0.0}};
  c.data.valid_sources = {{corpus.sound_valid, 0.0}};
  c.data.segment_seconds = 0.64;
  c.train.max_steps = 40;
  c.train.val_every = 40;
  EXPECT_EQ(test::train_run(c).step, 40);
  const auto val = test::lines_with(dir.path("run/metrics.jsonl"), "val/fm_loss");
  ASSERT_TRUE(val.count(0) && val.count(40));
  EXPECT_LT(val.at(40)["val/fm_loss"].get<double>(), 0.8 * val.at(0)["val/fm_loss"].get<double>());
  // The frozen T5 is not part of the checkpoint; the content comes in at its width (32).
  const auto model = io::load_safetensors(dir.path("run/checkpoints/step-40/model.safetensors"));
  EXPECT_EQ(model.tensors.at("dit.context_embed.0.weight").size(1), 32);
  for (const auto& [k, v] : model.tensors) EXPECT_EQ(k.find("encoder.block"), std::string::npos) << k;
}

TEST(DiTConditioning, ExtractTextFeaturesAndTheCachesProducerCheck) {
  Corpus corpus;
  test::TempDir dir;
  std::string out;
  const std::string t5 = test::fixture("t5_tiny");
  for (const auto& m : {corpus.sound_train, corpus.sound_valid})
    ASSERT_EQ(test::run_command(bin() + "extract --what text --text-encoder " + t5 + " --manifest " + m +
                                    " --out " + dir.path("text") + " --batch-size 3",
                                &out),
              0)
        << out;
  // The cached features are the encoder's, one caption at a time.
  const data::FeatureCache cache(dir.path("text"), data::CacheProducer{});
  EXPECT_EQ(cache.producer().what, "condition");
  ASSERT_EQ(test::run_command(bin() + "text-encode --text-encoder " + t5 + " --text 'bright bell 1' --out " +
                                  dir.path("one.safetensors"),
                              &out),
            0)
      << out;
  const auto one = io::load_safetensors(dir.path("one.safetensors")).tensors.at("last_hidden_state");
  const auto clips = data::read_sources({{corpus.sound_train, 0.0}});
  const auto cached = cache.read(clips[1].key).at("cond_emb");
  ASSERT_EQ(cached.sizes(), one.sizes());
  EXPECT_LT(test::rel_l2(cached, one), 1e-5);

  RootConfig c = base_config(corpus, dir.path("run"), "tta");
  auto& d = c.section<DiTStageConfig>();
  d.condition.source = "cache";
  d.condition.cache_dir = dir.path("text");
  d.condition.text_encoder = t5;  // checks the producer
  c.data.sources = {{corpus.sound_train, 0.0}};
  c.data.valid_sources = {{corpus.sound_valid, 0.0}};
  c.train.max_steps = 2;
  EXPECT_EQ(test::train_run(c).step, 2);
  // Features of another encoder are refused by name.
  RootConfig other = c;
  other.run_dir = dir.path("other");
  other.section<DiTStageConfig>().condition.text_encoder = test::fixture("t5_small_like");
  test::expect_error([&] { DiTStage(other, torch::kCPU); }, {"dit.condition.cache_dir", "t5_small_like"});
  // Bad input: no encoder folder, a missing one.
  EXPECT_NE(
      test::run_command(
          bin() + "extract --what text --manifest " + corpus.sound_train + " --out " + dir.path("x"), &out),
      0);
  EXPECT_NE(out.find("--text-encoder"), std::string::npos) << out;
  EXPECT_NE(test::run_command(bin() + "text-encode --text-encoder " + dir.path("absent") +
                                  " --text x --out " + dir.path("x.safetensors"),
                              &out),
            0);
  EXPECT_NE(out.find("absent"), std::string::npos) << out;
}

TEST(DiTConditioning, UniFlowTtsLearnsDurationsAndGeneratesToThem) {
  Corpus corpus;
  test::TempDir dir;
  RootConfig c = base_config(corpus, dir.path("run"), "tts");
  c.data.sources = {{corpus.speech_train, 0.0}};
  c.data.valid_sources = {{corpus.speech_valid, 0.0}};
  c.train.max_steps = 60;
  c.train.val_every = 60;
  EXPECT_EQ(test::train_run(c).step, 60);
  const std::string metrics = dir.path("run/metrics.jsonl");
  const auto [fm0, fm1] = first_and_last(metrics, "train/fm_loss", 5);
  EXPECT_LT(fm1, 0.7 * fm0);
  const auto [d0, d1] = first_and_last(metrics, "train/duration_loss", 5);
  EXPECT_LT(d1, 0.5 * d0);
  const auto [g0, g1] = first_and_last(metrics, "train/global_duration_loss", 5);
  EXPECT_LT(g1, 0.5 * g0);
  const auto val = test::lines_with(metrics, "val/duration_loss");
  ASSERT_TRUE(val.count(0) && val.count(60));
  EXPECT_LT(val.at(60)["val/duration_loss"].get<double>(), val.at(0)["val/duration_loss"].get<double>());
  EXPECT_LT(val.at(60)["val/fm_loss"].get<double>(), val.at(0)["val/fm_loss"].get<double>());

  const std::string ckpt = dir.path("run/checkpoints/step-60");
  const io::WeightSet weights = io::read_weights(ckpt);
  EXPECT_EQ(weights.tensors.count("tts.local_duration.out.weight"), 1u);
  EXPECT_EQ(weights.tensors.count("tts.speaker_table.weight"), 1u);
  EXPECT_EQ(weights.tensors.count("text_encoder.embed.weight"), 0u);  // phonemes only
  ASSERT_TRUE(weights.metadata.count(gen::kSpeakersKey));
  EXPECT_EQ(weights.metadata.at(gen::kSpeakersKey), "[\"spk-a\",\"spk-b\"]");
  // The generated length is the predicted durations' sum, and the durations the model learned:
  // "a" (2 frames) x 1, "d" (4) x 2.
  const std::string tok = test::write_random_tokenizer(dir.path("tok.safetensors"));
  gen::LoadedDiT loaded = gen::load_dit_checkpoint(weights, c, torch::kCPU, true, tok);
  auto& p = *loaded.pipeline;
  const auto si = p.speech_inputs({"ad d"}, {"a_d d"}, {"spk-a"}, {});
  torch::NoGradGuard no_grad;
  const auto o = p.model().speech().forward(si.units, si.mask, si.speaker);
  const std::vector<int64_t> d = models::durations_from_log(o.log_durations[0], 0);
  const int64_t frames = d[0] + d[1] + d[2];
  // The global predictor learned the length too: log(1 + 0.4 s).
  EXPECT_NEAR(std::exp(o.log_seconds[0].item<double>()) - 1.0, 0.4, 0.15);
  EXPECT_NEAR(static_cast<double>(frames), 10.0, 3.0);  // 2 + 4 + 4
  EXPECT_LT(d[0], d[1]);
  gen::GenerationRequest r;
  r.text = "ad d";
  r.phonemes = "a_d d";
  r.speaker = "spk-a";
  SamplerConfig s = c.section<DiTStageConfig>().sample;
  const auto latents = p.generate({r}, s);
  ASSERT_EQ(latents.size(), 1u);
  EXPECT_EQ(latents[0].size(0), frames);
  // `losatok generate` writes that many frames of audio; --seconds overrides the length.
  std::string out;
  ASSERT_EQ(test::run_command(bin() + "generate --checkpoint " + ckpt + " --tokenizer " + tok +
                                  " --text 'ad d' --phonemes 'a_d d' --speaker spk-a --steps 2 --out " +
                                  dir.path("tts.wav"),
                              &out),
            0)
      << out;
  EXPECT_EQ(audio::probe_audio(dir.path("tts.wav")).frames, frames * 640);
  ASSERT_EQ(test::run_command(
                bin() + "generate --checkpoint " + ckpt + " --tokenizer " + tok +
                    " --text 'ad d' --phonemes 'a_d d' --speaker spk-a --seconds 1.2 --steps 2 --out " +
                    dir.path("tts2.wav"),
                &out),
            0)
      << out;
  EXPECT_EQ(audio::probe_audio(dir.path("tts2.wav")).frames, 30 * 640);
  // An audio prompt is the infilling TTS's; this one takes a speaker.
  EXPECT_NE(test::run_command(bin() + "generate --checkpoint " + ckpt + " --tokenizer " + tok +
                                  " --text x --phonemes x --prompt-audio " + dir.path("tts.wav") +
                                  " --prompt-text x --out " + dir.path("x.wav"),
                              &out),
            0);
  EXPECT_NE(out.find("speaker"), std::string::npos) << out;
}

TEST(DiTConditioning, UniFlowTtsReadsSpeakerVectorsFromACache) {
  // Any speaker model's vectors (WavLM-ECAPA, WeSpeaker, ...) extracted elsewhere, one per clip.
  Corpus corpus;
  test::TempDir dir;
  {
    data::FeatureCacheWriter writer(dir.path("spk"), {"speaker", "made-elsewhere", "x"});
    torch::manual_seed(8);
    for (const auto& src : {corpus.speech_train, corpus.speech_valid})
      for (const auto& c : data::read_sources({{src, 0.0}}))
        writer.add(c.key, {{"spk_emb", torch::randn({16})}});
  }
  RootConfig c = base_config(corpus, dir.path("run"), "tts");
  auto& d = c.section<DiTStageConfig>();
  d.tts.speaker.source = "cache";
  d.tts.speaker.cache_dir = dir.path("spk");
  c.data.sources = {{corpus.speech_train, 0.0}};
  c.data.valid_sources = {{corpus.speech_valid, 0.0}};
  c.train.max_steps = 2;
  c.train.val_every = 2;
  EXPECT_EQ(test::train_run(c).step, 2);
  const auto model = io::load_safetensors(dir.path("run/checkpoints/step-2/model.safetensors"));
  EXPECT_EQ(model.tensors.count("tts.speaker_table.weight"), 0u);
  EXPECT_EQ(model.tensors.at("tts.speaker_proj.weight").size(1), 16);
  const std::string tok = test::write_random_tokenizer(dir.path("tok.safetensors"));
  io::save_safetensors(dir.path("voice.safetensors"), {{"spk_emb", torch::randn({1, 16})}}, {});
  io::save_safetensors(dir.path("short.safetensors"), {{"spk_emb", torch::randn({5})}}, {});
  const std::string gen = bin() + "generate --checkpoint " + dir.path("run/checkpoints/step-2") +
                          " --tokenizer " + tok + " --text ab --phonemes a_b --seconds 0.4 --steps 2 --out " +
                          dir.path("v.wav");
  std::string out;
  ASSERT_EQ(test::run_command(gen + " --speaker-embedding " + dir.path("voice.safetensors"), &out), 0) << out;
  EXPECT_EQ(audio::probe_audio(dir.path("v.wav")).frames, 10 * 640);
  // A vector of the wrong width, or none, is a one-line error.
  EXPECT_NE(test::run_command(gen + " --speaker-embedding " + dir.path("short.safetensors"), &out), 0);
  EXPECT_NE(out.find("dit.tts.speaker.dim"), std::string::npos) << out;
  EXPECT_NE(test::run_command(gen, &out), 0);
  EXPECT_NE(out.find("speaker vector"), std::string::npos) << out;
}

TEST(DiTConditioning, UniFlowTtsWithEspeakPhonemes) {
  if (!data::espeak_available()) GTEST_SKIP() << "espeak-ng is not installed";
  data::PhonemeTokenizer p("espeak", "en-us");
  const auto u = p.units("hello world");
  EXPECT_EQ(u.size(), 8u);  // h ə l oʊ  w ɜː l d
  EXPECT_EQ(u[0].front(), data::kPhonemeWordStart);
  // Given phonemes win over espeak-ng's.
  EXPECT_EQ(p.units("hello world", "h_a").size(), 2u);
  data::PhonemeTokenizer given("manifest", "en-us");
  test::expect_error([&] { given.units("no phonemes here"); }, {"phonemes", "no phonemes here"});
}

TEST(DiTConditioning, JointModelTrainsOnThreeTasksAndResumesExactly) {
  Corpus corpus;
  test::TempDir dir;
  const auto config = [&](const std::string& run) {
    RootConfig c = base_config(corpus, dir.path(run), "joint");
    c.data.sources = {{corpus.sound_train, 1.0, "tta"},
                      {corpus.music_train, 1.0, "ttm"},
                      {corpus.speech_train, 2.0, "tts"}};
    c.data.valid_sources = {{corpus.sound_valid, 0.0, "tta"},
                            {corpus.music_valid, 0.0, "ttm"},
                            {corpus.speech_valid, 0.0, "tts"}};
    c.data.max_seconds = 2.0;
    c.train.max_steps = 8;
    c.train.val_every = 4;
    c.train.checkpoint.every = 4;
    return c;
  };
  const TrainResult a = test::train_run(config("straight"));
  EXPECT_EQ(a.step, 8);
  RootConfig first = config("split");
  first.train.stop_at_step = 4;
  EXPECT_EQ(test::train_run(first).step, 4);
  RootConfig second = config("split");
  EXPECT_EQ(test::train_run(second, Checkpointer::latest(second.run_dir)->path).step, 8);
  const auto la = test::lines_with(dir.path("straight/metrics.jsonl"), "train/loss");
  const auto lb = test::lines_with(dir.path("split/metrics.jsonl"), "train/loss");
  ASSERT_EQ(la.size(), 8u);
  std::set<std::string> tasks;
  for (const auto& [step, j] : la) {
    EXPECT_EQ(j["train/loss"].get<double>(), lb.at(step)["train/loss"].get<double>()) << step;
    for (const char* t : {"tta", "ttm", "tts"})
      if (j.contains(std::string("train/") + t + "/fm_loss")) tasks.insert(t);
  }
  EXPECT_EQ(tasks.size(), 3u);  // every task trained within 8 steps
  const auto val = test::lines_with(dir.path("straight/metrics.jsonl"), "val/fm_loss");
  ASSERT_TRUE(val.count(8));
  for (const char* k : {"val/tta/fm_loss", "val/ttm/fm_loss", "val/tts/fm_loss", "val/duration_loss"})
    EXPECT_TRUE(val.at(8).contains(k)) << k;
  const auto model = io::load_safetensors(dir.path("straight/checkpoints/step-8/model.safetensors"));
  EXPECT_EQ(model.tensors.at("task_tokens").sizes(),
            torch::IntArrayRef({3, 64}));  // the text encoder's width
  EXPECT_EQ(model.tensors.count("text_encoder.embed.weight"), 1u);
  EXPECT_EQ(model.tensors.count("tts.out_proj.weight"), 1u);
  const auto ta = io::load_safetensors(dir.path("straight/checkpoints/step-8/model.safetensors")).tensors;
  const auto tb = io::load_safetensors(dir.path("split/checkpoints/step-8/model.safetensors")).tensors;
  for (const auto& [k, v] : ta) EXPECT_TRUE(torch::equal(v, tb.at(k))) << k;
  // Generation: each prompt's task; a missing one is an error naming the flag.
  const std::string tok = test::write_random_tokenizer(dir.path("tok.safetensors"));
  std::string out;
  ASSERT_EQ(test::run_command(
                bin() + "generate --checkpoint " + dir.path("straight/checkpoints/step-8") + " --tokenizer " +
                    tok + " --task ttm --text 'piano' --seconds 0.8 --steps 2 --out " + dir.path("m.wav"),
                &out),
            0)
      << out;
  EXPECT_EQ(audio::probe_audio(dir.path("m.wav")).frames, 20 * 640);
  EXPECT_NE(test::run_command(bin() + "generate --checkpoint " + dir.path("straight/checkpoints/step-8") +
                                  " --tokenizer " + tok + " --text 'piano' --seconds 0.8 --out " +
                                  dir.path("n.wav"),
                              &out),
            0);
  EXPECT_NE(out.find("--task"), std::string::npos) << out;
  // A joint model without tasks on its sources is refused by name.
  RootConfig bad = config("bad");
  bad.data.sources[1].task = "";
  test::expect_error([&] { DiTStage(bad, torch::kCPU); }, {"data.sources", "music.train.jsonl"});
}
