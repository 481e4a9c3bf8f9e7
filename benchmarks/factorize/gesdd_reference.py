# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
"""Outside reference for benchmarks/factorize: LAPACK gesdd through numpy.linalg.svd (OpenBLAS),
on the same shapes as factorizer_bench. Prints one JSON object: seconds per call.

  python3 gesdd_reference.py [--repeats N]

A thin SVD computes every singular triplet; truncation to rank r is free afterwards, so gesdd's
time does not depend on the rank. AllKV = 64 matrices of 4096 x 1024 (LLaMA-3-8B K/V), one after
another (OpenBLAS threads over both cores inside each call).
"""
import argparse
import json
import os
import time

import numpy as np


def matrix(rows, cols, alpha, seed):
    rng = np.random.default_rng(seed)
    k = min(rows, cols)
    u, _ = np.linalg.qr(rng.standard_normal((rows, k)))
    v, _ = np.linalg.qr(rng.standard_normal((cols, k)))
    s = np.arange(1, k + 1, dtype=np.float64) ** -alpha
    return ((u * s) @ v.T).astype(np.float32)


def timed(fn, repeats):
    fn()  # warm up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out = {"numpy": np.__version__, "threads": os.cpu_count()}
    for name, (rows, cols) in {"SmolLM2_576x192": (576, 192),
                               "Llama3_8B_4096x1024": (4096, 1024)}.items():
        w = matrix(rows, cols, 0.4, 1)
        out[name] = timed(lambda: np.linalg.svd(w, full_matrices=False), args.repeats)
    ws = [matrix(4096, 1024, 0.6 + 0.7 * (l / 31) if kv == 0 else 0.35 + 0.15 * (l / 31), 100 + l)
          for l in range(32) for kv in (0, 1)]
    out["Llama3_8B_AllKV"] = timed(lambda: [np.linalg.svd(w, full_matrices=False) for w in ws], 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
