// The X-ARES protocol: the metrics against tests/reference/make_xares_metric_fixtures.py and hand
// values, ignite's epoch schedule and best-epoch rule, every probe on small separable data, k-fold
// averaging and one-line errors on bad input.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fixture_data.h"
#include "losatok/eval/xares_protocol.h"
#include "losatok/io/safetensors.h"
#include "test_util.h"

namespace losatok {
namespace {

using namespace eval;

torch::Tensor fx(const std::string& name) {
  static const io::SafetensorsData data =
      io::load_safetensors(test::fixture("xares_metrics_expected.safetensors"));
  return data.tensors.at(name);
}
double fxd(const std::string& name) {
  return fx(name).item<double>();
}

// The first index of the maximum, as the best epoch must be (1-based).
int first_argmax(const std::vector<double>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin()) + 1;
}

void expect_learned(const TaskScore& s, int epochs) {
  ASSERT_EQ(static_cast<int>(s.epoch_valid.size()), epochs);
  ASSERT_EQ(static_cast<int>(s.epoch_loss.size()), epochs);
  EXPECT_LT(s.epoch_loss.back(), s.epoch_loss.front()) << "the training loss falls";
  EXPECT_EQ(s.best_epoch, first_argmax(s.epoch_valid));
  EXPECT_EQ(s.valid, s.epoch_valid[static_cast<std::size_t>(s.best_epoch - 1)]);
}

// ---------------------------------------------------------------------------------- schedule

TEST(XaresProtocol, EpochLrIsIgnitesCosine) {
  // ignite's CosineAnnealingScheduler(start = lr, end = 0.1 lr, cycle_size = epochs) at
  // EPOCH_STARTED: event_index = epoch - 1.
  const double expect10[] = {
      0.001,   0.0009779754323328191, 0.0009140576474687263, 0.000814503363531613,   0.0006890576474687264,
      0.00055, 0.0004109423525312737, 0.0002854966364683872, 0.00018594235253127373, 0.00012202456766718093};
  for (int e = 1; e <= 10; ++e) EXPECT_NEAR(xares_epoch_lr(1e-3, 0.1, e, 10), expect10[e - 1], 1e-18) << e;
  // By hand: the middle epoch sits halfway, the last one short of the floor.
  EXPECT_NEAR(xares_epoch_lr(1e-3, 0.1, 6, 10), 1e-3 - 4.5e-4, 1e-18);
  EXPECT_NEAR(xares_epoch_lr(1e-3, 0.1, 10, 10), 1e-3 - 4.5e-4 * (1 + std::cos(M_PI / 10)), 1e-18);
  EXPECT_NEAR(xares_epoch_lr(3e-3, 0.1, 2, 4), 3e-3 - 1.35e-3 * (1 - std::sqrt(0.5)), 1e-18);
  EXPECT_EQ(xares_epoch_lr(3e-3, 0.1, 1, 1), 3e-3) << "one epoch: no scheduler";
  test::expect_error([] { xares_epoch_lr(1e-3, 0.1, 11, 10); }, {"epoch 11 of 10"});
}

TEST(XaresProtocol, FitStepsTheScheduleAndKeepsTheFirstBestEpoch) {
  // One weight, one row, loss = w: every Adam step moves w by -lr (m_hat = v_hat = 1).
  torch::manual_seed(0);
  torch::nn::Linear m(torch::nn::LinearOptions(1, 1).bias(false));
  m->to(torch::kFloat64);
  ProbeConfig c;
  c.epochs = 6;
  c.batch_size = 4;
  c.lr = 1e-2;
  const std::vector<double> scripted = {0.5, 0.7, 0.7, 0.6, 0.9, 0.9};
  std::vector<double> w = {m->weight.item<double>()};
  int epoch = 0;
  const TaskScore s = fit_best_on_valid(
      *m, 1, c, [&](const torch::Tensor&) { return m->weight.sum(); },
      [&] {
        EXPECT_FALSE(m->is_training()) << "validation runs in eval mode";
        w.push_back(m->weight.item<double>());
        return scripted[static_cast<std::size_t>(epoch++)];
      });
  for (int e = 1; e <= 6; ++e)
    EXPECT_NEAR(w[e - 1] - w[e], xares_epoch_lr(1e-2, 0.1, e, 6), 1e-9) << "epoch " << e;
  EXPECT_EQ(s.best_epoch, 5) << "ties keep the earlier epoch, a strictly higher score replaces it";
  EXPECT_EQ(s.valid, 0.9);
  EXPECT_EQ(s.epoch_valid, scripted);
  EXPECT_EQ(m->weight.item<double>(), w[5]) << "the kept epoch's weights are restored";
}

// ----------------------------------------------------------------------------------- metrics

TEST(XaresProtocol, AveragePrecisionMatchesReference) {
  const torch::Tensor s = fx("ap_scores"), t = fx("ap_targets");
  EXPECT_NEAR(average_precision(s, t), fxd("ap_macro"), 1e-9);
  for (int64_t c = 0; c < s.size(1); ++c)
    EXPECT_NEAR(average_precision(s.select(1, c), t.select(1, c)), fx("ap_per_class")[c].item<double>(), 1e-9)
        << "class " << c;
  EXPECT_EQ(fx("ap_per_class")[3].item<double>(), 0.0) << "the fixture has a class without positives";
}

TEST(XaresProtocol, AveragePrecisionHandValues) {
  auto t = [](std::vector<double> v) { return torch::tensor(v, torch::kFloat64); };
  EXPECT_DOUBLE_EQ(average_precision(t({0.9, 0.8, 0.3, 0.1}), t({1, 1, 0, 0})), 1.0) << "a perfect ranking";
  // sklearn's docstring case: thresholds 0.8 (P 1, R .5), 0.4 (P .5), 0.35 (P 2/3, R 1), 0.1.
  EXPECT_NEAR(average_precision(t({0.1, 0.4, 0.35, 0.8}), t({0, 0, 1, 1})), 0.5 * 1 + 0.5 * 2.0 / 3, 1e-15);
  EXPECT_DOUBLE_EQ(average_precision(t({0.5, 0.5}), t({1, 0})), 0.5) << "a tie is one threshold";
  EXPECT_EQ(average_precision(t({0.5, 0.2}), t({0, 0})), 0.0) << "no positives: recall 1 everywhere";
  const torch::Tensor two = torch::stack({t({0.9, 0.1}), t({0.9, 0.1})}, 1);
  EXPECT_DOUBLE_EQ(average_precision(two, torch::stack({t({1, 0}), t({0, 0})}, 1)), 0.5)
      << "the class without positives counts in the mean";
  test::expect_error([&] { average_precision(t({0.1, 0.2}), t({1, 2})); }, {"0 or 1"});
  test::expect_error([&] { average_precision(t({0.1, 0.2}), t({1})); }, {"average precision"});
}

TEST(XaresProtocol, SegmentF1MatchesReference) {
  auto batches = [](const std::string& p, int n) {
    std::vector<torch::Tensor> l, y;
    for (int i = 0; i < n; ++i)
      l.push_back(fx(p + "_logits" + std::to_string(i))), y.push_back(fx(p + "_targets" + std::to_string(i)));
    return std::make_pair(l, y);
  };
  const auto [l, y] = batches("sf1", 3);
  EXPECT_NEAR(segment_f1(l, y, 4, true), fxd("sf1_micro"), 1e-9);
  EXPECT_NEAR(segment_f1(l, y, 4, false), fxd("sf1_macro"), 1e-9);
  EXPECT_LT(fxd("sf1_macro"), fxd("sf1_micro")) << "the empty class pulls macro down";
  const auto [lb, yb] = batches("sf1b", 2);
  EXPECT_NEAR(segment_f1(lb, yb, 3, true), fxd("sf1b_micro"), 1e-9);
  EXPECT_NEAR(segment_f1(lb, yb, 3, false), fxd("sf1b_macro"), 1e-9);
  const auto [ln, yn] = batches("sf1n", 1);
  EXPECT_NEAR(segment_f1(ln, yn, 2, true), fxd("sf1n_micro"), 1e-9);
  EXPECT_NEAR(segment_f1(ln, yn, 2, false), fxd("sf1n_macro"), 1e-9);
  EXPECT_EQ(fxd("sf1n_macro"), 1.0) << "one class, all negative: sklearn's binary label 0 is perfect";
}

TEST(XaresProtocol, SegmentF1HandCase) {
  // (T = 5, C = 3), pool 2: frames 0-1 and 2-3 pooled, frame 4 dropped.
  const torch::Tensor logits = torch::tensor({{1.0f, 0.0f, -1.0f},
                                              {-1.0f, 1e-9f, -1.0f},
                                              {-1.0f, -1.0f, -1.0f},
                                              {-1.0f, 2.0f, -1.0f},
                                              {-1.0f, -1.0f, 3.0f}});
  const torch::Tensor targets = torch::tensor(
      {{0.0f, 1.0f, 0.0f}, {1.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 1.0f}});
  // Class 0: pred [1, 0], true [1, 0] -> F1 1. Class 1: logit 0 and 1e-9 round to 0 (sigmoid
  // 0.5 -> 0), so pred [0, 1], true [1, 0] -> F1 0. Class 2: its frame 4 is dropped -> nothing.
  EXPECT_DOUBLE_EQ(segment_f1({logits}, {targets}, 2, false), 1.0 / 3);
  EXPECT_DOUBLE_EQ(segment_f1({logits}, {targets}, 2, true), 2.0 * 1 / (2 * 1 + 1 + 1));
  EXPECT_EQ(segment_pool_frames(1.0, 40), 25);
  EXPECT_EQ(segment_pool_frames(0.1, 10), 10);
  EXPECT_EQ(segment_pool_frames(0.5, 40), 13);
  test::expect_error([&] { segment_f1({logits}, {targets}, 6, true); }, {"5 frames", "pool_frames 6"});
  test::expect_error([&] { segment_f1({logits}, {targets.narrow(0, 0, 4)}, 2, true); }, {"one shape"});
}

TEST(XaresProtocol, RetrievalScoresMatchReference) {
  for (const auto& [name, caps] : {std::pair<std::string, int>{"ret5", 5}, {"ret1", 1}}) {
    const RetrievalScores r = retrieval_scores(fx(name + "_audio"), fx(name + "_text"), caps);
    for (const auto& [dir, got] :
         {std::pair<std::string, RetrievalDirection>{"a2t", r.a2t}, {"t2a", r.t2a}}) {
      const torch::Tensor e = fx(name + "_" + dir);
      const double values[] = {got.r1, got.r5, got.r10, got.mAP10, got.meanr, got.medr};
      for (int k = 0; k < 6; ++k)
        EXPECT_NEAR(values[k], e[k].item<double>(), 1e-9) << name << " " << dir << " " << k;
    }
    EXPECT_NEAR(r.recall_at_1, fxd(name + "_recall_at_1"), 1e-9) << name;
    EXPECT_GT(r.recall_at_1, 0.0) << name;
    EXPECT_LT(r.recall_at_1, 1.0) << name << ": the fixture is not trivially solved";
  }
}

TEST(XaresProtocol, RetrievalHandValues) {
  const torch::Tensor e = torch::eye(4, torch::kFloat64);
  const RetrievalScores r = retrieval_scores(e, e, 1);
  for (const auto& d : {r.a2t, r.t2a}) {
    EXPECT_EQ(d.r1, 100.0);
    EXPECT_EQ(d.mAP10, 100.0);
    EXPECT_EQ(d.meanr, 1.0);
    EXPECT_EQ(d.medr, 1.0);
  }
  EXPECT_EQ(r.recall_at_1, 1.0);
  // Reversed texts: caption i matches clip 3 - i, so each true pair ranks by its similarity.
  const RetrievalScores w = retrieval_scores(e, e.flip(0), 1);
  EXPECT_EQ(w.recall_at_1, 0.0);
  test::expect_error([&] { retrieval_scores(e, e, 3); }, {"num_caps 3"});
}

TEST(XaresProtocol, ContrastiveLossMatchesReference) {
  const torch::Tensor a = fx("cl_audio"), t = fx("cl_text"), s = fx("cl_log_scale");
  EXPECT_NEAR(audio_text_contrastive_loss(a, t, s).item<double>(), fxd("cl_loss"), 1e-9);
  EXPECT_NEAR(audio_text_contrastive_loss(a, t, s, false).item<double>(), fxd("cl_loss_noreg"), 1e-9);
}

TEST(XaresProtocol, WeightedAverageAndWerInv) {
  EXPECT_NEAR(weighted_average({{0.8, 100}, {0.9, 200}}), (0.8 * 100 + 0.9 * 200) / 300, 1e-15);
  EXPECT_EQ(weighted_average({}), 0.0);
  const nlohmann::json& cases = test::fixture_json("xares_wer_expected.json");
  ASSERT_GE(cases.size(), 5u);
  for (const auto& c : cases)
    EXPECT_NEAR(wer_inv(c["references"].get<std::vector<std::string>>(),
                        c["hypotheses"].get<std::vector<std::string>>()),
                c["wer_inv"].get<double>(), 1e-12)
        << c["references"];
  // By hand: one substitution and one insertion over 4 reference words.
  EXPECT_DOUBLE_EQ(wer_inv({"A B C D"}, {"a x c d e"}), 0.5);
  test::expect_error([] { wer_inv({"a", "b"}, {"a"}); }, {"2 references", "1 hypotheses"});
  test::expect_error([] { wer_inv({"  "}, {"a"}); }, {"reference 0 is empty"});
}

TEST(XaresProtocol, KnnSoftmaxVotesHaveTheSameArgmax) {
  torch::manual_seed(4);
  const int64_t classes = 5, k = 10;
  const double temperature = 0.07;
  const LabelledSet train{torch::randn({200, 16}), torch::randint(classes, {200}, torch::kInt64)};
  const LabelledSet query{torch::randn({100, 16}), torch::randint(classes, {100}, torch::kInt64)};
  // X-ARES' KNN: softmax over the k similarities / T, one-hot votes summed, argmax.
  auto unit = [](const torch::Tensor& t) { return t / t.norm(2, 1, true); };
  const auto [top, idx] = unit(query.x).mm(unit(train.x).t()).topk(k, 1);
  const torch::Tensor w = torch::softmax(top / temperature, 1);
  const torch::Tensor votes = torch::zeros({100, classes}).scatter_add_(1, train.y.index({idx}), w);
  const double xares = votes.argmax(1).eq(query.y).to(torch::kFloat64).mean().item<double>();
  EXPECT_DOUBLE_EQ(knn_accuracy(train, query, classes, static_cast<int>(k), temperature), xares);
}

// ------------------------------------------------------------------------------------ probes

TEST(XaresProtocol, MultiLabelProbeLearnsSeparableData) {
  torch::manual_seed(11);
  const int64_t classes = 5, dim = 16;
  const torch::Tensor w = 2.0 * torch::randn({classes, dim});
  auto make = [&](int64_t n) {
    const torch::Tensor y = (torch::rand({n, classes}) < 0.3).to(torch::kFloat32);
    return MultiLabelSet{y.mm(w) + 0.5 * torch::randn({n, dim}), y};
  };
  ProbeConfig c;  // X-ARES' lr 1e-3 is for datasets a hundred times this size
  c.lr = 1e-2;
  const TaskScore s = run_multilabel_probe(make(400), make(100), make(200), classes, c);
  expect_learned(s, c.epochs);
  EXPECT_GT(s.test, 0.9) << "chance mAP is about the prevalence, 0.3";
  const MultiLabelSet shuffled = make(400);
  const MultiLabelSet noise{shuffled.x, shuffled.y.index_select(0, torch::randperm(400, torch::kInt64))};
  EXPECT_LT(run_multilabel_probe(noise, make(100), make(200), classes, c).test, 0.5);
  test::expect_error([&] { run_multilabel_probe(make(50), make(10), make(10), classes + 1, c); },
                     {"train targets", "(N, 6)"});
  test::expect_error([&] { run_multilabel_probe(make(50), MultiLabelSet{}, make(10), classes, c); },
                     {"valid split has no embeddings"});
}

// Frames: a fixed background plus one direction per active class, and noise (without the
// background, LayerNorm would blow the noise of silent frames up to unit size).
FrameSet frame_data(const torch::Tensor& w, const torch::Tensor& background, int64_t clips, int64_t seed) {
  torch::manual_seed(seed);
  FrameSet s;
  const int64_t classes = w.size(0), dim = w.size(1);
  for (int64_t i = 0; i < clips; ++i) {
    const int64_t t = 24 + torch::randint(20, {1}).item<int64_t>();
    torch::Tensor y = torch::zeros({t, classes});
    for (int64_t k = 0; k < classes; ++k) {
      const int64_t on = torch::randint(t, {1}).item<int64_t>(),
                    len = 4 + torch::randint(12, {1}).item<int64_t>();
      y.narrow(0, on, std::min(len, t - on)).select(1, k).fill_(1);
    }
    s.x.push_back(y.mm(w) + background + 0.4 * torch::randn({t, dim}));
    // Targets a little longer or shorter than the features: padded or cut to them.
    const int64_t ty = t + (i % 3) - 1;
    s.y.push_back(ty > t ? torch::cat({y, torch::zeros({ty - t, classes})}) : y.narrow(0, 0, ty).clone());
  }
  return s;
}

TEST(XaresProtocol, FrameProbeLearnsSeparableFrames) {
  torch::manual_seed(12);
  const int64_t classes = 3, dim = 12;
  const torch::Tensor w = 2.0 * torch::randn({classes, dim}), background = 2.0 * torch::randn({dim});
  const FrameSet train = frame_data(w, background, 80, 1), valid = frame_data(w, background, 20, 2),
                 test = frame_data(w, background, 30, 3);
  ProbeConfig c;
  c.batch_size = 8;
  c.lr = 1e-2;
  for (const bool micro : {true, false}) {
    const TaskScore s = run_frame_probe(train, valid, test, classes, 2.0, 4, micro, c);
    expect_learned(s, c.epochs);
    // A constant all-positive guess scores about 0.5 here.
    EXPECT_GT(s.test, 0.85) << (micro ? "micro" : "macro");
  }
  FrameSet bad = valid;
  bad.y.pop_back();
  test::expect_error([&] { run_frame_probe(train, bad, test, classes, 1.0, 4, true, c); },
                     {"valid split", "20 clips but 19"});
  test::expect_error([&] { run_frame_probe(train, valid, FrameSet{}, classes, 1.0, 4, true, c); },
                     {"test split has no clips"});
  test::expect_error([&] { run_frame_probe(train, valid, test, classes + 1, 1.0, 4, true, c); },
                     {"train split, clip 0", "targets must be (T, 4)"});
}

TEST(XaresProtocol, RetrievalProbeLearnsCaptionedClips) {
  // Clips are (colour, animal) pairs; captions name both among filler words.
  const std::vector<std::string> colours = {"red", "green", "blue", "yellow", "black"},
                                 animals = {"dog", "cat", "bird", "cow", "frog"},
                                 fillers = {"a", "the", "sound", "of", "loud", "quiet"};
  torch::manual_seed(13);
  const torch::Tensor colour_dir = 2.0 * torch::randn({5, 24}), animal_dir = 2.0 * torch::randn({5, 24});
  auto make = [&](int64_t clips, int caps) {
    CaptionSet s;
    s.num_caps = caps;
    std::vector<torch::Tensor> x;
    for (int64_t i = 0; i < clips; ++i) {
      const int64_t a = torch::randint(5, {1}).item<int64_t>(), b = torch::randint(5, {1}).item<int64_t>();
      const torch::Tensor e = colour_dir[a] + animal_dir[b] + 0.3 * torch::randn({24});
      for (int k = 0; k < caps; ++k) {
        x.push_back(e);
        const std::string f = fillers[static_cast<std::size_t>(torch::randint(6, {1}).item<int64_t>())];
        s.captions.push_back(k % 2 ? "The " + animals[b] + " is " + colours[a] + ", " + f
                                   : f + " " + colours[a] + " " + animals[b] + "!");
      }
    }
    s.x = torch::stack(x);
    return s;
  };
  const CaptionSet train = make(300, 2), valid = make(25, 2), test = make(25, 2);
  const data::BertWordPiece words = data::BertWordPiece::from_captions(train.captions);
  ProbeConfig c;
  c.epochs = 12;
  c.lr = 3e-3;
  const TaskScore s = run_retrieval_probe(train, valid, test, words, 64, c);
  expect_learned(s, c.epochs);
  // Chance r1 is about 1/25 for a2t and t2a; duplicate (colour, animal) pairs cap it below 1.
  EXPECT_GT(s.test, 0.3) << s.test;
  CaptionSet odd = valid;
  odd.num_caps = 3;
  test::expect_error([&] { run_retrieval_probe(train, odd, test, words, 64, c); },
                     {"valid split", "not a multiple of num_caps 3"});
  CaptionSet short_captions = test;
  short_captions.captions.pop_back();
  test::expect_error([&] { run_retrieval_probe(train, valid, short_captions, words, 64, c); },
                     {"test split has 50 embeddings but 49 captions"});
}

TEST(XaresProtocol, KFoldTrainsOnTheOthersAndAverages) {
  torch::manual_seed(14);
  std::vector<LabelledSet> folds;
  for (int64_t k = 0; k < 4; ++k)
    folds.push_back({torch::full({10 + k, 3}, static_cast<float>(k)), torch::zeros({10 + k}, torch::kInt64)});
  std::vector<int64_t> train_sizes;
  const KFoldScore r = run_k_fold<LabelledSet>(
      folds, [&](const LabelledSet& tr, const LabelledSet& va, const LabelledSet& te) {
        EXPECT_TRUE(va.x.equal(te.x)) << "the held-out fold is both validation and test";
        EXPECT_FALSE(tr.x.eq(va.x[0][0]).any().item<bool>()) << "the held-out fold is not trained on";
        train_sizes.push_back(tr.size());
        return va.x[0][0].item<double>();
      });
  EXPECT_EQ(train_sizes, (std::vector<int64_t>{36, 35, 34, 33}));
  EXPECT_EQ(r.folds, (std::vector<double>{0, 1, 2, 3}));
  EXPECT_DOUBLE_EQ(r.mean, 1.5);
  test::expect_error([&] { run_k_fold<LabelledSet>({folds[0]}, nullptr); }, {"at least 2 folds"});
  CaptionSet a, b;
  a.num_caps = 5;
  b.num_caps = 1;
  a.x = torch::zeros({5, 2});
  b.x = torch::zeros({1, 2});
  test::expect_error([&] { concat_sets(std::vector<CaptionSet>{a, b}); }, {"5 and 1 captions"});
}

}  // namespace
}  // namespace losatok
