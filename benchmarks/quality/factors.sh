#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# Issue 9's "better factors", each measured as its own row: perplexity (and, with --kl, KL against
# the dense model) of SmolLM2-135M-Instruct compressed at budgets 0.5 and 0.3, joint grouping, on
# the first N chunks (ctx 1024, DESIGN §10) of WikiText-2 and of a second text never calibrated on
# (tests/data/pydoc: Python's language-reference topics).
#   benchmarks/quality/factors.sh [--chunks N] [--chunks2 N2] [--only TAG,...] [--kl] [--out DIR]
# Rows (TAG: latentkv-compress flags):
#   dense               the uncompressed model (fp32 cache)
#   svd                 --factorizer svd --schedule energy (data-free baseline)
#   svd-gain            --factorizer svd-gain --schedule energy (a: RMSNorm gain folded in)
#   whitened            --factorizer whitened --schedule energy (calibrated baseline; energy, not
#                       the default sensitivity schedule, because it compresses in seconds)
#   whitened-recal      the same + --recalibrate-values (b: closed-form W̃_o refit)
#   whitened-sinks      the same + --sink-tokens 4 --sink-weight 0 (c: sinks out of the Grams)
# Files compressed at 0.5 serve 0.3 by elastic loading (re-planned, truncated: equal to compressing
# at 0.3 for exact SVD factors), except whitened-recal, compressed at each budget (a refit W̃_o
# truncated is no longer the fit). Calibration: the last 2048 (Grams, refit) / 256 (KL of the
# sensitivity schedule) tokens of WikiText-2, disjoint from the scored chunks.
# Appends one CSV line per (row, budget, text) to DIR/factors.csv (default build/factors).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

chunks=16
chunks2=16
only=""
kl=0
out=build/factors
while (($#)); do
  case "$1" in
    --chunks) chunks=$2; shift ;;
    --chunks2) chunks2=$2; shift ;;
    --only) only=$2; shift ;;
    --kl) kl=1 ;;
    --out) out=$2; shift ;;
    *) echo "factors: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

build_dir=${LATENTKV_BUILD_DIR:-build/e}
compress="$build_dir/examples/latentkv-compress"
eval_tool="$build_dir/examples/latentkv-eval"
model=$(scripts/fetch-model.sh)
wikitext=tests/data/wikitext/wikitext-2-raw-test.txt
pydoc=tests/data/pydoc/python-3.11.7-pydoc-topics.txt
mkdir -p "$out"
csv=$out/factors.csv
[ -f "$csv" ] || echo "row,budget,text,chunks,ppl,mean_nll,dense_ppl,kl_mean,kl_p99,same_top1,kv_bytes_per_token,compress_seconds,eval_seconds,eval_command" >"$csv"
wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

# evaluate ROW BUDGET FILE COMPRESS_SECONDS [--budget B]
evaluate() {
  local row=$1 budget=$2 file=$3 cs=$4
  shift 4
  for text in wikitext pydoc; do
    local path=$wikitext n=$chunks
    if [ "$text" = pydoc ]; then path=$pydoc; n=$chunks2; fi
    ((n > 0)) || continue
    local json=$out/$row-$budget-$text.json
    local extra=()
    ((kl)) && extra=(--kl-divergence)
    local cmd=("$eval_tool" --model "$model" --compressed "$file" --text "$path" --chunks "$n"
      --json "$json" "${extra[@]}" "$@")
    "${cmd[@]}" >/dev/null 2>"$json.log" || { cat "$json.log" >&2; exit 1; }
    python3 - "$row" "$budget" "$text" "$json" "$cs" "latentkv-eval --compressed $(basename "$file") --text $(basename "$path") --chunks $n ${extra[*]} $*" >>"$csv" <<'PY'
import json, sys
row, budget, text, path, cs, cmd = sys.argv[1:]
r = json.load(open(path))
k = r.get("kl_divergence", {})
f = lambda key, fmt: format(k[key], fmt) if key in k else ""
print(f"{row},{budget},{text},{r['chunks']},{r['ppl']:.4f},{r['mean_nll']:.6f},{f('dense_ppl', '.4f')},"
      f"{f('mean', '.6f')},{f('p99', '.6f')},{f('same_top1', '.6f')},{r['kv_bytes_per_token']},{cs},"
      f"{r['seconds']:.1f},{cmd}")
PY
    tail -1 "$csv"
  done
}

# row TAG BUDGET ELASTIC [compress flags...]: compress, evaluate at BUDGET (and at 0.3 by elastic
# loading when ELASTIC is 1).
row() {
  local tag=$1 budget=$2 elastic=$3
  shift 3
  local file=$out/$tag-$budget.safetensors
  echo "== $tag at $budget: latentkv-compress --budget $budget $*"
  local start
  start=$(date +%s.%N)
  "$compress" --model "$model" --budget "$budget" --grouping joint --out "$file" \
    --report "$out/$tag-$budget.report.json" --quiet "$@" >/dev/null 2>"$out/$tag-$budget.log" ||
    { cat "$out/$tag-$budget.log" >&2; exit 1; }
  local seconds
  seconds=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  evaluate "$tag" "$budget" "$file" "$seconds"
  if ((elastic)); then
    evaluate "$tag" 0.3 "$file" "$seconds (elastic from 0.5)" --budget 0.3
  fi
}

if wanted dense; then
  for text in wikitext pydoc; do
    path=$wikitext n=$chunks
    if [ "$text" = pydoc ]; then path=$pydoc; n=$chunks2; fi
    ((n > 0)) || continue
    json=$out/dense-$text.json
    "$eval_tool" --model "$model" --text "$path" --chunks "$n" --json "$json" >/dev/null 2>"$json.log"
    python3 - "$text" "$json" "latentkv-eval --text $(basename "$path") --chunks $n" >>"$csv" <<'PY'
import json, sys
text, path, cmd = sys.argv[1:]
r = json.load(open(path))
print(f"dense,1.0,{text},{r['chunks']},{r['ppl']:.4f},{r['mean_nll']:.6f},{r['ppl']:.4f},0,0,1,"
      f"{r['kv_bytes_per_token']},0,{r['seconds']:.1f},{cmd}")
PY
    tail -1 "$csv"
  done
fi
wanted svd-gain && row svd-gain 0.5 1 --factorizer svd-gain --schedule energy
wanted svd && row svd 0.5 0 --factorizer svd --schedule energy
wanted whitened && row whitened 0.5 1 --factorizer whitened --schedule energy
if wanted whitened-recal; then
  row whitened-recal 0.5 0 --factorizer whitened --schedule energy --recalibrate-values
  row whitened-recal 0.3 0 --factorizer whitened --schedule energy --recalibrate-values
fi
wanted whitened-sinks &&
  row whitened-sinks 0.5 1 --factorizer whitened --schedule energy --sink-tokens 4 --sink-weight 0
echo "appended to $csv"
