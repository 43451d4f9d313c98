// A C interface to Debian's libsentencepiece, built as its own module (liblosatok_spm.so).
// libsentencepiece carries and exports its own copy of protobuf-lite, which clashes with the
// libprotobuf that Debian's LibTorch loads (the process crashes while loading). The module is
// opened with dlopen(RTLD_LOCAL | RTLD_DEEPBIND) by data/sentencepiece.cpp, so sentencepiece
// binds to its own protobuf and nothing else sees it. Only C types cross this boundary.
#include <sentencepiece_processor.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#define LOSATOK_SPM_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

void set_error(char* error, std::size_t capacity, const std::string& message) {
  if (error == nullptr || capacity == 0) return;
  std::strncpy(error, message.c_str(), capacity - 1);
  error[capacity - 1] = '\0';
}

}  // namespace

LOSATOK_SPM_EXPORT void* losatok_spm_load(const char* path, char* error, std::size_t capacity) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  const auto status = sp->Load(path);
  if (!status.ok()) {
    set_error(error, capacity, status.ToString());
    delete sp;
    return nullptr;
  }
  return sp;
}

LOSATOK_SPM_EXPORT void losatok_spm_free(void* handle) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(handle);
}

// 0: vocabulary size, 1: EOS id, 2: pad id, 3: unk id.
LOSATOK_SPM_EXPORT int losatok_spm_info(void* handle, int what) {
  const auto* sp = static_cast<const sentencepiece::SentencePieceProcessor*>(handle);
  switch (what) {
    case 0: return sp->GetPieceSize();
    case 1: return sp->eos_id();
    case 2: return sp->pad_id();
    default: return sp->unk_id();
  }
}

// Writes up to `capacity` ids to `out` and their count to `count` (which may exceed capacity:
// call again with more room). Returns 0, or -1 with the error in `error`.
LOSATOK_SPM_EXPORT int losatok_spm_encode(void* handle, const char* text, std::size_t length, int* out,
                                          std::size_t capacity, std::size_t* count, char* error,
                                          std::size_t error_capacity) {
  const auto* sp = static_cast<const sentencepiece::SentencePieceProcessor*>(handle);
  std::vector<int> ids;
  const auto status = sp->Encode(std::string(text, length), &ids);
  if (!status.ok()) {
    set_error(error, error_capacity, status.ToString());
    return -1;
  }
  *count = ids.size();
  for (std::size_t i = 0; i < ids.size() && i < capacity; ++i) out[i] = ids[i];
  return 0;
}
