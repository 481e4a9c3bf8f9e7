// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// A tiny random LLaMA for the synthetic model tests (not public API), and an independent naive
// forward pass in double written from the formulas, not from latentkv's code:
//   L = 2 layers, d = 32, n_q = 4, n_kv = 2 (g = 2), h = 8, ffn = 48, vocab = 61, RoPE base 1e4.
// Weights are seeded Gaussians scaled so activations stay O(1) and attention is far from uniform.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/llama_weights.hpp"
#include "latentkv/model/model_config.hpp"

namespace latentkv::testing {

[[nodiscard]] inline ModelConfig tiny_llama_config(bool tied = true) {
  ModelConfig c;
  c.num_layers = 2;
  c.d_model = 32;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.rope_dim = 8;
  c.ffn_dim = 48;
  c.vocab_size = 61;
  c.context_length = 256;
  c.rope_base = 10000.0f;
  c.norm_eps = 1e-5f;
  c.tied_embeddings = tied;
  return c;
}

[[nodiscard]] inline RowMatrix<float> random_matrix(Index rows, Index cols, double stddev,
                                                    std::mt19937_64& engine) {
  std::normal_distribution<double> normal(0.0, stddev);
  RowMatrix<float> m(rows, cols);
  for (Index i = 0; i < rows; ++i) {
    for (Index j = 0; j < cols; ++j) m(i, j) = static_cast<float>(normal(engine));
  }
  return m;
}

[[nodiscard]] inline Vector<float> random_gain(Index size, std::mt19937_64& engine) {
  std::normal_distribution<double> normal(1.0, 0.2);
  Vector<float> v(size);
  for (Index i = 0; i < size; ++i) v(i) = static_cast<float>(normal(engine));
  return v;
}

/// Random weights for `c` (math orientation). Query/key projections are scaled up so attention
/// scores spread over several units.
[[nodiscard]] inline LlamaWeights random_llama_weights(const ModelConfig& c, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  const double in_d = 1.0 / std::sqrt(static_cast<double>(c.d_model));
  LlamaWeights w;
  w.config = c;
  w.token_embedding = random_matrix(c.vocab_size, c.d_model, 1.0, engine);
  w.layers.resize(static_cast<std::size_t>(c.num_layers));
  for (LayerWeights& layer : w.layers) {
    layer.attention_norm = random_gain(c.d_model, engine);
    layer.attention.wq = random_matrix(c.d_model, c.q_dim(), 2.0 * in_d, engine);
    layer.attention.wk = random_matrix(c.d_model, c.kv_dim(), 2.0 * in_d, engine);
    layer.attention.wv = random_matrix(c.d_model, c.kv_dim(), in_d, engine);
    layer.attention.wo = random_matrix(c.q_dim(), c.d_model,
                                       1.0 / std::sqrt(static_cast<double>(c.q_dim())), engine);
    layer.ffn_norm = random_gain(c.d_model, engine);
    layer.ffn.w_gate = random_matrix(c.d_model, c.ffn_dim, in_d, engine);
    layer.ffn.w_up = random_matrix(c.d_model, c.ffn_dim, in_d, engine);
    layer.ffn.w_down = random_matrix(c.ffn_dim, c.d_model,
                                     1.0 / std::sqrt(static_cast<double>(c.ffn_dim)), engine);
  }
  w.output_norm = random_gain(c.d_model, engine);
  if (!c.tied_embeddings) w.output = random_matrix(c.vocab_size, c.d_model, 1.0, engine);
  return w;
}

/// Seeded token ids in [0, vocab).
[[nodiscard]] inline std::vector<std::int32_t> random_tokens(Index count, Index vocab,
                                                             std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(vocab - 1));
  std::vector<std::int32_t> ids(static_cast<std::size_t>(count));
  for (std::int32_t& id : ids) id = pick(engine);
  return ids;
}

// ---- the naive reference, in double
// --------------------------------------------------------------

using RowMatrixD = RowMatrix<double>;

/// RoPE of one head, from the formula: channel pairs (i, i + r/2), angle p·base^(-2i/r).
inline void naive_rope(double* x, Index rope_dim, double base, Index position) {
  for (Index i = 0; i < rope_dim / 2; ++i) {
    const double angle =
        static_cast<double>(position) *
        std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(rope_dim));
    const double a = x[i];
    const double b = x[i + rope_dim / 2];
    x[i] = a * std::cos(angle) - b * std::sin(angle);
    x[i + rope_dim / 2] = b * std::cos(angle) + a * std::sin(angle);
  }
}

/// One query head against its KV head, token by token: q (T, h) at positions p0.., k, v (S, h)
/// at positions 0..S-1 → (T, h). Causal: query t sees keys 0..p0+t.
[[nodiscard]] inline RowMatrixD naive_head_attention(const RowMatrixD& q, const RowMatrixD& k,
                                                     const RowMatrixD& v, Index first_position) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.cols()));
  RowMatrixD out = RowMatrixD::Zero(q.rows(), v.cols());
  for (Index t = 0; t < q.rows(); ++t) {
    const Index visible = first_position + t + 1;
    std::vector<double> p(static_cast<std::size_t>(visible));
    double max = -INFINITY;
    for (Index s = 0; s < visible; ++s) {
      double dot = 0.0;
      for (Index c = 0; c < q.cols(); ++c) dot += q(t, c) * k(s, c);
      p[static_cast<std::size_t>(s)] = dot * scale;
      max = std::max(max, dot * scale);
    }
    double sum = 0.0;
    for (double& e : p) {
      e = std::exp(e - max);
      sum += e;
    }
    for (Index s = 0; s < visible; ++s) {
      out.row(t) += (p[static_cast<std::size_t>(s)] / sum) * v.row(s);
    }
  }
  return out;
}

[[nodiscard]] inline RowMatrixD naive_rms_norm(const RowMatrixD& x, const Vector<float>& gain,
                                               double eps) {
  RowMatrixD out(x.rows(), x.cols());
  for (Index t = 0; t < x.rows(); ++t) {
    const double ms = x.row(t).squaredNorm() / static_cast<double>(x.cols());
    out.row(t) = x.row(t) / std::sqrt(ms + eps);
    for (Index j = 0; j < x.cols(); ++j) out(t, j) *= static_cast<double>(gain(j));
  }
  return out;
}

/// Attention of one layer with its projections, head by head: x (T, d) RMS-normed inputs at
/// positions 0..T-1 → (T, d) after W_o. Query head i uses KV head i / (n_q / n_kv).
[[nodiscard]] inline RowMatrixD naive_attention(const ModelConfig& c, const AttentionWeights& w,
                                                const RowMatrixD& x) {
  const Index h = c.head_dim;
  RowMatrixD q = x * w.wq.cast<double>();
  RowMatrixD k = x * w.wk.cast<double>();
  const RowMatrixD v = x * w.wv.cast<double>();
  for (Index t = 0; t < x.rows(); ++t) {
    for (Index head = 0; head < c.num_heads; ++head) {
      naive_rope(&q(t, head * h), c.rope_dim, c.rope_base, t);
    }
    for (Index head = 0; head < c.num_kv_heads; ++head) {
      naive_rope(&k(t, head * h), c.rope_dim, c.rope_base, t);
    }
  }
  RowMatrixD heads(x.rows(), c.q_dim());
  const Index group = c.num_heads / c.num_kv_heads;
  for (Index head = 0; head < c.num_heads; ++head) {
    const Index kv = head / group;
    heads.middleCols(head * h, h) = naive_head_attention(
        q.middleCols(head * h, h), k.middleCols(kv * h, h), v.middleCols(kv * h, h), 0);
  }
  return heads * w.wo.cast<double>();
}

/// The whole model in double: tokens (T) → logits (T, vocab).
[[nodiscard]] inline RowMatrixD naive_forward(const LlamaWeights& w,
                                              std::span<const std::int32_t> tokens) {
  const ModelConfig& c = w.config;
  const auto n = static_cast<Index>(tokens.size());
  RowMatrixD h(n, c.d_model);
  for (Index t = 0; t < n; ++t) {
    h.row(t) = w.token_embedding.row(tokens[static_cast<std::size_t>(t)]).cast<double>();
  }
  for (const LayerWeights& layer : w.layers) {
    h += naive_attention(c, layer.attention, naive_rms_norm(h, layer.attention_norm, c.norm_eps));
    const RowMatrixD x = naive_rms_norm(h, layer.ffn_norm, c.norm_eps);
    RowMatrixD gate = x * layer.ffn.w_gate.cast<double>();
    const RowMatrixD up = x * layer.ffn.w_up.cast<double>();
    for (Index i = 0; i < gate.rows(); ++i) {
      for (Index j = 0; j < gate.cols(); ++j) {
        gate(i, j) = gate(i, j) / (1.0 + std::exp(-gate(i, j))) * up(i, j);
      }
    }
    h += gate * layer.ffn.w_down.cast<double>();
  }
  const RowMatrixD out = naive_rms_norm(h, w.output_norm, c.norm_eps);
  const RowMatrix<float>& head = c.tied_embeddings ? w.token_embedding : w.output;
  return out * head.cast<double>().transpose();
}

}  // namespace latentkv::testing
