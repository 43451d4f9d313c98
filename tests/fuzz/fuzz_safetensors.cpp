// libFuzzer target for the safetensors parser: any input gives tensors or a losatok::Error.
//   build-fuzz/tests/fuzz/fuzz_safetensors -max_total_time=60 -rss_limit_mb=2048 CORPUS_DIR
#include <cstddef>
#include <cstdint>

#include "losatok/core/error.h"
#include "losatok/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto d = losatok::io::load_safetensors_buffer(data, size, "fuzz");
    (void)d;
  } catch (const losatok::Error&) {
  }
  return 0;
}
