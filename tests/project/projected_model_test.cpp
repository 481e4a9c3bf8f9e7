// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// project/projected_model.hpp: the plan of the bases, nested truncation (a prefix of the columns,
// twice equals once), the rank problem schedules plan on (σ = √λ) and a schedule's plan applied,
// and validation naming the layer, side and group.
#include "latentkv/project/projected_model.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "../support/expect_invalid.hpp"
#include "../support/tiny_llama.hpp"
#include "latentkv/project/pca_calibration.hpp"
#include "latentkv/schedule/energy_rank_schedule.hpp"

namespace latentkv {
namespace {

using testing::expect_invalid;

ProjectedModel tiny_projections(Index heads_per_group) {
  const LlamaModel model(testing::random_llama_weights(testing::tiny_llama_config(), 11));
  return collect_projection_stats(model, testing::random_tokens(300, 61, 9), {.ctx = 100})
      .fit(heads_per_group);
}

TEST(ProjectedModel, TruncationKeepsThePrefixOfEveryBasis) {
  const ProjectedModel full = tiny_projections(1);
  const RankPlan full_plan = full.plan();
  EXPECT_EQ(full_plan.schedule, "projected");
  EXPECT_EQ(full_plan.layers[0].k, (std::vector<Index>{8, 8}));
  EXPECT_DOUBLE_EQ(full_plan.budget(), 1.0);
  RankPlan plan = full_plan;
  plan.layers[0].k = {3, 5};
  plan.layers[1].v = {1, 8};
  const ProjectedModel cut = full.truncated(plan);
  EXPECT_EQ(cut.plan().layers, plan.layers);
  EXPECT_EQ(cut.layers[0].k[1].basis, full.layers[0].k[1].basis.leftCols(5));
  EXPECT_EQ(cut.layers[0].k[1].mean, full.layers[0].k[1].mean);
  EXPECT_EQ(cut.layers[0].k[1].variance, full.layers[0].k[1].variance);  // kept whole
  // Nested: cutting twice equals cutting once.
  RankPlan smaller = plan;
  smaller.layers[0].k = {2, 2};
  EXPECT_EQ(cut.truncated(smaller).layers[0].k[1].basis,
            full.truncated(smaller).layers[0].k[1].basis);
  EXPECT_NEAR(cut.plan().budget(), (3 + 5 + 8 + 8 + 8 + 8 + 1 + 8) / 64.0, 1e-12);
}

TEST(ProjectedModel, SchedulesPlanOnTheVariances) {
  const ProjectedModel full = tiny_projections(2);
  const RankProblem problem = full.rank_problem(32);
  ASSERT_NO_THROW(problem.validate());
  EXPECT_EQ(problem.max_rank(), 16);
  EXPECT_NEAR(problem.layers[1].v[0](0) * problem.layers[1].v[0](0),
              full.layers[1].v[0].variance(0), 1e-9 * full.layers[1].v[0].variance(0));
  const RankPlan plan = EnergyRankSchedule{}.plan(problem, {.budget = 0.5});
  EXPECT_NEAR(plan.budget(), 0.5, 1.0 / 64.0);
  const ProjectedModel half = full.truncated(plan);
  EXPECT_EQ(half.plan().latent_width(), plan.latent_width());
  // d_model below s·h bounds the ranks.
  EXPECT_EQ(full.rank_problem(10).max_rank(), 10);
  EXPECT_EQ(full.rank_problem(10).layers[0].k[0].size(), 10);
}

TEST(ProjectedModel, ValidationNamesTheLayerSideAndGroup) {
  const ProjectedModel full = tiny_projections(1);
  const ModelConfig config = testing::tiny_llama_config();
  ASSERT_NO_THROW(full.validate(config));
  ModelConfig other = config;
  other.num_layers = 3;
  expect_invalid([&] { full.validate(other); }, "projections of another model");
  ProjectedModel bad = full;
  bad.layers[1].v.pop_back();
  expect_invalid([&] { bad.validate(config); }, "layer 1 V: 1 groups, expected 2");
  bad = full;
  bad.layers[0].k[1].variance.resize(7);
  expect_invalid([&] { bad.validate(config); },
                 "layer 0 K group 1: mean (8), basis (8, 8), variance (7)");
  bad = full;
  bad.layers[1].k[0].basis(2, 3) = std::numeric_limits<float>::infinity();
  expect_invalid([&] { bad.validate(config); }, "layer 1 K group 0: a non-finite entry");
  bad = full;
  bad.heads_per_group = 3;
  expect_invalid([&] { bad.validate(config); }, "heads_per_group = 3");
  RankPlan plan = full.plan();
  plan.layers.pop_back();
  expect_invalid([&] { (void)full.truncated(plan); }, "the plan is for 1 layers");
  plan = full.plan();
  plan.layers[0].k[1] = 0;
  expect_invalid([&] { (void)full.truncated(plan); }, "layer 0 K group 1: rank 0, expected 1..8");
}

}  // namespace
}  // namespace latentkv
