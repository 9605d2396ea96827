#!/usr/bin/env bash
# Builds StarkWare's Stone prover and verifier (cpu_air_prover,
# cpu_air_verifier) from source, into a cache outside the repo keyed by
# version: $ZKFLEET_CACHE/stone-<version>/{bin,lib}. No registry serves Stone;
# its source is taken from, in order:
#   - $STONE_SRC: a .tar.gz, a source directory, or a git URL (with
#     $STONE_REF, default $STONE_VERSION) a user points at;
#   - ../shared/third_party/stone-prover-$STONE_VERSION.tar.gz beside the
#     checkout, checked against $STONE_TARBALL_SHA256.
# The sources are unpacked into the cache, never into the repo.
#
# The binaries link glog, gflags, libdw and the C++ runtime dynamically; the
# script copies every shared library they load (and the dynamic loader) into
# lib/, so the prover image can carry the directory as is and run the binaries
# through that loader with --library-path, without a distribution inside.
# A cold build takes about 40 minutes on 2 cores; a warm run returns at once.
# Logs go to stderr; the last line on stdout is the cache directory.
#   build-stone.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/scripts/versions.sh"

version=${STONE_SRC:+custom-$(printf '%s' "$STONE_SRC${STONE_REF:-}" | sha256sum | cut -c1-12)}
version=${version:-$STONE_VERSION}
prefix=$ZKFLEET_CACHE/stone-$version
work=$ZKFLEET_CACHE/stone-build-$version

if [ -x "$prefix/bin/cpu_air_prover" ] && [ -x "$prefix/bin/cpu_air_verifier" ]; then
  echo "$prefix"
  exit 0
fi

need_pkgs=()
command -v clang++-14 >/dev/null || need_pkgs+=(clang-14)
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v eu-readelf >/dev/null || need_pkgs+=(elfutils)
for p in libgflags-dev libgoogle-glog-dev libdw-dev libgmp-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing ${need_pkgs[*]} (Debian packages Stone builds with)..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

src=$work/src
if [ ! -f "$src/CMakeLists.txt" ]; then
  rm -rf "$src" && mkdir -p "$src"
  if [ -n "${STONE_SRC:-}" ] && [ -d "$STONE_SRC" ]; then
    cp -a "$STONE_SRC/." "$src/"
  elif [ -n "${STONE_SRC:-}" ] && [ -f "$STONE_SRC" ]; then
    tar -xzf "$STONE_SRC" -C "$src" --strip-components=1
  elif [ -n "${STONE_SRC:-}" ]; then
    git clone --quiet "$STONE_SRC" "$src"
    git -C "$src" checkout --quiet "${STONE_REF:-$STONE_VERSION}"
  else
    tarball=$(cd "$repo/.." && pwd)/shared/third_party/stone-prover-$STONE_VERSION.tar.gz
    if [ ! -f "$tarball" ]; then
      echo "build-stone.sh: no Stone source: $tarball is missing; set STONE_SRC to a tarball, directory or git URL" >&2
      exit 1
    fi
    echo "$STONE_TARBALL_SHA256  $tarball" | sha256sum --check --quiet - >&2 || {
      echo "build-stone.sh: $tarball does not have sha256 $STONE_TARBALL_SHA256" >&2
      exit 1
    }
    tar -xzf "$tarball" -C "$src" --strip-components=1
  fi
fi

start=$(date +%s)
echo "building Stone $version (cpu_air_prover, cpu_air_verifier; about 40 min cold on 2 cores)..." >&2
# The build directory is kept, so an interrupted build resumes where it was.
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >&2
make -C "$work/build" -j"$(nproc)" cpu_air_prover cpu_air_verifier >&2

# Assemble into a scratch directory renamed into place at the end, so an
# interrupted run never leaves a half-made cache entry.
rm -rf "$prefix.tmp" && mkdir -p "$prefix.tmp/bin" "$prefix.tmp/lib"
for b in cpu_air_prover cpu_air_verifier; do
  install -m 0755 "$work/build/src/starkware/main/cpu/$b" "$prefix.tmp/bin/$b"
  strip "$prefix.tmp/bin/$b"
done
# Every library the binaries load, and the loader itself, under their sonames.
for lib in $(ldd "$prefix.tmp/bin/cpu_air_prover" "$prefix.tmp/bin/cpu_air_verifier" |
  awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/.*ld-linux/ {print $1}' | sort -u); do
  cp -L "$lib" "$prefix.tmp/lib/$(basename "$lib")"
done
rm -rf "$prefix" && mv "$prefix.tmp" "$prefix"
echo "built Stone $version in $(( $(date +%s) - start ))s (cold build; later runs reuse $prefix)" >&2
echo "$prefix"
