#!/usr/bin/env python3
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
"""Writes the committed seed corpora of the fuzzers (standard library only; run from anywhere):

    python3 tests/fuzz/make_seeds.py

  seeds/safetensors_reader/  small valid safetensors files: every float dtype, metadata, scalar,
                             empty and sub-byte tensors, ignored fields, escaped names, padding
  seeds/gguf_reader/         small valid GGUF v2/v3 files: every metadata value type, nested
                             arrays, general.alignment, F32 / F16 / BF16 / Q4_0 / Q4_1 / Q5_0 /
                             Q5_1 / Q8_0 / Q6_K tensors (named .bin: the repository ignores *.gguf)
  seeds/hf_config/           LLaMA config.json texts
scripts/fuzz.sh adds the test fixtures (tests/data/safetensors, tests/data/gguf) to these. Files are
deterministic, so rerunning the script leaves git clean.
"""

import json
import shutil
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"


# ---- safetensors ---------------------------------------------------------------------------------


def safetensors_file(entries, metadata=None, pad=True, raw_header=None) -> bytes:
    """entries: [(name, dtype, shape, data bytes)]; data laid out in order, no gaps."""
    header, data, offset = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, payload in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(payload)]}
        data += payload
        offset += len(payload)
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":"))
    blob = text.encode()
    if pad:
        blob += b" " * ((8 - len(blob) % 8) % 8)
    return struct.pack("<Q", len(blob)) + blob + data


def f32(*values) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def f16(*values) -> bytes:
    return struct.pack(f"<{len(values)}e", *values)


def bf16(*values) -> bytes:
    return b"".join(struct.pack("<f", v)[2:] for v in values)  # truncation: exact for these values


def safetensors_seeds():
    yield "empty.safetensors", safetensors_file([])
    yield "floats.safetensors", safetensors_file(
        [("a", "F32", [2, 3], f32(1, 2, 3, -4, 0.5, 1e-3)),
         ("b", "F16", [4], f16(1, -2, 65504, 0.25)),
         ("c", "BF16", [3, 1], bf16(1.0, -0.5, 256.0))],
        metadata={"format": "pt", "note": "seed"})
    yield "shapes.safetensors", safetensors_file(
        [("cube", "F32", [2, 1, 2], f32(1, 2, 3, 4)), ("scalar", "F32", [], f32(7)),
         ("empty", "F16", [0, 5], b""), ("cols0", "BF16", [3, 0], b""),
         ("nibbles", "F4", [4], b"\x12\x34"), ("six", "F6_E2M3", [4], b"\x01\x02\x03")])
    yield "ints.safetensors", safetensors_file(
        [("i64", "I64", [1], struct.pack("<q", -5)), ("u8", "U8", [3], b"\x00\x7f\xff"),
         ("bool", "BOOL", [2], b"\x01\x00"), ("c64", "C64", [1], f32(1, 2))],
        metadata={})
    yield "unpadded.safetensors", safetensors_file([("w", "F32", [1, 2], f32(3, 4))], pad=False)
    header = ('{ "__metadata__" : null , "w\\u00e9\\"" : { "dtype" : "F16" , "extra" : '
              '[ { "x" : [ 1 , null ] } ] , "shape" : [ 2 ] , "data_offsets" : [ 0 , 4 ] } }')
    yield "spacing.safetensors", safetensors_file([], raw_header=header) + f16(1, 2)


# ---- GGUF ----------------------------------------------------------------------------------------

U8, I8, U16, I16, U32, I32, F32_, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FORMATS = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32_: "f", BOOL: "?",
                  U64: "Q", I64: "q", F64: "d"}


def gguf_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_value(kind, value) -> bytes:
    if kind == STRING:
        return gguf_string(value)
    if kind == ARRAY:
        element_kind, elements = value
        return (struct.pack("<IQ", element_kind, len(elements))
                + b"".join(gguf_value(element_kind, e) for e in elements))
    return struct.pack("<" + SCALAR_FORMATS[kind], value)


def gguf_file(kvs, tensors, version=3, alignment=32) -> bytes:
    """kvs: [(key, kind, value)]; tensors: [(name, ne, ggml type, data bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, kind, value in kvs:
        out += gguf_string(key) + struct.pack("<I", kind) + gguf_value(kind, value)
    offset, offsets = 0, []
    for _, _, _, data in tensors:
        offset = (offset + alignment - 1) // alignment * alignment
        offsets.append(offset)
        offset += len(data)
    for (name, ne, ggml_type, _), off in zip(tensors, offsets):
        out += gguf_string(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        out += struct.pack("<IQ", ggml_type, off)
    if tensors:
        out += b"\0" * ((alignment - len(out) % alignment) % alignment)
    start = len(out)
    for (_, _, _, data), off in zip(tensors, offsets):
        out += b"\0" * (start + off - len(out)) + data
    return out


def gguf_seeds():
    kvs = [("general.architecture", STRING, "llama"), ("t.u8", U8, 200), ("t.i8", I8, -100),
           ("t.u16", U16, 60000), ("t.i16", I16, -30000), ("t.u32", U32, 4000000000),
           ("t.i32", I32, -2000000000), ("t.f32", F32_, 1.5), ("t.bool", BOOL, True),
           ("t.u64", U64, 2**63 + 5), ("t.i64", I64, -(2**62)), ("t.f64", F64, 0.1),
           ("t.strings", ARRAY, (STRING, ["a", "", "bc"])),
           ("t.nested", ARRAY, (ARRAY, [(I16, [1, 2]), (I16, [3])])),
           ("t.empty", ARRAY, (F32_, []))]
    yield "metadata_v3.bin", gguf_file(kvs, [])
    yield "metadata_v2.bin", gguf_file(kvs[:4], [], version=2)
    block_q4_0 = f16(0.5) + bytes(range(16))
    block_q4_1 = f16(0.25) + f16(-1.0) + bytes(range(16, 32))
    block_q5_0 = f16(0.5) + struct.pack("<I", 0xA5A5A5A5) + bytes(range(16))
    block_q5_1 = f16(0.5) + f16(1.0) + struct.pack("<I", 0x0F0F0F0F) + bytes(range(16))
    block_q8_0 = f16(0.125) + bytes((i * 7) & 0xFF for i in range(32))
    tensors = [("f32", [4, 2], 0, f32(*range(8))), ("f16", [3], 1, f16(1, 2, 3)),
               ("bf16", [2], 30, bf16(1.0, -2.0)), ("q4_0", [32], 2, block_q4_0),
               ("q4_1", [32, 1], 3, block_q4_1), ("q5_0", [32], 6, block_q5_0),
               ("q5_1", [32], 7, block_q5_1), ("q8_0", [32], 8, block_q8_0),
               ("q6_k", [256], 14, bytes(210)), ("empty", [0, 4], 0, b"")]
    yield "tensors.bin", gguf_file([("general.architecture", STRING, "llama")], tensors)
    yield "aligned.bin", gguf_file([("general.alignment", U32, 64)], tensors[:3], alignment=64)


# ---- config.json ---------------------------------------------------------------------------------


def config_seeds():
    smol = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "hidden_act": "silu",
            "hidden_size": 576, "intermediate_size": 1536, "max_position_embeddings": 8192,
            "mlp_bias": False, "model_type": "llama", "num_attention_heads": 9,
            "num_hidden_layers": 30, "num_key_value_heads": 3, "rms_norm_eps": 1e-05,
            "rope_scaling": None, "rope_theta": 100000, "tie_word_embeddings": True,
            "torch_dtype": "bfloat16", "vocab_size": 49152}
    yield "smollm2.json", json.dumps(smol, indent=2).encode()
    minimal = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
               "intermediate_size": 96, "vocab_size": 100, "head_dim": None}
    yield "minimal.json", json.dumps(minimal).encode()
    yield "nested.json", b'{"a": {"b": [{"c": 1}, [2, {"d": null}]]}, "e": "\\u00e9"}'


def main() -> None:
    for target, seeds in [("safetensors_reader", safetensors_seeds()), ("gguf_reader", gguf_seeds()),
                          ("hf_config", config_seeds())]:
        directory = SEEDS / target
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        for name, blob in seeds:
            (directory / name).write_bytes(blob)
        print(f"{directory.relative_to(HERE)}: {len(list(directory.iterdir()))} seeds")


if __name__ == "__main__":
    main()
