// Multi-process pieces: the launcher environment, c10d collectives and the bucketed gradient
// all-reduce (two ranks as threads of this process over Gloo), the fp16 loss scaler, and the
// optimizer's device-side skip.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

#include "losatok/train/distributed.h"
#include "losatok/train/ema.h"
#include "losatok/train/loss_scaler.h"
#include "losatok/train/optimizer.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::train;

TEST(DistributedEnv, TorchrunSlurmAndErrors) {
  const DistributedEnv none = DistributedEnv::from_variables({{"HOME", "/root"}});
  EXPECT_FALSE(none.enabled());
  EXPECT_EQ(none.launcher, "none");

  const DistributedEnv t = DistributedEnv::from_variables({{"RANK", "3"},
                                                           {"WORLD_SIZE", "8"},
                                                           {"LOCAL_RANK", "1"},
                                                           {"LOCAL_WORLD_SIZE", "2"},
                                                           {"MASTER_ADDR", "node7"},
                                                           {"MASTER_PORT", "29611"},
                                                           {"TORCHELASTIC_USE_AGENT_STORE", "True"}});
  EXPECT_TRUE(t.enabled());
  EXPECT_EQ(t.launcher, "torchrun");
  EXPECT_EQ(t.rank, 3);
  EXPECT_EQ(t.world_size, 8);
  EXPECT_EQ(t.local_rank, 1);
  EXPECT_EQ(t.local_world_size, 2);
  EXPECT_EQ(t.master_addr, "node7");
  EXPECT_EQ(t.master_port, 29611);
  EXPECT_TRUE(t.agent_store);

  const DistributedEnv s = DistributedEnv::from_variables({{"SLURM_PROCID", "5"},
                                                           {"SLURM_NTASKS", "8"},
                                                           {"SLURM_LOCALID", "1"},
                                                           {"SLURM_NTASKS_PER_NODE", "4"},
                                                           {"SLURM_JOB_NODELIST", "gpu[07-08],cpu1"}});
  EXPECT_EQ(s.launcher, "slurm");
  EXPECT_EQ(s.rank, 5);
  EXPECT_EQ(s.local_world_size, 4);
  EXPECT_EQ(s.master_addr, "gpu07");
  EXPECT_EQ(s.master_port, 29500);
  EXPECT_FALSE(s.agent_store);

  const DistributedEnv s2 = DistributedEnv::from_variables({{"SLURM_PROCID", "6"},
                                                            {"SLURM_NTASKS", "7"},
                                                            {"SLURM_LOCALID", "0"},
                                                            {"SLURM_NODEID", "3"},
                                                            {"SLURM_TASKS_PER_NODE", "2(x3),1"},
                                                            {"SLURM_JOB_ID", "123456"},
                                                            {"SLURM_STEP_NODELIST", "a[4-7]"}});
  EXPECT_EQ(s2.local_world_size, 1);  // the fourth node has one task
  EXPECT_EQ(s2.master_port, 20000 + 123456 % 20000);
  EXPECT_EQ(s2.master_addr, "a4");

  EXPECT_EQ(first_slurm_host("a1"), "a1");
  EXPECT_EQ(first_slurm_host("n[3,5-9]x,m2"), "n3x");
  EXPECT_EQ(first_slurm_host("host-a,host-b"), "host-a");

  test::expect_error(
      [] {
        DistributedEnv::from_variables({{"RANK", "x"}, {"WORLD_SIZE", "2"}});
      },
      {"RANK", "not an integer"});
  test::expect_error(
      [] {
        DistributedEnv::from_variables({{"RANK", "2"}, {"WORLD_SIZE", "2"}});
      },
      {"rank 2", "world size 2", "WORLD_SIZE"});
  test::expect_error(
      [] {
        DistributedEnv::from_variables({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}});
      },
      {"MASTER_PORT"});
}

namespace {

// Runs `body(group)` on `n` ranks, each a thread of this process, over one Gloo FileStore.
void on_ranks(int n, const std::function<void(ProcessGroup&)>& body) {
  test::TempDir dir;
  std::vector<std::thread> threads;
  std::vector<std::string> errors(n);
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        auto group = ProcessGroup::connect_file(dir.path("store"), r, n, std::chrono::seconds(60));
        body(*group);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < n; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

}  // namespace

TEST(ProcessGroup, BroadcastReduceAndGatherOverGloo) {
  on_ranks(2, [](ProcessGroup& g) {
    const int r = g.rank();
    std::vector<torch::Tensor> b{torch::full({3}, 10.0f + r), torch::full({2, 2}, r, torch::kInt64)};
    g.broadcast(b);
    EXPECT_TRUE(torch::equal(b[0], torch::full({3}, 10.0f)));
    EXPECT_TRUE(torch::equal(b[1], torch::zeros({2, 2}, torch::kInt64)));
    torch::Tensor s = torch::tensor({1.0f + r, -2.0f * r}), mx = s.clone(), mn = s.clone();
    g.all_reduce(s, "sum");
    g.all_reduce(mx, "max");
    g.all_reduce(mn, "min");
    EXPECT_TRUE(torch::equal(s, torch::tensor({3.0f, -2.0f})));
    EXPECT_TRUE(torch::equal(mx, torch::tensor({2.0f, 0.0f})));
    EXPECT_TRUE(torch::equal(mn, torch::tensor({1.0f, -2.0f})));
    const auto all = g.all_gather(torch::full({4}, r, torch::kUInt8));
    ASSERT_EQ(all.size(), 2u);
    EXPECT_TRUE(torch::equal(all[1], torch::ones({4}, torch::kUInt8)));
    g.barrier();
  });
}

TEST(GradSync, BucketsAverageGradientsAndFillMissingOnes) {
  // Four parameters, buckets of 48 bytes, in reverse order; rank 1 has no
  // gradient for `b` (an unused branch), which counts as zeros.
  on_ranks(2, [](ProcessGroup& g) {
    const int r = g.rank();
    torch::Tensor a = torch::zeros({2, 3}, torch::requires_grad()),
                  b = torch::zeros({5}, torch::requires_grad()),
                  c = torch::zeros({4}, torch::requires_grad()),
                  unused = torch::zeros({2}, torch::requires_grad());
    a.mutable_grad() = torch::arange(6, torch::kFloat32).view({2, 3}) * (r + 1);
    if (r == 0) b.mutable_grad() = torch::full({5}, 4.0f);
    c.mutable_grad() = torch::full({4}, r == 0 ? 1.0f : 3.0f);
    GradSync sync(g, {a, b, c, unused}, 48);
    EXPECT_EQ(sync.buckets(), 2u);  // unused + c + b share one bucket (44 bytes), a (24 bytes) opens the next
    sync.sync();
    EXPECT_FALSE(unused.grad().defined());  // no rank used it
    EXPECT_TRUE(torch::allclose(a.grad(), torch::arange(6, torch::kFloat32).view({2, 3}) * 1.5));
    ASSERT_TRUE(b.grad().defined());
    EXPECT_TRUE(torch::equal(b.grad(), torch::full({5}, 2.0f)));
    EXPECT_TRUE(torch::equal(c.grad(), torch::full({4}, 2.0f)));
    // Without find_unused nothing is read back: the unused parameter gets a zero gradient.
    GradSync no_flags(g, {a, unused}, 1 << 20, /*find_unused=*/false);
    no_flags.sync();
    ASSERT_TRUE(unused.grad().defined());
    EXPECT_TRUE(torch::equal(unused.grad(), torch::zeros({2})));
  });
}

TEST(LossScaler, SkipsAndShrinksOnOverflowGrowsAfterCleanStepsAndRoundTrips) {
  LossScaleConfig c;
  c.init = 1024;
  c.growth_interval = 3;
  LossScaler s(c, torch::kCPU);
  torch::Tensor p = torch::zeros({2}, torch::requires_grad());
  p.mutable_grad() = torch::tensor({2048.0f, -512.0f});
  s.unscale({{"p", p}});
  EXPECT_TRUE(torch::equal(p.grad(), torch::tensor({2.0f, -0.5f})));  // a power of two: exact
  s.update(torch::tensor(true));
  EXPECT_EQ(s.scale().item<float>(), 512.0f);
  for (int i = 0; i < 2; ++i) s.update(torch::tensor(false));
  EXPECT_EQ(s.scale().item<float>(), 512.0f);
  s.update(torch::tensor(false));  // the third clean step in a row
  EXPECT_EQ(s.scale().item<float>(), 1024.0f);
  s.update(torch::tensor(false));
  LossScaler t(c, torch::kCPU);
  t.load_state(s.state(), "ck/state.safetensors");
  EXPECT_EQ(t.scale().item<float>(), 1024.0f);
  EXPECT_EQ(t.state().at("growth_tracker").item<int>(), 1);
  test::expect_error([&] { t.load_state({}, "ck/state.safetensors"); }, {"ck/state.safetensors", "scale"});
  LossScaleConfig big;
  big.init = 3e38;
  big.growth_interval = 1;
  LossScaler u(big, torch::kCPU);
  u.update(torch::tensor(false));  // growing would overflow: the scale stays
  EXPECT_EQ(u.scale().item<float>(), 3e38f);
}

TEST(AdamW, ASkippedStepChangesNothingAndIsDecidedOnTheDevice) {
  torch::manual_seed(1);
  torch::Tensor w = torch::randn({3, 2}, torch::requires_grad());
  OptimConfig c;
  c.lr = 0.1;
  c.weight_decay = 0.1;
  AdamW opt("m", {{"w", w}}, c);
  EmaConfig ec;
  ec.decay = 0.5;
  Ema ema({{"w", w}}, ec);
  w.mutable_grad() = torch::ones({3, 2});
  opt.step(0.1, torch::tensor(true));
  ema.update(0, torch::tensor(true));
  const torch::Tensor before = w.detach().clone(), m = opt.state().at("w.exp_avg").clone(),
                      shadow = ema.shadow().at("w").clone();
  w.mutable_grad() = torch::full({3, 2}, std::numeric_limits<float>::quiet_NaN());
  opt.step(0.1, torch::tensor(false));
  ema.update(1, torch::tensor(false));
  EXPECT_TRUE(torch::equal(w, before));
  EXPECT_TRUE(torch::equal(opt.state().at("w.exp_avg"), m));
  EXPECT_TRUE(torch::equal(ema.shadow().at("w"), shadow));
  EXPECT_EQ(opt.steps_taken(), 1);
  // The next update is exactly that of an optimizer that never saw the skipped step.
  torch::manual_seed(1);
  torch::Tensor v = torch::randn({3, 2}, torch::requires_grad());
  AdamW plain("m", {{"w", v}}, c);
  for (int i = 0; i < 2; ++i) {
    v.mutable_grad() = torch::full({3, 2}, 1.0f + i);
    plain.step(0.1);
    w.mutable_grad() = torch::full({3, 2}, 1.0f + i);
    if (i == 1) opt.step(0.1, torch::tensor(true));
  }
  EXPECT_EQ(opt.steps_taken(), 2);
  EXPECT_TRUE(torch::equal(w, v));
  EXPECT_TRUE(torch::equal(opt.state().at("w.exp_avg_sq"), plain.state().at("w.exp_avg_sq")));
  EXPECT_TRUE(torch::equal(opt.state().at("w.exp_avg"), plain.state().at("w.exp_avg")));
}
