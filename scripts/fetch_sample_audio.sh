#!/usr/bin/env bash
# Fetches a few real recordings that Debian ships (no root needed): a human voice from
# alsa-utils and desktop event sounds from sound-theme-freedesktop. Unpacks into OUT_DIR
# with each package's copyright file beside its audio.
#   scripts/fetch_sample_audio.sh OUT_DIR
set -euo pipefail
out="${1:?usage: fetch_sample_audio.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
if [ -f "$out/.complete" ]; then exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
for pkg in alsa-utils sound-theme-freedesktop; do
  if ! apt-get download "$pkg" >/dev/null 2>&1; then
    echo "fetch_sample_audio.sh: 'apt-get download $pkg' failed (run 'apt-get update' first?)" >&2
    exit 1
  fi
  dpkg-deb -x "$pkg"_*.deb "x-$pkg"
  mkdir -p "$out/$pkg"
  find "x-$pkg/usr/share/sounds" -type f \( -name '*.wav' -o -name '*.oga' -o -name '*.ogg' \) \
    -exec cp {} "$out/$pkg/" \;
  cp "x-$pkg/usr/share/doc/$pkg/copyright" "$out/$pkg/copyright"
  dpkg-deb -f "$pkg"_*.deb Version > "$out/$pkg/VERSION"
done
touch "$out/.complete"
echo "fetch_sample_audio.sh: $(find "$out" -name '*.wav' -o -name '*.oga' | wc -l) files in $out"
