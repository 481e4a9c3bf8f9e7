// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The KvCache concept: where a KV cache plugs into the model.
//   x:   (tokens, d_model)  RMS-normed input of a layer's attention for new tokens at absolute
//                           positions position .. position + tokens − 1
//   out: (tokens, d_model)  the attention output after W_o, added to the residual stream by the
//   model
//
// The plug-in point is a layer's whole attention — projections, RoPE, the cache and W_o — not a
// store of k and v rows, because the latent caches of DESIGN §2–3 cannot be written as one:
//   - they cache c = x·A (route 1) or a projection of RoPE(k) (route 2), not k and v;
//   - route 1 rebuilds keys per block from c·B_k and rotates them inside the attention loop;
//   - the value side attends in latent space and folds B_v into W̃_o = B_v·W_o, so the output
//     projection belongs to the cache as well.
// So the model owns everything outside attention (embedding, norms, MLP, head) and a cache owns
// the rest; a new cache is a new type, and the model code does not change.
//
// Contract:
//   attend(layer, x, position)  appends the tokens of x to layer `layer` and returns their
//                               attention output; position must equal length(layer) (positions
//                               are contiguous from 0, and layers are visited in order 0..L−1 for
//                               each batch of tokens). Throws InvalidArgument otherwise.
//   reset()                     forgets every token (keeps allocated memory for reuse)
//   length(layer)               tokens held by that layer
//   num_layers()                layers the cache serves (the model checks it against its own)
//   bytes_per_token()           bytes the cache stores per token, summed over layers
// A cache is bound to one model's weights (it holds a reference to them); using it with another
// model is a caller error the types cannot catch.
#pragma once

#include <concepts>
#include <cstdint>

#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"

namespace latentkv {

template <class C>
concept KvCache = requires(C& cache, const C& const_cache, Index layer, const MatrixCRef<float>& x,
                           Index position) {
  { cache.attend(layer, x, position) } -> std::same_as<RowMatrix<float>>;
  cache.reset();
  { const_cache.length(layer) } -> std::convertible_to<Index>;
  { const_cache.num_layers() } -> std::convertible_to<Index>;
  { const_cache.bytes_per_token() } -> std::convertible_to<std::int64_t>;
};

namespace detail {

/// The checks every cache's attend() starts with: the new tokens continue the layer (position ==
/// the tokens it holds) and x is (tokens, d_model). Throws InvalidArgument naming the layer.
inline void check_attend_input(const char* where, Index layer, Index position, Index length,
                               Index x_cols, Index d_model) {
  if (position != length) {
    raise<InvalidArgument>(where, "layer ", layer, ": position = ", position, ", expected ", length,
                           " (the tokens the layer holds; call reset() to start over)");
  }
  if (x_cols != d_model) {
    raise<InvalidArgument>(where, "layer ", layer, ": x has ", x_cols,
                           " columns, expected d_model = ", d_model);
  }
}

/// Member-by-member diagnostics for a type that should model KvCache (STYLE §3): use in a
/// template taking a cache so a missing member is named instead of a wall of template errors.
template <class C>
constexpr void check_kv_cache() {
  static_assert(
      requires(C & c, Index layer, const MatrixCRef<float>& x, Index position) {
        { c.attend(layer, x, position) } -> std::same_as<RowMatrix<float>>;
      },
      "latentkv::KvCache: missing `RowMatrix<float> attend(Index layer, const "
      "MatrixCRef<float>& x, Index position)`");
  static_assert(
      requires(C & c) { c.reset(); }, "latentkv::KvCache: missing `void reset()`");
  static_assert(
      requires(const C& c, Index layer) {
        { c.length(layer) } -> std::convertible_to<Index>;
      },
      "latentkv::KvCache: missing `Index length(Index layer) const`");
  static_assert(
      requires(const C& c) {
        { c.num_layers() } -> std::convertible_to<Index>;
      },
      "latentkv::KvCache: missing `Index num_layers() const`");
  static_assert(
      requires(const C& c) {
        { c.bytes_per_token() } -> std::convertible_to<std::int64_t>;
      },
      "latentkv::KvCache: missing `std::int64_t bytes_per_token() const`");
}

}  // namespace detail
}  // namespace latentkv
