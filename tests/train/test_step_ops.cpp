// The multi-tensor step (issue 19): the fused / foreach AdamW, foreach clipping and EMA equal
// the per-parameter reference over several steps including a skipped one; the op counter
// attributes a step's operations to its phases; `bench --count-ops` reports them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "losatok/core/compat.h"
#include "losatok/train/ema.h"
#include "losatok/train/op_count.h"
#include "losatok/train/optimizer.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::train;
namespace fs = std::filesystem;

namespace {

// A small model's parameters: matrices (decayed), vectors (not), one parameter without a
// gradient (skipped by every implementation).
NamedTensors make_params(uint64_t seed) {
  torch::manual_seed(seed);
  NamedTensors p;
  p.emplace_back("a.weight", torch::randn({6, 5}).requires_grad_());
  p.emplace_back("a.bias", torch::randn({6}).requires_grad_());
  p.emplace_back("b.weight", torch::randn({3, 6}).requires_grad_());
  p.emplace_back("b.scale", torch::randn({3}).requires_grad_());
  p.emplace_back("unused.weight", torch::randn({2, 2}).requires_grad_());
  return p;
}

torch::Tensor loss_of(const NamedTensors& p, const torch::Tensor& x) {
  const torch::Tensor h = torch::tanh(torch::linear(x, p[0].second, p[1].second));
  return (torch::linear(h, p[2].second) * p[3].second).pow(2).sum();
}

}  // namespace

TEST(MultiTensorStep, AdamWImplementationsEqualThePerTensorReferenceThroughASkippedStep) {
  torch::manual_seed(7);
  const torch::Tensor x = torch::randn({7, 5});
  // Equal to 1e-6 relative to the tensor's size (float32 rounding of lerp vs mul + add).
  const auto close = [](const torch::Tensor& a, const torch::Tensor& b) {
    const torch::Tensor a64 = a.to(torch::kFloat64), b64 = b.to(torch::kFloat64);
    return test::max_abs_diff(a64, b64) <= 1e-6 * (1 + a64.abs().max().item<double>());
  };
  std::vector<std::string> impls = {"foreach", "auto"};
  if (compat::kHasFusedAdamW) impls.push_back("fused");
  for (const std::string& impl : impls) {
    NamedTensors ref = make_params(5), ours = make_params(5);
    OptimConfig c;
    c.lr = 0.02;
    c.betas = {0.8, 0.95};
    c.weight_decay = 0.1;
    c.implementation = "per_tensor";
    AdamW a("m", ref, c);
    c.implementation = impl;
    AdamW b("m", ours, c);
    for (int step = 0; step < 6; ++step) {
      a.zero_grad();
      b.zero_grad();
      loss_of(ref, x).backward();
      loss_of(ours, x).backward();
      // Step 3 has a non-finite gradient: both skip it, leaving weights, moments, step count.
      torch::Tensor ok = torch::tensor(true);
      if (step == 3) {
        ref[0].second.mutable_grad()[0][0] = std::nan("");
        ours[0].second.mutable_grad()[0][0] = std::nan("");
        ok = torch::tensor(false);
      }
      const double lr = 0.02 * (1.0 - 0.1 * step);
      a.step(lr, ok);
      b.step(lr, ok);
    }
    EXPECT_EQ(a.steps_taken(), 5) << impl;
    EXPECT_EQ(b.steps_taken(), 5) << impl;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      EXPECT_TRUE(close(ref[i].second, ours[i].second)) << impl << " " << ref[i].first;
      EXPECT_TRUE(torch::isfinite(ours[i].second).all().item<bool>()) << impl << " " << ref[i].first;
    }
    // Same checkpoint: every moment equal, keyed alike.
    const auto sa = a.state(), sb = b.state();
    ASSERT_EQ(sa.size(), sb.size());
    for (const auto& [k, v] : sa) EXPECT_TRUE(close(v, sb.at(k))) << impl << " " << k;
    // The parameter without a gradient never moved, and nor did its moments.
    EXPECT_TRUE(torch::equal(ours[4].second, make_params(5)[4].second)) << impl;
    EXPECT_EQ(sb.at("unused.weight.exp_avg").abs().sum().item<double>(), 0.0) << impl;
    // A state written by one implementation resumes in another.
    NamedTensors again = make_params(6);
    c.implementation = "per_tensor";
    AdamW resumed("m", again, c);
    resumed.load_state(sb, "test");
    EXPECT_EQ(resumed.steps_taken(), 5);
  }
}

TEST(MultiTensorStep, UnknownOrUnavailableImplementationIsRefused) {
  OptimConfig c;
  c.implementation = "turbo";
  test::expect_error([&] { AdamW("m", make_params(1), c); }, {"implementation", "turbo"});
  if (!compat::kHasFusedAdamW) {
    c.implementation = "fused";
    test::expect_error([&] { AdamW("m", make_params(1), c); }, {"fused", "2.4"});
  }
}

TEST(MultiTensorStep, ClippingOverMixedDtypesEqualsTheNormOfAllGradients) {
  torch::manual_seed(2);
  NamedTensors p;
  p.emplace_back("f32", torch::randn({4, 3}).requires_grad_());
  p.emplace_back("f64", torch::randn({5}, torch::kFloat64).requires_grad_());
  p.emplace_back("none", torch::randn({2}).requires_grad_());
  p[0].second.mutable_grad() = torch::randn({4, 3});
  p[1].second.mutable_grad() = torch::randn({5}, torch::kFloat64);
  const torch::Tensor g0 = p[0].second.grad().clone(), g1 = p[1].second.grad().clone();
  const double expect = std::sqrt(g0.pow(2).sum().item<double>() + g1.pow(2).sum().item<double>());
  const torch::Tensor norm = clip_grad_norm(p, 0.5);
  EXPECT_NEAR(norm.item<double>(), expect, 1e-5);
  const double coef = 0.5 / (expect + 1e-6);
  EXPECT_LT(test::max_abs_diff(p[0].second.grad(), g0 * coef), 1e-6);
  EXPECT_LT(test::max_abs_diff(p[1].second.grad().to(torch::kFloat32), (g1 * coef).to(torch::kFloat32)),
            1e-6);
  EXPECT_FALSE(p[2].second.grad().defined());
  // A non-finite gradient gives a non-finite norm (the trainer's skip signal).
  p[0].second.mutable_grad()[0][0] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(std::isfinite(clip_grad_norm(p, 1.0).item<double>()));
}

TEST(MultiTensorStep, EmaEqualsLerpAndHoldsStillOnASkippedStep) {
  torch::manual_seed(4);
  NamedTensors p = {{"a", torch::randn({3, 2})}, {"b", torch::randn({4})}};
  EmaConfig c;
  c.decay = 0.9;
  c.start_step = 1;
  Ema ema(p, c);
  std::map<std::string, torch::Tensor> ref;
  for (const auto& [n, t] : p) ref[n] = t.clone();
  for (int step = 0; step < 5; ++step) {
    for (auto& [n, t] : p) t.add_(torch::randn_like(t));
    const bool applied = step != 2;
    ema.update(step, torch::tensor(applied));
    for (auto& [n, t] : p) {
      if (step < c.start_step)
        ref[n] = t.clone();
      else if (applied)
        ref[n] = ref[n].lerp(t, 0.1);
    }
  }
  for (const auto& [n, t] : ref) EXPECT_LT(test::max_abs_diff(ema.shadow().at(n), t), 1e-6) << n;
  // Without an `apply` tensor: a plain average.
  const torch::Tensor before = ema.shadow().at("a").clone();
  ema.update(9);
  EXPECT_LT(test::max_abs_diff(ema.shadow().at("a"), before.lerp(p[0].second, 0.1)), 1e-6);
}

TEST(OpCounter, CountsComputingOperationsByPhaseAndViewsApart) {
  const torch::Tensor a = torch::randn({3, 4}, torch::requires_grad());
  OpCounter counter;
  {
    const OpPhaseScope forward(OpPhase::kForward);
    // mul and sum compute; view and unsqueeze only alias.
    torch::Tensor y = (a * 2).view({12}).unsqueeze(0).sum();
    const OpPhaseScope backward(OpPhase::kBackward);
    y.backward();
  }
  const OpCounts c = counter.counts(), v = counter.view_counts();
  EXPECT_EQ(c[static_cast<int>(OpPhase::kForward)], 2);
  EXPECT_GE(v[static_cast<int>(OpPhase::kForward)], 2);
  EXPECT_GT(c[static_cast<int>(OpPhase::kBackward)], 0);
  EXPECT_EQ(c[static_cast<int>(OpPhase::kOptimizer)], 0);
  const auto top = counter.top(OpPhase::kForward, 5);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].second, 1);
  // A reshape that has to copy (of a transposed tensor) computes.
  counter.reset();
  (void)a.detach().transpose(0, 1).reshape({12});
  EXPECT_EQ(counter.counts()[static_cast<int>(OpPhase::kOther)], 1);
  // One counter at a time; nothing counted once it is gone.
  test::expect_error([] { OpCounter second; }, {"one"});
  counter.reset();
  EXPECT_EQ(OpCounter::total(counter.counts()), 0);
}

TEST(OpCounter, BenchCountsTheOpsOfAStepAndWritesThemToJson) {
  test::TempDir dir;
  const std::string json = dir.path("bench.json");
  std::string out;
  ASSERT_EQ(
      test::run_command(std::string(LOSATOK_BINARY) + " --threads 1 bench --config " +
                            test::source_path("configs/sembo_tiny.yaml") +
                            " data.batch_size=2 --steps 1 --warmup 0 --count-ops --json " + json + " 2>&1",
                        &out),
      0)
      << out;
  EXPECT_NE(out.find("ATen ops per step"), std::string::npos) << out;
  std::ifstream in(json);
  const nlohmann::json j = nlohmann::json::parse(in);
  const auto& ops = j.at("ops_per_step");
  int64_t sum = 0;
  for (const auto& [phase, n] : ops.at("by_phase").items()) sum += n.get<int64_t>();
  EXPECT_EQ(sum, ops.at("total").get<int64_t>());
  EXPECT_GT(ops.at("by_phase").at("forward").get<int64_t>(), 0);
  EXPECT_GT(ops.at("by_phase").at("backward").get<int64_t>(), 0);
  // The multi-tensor optimizer, clipping and EMA: a few operations each, whatever the model.
  EXPECT_LE(ops.at("by_phase").at("optimizer").get<int64_t>(), 40);
  EXPECT_LE(ops.at("by_phase").at("clipping").get<int64_t>(), 20);
  EXPECT_GT(j.at("step_s").at("mean").get<double>(), 0.0);
}
