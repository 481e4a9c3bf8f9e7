# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
"""Write reference fixtures for latentkv's C++ tokenizer, model and perplexity harness.

The fixtures come from implementations nobody on the team wrote:

* ``llama.cpp`` through ``llama-cpp-python`` (tokenizer, logits, perplexity), and
* ``transformers`` loading the GGUF (``from_pretrained(dir, gguf_file=...)``), which dequantizes every
  tensor to fp32 and runs the model in fp32 on the CPU (logits, perplexity; its tokenizer is only
  compared against llama.cpp's, never used for a fixture).

Both backends are fed the *same* token ids (llama.cpp's tokenizer), so their logits and NLLs are
directly comparable. See tools/reference/README.md for how to run this and what each fixture holds.

Usage::

    python3 tools/reference/make_fixtures.py --model PATH.gguf --out tests/data/reference

Everything is printed as it happens. A missing Python package stops the script with a message that
says what to install; ``--backends llama`` or ``--backends hf`` runs one backend only (results of
the other one already in the fixtures are kept).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_TEXT = REPO.parent / "shared" / "data" / "wikitext-2-raw-test.txt"
if not DEFAULT_TEXT.exists():
    DEFAULT_TEXT = Path("/work/shared/data/wikitext-2-raw-test.txt")

SCHEMA_VERSION = 1

# ---------------------------------------------------------------------------------------------
# Fixed inputs. Changing any of these changes the fixtures: bump nothing, just re-run the script.
# ---------------------------------------------------------------------------------------------

# Digits, punctuation, contractions ('s 're 'll 'd 't 've 'm), runs of spaces / tabs / newlines, CRLF,
# accented Latin, Greek, Cyrillic, CJK, emoji, combining marks, and special-token look-alikes
# (which must be tokenized as plain text: special=False).
PARAGRAPH = (
    "In 2024, 1,234,567 people visited the museum's new wing; they're sure we'll be back.\n"
    "Prices rose 3.5% (from $12.99 to $13.45) -- see p. 42, \u00a77 and 0x1F.\n\n"
    "  Indented line\twith a tab,\t\ttwo tabs, and   three spaces.\r\n"
    "na\u00efve caf\u00e9 Z\u00fcrich r\u00e9sum\u00e9; "
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac: \u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 "
    "\u03ba\u03cc\u03c3\u03bc\u03b5; "
    "\u0420\u0443\u0441\u0441\u043a\u0438\u0439: \u041f\u0440\u0438\u0432\u0435\u0442, "
    "\u043c\u0438\u0440!\n"
    "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002 \U0001F680 launch! "
    "e\u0301 (e + combining acute), n\u0303, A\u030a.\n"
    "I'd say it's fine, isn't it? You've done what I'm told; DON'T SHOUT.   \n\n\n"
    "<|im_start|>user not special<|im_end|> <|endoftext|>\n"
    "END"
)

EDGE_CASES = [
    "",
    " ",
    "  leading spaces",
    "trailing  ",
    "a\r\nb",
    "123456789",
    "don't",
    "Hello World",
    "Hello world",
    " Hello",
    "\n",
    "\n\n\n",
    "\t",
    " \n ",
    "\r\n\r\n",
    "1.5e-10",
    "3,14159",
    "caf\u00e9",
    "e\u0301",
    "\U0001F680\U0001F680",
    "\u6771\u4eac",
    "<|endoftext|>",
    " = Robert Boulter = \r\n",
]

# ~32 tokens of plain English for the logits fixture (no BOS).
LOGIT_PROMPT = (
    "The quick brown fox jumps over the lazy dog. The capital of France is Paris, "
    "and the capital of Germany is Berlin. The capital of Italy is"
)
LOGIT_TOPK = 5
N_WIKITEXT_PREFIX = 4096

HASH_FORMAT = "sha256 of the token ids packed as little-endian uint32, no separators"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[make_fixtures {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def need(module: str, pip_name: str, why: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        sys.exit(
            f"error: Python package '{pip_name}' is missing ({exc}).\n"
            f"       It is needed for {why}. Install it in a venv outside the repository, e.g.\n"
            f"       python3 -m venv /root/.cache/latentkv/venv-ref && "
            f"/root/.cache/latentkv/venv-ref/bin/pip install {pip_name}\n"
            f"       (see tools/reference/README.md), or pick other --backends."
        )


def pkg_version(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ids_sha256(ids) -> str:
    import numpy as np

    return hashlib.sha256(np.asarray(ids, dtype="<u4").tobytes()).hexdigest()


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def load_json(path: Path) -> dict:
    if path.exists():
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return {}


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=False)
    # keep long id lists on one line so the files stay small and diffable
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(compact_lists(text) + "\n")
    log(f"wrote {path} ({path.stat().st_size:,} bytes)")


def compact_lists(text: str) -> str:
    """Collapse JSON arrays of scalars that json.dumps(indent=...) spread over many lines."""
    import re

    pat = re.compile(r"\[\s*((?:-?[0-9.eE+-]+|true|false|null)(?:,\s*(?:-?[0-9.eE+-]+|true|false|null))*)\s*\]")
    return pat.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def log_softmax64(logits):
    """Row-wise log-softmax in float64."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def chunk_nll(logits, ids) -> tuple[float, int]:
    """Sum of NLL (float64) of ids[1:] predicted from logits[:-1]; returns (sum, count)."""
    import numpy as np

    ids = np.asarray(ids)
    total = 0.0
    n = len(ids) - 1
    step = 256
    for s in range(0, n, step):
        e = min(n, s + step)
        lp = log_softmax64(logits[s:e])
        total += float(-lp[np.arange(e - s), ids[s + 1 : e + 1]].sum())
    return total, n


def logit_stats(row, topk: int) -> dict:
    import numpy as np

    r = np.asarray(row, dtype=np.float32)
    r64 = r.astype(np.float64)
    order = np.argsort(-r64, kind="stable")[:topk]
    m = r64.max()
    lse = float(m + np.log(np.exp(r64 - m).sum()))
    return {
        "top": [[int(i), float(r[i])] for i in order],
        "mean": float(r64.mean()),
        "std": float(r64.std()),
        "max": float(m),
        "logsumexp": lse,
    }


def compare_logits(a, b) -> dict:
    """Differences between two (T, V) logit matrices computed on the same ids."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = np.abs(a - b)
    la, lb = log_softmax64(a), log_softmax64(b)
    dl = np.abs(la - lb)
    pa = np.exp(la)
    kl = (pa * (la - lb)).sum(axis=-1)  # KL(a || b) per position
    top1 = (a.argmax(-1) == b.argmax(-1)).mean()
    top5 = np.mean(
        [set(np.argsort(-a[t])[:5]) == set(np.argsort(-b[t])[:5]) for t in range(a.shape[0])]
    )
    # relative to the spread of the logits: max|d| / std(a) per position
    rel = (d.max(axis=-1) / a.std(axis=-1)).max()
    return {
        "positions": int(a.shape[0]),
        "max_abs_logit_diff": float(d.max()),
        "mean_abs_logit_diff": float(d.mean()),
        "rms_logit_diff": float(np.sqrt((d**2).mean())),
        "max_abs_logit_diff_over_std": float(rel),
        "max_abs_logprob_diff": float(dl.max()),
        "max_abs_logprob_diff_top5": float(
            max(dl[t, np.argsort(-a[t])[:5]].max() for t in range(a.shape[0]))
        ),
        "max_kl_nats": float(kl.max()),
        "mean_kl_nats": float(kl.mean()),
        "top1_agreement": float(top1),
        "top5_set_agreement": float(top5),
    }


# ---------------------------------------------------------------------------------------------
# backends
# ---------------------------------------------------------------------------------------------


class LlamaCppBackend:
    key = "llama.cpp"

    def __init__(self, model: Path, n_ctx: int, threads: int, kv_type: str = "f32"):
        self.llama_cpp = need("llama_cpp", "llama-cpp-python", "the llama.cpp backend")
        lc = self.llama_cpp
        type_kv = {"f32": lc.GGML_TYPE_F32, "f16": lc.GGML_TYPE_F16}[kv_type]
        self.kv_type = kv_type
        self.n_ctx = n_ctx
        self.threads = threads
        t0 = time.perf_counter()
        self.llm = lc.Llama(
            model_path=str(model),
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
            logits_all=True,
            n_threads=threads,
            n_threads_batch=threads,
            seed=0,
            flash_attn=False,
            type_k=type_kv,
            type_v=type_kv,
            n_gpu_layers=0,
            verbose=False,
        )
        self.load_s = time.perf_counter() - t0
        try:
            sysinfo = lc.llama_print_system_info().decode("utf-8", "replace").strip()
        except Exception:
            sysinfo = None
        self.info = {
            "implementation": "llama.cpp via llama-cpp-python",
            "llama_cpp_python_version": getattr(lc, "__version__", pkg_version("llama-cpp-python")),
            "llama_cpp_system_info": sysinfo,
            "compute": (
                "NOT fp32: Q4_1 weights are used as stored; for the matmuls llama.cpp's CPU backend "
                "quantizes the activations to Q8_1 and does integer dot products, so the logits "
                "differ slightly from fp32 math on the dequantized weights"
            ),
            "params": {
                "n_ctx": n_ctx,
                "n_batch": n_ctx,
                "n_ubatch": n_ctx,
                "n_threads": threads,
                "seed": 0,
                "flash_attn": False,
                "kv_cache_type": kv_type,
                "logits_all": True,
                "n_gpu_layers": 0,
            },
        }

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def detokenize(self, ids: list[int]) -> bytes:
        return self.llm.detokenize(ids)

    def logits(self, ids: list[int], step: int | None = None):
        """(len(ids), n_vocab) float32 logits, evaluated from an empty cache.

        step=None evaluates all ids in one batch (what the fixtures use); step=k feeds them k at a
        time through the KV cache (a different kernel path, for the tolerance study)."""
        import numpy as np

        if len(ids) > self.n_ctx:
            raise ValueError("sequence longer than n_ctx")
        self.llm.reset()  # n_tokens = 0; eval() then removes every cached position
        if step is None:
            self.llm.eval(ids)
        else:
            for i in range(0, len(ids), step):
                self.llm.eval(ids[i : i + step])
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32, copy=True)


class TransformersBackend:
    key = "transformers"

    def __init__(self, model: Path, threads: int):
        self.torch = need("torch", "torch", "the transformers backend")
        self.transformers = need("transformers", "transformers", "the transformers backend")
        need("gguf", "gguf", "transformers' GGUF loader")
        torch = self.torch
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(
            str(model.parent), gguf_file=model.name, dtype=torch.float32
        )
        self.model.eval()
        self.load_s = time.perf_counter() - t0
        emb = self.model.get_input_embeddings().weight
        head = self.model.get_output_embeddings().weight
        tied = bool(emb.data_ptr() == head.data_ptr() or torch.equal(emb, head))
        if not tied:
            sys.exit(
                "error: transformers did not tie lm_head to the token embedding; the GGUF has no "
                "'output' tensor, so lm_head would be random. Refusing to write fixtures."
            )
        attn = getattr(self.model.config, "_attn_implementation", None)
        self.info = {
            "implementation": "transformers (AutoModelForCausalLM.from_pretrained(dir, gguf_file=...))",
            "transformers_version": self.transformers.__version__,
            "torch_version": torch.__version__,
            "gguf_py_version": pkg_version("gguf"),
            "compute": "fp32: GGUF tensors dequantized to fp32 by gguf-py, fp32 matmuls on the CPU",
            "params": {
                "dtype": "float32",
                "attn_implementation": attn,
                "torch_num_threads": threads,
                "use_cache": False,
                "lm_head_tied_to_embedding": tied,
            },
        }

    def logits(self, ids: list[int], float64: bool = False, q8_act: bool = False):
        import numpy as np

        torch = self.torch
        hooks = []
        if q8_act:
            def q8(_mod, inp):
                x = inp[0]
                xb = x.reshape(-1, 32)
                d = xb.abs().amax(-1, keepdim=True) / 127.0
                inv = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
                q = torch.round(xb * inv)
                return ((q * d.half().to(x.dtype)).reshape(x.shape),)

            hooks = [m.register_forward_pre_hook(q8) for m in self.model.modules()
                     if isinstance(m, torch.nn.Linear)]
        try:
            if float64:
                torch.nn.Module.double(self.model)  # transformers' own .double() refuses GGUF models
            with torch.inference_mode():
                x = torch.tensor([ids], dtype=torch.long)
                out = self.model(input_ids=x, use_cache=False)
                lg = out.logits[0]
                return np.asarray(lg.numpy(), dtype=np.float64 if float64 else np.float32)
        finally:
            if float64:
                torch.nn.Module.float(self.model)  # exact: the weights were fp32 values
            for h in hooks:
                h.remove()


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


def provenance(args, model_sha: str, text_sha: str | None, extra: dict) -> dict:
    d = {
        "generator": "tools/reference/make_fixtures.py",
        "schema_version": SCHEMA_VERSION,
        "date_utc": now_utc(),
        "model_file": args.model.name,
        "model_bytes": args.model.stat().st_size,
        "model_sha256": model_sha,
        "python": platform.python_version(),
        "numpy_version": pkg_version("numpy"),
        "platform": platform.platform(),
    }
    if text_sha is not None:
        d["text_file"] = args.text.name
        d["text_bytes"] = args.text.stat().st_size
        d["text_sha256"] = text_sha
    d.update(extra)
    return d


def gguf_token_pieces(model: Path) -> list[str]:
    gguf = need("gguf", "gguf", "reading the vocabulary from the GGUF")
    r = gguf.GGUFReader(str(model))
    f = r.fields["tokenizer.ggml.tokens"]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def make_comparison_tokenizers(model: Path) -> dict:
    """Tokenizers used only to cross-check llama.cpp's ids: name -> (description, encode)."""
    import copy

    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)
    out = {
        "transformers_gguf": (
            "transformers AutoTokenizer.from_pretrained(dir, gguf_file=...) as converted from the GGUF "
            "metadata, .encode(text, add_special_tokens=False). Its pre-tokenizer is plain "
            "ByteLevel(use_regex=True): it lacks SmolLM2's digit splitter, and it still parses "
            "special tokens such as <|endoftext|>",
            lambda s: list(hf_tok.encode(s, add_special_tokens=False)),
        )
    }
    from tokenizers import pre_tokenizers

    bt = copy.deepcopy(hf_tok.backend_tokenizer)
    bt.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    bt.encode_special_tokens = True  # the equivalent of llama.cpp's special=False
    out["hf_tokenizers_smollm2"] = (
        "HF tokenizers (Rust) with the GGUF vocabulary and merges and SmolLM2's own pre-tokenizer "
        "Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)], "
        "encode_special_tokens=True, add_special_tokens=False",
        lambda s: list(bt.encode(s, add_special_tokens=False).ids),
    )
    return out


def make_tokens(args, llama: LlamaCppBackend, wt_text: str, pieces, cmp_toks: dict, common) -> list[int]:
    log("tokens: tokenizing the fixed paragraph and the edge cases with llama.cpp")
    out_path = args.out / "tokens.json"

    def entry(s: str) -> dict:
        ids = llama.tokenize(s)
        e = {
            "text": s,
            "utf8_hex": s.encode("utf-8").hex(),
            "ids": ids,
            "pieces": [pieces[i] for i in ids],
            "detokenize_roundtrip": llama.detokenize(ids) == s.encode("utf-8"),
        }
        for name, (_, enc) in cmp_toks.items():
            other = enc(s)
            e[f"{name}_agrees"] = other == ids
            if other != ids:
                e[f"{name}_ids"] = other
        return e

    para = entry(PARAGRAPH)
    log(f"  paragraph: {len(PARAGRAPH)} chars -> {len(para['ids'])} tokens")
    edges = [entry(s) for s in EDGE_CASES]

    log(f"tokens: tokenizing the whole WikiText-2 file ({len(wt_text):,} chars) as one string")
    t0 = time.perf_counter()
    wt_ids = llama.tokenize(wt_text)
    t_tok = time.perf_counter() - t0
    log(f"  {len(wt_ids):,} tokens in {t_tok:.1f} s; sha256 {ids_sha256(wt_ids)}")
    wt = {
        "protocol": "DESIGN.md §10: file read as bytes, decoded as UTF-8, line ends kept (CRLF), "
        "tokenized as one string, no BOS, no special-token parsing",
        "n_tokens": len(wt_ids),
        "ids_sha256": ids_sha256(wt_ids),
        "ids_hash_format": HASH_FORMAT,
        "first_n": N_WIKITEXT_PREFIX,
        "first_ids": wt_ids[:N_WIKITEXT_PREFIX],
        "llama_cpp_tokenize_seconds": round(t_tok, 3),
    }
    for name, (_, enc) in cmp_toks.items():
        t0 = time.perf_counter()
        other = enc(wt_text)
        t_o = time.perf_counter() - t0
        first_diff = next(
            (i for i, (a, b) in enumerate(zip(other, wt_ids)) if a != b),
            None if len(other) == len(wt_ids) else min(len(other), len(wt_ids)),
        )
        wt[name] = {
            "n_tokens": len(other),
            "ids_sha256": ids_sha256(other),
            "agrees": other == wt_ids,
            "first_difference_at": first_diff,
            "seconds": round(t_o, 3),
        }
        log(f"  {name}: {len(other):,} tokens, agrees with llama.cpp: {other == wt_ids}")

    extra = {
        "tokenizer": "llama.cpp (llama_tokenize via llama-cpp-python Llama.tokenize)",
        "tokenize_call": "llm.tokenize(text.encode('utf-8'), add_bos=False, special=False)",
        "llama_cpp_python_version": llama.info["llama_cpp_python_version"],
        "pieces_note": "pieces are the vocabulary strings (tokenizer.ggml.tokens, byte-level "
        "BPE alphabet: 'Ġ' = space, 'Ċ' = \\n, 'č' = \\r, 'ĉ' = \\t)",
    }
    if cmp_toks:
        extra["comparison_tokenizers"] = {
            name: desc for name, (desc, _) in cmp_toks.items()
        }
        extra["comparison_versions"] = {
            "transformers": pkg_version("transformers"),
            "tokenizers": pkg_version("tokenizers"),
        }
        extra["comparison_note"] = (
            "the comparison tokenizers are cross-checks only; the reference ids are llama.cpp's"
        )
    doc = {
        "provenance": provenance(args, common["model_sha"], common["text_sha"], extra),
        "paragraph": para,
        "edge_cases": edges,
        "wikitext2": wt,
    }
    write_json(out_path, doc)
    return wt_ids


def make_logits(args, backends: dict, common) -> None:
    import numpy as np

    out_path = args.out / "logits.json"
    doc = load_json(out_path) if args.merge else {}
    ids = common["prompt_ids"]
    n = len(ids)
    positions = sorted(set(p for p in (0, 1, 7, 15, n - 1) if 0 <= p < n))
    log(f"logits: prompt of {n} tokens, positions {positions}")
    full = {}
    impls = doc.get("implementations", {})
    for key, be in backends.items():
        t0 = time.perf_counter()
        lg = be.logits(ids)
        dt = time.perf_counter() - t0
        full[key] = lg
        lp = log_softmax64(lg)
        impls[key] = {
            **be.info,
            "n_vocab": int(lg.shape[1]),
            "eval_seconds": round(dt, 3),
            "positions": {
                str(p): {
                    **logit_stats(lg[p], LOGIT_TOPK),
                    "next_token": ids[p + 1] if p + 1 < n else None,
                    "next_token_logprob": float(lp[p, ids[p + 1]]) if p + 1 < n else None,
                }
                for p in positions
            },
            "prompt_mean_nll": float(
                -np.mean([lp[t, ids[t + 1]] for t in range(n - 1)])
            ),
        }
        top = impls[key]["positions"][str(n - 1)]["top"][0]
        log(f"  {key}: {dt:.2f} s; argmax at last position = {top[0]} "
            f"({common['pieces'][top[0]]!r}, {top[1]:.4f})")
    if args.llama_variants and "llama.cpp" in backends:
        log("  llama.cpp again, one token at a time through the cache (for the tolerance study only)")
        full["llama.cpp-tokenwise"] = backends["llama.cpp"].logits(ids, step=1)
        log("  llama.cpp again with its default f16 KV cache (for the tolerance study only)")
        be16 = LlamaCppBackend(args.model, backends["llama.cpp"].n_ctx, args.threads, kv_type="f16")
        full["llama.cpp-f16kv"] = be16.logits(ids)
        del be16
    if "transformers" in backends:
        hfb = backends["transformers"]
        log("  transformers again in float64 (fp32 rounding noise, for the tolerance study only)")
        full["transformers-fp64"] = hfb.logits(ids, float64=True)
        if args.q8_act_study:
            log("  transformers again with llama.cpp-style 8-bit activation quantization emulated "
                "(blocks of 32, scale amax/127 rounded to fp16) at every Linear input")
            full["transformers-q8act"] = hfb.logits(ids, q8_act=True)
    variants = {
        "llama.cpp-tokenwise": "llama.cpp, same instance, prompt fed one token per eval() "
        "(matrix-vector kernels instead of the batched path)",
        "llama.cpp-f16kv": "llama.cpp with its default f16 KV cache (the fixture uses f32)",
        "transformers-fp64": "transformers with the dequantized weights cast to float64",
        "transformers-q8act": "transformers fp32 with every nn.Linear input rounded like "
        "llama.cpp's Q8 activation blocks (emulation of the rounding only, not of llama.cpp's "
        "integer dot products)",
    }
    comps = doc.get("comparisons", {})
    keys = list(full)
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            c = compare_logits(full[keys[i]], full[keys[j]])
            comps[f"{keys[i]} vs {keys[j]}"] = c
            log(f"  {keys[i]} vs {keys[j]}: max|dlogit| {c['max_abs_logit_diff']:.4g}, "
                f"max|dlogprob| {c['max_abs_logprob_diff']:.4g}, top1 {c['top1_agreement']:.3f}")
    doc = {
        "provenance": provenance(
            args, common["model_sha"], None,
            {"note": "logits are raw (pre-softmax) float32 values; ids include no BOS"},
        ),
        "prompt": LOGIT_PROMPT,
        "prompt_ids": ids,
        "prompt_tokenizer": "llama.cpp, add_bos=False, special=False",
        "positions": positions,
        "topk": LOGIT_TOPK,
        "stats_note": "mean/std/max/logsumexp are over the full vocabulary row, computed in float64 "
        "from the float32 logits; std is the population std (ddof=0)",
        "implementations": impls,
        "comparisons": comps,
        "comparison_variants": {k: v for k, v in variants.items() if k in full},
        "comparison_note": "statistics over all prompt positions and the full vocabulary; "
        "logprob = log-softmax in float64; KL(first || second) in nats",
    }
    write_json(out_path, doc)


def make_ppl(args, backends: dict, wt_ids: list[int], common) -> None:
    import math

    out_path = args.out / "ppl.json"
    doc = load_json(out_path) if args.merge else {}
    ctx = args.ppl_ctx
    ns = sorted(set(args.ppl_chunks))
    n_max = max(ns)
    n_avail = len(wt_ids) // ctx
    if n_max > n_avail:
        sys.exit(f"error: {n_max} chunks of {ctx} requested, file has only {n_avail}")
    impls = doc.get("implementations", {})
    per_chunk_all = {}
    for key, be in backends.items():
        log(f"ppl: {key}: {n_max} chunks of ctx={ctx}")
        nll_sums, per_chunk, secs = [], [], []
        for c in range(n_max):
            chunk = wt_ids[c * ctx : (c + 1) * ctx]
            t0 = time.perf_counter()
            lg = be.logits(chunk)
            t1 = time.perf_counter()
            s, cnt = chunk_nll(lg, chunk)
            nll_sums.append(s)
            per_chunk.append(s / cnt)
            secs.append(t1 - t0)
            run = sum(nll_sums) / ((ctx - 1) * len(nll_sums))
            log(f"  chunk {c:3d}: mean NLL {s / cnt:.6f}  running PPL {math.exp(run):.4f}  "
                f"({t1 - t0:.1f} s eval)")
        per_chunk_all[key] = per_chunk
        if key == "transformers" and args.fp64_chunks > 0:
            k = min(args.fp64_chunks, n_max)
            log(f"ppl: transformers in float64 for the first {k} chunk(s) (tolerance study)")
            fp64 = []
            for c in range(k):
                chunk = wt_ids[c * ctx : (c + 1) * ctx]
                t0 = time.perf_counter()
                s64, cnt = chunk_nll(be.logits(chunk, float64=True), chunk)
                fp64.append(s64 / cnt)
                log(f"  chunk {c:3d}: mean NLL {s64 / cnt:.9f} (fp32 {per_chunk[c]:.9f}, "
                    f"{time.perf_counter() - t0:.1f} s)")
            per_chunk_all["transformers-fp64"] = fp64
        results = {}
        for n in ns:
            mean = sum(nll_sums[:n]) / ((ctx - 1) * n)
            results[str(n)] = {"n_chunks": n, "mean_nll": mean, "ppl": math.exp(mean)}
        impls[key] = {
            **be.info,
            "results": results,
            "per_chunk_mean_nll": per_chunk,
            "eval_seconds_total": round(sum(secs), 2),
            "eval_seconds_per_chunk_mean": round(sum(secs) / len(secs), 3),
        }
    comps = doc.get("comparisons", {})
    keys = list(per_chunk_all)
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            a, b = per_chunk_all[keys[i]], per_chunk_all[keys[j]]
            d = [x - y for x, y in zip(a, b)]
            c = {
                "n_chunks_compared": len(d),
                "per_chunk_mean_nll_diff": d,
                "max_abs_per_chunk_mean_nll_diff": max(abs(x) for x in d),
            }
            if keys[i] in impls and keys[j] in impls:
                c["ppl_ratio"] = {
                    n: impls[keys[i]]["results"][n]["ppl"] / impls[keys[j]]["results"][n]["ppl"]
                    for n in impls[keys[i]]["results"]
                    if n in impls[keys[j]]["results"]
                }
            comps[f"{keys[i]} vs {keys[j]}"] = c
    doc = {
        "provenance": provenance(args, common["model_sha"], common["text_sha"], {}),
        "protocol": (
            "DESIGN.md §10: the whole file tokenized as one string (llama.cpp tokenizer, no BOS, no "
            "special-token parsing); non-overlapping chunks of ctx tokens starting at token 0; each "
            "chunk evaluated from an empty cache; NLL of chunk[t+1] from the logits at t for "
            "t = 0..ctx-2 (ctx-1 predictions per chunk), log-softmax in float64; "
            "PPL = exp(mean NLL over all predictions of the first N chunks)"
        ),
        "ctx": ctx,
        "n_chunks": ns,
        "wikitext2_n_tokens": len(wt_ids),
        "wikitext2_ids_sha256": ids_sha256(wt_ids),
        "ids_hash_format": HASH_FORMAT,
        "implementations": impls,
        "comparisons": comps,
        "comparison_note": "per-chunk mean NLL differences in nats (first minus second); "
        "transformers-fp64 = the transformers model cast to float64, first chunks only",
    }
    write_json(out_path, doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "reference")
    ap.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="wikitext-2-raw-test.txt")
    ap.add_argument("--backends", default="llama,hf",
                    help="comma list of llama (llama-cpp-python) and hf (transformers); default both")
    ap.add_argument("--fixtures", default="tokens,logits,ppl", help="which fixtures to write")
    ap.add_argument("--ppl-ctx", type=int, default=1024)
    ap.add_argument("--ppl-chunks", type=lambda s: [int(x) for x in s.split(",")], default=[4, 16],
                    help="comma list of chunk counts N to report (evaluates max(N) chunks)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-llama-variants", dest="llama_variants", action="store_false",
                    help="skip the extra llama.cpp runs (token-by-token, f16 KV cache) in logits.json")
    ap.add_argument("--fp64-chunks", type=int, default=1,
                    help="also evaluate the first K PPL chunks with transformers in float64 (0: skip)")
    ap.add_argument("--no-q8-act-study", dest="q8_act_study", action="store_false",
                    help="skip the transformers run with emulated 8-bit activations in logits.json")
    ap.add_argument("--no-merge", dest="merge", action="store_false",
                    help="do not keep other backends' results already in logits.json / ppl.json")
    args = ap.parse_args()

    np = need("numpy", "numpy", "everything")
    need("gguf", "gguf", "reading the GGUF vocabulary")
    del np
    backends_req = [b.strip() for b in args.backends.split(",") if b.strip()]
    fixtures = {f.strip() for f in args.fixtures.split(",") if f.strip()}
    for b in backends_req:
        if b not in ("llama", "hf"):
            sys.exit(f"error: unknown backend {b!r} (use llama, hf)")
    # check every package before doing any work; the token ids (tokens.json and the ids fed to
    # every backend) always come from llama.cpp, so llama-cpp-python is always needed
    need("llama_cpp", "llama-cpp-python", "tokenization (llama.cpp's tokenizer is the reference)")
    if "hf" in backends_req:
        need("torch", "torch", "the transformers backend")
        need("transformers", "transformers", "the transformers backend")
        need("accelerate", "accelerate", "transformers' GGUF loader (it refuses to load without it)")
    if not args.model.is_file():
        sys.exit(f"error: model not found: {args.model}")
    if not args.text.is_file():
        sys.exit(f"error: text not found: {args.text}")

    log(f"model {args.model} ({args.model.stat().st_size:,} bytes)")
    model_sha = sha256_file(args.model)
    log(f"  sha256 {model_sha}")
    raw = args.text.read_bytes()
    text_sha = hashlib.sha256(raw).hexdigest()
    wt_text = raw.decode("utf-8")  # no newline normalization: CRLF stays
    log(f"text {args.text} ({len(raw):,} bytes, sha256 {text_sha})")
    pieces = gguf_token_pieces(args.model)
    log(f"vocabulary: {len(pieces)} pieces")

    timings: dict[str, Any] = {}
    llama = LlamaCppBackend(args.model, args.ppl_ctx, args.threads)
    timings["llama.cpp load"] = llama.load_s
    log(f"llama.cpp loaded in {llama.load_s:.2f} s (llama-cpp-python {llama.info['llama_cpp_python_version']})")
    backends: dict[str, Any] = {}
    if "llama" in backends_req:
        backends["llama.cpp"] = llama
    hf = None
    cmp_toks: dict = {}
    common: dict[str, Any] = {"model_sha": model_sha, "text_sha": text_sha, "pieces": pieces}
    if "hf" in backends_req:
        log("loading the GGUF with transformers (dequantizes to fp32; takes a while)")
        hf = TransformersBackend(args.model, args.threads)
        timings["transformers load"] = hf.load_s
        log(f"transformers loaded in {hf.load_s:.1f} s (transformers {hf.info['transformers_version']}, "
            f"torch {hf.info['torch_version']})")
        backends["transformers"] = hf
        common["transformers_version"] = hf.info["transformers_version"]
        try:
            cmp_toks = make_comparison_tokenizers(args.model)
        except Exception as exc:  # only a comparison; never fatal
            log(f"  comparison tokenizers unavailable ({exc}); skipping the tokenizer comparison")

    common["prompt_ids"] = llama.tokenize(LOGIT_PROMPT)
    if "tokens" in fixtures:
        wt_ids = make_tokens(args, llama, wt_text, pieces, cmp_toks, common)
    else:
        wt_ids = llama.tokenize(wt_text)
    if "logits" in fixtures:
        make_logits(args, backends, common)
    if "ppl" in fixtures:
        make_ppl(args, backends, wt_ids, common)
    log("done: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


if __name__ == "__main__":
    main()
