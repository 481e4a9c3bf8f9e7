// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Batched latent decode (one query token per sequence) and chunked causal prefill (Q query
// tokens per sequence), the decomposition the CUDA kernels run (cuda/latent_attention.cuh),
// written once as host-device code so that the host can run it too and the tests check it without
// a GPU (std-only). One layer, G head groups of equal ranks:
//   sequence b: seq_lens[b] = n_b cached tokens (the queries' own included); its Q query tokens
//               sit at positions n_b − Q .. n_b − 1, each seeing the keys up to its own
//   query head i = j·s·g + e·g + m': group j, KV head e of the group, g query heads per KV head
//   route 1 (kRebuildKeys, DESIGN §3.1): queries (batch, Q, H, h) rotated; key u of group j,
//            KV head e: k_u = RoPE_u(c^k_u·B_k,j[:, e·h .. e·h + h)); score = scale·q·k_u
//   route 2 (kProjected, DESIGN §3.2): queries (batch, Q, H, r_k) projected q̃;
//            score = scale·q̃·c^k_u (multi-query attention of head dims r_k, r_v; dense decode is
//            route 2 with s = 1 and r_k = r_v = h on the post-RoPE K and V)
//   out:     (batch, Q, H, r_v)  O = Σ_u softmax_u(score)·c^v_u (latent space, meets W̃_o)
// Cache rows: contiguous (sequence b's token t at row b·seq_stride + t) or paged (row
// block_table[b][t / page_size]·page_size + t % page_size, as vLLM / FlashInfer page caches); a
// row holds every group's latents (group j at columns j·r_k of C^k and j·r_v of C^v).
//
// Work split (flash-decoding): one CTA ("unit") per (split, query block, unit, sequence): route
// 1's unit is a KV head (its g query heads share the rebuilt keys), route 2's a group (its s·g
// query heads share the latents); a query block is query_block consecutive query tokens, stacked
// with the heads as the CTA's rows. Split q covers keys [q·T_s, (q+1)·T_s) ∩ [0, last visible]
// (T_s = tokens_per_split, a multiple of kLatentDecodeTile). A CTA walks its range in tiles of
// kLatentDecodeTile keys held in shared memory: load (widen to fp32) → route 1: rebuild keys
// C·B_k, rotate them at the tile's positions → scores → causal mask and online softmax
// (core/online_softmax.hpp) → P·C^v into fp32 accumulators. One split writes the normalized
// output; several write (acc, max, sum) partials to the workspace and a merge pass combines them.
// Each step is a loop `for (x = tid; x < n; x += threads)` over shared memory separated by
// barriers (CtaSteps), so that running the threads of a CTA one after the other on the host gives
// the same result as the GPU, up to exp and fused multiply-adds.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "latentkv/core/config.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/core/latent_attention_params.hpp"
#include "latentkv/core/latent_storage.hpp"
#include "latentkv/core/online_softmax.hpp"
#include "latentkv/core/rope.hpp"

namespace latentkv {

/// Keys per shared-memory tile of a decode CTA.
inline constexpr std::int64_t kLatentDecodeTile = 32;
/// Threads per decode CTA.
inline constexpr int kLatentDecodeThreads = 128;

/// One layer's batched decode (see the notation block). Trivially copyable; device pointers when
/// it feeds a CUDA kernel, host pointers for latent_decode_host. Strides in elements.
template <LatentElement S>
struct LatentDecodeParams {
  const float* queries = nullptr;  // (batch, Q, H, query_dim), sequence stride ld_queries, token
                                   // stride H·query_dim; query_dim = head_dim (route 1) or rank_k
                                   // (route 2); token t of sequence b sits at n_b − Q + t
  const S* latent_k = nullptr;     // C^k rows: (rows, ≥ G·rank_k), row stride ld_latent_k
  const S* latent_v = nullptr;     // C^v rows: (rows, ≥ G·rank_v), row stride ld_latent_v
  const float* up_k = nullptr;     // route 1: B_k,j (rank_k, s·h) at up_k + j·ld_up_k_group,
                                   // row stride ld_up_k; route 2: unused
  const float* rope = nullptr;     // route 1: (rope_rows, rope_dim) rope_table_row() rows of
                                   // positions 0.., row stride ld_rope; route 2: unused
  const std::int32_t* seq_lens = nullptr;     // (batch) cached tokens n_b ≥ 1 per sequence
  const std::int32_t* block_table = nullptr;  // paged: (batch, ld_block_table) page ids;
                                              // null: contiguous
  float* out = nullptr;               // (batch, Q, H, rank_v), sequence stride ld_out, token
                                      // stride H·rank_v
  float* workspace = nullptr;         // num_splits > 1: latent_decode_workspace_bytes() bytes
  std::int64_t ld_queries = 0;        // ≥ Q·H·query_dim
  std::int64_t ld_latent_k = 0;       // ≥ G·rank_k
  std::int64_t ld_latent_v = 0;       // ≥ G·rank_v
  std::int64_t ld_up_k = 0;           // route 1: ≥ s·h
  std::int64_t ld_up_k_group = 0;     // route 1: ≥ rank_k·ld_up_k when G > 1
  std::int64_t ld_rope = 0;           // route 1: ≥ rope_dim
  std::int64_t rope_rows = 0;         // route 1: positions in the table, ≥ every n_b
  std::int64_t ld_block_table = 0;    // paged: page slots per sequence
  std::int64_t ld_out = 0;            // ≥ Q·H·rank_v
  std::int64_t seq_stride = 0;        // contiguous: rows per sequence, ≥ every n_b
  std::int64_t page_size = 0;         // paged: tokens per page
  std::int64_t num_pages = 0;         // paged: pages in the pool (rows = num_pages·page_size)
  std::int64_t workspace_bytes = 0;   // size of workspace
  std::int64_t batch = 0;             // sequences
  std::int64_t num_groups = 0;        // G
  std::int64_t heads_per_group = 0;   // s: KV heads per group
  std::int64_t group_size = 0;        // g: query heads per KV head
  std::int64_t head_dim = 0;          // h
  std::int64_t rope_dim = 0;          // route 1: rotated channels per head (even, ≤ h)
  std::int64_t rank_k = 0;            // r_k
  std::int64_t rank_v = 0;            // r_v
  std::int64_t num_splits = 1;        // key splits per sequence (plan_latent_decode_splits)
  std::int64_t tokens_per_split = 0;  // multiple of kLatentDecodeTile, num_splits·it ≥ every n_b
  std::int64_t query_tokens = 1;      // Q: 1 for decode; > 1: chunked causal prefill of the
                                      // last Q cached tokens (each sees the keys up to itself)
  std::int64_t query_block = 1;       // query tokens per CTA, 1..Q
  float scale = 0.0f;                 // softmax scale, 1/√h for LLaMA
};

static_assert(std::is_trivially_copyable_v<LatentDecodeParams<std::uint16_t>>);

/// H = G·s·g query heads.
template <LatentElement S>
LATENTKV_HOST_DEVICE constexpr std::int64_t latent_decode_num_heads(
    const LatentDecodeParams<S>& p) noexcept {
  return p.num_groups * p.heads_per_group * p.group_size;
}

/// Width of one query head: h (route 1) or r_k (route 2).
template <LatentRoute R, LatentElement S>
LATENTKV_HOST_DEVICE constexpr std::int64_t latent_decode_query_dim(
    const LatentDecodeParams<S>& p) noexcept {
  return R == LatentRoute::kRebuildKeys ? p.head_dim : p.rank_k;
}

/// Query blocks per sequence: ⌈Q / query_block⌉.
template <LatentElement S>
LATENTKV_HOST_DEVICE constexpr std::int64_t latent_decode_query_blocks(
    const LatentDecodeParams<S>& p) noexcept {
  return (p.query_tokens + p.query_block - 1) / p.query_block;
}

/// CTAs per (split, query block, sequence): route 1 one per KV head (G·s), route 2 one per
/// group (G).
template <LatentRoute R, LatentElement S>
LATENTKV_HOST_DEVICE constexpr std::int64_t latent_decode_units(
    const LatentDecodeParams<S>& p) noexcept {
  return R == LatentRoute::kRebuildKeys ? p.num_groups * p.heads_per_group : p.num_groups;
}

/// Cache row of sequence b's token t (contiguous or paged layout; see the notation block).
template <LatentElement S>
LATENTKV_HOST_DEVICE constexpr std::int64_t latent_decode_row(const LatentDecodeParams<S>& p,
                                                              std::int64_t b,
                                                              std::int64_t t) noexcept {
  if (p.block_table == nullptr) return b * p.seq_stride + t;
  // t < 2^31 (seq_lens are int32) and page_size < 2^31 (checked): a 32-bit division, cheap on GPUs.
  const auto token = static_cast<std::int32_t>(t);
  const auto page_size = static_cast<std::int32_t>(p.page_size);
  const std::int32_t slot = token / page_size;
  const std::int64_t page = p.block_table[b * p.ld_block_table + slot];
  return page * p.page_size + (token - slot * page_size);
}

/// One CTA's share of the work.
struct LatentDecodeUnit {
  std::int64_t sequence = 0;     // b
  std::int64_t group = 0;        // j
  std::int64_t kv_head = 0;      // e within the group (route 1; 0 for route 2)
  std::int64_t first_head = 0;   // first query head i of the unit
  std::int64_t heads = 0;        // query heads of the unit: g (route 1) or s·g (route 2)
  std::int64_t split = 0;        // q
  std::int64_t first_token = 0;  // first query token t0 of the unit (0 .. Q − 1)
  std::int64_t tokens = 1;       // query tokens of the unit
  std::int64_t key_begin = 0;    // keys [key_begin, key_end) of sequence b
  std::int64_t key_end = 0;
};

/// The unit of CTA (split, unit, b) for query block `query_block`; reads seq_lens[b]. Its keys
/// are split q's range, cut at the last key its last query token sees.
template <LatentRoute R, LatentElement S>
LATENTKV_HOST_DEVICE constexpr LatentDecodeUnit latent_decode_unit(
    const LatentDecodeParams<S>& p, std::int64_t split, std::int64_t unit, std::int64_t b,
    std::int64_t query_block = 0) noexcept {
  LatentDecodeUnit u;
  u.first_token = query_block * p.query_block;
  u.tokens = p.query_tokens - u.first_token < p.query_block ? p.query_tokens - u.first_token
                                                            : p.query_block;
  const std::int64_t length = p.seq_lens[b] - p.query_tokens + u.first_token + u.tokens;
  const std::int64_t sg = p.heads_per_group * p.group_size;
  u.sequence = b;
  u.split = split;
  if constexpr (R == LatentRoute::kRebuildKeys) {
    u.group = unit / p.heads_per_group;
    u.kv_head = unit % p.heads_per_group;
    u.first_head = u.group * sg + u.kv_head * p.group_size;
    u.heads = p.group_size;
  } else {
    u.group = unit;
    u.first_head = unit * sg;
    u.heads = sg;
  }
  const std::int64_t begin = split * p.tokens_per_split;
  u.key_begin = begin < length ? begin : length;
  u.key_end = length - u.key_begin < p.tokens_per_split ? length : u.key_begin + p.tokens_per_split;
  return u;
}

/// Shared memory of a decode CTA, offsets in floats (see latent_decode_cta).
struct LatentDecodeSmemLayout {
  std::int64_t queries = 0;     // (heads, query_dim) scaled queries
  std::int64_t up = 0;          // route 1: (r_k, h) B_k columns of the unit's KV head
  std::int64_t latent_k = 0;    // (T, r_k + 1) widened key latents (padded: no bank conflicts)
  std::int64_t keys = 0;        // route 1: (T, h + 1) rebuilt, rotated keys
  std::int64_t latent_v = 0;    // (T, r_v) widened value latents
  std::int64_t scores = 0;      // (heads, T) scores, then e^(score − max)
  std::int64_t correction = 0;  // (heads) this tile's rescaling factor
  std::int64_t max = 0;         // (heads) running max
  std::int64_t sum = 0;         // (heads) running sum
  std::int64_t acc = 0;         // (heads, r_v) unnormalized outputs
  std::int64_t total = 0;       // floats in all
};

/// The layout for a unit of `heads` stacked query rows (query heads × query tokens).
template <LatentRoute R>
LATENTKV_HOST_DEVICE constexpr LatentDecodeSmemLayout latent_decode_smem_layout(
    std::int64_t heads, std::int64_t head_dim, std::int64_t rank_k, std::int64_t rank_v) noexcept {
  constexpr std::int64_t kT = kLatentDecodeTile;
  constexpr bool kRoute1 = R == LatentRoute::kRebuildKeys;
  LatentDecodeSmemLayout l;
  std::int64_t at = 0;
  const auto take = [&at](std::int64_t floats) {
    const std::int64_t where = at;
    at += floats;
    return where;
  };
  l.queries = take(heads * (kRoute1 ? head_dim : rank_k));
  l.up = take(kRoute1 ? rank_k * head_dim : 0);
  l.latent_k = take(kT * (rank_k + 1));
  l.keys = take(kRoute1 ? kT * (head_dim + 1) : 0);
  l.latent_v = take(kT * rank_v);
  l.scores = take(heads * kT);
  l.correction = take(heads);
  l.max = take(heads);
  l.sum = take(heads);
  l.acc = take(heads * rank_v);
  l.total = at;
  return l;
}

/// Dynamic shared memory of one decode CTA, in bytes.
template <LatentRoute R, LatentElement S>
[[nodiscard]] constexpr std::int64_t latent_decode_smem_bytes(
    const LatentDecodeParams<S>& p) noexcept {
  const std::int64_t heads =
      (R == LatentRoute::kRebuildKeys ? p.group_size : p.heads_per_group * p.group_size) *
      p.query_block;
  return latent_decode_smem_layout<R>(heads, p.head_dim, p.rank_k, p.rank_v).total *
         static_cast<std::int64_t>(sizeof(float));
}

/// Workspace of a decode with num_splits > 1, in bytes: (batch, Q, H, splits) partials of
/// rank_v + 2 floats (acc, then max, then sum regions); 0 for one split.
[[nodiscard]] constexpr std::int64_t latent_decode_workspace_bytes(
    std::int64_t batch, std::int64_t num_heads, std::int64_t rank_v, std::int64_t num_splits,
    std::int64_t query_tokens = 1) noexcept {
  if (num_splits <= 1) return 0;
  return batch * query_tokens * num_heads * num_splits * (rank_v + 2) *
         static_cast<std::int64_t>(sizeof(float));
}

/// The split-KV plan of a decode launch.
struct LatentDecodeSplitPlan {
  std::int64_t num_splits = 1;        // key splits per sequence
  std::int64_t tokens_per_split = 0;  // keys per split, a multiple of kLatentDecodeTile
};

/// Picks the number of key splits so that the grid fills the device: enough CTAs for one wave
/// (sm_count·ctas_per_sm) counting `ctas_per_split` = batch·units CTAs per split, each split at
/// least min_tokens_per_split keys of the longest sequence (max_length), at most max_splits;
/// then as few splits as cover max_length with tokens_per_split rounded up to a whole tile.
/// Shorter sequences leave their last splits empty (the merge skips them). Throws
/// InvalidArgument on non-positive arguments.
[[nodiscard]] inline LatentDecodeSplitPlan plan_latent_decode_splits(
    std::int64_t sm_count, std::int64_t ctas_per_sm, std::int64_t ctas_per_split,
    std::int64_t max_length, std::int64_t min_tokens_per_split = 256,
    std::int64_t max_splits = 64) {
  if (sm_count < 1 || ctas_per_sm < 1 || ctas_per_split < 1 || max_length < 1 ||
      min_tokens_per_split < 1 || max_splits < 1) {
    detail::raise<InvalidArgument>(
        "latentkv::plan_latent_decode_splits", "sm_count = ", sm_count,
        ", ctas_per_sm = ", ctas_per_sm, ", ctas_per_split = ", ctas_per_split,
        ", max_length = ", max_length, ", min_tokens_per_split = ", min_tokens_per_split,
        ", max_splits = ", max_splits, ", expected all >= 1");
  }
  const auto ceil_div = [](std::int64_t a, std::int64_t b) { return (a + b - 1) / b; };
  const std::int64_t wave = sm_count * ctas_per_sm;
  std::int64_t splits = ceil_div(wave, ctas_per_split);
  splits = std::min({splits, ceil_div(max_length, min_tokens_per_split), max_splits});
  splits = std::max<std::int64_t>(splits, 1);
  LatentDecodeSplitPlan plan;
  plan.tokens_per_split =
      ceil_div(ceil_div(max_length, splits), kLatentDecodeTile) * kLatentDecodeTile;
  plan.num_splits = ceil_div(max_length, plan.tokens_per_split);
  return plan;
}

/// Runs one step of a CTA: on the device every thread calls f(threadIdx.x, threads), then the
/// CTA synchronizes; on the host f(t, threads) runs for t = 0 .. threads − 1 in order. Steps read
/// and write shared memory only through loops over `t` that never depend on another thread's
/// writes within the step, so both orders give the same result.
struct CtaSteps {
  int threads = kLatentDecodeThreads;

  template <class F>
  LATENTKV_HOST_DEVICE void operator()(const F& f) const {
#if defined(__CUDA_ARCH__)
    f(static_cast<int>(threadIdx.x), threads);
    __syncthreads();
#else
    for (int t = 0; t < threads; ++t) f(t, threads);
#endif
  }
};

/// Route 1's key rebuild on CUDA cores (and the host): thread t of n computes elements
/// t, t + n, .. of K = C·B (kb, h), unrotated:
///   latent: (≥ kb, rank) fp32, row stride ld_latent;  up: (rank, h) fp32, row stride h
///   keys:   (≥ kb, h) fp32, row stride ld_keys
struct ScalarKeyRebuild {
  LATENTKV_HOST_DEVICE void operator()(const float* latent, int ld_latent, const float* up, int h,
                                       int rank, float* keys, int ld_keys, int kb, int t,
                                       int n) const {
    for (int x = t; x < kb * h; x += n) {
      const int row = x / h;
      const int c = x - row * h;
      const float* a = latent + row * ld_latent;
      float value = 0.0f;
      for (int r = 0; r < rank; ++r) value += a[r] * up[r * h + c];
      keys[row * ld_keys + c] = value;
    }
  }
};

/// Loads a tile of latents widened to fp32, element by element: thread t of n takes elements
/// t, t + n, .. of
///   src: rows row_of(0 .. kb − 1) of a matrix with row stride ld, columns 0 .. width − 1
///   dst: (kb, width) fp32, row stride ld_dst
struct ScalarTileLoad {
  template <LatentElement S, class RowOf>
  LATENTKV_HOST_DEVICE void operator()(const S* src, std::int64_t ld, const RowOf& row_of, int kb,
                                       int width, float* dst, int ld_dst, int t, int n) const {
    for (int x = t; x < kb * width; x += n) {
      const int row = x / width;
      const int col = x - row * width;
      dst[row * ld_dst + col] = latent_to_float(src[row_of(row) * ld + col]);
    }
  }
};

/// One decode CTA: the unit `u` with shared memory `smem` (latent_decode_smem_layout floats),
/// steps run by `steps` (CtaSteps), tiles loaded by `load` (ScalarTileLoad, or the CUDA header's
/// 16-byte version) and route 1's keys rebuilt by `rebuild` (ScalarKeyRebuild, or the CUDA
/// header's tensor-core version), both with the same contract. Writes out (one split) or the
/// workspace partials.
template <LatentRoute R, LatentElement S, class Steps, class TileLoad = ScalarTileLoad,
          class KeyRebuild = ScalarKeyRebuild>
LATENTKV_HOST_DEVICE void latent_decode_cta(const LatentDecodeParams<S>& p,
                                            const LatentDecodeUnit& u, float* smem,
                                            const Steps& steps, const TileLoad& load = TileLoad{},
                                            const KeyRebuild& rebuild = KeyRebuild{}) {
  // Tile-local extents and indices are int (they index shared memory): 64-bit division costs a
  // GPU dozens of instructions and registers. Offsets into global memory stay 64-bit.
  constexpr bool kRoute1 = R == LatentRoute::kRebuildKeys;
  constexpr int kT = static_cast<int>(kLatentDecodeTile);
  const int h = static_cast<int>(p.head_dim);
  const int rk = static_cast<int>(p.rank_k);
  const int rv = static_cast<int>(p.rank_v);
  const int nh = static_cast<int>(u.heads);
  const int rows = static_cast<int>(u.tokens);
  const int nr = nh * rows;  // stacked query rows: row r = m·rows + t (head m, token t0 + t)
  const int qd = kRoute1 ? h : rk;
  const int half = static_cast<int>(p.rope_dim / 2);
  const int ks = rk + 1;                     // row stride of the latent_k tile
  const int kstride = kRoute1 ? h + 1 : ks;  // row stride of the keys scored
  const LatentDecodeSmemLayout l = latent_decode_smem_layout<R>(nr, h, rk, rv);
  float* const q_s = smem + l.queries;
  float* const up_s = smem + l.up;
  float* const ck_s = smem + l.latent_k;
  float* const keys_s = kRoute1 ? smem + l.keys : ck_s;
  float* const cv_s = smem + l.latent_v;
  float* const p_s = smem + l.scores;
  float* const corr_s = smem + l.correction;
  float* const max_s = smem + l.max;
  float* const sum_s = smem + l.sum;
  float* const acc_s = smem + l.acc;
  const std::int64_t b = u.sequence;
  const std::int64_t heads = latent_decode_num_heads(p);
  const std::int64_t first_position = p.seq_lens[b] - p.query_tokens + u.first_token;

  steps([&](int t, int n) {
    const float* q = p.queries + b * p.ld_queries + u.first_token * heads * qd + u.first_head * qd;
    for (int x = t; x < nr * qd; x += n) {
      const int r = x / qd;
      const int m = r / rows;
      q_s[x] = q[(r - m * rows) * heads * qd + m * qd + (x - r * qd)] * p.scale;
    }
    if constexpr (kRoute1) {
      const float* up = p.up_k + u.group * p.ld_up_k_group + u.kv_head * h;
      for (int x = t; x < rk * h; x += n) up_s[x] = up[(x / h) * p.ld_up_k + x % h];
    }
    for (int x = t; x < nr * rv; x += n) acc_s[x] = 0.0f;
    for (int x = t; x < nr; x += n) {
      const OnlineSoftmaxState empty;
      max_s[x] = empty.max;
      sum_s[x] = empty.sum;
    }
  });
  for (std::int64_t k0 = u.key_begin; k0 < u.key_end; k0 += kT) {
    const int kb = u.key_end - k0 < kT ? static_cast<int>(u.key_end - k0) : kT;
    steps([&](int t, int n) {  // load and widen the tile's latents
      const auto row_of = [&](int row) { return latent_decode_row(p, b, k0 + row); };
      load(p.latent_k + u.group * rk, p.ld_latent_k, row_of, kb, rk, ck_s, ks, t, n);
      load(p.latent_v + u.group * rv, p.ld_latent_v, row_of, kb, rv, cv_s, rv, t, n);
    });
    if constexpr (kRoute1) {
      steps([&](int t, int n) {  // K = C^k·B_k (kb, h)
        rebuild(ck_s, ks, up_s, h, rk, keys_s, kstride, kb, t, n);
      });
      steps([&](int t, int n) {  // rotated at the keys' positions k0 ..: pairs (c, c + half)
        for (int x = t; x < kb * half; x += n) {
          const int row = x / half;
          const int c = x - row * half;
          float* key = keys_s + row * kstride;
          rope_rotate_pair_from_table(key[c], key[c + half], p.rope + (k0 + row) * p.ld_rope, c,
                                      half);
        }
      });
    }
    steps([&](int t, int n) {  // scores (nr, kb)
      for (int x = t; x < nr * kT; x += n) {
        const int m = x / kT;
        const int key = x - m * kT;
        if (key >= kb) continue;
        const float* q = q_s + m * qd;
        const float* k = keys_s + key * kstride;
        float dot = 0.0f;
        for (int c = 0; c < qd; ++c) dot += q[c] * k[c];
        p_s[x] = dot;
      }
    });
    steps([&](int t, int n) {  // online softmax, one thread per stacked row
      for (int m = t; m < nr; m += n) {
        const int visible =
            static_cast<int>(causal_visible_keys(first_position + m % rows, k0, kb));
        float* row = p_s + m * kT;
        if (visible == 0) {
          corr_s[m] = 1.0f;
          for (int key = 0; key < kT; ++key) row[key] = 0.0f;
          continue;
        }
        float block_max = row[0];
        for (int key = 1; key < visible; ++key) {
          block_max = row[key] > block_max ? row[key] : block_max;
        }
        OnlineSoftmaxState state{max_s[m], sum_s[m]};
        corr_s[m] = online_softmax_rescale(state, block_max);
        float block_sum = 0.0f;
        for (int key = 0; key < kT; ++key) {
          const float e = key < visible ? std::exp(row[key] - state.max) : 0.0f;
          row[key] = e;
          block_sum += e;
        }
        max_s[m] = state.max;
        sum_s[m] = state.sum + block_sum;
      }
    });
    steps([&](int t, int n) {  // acc = corr·acc + P·C^v
      for (int x = t; x < nr * rv; x += n) {
        const int m = x / rv;
        const int d = x - m * rv;
        const float* prob = p_s + m * kT;
        float value = 0.0f;
        for (int key = 0; key < kb; ++key) value += prob[key] * cv_s[key * rv + d];
        acc_s[x] = acc_s[x] * corr_s[m] + value;
      }
    });
  }
  steps([&](int t, int n) {  // normalized output, or this split's partial
    // Stacked row r = m·rows + tt is query head first_head + m at token first_token + tt.
    const auto slot = [&](int r) {
      const int m = r / rows;
      return ((b * p.query_tokens + u.first_token + (r - m * rows)) * heads + u.first_head + m) *
                 p.num_splits +
             u.split;
    };
    if (p.num_splits == 1) {
      for (int x = t; x < nr * rv; x += n) {
        const int r = x / rv;
        const int m = r / rows;
        const std::int64_t token = u.first_token + (r - m * rows);
        p.out[b * p.ld_out + token * heads * rv + (u.first_head + m) * rv + (x - r * rv)] =
            acc_s[x] / sum_s[r];
      }
      return;
    }
    const std::int64_t partials = p.batch * p.query_tokens * heads * p.num_splits;
    float* const acc = p.workspace;
    float* const max = p.workspace + partials * rv;
    float* const sum = max + partials;
    for (int x = t; x < nr * rv; x += n) {
      const int r = x / rv;
      acc[slot(r) * rv + (x - r * rv)] = acc_s[x];
    }
    for (int r = t; r < nr; r += n) {
      max[slot(r)] = max_s[r];
      sum[slot(r)] = sum_s[r];
    }
  });
}

/// The merge of the workspace partials: out[b, token, i, d] for one (b, token, i, d)
/// (num_splits > 1).
template <LatentElement S>
LATENTKV_HOST_DEVICE inline void latent_decode_merge(const LatentDecodeParams<S>& p, std::int64_t b,
                                                     std::int64_t token, std::int64_t i,
                                                     std::int64_t d) noexcept {
  const std::int64_t heads = latent_decode_num_heads(p);
  const std::int64_t partials = p.batch * p.query_tokens * heads * p.num_splits;
  const std::int64_t first = ((b * p.query_tokens + token) * heads + i) * p.num_splits;
  const float* const acc = p.workspace;
  const float* const max = p.workspace + partials * p.rank_v;
  const float* const sum = max + partials;
  p.out[b * p.ld_out + token * heads * p.rank_v + i * p.rank_v + d] = merge_split_channel(
      acc + first * p.rank_v + d, p.rank_v, max + first, sum + first, p.num_splits);
}

/// The host's copy of what a launch reads through device pointers, for validation.
struct LatentDecodeHostData {
  std::span<const std::int32_t> seq_lens;     // (batch), as p.seq_lens
  std::span<const std::int32_t> block_table;  // paged: (batch·ld_block_table), as p.block_table
};

namespace detail {

template <class T>
bool misaligned(const T* ptr) noexcept {
  return reinterpret_cast<std::uintptr_t>(ptr) % alignof(T) != 0;
}

}  // namespace detail

/// Throws InvalidArgument naming the field when `p` cannot run on route R: non-positive extents,
/// null or misaligned pointers, strides below their widths, a split plan that misses keys, a
/// workspace too small, shared memory above max_smem_bytes (ranks or head dims the kernel does not
/// support on the device), and, from `host`: lengths outside 1..capacity (the cache, the RoPE
/// table), block-table entries outside the pool. Empty host spans skip those last checks.
template <LatentRoute R, LatentElement S>
void check_latent_decode_params(const LatentDecodeParams<S>& p, const LatentDecodeHostData& host,
                                std::int64_t max_smem_bytes, const char* where) {
  constexpr bool kRoute1 = R == LatentRoute::kRebuildKeys;
  const auto fail = [&](const auto&... parts) { detail::raise<InvalidArgument>(where, parts...); };
  const auto positive = [&](const char* name, std::int64_t value) {
    if (value < 1) fail(name, " = ", value, ", expected >= 1");
  };
  positive("batch", p.batch);
  positive("num_groups", p.num_groups);
  positive("heads_per_group", p.heads_per_group);
  positive("group_size", p.group_size);
  positive("rank_k", p.rank_k);
  positive("rank_v", p.rank_v);
  positive("num_splits", p.num_splits);
  positive("query_tokens", p.query_tokens);
  if (p.query_block < 1 || p.query_block > p.query_tokens) {
    fail("query_block = ", p.query_block, ", expected 1..", p.query_tokens, " (query_tokens)");
  }
  if (kRoute1) {
    if (p.head_dim < 2) fail("head_dim = ", p.head_dim, ", expected >= 2");
    if (p.rope_dim < 2 || p.rope_dim % 2 != 0 || p.rope_dim > p.head_dim) {
      fail("rope_dim = ", p.rope_dim, ", expected an even number in 2..", p.head_dim,
           " (head_dim)");
    }
  }
  if (!std::isfinite(p.scale)) fail("scale = ", p.scale, ", expected finite");
  constexpr std::int64_t kGridLimit = 65535;  // CUDA grid y and z
  if (p.batch > kGridLimit) fail("batch = ", p.batch, ", expected <= ", kGridLimit);
  if (latent_decode_units<R>(p) > kGridLimit) {
    fail(kRoute1 ? "num_groups·heads_per_group = " : "num_groups = ", latent_decode_units<R>(p),
         ", expected <= ", kGridLimit);
  }
  const std::int64_t heads = latent_decode_num_heads(p);
  const std::int64_t qd = latent_decode_query_dim<R>(p);
  const auto pointer = [&](const char* name, const auto* ptr) {
    if (ptr == nullptr) fail(name, " is null");
    if (detail::misaligned(ptr)) {
      fail(name, " = ", static_cast<const void*>(ptr), " is not aligned to ",
           alignof(decltype(*ptr)), " bytes");
    }
  };
  const auto stride = [&](const char* name, std::int64_t ld, std::int64_t width) {
    if (ld < width) fail(name, " = ", ld, ", expected >= ", width);
  };
  pointer("queries", p.queries);
  stride("ld_queries", p.ld_queries, p.query_tokens * heads * qd);
  pointer("latent_k", p.latent_k);
  stride("ld_latent_k", p.ld_latent_k, p.num_groups * p.rank_k);
  pointer("latent_v", p.latent_v);
  stride("ld_latent_v", p.ld_latent_v, p.num_groups * p.rank_v);
  pointer("seq_lens", p.seq_lens);
  pointer("out", p.out);
  stride("ld_out", p.ld_out, p.query_tokens * heads * p.rank_v);
  constexpr std::int64_t kGridX = 2147483647;  // CUDA grid x
  if (p.num_splits * latent_decode_query_blocks(p) > kGridX || heads * p.query_tokens > kGridX) {
    fail("num_splits·query blocks = ", p.num_splits * latent_decode_query_blocks(p),
         ", H·query_tokens = ", heads * p.query_tokens, ", expected <= ", kGridX);
  }
  if (kRoute1) {
    pointer("up_k", p.up_k);
    stride("ld_up_k", p.ld_up_k, p.heads_per_group * p.head_dim);
    if (p.num_groups > 1) stride("ld_up_k_group", p.ld_up_k_group, p.rank_k * p.ld_up_k);
    pointer("rope", p.rope);
    stride("ld_rope", p.ld_rope, p.rope_dim);
  }
  if (p.tokens_per_split < kLatentDecodeTile || p.tokens_per_split % kLatentDecodeTile != 0) {
    fail("tokens_per_split = ", p.tokens_per_split, ", expected a positive multiple of ",
         kLatentDecodeTile, " (plan_latent_decode_splits)");
  }
  const std::int64_t covered = p.num_splits * p.tokens_per_split;
  std::int64_t capacity = 0;
  if (p.block_table == nullptr) {
    positive("seq_stride", p.seq_stride);
    capacity = p.seq_stride;
  } else {
    pointer("block_table", p.block_table);
    positive("page_size", p.page_size);
    if (p.page_size > std::numeric_limits<std::int32_t>::max()) {
      fail("page_size = ", p.page_size, ", expected < 2^31");
    }
    positive("num_pages", p.num_pages);
    positive("ld_block_table", p.ld_block_table);
    capacity = p.ld_block_table * p.page_size;
  }
  if (p.num_splits > 1) {
    pointer("workspace", p.workspace);
    const std::int64_t need =
        latent_decode_workspace_bytes(p.batch, heads, p.rank_v, p.num_splits, p.query_tokens);
    if (p.workspace_bytes < need) {
      fail("workspace_bytes = ", p.workspace_bytes, ", expected >= ", need,
           " (latent_decode_workspace_bytes for ", p.num_splits, " splits)");
    }
  }
  const std::int64_t smem = latent_decode_smem_bytes<R>(p);
  if (smem > max_smem_bytes) {
    fail("rank_k = ", p.rank_k, ", rank_v = ", p.rank_v, ", head_dim = ", p.head_dim, " need ",
         smem, " bytes of shared memory per CTA, the device allows ", max_smem_bytes);
  }
  if (!host.seq_lens.empty()) {
    if (static_cast<std::int64_t>(host.seq_lens.size()) != p.batch) {
      fail("host seq_lens has ", host.seq_lens.size(), " entries, expected batch = ", p.batch);
    }
    for (std::size_t b = 0; b < host.seq_lens.size(); ++b) {
      const std::int64_t n = host.seq_lens[b];
      if (n < p.query_tokens || n > capacity) {
        fail("seq_lens[", b, "] = ", n, ", expected ", p.query_tokens, "..", capacity,
             p.block_table == nullptr ? " (seq_stride)" : " (ld_block_table·page_size)");
      }
      if (n > covered) {
        fail("seq_lens[", b, "] = ", n, " is past num_splits·tokens_per_split = ", covered);
      }
      if (kRoute1 && n > p.rope_rows) {
        fail("seq_lens[", b, "] = ", n, " is past the RoPE table (rope_rows = ", p.rope_rows, ")");
      }
      if (p.block_table != nullptr && !host.block_table.empty()) {
        if (static_cast<std::int64_t>(host.block_table.size()) < p.batch * p.ld_block_table) {
          fail("host block_table has ", host.block_table.size(), " entries, expected ",
               p.batch * p.ld_block_table, " (batch·ld_block_table)");
        }
        const std::int64_t pages = (n + p.page_size - 1) / p.page_size;
        for (std::int64_t slot = 0; slot < pages; ++slot) {
          const std::int64_t page =
              host.block_table[b * static_cast<std::size_t>(p.ld_block_table) +
                               static_cast<std::size_t>(slot)];
          if (page < 0 || page >= p.num_pages) {
            fail("block_table[", b, "][", slot, "] = ", page, ", expected a page in 0..",
                 p.num_pages - 1, " (num_pages)");
          }
        }
      }
    }
  }
}

/// Runs the decode on the host exactly as the CUDA kernels decompose it (every CTA, its threads
/// one after the other, then the merge): the reference the GPU is compared with, and a check of
/// the decomposition without a GPU. `p` holds host pointers; validates like the CUDA wrapper.
/// `steps` runs each CTA step (CtaSteps: threads 0..127 in order); any thread count or order must
/// give the same bits, since every output element is one thread's fixed loop (tests check it).
template <LatentRoute R, LatentElement S, class Steps = CtaSteps>
void latent_decode_host(const LatentDecodeParams<S>& p, const LatentDecodeHostData& host,
                        const Steps& steps = Steps{}) {
  check_latent_decode_params<R>(p, host, std::numeric_limits<std::int64_t>::max(),
                                "latentkv::latent_decode_host");
  std::vector<float> smem(static_cast<std::size_t>(latent_decode_smem_bytes<R>(p)) / sizeof(float));
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t unit = 0; unit < latent_decode_units<R>(p); ++unit) {
      for (std::int64_t block = 0; block < latent_decode_query_blocks(p); ++block) {
        for (std::int64_t split = 0; split < p.num_splits; ++split) {
          latent_decode_cta<R>(p, latent_decode_unit<R>(p, split, unit, b, block), smem.data(),
                               steps);
        }
      }
    }
  }
  if (p.num_splits == 1) return;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t token = 0; token < p.query_tokens; ++token) {
      for (std::int64_t i = 0; i < latent_decode_num_heads(p); ++i) {
        for (std::int64_t d = 0; d < p.rank_v; ++d) latent_decode_merge(p, b, token, i, d);
      }
    }
  }
}

}  // namespace latentkv
