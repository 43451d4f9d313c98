// `losatok report`: one table from run folders and eval JSONs.
#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"

using namespace losatok;

TEST(ReportCli, RunsAndEvalJsonsMakeOneTable) {
  test::TempDir dir;
  std::filesystem::create_directories(dir.path("mae"));
  test::write_text(dir.path("mae/metrics.jsonl"),
                   "{\"step\": 0, \"val/mae_loss\": 0.9}\n{\"step\": 5, \"train/loss\": 0.7}\n"
                   "{\"step\": 10, \"val/mae_loss\": 0.5, \"val/fm_loss/sigma_0.1\": 3}\n");
  test::write_text(dir.path("recon.json"),
                   "{\"command\": \"eval recon\", \"overall\": {\"clips\": 2, \"mel_distance\": 0.25, "
                   "\"stft_distance\": 1.5, \"si_sdr\": 3.25, \"stoi\": null, \"real_time_factor\": 0.01}, "
                   "\"domains\": {}, \"clips\": [{\"mel_distance\": 7}]}");
  test::write_text(
      dir.path("probe.json"),
      "{\"command\": \"eval probe\", \"representations\": {\"semantic\": {\"dim\": 32, \"tasks\": "
      "{\"domain\": {\"linear_accuracy\": 0.765, \"knn_accuracy\": 0.824}}}}}");
  std::string out;
  const std::string bin = std::string(LOSATOK_BINARY) + " --threads 1 report ";
  ASSERT_EQ(test::run_command(bin + dir.path("mae") + " " + dir.path("recon.json") + " " +
                                  dir.path("probe.json") + " --out " + dir.path("summary.txt"),
                              &out),
            0)
      << out;
  for (const char* want : {"val/mae_loss (step 0 -> 10)", "0.9 -> 0.5", "overall mel_distance", "0.250",
                           "overall stoi", "representations.semantic.tasks.domain.knn_accuracy", "0.824"})
    EXPECT_NE(out.find(want), std::string::npos) << want << " not in:\n" << out;
  EXPECT_EQ(out.find("sigma_"), std::string::npos) << out;  // per-sigma losses stay in the run's files
  EXPECT_EQ(out.find("train/loss"), std::string::npos) << out;
  EXPECT_EQ(test::read_bytes(dir.path("summary.txt")), out.substr(out.find("from")));
  // A path that is neither is a one-line error.
  EXPECT_EQ(test::run_command(bin + dir.path("missing.json"), &out), 1) << out;
  EXPECT_NE(out.find("missing.json"), std::string::npos) << out;
}
