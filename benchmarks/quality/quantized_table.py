#!/usr/bin/env python3
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
"""Markdown table of benchmarks/quality/quantized.sh's JSON results: quantized_table.py WORK."""
import json
import math
import pathlib
import sys

work = pathlib.Path(sys.argv[1])
dense = json.loads((work / "dense.json").read_text())
dense_fp16 = dense["kv_bytes_per_token_dense_fp32"] / 2


def ppl(nll, n):  # PPL of the first n chunks (every chunk predicts the same number of tokens)
    return math.exp(sum(nll[:n]) / n)


print("| row | cache | KV bytes/token | vs fp16 | bits/number | PPL (16) | vs dense (16) "
      "| PPL (first 4) | vs dense (4) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for path in sorted(work.glob("*.json"), key=lambda p: (p.stem != "dense", p.stem)):
    if path.stem.startswith("compress"):
        continue
    j = json.loads(path.read_text())
    nll, base = j["chunk_nll"], dense["chunk_nll"]
    n = len(nll)
    size = j.get("kv_bytes_per_token_exact", j["kv_bytes_per_token"])
    bits = j.get("bits_per_number", 32.0)
    full, four = ppl(nll, n), ppl(nll, 4)
    print(f"| {path.stem} | {j['cache']} | {size:.1f} | {size / dense_fp16:.4f} | {bits:.3f} "
          f"| {full:.4f} | {100 * (full / ppl(base, n) - 1):+.2f}% | {four:.4f} "
          f"| {100 * (four / ppl(base, 4) - 1):+.2f}% |")
