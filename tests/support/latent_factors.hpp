// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// A CompressedModel built from LlamaWeights by exact SVD, for tests and benchmarks of the latent
// cache (not public API; the real Compressor lives in compress/). Per layer and head group j:
//   W_k[:, group j] = U·Σ·Vᵀ (double GramEigenFactorizer, at full rank so the whole spectrum is
//   kept) A_k = U_r·Σ_r: (d, r_k),  B_k = V_rᵀ: (r_k, s·h)      (SigmaSplit::kLeft); A_v, B_v
//   likewise W̃_o,j[:, block m] = B_v[:, KV head m / g of the group]·W_o[rows of query head j·s·g +
//   m]
// `dense_layers` lists layers left uncompressed (compressed == false, plan ranks at max_rank).
// low_rank_weights() returns the same factors multiplied back (W_k ← A_k·B_k, W_v ← A_v·B_v per
// group): route 1 is exact, so a DenseKvCache on those weights is the latent cache's reference
// at any rank.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "latentkv/compress/compressed_model.hpp"
#include "latentkv/factorize/gram_eigen_factorizer.hpp"
#include "latentkv/factorize/grouping.hpp"
#include "latentkv/model/llama_weights.hpp"

namespace latentkv::testing {

/// The compressed model at `plan`'s ranks (its layout must match the weights and the grouping).
/// `low_rank` (optional): receives `weights` with W_k, W_v of compressed layers replaced by the
/// products of their factors.
template <Grouping G>
[[nodiscard]] CompressedModel latent_factors(const LlamaWeights& weights, const G& grouping,
                                             const RankPlan& plan,
                                             const std::vector<Index>& dense_layers = {},
                                             LlamaWeights* low_rank = nullptr) {
  const ModelConfig& c = weights.config;
  const HeadLayout layout{c.num_kv_heads, c.head_dim};
  const Index s = grouping.heads_per_group(c.num_kv_heads);
  const Index groups = c.num_kv_heads / s;
  const Index sg = s * c.group_size();
  const Index h = c.head_dim;
  const Index max_rank = std::min(c.d_model, s * h);
  const GramEigenFactorizer<double> svd({SigmaSplit::kLeft});
  const std::vector<Index> full(static_cast<std::size_t>(groups), max_rank);

  CompressedModel model;
  model.config = c;
  model.plan = plan;
  model.factorizer = "svd";
  model.grouping = grouping.name();
  model.layers.resize(static_cast<std::size_t>(c.num_layers));
  if (low_rank != nullptr) *low_rank = weights;
  for (Index l = 0; l < c.num_layers; ++l) {
    CompressedLayer& layer = model.layers[static_cast<std::size_t>(l)];
    if (std::find(dense_layers.begin(), dense_layers.end(), l) != dense_layers.end()) {
      layer.compressed = false;
      continue;
    }
    const AttentionWeights& w = weights.layers[static_cast<std::size_t>(l)].attention;
    const LayerRanks& ranks = plan.layers[static_cast<std::size_t>(l)];
    const RowMatrix<double> wk = w.wk.cast<double>();
    const RowMatrix<double> wv = w.wv.cast<double>();
    const auto kf = factorize_groups(svd, grouping, wk, layout, std::span<const Index>(full));
    const auto vf = factorize_groups(svd, grouping, wv, layout, std::span<const Index>(full));
    for (Index j = 0; j < groups; ++j) {
      const auto& k = kf.groups[static_cast<std::size_t>(j)];
      const auto& v = vf.groups[static_cast<std::size_t>(j)];
      const Index rk = ranks.k[static_cast<std::size_t>(j)];
      const Index rv = ranks.v[static_cast<std::size_t>(j)];
      LatentKeyGroup key;
      key.down = k.down.leftCols(rk).template cast<float>();
      key.up = k.up.topRows(rk).template cast<float>();
      key.spectrum = k.singular_values;
      LatentValueGroup value;
      value.down = v.down.leftCols(rv).template cast<float>();
      value.spectrum = v.singular_values;
      RowMatrix<double> out(rv, sg * c.d_model);
      for (Index m = 0; m < sg; ++m) {
        const Index head = j * sg + m;  // query head
        out.middleCols(m * c.d_model, c.d_model) =
            v.up.topRows(rv).middleCols((m / c.group_size()) * h, h) *
            w.wo.middleRows(head * h, h).cast<double>();
      }
      value.out = out.cast<float>();
      if (low_rank != nullptr) {
        AttentionWeights& lw = low_rank->layers[static_cast<std::size_t>(l)].attention;
        lw.wk.middleCols(j * s * h, s * h) =
            (k.down.leftCols(rk) * k.up.topRows(rk)).template cast<float>();
        lw.wv.middleCols(j * s * h, s * h) =
            (v.down.leftCols(rv) * v.up.topRows(rv)).template cast<float>();
      }
      layer.k.push_back(std::move(key));
      layer.v.push_back(std::move(value));
    }
  }
  return model;
}

/// The plan giving every group of every layer ranks (rank_k, rank_v); dense layers at max_rank.
template <Grouping G>
[[nodiscard]] RankPlan uniform_plan(const ModelConfig& c, const G& grouping, Index rank_k,
                                    Index rank_v, const std::vector<Index>& dense_layers = {}) {
  const Index s = grouping.heads_per_group(c.num_kv_heads);
  const Index groups = c.num_kv_heads / s;
  const Index max_rank = std::min(c.d_model, s * c.head_dim);
  RankPlan plan;
  plan.schedule = "uniform";
  plan.num_kv_heads = c.num_kv_heads;
  plan.head_dim = c.head_dim;
  plan.heads_per_group = s;
  for (Index l = 0; l < c.num_layers; ++l) {
    const bool dense = std::find(dense_layers.begin(), dense_layers.end(), l) != dense_layers.end();
    LayerRanks r;
    r.k.assign(static_cast<std::size_t>(groups), dense ? max_rank : rank_k);
    r.v.assign(static_cast<std::size_t>(groups), dense ? max_rank : rank_v);
    plan.layers.push_back(std::move(r));
  }
  plan.budget_requested = plan.budget();
  return plan;
}

/// latent_factors() at uniform ranks.
template <Grouping G>
[[nodiscard]] CompressedModel latent_factors(const LlamaWeights& weights, const G& grouping,
                                             Index rank_k, Index rank_v,
                                             const std::vector<Index>& dense_layers = {}) {
  return latent_factors(weights, grouping,
                        uniform_plan(weights.config, grouping, rank_k, rank_v, dense_layers),
                        dense_layers);
}

}  // namespace latentkv::testing
