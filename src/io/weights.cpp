// Reading, renaming, loading and exporting model weights by name.
#include "losatok/io/weights.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/io/safetensors.h"
#include "losatok/io/torch_pickle.h"

namespace losatok::io {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

std::string lower_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

// MiDashengLM files hold a 7 B LLM beside the audio encoder: when the names say so and the
// caller gave no filter, only the encoder is read.
bool is_audio_encoder(const std::string& n) {
  return starts_with(n, "audio_encoder.") || starts_with(n, "module.audio_encoder.");
}

template <class Names>
std::function<bool(const std::string&)> encoder_filter(const Names& names,
                                                       const std::function<bool(const std::string&)>& keep) {
  if (keep) return keep;
  for (const auto& n : names)
    if (is_audio_encoder(n)) return is_audio_encoder;
  return {};
}

WeightSet read_sharded(const std::string& index_path,
                       const std::function<bool(const std::string&)>& keep_in) {
  const std::map<std::string, std::string> index = read_shard_index(index_path);
  std::vector<std::string> all_names;
  for (const auto& kv : index) all_names.push_back(kv.first);
  const auto keep = encoder_filter(all_names, keep_in);
  WeightSet out;
  out.source = index_path;
  out.format = "sharded-safetensors";
  // shard file -> the wanted tensors it holds
  std::map<std::string, std::set<std::string>> shards;
  for (const auto& [name, shard] : index) {
    if (keep && !keep(name)) {
      ++out.unread;
      continue;
    }
    shards[shard].insert(name);
  }
  for (const auto& [path, names] : shards) {
    SafetensorsData data = load_safetensors(path, [&](const std::string& n) { return names.count(n) > 0; });
    for (const auto& n : names)
      if (!data.tensors.count(n))
        throw Error("weights '" + path + "': tensor '" + n +
                    "' listed in the shard index is not in the shard");
    for (auto& [n, t] : data.tensors) out.tensors[n] = std::move(t);
  }
  return out;
}

std::string join_names(const std::vector<std::string>& names, std::size_t limit = 6) {
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < limit; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > limit) s += ", ... " + std::to_string(names.size() - limit) + " more";
  return s;
}

std::string shape_str(const torch::Tensor& t) {
  return c10::str(t.sizes());
}

// A file of one of our checkpoint folders is compared with the checksum its progress.json lists:
// a weight file changed after it was written is an error, not a model that silently computes
// something else. Files outside checkpoints have no checksum to compare.
void verify_checkpoint_file(const std::string& path) {
  const std::string recorded = recorded_checksum(path);
  if (recorded.empty()) return;
  const std::string sum = file_xxh64(path);
  if (sum != recorded)
    throw Error("weights '" + path + "' do not match their checksum (xxh64 " + sum + ", progress.json says " +
                recorded + "): the file changed after it was written");
}

}  // namespace

std::string recorded_checksum(const std::string& path) {
  const fs::path progress = fs::path(path).parent_path() / "progress.json";
  std::error_code ec;
  if (!fs::is_regular_file(progress, ec)) return "";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(progress.string(), std::size_t(1) << 20));
  } catch (const std::exception& e) {
    throw Error("checkpoint '" + fs::path(path).parent_path().string() + "': progress.json is unreadable (" +
                first_line(e.what()) + ")");
  }
  const std::string name = fs::path(path).filename().string();
  if (!j.is_object() || !j.contains("files") || !j["files"].is_object() || !j["files"].contains(name))
    return "";
  const nlohmann::json& entry = j["files"][name];
  if (!entry.is_object() || !entry.contains("xxh64") || !entry["xxh64"].is_string()) return "";
  return entry["xxh64"].get<std::string>();
}

std::string resolve_weights_path(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error("weights '" + path + "': no such file or directory");
  if (!fs::is_directory(path, ec)) {
    if (const std::string why = not_regular_file(path); !why.empty())
      throw Error("weights '" + path + "': " + why);
    return path;
  }
  const fs::path dir(path);
  for (const char* name : {"model.safetensors.index.json", "ema.safetensors", "model.safetensors"})
    if (fs::exists(dir / name)) return (dir / name).string();
  throw Error("weights '" + path +
              "': a folder without model.safetensors.index.json, ema.safetensors or model.safetensors");
}

std::map<std::string, std::string> read_shard_index(const std::string& index_path) {
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(read_file(index_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error("weights '" + index_path + "': not a valid shard index: " + first_line(e.what()));
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw Error("weights '" + index_path + "': shard index has no \"weight_map\" object");
  const fs::path dir = fs::path(index_path).parent_path();
  std::map<std::string, std::string> out;
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string())
      throw Error("weights '" + index_path + "': weight_map entry '" + name + "' is not a file name");
    const std::string shard = file.get<std::string>();
    if (shard.find("..") != std::string::npos || fs::path(shard).is_absolute())
      throw Error("weights '" + index_path + "': shard '" + shard + "' is outside the folder");
    out[name] = (dir / shard).string();
  }
  return out;
}

WeightSet read_weights(const std::string& path_in, const std::function<bool(const std::string&)>& keep) {
  const std::string path = resolve_weights_path(path_in);
  if (ends_with(path, ".json")) return read_sharded(path, keep);
  verify_checkpoint_file(path);
  const std::string ext = lower_extension(path);
  WeightSet out;
  out.source = path;
  if (ext == ".pt" || ext == ".pth" || ext == ".ckpt" || ext == ".bin") {
    TorchStateDict sd = load_torch_state_dict(path);
    for (auto& [n, t] : sd.tensors)
      if (!keep || keep(n)) out.tensors.emplace(n, std::move(t));
    out.format = "torch";
    return out;
  }
  std::vector<std::string> names;
  for (const auto& e : read_safetensors_header(path).tensors) names.push_back(e.name);
  const auto filter = encoder_filter(names, keep);
  SafetensorsData data = load_safetensors(path, filter);
  out.unread = names.size() - data.tensors.size();
  out.tensors = std::move(data.tensors);
  out.metadata = std::move(data.metadata);
  out.format = "safetensors";
  return out;
}

bool is_recomputed_buffer(const std::string& name) {
  const std::string last = name.substr(name.rfind('.') + 1);
  return last == "window" || last == "fb";
}

MappedWeights map_to_vae_names(const TensorMap& tensors) {
  MappedWeights out;
  bool midasheng = false;
  for (const auto& kv : tensors) midasheng = midasheng || is_audio_encoder(kv.first);
  if (midasheng) out.scope = "semantic_encoder.encoder.";
  // The released LoSATok semantic_encoder.pth: the semantic encoder module on its own, keys
  // encoder.* and bottleneck.* without the tokenizer's `semantic_encoder.` prefix.
  bool semantic_only = !midasheng && !tensors.empty();
  for (const auto& kv : tensors) {
    const std::string n = starts_with(kv.first, "module.") ? kv.first.substr(7) : kv.first;
    semantic_only = semantic_only && (starts_with(n, "encoder.") || starts_with(n, "bottleneck."));
  }
  if (semantic_only) out.scope = "semantic_encoder.";
  out.layout = midasheng ? "MiDashengLM / Dasheng encoder: audio_encoder.* -> semantic_encoder.encoder.*"
               : semantic_only ? "LoSATok semantic_encoder.pth: encoder.*, bottleneck.* -> semantic_encoder.*"
                               : "LoSATok AudioVAE names";
  for (const auto& [name_in, t] : tensors) {
    std::string name = name_in;
    if (starts_with(name, "module.")) name = name.substr(7);
    if (semantic_only) name = "semantic_encoder." + name;
    if (midasheng) {
      if (!starts_with(name, "audio_encoder.")) {
        out.dropped.push_back(name_in);
        continue;
      }
      name = out.scope + name.substr(std::string("audio_encoder.").size());
    }
    const auto bn = name.find("init_bn.1.");
    if (bn != std::string::npos) name.replace(bn, 10, "init_bn.");
    out.tensors[name] = t;
  }
  return out;
}

std::string LoadReport::summary() const {
  std::string s = std::to_string(loaded.size()) + " loaded";
  if (!missing.empty()) s += "; " + std::to_string(missing.size()) + " missing (" + join_names(missing) + ")";
  if (!unexpected.empty())
    s += "; " + std::to_string(unexpected.size()) + " unexpected (" + join_names(unexpected) + ")";
  if (!mismatched.empty())
    s += "; " + std::to_string(mismatched.size()) + " wrongly shaped (" + join_names(mismatched, 4) + ")";
  if (!ignored.empty()) s += "; " + std::to_string(ignored.size()) + " recomputed buffers ignored";
  return s;
}

TensorMap module_state(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& p : module.named_parameters(true)) out[p.key()] = p.value().detach().cpu();
  for (const auto& b : module.named_buffers(true)) out[b.key()] = b.value().detach().cpu();
  return out;
}

LoadReport load_weights(torch::nn::Module& module, const TensorMap& tensors, const std::string& source,
                        const LoadOptions& options) {
  std::map<std::string, torch::Tensor> targets;
  for (auto& p : module.named_parameters(true)) targets[p.key()] = p.value();
  for (auto& b : module.named_buffers(true)) targets[b.key()] = b.value();
  LoadReport report;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (const auto& [name, t] : tensors) {
    if (is_recomputed_buffer(name)) {
      report.ignored.push_back(name);
      continue;
    }
    const auto it = targets.find(name);
    if (it == targets.end()) {
      report.unexpected.push_back(name);
    } else if (it->second.sizes() != t.sizes()) {
      report.mismatched.push_back(name + ": checkpoint " + shape_str(t) + " vs model " +
                                  shape_str(it->second));
    } else {
      report.loaded.push_back(name);
      copies.emplace_back(it->second, t);
    }
  }
  for (const auto& [name, target] : targets)
    if (starts_with(name, options.scope) && !tensors.count(name)) report.missing.push_back(name);
  if (options.strict && !report.clean())
    throw Error("checkpoint '" + source + "' does not match the model: " + report.summary() +
                " (check the model config, or pass --lenient to load what matches)");
  torch::NoGradGuard no_grad;
  for (auto& [target, t] : copies) target.copy_(t);
  return report;
}

std::string weight_format_for(const std::string& path) {
  const std::string ext = lower_extension(path);
  return ext == ".pt" || ext == ".pth" || ext == ".bin" ? "pt" : "safetensors";
}

void save_weights(const std::string& path, const TensorMap& tensors, const std::string& format,
                  const std::map<std::string, std::string>& metadata) {
  if (format == "safetensors") {
    save_safetensors(path, tensors, metadata);
  } else if (format == "pt") {
    c10::Dict<std::string, torch::Tensor> dict;
    for (const auto& [name, t] : tensors) dict.insert(name, t.detach().contiguous().cpu());
    const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
    write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
  } else {
    throw Error("export: unknown weight format '" + format + "' (safetensors or pt)");
  }
}

void log_load_report(const std::string& source, const LoadReport& report) {
  if (report.clean())
    spdlog::info("loaded {}: {}", source, report.summary());
  else
    spdlog::warn("loaded {} leniently: {}", source, report.summary());
}

}  // namespace losatok::io
