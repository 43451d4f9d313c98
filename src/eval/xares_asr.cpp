// X-ARES' ASR probe: SwiGLU adapter into a frozen Qwen2, teacher forcing, greedy decoding.
#include "losatok/eval/xares_asr.h"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>

#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/data/hf_tokenizer.h"
#include "losatok/eval/xares_protocol.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/weights.h"
#include "losatok/models/qwen2.h"

namespace losatok::eval {

AsrAdapterImpl::AsrAdapterImpl(int64_t dim, int64_t intermediate, int64_t embed)
    : fc_1(register_module("fc_1", torch::nn::Linear(dim, intermediate))),
      fc_2(register_module("fc_2", torch::nn::Linear(dim, intermediate))),
      proj(register_module("proj", torch::nn::Linear(intermediate, embed))) {}

torch::Tensor AsrAdapterImpl::forward(const torch::Tensor& x) {
  return proj->forward(torch::silu(fc_1->forward(x)) * fc_2->forward(x));
}

namespace {

// (B, T) 1/0 of the first lengths[b] positions.
torch::Tensor length_mask(const torch::Tensor& lengths, int64_t t) {
  return torch::arange(t, lengths.options()).unsqueeze(0).lt(lengths.unsqueeze(1)).to(torch::kInt64);
}

// The first `n` code points of UTF-8 `s` (Python's s[:n] on the decoded string).
std::string first_code_points(const std::string& s, std::size_t n) {
  std::size_t i = 0, seen = 0;
  while (i < s.size() && seen < n) {
    ++i;
    while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
    ++seen;
  }
  return s.substr(0, i);
}

std::size_t code_points(const std::string& s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char ch) { return (static_cast<unsigned char>(ch) & 0xC0) != 0x80; }));
}

// The adapter's output in the LLM's dtype, and the audio key mask.
std::pair<torch::Tensor, torch::Tensor> audio_prefix(AsrAdapterImpl& adapter,
                                                     models::Qwen2ForCausalLMImpl& llm,
                                                     const torch::Tensor& audio,
                                                     const torch::Tensor& lengths) {
  const torch::Tensor a = adapter.forward(audio).to(llm.parameters().front().scalar_type());
  return {a, length_mask(lengths.to(audio.device()), audio.size(1))};
}

}  // namespace

AsrStep asr_forward(AsrAdapterImpl& adapter, models::Qwen2ForCausalLMImpl& llm, const data::HfTokenizer& tok,
                    const torch::Tensor& audio, const torch::Tensor& lengths,
                    const std::vector<std::string>& text, const AsrConfig& c, bool decode) {
  const int64_t b = audio.size(0), t = audio.size(1);
  if (static_cast<int64_t>(text.size()) != b)
    throw Error("asr: " + std::to_string(b) + " clips but " + std::to_string(text.size()) + " transcripts");
  const int64_t pad = tok.pad_id() >= 0 ? tok.pad_id() : tok.eos_id();
  const int64_t eos = tok.eos_id() >= 0 ? tok.eos_id() : llm.config().eos_token_id;
  const std::string eos_text = tok.decode({eos}, /*skip_special=*/false);
  // X-ARES: "<sep>" + transcript + eos, right-padded with the pad token (which for Qwen is the
  // end-of-text token: the padding mask drops it, then the last real token is set back to eos).
  std::vector<std::vector<int64_t>> ids;
  int64_t width = 0;
  for (const auto& s : text) {
    ids.push_back(tok.encode(c.separator + s + eos_text));
    width = std::max<int64_t>(width, static_cast<int64_t>(ids.back().size()));
  }
  torch::Tensor tokens = torch::full({b, width}, pad, torch::kInt64);
  torch::Tensor text_mask = torch::zeros({b, width}, torch::kInt64);
  for (int64_t i = 0; i < b; ++i) {
    const auto n = static_cast<int64_t>(ids[i].size());
    tokens[i].narrow(0, 0, n).copy_(torch::tensor(ids[i], torch::kInt64));
    text_mask[i].narrow(0, 0, n).fill_(1);
  }
  torch::Tensor labels = tokens.masked_fill(tokens.eq(pad), -100);
  for (int64_t i = 0; i < b; ++i) labels[i][static_cast<int64_t>(ids[i].size()) - 1] = eos;
  tokens = tokens.to(audio.device());
  auto [prefix, audio_mask] = audio_prefix(adapter, llm, audio, lengths);
  const torch::Tensor inputs = torch::cat({prefix, llm.embed(tokens)}, 1);
  const torch::Tensor mask = torch::cat({audio_mask, text_mask.to(audio.device())}, 1);
  labels = torch::cat({torch::full({b, t}, -100, torch::kInt64), labels}, 1).to(audio.device());
  const torch::Tensor logits = llm.forward(inputs, mask).to(torch::kFloat32);  // (B, T + L, V)
  AsrStep out;
  const int64_t v = logits.size(2);
  out.loss = torch::nn::functional::cross_entropy(
      logits.narrow(1, 0, logits.size(1) - 1).reshape({-1, v}),
      labels.narrow(1, 1, labels.size(1) - 1).reshape(-1),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
  if (decode) {
    const torch::Tensor predicted = logits.narrow(1, t, width).argmax(-1).cpu();
    for (int64_t i = 0; i < b; ++i) {
      const auto row = predicted[i];
      const std::vector<int64_t> p(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + width);
      out.predicted.push_back(first_code_points(tok.decode(p, /*skip_special=*/true), code_points(text[i])));
    }
  }
  return out;
}

std::vector<std::string> asr_generate(AsrAdapterImpl& adapter, models::Qwen2ForCausalLMImpl& llm,
                                      const data::HfTokenizer& tok, const torch::Tensor& audio,
                                      const torch::Tensor& lengths, const AsrConfig& c) {
  torch::NoGradGuard no_grad;
  const int64_t b = audio.size(0);
  auto [prefix, audio_mask] = audio_prefix(adapter, llm, audio, lengths);
  const std::vector<int64_t> sep = tok.encode(c.separator);
  const torch::Tensor sep_ids = torch::tensor(sep, torch::kInt64)
                                    .unsqueeze(0)
                                    .expand({b, static_cast<int64_t>(sep.size())})
                                    .to(audio.device());
  const torch::Tensor inputs = torch::cat({prefix, llm.embed(sep_ids)}, 1);
  const torch::Tensor mask = torch::cat({audio_mask, torch::ones_like(sep_ids)}, 1);
  const int64_t eos = tok.eos_id() >= 0 ? tok.eos_id() : llm.config().eos_token_id;
  const int64_t pad = tok.pad_id() >= 0 ? tok.pad_id() : eos;
  const auto generated =
      models::qwen2_generate_greedy(llm, inputs, mask, c.max_new_tokens, eos, pad, c.repetition_penalty);
  std::vector<std::string> out;
  for (const auto& g : generated) out.push_back(tok.decode(g, /*skip_special=*/true));
  return out;
}

namespace {

// Rows `idx` of `set` zero-padded to (B, T, D) on `device`, with their lengths.
std::pair<torch::Tensor, torch::Tensor> padded_batch(const AsrSet& set, const std::vector<int64_t>& idx,
                                                     const torch::Device& device) {
  auto [x, lengths] = pad_sequences(set.x, idx);
  return {x.to(device), lengths.to(device)};
}

void check_set(const AsrSet& s, const char* name, int64_t dim) {
  if (s.x.empty()) throw Error(std::string("asr probe: the ") + name + " split has no clips");
  if (s.x.size() != s.text.size())
    throw Error(std::string("asr probe: the ") + name + " split has " + std::to_string(s.x.size()) +
                " clips but " + std::to_string(s.text.size()) + " transcripts");
  for (std::size_t i = 0; i < s.x.size(); ++i)
    if (s.x[i].dim() != 2 || s.x[i].size(0) == 0 || s.x[i].size(1) != dim)
      throw Error(std::string("asr probe: ") + name + " clip " + std::to_string(i) + " is not (frames, " +
                  std::to_string(dim) + ") features");
}

// 0 .. n-1 in batches of `size`.
std::vector<std::vector<int64_t>> batches(int64_t n, int64_t size) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t s = 0; s < n; s += size) {
    std::vector<int64_t> b;
    for (int64_t i = s; i < std::min(n, s + size); ++i) b.push_back(i);
    out.push_back(std::move(b));
  }
  return out;
}

}  // namespace

AsrResult run_asr_probe(const AsrSet& train, const AsrSet& valid, const AsrSet& test,
                        models::Qwen2ForCausalLMImpl& llm, const data::HfTokenizer& tok, const AsrConfig& c,
                        AsrAdapter* adapter_out) {
  const ProbeConfig& p = c.probe;
  const int64_t dim = train.x.empty() ? 0 : train.x.front().size(-1);
  check_set(train, "train", dim);
  check_set(valid, "valid", dim);
  check_set(test, "test", dim);
  const torch::Device device = llm.parameters().front().device();
  for (auto& q : llm.parameters()) q.set_requires_grad(false);
  llm.eval();

  torch::manual_seed(p.seed);
  AsrAdapter adapter(dim, llm.config().intermediate_size, llm.config().hidden_size);
  adapter->to(device);
  auto texts = [](const AsrSet& set, const std::vector<int64_t>& idx) {
    std::vector<std::string> t;
    for (const int64_t i : idx) t.push_back(set.text[i]);
    return t;
  };
  int epoch = 0;
  const TaskScore fit = fit_best_on_valid(
      *adapter, train.size(), p,
      [&](const torch::Tensor& indices) {
        const std::vector<int64_t> idx(indices.data_ptr<int64_t>(),
                                       indices.data_ptr<int64_t>() + indices.numel());
        auto [x, lengths] = padded_batch(train, idx, device);
        const AsrStep s = asr_forward(*adapter, llm, tok, x, lengths, texts(train, idx), c, /*decode=*/false);
        if (!std::isfinite(s.loss.item<double>()))
          throw Error("asr probe: the training loss is not finite at epoch " + std::to_string(epoch + 1));
        return s.loss;
      },
      [&] {
        std::vector<std::string> refs, hyps;
        for (const auto& idx : batches(valid.size(), p.batch_size)) {
          auto [x, lengths] = padded_batch(valid, idx, device);
          const std::vector<std::string> text = texts(valid, idx);
          const AsrStep s = asr_forward(*adapter, llm, tok, x, lengths, text, c, /*decode=*/true);
          refs.insert(refs.end(), text.begin(), text.end());
          hyps.insert(hyps.end(), s.predicted.begin(), s.predicted.end());
        }
        const double score = wer_inv(refs, hyps);
        spdlog::info("asr probe: epoch {}/{}, valid WER_inv {:.4f} (teacher-forced)", ++epoch, p.epochs,
                     score);
        return score;
      });
  AsrResult r;
  r.valid = fit.valid;
  r.best_epoch = fit.best_epoch;
  r.epoch_loss = fit.epoch_loss;
  r.epoch_valid = fit.epoch_valid;
  adapter->eval();
  for (const auto& idx : batches(test.size(), p.batch_size)) {
    auto [x, lengths] = padded_batch(test, idx, device);
    const auto out = asr_generate(*adapter, llm, tok, x, lengths, c);
    r.hypotheses.insert(r.hypotheses.end(), out.begin(), out.end());
    for (const int64_t i : idx) r.references.push_back(test.text[i]);
  }
  r.test = wer_inv(r.references, r.hypotheses);
  if (adapter_out) *adapter_out = adapter;
  return r;
}

void save_asr_adapter(AsrAdapterImpl& adapter, const std::string& path) {
  std::map<std::string, torch::Tensor> named;
  for (const auto& [k, v] : io::module_state(adapter)) named["encoder_adapter." + k] = v.contiguous();
  io::save_safetensors(path, named,
                       {{"format", "pt"},
                        {"in_features", std::to_string(adapter.fc_1->weight.size(1))},
                        {"intermediate_size", std::to_string(adapter.fc_1->weight.size(0))},
                        {"n_embd", std::to_string(adapter.proj->weight.size(0))}});
}

}  // namespace losatok::eval
