// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Dense causal grouped-query attention on the CPU (fp32): the reference every cache and kernel is
// checked against.
//   queries Q: (tokens, n_q·d_k)      query t sits at absolute position p0 + t
//   keys    K: (length, n_kv·d_k)     key s at position s; length ≥ p0 + tokens
//   values  V: (length, n_kv·d_v)
//   out     O: (tokens, n_q·d_v),     O_{t,i} = Σ_{s ≤ p0+t} softmax_s(scale·Q_{t,i}·K_{s,g(i)})
//   V_{s,g(i)}
// Query head i reads KV head g(i) = i / (n_q / n_kv): the n_q / n_kv query heads of a group are
// consecutive (Hugging Face's repeat_kv). d_k and d_v may differ (projected keys, latent values).
// Keys past p0 + tokens − 1 are masked for every query, so a cache may hold more rows than needed.
//
// Work split: one task per (KV head, block of kQueryBlock queries); the g query heads of a group
// are stacked into one product so each key block is read once per group. Tasks run under OpenMP
// (linalg/parallel.hpp) in descending block order (the long causal rows first). Softmax is fp32
// with the row maximum subtracted; the normalization is applied after the product with V.
#pragma once

#include <algorithm>
#include <cmath>

#include "latentkv/core/error.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/linalg/parallel.hpp"

namespace latentkv {

/// Queries per attention task (per KV head): small enough that the scores of a group stay in L2.
inline constexpr Index kQueryBlock = 32;

/// Causal GQA attention, see the notation block. Throws InvalidArgument naming the first
/// inconsistent shape.
[[nodiscard]] inline RowMatrix<float> causal_attention(MatrixCRef<float> queries,
                                                       MatrixCRef<float> keys,
                                                       MatrixCRef<float> values, Index num_heads,
                                                       Index num_kv_heads, Index first_position,
                                                       float scale) {
  constexpr const char* kWhere = "latentkv::causal_attention";
  if (num_heads <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads != 0) {
    detail::raise<InvalidArgument>(kWhere, "num_heads = ", num_heads,
                                   ", num_kv_heads = ", num_kv_heads,
                                   ", expected positive with num_kv_heads dividing "
                                   "num_heads");
  }
  if (queries.cols() == 0 || queries.cols() % num_heads != 0) {
    detail::raise<InvalidArgument>(
        kWhere, "queries have ", queries.cols(),
        " columns, expected a positive multiple of num_heads = ", num_heads);
  }
  const Index d_k = queries.cols() / num_heads;
  if (keys.cols() != num_kv_heads * d_k) {
    detail::raise<InvalidArgument>(kWhere, "keys have ", keys.cols(), " columns, expected ",
                                   num_kv_heads * d_k, " (num_kv_heads·d_k = ", num_kv_heads, "·",
                                   d_k, ")");
  }
  if (values.cols() == 0 || values.cols() % num_kv_heads != 0) {
    detail::raise<InvalidArgument>(
        kWhere, "values have ", values.cols(),
        " columns, expected a positive multiple of num_kv_heads = ", num_kv_heads);
  }
  if (values.rows() != keys.rows()) {
    detail::raise<InvalidArgument>(kWhere, "values have ", values.rows(), " rows but keys ",
                                   keys.rows(), ", expected one value per key");
  }
  const Index tokens = queries.rows();
  if (first_position < 0 || keys.rows() < first_position + tokens) {
    detail::raise<InvalidArgument>(kWhere, "first_position = ", first_position, " with ", tokens,
                                   " queries needs >= ", first_position + tokens, " keys, got ",
                                   keys.rows());
  }
  if (!std::isfinite(scale)) {
    detail::raise<InvalidArgument>(kWhere, "scale = ", scale, ", expected finite");
  }

  const Index d_v = values.cols() / num_kv_heads;
  const Index group = num_heads / num_kv_heads;
  RowMatrix<float> out(tokens, num_heads * d_v);
  if (tokens == 0) return out;
  const Index num_blocks = (tokens + kQueryBlock - 1) / kQueryBlock;
  const Index num_tasks = num_blocks * num_kv_heads;

  // Threads only pay off beyond ~1M multiply-adds; below that, fork/join costs more than it saves.
  const double work = static_cast<double>(tokens) * static_cast<double>(first_position + tokens) *
                      static_cast<double>(num_heads * (d_k + d_v));
  [[maybe_unused]] const bool parallel = num_tasks > 1 && work > 1e6;
  LATENTKV_OMP(parallel if (parallel)) {
    RowMatrix<float> stacked;  // (group·rows, d_k): the group's queries, head by head
    RowMatrix<float> scores;   // (group·rows, span)
    RowMatrix<float> mixed;    // (group·rows, d_v)
    Vector<float> sums;        // (group·rows)
    LATENTKV_OMP(for schedule(dynamic, 1))
    for (Index task = 0; task < num_tasks; ++task) {
      const Index kv_head = task % num_kv_heads;
      const Index block = num_blocks - 1 - task / num_kv_heads;
      const Index t0 = block * kQueryBlock;
      const Index rows = std::min(kQueryBlock, tokens - t0);
      const Index span = first_position + t0 + rows;  // keys visible to the block's last query
      stacked.resize(group * rows, d_k);
      for (Index j = 0; j < group; ++j) {
        stacked.middleRows(j * rows, rows) =
            queries.block(t0, (kv_head * group + j) * d_k, rows, d_k);
      }
      scores.resize(group * rows, span);
      scores.noalias() = stacked * keys.block(0, kv_head * d_k, span, d_k).transpose();
      sums.resize(group * rows);
      for (Index s = 0; s < group * rows; ++s) {
        const Index visible = first_position + t0 + s % rows + 1;
        auto row = scores.row(s).head(visible).array();
        row *= scale;
        const float max = row.maxCoeff();
        row = (row - max).exp();
        sums(s) = row.sum();
        scores.row(s).tail(span - visible).setZero();
      }
      mixed.noalias() = scores * values.block(0, kv_head * d_v, span, d_v);
      for (Index j = 0; j < group; ++j) {
        out.block(t0, (kv_head * group + j) * d_v, rows, d_v) =
            mixed.middleRows(j * rows, rows).array().colwise() /
            sums.segment(j * rows, rows).array();
      }
    }
  }
  return out;
}

}  // namespace latentkv
