// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Attention on the latent KV cache on a GPU: batched decode (one query token per sequence) and
// chunked causal prefill (query_tokens > 1, query_block tokens per CTA), split-KV
// (flash-decoding), contiguous and paged caches, fp32/fp16/bf16 latents, route 1 and route 2
// (DESIGN §3, §7). The math and the CTA decomposition are core/latent_decode.hpp's (host-device,
// tested on the CPU); this header adds the kernels, their noexcept launchers (cudaError_t) and
// throwing wrappers (InvalidArgument naming the field, CudaError), a dense decode baseline and a
// copy kernel that measures the device's achievable bandwidth.
//   queries: (batch, Q, H, h) rotated (route 1) or (batch, Q, H, r_k) projected (route 2), fp32
//   C^k, C^v: cache rows (contiguous or paged) of G groups' latents, storage S
//   B_k:     route 1, per group (r_k, s·h) fp32
//   out:     (batch, Q, H, r_v) fp32, per query head in its group's value-latent space (→ W̃_o)
// Launch: grid (num_splits·query blocks, units, batch), kLatentDecodeThreads threads, dynamic
// shared memory latent_decode_smem_bytes(); then, with several splits, a merge grid (H·Q, batch).
// Streams are honoured; nothing is allocated (the caller owns the workspace:
// latent_decode_workspace_bytes). Every launch is asynchronous: the data behind the pointers must
// stay valid until the stream reaches it. Route 1 rebuilds keys on tensor cores (mma.sync
// m16n8k16, sm_80+) when the latents are fp16 or bf16 and rank_k is a multiple of 16
// (MmaKeyRebuild), else on CUDA cores; scores and values run on CUDA cores.
#ifndef __CUDACC__
#error "latentkv/cuda/latent_attention.cuh is CUDA code: compile it with nvcc"
#endif
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "latentkv/core/error.hpp"
#include "latentkv/core/latent_decode.hpp"
#include "latentkv/cuda/error.hpp"

namespace latentkv::cuda {
namespace detail {

/// Two fp32 → one 32-bit register of two 16-bit numbers of S (low half = `low`), rounded to
/// nearest; and the value the first one rounds to.
template <LatentElement S>
__device__ inline std::uint32_t pack_pair(float low, float high) {
  if constexpr (std::same_as<S, Bf16>) {
    return static_cast<std::uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(low))) |
           static_cast<std::uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(high))) << 16;
  } else {
    return static_cast<std::uint32_t>(__half_as_ushort(__float2half_rn(low))) |
           static_cast<std::uint32_t>(__half_as_ushort(__float2half_rn(high))) << 16;
  }
}

template <LatentElement S>
__device__ inline float round_to_storage(float x) {
  if constexpr (std::same_as<S, Bf16>) {
    return __bfloat162float(__float2bfloat16_rn(x));
  } else {
    return __half2float(__float2half_rn(x));
  }
}

/// d += a·b on one warp: m16n8k16, a row-major (16×16), b column-major (16×8), 16-bit S in,
/// fp32 accumulate (PTX ISA "Matrix Fragments for mma.m16n8k16").
template <LatentElement S>
__device__ inline void mma_16816(float (&d)[4], const std::uint32_t (&a)[4],
                                 const std::uint32_t (&b)[2]) {
  if constexpr (std::same_as<S, Bf16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

}  // namespace detail

/// Route 1's key rebuild on tensor cores (ScalarKeyRebuild's contract): K = C·B for a tile of
/// kLatentDecodeTile = 32 rows as 2 × (h/8) m16n8k16 tiles, warp w taking the column tiles
/// w, w + warps, ..; k-steps of 16 latent channels. The latents are exact in S (they were widened
/// from it); B is fp32, so it is split as B = B_hi + B_lo (both in S) and multiplied twice, which
/// keeps K within ~2^-16 (bf16) or ~2^-21 (fp16) of the fp32 product instead of S's rounding.
/// Falls back to CUDA cores for fp32 latents, rank % 16 ≠ 0, h % 8 ≠ 0, before sm_80 and on the
/// host.
template <LatentElement S>
struct MmaKeyRebuild {
  __host__ __device__ void operator()(const float* latent, int ld_latent, const float* up, int h,
                                      int rank, float* keys, int ld_keys, int kb, int t,
                                      int n) const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if constexpr (!std::same_as<S, float>) {
      if (rank % 16 == 0 && h % 8 == 0 && n % 32 == 0) {
        static_assert(kLatentDecodeTile == 32, "MmaKeyRebuild covers 32 rows as two m16 tiles");
        const int warp = t / 32;
        const int lane = t % 32;
        const int group = lane / 4;  // PTX "groupID"
        const int pair = lane % 4;   // PTX "threadID_in_group"
        for (int tile = warp; tile < h / 8; tile += n / 32) {
          float d[2][4] = {};
          const int col = tile * 8 + group;  // this lane's column of B
          for (int k0 = 0; k0 < rank; k0 += 16) {
            // B (16×8, col): b0,b1 at k = 2·pair + {0,1}; b2,b3 at k = 2·pair + 8 + {0,1}.
            const int k = k0 + 2 * pair;
            const float b[4] = {up[k * h + col], up[(k + 1) * h + col], up[(k + 8) * h + col],
                                up[(k + 9) * h + col]};
            float hi[4];
            for (int i = 0; i < 4; ++i) hi[i] = detail::round_to_storage<S>(b[i]);
            const std::uint32_t b_hi[2] = {detail::pack_pair<S>(hi[0], hi[1]),
                                           detail::pack_pair<S>(hi[2], hi[3])};
            const std::uint32_t b_lo[2] = {detail::pack_pair<S>(b[0] - hi[0], b[1] - hi[1]),
                                           detail::pack_pair<S>(b[2] - hi[2], b[3] - hi[3])};
            for (int m = 0; m < 2; ++m) {
              // A (16×16, row): a0,a1 (row g, k 2p..), a2,a3 (row g + 8), a4,a5 (row g, k + 8),
              // a6,a7 (row g + 8, k + 8).
              const float* r0 = latent + (m * 16 + group) * ld_latent + k;
              const float* r1 = r0 + 8 * ld_latent;
              const std::uint32_t a[4] = {
                  detail::pack_pair<S>(r0[0], r0[1]), detail::pack_pair<S>(r1[0], r1[1]),
                  detail::pack_pair<S>(r0[8], r0[9]), detail::pack_pair<S>(r1[8], r1[9])};
              detail::mma_16816<S>(d[m], a, b_hi);
              detail::mma_16816<S>(d[m], a, b_lo);
            }
          }
          // D (16×8): d0,d1 at (row g, col 2p + {0,1}); d2,d3 at (row g + 8, same cols).
          for (int m = 0; m < 2; ++m) {
            float* k_row = keys + (m * 16 + group) * ld_keys + tile * 8 + 2 * pair;
            k_row[0] = d[m][0];
            k_row[1] = d[m][1];
            k_row[8 * ld_keys] = d[m][2];
            k_row[8 * ld_keys + 1] = d[m][3];
          }
        }
        (void)kb;  // rows ≥ kb are computed from stale shared memory and never read
        return;
      }
    }
#endif
    ScalarKeyRebuild{}(latent, ld_latent, up, h, rank, keys, ld_keys, kb, t, n);
  }
};

/// Tile loads in 16-byte words (ScalarTileLoad's contract): one load brings 8 fp16/bf16 or 4 fp32
/// latents and one cache-row lookup serves them all. Needs width and ld multiples of the word
/// and a 16-byte aligned src; otherwise (and on the host) loads element by element.
struct VectorTileLoad {
  template <LatentElement S, class RowOf>
  __host__ __device__ void operator()(const S* src, std::int64_t ld, const RowOf& row_of, int kb,
                                      int width, float* dst, int ld_dst, int t, int n) const {
#if defined(__CUDA_ARCH__)
    constexpr int kPerWord = static_cast<int>(16 / sizeof(S));
    if (width % kPerWord == 0 && ld % kPerWord == 0 &&
        reinterpret_cast<std::uintptr_t>(src) % 16 == 0) {
      const int words = width / kPerWord;
      for (int x = t; x < kb * words; x += n) {
        const int row = x / words;
        const int word = x - row * words;
        const uint4 bits = __ldg(reinterpret_cast<const uint4*>(src + row_of(row) * ld) + word);
        S values[kPerWord];
        memcpy(values, &bits, sizeof(bits));
        float* to = dst + row * ld_dst + word * kPerWord;
        for (int i = 0; i < kPerWord; ++i) to[i] = latent_to_float(values[i]);
      }
      return;
    }
#endif
    ScalarTileLoad{}(src, ld, row_of, kb, width, dst, ld_dst, t, n);
  }
};

namespace detail {

/// One decode CTA per (query block·num_splits + split, unit, sequence) = (blockIdx.x, .y, .z).
template <LatentRoute R, LatentElement S>
__global__ void __launch_bounds__(kLatentDecodeThreads, 1)
    latent_decode_kernel(const LatentDecodeParams<S> p) {
  extern __shared__ float latent_decode_smem[];
  const std::int64_t x = blockIdx.x;
  const LatentDecodeUnit unit =
      latent_decode_unit<R>(p, x % p.num_splits, blockIdx.y, blockIdx.z, x / p.num_splits);
  latent_decode_cta<R>(p, unit, latent_decode_smem, CtaSteps{}, VectorTileLoad{},
                       MmaKeyRebuild<S>{});
}

/// Merges the split partials: block (token·H + i, b), threads over the r_v channels.
template <LatentElement S>
__global__ void latent_decode_merge_kernel(const LatentDecodeParams<S> p) {
  const std::int64_t heads = latent_decode_num_heads(p);
  const std::int64_t x = blockIdx.x;
  for (std::int64_t d = threadIdx.x; d < p.rank_v; d += blockDim.x) {
    latent_decode_merge(p, blockIdx.y, x / heads, x % heads, d);
  }
}

/// dst[i] = src[i] for n words (16 bytes: uint4), grid-stride. A template so that every
/// translation unit including this header may define it (a plain __global__ function here was a
/// multiple definition at link time once two .cu files of one program included the header).
template <class Word>
__global__ void copy_kernel(const Word* __restrict__ src, Word* __restrict__ dst, std::size_t n) {
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
template <LatentRoute R, LatentElement S>
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
  const dim3 grid(static_cast<unsigned>(p.num_splits * latent_decode_query_blocks(p)),
                  static_cast<unsigned>(latent_decode_units<R>(p)), static_cast<unsigned>(p.batch));
  detail::latent_decode_kernel<R, S>
      <<<grid, kLatentDecodeThreads, static_cast<std::size_t>(smem), stream>>>(p);
  status = cudaGetLastError();
  if (status != cudaSuccess || p.num_splits == 1) return status;
  const unsigned threads =
      static_cast<unsigned>(std::min<std::int64_t>(256, (p.rank_v + 31) / 32 * 32));
  const dim3 merge_grid(static_cast<unsigned>(latent_decode_num_heads(p) * p.query_tokens),
                        static_cast<unsigned>(p.batch));
  detail::latent_decode_merge_kernel<S><<<merge_grid, threads, 0, stream>>>(p);
  return cudaGetLastError();
}

/// The split plan for the current device: its SM count, the CTAs of the decode kernel that fit
/// on one SM, p's batch and units, and the longest sequence (max_length). Throws CudaError.
template <LatentRoute R, LatentElement S>
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
  return plan_latent_decode_splits(
      sms, std::max(per_sm, 1), p.batch * latent_decode_units<R>(p) * latent_decode_query_blocks(p),
      max_length, min_tokens_per_split);
}

/// The decode of route R, validated first on the host: `host` must mirror p.seq_lens (and
/// p.block_table when paged), so that lengths past the cache or the RoPE table and pages outside
/// the pool are rejected before launch. Throws InvalidArgument naming the field, or CudaError.
template <LatentRoute R, LatentElement S>
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
template <LatentElement S>
[[nodiscard]] cudaError_t launch_dense_decode(const LatentDecodeParams<S>& p,
                                              cudaStream_t stream = nullptr) noexcept {
  if (p.heads_per_group != 1 || p.rank_k != p.head_dim || p.rank_v != p.head_dim) {
    return cudaErrorInvalidValue;
  }
  return launch_latent_decode<LatentRoute::kProjected>(p, stream);
}

/// Throwing dense decode (see launch_dense_decode and latent_decode).
template <LatentElement S>
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
  detail::copy_kernel<uint4><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
      static_cast<const uint4*>(src), static_cast<uint4*>(dst), bytes / 16);
  return cudaGetLastError();
}

}  // namespace latentkv::cuda
