// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Greedy search on a measured divergence (MatryoshkaKV Alg. 1, DESIGN §5).
//   D(plan) → double: a caller-supplied divergence, lower is better (e.g. the KL of next-token
//   distributions on a calibration prompt between the dense model and the model compressed to
//   `plan`, or the final-hidden-state error). Evaluated on the current plan with one entry lowered.
//   Δr = options.step rounded up to a multiple of `multiple`; T = budget·L·2·n_kv·h
//   start: every entry (layer l, K|V, group g) at its cap (max_rank, or the ceiling when given)
//   round: for every entry above its floor, evaluate D with that entry alone lowered by Δr (to the
//          smallest allowed value >= r − Δr, at least the floor); sort the candidates by (D, entry
//          index in (layer, K before V, group) order) and apply the decrements_per_round cheapest,
//          stopping as soon as Σ r <= T. The last decrement lowers by only
//          min(Δr, ⌈(Σ r − T) / multiple⌉·multiple), so the plan ends in (T − multiple, T].
//   repeat rounds until Σ r <= T; search() also reports the rounds and divergence evaluations
//   (≈ Σ_rounds (entries above their floor)), which decrements_per_round > 1 divides roughly by it.
// The candidates of a round are always evaluated at the full Δr, so for one problem and divergence
// the sequence of decrements does not depend on the budget: a smaller budget continues the same
// sequence further, and no rank grows when the budget shrinks as long as max_rank (or the ceiling)
// is a multiple of `multiple`. The divergence must be deterministic for the plan to be.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/schedule/detail/rank_grid.hpp"
#include "latentkv/schedule/rank_plan.hpp"
#include "latentkv/schedule/rank_schedule.hpp"

namespace latentkv {

class GreedySearchRankSchedule {
 public:
  /// plan → divergence from the dense model (finite, lower is better).
  using Divergence = std::function<double(const RankPlan&)>;

  struct Options {
    Index step = 8;                  ///< Δr per decrement, >= 1 (rounded up to the multiple)
    Index decrements_per_round = 4;  ///< cheapest candidates applied per round, >= 1
  };

  /// The plan and what the search cost.
  struct Result {
    RankPlan plan;
    Index rounds = 0;       ///< rounds of candidate evaluation
    Index evaluations = 0;  ///< calls of the divergence
  };

  explicit GreedySearchRankSchedule(Divergence divergence)
      : GreedySearchRankSchedule(std::move(divergence), Options{}) {}
  GreedySearchRankSchedule(Divergence divergence, Options options)
      : divergence_(std::move(divergence)), options_(options) {
    constexpr const char* kWhere = "latentkv::GreedySearchRankSchedule";
    if (!divergence_) detail::raise<InvalidArgument>(kWhere, "the divergence is empty");
    if (options_.step < 1) {
      detail::raise<InvalidArgument>(kWhere, "step = ", options_.step, ", expected >= 1");
    }
    if (options_.decrements_per_round < 1) {
      detail::raise<InvalidArgument>(
          kWhere, "decrements_per_round = ", options_.decrements_per_round, ", expected >= 1");
    }
  }

  [[nodiscard]] std::string name() const { return "search"; }
  [[nodiscard]] const Options& options() const noexcept { return options_; }

  /// problem: L layers of G group spectra per side (only the layout is used) → plan meeting
  /// budget.budget from below within one rounding step.
  [[nodiscard]] RankPlan plan(const RankProblem& problem, const RankBudget& budget) const {
    return search(problem, budget).plan;
  }

  /// plan() with the number of rounds and divergence evaluations. Throws NumericalError when the
  /// divergence returns NaN.
  [[nodiscard]] Result search(const RankProblem& problem, const RankBudget& budget) const {
    constexpr const char* kWhere = "latentkv::GreedySearchRankSchedule::plan";
    const detail::RankGrid grid = detail::make_rank_grid(kWhere, problem, budget);
    const Index m = grid.multiple;
    const Index step = (options_.step + m - 1) / m * m;
    const auto target = static_cast<Index>(std::floor(grid.target_width + 1e-9));
    std::vector<Index> ranks = grid.cap;
    Index width = detail::RankGrid::width(ranks);

    Result result;
    result.plan = grid.to_plan(ranks, name(), budget.budget);
    const auto rank_of = [&](Index e) -> Index& {
      LayerRanks& l = result.plan.layers[static_cast<std::size_t>(grid.layer_of(e))];
      return (grid.side_of(e) == 0 ? l.k : l.v)[static_cast<std::size_t>(grid.group_of(e))];
    };
    const auto lowered = [&](Index e, Index delta) {
      const auto i = static_cast<std::size_t>(e);
      return grid.snap_up(e, std::max(grid.floor[i], ranks[i] - delta));
    };

    std::vector<std::pair<double, Index>> candidates;
    while (width > target) {
      ++result.rounds;
      candidates.clear();
      for (Index e = 0; e < grid.num_entries(); ++e) {
        const auto i = static_cast<std::size_t>(e);
        if (ranks[i] <= grid.floor[i]) continue;
        rank_of(e) = lowered(e, step);
        const double d = divergence_(result.plan);
        ++result.evaluations;
        rank_of(e) = ranks[i];
        if (std::isnan(d)) {
          detail::raise<NumericalError>(kWhere, "the divergence is NaN with layer ",
                                        grid.layer_of(e), " ", grid.side_of(e) == 0 ? "k" : "v",
                                        " group ", grid.group_of(e), " at rank ", lowered(e, step));
        }
        candidates.emplace_back(d, e);
      }
      if (candidates.empty()) break;  // every entry at its floor (unreachable: floors fit T)
      std::sort(candidates.begin(), candidates.end());
      Index applied = 0;
      for (const auto& [d, e] : candidates) {
        if (applied == options_.decrements_per_round || width <= target) break;
        const Index excess = width - target;
        const Index delta = std::min(step, (excess + m - 1) / m * m);
        const Index next = lowered(e, delta);
        width -= ranks[static_cast<std::size_t>(e)] - next;
        ranks[static_cast<std::size_t>(e)] = next;
        rank_of(e) = next;
        ++applied;
      }
    }
    return result;
  }

 private:
  Divergence divergence_;
  Options options_{};
};

static_assert(RankSchedule<GreedySearchRankSchedule>);

}  // namespace latentkv
