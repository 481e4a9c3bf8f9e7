// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// project/cayley_refinement.hpp on the tiny random model: the objective is the relative error of
// ProjectedKvCache's attention output against DenseKvCache's (two independent implementations);
// its hand-written gradient matches central finite differences in double entry by entry; it
// depends on a basis only through its span; the Cayley step keeps PᵀP = I and its slope at τ = 0
// is −½‖W‖²; refinement lowers the objective on calibration text and on text it never saw, keeps
// the bases orthonormal with descending variances, and bad input is named.
#include "latentkv/project/cayley_refinement.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <span>
#include <vector>

#include "../support/expect_invalid.hpp"
#include "../support/tiny_llama.hpp"
#include "latentkv/cache/projected_kv_cache.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/project/pca_calibration.hpp"

namespace latentkv {
namespace {

using testing::expect_invalid;
using MatD = Eigen::MatrixXd;

/// A (rows, cols) matrix with orthonormal columns (QR of a Gaussian).
MatD random_orthonormal(Index rows, Index cols, std::mt19937_64& engine) {
  std::normal_distribution<double> normal;
  MatD m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = normal(engine);
  const Eigen::HouseholderQR<MatD> qr(m);
  return qr.householderQ() * MatD::Identity(rows, cols);
}

MatD random_matrix(Index rows, Index cols, std::mt19937_64& engine) {
  std::normal_distribution<double> normal;
  MatD m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = normal(engine);
  return m;
}

class CayleyRefinementTest : public ::testing::Test {
 protected:
  CayleyRefinementTest()
      : model_(testing::random_llama_weights(testing::tiny_llama_config(), 5)),
        calib_(collect_attention_inputs(model_, testing::random_tokens(kCalibTokens, 61, 3), 48)),
        held_out_(collect_attention_inputs(model_, testing::random_tokens(192, 61, 4), 48)) {}

  [[nodiscard]] const ModelConfig& config() const { return model_.config(); }

  /// PCA of the calibration text with `s` KV heads per group, truncated to r_k, r_v everywhere.
  [[nodiscard]] ProjectedModel pca(Index s, Index rk, Index rv) const {
    const ProjectedModel full =
        collect_projection_stats(model_, testing::random_tokens(kCalibTokens, 61, 3), {.ctx = 48})
            .fit(s);
    RankPlan plan = full.plan();
    for (LayerRanks& layer : plan.layers) {
      for (Index& r : layer.k) r = rk;
      for (Index& r : layer.v) r = rv;
    }
    return full.truncated(plan);
  }

  /// ‖Y − Y*‖² / ‖Y*‖² of layer l over `inputs`' chunks, Y from ProjectedKvCache and Y* from
  /// DenseKvCache, each attending the chunk from an empty cache.
  [[nodiscard]] double cache_error(const ProjectedModel& projections, const AttentionInputs& inputs,
                                   Index l) const {
    double error = 0;
    double norm = 0;
    for (const RowMatrix<float>& x : inputs.chunks[static_cast<std::size_t>(l)]) {
      ProjectedKvCache<float> projected(model_.weights(), projections);
      DenseKvCache dense(model_.weights());
      const RowMatrix<double> y = projected.attend(l, x, 0).cast<double>();
      const RowMatrix<double> target = dense.attend(l, x, 0).cast<double>();
      error += (y - target).squaredNorm();
      norm += target.squaredNorm();
    }
    return error / norm;
  }

  static constexpr Index kCalibTokens = 384;
  LlamaModel model_;
  AttentionInputs calib_;     // 8 chunks of 48 tokens per layer
  AttentionInputs held_out_;  // 4 chunks of 48 other tokens
};

std::vector<MatD> bases(const std::vector<ProjectedBasis>& side) {
  std::vector<MatD> out;
  for (const ProjectedBasis& b : side) out.push_back(b.basis.cast<double>());
  return out;
}

TEST_F(CayleyRefinementTest, ObjectiveIsTheProjectedCachesOutputErrorAgainstDense) {
  for (const Index s : {Index{1}, Index{2}}) {
    const ProjectedModel projections = pca(s, 3, 5);
    for (Index l = 0; l < config().num_layers; ++l) {
      const auto lu = static_cast<std::size_t>(l);
      const ProjectionObjective<double> objective(config(), model_.weights().layers[lu].attention,
                                                  calib_.chunks[lu], projections.layers[lu], s);
      const std::vector<MatD> pk = bases(projections.layers[lu].k);
      const std::vector<MatD> pv = bases(projections.layers[lu].v);
      const double value = objective.value(pk, pv);
      const double measured = cache_error(projections, calib_, l);
      std::printf("s = %ld layer %ld: objective %.6f, caches %.6f\n", static_cast<long>(s),
                  static_cast<long>(l), value, measured);
      EXPECT_GT(value, 1e-3);
      EXPECT_NEAR(value, measured, 1e-4 * measured + 1e-7);
      // Full rank: any orthogonal basis reproduces dense.
      std::mt19937_64 engine(static_cast<std::uint64_t>(7 + l));
      std::vector<MatD> full;
      for (Index j = 0; j < objective.num_groups(); ++j) {
        full.push_back(random_orthonormal(objective.width(), objective.width(), engine));
      }
      EXPECT_LT(objective.value(full, full), 1e-20);
    }
  }
}

TEST_F(CayleyRefinementTest, GradientMatchesCentralFiniteDifferences) {
  std::mt19937_64 engine(21);
  for (const Index s : {Index{1}, Index{2}}) {
    const ProjectedModel projections = pca(s, 3, 4);
    const ProjectedLayer& layer = projections.layers[1];
    const ProjectionObjective<double> objective(config(), model_.weights().layers[1].attention,
                                                calib_.chunks[1], layer, s);
    // Any matrices, not only orthonormal ones: the gradient is the Euclidean one.
    std::vector<MatD> pk;
    std::vector<MatD> pv;
    for (Index j = 0; j < objective.num_groups(); ++j) {
      pk.push_back(random_matrix(objective.width(), 3, engine) * 0.5);
      pv.push_back(random_matrix(objective.width(), 4, engine) * 0.5);
    }
    std::vector<MatD> gk;
    std::vector<MatD> gv;
    const double value = objective.value_and_gradient(pk, pv, gk, gv);
    EXPECT_NEAR(value, objective.value(pk, pv), 1e-14 * value);
    double worst = 0;
    double largest = 0;
    const double eps = 1e-6;
    for (int side = 0; side < 2; ++side) {
      std::vector<MatD>& p = side == 0 ? pk : pv;
      const std::vector<MatD>& g = side == 0 ? gk : gv;
      for (std::size_t j = 0; j < p.size(); ++j) {
        for (Index i = 0; i < p[j].size(); ++i) {
          const double keep = p[j].data()[i];
          p[j].data()[i] = keep + eps;
          const double up = objective.value(pk, pv);
          p[j].data()[i] = keep - eps;
          const double down = objective.value(pk, pv);
          p[j].data()[i] = keep;
          const double numeric = (up - down) / (2 * eps);
          worst = std::max(worst, std::abs(numeric - g[j].data()[i]));
          largest = std::max(largest, std::abs(numeric));
        }
      }
    }
    std::printf("s = %ld: largest |dL/dP| %.4g, worst |analytic - numeric| %.3g\n",
                static_cast<long>(s), largest, worst);
    EXPECT_GT(largest, 1e-3);
    EXPECT_LT(worst, 1e-7 * largest);
  }
}

TEST_F(CayleyRefinementTest, ObjectiveDependsOnABasisOnlyThroughItsSpan) {
  const ProjectedModel projections = pca(2, 5, 6);
  const ProjectedLayer& layer = projections.layers[0];
  const ProjectionObjective<double> objective(config(), model_.weights().layers[0].attention,
                                              calib_.chunks[0], layer, 2);
  std::mt19937_64 engine(8);
  const std::vector<MatD> pk = bases(layer.k);
  const std::vector<MatD> pv = bases(layer.v);
  const std::vector<MatD> rk{pk[0] * random_orthonormal(5, 5, engine)};
  const std::vector<MatD> rv{pv[0] * random_orthonormal(6, 6, engine)};
  const double value = objective.value(pk, pv);
  EXPECT_NEAR(objective.value(rk, rv), value, 1e-12 * value);
}

TEST_F(CayleyRefinementTest, CayleyStepStaysOrthonormalAndDescendsAtTheSlopeOfTheNotes) {
  const ProjectedModel projections = pca(2, 4, 4);
  const ProjectedLayer& layer = projections.layers[1];
  const ProjectionObjective<double> objective(config(), model_.weights().layers[1].attention,
                                              calib_.chunks[1], layer, 2);
  const std::vector<MatD> pk = bases(layer.k);
  const std::vector<MatD> pv = bases(layer.v);
  std::vector<MatD> gk;
  std::vector<MatD> gv;
  const double value = objective.value_and_gradient(pk, pv, gk, gv);
  // Move the keys only: dL/dτ(0) = −½‖W‖² = −(‖G‖² − tr((PᵀG)²)).
  const MatD ptg = pk[0].transpose() * gk[0];
  const double slope = gk[0].squaredNorm() - (ptg * ptg).trace();
  ASSERT_GT(slope, 0);
  const double tau = 1e-6;
  const std::vector<MatD> forward{cayley_step(pk[0], gk[0], tau)};
  const std::vector<MatD> backward{cayley_step(pk[0], gk[0], -tau)};
  const double numeric = (objective.value(forward, pv) - objective.value(backward, pv)) / (2 * tau);
  EXPECT_NEAR(numeric, -slope, 1e-6 * slope);
  // P(τ) = Q(τ)·P with Q orthogonal: PᵀP is kept (to double rounding; the PCA basis is fp32).
  const MatD far = cayley_step(pk[0], gk[0], 0.5);
  EXPECT_LT((far.transpose() * far - pk[0].transpose() * pk[0]).cwiseAbs().maxCoeff(), 1e-13);
  EXPECT_GT((far - pk[0]).norm(), 1e-3);
  EXPECT_GT(value, 0);
}

TEST_F(CayleyRefinementTest, RefinementLowersTheErrorOnCalibrationAndHeldOutText) {
  // On 384 calibration tokens of a random model the held-out error need not fall in every layer
  // (it rose in one of four when this was written): the test holds the sum to falling.
  double held_before_sum = 0;
  double held_after_sum = 0;
  for (const Index s : {Index{1}, Index{2}}) {
    ProjectedModel projections = pca(s, 3, 3);
    const ProjectedModel before = projections;
    const std::vector<LayerRefinement> reports =
        refine_projections(projections, model_.weights(), calib_, {.steps = 30});
    ASSERT_EQ(std::ssize(reports), config().num_layers);
    for (Index l = 0; l < config().num_layers; ++l) {
      const LayerRefinement& r = reports[static_cast<std::size_t>(l)];
      const double calib_before = cache_error(before, calib_, l);
      const double calib_after = cache_error(projections, calib_, l);
      const double held_before = cache_error(before, held_out_, l);
      const double held_after = cache_error(projections, held_out_, l);
      std::printf(
          "s = %ld layer %ld: %d steps, objective %.5f -> %.5f; caches: calibration %.5f -> "
          "%.5f, held out %.5f -> %.5f\n",
          static_cast<long>(s), static_cast<long>(l), r.steps, r.initial, r.final, calib_before,
          calib_after, held_before, held_after);
      EXPECT_GE(r.steps, 5);
      EXPECT_LT(r.final, 0.85 * r.initial);
      EXPECT_NEAR(calib_after, r.final, 1e-3 * r.final);
      held_before_sum += held_before;
      held_after_sum += held_after;
      for (const auto* side : {&projections.layers[static_cast<std::size_t>(l)].k,
                               &projections.layers[static_cast<std::size_t>(l)].v}) {
        for (const ProjectedBasis& b : *side) {
          const Eigen::MatrixXf gram = b.basis.transpose() * b.basis;
          EXPECT_LT((gram - Eigen::MatrixXf::Identity(b.rank(), b.rank())).cwiseAbs().maxCoeff(),
                    1e-5f);
          for (Index i = 1; i < b.variance.size(); ++i) {
            EXPECT_LE(b.variance(i), b.variance(i - 1));
          }
        }
      }
    }
    // Still a valid model whose spectra a schedule can plan on.
    projections.validate(config());
    EXPECT_NO_THROW((void)projections.rank_problem(config().d_model).validate());
  }
  std::printf("held out, summed over groupings and layers: %.5f -> %.5f\n", held_before_sum,
              held_after_sum);
  EXPECT_LT(held_after_sum, 0.95 * held_before_sum);
}

TEST_F(CayleyRefinementTest, ZeroStepsChangesOnlyTheOrderWithinTheSpan) {
  ProjectedModel projections = pca(2, 3, 3);
  const ProjectedModel before = projections;
  const std::vector<LayerRefinement> reports =
      refine_projections(projections, model_.weights(), calib_, {.steps = 0});
  for (Index l = 0; l < config().num_layers; ++l) {
    const auto lu = static_cast<std::size_t>(l);
    EXPECT_EQ(reports[lu].steps, 0);
    EXPECT_EQ(reports[lu].initial, reports[lu].final);
    // PCA columns are already ordered by variance: the same span, the same projector.
    const Eigen::MatrixXf a = before.layers[lu].k[0].basis;
    const Eigen::MatrixXf b = projections.layers[lu].k[0].basis;
    EXPECT_LT((a * a.transpose() - b * b.transpose()).cwiseAbs().maxCoeff(), 1e-5f);
  }
}

TEST_F(CayleyRefinementTest, BadInputIsNamed) {
  ProjectedModel projections = pca(2, 3, 3);
  expect_invalid(
      [&] { (void)refine_projections(projections, model_.weights(), held_out_, {.steps = -1}); },
      "steps = -1");
  AttentionInputs one_layer = calib_;
  one_layer.chunks.pop_back();
  expect_invalid([&] { (void)refine_projections(projections, model_.weights(), one_layer); },
                 "inputs of 1 layers");
  const ProjectedLayer& layer = projections.layers[0];
  expect_invalid(
      [&] {
        (void)ProjectionObjective<double>(config(), model_.weights().layers[0].attention,
                                          calib_.chunks[0], layer, 1);
      },
      "heads_per_group = 1");
  expect_invalid(
      [&] {
        (void)ProjectionObjective<double>(config(), model_.weights().layers[0].attention, {}, layer,
                                          2);
      },
      "no calibration chunk");
  const ProjectionObjective<double> objective(config(), model_.weights().layers[0].attention,
                                              calib_.chunks[0], layer, 2);
  const std::vector<MatD> wrong{MatD::Identity(8, 3)};
  expect_invalid([&] { (void)objective.value(wrong, wrong); }, "expected (16, r >= 1)");
}

}  // namespace
}  // namespace latentkv
