// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// model/llama_weights.hpp: a GGUF written the way llama.cpp's converter writes one (rows [out, in],
// Q/K rows permuted per head, tied or untied head) loads back to the math-orientation,
// Hugging Face-order weights; validate() and the loader reject what they do not support.
#include "latentkv/model/llama_weights.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "../support/gguf_builder.hpp"
#include "../support/tiny_llama.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"

namespace latentkv {
namespace {

using testing::GgufBuilder;
using ::testing::HasSubstr;
using testing::meta;
using testing::TempFile;

/// convert_hf_to_gguf.py LlamaModel.permute: reshape(n_head, 2, h/2, cols).swapaxes(1, 2).
RowMatrix<float> converter_permute(const RowMatrix<float>& hf, Index n_head) {
  const Index h = hf.rows() / n_head;
  RowMatrix<float> gguf(hf.rows(), hf.cols());
  for (Index head = 0; head < n_head; ++head) {
    for (Index i = 0; i < h / 2; ++i) {
      for (Index j = 0; j < 2; ++j)
        gguf.row(head * h + 2 * i + j) = hf.row(head * h + j * h / 2 + i);
    }
  }
  return gguf;
}

std::vector<std::byte> f32_matrix(const RowMatrix<float>& m) {
  return testing::f32_bytes(std::vector<float>(m.data(), m.data() + m.size()));
}

struct FileOptions {
  std::string architecture = "llama";
  std::function<void(GgufBuilder&)> extra;
  std::string skip_tensor;  // leave this tensor out
  std::string bad_shape;    // write this 2-D tensor transposed
};

/// The GGUF a converter would write for `w`: [out, in] rows, Q/K permuted.
std::vector<std::byte> llama_gguf(const LlamaWeights& w, const FileOptions& options = {}) {
  const ModelConfig& c = w.config;
  GgufBuilder b;
  b.add("general.architecture", meta(options.architecture));
  const std::string a = options.architecture + ".";
  b.add(a + "block_count", meta<std::uint32_t>(static_cast<std::uint32_t>(c.num_layers)));
  b.add(a + "embedding_length", meta<std::uint32_t>(static_cast<std::uint32_t>(c.d_model)));
  b.add(a + "feed_forward_length", meta<std::uint32_t>(static_cast<std::uint32_t>(c.ffn_dim)));
  b.add(a + "attention.head_count", meta<std::uint32_t>(static_cast<std::uint32_t>(c.num_heads)));
  b.add(a + "attention.head_count_kv",
        meta<std::uint32_t>(static_cast<std::uint32_t>(c.num_kv_heads)));
  b.add(a + "rope.freq_base", meta(c.rope_base));
  b.add(a + "attention.layer_norm_rms_epsilon", meta(c.norm_eps));
  b.add(a + "context_length", meta<std::uint32_t>(static_cast<std::uint32_t>(c.context_length)));
  b.add(a + "vocab_size", meta<std::uint32_t>(static_cast<std::uint32_t>(c.vocab_size)));
  if (options.extra) options.extra(b);
  const auto matrix = [&](const std::string& name, const RowMatrix<float>& checkpoint) {
    if (name == options.skip_tensor) return;
    const bool transpose = name == options.bad_shape;
    const RowMatrix<float> m = transpose ? RowMatrix<float>(checkpoint.transpose()) : checkpoint;
    b.add_tensor(name, {static_cast<std::uint64_t>(m.cols()), static_cast<std::uint64_t>(m.rows())},
                 0, f32_matrix(m));
  };
  const auto vector = [&](const std::string& name, const Vector<float>& v) {
    if (name == options.skip_tensor) return;
    b.add_tensor(name, {static_cast<std::uint64_t>(v.size())}, 0,
                 testing::f32_bytes(std::vector<float>(v.data(), v.data() + v.size())));
  };
  matrix("token_embd.weight", w.token_embedding);
  vector("output_norm.weight", w.output_norm);
  if (!c.tied_embeddings) matrix("output.weight", w.output);
  for (Index l = 0; l < c.num_layers; ++l) {
    const LayerWeights& layer = w.layers[static_cast<std::size_t>(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    vector(p + "attn_norm.weight", layer.attention_norm);
    matrix(p + "attn_q.weight", converter_permute(layer.attention.wq.transpose(), c.num_heads));
    matrix(p + "attn_k.weight", converter_permute(layer.attention.wk.transpose(), c.num_kv_heads));
    matrix(p + "attn_v.weight", layer.attention.wv.transpose());
    matrix(p + "attn_output.weight", layer.attention.wo.transpose());
    vector(p + "ffn_norm.weight", layer.ffn_norm);
    matrix(p + "ffn_gate.weight", layer.ffn.w_gate.transpose());
    matrix(p + "ffn_up.weight", layer.ffn.w_up.transpose());
    matrix(p + "ffn_down.weight", layer.ffn.w_down.transpose());
  }
  return b.build();
}

void expect_equal(const LlamaWeights& got, const LlamaWeights& want) {
  EXPECT_EQ(got.config, want.config);
  EXPECT_EQ(got.token_embedding, want.token_embedding);
  EXPECT_EQ(got.output_norm, want.output_norm);
  EXPECT_EQ(got.output, want.output);
  ASSERT_EQ(got.layers.size(), want.layers.size());
  for (std::size_t l = 0; l < got.layers.size(); ++l) {
    const LayerWeights& g = got.layers[l];
    const LayerWeights& e = want.layers[l];
    EXPECT_EQ(g.attention_norm, e.attention_norm) << l;
    EXPECT_EQ(g.attention.wq, e.attention.wq) << l;
    EXPECT_EQ(g.attention.wk, e.attention.wk) << l;
    EXPECT_EQ(g.attention.wv, e.attention.wv) << l;
    EXPECT_EQ(g.attention.wo, e.attention.wo) << l;
    EXPECT_EQ(g.ffn_norm, e.ffn_norm) << l;
    EXPECT_EQ(g.ffn.w_gate, e.ffn.w_gate) << l;
    EXPECT_EQ(g.ffn.w_up, e.ffn.w_up) << l;
    EXPECT_EQ(g.ffn.w_down, e.ffn.w_down) << l;
  }
}

std::string load_error(const std::vector<std::byte>& bytes) {
  const TempFile file(bytes);
  const GgufReader reader = GgufReader::open(file.path());
  try {
    (void)load_llama_weights(reader);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "no error";
}

TEST(LoadLlamaWeights, UndoesTheConverterPermutationAndTransposes) {
  for (const bool tied : {true, false}) {
    const LlamaWeights want = testing::random_llama_weights(testing::tiny_llama_config(tied), 21);
    const TempFile file(llama_gguf(want));
    const GgufReader reader = GgufReader::open(file.path());
    const LlamaWeights got = load_llama_weights(reader);
    expect_equal(got, want);
    EXPECT_EQ(&got.output_head(), tied ? &got.token_embedding : &got.output);
  }
}

TEST(LoadLlamaWeights, ModelFromGgufComputesTheSameLogits) {
  const LlamaWeights want = testing::random_llama_weights(testing::tiny_llama_config(), 22);
  const TempFile file(llama_gguf(want));
  const LlamaModel from_file = LlamaModel::from_gguf(GgufReader::open(file.path()));
  const LlamaModel in_memory{LlamaWeights(want)};
  const std::vector<std::int32_t> tokens = testing::random_tokens(9, 61, 23);
  DenseKvCache a(from_file.weights());
  DenseKvCache b(in_memory.weights());
  EXPECT_EQ(from_file.forward(tokens, a), in_memory.forward(tokens, b));
}

TEST(LoadLlamaWeights, RejectsUnsupportedFiles) {
  const LlamaWeights w = testing::random_llama_weights(testing::tiny_llama_config(), 24);
  FileOptions qwen;
  qwen.architecture = "qwen2";
  EXPECT_THAT(load_error(llama_gguf(w, qwen)), HasSubstr("general.architecture = 'qwen2'"));

  FileOptions bias;
  bias.extra = [](GgufBuilder& b) {
    b.add_tensor("blk.1.attn_k.bias", {16}, 0, testing::f32_bytes(std::vector<float>(16, 0.0f)));
  };
  EXPECT_THAT(load_error(llama_gguf(w, bias)), HasSubstr("'blk.1.attn_k.bias': attention biases"));

  FileOptions scaling;
  scaling.extra = [](GgufBuilder& b) { b.add("llama.rope.scaling.type", meta("linear")); };
  EXPECT_THAT(load_error(llama_gguf(w, scaling)), HasSubstr("RoPE scaling"));
  FileOptions no_scaling;
  no_scaling.extra = [](GgufBuilder& b) { b.add("llama.rope.scaling.type", meta("none")); };
  EXPECT_EQ(load_error(llama_gguf(w, no_scaling)), "no error");

  FileOptions factors;
  factors.extra = [](GgufBuilder& b) {
    b.add_tensor("rope_freqs.weight", {4}, 0, testing::f32_bytes(std::vector<float>(4, 1.0f)));
  };
  EXPECT_THAT(load_error(llama_gguf(w, factors)), HasSubstr("rope_freqs.weight"));

  FileOptions partial;
  partial.extra = [](GgufBuilder& b) {
    b.add("llama.rope.dimension_count", meta<std::uint32_t>(4));
  };
  EXPECT_THAT(load_error(llama_gguf(w, partial)), HasSubstr("partial rotary"));

  FileOptions transposed;
  transposed.bad_shape = "blk.1.ffn_up.weight";
  EXPECT_THAT(
      load_error(llama_gguf(w, transposed)),
      HasSubstr("tensor 'blk.1.ffn_up.weight' has 2 dims ne = [48, 32], expected [32, 48]"));

  FileOptions missing;
  missing.skip_tensor = "blk.0.attn_v.weight";
  EXPECT_THAT(load_error(llama_gguf(w, missing)),
              HasSubstr("no tensor named 'blk.0.attn_v.weight'"));
}

TEST(LlamaWeights, ValidateNamesTheLayerAndWeight) {
  LlamaWeights w = testing::random_llama_weights(testing::tiny_llama_config(), 25);
  EXPECT_NO_THROW(w.validate());
  w.layers[1].attention.wk.resize(32, 15);
  try {
    w.validate();
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_THAT(e.what(), HasSubstr("layer 1 attention.wk is (32, 15), expected (32, 16)"));
  }
  LlamaWeights tied = testing::random_llama_weights(testing::tiny_llama_config(true), 26);
  tied.output = tied.token_embedding;  // tied, yet a separate head
  EXPECT_THROW(tied.validate(), InvalidArgument);
  LlamaWeights untied = testing::random_llama_weights(testing::tiny_llama_config(false), 27);
  untied.output.resize(0, 0);
  EXPECT_THROW(untied.validate(), InvalidArgument);
  LlamaWeights short_stack = testing::random_llama_weights(testing::tiny_llama_config(), 28);
  short_stack.layers.pop_back();
  EXPECT_THROW(short_stack.validate(), InvalidArgument);
  EXPECT_THROW(LlamaModel{std::move(short_stack)}, InvalidArgument);
}

}  // namespace
}  // namespace latentkv
