#!/usr/bin/env bash
# Installs what is missing, configures, builds and runs the whole test suite (what CI runs).
#   scripts/test.sh                 BUILD_DIR=build, all cores
#   BUILD_DIR=build-x JOBS=1 scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
JOBS="${JOBS:-$(nproc)}"

scripts/setup.sh --check >/dev/null 2>&1 || scripts/setup.sh

start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD_DIR" -j "$JOBS"
built=$(date +%s)
echo "test.sh: build took $((built - start)) s"
# One test process at a time per core; each test uses one LibTorch thread (set in ctest).
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout 600
echo "test.sh: tests took $(( $(date +%s) - built )) s"
