// The X-ARES protocol: one training loop (ignite's epoch cosine, best on validation) under every
// probe, and X-ARES' metrics written out in double precision (tests/reference/
// xares_metrics_ref.py is their Python twin).
#include "losatok/eval/xares_protocol.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "losatok/eval/asr.h"
#include "losatok/eval/text_normalizer.h"

namespace losatok::eval {

namespace F = torch::nn::functional;

std::pair<torch::Tensor, torch::Tensor> pad_sequences(const std::vector<torch::Tensor>& x,
                                                      const std::vector<int64_t>& rows) {
  if (rows.empty()) throw Error("pad_sequences: no rows");
  int64_t t = 0;
  for (const int64_t r : rows) t = std::max(t, x[r].size(0));
  const auto b = static_cast<int64_t>(rows.size());
  torch::Tensor out = torch::zeros({b, t, x[rows[0]].size(1)}, torch::kFloat32);
  std::vector<int64_t> lengths;
  for (int64_t i = 0; i < b; ++i) {
    const torch::Tensor& xi = x[rows[i]];
    out[i].narrow(0, 0, xi.size(0)).copy_(xi);
    lengths.push_back(xi.size(0));
  }
  return {out, torch::tensor(lengths, torch::kInt64)};
}

namespace {

std::string n_str(int64_t n) {
  return std::to_string(n);
}

// The pooled-clip sets: x (N, D), y (N, ...) with N > 0 and D the training one.
void check_rows(const char* probe, const char* split, const torch::Tensor& x, const torch::Tensor& y,
                int64_t dim) {
  const std::string where = std::string(probe) + ": the " + split + " split";
  if (!x.defined() || x.dim() != 2 || x.size(0) == 0) throw Error(where + " has no embeddings");
  if (x.size(1) != dim)
    throw Error(where + " embeddings are " + n_str(x.size(1)) + "-d, the training ones " + n_str(dim) + "-d");
  if (!y.defined() || y.dim() < 1 || y.size(0) != x.size(0))
    throw Error(where + " has " + n_str(x.size(0)) + " embeddings but " +
                (y.defined() && y.dim() > 0 ? n_str(y.size(0)) : std::string("no")) + " targets");
}

// A 0 / 1 tensor as int64; anything else is an error naming `what`.
torch::Tensor binary_targets(const torch::Tensor& t, const std::string& what) {
  const torch::Tensor l = t.to(torch::kInt64);
  if (t.numel() > 0 && (l.ne(t.to(torch::kFloat64)).any().item<bool>() || l.min().item<int64_t>() < 0 ||
                        l.max().item<int64_t>() > 1))
    throw Error(what + " must be 0 or 1");
  return l;
}

torch::nn::Sequential linear_head(int64_t dim, int64_t classes) {
  return torch::nn::Sequential(torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})),
                               torch::nn::Linear(dim, classes));
}

torch::Tensor bce(const torch::Tensor& logits, const torch::Tensor& y, double pos_weight) {
  if (pos_weight == 1.0) return F::binary_cross_entropy_with_logits(logits, y);
  return F::binary_cross_entropy_with_logits(
      logits, y,
      F::BinaryCrossEntropyWithLogitsFuncOptions().pos_weight(torch::tensor(pos_weight, logits.options())));
}

// ------------------------------------------------------------------------------- frames

void check_frames(const FrameSet& s, const char* split, int64_t dim, int64_t classes) {
  const std::string where = std::string("frame probe: the ") + split + " split";
  if (s.x.empty()) throw Error(where + " has no clips");
  if (s.y.size() != s.x.size())
    throw Error(where + " has " + n_str(s.size()) + " clips but " + n_str(static_cast<int64_t>(s.y.size())) +
                " target sequences");
  for (std::size_t i = 0; i < s.x.size(); ++i) {
    const torch::Tensor &x = s.x[i], &y = s.y[i];
    const std::string clip = where + ", clip " + std::to_string(i);
    if (!x.defined() || x.dim() != 2 || x.size(0) == 0)
      throw Error(clip + ": features must be (T, D) with T > 0");
    if (x.size(1) != dim)
      throw Error(clip + ": features are " + n_str(x.size(1)) + "-d, the training ones " + n_str(dim) + "-d");
    if (!y.defined() || y.dim() != 2 || y.size(1) != classes)
      throw Error(clip + ": targets must be (T, " + n_str(classes) + ")");
  }
}

// X-ARES' prepare_frame_task_batch: the targets padded or cut to the features' length.
std::pair<torch::Tensor, torch::Tensor> frame_batch(const FrameSet& s, const std::vector<int64_t>& rows) {
  const torch::Tensor x = pad_sequences(s.x, rows).first;
  torch::Tensor y = pad_sequences(s.y, rows).first;
  const int64_t t = x.size(1), ty = y.size(1);
  if (ty > t)
    y = y.narrow(1, 0, t).contiguous();
  else if (ty < t)
    y = F::pad(y, F::PadFuncOptions({0, 0, 0, t - ty}));
  return {x, y};
}

double frame_metric(torch::nn::Sequential& head, const FrameSet& s, int batch, int64_t pool, bool micro) {
  std::vector<torch::Tensor> logits, targets;
  for (int64_t start = 0; start < s.size(); start += batch) {
    std::vector<int64_t> rows;
    for (int64_t r = start; r < std::min<int64_t>(s.size(), start + batch); ++r) rows.push_back(r);
    auto [x, y] = frame_batch(s, rows);
    logits.push_back(head->forward(x));
    targets.push_back(y);
  }
  return segment_f1(logits, targets, pool, micro);
}

// ---------------------------------------------------------------------------- retrieval

// AudioTextContrastiveLoss' learnable scale, under the name X-ARES' checkpoints give it.
struct ContrastiveCriterionImpl : torch::nn::Module {
  ContrastiveCriterionImpl() {
    temperature = register_parameter("temperature", torch::tensor(1.0 / 0.07, torch::kFloat32).log());
  }
  torch::Tensor temperature;  // log(1 / 0.07)
};
TORCH_MODULE(ContrastiveCriterion);

// X-ARES' RetrivalMLP with the tokenizer outside it.
struct RetrievalMlpImpl : torch::nn::Module {
  RetrievalMlpImpl(int64_t in, int64_t vocab, int64_t hidden, int64_t pad) : pad_id(pad) {
    using namespace torch::nn;
    ln = register_module("ln", LayerNorm(LayerNormOptions({in})));
    audio_mlp = register_module("audio_mlp", Sequential(Linear(in, hidden), GELU(), Linear(hidden, hidden)));
    text_model = register_module("text_model", Embedding(vocab, hidden));
    text_mlp =
        register_module("text_mlp", Sequential(Linear(hidden, hidden), GELU(), Linear(hidden, hidden)));
    criterion = register_module("criterion", ContrastiveCriterion());
  }
  // x (B, D), ids (B, L) -> audio (B, H), text (B, H)
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x, const torch::Tensor& ids) {
    const torch::Tensor mask = ids.ne(pad_id).unsqueeze(-1).to(torch::kFloat32);  // (B, L, 1)
    const torch::Tensor text = (text_mlp->forward(text_model->forward(ids)) * mask).sum(1) / mask.sum(1);
    return {audio_mlp->forward(ln->forward(x)), text};
  }
  int64_t pad_id;
  torch::nn::LayerNorm ln{nullptr};
  torch::nn::Sequential audio_mlp{nullptr}, text_mlp{nullptr};
  torch::nn::Embedding text_model{nullptr};
  ContrastiveCriterion criterion{nullptr};
};
TORCH_MODULE(RetrievalMlp);

void check_captions(const CaptionSet& s, const char* split, int64_t dim) {
  const std::string where = std::string("retrieval probe: the ") + split + " split";
  if (!s.x.defined() || s.x.dim() != 2 || s.x.size(0) == 0) throw Error(where + " has no embeddings");
  if (s.x.size(1) != dim)
    throw Error(where + " embeddings are " + n_str(s.x.size(1)) + "-d, the training ones " + n_str(dim) +
                "-d");
  if (static_cast<int64_t>(s.captions.size()) != s.x.size(0))
    throw Error(where + " has " + n_str(s.x.size(0)) + " embeddings but " +
                n_str(static_cast<int64_t>(s.captions.size())) + " captions");
  if (s.num_caps < 1 || s.x.size(0) % s.num_caps != 0)
    throw Error(where + " has " + n_str(s.x.size(0)) + " captions, not a multiple of num_caps " +
                std::to_string(s.num_caps));
}

// Every caption's ids, padded; with each row's length to trim batches to their longest.
struct CaptionIds {
  torch::Tensor ids;  // (N, L)
  std::vector<int64_t> length;
};

CaptionIds caption_ids(const data::BertWordPiece& words, const std::vector<std::string>& captions) {
  CaptionIds out;
  out.ids = words.encode_batch(captions);
  out.length.resize(captions.size());
  const torch::Tensor n = out.ids.ne(words.pad_id()).sum(1);
  for (std::size_t i = 0; i < captions.size(); ++i)
    out.length[i] = n[static_cast<int64_t>(i)].item<int64_t>();
  return out;
}

torch::Tensor batch_ids(const CaptionIds& c, const torch::Tensor& rows) {
  int64_t longest = 1;
  for (int64_t i = 0; i < rows.size(0); ++i)
    longest = std::max(longest, c.length[static_cast<std::size_t>(rows[i].item<int64_t>())]);
  return c.ids.index_select(0, rows).narrow(1, 0, longest);
}

double retrieval_metric(RetrievalMlp& model, const CaptionSet& s, const CaptionIds& ids, int batch) {
  std::vector<torch::Tensor> audio, text;
  for (int64_t start = 0; start < s.size(); start += batch) {
    const torch::Tensor rows =
        torch::arange(start, std::min<int64_t>(s.size(), start + batch), torch::kInt64);
    auto [a, t] = model->forward(s.x.index_select(0, rows).to(torch::kFloat32), batch_ids(ids, rows));
    audio.push_back(a);
    text.push_back(t);
  }
  return retrieval_scores(torch::cat(audio), torch::cat(text), s.num_caps).recall_at_1;
}

// ------------------------------------------------------------------------------ metrics

// Python's str.isspace() / re's \s on str.
bool py_space(char32_t c) {
  return (c >= 0x9 && c <= 0xD) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// The code point starting at s[i] and its byte length (an invalid byte: itself, length 1).
std::pair<char32_t, std::size_t> next_code_point(const std::string& s, std::size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  const std::size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
  if (len <= 1 || i + len > s.size()) return {b, 1};
  char32_t cp = len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
  for (std::size_t k = 1; k < len; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return {b, 1};
    cp = (cp << 6) | (c & 0x3F);
  }
  return {cp, len};
}

// jiwer's wer_default: RemoveMultipleSpaces (re.sub(r"\s\s+", " ")), Strip, split on ' '.
std::vector<std::string> jiwer_words(const std::string& text) {
  std::vector<std::pair<std::string, bool>> chars;  // (bytes, white space)
  for (std::size_t i = 0; i < text.size();) {
    const auto [cp, len] = next_code_point(text, i);
    chars.emplace_back(text.substr(i, len), py_space(cp));
    i += len;
  }
  std::vector<std::pair<std::string, bool>> collapsed;
  for (std::size_t i = 0; i < chars.size();) {
    std::size_t j = i;
    while (j < chars.size() && chars[j].second) ++j;
    if (j - i >= 2) {
      collapsed.emplace_back(" ", true);
      i = j;
    } else {
      collapsed.push_back(chars[i]);
      ++i;
    }
  }
  std::size_t lo = 0, hi = collapsed.size();
  while (lo < hi && collapsed[lo].second) ++lo;
  while (hi > lo && collapsed[hi - 1].second) --hi;
  std::vector<std::string> words;
  std::string cur;
  for (std::size_t i = lo; i < hi; ++i) {
    if (collapsed[i].first == " ") {
      if (!cur.empty()) words.push_back(cur);
      cur.clear();
    } else {
      cur += collapsed[i].first;
    }
  }
  if (!cur.empty()) words.push_back(cur);
  return words;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Position of column `target` in row `row` sorted descending (stable: ties keep index order).
int64_t rank_in_row(const double* row, int64_t n, int64_t target) {
  const double v = row[target];
  int64_t r = 0;
  for (int64_t j = 0; j < n; ++j) r += row[j] > v || (row[j] == v && j < target);
  return r;
}

}  // namespace

// ---------------------------------------------------------------------------------- schedule

double xares_epoch_lr(double lr, double final_fraction, int epoch, int epochs) {
  if (epochs < 1 || epoch < 1 || epoch > epochs)
    throw Error("xares schedule: epoch " + std::to_string(epoch) + " of " + std::to_string(epochs));
  if (epochs == 1) return lr;
  const double progress = static_cast<double>(epoch - 1) / static_cast<double>(epochs);
  return lr + ((lr * final_fraction - lr) / 2) * (1 - std::cos(M_PI * progress));
}

TaskScore fit_best_on_valid(torch::nn::Module& module, int64_t train_size, const ProbeConfig& c,
                            const std::function<torch::Tensor(const torch::Tensor& indices)>& batch_loss,
                            const std::function<double()>& valid_score) {
  if (c.epochs < 1 || c.batch_size < 1) throw Error("probe: epochs and batch size must be positive");
  if (train_size < 1) throw Error("probe: the training split is empty");
  torch::optim::Adam opt(module.parameters(), torch::optim::AdamOptions(c.lr));
  auto weights = [&] {
    std::vector<torch::Tensor> w = module.parameters();
    for (const auto& b : module.buffers()) w.push_back(b);
    return w;
  };
  TaskScore s;
  std::vector<torch::Tensor> best;
  const int64_t per_epoch = (train_size + c.batch_size - 1) / c.batch_size;
  for (int epoch = 1; epoch <= c.epochs; ++epoch) {
    const double lr = xares_epoch_lr(c.lr, c.final_lr_fraction, epoch, c.epochs);
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
    module.train();
    const torch::Tensor order = torch::randperm(train_size, torch::kInt64);
    double loss_sum = 0;
    for (int64_t b = 0; b < per_epoch; ++b) {
      const int64_t start = b * c.batch_size;
      const torch::Tensor idx = order.narrow(0, start, std::min<int64_t>(c.batch_size, train_size - start));
      opt.zero_grad();
      const torch::Tensor loss = batch_loss(idx);
      loss.backward();
      opt.step();
      loss_sum += loss.item<double>();
    }
    s.epoch_loss.push_back(loss_sum / static_cast<double>(per_epoch));
    module.eval();
    double v;
    {
      torch::NoGradGuard no_grad;
      v = valid_score();
    }
    s.epoch_valid.push_back(v);
    if (epoch == 1 || v > s.valid) {  // ignite keeps the first best: only a strictly higher score replaces it
      s.valid = v;
      s.best_epoch = epoch;
      best.clear();
      for (const auto& w : weights()) best.push_back(w.detach().clone());
    }
  }
  torch::NoGradGuard no_grad;
  const auto now = weights();
  for (std::size_t i = 0; i < now.size(); ++i) now[i].copy_(best[i]);
  return s;
}

// ------------------------------------------------------------------------------------ probes

TaskScore run_multilabel_probe(const MultiLabelSet& train, const MultiLabelSet& valid,
                               const MultiLabelSet& test, int64_t classes, const ProbeConfig& c) {
  if (classes < 1) throw Error("multi-label probe: need at least 1 class, got " + n_str(classes));
  const int64_t dim = train.x.defined() && train.x.dim() == 2 ? train.x.size(1) : 0;
  for (const auto& [s, name] :
       {std::pair<const MultiLabelSet*, const char*>{&train, "train"}, {&valid, "valid"}, {&test, "test"}}) {
    check_rows("multi-label probe", name, s->x, s->y, dim);
    if (s->y.dim() != 2 || s->y.size(1) != classes)
      throw Error(std::string("multi-label probe: the ") + name + " targets must be (N, " + n_str(classes) +
                  ")");
  }
  torch::manual_seed(c.seed);
  torch::nn::Sequential head = linear_head(dim, classes);
  const torch::Tensor x = train.x.to(torch::kFloat32), y = train.y.to(torch::kFloat32);
  auto score = [&](const MultiLabelSet& s) {
    return average_precision(head->forward(s.x.to(torch::kFloat32)), s.y);
  };
  TaskScore r = fit_best_on_valid(
      *head, x.size(0), c,
      [&](const torch::Tensor& idx) {
        return bce(head->forward(x.index_select(0, idx)), y.index_select(0, idx), 1.0);
      },
      [&] { return score(valid); });
  torch::NoGradGuard no_grad;
  head->eval();
  r.test = score(test);
  return r;
}

TaskScore run_frame_probe(const FrameSet& train, const FrameSet& valid, const FrameSet& test, int64_t classes,
                          double pos_weight, int64_t pool_frames, bool micro, const ProbeConfig& c) {
  if (classes < 1) throw Error("frame probe: need at least 1 class, got " + n_str(classes));
  if (pool_frames < 1) throw Error("frame probe: pool_frames must be positive, got " + n_str(pool_frames));
  if (!(pos_weight > 0)) throw Error("frame probe: pos_weight must be positive");
  const int64_t dim =
      !train.x.empty() && train.x[0].defined() && train.x[0].dim() == 2 ? train.x[0].size(1) : 0;
  check_frames(train, "train", dim, classes);
  check_frames(valid, "valid", dim, classes);
  check_frames(test, "test", dim, classes);
  torch::manual_seed(c.seed);
  torch::nn::Sequential head = linear_head(dim, classes);
  TaskScore r = fit_best_on_valid(
      *head, train.size(), c,
      [&](const torch::Tensor& idx) {
        const std::vector<int64_t> rows(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
        auto [x, y] = frame_batch(train, rows);
        return bce(head->forward(x), y, pos_weight);
      },
      [&] { return frame_metric(head, valid, c.batch_size, pool_frames, micro); });
  torch::NoGradGuard no_grad;
  head->eval();
  r.test = frame_metric(head, test, c.batch_size, pool_frames, micro);
  return r;
}

TaskScore run_retrieval_probe(const CaptionSet& train, const CaptionSet& valid, const CaptionSet& test,
                              const data::BertWordPiece& words, int64_t hidden, const ProbeConfig& c) {
  if (hidden < 1) throw Error("retrieval probe: hidden size must be positive, got " + n_str(hidden));
  const int64_t dim = train.x.defined() && train.x.dim() == 2 ? train.x.size(1) : 0;
  check_captions(train, "train", dim);
  check_captions(valid, "valid", dim);
  check_captions(test, "test", dim);
  const CaptionIds train_ids = caption_ids(words, train.captions),
                   valid_ids = caption_ids(words, valid.captions),
                   test_ids = caption_ids(words, test.captions);
  torch::manual_seed(c.seed);
  RetrievalMlp model(dim, words.vocab_size(), hidden, words.pad_id());
  const torch::Tensor x = train.x.to(torch::kFloat32);
  TaskScore r = fit_best_on_valid(
      *model, train.size(), c,
      [&](const torch::Tensor& idx) {
        auto [audio, text] = model->forward(x.index_select(0, idx), batch_ids(train_ids, idx));
        return audio_text_contrastive_loss(audio, text, model->criterion->temperature);
      },
      [&] { return retrieval_metric(model, valid, valid_ids, c.batch_size); });
  torch::NoGradGuard no_grad;
  model->eval();
  r.test = retrieval_metric(model, test, test_ids, c.batch_size);
  return r;
}

torch::Tensor audio_text_contrastive_loss(const torch::Tensor& audio, const torch::Tensor& text,
                                          const torch::Tensor& log_scale, bool embed_regularization) {
  if (audio.dim() != 2 || text.sizes() != audio.sizes())
    throw Error("contrastive loss: audio and text embeddings must both be (B, H)");
  const torch::Tensor scale = log_scale.exp();
  const torch::Tensor a2t = scale * audio.mm(text.t()), t2a = scale * text.mm(audio.t());
  // The diagonal is the target: the cross-entropy of each row against its own column.
  const torch::Tensor loss_a2t = -F::log_softmax(a2t, F::LogSoftmaxFuncOptions(1)).diagonal().mean();
  const torch::Tensor loss_t2a = -F::log_softmax(t2a, F::LogSoftmaxFuncOptions(1)).diagonal().mean();
  torch::Tensor loss = (loss_a2t + loss_t2a) / 2;
  if (embed_regularization)
    loss =
        loss + audio.abs().mean() / audio.pow(2).sum().sqrt() + text.abs().mean() / text.pow(2).sum().sqrt();
  return loss;
}

LabelledSet concat_sets(const std::vector<LabelledSet>& parts) {
  if (parts.empty()) throw Error("k-fold: no sets to concatenate");
  std::vector<torch::Tensor> x, y;
  for (const auto& p : parts) x.push_back(p.x), y.push_back(p.y);
  return {torch::cat(x), torch::cat(y)};
}

MultiLabelSet concat_sets(const std::vector<MultiLabelSet>& parts) {
  if (parts.empty()) throw Error("k-fold: no sets to concatenate");
  std::vector<torch::Tensor> x, y;
  for (const auto& p : parts) x.push_back(p.x), y.push_back(p.y);
  return {torch::cat(x), torch::cat(y)};
}

FrameSet concat_sets(const std::vector<FrameSet>& parts) {
  if (parts.empty()) throw Error("k-fold: no sets to concatenate");
  FrameSet out;
  for (const auto& p : parts) {
    out.x.insert(out.x.end(), p.x.begin(), p.x.end());
    out.y.insert(out.y.end(), p.y.begin(), p.y.end());
  }
  return out;
}

CaptionSet concat_sets(const std::vector<CaptionSet>& parts) {
  if (parts.empty()) throw Error("k-fold: no sets to concatenate");
  CaptionSet out;
  out.num_caps = parts[0].num_caps;
  std::vector<torch::Tensor> x;
  for (const auto& p : parts) {
    if (p.num_caps != out.num_caps)
      throw Error("k-fold: folds have " + std::to_string(out.num_caps) + " and " +
                  std::to_string(p.num_caps) + " captions per clip");
    x.push_back(p.x);
    out.captions.insert(out.captions.end(), p.captions.begin(), p.captions.end());
  }
  out.x = torch::cat(x);
  return out;
}

// ----------------------------------------------------------------------------------- metrics

double average_precision(const torch::Tensor& scores, const torch::Tensor& targets) {
  if (!scores.defined() || !targets.defined() || scores.sizes() != targets.sizes() || scores.dim() < 1 ||
      scores.dim() > 2 || scores.size(0) == 0)
    throw Error("average precision: scores and targets must both be (N, C) or (N) with N > 0");
  const torch::Tensor s =
      (scores.dim() == 1 ? scores.unsqueeze(1) : scores).to(torch::kFloat64).t().contiguous();
  const torch::Tensor t =
      binary_targets(targets.dim() == 1 ? targets.unsqueeze(1) : targets, "average precision: targets")
          .t()
          .contiguous();
  if (!torch::isfinite(s).all().item<bool>()) throw Error("average precision: a score is not finite");
  const int64_t classes = s.size(0), n = s.size(1);
  double sum = 0;
  std::vector<int64_t> order(static_cast<std::size_t>(n));
  for (int64_t k = 0; k < classes; ++k) {
    const double* sc = s[k].data_ptr<double>();
    const int64_t* tr = t[k].data_ptr<int64_t>();
    int64_t positives = 0;
    for (int64_t i = 0; i < n; ++i) positives += tr[i];
    if (positives == 0) continue;  // recall is 1 at every threshold: AP 0
    for (int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return sc[a] > sc[b]; });
    double ap = 0, last_recall = 0;
    int64_t tp = 0;
    for (int64_t i = 0; i < n; ++i) {
      tp += tr[order[static_cast<std::size_t>(i)]];
      // One threshold per distinct score: the end of a run of equal scores.
      if (i + 1 < n && sc[order[static_cast<std::size_t>(i + 1)]] == sc[order[static_cast<std::size_t>(i)]])
        continue;
      const double recall = static_cast<double>(tp) / static_cast<double>(positives);
      const double precision = static_cast<double>(tp) / static_cast<double>(i + 1);
      ap += (recall - last_recall) * precision;
      last_recall = recall;
    }
    sum += std::max(0.0, ap);
  }
  return sum / static_cast<double>(classes);
}

double segment_f1(const std::vector<torch::Tensor>& logits, const std::vector<torch::Tensor>& targets,
                  int64_t pool_frames, bool micro) {
  if (pool_frames < 1) throw Error("segment F1: pool_frames must be positive, got " + n_str(pool_frames));
  if (logits.empty() || logits.size() != targets.size())
    throw Error("segment F1: " + std::to_string(logits.size()) + " prediction batches and " +
                std::to_string(targets.size()) + " target batches");
  int64_t classes = -1;
  std::vector<int64_t> tp, fp, fn;
  int64_t tn = 0, rows = 0;
  bool any_true0 = false, any_true1 = false, any_pred0 = false, any_pred1 = false;
  for (std::size_t b = 0; b < logits.size(); ++b) {
    torch::Tensor l = logits[b], y = targets[b];
    if (!l.defined() || !y.defined() || l.sizes() != y.sizes() || l.dim() < 2 || l.dim() > 3)
      throw Error("segment F1: batch " + std::to_string(b) +
                  ": logits and targets must both be (B, T, C) or (T, C) of one shape");
    if (l.dim() == 2) l = l.unsqueeze(0), y = y.unsqueeze(0);
    if (classes < 0) {
      classes = l.size(2);
      tp.assign(static_cast<std::size_t>(classes), 0);
      fp = fn = tp;
    } else if (l.size(2) != classes) {
      throw Error("segment F1: batch " + std::to_string(b) + " has " + n_str(l.size(2)) +
                  " classes, batch 0 " + n_str(classes));
    }
    const int64_t segments = l.size(1) / pool_frames;
    if (segments == 0)
      throw Error("segment F1: batch " + std::to_string(b) + " has " + n_str(l.size(1)) +
                  " frames, fewer than pool_frames " + n_str(pool_frames));
    auto pool = [&](const torch::Tensor& v) {  // max_pool1d over time, kernel = stride, floor
      return v.narrow(1, 0, segments * pool_frames)
          .reshape({v.size(0), segments, pool_frames, classes})
          .amax(2)
          .reshape({-1, classes});
    };
    const torch::Tensor pred = binary_targets(pool(l.detach().sigmoid().round()), "segment F1: predictions");
    const torch::Tensor truth = binary_targets(pool(y.detach()).to(torch::kInt64), "segment F1: targets");
    rows += pred.size(0);
    const torch::Tensor both = (pred * truth).sum(0), p = pred.sum(0), t = truth.sum(0);
    for (int64_t k = 0; k < classes; ++k) {
      const int64_t hit = both[k].item<int64_t>();
      tp[k] += hit;
      fp[k] += p[k].item<int64_t>() - hit;
      fn[k] += t[k].item<int64_t>() - hit;
    }
    tn += ((1 - pred) * (1 - truth)).sum().item<int64_t>();
    any_true1 |= truth.any().item<bool>();
    any_pred1 |= pred.any().item<bool>();
    any_true0 |= (truth == 0).any().item<bool>();
    any_pred0 |= (pred == 0).any().item<bool>();
  }
  auto f1 = [](int64_t tp, int64_t fp, int64_t fn) {
    const int64_t d = 2 * tp + fp + fn;
    return d == 0 ? 0.0 : 2.0 * static_cast<double>(tp) / static_cast<double>(d);
  };
  // One column: sklearn's binary targets, every present label (0 and / or 1) a class.
  struct Counts {
    int64_t tp, fp, fn;
  };
  std::vector<Counts> per_class;
  if (classes == 1) {
    if (any_true0 || any_pred0) per_class.push_back({tn, fn[0], fp[0]});
    if (any_true1 || any_pred1) per_class.push_back({tp[0], fp[0], fn[0]});
  } else {
    for (int64_t k = 0; k < classes; ++k) per_class.push_back({tp[k], fp[k], fn[k]});
  }
  if (micro) {
    Counts total{0, 0, 0};
    for (const auto& q : per_class) total.tp += q.tp, total.fp += q.fp, total.fn += q.fn;
    return f1(total.tp, total.fp, total.fn);
  }
  double sum = 0;
  for (const auto& q : per_class) sum += f1(q.tp, q.fp, q.fn);
  return sum / static_cast<double>(per_class.size());
}

int64_t segment_pool_frames(double segment_s, double hop_ms) {
  if (!(segment_s > 0) || !(hop_ms > 0)) throw Error("segment F1: segment length and hop must be positive");
  return static_cast<int64_t>(std::ceil(segment_s / (hop_ms / 1000.0)));
}

RetrievalScores retrieval_scores(const torch::Tensor& audio, const torch::Tensor& text, int num_caps) {
  if (!audio.defined() || !text.defined() || audio.dim() != 2 || audio.sizes() != text.sizes() ||
      audio.size(0) == 0)
    throw Error("retrieval scores: audio and text embeddings must both be (N, D) with N > 0");
  const int64_t n = audio.size(0);
  if (num_caps < 1 || n % num_caps != 0)
    throw Error("retrieval scores: " + n_str(n) + " rows are not a multiple of num_caps " +
                std::to_string(num_caps));
  const int64_t groups = n / num_caps;
  auto unit = [](const torch::Tensor& t) {
    const torch::Tensor d = t.detach().to(torch::kFloat64);
    return d / d.norm(2, 1, true).clamp_min(1e-12);
  };
  const torch::Tensor a = unit(audio), t = unit(text);
  const torch::Tensor first = torch::arange(0, n, num_caps, torch::kInt64);
  // a2t: each clip (its group's first row) against all N captions.
  const torch::Tensor a2t = a.index_select(0, first).mm(t.t()).contiguous();  // (G, N)
  // t2a: each caption against the G clips.
  const torch::Tensor t2a = t.mm(a.index_select(0, first).t()).contiguous();  // (N, G)
  auto finish = [](std::vector<double> pos, double map10) {
    RetrievalDirection d;
    auto recall = [&](int k) {
      double hits = 0;
      for (const double p : pos) hits += p < k;
      return 100.0 * hits / static_cast<double>(pos.size());
    };
    d.r1 = recall(1);
    d.r5 = recall(5);
    d.r10 = recall(10);
    double sum = 0;
    for (const double p : pos) sum += p;
    d.meanr = sum / static_cast<double>(pos.size()) + 1;
    d.medr = std::floor(median(pos)) + 1;
    d.mAP10 = map10;
    return d;
  };
  RetrievalScores out;
  {
    std::vector<double> best(static_cast<std::size_t>(groups));
    double map = 0;
    for (int64_t g = 0; g < groups; ++g) {
      const double* row = a2t[g].data_ptr<double>();
      std::vector<int64_t> ranks;
      for (int64_t i = g * num_caps; i < (g + 1) * num_caps; ++i) ranks.push_back(rank_in_row(row, n, i) + 1);
      std::sort(ranks.begin(), ranks.end());
      double ap = 0;
      for (int k = 0; k < num_caps; ++k)
        ap += ranks[static_cast<std::size_t>(k)] > 10 ? 0.0 : (k + 1.0) / static_cast<double>(ranks[k]);
      map += ap / num_caps;
      best[static_cast<std::size_t>(g)] = static_cast<double>(ranks[0] - 1);
    }
    out.a2t = finish(best, 100.0 * map / static_cast<double>(groups));
  }
  {
    std::vector<double> pos(static_cast<std::size_t>(n));
    double map = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = rank_in_row(t2a[i].data_ptr<double>(), groups, i / num_caps);
      pos[static_cast<std::size_t>(i)] = static_cast<double>(r);
      map += r + 1 > 10 ? 0.0 : 1.0 / static_cast<double>(r + 1);
    }
    out.t2a = finish(pos, 100.0 * map / static_cast<double>(n));
  }
  out.recall_at_1 = (out.a2t.r1 + out.t2a.r1) / 2 / 100;
  return out;
}

double weighted_average(const std::vector<std::pair<double, double>>& score_weight) {
  double sum = 0, weight = 0;
  for (const auto& [s, w] : score_weight) sum += s * w, weight += w;
  return weight != 0 ? sum / weight : 0.0;
}

double wer_inv(const std::vector<std::string>& references, const std::vector<std::string>& hypotheses) {
  if (references.size() != hypotheses.size())
    throw Error("WER: " + std::to_string(references.size()) + " references but " +
                std::to_string(hypotheses.size()) + " hypotheses");
  if (references.empty()) throw Error("WER: no references");
  int64_t errors = 0, words = 0;
  for (std::size_t i = 0; i < references.size(); ++i) {
    const auto ref = jiwer_words(unicode_lower(references[i]));
    if (ref.empty()) throw Error("WER: reference " + std::to_string(i) + " is empty (jiwer refuses those)");
    errors += edit_distance(ref, jiwer_words(unicode_lower(hypotheses[i])));
    words += static_cast<int64_t>(ref.size());
  }
  return std::max(0.0, 1.0 - static_cast<double>(errors) / static_cast<double>(words));
}

}  // namespace losatok::eval
