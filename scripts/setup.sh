#!/usr/bin/env bash
# Installs every Debian package losatok needs, idempotently, as root or through sudo.
#   scripts/setup.sh               build + test + run dependencies (what CI needs)
#   scripts/setup.sh --reference   also python3-torch / torchaudio, to regenerate tests/reference fixtures
#   scripts/setup.sh --corpus      also sox, fluidsynth, mma, espeak-ng, jq for scripts/make_demo_corpus.sh
#   scripts/setup.sh --check       exit 0 when everything is installed, 1 otherwise (installs nothing)
set -euo pipefail

BUILD_PKGS=(
  g++ cmake ninja-build pkg-config ccache git
  libtorch-dev libgloo-dev libopenblas0-pthread
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
  libsndfile1-dev libsoxr-dev libsentencepiece-dev
)
# Used by the demo and the data scripts: fetching and unpacking Debian packages of real audio;
# the plots (gnuplot) and the rough TTS word error rate of `losatok eval gen` (pocketsphinx).
RUN_PKGS=(dpkg-dev ca-certificates gnuplot-nox pocketsphinx pocketsphinx-en-us)
REFERENCE_PKGS=(python3 python3-torch python3-torchaudio python3-numpy python3-scipy python3-sentencepiece sentencepiece)
# scripts/make_demo_corpus.sh: conversion, MIDI / groove rendering, synthetic speech, JSON.
CORPUS_PKGS=(sox libsox-fmt-all fluidsynth mma espeak-ng jq)

want=("${BUILD_PKGS[@]}" "${RUN_PKGS[@]}")
check_only=0
for arg in "$@"; do
  case "$arg" in
    --reference) want+=("${REFERENCE_PKGS[@]}") ;;
    --corpus) want+=("${CORPUS_PKGS[@]}") ;;
    --check) check_only=1 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg'" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup.sh: all ${#want[@]} packages present"
  exit 0
fi
if [ "$check_only" -eq 1 ]; then
  echo "setup.sh: missing: ${missing[*]}"
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup.sh: done"
