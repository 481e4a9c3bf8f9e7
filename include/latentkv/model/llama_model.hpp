// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The CPU reference forward pass of a LLaMA-family decoder (fp32, Eigen, OpenMP when enabled).
//   tokens (n) → h = E[tokens]                                  (n, d)   d = d_model
//   per layer l:  h += cache.attend(l, RMSNorm(h)·g_attn, p)    (n, d)   p = cache.length(0)
//                 h += SwiGLU(RMSNorm(h)·g_ffn)                 (n, d)   via (n, ffn_dim)
//   logits = RMSNorm(h)·g_out · headᵀ                           (n, V)   head = E when tied
//   RMSNorm(x) = x / sqrt(mean(x²) + eps);  SwiGLU(x) = (silu(x·W_gate) ⊙ x·W_up)·W_down
//
// Everything between the norm and the residual add of attention — projections, RoPE, the KV cache,
// softmax and W_o — belongs to the cache (model/kv_cache.hpp), so the dense cache and the latent
// caches run through this same code. A forward call appends its tokens after those already in the
// cache: prefill in one call or in chunks of any size gives the same logits (up to fp32 summation
// order), and decoding is a call with one token.
//
// Precision follows transformers' fp32 LlamaForCausalLM: the residual stream, norms, products and
// softmax are fp32 (the mean of squares of RMSNorm is summed in double and rounded to fp32 before
// eps is added). Token ids are checked (0 ≤ id < vocab_size); errors name the offending index.
//
// Threads: the large products run as independent slices (linalg/parallel.hpp, parallel_product)
// and attention as one task per (KV head, query block), under OpenMP. The model is immutable after
// construction: const member functions may run concurrently, each thread with its own cache.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <span>
#include <utility>

#include "latentkv/core/error.hpp"
#include "latentkv/io/gguf_reader.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/linalg/parallel.hpp"
#include "latentkv/model/kv_cache.hpp"
#include "latentkv/model/llama_weights.hpp"

namespace latentkv {

/// Receives logits a block of rows at a time: sink(first, logits), logits: (rows, vocab_size),
/// row r is the prediction after token first + r of the forward call.
template <class S>
concept LogitsSink = requires(S& sink, Index first, const MatrixCRef<float>& logits) {
  sink(first, logits);
};

/// RMSNorm of each row: out.row(t) = gain ⊙ (x.row(t) / sqrt(mean(x.row(t)²) + eps)).
/// x, out: (rows, d); gain: (d). `out` may alias `x`.
inline void rms_norm(const MatrixCRef<float>& x, const VectorCRef<float>& gain, float eps,
                     MatrixRef<float> out) {
  constexpr const char* kWhere = "latentkv::rms_norm";
  if (gain.size() != x.cols() || out.rows() != x.rows() || out.cols() != x.cols()) {
    detail::raise<InvalidArgument>(kWhere, "x is (", x.rows(), ", ", x.cols(), "), gain (",
                                   gain.size(), "), out (", out.rows(), ", ", out.cols(),
                                   "), expected gain (cols) and out shaped like x");
  }
  const Index d = x.cols();
  LATENTKV_OMP(parallel for if (x.size() >= (Index{1} << 16)))
  for (Index t = 0; t < x.rows(); ++t) {
    const double sum_squares = x.row(t).cast<double>().squaredNorm();
    const float variance = static_cast<float>(sum_squares / static_cast<double>(d));
    const float inverse_rms = 1.0f / std::sqrt(variance + eps);
    out.row(t) = (x.row(t) * inverse_rms).cwiseProduct(gain.transpose());
  }
}

class LlamaModel {
 public:
  /// Rows of logits computed per output-head product in the sink form of forward().
  static constexpr Index kLogitsBlock = 256;

  /// Takes ownership of validated weights. Caches refer to weights(): keep the model in place
  /// (do not move it) while a cache built from it is in use.
  explicit LlamaModel(LlamaWeights weights) : weights_(std::move(weights)) { weights_.validate(); }

  /// Loads a "llama" GGUF checkpoint (load_llama_weights).
  [[nodiscard]] static LlamaModel from_gguf(const GgufReader& reader) {
    return LlamaModel(load_llama_weights(reader));
  }

  [[nodiscard]] const ModelConfig& config() const noexcept { return weights_.config; }
  [[nodiscard]] const LlamaWeights& weights() const noexcept { return weights_; }

  /// Runs `tokens` after the cache's current tokens and returns the final hidden states, after the
  /// output norm: (tokens, d_model). The cache grows by tokens.size().
  template <class Cache>
  [[nodiscard]] RowMatrix<float> hidden_states(std::span<const std::int32_t> tokens,
                                               Cache& cache) const {
    detail::check_kv_cache<Cache>();
    constexpr const char* kWhere = "latentkv::LlamaModel::hidden_states";
    const ModelConfig& c = config();
    if (cache.num_layers() != c.num_layers) {
      detail::raise<InvalidArgument>(kWhere, "the cache has ", cache.num_layers(),
                                     " layers, the model ", c.num_layers);
    }
    const auto n = static_cast<Index>(tokens.size());
    RowMatrix<float> h(n, c.d_model);
    for (Index t = 0; t < n; ++t) {
      const std::int32_t id = tokens[static_cast<std::size_t>(t)];
      if (id < 0 || id >= c.vocab_size) {
        detail::raise<InvalidArgument>(kWhere, "tokens[", t, "] = ", id, ", expected 0..",
                                       c.vocab_size - 1, " (vocab_size - 1)");
      }
      h.row(t) = weights_.token_embedding.row(id);
    }
    if (n == 0) return h;
    const Index position = cache.length(0);
    RowMatrix<float> normed(n, c.d_model);
    RowMatrix<float> gate(n, c.ffn_dim);
    RowMatrix<float> up(n, c.ffn_dim);
    RowMatrix<float> mlp(n, c.d_model);
    for (Index l = 0; l < c.num_layers; ++l) {
      const LayerWeights& layer = weights_.layers[static_cast<std::size_t>(l)];
      rms_norm(h, layer.attention_norm, c.norm_eps, normed);
      h += cache.attend(l, normed, position);
      rms_norm(h, layer.ffn_norm, c.norm_eps, normed);
      parallel_product(normed, layer.ffn.w_gate, gate);
      parallel_product(normed, layer.ffn.w_up, up);
      gate.array() = gate.array() / (1.0f + (-gate.array()).exp()) * up.array();  // silu ⊙ up
      parallel_product(gate, layer.ffn.w_down, mlp);
      h += mlp;
    }
    rms_norm(h, weights_.output_norm, c.norm_eps, normed);
    return normed;
  }

  /// Logits of final hidden states: hidden (rows, d_model) → (rows, vocab_size).
  [[nodiscard]] RowMatrix<float> logits(const MatrixCRef<float>& hidden) const {
    check_hidden(hidden, "latentkv::LlamaModel::logits");
    RowMatrix<float> out(hidden.rows(), config().vocab_size);
    parallel_product(hidden, weights_.output_head().transpose(), out);
    return out;
  }

  /// Runs `tokens` after the cache's tokens and hands their logits to `on_logits` in blocks of at
  /// most kLogitsBlock rows, in order (see LogitsSink), so the whole (tokens, vocab_size) matrix
  /// never exists. batch_size > 0 runs the tokens through the layers that many at a time (bounded
  /// memory for long inputs; same results up to summation order); 0 = all at once.
  template <class Cache, class Sink>
  void forward(std::span<const std::int32_t> tokens, Cache& cache, Sink&& on_logits,
               Index batch_size = 0) const {
    static_assert(LogitsSink<Sink>,
                  "latentkv::LlamaModel::forward: the sink must be callable as "
                  "sink(Index first, const MatrixCRef<float>& logits)");
    if (batch_size < 0) {
      detail::raise<InvalidArgument>("latentkv::LlamaModel::forward", "batch_size = ", batch_size,
                                     ", expected >= 0 (0 = one batch)");
    }
    const auto n = static_cast<Index>(tokens.size());
    const Index batch = batch_size == 0 ? std::max<Index>(n, 1) : batch_size;
    RowMatrix<float> block;
    for (Index start = 0; start < n; start += batch) {
      const Index count = std::min(batch, n - start);
      const RowMatrix<float> hidden = hidden_states(
          tokens.subspan(static_cast<std::size_t>(start), static_cast<std::size_t>(count)), cache);
      for (Index first = 0; first < count; first += kLogitsBlock) {
        const Index rows = std::min(kLogitsBlock, count - first);
        block.resize(rows, config().vocab_size);
        parallel_product(hidden.middleRows(first, rows), weights_.output_head().transpose(), block);
        const MatrixCRef<float> view(block);
        on_logits(start + first, view);
      }
    }
  }

  /// Runs `tokens` after the cache's tokens and returns every logit: (tokens, vocab_size).
  template <class Cache>
  [[nodiscard]] RowMatrix<float> forward(std::span<const std::int32_t> tokens, Cache& cache) const {
    return logits(hidden_states(tokens, cache));
  }

  /// Runs `tokens` (at least one) after the cache's tokens and returns the logits after the last:
  /// (vocab_size). The generation step.
  template <class Cache>
  [[nodiscard]] Vector<float> forward_last(std::span<const std::int32_t> tokens,
                                           Cache& cache) const {
    if (tokens.empty()) {
      detail::raise<InvalidArgument>("latentkv::LlamaModel::forward_last",
                                     "tokens is empty, expected at least 1");
    }
    const RowMatrix<float> hidden = hidden_states(tokens, cache);
    RowMatrix<float> out(1, config().vocab_size);
    parallel_product(hidden.bottomRows(1), weights_.output_head().transpose(), out);
    return out.transpose();
  }

 private:
  void check_hidden(const MatrixCRef<float>& hidden, const char* where) const {
    if (hidden.cols() != config().d_model) {
      detail::raise<InvalidArgument>(where, "hidden has ", hidden.cols(),
                                     " columns, expected d_model = ", config().d_model);
    }
  }

  LlamaWeights weights_;
};

}  // namespace latentkv
