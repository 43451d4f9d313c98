// Faults injected into training runs: a damaged checkpoint, a run_dir held by another run, a
// disk that fills up, an interrupted prune, a resumed run's overrides.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "losatok/core/config.h"
#include "losatok/core/file_util.h"
#include "losatok/io/safetensors.h"
#include "losatok/train/checkpoint.h"
#include "losatok/train/metrics.h"
#include "losatok/train/sembo_stage.h"
#include "test_util.h"

namespace losatok::train {
namespace {

namespace fs = std::filesystem;

std::string bin() {
  return std::string(LOSATOK_BINARY) + " --threads 1 ";
}

// A small SemBo run: 4 steps, a checkpoint every 2.
RootConfig small_run(const test::TinyCorpus& corpus, const std::string& run_dir) {
  RootConfig c = test::model_config("tiny");
  c.stage = "sembo";
  c.run_dir = run_dir;
  c.seed = 3;
  c.data.sources = {{corpus.train, 0.0}};
  c.data.segment_seconds = 0.64;
  c.data.batch_size = 2;
  c.data.workers = 1;
  c.train.max_steps = 4;
  c.train.log_every = 1;
  c.train.val_every = 0;
  c.train.checkpoint.every = 2;
  c.train.checkpoint.keep_last = 3;
  c.section<SemBoStageConfig>().baseline_fit_steps = 0;
  return c;
}

std::string write_config(const RootConfig& cfg, const std::string& path) {
  test::write_text(path, config::dump(config::to_yaml(cfg)));
  return path;
}

// Flips 16 bytes near the end of a file (inside the last tensor's data), keeping its size.
void damage(const std::string& path) {
  std::string bytes = test::read_bytes(path);
  ASSERT_GT(bytes.size(), 64u);
  for (std::size_t i = bytes.size() - 48; i < bytes.size() - 32; ++i)
    bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
  const auto size = bytes.size();
  test::write_bytes(path, bytes);
  ASSERT_EQ(fs::file_size(path), size);
}

std::vector<FileWriter> text_files(const std::string& text) {
  return {{"a.txt", [text](const std::string& p) { test::write_text(p, text); }},
          {"b.txt", [](const std::string& p) { test::write_text(p, "b"); }}};
}

TEST(Checkpointer, ChecksumsCatchAChangedByteThatSizesMiss) {
  test::TempDir dir;
  CheckpointConfig c;
  c.keep_last = 0;
  Checkpointer ck(dir.path("run"), c);
  ck.save(10, text_files("step ten"), "{\"step\": 10}");
  ck.save(20, text_files("step twenty"), "{\"step\": 20}");
  const auto progress =
      nlohmann::json::parse(test::read_bytes(dir.path("run/checkpoints/step-20/progress.json")));
  EXPECT_EQ(progress["files"]["a.txt"]["bytes"], 11);
  EXPECT_EQ(progress["files"]["a.txt"]["xxh64"], file_xxh64(dir.path("run/checkpoints/step-20/a.txt")));
  EXPECT_EQ(Checkpointer::check(dir.path("run/checkpoints/step-20"), true), "");
  test::write_text(dir.path("run/checkpoints/step-20/a.txt"), "step twentY");  // same size
  EXPECT_EQ(Checkpointer::check(dir.path("run/checkpoints/step-20")), "");     // sizes agree
  EXPECT_NE(Checkpointer::check(dir.path("run/checkpoints/step-20"), true)
                .find("a.txt does not match its checksum"),
            std::string::npos);
  EXPECT_EQ(Checkpointer::latest(dir.path("run"))->step, 20);
  EXPECT_EQ(Checkpointer::latest(dir.path("run"), /*verify_content=*/true)->step, 10);
  // Checkpoints written before checksums (sizes only) stay valid.
  test::write_text(dir.path("run/checkpoints/step-10/progress.json"),
                   "{\"step\": 10, \"files\": {\"a.txt\": 8, \"b.txt\": 1}}");
  EXPECT_EQ(Checkpointer::check(dir.path("run/checkpoints/step-10"), true), "");
}

TEST(Checkpointer, AFullDiskRemovesWhatPruningWouldBeforeTheNewCheckpointNeverTheLastValidOne) {
  test::TempDir dir;
  CheckpointConfig c;
  c.keep_last = 2;
  c.keep_best = false;
  Checkpointer ck(dir.path("run"), c);
  for (int step : {10, 20}) ck.save(step, text_files("s"), "{\"step\": " + std::to_string(step) + "}");
  // The first attempt fails as a full disk would; the oldest checkpoint goes, the second succeeds.
  int failures = 1;
  std::vector<FileWriter> flaky = text_files("s");
  flaky.emplace_back("big.bin", [&](const std::string& p) {
    if (failures-- > 0) throw Error("writing '" + p + "' failed: No space left on device");
    test::write_text(p, "x");
  });
  ck.save(30, flaky, "{\"step\": 30}");
  auto all = Checkpointer::list(dir.path("run"));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].step, 20);
  EXPECT_EQ(all[1].step, 30);
  EXPECT_FALSE(fs::exists(dir.path("run/checkpoints/.step-30.partial")));
  // When nothing may go (keep_last 1: the newest valid one stays), the error comes through.
  CheckpointConfig one;
  one.keep_last = 1;
  Checkpointer single(dir.path("single"), one);
  single.save(1, text_files("s"), "{\"step\": 1}");
  std::vector<FileWriter> full = text_files("s");
  full.emplace_back("big.bin", [](const std::string& p) {
    throw Error("writing '" + p + "' failed: No space left on device");
  });
  test::expect_error([&] { single.save(2, full, "{\"step\": 2}"); }, {"No space left on device"});
  ASSERT_EQ(Checkpointer::list(dir.path("single")).size(), 1u);
  EXPECT_EQ(Checkpointer::check(dir.path("single/checkpoints/step-1"), true), "");
  // The best checkpoint is spared too.
  CheckpointConfig best;
  best.keep_last = 2;
  best.keep_best = true;
  Checkpointer kb(dir.path("best"), best);
  kb.save(1, text_files("s"), "{\"step\": 1}");
  kb.prune(1);
  kb.save(2, text_files("s"), "{\"step\": 2}");
  kb.prune(1);
  test::expect_error([&] { kb.save(3, full, "{\"step\": 3}"); }, {"No space left on device"});
  // Any other failure removes nothing.
  std::vector<FileWriter> broken = text_files("s");
  broken.emplace_back("big.bin", [](const std::string&) { throw Error("permission denied"); });
  test::expect_error([&] { ck.save(40, broken, "{\"step\": 40}"); }, {"permission denied"});
  EXPECT_EQ(Checkpointer::list(dir.path("run")).size(), 2u);
  EXPECT_EQ(Checkpointer::list(dir.path("best")).size(), 2u);
}

TEST(Checkpointer, PruningIsCrashSafeAndCleansUpAnInterruptedOne) {
  test::TempDir dir;
  CheckpointConfig c;
  c.keep_last = 1;
  Checkpointer ck(dir.path("run"), c);
  ck.save(10, text_files("s"), "{\"step\": 10}");
  // What a prune killed midway leaves: a hidden folder being removed, and (older versions
  // removed files in place) a step folder without progress.json.
  fs::create_directories(dir.path("run/checkpoints/.step-4.pruning"));
  fs::create_directories(dir.path("run/checkpoints/step-5"));
  test::write_text(dir.path("run/checkpoints/step-5/a.txt"), "half");
  ck.save(20, text_files("s"), "{\"step\": 20}");
  ck.prune(-1);
  EXPECT_FALSE(fs::exists(dir.path("run/checkpoints/.step-4.pruning")));
  EXPECT_FALSE(fs::exists(dir.path("run/checkpoints/step-5")));
  EXPECT_FALSE(fs::exists(dir.path("run/checkpoints/step-10")));
  EXPECT_TRUE(fs::exists(dir.path("run/checkpoints/step-20")));
}

TEST(Metrics, AFailedWriteIsAnErrorAndAStartDropsACutLine) {
  test::TempDir dir;
  fs::create_directories(dir.path("full"));
  if (fs::exists("/dev/full")) {
    fs::create_symlink("/dev/full", dir.path("full/metrics.jsonl"));
    MetricsLogger full(dir.path("full"), false);
    test::expect_error(
        [&] {
          full.log(3, {{"train/loss", 1.0}});
        },
        {"metrics.jsonl", "failed at step 3", "No space left"});
  }
  // A line cut short by a crash or a full disk: any start (fresh or resumed) drops it.
  const std::string path = dir.path("run/metrics.jsonl");
  test::write_text(path, "{\"step\": 1, \"x\": 1}\n{\"step\": 2, \"x\": 2}\n{\"step\": 3, \"x");
  { MetricsLogger fresh(dir.path("run"), false); }
  EXPECT_EQ(test::read_jsonl(path).size(), 2u);
  { MetricsLogger resumed(dir.path("run"), false, 1); }
  ASSERT_EQ(test::read_jsonl(path).size(), 1u);
  MetricsLogger appending(dir.path("run"), false, 1);
  appending.log(2, {{"x", 5.0}});
  EXPECT_EQ(test::read_jsonl(path).back()["x"], 5.0);
}

TEST(TrainCli, ADamagedCheckpointFallsBackAndIsRefusedByExportAndInspect) {
  test::TinyCorpus corpus;
  test::TempDir dir;
  const RootConfig cfg = small_run(corpus, dir.path("run"));
  std::string out;
  ASSERT_EQ(test::run_command(
                bin() + "train --config " + write_config(cfg, dir.path("c.yaml")) + " train.max_steps=4 2>&1",
                &out),
            0)
      << out;
  const std::string step4 = dir.path("run/checkpoints/step-4");
  ASSERT_EQ(test::run_command(bin() + "inspect --verify " + step4 + " 2>&1", &out), 0) << out;
  damage(step4 + "/model.safetensors");
  // inspect --verify and export name the damaged file; the size check alone passes.
  EXPECT_NE(test::run_command(bin() + "inspect --verify " + step4 + " 2>&1", &out), 0);
  EXPECT_NE(out.find("model.safetensors does not match its checksum"), std::string::npos) << out;
  EXPECT_NE(test::run_command(bin() + "export --checkpoint " + step4 + "/model.safetensors --out " +
                                  dir.path("x.safetensors") + " 2>&1",
                              &out),
            0);
  EXPECT_NE(out.find("do not match their checksum"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir.path("x.safetensors")));
  // A resume skips it with a warning naming it, continues from step 2, and writes step 4 anew.
  ASSERT_EQ(test::run_command(bin() + "train --resume " + dir.path("run") + " train.max_steps=6 2>&1", &out),
            0)
      << out;
  EXPECT_NE(out.find("step-4 is damaged and skipped: model.safetensors does not match"), std::string::npos)
      << out;
  EXPECT_NE(out.find("falling back to " + dir.path("run/checkpoints/step-2")), std::string::npos) << out;
  EXPECT_NE(out.find("resumed " + dir.path("run/checkpoints/step-2")), std::string::npos) << out;
  // The changed key on one line, and the overrides of both starts kept in order.
  EXPECT_NE(out.find("resume: train.max_steps changed from 4 to 6\n"), std::string::npos) << out;
  EXPECT_EQ(Checkpointer::check(step4, true), "");
  EXPECT_EQ(Checkpointer::latest(dir.path("run"), true)->step, 6);
  const YAML::Node overrides = YAML::LoadFile(dir.path("run/overrides.yaml"));
  ASSERT_EQ(overrides.size(), 2u);
  EXPECT_EQ(overrides[0].as<std::string>(), "train.max_steps=4");
  EXPECT_EQ(overrides[1].as<std::string>(), "train.max_steps=6");
}

TEST(TrainCli, ARunDirHeldByARunningTrainingIsRefusedAndALockOfAKilledOneTakenOver) {
  test::TinyCorpus corpus;
  test::TempDir dir;
  RootConfig cfg = small_run(corpus, dir.path("run"));
  cfg.train.max_steps = 1000000;
  cfg.train.checkpoint.every = 0;
  const std::string endless = write_config(cfg, dir.path("endless.yaml"));
  cfg.train.max_steps = 2;
  const std::string two = write_config(cfg, dir.path("two.yaml"));
  const std::string metrics = dir.path("run/metrics.jsonl");
  std::string out;
  // The first run trains; a second on the same run_dir fails at once naming the holder; the
  // first is then killed (no clean-up), and a third takes the lock over.
  ASSERT_EQ(test::run_command("(" + bin() + "train --config " + endless + " > " + dir.path("first.log") +
                                  " 2>&1 & pid=$!; for i in $(seq 600); do [ -s " + metrics +
                                  " ] && break; sleep 0.05; done; " + bin() + "train --config " + two +
                                  " 2>&1; echo \"second=$? holder=$pid\"; kill -9 $pid; wait $pid; " + bin() +
                                  "train --config " + two + " > " + dir.path("third.log") +
                                  " 2>&1; echo \"third=$?\")",
                              &out),
            0)
      << out;
  const std::size_t at = out.find("holder=");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string pid = out.substr(at + 7, out.find('\n', at) - at - 7);
  EXPECT_NE(out.find("second=1"), std::string::npos) << out;
  EXPECT_NE(out.find("run_dir '" + dir.path("run") + "' is in use by process " + pid + " on "),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("third=0"), std::string::npos) << out << test::read_bytes(dir.path("third.log"));
}

TEST(TrainCli, MetricsThatCannotBeWrittenStopTheRunWithACheckpoint) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  test::TinyCorpus corpus;
  test::TempDir dir;
  const RootConfig cfg = small_run(corpus, dir.path("run"));
  fs::create_directories(dir.path("run"));
  fs::create_symlink("/dev/full", dir.path("run/metrics.jsonl"));
  std::string out;
  EXPECT_NE(
      test::run_command(bin() + "train --config " + write_config(cfg, dir.path("c.yaml")) + " 2>&1", &out),
      0);
  EXPECT_NE(
      out.find("metrics.jsonl failed at step 1: No space left on device; stopped at step 1, checkpoint " +
               dir.path("run/checkpoints/step-1")),
      std::string::npos)
      << out;
  EXPECT_EQ(Checkpointer::check(dir.path("run/checkpoints/step-1"), true), "");
}

}  // namespace
}  // namespace losatok::train
