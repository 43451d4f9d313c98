// Process start-up: device, thread pools (LibTorch intra/inter-op and OpenBLAS), and the
// start-up report (LibTorch version, device, threads, BLAS), with a loud warning when the
// BLAS is the reference implementation.
#pragma once

#include <string>

#include "losatok/core/run_config.h"

namespace losatok {

struct BlasInfo {
  std::string name;     // OpenBLAS, BLIS, MKL, reference, unknown
  std::string library;  // resolved path of the library providing sgemm_
  std::string config;   // OpenBLAS build string, when available
  bool reference = false;
  int threads = -1;  // -1 when the library has no thread control
};

// Finds which library provides sgemm_ in this process.
BlasInfo detect_blas();

// Sets OpenBLAS's thread count (through openblas_set_num_threads / the BLIS equivalent);
// false when the BLAS in use has no such control.
bool set_blas_threads(int n);

struct RuntimeInfo {
  std::string torch_version;
  std::string device;
  int threads = 0;
  int interop_threads = 0;
  BlasInfo blas;
  std::string summary() const;
};

// Applies `cfg` (threads, BLAS threads, device check) and logs the summary once. Safe to
// call again: the inter-op pool, which LibTorch fixes at first use, is left as it is.
RuntimeInfo init_runtime(const RuntimeConfig& cfg);

int physical_cores();

// OpenMP workers that spin after each parallel region steal the cores OpenBLAS's threads
// need (measured: a transformer step 2.1x slower with both pools at 2 threads). The OpenMP
// runtime reads its wait policy only at load time, so unless the user chose one
// (OMP_WAIT_POLICY / GOMP_SPINCOUNT set, or LOSATOK_OMP_SPIN=1), this sets
// OMP_WAIT_POLICY=PASSIVE and re-executes the program once. Call first thing in main().
void set_openmp_wait_policy_and_reexec(char** argv);

// The OpenMP wait policy in effect, for the start-up report.
std::string openmp_wait_policy();

}  // namespace losatok
