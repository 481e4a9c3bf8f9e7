// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/compress/dispatch.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "../support/tiny_llama.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;

TEST(Dispatch, ParsesGroupingNames) {
  EXPECT_EQ(grouping_name(parse_grouping("joint")), "joint");
  EXPECT_EQ(grouping_name(parse_grouping("per-head")), "per-head");
  EXPECT_EQ(grouping_name(parse_grouping("group:2")), "group:2");
  for (const char* bad : {"group:", "group:0", "group:x", "group:2x", "Joint", "", "heads"}) {
    EXPECT_THAT([&] { (void)parse_grouping(bad); },
                ::testing::ThrowsMessage<InvalidArgument>(
                    HasSubstr("is unknown, expected one of joint, per-head, group:N (N >= 1)")))
        << bad;
  }
}

TEST(Dispatch, RejectsUnknownScheduleAndFactorizerNames) {
  EXPECT_NO_THROW(check_schedule_name("search"));
  EXPECT_NO_THROW(check_factorizer_name("whitened"));
  EXPECT_THAT([] { check_schedule_name("fisher"); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr(
                  "schedule 'fisher' is unknown, expected one of uniform, progressive, energy, "
                  "sensitivity, search")));
  EXPECT_THAT([] { check_factorizer_name("qr"); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr(
                  "factorizer 'qr' is unknown, expected one of svd, rsvd, whitened, svd-gain")));
  EXPECT_THAT([] { (void)make_data_free_schedule("search"); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("uniform, progressive, energy")));
}

TEST(Dispatch, WithCompressorRunsTheChosenPolicies) {
  const LlamaWeights w = testing::random_llama_weights(testing::tiny_llama_config(), 5);
  const WeightsAttentionSource source(w);
  const AnyFactorizer f = RandomizedSvdFactorizer<float>{};
  const AnyGrouping g = parse_grouping("per-head");
  const AnyRankSchedule s = make_data_free_schedule("progressive");
  const CompressedModel m =
      with_compressor(f, g, s, {.factorizer_name = "rsvd"},
                      [&](const auto& c) { return c.compress(source, {.budget = 0.5}); });
  EXPECT_EQ(m.plan.schedule, "progressive");
  EXPECT_EQ(m.grouping, "per-head");
  EXPECT_EQ(m.factorizer, "rsvd");
  EXPECT_EQ(m.layers[0].k.size(), 2u);
  EXPECT_NEAR(m.plan.budget(), 0.5, 1.0 / 64);
}

TEST(Dispatch, RebuildsSchedulesFromTheirStoredState) {
  const nlohmann::json state = {{"k_weights", {1.0, 2.0}},
                                {"v_weights", {3.0, 4.0}},
                                {"step", 4},
                                {"decrements_per_round", 2}};
  EXPECT_TRUE(
      std::holds_alternative<SensitivityRankSchedule>(schedule_from_state("sensitivity", state)));
  EXPECT_TRUE(std::holds_alternative<ProgressiveRankSchedule>(
      schedule_from_state("progressive", nlohmann::json::object())));
  const AnyRankSchedule search =
      schedule_from_state("search", state, [](const RankPlan& p) { return 1.0 / p.budget(); });
  EXPECT_EQ(std::get<GreedySearchRankSchedule>(search).options().step, 4);
  EXPECT_THAT([&] { (void)schedule_from_state("search", state); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("needs its divergence")));
  EXPECT_THAT([&] { (void)schedule_from_state("sensitivity", nlohmann::json::object()); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("state has no k_weights")));
  EXPECT_THAT([&] { (void)schedule_from_state("fisher", state); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("'fisher' is unknown")));
}

}  // namespace
}  // namespace latentkv
