// `losatok table`: a paper table's runs trained, evaluated and written beside the paper's numbers.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"

using namespace losatok;
namespace fs = std::filesystem;

namespace {

const std::string kBin = std::string(LOSATOK_BINARY) + " --threads 1 table ";

}  // namespace

TEST(TableCli, EveryShippedTableResolvesItsRuns) {
  // --dry-run parses the YAML, expands its placeholders and resolves every run's config.
  test::TempDir dir;
  int tables = 0;
  for (const auto& e : fs::directory_iterator(test::source_path("configs/tables"))) {
    if (e.path().extension() != ".yaml") continue;
    ++tables;
    std::string out;
    const std::string name = e.path().stem().string();
    EXPECT_EQ(test::run_command("cd " + test::source_path("") + " && " + kBin + e.path().string() +
                                    " --dry-run --out-dir " + dir.path(name),
                                &out),
              0)
        << name << ":\n"
        << out;
    EXPECT_TRUE(fs::exists(dir.path(name + "/logs"))) << name;
  }
  EXPECT_GE(tables, 3);
  // A dry run writes every command line, the evaluations' too.
  EXPECT_TRUE(fs::exists(dir.path("table5_tiny/logs/ae.train.cmd")));
  EXPECT_NE(test::read_bytes(dir.path("table5_tiny/logs/ae.recon.cmd")).find("eval recon --manifest"),
            std::string::npos);
}

TEST(TableCli, TrainsEvaluatesAndPrintsOursBesideThePaper) {
  test::TinyCorpus corpus;
  test::TempDir dir;
  const std::string yaml = dir.path("t.yaml");
  test::write_text(yaml,
                   "title: \"A tiny table\"\nsource: a test\nout_dir: " + dir.path("out") +
                       "\nvars: {src: nowhere}\n"
                       "overrides:\n"
                       "  - \"data.sources=[{manifest: " +
                       corpus.train +
                       "}]\"\n"
                       "  - \"data.valid_sources=[{manifest: " +
                       corpus.valid +
                       "}]\"\n"
                       "  - data.segment_seconds=0.64\n  - data.batch_size=3\n"
                       "  - train.val_every=2\n  - train.checkpoint.every=2\n  - train.tensorboard=false\n"
                       "  - sembo.baselines=false\n"
                       "columns:\n"
                       "  - {key: rec, title: \"L_rec\", from: val, path: val/rec_loss, digits: 4}\n"
                       "  - {key: other, title: \"not measured\"}\n"
                       "runs:\n"
                       "  - {name: a, label: \"run A\", config: \"{var:src}/configs/sembo_tiny.yaml\", x: 1,"
                       " paper: {rec: 0.5, other: 3.0}}\n"
                       "  - {name: b, label: \"run B\", config: \"{var:src}/configs/sembo_tiny.yaml\","
                       " overrides: [sembo.loss.lambda_rel=0], x: 2, paper: {rec: 0.25}}\n");
  // --var takes one value: the overrides after it reach every training run.
  const std::string cmd = kBin + yaml + " --var src=" + test::source_path("") + " train.max_steps=2";
  std::string out;
  ASSERT_EQ(test::run_command(cmd, &out), 0) << out;
  for (const char* want : {"| run A |", "| run B |", "/ 0.5000 |", "n/a / 3.000 |", "table.{md,csv,json}"})
    EXPECT_NE(out.find(want), std::string::npos) << want << "\n" << out;
  const auto j = nlohmann::json::parse(test::read_bytes(dir.path("out/table.json")));
  ASSERT_EQ(j["rows"].size(), 2u);
  const double a = j["rows"][0]["values"]["rec"]["ours"].get<double>();
  const double b = j["rows"][1]["values"]["rec"]["ours"].get<double>();
  EXPECT_GT(a, 0.0);
  EXPECT_GT(b, 0.0);
  EXPECT_EQ(j["rows"][0]["values"]["rec"]["paper"].get<double>(), 0.5);
  EXPECT_TRUE(j["rows"][1]["values"]["other"]["ours"].is_null());
  // One pair both have: agreement 1 when our order matches the paper's (A above B), else 0.
  EXPECT_EQ(j["order_agreement"]["rec"]["pairs"].get<int>(), 1);
  EXPECT_EQ(j["order_agreement"]["rec"]["agree"].get<int>(), a > b ? 1 : 0);
  EXPECT_NE(test::read_bytes(dir.path("out/table.csv")).find("a,run A,rec,"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir.path("out/runs/b/checkpoints/step-2")));
  const std::string cmd_b = test::read_bytes(dir.path("out/logs/b.train.cmd"));
  EXPECT_NE(cmd_b.find("train.max_steps=2 sembo.loss.lambda_rel=0"), std::string::npos) << cmd_b;
  EXPECT_FALSE(fs::exists(dir.path("out/runs/b/checkpoints/step-300")));  // sembo_tiny's own max_steps
  // Again: the runs are finished, nothing retrains, the same numbers come back.
  ASSERT_EQ(test::run_command(cmd, &out), 0) << out;
  const auto j2 = nlohmann::json::parse(test::read_bytes(dir.path("out/table.json")));
  EXPECT_EQ(j2["rows"], j["rows"]);
  EXPECT_FALSE(fs::exists(dir.path("out/runs/a/checkpoints/step-4")));
}

TEST(TableCli, BadTablesAreOneLineErrors) {
  test::TempDir dir;
  const auto expect_fails = [&](const std::string& body, std::initializer_list<std::string> needles) {
    test::write_text(dir.path("bad.yaml"), body);
    std::string out;
    EXPECT_EQ(test::run_command(kBin + dir.path("bad.yaml") + " --dry-run", &out), 1) << out;
    for (const auto& n : needles) EXPECT_NE(out.find(n), std::string::npos) << n << " not in:\n" << out;
  };
  const std::string cols = "columns: [{key: x, from: val, path: val/loss}]\n";
  expect_fails("title: t\nout_dir: o\n" + cols + "runs: [{name: a, config: c.yaml, colour: red}]\n",
               {"runs[0].colour", "unknown key", "bad.yaml"});
  expect_fails("title: t\nout_dir: o\n" + cols + "runs: [{name: a, config: \"{var:nope}/c.yaml\"}]\n",
               {"runs[0].config", "{var:nope}"});
  expect_fails("title: t\nout_dir: o\n" + cols + "runs: [{name: a, config: c.yaml, paper: {y: 1}}]\n",
               {"runs[0].paper.y", "not a column key"});
  expect_fails(
      "title: t\nout_dir: o\ncolumns: [{key: x, from: probe, path: a.b}]\nruns: [{name: a, config: "
      "c.yaml}]\n",
      {"columns[0].from", "probe"});
  expect_fails("title: t\nout_dir: " + dir.path("o") + "\n" + cols + "runs: [{name: a, config: " +
                   test::source_path("configs/sembo_tiny.yaml") + ", overrides: [sembo.loss.lambda_kl=1]}]\n",
               {"run 'a'", "sembo.loss.lambda_kl"});
  std::string out;
  EXPECT_EQ(test::run_command(kBin + dir.path("missing.yaml"), &out), 1) << out;
  EXPECT_NE(out.find("missing.yaml"), std::string::npos) << out;
}
