#!/usr/bin/env bash
# The README's first command: set-up, build, the demo corpus from Debian packages, then the
# whole method on tiny configs: MAE pretraining of the semantic encoder -> SemBo on it (with its
# PCA / channel-merge baselines) -> tokenizer
# (LoSATok and an acoustic-only baseline) -> latent extraction -> DiT (TTA, TTS) ->
# generation -> eval recon / probe / gen / rank, plots, and one summary table whose every
# number comes from this run.
#   scripts/demo.sh                           tiny configs on the CPU, outputs under demo/
#   DEMO_FAST=1 scripts/demo.sh               a few steps per stage (the test suite's variant)
#   DEVICE=cuda CONFIG_SIZE=paper scripts/demo.sh   the paper's sizes on a GPU (README)
# Environment: BUILD_DIR (build), DEMO_DIR (demo), CORPUS_DIR (DEMO_DIR/corpus), SKIP_BUILD=1
# (use BUILD_DIR's binary as it is), DEVICE (cpu), CONFIG_SIZE (tiny | paper).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
OUT="${DEMO_DIR:-demo}"
CORPUS="${CORPUS_DIR:-$OUT/corpus}"
DEVICE="${DEVICE:-cpu}"
SIZE="${CONFIG_SIZE:-tiny}"
FAST="${DEMO_FAST:-0}"
case "$SIZE" in
  tiny) sfx=_tiny ;;
  paper) sfx= ;;
  *) echo "demo.sh: CONFIG_SIZE must be tiny or paper, not '$SIZE'" >&2; exit 2 ;;
esac
t_start=$(date +%s)
section() { printf '\n== %s (%d s)\n' "$1" $(( $(date +%s) - t_start )); }

section "set-up and build"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  scripts/setup.sh --corpus --check >/dev/null 2>&1 || scripts/setup.sh --corpus
  TARGETS="losatok losatok_bench_audio" scripts/build.sh >/dev/null
fi
case "$BUILD_DIR" in /*) bin="$BUILD_DIR/src/losatok" ;; *) bin="$(pwd)/$BUILD_DIR/src/losatok" ;; esac
[ -x "$bin" ] || { echo "demo.sh: no binary at $bin" >&2; exit 1; }
mkdir -p "$OUT"
runs="$OUT/runs"
m="$CORPUS/manifests"

section "front ends on real recordings"
scripts/fetch_sample_audio.sh "$OUT/audio" >/dev/null
mkdir -p "$OUT/features"
for f in "$OUT"/audio/alsa-utils/Front_Center.wav "$OUT"/audio/sound-theme-freedesktop/{complete,bell}.oga; do
  name="$(basename "${f%.*}")"
  for fe in dasheng vocos; do
    "$bin" --log-level warn features --frontend $fe "$f" "$OUT/features/$name.$fe.safetensors"
  done
  printf '%-16s dasheng %s  vocos %s\n' "$name" \
    "$("$bin" --log-level warn inspect "$OUT/features/$name.dasheng.safetensors" | awk -F'\t' '/^mel/ {print $3}')" \
    "$("$bin" --log-level warn inspect "$OUT/features/$name.vocos.safetensors" | awk -F'\t' '/^mel/ {print $3}')"
done

section "demo corpus"
[ -f "$m/all.train.jsonl" ] || scripts/make_demo_corpus.sh "$CORPUS" --size small
# Caption / transcript prompts and references for generation: effects + music, and speech.
# (Audio paths made absolute: the manifest lives outside the corpus folder.)
cat "$m/audio.test.jsonl" "$m/music.test.jsonl" |
  jq -c --arg d "$(cd "$m" && pwd)" '.audio |= (if startswith("/") then . else $d + "/" + . end)' > "$OUT/tta.test.jsonl"

# Overrides every training run shares; the fast variant trains a few steps per stage.
common=("runtime.device=$DEVICE" "train.tensorboard=false")
fast_train=()
if [ "$FAST" = 1 ]; then
  fast_train=(train.max_steps=30 train.val_every=15 train.checkpoint.every=15 train.log_every=10)
fi
train() {  # config, run name, extra overrides...
  local config="$1" name="$2"
  shift 2
  "$bin" train --config "configs/$config.yaml" --resume run_dir="$runs/$name" "${common[@]}" \
    ${fast_train[@]+"${fast_train[@]}"} "$@" 2>&1 | { grep -E 'validation at step|finished|stopped|error' || true; } |
    sed -E 's| val/fm_loss/sigma_[^ ]+ [^ ]+||g'
}
data_all=("data.sources=[{manifest: $m/all.train.jsonl}]" "data.valid_sources=[{manifest: $m/all.valid.jsonl}]")
data_speech=("data.sources=[{manifest: $m/speech.train.jsonl}]" "data.valid_sources=[{manifest: $m/speech.valid.jsonl}]")

section "MAE: Dasheng-style pretraining of the semantic encoder, and its untrained twin"
train "mae$sfx" mae "${data_all[@]}"
# The same encoder (same seed) with no training: the probe's reference for what MAE learned.
train "mae$sfx" mae_untrained train.max_steps=0 "${data_all[@]}"
mae="$runs/mae/checkpoints/best"
# configs/mae.yaml pretrains a Dasheng-base-sized encoder: the paper-size stages built on it take
# its sizes (the tiny configs share one encoder size).
enc=()
[ "$SIZE" = paper ] && enc=(model.encoder.embed_dim=768 model.encoder.depth=12 model.encoder.num_heads=12)

section "SemBo on the MAE encoder (validation also scores the PCA and channel-merge baselines)"
train "sembo$sfx" sembo train.encoder_weights="$mae" ${enc[@]+"${enc[@]}"} "${data_all[@]}"

section "tokenizers: LoSATok, and the acoustic-only baseline"
gan_fast=()
[ "$FAST" = 1 ] && gan_fast=(tokenizer.gan.start_step=20)
train "tokenizer$sfx" tokenizer tokenizer.sembo_checkpoint="$runs/sembo/checkpoints/best" ${enc[@]+"${enc[@]}"} "${data_all[@]}" \
  ${gan_fast[@]+"${gan_fast[@]}"}
train "tokenizer$sfx" tokenizer_acoustic_only model.variant=acoustic_only 'tokenizer.sembo_checkpoint=""' \
  "${data_all[@]}" ${gan_fast[@]+"${gan_fast[@]}"}
tok="$runs/tokenizer/checkpoints/best"
tok_ac="$runs/tokenizer_acoustic_only/checkpoints/best"

section "latent extraction, DiT (text-to-audio, text-to-speech)"
for split in train valid; do
  "$bin" --log-level warn extract --checkpoint "$tok" --device "$DEVICE" --what latents \
    --manifest "$m/all.$split.jsonl" --out "$runs/latents"
done
train "dit_tta$sfx" dit_tta dit.tokenizer_checkpoint="$tok" data.cache_dir="$runs/latents" "${data_all[@]}"
train "dit_tts$sfx" dit_tts dit.tokenizer_checkpoint="$tok" data.cache_dir="$runs/latents" "${data_speech[@]}"

section "generation: the test captions and transcripts"
gen() {  # DiT run, prompts manifest, output folder
  "$bin" --log-level warn generate --checkpoint "$runs/$1/checkpoints/best" --device "$DEVICE" \
    --prompts "$2" --out-dir "$3"
}
gen dit_tta "$OUT/tta.test.jsonl" "$OUT/generated/tta"
gen dit_tts "$m/speech.test.jsonl" "$OUT/generated/tts"
echo "generated: $(ls "$OUT"/generated/tta/*.wav | wc -l) TTA clips, $(ls "$OUT"/generated/tts/*.wav | wc -l) TTS clips"

ev="$OUT/eval"
mkdir -p "$ev"
section "eval recon: held-out test clips through each tokenizer"
"$bin" --log-level warn eval recon --checkpoint "$tok" --device "$DEVICE" --manifest "$m/all.test.jsonl" \
  --out "$ev/recon.json"
"$bin" --log-level warn eval recon --checkpoint "$tok_ac" --device "$DEVICE" --manifest "$m/all.test.jsonl" \
  --out "$ev/recon_acoustic_only.json"

section "eval probe: domain classification (X-ARES protocol) on frozen representations"
# X-ARES trains the probe 10 epochs; on the demo's 363 training clips that is 120 steps, too
# few to leave the initialisation (PCA scored 0.16 that way), so the demo trains 100.
probe_data=(--train "$m/all.train.jsonl" --valid "$m/all.valid.jsonl" --test "$m/all.test.jsonl" --task domain
  --epochs 100)
"$bin" --log-level warn eval probe --checkpoint "$tok" --device "$DEVICE" "${probe_data[@]}" \
  --representation semantic,sembo,pca,channel_merge,latent,acoustic --out "$ev/probe.json"
"$bin" --log-level warn eval probe --checkpoint "$tok_ac" --device "$DEVICE" "${probe_data[@]}" \
  --representation latent --out "$ev/probe_acoustic_only.json"
# The encoder alone, MAE-pretrained and untrained (--lenient: an MAE checkpoint also holds its
# decoder, and has no tokenizer).
for r in mae mae_untrained; do
  ckpt="$runs/$r/checkpoints/best"
  [ $r = mae_untrained ] && ckpt="$runs/$r/checkpoints/step-0"
  "$bin" --log-level error eval probe --checkpoint "$ckpt" --lenient --device "$DEVICE" "${probe_data[@]}" \
    --representation semantic --out "$ev/probe_$r.json"
done

section "eval gen: Frechet distance in the frozen encoder's space, diversity, WER"
"$bin" --log-level warn eval gen --checkpoint "$tok" --device "$DEVICE" --generated "$OUT/generated/tta" \
  --reference "$OUT/tta.test.jsonl" --wer off --out "$ev/gen_tta.json"
"$bin" --log-level warn eval gen --checkpoint "$tok" --device "$DEVICE" --generated "$OUT/generated/tts" \
  --reference "$m/speech.test.jsonl" --wer-clips "$( [ "$FAST" = 1 ] && echo 3 || echo 8 )" --out "$ev/gen_tts.json"

section "eval rank: effective rank and PCA variance, 1280-d vs 128-d"
"$bin" --log-level warn eval rank --checkpoint "$tok" --device "$DEVICE" --manifest "$m/all.train.jsonl" \
  --representation semantic,sembo,pca,latent --out "$ev/rank.json"

section "plots"
for r in mae sembo tokenizer tokenizer_acoustic_only dit_tta dit_tts; do
  "$bin" --log-level warn plot "$runs/$r" | sed 's/^/  /'
done

section "summary"
last_val() {  # run, metric: the metric at the run's last validation
  jq -s --arg k "$2" '[.[] | select(has($k))] | last | .[$k] // empty' "$runs/$1/metrics.jsonl"
}
first_val() {
  jq -s --arg k "$2" '[.[] | select(has($k))] | first | .[$k] // empty' "$runs/$1/metrics.jsonl"
}
row() { printf '%-52s %16s   %s\n' "$1" "$2" "$3"; }
f3() { [ -n "$1" ] && [ "$1" != null ] && printf '%.3f' "$1" || printf -- '-'; }
{
  row "what" "value" "from"
  printf '%s\n' "----------------------------------------------------------------------------------------------------"
  row "MAE val masked-patch MSE (start -> end)" "$(f3 "$(first_val mae val/mae_loss)") -> $(f3 "$(last_val mae val/mae_loss)")" "runs/mae/metrics.jsonl"
  for r in mae mae_untrained; do
    name="MAE-pretrained encoder"; [ $r = mae_untrained ] && name="same encoder, untrained"
    row "probe domain, $name: linear / kNN" \
      "$(f3 "$(jq .representations.semantic.tasks.domain.linear_accuracy "$ev/probe_$r.json")") / $(f3 "$(jq .representations.semantic.tasks.domain.knn_accuracy "$ev/probe_$r.json")")" "eval/probe_$r.json"
  done
  row "SemBo val rec. cosine error (start -> end)" "$(f3 "$(first_val sembo val/rec_cos_err)") -> $(f3 "$(last_val sembo val/rec_cos_err)")" "runs/sembo/metrics.jsonl"
  row "  PCA baseline rec. cosine error" "$(f3 "$(last_val sembo val/pca/rec_cos_err)")" "same validation"
  row "  channel-merge baseline rec. cosine error" "$(f3 "$(last_val sembo val/channel_merge/rec_cos_err)")" "same validation"
  row "SemBo val time-relation error" "$(f3 "$(last_val sembo val/rel_err)")" "(PCA $(f3 "$(last_val sembo val/pca/rel_err)"))"
  for t in tokenizer tokenizer_acoustic_only; do
    j="$ev/recon.json"; [ $t = tokenizer_acoustic_only ] && j="$ev/recon_acoustic_only.json"
    name=LoSATok; [ $t = tokenizer_acoustic_only ] && name="acoustic-only"
    row "$name recon: mel distance / STFT distance" "$(f3 "$(jq .overall.mel_distance "$j")") / $(f3 "$(jq .overall.stft_distance "$j")")" "eval/$(basename "$j")"
    row "$name recon: SI-SDR dB / STOI" "$(f3 "$(jq .overall.si_sdr "$j")") / $(f3 "$(jq .overall.stoi "$j")")" "test split, $(jq .overall.clips "$j") clips"
    row "$name recon: real-time factor" "$(f3 "$(jq '.overall.real_time_factor // empty' "$j")")" "$DEVICE"
  done
  for r in semantic sembo pca channel_merge latent acoustic; do
        row "probe domain, $r ($(jq ".representations.$r.dim" "$ev/probe.json")-d): linear / kNN" \
      "$(f3 "$(jq ".representations.$r.tasks.domain.linear_accuracy" "$ev/probe.json")") / $(f3 "$(jq ".representations.$r.tasks.domain.knn_accuracy" "$ev/probe.json")")" "eval/probe.json"
  done
  row "probe domain, acoustic-only latent: linear / kNN" \
    "$(f3 "$(jq .representations.latent.tasks.domain.linear_accuracy "$ev/probe_acoustic_only.json")") / $(f3 "$(jq .representations.latent.tasks.domain.knn_accuracy "$ev/probe_acoustic_only.json")")" "eval/probe_acoustic_only.json"
  row "DiT TTA val flow-matching loss (start -> end)" "$(f3 "$(first_val dit_tta val/fm_loss)") -> $(f3 "$(last_val dit_tta val/fm_loss)")" "runs/dit_tta/metrics.jsonl"
  row "DiT TTS val flow-matching loss (start -> end)" "$(f3 "$(first_val dit_tts val/fm_loss)") -> $(f3 "$(last_val dit_tts val/fm_loss)")" "runs/dit_tts/metrics.jsonl"
  row "TTA generated: Frechet distance / diversity" "$(f3 "$(jq .frechet_distance "$ev/gen_tta.json")") / $(f3 "$(jq .diversity_generated "$ev/gen_tta.json")")" "reference diversity $(f3 "$(jq .diversity_reference "$ev/gen_tta.json")")"
  row "TTS generated: Frechet distance / diversity" "$(f3 "$(jq .frechet_distance "$ev/gen_tts.json")") / $(f3 "$(jq .diversity_generated "$ev/gen_tts.json")")" "reference diversity $(f3 "$(jq .diversity_reference "$ev/gen_tts.json")")"
    row "TTS WER generated / reference audio (first $(jq '.wer.generated_clips // 0' "$ev/gen_tts.json"))" "$(f3 "$(jq '.wer.generated // null' "$ev/gen_tts.json")") / $(f3 "$(jq '.wer.reference // null' "$ev/gen_tts.json")")" "$(jq -r '.wer.recognizer // .wer.skipped // "-"' "$ev/gen_tts.json")"
  for r in semantic sembo pca latent; do
    row "effective rank, $r ($(jq ".features.$r.dim" "$ev/rank.json")-d)" "$(f3 "$(jq ".features.$r.effective_rank" "$ev/rank.json")")" "PCs for 90 %: $(jq ".features.$r.components_90" "$ev/rank.json")"
  done
} | tee "$OUT/summary.txt"
# Every number the method must produce is there (the WER only where pocketsphinx is installed).
for check in "$ev/recon.json:.overall.mel_distance,.overall.si_sdr,.overall.stoi,.overall.real_time_factor" \
  "$ev/recon_acoustic_only.json:.overall.mel_distance" \
  "$ev/probe.json:.representations.semantic.tasks.domain.linear_accuracy,.representations.latent.tasks.domain.knn_accuracy,.representations.pca.tasks.domain.linear_accuracy" \
  "$ev/probe_acoustic_only.json:.representations.latent.tasks.domain.linear_accuracy" \
  "$ev/probe_mae.json:.representations.semantic.tasks.domain.knn_accuracy" \
  "$ev/probe_mae_untrained.json:.representations.semantic.tasks.domain.knn_accuracy" \
  "$ev/gen_tta.json:.frechet_distance,.diversity_generated" "$ev/gen_tts.json:.frechet_distance" \
  "$ev/rank.json:.features.semantic.effective_rank,.features.latent.effective_rank"; do
  file="${check%%:*}"
  IFS=, read -r -a keys <<< "${check#*:}"
  for k in "${keys[@]}"; do
    jq -e "$k | numbers" "$file" >/dev/null || { echo "demo.sh: $file has no number at $k" >&2; exit 1; }
  done
done
echo
echo "demo: $(( $(date +%s) - t_start )) s in all ($( [ "$FAST" = 1 ] && echo fast || echo "$SIZE" ) configs, $DEVICE)"
echo "demo: generated audio in $OUT/generated/{tta,tts}/; reconstructions and spectrograms in $runs/tokenizer/samples/"
echo "demo: plots in $runs/*/plots/ and $ev/rank.png; every number above is in $ev/*.json and $OUT/summary.txt"
