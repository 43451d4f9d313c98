#!/usr/bin/env bash
# Installs what is missing, configures, builds and runs the whole test suite (what CI runs).
#   scripts/test.sh                      BUILD_DIR=build, JOBS=all cores
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
JOBS="${JOBS:-$(nproc)}"
# The SemBo convergence test trains on the demo corpus, which scripts/make_demo_corpus.sh builds
# from Debian packages with sox, fluidsynth, mma, espeak-ng and jq.
scripts/setup.sh --corpus --check >/dev/null 2>&1 || scripts/setup.sh --corpus
scripts/build.sh
start=$(date +%s)
# Each test process uses one LibTorch thread (set in tests/CMakeLists.txt): run one per core.
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout 600
echo "test.sh: tests took $(( $(date +%s) - start )) s"
