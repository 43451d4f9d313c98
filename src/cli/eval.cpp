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
#include <set>
#include <sstream>

#include "losatok/audio/audio_io.h"
#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/data/feature_cache.h"
#include "losatok/data/manifest.h"
#include "losatok/eval/asr.h"
#include "losatok/eval/metrics.h"
#include "losatok/eval/plot.h"
#include "losatok/eval/probe.h"
#include "losatok/eval/representations.h"
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

int run_probe_command(const ProbeOptions& o, const Context& ctx) {
  std::vector<std::string> reps = split_list(o.representations);
  // An encoder-only checkpoint serves the representations of the frozen encoder alone; the
  // default (every representation the tokenizer has) needs a whole tokenizer.
  const bool semantic_only = eval::source_tensors(reps) == std::vector<std::string>{"semantic_emb"};
  LoadedVae m = load_vae(o.model, o.config, ctx, /*encoder_only_ok=*/semantic_only);
  if (o.config.print_config) return 0;
  if (reps.empty()) {
    const ModelConfig& mc = m.config.model;
    for (const auto& r : eval::representation_names()) {
      const bool semantic = r == "semantic" || r == "pca" || r == "channel_merge";
      if (r == "latent" || (semantic && mc.has_semantic_branch()) || mc.variant == "losatok")
        reps.push_back(r);
    }
  }
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

// -------------------------------------------------------------------------------------- gen

struct GenOptions {
  ModelOptions model;
  ConfigOptions config;
  std::string generated, reference, out = "eval_gen.json";
  std::string wer = "auto";  // auto | on | off
  int wer_clips = 20;
  int batch_size = 8;
};

bool is_audio_file(const fs::path& p) {
  static const std::set<std::string> ext = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3"};
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), ::tolower);
  return ext.count(e) > 0;
}

// A folder's generated clips: its generated.jsonl (written by `losatok generate`, with the
// texts) when present, else every audio file in it; or a manifest given directly.
std::vector<data::Clip> generated_clips(const std::string& path) {
  if (fs::is_directory(path)) {
    const fs::path manifest = fs::path(path) / "generated.jsonl";
    if (fs::exists(manifest)) return data::read_sources({{manifest.string(), 0.0}});
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(path))
      if (e.is_regular_file() && is_audio_file(e.path())) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    std::vector<data::Clip> clips;
    for (const auto& f : files) {
      data::Clip c;
      c.entry.audio = f;
      c.key = f;
      clips.push_back(c);
    }
    if (clips.empty()) throw Error("eval gen: no audio file in '" + path + "'");
    return clips;
  }
  if (!fs::exists(path)) throw Error("eval gen: '" + path + "' does not exist");
  return data::read_sources({{path, 0.0}});
}

int run_gen(const GenOptions& o, const Context& ctx) {
  LoadedVae m = load_vae(o.model, o.config, ctx, /*encoder_only_ok=*/true);
  if (o.config.print_config) return 0;
  if (!m.vae->semantic_encoder) throw Error("eval gen: the checkpoint has no semantic encoder to embed with");
  const auto gen_clips = generated_clips(o.generated);
  const auto ref_clips = data::read_sources({{o.reference, 0.0}});
  const eval::EncodedSplit gen =
      eval::encode_split(*m.vae, m.config, gen_clips, {"semantic_emb"}, o.batch_size, m.device);
  const eval::EncodedSplit ref =
      eval::encode_split(*m.vae, m.config, ref_clips, {"semantic_emb"}, o.batch_size, m.device);
  const torch::Tensor g = gen.pooled.at("semantic_emb"), r = ref.pooled.at("semantic_emb");
  if (g.size(0) < 2 || r.size(0) < 2)
    throw Error("eval gen: need at least 2 generated and 2 reference clips (have " +
                std::to_string(g.size(0)) + " and " + std::to_string(r.size(0)) + ")");
  const double fd = eval::frechet_distance(g, r);
  const double div_gen = eval::mean_pairwise_cosine_distance(g),
               div_ref = eval::mean_pairwise_cosine_distance(r);
  json j = {{"command", "eval gen"},          {"checkpoint", o.model.checkpoint},
            {"generated", o.generated},       {"reference", o.reference},
            {"generated_clips", g.size(0)},   {"reference_clips", r.size(0)},
            {"embedding_dim", g.size(1)},     {"frechet_distance", fd},
            {"diversity_generated", div_gen}, {"diversity_reference", div_ref}};
  if (g.size(0) <= g.size(1))
    spdlog::warn(
        "eval gen: {} generated clips for {}-d embeddings: the covariance is singular and the Frechet "
        "distance is only a rough, relative number",
        g.size(0), g.size(1));
  std::vector<std::vector<std::string>> rows = {{"metric", "value"},
                                                {"frechet_distance", num(fd, 4)},
                                                {"diversity_generated", num(div_gen, 4)},
                                                {"diversity_reference", num(div_ref, 4)}};
  // Word error rate of the clips that carry a transcript (TTS), generated and reference.
  if (o.wer != "off") {
    std::vector<data::ManifestEntry> gen_texts, ref_texts;
    // pocketsphinx runs at about real time on unintelligible audio: a bounded sample of each set.
    for (const auto& c : gen.clips)
      if (!c.entry.text.empty() && static_cast<int>(gen_texts.size()) < o.wer_clips)
        gen_texts.push_back(c.entry);
    for (const auto& c : ref.clips)
      if (!c.entry.text.empty() && (c.entry.domain.empty() || c.entry.domain == "speech") &&
          static_cast<int>(ref_texts.size()) < o.wer_clips)
        ref_texts.push_back(c.entry);
    const eval::Recognizer asr = eval::Recognizer::find();
    if (gen_texts.empty()) {
      if (o.wer == "on") throw Error("eval gen: --wer on, but no generated clip carries a text");
    } else if (!asr.available()) {
      if (o.wer == "on") throw Error("eval gen: --wer on, but " + asr.why_unavailable());
      spdlog::info("eval gen: word error rate skipped: {}", asr.why_unavailable());
      j["wer"] = {{"skipped", asr.why_unavailable()}};
    } else {
      const eval::WerResult wg = asr.word_error_rate(gen_texts);
      j["wer"] = {{"recognizer", asr.name()}, {"generated", wg.wer}, {"generated_clips", wg.clips}};
      rows.push_back({"wer_generated (" + asr.name() + ")", num(wg.wer, 3)});
      if (!ref_texts.empty()) {
        const eval::WerResult wr = asr.word_error_rate(ref_texts);
        j["wer"]["reference"] = wr.wer;
        j["wer"]["reference_clips"] = wr.clips;
        rows.push_back({"wer_reference (" + asr.name() + ")", num(wr.wer, 3)});
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
    sub->add_option("--train", o->train, "training manifest")->required();
    sub->add_option("--valid", o->valid, "validation manifest (picks the best epoch)")->required();
    sub->add_option("--test", o->test, "test manifest")->required();
    sub->add_option("--task", o->tasks, "manifest field to predict: label, domain (repeatable)")
        ->check(CLI::IsMember({"label", "domain"}))
        ->capture_default_str();
    sub->add_option("--epochs", o->probe.epochs, "linear probe epochs")->capture_default_str();
    sub->add_option("--lr", o->probe.lr, "Adam learning rate (cosine decay to 0.1x)")->capture_default_str();
    sub->add_option("--probe-batch-size", o->probe.batch_size, "linear probe batch size")
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
        "generated audio: Frechet distance in the frozen encoder's space, diversity, WER (pocketsphinx)");
    add_model_options(*sub, o->model);
    sub->add_option("--generated", o->generated,
                    "folder of generated audio (its generated.jsonl gives the texts) or a manifest")
        ->required();
    sub->add_option("--reference", o->reference, "manifest of reference audio")->required();
    sub->add_option("--wer", o->wer,
                    "word error rate of clips with a text: auto (when pocketsphinx is installed), on, off")
        ->check(CLI::IsMember({"auto", "on", "off"}))
        ->capture_default_str();
    sub->add_option("--wer-clips", o->wer_clips,
                    "clips transcribed for the WER: the first N generated and N reference speech clips")
        ->capture_default_str();
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
