// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/schedule/uniform_rank_schedule.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "synthetic_spectra.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;

TEST(UniformRankSchedule, EvenBudgetGivesOneRankEverywhere) {
  const RankProblem p = testing::smollm2_like_problem(3);
  const RankPlan plan = UniformRankSchedule{}.plan(p, testing::budget_of(0.5));
  for (const Index r : testing::flat_ranks(plan)) EXPECT_EQ(r, 96);
  EXPECT_EQ(plan.schedule, "uniform");
  EXPECT_DOUBLE_EQ(plan.budget(), 0.5);
}

TEST(UniformRankSchedule, RemainderGoesToTheFirstEntries) {
  // Joint: 60 entries of max 192; budget 0.3 → 0.3·11520 = 3456 = 60·57 + 36: 36 entries at 58.
  const RankProblem p = testing::smollm2_like_problem(3);
  const std::vector<Index> ranks =
      testing::flat_ranks(UniformRankSchedule{}.plan(p, testing::budget_of(0.3)));
  for (std::size_t e = 0; e < ranks.size(); ++e) EXPECT_EQ(ranks[e], e < 36 ? 58 : 57) << e;
}

TEST(UniformRankSchedule, RanksDifferByAtMostOneMultiple) {
  const RankProblem p = testing::smollm2_like_problem(1);
  for (const double b : {0.27, 0.55, 0.81}) {
    const std::vector<Index> ranks =
        testing::flat_ranks(UniformRankSchedule{}.plan(p, testing::budget_of(b, 16)));
    const auto [lo, hi] = std::minmax_element(ranks.begin(), ranks.end());
    EXPECT_LE(*hi - *lo, 16) << b;
  }
}

TEST(UniformRankSchedule, IgnoresTheSpectra) {
  RankProblem p = testing::smollm2_like_problem(1, 6);
  const RankPlan a = UniformRankSchedule{}.plan(p, testing::budget_of(0.42, 8));
  p.layers[3].k[1] *= 100.0;
  p.layers[0].v[0] = testing::power_law(64, 2.0, 1.0);
  EXPECT_EQ(UniformRankSchedule{}.plan(p, testing::budget_of(0.42, 8)), a);
}

// d < s·h: max_rank = d, so a full budget cannot be reached and is refused, not clamped.
TEST(UniformRankSchedule, RejectsABudgetAboveTheLargestPlan) {
  RankProblem p;
  p.d_model = 32;
  p.num_kv_heads = 1;
  p.head_dim = 64;
  p.heads_per_group = 1;
  p.layers.assign(
      3, LayerSpectra{{testing::power_law(32, 0.5, 1.0)}, {testing::power_law(32, 0.5, 1.0)}});
  try {
    (void)UniformRankSchedule{}.plan(p, testing::budget_of(1.0));
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("latentkv::UniformRankSchedule::plan: budget = 1 is above 0.5, "
                                    "the largest plan (every rank = max_rank = 32)"));
  }
  const RankPlan plan = UniformRankSchedule{}.plan(p, testing::budget_of(0.5, 8));
  for (const Index r : testing::flat_ranks(plan)) EXPECT_EQ(r, 32);
}

}  // namespace
}  // namespace latentkv
