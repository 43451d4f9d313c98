# Finds LibTorch (Debian's libtorch-dev, or the one inside a PyTorch wheel) and applies its
# compiler flags (notably -D_GLIBCXX_USE_CXX11_ABI) to the whole project.
if(LOSATOK_TORCH_FROM_PYTHON AND NOT Torch_DIR)
  execute_process(
    COMMAND ${LOSATOK_PYTHON} -c "import torch; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _torch_rc ERROR_VARIABLE _torch_err)
  if(NOT _torch_rc EQUAL 0)
    message(FATAL_ERROR "LOSATOK_TORCH_FROM_PYTHON=ON but '${LOSATOK_PYTHON} -c import torch' failed: ${_torch_err}")
  endif()
  list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
  message(STATUS "losatok: LibTorch from the Python wheel at ${_torch_prefix}")
endif()

find_package(Torch REQUIRED)
message(STATUS "losatok: LibTorch ${Torch_VERSION} (${TORCH_INSTALL_PREFIX}), flags '${TORCH_CXX_FLAGS}'")
set(CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS} ${TORCH_CXX_FLAGS}")

# The Debian C++ libraries we link (yaml-cpp, spdlog/fmt, gtest) use the compiler's default
# libstdc++ ABI. A LibTorch built for the other ABI links, then fails on std::string symbols.
include(CheckCXXSourceCompiles)
check_cxx_source_compiles("
#include <string>
#if !_GLIBCXX_USE_CXX11_ABI
#error old ABI
#endif
int main() { return 0; }" LOSATOK_DEFAULT_ABI_IS_CXX11)
set(_torch_abi 1)
if(TORCH_CXX_FLAGS MATCHES "_GLIBCXX_USE_CXX11_ABI=0")
  set(_torch_abi 0)
endif()
if(LOSATOK_DEFAULT_ABI_IS_CXX11)
  set(_system_abi 1)
else()
  set(_system_abi 0)
endif()
if(NOT _torch_abi EQUAL _system_abi)
  message(FATAL_ERROR
    "C++ ABI mismatch: LibTorch at ${TORCH_INSTALL_PREFIX} uses _GLIBCXX_USE_CXX11_ABI=${_torch_abi} "
    "but the system C++ libraries (yaml-cpp, spdlog, gtest) use ${_system_abi}. "
    "Use a PyTorch >= 2.7 wheel (built with the CXX11 ABI) or Debian's libtorch-dev.")
endif()

# NCCL process groups need a CUDA LibTorch and nccl.h (a system NCCL, or the nvidia-nccl wheel
# beside PyTorch). Without them multi-process training uses Gloo.
set(LOSATOK_NCCL_INCLUDE_DIR "")
if(TARGET torch_cuda)
  execute_process(
    COMMAND ${LOSATOK_PYTHON} -c "import nvidia.nccl; print(list(nvidia.nccl.__path__)[0] + '/include')"
    OUTPUT_VARIABLE _nccl_hint OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  find_path(_nccl_dir nccl.h HINTS ${_nccl_hint} ENV NCCL_INCLUDE_DIR PATHS /usr/include /usr/local/cuda/include)
  if(_nccl_dir)
    set(LOSATOK_NCCL_INCLUDE_DIR "${_nccl_dir}")
    message(STATUS "losatok: NCCL process groups (nccl.h in ${_nccl_dir})")
  else()
    message(STATUS "losatok: CUDA LibTorch without nccl.h: multi-process training uses Gloo")
  endif()
endif()

# A PyTorch wheel's libtorch.so exports its own copies of parts of libstdc++ (std::filesystem
# among them), and calls from our programs bound to them crash (seen with torch 2.11:
# std::filesystem::remove_all). Our programs preload the system's libstdc++ (see
# set_openmp_wait_policy_and_reexec); ctest sets it for the test binary.
set(LOSATOK_PRELOAD_LIBSTDCXX "")
if(LOSATOK_TORCH_FROM_PYTHON)
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libstdc++.so.6
    OUTPUT_VARIABLE _libstdcxx OUTPUT_STRIP_TRAILING_WHITESPACE)
  get_filename_component(_libstdcxx "${_libstdcxx}" REALPATH)
  if(EXISTS "${_libstdcxx}")
    set(LOSATOK_PRELOAD_LIBSTDCXX "${_libstdcxx}")
    message(STATUS "losatok: preloading ${_libstdcxx} ahead of the wheel's libtorch")
  endif()
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/build_config.h.in ${PROJECT_BINARY_DIR}/generated/losatok/build_config.h)
