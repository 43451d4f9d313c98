// UniFlow-style TTS parts on hand values: the monotonic alignment search, length regulation,
// durations for generation, phoneme units, and the task-grouped batch sampler of the joint model.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "losatok/core/error.h"
#include "losatok/data/sampler.h"
#include "losatok/data/text.h"
#include "losatok/gen/dit_pipeline.h"
#include "losatok/models/tts.h"
#include "test_util.h"

using namespace losatok;

TEST(MonotonicAlignment, FindsTheBestPathOnHandValues) {
  using V = std::vector<int64_t>;
  EXPECT_EQ(
      models::monotonic_alignment(torch::tensor({0.0, 0.0, -5.0, -5.0, -5.0, -5.0, 0.0, 0.0}).view({2, 4})),
      (V{2, 2}));
  EXPECT_EQ(
      models::monotonic_alignment(torch::tensor({10.0, -1.0, -1.0, -1.0, -1.0, 0.0, 0.0, 0.0}).view({2, 4})),
      (V{1, 3}));
  // Greedy would leave phoneme 0 at frame 0; staying one more frame scores 6 > 5.
  EXPECT_EQ(models::monotonic_alignment(torch::tensor({0.0, 1.0, -10.0, 0.0, 0.0, 5.0}).view({2, 3})),
            (V{2, 1}));
  EXPECT_EQ(models::monotonic_alignment(torch::zeros({3, 3})), (V{1, 1, 1}));
  EXPECT_EQ(models::monotonic_alignment(torch::zeros({1, 5})), (V{5}));
  // Three phonemes, the middle one best on frames 2..4.
  torch::Tensor ll = torch::full({3, 7}, -1.0);
  ll[0].narrow(0, 0, 2).fill_(1.0);
  ll[1].narrow(0, 2, 3).fill_(1.0);
  ll[2].narrow(0, 5, 2).fill_(1.0);
  EXPECT_EQ(models::monotonic_alignment(ll), (V{2, 3, 2}));
  test::expect_error([] { models::monotonic_alignment(torch::zeros({4, 3})); }, {"4 phonemes", "3 frames"});
}

TEST(LengthRegulate, RepeatsEachPhonemeByItsDuration) {
  const torch::Tensor x = torch::tensor({1.0f, 2.0f, 3.0f, 10.0f, 20.0f, 30.0f}).view({2, 3, 1});
  const torch::Tensor d = torch::tensor({2, 0, 1, 1, 1, 3}, torch::kLong).view({2, 3});
  const torch::Tensor y = models::length_regulate(x, d, 5).squeeze(-1);
  EXPECT_TRUE(torch::equal(
      y, torch::tensor({1.0f, 1.0f, 3.0f, 0.0f, 0.0f, 10.0f, 20.0f, 30.0f, 30.0f, 30.0f}).view({2, 5})));
  // A total beyond the frames is cut.
  EXPECT_TRUE(torch::equal(models::length_regulate(x, d, 2)[1].squeeze(-1), torch::tensor({10.0f, 20.0f})));
}

TEST(DurationsFromLog, RoundsOrSharesATotal) {
  using V = std::vector<int64_t>;
  const torch::Tensor log_d = torch::log1p(torch::tensor({1.0, 3.0, 0.2}));
  EXPECT_EQ(models::durations_from_log(log_d, 0), (V{1, 3, 1}));  // at least one frame each
  // 10 frames: one each, the 7 left shared 1 : 3 : 0.2 (largest remainders).
  const V d = models::durations_from_log(log_d, 10);
  EXPECT_EQ(d, (V{3, 6, 1}));
  EXPECT_EQ(models::durations_from_log(torch::log1p(torch::tensor({1.0, 3.0})), 9), (V{3, 6}));
  test::expect_error([&] { models::durations_from_log(log_d, 2); }, {"2 frames", "3 phonemes"});
}

TEST(PhonemeUnits, OnePhonemeIsItsSymbolsWithWordStarts) {
  const auto u = data::phoneme_units("h_ə_l_ˈoʊ w_ˈɜː_l_d");
  ASSERT_EQ(u.size(), 8u);
  const auto id = [](char32_t c) { return static_cast<int64_t>(data::phoneme_symbol_id(c)); };
  EXPECT_EQ(u[0], (data::PhonemeUnit{data::kPhonemeWordStart, id(U'h')}));
  EXPECT_EQ(u[1], (data::PhonemeUnit{id(U'ə')}));
  EXPECT_EQ(u[3], (data::PhonemeUnit{id(U'ˈ'), id(U'o'), id(U'ʊ')}));
  EXPECT_EQ(u[4], (data::PhonemeUnit{data::kPhonemeWordStart, id(U'w')}));
  EXPECT_EQ(u[5], (data::PhonemeUnit{id(U'ˈ'), id(U'ɜ'), id(U'ː')}));
  EXPECT_TRUE(data::phoneme_units("  \n").empty());
  // Symbols beyond the direct range share ids inside the vocabulary.
  for (char32_t c : {U'θ', U'中', U'🎵'}) {
    EXPECT_GE(data::phoneme_symbol_id(c), 2);
    EXPECT_LT(data::phoneme_symbol_id(c), data::kPhonemeVocab);
  }
  EXPECT_NE(id(U'a'), id(U'b'));
}

TEST(SpeakerRow, IsStableAndInRange) {
  EXPECT_EQ(gen::speaker_row("allison", 4096), gen::speaker_row("allison", 4096));
  EXPECT_NE(gen::speaker_row("allison", 4096), gen::speaker_row("en-us", 4096));
  for (const char* n : {"", "a", "speaker 12"}) {
    EXPECT_GE(gen::speaker_row(n, 7), 0);
    EXPECT_LT(gen::speaker_row(n, 7), 7);
  }
}

TEST(BatchSampler, GroupedSourcesGiveOneTaskPerBatchAndTheSameTaskOnEveryRank) {
  // Sources of 6, 4 and 5 clips; sources 0 and 2 are one task.
  const std::vector<int64_t> sizes = {6, 4, 5};
  const auto group = [](int64_t id) { return id < 6 ? 0 : id < 10 ? 1 : 0; };
  data::SamplerOptions o;
  o.batch_size = 2;
  o.seed = 5;
  o.source_groups = {0, 1, 0};
  const data::BatchSampler one(sizes, {}, {}, o);
  EXPECT_EQ(one.batches_per_epoch(), 5 + 2);  // 11 clips of task 0 -> 5 batches, 4 of task 1 -> 2
  std::set<int64_t> seen;
  for (int64_t e = 0; e < 3; ++e) {
    const auto batches = one.epoch(e);
    ASSERT_EQ(static_cast<int64_t>(batches.size()), one.batches_per_epoch());
    for (const auto& b : batches) {
      ASSERT_EQ(b.size(), 2u);
      EXPECT_EQ(group(b[0]), group(b[1]));
      seen.insert(b.begin(), b.end());
    }
  }
  EXPECT_EQ(seen.size(), 15u);
  // Two ranks: the k-th batch has one task on both.
  std::vector<std::vector<std::vector<int64_t>>> ranks;
  for (int r = 0; r < 2; ++r) {
    data::SamplerOptions ro = o;
    ro.world_size = 2;
    ro.rank = r;
    const data::BatchSampler s(sizes, {}, {}, ro);
    EXPECT_EQ(s.batches_per_epoch(), 2 + 1);  // per rank: 5 clips of task 0 -> 2 batches; 2 of task 1 -> 1
    ranks.push_back(s.epoch(1));
  }
  for (std::size_t k = 0; k < ranks[0].size(); ++k)
    EXPECT_EQ(group(ranks[0][k][0]), group(ranks[1][k][0])) << k;
  // Mixture weights still share each epoch between the sources.
  const data::BatchSampler weighted(sizes, {1.0, 1.0, 2.0}, {}, o);
  int64_t task1 = 0;
  for (const auto& b : weighted.epoch(0)) task1 += group(b[0]) == 1;
  EXPECT_EQ(task1, 2);  // source 1: a quarter of 15 draws = 4 clips -> 2 batches
}
