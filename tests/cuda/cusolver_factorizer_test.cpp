// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The GPU factorizer against the CPU reference on seeded inputs (ggml's test-backend-ops habit).
#include "latentkv/cuda/cusolver_factorizer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/SVD>

#include "../support/matrices.hpp"
#include "latentkv/factorize/exact_svd_factorizer.hpp"

namespace latentkv::cuda {
namespace {

using ::testing::HasSubstr;

#define LATENTKV_REQUIRE_DEVICE()                                      \
  do {                                                                 \
    if (!device_available()) GTEST_SKIP() << "no CUDA device present"; \
  } while (0)

template <class T>
void expect_matches_cpu(Index rows, Index cols, double alpha, Index rank, double tol) {
  const Index k = std::min(rows, cols);
  const Vector<double> sigma = testing::power_law_spectrum(k, alpha);
  const RowMatrix<T> w = testing::with_spectrum<T>(rows, cols, sigma, 17);
  for (const auto split : {SigmaSplit::kLeft, SigmaSplit::kRight, SigmaSplit::kSqrt}) {
    const auto gpu = CusolverFactorizer<T>({.split = split}).factorize(w, rank);
    const auto cpu = BdcsvdFactorizer<T>({.split = split}).factorize(w, rank);
    ASSERT_EQ(gpu.down.rows(), rows);
    ASSERT_EQ(gpu.down.cols(), rank);
    ASSERT_EQ(gpu.up.cols(), cols);
    for (Index i = 0; i < rank; ++i) {
      EXPECT_NEAR(gpu.singular_values(i), sigma(i), tol * sigma(0)) << "σ_" << i;
    }
    const double opt = sigma.tail(k - rank).squaredNorm();
    const double err = (w.template cast<double>() -
                        gpu.down.template cast<double>() * gpu.up.template cast<double>())
                           .squaredNorm();
    EXPECT_NEAR(err, opt, tol * sigma.squaredNorm()) << to_string(split);
    EXPECT_LT((gpu.reconstruct() - cpu.reconstruct()).cwiseAbs().maxCoeff(), 10 * tol)
        << to_string(split);
    EXPECT_NEAR(gpu.relative_error, cpu.relative_error, tol) << to_string(split);
  }
}

TEST(CusolverFactorizer, MatchesEigenOnTheSmolLm2KvShape) {
  LATENTKV_REQUIRE_DEVICE();
  expect_matches_cpu<float>(576, 192, 0.6, 96, 1e-4);
  expect_matches_cpu<double>(576, 192, 0.6, 96, 1e-10);
}

TEST(CusolverFactorizer, MatchesEigenOnWideAndLlamaShapes) {
  LATENTKV_REQUIRE_DEVICE();
  expect_matches_cpu<float>(128, 300, 0.9, 40, 1e-4);
  expect_matches_cpu<float>(4096, 1024, 0.5, 512, 1e-4);
}

// Argument checks run on the host before any CUDA call: these hold with or without a GPU.
TEST(CusolverFactorizer, RejectsBadInputBeforeTouchingTheDevice) {
  const RowMatrix<float> w = RowMatrix<float>::Ones(8, 6);
  try {
    (void)CusolverFactorizer<float>().factorize(w, 7);
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("CusolverFactorizer::factorize: rank = 7, expected 1..6"));
  }
  RowMatrix<float> bad = w;
  bad(1, 1) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW((void)CusolverFactorizer<float>().factorize(bad, 2), InvalidArgument);
}

static_assert(Factorizer<CusolverFactorizer<double>>);

}  // namespace
}  // namespace latentkv::cuda
