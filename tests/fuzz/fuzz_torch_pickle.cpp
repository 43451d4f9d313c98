// libFuzzer target for the torch.save unpickler: the input is the pickle program (data.pkl),
// storages come from a fixed set of records. Any input gives tensors or a losatok::Error.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "losatok/core/error.h"
#include "losatok/io/torch_pickle.h"

namespace {
class FixedRecords : public losatok::io::StorageRecords {
 public:
  FixedRecords() {
    for (int i = 0; i < 4; ++i) records_["data/" + std::to_string(i)] = std::string(64 << i, '\1');
  }
  bool get(const std::string& name, const void*& data, uint64_t& size) const override {
    auto it = records_.find(name);
    if (it == records_.end()) return false;
    data = it->second.data();
    size = it->second.size();
    return true;
  }

 private:
  std::map<std::string, std::string> records_;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const FixedRecords records;
  try {
    auto sd = losatok::io::unpickle_state_dict(reinterpret_cast<const char*>(data), size, records, "fuzz");
    (void)sd;
  } catch (const losatok::Error&) {
  }
  return 0;
}
