#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# Fuzzes latentkv's file parsers (tests/fuzz/README.md):
#   scripts/fuzz.sh [seconds-per-target]          default 30 s per target
# 1. configures a separate clang build (build/fuzz: RelWithDebInfo, assertions on, ASan + UBSan +
#    libFuzzer) and builds the fuzzers only,
# 2. runs each target for the given time on its corpus build/fuzz/corpus/<target> (kept between
#    runs), seeded with tests/fuzz/seeds/<target>, tests/fuzz/regressions/<target> (inputs that
#    once failed) and the test fixtures,
# 3. exits non-zero when any target finds a crash, a leak, a timeout (> 10 s per input) or an
#    out-of-memory input; the reproducer is written to build/fuzz/artifacts/<target>/ and its
#    log to build/fuzz/logs/<target>.log.
# Environment: LATENTKV_FUZZ_BUILD_DIR (default build/fuzz), LATENTKV_JOBS (build jobs, default
# nproc), LATENTKV_FUZZ_TARGETS (default "gguf_reader safetensors_reader hf_config"),
# LATENTKV_FUZZ_ARGS (extra libFuzzer flags, e.g. "-fork=4" or "-runs=10000000").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-30}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds == 0)); then
  echo "usage: $0 [seconds-per-target > 0]" >&2
  exit 2
fi
build_dir=${LATENTKV_FUZZ_BUILD_DIR:-build/fuzz}
jobs=${LATENTKV_JOBS:-$(nproc)}
targets=${LATENTKV_FUZZ_TARGETS:-gguf_reader safetensors_reader hf_config}
read -r -a extra_args <<<"${LATENTKV_FUZZ_ARGS:-}"

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz.sh: clang++ not found (Debian: apt-get install clang libclang-rt-dev)" >&2
  exit 2
fi

echo "== configure ($build_dir, clang++)"
cmake -S . -B "$build_dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLATENTKV_BUILD_FUZZERS=ON -DLATENTKV_WERROR=ON -DLATENTKV_BUILD_BENCHMARKS=OFF \
  -DLATENTKV_BUILD_EXAMPLES=OFF -DLATENTKV_ENABLE_CUDA=OFF >/dev/null
echo "== build"
cmake --build "$build_dir" -j"$jobs" --target latentkv_fuzzers

# Test fixtures that seed each target, next to the committed seeds.
fixtures_for() {
  case "$1" in
    safetensors_reader)
      ls tests/data/safetensors/*.safetensors tests/data/safetensors/tiny_llama/*.safetensors ;;
    gguf_reader) ls tests/data/gguf/*.bin ;;
    hf_config) ls tests/data/safetensors/tiny_llama/*.json ;;
  esac
}

failed=()
for target in $targets; do
  binary="$build_dir/tests/fuzz/${target}_fuzzer"
  corpus="$build_dir/corpus/$target"
  seeds="$build_dir/seeds/$target"
  artifacts="$build_dir/artifacts/$target/"
  log="$build_dir/logs/$target.log"
  mkdir -p "$corpus" "$seeds" "$artifacts" "$(dirname "$log")"
  cp tests/fuzz/seeds/"$target"/* "$seeds"/
  # Inputs that once failed (tests/fuzz/regressions): replayed first, every run.
  if [ -d tests/fuzz/regressions/"$target" ]; then cp tests/fuzz/regressions/"$target"/* "$seeds"/; fi
  for f in $(fixtures_for "$target"); do cp "$f" "$seeds/fixture_$(basename "$f")"; done
  echo "== $target: ${seconds}s (corpus $corpus, log $log)"
  set +e
  "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -dict="tests/fuzz/$target.dict" -artifact_prefix="$artifacts" -print_final_stats=1 \
    "${extra_args[@]}" "$corpus" "$seeds" >"$log" 2>&1
  rc=$?
  set -e
  # The summary: libFuzzer's final stats and the last status line (execs, coverage, corpus).
  grep -E '^(#[0-9]+.*(DONE|pulse|NEW|REDUCE)|stat::)' "$log" | grep -E 'DONE|stat::' || true
  if ((rc != 0)); then
    echo "!! $target: libFuzzer exited with $rc; see $log and $artifacts" >&2
    tail -n 40 "$log" >&2
    failed+=("$target")
  fi
done

if ((${#failed[@]})); then
  echo "fuzz.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: no crash in ${seconds}s per target ($targets)"
