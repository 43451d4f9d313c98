#!/usr/bin/env bash
# Paper-size check on CPU (about 2 minutes, 7 GB of memory, 6.5 GB of disk under WORK):
# builds the 803.6 M parameter tokenizer of configs/model/paper.yaml with random weights,
# prints its parameter counts and encode / decode speed, saves the weights, exports them as
# a .pt, loads that back and reconstructs 2 s of real audio with it.
#   scripts/check_paper_model.sh [WORK]      (default /tmp/losatok_paper; removed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
WORK="${1:-/tmp/losatok_paper}"
TARGETS="losatok losatok_bench_codec" scripts/build.sh
mkdir -p "$WORK"
trap 'rm -f "$WORK/paper.safetensors" "$WORK/paper.pt"' EXIT
scripts/fetch_sample_audio.sh "$WORK/audio" >/dev/null
clip="$WORK/audio/sound-theme-freedesktop/service-login.oga"   # 2.18 s

"$BUILD_DIR/bench/losatok_bench_codec" --config configs/model/paper.yaml --seconds 10 --reps 1 \
  --threads "$(nproc)" --save "$WORK/paper.safetensors"
"$BUILD_DIR/src/losatok" export --checkpoint "$WORK/paper.safetensors" --out "$WORK/paper.pt"
"$BUILD_DIR/src/losatok" reconstruct --config configs/model/paper.yaml --checkpoint "$WORK/paper.pt" \
  --input "$clip" --output "$WORK/reconstructed.wav"
echo "paper-size model: saved, exported to .pt, reloaded, reconstructed -> $WORK/reconstructed.wav"
