// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/factorize/exact_svd_factorizer.hpp"

#include <gtest/gtest.h>

#include <Eigen/SVD>

#include "../support/matrices.hpp"

namespace latentkv {
namespace {

// The SmolLM2-135M K/V shape (576 x 192) through divide and conquer, checked against
// JacobiSVD<double> on every singular value and on the Eckart–Young tail at several ranks.
TEST(BdcsvdFactorizer, MatchesJacobiDoubleOnTheSmolLm2KvShape) {
  const RowMatrix<float> w =
      testing::with_spectrum<float>(576, 192, testing::power_law_spectrum(192, 0.8), 21);
  const ColMatrix<double> wd = w.cast<double>();
  const Vector<double> sigma = Eigen::JacobiSVD<ColMatrix<double>>(wd).singularValues();
  for (const Index r : {Index{48}, Index{96}, Index{144}}) {
    const auto f = BdcsvdFactorizer<float>().factorize(w, r);
    for (Index i = 0; i < r; ++i) EXPECT_NEAR(f.singular_values(i), sigma(i), 1e-5 * sigma(0));
    const double tail = sigma.tail(192 - r).squaredNorm();
    const double err = (wd - f.down.cast<double>() * f.up.cast<double>()).squaredNorm();
    EXPECT_NEAR(err, tail, 1e-5 * sigma.squaredNorm()) << "rank " << r;
    EXPECT_NEAR(f.relative_error, std::sqrt(tail / sigma.squaredNorm()), 1e-5) << "rank " << r;
  }
}

TEST(BdcsvdFactorizer, UsesJacobiBelowTheThresholdWithIdenticalResults) {
  const RowMatrix<double> w =
      testing::with_spectrum<double>(40, 12, testing::geometric_spectrum(12, 0.6), 4);
  const auto bdc = BdcsvdFactorizer<double>({SigmaSplit::kLeft, 16}).factorize(w, 5);
  const auto jac = JacobiSvdFactorizer<double>().factorize(w, 5);
  EXPECT_LT((bdc.down - jac.down).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_LT((bdc.up - jac.up).cwiseAbs().maxCoeff(), 1e-12);
}

TEST(JacobiSvdFactorizer, HandlesAZeroMatrix) {
  const RowMatrix<float> w = RowMatrix<float>::Zero(8, 6);
  const auto f = JacobiSvdFactorizer<float>().factorize(w, 3);
  EXPECT_EQ(f.reconstruct(), w);
  EXPECT_EQ(f.relative_error, 0.0);
  EXPECT_EQ(f.retained_energy, 1.0);
}

TEST(JacobiSvdFactorizer, ReportsRetainedEnergyAsTheKeptSpectrumFraction) {
  Vector<double> sigma(4);
  sigma << 4, 2, 1, 1;  // energy 16 + 4 + 1 + 1 = 22
  const RowMatrix<double> w = testing::with_spectrum<double>(9, 7, sigma, 8);
  const auto f = JacobiSvdFactorizer<double>().factorize(w, 2);
  EXPECT_NEAR(f.retained_energy, 20.0 / 22.0, 1e-12);
  EXPECT_NEAR(f.relative_error, std::sqrt(2.0 / 22.0), 1e-12);
}

}  // namespace
}  // namespace latentkv
