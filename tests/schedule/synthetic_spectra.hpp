// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Rank problems for the schedule tests, shaped like SmolLM2-135M (DESIGN §9): 30 layers, d = 576,
// 3 KV heads of 64. Power-law spectra σ_i = c_l·i^(−a), i = 1..max_rank, steeper in deeper layers:
//   K: a = 0.7 … 1.3 (κ(W_k) ≈ 40–1300 over 192 values), V: a = 0.3 … 0.45 (κ(W_v) ≈ 5–15),
//   each group a little steeper than the previous (+0.03·g), scale c_l = 1 + 0.05·l.
#pragma once

#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "latentkv/schedule/rank_schedule.hpp"

namespace latentkv::testing {

[[nodiscard]] inline Vector<double> power_law(Index m, double a, double scale) {
  Vector<double> s(m);
  for (Index i = 0; i < m; ++i) s(i) = scale * std::pow(static_cast<double>(i + 1), -a);
  return s;
}

/// heads_per_group 3 (joint) or 1 (per head) over SmolLM2's layout; `layers` layers.
[[nodiscard]] inline RankProblem smollm2_like_problem(Index heads_per_group, Index layers = 30) {
  RankProblem p;
  p.d_model = 576;
  p.num_kv_heads = 3;
  p.head_dim = 64;
  p.heads_per_group = heads_per_group;
  const Index m = p.max_rank();
  for (Index l = 0; l < layers; ++l) {
    const double depth = layers > 1 ? static_cast<double>(l) / static_cast<double>(layers - 1) : 0;
    const double scale = 1.0 + 0.05 * static_cast<double>(l);
    LayerSpectra spectra;
    for (Index g = 0; g < p.num_groups(); ++g) {
      const double tilt = 0.03 * static_cast<double>(g);
      spectra.k.push_back(power_law(m, 0.7 + 0.6 * depth + tilt, scale));
      spectra.v.push_back(power_law(m, 0.3 + 0.15 * depth + tilt, 0.5 * scale));
    }
    p.layers.push_back(std::move(spectra));
  }
  return p;
}

/// RankBudget{budget, multiple, ceiling}.
[[nodiscard]] inline RankBudget budget_of(double budget, Index multiple = 1,
                                          std::optional<RankPlan> ceiling = std::nullopt) {
  RankBudget b;
  b.budget = budget;
  b.multiple = multiple;
  b.ceiling = std::move(ceiling);
  return b;
}

/// Relative tail energy 1 − Σ_{i<r} σ_i² / Σ σ_i² of one spectrum.
[[nodiscard]] inline double tail_energy(const Vector<double>& sigma, Index r) {
  const double total = sigma.squaredNorm();
  return total > 0.0 ? sigma.tail(sigma.size() - r).squaredNorm() / total : 0.0;
}

/// Σ_l Σ_g (w_k[l]·tail(K, r_k) + w_v[l]·tail(V, r_v)): a separable stand-in for a measured
/// divergence.
[[nodiscard]] inline double weighted_tail(const RankProblem& p, const RankPlan& plan,
                                          const std::vector<double>& wk,
                                          const std::vector<double>& wv) {
  double d = 0.0;
  for (std::size_t l = 0; l < p.layers.size(); ++l) {
    for (std::size_t g = 0; g < p.layers[l].k.size(); ++g) {
      d += wk[l] * tail_energy(p.layers[l].k[g], plan.layers[l].k[g]);
      d += wv[l] * tail_energy(p.layers[l].v[g], plan.layers[l].v[g]);
    }
  }
  return d;
}

/// Every rank of `plan` as one flat list in (layer, K before V, group) order.
[[nodiscard]] inline std::vector<Index> flat_ranks(const RankPlan& plan) {
  std::vector<Index> out;
  for (const LayerRanks& l : plan.layers) {
    out.insert(out.end(), l.k.begin(), l.k.end());
    out.insert(out.end(), l.v.begin(), l.v.end());
  }
  return out;
}

}  // namespace latentkv::testing
