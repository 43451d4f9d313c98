// The X-ARES suite end to end on shards written here in X-ARES' layout (one folder per task, tar
// shards of <key>.wav + <key>.json, named as X-ARES' task configs name them), with a synthetic
// encoder whose frames one-hot the signal's level: every task kind is then separable, so the
// scores have hand values (clip and k-fold accuracy 1, multi-label mAP 3/200 (3 classes of 200), DESED's
// macro segment F1 = present classes / 10, retrieval recall@1 1); the weighted average follows eval_weight;
// the feature cache makes a second run encode nothing; bad shards get one-line errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "fixture_data.h"
#include "losatok/audio/audio_io.h"
#include "losatok/core/error.h"
#include "losatok/data/hf_tokenizer.h"
#include "losatok/data/webdataset.h"
#include "losatok/eval/xares_asr.h"
#include "losatok/eval/xares_suite.h"
#include "losatok/eval/xares_tasks.h"
#include "losatok/models/qwen2.h"
#include "test_util.h"

using namespace losatok;
namespace fs = std::filesystem;

namespace {

constexpr int kRate = 16000;
constexpr int64_t kHop = 640;  // 40 ms
constexpr int64_t kLevels = 8;

// Frame t's feature: one-hot of round(20 * mean amplitude) (level 0 = silence).
std::vector<std::map<std::string, torch::Tensor>> encode_levels(const std::vector<std::vector<float>>& waves,
                                                                int* calls) {
  ++*calls;
  std::vector<std::map<std::string, torch::Tensor>> out;
  for (const auto& w : waves) {
    const int64_t t = static_cast<int64_t>(w.size()) / kHop;
    torch::Tensor f = torch::zeros({t, kLevels});
    for (int64_t i = 0; i < t; ++i) {
      double m = 0;
      for (int64_t k = 0; k < kHop; ++k) m += w[static_cast<std::size_t>(i * kHop + k)];
      const int64_t level = std::clamp<int64_t>(std::llround(20.0 * m / kHop), 0, kLevels - 1);
      f[i][level] = 1.0f;
    }
    out.push_back({{"mu", f}});
  }
  return out;
}

// A constant signal at `level` (amplitude level / 20) for `seconds`, with [from, to) seconds of
// it at `inner` instead when to > from.
std::vector<float> signal(int level, double seconds, int inner = 0, double from = 0, double to = 0) {
  std::vector<float> w(static_cast<std::size_t>(seconds * kRate), static_cast<float>(level) / 20.0f);
  for (auto i = static_cast<std::size_t>(from * kRate); i < static_cast<std::size_t>(to * kRate); ++i)
    w[i] = static_cast<float>(inner) / 20.0f;
  return w;
}

struct Sample {
  std::string key, json;
  std::vector<float> wave;
};

std::string wav_bytes(const std::vector<float>& w, const test::TempDir& tmp) {
  const std::string path = tmp.path("clip.wav");
  // float WAV keeps the levels exact.
  audio::write_audio(path, w.data(), static_cast<int64_t>(w.size()), 1, kRate, "float");
  return test::read_bytes(path);
}

void write_shard(const std::string& path, const std::vector<Sample>& samples, const test::TempDir& tmp) {
  std::vector<data::TarMember> members;
  for (const auto& s : samples) {
    members.push_back({s.key + ".json", s.json});
    members.push_back({s.key + ".wav", wav_bytes(s.wave, tmp)});
  }
  fs::create_directories(fs::path(path).parent_path());
  data::write_tar(path, members);
}

const char* kWords[] = {"silence", "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"};

// The suite's data root: esc50 (5 folds), fsd50k (multi-label), desed (frame), clotho
// (retrieval), librispeech (ASR).
struct SuiteData {
  test::TempDir tmp;
  std::string root;
  SuiteData() : root(tmp.path("xares")) {
    // ESC-50: folds 1..5, two clips of each of 3 classes per fold (1 s, levels 1..3).
    for (int fold = 1; fold <= 5; ++fold) {
      std::vector<Sample> s;
      for (int c = 0; c < 3; ++c)
        for (int k = 0; k < 2; ++k)
          s.push_back({"f" + std::to_string(fold) + "c" + std::to_string(c) + "k" + std::to_string(k),
                       "{\"label\": " + std::to_string(c) + "}", signal(c + 1, 1.0)});
      write_shard(root + "/esc50/wds-audio-fold-" + std::to_string(fold) + "-000000.tar", s, tmp);
    }
    const auto& fsd = eval::xares_task("fsd50k");
    const auto& desed = eval::xares_task("desed");
    for (const auto& split : {fsd.train_split, fsd.valid_split, fsd.test_split}) {
      // FSD50k: two of three classes per clip, half of the clip each (2 s, crops of 10 s pad it).
      std::vector<Sample> s;
      const std::vector<std::pair<int, int>> pairs = {{0, 1}, {1, 2}, {0, 2}};
      for (int rep = 0; rep < 2; ++rep)
        for (const auto& [a, b] : pairs)
          s.push_back({"m" + std::to_string(rep) + std::to_string(a) + std::to_string(b),
                       "{\"soundevent\": \"" + fsd.class_names[a] + ";" + fsd.class_names[b] + "\"}",
                       signal(a + 1, 2.0, b + 1, 1.0, 2.0)});
      write_shard(root + "/fsd50k/" + split_file(fsd, split), s, tmp);
    }
    for (const auto& split : {desed.train_split, desed.test_split}) {
      // DESED: 10 s clips, one event of class c (levels 1..3) over whole seconds.
      std::vector<Sample> s;
      for (int c = 0; c < 3; ++c)
        for (int k = 0; k < 3; ++k) {
          const double on = 1 + k, off = 4 + 2 * k;
          s.push_back({"d" + std::to_string(c) + std::to_string(k),
                       "[{\"onset\": " + std::to_string(on) + ", \"offset\": " + std::to_string(off) +
                           ", \"label\": \"" + desed.class_names[c] + "\"}]",
                       signal(0, 10.0, c + 1, on, off)});
        }
      write_shard(root + "/desed/" + split_file(desed, split), s, tmp);
    }
    const auto& clotho = eval::xares_task("clotho");
    for (const auto& split : {clotho.train_split, clotho.valid_split, clotho.test_split}) {
      // Clotho: one clip per level 1..6, two captions naming it.
      std::vector<Sample> s;
      for (int l = 1; l <= 6; ++l)
        s.push_back({"a" + std::to_string(l),
                     std::string("{\"caption_1\": \"the ") + kWords[l] + " sound\", \"caption_2\": \"a " +
                         kWords[l] + " noise\"}",
                     signal(l, 1.0)});
      write_shard(root + "/clotho/" + split_file(clotho, split), s, tmp);
    }
    const auto& ls = eval::xares_task("librispeech");
    for (const auto& split : {ls.train_split, ls.valid_split, ls.test_split}) {
      std::vector<Sample> s;
      for (int l = 1; l <= 4; ++l)
        s.push_back(
            {"u" + std::to_string(l), std::string("{\"trans\": \"") + kWords[l] + "\"}", signal(l, 0.8)});
      write_shard(root + "/librispeech/" + split_file(ls, split), s, tmp);
    }
  }
  // The shard name X-ARES' pattern for `split` matches.
  static std::string split_file(const eval::XaresTask& t, const std::string& split) {
    std::string p = t.shard_pattern(split);
    const auto star = p.find('*');
    if (star != std::string::npos) p.replace(star, 1, "000000");
    return p;
  }
};

eval::XaresEncoder level_encoder(int* calls) {
  eval::XaresEncoder e;
  e.sample_rate = kRate;
  e.hop_ms = 40;
  e.sources = {"mu"};
  e.producer = {"xares", "levels", "test"};
  e.encode = [calls](const std::vector<std::vector<float>>& w) { return encode_levels(w, calls); };
  return e;
}

std::vector<eval::XaresRepresentation> identity() {
  return {{"latent", "mu", [](const torch::Tensor& x) { return x; }}};
}

eval::XaresOptions options(const SuiteData& d, const std::vector<std::string>& tasks) {
  eval::XaresOptions o;
  o.data_root = d.root;
  o.cache_root = d.tmp.path("cache");
  o.tasks = tasks;
  o.epochs = 150;
  o.lr = 0.05;
  o.retrieval_hidden = 32;
  return o;
}

const eval::XaresTaskResult& task_of(const eval::XaresSuiteResult& r, const std::string& name) {
  for (const auto& t : r.tasks)
    if (t.task == name) return t;
  throw Error("no task " + name);
}

}  // namespace

TEST(XaresSuite, CropsAndFrameTargetsFollowXares) {
  const std::vector<float> w(25, 1.0f);
  EXPECT_EQ(eval::xares_crops(w, 10).size(), 2u);  // the 5-sample remainder is dropped
  const auto padded = eval::xares_crops(w, 40);    // shorter than one crop: zero-padded to it
  ASSERT_EQ(padded.size(), 1u);
  EXPECT_EQ(padded[0].size(), 40u);
  EXPECT_EQ(padded[0][24], 1.0f);
  EXPECT_EQ(padded[0][25], 0.0f);
  EXPECT_EQ(eval::xares_crops(w, 0).front().size(), 25u);
  // Events [ceil(on / hop), ceil(off / hop)): 0.1 s / 40 ms = 2.5 -> 3; 0.3 s -> 7.5 -> 8.
  const torch::Tensor y = eval::xares_frame_targets({0.1, 0.0}, {0.3, 0.04}, {1, 0}, 2, 0.04, 0.4);
  ASSERT_EQ(y.sizes(), (torch::IntArrayRef{10, 2}));
  EXPECT_TRUE(
      torch::equal(y.select(1, 1).nonzero().flatten(), torch::tensor({3, 4, 5, 6, 7}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(y.select(1, 0).nonzero().flatten(), torch::tensor({0}, torch::kInt64)));
  // Without a fixed span the targets end at the last offset (MAESTRO).
  EXPECT_EQ(eval::xares_frame_targets({0.0}, {0.2}, {0}, 1, 0.04, 0).size(0), 5);
}

TEST(XaresSuite, EveryTaskKindReachesItsHandValue) {
  SuiteData d;
  int calls = 0;
  const auto enc = level_encoder(&calls);
  const auto results =
      eval::run_xares_suite(options(d, {"esc50", "fsd50k", "desed", "clotho"}), enc, identity());
  ASSERT_EQ(results.size(), 1u);
  const auto& r = results[0];
  for (const auto& t : r.tasks) EXPECT_TRUE(t.skipped.empty()) << t.task << ": " << t.skipped;
  const auto& esc = task_of(r, "esc50");
  EXPECT_EQ(esc.fold_scores.size(), 5u);
  EXPECT_DOUBLE_EQ(esc.score, 1.0);
  EXPECT_DOUBLE_EQ(esc.knn, 1.0);
  EXPECT_EQ(esc.train, 24);  // four folds of six
  EXPECT_EQ(esc.test, 6);
  // FSD50k's mAP is the macro mean over its 200 classes; sklearn scores a class without positives
  // 0, so three perfectly ranked classes give 3 / 200.
  EXPECT_NEAR(task_of(r, "fsd50k").score, 3.0 / 200.0, 1e-12);
  // DESED scores macro F1 over its 10 classes: the 7 absent ones count 0 (sklearn's zero_division).
  EXPECT_NEAR(task_of(r, "desed").score, 0.3, 1e-12);
  const auto& clo = task_of(r, "clotho");
  EXPECT_EQ(clo.test, 12);  // one row per caption
  EXPECT_DOUBLE_EQ(clo.score, 1.0);
  EXPECT_TRUE(std::isnan(clo.knn));  // X-ARES runs no kNN for retrieval
  // The average is weighted by X-ARES' eval weights.
  double num = 0, den = 0;
  for (const auto& t : r.tasks) {
    num += t.score * static_cast<double>(t.eval_weight);
    den += static_cast<double>(t.eval_weight);
  }
  EXPECT_NEAR(r.average, num / den, 1e-12);
  EXPECT_EQ(r.weight, static_cast<int64_t>(den));
  EXPECT_NEAR(r.knn_average, 1.0, 1e-12);  // only ESC-50 has kNN here
  EXPECT_FALSE(r.complete);

  // The cache: a second run encodes nothing and scores the same.
  const int first = calls;
  EXPECT_GT(first, 0);
  const auto again = eval::run_xares_suite(options(d, {"esc50", "desed"}), enc, identity());
  EXPECT_EQ(calls, first);
  EXPECT_DOUBLE_EQ(task_of(again[0], "esc50").score, 1.0);
  EXPECT_NEAR(task_of(again[0], "desed").score, 0.3, 1e-12);
}

TEST(XaresSuite, AsrTaskTrainsAnAdapterIntoAFrozenQwen2) {
  SuiteData d;
  int calls = 0;
  auto llm = models::load_qwen2(test::fixture("qwen2_tiny"), torch::kCPU);
  const auto tok = data::HfTokenizer::load(test::fixture("qwen2_tiny"));
  auto o = options(d, {"LS100h"});
  o.llm = llm.get();
  o.llm_tokenizer = &tok;
  o.epochs = 8;
  o.lr = 1e-2;
  o.asr.max_new_tokens = 8;
  o.asr_adapter_dir = d.tmp.path("adapters");
  fs::create_directories(o.asr_adapter_dir);
  const auto before = llm->parameters().front().clone();
  const auto r = eval::run_xares_suite(o, level_encoder(&calls), identity());
  const auto& ls = task_of(r[0], "librispeech");
  ASSERT_TRUE(ls.skipped.empty()) << ls.skipped;
  EXPECT_EQ(ls.hypotheses.size(), 4u);
  EXPECT_EQ(ls.references.front(), "alpha");
  EXPECT_GE(ls.score, 0.0);
  EXPECT_LE(ls.score, 1.0);
  EXPECT_TRUE(torch::equal(before, llm->parameters().front()));  // the LLM stays frozen
  EXPECT_TRUE(fs::exists(fs::path(o.asr_adapter_dir) / "librispeech_latent_adapter.safetensors"));
  // Without an LLM the task is skipped with the reason, never scored as 0.
  const auto skipped = eval::run_xares_suite(options(d, {"librispeech"}), level_encoder(&calls), identity());
  EXPECT_NE(task_of(skipped[0], "librispeech").skipped.find("--qwen2"), std::string::npos);
  EXPECT_TRUE(std::isnan(skipped[0].average));
}

TEST(XaresSuite, AsrAdapterLossFalls) {
  auto llm = models::load_qwen2(test::fixture("qwen2_tiny"), torch::kCPU);
  const auto tok = data::HfTokenizer::load(test::fixture("qwen2_tiny"));
  eval::AsrSet train, valid;
  for (int l = 1; l <= 4; ++l) {
    torch::Tensor x = torch::zeros({20, kLevels});
    x.select(1, l).fill_(1.0f);
    train.x.push_back(x);
    train.text.push_back(kWords[l]);
  }
  valid = train;
  eval::AsrConfig c;
  c.probe.epochs = 30;
  c.probe.batch_size = 2;
  c.probe.lr = 1e-2;
  c.max_new_tokens = 6;
  const auto r = eval::run_asr_probe(train, valid, valid, *llm, tok, c);
  ASSERT_EQ(r.epoch_loss.size(), 30u);
  EXPECT_LT(r.epoch_loss.back(), 0.6 * r.epoch_loss.front());
  EXPECT_EQ(r.hypotheses.size(), 4u);
  EXPECT_GE(r.best_epoch, 1);
}

TEST(XaresSuite, BadDataGetsOneLineErrors) {
  test::TempDir tmp;
  int calls = 0;
  eval::XaresOptions o;
  o.data_root = tmp.path("missing");
  o.cache_root = tmp.path("cache");
  test::expect_error([&] { eval::run_xares_suite(o, level_encoder(&calls), identity()); },
                     {"missing", "not a folder"});
  o.data_root = tmp.path("root");
  fs::create_directories(o.data_root);
  test::expect_error([&] { eval::run_xares_suite(o, level_encoder(&calls), identity()); }, {"esc50"});
  o.tasks = {"no_such_task"};
  test::expect_error([&] { eval::run_xares_suite(o, level_encoder(&calls), identity()); }, {"no_such_task"});
  // A sample without its label member names the shard and the key.
  write_shard(o.data_root + "/esc50/wds-audio-fold-1-000000.tar", {{"k1", "{\"label\": 0}", signal(1, 1.0)}},
              tmp);
  data::write_tar(o.data_root + "/esc50/wds-audio-fold-2-000000.tar",
                  {{"lonely.wav", wav_bytes(signal(1, 1.0), tmp)}});
  o.tasks = {"esc50"};
  test::expect_error([&] { eval::run_xares_suite(o, level_encoder(&calls), identity()); },
                     {"wds-audio-fold-2-000000.tar", "lonely", "json"});
}

TEST(XaresCli, SuiteRunsFromTheCommandLine) {
  // `eval probe --suite xares` on a random tiny tokenizer: the JSON the tables read, the cache
  // per source tensor (a second call for one representation encodes nothing), one-line errors.
  test::TempDir tmp;
  const std::string bin = std::string(LOSATOK_BINARY) + " --log-level info ";
  const std::string tok = test::write_random_tokenizer(tmp.path("tok.safetensors"));
  for (int fold = 1; fold <= 5; ++fold) {
    std::vector<Sample> s;
    for (int c = 0; c < 2; ++c)
      s.push_back({"f" + std::to_string(fold) + "c" + std::to_string(c),
                   "{\"label\": " + std::to_string(c) + "}", signal(c + 1, 0.5)});
    write_shard(tmp.path("root/esc50/wds-audio-fold-" + std::to_string(fold) + "-000000.tar"), s, tmp);
  }
  const std::string common = "eval probe --suite xares --checkpoint " + tok + " --data " + tmp.path("root") +
                             " --cache " + tmp.path("cache") + " --xares-task ESC ";
  std::string out;
  ASSERT_EQ(
      test::run_command(bin + common + "--representation sembo,latent --out " + tmp.path("x.json"), &out), 0)
      << out;
  EXPECT_NE(out.find("10 samples encoded"), std::string::npos) << out;
  const nlohmann::json j = test::read_json(tmp.path("x.json"));
  EXPECT_EQ(j.at("suite"), "xares");
  for (const char* rep : {"sembo", "latent"}) {
    const auto& esc = j.at("representations").at(rep).at("tasks").at("esc50");
    EXPECT_EQ(esc.at("folds").size(), 5u) << rep;
    EXPECT_TRUE(esc.at("score").is_number()) << rep;
    EXPECT_TRUE(esc.at("knn").is_number()) << rep;
    EXPECT_EQ(esc.at("eval_weight"), 400);
    EXPECT_EQ(j.at("representations").at(rep).at("complete"), false);
  }
  EXPECT_TRUE(fs::exists(tmp.path("cache/esc50/semantic_emb_low/index.json")));
  EXPECT_TRUE(fs::exists(tmp.path("cache/esc50/mu/index.json")));
  ASSERT_EQ(test::run_command(bin + common + "--representation latent --out " + tmp.path("y.json"), &out), 0)
      << out;
  EXPECT_NE(out.find("0 samples encoded (0.0 s of audio), 10 from the cache"), std::string::npos) << out;
  EXPECT_EQ(test::read_json(tmp.path("y.json"))
                .at("representations")
                .at("latent")
                .at("tasks")
                .at("esc50")
                .at("score"),
            j.at("representations").at("latent").at("tasks").at("esc50").at("score"));
  // Bad input: no --data, a representation that needs fitting, a task the suite lacks.
  EXPECT_NE(test::run_command(bin + "eval probe --suite xares --checkpoint " + tok, &out), 0);
  EXPECT_NE(out.find("--data"), std::string::npos) << out;
  EXPECT_NE(test::run_command(bin + common + "--representation pca", &out), 0);
  EXPECT_NE(out.find("'pca'"), std::string::npos) << out;
  EXPECT_NE(test::run_command(bin + "eval probe --suite xares --checkpoint " + tok + " --data " +
                                  tmp.path("root") + " --xares-task nope --out " + tmp.path("z.json"),
                              &out),
            0);
  EXPECT_NE(out.find("nope"), std::string::npos) << out;
  // Without --suite the manifests stay required.
  EXPECT_NE(test::run_command(bin + "eval probe --checkpoint " + tok, &out), 0);
  EXPECT_NE(out.find("--train is required"), std::string::npos) << out;
}
