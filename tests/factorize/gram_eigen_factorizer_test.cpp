// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/factorize/gram_eigen_factorizer.hpp"

#include <gtest/gtest.h>

#include "../support/matrices.hpp"
#include "latentkv/factorize/exact_svd_factorizer.hpp"

namespace latentkv {
namespace {

double error_sq(const RowMatrix<float>& w, const LowRankFactors<float>& f) {
  return (w.cast<double>() - f.down.cast<double>() * f.up.cast<double>()).squaredNorm();
}

// A steep spectrum (κ ≈ 8000, σ² spans 7e7: more than float resolves) on a tall K/V-like shape:
// the double Gram keeps the error at the Eckart–Young optimum, like BDCSVD.
TEST(GramEigenFactorizer, MatchesBdcsvdOnASteepSpectrum) {
  const Vector<double> sigma = testing::power_law_spectrum(256, 1.6);
  const RowMatrix<float> w = testing::with_spectrum<float>(1024, 256, sigma, 31);
  for (const Index r : {Index{64}, Index{128}, Index{192}}) {
    const double optimal = sigma.tail(256 - r).squaredNorm();
    const auto gram = GramEigenFactorizer<float>().factorize(w, r);
    const auto bdc = BdcsvdFactorizer<float>().factorize(w, r);
    EXPECT_LT(error_sq(w, gram) / optimal, 1.001) << "rank " << r;
    EXPECT_NEAR(error_sq(w, gram) / optimal, error_sq(w, bdc) / optimal, 1e-3) << "rank " << r;
    EXPECT_NEAR(gram.relative_error, std::sqrt(optimal / sigma.squaredNorm()),
                1e-3 * gram.relative_error);
  }
}

TEST(GramEigenFactorizer, WideMatricesUseTheOtherGram) {
  const Vector<double> sigma = testing::power_law_spectrum(96, 0.5);
  const RowMatrix<float> w = testing::with_spectrum<float>(96, 300, sigma, 32);
  const auto f = GramEigenFactorizer<float>().factorize(w, 40);
  EXPECT_NEAR(error_sq(w, f), sigma.tail(56).squaredNorm(), 1e-4 * sigma.squaredNorm());
  const RowMatrix<float> bbt = f.up * f.up.transpose();
  EXPECT_LT((bbt - RowMatrix<float>::Identity(40, 40)).cwiseAbs().maxCoeff(), 1e-4);
}

TEST(GramEigenFactorizer, NullDirectionsGetZeroFactorsNotNaN) {
  // rank(W) = 3 < requested 6, with the division-based splits on both orientations.
  const Vector<double> sigma = testing::geometric_spectrum(3, 0.5);
  for (const auto split : {SigmaSplit::kLeft, SigmaSplit::kRight, SigmaSplit::kSqrt}) {
    for (const bool tall : {true, false}) {
      const RowMatrix<double> w = tall ? testing::with_spectrum<double>(40, 12, sigma, 4)
                                       : testing::with_spectrum<double>(12, 40, sigma, 4);
      const auto f = GramEigenFactorizer<double>({split}).factorize(w, 6);
      EXPECT_TRUE(f.down.allFinite() && f.up.allFinite()) << to_string(split) << tall;
      EXPECT_LT((f.reconstruct() - w).norm(), 1e-6 * w.norm()) << to_string(split) << tall;
    }
  }
}

constexpr GramEigenFactorizer<float>::Options kMixed{.precision = GramPrecision::kMixed};

TEST(GramEigenFactorizer, MixedPrecisionStaysWithinAThousandthOfOptimal) {
  for (const double alpha : {0.4, 0.9, 1.3}) {
    const Vector<double> sigma = testing::power_law_spectrum(256, alpha);
    const RowMatrix<float> w = testing::with_spectrum<float>(1024, 256, sigma, 33);
    for (const Index r : {Index{64}, Index{128}, Index{192}}) {
      const double optimal = sigma.tail(256 - r).squaredNorm();
      const auto f = GramEigenFactorizer<float>(kMixed).factorize(w, r);
      const double ratio = error_sq(w, f) / optimal;
      EXPECT_LE(ratio, 1.001) << "α " << alpha << " rank " << r;
      EXPECT_GE(ratio, 1.0 - 1e-4) << "α " << alpha << " rank " << r;
      EXPECT_NEAR(f.relative_error * f.relative_error * sigma.squaredNorm(), optimal,
                  2e-3 * optimal)
          << "α " << alpha << " rank " << r;
    }
  }
}

TEST(GramEigenFactorizer, MixedPrecisionFallsBackToDoubleOnIllConditionedSpectra) {
  // σ_1/σ_r = 192^2.5 ≈ 5e5 > mixed_condition_limit (1e4): float cannot resolve the cut.
  const RowMatrix<float> w =
      testing::with_spectrum<float>(1024, 256, testing::power_law_spectrum(256, 2.5), 34);
  const auto mixed = GramEigenFactorizer<float>(kMixed).factorize(w, 192);
  const auto exact = GramEigenFactorizer<float>().factorize(w, 192);
  EXPECT_EQ(mixed.down, exact.down);
  EXPECT_EQ(mixed.up, exact.up);
}

}  // namespace
}  // namespace latentkv
