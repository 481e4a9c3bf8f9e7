#!/usr/bin/env python3
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
"""Quality per byte (docs/quality/bytes.md): latentkv's byte-budget rows beside llama.cpp's KV types.

    bytes_table.py WORK LLAMA_CSV [--png OUT.png] [--text wikitext|pydoc|dev|head]

WORK holds benchmarks/quality/quantized.sh's JSON (rows auto-B, b0.5-f16-auto, b1-int4-tok-rot,
… ; names ending in @pydoc for the second text, @dev for the dev slice, @head for all chunks
before it); LLAMA_CSV is tools/reference/llama_kv_types.py's output on the same text and chunks
("-": none). Relative losses are against each side's own dense cache on
the same chunks: latentkv's dense fp32 PPL comes from the row's own --kl-divergence run
(dense_chunk_nll) or from WORK/dense.json; llama.cpp's from its f16 row. Prints a Markdown table
and the rank correlation of the planner's loss estimate with the measured KL.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import pathlib


def ppl(nll: list[float]) -> float:
    return math.exp(sum(nll) / len(nll))


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(x):
        order = sorted(range(len(x)), key=lambda i: x[i])
        r = [0.0] * len(x)
        for k, i in enumerate(order):
            r[i] = float(k)
        return r

    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = math.sqrt(sum((x - ma) ** 2 for x in ra))
    vb = math.sqrt(sum((y - mb) ** 2 for y in rb))
    return cov / (va * vb) if va > 0 and vb > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=pathlib.Path)
    ap.add_argument("llama_csv", type=pathlib.Path)
    ap.add_argument("--png", type=pathlib.Path)
    ap.add_argument("--text", choices=["wikitext", "pydoc", "dev", "head"], default="wikitext")
    ap.add_argument("--chunks", type=int, default=0,
                    help="score latentkv rows on their first N chunks only (0: all; p99 and "
                         "top-1 are then left out, mean KL is the mean of the chunks' means)")
    a = ap.parse_args()

    suffix = "" if a.text == "wikitext" else "@" + a.text
    dense_file = a.work / "dense.json"
    dense_nll = json.loads(dense_file.read_text())["chunk_nll"] if dense_file.exists() else None
    rows = []
    for path in sorted(a.work.glob("*.json")):
        name = path.stem
        if name.startswith("compress") or name == "dense":
            continue
        if ("@" in name) != bool(suffix) or (suffix and not name.endswith(suffix)):
            continue
        j = json.loads(path.read_text())
        kl = j.get("kl_divergence")
        base = kl["dense_chunk_nll"] if kl else dense_nll
        if base is None:
            continue
        nll = j["chunk_nll"]
        cut = 0 < a.chunks < len(nll)
        if cut:
            nll = nll[: a.chunks]
        base = base[: len(nll)]
        if kl and cut:
            kl = {"mean": sum(kl["chunk_kl"][: a.chunks]) / a.chunks, "p99": None, "same_top1": None}
        plan = j.get("rank_bits_plan")
        rows.append({
            "name": name.removesuffix(suffix),
            "bytes": j["kv_vs_dense_fp16"],
            "bits": j.get("bits_per_number", 32.0),
            "ppl": ppl(nll),
            "rel": ppl(nll) / ppl(base) - 1,
            "rel4": ppl(nll[:4]) / ppl(base[:4]) - 1,
            "kl": kl["mean"] if kl else None,
            "p99": kl["p99"] if kl else None,
            "top1": kl["same_top1"] if kl else None,
            "loss": plan["loss"] if plan else None,
            "chunks": len(nll),
            "dense_ppl": ppl(base),
        })
    rows.sort(key=lambda r: -r["bytes"])

    llama = []
    with (open(a.llama_csv) if str(a.llama_csv) != "-" else open("/dev/null")) as f:
        for r in csv.DictReader(f):
            row = {k: (v if k == "kv_type" else float(v.rstrip("%"))) for k, v in r.items()}
            row["ppl_vs_f16"] /= 100.0  # written as a percentage
            llama.append(row)

    def fmt(x, spec):
        return "—" if x is None else format(x, spec)

    print("| cache | bytes vs fp16 | bits/number | PPL | vs own dense | KL mean | KL p99 | same top-1 "
          "| vs dense, first 4 chunks |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    entries = [("latentkv " + r["name"], r["bytes"], r["bits"], r["ppl"], r["rel"], r["kl"], r["p99"],
                r["top1"], r["rel4"]) for r in rows]
    for r in llama:
        entries.append(("llama.cpp " + r["kv_type"], r["bytes_vs_f16"], r["bits_per_value"], r["ppl"],
                        r["ppl_vs_f16"], r["kl_mean"], r["kl_p99"], r["same_top1"], None))
    for e in sorted(entries, key=lambda e: (-e[1], e[0])):
        print(f"| {e[0]} | {e[1]:.4f} | {e[2]:.3f} | {e[3]:.4f} | {100 * e[4]:+.2f}% "
              f"| {fmt(e[5], '.4f')} | {fmt(e[6], '.4f')} | "
              f"{'—' if e[7] is None else format(100 * e[7], '.2f') + '%'} "
              f"| {'—' if e[8] is None else format(100 * e[8], '+.2f') + '%'} |")
    if rows:
        print(f"\nlatentkv rows: {rows[0]['chunks']} chunks, dense fp32 PPL {rows[0]['dense_ppl']:.4f}"
              + (f"; llama.cpp rows: {int(llama[0]['chunks'])} chunks, f16 PPL {llama[0]['ppl']:.4f}"
                 if llama else ""))
    planned = [r for r in rows if r["loss"] is not None and r["kl"] is not None]
    if len(planned) >= 3:
        rho = spearman([r["loss"] for r in planned], [r["kl"] for r in planned])
        print(f"\nplanner loss vs measured mean KL over {len(planned)} planned rows: Spearman {rho:.3f}; "
              + ", ".join(f"{r['name']}: loss {r['loss']:.4g}, KL {r['kl']:.4f}" for r in planned))

    if a.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        auto = [r for r in rows if r["name"].startswith("auto-")]
        shown = ("b1-int8-kl", "b1-int6-kl", "b1-int5-kl", "b1-int4-tok-rot", "b1-lm3-tok-rot",
                 "b0.5-f16-auto")
        other = [r for r in rows if r["name"] in shown or r["name"].startswith("a4")]
        for ax, key, label in ((axes[0], "rel", "PPL vs own dense (%)"),
                               (axes[1], "kl", "mean KL to own dense (nats/token)")):
            lx = [r["bytes_vs_f16"] for r in llama if r["kv_type"] != "f16"]
            ly = [(100 * r["ppl_vs_f16"] if key == "rel" else r["kl_mean"]) for r in llama
                  if r["kv_type"] != "f16"]
            ax.plot(lx, ly, "s--", color="tab:red", label="llama.cpp KV types")
            for r in llama:
                if r["kv_type"] != "f16":
                    ax.annotate(r["kv_type"], (r["bytes_vs_f16"], 100 * r["ppl_vs_f16"] if key == "rel"
                                               else r["kl_mean"]), fontsize=7, color="tab:red")
            pts = [r for r in auto if r[key] is not None]
            ax.plot([r["bytes"] for r in pts], [(100 * r[key] if key == "rel" else r[key]) for r in pts],
                    "o-", color="tab:blue", label="latentkv --cache-dtype auto, γ 0.3")
            for r in other:
                if r[key] is None:
                    continue
                ax.plot(r["bytes"], 100 * r[key] if key == "rel" else r[key], "^", color="tab:green")
                ax.annotate(r["name"], (r["bytes"], 100 * r[key] if key == "rel" else r[key]), fontsize=7,
                            color="tab:green")
            ax.set_xlabel("KV bytes per token / dense fp16")
            ax.set_ylabel(label)
            if key == "rel":
                ax.set_yscale("symlog", linthresh=1.0)
            else:
                ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"SmolLM2-135M, {a.text}, ctx 1024: quality per KV-cache byte")
        fig.tight_layout()
        fig.savefig(a.png, dpi=120)


if __name__ == "__main__":
    main()
