// fp32 parity of the C++ tokenizer with the PyTorch reference (tests/reference/losatok_ref.py)
// on real audio: a 10.4 s clip across the encoder's chunk boundary and a padded batch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/audio_vae.h"
#include "test_util.h"

using namespace losatok;

namespace {

constexpr double kTolerance = 1e-4;  // relative L2 (the acceptance bound)

struct Expected {
  io::TensorMap t;
  Expected() : t(io::load_safetensors(test::fixture("vae_tiny_expected.safetensors")).tensors) {}
  torch::Tensor wave(const std::string& name) const { return t.at(name).to(torch::kFloat32) / 32768.0; }
};

models::AudioVAE load_reference_vae(io::LoadReport* report = nullptr) {
  const RootConfig c = test::model_config("tiny");
  models::AudioVAE vae(c.model, c.frontend.dasheng, c.frontend.vocos);
  const auto w = io::read_weights(test::fixture("vae_tiny.pth"));
  const auto mapped = io::map_to_vae_names(w.tensors);
  const auto r = io::load_weights(*vae, mapped.tensors, w.source);
  if (report) *report = r;
  vae->eval();
  return vae;
}

void expect_close(const torch::Tensor& got, const torch::Tensor& want, const std::string& name) {
  ASSERT_EQ(got.sizes(), want.sizes()) << name;
  const double rel = test::rel_l2(got, want);
  EXPECT_LE(rel, kTolerance) << name;
  ::testing::Test::RecordProperty(name + "_rel_l2", ::testing::PrintToString(rel));
}

const char* const kCompared[] = {
    "semantic_emb", "semantic_emb_low", "acoustic_emb", "acoustic_emb_low", "unified_emb_low", "mu",
    "logvar"};

}  // namespace

TEST(Parity, ReferenceCheckpointLoadsStrictly) {
  io::LoadReport report;
  load_reference_vae(&report);
  EXPECT_TRUE(report.clean()) << report.summary();
  // The reference state dict carries the mel filterbanks and STFT windows: ignored.
  EXPECT_GE(report.ignored.size(), 4u) << report.summary();
}

TEST(Parity, LongClipAcrossTheChunkBoundary) {
  const Expected e;
  auto vae = load_reference_vae();
  torch::NoGradGuard no_grad;
  const auto wave = e.wave("long_wave_i16").unsqueeze(0);
  ASSERT_GT(wave.size(1), 16000 * 10.08);
  const auto f = vae->encode(wave);
  ASSERT_GT(f.mu.size(1), 252);
  const auto named = f.named();
  for (const char* name : kCompared) {
    const auto it = std::find_if(named.begin(), named.end(), [&](const auto& p) { return p.first == name; });
    expect_close(it->second, e.t.at(std::string("long.") + name), std::string("long.") + name);
  }
}

TEST(Parity, PaddedBatchAndDecodedWaveform) {
  const Expected e;
  auto vae = load_reference_vae();
  torch::NoGradGuard no_grad;
  const auto wave = e.wave("batch_wave_i16");
  const auto lengths = e.t.at("batch_lengths");
  const auto f = vae->encode(wave, lengths);
  ASSERT_TRUE(f.mask.defined());
  const auto named = f.named();
  for (const char* name : kCompared) {
    const auto it = std::find_if(named.begin(), named.end(), [&](const auto& p) { return p.first == name; });
    const auto want = e.t.at(std::string("batch.") + name);
    ASSERT_EQ(it->second.sizes(), want.sizes()) << name;
    // Valid tokens of each clip (padding positions are don't-care).
    for (int64_t b = 0; b < 2; ++b) {
      const int64_t valid = f.mask[b].sum().item<int64_t>();
      expect_close(it->second[b].narrow(0, 0, valid), want[b].narrow(0, 0, valid),
                   "batch." + std::string(name) + "[" + std::to_string(b) + "]");
    }
  }
  expect_close(vae->decode(e.t.at("batch.mu")), e.t.at("batch.decoded"), "batch.decoded");
  // Decoding our own mu gives the reference's waveform too.
  expect_close(vae->decode(f.mu), e.t.at("batch.decoded"), "batch.decoded_from_ours");
}

TEST(Parity, MiDashengShardedFolderLoadsTheEncoderAlone) {
  // An HF MiDashengLM layout: two shards + index; only audio_encoder.* is taken.
  const Expected e;
  test::TempDir dir;
  const auto ref = io::map_to_vae_names(io::read_weights(test::fixture("vae_tiny.pth")).tensors).tensors;
  io::TensorMap shard1, shard2;
  std::string weight_map;
  int i = 0;
  const std::string prefix = "semantic_encoder.encoder.";
  for (const auto& [name, t] : ref) {
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string hf = "audio_encoder." + name.substr(prefix.size());
    const bool first = (i++ % 2) == 0;
    (first ? shard1 : shard2)[hf] = t;
    weight_map += (weight_map.empty() ? "" : ",") + std::string("\"") + hf + "\":\"model-0000" +
                  (first ? "1" : "2") + "-of-00002.safetensors\"";
  }
  shard2["decoder.model.embed_tokens.weight"] = torch::ones({4, 4});
  shard2["audio_projector.net.0.weight"] = torch::ones({2, 2});
  weight_map += ",\"decoder.model.embed_tokens.weight\":\"model-00002-of-00002.safetensors\"";
  weight_map += ",\"audio_projector.net.0.weight\":\"model-00002-of-00002.safetensors\"";
  // A shard of LLM weights only is never opened (here it is not even a safetensors file).
  weight_map += ",\"decoder.model.layers.0.mlp.weight\":\"model-llm.safetensors\"";
  test::write_text(dir.path("model-llm.safetensors"), "not opened");
  io::save_safetensors(dir.path("model-00001-of-00002.safetensors"), shard1);
  io::save_safetensors(dir.path("model-00002-of-00002.safetensors"), shard2);
  test::write_text(dir.path("model.safetensors.index.json"),
                   "{\"metadata\":{},\"weight_map\":{" + weight_map + "}}");

  const auto w = io::read_weights(dir.dir().string());
  EXPECT_EQ(w.format, "sharded-safetensors");
  const auto mapped = io::map_to_vae_names(w.tensors);
  EXPECT_EQ(mapped.scope, prefix);
  EXPECT_EQ(w.unread, 3u);  // the LLM and projector tensors are never read
  EXPECT_TRUE(mapped.dropped.empty());

  const RootConfig c = test::model_config("tiny");
  models::AudioVAE vae(c.model, c.frontend.dasheng, c.frontend.vocos);
  // Strict over the whole model fails naming what is missing; scoped to the encoder it loads.
  test::expect_error([&] { io::load_weights(*vae, mapped.tensors, w.source); },
                     {"missing (dasheng_tokenizer.decoder"});
  io::LoadOptions scoped;
  scoped.scope = mapped.scope;
  const auto report = io::load_weights(*vae, mapped.tensors, w.source, scoped);
  EXPECT_TRUE(report.clean()) << report.summary();
  vae->eval();
  torch::NoGradGuard no_grad;
  const auto got = vae->semantic_encoder->encoder->forward(e.wave("long_wave_i16").unsqueeze(0));
  expect_close(got, e.t.at("long.semantic_emb"), "sharded.semantic_emb");
}

TEST(Parity, ReleasedSemanticEncoderFileLoadsIntoTheTokenizer) {
  // The release's semantic_encoder.pth layout: encoder.* / bottleneck.*, no prefix.
  const auto w = io::read_weights(test::fixture("semantic_encoder_tiny.pth"));
  const io::MappedWeights mapped = io::map_to_vae_names(w.tensors);
  EXPECT_EQ(mapped.scope, "semantic_encoder.");
  const RootConfig c = test::model_config("tiny");
  models::AudioVAE vae(c.model, c.frontend.dasheng, c.frontend.vocos);
  io::LoadOptions o;
  o.scope = mapped.scope;
  const io::LoadReport report = io::load_weights(*vae, mapped.tensors, w.source, o);
  EXPECT_TRUE(report.clean()) << report.summary();
  EXPECT_GE(report.loaded.size(), 40u) << report.summary();
  // Every tensor equals the full reference checkpoint's semantic_encoder.* entry.
  const io::TensorMap full =
      io::map_to_vae_names(io::read_weights(test::fixture("vae_tiny.pth")).tensors).tensors;
  const io::TensorMap mine = io::module_state(*vae);
  for (const auto& name : report.loaded) EXPECT_TRUE(torch::equal(mine.at(name), full.at(name))) << name;
}
