// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Progressive rank schedule (LoRC, DESIGN §5): data-free; layers whose errors pass through more
// ill-conditioned layers downstream keep more rank, so shallow layers are compressed less.
//   κ(W)    = σ_1 / max(σ_m, condition_floor·σ_1)     (σ of one group matrix, m = max_rank)
//   κ_{l,K} = combine_g κ(W_k[l, g])                  (geometric mean (default) or max over G)
//   joint:    log κ_l = log κ_{l,K} + log κ_{l,V}     (κ_l = κ(W_k)·κ(W_v)): K and V share s_l
//   separate: K and V use their own log κ_{l,K}, log κ_{l,V}, hence their own C and s
//   log C_l = Σ_{j=l..L−1} log κ_j                    (the cumulative condition number, in logs)
//   s_l     = (log C_l − min_j log C_j) / (max_j log C_j − min_j log C_j) ∈ [0, 1]
//             (s_0 = 1 since log κ ≥ 0; s ≡ 1 when every log C_l is equal, e.g. L = 1)
//   r_l(t)  = t·(1 + (spread − 1)·s_l^shape)          (r_min = t at s = 0, r_max = spread·t at 1)
// rounded to the nearest allowed value (multiples of `multiple`, clamped to [multiple, max_rank]
// or the ceiling). t is the largest scale whose plan fits the budget (fill_by_priority: every r_l
// is non-decreasing in t, so ranks never grow when the budget shrinks; ties between entries with
// the same s go to the first in (layer, K before V, group) order). spread = 1 is the uniform
// schedule. The LoRC paper does not publish its exact formula; every constant above is an Options
// member so the reconstruction can be tuned against measurements (on SmolLM2: κ(W_k) ≈ 31–166,
// κ(W_v) ≈ 5–9, so in joint mode K dominates the ordering).
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

class ProgressiveRankSchedule {
 public:
  /// How the K and V condition numbers form the cumulative product.
  enum class Products {
    kJoint,    ///< κ_l = κ(W_k)·κ(W_v): one s_l per layer for K and V (DESIGN §5)
    kSeparate  ///< K ranks follow Π κ(W_k), V ranks follow Π κ(W_v)
  };
  /// How the groups of one layer and side combine into one κ.
  enum class GroupCombine {
    kGeometricMean,  ///< exp(mean_g log κ_g): every group counts
    kMax             ///< max_g κ_g: the worst-conditioned group decides
  };

  struct Options {
    Products products = Products::kJoint;
    GroupCombine group_combine = GroupCombine::kGeometricMean;
    /// σ_m is floored at condition_floor·σ_1 (trailing σ can be ~0, which would make κ infinite),
    /// so κ <= 1 / condition_floor. In (0, 1].
    double condition_floor = 1e-4;
    /// r_max / r_min: rank of the most sensitive layer (s = 1) over the least (s = 0), >= 1.
    double spread = 2.0;
    /// Exponent applied to s_l (1: linear in log C_l as DESIGN §5), > 0.
    double shape = 1.0;
  };

  /// The per-layer quantities of the notation block, for reports and tests.
  struct Scores {
    std::vector<double> log_kappa_k;  ///< (L) log κ_{l,K} (groups combined)
    std::vector<double> log_kappa_v;  ///< (L) log κ_{l,V}
    std::vector<double> log_c_k;      ///< (L) log C_l driving K ranks (joint: of κ_K·κ_V)
    std::vector<double> log_c_v;      ///< (L) log C_l driving V ranks (joint: equal to log_c_k)
    std::vector<double> s_k;          ///< (L) s_l ∈ [0, 1] of K
    std::vector<double> s_v;          ///< (L) s_l ∈ [0, 1] of V
  };

  ProgressiveRankSchedule() = default;
  explicit ProgressiveRankSchedule(Options options) : options_(options) {
    constexpr const char* kWhere = "latentkv::ProgressiveRankSchedule";
    if (!(options_.condition_floor > 0.0 && options_.condition_floor <= 1.0)) {
      detail::raise<InvalidArgument>(kWhere, "condition_floor = ", options_.condition_floor,
                                     ", expected in (0, 1]");
    }
    if (!(options_.spread >= 1.0) || !std::isfinite(options_.spread)) {
      detail::raise<InvalidArgument>(kWhere, "spread = ", options_.spread,
                                     ", expected finite and >= 1");
    }
    if (!(options_.shape > 0.0) || !std::isfinite(options_.shape)) {
      detail::raise<InvalidArgument>(kWhere, "shape = ", options_.shape,
                                     ", expected finite and > 0");
    }
  }

  [[nodiscard]] std::string name() const { return "progressive"; }
  [[nodiscard]] const Options& options() const noexcept { return options_; }

  /// κ of one spectrum σ: (m), descending, with the floor of Options.
  [[nodiscard]] double condition_number(const Vector<double>& sigma) const {
    const double top = sigma.size() > 0 ? sigma(0) : 0.0;
    if (!(top > 0.0)) return 1.0;  // a zero matrix: no amplification
    const double bottom = std::max(sigma(sigma.size() - 1), options_.condition_floor * top);
    return top / bottom;
  }

  /// log κ, log C and s per layer and side (problem validated first).
  [[nodiscard]] Scores scores(const RankProblem& problem) const {
    problem.validate();
    const auto num_layers = static_cast<std::size_t>(problem.num_layers());
    Scores out;
    out.log_kappa_k.resize(num_layers);
    out.log_kappa_v.resize(num_layers);
    for (std::size_t l = 0; l < num_layers; ++l) {
      out.log_kappa_k[l] = combined_log_kappa(problem.layers[l].k);
      out.log_kappa_v[l] = combined_log_kappa(problem.layers[l].v);
    }
    if (options_.products == Products::kJoint) {
      std::vector<double> joint(num_layers);
      for (std::size_t l = 0; l < num_layers; ++l) {
        joint[l] = out.log_kappa_k[l] + out.log_kappa_v[l];
      }
      out.log_c_k = suffix_sums(joint);
      out.log_c_v = out.log_c_k;
    } else {
      out.log_c_k = suffix_sums(out.log_kappa_k);
      out.log_c_v = suffix_sums(out.log_kappa_v);
    }
    out.s_k = min_max_normalized(out.log_c_k);
    out.s_v = min_max_normalized(out.log_c_v);
    return out;
  }

  /// problem: L layers of G group spectra per side → plan meeting budget.budget from below within
  /// one rounding step, shallow layers (larger log C_l) at ranks >= deeper ones before rounding
  /// ties and ceilings.
  [[nodiscard]] RankPlan plan(const RankProblem& problem, const RankBudget& budget) const {
    constexpr const char* kWhere = "latentkv::ProgressiveRankSchedule::plan";
    const detail::RankGrid grid = detail::make_rank_grid(kWhere, problem, budget);
    const Scores sc = scores(problem);
    std::vector<double> weight(static_cast<std::size_t>(grid.num_entries()));
    for (Index e = 0; e < grid.num_entries(); ++e) {
      const auto l = static_cast<std::size_t>(grid.layer_of(e));
      const double s = grid.side_of(e) == 0 ? sc.s_k[l] : sc.s_v[l];
      weight[static_cast<std::size_t>(e)] =
          1.0 + (options_.spread - 1.0) * std::pow(s, options_.shape);
    }
    // r_e(t) = t·w_e rounded to nearest: the step from → to happens at t = (from + to) / (2·w_e).
    const auto fill = detail::fill_by_priority(kWhere, grid, [&](Index e, Index from, Index to) {
      return 0.5 * static_cast<double>(from + to) / weight[static_cast<std::size_t>(e)];
    });
    return grid.to_plan(fill.ranks, name(), budget.budget);
  }

 private:
  [[nodiscard]] double combined_log_kappa(const std::vector<Vector<double>>& groups) const {
    double acc = 0.0;  // log κ >= 0: a valid start for both the sum and the max
    for (const Vector<double>& sigma : groups) {
      const double lk = std::log(condition_number(sigma));
      acc = options_.group_combine == GroupCombine::kMax ? std::max(acc, lk) : acc + lk;
    }
    if (options_.group_combine == GroupCombine::kGeometricMean && !groups.empty()) {
      acc /= static_cast<double>(groups.size());
    }
    return acc;
  }

  [[nodiscard]] static std::vector<double> suffix_sums(const std::vector<double>& x) {
    std::vector<double> c(x.size());
    double acc = 0.0;
    for (std::size_t i = x.size(); i-- > 0;) {
      acc += x[i];
      c[i] = acc;
    }
    return c;
  }

  [[nodiscard]] static std::vector<double> min_max_normalized(const std::vector<double>& x) {
    const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
    std::vector<double> s(x.size(), 1.0);
    const double range = *hi - *lo;
    if (!(range > 1e-12 * std::max(1.0, std::abs(*hi)))) return s;
    for (std::size_t i = 0; i < x.size(); ++i) s[i] = (x[i] - *lo) / range;
    return s;
  }

  Options options_{};
};

static_assert(RankSchedule<ProgressiveRankSchedule>);

}  // namespace latentkv
