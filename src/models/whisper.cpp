// Whisper from openai/whisper's model.py, audio.py, decoding.py and transcribe.py (Radford et al.
// 2022), loading openai's .pt and Hugging Face's layout (transformers' convert_openai_to_hf.py).
#include "losatok/models/whisper.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <utility>

#include "losatok/core/error.h"
#include "losatok/io/weights.h"

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace losatok::models {

namespace {

torch::nn::Linear linear(int in, int out, bool bias = true) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

torch::nn::LayerNorm layer_norm(int dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}));
}

// Slaney's mel scale as librosa's hz_to_mel / mel_to_hz (htk=False): linear below 1 kHz, log above.
constexpr double kMelFsp = 200.0 / 3;
constexpr double kMelMinLogHz = 1000.0;
constexpr double kMelMinLogMel = kMelMinLogHz / kMelFsp;
const double kMelLogStep = std::log(6.4) / 27.0;

double hz_to_mel(double f) {
  return f >= kMelMinLogHz ? kMelMinLogMel + std::log(f / kMelMinLogHz) / kMelLogStep : f / kMelFsp;
}

double mel_to_hz(double m) {
  return m >= kMelMinLogMel ? kMelMinLogHz * std::exp(kMelLogStep * (m - kMelMinLogMel)) : kMelFsp * m;
}

// Sets the columns `ids` of every row of `logits` to -inf.
void suppress(torch::Tensor& logits, const std::vector<int64_t>& ids) {
  if (ids.empty()) return;
  logits.index_fill_(1, torch::tensor(ids, torch::kLong), -std::numeric_limits<float>::infinity());
}

// A Python dict's behaviour: assignment to an existing key keeps its place.
template <class V>
void upsert(std::vector<std::pair<std::vector<int64_t>, V>>& items, const std::vector<int64_t>& key,
            V value) {
  for (auto& [k, v] : items)
    if (k == key) {
      v = std::move(value);
      return;
    }
  items.emplace_back(key, std::move(value));
}

}  // namespace

// --- front end -------------------------------------------------------------------------------

torch::Tensor whisper_mel_filters(int n_mels) {
  if (n_mels <= 0) throw Error("Whisper: n_mels must be positive, not " + std::to_string(n_mels));
  const int64_t n_freqs = kWhisperNFft / 2 + 1;
  const double nyquist = kWhisperSampleRate / 2.0;
  std::vector<double> fft_freqs(n_freqs), mel_f(n_mels + 2);
  for (int64_t k = 0; k < n_freqs; ++k) fft_freqs[k] = nyquist * static_cast<double>(k) / (n_freqs - 1);
  const double mel_max = hz_to_mel(nyquist);
  for (int i = 0; i < n_mels + 2; ++i) mel_f[i] = mel_to_hz(mel_max * i / (n_mels + 1));
  torch::Tensor w = torch::empty({n_mels, n_freqs}, torch::kFloat32);
  auto a = w.accessor<float, 2>();
  for (int i = 0; i < n_mels; ++i) {
    const double lo = mel_f[i + 1] - mel_f[i], hi = mel_f[i + 2] - mel_f[i + 1];
    const double enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);  // Slaney: each triangle has unit area
    for (int64_t k = 0; k < n_freqs; ++k) {
      const double lower = (fft_freqs[k] - mel_f[i]) / lo, upper = (mel_f[i + 2] - fft_freqs[k]) / hi;
      a[i][k] = static_cast<float>(std::max(0.0, std::min(lower, upper)) * enorm);
    }
  }
  return w;
}

torch::Tensor whisper_pad_or_trim(const torch::Tensor& x, int64_t length, int64_t dim) {
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  torch::Tensor y = x.size(d) > length ? x.narrow(d, 0, length) : x;
  if (y.size(d) < length) {
    std::vector<int64_t> pad(2 * y.dim(), 0);
    pad[2 * (y.dim() - 1 - d) + 1] = length - y.size(d);
    y = F::pad(y, F::PadFuncOptions(pad));
  }
  return y;
}

torch::Tensor whisper_log_mel(const torch::Tensor& wave, int n_mels, int64_t padding) {
  if (wave.dim() != 1 || wave.size(0) + padding <= kWhisperNFft / 2)
    throw Error("Whisper log-mel: needs a 1-D wave of more than " + std::to_string(kWhisperNFft / 2) +
                " samples, not shape " + std::to_string(wave.dim()) + "-D / " + std::to_string(wave.numel()));
  torch::Tensor x = wave.to(torch::kFloat32);
  if (padding > 0) x = F::pad(x, F::PadFuncOptions({0, padding}));
  const torch::Tensor window = torch::hann_window(kWhisperNFft, torch::TensorOptions().device(x.device()));
  const torch::Tensor spec =
      torch::stft(x, kWhisperNFft, kWhisperHop, kWhisperNFft, window, /*center=*/true, "reflect",
                  /*normalized=*/false, /*onesided=*/true, /*return_complex=*/true);
  const torch::Tensor power = spec.narrow(-1, 0, spec.size(-1) - 1).abs().pow(2);  // (201, frames)
  torch::Tensor log_spec =
      torch::matmul(whisper_mel_filters(n_mels).to(x.device()), power).clamp_min(1e-10).log10();
  log_spec = torch::maximum(log_spec, log_spec.max() - 8.0);
  return (log_spec + 4.0) / 4.0;
}

torch::Tensor whisper_sinusoids(int64_t length, int64_t channels) {
  if (channels % 2 != 0 || channels < 4)
    throw Error("Whisper: sinusoidal positions need an even width >= 4, not " + std::to_string(channels));
  const double increment = std::log(10000.0) / static_cast<double>(channels / 2 - 1);
  const torch::Tensor inv = torch::exp(-increment * torch::arange(channels / 2, torch::kFloat32));
  const torch::Tensor t = torch::arange(length, torch::kFloat32).unsqueeze(1) * inv.unsqueeze(0);
  return torch::cat({torch::sin(t), torch::cos(t)}, 1);
}

// --- config ----------------------------------------------------------------------------------

WhisperConfig WhisperConfig::from_state_dict(const std::map<std::string, torch::Tensor>& w,
                                             const std::string& source) {
  const auto where = "Whisper checkpoint '" + source + "'";
  const auto need = [&](const std::string& name, int64_t dims) -> const torch::Tensor& {
    const auto it = w.find(name);
    if (it == w.end()) throw Error(where + " has no " + name + " (not a Whisper checkpoint)");
    if (it->second.dim() != dims)
      throw Error(where + ": " + name + " has " + std::to_string(it->second.dim()) + " dimensions, not " +
                  std::to_string(dims));
    return it->second;
  };
  const auto count_blocks = [&](const std::string& prefix) {
    int n = 0;
    for (;; ++n) {
      const std::string p = prefix + std::to_string(n) + ".";
      const auto it = w.lower_bound(p);
      if (it == w.end() || it->first.compare(0, p.size(), p) != 0) return n;
    }
  };
  const auto heads = [](int state) { return state % 64 == 0 ? state / 64 : 0; };
  WhisperConfig c;
  const torch::Tensor& conv1 = need("encoder.conv1.weight", 3);
  c.n_audio_state = static_cast<int>(conv1.size(0));
  c.n_mels = static_cast<int>(conv1.size(1));
  c.n_audio_ctx = kWhisperChunkFrames / 2;
  if (w.count("encoder.positional_embedding"))
    c.n_audio_ctx = static_cast<int>(need("encoder.positional_embedding", 2).size(0));
  c.n_audio_layer = count_blocks("encoder.blocks.");
  const torch::Tensor& emb = need("decoder.token_embedding.weight", 2);
  c.n_vocab = static_cast<int>(emb.size(0));
  c.n_text_state = static_cast<int>(emb.size(1));
  c.n_text_ctx = static_cast<int>(need("decoder.positional_embedding", 2).size(0));
  c.n_text_layer = count_blocks("decoder.blocks.");
  c.n_audio_head = heads(c.n_audio_state);
  c.n_text_head = heads(c.n_text_state);
  if (need("decoder.positional_embedding", 2).size(1) != c.n_text_state)
    throw Error(where + ": decoder.positional_embedding is not " + std::to_string(c.n_text_state) + " wide");
  return c;
}

void WhisperConfig::validate(const std::string& source) const {
  const auto where = "Whisper checkpoint '" + source + "'";
  for (const auto& [name, v] : {std::pair<const char*, int>{"n_mels", n_mels},
                                {"n_audio_ctx", n_audio_ctx},
                                {"n_audio_state", n_audio_state},
                                {"n_audio_layer", n_audio_layer},
                                {"n_vocab", n_vocab},
                                {"n_text_ctx", n_text_ctx},
                                {"n_text_state", n_text_state},
                                {"n_text_layer", n_text_layer}})
    if (v <= 0) throw Error(where + ": " + name + " must be positive, not " + std::to_string(v));
  if (n_audio_head <= 0 || n_audio_state % n_audio_head != 0 || n_text_head <= 0 ||
      n_text_state % n_text_head != 0)
    throw Error(where + ": no valid head counts (audio " + std::to_string(n_audio_head) + " for width " +
                std::to_string(n_audio_state) + ", text " + std::to_string(n_text_head) + " for width " +
                std::to_string(n_text_state) + "): widths that are not multiples of 64 need openai's dims");
  if (n_audio_ctx * 2 != kWhisperChunkFrames)
    throw Error(where + ": n_audio_ctx is " + std::to_string(n_audio_ctx) + ", not the 1500 of 30 s windows");
}

std::string WhisperConfig::str() const {
  std::ostringstream s;
  s << "n_mels " << n_mels << ", audio ctx " << n_audio_ctx << " state " << n_audio_state << " heads "
    << n_audio_head << " layers " << n_audio_layer << ", n_vocab " << n_vocab << ", text ctx " << n_text_ctx
    << " state " << n_text_state << " heads " << n_text_head << " layers " << n_text_layer;
  return s.str();
}

// --- modules ---------------------------------------------------------------------------------

WhisperAttentionImpl::WhisperAttentionImpl(int n_state, int n_head_) : n_head(n_head_) {
  query = register_module("query", linear(n_state, n_state));
  key = register_module("key", linear(n_state, n_state, /*bias=*/false));
  value = register_module("value", linear(n_state, n_state));
  out = register_module("out", linear(n_state, n_state));
}

torch::Tensor WhisperAttentionImpl::attend(const torch::Tensor& q_in, const torch::Tensor& k,
                                           const torch::Tensor& v, const torch::Tensor& mask) {
  const int64_t b = q_in.size(0), l = q_in.size(1), d = q_in.size(2), hd = d / n_head;
  // openai scales q and k by hd^-1/4 each (a softmax of fp16 products that does not overflow).
  const double scale = std::pow(static_cast<double>(hd), -0.25);
  const auto heads = [&](const torch::Tensor& x) {
    return x.view({x.size(0), x.size(1), n_head, hd}).permute({0, 2, 1, 3});
  };
  const torch::Tensor q = heads(query(q_in));
  torch::Tensor qk = torch::matmul(q * scale, (heads(k) * scale).transpose(-1, -2));  // (B, H, L, S)
  if (mask.defined()) qk = qk + mask;
  const torch::Tensor wv = torch::matmul(torch::softmax(qk, -1), heads(v));
  return out(wv.permute({0, 2, 1, 3}).reshape({b, l, d}));
}

void WhisperKvCache::select(const std::vector<int64_t>& rows) {
  const torch::Tensor index = torch::tensor(rows, torch::kLong);
  for (auto* list : {&self_k, &self_v})
    for (auto& t : *list)
      if (t.defined()) t = t.index_select(0, index.to(t.device()));
}

WhisperBlockImpl::WhisperBlockImpl(int n_state, int n_head, bool cross_attention) {
  attn = register_module("attn", WhisperAttention(n_state, n_head));
  attn_ln = register_module("attn_ln", layer_norm(n_state));
  if (cross_attention) {
    cross_attn = register_module("cross_attn", WhisperAttention(n_state, n_head));
    cross_attn_ln = register_module("cross_attn_ln", layer_norm(n_state));
  }
  mlp = register_module("mlp", torch::nn::Sequential(linear(n_state, 4 * n_state), torch::nn::GELU(),
                                                     linear(4 * n_state, n_state)));
  mlp_ln = register_module("mlp_ln", layer_norm(n_state));
}

torch::Tensor WhisperBlockImpl::forward(const torch::Tensor& x) {
  const torch::Tensor h = attn_ln(x);
  const torch::Tensor y = x + attn->attend(h, attn->key(h), attn->value(h), {});
  return y + mlp->forward(mlp_ln(y));
}

torch::Tensor WhisperBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& xa,
                                        const torch::Tensor& mask, WhisperKvCache& cache, size_t layer) {
  const torch::Tensor h = attn_ln(x);
  torch::Tensor k = attn->key(h), v = attn->value(h);
  if (cache.self_k[layer].defined()) {
    k = torch::cat({cache.self_k[layer], k}, 1);
    v = torch::cat({cache.self_v[layer], v}, 1);
  }
  cache.self_k[layer] = k;
  cache.self_v[layer] = v;
  torch::Tensor y = x + attn->attend(h, k, v, mask);
  if (!cache.cross_k[layer].defined()) {
    cache.cross_k[layer] = cross_attn->key(xa);
    cache.cross_v[layer] = cross_attn->value(xa);
  }
  y = y + cross_attn->attend(cross_attn_ln(y), cache.cross_k[layer], cache.cross_v[layer], {});
  return y + mlp->forward(mlp_ln(y));
}

WhisperEncoderImpl::WhisperEncoderImpl(const WhisperConfig& c) {
  conv1 = register_module(
      "conv1", torch::nn::Conv1d(torch::nn::Conv1dOptions(c.n_mels, c.n_audio_state, 3).padding(1)));
  conv2 = register_module(
      "conv2",
      torch::nn::Conv1d(torch::nn::Conv1dOptions(c.n_audio_state, c.n_audio_state, 3).stride(2).padding(1)));
  positional_embedding =
      register_buffer("positional_embedding", whisper_sinusoids(c.n_audio_ctx, c.n_audio_state));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < c.n_audio_layer; ++i)
    blocks->push_back(WhisperBlock(c.n_audio_state, c.n_audio_head, false));
  ln_post = register_module("ln_post", layer_norm(c.n_audio_state));
}

torch::Tensor WhisperEncoderImpl::forward(const torch::Tensor& mel) {
  torch::Tensor x = torch::gelu(conv1(mel));
  x = torch::gelu(conv2(x)).permute({0, 2, 1});  // (B, n_audio_ctx, D)
  if (x.size(1) != positional_embedding.size(0))
    throw Error("Whisper encoder: " + std::to_string(mel.size(-1)) + " mel frames give " +
                std::to_string(x.size(1)) + " positions, not " +
                std::to_string(positional_embedding.size(0)));
  x = x + positional_embedding;
  for (const auto& block : *blocks) x = block->as<WhisperBlockImpl>()->forward(x);
  return ln_post(x);
}

WhisperDecoderImpl::WhisperDecoderImpl(const WhisperConfig& c) {
  token_embedding = register_module("token_embedding", torch::nn::Embedding(c.n_vocab, c.n_text_state));
  positional_embedding =
      register_parameter("positional_embedding", torch::zeros({c.n_text_ctx, c.n_text_state}));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < c.n_text_layer; ++i)
    blocks->push_back(WhisperBlock(c.n_text_state, c.n_text_head, true));
  ln = register_module("ln", layer_norm(c.n_text_state));
}

torch::Tensor WhisperDecoderImpl::forward(const torch::Tensor& tokens, const torch::Tensor& audio_features,
                                          WhisperKvCache& cache) {
  const size_t n_layer = blocks->size();
  if (cache.self_k.size() != n_layer) {
    cache = WhisperKvCache{};
    for (auto* list : {&cache.self_k, &cache.self_v, &cache.cross_k, &cache.cross_v}) list->resize(n_layer);
  }
  const int64_t offset = cache.length(), l = tokens.size(1), n_ctx = positional_embedding.size(0);
  if (offset + l > n_ctx)
    throw Error("Whisper decoder: " + std::to_string(offset + l) + " tokens exceed the text context of " +
                std::to_string(n_ctx));
  torch::Tensor x = token_embedding(tokens) + positional_embedding.narrow(0, offset, l);
  // Causal: token i (at position offset + i) sees positions up to offset + i.
  const torch::Tensor mask =
      torch::full({l, offset + l}, -std::numeric_limits<float>::infinity(), x.options()).triu(offset + 1);
  for (size_t i = 0; i < n_layer; ++i)
    x = blocks[i]->as<WhisperBlockImpl>()->forward(x, audio_features, mask, cache, i);
  return torch::matmul(ln(x), token_embedding->weight.t());
}

// --- the model and its decoding --------------------------------------------------------------

void WhisperDecodeOptions::validate() const {
  if (beam_size < 0)
    throw Error("Whisper decoding: beam_size must be >= 0, not " + std::to_string(beam_size));
  if (beam_size > 1 && std::nearbyint(beam_size * patience) <= 0)
    throw Error("Whisper decoding: beam_size " + std::to_string(beam_size) + " with patience " +
                std::to_string(patience) + " keeps no finished sequence");
  if (length_penalty && (*length_penalty < 0 || *length_penalty > 1))
    throw Error("Whisper decoding: length_penalty must be in [0, 1], not " + std::to_string(*length_penalty));
  if (sample_len < 0)
    throw Error("Whisper decoding: sample_len must be >= 0, not " + std::to_string(sample_len));
}

WhisperImpl::WhisperImpl(const WhisperConfig& c) : config(c) {
  encoder = register_module("encoder", WhisperEncoder(c));
  decoder = register_module("decoder", WhisperDecoder(c));
}

torch::Tensor WhisperImpl::log_mel(const torch::Tensor& wave_16k) const {
  if (wave_16k.dim() != 1)
    throw Error("Whisper: a clip must be a 1-D wave, not " + std::to_string(wave_16k.dim()) + "-D");
  return whisper_log_mel(whisper_pad_or_trim(wave_16k.to(device), kWhisperChunkSamples), config.n_mels);
}

torch::Tensor WhisperImpl::encode(const torch::Tensor& mel) {
  torch::NoGradGuard no_grad;
  const torch::Tensor x = mel.dim() == 2 ? mel.unsqueeze(0) : mel;
  if (x.dim() != 3 || x.size(1) != config.n_mels || x.size(2) != 2 * config.n_audio_ctx)
    throw Error("Whisper encoder: needs a mel of shape (B, " + std::to_string(config.n_mels) + ", " +
                std::to_string(2 * config.n_audio_ctx) + "), not " + std::to_string(x.dim()) + "-D with " +
                std::to_string(x.size(-1)) + " frames");
  return encoder->forward(x.to(device, torch::kFloat32));
}

torch::Tensor WhisperImpl::embed(const torch::Tensor& wave_16k) {
  if (wave_16k.dim() != 1 || wave_16k.size(0) == 0) throw Error("Whisper embed: needs a non-empty 1-D wave");
  const torch::Tensor mel = whisper_log_mel(wave_16k.to(device), config.n_mels, kWhisperChunkSamples);
  const int64_t content = mel.size(1) - kWhisperChunkFrames;
  std::vector<torch::Tensor> rows;
  for (int64_t seek = 0; seek < content; seek += kWhisperChunkFrames) {
    const int64_t size = std::min(kWhisperChunkFrames, content - seek);
    const torch::Tensor features =
        encode(whisper_pad_or_trim(mel.narrow(1, seek, size), kWhisperChunkFrames));
    rows.push_back(features[0].narrow(0, 0, (size + 1) / 2));  // conv2 has stride 2
  }
  return torch::cat(rows, 0);
}

WhisperDecodeResult WhisperImpl::decode(const torch::Tensor& audio_features,
                                        const std::vector<int64_t>& initial_tokens,
                                        const WhisperDecodeOptions& options) {
  torch::NoGradGuard no_grad;
  options.validate();
  if (audio_features.dim() != 3 || audio_features.size(0) != 1 ||
      audio_features.size(2) != config.n_audio_state)
    throw Error("Whisper decoding: needs one audio's features (1, T, " +
                std::to_string(config.n_audio_state) + ")");
  if (initial_tokens.empty()) throw Error("Whisper decoding: no initial tokens (the SOT sequence)");
  for (const auto& ids :
       {initial_tokens, options.suppress_tokens, options.blank_ids, std::vector<int64_t>{options.eot}})
    for (const int64_t id : ids)
      if (id < 0 || id >= config.n_vocab)
        throw Error("Whisper decoding: token id " + std::to_string(id) + " is outside the vocabulary of " +
                    std::to_string(config.n_vocab));
  const int64_t eot = options.eot;
  const bool beam = options.beam_size > 1;
  const int n_group = beam ? options.beam_size : 1;
  const int sample_len = options.sample_len > 0 ? options.sample_len : config.n_text_ctx / 2;
  const size_t sample_begin = initial_tokens.size();
  // decoding.py rounds half to even (Python's round).
  const size_t max_candidates = static_cast<size_t>(std::nearbyint(n_group * options.patience));

  std::vector<std::vector<int64_t>> seqs(n_group, initial_tokens);
  std::vector<float> sum_logprobs(n_group, 0.0f);  // float32, as decoding.py's tensor
  std::vector<std::pair<std::vector<int64_t>, double>> finished;
  const torch::Tensor xa = audio_features.to(device, torch::kFloat32);
  WhisperKvCache cache;

  for (int step = 0; step < sample_len; ++step) {
    torch::Tensor input =
        torch::empty({n_group, step == 0 ? static_cast<int64_t>(sample_begin) : 1}, torch::kLong);
    for (int j = 0; j < n_group; ++j)
      input[j].copy_(step == 0 ? torch::tensor(seqs[j], torch::kLong)
                               : torch::tensor({seqs[j].back()}, torch::kLong));
    torch::Tensor logits =
        decoder->forward(input.to(device), xa, cache).select(1, -1).to(torch::kCPU).contiguous();
    if (options.suppress_blank && seqs[0].size() == sample_begin) suppress(logits, options.blank_ids);
    suppress(logits, options.suppress_tokens);
    const torch::Tensor logprobs = torch::log_softmax(logits, -1);
    bool completed = false;
    if (!beam) {
      std::vector<int64_t>& seq = seqs[0];
      const int64_t next = logits[0].argmax().item<int64_t>();
      if (seq.back() != eot) {
        sum_logprobs[0] += logprobs[0][next].item<float>();
        seq.push_back(next);
      } else {
        seq.push_back(eot);
      }
      completed = seq.back() == eot;
    } else {
      // Every beam's top beam_size + 1 continuations, deduplicated in the order first seen.
      std::vector<std::pair<std::vector<int64_t>, std::pair<double, int>>> candidates;
      for (int j = 0; j < n_group; ++j) {
        const auto top = logprobs[j].topk(n_group + 1);
        const torch::Tensor values = std::get<0>(top), indices = std::get<1>(top);
        for (int r = 0; r <= n_group; ++r) {
          std::vector<int64_t> seq = seqs[j];
          seq.push_back(indices[r].item<int64_t>());
          const float score = sum_logprobs[j] + values[r].item<float>();
          upsert(candidates, seq, std::pair<double, int>{score, j});
        }
      }
      std::vector<size_t> order(candidates.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return candidates[a].second.first > candidates[b].second.first;
      });
      std::vector<std::vector<int64_t>> next;
      std::vector<int64_t> sources;
      std::vector<std::pair<std::vector<int64_t>, double>> newly_finished;
      for (const size_t c : order) {
        const auto& [seq, scored] = candidates[c];
        if (seq.back() == eot) {
          newly_finished.emplace_back(seq, scored.first);
        } else {
          sum_logprobs[next.size()] = static_cast<float>(scored.first);
          next.push_back(seq);
          sources.push_back(scored.second);
          if (static_cast<int>(next.size()) == n_group) break;
        }
      }
      seqs = std::move(next);
      std::vector<int64_t> identity(sources.size());
      std::iota(identity.begin(), identity.end(), 0);
      if (sources != identity) cache.select(sources);
      for (const auto& [seq, score] : newly_finished) {  // already in descending order
        if (finished.size() >= max_candidates) break;
        upsert(finished, seq, score);
      }
      completed = finished.size() >= max_candidates;
    }
    if (completed || static_cast<int64_t>(seqs[0].size()) > config.n_text_ctx) break;
  }

  // The candidates, each ended by EOT; then the one of the best (length-penalised) score.
  std::vector<std::pair<std::vector<int64_t>, double>> candidates;
  if (!beam) {
    std::vector<int64_t> seq = seqs[0];
    seq.push_back(eot);
    candidates.emplace_back(seq, sum_logprobs[0]);
  } else {
    if (finished.size() < static_cast<size_t>(n_group)) {
      std::vector<size_t> order(seqs.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return sum_logprobs[a] > sum_logprobs[b]; });
      for (const size_t j : order) {
        std::vector<int64_t> seq = seqs[j];
        seq.push_back(eot);
        upsert(finished, seq, static_cast<double>(sum_logprobs[j]));
        if (finished.size() >= static_cast<size_t>(n_group)) break;
      }
    }
    candidates = finished;
  }
  WhisperDecodeResult best;
  double best_score = -std::numeric_limits<double>::infinity();
  bool first = true;
  for (const auto& [seq, logprob] : candidates) {
    const size_t end = static_cast<size_t>(std::find(seq.begin(), seq.end(), eot) - seq.begin());
    std::vector<int64_t> sampled;
    if (end > sample_begin) sampled.assign(seq.begin() + sample_begin, seq.begin() + end);
    const double n = static_cast<double>(sampled.size());
    const double penalty = options.length_penalty ? std::pow((5 + n) / 6, *options.length_penalty) : n;
    const double score = logprob / penalty;
    if (first || score > best_score) {
      first = false;
      best_score = score;
      best.tokens = std::move(sampled);
      best.sum_logprob = logprob;
    }
  }
  best.avg_logprob = best.sum_logprob / static_cast<double>(best.tokens.size() + 1);
  return best;
}

std::vector<int64_t> WhisperImpl::transcribe(const torch::Tensor& wave_16k,
                                             const std::vector<int64_t>& sot_sequence,
                                             const WhisperTranscribeOptions& options) {
  if (wave_16k.dim() != 1 || wave_16k.size(0) == 0)
    throw Error("Whisper transcribe: needs a non-empty 1-D wave");
  if (options.condition_on_previous_text && options.sot_prev < 0)
    throw Error("Whisper transcribe: condition_on_previous_text needs the <|startofprev|> id (sot_prev)");
  const torch::Tensor mel = whisper_log_mel(wave_16k.to(device), config.n_mels, kWhisperChunkSamples);
  const int64_t content = mel.size(1) - kWhisperChunkFrames;
  const size_t max_prompt = static_cast<size_t>(config.n_text_ctx / 2 - 1);
  std::vector<int64_t> all_tokens;
  size_t prompt_reset_since = 0;
  for (int64_t seek = 0; seek < content;) {
    const int64_t size = std::min(kWhisperChunkFrames, content - seek);
    // The last window is padded with zeros in the log-mel domain, as transcribe.py does.
    const torch::Tensor features =
        encode(whisper_pad_or_trim(mel.narrow(1, seek, size), kWhisperChunkFrames));
    std::vector<int64_t> initial;
    if (all_tokens.size() > prompt_reset_since) {
      const size_t n = std::min(max_prompt, all_tokens.size() - prompt_reset_since);
      initial.push_back(options.sot_prev);
      initial.insert(initial.end(), all_tokens.end() - static_cast<std::ptrdiff_t>(n), all_tokens.end());
    }
    initial.insert(initial.end(), sot_sequence.begin(), sot_sequence.end());
    const WhisperDecodeResult result = decode(features, initial, options.decode);
    seek += size;
    all_tokens.insert(all_tokens.end(), result.tokens.begin(), result.tokens.end());
    if (!options.condition_on_previous_text) prompt_reset_since = all_tokens.size();
  }
  return all_tokens;
}

// --- loading ---------------------------------------------------------------------------------

std::map<std::string, torch::Tensor> whisper_openai_names(const std::map<std::string, torch::Tensor>& tensors,
                                                          const std::string& source) {
  // openai name prefix <-> Hugging Face's (transformers' convert_openai_to_hf.py), for the
  // whole model and within a block.
  static const std::vector<std::pair<std::string, std::string>> kTop = {
      {"encoder.conv1.", "model.encoder.conv1."},
      {"encoder.conv2.", "model.encoder.conv2."},
      {"encoder.positional_embedding", "model.encoder.embed_positions.weight"},
      {"encoder.ln_post.", "model.encoder.layer_norm."},
      {"encoder.blocks.", "model.encoder.layers."},
      {"decoder.token_embedding.", "model.decoder.embed_tokens."},
      {"decoder.positional_embedding", "model.decoder.embed_positions.weight"},
      {"decoder.ln.", "model.decoder.layer_norm."},
      {"decoder.blocks.", "model.decoder.layers."}};
  static const std::vector<std::pair<std::string, std::string>> kBlock = {
      {"attn.query.", "self_attn.q_proj."},
      {"attn.key.", "self_attn.k_proj."},
      {"attn.value.", "self_attn.v_proj."},
      {"attn.out.", "self_attn.out_proj."},
      {"attn_ln.", "self_attn_layer_norm."},
      {"cross_attn.query.", "encoder_attn.q_proj."},
      {"cross_attn.key.", "encoder_attn.k_proj."},
      {"cross_attn.value.", "encoder_attn.v_proj."},
      {"cross_attn.out.", "encoder_attn.out_proj."},
      {"cross_attn_ln.", "encoder_attn_layer_norm."},
      {"mlp.0.", "fc1."},
      {"mlp.2.", "fc2."},
      {"mlp_ln.", "final_layer_norm."}};
  const auto starts = [](const std::string& s, const std::string& p) {
    return s.compare(0, p.size(), p) == 0;
  };
  const auto unknown = [&](const std::string& name) {
    return Error("Whisper checkpoint '" + source + "': unknown tensor '" + name +
                 "' (neither openai's nor Hugging Face's Whisper layout)");
  };
  const bool hf = tensors.count("model.encoder.conv1.weight") > 0;
  std::map<std::string, torch::Tensor> out;
  for (const auto& [raw, t] : tensors) {
    if (!hf) {
      // Our .pt reader flattens openai's {"model_state_dict": {...}} to dotted names.
      const std::string name = starts(raw, "model_state_dict.") ? raw.substr(17) : raw;
      bool known = false;
      for (const auto& [ours, _] : kTop) known = known || starts(name, ours);
      if (!known) throw unknown(raw);
      out[name] = t;
      continue;
    }
    if (raw == "proj_out.weight") continue;  // tied to embed_tokens: checked below
    std::string name;
    for (const auto& [ours, theirs] : kTop) {
      if (!starts(raw, theirs)) continue;
      const std::string rest = raw.substr(theirs.size());
      if (theirs.back() != '.' || ours.find("blocks.") == std::string::npos) {
        name = ours + rest;
      } else {
        const size_t dot = rest.find('.');
        const std::string sub = dot == std::string::npos ? "" : rest.substr(dot + 1);
        for (const auto& [b_ours, b_theirs] : kBlock)
          if (starts(sub, b_theirs))
            name = ours + rest.substr(0, dot + 1) + b_ours + sub.substr(b_theirs.size());
      }
      break;
    }
    if (name.empty()) throw unknown(raw);
    out[name] = t;
  }
  if (hf) {
    const auto proj = tensors.find("proj_out.weight");
    const auto emb = out.find("decoder.token_embedding.weight");
    if (proj != tensors.end() && emb != out.end() &&
        !torch::equal(proj->second.to(torch::kFloat32), emb->second.to(torch::kFloat32)))
      throw Error("Whisper checkpoint '" + source +
                  "': proj_out.weight differs from model.decoder.embed_tokens.weight (Whisper ties them)");
  }
  return out;
}

namespace {

// The head counts of a Hugging Face config.json next to the weights, when there is one.
void read_hf_heads(const std::string& path, WhisperConfig& c) {
  std::error_code ec;
  const fs::path dir = fs::is_directory(path, ec) ? fs::path(path) : fs::path(path).parent_path();
  const fs::path file = dir / "config.json";
  if (!fs::is_regular_file(file, ec)) return;
  std::ifstream in(file);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
    if (j.value("model_type", std::string("whisper")) != "whisper") return;
    c.n_audio_head = j.value("encoder_attention_heads", c.n_audio_head);
    c.n_text_head = j.value("decoder_attention_heads", c.n_text_head);
  } catch (const std::exception& e) {
    throw Error("Whisper config '" + file.string() + "': " + first_line(e.what()));
  }
}

}  // namespace

Whisper load_whisper(const std::string& path, const torch::Device& device,
                     const std::optional<WhisperConfig>& dims) {
  io::WeightSet set = io::read_weights(path);
  std::map<std::string, torch::Tensor> w = whisper_openai_names(set.tensors, set.source);
  for (auto& [name, t] : w) t = t.to(torch::kFloat32);  // openai's files are float16
  WhisperConfig c = WhisperConfig::from_state_dict(w, set.source);
  read_hf_heads(path, c);
  if (dims) {
    const auto check = [&](const char* name, int from_file, int given) {
      if (from_file != given)
        throw Error("Whisper checkpoint '" + set.source + "': dims." + name + " is " + std::to_string(given) +
                    " but the tensors say " + std::to_string(from_file));
    };
    check("n_mels", c.n_mels, dims->n_mels);
    check("n_audio_ctx", c.n_audio_ctx, dims->n_audio_ctx);
    check("n_audio_state", c.n_audio_state, dims->n_audio_state);
    check("n_audio_layer", c.n_audio_layer, dims->n_audio_layer);
    check("n_vocab", c.n_vocab, dims->n_vocab);
    check("n_text_ctx", c.n_text_ctx, dims->n_text_ctx);
    check("n_text_state", c.n_text_state, dims->n_text_state);
    check("n_text_layer", c.n_text_layer, dims->n_text_layer);
    c.n_audio_head = dims->n_audio_head;
    c.n_text_head = dims->n_text_head;
  }
  c.validate(set.source);
  const torch::Tensor sinusoids = whisper_sinusoids(c.n_audio_ctx, c.n_audio_state);
  const auto pe = w.find("encoder.positional_embedding");
  if (pe == w.end()) {
    w["encoder.positional_embedding"] = sinusoids;
  } else if (pe->second.sizes() != sinusoids.sizes() ||
             (pe->second - sinusoids).abs().max().item<double>() > 5e-3) {
    throw Error("Whisper checkpoint '" + set.source +
                "': encoder.positional_embedding is not the sinusoidal table of model.py");
  }
  Whisper model(c);
  io::load_weights(*model, w, set.source);
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  model->to(device);
  model->device = device;
  return model;
}

}  // namespace losatok::models
