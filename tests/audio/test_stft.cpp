// STFT round trips and Vocos' same-padding iSTFT against the Python reference.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "losatok/audio/stft.h"
#include "losatok/core/error.h"
#include "losatok/io/safetensors.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::audio;

TEST(Stft, CenteredRoundTrip) {
  torch::manual_seed(0);
  auto x = torch::randn({2, 16000});
  for (auto [n_fft, hop] : {std::pair<int64_t, int64_t>{512, 160}, {1024, 256}, {1280, 320}}) {
    auto w = hann_window(n_fft);
    auto y = istft(stft(x, n_fft, hop, n_fft, w), n_fft, hop, n_fft, w, x.size(1));
    EXPECT_LT(test::max_abs_diff(y, x), 1e-4) << n_fft;
  }
}

TEST(Stft, SamePaddingRoundTripGivesHopSamplesPerFrame) {
  torch::manual_seed(1);
  const int64_t n_fft = 1280, hop = 320, frames = 50;
  auto x = torch::randn({frames * hop});
  auto w = hann_window(n_fft);
  auto spec = stft_same(x, n_fft, hop, n_fft, w);
  EXPECT_EQ(spec.size(-1), frames);
  auto y = istft_same(spec, n_fft, hop, n_fft, w);
  ASSERT_EQ(y.size(0), x.size(0));
  EXPECT_LT(test::max_abs_diff(y, x), 1e-4);
}

TEST(Stft, SamePaddingMatchesVocosReference) {
  const auto f = io::load_safetensors(test::fixture("istft_same.safetensors"));
  const int64_t n_fft = std::stoll(f.metadata.at("n_fft")), hop = std::stoll(f.metadata.at("hop"));
  auto spec = torch::complex(f.tensors.at("spec_real"), f.tensors.at("spec_imag"));
  auto y = istft_same(spec, n_fft, hop, n_fft, hann_window(n_fft));
  const auto& want = f.tensors.at("y");
  ASSERT_EQ(y.sizes(), want.sizes());
  EXPECT_LT(test::rel_l2(y, want), 1e-6);
  EXPECT_LT(test::max_abs_diff(y, want), 1e-4 * want.abs().max().item<double>());
}

TEST(Stft, SamePaddingRejectsAHopLargerThanTheWindowCanCover) {
  auto w = hann_window(64);
  auto spec = torch::randn({33, 10}, torch::kComplexFloat);
  EXPECT_THROW(istft_same(spec, 64, 96, 64, w), Error);  // hop > window
  EXPECT_THROW(istft_same(spec, 64, 64, 64, w), Error);  // no overlap: the Hann envelope has zeros
}
