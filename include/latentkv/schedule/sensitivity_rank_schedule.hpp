// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Sensitivity rank schedule: a forward-only stand-in for Palu's Fisher allocation (DESIGN §5).
// The caller measures, on calibration data, one weight per layer (or per layer and side) saying how
// much the model's output moves when that layer (side) alone is compressed, e.g. the increase of
// the next-token KL divergence with only layer l's K at a reference rank. The schedule then
// minimizes the weighted spectral error
//   D(r) = Σ_e ŵ_e^α · (1 − E_e(r_e))          (weighted relative tail energy)
//   E_e(r) = Σ_{i<r} σ_i^p / Σ_i σ_i^p
//   ŵ_e  = max(w_e, weight_floor · max_e' w_e')  (a zero weight still ranks its layer by spectrum)
// subject to Σ_e r_e <= budget·L·2·n_kv·h, greedily: starting from every entry at its floor,
// repeatedly raise the entry with the largest gain per cached number
//   gain_e(from → to) = ŵ_e^α · (E_e(to) − E_e(from)) / (to − from)
// to its next allowed value (multiples of `multiple` in [multiple, max_rank], or the ceiling) while
// the budget allows. E_e is concave (σ descending), so the gains of one entry fall as its rank
// grows and the greedy order is a fixed sequence: a smaller budget takes a prefix of it, so ranks
// never grow when the budget shrinks (ties go to the first in (layer, K before V, group) order).
// α = 0 ignores the weights (equal-weight tail-energy water filling); larger α follows them more.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/schedule/detail/rank_grid.hpp"
#include "latentkv/schedule/rank_plan.hpp"
#include "latentkv/schedule/rank_schedule.hpp"

namespace latentkv {

class SensitivityRankSchedule {
 public:
  struct Options {
    double alpha = 1.0;  ///< α: exponent on the weights, >= 0
    /// Weights below weight_floor·max w count as that, in [0, 1]. A probe at one rank cannot see
    /// a layer whose spectrum is steep (SmolLM2's layer 0 K measures 0 at rank 48 and breaks
    /// at rank 5): 0.05 keeps such layers from being starved (measured: 1e-3 gave PPL 809 at
    /// budget 0.4, docs/quality).
    double weight_floor = 0.05;
    double power = 2.0;  ///< p: energy of σ_i is σ_i^p, > 0
  };

  /// layer_weights: (L) w_l >= 0, used for both K and V of layer l; not all zero.
  explicit SensitivityRankSchedule(std::vector<double> layer_weights)
      : SensitivityRankSchedule(std::move(layer_weights), Options{}) {}
  SensitivityRankSchedule(std::vector<double> layer_weights, Options options)
      : SensitivityRankSchedule(layer_weights, layer_weights, options) {}

  /// k_weights, v_weights: (L) each, w >= 0, separately for the K and V side; not all zero.
  SensitivityRankSchedule(std::vector<double> k_weights, std::vector<double> v_weights)
      : SensitivityRankSchedule(std::move(k_weights), std::move(v_weights), Options{}) {}
  SensitivityRankSchedule(std::vector<double> k_weights, std::vector<double> v_weights,
                          Options options)
      : k_weights_(std::move(k_weights)), v_weights_(std::move(v_weights)), options_(options) {
    constexpr const char* kWhere = "latentkv::SensitivityRankSchedule";
    if (k_weights_.size() != v_weights_.size()) {
      detail::raise<InvalidArgument>(kWhere, k_weights_.size(), " K weights and ",
                                     v_weights_.size(), " V weights, expected one per layer each");
    }
    if (k_weights_.empty()) detail::raise<InvalidArgument>(kWhere, "no weights given");
    double top = 0.0;
    for (const auto& [side, list] : {std::pair{"k", &k_weights_}, std::pair{"v", &v_weights_}}) {
      for (std::size_t l = 0; l < list->size(); ++l) {
        const double w = (*list)[l];
        if (!std::isfinite(w) || w < 0.0) {
          detail::raise<InvalidArgument>(kWhere, side, " weight of layer ", l, " = ", w,
                                         ", expected finite and >= 0");
        }
        top = std::max(top, w);
      }
    }
    if (!(top > 0.0)) detail::raise<InvalidArgument>(kWhere, "every weight is 0");
    if (!(options_.alpha >= 0.0) || !std::isfinite(options_.alpha)) {
      detail::raise<InvalidArgument>(kWhere, "alpha = ", options_.alpha,
                                     ", expected finite and >= 0");
    }
    if (!(options_.weight_floor >= 0.0 && options_.weight_floor <= 1.0)) {
      detail::raise<InvalidArgument>(kWhere, "weight_floor = ", options_.weight_floor,
                                     ", expected in [0, 1]");
    }
    if (!(options_.power > 0.0) || !std::isfinite(options_.power)) {
      detail::raise<InvalidArgument>(kWhere, "power = ", options_.power,
                                     ", expected finite and > 0");
    }
    max_weight_ = top;
  }

  [[nodiscard]] std::string name() const { return "sensitivity"; }
  [[nodiscard]] const Options& options() const noexcept { return options_; }
  [[nodiscard]] const std::vector<double>& k_weights() const noexcept { return k_weights_; }
  [[nodiscard]] const std::vector<double>& v_weights() const noexcept { return v_weights_; }

  /// problem: L layers (L = number of weights) of G group spectra per side → plan meeting
  /// budget.budget from below within one rounding step.
  [[nodiscard]] RankPlan plan(const RankProblem& problem, const RankBudget& budget) const {
    constexpr const char* kWhere = "latentkv::SensitivityRankSchedule::plan";
    if (problem.num_layers() != static_cast<Index>(k_weights_.size())) {
      detail::raise<InvalidArgument>(kWhere, "the problem has ", problem.num_layers(),
                                     " layers, the schedule has weights for ", k_weights_.size());
    }
    const detail::RankGrid grid = detail::make_rank_grid(kWhere, problem, budget);
    std::vector<Vector<double>> energy;
    std::vector<double> scale;
    for (Index e = 0; e < grid.num_entries(); ++e) {
      energy.push_back(detail::cumulative_energy(grid.spectrum(e), options_.power));
      const auto l = static_cast<std::size_t>(grid.layer_of(e));
      const double w = grid.side_of(e) == 0 ? k_weights_[l] : v_weights_[l];
      scale.push_back(std::pow(std::max(w, options_.weight_floor * max_weight_), options_.alpha));
    }
    // Largest gain first: the key is the negated gain.
    const auto fill = detail::fill_by_priority(kWhere, grid, [&](Index e, Index from, Index to) {
      const Vector<double>& c = energy[static_cast<std::size_t>(e)];
      return -scale[static_cast<std::size_t>(e)] * (c(to) - c(from)) /
             static_cast<double>(to - from);
    });
    return grid.to_plan(fill.ranks, name(), budget.budget);
  }

 private:
  std::vector<double> k_weights_;  ///< (L)
  std::vector<double> v_weights_;  ///< (L)
  Options options_{};
  double max_weight_ = 0.0;
};

static_assert(RankSchedule<SensitivityRankSchedule>);

}  // namespace latentkv
