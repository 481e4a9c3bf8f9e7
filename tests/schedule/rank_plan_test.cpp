// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/schedule/rank_plan.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace latentkv {
namespace {

using ::testing::HasSubstr;

// 2 layers, 4 KV heads of 16, groups of 2: G = 2, dense 2·4·16 = 128 numbers per layer.
RankPlan two_layer_plan() {
  RankPlan plan;
  plan.schedule = "progressive";
  plan.budget_requested = 0.3;
  plan.num_kv_heads = 4;
  plan.head_dim = 16;
  plan.heads_per_group = 2;
  plan.layers = {LayerRanks{{12, 20}, {8, 16}}, LayerRanks{{4, 8}, {1, 32}}};
  return plan;
}

std::string from_json_error(const nlohmann::json& j) {
  try {
    (void)RankPlan::from_json(j);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "no error";
}

TEST(RankPlan, WidthsAndBudget) {
  const RankPlan plan = two_layer_plan();
  EXPECT_EQ(plan.layers[0].width_k(), 32);
  EXPECT_EQ(plan.layers[1].width_v(), 33);
  EXPECT_EQ(plan.num_groups(), 2);
  EXPECT_EQ(plan.dense_width_per_layer(), 128);
  EXPECT_EQ(plan.latent_width(), 101);
  EXPECT_DOUBLE_EQ(plan.budget(), 101.0 / 256.0);
  EXPECT_EQ(RankPlan{}.budget(), 0.0);
}

TEST(RankPlan, JsonRoundTripIsExact) {
  const RankPlan plan = two_layer_plan();
  const nlohmann::json j = plan.to_json();
  EXPECT_EQ(j["schedule"], "progressive");
  EXPECT_EQ(j["heads_per_group"], 2);
  EXPECT_EQ(j["layers"][1]["rank_v"], nlohmann::json::array({1, 32}));
  EXPECT_EQ(j["layers"][1]["layer"], 1);
  EXPECT_DOUBLE_EQ(j["budget_achieved"].get<double>(), 101.0 / 256.0);
  const RankPlan back = RankPlan::from_json(nlohmann::json::parse(j.dump()));
  EXPECT_EQ(back, plan);
  EXPECT_EQ(back.budget_requested, 0.3);
}

TEST(RankPlan, BudgetAchievedIsOptionalOnReading) {
  nlohmann::json j = two_layer_plan().to_json();
  j.erase("budget_achieved");
  EXPECT_EQ(RankPlan::from_json(j), two_layer_plan());
}

TEST(RankPlan, FromJsonNamesTheMissingOrMistypedKey) {
  const nlohmann::json good = two_layer_plan().to_json();
  EXPECT_THAT(from_json_error(nlohmann::json::array()),
              HasSubstr("latentkv::RankPlan::from_json: expected a JSON object, got array"));
  for (const char* key :
       {"schedule", "budget_requested", "num_kv_heads", "head_dim", "heads_per_group", "layers"}) {
    nlohmann::json j = good;
    j.erase(key);
    EXPECT_THAT(from_json_error(j), HasSubstr(std::string("missing key \"") + key + "\""));
  }
  nlohmann::json j = good;
  j["schedule"] = 3;
  EXPECT_THAT(from_json_error(j), HasSubstr("\"schedule\" is 3, expected a string"));
  j = good;
  j["budget_requested"] = "half";
  EXPECT_THAT(from_json_error(j), HasSubstr("\"budget_requested\" is \"half\", expected a number"));
  j = good;
  j["head_dim"] = 16.5;
  EXPECT_THAT(from_json_error(j), HasSubstr("\"head_dim\" is 16.5, expected an integer"));
  j = good;
  j["layers"] = nlohmann::json::object();
  EXPECT_THAT(from_json_error(j), HasSubstr("\"layers\" is object, expected an array"));
}

TEST(RankPlan, FromJsonRejectsMalformedLayers) {
  const nlohmann::json good = two_layer_plan().to_json();
  nlohmann::json j = good;
  j["layers"][1]["layer"] = 0;
  EXPECT_THAT(from_json_error(j), HasSubstr("layers[1].layer missing or not 1"));
  j = good;
  j["layers"][0] = 7;
  EXPECT_THAT(from_json_error(j), HasSubstr("layers[0] is number, expected an object"));
  j = good;
  j["layers"][1].erase("rank_k");
  EXPECT_THAT(from_json_error(j), HasSubstr("layers[1].rank_k missing or not an array"));
  j = good;
  j["layers"][0]["rank_v"][1] = "16";
  EXPECT_THAT(from_json_error(j), HasSubstr("layers[0].rank_v[1] is \"16\", expected an integer"));
  j = good;
  j["layers"][0]["rank_k"][0] = 13;  // budget_achieved no longer matches the ranks
  EXPECT_THAT(from_json_error(j), HasSubstr("\"budget_achieved\" = "));
  EXPECT_THAT(from_json_error(j), HasSubstr("disagrees with the ranks"));
  j = good;
  j["budget_achieved"] = "0.39";
  EXPECT_THAT(from_json_error(j), HasSubstr("disagrees with the ranks"));
  EXPECT_THAT(from_json_error(nlohmann::json::parse(R"({"schedule": "x"})")),
              HasSubstr("missing key \"budget_requested\""));
}

TEST(RankPlan, ValidateChecksLayoutAndRanks) {
  EXPECT_NO_THROW(two_layer_plan().validate(32));
  try {
    two_layer_plan().validate(31);
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("latentkv::RankPlan::validate: layer 1 rank_v[1] = 32, expected 1..31"));
  }
  RankPlan plan = two_layer_plan();
  plan.layers[0].k[0] = 0;
  EXPECT_THROW(plan.validate(32), InvalidArgument);
  plan = two_layer_plan();
  plan.layers[1].v.push_back(4);
  try {
    plan.validate(32);
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("layer 1 rank_v has 3 entries, expected 2"));
  }
  plan = two_layer_plan();
  plan.heads_per_group = 3;
  EXPECT_THROW(plan.validate(32), InvalidArgument);
  plan.heads_per_group = 2;
  plan.layers.clear();
  EXPECT_THROW(plan.validate(32), InvalidArgument);
}

}  // namespace
}  // namespace latentkv
