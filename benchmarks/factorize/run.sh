#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# One run, one machine: the factorizer benchmarks and LAPACK gesdd (numpy) on the same shapes,
# then a Markdown table with the ratios. Usage: benchmarks/factorize/run.sh [build-dir] [filter]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
build=${1:-build/bench}
filter=${2:-.}
python3 -c "import numpy" 2>/dev/null || python3 -m pip install -q numpy
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DLATENTKV_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target factorizer_bench
out=$(mktemp -d)
"$build/benchmarks/factorizer_bench" --benchmark_filter="$filter" \
  --benchmark_out="$out/bench.json" --benchmark_out_format=json
python3 benchmarks/factorize/gesdd_reference.py > "$out/gesdd.json"
python3 benchmarks/factorize/table.py "$out/bench.json" "$out/gesdd.json"
