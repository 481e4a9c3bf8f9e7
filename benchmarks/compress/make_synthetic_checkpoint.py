#!/usr/bin/env python3
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
"""Writes a synthetic Hugging Face LLaMA checkpoint for the compressor's peak-memory benchmark.

Random Gaussian weights (seeded) in F16, attention projections only (plus the embedding and norms
HfModelDir validates): the compressor reads W_k, W_v, W_o and nothing else. Shapes default to
LLaMA-3-8B's attention (d 4096, 32 heads, 8 KV heads of 128). The tensors are written one at a
time, so the generator itself needs one tensor of memory, not the file. Not a model: only for
measuring memory and time, never quality.

  make_synthetic_checkpoint.py OUT_DIR [--layers 48] [--d-model 4096] [--heads 32] [--kv-heads 8]
                               [--head-dim 128] [--vocab 512] [--seed 0]
"""
import argparse
import json
import os
import struct

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=48)
    p.add_argument("--d-model", type=int, default=4096)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--ffn", type=int, default=14336)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    d, hq, hkv, h = a.d_model, a.heads, a.kv_heads, a.head_dim
    os.makedirs(a.out, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": d,
        "intermediate_size": a.ffn, "num_hidden_layers": a.layers, "num_attention_heads": hq,
        "num_key_value_heads": hkv, "head_dim": h, "vocab_size": a.vocab, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "tie_word_embeddings": True, "max_position_embeddings": 8192,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    tensors = [("model.embed_tokens.weight", (a.vocab, d)), ("model.norm.weight", (d,))]
    for l in range(a.layers):
        pre = f"model.layers.{l}."
        tensors += [(pre + "input_layernorm.weight", (d,)),
                    (pre + "post_attention_layernorm.weight", (d,)),
                    (pre + "self_attn.q_proj.weight", (hq * h, d)),
                    (pre + "self_attn.k_proj.weight", (hkv * h, d)),
                    (pre + "self_attn.v_proj.weight", (hkv * h, d)),
                    (pre + "self_attn.o_proj.weight", (d, hq * h))]
    header = {}
    offset = 0
    for name, shape in tensors:
        size = int(np.prod(shape)) * 2
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    rng = np.random.default_rng(a.seed)
    path = os.path.join(a.out, "model.safetensors")
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text.encode())
        for name, shape in tensors:
            if len(shape) == 1:
                data = np.ones(shape, dtype=np.float16)
            else:
                data = (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[1])).astype(np.float16)
            data.tofile(f)
    os.replace(path + ".tmp", path)
    print(f"{path}: {a.layers} layers, {os.path.getsize(path) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
