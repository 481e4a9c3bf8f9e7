// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/schedule/greedy_search_rank_schedule.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "latentkv/schedule/sensitivity_rank_schedule.hpp"
#include "synthetic_spectra.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;
using SearchOptions = GreedySearchRankSchedule::Options;

struct SearchCase {
  RankProblem problem;
  std::vector<double> wk, wv;
  [[nodiscard]] GreedySearchRankSchedule::Divergence divergence() const {
    return [this](const RankPlan& plan) { return testing::weighted_tail(problem, plan, wk, wv); };
  }
};

SearchCase small_case() {
  SearchCase s{testing::smollm2_like_problem(1, 4), {}, {}};
  for (Index l = 0; l < 4; ++l) {
    s.wk.push_back(3.0 - 0.5 * static_cast<double>(l));
    s.wv.push_back(1.0 + 0.25 * static_cast<double>(l));
  }
  return s;
}

SearchOptions options(Index step, Index per_round) {
  SearchOptions o;
  o.step = step;
  o.decrements_per_round = per_round;
  return o;
}

TEST(GreedySearchRankSchedule, ReachesTheBudgetAndReportsItsCost) {
  const SearchCase s = small_case();
  Index calls = 0;
  const auto divergence = s.divergence();
  const GreedySearchRankSchedule schedule(
      [&](const RankPlan& plan) {
        ++calls;
        return divergence(plan);
      },
      options(8, 1));
  const auto result = schedule.search(s.problem, testing::budget_of(0.5, 8));
  EXPECT_EQ(result.plan.schedule, "search");
  EXPECT_DOUBLE_EQ(result.plan.budget(), 0.5);
  // From 24 entries at 64 to half the width in steps of 8, one per round: 96 rounds, each
  // evaluating every entry still above its floor (24 in the first round).
  EXPECT_EQ(result.rounds, 96);
  EXPECT_EQ(result.evaluations, calls);
  EXPECT_GT(result.evaluations, 24 * 48);
  EXPECT_LE(result.evaluations, 24 * 96);
  EXPECT_EQ(schedule.plan(s.problem, testing::budget_of(0.5, 8)), result.plan);
}

TEST(GreedySearchRankSchedule, BatchingEvaluatesFewerTimes) {
  const SearchCase s = small_case();
  const RankBudget budget = testing::budget_of(0.3, 8);
  const auto one =
      GreedySearchRankSchedule(s.divergence(), options(8, 1)).search(s.problem, budget);
  const auto four =
      GreedySearchRankSchedule(s.divergence(), options(8, 4)).search(s.problem, budget);
  EXPECT_LT(four.evaluations * 3, one.evaluations);
  EXPECT_LT(four.rounds * 3, one.rounds);
  // Both reach the budget; the batched one is a little worse at most.
  EXPECT_EQ(four.plan.latent_width(), one.plan.latent_width());
  const double d_one = testing::weighted_tail(s.problem, one.plan, s.wk, s.wv);
  const double d_four = testing::weighted_tail(s.problem, four.plan, s.wk, s.wv);
  EXPECT_LE(d_four, 1.1 * d_one);
}

// On a separable concave divergence, removing the cheapest unit each time is optimal, so the
// search agrees with the sensitivity schedule's greedy allocation for the same weights.
TEST(GreedySearchRankSchedule, UnitStepsFindTheOptimumOfASeparableDivergence) {
  const SearchCase s = small_case();
  const RankBudget budget = testing::budget_of(0.35);
  const RankPlan searched =
      GreedySearchRankSchedule(s.divergence(), options(1, 1)).plan(s.problem, budget);
  const RankPlan allocated = SensitivityRankSchedule(s.wk, s.wv).plan(s.problem, budget);
  EXPECT_EQ(searched.latent_width(), allocated.latent_width());
  EXPECT_NEAR(testing::weighted_tail(s.problem, searched, s.wk, s.wv),
              testing::weighted_tail(s.problem, allocated, s.wk, s.wv), 1e-12);
}

TEST(GreedySearchRankSchedule, LowersTheCheapestEntriesFirst) {
  const SearchCase s = small_case();
  // Layer 0 K weighs 3, layer 3 V weighs 1.75 but has a flatter spectrum; the steep, light K of
  // layer 3 (weight 1.5) is the cheapest to cut.
  const RankPlan plan = GreedySearchRankSchedule(s.divergence(), options(8, 2))
                            .plan(s.problem, testing::budget_of(0.6, 8));
  EXPECT_LT(plan.layers[3].width_k(), plan.layers[0].width_k());
  EXPECT_LT(plan.layers[3].width_k(), plan.layers[3].width_v());
}

TEST(GreedySearchRankSchedule, StepIsRoundedToTheMultiple) {
  const SearchCase s = small_case();
  std::vector<Index> seen;
  const GreedySearchRankSchedule schedule(
      [&](const RankPlan& plan) {
        for (const Index r : testing::flat_ranks(plan)) seen.push_back(r);
        return testing::weighted_tail(s.problem, plan, s.wk, s.wv);
      },
      options(5, 3));
  const RankPlan plan = schedule.plan(s.problem, testing::budget_of(0.5, 16));
  for (const Index r : seen) EXPECT_EQ(r % 16, 0) << r;
  EXPECT_TRUE(std::find(seen.begin(), seen.end(), 48) != seen.end());
  EXPECT_DOUBLE_EQ(plan.budget(), 0.5);
}

TEST(GreedySearchRankSchedule, StartsFromTheCeiling) {
  const SearchCase s = small_case();
  const RankPlan ceiling = s.problem.uniform_plan(40);
  Index evaluations = 0;
  const GreedySearchRankSchedule schedule(
      [&](const RankPlan& plan) {
        ++evaluations;
        for (const Index r : testing::flat_ranks(plan)) EXPECT_LE(r, 40);
        return testing::weighted_tail(s.problem, plan, s.wk, s.wv);
      },
      options(8, 4));
  // Already within the budget: no evaluation at all.
  EXPECT_EQ(schedule.plan(s.problem, testing::budget_of(40.0 / 64.0, 8, ceiling)).budget(),
            40.0 / 64.0);
  EXPECT_EQ(evaluations, 0);
  const RankPlan plan = schedule.plan(s.problem, testing::budget_of(0.4, 8, ceiling));
  EXPECT_GT(evaluations, 0);
  EXPECT_NEAR(plan.budget(), 0.4, 8.0 / 768.0);
}

TEST(GreedySearchRankSchedule, RejectsBadDivergencesAndOptions) {
  const SearchCase s = small_case();
  EXPECT_THROW(GreedySearchRankSchedule(GreedySearchRankSchedule::Divergence{}), InvalidArgument);
  EXPECT_THROW(GreedySearchRankSchedule(s.divergence(), options(0, 1)), InvalidArgument);
  EXPECT_THROW(GreedySearchRankSchedule(s.divergence(), options(8, 0)), InvalidArgument);
  const GreedySearchRankSchedule nan(
      [](const RankPlan&) { return std::numeric_limits<double>::quiet_NaN(); });
  try {
    (void)nan.plan(s.problem, testing::budget_of(0.5));
    FAIL();
  } catch (const NumericalError& e) {
    EXPECT_THAT(e.what(), HasSubstr("the divergence is NaN with layer 0 k group 0 at rank 56"));
  }
}

}  // namespace
}  // namespace latentkv
