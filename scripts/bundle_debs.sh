#!/usr/bin/env bash
# Downloads the Debian packages the build needs, with everything they depend on, as .deb files
# into one folder, for a machine without network (an offline cluster node, a GPU box):
#   scripts/bundle_debs.sh DIR           what scripts/setup.sh installs (Debian's CPU LibTorch too)
#   scripts/bundle_debs.sh --wheel DIR   for a build against an installed PyTorch wheel's LibTorch:
#                                        the C++ libraries only (no libtorch-dev, no compiler, no
#                                        base system: that machine brings its own)
# Then, on that machine: scripts/install_debs.sh DIR [--prefix P]. Needs apt (no root).
set -euo pipefail
cd "$(dirname "$0")/.."
wheel=0
dir=""
for arg in "$@"; do
  case "$arg" in
    --wheel) wheel=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "bundle_debs.sh: unknown option '$arg'" >&2; exit 2 ;;
    *) dir="$arg" ;;
  esac
done
[ -n "$dir" ] || { echo "bundle_debs.sh: give the folder to fill (see --help)" >&2; exit 2; }

# The packages, from scripts/setup.sh's own lists.
eval "$(sed -n '/^BUILD_PKGS=(/,/^)/p; /^RUN_PKGS=(/p' scripts/setup.sh)"
if [ "$wheel" -eq 1 ]; then
  roots=()
  for p in "${BUILD_PKGS[@]}"; do
    case "$p" in g++|cmake|ninja-build|ccache|git|libtorch-dev|libopenblas0-pthread) ;; *) roots+=("$p") ;; esac
  done
else
  roots=("${BUILD_PKGS[@]}" "${RUN_PKGS[@]}")
fi

# The dependency closure (no recommends), one real package per line.
mapfile -t closure < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances "${roots[@]}" | grep -E '^[a-z0-9]' | sort -u)
keep=()
for p in "${closure[@]}"; do
  if [ "$wheel" -eq 1 ]; then
    # The base system and the toolchain stay the target machine's own: a second libc or
    # libstdc++ in its library path would break it.
    prio=$(apt-cache show --no-all-versions "$p" 2>/dev/null | sed -n 's/^Priority: //p' | head -1)
    case "$prio" in required|important) continue ;; esac
    case "$p" in
      libc6|libc6-dev|libc-dev-bin|linux-libc-dev|libcrypt*|libnsl*|libtirpc*|rpcsvc-proto|libgcc*|gcc*|g++*|cpp*|\
        libstdc++*|binutils*|libbinutils|libctf*|libgprofng*|libjansson4|libisl23|libmpc3|libmpfr6|libgmp10|\
        libasan*|liblsan*|libtsan*|libubsan*|libhwasan*|libitm*|libatomic*|libquadmath*|libcc1-0|libgomp1|\
        python3*|libpython3*|perl*|libperl*|dpkg*|tar|zlib1g|debconf*|libselinux1|libpcre2-8-0|libzstd1|liblzma5|\
        libbz2-1.0|libmd0|libacl1|libaudit*|libcap-ng0|libdb5.3|libpam*|libsemanage*|libsepol2|libreadline8|\
        libtinfo6|libslang2|libnewt0.52|cdebconf|libdebian-installer4|libtextwrap1|install-info) continue ;;
    esac
  fi
  keep+=("$p")
done
mkdir -p "$dir"
echo "bundle_debs.sh: ${#keep[@]} packages into $dir"
(cd "$dir" && apt-get download -q "${keep[@]}" >/dev/null)
du -sh "$dir"
