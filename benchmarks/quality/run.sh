#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# The quality table: WikiText-2 perplexity (DESIGN §10: ctx 1024, the first N chunks, default 4)
# of SmolLM2-135M-Instruct compressed by latentkv-compress over a grid of budgets × schedules ×
# factorizers × groupings, evaluated through the latent KV cache (fp32) by latentkv-eval.
#   benchmarks/quality/run.sh [--chunks N] [--out DIR] [--quick]
# Writes DIR/quality.csv, DIR/quality.md and DIR/quality.png (default DIR: docs/quality).
#
# The grid (stated in quality.md too):
#   budgets     0.75, 0.6, 0.5, 0.4, 0.3 (+ the dense model = 1.0)
#   whitened    × uniform, progressive, energy, sensitivity × joint, per-head
#               (each compressed once at 0.75; smaller budgets load that file with --budget:
#               re-planned by the same schedule and truncated, = compressing at b' directly)
#   svd (plain) × uniform, progressive × joint (data-free; compressed at every budget)
#   rsvd        × progressive × joint at 0.5
#   search      × whitened × joint at 0.5 and 0.3 (compressed at each budget; Δr 32, 8
#               decrements per round, KL on 128 tokens)
# Calibration (whitened, sensitivity, search): the last tokens of the same WikiText-2 file
# (2048 for the Gram matrices, 256 for the KL divergence), disjoint from the first chunks scored.
# --quick: only budgets 0.5 and 0.3, whitened × {uniform, progressive} × joint (a smoke run).
# --only TAGS: re-run only these parts of the grid (comma-separated: whitened-uniform,
#   whitened-progressive, whitened-energy, whitened-sensitivity, svd, rsvd, search) and replace
#   their rows in DIR/quality.csv; the other rows are kept as they were measured.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

all_args="$*"
chunks=4
out=docs/quality
quick=0
only=""
while (($#)); do
  case "$1" in
    --only) only=$2; shift ;;
    --chunks) chunks=$2; shift ;;
    --out) out=$2; shift ;;
    --quick) quick=1 ;;
    *) echo "quality: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

# shellcheck source=../../scripts/lib/packages.sh
source scripts/lib/packages.sh
latentkv_install_missing_packages cmake make g++ python3 python3-pip python3-venv libeigen3-dev \
  libcli11-dev libicu-dev nlohmann-json3-dev

build_dir=${LATENTKV_BUILD_DIR:-build/demo}
jobs=${LATENTKV_JOBS:-$(nproc)}
echo "== build ($build_dir)"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DLATENTKV_BUILD_TESTS=OFF \
  -DLATENTKV_BUILD_BENCHMARKS=OFF -DLATENTKV_BUILD_EXAMPLES=ON -DLATENTKV_ENABLE_CUDA=OFF \
  -DLATENTKV_NATIVE_ARCH=ON >/dev/null
cmake --build "$build_dir" --target latentkv-compress latentkv-eval -j"$jobs"
venv=$build_dir/venv-plot
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check matplotlib
fi

model=$(scripts/fetch-model.sh)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
work=$build_dir/quality
mkdir -p "$work" "$out"
compress="$build_dir/examples/latentkv-compress"
eval_tool="$build_dir/examples/latentkv-eval"
csv=$work/quality.csv
echo "factorizer,schedule,grouping,budget_requested,budget_achieved,kv_bytes_per_token,ppl,mean_nll,ctx,chunks,compress_seconds,eval_seconds,source" >"$csv"

# row FACTORIZER SCHEDULE GROUPING BUDGET EVAL_JSON COMPRESS_SECONDS SOURCE
row() {
  python3 - "$@" >>"$csv" <<'PY'
import json, sys
f, s, g, b, path, cs, src = sys.argv[1:]
r = json.load(open(path))
print(f"{f},{s},{g},{b},{r['budget']:.4f},{r['kv_bytes_per_token']},{r['ppl']:.4f},"
      f"{r['mean_nll']:.6f},{r['ctx']},{r['chunks']},{cs},{r['seconds']:.1f},{src}")
PY
}

evaluate() {  # evaluate JSON_OUT ARGS...
  local json=$1
  shift
  "$eval_tool" --model "$model" --chunks "$chunks" --json "$json" "$@" >/dev/null 2>"$json.log" ||
    { cat "$json.log" >&2; exit 1; }
}

if [ -z "$only" ]; then
  echo "== dense"
  evaluate "$work/dense.json"
  row dense dense dense 1.0 "$work/dense.json" 0 dense
fi
# wanted TAG: true when this run covers TAG.
wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

if ((quick)); then
  budgets=(0.5 0.3)
  whitened_schedules=(uniform progressive)
  groupings=(joint)
else
  budgets=(0.75 0.6 0.5 0.4 0.3)
  whitened_schedules=(uniform progressive energy sensitivity)
  groupings=(joint per-head)
fi

for grouping in "${groupings[@]}"; do
  for schedule in "${whitened_schedules[@]}"; do
    wanted "whitened-$schedule" || continue
    name=whitened-$schedule-$grouping
    top=${budgets[0]}
    echo "== $name (compressed at $top)"
    start=$(date +%s.%N)
    "$compress" --model "$model" --budget "$top" --schedule "$schedule" --factorizer whitened \
      --grouping "$grouping" --out "$work/$name.safetensors" --quiet >/dev/null
    seconds=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
    for b in "${budgets[@]}"; do
      extra=()
      src=compressed
      if [ "$b" != "$top" ]; then extra=(--budget "$b"); src="elastic from $top"; fi
      evaluate "$work/$name-$b.json" --compressed "$work/$name.safetensors" "${extra[@]}"
      row whitened "$schedule" "$grouping" "$b" "$work/$name-$b.json" "$seconds" "$src"
      tail -1 "$csv"
    done
  done
done

if ((!quick)); then
  for schedule in uniform progressive; do
    wanted svd || continue
    for b in "${budgets[@]}"; do
      name=svd-$schedule-joint-$b
      echo "== $name"
      start=$(date +%s.%N)
      "$compress" --model "$model" --budget "$b" --schedule "$schedule" --factorizer svd \
        --out "$work/$name.safetensors" --quiet >/dev/null
      seconds=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
      evaluate "$work/$name.json" --compressed "$work/$name.safetensors"
      row svd "$schedule" joint "$b" "$work/$name.json" "$seconds" compressed
      tail -1 "$csv"
    done
  done
  name=rsvd-progressive-joint-0.5
  if wanted rsvd; then
    echo "== $name"
    start=$(date +%s.%N)
    "$compress" --model "$model" --budget 0.5 --schedule progressive --factorizer rsvd \
      --out "$work/$name.safetensors" --quiet >/dev/null
    seconds=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
    evaluate "$work/$name.json" --compressed "$work/$name.safetensors"
    row rsvd progressive joint 0.5 "$work/$name.json" "$seconds" compressed
  fi
  for b in 0.5 0.3; do
    wanted search || continue
    name=whitened-search-joint-$b
    echo "== $name"
    start=$(date +%s.%N)
    "$compress" --model "$model" --budget "$b" --schedule search --factorizer whitened \
      --search-step 32 --search-per-round 8 --divergence-tokens 128 \
      --out "$work/$name.safetensors" --report "$work/$name.report.json" --quiet >/dev/null
    seconds=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
    evaluate "$work/$name.json" --compressed "$work/$name.safetensors"
    row whitened search joint "$b" "$work/$name.json" "$seconds" compressed
    tail -1 "$csv"
  done
fi

if [ -n "$only" ]; then  # the other rows as they were, this schedule's rows new
  python3 - "$out/quality.csv" "$csv" "$only" <<'PY'
import sys
old, new, only = sys.argv[1:]
def tag(line):
    f, s = line.split(",")[:2]
    return "search" if s == "search" else f"whitened-{s}" if f == "whitened" else f
tags = set(only.split(","))
keep = [l for l in open(old).read().splitlines() if tag(l) not in tags]
add = open(new).read().splitlines()[1:]
open(old, "w").write("\n".join(keep + add) + "\n")
PY
else
  cp "$csv" "$out/quality.csv"
fi
"$venv/bin/python" benchmarks/quality/table.py "$out/quality.csv" --md "$out/quality.md" \
  --png "$out/quality.png" --command "benchmarks/quality/run.sh ${all_args}" --chunks "$chunks"
echo "wrote $out/quality.csv, $out/quality.md, $out/quality.png"
