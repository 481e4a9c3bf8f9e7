#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# Quantized latents on SmolLM2-135M-Instruct (docs/quality/quantized.md): WikiText-2, ctx 1024,
# the first $CHUNKS chunks (default 16), each run of latentkv-eval writing JSON to $WORK.
#   quantized.sh BUILD_DIR WORK [ROW...]   ROW = name (see `rows` below); default: every row
# The budget-1.0 file is compressed once, when a row needs it, with latentkv-compress's defaults
# (whitened SVD, sensitivity schedule, joint); budget 0.5 rows load it with --budget 0.5
# (re-planned, truncated).
# auto-B rows: --cache-dtype auto --budget B, ranks and bits planned for B of the dense fp16
# cache's bytes (schedule/rank_bits_planner.hpp), with --kl-divergence against dense; a row name
# ending in @pydoc scores the Python documentation text (tests/data/pydoc) instead of WikiText-2.
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
  [b0.5-f16-auto]="--compressed $file --cache-dtype auto --bits 16 --budget 0.5 --kl-divergence --noise-weight 0.3"
)
for b in 0.53125 0.375 0.34375 0.3125 0.28125 0.25 0.1875 0.15625 0.125; do
  # The rows measured with the planner's first γ (0.3) say so, whatever the default is now.
  rows[auto-$b]="--compressed $file --cache-dtype auto --budget $b --kl-divergence --noise-weight 0.3"
  rows[auto-$b@pydoc]=${rows[auto-$b]}
  # The planner restricted to 4 and 3 bits (and 2), group 128: better than the full menu at 0.25
  # on the calibration tail (docs/quality/bytes.md).
  rows[a43g128-$b]="${rows[auto-$b]} --bits 4,3 --quant-group 128"
  rows[a43g128-$b@pydoc]=${rows[a43g128-$b]}
  rows[a432g128-$b]="${rows[auto-$b]} --bits 4,3,2 --quant-group 128"
  # γ = 0.03 (chosen on the dev slice, docs/quality/bytes.md): truncation weighs 10× more.
  rows[a43g128-n0.03-$b]="--compressed $file --cache-dtype auto --budget $b --kl-divergence --bits 4,3 --quant-group 128 --noise-weight 0.03"
  rows[a43g128-n0.03-$b@pydoc]=${rows[a43g128-n0.03-$b]}
done
rows[b1-int4-tok-rot@pydoc]="--compressed $file --cache-dtype int4 --kl-divergence"
# int5 and int6 (full rank, rotated, with KL): int5 g64 is q5_0's 5.5 bits, int5 g32 q5_1's 6.
for d in int8 int6 int5; do
  rows[b1-$d-kl]="--compressed $file --cache-dtype $d --kl-divergence"
  rows[b1-$d-kl@pydoc]=${rows[b1-$d-kl]}
done
rows[b1-int5g32-kl]="--compressed $file --cache-dtype int5 --quant-group 32 --kl-divergence"
rows[b1-int5g32-kl@pydoc]=${rows[b1-int5g32-kl]}
# Planner choices measured on the dev slice (name@dev, below): γ and the bit menu at 0.25 and 0.125.
for b in 0.25 0.125; do
  for g in 0.1 0.01; do
    rows[a43g128-n$g-$b]="--compressed $file --cache-dtype auto --budget $b --kl-divergence --bits 4,3 --quant-group 128 --noise-weight $g"
  done
  for g in 0.3 0.1 0.03; do
    rows[a543g128-n$g-$b]="--compressed $file --cache-dtype auto --budget $b --kl-divergence --bits 5,4,3 --quant-group 128 --noise-weight $g"
  done
  rows[a432g128-n0.03-$b]="--compressed $file --cache-dtype auto --budget $b --kl-divergence --bits 4,3,2 --quant-group 128 --noise-weight 0.03"
  rows[auto-n0.03-$b]="--compressed $file --cache-dtype auto --budget $b --kl-divergence --noise-weight 0.03"
done
# Route 2 (MatryoshkaKV PCA; latentkv-compress --method matryoshka): post-RoPE key/value bases
# calibrated on the file's last 4096 tokens, one file at budget 1.0 per grouping, schedule and
# number of sink tokens left out of the statistics (made when a row needs it), --budget re-plans.
# fp16 latents: the kept fraction of numbers is the kept fraction of fp16 bytes.
for g in joint per-head; do
  for s in uniform energy; do
    for k in 0 1; do
      for b in 1.0 0.75 0.5 0.25; do
        rows[pca-$g-$s-k$k-$b]="PCA:$g:$s:$k --budget $b --cache-dtype f16 --kl-divergence"
      done
    done
  done
done
# Route 2 compressed at the row's budget B (ranks planned there; the refinement optimizes the bases
# at those ranks), evaluated as written: pcaat-G-S-rN-B = grouping G, schedule S (energy on the
# variances; sensitivity: per-layer KL probes of the projected model; search: greedy on that KL,
# step 32, 16 decrements per round), N Cayley refinement steps per layer (0: PCA as it is).
for g in joint per-head; do
  for s in energy sensitivity search; do
    for n in 0 40; do
      for b in 0.5 0.25; do
        rows[pcaat-$g-$s-r$n-$b]="PCAAT:$g:$s:$n:$b --cache-dtype f16 --kl-divergence"
      done
    done
  done
done
# The same files with quantized latents (QuantizedProjectedKvCache, Hadamard-rotated, group 64):
# pcaat...-B-intK: the budget-B ranks coded at K bits (bytes: codes + fp16 scale and zero).
for s in energy sensitivity; do
  for n in 0 40; do
    for b in 1.0 0.5; do
      for k in int8 int4; do
        rows[pcaat-joint-$s-r$n-$b-$k]="PCAAT:joint:$s:$n:$b --cache-dtype $k --kl-divergence"
      done
    done
  done
done
# Row name suffixes pick the text (the row's flags are the unsuffixed name's):
#   @pydoc  the Python documentation (tests/data/pydoc), $CHUNKS chunks
#   @dev    the dev slice: WikiText-2's test characters from the last newline before
#           len − 60,000 up to len − 21,000 (cut at a newline), 8 chunks; it neither calibrates
#           (the compressor's calibration text is the file's last 2048 tokens) nor is scored
#   @head   every complete chunk of the text before the dev slice (--all): the all-chunks score
# Both are written with LF line endings (Python's universal newlines; the file has CRLF), so
# their tokens, and @head's first chunks, differ from the unsuffixed rows' (dense PPL on @head's
# 281 chunks: 24.79).
python3 - "$text" "$work" <<'PY'
import sys
t = open(sys.argv[1], encoding="utf-8").read()
cut = t.rfind("\n", 0, len(t) - 60000) + 1
dev = t[cut:len(t) - 21000]
dev = dev[:dev.rfind("\n") + 1]
open(f"{sys.argv[2]}/wikitext-head.txt", "w", encoding="utf-8").write(t[:cut])
open(f"{sys.argv[2]}/wikitext-dev.txt", "w", encoding="utf-8").write(dev)
PY
names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then names=("${!rows[@]}"); fi
for name in "${names[@]}"; do
  base=${name%@*}
  [[ -v rows[$base] ]] || { echo "unknown row $name" >&2; exit 2; }
  [[ -f $work/$name.json ]] && continue
  row_text=$text
  span=(--chunks "$chunks")
  case $name in
    *@pydoc) row_text="$here/tests/data/pydoc/python-3.11.7-pydoc-topics.txt" ;;
    *@dev) row_text="$work/wikitext-dev.txt" span=(--chunks 8) ;;
    *@head) row_text="$work/wikitext-head.txt" span=(--all) ;;
    *@*) echo "unknown text in row $name (@pydoc, @dev or @head)" >&2; exit 2 ;;
  esac
  flags=${rows[$base]}
  if [[ $flags == *"$file"* && ! -f $file ]]; then  # made once, when a row needs it
    "$build/examples/latentkv-compress" --model "$model" --budget 1.0 --out "$file" \
      --report "$work/compress-b1.0.json" --threads "$threads" >"$work/compress-b1.0.log" 2>&1
  fi
  if [[ $flags == PCA:* ]]; then
    IFS=: read -r _ g s k <<<"${flags%% *}"
    pca="$work/smollm2.pca-$g-$s-k$k.safetensors"
    if [[ ! -f $pca ]]; then
      "$build/examples/latentkv-compress" --method matryoshka --model "$model" --budget 1.0 \
        --grouping "$g" --schedule "$s" --sink-tokens "$k" --out "$pca" --threads "$threads" \
        >"$pca.log" 2>&1
    fi
    flags="--compressed $pca ${flags#* }"
  elif [[ $flags == PCAAT:* ]]; then
    IFS=: read -r _ g s n b <<<"${flags%% *}"
    pca="$work/smollm2.pcaat-$g-$s-r$n-$b.safetensors"
    if [[ ! -f $pca ]]; then
      "$build/examples/latentkv-compress" --method matryoshka --model "$model" --budget "$b" \
        --grouping "$g" --schedule "$s" --refine-steps "$n" --search-step 32 \
        --search-per-round 16 --out "$pca" --threads "$threads" --report "$pca.json" \
        >"$pca.log" 2>&1
    fi
    flags="--compressed $pca ${flags#* }"
  fi
  echo "== $name: latentkv-eval --model M --text $(basename "$row_text") --ctx 1024 ${span[*]} $flags"
  # shellcheck disable=SC2086
  "$build/examples/latentkv-eval" --model "$model" --text "$row_text" --ctx 1024 "${span[@]}" \
    --threads "$threads" --json "$work/$name.json" $flags >"$work/$name.out" \
    2>"$work/$name.log"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(sys.argv[2], "PPL %.4f" % j["ppl"], "bytes/token %.1f" % j["kv_bytes_per_token_exact"], "vs fp16 %.4f" % j["kv_vs_dense_fp16"], "bits %.3f" % j["bits_per_number"], "%.0f s" % j["seconds"])' "$work/$name.json" "$name"
done
