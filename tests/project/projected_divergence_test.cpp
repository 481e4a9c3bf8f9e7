// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// project/projected_divergence.hpp on the tiny random model: the KL divergence of the projected
// model is zero at full rank and grows as ranks fall; it equals a KL computed here from the two
// caches' logits; per-layer sensitivities measured with it become SensitivityRankSchedule weights
// (divided by the variance the probe cut); the greedy search plans on it within the budget; bad
// input is named.
#include "latentkv/project/projected_divergence.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "../support/expect_invalid.hpp"
#include "../support/tiny_llama.hpp"
#include "latentkv/project/pca_calibration.hpp"
#include "latentkv/schedule/greedy_search_rank_schedule.hpp"
#include "latentkv/schedule/sensitivity_rank_schedule.hpp"

namespace latentkv {
namespace {

using testing::expect_invalid;

class ProjectedDivergenceTest : public ::testing::Test {
 protected:
  ProjectedDivergenceTest()
      : model_(testing::random_llama_weights(testing::tiny_llama_config(), 11)),
        full_(collect_projection_stats(model_, testing::random_tokens(300, 61, 9), {.ctx = 100})
                  .fit(2)),
        tokens_(testing::random_tokens(40, 61, 17)) {}

  [[nodiscard]] RankPlan uniform(Index r) const {
    RankPlan plan = full_.plan();
    for (LayerRanks& layer : plan.layers) {
      for (Index& k : layer.k) k = r;
      for (Index& v : layer.v) v = r;
    }
    return plan;
  }

  LlamaModel model_;
  ProjectedModel full_;  // joint (s = 2): one key and one value group of 16 per layer
  std::vector<std::int32_t> tokens_;
};

TEST_F(ProjectedDivergenceTest, IsZeroAtFullRankAndGrowsAsRanksFall) {
  const ProjectedKlDivergence divergence(model_, full_, tokens_);
  const double full = divergence(full_.plan());
  EXPECT_LT(std::abs(full), 1e-6);
  double previous = full;
  for (const Index r : {12, 8, 4, 1}) {
    const double d = divergence(uniform(r));
    std::printf("rank %ld: KL %.6f\n", static_cast<long>(r), d);
    EXPECT_GT(d, previous);
    previous = d;
  }
  EXPECT_EQ(divergence.evaluations(), 5);
  EXPECT_EQ(divergence.num_tokens(), 40);
  // The same number from the two caches' logits.
  const ProjectedModel cut = full_.truncated(uniform(4));
  DenseKvCache dense(model_.weights());
  ProjectedKvCache<float> projected(model_.weights(), cut);
  const RowMatrix<double> p = log_softmax_rows(model_.forward(tokens_, dense));
  const RowMatrix<double> q = log_softmax_rows(model_.forward(tokens_, projected));
  double kl = 0;
  for (Index t = 0; t < p.rows(); ++t) {
    for (Index i = 0; i < p.cols(); ++i) kl += std::exp(p(t, i)) * (p(t, i) - q(t, i));
  }
  EXPECT_NEAR(divergence(uniform(4)), kl / static_cast<double>(p.rows()), 1e-12);
}

TEST_F(ProjectedDivergenceTest, SensitivitiesAndSearchPlanOnIt) {
  const ProjectedKlDivergence divergence(model_, full_, tokens_);
  const Index probe = 2;
  const LayerSensitivities measured =
      measure_layer_sensitivities(divergence, full_.plan(), {0, 1}, probe);
  ASSERT_EQ(measured.k.size(), 2u);
  for (std::size_t l = 0; l < 2; ++l) {
    EXPECT_GT(measured.k[l], 0.0);
    EXPECT_GT(measured.v[l], 0.0);
  }
  const LayerSensitivities w = per_unit_tail_energy(measured, full_, probe);
  for (std::size_t l = 0; l < 2; ++l) {
    const ProjectedBasis& k = full_.layers[l].k[0];
    const double tail = k.variance.tail(k.variance.size() - probe).sum() / k.variance.sum();
    EXPECT_NEAR(w.k[l], measured.k[l] / tail, 1e-12 * w.k[l]);
  }
  const RankProblem problem = full_.rank_problem(model_.config().d_model);
  const RankPlan sensitivity = SensitivityRankSchedule(w.k, w.v).plan(problem, {.budget = 0.5});
  EXPECT_LE(sensitivity.budget(), 0.5);
  EXPECT_GT(sensitivity.budget(), 0.5 - 2.0 / 64.0);
  const RankPlan search =
      GreedySearchRankSchedule([&](const RankPlan& p) { return divergence(p); }, {.step = 4})
          .plan(problem, {.budget = 0.5});
  EXPECT_LE(search.budget(), 0.5);
  EXPECT_GT(search.budget(), 0.5 - 1.0 / 64.0);
  // The search minimizes what it measures: its plan is no worse than uniform at that budget.
  std::printf("KL at budget 0.5: search %.6f, sensitivity %.6f, uniform %.6f\n", divergence(search),
              divergence(sensitivity), divergence(uniform(8)));
  EXPECT_LE(divergence(search), divergence(uniform(8)));
}

TEST_F(ProjectedDivergenceTest, BadInputIsNamed) {
  expect_invalid([&] { (void)ProjectedKlDivergence(model_, full_, {1}); },
                 "1 calibration tokens, expected >= 2");
  ProjectedModel other = full_;
  other.layers.pop_back();
  expect_invalid([&] { (void)ProjectedKlDivergence(model_, other, tokens_); },
                 "projections of another model");
  const LayerSensitivities one{{1.0}, {1.0}};
  expect_invalid([&] { (void)per_unit_tail_energy(one, full_, 2); },
                 "1 K and 1 V weights for 2 layers");
  const LayerSensitivities two{{1.0, 1.0}, {1.0, 1.0}};
  expect_invalid([&] { (void)per_unit_tail_energy(two, full_, 0); }, "probe_rank = 0");
}

}  // namespace
}  // namespace latentkv
