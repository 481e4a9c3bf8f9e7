// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// A seeded batched-decode problem for core/latent_decode.hpp and cuda/latent_attention.cuh tests:
// host buffers in the contiguous or paged layout (shuffled pages, padded strides), the params
// that point at them, and references: the CPU kernel (route 1, one run_latent_attention call per
// sequence on that sequence's contiguous latents) and a float64 loop (route 2), both causal over
// each sequence's last Q tokens.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "latentkv/attention/latent_attention.hpp"
#include "latentkv/core/latent_decode.hpp"

namespace latentkv::test {

struct DecodeCase {
  std::vector<std::int32_t> lens = {1, 17};  // n_b per sequence
  bool paged = false;
  std::int64_t page_size = 16;
  std::int64_t splits = 1;  // requested; tokens_per_split rounds up to whole tiles
  std::int64_t num_groups = 2;
  std::int64_t heads_per_group = 2;
  std::int64_t group_size = 3;
  std::int64_t head_dim = 64;
  std::int64_t rope_dim = 64;
  std::int64_t rank_k = 24;
  std::int64_t rank_v = 20;
  std::int64_t query_tokens = 1;  // Q > 1: chunked causal prefill of each sequence's last Q
  std::int64_t query_block = 1;
  std::uint32_t seed = 11;
};

template <LatentElement S>
struct DecodeProblem {
  DecodeCase c;
  LatentRoute route;
  std::int64_t batch, heads, query_dim, max_len, width_k, width_v;
  std::vector<std::vector<S>> latent_k_of, latent_v_of;  // per sequence (n_b, G·r) contiguous
  std::vector<S> latent_k, latent_v;                     // the cache, in c's layout
  std::vector<std::int32_t> seq_lens, block_table;
  std::vector<float> queries, up_k, rope, out, workspace;
  std::int64_t ld_latent_k, ld_latent_v, seq_stride = 0, ld_block_table = 0, num_pages = 0;
  std::int64_t num_splits, tokens_per_split;

  DecodeProblem(const DecodeCase& dc, LatentRoute r) : c(dc), route(r) {
    std::mt19937 rng(c.seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    batch = static_cast<std::int64_t>(c.lens.size());
    heads = c.num_groups * c.heads_per_group * c.group_size;
    query_dim = route == LatentRoute::kRebuildKeys ? c.head_dim : c.rank_k;
    max_len = *std::max_element(c.lens.begin(), c.lens.end());
    width_k = c.num_groups * c.rank_k;
    width_v = c.num_groups * c.rank_v;
    ld_latent_k = width_k + 3;
    ld_latent_v = width_v + 1;
    seq_lens = c.lens;
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int64_t n = c.lens[static_cast<std::size_t>(b)];
      auto& k = latent_k_of.emplace_back(static_cast<std::size_t>(n * width_k));
      auto& v = latent_v_of.emplace_back(static_cast<std::size_t>(n * width_v));
      for (S& x : k) x = latent_from_float<S>(normal(rng));
      for (S& x : v) x = latent_from_float<S>(normal(rng));
    }
    // Rows of the cache: sequence b's token t → row.
    std::vector<std::vector<std::int64_t>> row_of(static_cast<std::size_t>(batch));
    std::int64_t rows = 0;
    if (!c.paged) {
      seq_stride = max_len + 5;
      rows = batch * seq_stride;
      for (std::int64_t b = 0; b < batch; ++b) {
        for (std::int64_t t = 0; t < c.lens[static_cast<std::size_t>(b)]; ++t) {
          row_of[static_cast<std::size_t>(b)].push_back(b * seq_stride + t);
        }
      }
    } else {
      ld_block_table = (max_len + c.page_size - 1) / c.page_size + 1;
      std::int64_t used = 0;
      for (std::int32_t n : c.lens) used += (n + c.page_size - 1) / c.page_size;
      num_pages = used + 3;
      std::vector<std::int32_t> pages(static_cast<std::size_t>(num_pages));
      std::iota(pages.begin(), pages.end(), 0);
      std::shuffle(pages.begin(), pages.end(), rng);
      block_table.assign(static_cast<std::size_t>(batch * ld_block_table), 0);
      std::size_t next = 0;
      for (std::int64_t b = 0; b < batch; ++b) {
        const std::int64_t n = c.lens[static_cast<std::size_t>(b)];
        for (std::int64_t slot = 0; slot < (n + c.page_size - 1) / c.page_size; ++slot) {
          block_table[static_cast<std::size_t>(b * ld_block_table + slot)] = pages[next++];
        }
        for (std::int64_t t = 0; t < n; ++t) {
          row_of[static_cast<std::size_t>(b)].push_back(
              block_table[static_cast<std::size_t>(b * ld_block_table + t / c.page_size)] *
                  c.page_size +
              t % c.page_size);
        }
      }
      rows = num_pages * c.page_size;
    }
    latent_k.assign(static_cast<std::size_t>(rows * ld_latent_k), latent_from_float<S>(1e4f));
    latent_v.assign(static_cast<std::size_t>(rows * ld_latent_v), latent_from_float<S>(1e4f));
    for (std::int64_t b = 0; b < batch; ++b) {
      const auto& rb = row_of[static_cast<std::size_t>(b)];
      for (std::size_t t = 0; t < rb.size(); ++t) {
        std::copy_n(latent_k_of[static_cast<std::size_t>(b)].begin() +
                        static_cast<std::ptrdiff_t>(t) * width_k,
                    width_k, latent_k.begin() + rb[t] * ld_latent_k);
        std::copy_n(latent_v_of[static_cast<std::size_t>(b)].begin() +
                        static_cast<std::ptrdiff_t>(t) * width_v,
                    width_v, latent_v.begin() + rb[t] * ld_latent_v);
      }
    }
    queries.resize(static_cast<std::size_t>(batch * c.query_tokens * heads * query_dim));
    for (float& x : queries) x = normal(rng);
    const std::int64_t sh = c.heads_per_group * c.head_dim;
    up_k.resize(static_cast<std::size_t>(c.num_groups * c.rank_k * sh));
    const float up_scale = 1.0f / std::sqrt(static_cast<float>(c.rank_k));
    for (float& x : up_k) x = normal(rng) * up_scale;
    rope.resize(static_cast<std::size_t>(max_len * c.rope_dim));
    for (std::int64_t t = 0; t < max_len; ++t) {
      rope_table_row(rope.data() + t * c.rope_dim, t, static_cast<int>(c.rope_dim), 1e4f);
    }
    out.assign(static_cast<std::size_t>(batch * c.query_tokens * heads * c.rank_v),
               std::numeric_limits<float>::quiet_NaN());
    const std::int64_t wanted = std::max<std::int64_t>(1, c.splits);
    tokens_per_split = ((max_len + wanted - 1) / wanted + kLatentDecodeTile - 1) /
                       kLatentDecodeTile * kLatentDecodeTile;
    num_splits = (max_len + tokens_per_split - 1) / tokens_per_split;
    workspace.assign(
        static_cast<std::size_t>(
            latent_decode_workspace_bytes(batch, heads, c.rank_v, num_splits, c.query_tokens) / 4),
        std::numeric_limits<float>::quiet_NaN());
  }

  [[nodiscard]] float scale() const { return 1.0f / std::sqrt(static_cast<float>(c.head_dim)); }

  /// Params over the host buffers.
  [[nodiscard]] LatentDecodeParams<S> params() {
    LatentDecodeParams<S> p;
    p.queries = queries.data();
    p.latent_k = latent_k.data();
    p.latent_v = latent_v.data();
    p.up_k = up_k.data();
    p.rope = rope.data();
    p.seq_lens = seq_lens.data();
    p.block_table = c.paged ? block_table.data() : nullptr;
    p.out = out.data();
    p.workspace = workspace.empty() ? nullptr : workspace.data();
    p.ld_queries = c.query_tokens * heads * query_dim;
    p.ld_latent_k = ld_latent_k;
    p.ld_latent_v = ld_latent_v;
    p.ld_up_k = c.heads_per_group * c.head_dim;
    p.ld_up_k_group = c.rank_k * p.ld_up_k;
    p.ld_rope = c.rope_dim;
    p.rope_rows = max_len;
    p.ld_block_table = ld_block_table;
    p.ld_out = c.query_tokens * heads * c.rank_v;
    p.seq_stride = seq_stride;
    p.page_size = c.paged ? c.page_size : 0;
    p.num_pages = num_pages;
    p.workspace_bytes = static_cast<std::int64_t>(workspace.size() * sizeof(float));
    p.batch = batch;
    p.num_groups = c.num_groups;
    p.heads_per_group = c.heads_per_group;
    p.group_size = c.group_size;
    p.head_dim = c.head_dim;
    p.rope_dim = c.rope_dim;
    p.rank_k = c.rank_k;
    p.rank_v = c.rank_v;
    p.num_splits = num_splits;
    p.tokens_per_split = tokens_per_split;
    p.query_tokens = c.query_tokens;
    p.query_block = c.query_block;
    p.scale = scale();
    return p;
  }

  [[nodiscard]] LatentDecodeHostData host_data() const {
    return {std::span<const std::int32_t>(seq_lens), std::span<const std::int32_t>(block_table)};
  }

  /// Route 1 by the CPU kernel: (batch, Q, H, r_v).
  [[nodiscard]] std::vector<float> reference_route1() const {
    std::vector<float> ref(out.size());
    const std::int64_t sg = c.heads_per_group * c.group_size;
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int64_t n = c.lens[static_cast<std::size_t>(b)];
      std::vector<LatentAttentionParams<S>> groups(static_cast<std::size_t>(c.num_groups));
      for (std::int64_t j = 0; j < c.num_groups; ++j) {
        LatentAttentionParams<S>& p = groups[static_cast<std::size_t>(j)];
        const std::int64_t q_tokens = c.query_tokens;
        p.queries = queries.data() + b * q_tokens * heads * c.head_dim + j * sg * c.head_dim;
        p.ld_queries = heads * c.head_dim;
        p.latent_k = latent_k_of[static_cast<std::size_t>(b)].data() + j * c.rank_k;
        p.ld_latent_k = width_k;
        p.up_k = up_k.data() + j * c.rank_k * c.heads_per_group * c.head_dim;
        p.ld_up_k = c.heads_per_group * c.head_dim;
        p.latent_v = latent_v_of[static_cast<std::size_t>(b)].data() + j * c.rank_v;
        p.ld_latent_v = width_v;
        p.rope = rope.data();
        p.ld_rope = c.rope_dim;
        p.out = ref.data() + b * q_tokens * heads * c.rank_v + j * sg * c.rank_v;
        p.ld_out = heads * c.rank_v;
        p.tokens = q_tokens;
        p.length = n;
        p.first_position = n - q_tokens;
        p.heads_per_group = c.heads_per_group;
        p.group_size = c.group_size;
        p.head_dim = c.head_dim;
        p.rope_dim = c.rope_dim;
        p.rank_k = c.rank_k;
        p.rank_v = c.rank_v;
        p.scale = scale();
      }
      run_latent_attention(std::span<const LatentAttentionParams<S>>(groups));
    }
    return ref;
  }

  /// Route 2 in float64: (batch, Q, H, r_v), query token q at position n_b − Q + q seeing keys
  /// 0 .. its position.
  [[nodiscard]] std::vector<float> reference_route2() const {
    std::vector<float> ref(out.size());
    const std::int64_t sg = c.heads_per_group * c.group_size;
    const std::int64_t q_tokens = c.query_tokens;
    for (std::int64_t b = 0; b < batch; ++b) {
      const auto& k = latent_k_of[static_cast<std::size_t>(b)];
      const auto& v = latent_v_of[static_cast<std::size_t>(b)];
      for (std::int64_t token = 0; token < q_tokens; ++token) {
        const std::int64_t n = c.lens[static_cast<std::size_t>(b)] - q_tokens + token + 1;
        for (std::int64_t i = 0; i < heads; ++i) {
          const std::int64_t j = i / sg;
          const std::int64_t row = (b * q_tokens + token) * heads + i;
          std::vector<double> score(static_cast<std::size_t>(n));
          double top = -1e300;
          for (std::int64_t t = 0; t < n; ++t) {
            double dot = 0.0;
            for (std::int64_t a = 0; a < c.rank_k; ++a) {
              dot += static_cast<double>(queries[static_cast<std::size_t>(row * c.rank_k + a)]) *
                     latent_to_float(k[static_cast<std::size_t>(t * width_k + j * c.rank_k + a)]);
            }
            score[static_cast<std::size_t>(t)] = dot * scale();
            top = std::max(top, score[static_cast<std::size_t>(t)]);
          }
          double den = 0.0;
          for (double& s : score) den += (s = std::exp(s - top));
          for (std::int64_t d = 0; d < c.rank_v; ++d) {
            double num = 0.0;
            for (std::int64_t t = 0; t < n; ++t) {
              num += score[static_cast<std::size_t>(t)] *
                     latent_to_float(v[static_cast<std::size_t>(t * width_v + j * c.rank_v + d)]);
            }
            ref[static_cast<std::size_t>(row * c.rank_v + d)] = static_cast<float>(num / den);
          }
        }
      }
    }
    return ref;
  }
};

/// max_i |a_i − b_i| (NaN anywhere → +inf).
inline float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float worst = a.size() == b.size() ? 0.0f : std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const float d = std::abs(a[i] - b[i]);
    worst = std::isnan(d) ? std::numeric_limits<float>::infinity() : std::max(worst, d);
  }
  return worst;
}

inline float max_abs(const std::vector<float>& a) {
  float worst = 0.0f;
  for (float x : a) worst = std::max(worst, std::abs(x));
  return worst;
}

}  // namespace latentkv::test
