# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# Sourced by scripts/*.sh (not run on its own):
#   latentkv_install_missing_packages PACKAGE...
# installs the Debian packages among PACKAGE... that are not installed yet (only those), with sudo
# when not root. Nothing happens when all are there, so a prepared machine needs no network.

latentkv_install_missing_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "== installing missing Debian packages: ${missing[*]}"
    local sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}
