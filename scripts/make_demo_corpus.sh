#!/usr/bin/env bash
# Builds a real cross-domain demo corpus (README.md, "Data") from Debian packages: recorded
# speech with transcripts, music (recordings, rendered MIDI, MMA accompaniment grooves) with
# captions, and sound effects with captions, plus a clearly labelled espeak-ng subset.
#   scripts/make_demo_corpus.sh OUT_DIR [--size small|full]
# Packages are fetched with `apt-get download` (no root) into OUT_DIR's sibling cache
# `.<name>-debs/`, unpacked with dpkg-deb -x, converted to 16 kHz mono 16-bit WAV under
# OUT_DIR/audio/, and described in OUT_DIR/manifests/{speech,music,audio,all}.{train,valid,test}.jsonl
# (paths relative to the manifest's folder) and OUT_DIR/summary.json. Each package's copyright
# file is kept in OUT_DIR/copyright/. Splits go by source (speaker, track, groove file, effect
# family), so no source crosses splits. Deterministic: same packages, same corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR="$PWD"

OUT="${1:?usage: make_demo_corpus.sh OUT_DIR [--size small|full]}"
SIZE=small
shift
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE="${2:?--size needs small or full}"; shift 2 ;;
    *) echo "make_demo_corpus.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
case "$SIZE" in small|full) ;; *) echo "make_demo_corpus.sh: --size must be small or full" >&2; exit 2 ;; esac

"$ROOT_DIR/scripts/setup.sh" --corpus >/dev/null
export LC_ALL=C.UTF-8
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
CACHE="$(dirname "$OUT")/.$(basename "$OUT")-debs"
PKGS=(asterisk-core-sounds-en-wav asterisk-core-sounds-en bible-kjv bible-kjv-text mma simutrans-data
      openttd-openmsx timgm6mb-soundfont sonic-pi-samples minetest-data)
if [ "$SIZE" = full ]; then
  PKGS+=(festvox-ru tuxpaint-stamps-default fillets-ng-data fillets-ng-data-cs wesnoth-1.16-music
         wesnoth-1.16-data fluid-soundfont-gm)
fi

# --- fetch and unpack -------------------------------------------------------------------------
mkdir -p "$CACHE/debs" "$CACHE/root"
(
  cd "$CACHE/debs"
  need=()
  for p in "${PKGS[@]}"; do ls "${p}"_*.deb >/dev/null 2>&1 || need+=("$p"); done
  if [ "${#need[@]}" -gt 0 ]; then
    echo "make_demo_corpus: downloading ${need[*]}"
    apt-get download "${need[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
  fi
  for p in "${PKGS[@]}"; do
    deb=$(ls "${p}"_*.deb 2>/dev/null | head -n1 || true)
    [ -n "$deb" ] || { echo "make_demo_corpus: could not download package '$p' (see apt-get's messages above)" >&2; exit 1; }
    [ -f "$CACHE/root/.$p.unpacked" ] || { dpkg-deb -x "$deb" "$CACHE/root" && touch "$CACHE/root/.$p.unpacked"; }
  done
)
R="$CACHE/root"
rm -rf "$OUT/audio" "$OUT/manifests" "$OUT/copyright"
mkdir -p "$OUT/audio" "$OUT/manifests" "$OUT/copyright"
for p in "${PKGS[@]}"; do
  [ -f "$R/usr/share/doc/$p/copyright" ] && cp "$R/usr/share/doc/$p/copyright" "$OUT/copyright/$p.copyright"
done
LINES="$OUT/manifests/.lines.jsonl"
: > "$LINES"
TMPD="$(mktemp -d)"
trap 'rm -rf "$TMPD"' EXIT

# --- one clip ---------------------------------------------------------------------------------
# split_of UNIT: test / valid / train (1 : 1 : 8) from a hash of the source unit.
split_of() {
  local h
  h=$(printf '%s' "$1" | cksum | cut -d' ' -f1)
  case $((h % 10)) in 0) echo test ;; 1) echo valid ;; *) echo train ;; esac
}

# add SRC NAME DOMAIN PACKAGE UNIT LABEL TEXT LANG [START LENGTH] [SPLIT]
# Converts SRC (or its [START, START+LENGTH) seconds) to OUT/audio/DOMAIN/NAME.wav and appends
# its manifest line. Clips under 0.3 s are left out.
add() {
  local src="$1" name="$2" domain="$3" pkg="$4" unit="$5" label="$6" text="$7" lang="$8"
  local start="${9:-}" length="${10:-}" split="${11:-}"
  local rel="audio/$domain/$name.wav"
  mkdir -p "$(dirname "$OUT/$rel")"
  local trim=()
  [ -n "$start" ] && trim=(trim "$start" "$length")
  sox -q -D "$src" -r 16000 -c 1 -b 16 "$OUT/$rel" "${trim[@]}" 2>/dev/null || { rm -f "$OUT/$rel"; return 0; }
  local dur
  dur=$(soxi -D "$OUT/$rel" 2>/dev/null || echo 0)
  if awk -v d="$dur" 'BEGIN {exit !(d < 0.3)}'; then rm -f "$OUT/$rel"; return 0; fi
  [ -n "$split" ] || split=$(split_of "$pkg:$unit")
  jq -nc --arg audio "../$rel" --arg text "$text" --arg lab "$label" --arg domain "$domain" \
    --argjson duration "$(printf '%.3f' "$dur")" --arg split "$split" --arg lang "$lang" --arg source "$pkg:$unit" \
    '{"audio": $audio, "text": $text, "label": $lab, "domain": $domain, "duration": $duration,
      "split": $split, "lang": $lang, "source": $source} | with_entries(select(.value != ""))' >> "$LINES"
}

# cut_clips SRC NAME DOMAIN PACKAGE UNIT LABEL CAPTION [MAX_CLIPS]: consecutive clips of at most 10 s.
cut_clips() {
  local src="$1" name="$2" domain="$3" pkg="$4" unit="$5" label="$6" caption="$7" max="${8:-1000}"
  local total n i
  total=$(soxi -D "$src" 2>/dev/null || echo 0)
  n=$(awk -v t="$total" 'BEGIN {n = int((t + 9.999) / 10); print n}')
  [ "$n" -gt "$max" ] && n="$max"
  for ((i = 0; i < n; i++)); do
    add "$src" "$name-$(printf %03d "$i")" "$domain" "$pkg" "$unit" "$label" "$caption" "" "$((i * 10))" 10
  done
}

limit() { if [ "$SIZE" = small ]; then head -n "$1"; else cat; fi; }

# Each part below writes its own lines file (in its own temp folder), and the parts run
# nproc at a time; the manifests concatenate them in a fixed order, so the result does not depend on
# which part finished first.

# --- speech -----------------------------------------------------------------------------------
part_asterisk() {
  zcat "$R/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz" > "$T/index.txt"
  # One speaker (Allison) for the whole package: all of it in train.
  find "$R/usr/share/asterisk/sounds/en_US_f_Allison" -maxdepth 1 -name '*.wav' | sort | limit 200 | while read -r f; do
    id=$(basename "$f" .wav)
    text=$(awk -v id="$id" 'index($0, id ": ") == 1 {print substr($0, length(id) + 3); exit}' "$T/index.txt")
    [ -n "$text" ] && add "$f" "asterisk-$id" speech asterisk-core-sounds-en allison allison "$text" en "" "" train
  done
}

# espeak-ng reading the King James Bible (public domain): synthetic, labelled so.
part_espeak() {
  local verses="gen1:1-30"
  [ "$SIZE" = full ] && verses="gen1:1-31 gen2:1-25 ps23:1-6 ps100:1-5 matt5:1-48"
  COLUMNS=100000 "$R/usr/bin/bible" -p "$R/usr/lib" -d bible.data -f $verses 2>/dev/null |
    grep -E '^[0-9A-Za-z]+[0-9]+:[0-9]+ ' > "$T/verses.txt" || true
  declare -A split=([en-us]=train [en-gb]=train [en-gb-x-rp]=train [en-gb-scotland]=valid [en-029]=test [en-us-nyc]=test)
  local voices=(en-us en-gb en-gb-scotland en-029)
  [ "$SIZE" = full ] && voices+=(en-gb-x-rp en-us-nyc)
  for voice in "${voices[@]}"; do
    n=0
    while IFS= read -r line; do
      ref=${line%% *}
      text=${line#* }
      espeak-ng -v "$voice" -w "$T/espeak.wav" "$text" 2>/dev/null || continue
      add "$T/espeak.wav" "espeak-$voice-$(printf %03d "$n")-${ref//:/_}" speech espeak-ng "$voice" \
        "espeak-ng:$voice (synthetic)" "$text" en "" "" "${split[$voice]}"
      n=$((n + 1))
    done < "$T/verses.txt"
  done
}

# festvox-ru: one Russian speaker (msu_ru_nsh) reading sentences.
part_festvox() {
  local fv="$R/usr/share/festival/voices/russian/msu_ru_nsh_clunits"
  sed -n 's/^( \([a-z_0-9]*\) "\(.*\)" )$/\1\t\2/p' "$fv/etc/txt.done.data" | while IFS=$'\t' read -r id text; do
    [ -f "$fv/wav/$id.wav" ] && add "$fv/wav/$id.wav" "festvox-ru-$id" speech festvox-ru msu_ru_nsh msu_ru_nsh "${text//+/}" ru
  done
}

# tuxpaint stamp descriptions: <stamp>_desc_<lang>.ogg, text in <stamp>.txt as <lang>.utf8=...
# One reader per language as far as we know: the language is the speaker unit.
part_tuxpaint_speech() {
  find "$R/usr/share/tuxpaint/stamps" -name '*_desc_*.ogg' | sort | while read -r f; do
    base=${f%_desc_*}
    lang=$(basename "$f" .ogg)
    lang=${lang##*_desc_}
    [ -f "$base.txt" ] || continue
    text=$(awk -v l="$lang" 'index($0, l ".utf8=") == 1 {sub(/^[^=]*=/, ""); print; exit}' "$base.txt")
    [ -n "$text" ] || continue
    add "$f" "tuxpaint-$(basename "$base")-$lang" speech tuxpaint-stamps-default "reader-$lang" "tuxpaint-$lang" "$text" "$lang"
  done
}

# fillets-ng: Czech voice acting; transcripts in script/<level>/dialogs_cs.lua (dialogId, then dialogStr).
part_fillets() {
  local fl="$R/usr/share/games/fillets-ng"
  for d in "$fl"/script/*/; do
    level=$(basename "$d")
    [ -f "$d/dialogs_cs.lua" ] || continue
    awk '/^dialogId\(/ {match($0, /^dialogId\("[^"]*", "[^"]*"/); split(substr($0, 10, RLENGTH - 9), a, "\""); id = a[2]; font = a[4]}
         /^dialogStr\(/ && id != "" {s = $0; sub(/^dialogStr\("/, "", s); sub(/"\)[ \t]*$/, "", s); print id "\t" font "\t" s; id = ""}' \
      "$d/dialogs_cs.lua" | while IFS=$'\t' read -r id font text; do
      f="$fl/sound/$level/cs/$id.ogg"
      [ -f "$f" ] || continue
      case "$font" in font_small) who=small-fish ;; font_big) who=big-fish ;; *) who="$level-${font:-narrator}" ;; esac
      add "$f" "fillets-$level-$id" speech fillets-ng-data-cs "$who" "fillets-$who" "$text" cs
    done
  done
}

# --- music ------------------------------------------------------------------------------------
SF="$R/usr/share/sounds/sf2/TimGM6mb.sf2"
[ "$SIZE" = full ] && SF="$R/usr/share/sounds/sf2/FluidR3_GM.sf2"
render_midi() {  # MIDI -> WAV at 16 kHz, stereo (mixed down by add)
  fluidsynth -ni -q -g 0.6 -r 16000 -F "$2" "$SF" "$1" >/dev/null 2>&1
}

part_midi() {
  local clips=1000
  [ "$SIZE" = small ] && clips=2
  find "$R/usr/share/games/simutrans/music" "$R/usr/share/games/openttd/baseset/openmsx" -name '*.mid' | sort | limit 12 |
    while read -r f; do
      pkg=simutrans-data
      [[ "$f" == */openttd/* ]] && pkg=openttd-openmsx
      title=$(basename "$f" .mid)
      words=$(echo "$title" | sed -e 's/^[0-9]*-//' -e 's/[-_]/ /g')
      render_midi "$f" "$T/midi.wav" || continue
      cut_clips "$T/midi.wav" "$pkg-$title" music "$pkg" "$title" midi \
        "General MIDI game music \"$words\" rendered with a GM soundfont" "$clips"
    done
}

# Roman numerals to chord names, per major key.
scale_of() {
  case "$1" in
    C) echo "C Dm Em F G Am" ;; G) echo "G Am Bm C D Em" ;; D) echo "D Em F#m G A Bm" ;;
    A) echo "A Bm C#m D E F#m" ;; F) echo "F Gm Am Bb C Dm" ;; Bb) echo "Bb Cm Dm Eb F Gm" ;;
    Eb) echo "Eb Fm Gm Ab Bb Cm" ;; E) echo "E F#m G#m A B C#m" ;;
  esac
}

# MMA grooves: each DefGroove line carries a description; caption = description + tempo + key + chords.
part_mma() {
  local keys=(C G D A F Bb Eb E)
  local progs=("I IV V I" "I vi IV V" "ii V I I" "I I IV IV V IV I V")
  for lib in "$R"/usr/share/mma/lib/stdlib/*.mma; do
    sed -n 's/^DefGroove[ \t]\+\([A-Za-z0-9_-]*\)[ \t]\+\(.*[^\\ ]\)[ \t]*$/\1\t\2/p' "$lib" | head -n 3 |
      while IFS=$'\t' read -r g desc; do printf '%s\t%s\t%s\n' "$(basename "$lib" .mma)" "$g" "$desc"; done
  done | sort | limit 40 > "$T/grooves.txt"
  local n=0
  while IFS=$'\t' read -r family groove desc; do
    key=${keys[$((n % ${#keys[@]}))]}
    prog=${progs[$((n % ${#progs[@]}))]}
    tempo=$((80 + (n * 37) % 80))
    read -r -a sc <<< "$(scale_of "$key")"
    names=()
    for r in $prog; do
      case $r in I) names+=("${sc[0]}") ;; ii) names+=("${sc[1]}") ;; iii) names+=("${sc[2]}") ;;
        IV) names+=("${sc[3]}") ;; V) names+=("${sc[4]}") ;; vi) names+=("${sc[5]}") ;; esac
    done
    {
      echo "RndSeed $((n + 1))"  # MMA humanises timing and velocity at random: fix it
      echo "Tempo $tempo"
      echo "Groove $groove"
      i=1
      for c in "${names[@]}"; do echo "$i $c"; i=$((i + 1)); done
    } > "$T/g.mma"
    if mma -f "$T/g.mid" "$T/g.mma" >/dev/null 2>&1 && render_midi "$T/g.mid" "$T/g.wav"; then
      add "$T/g.wav" "mma-$groove" music mma "$family" "groove-$family" \
        "$desc ($groove groove, $tempo bpm, key of $key, chords ${names[*]})" "" 0 10
    fi
    n=$((n + 1))
  done < "$T/grooves.txt"
}

part_wesnoth_music() {
  find "$R/usr/share/games/wesnoth/1.16/data/core/music" -name '*.ogg' | sort | while read -r f; do
    title=$(basename "$f" .ogg)
    cut_clips "$f" "wesnoth-$title" music wesnoth-1.16-music "$title" orchestral-recording \
      "Orchestral fantasy game soundtrack \"${title//_/ }\" (Battle for Wesnoth)"
  done
}

# --- general audio ----------------------------------------------------------------------------
# sonic-pi samples: the prefix is the class (ambi, bass, drum, elec, guit, loop, perc, tabla, ...).
part_sonicpi() {
  find "$R/usr/share/sonic-pi/samples" -name '*.flac' | sort | limit 60 | while read -r f; do
    id=$(basename "$f" .flac)
    cls=${id%%_*}
    add "$f" "sonicpi-$id" audio sonic-pi-samples "$id" "$cls" "${id//_/ } (Sonic Pi sample, $cls)" "" 0 10
  done
}

# Game sound effects: the file name is the caption; numbered variants share one source unit.
sfx() {  # DIR PACKAGE PREFIX
  find "$1" -maxdepth 1 \( -name '*.ogg' -o -name '*.wav' \) | sort | limit 60 | while read -r f; do
    id=$(basename "${f%.*}")
    unit=$(echo "$id" | sed -e 's/[._-]*[0-9]*$//')
    words=$(echo "$unit" | sed -e "s/^$3_//" -e 's/[._-]/ /g')
    cls=$(echo "$words" | awk '{print $1}')
    add "$f" "$3-$id" audio "$2" "$unit" "$cls" "$words (game sound effect)" "" 0 10
  done
}
part_minetest() { sfx "$R/usr/share/games/minetest/games/minetest_game/mods/default/sounds" minetest-data default; }
part_wesnoth_sfx() { sfx "$R/usr/share/games/wesnoth/1.16/data/core/sounds" wesnoth-1.16-data wesnoth; }

# tuxpaint effect stamps: <stamp>.ogg next to <stamp>.txt, whose first line describes it.
part_tuxpaint_sfx() {
  find "$R/usr/share/tuxpaint/stamps" -name '*.ogg' ! -name '*_desc*' | sort | while read -r f; do
    base=${f%.ogg}
    [ -f "$base.txt" ] || continue
    cls=$(basename "$(dirname "$base")")
    add "$f" "tuxpaint-sfx-$(basename "$base")" audio tuxpaint-stamps-default "$(basename "$base")" "$cls" \
      "$(head -n1 "$base.txt")" "" 0 10
  done
}

# --- run the parts ----------------------------------------------------------------------------
PARTS=(asterisk espeak midi mma sonicpi minetest)
[ "$SIZE" = full ] && PARTS=(tuxpaint_speech fillets festvox asterisk espeak wesnoth_music midi mma tuxpaint_sfx
                             wesnoth_sfx sonicpi minetest)
JOBS=$(nproc)
for part in "${PARTS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  (
    # A file a tool cannot convert is left out (add() skips it), not fatal; a part that
    # yields nothing at all is (checked below).
    set +e
    T="$TMPD/$part"
    mkdir -p "$T"
    LINES="$TMPD/$part.jsonl"
    : > "$LINES"
    "part_$part"
    echo "make_demo_corpus: $part: $(wc -l < "$LINES") clips"
    touch "$TMPD/$part.done"
  ) &
done
wait || true  # each part's outcome is checked below, after all have finished
for part in "${PARTS[@]}"; do
  [ -f "$TMPD/$part.done" ] || { echo "make_demo_corpus: part '$part' failed" >&2; exit 1; }
  [ -s "$TMPD/$part.jsonl" ] || { echo "make_demo_corpus: part '$part' produced no clips" >&2; exit 1; }
  cat "$TMPD/$part.jsonl"
done > "$LINES"

# --- manifests and summary --------------------------------------------------------------------
echo "make_demo_corpus: manifests"
for domain in speech music audio all; do
  for split in train valid test; do
    jq -c --arg d "$domain" --arg s "$split" 'select(($d == "all" or .domain == $d) and .split == $s)' "$LINES" \
      > "$OUT/manifests/$domain.$split.jsonl"
  done
done
jq -s --arg size "$SIZE" '{
  size: $size,
  clips: length,
  hours: ((map(.duration) | add) / 3600 * 1000 | round / 1000),
  domains: (group_by(.domain) | map({key: .[0].domain, value: {
    clips: length, hours: ((map(.duration) | add) / 3600 * 1000 | round / 1000),
    splits: (group_by(.split) | map({key: .[0].split, value: length}) | from_entries),
    labels: (group_by(.label) | map({key: .[0].label, value: length}) | from_entries)}}) | from_entries),
  sources: (map(.source | split(":")[0]) | group_by(.) | map({key: .[0], value: length}) | from_entries)
}' "$LINES" > "$OUT/summary.json"
rm -f "$LINES"
jq -r '"corpus (\(.size)): \(.clips) clips, \(.hours) h",
  (.domains | to_entries[] | "  \(.key): \(.value.clips) clips, \(.value.hours) h, splits \(.value.splits | tostring), \(.value.labels | length) labels")' \
  "$OUT/summary.json"
echo "make_demo_corpus: manifests in $OUT/manifests, summary in $OUT/summary.json"
