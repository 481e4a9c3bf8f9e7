// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/factorize/whitened_factorizer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/SVD>
#include <limits>

#include "../support/matrices.hpp"
#include "latentkv/factorize/randomized_svd_factorizer.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;

constexpr Index kDim = 64;   // d
constexpr Index kCols = 48;  // n_kv·h
constexpr Index kTokens = 2000;

// Calibration inputs with an anisotropic covariance: channel scales log-spaced over 1..100,
// mixed by a random rotation (like real hidden states with outlier channels).
RowMatrix<double> anisotropic_inputs(Index tokens, std::uint64_t seed) {
  Vector<double> scales(kDim);
  for (Index i = 0; i < kDim; ++i) scales(i) = std::pow(100.0, static_cast<double>(i) / (kDim - 1));
  const ColMatrix<double> rotation = testing::random_orthonormal(kDim, kDim, seed + 1);
  return testing::gaussian<double>(tokens, kDim, seed) * scales.asDiagonal() * rotation.transpose();
}

RowMatrix<double> weights() {
  return testing::with_spectrum<double>(kDim, kCols, testing::power_law_spectrum(kCols, 0.6), 77);
}

double activation_error(const RowMatrix<double>& x, const RowMatrix<double>& w,
                        const LowRankFactors<double>& f) {
  return (x * (w - f.reconstruct())).norm();
}

TEST(WhitenedFactorizer, BeatsPlainSvdOnActivationWeightedError) {
  const RowMatrix<double> x = anisotropic_inputs(kTokens, 5);
  const RowMatrix<double> gram = x.transpose() * x;
  const RowMatrix<double> w = weights();
  const WhitenedFactorizer<BdcsvdFactorizer<double>> whitened(gram);
  EXPECT_EQ(whitened.applied_shift(), 0.0);
  for (const Index r : {Index{4}, Index{12}, Index{24}}) {
    const double plain = activation_error(x, w, BdcsvdFactorizer<double>().factorize(w, r));
    const double white = activation_error(x, w, whitened.factorize(w, r));
    EXPECT_LT(white, 0.9 * plain) << "rank " << r;
  }
}

// With X of full column rank, X·A·B ranges over every rank-r matrix in range(X), so the optimum
// is the Eckart–Young tail of X·W itself: the whitened factorizer must reach it.
TEST(WhitenedFactorizer, ReachesTheOptimumOfTheActivationWeightedProblem) {
  const RowMatrix<double> x = anisotropic_inputs(kTokens, 6);
  const RowMatrix<double> w = weights();
  const Vector<double> s =
      Eigen::BDCSVD<ColMatrix<double>>(ColMatrix<double>(x * w)).singularValues();
  const WhitenedFactorizer<BdcsvdFactorizer<double>> whitened(x.transpose() * x);
  for (const Index r : {Index{6}, Index{20}}) {
    const double err = activation_error(x, w, whitened.factorize(w, r));
    EXPECT_NEAR(err * err, s.tail(s.size() - r).squaredNorm(), 1e-8 * s.squaredNorm());
  }
}

TEST(WhitenedFactorizer, WrapsTheRandomizedPolicyToo) {
  const RowMatrix<double> x = anisotropic_inputs(kTokens, 8);
  const RowMatrix<double> w = weights();
  const RowMatrix<double> gram = x.transpose() * x;
  const auto exact = WhitenedFactorizer<BdcsvdFactorizer<double>>(gram).factorize(w, 16);
  const auto rand = WhitenedFactorizer<RandomizedSvdFactorizer<double>>(gram).factorize(w, 16);
  const double e = activation_error(x, w, exact);
  EXPECT_LE(activation_error(x, w, rand), 1.005 * e);
}

TEST(WhitenedFactorizer, ReportsErrorInWeightSpaceAndEnergyInWhitenedSpace) {
  const RowMatrix<double> x = anisotropic_inputs(kTokens, 9);
  const RowMatrix<double> w = weights();
  const WhitenedFactorizer<BdcsvdFactorizer<double>> whitened(x.transpose() * x);
  const auto f = whitened.factorize(w, 10);
  EXPECT_NEAR(f.relative_error, (w - f.reconstruct()).norm() / w.norm(), 1e-12);
  const double xw = (x * w).squaredNorm();
  const double xerr = (x * (w - f.reconstruct())).squaredNorm();
  EXPECT_NEAR(f.retained_energy, 1.0 - xerr / xw, 1e-9);
}

TEST(WhitenedFactorizer, ShiftsARankDeficientGramAndStillReachesTheOptimum) {
  const RowMatrix<double> x = anisotropic_inputs(20, 10);  // 20 tokens < d = 64: XᵀX singular
  const RowMatrix<double> w = weights();
  const WhitenedFactorizer<BdcsvdFactorizer<double>> whitened(x.transpose() * x);
  EXPECT_GT(whitened.applied_shift(), 0.0);
  const auto f = whitened.factorize(w, 8);
  EXPECT_TRUE(f.down.allFinite());
  EXPECT_TRUE(f.up.allFinite());
  // The tiny shift barely moves the solution: the activation error on the calibration inputs is
  // still the Eckart–Young optimum of X·W (within 1%), far below plain SVD.
  const Vector<double> s =
      Eigen::BDCSVD<ColMatrix<double>>(ColMatrix<double>(x * w)).singularValues();
  const double err = activation_error(x, w, f);
  EXPECT_LE(err * err, 1.01 * s.tail(s.size() - 8).squaredNorm());
  EXPECT_LT(err, 0.6 * activation_error(x, w, BdcsvdFactorizer<double>().factorize(w, 8)));
}

TEST(WhitenedFactorizer, IdentityGramIsPlainSvd) {
  const RowMatrix<double> w = weights();
  const auto a =
      WhitenedFactorizer<BdcsvdFactorizer<double>>(RowMatrix<double>::Identity(kDim, kDim))
          .factorize(w, 9);
  const auto b = BdcsvdFactorizer<double>().factorize(w, 9);
  EXPECT_LT((a.reconstruct() - b.reconstruct()).cwiseAbs().maxCoeff(), 1e-12);
}

TEST(WhitenedFactorizer, RejectsAGramOfTheWrongSize) {
  const RowMatrix<double> w = weights();
  const WhitenedFactorizer<BdcsvdFactorizer<double>> f(RowMatrix<double>::Identity(32, 32));
  try {
    (void)f.factorize(w, 4);
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("w has 64 rows, expected 32 (the size of the Gram matrix)"));
  }
  try {
    WhitenedFactorizer<BdcsvdFactorizer<double>>(RowMatrix<double>::Identity(32, 31));
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("gram is 32 x 31, expected a non-empty square (d, d) matrix"));
  }
}

TEST(WhitenedFactorizer, RejectsNonFiniteAsymmetricOrZeroGram) {
  using Wf = WhitenedFactorizer<BdcsvdFactorizer<float>>;
  RowMatrix<double> g = RowMatrix<double>::Identity(8, 8);
  g(2, 5) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(Wf{g}, InvalidArgument);
  g = RowMatrix<double>::Identity(8, 8);
  g(2, 5) = 0.5;
  try {
    Wf{g};
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("gram is not symmetric"));
  }
  try {
    Wf{RowMatrix<double>::Zero(8, 8)};
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("gram is all zeros"));
  }
}

TEST(WhitenedFactorizer, RejectsAnIndefiniteGramThatNoSmallShiftRepairs) {
  RowMatrix<double> g(2, 2);
  g << 1, 2, 2, 1;  // eigenvalues 3 and -1: no XᵀX, and only a shift > 1 would "repair" it
  try {
    WhitenedFactorizer<BdcsvdFactorizer<double>>{g};
    FAIL();
  } catch (const NumericalError& e) {
    EXPECT_THAT(e.what(), HasSubstr("not positive definite"));
  }
  g << 1, 0, 0, -1;
  try {
    WhitenedFactorizer<BdcsvdFactorizer<double>>{g};
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("negative diagonal entry -1 at (1, 1)"));
  }
}

TEST(GramAccumulator, SumsBatchesIntoXtX) {
  const RowMatrix<double> x = anisotropic_inputs(300, 12);
  GramAccumulator acc(kDim);
  acc.add(x.topRows(100));
  acc.add(x.middleRows(100, 150).cast<float>().cast<double>());
  acc.add(x.bottomRows(50));
  RowMatrix<double> expected = x.transpose() * x;
  expected.middleRows(0, 0).setZero();
  const RowMatrix<double> mid = x.middleRows(100, 150);
  const RowMatrix<double> mid_f = mid.cast<float>().cast<double>();
  expected += mid_f.transpose() * mid_f - mid.transpose() * mid;
  EXPECT_LT((acc.gram() - expected).cwiseAbs().maxCoeff(), 1e-8 * expected.cwiseAbs().maxCoeff());
  EXPECT_EQ(acc.tokens(), 300);
  EXPECT_THROW(acc.add(RowMatrix<double>::Zero(3, kDim + 1)), InvalidArgument);
}

}  // namespace
}  // namespace latentkv
