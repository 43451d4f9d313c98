// The wav2vec2 / WavLM encoder family and UniSpeech's WavLM + ECAPA-TDNN speaker verification:
// every hidden state, the speaker embeddings and their cosine equal a PyTorch reference written
// from fairseq / s3prl / UniSpeech (tests/reference/wavlm_sv_ref.py) on two real speech clips,
// for a tiny checkpoint in wavlm_large_finetune.pth's nested layout and a tiny wav2vec2-base-shaped
// (post-LN, GroupNorm extractor) encoder; one-line loader errors naming the file.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "fixture_data.h"
#include "losatok/core/error.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/speaker_verification.h"
#include "losatok/models/wav2vec2.h"
#include "test_util.h"

using namespace losatok;
namespace fs = std::filesystem;

namespace {

// The fixture's WavLM uses max_distance 100 (not in the file).
constexpr int kMaxDistance = 100;
constexpr double kTol = 1e-4;

const io::SafetensorsData& expected() {
  return test::fixture_tensors("wavlm_sv_expected.safetensors");
}

const torch::Tensor& want(const std::string& name) {
  return expected().tensors.at(name);
}

torch::Tensor clip(const std::string& k) {
  return want("clip/" + k).to(torch::kFloat) / 32768.0;
}

std::string sv_checkpoint() {
  return test::fixture("wavlm_sv_tiny/wavlm_large_finetune.pth");
}
std::string w2v2_checkpoint() {
  return test::fixture("wavlm_sv_tiny/w2v2_base_tiny.safetensors");
}

models::SpeakerVerification& sv() {
  static models::SpeakerVerification m =
      models::load_speaker_verification(sv_checkpoint(), torch::kCPU, kMaxDistance);
  return m;
}

models::Wav2Vec2Encoder& w2v2() {
  static models::Wav2Vec2Encoder m = [] {
    const io::WeightSet set = io::read_weights(w2v2_checkpoint());
    const models::Wav2Vec2Config c = models::Wav2Vec2Config::from_state_dict(set.tensors, "", set.source, 4);
    models::Wav2Vec2Encoder e(c);
    models::load_wav2vec2_weights(e, set.tensors, "", set.source);
    e->eval();
    return e;
  }();
  return m;
}

// Every state of `states` against `<tag>/<clip>/state<i>`; returns the worst relative L2.
double compare_states(const std::vector<torch::Tensor>& states, const std::string& tag,
                      const std::string& k) {
  double worst = 0;
  for (std::size_t i = 0; i < states.size(); ++i) {
    const std::string name = tag + "/" + k + "/state" + std::to_string(i);
    const double err = test::rel_l2(states[i], want(name));
    EXPECT_LE(err, kTol) << name;
    worst = std::max(worst, err);
  }
  return worst;
}

}  // namespace

TEST(Wav2Vec2Family, ConfigFromShapes) {
  const models::Wav2Vec2Config& wavlm = sv()->encoder_config;
  const std::vector<std::array<int, 3>> convs{{32, 10, 5}, {32, 3, 2}, {32, 3, 2}, {32, 3, 2},
                                              {32, 3, 2},  {32, 2, 2}, {32, 2, 2}};
  EXPECT_EQ(wavlm.conv_layers, convs);
  EXPECT_TRUE(wavlm.extractor_layer_norm);
  EXPECT_TRUE(wavlm.layer_norm_first);
  EXPECT_FALSE(wavlm.conv_bias);
  EXPECT_TRUE(wavlm.normalize_waveform);
  EXPECT_EQ(wavlm.embed_dim, 64);
  EXPECT_EQ(wavlm.layers, 2);
  EXPECT_EQ(wavlm.heads, 2);  // from the relative bias table
  EXPECT_EQ(wavlm.ffn_dim, 128);
  EXPECT_EQ(wavlm.pos_conv_kernel, 16);
  EXPECT_EQ(wavlm.pos_conv_groups, 4);
  EXPECT_TRUE(wavlm.relative_position_bias);
  EXPECT_TRUE(wavlm.gru_rel_pos);
  EXPECT_EQ(wavlm.num_buckets, 32);

  const io::WeightSet set = io::read_weights(w2v2_checkpoint());
  const models::Wav2Vec2Config base = models::Wav2Vec2Config::from_state_dict(set.tensors, "", set.source);
  EXPECT_EQ(base.conv_layers, convs);
  EXPECT_FALSE(base.extractor_layer_norm);
  EXPECT_FALSE(base.layer_norm_first);
  EXPECT_FALSE(base.relative_position_bias);
  EXPECT_EQ(base.heads, 1);  // 64 / 64: not in the shapes
  EXPECT_EQ(base.ffn_dim, 64);
  EXPECT_EQ(base.pos_conv_kernel, 8);
  EXPECT_EQ(base.pos_conv_groups, 8);
  EXPECT_EQ(models::Wav2Vec2Config::from_state_dict(set.tensors, "", set.source, 4).heads, 4);

  // The base-size rule: heads from the width.
  io::TensorMap big = set.tensors;
  big["encoder.pos_conv.0.weight_v"] = torch::zeros({768, 48, 128});
  EXPECT_EQ(models::Wav2Vec2Config::from_state_dict(big, "", "big").heads, 12);
  big["encoder.pos_conv.0.weight_v"] = torch::zeros({1024, 64, 128});
  EXPECT_EQ(models::Wav2Vec2Config::from_state_dict(big, "", "big").heads, 16);
}

TEST(Wav2Vec2Family, WavLmHiddenStatesMatchReference) {
  torch::NoGradGuard no_grad;
  models::Wav2Vec2Encoder enc = sv()->encoder;
  for (const std::string k : {"a", "b"}) {
    const std::vector<torch::Tensor> states = enc->hidden_states(clip(k));
    ASSERT_EQ(states.size(), 3u);
    const double worst = compare_states(states, "wavlm", k);
    // forward is the encoder's output, the last state (after encoder.layer_norm, pre-LN).
    EXPECT_TRUE(torch::equal(enc->forward(clip(k)), states.back()));
    std::cout << "WavLM clip " << k << ": worst hidden-state rel L2 " << worst << "\n";
  }
}

TEST(Wav2Vec2Family, Wav2Vec2BaseMatchesReference) {
  torch::NoGradGuard no_grad;
  for (const std::string k : {"a", "b"}) {
    const std::vector<torch::Tensor> states = w2v2()->hidden_states(clip(k));
    ASSERT_EQ(states.size(), 3u);
    const double worst = compare_states(states, "w2v2", k);
    const torch::Tensor x = w2v2()->forward(clip(k));
    EXPECT_LE(test::rel_l2(x, want("w2v2/" + k + "/state2")), kTol);
    std::cout << "wav2vec2 base clip " << k << ": worst hidden-state rel L2 " << worst << ", output "
              << test::rel_l2(x, want("w2v2/" + k + "/state2")) << "\n";
  }
  // A batch of equal-length rows is the rows one by one.
  const torch::Tensor a = clip("a"), b = clip("b").narrow(0, 0, a.size(0));
  const torch::Tensor both = w2v2()->forward(torch::stack({a, b}));
  EXPECT_LE(test::rel_l2(both[1], w2v2()->forward(b)[0]), 1e-5);
}

TEST(Wav2Vec2Family, MissingTensorNamesFileAndKey) {
  io::WeightSet set = io::read_weights(w2v2_checkpoint());
  const models::Wav2Vec2Config c = models::Wav2Vec2Config::from_state_dict(set.tensors, "", set.source, 4);
  models::Wav2Vec2Encoder e(c);
  set.tensors.erase("encoder.layers.1.fc2.bias");
  test::expect_error([&] { models::load_wav2vec2_weights(e, set.tensors, "", set.source); },
                     {"w2v2_base_tiny.safetensors", "encoder.layers.1.fc2.bias"});
  set.tensors.erase("encoder.pos_conv.0.weight_v");
  test::expect_error([&] { models::Wav2Vec2Config::from_state_dict(set.tensors, "", set.source); },
                     {"w2v2_base_tiny.safetensors", "encoder.pos_conv.0.weight_v"});
  test::expect_error([&] { e->forward(torch::zeros({2, 3, 4})); }, {"wav2vec2", "16 kHz"});
  test::expect_error([&] { e->forward(torch::zeros({300})); }, {"300 samples", "shorter"});
}

TEST(SpeakerVerification, EmbeddingsAndCosineMatchReference) {
  double worst = 0;
  torch::Tensor emb[2];
  int i = 0;
  for (const std::string k : {"a", "b"}) {
    const double feat = test::rel_l2(sv()->features(clip(k)), want("sv/" + k + "/features"));
    EXPECT_LE(feat, kTol) << k;
    emb[i] = sv()->embed(clip(k));
    ASSERT_EQ(emb[i].sizes(), torch::IntArrayRef({16}));
    const double err = test::rel_l2(emb[i], want("sv/" + k + "/embedding")[0]);
    EXPECT_LE(err, kTol) << k;
    worst = std::max({worst, feat, err});
    ++i;
  }
  const torch::Tensor cos = models::speaker_similarity(emb[0], emb[1]);
  const double want_cos = want("sv/cosine").item<double>();
  EXPECT_NEAR(cos.item<double>(), want_cos, kTol * std::abs(want_cos));
  std::cout << "SV: worst features / embedding rel L2 " << worst << "; cosine " << cos.item<double>()
            << " vs " << want_cos << " (rel " << std::abs(cos.item<double>() - want_cos) / std::abs(want_cos)
            << ")\n";
  EXPECT_NEAR(models::speaker_similarity(emb[0], emb[0]).item<double>(), 1.0, 1e-6);

  // Rows of a batch embed as they do alone.
  const torch::Tensor a = clip("a"), b = clip("b").narrow(0, 0, a.size(0));
  const torch::Tensor batch = sv()->embed(torch::stack({a, b}));
  ASSERT_EQ(batch.sizes(), torch::IntArrayRef({2, 16}));
  EXPECT_LE(test::rel_l2(batch[0], emb[0]), 1e-5);
  EXPECT_LE(test::rel_l2(batch[1], sv()->embed(b)), 1e-5);
  EXPECT_EQ(models::speaker_similarity(batch, batch).sizes(), torch::IntArrayRef({2}));
}

TEST(SpeakerVerification, OfficialNestedLayoutAndBareStateDictLoad) {
  // torch.save({"model": ..., "epoch": 7}) comes out of read_weights as "model.<name>", with the
  // WavLM's mask_emb that the model does not use.
  const io::WeightSet set = io::read_weights(sv_checkpoint());
  EXPECT_TRUE(set.tensors.count(
      "model.feature_extract.model.encoder.layers.0.self_attn.relative_attention_bias.weight"));
  EXPECT_TRUE(set.tensors.count("model.feature_extract.model.mask_emb"));
  EXPECT_TRUE(set.tensors.count("model.layer2.Res2Conv1dReluBn.convs.6.weight"));
  EXPECT_EQ(sv()->config.scale, 8);
  EXPECT_EQ(sv()->config.cat_channels, 96);
  EXPECT_EQ(sv()->config.num_states, 3);
  EXPECT_FALSE(sv()->config.global_context_att);

  test::TempDir dir;
  io::TensorMap bare;
  for (const auto& [name, t] : set.tensors) bare[name.substr(6)] = t;
  const std::string path = dir.path("bare.safetensors");
  io::save_weights(path, bare, "safetensors");
  models::SpeakerVerification m = models::load_speaker_verification(path, torch::kCPU, kMaxDistance);
  EXPECT_LE(test::rel_l2(m->embed(clip("a")), want("sv/a/embedding")[0]), kTol);
}

TEST(SpeakerVerification, BadCheckpointsAreOneLineErrorsNamingTheFile) {
  test::TempDir dir;
  test::expect_error([&] { models::load_speaker_verification(dir.path("absent.pth")); },
                     {"absent.pth", "UniSpeech"});

  const std::string cut = dir.path("cut.pth");
  fs::copy_file(sv_checkpoint(), cut);
  fs::resize_file(cut, fs::file_size(cut) / 2);
  test::expect_error([&] { models::load_speaker_verification(cut); }, {"cut.pth"});

  io::TensorMap w = io::read_weights(sv_checkpoint()).tensors;
  w.erase("model.layer3.SE_Connect.linear2.bias");
  const std::string missing = dir.path("missing.safetensors");
  io::save_weights(missing, w, "safetensors");
  test::expect_error([&] { models::load_speaker_verification(missing); },
                     {"missing.safetensors", "model.layer3.SE_Connect.linear2.bias"});

  w = io::read_weights(sv_checkpoint()).tensors;
  w.erase("model.feature_extract.model.encoder.layers.1.self_attn.grep_a");
  io::save_weights(missing, w, "safetensors");
  test::expect_error([&] { models::load_speaker_verification(missing); },
                     {"missing.safetensors", "encoder.layers.1.self_attn.grep_a"});

  w = io::read_weights(sv_checkpoint()).tensors;
  w["model.linear.bias"] = torch::zeros({3});
  const std::string shaped = dir.path("shaped.safetensors");
  io::save_weights(shaped, w, "safetensors");
  test::expect_error([&] { models::load_speaker_verification(shaped); },
                     {"shaped.safetensors", "linear.bias"});

  test::expect_error([&] { models::speaker_similarity(torch::zeros({16}), torch::zeros({8})); },
                     {"speaker similarity"});
}
