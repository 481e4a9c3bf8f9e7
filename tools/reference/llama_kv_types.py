# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
"""The peer a user would pick instead of latentkv: llama.cpp's own quantized KV cache.

Runs the GGUF through llama.cpp (llama-cpp-python) with every KV cache type it offers on the CPU
(f16, q8_0, q5_1, q5_0, q4_1, q4_0; the same type for K and V; flash attention on, which a
quantized V needs) on the evaluation protocol of DESIGN.md §10 — the whole text tokenized as one
string by llama.cpp's tokenizer (add_bos=False, special=False: the same ids as latentkv's C++
tokenizer, tests/data/reference/tokens.json), non-overlapping chunks of ctx tokens from token 0,
each from an empty cache, NLL of the ctx - 1 predictions per chunk from float64 log-softmax — and
writes one CSV row per type:

  kv_type, bits_per_value, kv_bytes_per_token, bytes_vs_f16, ppl, mean_nll, ppl_vs_f16,
  kl_mean, kl_p99, kl_median, kl_max, same_top1, ctx, chunks, seconds

KL is KL(p_f16 || p_type) per predicted token against llama.cpp's own f16 cache on the same chunk
(the f16 row has 0 by definition), its 99th percentile by linear interpolation (as llama.cpp's
`llama-perplexity --kl-divergence` and numpy), and same_top1 the fraction of predictions whose
argmax agrees with f16's. Chunks run one at a time: f16 first (its log-probabilities are kept for
that chunk only), then each other type.

Bytes per token count K and V of every layer at ggml's block sizes: f16 2 bytes per value; q8_0
34 bytes per 32; q5_1 24; q5_0 22; q4_1 20; q4_0 18 (bytes_vs_f16 = bytes / (2 per value)).

Usage (see tools/reference/README.md for the venv)::

    python tools/reference/llama_kv_types.py --model SmolLM2-135M-Instruct.Q4_1.gguf \\
        --chunks 16 --out docs/quality/llama_cpp_kv_types.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_TEXT = REPO / "tests" / "data" / "wikitext" / "wikitext-2-raw-test.txt"

# ggml block sizes: (bytes per block, values per block)
BLOCK = {"f16": (2, 1), "q8_0": (34, 32), "q5_1": (24, 32), "q5_0": (22, 32), "q4_1": (20, 32),
         "q4_0": (18, 32)}
GGML_TYPE = {"f16": "GGML_TYPE_F16", "q8_0": "GGML_TYPE_Q8_0", "q5_1": "GGML_TYPE_Q5_1",
             "q5_0": "GGML_TYPE_Q5_0", "q4_1": "GGML_TYPE_Q4_1", "q4_0": "GGML_TYPE_Q4_0"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def log_softmax64(x):
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def percentile(values, p: float) -> float:
    """Linear interpolation between order statistics at p·(n − 1) (numpy's default)."""
    s = sorted(values)
    at = p * (len(s) - 1)
    lo = int(at)
    hi = min(lo + 1, len(s) - 1)
    return (1 - (at - lo)) * s[lo] + (at - lo) * s[hi]


def make_llama(lc, model: Path, ctx: int, threads: int, kv_type: str):
    kw = dict(model_path=str(model), n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True,
              n_threads=threads, n_threads_batch=threads, seed=0, n_gpu_layers=0, verbose=False,
              type_k=getattr(lc, GGML_TYPE[kv_type]), type_v=getattr(lc, GGML_TYPE[kv_type]))
    try:
        return lc.Llama(flash_attn=True, **kw)
    except TypeError:  # newer bindings name it flash_attn_type
        return lc.Llama(flash_attn_type=lc.LLAMA_FLASH_ATTN_TYPE_ENABLED, **kw)


def chunk_logprobs(llm, ids, block: int = 256):
    """Yields (start, log-softmax float64 rows) of the chunk's ctx - 1 predicting rows."""
    import numpy as np

    llm.reset()
    llm.eval(ids)
    scores = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
    n = len(ids) - 1
    for s in range(0, n, block):
        e = min(n, s + block)
        yield s, log_softmax64(scores[s:e])


def write_csv(path: Path, types, stats, ctx: int, chunks: int, n_layers: int, kv_dim: int) -> None:
    """The CSV of the first `chunks` chunks (rewritten after every chunk: a cut run keeps them)."""
    import numpy as np

    n = chunks * (ctx - 1)
    f16_ppl = float(np.exp(stats["f16"]["nll"] / n))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kv_type", "bits_per_value", "kv_bytes_per_token", "bytes_vs_f16", "ppl",
                    "mean_nll", "ppl_vs_f16", "kl_mean", "kl_p99", "kl_median", "kl_max",
                    "same_top1", "ctx", "chunks", "seconds"])
        for t in types:
            b, v = BLOCK[t]
            per_token = 2 * n_layers * kv_dim * b / v
            mean_nll = stats[t]["nll"] / n
            ppl = float(np.exp(mean_nll))
            kl = stats[t]["kl"]
            w.writerow([t, f"{8 * b / v:.4g}", f"{per_token:.0f}", f"{b / v / 2:.4f}", f"{ppl:.4f}",
                        f"{mean_nll:.6f}", f"{ppl / f16_ppl - 1:+.4%}", f"{sum(kl) / n:.6f}",
                        f"{percentile(kl, 0.99):.6f}", f"{percentile(kl, 0.5):.6f}",
                        f"{max(kl):.6f}", f"{stats[t]['same'] / n:.6f}", ctx, chunks,
                        f"{stats[t]['seconds']:.1f}"])
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="the GGUF (DESIGN.md §9)")
    ap.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="UTF-8 text (default WikiText-2)")
    ap.add_argument("--ctx", type=int, default=1024, help="tokens per chunk")
    ap.add_argument("--chunks", type=int, default=16, help="the first N chunks")
    ap.add_argument("--types", default="f16,q8_0,q5_1,q5_0,q4_1,q4_0",
                    help="KV cache types, f16 first (the KL reference)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True, help="CSV to write")
    args = ap.parse_args()

    types = args.types.split(",")
    for t in types:
        if t not in BLOCK:
            ap.error(f"--types: {t!r} is unknown, expected some of {', '.join(BLOCK)}")
    if types[0] != "f16":
        ap.error("--types must start with f16 (the reference of the KL divergence)")
    if args.ctx < 2 or args.chunks < 1:
        ap.error("--ctx must be >= 2 and --chunks >= 1")
    try:
        import llama_cpp as lc
        import numpy as np
    except ImportError as exc:
        sys.exit(f"llama_kv_types: {exc}; install llama-cpp-python and numpy (tools/reference/README.md)")

    text = args.text.read_text(encoding="utf-8")
    vocab_only = lc.Llama(model_path=str(args.model), vocab_only=True, verbose=False)
    ids = list(vocab_only.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    available = len(ids) // args.ctx
    if args.chunks > available:
        ap.error(f"--chunks = {args.chunks} but {args.text} has only {available} chunks of {args.ctx}")
    log(f"{args.text.name}: {len(ids)} tokens, {available} chunks of {args.ctx}; "
        f"llama-cpp-python {lc.__version__}; types {', '.join(types)}")
    meta = vocab_only.metadata
    arch = meta["general.architecture"]
    n_layers = int(meta[f"{arch}.block_count"])
    head_dim = int(meta.get(f"{arch}.attention.key_length",
                            int(meta[f"{arch}.embedding_length"]) // int(meta[f"{arch}.attention.head_count"])))
    kv_dim = int(meta[f"{arch}.attention.head_count_kv"]) * head_dim  # values per layer, K or V

    stats = {t: {"nll": 0.0, "kl": [], "same": 0, "seconds": 0.0} for t in types}
    start = time.perf_counter()
    for k in range(args.chunks):
        chunk = ids[k * args.ctx : (k + 1) * args.ctx]
        targets = np.asarray(chunk[1:])
        reference = np.empty((args.ctx - 1, 0))
        for t in types:
            t0 = time.perf_counter()
            llm = make_llama(lc, args.model, args.ctx, args.threads, t)
            nll = 0.0
            for s, lp in chunk_logprobs(llm, chunk):
                rows = np.arange(lp.shape[0])
                nll += float(-lp[rows, targets[s : s + lp.shape[0]]].sum())
                if t == "f16":
                    if reference.shape[1] == 0:
                        reference = np.empty((args.ctx - 1, lp.shape[1]), dtype=np.float32)
                    reference[s : s + lp.shape[0]] = lp
                    stats[t]["kl"].extend([0.0] * lp.shape[0])
                    stats[t]["same"] += lp.shape[0]
                else:
                    ref = reference[s : s + lp.shape[0]].astype(np.float64)
                    kl = (np.exp(ref) * (ref - lp)).sum(axis=1)
                    stats[t]["kl"].extend(float(v) for v in kl)
                    stats[t]["same"] += int((ref.argmax(axis=1) == lp.argmax(axis=1)).sum())
            del llm
            stats[t]["nll"] += nll
            stats[t]["seconds"] += time.perf_counter() - t0
            kl_now = sum(stats[t]["kl"][-(args.ctx - 1):]) / (args.ctx - 1)
            log(f"  chunk {k + 1}/{args.chunks} {t:5s}: mean NLL {nll / (args.ctx - 1):.6f}, "
                f"mean KL {kl_now:.6f}, {time.perf_counter() - t0:.1f} s "
                f"({time.perf_counter() - start:.0f} s total)")
        write_csv(args.out, types, stats, args.ctx, k + 1, n_layers, kv_dim)

    log(f"wrote {args.out}")
    print(args.out.read_text(), end="")


if __name__ == "__main__":
    main()
