#!/usr/bin/env bash
# Installs the .deb files scripts/bundle_debs.sh put in DIR, without network:
#   scripts/install_debs.sh DIR              dpkg -i, as root (an offline Debian 12 node)
#   scripts/install_debs.sh DIR --prefix P   unpacked under P, the system untouched (any user, any
#                                            distribution); then `source P/env.sh` before building
set -euo pipefail
dir="${1:?usage: install_debs.sh DIR [--prefix P]}"
shift
prefix=""
if [ "${1:-}" = "--prefix" ]; then prefix="${2:?--prefix needs a folder}"; fi
compgen -G "$dir/*.deb" >/dev/null || { echo "install_debs.sh: no .deb files in $dir" >&2; exit 1; }
if [ -z "$prefix" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "install_debs.sh: dpkg -i needs root (or use --prefix P)" >&2; exit 1; }
  dpkg -i --skip-same-version "$dir"/*.deb
  exit 0
fi
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
for f in "$dir"/*.deb; do dpkg-deb -x "$f" "$prefix"; done
lib="$prefix/usr/lib/x86_64-linux-gnu"
# pkg-config files say prefix=/usr: the sysroot puts the unpacked tree in front.
cat > "$prefix/env.sh" <<ENV
export CMAKE_PREFIX_PATH="$prefix/usr\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
export PKG_CONFIG_PATH="$lib/pkgconfig:$prefix/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$prefix"
export LD_LIBRARY_PATH="$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$prefix/usr/bin\${PATH:+:\$PATH}"
ENV
echo "install_debs.sh: $(ls "$dir"/*.deb | wc -l) packages unpacked under $prefix; now: source $prefix/env.sh"
