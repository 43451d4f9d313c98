#!/usr/bin/env bash
# The README's first command: set-up, build, then the main job on real audio that Debian
# ships. At this stage of the project the job is the front-end pipeline (decode, resample to
# 16 kHz mono, Dasheng and Vocos log-mels) and the data pipeline (the small cross-domain demo
# corpus, then the loader over it); later stages extend this script into the whole
# SemBo -> tokenizer -> DiT run.
#   scripts/demo.sh            outputs under demo/
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
OUT="${DEMO_DIR:-demo}"
TARGETS="losatok losatok_bench_audio" scripts/build.sh
bin="$BUILD_DIR/src/losatok"
mkdir -p "$OUT/features"

scripts/fetch_sample_audio.sh "$OUT/audio"
"$bin" --help >/dev/null
"$bin" config --config configs/base.yaml stage=sembo --out "$OUT/resolved_config.yaml" >/dev/null

printf '\n%-24s %8s %6s %8s %12s %12s\n' clip seconds rate frames dasheng_dB vocos_log
n=0
for f in "$OUT"/audio/alsa-utils/Front_Center.wav "$OUT"/audio/sound-theme-freedesktop/{complete,bell,phone-incoming-call,service-login}.oga; do
  name="$(basename "${f%.*}")"
  "$bin" --log-level warn features --frontend dasheng "$f" "$OUT/features/$name.dasheng.safetensors"
  "$bin" --log-level warn features --frontend vocos "$f" "$OUT/features/$name.vocos.safetensors"
  shape=$("$bin" --log-level warn inspect "$OUT/features/$name.dasheng.safetensors" | awk -F'\t' '/^mel/ {print $3}')
  vshape=$("$bin" --log-level warn inspect "$OUT/features/$name.vocos.safetensors" | awk -F'\t' '/^mel/ {print $3}')
  frames=$(echo "$shape" | tr -d '[] ' | cut -d, -f2)
  printf '%-24s %8s %6s %8s %12s %12s\n' "$name" "$(awk -v f="$frames" 'BEGIN {printf "%.2f", (f - 1) / 100}')" 16k \
    "$frames" "$shape" "$vshape"
  n=$((n + 1))
done
echo
echo "demo: $n real recordings -> log-mels in $OUT/features/ (tensor 'mel', (n_mels, frames) at 100 Hz)"
echo "demo: resolved config in $OUT/resolved_config.yaml; licences in $OUT/audio/*/copyright"

# The data pipeline: the small demo corpus (real speech, music and effects from Debian
# packages), then two epochs of the loader over its mixed training manifest.
scripts/make_demo_corpus.sh "$OUT/corpus" --size small
"$BUILD_DIR/bench/losatok_bench_audio" loader "$OUT/corpus/manifests/all.train.jsonl" 2 4 2>/dev/null | grep -v '^\['

# The first training stage: SemBo on the tiny model over the demo corpus (about 10 s on 2
# cores). --resume makes a rerun of the demo continue (or re-validate) the same run.
"$bin" train --config configs/sembo_tiny.yaml --resume run_dir="$OUT/runs/sembo_tiny" \
  "data.sources=[{manifest: $OUT/corpus/manifests/all.train.jsonl}]" \
  "data.valid_sources=[{manifest: $OUT/corpus/manifests/all.valid.jsonl}]" 2>&1 | grep -E 'validation at step|finished|stopped'
echo "demo: SemBo run in $OUT/runs/sembo_tiny (metrics.jsonl, tensorboard/, checkpoints/)"

# The tokenizer on that SemBo (about 2 minutes on 2 cores), then a reconstruction with it.
"$bin" train --config configs/tokenizer_tiny.yaml --resume run_dir="$OUT/runs/tokenizer_tiny" \
  tokenizer.sembo_checkpoint="$OUT/runs/sembo_tiny/checkpoints/best" \
  "data.sources=[{manifest: $OUT/corpus/manifests/all.train.jsonl}]" \
  "data.valid_sources=[{manifest: $OUT/corpus/manifests/all.valid.jsonl}]" 2>&1 | grep -E 'validation at step|finished|stopped'
"$bin" --log-level warn reconstruct --checkpoint "$OUT/runs/tokenizer_tiny/checkpoints/best" \
  --input "$OUT/audio/alsa-utils/Front_Center.wav" --output "$OUT/runs/tokenizer_tiny/Front_Center.recon.wav"
echo "demo: tokenizer run in $OUT/runs/tokenizer_tiny (samples/ holds WAV + spectrogram PNGs);" \
  "reconstruction: $OUT/runs/tokenizer_tiny/Front_Center.recon.wav"

# The DiT on that tokenizer's latents: fill the latent cache, then text-to-audio over the whole
# corpus and text-to-speech on its speech (about 2.5 minutes on 2 cores), then generation.
tok="$OUT/runs/tokenizer_tiny/checkpoints/best"
for split in train valid; do
  "$bin" --log-level warn extract --checkpoint "$tok" --what latents \
    --manifest "$OUT/corpus/manifests/all.$split.jsonl" --out "$OUT/runs/latents_tiny"
done
dit_run() {  # config, run name, manifest prefix
  "$bin" train --config "configs/$1.yaml" --resume run_dir="$OUT/runs/$2" dit.tokenizer_checkpoint="$tok" \
    data.cache_dir="$OUT/runs/latents_tiny" \
    "data.sources=[{manifest: $OUT/corpus/manifests/$3.train.jsonl}]" \
    "data.valid_sources=[{manifest: $OUT/corpus/manifests/$3.valid.jsonl}]" 2>&1 |
    grep -E 'validation at step|finished|stopped' | sed -E 's| val/fm_loss/sigma_[^ ]+ [^ ]+||g'
}
dit_run dit_tta_tiny dit_tta_tiny all
dit_run dit_tts_tiny dit_tts_tiny speech
mkdir -p "$OUT/generated"
"$bin" --log-level warn generate --checkpoint "$OUT/runs/dit_tta_tiny/checkpoints/best" --seconds 4 \
  --text "ambi dark woosh (Sonic Pi sample, ambi)" --out "$OUT/generated/tta.wav"
"$bin" --log-level warn generate --checkpoint "$OUT/runs/dit_tta_tiny/checkpoints/best" --seconds 6 \
  --text "Your basic rock beat from the 50s. (50sRock groove, 80 bpm, key of C, chords C F G C)" \
  --out "$OUT/generated/ttm.wav"
"$bin" --log-level warn generate --checkpoint "$OUT/runs/dit_tts_tiny/checkpoints/best" \
  --text "And God said, Let there be light: and there was light." --out "$OUT/generated/tts.wav"
echo "demo: DiT runs in $OUT/runs/dit_tta_tiny and dit_tts_tiny (samples/ holds generations);" \
  "generated: $OUT/generated/{tta,ttm,tts}.wav"
