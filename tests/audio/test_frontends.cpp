// The Dasheng and Vocos log-mel front ends against torchaudio 0.13 on real recordings.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "losatok/audio/mel.h"
#include "losatok/core/error.h"
#include "losatok/io/safetensors.h"
#include "test_util.h"

using namespace losatok;
using namespace losatok::audio;

class FrontEndParity : public ::testing::TestWithParam<std::string> {};

TEST_P(FrontEndParity, MatchesTorchaudio) {
  const auto f = io::load_safetensors(test::fixture("frontend_" + GetParam() + ".safetensors"));
  const auto& wave = f.tensors.at("wave");
  for (const std::string name : {"dasheng", "vocos"}) {
    SCOPED_TRACE(name);
    const LogMel frontend(name == "dasheng" ? MelConfig::dasheng() : MelConfig::vocos());
    const auto got = frontend(wave);
    const auto& want = f.tensors.at(name);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_EQ(got.size(1), frontend.config().frames(wave.size(0)));
    const double max_abs = test::max_abs_diff(got, want), rel = test::rel_l2(got, want);
    EXPECT_LE(max_abs, 1e-3) << "max abs diff";
    EXPECT_LE(rel, 1e-5) << "relative L2";
    RecordProperty(name + "_max_abs", ::testing::PrintToString(max_abs));
    RecordProperty(name + "_rel_l2", ::testing::PrintToString(rel));
  }
}

INSTANTIATE_TEST_SUITE_P(RealAudio, FrontEndParity, ::testing::Values("speech", "event"));

TEST(FrontEnd, BatchGivesPerClipResults) {
  // The dB floor (max - 120 dB) is per clip: a loud clip beside a quiet one changes nothing.
  const auto speech = io::load_safetensors(test::fixture("frontend_speech.safetensors")).tensors.at("wave");
  const int64_t n = 16000;
  auto quiet = speech.narrow(0, 0, n) * 1e-4;
  auto loud = speech.narrow(0, 4000, n);
  const LogMel frontend(MelConfig::dasheng());
  auto batch = frontend(torch::stack({quiet, loud}));
  EXPECT_LT(test::max_abs_diff(batch[0], frontend(quiet)), 1e-4);
  EXPECT_LT(test::max_abs_diff(batch[1], frontend(loud)), 1e-4);
}

TEST(FrontEnd, DashengHasA120dBRange) {
  const auto wave = io::load_safetensors(test::fixture("frontend_event.safetensors")).tensors.at("wave");
  auto db = LogMel(MelConfig::dasheng())(wave);
  EXPECT_NEAR((db.max() - db.min()).item<double>(), 120.0, 1e-3);
}

TEST(FrontEnd, RejectsBadConfigAndInput) {
  MelConfig bad = MelConfig::vocos();
  bad.win_length = 4096;
  EXPECT_THROW(LogMel{bad}, Error);
  const LogMel frontend(MelConfig::dasheng());
  EXPECT_THROW(frontend(torch::zeros({1, 2, 3})), Error);
  EXPECT_THROW(frontend(torch::zeros({100})), Error);  // too short to reflect-pad
}
