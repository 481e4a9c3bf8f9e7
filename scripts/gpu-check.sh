#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# What a GPU machine checks (issue 10), in one command and under 8 minutes on an H100/H200:
#   1. configures and builds only what the GPU needs: the CUDA tests (cuda_tests: the kernels,
#      the layer, the cuSOLVER factorizer) and the CUDA benchmark (latent_attention_cuda_bench), for the
#      GPU's own architecture (nvidia-smi; sm_90 when none is visible); no Google Benchmark needed;
#   2. runs the `cuda` ctest label (kernels and the layer against the CPU kernel; the cuSOLVER
#      factorizer against Eigen);
#   3. runs the benchmark and prints one table (route 1 / route 2 / dense decode time, GB/s
#      against the copy kernel, SmolLM2-135M and LLaMA-3-8B shapes, budgets 0.5 and 0.25),
#      also written to benchmarks/cuda/results-<device>.md for committing.
# Options: --build-only stops after step 1 (what a machine without a GPU can check).
# Environment: LATENTKV_GPU_BUILD_DIR (default build/gpu), LATENTKV_JOBS (default nproc).
# Exit status: 0 all passed; 3 no GPU visible (after building); else the failing step's status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_only=0
for arg in "$@"; do
  case "$arg" in
    --build-only) build_only=1 ;;
    *) echo "gpu-check: unknown argument $arg (expected --build-only)" >&2; exit 1 ;;
  esac
done

if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
if ! command -v nvcc >/dev/null 2>&1; then
  echo "gpu-check: nvcc not found (install the CUDA Toolkit or put it on PATH)" >&2
  exit 1
fi
if command -v dpkg-query >/dev/null 2>&1; then
  # shellcheck source=lib/packages.sh
  source scripts/lib/packages.sh
  latentkv_install_missing_packages cmake g++ libeigen3-dev libgtest-dev libgmock-dev \
    nlohmann-json3-dev
fi

has_gpu=0
arch=90
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  has_gpu=1
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' .')
  [ -n "$cap" ] && arch=$cap
fi

build_dir=${LATENTKV_GPU_BUILD_DIR:-build/gpu}
jobs=${LATENTKV_JOBS:-$(nproc)}
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
start=$SECONDS

echo "== configure ($build_dir, sm_$arch)"
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DLATENTKV_WERROR=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DLATENTKV_BUILD_TESTS=ON -DLATENTKV_BUILD_BENCHMARKS=ON \
  -DLATENTKV_TEST_OPTIMIZE= \
  -DLATENTKV_BUILD_CPU_BENCHMARKS=OFF -DLATENTKV_BUILD_EXAMPLES=OFF >"$build_dir.configure.log" 2>&1 ||
  { cat "$build_dir.configure.log"; exit 1; }
grep -q "latentkv: CUDA ON" "$build_dir.configure.log" ||
  { echo "gpu-check: CMake did not enable CUDA (see $build_dir.configure.log)" >&2; exit 1; }

echo "== build (CUDA tests + CUDA benchmark, $jobs jobs)"
cmake --build "$build_dir" -j "$jobs" --target cuda_tests \
  latent_attention_cuda_bench
echo "   built in $((SECONDS - start)) s"
if [ "$build_only" = 1 ]; then
  exit 0
fi
if [ "$has_gpu" = 0 ]; then
  echo "gpu-check: no NVIDIA GPU visible (nvidia-smi -L failed): built, nothing run" >&2
  exit 3
fi

echo "== ctest -L cuda"
ctest --test-dir "$build_dir" -L cuda -E CudaHeadersCompileWithNvcc --output-on-failure \
  --timeout 300

echo "== benchmark"
device=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
slug=$(echo "$device" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9\n' '-' | sed 's/-\+/-/g; s/-$//')
mkdir -p benchmarks/cuda
"$build_dir/benchmarks/cuda/latent_attention_cuda_bench" --out "benchmarks/cuda/results-$slug.md"
echo
echo "gpu-check: passed in $((SECONDS - start)) s on $device; table in benchmarks/cuda/results-$slug.md"
