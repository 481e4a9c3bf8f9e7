// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Calibration of the route-2 projections (DESIGN §3 route 2, projected_model.hpp): run the model
// on calibration text with the dense cache, stream every layer's post-RoPE keys K_l and values V_l
// (tokens, n_kv·h) into first and second moments in double, then per head group
//   μ = Σ_u x_u / n,  C = Σ_u x_uᵀ·x_u / n − μᵀ·μ  (over the group's s·h channels),
//   C = P·diag(λ)·Pᵀ with λ descending (self-adjoint eigendecomposition): the basis and variances.
// The first `skip_first` tokens of every chunk are left out of the statistics (attention sinks:
// their keys and values are outliers the softmax mostly ignores); they still run through the model.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "latentkv/core/error.hpp"
#include "latentkv/linalg/decompositions.hpp"
#include "latentkv/linalg/matrix.hpp"
#include "latentkv/model/dense_kv_cache.hpp"
#include "latentkv/model/llama_model.hpp"
#include "latentkv/project/projected_model.hpp"

namespace latentkv {

/// Streaming first and second moments of every layer's post-RoPE keys and values, in double.
class ProjectionStats {
 public:
  ProjectionStats(Index num_layers, Index num_kv_heads, Index head_dim)
      : num_kv_heads_(num_kv_heads), head_dim_(head_dim) {
    if (num_layers < 1 || num_kv_heads < 1 || head_dim < 1) {
      detail::raise<InvalidArgument>("latentkv::ProjectionStats", "num_layers = ", num_layers,
                                     ", num_kv_heads = ", num_kv_heads, ", head_dim = ", head_dim,
                                     ", expected positive");
    }
    const Index w = num_kv_heads * head_dim;
    layers_.assign(static_cast<std::size_t>(num_layers),
                   Layer{Vector<double>::Zero(w), Vector<double>::Zero(w),
                         ColMatrix<double>::Zero(w, w), ColMatrix<double>::Zero(w, w)});
  }

  /// keys, values: (tokens, n_kv·h) post-RoPE keys and values of `layer`. Adds their moments.
  void add(Index layer, const MatrixCRef<float>& keys, const MatrixCRef<float>& values) {
    constexpr const char* kWhere = "latentkv::ProjectionStats::add";
    if (layer < 0 || layer >= num_layers()) {
      detail::raise<InvalidArgument>(kWhere, "layer = ", layer, ", expected 0..", num_layers() - 1);
    }
    const Index w = num_kv_heads_ * head_dim_;
    if (keys.cols() != w || values.cols() != w || keys.rows() != values.rows()) {
      detail::raise<InvalidArgument>(kWhere, "layer ", layer, ": keys (", keys.rows(), ", ",
                                     keys.cols(), "), values (", values.rows(), ", ", values.cols(),
                                     "), expected both (tokens, ", w, ")");
    }
    if (!keys.allFinite() || !values.allFinite()) {
      detail::raise<InvalidArgument>(kWhere, "layer ", layer, ": a non-finite key or value");
    }
    Layer& s = layers_[static_cast<std::size_t>(layer)];
    const ColMatrix<double> k = keys.cast<double>();
    const ColMatrix<double> v = values.cast<double>();
    s.key_sum += k.colwise().sum().transpose();
    s.value_sum += v.colwise().sum().transpose();
    s.key_moment.selfadjointView<Eigen::Lower>().rankUpdate(k.transpose());
    s.value_moment.selfadjointView<Eigen::Lower>().rankUpdate(v.transpose());
    if (layer == 0) tokens_ += keys.rows();
  }

  [[nodiscard]] Index num_layers() const noexcept { return static_cast<Index>(layers_.size()); }
  [[nodiscard]] Index num_kv_heads() const noexcept { return num_kv_heads_; }
  [[nodiscard]] Index head_dim() const noexcept { return head_dim_; }
  /// Tokens added to layer 0 (every layer gets the same tokens when filled by the model).
  [[nodiscard]] Index tokens() const noexcept { return tokens_; }

  /// The projections of every group of `heads_per_group` KV heads (s | n_kv) at full rank s·h:
  /// eigendecomposition of each group's covariance. Throws InvalidArgument for s not dividing
  /// n_kv or fewer than 2 tokens.
  [[nodiscard]] ProjectedModel fit(Index heads_per_group) const {
    constexpr const char* kWhere = "latentkv::ProjectionStats::fit";
    if (heads_per_group < 1 || num_kv_heads_ % heads_per_group != 0) {
      detail::raise<InvalidArgument>(kWhere, "heads_per_group = ", heads_per_group,
                                     ", expected a divisor of num_kv_heads = ", num_kv_heads_);
    }
    if (tokens_ < 2) {
      detail::raise<InvalidArgument>(kWhere, tokens_,
                                     " calibration tokens, expected >= 2 (too little text)");
    }
    ProjectedModel model;
    model.num_kv_heads = num_kv_heads_;
    model.head_dim = head_dim_;
    model.heads_per_group = heads_per_group;
    model.calibration_tokens = tokens_;
    const Index width = heads_per_group * head_dim_;
    const double n = static_cast<double>(tokens_);
    for (const Layer& s : layers_) {
      ProjectedLayer layer;
      for (Index j = 0; j < num_kv_heads_ / heads_per_group; ++j) {
        const Index c0 = j * width;
        layer.k.push_back(basis_of(s.key_sum.segment(c0, width) / n,
                                   s.key_moment.block(c0, c0, width, width), n));
        layer.v.push_back(basis_of(s.value_sum.segment(c0, width) / n,
                                   s.value_moment.block(c0, c0, width, width), n));
      }
      model.layers.push_back(std::move(layer));
    }
    return model;
  }

 private:
  struct Layer {
    Vector<double> key_sum;        // (n_kv·h)
    Vector<double> value_sum;      // (n_kv·h)
    ColMatrix<double> key_moment;  // (n_kv·h, n_kv·h) Σ kᵀk, lower triangle valid
    ColMatrix<double> value_moment;
  };

  template <class Moment>
  static ProjectedBasis basis_of(const Vector<double>& mean, const Moment& moment_lower, double n) {
    ColMatrix<double> cov = moment_lower.template selfadjointView<Eigen::Lower>();
    cov /= n;
    cov.noalias() -= mean * mean.transpose();
    const Eigen::SelfAdjointEigenSolver<ColMatrix<double>> eig(cov);
    if (eig.info() != Eigen::Success) {
      detail::raise<NumericalError>("latentkv::ProjectionStats::fit",
                                    "the eigendecomposition of a covariance did not converge");
    }
    // Eigen sorts ascending: reverse to descending variance.
    const Index w = cov.rows();
    ProjectedBasis b;
    b.mean = mean.cast<float>();
    b.basis.resize(w, w);
    b.variance.resize(w);
    for (Index i = 0; i < w; ++i) {
      b.basis.col(i) = eig.eigenvectors().col(w - 1 - i).cast<float>();
      b.variance(i) = std::max(0.0, eig.eigenvalues()(w - 1 - i));
    }
    return b;
  }

  Index num_kv_heads_;
  Index head_dim_;
  Index tokens_ = 0;
  std::vector<Layer> layers_;
};

/// How the calibration text is run.
struct ProjectionCalibrationOptions {
  Index ctx = 1024;      ///< tokens per chunk (the model runs each chunk from an empty cache)
  Index skip_first = 0;  ///< tokens at the start of every chunk left out of the statistics
};

/// Runs `tokens` through `model` in chunks of options.ctx with the dense cache and streams every
/// layer's post-RoPE keys and values (after the first skip_first of each chunk) into the moments.
/// Throws InvalidArgument when no token is left to count (text too short for the options).
[[nodiscard]] inline ProjectionStats collect_projection_stats(
    const LlamaModel& model, std::span<const std::int32_t> tokens,
    const ProjectionCalibrationOptions& options = {}) {
  constexpr const char* kWhere = "latentkv::collect_projection_stats";
  if (options.ctx < 2 || options.skip_first < 0 || options.skip_first >= options.ctx) {
    detail::raise<InvalidArgument>(kWhere, "ctx = ", options.ctx,
                                   ", skip_first = ", options.skip_first,
                                   ", expected ctx >= 2 and 0 <= skip_first < ctx");
  }
  const ModelConfig& c = model.config();
  ProjectionStats stats(c.num_layers, c.num_kv_heads, c.head_dim);
  DenseKvCache dense(model.weights(), std::min<Index>(options.ctx, std::ssize(tokens)));
  for (std::size_t start = 0; start < tokens.size();
       start += static_cast<std::size_t>(options.ctx)) {
    const auto count =
        static_cast<Index>(std::min(tokens.size() - start, static_cast<std::size_t>(options.ctx)));
    if (count <= options.skip_first) break;
    dense.reset();
    (void)model.hidden_states(tokens.subspan(start, static_cast<std::size_t>(count)), dense);
    for (Index l = 0; l < c.num_layers; ++l) {
      const Index kept = count - options.skip_first;
      stats.add(l, dense.keys(l).bottomRows(kept), dense.values(l).bottomRows(kept));
    }
  }
  if (stats.tokens() < 2) {
    detail::raise<InvalidArgument>(kWhere, tokens.size(), " calibration tokens leave ",
                                   stats.tokens(), " to count (ctx = ", options.ctx,
                                   ", skip_first = ", options.skip_first,
                                   "), expected >= 2: give more calibration text");
  }
  return stats;
}

}  // namespace latentkv
