// The X-ARES suite over its tasks' data as distributed (WebDataset shards under one root, one
// folder per task): each clip decoded, cropped as the task says, encoded once into a feature
// cache, then probed per representation with the task's protocol (clip, multi-label, frame,
// retrieval, ASR through a frozen LLM), k-fold where the task has folds, and the suite average
// weighted by the tasks' eval weights.
#pragma once

#include <torch/types.h>

#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "losatok/data/feature_cache.h"
#include "losatok/eval/probe.h"
#include "losatok/eval/xares_asr.h"

namespace losatok::data {
class HfTokenizer;
}
namespace losatok::models {
class Qwen2ForCausalLMImpl;
}

namespace losatok::eval {

// What turns audio into frame features: per clip, source tensor name -> (T, D).
struct XaresEncoder {
  int sample_rate = 16000;
  double hop_ms = 40;
  std::vector<std::string> sources;
  // Names the weights and config; each source's cache (<cache_root>/<task>/<source>/) is made by
  // `what` + ":" + source and refuses features of another producer.
  data::CacheProducer producer;
  std::function<std::vector<std::map<std::string, torch::Tensor>>(const std::vector<std::vector<float>>&)>
      encode;
};

// A representation probed: a source tensor and a map (the identity or a fixed projection that
// commutes with mean pooling).
struct XaresRepresentation {
  std::string name, source;
  std::function<torch::Tensor(const torch::Tensor&)> map;
};

struct XaresOptions {
  std::string data_root;           // one folder per task (X-ARES' env root)
  std::string cache_root;          // feature caches, one folder per task
  std::vector<std::string> tasks;  // names, formal names or columns; empty: Table 2's tasks found
  int encode_batch = 8;
  double encode_seconds = 60;  // longer clips are encoded in consecutive windows of this length
  std::string resample_quality = "hq";
  int64_t max_clips = 0;           // per split or fold, in shard order; 0: all
  ProbeConfig probe;               // seed, kNN; epochs / batch_size / lr come from the task unless overridden
  int epochs = 0, batch_size = 0;  // overrides (0: the task's)
  double lr = 0;
  std::string bert_vocab;  // retrieval text ids (bert-base-uncased vocab.txt); empty: caption words
  int64_t retrieval_hidden = 1024;
  models::Qwen2ForCausalLMImpl* llm = nullptr;  // the ASR task; null: skipped with a reason
  const data::HfTokenizer* llm_tokenizer = nullptr;
  AsrConfig asr;
  std::string asr_adapter_dir;  // where each representation's trained adapter is written ("" none)
};

constexpr double kNotScored = std::numeric_limits<double>::quiet_NaN();

struct XaresTaskResult {
  std::string task, formal_name, column, kind, metric;
  int64_t eval_weight = 0;
  double score = kNotScored;  // the probe's test metric (mean over folds)
  double knn = kNotScored;    // kNN accuracy where the task has it
  double valid = kNotScored;  // the kept epoch's validation metric (mean over folds)
  std::vector<double> fold_scores, fold_knn;
  int64_t train = 0, valid_size = 0, test = 0;      // rows (crops or captions) of the first fold / the splits
  std::string skipped;                              // why the task was not scored
  std::vector<std::string> hypotheses, references;  // ASR only
};

struct XaresSuiteResult {
  std::string representation;
  int64_t dim = 0;
  std::vector<XaresTaskResult> tasks;
  double average = kNotScored, knn_average = kNotScored;  // weighted by eval_weight (kNN: tasks with kNN)
  int64_t weight = 0;                                     // eval weights summed over scored tasks
  bool complete = false;                                  // every one of Table 2's 15 tasks scored
};

std::vector<XaresSuiteResult> run_xares_suite(const XaresOptions& o, const XaresEncoder& encoder,
                                              const std::vector<XaresRepresentation>& representations);

// Sequential crops of `crop` samples (X-ARES crop_or_pad_audio with pad_last): every whole crop,
// or the clip zero-padded to one crop when it is shorter; crop <= 0: the clip itself.
std::vector<std::vector<float>> xares_crops(const std::vector<float>& wave, int64_t crop);

// X-ARES' frame targets: (frames, classes) with events [ceil(onset / hop), ceil(offset / hop)).
torch::Tensor xares_frame_targets(const std::vector<double>& onsets, const std::vector<double>& offsets,
                                  const std::vector<int64_t>& labels, int64_t classes, double hop_seconds,
                                  double span_seconds);

}  // namespace losatok::eval
