// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Seeded random CompressedModels of a small SmolLM2-like shape for the checkpoint tests (not
// public API): L = 4, d = 64, n_q = 6, n_kv = 3, h = 16 (g = 2); s heads per group (3: joint,
// 1: per head), G = 3 / s groups, max_rank = min(d, s·h). Factors are Gaussian (not SVD factors:
// the format does not care), spectra positive and descending, every rank distinct per layer and
// group so a mix-up of layers, sides or groups shows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "latentkv/compress/compressed_model.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/model_config.hpp"
#include "latentkv/schedule/rank_plan.hpp"

namespace latentkv::testing {

[[nodiscard]] inline ModelConfig small_compressed_config() {
  ModelConfig c;
  c.architecture = "llama";
  c.num_layers = 4;
  c.d_model = 64;
  c.num_heads = 6;
  c.num_kv_heads = 3;
  c.head_dim = 16;
  c.rope_dim = 16;
  c.ffn_dim = 160;
  c.vocab_size = 300;
  c.context_length = 2048;
  c.rope_base = 100000.0f;
  c.norm_eps = 1e-5f;
  c.tied_embeddings = true;
  return c;
}

/// The plan of random_compressed_model(s, dense): distinct ranks in 1..max_rank, dense layers at
/// max_rank.
[[nodiscard]] inline RankPlan small_compressed_plan(Index heads_per_group,
                                                    const std::vector<Index>& dense = {}) {
  const ModelConfig c = small_compressed_config();
  RankPlan plan;
  plan.schedule = "test";
  plan.budget_requested = 0.5;
  plan.num_kv_heads = c.num_kv_heads;
  plan.head_dim = c.head_dim;
  plan.heads_per_group = heads_per_group;
  const Index max_rank = std::min(c.d_model, heads_per_group * c.head_dim);
  for (Index l = 0; l < c.num_layers; ++l) {
    const bool is_dense = std::find(dense.begin(), dense.end(), l) != dense.end();
    LayerRanks ranks;
    for (Index g = 0; g < plan.num_groups(); ++g) {
      ranks.k.push_back(is_dense ? max_rank : (3 + 5 * l + 2 * g) % max_rank + 1);
      ranks.v.push_back(is_dense ? max_rank : (7 + 3 * l + 5 * g) % max_rank + 1);
    }
    plan.layers.push_back(ranks);
  }
  return plan;
}

[[nodiscard]] inline RowMatrix<float> gaussian_rows(Index rows, Index cols, std::mt19937_64& gen) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  RowMatrix<float> m(rows, cols);
  for (Index k = 0; k < m.size(); ++k) m.data()[k] = normal(gen);
  return m;
}

[[nodiscard]] inline Vector<double> descending_spectrum(Index n, std::mt19937_64& gen) {
  std::uniform_real_distribution<double> u(0.01, 10.0);
  Vector<double> s(n);
  for (Index i = 0; i < n; ++i) s(i) = u(gen);
  std::sort(s.data(), s.data() + n, [](double a, double b) { return a > b; });
  return s;
}

[[nodiscard]] inline CompressedModel random_compressed_model(Index heads_per_group,
                                                             const std::vector<Index>& dense = {},
                                                             std::uint64_t seed = 1) {
  std::mt19937_64 gen(seed);
  CompressedModel m;
  m.config = small_compressed_config();
  m.plan = small_compressed_plan(heads_per_group, dense);
  m.factorizer = "svd";
  m.grouping = heads_per_group == m.config.num_kv_heads ? "joint"
               : heads_per_group == 1                   ? "per-head"
                                      : "group:" + std::to_string(heads_per_group);
  const Index d = m.config.d_model;
  const Index sh = heads_per_group * m.config.head_dim;
  const Index out_cols = heads_per_group * m.config.group_size() * d;
  for (Index l = 0; l < m.config.num_layers; ++l) {
    CompressedLayer layer;
    layer.compressed = std::find(dense.begin(), dense.end(), l) == dense.end();
    if (layer.compressed) {
      const LayerRanks& r = m.plan.layers[static_cast<std::size_t>(l)];
      for (std::size_t g = 0; g < r.k.size(); ++g) {
        layer.k.push_back({gaussian_rows(d, r.k[g], gen), gaussian_rows(r.k[g], sh, gen),
                           descending_spectrum(m.max_rank(), gen)});
      }
      for (std::size_t g = 0; g < r.v.size(); ++g) {
        layer.v.push_back({gaussian_rows(d, r.v[g], gen), gaussian_rows(r.v[g], out_cols, gen),
                           descending_spectrum(m.max_rank(), gen)});
      }
    }
    m.layers.push_back(std::move(layer));
  }
  return m;
}

/// A smaller plan of the same layout: every compressed rank roughly halved (at least 1).
[[nodiscard]] inline RankPlan halved(const CompressedModel& m) {
  RankPlan smaller = m.plan;
  smaller.schedule = "halved";
  for (std::size_t l = 0; l < smaller.layers.size(); ++l) {
    if (!m.layers[l].compressed) continue;
    for (Index& r : smaller.layers[l].k) r = std::max<Index>(1, r / 2);
    for (Index& r : smaller.layers[l].v) r = std::max<Index>(1, (r + 1) / 2);
  }
  return smaller;
}

}  // namespace latentkv::testing
