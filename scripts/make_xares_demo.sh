#!/usr/bin/env bash
# A small X-ARES data root made from the demo corpus, in X-ARES' own layout (one folder per task,
# WebDataset tar shards: <key>.wav + <key>.json per sample, named as X-ARES' task configs name
# them), so `eval probe --suite xares --data OUT` runs on it exactly as on the downloaded suite:
#   esc50/wds-audio-fold-{1..5}-000000.tar   every clip, folds round-robin; "label" = the clip's
#                                            domain (speech 0, music 1, audio 2): a 5-fold clip task
#   librispeech/{train-clean-100,dev-clean,test-clean}-000000.tar
#                                            the speech clips and their transcripts ("trans"): ASR
#   clotho/{clotho_development,clotho_evaluation,clotho_validation}-000000.tar
#                                            the captioned music / sound clips ("caption_1"): retrieval
# Usage: scripts/make_xares_demo.sh MANIFEST_DIR OUT_DIR   (MANIFEST_DIR: the corpus's manifests/)
# Needs jq and tar.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 MANIFEST_DIR OUT_DIR" >&2; exit 2; }
m="$(cd "$1" && pwd)"
out="$2"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# shard TAR: tars the samples listed in $tmp/list (key per line; <key>.wav and <key>.json in $tmp)
# in list order.
shard() {
  mkdir -p "$(dirname "$1")"
  local files=()
  while read -r k; do files+=("$k.json" "$k.wav"); done <"$tmp/list"
  tar --format=ustar -cf "$1" -C "$tmp" "${files[@]}"
  rm -f "$tmp"/*.wav "$tmp"/*.json "$tmp/list"
}

# sample KEY AUDIO JSON: stages one sample.
sample() {
  cp "$2" "$tmp/$1.wav"
  printf '%s\n' "$3" >"$tmp/$1.json"
  echo "$1" >>"$tmp/list"
}

# rows MANIFEST FILTER: "audio<TAB>domain<TAB>text" of the manifest's rows that pass the jq FILTER,
# audio made absolute.
rows() {
  jq -r "select($2) | [.audio, .domain, (.text // \"\")] | @tsv" "$1" |
    while IFS=$'\t' read -r a d t; do
      case "$a" in /*) ;; *) a="$m/$a" ;; esac
      printf '%s\t%s\t%s\n' "$a" "$d" "$t"
    done
}

# ESC-50 stand-in: 5 folds of every clip, labelled by domain; the domains interleaved, so the
# first clips of a fold (--max-clips) hold all three.
for s in train valid test; do rows "$m/all.$s.jsonl" true; done >"$tmp/all.tsv"
for d in speech music audio; do awk -F'\t' -v d="$d" '$2 == d' "$tmp/all.tsv" >"$tmp/$d.tsv"; done
paste -d'\n' "$tmp/speech.tsv" "$tmp/music.tsv" "$tmp/audio.tsv" | grep -v '^$' >"$tmp/mixed.tsv"
for fold in 1 2 3 4 5; do
  i=0
  while IFS=$'\t' read -r a d t; do
    i=$((i + 1))
    [ $(((i - 1) % 5 + 1)) -eq "$fold" ] || continue
    case "$d" in speech) l=0 ;; music) l=1 ;; *) l=2 ;; esac
    sample "$(printf 'clip%04d' "$i")" "$a" "{\"label\": $l}"
  done <"$tmp/mixed.tsv"
  shard "$out/esc50/wds-audio-fold-$fold-000000.tar"
done

# LibriSpeech-100h stand-in: the speech clips' transcripts.
for pair in train:train-clean-100 valid:dev-clean test:test-clean; do
  i=0
  rows "$m/speech.${pair%%:*}.jsonl" '.text != null and .text != ""' | while IFS=$'\t' read -r a d t; do
    i=$((i + 1))
    sample "$(printf 'utt%04d' "$i")" "$a" "$(jq -cn --arg t "$t" '{trans: $t}')"
  done
  shard "$out/librispeech/${pair#*:}-000000.tar"
done

# Clotho stand-in: the captioned non-speech clips (one caption each).
for pair in train:clotho_development valid:clotho_evaluation test:clotho_validation; do
  i=0
  for d in music audio; do rows "$m/$d.${pair%%:*}.jsonl" '.text != null and .text != ""'; done |
    while IFS=$'\t' read -r a d t; do
      i=$((i + 1))
      sample "$(printf 'snd%04d' "$i")" "$a" "$(jq -cn --arg t "$t" '{caption_1: $t}')"
    done
  shard "$out/clotho/${pair#*:}-000000.tar"
done
echo "X-ARES demo data in $out: $(find "$out" -name '*.tar' | wc -l) shards"
