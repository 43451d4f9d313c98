// `losatok encode / decode / reconstruct / import / export` end to end on the tiny reference
// checkpoint: outputs, their agreement, the carried config, and one-line errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "losatok/audio/audio_io.h"
#include "losatok/io/safetensors.h"
#include "test_util.h"

using namespace losatok;

namespace {

std::string bin() {
  return std::string(LOSATOK_BINARY) + " --threads 1 --log-level warn ";
}

void run_ok(const std::string& args) {
  std::string out;
  ASSERT_EQ(test::run_command(bin() + args, &out), 0) << args << "\n" << out;
}

}  // namespace

TEST(CodecCli, EncodeDecodeReconstructAgree) {
  test::TempDir dir;
  const std::string tiny = "--config " + test::source_path("configs/model/tiny.yaml");
  const std::string ck = " --checkpoint " + test::fixture("vae_tiny.pth");
  const std::string audio = test::fixture("sine_stereo_44k.wav");
  run_ok("encode " + tiny + ck + " --input " + audio + " --output " + dir.path("f.safetensors"));
  const auto f = io::load_safetensors(dir.path("f.safetensors"));
  for (const char* name : {"z", "mu", "logvar", "semantic_emb", "acoustic_emb", "unified_emb",
                           "semantic_emb_low", "acoustic_emb_low", "unified_emb_low"}) {
    ASSERT_TRUE(f.tensors.count(name)) << name;
    EXPECT_EQ(f.tensors.at(name).dim(), 3) << name;
    EXPECT_EQ(f.tensors.at(name).size(0), 1) << name;
  }
  EXPECT_EQ(f.tensors.at("semantic_emb").size(2), 32);
  EXPECT_EQ(f.tensors.at("mu").size(2), 8);
  EXPECT_TRUE(torch::equal(f.tensors.at("z"), f.tensors.at("mu")));
  const int64_t samples = std::stoll(f.metadata.at("samples"));

  run_ok("decode " + tiny + ck + " --input " + dir.path("f.safetensors") + " --output " + dir.path("d.wav"));
  run_ok("reconstruct " + tiny + ck + " --input " + audio + " --output " + dir.path("r.wav"));
  const auto d = audio::read_audio(dir.path("d.wav")), r = audio::read_audio(dir.path("r.wav"));
  EXPECT_EQ(static_cast<int64_t>(d.samples.size()), samples);
  ASSERT_EQ(d.samples.size(), r.samples.size());
  EXPECT_EQ(d.sample_rate, 16000);
  double diff = 0;
  for (size_t i = 0; i < d.samples.size(); ++i)
    diff = std::max(diff, double(std::abs(d.samples[i] - r.samples[i])));
  EXPECT_LE(diff, 1e-3);  // the same computation, written to 16-bit WAV twice

  run_ok("encode " + tiny + ck + " --sample seed=5 --input " + audio + " --output " +
         dir.path("s.safetensors"));
  const auto s = io::load_safetensors(dir.path("s.safetensors"));
  EXPECT_FALSE(torch::equal(s.tensors.at("z"), s.tensors.at("mu")));
}

TEST(CodecCli, ImportCarriesTheConfigAndExportGoesBack) {
  test::TempDir dir;
  const std::string tiny = "--config " + test::source_path("configs/model/tiny.yaml");
  const std::string audio = test::fixture("sine_stereo_44k.wav");
  run_ok("import " + tiny + " --from " + test::fixture("vae_tiny.pth") + " --out " +
         dir.path("ck.safetensors"));
  // The release's semantic_encoder.pth: import says what it recognised and maps it whole.
  {
    std::string out;
    ASSERT_EQ(test::run_command(std::string(LOSATOK_BINARY) + " --threads 1 import " + tiny + " --from " +
                                    test::fixture("semantic_encoder_tiny.pth") + " --out " +
                                    dir.path("sem.safetensors"),
                                &out),
              0)
        << out;
    EXPECT_NE(out.find("semantic_encoder.pth: encoder.*, bottleneck.* -> semantic_encoder.*"),
              std::string::npos)
        << out;
    const auto sem = io::load_safetensors(dir.path("sem.safetensors"));
    EXPECT_EQ(sem.tensors.size(), 43u);  // the 45 of the file less its two recomputed front-end buffers
    EXPECT_EQ(sem.metadata.at("scope"), "semantic_encoder.");
  }
  // No --config: the sizes come from the imported checkpoint.
  run_ok("encode --checkpoint " + dir.path("ck.safetensors") + " --input " + audio + " --output " +
         dir.path("a.safetensors"));
  run_ok("encode " + tiny + " --checkpoint " + test::fixture("vae_tiny.pth") + " --input " + audio +
         " --output " + dir.path("b.safetensors"));
  EXPECT_TRUE(torch::equal(io::load_safetensors(dir.path("a.safetensors")).tensors.at("mu"),
                           io::load_safetensors(dir.path("b.safetensors")).tensors.at("mu")));
  run_ok("export --checkpoint " + dir.path("ck.safetensors") + " --out " + dir.path("w.pt"));
  run_ok("encode " + tiny + " --checkpoint " + dir.path("w.pt") + " --input " + audio + " --output " +
         dir.path("c.safetensors"));
  EXPECT_TRUE(torch::equal(io::load_safetensors(dir.path("c.safetensors")).tensors.at("mu"),
                           io::load_safetensors(dir.path("b.safetensors")).tensors.at("mu")));
}

TEST(CodecCli, ManifestBatch) {
  test::TempDir dir;
  const std::string sine = test::fixture("sine_stereo_44k.wav");
  test::write_text(dir.path("m.jsonl"), "{\"audio\": \"" + sine + "\"}\n{\"audio\": \"" + sine +
                                            "\", \"offset\": 0.1}\n{\"audio\": \"missing.wav\"}\n");
  // A bad input does not stop the others; the command then fails naming it.
  std::string out;
  EXPECT_EQ(test::run_command(bin() + "reconstruct --config " + test::source_path("configs/model/tiny.yaml") +
                                  " --checkpoint " + test::fixture("vae_tiny.pth") + " --manifest " +
                                  dir.path("m.jsonl") + " --output-dir " + dir.path("out"),
                              &out),
            1);
  EXPECT_NE(out.find("1 of 3 inputs failed (first: audio file '" + dir.path("missing.wav")),
            std::string::npos)
      << out;
  const auto a = audio::read_audio(dir.path("out/sine_stereo_44k.wav"));
  const auto b = audio::read_audio(dir.path("out/sine_stereo_44k-2.wav"));
  EXPECT_EQ(a.samples.size(), b.samples.size() + 1600);
}

TEST(CodecCli, BadInputIsOneLineError) {
  test::TempDir dir;
  const std::string tiny = "--config " + test::source_path("configs/model/tiny.yaml");
  const std::string bytes = test::read_bytes(test::fixture("vae_tiny.pth"));
  test::write_bytes(dir.path("cut.pth"), bytes.substr(0, 1000));
  struct Case {
    std::string args, needle;
  };
  const Case cases[] = {
      {"encode " + tiny + " --checkpoint " + dir.path("cut.pth") + " --input x.wav --output y", "cut.pth"},
      {"encode " + tiny + " model.decoder.intermediate_dim=48 --checkpoint " + test::fixture("vae_tiny.pth") +
           " --input " + test::fixture("sine_stereo_44k.wav") + " --output " + dir.path("y.safetensors"),
       "wrongly shaped (dasheng_tokenizer.decoder.backbone.convnext.0.pwconv1.bias: checkpoint [64] vs model "
       "[48]"},
      {"encode " + tiny + " --checkpoint " + test::fixture("vae_tiny.pth") + " --input " +
           dir.path("nope.wav") + " --output y",
       "nope.wav"},
      {"decode " + tiny + " --checkpoint " + test::fixture("vae_tiny.pth") + " --input " +
           test::fixture("istft_same.safetensors") + " --output y.wav",
       "no tensor 'z'"},
  };
  for (const auto& c : cases) {
    std::string out;
    EXPECT_EQ(test::run_command(bin() + c.args, &out), 1) << c.args << "\n" << out;
    EXPECT_NE(out.find(c.needle), std::string::npos) << out;
    EXPECT_NE(out.find("losatok: error:"), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  }
}

TEST(CodecCli, ExtractFillsAndResumesTheCache) {
  test::TempDir dir;
  const std::string sine = test::fixture("sine_stereo_44k.wav");
  test::write_text(dir.path("m.jsonl"),
                   "{\"audio\": \"" + sine + "\"}\n{\"audio\": \"" + sine + "\", \"offset\": 0.2}\n");
  const std::string args = "extract --config " + test::source_path("configs/model/tiny.yaml") +
                           " --checkpoint " + test::fixture("vae_tiny.pth") + " --manifest " +
                           dir.path("m.jsonl") + " --out " + dir.path("cache") + " --what ";
  std::string out;
  ASSERT_EQ(test::run_command(bin() + args + "latents", &out), 0) << out;
  const std::string index = test::read_bytes(dir.path("cache/index.json"));
  EXPECT_NE(index.find("\"what\": \"latents\""), std::string::npos) << index;
  EXPECT_NE(index.find("@0.200+-1.000"), std::string::npos) << index;  // the offset clip has its own key
  // Again: nothing left to do. Into the same folder with another kind: refused.
  ASSERT_EQ(test::run_command(std::string(LOSATOK_BINARY) + " --threads 1 " + args + "latents", &out), 0)
      << out;
  EXPECT_NE(out.find("0 clips written"), std::string::npos) << out;
  EXPECT_NE(out.find("2 already there"), std::string::npos) << out;
  EXPECT_EQ(test::run_command(bin() + args + "semantic", &out), 1);
  EXPECT_NE(out.find("was made by latents features"), std::string::npos) << out;
}

TEST(CodecCli, InspectListsShardFoldersFromHeaders) {
  test::TempDir dir;
  io::save_safetensors(dir.path("a.safetensors"), {{"audio_encoder.norm.weight", torch::ones({4})}});
  io::save_safetensors(dir.path("b.safetensors"), {{"decoder.lm_head.weight", torch::ones({2, 3})}});
  test::write_text(dir.path("model.safetensors.index.json"),
                   "{\"weight_map\": {\"audio_encoder.norm.weight\": \"a.safetensors\", "
                   "\"decoder.lm_head.weight\": \"b.safetensors\"}}");
  std::string out;
  ASSERT_EQ(test::run_command(bin() + "inspect " + dir.dir().string(), &out), 0) << out;
  EXPECT_NE(out.find("audio_encoder.norm.weight\tF32\t[4]\ta.safetensors"), std::string::npos) << out;
  EXPECT_NE(out.find("decoder.lm_head.weight\tF32\t[2, 3]\tb.safetensors"), std::string::npos) << out;
  EXPECT_NE(out.find("2 tensors in 2 shards"), std::string::npos) << out;
}
