// `losatok eval recon | probe | gen | rank` (docs/method.md, "Evaluation"): each prints a table and writes
// the same numbers as JSON.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>

#include "losatok/audio/audio_io.h"
#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/data/extract.h"
#include "losatok/data/feature_cache.h"
#include "losatok/data/hf_tokenizer.h"
#include "losatok/data/manifest.h"
#include "losatok/eval/asr.h"
#include "losatok/eval/instruments.h"
#include "losatok/eval/metrics.h"
#include "losatok/eval/plot.h"
#include "losatok/eval/probe.h"
#include "losatok/eval/representations.h"
#include "losatok/eval/speech_instruments.h"
#include "losatok/eval/xares_suite.h"
#include "losatok/gen/dit_pipeline.h"
#include "losatok/models/qwen2.h"
#include "losatok/models/tokenizer_checkpoint.h"
#include "model_setup.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace losatok::cli {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A plain text table: the first row is the header.
void print_table(const std::vector<std::vector<std::string>>& rows, std::ostream& out = std::cout) {
  std::vector<std::size_t> width;
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  for (std::size_t k = 0; k < rows.size(); ++k) {
    std::string line;
    for (std::size_t i = 0; i < rows[k].size(); ++i)
      line += (i ? "  " : "") + (i == 0 ? rows[k][i] + std::string(width[i] - rows[k][i].size(), ' ')
                                        : std::string(width[i] - rows[k][i].size(), ' ') + rows[k][i]);
    out << line << "\n";
    if (k == 0) out << std::string(line.size(), '-') << "\n";
  }
  out.flush();
}

std::string num(double v, int digits = 3) {
  return std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : std::string("-");
}

json finite_or_null(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}

void write_json(const std::string& path, const json& j) {
  if (path.empty()) return;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  write_file_atomic(path, j.dump(2) + "\n");
  spdlog::info("wrote {}", path);
}

std::vector<std::string> split_list(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) {
    std::size_t start = 0;
    while (start <= item.size()) {
      const std::size_t comma = item.find(',', start);
      const std::string part =
          item.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!part.empty()) out.push_back(part);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------ recon

struct ReconOptions {
  ModelOptions model;
  ConfigOptions config;
  std::string manifest, out = "eval_recon.json";
  int max_clips = 0;
  bool no_stoi = false;
  double chunk_seconds = 30.0;
};

// The reconstruction family's means (eval::recon_metrics()), the audio and the tokenizer's time.
struct ReconSums {
  eval::ReconMeans means;
  double audio_seconds = 0, seconds = 0;
  void add(const eval::ReconScores& s, double audio, double wall) {
    means.add(s);
    audio_seconds += audio, seconds += wall;
  }
  json to_json() const {
    json j = {{"clips", means.clips()}};
    const auto& metrics = eval::recon_metrics();
    for (std::size_t i = 0; i < metrics.size(); ++i) {
      j[metrics[i].key] = finite_or_null(means.mean(i));
      if (!metrics[i].in_validation) j[std::string(metrics[i].key) + "_clips"] = means.count(i);
    }
    j["audio_seconds"] = audio_seconds;
    j["real_time_factor"] = seconds / audio_seconds;
    return j;
  }
  std::vector<std::string> row(const std::string& name) const {
    std::vector<std::string> r = {name, std::to_string(means.clips()), num(audio_seconds, 1)};
    const auto& metrics = eval::recon_metrics();
    for (std::size_t i = 0; i < metrics.size(); ++i) r.push_back(num(means.mean(i), metrics[i].digits));
    r.push_back(num(seconds / audio_seconds, 4));
    return r;
  }
};

int run_recon(const ReconOptions& o, const Context& ctx) {
  LoadedVae m = load_vae(o.model, o.config, ctx);
  if (o.config.print_config) return 0;
  torch::manual_seed(static_cast<uint64_t>(m.config.seed));
  torch::NoGradGuard no_grad;
  const eval::ReconMetrics metrics(m.config.frontend.vocos);
  const int sr = m.config.audio.sample_rate;
  const int64_t chunk_tokens = static_cast<int64_t>(o.chunk_seconds * sr / m.vae->samples_per_token());
  std::vector<data::ManifestEntry> entries = data::read_manifest(o.manifest);
  if (o.max_clips > 0 && static_cast<int>(entries.size()) > o.max_clips) entries.resize(o.max_clips);
  if (m.device.is_cuda()) {
    // One untimed pass, so the real-time factor leaves out CUDA's first-call set-up.
    m.vae->decode_chunked(m.vae->encode(torch::zeros({1, sr}, torch::TensorOptions().device(m.device))).mu,
                          chunk_tokens);
    torch::cuda::synchronize();
  }
  std::map<std::string, ReconSums> by_domain;
  ReconSums all;
  json clips = json::array();
  std::vector<std::string> skipped;
  for (const auto& e : entries) {
    const std::string where = o.manifest + " line " + std::to_string(e.line);
    std::vector<float> w;
    try {
      w = audio::load_audio(e.audio, sr, e.offset, e.duration, m.config.audio.resample_quality);
    } catch (const Error& err) {
      spdlog::warn("{}: {}, skipped", where, first_line(err.what()));
      skipped.push_back(e.audio);
      continue;
    }
    if (static_cast<int64_t>(w.size()) < eval::ReconMetrics::kMinSamples) {
      spdlog::warn("{}: {} samples, too short to score, skipped", where, w.size());
      skipped.push_back(e.audio);
      continue;
    }
    const auto t0 = Clock::now();
    const torch::Tensor y =
        torch::from_blob(w.data(), {1, static_cast<int64_t>(w.size())}, torch::kFloat32).to(m.device).clone();
    torch::Tensor y_hat = m.vae->decode_chunked(m.vae->encode(y).mu, chunk_tokens);
    y_hat = fit_length(y_hat, y.size(1));
    if (m.device.is_cuda()) torch::cuda::synchronize();
    const double wall = seconds_since(t0);  // the tokenizer's time, not the metrics'
    eval::ReconScores s = metrics(y_hat[0], y[0], false);
    if (!o.no_stoi) {
      try {
        s.stoi = eval::stoi(y[0], y_hat[0], sr);
      } catch (const Error& err) {
        spdlog::warn("{}: no STOI ({})", where, first_line(err.what()));
      }
    }
    const double audio_s = static_cast<double>(w.size()) / sr;
    const std::string domain = e.domain.empty() ? "unknown" : e.domain;
    by_domain[domain].add(s, audio_s, wall);
    all.add(s, audio_s, wall);
    json clip = {{"audio", e.audio}, {"domain", domain}, {"seconds", audio_s}};
    for (const auto& metric : eval::recon_metrics()) clip[metric.key] = finite_or_null(s.*metric.field);
    clips.push_back(clip);
  }
  if (all.means.clips() == 0) throw Error("eval recon: no clip of '" + o.manifest + "' could be scored");
  std::vector<std::vector<std::string>> rows = {{"domain", "clips", "audio_s"}};
  for (const auto& metric : eval::recon_metrics()) rows[0].push_back(metric.column);
  rows[0].push_back("rtf");
  json domains = json::object();
  for (const auto& [d, r] : by_domain) {
    rows.push_back(r.row(d));
    domains[d] = r.to_json();
  }
  rows.push_back(all.row("overall"));
  print_table(rows);
  write_json(o.out, {{"command", "eval recon"},
                     {"checkpoint", o.model.checkpoint},
                     {"manifest", o.manifest},
                     {"device", m.device.str()},
                     {"overall", all.to_json()},
                     {"domains", domains},
                     {"skipped", skipped},
                     {"clips", clips}});
  return 0;
}

// ------------------------------------------------------------------------------------ probe

struct ProbeOptions {
  ModelOptions model;
  ConfigOptions config;
  std::string train, valid, test, out = "eval_probe.json";
  std::vector<std::string> representations, tasks = {"label"};
  eval::ProbeConfig probe;
  int batch_size = 8;
  int64_t pca_frames = 100000;
  // --suite xares: X-ARES' tasks from their WebDataset shards (docs/method.md, "Evaluation").
  std::string suite, data, cache, qwen2, bert_vocab, asr_adapters;
  std::vector<std::string> xares_tasks;
  int64_t max_clips = 0;
  double encode_seconds = 60;
  int64_t retrieval_hidden = 1024;
  const CLI::Option *epochs_opt = nullptr, *lr_opt = nullptr, *batch_opt = nullptr;
};

std::string task_label(const data::ManifestEntry& e, const std::string& task) {
  return task == "domain" ? e.domain : task == "split" ? e.split : e.label;
}

// The clips of `split` that carry a `task` label, as a LabelledSet of representation `x`.
eval::LabelledSet labelled(const eval::EncodedSplit& split, const torch::Tensor& x, const std::string& task,
                           const std::vector<std::string>& vocabulary) {
  std::vector<int64_t> rows;
  std::vector<std::string> labels;
  for (std::size_t i = 0; i < split.clips.size(); ++i) {
    const std::string l = task_label(split.clips[i].entry, task);
    if (l.empty()) continue;
    rows.push_back(static_cast<int64_t>(i));
    labels.push_back(l);
  }
  return {x.index_select(0, torch::tensor(rows, torch::kInt64)), eval::label_ids(labels, vocabulary)};
}

// Every representation `mc`'s tokenizer has (the default of eval probe).
std::vector<std::string> tokenizer_representations(const ModelConfig& mc) {
  std::vector<std::string> reps;
  for (const auto& r : eval::representation_names()) {
    const bool semantic = r == "semantic" || r == "pca" || r == "channel_merge";
    if (r == "latent" || (semantic && mc.has_semantic_branch()) || mc.variant == "losatok") reps.push_back(r);
  }
  return reps;
}

int run_xares_command(const ProbeOptions& o, const Context& ctx);

int run_probe_command(const ProbeOptions& o, const Context& ctx) {
  if (o.suite == "xares") return run_xares_command(o, ctx);
  for (const auto& [flag, value] : {std::pair<const char*, const std::string*>{"--train", &o.train},
                                    {"--valid", &o.valid},
                                    {"--test", &o.test}})
    if (value->empty())
      throw Error(std::string("eval probe: ") + flag + " is required (or --suite xares --data DIR)");
  std::vector<std::string> reps = split_list(o.representations);
  // An encoder-only checkpoint serves the representations of the frozen encoder alone; the
  // default (every representation the tokenizer has) needs a whole tokenizer.
  const bool semantic_only = eval::source_tensors(reps) == std::vector<std::string>{"semantic_emb"};
  LoadedVae m = load_vae(o.model, o.config, ctx, /*encoder_only_ok=*/semantic_only);
  if (o.config.print_config) return 0;
  if (reps.empty()) reps = tokenizer_representations(m.config.model);
  const std::vector<std::string> sources = eval::source_tensors(reps);
  const bool need_pca = std::find(reps.begin(), reps.end(), "pca") != reps.end();
  std::map<std::string, eval::EncodedSplit> splits;
  for (const auto& [name, path] :
       {std::pair<std::string, std::string>{"train", o.train}, {"valid", o.valid}, {"test", o.test}}) {
    const auto clips = data::read_sources({{path, 0.0}});
    eval::EncodedSplit s = eval::encode_split(
        *m.vae, m.config, clips, sources, o.batch_size, m.device,
        name == "train" && need_pca ? std::vector<std::string>{"semantic_emb"} : std::vector<std::string>{},
        o.pca_frames);
    spdlog::info("probe: encoded {} {} clips ({:.1f} s of audio, {:.1f}x real time){}", s.clips.size(), name,
                 s.audio_seconds, s.audio_seconds / std::max(s.seconds, 1e-9),
                 s.bad.empty() ? "" : fmt::format(", {} unreadable skipped", s.bad.size()));
    splits.emplace(name, std::move(s));
  }
  const eval::EncodedSplit &train = splits.at("train"), &valid = splits.at("valid"),
                           &test = splits.at("test");
  std::vector<std::vector<std::string>> rows;
  {
    std::vector<std::string> header = {"representation", "dim"};
    for (const auto& t : o.tasks) header.insert(header.end(), {t + "_linear", t + "_knn"});
    rows.push_back(header);
  }
  json results = json::object();
  for (const auto& r : reps) {
    const std::string src = eval::source_tensor(r);
    const auto map = eval::representation_map(r, m.config.model,
                                              r == "pca" ? train.frames.at("semantic_emb") : torch::Tensor());
    const torch::Tensor xtr = map(train.pooled.at(src)), xva = map(valid.pooled.at(src)),
                        xte = map(test.pooled.at(src));
    std::vector<std::string> row = {r, std::to_string(xtr.size(1))};
    json jr = {{"dim", xtr.size(1)}, {"source", src}};
    for (const auto& task : o.tasks) {
      std::vector<std::string> train_labels;
      for (const auto& c : train.clips)
        if (!task_label(c.entry, task).empty()) train_labels.push_back(task_label(c.entry, task));
      const auto vocabulary = eval::label_vocabulary(train_labels);
      const eval::LabelledSet tr = labelled(train, xtr, task, vocabulary),
                              va = labelled(valid, xva, task, vocabulary),
                              te = labelled(test, xte, task, vocabulary);
      const int64_t unseen = (te.y < 0).sum().item<int64_t>();
      if (unseen > 0)
        spdlog::warn(
            "probe: {} of {} test clips have a '{}' label the training split lacks (scored as errors)",
            unseen, te.size(), task);
      const eval::ProbeResult pr =
          eval::run_probe(tr, va, te, static_cast<int64_t>(vocabulary.size()), o.probe);
      row.push_back(num(pr.linear_accuracy));
      row.push_back(num(pr.knn_accuracy));
      jr["tasks"][task] = {{"linear_accuracy", pr.linear_accuracy},
                           {"knn_accuracy", pr.knn_accuracy},
                           {"valid_accuracy", pr.valid_accuracy},
                           {"best_epoch", pr.best_epoch},
                           {"classes", vocabulary.size()},
                           {"chance", 1.0 / static_cast<double>(vocabulary.size())},
                           {"train", tr.size()},
                           {"valid", va.size()},
                           {"test", te.size()},
                           {"test_unseen_labels", unseen}};
    }
    rows.push_back(row);
    results[r] = jr;
  }
  print_table(rows);
  write_json(o.out, {{"command", "eval probe"},
                     {"checkpoint", o.model.checkpoint},
                     {"variant", m.config.model.variant},
                     {"train", o.train},
                     {"valid", o.valid},
                     {"test", o.test},
                     {"protocol",
                      {{"epochs", o.probe.epochs},
                       {"batch_size", o.probe.batch_size},
                       {"lr", o.probe.lr},
                       {"final_lr_fraction", o.probe.final_lr_fraction},
                       {"seed", o.probe.seed},
                       {"knn_k", o.probe.knn_k},
                       {"knn_temperature", o.probe.knn_temperature}}},
                     {"representations", results}});
  return 0;
}

// ----------------------------------------------------------------------------------- xares

json xares_task_json(const eval::XaresTaskResult& t) {
  json j = {{"formal_name", t.formal_name},
            {"column", t.column},
            {"kind", t.kind},
            {"metric", t.metric},
            {"eval_weight", t.eval_weight},
            {"score", finite_or_null(t.score)},
            {"knn", finite_or_null(t.knn)},
            {"valid", finite_or_null(t.valid)},
            {"train", t.train},
            {"valid_size", t.valid_size},
            {"test", t.test}};
  if (!t.fold_scores.empty()) j["folds"] = t.fold_scores;
  if (!t.fold_knn.empty()) j["fold_knn"] = t.fold_knn;
  if (!t.skipped.empty()) j["skipped"] = t.skipped;
  if (!t.hypotheses.empty()) {
    json ex = json::array();
    for (std::size_t i = 0; i < t.hypotheses.size(); ++i)
      ex.push_back({{"reference", t.references[i]}, {"hypothesis", t.hypotheses[i]}});
    j["transcripts"] = ex;
  }
  return j;
}

int run_xares_command(const ProbeOptions& o, const Context& ctx) {
  if (o.data.empty()) throw Error("eval probe --suite xares: --data DIR (the X-ARES data root) is required");
  std::vector<std::string> reps = split_list(o.representations);
  const bool semantic_only =
      !reps.empty() && eval::source_tensors(reps) == std::vector<std::string>{"semantic_emb"};
  LoadedVae m = load_vae(o.model, o.config, ctx, /*encoder_only_ok=*/semantic_only);
  if (o.config.print_config) return 0;
  const ModelConfig& mc = m.config.model;
  if (reps.empty()) {
    reps = tokenizer_representations(mc);
    reps.erase(std::remove(reps.begin(), reps.end(), "pca"), reps.end());  // fitted on frames: not here
  }
  for (const auto& r : reps)
    if (r == "pca")
      throw Error(
          "eval probe --suite xares: representation 'pca' needs a fit on frames; probe the 'sembo' of a "
          "PCA run (configs/ablations/sembo_pca.yaml) instead");

  eval::XaresEncoder enc;
  enc.sample_rate = m.config.audio.sample_rate;
  enc.hop_ms = 1000.0 * static_cast<double>(m.vae->samples_per_token()) / enc.sample_rate;
  enc.sources = eval::source_tensors(reps);
  {
    const data::CacheProducer whole = data::cache_producer("latents", *m.vae, m.config);
    enc.producer = {"xares", whole.weights_hash, whole.config_hash};
  }
  enc.encode = [&](const std::vector<std::vector<float>>& waves) {
    return data::encode_waves(*m.vae, m.config, waves, enc.sources, m.device);
  };
  std::vector<eval::XaresRepresentation> representations;
  for (const auto& r : reps)
    representations.push_back({r, eval::source_tensor(r), eval::representation_map(r, mc)});

  eval::XaresOptions xo;
  xo.data_root = o.data;
  xo.cache_root =
      !o.cache.empty()
          ? o.cache
          : (fs::path(o.out).parent_path() / (fs::path(o.out).stem().string() + "_cache")).string();
  xo.tasks = split_list(o.xares_tasks);
  xo.encode_batch = o.batch_size;
  xo.encode_seconds = o.encode_seconds;
  xo.resample_quality = m.config.audio.resample_quality;
  xo.max_clips = o.max_clips;
  xo.probe = o.probe;
  if (o.epochs_opt && o.epochs_opt->count()) xo.epochs = o.probe.epochs;
  if (o.lr_opt && o.lr_opt->count()) xo.lr = o.probe.lr;
  if (o.batch_opt && o.batch_opt->count()) xo.batch_size = o.probe.batch_size;
  xo.bert_vocab = o.bert_vocab;
  xo.retrieval_hidden = o.retrieval_hidden;
  xo.asr_adapter_dir = o.asr_adapters;
  std::optional<models::Qwen2ForCausalLM> llm;
  std::optional<data::HfTokenizer> llm_tok;
  if (!o.qwen2.empty()) {
    llm = models::load_qwen2(o.qwen2, m.device);
    llm_tok = data::HfTokenizer::load(o.qwen2);
    xo.llm = llm->get();
    xo.llm_tokenizer = &*llm_tok;
    spdlog::info("xares: ASR decoder {} ({} layers, width {}), frozen", o.qwen2,
                 llm->get()->config().num_hidden_layers, llm->get()->config().hidden_size);
  }
  if (!o.asr_adapters.empty()) fs::create_directories(o.asr_adapters);

  const auto results = eval::run_xares_suite(xo, enc, representations);

  // One table per representation, as the paper prints them: a column per task, then the
  // weighted averages.
  json jr = json::object();
  for (const auto& res : results) {
    std::vector<std::string> header = {"task", "metric", "weight", "score", "kNN"};
    std::vector<std::vector<std::string>> rows = {header};
    json tasks = json::object();
    for (const auto& t : res.tasks) {
      rows.push_back({t.column.empty() ? t.task : t.column + " (" + t.task + ")", t.metric,
                      std::to_string(t.eval_weight), t.skipped.empty() ? num(100 * t.score, 2) : "n/a",
                      num(100 * t.knn, 2)});
      tasks[t.task] = xares_task_json(t);
    }
    rows.push_back({"weighted average", "", std::to_string(res.weight), num(100 * res.average, 2),
                    num(100 * res.knn_average, 2)});
    std::cout << "\nX-ARES, representation " << res.representation << " (" << res.dim << "-d)"
              << (res.complete ? "" : ": not all of Table 2's 15 tasks scored") << "\n";
    print_table(rows);
    jr[res.representation] = {{"dim", res.dim},
                              {"average", finite_or_null(res.average)},
                              {"knn_average", finite_or_null(res.knn_average)},
                              {"weight", res.weight},
                              {"complete", res.complete},
                              {"tasks", tasks}};
  }
  write_json(o.out, {{"command", "eval probe"},
                     {"suite", "xares"},
                     {"checkpoint", o.model.checkpoint},
                     {"variant", mc.variant},
                     {"data", o.data},
                     {"cache", xo.cache_root},
                     {"max_clips", o.max_clips},
                     {"qwen2", o.qwen2},
                     {"protocol",
                      {{"epochs", xo.epochs > 0 ? json(xo.epochs) : json("task")},
                       {"batch_size", xo.batch_size > 0 ? json(xo.batch_size) : json("task")},
                       {"lr", xo.lr > 0 ? json(xo.lr) : json("task")},
                       {"final_lr_fraction", o.probe.final_lr_fraction},
                       {"seed", o.probe.seed},
                       {"knn_k", o.probe.knn_k},
                       {"knn_temperature", o.probe.knn_temperature},
                       {"hop_ms", enc.hop_ms}}},
                     {"representations", jr}});
  return 0;
}

// -------------------------------------------------------------------------------------- gen

struct GenOptions {
  ModelOptions model;  // optional here: the tokenizer (or a DiT naming one) for the encoder-space FD
  ConfigOptions config;
  eval::InstrumentFiles instruments;
  eval::SpeechInstrumentFiles speech;
  std::string generated, reference, out = "eval_gen.json";
  std::string wer = "auto";  // auto | on | off | whisper | pocketsphinx
  int wer_clips = 20;        // 0: all
  int batch_size = 8;
  int is_splits = 10;
};

bool is_audio_file(const fs::path& p) {
  static const std::set<std::string> ext = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3"};
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), ::tolower);
  return ext.count(e) > 0;
}

// A generated clip with what `losatok generate` recorded beside it: the task, the reference
// clip its prompt came from (a manifest line used as a prompt) and its audio prompt.
struct GeneratedClip {
  data::Clip clip;
  std::string task, reference, prompt_audio;
};

std::string canonical_or_self(const std::string& p) {
  std::error_code ec;
  const fs::path c = fs::weakly_canonical(p, ec);
  return ec ? p : c.string();
}

// A folder's generated clips: its generated.jsonl (written by `losatok generate`, with the
// texts) when present, else every audio file in it; or a manifest given directly.
std::vector<GeneratedClip> generated_clips(const std::string& path) {
  std::vector<GeneratedClip> out;
  std::string manifest = path;
  if (fs::is_directory(path)) {
    manifest = (fs::path(path) / "generated.jsonl").string();
    if (!fs::exists(manifest)) {
      std::vector<std::string> files;
      for (const auto& e : fs::directory_iterator(path))
        if (e.is_regular_file() && is_audio_file(e.path())) files.push_back(e.path().string());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        GeneratedClip g;
        g.clip.entry.audio = f;
        g.clip.key = f;
        out.push_back(g);
      }
      if (out.empty()) throw Error("eval gen: no audio file in '" + path + "'");
      return out;
    }
  }
  if (!fs::exists(manifest)) throw Error("eval gen: '" + path + "' does not exist");
  // The extra fields by line (read_sources keeps the manifest's own fields only).
  std::map<int, GeneratedClip> extra;
  {
    std::ifstream in(manifest);
    std::string line;
    const auto path_field = [&](const json& j, const char* key) {
      std::string p = j.value(key, std::string());
      if (!p.empty() && fs::path(p).is_relative()) p = (fs::path(manifest).parent_path() / p).string();
      return p.empty() ? p : canonical_or_self(p);
    };
    for (int n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object()) continue;  // read_sources reports it
      GeneratedClip& g = extra[n];
      g.task = j.value("task", std::string());
      g.reference = path_field(j, "reference");
      g.prompt_audio = path_field(j, "prompt_audio");
    }
  }
  for (const auto& c : data::read_sources({{manifest, 0.0}})) {
    GeneratedClip g;
    if (const auto it = extra.find(c.entry.line); it != extra.end()) g = it->second;
    g.clip = c;
    out.push_back(g);
  }
  return out;
}

// The tokenizer checkpoint whose frozen encoder the encoder-space FD uses: --checkpoint itself,
// or, for a DiT checkpoint, the tokenizer it decodes with ("" when it embeds it).
std::string encoder_checkpoint(const GenOptions& o, const Context& ctx) {
  if (o.model.checkpoint.empty()) return {};
  const io::WeightSet w = io::read_weights(o.model.checkpoint, [](const std::string&) { return false; });
  const YAML::Node base = models::checkpoint_config(w);
  if (!base.IsMap() || !base["stage"] || base["stage"].as<std::string>() != "dit") return o.model.checkpoint;
  const RootConfig cfg = resolve_root_config(o.config, ctx, base);
  const std::string tok = gen::find_dit_tokenizer(w, cfg.section<DiTStageConfig>());
  if (tok.empty())
    spdlog::info(
        "eval gen: the DiT '{}' embeds its tokenizer: no encoder-space FD (pass the tokenizer "
        "as --checkpoint for it)",
        o.model.checkpoint);
  return tok;
}

// (generated, reference) index pairs: the reference each prompt came from, else the reference of
// the same file name (audioldm_eval pairs by file name).
std::vector<std::pair<std::size_t, std::size_t>> reference_pairs(const std::vector<GeneratedClip>& gen_clips,
                                                                 const std::vector<data::Clip>& ref_clips) {
  std::map<std::string, std::size_t> ref_by_path, ref_by_name;
  for (std::size_t i = 0; i < ref_clips.size(); ++i) {
    ref_by_path.emplace(canonical_or_self(ref_clips[i].entry.audio), i);
    ref_by_name.emplace(fs::path(ref_clips[i].entry.audio).filename().string(), i);
  }
  std::vector<std::pair<std::size_t, std::size_t>> pairs;
  for (std::size_t i = 0; i < gen_clips.size(); ++i) {
    const auto& g = gen_clips[i];
    if (!g.reference.empty()) {
      if (const auto it = ref_by_path.find(g.reference); it != ref_by_path.end())
        pairs.emplace_back(i, it->second);
    } else if (const auto it = ref_by_name.find(fs::path(g.clip.entry.audio).filename().string());
               it != ref_by_name.end()) {
      pairs.emplace_back(i, it->second);
    }
  }
  return pairs;
}

// Speech for the TTS instruments: a reference clip of the speech domain (or none); a generated
// clip generated for TTS, or of no recorded task and such a domain.
bool is_speech_domain(const std::string& domain) {
  return domain.empty() || domain == "speech";
}
bool is_speech(const GeneratedClip& g) {
  return g.task == "tts" || (g.task.empty() && is_speech_domain(g.clip.entry.domain));
}

// One set of generated clips (a task or domain, or all) against its references.
json gen_group_metrics(const std::vector<std::size_t>& gen, const std::vector<std::size_t>& ref,
                       const std::vector<std::pair<std::size_t, std::size_t>>& pairs,
                       const std::vector<eval::ClipMeasures>& gm, const std::vector<eval::ClipMeasures>& rm,
                       const std::vector<double>& clap_scores, const eval::Instruments& inst, int is_splits) {
  json j = {{"generated_clips", gen.size()}, {"reference_clips", ref.size()}};
  auto stack = [](const std::vector<std::size_t>& idx, const std::vector<eval::ClipMeasures>& m,
                  torch::Tensor eval::ClipMeasures::*field) {
    std::vector<torch::Tensor> rows;
    for (const std::size_t i : idx)
      if ((m[i].*field).defined())
        rows.push_back((m[i].*field).dim() == 1 ? (m[i].*field).unsqueeze(0) : m[i].*field);
    return rows.empty() ? torch::Tensor() : torch::cat(rows);
  };
  auto frechet = [&](const torch::Tensor& a, const torch::Tensor& b, const char* what) -> json {
    if (!a.defined() || !b.defined() || a.size(0) < 2 || b.size(0) < 2) {
      spdlog::warn("eval gen: {}: fewer than 2 generated or reference rows, no distance", what);
      return nullptr;
    }
    if (a.size(0) <= a.size(1) || b.size(0) <= b.size(1))
      spdlog::warn(
          "eval gen: {}: {} / {} rows for {}-d embeddings: singular covariances, the distance is only "
          "a rough, relative number",
          what, a.size(0), b.size(0), a.size(1));
    return eval::frechet_distance(a, b);
  };
  if (inst.has_vggish()) {
    const torch::Tensor a = stack(gen, gm, &eval::ClipMeasures::vggish),
                        b = stack(ref, rm, &eval::ClipMeasures::vggish);
    j["fad_vggish"] = frechet(a, b, "FAD (VGGish)");
    j["vggish_examples_generated"] = a.defined() ? a.size(0) : 0;
    j["vggish_examples_reference"] = b.defined() ? b.size(0) : 0;
  }
  if (inst.has_panns()) {
    j["fd_panns"] = frechet(stack(gen, gm, &eval::ClipMeasures::panns_embedding),
                            stack(ref, rm, &eval::ClipMeasures::panns_embedding), "FD (PANNs)");
    const torch::Tensor logits = stack(gen, gm, &eval::ClipMeasures::panns_logits);
    if (logits.defined() && logits.size(0) >= is_splits) {
      const eval::InceptionScore is = eval::inception_score(logits, is_splits);
      j["inception_score"] = is.mean;
      j["inception_score_std"] = is.std;
    } else if (logits.defined() && logits.size(0) >= 2) {
      const eval::InceptionScore is = eval::inception_score(logits, 1);  // too few clips for the splits
      j["inception_score"] = is.mean;
      j["inception_score_splits"] = 1;
    }
    if (!pairs.empty()) {
      std::vector<torch::Tensor> g, r;
      for (const auto& [gi, ri] : pairs) {
        g.push_back(gm[gi].panns_logits.unsqueeze(0));
        r.push_back(rm[ri].panns_logits.unsqueeze(0));
      }
      const eval::PairedKl kl = eval::paired_kl(torch::cat(g), torch::cat(r));
      j["kl_softmax"] = kl.softmax;
      j["kl_sigmoid"] = kl.sigmoid;
      j["kl_pairs"] = kl.pairs;
    }
  }
  if (inst.has_clap()) {
    double sum = 0;
    int64_t n = 0;
    for (const std::size_t i : gen)
      if (!std::isnan(clap_scores[i])) sum += clap_scores[i], ++n;
    if (n > 0) j["clap_score"] = sum / static_cast<double>(n);
    j["clap_clips"] = n;
  }
  return j;
}

int run_gen(const GenOptions& o, const Context& ctx) {
  if (o.config.print_config) return 0;
  const std::string tok = encoder_checkpoint(o, ctx);
  const auto gen_clips = generated_clips(o.generated);
  const auto ref_clips = data::read_sources({{o.reference, 0.0}});
  if (gen_clips.size() < 2 || ref_clips.size() < 2)
    throw Error("eval gen: need at least 2 generated and 2 reference clips (have " +
                std::to_string(gen_clips.size()) + " and " + std::to_string(ref_clips.size()) + ")");
  json j = {{"command", "eval gen"},
            {"checkpoint", o.model.checkpoint},
            {"generated", o.generated},
            {"reference", o.reference},
            {"generated_clips", gen_clips.size()},
            {"reference_clips", ref_clips.size()}};
  std::vector<std::vector<std::string>> rows = {{"set", "metric", "value"}};
  const std::vector<std::pair<std::size_t, std::size_t>> pairs = reference_pairs(gen_clips, ref_clips);
  // The speech instruments: Whisper only when it is the WER's recogniser.
  eval::SpeechInstrumentFiles speech_files = o.speech;
  const bool whisper_wer =
      o.wer == "whisper" || ((o.wer == "auto" || o.wer == "on") && !o.speech.whisper.empty());
  if (o.wer == "whisper" && o.speech.whisper.empty())
    throw Error("eval gen: --wer whisper needs --whisper (openai's large-v3.pt or the Hugging Face folder)");
  if (!whisper_wer) {
    if (!o.speech.whisper.empty())
      spdlog::warn("eval gen: --wer {}: --whisper '{}' is not used", o.wer, o.speech.whisper);
    speech_files.whisper.clear();
  }
  // The WER's clips: speech with a transcript (a bounded sample of each set, --wer-clips; 0: all).
  std::vector<data::ManifestEntry> gen_texts, ref_texts;
  if (o.wer != "off") {
    const auto room = [&](const std::vector<data::ManifestEntry>& v) {
      return o.wer_clips <= 0 || static_cast<int>(v.size()) < o.wer_clips;
    };
    for (const auto& g : gen_clips)
      if (!g.clip.entry.text.empty() && is_speech(g) && room(gen_texts)) gen_texts.push_back(g.clip.entry);
    for (const auto& c : ref_clips)
      if (!c.entry.text.empty() && is_speech_domain(c.entry.domain) && room(ref_texts))
        ref_texts.push_back(c.entry);
    if (gen_texts.empty() && (o.wer == "on" || o.wer == "whisper" || o.wer == "pocketsphinx"))
      throw Error("eval gen: --wer " + o.wer + ", but no generated speech clip carries a text");
  }
  std::unique_ptr<eval::SpeechInstruments> speech;
  if (speech_files.any())
    speech = std::make_unique<eval::SpeechInstruments>(
        speech_files, resolve_device(o.model.device.empty() ? "cpu" : o.model.device));
  for (const auto& [key, file] : {std::pair<const char*, std::string>{"whisper", speech_files.whisper},
                                  {"sim", speech_files.speaker},
                                  {"mos", speech_files.utmos}})
    if (!file.empty()) j["instruments"][key] = file;

  // The frozen encoder's space (the tokenizer's own teacher: it favours LoSATok, and no paper
  // reports it; kept as a quick check that needs no instrument files).
  std::vector<data::Clip> gen_data;
  for (const auto& g : gen_clips) gen_data.push_back(g.clip);
  if (!tok.empty()) {
    ModelOptions mo = o.model;
    mo.checkpoint = tok;
    LoadedVae m = load_vae(mo, o.config, ctx, /*encoder_only_ok=*/true);
    if (!m.vae->semantic_encoder)
      throw Error("eval gen: the checkpoint has no semantic encoder to embed with");
    const eval::EncodedSplit gen =
        eval::encode_split(*m.vae, m.config, gen_data, {"semantic_emb"}, o.batch_size, m.device);
    const eval::EncodedSplit ref =
        eval::encode_split(*m.vae, m.config, ref_clips, {"semantic_emb"}, o.batch_size, m.device);
    const torch::Tensor g = gen.pooled.at("semantic_emb"), r = ref.pooled.at("semantic_emb");
    if (g.size(0) < 2 || r.size(0) < 2)
      throw Error("eval gen: need at least 2 readable generated and 2 reference clips (have " +
                  std::to_string(g.size(0)) + " and " + std::to_string(r.size(0)) + ")");
    if (g.size(0) <= g.size(1))
      spdlog::warn(
          "eval gen: {} generated clips for {}-d embeddings: the covariance is singular and the "
          "encoder-space Frechet distance is only a rough, relative number",
          g.size(0), g.size(1));
    j["encoder_space"] = {{"tokenizer", tok},
                          {"embedding_dim", g.size(1)},
                          {"frechet_distance", eval::frechet_distance(g, r)},
                          {"diversity_generated", eval::mean_pairwise_cosine_distance(g)},
                          {"diversity_reference", eval::mean_pairwise_cosine_distance(r)}};
    for (const char* k : {"frechet_distance", "diversity_generated", "diversity_reference"})
      rows.push_back({"all", std::string("encoder_") + k, num(j["encoder_space"][k].get<double>(), 4)});
  }

  // The paper's instruments.
  if (o.instruments.any()) {
    const eval::Instruments inst(o.instruments,
                                 resolve_device(o.model.device.empty() ? "cpu" : o.model.device));
    for (const auto& [key, file] : {std::pair<const char*, std::string>{"vggish", o.instruments.vggish},
                                    {"panns", o.instruments.panns},
                                    {"clap", o.instruments.clap},
                                    {"clap_tokenizer", o.instruments.clap_tokenizer}})
      j["instruments"][key] = file;
    auto measure_all = [&](const std::vector<data::Clip>& clips, const char* what) {
      std::vector<eval::ClipMeasures> m;
      for (const auto& c : clips) {
        try {
          m.push_back(inst.measure(c.entry));
        } catch (const Error& e) {
          throw Error(std::string("eval gen: ") + what + " clip '" + c.entry.audio +
                      "': " + first_line(e.what()));
        }
      }
      return m;
    };
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<eval::ClipMeasures> gm = measure_all(gen_data, "generated"),
                                          rm = measure_all(ref_clips, "reference");
    std::string names;
    for (const auto& n : inst.names()) names += (names.empty() ? "" : ", ") + n;
    spdlog::info("eval gen: {} + {} clips through {} in {:.1f} s", gen_data.size(), ref_clips.size(), names,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    // CLAP score per generated clip with a caption: cos(text, audio).
    std::vector<double> clap(gen_clips.size(), std::nan(""));
    if (inst.has_clap()) {
      std::vector<std::string> texts;
      std::vector<std::size_t> with_text;
      for (std::size_t i = 0; i < gen_clips.size(); ++i)
        if (!gen_clips[i].clip.entry.text.empty())
          texts.push_back(gen_clips[i].clip.entry.text), with_text.push_back(i);
      if (!texts.empty()) {
        const torch::Tensor t = inst.clap_text(texts).cpu();
        for (std::size_t k = 0; k < with_text.size(); ++k)
          clap[with_text[k]] = (t[k] * gm[with_text[k]].clap_audio).sum().item<double>();
      }
    }
    if (inst.has_panns() && pairs.empty())
      spdlog::warn(
          "eval gen: no generated clip names its reference clip (generated.jsonl \"reference\", or the "
          "same file name): no KL");
    std::vector<std::size_t> all_gen(gen_clips.size()), all_ref(ref_clips.size());
    std::iota(all_gen.begin(), all_gen.end(), 0);
    std::iota(all_ref.begin(), all_ref.end(), 0);
    auto add_rows = [&](const std::string& set, const json& g) {
      for (const auto& metric : eval::gen_metrics()) {
        const auto it = g.find(metric.key);
        if (it != g.end())
          rows.push_back({set, metric.key, it->is_number() ? num(it->get<double>(), metric.digits) : "-"});
      }
    };
    j["overall"] = gen_group_metrics(all_gen, all_ref, pairs, gm, rm, clap, inst, o.is_splits);
    add_rows("all", j["overall"]);
    // Per task (what each clip was generated for) and per domain, where the clips have more than one.
    for (const char* by : {"tasks", "domains"}) {
      const bool tasks = std::string(by) == "tasks";
      std::map<std::string, std::vector<std::size_t>> groups;
      for (std::size_t i = 0; i < gen_clips.size(); ++i) {
        const std::string key = tasks ? gen_clips[i].task : gen_clips[i].clip.entry.domain;
        if (!key.empty()) groups[key].push_back(i);
      }
      if (groups.size() < 2) continue;
      for (const auto& [name, idx] : groups) {
        // Its references: those its clips were generated from, else the reference clips of its
        // domain, else all of them.
        const std::set<std::size_t> members(idx.begin(), idx.end());
        std::vector<std::pair<std::size_t, std::size_t>> group_pairs;
        std::set<std::size_t> refs;
        for (const auto& p : pairs)
          if (members.count(p.first)) group_pairs.push_back(p), refs.insert(p.second);
        if (refs.size() < 2 && !tasks)
          for (std::size_t r = 0; r < ref_clips.size(); ++r)
            if (ref_clips[r].entry.domain == name) refs.insert(r);
        const std::vector<std::size_t> ref_idx =
            refs.size() >= 2 ? std::vector<std::size_t>(refs.begin(), refs.end()) : all_ref;
        if (idx.size() < 2) {
          spdlog::warn("eval gen: {} '{}' has a single generated clip: no set metrics for it", by, name);
          continue;
        }
        j[by][name] = gen_group_metrics(idx, ref_idx, group_pairs, gm, rm, clap, inst, o.is_splits);
        add_rows(name, j[by][name]);
      }
    }
  } else if (tok.empty() && !speech && (gen_texts.empty() || !eval::Recognizer::find().available())) {
    throw Error(
        "eval gen: nothing to measure: give the instruments (--vggish, --panns, --clap, --whisper, --sim, "
        "--mos) and/or a tokenizer --checkpoint for the encoder-space distance");
  }

  // Speaker similarity and MOS of the speech clips.
  if (speech && (speech->has_speaker() || speech->has_mos())) {
    // A clip's measurement, its failures named by the clip.
    const auto measure = [](const data::ManifestEntry& c, const char* what, const auto& fn) {
      try {
        return fn(eval::SpeechInstruments::read_16k(c));
      } catch (const std::exception& e) {
        throw Error(std::string("eval gen: ") + what + " clip '" + c.audio + "': " + first_line(e.what()));
      }
    };
    const auto t0 = std::chrono::steady_clock::now();
    if (speech->has_speaker()) {
      // The cosine between a generated clip and its audio prompt (seed-tts-eval's prompt vs
      // generation), else the reference utterance it speaks (the ground truth).
      std::map<std::string, torch::Tensor> cache;
      const auto embedding = [&](const data::ManifestEntry& c, const char* what) {
        auto it = cache.find(c.audio);
        if (it == cache.end())
          it = cache
                   .emplace(
                       c.audio,
                       measure(c, what, [&](const torch::Tensor& w) { return speech->speaker_embedding(w); }))
                   .first;
        return it->second;
      };
      std::map<std::size_t, std::size_t> ref_of;
      for (const auto& [gi, ri] : pairs) ref_of.emplace(gi, ri);
      double sum = 0;
      json per_clip = json::array();
      for (std::size_t i = 0; i < gen_clips.size(); ++i) {
        const GeneratedClip& g = gen_clips[i];
        if (!is_speech(g)) continue;
        data::ManifestEntry against;
        if (!g.prompt_audio.empty()) {
          against.audio = g.prompt_audio;
        } else if (const auto it = ref_of.find(i); it != ref_of.end()) {
          against = ref_clips[it->second].entry;
        } else {
          continue;
        }
        const double cos = torch::cosine_similarity(
                               embedding(g.clip.entry, "generated"),
                               embedding(against, g.prompt_audio.empty() ? "reference" : "prompt"), 0, 1e-8)
                               .item<double>();
        sum += cos;
        per_clip.push_back({{"audio", g.clip.entry.audio},
                            {g.prompt_audio.empty() ? "reference" : "prompt_audio", against.audio},
                            {"similarity", cos}});
      }
      j["speaker_similarity"] = {{"model", speech->speaker_name()}, {"pairs", per_clip.size()}};
      if (!per_clip.empty()) {
        const double mean = sum / static_cast<double>(per_clip.size());
        j["speaker_similarity"]["mean"] = mean;
        j["speaker_similarity"]["clips"] = per_clip;
        rows.push_back({"all", "speaker_similarity (WavLM-SV)", num(mean, 4)});
      } else {
        spdlog::warn(
            "eval gen: no generated speech clip has an audio prompt or names its reference (generated.jsonl "
            "\"prompt_audio\" / \"reference\", or the same file name): no speaker similarity");
      }
    }
    if (speech->has_mos()) {
      const auto mos_of = [&](const std::vector<data::ManifestEntry>& clips, const char* what,
                              json* per_clip) {
        double sum = 0;
        for (const auto& c : clips) {
          const double m = measure(c, what, [&](const torch::Tensor& w) { return speech->mos(w); });
          sum += m;
          per_clip->push_back({{"audio", c.audio}, {"mos", m}});
        }
        return sum / static_cast<double>(std::max<std::size_t>(clips.size(), 1));
      };
      std::vector<data::ManifestEntry> g, r;
      for (const auto& c : gen_clips)
        if (is_speech(c)) g.push_back(c.clip.entry);
      for (const auto& c : ref_clips)
        if (is_speech_domain(c.entry.domain)) r.push_back(c.entry);
      json gen_per = json::array(), ref_per = json::array();
      const double gm = mos_of(g, "generated", &gen_per), rm = mos_of(r, "reference", &ref_per);
      j["mos"] = {
          {"model", speech->mos_name()}, {"generated_clips", g.size()}, {"reference_clips", r.size()}};
      if (!g.empty()) {
        j["mos"]["generated"] = gm;
        rows.push_back({"all", "mos_generated (" + speech->mos_name() + ")", num(gm, 3)});
      }
      if (!r.empty()) {
        j["mos"]["reference"] = rm;
        rows.push_back({"all", "mos_reference (" + speech->mos_name() + ")", num(rm, 3)});
      }
      j["mos"]["clips"] = {{"generated", gen_per}, {"reference", ref_per}};
    }
    spdlog::info("eval gen: speaker similarity / MOS in {:.1f} s",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }

  // Word error rate of the speech clips that carry a transcript, generated and reference.
  if (!gen_texts.empty() && whisper_wer) {
    const std::string name = speech->whisper_name();
    const auto wer_json = [](const eval::WerResult& w, const std::vector<data::ManifestEntry>& clips) {
      json per_clip = json::array();
      for (std::size_t i = 0; i < clips.size(); ++i)
        per_clip.push_back({{"audio", clips[i].audio},
                            {"text", clips[i].text},
                            {"transcript", w.transcripts[i]},
                            {"normalized", w.hypotheses[i]},
                            {"errors", w.clip_errors[i]},
                            {"words", w.clip_words[i]}});
      json r = {{"clips", w.clips}, {"words", w.words}, {"errors", w.errors}, {"per_clip", per_clip}};
      // Corpus-level (errors over all reference words) and the per-utterance mean; null without words.
      r["wer"] = std::isfinite(w.wer) ? json(w.wer) : json(nullptr);
      const double um = w.utterance_mean();
      r["utterance_mean"] = std::isfinite(um) ? json(um) : json(nullptr);
      return r;
    };
    const eval::WerResult wg = speech->word_error_rate(gen_texts);
    j["wer"] = {{"recognizer", name},
                {"normalizer", speech->normalizer_name()},
                {"spelling_map", speech->normalizer_file()},
                {"generated_detail", wer_json(wg, gen_texts)}};
    if (std::isfinite(wg.wer)) {
      j["wer"]["generated"] = wg.wer;
      j["wer"]["generated_clips"] = wg.clips;
      rows.push_back({"all", "wer_generated (" + name + ")", num(wg.wer, 4)});
    } else {
      spdlog::warn("eval gen: the generated clips' texts normalise to no words: no WER");
    }
    if (!ref_texts.empty()) {
      const eval::WerResult wr = speech->word_error_rate(ref_texts);
      j["wer"]["reference_detail"] = wer_json(wr, ref_texts);
      if (std::isfinite(wr.wer)) {
        j["wer"]["reference"] = wr.wer;
        j["wer"]["reference_clips"] = wr.clips;
        rows.push_back({"all", "wer_reference (" + name + ")", num(wr.wer, 4)});
      }
    }
  } else if (!gen_texts.empty()) {
    const eval::Recognizer asr = eval::Recognizer::find();
    if (!asr.available()) {
      if (o.wer != "auto") throw Error("eval gen: --wer " + o.wer + ", but " + asr.why_unavailable());
      spdlog::info("eval gen: word error rate skipped: {}", asr.why_unavailable());
      j["wer"] = {{"skipped", asr.why_unavailable()}};
    } else {
      const eval::WerResult wg = asr.word_error_rate(gen_texts);
      j["wer"] = {{"recognizer", asr.name()}, {"generated", wg.wer}, {"generated_clips", wg.clips}};
      rows.push_back({"all", "wer_generated (" + asr.name() + ")", num(wg.wer, 3)});
      if (!ref_texts.empty()) {
        const eval::WerResult wr = asr.word_error_rate(ref_texts);
        j["wer"]["reference"] = wr.wer;
        j["wer"]["reference_clips"] = wr.clips;
        rows.push_back({"all", "wer_reference (" + asr.name() + ")", num(wr.wer, 3)});
      }
    }
  }
  print_table(rows);
  write_json(o.out, j);
  return 0;
}

// ------------------------------------------------------------------------------------- rank

struct RankOptions {
  ModelOptions model;
  ConfigOptions config;
  std::vector<std::string> features, representations;
  std::string manifest, out = "eval_rank.json", plot;
  int64_t max_frames = 20000;
  int batch_size = 8;
};

int run_rank(const RankOptions& o, const Context& ctx) {
  if (o.max_frames < 2) throw Error("eval rank: --max-frames must be at least 2");

  RootConfig cfg;  // its seed draws the frame subsets
  if (o.manifest.empty()) {
    // Caches only: the config sets up logging and the runtime (with a model, load_vae does).
    cfg = resolve_root_config(o.config, ctx);
    if (o.config.print_config) return 0;
  }
  std::vector<std::pair<std::string, torch::Tensor>> matrices;  // name -> (frames, D)
  for (const auto& dir : o.features) {
    const data::FeatureCache cache(dir, {});
    std::map<std::string, std::vector<torch::Tensor>> rows;
    for (const auto& key : cache.keys())
      for (const auto& [name, t] : cache.read(key))
        if (name != "logvar") rows[name].push_back(t.to(torch::kFloat32));
    if (rows.empty()) throw Error("eval rank: the feature cache '" + dir + "' is empty");
    for (auto& [name, v] : rows)
      matrices.emplace_back(
          fs::path(dir).filename().string() + ":" + name,
          eval::subsample_rows(torch::cat(v), o.max_frames, static_cast<uint64_t>(cfg.seed)));
  }
  if (!o.manifest.empty()) {
    if (o.model.checkpoint.empty()) throw Error("eval rank: --manifest needs --checkpoint");
    const auto reps = split_list(o.representations.empty() ? std::vector<std::string>{"semantic,sembo,latent"}
                                                           : o.representations);
    const std::vector<std::string> sources = eval::source_tensors(reps);
    const bool semantic_only = sources == std::vector<std::string>{"semantic_emb"};
    LoadedVae m = load_vae(o.model, o.config, ctx, semantic_only);
    if (o.config.print_config) return 0;
    const auto clips = data::read_sources({{o.manifest, 0.0}});
    const eval::EncodedSplit s =
        eval::encode_split(*m.vae, m.config, clips, sources, o.batch_size, m.device, sources, o.max_frames);
    for (const auto& r : reps) {
      const torch::Tensor f = s.frames.at(eval::source_tensor(r));
      matrices.emplace_back(r,
                            eval::representation_map(r, m.config.model, r == "pca" ? f : torch::Tensor())(f));
    }
  } else if (!o.model.checkpoint.empty()) {
    throw Error("eval rank: --checkpoint needs --manifest");
  }
  if (matrices.empty()) throw Error("eval rank: give --features CACHE or --checkpoint + --manifest");
  std::vector<std::vector<std::string>> rows = {
      {"features", "dim", "frames", "eff_rank", "eff_rank/dim", "pc_50%", "pc_90%", "pc_95%", "pc_99%"}};
  json results = json::object();
  eval::Panel curve{"PCA cumulative explained variance", "components", "explained variance", true, false, {}};
  for (const auto& [name, x] : matrices) {
    const double er = eval::effective_rank(x);
    const torch::Tensor cum = eval::pca_cumulative_variance(x);
    const int64_t dim = x.size(1);
    rows.push_back(
        {name, std::to_string(dim), std::to_string(x.size(0)), num(er, 1), num(er / dim, 3),
         std::to_string(eval::components_for(cum, 0.5)), std::to_string(eval::components_for(cum, 0.9)),
         std::to_string(eval::components_for(cum, 0.95)), std::to_string(eval::components_for(cum, 0.99))});
    std::vector<double> c(cum.data_ptr<double>(), cum.data_ptr<double>() + cum.numel()), k(c.size());
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<double>(i + 1);
    results[name] = {{"dim", dim},
                     {"frames", x.size(0)},
                     {"effective_rank", er},
                     {"components_50", eval::components_for(cum, 0.5)},
                     {"components_90", eval::components_for(cum, 0.9)},
                     {"components_95", eval::components_for(cum, 0.95)},
                     {"components_99", eval::components_for(cum, 0.99)},
                     {"cumulative_explained_variance", c}};
    curve.series.push_back({fmt::format("{} ({}-d, eff. rank {:.1f})", name, dim, er), k, c});
  }
  print_table(rows);
  const std::string png =
      !o.plot.empty()
          ? o.plot
          : (o.out.empty() ? "eval_rank.png" : fs::path(o.out).replace_extension(".png").string());
  json j = {{"command", "eval rank"}, {"features", results}};
  if (eval::write_plot(png, {curve}, 760, 480)) {
    j["plot"] = png;
    std::cout << "plot: " << png << "\n";
  }
  write_json(o.out, j);
  return 0;
}

template <class Options>
void register_action(CLI::App* sub, Context& ctx, const std::shared_ptr<Options>& o,
                     int (*run)(const Options&, const Context&)) {
  on_config_command(*sub, ctx, o->config, [&ctx, o, run]() { return run(*o, ctx); });
}

}  // namespace

void add_eval_command(CLI::App& app, Context& ctx) {
  auto* eval_cmd = app.add_subcommand("eval", "evaluation: reconstruction, probes, generation, feature rank");
  eval_cmd->require_subcommand(1);

  {
    auto o = std::make_shared<ReconOptions>();
    auto* sub = eval_cmd->add_subcommand(
        "recon",
        "tokenizer reconstruction: mel / multi-resolution STFT distance, SI-SDR, STOI per domain, RTF");
    add_model_options(*sub, o->model);
    sub->add_option("--manifest", o->manifest, "JSON Lines manifest of the clips to reconstruct")->required();
    sub->add_option("--out", o->out, "JSON results")->capture_default_str();
    sub->add_option("--max-clips", o->max_clips, "score only the first N clips (0 = all)");
    sub->add_flag("--no-stoi", o->no_stoi, "skip STOI");
    sub->add_option("--chunk-seconds", o->chunk_seconds, "decode long inputs in windows of this length")
        ->capture_default_str();
    register_action(sub, ctx, o, run_recon);
  }
  {
    auto o = std::make_shared<ProbeOptions>();
    auto* sub = eval_cmd->add_subcommand(
        "probe", "X-ARES probes (mean-pooled LayerNorm + Linear, kNN) on frozen representations");
    add_model_options(*sub, o->model);
    std::string names;
    for (const auto& n : eval::representation_names()) names += (names.empty() ? "" : ", ") + n;
    sub->add_option("--representation", o->representations,
                    "comma list or repeated: " + names + " (default: all the tokenizer has)");
    sub->add_option("--train", o->train, "training manifest");
    sub->add_option("--valid", o->valid, "validation manifest (picks the best epoch)");
    sub->add_option("--test", o->test, "test manifest");
    sub->add_option("--suite", o->suite, "xares: X-ARES' tasks from their WebDataset shards under --data")
        ->check(CLI::IsMember({"xares"}));
    sub->add_option("--data", o->data, "X-ARES data root: one folder per task (esc50/, gtzan_genre/, ...)");
    sub->add_option("--xares-task", o->xares_tasks,
                    "X-ARES tasks by name or the paper's column (comma list or repeated; default: Table 2's "
                    "tasks found under --data)");
    sub->add_option("--cache", o->cache, "feature cache folder (default: beside --out)");
    sub->add_option("--qwen2", o->qwen2,
                    "Qwen2.5-0.5B Hugging Face folder for the ASR task (config.json, model.safetensors, "
                    "tokenizer.json)");
    sub->add_option(
        "--bert-vocab", o->bert_vocab,
        "bert-base-uncased vocab.txt for Clotho's text ids (default: the training captions' words)");
    sub->add_option("--max-clips", o->max_clips, "X-ARES: at most this many clips per split or fold (0: all)")
        ->capture_default_str();
    sub->add_option("--encode-seconds", o->encode_seconds,
                    "X-ARES: encode longer clips in windows of this length")
        ->capture_default_str();
    sub->add_option("--retrieval-hidden", o->retrieval_hidden, "X-ARES: Clotho's projection width")
        ->capture_default_str();
    sub->add_option("--asr-adapters", o->asr_adapters, "X-ARES: folder for the trained ASR adapters");
    sub->add_option("--task", o->tasks, "manifest field to predict: label, domain (repeatable)")
        ->check(CLI::IsMember({"label", "domain"}))
        ->capture_default_str();
    o->epochs_opt = sub->add_option("--epochs", o->probe.epochs, "linear probe epochs (--suite: the task's)")
                        ->capture_default_str();
    o->lr_opt =
        sub->add_option("--lr", o->probe.lr, "Adam learning rate (cosine decay to 0.1x; --suite: the task's)")
            ->capture_default_str();
    o->batch_opt = sub->add_option("--probe-batch-size", o->probe.batch_size,
                                   "linear probe batch size (--suite: the task's)")
                       ->capture_default_str();
    sub->add_option("--knn-k", o->probe.knn_k, "kNN neighbours")->capture_default_str();
    sub->add_option("--knn-temperature", o->probe.knn_temperature, "kNN vote temperature")
        ->capture_default_str();
    sub->add_option("--seed", o->probe.seed, "probe initialisation and shuffling")->capture_default_str();
    sub->add_option("--batch-size", o->batch_size, "clips per encoder pass")->capture_default_str();
    sub->add_option("--out", o->out, "JSON results")->capture_default_str();
    register_action(sub, ctx, o, run_probe_command);
  }
  {
    auto o = std::make_shared<GenOptions>();
    auto* sub = eval_cmd->add_subcommand(
        "gen",
        "generated audio: FAD (VGGish), KL / IS / FD (PANNs CNN14), CLAP score (LAION-CLAP) per task and "
        "domain; Frechet distance in the frozen encoder's space; TTS WER (Whisper or pocketsphinx), speaker "
        "similarity (WavLM-SV), MOS (UTMOS22 strong)");
    sub->add_option(
        "--checkpoint", o->model.checkpoint,
        "tokenizer (or the DiT that generated, for its tokenizer): the encoder-space Frechet distance");
    sub->add_flag("--lenient", o->model.lenient, "load the tokenizer tensors that match and list the rest");
    sub->add_option("--device", o->model.device, "cpu, cuda or cuda:N (overrides runtime.device)");
    sub->add_option("--generated", o->generated,
                    "folder of generated audio (its generated.jsonl gives texts, tasks and references) or a "
                    "manifest")
        ->required();
    sub->add_option("--reference", o->reference, "manifest of reference audio")->required();
    sub->add_option("--vggish", o->instruments.vggish,
                    "VGGish weights for the FAD: torchvggish's vggish-10086976.pth");
    sub->add_option("--panns", o->instruments.panns,
                    "PANNs CNN14 weights for KL / IS / FD: Cnn14_16k_mAP=0.438.pth (as audioldm_eval) or "
                    "Cnn14_mAP=0.431.pth");
    sub->add_option("--clap", o->instruments.clap,
                    "LAION-CLAP weights for the CLAP score: 630k-audioset-best.pt");
    sub->add_option("--clap-tokenizer", o->instruments.clap_tokenizer,
                    "the roberta-base folder (vocab.json, merges.txt) for CLAP's text branch");
    sub->add_option("--is-splits", o->is_splits, "Inception Score splits")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    sub->add_option("--wer", o->wer,
                    "word error rate of clips with a text: auto (Whisper when --whisper is given, else "
                    "pocketsphinx when installed), on (the same, required), whisper, pocketsphinx, off")
        ->check(CLI::IsMember({"auto", "on", "off", "whisper", "pocketsphinx"}))
        ->capture_default_str();
    sub->add_option(
           "--wer-clips", o->wer_clips,
           "clips transcribed for the WER: the first N generated and N reference speech clips (0: all)")
        ->capture_default_str();
    sub->add_option(
        "--whisper", o->speech.whisper,
        "Whisper for the WER: openai's large-v3.pt or the Hugging Face openai/whisper-large-v3 folder");
    sub->add_option(
        "--whisper-tokenizer", o->speech.whisper_tokenizer,
        "Whisper's tokenizer: a Hugging Face folder or openai's multilingual.tiktoken (default: beside "
        "--whisper)");
    sub->add_option("--whisper-normalizer", o->speech.whisper_normalizer,
                    "the English normaliser's spelling map: english.json / normalizer.json (default: beside "
                    "--whisper)");
    sub->add_option("--whisper-beam", o->speech.beam_size, "Whisper's beam width (1: greedy)")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    sub->add_option("--language", o->speech.language, "Whisper's language token")->capture_default_str();
    sub->add_option(
        "--sim", o->speech.speaker,
        "speaker similarity (generated vs its prompt's reference clip): UniSpeech's WavLM-Large + "
        "ECAPA-TDNN wavlm_large_finetune.pth");
    sub->add_option("--mos", o->speech.utmos,
                    "MOS of the speech clips: SpeechMOS's utmos22_strong_step7459_v1.pt (UTMOS22 strong)");
    sub->add_option("--batch-size", o->batch_size, "clips per encoder pass")->capture_default_str();
    sub->add_option("--out", o->out, "JSON results")->capture_default_str();
    register_action(sub, ctx, o, run_gen);
  }
  {
    auto o = std::make_shared<RankOptions>();
    auto* sub = eval_cmd->add_subcommand(
        "rank", "effective rank and PCA explained variance of feature matrices (table + PNG)");
    sub->add_option("--features", o->features, "feature cache folder from `losatok extract` (repeatable)");
    sub->add_option("--checkpoint", o->model.checkpoint, "tokenizer checkpoint (with --manifest)");
    sub->add_option("--device", o->model.device, "cpu, cuda or cuda:N (overrides runtime.device)");
    sub->add_option("--manifest", o->manifest, "clips to encode (with --checkpoint)");
    sub->add_option("--representation", o->representations,
                    "with --manifest: comma list (default semantic,sembo,latent)");
    sub->add_option("--max-frames", o->max_frames, "frames per matrix (a seeded subset beyond)")
        ->capture_default_str();
    sub->add_option("--batch-size", o->batch_size, "clips per encoder pass")->capture_default_str();
    sub->add_option("--out", o->out, "JSON results")->capture_default_str();
    sub->add_option("--plot", o->plot, "PNG of the explained-variance curves (default: --out with .png)");
    register_action(sub, ctx, o, run_rank);
  }
}

void add_plot_command(CLI::App& app, Context& ctx) {
  auto* sub =
      app.add_subcommand("plot", "training curves of a run (metrics.jsonl) as PNGs in RUN_DIR/plots/");
  auto dir = std::make_shared<std::string>();
  sub->add_option("run_dir", *dir, "run folder")->required();
  sub->callback([&ctx, dir] {
    ctx.action = [dir]() {
      const auto pngs = eval::plot_run(*dir);
      for (const auto& p : pngs) std::cout << p << "\n";
      if (pngs.empty()) std::cout << "no PNG written (gnuplot missing); data in " << *dir << "/plots/*.tsv\n";
      return 0;
    };
  });
}

// ----------------------------------------------------------------------------------- report

namespace {

// The numeric leaves of an eval JSON (lists and per-clip detail left out), as dotted paths.
void numeric_leaves(const json& j, const std::string& path,
                    std::vector<std::pair<std::string, double>>& out) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items())
      if (k != "clips" || !v.is_array()) numeric_leaves(v, path.empty() ? k : path + "." + k, out);
  } else if (j.is_number()) {
    out.emplace_back(path, j.get<double>());
  }
}

// Rows of one run folder: every validation metric from its first to its last validation.
void run_rows(const std::string& dir, std::vector<std::vector<std::string>>& rows) {
  const std::string path = (fs::path(dir) / "metrics.jsonl").string();
  std::ifstream in(path);
  if (!in) throw Error("report: " + path + " cannot be read (not a run folder?)");
  std::map<std::string, std::pair<int64_t, double>> first, last;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      throw Error("report: " + path + " line " + std::to_string(n) + ": " + first_line(e.what()));
    }
    const int64_t step = j.value("step", int64_t{-1});
    for (const auto& [k, v] : j.items()) {
      if (k.rfind("val/", 0) != 0 || k.find("/sigma_") != std::string::npos || !v.is_number()) continue;
      first.emplace(k, std::make_pair(step, v.get<double>()));
      last[k] = {step, v.get<double>()};
    }
  }
  const std::string name = fs::path(dir).filename().string();
  if (first.empty()) rows.push_back({name, "(no validation yet)", "-"});
  for (const auto& [k, f] : first) {
    const auto& l = last.at(k);
    rows.push_back({name, k + fmt::format(" (step {} -> {})", f.first, l.first),
                    fmt::format("{:.4g} -> {:.4g}", f.second, l.second)});
  }
}

// Rows of one eval JSON: the reconstruction family by its record, anything else by its numbers.
void eval_rows(const std::string& path, std::vector<std::vector<std::string>>& rows) {
  json j;
  try {
    std::ifstream in(path);
    if (!in) throw Error("cannot be read");
    j = json::parse(in);
  } catch (const std::exception& e) {
    throw Error("report: " + path + ": " + first_line(e.what()));
  }
  const std::string name = fs::path(path).filename().string();
  if (j.value("command", std::string()) == "eval recon") {
    std::vector<std::pair<std::string, json>> parts = {{"overall", j.value("overall", json::object())}};
    const json domains = j.value("domains", json::object());
    for (const auto& [d, v] : domains.items()) parts.emplace_back(d, v);
    for (const auto& [scope, r] : parts) {
      if (!r.is_object()) throw Error("report: " + path + ": '" + scope + "' is not an object");
      for (const auto& metric : eval::recon_metrics()) {
        const auto it = r.find(metric.key);
        rows.push_back({name, scope + " " + metric.key,
                        it != r.end() && it->is_number() ? num(it->get<double>(), metric.digits) : "-"});
      }
      const auto rtf = r.find("real_time_factor");
      rows.push_back({name, scope + " real_time_factor",
                      rtf != r.end() && rtf->is_number() ? num(rtf->get<double>(), 4) : "-"});
    }
    return;
  }
  if (j.value("command", std::string()) == "eval gen" && j.contains("instruments") &&
      j["instruments"].is_object())
    // Which files measured: the demo's tiny random-weight instruments say so by their paths.
    for (const auto& [k, v] : j["instruments"].items())
      if (v.is_string() && !v.get<std::string>().empty() && k != "clap_tokenizer")
        rows.push_back({name, "instrument " + k, v.get<std::string>()});
  std::vector<std::pair<std::string, double>> leaves;
  numeric_leaves(j, "", leaves);
  for (const auto& [k, v] : leaves) rows.push_back({name, k, fmt::format("{:.4g}", v)});
}

}  // namespace

void add_report_command(CLI::App& app, Context& ctx) {
  auto* sub = app.add_subcommand(
      "report", "one summary table of run folders (validation metrics, first -> last) and eval JSONs");
  auto paths = std::make_shared<std::vector<std::string>>();
  auto out = std::make_shared<std::string>();
  sub->add_option("paths", *paths, "run folders (RUN_DIR with metrics.jsonl) and eval JSON files")
      ->required();
  sub->add_option("--out,-o", *out, "also write the table to this file");
  sub->callback([&ctx, paths, out] {
    ctx.action = [paths, out]() {
      std::vector<std::vector<std::string>> rows = {{"from", "what", "value"}};
      for (const auto& p : *paths) fs::is_directory(p) ? run_rows(p, rows) : eval_rows(p, rows);
      std::ostringstream text;
      print_table(rows, text);
      std::cout << text.str();
      if (!out->empty()) write_file_atomic(*out, text.str());
      return 0;
    };
  });
}

}  // namespace losatok::cli
