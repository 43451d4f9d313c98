// The feature cache: round trip over several shards, resume, producer checks, the loader's
// cached-feature mode, and extraction with the tiny model.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "losatok/audio/audio_io.h"
#include "losatok/data/extract.h"
#include "losatok/data/feature_cache.h"
#include "losatok/data/loader.h"
#include "losatok/io/weights.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::data;

namespace {

const CacheProducer kProducer{"semantic", "00aa", "00bb"};

std::map<std::string, torch::Tensor> features(int64_t frames, float base) {
  return {{"semantic_emb", torch::arange(frames * 4, torch::kFloat32).reshape({frames, 4}) + base}};
}

}  // namespace

TEST(FeatureCache, RoundTripAcrossShardsAndResume) {
  test::TempDir dir;
  const auto d = dir.path("cache");
  {
    FeatureCacheWriter w(d, kProducer, /*shard_megabytes=*/0.00005);  // 52 bytes: one clip per shard
    for (int i = 0; i < 3; ++i) w.add("clip" + std::to_string(i), features(5 + i, 100.0f * i));
  }
  {
    FeatureCacheWriter w(d, kProducer);  // resumes
    EXPECT_TRUE(w.contains("clip1"));
    EXPECT_EQ(w.size(), 3u);
    w.add("clip3", features(2, 300));
  }
  FeatureCache cache(d, kProducer);
  EXPECT_EQ(cache.size(), 4u);
  EXPECT_GE(std::distance(std::filesystem::directory_iterator(d), std::filesystem::directory_iterator{}), 5);
  for (int i = 0; i < 3; ++i) {
    const auto key = "clip" + std::to_string(i);
    EXPECT_EQ(cache.clip(key).frames, 5 + i);
    EXPECT_TRUE(
        torch::equal(cache.read(key).at("semantic_emb"), features(5 + i, 100.0f * i).at("semantic_emb")));
  }
  test::expect_error([&] { cache.read("nope"); }, {"no clip 'nope'"});
}

TEST(FeatureCache, AnotherProducerIsAnError) {
  test::TempDir dir;
  const auto d = dir.path("cache");
  { FeatureCacheWriter(d, kProducer).add("a", features(3, 0)); }
  const CacheProducer other{"semantic", "ffff", "00bb"};
  test::expect_error([&] { FeatureCache(d, other); },
                     {"was made by semantic features (weights 00aa", "expects", "ffff"});
  test::expect_error([&] { FeatureCacheWriter(d, other); }, {"weights 00aa"});
  FeatureCache any(d, CacheProducer{});  // inspection accepts any producer
  EXPECT_EQ(any.producer(), kProducer);
  test::write_text(d + "/index.json", "{\"producer\": {}}");
  test::expect_error([&] { FeatureCache(d, kProducer); }, {"index.json"});
  test::expect_error([&] { FeatureCache(dir.path("none"), kProducer); },
                     {"no index.json", "losatok extract"});
}

TEST(FeatureCache, LoaderServesFeaturesAlignedWithTheCrop) {
  test::TempDir dir;
  std::string lines;
  const auto d = dir.path("cache");
  {
    FeatureCacheWriter w(d, kProducer);
    for (int i = 0; i < 4; ++i) {
      const auto path = dir.path("c" + std::to_string(i) + ".wav");
      audio::write_wav(path, std::vector<float>(16000 * 2, 0.1f * (i + 1)), 16000);
      // Feature value = token index, so the crop offset shows in the features.
      w.add(path, {{"semantic_emb", torch::arange(50, torch::kFloat32).unsqueeze(1).repeat({1, 3})}});
      lines += "{\"audio\": \"" + path + "\"}\n";
    }
  }
  test::write_text(dir.path("m.jsonl"), lines);
  DataConfig cfg;
  cfg.segment_seconds = 0.4;
  cfg.batch_size = 2;
  LoaderOptions lo;
  lo.cache = std::make_shared<FeatureCache>(d, kProducer);
  AudioLoader loader(cfg, {{dir.path("m.jsonl"), 0.0}}, lo);
  for (int i = 0; i < 4; ++i) {
    const Batch b = loader.next();
    const auto& f = b.features.at("semantic_emb");
    ASSERT_EQ(f.sizes(), torch::IntArrayRef({2, 10, 3}));  // 0.4 s = 10 tokens
    for (int64_t j = 0; j < 2; ++j) {
      EXPECT_EQ(b.feature_lengths[j].item<int64_t>(), 10);
      EXPECT_EQ(f[j][0][0].item<float>(), static_cast<float>(b.items[j].offset / 640));
    }
  }
}

TEST(FeatureCache, ExtractMatchesTheEncoderAndResumes) {
  test::TempDir dir;
  const RootConfig cfg = test::model_config("tiny");
  models::AudioVAE vae(cfg.model, cfg.frontend.dasheng, cfg.frontend.vocos);
  io::load_weights(
      *vae, io::map_to_vae_names(io::read_weights(test::fixture("vae_tiny.pth")).tensors).tensors, "ref");
  vae->eval();
  std::string lines;
  for (int i = 0; i < 3; ++i) {
    const auto path = dir.path("c" + std::to_string(i) + ".wav");
    std::vector<float> w(8000 + 3000 * i);
    for (std::size_t k = 0; k < w.size(); ++k) w[k] = 0.2f * std::sin(0.003f * k * (i + 1));
    audio::write_wav(path, w, 16000);
    lines += "{\"audio\": \"" + path + "\"}\n";
  }
  lines += "{\"audio\": \"" + dir.path("missing.wav") + "\"}\n";
  test::write_text(dir.path("m.jsonl"), lines);
  const auto clips = read_sources({{dir.path("m.jsonl"), 0.0}});
  const CacheProducer producer = cache_producer("semantic", *vae, cfg);
  {
    FeatureCacheWriter w(dir.path("cache"), producer);
    const auto r = extract_features(*vae, cfg, {clips[0]}, "semantic", w, 2, torch::kCPU);
    EXPECT_EQ(r.written, 1);
  }
  FeatureCacheWriter w(dir.path("cache"), producer);
  const auto r = extract_features(*vae, cfg, clips, "semantic", w, 1, torch::kCPU);
  EXPECT_EQ(r.skipped_existing, 1);
  EXPECT_EQ(r.written, 2);
  EXPECT_EQ(r.bad.size(), 1u);
  FeatureCache cache(dir.path("cache"), producer);
  torch::NoGradGuard no_grad;
  for (const auto& c : clips) {
    if (!cache.contains(c.key)) continue;
    const auto wave = audio::load_audio(c.entry.audio);
    const auto x = torch::from_blob(const_cast<float*>(wave.data()), {1, static_cast<int64_t>(wave.size())});
    // The clip alone, with its length: the reference masks the last, partial token.
    const auto want = vae->semantic_encoder->encoder->forward(x, torch::tensor({x.size(1)}, torch::kLong))[0];
    const auto got = cache.read(c.key).at("semantic_emb");
    EXPECT_EQ(got.size(0), static_cast<int64_t>(wave.size()) / 640);
    EXPECT_LE(test::max_abs_diff(got, want.narrow(0, 0, got.size(0))), 1e-5);
  }
  // The producer follows the weights: other weights, another producer.
  vae->fc_mu->weight.data().add_(1.0);  // not part of the encoder: same semantic producer
  EXPECT_EQ(cache_producer("semantic", *vae, cfg), producer);
  vae->semantic_encoder->encoder->norm->weight.data().add_(1.0);
  EXPECT_NE(cache_producer("semantic", *vae, cfg), producer);
}
