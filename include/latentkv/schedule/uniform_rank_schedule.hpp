// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Uniform rank schedule (DESIGN §5): the same rank everywhere.
//   every entry (layer l, K|V, group g): r = t, the same real t for all, rounded to the nearest
//   allowed value (a multiple of `multiple` in [multiple, max_rank], or the ceiling), with t the
//   largest value whose plan fits the budget: Σ r ≤ budget·L·2·n_kv·h.
// The budget rarely divides evenly: the entries that get one step more are the first in
// (layer, K before V, group) order, so shallow layers take the remainder. Each step of t adds
// entries in that fixed order, so ranks never grow when the budget shrinks.
#pragma once

#include <string>

#include "latentkv/schedule/detail/rank_grid.hpp"
#include "latentkv/schedule/rank_plan.hpp"
#include "latentkv/schedule/rank_schedule.hpp"

namespace latentkv {

class UniformRankSchedule {
 public:
  struct Options {};

  UniformRankSchedule() = default;
  explicit UniformRankSchedule(Options options) : options_(options) {}

  [[nodiscard]] std::string name() const { return "uniform"; }
  [[nodiscard]] const Options& options() const noexcept { return options_; }

  /// problem: L layers of G group spectra per side → plan with every rank within one step of the
  /// others (before ceilings), meeting budget.budget from below within one rounding step.
  [[nodiscard]] RankPlan plan(const RankProblem& problem, const RankBudget& budget) const {
    constexpr const char* kWhere = "latentkv::UniformRankSchedule::plan";
    const detail::RankGrid grid = detail::make_rank_grid(kWhere, problem, budget);
    // Round to nearest: the entry moves from `from` to `to` once t passes their midpoint.
    const auto fill = detail::fill_by_priority(kWhere, grid, [](Index, Index from, Index to) {
      return 0.5 * static_cast<double>(from + to);
    });
    return grid.to_plan(fill.ranks, name(), budget.budget);
  }

 private:
  Options options_{};
};

static_assert(RankSchedule<UniformRankSchedule>);

}  // namespace latentkv
