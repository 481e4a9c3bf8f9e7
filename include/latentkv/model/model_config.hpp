// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Hyper-parameters of a LLaMA-family decoder and how to read them from GGUF metadata.
//   L = num_layers, d = d_model, n_q = num_heads, n_kv = num_kv_heads, h = head_dim,
//   g = n_q / n_kv (group_size), q_dim = n_q·h, kv_dim = n_kv·h.
// Checkpoint shapes (row-major [out, in], DESIGN §1): W_q (q_dim, d), W_k and W_v (kv_dim, d),
// W_o (d, q_dim), token embedding (vocab, d).
//
// Q/K row order and RoPE (DESIGN §9). llama.cpp's converter (convert_hf_to_gguf.py,
// LlamaModel.permute) reorders the rows of W_q and W_k within each head so that ggml can apply
// "normal" RoPE to adjacent pairs: GGUF row 2i + j of a head is Hugging Face row j·h/2 + i (i <
// h/2, j ∈ {0, 1}); for W_k the head count used is n_kv. latentkv works in Hugging Face order:
// unpermute_qk_rows() undoes the reordering, after which RoPE is NeoX "rotate-half" on channel
// pairs (i, i + h/2) with frequency base^(-2i/h). The two conventions give identical attention
// scores (the permutation is applied to q and k alike and commutes with the rotation), but the
// channel order of K — and so of every per-head projection or factor computed from it — follows
// Hugging Face, matching transformers and the papers.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "latentkv/core/error.hpp"
#include "latentkv/io/gguf_reader.hpp"
#include "latentkv/linalg/matrix.hpp"

namespace latentkv {

struct ModelConfig {
  std::string architecture = "llama";  // general.architecture: the GGUF metadata key prefix
  Index num_layers = 0;                // L
  Index d_model = 0;                   // d
  Index num_heads = 0;                 // n_q
  Index num_kv_heads = 0;              // n_kv (n_q for multi-head attention)
  Index head_dim = 0;                  // h
  Index rope_dim = 0;                  // rotated channels per head (h for LLaMA)
  Index ffn_dim = 0;                   // SwiGLU hidden width
  Index vocab_size = 0;
  Index context_length = 0;  // training context; 0 when the file does not say
  float rope_base = 10000.0f;
  float norm_eps = 1e-5f;        // RMSNorm epsilon
  bool tied_embeddings = false;  // the output projection reuses the token embedding

  [[nodiscard]] Index group_size() const noexcept { return num_heads / num_kv_heads; }  // g
  [[nodiscard]] Index q_dim() const noexcept { return num_heads * head_dim; }
  [[nodiscard]] Index kv_dim() const noexcept { return num_kv_heads * head_dim; }

  /// Throws InvalidArgument naming the first field that is out of range.
  void validate() const {
    constexpr const char* kWhere = "latentkv::ModelConfig::validate";
    const auto positive = [&](const char* name, Index value) {
      if (value <= 0) detail::raise<InvalidArgument>(kWhere, name, " = ", value, ", expected > 0");
    };
    positive("num_layers", num_layers);
    positive("d_model", d_model);
    positive("num_heads", num_heads);
    positive("num_kv_heads", num_kv_heads);
    positive("head_dim", head_dim);
    positive("ffn_dim", ffn_dim);
    positive("vocab_size", vocab_size);
    if (num_heads % num_kv_heads != 0) {
      detail::raise<InvalidArgument>(kWhere, "num_kv_heads = ", num_kv_heads,
                                     " does not divide num_heads = ", num_heads);
    }
    if (head_dim % 2 != 0) {
      detail::raise<InvalidArgument>(kWhere, "head_dim = ", head_dim,
                                     ", expected an even number (RoPE rotates channel pairs)");
    }
    if (rope_dim <= 0 || rope_dim > head_dim || rope_dim % 2 != 0) {
      detail::raise<InvalidArgument>(kWhere, "rope_dim = ", rope_dim,
                                     ", expected an even number in 2..", head_dim, " (head_dim)");
    }
    if (context_length < 0) {
      detail::raise<InvalidArgument>(kWhere, "context_length = ", context_length,
                                     ", expected >= 0 (0 = unknown)");
    }
    if (!(std::isfinite(rope_base) && rope_base > 0.0f)) {
      detail::raise<InvalidArgument>(kWhere, "rope_base = ", rope_base,
                                     ", expected finite and > 0");
    }
    if (!(std::isfinite(norm_eps) && norm_eps > 0.0f)) {
      detail::raise<InvalidArgument>(kWhere, "norm_eps = ", norm_eps, ", expected finite and > 0");
    }
  }

  friend bool operator==(const ModelConfig&, const ModelConfig&) = default;
};

/// Reads the configuration from GGUF metadata under the general.architecture prefix (shown for
/// llama):
///   llama.block_count, .embedding_length, .feed_forward_length, .attention.head_count,
///   .attention.head_count_kv (default: head_count), .attention.key_length (default: d / n_q),
///   .rope.dimension_count (default: h), .rope.freq_base (default 10000, as llama.cpp),
///   .attention.layer_norm_rms_epsilon, .context_length (optional);
///   vocab_size = length of tokenizer.ggml.tokens, else llama.vocab_size (both present: must
///   agree); tied_embeddings = no output.weight tensor. token_embd.weight must be (vocab, d).
/// Integer keys may be stored with any integer type. Throws FormatError naming the file and the
/// key.
[[nodiscard]] inline ModelConfig from_gguf(const GgufReader& reader) {
  constexpr const char* kWhere = "latentkv::from_gguf";
  const auto fail = [&](const auto&... parts) {
    detail::raise<FormatError>(kWhere, reader.path().string(), ": ", parts...);
  };
  ModelConfig c;
  c.architecture = std::string(reader.get<std::string_view>("general.architecture"));
  const std::string prefix = c.architecture + ".";
  const auto key = [&](std::string_view suffix) { return prefix + std::string(suffix); };
  const auto integer = [&](std::string_view suffix) {
    return reader.get_integer<Index>(key(suffix));
  };
  const auto integer_or = [&](std::string_view suffix, Index fallback) {
    return reader.contains(key(suffix)) ? integer(suffix) : fallback;
  };

  c.num_layers = integer("block_count");
  c.d_model = integer("embedding_length");
  c.ffn_dim = integer("feed_forward_length");
  c.num_heads = integer("attention.head_count");
  c.num_kv_heads = integer_or("attention.head_count_kv", c.num_heads);
  if (!reader.contains(key("attention.key_length")) && c.num_heads > 0 &&
      c.d_model % c.num_heads != 0) {
    fail(key("embedding_length"), " = ", c.d_model, " is not a multiple of ",
         key("attention.head_count"), " = ", c.num_heads, " and ", key("attention.key_length"),
         " is missing");
  }
  c.head_dim = integer_or("attention.key_length", c.num_heads > 0 ? c.d_model / c.num_heads : 0);
  const Index value_dim = integer_or("attention.value_length", c.head_dim);
  if (value_dim != c.head_dim) {
    fail(key("attention.value_length"), " = ", value_dim, " differs from the key head size ",
         c.head_dim, ": unsupported");
  }
  c.rope_dim = integer_or("rope.dimension_count", c.head_dim);
  c.rope_base = reader.get_or<float>(key("rope.freq_base"), 10000.0f);
  c.norm_eps = reader.get<float>(key("attention.layer_norm_rms_epsilon"));
  c.context_length = integer_or("context_length", 0);

  const bool has_tokens = reader.contains("tokenizer.ggml.tokens");
  const bool has_vocab_size = reader.contains(key("vocab_size"));
  if (!has_tokens && !has_vocab_size) {
    fail("neither tokenizer.ggml.tokens nor ", key("vocab_size"), " gives the vocabulary size");
  }
  c.vocab_size = has_tokens ? static_cast<Index>(reader.get_array("tokenizer.ggml.tokens").size())
                            : integer("vocab_size");
  if (has_tokens && has_vocab_size && integer("vocab_size") != c.vocab_size) {
    fail(key("vocab_size"), " = ", integer("vocab_size"), " disagrees with the ", c.vocab_size,
         " entries of tokenizer.ggml.tokens");
  }

  const GgufTensorInfo& embedding = reader.tensor("token_embd.weight");
  if (embedding.n_dims != 2 || embedding.cols() != c.d_model || embedding.rows() != c.vocab_size) {
    fail("tensor 'token_embd.weight' has ", embedding.n_dims, " dims ne = [", embedding.ne[0], ", ",
         embedding.ne[1], "], expected [", c.d_model, ", ", c.vocab_size,
         "] (d_model, vocab_size)");
  }
  c.tied_embeddings = reader.find_tensor("output.weight") == nullptr;

  try {
    c.validate();
  } catch (const InvalidArgument& e) {
    fail("invalid configuration: ", e.what());
  }
  return c;
}

/// Returns the rows of a GGUF W_q or W_k (or a bias) in Hugging Face order: `w` is (n_heads·h,
/// cols), h = head size (even), and HF row j·h/2 + i of each head is GGUF row 2i + j of that head.
/// Pass n_q heads for W_q and n_kv heads for W_k (as the converter did). The exact inverse of
/// llama.cpp's LlamaModel.permute; see the notation block for why latentkv uses this order.
template <class Derived>
[[nodiscard]] RowMatrix<typename Derived::Scalar> unpermute_qk_rows(
    const Eigen::MatrixBase<Derived>& w, Index n_heads) {
  constexpr const char* kWhere = "latentkv::unpermute_qk_rows";
  if (n_heads <= 0 || w.rows() % n_heads != 0 || (w.rows() / n_heads) % 2 != 0) {
    detail::raise<InvalidArgument>(kWhere, "rows = ", w.rows(), ", n_heads = ", n_heads,
                                   ", expected n_heads > 0 dividing rows into heads of even size");
  }
  const Index h = w.rows() / n_heads;
  RowMatrix<typename Derived::Scalar> out(w.rows(), w.cols());
  for (Index head = 0; head < n_heads; ++head) {
    for (Index i = 0; i < h / 2; ++i) {
      for (Index j = 0; j < 2; ++j)
        out.row(head * h + j * (h / 2) + i) = w.row(head * h + 2 * i + j);
    }
  }
  return out;
}

}  // namespace latentkv
