// Config composition, overrides, interpolation and typed reading, with their errors.
#include <gtest/gtest.h>

#include "losatok/core/config.h"
#include "losatok/core/run_config.h"
#include "losatok/train/sembo_stage.h"
#include "losatok/train/tokenizer_stage.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::config;
using losatok::test::expect_error;
using losatok::test::TempDir;
using losatok::test::write_text;

namespace {

struct Inner {
  int depth = 2;
  double lr = 1e-3;
  std::vector<int> sizes{1, 2};
  template <class V>
  void visit(V& v) {
    v("depth", depth);
    v("lr", lr);
    v("sizes", sizes);
  }
  void validate() const { check(depth > 0, "depth", "must be positive"); }
};

struct Outer {
  std::string name = "base";
  bool flag = false;
  Inner model;
  std::optional<int> maybe;
  template <class V>
  void visit(V& v) {
    v("name", name);
    v("flag", flag);
    v("model", model);
    v("maybe", maybe);
  }
};

}  // namespace

TEST(Config, DefaultsListComposesDepthFirstAndLaterWins) {
  TempDir tmp;
  write_text(tmp.path("model/small.yaml"), "model:\n  depth: 4\n  lr: 0.5\n");
  write_text(tmp.path("base.yaml"), "name: from_base\nmodel:\n  depth: 3\n  sizes: [9, 9, 9]\n");
  write_text(tmp.path("run.yaml"), "defaults: [base, model/small.yaml]\nmodel:\n  lr: 0.25\n");
  ConfigTree tree = compose(to_yaml(Outer{}), {tmp.path("run.yaml")}, {});
  Outer o = read<Outer>(tree);
  EXPECT_EQ(o.name, "from_base");
  EXPECT_EQ(o.model.depth, 4);                            // model/small.yaml after base.yaml
  EXPECT_DOUBLE_EQ(o.model.lr, 0.25);                     // the file itself wins over its defaults
  EXPECT_EQ(o.model.sizes, (std::vector<int>{9, 9, 9}));  // lists replace
  EXPECT_EQ(tree.origin_of("model.depth"), tmp.path("model/small.yaml"));
  EXPECT_EQ(tree.origin_of("model.lr"), tmp.path("run.yaml"));
  EXPECT_EQ(tree.origin_of("flag"), "defaults");
}

TEST(Config, SeveralFilesLeftToRight) {
  TempDir tmp;
  write_text(tmp.path("a.yaml"), "name: a\nflag: true\n");
  write_text(tmp.path("b.yaml"), "name: b\n");
  Outer o = read<Outer>(compose(to_yaml(Outer{}), {tmp.path("a.yaml"), tmp.path("b.yaml")}, {}));
  EXPECT_EQ(o.name, "b");
  EXPECT_TRUE(o.flag);
}

TEST(Config, DefaultsCycleAndMissingFileAreErrors) {
  TempDir tmp;
  write_text(tmp.path("a.yaml"), "defaults: [b]\n");
  write_text(tmp.path("b.yaml"), "defaults: [a]\n");
  expect_error([&] { load_config_file(tmp.path("a.yaml")); }, {"includes itself"});
  write_text(tmp.path("c.yaml"), "defaults: [nope]\n");
  expect_error([&] { load_config_file(tmp.path("c.yaml")); }, {"nope", "does not exist", "c.yaml"});
  expect_error([&] { load_config_file(tmp.path("missing.yaml")); }, {"missing.yaml"});
}

TEST(Config, InvalidYamlNamesFileAndLine) {
  TempDir tmp;
  write_text(tmp.path("bad.yaml"), "name: x\nmodel: [1, 2\n");
  expect_error([&] { load_config_file(tmp.path("bad.yaml")); }, {"bad.yaml", "line"});
}

TEST(Config, Overrides) {
  ConfigTree tree = compose(to_yaml(Outer{}), {},
                            {"name=cli", "model.depth=7", "model.sizes=[3, 4]", "flag=true", "+extra.key=1",
                             "++model.lr=0.125", "~extra.key", "maybe=5"});
  EXPECT_FALSE(find(tree.root, "extra.key").IsDefined());
  tree.root.remove("extra");
  Outer o = read<Outer>(tree);
  EXPECT_EQ(o.name, "cli");
  EXPECT_EQ(o.model.depth, 7);
  EXPECT_EQ(o.model.sizes, (std::vector<int>{3, 4}));
  EXPECT_TRUE(o.flag);
  EXPECT_DOUBLE_EQ(o.model.lr, 0.125);
  ASSERT_TRUE(o.maybe.has_value());
  EXPECT_EQ(*o.maybe, 5);
  EXPECT_EQ(tree.origin_of("model.depth"), "command line");
}

TEST(Config, OverrideErrors) {
  const YAML::Node d = to_yaml(Outer{});
  expect_error([&] { compose(d, {}, {"model.dpeth=3"}); }, {"model.dpeth", "+model.dpeth"});
  expect_error([&] { compose(d, {}, {"+name=x"}); }, {"'name'", "already exists"});
  expect_error([&] { compose(d, {}, {"~nothing"}); }, {"nothing", "delete"});
  expect_error([&] { compose(d, {}, {"name"}); }, {"key=value"});
  expect_error([&] { compose(d, {}, {"name.sub=1"}); }, {"'name'", "not a map"});
  expect_error([&] { compose(d, {}, {"model..depth=1"}); }, {"empty key"});
}

TEST(Config, Interpolation) {
  TempDir tmp;
  write_text(tmp.path("i.yaml"),
             "name: run_${model.depth}_${env:LOSATOK_TEST_VAR,fallback}\n"
             "model:\n  depth: ${depth_src}\n  sizes: ${sizes_src}\n"
             "depth_src: 6\nsizes_src: [5, 6]\n");
  ConfigTree tree = compose(to_yaml(Outer{}), {tmp.path("i.yaml")}, {});
  EXPECT_EQ(find(tree.root, "model.sizes").size(), 2u);  // whole-value reference keeps the list
  tree.root.remove("depth_src");
  tree.root.remove("sizes_src");
  Outer o = read<Outer>(tree);
  EXPECT_EQ(o.model.depth, 6);
  EXPECT_EQ(o.name, "run_6_fallback");
  EXPECT_EQ(o.model.sizes, (std::vector<int>{5, 6}));
}

TEST(Config, InterpolationSeesOverrides) {
  TempDir tmp;
  write_text(tmp.path("i.yaml"), "name: d${model.depth}\n");
  Outer o = read<Outer>(compose(to_yaml(Outer{}), {tmp.path("i.yaml")}, {"model.depth=11"}));
  EXPECT_EQ(o.name, "d11");
}

TEST(Config, InterpolationErrors) {
  TempDir tmp;
  write_text(tmp.path("missing.yaml"), "name: ${model.nope}\n");
  expect_error([&] { compose(to_yaml(Outer{}), {tmp.path("missing.yaml")}, {}); },
               {"name", "model.nope", "missing.yaml"});
  write_text(tmp.path("cycle.yaml"), "name: ${model.lr}\nmodel:\n  lr: ${name}\n");
  expect_error([&] { compose(to_yaml(Outer{}), {tmp.path("cycle.yaml")}, {}); }, {"cycle"});
  write_text(tmp.path("map_in_string.yaml"), "name: x${model}\n");
  expect_error([&] { compose(to_yaml(Outer{}), {tmp.path("map_in_string.yaml")}, {}); },
               {"cannot be part of a string"});
}

TEST(Config, UnknownKeyNamesPathAndFile) {
  TempDir tmp;
  write_text(tmp.path("typo.yaml"), "model:\n  detph: 3\n");
  const ConfigTree tree = compose(to_yaml(Outer{}), {tmp.path("typo.yaml")}, {});
  expect_error([&] { read<Outer>(tree); }, {"model.detph", "typo.yaml", "did you mean 'depth'"});
}

TEST(Config, WrongTypeNamesPathAndFile) {
  TempDir tmp;
  write_text(tmp.path("type.yaml"), "model:\n  depth: deep\n");
  expect_error([&] { read<Outer>(compose(to_yaml(Outer{}), {tmp.path("type.yaml")}, {})); },
               {"model.depth", "type.yaml", "integer", "deep"});
  write_text(tmp.path("list.yaml"), "model:\n  sizes: [1, x]\n");
  expect_error([&] { read<Outer>(compose(to_yaml(Outer{}), {tmp.path("list.yaml")}, {})); },
               {"model.sizes[1]", "list.yaml"});
  write_text(tmp.path("map.yaml"), "model: 3\n");
  expect_error([&] { read<Outer>(compose(to_yaml(Outer{}), {tmp.path("map.yaml")}, {})); },
               {"model", "a map"});
  expect_error([&] { read<Outer>(compose(to_yaml(Outer{}), {}, {"flag=maybe"})); }, {"flag", "command line"});
}

TEST(Config, ValidateErrorNamesPathAndOrigin) {
  TempDir tmp;
  write_text(tmp.path("v.yaml"), "model:\n  depth: 0\n");
  expect_error([&] { read<Outer>(compose(to_yaml(Outer{}), {tmp.path("v.yaml")}, {})); },
               {"model.depth", "must be positive", "v.yaml"});
}

TEST(Config, MergeNeverAliasesTheOverlay) {
  YAML::Node overlay = YAML::Load("model: {depth: 3}");
  ConfigTree a, b;
  merge(a, overlay, "x");
  merge(b, overlay, "x");
  a.root["model"]["depth"] = 99;
  EXPECT_EQ(b.root["model"]["depth"].as<int>(), 3);
  EXPECT_EQ(overlay["model"]["depth"].as<int>(), 3);
}

TEST(Config, CopiesAreDeep) {
  ConfigTree a = compose(to_yaml(Outer{}), {}, {});
  ConfigTree b = a;
  ConfigTree c;
  c = a;
  apply_override(b, "model.depth=9");
  apply_override(c, "model.depth=8");
  EXPECT_EQ(find(a.root, "model.depth").as<int>(), 2);
  EXPECT_EQ(find(b.root, "model.depth").as<int>(), 9);
  EXPECT_EQ(find(c.root, "model.depth").as<int>(), 8);
}

TEST(Config, FindNeverCreatesKeys) {
  YAML::Node root = YAML::Load("a: {b: 1}");
  EXPECT_FALSE(find(root, "a.c.d").IsDefined());
  EXPECT_FALSE(find(root, "x").IsDefined());
  EXPECT_EQ(dump(root), dump(YAML::Load("a: {b: 1}")));
}

TEST(Config, DumpReadsBackIdentically) {
  Outer o;
  o.model.lr = 1e-7;
  o.maybe = 3;
  const std::string text = dump(to_yaml(o));
  EXPECT_NE(text.find("1e-07"), std::string::npos) << text;
  ConfigTree tree;
  merge(tree, YAML::Load(text), "dump");
  Outer back = read<Outer>(tree);
  EXPECT_EQ(dump(to_yaml(back)), text);
}

TEST(Config, ChangedKeys) {
  YAML::Node a = YAML::Load("x: 1\ny: {z: 2, w: [1]}\n");
  YAML::Node b = YAML::Load("x: 1\ny: {z: 3, w: [1], v: 0}\n");
  EXPECT_EQ(changed_keys(a, b), (std::vector<std::string>{"y.v", "y.z"}));
}

TEST(Config, RootConfigValidates) {
  expect_error([] { read<RootConfig>(compose(to_yaml(RootConfig{}), {}, {"runtime.threads=-1"})); },
               {"runtime.threads", "command line"});
  expect_error([] { read<RootConfig>(compose(to_yaml(RootConfig{}), {}, {"frontend.vocos.power=3"})); },
               {"frontend.vocos.power"});
  expect_error([] { read<RootConfig>(compose(to_yaml(RootConfig{}), {}, {"stage=pretrain"})); }, {"stage"});
  expect_error([] { read<RootConfig>(compose(to_yaml(RootConfig{}), {}, {"audio.sample_rate=24000"})); },
               {"frontend.dasheng.sample_rate", "audio.sample_rate"});
  RootConfig ok = read<RootConfig>(compose(to_yaml(RootConfig{}), {}, {"runtime.blas_threads=2"}));
  EXPECT_EQ(ok.runtime.blas_threads, 2);
}

TEST(Config, ShippedConfigsResolve) {
  const std::string dir = std::string(LOSATOK_FIXTURES_DIR) + "/../../configs";
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    if (entry.path().parent_path().filename() == "tables")
      continue;  // `losatok table` files: tests/cli/test_table.cpp
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW(read_root_config({entry.path().string()}, {}));
  }
}

TEST(Config, StageSectionsBelongToTheirStage) {
  const std::string dir = std::string(LOSATOK_FIXTURES_DIR) + "/../../configs/";
  // The chosen stage's section is read and typed; its defaults are there for overrides.
  RootConfig sembo = read_root_config({dir + "sembo.yaml"}, {"sembo.loss.lambda_rel=0.5"});
  EXPECT_EQ(sembo.section<train::SemBoStageConfig>().loss.lambda_rel, 0.5);
  EXPECT_EQ(sembo.section<train::SemBoStageConfig>().loss.lambda_rec, 1000.0);
  // Another stage's key is an error naming the key and both stages.
  expect_error([&] { read_root_config({dir + "sembo.yaml"}, {"+tokenizer.loss.lambda_kl=0.1"}); },
               {"tokenizer.loss.lambda_kl", "tokenizer stage", "sembo"});
  // The flat layout's keys say where they moved, with the file they came from.
  TempDir tmp;
  write_text(tmp.path("old.yaml"), "defaults: [" + dir + "sembo]\nloss:\n  lambda_kl: 0.1\n");
  expect_error([&] { read_root_config({tmp.path("old.yaml")}, {}); },
               {"loss.lambda_kl", "moved to tokenizer.loss.lambda_kl", "old.yaml"});
  expect_error([&] { read_root_config({dir + "sembo.yaml"}, {"loss.lambda_rec=5"}); },
               {"loss.lambda_rec", "moved to sembo.loss.lambda_rec", "command line"});
  write_text(tmp.path("gan.yaml"), "defaults: [" + dir + "tokenizer]\ngan:\n  start_step: 5\n");
  expect_error([&] { read_root_config({tmp.path("gan.yaml")}, {}); },
               {"gan.start_step", "moved to tokenizer.gan.start_step"});
  // A stage override brings that stage's section defaults.
  RootConfig tok =
      read_root_config({dir + "model/tiny.yaml"}, {"stage=tokenizer", "tokenizer.gan.start_step=7"});
  EXPECT_EQ(tok.section<train::TokenizerStageConfig>().gan.start_step, 7);
  // The typed section of another stage is refused by name.
  expect_error([&] { (void)tok.section<train::SemBoStageConfig>(); }, {"tokenizer"});
  // Printed and read back, a config keeps its section.
  const RootConfig back = read<RootConfig>(compose(to_yaml(tok), {}, {}));
  EXPECT_EQ(back.section<train::TokenizerStageConfig>().gan.start_step, 7);
}

TEST(Config, SaveRunConfigWritesResolvedTreeAndOverrides) {
  TempDir tmp;
  const std::vector<std::string> overrides = {"model.depth=5", "name=x"};
  const ConfigTree tree = compose(to_yaml(Outer{}), {}, overrides);
  save_run_config(tmp.path("run"), tree.root, overrides);
  ConfigTree back = load_config_file(tmp.path("run/config.yaml"));
  Outer o = read<Outer>(back);
  EXPECT_EQ(o.model.depth, 5);
  EXPECT_EQ(o.name, "x");
  const YAML::Node saved = YAML::LoadFile(tmp.path("run/overrides.yaml"));
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved[0].as<std::string>(), "model.depth=5");
  // Resuming with a new override reports exactly the changed key.
  ConfigTree resumed = back;
  resumed.root =
      YAML::Clone(back.root);  // ConfigTree copies share nodes; resume must not edit the saved tree
  apply_override(resumed, "model.lr=0.5");
  EXPECT_EQ(changed_keys(back.root, resumed.root), (std::vector<std::string>{"model.lr"}));
}

struct Signed {
  int64_t seed = 0;
  int offset = 0;
  template <class V>
  void visit(V& v) {
    v("seed", seed);
    v("offset", offset);
  }
};

TEST(Config, NegativeAndDecimalIntegers) {
  Signed s = read<Signed>(compose(to_yaml(Signed{}), {}, {"seed=-1", "offset=010"}));
  EXPECT_EQ(s.seed, -1);
  EXPECT_EQ(s.offset, 10);  // YAML 1.2: no octal from a leading zero
  expect_error([] { read<Signed>(compose(to_yaml(Signed{}), {}, {"offset=1e30"})); }, {"offset"});
  expect_error([] { read<Signed>(compose(to_yaml(Signed{}), {}, {"offset=3000000000"})); }, {"out of range"});
  // threads=-1 fails in validate(), with its own message.
  expect_error([] { read<RootConfig>(compose(to_yaml(RootConfig{}), {}, {"runtime.threads=-1"})); },
               {"runtime.threads", "must be >= 0"});
}

TEST(Config, AliasesAreCopiedNotShared) {
  TempDir tmp;
  write_text(tmp.path("a.yaml"), "model: &m {depth: 3, lr: 0.5}\nextra: *m\n");
  ConfigTree tree = compose(to_yaml(Outer{}), {tmp.path("a.yaml")}, {"model.depth=9"});
  EXPECT_EQ(find(tree.root, "model.depth").as<int>(), 9);
  EXPECT_EQ(find(tree.root, "extra.depth").as<int>(), 3);
}

TEST(Config, InterpolationThroughAnInterpolatedMapAnyOrder) {
  TempDir tmp;
  // `name` is visited before `src`, whose value is itself a reference to a map.
  write_text(tmp.path("o.yaml"), "name: d${src.depth}\nsrc: ${model}\nmodel:\n  depth: 4\n");
  ConfigTree tree = compose(to_yaml(Outer{}), {tmp.path("o.yaml")}, {});
  EXPECT_EQ(find(tree.root, "name").as<std::string>(), "d4");
  EXPECT_EQ(find(tree.root, "src.depth").as<int>(), 4);
}
