// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// LatentKvCache: the route-1 latent KV cache (DESIGN §2–3), a model of KvCache. It runs a
// CompressedModel's factors (compress/compressed_model.hpp) on the model's own W_q:
//   per compressed layer  C_k: (length, Σ_j r_k,j)  pre-RoPE key latents c^k = x·A_k,j, group j
//                                                   in columns [Σ_{j'<j} r_k,j', + r_k,j)
//                         C_v: (length, Σ_j r_v,j)  value latents c^v = x·A_v,j
//   per dense layer       K, V: (length, n_kv·h)    fp32 post-RoPE keys and values (as
//                                                   DenseKvCache), for compressed == false
//   attend(l, x, p): q = RoPE(x·W_q); append x·A_k,j, x·A_v,j (x: (tokens, d_model));
//                    o = latent_attention(q, C_k, B_k, C_v) (tokens, Σ_j s·g·r_v,j);
//                    out = Σ_i o_i·W̃_o,j(i)[:, block m]  (tokens, d_model)
//   bytes per token = Σ_l (width_k + width_v)·sizeof(Storage) (dense layers: 2·n_kv·h·4)
// Storage: `float` (fp32) or `std::uint16_t` (IEEE fp16 bits, core/half.hpp): the latents are
// rounded to fp16 when appended; every product and the softmax stay fp32.
// Storage `QuantizedLatentView` (quant/latent_codec.hpp; alias QuantizedLatentKvCache): each
// group's latents are quantized when appended (QuantizedLatents, a LatentQuantConfig per side)
// and the kernel decodes one key block at a time to fp32; with rotate, the cache keeps a private
// copy of the factors with the Walsh–Hadamard rotation folded in (quant/hadamard.hpp:
// A' = A·R, B_k' = Rᵀ·B_k, W̃_o' = Rᵀ·W̃_o), so the caller's model may be a temporary there.
//   bytes per token = Σ_l Σ_j latent_bytes_per_token(r_j, codec, context) (scales, zeros, fp16
//                     sinks and window counted at context, default 4096)
//
// The output projection needs no copy of W̃_o: W̃_o,j (r_v, s·g·d) row-major is, read as a
// (r_v·s·g, d) matrix, row a·s·g + m = W̃_o,j[a, block m]; so the kernel's head-major output is
// transposed per token to (a, m) order (tokens × s·g·r_v numbers) and meets that view in one
// product per group.
//
// One RoPE cos/sin table (rope_table(), positions 0..capacity) serves every layer. Storage grows
// geometrically and reset() keeps it. Holds pointers to the weights and the compressed model:
// both must outlive the cache. Everything is validated at construction (InvalidArgument naming
// the layer, group and tensor).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "latentkv/attention/causal_attention.hpp"
#include "latentkv/attention/latent_attention.hpp"
#include "latentkv/compress/compressed_model.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/core/rope.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/linalg/parallel.hpp"
#include "latentkv/model/kv_cache.hpp"
#include "latentkv/model/llama_weights.hpp"
#include "latentkv/quant/hadamard.hpp"
#include "latentkv/quant/latent_codec.hpp"

namespace latentkv {

template <LatentStorage Storage = float>
class LatentKvCache {
 public:
  using StorageType = Storage;
  /// Whether latents are stored as codes (Storage = QuantizedLatentView).
  static constexpr bool kQuantized = LatentBlockDecoder<Storage>;
  /// Element of the latent matrices (a quantized cache keeps its codes elsewhere).
  using Element = std::conditional_t<kQuantized, float, Storage>;
  /// Read-only view of stored latents: (length, width), row stride ≥ width.
  using LatentView = Eigen::Ref<const RowMatrix<Element>>;

  /// `capacity`: tokens per layer to allocate up front (0: grow on demand). Throws
  /// InvalidArgument when the compressed model does not fit the weights (config, plan, or the
  /// shape of any factor).
  LatentKvCache(const LlamaWeights& weights, const CompressedModel& model,
                Index capacity = 0) requires(!kQuantized)
      : weights_(&weights), model_(&model) {
    validate(weights, model, capacity);
    build(capacity);
  }

  /// A quantized cache: `quant` says how each side is coded (InvalidArgument naming key./value.
  /// and the field when unsupported); with quant.rotate the factors are copied and rotated here.
  LatentKvCache(const LlamaWeights& weights, const CompressedModel& model,
                const LatentQuantConfig& quant, Index capacity = 0) requires kQuantized
      : weights_(&weights),
        quant_(quant) {
    quant.key.validate("latentkv::LatentKvCache: key codec");
    quant.value.validate("latentkv::LatentKvCache: value codec");
    validate(weights, model, capacity);
    owned_ = std::make_shared<const CompressedModel>(quant.rotate ? rotate_latents(model) : model);
    model_ = owned_.get();
    build(capacity);
  }

  /// The cache keeps pointers: temporaries would dangle.
  LatentKvCache(const LlamaWeights&, CompressedModel&&, Index = 0) = delete;
  LatentKvCache(LlamaWeights&&, const CompressedModel&, Index = 0) = delete;
  LatentKvCache(LlamaWeights&&, const CompressedModel&, const LatentQuantConfig&,
                Index = 0) = delete;

 private:
  /// The codec of layer l's side (0: K, 1: V) group j: the side's codec with quant_.layer_bits'
  /// width when given (InvalidArgument naming the layer, side and group when it does not fit).
  [[nodiscard]] LatentCodec codec_of(Index l, int side, std::size_t j) const {
    constexpr const char* kWhere = "latentkv::LatentKvCache: layer_bits";
    LatentCodec codec = side == 0 ? quant_.key : quant_.value;
    if (quant_.layer_bits.empty()) return codec;
    if (static_cast<Index>(quant_.layer_bits.size()) != weights_->config.num_layers) {
      detail::raise<InvalidArgument>(kWhere, "has ", quant_.layer_bits.size(),
                                     " layers, the model ", weights_->config.num_layers);
    }
    const LayerBits& bits = quant_.layer_bits[static_cast<std::size_t>(l)];
    const std::vector<int>& list = side == 0 ? bits.k : bits.v;
    const std::size_t groups = side == 0 ? model_->layers[static_cast<std::size_t>(l)].k.size()
                                         : model_->layers[static_cast<std::size_t>(l)].v.size();
    if (list.size() != groups) {
      detail::raise<InvalidArgument>(kWhere, "layer ", l, side == 0 ? " bits_k" : " bits_v",
                                     " has ", list.size(), " entries, expected ", groups,
                                     " (one per group)");
    }
    codec.bits = list[j];
    if (codec.bits >= 8) codec.grid = QuantGrid::kUniform;
    const std::string where = std::string(kWhere) + " layer " + std::to_string(l) +
                              (side == 0 ? " bits_k[" : " bits_v[") + std::to_string(j) + "]";
    codec.validate(where.c_str());
    return codec;
  }

  void build(Index capacity) {
    const CompressedModel& model = *model_;
    const ModelConfig& c = weights_->config;
    const Index s = model.heads_per_group();
    shape_ = {c.num_heads, c.num_kv_heads, s, c.head_dim, c.rope_dim};
    layers_.resize(static_cast<std::size_t>(c.num_layers));
    for (Index l = 0; l < c.num_layers; ++l) {
      const CompressedLayer& from = model.layers[static_cast<std::size_t>(l)];
      Layer& layer = layers_[static_cast<std::size_t>(l)];
      layer.compressed = from.compressed;
      if (!from.compressed) {
        layer.keys.resize(capacity, c.kv_dim());
        layer.values.resize(capacity, c.kv_dim());
        continue;
      }
      layer.up_k.reserve(from.k.size());
      for (std::size_t j = 0; j < from.k.size(); ++j) {
        const LatentKeyGroup& g = from.k[j];
        layer.up_k.emplace_back(g.up);
        layer.width_k += g.rank();
        if constexpr (kQuantized) layer.quant_k.emplace_back(g.rank(), codec_of(l, 0, j));
      }
      for (std::size_t j = 0; j < from.v.size(); ++j) {
        const LatentValueGroup& g = from.v[j];
        layer.rank_v.push_back(g.rank());
        layer.width_v += g.rank();
        if constexpr (kQuantized) layer.quant_v.emplace_back(g.rank(), codec_of(l, 1, j));
      }
      if constexpr (!kQuantized) {
        layer.latent_k.resize(capacity, layer.width_k);
        layer.latent_v.resize(capacity, layer.width_v);
      }
    }
    rope_ = rope_table(capacity, c.rope_dim, c.rope_base);
  }

 public:
  /// Appends x's tokens to `layer` and returns their attention output (see kv_cache.hpp):
  /// x: (tokens, d_model) → (tokens, d_model).
  [[nodiscard]] RowMatrix<float> attend(Index layer, const MatrixCRef<float>& x, Index position) {
    constexpr const char* kWhere = "latentkv::LatentKvCache::attend";
    const ModelConfig& c = weights_->config;
    check_layer(layer, kWhere);
    Layer& cache = layers_[static_cast<std::size_t>(layer)];
    detail::check_attend_input(kWhere, layer, position, cache.length, x.cols(), c.d_model);
    const Index tokens = x.rows();
    reserve_layer(cache, position + tokens);
    const AttentionWeights& w = weights_->layers[static_cast<std::size_t>(layer)].attention;
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));

    RowMatrix<float> queries(tokens, c.q_dim());
    parallel_product(x, w.wq, queries);
    rope_rotate_rows(queries.data(), tokens, queries.cols(), static_cast<int>(c.num_heads),
                     static_cast<int>(c.head_dim), static_cast<int>(c.rope_dim), c.rope_base,
                     position);
    RowMatrix<float> out(tokens, c.d_model);
    if (!cache.compressed) {
      auto new_keys = cache.keys.middleRows(position, tokens);
      parallel_product(x, w.wk, new_keys);
      parallel_product(x, w.wv, cache.values.middleRows(position, tokens));
      rope_rotate_rows(new_keys.data(), tokens, cache.keys.cols(), static_cast<int>(c.num_kv_heads),
                       static_cast<int>(c.head_dim), static_cast<int>(c.rope_dim), c.rope_base,
                       position);
      cache.length = position + tokens;
      const RowMatrix<float> heads =
          causal_attention(queries, keys(layer), values(layer), c.num_heads, c.num_kv_heads,
                           position, scale);  // (tokens, n_q·h)
      parallel_product(heads, w.wo, out);
      return out;
    }

    const CompressedLayer& factors = model_->layers[static_cast<std::size_t>(layer)];
    reserve_rope(position + tokens);
    RowMatrix<float> latent;  // (tokens, r) fp32 latents before rounding to Storage
    const auto append = [&](const RowMatrix<float>& down, RowMatrix<Element>& store, Index col) {
      const Index r = down.cols();
      if constexpr (kQuantized) {
        latent.resize(tokens, r);
        parallel_product(x, down, latent);
        (void)store;
        (void)col;
      } else if constexpr (std::same_as<Storage, float>) {
        parallel_product(x, down, store.block(position, col, tokens, r));
      } else {
        latent.resize(tokens, r);
        parallel_product(x, down, latent);
        for (Index t = 0; t < tokens; ++t) {
          for (Index a = 0; a < r; ++a) {
            store(position + t, col + a) = latent_from_float<Storage>(latent(t, a));
          }
        }
      }
    };
    Index col = 0;
    for (std::size_t j = 0; j < factors.k.size(); ++j) {
      append(factors.k[j].down, cache.latent_k, col);
      if constexpr (kQuantized) cache.quant_k[j].append(latent);
      col += factors.k[j].rank();
    }
    col = 0;
    for (std::size_t j = 0; j < factors.v.size(); ++j) {
      append(factors.v[j].down, cache.latent_v, col);
      if constexpr (kQuantized) cache.quant_v[j].append(latent);
      col += factors.v[j].rank();
    }
    cache.length = position + tokens;

    RowMatrix<float> heads;  // (tokens, Σ_j s·g·r_v,j), head-major per group
    if constexpr (kQuantized) {
      heads = quantized_heads(queries, cache, position, scale);
    } else {
      heads = latent_attention<Storage>(queries, latent_k(layer),
                                        std::span<const MatrixCRef<float>>(cache.up_k),
                                        latent_v(layer), std::span<const Index>(cache.rank_v),
                                        rope_.topRows(cache.length), shape_, position, scale);
    }
    const Index sg = shape_.heads_per_group * c.group_size();
    RowMatrix<float> mixed;  // (tokens, r_v·s·g): group j's outputs in (a, m) order
    RowMatrix<float> partial;
    Index offset = 0;
    for (std::size_t j = 0; j < factors.v.size(); ++j) {
      const LatentValueGroup& g = factors.v[j];
      const Index rv = g.rank();
      mixed.resize(tokens, rv * sg);
      for (Index t = 0; t < tokens; ++t) {
        for (Index m = 0; m < sg; ++m) {
          for (Index a = 0; a < rv; ++a) mixed(t, a * sg + m) = heads(t, offset + m * rv + a);
        }
      }
      const Eigen::Map<const RowMatrix<float>> w_out(g.out.data(), rv * sg, c.d_model);
      if (j == 0) {
        parallel_product(mixed, w_out, out);
      } else {
        partial.resize(tokens, c.d_model);
        parallel_product(mixed, w_out, partial);
        out += partial;
      }
      offset += sg * rv;
    }
    return out;
  }

  /// Forgets every token of every layer (the memory stays allocated).
  void reset() noexcept {
    for (Layer& layer : layers_) {
      layer.length = 0;
      for (QuantizedLatents& q : layer.quant_k) q.clear();
      for (QuantizedLatents& q : layer.quant_v) q.clear();
    }
  }

  [[nodiscard]] Index length(Index layer) const {
    check_layer(layer, "latentkv::LatentKvCache::length");
    return layers_[static_cast<std::size_t>(layer)].length;
  }

  [[nodiscard]] Index num_layers() const noexcept { return static_cast<Index>(layers_.size()); }

  /// Σ_l (width_k + width_v)·sizeof(Storage); a dense layer counts 2·n_kv·h·sizeof(float).
  /// Quantized: bytes_per_token_at(4096) rounded to the nearest byte.
  [[nodiscard]] std::int64_t bytes_per_token() const noexcept {
    if constexpr (kQuantized) return std::llround(bytes_per_token_at(4096));
    std::int64_t total = 0;
    for (const Layer& layer : layers_) {
      total += layer.compressed ? static_cast<std::int64_t>(layer.width_k + layer.width_v) *
                                      static_cast<std::int64_t>(sizeof(Storage))
                                : 2 * static_cast<std::int64_t>(weights_->config.kv_dim()) *
                                      static_cast<std::int64_t>(sizeof(float));
    }
    return total;
  }

  /// Bytes per token at context length `context`: quantized, every code, scale, zero, sink and
  /// window byte (latent_bytes_per_token()); otherwise bytes_per_token(). Dense layers: fp32 K, V.
  [[nodiscard]] double bytes_per_token_at(Index context) const {
    if constexpr (!kQuantized) {
      return static_cast<double>(bytes_per_token());
    } else {
      double total = 0.0;
      for (const Layer& layer : layers_) {
        if (!layer.compressed) {
          total += 2.0 * static_cast<double>(weights_->config.kv_dim()) * sizeof(float);
          continue;
        }
        for (const QuantizedLatents& q : layer.quant_k) {
          total += latent_bytes_per_token(q.width(), q.codec(), context);
        }
        for (const QuantizedLatents& q : layer.quant_v) {
          total += latent_bytes_per_token(q.width(), q.codec(), context);
        }
      }
      return total;
    }
  }

  /// Numbers cached per token over all layers: Σ_l (width_k + width_v) (dense: 2·n_kv·h).
  [[nodiscard]] Index numbers_per_token() const noexcept {
    Index total = 0;
    for (const Layer& layer : layers_) {
      total += layer.compressed ? layer.width_k + layer.width_v : 2 * weights_->config.kv_dim();
    }
    return total;
  }

  /// The factors the cache runs (quantized with rotate: the rotated copy).
  [[nodiscard]] const CompressedModel& factors() const noexcept { return *model_; }

  /// Quantized key latents of compressed layer `layer`, group `group`.
  [[nodiscard]] const QuantizedLatents& quantized_k(Index layer,
                                                    Index group) const requires kQuantized {
    return quantized_group(compressed_layer(layer, "latentkv::LatentKvCache::quantized_k").quant_k,
                           group, "latentkv::LatentKvCache::quantized_k");
  }

  /// Quantized value latents of compressed layer `layer`, group `group`.
  [[nodiscard]] const QuantizedLatents& quantized_v(Index layer,
                                                    Index group) const requires kQuantized {
    return quantized_group(compressed_layer(layer, "latentkv::LatentKvCache::quantized_v").quant_v,
                           group, "latentkv::LatentKvCache::quantized_v");
  }

  /// Whether `layer` runs on latents (false: dense K/V).
  [[nodiscard]] bool compressed(Index layer) const {
    check_layer(layer, "latentkv::LatentKvCache::compressed");
    return layers_[static_cast<std::size_t>(layer)].compressed;
  }

  /// Key latents of a compressed layer: (length, Σ_j r_k,j), pre-RoPE.
  [[nodiscard]] LatentView latent_k(Index layer) const requires(!kQuantized) {
    const Layer& cache = compressed_layer(layer, "latentkv::LatentKvCache::latent_k");
    return cache.latent_k.topRows(cache.length);
  }

  /// Value latents of a compressed layer: (length, Σ_j r_v,j).
  [[nodiscard]] LatentView latent_v(Index layer) const requires(!kQuantized) {
    const Layer& cache = compressed_layer(layer, "latentkv::LatentKvCache::latent_v");
    return cache.latent_v.topRows(cache.length);
  }

  /// Post-RoPE keys of a dense layer: (length, n_kv·h).
  [[nodiscard]] MatrixCRef<float> keys(Index layer) const {
    const Layer& cache = dense_layer(layer, "latentkv::LatentKvCache::keys");
    return cache.keys.topRows(cache.length);
  }

  /// Values of a dense layer: (length, n_kv·h).
  [[nodiscard]] MatrixCRef<float> values(Index layer) const {
    const Layer& cache = dense_layer(layer, "latentkv::LatentKvCache::values");
    return cache.values.topRows(cache.length);
  }

 private:
  struct Layer {
    bool compressed = true;
    RowMatrix<Element> latent_k;            // (capacity, width_k); rows [0, length) valid
    RowMatrix<Element> latent_v;            // (capacity, width_v)
    std::vector<QuantizedLatents> quant_k;  // quantized: (G) per group, (length, r_k,j) each
    std::vector<QuantizedLatents> quant_v;  // quantized: (G) (length, r_v,j)
    std::vector<MatrixCRef<float>> up_k;    // B_k,j views into the compressed model
    std::vector<Index> rank_v;              // r_v,j
    Index width_k = 0;                      // Σ_j r_k,j
    Index width_v = 0;                      // Σ_j r_v,j
    RowMatrix<float> keys;                  // dense layers: (capacity, n_kv·h) post-RoPE
    RowMatrix<float> values;                // dense layers: (capacity, n_kv·h)
    Index length = 0;
  };

  static void validate(const LlamaWeights& weights, const CompressedModel& model, Index capacity) {
    constexpr const char* kWhere = "latentkv::LatentKvCache";
    if (capacity < 0) {
      detail::raise<InvalidArgument>(kWhere, "capacity = ", capacity, ", expected >= 0");
    }
    weights.validate();
    const ModelConfig& c = weights.config;
    const ModelConfig& mc = model.config;
    const auto same = [&](const char* field, auto ours, auto theirs) {
      if (ours != theirs) {
        detail::raise<InvalidArgument>(kWhere, "the compressed model has config.", field, " = ",
                                       theirs, ", the weights ", ours);
      }
    };
    same("num_layers", c.num_layers, mc.num_layers);
    same("d_model", c.d_model, mc.d_model);
    same("num_heads", c.num_heads, mc.num_heads);
    same("num_kv_heads", c.num_kv_heads, mc.num_kv_heads);
    same("head_dim", c.head_dim, mc.head_dim);
    same("rope_dim", c.rope_dim, mc.rope_dim);
    same("rope_base", c.rope_base, mc.rope_base);
    const RankPlan& plan = model.plan;
    if (plan.num_layers() != c.num_layers || plan.num_kv_heads != c.num_kv_heads ||
        plan.head_dim != c.head_dim) {
      detail::raise<InvalidArgument>(kWhere, "the plan has ", plan.num_layers(), " layers and ",
                                     plan.num_kv_heads, " KV heads of ", plan.head_dim,
                                     ", the model ", c.num_layers, ", ", c.num_kv_heads, ", ",
                                     c.head_dim);
    }
    plan.validate(model.max_rank());  // heads_per_group divides n_kv; ranks in 1..max_rank
    if (static_cast<Index>(model.layers.size()) != c.num_layers) {
      detail::raise<InvalidArgument>(kWhere, "the compressed model has ", model.layers.size(),
                                     " layers, expected ", c.num_layers);
    }
    const Index s = model.heads_per_group();
    const Index groups = model.num_groups();
    const Index d = c.d_model;
    const Index sh = s * c.head_dim;
    const Index sgd = s * c.group_size() * d;
    for (Index l = 0; l < c.num_layers; ++l) {
      const CompressedLayer& layer = model.layers[static_cast<std::size_t>(l)];
      const LayerRanks& ranks = plan.layers[static_cast<std::size_t>(l)];
      if (!layer.compressed) {
        if (!layer.k.empty() || !layer.v.empty()) {
          detail::raise<InvalidArgument>(kWhere, "layer ", l, " is dense but has ", layer.k.size(),
                                         " key and ", layer.v.size(),
                                         " value groups, expected none");
        }
        for (const auto* list : {&ranks.k, &ranks.v}) {
          for (const Index r : *list) {
            if (r != model.max_rank()) {
              detail::raise<InvalidArgument>(kWhere, "layer ", l,
                                             " is dense, but the plan gives it rank ", r,
                                             ", expected ", model.max_rank());
            }
          }
        }
        continue;
      }
      if (static_cast<Index>(layer.k.size()) != groups ||
          static_cast<Index>(layer.v.size()) != groups) {
        detail::raise<InvalidArgument>(kWhere, "layer ", l, " has ", layer.k.size(), " key and ",
                                       layer.v.size(), " value groups, expected ", groups, " (",
                                       c.num_kv_heads, " KV heads in groups of ", s, ")");
      }
      const auto check = [&](Index g, const char* tensor, const RowMatrix<float>& m, Index rows,
                             Index cols, const char* expected) {
        if (m.rows() != rows || m.cols() != cols) {
          detail::raise<InvalidArgument>(kWhere, "layer ", l, " group ", g, ": ", tensor, " is (",
                                         m.rows(), ", ", m.cols(), "), expected (", rows, ", ",
                                         cols, ") ", expected);
        }
      };
      for (Index g = 0; g < groups; ++g) {
        const LatentKeyGroup& k = layer.k[static_cast<std::size_t>(g)];
        const LatentValueGroup& v = layer.v[static_cast<std::size_t>(g)];
        const Index rk = ranks.k[static_cast<std::size_t>(g)];
        const Index rv = ranks.v[static_cast<std::size_t>(g)];
        check(g, "A_k", k.down, d, rk, "(d_model, rank_k of the plan)");
        check(g, "B_k", k.up, rk, sh, "(rank_k, s·head_dim)");
        check(g, "A_v", v.down, d, rv, "(d_model, rank_v of the plan)");
        check(g, "W̃_o", v.out, rv, sgd, "(rank_v, s·g·d_model)");
      }
    }
  }

  void check_layer(Index layer, const char* where) const {
    if (layer < 0 || layer >= num_layers()) {
      detail::raise<InvalidArgument>(where, "layer = ", layer, ", expected 0..", num_layers() - 1);
    }
  }

  const Layer& compressed_layer(Index layer, const char* where) const {
    check_layer(layer, where);
    const Layer& cache = layers_[static_cast<std::size_t>(layer)];
    if (!cache.compressed) {
      detail::raise<InvalidArgument>(where, "layer ", layer,
                                     " is dense (compressed == false): it has keys() and values()");
    }
    return cache;
  }

  const Layer& dense_layer(Index layer, const char* where) const {
    check_layer(layer, where);
    const Layer& cache = layers_[static_cast<std::size_t>(layer)];
    if (cache.compressed) {
      detail::raise<InvalidArgument>(where, "layer ", layer,
                                     " is compressed: it has latent_k() and latent_v()");
    }
    return cache;
  }

  static const QuantizedLatents& quantized_group(const std::vector<QuantizedLatents>& groups,
                                                 Index group, const char* where) {
    if (group < 0 || group >= static_cast<Index>(groups.size())) {
      detail::raise<InvalidArgument>(where, "group = ", group, ", expected 0..",
                                     static_cast<Index>(groups.size()) - 1);
    }
    return groups[static_cast<std::size_t>(group)];
  }

  /// The quantized layer's latent attention: as latent_attention(), one QuantizedLatentView per
  /// group and side for the kernel to decode block by block. (tokens, Σ_j s·g·r_v,j).
  RowMatrix<float> quantized_heads(const RowMatrix<float>& queries, const Layer& cache,
                                   Index position, float scale) const {
    const Index s = shape_.heads_per_group;
    const Index g = shape_.num_heads / shape_.num_kv_heads;
    const Index h = shape_.head_dim;
    const std::size_t groups = cache.quant_k.size();
    std::vector<QuantizedLatentView> views(2 * groups);
    std::vector<LatentAttentionParams<Storage>> params(groups);
    RowMatrix<float> out(queries.rows(), s * g * cache.width_v);
    Index col_v = 0;
    for (std::size_t j = 0; j < groups; ++j) {
      views[2 * j] = cache.quant_k[j].view();
      views[2 * j + 1] = cache.quant_v[j].view();
      const MatrixCRef<float>& b = cache.up_k[j];
      LatentAttentionParams<Storage>& p = params[j];
      p.queries = queries.data() + static_cast<Index>(j) * s * g * h;
      p.ld_queries = queries.cols();
      p.latent_k = &views[2 * j];
      p.ld_latent_k = b.rows();
      p.up_k = b.data();
      p.ld_up_k = b.outerStride();
      p.latent_v = &views[2 * j + 1];
      p.ld_latent_v = cache.rank_v[j];
      p.rope = rope_.data();
      p.ld_rope = rope_.cols();
      p.out = out.data() + s * g * col_v;
      p.ld_out = out.cols();
      p.tokens = queries.rows();
      p.length = cache.length;
      p.first_position = position;
      p.heads_per_group = s;
      p.group_size = g;
      p.head_dim = h;
      p.rope_dim = shape_.rope_dim;
      p.rank_k = b.rows();
      p.rank_v = cache.rank_v[j];
      p.scale = scale;
      col_v += p.rank_v;
    }
    run_latent_attention(std::span<const LatentAttentionParams<Storage>>(params));
    return out;
  }

  static void reserve_layer(Layer& layer, Index needed) {
    if constexpr (kQuantized) {
      if (layer.compressed) return;  // QuantizedLatents grow on append
    }
    const Index have = layer.compressed ? layer.latent_k.rows() : layer.keys.rows();
    if (needed <= have) return;
    const Index capacity = std::max(needed, 2 * have);
    if (layer.compressed) {
      layer.latent_k.conservativeResize(capacity, Eigen::NoChange);
      layer.latent_v.conservativeResize(capacity, Eigen::NoChange);
    } else {
      layer.keys.conservativeResize(capacity, Eigen::NoChange);
      layer.values.conservativeResize(capacity, Eigen::NoChange);
    }
  }

  void reserve_rope(Index needed) {
    const Index have = rope_.rows();
    if (needed <= have) return;
    const ModelConfig& c = weights_->config;
    const Index capacity = std::max(needed, 2 * have);
    rope_.conservativeResize(capacity, Eigen::NoChange);
    rope_.bottomRows(capacity - have) = rope_table(capacity - have, c.rope_dim, c.rope_base, have);
  }

  const LlamaWeights* weights_;
  const CompressedModel* model_ = nullptr;
  std::shared_ptr<const CompressedModel> owned_;  // quantized: the (rotated) factors model_ shows
  LatentQuantConfig quant_;                       // quantized: the codecs
  LatentAttentionShape shape_;
  std::vector<Layer> layers_;
  RowMatrix<float> rope_;  // (capacity, rope_dim) rope_table() of positions 0..
};

static_assert(KvCache<LatentKvCache<float>>);
static_assert(KvCache<LatentKvCache<std::uint16_t>>);

/// The latent cache with quantized latents (quant/latent_codec.hpp).
using QuantizedLatentKvCache = LatentKvCache<QuantizedLatentView>;
static_assert(KvCache<QuantizedLatentKvCache>);
static_assert(std::is_trivially_copyable_v<LatentAttentionParams<QuantizedLatentView>>);

}  // namespace latentkv
