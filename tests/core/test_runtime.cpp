// Start-up runtime: BLAS detection and thread control; the compat shims.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "losatok/core/compat.h"
#include "losatok/core/runtime.h"
#include "test_util.h"

using namespace losatok;

TEST(Runtime, DetectsTheBlasInUse) {
  const BlasInfo info = detect_blas();
  EXPECT_FALSE(info.name.empty());
  // scripts/setup.sh installs OpenBLAS; a reference BLAS here means the set-up is broken.
  EXPECT_FALSE(info.reference) << "reference BLAS in use: " << info.library;
  if (info.name == "OpenBLAS") {
    ASSERT_TRUE(set_blas_threads(1));
    EXPECT_EQ(detect_blas().threads, 1);
  }
}

TEST(Runtime, InitAppliesThreadCounts) {
  RuntimeConfig cfg;
  cfg.threads = 1;
  const RuntimeInfo info = init_runtime(cfg);
  EXPECT_EQ(info.threads, 1);
  EXPECT_EQ(torch::get_num_threads(), 1);
  EXPECT_NE(info.summary().find("LibTorch"), std::string::npos);
}

TEST(Runtime, CudaRequestWithoutCudaIsAClearError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "CUDA present";
  RuntimeConfig cfg;
  cfg.device = "cuda";
  test::expect_error([&] { init_runtime(cfg); }, {"'cuda'", "CUDA"});
}

TEST(Compat, SdpaMatchesExplicitAttentionWithMask) {
  torch::manual_seed(0);
  auto q = torch::randn({2, 3, 5, 8}), k = torch::randn({2, 3, 7, 8}), v = torch::randn({2, 3, 7, 8});
  auto mask = torch::ones({2, 1, 1, 7}, torch::kBool);
  mask.index_put_({1, 0, 0, torch::indexing::Slice(4)}, false);  // padding on the second clip
  auto got = compat::scaled_dot_product_attention(q, k, v, mask);
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(8.0);
  scores = scores.masked_fill(mask.logical_not(), -1e30);
  auto want = torch::matmul(torch::softmax(scores, -1), v);
  EXPECT_LT(test::max_abs_diff(got, want), 1e-5);
  auto causal = compat::scaled_dot_product_attention(q, q, q, {}, 0.0, true);
  // The first query sees only the first key: its output is the first value row.
  EXPECT_LT(test::max_abs_diff(causal.select(2, 0), q.select(2, 0)), 1e-5);
}

TEST(Compat, AutocastGuardDisabledIsANoOp) {
  compat::AutocastGuard guard(false, torch::kBFloat16);
  auto y = torch::matmul(torch::ones({2, 2}), torch::ones({2, 2}));
  EXPECT_EQ(y.scalar_type(), torch::kFloat32);
}
