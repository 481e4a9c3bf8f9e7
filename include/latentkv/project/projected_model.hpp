// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The projections of MatryoshkaKV-style compression (DESIGN §3 route 2): per layer and head group,
// orthonormal bases of the post-RoPE keys and of the values, sorted by the variance they carry, so
// the rank-r prefix of a basis is the best rank-r subspace and one stored basis serves every rank.
//   h = head_dim, s = KV heads per group, g = n_q / n_kv, G = n_kv / s groups
//   key group j:    μ_k: (s·h)   mean of the group's post-RoPE keys k_u (its s heads side by side)
//                   P_k: (s·h, r_k) orthonormal columns; cached c^k_u = (k_u − μ_k)·P_k
//                   query head i (KV head e of the group) scores q̃_i·c^k_u with
//                   q̃_i = RoPE(q_i)·P_k[rows e·h .. e·h + h): q_i·k_u = q_i·μ_k + q̃_i·c^k_u when
//                   P_k is square, and q_i·μ_k is the same for every key u, so it drops out of the
//                   softmax: the key mean costs nothing and is not applied at run time
//   value group j:  μ_v: (s·h)   mean of the values; P_v: (s·h, r_v); c^v_u = (v_u − μ_v)·P_v,
//                   v_u ≈ μ_v + c^v_u·P_vᵀ, so a head's output Σ_u p_u·v_u = μ_v,e + (Σ_u
//                   p_u·c^v_u)· P_v[rows of e]ᵀ (the weights sum to 1): the mean becomes an output
//                   bias μ_v·W_o and P_v[rows of e]ᵀ folds into W_o (projected_kv_cache.hpp)
//   variance:       all s·h eigenvalues of the covariance (descending), kept so schedules can plan
//                   ranks (rank_problem()) and a smaller budget can be re-planned
// Joint bases (s = n_kv) give one latent per layer shared by every query head (multi-query
// attention in latent space, like MLA); per-head bases (s = 1) one latent per KV head.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/model_config.hpp"
#include "latentkv/schedule/rank_plan.hpp"
#include "latentkv/schedule/rank_schedule.hpp"

namespace latentkv {

/// One side (keys or values) of one head group: mean, basis, variances.
struct ProjectedBasis {
  Vector<float> mean;       ///< (s·h) μ
  RowMatrix<float> basis;   ///< (s·h, r) P: orthonormal columns, by decreasing variance
  Vector<double> variance;  ///< (s·h) eigenvalues of the covariance, descending, ≥ 0
  [[nodiscard]] Index rank() const noexcept { return basis.cols(); }
  [[nodiscard]] Index width() const noexcept { return basis.rows(); }
};

struct ProjectedLayer {
  std::vector<ProjectedBasis> k;  ///< (G)
  std::vector<ProjectedBasis> v;  ///< (G)
  /// Latent numbers cached per token by this layer (K and V).
  [[nodiscard]] Index latent_width() const noexcept {
    Index total = 0;
    for (const auto& b : k) total += b.rank();
    for (const auto& b : v) total += b.rank();
    return total;
  }
};

/// Every layer's projections (see the notation block).
struct ProjectedModel {
  Index num_kv_heads = 0;              ///< n_kv
  Index head_dim = 0;                  ///< h
  Index heads_per_group = 0;           ///< s (n_kv: joint, 1: per head)
  Index calibration_tokens = 0;        ///< tokens the statistics were taken over
  std::vector<ProjectedLayer> layers;  ///< (L)

  [[nodiscard]] Index num_layers() const noexcept { return static_cast<Index>(layers.size()); }
  [[nodiscard]] Index num_groups() const noexcept {
    return heads_per_group > 0 ? num_kv_heads / heads_per_group : 0;
  }

  /// The ranks the bases have now (schedule "projected").
  [[nodiscard]] RankPlan plan() const {
    RankPlan p;
    p.schedule = "projected";
    p.num_kv_heads = num_kv_heads;
    p.head_dim = head_dim;
    p.heads_per_group = heads_per_group;
    for (const ProjectedLayer& layer : layers) {
      LayerRanks ranks;
      for (const auto& b : layer.k) ranks.k.push_back(b.rank());
      for (const auto& b : layer.v) ranks.v.push_back(b.rank());
      p.layers.push_back(std::move(ranks));
    }
    p.budget_requested = p.budget();
    return p;
  }

  /// What a RankSchedule plans over: σ_i = √(λ_i) of every group and side (σ² is the variance a
  /// rank keeps, as σ² of a weight SVD is its energy). d_model only bounds max_rank() = min(d,
  /// s·h).
  [[nodiscard]] RankProblem rank_problem(Index d_model) const {
    RankProblem problem;
    problem.d_model = d_model;
    problem.num_kv_heads = num_kv_heads;
    problem.head_dim = head_dim;
    problem.heads_per_group = heads_per_group;
    const Index m = problem.max_rank();
    const auto spectrum = [&](const ProjectedBasis& b) {
      Vector<double> sigma = b.variance.head(m).cwiseMax(0.0).cwiseSqrt();
      return sigma;
    };
    for (const ProjectedLayer& layer : layers) {
      LayerSpectra spectra;
      for (const auto& b : layer.k) spectra.k.push_back(spectrum(b));
      for (const auto& b : layer.v) spectra.v.push_back(spectrum(b));
      problem.layers.push_back(std::move(spectra));
    }
    return problem;
  }

  /// The first plan.layers[l].k[j] (.v[j]) columns of every basis: nested, no recomputation.
  /// Throws InvalidArgument naming the layer, side and group when a rank is outside 1..rank().
  [[nodiscard]] ProjectedModel truncated(const RankPlan& plan) const {
    constexpr const char* kWhere = "latentkv::ProjectedModel::truncated";
    if (plan.num_layers() != num_layers() || plan.num_kv_heads != num_kv_heads ||
        plan.head_dim != head_dim || plan.heads_per_group != heads_per_group) {
      detail::raise<InvalidArgument>(kWhere, "the plan is for ", plan.num_layers(),
                                     " layers, n_kv = ", plan.num_kv_heads, ", h = ", plan.head_dim,
                                     ", s = ", plan.heads_per_group, "; the projections have ",
                                     num_layers(), " layers, n_kv = ", num_kv_heads,
                                     ", h = ", head_dim, ", s = ", heads_per_group);
    }
    ProjectedModel out = *this;
    for (Index l = 0; l < num_layers(); ++l) {
      const auto lu = static_cast<std::size_t>(l);
      const LayerRanks& ranks = plan.layers[lu];
      ProjectedLayer& layer = out.layers[lu];
      if (ranks.k.size() != layer.k.size() || ranks.v.size() != layer.v.size()) {
        detail::raise<InvalidArgument>(kWhere, "layer ", l, ": the plan has ", ranks.k.size(),
                                       " key and ", ranks.v.size(), " value groups, expected ",
                                       layer.k.size());
      }
      const auto cut = [&](std::vector<ProjectedBasis>& side, const std::vector<Index>& r,
                           const char* name) {
        for (std::size_t j = 0; j < side.size(); ++j) {
          if (r[j] < 1 || r[j] > side[j].rank()) {
            detail::raise<InvalidArgument>(kWhere, "layer ", l, " ", name, " group ", j, ": rank ",
                                           r[j], ", expected 1..", side[j].rank(),
                                           " (the basis's rank)");
          }
          side[j].basis = side[j].basis.leftCols(r[j]).eval();
        }
      };
      cut(layer.k, ranks.k, "K");
      cut(layer.v, ranks.v, "V");
    }
    return out;
  }

  /// Checks the layout against a model's configuration: n_kv, h, L, s | n_kv, and every group's
  /// mean/basis/variance shapes (s·h rows, 1..s·h columns, finite). Throws InvalidArgument naming
  /// the layer, side and group.
  void validate(const ModelConfig& config) const {
    constexpr const char* kWhere = "latentkv::ProjectedModel::validate";
    if (num_kv_heads != config.num_kv_heads || head_dim != config.head_dim ||
        num_layers() != config.num_layers) {
      detail::raise<InvalidArgument>(kWhere, "the projections are for n_kv = ", num_kv_heads,
                                     ", h = ", head_dim, ", ", num_layers(),
                                     " layers; the model has n_kv = ", config.num_kv_heads,
                                     ", h = ", config.head_dim, ", ", config.num_layers,
                                     " layers (projections of another model?)");
    }
    if (heads_per_group < 1 || num_kv_heads % heads_per_group != 0) {
      detail::raise<InvalidArgument>(kWhere, "heads_per_group = ", heads_per_group,
                                     ", expected a divisor of num_kv_heads = ", num_kv_heads);
    }
    const Index width = heads_per_group * head_dim;
    for (Index l = 0; l < num_layers(); ++l) {
      const ProjectedLayer& layer = layers[static_cast<std::size_t>(l)];
      const auto check = [&](const std::vector<ProjectedBasis>& side, const char* name) {
        if (static_cast<Index>(side.size()) != num_groups()) {
          detail::raise<InvalidArgument>(kWhere, "layer ", l, " ", name, ": ", side.size(),
                                         " groups, expected ", num_groups());
        }
        for (std::size_t j = 0; j < side.size(); ++j) {
          const ProjectedBasis& b = side[j];
          if (b.mean.size() != width || b.basis.rows() != width || b.rank() < 1 ||
              b.rank() > width || b.variance.size() != width) {
            detail::raise<InvalidArgument>(kWhere, "layer ", l, " ", name, " group ", j, ": mean (",
                                           b.mean.size(), "), basis (", b.basis.rows(), ", ",
                                           b.basis.cols(), "), variance (", b.variance.size(),
                                           "), expected (", width, "), (", width, ", 1..", width,
                                           "), (", width, ")");
          }
          if (!b.mean.allFinite() || !b.basis.allFinite() || !b.variance.allFinite()) {
            detail::raise<InvalidArgument>(kWhere, "layer ", l, " ", name, " group ", j,
                                           ": a non-finite entry");
          }
        }
      };
      check(layer.k, "K");
      check(layer.v, "V");
    }
  }
};

}  // namespace latentkv
