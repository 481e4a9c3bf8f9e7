// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Energy rank schedule (DESIGN §5): one retained-energy fraction τ for every matrix.
//   E_e(r) = Σ_{i<r} σ_i^p / Σ_i σ_i^p      (p = Options.power, 2: Frobenius energy, Eckart–Young)
//   r_e(τ) = the smallest allowed rank (a multiple of `multiple` in [multiple, max_rank], or the
//            ceiling) with E_e(r) >= τ
//   τ      = the largest fraction whose plan fits the budget: Σ_e r_e(τ) <= budget·L·2·n_kv·h
// Solved exactly rather than by a numeric bisection: entry e must step from `from` to the next
// allowed value as soon as τ > E_e(from), so sorting the steps by E_e(from) and taking them while
// the budget allows is the bisection on τ carried to its limit (fill_by_priority). Every matrix
// below its cap keeps E_e(r_e) >= threshold() = τ. r_e(τ) is non-decreasing in τ, so ranks never
// grow when the budget shrinks; matrices with equal E_e(from) step in (layer, K before V, group)
// order.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/schedule/detail/rank_grid.hpp"
#include "latentkv/schedule/rank_plan.hpp"
#include "latentkv/schedule/rank_schedule.hpp"

namespace latentkv {

class EnergyRankSchedule {
 public:
  struct Options {
    double power = 2.0;  ///< p: energy of σ_i is σ_i^p (2: squared Frobenius norm), > 0
  };

  EnergyRankSchedule() = default;
  explicit EnergyRankSchedule(Options options) : options_(options) {
    if (!(options_.power > 0.0) || !std::isfinite(options_.power)) {
      detail::raise<InvalidArgument>("latentkv::EnergyRankSchedule", "power = ", options_.power,
                                     ", expected finite and > 0");
    }
  }

  [[nodiscard]] std::string name() const { return "energy"; }
  [[nodiscard]] const Options& options() const noexcept { return options_; }

  /// problem: L layers of G group spectra per side → plan meeting budget.budget from below within
  /// one rounding step, every matrix keeping at least threshold(problem, budget) of its energy
  /// (unless held lower by its ceiling).
  [[nodiscard]] RankPlan plan(const RankProblem& problem, const RankBudget& budget) const {
    return solve(problem, budget).plan;
  }

  /// τ of the plan: every entry below its cap keeps E_e(r_e) >= τ (1 when every entry is at its
  /// cap).
  [[nodiscard]] double threshold(const RankProblem& problem, const RankBudget& budget) const {
    return solve(problem, budget).tau;
  }

 private:
  struct Solution {
    RankPlan plan;
    double tau;
  };

  [[nodiscard]] Solution solve(const RankProblem& problem, const RankBudget& budget) const {
    constexpr const char* kWhere = "latentkv::EnergyRankSchedule::plan";
    const detail::RankGrid grid = detail::make_rank_grid(kWhere, problem, budget);
    std::vector<Vector<double>> energy;
    energy.reserve(static_cast<std::size_t>(grid.num_entries()));
    for (Index e = 0; e < grid.num_entries(); ++e) {
      energy.push_back(detail::cumulative_energy(grid.spectrum(e), options_.power));
    }
    const auto fill = detail::fill_by_priority(kWhere, grid, [&](Index e, Index from, Index) {
      return energy[static_cast<std::size_t>(e)](from);
    });
    return {grid.to_plan(fill.ranks, name(), budget.budget), std::min(fill.stop_key, 1.0)};
  }

  Options options_{};
};

static_assert(RankSchedule<EnergyRankSchedule>);

}  // namespace latentkv
