// The X-ARES task table against what X-ARES' own code builds (tests/fixtures/xares_tasks.json,
// from tests/reference/make_xares_task_fixtures.py): configs, shard names, label maps, and the
// targets of sample label JSON; then hand values, lookups and one shard read end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "losatok/audio/audio_io.h"
#include "losatok/core/error.h"
#include "losatok/data/webdataset.h"
#include "losatok/eval/xares_tasks.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::eval;

namespace {

const nlohmann::ordered_json& fixture() {
  static const nlohmann::ordered_json j = [] {
    std::ifstream in(test::fixture("xares_tasks.json"));
    return nlohmann::ordered_json::parse(in);
  }();
  return j;
}

std::string str_or_empty(const nlohmann::ordered_json& v) {
  return v.is_null() ? "" : v.get<std::string>();
}

// X-ARES' frame target at the fixture's hop: class rows, ones on [ceil(onset / hop), ceil(offset /
// hop)) (its sec_to_frames), as [class, first, end) runs.
std::vector<std::array<int64_t, 3>> frame_runs(const XaresTask& task, const XaresTarget& target, double hop,
                                               int64_t& frames) {
  const auto to_frames = [&](double s) { return static_cast<int64_t>(std::ceil(s / hop)); };
  double length = task.frame_label_seconds;
  if (length == 0)
    for (const auto& e : target.events) length = std::max(length, e.offset);
  frames = to_frames(length);
  std::vector<std::vector<bool>> on(static_cast<std::size_t>(task.output_dim),
                                    std::vector<bool>(static_cast<std::size_t>(frames)));
  for (const auto& e : target.events)
    for (int64_t t = to_frames(e.onset); t < std::min(frames, to_frames(e.offset)); ++t)
      on[static_cast<std::size_t>(e.label)][static_cast<std::size_t>(t)] = true;
  std::vector<std::array<int64_t, 3>> runs;
  for (int64_t c = 0; c < task.output_dim; ++c)
    for (int64_t t = 0; t < frames;) {
      if (!on[c][t]) {
        ++t;
        continue;
      }
      const int64_t first = t;
      while (t < frames && on[c][t]) ++t;
      runs.push_back({c, first, t});
    }
  return runs;
}

}  // namespace

TEST(XaresTasks, ConfigsMatchXaresOwn) {
  const auto& tasks = fixture()["tasks"];
  ASSERT_EQ(xares_tasks().size(), tasks.size());
  ASSERT_EQ(tasks.size(), 22u);
  for (const auto& x : tasks) {
    const std::string name = x["name"];
    SCOPED_TRACE(name);
    const XaresTask& t = xares_task(name);
    EXPECT_EQ(t.name, name);
    EXPECT_EQ(t.formal_name, x["formal_name"].get<std::string>());
    EXPECT_EQ(t.metric, x["metric"].get<std::string>());
    EXPECT_EQ(t.eval_weight, x["eval_weight"].get<int64_t>());
    EXPECT_EQ(t.zenodo_id, x["zenodo_id"].get<std::string>());
    const std::string type = x["task_type"], criterion = x["criterion"];
    const bool multilabel = type == "clip" && criterion == "BCEWithLogitsLoss";
    EXPECT_EQ(xares_kind_name(t.kind), multilabel ? std::string("multilabel") : type);
    EXPECT_EQ(t.pos_weight, x["pos_weight"].get<double>());
    EXPECT_EQ(t.crop_seconds, x["crop_length"].is_null() ? 0.0 : x["crop_length"].get<double>());
    EXPECT_EQ(t.epochs, x["epochs"].get<int>());
    EXPECT_EQ(t.batch_size, x["batch_size_train"].get<int>());
    EXPECT_EQ(t.lr, x["learning_rate"].get<double>());
    EXPECT_EQ(t.knn, x["do_knn"].get<bool>());
    EXPECT_EQ(t.output_dim, x["output_dim"].is_null() ? 0 : x["output_dim"].get<int64_t>());
    EXPECT_EQ(t.segment_seconds,
              x["segment_length_in_s"].is_null() ? 0.0 : x["segment_length_in_s"].get<double>());
    EXPECT_EQ(t.train_split, str_or_empty(x["train_split"]));
    EXPECT_EQ(t.valid_split, str_or_empty(x["valid_split"]));
    EXPECT_EQ(t.test_split, str_or_empty(x["test_split"]));
    EXPECT_EQ(t.folds, x["k_fold_splits"].is_null() ? std::vector<std::string>{}
                                                    : x["k_fold_splits"].get<std::vector<std::string>>());
    std::vector<std::string> splits;
    for (const auto& [split, pattern] : x["audio_tar_name_of_split"].items()) {
      splits.push_back(split);
      EXPECT_EQ(t.shard_pattern(split), pattern.get<std::string>()) << split;
    }
    EXPECT_EQ(t.splits(), splits);
    if (!x["class_names"].is_null()) {
      EXPECT_EQ(t.class_names, x["class_names"].get<std::vector<std::string>>());
      EXPECT_EQ(t.output_dim, static_cast<int64_t>(t.class_names.size()));
    }
  }
  EXPECT_EQ(xares_task("voxceleb1").class_names.size(), 1251u);
  EXPECT_EQ(xares_task("voxceleb1").class_names[1020], "id10946");
  EXPECT_EQ(xares_task("vocalimitations").class_names[29],
            "029Animal_Wild animals_Rodents_ rats_ mice_Mouse___3Samples_reference");
  EXPECT_EQ(xares_task("fluentspeechcommands").class_names[74], "That\xe2\x80\x99s too loud");
}

TEST(XaresTasks, TargetsMatchXaresOwnLabelProcessors) {
  const double hop = fixture()["hop_ms"].get<double>() / 1000;
  int checked = 0, errors = 0;
  for (const auto& x : fixture()["tasks"]) {
    const XaresTask& t = xares_task(x["name"].get<std::string>());
    for (const auto& sample : x["samples"]) {
      const std::string json = sample["json"], where = t.name + "/shard.tar: key" + std::to_string(checked++);
      SCOPED_TRACE(t.name + " " + json);
      const auto& want = sample["expect"];
      if (want.contains("error")) {
        test::expect_error([&] { t.target(json, where); }, {where, "'" + t.name + "'"});
        ++errors;
        continue;
      }
      const XaresTarget got = t.target(json, where);
      if (want.contains("label")) {
        EXPECT_EQ(got.label, want["label"].get<int64_t>());
      }
      if (want.contains("labels")) {
        EXPECT_EQ(got.labels, want["labels"].get<std::vector<int64_t>>());
      }
      if (want.contains("captions")) {
        EXPECT_EQ(got.captions, want["captions"].get<std::vector<std::string>>());
      }
      if (want.contains("transcript")) {
        EXPECT_EQ(got.transcript, want["transcript"].get<std::string>());
      }
      if (want.contains("runs")) {
        int64_t frames = 0;
        const auto runs = frame_runs(t, got, hop, frames);
        EXPECT_EQ(frames, want["frames"].get<int64_t>());
        std::vector<std::array<int64_t, 3>> want_runs;
        for (const auto& r : want["runs"]) want_runs.push_back({r[0], r[1], r[2]});
        EXPECT_EQ(runs, want_runs);
      }
    }
  }
  EXPECT_EQ(checked, 80);
  EXPECT_EQ(errors, 20);
}

TEST(XaresTasks, EveryClassNameReadsBackAsItsId) {
  for (const XaresTask& t : xares_tasks()) {
    if (t.label_rule != XaresLabelRule::class_name && t.label_rule != XaresLabelRule::class_name_or_unknown &&
        t.label_rule != XaresLabelRule::class_name_list)
      continue;
    for (std::size_t id = 0; id < t.class_names.size(); ++id) {
      nlohmann::json j;
      if (t.numeric_labels)
        j[t.label_field] = std::stoi(t.class_names[id]);
      else
        j[t.label_field] = t.class_names[id];
      const XaresTarget got = t.target(j.dump(), t.name);
      if (t.label_rule == XaresLabelRule::class_name_list)
        EXPECT_EQ(got.labels, std::vector<int64_t>{static_cast<int64_t>(id)}) << t.name;
      else
        EXPECT_EQ(got.label, static_cast<int64_t>(id)) << t.name << " " << t.class_names[id];
    }
  }
}

TEST(XaresTasks, Table2IsFifteenColumnsAndTheirWeights) {
  const std::vector<std::string> names = {"librispeech",
                                          "cremad",
                                          "fluentspeechcommands",
                                          "libricount",
                                          "librispeechmalefemale",
                                          "ravdess",
                                          "vocalsound",
                                          "freemusicarchive",
                                          "gtzan_genre",
                                          "maestro",
                                          "nsynthinstument",
                                          "clotho",
                                          "desed",
                                          "esc50",
                                          "urbansound8k"};
  const std::vector<std::string> columns = {"LS100h", "CD", "FSC",    "LibCnt", "LSMF", "RAV", "VocS", "FMA",
                                            "GTZAN",  "MT", "NSynth", "Clo",    "DES",  "ESC", "Urb"};
  EXPECT_EQ(xares_table2_tasks(), names);
  int64_t ours = 0, theirs = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(xares_tasks()[i].name, names[i]);  // Table 2 first, in column order
    EXPECT_EQ(xares_task(columns[i]).name, names[i]);
    EXPECT_EQ(xares_task(names[i]).column, columns[i]);
    ours += xares_task(names[i]).eval_weight;
    for (const auto& x : fixture()["tasks"])
      if (x["name"] == names[i]) theirs += x["eval_weight"].get<int64_t>();
  }
  EXPECT_EQ(ours, theirs);
  EXPECT_EQ(ours,
            25676);  // 10000 + 1116 + 2000 + 1144 + 2620 + 360 + 2000 + 800 + 100 + 65 + 2000 + 1045 + ...
  for (std::size_t i = names.size(); i < xares_tasks().size(); ++i) EXPECT_EQ(xares_tasks()[i].column, "");
}

TEST(XaresTasks, TargetsByHand) {
  const std::string where = "desed/wds-audio-eval-000000.tar: Y-BJNMHMZDcU_50.000_60.000";
  const XaresTarget d = xares_task("DES").target(
      R"([{"onset": 0.5, "offset": 2.25, "label": "Speech,Dog"}, {"onset": 3.1, "offset": 9.99, "label": "Frying"}])",
      where);
  ASSERT_EQ(d.events.size(), 3u);
  EXPECT_EQ(d.events[0].onset, 0.5);
  EXPECT_EQ(d.events[0].offset, 2.25);
  EXPECT_EQ(d.events[0].label, 1);  // Speech
  EXPECT_EQ(d.events[1].label, 8);  // Dog, same times
  EXPECT_EQ(d.events[1].onset, 0.5);
  EXPECT_EQ(d.events[2].label, 9);  // Frying
  EXPECT_EQ(d.events[2].offset, 9.99);
  EXPECT_TRUE(xares_task("desed").target("[]", where).events.empty());
  EXPECT_EQ(xares_task("desed").frame_label_seconds, 10);

  const XaresTarget m = xares_task("MT").target(
      R"([{"start": 0.1, "end": 0.63, "note": 60, "velocity": 80}, {"start": 1, "end": 1.5, "note": 21.0}])",
      "m");
  ASSERT_EQ(m.events.size(), 2u);
  EXPECT_EQ(m.events[0].label, 39);  // middle C: 60 - 21
  EXPECT_EQ(m.events[0].offset, 0.63);
  EXPECT_EQ(m.events[1].label, 0);
  test::expect_error([&] { xares_task("maestro").target("[]", "piece-7"); }, {"piece-7", "no notes"});
  test::expect_error(
      [&] { xares_task("maestro").target(R"([{"start": 0, "end": 1, "note": 108}])", "piece-8"); },
      {"piece-8", "108", "note", "87 classes"});

  const XaresTarget c = xares_task("Clo").target(
      R"({"caption_5": "E", "caption_1": "A dog barks.", "caption_2": "B", "caption_3": "C", "caption_4": "D"})",
      "c");
  EXPECT_EQ(c.captions, (std::vector<std::string>{"E", "A dog barks.", "B", "C", "D"}));  // as listed

  EXPECT_EQ(
      xares_task("FSC").target(R"({"transcription": "Turn the lights on", "action": "activate"})", "f").label,
      2);
  EXPECT_EQ(xares_task("LibCnt").target(R"({"num_speakers": 3})", "l").label, 3);
  test::expect_error([&] { xares_task("LibCnt").target(R"({"num_speakers": "3"})", "count-3"); },
                     {"count-3", "\"3\"", "num_speakers"});
  EXPECT_EQ(xares_task("GTZAN").target(R"({"genre": "jazz"})", "g").label, 5);
  EXPECT_EQ(xares_task("LS100h")
                .target(R"({"speaker": 19, "gender": "F", "trans": "HELLO WORLD"})", "s")
                .transcript,
            "HELLO WORLD");
  EXPECT_EQ(xares_task("CD").target(R"({"label": "A"})", "x").label, 2);
  EXPECT_EQ(xares_task("CD").target(R"({"label": "X"})", "x").label, -1);  // unknown: -1, not an error
  EXPECT_EQ(xares_task("VocS").target(R"({"label": "yawn"})", "x").label, -1);
  EXPECT_EQ(xares_task("LSMF").target(R"({"gender": "M"})", "x").label, 0);
  EXPECT_EQ(xares_task("LSMF").target(R"({"gender": "F"})", "x").label, 1);
  EXPECT_EQ(xares_task("ESC").target(R"({"label": 49})", "x").label, 49);
  test::expect_error([&] { xares_task("ESC").target(R"({"label": 50})", "clip-50"); },
                     {"clip-50", "[0, 50)"});
  EXPECT_EQ(xares_task("fsd50k").target(R"({"soundevent": "Bark;Animal;Bark"})", "x").labels,
            (std::vector<int64_t>{5, 7}));

  // An unknown label, a missing field, bad JSON: one line naming the sample.
  const std::string sample = "gtzan_genre/gtzan_fold_3_0000000.tar: jazz.00042";
  test::expect_error([&] { xares_task("GTZAN").target(R"({"genre": "Jazz"})", sample); },
                     {sample, "gtzan_genre", "\"Jazz\"", "'genre'", "10 classes"});
  test::expect_error([&] { xares_task("GTZAN").target(R"({"label": "jazz"})", sample); },
                     {sample, "no field 'genre'"});
  test::expect_error([&] { xares_task("GTZAN").target(R"({"genre": )", sample); },
                     {sample, "does not parse"});
  test::expect_error([&] { xares_task("fsd50k").target(R"({"soundevent": "Bark;;Dog"})", sample); },
                     {sample, "\"\"", "200 classes"});
  test::expect_error(
      [&] { xares_task("desed").target(R"([{"onset": null, "offset": 1, "label": "Dog"}])", sample); },
      {sample, "item 0", "'onset'"});
}

TEST(XaresTasks, LookupSplitsAndShards) {
  EXPECT_EQ(xares_task("GTZAN").name, "gtzan_genre");
  EXPECT_EQ(xares_task("GTZAN Genre").name, "gtzan_genre");
  EXPECT_EQ(xares_task("esc").name, "esc50");  // ignoring case
  EXPECT_EQ(xares_task("nsynth").name, "nsynthinstument");
  test::expect_error([] { xares_task("audioset"); }, {"'audioset'", "esc50 (ESC)", "voxlingua33"});

  const XaresTask& esc = xares_task("esc50");
  EXPECT_EQ(esc.shard_pattern("1"), "wds-audio-fold-1-*.tar");
  EXPECT_EQ(xares_task("gtzan_genre").shard_pattern("3"), "gtzan_fold_3_0000000.tar");
  EXPECT_EQ(xares_task("libricount").shard_pattern("2"), "libricount_fold02.tar");
  EXPECT_EQ(xares_task("vocalimitations").shard_pattern("0"), "vocal_imitations_fold00_0000000.tar");
  EXPECT_EQ(xares_task("librispeech").shard_pattern("train-clean-100"), "train-clean-100*.tar");
  EXPECT_EQ(xares_task("clotho").test_split, "clotho_validation");
  EXPECT_EQ(xares_task("desed").splits(), (std::vector<std::string>{"wds-audio-train", "wds-audio-eval"}));
  test::expect_error([&] { esc.shard_pattern("6"); }, {"esc50", "fold '6'", "1, 2, 3, 4, 5"});
  test::expect_error([] { xares_task("clotho").shard_pattern("test"); },
                     {"split 'test'", "clotho_development, clotho_evaluation, clotho_validation"});

  test::TempDir root;
  for (const char* name : {"esc50/wds-audio-fold-1-000001.tar", "esc50/wds-audio-fold-1-000000.tar",
                           "esc50/wds-audio-fold-2-000000.tar"}) {
    std::filesystem::create_directories(std::filesystem::path(root.path(name)).parent_path());
    test::write_text(root.path(name), "");
  }
  EXPECT_EQ(esc.shards(root.dir().string(), "1"),
            (std::vector<std::string>{root.path("esc50/wds-audio-fold-1-000000.tar"),
                                      root.path("esc50/wds-audio-fold-1-000001.tar")}));
  test::expect_error([&] { esc.shards(root.dir().string(), "3"); }, {"wds-audio-fold-3-*.tar", "esc50"});
}

TEST(XaresTasks, ReadsAShardInXaresLayoutEndToEnd) {
  test::TempDir root;
  std::vector<float> x(8000);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.3f * static_cast<float>(std::sin(0.05 * i));
  audio::write_wav(root.path("clip.wav"), x, 16000);
  const std::string wav = test::read_bytes(root.path("clip.wav"));
  std::filesystem::create_directories(root.path("esc50"));
  data::write_tar(root.path("esc50/wds-audio-fold-1-000000.tar"),
                  {{"1-100032-A-0.wav", wav},
                   {"1-100032-A-0.json", R"({"label": 0})"},
                   {"1-115545-B-48.wav", wav},
                   {"1-115545-B-48.json", R"({"label": 48})"}});
  const XaresTask& esc = xares_task("ESC");
  std::vector<int64_t> labels;
  for (const std::string& shard : esc.shards(root.dir().string(), "1")) {
    data::WdsReader reader(shard);
    for (data::WdsSample s; reader.next(s);) {
      const std::string ext = data::wds_audio_extension(s);
      ASSERT_EQ(ext, "wav");
      const auto audio = audio::decode_audio(s.files.at(ext), s.shard + ": " + s.key + "." + ext);
      EXPECT_EQ(audio.frames(), 8000);
      labels.push_back(esc.target(s.files.at("json"), s.shard + ": " + s.key).label);
    }
  }
  EXPECT_EQ(labels, (std::vector<int64_t>{0, 48}));
}
