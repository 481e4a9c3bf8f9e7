// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/compress/elastic.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "../support/tiny_llama.hpp"
#include "latentkv/compress/compressor.hpp"
#include "latentkv/factorize/exact_svd_factorizer.hpp"
#include "latentkv/schedule/energy_rank_schedule.hpp"
#include "latentkv/schedule/progressive_rank_schedule.hpp"
#include "latentkv/schedule/uniform_rank_schedule.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;

/// A tiny model with 6 layers (so schedules have something to distribute) and 4 KV heads.
LlamaWeights weights() {
  ModelConfig c = testing::tiny_llama_config();
  c.num_layers = 6;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  return testing::random_llama_weights(c, 21);
}

template <class S, class G>
CompressedModel compress(const LlamaWeights& w, S schedule, G grouping, double budget,
                         CompressorOptions options = {}) {
  const Compressor<BdcsvdFactorizer<float>, G, S> c({}, grouping, schedule, options);
  return c.compress(WeightsAttentionSource(w), {.budget = budget});
}

void expect_same_model(const CompressedModel& a, const CompressedModel& b) {
  ASSERT_EQ(a.plan.layers, b.plan.layers);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    ASSERT_EQ(a.layers[l].compressed, b.layers[l].compressed);
    for (std::size_t g = 0; g < a.layers[l].k.size(); ++g) {
      const LatentKeyGroup& x = a.layers[l].k[g];
      const LatentKeyGroup& y = b.layers[l].k[g];
      const RowMatrix<float> px = x.down * x.up, py = y.down * y.up;
      EXPECT_LT((px - py).norm(), 1e-5 * py.norm()) << "layer " << l << " k group " << g;
      EXPECT_EQ(x.spectrum, y.spectrum);
    }
    for (std::size_t g = 0; g < a.layers[l].v.size(); ++g) {
      const LatentValueGroup& x = a.layers[l].v[g];
      const LatentValueGroup& y = b.layers[l].v[g];
      const RowMatrix<float> px = x.down * x.out, py = y.down * y.out;
      EXPECT_LT((px - py).norm(), 1e-5 * py.norm()) << "layer " << l << " v group " << g;
    }
  }
}

template <class S>
class ElasticTest : public ::testing::Test {};
using Schedules =
    ::testing::Types<UniformRankSchedule, ProgressiveRankSchedule, EnergyRankSchedule>;
TYPED_TEST_SUITE(ElasticTest, Schedules);

// DESIGN: a file made at b serves b' < b, and for exact SVD that equals compressing at b'.
TYPED_TEST(ElasticTest, RebudgetingEqualsCompressingAtTheSmallerBudget) {
  const LlamaWeights w = weights();
  for (const double small : {0.6, 0.45, 0.3, 0.15}) {
    const CompressedModel big = compress(w, TypeParam{}, PerHeadGrouping{}, 0.75);
    const CompressedModel direct = compress(w, TypeParam{}, PerHeadGrouping{}, small);
    const CompressedModel elastic = rebudget(big, TypeParam{}, small);
    SCOPED_TRACE(small);
    expect_same_model(elastic, direct);
    EXPECT_NEAR(elastic.plan.budget(), small, 1.0 / (6 * 2 * 4 * 8) + 1e-12);
  }
}

TYPED_TEST(ElasticTest, DenseLayersStayDenseAndOnlyCompressedLayersAreReplanned) {
  const LlamaWeights w = weights();
  const CompressorOptions range{.first_layer = 1, .last_layer = 4};
  const CompressedModel big = compress(w, TypeParam{}, JointGrouping{}, 0.8, range);
  const CompressedModel direct = compress(w, TypeParam{}, JointGrouping{}, 0.4, range);
  const CompressedModel elastic = rebudget(big, TypeParam{}, 0.4);
  EXPECT_FALSE(elastic.layers[0].compressed);
  EXPECT_FALSE(elastic.layers[5].compressed);
  expect_same_model(elastic, direct);
  EXPECT_EQ(compressed_layers(elastic), (std::vector<Index>{1, 2, 3, 4}));
  EXPECT_NEAR(compressed_plan(elastic).budget(), 0.4, 1.0 / (4 * 2 * 32) + 1e-12);
}

TEST(Elastic, ABudgetAboveTheModelsOwnIsRefused) {
  const LlamaWeights w = weights();
  const CompressedModel m = compress(w, UniformRankSchedule{}, JointGrouping{}, 0.5);
  EXPECT_THAT([&] { (void)rebudget(m, UniformRankSchedule{}, 0.6); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("budget = 0.6 is above the model's own 0.5")));
  EXPECT_THAT([&] { (void)rebudget(m, UniformRankSchedule{}, 0.0); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("budget")));
}

TEST(Elastic, SpectraOfAModelAreWhatItWasPlannedOn) {
  const LlamaWeights w = weights();
  const Compressor<BdcsvdFactorizer<float>, PerHeadGrouping, UniformRankSchedule> c;
  const WeightsAttentionSource source(w);
  const RankProblem planned = c.spectra(source);
  const RankProblem stored = spectra_of(c.compress(source, {.budget = 0.5}));
  ASSERT_EQ(stored.num_layers(), planned.num_layers());
  for (Index l = 0; l < planned.num_layers(); ++l) {
    for (Index g = 0; g < planned.num_groups(); ++g) {
      EXPECT_EQ(stored.layers[static_cast<std::size_t>(l)].k[static_cast<std::size_t>(g)],
                planned.layers[static_cast<std::size_t>(l)].k[static_cast<std::size_t>(g)]);
      EXPECT_EQ(stored.layers[static_cast<std::size_t>(l)].v[static_cast<std::size_t>(g)],
                planned.layers[static_cast<std::size_t>(l)].v[static_cast<std::size_t>(g)]);
    }
  }
}

}  // namespace
}  // namespace latentkv
