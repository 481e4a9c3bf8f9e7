// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/schedule/progressive_rank_schedule.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "latentkv/schedule/uniform_rank_schedule.hpp"
#include "synthetic_spectra.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;
using ProgressiveOptions = ProgressiveRankSchedule::Options;

Vector<double> values(std::initializer_list<double> v) {
  Vector<double> out(static_cast<Index>(v.size()));
  Index i = 0;
  for (const double x : v) out(i++) = x;
  return out;
}

// d = 8, one KV head of 4 (max_rank 4), 3 layers with hand-picked condition numbers:
//   κ_K = 4, 8, 2;  κ_V = 1, 2, 1.
RankProblem hand_problem() {
  RankProblem p;
  p.d_model = 8;
  p.num_kv_heads = 1;
  p.head_dim = 4;
  p.heads_per_group = 1;
  p.layers = {LayerSpectra{{values({4, 2, 1, 1})}, {values({1, 1, 1, 1})}},
              LayerSpectra{{values({8, 4, 2, 1})}, {values({2, 1, 1, 1})}},
              LayerSpectra{{values({2, 2, 2, 1})}, {values({3, 3, 3, 3})}}};
  return p;
}

TEST(ProgressiveRankSchedule, JointScoresFollowTheCumulativeConditionNumber) {
  const auto sc = ProgressiveRankSchedule{}.scores(hand_problem());
  // log κ_l = log(κ_K·κ_V) = log 4, log 16, log 2; log C_l = log 128, log 32, log 2.
  EXPECT_NEAR(sc.log_kappa_k[1], std::log(8.0), 1e-12);
  EXPECT_NEAR(sc.log_kappa_v[1], std::log(2.0), 1e-12);
  EXPECT_NEAR(sc.log_c_k[0], std::log(128.0), 1e-12);
  EXPECT_NEAR(sc.log_c_k[1], std::log(32.0), 1e-12);
  EXPECT_NEAR(sc.log_c_k[2], std::log(2.0), 1e-12);
  EXPECT_EQ(sc.log_c_v, sc.log_c_k);
  // s = (log C − log 2) / (log 128 − log 2): 1, 4/6, 0.
  EXPECT_NEAR(sc.s_k[0], 1.0, 1e-12);
  EXPECT_NEAR(sc.s_k[1], 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(sc.s_k[2], 0.0, 1e-12);
  EXPECT_EQ(sc.s_v, sc.s_k);
}

TEST(ProgressiveRankSchedule, SeparateScoresUseEachSidesOwnProduct) {
  ProgressiveOptions o;
  o.products = ProgressiveRankSchedule::Products::kSeparate;
  const auto sc = ProgressiveRankSchedule{o}.scores(hand_problem());
  // K: log C = log 64, log 16, log 2 → s = 1, 3/5, 0.  V: log C = log 2, log 2, 0 → s = 1, 1, 0.
  EXPECT_NEAR(sc.log_c_k[0], std::log(64.0), 1e-12);
  EXPECT_NEAR(sc.s_k[1], 0.6, 1e-12);
  EXPECT_NEAR(sc.log_c_v[1], std::log(2.0), 1e-12);
  EXPECT_NEAR(sc.s_v[0], 1.0, 1e-12);
  EXPECT_NEAR(sc.s_v[1], 1.0, 1e-12);
  EXPECT_NEAR(sc.s_v[2], 0.0, 1e-12);
}

TEST(ProgressiveRankSchedule, ConditionFloorBoundsKappa) {
  const Vector<double> rank_one = values({2, 0, 0, 0});
  EXPECT_NEAR(ProgressiveRankSchedule{}.condition_number(rank_one), 1e4, 1e-6);
  ProgressiveOptions o;
  o.condition_floor = 0.01;
  EXPECT_NEAR(ProgressiveRankSchedule{o}.condition_number(rank_one), 100.0, 1e-9);
  EXPECT_NEAR(ProgressiveRankSchedule{o}.condition_number(values({4, 2, 1, 1})), 4.0, 1e-12);
  EXPECT_EQ(ProgressiveRankSchedule{}.condition_number(values({0, 0, 0, 0})), 1.0);
}

TEST(ProgressiveRankSchedule, GroupCombineIsGeometricMeanOrMax) {
  RankProblem p = hand_problem();
  p.num_kv_heads = 2;  // two groups of one head: κ_K of layer 0 = 4 and 16
  for (LayerSpectra& l : p.layers) {
    l.k.push_back(l.k[0]);
    l.v.push_back(l.v[0]);
  }
  p.layers[0].k[1] = values({16, 4, 2, 1});
  EXPECT_NEAR(ProgressiveRankSchedule{}.scores(p).log_kappa_k[0], std::log(8.0), 1e-12);
  ProgressiveOptions o;
  o.group_combine = ProgressiveRankSchedule::GroupCombine::kMax;
  EXPECT_NEAR(ProgressiveRankSchedule{o}.scores(p).log_kappa_k[0], std::log(16.0), 1e-12);
}

TEST(ProgressiveRankSchedule, ShallowLayersKeepAtLeastTheRanksOfDeeperOnes) {
  for (const auto products :
       {ProgressiveRankSchedule::Products::kJoint, ProgressiveRankSchedule::Products::kSeparate}) {
    ProgressiveOptions o;
    o.products = products;
    const ProgressiveRankSchedule schedule{o};
    for (const Index s : {Index{3}, Index{1}}) {
      const RankProblem p = testing::smollm2_like_problem(s);
      const auto sc = schedule.scores(p);
      for (Index l = 0; l + 1 < p.num_layers(); ++l) {  // C_l decreases with l
        ASSERT_GT(sc.log_c_k[static_cast<std::size_t>(l)],
                  sc.log_c_k[static_cast<std::size_t>(l + 1)]);
      }
      for (const Index multiple : {Index{1}, Index{16}}) {
        for (const double b : {0.3, 0.45, 0.7}) {
          const RankPlan plan = schedule.plan(p, testing::budget_of(b, multiple));
          for (Index l = 0; l + 1 < p.num_layers(); ++l) {
            const LayerRanks& a = plan.layers[static_cast<std::size_t>(l)];
            const LayerRanks& d = plan.layers[static_cast<std::size_t>(l + 1)];
            EXPECT_GE(a.width_k(), d.width_k()) << "layer " << l << " budget " << b;
            EXPECT_GE(a.width_v(), d.width_v()) << "layer " << l << " budget " << b;
          }
          EXPECT_GT(plan.layers.front().width(), plan.layers.back().width()) << b;
        }
      }
    }
  }
}

TEST(ProgressiveRankSchedule, SpreadIsTheRatioOfTheExtremeRanks) {
  const RankProblem p = testing::smollm2_like_problem(3);
  for (const double spread : {1.5, 3.0}) {
    ProgressiveOptions o;
    o.spread = spread;
    const RankPlan plan = ProgressiveRankSchedule{o}.plan(p, testing::budget_of(0.3));
    const double first = static_cast<double>(plan.layers.front().k[0]);
    const double last = static_cast<double>(plan.layers.back().k[0]);
    EXPECT_NEAR(first / last, spread, 0.06 * spread) << first << " / " << last;
  }
}

TEST(ProgressiveRankSchedule, SpreadOneIsUniform) {
  ProgressiveOptions o;
  o.spread = 1.0;
  for (const Index s : {Index{3}, Index{1}}) {
    const RankProblem p = testing::smollm2_like_problem(s);
    for (const double b : {0.33, 0.5}) {
      RankPlan progressive = ProgressiveRankSchedule{o}.plan(p, testing::budget_of(b, 8));
      const RankPlan uniform = UniformRankSchedule{}.plan(p, testing::budget_of(b, 8));
      EXPECT_EQ(progressive.schedule, "progressive");
      progressive.schedule = uniform.schedule;
      EXPECT_EQ(progressive, uniform);
    }
  }
}

TEST(ProgressiveRankSchedule, ShapeBendsTheProfile) {
  // s^shape with shape > 1 lowers the middle layers relative to the first.
  const RankProblem p = testing::smollm2_like_problem(3);
  ProgressiveOptions bent;
  bent.shape = 3.0;
  const RankPlan linear = ProgressiveRankSchedule{}.plan(p, testing::budget_of(0.4));
  const RankPlan cubic = ProgressiveRankSchedule{bent}.plan(p, testing::budget_of(0.4));
  const auto ratio = [](const RankPlan& plan) {
    return static_cast<double>(plan.layers[15].k[0]) / static_cast<double>(plan.layers[0].k[0]);
  };
  EXPECT_LT(ratio(cubic), ratio(linear) - 0.05);
}

TEST(ProgressiveRankSchedule, SeparateProductsGiveVItsOwnProfile) {
  // V spectra equal in every layer: joint mode still tilts V (by K's conditioning); separate mode
  // tilts V linearly in depth by its own equal κ_V.
  RankProblem p = testing::smollm2_like_problem(3);
  for (LayerSpectra& l : p.layers) l.v[0] = testing::power_law(192, 0.4, 1.0);
  ProgressiveOptions o;
  o.products = ProgressiveRankSchedule::Products::kSeparate;
  const auto sc = ProgressiveRankSchedule{o}.scores(p);
  for (std::size_t l = 0; l < 30; ++l) {
    EXPECT_NEAR(sc.s_v[l], static_cast<double>(29 - l) / 29.0, 1e-12);
  }
  const auto joint = ProgressiveRankSchedule{}.scores(p);
  EXPECT_GT(std::abs(joint.s_v[10] - sc.s_v[10]), 1e-3);
  const RankPlan a = ProgressiveRankSchedule{o}.plan(p, testing::budget_of(0.4));
  const RankPlan b = ProgressiveRankSchedule{}.plan(p, testing::budget_of(0.4));
  EXPECT_NE(a, b);
}

TEST(ProgressiveRankSchedule, OptionsAreChecked) {
  const auto message = [](ProgressiveOptions o) {
    try {
      (void)ProgressiveRankSchedule{o};
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  ProgressiveOptions o;
  o.spread = 0.5;
  EXPECT_THAT(message(o), HasSubstr("spread = 0.5, expected finite and >= 1"));
  o = {};
  o.condition_floor = 0.0;
  EXPECT_THAT(message(o), HasSubstr("condition_floor = 0, expected in (0, 1]"));
  o = {};
  o.shape = -1.0;
  EXPECT_THAT(message(o), HasSubstr("shape = -1, expected finite and > 0"));
  EXPECT_EQ(ProgressiveOptions{}.spread, 2.0);
  EXPECT_EQ(ProgressiveOptions{}.condition_floor, 1e-4);
  EXPECT_EQ(ProgressiveOptions{}.products, ProgressiveRankSchedule::Products::kJoint);
  EXPECT_EQ(ProgressiveOptions{}.group_combine,
            ProgressiveRankSchedule::GroupCombine::kGeometricMean);
}

}  // namespace
}  // namespace latentkv
