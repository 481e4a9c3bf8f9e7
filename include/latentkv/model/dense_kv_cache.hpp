// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// DenseKvCache: the uncompressed fp32 KV cache, the first model of the KvCache concept and the
// reference the latent caches are measured against.
//   per layer  K: (length, n_kv·h) post-RoPE keys, V: (length, n_kv·h) values
//   attend(l, x, p): q = RoPE(x·W_q), k = RoPE(x·W_k), v = x·W_v  (x: (tokens, d_model));
//                    append k, v; o = causal_attention(q, K, V) (tokens, n_q·h); return o·W_o
//   bytes per token = 2·L·n_kv·h·4
// Channels are in Hugging Face order (llama_weights.hpp), so K's columns match transformers' key
// states. Storage grows geometrically; reset() keeps it, so reusing one cache for many sequences
// allocates once. Holds a pointer to the weights: they must outlive the cache.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "latentkv/attention/causal_attention.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/core/rope.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/linalg/parallel.hpp"
#include "latentkv/model/kv_cache.hpp"
#include "latentkv/model/llama_weights.hpp"

namespace latentkv {

class DenseKvCache {
 public:
  /// `capacity`: tokens per layer to allocate up front (0: grow on demand).
  explicit DenseKvCache(const LlamaWeights& weights, Index capacity = 0) : weights_(&weights) {
    if (capacity < 0) {
      detail::raise<InvalidArgument>("latentkv::DenseKvCache", "capacity = ", capacity,
                                     ", expected >= 0");
    }
    const ModelConfig& c = weights.config;
    layers_.resize(static_cast<std::size_t>(c.num_layers));
    for (Layer& layer : layers_) {
      layer.keys.resize(capacity, c.kv_dim());
      layer.values.resize(capacity, c.kv_dim());
    }
  }

  /// Appends x's tokens to `layer` and returns their attention output (see kv_cache.hpp):
  /// x: (tokens, d_model) → (tokens, d_model).
  [[nodiscard]] RowMatrix<float> attend(Index layer, const MatrixCRef<float>& x, Index position) {
    constexpr const char* kWhere = "latentkv::DenseKvCache::attend";
    const ModelConfig& c = weights_->config;
    check_layer(layer, kWhere);
    Layer& cache = layers_[static_cast<std::size_t>(layer)];
    detail::check_attend_input(kWhere, layer, position, cache.length, x.cols(), c.d_model);
    const Index tokens = x.rows();
    reserve_layer(cache, position + tokens);
    const AttentionWeights& w = weights_->layers[static_cast<std::size_t>(layer)].attention;

    RowMatrix<float> queries(tokens, c.q_dim());
    parallel_product(x, w.wq, queries);
    auto new_keys = cache.keys.middleRows(position, tokens);
    parallel_product(x, w.wk, new_keys);
    parallel_product(x, w.wv, cache.values.middleRows(position, tokens));
    const auto rotate = [&](float* data, Index row_stride, Index heads) {
      rope_rotate_rows(data, tokens, row_stride, static_cast<int>(heads),
                       static_cast<int>(c.head_dim), static_cast<int>(c.rope_dim), c.rope_base,
                       position);
    };
    rotate(queries.data(), queries.cols(), c.num_heads);
    rotate(new_keys.data(), cache.keys.cols(), c.num_kv_heads);
    cache.length = position + tokens;

    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
    const RowMatrix<float> heads =
        causal_attention(queries, keys(layer), values(layer), c.num_heads, c.num_kv_heads, position,
                         scale);  // (tokens, n_q·h)
    RowMatrix<float> out(tokens, c.d_model);
    parallel_product(heads, w.wo, out);
    return out;
  }

  /// Forgets every token of every layer (the memory stays allocated).
  void reset() noexcept {
    for (Layer& layer : layers_) layer.length = 0;
  }

  [[nodiscard]] Index length(Index layer) const {
    check_layer(layer, "latentkv::DenseKvCache::length");
    return layers_[static_cast<std::size_t>(layer)].length;
  }

  [[nodiscard]] Index num_layers() const noexcept { return static_cast<Index>(layers_.size()); }

  /// 2·L·n_kv·h·sizeof(float): K and V of every layer.
  [[nodiscard]] std::int64_t bytes_per_token() const noexcept {
    const ModelConfig& c = weights_->config;
    return 2 * static_cast<std::int64_t>(c.num_layers) * c.kv_dim() *
           static_cast<std::int64_t>(sizeof(float));
  }

  /// Post-RoPE keys of `layer`: (length, n_kv·h).
  [[nodiscard]] MatrixCRef<float> keys(Index layer) const {
    check_layer(layer, "latentkv::DenseKvCache::keys");
    const Layer& cache = layers_[static_cast<std::size_t>(layer)];
    return cache.keys.topRows(cache.length);
  }

  /// Values of `layer`: (length, n_kv·h).
  [[nodiscard]] MatrixCRef<float> values(Index layer) const {
    check_layer(layer, "latentkv::DenseKvCache::values");
    const Layer& cache = layers_[static_cast<std::size_t>(layer)];
    return cache.values.topRows(cache.length);
  }

 private:
  struct Layer {
    RowMatrix<float> keys;    // (capacity, n_kv·h); rows [0, length) are valid
    RowMatrix<float> values;  // (capacity, n_kv·h)
    Index length = 0;
  };

  void check_layer(Index layer, const char* where) const {
    if (layer < 0 || layer >= num_layers()) {
      detail::raise<InvalidArgument>(where, "layer = ", layer, ", expected 0..", num_layers() - 1);
    }
  }

  static void reserve_layer(Layer& layer, Index needed) {
    if (needed <= layer.keys.rows()) return;
    const Index capacity = std::max(needed, 2 * layer.keys.rows());
    layer.keys.conservativeResize(capacity, Eigen::NoChange);
    layer.values.conservativeResize(capacity, Eigen::NoChange);
  }

  const LlamaWeights* weights_;
  std::vector<Layer> layers_;
};

static_assert(KvCache<DenseKvCache>);

}  // namespace latentkv
