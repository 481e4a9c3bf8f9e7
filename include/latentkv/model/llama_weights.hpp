// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// fp32 weights of a LLaMA-family decoder, and their loading from a GGUF checkpoint.
//   d = d_model, q_dim = n_q·h, kv_dim = n_kv·h, f = ffn_dim, V = vocab_size, L = num_layers
//   attention  W_q (d, q_dim), W_k (d, kv_dim), W_v (d, kv_dim), W_o (q_dim, d)
//   SwiGLU     W_gate (d, f), W_up (d, f), W_down (f, d)
//   norms      (d) RMSNorm gains;  token embedding E (V, d);  output head (V, d)
//
// Orientation: projections are stored in math orientation, y = x·W (DESIGN §1), the transpose of
// the checkpoint's [out, in] rows. That is the orientation the factorizers and groupings take
// (W_k = A·B with A: (d, r), KV head j in columns [j·h, (j+1)·h)), so a compressor reads
// weights.layers[l].attention.wk directly. The embedding and the output head keep one token per
// row (V, d) in both cases: logits = hidden·headᵀ.
//
// Channel order and RoPE: W_q and W_k columns are in Hugging Face order (llama.cpp's Q/K row
// permutation undone with unpermute_qk_rows while loading), so RoPE is the rotate-half pairing of
// core/rope.hpp. The loader reads only architecture "llama" — the only one whose converter applies
// that permutation — and rejects features the reference model does not implement (biases, RoPE
// scaling, partial rotary, mixture of experts) with a FormatError naming the tensor or key, rather
// than computing something else.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/io/gguf_reader.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/model_config.hpp"

namespace latentkv {

/// One layer's attention projections (math orientation, Hugging Face channel order).
struct AttentionWeights {
  RowMatrix<float> wq;  // (d_model, n_q·h)
  RowMatrix<float> wk;  // (d_model, n_kv·h)
  RowMatrix<float> wv;  // (d_model, n_kv·h)
  RowMatrix<float> wo;  // (n_q·h, d_model)
};

/// One layer's SwiGLU MLP: down(silu(x·W_gate) ⊙ (x·W_up)).
struct FeedForwardWeights {
  RowMatrix<float> w_gate;  // (d_model, ffn_dim)
  RowMatrix<float> w_up;    // (d_model, ffn_dim)
  RowMatrix<float> w_down;  // (ffn_dim, d_model)
};

struct LayerWeights {
  Vector<float> attention_norm;  // (d_model) RMSNorm gain before attention
  AttentionWeights attention;
  Vector<float> ffn_norm;  // (d_model) RMSNorm gain before the MLP
  FeedForwardWeights ffn;
};

struct LlamaWeights {
  ModelConfig config;
  RowMatrix<float> token_embedding;  // (vocab_size, d_model)
  std::vector<LayerWeights> layers;  // num_layers
  Vector<float> output_norm;         // (d_model)
  RowMatrix<float> output;           // (vocab_size, d_model); empty when config.tied_embeddings

  /// The output head: (vocab_size, d_model), the token embedding when tied.
  [[nodiscard]] const RowMatrix<float>& output_head() const noexcept {
    return config.tied_embeddings ? token_embedding : output;
  }

  /// Validates the config, then every shape against it (and that tied heads have no `output`).
  /// Throws InvalidArgument naming the layer and the weight.
  void validate() const {
    constexpr const char* kWhere = "latentkv::LlamaWeights::validate";
    config.validate();
    const ModelConfig& c = config;
    const auto check = [&](std::string_view name, Index layer, Index rows, Index cols,
                           Index want_rows, Index want_cols) {
      if (rows != want_rows || cols != want_cols) {
        const std::string where = layer < 0
                                      ? std::string(name)
                                      : "layer " + std::to_string(layer) + " " + std::string(name);
        detail::raise<InvalidArgument>(kWhere, where, " is (", rows, ", ", cols, "), expected (",
                                       want_rows, ", ", want_cols, ")");
      }
    };
    const auto check_vector = [&](std::string_view name, Index layer, const Vector<float>& v) {
      check(name, layer, 1, v.size(), 1, c.d_model);
    };
    const auto check_matrix = [&](std::string_view name, Index layer, const RowMatrix<float>& m,
                                  Index rows, Index cols) {
      check(name, layer, m.rows(), m.cols(), rows, cols);
    };
    check_matrix("token_embedding", -1, token_embedding, c.vocab_size, c.d_model);
    if (static_cast<Index>(layers.size()) != c.num_layers) {
      detail::raise<InvalidArgument>(kWhere, "layers has ", layers.size(),
                                     " entries, expected num_layers = ", c.num_layers);
    }
    for (Index l = 0; l < c.num_layers; ++l) {
      const LayerWeights& w = layers[static_cast<std::size_t>(l)];
      check_vector("attention_norm", l, w.attention_norm);
      check_matrix("attention.wq", l, w.attention.wq, c.d_model, c.q_dim());
      check_matrix("attention.wk", l, w.attention.wk, c.d_model, c.kv_dim());
      check_matrix("attention.wv", l, w.attention.wv, c.d_model, c.kv_dim());
      check_matrix("attention.wo", l, w.attention.wo, c.q_dim(), c.d_model);
      check_vector("ffn_norm", l, w.ffn_norm);
      check_matrix("ffn.w_gate", l, w.ffn.w_gate, c.d_model, c.ffn_dim);
      check_matrix("ffn.w_up", l, w.ffn.w_up, c.d_model, c.ffn_dim);
      check_matrix("ffn.w_down", l, w.ffn.w_down, c.ffn_dim, c.d_model);
    }
    check_vector("output_norm", -1, output_norm);
    if (c.tied_embeddings) {
      if (output.size() != 0) {
        detail::raise<InvalidArgument>(kWhere, "output is (", output.rows(), ", ", output.cols(),
                                       ") but config.tied_embeddings is set, expected it empty");
      }
    } else {
      check_matrix("output", -1, output, c.vocab_size, c.d_model);
    }
  }
};

namespace detail {

/// The checkpoint tensor `name` as a (rows, cols) fp32 matrix in [out, in] order; FormatError
/// naming the file and tensor when its shape differs.
[[nodiscard]] inline RowMatrix<float> load_gguf_matrix(const GgufReader& reader,
                                                       const std::string& name, Index rows,
                                                       Index cols) {
  const GgufTensorInfo& info = reader.tensor(name);
  if (info.n_dims != 2 || info.rows() != rows || info.cols() != cols) {
    raise<FormatError>("latentkv::load_llama_weights", reader.path().string(), ": tensor ",
                       detail::quoted(name), " has ", info.n_dims, " dims ne = [", info.ne[0], ", ",
                       info.ne[1], "], expected [", cols, ", ", rows, "]");
  }
  return reader.dequantize(info);
}

[[nodiscard]] inline Vector<float> load_gguf_vector(const GgufReader& reader,
                                                    const std::string& name, Index size) {
  const GgufTensorInfo& info = reader.tensor(name);
  if (info.n_dims != 1 || info.cols() != size) {
    raise<FormatError>("latentkv::load_llama_weights", reader.path().string(), ": tensor ",
                       detail::quoted(name), " has ", info.n_dims, " dims ne[0] = ", info.ne[0],
                       ", expected 1 dim of ", size);
  }
  const RowMatrix<float> row = reader.dequantize(info);
  return row.row(0).transpose();
}

}  // namespace detail

/// Loads every weight of a "llama" GGUF as fp32 (dequantizing quantized tensors), transposed to
/// math orientation, W_q and W_k un-permuted to Hugging Face order (see the notation block).
/// Tensor names are llama.cpp's: token_embd, output_norm, output (absent when tied),
/// blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}.
/// Throws FormatError naming the file and the tensor or key.
[[nodiscard]] inline LlamaWeights load_llama_weights(const GgufReader& reader) {
  constexpr const char* kWhere = "latentkv::load_llama_weights";
  const auto fail = [&](const auto&... parts) {
    detail::raise<FormatError>(kWhere, reader.path().string(), ": ", parts...);
  };
  LlamaWeights w;
  w.config = from_gguf(reader);
  const ModelConfig& c = w.config;
  if (c.architecture != "llama") {
    fail("general.architecture = ", detail::quoted(c.architecture),
         ", expected \"llama\" (the Q/K row order and RoPE pairing of other architectures differ)");
  }
  if (c.rope_dim != c.head_dim) {
    fail("llama.rope.dimension_count = ", c.rope_dim, " differs from the head size ", c.head_dim,
         ": partial rotary embeddings are not supported");
  }
  if (const GgufValue* scaling = reader.find("llama.rope.scaling.type")) {
    const auto* type = scaling->get_if<std::string_view>();
    if (type == nullptr || *type != "none") {
      fail("llama.rope.scaling.type is set: RoPE scaling is not supported");
    }
  }
  if (reader.find_tensor("rope_freqs.weight") != nullptr) {
    fail("tensor ", detail::quoted("rope_freqs.weight"),
         " (RoPE frequency factors) is not supported");
  }
  if (reader.contains("llama.expert_count") &&
      reader.get_integer<Index>("llama.expert_count") != 0) {
    fail("llama.expert_count is set: mixture-of-experts models are not supported");
  }

  w.token_embedding =
      detail::load_gguf_matrix(reader, "token_embd.weight", c.vocab_size, c.d_model);
  w.output_norm = detail::load_gguf_vector(reader, "output_norm.weight", c.d_model);
  if (!c.tied_embeddings) {
    w.output = detail::load_gguf_matrix(reader, "output.weight", c.vocab_size, c.d_model);
  }
  w.layers.resize(static_cast<std::size_t>(c.num_layers));
  for (Index l = 0; l < c.num_layers; ++l) {
    const std::string prefix = "blk." + std::to_string(l) + ".";
    for (const char* bias : {"attn_q.bias", "attn_k.bias", "attn_v.bias", "attn_output.bias"}) {
      if (reader.find_tensor(prefix + bias) != nullptr) {
        fail("tensor ", detail::quoted(prefix + bias), ": attention biases are not supported");
      }
    }
    const auto matrix = [&](const char* name, Index rows, Index cols) {
      return detail::load_gguf_matrix(reader, prefix + name, rows, cols);
    };
    LayerWeights& layer = w.layers[static_cast<std::size_t>(l)];
    layer.attention_norm = detail::load_gguf_vector(reader, prefix + "attn_norm.weight", c.d_model);
    layer.attention.wq =
        unpermute_qk_rows(matrix("attn_q.weight", c.q_dim(), c.d_model), c.num_heads).transpose();
    layer.attention.wk =
        unpermute_qk_rows(matrix("attn_k.weight", c.kv_dim(), c.d_model), c.num_kv_heads)
            .transpose();
    layer.attention.wv = matrix("attn_v.weight", c.kv_dim(), c.d_model).transpose();
    layer.attention.wo = matrix("attn_output.weight", c.d_model, c.q_dim()).transpose();
    layer.ffn_norm = detail::load_gguf_vector(reader, prefix + "ffn_norm.weight", c.d_model);
    layer.ffn.w_gate = matrix("ffn_gate.weight", c.ffn_dim, c.d_model).transpose();
    layer.ffn.w_up = matrix("ffn_up.weight", c.ffn_dim, c.d_model).transpose();
    layer.ffn.w_down = matrix("ffn_down.weight", c.d_model, c.ffn_dim).transpose();
  }
  w.validate();
  return w;
}

}  // namespace latentkv
