// A bounded pickle virtual machine for torch.save archives (see torch_pickle.h). It knows the
// opcodes of pickle protocols 2-5 that torch.save produces and the torch rebuild functions;
// anything else becomes an opaque object that is skipped unless a tensor is needed from it.
#include "losatok/io/torch_pickle.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <cstring>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "losatok/core/error.h"

namespace losatok::io {

namespace {

struct PyObj;
using PyRef = std::shared_ptr<PyObj>;

struct PyObj {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kStr,
    kBytes,
    kList,
    kTuple,
    kDict,
    kGlobal,
    kTensor,
    kStorage,
    kObject
  };
  Kind kind = Kind::kNone;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // str, bytes, global name "module.name", object class name
  std::vector<PyRef> items;
  std::vector<std::pair<PyRef, PyRef>> dict;
  torch::Tensor tensor;  // kTensor, or the flat storage for kStorage

  // Teardown stays flat without a custom destructor: ~Unpickler empties every container first.
};

PyRef make(PyObj::Kind k) {
  auto p = std::make_shared<PyObj>();
  p->kind = k;
  return p;
}
PyRef make_str(PyObj::Kind k, std::string s) {
  auto p = make(k);
  p->s = std::move(s);
  return p;
}

torch::ScalarType storage_dtype(const std::string& name, const std::string& what) {
  static const std::pair<const char*, torch::ScalarType> kTypes[] = {
      {"torch.FloatStorage", torch::kFloat32},     {"torch.HalfStorage", torch::kFloat16},
      {"torch.BFloat16Storage", torch::kBFloat16}, {"torch.DoubleStorage", torch::kFloat64},
      {"torch.LongStorage", torch::kInt64},        {"torch.IntStorage", torch::kInt32},
      {"torch.ShortStorage", torch::kInt16},       {"torch.CharStorage", torch::kInt8},
      {"torch.ByteStorage", torch::kUInt8},        {"torch.BoolStorage", torch::kBool},
  };
  for (const auto& [n, t] : kTypes)
    if (name == n) return t;
  throw Error("torch checkpoint " + what + ": unsupported storage type '" + name + "'");
}

class Unpickler {
 public:
  Unpickler(const char* data, std::size_t size, std::string what, const StorageRecords& records)
      : p_(data), end_(data + size), what_(std::move(what)), records_(records) {}
  // Empties every container before any is freed. That breaks reference cycles (a dict that
  // holds itself through the memo) and keeps teardown flat: a hostile pickle can nest
  // containers a million deep, one byte per level, and a recursive destructor chain would
  // overflow the stack.
  ~Unpickler() {
    for (auto& c : containers_) {
      c->items.clear();
      c->dict.clear();
    }
  }
  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;

  PyRef run() {
    while (true) {
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;      // PROTO
        case 0x95: bytes(8); break;  // FRAME
        case '.': return pop();      // STOP
        case '(': marks_.push_back(stack_.size()); break;
        case '}': push(make(PyObj::Kind::kDict)); break;
        case ']': push(make(PyObj::Kind::kList)); break;
        case ')': push(make(PyObj::Kind::kTuple)); break;
        case 'N': push(make(PyObj::Kind::kNone)); break;
        case 0x88: push_bool(true); break;
        case 0x89: push_bool(false); break;
        case 'K': push_int(u8()); break;
        case 'M': push_int(le(2)); break;
        case 'J': push_int(static_cast<int32_t>(le(4))); break;
        case 0x8a: push_int(long_n(u8())); break;   // LONG1
        case 0x8b: push_int(long_n(le(4))); break;  // LONG4
        case 'G': push_float(); break;
        case 'X':  // BINUNICODE
        case 'T':  // BINSTRING
          push(make_str(PyObj::Kind::kStr, bytes(le(4))));
          break;
        case 0x8c:  // SHORT_BINUNICODE
        case 'U':   // SHORT_BINSTRING
          push(make_str(PyObj::Kind::kStr, bytes(u8())));
          break;
        case 0x8d: push(make_str(PyObj::Kind::kStr, bytes(le(8)))); break;
        case 'B': push(make_str(PyObj::Kind::kBytes, bytes(le(4)))); break;
        case 'C': push(make_str(PyObj::Kind::kBytes, bytes(u8()))); break;
        case 0x8e: push(make_str(PyObj::Kind::kBytes, bytes(le(8)))); break;
        case 'q': memo_put(u8()); break;
        case 'r': memo_put(le(4)); break;
        case 0x94: memo_put(memo_.size()); break;  // MEMOIZE
        case 'h': memo_get(u8()); break;
        case 'j': memo_get(le(4)); break;
        case '0': pop(); break;
        case '1': pop_mark(); break;
        case '2': push(top()); break;
        case 'l':   // LIST
        case 0x91:  // FROZENSET: a list is all a state dict needs
        {
          auto l = make(PyObj::Kind::kList);
          l->items = pop_mark();
          push(l);
          break;
        }
        case 't': {
          auto t = make(PyObj::Kind::kTuple);
          t->items = pop_mark();
          push(t);
          break;
        }
        case 0x85: tuple_n(1); break;
        case 0x86: tuple_n(2); break;
        case 0x87: tuple_n(3); break;
        case 'd': {
          auto d = make(PyObj::Kind::kDict);
          set_items(d, pop_mark());
          push(d);
          break;
        }
        case 's': {
          auto v = pop();
          auto k = pop();
          dict_target()->dict.emplace_back(k, v);
          break;
        }
        case 'u': {
          auto kv = pop_mark();
          set_items(dict_target(), kv);
          break;
        }
        case 'a': {
          auto v = pop();
          list_target()->items.push_back(v);
          break;
        }
        case 'e':   // APPENDS
        case 0x90:  // ADDITEMS (to a set, kept as a list)
        {
          auto vs = pop_mark();
          auto l = list_target();
          l->items.insert(l->items.end(), vs.begin(), vs.end());
          break;
        }
        case 0x8f: push(make(PyObj::Kind::kList)); break;  // EMPTY_SET
        case 'c': {
          std::string m = line();
          std::string n = line();
          push(make_str(PyObj::Kind::kGlobal, m + "." + n));
          break;
        }
        case 0x93: {
          auto n = pop();
          auto m = pop();
          push(make_str(PyObj::Kind::kGlobal, m->s + "." + n->s));
          break;
        }
        case 'R': {
          auto args = pop();
          auto fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 0x81: {
          auto args = pop();
          auto cls = pop();
          push(make_str(PyObj::Kind::kObject, cls->s));
          (void)args;
          break;
        }                        // NEWOBJ
        case 'b': pop(); break;  // BUILD: object state is not needed
        case 'Q': push(persistent_load(pop())); break;
        default: fail("unsupported pickle opcode 0x" + hex(op) + " at byte " + std::to_string(pos()));
      }
      if (stack_.size() > kMaxStack || memo_.size() > kMaxMemo) fail("pickle stack too large");
    }
  }

 private:
  static constexpr std::size_t kMaxStack = 1u << 20;
  static constexpr std::size_t kMaxMemo = 1u << 22;

  [[noreturn]] void fail(const std::string& msg) const {
    throw Error("corrupt torch checkpoint " + what_ + ": " + msg);
  }
  static std::string hex(unsigned v) {
    const char* d = "0123456789abcdef";
    return std::string{d[(v >> 4) & 15], d[v & 15]};
  }
  std::size_t pos() const { return static_cast<std::size_t>(p_ - start_); }
  void need(uint64_t n) const {
    if (n > static_cast<uint64_t>(end_ - p_)) fail("pickle data ends early");
  }
  uint8_t u8() {
    need(1);
    return static_cast<uint8_t>(*p_++);
  }
  uint64_t le(int n) {
    need(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p_[i]);
    p_ += n;
    return v;
  }
  std::string bytes(uint64_t n) {
    need(n);
    std::string s(p_, p_ + n);
    p_ += n;
    return s;
  }
  std::string line() {
    const char* nl = static_cast<const char*>(std::memchr(p_, '\n', static_cast<std::size_t>(end_ - p_)));
    if (!nl) fail("unterminated GLOBAL");
    std::string s(p_, nl);
    p_ = nl + 1;
    return s;
  }
  int64_t long_n(uint64_t n) {
    if (n > 8) {
      bytes(n);  // too large for int64: keep parsing, value unused by state dicts
      return 0;
    }
    if (n == 0) return 0;
    uint64_t v = le(static_cast<int>(n));
    if (n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    return static_cast<int64_t>(v);
  }
  void push(PyRef v) {
    // Every container passes through here, so ~Unpickler can empty them all.
    if (v->kind == PyObj::Kind::kList || v->kind == PyObj::Kind::kTuple || v->kind == PyObj::Kind::kDict)
      containers_.push_back(v);
    stack_.push_back(std::move(v));
  }
  void push_bool(bool b) {
    auto v = make(PyObj::Kind::kBool);
    v->b = b;
    push(v);
  }
  void push_int(int64_t i) {
    auto v = make(PyObj::Kind::kInt);
    v->i = i;
    push(v);
  }
  void push_float() {
    uint64_t bits = 0;
    need(8);
    for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<uint8_t>(p_[i]);  // big-endian
    p_ += 8;
    auto v = make(PyObj::Kind::kFloat);
    std::memcpy(&v->f, &bits, 8);
    push(v);
  }
  PyRef pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("pickle stack underflow");
    PyRef v = stack_.back();
    stack_.pop_back();
    return v;
  }
  PyRef top() {
    if (stack_.empty()) fail("pickle stack underflow");
    return stack_.back();
  }
  std::vector<PyRef> pop_mark() {
    if (marks_.empty()) fail("pickle MARK missing");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    if (m > stack_.size()) fail("pickle MARK beyond stack");
    std::vector<PyRef> out(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  void tuple_n(std::size_t n) {
    auto t = make(PyObj::Kind::kTuple);
    t->items.resize(n);
    for (std::size_t i = n; i-- > 0;) t->items[i] = pop();
    push(t);
  }
  PyRef dict_target() {
    PyRef d = top();
    if (d->kind != PyObj::Kind::kDict) fail("SETITEM on a non-dict");
    return d;
  }
  PyRef list_target() {
    PyRef l = top();
    if (l->kind != PyObj::Kind::kList) fail("APPEND on a non-list");
    return l;
  }
  void set_items(const PyRef& d, const std::vector<PyRef>& kv) {
    if (kv.size() % 2) fail("odd number of dict items");
    for (std::size_t i = 0; i < kv.size(); i += 2) d->dict.emplace_back(kv[i], kv[i + 1]);
  }
  void memo_put(uint64_t idx) {
    if (idx > kMaxMemo) fail("memo index too large");
    if (idx >= memo_.size()) memo_.resize(idx + 1);
    memo_[idx] = top();
  }
  void memo_get(uint64_t idx) {
    if (idx >= memo_.size() || !memo_[idx]) fail("memo index " + std::to_string(idx) + " unset");
    push(memo_[idx]);
  }

  int64_t as_int(const PyRef& v, const char* ctx) const {
    if (v->kind != PyObj::Kind::kInt) fail(std::string(ctx) + " is not an integer");
    return v->i;
  }
  std::vector<int64_t> int_tuple(const PyRef& v, const char* ctx) const {
    if (v->kind != PyObj::Kind::kTuple && v->kind != PyObj::Kind::kList)
      fail(std::string(ctx) + " is not a tuple");
    std::vector<int64_t> out;
    for (const auto& x : v->items) out.push_back(as_int(x, ctx));
    return out;
  }

  // ('storage', storage_type, key, location, numel) -> the storage's bytes as a flat tensor.
  PyRef persistent_load(const PyRef& pid) {
    if (pid->kind != PyObj::Kind::kTuple || pid->items.size() < 5 || pid->items[0]->s != "storage")
      fail("unexpected persistent id");
    const std::string& type = pid->items[1]->s;
    const std::string key = pid->items[2]->s;
    const int64_t numel = as_int(pid->items[4], "storage size");
    auto it = storages_.find(key);
    if (it != storages_.end()) return it->second;
    const torch::ScalarType dtype = storage_dtype(type, what_);
    const std::string record = "data/" + key;
    uint64_t size = 0;
    const void* bytes = nullptr;
    if (numel < 0 || !records_.get(record, bytes, size)) fail("missing storage record '" + record + "'");
    if (static_cast<uint64_t>(numel) > size) fail("storage '" + key + "' is larger than its record");
    const uint64_t need_bytes = static_cast<uint64_t>(numel) * c10::elementSize(dtype);
    if (size < need_bytes)
      fail("storage '" + key + "' holds " + std::to_string(size) + " bytes, needs " +
           std::to_string(need_bytes));
    auto s = make(PyObj::Kind::kStorage);
    s->tensor = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
    if (need_bytes) std::memcpy(s->tensor.data_ptr(), bytes, need_bytes);
    storage_bytes_ += need_bytes;
    storages_[key] = s;
    return s;
  }

  PyRef rebuild_tensor(const std::vector<PyRef>& a) {
    if (a.size() < 4 || a[0]->kind != PyObj::Kind::kStorage) fail("bad _rebuild_tensor arguments");
    const torch::Tensor& storage = a[0]->tensor;
    const int64_t offset = as_int(a[1], "tensor offset");
    const auto size = int_tuple(a[2], "tensor size");
    const auto stride = int_tuple(a[3], "tensor stride");
    if (size.size() != stride.size()) fail("tensor size and stride differ in length");
    int64_t last = offset;
    int64_t numel = 1;
    bool empty = false;
    for (std::size_t d = 0; d < size.size(); ++d) {
      if (size[d] < 0 || stride[d] < 0) fail("negative tensor size or stride");
      if (size[d] == 0) empty = true;
      int64_t step = 0;
      if (size[d] > 0 &&
          (__builtin_mul_overflow(size[d] - 1, stride[d], &step) ||
           __builtin_add_overflow(last, step, &last) || __builtin_mul_overflow(numel, size[d], &numel)))
        fail("tensor size or stride overflows");
    }
    if (empty) numel = 0;
    if (offset < 0 || (!empty && last >= storage.numel())) fail("tensor view exceeds its storage");
    // Views may repeat storage elements (stride 0) and one storage may back many tensors:
    // bound what we build to a multiple of what the file holds, against amplification.
    const uint64_t view_bytes = static_cast<uint64_t>(numel) * storage.element_size();
    materialized_bytes_ += view_bytes;
    if (materialized_bytes_ > 16 * storage_bytes_ + (uint64_t{64} << 20))
      fail("tensors built from the storages exceed 16x the bytes stored (a hostile view?)");
    auto t = make(PyObj::Kind::kTensor);
    t->tensor =
        empty ? torch::empty(size, storage.options()) : storage.as_strided(size, stride, offset).clone();
    return t;
  }

  PyRef reduce(const PyRef& fn, const PyRef& args) {
    if (args->kind != PyObj::Kind::kTuple) fail("REDUCE arguments are not a tuple");
    const std::string& name = fn->s;
    const auto& a = args->items;
    if (fn->kind == PyObj::Kind::kGlobal) {
      if (name == "collections.OrderedDict") return make(PyObj::Kind::kDict);
      // LibTorch's pickle_save (our .pt export) tags typed dicts: (obj, "Dict[str, Tensor]").
      if (name == "torch.jit._pickle.restore_type_tag") {
        if (a.empty()) fail("bad restore_type_tag arguments");
        return a[0];
      }
      if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor")
        return rebuild_tensor(a);
      if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
        if (a.empty() || a[0]->kind != PyObj::Kind::kTensor) fail("bad _rebuild_parameter arguments");
        return a[0];
      }
      if (name == "torch._tensor._rebuild_from_type_v2" || name == "torch._tensor._rebuild_from_type") {
        // (func, type, args, state): apply func to args. Unwrapped in a loop, not recursion.
        PyRef inner_fn = fn, inner_args = args;
        for (int level = 0; level < 16; ++level) {
          if (inner_args->kind != PyObj::Kind::kTuple || inner_args->items.size() < 3)
            fail("bad _rebuild_from_type arguments");
          PyRef next_fn = inner_args->items[0], next_args = inner_args->items[2];
          inner_fn = next_fn;
          inner_args = next_args;
          if (inner_fn->s != "torch._tensor._rebuild_from_type_v2" &&
              inner_fn->s != "torch._tensor._rebuild_from_type")
            return reduce(inner_fn, inner_args);
        }
        fail("_rebuild_from_type nested too deeply");
      }
    }
    return make_str(PyObj::Kind::kObject, name);
  }

  const char* p_;
  const char* start_ = p_;
  const char* end_;
  std::string what_;
  const StorageRecords& records_;
  std::vector<PyRef> stack_;
  std::vector<std::size_t> marks_;
  std::vector<PyRef> memo_;
  std::unordered_map<std::string, PyRef> storages_;
  std::vector<PyRef> containers_;
  uint64_t storage_bytes_ = 0;       // bytes read from storage records
  uint64_t materialized_bytes_ = 0;  // bytes of tensors built from them
};

const PyRef* dict_get(const PyRef& d, const std::string& key) {
  for (const auto& [k, v] : d->dict)
    if (k->kind == PyObj::Kind::kStr && k->s == key) return &v;
  return nullptr;
}

// Dicts reached twice (shared through the memo, or holding themselves) are refused: a few
// bytes of pickle could otherwise fan out into an exponential walk.
void flatten(const PyRef& node, const std::string& prefix, TorchStateDict& out, int depth,
             std::unordered_set<const PyObj*>& seen, const std::string& what) {
  if (depth > 64) throw Error("torch checkpoint " + what + ": dicts nested more than 64 deep");
  if (!seen.insert(node.get()).second)
    throw Error("torch checkpoint " + what + ": dict '" + prefix + "' appears more than once");
  for (const auto& [k, v] : node->dict) {
    std::string key;
    if (k->kind == PyObj::Kind::kStr)
      key = k->s;
    else if (k->kind == PyObj::Kind::kInt)
      key = std::to_string(k->i);
    else
      continue;
    const std::string name = prefix.empty() ? key : prefix + "." + key;
    if (v->kind == PyObj::Kind::kTensor)
      out.tensors[name] = v->tensor;
    else if (v->kind == PyObj::Kind::kDict)
      flatten(v, name, out, depth + 1, seen, what);
    else
      out.skipped.push_back(name);
  }
}

}  // namespace

namespace {

// Storage records of a torch.save zip archive.
class ArchiveRecords : public StorageRecords {
 public:
  explicit ArchiveRecords(caffe2::serialize::PyTorchStreamReader& archive) : archive_(archive) {}
  bool get(const std::string& name, const void*& data, uint64_t& size) const override {
    if (!archive_.hasRecord(name)) return false;
    auto [ptr, n] = archive_.getRecord(name);  // miniz checks the record's CRC here
    last_ = std::move(ptr);
    data = last_.get();
    size = n;
    return true;
  }

 private:
  caffe2::serialize::PyTorchStreamReader& archive_;
  mutable at::DataPtr last_;
};

}  // namespace

namespace {

TorchStateDict unpickle_unchecked(const char* pickle, std::size_t size, const StorageRecords& records,
                                  const std::string& what, const std::string& key) {
  Unpickler up(pickle, size, what, records);
  const PyRef root = up.run();
  if (root->kind != PyObj::Kind::kDict)
    throw Error("torch checkpoint " + what + " does not hold a dict of tensors");
  PyRef selected = root;
  if (!key.empty()) {
    const PyRef* v = dict_get(root, key);
    if (!v) throw Error("torch checkpoint " + what + " has no top-level key '" + key + "'");
    if ((*v)->kind != PyObj::Kind::kDict)
      throw Error("torch checkpoint " + what + ": '" + key + "' is not a dict");
    selected = *v;
  } else if (const PyRef* sd = dict_get(root, "state_dict"); sd && (*sd)->kind == PyObj::Kind::kDict) {
    selected = *sd;
  }
  TorchStateDict out;
  std::unordered_set<const PyObj*> seen;
  flatten(selected, "", out, 0, seen, what);
  return out;
}

}  // namespace

TorchStateDict unpickle_state_dict(const char* pickle, std::size_t size, const StorageRecords& records,
                                   const std::string& what, const std::string& key) {
  try {
    return unpickle_unchecked(pickle, size, records, what, key);
  } catch (const c10::Error& e) {  // tensor construction on hostile shapes
    throw Error("corrupt torch checkpoint " + what + ": " + first_line(e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    throw Error("corrupt torch checkpoint " + what + ": out of memory while rebuilding tensors");
  }
}

TorchStateDict load_torch_state_dict(const std::string& path, const std::string& key) {
  const std::string what = "'" + path + "'";
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> archive;
  try {
    archive = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    throw Error("cannot read torch checkpoint " + what +
                " (not a torch.save zip archive, or truncated; files from torch < 1.6 must be "
                "re-saved): " +
                first_line(e.what_without_backtrace()));
  }
  try {
    if (!archive->hasRecord("data.pkl")) throw Error("torch checkpoint " + what + " has no data.pkl");
    auto [ptr, size] = archive->getRecord("data.pkl");
    const ArchiveRecords records(*archive);
    return unpickle_state_dict(static_cast<const char*>(ptr.get()), size, records, what, key);
  } catch (const c10::Error& e) {
    throw Error("corrupt torch checkpoint " + what + ": " + first_line(e.what_without_backtrace()));
  }
}

}  // namespace losatok::io
