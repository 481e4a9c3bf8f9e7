#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# Peak memory of latentkv-compress (it streams layer by layer: compress/compressor.hpp).
#   benchmarks/compress/memory.sh [--layers 32] [--limit-mib 1024]
# 1. SmolLM2-135M-Instruct (GGUF, 98 MB Q4_1 = 540 MB as fp32): compress at 0.5, data-free.
# 2. A synthetic Hugging Face checkpoint with LLaMA-3-8B attention shapes (d 4096, 32 heads,
#    8 KV heads of 128; F16; make_synthetic_checkpoint.py) larger than the memory limit, compressed
#    under `prlimit --data` = the limit (RLIMIT_DATA: heap and anonymous mappings; the read-only
#    memory map of the input is file-backed page cache, reclaimable, and not counted).
# For each run: the input size, the peak anonymous memory (RssAnon sampled every 50 ms from
# /proc), the peak RSS including mapped file pages (VmHWM) and the time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
layers=32
limit_mib=1024
while (($#)); do
  case "$1" in
    --layers) layers=$2; shift ;;
    --limit-mib) limit_mib=$2; shift ;;
    *) echo "memory: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

# shellcheck source=../../scripts/lib/packages.sh
source scripts/lib/packages.sh
latentkv_install_missing_packages cmake make g++ python3 python3-venv util-linux libeigen3-dev \
  libcli11-dev libicu-dev nlohmann-json3-dev
build_dir=${LATENTKV_BUILD_DIR:-build/demo}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DLATENTKV_BUILD_TESTS=OFF \
  -DLATENTKV_BUILD_BENCHMARKS=OFF -DLATENTKV_BUILD_EXAMPLES=ON -DLATENTKV_ENABLE_CUDA=OFF \
  -DLATENTKV_NATIVE_ARCH=ON >/dev/null
cmake --build "$build_dir" --target latentkv-compress -j"${LATENTKV_JOBS:-$(nproc)}" >/dev/null
tool=$build_dir/examples/latentkv-compress
work=${LATENTKV_MEMORY_DIR:-$build_dir/memory}
mkdir -p "$work"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# measure NAME INPUT_BYTES CMD...: runs CMD, samples its memory, prints one table row.
measure() {
  local name=$1 input=$2
  shift 2
  local start end pid anon=0 hwm=0 a h
  start=$(date +%s.%N)
  "$@" >"$work/$name.log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    a=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    h=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    ((${a:-0} > anon)) && anon=$a
    ((${h:-0} > hwm)) && hwm=$h
    sleep 0.05
  done
  if ! wait "$pid"; then
    cat "$work/$name.log" >&2
    echo "memory: $name failed" >&2
    exit 1
  fi
  end=$(date +%s.%N)
  python3 -c "print(f'| $name | {$input / 2**20:.0f} MiB | {$anon / 1024:.0f} MiB | {$hwm / 1024:.0f} MiB | {$end - $start:.1f} s |')"
}

echo "| run | input | peak anonymous | peak RSS (incl. mapped input) | time |"
echo "|---|---:|---:|---:|---:|"
model=$(scripts/fetch-model.sh 2>/dev/null)
measure "SmolLM2 GGUF, joint, 0.5" "$(stat -c %s "$model")" \
  "$tool" --model "$model" --budget 0.5 --schedule progressive --factorizer svd \
  --out "$work/smollm2.safetensors" --quiet

synthetic=$work/synthetic-$layers
if [ ! -f "$synthetic/model.safetensors" ]; then
  venv=$build_dir/venv-numpy
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -c "import numpy" 2>/dev/null || "$venv/bin/pip" install --quiet numpy
  "$venv/bin/python" benchmarks/compress/make_synthetic_checkpoint.py "$synthetic" \
    --layers "$layers" >&2
fi
size=$(stat -c %s "$synthetic/model.safetensors")
measure "synthetic 8B-attention x$layers, per-head, 0.5, --data $limit_mib MiB" "$size" \
  prlimit --data=$((limit_mib * 1024 * 1024)) "$tool" --model "$synthetic" --budget 0.5 \
  --schedule uniform --factorizer svd --grouping per-head --dtype f16 \
  --out "$work/synthetic.safetensors" --quiet
echo
echo "limit: RLIMIT_DATA = $limit_mib MiB for the synthetic run; input $((size / 1048576)) MiB."
rm -f "$work/synthetic.safetensors"
