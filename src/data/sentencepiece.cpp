// SentencePiece through Debian's libsentencepiece, behind the liblosatok_spm module (see
// sentencepiece_shim.cpp for why it is opened apart from the rest of the program).
#include "losatok/data/sentencepiece.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "losatok/core/error.h"

namespace losatok::data {

namespace {

struct SpmApi {
  void* (*load)(const char*, char*, std::size_t) = nullptr;
  void (*free)(void*) = nullptr;
  int (*info)(void*, int) = nullptr;
  int (*encode)(void*, const char*, std::size_t, int*, std::size_t, std::size_t*, char*,
                std::size_t) = nullptr;
};

// The module: $LOSATOK_SPM_LIBRARY, else the one built beside this program, else next to the
// executable, else the loader's search path.
const SpmApi& api() {
  static std::once_flag once;
  static SpmApi a;
  static std::string failure;
  std::call_once(once, [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("LOSATOK_SPM_LIBRARY"); env && *env) candidates.push_back(env);
#ifdef LOSATOK_SPM_MODULE
    candidates.push_back(LOSATOK_SPM_MODULE);
#endif
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back((exe.parent_path() / "liblosatok_spm.so").string());
    candidates.push_back("liblosatok_spm.so");
    void* h = nullptr;
    std::string tried;
    for (const auto& c : candidates) {
      if (c.find('/') != std::string::npos && !std::filesystem::exists(c, ec)) continue;
      h = ::dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (h) break;
      const char* why = ::dlerror();
      tried += (tried.empty() ? "" : "; ") + c + ": " + (why ? why : "not loadable");
    }
    if (!h) {
      failure = "SentencePiece: cannot load liblosatok_spm.so (" + (tried.empty() ? "not found" : tried) +
                "); build it with the project, or set LOSATOK_SPM_LIBRARY";
      return;
    }
    a.load = reinterpret_cast<decltype(a.load)>(::dlsym(h, "losatok_spm_load"));
    a.free = reinterpret_cast<decltype(a.free)>(::dlsym(h, "losatok_spm_free"));
    a.info = reinterpret_cast<decltype(a.info)>(::dlsym(h, "losatok_spm_info"));
    a.encode = reinterpret_cast<decltype(a.encode)>(::dlsym(h, "losatok_spm_encode"));
    if (!a.load || !a.free || !a.info || !a.encode)
      failure = "SentencePiece: liblosatok_spm.so lacks its functions";
  });
  if (!failure.empty()) throw Error(failure);
  return a;
}

}  // namespace

struct SentencePieceTokenizer::Impl {
  void* handle = nullptr;
  ~Impl() {
    if (handle) api().free(handle);
  }
};

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path)
    : impl_(std::make_unique<Impl>()), path_(model_path) {
  char error[512] = {0};
  impl_->handle = api().load(model_path.c_str(), error, sizeof error);
  if (!impl_->handle) throw Error("SentencePiece model '" + model_path + "': " + first_line(error));
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::vector<int64_t> SentencePieceTokenizer::encode(const std::string& text, int max_tokens) const {
  std::vector<int> ids(text.size() + 16);
  std::size_t n = 0;
  char error[512] = {0};
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (api().encode(impl_->handle, text.data(), text.size(), ids.data(), ids.size(), &n, error,
                     sizeof error) != 0)
      throw Error("SentencePiece model '" + path_ + "': cannot encode \"" + text.substr(0, 40) +
                  "\": " + first_line(error));
    if (n <= ids.size()) break;
    ids.resize(n);
  }
  const int eos = eos_id();
  std::size_t keep = n;
  if (max_tokens > 0)
    keep = std::min<std::size_t>(keep, static_cast<std::size_t>(max_tokens - (eos >= 0 ? 1 : 0)));
  std::vector<int64_t> out(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep));
  if (eos >= 0) out.push_back(eos);
  return out;
}

int SentencePieceTokenizer::vocab_size() const {
  return api().info(impl_->handle, 0);
}
int SentencePieceTokenizer::eos_id() const {
  return api().info(impl_->handle, 1);
}
int SentencePieceTokenizer::pad_id() const {
  return api().info(impl_->handle, 2);
}

}  // namespace losatok::data
