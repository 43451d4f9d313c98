// Encoding a split once and deriving every representation from it.
#include "losatok/eval/representations.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include "losatok/core/error.h"
#include "losatok/data/extract.h"
#include "losatok/models/sembo.h"

namespace losatok::eval {

const std::vector<std::string>& representation_names() {
  static const std::vector<std::string> names = {"semantic",      "sembo",  "pca",
                                                 "channel_merge", "latent", "acoustic"};
  return names;
}

std::string source_tensor(const std::string& r) {
  if (r == "semantic" || r == "pca" || r == "channel_merge") return "semantic_emb";
  if (r == "sembo") return "semantic_emb_low";
  if (r == "latent") return "mu";
  if (r == "acoustic") return "acoustic_emb_low";
  std::string known;
  for (const auto& n : representation_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown representation '" + r + "' (" + known + ")");
}

std::vector<std::string> source_tensors(const std::vector<std::string>& representations) {
  std::vector<std::string> out;
  for (const auto& r : representations) {
    const std::string s = source_tensor(r);
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

EncodedSplit encode_split(models::AudioVAEImpl& vae, const RootConfig& cfg,
                          const std::vector<data::Clip>& clips, const std::vector<std::string>& sources,
                          int batch_size, const torch::Device& device,
                          const std::vector<std::string>& frames_of, int64_t keep_frames) {
  if (!frames_of.empty() && keep_frames <= 0) throw Error("frames to keep must be positive");
  const auto t0 = std::chrono::steady_clock::now();
  EncodedSplit out;
  std::vector<const data::Clip*> todo;
  for (const auto& c : clips) todo.push_back(&c);

  std::map<std::string, std::vector<torch::Tensor>> pooled, frames;
  const data::ExtractReport report = data::encode_clips(
      vae, cfg, todo, sources, batch_size, device, [&](const data::Clip& c, const data::NamedFeatures& f) {
        for (const auto& s : sources) {
          const auto it = f.find(s);
          if (it == f.end()) throw Error("the " + cfg.model.variant + " tokenizer computes no " + s);
          pooled[s].push_back(it->second.to(torch::kFloat32).mean(0));
          if (std::find(frames_of.begin(), frames_of.end(), s) != frames_of.end())
            frames[s].push_back(it->second.to(torch::kFloat32));
        }
        out.clips.push_back(c);
      });
  out.bad = report.bad;
  out.audio_seconds = report.audio_seconds;
  if (out.clips.empty())
    throw Error(clips.empty() ? std::string("no clip to encode")
                              : "none of the " + std::to_string(clips.size()) +
                                    " clips could be read (first: " + clips.front().key + ")");
  for (auto& [s, v] : pooled) out.pooled[s] = torch::stack(v);
  for (auto& [s, v] : frames) {
    out.frames[s] = subsample_rows(torch::cat(v), keep_frames, static_cast<uint64_t>(cfg.seed));
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

torch::Tensor subsample_rows(const torch::Tensor& x, int64_t max_rows, uint64_t seed) {
  if (x.size(0) <= max_rows) return x;
  const auto g = at::detail::createCPUGenerator(seed);
  return x.index_select(0, std::get<0>(torch::randperm(x.size(0), g).narrow(0, 0, max_rows).sort()));
}

std::function<torch::Tensor(const torch::Tensor&)> representation_map(const std::string& r,
                                                                      const ModelConfig& model,
                                                                      const torch::Tensor& pca_fit_frames) {
  source_tensor(r);  // validates the name
  if (r != "pca" && r != "channel_merge") return [](const torch::Tensor& x) { return x; };
  SemBoConfig c = model.sembo;
  c.method = r;
  models::SemanticBottleneck baseline(model.encoder.embed_dim, c);
  if (r == "pca") {
    if (!pca_fit_frames.defined() || pca_fit_frames.size(0) < 2)
      throw Error("representation 'pca' needs training features to fit on");
    models::PcaFit fit(model.encoder.embed_dim);
    fit.add(pca_fit_frames);
    auto [mean, components] = fit.solve(c.latent_dim);
    torch::NoGradGuard no_grad;
    baseline->pca_mean.copy_(mean);
    baseline->pca_components.copy_(components);
  }
  return [baseline](const torch::Tensor& x) mutable {
    torch::NoGradGuard no_grad;
    return baseline->compress(x.to(torch::kFloat32));
  };
}

}  // namespace losatok::eval
