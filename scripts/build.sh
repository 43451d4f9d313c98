#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), then configures and builds into BUILD_DIR.
#   BUILD_DIR=build JOBS=$(nproc) [TARGETS="losatok"] scripts/build.sh [extra cmake args]
# On a GPU machine: scripts/build.sh -DLOSATOK_TORCH_FROM_PYTHON=ON
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
JOBS="${JOBS:-$(nproc)}"
scripts/setup.sh --check >/dev/null 2>&1 || scripts/setup.sh
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@"
# shellcheck disable=SC2086  # TARGETS is a space-separated list
cmake --build "$BUILD_DIR" -j "$JOBS" ${TARGETS:+--target $TARGETS}
echo "build.sh: configure + build took $(( $(date +%s) - start )) s"
