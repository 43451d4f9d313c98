// The DiT's parts: flow matching on hand values, the Euler sampler on a field it must integrate
// exactly, RoPE, masks that make padding irrelevant, CFG, zero-init, checkpointed gradients, text
// tokens.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>

#include "losatok/data/text.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/checkpointing.h"
#include "losatok/models/dit.h"
#include "losatok/models/flow_matching.h"
#include "test_util.h"

using namespace losatok;

namespace {

DiTConfig tiny_dit(bool skips = true) {
  DiTConfig c;
  c.latent_dim = 6;
  c.width = 32;
  c.depth = 4;
  c.heads = 2;
  c.mlp_ratio = 2.0;
  c.time_freq_dim = 16;
  c.uvit_skips = skips;
  return c;
}

TextEncoderConfig tiny_text() {
  TextEncoderConfig t;
  t.width = 16;
  t.depth = 2;
  t.heads = 2;
  return t;
}

// Gives every zero-initialised gate and output layer random values, so tests see the whole path.
void randomize(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.normal_(0.0, 0.2);
}

// A DiT model with the built-in text encoder: TTA, or the infilling TTS.
models::DiTModel text_model(const DiTConfig& c, const TextEncoderConfig& t, bool tts,
                            bool learned_null = false) {
  DiTStageConfig d;
  d.model = c;
  d.text = t;
  d.task = tts ? "tts" : "tta";
  d.flow.uncond = learned_null ? "learned" : "zero";
  return models::DiTModel(d, 0);
}

}  // namespace

TEST(FlowMatching, InterpolationAndTargetOnHandValues) {
  const torch::Tensor z = torch::tensor({1.0f, -2.0f}).view({1, 1, 2});
  const torch::Tensor e = torch::tensor({3.0f, 0.5f}).view({1, 1, 2});
  const torch::Tensor x = models::flow_interpolate(z, e, torch::tensor({0.25f}));
  // (1 - 0.25) z + 0.25 e
  EXPECT_FLOAT_EQ(x[0][0][0].item<float>(), 0.75f * 1.0f + 0.25f * 3.0f);
  EXPECT_FLOAT_EQ(x[0][0][1].item<float>(), 0.75f * -2.0f + 0.25f * 0.5f);
  const torch::Tensor v = models::flow_target(z, e);
  EXPECT_FLOAT_EQ(v[0][0][0].item<float>(), 2.0f);
  EXPECT_FLOAT_EQ(v[0][0][1].item<float>(), 2.5f);
  // sigma = 0 is the data, sigma = 1 the noise.
  EXPECT_TRUE(models::flow_interpolate(z, e, torch::tensor({0.0f})).equal(z));
  EXPECT_TRUE(models::flow_interpolate(z, e, torch::tensor({1.0f})).equal(e));
}

TEST(FlowMatching, SigmasAreLogitNormalOrUniform) {
  torch::manual_seed(1);
  FlowConfig f;
  const torch::Tensor s = models::sample_sigmas(20000, f, torch::TensorOptions());
  EXPECT_GT(s.min().item<double>(), 0.0);
  EXPECT_LT(s.max().item<double>(), 1.0);
  const torch::Tensor logit = torch::log(s / (1 - s));
  EXPECT_NEAR(logit.mean().item<double>(), 0.0, 0.03);
  EXPECT_NEAR(logit.std().item<double>(), 1.0, 0.03);
  f.sigma_sampling = "uniform";
  EXPECT_NEAR(models::sample_sigmas(20000, f, torch::TensorOptions()).mean().item<double>(), 0.5, 0.01);
}

TEST(FlowMatching, ScheduleWithAndWithoutSway) {
  const auto plain = models::sigma_schedule(4, 0.0);
  ASSERT_EQ(plain.size(), 5u);
  for (int i = 0; i <= 4; ++i) EXPECT_NEAR(plain[i], 1.0 - i / 4.0, 1e-12);
  // sway -1: sigma = cos(pi t / 2), more steps near the noise.
  const auto sway = models::sigma_schedule(4, -1.0);
  for (int i = 0; i <= 4; ++i) EXPECT_NEAR(sway[i], std::cos(M_PI / 2 * i / 4.0), 1e-12);
  EXPECT_LT(sway[0] - sway[1], plain[0] - plain[1]);
  EXPECT_DOUBLE_EQ(sway.back(), 0.0);
}

TEST(FlowMatching, EulerIntegratesTheStraightFlowExactly) {
  // The rectified-flow field towards one point z*: v(x, sigma) = (x - z*) / sigma is linear in x,
  // and Euler follows its straight paths exactly on any grid.
  torch::manual_seed(2);
  const torch::Tensor target = torch::randn({2, 5, 3}, torch::kFloat64);
  const torch::Tensor start = torch::randn({2, 5, 3}, torch::kFloat64);
  for (const auto& [steps, sway] : {std::pair<int, double>{1, 0.0}, {7, 0.0}, {25, -1.0}, {3, 0.5}}) {
    const torch::Tensor out =
        models::euler_sample(start, models::sigma_schedule(steps, sway),
                             [&](const torch::Tensor& x, double s) { return (x - target) / s; });
    EXPECT_LT(test::max_abs_diff(out, target), 1e-12) << steps << " steps, sway " << sway;
  }
  // A constant field moves x by exactly -v.
  const torch::Tensor v = torch::randn({2, 5, 3}, torch::kFloat64);
  const torch::Tensor out = models::euler_sample(start, models::sigma_schedule(10, -1.0),
                                                 [&](const torch::Tensor&, double) { return v; });
  EXPECT_LT(test::max_abs_diff(out, start - v), 1e-12);
}

TEST(FlowMatching, GuidanceScaleOneIsTheConditionalModel) {
  torch::manual_seed(3);
  const torch::Tensor c = torch::randn({2, 4, 3}), u = torch::randn({2, 4, 3});
  EXPECT_LT(test::max_abs_diff(models::classifier_free_guidance(c, u, 1.0), c), 1e-6);
  EXPECT_LT(test::max_abs_diff(models::classifier_free_guidance(c, u, 0.0), u), 1e-6);
  EXPECT_LT(test::max_abs_diff(models::classifier_free_guidance(c, u, 3.0), u + 3 * (c - u)), 1e-5);
}

TEST(DiT, RopeRotatesPairsAndScoresDependOnRelativePosition) {
  // Position 0 is unchanged; position 1 of a unit vector in the first pair rotates by 1 radian.
  torch::Tensor x = torch::zeros({1, 1, 2, 4});
  x.index_put_({0, 0, torch::indexing::Slice(), 0}, 1.0);
  const torch::Tensor r = models::apply_rope(x, 10000.0);
  EXPECT_NEAR(r[0][0][0][0].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR(r[0][0][1][0].item<float>(), std::cos(1.0f), 1e-6);
  EXPECT_NEAR(r[0][0][1][2].item<float>(), std::sin(1.0f), 1e-6);
  // q_i . k_j depends only on i - j: the same q and k placed at shifted positions.
  torch::manual_seed(4);
  const torch::Tensor q = torch::randn({8}), k = torch::randn({8});
  const auto score = [&](int64_t i, int64_t j) {
    torch::Tensor qs = torch::zeros({1, 1, 12, 8}), ks = torch::zeros({1, 1, 12, 8});
    qs[0][0][i].copy_(q);
    ks[0][0][j].copy_(k);
    return (models::apply_rope(qs, 100.0)[0][0][i] * models::apply_rope(ks, 100.0)[0][0][j])
        .sum()
        .item<double>();
  };
  EXPECT_NEAR(score(5, 2), score(9, 6), 1e-5);
  EXPECT_NEAR(score(1, 4), score(7, 10), 1e-5);
  EXPECT_GT(std::abs(score(5, 2) - score(5, 3)), 1e-4);  // and it does depend on the offset
}

TEST(DiT, MatchesThePyTorchReference) {
  // tests/reference/make_dit_fixtures.py: dit_ref.py's DiT with random weights everywhere.
  const auto f = io::load_safetensors(test::fixture("dit.safetensors")).tensors;
  DiTConfig c;
  c.latent_dim = 6;
  c.width = 16;
  c.heads = 2;
  c.mlp_ratio = 2.0;
  c.time_freq_dim = 16;
  TextEncoderConfig t;
  t.width = 8;
  t.depth = 2;
  t.heads = 2;
  t.mlp_ratio = 2.0;
  const auto weights = [&](const std::string& prefix) {
    std::map<std::string, torch::Tensor> out;
    for (const auto& [k, v] : f)
      if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
    return out;
  };
  const torch::Tensor x = f.at("in/x"), sigma = f.at("in/sigma"), mask = f.at("in/mask");
  torch::NoGradGuard no_grad;
  {
    c.depth = 4;
    c.uvit_skips = true;
    models::DiTModel m = text_model(c, t, true);
    io::load_weights(*m, weights("tts/"), "dit.safetensors (tts)");
    m->eval();
    const torch::Tensor text = m->text_encoder->forward(f.at("in/tts_tokens"), mask);
    EXPECT_LT(test::max_abs_diff(text, f.at("expect/tts_text")), 1e-5);
    const torch::Tensor v = m->velocity(x, sigma, mask, text, mask, f.at("in/prompt"), text);
    EXPECT_GT(f.at("expect/tts_out").abs().max().item<double>(), 0.1);
    EXPECT_LT(test::max_abs_diff(v, f.at("expect/tts_out")), 1e-5);
  }
  {
    c.depth = 3;
    c.uvit_skips = false;
    c.gating = "adaln_zero";
    c.final_conv = false;
    models::DiTModel m = text_model(c, t, false, true);
    io::load_weights(*m, weights("tta/"), "dit.safetensors (tta)");
    m->eval();
    const torch::Tensor cap_mask = f.at("in/tta_mask");
    const torch::Tensor text = m->text_encoder->forward(f.at("in/tta_tokens"), cap_mask);
    EXPECT_LT(test::max_abs_diff(text, f.at("expect/tta_text")), 1e-5);
    const torch::Tensor v = m->velocity(x, sigma, mask, text, cap_mask);
    EXPECT_LT(test::max_abs_diff(v, f.at("expect/tta_out")), 1e-5);
  }
}

TEST(DiT, ZeroInitialisedAdaLNAndTheTwoGatings) {
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({2, 7, 6}), sigma = torch::rand({2}), cond = torch::randn({2, 3, 16});
  const torch::Tensor mask = torch::ones({2, 7}, torch::kBool), cmask = torch::ones({2, 3}, torch::kBool);
  // adaLN-Zero: every block is the identity and the output is zero at init.
  DiTConfig c = tiny_dit();
  c.gating = "adaln_zero";
  models::DiT zero(c, 16, 0);
  const torch::Tensor v = zero->forward(x, sigma, mask, cond, cmask);
  EXPECT_EQ(v.sizes(), (std::vector<int64_t>{2, 7, 6}));
  EXPECT_EQ(v.abs().max().item<float>(), 0.0f);
  // UniFlow's gates: shift = scale = gate = 0 too, but the branches are open (tanh(1), 1), the
  // cross-attention outputs start at zero, and the output is not zero.
  models::DiT uni(tiny_dit(), 16, 0);
  for (const auto& m : *uni->blocks) {
    const auto* b = m->as<models::DiTBlockImpl>();
    EXPECT_EQ(b->adaln->weight.abs().max().item<float>(), 0.0f);
    EXPECT_EQ(b->cross_attn->proj->weight.abs().max().item<float>(), 0.0f);
  }
  EXPECT_GT(uni->forward(x, sigma, mask, cond, cmask).abs().max().item<float>(), 1e-4f);
}

TEST(DiT, PaddingNeverChangesTheValidFrames) {
  torch::manual_seed(6);
  for (bool skips : {true, false}) {
    models::DiT dit(tiny_dit(skips), 16, 0);
    randomize(*dit);
    dit->eval();
    const torch::Tensor x = torch::randn({1, 5, 6}), sigma = torch::tensor({0.4f});
    const torch::Tensor cond = torch::randn({1, 3, 16});
    const torch::Tensor ref =
        dit->forward(x, sigma, torch::ones({1, 5}, torch::kBool), cond, torch::ones({1, 3}, torch::kBool));
    EXPECT_GT(ref.abs().max().item<float>(), 1e-3);
    // 4 more latent frames and 2 more condition tokens of garbage, masked out.
    const torch::Tensor xp = torch::cat({x, 100 * torch::randn({1, 4, 6})}, 1);
    const torch::Tensor cp = torch::cat({cond, 100 * torch::randn({1, 2, 16})}, 1);
    torch::Tensor mask = torch::zeros({1, 9}, torch::kBool), cmask = torch::zeros({1, 5}, torch::kBool);
    mask.narrow(1, 0, 5).fill_(true);
    cmask.narrow(1, 0, 3).fill_(true);
    const torch::Tensor out = dit->forward(xp, sigma, mask, cp, cmask);
    EXPECT_LT(test::max_abs_diff(out.narrow(1, 0, 5), ref), 1e-5) << "skips " << skips;
    EXPECT_EQ(out.narrow(1, 5, 4).abs().max().item<float>(), 0.0f);
    // The condition does matter.
    const torch::Tensor other = dit->forward(x, sigma, torch::ones({1, 5}, torch::kBool),
                                             torch::randn({1, 3, 16}), torch::ones({1, 3}, torch::kBool));
    EXPECT_GT(test::max_abs_diff(other, ref), 1e-4);
  }
}

TEST(DiT, BatchRowsAreIndependent) {
  torch::manual_seed(7);
  models::DiT dit(tiny_dit(), 16, 0);
  randomize(*dit);
  const torch::Tensor x = torch::randn({3, 6, 6}), s = torch::rand({3}), c = torch::randn({3, 4, 16});
  const torch::Tensor m = torch::ones({3, 6}, torch::kBool), cm = torch::ones({3, 4}, torch::kBool);
  const torch::Tensor all = dit->forward(x, s, m, c, cm);
  const torch::Tensor one = dit->forward(x.narrow(0, 1, 1), s.narrow(0, 1, 1), m.narrow(0, 1, 1),
                                         c.narrow(0, 1, 1), cm.narrow(0, 1, 1));
  EXPECT_LT(test::max_abs_diff(all.narrow(0, 1, 1), one), 1e-5);
}

TEST(DiT, TextEncoderIgnoresPadding) {
  torch::manual_seed(8);
  models::TextEncoder enc(tiny_text());
  enc->eval();
  const torch::Tensor tokens = torch::tensor({5L, 70L, 80L}).view({1, 3});
  const torch::Tensor ref = enc->forward(tokens, torch::ones({1, 3}, torch::kBool));
  const torch::Tensor padded = torch::tensor({5L, 70L, 80L, 0L, 0L}).view({1, 5});
  torch::Tensor mask = torch::zeros({1, 5}, torch::kBool);
  mask.narrow(1, 0, 3).fill_(true);
  const torch::Tensor out = enc->forward(padded, mask);
  EXPECT_LT(test::max_abs_diff(out.narrow(1, 0, 3), ref), 1e-5);
  EXPECT_EQ(out.narrow(1, 3, 2).abs().max().item<float>(), 0.0f);
}

TEST(DiT, DroppedConditionIsZerosOrTheLearnedRow) {
  torch::manual_seed(9);
  const torch::Tensor cond = torch::randn({3, 4, 16}), drop = torch::tensor({false, true, false});
  models::DiTModel zero = text_model(tiny_dit(), tiny_text(), false);
  EXPECT_FALSE(zero->null_cond.defined());
  torch::Tensor out = zero->drop_condition(cond, drop);
  EXPECT_TRUE(out[0].equal(cond[0]));
  EXPECT_TRUE(out[2].equal(cond[2]));
  EXPECT_EQ(out[1].abs().max().item<float>(), 0.0f);
  models::DiTModel m = text_model(tiny_dit(), tiny_text(), false, true);
  out = m->drop_condition(cond, drop);
  EXPECT_TRUE(out[0].equal(cond[0]));
  for (int64_t l = 0; l < 4; ++l) EXPECT_TRUE(out[1][l].equal(m->null_cond[0]));
  // Names as checkpoints carry them. depth 4 with U-ViT skips: in-blocks 0, 1, the mid block 2,
  // out-blocks 3, 4.
  std::set<std::string> names;
  for (const auto& p : m->named_parameters()) names.insert(p.key());
  for (const auto& p : m->named_buffers()) names.insert(p.key());
  for (const char* n :
       {"null_cond", "latent_mean", "latent_std", "frames_per_token", "dit.input_proj.weight",
        "dit.blocks.0.attn.qkv.weight", "dit.blocks.0.attn.q_norm.weight",
        "dit.blocks.0.cross_attn.kv.weight", "dit.blocks.0.norm_context.weight",
        "dit.blocks.0.mlp.proj.weight", "dit.blocks.0.adaln.weight", "dit.blocks.3.skip_linear.weight",
        "dit.blocks.4.skip_linear.weight", "dit.final_proj.weight", "dit.final_conv.weight",
        "dit.time_embed.0.weight", "dit.context_embed.2.weight", "text_encoder.embed.weight",
        "text_encoder.blocks.1.attn.qkv.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  for (const char* n : {"dit.blocks.0.skip_linear.weight", "dit.blocks.2.skip_linear.weight",
                        "dit.blocks.5.adaln.weight", "dit.blocks.0.ta_proj.weight"})
    EXPECT_FALSE(names.count(n)) << n;
  // TTS: the prompt and aligned text enter every block as time-aligned context.
  models::DiTModel tts = text_model(tiny_dit(), tiny_text(), true);
  EXPECT_EQ(tts->dit->blocks[2]->as<models::DiTBlockImpl>()->ta_proj->weight.sizes(),
            (std::vector<int64_t>{32, 6 + 16}));
}

TEST(DiT, GradientCheckpointingKeepsGradients) {
  torch::manual_seed(10);
  DiTConfig c = tiny_dit();
  models::DiTModel plain = text_model(c, tiny_text(), true);
  randomize(*plain);
  c.grad_checkpointing = true;
  models::DiTModel ckpt = text_model(c, tiny_text(), true);
  {
    torch::NoGradGuard no_grad;
    const auto src = plain->named_parameters();
    for (auto& p : ckpt->named_parameters()) p.value().copy_(src[p.key()]);
  }
  const torch::Tensor x = torch::randn({2, 5, 6}), s = torch::rand({2}), prompt = torch::randn({2, 5, 6});
  const torch::Tensor tokens = torch::randint(2, 100, {2, 5}).to(torch::kLong);
  const torch::Tensor mask = torch::ones({2, 5}, torch::kBool);
  std::vector<torch::Tensor> grads[2];
  int i = 0;
  for (models::DiTModel* m : {&plain, &ckpt}) {
    (*m)->train();
    const torch::Tensor text = (*m)->text_encoder->forward(tokens, mask);
    const torch::Tensor v = (*m)->velocity(x, s, mask, text, mask, prompt, text);
    v.pow(2).sum().backward();
    for (auto& p : (*m)->parameters())
      grads[i].push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
    ++i;
  }
  ASSERT_EQ(grads[0].size(), grads[1].size());
  int compared = 0;
  for (std::size_t k = 0; k < grads[0].size(); ++k) {
    ASSERT_EQ(grads[0][k].defined(), grads[1][k].defined()) << k;
    if (!grads[0][k].defined()) continue;
    EXPECT_LT(test::max_abs_diff(grads[0][k], grads[1][k]),
              1e-4 * (1 + grads[0][k].abs().max().item<double>()))
        << k;
    ++compared;
  }
  EXPECT_GT(compared, 50);  // text encoder and time MLP included: they reach the blocks as inputs
}

TEST(TextTokens, BytesFillerAndLimit) {
  EXPECT_EQ(data::byte_tokens("Ab"), (std::vector<int64_t>{2 + 'A', 2 + 'b'}));
  TextEncoderConfig c;
  c.max_tokens = 3;
  data::TextTokenizer t(c);
  EXPECT_EQ(t.encode("hello").size(), 3u);
  EXPECT_EQ(t.encode(""), (std::vector<int64_t>{kTextFiller}));
  // UTF-8 is bytes: one token per byte, all inside the vocabulary.
  for (int64_t id : data::byte_tokens("\xc3\xa9\xe2\x80\x94")) EXPECT_LT(id, kTextVocab);
}

TEST(TextTokens, PhonemesFromEspeak) {
  if (!data::espeak_available()) GTEST_SKIP() << "espeak-ng is not installed";
  data::Phonemizer p("en-us");
  const std::string ipa = p("hello world");
  EXPECT_NE(ipa.find("w"), std::string::npos) << ipa;
  EXPECT_NE(ipa, "hello world");
  EXPECT_EQ(p("hello world"), ipa);  // memoised, and deterministic
  TextEncoderConfig c;
  c.tokens = "phonemes";
  data::TextTokenizer t(c);
  EXPECT_EQ(t.encode("hello world"), data::byte_tokens(ipa));
  // Without the program: an error that says what to install, or to use characters.
  const std::string path = std::getenv("PATH");
  setenv("PATH", "/nonexistent", 1);
  test::expect_error([] { data::Phonemizer("en-us"); }, {"espeak-ng", "dit.text.tokens=chars"});
  setenv("PATH", path.c_str(), 1);
}
