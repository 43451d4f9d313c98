// safetensors reader and writer. Format: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then data.
#include "losatok/io/safetensors.h"

#include <fcntl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "losatok/core/error.h"
#include "losatok/core/file_util.h"

namespace losatok::io {

namespace {

static_assert(sizeof(void*) == 8, "64-bit hosts only");
// safetensors data is little-endian and is copied as is.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian hosts only");

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  int size;
};

const DtypeInfo kDtypes[] = {
    {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2}, {"BF16", torch::kBFloat16, 2},
    {"F64", torch::kFloat64, 8}, {"I64", torch::kInt64, 8},   {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* dtype_by_name(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeInfo& dtype_by_type(torch::ScalarType t, const std::string& tensor) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d;
  throw Error("safetensors: tensor '" + tensor + "' has dtype " + std::string(c10::toString(t)) +
              ", which safetensors cannot store here");
}

[[noreturn]] void bad(const std::string& what, const std::string& msg) {
  throw Error("corrupt safetensors file " + what + ": " + msg);
}

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint64_t as_u64(const nlohmann::json& j, const std::string& what, const std::string& ctx) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return static_cast<uint64_t>(j.get<int64_t>());
  bad(what, ctx + " must be a non-negative integer, got a " + std::string(j.type_name()));
}

// The 8-byte header length N, checked against the file size; returns N.
uint64_t check_header_length(const unsigned char* prefix, uint64_t file_size, const std::string& what) {
  const uint64_t n = read_u64_le(prefix);
  if (n > kMaxSafetensorsHeader) bad(what, "header length " + std::to_string(n) + " exceeds 100 MiB");
  if (n > file_size - 8) bad(what, "header length " + std::to_string(n) + " exceeds the file size");
  return n;
}

torch::Tensor tensor_from_bytes(const TensorEntry& e, const char* bytes) {
  const DtypeInfo* d = dtype_by_name(e.dtype);
  auto t = torch::empty(e.shape, torch::TensorOptions().dtype(d->type));
  if (e.end > e.begin) std::memcpy(t.data_ptr(), bytes, e.end - e.begin);
  return t;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const char* json, std::size_t json_size, uint64_t data_size,
                                           const std::string& what) {
  nlohmann::json root;
  try {
    // The header is {name: {dtype, shape: [..], data_offsets: [..]}}: three levels. Deeper
    // nesting is refused while parsing, before it can cost memory or stack.
    const nlohmann::json::parser_callback_t max_depth = [](int depth, nlohmann::json::parse_event_t,
                                                           nlohmann::json&) {
      if (depth > 3) throw std::length_error("nested deeper than a safetensors header");
      return true;
    };
    root = nlohmann::json::parse(json, json + json_size, max_depth);
  } catch (const std::length_error&) {
    bad(what, "header JSON is nested deeper than a safetensors header can be");
  } catch (const nlohmann::json::exception& e) {
    bad(what, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!root.is_object()) bad(what, "header is not a JSON object");

  SafetensorsHeader header;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) bad(what, "__metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) bad(what, "__metadata__['" + m.key() + "'] is not a string");
        header.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string ctx = "tensor '" + name + "'";
    if (!v.is_object()) bad(what, ctx + " entry is not an object");
    if (!v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      bad(what, ctx + " lacks dtype, shape or data_offsets");
    if (!v["dtype"].is_string()) bad(what, ctx + " dtype is not a string");
    TensorEntry e;
    e.name = name;
    e.dtype = v["dtype"].get<std::string>();
    const DtypeInfo* d = dtype_by_name(e.dtype);
    if (!d) bad(what, ctx + " has unsupported dtype '" + e.dtype + "'");
    if (!v["shape"].is_array()) bad(what, ctx + " shape is not a list");
    if (v["shape"].size() > 64) bad(what, ctx + " has more than 64 dimensions");
    // Count elements with overflow checks: the byte count must fit in the file anyway.
    uint64_t numel = 1;
    for (const auto& s : v["shape"]) {
      const uint64_t dim = as_u64(s, what, ctx + " shape entry");
      if (dim > (uint64_t{1} << 62)) bad(what, ctx + " has an absurd dimension");
      if (dim != 0 && numel > (uint64_t{1} << 62) / dim) bad(what, ctx + " element count overflows");
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2) bad(what, ctx + " data_offsets must be [begin, end]");
    e.begin = as_u64(off[0], what, ctx + " data_offsets");
    e.end = as_u64(off[1], what, ctx + " data_offsets");
    if (e.begin > e.end) bad(what, ctx + " data_offsets begin > end");
    if (e.end > data_size)
      bad(what, ctx + " data ends at byte " + std::to_string(e.end) + " but the data section has " +
                    std::to_string(data_size) + " bytes (truncated file?)");
    if (numel > (uint64_t{1} << 62) / 8 || e.end - e.begin != numel * d->size)
      bad(what, ctx + " has " + std::to_string(e.end - e.begin) + " bytes for shape of " +
                    std::to_string(numel) + " " + e.dtype + " elements");
    header.tensors.push_back(std::move(e));
  }
  std::vector<const TensorEntry*> by_offset;
  for (const auto& e : header.tensors) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorEntry* a, const TensorEntry* b) {
    return a->begin < b->begin || (a->begin == b->begin && a->end < b->end);
  });
  // Compare each range with the furthest end seen so far, not only with its predecessor.
  const TensorEntry* furthest = nullptr;
  for (const auto* cur : by_offset) {
    if (cur->end == cur->begin) continue;  // empty tensors occupy no bytes
    if (furthest && cur->begin < furthest->end)
      bad(what, "tensors '" + furthest->name + "' and '" + cur->name + "' overlap");
    if (!furthest || cur->end > furthest->end) furthest = cur;
  }
  return header;
}

namespace {

// Opens `path` and validates its header; `in` is left open for reading the data.
SafetensorsHeader open_safetensors(const std::string& path, std::ifstream& in) {
  in.open(path, std::ios::binary);
  if (!in) throw Error("cannot open safetensors file '" + path + "'");
  const std::string what = "'" + path + "'";
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw Error("cannot stat safetensors file '" + path + "': " + ec.message());
  if (file_size < 8) bad(what, "shorter than the 8-byte header length");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  const uint64_t n = check_header_length(len_bytes, file_size, what);
  std::string json(n, '\0');
  in.read(json.data(), static_cast<std::streamsize>(n));
  if (!in) bad(what, "could not read the header");
  SafetensorsHeader h = parse_safetensors_header(json.data(), json.size(), file_size - 8 - n, what);
  h.data_offset = 8 + n;
  return h;
}

}  // namespace

SafetensorsHeader read_safetensors_header(const std::string& path) {
  std::ifstream in;
  return open_safetensors(path, in);
}

SafetensorsData load_safetensors(const std::string& path,
                                 const std::function<bool(const std::string&)>& keep) {
  std::ifstream in;
  const SafetensorsHeader h = open_safetensors(path, in);
  SafetensorsData out;
  out.metadata = h.metadata;
  for (const auto& e : h.tensors) {
    if (keep && !keep(e.name)) continue;
    // Read straight into the tensor's memory.
    torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(dtype_by_name(e.dtype)->type));
    in.seekg(static_cast<std::streamoff>(h.data_offset + e.begin));
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
    if (!in) bad("'" + path + "'", "could not read tensor '" + e.name + "'");
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : path_(path), header_(read_safetensors_header(path)) {
  for (std::size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) bad("'" + path + "'", "cannot open");
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

torch::Tensor SafetensorsFile::read(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) bad("'" + path_ + "'", "no tensor '" + name + "'");
  const TensorEntry& e = header_.tensors[it->second];
  torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(dtype_by_name(e.dtype)->type));
  auto* dst = static_cast<char*>(t.data_ptr());
  uint64_t done = 0, size = e.end - e.begin;
  while (done < size) {
    const ssize_t n =
        ::pread(fd_, dst + done, size - done, static_cast<off_t>(header_.data_offset + e.begin + done));
    if (n <= 0) bad("'" + path_ + "'", "could not read tensor '" + name + "'");
    done += static_cast<uint64_t>(n);
  }
  return t;
}

SafetensorsData load_safetensors_buffer(const void* data, std::size_t size, const std::string& what) {
  const auto* p = static_cast<const unsigned char*>(data);
  if (size < 8) bad(what, "shorter than the 8-byte header length");
  const uint64_t n = check_header_length(p, size, what);
  const SafetensorsHeader h =
      parse_safetensors_header(reinterpret_cast<const char*>(p + 8), n, size - 8 - n, what);
  SafetensorsData out;
  out.metadata = h.metadata;
  const char* base = reinterpret_cast<const char*>(p + 8 + n);
  for (const auto& e : h.tensors) out.tensors.emplace(e.name, tensor_from_bytes(e, base + e.begin));
  return out;
}

std::string serialize_safetensors(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") throw Error("safetensors: '__metadata__' is not a tensor name");
    if (!t.defined()) throw Error("safetensors: tensor '" + name + "' is undefined");
    const auto& d = dtype_by_type(t.scalar_type(), name);
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(c.numel()) * d.size;
    header[name] = {
        {"dtype", d.name}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  // Metadata may carry file names that are not UTF-8: replace bad bytes rather than fail.
  std::string json = header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  json.append((8 - json.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += json;
  out.reserve(out.size() + offset);
  for (const auto& c : data) out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  return out;
}

void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

}  // namespace losatok::io
