#!/usr/bin/env bash
# The README's first command: set-up, build, the demo corpus from Debian packages, then the
# whole method on tiny configs: MAE pretraining of the semantic encoder -> SemBo on it (with its
# PCA / channel-merge baselines) -> tokenizer
# (LoSATok and an acoustic-only baseline) -> latent extraction -> DiT (TTA on a tiny T5, UniFlow-
# style TTS, the joint TTA + TTM + TTS model) ->
# generation -> eval recon / probe / gen / rank, the tiny paper tables (Figure 4, Table 5,
# Table 6 beside the paper's numbers), plots, and one summary table whose every number comes
# from this run.
#   scripts/demo.sh                           tiny configs on the CPU, outputs under demo/
#   DEMO_FAST=1 scripts/demo.sh               a few steps per stage (the test suite's variant)
#   DEVICE=cuda CONFIG_SIZE=paper scripts/demo.sh   the paper's sizes on a GPU (README)
# Environment: BUILD_DIR (build), DEMO_DIR (demo), CORPUS_DIR (DEMO_DIR/corpus), SKIP_BUILD=1
# (use BUILD_DIR's binary as it is), DEVICE (cpu), CONFIG_SIZE (tiny | paper), T5_DIR (the DiTs'
# caption encoder, a Hugging Face Flan-T5 folder; default the tiny random T5 of tests/fixtures),
# VGGISH, PANNS, CLAP, CLAP_TOKENIZER, SPEAKER_SV, UTMOS (eval gen's instruments: the official
# files; default the tiny random-weight ones of tests/fixtures), WHISPER (Whisper for the TTS WER:
# openai's .pt or a Hugging Face folder; default pocketsphinx), QWEN2 (the X-ARES ASR task's decoder:
# the Hugging Face Qwen2.5-0.5B folder; default the tiny random Qwen2 of tests/fixtures).
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

section "latent extraction, DiT (text-to-audio, text-to-speech, joint)"
for split in train valid; do
  "$bin" --log-level warn extract --checkpoint "$tok" --device "$DEVICE" --what latents \
    --manifest "$m/all.$split.jsonl" --out "$runs/latents"
done
t5="dit.condition.text_encoder=${T5_DIR:-tests/fixtures/t5_tiny}"
train "dit_tta$sfx" dit_tta dit.tokenizer_checkpoint="$tok" data.cache_dir="$runs/latents" "$t5" "${data_all[@]}"
train "dit_tts$sfx" dit_tts dit.tokenizer_checkpoint="$tok" data.cache_dir="$runs/latents" "${data_speech[@]}"
data_joint=("data.sources=[{manifest: $m/audio.train.jsonl, weight: 1, task: tta}, {manifest: $m/music.train.jsonl, weight: 1, task: ttm}, {manifest: $m/speech.train.jsonl, weight: 1, task: tts}]"
  "data.valid_sources=[{manifest: $m/audio.valid.jsonl, task: tta}, {manifest: $m/music.valid.jsonl, task: ttm}, {manifest: $m/speech.valid.jsonl, task: tts}]")
train "dit_joint$sfx" dit_joint dit.tokenizer_checkpoint="$tok" data.cache_dir="$runs/latents" "$t5" "${data_joint[@]}"

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

section "eval probe --suite xares: X-ARES' protocol on its data layout, ASR through a tiny Qwen2"
# Stand-ins for three X-ARES tasks made from the demo corpus in X-ARES' shard layout (ESC-50's 5
# folds labelled by domain, Clotho's captions, LibriSpeech's transcripts): the suite reads them as
# it reads the downloaded data, and caches the features (a second call encodes nothing). ESC-50
# and Clotho train 100 epochs for the reason above; the ASR adapter keeps X-ARES' 10 and feeds a
# tiny random-weight Qwen2 (QWEN2: the real Qwen2.5-0.5B folder), so its transcripts are noise
# while its loss falls.
scripts/make_xares_demo.sh "$m" "$OUT/xares_data" >/dev/null
xares=(--suite xares --checkpoint "$tok" --device "$DEVICE" --data "$OUT/xares_data" --cache "$OUT/xares_cache"
  --representation sembo,latent)
# DEMO_FAST takes the first clips of each split or fold only (30, and 16 for the ASR task).
clips=() asr_clips=()
[ "$FAST" = 1 ] && clips=(--max-clips 30) asr_clips=(--max-clips 16)
"$bin" --log-level warn eval probe "${xares[@]}" --xares-task ESC,Clo --epochs 100 --retrieval-hidden 256 \
  ${clips[@]+"${clips[@]}"} --out "$ev/xares.json"
"$bin" --log-level warn eval probe "${xares[@]}" --xares-task LS100h --qwen2 "${QWEN2:-tests/fixtures/qwen2_tiny}" \
  --asr-adapters "$OUT/xares_adapters" ${asr_clips[@]+"${asr_clips[@]}"} --out "$ev/xares_asr.json"

section "eval gen: FAD (VGGish), KL / IS / FD (PANNs), CLAP score, encoder-space FD, WER, SIM, MOS"
# The paper's instruments. Their official files cannot ship with the demo: unless VGGISH, PANNS,
# CLAP (and CLAP_TOKENIZER) name them, the tiny RANDOM-WEIGHT instruments of tests/fixtures run
# (the official layouts, real front ends): their numbers test the plumbing, not the audio.
instruments=(--vggish "${VGGISH:-tests/fixtures/vggish_tiny.pth}" --panns "${PANNS:-tests/fixtures/panns16k_tiny.pth}"
  --clap "${CLAP:-tests/fixtures/clap_tiny/630k-audioset-best.pt}" --clap-tokenizer "${CLAP_TOKENIZER:-tests/fixtures/clap_tiny}")
[ -z "${VGGISH:-}${PANNS:-}${CLAP:-}" ] &&
  echo "(random-weight tiny instruments from tests/fixtures: set VGGISH, PANNS, CLAP, CLAP_TOKENIZER for the official files)"
"$bin" --log-level warn eval gen --checkpoint "$tok" --device "$DEVICE" --generated "$OUT/generated/tta" \
  --reference "$OUT/tta.test.jsonl" "${instruments[@]}" --wer off --out "$ev/gen_tta.json"
# TTS: speaker similarity (WavLM-SV) and MOS (UTMOS22 strong), the same way; the WER through
# Whisper when WHISPER names it, else through pocketsphinx.
speech=(--sim "${SPEAKER_SV:-tests/fixtures/wavlm_sv_tiny/wavlm_large_finetune.pth}"
  --mos "${UTMOS:-tests/fixtures/utmos_tiny/utmos22_strong_step7459_v1.pt}")
[ -n "${WHISPER:-}" ] && speech+=(--wer whisper --whisper "$WHISPER")
"$bin" --log-level warn eval gen --checkpoint "$tok" --device "$DEVICE" --generated "$OUT/generated/tts" \
  --reference "$m/speech.test.jsonl" "${instruments[@]}" "${speech[@]}" \
  --wer-clips "$( [ "$FAST" = 1 ] && echo 3 || echo 8 )" --out "$ev/gen_tts.json"

section "eval rank: effective rank and PCA variance, 1280-d vs 128-d"
"$bin" --log-level warn eval rank --checkpoint "$tok" --device "$DEVICE" --manifest "$m/all.train.jsonl" \
  --representation semantic,sembo,pca,latent --out "$ev/rank.json"

if [ "$SIZE" = tiny ]; then
  section "paper tables (tiny): Figure 4, Table 5, Table 6 beside the paper's numbers"
  # Each table trains its runs on the demo corpus with the demo's MAE teacher and SemBo, evaluates
  # them, and prints ours / paper per cell (docs/recipes.md, "Paper tables").
  for t in fig4_tiny table5_tiny table6_tiny; do
    "$bin" --log-level warn table "configs/tables/$t.yaml" --out-dir "$OUT/tables/$t" --var corpus="$m" \
      --var encoder="$mae" --var sembo="$runs/sembo/checkpoints/best" "${common[@]}" \
      ${fast_train[@]+"${fast_train[@]}"} | sed -n '/^# /,$p' | { grep -v '^wrote ' || true; }
  done
fi

section "plots"
for r in mae sembo tokenizer tokenizer_acoustic_only dit_tta dit_tts dit_joint; do
  "$bin" --log-level warn plot "$runs/$r" | sed 's/^/  /'
done

section "summary"
# One table, written by the program from the runs' metrics.jsonl and the eval JSONs.
"$bin" --log-level warn report "$runs"/{mae,mae_untrained,sembo,tokenizer,tokenizer_acoustic_only,dit_tta,dit_tts,dit_joint} \
  "$ev"/{probe_mae,probe_mae_untrained,recon,recon_acoustic_only,probe,probe_acoustic_only,gen_tta,gen_tts,rank}.json \
  --out "$OUT/summary.txt"
# Every number the method must produce is there (the WER only where pocketsphinx is installed).
for check in "$ev/recon.json:.overall.mel_distance,.overall.si_sdr,.overall.stoi,.overall.real_time_factor" \
  "$ev/recon_acoustic_only.json:.overall.mel_distance" \
  "$ev/probe.json:.representations.semantic.tasks.domain.linear_accuracy,.representations.latent.tasks.domain.knn_accuracy,.representations.pca.tasks.domain.linear_accuracy" \
  "$ev/probe_acoustic_only.json:.representations.latent.tasks.domain.linear_accuracy" \
  "$ev/xares.json:.representations.latent.tasks.esc50.score,.representations.latent.tasks.esc50.knn,.representations.sembo.tasks.clotho.score,.representations.latent.average" \
  "$ev/xares_asr.json:.representations.latent.tasks.librispeech.score,.representations.sembo.tasks.librispeech.valid" \
  "$ev/probe_mae.json:.representations.semantic.tasks.domain.knn_accuracy" \
  "$ev/probe_mae_untrained.json:.representations.semantic.tasks.domain.knn_accuracy" \
  "$ev/gen_tta.json:.encoder_space.frechet_distance,.encoder_space.diversity_generated,.overall.fad_vggish,.overall.fd_panns,.overall.kl_softmax,.overall.kl_sigmoid,.overall.inception_score,.overall.clap_score" \
  "$ev/gen_tts.json:.encoder_space.frechet_distance,.overall.fad_vggish,.overall.clap_score" \
  "$ev/rank.json:.features.semantic.effective_rank,.features.latent.effective_rank" \
  "$ev/recon.json:.overall.mel_dac"; do
  file="${check%%:*}"
  IFS=, read -r -a keys <<< "${check#*:}"
  for k in "${keys[@]}"; do
    jq -e "$k | numbers" "$file" >/dev/null || { echo "demo.sh: $file has no number at $k" >&2; exit 1; }
  done
done
if [ "$SIZE" = tiny ]; then  # every row of the tiny tables has our numbers where we measure one
  for check in "fig4_tiny:esc,fsc" "table5_tiny:mel,esc,fsc" "table6_tiny:esc,mel"; do
    file="$OUT/tables/${check%%:*}/table.json"
    IFS=, read -r -a keys <<< "${check#*:}"
    for k in "${keys[@]}"; do
      jq -e "(.rows | length) as \$n | [.rows[].values.$k.ours | numbers] | length == \$n" "$file" >/dev/null ||
        { echo "demo.sh: $file lacks our $k in some row" >&2; exit 1; }
    done
  done
fi
echo
echo "demo: $(( $(date +%s) - t_start )) s in all ($( [ "$FAST" = 1 ] && echo fast || echo "$SIZE" ) configs, $DEVICE)"
echo "demo: generated audio in $OUT/generated/{tta,tts}/; reconstructions and spectrograms in $runs/tokenizer/samples/"
echo "demo: plots in $runs/*/plots/ and $ev/rank.png; every number above is in $ev/*.json and $OUT/summary.txt"
if [ "$SIZE" = tiny ]; then
  echo "demo: the tiny paper tables in $OUT/tables/*/table.{md,csv,json,png}"
fi
