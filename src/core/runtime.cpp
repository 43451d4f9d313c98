// Thread pools, BLAS detection and the start-up report.
#include "losatok/core/runtime.h"

#include <dlfcn.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "losatok/build_config.h"
#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"

namespace losatok {

namespace {

// The library whose sgemm_ LibTorch calls, as a dlopen handle (close it with dlclose) and
// its resolved path. Another BLAS may be loaded beside it (an LD_PRELOAD'ed reference BLAS
// next to OpenBLAS); only this one matters for speed and threads.
void* blas_provider(std::string* path) {
  void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info dl{};
  if (!sgemm || !dladdr(sgemm, &dl) || !dl.dli_fname) return nullptr;
  if (path) {
    std::error_code ec;
    const auto real = std::filesystem::canonical(dl.dli_fname, ec);
    *path = ec ? dl.dli_fname : real.string();
  }
  return dlopen(dl.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

int physical_cores() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

BlasInfo detect_blas() {
  BlasInfo info;
  void* provider = blas_provider(&info.library);
  auto provider_symbol = [&](const char* name) { return provider ? dlsym(provider, name) : nullptr; };
  const std::string lib = lower(info.library);
  if (auto get_config = reinterpret_cast<char* (*)()>(provider_symbol("openblas_get_config"))) {
    info.name = "OpenBLAS";
    info.config = get_config();
  } else if (provider_symbol("bli_info_get_version_str") || lib.find("blis") != std::string::npos) {
    info.name = "BLIS";
  } else if (lib.find("mkl") != std::string::npos) {
    info.name = "MKL";
  } else if (lib.find("atlas") != std::string::npos) {
    info.name = "ATLAS";
  } else if (!info.library.empty() && lib.find("/blas/") != std::string::npos) {
    // Debian's netlib reference BLAS lives in .../blas/libblas.so.3.
    info.name = "reference";
    info.reference = true;
  } else if (info.library.empty()) {
    // LibTorch built with MKL links it statically: no sgemm_ is exported.
    info.name = "built-in";
  } else {
    info.name = "unknown";
  }
  if (auto get_threads = reinterpret_cast<int (*)()>(provider_symbol("openblas_get_num_threads")))
    info.threads = get_threads();
  else if (auto bli_get = reinterpret_cast<long (*)()>(provider_symbol("bli_thread_get_num_threads")))
    info.threads = static_cast<int>(bli_get());
  if (provider) dlclose(provider);
  return info;
}

bool set_blas_threads(int n) {
  void* provider = blas_provider(nullptr);
  if (!provider) return false;
  bool done = false;
  if (auto set = reinterpret_cast<void (*)(int)>(dlsym(provider, "openblas_set_num_threads"))) {
    set(n);
    done = true;
  } else if (auto bli_set = reinterpret_cast<void (*)(long)>(dlsym(provider, "bli_thread_set_num_threads"))) {
    bli_set(n);
    done = true;
  }
  dlclose(provider);
  return done;
}

void set_openmp_wait_policy_and_reexec(char** argv) {
  bool changed = false;
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT") && !std::getenv("LOSATOK_OMP_SPIN")) {
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    ::setenv("LOSATOK_OMP_SPIN", "0", 1);  // never loop, even if the policy is dropped later
    changed = true;
  }
  // Built against a PyTorch wheel: its libtorch.so's copies of libstdc++ functions must not
  // shadow the system's (cmake/torch.cmake).
  const std::string libstdcxx = LOSATOK_PRELOAD_LIBSTDCXX;
  const char* preload = std::getenv("LD_PRELOAD");
  if (!libstdcxx.empty() && (!preload || !std::strstr(preload, "libstdc++"))) {
    ::setenv("LD_PRELOAD", (preload && *preload ? libstdcxx + ":" + preload : libstdcxx).c_str(), 1);
    changed = true;
  }
  if (changed) ::execv("/proc/self/exe", argv);
  // exec failed (no /proc?): carry on with the runtime's defaults.
}

std::string openmp_wait_policy() {
  if (const char* p = std::getenv("OMP_WAIT_POLICY")) return std::string("OMP_WAIT_POLICY=") + p;
  if (const char* c = std::getenv("GOMP_SPINCOUNT")) return std::string("GOMP_SPINCOUNT=") + c;
  return "runtime default (spinning)";
}

std::string RuntimeInfo::summary() const {
  std::string s = "LibTorch " + torch_version + " | device " + device + " | threads " +
                  std::to_string(threads) + " intra-op, " + std::to_string(interop_threads) +
                  " inter-op | BLAS " + blas.name;
  if (blas.threads >= 0) s += " (" + std::to_string(blas.threads) + " threads)";
  if (!blas.library.empty()) s += " " + blas.library;
  s += " | OpenMP wait " + openmp_wait_policy();
  return s;
}

RuntimeInfo init_runtime(const RuntimeConfig& cfg) {
  static std::atomic<bool> interop_set{false};
  // Several processes of one job on a machine (torchrun, `losatok launch`, Slurm) share its
  // cores: by default each takes its share instead of all of them.
  int local_processes = 1;
  for (const char* var : {"LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"})
    if (const char* v = std::getenv(var); v && std::atoi(v) > 0) {
      local_processes = std::atoi(v);
      break;
    }
  const int threads = cfg.threads > 0 ? cfg.threads : std::max(1, physical_cores() / local_processes);
  torch::set_num_threads(threads);
  if (!interop_set.exchange(true)) {
    try {
      torch::set_num_interop_threads(cfg.interop_threads);
    } catch (const c10::Error&) {
      // LibTorch refuses once the pool has started; the first setting stays.
    }
  }
  if (!set_blas_threads(cfg.blas_threads > 0 ? cfg.blas_threads : threads) && cfg.blas_threads > 0)
    spdlog::warn("runtime.blas_threads={} ignored: this BLAS has no thread control", cfg.blas_threads);

  const torch::Device device = resolve_device(cfg.device);
  RuntimeInfo info;
  info.torch_version = TORCH_VERSION;
  info.device = device.str();
  info.threads = torch::get_num_threads();
  info.interop_threads = torch::get_num_interop_threads();
  info.blas = detect_blas();
  spdlog::info("{}", info.summary());
  if (info.blas.reference) {
    spdlog::warn(
        "!!! BLAS is the slow reference implementation ({}): matrix products run about "
        "40x slower. Install OpenBLAS: `sudo apt-get install libopenblas0-pthread` "
        "(scripts/setup.sh does) !!!",
        info.blas.library);
  }
  return info;
}

torch::Device resolve_device(const std::string& spec) {
  if (spec == "cpu") return torch::Device(torch::kCPU);
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error("device '" + spec +
                  "' requested but this LibTorch " TORCH_VERSION " build has no usable CUDA device");
    int index = 0;
    if (spec.size() > 5) {
      try {
        index = std::stoi(spec.substr(5));
      } catch (const std::exception&) {
        throw Error("device '" + spec + "': bad CUDA index");
      }
    }
    const int count = static_cast<int>(torch::cuda::device_count());
    if (index < 0 || index >= count)
      throw Error("device '" + spec + "': only " + std::to_string(count) + " CUDA device(s)");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw Error("unknown device '" + spec + "' (cpu, cuda or cuda:N)");
}

}  // namespace losatok
