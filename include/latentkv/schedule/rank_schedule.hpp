// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The RankSchedule concept: a policy that turns the spectra of every K/V group matrix and a global
// budget into a RankPlan (DESIGN §5).
//   problem.layers[l].k[g]: σ_1 ≥ … ≥ σ_m of the matrix the factorizer decomposes for group g of
//                           layer l's K projection (W_k[:, group g] for plain SVD, Lᵀ·W_k[:, g]
//                           when whitened), m = max_rank() = min(d_model, s·h) values; .v likewise
//   budget.budget:          kept fraction of dense KV-cache numbers, in (0, 1] (rank_plan.hpp)
//   → RankPlan with 1 ≤ r ≤ max_rank (and ≤ budget.ceiling when given) for every entry, and
//     |plan.budget() − budget.budget| ≤ one rounding step = multiple / (L·2·n_kv·h)
// Ranks are multiples of budget.multiple (1, 8, 16, 32: kernel tiles) except where max_rank or the
// ceiling is not one. Schedules that need data beyond the spectra (calibration sensitivities, a
// divergence to search on) hold it as members, so every schedule has the same plan() call.
//
// Monotonicity: every schedule here gives ranks that do not grow when the budget shrinks (for the
// same problem), so a plan for b' < b fits under the plan for b; the elastic loading of a
// checkpoint made at b relies on it (re-plan at b' with ceiling = the file's plan).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/schedule/rank_plan.hpp"

namespace latentkv {

/// Singular values of one layer's K and V group matrices.
struct LayerSpectra {
  std::vector<Vector<double>> k;  ///< (groups) each (max_rank), descending, ≥ 0
  std::vector<Vector<double>> v;  ///< (groups)
};

/// What a schedule plans over: the head layout and the spectra of every group matrix.
struct RankProblem {
  Index d_model = 0;                 ///< d (rows of every W_k, W_v)
  Index num_kv_heads = 0;            ///< n_kv
  Index head_dim = 0;                ///< h
  Index heads_per_group = 0;         ///< s
  std::vector<LayerSpectra> layers;  ///< (L)

  [[nodiscard]] Index num_layers() const noexcept { return static_cast<Index>(layers.size()); }
  [[nodiscard]] Index num_groups() const noexcept {
    return heads_per_group > 0 ? num_kv_heads / heads_per_group : 0;
  }
  /// min(d, s·h): the largest rank of a group matrix.
  [[nodiscard]] Index max_rank() const noexcept {
    return std::min(d_model, heads_per_group * head_dim);
  }
  /// A plan with every entry at `rank` (no schedule name, budget_requested = its own budget).
  [[nodiscard]] RankPlan uniform_plan(Index rank) const {
    RankPlan plan;
    plan.num_kv_heads = num_kv_heads;
    plan.head_dim = head_dim;
    plan.heads_per_group = heads_per_group;
    const auto groups = static_cast<std::size_t>(num_groups());
    plan.layers.assign(
        static_cast<std::size_t>(num_layers()),
        LayerRanks{std::vector<Index>(groups, rank), std::vector<Index>(groups, rank)});
    plan.budget_requested = plan.budget();
    return plan;
  }

  /// Checks the layout and that every spectrum has max_rank() finite, non-negative, descending
  /// values. Throws InvalidArgument naming the layer, side and group.
  void validate() const {
    constexpr const char* kWhere = "latentkv::RankProblem::validate";
    if (d_model < 1 || num_kv_heads < 1 || head_dim < 1 || heads_per_group < 1 ||
        num_kv_heads % heads_per_group != 0) {
      detail::raise<InvalidArgument>(kWhere, "d_model = ", d_model,
                                     ", num_kv_heads = ", num_kv_heads, ", head_dim = ", head_dim,
                                     ", heads_per_group = ", heads_per_group,
                                     ", expected positive with heads_per_group dividing "
                                     "num_kv_heads");
    }
    if (layers.empty()) detail::raise<InvalidArgument>(kWhere, "no layers");
    const Index m = max_rank();
    for (Index l = 0; l < num_layers(); ++l) {
      const LayerSpectra& layer = layers[static_cast<std::size_t>(l)];
      for (const auto& [side, list] : {std::pair{"k", &layer.k}, std::pair{"v", &layer.v}}) {
        if (static_cast<Index>(list->size()) != num_groups()) {
          detail::raise<InvalidArgument>(kWhere, "layer ", l, " ", side, " has ", list->size(),
                                         " spectra, expected ", num_groups(), " (one per group)");
        }
        for (Index g = 0; g < num_groups(); ++g) {
          const Vector<double>& s = (*list)[static_cast<std::size_t>(g)];
          if (s.size() != m) {
            detail::raise<InvalidArgument>(kWhere, "layer ", l, " ", side, " group ", g, " has ",
                                           s.size(), " singular values, expected ", m,
                                           " (max_rank)");
          }
          for (Index i = 0; i < m; ++i) {
            if (!std::isfinite(s(i)) || s(i) < 0.0 || (i > 0 && s(i) > s(i - 1))) {
              detail::raise<InvalidArgument>(kWhere, "layer ", l, " ", side, " group ", g,
                                             ": singular value ", i, " = ", s(i),
                                             ", expected finite, >= 0 and descending");
            }
          }
        }
      }
    }
  }
};

/// The global budget a schedule must meet.
struct RankBudget {
  double budget = 0.5;  ///< kept fraction of dense KV numbers per token, in (0, 1]
  Index multiple = 1;   ///< ranks rounded to multiples of this (>= 1; e.g. 8/16/32 for tiles)
  /// Per-entry upper bounds (a plan of the same layout), e.g. the plan a checkpoint was made
  /// with when it is loaded at a smaller budget. Empty: max_rank everywhere.
  std::optional<RankPlan> ceiling = std::nullopt;
};

/// S::plan(problem, budget) returns a plan meeting the contract of the notation block and throws
/// InvalidArgument for a budget outside (0, 1], one below what rank `multiple` everywhere gives,
/// or an invalid problem.
template <class S>
concept RankSchedule = requires(const S& s, const RankProblem& problem, const RankBudget& budget) {
  { s.plan(problem, budget) } -> std::same_as<RankPlan>;
  { s.name() } -> std::convertible_to<std::string>;
};

}  // namespace latentkv
