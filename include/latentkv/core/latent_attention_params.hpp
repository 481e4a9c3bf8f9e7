// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The parameter block of latent attention (DESIGN §3), shared by the CPU kernel
// (attention/latent_attention.hpp) and the CUDA kernels (cuda/latent_attention.cuh); std-only.
// One head group j of one layer: s KV heads share the latents, g query heads per KV head, query
// head m = 0..s·g−1 of the group reads KV head e = m / g of the group.
// Route 1 (kRebuildKeys, pre-RoPE latents, what the weight-SVD factors give):
//   queries Q:   (tokens, s·g·h)  already rotated; query t sits at absolute position p0 + t
//   latent C^k:  (length, r_k)    pre-RoPE key latents, key u at position u
//   B_k:         (r_k, s·h)       k_u = RoPE_u(c^k_u·B_k) per KV head (h channels each)
//   latent C^v:  (length, r_v)    value latents, shared by the group's s KV heads
//   out O:       (tokens, s·g·r_v) O_{t,m} = Σ_{u ≤ p0+t} softmax_u(scale·q_{t,m}·k_{u,e(m)})·c^v_u
// Route 2 (kProjected, post-RoPE projections, MatryoshkaKV; project/): multi-query attention with
// head dims r_k and r_v over the group's shared latents; B_k, the RoPE table, h and rope_dim are
// unused (may be null / 0):
//   queries Q̃:   (tokens, s·g·r_k) projected q̃_{t,m} = RoPE(q_{t,m})·P_k,e(m)
//   latent C^k:  (length, r_k)     c^k_u = (RoPE_u(k_u) − μ_k)·P_k over the group's s·h channels
//   out O:       (tokens, s·g·r_v) O_{t,m} = Σ_{u ≤ p0+t} softmax_u(scale·q̃_{t,m}·c^k_u)·c^v_u
// The causal rule: a query at position p sees the keys at positions 0..p.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "latentkv/core/config.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/core/latent_storage.hpp"

namespace latentkv {

/// How keys are scored (DESIGN §3).
enum class LatentRoute : int {
  kRebuildKeys = 1,  ///< route 1: pre-RoPE latents, keys rebuilt with B_k and rotated per tile
  kProjected = 2,    ///< route 2: post-RoPE projected latents scored directly (any rank)
};

/// One head group of one layer for the latent kernel (see the notation block). Trivially
/// copyable: pointers, extents and row strides (in elements) only, so the same struct can feed a
/// CUDA kernel.
template <LatentStorage S>
struct LatentAttentionParams {
  const float* queries = nullptr;  // (tokens, s·g·h) rotated queries (route 2: s·g·r_k projected)
  const S* latent_k = nullptr;     // C^k: (length, rank_k), row stride = ld_latent_k
  const float* up_k = nullptr;     // B_k: (rank_k, s·h) pre-RoPE up-projection (route 1)
  const S* latent_v = nullptr;     // C^v: (length, rank_v), row stride = ld_latent_v
  const float* rope = nullptr;     // (≥ length, rope_dim) rope_table_row() rows (route 1)
  float* out = nullptr;            // (tokens, s·g·rank_v) head-major, row stride = ld_out
  std::int64_t ld_queries = 0;     // ≥ s·g·h (route 2: s·g·r_k)
  std::int64_t ld_latent_k = 0;    // ≥ rank_k
  std::int64_t ld_up_k = 0;        // ≥ s·h
  std::int64_t ld_latent_v = 0;    // ≥ rank_v
  std::int64_t ld_rope = 0;        // ≥ rope_dim
  std::int64_t ld_out = 0;         // ≥ s·g·rank_v
  std::int64_t tokens = 0;         // query rows
  std::int64_t length = 0;         // cached keys, ≥ first_position + tokens
  std::int64_t first_position = 0;   // p0: query t is at position p0 + t, sees keys 0 .. p0 + t
  std::int64_t heads_per_group = 0;  // s: KV heads sharing C^k and C^v
  std::int64_t group_size = 0;       // g: query heads per KV head
  std::int64_t head_dim = 0;         // h
  std::int64_t rope_dim = 0;         // rotated channels per head (even, ≤ h)
  std::int64_t rank_k = 0;           // r_k ≥ 1
  std::int64_t rank_v = 0;           // r_v ≥ 1
  float scale = 0.0f;                // softmax scale, 1/√h for LLaMA
  LatentRoute route = LatentRoute::kRebuildKeys;  // how keys are scored (see above)
};

static_assert(std::is_trivially_copyable_v<LatentAttentionParams<float>>);
static_assert(std::is_trivially_copyable_v<LatentAttentionParams<std::uint16_t>>);
static_assert(std::is_trivially_copyable_v<LatentAttentionParams<Bf16>>);

/// The causal rule on a block of keys: how many of the keys at positions [k0, k0 + kb) a query at
/// `query_position` sees (the first ones): clamp(query_position − k0 + 1, 0, kb).
LATENTKV_HOST_DEVICE constexpr std::int64_t causal_visible_keys(std::int64_t query_position,
                                                                std::int64_t k0,
                                                                std::int64_t kb) noexcept {
  const std::int64_t visible = query_position - k0 + 1;
  return visible < 0 ? 0 : (visible > kb ? kb : visible);
}

/// Throws InvalidArgument (`where`: "group <group>: ...") when a params struct is inconsistent:
/// extents, strides, null pointers. The data behind the pointers is the caller's responsibility.
template <LatentStorage S>
void check_latent_params(const LatentAttentionParams<S>& p, std::size_t group, const char* where) {
  const auto fail = [&](const auto&... parts) {
    detail::raise<InvalidArgument>(where, "group ", group, ": ", parts...);
  };
  const bool rebuild = p.route == LatentRoute::kRebuildKeys;
  if (!rebuild && p.route != LatentRoute::kProjected) {
    fail("route = ", static_cast<int>(p.route), ", expected 1 (kRebuildKeys) or 2 (kProjected)");
  }
  if (p.heads_per_group < 1 || p.group_size < 1 || (rebuild && p.head_dim < 2) || p.rank_k < 1 ||
      p.rank_v < 1) {
    fail("heads_per_group = ", p.heads_per_group, ", group_size = ", p.group_size,
         ", head_dim = ", p.head_dim, ", rank_k = ", p.rank_k, ", rank_v = ", p.rank_v,
         rebuild ? ", expected positive (head_dim >= 2)" : ", expected positive");
  }
  if (rebuild && (p.rope_dim < 2 || p.rope_dim % 2 != 0 || p.rope_dim > p.head_dim)) {
    fail("rope_dim = ", p.rope_dim, ", expected an even number in 2..", p.head_dim);
  }
  if (p.tokens < 0 || p.first_position < 0 || p.length < p.first_position + p.tokens) {
    fail("first_position = ", p.first_position, " with ", p.tokens,
         " queries needs >= ", p.first_position + p.tokens,
         " cached tokens, got length = ", p.length);
  }
  if (!std::isfinite(p.scale)) fail("scale = ", p.scale, ", expected finite");
  const std::int64_t heads = p.heads_per_group * p.group_size;
  const auto stride = [&](const char* name, const void* ptr, std::int64_t ld, std::int64_t width) {
    if (ptr == nullptr) fail(name, " is null");
    if (ld < width) fail("ld of ", name, " = ", ld, ", expected >= ", width);
  };
  if (p.tokens == 0) return;
  stride("queries", p.queries, p.ld_queries, heads * (rebuild ? p.head_dim : p.rank_k));
  stride("latent_k", p.latent_k, p.ld_latent_k, p.rank_k);
  if (rebuild) stride("up_k", p.up_k, p.ld_up_k, p.heads_per_group * p.head_dim);
  stride("latent_v", p.latent_v, p.ld_latent_v, p.rank_v);
  if (rebuild) stride("rope", p.rope, p.ld_rope, p.rope_dim);
  stride("out", p.out, p.ld_out, heads * p.rank_v);
}

}  // namespace latentkv
