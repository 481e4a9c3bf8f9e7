// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// cache/projected_kv_cache.hpp (route 2) on the tiny random model (tests/support/tiny_llama.hpp),
// with projections calibrated on its own activations (project/pca_calibration.hpp):
//   - at full rank LlamaModel::forward through the projected cache reproduces DenseKvCache's
//     logits, joint and per-head, fp32 and fp16, for any key and value means;
//   - the key mean drops out of the softmax at every rank (shifting it changes no logit), the
//     value mean does not (it is the output bias);
//   - low rank differs from dense, and calibrated bases beat a random basis at the same rank;
//   - chunked prefill and decode steps equal one pass; reset; sizes; construction and call errors;
//   - quantized latents (QuantizedProjectedKvCache): close to the fp32 cache by their precision,
//     the Hadamard rotation leaving the math unchanged (bits 16 = fp16 codes, rotated or not,
//     match the fp32 cache to fp16 precision), chunking exact, bytes counted, bad codecs named.
#include "latentkv/cache/projected_kv_cache.hpp"

#include <gtest/gtest.h>

#include <Eigen/QR>
#include <cstdint>
#include <cstdio>
#include <random>
#include <span>
#include <type_traits>
#include <vector>

#include "../support/expect_invalid.hpp"
#include "../support/tiny_llama.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"
#include "latentkv/project/pca_calibration.hpp"

namespace latentkv {
namespace {

using testing::expect_invalid;

double projected_relative_error(const RowMatrix<float>& got, const RowMatrix<float>& want) {
  return static_cast<double>((got - want).cwiseAbs().maxCoeff()) /
         static_cast<double>(want.cwiseAbs().maxCoeff());
}

class ProjectedKvCacheTest : public ::testing::Test {
 protected:
  ProjectedKvCacheTest()
      : model_(testing::random_llama_weights(testing::tiny_llama_config(), 11)),
        tokens_(testing::random_tokens(45, 61, 5)),
        stats_(collect_projection_stats(model_, testing::random_tokens(600, 61, 9),
                                        {.ctx = 100, .skip_first = 0})) {}

  [[nodiscard]] const LlamaWeights& weights() const { return model_.weights(); }

  [[nodiscard]] RowMatrix<float> dense_logits() const {
    DenseKvCache cache(weights());
    return model_.forward(tokens_, cache);
  }

  template <class S = float>
  [[nodiscard]] RowMatrix<float> logits(const ProjectedModel& projections) const {
    ProjectedKvCache<S> cache(weights(), projections);
    return model_.forward(tokens_, cache);
  }

  /// Every group at ranks (rk, rv).
  [[nodiscard]] static ProjectedModel at_ranks(const ProjectedModel& full, Index rk, Index rv) {
    RankPlan plan = full.plan();
    for (LayerRanks& layer : plan.layers) {
      for (Index& r : layer.k) r = rk;
      for (Index& r : layer.v) r = rv;
    }
    return full.truncated(plan);
  }

  LlamaModel model_;
  std::vector<std::int32_t> tokens_;  // 45 tokens
  ProjectionStats stats_;             // 600 calibration tokens in chunks of 100
};

TEST_F(ProjectedKvCacheTest, ModelsTheKvCacheConcept) {
  static_assert(KvCache<ProjectedKvCache<float>>);
  static_assert(KvCache<ProjectedKvCache<std::uint16_t>>);
  // It keeps a pointer to the weights only: a temporary ProjectedModel is fine, weights are not.
  static_assert(std::is_constructible_v<ProjectedKvCache<>, const LlamaWeights&, ProjectedModel>);
  static_assert(!std::is_constructible_v<ProjectedKvCache<>, LlamaWeights, const ProjectedModel&>);
}

TEST_F(ProjectedKvCacheTest, FullRankReproducesDenseLogitsForAnyMeans) {
  const RowMatrix<float> dense = dense_logits();
  for (const Index s : {Index{2}, Index{1}}) {  // joint, per head
    ProjectedModel full = stats_.fit(s);
    ASSERT_EQ(full.layers[0].k[0].rank(), s * 8);
    EXPECT_LT(projected_relative_error(logits(full), dense), 1e-5) << "s = " << s;
    const double fp16 = projected_relative_error(logits<std::uint16_t>(full), dense);
    EXPECT_LT(fp16, 5e-3) << "s = " << s;
    EXPECT_GT(fp16, 1e-7) << "s = " << s;  // rounded, so not identical
    // Any means: at full rank the basis spans everything, so the output cannot change.
    std::mt19937_64 engine(3);
    for (ProjectedLayer& layer : full.layers) {
      for (ProjectedBasis& b : layer.k) b.mean += testing::random_matrix(s * 8, 1, 5.0, engine);
      for (ProjectedBasis& b : layer.v) b.mean += testing::random_matrix(s * 8, 1, 5.0, engine);
    }
    EXPECT_LT(projected_relative_error(logits(full), dense), 1e-5) << "s = " << s;
  }
}

TEST_F(ProjectedKvCacheTest, TheKeyMeanDropsOutOfTheSoftmaxAndTheValueMeanDoesNot) {
  // q̃·(k − μ)·P·… = q̃·k·P − q̃·μ·P: the second term is the same for every key of a query, and
  // softmax is invariant to it, at any rank.
  const ProjectedModel base = at_ranks(stats_.fit(2), 5, 6);
  const RowMatrix<float> want = logits(base);
  ProjectedModel shifted_k = base;
  ProjectedModel shifted_v = base;
  std::mt19937_64 engine(4);
  for (std::size_t l = 0; l < base.layers.size(); ++l) {
    shifted_k.layers[l].k[0].mean += testing::random_matrix(16, 1, 20.0, engine);
    shifted_v.layers[l].v[0].mean += testing::random_matrix(16, 1, 1.0, engine);
  }
  EXPECT_LT(projected_relative_error(logits(shifted_k), want), 1e-5);
  EXPECT_GT(projected_relative_error(logits(shifted_v), want), 1e-3);
}

TEST_F(ProjectedKvCacheTest, LowRankDiffersAndCalibratedBasesBeatARandomOne) {
  // Root-mean-square logit error: the max error of one logit is too noisy to compare bases.
  const RowMatrix<float> dense = dense_logits();
  const auto rms = [&](const RowMatrix<float>& got) {
    return static_cast<double>((got - dense).norm() / dense.norm());
  };
  for (const Index s : {Index{2}, Index{1}}) {
    const ProjectedModel full = stats_.fit(s);
    const Index r = s * 3;
    const ProjectedModel pca = at_ranks(full, r, r);
    const double pca_error = rms(logits(pca));
    EXPECT_GT(pca_error, 1e-3) << "s = " << s;
    // The same ranks on random orthonormal bases (QR of a Gaussian), same means. The tiny model's
    // random weights make its keys and values nearly isotropic, so the margin is modest here
    // (measured 0.77 vs 0.84 and 0.79 vs 0.85);
    // on SmolLM2 it is the quality table's (docs/quality/).
    ProjectedModel random = pca;
    std::mt19937_64 engine(8);
    for (ProjectedLayer& layer : random.layers) {
      for (auto* side : {&layer.k, &layer.v}) {
        for (ProjectedBasis& b : *side) {
          const RowMatrix<float> g = testing::random_matrix(s * 8, s * 8, 1.0, engine);
          const RowMatrix<float> q = Eigen::HouseholderQR<RowMatrix<float>>(g).householderQ();
          b.basis = q.leftCols(r);
        }
      }
    }
    const double random_error = rms(logits(random));
    std::printf(
        "[ measured ] s = %ld, rank %ld of %ld: relative RMS logit error PCA %.4f, random "
        "basis %.4f\n",
        static_cast<long>(s), static_cast<long>(r), static_cast<long>(s * 8), pca_error,
        random_error);
    EXPECT_GT(random_error, pca_error) << "s = " << s;
  }
}

TEST_F(ProjectedKvCacheTest, ChunksAndDecodeStepsEqualOnePass) {
  const ProjectedModel pca = at_ranks(stats_.fit(1), 5, 4);
  const RowMatrix<float> want = logits(pca);
  ProjectedKvCache<float> cache(weights(), pca);
  RowMatrix<float> got(want.rows(), want.cols());
  const std::span<const std::int32_t> all(tokens_);
  got.topRows(20) = model_.forward(all.first(20), cache);
  for (Index t = 20; t < 45; ++t) {
    got.row(t) = model_.forward(all.subspan(static_cast<std::size_t>(t), 1), cache).row(0);
  }
  EXPECT_LT(projected_relative_error(got, want), 1e-5);
  EXPECT_EQ(cache.length(1), 45);
  EXPECT_EQ(cache.latent_k(1).rows(), 45);
  EXPECT_EQ(cache.latent_k(1).cols(), 2 * 5);  // two per-head groups
  EXPECT_EQ(cache.latent_v(0).cols(), 2 * 4);
  cache.reset();
  EXPECT_EQ(cache.length(0), 0);
  EXPECT_LT(projected_relative_error(model_.forward(tokens_, cache), want), 1e-5);
}

TEST_F(ProjectedKvCacheTest, CountsItsBytes) {
  const ProjectedModel pca = at_ranks(stats_.fit(2), 5, 3);
  const ProjectedKvCache<float> f32(weights(), pca);
  const ProjectedKvCache<std::uint16_t> f16(weights(), pca);
  EXPECT_EQ(f32.numbers_per_token(), 2 * (5 + 3));
  EXPECT_EQ(f32.bytes_per_token(), 2 * (5 + 3) * 4);
  EXPECT_EQ(f16.bytes_per_token(), 2 * (5 + 3) * 2);
}

LatentQuantConfig quant(int bits, bool rotate) {
  LatentQuantConfig q;
  q.key.bits = bits;
  q.value.bits = bits;
  q.key.group_size = 8;
  q.value.group_size = 8;
  q.rotate = rotate;
  return q;
}

TEST_F(ProjectedKvCacheTest, QuantizedLatentsStayCloseToTheFloatCache) {
  const ProjectedModel pca = at_ranks(stats_.fit(2), 6, 5);  // widths that are no power of two
  const RowMatrix<float> want = logits(pca);
  const auto run = [&](const LatentQuantConfig& q) {
    QuantizedProjectedKvCache cache(weights(), pca, q);
    return model_.forward(tokens_, cache);
  };
  const double fp16 = projected_relative_error(run(quant(16, false)), want);
  const double fp16_rotated = projected_relative_error(run(quant(16, true)), want);
  const double int8 = projected_relative_error(run(quant(8, true)), want);
  const double int4 = projected_relative_error(run(quant(4, true)), want);
  const double int4_plain = projected_relative_error(run(quant(4, false)), want);
  std::printf(
      "max |logit error| / max |logit| against fp32 latents: fp16 %.2e, fp16 rotated %.2e, int8 "
      "%.2e, int4 %.2e, int4 unrotated %.2e\n",
      fp16, fp16_rotated, int8, int4, int4_plain);
  EXPECT_LT(fp16, 2e-3);
  EXPECT_LT(fp16_rotated, 2e-3);  // the rotation is exact up to rounding
  EXPECT_LT(int8, 2e-2);
  EXPECT_GT(int4, int8);
  EXPECT_LT(int4, 0.2);
  EXPECT_GT(int4_plain, 0.0);
}

TEST_F(ProjectedKvCacheTest, QuantizedChunksEqualOnePassAndResetForgets) {
  const ProjectedModel pca = at_ranks(stats_.fit(1), 5, 4);
  QuantizedProjectedKvCache cache(weights(), pca, quant(4, true));
  const RowMatrix<float> want = model_.forward(tokens_, cache);
  cache.reset();
  EXPECT_EQ(cache.length(0), 0);
  const std::span<const std::int32_t> all(tokens_);
  RowMatrix<float> got(want.rows(), want.cols());
  got.topRows(20) = model_.forward(all.first(20), cache);
  for (Index t = 20; t < std::ssize(tokens_); ++t) {
    got.row(t) = model_.forward(all.subspan(static_cast<std::size_t>(t), 1), cache).row(0);
  }
  // Per-token codes depend on their own row only: chunking changes nothing.
  EXPECT_LT(projected_relative_error(got, want), 1e-5);
  // Bytes: every group's codes, scales and zeros (per-head: 2 groups of 5 and of 4 per layer).
  const double per_layer = 2 * (latent_bytes_per_token(5, quant(4, true).key, 100) +
                                latent_bytes_per_token(4, quant(4, true).value, 100));
  EXPECT_DOUBLE_EQ(cache.bytes_per_token_at(100), 2 * per_layer);
  EXPECT_EQ(cache.numbers_per_token(), 2 * 2 * (5 + 4));
}

TEST_F(ProjectedKvCacheTest, RejectsBadInput) {
  const ProjectedModel full = stats_.fit(2);
  // Projections of another model (n_kv = 1).
  ModelConfig other = testing::tiny_llama_config();
  other.num_kv_heads = 1;
  const LlamaModel other_model(testing::random_llama_weights(other, 2));
  expect_invalid([&] { ProjectedKvCache<float> cache(other_model.weights(), full); },
                 "projections of another model");
  // A rank above the basis (s·h = 16).
  RankPlan plan = full.plan();
  plan.layers[1].v[0] = 17;
  expect_invalid([&] { (void)full.truncated(plan); }, "layer 1 V group 0: rank 17, expected 1..16");
  // A broken basis.
  ProjectedModel broken = full;
  broken.layers[0].k[0].basis.resize(15, 4);
  expect_invalid([&] { ProjectedKvCache<float> cache(weights(), broken); }, "layer 0 K group 0");
  // Calls.
  ProjectedKvCache<float> cache(weights(), full);
  const RowMatrix<float> x = RowMatrix<float>::Zero(2, 32);
  expect_invalid([&] { (void)cache.attend(2, x, 0); }, "layer = 2, expected 0..1");
  expect_invalid([&] { (void)cache.attend(0, x, 3); }, "position = 3, expected 0");
  expect_invalid([&] { (void)cache.attend(0, RowMatrix<float>::Zero(2, 31), 0); },
                 "x has 31 columns, expected d_model = 32");
  // Codecs.
  LatentQuantConfig bad = quant(7, true);
  expect_invalid([&] { QuantizedProjectedKvCache q(weights(), full, bad); }, "key codec: bits = 7");
  bad = quant(4, true);
  bad.layer_bits.resize(2);
  expect_invalid([&] { QuantizedProjectedKvCache q(weights(), full, bad); },
                 "per-layer bit widths are not supported for route 2");
}

}  // namespace
}  // namespace latentkv
