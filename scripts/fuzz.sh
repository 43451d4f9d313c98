#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan on the library too) into build-fuzz/
# and runs each for SECONDS, seeded with the committed fixtures.
#   scripts/fuzz.sh [SECONDS]        default 60
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v clang++ >/dev/null || { echo "fuzz.sh: needs clang++ (apt-get install clang)" >&2; exit 1; }
CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DLOSATOK_FUZZ=ON -DLOSATOK_BUILD_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target fuzz_safetensors fuzz_torch_pickle

corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
mkdir -p "$corpus/safetensors" "$corpus/pickle"
cp tests/fixtures/*.safetensors "$corpus/safetensors/"
# The pickle program (data.pkl) of each torch.save fixture; unzip is not always installed.
for f in tests/fixtures/pt_*.pt; do
  python3 - "$f" "$corpus/pickle/$(basename "$f").pkl" <<'PY' || true
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
name = next(n for n in z.namelist() if n.endswith("data.pkl"))
open(sys.argv[2], "wb").write(z.read(name))
PY
done 2>/dev/null
# LibTorch allocates through its own aligned allocator; those are not bugs of ours.
export ASAN_OPTIONS="detect_leaks=0:alloc_dealloc_mismatch=0"
for target in safetensors torch_pickle; do
  dir="$corpus/${target/torch_/}"
  log="$corpus/$target.log"
  echo "fuzz.sh: fuzz_$target for $seconds s"
  if ! "build-fuzz/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 \
    -print_final_stats=1 "$dir" >"$log" 2>&1; then
    grep -E "ERROR|SUMMARY|Test unit written" "$log" >&2
    echo "fuzz.sh: fuzz_$target failed; the reproducer (crash-*) is in $PWD" >&2
    exit 1
  fi
  grep -E "^#[0-9]+ +DONE|stat::number_of_executed_units" "$log"
done
