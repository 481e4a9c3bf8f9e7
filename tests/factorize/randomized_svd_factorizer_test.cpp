// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/factorize/randomized_svd_factorizer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/SVD>

#include "../support/matrices.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;

double optimal_tail(const RowMatrix<float>& w, Index r) {
  const ColMatrix<double> wd = w.cast<double>();
  const Vector<double> s = Eigen::BDCSVD<ColMatrix<double>>(wd).singularValues();
  return s.tail(s.size() - r).squaredNorm();
}

double achieved(const RowMatrix<float>& w, const LowRankFactors<float>& f) {
  return (w.cast<double>() - f.down.cast<double>() * f.up.cast<double>()).squaredNorm();
}

TEST(RandomizedSvdFactorizer, IsExactOnAMatrixOfTheTargetRank) {
  // rank(W) = r and no oversampling, no power iteration: the sketch already spans range(W).
  const RowMatrix<float> w =
      testing::with_spectrum<float>(300, 200, testing::power_law_spectrum(24, 0.3), 7);
  const auto f = RandomizedSvdFactorizer<float>({0, 0, 1, SigmaSplit::kLeft}).factorize(w, 24);
  EXPECT_LT(std::sqrt(achieved(w, f) / w.cast<double>().squaredNorm()), 1e-5);
  EXPECT_LT(f.relative_error, 1e-5);
}

// Decaying spectra at real K/V shapes and the budgets the rank schedules use: within 1% of the
// Eckart–Young optimum with the default 2 power iterations.
TEST(RandomizedSvdFactorizer, TailErrorWithinOnePercentOfOptimalOnDecayingSpectra) {
  struct Case {
    Index rows, cols;
    double alpha;
  };
  for (const Case c : {Case{576, 192, 0.5}, Case{576, 192, 1.0}, Case{512, 256, 0.7}}) {
    const Index k = std::min(c.rows, c.cols);
    const RowMatrix<float> w =
        testing::with_spectrum<float>(c.rows, c.cols, testing::power_law_spectrum(k, c.alpha), 3);
    for (const Index r : {k / 4, k / 2, 3 * k / 4}) {
      const auto f = RandomizedSvdFactorizer<float>().factorize(w, r);
      const double ratio = achieved(w, f) / optimal_tail(w, r);
      EXPECT_LE(ratio, 1.01) << c.rows << "x" << c.cols << " α=" << c.alpha << " r=" << r;
      EXPECT_GE(ratio, 1.0 - 1e-4);
    }
  }
}

TEST(RandomizedSvdFactorizer, PowerIterationsImproveASlowlyDecayingSpectrum) {
  const RowMatrix<float> w =
      testing::with_spectrum<float>(400, 300, testing::power_law_spectrum(300, 0.3), 9);
  const double opt = optimal_tail(w, 60);
  const double q0 = achieved(w, RandomizedSvdFactorizer<float>({5, 0, 1, SigmaSplit::kLeft})
                                    .factorize(w, 60)) / opt;
  const double q3 = achieved(w, RandomizedSvdFactorizer<float>({5, 3, 1, SigmaSplit::kLeft})
                                    .factorize(w, 60)) / opt;
  EXPECT_LT(q3, q0);
  EXPECT_LT(q3, 1.01);
  EXPECT_GT(q0, 1.01) << "the case is too easy to show anything";
}

TEST(RandomizedSvdFactorizer, SeedSelectsTheSketch) {
  const RowMatrix<float> w =
      testing::with_spectrum<float>(200, 150, testing::power_law_spectrum(150, 0.4), 2);
  const auto a = RandomizedSvdFactorizer<float>({10, 1, 1, SigmaSplit::kLeft}).factorize(w, 30);
  const auto b = RandomizedSvdFactorizer<float>({10, 1, 1, SigmaSplit::kLeft}).factorize(w, 30);
  const auto c = RandomizedSvdFactorizer<float>({10, 1, 2, SigmaSplit::kLeft}).factorize(w, 30);
  EXPECT_EQ(a.reconstruct(), b.reconstruct());
  EXPECT_GT((a.reconstruct() - c.reconstruct()).cwiseAbs().maxCoeff(), 0.0f);
}

TEST(RandomizedSvdFactorizer, SketchWiderThanTheMatrixIsExact) {
  const RowMatrix<double> w =
      testing::with_spectrum<double>(30, 20, testing::power_law_spectrum(20, 0.1), 2);
  const auto f = RandomizedSvdFactorizer<double>({50, 0, 1, SigmaSplit::kLeft}).factorize(w, 15);
  const Vector<double> s = Eigen::JacobiSVD<ColMatrix<double>>(ColMatrix<double>(w)).singularValues();
  EXPECT_NEAR((w - f.reconstruct()).squaredNorm(), s.tail(5).squaredNorm(), 1e-12);
}

TEST(RandomizedSvdFactorizer, RejectsNegativeOptions) {
  try {
    RandomizedSvdFactorizer<float>({-1, 2, 1, SigmaSplit::kLeft});
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("oversampling = -1, expected >= 0"));
  }
  try {
    RandomizedSvdFactorizer<float>({10, -2, 1, SigmaSplit::kLeft});
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("power_iterations = -2, expected >= 0"));
  }
}

}  // namespace
}  // namespace latentkv
