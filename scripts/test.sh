#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# The README's test command, and what CI runs (.ci/run). On a fresh Debian machine it:
#   1. installs the Debian packages that are missing (only those; LATENTKV_TEST_PACKAGES of
#      scripts/lib/packages.sh, a superset of the main command's list),
#   2. configures (Ninja, -march=native: CI builds and runs on the same machine) and builds
#      everything with -Wall -Wextra -Werror, then prints the costliest build steps
#      (scripts/ci-costs.sh; CI's time budget is in the README) (CUDA sources through nvcc
#      when nvcc exists; tests that need a GPU skip without one), after making a Python venv in
#      the build directory with safetensors + numpy (pip, once) for the compressed-checkpoint
#      cross-check (tests/io/read_compressed_checkpoint.py),
#   3. checks clang-format on every tracked C++/CUDA file,
#   4. fetches the real model (scripts/fetch-model.sh) for the `model` tests, when that script exists,
#   5. runs ctest (all labels; set LATENTKV_CTEST_ARGS to filter, e.g. "-L cpu") and prints the
#      slowest tests,
#   6. runs a short fuzzing smoke of the file parsers (scripts/fuzz.sh, 15 s per target; clang +
#      libFuzzer; LATENTKV_FUZZ_SECONDS changes the time, 0 skips it).
# Environment: LATENTKV_BUILD_DIR (default build/test), LATENTKV_JOBS (default nproc).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=lib/packages.sh
source scripts/lib/packages.sh
latentkv_install_missing_packages "${LATENTKV_TEST_PACKAGES[@]}" || exit 1

# nvcc is usually outside PATH on a fresh machine with the toolkit.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

build_dir=${LATENTKV_BUILD_DIR:-build/test}
jobs=${LATENTKV_JOBS:-$(nproc)}

echo "== clang-format"
files=$(git ls-files '*.hpp' '*.cpp' '*.cuh' '*.cu' '*.h' '*.cc' 2>/dev/null || true)
if [ -n "$files" ]; then
  # shellcheck disable=SC2086
  clang-format --dry-run -Werror $files
fi

echo "== python venv ($build_dir/venv: safetensors + numpy, for the compressed-checkpoint check)"
mkdir -p "$build_dir"
[ -x "$build_dir/venv/bin/python" ] || python3 -m venv "$build_dir/venv"
"$build_dir/venv/bin/python" -c "import safetensors, numpy" 2>/dev/null ||
  "$build_dir/venv/bin/pip" install --quiet safetensors numpy
venv_python="$(cd "$build_dir/venv/bin" && pwd)/python"

echo "== configure ($build_dir)"
generator=()  # Ninja for a new build folder; an existing one keeps the generator it was made with
[ -f "$build_dir/CMakeCache.txt" ] || generator=(-G Ninja)
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DLATENTKV_WERROR=ON \
  -DLATENTKV_BUILD_TESTS=ON -DLATENTKV_BUILD_BENCHMARKS=ON -DLATENTKV_BUILD_EXAMPLES=ON \
  -DLATENTKV_NATIVE_ARCH=ON -DLATENTKV_BENCH_OPTIMIZE=-O1 \
  -DLATENTKV_PYTHON="$venv_python"

echo "== build"
build_start=$SECONDS
cmake --build "$build_dir" -j"$jobs"
echo "== build took $((SECONDS - build_start)) s; the costliest steps (scripts/ci-costs.sh):"
scripts/ci-costs.sh "$build_dir" 8 || true
if command -v nvcc >/dev/null 2>&1; then
  echo "== nvcc: compiling the CUDA sources"
  cmake --build "$build_dir" -j"$jobs" --target latentkv_cuda_header_check
fi

if [ -x scripts/fetch-model.sh ]; then
  echo "== model"
  scripts/fetch-model.sh
fi

echo "== ctest"
# shellcheck disable=SC2086
ctest --test-dir "$build_dir" -j"$jobs" --output-on-failure ${LATENTKV_CTEST_ARGS:-}
scripts/ci-costs.sh "$build_dir" 8 | sed -n '/^slowest tests/,$p' || true

fuzz_seconds=${LATENTKV_FUZZ_SECONDS:-15}
if ((fuzz_seconds > 0)); then
  echo "== fuzz smoke (${fuzz_seconds} s per target)"
  scripts/fuzz.sh "$fuzz_seconds"
fi
