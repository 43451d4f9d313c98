// Import of Python `torch.save` files (zip format, PyTorch >= 1.6): a dict of tensors,
// possibly nested (`{"state_dict": model.state_dict(), ...}`), including OrderedDicts, which
// LibTorch's own pickle_load rejects. Our own small unpickler reads the pickle opcodes
// torch.save emits and rebuilds tensors from the archive's storage records.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace losatok::io {

struct TorchStateDict {
  std::map<std::string, torch::Tensor> tensors;  // dotted names
  std::vector<std::string> skipped;              // non-tensor entries that were ignored
};

// Where the unpickler finds tensor storages ("data/<key>" records of the archive).
class StorageRecords {
 public:
  virtual ~StorageRecords() = default;
  // The record's bytes (valid until the next call); false when there is no such record.
  virtual bool get(const std::string& name, const void*& data, uint64_t& size) const = 0;
};

// The pickle program of an archive (`data.pkl`) -> tensors; the fuzz target's entry point.
TorchStateDict unpickle_state_dict(const char* pickle, std::size_t size, const StorageRecords& records,
                                   const std::string& what, const std::string& key = "");

// Reads `path`. `key` selects an entry of the top-level dict ("" = "state_dict" when the file
// has one holding a dict, else the whole file); nested dicts are flattened with '.'.
TorchStateDict load_torch_state_dict(const std::string& path, const std::string& key = "");

}  // namespace losatok::io
