// Linear and kNN probes on frozen clip embeddings.
#include "losatok/eval/probe.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "losatok/core/error.h"

namespace losatok::eval {

namespace {

double accuracy(const torch::Tensor& predicted, const torch::Tensor& y) {
  return y.numel() == 0 ? 0.0 : predicted.eq(y).to(torch::kFloat64).mean().item<double>();
}

void check_set(const LabelledSet& s, const char* name, int64_t dim, int64_t classes) {
  if (!s.x.defined() || s.x.dim() != 2 || s.x.size(0) == 0)
    throw Error(std::string("probe: the ") + name + " split has no embeddings");
  if (s.x.size(1) != dim)
    throw Error(std::string("probe: the ") + name + " embeddings are " + std::to_string(s.x.size(1)) +
                "-d, the training ones " + std::to_string(dim) + "-d");
  if (!s.y.defined() || s.y.numel() != s.x.size(0))
    throw Error(std::string("probe: the ") + name + " split has " + std::to_string(s.x.size(0)) +
                " embeddings but a different number of labels");
  if (s.y.numel() > 0 && s.y.max().item<int64_t>() >= classes)
    throw Error(std::string("probe: a ") + name + " label id is out of range");
}

}  // namespace

ProbeResult run_probe(const LabelledSet& train, const LabelledSet& valid, const LabelledSet& test,
                      int64_t classes, const ProbeConfig& c) {
  if (classes < 2)
    throw Error("probe: the training split has " + std::to_string(classes) + " class(es); need 2");
  if (c.epochs < 1 || c.batch_size < 1) throw Error("probe: epochs and batch size must be positive");
  const int64_t dim = train.x.defined() && train.x.dim() == 2 ? train.x.size(1) : 0;
  check_set(train, "train", dim, classes);
  check_set(valid, "valid", dim, classes);
  check_set(test, "test", dim, classes);
  if (train.y.min().item<int64_t>() < 0) throw Error("probe: a training label id is negative");

  torch::manual_seed(c.seed);
  torch::nn::Sequential probe(torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})),
                              torch::nn::Linear(dim, classes));
  torch::optim::Adam opt(probe->parameters(), torch::optim::AdamOptions(c.lr));
  const torch::Tensor x = train.x.to(torch::kFloat32), y = train.y.to(torch::kInt64);
  const int64_t n = x.size(0), per_epoch = (n + c.batch_size - 1) / c.batch_size;
  const int64_t total = per_epoch * c.epochs;
  auto predict = [&](const torch::Tensor& q) {
    torch::NoGradGuard no_grad;
    probe->eval();
    return probe->forward(q.to(torch::kFloat32)).argmax(1);
  };

  ProbeResult r;
  r.valid_accuracy = -1;
  std::vector<torch::Tensor> best;
  int64_t step = 0;
  for (int epoch = 1; epoch <= c.epochs; ++epoch) {
    probe->train();
    const torch::Tensor order = torch::randperm(n, torch::kInt64);
    for (int64_t b = 0; b < per_epoch; ++b, ++step) {
      const double t = static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, total - 1));
      const double lr =
          c.lr * (c.final_lr_fraction + (1.0 - c.final_lr_fraction) * 0.5 * (1.0 + std::cos(M_PI * t)));
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
      const torch::Tensor idx =
          order.narrow(0, b * c.batch_size, std::min<int64_t>(c.batch_size, n - b * c.batch_size));
      opt.zero_grad();
      torch::nn::functional::cross_entropy(probe->forward(x.index_select(0, idx)), y.index_select(0, idx))
          .backward();
      opt.step();
    }
    const double acc = accuracy(predict(valid.x), valid.y);
    if (acc > r.valid_accuracy) {
      r.valid_accuracy = acc;
      r.best_epoch = epoch;
      best.clear();
      for (const auto& p : probe->parameters()) best.push_back(p.detach().clone());
    }
  }
  {
    torch::NoGradGuard no_grad;
    const auto params = probe->parameters();
    for (std::size_t i = 0; i < params.size(); ++i) params[i].copy_(best[i]);
  }
  r.linear_accuracy = accuracy(predict(test.x), test.y);
  r.knn_accuracy = knn_accuracy(train, test, classes, c.knn_k, c.knn_temperature);
  return r;
}

double knn_accuracy(const LabelledSet& train, const LabelledSet& query, int64_t classes, int k,
                    double temperature) {
  if (k < 1 || !(temperature > 0)) throw Error("knn: k and the temperature must be positive");
  if (train.size() == 0 || query.size() == 0) throw Error("knn: empty training or query split");
  torch::NoGradGuard no_grad;
  auto unit = [](const torch::Tensor& t) {
    const torch::Tensor f = t.to(torch::kFloat32);
    return f / f.norm(2, 1, true).clamp_min(1e-12);
  };
  const torch::Tensor sim = unit(query.x).mm(unit(train.x).t());  // (Q, N)
  const auto [top, idx] = sim.topk(std::min<int64_t>(k, train.size()), 1);
  const torch::Tensor votes =
      torch::zeros({query.size(), classes}, torch::kFloat32)
          .scatter_add_(1, train.y.to(torch::kInt64).index({idx}), (top / temperature).exp());
  return accuracy(votes.argmax(1), query.y.to(torch::kInt64));
}

std::vector<std::string> label_vocabulary(const std::vector<std::string>& train_labels) {
  const std::set<std::string> distinct(train_labels.begin(), train_labels.end());
  return {distinct.begin(), distinct.end()};
}

torch::Tensor label_ids(const std::vector<std::string>& labels, const std::vector<std::string>& vocabulary) {
  std::vector<int64_t> ids;
  ids.reserve(labels.size());
  for (const auto& l : labels) {
    const auto it = std::lower_bound(vocabulary.begin(), vocabulary.end(), l);
    ids.push_back(it != vocabulary.end() && *it == l ? it - vocabulary.begin() : -1);
  }
  return torch::tensor(ids, torch::kInt64);
}

}  // namespace losatok::eval
