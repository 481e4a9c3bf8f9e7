// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// attention/causal_attention.hpp against a naive per-head double implementation: GQA head
// mapping, causal masking with a position offset, d_v ≠ d_k, blocks across kQueryBlock, errors.
#include "latentkv/attention/causal_attention.hpp"

#include <gtest/gtest.h>

#include "../support/tiny_llama.hpp"

namespace latentkv {
namespace {

using testing::RowMatrixD;

struct Case {
  Index tokens, first_position, extra_keys, num_heads, num_kv_heads, d_k, d_v;
};

RowMatrixD naive(const RowMatrix<float>& q, const RowMatrix<float>& k, const RowMatrix<float>& v,
                 const Case& c) {
  RowMatrixD out(c.tokens, c.num_heads * c.d_v);
  const Index group = c.num_heads / c.num_kv_heads;
  const Index length = c.first_position + c.tokens;
  for (Index head = 0; head < c.num_heads; ++head) {
    const Index kv = head / group;
    // naive_head_attention scales by 1/sqrt(q.cols()) = 1/sqrt(d_k).
    out.middleCols(head * c.d_v, c.d_v) = testing::naive_head_attention(
        q.middleCols(head * c.d_k, c.d_k).cast<double>(),
        k.block(0, kv * c.d_k, length, c.d_k).cast<double>(),
        v.block(0, kv * c.d_v, length, c.d_v).cast<double>(), c.first_position);
  }
  return out;
}

class CausalAttentionCases : public ::testing::TestWithParam<Case> {};

TEST_P(CausalAttentionCases, MatchesNaivePerHeadAttention) {
  const Case c = GetParam();
  std::mt19937_64 engine(42);
  const Index length = c.first_position + c.tokens + c.extra_keys;
  const RowMatrix<float> q = testing::random_matrix(c.tokens, c.num_heads * c.d_k, 1.0, engine);
  const RowMatrix<float> k = testing::random_matrix(length, c.num_kv_heads * c.d_k, 1.0, engine);
  const RowMatrix<float> v = testing::random_matrix(length, c.num_kv_heads * c.d_v, 1.0, engine);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.d_k)));
  const RowMatrix<float> out =
      causal_attention(q, k, v, c.num_heads, c.num_kv_heads, c.first_position, scale);
  ASSERT_EQ(out.rows(), c.tokens);
  ASSERT_EQ(out.cols(), c.num_heads * c.d_v);
  if (c.tokens == 0) return;
  const RowMatrixD want = naive(q, k, v, c);
  EXPECT_LT((out.cast<double>() - want).cwiseAbs().maxCoeff(), 2e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CausalAttentionCases,
    ::testing::Values(Case{1, 0, 0, 1, 1, 4, 4},     // one token, MHA
                      Case{5, 0, 0, 4, 2, 8, 8},     // prefill, GQA g = 2
                      Case{7, 9, 0, 6, 2, 8, 8},     // continuing at position 9, g = 3
                      Case{1, 40, 0, 9, 3, 16, 16},  // decode step
                      Case{3, 4, 6, 4, 1, 8, 8},     // extra keys beyond the last query: masked
                      Case{70, 5, 0, 4, 2, 8, 12},   // several query blocks, d_v ≠ d_k
                      Case{0, 3, 0, 2, 2, 4, 4}));   // nothing to do

TEST(CausalAttention, QueryHeadsOfAGroupReadTheirKvHead) {
  // Two KV heads with constant values 1 and 2: query heads 0, 1 (group 0) output 1, heads 2, 3
  // output 2, whatever the scores.
  std::mt19937_64 engine(7);
  const RowMatrix<float> q = testing::random_matrix(3, 4 * 4, 1.0, engine);
  const RowMatrix<float> k = testing::random_matrix(3, 2 * 4, 1.0, engine);
  RowMatrix<float> v(3, 2 * 4);
  v.leftCols(4).setConstant(1.0f);
  v.rightCols(4).setConstant(2.0f);
  const RowMatrix<float> out = causal_attention(q, k, v, 4, 2, 0, 0.5f);
  for (Index head = 0; head < 4; ++head) {
    const float want = head < 2 ? 1.0f : 2.0f;
    EXPECT_NEAR((out.middleCols(head * 4, 4).array() - want).abs().maxCoeff(), 0.0f, 1e-6f) << head;
  }
}

TEST(CausalAttention, FirstTokenSeesOnlyItself) {
  std::mt19937_64 engine(8);
  const RowMatrix<float> q = testing::random_matrix(4, 8, 1.0, engine);
  const RowMatrix<float> k = testing::random_matrix(4, 8, 1.0, engine);
  const RowMatrix<float> v = testing::random_matrix(4, 8, 1.0, engine);
  const RowMatrix<float> out = causal_attention(q, k, v, 1, 1, 0, 1.0f);
  EXPECT_LT((out.row(0) - v.row(0)).cwiseAbs().maxCoeff(), 1e-6f);
}

TEST(CausalAttention, RejectsInconsistentShapes) {
  const RowMatrix<float> q = RowMatrix<float>::Zero(2, 8);
  const RowMatrix<float> k = RowMatrix<float>::Zero(2, 8);
  const RowMatrix<float> v = RowMatrix<float>::Zero(2, 8);
  EXPECT_THROW((void)causal_attention(q, k, v, 3, 1, 0, 1.0f), InvalidArgument);  // 8 % 3
  EXPECT_THROW((void)causal_attention(q, k, v, 2, 3, 0, 1.0f), InvalidArgument);  // 3 ∤ 2
  EXPECT_THROW((void)causal_attention(q, RowMatrix<float>::Zero(2, 4), v, 2, 2, 0, 1.0f),
               InvalidArgument);  // keys width
  EXPECT_THROW((void)causal_attention(q, k, RowMatrix<float>::Zero(3, 8), 2, 2, 0, 1.0f),
               InvalidArgument);  // values rows
  try {
    (void)causal_attention(q, k, v, 2, 2, 1, 1.0f);  // positions 1, 2 need 3 keys
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("needs >= 3 keys, got 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)causal_attention(q, k, v, 2, 2, 0, NAN), InvalidArgument);
}

}  // namespace
}  // namespace latentkv
