// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// ProjectedKvCache: the route-2 latent KV cache (DESIGN §3 route 2, MatryoshkaKV), a model of
// KvCache. It runs a ProjectedModel's bases (project/projected_model.hpp) on the model's own
// W_q, W_k, W_v, W_o; attention never leaves latent space and no key is rebuilt:
//   per layer  C_k: (length, Σ_j r_k,j)  c^k = (RoPE(x·W_k)[group j] − μ_k,j)·P_k,j, group j in
//                                        columns [Σ_{j'<j} r_k,j', + r_k,j)
//              C_v: (length, Σ_j r_v,j)  c^v = x·A_v,j − μ_v,j·P_v,j with A_v,j = W_v[:, group j]·
//                                        P_v,j (d, r_v,j), folded at construction
//   attend(l, x, p): q = RoPE(x·W_q); q̃_i = q_i·P_k,j[rows of KV head e(i)] (r_k,j);
//                    append c^k, c^v; o = route-2 latent attention (tokens, Σ_j s·g·r_v,j);
//                    out = o·W̃_o + b  (tokens, d_model) with W̃_o: (Σ_j s·g·r_v,j, d), the rows
//                    of query head i = j·s·g + m: P_v,j[rows of e(i)]ᵀ·W_o[rows of head i], and
//                    b = Σ_i μ_v,j[e(i)]·W_o[rows of head i] (the value mean as an output bias)
//   bytes per token = Σ_l (width_k + width_v)·sizeof(Storage)
// The key mean drops out of the softmax and is applied only where it changes the latents (the
// stored c^k are centred). At full rank (P square) the cache reproduces DenseKvCache up to fp32
// rounding, for any means.
// Storage: `float` or `std::uint16_t` (fp16 bits): latents rounded when appended; all arithmetic
// fp32. Or QuantizedLatentView (QuantizedProjectedKvCache): each group's latents are coded when
// appended (QuantizedLatents, quant/latent_codec.hpp, one LatentQuantConfig codec per side) and
// the kernel decodes one key block at a time; with quant.rotate every truncated basis is
// right-multiplied by a Walsh–Hadamard rotation R (quant/hadamard.hpp) before anything is folded:
// P·R is another orthonormal basis of the same span, so scores and outputs are unchanged in exact
// arithmetic while outlier channels are spread over a code group (the same reason as route 1).
// Holds a pointer to the weights (they must outlive the cache) and its own copies of the folded
// matrices, so the ProjectedModel may be a temporary. Validated at construction (InvalidArgument
// naming the layer, side and group).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "latentkv/attention/latent_attention.hpp"
#include "latentkv/core/error.hpp"
#include "latentkv/core/latent_attention_params.hpp"
#include "latentkv/core/rope.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/linalg/parallel.hpp"
#include "latentkv/model/kv_cache.hpp"
#include "latentkv/model/llama_weights.hpp"
#include "latentkv/project/projected_model.hpp"
#include "latentkv/quant/hadamard.hpp"
#include "latentkv/quant/latent_codec.hpp"

namespace latentkv {

template <LatentStorage Storage = float>
class ProjectedKvCache {
 public:
  using StorageType = Storage;
  /// Whether latents are stored as codes (Storage = QuantizedLatentView).
  static constexpr bool kQuantized = LatentBlockDecoder<Storage>;
  /// Element of the latent matrices (a quantized cache keeps its codes elsewhere).
  using Element = std::conditional_t<kQuantized, float, Storage>;

  /// `capacity`: tokens per layer to allocate up front (0: grow on demand). Throws
  /// InvalidArgument when the projections do not fit the weights.
  ProjectedKvCache(const LlamaWeights& weights, const ProjectedModel& projections,
                   Index capacity = 0) requires(!kQuantized)
      : weights_(&weights) {
    check(weights, projections, capacity);
    build(projections, capacity);
  }

  /// A quantized cache: `quant` says how each side is coded (InvalidArgument naming key./value.
  /// and the field when unsupported; per-layer bits are not supported for route 2); with
  /// quant.rotate the bases are rotated (see the notation block).
  ProjectedKvCache(const LlamaWeights& weights, const ProjectedModel& projections,
                   const LatentQuantConfig& quant, Index capacity = 0) requires kQuantized
      : weights_(&weights),
        quant_(quant) {
    quant.key.validate("latentkv::ProjectedKvCache: key codec");
    quant.value.validate("latentkv::ProjectedKvCache: value codec");
    if (!quant.layer_bits.empty()) {
      detail::raise<InvalidArgument>("latentkv::ProjectedKvCache",
                                     "layer_bits: per-layer bit "
                                     "widths are not supported for route 2 (one codec per side)");
    }
    check(weights, projections, capacity);
    build(projections, capacity);
  }

  /// The cache keeps a pointer to the weights: a temporary would dangle.
  ProjectedKvCache(LlamaWeights&&, const ProjectedModel&, Index = 0) = delete;
  ProjectedKvCache(LlamaWeights&&, const ProjectedModel&, const LatentQuantConfig&,
                   Index = 0) = delete;

  /// Appends x's tokens to `layer` and returns their attention output (see kv_cache.hpp):
  /// x: (tokens, d_model) → (tokens, d_model).
  [[nodiscard]] RowMatrix<float> attend(Index layer, const MatrixCRef<float>& x, Index position) {
    constexpr const char* kWhere = "latentkv::ProjectedKvCache::attend";
    const ModelConfig& c = weights_->config;
    check_layer(layer, kWhere);
    Layer& cache = layers_[static_cast<std::size_t>(layer)];
    detail::check_attend_input(kWhere, layer, position, cache.length, x.cols(), c.d_model);
    const Index tokens = x.rows();
    reserve_layer(cache, position + tokens);
    const AttentionWeights& w = weights_->layers[static_cast<std::size_t>(layer)].attention;
    const Index h = c.head_dim;
    const Index s = heads_per_group_;
    const Index g = c.group_size();
    const Index sg = s * g;
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(h)));

    // Rotated queries and keys, as the dense cache has them.
    RowMatrix<float> queries(tokens, c.q_dim());
    parallel_product(x, w.wq, queries);
    RowMatrix<float> keys(tokens, c.kv_dim());
    parallel_product(x, w.wk, keys);
    const auto rotate = [&](RowMatrix<float>& m, Index heads) {
      rope_rotate_rows(m.data(), tokens, m.cols(), static_cast<int>(heads), static_cast<int>(h),
                       static_cast<int>(c.rope_dim), c.rope_base, position);
    };
    rotate(queries, c.num_heads);
    rotate(keys, c.num_kv_heads);

    // Append the latents, projecting the queries on the way: q̃ (tokens, Σ_j s·g·r_k,j).
    RowMatrix<float> projected(tokens, sg * cache.width_k);
    RowMatrix<float> latent;
    Index col_k = 0;
    Index col_v = 0;
    for (std::size_t j = 0; j < cache.groups.size(); ++j) {
      const Group& grp = cache.groups[j];
      const Index rk = grp.key_basis.cols();
      const Index rv = grp.value_down.cols();
      const auto jj = static_cast<Index>(j);
      latent.resize(tokens, rk);
      latent.noalias() =
          (keys.middleCols(jj * s * h, s * h).rowwise() - grp.key_mean) * grp.key_basis;
      store(cache, 0, j, position, col_k, latent);
      latent.resize(tokens, rv);
      parallel_product(x, grp.value_down, latent);
      latent.rowwise() -= grp.value_offset;
      store(cache, 1, j, position, col_v, latent);
      for (Index m = 0; m < sg; ++m) {
        const Index e = m / g;  // KV head within the group
        projected.middleCols(sg * col_k + m * rk, rk).noalias() =
            queries.middleCols((jj * sg + m) * h, h) * grp.key_basis.middleRows(e * h, h);
      }
      col_k += rk;
      col_v += rv;
    }
    cache.length = position + tokens;

    RowMatrix<float> heads(tokens, sg * cache.width_v);  // head-major per group
    std::vector<LatentAttentionParams<Storage>> params(cache.groups.size());
    [[maybe_unused]] std::vector<Storage> views;  // quantized: one view per group and side
    if constexpr (kQuantized) {
      for (std::size_t j = 0; j < cache.groups.size(); ++j) {
        views.push_back(cache.quant_k[j].view());
        views.push_back(cache.quant_v[j].view());
      }
    }
    col_k = 0;
    col_v = 0;
    for (std::size_t j = 0; j < cache.groups.size(); ++j) {
      const Group& grp = cache.groups[j];
      LatentAttentionParams<Storage>& p = params[j];
      p.route = LatentRoute::kProjected;
      p.rank_k = grp.key_basis.cols();
      p.rank_v = grp.value_down.cols();
      p.queries = projected.data() + sg * col_k;
      p.ld_queries = projected.cols();
      if constexpr (kQuantized) {
        p.latent_k = &views[2 * j];
        p.ld_latent_k = p.rank_k;
        p.latent_v = &views[2 * j + 1];
        p.ld_latent_v = p.rank_v;
      } else {
        p.latent_k = cache.latent_k.data() + col_k;
        p.ld_latent_k = cache.latent_k.cols();
        p.latent_v = cache.latent_v.data() + col_v;
        p.ld_latent_v = cache.latent_v.cols();
      }
      p.out = heads.data() + sg * col_v;
      p.ld_out = heads.cols();
      p.tokens = tokens;
      p.length = cache.length;
      p.first_position = position;
      p.heads_per_group = s;
      p.group_size = g;
      p.head_dim = h;
      p.scale = scale;
      col_k += p.rank_k;
      col_v += p.rank_v;
    }
    run_latent_attention(std::span<const LatentAttentionParams<Storage>>(params));

    RowMatrix<float> out(tokens, c.d_model);
    parallel_product(heads, cache.out, out);
    out.rowwise() += cache.bias;
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
    check_layer(layer, "latentkv::ProjectedKvCache::length");
    return layers_[static_cast<std::size_t>(layer)].length;
  }

  [[nodiscard]] Index num_layers() const noexcept { return static_cast<Index>(layers_.size()); }

  /// Σ_l (width_k + width_v)·sizeof(Storage); quantized: the bytes at the current length of
  /// layer 0 (bytes_per_token_at(), at least 1 token).
  [[nodiscard]] std::int64_t bytes_per_token() const noexcept {
    if constexpr (kQuantized) {
      const Index length = layers_.empty() ? 1 : std::max<Index>(layers_[0].length, 1);
      return static_cast<std::int64_t>(std::ceil(bytes_per_token_at(length)));
    } else {
      return numbers_per_token() * static_cast<std::int64_t>(sizeof(Storage));
    }
  }

  /// Bytes per token at context length `context`: quantized, every code, scale, zero, sink and
  /// window byte (latent_bytes_per_token()); otherwise bytes_per_token().
  [[nodiscard]] double bytes_per_token_at(Index context) const noexcept {
    if constexpr (!kQuantized) {
      return static_cast<double>(bytes_per_token());
    } else {
      double total = 0.0;
      for (const Layer& layer : layers_) {
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

  /// Numbers cached per token over all layers: Σ_l (width_k + width_v).
  [[nodiscard]] Index numbers_per_token() const noexcept {
    Index total = 0;
    for (const Layer& layer : layers_) total += layer.width_k + layer.width_v;
    return total;
  }

  /// Key latents of `layer`: (length, Σ_j r_k,j), centred and projected post-RoPE keys.
  [[nodiscard]] Eigen::Ref<const RowMatrix<Storage>> latent_k(Index layer) const
      requires(!kQuantized) {
    check_layer(layer, "latentkv::ProjectedKvCache::latent_k");
    const Layer& cache = layers_[static_cast<std::size_t>(layer)];
    return cache.latent_k.topRows(cache.length);
  }

  /// Value latents of `layer`: (length, Σ_j r_v,j), centred and projected values.
  [[nodiscard]] Eigen::Ref<const RowMatrix<Storage>> latent_v(Index layer) const
      requires(!kQuantized) {
    check_layer(layer, "latentkv::ProjectedKvCache::latent_v");
    const Layer& cache = layers_[static_cast<std::size_t>(layer)];
    return cache.latent_v.topRows(cache.length);
  }

 private:
  struct Group {
    Eigen::RowVectorXf key_mean;      // (s·h) μ_k
    RowMatrix<float> key_basis;       // (s·h, r_k) P_k
    RowMatrix<float> value_down;      // (d, r_v) A_v = W_v[:, group]·P_v
    Eigen::RowVectorXf value_offset;  // (r_v) μ_v·P_v
  };
  struct Layer {
    std::vector<Group> groups;
    RowMatrix<float> out;         // (Σ_j s·g·r_v,j, d) W̃_o
    Eigen::RowVectorXf bias;      // (d) b
    RowMatrix<Element> latent_k;  // (capacity, width_k); rows [0, length) valid (not quantized)
    RowMatrix<Element> latent_v;  // (capacity, width_v)
    std::vector<QuantizedLatents> quant_k;  // quantized: (G) (length, r_k,j) each
    std::vector<QuantizedLatents> quant_v;  // quantized: (G) (length, r_v,j)
    Index width_k = 0;
    Index width_v = 0;
    Index length = 0;
  };

  void build(const ProjectedModel& projections, Index capacity) {
    const ModelConfig& c = weights_->config;
    heads_per_group_ = projections.heads_per_group;
    const Index s = heads_per_group_;
    const Index h = c.head_dim;
    const Index g = c.group_size();
    const Index sg = s * g;
    layers_.resize(static_cast<std::size_t>(c.num_layers));
    for (Index l = 0; l < c.num_layers; ++l) {
      const ProjectedLayer& from = projections.layers[static_cast<std::size_t>(l)];
      const AttentionWeights& w = weights_->layers[static_cast<std::size_t>(l)].attention;
      Layer& layer = layers_[static_cast<std::size_t>(l)];
      for (const ProjectedBasis& b : from.v) layer.width_v += b.rank();
      layer.out.resize(sg * layer.width_v, c.d_model);
      layer.bias = Eigen::RowVectorXf::Zero(c.d_model);
      Index row = 0;
      for (std::size_t j = 0; j < from.k.size(); ++j) {
        const auto jj = static_cast<Index>(j);
        ProjectedBasis kb = from.k[j];
        ProjectedBasis vb = from.v[j];
        if constexpr (kQuantized) {
          if (quant_.rotate) {  // P ← P·R: the same span, outliers spread over a code group
            rotate_rows(kb.basis, hadamard_signs(kb.rank()));
            rotate_rows(vb.basis, hadamard_signs(vb.rank()));
          }
          layer.quant_k.emplace_back(kb.rank(), quant_.key);
          layer.quant_v.emplace_back(vb.rank(), quant_.value);
        }
        Group grp;
        grp.key_mean = kb.mean.transpose();
        grp.key_basis = kb.basis;
        grp.value_down = w.wv.middleCols(jj * s * h, s * h) * vb.basis;
        grp.value_offset = vb.mean.transpose() * vb.basis;
        for (Index m = 0; m < sg; ++m) {
          const Index e = m / g;
          const Index head = jj * sg + m;
          const auto wo = w.wo.middleRows(head * h, h);  // (h, d)
          layer.out.middleRows(row, vb.rank()).noalias() =
              vb.basis.middleRows(e * h, h).transpose() * wo;
          layer.bias.noalias() += vb.mean.segment(e * h, h).transpose() * wo;
          row += vb.rank();
        }
        layer.width_k += kb.rank();
        layer.groups.push_back(std::move(grp));
      }
      if constexpr (!kQuantized) {
        layer.latent_k.resize(capacity, layer.width_k);
        layer.latent_v.resize(capacity, layer.width_v);
      }
    }
  }

  static void check(const LlamaWeights& weights, const ProjectedModel& projections,
                    Index capacity) {
    if (capacity < 0) {
      detail::raise<InvalidArgument>("latentkv::ProjectedKvCache", "capacity = ", capacity,
                                     ", expected >= 0");
    }
    weights.validate();
    projections.validate(weights.config);
  }

  /// Stores `latent` (tokens, r) of group j's side (0: K, 1: V): rounded into rows
  /// [position, +tokens), columns [col, +r) of the side's matrix, or appended as codes.
  static void store(Layer& layer, int side, std::size_t j, Index position, Index col,
                    const RowMatrix<float>& latent) {
    if constexpr (kQuantized) {
      (side == 0 ? layer.quant_k : layer.quant_v)[j].append(latent);
      return;
    } else {
      RowMatrix<Element>& to = side == 0 ? layer.latent_k : layer.latent_v;
      store_rows(to, position, col, latent);
    }
  }

  static void store_rows(RowMatrix<Element>& to, Index position, Index col,
                         const RowMatrix<float>& latent) {
    if constexpr (std::same_as<Element, float>) {
      to.block(position, col, latent.rows(), latent.cols()) = latent;
    } else {
      for (Index t = 0; t < latent.rows(); ++t) {
        for (Index a = 0; a < latent.cols(); ++a) {
          to(position + t, col + a) = latent_from_float<Element>(latent(t, a));
        }
      }
    }
  }

  void check_layer(Index layer, const char* where) const {
    if (layer < 0 || layer >= num_layers()) {
      detail::raise<InvalidArgument>(where, "layer = ", layer, ", expected 0..", num_layers() - 1);
    }
  }

  static void reserve_layer(Layer& layer, Index needed) {
    if constexpr (kQuantized) return;  // QuantizedLatents grow on append
    if (needed <= layer.latent_k.rows()) return;
    const Index capacity = std::max(needed, 2 * layer.latent_k.rows());
    layer.latent_k.conservativeResize(capacity, Eigen::NoChange);
    layer.latent_v.conservativeResize(capacity, Eigen::NoChange);
  }

  const LlamaWeights* weights_;
  LatentQuantConfig quant_;  // quantized only
  Index heads_per_group_ = 0;
  std::vector<Layer> layers_;
};

/// The route-2 cache with coded latents (see the notation block).
using QuantizedProjectedKvCache = ProjectedKvCache<QuantizedLatentView>;

static_assert(KvCache<ProjectedKvCache<float>>);
static_assert(KvCache<ProjectedKvCache<std::uint16_t>>);
static_assert(KvCache<QuantizedProjectedKvCache>);

}  // namespace latentkv
