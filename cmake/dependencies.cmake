# Every third-party library comes from the system (Debian packages installed by scripts/setup.sh).
find_package(yaml-cpp REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(CLI11 CONFIG QUIET)
if(NOT CLI11_FOUND)
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  set_target_properties(CLI11::CLI11 PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${CLI11_INCLUDE_DIR}")
endif()
find_package(nlohmann_json 3.10 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SNDFILE REQUIRED IMPORTED_TARGET sndfile)
pkg_check_modules(SOXR REQUIRED IMPORTED_TARGET soxr)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
find_package(Threads REQUIRED)
if(LOSATOK_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

# A PyTorch wheel ships its own, newer {fmt} headers in its include folder, which comes first on
# the compile line; Debian's spdlog needs Debian's {fmt}. A folder holding only a link to those
# headers goes in front of both (never /usr/include itself: that breaks libstdc++'s
# #include_next).
if(LOSATOK_TORCH_FROM_PYTHON)
  get_target_property(_fmt_includes fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
  find_path(_fmt_root fmt/core.h HINTS ${_fmt_includes} REQUIRED)
  set(_fmt_first ${CMAKE_BINARY_DIR}/fmt-first)
  file(MAKE_DIRECTORY ${_fmt_first})
  file(CREATE_LINK ${_fmt_root}/fmt ${_fmt_first}/fmt SYMBOLIC)
  include_directories(BEFORE SYSTEM ${_fmt_first})
  message(STATUS "losatok: {fmt} headers from ${_fmt_root} ahead of the wheel's own")
endif()
