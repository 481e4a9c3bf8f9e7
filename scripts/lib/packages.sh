# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# Sourced by scripts/*.sh (not run on its own). The one list of Debian packages latentkv needs:
#   LATENTKV_MAIN_PACKAGES   what the README's main command (scripts/demo.sh) needs to configure,
#                            build and run latentkv-compress / latentkv-eval and print its table
#   LATENTKV_TEST_PACKAGES   the main list plus what the test command (scripts/test.sh) adds:
#                            GoogleTest/GoogleMock, Google Benchmark, clang-format, clang +
#                            libFuzzer for the fuzz smoke, a Python venv for the safetensors check
# tests/package/required_packages_test.sh fails when a package CMake finds on the main command's
# configure path is not in LATENTKV_MAIN_PACKAGES (or pulled in by one of them).
#
#   latentkv_install_missing_packages PACKAGE...
# installs the packages among PACKAGE... that are not installed yet (only those), with sudo when
# not root. Nothing happens when all are there, so a prepared machine needs no network. When one
# cannot be installed it prints one line naming it and returns 1 before anything is configured
# or built (so the next run starts from the same clean state).

LATENTKV_MAIN_PACKAGES=(cmake ninja-build g++ python3 python3-pip libeigen3-dev nlohmann-json3-dev libcli11-dev
  libicu-dev)
# shellcheck disable=SC2034  # used by scripts/test.sh
LATENTKV_TEST_PACKAGES=("${LATENTKV_MAIN_PACKAGES[@]}" git python3-venv libgtest-dev libgmock-dev
  libbenchmark-dev clang-format clang libclang-rt-dev)

latentkv_install_missing_packages() {
  local missing=() p
  for p in "$@"; do
    # Output captured, not piped into grep -q: under the callers' `set -o pipefail` an early
    # grep -q exit kills the writer with SIGPIPE and the pipeline fails although it matched.
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == *"install ok installed"* ]] ||
      missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "== installing missing Debian packages: ${missing[*]}"
  local sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "latentkv: cannot install the Debian package(s) ${missing[*]}: not root and no sudo" >&2
      return 1
    fi
    sudo_cmd=(sudo -n)
  fi
  export DEBIAN_FRONTEND=noninteractive
  local log
  log=$(mktemp)
  if ! "${sudo_cmd[@]}" apt-get update -qq >"$log" 2>&1; then
    echo "latentkv: apt-get update failed (needed to install ${missing[*]}): $(tail -n 1 "$log")" >&2
    rm -f "$log"
    return 1
  fi
  # A package with no installation candidate (unknown name, unreachable mirror) is named before
  # apt-get changes anything.
  for p in "${missing[@]}"; do
    if ! grep -q 'Candidate: [^(]' <<<"$(apt-cache policy "$p" 2>/dev/null)"; then
      echo "latentkv: the Debian package '$p' cannot be installed: no installation candidate" \
        "(apt-cache policy $p)" >&2
      rm -f "$log"
      return 1
    fi
  done
  if ! "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >"$log" 2>&1; then
    # Name the culprit: install one at a time (those that work stay installed, which is harmless).
    for p in "${missing[@]}"; do
      if ! "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$p" >"$log" 2>&1; then
        echo "latentkv: the Debian package '$p' could not be installed: $(grep -m1 -E '^E:' "$log" ||
          tail -n 1 "$log")" >&2
        rm -f "$log"
        return 1
      fi
    done
  fi
  rm -f "$log"
}
