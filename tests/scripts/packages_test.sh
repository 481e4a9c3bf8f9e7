#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
#   packages_test.sh SOURCE_DIR
# latentkv_install_missing_packages (scripts/lib/packages.sh) with dpkg-query, apt-get and
# apt-cache replaced by shell functions that record their calls: no network, no root, nothing
# installed. Checks what a user sees when a package cannot be installed.
set -uo pipefail
# shellcheck source=../../scripts/lib/packages.sh
source "$1/scripts/lib/packages.sh"

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

installed=" cmake g++ "   # what the stub dpkg-query reports as installed
no_candidate=""           # packages apt-cache policy shows without a candidate
broken=""                 # packages whose apt-get install fails
calls=$(mktemp)
trap 'rm -f "$calls"' EXIT
id() { echo 0; }
dpkg-query() {
  local p=${!#}
  [[ "$installed" == *" $p "* ]] && printf 'install ok installed'
  return 0
}
apt-cache() {
  echo "apt-cache $*" >>"$calls"
  if [[ " $no_candidate " == *" $2 "* ]]; then
    printf '%s:\n  Installed: (none)\n  Candidate: (none)\n' "$2"
  else
    printf '%s:\n  Installed: (none)\n  Candidate: 1.0-1\n' "$2"
    # The real apt-cache goes on writing (the version table) after the candidate line, as here
    # after a pause: a reader that stops at the match (grep -q in a pipe) makes this write fail
    # with SIGPIPE, which `set -o pipefail` turns into a failed check of an installable package.
    sleep 0.2
    printf '  Version table:\n     1.0-1 500\n        500 http://deb.debian.org/debian main\n'
  fi
}
apt-get() {
  echo "apt-get $*" >>"$calls"
  [ "$1" = update ] && return 0
  local p
  for p in "$@"; do
    if [[ " $broken " == *" $p "* ]]; then
      echo "E: Unable to correct problems, you have held broken packages ($p)."
      return 100
    fi
  done
  return 0
}

# 1. Everything installed: no apt call at all, status 0, silent.
: >"$calls"
out=$(latentkv_install_missing_packages cmake g++ 2>&1)
rc=$?
[ $rc -eq 0 ] || fail "all installed: status $rc"
[ -z "$out" ] || fail "all installed: printed '$out'"
[ ! -s "$calls" ] || fail "all installed: apt was called: $(cat "$calls")"

# 2. A missing package without a candidate: one line naming it on stderr, status 1, and apt-get
#    install never runs (nothing changed on the machine).
: >"$calls"
no_candidate="libfoo-dev"
err=$(latentkv_install_missing_packages cmake libeigen3-dev libfoo-dev 2>&1 >/dev/null)
rc=$?
[ $rc -eq 1 ] || fail "no candidate: status $rc, expected 1"
[ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "no candidate: expected one line, got '$err'"
[[ "$err" == *"'libfoo-dev' cannot be installed"* ]] || fail "no candidate: line '$err'"
grep -q 'apt-get install' "$calls" && fail "no candidate: apt-get install ran: $(cat "$calls")"
no_candidate=""

# 3. apt-get install fails for one package among several: the line names that one.
: >"$calls"
broken="libicu-dev"
err=$(latentkv_install_missing_packages libeigen3-dev libicu-dev libcli11-dev 2>&1 >/dev/null)
rc=$?
[ $rc -eq 1 ] || fail "install failure: status $rc, expected 1"
[ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "install failure: expected one line, got '$err'"
[[ "$err" == *"'libicu-dev' could not be installed"*"held broken packages"* ]] ||
  fail "install failure: line '$err'"
broken=""

# 4. Success: one apt-get install with exactly the missing packages.
: >"$calls"
latentkv_install_missing_packages cmake libeigen3-dev >/dev/null 2>&1 || fail "success: status $?"
grep -qx 'apt-get install -y -qq --no-install-recommends libeigen3-dev' "$calls" ||
  fail "success: calls were: $(cat "$calls")"

# 5. The lists: the test command installs everything the main command does.
for p in "${LATENTKV_MAIN_PACKAGES[@]}"; do
  [[ " ${LATENTKV_TEST_PACKAGES[*]} " == *" $p "* ]] || fail "'$p' is in the main list only"
done

if ((failures)); then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "packages_test: 5 cases passed"
