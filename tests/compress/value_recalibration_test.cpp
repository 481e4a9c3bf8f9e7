// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// compress/value_recalibration.hpp: calibration inputs are the dense model's attention inputs per
// chunk; their (sink-weighted) Gram matrices; the value refit lowers the layer's output error on
// the calibration set (checked through the latent cache itself), leaves exact full-rank factors
// and an infinite ridge alone, the sink wrapper refits compressed layers only, and errors.
#include "latentkv/compress/value_recalibration.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../support/fixed_rank_schedule.hpp"
#include "../support/tiny_llama.hpp"
#include "latentkv/cache/latent_kv_cache.hpp"
#include "latentkv/compress/calibration.hpp"
#include "latentkv/factorize/exact_svd_factorizer.hpp"

namespace latentkv {
namespace {

class ValueRecalibrationTest : public ::testing::Test {
 protected:
  ValueRecalibrationTest()
      : model_(testing::random_llama_weights(testing::tiny_llama_config(), 13)),
        tokens_(testing::random_tokens(70, model_.config().vocab_size, 3)),
        inputs_(collect_attention_inputs(model_, tokens_, 32)) {}

  /// Every layer at `rank` (keys and values) by exact SVD, joint grouping.
  [[nodiscard]] CompressedModel at_rank(Index rank) const {
    const Compressor<BdcsvdFactorizer<float>, JointGrouping, testing::FixedRankSchedule> c(
        {}, {}, testing::FixedRankSchedule{rank});
    return c.compress(WeightsAttentionSource(model_.weights()), {.budget = 1.0});
  }

  /// Keys at full rank (so the latent cache's attention probabilities are the dense ones), values
  /// at `value_rank`.
  [[nodiscard]] CompressedModel exact_keys(Index value_rank) const {
    CompressedModel m = at_rank(16);
    const CompressedModel low = at_rank(value_rank);
    for (std::size_t l = 0; l < m.layers.size(); ++l) m.layers[l].v = low.layers[l].v;
    for (std::size_t l = 0; l < m.layers.size(); ++l) m.plan.layers[l].v = low.plan.layers[l].v;
    return m;
  }

  /// ‖latent − dense‖ / ‖dense‖ of layer l's attention output over the calibration chunks.
  [[nodiscard]] double output_error(const CompressedModel& m, Index l) const {
    double err = 0.0;
    double total = 0.0;
    for (const RowMatrix<float>& x : inputs_.chunks[static_cast<std::size_t>(l)]) {
      DenseKvCache dense(model_.weights());
      LatentKvCache<float> latent(model_.weights(), m);
      const RowMatrix<double> want = dense.attend(l, x, 0).cast<double>();
      const RowMatrix<double> got = latent.attend(l, x, 0).cast<double>();
      err += (got - want).squaredNorm();
      total += want.squaredNorm();
    }
    return std::sqrt(err / total);
  }

  LlamaModel model_;
  std::vector<std::int32_t> tokens_;
  AttentionInputs inputs_;
};

TEST_F(ValueRecalibrationTest, InputsArePerLayerPerChunk) {
  ASSERT_EQ(inputs_.num_layers(), 2);
  for (const auto& layer : inputs_.chunks) {
    ASSERT_EQ(layer.size(), 3u);  // 32 + 32 + 6
    EXPECT_EQ(layer[0].rows(), 32);
    EXPECT_EQ(layer[2].rows(), 6);
  }
  // Layer 0's input is RMSNorm(E[token])·g.
  const LlamaWeights& w = model_.weights();
  RowMatrix<float> x(32, w.config.d_model);
  for (Index t = 0; t < 32; ++t)
    x.row(t) = w.token_embedding.row(tokens_[static_cast<std::size_t>(32 + t)]);
  rms_norm(x, w.layers[0].attention_norm, w.config.norm_eps, x);
  EXPECT_LT((inputs_.chunks[0][1] - x).norm(), 1e-6 * x.norm());
}

TEST_F(ValueRecalibrationTest, GramsMatchCollectAttentionGramsAndWeighSinks) {
  const std::vector<RowMatrix<double>> want = collect_attention_grams(model_, tokens_, 32);
  const std::vector<RowMatrix<double>> got = attention_input_grams(inputs_);
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t l = 0; l < got.size(); ++l) {
    EXPECT_LT((got[l] - want[l]).norm(), 1e-9 * want[l].norm());
  }
  // Weight 0 on the first 4 positions of each chunk = the Gram of the other rows.
  const std::vector<RowMatrix<double>> no_sinks = attention_input_grams(inputs_, 4, 0.0);
  const std::vector<RowMatrix<double>> quarter = attention_input_grams(inputs_, 4, 0.25);
  RowMatrix<double> rest = RowMatrix<double>::Zero(32, 32);
  RowMatrix<double> sinks = RowMatrix<double>::Zero(32, 32);
  for (const RowMatrix<float>& x : inputs_.chunks[1]) {
    const RowMatrix<double> xd = x.cast<double>();
    rest += xd.bottomRows(xd.rows() - 4).transpose() * xd.bottomRows(xd.rows() - 4);
    sinks += xd.topRows(4).transpose() * xd.topRows(4);
  }
  EXPECT_LT((no_sinks[1] - rest).norm(), 1e-9 * rest.norm());
  EXPECT_LT((quarter[1] - rest - 0.25 * sinks).norm(), 1e-6 * rest.norm());
  EXPECT_THROW((void)attention_input_grams(inputs_, -1, 0.0), InvalidArgument);
  EXPECT_THROW((void)attention_input_grams(inputs_, 4, -0.5), InvalidArgument);
}

TEST_F(ValueRecalibrationTest, RefitLowersTheCalibrationOutputError) {
  // A refit by least squares lowers the output error at every rank; by how much depends on what
  // the truncation left to fix (measured: 9-10% at rank 3 on layer 0, more at rank 6).
  for (const Index r : {3, 6}) {
    const CompressedModel before = exact_keys(r);
    CompressedModel after = before;
    for (Index l = 0; l < 2; ++l) {
      const ValueRecalibrationReport report = recalibrate_values(
          model_.config(), model_.weights().layers[static_cast<std::size_t>(l)].attention,
          inputs_.chunks[static_cast<std::size_t>(l)], after.layers[static_cast<std::size_t>(l)],
          {.ridge = 1e-6});
      EXPECT_LT(report.relative_error_after, 0.95 * report.relative_error_before) << r << " " << l;
      // Measured independently through the latent cache (which sums the heads).
      const double e0 = output_error(before, l);
      const double e1 = output_error(after, l);
      EXPECT_LT(e1, 0.95 * e0) << "rank " << r << " layer " << l;
      EXPECT_EQ(after.layers[static_cast<std::size_t>(l)].v[0].down,
                before.layers[static_cast<std::size_t>(l)].v[0].down);  // the cache is unchanged
    }
  }
}

TEST_F(ValueRecalibrationTest, LeavesExactFactorsAndAnInfiniteRidgeAlone) {
  const CompressedModel full = at_rank(16);
  CompressedModel refit = full;
  const ValueRecalibrationReport report =
      recalibrate_values(model_.config(), model_.weights().layers[0].attention, inputs_.chunks[0],
                         refit.layers[0], {.ridge = 0.0});
  EXPECT_LT(report.relative_error_before, 1e-4);
  const RowMatrix<float>& w0 = full.layers[0].v[0].out;
  EXPECT_LT((refit.layers[0].v[0].out - w0).norm(), 1e-3 * w0.norm());

  const CompressedModel low = exact_keys(4);
  CompressedModel stiff = low;
  (void)recalibrate_values(model_.config(), model_.weights().layers[1].attention, inputs_.chunks[1],
                           stiff.layers[1], {.ridge = 1e12});
  const RowMatrix<float>& l0 = low.layers[1].v[0].out;
  EXPECT_LT((stiff.layers[1].v[0].out - l0).norm(), 1e-6 * l0.norm());
}

TEST_F(ValueRecalibrationTest, SinkRefitsCompressedLayersOnly) {
  const Compressor<BdcsvdFactorizer<float>, JointGrouping, testing::FixedRankSchedule> c(
      {}, {}, testing::FixedRankSchedule{5}, {.first_layer = 1, .last_layer = 1});
  InMemorySink memory;
  ValueRecalibrationSink<InMemorySink> sink(memory, model_.weights(), inputs_);
  (void)c.compress(WeightsAttentionSource(model_.weights()), {.budget = 1.0}, sink);
  ASSERT_EQ(memory.model.layers.size(), 2u);
  EXPECT_FALSE(memory.model.layers[0].compressed);
  ASSERT_EQ(sink.reports().size(), 1u);
  EXPECT_LT(sink.reports()[0].relative_error_after, sink.reports()[0].relative_error_before);
}

TEST_F(ValueRecalibrationTest, RejectsBadInput) {
  CompressedModel m = at_rank(4);
  const AttentionWeights& w = model_.weights().layers[0].attention;
  try {
    (void)recalibrate_values(model_.config(), w, inputs_.chunks[0], m.layers[0], {.ridge = -1.0});
    FAIL() << "no error";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("ridge = -1, expected >= 0"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW((void)recalibrate_values(model_.config(), w, {}, m.layers[0]), InvalidArgument);
  CompressedLayer dense;
  dense.compressed = false;
  EXPECT_THROW((void)recalibrate_values(model_.config(), w, inputs_.chunks[0], dense),
               InvalidArgument);
  const std::vector<RowMatrix<float>> wrong = {RowMatrix<float>::Zero(4, 7)};
  EXPECT_THROW((void)recalibrate_values(model_.config(), w, wrong, m.layers[0]), InvalidArgument);
  InMemorySink memory;
  AttentionInputs one_layer;
  one_layer.chunks.resize(1);
  EXPECT_THROW(ValueRecalibrationSink<InMemorySink>(memory, model_.weights(), one_layer),
               InvalidArgument);
}

}  // namespace
}  // namespace latentkv
