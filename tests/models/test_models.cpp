// Module shapes, names, masks, chunking and chunked decoding of the LoSATok tokenizer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "losatok/io/weights.h"
#include "losatok/models/audio_vae.h"
#include "losatok/models/init.h"
#include "test_util.h"

using namespace losatok;

namespace {

models::AudioVAE tiny_vae() {
  const RootConfig c = test::model_config("tiny");
  models::AudioVAE vae(c.model, c.frontend.dasheng, c.frontend.vocos);
  vae->eval();
  return vae;
}

torch::Tensor noise_wave(int64_t batch, int64_t samples, uint64_t seed = 0) {
  torch::manual_seed(seed);
  return 0.1 * torch::randn({batch, samples});
}

}  // namespace

TEST(Models, NamesAreTheReferenceCheckpointKeys) {
  // README.md, "Models and checkpoints": our parameters + buffers are exactly the reference state dict minus
  // the recomputed front-end / iSTFT buffers.
  const auto ref = io::read_weights(test::fixture("vae_tiny.pth"));
  std::set<std::string> want, got;
  for (const auto& kv : ref.tensors)
    if (!io::is_recomputed_buffer(kv.first)) want.insert(kv.first);
  auto vae = tiny_vae();
  for (const auto& kv : io::module_state(*vae)) got.insert(kv.first);
  EXPECT_EQ(got, want);
  for (const char* key :
       {"semantic_encoder.encoder.patch_embed.proj.weight", "semantic_encoder.encoder.time_pos_embed",
        "semantic_encoder.encoder.init_bn.num_batches_tracked",
        "semantic_encoder.encoder.blocks.1.attn.qkv.weight",
        "semantic_encoder.bottleneck.downsample.2.weight", "semantic_encoder.bottleneck.upsample.0.bias",
        "dasheng_tokenizer.encoder.patch_embed.weight", "dasheng_tokenizer.upsampler.weight",
        "dasheng_tokenizer.decoder.backbone.convnext.1.gamma", "dasheng_tokenizer.decoder.head.out.weight",
        "fc_a.weight", "fc_mu.bias", "fc_logvar.weight"})
    EXPECT_TRUE(got.count(key)) << key;
}

TEST(Models, PaperShapesMatchTheMiDashengCheckpoint) {
  // Shapes only (no allocation of 630 M parameters): the encoder block and embeddings.
  const RootConfig c = test::model_config("paper");
  models::DashengBlock block(c.model.encoder);
  EXPECT_EQ(block->attn->qkv->weight.sizes(), torch::IntArrayRef({3840, 1280}));
  EXPECT_EQ(block->mlp->fc1->weight.sizes(), torch::IntArrayRef({5120, 1280}));
  EXPECT_EQ(models::count_parameters(*block), 19677440);  // 32 of these ~ 630 M
  models::DashengPatchEmbed patch(64, 4, 1280);
  EXPECT_EQ(patch->proj->weight.sizes(), torch::IntArrayRef({1280, 1, 64, 4}));
}

TEST(Models, EncodeShapesAtTheTokenRate) {
  auto vae = tiny_vae();
  torch::NoGradGuard no_grad;
  const int64_t n = 16000 + 123;  // 1.0077 s
  const auto f = vae->encode(noise_wave(2, n));
  const int64_t t = (1 + n / 160) / 4;  // 25 tokens
  EXPECT_EQ(t, 25);
  for (const auto& [name, x] : f.named()) {
    SCOPED_TRACE(name);
    const bool high = name == "semantic_emb" || name == "acoustic_emb" || name == "unified_emb";
    EXPECT_EQ(x.sizes(), torch::IntArrayRef({2, t, high ? 32 : 8}));
    EXPECT_TRUE(torch::isfinite(x).all().item<bool>());
  }
  EXPECT_TRUE(torch::equal(f.z, f.mu));
  EXPECT_FALSE(f.mask.defined());
  EXPECT_TRUE(torch::allclose(f.unified_emb_low, f.acoustic_emb_low + f.semantic_emb_low));
  EXPECT_LE(f.logvar.abs().max().item<double>(), 20.0);

  torch::manual_seed(7);
  const auto sampled = vae->encode(noise_wave(1, n), {}, /*sample=*/true);
  EXPECT_FALSE(torch::allclose(sampled.z, sampled.mu));
}

TEST(Models, PaddingMaskHidesPaddedTokens) {
  auto vae = tiny_vae();
  auto& enc = vae->semantic_encoder->encoder;
  torch::NoGradGuard no_grad;
  const auto lengths = torch::tensor({16000, 9600}, torch::kLong);
  const auto mask = enc->token_mask(lengths, 25);
  EXPECT_EQ(mask.sum(1)[0].item<int64_t>(), 25);
  EXPECT_EQ(mask.sum(1)[1].item<int64_t>(), 15);  // floor(9600 / 640)
  // Whatever the mel holds under masked tokens, valid tokens see the same thing.
  const auto mel = enc->frontend()(noise_wave(2, 16000));
  auto other = mel.clone();
  other.index_put_({1, torch::indexing::Slice(), torch::indexing::Slice(15 * 4, torch::indexing::None)},
                   55.0);
  const auto a = enc->forward_mel(mel, mask), b = enc->forward_mel(other, mask);
  EXPECT_LE(test::max_abs_diff(a.narrow(1, 0, 15), b.narrow(1, 0, 15)), 1e-5);
  EXPECT_GT(test::max_abs_diff(a[1].narrow(0, 15, 10), b[1].narrow(0, 15, 10)), 1e-3);
  // Without the mask the padding leaks into every token.
  EXPECT_GT(test::max_abs_diff(enc->forward_mel(mel)[1].narrow(0, 0, 15),
                               enc->forward_mel(other)[1].narrow(0, 0, 15)),
            1e-4);
}

TEST(Models, ChunksOfTenSecondsAreEncodedIndependently) {
  auto vae = tiny_vae();
  auto& enc = vae->semantic_encoder->encoder;
  torch::NoGradGuard no_grad;
  const auto mel = enc->frontend()(noise_wave(1, 16000 * 11));  // 1101 frames -> 275 tokens
  const auto whole = enc->forward_mel(mel);
  ASSERT_EQ(whole.size(1), 275);
  const auto tail = enc->forward_mel(mel.narrow(-1, 1008, mel.size(-1) - 1008));
  EXPECT_LE(test::max_abs_diff(whole.narrow(1, 252, 23), tail), 1e-5);
  const auto head = enc->forward_mel(mel.narrow(-1, 0, 1008));
  EXPECT_LE(test::max_abs_diff(whole.narrow(1, 0, 252), head), 1e-5);
}

TEST(Models, ShortClipInALongBatchStaysFinite) {
  // The short clip has no valid token in the second chunk: its padding must not become NaN.
  auto vae = tiny_vae();
  torch::NoGradGuard no_grad;
  auto wave = noise_wave(2, 16000 * 11);
  wave[1].narrow(0, 16000, 16000 * 10).zero_();
  const auto f = vae->encode(wave, torch::tensor({16000 * 11, 16000}, torch::kLong));
  EXPECT_TRUE(torch::isfinite(f.semantic_emb).all().item<bool>());
  EXPECT_EQ(f.mask[1].sum().item<int64_t>(), 25);
}

TEST(Models, DecodeLengthAndChunkedDecodeMatchesWhole) {
  auto vae = tiny_vae();
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  const auto z = torch::randn({1, 120, 8});
  const auto whole = vae->decode(z);
  EXPECT_EQ(whole.sizes(), torch::IntArrayRef({1, 120 * 640}));
  const int64_t context = vae->decoder_context_tokens();
  EXPECT_GE(context * 2, 3 * 3 + 4);  // (kernel 7 / 2) x (2 blocks + embed) + iSTFT overlap, at 50 Hz
  for (int64_t chunk : {10, 25, 37}) {
    SCOPED_TRACE(chunk);
    const auto chunked = vae->decode_chunked(z, chunk);
    ASSERT_EQ(chunked.sizes(), whole.sizes());
    EXPECT_LE(test::rel_l2(chunked, whole), 1e-5);
  }
  test::expect_error([&] { vae->decode(torch::zeros({1, 10, 7})); }, {"decode", "8"});
}

TEST(Models, TokenRatesMustAgree) {
  RootConfig c = test::model_config("tiny");
  c.model.decoder.hop_length = 160;  // 160 x 2 != 640
  test::expect_error([&] { models::AudioVAE(c.model, c.frontend.dasheng, c.frontend.vocos); },
                     {"token rate", "decoder 320"});
}

TEST(Models, TruncNormalInitKeepsItsBoundsAndSpread) {
  torch::manual_seed(0);
  auto wide = torch::empty({200000});
  models::trunc_normal_(wide, 0.02);  // bounds at 100 sigma: a plain normal draw
  EXPECT_NEAR(wide.std().item<double>(), 0.02, 5e-4);
  auto narrow = torch::empty({200000});
  models::trunc_normal_(narrow, 1.0, -1.0, 1.0);  // bounds at 1 sigma: inverse-CDF sampling
  EXPECT_LE(narrow.abs().max().item<double>(), 1.0);
  EXPECT_NEAR(narrow.std().item<double>(), 0.5376, 5e-3);  // std of N(0,1) truncated to [-1, 1]
}
