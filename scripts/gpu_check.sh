#!/usr/bin/env bash
# The GPU machine recipe: build against the installed PyTorch wheel's CUDA LibTorch, run the
# tests with CUDA, and time the tokenizer and DiT training steps at paper size in bf16.
#   DEBS=.debs OUT=gpu-results scripts/gpu_check.sh
# DEBS: a folder from `scripts/bundle_debs.sh --wheel` (for a machine without network); empty
# when the Debian -dev packages are installed. Logs and a summary go to OUT. PHASES picks
# from "tests bench ctest" (default: all three, after the build).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-results}"
BUILD_DIR="${BUILD_DIR:-build-cuda}"
mkdir -p "$OUT"
log() { echo "== $(date +%T) $*" | tee -a "$OUT/summary.txt"; }

if [ -n "${DEBS:-}" ]; then
  scripts/install_debs.sh "$DEBS" --prefix /tmp/losatok-deps >/dev/null || exit 1
  # shellcheck disable=SC1091
  source /tmp/losatok-deps/env.sh
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/summary.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$OUT/summary.txt"

log "configure + build"
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOSATOK_TORCH_FROM_PYTHON=ON \
  -DLOSATOK_BUILD_BENCH=OFF >"$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
grep -E "losatok:" "$OUT/configure.log" | tee -a "$OUT/summary.txt"
if ! cmake --build "$BUILD_DIR" -j "$(nproc)" -- -k 0 >"$OUT/build.log" 2>&1; then
  grep -E "error|Error" -A3 "$OUT/build.log" | head -80
  exit 1
fi
log "built in $(( $(date +%s) - start )) s"
bin="$BUILD_DIR/src/losatok"
PHASES="${PHASES:-tests bench ctest}"
has() { [[ " $PHASES " == *" $1 "* ]]; }

if has tests; then
  log "CUDA tests"
  # The programs preload the system libstdc++ themselves against a wheel, and ctest does it for
  # the test binary (cmake/torch.cmake); run directly, the test binary needs it here.
  preload="$(sed -n 's/^#define LOSATOK_PRELOAD_LIBSTDCXX "\(.*\)"/\1/p' "$BUILD_DIR/generated/losatok/build_config.h")"
  LD_PRELOAD="$preload" OMP_NUM_THREADS=1 timeout "${TEST_SECONDS:-240}" "$BUILD_DIR/tests/losatok_tests" \
    --gtest_filter='Cuda.*:Distributed.*:ProcessGroup.*:GradSync.*' >"$OUT/cuda_tests.log" 2>&1
  grep -E "^\[ *(OK|FAILED|SKIPPED|PASSED) " "$OUT/cuda_tests.log" | tee -a "$OUT/summary.txt"
fi

# Peak GPU memory of a command, sampled by nvidia-smi every 100 ms.
bench() {
  local name="$1"; shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$OUT/mem_$name.txt" &
  local smi=$!
  timeout 180 "$bin" bench "$@" >"$OUT/bench_$name.log" 2>&1
  kill "$smi" 2>/dev/null
  grep -vE "^\[" "$OUT/bench_$name.log" | tee -a "$OUT/summary.txt"
  echo "  peak GPU memory $(sort -n "$OUT/mem_$name.txt" | tail -1) MiB (nvidia-smi)" | tee -a "$OUT/summary.txt"
}
if has bench; then
  log "bench tokenizer, paper size, bf16"
  bench tokenizer --config configs/tokenizer.yaml tokenizer.sembo_checkpoint= runtime.device=cuda \
    train.precision=bf16 tokenizer.gan.start_step=0 --steps 10 --warmup 3
  log "bench DiT width 512 (TTA recipe), bf16"
  bench dit512 --config configs/dit_tta.yaml dit.condition.source=text runtime.device=cuda train.precision=bf16 --steps 10 --warmup 3
  log "bench DiT width 1024, bf16"
  bench dit1024 --config configs/dit_tta.yaml --config configs/model/dit_1024.yaml dit.condition.source=text runtime.device=cuda \
    train.precision=bf16 --steps 10 --warmup 3
fi

if has ctest; then
  log "full ctest"
  OMP_NUM_THREADS=1 timeout "${CTEST_SECONDS:-200}" ctest --test-dir "$BUILD_DIR" -j 8 -E "demo_corpus" \
    --timeout 200 >"$OUT/ctest.log" 2>&1
  tail -15 "$OUT/ctest.log" | tee -a "$OUT/summary.txt"
fi
log "done"
