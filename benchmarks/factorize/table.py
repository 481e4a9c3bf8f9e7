# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
"""Markdown table from factorizer_bench's JSON and gesdd_reference.py's JSON (same run)."""
import json
import sys

bench = json.load(open(sys.argv[1]))
gesdd = json.load(open(sys.argv[2]))
to_s = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
print(f"numpy {gesdd['numpy']} gesdd: SmolLM2 {gesdd['SmolLM2_576x192']*1e3:.2f} ms, "
      f"LLaMA-3-8B {gesdd['Llama3_8B_4096x1024']*1e3:.0f} ms, AllKV {gesdd['Llama3_8B_AllKV']:.1f} s\n")
print("| benchmark | time | vs gesdd | rel_error | vs_optimal |")
print("| --- | ---: | ---: | ---: | ---: |")
for b in bench["benchmarks"]:
    name = b["name"].removesuffix("/iterations:1").removesuffix("/real_time")
    seconds = b["real_time"] * to_s[b["time_unit"]]
    ref_key = next((k for k in ("SmolLM2_576x192", "Llama3_8B_4096x1024") if k in name),
                   "Llama3_8B_AllKV")
    ratio = seconds / gesdd[ref_key]
    err = b.get("rel_error", float("nan"))
    opt = b.get("vs_optimal", b.get("vs_optimal_max", float("nan")))
    t = f"{seconds:.2f} s" if seconds >= 1 else f"{seconds*1e3:.2f} ms"
    print(f"| {name} | {t} | {ratio:.2f}x | {err:.4f} | {opt:.4f} |")
