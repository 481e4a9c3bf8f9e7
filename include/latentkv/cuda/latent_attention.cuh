// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Attention on the latent KV cache on a GPU: batched decode (one query token per sequence),
// split-KV (flash-decoding), contiguous and paged caches, fp32/fp16/bf16 latents, route 1 and route
// 2 (DESIGN §3, §7). The math and the CTA decomposition are core/latent_decode.hpp's (host-device,
// tested on the CPU); this header adds the kernels, their noexcept launchers (cudaError_t) and
// throwing wrappers (InvalidArgument naming the field, CudaError), a dense decode baseline and a
// copy kernel that measures the device's achievable bandwidth.
//   queries: (batch, H, h) rotated (route 1) or (batch, H, r_k) projected (route 2), fp32
//   C^k, C^v: cache rows (contiguous or paged) of G groups' latents, storage S
//   B_k:     route 1, per group (r_k, s·h) fp32
//   out:     (batch, H, r_v) fp32, per query head in its group's value-latent space (meets W̃_o)
// Launch: grid (num_splits, units, batch), kLatentDecodeThreads threads, dynamic shared memory
// latent_decode_smem_bytes(); then, with several splits, a merge grid (H, batch). Streams are
// honoured; nothing is allocated (the caller owns the workspace: latent_decode_workspace_bytes).
// Every launch is asynchronous: the data behind the pointers must stay valid until the stream
// reaches it. Tensor cores are not used yet: route 1 rebuilds keys on CUDA cores (fp32 FMA).
#ifndef __CUDACC__
#error "latentkv/cuda/latent_attention.cuh is CUDA code: compile it with nvcc"
#endif
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "latentkv/core/error.hpp"
#include "latentkv/core/latent_decode.hpp"
#include "latentkv/cuda/error.hpp"

namespace latentkv::cuda {
namespace detail {

/// One decode CTA per (split, unit, sequence) = (blockIdx.x, blockIdx.y, blockIdx.z).
template <LatentRoute R, LatentStorage S>
__global__ void __launch_bounds__(kLatentDecodeThreads, 1)
    latent_decode_kernel(const LatentDecodeParams<S> p) {
  extern __shared__ float latent_decode_smem[];
  const LatentDecodeUnit unit = latent_decode_unit<R>(p, blockIdx.x, blockIdx.y, blockIdx.z);
  latent_decode_cta<R>(p, unit, latent_decode_smem, CtaSteps{});
}

/// Merges the split partials: block (i, b), threads over the r_v channels.
template <LatentStorage S>
__global__ void latent_decode_merge_kernel(const LatentDecodeParams<S> p) {
  for (std::int64_t d = threadIdx.x; d < p.rank_v; d += blockDim.x) {
    latent_decode_merge(p, blockIdx.y, blockIdx.x, d);
  }
}

/// dst[i] = src[i] for n 16-byte words, grid-stride.
__global__ void copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    dst[i] = src[i];
  }
}

/// The current device's opt-in shared memory per block, in bytes.
inline cudaError_t max_smem_per_block(std::int64_t& bytes) noexcept {
  int device = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status != cudaSuccess) return status;
  int value = 0;
  status = cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  bytes = value;
  return status;
}

/// Lets `kernel` use `bytes` of dynamic shared memory (above the default 48 KiB needs opting in).
template <class Kernel>
cudaError_t allow_smem(Kernel kernel, std::int64_t bytes) noexcept {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

}  // namespace detail

/// Launches the decode of route R on `stream`: p holds device pointers (LatentDecodeParams). Checks
/// what it can without reading device memory (check_latent_decode_params without host data) and
/// returns cudaErrorInvalidValue when that fails, else the launch's status. Never throws.
template <LatentRoute R, LatentStorage S>
[[nodiscard]] cudaError_t launch_latent_decode(const LatentDecodeParams<S>& p,
                                               cudaStream_t stream = nullptr) noexcept {
  std::int64_t max_smem = 0;
  cudaError_t status = detail::max_smem_per_block(max_smem);
  if (status != cudaSuccess) return status;
  try {
    check_latent_decode_params<R>(p, {}, max_smem, "latentkv::cuda::launch_latent_decode");
  } catch (...) {
    return cudaErrorInvalidValue;
  }
  const std::int64_t smem = latent_decode_smem_bytes<R>(p);
  status = detail::allow_smem(detail::latent_decode_kernel<R, S>, smem);
  if (status != cudaSuccess) return status;
  const dim3 grid(static_cast<unsigned>(p.num_splits),
                  static_cast<unsigned>(latent_decode_units<R>(p)), static_cast<unsigned>(p.batch));
  detail::latent_decode_kernel<R, S>
      <<<grid, kLatentDecodeThreads, static_cast<std::size_t>(smem), stream>>>(p);
  status = cudaGetLastError();
  if (status != cudaSuccess || p.num_splits == 1) return status;
  const unsigned threads =
      static_cast<unsigned>(std::min<std::int64_t>(256, (p.rank_v + 31) / 32 * 32));
  const dim3 merge_grid(static_cast<unsigned>(latent_decode_num_heads(p)),
                        static_cast<unsigned>(p.batch));
  detail::latent_decode_merge_kernel<S><<<merge_grid, threads, 0, stream>>>(p);
  return cudaGetLastError();
}

/// The split plan for the current device: its SM count, the CTAs of the decode kernel that fit
/// on one SM, p's batch and units, and the longest sequence (max_length). Throws CudaError.
template <LatentRoute R, LatentStorage S>
[[nodiscard]] LatentDecodeSplitPlan plan_latent_decode(const LatentDecodeParams<S>& p,
                                                       std::int64_t max_length,
                                                       std::int64_t min_tokens_per_split = 256) {
  int device = 0;
  LATENTKV_CUDA_CHECK(cudaGetDevice(&device));
  int sms = 0;
  LATENTKV_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const std::int64_t smem = latent_decode_smem_bytes<R>(p);
  LATENTKV_CUDA_CHECK(detail::allow_smem(detail::latent_decode_kernel<R, S>, smem));
  int per_sm = 0;
  LATENTKV_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_sm, detail::latent_decode_kernel<R, S>, kLatentDecodeThreads,
      static_cast<std::size_t>(smem)));
  return plan_latent_decode_splits(sms, std::max(per_sm, 1), p.batch * latent_decode_units<R>(p),
                                   max_length, min_tokens_per_split);
}

/// The decode of route R, validated first on the host: `host` must mirror p.seq_lens (and
/// p.block_table when paged), so that lengths past the cache or the RoPE table and pages outside
/// the pool are rejected before launch. Throws InvalidArgument naming the field, or CudaError.
template <LatentRoute R, LatentStorage S>
void latent_decode(const LatentDecodeParams<S>& p, const LatentDecodeHostData& host,
                   cudaStream_t stream = nullptr) {
  constexpr const char* kWhere = "latentkv::cuda::latent_decode";
  if (host.seq_lens.empty()) {
    latentkv::detail::raise<InvalidArgument>(
        kWhere, "host.seq_lens is empty, expected the batch's lengths");
  }
  if (p.block_table != nullptr && host.block_table.empty()) {
    latentkv::detail::raise<InvalidArgument>(
        kWhere, "host.block_table is empty, expected the paged cache's block table");
  }
  std::int64_t max_smem = 0;
  LATENTKV_CUDA_CHECK(detail::max_smem_per_block(max_smem));
  check_latent_decode_params<R>(p, host, max_smem, kWhere);
  LATENTKV_CUDA_CHECK(launch_latent_decode<R>(p, stream));
}

/// Dense decode, the baseline: the route-2 kernel on a dense post-RoPE cache, which is route 2
/// with one KV head per group (heads_per_group = 1, num_groups = n_kv) and r_k = r_v = h:
///   queries (batch, n_q, h) rotated; latent_k = K rows (n_kv·h), latent_v = V rows (n_kv·h).
/// Returns cudaErrorInvalidValue unless p has that shape.
template <LatentStorage S>
[[nodiscard]] cudaError_t launch_dense_decode(const LatentDecodeParams<S>& p,
                                              cudaStream_t stream = nullptr) noexcept {
  if (p.heads_per_group != 1 || p.rank_k != p.head_dim || p.rank_v != p.head_dim) {
    return cudaErrorInvalidValue;
  }
  return launch_latent_decode<LatentRoute::kProjected>(p, stream);
}

/// Throwing dense decode (see launch_dense_decode and latent_decode).
template <LatentStorage S>
void dense_decode(const LatentDecodeParams<S>& p, const LatentDecodeHostData& host,
                  cudaStream_t stream = nullptr) {
  if (p.heads_per_group != 1 || p.rank_k != p.head_dim || p.rank_v != p.head_dim) {
    latentkv::detail::raise<InvalidArgument>("latentkv::cuda::dense_decode",
                                             "heads_per_group = ", p.heads_per_group,
                                             ", rank_k = ", p.rank_k, ", rank_v = ", p.rank_v,
                                             ", expected 1, head_dim, head_dim (", p.head_dim, ")");
  }
  latent_decode<LatentRoute::kProjected>(p, host, stream);
}

/// Copies `bytes` (a multiple of 16) from src to dst (both 16-byte aligned, device memory) with a
/// grid-stride 16-byte copy of `blocks` × 256 threads: bytes read + written over its time is the
/// achievable bandwidth every decode figure is compared with. cudaErrorInvalidValue on bad input.
[[nodiscard]] inline cudaError_t launch_device_copy(const void* src, void* dst, std::size_t bytes,
                                                    int blocks,
                                                    cudaStream_t stream = nullptr) noexcept {
  if (src == nullptr || dst == nullptr || bytes % 16 != 0 || blocks < 1 ||
      reinterpret_cast<std::uintptr_t>(src) % 16 != 0 ||
      reinterpret_cast<std::uintptr_t>(dst) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  if (bytes == 0) return cudaSuccess;
  detail::copy_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
      static_cast<const uint4*>(src), static_cast<uint4*>(dst), bytes / 16);
  return cudaGetLastError();
}

}  // namespace latentkv::cuda
