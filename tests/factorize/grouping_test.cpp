// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
#include "latentkv/factorize/grouping.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "../support/matrices.hpp"
#include "latentkv/factorize/exact_svd_factorizer.hpp"
#include "latentkv/factorize/randomized_svd_factorizer.hpp"

namespace latentkv {
namespace {

using ::testing::HasSubstr;

constexpr HeadLayout kSmolLm2{3, 64};  // n_kv = 3, h = 64: W is 576 x 192
constexpr HeadLayout kFourHeads{4, 16};

RowMatrix<float> projection(Index d, HeadLayout layout, std::uint64_t seed) {
  const Index k = std::min(d, layout.width());
  return testing::with_spectrum<float>(d, layout.width(), testing::power_law_spectrum(k, 0.7),
                                       seed);
}

static_assert(Grouping<JointGrouping>);
static_assert(Grouping<PerHeadGrouping>);
static_assert(Grouping<GroupedHeadsGrouping>);

TEST(Grouping, HeadsPerGroup) {
  EXPECT_EQ(JointGrouping{}.heads_per_group(8), 8);
  EXPECT_EQ(PerHeadGrouping{}.heads_per_group(8), 1);
  EXPECT_EQ(GroupedHeadsGrouping{2}.heads_per_group(8), 2);
  EXPECT_EQ(GroupedHeadsGrouping{2}.name(), "group:2");
}

TEST(Grouping, RejectsAGroupSizeThatDoesNotDivideNumKvHeads) {
  try {
    (void)GroupedHeadsGrouping{2}.heads_per_group(3);
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("group_size = 2 does not divide num_kv_heads = 3"));
  }
  EXPECT_THROW(GroupedHeadsGrouping{0}, InvalidArgument);
  const RowMatrix<float> w = projection(96, kSmolLm2, 1);
  EXPECT_THROW(
      (void)factorize_groups(BdcsvdFactorizer<float>(), GroupedHeadsGrouping{2}, w, kSmolLm2, 16),
      InvalidArgument);
}

TEST(FactorizeGroups, JointIsTheWholeMatrix) {
  const RowMatrix<float> w = projection(576, kSmolLm2, 2);
  const auto g = factorize_groups(BdcsvdFactorizer<float>(), JointGrouping{}, w, kSmolLm2, 96);
  ASSERT_EQ(g.num_groups(), 1);
  const auto f = BdcsvdFactorizer<float>().factorize(w, 96);
  EXPECT_LT((g.reconstruct() - f.reconstruct()).cwiseAbs().maxCoeff(), 1e-5);
  EXPECT_EQ(g.latent_width(), 96);
  EXPECT_NEAR(g.relative_error(), f.relative_error, 1e-9);
}

// Each KV head's column slice must come back from its own group's factors.
TEST(FactorizeGroups, EachHeadSliceIsReconstructedFromItsGroup) {
  const Index d = 80;
  const RowMatrix<float> w = projection(d, kFourHeads, 3);
  const std::vector<Index> ranks{10, 20};
  const auto g = factorize_groups(BdcsvdFactorizer<float>(), GroupedHeadsGrouping{2}, w, kFourHeads,
                                  std::span<const Index>(ranks));
  ASSERT_EQ(g.num_groups(), 2);
  EXPECT_EQ(g.ranks(), ranks);
  EXPECT_EQ(g.latent_width(), 30);
  const RowMatrix<float> full = g.reconstruct();
  for (Index head = 0; head < 4; ++head) {
    const Index group = g.group_of_head(head);
    EXPECT_EQ(group, head / 2);
    const RowMatrix<float> slice = w.middleCols(head * 16, 16);
    const RowMatrix<float> block = w.middleCols(group * 32, 32);
    // The head's reconstruction is the matching columns of its group's optimal rank-r_g factors.
    const auto own = BdcsvdFactorizer<float>().factorize(block, ranks[static_cast<size_t>(group)]);
    const RowMatrix<float> expected = own.reconstruct().middleCols((head % 2) * 16, 16);
    EXPECT_LT((g.reconstruct_head(head) - expected).cwiseAbs().maxCoeff(), 1e-5) << head;
    EXPECT_EQ(g.reconstruct_head(head), full.middleCols(head * 16, 16)) << head;
    EXPECT_LT((g.reconstruct_head(head) - slice).norm(), slice.norm()) << head;
  }
}

TEST(FactorizeGroups, PerHeadAtFullRankIsExact) {
  const RowMatrix<float> w = projection(576, kSmolLm2, 4);
  const auto g =
      factorize_groups(RandomizedSvdFactorizer<float>(), PerHeadGrouping{}, w, kSmolLm2, 64);
  ASSERT_EQ(g.num_groups(), 3);
  for (Index head = 0; head < 3; ++head) {
    const RowMatrix<float> slice = w.middleCols(head * 64, 64);
    EXPECT_LT((g.reconstruct_head(head) - slice).norm(), 1e-5 * slice.norm()) << head;
  }
  EXPECT_LT(g.relative_error(), 1e-5);
}

TEST(FactorizeGroups, FinerGroupsCostMoreLatentForTheSameError) {
  // At equal total latent width, joint >= grouped >= per-head in quality (joint sees the
  // cross-head correlation). Equal width 96: joint r = 96, per-head r = 32 each.
  const RowMatrix<float> w = projection(576, kSmolLm2, 5);
  const auto joint = factorize_groups(BdcsvdFactorizer<float>(), JointGrouping{}, w, kSmolLm2, 96);
  const auto heads =
      factorize_groups(BdcsvdFactorizer<float>(), PerHeadGrouping{}, w, kSmolLm2, 32);
  EXPECT_EQ(joint.latent_width(), heads.latent_width());
  EXPECT_LE(joint.relative_error(), heads.relative_error());
}

TEST(FactorizeGroups, RejectsShapeAndRankMismatches) {
  const RowMatrix<float> w = projection(96, kSmolLm2, 6);
  const BdcsvdFactorizer<float> f;
  try {
    (void)factorize_groups(f, JointGrouping{}, w, HeadLayout{4, 64}, 8);
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("w has 192 columns, expected 256 (num_kv_heads 4 x head_dim 64)"));
  }
  const std::vector<Index> two{8, 8};
  try {
    (void)factorize_groups(f, PerHeadGrouping{}, w, kSmolLm2, std::span<const Index>(two));
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("2 ranks given, expected 3"));
  }
  const std::vector<Index> too_big{8, 65, 8};
  try {
    (void)factorize_groups(f, PerHeadGrouping{}, w, kSmolLm2, std::span<const Index>(too_big));
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("rank of group 1 = 65, expected 1..64"));
  }
  EXPECT_THROW((void)factorize_groups(f, JointGrouping{}, w, HeadLayout{0, 64}, 8),
               InvalidArgument);
}

}  // namespace
}  // namespace latentkv
