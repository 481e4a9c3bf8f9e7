#!/usr/bin/env python3
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
"""Reads latentkv compressed checkpoints with Hugging Face's `safetensors` package, independently
of the C++ reader, and checks them against docs/FORMAT.md and the values the writer reported.

    read_compressed_checkpoint.py <dir>/expected.json

expected.json (written by tests/io/compressed_checkpoint_python_fixture.cpp next to the files):
  {"files": [{"file": "joint_f32.safetensors", "factor_dtype": "F32", "num_tensors": 18,
              "metadata": {...}, "values": [{"tensor": "layers.0.k.0.up", "index": [i, j],
                                             "value": 0.25}, ...]}, ...]}
For each file: the metadata keys and values, that format / format_version are the v1 ones, that
plan, source_config and dense_layers parse as JSON, that the tensor names are exactly the ones
the plan and dense_layers call for, that every shape (rank on axis 0) and dtype is as specified,
that every value is finite, and that the sampled values match exactly. Needs safetensors and
numpy (scripts/test.sh installs both into a venv in the build directory). BF16 files are not
used: numpy has no bfloat16.
"""

import json
import sys
from pathlib import Path

import numpy as np
import safetensors
from safetensors import safe_open
from safetensors.numpy import load_file

REQUIRED_KEYS = ["format", "format_version", "latentkv_version", "method", "factorizer",
                 "grouping", "plan", "source_config", "dense_layers", "source_model",
                 "created_by"]
CONFIG_KEYS = {"architecture", "num_layers", "d_model", "num_heads", "num_kv_heads", "head_dim",
               "rope_dim", "ffn_dim", "vocab_size", "context_length", "rope_base", "norm_eps",
               "tied_embeddings"}
NUMPY_DTYPE = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def expected_tensors(plan, config, dense, factor_dtype):
    """name -> (dtype, shape), from docs/FORMAT.md."""
    d = config["d_model"]
    h = config["head_dim"]
    s = plan["heads_per_group"]
    g = config["num_heads"] // config["num_kv_heads"]
    max_rank = min(d, s * h)
    out = {}
    for entry in plan["layers"]:
        layer = entry["layer"]
        if layer in dense:
            continue
        for group, r in enumerate(entry["rank_k"]):
            out[f"layers.{layer}.k.{group}.down"] = (factor_dtype, [r, d])
            out[f"layers.{layer}.k.{group}.up"] = (factor_dtype, [r, s * h])
            out[f"layers.{layer}.k.{group}.sigma"] = ("F64", [max_rank])
        for group, r in enumerate(entry["rank_v"]):
            out[f"layers.{layer}.v.{group}.down"] = (factor_dtype, [r, d])
            out[f"layers.{layer}.v.{group}.out"] = (factor_dtype, [r, s * g * d])
            out[f"layers.{layer}.v.{group}.sigma"] = ("F64", [max_rank])
    return out


def check_file(directory, spec):
    path = directory / spec["file"]
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata()
        names = set(f.keys())
        header = {name: (f.get_slice(name).get_dtype(), list(f.get_slice(name).get_shape()))
                  for name in names}

    for key in REQUIRED_KEYS:
        check(key in metadata, f"{path}: __metadata__ has no {key!r}")
    check(metadata["format"] == "latentkv.compressed", f"{path}: format {metadata['format']!r}")
    check(metadata["format_version"] == "1", f"{path}: format_version {metadata['format_version']!r}")
    check(metadata == spec["metadata"], f"{path}: metadata differs from the writer's")

    plan = json.loads(metadata["plan"])
    config = json.loads(metadata["source_config"])
    dense = json.loads(metadata["dense_layers"])
    check(set(config) == CONFIG_KEYS, f"{path}: source_config keys {sorted(config)}")
    check(isinstance(dense, list) and all(isinstance(l, int) for l in dense),
          f"{path}: dense_layers {dense!r}")
    check(len(plan["layers"]) == config["num_layers"], f"{path}: plan and config layer counts")
    check(plan["num_kv_heads"] == config["num_kv_heads"] and plan["head_dim"] == config["head_dim"],
          f"{path}: plan and config head layout")
    groups = plan["num_kv_heads"] // plan["heads_per_group"]

    want = expected_tensors(plan, config, set(dense), spec["factor_dtype"])
    check(names == set(want), f"{path}: tensors differ: missing {sorted(set(want) - names)}, "
                              f"unexpected {sorted(names - set(want))}")
    check(len(names) == spec["num_tensors"], f"{path}: {len(names)} tensors")
    for name, (dtype, shape) in want.items():
        check(header[name] == (dtype, shape),
              f"{path}: tensor {name!r} is {header[name]}, expected {(dtype, shape)}")

    # The ranks of the plan are axis 0 of the factors.
    for entry in plan["layers"]:
        layer = entry["layer"]
        if layer in dense:
            continue
        check(len(entry["rank_k"]) == groups and len(entry["rank_v"]) == groups,
              f"{path}: layer {layer} group count")
        for group in range(groups):
            for side, part in (("k", "down"), ("k", "up"), ("v", "down"), ("v", "out")):
                rank = entry["rank_" + side][group]
                got = header[f"layers.{layer}.{side}.{group}.{part}"][1][0]
                check(got == rank, f"{path}: layer {layer} {side}.{group}.{part} has {got} rows, "
                                   f"rank {rank}")

    arrays = load_file(str(path))
    for name, (dtype, shape) in want.items():
        a = arrays[name]
        check(a.dtype == NUMPY_DTYPE[dtype] and list(a.shape) == shape,
              f"{path}: {name} loads as {a.dtype} {a.shape}")
        check(bool(np.isfinite(a).all()), f"{path}: {name} has non-finite values")
    for v in spec["values"]:
        got = float(arrays[v["tensor"]][tuple(v["index"])])
        check(got == v["value"],
              f"{path}: {v['tensor']}{v['index']} = {got!r}, expected {v['value']!r}")

    # An engine's first step (docs/FORMAT.md): c = x·A_k = x·downᵀ, keys = c·B_k.
    entry = next(e for e in plan["layers"] if e["layer"] not in dense)
    layer = entry["layer"]
    x = np.ones((2, config["d_model"]), dtype=np.float32)
    c = x @ arrays[f"layers.{layer}.k.0.down"].astype(np.float32).T
    keys = c @ arrays[f"layers.{layer}.k.0.up"].astype(np.float32)
    check(keys.shape == (2, plan["heads_per_group"] * config["head_dim"]), f"{path}: key shape")
    return len(names), len(spec["values"])


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    expected_path = Path(sys.argv[1])
    expected = json.loads(expected_path.read_text())
    try:
        for spec in expected["files"]:
            tensors, values = check_file(expected_path.parent, spec)
            print(f"{spec['file']}: {tensors} tensors ({spec['factor_dtype']} factors, F64 sigma), "
                  f"{len(spec['metadata'])} metadata keys, {values} sampled values: OK")
    except CheckFailed as e:
        print(f"read_compressed_checkpoint.py: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"read_compressed_checkpoint.py: {len(expected['files'])} files read with safetensors "
          f"{safetensors.__version__}, numpy {np.__version__}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
