// Dasheng semantic encoder, SemBo, and the shared initialisation helpers.
#include "losatok/models/dasheng.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "losatok/core/compat.h"
#include "losatok/core/error.h"
#include "losatok/models/init.h"
#include "losatok/models/layers.h"
#include "losatok/models/sembo.h"

namespace losatok::models {

namespace nn = torch::nn;

void trunc_normal_(torch::Tensor& t, double std, double lo, double hi) {
  torch::NoGradGuard no_grad;
  // Bounds beyond 8 sigma cut off less mass than float32 resolves: a plain normal draw is the
  // same distribution and several times cheaper (800 M parameters at paper size).
  if (-lo / std >= 8.0 && hi / std >= 8.0) {
    t.normal_(0.0, std).clamp_(lo, hi);
    return;
  }
  // Uniform on [cdf(lo), cdf(hi)] mapped through the inverse normal CDF.
  auto cdf = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };
  const double a = cdf(lo / std), b = cdf(hi / std);
  t.uniform_(2 * a - 1, 2 * b - 1).erfinv_().mul_(std * std::sqrt(2.0)).clamp_(lo, hi);
}

namespace {
thread_local bool skip_init = false;
}  // namespace

SkipInit::SkipInit() : previous_(skip_init) {
  skip_init = true;
}
SkipInit::~SkipInit() {
  skip_init = previous_;
}
bool SkipInit::active() {
  return skip_init;
}

void init_trunc_normal(nn::Module& module, double std) {
  if (skip_init) return;
  torch::NoGradGuard no_grad;
  for (const auto& m : module.modules(/*include_self=*/false)) {
    const bool weighted =
        m->as<nn::Linear>() || m->as<nn::Conv1d>() || m->as<nn::Conv2d>() || m->as<nn::ConvTranspose1d>();
    if (weighted) {
      for (auto& item : m->named_parameters(/*recurse=*/false)) {
        if (item.key() == "weight") trunc_normal_(item.value(), std);
        if (item.key() == "bias") item.value().zero_();
      }
    } else if (m->as<nn::LayerNorm>()) {
      for (auto& item : m->named_parameters(false))
        item.key() == "weight" ? item.value().fill_(1.0) : item.value().zero_();
    }
  }
}

int64_t count_parameters(const nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

DashengAttentionImpl::DashengAttentionImpl(int dim, int num_heads_, bool qkv_bias) : num_heads(num_heads_) {
  qkv = register_module("qkv", nn::Linear(nn::LinearOptions(dim, 3 * dim).bias(qkv_bias)));
  proj = register_module("proj", nn::Linear(dim, dim));
}

torch::Tensor DashengAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& key_mask) {
  const int64_t b = x.size(0), n = x.size(1), d = x.size(2);
  // (B, N, 3D) -> 3 x (B, H, N, D/H)
  const auto parts =
      apply_linear(qkv, x).reshape({b, n, 3, num_heads, d / num_heads}).permute({2, 0, 3, 1, 4});
  torch::Tensor mask;
  if (key_mask.defined()) mask = key_mask.view({b, 1, 1, n});
  const torch::Tensor out = compat::scaled_dot_product_attention(parts[0], parts[1], parts[2], mask);
  return apply_linear(proj, out.transpose(1, 2).reshape({b, n, d}));
}

DashengMlpImpl::DashengMlpImpl(int dim, int hidden) {
  fc1 = register_module("fc1", nn::Linear(dim, hidden));
  fc2 = register_module("fc2", nn::Linear(hidden, dim));
}

torch::Tensor DashengMlpImpl::forward(const torch::Tensor& x) {
  return apply_linear(fc2, torch::gelu(apply_linear(fc1, x)));
}

DashengBlockImpl::DashengBlockImpl(const EncoderConfig& c) {
  norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({c.embed_dim}).eps(c.norm_eps)));
  attn = register_module("attn", DashengAttention(c.embed_dim, c.num_heads, c.qkv_bias));
  norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({c.embed_dim}).eps(c.norm_eps)));
  mlp = register_module("mlp", DashengMlp(c.embed_dim, c.mlp_dim()));
}

torch::Tensor DashengBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& key_mask) {
  torch::Tensor h = x + attn->forward(norm1->forward(x), key_mask);
  return h + mlp->forward(norm2->forward(h));
}

torch::Tensor DashengBlockImpl::forward_inference(const torch::Tensor& x, const torch::Tensor& padding) {
  const int64_t d = x.size(2);
  const torch::Tensor qkv_bias =
      attn->qkv->bias.defined() ? attn->qkv->bias : torch::zeros({3 * d}, attn->qkv->weight.options());
  compat::optional<torch::Tensor> mask;
  compat::optional<int64_t> mask_type;
  if (padding.defined()) mask = padding, mask_type = 1;  // a key padding mask (B, N)
  return at::_transformer_encoder_layer_fwd(
      x, d, attn->num_heads, attn->qkv->weight, qkv_bias, attn->proj->weight, attn->proj->bias,
      /*use_gelu=*/true, /*norm_first=*/true, norm1->options.eps(), norm1->weight, norm1->bias, norm2->weight,
      norm2->bias, mlp->fc1->weight, mlp->fc1->bias, mlp->fc2->weight, mlp->fc2->bias, mask, mask_type);
}

DashengPatchEmbedImpl::DashengPatchEmbedImpl(int n_mels, int patch_frames, int dim) {
  proj = register_module(
      "proj", nn::Conv2d(nn::Conv2dOptions(1, dim, {n_mels, patch_frames}).stride({n_mels, patch_frames})));
}

DashengEncoderImpl::DashengEncoderImpl(const EncoderConfig& c, const MelConfig& mel)
    : config_(c), mel_(mel), frontend_(std::make_shared<audio::LogMel>(mel)) {
  c.validate();
  init_bn = register_module("init_bn",
                            nn::BatchNorm2d(nn::BatchNormOptions(mel.n_mels).eps(c.bn_eps).momentum(0.01)));
  patch_embed = register_module("patch_embed", DashengPatchEmbed(mel.n_mels, c.patch_frames, c.embed_dim));
  time_pos_embed =
      register_parameter("time_pos_embed", torch::randn({1, c.embed_dim, 1, c.patches_per_chunk()}) * 0.02);
  freq_pos_embed = register_parameter("freq_pos_embed", torch::randn({1, c.embed_dim, 1, 1}) * 0.02);
  blocks = register_module("blocks", nn::ModuleList());
  for (int i = 0; i < c.depth; ++i) blocks->push_back(DashengBlock(c));
  norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({c.embed_dim}).eps(c.norm_eps)));
  init_trunc_normal(*this);
}

torch::Tensor DashengEncoderImpl::token_mask(const torch::Tensor& lengths, int64_t num_tokens) const {
  const torch::Tensor valid = torch::div(lengths.to(torch::kLong), samples_per_token(), "floor");
  return torch::arange(num_tokens, lengths.options().dtype(torch::kLong)).unsqueeze(0) < valid.unsqueeze(1);
}

torch::Tensor DashengEncoderImpl::forward(const torch::Tensor& wave, const torch::Tensor& lengths) {
  if (wave.dim() != 2)
    throw Error("semantic encoder: expected a (batch, samples) waveform, got " + std::to_string(wave.dim()) +
                " dimensions");
  const torch::Tensor mel = (*frontend_)(wave);  // (B, n_mels, F)
  const int64_t tokens = mel.size(-1) / config_.patch_frames;
  return forward_mel(mel,
                     lengths.defined() ? token_mask(lengths.to(wave.device()), tokens) : torch::Tensor());
}

torch::Tensor DashengEncoderImpl::forward_mel(const torch::Tensor& mel, const torch::Tensor& token_mask) {
  // The encoder is frozen in every LoSATok stage: BatchNorm always normalises with its
  // running statistics (PyTorch eval mode), over the mel-bin axis.
  torch::Tensor x = torch::batch_norm(mel, init_bn->weight, init_bn->bias, init_bn->running_mean,
                                      init_bn->running_var, /*training=*/false, 0.0, config_.bn_eps,
                                      /*cudnn_enabled=*/true);
  x = patch_embed->forward(x.unsqueeze(1));  // (B, D, 1, T)
  const int64_t total = x.size(-1), chunk = config_.patches_per_chunk();
  std::vector<torch::Tensor> outputs;
  // Chunks of target_length mel frames are encoded independently, as in the reference.
  for (int64_t start = 0; start < total; start += chunk) {
    const int64_t t = std::min(chunk, total - start);
    torch::Tensor h = x.narrow(-1, start, t) + time_pos_embed.narrow(-1, 0, t) + freq_pos_embed;
    h = h.flatten(2).transpose(1, 2);  // (B, t, D)
    torch::Tensor keys;
    if (token_mask.defined()) {
      keys = token_mask.narrow(1, start, t);
      // A clip with no valid token in this chunk attends everywhere: its outputs there are
      // padding, but must stay finite.
      keys = keys | keys.any(1, /*keepdim=*/true).logical_not();
    }
    // Frozen (no autograd, and no autocast that would lower the linears' precision): each block
    // is one fused operation. Otherwise the modules; without fused attention (LibTorch < 2.0)
    // with an additive mask made once per chunk, which saves the blocks an operation each.
    if (!torch::GradMode::is_enabled() && !(h.is_cuda() && compat::cuda_autocast_enabled())) {
      const torch::Tensor padding = keys.defined() ? keys.logical_not() : torch::Tensor();
      for (const auto& block : *blocks) h = block->as<DashengBlock>()->forward_inference(h, padding);
    } else {
      if (keys.defined() && !compat::kHasFusedSdpa)
        keys = torch::zeros(keys.sizes(), h.options())
                   .masked_fill_(keys.logical_not(), -std::numeric_limits<float>::infinity());
      for (const auto& block : *blocks) h = block->as<DashengBlock>()->forward(h, keys);
    }
    outputs.push_back(norm->forward(h));
  }
  if (outputs.empty()) return torch::zeros({x.size(0), 0, x.size(1)}, x.options());
  return torch::cat(outputs, 1);
}

SemanticBottleneckImpl::SemanticBottleneckImpl(int dim, const SemBoConfig& c) : config_(c), dim_(dim) {
  c.validate();
  if (c.method == "mlp") {
    downsample = register_module("downsample", nn::Sequential(nn::Linear(dim, c.hidden_dim), nn::GELU(),
                                                              nn::Linear(c.hidden_dim, c.latent_dim)));
    upsample = register_module("upsample", nn::Sequential(nn::Linear(c.latent_dim, c.hidden_dim), nn::GELU(),
                                                          nn::Linear(c.hidden_dim, dim)));
  } else if (c.method == "pca") {
    // Until fitted: the first `latent` coordinates (a valid orthonormal projection).
    pca_mean = register_buffer("pca_mean", torch::zeros({dim}));
    pca_components = register_buffer("pca_components", torch::eye(c.latent_dim, dim));
  } else if (dim % c.latent_dim != 0) {
    throw Error("SemBo channel_merge: embed_dim " + std::to_string(dim) +
                " is not a multiple of latent_dim " + std::to_string(c.latent_dim));
  }
}

torch::Tensor SemanticBottleneckImpl::compress(const torch::Tensor& x) {
  if (config_.method == "pca") return torch::matmul(x - pca_mean, pca_components.t());
  if (config_.method == "channel_merge") {
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = config_.latent_dim;
    shape.push_back(dim_ / config_.latent_dim);
    return x.reshape(shape).mean(-1);
  }
  torch::Tensor y = downsample->forward(x);
  if (config_.dropout > 0) y = torch::dropout(y, config_.dropout, is_training());
  return y;
}

torch::Tensor SemanticBottleneckImpl::restore(const torch::Tensor& y) {
  if (config_.method == "pca") return torch::matmul(y, pca_components) + pca_mean;
  if (config_.method == "channel_merge") return y.repeat_interleave(dim_ / config_.latent_dim, -1);
  return upsample->forward(y);
}

PcaFit::PcaFit(int dim)
    : dim_(dim),
      sum_(torch::zeros({dim}, torch::kFloat64)),
      outer_(torch::zeros({dim, dim}, torch::kFloat64)) {}

void PcaFit::add(const torch::Tensor& x) {
  if (x.dim() != 2 || x.size(1) != dim_)
    throw Error("PCA fit: expected (N, " + std::to_string(dim_) + ") features, got " + c10::str(x.sizes()));
  if (x.size(0) == 0) return;
  const torch::Tensor d = x.detach().to(torch::kCPU, torch::kFloat64);
  sum_ += d.sum(0);
  outer_.addmm_(d.t(), d);
  count_ += x.size(0);
}

torch::Tensor PcaFit::covariance() const {
  if (count_ < 2) throw Error("PCA fit: needs at least 2 feature frames, has " + std::to_string(count_));
  const torch::Tensor mean = sum_ / static_cast<double>(count_);
  return (outer_ - static_cast<double>(count_) * torch::outer(mean, mean)) / static_cast<double>(count_ - 1);
}

std::pair<torch::Tensor, torch::Tensor> PcaFit::solve(int k) const {
  if (k > dim_)
    throw Error("PCA fit: " + std::to_string(k) + " components from " + std::to_string(dim_) + "-d features");
  auto [values, vectors] = torch::linalg_eigh(covariance());  // ascending eigenvalues, vectors in columns
  torch::Tensor top = vectors.flip(1).narrow(1, 0, k).t().contiguous();  // (k, D)
  const torch::Tensor pivot = top.gather(1, top.abs().argmax(1, true));
  top = top * torch::where(pivot < 0, -1.0, 1.0);
  return {(sum_ / static_cast<double>(count_)).to(torch::kFloat32), top.to(torch::kFloat32)};
}

torch::Tensor PcaFit::explained_variance_ratio() const {
  const torch::Tensor values = torch::linalg_eigvalsh(covariance()).flip(0).clamp_min(0);
  return values / values.sum();
}

std::map<std::string, torch::Tensor> PcaFit::state() const {
  return {{"count", torch::tensor({static_cast<double>(count_)}, torch::kFloat64)},
          {"sum", sum_},
          {"outer", outer_}};
}

void PcaFit::load_state(const std::map<std::string, torch::Tensor>& s, const std::string& where) {
  for (const char* k : {"count", "sum", "outer"})
    if (!s.count(k)) throw Error(where + ": PCA statistics '" + k + "' are missing");
  if (s.at("sum").numel() != dim_ || s.at("outer").numel() != 1LL * dim_ * dim_)
    throw Error(where + ": PCA statistics are for another feature size than " + std::to_string(dim_));
  count_ = static_cast<int64_t>(s.at("count").item<double>());
  sum_ = s.at("sum").to(torch::kFloat64).reshape({dim_}).clone();
  outer_ = s.at("outer").to(torch::kFloat64).reshape({dim_, dim_}).clone();
}

SemanticEncoderImpl::SemanticEncoderImpl(const ModelConfig& c, const MelConfig& dasheng_mel) {
  encoder = register_module("encoder", DashengEncoder(c.encoder, dasheng_mel));
  bottleneck = register_module("bottleneck", SemanticBottleneck(c.encoder.embed_dim, c.sembo));
}

}  // namespace losatok::models
