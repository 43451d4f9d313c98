// The generation metric family: paired KL and Inception Score on hand values and on the values
// the reference formulas give (tests/reference/audio_instruments_ref.py), the Frechet distance of
// a set against itself, and `eval gen` / `losatok embed` end to end with the tiny random-weight
// instruments of tests/fixtures.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fixture_data.h"
#include "losatok/core/error.h"
#include "losatok/eval/metrics.h"
#include "losatok/io/safetensors.h"
#include "test_util.h"

using namespace losatok;

namespace {

const io::SafetensorsData& expected() {
  static const io::SafetensorsData f =
      io::load_safetensors(test::fixture("instruments_expected.safetensors"));
  return f;
}
const torch::Tensor& fx(const std::string& name) {
  const auto it = expected().tensors.find(name);
  if (it == expected().tensors.end()) throw std::runtime_error("fixture has no " + name);
  return it->second;
}
double scalar(const std::string& name) {
  return fx(name).to(torch::kFloat64).item<double>();
}

}  // namespace

TEST(GenMetrics, PairedKlOnHandValues) {
  const double eps = 1e-6;
  // ref softmax (0.75, 0.25) against gen (0.5, 0.5); sigmoids 0.75, 0.5 against 0.5, 0.5.
  const torch::Tensor gen = torch::zeros({1, 2}, torch::kFloat64);
  const torch::Tensor ref = torch::tensor({std::log(3.0), 0.0}, torch::kFloat64).unsqueeze(0);
  const eval::PairedKl kl = eval::paired_kl(gen, ref, eps);
  EXPECT_NEAR(kl.softmax, 0.75 * std::log(0.75 / (0.5 + eps)) + 0.25 * std::log(0.25 / (0.5 + eps)), 1e-12);
  EXPECT_NEAR(kl.sigmoid, 0.75 * std::log(0.75 / (0.5 + eps)) + 0.5 * std::log(0.5 / (0.5 + eps)), 1e-12);
  EXPECT_EQ(kl.pairs, 1);
  // Identical outputs: only the eps offset remains (a tiny negative number).
  const torch::Tensor x = torch::randn({5, 7}, torch::kFloat64);
  const eval::PairedKl same = eval::paired_kl(x, x);
  EXPECT_LT(std::abs(same.softmax), 1e-5);
  EXPECT_LT(std::abs(same.sigmoid), 1e-4);
  // Divided by the number of pairs: two copies of one pair give the same number.
  const eval::PairedKl twice = eval::paired_kl(torch::cat({gen, gen}), torch::cat({ref, ref}), eps);
  EXPECT_NEAR(twice.softmax, kl.softmax, 1e-12);
  test::expect_error([&] { eval::paired_kl(x, x.narrow(0, 0, 4)); }, {"paired kl"});
}

TEST(GenMetrics, InceptionScoreOnHandValues) {
  // Every clip the same distribution: IS 1. N confident, distinct classes in one split: IS N.
  const eval::InceptionScore flat = eval::inception_score(torch::randn({1, 6}).repeat({20, 1}), 2);
  EXPECT_NEAR(flat.mean, 1.0, 1e-9);
  EXPECT_NEAR(flat.std, 0.0, 1e-9);
  const eval::InceptionScore sharp = eval::inception_score(60.0 * torch::eye(8, torch::kFloat64), 1);
  EXPECT_NEAR(sharp.mean, 8.0, 1e-6);
  // Two splits of four distinct classes each: 4 and 4.
  const eval::InceptionScore split =
      eval::inception_score(60.0 * torch::eye(8, torch::kFloat64), 2, /*shuffle=*/false);
  EXPECT_NEAR(split.mean, 4.0, 1e-6);
  test::expect_error(
      [] {
        eval::inception_score(torch::zeros({3, 4}), 10);
      },
      {"inception score", "10 splits"});
}

TEST(GenMetrics, EqualTheReferenceFormulas) {
  EXPECT_NEAR(eval::frechet_distance(fx("metrics.a"), fx("metrics.b")), scalar("metrics.fad"),
              1e-6 * std::max(1.0, scalar("metrics.fad")));
  EXPECT_NEAR(eval::frechet_distance(fx("metrics.a"), fx("metrics.a")), 0.0, 1e-7);
  const eval::PairedKl kl = eval::paired_kl(fx("metrics.logits_gen"), fx("metrics.logits_ref"));
  EXPECT_NEAR(kl.softmax, scalar("metrics.kl_softmax"), 1e-6);
  EXPECT_NEAR(kl.sigmoid, scalar("metrics.kl_sigmoid"), 1e-6);
  // torch-fidelity's shuffle (numpy's legacy RandomState(2020).permutation) and its 10 splits.
  const torch::Tensor perm = fx("metrics.is_perm");
  EXPECT_TRUE(
      torch::equal(torch::tensor(eval::numpy_legacy_permutation(perm.size(0), 2020), torch::kLong), perm));
  const eval::InceptionScore is = eval::inception_score(fx("metrics.logits_gen"), 10);
  EXPECT_NEAR(is.mean, scalar("metrics.inception_score_mean"), 1e-9);
  EXPECT_NEAR(is.std, scalar("metrics.inception_score_std"), 1e-9);
  const eval::InceptionScore plain = eval::inception_score(fx("metrics.logits_gen"), 10, /*shuffle=*/false);
  EXPECT_NEAR(plain.mean, scalar("metrics.inception_score_mean_noshuffle"), 1e-9);
  EXPECT_NEAR(plain.std, scalar("metrics.inception_score_std_noshuffle"), 1e-9);
}

namespace {}  // namespace

TEST(EvalGenCli, InstrumentsMeasureSetsPerDomainAndPair) {
  test::TinyCorpus corpus;
  const std::string bin = std::string(LOSATOK_BINARY) + " --log-level warn ";
  // Two domains, and the clips name themselves as their references.
  std::ifstream in(corpus.train);
  std::string line, tagged;
  for (int i = 0; std::getline(in, line); ++i)
    tagged += line.substr(0, line.size() - 1) + ", \"domain\": \"" + (i % 2 ? "music" : "sound") +
              "\", \"text\": \"a tone\"}\n";
  test::write_text(corpus.dir.path("tagged.jsonl"), tagged);
  const std::string clap = " --clap " + test::fixture("clap_tiny/630k-audioset-best.pt") +
                           " --clap-tokenizer " + test::fixture("clap_tiny");
  const std::string inst = " --vggish " + test::fixture("vggish_tiny.pth") + " --panns " +
                           test::fixture("panns16k_tiny.pth") + clap + " --wer off";
  std::string out;
  // A set against itself: every distance and KL is 0.
  ASSERT_EQ(test::run_command(bin + "eval gen --generated " + corpus.dir.path("tagged.jsonl") +
                                  " --reference " + corpus.dir.path("tagged.jsonl") + inst +
                                  " --is-splits 3 --out " + corpus.dir.path("self.json"),
                              &out),
            0)
      << out;
  const nlohmann::json self = test::read_json(corpus.dir.path("self.json"));
  const nlohmann::json& all = self.at("overall");
  EXPECT_NEAR(all.at("fad_vggish").get<double>(), 0.0, 1e-4) << all;
  EXPECT_NEAR(all.at("fd_panns").get<double>(), 0.0, 1e-4) << all;
  EXPECT_EQ(all.at("kl_pairs").get<int>(), 9);
  // Only the 1e-6 offset inside the log remains: about -1e-6 per class, 527 classes.
  EXPECT_LT(std::abs(all.at("kl_softmax").get<double>()), 1e-3);
  EXPECT_GE(all.at("inception_score").get<double>(), 1.0);
  EXPECT_EQ(all.at("vggish_examples_generated").get<int>(), all.at("vggish_examples_reference").get<int>());
  EXPECT_EQ(self.at("domains").at("music").at("generated_clips").get<int>(), 4);
  EXPECT_NEAR(self.at("domains").at("sound").at("fad_vggish").get<double>(), 0.0, 1e-4);
  EXPECT_FALSE(self.contains("encoder_space"));  // no tokenizer given
  // The CLAP score is the mean cosine of each clip's audio and caption embeddings, as `embed`
  // writes them.
  const std::string embed = bin + "embed --checkpoint " + test::fixture("clap_tiny/630k-audioset-best.pt") +
                            " --clap-tokenizer " + test::fixture("clap_tiny");
  ASSERT_EQ(test::run_command(embed + " --model clap-audio --manifest " + corpus.dir.path("tagged.jsonl") +
                                  " --out " + corpus.dir.path("a.safetensors"),
                              &out),
            0)
      << out;
  ASSERT_EQ(test::run_command(
                embed + " --model clap-text --text 'a tone' --out " + corpus.dir.path("t.safetensors"), &out),
            0)
      << out;
  const torch::Tensor audio = io::load_safetensors(corpus.dir.path("a.safetensors")).tensors.at("embedding");
  const torch::Tensor text = io::load_safetensors(corpus.dir.path("t.safetensors")).tensors.at("embedding");
  ASSERT_EQ(audio.size(0), 9);
  EXPECT_NEAR(audio.norm(2, 1).mean().item<double>(), 1.0, 1e-5);
  EXPECT_NEAR(all.at("clap_score").get<double>(), audio.mm(text.t()).mean().item<double>(), 1e-5) << all;
  EXPECT_EQ(all.at("clap_clips").get<int>(), 9);
  // Against other clips: positive distances, no pairs (other file names), so no KL.
  ASSERT_EQ(test::run_command(bin + "eval gen --generated " + corpus.train + " --reference " + corpus.valid +
                                  inst + " --out " + corpus.dir.path("other.json"),
                              &out),
            0)
      << out;
  const nlohmann::json other = test::read_json(corpus.dir.path("other.json")).at("overall");
  EXPECT_GT(other.at("fad_vggish").get<double>(), 1e-3) << other;
  EXPECT_GT(other.at("fd_panns").get<double>(), 1e-6) << other;
  EXPECT_FALSE(other.contains("kl_softmax"));
  // Missing instrument file: one line naming it and where it comes from.
  EXPECT_EQ(test::run_command(bin + "eval gen --generated " + corpus.train + " --reference " + corpus.valid +
                                  " --vggish " + corpus.dir.path("vggish-10086976.pth"),
                              &out),
            1);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_NE(out.find("vggish-10086976.pth"), std::string::npos) << out;
  EXPECT_NE(out.find("torchvggish"), std::string::npos) << out;
  // CLAP without its tokenizer folder.
  EXPECT_EQ(test::run_command(bin + "eval gen --generated " + corpus.train + " --reference " + corpus.valid +
                                  " --clap " + test::fixture("clap_tiny/630k-audioset-best.pt"),
                              &out),
            1);
  EXPECT_NE(out.find("--clap-tokenizer"), std::string::npos) << out;
}

TEST(EmbedCli, WritesEachInstrumentsEmbeddings) {
  test::TinyCorpus corpus;
  const std::string bin = std::string(LOSATOK_BINARY) + " --log-level warn embed ";
  std::string out;
  ASSERT_EQ(
      test::run_command(bin + "--model vggish --checkpoint " + test::fixture("vggish_tiny.pth") +
                            " --manifest " + corpus.valid + " --out " + corpus.dir.path("v.safetensors"),
                        &out),
      0)
      << out;
  const auto v = io::load_safetensors(corpus.dir.path("v.safetensors")).tensors;
  // One row per 0.96 s example of each clip.
  EXPECT_EQ(v.at("examples_per_clip").sum().item<int64_t>(), v.at("embedding").size(0));
  EXPECT_EQ(v.at("embedding").size(1), 128);
  ASSERT_EQ(test::run_command(bin + "--model panns --checkpoint " + test::fixture("panns16k_tiny.pth") +
                                  " --input " + corpus.dir.path("c0.wav") + " --out " +
                                  corpus.dir.path("p.safetensors"),
                              &out),
            0)
      << out;
  const auto p = io::load_safetensors(corpus.dir.path("p.safetensors")).tensors;
  EXPECT_EQ(p.at("logits").sizes(), torch::IntArrayRef({1, 527}));
  EXPECT_TRUE(torch::allclose(p.at("clipwise_output"), torch::sigmoid(p.at("logits"))));
  EXPECT_EQ(test::run_command(bin + "--model clap-text --checkpoint x --input " + corpus.dir.path("c0.wav") +
                                  " --out " + corpus.dir.path("t.safetensors"),
                              &out),
            1);
  EXPECT_NE(out.find("clap-text embeds texts"), std::string::npos) << out;
}
