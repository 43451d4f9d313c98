// Linear and kNN probes on frozen clip embeddings.
#include "losatok/eval/probe.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "losatok/core/error.h"
#include "losatok/eval/xares_protocol.h"

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
  const int64_t dim = train.x.defined() && train.x.dim() == 2 ? train.x.size(1) : 0;
  check_set(train, "train", dim, classes);
  check_set(valid, "valid", dim, classes);
  check_set(test, "test", dim, classes);
  if (train.y.min().item<int64_t>() < 0) throw Error("probe: a training label id is negative");

  torch::manual_seed(c.seed);
  torch::nn::Sequential probe(torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})),
                              torch::nn::Linear(dim, classes));
  const torch::Tensor x = train.x.to(torch::kFloat32), y = train.y.to(torch::kInt64);
  auto predict = [&](const torch::Tensor& q) { return probe->forward(q.to(torch::kFloat32)).argmax(1); };
  const TaskScore s = fit_best_on_valid(
      *probe, x.size(0), c,
      [&](const torch::Tensor& idx) {
        return torch::nn::functional::cross_entropy(probe->forward(x.index_select(0, idx)),
                                                    y.index_select(0, idx));
      },
      [&] { return accuracy(predict(valid.x), valid.y); });

  ProbeResult r;
  r.valid_accuracy = s.valid;
  r.best_epoch = s.best_epoch;
  r.epoch_valid = s.epoch_valid;
  r.epoch_loss = s.epoch_loss;
  torch::NoGradGuard no_grad;
  probe->eval();
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
