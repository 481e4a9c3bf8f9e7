// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Conformance suite run over every Factorizer (Eigen's svd_common.h habit): Eckart–Young tail
// equality, agreement with JacobiSVD<double>, orthonormality of the promised side, bad input.
#include "latentkv/factorize/factorizer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/SVD>
#include <limits>
#include <string>

#include "../support/matrices.hpp"
#include "latentkv/factorize/exact_svd_factorizer.hpp"
#include "latentkv/factorize/gram_eigen_factorizer.hpp"
#include "latentkv/factorize/randomized_svd_factorizer.hpp"
#include "latentkv/factorize/whitened_factorizer.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;

// Per-policy construction and tolerances. `slack`: allowed ratio of achieved to optimal squared
// tail error (1 for exact policies; the 1% for randomized on decaying spectra).
template <class F>
struct Traits;

template <class T>
struct ScalarTol {
  static constexpr double kTol = std::is_same_v<T, float> ? 2e-4 : 1e-9;
};

template <class T>
struct Traits<JacobiSvdFactorizer<T>> : ScalarTol<T> {
  static JacobiSvdFactorizer<T> make(Index, SigmaSplit split) {
    return JacobiSvdFactorizer<T>({split});
  }
  static constexpr double kSlack = 1.0;
};
template <class T>
struct Traits<BdcsvdFactorizer<T>> : ScalarTol<T> {
  // jacobi_below = 4 so the conformance matrices really go through divide and conquer.
  static BdcsvdFactorizer<T> make(Index, SigmaSplit split) {
    return BdcsvdFactorizer<T>({split, 4});
  }
  static constexpr double kSlack = 1.0;
};
template <class T>
struct Traits<GramEigenFactorizer<T>> : ScalarTol<T> {
  static GramEigenFactorizer<T> make(Index, SigmaSplit split) {
    return GramEigenFactorizer<T>({split});
  }
  static constexpr double kSlack = 1.0;
};
// GramEigenFactorizer in mixed precision (float eigensolve + double refinement): a distinct type
// so the typed suite can hold it.
struct MixedGramEigenFactorizer : GramEigenFactorizer<float> {
  explicit MixedGramEigenFactorizer(SigmaSplit split)
      : GramEigenFactorizer<float>({.split = split, .precision = GramPrecision::kMixed}) {}
};
template <>
struct Traits<MixedGramEigenFactorizer> : ScalarTol<float> {
  static MixedGramEigenFactorizer make(Index, SigmaSplit split) {
    return MixedGramEigenFactorizer(split);
  }
  static constexpr double kSlack = 1.001;
};
template <class T>
struct Traits<RandomizedSvdFactorizer<T>> : ScalarTol<T> {
  static RandomizedSvdFactorizer<T> make(Index, SigmaSplit split) {
    typename RandomizedSvdFactorizer<T>::Options o;
    o.split = split;
    return RandomizedSvdFactorizer<T>(o);
  }
  static constexpr double kSlack = 1.01;
};
template <class Inner>
struct Traits<WhitenedFactorizer<Inner>> : ScalarTol<typename Inner::Scalar> {
  // XᵀX = I: whitening is the identity, so the whitened policy must behave like its inner one.
  static WhitenedFactorizer<Inner> make(Index rows, SigmaSplit split) {
    return WhitenedFactorizer<Inner>(RowMatrix<double>::Identity(rows, rows),
                                     Traits<Inner>::make(rows, split));
  }
  static constexpr double kSlack = Traits<Inner>::kSlack;
};

template <class F>
class FactorizerConformance : public ::testing::Test {
 protected:
  using T = typename F::Scalar;
  static constexpr double kTol = Traits<F>::kTol;
  static constexpr double kSlack = Traits<F>::kSlack;
  static F make(Index rows, SigmaSplit split = SigmaSplit::kLeft) {
    return Traits<F>::make(rows, split);
  }
  // A 96 x 64 matrix with a power-law spectrum (α = 1.5) and a 64 x 96 wide one.
  static RowMatrix<T> tall() {
    return testing::with_spectrum<T>(96, 64, testing::power_law_spectrum(64, 1.5), 11);
  }
  static RowMatrix<T> wide() {
    return testing::with_spectrum<T>(64, 96, testing::power_law_spectrum(64, 1.5), 12);
  }
  static Vector<double> reference_sigma(const RowMatrix<T>& w) {
    const ColMatrix<double> wd = w.template cast<double>();
    return Eigen::JacobiSVD<ColMatrix<double>>(wd).singularValues();
  }
  static double explicit_error_sq(const RowMatrix<T>& w, const LowRankFactors<T>& f) {
    return (w.template cast<double>() -
            f.down.template cast<double>() * f.up.template cast<double>())
        .squaredNorm();
  }
};

using Policies =
    ::testing::Types<JacobiSvdFactorizer<float>, JacobiSvdFactorizer<double>,
                     BdcsvdFactorizer<float>, BdcsvdFactorizer<double>, GramEigenFactorizer<float>,
                     GramEigenFactorizer<double>, RandomizedSvdFactorizer<float>,
                     RandomizedSvdFactorizer<double>, WhitenedFactorizer<BdcsvdFactorizer<double>>,
                     WhitenedFactorizer<RandomizedSvdFactorizer<float>>>;
TYPED_TEST_SUITE(FactorizerConformance, Policies);

TYPED_TEST(FactorizerConformance, SatisfiesTheConcept) {
  static_assert(Factorizer<TypeParam>);
  SUCCEED();
}

TYPED_TEST(FactorizerConformance, ReturnsShapesOfTheRequestedRank) {
  for (const auto& w : {this->tall(), this->wide()}) {
    for (const Index r : {Index{1}, Index{7}, Index{64}}) {
      const auto f = this->make(w.rows()).factorize(w, r);
      EXPECT_EQ(f.down.rows(), w.rows());
      EXPECT_EQ(f.down.cols(), r);
      EXPECT_EQ(f.up.rows(), r);
      EXPECT_EQ(f.up.cols(), w.cols());
      ASSERT_EQ(f.singular_values.size(), r);
      for (Index i = 1; i < r; ++i) EXPECT_GE(f.singular_values(i - 1), f.singular_values(i));
      EXPECT_GE(f.singular_values(r - 1), 0);
    }
  }
}

TYPED_TEST(FactorizerConformance, SquaredErrorEqualsSingularValueTail) {
  for (const auto& w : {this->tall(), this->wide()}) {
    const Vector<double> sigma = this->reference_sigma(w);
    const double total = sigma.squaredNorm();
    for (const Index r : {Index{1}, Index{5}, Index{16}, Index{40}, Index{63}}) {
      const auto f = this->make(w.rows()).factorize(w, r);
      const double tail = sigma.tail(sigma.size() - r).squaredNorm();
      const double err = this->explicit_error_sq(w, f);
      EXPECT_GE(err, tail - this->kTol * total) << "rank " << r << ": beats Eckart–Young?";
      EXPECT_LE(err, TestFixture::kSlack * tail + this->kTol * total) << "rank " << r;
    }
  }
}

TYPED_TEST(FactorizerConformance, ReportsTheMeasuredErrorAndEnergy) {
  const auto w = this->tall();
  const double total = w.template cast<double>().squaredNorm();
  for (const Index r : {Index{3}, Index{20}, Index{64}}) {
    const auto f = this->make(w.rows()).factorize(w, r);
    const double err = std::sqrt(this->explicit_error_sq(w, f) / total);
    EXPECT_NEAR(f.relative_error, err, 10 * this->kTol + 1e-3 * err) << "rank " << r;
    EXPECT_NEAR(f.retained_energy, 1.0 - err * err, 10 * this->kTol) << "rank " << r;
    EXPECT_NEAR(f.source_norm, std::sqrt(total), 1e-5 * std::sqrt(total));
  }
}

TYPED_TEST(FactorizerConformance, SingularValuesAgreeWithJacobiDouble) {
  const auto w = this->wide();
  const Vector<double> sigma = this->reference_sigma(w);
  const Index r = 12;
  const auto f = this->make(w.rows()).factorize(w, r);
  for (Index i = 0; i < r; ++i) {
    EXPECT_NEAR(f.singular_values(i), sigma(i), 1e-3 * sigma(i) + this->kTol) << "σ_" << i;
  }
}

TYPED_TEST(FactorizerConformance, PromisedSideIsOrthonormal) {
  const auto w = this->tall();
  const Index r = 10;
  using T = typename TypeParam::Scalar;
  const double tol = 50 * this->kTol;
  {
    const auto f = this->make(w.rows(), SigmaSplit::kLeft).factorize(w, r);
    const RowMatrix<T> bbt = f.up * f.up.transpose();
    EXPECT_LT((bbt - RowMatrix<T>::Identity(r, r)).cwiseAbs().maxCoeff(), tol) << "B·Bᵀ = I";
    EXPECT_EQ(f.split, SigmaSplit::kLeft);
  }
  {
    const auto f = this->make(w.rows(), SigmaSplit::kRight).factorize(w, r);
    const RowMatrix<T> ata = f.down.transpose() * f.down;
    EXPECT_LT((ata - RowMatrix<T>::Identity(r, r)).cwiseAbs().maxCoeff(), tol) << "Aᵀ·A = I";
  }
  {
    const auto f = this->make(w.rows(), SigmaSplit::kSqrt).factorize(w, r);
    const RowMatrix<T> ata = f.down.transpose() * f.down;
    const RowMatrix<T> bbt = f.up * f.up.transpose();
    const RowMatrix<T> sigma = f.singular_values.asDiagonal();
    EXPECT_LT((ata - sigma).cwiseAbs().maxCoeff(), tol) << "Aᵀ·A = Σ";
    EXPECT_LT((bbt - sigma).cwiseAbs().maxCoeff(), tol) << "B·Bᵀ = Σ";
  }
}

TYPED_TEST(FactorizerConformance, EverySplitGivesTheSameProduct) {
  const auto w = this->wide();
  using T = typename TypeParam::Scalar;
  const RowMatrix<T> left = this->make(w.rows(), SigmaSplit::kLeft).factorize(w, 9).reconstruct();
  for (const auto split : {SigmaSplit::kRight, SigmaSplit::kSqrt}) {
    const RowMatrix<T> other = this->make(w.rows(), split).factorize(w, 9).reconstruct();
    EXPECT_LT((other - left).cwiseAbs().maxCoeff(), 50 * this->kTol) << to_string(split);
  }
}

TYPED_TEST(FactorizerConformance, RecoversALowRankMatrixExactly) {
  using T = typename TypeParam::Scalar;
  const RowMatrix<T> w = testing::with_spectrum<T>(100, 70, testing::geometric_spectrum(7, 0.7), 5);
  const auto f = this->make(w.rows()).factorize(w, 7);
  EXPECT_LT(std::sqrt(this->explicit_error_sq(w, f) / w.template cast<double>().squaredNorm()),
            10 * this->kTol);
}

TYPED_TEST(FactorizerConformance, FullRankIsExact) {
  const auto w = this->tall();
  const auto f = this->make(w.rows()).factorize(w, 64);
  EXPECT_LT(std::sqrt(this->explicit_error_sq(w, f) / w.template cast<double>().squaredNorm()),
            10 * this->kTol);
  EXPECT_NEAR(f.retained_energy, 1.0, 10 * this->kTol);
}

TYPED_TEST(FactorizerConformance, IsDeterministic) {
  const auto w = this->tall();
  const auto a = this->make(w.rows()).factorize(w, 11);
  const auto b = this->make(w.rows()).factorize(w, 11);
  EXPECT_EQ(a.down, b.down);
  EXPECT_EQ(a.up, b.up);
}

TYPED_TEST(FactorizerConformance, AcceptsAStridedBlockWithoutChangingTheResult) {
  using T = typename TypeParam::Scalar;
  const RowMatrix<T> big =
      testing::with_spectrum<T>(96, 160, testing::power_law_spectrum(96, 1.5), 3);
  const RowMatrix<T> copy = big.middleCols(32, 64);
  const auto f = this->make(96).factorize(big.middleCols(32, 64), 8);
  const auto g = this->make(96).factorize(copy, 8);
  EXPECT_LT((f.reconstruct() - g.reconstruct()).cwiseAbs().maxCoeff(), 10 * this->kTol);
}

TYPED_TEST(FactorizerConformance, RejectsRankZero) {
  const auto w = this->tall();
  try {
    (void)this->make(w.rows()).factorize(w, 0);
    FAIL() << "rank 0 accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("rank = 0, expected 1..64"));
  }
}

TYPED_TEST(FactorizerConformance, RejectsRankAboveMinDim) {
  const auto w = this->wide();
  try {
    (void)this->make(w.rows()).factorize(w, 65);
    FAIL() << "rank 65 accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("rank = 65, expected 1..64 (min(rows, cols)"));
  }
  EXPECT_THROW((void)this->make(w.rows()).factorize(w, -3), InvalidArgument);
}

TYPED_TEST(FactorizerConformance, RejectsAnEmptyMatrix) {
  using T = typename TypeParam::Scalar;
  const RowMatrix<T> w(0, 5);
  try {
    (void)this->make(4).factorize(w, 1);
    FAIL() << "empty matrix accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("w is empty (0 x 5)"));
  }
}

TYPED_TEST(FactorizerConformance, RejectsNonFiniteEntries) {
  using T = typename TypeParam::Scalar;
  for (const T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                      -std::numeric_limits<T>::infinity()}) {
    RowMatrix<T> w = this->tall();
    w(17, 3) = bad;
    try {
      (void)this->make(w.rows()).factorize(w, 4);
      FAIL() << "non-finite entry accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_THAT(e.what(), HasSubstr("w has a non-finite entry"));
      EXPECT_THAT(e.what(), HasSubstr("at (17, 3)"));
    }
  }
}

}  // namespace
}  // namespace latentkv
