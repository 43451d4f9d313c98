// The sampler and audio loader: shapes, crops, determinism, resume, bad files, distribution.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>

#include "losatok/audio/audio_io.h"
#include "losatok/data/loader.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::data;

namespace {

// Writes `seconds` of a distinct tone per clip (so crops can be told apart) at `rate`.
std::string write_clip(const test::TempDir& dir, const std::string& name, double seconds, int rate = 16000,
                       float value_for_nan = 0.0f) {
  const int64_t n = static_cast<int64_t>(seconds * rate);
  std::vector<float> w(n);
  for (int64_t i = 0; i < n; ++i)
    w[i] = 0.3f * std::sin(0.01f * i * (1 + name.size() % 5)) + 1e-4f * (i % 97);
  if (value_for_nan != 0.0f && n > 10) w[n / 2] = std::nanf("");
  const std::string path = dir.path(name + ".wav");
  audio::write_audio(path, w.data(), n, 1, rate, value_for_nan != 0.0f ? "float" : "pcm16");
  return path;
}

std::string manifest(const test::TempDir& dir, const std::string& name,
                     const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  test::write_text(dir.path(name), text);
  return dir.path(name);
}

DataConfig small_config() {
  DataConfig c;
  c.segment_seconds = 0.5;
  c.batch_size = 3;
  c.workers = 2;
  c.prefetch_batches = 2;
  return c;
}

std::vector<Batch> take(AudioLoader& loader, int n) {
  std::vector<Batch> out;
  for (int i = 0; i < n; ++i) out.push_back(loader.next());
  return out;
}

void expect_same(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].epoch, b[i].epoch);
    EXPECT_EQ(a[i].index, b[i].index);
    EXPECT_TRUE(torch::equal(a[i].audio, b[i].audio)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].lengths, b[i].lengths));
  }
}

struct Corpus {
  test::TempDir dir;
  std::string m;
  Corpus() {
    std::vector<std::string> lines;
    for (int i = 0; i < 10; ++i) {
      const std::string name = "clip" + std::to_string(i);
      // 0.3 s .. 1.2 s at mixed rates; relative paths resolve against the manifest.
      write_clip(dir, name, 0.3 + 0.1 * i, i % 2 ? 16000 : 22050);
      lines.push_back("{\"audio\": \"" + name + ".wav\", \"text\": \"t" + std::to_string(i) + "\"}");
    }
    m = manifest(dir, "train.jsonl", lines);
  }
};

}  // namespace

TEST(Sampler, EpochsArePermutationsFixedBySeed) {
  SamplerOptions o;
  o.batch_size = 4;
  o.seed = 3;
  BatchSampler s({10, 6}, {}, {}, o);
  EXPECT_EQ(s.batches_per_epoch(), 4);  // 16 clips, drop_last
  const auto e0 = s.epoch(0), e1 = s.epoch(1);
  std::set<int64_t> seen;
  for (const auto& b : e0) {
    EXPECT_EQ(b.size(), 4u);
    seen.insert(b.begin(), b.end());
  }
  EXPECT_EQ(seen.size(), 16u);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(e0, BatchSampler({10, 6}, {}, {}, o).epoch(0));
}

TEST(Sampler, WeightsSetEachSourcesShare) {
  SamplerOptions o;
  o.batch_size = 10;
  BatchSampler s({10, 90}, {3.0, 1.0}, {}, o);  // source 0 gets 75 of 100 draws (cycling)
  int64_t from0 = 0;
  for (const auto& b : s.epoch(0))
    for (auto id : b) from0 += id < 10;
  EXPECT_EQ(from0, 75);
}

TEST(Sampler, RanksSplitTheSameOrder) {
  SamplerOptions o;
  o.batch_size = 2;
  o.world_size = 3;
  std::set<int64_t> all;
  for (int r = 0; r < 3; ++r) {
    o.rank = r;
    for (const auto& b : BatchSampler({12}, {}, {}, o).epoch(5))
      for (auto id : b) EXPECT_TRUE(all.insert(id).second) << "clip " << id << " on two ranks";
  }
  EXPECT_EQ(all.size(), 12u);
  o.rank = 3;
  test::expect_error([&] { BatchSampler({12}, {}, {}, o); }, {"rank 3"});
}

TEST(Sampler, BucketingGroupsSimilarDurations) {
  SamplerOptions o;
  o.batch_size = 4;
  o.bucket_batches = 4;
  std::vector<double> d;
  for (int i = 0; i < 16; ++i) d.push_back(i);
  for (const auto& b : BatchSampler({16}, {}, d, o).epoch(0)) {
    const auto [lo, hi] = std::minmax_element(b.begin(), b.end());
    EXPECT_EQ(*hi - *lo, 3) << "a window of 16 sorted into 4 batches of neighbours";
  }
}

TEST(Loader, CropsPadsAndMasks) {
  Corpus c;
  DataConfig cfg = small_config();
  LoaderOptions lo;
  lo.seed = 1;
  AudioLoader loader(cfg, {{c.m, 0.0}}, lo);
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  for (int i = 0; i < 6; ++i) {
    const Batch b = loader.next();
    ASSERT_EQ(b.size(), 3);
    EXPECT_EQ(b.audio.dim(), 2);
    // 0.5 s segments snapped to the 40 ms token grid; every training batch has that length
    // (shorter clips padded), whatever its longest clip.
    EXPECT_EQ(b.audio.size(1), 7680);
    EXPECT_LE(b.lengths.max().item<int64_t>(), b.audio.size(1));
    const auto mask = b.mask();
    EXPECT_EQ(mask.sum().item<int64_t>(), b.lengths.sum().item<int64_t>());
    EXPECT_EQ(b.audio.masked_select(mask.logical_not()).abs().sum().item<float>(), 0.0f);  // zero padding
    for (int64_t j = 0; j < b.size(); ++j) {
      EXPECT_EQ(b.items[j].offset % 640, 0);
      // The crop is what the file holds at that offset.
      const auto& e = b.items[j].clip->entry;
      const int64_t n = b.lengths[j].item<int64_t>();
      const auto ref = audio::load_audio(e.audio, 16000, b.items[j].offset / 16000.0, n / 16000.0);
      ASSERT_GE(static_cast<int64_t>(ref.size()), n);
      EXPECT_LE((b.audio[j].narrow(0, 0, n) - torch::from_blob(const_cast<float*>(ref.data()), {n}))
                    .abs()
                    .max()
                    .item<float>(),
                1e-6);
    }
  }
}

TEST(Loader, DeterministicAcrossRunsAndWorkerCounts) {
  Corpus c;
  DataConfig cfg = small_config();
  LoaderOptions lo;
  lo.seed = 9;
  AudioLoader a(cfg, {{c.m, 0.0}}, lo), b(cfg, {{c.m, 0.0}}, lo);
  cfg.workers = 0;
  AudioLoader serial(cfg, {{c.m, 0.0}}, lo);
  const auto x = take(a, 7);
  expect_same(x, take(b, 7));
  expect_same(x, take(serial, 7));
  lo.seed = 10;
  AudioLoader other(small_config(), {{c.m, 0.0}}, lo);
  EXPECT_FALSE(torch::equal(take(other, 1)[0].audio, x[0].audio));
}

TEST(Loader, ResumeMidEpochSeesTheSameBatches) {
  Corpus c;
  LoaderOptions lo;
  lo.seed = 4;
  AudioLoader a(small_config(), {{c.m, 0.0}}, lo);
  take(a, 4);  // into the second epoch
  const LoaderState state = LoaderState::from_json(a.state().to_json());
  EXPECT_EQ(state.epoch, 1);
  EXPECT_EQ(state.batch, 1);
  const auto rest = take(a, 5);
  AudioLoader b(small_config(), {{c.m, 0.0}}, lo);
  b.restore(state);
  expect_same(rest, take(b, 5));
  test::expect_error([] { LoaderState::from_json("{\"epoch\": 1}"); }, {"data loader state"});
}

TEST(Loader, BadFilesAreSkippedListedAndLimited) {
  Corpus c;
  write_clip(c.dir, "tiny", 0.05);
  write_clip(c.dir, "nan", 1.0, 16000, 1.0f);
  write_clip(c.dir, "empty", 0.0);
  test::write_text(c.dir.path("garbage.wav"), "not audio at all");
  std::vector<std::string> lines = {"{\"audio\": \"missing.wav\"}", "{\"audio\": \"tiny.wav\"}",
                                    "{\"audio\": \"nan.wav\"}", "{\"audio\": \"empty.wav\"}",
                                    "{\"audio\": \"garbage.wav\"}"};
  for (int i = 0; i < 10; ++i) lines.push_back("{\"audio\": \"clip" + std::to_string(i) + ".wav\"}");
  const auto m = manifest(c.dir, "bad.jsonl", lines);
  DataConfig cfg = small_config();
  LoaderOptions lo;
  AudioLoader loader(cfg, {{m, 0.0}}, lo);
  int64_t clips = 0;
  while (loader.state().epoch < 2) clips += loader.next().size();  // batches of only bad clips are skipped
  const auto bad = loader.state().bad_files;
  EXPECT_EQ(bad.size(), 5u);
  for (const char* name : {"missing.wav", "tiny.wav", "nan.wav", "empty.wav", "garbage.wav"})
    EXPECT_TRUE(std::any_of(bad.begin(), bad.end(), [&](const std::string& k) {
      return k.find(name) != std::string::npos;
    })) << name;
  EXPECT_EQ(clips, 2 * 5 * 3 - 10);  // two epochs of 5 batches of 3, minus the bad draws

  cfg.max_bad_files = 2;
  AudioLoader strict(cfg, {{m, 0.0}}, lo);
  test::expect_error(
      [&] {
        for (int i = 0; i < 10; ++i) strict.next();
      },
      {"3 bad clips", "data.max_bad_files (2)"});
}

TEST(Loader, ValidationModeKeepsWholeClipsInOrder) {
  Corpus c;
  DataConfig cfg = small_config();
  LoaderOptions lo;
  lo.train = false;
  AudioLoader loader(cfg, {{c.m, 0.0}}, lo);
  EXPECT_EQ(loader.batches_per_epoch(), 4);  // 10 clips, the last batch kept
  const Batch first = loader.next();
  EXPECT_EQ(first.items[0].clip->entry.text, "t0");
  EXPECT_EQ(first.items[2].clip->entry.text, "t2");
  EXPECT_EQ(first.lengths[2].item<int64_t>(), 8000);  // 0.5 s, whole
  for (const auto& item : first.items) EXPECT_EQ(item.offset, 0);
}

TEST(Loader, ManyEpochsInFlight) {
  // One batch per epoch and a deep prefetch: workers build several epochs at once.
  Corpus c;
  DataConfig cfg = small_config();
  cfg.batch_size = 10;
  cfg.prefetch_batches = 6;
  LoaderOptions lo;
  lo.seed = 2;
  AudioLoader threaded(cfg, {{c.m, 0.0}}, lo);
  cfg.workers = 0;
  AudioLoader serial(cfg, {{c.m, 0.0}}, lo);
  const auto a = take(threaded, 12);
  expect_same(a, take(serial, 12));
  EXPECT_EQ(a.back().epoch, 11);
  threaded.restore(LoaderState{3, 0, {}});  // back to an earlier epoch
  expect_same(take(threaded, 2), {a[3], a[4]});
}

TEST(Loader, CropDependentFailuresDoNotDependOnTiming) {
  // The manifest claims 5 s for a 1 s file: crops past its end fail, earlier ones succeed.
  // Which batches keep the clip must not depend on which worker read it first.
  Corpus c;
  std::vector<std::string> lines = {"{\"audio\": \"clip9.wav\", \"duration\": 5.0}"};
  for (int i = 0; i < 9; ++i) lines.push_back("{\"audio\": \"clip" + std::to_string(i) + ".wav\"}");
  const auto m = manifest(c.dir, "long_claim.jsonl", lines);
  DataConfig cfg = small_config();
  cfg.prefetch_batches = 8;
  LoaderOptions lo;
  lo.seed = 5;
  AudioLoader threaded(cfg, {{m, 0.0}}, lo);
  cfg.workers = 0;
  AudioLoader serial(cfg, {{m, 0.0}}, lo);
  expect_same(take(threaded, 24), take(serial, 24));
}

TEST(Sampler, RejectsEmptySourcesAndPartialWeights) {
  SamplerOptions o;
  test::expect_error([&] { BatchSampler({10, 0}, {}, {}, o); }, {"source 1 has no clips"});
  test::expect_error([&] { BatchSampler({10, 10}, {1.0, 0.0}, {}, o); }, {"source 1 has weight 0"});
}
