// Model weights by name (README.md, "Models and checkpoints"): reading every supported checkpoint layout,
// mapping external names onto ours, strict / lenient loading with a report, and export.
#pragma once

#include <torch/nn/module.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace losatok::io {

using TensorMap = std::map<std::string, torch::Tensor>;

struct WeightSet {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;  // safetensors metadata (ours holds the model config)
  std::string source;                           // the file actually read (or the index of shards)
  std::string format;                           // safetensors | torch | sharded-safetensors
  std::size_t unread = 0;                       // tensors left in the file (MiDashengLM's projector and LLM)
};

// Reads a safetensors file; a torch.save file (.pt / .pth / .ckpt / .bin: its "state_dict"
// entry when there is one, else the top-level dict); an HF sharded folder or its
// `model.safetensors.index.json`; or a checkpoint directory holding `ema.safetensors` (preferred)
// or `model.safetensors`. `keep` selects tensors by name (shards without any are not opened);
// without it, a safetensors source that holds `audio_encoder.*` (MiDashengLM) is read for
// those tensors only.
WeightSet read_weights(const std::string& path, const std::function<bool(const std::string&)>& keep = {});

// The XXH64 (16 hex digits) that the progress.json beside `path`, in one of our checkpoint
// folders (train/checkpoint.h), records for that file; "" when none does (a file outside a
// checkpoint, or one written before checksums). An unreadable progress.json is an error.
std::string recorded_checksum(const std::string& path);

// The file `read_weights` would read for `path`: a folder resolves to its index, EMA or model
// weights; anything else is returned as it is.
std::string resolve_weights_path(const std::string& path);

// A shard index (`model.safetensors.index.json`): tensor name -> shard path (next to the index).
// Shard names leaving the folder are refused.
std::map<std::string, std::string> read_shard_index(const std::string& index_path);

// Buffers every loader recomputes (mel filterbanks `*.fb`, STFT windows `*.window`): never
// required, ignored when present.
bool is_recomputed_buffer(const std::string& name);

// External names -> AudioVAE names. MiDashengLM files (`audio_encoder.*`) keep only the encoder,
// renamed to `semantic_encoder.encoder.*`, and set `scope` to that prefix; the original
// Dasheng `init_bn.1.*` becomes `init_bn.*`; a DDP `module.` prefix is dropped. MiDashengLM's
// projector and LLM tensors go to `dropped`. The released LoSATok `semantic_encoder.pth` (only
// `encoder.*` / `bottleneck.*`) gets the `semantic_encoder.` prefix and that scope.
struct MappedWeights {
  TensorMap tensors;
  std::string scope;   // the part of the model the source covers ("" = all of it)
  std::string layout;  // what the source was recognised as, e.g. "MiDashengLM audio_encoder.* -> ..."
  std::vector<std::string> dropped;
};
MappedWeights map_to_vae_names(const TensorMap& tensors);

struct LoadReport {
  std::vector<std::string> loaded, missing, unexpected, mismatched, ignored;
  bool clean() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  // "N loaded; M missing (a, b, ...); ..." on one line.
  std::string summary() const;
};

struct LoadOptions {
  bool strict = true;  // any missing / unexpected / wrongly shaped key is an error
  // Only module entries under this prefix are expected (a partial checkpoint, e.g. the
  // semantic encoder alone); "" = all of them.
  std::string scope;
};

// Copies `tensors` into `module`'s parameters and buffers by name (converting dtype and
// device). Strict mode checks everything before touching the module, so a failed load leaves
// it unchanged. `source` names the checkpoint in errors.
LoadReport load_weights(torch::nn::Module& module, const TensorMap& tensors, const std::string& source,
                        const LoadOptions& options = {});

// Logs a load on one line: info when clean, a warning listing what did not match when lenient.
void log_load_report(const std::string& source, const LoadReport& report);

// Parameters and buffers by dotted name, on the CPU.
TensorMap module_state(const torch::nn::Module& module);

// Writes `tensors` as safetensors (with `metadata`) or as a torch.save-compatible `.pt` zip
// that Python's torch.load returns as a plain dict of tensors. Atomic (temporary + rename).
void save_weights(const std::string& path, const TensorMap& tensors, const std::string& format,
                  const std::map<std::string, std::string>& metadata = {});
// "safetensors" or "pt" from the file name (.pt / .pth / .bin -> pt), else safetensors.
std::string weight_format_for(const std::string& path);

}  // namespace losatok::io
