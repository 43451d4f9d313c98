// LAION-CLAP: the byte-level BPE ids equal Python's; log-mel, HTSAT embedding, projected audio and
// text embeddings equal a PyTorch reference written from the architectures
// (tests/reference/clap_ref.py) for a tiny checkpoint in 630k-audioset-best.pt's layout; the
// front-end helpers against torch.stft; one-line loader errors naming the file.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <iostream>

#include "fixture_data.h"
#include "losatok/audio/torchlibrosa.h"
#include "losatok/core/error.h"
#include "losatok/data/bpe.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/clap.h"
#include "test_util.h"

using namespace losatok;
namespace fs = std::filesystem;

namespace {

const io::SafetensorsData& expected() {
  return test::fixture_tensors("clap_expected.safetensors");
}

const torch::Tensor& want(const std::string& name) {
  return expected().tensors.at(name);
}

int num_captions() {
  return std::stoi(expected().metadata.at("captions"));
}

std::string caption(int k) {
  const torch::Tensor bytes = want("tok/text" + std::to_string(k)).contiguous();
  if (bytes.numel() == 0) return "";
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                     static_cast<std::size_t>(bytes.numel()));
}

std::string checkpoint() {
  return test::fixture("clap_tiny/630k-audioset-best.pt");
}

models::Clap& tiny() {
  static models::Clap m = models::load_clap(checkpoint(), test::fixture("clap_tiny"), torch::kCPU);
  return m;
}

std::vector<int64_t> row(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous().to(torch::kLong);
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

}  // namespace

TEST(Bpe, PretokenizationFollowsGpt2sRegex) {
  using V = std::vector<std::string>;
  EXPECT_EQ(data::gpt2_pretokenize("it's  a test\n"), (V{"it", "'s", " ", " a", " test", "\n"}));
  EXPECT_EQ(data::gpt2_pretokenize("don't 'S x1 2nd!!  "),
            (V{"don", "'t", " '", "S", " x", "1", " 2", "nd", "!!", "  "}));
  EXPECT_EQ(data::gpt2_pretokenize("caf\xc3\xa9\t\xc2\xbd"), (V{"caf\xc3\xa9", "\t", "\xc2\xbd"}));
  EXPECT_TRUE(data::gpt2_pretokenize("").empty());
}

TEST(Bpe, IdsEqualPythonsWithPaddingAndTruncation) {
  const data::ByteLevelBpe bpe(test::fixture("clap_tiny/vocab.json"), test::fixture("clap_tiny/merges.txt"));
  EXPECT_EQ(bpe.bos_id(), 0);
  EXPECT_EQ(bpe.pad_id(), 1);
  EXPECT_EQ(bpe.eos_id(), 2);
  EXPECT_EQ(bpe.unk_id(), 3);
  const torch::Tensor ids = want("text/ids"), mask = want("text/mask");
  ASSERT_EQ(ids.size(0), num_captions());
  bool truncated = false;
  for (int k = 0; k < num_captions(); ++k) {
    std::vector<int64_t> m;
    EXPECT_EQ(bpe.encode_padded(caption(k), 77, &m), row(ids[k])) << "caption " << k << ": " << caption(k);
    EXPECT_EQ(m, row(mask[k])) << k;
    truncated = truncated || bpe.encode(caption(k)).size() > 75;
  }
  EXPECT_TRUE(truncated);  // the fixture exercises truncation
}

TEST(Bpe, BrokenFilesAreOneLineErrors) {
  test::TempDir dir;
  test::write_text(dir.path("vocab.json"), "{\"<s>\": 0,");
  test::write_text(dir.path("merges.txt"), "#version: 0.2\na b\n");
  test::expect_error([&] { data::ByteLevelBpe b(dir.path("vocab.json"), dir.path("merges.txt")); },
                     {"vocab.json", "not a JSON"});
  test::write_text(dir.path("vocab.json"), "{\"<s>\": 0, \"<pad>\": 1, \"</s>\": 2, \"<unk>\": 3}");
  test::write_text(dir.path("merges.txt"), "#version: 0.2\nabc\n");
  test::expect_error([&] { data::ByteLevelBpe b(dir.path("vocab.json"), dir.path("merges.txt")); },
                     {"merges.txt", "line 2"});
}

TEST(Clap, FrontEndHelpersMatchTorchStftAndTheFilesMelW) {
  // The power spectrogram equals |torch.stft|^2 with a periodic Hann window (reflect, centred).
  const torch::Tensor wave = want("audio/wave0").narrow(0, 0, 48000).unsqueeze(0);
  const torch::Tensor p = audio::torchlibrosa_power_spectrogram(wave, 1024, 480);
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{1, 101, 513}));
  // torch::stft has no centring in C++: pad by reflection as torch.stft(center=True) does.
  const torch::Tensor padded = torch::nn::functional::pad(
      wave.unsqueeze(1), torch::nn::functional::PadFuncOptions({512, 512}).mode(torch::kReflect));
  const torch::Tensor ref = torch::stft(padded.squeeze(1), 1024, 480, 1024, torch::hann_window(1024),
                                        /*normalized=*/false, /*onesided=*/true, /*return_complex=*/true)
                                .abs()
                                .square()
                                .transpose(1, 2);
  EXPECT_LT(test::rel_l2(p, ref), 1e-5);
  // The file's melW (librosa's, here written by the reference) equals ours.
  const io::WeightSet w = io::read_weights(checkpoint());
  const torch::Tensor mel = audio::librosa_slaney_mel(48000, 1024, 64, 50, 14000);
  EXPECT_LT(test::max_abs_diff(mel, w.tensors.at("module.audio_branch.logmel_extractor.melW")), 1e-9);
}

TEST(Clap, AudioEqualsThePyTorchReference) {
  auto& m = tiny();
  std::vector<torch::Tensor> log_mel, emb;
  for (int k = 0; k < 2; ++k) {
    const torch::Tensor w = want("audio/wave" + std::to_string(k)).unsqueeze(0);
    ASSERT_LT(w.size(1), 480000);  // repeatpad
    log_mel.push_back(m->log_mel(w));
    emb.push_back(m->embedding(w));
  }
  const double r_mel = test::rel_l2(torch::cat(log_mel), want("audio/log_mel"));
  const double r_emb = test::rel_l2(torch::cat(emb), want("audio/embedding"));
  const torch::Tensor a = m->audio_embedding({want("audio/wave0"), want("audio/wave1")});
  const double r_proj = test::rel_l2(a, want("audio/audio_embedding"));
  std::cout << "CLAP parity: log_mel " << r_mel << ", embedding " << r_emb << ", audio_embedding " << r_proj
            << "\n";
  EXPECT_LT(r_mel, 1e-4);
  EXPECT_LT(r_emb, 1e-4);
  EXPECT_LT(r_proj, 1e-4);
  EXPECT_LT((a.norm(2, -1) - 1).abs().max().item<double>(), 1e-5);
}

TEST(Clap, TextEqualsThePyTorchReference) {
  auto& m = tiny();
  std::vector<std::string> texts;
  for (int k = 0; k < num_captions(); ++k) texts.push_back(caption(k));
  const auto [ids, mask] = m->tokenize(texts);
  EXPECT_TRUE(torch::equal(ids, want("text/ids")));
  EXPECT_TRUE(torch::equal(mask, want("text/mask")));
  const torch::Tensor t = m->text_embedding(texts);
  const double r = test::rel_l2(t, want("text/embedding"));
  std::cout << "CLAP parity: text_embedding " << r << "\n";
  EXPECT_LT(r, 1e-4);
  // One caption alone gives its row of the batch.
  EXPECT_LT(test::rel_l2(m->text_embedding(std::vector<std::string>{texts[1]})[0], t[1]), 1e-5);
}

TEST(Clap, ClipsAreRepeatPaddedOrCutToTenSeconds) {
  const torch::Tensor w = want("audio/wave0");
  const int64_t n = w.size(0), copies = 480000 / n;
  const torch::Tensor fit = models::clap_fit_clip(w, 480000);
  ASSERT_EQ(fit.size(0), 480000);
  EXPECT_TRUE(torch::equal(fit.narrow(0, 0, n * copies), w.repeat({copies})));
  EXPECT_EQ(fit.narrow(0, n * copies, 480000 - n * copies).abs().sum().item<double>(), 0.0);
  // A 12 s clip is scored on its first 10 s.
  const torch::Tensor long_clip = w.repeat({9}).narrow(0, 0, 576000);
  auto& m = tiny();
  const torch::Tensor a = m->audio_embedding(long_clip.unsqueeze(0));
  const torch::Tensor b = m->audio_embedding(long_clip.narrow(0, 0, 480000).unsqueeze(0));
  EXPECT_TRUE(torch::equal(a, b));
}

TEST(Clap, BrokenFilesAreOneLineErrorsNamingTheFile) {
  test::TempDir dir;
  const std::string tok = test::fixture("clap_tiny");
  test::expect_error([&] { models::load_clap(dir.path("absent.pt"), tok); },
                     {"absent.pt", "lukewys/laion_clap"});
  const std::string no_tok = dir.path("tok");
  fs::create_directories(no_tok);
  test::expect_error([&] { models::load_clap(checkpoint(), no_tok); }, {"vocab.json", "roberta-base"});
  fs::copy_file(tok + "/vocab.json", no_tok + "/vocab.json");
  test::expect_error([&] { models::load_clap(checkpoint(), no_tok); }, {"merges.txt", "roberta-base"});

  const std::string cut = dir.path("cut.pt");
  fs::copy_file(checkpoint(), cut);
  fs::resize_file(cut, 5000);
  test::expect_error([&] { models::load_clap(cut, tok); }, {"cut.pt"});

  const io::WeightSet w = io::read_weights(checkpoint());
  const auto save_with = [&](const std::string& name, const std::function<void(io::TensorMap&)>& edit) {
    io::TensorMap t = w.tensors;
    edit(t);
    const std::string path = dir.path(name);
    io::save_weights(path, t, "pt");
    return path;
  };
  const std::string shape = save_with("shape.pt", [](io::TensorMap& t) {
    t["module.audio_projection.2.weight"] = torch::zeros({16, 15});
  });
  test::expect_error([&] { models::load_clap(shape, tok); }, {"shape.pt", "audio_projection.2.weight"});
  const std::string fusion = save_with("fusion.pt", [](io::TensorMap& t) {
    t["module.audio_branch.fusion_model.local_att.0.weight"] = torch::zeros({4});
  });
  test::expect_error([&] { models::load_clap(fusion, tok); },
                     {"fusion.pt", "feature-fusion", "fusion_model"});
  const std::string mel = save_with("mel.pt", [](io::TensorMap& t) {
    t["module.audio_branch.logmel_extractor.melW"] = t["module.audio_branch.logmel_extractor.melW"] * 1.01;
  });
  test::expect_error([&] { models::load_clap(mel, tok); }, {"mel.pt", "melW", "differs"});
  const std::string mask = save_with("mask.pt", [](io::TensorMap& t) {
    t["module.audio_branch.layers.2.blocks.1.attn_mask"] = torch::zeros({4, 64, 64});
  });
  test::expect_error([&] { models::load_clap(mask, tok); }, {"mask.pt", "layers.2.blocks.1.attn_mask"});
  const std::string text = save_with("text.pt", [](io::TensorMap& t) {
    for (auto it = t.begin(); it != t.end();)
      it = it->first.rfind("module.text_branch.encoder.", 0) == 0 ? t.erase(it) : std::next(it);
  });
  test::expect_error([&] { models::load_clap(text, tok); }, {"text.pt", "text_branch.encoder.layer"});
}
