// safetensors, the native weight format: reader (validating every header field against the
// file size, so hostile files give errors, never crashes or huge allocations) and writer.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace losatok::io {

struct TensorEntry {
  std::string name;
  std::string dtype;  // F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<TensorEntry> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // where the data section starts in the file
};

struct SafetensorsData {
  std::map<std::string, torch::Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

// Largest header we accept (the reference implementation's limit).
inline constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;

// Validates the JSON header `json` (length `json_size`) for a data section of `data_size`
// bytes. `what` names the file in errors.
SafetensorsHeader parse_safetensors_header(const char* json, std::size_t json_size, uint64_t data_size,
                                           const std::string& what);

SafetensorsHeader read_safetensors_header(const std::string& path);
// `keep` selects tensors by name (all when empty); the others are never read.
SafetensorsData load_safetensors(const std::string& path,
                                 const std::function<bool(const std::string&)>& keep = {});
// Random access to one file's tensors: the header is parsed (and checked) once, each read
// fetches just that tensor's bytes. Reads are safe from several threads.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  const SafetensorsHeader& header() const { return header_; }
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  torch::Tensor read(const std::string& name) const;

 private:
  std::string path_;
  int fd_ = -1;
  SafetensorsHeader header_;
  std::map<std::string, std::size_t> index_;
};

// Same checks on an in-memory file image (the fuzz target's entry point).
SafetensorsData load_safetensors_buffer(const void* data, std::size_t size,
                                        const std::string& what = "<buffer>");

// Serialised file image; tensors are made contiguous and moved to the CPU.
std::string serialize_safetensors(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});
// Writes through a temporary file and a rename, so a crash never leaves a half file at `path`.
void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace losatok::io
