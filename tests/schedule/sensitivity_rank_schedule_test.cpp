// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/schedule/sensitivity_rank_schedule.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "latentkv/schedule/energy_rank_schedule.hpp"
#include "latentkv/schedule/progressive_rank_schedule.hpp"
#include "latentkv/schedule/uniform_rank_schedule.hpp"
#include "synthetic_spectra.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;

// Every layer with the same spectra: only the weights tell layers apart.
RankProblem identical_layers(Index layers) {
  RankProblem p = testing::smollm2_like_problem(3, layers);
  for (LayerSpectra& l : p.layers) l = p.layers[0];
  return p;
}

std::vector<double> rising(Index layers) {
  std::vector<double> w;
  for (Index l = 0; l < layers; ++l) w.push_back(1.0 + static_cast<double>(l));
  return w;
}

TEST(SensitivityRankSchedule, HeavierLayersGetMoreRank) {
  const RankProblem p = identical_layers(8);
  const RankPlan plan = SensitivityRankSchedule{rising(8)}.plan(p, testing::budget_of(0.4));
  EXPECT_EQ(plan.schedule, "sensitivity");
  for (std::size_t l = 0; l + 1 < 8; ++l) {
    EXPECT_LE(plan.layers[l].k[0], plan.layers[l + 1].k[0]) << l;
    EXPECT_LE(plan.layers[l].v[0], plan.layers[l + 1].v[0]) << l;
  }
  EXPECT_LT(plan.layers.front().k[0] + 8, plan.layers.back().k[0]);
}

TEST(SensitivityRankSchedule, AlphaZeroIgnoresTheWeights) {
  const RankProblem p = identical_layers(8);
  SensitivityRankSchedule::Options o;
  o.alpha = 0.0;
  const RankPlan plan = SensitivityRankSchedule(rising(8), o).plan(p, testing::budget_of(0.4));
  for (const LayerRanks& l : plan.layers) {
    EXPECT_LE(std::abs(l.k[0] - plan.layers[0].k[0]), 1);
    EXPECT_LE(std::abs(l.v[0] - plan.layers[0].v[0]), 1);
  }
}

TEST(SensitivityRankSchedule, PerSideWeightsSplitKAndV) {
  RankProblem p = identical_layers(4);
  for (LayerSpectra& l : p.layers) l.v = l.k;  // K and V spectra equal
  const std::vector<double> heavy(4, 10.0), light(4, 1.0);
  const RankPlan plan = SensitivityRankSchedule(heavy, light).plan(p, testing::budget_of(0.3));
  for (const LayerRanks& l : plan.layers) EXPECT_GT(l.k[0], l.v[0]);
  const RankPlan flipped = SensitivityRankSchedule(light, heavy).plan(p, testing::budget_of(0.3));
  for (const LayerRanks& l : flipped.layers) EXPECT_LT(l.k[0], l.v[0]);
}

// The greedy allocation is optimal for the separable concave objective it documents: no other
// plan of the same width has a lower weighted tail energy.
TEST(SensitivityRankSchedule, MinimizesTheWeightedTailEnergy) {
  const RankProblem p = testing::smollm2_like_problem(1);
  const std::vector<double> wk = rising(30), wv(30, 4.0);
  // No floor: the objective below is the one the schedule then minimizes exactly.
  const SensitivityRankSchedule schedule(wk, wv, {.alpha = 1.0, .weight_floor = 0.0, .power = 2.0});
  for (const double b : {0.2, 0.5}) {
    const RankBudget budget = testing::budget_of(b);
    const RankPlan plan = schedule.plan(p, budget);
    const double d = testing::weighted_tail(p, plan, wk, wv);
    for (const RankPlan& other :
         {UniformRankSchedule{}.plan(p, budget), ProgressiveRankSchedule{}.plan(p, budget),
          EnergyRankSchedule{}.plan(p, budget)}) {
      EXPECT_LE(other.latent_width(), plan.latent_width());
      EXPECT_LT(d, testing::weighted_tail(p, other, wk, wv)) << other.schedule << " " << b;
    }
    // Moving one rank between any two entries cannot help (local optimality).
    RankPlan moved = plan;
    moved.layers[0].k[0] -= 1;
    moved.layers[29].v[2] += 1;
    EXPECT_GE(testing::weighted_tail(p, moved, wk, wv), d);
  }
}

TEST(SensitivityRankSchedule, ChecksTheWeights) {
  const auto message = [](auto make) {
    try {
      (void)make();
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message([] {
                return SensitivityRankSchedule{std::vector<double>{1.0, -2.0}};
              }),
              HasSubstr("k weight of layer 1 = -2, expected finite and >= 0"));
  EXPECT_THAT(message([] {
                return SensitivityRankSchedule{std::vector<double>{0.0, 0.0}};
              }),
              HasSubstr("every weight is 0"));
  EXPECT_THAT(message([] { return SensitivityRankSchedule{std::vector<double>{}}; }),
              HasSubstr("no weights given"));
  EXPECT_THAT(message([] {
                return SensitivityRankSchedule(std::vector<double>{1.0}, std::vector<double>{});
              }),
              HasSubstr("1 K weights and 0 V weights"));
  const RankProblem p = testing::smollm2_like_problem(3, 4);
  try {
    (void)SensitivityRankSchedule{rising(3)}.plan(p, testing::budget_of(0.5));
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("the problem has 4 layers, the schedule has weights for 3"));
  }
}

TEST(SensitivityRankSchedule, ZeroWeightLayersStillFollowTheirSpectrum) {
  // With weight_floor, a zero-weight layer still gets rank where its spectrum pays most.
  RankProblem p = testing::smollm2_like_problem(3, 2);
  const RankPlan plan =
      SensitivityRankSchedule{std::vector<double>{1.0, 0.0}}.plan(p, testing::budget_of(0.6));
  EXPECT_GT(plan.layers[1].v[0], 8);
  EXPECT_GT(plan.layers[0].width(), plan.layers[1].width());
}

}  // namespace
}  // namespace latentkv
