// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/schedule/energy_rank_schedule.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "synthetic_spectra.hpp"

namespace latentkv {
namespace {

// Σ_{i<r} σ_i² / Σ σ_i², computed independently of the schedule.
double kept_energy(const Vector<double>& sigma, Index r) {
  return sigma.head(r).squaredNorm() / sigma.squaredNorm();
}

const Vector<double>& spectrum_of(const RankProblem& p, Index l, int side, Index g) {
  const LayerSpectra& s = p.layers[static_cast<std::size_t>(l)];
  return (side == 0 ? s.k : s.v)[static_cast<std::size_t>(g)];
}
Index rank_of(const RankPlan& plan, Index l, int side, Index g) {
  const LayerRanks& r = plan.layers[static_cast<std::size_t>(l)];
  return (side == 0 ? r.k : r.v)[static_cast<std::size_t>(g)];
}

TEST(EnergyRankSchedule, EveryMatrixKeepsTheThresholdAndNoRankIsWasted) {
  const EnergyRankSchedule schedule;
  for (const Index s : {Index{3}, Index{1}}) {
    const RankProblem p = testing::smollm2_like_problem(s);
    for (const Index multiple : {Index{1}, Index{8}}) {
      for (const double b : {0.15, 0.3, 0.6, 0.9}) {
        const RankBudget budget = testing::budget_of(b, multiple);
        if (b < static_cast<double>(multiple) / static_cast<double>(p.max_rank())) continue;
        const RankPlan plan = schedule.plan(p, budget);
        const double tau = schedule.threshold(p, budget);
        ASSERT_GT(tau, 0.0);
        ASSERT_LE(tau, 1.0);
        for (Index l = 0; l < p.num_layers(); ++l) {
          for (int side = 0; side < 2; ++side) {
            for (Index g = 0; g < p.num_groups(); ++g) {
              const Vector<double>& sigma = spectrum_of(p, l, side, g);
              const Index r = rank_of(plan, l, side, g);
              EXPECT_GE(kept_energy(sigma, r), tau - 1e-12) << l << " " << side << " " << g;
              // One step less would fall short of τ (or the rank is already the smallest).
              if (r > multiple) {
                const Index lower = (r - 1) / multiple * multiple;
                EXPECT_LE(kept_energy(sigma, lower), tau + 1e-12) << l << " " << side << " " << g;
              }
            }
          }
        }
      }
    }
  }
}

TEST(EnergyRankSchedule, ThresholdGrowsWithTheBudget) {
  const EnergyRankSchedule schedule;
  const RankProblem p = testing::smollm2_like_problem(3);
  double previous = 0.0;
  for (const double b : {0.1, 0.2, 0.4, 0.6, 0.8}) {
    const double tau = schedule.threshold(p, testing::budget_of(b));
    EXPECT_GT(tau, previous) << b;
    previous = tau;
  }
  EXPECT_EQ(schedule.threshold(p, testing::budget_of(1.0)), 1.0);
}

TEST(EnergyRankSchedule, FlatSpectraGetMoreRank) {
  // V (flat, a ≈ 0.3–0.45) needs far more rank than K (steep, a ≈ 0.7–1.3) for the same energy.
  const RankProblem p = testing::smollm2_like_problem(3);
  const RankPlan plan = EnergyRankSchedule{}.plan(p, testing::budget_of(0.4));
  for (const LayerRanks& l : plan.layers) EXPECT_GT(l.v[0], l.k[0]);
  EXPECT_GT(plan.layers.front().k[0], plan.layers.back().k[0]);  // deeper K is steeper
}

TEST(EnergyRankSchedule, PowerChangesTheEnergyMeasure) {
  const RankProblem p = testing::smollm2_like_problem(3);
  EnergyRankSchedule::Options o;
  o.power = 1.0;
  EXPECT_NE(EnergyRankSchedule{o}.plan(p, testing::budget_of(0.4)),
            EnergyRankSchedule{}.plan(p, testing::budget_of(0.4)));
  o.power = 0.0;
  EXPECT_THROW(EnergyRankSchedule{o}, InvalidArgument);
}

}  // namespace
}  // namespace latentkv
