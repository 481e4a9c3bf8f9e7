// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// ModelConfig of the real SmolLM2-135M-Instruct Q4_1 file (label `model`; DESIGN §9).
#include <gtest/gtest.h>

#include "../support/smollm2.hpp"
#include "latentkv/model/model_config.hpp"

namespace latentkv {
namespace {

using SmolLm2Config = testing::SmolLm2Test;

TEST_F(SmolLm2Config, MatchesThePublishedArchitecture) {
  const ModelConfig c = from_gguf(reader());
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.d_model, 576);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_dim, 64);
  EXPECT_EQ(c.ffn_dim, 1536);
  EXPECT_EQ(c.rope_base, 100000.0f);
  EXPECT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.context_length, 8192);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(c.group_size(), 3);
  EXPECT_EQ(c.kv_dim(), 192);
  EXPECT_NO_THROW(c.validate());
}

TEST_F(SmolLm2Config, HasQAndKWeightsShapedForUnpermuting) {
  const ModelConfig c = from_gguf(reader());
  for (Index layer = 0; layer < c.num_layers; ++layer) {
    const std::string prefix = "blk." + std::to_string(layer) + ".";
    const GgufTensorInfo& q = reader().tensor(prefix + "attn_q.weight");
    const GgufTensorInfo& k = reader().tensor(prefix + "attn_k.weight");
    EXPECT_EQ(q.rows(), c.q_dim()) << layer;
    EXPECT_EQ(q.cols(), c.d_model) << layer;
    EXPECT_EQ(k.rows(), c.kv_dim()) << layer;
    EXPECT_EQ(k.cols(), c.d_model) << layer;
  }
  const RowMatrix<float> k = reader().dequantize("blk.0.attn_k.weight");
  const RowMatrix<float> hf = unpermute_qk_rows(k, c.num_kv_heads);
  EXPECT_EQ(hf.row(1), k.row(2));             // HF row 1 of head 0 is GGUF row 2
  EXPECT_EQ(hf.row(32), k.row(1));            // HF row h/2 is GGUF row 1
  EXPECT_EQ(hf.row(64 + 33), k.row(64 + 3));  // head 1: HF row h/2 + 1 is GGUF row 3
}

}  // namespace
}  // namespace latentkv
