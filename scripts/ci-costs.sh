#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# Where CI's time goes, from a build folder made by scripts/test.sh (Ninja):
#   scripts/ci-costs.sh [BUILD_DIR [N]]       default build/test, the 10 costliest
# prints the N build steps that took longest (wall seconds of the last build, from .ninja_log;
# with 2 jobs the build's wall time is about half their sum) and, once ctest has run, the N
# slowest tests (seconds, from CTest's Testing/Temporary/CTestCostData.txt). Read it before
# adding a test executable or a heavy test: CI has 30 minutes (README, "Tests and CI time").
set -euo pipefail
build_dir=${1:-build/test}
n=${2:-10}
log="$build_dir/.ninja_log"
if [ ! -f "$log" ]; then
  echo "ci-costs: $log not found (configure with -G Ninja, as scripts/test.sh does)" >&2
  exit 2
fi
# .ninja_log v5: start_ms end_ms mtime output hash; a later line for the same output replaces
# an earlier one; one command with several outputs is counted once (by its first output).
awk -F'\t' 'NR > 1 { ms[$4] = $2 - $1; cmd[$4] = $5 }
  END {
    for (o in ms) if (!(cmd[o] in seen)) { seen[cmd[o]] = 1; total += ms[o]; print ms[o] / 1000, o }
    printf "%.0f TOTAL\n", total / 1000 > "/dev/stderr"
  }' "$log" 2>"$build_dir/.ci-costs-total" | sort -rn | head -n "$n" |
  awk '{ printf "  %7.1f s  %s\n", $1, $2 }'
echo "  sum of all build steps: $(cut -d' ' -f1 "$build_dir/.ci-costs-total") s"
rm -f "$build_dir/.ci-costs-total"
cost="$build_dir/Testing/Temporary/CTestCostData.txt"
if [ -f "$cost" ]; then
  echo "slowest tests (s):"
  # Lines "name runs cost" until the "---" separator (failed tests follow it).
  awk '/^---/ { exit } NF == 3 { total += $3; print $3, $1 }
       END { printf "%.0f TOTAL\n", total > "/dev/stderr" }' "$cost" 2>"$build_dir/.ci-costs-total" |
    sort -rn | head -n "$n" | awk '{ printf "  %7.1f s  %s\n", $1, $2 }'
  echo "  sum of all tests: $(cut -d' ' -f1 "$build_dir/.ci-costs-total") s"
  rm -f "$build_dir/.ci-costs-total"
fi
