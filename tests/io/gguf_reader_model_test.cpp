// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// GgufReader on the real SmolLM2-135M-Instruct Q4_1 file (label `model`), against checksums and
// rows that gguf-py's gguf.quants.dequantize produced (tests/data/gguf/smollm2_reference.inc).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <string>

#include "../data/gguf/smollm2_reference.inc"
#include "../support/smollm2.hpp"
#include "latentkv/io/gguf_reader.hpp"

namespace latentkv {
namespace {

using SmolLm2GgufReader = testing::SmolLm2Test;

TEST_F(SmolLm2GgufReader, HasTheExpectedLayoutAndTensorTypes) {
  const GgufReader& r = reader();
  EXPECT_EQ(r.file_size(), 98362432u);
  EXPECT_EQ(r.version(), 3u);
  EXPECT_EQ(r.alignment(), 32u);
  EXPECT_EQ(r.tensors().size(), 272u);
  std::map<GgmlType, int> types;
  for (const GgufTensorInfo& t : r.tensors()) ++types[t.type];
  EXPECT_EQ(types[GgmlType::kF32], 61);
  EXPECT_EQ(types[GgmlType::kQ4_1], 210);
  EXPECT_EQ(types[GgmlType::kQ8_0], 1);
  EXPECT_EQ(r.tensor("token_embd.weight").type, GgmlType::kQ8_0);
  const GgufTensorInfo& k = r.tensor("blk.0.attn_k.weight");
  EXPECT_EQ(k.type, GgmlType::kQ4_1);
  EXPECT_EQ(k.rows(), 192);  // ne = [576, 192]: (kv_dim, d_model)
  EXPECT_EQ(k.cols(), 576);
  EXPECT_EQ(r.find_tensor("output.weight"), nullptr);
}

TEST_F(SmolLm2GgufReader, ReadsTheTokenizerMetadata) {
  const GgufReader& r = reader();
  EXPECT_EQ(r.get<std::string_view>("general.architecture"), "llama");
  EXPECT_EQ(r.get<std::string_view>("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(r.get<std::string_view>("tokenizer.ggml.pre"), "smollm");
  const auto tokens = r.get_array_of<std::string_view>("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 49152u);
  EXPECT_EQ(r.get_array("tokenizer.ggml.merges").size(), 48900u);
  EXPECT_EQ(r.get_array_of<std::int32_t>("tokenizer.ggml.token_type").size(), 49152u);
  const auto bos = r.get<std::uint32_t>("tokenizer.ggml.bos_token_id");
  ASSERT_LT(bos, tokens.size());
  EXPECT_EQ(tokens[bos], "<|im_start|>");
}

// Every tensor, dequantized in full, against gguf-py's checksums. Tolerances allow the last-bit
// differences of a fused multiply-add (≤ 2^-24 relative per element, bounded through Cauchy–Schwarz
// by 2^-24·sqrt(n·Σx²)); a misplaced nibble, block or row moves the weighted sum far more.
TEST_F(SmolLm2GgufReader, MatchesGgufPyChecksumsForEveryTensor) {
  const GgufReader& r = reader();
  ASSERT_EQ(std::size(fixtures::kSmolLm2Checksums), r.tensors().size());
  for (const auto& want : fixtures::kSmolLm2Checksums) {
    SCOPED_TRACE(want.name);
    const GgufTensorInfo& info = r.tensor(want.name);
    EXPECT_EQ(static_cast<unsigned>(info.type), want.type);
    const RowMatrix<float> m = r.dequantize(info);
    ASSERT_EQ(m.rows(), want.rows);
    ASSERT_EQ(m.cols(), want.cols);
    double sum = 0.0, sum_squares = 0.0, weighted = 0.0;
    const float* x = m.data();
    for (Index i = 0; i < m.size(); ++i) {
      const double v = x[i];
      sum += v;
      sum_squares += v * v;
      weighted += v * static_cast<double>(i % 7 + 1);
    }
    const double scale = std::sqrt(static_cast<double>(m.size()) * want.sum_squares);
    EXPECT_NEAR(sum, want.sum, 1.2e-7 * scale + 1e-9);
    EXPECT_NEAR(sum_squares, want.sum_squares, 2.4e-7 * want.sum_squares + 1e-9);
    EXPECT_NEAR(weighted, want.weighted_sum, 7 * 1.2e-7 * scale + 1e-9);
  }
}

TEST_F(SmolLm2GgufReader, MatchesGgufPyRowsElementByElement) {
  const GgufReader& r = reader();
  for (const auto& want : fixtures::kSmolLm2Rows) {
    SCOPED_TRACE(std::string(want.name) + " row " + std::to_string(want.row));
    const RowMatrix<float> row = r.dequantize_rows(want.name, want.row, 1);
    ASSERT_EQ(row.cols(), want.cols);
    const Eigen::Map<const Vector<float>> expected(want.values, want.cols);
    const float tolerance = 0x1p-20f * expected.cwiseAbs().maxCoeff();
    for (Index j = 0; j < want.cols; ++j) EXPECT_NEAR(row(0, j), expected(j), tolerance) << j;
    const RowMatrix<float> whole = r.dequantize(want.name);
    EXPECT_EQ(whole.row(want.row), row.row(0)) << "dequantize_rows must agree with dequantize";
  }
}

TEST_F(SmolLm2GgufReader, DequantizesTheWholeModelInSeconds) {
  const GgufReader& r = reader();
  const auto start = std::chrono::steady_clock::now();
  Index elements = 0;
  for (const GgufTensorInfo& t : r.tensors()) elements += r.dequantize(t).size();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  RecordProperty("dequantize_all_seconds", std::to_string(seconds));
  EXPECT_EQ(elements, 134515008);
  EXPECT_LT(seconds, 10.0) << "dequantizing 134.5M weights took " << seconds << " s";
}

}  // namespace
}  // namespace latentkv
