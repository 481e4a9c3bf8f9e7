// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// One compressed attention layer on the GPU, end to end, for decode (route 1, DESIGN §2–3):
//   x:    (batch, d) fp32, one new token per sequence, at position n_b − 1 (seq_lens count it)
//   q  = RoPE_{n_b−1}(x·W_q)                     (batch, n_q·h)          cuBLAS + rotate kernel
//   append c^k = x·A_k, c^v = x·A_v to the cache  (batch, G·r_k), (batch, G·r_v), rounded to S
//   o  = latent decode (cuda/latent_attention.cuh) (batch, H·r_v)  H = n_q query heads
//   out = o·W̃_o                                   (batch, d)              cuBLAS
// Weights (device, fp32, row-major, math orientation y = x·W; the layer keeps pointers only):
//   W_q: (d, n_q·h);  A_k: (d, G·r_k) group j in columns j·r_k..;  A_v: (d, G·r_v);
//   B_k: G × (r_k, s·h) contiguous;  W̃_o: (H·r_v, d), rows i·r_v .. of query head i
//   (W̃_o,i = B_v,g(i)·W_o,i, DESIGN §2); RoPE table (rope_rows, rope_dim) (core/rope.hpp rows).
// Scratch comes from the caller (workspace_bytes); nothing is allocated per call. The cuBLAS
// handle is the layer's own and runs on the stream decode() is given.
#ifndef __CUDACC__
#error "latentkv/cuda/latent_attention_layer.cuh is CUDA code: compile it with nvcc"
#endif
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "latentkv/core/error.hpp"
#include "latentkv/core/latent_decode.hpp"
#include "latentkv/core/rope.hpp"
#include "latentkv/cuda/error.hpp"
#include "latentkv/cuda/latent_attention.cuh"

namespace latentkv::cuda {

/// Device weights of one compressed layer (see the notation block); shapes from the cache params.
struct LatentLayerWeights {
  const float* wq = nullptr;      // W_q: (d, n_q·h)
  const float* down_k = nullptr;  // A_k: (d, G·r_k)
  const float* down_v = nullptr;  // A_v: (d, G·r_v)
  const float* up_k = nullptr;    // B_k: G × (r_k, s·h), group j at up_k + j·r_k·s·h
  const float* out = nullptr;     // W̃_o: (H·r_v, d)
  const float* rope = nullptr;    // (rope_rows, rope_dim) RoPE table of positions 0..
  std::int64_t rope_rows = 0;     // positions in the table
  std::int64_t d_model = 0;       // d
};

namespace detail {

/// Block b: rotates sequence b's query heads at position n_b − 1 and appends its latents
/// (rounded to S) at cache row latent_decode_row(p, b, n_b − 1).
///   q: (batch, H·h) in place;  lk: (batch, G·r_k);  lv: (batch, G·r_v)
template <LatentElement S>
__global__ void rotate_and_append_kernel(LatentDecodeParams<S> p, float* q, const float* lk,
                                         const float* lv, S* latent_k, S* latent_v) {
  const std::int64_t b = blockIdx.x;
  const std::int64_t position = p.seq_lens[b] - 1;
  const std::int64_t heads = latent_decode_num_heads(p);
  const std::int64_t half = p.rope_dim / 2;
  const float* row = p.rope + position * p.ld_rope;
  for (std::int64_t x = threadIdx.x; x < heads * half; x += blockDim.x) {
    float* head = q + b * heads * p.head_dim + (x / half) * p.head_dim;
    const std::int64_t c = x % half;
    rope_rotate_pair_from_table(head[c], head[c + half], row, c, half);
  }
  const std::int64_t at = latent_decode_row(p, b, position);
  const std::int64_t wk = p.num_groups * p.rank_k;
  const std::int64_t wv = p.num_groups * p.rank_v;
  for (std::int64_t x = threadIdx.x; x < wk; x += blockDim.x) {
    latent_k[at * p.ld_latent_k + x] = latent_from_float<S>(lk[b * wk + x]);
  }
  for (std::int64_t x = threadIdx.x; x < wv; x += blockDim.x) {
    latent_v[at * p.ld_latent_v + x] = latent_from_float<S>(lv[b * wv + x]);
  }
}

/// Row-major C (m, n) = A (m, k)·B (k, n), all contiguous: cuBLAS (column-major) computes
/// Cᵀ = Bᵀ·Aᵀ, which is the same memory.
inline cublasStatus_t row_major_gemm(cublasHandle_t handle, std::int64_t m, std::int64_t n,
                                     std::int64_t k, const float* a, const float* b, float* c) {
  const float one = 1.0f;
  const float zero = 0.0f;
  return cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                     static_cast<int>(k), &one, b, static_cast<int>(n), a, static_cast<int>(k),
                     &zero, c, static_cast<int>(n));
}

}  // namespace detail

/// A compressed attention layer's decode on the GPU (route 1). Holds a cuBLAS handle; not
/// copyable.
template <LatentElement S>
class LatentAttentionLayer {
 public:
  /// Throws InvalidArgument for null weights or d_model < 1, CudaError if cuBLAS fails.
  explicit LatentAttentionLayer(const LatentLayerWeights& weights) : weights_(weights) {
    constexpr const char* kWhere = "latentkv::cuda::LatentAttentionLayer";
    const void* pointers[] = {weights.wq,   weights.down_k, weights.down_v,
                              weights.up_k, weights.out,    weights.rope};
    const char* names[] = {"wq", "down_k", "down_v", "up_k", "out", "rope"};
    for (int i = 0; i < 6; ++i) {
      if (pointers[i] == nullptr) {
        latentkv::detail::raise<InvalidArgument>(kWhere, "weights.", names[i], " is null");
      }
    }
    if (weights.d_model < 1 || weights.rope_rows < 1) {
      latentkv::detail::raise<InvalidArgument>(kWhere, "d_model = ", weights.d_model,
                                               ", rope_rows = ", weights.rope_rows,
                                               ", expected >= 1");
    }
    LATENTKV_CUDA_CHECK(cublasCreate(&handle_));
  }
  LatentAttentionLayer(const LatentAttentionLayer&) = delete;
  LatentAttentionLayer& operator=(const LatentAttentionLayer&) = delete;
  ~LatentAttentionLayer() {
    if (handle_ != nullptr) (void)cublasDestroy(handle_);
  }

  /// Scratch bytes decode() needs: q (batch, H·h), the new latents, o (batch, H·r_v) and the
  /// split partials, for the shapes, batch and num_splits in `cache`.
  [[nodiscard]] std::int64_t workspace_bytes(const LatentDecodeParams<S>& cache) const noexcept {
    return 4 * scratch_floats(cache) +
           latent_decode_workspace_bytes(cache.batch, latent_decode_num_heads(cache), cache.rank_v,
                                         cache.num_splits);
  }

  /// One decode step: x (batch, d) device fp32 → out (batch, d). `cache` describes the latent
  /// cache (pointers, layout, seq_lens counting the new token, shapes, split plan); its queries,
  /// up_k, rope, out and workspace fields are the layer's to fill. `host` mirrors seq_lens (and
  /// the block table). Throws InvalidArgument naming the field, or CudaError.
  void decode(const float* x, LatentDecodeParams<S> cache, const LatentDecodeHostData& host,
              void* workspace, std::int64_t workspace_size, float* out,
              cudaStream_t stream = nullptr) {
    constexpr const char* kWhere = "latentkv::cuda::LatentAttentionLayer::decode";
    if (x == nullptr || out == nullptr || workspace == nullptr) {
      latentkv::detail::raise<InvalidArgument>(kWhere,
                                               x == nullptr     ? "x"
                                               : out == nullptr ? "out"
                                                                : "workspace",
                                               " is null");
    }
    if (workspace_size < workspace_bytes(cache)) {
      latentkv::detail::raise<InvalidArgument>(kWhere, "workspace_size = ", workspace_size,
                                               ", expected >= ", workspace_bytes(cache),
                                               " (workspace_bytes)");
    }
    if (cache.query_tokens != 1 || cache.query_block != 1) {
      latentkv::detail::raise<InvalidArgument>(kWhere, "query_tokens = ", cache.query_tokens,
                                               ", query_block = ", cache.query_block,
                                               ", expected 1 (decode)");
    }
    const std::int64_t batch = cache.batch;
    const std::int64_t heads = latent_decode_num_heads(cache);
    const std::int64_t d = weights_.d_model;
    float* q = static_cast<float*>(workspace);
    float* lk = q + batch * heads * cache.head_dim;
    float* lv = lk + batch * cache.num_groups * cache.rank_k;
    float* o = lv + batch * cache.num_groups * cache.rank_v;
    cache.queries = q;
    cache.ld_queries = heads * cache.head_dim;
    cache.up_k = weights_.up_k;
    cache.ld_up_k = cache.heads_per_group * cache.head_dim;
    cache.ld_up_k_group = cache.rank_k * cache.ld_up_k;
    cache.rope = weights_.rope;
    cache.ld_rope = cache.rope_dim;
    cache.rope_rows = weights_.rope_rows;
    cache.out = o;
    cache.ld_out = heads * cache.rank_v;
    cache.workspace = cache.num_splits > 1 ? o + batch * heads * cache.rank_v : nullptr;
    cache.workspace_bytes = workspace_size - 4 * scratch_floats(cache);
    // Validate everything (lengths, pages, shapes) before the first kernel touches the cache.
    std::int64_t max_smem = 0;
    LATENTKV_CUDA_CHECK(detail::max_smem_per_block(max_smem));
    check_latent_decode_params<LatentRoute::kRebuildKeys>(cache, host, max_smem, kWhere);
    if (host.seq_lens.empty()) {
      latentkv::detail::raise<InvalidArgument>(kWhere, "host.seq_lens is empty");
    }
    LATENTKV_CUDA_CHECK(cublasSetStream(handle_, stream));
    LATENTKV_CUDA_CHECK(
        detail::row_major_gemm(handle_, batch, heads * cache.head_dim, d, x, weights_.wq, q));
    LATENTKV_CUDA_CHECK(detail::row_major_gemm(handle_, batch, cache.num_groups * cache.rank_k, d,
                                               x, weights_.down_k, lk));
    LATENTKV_CUDA_CHECK(detail::row_major_gemm(handle_, batch, cache.num_groups * cache.rank_v, d,
                                               x, weights_.down_v, lv));
    // The cache is written through the same pointers the decode reads.
    detail::rotate_and_append_kernel<S><<<static_cast<unsigned>(batch), 256, 0, stream>>>(
        cache, q, lk, lv, const_cast<S*>(cache.latent_k), const_cast<S*>(cache.latent_v));
    LATENTKV_CUDA_CHECK(cudaGetLastError());
    LATENTKV_CUDA_CHECK(launch_latent_decode<LatentRoute::kRebuildKeys>(cache, stream));
    LATENTKV_CUDA_CHECK(
        detail::row_major_gemm(handle_, batch, d, heads * cache.rank_v, o, weights_.out, out));
  }

 private:
  [[nodiscard]] static std::int64_t scratch_floats(const LatentDecodeParams<S>& c) noexcept {
    const std::int64_t heads = latent_decode_num_heads(c);
    return c.batch * (heads * c.head_dim + c.num_groups * (c.rank_k + c.rank_v) + heads * c.rank_v);
  }

  LatentLayerWeights weights_;
  cublasHandle_t handle_ = nullptr;
};

}  // namespace latentkv::cuda
