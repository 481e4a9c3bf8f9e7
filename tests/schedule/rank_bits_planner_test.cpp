// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// schedule/rank_bits_planner.hpp on SmolLM2-shaped power-law spectra: every plan fits its byte
// budget and uses it (within one step), ranks obey the grid and the ceiling, the estimated loss
// falls as the budget grows, a budget that holds everything at fp16 keeps everything, free noise
// (γ = 0) gives full rank at the fewest bits, fp16 only reduces to a rank schedule, measured
// weights move bytes to the weighted layer, keys and values may get different bits, the bytes
// agree with latent_bytes_per_token, the JSON form, and bad input naming the option.
#include "latentkv/schedule/rank_bits_planner.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "../support/expect_invalid.hpp"
#include "synthetic_spectra.hpp"

namespace latentkv {
namespace {

using testing::smollm2_like_problem;

/// Dense fp16 bytes per token of the problem: L·2·n_kv·h·2.
double dense_fp16(const RankProblem& p) {
  return static_cast<double>(p.num_layers() * 2 * p.num_kv_heads * p.head_dim) * 2.0;
}

RankBitsPlanner::Options options_with(std::vector<int> bits, double gamma = 1.0) {
  RankBitsPlanner::Options o;
  o.bits = std::move(bits);
  o.key_noise_weight = gamma;
  o.value_noise_weight = gamma;
  return o;
}

/// Σ over entries of latent_bytes_per_token at the plan's (rank, bits).
double recount(const RankBitsPlan& plan, const RankBitsPlanner::Options& o) {
  double total = 0.0;
  for (std::size_t l = 0; l < plan.bits.size(); ++l) {
    const LayerRanks& r = plan.ranks.layers[l];
    for (std::size_t g = 0; g < r.k.size(); ++g) {
      total += latent_bytes_per_token(r.k[g], RankBitsPlanner::codec_at(o.key, plan.bits[l].k[g]),
                                      o.context);
      total += latent_bytes_per_token(r.v[g], RankBitsPlanner::codec_at(o.value, plan.bits[l].v[g]),
                                      o.context);
    }
  }
  return total;
}

using testing::expect_invalid;

TEST(RankBitsPlanner, FitsTheByteBudgetAndUsesIt) {
  for (const Index s : {Index{3}, Index{1}}) {
    const RankProblem p = smollm2_like_problem(s);
    const RankBitsPlanner planner(options_with({16, 8, 4, 3, 2}));
    const std::set<int> allowed = {16, 8, 4, 3, 2};
    double previous_loss = 1e300;
    for (const double fraction : {0.06, 0.125, 0.25, 0.28125, 0.5, 0.75}) {
      const double budget = fraction * dense_fp16(p);
      const RankBitsPlan plan = planner.plan(p, budget);
      EXPECT_LE(plan.bytes_per_token, budget + 1e-9) << fraction;
      // Within the largest single step of the budget: 192 numbers going 8 → 16 bits.
      EXPECT_GT(plan.bytes_per_token, budget - 192.0 * 2.0) << fraction;
      EXPECT_NEAR(plan.bytes_per_token, recount(plan, planner.options()), 1e-6);
      EXPECT_LT(plan.loss, previous_loss) << fraction;  // more bytes, less estimated loss
      previous_loss = plan.loss;
      plan.ranks.validate(p.max_rank());
      for (std::size_t l = 0; l < plan.bits.size(); ++l) {
        for (std::size_t g = 0; g < plan.bits[l].k.size(); ++g) {
          for (const auto& [rank, bits] :
               {std::pair{plan.ranks.layers[l].k[g], plan.bits[l].k[g]},
                std::pair{plan.ranks.layers[l].v[g], plan.bits[l].v[g]}}) {
            EXPECT_TRUE(allowed.contains(bits));
            EXPECT_TRUE(rank % 8 == 0 || rank == p.max_rank()) << rank;
          }
        }
      }
    }
  }
}

TEST(RankBitsPlanner, EnoughBytesKeepEverythingAtFp16) {
  const RankProblem p = smollm2_like_problem(3, 4);
  const RankBitsPlan plan = RankBitsPlanner(options_with({16, 8, 4})).plan(p, dense_fp16(p));
  EXPECT_EQ(plan.ranks.layers, p.uniform_plan(p.max_rank()).layers);
  for (const LayerBits& b : plan.bits) {
    EXPECT_EQ(b.k, std::vector<int>(1, 16));
    EXPECT_EQ(b.v, std::vector<int>(1, 16));
  }
  EXPECT_DOUBLE_EQ(plan.bytes_per_token, dense_fp16(p));
}

TEST(RankBitsPlanner, FreeNoiseGivesFullRankAtTheFewestBits) {
  // γ = 0: a quantized latent costs nothing but its truncation, so the cheapest way to keep all
  // energy is every latent at full rank and 4 bits (16 and 8 bits keep the same, for more bytes).
  const RankProblem p = smollm2_like_problem(3, 4);
  const RankBitsPlan plan = RankBitsPlanner(options_with({16, 8, 4}, 0.0)).plan(p, dense_fp16(p));
  for (std::size_t l = 0; l < plan.bits.size(); ++l) {
    EXPECT_EQ(plan.bits[l].k[0], 4);
    EXPECT_EQ(plan.bits[l].v[0], 4);
    EXPECT_EQ(plan.ranks.layers[l].k[0], p.max_rank());
  }
  EXPECT_NEAR(plan.loss, 0.0, 1e-12);
  EXPECT_NEAR(plan.bytes_per_token / dense_fp16(p), 4.5 / 16.0, 1e-12);  // int4 g64 = 4.5 bits
}

TEST(RankBitsPlanner, Fp16OnlyIsARankScheduleInBytes) {
  const RankProblem p = smollm2_like_problem(3);
  for (const double fraction : {0.25, 0.5}) {
    const RankBitsPlan plan = RankBitsPlanner(options_with({16})).plan(p, fraction * dense_fp16(p));
    // fp16 latents: bytes = 2 per number, so the byte fraction is the rank plan's budget.
    EXPECT_NEAR(plan.ranks.budget(), plan.bytes_per_token / dense_fp16(p), 1e-12);
    EXPECT_LE(plan.ranks.budget(), fraction + 1e-12);
    EXPECT_GT(plan.ranks.budget(), fraction - 8.0 / (30.0 * 2 * 192));
    // Steep K spectra give up rank before flat V ones.
    EXPECT_LT(plan.ranks.layers[29].width_k(), plan.ranks.layers[29].width_v()) << fraction;
  }
}

TEST(RankBitsPlanner, MeasuredWeightsMoveBytesToTheSensitiveLayer) {
  RankProblem p = smollm2_like_problem(3, 2);
  p.layers[1] = p.layers[0];  // two identical layers
  const RankBitsPlanner::Options o = options_with({16, 8, 4, 3, 2});
  const double budget = 0.2 * dense_fp16(p);
  const RankBitsPlan even = RankBitsPlanner(o).plan(p, budget);
  const auto layer_bytes = [&](const RankBitsPlan& plan, std::size_t l) {
    RankBitsPlan one = plan;
    one.ranks.layers = {plan.ranks.layers[l]};
    one.bits = {plan.bits[l]};
    return recount(one, o);
  };
  // Equal up to the last step the budget cuts (ties go to the first layer).
  const double even0 = layer_bytes(even, 0);
  const double even1 = layer_bytes(even, 1);
  EXPECT_NEAR(even0, even1, 0.25 * (even0 + even1)) << even0 << " " << even1;
  const RankBitsPlan weighted = RankBitsPlanner({1.0, 20.0}, {1.0, 20.0}, o).plan(p, budget);
  EXPECT_GT(layer_bytes(weighted, 1), 2.0 * layer_bytes(weighted, 0));
  EXPECT_LT(weighted.bytes_per_token, budget + 1e-9);
}

TEST(RankBitsPlanner, KeysAndValuesMayGetDifferentBits) {
  // Keys are twice as noise-sensitive as values here: at a budget between the two sides' needs,
  // the keys keep more bits per number than the values.
  const RankProblem p = smollm2_like_problem(3, 4);
  RankBitsPlanner::Options o = options_with({16, 8, 4, 3, 2});
  o.key_noise_weight = 4.0;
  o.value_noise_weight = 0.25;
  const RankBitsPlan plan = RankBitsPlanner(o).plan(p, 0.3 * dense_fp16(p));
  double key_bits = 0.0;
  double value_bits = 0.0;
  for (const LayerBits& b : plan.bits) {
    key_bits += b.k[0];
    value_bits += b.v[0];
  }
  EXPECT_GT(key_bits, value_bits);
}

TEST(RankBitsPlanner, RespectsTheCeiling) {
  const RankProblem p = smollm2_like_problem(3, 4);
  RankPlan ceiling = p.uniform_plan(64);
  ceiling.layers[2].v[0] = 40;
  const RankBitsPlanner planner(options_with({16, 4}));
  const RankBitsPlan plan = planner.plan(p, dense_fp16(p), ceiling);
  for (std::size_t l = 0; l < 4; ++l) {
    EXPECT_LE(plan.ranks.layers[l].k[0], 64);
    EXPECT_LE(plan.ranks.layers[l].v[0], l == 2 ? 40 : 64);
  }
  EXPECT_EQ(plan.ranks.layers[2].v[0], 40);  // the ceiling itself is allowed (not a multiple)
  EXPECT_LT(planner.min_bytes(p, ceiling), planner.min_bytes(p) + 1e-9);
}

TEST(RankBitsPlanner, JsonListsRanksAndBitsPerLayer) {
  const RankProblem p = smollm2_like_problem(1, 2);
  const RankBitsPlan plan = RankBitsPlanner(options_with({16, 4})).plan(p, 0.3 * dense_fp16(p));
  const nlohmann::json j = plan.to_json();
  ASSERT_EQ(j["layers"].size(), 2u);
  EXPECT_EQ(j["layers"][1]["rank_k"].get<std::vector<Index>>(), plan.ranks.layers[1].k);
  EXPECT_EQ(j["layers"][1]["bits_v"].get<std::vector<int>>(), plan.bits[1].v);
  EXPECT_DOUBLE_EQ(j["bytes_per_token"].get<double>(), plan.bytes_per_token);
}

TEST(RankBitsPlanner, RejectsBadInputNamingIt) {
  const RankProblem p = smollm2_like_problem(3, 2);
  const RankBitsPlanner planner(options_with({8, 4}));
  expect_invalid([&] { (void)planner.plan(p, 10.0); }, "below the smallest plan");
  expect_invalid([&] { (void)RankBitsPlanner(options_with({7})); }, "bits = 7");
  expect_invalid([&] { (void)RankBitsPlanner(options_with({})); }, "bits is empty");
  expect_invalid([&] { (void)RankBitsPlanner(options_with({4}, -1.0)); }, "noise weight = -1");
  RankBitsPlanner::Options o = options_with({4});
  o.key.group_size = 4;
  expect_invalid([&] { (void)RankBitsPlanner(o); }, "key codec: group_size = 4");
  expect_invalid(
      [&] {
        (void)RankBitsPlanner({1.0}, {1.0, 2.0}, options_with({4}));
      },
      "k_weights has 1 entries and v_weights 2");
  expect_invalid([&] { (void)RankBitsPlanner({0.0}, {0.0}, options_with({4})); },
                 "every weight is 0");
  const RankBitsPlanner three({1.0, 1.0, 1.0}, {1.0, 1.0, 1.0}, options_with({4}));
  expect_invalid([&] { (void)three.plan(p, dense_fp16(p)); }, "weights for 3 layers");
  expect_invalid(
      [&] { (void)planner.plan(p, dense_fp16(p), smollm2_like_problem(3, 3).uniform_plan(8)); },
      "the ceiling has 3 layers");
}

}  // namespace
}  // namespace latentkv
