#!/usr/bin/env python3
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
"""quality.csv (benchmarks/quality/run.sh) → a Markdown table and a PNG plot of PPL vs budget."""
import argparse
import csv
from collections import defaultdict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("csv")
    p.add_argument("--md", required=True)
    p.add_argument("--png", required=True)
    p.add_argument("--command", default="benchmarks/quality/run.sh")
    p.add_argument("--chunks", default="4")
    a = p.parse_args()
    rows = list(csv.DictReader(open(a.csv)))
    dense = next(r for r in rows if r["factorizer"] == "dense")
    configs = defaultdict(dict)
    for r in rows:
        if r["factorizer"] == "dense":
            continue
        configs[(r["factorizer"], r["schedule"], r["grouping"])][float(r["budget_requested"])] = r
    budgets = sorted({b for c in configs.values() for b in c}, reverse=True)

    out = []
    out.append("# Quality: WikiText-2 perplexity of compressed SmolLM2-135M-Instruct\n")
    out.append(f"Made by `{a.command}` (CSV: `quality.csv`, plot: `quality.png`). WikiText-2 raw "
               f"test split, ctx {dense['ctx']}, the first {dense['chunks']} chunks "
               f"({int(dense['chunks']) * (int(dense['ctx']) - 1)} predicted tokens), fp32 compute, "
               "each compressed model evaluated through its latent KV cache (fp32 latents). "
               f"Dense fp32 cache: **PPL {float(dense['ppl']):.4f}**. Budget = kept fraction of "
               "dense KV-cache numbers per token (`budget_achieved` in the CSV).\n")
    out.append("Grid (see `benchmarks/quality/run.sh`): whitened SVD × {uniform, progressive, "
               "energy, sensitivity} × {joint, per-head}, each compressed once at the largest "
               "budget and evaluated at the smaller ones through elastic loading (`--budget`: "
               "re-planned and truncated, equal to compressing there); plain SVD × {uniform, "
               "progressive} × joint and randomized SVD × progressive × joint, compressed at each "
               "budget; greedy search (whitened, joint) at 0.5 and 0.3. Calibration for whitening, "
               "sensitivity and search: the last 2048 / 256 / 128 tokens of the same WikiText-2 "
               "file, disjoint from the scored chunks.\n")
    out.append("| factorizer | schedule | grouping | " +
               " | ".join(f"{b:g}" for b in budgets) + " |")
    out.append("|---|---|---|" + "---:|" * len(budgets))
    for key in sorted(configs):
        cells = []
        for b in budgets:
            r = configs[key].get(b)
            cells.append(f"{float(r['ppl']):.2f}" if r else "")
        out.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("Best per budget (lowest PPL):\n")
    out.append("| budget | best | PPL | vs dense |")
    out.append("|---:|---|---:|---:|")
    for b in budgets:
        cands = [(float(c[b]["ppl"]), k) for k, c in configs.items() if b in c]
        if not cands:
            continue
        ppl, k = min(cands)
        out.append(f"| {b:g} | {k[0]} {k[1]} {k[2]} | {ppl:.2f} | "
                   f"{ppl / float(dense['ppl']):.3f}x |")
    out.append("")
    # LoRC's progressive schedule against uniform, same factorizer and grouping (the issue asks
    # for this comparison to be honest: it is computed, not written).
    out.append("Progressive (LoRC) vs uniform, PPL ratio progressive / uniform (< 1: progressive "
               "better):\n")
    out.append("| factorizer | grouping | " + " | ".join(f"{b:g}" for b in budgets) + " | verdict |")
    out.append("|---|---|" + "---:|" * len(budgets) + "---|")
    for (f, s, g) in sorted(configs):
        if s != "progressive" or (f, "uniform", g) not in configs:
            continue
        ratios = []
        for b in budgets:
            p, u = configs[(f, s, g)].get(b), configs[(f, "uniform", g)].get(b)
            ratios.append(float(p["ppl"]) / float(u["ppl"]) if p and u else None)
        known = [r for r in ratios if r is not None]
        wins = sum(r < 1.0 for r in known)
        verdict = (f"progressive better at {wins} of {len(known)} budgets" if known else "")
        out.append(f"| {f} | {g} | " +
                   " | ".join(f"{r:.3f}" if r is not None else "" for r in ratios) +
                   f" | {verdict} |")
    out.append("")
    open(a.md, "w").write("\n".join(out) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    for key in sorted(configs):
        pts = sorted((b, float(r["ppl"])) for b, r in configs[key].items())
        if len(pts) < 2:
            ax.scatter([x for x, _ in pts], [y for _, y in pts], label=" ".join(key), marker="x")
            continue
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=" ".join(key))
    ax.axhline(float(dense["ppl"]), color="black", linestyle="--", label="dense")
    ax.set_yscale("log")
    ax.set_xlabel("KV-cache budget (kept fraction)")
    ax.set_ylabel(f"WikiText-2 PPL (ctx {dense['ctx']}, {dense['chunks']} chunks)")
    ax.set_title("SmolLM2-135M-Instruct, latent KV cache")
    ax.invert_xaxis()
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(a.png, dpi=120)


if __name__ == "__main__":
    main()
