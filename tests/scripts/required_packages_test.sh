#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
#   required_packages_test.sh SOURCE_DIR WORK_DIR
# Configures the build exactly as the README's main command does (scripts/demo.sh
# --configure-only, into WORK_DIR), then maps every file CMake found (the compiler, the build
# tool, each package's config folder, libraries and include folders in CMakeCache.txt) to the
# Debian package that owns it (dpkg -S). Fails, naming the package and the cache entry, when that
# package is neither in LATENTKV_MAIN_PACKAGES (scripts/lib/packages.sh) nor pulled in by one of
# them (apt-cache depends --recurse): the main command would not work alone on a fresh machine.
# Exit 77 (skip) without dpkg/apt-cache.
set -euo pipefail
src=$(cd "$1" && pwd)
work=$2
if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-cache >/dev/null 2>&1; then
  echo "no dpkg/apt-cache: not a Debian machine, skipped"
  exit 77
fi
# shellcheck source=../../scripts/lib/packages.sh
source "$src/scripts/lib/packages.sh"

rm -rf "$work"
mkdir -p "$work"
LATENTKV_BUILD_DIR="$work/build" "$src/scripts/demo.sh" --configure-only >"$work/configure.log" 2>&1 || {
  cat "$work/configure.log" >&2
  echo "FAIL: scripts/demo.sh --configure-only failed (above)" >&2
  exit 1
}
cache="$work/build/CMakeCache.txt"

# Everything the main list installs, with its dependencies (names without :arch).
apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances "${LATENTKV_MAIN_PACKAGES[@]}" 2>/dev/null |
  sed -E 's/^ *(\|?(Pre)?Depends: *)?//; s/[<>]//g; s/:.*$//' | sort -u >"$work/closure.txt"

# Cache entries that hold files CMake found: <Pkg>_DIR, *_LIBRARY*, *_INCLUDE_DIR*, the compiler
# and the build tool. Entries in the build or source tree are the project's own.
grep -E '^([A-Za-z0-9_]+_DIR|[A-Za-z0-9_]*_LIBRARY[A-Za-z0-9_]*|[A-Za-z0-9_]*_INCLUDE_DIRS?|CMAKE_CXX_COMPILER|CMAKE_MAKE_PROGRAM|CMAKE_COMMAND):(PATH|FILEPATH|INTERNAL|STRING)=/' \
  "$cache" | sed -E 's/:(PATH|FILEPATH|INTERNAL|STRING)=/\t/' >"$work/found.txt"

checked=0
missing=0
while IFS=$'\t' read -r name value; do
  case "$value" in "" | *NOTFOUND | "$work"* | "$src"*) continue ;; esac
  [ -e "$value" ] || continue
  path=$(readlink -f "$value")
  # dpkg -S prints "pkg1, pkg2: /path": a folder shared by several packages (/usr/include)
  # identifies none of them and is skipped; a folder no package lists is asked by a file inside.
  owners=$(dpkg -S "$path" 2>/dev/null | head -n 1 | sed 's/: .*//') || true
  if [ -z "$owners" ] && [ -d "$path" ]; then
    first=$(find "$path" -maxdepth 1 -type f | head -n 1)
    [ -z "$first" ] || owners=$(dpkg -S "$first" 2>/dev/null | head -n 1 | sed 's/: .*//') || true
  fi
  if [[ "$owners" == *,* ]]; then
    echo "note: $name = $value is shared by several packages (not checked)"
    continue
  fi
  owner=${owners%%:*}
  if [ -z "$owner" ]; then
    echo "note: $name = $value is not from a Debian package (not checked)"
    continue
  fi
  checked=$((checked + 1))
  if ! grep -qx "$owner" "$work/closure.txt"; then
    echo "FAIL: CMake found $name = $value, from the Debian package '$owner', which is not in" \
      "LATENTKV_MAIN_PACKAGES (scripts/lib/packages.sh) nor a dependency of one of them" >&2
    missing=$((missing + 1))
  fi
done <"$work/found.txt"

if ((checked == 0)); then
  echo "FAIL: no cache entry was mapped to a package (is the cache format as expected?)" >&2
  exit 1
fi
if ((missing)); then
  exit 1
fi
echo "required_packages_test: $checked files CMake found are covered by LATENTKV_MAIN_PACKAGES"
