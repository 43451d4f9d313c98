// Whisper: the log-mel front end, encoder, decoder logits, greedy / beam-search decoding and the
// long-form loop equal a PyTorch reference written from openai/whisper
// (tests/reference/whisper_ref.py) for a tiny random checkpoint on real speech; openai's .pt and
// Hugging Face's layout load to the same model; broken files are one-line errors naming them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>

#include "fixture_data.h"
#include "losatok/core/error.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/whisper.h"
#include "test_util.h"

using namespace losatok;
namespace fs = std::filesystem;

namespace {

const io::SafetensorsData& expected() {
  return test::fixture_tensors("whisper_expected.safetensors");
}

const torch::Tensor& want(const std::string& name) {
  return expected().tensors.at(name);
}

std::vector<int64_t> ids(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous().to(torch::kLong);
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

std::string checkpoint() {
  return test::fixture("whisper_tiny/model.pt");
}

models::Whisper& tiny() {
  static models::Whisper m = models::load_whisper(checkpoint());
  return m;
}

torch::Tensor clip() {
  return want("clip").to(torch::kFloat32) / 32768.0;
}

const torch::Tensor& features() {
  static const torch::Tensor f = tiny()->encode(tiny()->log_mel(clip()));
  return f;
}

// The options the reference decoded with: suppress_tokens and suppress_blank on.
models::WhisperDecodeOptions options(int beam_size) {
  models::WhisperDecodeOptions o;
  o.beam_size = beam_size;
  o.eot = 350;
  o.suppress_tokens = ids(want("options/suppress"));
  o.suppress_blank = true;
  o.blank_ids = ids(want("options/blank"));
  return o;
}

}  // namespace

TEST(Whisper, SlaneyMelFiltersAndLogMelEqualThePythonReference) {
  const torch::Tensor mel80 = models::whisper_mel_filters(80);
  const double filters = test::rel_l2(mel80, want("filters/mel80"));
  const torch::Tensor mel128 = models::whisper_mel_filters(128).slice(0, 0, 128, 8);
  const double filters128 = test::rel_l2(mel128, want("filters/mel128_rows"));
  EXPECT_LT(filters, 1e-6);
  EXPECT_LT(filters128, 1e-6);

  const torch::Tensor mel = tiny()->log_mel(clip());
  ASSERT_EQ(mel.sizes(), (std::vector<int64_t>{80, 3000}));
  const double head = test::rel_l2(mel.slice(1, 0, 200), want("mel/head"));
  const double stride = test::rel_l2(mel.slice(1, 0, 3000, 100), want("mel/stride"));
  std::cout << "[parity] mel filters 80 " << filters << ", 128 " << filters128 << "; log-mel head " << head
            << ", every 100th frame " << stride << "\n";
  EXPECT_LT(head, 1e-4);
  EXPECT_LT(stride, 1e-4);
  // A clip of up to 30 s: zero-padding the wave to 30 s or padding it by 30 s gives the same frames.
  const torch::Tensor padded = models::whisper_log_mel(clip(), 80, models::kWhisperChunkSamples);
  EXPECT_LT(test::max_abs_diff(padded.slice(1, 0, 3000), mel), 1e-5);
  EXPECT_EQ(models::whisper_pad_or_trim(torch::ones({2, 5}), 3).sizes(), (std::vector<int64_t>{2, 3}));
}

TEST(Whisper, EncoderAndFirstLogitsEqualThePythonReference) {
  const models::WhisperConfig& c = tiny()->config;
  EXPECT_EQ(c.n_mels, 80);
  EXPECT_EQ(c.n_audio_ctx, 1500);
  EXPECT_EQ(c.n_audio_state, 64);
  EXPECT_EQ(c.n_audio_head, 1);
  EXPECT_EQ(c.n_audio_layer, 1);
  EXPECT_EQ(c.n_vocab, 400);
  EXPECT_EQ(c.n_text_ctx, 64);
  EXPECT_EQ(c.n_text_layer, 2);
  ASSERT_EQ(features().sizes(), (std::vector<int64_t>{1, 1500, 64}));
  const double enc = test::rel_l2(features()[0].slice(0, 0, 1500, 10), want("encoder/rows"));

  const std::vector<int64_t> initial = ids(want("options/initial"));
  models::WhisperKvCache cache;
  const torch::Tensor tokens = torch::tensor(initial, torch::kLong).unsqueeze(0);
  const torch::Tensor logits = tiny()->decoder->forward(tokens, features(), cache)[0];
  const double first = test::rel_l2(logits, want("decoder/logits0"));
  std::cout << "[parity] encoder output " << enc << "; first-step logits " << first << "\n";
  EXPECT_LT(enc, 1e-4);
  EXPECT_LT(first, 1e-4);

  // The cache gives what the whole sequence at once gives.
  models::WhisperKvCache step;
  torch::Tensor last;
  for (size_t i = 0; i < initial.size(); ++i)
    last = tiny()->decoder->forward(tokens.slice(1, i, i + 1), features(), step);
  EXPECT_EQ(step.length(), static_cast<int64_t>(initial.size()));
  EXPECT_LT(test::rel_l2(last[0][0], logits[-1]), 1e-5);
}

TEST(Whisper, GreedyAndBeamSearchEqualThePythonReference) {
  const std::vector<int64_t> initial = ids(want("options/initial"));
  const auto check = [&](const std::string& name, models::WhisperDecodeOptions o) {
    const models::WhisperDecodeResult r = tiny()->decode(features(), initial, o);
    const std::vector<int64_t> ref = ids(want(name + "/tokens"));
    EXPECT_EQ(r.tokens, ref) << name;
    EXPECT_NEAR(r.sum_logprob, want(name + "/sum_logprob").item<double>(), 1e-3) << name;
    EXPECT_NEAR(r.avg_logprob, want(name + "/avg_logprob").item<double>(), 1e-4) << name;
    std::cout << "[parity] " << name << ": " << r.tokens.size() << " tokens (reference " << ref.size()
              << "), sum logprob " << r.sum_logprob << " vs " << want(name + "/sum_logprob").item<double>()
              << "\n";
  };
  ASSERT_GE(want("greedy/tokens").numel(), 8);
  check("greedy", options(0));
  check("beam", options(3));
  models::WhisperDecodeOptions lp = options(3);
  lp.patience = 2;
  lp.length_penalty = 0.6;
  check("beam_lp", lp);
  // The filters: no blank first, never a suppressed token.
  const models::WhisperDecodeResult r = tiny()->decode(features(), initial, options(0));
  for (const int64_t id : ids(want("options/suppress")))
    EXPECT_EQ(std::count(r.tokens.begin(), r.tokens.end(), id), 0);
}

TEST(Whisper, LongFormLoopEqualsThePythonReference) {
  // The clip at 0 s and at 31 s in 35 s of silence: two windows, the second padded.
  const torch::Tensor c = clip();
  torch::Tensor wave = torch::zeros({35 * 16000});
  wave.slice(0, 0, c.size(0)).copy_(c);
  wave.slice(0, 31 * 16000, 31 * 16000 + c.size(0)).copy_(c);
  models::WhisperTranscribeOptions o;
  o.decode = options(0);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(tiny()->transcribe(wave, ids(want("options/initial")), o), ids(want("long/tokens")));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  o.condition_on_previous_text = true;
  o.sot_prev = 355;
  EXPECT_EQ(tiny()->transcribe(wave, ids(want("options/initial")), o), ids(want("long_cond/tokens")));
  std::cout << "[parity] long-form " << want("long/tokens").numel() << " tokens equal (" << seconds
            << " s)\n";

  // The encoder over the whole clip: 2 mel frames a row, windows concatenated.
  const torch::Tensor e = tiny()->embed(wave);
  EXPECT_EQ(e.sizes(), (std::vector<int64_t>{1750, 64}));
  EXPECT_TRUE(torch::isfinite(e).all().item<bool>());
  EXPECT_EQ(tiny()->embed(c).size(0), (c.size(0) / 160 + 1) / 2);
  o.sot_prev = -1;
  test::expect_error([&] { tiny()->transcribe(wave, ids(want("options/initial")), o); }, {"sot_prev"});
}

TEST(Whisper, OpenaiAndHuggingFaceLayoutsLoadToTheSameOutputs) {
  const std::vector<int64_t> initial = ids(want("options/initial"));
  const torch::Tensor mel = tiny()->log_mel(clip());
  const torch::Tensor tokens = torch::tensor(initial, torch::kLong).unsqueeze(0);
  // The Hugging Face fixture leaves out the encoder positions (recomputed in float32), the .pt
  // has them in float16: compare with the .pt's model on the recomputed table.
  models::Whisper pt = models::load_whisper(checkpoint());
  pt->encoder->positional_embedding.copy_(models::whisper_sinusoids(1500, 64));
  const torch::Tensor pt_features = pt->encode(mel);
  models::WhisperKvCache pt_cache;
  const torch::Tensor pt_logits = pt->decoder->forward(tokens, pt_features, pt_cache);
  for (const std::string& path :
       {test::fixture("whisper_tiny/hf"), test::fixture("whisper_tiny/hf/model.safetensors")}) {
    models::Whisper hf = models::load_whisper(path);
    EXPECT_EQ(hf->config.str(), tiny()->config.str());
    const torch::Tensor f = hf->encode(mel);
    EXPECT_EQ(test::max_abs_diff(f, pt_features), 0) << path;
    models::WhisperKvCache cache;
    EXPECT_EQ(test::max_abs_diff(hf->decoder->forward(tokens, f, cache), pt_logits), 0) << path;
    // The float16 table's rounding barely moves the encoder output.
    EXPECT_LT(test::rel_l2(f, features()), 1e-3) << path;
  }
  // openai's dims set the head counts and must agree with the shapes.
  models::WhisperConfig dims = tiny()->config;
  EXPECT_NO_THROW(models::load_whisper(checkpoint(), torch::kCPU, dims));
  dims.n_text_ctx = 448;
  test::expect_error([&] { models::load_whisper(checkpoint(), torch::kCPU, dims); },
                     {"model.pt", "n_text_ctx", "448"});
}

TEST(Whisper, BrokenFilesAreOneLineErrorsNamingTheFile) {
  test::TempDir dir;
  test::expect_error([&] { models::load_whisper(dir.path("absent.pt")); }, {"absent.pt"});
  const std::string cut = dir.path("cut.pt");
  fs::copy_file(checkpoint(), cut);
  fs::resize_file(cut, 5000);
  test::expect_error([&] { models::load_whisper(cut); }, {"cut.pt"});

  const io::WeightSet w = io::read_weights(checkpoint());
  const auto save_with = [&](const std::string& name, const std::function<void(io::TensorMap&)>& edit) {
    io::TensorMap t = w.tensors;
    edit(t);
    const std::string path = dir.path(name);
    io::save_weights(path, t, io::weight_format_for(path));
    return path;
  };
  const std::string missing = save_with(
      "missing.pt", [](io::TensorMap& t) { t.erase("model_state_dict.decoder.blocks.1.mlp_ln.bias"); });
  test::expect_error([&] { models::load_whisper(missing); }, {"missing.pt", "decoder.blocks.1.mlp_ln.bias"});
  const std::string no_emb = save_with(
      "no_emb.pt", [](io::TensorMap& t) { t.erase("model_state_dict.decoder.token_embedding.weight"); });
  test::expect_error([&] { models::load_whisper(no_emb); }, {"no_emb.pt", "decoder.token_embedding.weight"});
  const std::string unknown = save_with("unknown.safetensors", [](io::TensorMap& t) {
    t["model_state_dict.vocoder.weight"] = torch::zeros({2});
  });
  test::expect_error([&] { models::load_whisper(unknown); }, {"unknown.safetensors", "vocoder.weight"});
  const std::string shape = save_with("shape.pt", [](io::TensorMap& t) {
    t["model_state_dict.encoder.blocks.0.attn.query.weight"] = torch::zeros({64, 32});
  });
  test::expect_error([&] { models::load_whisper(shape); },
                     {"shape.pt", "encoder.blocks.0.attn.query.weight"});
  const std::string pos = save_with("pos.pt", [](io::TensorMap& t) {
    t["model_state_dict.encoder.positional_embedding"] =
        t["model_state_dict.encoder.positional_embedding"] + 0.1;
  });
  test::expect_error([&] { models::load_whisper(pos); }, {"pos.pt", "encoder.positional_embedding"});

  io::TensorMap hf = io::read_weights(test::fixture("whisper_tiny/hf/model.safetensors")).tensors;
  hf["model.decoder.layers.0.self_attn.rotary.weight"] = torch::zeros({2});
  const std::string hf_path = dir.path("hf.safetensors");
  io::save_weights(hf_path, hf, "safetensors");
  test::expect_error([&] { models::load_whisper(hf_path); },
                     {"hf.safetensors", "model.decoder.layers.0.self_attn.rotary.weight"});

  test::expect_error([&] { tiny()->decode(features(), {999}, options(0)); }, {"999", "vocabulary"});
  test::expect_error([&] { tiny()->encode(torch::zeros({80, 100})); }, {"Whisper encoder", "100"});
}

TEST(Whisper, ConfigComesFromTheShapesForEveryOfficialSize) {
  // Shapes only (expanded scalars, no memory): large-v3 and tiny.en.
  const auto shaped = [](std::vector<int64_t> sizes) { return torch::zeros({1}).expand(sizes); };
  const auto state_dict = [&](int mels, int audio, int audio_layers, int vocab, int text, int text_layers) {
    io::TensorMap w;
    w["encoder.conv1.weight"] = shaped({audio, mels, 3});
    w["encoder.positional_embedding"] = shaped({1500, audio});
    for (int i = 0; i < audio_layers; ++i)
      w["encoder.blocks." + std::to_string(i) + ".attn.query.weight"] = shaped({1});
    w["decoder.token_embedding.weight"] = shaped({vocab, text});
    w["decoder.positional_embedding"] = shaped({448, text});
    for (int i = 0; i < text_layers; ++i)
      w["decoder.blocks." + std::to_string(i) + ".attn.query.weight"] = shaped({1});
    return w;
  };
  const models::WhisperConfig large =
      models::WhisperConfig::from_state_dict(state_dict(128, 1280, 32, 51866, 1280, 32), "v3");
  EXPECT_EQ(large.str(),
            "n_mels 128, audio ctx 1500 state 1280 heads 20 layers 32, n_vocab 51866, text ctx 448 state "
            "1280 heads 20 "
            "layers 32");
  EXPECT_NO_THROW(large.validate("v3"));
  const models::WhisperConfig tiny_en =
      models::WhisperConfig::from_state_dict(state_dict(80, 384, 4, 51864, 384, 4), "en");
  EXPECT_EQ(tiny_en.n_audio_head, 6);
  EXPECT_EQ(tiny_en.n_vocab, 51864);
  EXPECT_EQ(models::whisper_mel_filters(128).sizes(), (std::vector<int64_t>{128, 201}));
  // A width that is not a multiple of 64 needs openai's dims for its heads.
  test::expect_error(
      [&] {
        models::WhisperConfig::from_state_dict(state_dict(80, 96, 1, 100, 96, 1), "odd.pt")
            .validate("odd.pt");
      },
      {"odd.pt", "dims"});
}
