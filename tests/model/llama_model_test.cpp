// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// model/llama_model.hpp on the tiny random model: agreement with a naive double forward written
// from the formulas (tests/support/tiny_llama.hpp), causality, chunked prefill and token-by-token
// decode against one pass, the logits sink, tied/untied heads, a cache that is not the dense one,
// RMSNorm, and errors.
#include "latentkv/model/llama_model.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "../support/tiny_llama.hpp"
#include "latentkv/model/dense_kv_cache.hpp"

namespace latentkv {
namespace {

using testing::RowMatrixD;

class TinyLlama : public ::testing::Test {
 protected:
  TinyLlama()
      : model_(testing::random_llama_weights(testing::tiny_llama_config(), 31)),
        tokens_(testing::random_tokens(40, 61, 32)) {}

  [[nodiscard]] RowMatrix<float> full(std::span<const std::int32_t> tokens) const {
    DenseKvCache cache(model_.weights());
    return model_.forward(tokens, cache);
  }

  LlamaModel model_;
  std::vector<std::int32_t> tokens_;
};

float max_abs_diff(const RowMatrix<float>& a, const RowMatrix<float>& b) {
  return (a - b).cwiseAbs().maxCoeff();
}

/// Runs that differ only in fp32 summation order (chunking, GEMM vs GEMV) agree to a few ulps of
/// the largest logit: 2e-6 relative is ~17 ulps; a real bug (a wrong position, a missing token in
/// the cache) moves logits by O(1).
float rounding_tolerance(const RowMatrix<float>& reference) {
  return 2e-6f * reference.cwiseAbs().maxCoeff();
}

TEST_F(TinyLlama, MatchesTheNaiveDoubleForward) {
  for (const bool tied : {true, false}) {
    const LlamaModel model(testing::random_llama_weights(testing::tiny_llama_config(tied), 33));
    DenseKvCache cache(model.weights());
    const RowMatrix<float> logits = model.forward(tokens_, cache);
    const RowMatrixD want = testing::naive_forward(model.weights(), tokens_);
    ASSERT_EQ(logits.rows(), 40);
    ASSERT_EQ(logits.cols(), 61);
    EXPECT_LT((logits.cast<double>() - want).cwiseAbs().maxCoeff(),
              1e-4 * want.cwiseAbs().maxCoeff())
        << "tied " << tied;
    EXPECT_GT(want.cwiseAbs().maxCoeff(), 1.0);  // not a degenerate model
  }
}

TEST_F(TinyLlama, FutureTokensDoNotChangePastLogits) {
  std::vector<std::int32_t> other = tokens_;
  for (std::size_t t = 25; t < other.size(); ++t) other[t] = (other[t] + 7) % 61;
  const RowMatrix<float> a = full(tokens_);
  const RowMatrix<float> b = full(other);
  EXPECT_LT(max_abs_diff(a.topRows(25), b.topRows(25)), rounding_tolerance(a));
  EXPECT_GT(max_abs_diff(a.bottomRows(15), b.bottomRows(15)), 1e-2f);  // the change is visible
}

TEST_F(TinyLlama, ChunkedPrefillEqualsOnePass) {
  const RowMatrix<float> once = full(tokens_);
  for (const Index chunk : {1, 2, 3, 7, 16, 39}) {
    DenseKvCache cache(model_.weights());
    RowMatrix<float> logits(40, 61);
    const std::span<const std::int32_t> all(tokens_);
    for (Index start = 0; start < 40; start += chunk) {
      const Index n = std::min<Index>(chunk, 40 - start);
      logits.middleRows(start, n) = model_.forward(
          all.subspan(static_cast<std::size_t>(start), static_cast<std::size_t>(n)), cache);
    }
    EXPECT_LT(max_abs_diff(logits, once), rounding_tolerance(once)) << chunk;
    EXPECT_EQ(cache.length(0), 40);
    EXPECT_EQ(cache.length(1), 40);
  }
}

TEST_F(TinyLlama, TokenByTokenDecodeEqualsTheFullForward) {
  const RowMatrix<float> once = full(tokens_);
  DenseKvCache cache(model_.weights());
  // Prefill 10 tokens, then decode one token at a time with forward_last.
  const Vector<float> after_prefill =
      model_.forward_last(std::span<const std::int32_t>(tokens_).first(10), cache);
  EXPECT_LT((after_prefill.transpose() - once.row(9)).cwiseAbs().maxCoeff(),
            rounding_tolerance(once));
  for (std::size_t t = 10; t < tokens_.size(); ++t) {
    const Vector<float> step =
        model_.forward_last(std::span<const std::int32_t>(&tokens_[t], 1), cache);
    EXPECT_LT((step.transpose() - once.row(static_cast<Index>(t))).cwiseAbs().maxCoeff(),
              rounding_tolerance(once))
        << t;
  }
}

TEST_F(TinyLlama, SinkGetsEveryRowInOrderInBoundedBlocks) {
  // 600 tokens: three blocks of kLogitsBlock = 256 rows or fewer; with batch_size 250 the
  // batches split differently from the blocks.
  const std::vector<std::int32_t> tokens = testing::random_tokens(600, 61, 34);
  const RowMatrix<float> once = full(tokens);
  for (const Index batch : {0, 250}) {
    DenseKvCache cache(model_.weights());
    RowMatrix<float> collected = RowMatrix<float>::Constant(600, 61, NAN);
    Index next = 0;
    model_.forward(
        tokens, cache,
        [&](Index first, const MatrixCRef<float>& logits) {
          EXPECT_EQ(first, next);
          EXPECT_LE(logits.rows(), LlamaModel::kLogitsBlock);
          EXPECT_EQ(logits.cols(), 61);
          collected.middleRows(first, logits.rows()) = logits;
          next = first + logits.rows();
        },
        batch);
    EXPECT_EQ(next, 600);
    EXPECT_LT(max_abs_diff(collected, once), rounding_tolerance(once)) << batch;
  }
}

TEST_F(TinyLlama, HiddenStatesTimesTheHeadAreTheLogits) {
  DenseKvCache cache(model_.weights());
  const RowMatrix<float> hidden = model_.hidden_states(tokens_, cache);
  ASSERT_EQ(hidden.rows(), 40);
  ASSERT_EQ(hidden.cols(), 32);
  const RowMatrix<float> logits = model_.logits(hidden);
  EXPECT_EQ(logits, RowMatrix<float>(hidden * model_.weights().token_embedding.transpose()));
  EXPECT_LT(max_abs_diff(logits, full(tokens_)), rounding_tolerance(logits));
}

TEST(LlamaModelHeads, UntiedHeadEqualToTheEmbeddingGivesTheTiedLogits) {
  LlamaWeights tied = testing::random_llama_weights(testing::tiny_llama_config(true), 35);
  LlamaWeights untied = tied;
  untied.config.tied_embeddings = false;
  untied.output = tied.token_embedding;
  const LlamaModel a(std::move(tied));
  const LlamaModel b(std::move(untied));
  const std::vector<std::int32_t> tokens = testing::random_tokens(12, 61, 36);
  DenseKvCache ca(a.weights());
  DenseKvCache cb(b.weights());
  EXPECT_EQ(a.forward(tokens, ca), b.forward(tokens, cb));

  // A different head changes the logits, and only through hidden·outputᵀ.
  LlamaWeights other = b.weights();
  other.output = testing::random_llama_weights(testing::tiny_llama_config(false), 37).output;
  const LlamaModel c(std::move(other));
  DenseKvCache cc(c.weights());
  const RowMatrix<float> hidden = c.hidden_states(tokens, cc);
  cc.reset();
  const RowMatrix<float> logits = c.forward(tokens, cc);
  EXPECT_LT(max_abs_diff(logits, hidden * c.weights().output.transpose()),
            rounding_tolerance(logits));
  ca.reset();
  EXPECT_GT(max_abs_diff(logits, a.forward(tokens, ca)), 1.0f);
}

/// A second KvCache model: runs the dense cache but counts calls, to show the model only uses
/// the concept's members.
class CountingCache {
 public:
  explicit CountingCache(const LlamaWeights& w) : inner_(w) {}
  RowMatrix<float> attend(Index layer, const MatrixCRef<float>& x, Index position) {
    ++calls_;
    return inner_.attend(layer, x, position);
  }
  void reset() { inner_.reset(); }
  [[nodiscard]] Index length(Index layer) const { return inner_.length(layer); }
  [[nodiscard]] Index num_layers() const { return inner_.num_layers(); }
  [[nodiscard]] std::int64_t bytes_per_token() const { return inner_.bytes_per_token(); }
  [[nodiscard]] int calls() const { return calls_; }

 private:
  DenseKvCache inner_;
  int calls_ = 0;
};
static_assert(KvCache<CountingCache>);

struct WithoutReset {  // everything but reset(): not a KvCache
  RowMatrix<float> attend(Index, const MatrixCRef<float>& x, Index) { return x; }
  [[nodiscard]] Index length(Index) const { return 0; }
  [[nodiscard]] Index num_layers() const { return 1; }
  [[nodiscard]] std::int64_t bytes_per_token() const { return 0; }
};
static_assert(!KvCache<WithoutReset>);

struct AttendReturnsAnExpression {  // attend must return a plain RowMatrix<float>
  auto attend(Index, const MatrixCRef<float>& x, Index) { return x * 2.0f; }
  void reset() {}
  [[nodiscard]] Index length(Index) const { return 0; }
  [[nodiscard]] Index num_layers() const { return 1; }
  [[nodiscard]] std::int64_t bytes_per_token() const { return 0; }
};
static_assert(!KvCache<AttendReturnsAnExpression>);

TEST_F(TinyLlama, AnyKvCacheModelPlugsIn) {
  CountingCache cache(model_.weights());
  const RowMatrix<float> logits = model_.forward(tokens_, cache);
  EXPECT_EQ(cache.calls(), 2);  // one call per layer for the whole batch
  EXPECT_EQ(logits, full(tokens_));
}

TEST(RmsNorm, DividesByTheRootMeanSquareAndScales) {
  RowMatrix<float> x(2, 4);
  x << 1, 2, 3, 4, -2, 0, 0, 2;
  Vector<float> gain(4);
  gain << 1, 0.5f, 2, 1;
  RowMatrix<float> out(2, 4);
  rms_norm(x, gain, 0.0f + 1e-6f, out);
  const double rms0 = std::sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-6);
  const double rms1 = std::sqrt((4 + 4) / 4.0 + 1e-6);
  EXPECT_NEAR(out(0, 0), 1 / rms0, 1e-6);
  EXPECT_NEAR(out(0, 1), 0.5 * 2 / rms0, 1e-6);
  EXPECT_NEAR(out(0, 2), 2 * 3 / rms0, 1e-6);
  EXPECT_NEAR(out(1, 0), -2 / rms1, 1e-6);
  EXPECT_NEAR(out(1, 3), 2 / rms1, 1e-6);
  rms_norm(x, gain, 1e-6f, x);  // in place
  EXPECT_EQ(x, out);
  EXPECT_THROW(rms_norm(x, gain.head(3), 1e-6f, out), InvalidArgument);
}

TEST_F(TinyLlama, RejectsBadInput) {
  DenseKvCache cache(model_.weights());
  const std::vector<std::int32_t> bad = {3, 61, 4};
  try {
    (void)model_.forward(bad, cache);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("tokens[1] = 61, expected 0..60"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(cache.length(0), 0);  // nothing was appended
  EXPECT_THROW((void)model_.forward(std::vector<std::int32_t>{-1}, cache), InvalidArgument);
  EXPECT_THROW((void)model_.forward_last(std::span<const std::int32_t>(), cache), InvalidArgument);
  EXPECT_EQ(model_.forward(std::span<const std::int32_t>(), cache).rows(), 0);

  ModelConfig three = testing::tiny_llama_config();
  three.num_layers = 3;
  const LlamaWeights other = testing::random_llama_weights(three, 38);
  DenseKvCache wrong(other);
  EXPECT_THROW((void)model_.forward(tokens_, wrong), InvalidArgument);
  EXPECT_THROW(model_.forward(
                   tokens_, cache, [](Index, const MatrixCRef<float>&) {}, -1),
               InvalidArgument);
  EXPECT_THROW((void)model_.logits(RowMatrix<float>::Zero(2, 31)), InvalidArgument);
}

}  // namespace
}  // namespace latentkv
