// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/factorize/factorize_batch.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "../support/matrices.hpp"
#include "latentkv/factorize/exact_svd_factorizer.hpp"
#include "latentkv/factorize/randomized_svd_factorizer.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;

std::vector<RowMatrix<float>> model_like(Index count) {
  std::vector<RowMatrix<float>> ws;
  for (Index i = 0; i < count; ++i) {
    ws.push_back(testing::with_spectrum<float>(
        96, 48, testing::power_law_spectrum(48, 0.4 + 0.1 * static_cast<double>(i % 5)),
        static_cast<std::uint64_t>(100 + i)));
  }
  return ws;
}

TEST(FactorizeBatch, EqualsSequentialFactorizationForAnyThreadCount) {
  const auto ws = model_like(9);
  std::vector<MatrixCRef<float>> views(ws.begin(), ws.end());
  std::vector<Index> ranks;
  for (Index i = 0; i < 9; ++i) ranks.push_back(4 + 4 * (i % 4));
  const RandomizedSvdFactorizer<float> f;
  for (const unsigned threads : {1u, 2u, 5u, 0u}) {
    const auto got = factorize_batch(f, std::span<const MatrixCRef<float>>(views),
                                     std::span<const Index>(ranks), threads);
    ASSERT_EQ(got.size(), 9u);
    for (std::size_t i = 0; i < 9; ++i) {
      const auto want = f.factorize(ws[i], ranks[i]);
      EXPECT_EQ(got[i].down, want.down) << i << " threads " << threads;
      EXPECT_EQ(got[i].up, want.up) << i << " threads " << threads;
    }
  }
}

TEST(FactorizeBatch, NamesTheMatrixThatFailed) {
  auto ws = model_like(6);
  ws[4](2, 2) = std::numeric_limits<float>::quiet_NaN();
  std::vector<MatrixCRef<float>> views(ws.begin(), ws.end());
  const std::vector<Index> ranks(6, 8);
  try {
    (void)factorize_batch(BdcsvdFactorizer<float>(), std::span<const MatrixCRef<float>>(views),
                          std::span<const Index>(ranks), 2);
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("matrix 4: "));
    EXPECT_THAT(e.what(), HasSubstr("non-finite entry"));
  }
  const std::vector<Index> short_ranks(5, 8);
  EXPECT_THROW(
      (void)factorize_batch(BdcsvdFactorizer<float>(), std::span<const MatrixCRef<float>>(views),
                            std::span<const Index>(short_ranks)),
      InvalidArgument);
}

}  // namespace
}  // namespace latentkv
