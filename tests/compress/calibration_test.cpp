// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/compress/calibration.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "../support/tiny_llama.hpp"
#include "latentkv/compress/compressor.hpp"
#include "latentkv/factorize/exact_svd_factorizer.hpp"
#include "latentkv/schedule/uniform_rank_schedule.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;

class CalibrationTest : public ::testing::Test {
 protected:
  CalibrationTest()
      : model_(testing::random_llama_weights(testing::tiny_llama_config(), 13)),
        tokens_(testing::random_tokens(40, model_.config().vocab_size, 3)) {}

  [[nodiscard]] CompressedModel full_rank() const {
    const Compressor<BdcsvdFactorizer<float>, PerHeadGrouping, UniformRankSchedule> c;
    return c.compress(WeightsAttentionSource(model_.weights()), {.budget = 1.0});
  }

  LlamaModel model_;
  std::vector<std::int32_t> tokens_;
};

// Layer 0's attention input is RMSNorm(E[token])·g: its Gram matrix can be written down directly.
TEST_F(CalibrationTest, GramOfTheFirstLayerIsThatOfTheNormedEmbeddings) {
  const std::vector<RowMatrix<double>> grams = collect_attention_grams(model_, tokens_, 16);
  ASSERT_EQ(grams.size(), 2u);
  const LlamaWeights& w = model_.weights();
  RowMatrix<float> x(static_cast<Index>(tokens_.size()), w.config.d_model);
  for (Index t = 0; t < x.rows(); ++t)
    x.row(t) = w.token_embedding.row(tokens_[static_cast<std::size_t>(t)]);
  rms_norm(x, w.layers[0].attention_norm, w.config.norm_eps, x);
  const RowMatrix<double> want = x.cast<double>().transpose() * x.cast<double>();
  EXPECT_LT((grams[0] - want).norm(), 1e-9 * want.norm());
  // Later layers see other inputs; the Gram matrices are symmetric and positive.
  EXPECT_GT((grams[1] - want).norm(), 1e-3 * want.norm());
  EXPECT_LT((grams[1] - grams[1].transpose()).norm(), 1e-12 * grams[1].norm());
  EXPECT_GT(grams[1].trace(), 0.0);
}

TEST_F(CalibrationTest, ChunksRunFromAnEmptyCache) {
  // Chunks of 16 = the sum over the three chunks run on their own.
  const auto whole = collect_attention_grams(model_, tokens_, 16);
  RowMatrix<double> sum = RowMatrix<double>::Zero(32, 32);
  for (std::size_t start = 0; start < tokens_.size(); start += 16) {
    const std::size_t n = std::min<std::size_t>(16, tokens_.size() - start);
    sum += collect_attention_grams(model_, std::span(tokens_).subspan(start, n), 16)[1];
  }
  EXPECT_LT((whole[1] - sum).norm(), 1e-9 * sum.norm());
  EXPECT_THAT([&] { (void)collect_attention_grams(model_, {}, 16); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("no calibration tokens")));
}

TEST_F(CalibrationTest, DivergenceIsZeroAtFullRankAndGrowsAsRanksShrink) {
  const CompressedModel full = full_rank();
  const KlDivergence d(model_, full, tokens_);
  const double at_full = d(full.plan);
  EXPECT_LT(std::abs(at_full), 1e-6);
  RankPlan half = full.plan;
  for (LayerRanks& l : half.layers) {
    for (Index& r : l.k) r = 4;
    for (Index& r : l.v) r = 4;
  }
  RankPlan low = half;
  for (LayerRanks& l : low.layers) {
    for (Index& r : l.k) r = 1;
    for (Index& r : l.v) r = 1;
  }
  const double at_half = d(half);
  const double at_low = d(low);
  EXPECT_GT(at_half, 1e-4);
  EXPECT_GT(at_low, at_half);
  EXPECT_EQ(d.evaluations(), 3);
}

TEST_F(CalibrationTest, SensitivitiesProbeOneLayerAndSideAtATime) {
  const CompressedModel full = full_rank();
  const KlDivergence d(model_, full, tokens_);
  const LayerSensitivities w = measure_layer_sensitivities(d, full.plan, {0, 1}, 2);
  ASSERT_EQ(w.k.size(), 2u);
  ASSERT_EQ(w.v.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_GT(w.k[i], 0.0);
    EXPECT_GT(w.v[i], 0.0);
  }
  EXPECT_EQ(d.evaluations(), 1 + 4);
  // Probing only layer 1's K equals the divergence of that plan.
  RankPlan probe = full.plan;
  for (Index& r : probe.layers[1].k) r = 2;
  EXPECT_NEAR(w.k[1], d(probe) - d(full.plan), 1e-12);
  EXPECT_THAT([&] { (void)measure_layer_sensitivities(d, full.plan, {2}, 2); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("layer 2 is not in the plan")));
}

TEST_F(CalibrationTest, PerUnitTailEnergyDividesByTheProbedTail) {
  const CompressedModel full = full_rank();
  const LayerSensitivities measured{{1.0, 2.0}, {3.0, 4.0}};
  const LayerSensitivities w = per_unit_tail_energy(measured, full, {0, 1}, 2);
  const auto tail = [](const Vector<double>& s) {
    return s.tail(s.size() - 2).squaredNorm() / s.squaredNorm();
  };
  const CompressedLayer& l1 = full.layers[1];
  EXPECT_NEAR(w.k[1], 2.0 / (0.5 * (tail(l1.k[0].spectrum) + tail(l1.k[1].spectrum))), 1e-9);
  EXPECT_NEAR(w.v[1], 4.0 / (0.5 * (tail(l1.v[0].spectrum) + tail(l1.v[1].spectrum))), 1e-9);
  EXPECT_GT(w.k[0], 1.0);  // the tail is a fraction below 1
  EXPECT_THAT([&] { (void)per_unit_tail_energy(measured, full, {0}, 2); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("for 1 layers")));
}

}  // namespace
}  // namespace latentkv
