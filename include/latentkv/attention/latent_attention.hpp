// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Latent causal attention on the CPU, route 1 (DESIGN §3: pre-RoPE latents rebuilt in the kernel)
// and route 2 (params.route = kProjected: post-RoPE projected latents, project/; the queries come
// projected, scores are q̃·c^k over the group's shared latents, no key is rebuilt; the rest of the
// loop below is the same).
// One head group j of one layer (compress/compressed_model.hpp):
//   s KV heads share the latents, g = n_q / n_kv query heads per KV head, query head m = 0..s·g−1
//   of the group reads KV head e = m / g of the group
//   queries Q:   (tokens, s·g·h)  already rotated; query t sits at absolute position p0 + t
//   latent C^k:  (length, r_k)    pre-RoPE key latents, key u at position u
//   B_k:         (r_k, s·h)       k_u = RoPE_u(c^k_u·B_k) per KV head (h channels each)
//   latent C^v:  (length, r_v)    value latents, shared by the group's s KV heads
//   out O:       (tokens, s·g·r_v) O_{t,m} = Σ_{u ≤ p0+t} softmax_u(scale·q_{t,m}·k_{u,e(m)})·c^v_u
// O_{t,m} is query head m's output in its value group's latent space: it meets W̃_o,j[:, block m]
// directly (DESIGN §2); the value vectors are never formed.
//
// Work split: one task per (group, block of kLatentQueryBlock queries). A task walks the causal
// span of its block in key blocks of kLatentKeyBlock tokens: widen the block's latents to fp32,
// rebuild its keys K_blk = C^k_blk·B_k (kb, s·h) with one product, rotate each row at its position
// from a precomputed table (the fp32 cos/sin of core/rope.hpp, so keys equal DenseKvCache's),
// score the g query heads of each KV head, update the online softmax (fp32 running max and sum per
// query row) and accumulate P·C^v_blk in latent space. The expanded keys (kb·s·h floats) and the
// scores stay in L1/L2; the whole key matrix never exists. Rebuilding costs r_k·s·h MACs per key
// per task, amortized over the block's rows (DESIGN §7: on a CPU this path is compute-bound).
// Tasks run longest-first under OpenMP (LATENTKV_OMP). When there are fewer tasks than threads
// (decode: one query row), each span is also cut into key ranges computed as separate tasks whose
// unnormalized (acc, max, sum) are merged afterwards (split-KV, DESIGN §7).
//
// Storage: latents in fp32 (`float`), fp16 (`std::uint16_t` holding IEEE binary16 bits) or bf16
// (`Bf16`) (core/latent_storage.hpp), widened to fp32 one key block at a time, or quantized codes
// (a LatentBlockDecoder, quant/latent_codec.hpp) decoded one key block at a time into the same
// fp32 scratch; all arithmetic is fp32. The vocabulary the CUDA kernels share
// (LatentAttentionParams, storage types, the RoPE table, the causal rule, the online softmax and
// its merge) lives in core/.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "latentkv/core/config.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/core/half.hpp"
#include "latentkv/core/latent_attention_params.hpp"
#include "latentkv/core/latent_storage.hpp"
#include "latentkv/core/online_softmax.hpp"
#include "latentkv/core/rope.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/linalg/parallel.hpp"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace latentkv {

/// Queries per latent-attention task: large enough to amortize rebuilding each key block.
inline constexpr Index kLatentQueryBlock = 64;
/// Cached tokens rebuilt at a time: their keys (kLatentKeyBlock·s·h floats) stay cache-resident.
inline constexpr Index kLatentKeyBlock = 128;

/// RoPE cos/sin of positions first_position .. first_position + rows − 1:
/// (rows, rope_dim), row p = [cos(p·θ_0) .. cos(p·θ_{r/2−1}), sin(p·θ_0) .. sin(p·θ_{r/2−1})]
/// (core/rope.hpp's table format, rope_table_row), the same fp32 values rope_rotate_rows uses.
[[nodiscard]] inline RowMatrix<float> rope_table(Index rows, Index rope_dim, float base,
                                                 Index first_position = 0) {
  if (rows < 0 || rope_dim < 2 || rope_dim % 2 != 0 || first_position < 0) {
    detail::raise<InvalidArgument>("latentkv::rope_table", "rows = ", rows,
                                   ", rope_dim = ", rope_dim, ", first_position = ", first_position,
                                   ", expected rows >= 0, an even rope_dim >= 2, position >= 0");
  }
  RowMatrix<float> table(rows, rope_dim);
  for (Index t = 0; t < rows; ++t) {
    rope_table_row(table.data() + t * rope_dim, first_position + t, static_cast<int>(rope_dim),
                   base);
  }
  return table;
}

namespace detail {

template <class T>
using StridedMap = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;

/// Widens n fp16 numbers to fp32: the F16C instruction 8 at a time when the build has it (exact
/// for every non-NaN input, as fp16_bits_to_float_fast; measured 3× faster route-2 fp16 decode
/// than the portable loop, benchmarks/attention), else latent_to_float.
inline void widen_fp16(const std::uint16_t* from, float* to, Index n) noexcept {
  Index c = 0;
#if defined(__F16C__)
  for (; c + 8 <= n; c += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + c));
    _mm256_storeu_ps(to + c, _mm256_cvtph_ps(h));
  }
#endif
  for (; c < n; ++c) to[c] = latent_to_float(from[c]);
}

/// Per-thread scratch of the kernel (reused across tasks).
struct LatentWorkspace {
  RowMatrix<float> queries;  // (s·g·rows, h) scaled queries, head-major
  RowMatrix<float> latent;   // (kb, max(r_k, r_v)) widened latents (fp16 storage only)
  RowMatrix<float> values;   // (kb, r_v) widened value latents (fp16 storage only)
  RowMatrix<float> keys;     // (kb, s·h) rebuilt, rotated keys
  RowMatrix<float> scores;   // (s·g·rows, kb) scores, then probabilities
  RowMatrix<float> acc;      // (s·g·rows, r_v) unnormalized latent outputs
  Vector<float> max;         // (s·g·rows) running max of scale·q·k
  Vector<float> sum;         // (s·g·rows) running Σ exp(score − max)
};

/// Rows [k0, k0 + kb) of a latent matrix as fp32: a view of the storage (float), widened into
/// `buffer` (fp16) or decoded into it (a LatentBlockDecoder: `data` is the group's view).
template <LatentStorage S>
StridedMap<float> latent_block(const S* data, Index ld, Index k0, Index kb, Index rank,
                               RowMatrix<float>& buffer) {
  if constexpr (std::same_as<S, float>) {
    return StridedMap<float>(data + k0 * ld, kb, rank, Eigen::OuterStride<>(ld));
  } else if constexpr (LatentBlockDecoder<S>) {
    buffer.resize(kb, rank);
    data->decode_rows(k0, kb, buffer.data());
    return StridedMap<float>(buffer.data(), kb, rank, Eigen::OuterStride<>(rank));
  } else if constexpr (std::same_as<S, std::uint16_t>) {
    buffer.resize(kb, rank);
    for (Index t = 0; t < kb; ++t) widen_fp16(data + (k0 + t) * ld, buffer.data() + t * rank, rank);
    return StridedMap<float>(buffer.data(), kb, rank, Eigen::OuterStride<>(rank));
  } else {
    buffer.resize(kb, rank);
    for (Index t = 0; t < kb; ++t) {
      const S* row = data + (k0 + t) * ld;
      float* to = buffer.data() + t * rank;
      for (Index c = 0; c < rank; ++c) to[c] = latent_to_float(row[c]);
    }
    return StridedMap<float>(buffer.data(), kb, rank, Eigen::OuterStride<>(rank));
  }
}

/// Query rows [t0, t0 + rows) of one group against keys [key_begin, key_end) (causally masked):
/// leaves the unnormalized ws.acc, ws.max and ws.sum of the (s·g·rows) stacked rows.
template <LatentStorage S>
void latent_attention_span(const LatentAttentionParams<S>& p, Index t0, Index rows, Index key_begin,
                           Index key_end, LatentWorkspace& ws) {
  const Index s = p.heads_per_group;
  const Index h = p.head_dim;
  const Index heads = s * p.group_size;
  const Index n = heads * rows;              // stacked query rows: head m's row t at m·rows + t
  const Index per_kv = p.group_size * rows;  // stacked rows of one KV head
  const Index half = p.rope_dim / 2;
  constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

  const bool projected = p.route == LatentRoute::kProjected;
  const Index width = projected ? p.rank_k : h;  // of one query head
  const StridedMap<float> queries(p.queries + t0 * p.ld_queries, rows, heads * width,
                                  Eigen::OuterStride<>(p.ld_queries));
  ws.queries.resize(n, width);
  for (Index m = 0; m < heads; ++m) {
    ws.queries.middleRows(m * rows, rows) = queries.middleCols(m * width, width) * p.scale;
  }
  const StridedMap<float> up_k(p.up_k, projected ? 0 : p.rank_k, projected ? 0 : s * h,
                               Eigen::OuterStride<>(std::max<std::int64_t>(p.ld_up_k, 1)));
  ws.acc.setZero(n, p.rank_v);
  ws.max.setConstant(n, kMinusInf);
  ws.sum.setZero(n);

  const Index first_query = p.first_position + t0;  // position of the block's first query
  for (Index k0 = key_begin; k0 < key_end; k0 += kLatentKeyBlock) {
    const Index kb = std::min(kLatentKeyBlock, key_end - k0);
    ws.scores.resize(n, kb);
    if (projected) {
      // Route 2: every query head of the group scores the shared latents directly: (n, kb).
      ws.scores.noalias() =
          ws.queries *
          latent_block(p.latent_k, p.ld_latent_k, k0, kb, p.rank_k, ws.latent).transpose();
    } else {
      // Rebuild and rotate the block's keys: (kb, s·h).
      ws.keys.resize(kb, s * h);
      ws.keys.noalias() =
          latent_block(p.latent_k, p.ld_latent_k, k0, kb, p.rank_k, ws.latent) * up_k;
      for (Index u = 0; u < kb; ++u) {
        const float* table_row = p.rope + (k0 + u) * p.ld_rope;
        for (Index e = 0; e < s; ++e) {
          float* x = ws.keys.data() + u * s * h + e * h;
          for (Index i = 0; i < half; ++i)
            rope_rotate_pair_from_table(x[i], x[i + half], table_row, i, half);
        }
      }
      // Scores of every query head against its KV head's keys: (n, kb).
      for (Index e = 0; e < s; ++e) {
        ws.scores.middleRows(e * per_kv, per_kv).noalias() =
            ws.queries.middleRows(e * per_kv, per_kv) * ws.keys.middleCols(e * h, h).transpose();
      }
    }
    // Online softmax: rescale what was accumulated when a row's maximum grows.
    const bool masked = k0 + kb - 1 > first_query;  // some key is after some query
    for (Index i = 0; i < n; ++i) {
      const Index visible = masked ? causal_visible_keys(first_query + i % rows, k0, kb) : kb;
      auto row = ws.scores.row(i);
      if (visible == 0) {
        row.setZero();
        continue;
      }
      OnlineSoftmaxState state{ws.max(i), ws.sum(i)};
      const float correction = online_softmax_rescale(state, row.head(visible).maxCoeff());
      row.head(visible) = (row.head(visible).array() - state.max).exp().matrix();
      row.tail(kb - visible).setZero();
      ws.sum(i) = state.sum + row.head(visible).sum();
      if (correction != 1.0f) ws.acc.row(i) *= correction;  // 0 for the first block
      ws.max(i) = state.max;
    }
    ws.acc.noalias() +=
        ws.scores * latent_block(p.latent_v, p.ld_latent_v, k0, kb, p.rank_v, ws.values);
  }
}

/// Normalizes stacked accumulators into the output: head m's row t → out(t0 + t, m·r_v ..).
template <LatentStorage S>
void write_latent_output(const LatentAttentionParams<S>& p, Index t0, Index rows,
                         const RowMatrix<float>& acc, const Vector<float>& sum) {
  const Index heads = p.heads_per_group * p.group_size;
  for (Index m = 0; m < heads; ++m) {
    for (Index t = 0; t < rows; ++t) {
      Eigen::Map<Eigen::RowVectorXf> to(p.out + (t0 + t) * p.ld_out + m * p.rank_v, p.rank_v);
      to = acc.row(m * rows + t) / sum(m * rows + t);
    }
  }
}

/// One key split's unnormalized result (split-KV decode).
struct LatentPartial {
  RowMatrix<float> acc;  // (s·g·rows, r_v)
  Vector<float> max;     // (s·g·rows)
  Vector<float> sum;     // (s·g·rows)
};

}  // namespace detail

/// Runs the latent kernel for every group in `groups` (one OpenMP region for all of them).
/// `key_splits` cuts each query block's causal span into that many ranges of whole key blocks,
/// computed as separate tasks and merged by their (max, sum) (split-KV, DESIGN §7); 0 chooses:
/// 1 unless there are fewer (group, query block) tasks than threads (decode), then enough to
/// give every thread work, each range at least 4 key blocks. Checks each params struct
/// (extents, strides, null pointers) and throws InvalidArgument naming the group; the data behind
/// the pointers is the caller's responsibility.
template <LatentStorage S>
void run_latent_attention(std::span<const LatentAttentionParams<S>> groups, Index key_splits = 0) {
  constexpr const char* kWhere = "latentkv::run_latent_attention";
  if (key_splits < 0) {
    detail::raise<InvalidArgument>(kWhere, "key_splits = ", key_splits, ", expected >= 0");
  }
  std::vector<Index> first_block(groups.size() + 1, 0);  // blocks of group j: [first_block[j], +1)
  double work = 0.0;
  Index longest = 0;
  for (std::size_t j = 0; j < groups.size(); ++j) {
    const LatentAttentionParams<S>& p = groups[j];
    check_latent_params(p, j, kWhere);
    first_block[j + 1] = first_block[j] + (p.tokens + kLatentQueryBlock - 1) / kLatentQueryBlock;
    const double keys = static_cast<double>(p.first_position + p.tokens);
    const double heads = static_cast<double>(p.heads_per_group * p.group_size);
    if (p.route == LatentRoute::kProjected) {
      work +=
          keys * static_cast<double>(p.tokens) * heads * static_cast<double>(p.rank_k + p.rank_v);
    } else {
      work += keys *
              (static_cast<double>(p.tokens) * heads * static_cast<double>(p.head_dim + p.rank_v) +
               static_cast<double>(p.rank_k * p.heads_per_group * p.head_dim));
    }
    if (p.tokens > 0) longest = std::max(longest, p.first_position + p.tokens);
  }
  const Index num_blocks = first_block.back();
  if (num_blocks == 0) return;
  Index splits = key_splits;
  if (splits == 0) {
    int threads = max_threads();
#if defined(_OPENMP)
    if (omp_in_parallel()) threads = 1;
#endif
    splits = 1;
    if (threads > 1 && num_blocks < threads && work > 1e6) {
      const Index most = std::max<Index>(1, longest / (4 * kLatentKeyBlock));
      splits = std::min<Index>((2 * threads + num_blocks - 1) / num_blocks, most);
    }
  }
  const Index num_tasks = num_blocks * splits;
  std::vector<detail::LatentPartial> partials(static_cast<std::size_t>(splits > 1 ? num_tasks : 0));
  // Block b of the list (0 = group 0's last query block): its group, params and first query.
  const auto locate = [&](Index b, std::size_t& j, Index& t0) {
    j = 0;
    while (first_block[j + 1] <= b) ++j;
    const Index blocks = first_block[j + 1] - first_block[j];
    t0 = (blocks - 1 - (b - first_block[j])) * kLatentQueryBlock;  // longest spans first
  };
  [[maybe_unused]] const bool parallel = num_tasks > 1 && work > 1e6;
  LATENTKV_OMP(parallel if (parallel)) {
    detail::LatentWorkspace ws;
    LATENTKV_OMP(for schedule(dynamic, 1))
    for (Index task = 0; task < num_tasks; ++task) {
      std::size_t j = 0;
      Index t0 = 0;
      locate(task / splits, j, t0);
      const LatentAttentionParams<S>& p = groups[j];
      const Index rows = std::min(kLatentQueryBlock, p.tokens - t0);
      const Index span = p.first_position + t0 + rows;  // keys visible to the block's last query
      if (splits == 1) {
        detail::latent_attention_span(p, t0, rows, 0, span, ws);
        detail::write_latent_output(p, t0, rows, ws.acc, ws.sum);
        continue;
      }
      const Index per_split =
          (span + kLatentKeyBlock * splits - 1) / (kLatentKeyBlock * splits) * kLatentKeyBlock;
      const Index begin = std::min(span, (task % splits) * per_split);
      const Index end = std::min(span, begin + per_split);
      detail::latent_attention_span(p, t0, rows, begin, end, ws);
      detail::LatentPartial& part = partials[static_cast<std::size_t>(task)];
      part.acc = ws.acc;
      part.max = ws.max;
      part.sum = ws.sum;
    }
    if (splits > 1) {
      // Merge: M = max_q m_q, L = Σ_q l_q·e^(m_q − M), O = Σ_q acc_q·e^(m_q − M) / L.
      RowMatrix<float> acc;
      Vector<float> sum;
      LATENTKV_OMP(for schedule(dynamic, 1))
      for (Index b = 0; b < num_blocks; ++b) {
        std::size_t j = 0;
        Index t0 = 0;
        locate(b, j, t0);
        const LatentAttentionParams<S>& p = groups[j];
        const Index rows = std::min(kLatentQueryBlock, p.tokens - t0);
        const auto part = [&](Index q) -> const detail::LatentPartial& {
          return partials[static_cast<std::size_t>(b * splits + q)];
        };
        Vector<float> max = part(0).max;
        for (Index q = 1; q < splits; ++q) max = max.cwiseMax(part(q).max);
        acc.setZero(part(0).acc.rows(), part(0).acc.cols());
        sum.setZero(max.size());
        for (Index q = 0; q < splits; ++q) {
          for (Index i = 0; i < max.size(); ++i) {
            if (part(q).sum(i) == 0.0f) continue;  // no visible key in this range
            const float w = split_merge_weight(part(q).max(i), max(i));
            sum(i) += w * part(q).sum(i);
            acc.row(i) += w * part(q).acc.row(i);
          }
        }
        detail::write_latent_output(p, t0, rows, acc, sum);
      }
    }
  }
}

/// Shapes of one layer for latent_attention().
struct LatentAttentionShape {
  Index num_heads = 0;        // n_q
  Index num_kv_heads = 0;     // n_kv
  Index heads_per_group = 0;  // s (n_kv: joint, 1: per head)
  Index head_dim = 0;         // h
  Index rope_dim = 0;         // rotated channels per head
};

/// The latent attention of one layer, all G = n_kv / s groups:
///   queries:   (tokens, n_q·h) rotated, query t at position first_position + t
///   latent_k:  (length, Σ_j r_k,j) group j's latents in columns [Σ_{j'<j} r_k,j', +r_k,j)
///   up_k:      G matrices B_k,j: (r_k,j, s·h)
///   latent_v:  (length, Σ_j r_v,j), rank_v: the G widths r_v,j
///   rope:      (≥ length, rope_dim) rope_table() of positions 0..
/// Returns (tokens, Σ_j s·g·r_v,j): group j's block starts at column Σ_{j'<j} s·g·r_v,j', query
/// head i = j·s·g + m of the group at offset m·r_v,j (r_v,j numbers each). Throws
/// InvalidArgument naming the first inconsistent argument.
template <LatentStorage S>
[[nodiscard]] RowMatrix<float> latent_attention(
    const MatrixCRef<float>& queries, const Eigen::Ref<const RowMatrix<S>>& latent_k,
    std::span<const MatrixCRef<float>> up_k, const Eigen::Ref<const RowMatrix<S>>& latent_v,
    std::span<const Index> rank_v, const MatrixCRef<float>& rope, const LatentAttentionShape& shape,
    Index first_position, float scale) {
  constexpr const char* kWhere = "latentkv::latent_attention";
  const Index n_q = shape.num_heads;
  const Index n_kv = shape.num_kv_heads;
  const Index s = shape.heads_per_group;
  const Index h = shape.head_dim;
  if (n_q < 1 || n_kv < 1 || n_q % n_kv != 0 || s < 1 || n_kv % s != 0 || h < 2) {
    detail::raise<InvalidArgument>(kWhere, "num_heads = ", n_q, ", num_kv_heads = ", n_kv,
                                   ", heads_per_group = ", s, ", head_dim = ", h,
                                   ", expected positive with num_kv_heads dividing num_heads and "
                                   "heads_per_group dividing num_kv_heads");
  }
  if (shape.rope_dim < 2 || shape.rope_dim % 2 != 0 || shape.rope_dim > h) {
    detail::raise<InvalidArgument>(kWhere, "rope_dim = ", shape.rope_dim,
                                   ", expected an even number in 2..", h, " (head_dim)");
  }
  const Index groups = n_kv / s;
  const Index g = n_q / n_kv;
  if (queries.cols() != n_q * h) {
    detail::raise<InvalidArgument>(kWhere, "queries have ", queries.cols(), " columns, expected ",
                                   n_q * h, " (num_heads·head_dim = ", n_q, "·", h, ")");
  }
  if (static_cast<Index>(up_k.size()) != groups || static_cast<Index>(rank_v.size()) != groups) {
    detail::raise<InvalidArgument>(kWhere, up_k.size(), " up_k matrices and ", rank_v.size(),
                                   " value ranks, expected one per group (", groups, " groups of ",
                                   s, " KV heads)");
  }
  Index width_k = 0;
  Index width_v = 0;
  for (Index j = 0; j < groups; ++j) {
    const MatrixCRef<float>& b = up_k[static_cast<std::size_t>(j)];
    const Index rv = rank_v[static_cast<std::size_t>(j)];
    if (b.rows() < 1 || b.cols() != s * h) {
      detail::raise<InvalidArgument>(kWhere, "up_k[", j, "] is (", b.rows(), ", ", b.cols(),
                                     "), expected (rank_k >= 1, ", s * h, ") (s·head_dim)");
    }
    if (rv < 1) {
      detail::raise<InvalidArgument>(kWhere, "rank_v[", j, "] = ", rv, ", expected >= 1");
    }
    width_k += b.rows();
    width_v += rv;
  }
  if (latent_k.cols() != width_k) {
    detail::raise<InvalidArgument>(kWhere, "latent_k has ", latent_k.cols(), " columns, expected ",
                                   width_k, " (Σ_j rank_k of up_k)");
  }
  if (latent_v.cols() != width_v) {
    detail::raise<InvalidArgument>(kWhere, "latent_v has ", latent_v.cols(), " columns, expected ",
                                   width_v, " (Σ_j rank_v)");
  }
  if (latent_v.rows() != latent_k.rows()) {
    detail::raise<InvalidArgument>(kWhere, "latent_v has ", latent_v.rows(), " rows but latent_k ",
                                   latent_k.rows(), ", expected one value latent per key latent");
  }
  const Index tokens = queries.rows();
  const Index length = latent_k.rows();
  if (first_position < 0 || length < first_position + tokens) {
    detail::raise<InvalidArgument>(kWhere, "first_position = ", first_position, " with ", tokens,
                                   " queries needs >= ", first_position + tokens,
                                   " cached tokens, got ", length);
  }
  if (rope.cols() != shape.rope_dim || rope.rows() < length) {
    detail::raise<InvalidArgument>(kWhere, "rope table is (", rope.rows(), ", ", rope.cols(),
                                   "), expected (>= ", length, ", ", shape.rope_dim,
                                   ") (length, rope_dim)");
  }
  if (!std::isfinite(scale)) {
    detail::raise<InvalidArgument>(kWhere, "scale = ", scale, ", expected finite");
  }

  RowMatrix<float> out(tokens, s * g * width_v);
  if (tokens == 0) return out;
  std::vector<LatentAttentionParams<S>> params(static_cast<std::size_t>(groups));
  Index col_k = 0;
  Index col_v = 0;
  for (Index j = 0; j < groups; ++j) {
    const MatrixCRef<float>& b = up_k[static_cast<std::size_t>(j)];
    LatentAttentionParams<S>& p = params[static_cast<std::size_t>(j)];
    p.queries = queries.data() + j * s * g * h;
    p.ld_queries = queries.outerStride();
    p.latent_k = latent_k.data() + col_k;
    p.ld_latent_k = latent_k.outerStride();
    p.up_k = b.data();
    p.ld_up_k = b.outerStride();
    p.latent_v = latent_v.data() + col_v;
    p.ld_latent_v = latent_v.outerStride();
    p.rope = rope.data();
    p.ld_rope = rope.outerStride();
    p.out = out.data() + s * g * col_v;
    p.ld_out = out.outerStride();
    p.tokens = tokens;
    p.length = length;
    p.first_position = first_position;
    p.heads_per_group = s;
    p.group_size = g;
    p.head_dim = h;
    p.rope_dim = shape.rope_dim;
    p.rank_k = b.rows();
    p.rank_v = rank_v[static_cast<std::size_t>(j)];
    p.scale = scale;
    col_k += p.rank_k;
    col_v += p.rank_v;
  }
  run_latent_attention(std::span<const LatentAttentionParams<S>>(params));
  return out;
}

}  // namespace latentkv
