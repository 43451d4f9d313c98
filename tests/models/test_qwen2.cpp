// The Qwen2 decoder: logits equal a PyTorch Qwen2 written from the published architecture
// (tests/reference/qwen2_ref.py) for a tiny bf16 Hugging Face folder and for Qwen2.5-0.5B's
// widths (2 layers, formula weights), a cache equals no cache, greedy generation with the
// repetition penalty gives the reference's ids, shards load the same model, and broken folders
// are one-line errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "fixture_data.h"
#include "losatok/core/error.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/qwen2.h"
#include "test_util.h"

using namespace losatok;
namespace fs = std::filesystem;

namespace {

const io::SafetensorsData& expected() {
  return test::fixture_tensors("qwen2_expected.safetensors");
}

const torch::Tensor& want(const std::string& name) {
  return expected().tensors.at(name);
}

models::Qwen2ForCausalLM& tiny() {
  static models::Qwen2ForCausalLM m = models::load_qwen2(test::fixture("qwen2_tiny"), torch::kCPU);
  return m;
}

std::vector<int64_t> ids_of(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// Copies the tiny folder's config / tokenizer files into `dir` (not the weights).
void copy_config(const test::TempDir& dir) {
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    fs::copy_file(test::fixture(std::string("qwen2_tiny/") + f), dir.path(f));
}

}  // namespace

TEST(Qwen2, ConfigReadsHuggingFaceFields) {
  const auto c = models::Qwen2Config::from_json_file(test::fixture("qwen2_tiny/config.json"));
  EXPECT_EQ(c.vocab_size, 416);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim(), 16);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_id, 406);
  EXPECT_EQ(models::Qwen2Config().head_dim(), 64);  // the 0.5B defaults
}

TEST(Qwen2, PaddedBatchLogitsEqualTheReference) {
  auto& m = tiny();
  EXPECT_FALSE(m->lm_head);                                                  // tied
  EXPECT_EQ(m->model->embed_tokens->weight.scalar_type(), torch::kFloat32);  // bf16 file, cast
  EXPECT_FALSE(m->model->embed_tokens->weight.requires_grad());
  const torch::Tensor logits = m->forward(m->embed(want("tiny/ids")), want("tiny/mask"));
  ASSERT_EQ(logits.sizes(), want("tiny/logits").sizes());
  const double err = test::max_abs_diff(logits, want("tiny/logits"));
  std::cout << "tiny padded batch: max |logit - reference| = " << err << " (|logit| up to "
            << want("tiny/logits").abs().max().item<float>() << ")\n";
  EXPECT_LT(err, 1e-4);
}

TEST(Qwen2, CacheInTwoStepsEqualsTheReferenceAndNoCache) {
  auto& m = tiny();
  const torch::Tensor mask = want("cache/mask");  // row 1 has a masked key in the middle
  models::Qwen2Cache cache;
  const torch::Tensor l1 = m->forward(m->embed(want("cache/ids1")), mask.narrow(1, 0, 6), {}, &cache);
  EXPECT_EQ(cache.length(), 6);
  const torch::Tensor l2 = m->forward(m->embed(want("cache/ids2")), mask, {}, &cache);
  EXPECT_EQ(cache.length(), 9);
  ASSERT_EQ(cache.k.size(), 2u);
  EXPECT_EQ(cache.k[0].sizes(), (std::vector<int64_t>{2, 2, 9, 16}));
  const double err = test::max_abs_diff(l2, want("cache/logits2"));
  std::cout << "tiny cached second step: max |logit - reference| = " << err << "\n";
  EXPECT_LT(err, 1e-4);
  const torch::Tensor ids = torch::cat({want("cache/ids1"), want("cache/ids2")}, 1);
  const torch::Tensor full = m->forward(m->embed(ids), mask);
  EXPECT_LT(test::max_abs_diff(torch::cat({l1, l2}, 1), full), 1e-5);
  // Without a mask: one token a step equals the causal pass.
  models::Qwen2Cache c2;
  std::vector<torch::Tensor> steps;
  for (int64_t t = 0; t < ids.size(1); ++t)
    steps.push_back(m->forward(m->embed(ids.narrow(1, t, 1)), {}, {}, &c2));
  EXPECT_LT(test::max_abs_diff(torch::cat(steps, 1), m->forward(m->embed(ids))), 1e-5);
}

TEST(Qwen2, GreedyGenerationWithRepetitionPenaltyEqualsTheReference) {
  auto& m = tiny();
  const torch::Tensor embeds = want("gen/embeds"), mask = want("gen/mask");
  const int64_t eot = 406, stop = std::stoll(expected().metadata.at("gen_stop_eos"));
  const auto penalized = models::qwen2_generate_greedy(*m, embeds, mask, 12, eot, eot, 1.1);
  const auto plain = models::qwen2_generate_greedy(*m, embeds, mask, 12, eot, eot, 1.0);
  const auto stopped = models::qwen2_generate_greedy(*m, embeds, mask, 12, stop, eot, 1.1);
  ASSERT_EQ(penalized.size(), 2u);
  for (int r = 0; r < 2; ++r) {
    const std::string k = std::to_string(r);
    EXPECT_EQ(penalized[r], ids_of(want("gen/ids" + k))) << "row " << r;
    EXPECT_EQ(plain[r], ids_of(want("gen/plain_ids" + k))) << "row " << r;
    EXPECT_EQ(stopped[r], ids_of(want("gen/stop_ids" + k))) << "row " << r;
  }
  EXPECT_NE(penalized, plain);
  EXPECT_LT(stopped[0].size(), stopped[1].size());  // row 0 met its eos, row 1 ran to 12
  EXPECT_EQ(stopped[1].size(), 12u);
  EXPECT_TRUE(models::qwen2_generate_greedy(*m, embeds, mask, 0, eot, eot, 1.1)[0].empty());
}

TEST(Qwen2, HalfBillionShapedConfigEqualsTheReference) {
  models::Qwen2Config c;  // Qwen2.5-0.5B's widths, 2 layers, vocab 512
  c.num_hidden_layers = 2;
  c.vocab_size = 512;
  models::Qwen2ForCausalLM m(c);
  // qwen2_ref.formula_weights: the k-th tensor in this order, flat index i,
  // s = sin(0.7 i + 1.3 k + (i^2 mod 97)) in float64; 0.02 s, RMSNorm weights 1 + 0.1 s.
  std::vector<std::string> names{"model.embed_tokens.weight"};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* n :
         {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
          "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
          "self_attn.v_proj.bias", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
          "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"})
      names.push_back(p + n);
  }
  names.push_back("model.norm.weight");
  auto params = m->named_parameters();
  ASSERT_EQ(params.size(), names.size());
  {
    torch::NoGradGuard no_grad;
    for (std::size_t k = 0; k < names.size(); ++k) {
      torch::Tensor& p = params[names[k]];
      const torch::Tensor i = torch::arange(p.numel(), torch::kLong);
      const torch::Tensor s = torch::sin(i.to(torch::kDouble) * 0.7 + 1.3 * static_cast<double>(k) +
                                         torch::remainder(i * i, 97).to(torch::kDouble));
      const bool norm =
          names[k].size() > 11 && names[k].compare(names[k].size() - 11, 11, "norm.weight") == 0;
      p.copy_((norm ? s * 0.1 + 1.0 : s * 0.02).to(torch::kFloat32).view(p.sizes()));
    }
  }
  EXPECT_EQ(m->model->layers[0]->as<models::Qwen2DecoderLayerImpl>()->self_attn->k_proj->weight.size(0), 128);
  const torch::Tensor logits = m->forward(m->embed(want("big/ids")), want("big/mask"));
  const double err = test::max_abs_diff(logits, want("big/logits"));
  std::cout << "0.5B-shaped: max |logit - reference| = " << err << " (|logit| up to "
            << want("big/logits").abs().max().item<float>() << ")\n";
  EXPECT_LT(err, 1e-4);
}

TEST(Qwen2, ShardedFolderLoadsTheSameModel) {
  test::TempDir dir;
  copy_config(dir);
  const io::TensorMap all = io::read_weights(test::fixture("qwen2_tiny/model.safetensors")).tensors;
  io::TensorMap first, second;
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (const auto& [name, t] : all) {
    const bool early = name.find("layers.1.") == std::string::npos && name != "model.norm.weight";
    (early ? first : second)[name] = t;
    index["weight_map"][name] =
        early ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  io::save_safetensors(dir.path("model-00001-of-00002.safetensors"), first);
  io::save_safetensors(dir.path("model-00002-of-00002.safetensors"), second);
  test::write_text(dir.path("model.safetensors.index.json"), index.dump());
  auto sharded = models::load_qwen2(dir.dir().string(), torch::kCPU);
  const io::TensorMap a = io::module_state(*sharded), b = io::module_state(*tiny());
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : b) EXPECT_TRUE(torch::equal(a.at(name), t)) << name;
  // A single weights file beside a config.json, and bf16 on request.
  auto bf16 =
      models::load_qwen2(test::fixture("qwen2_tiny/model.safetensors"), torch::kCPU, torch::kBFloat16);
  EXPECT_EQ(bf16->model->norm->weight.scalar_type(), torch::kBFloat16);
  const torch::Tensor ids = want("tiny/ids");
  const torch::Tensor l16 = bf16->forward(bf16->embed(ids), want("tiny/mask")).to(torch::kFloat32);
  EXPECT_LT(test::rel_l2(l16, want("tiny/logits")), 0.05);
}

TEST(Qwen2, LeftPaddingAndGradients) {
  auto& m = tiny();
  const torch::Tensor ids = want("tiny/ids").narrow(0, 0, 1).narrow(1, 0, 5);  // (1, 5)
  const torch::Tensor alone = m->forward(m->embed(ids));
  // Three pad positions first: they see no key (every key then), the real ones see only
  // themselves, at positions from the mask as generate computes them.
  const torch::Tensor padded = torch::cat({torch::zeros({1, 3}, torch::kLong), ids}, 1);
  const torch::Tensor mask =
      torch::cat({torch::zeros({1, 3}, torch::kLong), torch::ones({1, 5}, torch::kLong)}, 1);
  const torch::Tensor positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1);
  const torch::Tensor out = m->forward(m->embed(padded), mask, positions);
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  EXPECT_LT(test::max_abs_diff(out.narrow(1, 3, 5), alone), 1e-5);
  // X-ARES trains an adapter through the frozen model: gradients reach inputs_embeds.
  const torch::Tensor embeds = m->embed(ids).detach().requires_grad_(true);
  m->forward(embeds).logsumexp(-1).sum().backward();
  ASSERT_TRUE(embeds.grad().defined());
  EXPECT_TRUE(torch::isfinite(embeds.grad()).all().item<bool>());
  EXPECT_GT(embeds.grad().abs().sum().item<float>(), 0.0f);
}

TEST(Qwen2, BrokenFoldersAndInputsAreOneLineErrors) {
  test::TempDir dir;
  copy_config(dir);
  const io::TensorMap all = io::read_weights(test::fixture("qwen2_tiny/model.safetensors")).tensors;
  // A missing weight.
  io::TensorMap missing = all;
  missing.erase("model.layers.1.mlp.up_proj.weight");
  io::save_safetensors(dir.path("model.safetensors"), missing);
  test::expect_error([&] { models::load_qwen2(dir.dir().string(), torch::kCPU); },
                     {dir.path("model.safetensors"), "model.layers.1.mlp.up_proj.weight", "missing"});
  // An extra one, and a mis-shaped one.
  io::TensorMap extra = all;
  extra["model.layers.2.mlp.up_proj.weight"] = torch::zeros({128, 64});
  extra["model.norm.weight"] = torch::ones({65});
  io::save_safetensors(dir.path("model.safetensors"), extra);
  test::expect_error(
      [&] { models::load_qwen2(dir.dir().string(), torch::kCPU); },
      {dir.path("model.safetensors"), "model.layers.2.mlp.up_proj.weight", "model.norm.weight"});
  // A truncated file.
  const std::string bytes = test::read_bytes(test::fixture("qwen2_tiny/model.safetensors"));
  test::write_bytes(dir.path("model.safetensors"), bytes.substr(0, bytes.size() / 2));
  test::expect_error([&] { models::load_qwen2(dir.dir().string(), torch::kCPU); },
                     {dir.path("model.safetensors")});
  // A config without a required field, with a wrong type, of another model.
  nlohmann::json config = nlohmann::json::parse(test::read_bytes(dir.path("config.json")));
  nlohmann::json broken = config;
  broken.erase("hidden_size");
  test::write_text(dir.path("config.json"), broken.dump());
  test::expect_error([&] { models::load_qwen2(dir.dir().string(), torch::kCPU); },
                     {dir.path("config.json"), "hidden_size"});
  broken = config;
  broken["num_key_value_heads"] = "two";
  test::write_text(dir.path("config.json"), broken.dump());
  test::expect_error([&] { models::Qwen2Config::from_json_file(dir.path("config.json")); },
                     {dir.path("config.json"), "num_key_value_heads", "integer"});
  broken = config;
  broken["num_key_value_heads"] = 3;
  test::write_text(dir.path("config.json"), broken.dump());
  test::expect_error([&] { models::Qwen2Config::from_json_file(dir.path("config.json")); },
                     {dir.path("config.json"), "num_key_value_heads"});
  broken = config;
  broken["model_type"] = "qwen3";
  test::write_text(dir.path("config.json"), broken.dump());
  test::expect_error([&] { models::Qwen2Config::from_json_file(dir.path("config.json")); }, {"qwen3"});
  fs::remove(dir.path("config.json"));
  test::expect_error([&] { models::load_qwen2(dir.dir().string(), torch::kCPU); }, {"config.json"});
  // Inputs.
  auto& m = tiny();
  test::expect_error([&] { m->embed(torch::tensor({{1, 416}})); }, {"416", "vocabulary"});
  test::expect_error([&] { m->forward(torch::zeros({1, 3, 32})); }, {"inputs_embeds", "(1, 3, 32)"});
  test::expect_error(
      [&] {
        m->forward(torch::zeros({1, 3, 64}), torch::ones({1, 4}, torch::kLong));
      },
      {"attention_mask", "(1, 4)"});
}
