// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Head grouping for GQA (Palu's J-LRD / G-LRD / M-LRD). W: (d, n_kv·h); KV head j owns columns
// [j·h, (j+1)·h). A grouping cuts the n_kv heads into n_kv/s contiguous groups of s heads and
// factorizes each group's column block on its own:
//   W[:, group g] ≈ A_g·B_g,  A_g: (d, r_g),  B_g: (r_g, s·h)
// The cache stores Σ_g r_g latent numbers per token. Joint (s = n_kv) is one latent for all heads:
// best quality per cached number, largest reconstruction cost; per-head (s = 1) is the cheapest to
// reconstruct; grouped (s heads) sits between.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <span>
#include <string>
#include <vector>

#include "latentkv/factorize/factorizer.hpp"

namespace latentkv {

/// How the columns of a K or V projection split into heads.
struct HeadLayout {
  Index num_kv_heads = 0;  ///< n_kv
  Index head_dim = 0;      ///< h
  [[nodiscard]] constexpr Index width() const noexcept { return num_kv_heads * head_dim; }
};

/// G::heads_per_group(n_kv) returns s (>= 1, dividing n_kv) or throws InvalidArgument.
template <class G>
concept Grouping = requires(const G& g, Index num_kv_heads) {
  { g.heads_per_group(num_kv_heads) } -> std::convertible_to<Index>;
  { g.name() } -> std::convertible_to<std::string>;
};

/// One latent shared by every KV head (s = n_kv).
struct JointGrouping {
  [[nodiscard]] Index heads_per_group(Index num_kv_heads) const {
    if (num_kv_heads < 1) {
      detail::raise<InvalidArgument>("latentkv::JointGrouping", "num_kv_heads = ", num_kv_heads,
                                     ", expected >= 1");
    }
    return num_kv_heads;
  }
  [[nodiscard]] std::string name() const { return "joint"; }
};

/// One latent per KV head (s = 1).
struct PerHeadGrouping {
  [[nodiscard]] Index heads_per_group(Index num_kv_heads) const {
    if (num_kv_heads < 1) {
      detail::raise<InvalidArgument>("latentkv::PerHeadGrouping", "num_kv_heads = ", num_kv_heads,
                                     ", expected >= 1");
    }
    return 1;
  }
  [[nodiscard]] std::string name() const { return "per-head"; }
};

/// One latent per group of `group_size` consecutive KV heads; group_size must divide n_kv.
class GroupedHeadsGrouping {
 public:
  explicit GroupedHeadsGrouping(Index group_size) : group_size_(group_size) {
    if (group_size < 1) {
      detail::raise<InvalidArgument>("latentkv::GroupedHeadsGrouping", "group_size = ", group_size,
                                     ", expected >= 1");
    }
  }
  [[nodiscard]] Index heads_per_group(Index num_kv_heads) const {
    if (num_kv_heads < 1 || num_kv_heads % group_size_ != 0) {
      detail::raise<InvalidArgument>("latentkv::GroupedHeadsGrouping", "group_size = ", group_size_,
                                     " does not divide num_kv_heads = ", num_kv_heads);
    }
    return group_size_;
  }
  [[nodiscard]] std::string name() const { return "group:" + std::to_string(group_size_); }
  [[nodiscard]] Index group_size() const noexcept { return group_size_; }

 private:
  Index group_size_;
};

/// Factors of every head group of one projection.
template <class T>
struct GroupedFactors {
  using Scalar = T;

  HeadLayout layout;
  Index heads_per_group = 0;              ///< s
  std::vector<LowRankFactors<T>> groups;  ///< groups[g]: A_g (d, r_g), B_g (r_g, s·h)

  [[nodiscard]] Index num_groups() const noexcept { return static_cast<Index>(groups.size()); }
  /// Group of KV head j.
  [[nodiscard]] Index group_of_head(Index head) const noexcept { return head / heads_per_group; }
  [[nodiscard]] std::vector<Index> ranks() const {
    std::vector<Index> r;
    for (const auto& g : groups) r.push_back(g.rank());
    return r;
  }
  /// Σ_g r_g: latent numbers cached per token for this projection.
  [[nodiscard]] Index latent_width() const noexcept {
    Index total = 0;
    for (const auto& g : groups) total += g.rank();
    return total;
  }
  /// ‖W − Â‖_F / ‖W‖_F over the whole projection (Â the group-wise reconstruction).
  [[nodiscard]] double relative_error() const noexcept {
    double err = 0.0, total = 0.0;
    for (const auto& g : groups) {
      const double n2 = g.source_norm * g.source_norm;
      err += g.relative_error * g.relative_error * n2;
      total += n2;
    }
    return total > 0.0 ? std::sqrt(err / total) : 0.0;
  }
  /// KV head j reconstructed from its group: A_g·B_g[:, local columns]: (d, h).
  [[nodiscard]] RowMatrix<T> reconstruct_head(Index head) const {
    if (head < 0 || head >= layout.num_kv_heads) {
      detail::raise<InvalidArgument>("latentkv::GroupedFactors::reconstruct_head", "head = ", head,
                                     ", expected 0..", layout.num_kv_heads - 1);
    }
    const auto& g = groups[static_cast<std::size_t>(group_of_head(head))];
    const Index local = head % heads_per_group;
    return g.down * g.up.middleCols(local * layout.head_dim, layout.head_dim);
  }
  /// The whole projection: (d, n_kv·h). Built head by head, so its columns of a head equal
  /// reconstruct_head(head) bit for bit on every instruction set (one product per group would
  /// round differently wherever the GEMM kernel's blocking depends on the width, as with AVX-512).
  [[nodiscard]] RowMatrix<T> reconstruct() const {
    const Index d = groups.empty() ? 0 : groups.front().rows();
    RowMatrix<T> w(d, layout.width());
    for (Index h = 0; h < layout.num_kv_heads; ++h) {
      w.middleCols(h * layout.head_dim, layout.head_dim) = reconstruct_head(h);
    }
    return w;
  }
};

/// Factorizes each head group of w: (d, n_kv·h) with its own rank.
/// ranks: one per group (n_kv / s entries), each in 1..min(d, s·h).
template <Factorizer F, Grouping G>
[[nodiscard]] GroupedFactors<typename F::Scalar> factorize_groups(
    const F& factorizer, const G& grouping, const MatrixCRef<typename F::Scalar>& w,
    HeadLayout layout, std::span<const Index> ranks) {
  constexpr const char* kWhere = "latentkv::factorize_groups";
  if (layout.num_kv_heads < 1 || layout.head_dim < 1) {
    detail::raise<InvalidArgument>(kWhere, "layout is ", layout.num_kv_heads, " heads x ",
                                   layout.head_dim, ", expected >= 1 x >= 1");
  }
  if (w.cols() != layout.width()) {
    detail::raise<InvalidArgument>(kWhere, "w has ", w.cols(), " columns, expected ",
                                   layout.width(), " (num_kv_heads ", layout.num_kv_heads,
                                   " x head_dim ", layout.head_dim, ")");
  }
  const Index s = grouping.heads_per_group(layout.num_kv_heads);
  const Index num_groups = layout.num_kv_heads / s;
  if (static_cast<Index>(ranks.size()) != num_groups) {
    detail::raise<InvalidArgument>(kWhere, ranks.size(), " ranks given, expected ", num_groups,
                                   " (one per group of ", s, " heads, grouping ", grouping.name(),
                                   ")");
  }
  const Index block = s * layout.head_dim;
  const Index max_rank = std::min(w.rows(), block);
  for (Index g = 0; g < num_groups; ++g) {
    const Index r = ranks[static_cast<std::size_t>(g)];
    if (r < 1 || r > max_rank) {
      detail::raise<InvalidArgument>(kWhere, "rank of group ", g, " = ", r, ", expected 1..",
                                     max_rank, " (min(d, s·h) for ", s, " heads of ",
                                     layout.head_dim, ")");
    }
  }
  GroupedFactors<typename F::Scalar> out;
  out.layout = layout;
  out.heads_per_group = s;
  out.groups.reserve(static_cast<std::size_t>(num_groups));
  for (Index g = 0; g < num_groups; ++g) {
    out.groups.push_back(
        factorizer.factorize(w.middleCols(g * block, block), ranks[static_cast<std::size_t>(g)]));
  }
  return out;
}

/// Same, with one rank for every group.
template <Factorizer F, Grouping G>
[[nodiscard]] GroupedFactors<typename F::Scalar> factorize_groups(
    const F& factorizer, const G& grouping, const MatrixCRef<typename F::Scalar>& w,
    HeadLayout layout, Index rank) {
  std::vector<Index> ranks;  // left empty for an invalid layout: the span overload reports it
  if (layout.num_kv_heads >= 1 && layout.head_dim >= 1) {
    ranks.assign(static_cast<std::size_t>(layout.num_kv_heads /
                                          grouping.heads_per_group(layout.num_kv_heads)),
                 rank);
  }
  return factorize_groups(factorizer, grouping, w, layout, std::span<const Index>(ranks));
}

}  // namespace latentkv
