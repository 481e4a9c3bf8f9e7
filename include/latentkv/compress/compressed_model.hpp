// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The attention of a compressed model: per layer, per head group, the factors a latent KV cache
// runs on (DESIGN §2–3, route 1: pre-RoPE latents).
//   d = d_model, h = head_dim, s = KV heads per group, g = n_q / n_kv, G = n_kv / s groups
//   key group j:    A_k: (d, r_k)  c^k_t = x_t·A_k cached;  B_k: (r_k, s·h) rebuilds the group's
//                   pre-RoPE keys k_t = c^k_t·B_k, rotated at the key's position in the kernel
//   value group j:  A_v: (d, r_v)  c^v_t = x_t·A_v cached;  B_v: (r_v, s·h) is folded into W_o:
//                   W̃_o,j: (r_v, s·g·d), column block m (m = 0..s·g−1, query head i = j·s·g + m)
//                   = B_v[:, head (m / g) of the group]·W_o[rows of query head i]: (r_v, d)
//                   so a query head's latent output o_i = Σ_t p_{i,t}·c^v_t: (r_v) meets W̃_o
//                   directly: out = Σ_i o_i·W̃_o,j(i)[:, block m]
//   spectrum:       σ of the matrix the factorizer decomposed (min(d, s·h) values, descending):
//                   what the schedule planned on, kept so a smaller budget can be re-planned
// Nesting: with SVD factors A = U_r·Σ_r, B = V_rᵀ the rank-r' truncation of every factor is its
// first r' columns of A and rows of B and W̃_o (truncated()), and for exact SVD it equals
// factorizing at r' directly. A layer with `compressed == false` has no factors: the cache runs it
// dense from the model's own W_k, W_v, W_o (its plan entries are max_rank = dense width).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/model_config.hpp"
#include "latentkv/schedule/rank_plan.hpp"

namespace latentkv {

struct LatentKeyGroup {
  RowMatrix<float> down;    ///< A_k: (d, r_k)
  RowMatrix<float> up;      ///< B_k: (r_k, s·h), pre-RoPE, Hugging Face channel order
  Vector<double> spectrum;  ///< (min(d, s·h)) σ of the decomposed matrix, descending
  [[nodiscard]] Index rank() const noexcept { return down.cols(); }
};

struct LatentValueGroup {
  RowMatrix<float> down;    ///< A_v: (d, r_v)
  RowMatrix<float> out;     ///< W̃_o: (r_v, s·g·d), see the notation block
  Vector<double> spectrum;  ///< (min(d, s·h))
  [[nodiscard]] Index rank() const noexcept { return down.cols(); }
};

struct CompressedLayer {
  bool compressed = true;           ///< false: run dense from the model's weights
  std::vector<LatentKeyGroup> k;    ///< (G) empty when !compressed
  std::vector<LatentValueGroup> v;  ///< (G)
  /// Latent numbers cached per token by this layer (K and V).
  [[nodiscard]] Index latent_width() const noexcept {
    Index total = 0;
    for (const auto& g : k) total += g.rank();
    for (const auto& g : v) total += g.rank();
    return total;
  }
};

struct CompressedModel {
  ModelConfig config;                   ///< of the source model
  RankPlan plan;                        ///< ranks of every layer (dense layers at max_rank)
  std::string factorizer;               ///< "svd", "rsvd", "whitened", ... (provenance)
  std::string grouping;                 ///< Grouping::name(): "joint", "per-head", "group:N"
  std::vector<CompressedLayer> layers;  ///< (L)

  [[nodiscard]] Index heads_per_group() const noexcept { return plan.heads_per_group; }
  [[nodiscard]] Index num_groups() const noexcept { return plan.num_groups(); }
  /// min(d, s·h).
  [[nodiscard]] Index max_rank() const noexcept {
    return std::min(config.d_model, plan.heads_per_group * config.head_dim);
  }

  /// The same model at smaller ranks: every factor cut to its leading `smaller` ranks (columns of
  /// A, rows of B and W̃_o). `smaller` must have this model's layout and no entry above the current
  /// one; a dense layer must stay at max_rank. Throws InvalidArgument naming the layer and group.
  [[nodiscard]] CompressedModel truncated(const RankPlan& smaller) const {
    constexpr const char* kWhere = "latentkv::CompressedModel::truncated";
    smaller.validate(max_rank());
    if (smaller.num_layers() != plan.num_layers() || smaller.num_kv_heads != plan.num_kv_heads ||
        smaller.head_dim != plan.head_dim || smaller.heads_per_group != plan.heads_per_group) {
      detail::raise<InvalidArgument>(kWhere, "the plan has ", smaller.num_layers(), " layers, ",
                                     smaller.num_kv_heads, " KV heads of ", smaller.head_dim,
                                     " in groups of ", smaller.heads_per_group, ", the model ",
                                     plan.num_layers(), ", ", plan.num_kv_heads, ", ",
                                     plan.head_dim, ", ", plan.heads_per_group);
    }
    CompressedModel out;
    out.config = config;
    out.plan = smaller;
    out.factorizer = factorizer;
    out.grouping = grouping;
    out.layers.resize(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const CompressedLayer& from = layers[l];
      CompressedLayer& to = out.layers[l];
      to.compressed = from.compressed;
      const LayerRanks& want = smaller.layers[l];
      if (!from.compressed) {
        for (const auto& list : {&want.k, &want.v}) {
          for (const Index r : *list) {
            if (r != max_rank()) {
              detail::raise<InvalidArgument>(kWhere, "layer ", l,
                                             " is dense, but the plan gives it rank ", r,
                                             ", expected ", max_rank());
            }
          }
        }
        continue;
      }
      const auto cut = [&](const char* side, Index g, Index have, Index r) {
        if (r > have) {
          detail::raise<InvalidArgument>(kWhere, "layer ", l, " rank_", side, "[", g, "] = ", r,
                                         ", above the model's ", have,
                                         " (truncation only shrinks)");
        }
      };
      for (std::size_t g = 0; g < from.k.size(); ++g) {
        const Index r = want.k[g];
        cut("k", static_cast<Index>(g), from.k[g].rank(), r);
        to.k.push_back({from.k[g].down.leftCols(r), from.k[g].up.topRows(r), from.k[g].spectrum});
      }
      for (std::size_t g = 0; g < from.v.size(); ++g) {
        const Index r = want.v[g];
        cut("v", static_cast<Index>(g), from.v[g].rank(), r);
        to.v.push_back({from.v[g].down.leftCols(r), from.v[g].out.topRows(r), from.v[g].spectrum});
      }
    }
    return out;
  }
};

}  // namespace latentkv
