// The X-ARES probing protocol (docs/method.md, "Evaluation") on clip embeddings: a linear probe
// (LayerNorm + Linear, Adam, X-ARES' epoch cosine, best epoch on validation) and weighted kNN.
// The other task kinds and the shared training loop are in xares_protocol.h.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace losatok::eval {

struct ProbeConfig {
  int epochs = 10;
  int batch_size = 32;
  double lr = 1e-3;
  double final_lr_fraction = 0.1;  // cosine from lr towards lr * this, stepped per epoch (xares_epoch_lr)
  uint64_t seed = 42;
  int knn_k = 10;
  double knn_temperature = 0.07;
};

// Clip embeddings (N, D) float and labels (N) int64 in [0, classes), or -1 for a label the
// training split never saw (such a clip counts as an error, never as skipped).
struct LabelledSet {
  torch::Tensor x, y;
  int64_t size() const { return x.defined() ? x.size(0) : 0; }
};

struct ProbeResult {
  double linear_accuracy = 0;                   // test, with the weights of the best validation epoch
  double knn_accuracy = 0;                      // test, neighbours from the training split
  double valid_accuracy = 0;                    // the best epoch's
  int best_epoch = 0;                           // 1-based
  std::vector<double> epoch_valid, epoch_loss;  // per epoch: validation accuracy, mean training loss
};

// Trains LayerNorm(D) + Linear(D, classes) with cross-entropy through fit_best_on_valid
// (xares_protocol.h: Adam, X-ARES' per-epoch cosine, the weights of the first best validation
// accuracy kept); accuracy is X-ARES' (argmax).
ProbeResult run_probe(const LabelledSet& train, const LabelledSet& valid, const LabelledSet& test,
                      int64_t classes, const ProbeConfig& c);

// Weighted kNN: cosine similarity of L2-normalised embeddings, the k most similar training
// clips vote with weight exp(similarity / temperature). Accuracy on `query`. X-ARES' KNN weighs
// the votes by softmax(similarity / temperature) over the k: the same weights divided by their
// per-query sum, so the same argmax.
double knn_accuracy(const LabelledSet& train, const LabelledSet& query, int64_t classes, int k,
                    double temperature);

// Label names -> ids: the training split's sorted distinct labels; -1 for others.
std::vector<std::string> label_vocabulary(const std::vector<std::string>& train_labels);
torch::Tensor label_ids(const std::vector<std::string>& labels, const std::vector<std::string>& vocabulary);

}  // namespace losatok::eval
