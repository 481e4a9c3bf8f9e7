#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# Quantized latents on SmolLM2-135M-Instruct (docs/quality/quantized.md): WikiText-2, ctx 1024,
# the first $CHUNKS chunks (default 16), each run of latentkv-eval writing JSON to $WORK.
#   quantized.sh BUILD_DIR WORK [ROW...]   ROW = name (see `rows` below); default: every row
# The budget-1.0 file is compressed once with latentkv-compress's defaults (whitened SVD,
# sensitivity schedule, joint); budget 0.5 rows load it with --budget 0.5 (re-planned, truncated).
set -euo pipefail
build=${1:?build dir}
work=${2:?work dir}
shift 2
chunks=${CHUNKS:-16}
threads=${THREADS:-2}
here=$(cd "$(dirname "$0")/../.." && pwd)
model=$("$here/scripts/fetch-model.sh")
text="$here/tests/data/wikitext/wikitext-2-raw-test.txt"
mkdir -p "$work"
file="$work/smollm2.b1.0.safetensors"
if [[ ! -f $file ]]; then
  "$build/examples/latentkv-compress" --model "$model" --budget 1.0 --out "$file" \
    --report "$work/compress-b1.0.json" --threads "$threads" >"$work/compress-b1.0.log" 2>&1
fi
declare -A rows=(
  [dense]=""
  [b1-f32]="--compressed $file"
  [b1-int8-tok-rot]="--compressed $file --cache-dtype int8"
  [b1-int8-tok-norot]="--compressed $file --cache-dtype int8 --rotate off"
  [b1-int4-tok-rot]="--compressed $file --cache-dtype int4"
  [b1-int4-tok-norot]="--compressed $file --cache-dtype int4 --rotate off"
  [b1-int4-chan-rot]="--compressed $file --cache-dtype int4 --key-axis channel"
  [b1-int4-chan-norot]="--compressed $file --cache-dtype int4 --key-axis channel --rotate off"
  [b1-lm4-tok-rot]="--compressed $file --cache-dtype lm4"
  [b1-int3-tok-rot]="--compressed $file --cache-dtype int3"
  [b1-lm3-tok-rot]="--compressed $file --cache-dtype lm3"
  [b1-int2-tok-rot]="--compressed $file --cache-dtype int2"
  [b0.5-f16]="--compressed $file --budget 0.5 --cache-dtype f16"
  [b0.5-int8-tok-rot]="--compressed $file --budget 0.5 --cache-dtype int8"
  [b0.5-int4-tok-rot]="--compressed $file --budget 0.5 --cache-dtype int4"
)
names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then names=("${!rows[@]}"); fi
for name in "${names[@]}"; do
  [[ -v rows[$name] ]] || { echo "unknown row $name" >&2; exit 2; }
  [[ -f $work/$name.json ]] && continue
  echo "== $name: latentkv-eval --model M --text T --ctx 1024 --chunks $chunks ${rows[$name]}"
  # shellcheck disable=SC2086
  "$build/examples/latentkv-eval" --model "$model" --text "$text" --ctx 1024 --chunks "$chunks" \
    --threads "$threads" --json "$work/$name.json" ${rows[$name]} >"$work/$name.out" \
    2>"$work/$name.log"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(sys.argv[2], "PPL %.4f" % j["ppl"], "bytes/token %.1f" % j["kv_bytes_per_token_exact"], "vs fp16 %.4f" % j["kv_vs_dense_fp16"], "bits %.3f" % j["bits_per_number"], "%.0f s" % j["seconds"])' "$work/$name.json" "$name"
done
