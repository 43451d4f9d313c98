// The X-ARES protocol (jimbozhang/xares: trainer.py, metrics.py, models/) on frozen features:
// the epoch schedule and best-on-validation loop every probe shares, the probes of each task
// kind (multi-label clips, frames, audio-text retrieval; single-label clips and kNN are in
// probe.h) and the metrics, in double precision.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "losatok/core/error.h"
#include "losatok/data/wordpiece.h"
#include "losatok/eval/probe.h"

namespace losatok::eval {

// ---------------------------------------------------------------------------------- schedule

// The learning rate of 1-based `epoch`: ignite's CosineAnnealingScheduler from lr to
// lr * final_fraction with cycle_size = epochs, stepped at EPOCH_STARTED, i.e.
//   lr + (lr * final_fraction - lr) / 2 * (1 - cos(pi * (epoch - 1) / epochs))
// (the last epoch stays above lr * final_fraction); constant lr when epochs == 1 (X-ARES
// attaches no scheduler then).
double xares_epoch_lr(double lr, double final_fraction, int epoch, int epochs);

struct TaskScore {
  double test = 0;                              // the test metric with the kept epoch's weights
  double valid = 0;                             // the kept epoch's validation metric
  int best_epoch = 0;                           // 1-based
  std::vector<double> epoch_valid, epoch_loss;  // per epoch: validation metric, mean training loss
};

// X-ARES' Trainer on `module`: Adam over all its parameters at xares_epoch_lr per epoch; each
// epoch the `train_size` training rows in a fresh random order, batch_loss(indices) backward
// per batch of c.batch_size (the last one smaller); then valid_score() with the module in eval
// mode. Keeps the weights (parameters and buffers) of the first epoch and of each later epoch
// that scores strictly higher (ignite's ModelCheckpoint, n_saved = 1) and leaves them in the
// module. `test` is left 0 for the caller.
TaskScore fit_best_on_valid(torch::nn::Module& module, int64_t train_size, const ProbeConfig& c,
                            const std::function<torch::Tensor(const torch::Tensor& indices)>& batch_loss,
                            const std::function<double()>& valid_score);

// ------------------------------------------------------------------------------------ probes

// Clip embeddings (N, D) with many-hot targets (N, classes), float 0 / 1.
// X-ARES' collate: rows `rows` of per-clip (T, D) sequences zero-padded to the longest, as
// (B, T, D) float, with their lengths (B).
std::pair<torch::Tensor, torch::Tensor> pad_sequences(const std::vector<torch::Tensor>& x,
                                                      const std::vector<int64_t>& rows);

struct MultiLabelSet {
  torch::Tensor x, y;
  int64_t size() const { return x.defined() ? x.size(0) : 0; }
};

// Frame features per clip, (T, D), and frame targets per clip, (T', classes) float 0 / 1; T'
// may differ from T (the targets are padded or cut to the features, as X-ARES does).
struct FrameSet {
  std::vector<torch::Tensor> x, y;
  int64_t size() const { return static_cast<int64_t>(x.size()); }
};

// One row per caption: the clip's embedding (N, D) and its caption; each clip's num_caps
// captions are consecutive rows (X-ARES' Clotho merge), so N is a multiple of num_caps.
struct CaptionSet {
  torch::Tensor x;
  std::vector<std::string> captions;
  int num_caps = 1;
  int64_t size() const { return x.defined() ? x.size(0) : 0; }
};

// LayerNorm(D) + Linear(D, classes), BCEWithLogits; metric: average_precision (mAP).
TaskScore run_multilabel_probe(const MultiLabelSet& train, const MultiLabelSet& valid,
                               const MultiLabelSet& test, int64_t classes, const ProbeConfig& c);

// The same head on every frame; batches of whole clips (features zero-padded to the batch's
// longest clip, targets padded to their longest then padded or cut to that length, as X-ARES'
// collate and prepare_frame_task_batch do), BCEWithLogits with `pos_weight` on the positives;
// metric: segment_f1 at `pool_frames`, micro or macro, over validation / test batches of the
// same size in order.
TaskScore run_frame_probe(const FrameSet& train, const FrameSet& valid, const FrameSet& test, int64_t classes,
                          double pos_weight, int64_t pool_frames, bool micro, const ProbeConfig& c);

// X-ARES' RetrivalMLP: audio LayerNorm(D) -> Linear(D, hidden) -> GELU -> Linear(hidden,
// hidden); text: Embedding(vocab, hidden) over `words`' ids -> Linear -> GELU -> Linear, mean
// over the non-padding tokens ([CLS] and [SEP] included); audio_text_contrastive_loss with a
// learned log(1 / 0.07) scale. Training rows are (clip, caption) pairs; metric:
// retrieval_scores(...).recall_at_1 with the set's num_caps.
TaskScore run_retrieval_probe(const CaptionSet& train, const CaptionSet& valid, const CaptionSet& test,
                              const data::BertWordPiece& words, int64_t hidden, const ProbeConfig& c);

// X-ARES' AudioTextContrastiveLoss on (B, H) embeddings, row i of each the pair: the mean of
// the audio->text and text->audio cross-entropies of exp(log_scale) * audio . text^T against
// the diagonal, plus (embed_regularization) mean|e| / ||e|| for each side.
torch::Tensor audio_text_contrastive_loss(const torch::Tensor& audio, const torch::Tensor& text,
                                          const torch::Tensor& log_scale, bool embed_regularization = true);

// X-ARES' k-fold: for each fold, train on the others (concatenated in order) and use the fold
// itself as validation and test; the fold scores and their plain mean.
struct KFoldScore {
  std::vector<double> folds;
  double mean = 0;
};
LabelledSet concat_sets(const std::vector<LabelledSet>& parts);
MultiLabelSet concat_sets(const std::vector<MultiLabelSet>& parts);
FrameSet concat_sets(const std::vector<FrameSet>& parts);
CaptionSet concat_sets(const std::vector<CaptionSet>& parts);
template <class Set>
KFoldScore run_k_fold(const std::vector<Set>& folds,
                      const std::function<double(const Set& train, const Set& valid, const Set& test)>& run);

// ----------------------------------------------------------------------------------- metrics

// scikit-learn's average_precision_score (macro), as ignite's AveragePrecision calls it: per
// class, over its distinct scores from the highest, sum of (R_n - R_{n-1}) P_n; the unweighted
// mean over classes. A class without positives scores 0 and still counts (sklearn sets its recall
// to 1 everywhere: "No positive class found in y_true"). scores, targets: (N, C) or (N).
double average_precision(const torch::Tensor& scores, const torch::Tensor& targets);

// X-ARES' SegmentF1Metric over batches of logits and targets, each (B, T, C) or (T, C): per
// batch, the predictions binarised as sigmoid(logit).round() in the logits' dtype (0.5 -> 0),
// predictions and targets max-pooled over time with kernel = stride = pool_frames (a remainder
// under pool_frames dropped), rows of all batches stacked; then sklearn's f1_score: micro
// (2 TP / (2 TP + FP + FN) over all classes) or macro (per class, a class with no true and no
// predicted positive scores 0, as zero_division="warn"). With C == 1 sklearn sees binary
// targets and scores each label present (0 and / or 1) as a class; so does this.
double segment_f1(const std::vector<torch::Tensor>& logits, const std::vector<torch::Tensor>& targets,
                  int64_t pool_frames, bool micro);
// ceil(segment_s / (hop_ms / 1000)), X-ARES' max_pooling_size.
int64_t segment_pool_frames(double segment_s, double hop_ms);

struct RetrievalDirection {
  double r1 = 0, r5 = 0, r10 = 0, mAP10 = 0, meanr = 0, medr = 0;  // recalls and mAP10 in %
};
struct RetrievalScores {
  RetrievalDirection a2t, t2a;
  double recall_at_1 = 0;  // X-ARES' recallatk_r1: (a2t.r1 + t2a.r1) / 2 / 100
};
// X-ARES' clap_metrics on (N, D) audio and text embeddings, row i a (clip, caption) pair with
// each clip's num_caps captions consecutive: cosine similarities (in double); a2t ranks all N
// captions for each clip (first row of its group), t2a all N / num_caps clips for each caption.
// A rank counts the strictly higher scores plus the equal ones at lower indices (a stable sort).
RetrievalScores retrieval_scores(const torch::Tensor& audio, const torch::Tensor& text, int num_caps);

// X-ARES' weighted_average of (score, weight) pairs: sum(score * weight) / sum(weight), 0
// without weight.
double weighted_average(const std::vector<std::pair<double, double>>& score_weight);

// X-ARES' WER_inv: max(0, 1 - WER) with both sides lower-cased (Python's str.lower()) and jiwer's
// default transform (runs of two or more white-space characters to one space, strip, split on
// ' '; no punctuation removal); WER over the corpus: word edit operations / reference words.
// An empty reference (or one of white space only) is an error, as in jiwer.
double wer_inv(const std::vector<std::string>& references, const std::vector<std::string>& hypotheses);

// ------------------------------------------------------------------------------------------

template <class Set>
KFoldScore run_k_fold(const std::vector<Set>& folds,
                      const std::function<double(const Set& train, const Set& valid, const Set& test)>& run) {
  if (folds.size() < 2) throw Error("k-fold: need at least 2 folds, got " + std::to_string(folds.size()));
  KFoldScore out;
  for (std::size_t k = 0; k < folds.size(); ++k) {
    std::vector<Set> others;
    for (std::size_t j = 0; j < folds.size(); ++j)
      if (j != k) others.push_back(folds[j]);
    out.folds.push_back(run(concat_sets(others), folds[k], folds[k]));
  }
  for (const double s : out.folds) out.mean += s;
  out.mean /= static_cast<double>(out.folds.size());
  return out;
}

}  // namespace losatok::eval
