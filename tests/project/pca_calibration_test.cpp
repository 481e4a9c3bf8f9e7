// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// project/pca_calibration.hpp on the tiny random model: the streamed statistics equal the mean and
// covariance of the dense cache's post-RoPE keys and values computed directly; the fitted bases
// are orthonormal, sorted by variance and diagonalize the covariance; skip_first leaves the first
// tokens of every chunk out; per-head bases are the diagonal blocks of the joint statistics;
// rejected input names what is wrong.
#include "latentkv/project/pca_calibration.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "../support/expect_invalid.hpp"
#include "../support/tiny_llama.hpp"
#include "latentkv/model/dense_kv_cache.hpp"

namespace latentkv {
namespace {

using testing::expect_invalid;

class PcaCalibrationTest : public ::testing::Test {
 protected:
  PcaCalibrationTest()
      : model_(testing::random_llama_weights(testing::tiny_llama_config(), 11)),
        tokens_(testing::random_tokens(250, 61, 9)) {}

  /// Keys (side 0) or values (side 1) of layer l over every chunk of ctx, after skip tokens.
  [[nodiscard]] RowMatrix<double> direct(Index l, int side, Index ctx, Index skip) const {
    std::vector<RowMatrix<double>> parts;
    Index rows = 0;
    const std::span<const std::int32_t> all(tokens_);
    for (std::size_t start = 0; start < all.size(); start += static_cast<std::size_t>(ctx)) {
      const std::size_t count = std::min(all.size() - start, static_cast<std::size_t>(ctx));
      if (static_cast<Index>(count) <= skip) break;
      DenseKvCache cache(model_.weights());
      (void)model_.hidden_states(all.subspan(start, count), cache);
      const MatrixCRef<float> m = side == 0 ? cache.keys(l) : cache.values(l);
      parts.push_back(m.bottomRows(m.rows() - skip).cast<double>());
      rows += parts.back().rows();
    }
    RowMatrix<double> out(rows, parts[0].cols());
    Index row = 0;
    for (const RowMatrix<double>& p : parts) {
      out.middleRows(row, p.rows()) = p;
      row += p.rows();
    }
    return out;
  }

  LlamaModel model_;
  std::vector<std::int32_t> tokens_;  // 250 tokens: chunks of 100, 100, 50
};

TEST_F(PcaCalibrationTest, FitsTheMeanAndCovarianceOfThePostRopeKeysAndValues) {
  const ProjectionStats stats = collect_projection_stats(model_, tokens_, {.ctx = 100});
  EXPECT_EQ(stats.tokens(), 250);
  const ProjectedModel joint = stats.fit(2);
  EXPECT_EQ(joint.calibration_tokens, 250);
  for (Index l = 0; l < 2; ++l) {
    for (int side = 0; side < 2; ++side) {
      const RowMatrix<double> x = direct(l, side, 100, 0);
      const Eigen::RowVectorXd mean = x.colwise().mean();
      const RowMatrix<double> centred = x.rowwise() - mean;
      const RowMatrix<double> cov = centred.transpose() * centred / static_cast<double>(x.rows());
      const ProjectedLayer& layer = joint.layers[static_cast<std::size_t>(l)];
      const ProjectedBasis& b = side == 0 ? layer.k[0] : layer.v[0];
      ASSERT_EQ(b.basis.rows(), 16);
      ASSERT_EQ(b.basis.cols(), 16);
      EXPECT_LT((b.mean.cast<double>().transpose() - mean).cwiseAbs().maxCoeff(),
                1e-5 * (1.0 + mean.cwiseAbs().maxCoeff()));
      const RowMatrix<double> p = b.basis.cast<double>();
      EXPECT_LT((p.transpose() * p - RowMatrix<double>::Identity(16, 16)).cwiseAbs().maxCoeff(),
                1e-5);
      for (Index i = 1; i < 16; ++i) EXPECT_GE(b.variance(i - 1), b.variance(i));
      // P·diag(λ)·Pᵀ = C, and the first direction carries the largest variance.
      const RowMatrix<double> rebuilt = p * b.variance.asDiagonal() * p.transpose();
      EXPECT_LT((rebuilt - cov).cwiseAbs().maxCoeff(), 1e-4 * cov.cwiseAbs().maxCoeff())
          << "layer " << l << " side " << side;
      EXPECT_NEAR((centred * p.col(0)).squaredNorm() / static_cast<double>(x.rows()), b.variance(0),
                  1e-4 * b.variance(0));
    }
  }
}

TEST_F(PcaCalibrationTest, SkipFirstLeavesTheFirstTokensOfEveryChunkOut) {
  const ProjectionStats stats =
      collect_projection_stats(model_, tokens_, {.ctx = 100, .skip_first = 3});
  EXPECT_EQ(stats.tokens(), 97 + 97 + 47);  // chunks of 100, 100 and 50 tokens
  const RowMatrix<double> keys = direct(1, 0, 100, 3);
  ASSERT_EQ(keys.rows(), stats.tokens());
  const ProjectedModel joint = stats.fit(2);
  const Eigen::RowVectorXd mean = keys.colwise().mean();
  EXPECT_LT((joint.layers[1].k[0].mean.cast<double>().transpose() - mean).cwiseAbs().maxCoeff(),
            1e-5 * (1.0 + mean.cwiseAbs().maxCoeff()));
}

TEST_F(PcaCalibrationTest, PerHeadBasesAreTheDiagonalBlocks) {
  const ProjectionStats stats = collect_projection_stats(model_, tokens_, {.ctx = 100});
  const ProjectedModel joint = stats.fit(2);
  const ProjectedModel per_head = stats.fit(1);
  ASSERT_EQ(per_head.layers[0].k.size(), 2u);
  for (Index e = 0; e < 2; ++e) {
    const ProjectedBasis& b = per_head.layers[0].k[static_cast<std::size_t>(e)];
    EXPECT_EQ(b.basis.rows(), 8);
    EXPECT_LT((b.mean - joint.layers[0].k[0].mean.segment(e * 8, 8)).cwiseAbs().maxCoeff(), 1e-6);
    // Same covariance block: same total variance.
    const RowMatrix<double> p = joint.layers[0].k[0].basis.cast<double>();
    const RowMatrix<double> cov = p * joint.layers[0].k[0].variance.asDiagonal() * p.transpose();
    EXPECT_NEAR(b.variance.sum(), cov.block(e * 8, e * 8, 8, 8).trace(), 1e-4 * b.variance.sum());
  }
}

TEST_F(PcaCalibrationTest, RejectsBadInput) {
  expect_invalid([&] { (void)collect_projection_stats(model_, tokens_, {.ctx = 1}); },
                 "ctx = 1, skip_first = 0, expected ctx >= 2");
  expect_invalid(
      [&] { (void)collect_projection_stats(model_, tokens_, {.ctx = 10, .skip_first = 10}); },
      "0 <= skip_first < ctx");
  const std::vector<std::int32_t> short_text = {1, 2, 3};
  expect_invalid(
      [&] { (void)collect_projection_stats(model_, short_text, {.ctx = 10, .skip_first = 2}); },
      "3 calibration tokens leave 1 to count");
  const ProjectionStats stats = collect_projection_stats(model_, tokens_, {.ctx = 100});
  expect_invalid([&] { (void)stats.fit(3); },
                 "heads_per_group = 3, expected a divisor of num_kv_heads = 2");
  ProjectionStats empty(2, 2, 8);
  expect_invalid([&] { (void)empty.fit(1); }, "0 calibration tokens, expected >= 2");
  const RowMatrix<float> keys = RowMatrix<float>::Zero(4, 16);
  expect_invalid([&] { empty.add(2, keys, keys); }, "layer = 2, expected 0..1");
  expect_invalid([&] { empty.add(0, keys, RowMatrix<float>::Zero(4, 15)); },
                 "expected both (tokens, 16)");
  RowMatrix<float> nan = keys;
  nan(1, 2) = std::numeric_limits<float>::quiet_NaN();
  expect_invalid([&] { empty.add(1, nan, keys); }, "layer 1: a non-finite key or value");
}

}  // namespace
}  // namespace latentkv
