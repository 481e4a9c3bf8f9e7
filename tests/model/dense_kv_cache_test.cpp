// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// model/dense_kv_cache.hpp on the tiny random model: attend() against a naive per-head attention
// (GQA mapping, RoPE, W_o), chunked appends, stored keys are RoPE(x·W_k), growth, reset, sizes
// and errors.
#include "latentkv/model/dense_kv_cache.hpp"

#include <gtest/gtest.h>

#include "../support/tiny_llama.hpp"

namespace latentkv {
namespace {

using testing::RowMatrixD;

class DenseKvCacheTest : public ::testing::Test {
 protected:
  DenseKvCacheTest()
      : weights_(testing::random_llama_weights(testing::tiny_llama_config(), 11)),
        config_(weights_.config) {
    std::mt19937_64 engine(12);
    x_ = testing::random_matrix(23, config_.d_model, 1.0, engine);
  }

  LlamaWeights weights_;
  const ModelConfig& config_;
  RowMatrix<float> x_;  // (23, d): normed inputs of 23 tokens
};

TEST_F(DenseKvCacheTest, ModelsTheKvCacheConcept) { static_assert(KvCache<DenseKvCache>); }

TEST_F(DenseKvCacheTest, AttendMatchesNaivePerHeadAttention) {
  for (Index layer = 0; layer < config_.num_layers; ++layer) {
    DenseKvCache cache(weights_);
    const RowMatrix<float> out = cache.attend(layer, x_, 0);
    const RowMatrixD want = testing::naive_attention(
        config_, weights_.layers[static_cast<std::size_t>(layer)].attention, x_.cast<double>());
    EXPECT_LT((out.cast<double>() - want).cwiseAbs().maxCoeff(), 1e-5) << layer;
    EXPECT_EQ(cache.length(layer), 23);
    EXPECT_EQ(cache.length(1 - layer), 0);
  }
}

TEST_F(DenseKvCacheTest, AppendingInChunksEqualsOneCall) {
  DenseKvCache whole(weights_);
  const RowMatrix<float> once = whole.attend(1, x_, 0);
  for (const Index chunk : {1, 4, 10}) {
    DenseKvCache cache(weights_, 2);  // too small: must grow
    RowMatrix<float> pieces(x_.rows(), config_.d_model);
    for (Index start = 0; start < x_.rows(); start += chunk) {
      const Index rows = std::min(chunk, x_.rows() - start);
      pieces.middleRows(start, rows) = cache.attend(1, x_.middleRows(start, rows), start);
    }
    EXPECT_LT((pieces - once).cwiseAbs().maxCoeff(), 1e-5f) << chunk;
    EXPECT_LT((cache.keys(1) - whole.keys(1)).cwiseAbs().maxCoeff(), 1e-5f) << chunk;
    EXPECT_EQ(cache.values(1).rows(), 23);
  }
}

TEST_F(DenseKvCacheTest, StoresRotatedKeysAndPlainValues) {
  DenseKvCache cache(weights_);
  (void)cache.attend(0, x_.topRows(5), 0);
  (void)cache.attend(0, x_.middleRows(5, 3), 5);
  const AttentionWeights& w = weights_.layers[0].attention;
  RowMatrixD k = x_.topRows(8).cast<double>() * w.wk.cast<double>();
  for (Index t = 0; t < 8; ++t) {
    for (Index head = 0; head < config_.num_kv_heads; ++head) {
      testing::naive_rope(&k(t, head * config_.head_dim), config_.rope_dim, config_.rope_base, t);
    }
  }
  const RowMatrixD v = x_.topRows(8).cast<double>() * w.wv.cast<double>();
  ASSERT_EQ(cache.keys(0).rows(), 8);
  ASSERT_EQ(cache.keys(0).cols(), config_.kv_dim());
  EXPECT_LT((cache.keys(0).cast<double>() - k).cwiseAbs().maxCoeff(), 1e-5);
  EXPECT_LT((cache.values(0).cast<double>() - v).cwiseAbs().maxCoeff(), 1e-5);
}

TEST_F(DenseKvCacheTest, ResetEmptiesEveryLayerAndTheNextSequenceIsUnaffected) {
  DenseKvCache fresh(weights_);
  const RowMatrix<float> want = fresh.attend(0, x_.bottomRows(6), 0);
  DenseKvCache cache(weights_);
  (void)cache.attend(0, x_.topRows(9), 0);
  (void)cache.attend(1, x_.topRows(9), 0);
  cache.reset();
  EXPECT_EQ(cache.length(0), 0);
  EXPECT_EQ(cache.length(1), 0);
  EXPECT_EQ(cache.attend(0, x_.bottomRows(6), 0), want);
}

TEST_F(DenseKvCacheTest, ReportsSizes) {
  const DenseKvCache cache(weights_);
  EXPECT_EQ(cache.num_layers(), 2);
  EXPECT_EQ(cache.bytes_per_token(), 2 * 2 * (2 * 8) * 4);  // K and V · L · n_kv·h · fp32
}

TEST_F(DenseKvCacheTest, RejectsBadCalls) {
  DenseKvCache cache(weights_);
  EXPECT_THROW((void)cache.attend(2, x_, 0), InvalidArgument);   // no layer 2
  EXPECT_THROW((void)cache.attend(-1, x_, 0), InvalidArgument);  // no layer -1
  try {
    (void)cache.attend(0, x_, 3);  // the layer holds 0 tokens
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("layer 0: position = 3, expected 0"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW((void)cache.attend(0, x_.leftCols(31), 0), InvalidArgument);  // not d_model wide
  EXPECT_THROW((void)cache.length(5), InvalidArgument);
  EXPECT_THROW(DenseKvCache(weights_, -1), InvalidArgument);
  EXPECT_EQ(cache.length(0), 0);  // failed calls changed nothing
}

}  // namespace
}  // namespace latentkv
