// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// quant/hadamard.hpp: the blocks of a width, the fast transform against the Sylvester matrix,
// orthogonality of R = D·H_r for power-of-two and blocked widths, and rotate_latents() leaving
// the latent cache's logits unchanged (fp32, joint and per-head, uneven ranks) while changing the
// factors; rejected inputs.
#include "latentkv/quant/hadamard.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "../support/latent_factors.hpp"
#include "../support/tiny_llama.hpp"
#include "latentkv/cache/latent_kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"

namespace latentkv {
namespace {

TEST(Hadamard, BlocksAreTheBinaryDigitsLargestFirst) {
  EXPECT_EQ(hadamard_blocks(96), (std::vector<Index>{64, 32}));
  EXPECT_EQ(hadamard_blocks(75), (std::vector<Index>{64, 8, 2, 1}));
  EXPECT_EQ(hadamard_blocks(192), (std::vector<Index>{128, 64}));
  EXPECT_EQ(hadamard_blocks(64), (std::vector<Index>{64}));
  EXPECT_TRUE(hadamard_blocks(0).empty());
}

TEST(Hadamard, FastTransformEqualsTheSylvesterMatrix) {
  // H_8 / √8 by the recursion, applied to e_i: row i of H.
  RowMatrix<double> h = RowMatrix<double>::Ones(1, 1);
  for (int k = 0; k < 3; ++k) {
    RowMatrix<double> next(2 * h.rows(), 2 * h.cols());
    next << h, h, h, -h;
    h = next;
  }
  h /= std::sqrt(8.0);
  for (Index i = 0; i < 8; ++i) {
    std::vector<float> x(8, 0.0f);
    x[static_cast<std::size_t>(i)] = 1.0f;
    hadamard_transform(x.data(), 8);
    for (Index j = 0; j < 8; ++j) {
      EXPECT_NEAR(x[static_cast<std::size_t>(j)], h(i, j), 1e-7) << i << ", " << j;
    }
  }
}

TEST(Hadamard, RotationIsOrthogonalAndBlockDiagonal) {
  for (const Index width : {1, 2, 3, 8, 64, 75, 96, 192}) {
    const RowMatrix<float> r = hadamard_rotation(width);
    const RowMatrix<float> eye = RowMatrix<float>::Identity(width, width);
    EXPECT_LT((r * r.transpose() - eye).cwiseAbs().maxCoeff(), 1e-5f) << width;
    EXPECT_LT((r.transpose() * r - eye).cwiseAbs().maxCoeff(), 1e-5f) << width;
  }
  // 96 = 64 + 32: nothing mixes across the blocks; inside a block every entry is ±1/√n.
  const RowMatrix<float> r = hadamard_rotation(96);
  EXPECT_EQ(r.topRightCorner(64, 32).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_EQ(r.bottomLeftCorner(32, 64).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_NEAR(r.topLeftCorner(64, 64).cwiseAbs().minCoeff(), 1.0 / 8.0, 1e-7);
  EXPECT_NEAR(r.bottomRightCorner(32, 32).cwiseAbs().maxCoeff(), 1.0 / std::sqrt(32.0), 1e-7);
  // The signs differ from a plain Hadamard matrix (some are flipped), and depend on the seed.
  const std::vector<float> signs = hadamard_signs(96);
  EXPECT_NE(std::count(signs.begin(), signs.end(), -1.0f), 0);
  EXPECT_NE(hadamard_signs(96, 1), signs);
}

TEST(Hadamard, RotateRowsEqualsTheDenseProduct) {
  std::mt19937_64 engine(3);
  const RowMatrix<float> x = testing::random_matrix(7, 75, 1.0, engine);
  RowMatrix<float> fast = x;
  rotate_rows(fast, hadamard_signs(75));
  const RowMatrix<float> dense = x * hadamard_rotation(75);
  EXPECT_LT((fast - dense).cwiseAbs().maxCoeff(), 1e-5f);
}

TEST(Hadamard, RotatedFactorsLeaveTheLatentCacheOutputsUnchanged) {
  const LlamaModel model(testing::random_llama_weights(testing::tiny_llama_config(), 11));
  const std::vector<std::int32_t> tokens = testing::random_tokens(45, 61, 5);
  const ModelConfig& c = model.config();
  RankPlan uneven = testing::uniform_plan(c, PerHeadGrouping{}, 3, 5);
  uneven.layers[0].k = {2, 7};
  uneven.layers[1].v = {8, 6};
  const std::vector<CompressedModel> models = {
      testing::latent_factors(model.weights(), JointGrouping{}, 16, 16),
      testing::latent_factors(model.weights(), JointGrouping{}, 12, 9),
      testing::latent_factors(model.weights(), PerHeadGrouping{}, uneven)};
  for (const CompressedModel& plain : models) {
    const CompressedModel rotated = rotate_latents(plain);
    const LatentKeyGroup& k0 = plain.layers[0].k[0];
    const LatentKeyGroup& k1 = rotated.layers[0].k[0];
    EXPECT_GT((k0.down - k1.down).cwiseAbs().maxCoeff(), 1e-3f);  // the factors did change
    EXPECT_LT((k0.down * k0.up - k1.down * k1.up).cwiseAbs().maxCoeff(), 1e-4f);
    const LatentValueGroup& v0 = plain.layers[1].v[0];
    const LatentValueGroup& v1 = rotated.layers[1].v[0];
    EXPECT_LT((v0.down * v0.out - v1.down * v1.out).cwiseAbs().maxCoeff(), 1e-4f);
    LatentKvCache<float> a(model.weights(), plain);
    LatentKvCache<float> b(model.weights(), rotated);
    const RowMatrix<float> want = model.forward(tokens, a);
    const RowMatrix<float> got = model.forward(tokens, b);
    EXPECT_LT((got - want).cwiseAbs().maxCoeff() / want.cwiseAbs().maxCoeff(), 1e-5f)
        << plain.grouping;
    EXPECT_EQ(rotated.plan.layers[0].k, plain.plan.layers[0].k);
  }
}

TEST(Hadamard, RejectsBadInput) {
  EXPECT_THROW((void)hadamard_blocks(-1), InvalidArgument);
  RowMatrix<float> x = RowMatrix<float>::Ones(2, 8);
  try {
    rotate_rows(x, hadamard_signs(4));
    ADD_FAILURE() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("signs has 4 entries, expected 8"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace latentkv
