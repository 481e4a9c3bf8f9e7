// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Decode speed of cuda/latent_attention.cuh on real models' shapes, printed as one Markdown table
// (scripts/gpu-check.sh runs it): per model (SmolLM2-135M: 9 query heads, 3 KV heads, h 64;
// LLaMA-3-8B: 32, 8, 128) and budget (1.0 = the dense fp16 cache; 0.5, 0.25 = per-head latents of
// rank budget·h for keys and for values), the time of one layer's decode for a batch of sequences
// of equal length, the cache bytes it reads per call and the achieved bandwidth, against the copy
// kernel's bandwidth (bytes read + written by a 2 GiB device copy). fp16 storage, contiguous
// cache, split-KV chosen by the device planner. Usage:
//   latent_attention_cuda_bench [--batch B] [--context T] [--iterations N] [--out table.md]
// Exits 2 without a CUDA device.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "latentkv/cuda/device_buffer.hpp"
#include "latentkv/cuda/error.hpp"
#include "latentkv/cuda/latent_attention.cuh"

namespace {

using latentkv::LatentDecodeParams;
using latentkv::LatentRoute;
using latentkv::cuda::DeviceBuffer;
using Storage = std::uint16_t;  // fp16

/// data[i] = a pseudo-random value in [-1, 1) (a hash of i and seed), rounded to T.
template <class T>
__global__ void fill_kernel(T* data, std::size_t n, std::uint32_t seed) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    std::uint32_t x = static_cast<std::uint32_t>(i) * 2654435761u ^ seed;
    x ^= x >> 15;
    x *= 2246822519u;
    x ^= x >> 13;
    const float value = static_cast<float>(x & 0xffffffu) / 8388608.0f - 1.0f;
    data[i] = latentkv::latent_from_float<T>(value);
  }
}

template <class T>
DeviceBuffer<T> random_buffer(std::size_t n, std::uint32_t seed) {
  DeviceBuffer<T> buffer(n);
  if (n > 0) fill_kernel<T><<<1024, 256>>>(buffer.data(), n, seed);
  LATENTKV_CUDA_CHECK(cudaGetLastError());
  return buffer;
}

struct Model {
  const char* name;
  std::int64_t num_heads, num_kv_heads, head_dim;
};

struct Row {
  std::string model, kernel;
  double budget;
  std::int64_t batch, context, splits;
  double microseconds, bytes;
};

template <class F>
double time_microseconds(F&& launch, int iterations) {
  for (int i = 0; i < 3; ++i) launch();
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  LATENTKV_CUDA_CHECK(cudaEventCreate(&start));
  LATENTKV_CUDA_CHECK(cudaEventCreate(&stop));
  LATENTKV_CUDA_CHECK(cudaEventRecord(start));
  for (int i = 0; i < iterations; ++i) launch();
  LATENTKV_CUDA_CHECK(cudaEventRecord(stop));
  LATENTKV_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0.0f;
  LATENTKV_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  LATENTKV_CUDA_CHECK(cudaEventDestroy(start));
  LATENTKV_CUDA_CHECK(cudaEventDestroy(stop));
  return 1e3 * static_cast<double>(ms) / iterations;
}

/// One decode of `route` (kProjected with rank h = dense) for the model at ranks (rk, rv).
template <LatentRoute R>
Row run(const Model& m, const char* kernel, double budget, std::int64_t rk, std::int64_t rv,
        std::int64_t batch, std::int64_t context, int iterations) {
  constexpr bool kRoute1 = R == LatentRoute::kRebuildKeys;
  const std::int64_t groups = m.num_kv_heads;  // per-head latents (dense: K, V per KV head)
  const std::int64_t g = m.num_heads / m.num_kv_heads;
  const std::int64_t query_dim = kRoute1 ? m.head_dim : rk;
  const std::size_t rows = static_cast<std::size_t>(batch * context);
  DeviceBuffer<Storage> latent_k = random_buffer<Storage>(rows * groups * rk, 1);
  DeviceBuffer<Storage> latent_v = random_buffer<Storage>(rows * groups * rv, 2);
  DeviceBuffer<float> queries =
      random_buffer<float>(static_cast<std::size_t>(batch * m.num_heads * query_dim), 3);
  DeviceBuffer<float> up_k =
      random_buffer<float>(kRoute1 ? static_cast<std::size_t>(groups * rk * m.head_dim) : 0, 4);
  std::vector<float> rope_host(static_cast<std::size_t>(context * m.head_dim));
  for (std::int64_t t = 0; t < context; ++t) {
    latentkv::rope_table_row(rope_host.data() + t * m.head_dim, t, static_cast<int>(m.head_dim),
                             5e5f);
  }
  DeviceBuffer<float> rope(std::span<const float>(rope_host.data(), rope_host.size()));
  const std::vector<std::int32_t> lens(static_cast<std::size_t>(batch),
                                       static_cast<std::int32_t>(context));
  DeviceBuffer<std::int32_t> seq_lens(std::span<const std::int32_t>(lens.data(), lens.size()));
  DeviceBuffer<float> out(static_cast<std::size_t>(batch * m.num_heads * rv));

  LatentDecodeParams<Storage> p;
  p.queries = queries.data();
  p.latent_k = latent_k.data();
  p.latent_v = latent_v.data();
  p.up_k = kRoute1 ? up_k.data() : nullptr;
  p.rope = kRoute1 ? rope.data() : nullptr;
  p.seq_lens = seq_lens.data();
  p.out = out.data();
  p.ld_queries = m.num_heads * query_dim;
  p.ld_latent_k = groups * rk;
  p.ld_latent_v = groups * rv;
  p.ld_up_k = m.head_dim;
  p.ld_up_k_group = rk * m.head_dim;
  p.ld_rope = m.head_dim;
  p.rope_rows = context;
  p.ld_out = m.num_heads * rv;
  p.seq_stride = context;
  p.batch = batch;
  p.num_groups = groups;
  p.heads_per_group = 1;
  p.group_size = g;
  p.head_dim = m.head_dim;
  p.rope_dim = m.head_dim;
  p.rank_k = rk;
  p.rank_v = rv;
  p.scale = 1.0f / std::sqrt(static_cast<float>(m.head_dim));
  const latentkv::LatentDecodeSplitPlan plan = latentkv::cuda::plan_latent_decode<R>(p, context);
  p.num_splits = plan.num_splits;
  p.tokens_per_split = plan.tokens_per_split;
  const std::int64_t workspace_bytes =
      latentkv::latent_decode_workspace_bytes(batch, m.num_heads, rv, p.num_splits);
  DeviceBuffer<float> workspace(static_cast<std::size_t>(workspace_bytes / 4));
  p.workspace = workspace.data();
  p.workspace_bytes = workspace_bytes;
  latentkv::cuda::latent_decode<R>(p, {std::span<const std::int32_t>(lens), {}});  // validates
  LATENTKV_CUDA_CHECK(cudaDeviceSynchronize());
  Row row{m.name, kernel, budget, batch, context, p.num_splits, 0.0, 0.0};
  row.microseconds = time_microseconds(
      [&] { LATENTKV_CUDA_CHECK(latentkv::cuda::launch_latent_decode<R>(p)); }, iterations);
  row.bytes = static_cast<double>(rows) * static_cast<double>(groups * (rk + rv)) * sizeof(Storage);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t batch = 16;
  std::int64_t context = 16384;
  int iterations = 20;
  std::string out_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--batch")
      batch = std::atoll(argv[i + 1]);
    else if (flag == "--context")
      context = std::atoll(argv[i + 1]);
    else if (flag == "--iterations")
      iterations = std::atoi(argv[i + 1]);
    else if (flag == "--out")
      out_path = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 1;
    }
  }
  if (!latentkv::cuda::device_available()) {
    std::fprintf(stderr, "latent_attention_cuda_bench: no CUDA device\n");
    return 2;
  }
  try {
    int device = 0;
    LATENTKV_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    LATENTKV_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    // Copy bandwidth: 2 GiB read + 2 GiB written.
    const std::size_t copy_bytes = std::size_t{2} << 30;
    DeviceBuffer<std::uint8_t> src(copy_bytes);
    DeviceBuffer<std::uint8_t> dst(copy_bytes);
    LATENTKV_CUDA_CHECK(cudaMemset(src.data(), 1, copy_bytes));
    const double copy_us = time_microseconds(
        [&] {
          LATENTKV_CUDA_CHECK(latentkv::cuda::launch_device_copy(src.data(), dst.data(), copy_bytes,
                                                                 prop.multiProcessorCount * 8));
        },
        10);
    const double copy_gbs = 2.0 * static_cast<double>(copy_bytes) / (copy_us * 1e3);

    const Model models[] = {{"SmolLM2-135M", 9, 3, 64}, {"LLaMA-3-8B", 32, 8, 128}};
    std::vector<Row> rows;
    for (const Model& m : models) {
      rows.push_back(run<LatentRoute::kProjected>(m, "dense", 1.0, m.head_dim, m.head_dim, batch,
                                                  context, iterations));
      for (const double budget : {0.5, 0.25}) {
        const auto r = static_cast<std::int64_t>(budget * static_cast<double>(m.head_dim));
        rows.push_back(
            run<LatentRoute::kRebuildKeys>(m, "route 1", budget, r, r, batch, context, iterations));
        rows.push_back(
            run<LatentRoute::kProjected>(m, "route 2", budget, r, r, batch, context, iterations));
      }
    }
    std::ostringstream table;
    table
        << "Device: " << prop.name << " (" << prop.multiProcessorCount
        << " SMs); copy kernel: " << copy_gbs << " GB/s (read + write); fp16 latents, "
        << "contiguous cache, per-head ranks r_k = r_v = budget·h, batch " << batch << " × context "
        << context << ", one layer.\n\n"
        << "| model | budget | kernel | splits | time (µs) | cache bytes (MB) | GB/s | % of copy |"
           " speed-up vs dense |\n"
        << "|---|---|---|---|---|---|---|---|---|\n";
    double dense_us = 0.0;
    for (const Row& r : rows) {
      if (r.kernel == "dense") dense_us = r.microseconds;
      const double gbs = r.bytes / (r.microseconds * 1e3);
      char line[512];
      std::snprintf(
          line, sizeof(line), "| %s | %.2f | %s | %lld | %.1f | %.1f | %.0f | %.0f%% | %.2f× |\n",
          r.model.c_str(), r.budget, r.kernel.c_str(), static_cast<long long>(r.splits),
          r.microseconds, r.bytes / 1e6, gbs, 100.0 * gbs / copy_gbs, dense_us / r.microseconds);
      table << line;
    }
    std::fputs(table.str().c_str(), stdout);
    if (!out_path.empty()) std::ofstream(out_path) << table.str();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "latent_attention_cuda_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
