// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Conformance suite: every RankSchedule through the same checks (budget within one rounding step,
// bounds, multiples, ceilings, monotonicity, bad budgets, determinism) on SmolLM2-shaped spectra.
#include "latentkv/schedule/rank_schedule.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "latentkv/schedule/energy_rank_schedule.hpp"
#include "latentkv/schedule/greedy_search_rank_schedule.hpp"
#include "latentkv/schedule/progressive_rank_schedule.hpp"
#include "latentkv/schedule/sensitivity_rank_schedule.hpp"
#include "latentkv/schedule/uniform_rank_schedule.hpp"
#include "synthetic_spectra.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;

std::vector<double> k_weights(Index layers) {
  std::vector<double> w;
  for (Index l = 0; l < layers; ++l) w.push_back(2.0 / (1.0 + 0.2 * static_cast<double>(l)));
  return w;
}
std::vector<double> v_weights(Index layers) {
  std::vector<double> w;
  for (Index l = 0; l < layers; ++l) w.push_back(1.0 + 0.05 * static_cast<double>(l));
  return w;
}

// How to build each schedule for a problem, the name it reports in errors, and whether it is
// spectrum-based (re-planning under a larger plan's ceiling must then change nothing).
template <class S>
struct Maker;

template <>
struct Maker<UniformRankSchedule> {
  static constexpr const char* kWhere = "latentkv::UniformRankSchedule::plan";
  static constexpr const char* kName = "uniform";
  static constexpr bool kSpectral = true;
  static UniformRankSchedule make(const RankProblem&) { return UniformRankSchedule{}; }
};
template <>
struct Maker<ProgressiveRankSchedule> {
  static constexpr const char* kWhere = "latentkv::ProgressiveRankSchedule::plan";
  static constexpr const char* kName = "progressive";
  static constexpr bool kSpectral = true;
  static ProgressiveRankSchedule make(const RankProblem&) { return ProgressiveRankSchedule{}; }
};
template <>
struct Maker<EnergyRankSchedule> {
  static constexpr const char* kWhere = "latentkv::EnergyRankSchedule::plan";
  static constexpr const char* kName = "energy";
  static constexpr bool kSpectral = true;
  static EnergyRankSchedule make(const RankProblem&) { return EnergyRankSchedule{}; }
};
template <>
struct Maker<SensitivityRankSchedule> {
  static constexpr const char* kWhere = "latentkv::SensitivityRankSchedule::plan";
  static constexpr const char* kName = "sensitivity";
  static constexpr bool kSpectral = true;
  static SensitivityRankSchedule make(const RankProblem& p) {
    return SensitivityRankSchedule(k_weights(p.num_layers()), v_weights(p.num_layers()));
  }
};
template <>
struct Maker<GreedySearchRankSchedule> {
  static constexpr const char* kWhere = "latentkv::GreedySearchRankSchedule::plan";
  static constexpr const char* kName = "search";
  static constexpr bool kSpectral = false;
  static GreedySearchRankSchedule make(const RankProblem& p) {
    // The problem is copied into the divergence: the schedule outlives the caller's reference.
    return GreedySearchRankSchedule(
        [p](const RankPlan& plan) {
          return testing::weighted_tail(p, plan, k_weights(p.num_layers()),
                                        v_weights(p.num_layers()));
        },
        {.step = 16, .decrements_per_round = 8});
  }
};

template <class S>
class RankScheduleConformance : public ::testing::Test {};

using Schedules = ::testing::Types<UniformRankSchedule, ProgressiveRankSchedule, EnergyRankSchedule,
                                   SensitivityRankSchedule, GreedySearchRankSchedule>;
TYPED_TEST_SUITE(RankScheduleConformance, Schedules);

static_assert(RankSchedule<UniformRankSchedule>);
static_assert(RankSchedule<GreedySearchRankSchedule>);

const std::vector<double>& budgets() {
  static const std::vector<double> b{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
  return b;
}

// Checks a plan against the contract of rank_schedule.hpp (the trace names the case).
void expect_plan_meets_contract(const RankProblem& p, const RankPlan& plan, double budget,
                                Index multiple, const std::string& name) {
  SCOPED_TRACE("budget " + std::to_string(budget) + ", multiple " + std::to_string(multiple) +
               ", s " + std::to_string(p.heads_per_group));
  EXPECT_EQ(plan.schedule, name);
  EXPECT_EQ(plan.budget_requested, budget);
  EXPECT_EQ(plan.num_kv_heads, p.num_kv_heads);
  EXPECT_EQ(plan.head_dim, p.head_dim);
  EXPECT_EQ(plan.heads_per_group, p.heads_per_group);
  ASSERT_NO_THROW(plan.validate(p.max_rank()));
  ASSERT_EQ(plan.num_layers(), p.num_layers());
  const double step = static_cast<double>(multiple) /
                      static_cast<double>(p.num_layers() * 2 * p.num_kv_heads * p.head_dim);
  EXPECT_LE(std::abs(plan.budget() - budget), step + 1e-12);
  EXPECT_LE(plan.budget(), budget + 1e-12);  // from below
  for (const Index r : testing::flat_ranks(plan)) {
    EXPECT_TRUE(r % multiple == 0 || r == p.max_rank()) << "rank " << r;
  }
}

TYPED_TEST(RankScheduleConformance, MeetsEveryBudgetWithinOneStep) {
  using M = Maker<TypeParam>;
  for (const Index s : {Index{3}, Index{1}}) {
    const RankProblem p = testing::smollm2_like_problem(s);
    const TypeParam schedule = M::make(p);
    EXPECT_EQ(schedule.name(), M::kName);
    for (const Index multiple : {Index{1}, Index{8}, Index{16}, Index{32}}) {
      const double smallest = static_cast<double>(multiple) / static_cast<double>(p.max_rank());
      for (const double b : budgets()) {
        const RankBudget budget = testing::budget_of(b, multiple);
        if (b < smallest) {
          EXPECT_THROW((void)schedule.plan(p, budget), InvalidArgument) << b << " " << multiple;
          continue;
        }
        expect_plan_meets_contract(p, schedule.plan(p, budget), b, multiple, M::kName);
      }
    }
  }
}

TYPED_TEST(RankScheduleConformance, FullBudgetKeepsEveryRank) {
  const RankProblem p = testing::smollm2_like_problem(3);
  const RankPlan plan = Maker<TypeParam>::make(p).plan(p, testing::budget_of(1.0, 8));
  for (const Index r : testing::flat_ranks(plan)) EXPECT_EQ(r, 192);
}

TYPED_TEST(RankScheduleConformance, RejectsBudgetsOutsideTheUnitInterval) {
  using M = Maker<TypeParam>;
  const RankProblem p = testing::smollm2_like_problem(3);
  const TypeParam schedule = M::make(p);
  for (const double b : {0.0, -0.25, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    try {
      (void)schedule.plan(p, testing::budget_of(b, 1));
      ADD_FAILURE() << "budget " << b << " accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_THAT(e.what(), HasSubstr(std::string(M::kWhere) + ": budget = "));
      EXPECT_THAT(e.what(), HasSubstr("expected in (0, 1]"));
    }
  }
  try {
    (void)schedule.plan(p, testing::budget_of(0.5, 0));
    ADD_FAILURE() << "multiple 0 accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("multiple = 0, expected >= 1"));
  }
}

TYPED_TEST(RankScheduleConformance, RejectsABudgetBelowTheSmallestPlan) {
  using M = Maker<TypeParam>;
  const RankProblem p = testing::smollm2_like_problem(3);
  const TypeParam schedule = M::make(p);
  try {
    (void)schedule.plan(p, testing::budget_of(0.01, 8));
    ADD_FAILURE() << "budget 0.01 accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(std::string(e.what()),
              std::string(M::kWhere) +
                  ": budget = 0.01 is below 0.0417, the smallest plan (every rank = 8)");
  }
  // Exactly the smallest plan is fine: every rank at the multiple.
  const RankPlan smallest = schedule.plan(p, testing::budget_of(8.0 / 192.0, 8));
  for (const Index r : testing::flat_ranks(smallest)) EXPECT_EQ(r, 8);
  EXPECT_THROW((void)schedule.plan(p, testing::budget_of(0.004, 1)), InvalidArgument);
}

TYPED_TEST(RankScheduleConformance, RejectsAnInvalidProblem) {
  RankProblem p = testing::smollm2_like_problem(3, 4);
  const TypeParam schedule = Maker<TypeParam>::make(p);
  p.layers[2].v[0](5) = 10.0;  // not descending
  EXPECT_THROW((void)schedule.plan(p, testing::budget_of(0.5)), InvalidArgument);
}

TYPED_TEST(RankScheduleConformance, IsDeterministic) {
  const RankProblem p = testing::smollm2_like_problem(1);
  const TypeParam a = Maker<TypeParam>::make(p);
  const TypeParam b = a;  // a copy plans the same
  for (const double budget : {0.23, 0.61}) {
    const RankBudget rb = testing::budget_of(budget, 8);
    const RankPlan first = a.plan(p, rb);
    EXPECT_EQ(first, a.plan(p, rb));
    EXPECT_EQ(first, b.plan(p, rb));
  }
}

// Elastic loading: no entry may grow when the budget shrinks.
TYPED_TEST(RankScheduleConformance, RanksNeverGrowWhenTheBudgetShrinks) {
  for (const Index s : {Index{3}, Index{1}}) {
    const RankProblem p = testing::smollm2_like_problem(s);
    const TypeParam schedule = Maker<TypeParam>::make(p);
    for (const Index multiple : {Index{1}, Index{16}}) {
      std::vector<Index> previous = testing::flat_ranks(p.uniform_plan(p.max_rank()));
      for (double b = 1.0; b >= 0.25 - 1e-9; b -= 0.0125) {
        const std::vector<Index> ranks =
            testing::flat_ranks(schedule.plan(p, testing::budget_of(b, multiple)));
        for (std::size_t e = 0; e < ranks.size(); ++e) {
          ASSERT_LE(ranks[e], previous[e]) << "entry " << e << " grew at budget " << b << ", s "
                                           << s << ", multiple " << multiple;
        }
        previous = ranks;
      }
    }
  }
}

TYPED_TEST(RankScheduleConformance, RespectsACeiling) {
  const RankProblem p = testing::smollm2_like_problem(1);
  const TypeParam schedule = Maker<TypeParam>::make(p);
  RankPlan ceiling = p.uniform_plan(48);
  for (Index l = 0; l < ceiling.num_layers(); ++l) {  // uneven: 16..64
    auto& r = ceiling.layers[static_cast<std::size_t>(l)];
    r.k[0] = 16 * (1 + l % 4);
    r.v[2] = 64 - 16 * (l % 3);
  }
  for (const double b : {0.26, 0.4, 0.6, ceiling.budget()}) {  // (16 / 64 = 0.25 is the least)
    const RankPlan plan = schedule.plan(p, testing::budget_of(b, 16, ceiling));
    expect_plan_meets_contract(p, plan, b, 16, Maker<TypeParam>::kName);
    const std::vector<Index> ranks = testing::flat_ranks(plan);
    const std::vector<Index> caps = testing::flat_ranks(ceiling);
    for (std::size_t e = 0; e < ranks.size(); ++e) EXPECT_LE(ranks[e], caps[e]) << "entry " << e;
  }
  try {
    (void)schedule.plan(p, testing::budget_of(0.9, 16, ceiling));
    ADD_FAILURE() << "a budget above the ceiling's was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(
        e.what(),
        HasSubstr("budget = 0.9 is above 0.726, the largest plan (every rank = its ceiling)"));
  }
  RankPlan other = ceiling;
  other.heads_per_group = 3;
  EXPECT_THROW((void)schedule.plan(p, testing::budget_of(0.3, 1, other)), InvalidArgument);
  other = ceiling;
  other.layers[3].k[1] = 65;  // above max_rank
  EXPECT_THROW((void)schedule.plan(p, testing::budget_of(0.3, 1, other)), InvalidArgument);
}

// A ceiling need not be made of multiples (e.g. a checkpoint planned with multiple 1): its odd
// entries are allowed values of their own, and the budget is still met within one step.
TYPED_TEST(RankScheduleConformance, HandlesCeilingsThatAreNotMultiples) {
  const RankProblem p = testing::smollm2_like_problem(1, 6);
  const TypeParam schedule = Maker<TypeParam>::make(p);
  RankPlan ceiling = p.uniform_plan(64);
  for (Index l = 0; l < 6; ++l) {
    auto& r = ceiling.layers[static_cast<std::size_t>(l)];
    r.k = {37 + l, 50, 5};
    r.v = {64, 29 - l, 61};
  }
  const std::vector<Index> caps = testing::flat_ranks(ceiling);
  const double step = 8.0 / static_cast<double>(6 * 2 * 3 * 64);
  for (double b = 0.15; b < ceiling.budget(); b += 0.05) {  // the least is 45 / 384
    const RankPlan plan = schedule.plan(p, testing::budget_of(b, 8, ceiling));
    EXPECT_LE(std::abs(plan.budget() - b), step + 1e-12) << b;
    EXPECT_LE(plan.budget(), b + 1e-12) << b;
    const std::vector<Index> ranks = testing::flat_ranks(plan);
    for (std::size_t e = 0; e < ranks.size(); ++e) {
      EXPECT_LE(ranks[e], caps[e]) << "entry " << e << " budget " << b;
      EXPECT_TRUE(ranks[e] % 8 == 0 || ranks[e] == caps[e]) << ranks[e] << " budget " << b;
    }
  }
  const RankPlan full = schedule.plan(p, testing::budget_of(ceiling.budget(), 8, ceiling));
  EXPECT_EQ(testing::flat_ranks(full), caps);
}

// plan(b', ceiling = plan(b)) == plan(b') for b' < b: a checkpoint made at b can be loaded at b'.
TYPED_TEST(RankScheduleConformance, ReplanningUnderALargerPlanChangesNothing) {
  if constexpr (!Maker<TypeParam>::kSpectral) {
    GTEST_SKIP() << "the search starts from the ceiling, so its path differs";
  } else {
    for (const Index s : {Index{3}, Index{1}}) {
      const RankProblem p = testing::smollm2_like_problem(s);
      const TypeParam schedule = Maker<TypeParam>::make(p);
      for (const Index multiple : {Index{1}, Index{8}}) {
        for (const double b : {0.9, 0.6, 0.35}) {
          const RankPlan big = schedule.plan(p, testing::budget_of(b, multiple));
          for (const double smaller : {b, b - 0.05, b - 0.2}) {
            const RankPlan direct = schedule.plan(p, testing::budget_of(smaller, multiple));
            const RankPlan under = schedule.plan(p, testing::budget_of(smaller, multiple, big));
            EXPECT_EQ(under, direct)
                << "b " << b << " -> " << smaller << ", s " << s << ", multiple " << multiple;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace latentkv
